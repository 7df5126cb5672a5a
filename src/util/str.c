/* str: string helpers for untrusted input (see str.h). */
#include "util/str.h"

#include <string.h>

static int hexval(int c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

long str_url_decode(const char *s, size_t n, char *out, int plus_is_space) {
  size_t o = 0;
  for (size_t i = 0; i < n; i++) {
    char c = s[i];
    if (c == '%') {
      if (i + 2 >= n) return -1;
      int h = hexval((unsigned char)s[i + 1]), l = hexval((unsigned char)s[i + 2]);
      if (h < 0 || l < 0) return -1;
      out[o++] = (char)(h << 4 | l);
      i += 2;
    } else if (c == '+' && plus_is_space) {
      out[o++] = ' ';
    } else {
      out[o++] = c;
    }
  }
  out[o] = 0;
  return (long)o;
}

int str_query_next(const char *q, size_t qlen, size_t *pos, const char **key, size_t *klen,
                   const char **val, size_t *vlen) {
  while (*pos < qlen) {
    size_t start = *pos, end = start;
    while (end < qlen && q[end] != '&') end++;
    *pos = end < qlen ? end + 1 : end;
    if (end == start) continue;
    const char *eq = memchr(q + start, '=', end - start);
    *key = q + start;
    if (eq) {
      *klen = (size_t)(eq - (q + start));
      *val = eq + 1;
      *vlen = (size_t)(q + end - (eq + 1));
    } else {
      *klen = end - start;
      *val = q + end;
      *vlen = 0;
    }
    return 1;
  }
  return 0;
}

long str_query_param(const char *q, const char *name, char *out, size_t cap) {
  size_t pos = 0, klen, vlen, nl = strlen(name), qlen = q ? strlen(q) : 0;
  const char *k, *v;
  if (cap) out[0] = 0;
  while (str_query_next(q, qlen, &pos, &k, &klen, &v, &vlen)) {
    if (klen != nl || memcmp(k, name, nl) != 0) continue;
    if (vlen + 1 > cap) return (long)vlen; /* decoding never lengthens */
    long n = str_url_decode(v, vlen, out, 1);
    if (n < 0) out[0] = 0;
    return n;
  }
  return -1;
}

/* Each byte's base64 value + 1 (standard and URL-safe alphabets), 0 for the others: one
 * lookup a byte (every request's Authorization header is decoded). */
static const unsigned char b64tab[256] = {
    ['A'] = 1,  ['B'] = 2,  ['C'] = 3,  ['D'] = 4,  ['E'] = 5,  ['F'] = 6,  ['G'] = 7,
    ['H'] = 8,  ['I'] = 9,  ['J'] = 10, ['K'] = 11, ['L'] = 12, ['M'] = 13, ['N'] = 14,
    ['O'] = 15, ['P'] = 16, ['Q'] = 17, ['R'] = 18, ['S'] = 19, ['T'] = 20, ['U'] = 21,
    ['V'] = 22, ['W'] = 23, ['X'] = 24, ['Y'] = 25, ['Z'] = 26, ['a'] = 27, ['b'] = 28,
    ['c'] = 29, ['d'] = 30, ['e'] = 31, ['f'] = 32, ['g'] = 33, ['h'] = 34, ['i'] = 35,
    ['j'] = 36, ['k'] = 37, ['l'] = 38, ['m'] = 39, ['n'] = 40, ['o'] = 41, ['p'] = 42,
    ['q'] = 43, ['r'] = 44, ['s'] = 45, ['t'] = 46, ['u'] = 47, ['v'] = 48, ['w'] = 49,
    ['x'] = 50, ['y'] = 51, ['z'] = 52, ['0'] = 53, ['1'] = 54, ['2'] = 55, ['3'] = 56,
    ['4'] = 57, ['5'] = 58, ['6'] = 59, ['7'] = 60, ['8'] = 61, ['9'] = 62, ['+'] = 63,
    ['-'] = 63, ['/'] = 64, ['_'] = 64};

static int b64val(int c) { return (int)b64tab[c & 255] - 1; }

long str_base64_decode(const char *s, size_t n, unsigned char *out) {
  while (n && s[n - 1] == '=') n--;
  if (n % 4 == 1) return -1;
  size_t o = 0;
  unsigned acc = 0;
  int bits = 0;
  for (size_t i = 0; i < n; i++) {
    int v = b64val((unsigned char)s[i]);
    if (v < 0) return -1;
    acc = (acc << 6) | (unsigned)v;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out[o++] = (unsigned char)(acc >> bits);
      acc &= (1u << bits) - 1;
    }
  }
  return (long)o;
}

size_t str_base64_encode(const unsigned char *p, size_t n, char *out) {
  static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  size_t o = 0;
  for (size_t i = 0; i < n; i += 3) {
    unsigned v = (unsigned)p[i] << 16;
    if (i + 1 < n) v |= (unsigned)p[i + 1] << 8;
    if (i + 2 < n) v |= p[i + 2];
    out[o++] = tbl[v >> 18 & 63];
    out[o++] = tbl[v >> 12 & 63];
    out[o++] = i + 1 < n ? tbl[v >> 6 & 63] : '=';
    out[o++] = i + 2 < n ? tbl[v & 63] : '=';
  }
  out[o] = 0;
  return o;
}

int str_ct_equal(const char *a, size_t alen, const char *b, size_t blen) {
  unsigned char d = alen != blen;
  size_t n = alen < blen ? alen : blen;
  for (size_t i = 0; i < n; i++) d |= (unsigned char)(a[i] ^ b[i]);
  return d == 0;
}

int str_has_prefix_ci(const char *s, size_t n, const char *prefix) {
  /* Clients mostly spell it as the prefix is written ("application/json"): one memcmp
   * says so (about 35 instructions, where the loop below took 150 for that one). */
  size_t pl = strlen(prefix);
  if (n >= pl && memcmp(s, prefix, pl) == 0) return 1;
  /* ASCII letters fold by bit 0x20 (what tolower does in the C locale, without a call
   * per byte: every request checks its Content-Type and Authorization this way). */
  for (size_t i = 0; prefix[i]; i++) {
    if (i >= n) return 0;
    unsigned a = (unsigned char)s[i], b = (unsigned char)prefix[i];
    if (a != b && ((a | 0x20) != (b | 0x20) || (b | 0x20) - 'a' > 'z' - 'a')) return 0;
  }
  return 1;
}
