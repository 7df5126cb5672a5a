/* Unit tests for evdoc: reads, edits, and that the written document is the client's bytes
 * with exactly the edits applied (checked against cJSON). */
#include <cjson/cJSON.h>

#include "evdoc.h"

#include "test.h"

static evdoc_t *d;

static char *written(void) {
  buf_t b = BUF_INIT;
  evdoc_write(d, &b);
  char *s = strndup(b.data ? b.data : "", b.len);
  buf_free(&b);
  return s;
}

TEST(load_results) {
  CHECK_INT(evdoc_load(d, "{\"a\":1}", 7), 0);
  CHECK_INT(evdoc_load(d, " [1] ", 5), -2);
  CHECK_INT(evdoc_load(d, "\"s\"", 3), -2);
  CHECK_INT(evdoc_load(d, "{\"a\":}", 6), -1);
  CHECK_INT(evdoc_load(d, "", 0), -1);
  CHECK_INT(evdoc_load(d, "{\"a\":1,\"a\":2}", 13), -3);
}

TEST(untouched_is_byte_identical) {
  const char *j = "{ \"type\" : \"track\",\"properties\":{\"price\":1.50e1, \"n\":[1, 2]} }";
  CHECK_INT(evdoc_load(d, j, strlen(j)), 0);
  char *w = written();
  CHECK_STR(w, "{ \"type\" : \"track\",\"properties\":{\"price\":1.50e1, \"n\":[1, 2]} }");
  free(w);
}

TEST(edits_apply) {
  const char *j = "{\"type\":\"track\",\"writeKey\":\"wk\",\"userId\":42,\"context\":{\"ip\":\"1.2.3.4\","
                  "\"page\":{\"url\":\"https://x/\"}},\"properties\":{\"price\":1.50e1}}";
  CHECK_INT(evdoc_load(d, j, strlen(j)), 0);
  char buf[64];
  CHECK_STR(evdoc_str(d, "context.page.url", buf, sizeof buf), "https://x/");
  CHECK(evdoc_get(d, "userId").type == JSCAN_NUMBER && evdoc_get(d, "userId").num == 42);
  evdoc_del(d, "writeKey");
  evdoc_set_str(d, "userId", "42");
  evdoc_set_str(d, "context.ip", "1.2.3.0");
  evdoc_set_str(d, "context.location.country", "DE");
  evdoc_set_bool(d, "context.consent.marketing", 0);
  evdoc_set_str(d, "receivedAt", "2026-01-01T00:00:00.000Z");
  evdoc_set_str(d, "context.campaign.name", "q\"uote");
  CHECK_STR(evdoc_str(d, "userId", buf, sizeof buf), "42");
  CHECK_STR(evdoc_str(d, "context.ip", buf, sizeof buf), "1.2.3.0");
  CHECK_STR(evdoc_str(d, "context.location.country", buf, sizeof buf), "DE");
  CHECK(evdoc_get(d, "writeKey").type == JSCAN_NONE);
  char *w = written();
  CHECK_STR(w, "{\"type\":\"track\",\"userId\":\"42\",\"context\":{\"ip\":\"1.2.3.0\",\"page\":{\"url\":\"https://x/\"},"
               "\"location\":{\"country\":\"DE\"},\"consent\":{\"marketing\":false},\"campaign\":{\"name\":\"q\\\"uote\"}},"
               "\"properties\":{\"price\":1.50e1},\"receivedAt\":\"2026-01-01T00:00:00.000Z\"}");
  cJSON *c = cJSON_Parse(w);
  CHECK(c != NULL);
  cJSON_Delete(c);
  free(w);
}

/* A new member set whole and then edited below (or retired by a set above) is written
 * with exactly the live edits, whatever their order. */
