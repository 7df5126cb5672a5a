/* hll: HyperLogLog sketches, sparse then dense (see hll.h for the design and encoding). */
#include "hll.h"

#include <errno.h>
#include <math.h>
#include <string.h>
#define XXH_INLINE_ALL
#include <xxhash.h>

#include "util/mem.h"

#define P HLL_PRECISION
#define M HLL_REGISTERS
#define Q (64 - P)          /* hash bits left for the rank: ranks 1..Q+1 = 51 */
#define SP 25               /* sparse precision p' */
#define SQ (64 - SP)        /* sparse ranks 1..SQ+1 = 40 */
#define SPARSE_MAX (HLL_DENSE_BYTES / 4) /* 3072 entries: no bigger than dense */
#define KIND_SPARSE 1
#define KIND_DENSE 2

struct hll {
  uint32_t *sparse; /* owned; sorted entries idx25 << 6 | rank, unique idx25; NULL if dense */
  uint8_t *dense;   /* owned; HLL_DENSE_BYTES + 1 pad byte (two-byte register access); or NULL */
  uint32_t n, cap;  /* sparse entries used / allocated */
};

/* ---- Registers ---- */

/* Register i lives at bits 6i..6i+5, so within the two bytes at 6i/8 (the pad byte makes
 * the second one always readable). Byte operations keep this independent of endianness. */
static inline void reg_max(uint8_t *d, uint32_t i, unsigned rank) {
  uint32_t bit = i * 6, at = bit >> 3, sh = bit & 7;
  unsigned v = (unsigned)d[at] | (unsigned)d[at + 1] << 8;
  if (rank <= ((v >> sh) & 63)) return;
  v = (v & ~(63u << sh)) | rank << sh;
  d[at] = (uint8_t)v;
  d[at + 1] = (uint8_t)(v >> 8);
}

/* Registers 4k..4k+3, in bits 0..23, from the three bytes at 3k. */
static inline uint32_t group_get(const uint8_t *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16;
}

static inline uint64_t load48(const uint8_t *p) {
  return (uint64_t)p[0] | (uint64_t)p[1] << 8 | (uint64_t)p[2] << 16 | (uint64_t)p[3] << 24 |
         (uint64_t)p[4] << 32 | (uint64_t)p[5] << 40;
}

/* Per-register max of the registers at bits 0, 12, 24, 36 of x and y (the others are
 * ignored and come back 0). The empty 6 bits above each give room for a borrow guard:
 * (x | 64) - y keeps the guard bit exactly when x >= y, and nothing borrows across. */
static inline uint64_t max6(uint64_t x, uint64_t y) {
  const uint64_t fields = 0x03f03f03f03full, guards = 0x040040040040ull;
  x &= fields;
  y &= fields;
  uint64_t ge = (((x | guards) - y) & guards) >> 6;
  uint64_t take_x = ge * 63;
  return (x & take_x) | (y & ~take_x & fields);
}

/* The p = 14 register a sparse entry implies: the 11 index bits below the top 14 come
 * first in the register's 50-bit remainder, then the 39 bits the sparse rank describes. */
static inline void entry_to_reg(uint32_t e, uint32_t *idx, unsigned *rank) {
  uint32_t idx25 = e >> 6, low = idx25 & ((1u << (SP - P)) - 1);
  *idx = idx25 >> (SP - P);
  *rank = low ? (unsigned)__builtin_clz(low) - (32 - (SP - P)) + 1 : (SP - P) + (e & 63);
}

/* ---- Representation changes ---- */

static void fold_sparse(uint8_t *d, const uint32_t *s, uint32_t n) {
  for (uint32_t k = 0; k < n; k++) {
    uint32_t idx;
    unsigned rank;
    entry_to_reg(s[k], &idx, &rank);
    reg_max(d, idx, rank);
  }
}

static void to_dense(hll_t *h) {
  uint8_t *d = xcalloc(1, HLL_DENSE_BYTES + 1);
  fold_sparse(d, h->sparse, h->n);
  free(h->sparse);
  h->sparse = NULL;
  h->n = h->cap = 0;
  h->dense = d;
}

/* First position whose index is >= idx25. Branch-free halving: the entries are hashes, so
 * the comparisons are coin flips a branch predictor would mostly get wrong. */
