/* Unit tests for geo: lookups in both record layouts and the context.location step, on
 * the fixture scripts/make-geo-fixture.pl writes (documentation ranges only); then, when
 * the default database has been built (make build/geoip-country.mmdb), a few known
 * addresses and a lookup rate over random ones. Run from the repository root. */
#include "geo.h"

#include <errno.h>
#include <sys/stat.h>
#include <time.h>

#include "config.h"
#include "enrich.h"
#include "evtest.h"
#include "test.h"

#define FIXTURE "build/test-geo.mmdb"
#define DEFAULT_DB "build/geoip-country.mmdb"

static geo_t *fixture;

static int exists(const char *path) {
  struct stat st;
  return stat(path, &st) == 0;
}

/* The Makefile builds the fixture before this test; building it here too keeps a test
 * binary compiled by hand runnable. */
static geo_t *open_fixture(void) {
  if (!exists(FIXTURE) &&
      system("mkdir -p build && perl scripts/make-geo-fixture.pl " FIXTURE) != 0)
    return NULL;
  char err[256] = "";
  geo_t *g = geo_open(FIXTURE, err, sizeof err);
  if (!g) printf("  %s\n", err);
  return g;
}

TEST(open_errors) {
  char err[256] = "";
  CHECK(geo_open("build/no-such-file.mmdb", err, sizeof err) == NULL);
  CHECK(strstr(err, "build/no-such-file.mmdb") != NULL);
  CHECK(strstr(err, "No such file") != NULL);
  err[0] = 0;
  CHECK(geo_open("tests/unit/test.h", err, sizeof err) == NULL); /* not an mmdb */
  CHECK(strstr(err, "tests/unit/test.h") != NULL);
  err[0] = 0;
  CHECK(geo_open("", err, sizeof err) == NULL);
  CHECK(err[0] != 0);
  geo_free(NULL);
}

TEST(description) {
  CHECK_STR(geo_description(fixture),
            "sluice-test-city, built 2023-11-14: sluice unit-test fixture (documentation "
            "ranges only)");
}

TEST(lookups) {
  static const struct {
    const char *ip;
    int rc;
    const char *country, *region, *city;
  } cases[] = {
      /* MaxMind City layout */
      {"203.0.113.77", 0, "DE", "BE", "Berlin"},
      {"198.51.100.9", 0, "US", "NY", "New York"},
      {"2001:db8::1", 0, "FR", "", "Paris"},
      {"2001:db8:7fff:ffff::1", 0, "FR", "", "Paris"},
      {"::ffff:203.0.113.5", 0, "DE", "BE", "Berlin"}, /* dual-stack socket peer */
      /* country only */
      {"192.0.2.1", 0, "CH", "", ""},
      /* flat ip-location-db layout */
      {"192.0.2.70", 0, "JP", "Tokyo", "Shibuya"},
      /* record present but with none of our fields */
      {"2001:db8:8000::1", -ENOENT, "", "", ""},
      /* not in the database */
      {"192.0.2.200", -ENOENT, "", "", ""},
      {"10.1.2.3", -ENOENT, "", "", ""},
      {"2001:db9::1", -ENOENT, "", "", ""},
      {"::1", -ENOENT, "", "", ""},
      /* not addresses */
      {"", -EINVAL, "", "", ""},
      {"203.0.113", -EINVAL, "", "", ""},
      {"203.0.113.77 ", -EINVAL, "", "", ""},
      {"localhost", -EINVAL, "", "", ""},
      {"2001:db8::1%eth0", -EINVAL, "", "", ""},
      {"203.0.113.0/24", -EINVAL, "", "", ""},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    geo_info_t info;
    memset(&info, 'x', sizeof info); /* lookups must clear what they do not set */
    int rc = geo_lookup(fixture, cases[i].ip, &info);
    if (rc != cases[i].rc) FAILF("%s: rc %d, expected %d", cases[i].ip, rc, cases[i].rc);
    if (strcmp(info.country, cases[i].country) || strcmp(info.region, cases[i].region) ||
        strcmp(info.city, cases[i].city) || info.found != (cases[i].rc == 0))
      FAILF("%s: {%s, %s, %s, found %d}, expected {%s, %s, %s}", cases[i].ip, info.country,
            info.region, info.city, info.found, cases[i].country, cases[i].region,
            cases[i].city);
  }
  geo_info_t info;
  CHECK_INT(geo_lookup(fixture, NULL, &info), -EINVAL);
}

