/* Unit tests for uaparse: uap-core's own conformance files (test_ua, test_os,
 * test_device) compared field by field as uap-core's reference harness does, the cache,
 * the device-type rule, the enrichment step, hostile input, and a throughput figure. */
#include "uaparse.h"

#include <errno.h>
#include <libfyaml.h>
#include <time.h>
#include <unistd.h>

#include "evtest.h"
#include "test.h"

#define UAP_TESTS "/usr/share/uap-core/tests/"

static uaparse_t *parser; /* shared: compiling 1,100+ regexes once is enough */

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* CPU time of this thread: the machine is shared, wall-clock rates are noisy. */
static double cpu_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- uap-core test files ---- */

typedef struct tcase {
  char *ua;
  char *want[5]; /* the file's fields in order; a missing or null value is "" */
} tcase_t;

typedef struct tfile {
  tcase_t *cases;
  size_t n;
} tfile_t;

/* Load the test_cases of an uap-core test file, keeping the named fields. Returns 0 or -1
 * (and reports the failure). */
static int load_cases(const char *path, const char *const *fields, int nfields, tfile_t *out) {
  memset(out, 0, sizeof *out);
  struct fy_parse_cfg cfg = {.flags = FYPCF_QUIET};
  struct fy_document *doc = fy_document_build_from_file(&cfg, path);
  if (!doc) {
    FAILF("cannot read %s (is the uap-core package installed?)", path);
    return -1;
  }
  struct fy_node *seq = fy_node_mapping_lookup_by_string(fy_document_root(doc), "test_cases", -1);
  if (!seq || fy_node_get_type(seq) != FYNT_SEQUENCE) {
    FAILF("%s: no test_cases list", path);
    fy_document_destroy(doc);
    return -1;
  }
  size_t cap = (size_t)fy_node_sequence_item_count(seq);
  out->cases = calloc(cap ? cap : 1, sizeof *out->cases);
  void *it = NULL;
  struct fy_node *item;
  while ((item = fy_node_sequence_iterate(seq, &it)) && out->n < cap) {
    struct fy_node *u = fy_node_mapping_lookup_by_string(item, "user_agent_string", -1);
    size_t ulen;
    const char *us = u && fy_node_get_type(u) == FYNT_SCALAR ? fy_node_get_scalar(u, &ulen) : NULL;
    if (!us) continue;
    tcase_t *c = &out->cases[out->n++];
    c->ua = strndup(us, ulen);
    for (int f = 0; f < nfields; f++) {
      struct fy_node *v = fy_node_mapping_lookup_by_string(item, fields[f], -1);
      const char *s = v && fy_node_get_type(v) == FYNT_SCALAR && !fy_node_is_null(v)
                          ? fy_node_get_scalar0(v) : NULL;
      c->want[f] = strdup(s ? s : "");
    }
  }
  fy_document_destroy(doc);
  return 0;
}

static void free_cases(tfile_t *t) {
  for (size_t i = 0; i < t->n; i++) {
    free(t->cases[i].ua);
    for (int f = 0; f < 5; f++) free(t->cases[i].want[f]);
  }
  free(t->cases);
}

enum { KIND_UA, KIND_OS, KIND_DEVICE };

/* Run one conformance file: every case through uaparse_match, compared exactly; and
 * through uaparse_parse, which must agree with the uncached result. Passes at >= 99%. */