static uint32_t sparse_find(const uint32_t *s, uint32_t n, uint32_t idx25) {
  if (!n) return 0;
  const uint32_t *base = s;
  while (n > 1) {
    uint32_t half = n / 2;
    base = (base[half - 1] >> 6) < idx25 ? base + half : base;
    n -= half;
  }
  return (uint32_t)(base - s) + ((base[0] >> 6) < idx25);
}

/* Room for n entries in h's sparse array, growing it by half at least (at most to
 * SPARSE_MAX): appends and small merges into a big sketch then cost no reallocation. */
static void sparse_reserve(hll_t *h, uint32_t n) {
  if (n <= h->cap) return;
  uint32_t cap = h->cap < 8 ? 8 : h->cap + h->cap / 2;
  if (cap < n) cap = n;
  if (cap > SPARSE_MAX) cap = SPARSE_MAX;
  h->sparse = xrealloc(h->sparse, (size_t)cap * sizeof *h->sparse);
  h->cap = cap;
}

/* ---- Lifetime ---- */

hll_t *hll_new(void) { return xcalloc(1, sizeof(hll_t)); }

void hll_free(hll_t *h) {
  if (!h) return;
  free(h->sparse);
  free(h->dense);
  free(h);
}

hll_t *hll_clone(const hll_t *h) {
  hll_t *c = hll_new();
  if (h->dense) {
    c->dense = xmalloc(HLL_DENSE_BYTES + 1);
    memcpy(c->dense, h->dense, HLL_DENSE_BYTES + 1);
  } else if (h->n) {
    c->sparse = xmalloc((size_t)h->n * sizeof *c->sparse);
    memcpy(c->sparse, h->sparse, (size_t)h->n * sizeof *c->sparse);
    c->n = c->cap = h->n;
  }
  return c;
}

/* ---- Adding and counting ---- */

void hll_add_hash(hll_t *h, uint64_t hash) {
  if (h->dense) {
    /* The marker bit caps the rank at Q + 1 when the Q remainder bits are all zero. */
    unsigned rank = (unsigned)__builtin_clzll(hash << P | (1ull << (P - 1))) + 1;
    reg_max(h->dense, (uint32_t)(hash >> Q), rank);
    return;
  }
  uint32_t idx25 = (uint32_t)(hash >> SQ);
  unsigned rank = (unsigned)__builtin_clzll(hash << SP | (1ull << (SP - 1))) + 1;
  uint32_t e = idx25 << 6 | rank;
  uint32_t at = sparse_find(h->sparse, h->n, idx25);
  if (at < h->n && (h->sparse[at] >> 6) == idx25) {
    if ((h->sparse[at] & 63) < rank) h->sparse[at] = e;
    return;
  }
  if (h->n == SPARSE_MAX) {
    to_dense(h);
    hll_add_hash(h, hash);
    return;
  }
  sparse_reserve(h, h->n + 1);
  memmove(h->sparse + at + 1, h->sparse + at, (size_t)(h->n - at) * sizeof *h->sparse);
  h->sparse[at] = e;
  h->n++;
}

void hll_add(hll_t *h, const void *p, size_t n) { hll_add_hash(h, XXH3_64bits(p, n)); }

/* Ertl's sigma and tau series (algorithm 6): they account for the registers still at 0
 * and those at the maximum, which is what keeps the estimate unbiased at both ends. */
static double ertl_sigma(double x) {
  if (x == 1.0) return INFINITY;
  double y = 1.0, z = x, prev;
  do {
    x *= x;
    prev = z;
    z += x * y;
    y += y;
  } while (z != prev);
  return z;
}

static double ertl_tau(double x) {
  if (x == 0.0 || x == 1.0) return 0.0;
  double y = 1.0, z = 1.0 - x, prev;
  do {
    x = sqrt(x);
    prev = z;
    y *= 0.5;
    z -= (1.0 - x) * (1.0 - x) * y;
  } while (z != prev);
  return z / 3.0;
}