/* A three-letter "country" is dropped rather than cut to two letters, and a city name too
 * long for the buffer is cut between characters, never inside one. */
TEST(bad_values) {
  geo_info_t info;
  CHECK_INT(geo_lookup(fixture, "192.0.2.130", &info), 0);
  CHECK_STR(info.country, "");
  size_t n = strlen(info.city);
  CHECK(n > 0 && n < sizeof info.city);
  CHECK(strncmp(info.city, "Llanfair", 8) == 0);
  CHECK(n % 2 == 0);                                  /* "Llanfair" + whole 2-byte "é"s */
  CHECK(((unsigned char)info.city[n - 1] & 0xC0) == 0x80); /* ends on a full "é" */
}

static cJSON *enrich(const char *json, const char *client_ip, int with_geo, config_t *c) {
  enrich_t *e = enrich_new(c);
  if (with_geo) enrich_add(e, "geo", geo_enrich_step, fixture);
  enrich_ctx_t ctx = {1795376225000000LL, client_ip, NULL, NULL, ""};
  char msg[200] = "";
  int rc = -1;
  cJSON *ev = evtest_chain(e, json, &ctx, &rc, msg, sizeof msg);
  if (rc != 0) FAILF("enrich failed: %s", msg);
  enrich_free(e);
  return ev;
}

static char *location_of(cJSON *ev) {
  cJSON *loc = cJSON_GetObjectItem(cJSON_GetObjectItem(ev, "context"), "location");
  return loc ? cJSON_PrintUnformatted(loc) : NULL;
}

TEST(enrich_uses_raw_ip) {
  config_t c;
  config_defaults(&c);
  /* The "ip" step runs first and anonymises context.ip to 203.0.113.0; geo still sees
   * the raw address through ctx->client_ip. */
  cJSON *ev = enrich("{\"type\":\"track\",\"event\":\"x\",\"userId\":\"u\"}", "203.0.113.77", 1,
                     &c);
  CHECK_STR(cJSON_GetObjectItem(cJSON_GetObjectItem(ev, "context"), "ip")->valuestring,
            "203.0.113.0");
  char *loc = location_of(ev);
  CHECK_STR(loc, "{\"country\":\"DE\",\"region\":\"BE\",\"city\":\"Berlin\"}");
  free(loc);
  char *text = cJSON_PrintUnformatted(ev);
  CHECK(strstr(text, "203.0.113.77") == NULL); /* geo never writes the address */
  free(text);
  cJSON_Delete(ev);

  /* Here the raw address (192.0.2.70, the flat JP record) and its anonymised /24
   * (192.0.2.0, the CH record) are in different records: only a step that reads the raw
   * address finds Tokyo. */
  ev = enrich("{\"type\":\"track\",\"event\":\"x\",\"userId\":\"u\"}", "192.0.2.70", 1, &c);
  CHECK_STR(cJSON_GetObjectItem(cJSON_GetObjectItem(ev, "context"), "ip")->valuestring,
            "192.0.2.0");
  loc = location_of(ev);
  CHECK_STR(loc, "{\"country\":\"JP\",\"region\":\"Tokyo\",\"city\":\"Shibuya\"}");
  free(loc);
  cJSON_Delete(ev);

  /* A server-side SDK's context.ip is the event's client (enrich_event): located too. */
  ev = enrich("{\"type\":\"track\",\"event\":\"x\",\"userId\":\"u\","
              "\"context\":{\"ip\":\"2001:db8::5\"}}",
              "198.51.100.9", 1, &c);
  loc = location_of(ev);
  CHECK_STR(loc, "{\"country\":\"FR\",\"city\":\"Paris\"}"); /* only the fields found */
  free(loc);
  cJSON_Delete(ev);
  config_free(&c);
}

/* The step remembers its last lookup (one address per request): a new address, or the
 * same address in another database, must never get the remembered answer. */
