/* hll: HyperLogLog sketches, sparse then dense (see hll.h for the design and encoding). */
#include "hll.h"

#include <errno.h>
#include <math.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif
#define XXH_INLINE_ALL
#include <xxhash.h>

#include "util/mem.h"

#define P HLL_PRECISION
#define M HLL_REGISTERS
#define Q (64 - P)          /* hash bits left for the rank: ranks 1..Q+1 = 51 */
#define SP 25               /* sparse precision p' */
#define SQ (64 - SP)        /* sparse ranks 1..SQ+1 = 40 */
#define TABLE_MAX (HLL_DENSE_BYTES / 4) /* sparse table slots at most: 3072, as big as dense */
#define SPARSE_MAX (TABLE_MAX / 4 * 3)  /* 2304 entries, the table 3/4 full */
#define SPARSE_MAX_V1 3072    /* what earlier code kept sparse (see hll_deserialize) */
#define KIND_SPARSE 1
#define KIND_DENSE 2

#define INLINE_SLOTS 8 /* the first table lives in the struct: one allocation per small sketch */

struct hll {
  uint32_t *sparse; /* open-addressing table of cap slots (8 growing by half, or 0): entries
                       idx25 << 6 | rank, one per idx25, 0 an empty slot; NULL if dense or
                       never added to; owned unless it is small[] */
  uint8_t *dense;   /* owned; HLL_DENSE_BYTES + 1 pad byte (two-byte register access); or NULL */
  uint32_t n, cap;  /* sparse entries held / table slots */
  uint32_t small[INLINE_SLOTS];
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

static inline void fold_entry(uint8_t *d, uint32_t e) {
  uint32_t idx;
  unsigned rank;
  entry_to_reg(e, &idx, &rank);
  reg_max(d, idx, rank);
}

/* ---- Memory ----
 *
 * A replay makes hundreds of thousands of sketches and replaces a sparse table at every
 * growth step, and malloc served most of those requests on its slow path (about 170
 * instructions each: new blocks, few freed ones of the size asked). Structs and tables
 * come from free lists instead, one per size (tables have the sizes of the growth
 * steps), which hll_free and the growth that replaces a table refill; structs not found
 * there are carved from 64 KiB chunks, tables from malloc. Nothing goes back to malloc:
 * a sketch or table freed is the next one of its size made. Sketches are made on several
 * threads (queries make their own), so a lock guards the lists, held for a push or a
 * pop. */
#define POOL_CHUNK 65536
#define TABLE_CLASSES 20

typedef struct pool_block {
  struct pool_block *next;
} pool_block_t;

static atomic_flag pool_busy = ATOMIC_FLAG_INIT;
static pool_block_t *free_structs, *free_tables[TABLE_CLASSES];
static uint8_t table_class[TABLE_MAX / 4 + 1]; /* cap / 4 -> its free list (0: not set) */
static char *chunk_at, *chunk_end;             /* what is left of the chunk carved last */
static void *chunks;                           /* every chunk, linked through its first word */

static inline void pool_lock(void) {
  while (atomic_flag_test_and_set_explicit(&pool_busy, memory_order_acquire)) sched_yield();
}

static inline void pool_unlock(void) {
  atomic_flag_clear_explicit(&pool_busy, memory_order_release);
}

static inline uint32_t table_next(uint32_t cap);

/* The free list of tables of cap slots: 1.. for the table_next sizes (INLINE_SLOTS's
 * is never used), 0 for any other size (not pooled). Under the lock. */
static unsigned class_of(uint32_t cap) {
  if (__builtin_expect(!table_class[INLINE_SLOTS / 4], 0)) { /* the map, once */
    unsigned k = 1;
    for (uint32_t c = table_next(0);; c = table_next(c)) {
      if (k == TABLE_CLASSES) abort(); /* TABLE_CLASSES too small for the growth steps */
      table_class[c / 4] = (uint8_t)k++;
      if (c == TABLE_MAX) break;
    }
  }
  return cap % 4 || cap > TABLE_MAX ? 0 : table_class[cap / 4];
}

/* A table of cap slots (more than INLINE_SLOTS), contents undefined. */
static uint32_t *table_alloc(uint32_t cap) {
  pool_block_t *b = NULL;
  pool_lock();
  unsigned k = class_of(cap);
  if (k && (b = free_tables[k])) free_tables[k] = b->next;
  pool_unlock();
  return b ? (uint32_t *)(void *)b : xmalloc((size_t)cap * sizeof(uint32_t));
}

static void table_release(uint32_t *t, uint32_t cap) {
  pool_block_t *b = (pool_block_t *)(void *)t;
  pool_lock();
  unsigned k = class_of(cap);
  if (k) {
    b->next = free_tables[k];
    free_tables[k] = b;
  }
  pool_unlock();
  if (!k) free(t);
}

/* A sketch struct, contents undefined. */
static hll_t *struct_alloc(void) {
  enum { SIZE = (sizeof(hll_t) + 7) & ~(size_t)7 };
  pool_lock();
  void *h = free_structs;
  if (h) {
    free_structs = free_structs->next;
  } else {
    if (!chunk_at || (size_t)(chunk_end - chunk_at) < SIZE) {
      char *c = xmalloc(POOL_CHUNK);
      *(void **)(void *)c = chunks;
      chunks = c;
      chunk_at = c + sizeof(void *);
      chunk_end = c + POOL_CHUNK;
    }
    h = chunk_at;
    chunk_at += SIZE;
  }
  pool_unlock();
  return h;
}

static void struct_release(hll_t *h) {
  pool_block_t *b = (pool_block_t *)(void *)h;
  pool_lock();
  b->next = free_structs;
  free_structs = b;
  pool_unlock();
}

static void free_table(hll_t *h) {
  if (h->sparse && h->sparse != h->small) table_release(h->sparse, h->cap);
  h->sparse = NULL;
}

static void to_dense(hll_t *h) {
  uint8_t *d = xcalloc(1, HLL_DENSE_BYTES + 1);
  for (uint32_t k = 0; k < h->cap; k++)
    if (h->sparse[k]) fold_entry(d, h->sparse[k]);
  free_table(h);
  h->n = h->cap = 0;
  h->dense = d;
}

/* The home group of index idx25 in a table of ng groups: idx25 scaled to [0, ng), so home
 * groups rise with the index (idx25 is the top of a well-mixed hash: no scrambling
 * needed) and the table holds its entries nearly in order (see sorted_entries). */
static inline uint32_t home_group(uint32_t idx25, uint32_t ng) {
  return (uint32_t)(((uint64_t)idx25 * ng) >> SP);
}

/* The slot of index idx25 in table t of cap slots: where it is, else the empty slot where
 * it goes. Slots come in groups of four (16 bytes) probed as one: linear probing over
 * groups from the home group, within a group the lowest empty lane first, so a group's
 * filled lanes are a prefix (entries are never removed) and a search ends at the first
 * group with an empty lane. At 3/4 full an absent index costs about one and a half group
 * probes, not the eight single-slot probes of plain linear probing. Any cap that is a
 * multiple of four works, so tables grow by half. */
static inline uint32_t table_find(const uint32_t *t, uint32_t cap, uint32_t idx25) {
  uint32_t ng = cap / 4, g = home_group(idx25, ng);
#ifdef __SSE2__
  const __m128i key = _mm_set1_epi32((int)idx25), zero = _mm_setzero_si128();
  for (;;) {
    __m128i v = _mm_loadu_si128((const __m128i *)(const void *)(t + 4 * g));
    unsigned empty = (unsigned)_mm_movemask_ps(_mm_castsi128_ps(_mm_cmpeq_epi32(v, zero)));
    unsigned hit = (unsigned)_mm_movemask_ps(
                       _mm_castsi128_ps(_mm_cmpeq_epi32(_mm_srli_epi32(v, 6), key))) &
                   ~empty; /* an empty slot reads as index 0 */
    if (hit) return 4 * g + (uint32_t)__builtin_ctz(hit);
    if (empty) return 4 * g + (uint32_t)__builtin_ctz(empty);
    g = g + 1 == ng ? 0 : g + 1;
  }
#else
  for (;;) {
    for (uint32_t i = 4 * g; i < 4 * g + 4; i++)
      if (!t[i] || (t[i] >> 6) == idx25) return i;
    g = g + 1 == ng ? 0 : g + 1;
  }
#endif
}

/* The empty slot where index idx25, known absent from table t of cap slots, goes: what
 * table_find returns for it, without comparing indices (a rehash places distinct
 * entries). */
static inline uint32_t table_place(const uint32_t *t, uint32_t cap, uint32_t idx25) {
  uint32_t ng = cap / 4, g = home_group(idx25, ng);
#ifdef __SSE2__
  const __m128i zero = _mm_setzero_si128();
  for (;;) {
    __m128i v = _mm_loadu_si128((const __m128i *)(const void *)(t + 4 * g));
    unsigned empty = (unsigned)_mm_movemask_ps(_mm_castsi128_ps(_mm_cmpeq_epi32(v, zero)));
    if (empty) return 4 * g + (uint32_t)__builtin_ctz(empty);
    g = g + 1 == ng ? 0 : g + 1;
  }
#else
  for (;;) {
    for (uint32_t i = 4 * g; i < 4 * g + 4; i++)
      if (!t[i]) return i;
    g = g + 1 == ng ? 0 : g + 1;
  }
#endif
}

/* The table size after cap (0: the first): about half as big again, a multiple of four. */
static inline uint32_t table_next(uint32_t cap) {
  if (!cap) return INLINE_SLOTS;
  uint32_t next = (cap + cap / 2) & ~3u;
  return next < TABLE_MAX ? next : TABLE_MAX;
}

/* Place the nonzero entries of v[0..n) (indices absent from t and from one another) into
 * t of cap slots where table_place would, one after the other, without probing t: fill[g]
 * counts the filled lanes (a prefix) of group g. Entries that come nearly in index order,
 * as a table's do, mostly land one after the other in the same group, and a 16-byte probe
 * of a group right after a 4-byte store into it would wait for that store (there is no
 * store-to-load forwarding between the two sizes). */
static void place_all(uint32_t *t, uint32_t cap, uint8_t *fill, const uint32_t *v, uint32_t n) {
  uint32_t ng = cap / 4;
  for (uint32_t k = 0; k < n; k++) {
    uint32_t e = v[k];
    if (!e) continue;
    uint32_t g = home_group(e >> 6, ng);
    while (fill[g] == 4) g = g + 1 == ng ? 0 : g + 1;
    t[4 * g + fill[g]++] = e;
  }
}

/* Rehash sparse h into a table of cap slots, then add the nmore entries at more (new
 * indices, distinct): the table one-by-one inserts of them after the rehash give. */
static void table_resize(hll_t *h, uint32_t cap, const uint32_t *more, uint32_t nmore) {
  uint32_t *t = h->small;
  if (cap != INLINE_SLOTS) { /* malloc and memset: cheaper than calloc for small blocks */
    t = table_alloc(cap);
    memset(t, 0, (size_t)cap * sizeof *t);
  }
  uint8_t fill[TABLE_MAX / 4];
  memset(fill, 0, cap / 4);
  place_all(t, cap, fill, h->sparse, h->cap);
  place_all(t, cap, fill, more, nmore);
  free_table(h);
  h->sparse = t;
  h->cap = cap;
}

/* The table cap a sparse sketch of cap slots grows to for n entries: table_next steps
 * until they fit, as one-by-one inserts (and hll_deserialize) size it. */
static uint32_t table_fit(uint32_t cap, uint32_t n) {
  if (!cap) cap = table_next(0);
  while (n * 4 > cap * 3) cap = table_next(cap);
  return cap;
}

/* sparse_put's rare path: e needs a bigger table, or the dense form once a new index
 * would pass SPARSE_MAX. Returns how many bytes hll_bytes(h) grew by. */
static __attribute__((noinline)) size_t sparse_put_grow(hll_t *h, uint32_t e) {
  if (!h->cap) {
    /* a sketch's first entry (most sketches are made for a second user and take two at
     * once): the inline table, e in its home group, without table_resize's general work;
     * the struct's bytes do not change */
    memset(h->small, 0, sizeof h->small);
    h->small[4 * home_group(e >> 6, INLINE_SLOTS / 4)] = e;
    h->sparse = h->small;
    h->cap = INLINE_SLOTS;
    h->n = 1;
    return 0;
  }
  size_t before = hll_bytes(h);
  if (h->n == SPARSE_MAX) {
    to_dense(h);
    fold_entry(h->dense, e);
  } else {
    table_resize(h, table_next(h->cap), &e, 1);
    h->n++;
  }
  return hll_bytes(h) - before;
}

/* Add entry e to sparse h: a new index, or a larger rank for one it holds (comparing two
 * entries of one index compares their ranks). Promotes h to dense when a new index would
 * pass SPARSE_MAX. Returns how many bytes hll_bytes(h) grew by. */
static inline size_t sparse_put(hll_t *h, uint32_t e) {
  if (h->cap) {
    uint32_t i = table_find(h->sparse, h->cap, e >> 6), old = h->sparse[i];
    if (old) {
      if (e > old) h->sparse[i] = e;
      return 0;
    }
    if ((h->n + 1) * 4 <= h->cap * 3) {
      h->sparse[i] = e;
      h->n++;
      return 0;
    }
  }
  return sparse_put_grow(h, e);
}

/* Add the entries of sparse src to sparse dst: indices dst holds first (a larger rank
 * in place, a new index in place while the table has room), then the rest at once into
 * the table (or dense form) they need, one resize instead of one per growth step. The
 * result, table size included, is what one sparse_put per entry gives. */
static void sparse_merge(hll_t *dst, const hll_t *src) {
  uint32_t later[SPARSE_MAX], nl = 0;
  for (uint32_t k = 0; k < src->cap; k++) {
    uint32_t e = src->sparse[k];
    if (!e) continue;
    if (dst->cap) {
      uint32_t i = table_find(dst->sparse, dst->cap, e >> 6), old = dst->sparse[i];
      if (old) {
        if (e > old) dst->sparse[i] = e;
        continue;
      }
      if ((dst->n + 1) * 4 <= dst->cap * 3) {
        dst->sparse[i] = e;
        dst->n++;
        continue;
      }
    }
    later[nl++] = e; /* a new index (src holds one entry per index): distinct */
  }
  if (!nl) return;
  if (dst->n + nl > SPARSE_MAX) {
    to_dense(dst);
    for (uint32_t k = 0; k < nl; k++) fold_entry(dst->dense, later[k]);
    return;
  }
  table_resize(dst, table_fit(dst->cap, dst->n + nl), later, nl);
  dst->n += nl;
}

/* Sort n entries ascending by a radix sort, byte by byte, through a scratch array. */
static void radix_sort(uint32_t *v, uint32_t n) {
  uint32_t tmp[SPARSE_MAX], *from = v, *to = tmp;
  for (int shift = 0; shift < 32; shift += 8) {
    uint32_t pos[256] = {0};
    for (uint32_t k = 0; k < n; k++) pos[(from[k] >> shift) & 255]++;
    for (uint32_t b = 0, sum = 0; b < 256; b++) {
      uint32_t c = pos[b];
      pos[b] = sum;
      sum += c;
    }
    for (uint32_t k = 0; k < n; k++) to[pos[(from[k] >> shift) & 255]++] = from[k];
    uint32_t *t = from;
    from = to;
    to = t;
  }
  /* four passes: the result is back in v */
}

/* Store the n entries of sparse h in out, ascending; returns n. The table holds them
 * nearly in order already (home groups rise with the index): read group by group, with
 * the entries that wrapped past the last group to the first ones moved to the end, they
 * are out of order only within a group and where an entry was pushed past its home, so
 * an insertion sort finishes in about one move per entry. Should that take more than a
 * few moves per entry (indices crowding some groups), a radix sort finishes instead. */
static uint32_t sorted_entries(const hll_t *h, uint32_t *out) {
  uint32_t n = 0, nw = 0, ng = h->cap / 4, wrapped[INLINE_SLOTS * 4];
  const uint32_t *t = h->sparse;
  uint32_t g = 0;
  /* Up to the first group with an empty lane, an entry may have wrapped (its home group
   * lies after it); no probe crosses that group, so none lies beyond. */
  for (; g < ng; g++) {
    int open = 0;
    for (uint32_t i = 4 * g; i < 4 * g + 4; i++) {
      uint32_t e = t[i];
      if (!e) open = 1;
      else if (home_group(e >> 6, ng) > g && nw < sizeof wrapped / sizeof *wrapped)
        wrapped[nw++] = e;
      else out[n++] = e; /* (a crowd of wrapped entries: left to the sort) */
    }
    if (open) break;
  }
  for (uint32_t i = 4 * (g + 1); i < h->cap; i++)
    if (t[i]) out[n++] = t[i];
  for (uint32_t k = 0; k < nw; k++) out[n++] = wrapped[k];
  uint64_t moves = 0, budget = 4 * (uint64_t)n + 64;
  for (uint32_t k = 1; k < n; k++) {
    uint32_t x = out[k], j = k;
    for (; j > 0 && out[j - 1] > x; j--) out[j] = out[j - 1];
    out[j] = x;
    moves += k - j;
    if (moves > budget) {
      radix_sort(out, n);
      break;
    }
  }
  return n;
}

/* ---- Lifetime ---- */

hll_t *hll_new(void) {
  hll_t *h = struct_alloc();
  memset(h, 0, sizeof *h);
  return h;
}

/* The sparse entry of hash (hll_add_hash's). */
static inline uint32_t sparse_entry(uint64_t hash) {
  uint32_t idx25 = (uint32_t)(hash >> SQ);
  unsigned rank = (unsigned)__builtin_clzll(hash << SP | (1ull << (SP - 1))) + 1;
  return idx25 << 6 | rank;
}

hll_t *hll_new_pair(uint64_t a, uint64_t b) {
  hll_t *h = hll_new();
  uint32_t ea = sparse_entry(a), eb = sparse_entry(b);
  h->sparse = h->small;
  h->cap = INLINE_SLOTS;
  uint32_t ga = 4 * home_group(ea >> 6, INLINE_SLOTS / 4);
  if ((ea >> 6) == (eb >> 6)) { /* one index: the larger rank */
    h->small[ga] = ea > eb ? ea : eb;
    h->n = 1;
  } else {
    uint32_t gb = 4 * home_group(eb >> 6, INLINE_SLOTS / 4);
    h->small[ga] = ea;
    h->small[gb + (gb == ga)] = eb;
    h->n = 2;
  }
  return h;
}

hll_t *hll_new_dense(void) {
  hll_t *h = hll_new();
  h->dense = xcalloc(1, HLL_DENSE_BYTES + 1);
  return h;
}

void hll_free(hll_t *h) {
  if (!h) return;
  free_table(h);
  free(h->dense);
  struct_release(h);
}

hll_t *hll_clone(const hll_t *h) {
  hll_t *c = hll_new();
  if (h->dense) {
    c->dense = xmalloc(HLL_DENSE_BYTES + 1);
    memcpy(c->dense, h->dense, HLL_DENSE_BYTES + 1);
  } else if (h->cap) {
    c->sparse = h->cap == INLINE_SLOTS ? c->small : table_alloc(h->cap);
    memcpy(c->sparse, h->sparse, (size_t)h->cap * sizeof *c->sparse);
    c->n = h->n;
    c->cap = h->cap;
  }
  return c;
}

/* ---- Adding and counting ---- */

size_t hll_add_hash(hll_t *h, uint64_t hash) {
  if (h->dense) {
    /* The marker bit caps the rank at Q + 1 when the Q remainder bits are all zero. */
    unsigned rank = (unsigned)__builtin_clzll(hash << P | (1ull << (P - 1))) + 1;
    reg_max(h->dense, (uint32_t)(hash >> Q), rank);
    return 0;
  }
  return sparse_put(h, sparse_entry(hash));
}

void hll_add(hll_t *h, const void *p, size_t n) { (void)hll_add_hash(h, XXH3_64bits(p, n)); }

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

int hll_merge(hll_t *dst, const hll_t *src) {
  if (!dst || !src) return -EINVAL;
  if (dst == src) return 0;
  if (!src->dense) {
    /* one insert per source entry, whatever dst holds: a minute's sketch joins its
     * hour's in time proportional to the minute's users */
    if (!dst->dense) {
      sparse_merge(dst, src);
      return 0;
    }
    for (uint32_t k = 0; k < src->cap; k++)
      if (src->sparse[k]) fold_entry(dst->dense, src->sparse[k]);
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
  size_t table = h->cap > INLINE_SLOTS ? (size_t)h->cap * sizeof *h->sparse : 0;
  return sizeof *h + (h->dense ? HLL_DENSE_BYTES + 1 : table);
}

int hll_is_dense(const hll_t *h) { return h->dense != NULL; }

/* ---- Serialization ---- */

/* Write v as a varint at p (room for 5 bytes); returns the bytes written. */
static inline size_t put_varint(uint8_t *p, uint32_t v) {
  size_t n = 0;
  while (v >= 0x80) {
    p[n++] = (uint8_t)(v | 0x80);
    v >>= 7;
  }
  p[n++] = (uint8_t)v;
  return n;
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
    /* canonical: entries in increasing order (by index, as it sits in the top bits) */
    uint32_t sorted[SPARSE_MAX], n = h->cap ? sorted_entries(h, sorted) : 0;
    buf_reserve(out, 5 + (size_t)n * 5);
    uint8_t *p = (uint8_t *)out->data + out->len, *p0 = p;
    p += put_varint(p, n);
    uint32_t prev = 0;
    for (uint32_t k = 0; k < n; k++) {
      p += put_varint(p, sorted[k] - prev);
      prev = sorted[k];
    }
    out->len += (size_t)(p - p0);
    out->data[out->len] = 0;
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
    if (!used || count > SPARSE_MAX_V1 || count > n - used) goto fail; /* >= 1 byte each */
    s += used;
    n -= used;
    if (count > SPARSE_MAX) { /* written sparse by earlier code: loads dense (see hll.h) */
      h->dense = xcalloc(1, HLL_DENSE_BYTES + 1);
    } else if (count) {
      uint32_t cap = table_next(0);
      while (count * 4 > cap * 3) cap = table_next(cap);
      h->sparse = cap == INLINE_SLOTS ? h->small : table_alloc(cap);
      if (cap != INLINE_SLOTS) memset(h->sparse, 0, (size_t)cap * sizeof *h->sparse);
      h->cap = cap;
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
      if (h->dense) {
        fold_entry(h->dense, e);
      } else {
        h->sparse[table_place(h->sparse, h->cap, e >> 6)] = e; /* indices increase: new */
        h->n++;
      }
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
