/* Unit tests for the small shared pieces: buf, clock, str. */
#include <ctype.h>
#include <time.h>

#include "util/buf.h"
#include "util/clock.h"
#include "util/rand.h"
#include "util/str.h"

#include "test.h"

TEST(buf_appends_and_escapes) {
  buf_t b = BUF_INIT;
  buf_puts(&b, "a");
  buf_printf(&b, "%d", 42);
  buf_json_escape(&b, "q\"\\\n\x01z", 6);
  CHECK_STR(b.data, "a42q\\\"\\\\\\n\\u0001z");
  buf_consume(&b, 3);
  CHECK_STR(b.data, "q\\\"\\\\\\n\\u0001z");
  for (int i = 0; i < 10000; i++) buf_putc(&b, 'x');
  CHECK_INT(b.len, 10000 + 14);
  buf_reset(&b);
  buf_json_escape(&b, "\xc3\xa9 ok \xff bad \xe2\x82", 14);
  CHECK_STR(b.data, "\xc3\xa9 ok \\ufffd bad \\ufffd\\ufffd");
  /* Every byte value at every offset of a 24-byte run (the escaper reads eight bytes at
   * a time): the special byte is escaped, the plain ones around it are kept. */
  for (int c = 1; c < 256; c++) {
    for (int at = 0; at < 24; at++) {
      char in[24];
      memset(in, 'a', sizeof in);
      in[at] = (char)c;
      buf_reset(&b);
      buf_json_escape(&b, in, sizeof in);
      const char *esc = c == '"' ? "\\\"" : c == '\\' ? "\\\\" : c == '\n' ? "\\n"
                      : c == '\r' ? "\\r" : c == '\t' ? "\\t" : NULL;
      char want[64], mid[8];
      if (esc) snprintf(mid, sizeof mid, "%s", esc);
      else if (c < 0x20) snprintf(mid, sizeof mid, "\\u%04x", c);
      else if (c >= 0x80) snprintf(mid, sizeof mid, "\\ufffd"); /* a lone byte is not UTF-8 */
      else snprintf(mid, sizeof mid, "%c", c);
      snprintf(want, sizeof want, "%.*s%s%.*s", at, in, mid, 23 - at, in + at + 1);
      if (strcmp(b.data, want) != 0) FAILF("byte 0x%02x at %d: %s", c, at, b.data);
    }
  }
  buf_free(&b);
  buf_free(&b);
}

TEST(clock_iso_round_trip) {
  static const struct {
    const char *in;
    int64_t us;
  } cases[] = {
      {"1970-01-01T00:00:00Z", 0},
      {"2026-11-22T19:37:05Z", 1795376225000000LL},
      {"2026-11-22T19:37:05.123Z", 1795376225123000LL},
      {"2026-11-22T21:37:05.123+02:00", 1795376225123000LL},
      {"2026-11-22T19:37:05.5-0100", 1795379825500000LL},
      {"2026-11-22", 1795305600000000LL},
      {"2000-02-29T12:00:00Z", 951825600000000LL},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    int64_t t = -1;
    int rc = clock_parse_iso(cases[i].in, strlen(cases[i].in), &t);
    if (rc != 0 || t != cases[i].us)
      FAILF("%s -> rc %d t %lld, expected %lld", cases[i].in, rc, (long long)t, (long long)cases[i].us);
  }
  char out[25];
  clock_format_iso(1795376225123000LL, out);
  CHECK_STR(out, "2026-11-22T19:37:05.123Z");
  /* The same text as gmtime_r and printf give, over leap days, centuries, the epoch,
   * negative times, times of one second one after the other (the second's text is
   * remembered) and a spread of instants from 1900 to 2400. */
  static const int64_t at[] = {0, -1, -1000, -1500, -86400000000LL, 951782400000000LL,
                               951868799999000LL, 4107542400000000LL, -2208988800000000LL,
                               13569465600000000LL, 253402300799999999LL, 1795376225999000LL,
                               1795376225000000LL, 1795376226000000LL, -1999000LL, -1001000LL};
  for (size_t i = 0; i < sizeof at / sizeof at[0] + 2000; i++) {
    int64_t t = i < sizeof at / sizeof at[0]
                    ? at[i]
                    : -2208988800000000LL + (int64_t)(i * 7919) * 8640000000LL + (int64_t)i * 1234567;
    time_t sec = (time_t)(t / 1000000);
    int ms = (int)((t % 1000000) / 1000);
    if (t < 0 && ms) sec -= 1, ms += 1000;
    struct tm tm;
    gmtime_r(&sec, &tm);
    char want[64];
    snprintf(want, sizeof want, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ms);
    CHECK_INT(clock_format_iso(t, out), 24);
    if (strcmp(out, want) != 0) FAILF("%lld: %s, expected %s", (long long)t, out, want);
  }
  static const char *bad[] = {"", "2026", "2026-1-01", "2026-13-01", "2026-11-22T25:00:00Z",
                              "2026-11-22T10:00:00Zjunk", "2026-11-22T10:00:00.Z", "yesterday"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    int64_t t;
    if (clock_parse_iso(bad[i], strlen(bad[i]), &t) == 0) FAILF("accepted bad time '%s'", bad[i]);
  }
}

