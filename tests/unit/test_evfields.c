/* Unit tests for evfields: the trusted decoder the process stage and log scans use gives
 * exactly the fields of the validating one, on events that reach every rule (aliases and
 * fallbacks, escapes, UTF-8, nested properties, extra paths). */
#include "evfields.h"

#include <errno.h>

#include "evfields_same.h"
#include "test.h"
#include "util/clock.h"

static const char *const extra[] = {
    "properties.campaign", "properties.cost", /* what the process stage asks for */
    "properties.revenue",                     /* the same path as a base field (aliased) */
    "properties.cart.total",                  /* nested */
    "properties.items",                       /* an array, read raw */
    "context",                                /* an object that is also a parent */
    "properties.caf\xc3\xa9",                 /* a UTF-8 key */
};
#define NX (sizeof extra / sizeof extra[0])

static const char *const events[] = {
    /* the shape ingestion writes */
    "{\"anonymousId\":\"anon-1\",\"timestamp\":\"2026-11-23T00:00:16.303Z\",\"context\":{\"page\":"
    "{\"url\": \"https://shop.example/p/291?utm_source=google&utm_medium=cpc&utm_campaign=c6\"},"
    "\"userAgent\":\"Mozilla/5.0 (Windows NT 10.0; Win64; x64)\",\"ip\":\"127.0.0.0\",\"campaign\":"
    "{\"source\":\"google\",\"medium\":\"cpc\",\"name\":\"c6\"},\"referrer\":{\"class\":\"direct\"},"
    "\"browser\":{\"name\":\"Chrome\",\"version\":\"120.0\"},\"os\":{\"name\":\"Windows\"},"
    "\"device\":{\"type\":\"desktop\",\"family\":\"Other\"},\"bot\":false,\"consent\":"
    "{\"analytics\":true,\"marketing\":true}},\"type\":\"track\",\"event\":\"Order Completed\","
    "\"properties\":{\"revenue\": 144.31},\"userId\":\"user-1\",\"receivedAt\":"
    "\"2026-11-23T00:50:16.342Z\",\"messageId\":\"srv-a2b6\"}",
    /* fallbacks: total for revenue, url for path, sku for product, receivedAt for time */
    "{\"type\":\"track\",\"event\":\"Order Completed\",\"properties\":{\"total\":99.5,\"sku\":"
    "\"SKU-1\",\"sessionId\":\"s1\"},\"context\":{\"page\":{\"url\":\"/only/a/path?q=1#f\"},"
    "\"sessionId\":\"s2\"},\"receivedAt\":\"2026-11-22T10:00:00Z\",\"userId\":\"u2\"}",
    /* numeric product id, path beside url, context session id, previousId (alias) */
    "{\"type\":\"alias\",\"previousId\":\"old\",\"userId\":\"new\",\"properties\":{\"product_id\":"
    "12345,\"sku\":\"ignored\"},\"context\":{\"page\":{\"path\":\"/p\",\"url\":\"https://h/x\"},"
    "\"sessionId\":\"ctx-session\",\"location\":{\"country\":\"PL\"}}}",
    /* escapes and UTF-8 in values and keys; the event name and ids decode */
    "{\"type\":\"track\",\"ev\\u0065nt\":\"Caf\\u00e9 \\\"Opened\\\"\",\"userId\":\"\\ud83d\\ude00"
    "-\xc3\xa9\",\"anonymousId\":\"a\\/b\\\\c\",\"properties\":{\"caf\xc3\xa9\":\"cr\xc3\xa8me\","
    "\"product_id\":\"\\u0041\\u0042\"},\"context\":{\"campaign\":{\"name\":\"\\u00fcber\\n\"}}}",
    /* nested properties with brackets and quotes in skipped strings, arrays, a cost */
    "{\"type\":\"track\",\"event\":\"Marketing Cost\",\"properties\":{\"meta\":{\"a\":[\"}\",\"]\","
    "{\"b\":\"\\\"{\"}]},\"campaign\":\"spring\",\"cost\":12.75,\"items\":[{\"sku\":\"x\"},2,"
    "[3]],\"cart\":{\"total\":5e1,\"items\":3}},\"timestamp\":\"2026-11-20T12:00:00.5Z\"}",
    /* repeated keys: the first wins; other event types; no ids */
    "{\"type\":\"page\",\"type\":\"track\",\"context\":{\"page\":{\"path\":\"/first\"}},\"context\":"
    "{\"page\":{\"path\":\"/second\"},\"device\":{\"type\":\"mobile\"}}}",
    "{\"type\":\"identify\",\"userId\":\"u\",\"traits\":{\"email\":\"a@b\",\"nested\":{\"x\":[]}}}",
    "{\"type\":\"screen\",\"anonymousId\":\"a\",\"context\":{\"consent\":{\"marketing\":false}}}",
    "{\"type\":\"group\",\"anonymousId\":\"\",\"userId\":\"\",\"timestamp\":\"not a time\"}",
    /* whitespace everywhere, values of the wrong type */
    " {\n \"type\" : \"track\" ,\n \"event\" : 42 , \"userId\" : { } , \"properties\" : "
    "{ \"revenue\" : \"12\" , \"cost\" : null } , \"context\" : [ ] } ",
    /* tombstones and unknown types decode to 0 */
    "{\"type\":\"forgotten\"}",
    "{\"type\":\"\",\"userId\":\"u\"}", /* an empty type is no type (and no C string) */
    "{\"type\":\"something-else\",\"userId\":\"u\"}",
};