static void conformance(const char *name, int kind) {
  static const char *const ua_fields[] = {"family", "major", "minor", "patch"};
  static const char *const os_fields[] = {"family", "major", "minor", "patch", "patch_minor"};
  static const char *const dev_fields[] = {"family", "brand", "model"};
  const char *const *fields = kind == KIND_UA ? ua_fields : kind == KIND_OS ? os_fields : dev_fields;
  int nfields = kind == KIND_UA ? 4 : kind == KIND_OS ? 5 : 3;
  char path[256];
  snprintf(path, sizeof path, "%s%s", UAP_TESTS, name);
  tfile_t t;
  if (load_cases(path, fields, nfields, &t) != 0) return;
  CHECK(t.n > 100);

  size_t ok = 0, shown = 0, inconsistent = 0;
  for (size_t i = 0; i < t.n; i++) {
    tcase_t *c = &t.cases[i];
    size_t len = strlen(c->ua);
    ua_parts_t pt;
    uaparse_match(parser, c->ua, len, &pt);
    const char *got[5];
    if (kind == KIND_UA) {
      got[0] = pt.ua_family, got[1] = pt.ua_major, got[2] = pt.ua_minor, got[3] = pt.ua_patch;
    } else if (kind == KIND_OS) {
      got[0] = pt.os_family, got[1] = pt.os_major, got[2] = pt.os_minor, got[3] = pt.os_patch;
      got[4] = pt.os_patch_minor;
    } else {
      got[0] = pt.device_family, got[1] = pt.device_brand, got[2] = pt.device_model;
    }
    int good = 1;
    for (int f = 0; f < nfields; f++)
      if (strcmp(got[f], c->want[f]) != 0) good = 0;
    if (good) {
      ok++;
    } else if (shown++ < 10) {
      printf("  %s mismatch: %s\n", name, c->ua);
      for (int f = 0; f < nfields; f++)
        if (strcmp(got[f], c->want[f]) != 0)
          printf("    %s: got \"%s\", want \"%s\"\n", fields[f], got[f], c->want[f]);
    }
    /* The cached path must give what the uncached one derives. */
    ua_info_t cached, fresh;
    uaparse_parse(parser, c->ua, len, &cached);
    uaparse_info_from_parts(&pt, c->ua, len, &fresh);
    if (memcmp(&cached, &fresh, sizeof cached) != 0 && inconsistent++ < 5)
      FAILF("uaparse_parse disagrees with uaparse_match for %s", c->ua);
  }
  double pct = t.n ? 100.0 * (double)ok / (double)t.n : 0;
  printf("%s: %zu/%zu (%.2f%%)\n", name, ok, t.n, pct);
  if (pct < 99.0) FAILF("%s: pass rate %.2f%% is below 99%%", name, pct);
  free_cases(&t);
}

TEST(conformance_ua) { conformance("test_ua.yaml", KIND_UA); }
TEST(conformance_os) { conformance("test_os.yaml", KIND_OS); }
TEST(conformance_device) { conformance("test_device.yaml", KIND_DEVICE); }

/* ---- Behaviour ---- */

static const char *chrome_win =
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.6099.109 Safari/537.36";
static const char *googlebot =
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)";

TEST(parse_fields) {
  ua_info_t i;
  uaparse_parse(parser, chrome_win, strlen(chrome_win), &i);
  CHECK_STR(i.browser, "Chrome");
  CHECK_STR(i.browser_version, "120.0.6099");
  CHECK_STR(i.os, "Windows");
  CHECK_STR(i.os_version, "10");
  CHECK_STR(i.device_family, "Other");
  CHECK_STR(i.device_brand, "");
  CHECK_STR(i.device_type, "desktop");
  CHECK_INT(i.bot, 0);

  const char *iphone = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1_2 like Mac OS X) "
                       "AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 "
                       "Safari/604.1";
  uaparse_parse(parser, iphone, strlen(iphone), &i);
  CHECK_STR(i.browser, "Mobile Safari");
  CHECK_STR(i.browser_version, "17.1");
  CHECK_STR(i.os, "iOS");
  CHECK_STR(i.os_version, "17.1.2");
  CHECK_STR(i.device_family, "iPhone");
  CHECK_STR(i.device_brand, "Apple");
  CHECK_STR(i.device_model, "iPhone");
  CHECK_STR(i.device_type, "mobile");

  /* Nothing matches: "Other" everywhere, never a failure. */
  uaparse_parse(parser, "", 0, &i);
  CHECK_STR(i.browser, "Other");
  CHECK_STR(i.os, "Other");
  CHECK_STR(i.device_family, "Other");
  CHECK_STR(i.browser_version, "");
  CHECK_STR(i.device_type, "other");
  uaparse_parse(parser, NULL, 0, &i);
  CHECK_STR(i.browser, "Other");
}

