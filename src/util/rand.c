/* rand: randomness for keys and ids (see rand.h). */
#include "util/rand.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include <openssl/rand.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

void rand_bytes(void *p, size_t n) {
  uint8_t *o = p;
  while (n) {
    ssize_t r = getrandom(o, n, 0);
    if (r < 0) {
      if (errno == EINTR) continue;
      perror("sluice: getrandom");
      abort();
    }
    o += r;
    n -= (size_t)r;
  }
}

static const char hexd[] = "0123456789abcdef";

void rand_hex(char *out, size_t n) {
  uint8_t b[64];
  size_t k = 0;
  while (n) {
    size_t m = n < sizeof b ? n : sizeof b;
    rand_bytes(b, m);
    for (size_t i = 0; i < m; i++) {
      out[k++] = hexd[b[i] >> 4];
      out[k++] = hexd[b[i] & 15];
    }
    n -= m;
  }
  out[k] = 0;
}

/* Ids are made per event (a messageId for each event sent without one): one getrandom
 * call per id would be a system call per event, and the kernel's generator costs about
 * 3 ns a byte on top (getrandom of 512 bytes: 52 ns per id). Each thread draws 4 KiB at
 * a time from OpenSSL's generator instead (RAND_bytes: a CTR-DRBG over AES, seeded and
 * reseeded from the kernel; 4.4 ns per id) and hands them out 16 by 16; they are used
 * once and wiped as taken. Should OpenSSL fail, the kernel fills the pool. (sluice never
 * forks, so no two processes can share a pool.) */
static _Thread_local struct {
  uint8_t bytes[4096];
  size_t used;
} pool = {.used = sizeof pool.bytes};

static void pooled(uint8_t out[16]) {
  if (pool.used + 16 > sizeof pool.bytes) {
    if (RAND_bytes(pool.bytes, (int)sizeof pool.bytes) != 1)
      rand_bytes(pool.bytes, sizeof pool.bytes);
    pool.used = 0;
  }
  memcpy(out, pool.bytes + pool.used, 16);
  memset(pool.bytes + pool.used, 0, 16);
  pool.used += 16;
}

/* The 32 hex digits of b[0..16), in order, to hex: sixteen bytes a step with SSE2 (an id
 * is made per event sent without one; a digit at a time was most of the cost). */
static void hex16(const uint8_t b[16], char hex[32]) {
#if defined(__SSE2__)
  __m128i v = _mm_loadu_si128((const __m128i *)(const void *)b), nib = _mm_set1_epi8(15);
  __m128i hi = _mm_and_si128(_mm_srli_epi16(v, 4), nib), lo = _mm_and_si128(v, nib);
  __m128i d[2] = {_mm_unpacklo_epi8(hi, lo), _mm_unpackhi_epi8(hi, lo)};
  for (int i = 0; i < 2; i++) {
    /* '0' + n, and 'a' - '0' - 10 more above 9 */
    __m128i letters = _mm_and_si128(_mm_cmpgt_epi8(d[i], _mm_set1_epi8(9)), _mm_set1_epi8(39));
    d[i] = _mm_add_epi8(_mm_add_epi8(d[i], _mm_set1_epi8('0')), letters);
    _mm_storeu_si128((__m128i *)(void *)(hex + 16 * i), d[i]);
  }
#else
  for (int i = 0; i < 16; i++) {
    hex[2 * i] = hexd[b[i] >> 4];
    hex[2 * i + 1] = hexd[b[i] & 15];
  }
#endif
}

void rand_uuid(char out[37]) {
  uint8_t b[16];
  char hex[32];
  pooled(b);
  b[6] = (uint8_t)((b[6] & 0x0f) | 0x40);
  b[8] = (uint8_t)((b[8] & 0x3f) | 0x80);
  hex16(b, hex);
  /* 8-4-4-4-12 */
  memcpy(out, hex, 8);
  out[8] = '-';
  memcpy(out + 9, hex + 8, 4);
  out[13] = '-';
  memcpy(out + 14, hex + 12, 4);
  out[18] = '-';
  memcpy(out + 19, hex + 16, 4);
  out[23] = '-';
  memcpy(out + 24, hex + 20, 12);
  out[36] = 0;
}
