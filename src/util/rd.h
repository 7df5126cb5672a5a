/* rd: a bounds-checked little-endian reader over untrusted bytes (the snapshot parts).
 * A read past the end returns 0 and sets the sticky `bad` flag, so a decoder reads on
 * and checks once at the end. */
#ifndef SLUICE_RD_H
#define SLUICE_RD_H

#include <stddef.h>
#include <stdint.h>

typedef struct rd {
  const unsigned char *p;
  size_t n, pos;
  int bad;
} rd_t;

/* The next `bytes` (1..8) bytes as a little-endian unsigned number; 0 and bad = 1 when
 * fewer are left. */
static inline uint64_t rd_get(rd_t *r, int bytes) {
  if (r->bad || r->n - r->pos < (size_t)bytes) {
    r->bad = 1;
    return 0;
  }
  uint64_t v = 0;
  for (int i = bytes - 1; i >= 0; i--) v = v << 8 | r->p[r->pos + (size_t)i];
  r->pos += (size_t)bytes;
  return v;
}

#endif