TEST(device_types) {
  static const struct {
    const char *ua, *type;
  } cases[] = {
      {"Mozilla/5.0 (iPad; CPU OS 16_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
       "Version/16.6 Mobile/15E148 Safari/604.1", "tablet"},
      {"Mozilla/5.0 (Linux; Android 13; SM-X700) AppleWebKit/537.36 (KHTML, like Gecko) "
       "Chrome/119.0.0.0 Safari/537.36", "tablet"},
      {"Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
       "Chrome/120.0.6099.43 Mobile Safari/537.36", "mobile"},
      {"Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like "
       "Gecko) Version/17.1 Safari/605.1.15", "desktop"},
      {"Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0",
       "desktop"},
      {"Mozilla/5.0 (X11; CrOS x86_64 14541.0.0) AppleWebKit/537.36 (KHTML, like Gecko) "
       "Chrome/120.0.0.0 Safari/537.36", "desktop"},
      {"Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)", "bot"},
      {"Mozilla/5.0 (compatible; AhrefsBot/7.0; +http://ahrefs.com/robot/)", "bot"},
      {"python-requests/2.31.0", "other"}, /* uap-core does not call libraries spiders */
      {"Mozilla/5.0 (Linux; U; Android 4.0.3; en-us; KFTT Build/IML74K) AppleWebKit/535.19 "
       "(KHTML, like Gecko) Silk/3.4 Mobile Safari/535.19 Silk-Accelerated=true", "tablet"},
      {"Mozilla/5.0 (Windows Phone 10.0; Android 6.0.1; Microsoft; Lumia 950) "
       "AppleWebKit/537.36 (KHTML, like Gecko) Chrome/52.0.2743.116 Mobile Safari/537.36 "
       "Edge/15.14977", "mobile"},
      {"Nokia6300/2.0 (05.00) Profile/MIDP-2.0 Configuration/CLDC-1.1", "mobile"},
      {"Mozilla/5.0 (SMART-TV; Linux; Tizen 6.0) AppleWebKit/538.1 (KHTML, like Gecko) "
       "Version/6.0 TV Safari/538.1", "other"},
  };
  for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
    ua_info_t i;
    uaparse_parse(parser, cases[k].ua, strlen(cases[k].ua), &i);
    if (strcmp(i.device_type, cases[k].type) != 0)
      FAILF("%s: device type %s (family %s, os %s), expected %s", cases[k].ua, i.device_type,
            i.device_family, i.os, cases[k].type);
    CHECK_INT(i.bot, strcmp(cases[k].type, "bot") == 0);
  }
}

TEST(bot_googlebot) {
  ua_info_t i;
  uaparse_parse(parser, googlebot, strlen(googlebot), &i);
  CHECK_INT(i.bot, 1);
  CHECK_STR(i.device_type, "bot");
  CHECK_STR(i.device_family, "Spider");
  CHECK_STR(i.browser, "Googlebot");
  CHECK_STR(i.browser_version, "2.1");
}

