/* buf: growable byte buffer (see buf.h). */
#include "util/buf.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "util/mem.h"
#include "util/plain.h"

void buf_reserve_slow(buf_t *b, size_t extra) {
  if (b->cap - b->len >= extra && b->data) return;
  size_t need = b->len + extra;
  size_t cap = b->cap ? b->cap : 64;
  while (cap < need) cap *= 2;
  b->data = xrealloc(b->data, cap + 1);
  b->data[b->len] = 0;
  b->cap = cap;
}


void buf_puts(buf_t *b, const char *s) { buf_append(b, s, strlen(s)); }

void buf_vprintf(buf_t *b, const char *fmt, va_list ap) {
  /* Try the space already there first; grow and retry only when it does not fit. */
  buf_reserve(b, 64);
  va_list cp;
  va_copy(cp, ap);
  size_t room = b->cap - b->len + 1;
  int n = vsnprintf(b->data + b->len, room, fmt, cp);
  va_end(cp);
  if (n < 0) {
    b->data[b->len] = 0;
    return;
  }
  if ((size_t)n >= room) {
    buf_reserve(b, (size_t)n);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
  }
  b->len += (size_t)n;
}

void buf_printf(buf_t *b, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  buf_vprintf(b, fmt, ap);
  va_end(ap);
}

/* Length of the valid UTF-8 sequence at p (lead byte >= 0x80), 0 when invalid. */
static size_t utf8_len(const unsigned char *p, size_t avail) {
  unsigned c = p[0];
  size_t n = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC2 ? 2 : 0;
  if (!n || c > 0xF4 || avail < n) return 0;
  for (size_t i = 1; i < n; i++)
    if ((p[i] & 0xC0) != 0x80) return 0;
  if ((c == 0xE0 && p[1] < 0xA0) || (c == 0xED && p[1] >= 0xA0) || (c == 0xF0 && p[1] < 0x90) ||
      (c == 0xF4 && p[1] >= 0x90))
    return 0;
  return n;
}

/* Printable ASCII other than '"' and '\\': copied as it is (see util/plain.h). */
const unsigned char plain_byte[256] = {
#define R16(x) x, x, x, x, x, x, x, x, x, x, x, x, x, x, x, x
    R16(0), R16(0), 1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, R16(1), R16(1),
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1, R16(1), R16(1),
    R16(0), R16(0), R16(0), R16(0), R16(0), R16(0), R16(0), R16(0),
#undef R16
};

void buf_json_escape(buf_t *b, const char *s, size_t n) {
  static const char hex[] = "0123456789abcdef";
  buf_reserve(b, n + 2);
  size_t run = 0;
  for (size_t i = 0; i < n; i++) {
    i = (size_t)(plain_end(s + i, s + n) - s);
    if (i >= n) break;
    unsigned char c = (unsigned char)s[i];
    if (c >= 0x80) {
      size_t k = utf8_len((const unsigned char *)s + i, n - i);
      if (k) {
        i += k - 1;
        continue;
      }
      buf_append(b, s + run, i - run);
      buf_append(b, "\\ufffd", 6); /* not UTF-8: the replacement character */
      run = i + 1;
      continue;
    }
    if (c >= 0x20 && c != '"' && c != '\\') continue;
    buf_append(b, s + run, i - run);
    run = i + 1;
    switch (c) {
      case '"': buf_append(b, "\\\"", 2); break;
      case '\\': buf_append(b, "\\\\", 2); break;
      case '\n': buf_append(b, "\\n", 2); break;
      case '\r': buf_append(b, "\\r", 2); break;
      case '\t': buf_append(b, "\\t", 2); break;
      default: {
        char u[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
        buf_append(b, u, 6);
      }
    }
  }
  buf_append(b, s + run, n - run);
}

void buf_consume(buf_t *b, size_t n) {
  if (n >= b->len) {
    buf_reset(b);
    return;
  }
  memmove(b->data, b->data + n, b->len - n);
  b->len -= n;
  b->data[b->len] = 0;
}

void buf_free(buf_t *b) {
  if (!b) return;
  free(b->data);
  b->data = NULL;
  b->len = b->cap = 0;
}

void buf_json_str(buf_t *b, const char *s) {
  if (!s) {
    buf_puts(b, "null");
    return;
  }
  buf_putc(b, '"');
  buf_json_escape(b, s, strlen(s));
  buf_putc(b, '"');
}

void buf_json_num(buf_t *b, double v) {
  if (!isfinite(v)) buf_puts(b, "null");
  else if (v == floor(v) && fabs(v) < 1e15) buf_printf(b, "%.0f", v);
  else buf_printf(b, "%.6g", v);
}
