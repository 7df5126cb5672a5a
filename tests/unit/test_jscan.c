/* Unit tests for one-pass field extraction, checked against cJSON on the same documents. */
#include <cjson/cJSON.h>

#include "jscan.h"
#include "util/buf.h"

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
  jscan_val_t a[JSCAN_MAX_PATHS], b[JSCAN_MAX_PATHS];
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

/* Random valid documents of up to a few KiB: containers to skip whose strings hold
 * brackets, escaped quotes and backslashes at every offset of the 64-byte blocks the
 * trusted skip works in. The trusted scan and indexer must agree with the validating
 * ones, on the whole documents and on every prefix of some (the zero-padded last block,
 * containers that do not close). */
static uint64_t rng = 88172645463325252ull;
static unsigned rnd(unsigned n) {
  rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
  return (unsigned)(rng % n);
}

static void gen_string(buf_t *b) {
  static const char *const parts[] = {"a", "bc", "{", "}", "[", "]", "\\\"", "\\\\",
                                      "\\n", "\\u00e9", ",", ":", " ", "xyz0123456789"};
  buf_putc(b, '"');
  for (unsigned k = rnd(40); k; k--) buf_puts(b, parts[rnd(sizeof parts / sizeof *parts)]);
  buf_putc(b, '"');
}

static void gen_value(buf_t *b, int depth) {
  unsigned kind = rnd(depth < 5 ? 7 : 4);
  switch (kind) {
  case 0: case 1: gen_string(b); break;
  case 2: buf_puts(b, rnd(2) ? "-12.5e3" : "7"); break;
  case 3: buf_puts(b, rnd(2) ? "true" : "null"); break;
  case 4: case 5: {
    buf_putc(b, '{');
    for (unsigned k = rnd(6), i = 0; i < k; i++) {
      if (i) buf_putc(b, ',');
      gen_string(b);
      buf_puts(b, rnd(4) ? ":" : " : ");
      gen_value(b, depth + 1);
    }
    buf_putc(b, '}');
    break;
  }
  default: {
    buf_putc(b, '[');
    for (unsigned k = rnd(6), i = 0; i < k; i++) {
      if (i) buf_puts(b, rnd(4) ? "," : " ,\n");
      gen_value(b, depth + 1);
    }
    buf_putc(b, ']');
  }
  }
}

TEST(trusted_long_random_documents) {
  buf_t b = {0};
  for (int doc = 0; doc < 3000; doc++) {
    buf_reset(&b);
    buf_puts(&b, "{\"skip\":");
    gen_value(&b, 1);
    buf_puts(&b, ",\"type\":");
    gen_string(&b);
    buf_puts(&b, ",\"context\":{\"page\":{\"url\":");
    gen_string(&b);
    buf_puts(&b, "},\"other\":");
    gen_value(&b, 2);
    buf_puts(&b, "},\"properties\":{\"revenue\":3,\"list\":");
    gen_value(&b, 3);
    buf_puts(&b, "}}");
    const char *d = b.data;
    size_t len = b.len;
    jscan_member_t a[16], t[16];
    long na = jscan_members(d, len, a, 16), nt = jscan_members_trusted(d, len, t, 16);
    if (na != 4) FAILF("generated document %d is not a valid object of 4 members", doc);
    CHECK_INT(nt, na);
    for (long i = 0; i < na && i < nt; i++)
      if (a[i].val.p != t[i].val.p || a[i].val.n != t[i].val.n || a[i].val.type != t[i].val.type)
        FAILF("document %d member %ld: spans differ", doc, i);
    check_same(ps, NP, d, len);
    if (doc % 100 == 0) /* every prefix: copies exactly as long, for the sanitizers */
      for (size_t cut = 0; cut < len; cut++) {
        char *c = malloc(cut ? cut : 1);
        memcpy(c, d, cut);
        check_same(ps, NP, c, cut);
        jscan_members_trusted(c, cut, t, 16);
        free(c);
      }
  }
  buf_free(&b);
}

/* The trusted scan tries the key a member had in the document before (per thread): a key
 * that only starts like it, the same key with a space before ':', an escaped one, keys in
 * another order, and another path set scanning in between all still read right. */
