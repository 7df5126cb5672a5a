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

/* ---- the trusted scan ---- */

/* Documents the validating scan accepts, chosen to reach every branch of the trusted one:
 * escapes in keys and values, UTF-8, brackets and quotes inside skipped strings, nested
 * and repeated keys, arrays, literals, numbers of every form, whitespace everywhere, a
 * path that is both a value and a parent, long runs across the 16-byte steps. */
static const char *const trusted_docs[] = {
    "{\"type\":\"track\",\"userId\":\"u1\",\"properties\":{\"revenue\":12.5},\"flag\":false}",
    " {\n\t\"type\" :\r\n \"page\" , \"userId\" : \"a\\\"b\\\\c\" ,\"flag\" :true } \n",
    "{\"us\\u0065rId\":\"escaped key\",\"userId\":\"second\",\"ty\\/pe\":1,\"type\":\"t\"}",
    "{\"type\":\"\\ud83d\\ude00 \\u00e9 \xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\",\"userId\":\"\\n\\t\\r\\b\\f\\/\"}",
    "{\"skip\":{\"a\":[1,{\"b\":\"}]\\\"{[\"},[[],{}]],\"c\":\"]\"},\"type\":\"after skip\"}",
    "{\"skip\":[\"{\",\"}\",\"[\",\"]\",\"\\\\\",\"\\\"\"],\"properties\":{\"list\":[{\"revenue\":9}],"
    "\"revenue\":-0.5e-3}}",
    "{\"properties\":{\"revenue\":1E+2},\"properties\":{\"revenue\":3},\"type\":null}",
    "{\"context\":{\"page\":{\"url\":\"https://x/a?b=[c]&d={e}\"},\"other\":{\"page\":1}},"
    "\"context\":{\"page\":{\"url\":\"second\"}}}",
    "{\"context\":\"not an object\",\"a\":{\"b\":{\"c\":{\"d\":[true,false,null]}}}}",
    "{\"a\":{\"b\":{\"c\":{\"d\":{\"deeper\":{\"x\":[1,2,{\"y\":\"z\"}]}}}}},\"nothing\":{}}",
    "{\"missing\":{\"deep\":0,\"deeper\":1},\"flag\":[],\"userId\":{},\"type\":[1]}",
    "{}",
    "{\"type\":\"\",\"userId\":\"\",\"properties\":{},\"context\":{}}",
    "{\"properties\":{\"revenue\":0},\"flag\":-0,\"nothing\":1.5e308,\"type\":123456789012345678}",
    "{\"userIdX\":1,\"userI\":2,\"typ\":3,\"types\":4,\"context\":{\"pagex\":{\"url\":5},\"page\":{\"urls\":6}}}",
    "{\"a_key_longer_than_sixteen_bytes\":\"v\",\"userId\":\"a value longer than thirty-two bytes, "
    "so that the scan takes several steps\",\"type\":\"x\"}",
};

static void check_same(const jscan_paths_t *p, size_t np, const char *doc, size_t len) {
  jscan_val_t a[NP], b[NP];
  int ra = jscan_scan(p, doc, len, a), rb = jscan_scan_trusted(p, doc, len, b);
  if (ra != 0) return;
  if (rb != 0) {
    FAILF("trusted scan refused %.*s", (int)len, doc);
    return;
  }
  for (size_t i = 0; i < np; i++)
    if (a[i].type != b[i].type || a[i].p != b[i].p || a[i].n != b[i].n ||
        a[i].escaped != b[i].escaped || !(a[i].num == b[i].num))
      FAILF("path %zu of %.*s: type %d/%d n %zu/%zu", i, (int)len, doc, a[i].type, b[i].type,
            a[i].n, b[i].n);
}