TEST(cache_hits_and_eviction) {
  char err[256];
  uaparse_t *p = uaparse_open(NULL, 1, err, sizeof err); /* the minimum: one set of 8 */
  if (!p) {
    FAILF("open: %s", err);
    return;
  }
  const char *a = chrome_win, *b = googlebot;
  ua_info_t i1, i2;
  CHECK_INT(uaparse_parse(p, a, strlen(a), &i1), 0);
  CHECK_INT(uaparse_parse(p, a, strlen(a), &i2), 1);
  CHECK(memcmp(&i1, &i2, sizeof i1) == 0);
  CHECK_INT(uaparse_parse(p, b, strlen(b), &i2), 0);
  char ua[32];
  for (int k = 0; k < 6; k++) { /* fills the set: a b u0..u5 */
    snprintf(ua, sizeof ua, "Agent-%d/1.0", k);
    CHECK_INT(uaparse_parse(p, ua, strlen(ua), &i2), 0);
  }
  CHECK_INT(uaparse_parse(p, a, strlen(a), &i2), 1); /* a is now the most recent */
  CHECK_INT(uaparse_parse(p, "Agent-6/1.0", 11, &i2), 0); /* evicts b, the least recent */
  CHECK_INT(uaparse_parse(p, a, strlen(a), &i2), 1);
  CHECK_INT(uaparse_parse(p, "Agent-0/1.0", 11, &i2), 1);
  CHECK_INT(uaparse_parse(p, b, strlen(b), &i2), 0); /* evicts Agent-1 */
  CHECK_STR(i2.browser, "Googlebot");
  CHECK_INT(uaparse_parse(p, "Agent-1/1.0", 11, &i2), 0);
  /* A prefix is a different key: the length is part of it. */
  CHECK_INT(uaparse_parse(p, a, strlen(a) - 1, &i2), 0);
  /* Bytes past UAPARSE_MAX_UA do not count: these two share a cache slot. */
  char *long1 = malloc(UAPARSE_MAX_UA + 100), *long2 = malloc(UAPARSE_MAX_UA + 200);
  memset(long1, 'x', UAPARSE_MAX_UA + 100);
  memset(long2, 'x', UAPARSE_MAX_UA + 200);
  CHECK_INT(uaparse_parse(p, long1, UAPARSE_MAX_UA + 100, &i2), 0);
  CHECK_INT(uaparse_parse(p, long2, UAPARSE_MAX_UA + 200, &i2), 1);
  free(long1);
  free(long2);
  uint64_t hits, misses;
  uaparse_stats(p, &hits, &misses);
  CHECK_INT(hits, 5);
  CHECK_INT(misses, 13);
  uaparse_free(p);

  /* The shared parser's default-size cache keeps what it saw. */
  uaparse_parse(parser, "Wget/1.21.4", 11, &i1);
  CHECK_INT(uaparse_parse(parser, "Wget/1.21.4", 11, &i1), 1);
}

/* The event {"type":"page","context":<context_json>} after the step (which must return 0). */
static cJSON *event_with(const char *context_json) {
  char buf[1024];
  snprintf(buf, sizeof buf, "{\"type\":\"page\",\"context\":%s}", context_json);
  enrich_ctx_t ctx = {0};
  int rc = -1;
  cJSON *ev = evtest_step(uaparse_enrich_step, parser, buf, &ctx, &rc);
  if (!ev || rc != 0) FAILF("step failed on %s", buf);
  return ev;
}

static const char *path_str(cJSON *ev, const char *obj, const char *key) {
  cJSON *c = cJSON_GetObjectItemCaseSensitive(ev, "context");
  cJSON *o = cJSON_GetObjectItemCaseSensitive(c, obj);
  cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
  return cJSON_IsString(v) ? v->valuestring : NULL;
}

TEST(enrich_step_adds_fields) {
  char ctxjson[512];
  snprintf(ctxjson, sizeof ctxjson, "{\"userAgent\":\"%s\"}", chrome_win);
  cJSON *ev = event_with(ctxjson);
  CHECK_STR(path_str(ev, "browser", "name"), "Chrome");
  CHECK_STR(path_str(ev, "browser", "version"), "120.0.6099");
  CHECK_STR(path_str(ev, "os", "name"), "Windows");
  CHECK_STR(path_str(ev, "os", "version"), "10");
  CHECK_STR(path_str(ev, "device", "type"), "desktop");
  CHECK_STR(path_str(ev, "device", "family"), "Other");
  CHECK(path_str(ev, "device", "manufacturer") == NULL); /* unknown: left out */
  cJSON *bot = cJSON_GetObjectItem(cJSON_GetObjectItem(ev, "context"), "bot");
  CHECK(cJSON_IsFalse(bot));
  cJSON_Delete(ev);

  snprintf(ctxjson, sizeof ctxjson, "{\"userAgent\":\"%s\"}", googlebot);
  ev = event_with(ctxjson);
  CHECK(cJSON_IsTrue(cJSON_GetObjectItem(cJSON_GetObjectItem(ev, "context"), "bot")));
  CHECK_STR(path_str(ev, "device", "type"), "bot");
  cJSON_Delete(ev);
}