/* clock_parse_iso_memo answers exactly as clock_parse_iso, whatever came before. */
TEST(clock_iso_memo_same_answers) {
  static const char *seq[] = {
      "2026-11-22T19:37:05.123Z", "2026-11-22T19:37:59.999Z", "2026-11-22T19:37:60.000Z",
      "2026-11-22T19:37:61.000Z", "2026-11-22T19:37:0a.000Z", "2026-11-22T19:37:05.12Z",
      "2026-11-22T19:37:05.123+", "2026-11-22T19:37:05Z", "2026-11-22T19:38:00.000Z",
      "2026-11-22T19:37:05.123Z", "2026-11-22T19:37:XX.123Z", "2026-11-22T21:37:05.123+02:00",
      "2026-11-22T19:37:05,123Z", "2026-11-22T19:37:05.123z", "2026-11-22T25:37:05.123Z",
      "2026-11-22T25:37:05.123Z", "1970-01-01T00:00:00.000Z", "1969-12-31T23:59:59.999Z",
      /* other minutes of a remembered hour, good and bad */
      "2026-11-22T19:37:05.123Z", "2026-11-22T19:00:00.000Z", "2026-11-22T19:59:60.999Z",
      "2026-11-22T19:60:05.123Z", "2026-11-22T19:99:05.123Z", "2026-11-22T19:5a:05.123Z",
      "2026-11-22T19:37-05.123Z", "2026-11-22T19:37:05-123Z", "2026-11-22T19:07:05.123Z"};
  for (int round = 0; round < 3; round++)
    for (size_t i = 0; i < sizeof seq / sizeof seq[0]; i++) {
      int64_t a = -1, b = -1;
      int ra = clock_parse_iso(seq[i], strlen(seq[i]), &a);
      int rb = clock_parse_iso_memo(seq[i], strlen(seq[i]), &b);
      if (ra != rb || (ra == 0 && a != b))
        FAILF("%s: parse %d %lld, memo %d %lld", seq[i], ra, (long long)a, rb, (long long)b);
    }
}

TEST(url_decode_and_query) {
  char out[64];
  CHECK_INT(str_url_decode("a%20b+c", 7, out, 1), 5);
  CHECK_STR(out, "a b c");
  CHECK_INT(str_url_decode("%zz", 3, out, 1), -1);
  CHECK_INT(str_url_decode("%4", 2, out, 1), -1);
  CHECK_INT(str_url_decode("%", 1, out, 1), -1);
  const char *q = "a=1&&b=&c&d=x%3Dy";
  size_t pos = 0, kl, vl;
  const char *k, *v;
  int n = 0;
  char got[128] = "";
  while (str_query_next(q, strlen(q), &pos, &k, &kl, &v, &vl)) {
    n++;
    strncat(got, k, kl);
    strcat(got, "=");
    strncat(got, v, vl);
    strcat(got, ";");
  }
  CHECK_INT(n, 4);
  CHECK_STR(got, "a=1;b=;c=;d=x%3Dy;");

  /* One parameter by name: decoded, first wins, absent, malformed, too long. */
  char val[8];
  CHECK_INT(str_query_param("key=a%2Bb&x=1&key=zz", "key", val, sizeof val), 3);
  CHECK_STR(val, "a+b");
  CHECK_INT(str_query_param("keys=1&ke=2", "key", val, sizeof val), -1);
  CHECK_INT(str_query_param(NULL, "key", val, sizeof val), -1);
  CHECK_INT(str_query_param("key=%zz", "key", val, sizeof val), -1);
  CHECK_INT(str_query_param("key=12345678", "key", val, sizeof val), 8);
  CHECK_STR(val, "");
  CHECK_INT(str_query_param("feed=events", "feed", val, sizeof val), 6);
  CHECK_STR(val, "events");
}

