/* Fuzz target: hll_deserialize on hostile bytes, then everything a snapshot loader does
 * with what it accepted. Oracles: an accepted encoding is canonical (re-serializing gives
 * the input back), merging is idempotent and commutative down to the bytes, and every
 * sketch produced by count/merge/add serializes to bytes that decode again.
 *
 * Dense encodings are 12 KiB, beyond what the corpus (and mutation) reaches by chance, so
 * an input that does not start like an encoding (first byte other than the version) is
 * also expanded into a dense image: register i = input byte i mod len, low six bits,
 * folded into 0..51 unless the first byte's top bit is set. That image must decode
 * exactly when no register exceeds 51. */
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "hll.h"

static void roundtrip(const hll_t *h) {
  buf_t b = BUF_INIT, again = BUF_INIT;
  hll_serialize(h, &b);
  hll_t *d = NULL;
  if (hll_deserialize(b.data, b.len, &d) != 0) __builtin_trap();
  if (hll_count(d) != hll_count(h)) __builtin_trap();
  hll_serialize(d, &again);
  if (again.len != b.len || memcmp(again.data, b.data, b.len) != 0) __builtin_trap();
  hll_free(d);
  buf_free(&b);
  buf_free(&again);
}

static int same(const hll_t *x, const hll_t *y) {
  buf_t a = BUF_INIT, b = BUF_INIT;
  hll_serialize(x, &a);
  hll_serialize(y, &b);
  int eq = a.len == b.len && memcmp(a.data, b.data, a.len) == 0;
  buf_free(&a);
  buf_free(&b);
  return eq;
}

/* h was decoded from (data, size); other is a fixed sketch to merge with. */
static void exercise(hll_t *h, const uint8_t *data, size_t size, const hll_t *other) {
  (void)hll_count(h);
  (void)hll_bytes(h);
  buf_t b = BUF_INIT;
  hll_serialize(h, &b);
  int legacy = size > 1 && data[1] == 1 && hll_is_dense(h); /* long sparse, loaded dense */
  if (!legacy && (b.len != size || memcmp(b.data, data, size) != 0)) __builtin_trap();
  buf_free(&b);
  if (legacy) roundtrip(h);

  hll_t *c = hll_clone(h);
  if (hll_merge(c, h) != 0 || !same(c, h)) __builtin_trap(); /* idempotent */
  hll_free(c);

  hll_t *x = hll_clone(h), *y = hll_clone(other);
  if (hll_merge(x, other) != 0 || hll_merge(y, h) != 0) __builtin_trap();
  if (!same(x, y)) __builtin_trap(); /* commutative */
  (void)hll_count(x);
  roundtrip(x);
  for (size_t k = 0; k + 8 <= size && k < 64; k += 8) {
    uint64_t v;
    memcpy(&v, data + k, 8);
    hll_add_hash(x, v);
  }
  roundtrip(x);
  hll_free(x);
  hll_free(y);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static hll_t *small, *dense;
  if (!small) {
    small = hll_new();
    dense = hll_new();
    for (uint64_t i = 0; i < 100; i++) hll_add(small, &i, sizeof i);
    for (uint64_t i = 0; i < 20000; i++) hll_add(dense, &i, sizeof i);
  }

  hll_t *h = NULL;
  int rc = hll_deserialize(data, size, &h);
  if (rc != 0 && (rc != -EBADMSG || h)) __builtin_trap();
  if (rc == 0) {
    exercise(h, data, size, small);
    exercise(h, data, size, dense);
    hll_free(h);
  }

  if (!size || data[0] == HLL_SERIAL_VERSION) return 0;
  static uint8_t img[3 + HLL_DENSE_BYTES];
  img[0] = HLL_SERIAL_VERSION;
  img[1] = 2;
  img[2] = HLL_PRECISION;
  memset(img + 3, 0, HLL_DENSE_BYTES);
  int valid = 1;
  for (uint32_t i = 0; i < HLL_REGISTERS; i++) {
    unsigned r = data[i % size] & 63;
    if (!(data[0] & 0x80)) r %= 52;
    if (r > 51) valid = 0;
    uint32_t bit = i * 6;
    img[3 + bit / 8] |= (uint8_t)(r << (bit % 8));
    if (bit % 8 > 2) img[3 + bit / 8 + 1] |= (uint8_t)(r >> (8 - bit % 8));
  }
  rc = hll_deserialize(img, sizeof img, &h);
  if ((rc == 0) != valid) __builtin_trap();
  if (rc == 0) {
    exercise(h, img, sizeof img, small);
    exercise(h, img, sizeof img, dense);
    hll_free(h);
  }
  return 0;
}