TEST(trusted_key_guesses) {
  static const char *const seq[] = {
      "{\"type\":\"a\",\"userId\":\"u\",\"context\":{\"page\":{\"url\":\"x\"}}}",
      "{\"type\":\"b\",\"userId\":\"v\",\"context\":{\"page\":{\"url\":\"y\"}}}",
      "{\"typex\":\"c\",\"userIdX\":1,\"context\":{\"pagex\":{\"url\":\"z\"}}}",
      "{\"type\" :\"d\",\"user\\u0049d\":\"w\",\"context\":{\"page\":{\"url\":2}}}",
      "{\"userId\":\"e\",\"type\":\"f\",\"context\":{\"page\":{\"path\":3,\"url\":4}}}",
      "{\"type\":\"g\",\"userId\":\"h\",\"context\":{\"page\":{\"url\":\"i\"}}}",
  };
  const char *names[] = {"type", "userId", "context.page.url"};
  const char *other[] = {"userId", "type"};
  jscan_paths_t *pk = jscan_compile(names, 3), *po = jscan_compile(other, 2);
  for (int round = 0; round < 3; round++)
    for (size_t i = 0; i < sizeof seq / sizeof *seq; i++) {
      check_same(pk, 3, seq[i], strlen(seq[i]));
      if (round == 1) check_same(po, 2, seq[i], strlen(seq[i]));
    }
  jscan_paths_free(pk);
  jscan_paths_free(po);
  /* a guessed key (of every length a guess holds, and one more) and its ':' ending the
   * buffer, which holds nothing after them (found by fuzzing) */
  const char *tail_names[] = {"k", "k2345678901", "k23456789012"};
  jscan_paths_t *pt = jscan_compile(tail_names, 3);
  for (size_t klen = 1; klen <= 13; klen++)
    for (int round = 0; round < 4; round++) { /* even rounds: whole, the guesses made */
      char doc[80];
      int n = snprintf(doc, sizeof doc, "{\"%.*s\":\"15\",\"%.*s\":%s", (int)klen,
                       "k23456789012345", (int)klen, "x23456789012345",
                       round % 2 ? "" : "\"after the key, more than sixteen bytes\"}");
      char *exact = malloc((size_t)n); /* the sanitizers see every byte read past it */
      memcpy(exact, doc, (size_t)n);
      check_same(pt, 3, exact, (size_t)n);
      jscan_val_t v[3];
      (void)jscan_scan_trusted(pt, exact, (size_t)n, v);
      free(exact);
    }
  jscan_paths_free(pt);
}

/* Guesses past members a document leaves out: one, two or three members in a row missing
 * anywhere in an object of 20 (more than a row of guesses holds, so the skips meet the
 * row's end), members coming back, keys moved; and objects beyond the rows there are
 * (14 objects on the paths, 12 rows), which are matched without guesses. */
TEST(trusted_key_guesses_skip) {
  const char *names[] = {"k00", "k03", "k14", "k15", "k16", "k19", "obj.v", "obj.w"};
  jscan_paths_t *pk = jscan_compile(names, 8);
  char doc[1024];
  /* compact, then with the spaces and line breaks other writers put around members */
  static const char *const sep[] = {",", ", ", ",\n  ", " ,"}, *const colon[] = {":", ": ", ":", " :"};
  for (int round = 0; round < 2 * 4; round++)
    for (int gap = 0; gap <= 3; gap++)
      for (int from = 0; from < 20; from++) {
        size_t n = 0;
        doc[n++] = '{';
        for (int k = 0; k < 20; k++) {
          if (k >= from && k < from + gap) continue; /* left out */
          int key = round & 1 && k == from + gap ? 19 - k : k; /* odd rounds: a key moved */
          n += (size_t)snprintf(doc + n, sizeof doc - n, "%s\"k%02d\"%s\"v%d\"",
                                n > 1 ? sep[round / 2] : round / 2 == 2 ? "\n  " : "", key,
                                colon[round / 2], from);
        }
        n += (size_t)snprintf(doc + n, sizeof doc - n, ",\"obj\":{%s\"w\":%d}}",
                              gap & 1 ? "\"v\":1," : "", from);
        check_same(pk, 8, doc, n);
      }
  jscan_paths_free(pk);
  const char *many[14];
  char mb[14][16];
  for (int i = 0; i < 14; i++) {
    snprintf(mb[i], sizeof mb[i], "o%d.x", i);
    many[i] = mb[i];
  }
  jscan_paths_t *pm = jscan_compile(many, 14);
  for (int round = 0; round < 4; round++) {
    size_t n = 0;
    doc[n++] = '{';
    for (int i = 0; i < 14; i++) {
      int o = (i * (round + 1) + round) % 14;
      n += (size_t)snprintf(doc + n, sizeof doc - n, "%s\"o%d\":{\"y\":0,\"x\":%d}",
                            n > 1 ? "," : "", o, round * 100 + i);
    }
    doc[n++] = '}';
    check_same(pm, 14, doc, n);
  }
  jscan_paths_free(pm);
}