static uint64_t dense_count(const uint8_t *d) {
  uint32_t hist[64] = {0};
  /* Four registers per three bytes. */
  for (uint32_t b = 0; b < HLL_DENSE_BYTES; b += 3) {
    uint32_t w = group_get(d + b);
    hist[w & 63]++;
    hist[(w >> 6) & 63]++;
    hist[(w >> 12) & 63]++;
    hist[w >> 18]++;
  }
  if (hist[0] == M) return 0;
  double z = M * ertl_tau(1.0 - (double)hist[Q + 1] / M);
  for (int k = Q; k >= 1; k--) z = 0.5 * (z + hist[k]);
  z += M * ertl_sigma((double)hist[0] / M);
  double alpha_inf = 0.5 / log(2.0);
  /* Every register at the maximum (only a crafted sketch gets there) gives z = 0. */
  double est = floor(alpha_inf * M * (double)M / z + 0.5);
  return est < 0x1p64 ? (uint64_t)est : UINT64_MAX;
}

uint64_t hll_count(const hll_t *h) {
  if (h->dense) return dense_count(h->dense);
  /* Linear counting over the 2^25 sparse buckets. */
  double m = (double)(1u << SP);
  return (uint64_t)llround(-m * log1p(-(double)h->n / m));
}

/* ---- Union ---- */

/* Union of two sparse sketches, in place in dst. The first pass raises the ranks of the
 * indexes both hold and counts the indexes only src holds (by binary search when src is
 * much the smaller, as when a minute's sketch joins its hour's); the second moves dst's
 * entries up in blocks, from the back, to make room for those. No allocation unless dst
 * grows past its capacity. */
static void merge_sparse(hll_t *dst, const hll_t *src) {
  uint32_t *a = dst->sparse;
  const uint32_t *b = src->sparse;
  uint32_t na = dst->n, nb = src->n, fresh = 0;
  if ((uint64_t)nb * 16 < na) {
    for (uint32_t j = 0; j < nb; j++) {
      uint32_t at = sparse_find(a, na, b[j] >> 6);
      if (at < na && (a[at] >> 6) == (b[j] >> 6)) {
        if (b[j] > a[at]) a[at] = b[j]; /* same index: the larger rank */
      } else {
        fresh++;
      }
    }
  } else {
    for (uint32_t i = 0, j = 0; j < nb; j++) {
      while (i < na && (a[i] >> 6) < (b[j] >> 6)) i++;
      if (i < na && (a[i] >> 6) == (b[j] >> 6)) {
        if (b[j] > a[i]) a[i] = b[j];
      } else {
        fresh++;
      }
    }
  }
  if (!fresh) return;
  if (na + fresh > SPARSE_MAX) {
    to_dense(dst);
    fold_sparse(dst->dense, b, nb);
    return;
  }
  sparse_reserve(dst, na + fresh);
  a = dst->sparse;
  uint32_t i = na, k = na + fresh;
  for (uint32_t j = nb; j-- > 0 && k > i;) {
    uint32_t at = sparse_find(a, i, b[j] >> 6);
    int same = at < i && (a[at] >> 6) == (b[j] >> 6); /* rank already raised above */
    memmove(a + at + (k - i), a + at, (size_t)(i - at) * sizeof *a);
    k -= i - at;
    i = at;
    if (!same) a[--k] = b[j];
  }
  dst->n = na + fresh;
}

int hll_merge(hll_t *dst, const hll_t *src) {
  if (!dst || !src) return -EINVAL;
  if (dst == src) return 0;
  if (!src->dense) {
    if (dst->dense) fold_sparse(dst->dense, src->sparse, src->n);
    else merge_sparse(dst, src);
    return 0;
  }
  if (!dst->dense) to_dense(dst);
  /* Eight registers (six bytes) at a time, SWAR: about four times the speed of reg_max. */
  uint8_t *d = dst->dense;
  const uint8_t *s = src->dense;
  for (uint32_t b = 0; b < HLL_DENSE_BYTES; b += 6) {
    uint64_t x = load48(d + b), y = load48(s + b);
    x = max6(x, y) | max6(x >> 6, y >> 6) << 6;
    d[b] = (uint8_t)x;
    d[b + 1] = (uint8_t)(x >> 8);
    d[b + 2] = (uint8_t)(x >> 16);
    d[b + 3] = (uint8_t)(x >> 24);
    d[b + 4] = (uint8_t)(x >> 32);
    d[b + 5] = (uint8_t)(x >> 40);
  }
  return 0;
}

