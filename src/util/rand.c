/* rand: kernel randomness (see rand.h). */
#include "util/rand.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

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
 * call per id would be a system call per event. Each thread draws 512 bytes at a time
 * and hands them out 16 by 16; they are used once and wiped as taken. (sluice never
 * forks, so no two processes can share a pool.) */
static _Thread_local struct {
  uint8_t bytes[512];
  size_t used;
} pool = {.used = sizeof pool.bytes};

static void pooled(uint8_t out[16]) {
  if (pool.used + 16 > sizeof pool.bytes) {
    rand_bytes(pool.bytes, sizeof pool.bytes);
    pool.used = 0;
  }
  memcpy(out, pool.bytes + pool.used, 16);
  memset(pool.bytes + pool.used, 0, 16);
  pool.used += 16;
}

void rand_uuid(char out[37]) {
  uint8_t b[16];
  pooled(b);
  b[6] = (uint8_t)((b[6] & 0x0f) | 0x40);
  b[8] = (uint8_t)((b[8] & 0x3f) | 0x80);
  size_t k = 0;
  for (int i = 0; i < 16; i++) {
    if (i == 4 || i == 6 || i == 8 || i == 10) out[k++] = '-';
    out[k++] = hexd[b[i] >> 4];
    out[k++] = hexd[b[i] & 15];
  }
  out[k] = 0;
}