TEST(base64) {
  unsigned char out[64];
  long n = str_base64_decode("aGVsbG8gd29ybGQ=", 16, out);
  CHECK_INT(n, 11);
  CHECK(memcmp(out, "hello world", 11) == 0);
  n = str_base64_decode("aGVsbG8gd29ybGQ", 15, out); /* unpadded */
  CHECK_INT(n, 11);
  CHECK_INT(str_base64_decode("a$==", 4, out), -1);
  /* Every byte: in one of the two alphabets, or refused. */
  static const char alpha[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  for (int c = 0; c < 256; c++) {
    char two[2] = {(char)c, 'A'};
    const char *at = c ? strchr(alpha, c) : NULL;
    int v = at ? (int)(at - alpha) : c == '-' ? 62 : c == '_' ? 63 : -1;
    long got = str_base64_decode(two, 2, out);
    if (v < 0 ? got != -1 : got != 1 || out[0] != (unsigned char)(v << 2)) FAILF("byte %d", c);
  }
  char enc[32];
  str_base64_encode((const unsigned char *)"wk:", 3, enc);
  CHECK_STR(enc, "d2s6");
}

TEST(ct_equal_and_uuid) {
  CHECK(str_ct_equal("abc", 3, "abc", 3));
  CHECK(!str_ct_equal("abc", 3, "abd", 3));
  CHECK(!str_ct_equal("abc", 3, "abcd", 4));
  char u1[37], u2[37];
  rand_uuid(u1);
  rand_uuid(u2);
  CHECK_INT(strlen(u1), 36);
  CHECK(u1[14] == '4');
  CHECK(strcmp(u1, u2) != 0);
  /* Across refills of the per-thread pool (256 ids each): all distinct, all version 4. */
  static char many[600][37];
  for (int i = 0; i < 600; i++) {
    rand_uuid(many[i]);
    CHECK(many[i][14] == '4' && strchr("89ab", many[i][19]) != NULL);
    for (int k = 0; k < 36; k++) /* 8-4-4-4-12 lower-case hex digits */
      if (k == 8 || k == 13 || k == 18 || k == 23 ? many[i][k] != '-'
                                                  : !strchr("0123456789abcdef", many[i][k]) || !many[i][k])
        FAILF("uuid %s: byte %d", many[i], k);
    for (int k = 0; k < i; k++)
      if (strcmp(many[i], many[k]) == 0) FAILF("uuid %d repeats uuid %d", i, k);
  }
}

/* Case folds ASCII letters only, as tolower does in the C locale; never reads past n. */
TEST(prefix_ci) {
  CHECK(str_has_prefix_ci("application/json", 16, "application/json")); /* as written */
  CHECK(str_has_prefix_ci("Application/JSON; charset=utf-8", 31, "application/json"));
  CHECK(str_has_prefix_ci("BASIC d2s6", 10, "Basic "));
  CHECK(!str_has_prefix_ci("Basic", 5, "Basic "));
  CHECK(!str_has_prefix_ci("application/jsonl", 15, "application/json"));
  CHECK(str_has_prefix_ci("x", 1, ""));
  for (int a = 0; a < 256; a++)
    for (int b = 1; b < 256; b++) {
      char sa[2] = {(char)a, 0}, pb[2] = {(char)b, 0};
      if (str_has_prefix_ci(sa, 1, pb) != (tolower(a) == tolower(b))) FAILF("bytes %d %d", a, b);
    }
}

int main(void) {
  RUN(buf_appends_and_escapes);
  RUN(clock_iso_round_trip);
  RUN(clock_iso_memo_same_answers);
  RUN(url_decode_and_query);
  RUN(base64);
  RUN(ct_equal_and_uuid);
  RUN(prefix_ci);
  return TEST_REPORT("test_util");
}
