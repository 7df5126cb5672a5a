/* plain: finding the end of a run of JSON string bytes that need no attention.
 *
 * Both the JSON scanner (reading strings) and the escaper (writing them) spend most of
 * their time in runs of printable ASCII other than '"' and '\\': bytes that are copied or
 * skipped as they are. plain_end finds where such a run stops, eight bytes per step on
 * little-endian machines (one word test instead of eight table lookups), a byte at a
 * time elsewhere and for the last few bytes. */
#ifndef SLUICE_UTIL_PLAIN_H
#define SLUICE_UTIL_PLAIN_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* 1 for printable ASCII other than '"' and '\\'; 0 for control bytes, '"', '\\' and
 * every byte >= 0x80. */
extern const unsigned char plain_byte[256];

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define PLAIN_SWAR 1
#define PLAIN_ONES 0x0101010101010101ull
#define PLAIN_HIGH 0x8080808080808080ull
static inline uint64_t plain_load8(const char *p) {
  uint64_t w;
  memcpy(&w, p, 8);
  return w;
}
/* High bit set in the first byte of w (in memory order) that is '"' or '\\'; bits above
 * the first may be spurious (borrows), so only the lowest set bit counts. */
static inline uint64_t plain_stop8(uint64_t w) {
  uint64_t q = w ^ (PLAIN_ONES * '"'), b = w ^ (PLAIN_ONES * '\\');
  return (((q - PLAIN_ONES) & ~q) | ((b - PLAIN_ONES) & ~b)) & PLAIN_HIGH;
}
/* The same for any byte that is not plain (adds control bytes and bytes >= 0x80). */
static inline uint64_t plain_special8(uint64_t w) {
  return plain_stop8(w) | ((((w - PLAIN_ONES * 0x20) & ~w) | w) & PLAIN_HIGH);
}
#else
#define PLAIN_SWAR 0
#endif

#if defined(__SSE2__)
#include <emmintrin.h>
/* Bit i: byte i of the sixteen at p is not plain (quotes_only: is '"' or '\\'). A signed
 * compare below 0x20 also catches every byte >= 0x80. */
static inline unsigned plain_special16(const char *p, int quotes_only) {
  __m128i w = _mm_loadu_si128((const __m128i *)(const void *)p);
  __m128i m = _mm_or_si128(_mm_cmpeq_epi8(w, _mm_set1_epi8('"')),
                           _mm_cmpeq_epi8(w, _mm_set1_epi8('\\')));
  if (!quotes_only) m = _mm_or_si128(m, _mm_cmplt_epi8(w, _mm_set1_epi8(0x20)));
  return (unsigned)_mm_movemask_epi8(m);
}
#endif

/* The first byte in [p, end) that is not plain (quotes_only: the first '"' or '\\'), or
 * end. Called with a constant quotes_only, each use compiles to its own loop. Sixteen
 * bytes a step where SSE2 is there (every x86-64), then eight, then one. */
static inline const char *plain_run_end(const char *p, const char *end, int quotes_only) {
#if defined(__SSE2__)
  while (end - p >= 16) {
    unsigned m = plain_special16(p, quotes_only);
    if (m) return p + __builtin_ctz(m);
    p += 16;
  }
#endif
#if PLAIN_SWAR
  while (end - p >= 8) {
    uint64_t w = plain_load8(p), m = quotes_only ? plain_stop8(w) : plain_special8(w);
    if (m) return p + (__builtin_ctzll(m) >> 3);
    p += 8;
  }
#endif
  while (p < end && (quotes_only ? *p != '"' && *p != '\\' : plain_byte[(unsigned char)*p])) p++;
  return p;
}
static inline const char *plain_end(const char *p, const char *end) { return plain_run_end(p, end, 0); }
static inline const char *plain_quote_or_backslash(const char *p, const char *end) {
  return plain_run_end(p, end, 1);
}

#endif