TEST(enrich_memo_follows_address_and_database) {
  static const struct {
    const char *ip, *loc;
  } seq[] = {
      {"203.0.113.77", "{\"country\":\"DE\",\"region\":\"BE\",\"city\":\"Berlin\"}"},
      {"203.0.113.77", "{\"country\":\"DE\",\"region\":\"BE\",\"city\":\"Berlin\"}"},
      {"192.0.2.70", "{\"country\":\"JP\",\"region\":\"Tokyo\",\"city\":\"Shibuya\"}"},
      {"10.9.9.9", NULL},
      {"198.51.100.1", "{\"country\":\"US\",\"region\":\"NY\",\"city\":\"New York\"}"},
      {"203.0.113.77", "{\"country\":\"DE\",\"region\":\"BE\",\"city\":\"Berlin\"}"},
  };
  for (size_t i = 0; i < sizeof seq / sizeof seq[0]; i++) {
    enrich_ctx_t ctx = {0, seq[i].ip, NULL, NULL, ""};
    int rc = -1;
    cJSON *ev = evtest_step(geo_enrich_step, fixture, "{\"type\":\"track\"}", &ctx, &rc);
    CHECK_INT(rc, 0);
    char *loc = location_of(ev);
    if (seq[i].loc)
      CHECK_STR(loc, seq[i].loc);
    else if (loc)
      FAILF("ip %s: got location %s", seq[i].ip, loc);
    free(loc);
    cJSON_Delete(ev);
  }
  /* Another database (here: the same file opened again, a new handle) looks up afresh;
   * the answer stays right after the first handle is freed. */
  geo_t *other = open_fixture();
  CHECK(other != NULL);
  enrich_ctx_t ctx = {0, "192.0.2.70", NULL, NULL, ""};
  cJSON *ev = evtest_step(geo_enrich_step, other, "{\"type\":\"track\"}", &ctx, NULL);
  char *loc = location_of(ev);
  CHECK_STR(loc, "{\"country\":\"JP\",\"region\":\"Tokyo\",\"city\":\"Shibuya\"}");
  free(loc);
  cJSON_Delete(ev);
  geo_free(other);
}

TEST(enrich_keeps_or_skips) {
  config_t c;
  config_defaults(&c);
  /* A location the SDK sent is kept as it is. */
  cJSON *ev = enrich("{\"type\":\"track\",\"event\":\"x\",\"userId\":\"u\",\"context\":"
                     "{\"location\":{\"city\":\"Lyon\",\"latitude\":45.76}}}",
                     "203.0.113.77", 1, &c);
  char *loc = location_of(ev);
  CHECK_STR(loc, "{\"city\":\"Lyon\",\"latitude\":45.76}");
  free(loc);
  cJSON_Delete(ev);

  /* context.location: null counts as absent. */
  ev = enrich("{\"type\":\"track\",\"event\":\"x\",\"userId\":\"u\",\"context\":"
              "{\"location\":null}}",
              "203.0.113.77", 1, &c);
  loc = location_of(ev);
  CHECK_STR(loc, "{\"country\":\"DE\",\"region\":\"BE\",\"city\":\"Berlin\"}");
  free(loc);
  cJSON_Delete(ev);

  /* Unknown, missing or unusable addresses: no location, and the event still passes. */
  static const char *const ips[] = {"10.9.9.9", "2001:db8:8000::1", "", NULL};
  for (size_t i = 0; i < sizeof ips / sizeof ips[0]; i++) {
    ev = enrich("{\"type\":\"track\",\"event\":\"x\",\"userId\":\"u\"}", ips[i], 1, &c);
    loc = location_of(ev);
    if (loc) FAILF("ip %s: got location %s", ips[i] ? ips[i] : "(null)", loc);
    free(loc);
    cJSON_Delete(ev);
  }

  /* Directly, with no context object at all and with no database. */
  enrich_ctx_t ctx = {0, "198.51.100.1", NULL, NULL, ""};
  int rc = -1;
  ev = evtest_step(geo_enrich_step, fixture, "{\"type\":\"track\"}", &ctx, &rc);
  CHECK_INT(rc, 0);
  loc = location_of(ev);
  CHECK_STR(loc, "{\"country\":\"US\",\"region\":\"NY\",\"city\":\"New York\"}");
  free(loc);
  cJSON_Delete(ev);
  ev = evtest_step(geo_enrich_step, NULL, "{\"type\":\"track\"}", &ctx, &rc);
  CHECK_INT(rc, 0);
  CHECK(cJSON_GetObjectItem(ev, "context") == NULL);
  cJSON_Delete(ev);
  config_free(&c);
}