static evfields_decoder_t *dec;

TEST(trusted_decodes_like_validating) {
  static evfields_t a, b;
  for (size_t i = 0; i < sizeof events / sizeof events[0]; i++) {
    log_record_t rec = {.offset = i, .time_us = 1700000000000000 + (int64_t)i,
                        .value = events[i], .value_len = (uint32_t)strlen(events[i])};
    int ra = evfields_decode_strict(dec, &rec, &a), rb = evfields_decode(dec, &rec, &b);
    if (ra < 0) FAILF("corpus event %zu is not valid", i);
    if (ra != rb) FAILF("event %zu: strict %d, trusted %d", i, ra, rb);
    char why[64];
    if (ra == 1 && !evfields_same(&a, &b, NX, why, sizeof why)) FAILF("event %zu: %s", i, why);
  }
}

/* What the decodes must hold, so that agreeing is not agreeing on nothing. */
TEST(fields_of_the_corpus) {
  static evfields_t e;
  log_record_t rec = {.time_us = 5};
#define DECODE(i)                                  \
  (rec.value = events[i], rec.value_len = (uint32_t)strlen(events[i]), \
   evfields_decode(dec, &rec, &e))
  REQUIRE(DECODE(0) == 1);
  CHECK(e.is_order && e.revenue == 144.31);
  CHECK_STR(e.dims[1], "/p/291");
  CHECK_STR(e.dims[2], "google");
  CHECK_STR(e.user_key, "anon-1");
  CHECK(e.consent_marketing);
  CHECK_INT(evfields_extra(&e, 2)->type, JSCAN_NUMBER); /* aliased to properties.revenue */
  CHECK_INT(evfields_extra(&e, 5)->type, JSCAN_OBJECT);
  REQUIRE(DECODE(1) == 1);
  CHECK(e.revenue == 99.5);
  CHECK_STR(e.dims[1], "/only/a/path");
  CHECK_STR(e.dims[9], "SKU-1");
  CHECK_STR(e.session_id, "s1");
  REQUIRE(DECODE(2) == 1);
  CHECK_STR(e.dims[9], "12345");
  CHECK_STR(e.dims[1], "/p");
  CHECK_STR(e.dims[6], "PL");
  CHECK_STR(e.previous_id, "old");
  CHECK_STR(e.dims[0], "$alias");
  REQUIRE(DECODE(3) == 1);
  CHECK_STR(e.dims[0], "Caf\xc3\xa9 \"Opened\"");
  CHECK_STR(e.user_id, "\xf0\x9f\x98\x80-\xc3\xa9");
  CHECK_STR(e.dims[9], "AB");
  CHECK_STR(e.dims[4], "\xc3\xbc" "ber\n");
  CHECK_INT(evfields_extra(&e, 6)->type, JSCAN_STRING);
  REQUIRE(DECODE(4) == 1);
  CHECK(evfields_extra(&e, 1)->num == 12.75);
  CHECK(evfields_extra(&e, 3)->num == 50);
  CHECK_INT(evfields_extra(&e, 4)->type, JSCAN_ARRAY);
  REQUIRE(DECODE(5) == 1);
  CHECK_INT(e.type, PROFILE_PAGE);
  CHECK_STR(e.dims[1], "/first");
  CHECK_STR(e.dims[7], "mobile");
  CHECK_INT(DECODE(10), 0);
#undef DECODE
}