TEST(new_members_with_edits_below) {
  const char *j = "{\"type\":\"track\"}";
  CHECK_INT(evdoc_load(d, j, strlen(j)), 0);
  evdoc_set_raw(d, "a", "{\"x\":1}", 7);
  evdoc_set_str(d, "a.y", "2");
  evdoc_set_raw(d, "b", "{\"x\":1,\"z\":3}", 13);
  evdoc_set_str(d, "b.y", "v");
  evdoc_del(d, "b.z");
  evdoc_set_str(d, "c.d", "1");
  evdoc_set_raw(d, "c", "{\"e\":2}", 7);
  evdoc_set_raw(d, "f", "{\"g\":1}", 7);
  evdoc_set_str(d, "f.g.h", "i");
  evdoc_set_str(d, "k", "v");
  evdoc_set_str(d, "k.m", "w");
  evdoc_set_str(d, "n", "o");
  evdoc_set_str(d, "p.q", "r");
  evdoc_del(d, "p.q");
  char *w = written();
  CHECK_STR(w, "{\"type\":\"track\",\"a\":{\"x\":1,\"y\":\"2\"},\"b\":{\"x\":1,\"y\":\"v\"},"
               "\"c\":{\"e\":2},\"f\":{\"g\":{\"h\":\"i\"}},\"k\":{\"m\":\"w\"},\"n\":\"o\","
               "\"p\":{}}"); /* p made by p.q, which is gone */
  free(w);
}

/* The constant-path calls read and edit exactly as the dotted-string calls, in any
 * evdoc (each keeps its own parse), including a path too long for the parse cache. */