TEST(enrich_step_keeps_sdk_fields) {
  /* A mobile SDK's own os and device win; the missing browser and bot are added. */
  char ctxjson[768];
  snprintf(ctxjson, sizeof ctxjson,
           "{\"userAgent\":\"%s\",\"os\":{\"name\":\"iOS\",\"version\":\"17.1\"},"
           "\"device\":{\"manufacturer\":\"Apple\",\"model\":\"iPhone15,2\"}}", chrome_win);
  cJSON *ev = event_with(ctxjson);
  CHECK_STR(path_str(ev, "os", "name"), "iOS");
  CHECK_STR(path_str(ev, "os", "version"), "17.1");
  CHECK_STR(path_str(ev, "device", "model"), "iPhone15,2");
  CHECK(path_str(ev, "device", "type") == NULL);
  CHECK_STR(path_str(ev, "browser", "name"), "Chrome");
  cJSON *c = cJSON_GetObjectItem(ev, "context");
  int n = 0;
  for (cJSON *k = c->child; k; k = k->next)
    if (strcmp(k->string, "os") == 0) n++;
  CHECK_INT(n, 1); /* not added a second time */
  cJSON_Delete(ev);

  /* No userAgent, or not a string: the event is left alone. */
  const char *untouched[] = {"{}", "{\"userAgent\":42}"};
  for (size_t k = 0; k < 2; k++) {
    char in[128];
    snprintf(in, sizeof in, "{\"type\":\"page\",\"context\":%s}", untouched[k]);
    cJSON *want = cJSON_Parse(in);
    ev = event_with(untouched[k]);
    char *before = cJSON_PrintUnformatted(want), *after = cJSON_PrintUnformatted(ev);
    CHECK_STR(after, before);
    cJSON_free(before);
    cJSON_free(after);
    cJSON_Delete(want);
    cJSON_Delete(ev);
  }
  enrich_ctx_t ctx = {0};
  int rc = -1;
  ev = evtest_step(uaparse_enrich_step, parser, "{\"type\":\"track\"}", &ctx, &rc);
  CHECK_INT(rc, 0);
  CHECK(cJSON_GetObjectItem(ev, "context") == NULL);
  cJSON_Delete(ev);
}

static int valid_utf8_text(const char *s) {
  const unsigned char *u = (const unsigned char *)s;
  while (*u) {
    if (*u < 0x20 || *u == 0x7f) return 0;
    int k = *u < 0x80 ? 1 : (*u & 0xe0) == 0xc0 ? 2 : (*u & 0xf0) == 0xe0 ? 3
          : (*u & 0xf8) == 0xf0 ? 4 : 0;
    if (!k) return 0;
    for (int j = 1; j < k; j++)
      if ((u[j] & 0xc0) != 0x80) return 0;
    u += k;
  }
  return 1;
}

TEST(hostile_input) {
  /* 100 KB built to make backtracking regexes work: tokens they look for, never closed. */
  size_t n = 100 * 1024;
  char *ua = malloc(n);
  const char *unit = "Mozilla/5.0 (Linux; Android 1; ; ; Build/ Version/ ";
  size_t ul = strlen(unit);
  for (size_t i = 0; i < n; i++) ua[i] = unit[i % ul];
  ua[500] = '\0'; /* embedded NUL */
  ua[600] = (char)0xff; /* invalid UTF-8 */
  ua[601] = (char)0xc3;
  ua_info_t i;
  double t0 = now_s();
  CHECK_INT(uaparse_parse(parser, ua, n, &i), 0);
  double dt = now_s() - t0;
  printf("  100 KB hostile user agent: %.1f ms\n", dt * 1e3);
  CHECK(dt < 0.5);
  memset(ua, '(', n);
  t0 = now_s();
  uaparse_parse(parser, ua, n, &i);
  dt = now_s() - t0;
  CHECK(dt < 0.5);

  /* Captured bytes that are not text come out as '?'. */
  const char bad[] = "Mozilla/5.0 (Linux; Android 9; Ab\xff\x01" "Cd Build/PPR1) AppleWebKit/537.36 "
                     "(KHTML, like Gecko) Chrome/70.0 Mobile Safari/537.36";
  uaparse_parse(parser, bad, sizeof bad - 1, &i);
  CHECK(valid_utf8_text(i.browser) && valid_utf8_text(i.os));
  CHECK(valid_utf8_text(i.device_family) && valid_utf8_text(i.device_model));
  CHECK(valid_utf8_text(i.device_brand));
  CHECK(strchr(i.device_model, '?') != NULL);

  /* A family captured as nothing but a space is unknown, "Other" (found by the fuzzer). */
  const char blank[] = "Mozilla/5.0 (Linux; Android 9;   Build/X) Mobile";
  uaparse_parse(parser, blank, sizeof blank - 1, &i);
  CHECK_STR(i.device_family, "Other");
  CHECK_STR(i.device_type, "mobile");
  free(ua);
}