/* CPU time of this thread: the machine is shared, wall time would measure the neighbours. */
static double cpu_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* The database built from Debian's tor-geoipdb. Skipped (passes, with a note) when it
 * has not been built: it is a build product, not a source file. */
TEST(default_database) {
  if (!exists(DEFAULT_DB)) {
    printf("  skipped: %s not built (make %s)\n", DEFAULT_DB, DEFAULT_DB);
    return;
  }
  char err[256];
  geo_t *g = geo_open(DEFAULT_DB, err, sizeof err);
  if (!g) {
    FAILF("%s", err);
    return;
  }
  CHECK(strncmp(geo_description(g), "sluice-geoip-country, built ", 28) == 0);
  CHECK(strstr(geo_description(g), "IPFire") != NULL);
  CHECK(strstr(geo_description(g), "CC BY-SA 4.0") != NULL);
  printf("  %s\n", geo_description(g));

  static const struct {
    const char *ip, *country;
  } known[] = {
      {"8.8.8.8", "US"},           /* Google */
      {"::ffff:8.8.8.8", "US"},
      {"2001:4860:4860::8888", "US"},
      {"193.0.6.139", "NL"},       /* RIPE NCC, Amsterdam */
      {"2001:67c:2e8:22::c100:68b", "NL"},
  };
  for (size_t i = 0; i < sizeof known / sizeof known[0]; i++) {
    geo_info_t info;
    int rc = geo_lookup(g, known[i].ip, &info);
    if (rc != 0 || strcmp(info.country, known[i].country))
      FAILF("%s: rc %d country \"%s\", expected %s", known[i].ip, rc, info.country,
            known[i].country);
    if (info.region[0] || info.city[0]) FAILF("%s: a country database gave more", known[i].ip);
  }
  geo_info_t info;
  CHECK_INT(geo_lookup(g, "10.0.0.1", &info), -ENOENT); /* private: never in the data */
  CHECK_INT(geo_lookup(g, "::1", &info), -ENOENT);

  /* Random public-looking addresses: most must resolve to a valid code, none may error. */
  enum { N = 200000 };
  static char ips[N][46];
  uint64_t x = 88172645463325252ULL; /* xorshift64, fixed seed: the same sample each run */
  for (int i = 0; i < N; i++) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    if (i % 4 == 3) /* one in four IPv6, within 2000::/4 where the allocations are */
      snprintf(ips[i], sizeof ips[i], "2%03x:%x:%x::1", (unsigned)(x >> 52) & 0xfff,
               (unsigned)(x >> 36) & 0xffff, (unsigned)(x >> 20) & 0xffff);
    else
      snprintf(ips[i], sizeof ips[i], "%u.%u.%u.%u", (unsigned)(x >> 56) % 223 + 1,
               (unsigned)(x >> 48) & 255, (unsigned)(x >> 40) & 255, (unsigned)(x >> 32) & 255);
  }
  int found = 0, bad = 0;
  double t0 = cpu_s();
  for (int i = 0; i < N; i++) {
    int rc = geo_lookup(g, ips[i], &info);
    if (rc == 0) {
      found++;
      if (!(info.country[0] >= 'A' && info.country[0] <= 'Z' && info.country[2] == 0)) bad++;
    } else if (rc != -ENOENT) {
      bad++;
    }
  }
  double dt = cpu_s() - t0;
  CHECK_INT(bad, 0);
  CHECK(found > N / 2);
#if defined(__SANITIZE_ADDRESS__)
  const char *build = "ASan+UBSan build";
#else
  const char *build = "no sanitizers";
#endif
  printf("  %d random lookups, %d found: %.0f ns CPU each, %.0f lookups/s per core (%s)\n", N,
         found, dt / N * 1e9, N / dt, build);
  geo_free(g);
}

int main(void) {
  fixture = open_fixture();
  if (!fixture) {
    printf("FAIL cannot open or build %s (needs libmaxmind-db-writer-perl)\n", FIXTURE);
    test_failed++;
    return TEST_REPORT("test_geo");
  }
  RUN(open_errors);
  RUN(description);
  RUN(lookups);
  RUN(bad_values);
  RUN(enrich_uses_raw_ip);
  RUN(enrich_keeps_or_skips);
  RUN(enrich_memo_follows_address_and_database);
  RUN(default_database);
  geo_free(fixture);
  return TEST_REPORT("test_geo");
}