TEST(constant_paths_match_dotted) {
  static evdoc_path_t url = EVDOC_PATH("context.page.url"), ip = EVDOC_PATH("context.ip"),
                      key = EVDOC_PATH("writeKey"), consent = EVDOC_PATH("context.consent"),
                      loc = EVDOC_PATH("context.location"), bad = EVDOC_PATH("a..b"),
                      lng = EVDOC_PATH("properties.aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
                                       "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
  const char *j = "{\"type\":\"track\",\"writeKey\":\"wk\",\"context\":{\"ip\":\"1.2.3.4\","
                  "\"page\":{\"url\":\"https://x/\"}},\"properties\":{}}";
  evdoc_t *other = evdoc_new();
  for (int round = 0; round < 2; round++) {
    evdoc_t *e = round ? other : d;
    CHECK_INT(evdoc_load(e, j, strlen(j)), 0);
    char buf[64];
    CHECK_STR(evdoc_str_p(e, &url, buf, sizeof buf), "https://x/");
    CHECK(evdoc_get_p(e, &bad).type == JSCAN_NONE);
    evdoc_del_p(e, &key);
    if (round) /* the same edit, the string known plain */
      evdoc_set_plain_p(e, &ip, "1.2.3.0", 7);
    else
      evdoc_set_str_p(e, &ip, "1.2.3.0");
    evdoc_set_plain_p(e, &lng, "v", 1); /* a path too long to keep: parsed each time */
    CHECK_STR(evdoc_str_p(e, &lng, buf, sizeof buf), "v");
    evdoc_set_bool_p(e, &consent, 1);
    const char *kv[] = {"country", "DE"};
    evdoc_set_strings_p(e, &loc, kv, 1);
    evdoc_set_raw_p(e, &lng, "7", 1);
    CHECK(evdoc_get_p(e, &lng).type == JSCAN_NUMBER && evdoc_get_p(e, &lng).num == 7);
    CHECK(evdoc_get_p(e, &key).type == JSCAN_NONE);
    CHECK_STR(evdoc_str(e, "context.ip", buf, sizeof buf), "1.2.3.0");
    buf_t b = BUF_INIT;
    evdoc_write(e, &b);
    buf_putc(&b, 0);
    CHECK_STR(b.data, "{\"type\":\"track\",\"context\":{\"ip\":\"1.2.3.0\",\"page\":{\"url\":\"https://x/\"},"
                      "\"consent\":true,\"location\":{\"country\":\"DE\"}},\"properties\":{\"aaaaaaaaaaaaaaaaaaaa"
                      "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\":7}}");
    buf_free(&b);
  }
  evdoc_free(other);
}

TEST(set_replaces_non_object_and_order_rules) {
  const char *j = "{\"context\":\"str\",\"traits\":{\"email\":\"a@b\",\"plan\":\"x\"}}";
  CHECK_INT(evdoc_load(d, j, strlen(j)), 0);
  evdoc_set_str(d, "context.ip", "1.2.3.0");
  evdoc_set_str(d, "traits.email", "p1_x");
  char *w = written();
  CHECK_STR(w, "{\"context\":{\"ip\":\"1.2.3.0\"},\"traits\":{\"email\":\"p1_x\",\"plan\":\"x\"}}");
  free(w);
  /* Setting a parent after a child retires the child; a child after a parent applies inside. */
  CHECK_INT(evdoc_load(d, j, strlen(j)), 0);
  evdoc_set_str(d, "traits.plan", "y");
  evdoc_set_raw(d, "traits", "{\"a\":1}", 7);
  evdoc_set_str(d, "traits.b", "2");
  w = written();
  CHECK_STR(w, "{\"context\":\"str\",\"traits\":{\"a\":1,\"b\":\"2\"}}");
  free(w);
  /* Delete then set below: a fresh object. */
  CHECK_INT(evdoc_load(d, j, strlen(j)), 0);
  evdoc_del(d, "traits");
  CHECK(evdoc_get(d, "traits.email").type == JSCAN_NONE);
  evdoc_set_str(d, "traits.k", "v");
  w = written();
  CHECK_STR(w, "{\"context\":\"str\",\"traits\":{\"k\":\"v\"}}");
  free(w);
}

/* Names of different lengths whose bytes once hashed the same ("b" and "ab", "ip" and
 * "hpp", "cc" and "bcc": the length cancelled against the first byte) are different
 * members: reads find the right one, and an edit at one leaves the other alone. */
TEST(names_that_hashed_alike_stay_apart) {
  const char *j = "{\"context\":{\"hpp\":\"client\"},\"properties\":{\"ab\":1,\"bcc\":2}}";
  CHECK_INT(evdoc_load(d, j, strlen(j)), 0);
  CHECK(evdoc_get(d, "properties.b").type == JSCAN_NONE);
  CHECK(evdoc_get(d, "properties.cc").type == JSCAN_NONE);
  CHECK(evdoc_get(d, "context.ip").type == JSCAN_NONE);
  evdoc_set_str(d, "context.ip", "1.2.3.0");
  evdoc_set_str(d, "properties.b", "x");
  char buf[32];
  CHECK_STR(evdoc_str(d, "context.hpp", buf, sizeof buf), "client");
  CHECK(evdoc_get(d, "properties.ab").type == JSCAN_NUMBER);
  char *w = written();
  CHECK_STR(w, "{\"context\":{\"hpp\":\"client\",\"ip\":\"1.2.3.0\"},"
               "\"properties\":{\"ab\":1,\"bcc\":2,\"b\":\"x\"}}");
  free(w);
}

TEST(keep_only) {
  const char *j = "{\"type\":\"track\",\"event\":\"E\",\"userId\":\"u\",\"context\":{\"ip\":\"x\"},\"messageId\":\"m\"}";
  CHECK_INT(evdoc_load(d, j, strlen(j)), 0);
  evdoc_set_str(d, "receivedAt", "t");
  evdoc_set_str(d, "context.ip", "y");
  static const char *const keep[] = {"type", "event", "messageId", "receivedAt", NULL};
  evdoc_keep_only(d, keep);
  evdoc_set_bool(d, "anonymous", 1);
  char *w = written();
  CHECK_STR(w, "{\"type\":\"track\",\"event\":\"E\",\"messageId\":\"m\",\"receivedAt\":\"t\",\"anonymous\":true}");
  free(w);
}

TEST(escaped_keys_and_members) {
  const char *j = "{\"ty\\u0070e\":\"page\",\"context\":{\"a.b\":1,\"ip\":\"z\"}}";
  CHECK_INT(evdoc_load(d, j, strlen(j)), 0);
  char buf[32];
  CHECK_STR(evdoc_str(d, "type", buf, sizeof buf), "page");
  const jscan_member_t *m;
  CHECK_INT(evdoc_members(d, "context", &m), 2);
  const char *segs[] = {"context", "a.b"};
  CHECK(evdoc_get_v(d, segs, 2).num == 1);
  evdoc_set_raw_v(d, segs, 2, "2", 1);
  evdoc_set_str(d, "type", "track");
  char *w = written();
  CHECK_STR(w, "{\"ty\\u0070e\":\"track\",\"context\":{\"a.b\":2,\"ip\":\"z\"}}");
  free(w);
}

TEST(reuse_many_times) {
  for (int i = 0; i < 2000; i++) {
    char j[128];
    int n = snprintf(j, sizeof j, "{\"i\":%d,\"context\":{\"x\":%d}}", i, i);
    CHECK_INT(evdoc_load(d, j, (size_t)n), 0);
    evdoc_set_str(d, "context.y", "v");
    buf_t b = BUF_INIT;
    evdoc_write(d, &b);
    cJSON *c = cJSON_Parse(b.data);
    if (!c || cJSON_GetObjectItem(cJSON_GetObjectItem(c, "context"), "x")->valueint != i) {
      FAILF("iteration %d wrote %s", i, b.data);
      cJSON_Delete(c);
      buf_free(&b);
      break;
    }
    cJSON_Delete(c);
    buf_free(&b);
  }
}

static int same_val(jscan_val_t a, jscan_val_t b) {
  return a.type == b.type && a.n == b.n && a.escaped == b.escaped && a.num == b.num &&
         (a.n == 0 || memcmp(a.p, b.p, a.n) == 0);
}

/* evdoc_get_top answers every name as evdoc_get does: absent, escaped keys, numbers,
 * dotted names, and after edits at, above or below. */
TEST(get_top_matches_get) {
  static const char *const names[] = {"type", "userId", "name", "missing", "n",
                                      "context", "context.ip", "dup", "traits", "type"};
  const size_t n = sizeof names / sizeof names[0];
  const char *j = "{\"type\":\"track\",\"userId\":\"u\\\"1\",\"na\\u006de\":\"x\",\"n\":-2.5e1,"
                  "\"context\":{\"ip\":\"1.2.3.4\"},\"dup\":1}";
  for (int round = 0; round < 4; round++) {
    CHECK_INT(evdoc_load_trusted(d, j, strlen(j)), 0);
    if (round >= 1) evdoc_set_str(d, "type", "page");           /* at */
    if (round >= 2) evdoc_set_str(d, "traits.plan", "pro");     /* below */
    if (round >= 3) evdoc_del(d, "context");                    /* above context.ip */
    jscan_val_t top[16];
    evdoc_get_top(d, names, n, top);
    for (size_t i = 0; i < n; i++) {
      jscan_val_t one = evdoc_get(d, names[i]);
      if (!same_val(top[i], one)) FAILF("round %d: %s differs", round, names[i]);
    }
    CHECK(top[4].type == JSCAN_NUMBER && top[4].num == -25);
    CHECK(top[7].type == JSCAN_NUMBER && top[7].num == 1);
    CHECK(top[2].type == JSCAN_STRING && top[2].n == 1 && top[2].p[0] == 'x'); /* escaped key */
    CHECK_INT(top[3].type, JSCAN_NONE);
    CHECK_INT(top[8].type, round >= 2 ? JSCAN_OBJECT : JSCAN_NONE);
  }
  /* Another table (its parse is remembered by address): answered for its own names. */
  static const char *const other[] = {"dup", "n"};
  jscan_val_t two[2];
  evdoc_get_top(d, other, 2, two);
  CHECK(two[0].type == JSCAN_NUMBER && two[0].num == 1);
  CHECK(two[1].type == JSCAN_NUMBER && two[1].num == -25);
  evdoc_get_top(d, names, 1, two); /* the first table again, fewer names */
  CHECK_INT(two[0].type, JSCAN_STRING);
}

TEST(big_nested_object_keeps_every_member) {
  /* context with 1000 members, then an edit inside it: nothing may be lost. */
  buf_t j = BUF_INIT;
  buf_puts(&j, "{\"type\":\"track\",\"context\":{");
  for (int i = 0; i < 1000; i++) buf_printf(&j, "%s\"k%d\":%d", i ? "," : "", i, i);
  buf_puts(&j, "}}");
  CHECK_INT(evdoc_load(d, j.data, j.len), 0);
  evdoc_set_str(d, "context.ip", "1.2.3.0");
  CHECK(evdoc_get(d, "context.k999").num == 999);
  buf_t out = BUF_INIT;
  evdoc_write(d, &out);
  cJSON *c = cJSON_Parse(out.data);
  cJSON *ctx = cJSON_GetObjectItem(c, "context");
  CHECK_INT(cJSON_GetArraySize(ctx), 1001);
  CHECK(cJSON_GetObjectItem(ctx, "k500") && cJSON_GetObjectItem(ctx, "k500")->valueint == 500);
  cJSON_Delete(c);
  buf_free(&out);
  buf_free(&j);
}

/* Reads are remembered per load (path nodes): a read after an edit at, above or below
 * the path sees the edit, the next load's bytes are read afresh, paths sharing a prefix
 * each find their own member, and reads stay right once the node table is full. */
TEST(remembered_reads_follow_edits_and_loads) {
  static evdoc_path_t url = EVDOC_PATH("context.page.url"), page = EVDOC_PATH("context.page"),
                      ref = EVDOC_PATH("context.page.referrer"), n = EVDOC_PATH("n");
  const char *j1 = "{\"n\":1,\"context\":{\"page\":{\"url\":\"https://a/\",\"referrer\":\"r\"}}}";
  const char *j2 = "{\"context\":{\"page\":{\"referrer\":\"s\",\"url\":\"https://b/\"}},\"n\":2}";
  char buf[64];
  CHECK_INT(evdoc_load(d, j1, strlen(j1)), 0);
  CHECK_STR(evdoc_str_p(d, &url, buf, sizeof buf), "https://a/");
  CHECK_STR(evdoc_str_p(d, &ref, buf, sizeof buf), "r");
  CHECK(evdoc_get_p(d, &n).num == 1);
  evdoc_set_str_p(d, &url, "https://c/"); /* at */
  CHECK_STR(evdoc_str_p(d, &url, buf, sizeof buf), "https://c/");
  CHECK_STR(evdoc_str_p(d, &ref, buf, sizeof buf), "r");
  evdoc_del(d, "context.page"); /* above */
  CHECK_INT(evdoc_get_p(d, &url).type, JSCAN_NONE);
  CHECK_INT(evdoc_get_p(d, &ref).type, JSCAN_NONE);
  evdoc_set_str(d, "context.page.url", "https://d/"); /* set again under the deleted one */
  CHECK_STR(evdoc_str_p(d, &url, buf, sizeof buf), "https://d/");
  CHECK_INT(evdoc_get_p(d, &ref).type, JSCAN_NONE);
  CHECK_INT(evdoc_load(d, j2, strlen(j2)), 0); /* the next event: nothing carried over */
  CHECK_STR(evdoc_str_p(d, &url, buf, sizeof buf), "https://b/");
  CHECK_STR(evdoc_str_p(d, &ref, buf, sizeof buf), "s");
  CHECK_INT(evdoc_get_p(d, &page).type, JSCAN_OBJECT);
  CHECK(evdoc_get_p(d, &n).num == 2);
  /* A thousand paths made at run time (more than the nodes kept), read twice. */
  buf_t big = BUF_INIT;
  buf_puts(&big, "{\"o\":{");
  for (int i = 0; i < 1000; i++) buf_printf(&big, "%s\"k%d\":{\"v\":%d}", i ? "," : "", i, i);
  buf_puts(&big, "}}");
  CHECK_INT(evdoc_load(d, big.data, big.len), 0);
  for (int round = 0; round < 2; round++)
    for (int i = 0; i < 1000; i++) {
      char path[32];
      snprintf(path, sizeof path, "o.k%d.v", i);
      jscan_val_t v = evdoc_get(d, path);
      if (v.type != JSCAN_NUMBER || v.num != i) FAILF("round %d: %s", round, path);
    }
  CHECK_STR(evdoc_str_p(d, &url, buf, sizeof buf) ? buf : "absent", "absent");
  buf_free(&big);
}

/* A value set with evdoc_set_plain_p reads back through any path of its text until an
 * edit at or above it replaces it; edits below it and other loads do not leak into it. */
TEST(plain_edits_read_back) {
  static evdoc_path_t ts = EVDOC_PATH("timestamp"), ts2 = EVDOC_PATH("timestamp"),
                      ip = EVDOC_PATH("context.ip"), ip2 = EVDOC_PATH("context.ip");
  const char *j = "{\"timestamp\":\"old\",\"context\":{\"ip\":\"1.2.3.4\",\"k\":1}}";
  char buf[64];
  CHECK_INT(evdoc_load(d, j, strlen(j)), 0);
  evdoc_set_plain_p(d, &ts, "2026-01-01T00:00:00.000Z", 24);
  CHECK_STR(evdoc_str_p(d, &ts2, buf, sizeof buf), "2026-01-01T00:00:00.000Z");
  evdoc_set_str(d, "timestamp", "again"); /* at, by another call */
  CHECK_STR(evdoc_str_p(d, &ts2, buf, sizeof buf), "again");
  evdoc_set_plain_p(d, &ts, "t2", 2);
  evdoc_set_raw(d, "timestamp.x", "1", 1); /* below: a read still sees the value set */
  CHECK_STR(evdoc_str_p(d, &ts, buf, sizeof buf), "t2");
  evdoc_set_plain_p(d, &ip, "1.2.3.0", 7);
  CHECK_STR(evdoc_str_p(d, &ip2, buf, sizeof buf), "1.2.3.0");
  evdoc_set_raw(d, "context", "{\"ip\":\"x\"}", 10); /* above */
  CHECK_STR(evdoc_str_p(d, &ip2, buf, sizeof buf), "x");
  evdoc_set_plain_p(d, &ip, "9.9.9.0", 7);
  evdoc_del_p(d, &ip2); /* deleted */
  CHECK_INT(evdoc_get_p(d, &ip).type, JSCAN_NONE);
  evdoc_set_plain_p(d, &ip, "42", 2);
  evdoc_set_raw_p(d, &ip2, "42", 2); /* a number now */
  CHECK(evdoc_get_p(d, &ip).type == JSCAN_NUMBER && evdoc_get_p(d, &ip).num == 42);
  CHECK_INT(evdoc_load(d, j, strlen(j)), 0); /* the next event: its own values */
  CHECK_STR(evdoc_str_p(d, &ts, buf, sizeof buf), "old");
  CHECK_STR(evdoc_str_p(d, &ip, buf, sizeof buf), "1.2.3.4");
}

/* A path's memo is found by its text: the same text in another buffer reads the same,
 * a buffer reused for another path never returns the old one's value, and the paths
 * read by name on every event do not crowd one bucket (more than 4 evict each other). */
TEST(memo_by_text) {
  const char *j = "{\"type\":\"track\",\"context\":{\"ip\":\"1.2.3.4\",\"page\":{\"url\":\"u\"}}}";
  CHECK_INT(evdoc_load(d, j, strlen(j)), 0);
  char a[32], b[32], out[32];
  strcpy(a, "context.page.url");
  strcpy(b, "context.page.url");
  CHECK_INT(evdoc_memo_bucket(a, strlen(a)), evdoc_memo_bucket(b, strlen(b)));
  CHECK_STR(evdoc_str(d, a, out, sizeof out), "u");
  CHECK_STR(evdoc_str(d, b, out, sizeof out), "u");
  strcpy(a, "context.ip"); /* the same buffer, another path */
  CHECK_STR(evdoc_str(d, a, out, sizeof out), "1.2.3.4");
  strcpy(a, "context.page.urx");
  CHECK_INT(evdoc_get(d, a).type, JSCAN_NONE);
  static const char *const hot[] = {"type", "context", "integrations", "writeKey", "batch",
                                    "userId", "anonymousId", "event", "properties.url",
                                    "properties", "traits", "timestamp"};
  int per[64] = {0};
  for (size_t i = 0; i < sizeof hot / sizeof hot[0]; i++) {
    size_t k = evdoc_memo_bucket(hot[i], strlen(hot[i]));
    CHECK(k < 64);
    if (k < 64 && ++per[k] > 4) FAILF("bucket %zu holds more than 4 hot paths", k);
  }
}

/* evdoc_load_elems: the same answer as evdoc_load, plus the "batch" array's elements as
 * jscan_array_next gives them, and the recorded member is the one evdoc_get finds. */
TEST(load_elems_records_the_batch) {
  jscan_elems_t el = {.key = "batch", .keylen = 5, .max = 2};
  const char *j = "{\"writeKey\":\"wk\", \"batch\" : [ {\"a\":[1,{\"b\":\"]\"}]} , \"s\\\"q\", 7 ,"
                  "{\"c\":{}} ], \"context\":{\"batch\":[9]}}";
  CHECK_INT(evdoc_load_elems(d, j, strlen(j), &el), 0);
  jscan_val_t arr = evdoc_get(d, "batch");
  CHECK_INT(arr.type, JSCAN_ARRAY);
  CHECK(el.val.p == arr.p && el.val.n == arr.n);
  CHECK_INT(el.n, 4); /* counted past max */
  size_t pos = 0, i = 0;
  jscan_val_t e;
  while (jscan_array_next(&arr, &pos, &e) == 1) {
    if (i < 2) {
      CHECK_INT(el.v[i].type, e.type);
      CHECK(el.v[i].p == e.p && el.v[i].n == e.n);
    }
    i++;
  }
  CHECK_INT(i, 4);
  char buf[32];
  CHECK_STR(evdoc_str(d, "writeKey", buf, sizeof buf), "wk");

  /* What evdoc_load refuses, evdoc_load_elems refuses alike. */
  const char *bad[] = {"{\"batch\":[1,]}", "[1]", "{\"batch\":[],\"batch\":[]}", ""};
  for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++)
    CHECK_INT(evdoc_load_elems(d, bad[k], strlen(bad[k]), &el), evdoc_load(d, bad[k], strlen(bad[k])));

  /* No such member, or not an array: nothing recorded. */
  const char *none = "{\"batch\":{\"x\":1}}";
  CHECK_INT(evdoc_load_elems(d, none, strlen(none), &el), 0);
  CHECK_INT(el.val.type, JSCAN_OBJECT);
  CHECK_INT(el.n, 0);
  CHECK_INT(evdoc_load_elems(d, "{\"x\":1}", 7, &el), 0);
  CHECK_INT(el.val.type, JSCAN_NONE);
  CHECK_INT(el.n, 0);
  jscan_elems_free(&el);
}