TEST(truncation_at_character_boundary) {
  /* A device model longer than ua_info_t holds is cut whole-character and unpadded. */
  ua_parts_t pt;
  memset(&pt, 0, sizeof pt);
  strcpy(pt.ua_family, "Other");
  strcpy(pt.os_family, "Other");
  strcpy(pt.device_family, "Other");
  char *m = pt.device_model;
  for (int k = 0; k < 40; k++) strcat(m, "\xc3\xa9"); /* 80 bytes of é */
  ua_info_t i;
  uaparse_info_from_parts(&pt, "", 0, &i);
  CHECK_INT(strlen(i.device_model), 62);
  CHECK(valid_utf8_text(i.device_model));
  strcpy(pt.ua_major, "1");
  strcpy(pt.ua_patch, "3"); /* minor missing: the version stops at major */
  uaparse_info_from_parts(&pt, "", 0, &i);
  CHECK_STR(i.browser_version, "1");
}

static void write_file(const char *path, const char *text) {
  FILE *f = fopen(path, "w");
  if (!f) {
    FAILF("cannot write %s", path);
    return;
  }
  fputs(text, f);
  fclose(f);
}

/* A parser over the regexes file text yaml (written to a temporary file), or NULL with
 * the failure reported. */
static uaparse_t *open_yaml(const char *yaml, size_t cache_entries) {
  char path[] = "/tmp/test_uaparse_XXXXXX", err[256];
  int fd = mkstemp(path);
  if (fd < 0) {
    FAILF("mkstemp: %s", strerror(errno));
    return NULL;
  }
  close(fd);
  write_file(path, yaml);
  uaparse_t *p = uaparse_open(path, cache_entries, err, sizeof err);
  unlink(path);
  if (!p) FAILF("open: %s", err);
  return p;
}

TEST(open_errors) {
  char err[256] = "";
  CHECK(uaparse_open("/nonexistent/regexes.yaml", 0, err, sizeof err) == NULL);
  CHECK(strstr(err, "/nonexistent/regexes.yaml") != NULL);

  char path[] = "/tmp/test_uaparse_XXXXXX";
  int fd = mkstemp(path);
  CHECK(fd >= 0);
  close(fd);
  write_file(path, "user_agent_parsers:\n  - regex: 'Good/(\\d+)'\n  - regex: 'Bad(/(\\d+)'\n");
  CHECK(uaparse_open(path, 0, err, sizeof err) == NULL);
  char want[300];
  snprintf(want, sizeof want, "%s:3:", path);
  if (!strstr(err, want)) FAILF("error \"%s\" does not point at line 3", err);

  write_file(path, "user_agent_parsers: [\n");
  CHECK(uaparse_open(path, 0, err, sizeof err) == NULL);
  CHECK(strstr(err, path) != NULL);

  write_file(path, "something_else: 1\n");
  CHECK(uaparse_open(path, 0, err, sizeof err) == NULL);
  CHECK(strstr(err, "no user_agent_parsers") != NULL);

  CHECK(uaparse_open(NULL, (size_t)UAPARSE_MAX_CACHE + 1, err, sizeof err) == NULL);

  /* A minimal file works: replacements, $N, case-insensitive flag, trimming, defaults. */
  write_file(path,
             "user_agent_parsers:\n"
             "  - regex: '(Foo)Browser/(\\d+)\\.(\\d+)'\n"
             "    family_replacement: 'Foo $1'\n"
             "    v2_replacement: '9'\n"
             "os_parsers:\n"
             "  - regex: 'FooOS (\\d+)'\n"
             "    os_replacement: 'FooOS'\n"
             "    os_v1_replacement: '$1'\n"
             "device_parsers:\n"
             "  - regex: 'dev-(\\w+)-(\\w+)'\n"
             "    regex_flag: 'i'\n"
             "    device_replacement: ' $1 $2 '\n"
             "    brand_replacement: '$1'\n"
             "    model_replacement: '$2$3'\n");
  uaparse_t *p = uaparse_open(path, 16, err, sizeof err);
  if (!p) {
    FAILF("open: %s", err);
  } else {
    ua_parts_t pt;
    const char *ua = "FooBrowser/3.4 (FooOS 7) DEV-Acme-X1";
    uaparse_match(p, ua, strlen(ua), &pt);
    CHECK_STR(pt.ua_family, "Foo Foo");
    CHECK_STR(pt.ua_major, "3");
    CHECK_STR(pt.ua_minor, "9");
    CHECK_STR(pt.ua_patch, "");
    CHECK_STR(pt.os_family, "FooOS");
    CHECK_STR(pt.os_major, "7");
    CHECK_STR(pt.device_family, "Acme X1");
    CHECK_STR(pt.device_brand, "Acme");
    CHECK_STR(pt.device_model, "X1");
    uaparse_match(p, "nothing", 7, &pt);
    CHECK_STR(pt.ua_family, "Other");
    CHECK_STR(pt.os_family, "Other");
    CHECK_STR(pt.device_family, "Other");
    CHECK_STR(pt.device_model, "");
    uaparse_free(p);
  }
  unlink(path);
  uaparse_free(NULL);
}

