/* rollup_int: the store's layout and the helpers that rollup.c (adding, queries) and
 * rollup_snap.c (the snapshot encoding) share. Not a public interface: see rollup.h.
 *
 * Design. A store is NGRAN rings of buckets; a bucket holds cells in an array indexed by
 * an open-addressing table keyed by TOTAL_KEY or KEY(dim, value id); dimension values are
 * interned per dimension. Minute buckets carry a folded flag and the newest ones are
 * pending (rollup.h). */
#ifndef SLUICE_ROLLUP_INT_H
#define SLUICE_ROLLUP_INT_H

#include <stddef.h>
#include <stdint.h>

#include "hll.h"
#include "rollup.h"

#define NGRAN 3
enum { G_SEC, G_MIN, G_HOUR };
static const int64_t WIDTH_US[NGRAN] = {1000000, 60000000, 3600000000};

/* Who a cell's unique users are. */
enum { U_FRESH, U_ONE, U_HLL, U_NONE };

#define TOTAL_KEY 0u
#define KEY(dim, id) ((uint32_t)((dim) + 1) << 24 | (uint32_t)(id))
#define KEY_DIM(key) ((int)((key) >> 24) - 1)
#define KEY_ID(key) ((key) & 0xffffffu)

/* Bounds that keep every size and every time computation far from overflow. */
#define HW_LIMIT ((int64_t)1 << 60)
#define MAX_VALUES 1000000u
/* Minutes with events not yet added into their hours: the newest ones. */
#define PENDING_MAX 4

typedef struct cell {
  uint32_t key;   /* TOTAL_KEY or KEY(dim, id) */
  uint32_t users; /* U_* */
  uint64_t count;
  double sum;
  union {
    uint64_t hash; /* U_ONE */
    hll_t *hll;    /* U_HLL, owned */
  } u;
} cell_t;

typedef struct bucket {
  int64_t idx;      /* bucket number (t / width); meaningful while n > 0 */
  cell_t *cells;    /* owned; cells[0] is the total once n > 0 */
  uint64_t *tab;    /* owned; open addressing: key << 32 | (cell index + 1), 0 = empty (a
                       probe past another key does not touch the cells). NULL while the
                       bucket is small: its cells are scanned (rollup.c, SMALL_CELLS) */
  uint32_t n, cap;  /* cells used / allocated */
  uint32_t tbits;   /* tab has (or, while NULL, is counted at) 1 << tbits slots (0: the
                       slot never held a bucket) */
  uint32_t folded;  /* minutes: 1 once added into the hour's cells (then late events go to
                       both), 0 while pending */
} bucket_t;

typedef struct ring {
  bucket_t *slots; /* owned; bucket b lives in slot b mod size. NULL until the ring's first
                      bucket is claimed: a store that never holds a bucket (most of the
                      default stores `sluice serve` builds before it loads its snapshot)
                      costs no ring memory. Counted in ring_bytes from the start all the
                      same, so the memory budget behaves alike either way. */
  uint32_t size;
  /* The slot of bucket memo_b (ring_slot spared a division when the same bucket comes
   * again, as it does event after event); 0 -> 0 from the start. */
  int64_t memo_b;
  uint32_t memo_slot;
  /* Only slots [held_lo, held_hi) ever held a bucket's arrays: freeing a store visits no
   * other slot. held_lo > held_hi while none did. */
  uint32_t held_lo, held_hi;
} ring_t;

/* Slots of a dimension's memo of recent values (a power of two). */
#define DIM_MEMO 16

typedef struct dim {
  char *name;      /* owned */
  char **vals;     /* owned strings; vals[0] = "(other)" */
  uint32_t *vlen;
  uint32_t *vhash; /* each value's rollup_value_hash */
  uint32_t n, cap;
  uint64_t *tab;   /* open addressing: the value's hash << 32 | (value id + 1), 0 empty */
  uint32_t tbits;
  uint32_t memo[DIM_MEMO]; /* ids of values interned lately, one per memo_slot: events
                              repeat a few values of a dimension (an event name, "end",
                              "bounce" and "start"), and a comparison with one is cheaper
                              than hashing and a table probe */
} dim_t;

