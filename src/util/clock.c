/* clock: time formatting and parsing (see clock.h). */
#include "util/clock.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

/* y-m-d of day z counted from 1970-01-01 (proleptic Gregorian; days_from_civil's inverse). */
static void civil_from_days(int64_t z, int64_t *y, int *m, int *d) {
  z += 719468;
  int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  int64_t doe = z - era * 146097;
  int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  int64_t mp = (5 * doy + 2) / 153;
  *d = (int)(doy - (153 * mp + 2) / 5 + 1);
  *m = (int)(mp < 10 ? mp + 3 : mp - 9);
  *y = yoe + era * 400 + (*m <= 2);
}

static char *put_digits(char *o, int64_t v, int n) {
  for (int i = n - 1; i >= 0; i--, v /= 10) o[i] = (char)('0' + v % 10);
  return o + n;
}

/* The last second clock_format_iso wrote on this thread and its text up to the '.': the
 * receive times of one second's requests then cost their milliseconds only. */
#define FORMAT_HEAD 20 /* "2026-11-22T19:37:05." */
static _Thread_local struct {
  int64_t sec;
  char head[FORMAT_HEAD];
  int valid;
} format_memo;

size_t clock_format_iso(int64_t t_us, char out[25]) {
  time_t sec = (time_t)(t_us / 1000000);
  int ms = (int)((t_us % 1000000) / 1000);
  if (t_us < 0 && ms) { sec -= 1; ms += 1000; }
  if (format_memo.valid && format_memo.sec == (int64_t)sec) {
    memcpy(out, format_memo.head, FORMAT_HEAD);
    char *o = put_digits(out + FORMAT_HEAD, ms, 3);
    *o++ = 'Z';
    *o = 0;
    return 24;
  }
  /* Every event gets one or two of these: digits by hand, not gmtime_r and snprintf.
   * Years outside 0..9999 (never a real receive time) take the general path. */
  int64_t days = sec >= 0 ? sec / 86400 : -((-sec + 86399) / 86400), y;
  int64_t s = sec - days * 86400;
  int mo, d;
  civil_from_days(days, &y, &mo, &d);
  if (y >= 0 && y <= 9999) {
    char *o = put_digits(out, y, 4);
    *o++ = '-';
    o = put_digits(o, mo, 2);
    *o++ = '-';
    o = put_digits(o, d, 2);
    *o++ = 'T';
    o = put_digits(o, s / 3600, 2);
    *o++ = ':';
    o = put_digits(o, s / 60 % 60, 2);
    *o++ = ':';
    o = put_digits(o, s % 60, 2);
    *o++ = '.';
    memcpy(format_memo.head, out, FORMAT_HEAD);
    format_memo.sec = (int64_t)sec;
    format_memo.valid = 1;
    o = put_digits(o, ms, 3);
    *o++ = 'Z';
    *o = 0;
    return 24;
  }
  struct tm tm;
  gmtime_r(&sec, &tm);
  int n = snprintf(out, 25, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                   tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ms);
  return n > 24 ? 24 : (size_t)n;
}

/* Days from 1970-01-01 to y-m-d in the proleptic Gregorian calendar. */
static int64_t days_from_civil(int64_t y, int m, int d) {
  y -= m <= 2;
  int64_t era = (y >= 0 ? y : y - 399) / 400;
  int64_t yoe = y - era * 400;
  int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + doe - 719468;
}

static int digits(const char *s, size_t n, size_t *i, int count, int *out) {
  int v = 0;
  for (int k = 0; k < count; k++, (*i)++) {
    if (*i >= n || s[*i] < '0' || s[*i] > '9') return -1;
    v = v * 10 + (s[*i] - '0');
  }
  *out = v;
  return 0;
}

