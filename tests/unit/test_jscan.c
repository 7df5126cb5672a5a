/* Unit tests for one-pass field extraction, checked against cJSON on the same documents. */
#include <cjson/cJSON.h>

#include "jscan.h"

#include "test.h"

static const char *const paths[] = {"type", "userId", "properties.revenue", "context.page.url",
                                    "context", "missing.deep", "a.b.c.d", "flag", "nothing"};
#define NP (sizeof paths / sizeof paths[0])

static jscan_paths_t *ps;

static int scan(const char *json, jscan_val_t *out) { return jscan_scan(ps, json, strlen(json), out); }

TEST(extracts_requested_paths) {
  const char *doc = "{ \"type\" : \"track\", \"userId\":\"u\\u00e9\\\"1\", \"properties\":{\"revenue\":-12.5e1,"
                    "\"list\":[1,{\"revenue\":3}]},\"context\":{\"page\":{\"url\":\"https://x/?a=1\"}},"
                    "\"a\":{\"b\":{\"c\":{\"d\":null}}},\"flag\":true,\"userId\":\"second\"}";
  jscan_val_t v[NP];
  CHECK_INT(scan(doc, v), 0);
  char s[64];
  CHECK_INT(v[0].type, JSCAN_STRING);
  CHECK(jscan_string(&v[0], s, sizeof s) == 5 && !strcmp(s, "track"));
  CHECK(v[1].escaped);
  CHECK(jscan_string(&v[1], s, sizeof s) > 0);
  CHECK_STR(s, "u\xc3\xa9\"1"); /* first occurrence wins, escapes decoded */
  CHECK_INT(v[2].type, JSCAN_NUMBER);
  CHECK(v[2].num == -125.0);
  CHECK(jscan_string(&v[3], s, sizeof s) > 0 && !strcmp(s, "https://x/?a=1"));
  CHECK_INT(v[4].type, JSCAN_OBJECT);
  CHECK(v[4].n > 10 && v[4].p[0] == '{' && v[4].p[v[4].n - 1] == '}');
  CHECK_INT(v[5].type, JSCAN_NONE);
  CHECK_INT(v[6].type, JSCAN_NULL);
  CHECK_INT(v[7].type, JSCAN_TRUE);
  CHECK_INT(v[8].type, JSCAN_NONE);
}

TEST(rejects_malformed) {
  static const char *bad[] = {"", "[]", "{", "{\"a\"}", "{\"a\":}", "{\"a\":1,}", "{\"a\":01}",
                              "{\"a\":1.}", "{\"a\":\"\\x\"}", "{\"a\":\"\\u12\"}", "{\"a\":tru}",
                              "{\"a\":\"x\n\"}", "{\"a\":1} x", "{\"a\":[1,]}", "{a:1}", "{\"a\":-}",
                              /* lone surrogates and invalid UTF-8 */
                              "{\"a\":\"\\ud800\"}", "{\"a\":\"\\udc00x\"}", "{\"a\":\"\\ud800\\u0041\"}",
                              "{\"a\":\"\xff\"}", "{\"a\":\"\xc0\xaf\"}", "{\"a\":\"\xed\xa0\x80\"}",
                              "{\"a\":\"\xe2\x82\"}", "{\"\xf5\x80\x80\x80\":1}"};
  jscan_val_t v[NP];
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    if (scan(bad[i], v) == 0) FAILF("accepted malformed %s", bad[i]);
  char deep[400];
  size_t n = 0;
  n += (size_t)snprintf(deep, sizeof deep, "{\"a\":");
  for (int i = 0; i < 70; i++) deep[n++] = '[';
  for (int i = 0; i < 70; i++) deep[n++] = ']';
  deep[n++] = '}';
  deep[n] = 0;
  CHECK(scan(deep, v) != 0);
}