/* Damage: every prefix of every event and every byte replaced by a structural one. The
 * trusted decoder must not crash or read outside the value (the sanitizers watch: each
 * copy is exactly as long as the value) and agrees whenever the strict one accepts. */
TEST(trusted_survives_damage) {
  static evfields_t a, b;
  static const char repl[] = "\"\\{}[],:x";
  for (size_t i = 0; i < sizeof events / sizeof events[0]; i++) {
    size_t len = strlen(events[i]);
    for (size_t cut = 0; cut <= len; cut++)
      for (size_t r = 0; r <= sizeof repl - 1; r++) {
        if (r && cut == len) break;
        size_t n = r ? len : cut; /* r == 0: the prefix; else byte `cut` replaced */
        char *v = malloc(n ? n : 1);
        memcpy(v, events[i], n);
        if (r) v[cut] = repl[r - 1];
        log_record_t rec = {.value = v, .value_len = (uint32_t)n};
        int ra = evfields_decode_strict(dec, &rec, &a), rb = evfields_decode(dec, &rec, &b);
        char why[64];
        if (ra >= 0 && (ra != rb || (ra == 1 && !evfields_same(&a, &b, NX, why, sizeof why))))
          FAILF("event %zu damaged at %zu: strict %d, trusted %d", i, cut, ra, rb);
        free(v);
      }
  }
}

/* Event times: the per-thread memo of the last minute must give what the full parse
 * gives, for times of the same minute, the next one, other forms and bad seconds. */
TEST(event_times_as_parsed) {
  static const char *const times[] = {
      "2026-11-23T00:00:16.303Z", "2026-11-23T00:00:16.999Z", "2026-11-23T00:00:59.000Z",
      "2026-11-23T00:00:60.000Z", "2026-11-23T00:00:61.000Z", "2026-11-23T00:00:1x.000Z",
      "2026-11-23T00:01:00.001Z", "2026-11-23T00:00:16.3031Z", "2026-11-23T00:00:16.303+01:00",
      "2026-11-23T00:00:16Z",     "2026-11-23 00:00:16.303Z", "2026-11-23T00:00:16.303z",
      "2026-12-31T23:59:59.999Z", "2026-11-23T00:00:16.303Z", "2026-02-30T00:00:16.303Z",
      "2026-11-23T24:00:16.303Z", "2026-11-23T00:00:16.30aZ", "1969-12-31T23:59:59.500Z",
  };
  static evfields_t e;
  char doc[128];
  for (size_t i = 0; i < sizeof times / sizeof times[0]; i++) {
    int n = snprintf(doc, sizeof doc, "{\"type\":\"track\",\"timestamp\":\"%s\"}", times[i]);
    log_record_t rec = {.time_us = -7, .value = doc, .value_len = (uint32_t)n};
    REQUIRE(evfields_decode(dec, &rec, &e) == 1);
    int64_t want;
    if (clock_parse_iso(times[i], strlen(times[i]), &want) != 0) want = -7;
    if (e.t_us != want)
      FAILF("%s: %lld, parsed %lld", times[i], (long long)e.t_us, (long long)want);
  }
}

/* page_path from context.page.url: after the host, up to '?' or '#', wherever they fall
 * (within the first 16 bytes of the path, past them, at the URL's end or nowhere), the
 * same from an escaped URL (decoded first) as from its raw bytes. */