/* The step sets what uaparse_parse reports, whether its JSON was kept with the cached
 * entry (short names) or is too long for that and rendered per event (names full of
 * characters JSON escapes), on a miss and on a hit. */
TEST(enrich_step_matches_parse) {
  uaparse_t *p = open_yaml("user_agent_parsers:\n  - regex: '^(.*)$'\n    v1_replacement: '1'\n"
                           "os_parsers:\n  - regex: '^(.*)$'\n    os_v1_replacement: '2'\n"
                           "device_parsers:\n  - regex: '^(.*)$'\n    brand_replacement: '$1'\n"
                           "    model_replacement: '$1'\n",
                           16);
  if (!p) return;
  char quoted[80];
  for (size_t i = 0; i < 62; i++) quoted[i] = i % 2 ? '"' : '\\';
  quoted[62] = 0;
  const char *uas[] = {"Tiny/1", quoted};
  for (int round = 0; round < 2; round++) {
    for (size_t k = 0; k < 2; k++) {
      buf_t json = BUF_INIT;
      buf_puts(&json, "{\"type\":\"page\",\"context\":{\"userAgent\":\"");
      buf_json_escape(&json, uas[k], strlen(uas[k]));
      buf_puts(&json, "\"}}");
      enrich_ctx_t ctx = {0};
      int rc = -1;
      cJSON *ev = evtest_step(uaparse_enrich_step, p, json.data, &ctx, &rc);
      buf_free(&json);
      CHECK_INT(rc, 0);
      ua_info_t info;
      CHECK_INT(uaparse_parse(p, uas[k], strlen(uas[k]), &info), 1);
      CHECK_STR(path_str(ev, "browser", "name"), info.browser);
      CHECK_STR(path_str(ev, "browser", "version"), info.browser_version);
      CHECK_STR(path_str(ev, "os", "name"), info.os);
      CHECK_STR(path_str(ev, "os", "version"), info.os_version);
      CHECK_STR(path_str(ev, "device", "type"), info.device_type);
      CHECK_STR(path_str(ev, "device", "family"), info.device_family);
      CHECK_STR(path_str(ev, "device", "manufacturer"), info.device_brand);
      CHECK_STR(path_str(ev, "device", "model"), info.device_model);
      if (k == 1) CHECK(strlen(info.device_model) > 50); /* the long case is long */
      cJSON_Delete(ev);
    }
  }
  uaparse_free(p);
}