/* Numbers read by the trusted scan are exactly strtod's, bit for bit: decimals of up to
 * 15 digits with the point anywhere (the form read without strtod), around that bound,
 * with leading zeros, negative zero, exponents. */
TEST(trusted_numbers) {
  static const char *const fixed[] = {"0",     "-0",    "-0.0",  "0.1",    "0.3",   "273.24",
                                      "1e3",   "-2.5E-3", "123456789012345",  "1234567890123456",
                                      "999999999999999.9", "0.000000000000001", "9007199254740993",
                                      "100000000000000000000000", "4.35", "-19.99"};
  char num[40], doc[80];
  uint64_t x = 88172645463325252ull;
  for (int i = 0; i < 20000 + (int)(sizeof fixed / sizeof *fixed); i++) {
    if (i < (int)(sizeof fixed / sizeof *fixed)) {
      snprintf(num, sizeof num, "%s", fixed[i]);
    } else {
      x ^= x << 13, x ^= x >> 7, x ^= x << 17;
      int nd = 1 + (int)(x % 17), dot = (int)(x >> 8) % (nd + 1), n = 0;
      if (x >> 20 & 1) num[n++] = '-';
      for (int k = 0; k < nd; k++) {
        if (k == dot && k > 0) num[n++] = '.';
        num[n++] = (char)('0' + (k == 0 && nd > 1 ? 1 + (x >> (24 + k)) % 9 : (x >> (24 + k * 2)) % 10));
      }
      num[n] = 0;
    }
    int n = snprintf(doc, sizeof doc, "{\"properties\":{\"revenue\":%s}}", num);
    jscan_val_t v[NP];
    if (jscan_scan_trusted(ps, doc, (size_t)n, v) != 0 || v[2].type != JSCAN_NUMBER) {
      FAILF("trusted scan of %s", doc);
      continue;
    }
    double want = strtod(num, NULL);
    if (memcmp(&v[2].num, &want, sizeof want) != 0) FAILF("%s read as %.17g, strtod %.17g", num, v[2].num, want);
    check_same(ps, NP, doc, (size_t)n);
  }
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


/* Keys are matched in a 16-byte register when they are short and away from the buffer's
 * end, and the slow way otherwise: every length around 16, escaped keys, keys and values
 * ending at every distance from the end of an exactly sized buffer (the sanitizers check
 * each read), whitespace, skips inside and outside the paths, and duplicates. */
static const char *const key_paths[] = {
    "k",                                   /* 1 byte */
    "k23456789abcde",                      /* 14 */
    "k23456789abcdef",                     /* 15: the last that fits the register */
    "k23456789abcdefg",                    /* 16 */
    "k23456789abcdefgh",                   /* 17 */
    "a_key_longer_than_thirty_two_bytes_in_all", "esc\"aped", "o.inner.deep", "o.x", "o",
    "arr", "last"};
#define NKP (sizeof key_paths / sizeof key_paths[0])

static const char *const key_docs[] = {
    "{\"k\":1,\"k23456789abcde\":\"14\",\"k23456789abcdef\":\"15\",\"k23456789abcdefg\":\"16\","
    "\"k23456789abcdefgh\":\"17\",\"a_key_longer_than_thirty_two_bytes_in_all\":true}",
    /* near misses of every length: one byte more, less or different */
    "{\"k2\":0,\"k23456789abcdE\":1,\"k23456789abcdeff\":2,\"k23456789abcdefgX\":3,"
    "\"k23456789abcdefghi\":4,\"a_key_longer_than_thirty_two_bytes_in_al\":5,\"K\":6,\"\":7}",
    /* escaped keys match once decoded, whether short or long */
    "{\"\\u006b\":\"k\",\"esc\\\"aped\":\"q\",\"k23456789abcdef\\u0067h\":\"esc17\","
    "\"k2345678\\u0039abcde\":[1]}",
    /* duplicates: the first occurrence of each path wins, objects included */
    "{\"o\":{\"x\":1},\"k\":\"first\",\"k\":\"second\",\"o\":{\"x\":2,\"inner\":{\"deep\":3}},"
    "\"last\":{\"a\":[{\"b\":{}}]},\"last\":0}",
    /* whitespace everywhere */
    " { \"k\" \n:\t\"ws\" ,\r\n \"o\" : { \"inner\" : { \"deep\" : [ 1 , 2 ] } , \"x\" : null } ,"
    " \"arr\" : [ { \"k\" : 1 } ] } ",
    /* objects and arrays skipped inside and outside the path objects */
    "{\"skip\":{\"o\":{\"x\":\"no\"},\"k\":[{\"k\":\"no\"}]},\"o\":{\"other\":{\"inner\":{\"deep\":1},"
    "\"x\":[{\"x\":0}],\"s\":\"}\"},\"inner\":{\"deep\":{\"d\":[\"]\",{}]}},\"x\":\"yes\"},"
    "\"arr\":[[],[{}],\"[\"],\"k\":\"yes\"}",
    /* a path whose value is not an object, and one below a value that is not */
    "{\"o\":\"flat\",\"k23456789abcdefgh\":{\"k\":1},\"arr\":{\"inner\":2}}",
    "{\"o\":{\"inner\":[{\"deep\":1}],\"x\":-1.5e-7}}",
};

/* v is a string that decodes to want. */
static int string_is(const jscan_val_t *v, const char *want) {
  char s[64];
  return v->type == JSCAN_STRING && jscan_string(v, s, sizeof s) >= 0 && !strcmp(s, want);
}

TEST(trusted_key_forms) {
  jscan_paths_t *kp = jscan_compile(key_paths, NKP);
  CHECK(kp != NULL);
  if (!kp) return;
  for (size_t i = 0; i < sizeof key_docs / sizeof key_docs[0]; i++) {
    const char *d = key_docs[i];
    jscan_val_t v[NKP];
    if (jscan_scan(kp, d, strlen(d), v) != 0) FAILF("key document %zu is not valid", i);
    char *copy = malloc(strlen(d)); /* exactly sized: a read past the end is caught */
    memcpy(copy, d, strlen(d));
    check_same(kp, NKP, copy, strlen(d));
    free(copy);
  }
  /* the values themselves, so the comparison is not of two blanks */
  jscan_val_t v[NKP];
  CHECK_INT(jscan_scan_trusted(kp, key_docs[0], strlen(key_docs[0]), v), 0);
  CHECK(v[0].type == JSCAN_NUMBER && v[0].num == 1.0);
  for (int k = 1; k <= 4; k++) /* "14" ... "17" */
    CHECK(v[k].type == JSCAN_STRING && v[k].n == 2 && v[k].p[0] == '1' &&
          v[k].p[1] == "34567"[k]);
  CHECK_INT(v[5].type, JSCAN_TRUE);
  CHECK_INT(jscan_scan_trusted(kp, key_docs[1], strlen(key_docs[1]), v), 0);
  for (size_t k = 0; k < NKP; k++)
    if (v[k].type != JSCAN_NONE) FAILF("near miss matched path %s", key_paths[k]);
  CHECK_INT(jscan_scan_trusted(kp, key_docs[2], strlen(key_docs[2]), v), 0);
  CHECK(string_is(&v[0], "k"));
  CHECK(string_is(&v[6], "q"));
  CHECK(string_is(&v[4], "esc17"));
  CHECK_INT(v[1].type, JSCAN_ARRAY);
  CHECK_INT(jscan_scan_trusted(kp, key_docs[3], strlen(key_docs[3]), v), 0);
  CHECK(string_is(&v[0], "first"));
  CHECK(v[8].type == JSCAN_NUMBER && v[8].num == 1.0);      /* o.x: the first o */
  CHECK(v[7].type == JSCAN_NUMBER && v[7].num == 3.0);      /* o.inner.deep: the second */
  CHECK(v[9].type == JSCAN_OBJECT && v[9].n == 7);          /* o: {"x":1} */
  CHECK(v[11].type == JSCAN_OBJECT && v[11].p[v[11].n - 1] == '}');
  CHECK_INT(jscan_scan_trusted(kp, key_docs[5], strlen(key_docs[5]), v), 0);
  CHECK(string_is(&v[0], "yes"));
  CHECK(string_is(&v[8], "yes"));
  CHECK_INT(v[7].type, JSCAN_OBJECT);
  CHECK_INT(v[10].type, JSCAN_ARRAY);
  CHECK_INT(jscan_scan_trusted(kp, key_docs[6], strlen(key_docs[6]), v), 0);
  CHECK_INT(v[9].type, JSCAN_STRING);
  CHECK_INT(v[8].type, JSCAN_NONE);
  CHECK_INT(v[4].type, JSCAN_OBJECT);
  CHECK_INT(v[10].type, JSCAN_OBJECT);

  /* Every key length from 0 to 40 (matching or not) and every padding before it, so
   * that keys, ':' and values end at every distance from the end of the buffer. */
  char doc[256], key[64];
  for (int kl = 0; kl <= 40; kl++)
    for (int pad = 0; pad <= 40; pad++)
      for (int form = 0; form < 4; form++) {
        memcpy(key, "k23456789abcdefghijklmnopqrstuvwxyz0123456789", (size_t)kl);
        key[kl] = 0;
        /* the document around the padding and the key */
        static const char *const part[][3] = {
            {"{\"p\":\"", "\",\"", "\":\"v\"}"},
            {"{\"p\":\"", "\",\"", "\":1}"},
            {"{\"p\":\"", "\", \"", "\" : {\"x\":\"y\"} }"},
            {"{\"o\":{\"p\":\"", "\",\"", "\":[\"z\"]}}"}};
        int n = snprintf(doc, sizeof doc, "%s%.*s%s%s%s", part[form][0], pad,
                         "........................................", part[form][1], key,
                         part[form][2]);
        char *copy = malloc((size_t)n);
        memcpy(copy, doc, (size_t)n);
        check_same(kp, NKP, copy, (size_t)n);
        jscan_val_t w[NKP];
        if (jscan_scan_trusted(kp, copy, (size_t)n, w) != 0) FAILF("refused %s", doc);
        int want = -1; /* the path the key names, if any */
        for (size_t k = 0; k < 5; k++)
          if (!strcmp(key, key_paths[k])) want = (int)k;
        if (form < 3 && want >= 0 && w[want].type == JSCAN_NONE) FAILF("missed %s", doc);
        free(copy);
      }
  jscan_paths_free(kp);
}

/* Many children of one object share hash buckets: every one must still be found, and
 * keys that are not paths must find none of them. */
TEST(trusted_many_children) {
  char names[JSCAN_MAX_PATHS][16];
  const char *list[JSCAN_MAX_PATHS];
  for (int i = 0; i < JSCAN_MAX_PATHS; i++) {
    snprintf(names[i], sizeof names[i], "c%d", i * 7);
    list[i] = names[i];
  }
  jscan_paths_t *mp = jscan_compile(list, JSCAN_MAX_PATHS);
  CHECK(mp != NULL);
  if (!mp) return;
  static char doc[16384];
  size_t n = 0;
  n += (size_t)snprintf(doc + n, sizeof doc - n, "{");
  for (int i = JSCAN_MAX_PATHS * 7 - 1; i >= 0; i--) /* every name, paths or not */
    n += (size_t)snprintf(doc + n, sizeof doc - n, "\"c%d\":%d%s", i, i, i ? "," : "}");
  jscan_val_t a[JSCAN_MAX_PATHS];
  CHECK_INT(jscan_scan(mp, doc, n, a), 0);
  check_same(mp, JSCAN_MAX_PATHS, doc, n);
  CHECK_INT(jscan_scan_trusted(mp, doc, n, a), 0);
  for (int i = 0; i < JSCAN_MAX_PATHS; i++)
    if (a[i].type != JSCAN_NUMBER || a[i].num != i * 7) FAILF("path %s", list[i]);
  jscan_paths_free(mp);
}

/* ---- recording an array member's elements (jscan_members_elems) ---- */

#define NO_ARRAY SIZE_MAX /* elems_of: "batch" absent or not an array */
#define REFUSED (SIZE_MAX - 1) /* elems_of: malformed */

/* Index doc (copied to an exactly sized buffer: a read past its end is caught) with and
 * without recording the elements of "batch" (max of them stored). Both must give the same
 * result and members, and the recording must be the first top-level "batch" member and
 * each of its elements exactly as jscan_array_next walks them. Returns the recorded count,
 * NO_ARRAY or REFUSED. */
static size_t elems_of(const char *doc, size_t len, size_t max) {
  char *copy = malloc(len ? len : 1);
  memcpy(copy, doc, len);
  jscan_member_t a[16], b[16];
  jscan_elems_t e = {.key = "batch", .keylen = 5, .max = max};
  long na = jscan_members(copy, len, a, 16), nb = jscan_members_elems(copy, len, b, 16, &e);
  size_t got = na < 0 ? REFUSED : NO_ARRAY;
  if (na != nb) FAILF("%.*s: %ld members, %ld when recording", (int)len, doc, na, nb);
  if (na != nb || na < 0) goto done;
  for (long i = 0; i < na; i++)
    if (a[i].key != b[i].key || a[i].keylen != b[i].keylen || a[i].val.type != b[i].val.type ||
        a[i].val.p != b[i].val.p || a[i].val.n != b[i].val.n)
      FAILF("%.*s: member %ld differs when recording", (int)len, doc, i);
  const jscan_val_t *want = NULL;
  for (long i = 0; i < na && !want; i++)
    if (jscan_key_is(&a[i], "batch", 5)) want = &a[i].val;
  if (!want) {
    if (e.val.type != JSCAN_NONE || e.n)
      FAILF("%.*s: recorded an absent member", (int)len, doc);
    goto done;
  }
  if (e.val.type != want->type || e.val.p != want->p || e.val.n != want->n)
    FAILF("%.*s: recorded another member than the first \"batch\"", (int)len, doc);
  if (want->type != JSCAN_ARRAY) {
    if (e.n) FAILF("%.*s: %zu elements recorded for a non-array", (int)len, doc, e.n);
    goto done;
  }
  size_t pos = 0, i = 0;
  jscan_val_t el;
  for (; jscan_array_next(want, &pos, &el) == 1; i++) {
    if (i >= e.n || i >= max) continue;
    const jscan_val_t *r = &e.v[i];
    if (r->type != el.type || r->p != el.p || r->n != el.n || r->escaped != el.escaped ||
        memcmp(&r->num, &el.num, sizeof el.num))
      FAILF("%.*s: element %zu recorded as type %d %.*s, walked as type %d %.*s", (int)len,
            doc, i, (int)r->type, (int)r->n, r->p, (int)el.type, (int)el.n, el.p);
  }
  if (i != e.n) FAILF("%.*s: %zu elements recorded, %zu walked", (int)len, doc, e.n, i);
  got = e.n;
done:
  jscan_elems_free(&e);
  free(copy);
  return got;
}

static size_t elems_in(const char *doc) { return elems_of(doc, strlen(doc), 1000); }

TEST(elems_match_array_walk) {
  static const struct {
    const char *doc;
    size_t count;
  } cases[] = {
      {"{\"batch\":[{\"a\":1},{\"b\":[1,{\"c\":\"]\"}]},{}]}", 3},
      {"{\"batch\":[\"plain\",\"q\\\"x\\\\\",\"\\u00e9\\ud83d\\ude00\",\"\xc3\xa9\",\"\"]}", 5},
      {"{\"batch\":[0,-1,2.5e-3,1E+2,-0.0]}", 5},
      {"{\"batch\":[[],[[1],[2,[3]]],[{\"batch\":[9]}]]}", 3},
      {"{\"batch\":[true,false,null]}", 3},
      {" \n{ \"x\" : 1 ,\t\"batch\" \r\n: [ \n {\"a\" : [ 1 , 2 ] } ,\r\n \"s\" ,3 ,true\t, null "
       "] , \"y\" : [ ] } \n",
       5},
      {"{\"batch\":[]}", 0},
      {"{\"batch\":[ \n\t]}", 0},
      /* not an array */
      {"{\"batch\":{\"a\":[1,2]}}", NO_ARRAY},
      {"{\"batch\":\"[1,2]\"}", NO_ARRAY},
      {"{\"batch\":null}", NO_ARRAY},
      {"{\"batch\":7}", NO_ARRAY},
      /* deeper than the top level, or another name */
      {"{\"x\":{\"batch\":[1,2]},\"y\":[{\"batch\":[3]}]}", NO_ARRAY},
      {"{\"batchx\":[1],\"batc\":[2],\"Batch\":[3]}", NO_ARRAY},
      {"{}", NO_ARRAY},
      {"{\"x\":{\"batch\":[1]},\"batch\":[2,3]}", 2},
      /* an escaped name is the name it decodes to (as evdoc_get reads it) */
      {"{\"b\\u0061tch\":[1,2,3]}", 3},
      {"{\"b\\u0061tch\":[1],\"batch\":[2,3]}", 1},
      {"{\"b\\u0061tch\":{},\"batch\":[2,3]}", NO_ARRAY},
      /* duplicates: the first only */
      {"{\"batch\":[1],\"batch\":[2,3]}", 1},
      {"{\"batch\":\"no\",\"batch\":[2,3]}", NO_ARRAY},
      /* malformed, inside the array and around it */
      {"{\"batch\":[1,]}", REFUSED},
      {"{\"batch\":[,1]}", REFUSED},
      {"{\"batch\":[1 2]}", REFUSED},
      {"{\"batch\":[01]}", REFUSED},
      {"{\"batch\":[\"\\x\"]}", REFUSED},
      {"{\"batch\":[\"\xff\"]}", REFUSED},
      {"{\"batch\":[{\"a\"}]}", REFUSED},
      {"{\"batch\":[tru]}", REFUSED},
      {"{\"batch\":[1}", REFUSED},
      {"{\"batch\":[1]", REFUSED},
      {"{\"batch\":[", REFUSED},
      {"{\"batch\":[1]} x", REFUSED},
      {"{\"batch\":[1],}", REFUSED},
      {"[{\"batch\":[1]}]", REFUSED},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    size_t got = elems_in(cases[i].doc);
    if (got != cases[i].count)
      FAILF("%s: %zd elements, expected %zd", cases[i].doc, (ssize_t)got, (ssize_t)cases[i].count);
  }

  /* what the spans hold, so the comparison is not of two blanks */
  const char *doc = "{\"batch\": [ \"a\\u0062\" , {\"k\":[1]} ,-2.5 ]}";
  jscan_member_t m[4];
  jscan_elems_t e = {.key = "batch", .keylen = 5, .max = 10};
  CHECK_INT(jscan_members_elems(doc, strlen(doc), m, 4, &e), 1);
  REQUIRE(e.n == 3);
  CHECK(string_is(&e.v[0], "ab") && e.v[0].escaped);
  CHECK(e.v[1].type == JSCAN_OBJECT && e.v[1].n == 9 && !memcmp(e.v[1].p, "{\"k\":[1]}", 9));
  CHECK(e.v[2].type == JSCAN_NUMBER && e.v[2].n == 4 && e.v[2].num == 0 &&
        jscan_num(&e.v[2]) == -2.5);
  CHECK(e.val.type == JSCAN_ARRAY && e.val.p == strchr(doc, '[') && e.val.p[e.val.n - 1] == ']');
  /* reused: a later document replaces the recording */
  CHECK_INT(jscan_members_elems("{\"x\":[1]}", 9, m, 4, &e), 1);
  CHECK(e.val.type == JSCAN_NONE && e.n == 0);
  jscan_elems_free(&e);
  jscan_elems_free(&e); /* freed twice: a no-op */
  jscan_elems_free(NULL);
}

/* Past max, elements are counted but not stored; v grows to hold max. */
TEST(elems_count_past_max) {
  char doc[4096];
  size_t n = (size_t)snprintf(doc, sizeof doc, "{\"batch\":[");
  for (int i = 0; i < 300; i++)
    n += (size_t)snprintf(doc + n, sizeof doc - n, "%s{\"i\":%d}", i ? "," : "", i);
  n += (size_t)snprintf(doc + n, sizeof doc - n, "]}");
  static const size_t maxes[] = {0, 1, 4, 64, 65, 299, 300, 301, 5000};
  for (size_t k = 0; k < sizeof maxes / sizeof maxes[0]; k++)
    CHECK_INT(elems_of(doc, n, maxes[k]), 300);
  jscan_member_t m[2];
  jscan_elems_t e = {.key = "batch", .keylen = 5, .max = 100};
  CHECK_INT(jscan_members_elems(doc, n, m, 2, &e), 1);
  CHECK_INT(e.n, 300);
  REQUIRE(e.cap == 100); /* grown up to max, not past it */
  CHECK(e.v[99].n == 8 && !memcmp(e.v[99].p, "{\"i\":99}", 8));
  jscan_elems_free(&e);
}

/* Nesting inside the recorded array counts against JSCAN_MAX_DEPTH as anywhere else. */
TEST(elems_depth_limit) {
  for (int depth = JSCAN_MAX_DEPTH - 4; depth <= JSCAN_MAX_DEPTH + 2; depth++) {
    char doc[256];
    size_t n = (size_t)snprintf(doc, sizeof doc, "{\"batch\":");
    for (int i = 1; i < depth; i++) doc[n++] = '[';
    for (int i = 1; i < depth; i++) doc[n++] = ']';
    doc[n++] = '}';
    /* the root object is depth 1, so depth - 1 arrays nest the document depth deep */
    size_t got = elems_of(doc, n, 10);
    if (depth <= JSCAN_MAX_DEPTH && got != 1)
      FAILF("depth %d refused or miscounted (%zd)", depth, (ssize_t)got);
    if (depth > JSCAN_MAX_DEPTH && got != REFUSED) FAILF("depth %d accepted", depth);
  }
}

/* ---- objects recorded while validating (jscan_tape_t) ---- */

/* The tape holds every object outside arrays down to JSCAN_TAPE_LEVELS, parents first,
 * each with the members the trusted indexer finds in its bytes. */
TEST(tape_records_nested_objects) {
  const char *doc = "{\"a\":{\"b\":{\"c\":{\"d\":{\"e\":{}}}},\"s\":\"x\\\"\",\"n\":1.5},"
                    "\"arr\":[{\"in\":{}}],\"z\":{ \"k\" : true , \"l\":null }}";
  jscan_member_t top[8], want[8];
  jscan_tape_t t = {0};
  for (int round = 0; round < 2; round++) { /* the tape is reused */
    CHECK_INT(jscan_members_tape(doc, strlen(doc), top, 8, &t), 3);
    /* a, a.b, a.b.c, a.b.c.d (level 3), z; not a.b.c.d.e (too deep) nor arr's element */
    REQUIRE(t.nobj == 5);
    const char *starts[] = {"{\"b\"", "{\"c\"", "{\"d\"", "{\"e\"", "{ \"k\""};
    size_t counts[] = {3, 1, 1, 1, 2};
    for (size_t i = 0; i < 5; i++) {
      const jscan_obj_t *o = &t.obj[i];
      CHECK(!strncmp(o->p, starts[i], strlen(starts[i])));
      CHECK_INT(o->count, counts[i]);
      long n = jscan_members_trusted(o->p, o->n, want, 8);
      CHECK_INT(n, (long)o->count);
      for (long k = 0; k < n; k++)
        CHECK(o->members[k].key == want[k].key && o->members[k].val.p == want[k].val.p &&
              o->members[k].val.n == want[k].val.n && o->members[k].val.type == want[k].val.type &&
              o->members[k].val.escaped == want[k].val.escaped);
    }
    CHECK(top[0].val.p == t.obj[0].p && top[0].val.n == t.obj[0].n);
  }
  /* Malformed: refused as jscan_members refuses it. */
  CHECK_INT(jscan_members_tape("{\"a\":{\"b\":}}", 13, top, 8, &t), -1);
  static const char *bad[] = {
      "{\"o\":{\"a\":01}}",   "{\"o\":{\"a\":1.}}",         "{\"o\":{\"a\":-}}",
      "{\"o\":{\"a\":1e}}",   "{\"o\":{\"a\":1e+}}",        "{\"o\":{\"a\":.5}}",
      "{\"o\":{\"a\":1,}}",   "{\"o\":{\"a\" 1}}",          "{\"o\":{\"a\":1 \"b\":2}}",
      "{\"o\":{\"a\":1}",     "{\"o\":{\"a\":1 ,}}",        "{\"o\":{\"a\"::1}}",
      "{\"o\":{\"a\":1}} x",  "{\"o\":{\"a\":1]}",          "{\"o\":{\"a\":+1}}"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    if (jscan_members_tape(bad[i], strlen(bad[i]), top, 8, &t) != -1) FAILF("accepted %s", bad[i]);
  /* White space around ':' and ',', and every number form, inside a recorded object. */
  const char *spaced = "{\"o\":{ \"a\" : -0.5e+3 , \"b\" :1E2,\"c\": 0 ,\"d\":12.25e-1\n}\t}";
  CHECK_INT(jscan_members_tape(spaced, strlen(spaced), top, 8, &t), 1);
  REQUIRE(t.nobj == 1);
  CHECK_INT(t.obj[0].count, 4);
  CHECK(t.obj[0].members[0].val.n == 7 && t.obj[0].members[3].val.n == 8);
  jscan_tape_free(&t);
  jscan_tape_free(&t); /* twice: a no-op */
  jscan_tape_free(NULL);
}

/* With a tape, each recorded element's objects are bounded by obj[2i], obj[2i+1]. */
TEST(tape_bounds_each_element) {
  const char *doc = "{\"context\":{\"x\":1},\"batch\":[{\"a\":{\"b\":2}},3,{},{\"c\":[{}]}]}";
  jscan_member_t m[4];
  jscan_tape_t t = {0};
  jscan_elems_t e = {.key = "batch", .keylen = 5, .max = 10, .tape = &t};
  CHECK_INT(jscan_members_elems(doc, strlen(doc), m, 4, &e), 2);
  REQUIRE(e.n == 4);
  /* context; element 0 and its a; element 2; element 3 (its array's object is not kept) */
  CHECK_INT(t.nobj, 5);
  static const uint32_t want[] = {1, 3, 3, 3, 3, 4, 4, 5};
  for (int i = 0; i < 8; i++) CHECK_INT(e.obj[i], want[i]);
  CHECK(t.obj[1].p == e.v[0].p && t.obj[1].count == 1);
  CHECK(t.obj[3].p == e.v[2].p && t.obj[3].count == 0);
  CHECK(t.obj[4].p == e.v[3].p && t.obj[4].count == 1);
  jscan_elems_free(&e);
  jscan_tape_free(&t);
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
  RUN(trusted_long_random_documents);
  RUN(trusted_key_guesses);
  RUN(trusted_key_guesses_skip);
  RUN(trusted_numbers);
  RUN(trusted_survives_damage);
  RUN(trusted_key_forms);
  RUN(trusted_many_children);
  RUN(elems_match_array_walk);
  RUN(elems_count_past_max);
  RUN(elems_depth_limit);
  RUN(tape_records_nested_objects);
  RUN(tape_bounds_each_element);
  jscan_paths_free(ps);
  return TEST_REPORT("test_jscan");
}