TEST(url_paths) {
  static const char *const cases[][2] = {
      {"https://shop.example/p/65?utm_source=facebook", "/p/65"},
      {"https://shop.example/p/65#top", "/p/65"},
      {"https://h/a/rather/long/path/of/many/bytes?q=1", "/a/rather/long/path/of/many/bytes"},
      {"https://h/a/rather/long/path/of/many/bytes#f?q", "/a/rather/long/path/of/many/bytes"},
      {"https://h/exactly/sixteen/b?x", "/exactly/sixteen/b"},
      {"https://h/0123456789abcdef", "/0123456789abcdef"},
      {"https://h/0123456789abcdef0123456789abcdef", "/0123456789abcdef0123456789abcdef"},
      {"https://h/0123456789abcde?", "/0123456789abcde"},
      {"https://h/0123456789abcdef?", "/0123456789abcdef"},
      {"https://h", "/"},
      {"https://h?q=/x", "/x"}, /* (the first '/' after the host, as before) */
      {"/only/a/path?q=1#f", "/only/a/path"},
      {"mailto:x?y", "/"},
      {"https:\\/\\/h\\/p\\/1?u=\\/", "/p/1"}, /* escaped slashes */
      {"https://h/caf\\u00e9/x?y", "/caf\xc3\xa9/x"},
  };
  static evfields_t e;
  char doc[256];
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    int n = snprintf(doc, sizeof doc,
                     "{\"type\":\"page\",\"context\":{\"page\":{\"url\":\"%s\"}}}", cases[i][0]);
    log_record_t rec = {.value = doc, .value_len = (uint32_t)n};
    REQUIRE(evfields_decode(dec, &rec, &e) == 1);
    if (!e.dims[1] || strcmp(e.dims[1], cases[i][1]) || e.dlen[1] != strlen(cases[i][1]))
      FAILF("%s: path \"%s\"", cases[i][0], e.dims[1] ? e.dims[1] : "(none)");
  }
}

/* The two halves give what evfields_decode gives; the raw user id is the hint's input. */
TEST(scan_then_finish) {
  static evfields_t a, b;
  for (size_t i = 0; i < sizeof events / sizeof events[0]; i++) {
    log_record_t rec = {.value = events[i], .value_len = (uint32_t)strlen(events[i])};
    int ra = evfields_decode(dec, &rec, &a), rb = evfields_scan(dec, &rec, &b);
    if (rb == 0) rb = evfields_finish(dec, &rec, &b);
    char why[64];
    if (ra != rb || (ra == 1 && !evfields_same(&a, &b, NX, why, sizeof why)))
      FAILF("event %zu: decode %d, scan + finish %d", i, ra, rb);
  }
  size_t n = 0;
  log_record_t rec = {.value = events[0], .value_len = (uint32_t)strlen(events[0])};
  REQUIRE(evfields_scan(dec, &rec, &a) == 0);
  const char *id = evfields_raw_user(&a, &n);
  CHECK(id && n == 6 && !memcmp(id, "user-1", 6)); /* userId first */
  id = evfields_raw_linked(&a, &n);
  CHECK(id && n == 6 && !memcmp(id, "anon-1", 6)); /* then the anonymousId it links */
  rec.value = "{\"type\":\"page\",\"userId\":\"\",\"anonymousId\":\"an\"}";
  rec.value_len = (uint32_t)strlen(rec.value);
  REQUIRE(evfields_scan(dec, &rec, &a) == 0);
  id = evfields_raw_user(&a, &n);
  CHECK(id && n == 2 && !memcmp(id, "an", 2)); /* an empty userId: the anonymous id */
  CHECK(evfields_raw_linked(&a, &n) == NULL);  /* and nothing to link */
  rec.value = "{\"type\":\"page\",\"userId\":\"u\",\"anonymousId\":\"\"}";
  rec.value_len = (uint32_t)strlen(rec.value);
  REQUIRE(evfields_scan(dec, &rec, &a) == 0);
  CHECK(evfields_raw_linked(&a, &n) == NULL); /* an empty anonymousId: none */
  rec.value = "{\"type\":\"page\",\"userId\":\"u\",\"anonymousId\":\"\\u0041\"}";
  rec.value_len = (uint32_t)strlen(rec.value);
  REQUIRE(evfields_scan(dec, &rec, &a) == 0);
  CHECK(evfields_raw_linked(&a, &n) == NULL); /* escaped: no hint */
  rec.value = "{\"type\":\"page\",\"userId\":\"\\u0041\"}";
  rec.value_len = (uint32_t)strlen(rec.value);
  REQUIRE(evfields_scan(dec, &rec, &a) == 0);
  CHECK(evfields_raw_user(&a, &n) == NULL); /* escaped: no hint */
  rec.value = "{\"type\":";
  rec.value_len = (uint32_t)strlen(rec.value);
  CHECK_INT(evfields_scan(dec, &rec, &a), -EBADMSG);
}

int main(void) {
  dec = evfields_new(NULL, extra, NX);
  RUN(trusted_decodes_like_validating);
  RUN(fields_of_the_corpus);
  RUN(trusted_survives_damage);
  RUN(event_times_as_parsed);
  RUN(url_paths);
  RUN(scan_then_finish);
  evfields_free(dec);
  return TEST_REPORT("test_evfields");
}