TEST(match_limit_stops_backtracking) {
  /* A catastrophic pattern (exponential on a run of 'a' ending otherwise) gives up at the
   * match limit and counts as no match; the next regex still gets its turn. */
  uaparse_t *p = open_yaml("user_agent_parsers:\n"
                           "  - regex: '^(a|a?)+$'\n"
                           "    family_replacement: 'Slow'\n"
                           "  - regex: '(a)a'\n"
                           "    family_replacement: 'Fallback'\n",
                           0);
  if (!p) return;
  char ua[UAPARSE_MAX_UA];
  memset(ua, 'a', sizeof ua);
  ua[sizeof ua - 1] = 'c';
  ua_parts_t pt;
  double t0 = now_s();
  uaparse_match(p, ua, sizeof ua, &pt);
  double dt = now_s() - t0;
  printf("  catastrophic regex over %d bytes: %.1f ms\n", UAPARSE_MAX_UA, dt * 1e3);
  CHECK(dt < 0.05); /* without the limit: ~100 ms at 10^8 steps, and on and on */
  CHECK_STR(pt.ua_family, "Fallback");
  uaparse_free(p);
}

/* Throughput over test_ua.yaml's user agents: every one matched uncached, then the same
 * mix through the (warm) cache. Prints both rates, per second of thread CPU time. */
TEST(throughput) {
  static const char *const fields[] = {"family"};
  tfile_t t;
  if (load_cases(UAP_TESTS "test_ua.yaml", fields, 1, &t) != 0) return;
  size_t *lens = malloc(t.n * sizeof *lens);
  for (size_t k = 0; k < t.n; k++) lens[k] = strlen(t.cases[k].ua);
  ua_parts_t pt;
  ua_info_t info;
  double t0 = cpu_s();
  for (size_t k = 0; k < t.n; k++) uaparse_match(parser, t.cases[k].ua, lens[k], &pt);
  double uncached = (double)t.n / (cpu_s() - t0);

  char err[256];
  uaparse_t *p = uaparse_open(NULL, 0, err, sizeof err);
  if (!p) {
    FAILF("open: %s", err);
  } else {
    for (size_t k = 0; k < t.n; k++) uaparse_parse(p, t.cases[k].ua, lens[k], &info);
    int rounds = 0;
    t0 = cpu_s();
    do { /* at least 0.2 s of CPU for a stable figure */
      for (size_t k = 0; k < t.n; k++) uaparse_parse(p, t.cases[k].ua, lens[k], &info);
      rounds++;
    } while (cpu_s() - t0 < 0.2);
    double cached = (double)t.n * rounds / (cpu_s() - t0);
    uint64_t hits, misses;
    uaparse_stats(p, &hits, &misses);
    printf("  %zu user agents from test_ua.yaml: uncached %.0f UA/s, cached %.0f UA/s "
           "(%.0fx)\n", t.n, uncached, cached, cached / uncached);
    /* 1,425 keys in 2,048 sets of 8 stay cached: a set overflows (and then misses on
     * every round) about once in 10,000 seeds, costing at most 1% of hits. */
    if (hits * 100 < (uint64_t)t.n * (uint64_t)rounds * 99)
      FAILF("%" PRIu64 " hits, %" PRIu64 " misses for %d warm rounds of %zu", hits, misses,
            rounds, t.n);
    CHECK(cached > 10 * uncached); /* a hit is a hash and a copy, not 1,100 regexes */
    uaparse_free(p);
  }
  free(lens);
  free_cases(&t);
}

int main(void) {
  char err[256];
  double t0 = now_s();
  parser = uaparse_open(NULL, 0, err, sizeof err);
  if (!parser) {
    printf("cannot open the default regexes: %s\n", err);
    printf("test_uaparse: 0 passed, 1 failed\n");
    return 1;
  }
  printf("  regexes compiled in %.1f ms\n", (now_s() - t0) * 1e3);
  RUN(conformance_ua);
  RUN(conformance_os);
  RUN(conformance_device);
  RUN(parse_fields);
  RUN(device_types);
  RUN(bot_googlebot);
  RUN(cache_hits_and_eviction);
  RUN(enrich_step_adds_fields);
  RUN(enrich_step_keeps_sdk_fields);
  RUN(hostile_input);
  RUN(truncation_at_character_boundary);
  RUN(open_errors);
  RUN(match_limit_stops_backtracking);
  RUN(enrich_step_matches_parse);
  RUN(throughput);
  uaparse_free(parser);
  return TEST_REPORT("test_uaparse");
}