/* A node remembers the index of its object for its children's first reads. With more
 * objects read than the index cache keeps, a slot is given to another object: every read
 * must still find its own object's member, in every load, and the written document must
 * carry the edits. */
TEST(reads_past_the_index_cache) {
  /* A fresh document: earlier tests filled the shared one's node table. */
  evdoc_t *e = evdoc_new();
  char j[4096], path[32], buf[32], want[32];
  size_t n = (size_t)sprintf(j, "{");
  for (int i = 0; i < 40; i++)
    n += (size_t)sprintf(j + n, "%s\"o%d\":{\"x\":%d,\"y\":\"v%d\"}", i ? "," : "", i, i, i);
  n += (size_t)sprintf(j + n, "}");
  for (int round = 0; round < 3; round++) {
    CHECK_INT(evdoc_load(e, j, n), 0);
    for (int i = 0; i < 40; i++) {
      sprintf(path, "o%d.x", i);
      jscan_val_t v = evdoc_get(e, path);
      CHECK_INT(v.type, JSCAN_NUMBER);
      CHECK_INT((int)v.num, i);
    }
    for (int i = 0; i < 40; i++) { /* the same objects again, their slots now reused */
      sprintf(path, "o%d.y", i);
      sprintf(want, "v%d", i);
      CHECK_STR(evdoc_str(e, path, buf, sizeof buf), want);
    }
    evdoc_set_str(e, "o3.z", "new");
    CHECK_STR(evdoc_str(e, "o3.z", buf, sizeof buf), "new");
    CHECK_INT(evdoc_get(e, "o40.x").type, JSCAN_NONE);
  }
  buf_t w = BUF_INIT;
  evdoc_write(e, &w);
  CHECK(strstr(w.data, "\"o3\":{\"x\":3,\"y\":\"v3\",\"z\":\"new\"},\"o4\"") != NULL);
  buf_free(&w);
  evdoc_free(e);
}