int clock_parse_iso(const char *s, size_t n, int64_t *t_us) {
  size_t i = 0;
  int y, mo, d, h = 0, mi = 0, se = 0;
  int64_t frac_us = 0, offset_s = 0;
  if (digits(s, n, &i, 4, &y) || i >= n || s[i++] != '-' || digits(s, n, &i, 2, &mo) ||
      i >= n || s[i++] != '-' || digits(s, n, &i, 2, &d))
    return -EINVAL;
  if (mo < 1 || mo > 12 || d < 1 || d > 31) return -EINVAL;
  if (i < n && (s[i] == 'T' || s[i] == 't' || s[i] == ' ')) {
    i++;
    if (digits(s, n, &i, 2, &h) || i >= n || s[i++] != ':' || digits(s, n, &i, 2, &mi))
      return -EINVAL;
    if (i < n && s[i] == ':') {
      i++;
      if (digits(s, n, &i, 2, &se)) return -EINVAL;
    }
    if (h > 23 || mi > 59 || se > 60) return -EINVAL;
    if (i < n && (s[i] == '.' || s[i] == ',')) {
      i++;
      int64_t scale = 100000;
      size_t start = i;
      for (; i < n && s[i] >= '0' && s[i] <= '9'; i++) {
        frac_us += (s[i] - '0') * scale;
        scale /= 10;
      }
      if (i == start) return -EINVAL;
    }
    if (i < n && (s[i] == 'Z' || s[i] == 'z')) {
      i++;
    } else if (i < n && (s[i] == '+' || s[i] == '-')) {
      int sign = s[i++] == '-' ? -1 : 1, oh, om = 0;
      if (digits(s, n, &i, 2, &oh)) return -EINVAL;
      if (i < n && s[i] == ':') i++;
      if (i < n && digits(s, n, &i, 2, &om)) return -EINVAL;
      if (oh > 23 || om > 59) return -EINVAL;
      offset_s = sign * (oh * 3600 + om * 60);
    }
  }
  if (i != n) return -EINVAL;
  int64_t days = days_from_civil(y, mo, d);
  int64_t secs = days * 86400 + h * 3600 + mi * 60 + se - offset_s;
  *t_us = secs * 1000000 + frac_us;
  return 0;
}

/* ---- clock_parse_iso_memo ---- */

#define MEMO_PREFIX 14 /* "2026-11-23T00:" */
static _Thread_local struct {
  char prefix[MEMO_PREFIX];
  int64_t hour_us;
  int valid;
} memo;

static inline int is_digit(char c) { return c >= '0' && c <= '9'; }

/* The minutes, seconds and milliseconds of a canonical time's tail "MM:SS.mmmZ" in
 * microseconds, or -1 when s[0..n) has another form. */
static int64_t canonical_tail_us(const char *s, size_t n) {
  if (n != MEMO_PREFIX + 10) return -1;
  const char *t = s + MEMO_PREFIX;
  if (!is_digit(t[0]) || !is_digit(t[1]) || t[2] != ':' || !is_digit(t[3]) ||
      !is_digit(t[4]) || t[5] != '.' || !is_digit(t[6]) || !is_digit(t[7]) ||
      !is_digit(t[8]) || t[9] != 'Z')
    return -1;
  int min = (t[0] - '0') * 10 + (t[1] - '0'), sec = (t[3] - '0') * 10 + (t[4] - '0');
  if (min > 59 || sec > 60) return -1; /* as clock_parse_iso */
  return ((int64_t)min * 60 + sec) * 1000000 +
         ((t[6] - '0') * 100 + (t[7] - '0') * 10 + (t[8] - '0')) * 1000;
}

int clock_parse_iso_memo(const char *s, size_t n, int64_t *t_us) {
  int64_t tail = canonical_tail_us(s, n);
  if (tail >= 0 && memo.valid && memcmp(s, memo.prefix, MEMO_PREFIX) == 0) {
    *t_us = memo.hour_us + tail;
    return 0;
  }
  int rc = clock_parse_iso(s, n, t_us);
  if (rc == 0 && tail >= 0) {
    memcpy(memo.prefix, s, MEMO_PREFIX);
    memo.hour_us = *t_us - tail;
    memo.valid = 1;
  }
  return rc;
}