struct rollup {
  dim_t dims[ROLLUP_MAX_DIMS];
  uint32_t ndims;
  ring_t ring[NGRAN];
  uint32_t max_values, max_value_len;
  int64_t max_future_us;
  int64_t hw_us; /* max(clock, newest accepted event), as of the last add or advance */
  int64_t hw_b[NGRAN]; /* hw_us's bucket of each granularity: set together (set_hw) */
  int64_t (*now_us)(void *ctx);
  void *now_ctx;
  uint64_t accepted, rejected_future, rejected_old, folded;
  int64_t pending[PENDING_MAX]; /* unfolded minute buckets, oldest first */
  uint32_t npending;
  /* Memory budget (see rollup.h): ring_bytes is kept up to date by every change to a
   * bucket; floor[g] is the oldest bucket of ring g the budget still lets it hold;
   * ufloor[g] the oldest whose sketches it has not given up yet (buckets below hold no
   * sketch but what late events brought). */
  int no_users; /* rollup_opts_t.no_users */
  size_t max_bytes, ring_bytes;
  int64_t floor[NGRAN], ufloor[NGRAN];
  uint64_t evicted[NGRAN], budget_folded, users_dropped[NGRAN];
  /* At the bound with nothing left to give: values fold into "(other)" and no cell starts
   * a sketch; starved_bytes is ring_bytes when that was decided. */
  int starved;
  size_t starved_bytes;
};

/* ---- Small helpers ---- */

static inline int64_t floor_div(int64_t a, int64_t b) {
  int64_t q = a / b;
  return (a % b != 0 && a < 0) ? q - 1 : q;
}

static inline uint32_t ring_slot(int64_t a, uint32_t m) {
  int64_t r = a % (int64_t)m;
  return (uint32_t)(r < 0 ? r + m : r);
}

/* Set the store's high-water mark, with its bucket numbers. */
static inline void set_hw(rollup_t *r, int64_t hw) {
  r->hw_us = hw;
  for (int g = 0; g < NGRAN; g++) r->hw_b[g] = floor_div(hw, WIDTH_US[g]);
}

/* Is bucket b of granularity g inside its ring's window (relative to hw)? Buckets newer
 * than hw are inside too (and empty). */
static inline int retained(const rollup_t *r, int g, int64_t b, int64_t hw) {
  int64_t last = hw == r->hw_us ? r->hw_b[g] : floor_div(hw, WIDTH_US[g]);
  return b > last - (int64_t)r->ring[g].size && b >= r->floor[g];
}

/* The bucket b of granularity g if the store holds it, else NULL (empty or gone). */
static inline const bucket_t *find_bucket(const rollup_t *r, int g, int64_t b, int64_t hw) {
  if (!retained(r, g, b, hw) || !r->ring[g].slots) return NULL;
  const bucket_t *bk = &r->ring[g].slots[ring_slot(b, r->ring[g].size)];
  return bk->n && bk->idx == b ? bk : NULL;
}

/* ---- Shared between rollup.c and rollup_snap.c ---- */

/* The hash of value s[0..len) that places it in its dimension's table. */
uint32_t rollup_value_hash(const char *s, size_t len);
/* Value id of s[0..len) (its rollup_value_hash h) in d, or -1; *slot (may be NULL) gets the
 * table slot where it would go. */
int64_t rollup_dim_find(const dim_t *d, const char *s, size_t len, uint32_t h, uint32_t *slot);
/* Append s[0..len) (known absent) to d as a new value; returns its id. */
uint32_t rollup_dim_insert(dim_t *d, const char *s, size_t len, uint32_t h);
/* The bucket b of ring g, claimed (its slot emptied of an older bucket, a minute folded
 * first) if needed; the caller has checked that b is inside the window. */
bucket_t *rollup_claim_bucket(rollup_t *r, int g, int64_t b);
/* The cell of key in bk (created zeroed, U_FRESH, when absent: *created 1). */
cell_t *rollup_cell_get(rollup_t *r, bucket_t *bk, uint32_t key, int *created);
/* Add minute bucket mk into its hour's cells: counts, sums and users, or users only
 * (with_counts 0: a version-1 snapshot's minutes); marks it folded. */
void rollup_fold_minute(rollup_t *r, bucket_t *mk, int with_counts);

#endif