/* An element loaded from the objects its batch's walk recorded reads, edits and writes
 * as the same bytes loaded by evdoc_load_trusted: with escaped keys, more nested objects
 * than the index cache holds, objects inside arrays, and refusals. */
TEST(load_indexed_matches_trusted) {
  evdoc_t *a = evdoc_new(), *b = evdoc_new(), *body = evdoc_new();
  char j[8192];
  size_t n = (size_t)sprintf(j, "{\"batch\":[{\"type\":\"t\",\"c\\u006fntext\":{\"page\":"
                                "{\"url\":\"u\"}},\"context\":{\"ip\":\"1.2.3.4\",\"page\":"
                                "{\"url\":\"https://x/\",\"l\":[{\"m\":1}]}},\"props\":{");
  for (int i = 0; i < 40; i++) n += (size_t)sprintf(j + n, "%s\"o%d\":{\"x\":%d}", i ? "," : "", i, i);
  n += (size_t)sprintf(j + n, "}},{\"a\":1,\"a\":2},{},7,{\"deep\":{\"a\":{\"b\":{\"c\":{\"d\":1}}}}}]}");
  jscan_tape_t t = {0};
  jscan_elems_t el = {.key = "batch", .keylen = 5, .max = 10, .tape = &t};
  REQUIRE(evdoc_load_elems(body, j, n, &el) == 0 && el.n == 5);
  static const char *const paths[] = {"type", "context", "context.ip", "context.page.url",
                                      "context.page.l", "context.page",
                                      "props.o0.x", "props.o39.x", "props.o20", "deep.a.b.c.d",
                                      "deep.a.b.c", "a", "missing.x"};
  for (size_t i = 0; i < el.n; i++) {
    const jscan_val_t *v = &el.v[i];
    const jscan_obj_t *o = t.obj + el.obj[2 * i];
    size_t no = el.obj[2 * i + 1] - el.obj[2 * i];
    int ra = evdoc_load_indexed(a, v->p, v->n, o, no), rb = evdoc_load_trusted(b, v->p, v->n);
    CHECK_INT(ra, rb);
    if (ra) continue;
    for (int round = 0; round < 2; round++) {
      for (size_t k = 0; k < sizeof paths / sizeof paths[0]; k++)
        if (!same_val(evdoc_get(a, paths[k]), evdoc_get(b, paths[k])))
          FAILF("element %zu round %d: %s differs", i, round, paths[k]);
      const char *edits[] = {"context.ip", "props.o7.y", "deep.a.b.z"};
      for (size_t k = 0; k < 3; k++) {
        evdoc_set_str(a, edits[k], "e");
        evdoc_set_str(b, edits[k], "e");
      }
    }
    buf_t wa = BUF_INIT, wb = BUF_INIT;
    evdoc_write(a, &wa);
    evdoc_write(b, &wb);
    CHECK(wa.len == wb.len && !memcmp(wa.data, wb.data, wa.len));
    buf_free(&wa);
    buf_free(&wb);
  }
  /* Objects from elsewhere (not this element's): indexed as usual. */
  CHECK_INT(evdoc_load_indexed(a, el.v[2].p, el.v[2].n, t.obj, 1), 0);
  CHECK_INT(evdoc_get(a, "type").type, JSCAN_NONE);
  jscan_elems_free(&el);
  jscan_tape_free(&t);
  evdoc_free(a);
  evdoc_free(b);
  evdoc_free(body);
}

int main(void) {
  d = evdoc_new();
  RUN(load_results);
  RUN(untouched_is_byte_identical);
  RUN(edits_apply);
  RUN(new_members_with_edits_below);
  RUN(constant_paths_match_dotted);
  RUN(set_replaces_non_object_and_order_rules);
  RUN(names_that_hashed_alike_stay_apart);
  RUN(keep_only);
  RUN(escaped_keys_and_members);
  RUN(reuse_many_times);
  RUN(big_nested_object_keeps_every_member);
  RUN(get_top_matches_get);
  RUN(remembered_reads_follow_edits_and_loads);
  RUN(plain_edits_read_back);
  RUN(memo_by_text);
  RUN(load_elems_records_the_batch);
  RUN(reads_past_the_index_cache);
  RUN(load_indexed_matches_trusted);
  evdoc_free(d);
  return TEST_REPORT("test_evdoc");
}