/* ---- Introspection ---- */

size_t hll_bytes(const hll_t *h) {
  return sizeof *h + (h->dense ? HLL_DENSE_BYTES + 1 : (size_t)h->cap * sizeof *h->sparse);
}

int hll_is_dense(const hll_t *h) { return h->dense != NULL; }

/* ---- Serialization ---- */

static void put_varint(buf_t *out, uint32_t v) {
  uint8_t tmp[5];
  size_t n = 0;
  while (v >= 0x80) {
    tmp[n++] = (uint8_t)(v | 0x80);
    v >>= 7;
  }
  tmp[n++] = (uint8_t)v;
  buf_append(out, tmp, n);
}

/* Reads a canonical varint of at most 32 bits; returns bytes used, 0 when malformed. */
static size_t get_varint(const uint8_t *p, size_t n, uint32_t *v) {
  uint64_t x = 0;
  for (size_t k = 0; k < n && k < 5; k++) {
    x |= (uint64_t)(p[k] & 0x7f) << (7 * k);
    if (!(p[k] & 0x80)) {
      if (k > 0 && p[k] == 0) return 0; /* overlong */
      if (x > UINT32_MAX) return 0;
      *v = (uint32_t)x;
      return k + 1;
    }
  }
  return 0;
}

size_t hll_serialize(const hll_t *h, buf_t *out) {
  size_t start = out->len;
  uint8_t head[3] = {HLL_SERIAL_VERSION, h->dense ? KIND_DENSE : KIND_SPARSE, P};
  buf_append(out, head, sizeof head);
  if (h->dense) {
    buf_append(out, h->dense, HLL_DENSE_BYTES);
  } else {
    buf_reserve(out, 5 + (size_t)h->n * 5);
    put_varint(out, h->n);
    uint32_t prev = 0;
    for (uint32_t k = 0; k < h->n; k++) {
      put_varint(out, h->sparse[k] - prev);
      prev = h->sparse[k];
    }
  }
  return out->len - start;
}

int hll_deserialize(const void *p, size_t n, hll_t **out) {
  if (!out) return -EINVAL;
  *out = NULL;
  if (!p && n) return -EINVAL;
  const uint8_t *s = p;
  if (n < 3 || s[0] != HLL_SERIAL_VERSION || s[2] != P) return -EBADMSG;
  uint8_t kind = s[1];
  s += 3;
  n -= 3;
  hll_t *h = hll_new();
  if (kind == KIND_DENSE) {
    if (n != HLL_DENSE_BYTES) goto fail;
    for (uint32_t b = 0; b < HLL_DENSE_BYTES; b += 3) {
      uint32_t w = group_get(s + b);
      if ((w & 63) > Q + 1 || ((w >> 6) & 63) > Q + 1 || ((w >> 12) & 63) > Q + 1 ||
          (w >> 18) > Q + 1)
        goto fail;
    }
    h->dense = xmalloc(HLL_DENSE_BYTES + 1);
    memcpy(h->dense, s, HLL_DENSE_BYTES);
    h->dense[HLL_DENSE_BYTES] = 0;
  } else if (kind == KIND_SPARSE) {
    uint32_t count;
    size_t used = get_varint(s, n, &count);
    if (!used || count > SPARSE_MAX || count > n - used) goto fail; /* >= 1 byte per entry */
    s += used;
    n -= used;
    if (count) {
      h->sparse = xmalloc((size_t)count * sizeof *h->sparse);
      h->cap = count;
    }
    uint32_t prev = 0;
    for (uint32_t k = 0; k < count; k++) {
      uint32_t delta;
      used = get_varint(s, n, &delta);
      if (!used || delta == 0 || delta > (UINT32_MAX >> 1) - prev) goto fail;
      s += used;
      n -= used;
      uint32_t e = prev + delta, rank = e & 63;
      if (e >> 6 >= (1u << SP) || rank < 1 || rank > SQ + 1) goto fail;
      if (k > 0 && (e >> 6) == (prev >> 6)) goto fail; /* one entry per index */
      h->sparse[h->n++] = e;
      prev = e;
    }
    if (n) goto fail;
  } else {
    goto fail;
  }
  *out = h;
  return 0;
fail:
  hll_free(h);
  return -EBADMSG;
}