TEST(agrees_with_cjson) {
  static const char *docs[] = {
      "{\"type\":\"page\",\"userId\":\"42\",\"properties\":{\"revenue\":0},\"context\":{\"page\":{\"url\":\"\"}}}",
      "{\"userId\":\"\\ud83d\\ude00 smile\",\"type\":\"a\\/b\\n\"}",
      "{\"properties\":{\"revenue\":1e-3},\"type\":\"\\u0000x\"}",
  };
  for (size_t i = 0; i < sizeof docs / sizeof docs[0]; i++) {
    jscan_val_t v[NP];
    CHECK_INT(scan(docs[i], v), 0);
    cJSON *j = cJSON_Parse(docs[i]);
    const cJSON *t = cJSON_GetObjectItem(j, "type"), *u = cJSON_GetObjectItem(j, "userId");
    char s[128];
    if (t) {
      long n = jscan_string(&v[0], s, sizeof s);
      CHECK(n >= 0 && strcmp(s, t->valuestring) == 0);
    }
    if (u) {
      jscan_string(&v[1], s, sizeof s);
      CHECK_STR(s, u->valuestring);
    }
    cJSON *r = cJSON_GetObjectItem(cJSON_GetObjectItem(j, "properties"), "revenue");
    if (r) CHECK(v[2].num == r->valuedouble);
    cJSON_Delete(j);
  }
}

TEST(truncates_at_character_boundary) {
  jscan_val_t v = {JSCAN_STRING, "ab\xc3\xa9" "cd", 6, 0, 0};
  char s[4];
  CHECK_INT(jscan_string(&v, s, sizeof s), 2); /* é would not fit with the NUL */
  CHECK_STR(s, "ab");
}

TEST(bad_paths) {
  const char *p1[] = {"a..b"};
  CHECK(jscan_compile(p1, 1) == NULL);
  const char *p2[] = {""};
  CHECK(jscan_compile(p2, 1) == NULL);
}

/* Strings are skipped a word at a time: every kind of byte that needs attention must be
 * seen at every offset of every word, whatever the string's length. */
TEST(special_bytes_at_every_offset) {
  static const struct {
    const char *bytes; /* inserted at the offset */
    int ok;            /* the document is valid */
    int extra;         /* bytes the value gains beyond the filler */
  } kinds[] = {
      {"\\n", 1, 2},        /* escape */
      {"\x01", 0, 0},        /* control byte */
      {"\x1f", 0, 0},
      {"\xc3\xa9", 1, 2},   /* UTF-8 */
      {"\xff", 0, 0},        /* invalid UTF-8 */
      {"\x7f", 1, 1},        /* DEL is plain */
      {" ", 1, 1},
  };
  static const char *const one[] = {"type"};
  jscan_paths_t *p1 = jscan_compile(one, 1);
  char doc[128];
  for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++)
    for (int len = 0; len <= 24; len++)
      for (int at = 0; at <= len; at++) {
        int n = snprintf(doc, sizeof doc, "{\"type\":\"%.*s%s%.*s\"}", at,
                         "abcdefghijklmnopqrstuvwxyz", kinds[k].bytes, len - at,
                         "ABCDEFGHIJKLMNOPQRSTUVWXYZ");
        jscan_val_t v;
        int rc = jscan_scan(p1, doc, (size_t)n, &v);
        if (kinds[k].ok ? rc != 0 || v.type != JSCAN_STRING ||
                              v.n != (size_t)(len + kinds[k].extra)
                        : rc != -1)
          FAILF("kind %zu len %d at %d: rc %d n %zu", k, len, at, rc, v.n);
      }
  /* A quote ends the string wherever it stands. */
  for (int len = 0; len <= 24; len++) {
    int n = snprintf(doc, sizeof doc, "{\"type\":\"%.*s\"}", len, "abcdefghijklmnopqrstuvwxyz");
    jscan_val_t v;
    CHECK_INT(jscan_scan(p1, doc, (size_t)n, &v), 0);
    CHECK_INT(v.n, len);
  }
  jscan_paths_free(p1);
}

int main(void) {
  ps = jscan_compile(paths, NP);
  RUN(extracts_requested_paths);
  RUN(rejects_malformed);
  RUN(agrees_with_cjson);
  RUN(truncates_at_character_boundary);
  RUN(bad_paths);
  RUN(special_bytes_at_every_offset);
  jscan_paths_free(ps);
  return TEST_REPORT("test_jscan");
}
