/* rolluptest.h: helpers the rollup unit tests share: distinct user hashes, and a snapshot
 * round trip that checks the encoding is canonical. */
#ifndef SLUICE_ROLLUPTEST_H
#define SLUICE_ROLLUPTEST_H

#include "rollup.h"
#include "test.h"

/* splitmix64's finalizer: distinct inputs, distinct well-mixed hashes. */
static uint64_t mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

/* r through a snapshot: a new store (caller-owned; NULL when it did not load, a failed
 * check) that serializes to the same bytes as r. */
static rollup_t *reload(const rollup_t *r) {
  buf_t s1 = BUF_INIT, s2 = BUF_INIT;
  rollup_serialize(r, &s1);
  rollup_t *d = NULL;
  CHECK_INT(rollup_deserialize(s1.data, s1.len, &d), 0);
  if (d) {
    rollup_serialize(d, &s2);
    CHECK(s1.len == s2.len && memcmp(s1.data, s2.data, s1.len) == 0);
  }
  buf_free(&s1);
  buf_free(&s2);
  return d;
}

#endif