TEST(trusted_matches_validating) {
  for (size_t i = 0; i < sizeof trusted_docs / sizeof trusted_docs[0]; i++) {
    const char *d = trusted_docs[i];
    jscan_val_t v[NP];
    if (scan(d, v) != 0) FAILF("corpus document %zu is not valid", i);
    check_same(ps, NP, d, strlen(d));
  }
  /* the values the first documents must give, so the comparison is not of two blanks */
  jscan_val_t v[NP];
  char s[64];
  CHECK_INT(jscan_scan_trusted(ps, trusted_docs[2], strlen(trusted_docs[2]), v), 0);
  CHECK(v[1].type == JSCAN_STRING && jscan_string(&v[1], s, sizeof s) > 0 &&
        !strcmp(s, "escaped key"));
  CHECK_INT(jscan_scan_trusted(ps, trusted_docs[4], strlen(trusted_docs[4]), v), 0);
  CHECK(v[0].type == JSCAN_STRING && jscan_string(&v[0], s, sizeof s) > 0 &&
        !strcmp(s, "after skip"));
  CHECK_INT(jscan_scan_trusted(ps, trusted_docs[6], strlen(trusted_docs[6]), v), 0);
  CHECK(v[2].num == 100.0);
  CHECK_INT(v[0].type, JSCAN_NULL);
  CHECK_INT(jscan_scan_trusted(ps, trusted_docs[7], strlen(trusted_docs[7]), v), 0);
  CHECK(v[3].type == JSCAN_STRING && jscan_string(&v[3], s, sizeof s) > 0 &&
        !strcmp(s, "https://x/a?b=[c]&d={e}"));
  CHECK_INT(v[4].type, JSCAN_OBJECT);
}

/* Damaged bytes: every prefix of every document, and every document with one byte
 * replaced by each structural byte. The trusted scan must stay inside the buffer (the
 * sanitizers check each read: the copy is exactly as long as the input) and agree with
 * the validating scan whenever that one accepts. */
TEST(trusted_survives_damage) {
  static const char repl[] = "\"\\{}[]:, 0x\xc3";
  for (size_t i = 0; i < sizeof trusted_docs / sizeof trusted_docs[0]; i++) {
    size_t len = strlen(trusted_docs[i]);
    for (size_t cut = 0; cut <= len; cut++) {
      char *d = malloc(cut ? cut : 1);
      memcpy(d, trusted_docs[i], cut);
      check_same(ps, NP, d, cut);
      free(d);
    }
    char *d = malloc(len);
    for (size_t at = 0; at < len; at++)
      for (size_t r = 0; r < sizeof repl - 1; r++) {
        memcpy(d, trusted_docs[i], len);
        d[at] = repl[r];
        check_same(ps, NP, d, len);
        jscan_val_t v[NP];
        if (jscan_scan_trusted(ps, d, len, v) == 0)
          for (size_t k = 0; k < NP; k++)
            if (v[k].type != JSCAN_NONE && (v[k].p < d || v[k].p + v[k].n > d + len))
              FAILF("span outside the buffer");
      }
    free(d);
  }
  jscan_val_t v[NP];
  CHECK_INT(jscan_scan_trusted(ps, "{\"type\":\"open", 13, v), -1);
  CHECK_INT(jscan_scan_trusted(ps, "{\"skip\":{\"a\":[1,2}", 18, v), -1);
  CHECK_INT(jscan_scan_trusted(ps, "[1]", 3, v), -1);
  CHECK_INT(jscan_scan_trusted(ps, "{\"type\":\"\\", 10, v), -1);
}

int main(void) {
  ps = jscan_compile(paths, NP);
  RUN(extracts_requested_paths);
  RUN(rejects_malformed);
  RUN(agrees_with_cjson);
  RUN(truncates_at_character_boundary);
  RUN(bad_paths);
  RUN(special_bytes_at_every_offset);
  RUN(trusted_matches_validating);
  RUN(trusted_survives_damage);
  jscan_paths_free(ps);
  return TEST_REPORT("test_jscan");
}
