/* rollup: rings of time buckets holding per-dimension-value cells (see rollup.h for the
 * design, the query semantics and the snapshot encoding). */
#include "rollup.h"

#include <errno.h>
#include <math.h>
#include <string.h>
#define XXH_INLINE_ALL
#include <xxhash.h>

#include "hll.h"
#include "util/clock.h"
#include "util/mem.h"

#define NGRAN 3
enum { G_SEC, G_MIN, G_HOUR };
static const int64_t WIDTH_US[NGRAN] = {1000000, 60000000, 3600000000};
static const int WIDTH_S[NGRAN] = {1, 60, 3600};

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
  uint32_t *tab;    /* owned; open addressing, cell index + 1, 0 = empty */
  uint32_t n, cap;  /* cells used / allocated */
  uint32_t tbits;   /* tab has 1 << tbits slots (0: no table yet) */
  uint32_t folded;  /* minutes: 1 once added into the hour's cells (then late events go to
                       both), 0 while pending */
} bucket_t;

typedef struct ring {
  bucket_t *slots; /* owned; bucket b lives in slot b mod size */
  uint32_t size;
} ring_t;

typedef struct dim {
  char *name;      /* owned */
  char **vals;     /* owned strings; vals[0] = "(other)" */
  uint32_t *vlen;
  uint32_t *vhash; /* low 32 bits of each value's XXH3 */
  uint32_t n, cap;
  uint32_t *tab;   /* open addressing, value id + 1 */
  uint32_t tbits;
} dim_t;

struct rollup {
  dim_t dims[ROLLUP_MAX_DIMS];
  uint32_t ndims;
  ring_t ring[NGRAN];
  uint32_t max_values, max_value_len;
  int64_t max_future_us;
  int64_t hw_us; /* max(clock, newest accepted event), as of the last add or advance */
  int64_t (*now_us)(void *ctx);
  void *now_ctx;
  uint64_t accepted, rejected_future, rejected_old, folded;
  int64_t pending[PENDING_MAX]; /* unfolded minute buckets, oldest first */
  uint32_t npending;
  /* Memory budget (see rollup.h): ring_bytes is kept up to date by every change to a
   * bucket; floor[g] is the oldest bucket of ring g the budget still lets it hold. */
  size_t max_bytes, ring_bytes;
  int64_t floor[NGRAN];
  uint64_t evicted[NGRAN], budget_folded;
  int starved; /* at the bound with every window at its minimum: new values fold */
};

/* ---- Small helpers ---- */

static int64_t floor_div(int64_t a, int64_t b) {
  int64_t q = a / b;
  return (a % b != 0 && a < 0) ? q - 1 : q;
}

static uint32_t ring_slot(int64_t a, uint32_t m) {
  int64_t r = a % (int64_t)m;
  return (uint32_t)(r < 0 ? r + m : r);
}

static int64_t wall_now(void *ctx) {
  (void)ctx;
  return clock_wall_us();
}

static int64_t now_of(const rollup_t *r) {
  /* half the limit: hw may run max_future_us (<= 1 day) ahead of the clock */
  int64_t now = r->now_us(r->now_ctx);
  if (now > HW_LIMIT / 2) now = HW_LIMIT / 2;
  if (now < -HW_LIMIT / 2) now = -HW_LIMIT / 2;
  return now;
}

/* Is bucket b of granularity g inside its ring's window (relative to hw)? Buckets newer
 * than hw are inside too (and empty). */
static int retained(const rollup_t *r, int g, int64_t b, int64_t hw) {
  return b > floor_div(hw, WIDTH_US[g]) - (int64_t)r->ring[g].size && b >= r->floor[g];
}

/* The bucket b of granularity g if the store holds it, else NULL (empty or gone). */
static const bucket_t *find_bucket(const rollup_t *r, int g, int64_t b, int64_t hw) {
  if (!retained(r, g, b, hw)) return NULL;
  const bucket_t *bk = &r->ring[g].slots[ring_slot(b, r->ring[g].size)];
  return bk->n && bk->idx == b ? bk : NULL;
}

static inline uint32_t slot_of(uint32_t key, uint32_t bits) {
  return (uint32_t)((key * 2654435769u) >> (32 - bits));
}

/* ---- Value interning ---- */

/* The stored length of value s: cut to max_value_len at a UTF-8 character boundary. */
static size_t value_len(const rollup_t *r, const char *s) {
  size_t len = strnlen(s, (size_t)r->max_value_len + 1);
  if (len > r->max_value_len) {
    len = r->max_value_len;
    while (len > 0 && ((unsigned char)s[len] & 0xc0) == 0x80) len--;
    if (len == 0) len = r->max_value_len;
  }
  return len;
}

/* Value id of s[0..len) in d, or -1. *slot gets the table slot where it would go. */
static int64_t dim_find(const dim_t *d, const char *s, size_t len, uint32_t h, uint32_t *slot) {
  uint32_t mask = (1u << d->tbits) - 1, i = slot_of(h, d->tbits);
  for (;; i = (i + 1) & mask) {
    uint32_t e = d->tab[i];
    if (!e) break;
    uint32_t id = e - 1;
    if (d->vhash[id] == h && d->vlen[id] == len && memcmp(d->vals[id], s, len) == 0) return id;
  }
  if (slot) *slot = i;
  return -1;
}

static void dim_grow_table(dim_t *d) {
  uint32_t bits = d->tbits ? d->tbits + 1 : 4, mask = (1u << bits) - 1;
  free(d->tab);
  d->tab = xcalloc((size_t)1 << bits, sizeof *d->tab);
  d->tbits = bits;
  for (uint32_t id = 0; id < d->n; id++) {
    uint32_t i = slot_of(d->vhash[id], bits);
    while (d->tab[i]) i = (i + 1) & mask;
    d->tab[i] = id + 1;
  }
}

/* Append s[0..len) (known absent) as a new value; returns its id. */
static uint32_t dim_insert(dim_t *d, const char *s, size_t len, uint32_t h) {
  if ((uint64_t)(d->n + 1) * 4 > ((uint64_t)1 << d->tbits) * 3) dim_grow_table(d);
  if (d->n == d->cap) {
    d->cap = d->cap ? d->cap * 2 : 16;
    d->vals = xrealloc(d->vals, d->cap * sizeof *d->vals);
    d->vlen = xrealloc(d->vlen, d->cap * sizeof *d->vlen);
    d->vhash = xrealloc(d->vhash, d->cap * sizeof *d->vhash);
  }
  uint32_t id = d->n++, slot = 0;
  d->vals[id] = xstrndup(s, len);
  d->vlen[id] = (uint32_t)len;
  d->vhash[id] = h;
  dim_find(d, s, len, h, &slot); /* not present: finds the empty slot */
  d->tab[slot] = id + 1;
  return id;
}

static uint32_t intern(rollup_t *r, dim_t *d, const char *s) {
  size_t len = value_len(r, s);
  uint32_t h = (uint32_t)XXH3_64bits(s, len);
  int64_t id = dim_find(d, s, len, h, NULL);
  if (id >= 0) return (uint32_t)id;
  if (d->n > r->max_values) { /* full: max_values real values plus "(other)" */
    r->folded++;
    return 0;
  }
  if (r->starved) { /* the memory budget is spent (see enforce_budget) */
    r->folded++;
    r->budget_folded++;
    return 0;
  }
  return dim_insert(d, s, len, h);
}

static void dim_free(dim_t *d) {
  for (uint32_t i = 0; i < d->n; i++) free(d->vals[i]);
  free(d->vals);
  free(d->vlen);
  free(d->vhash);
  free(d->tab);
  free(d->name);
}

/* ---- Buckets and cells ---- */

static size_t table_bytes(const bucket_t *bk) {
  return bk->tbits ? (size_t)4 << bk->tbits : 0;
}

/* Empty bk, keeping its arrays for the next bucket of its slot. */
static void bucket_reset(rollup_t *r, bucket_t *bk) {
  for (uint32_t i = 0; i < bk->n; i++)
    if (bk->cells[i].users == U_HLL) {
      r->ring_bytes -= hll_bytes(bk->cells[i].u.hll);
      hll_free(bk->cells[i].u.hll);
    }
  bk->n = 0;
  if (bk->tbits) memset(bk->tab, 0, table_bytes(bk));
}

/* Empty bk and free its arrays too. */
static void bucket_release(rollup_t *r, bucket_t *bk) {
  bucket_reset(r, bk);
  r->ring_bytes -= (size_t)bk->cap * sizeof(cell_t) + table_bytes(bk);
  free(bk->cells);
  free(bk->tab);
  bk->cells = NULL;
  bk->tab = NULL;
  bk->cap = bk->tbits = 0;
}

static void bucket_grow_table(rollup_t *r, bucket_t *bk) {
  uint32_t bits = bk->tbits ? bk->tbits + 1 : 4, mask = (1u << bits) - 1;
  r->ring_bytes -= table_bytes(bk);
  free(bk->tab);
  bk->tab = xcalloc((size_t)1 << bits, sizeof *bk->tab);
  bk->tbits = bits;
  r->ring_bytes += table_bytes(bk);
  for (uint32_t k = 0; k < bk->n; k++) {
    uint32_t i = slot_of(bk->cells[k].key, bits);
    while (bk->tab[i]) i = (i + 1) & mask;
    bk->tab[i] = k + 1;
  }
}

static const cell_t *bucket_cell(const bucket_t *bk, uint32_t key) {
  uint32_t mask = (1u << bk->tbits) - 1;
  for (uint32_t i = slot_of(key, bk->tbits);; i = (i + 1) & mask) {
    uint32_t e = bk->tab[i];
    if (!e) return NULL;
    if (bk->cells[e - 1].key == key) return &bk->cells[e - 1];
  }
}

/* The cell of key in bk; *created says whether it was just added (zeroed, U_FRESH). */
static cell_t *cell_get(rollup_t *r, bucket_t *bk, uint32_t key, int *created) {
  uint32_t mask = (1u << bk->tbits) - 1, i = slot_of(key, bk->tbits);
  for (;; i = (i + 1) & mask) {
    uint32_t e = bk->tab[i];
    if (!e) break;
    if (bk->cells[e - 1].key == key) {
      *created = 0;
      return &bk->cells[e - 1];
    }
  }
  if ((uint64_t)(bk->n + 1) * 4 > ((uint64_t)1 << bk->tbits) * 3) {
    bucket_grow_table(r, bk);
    mask = (1u << bk->tbits) - 1;
    for (i = slot_of(key, bk->tbits); bk->tab[i]; i = (i + 1) & mask) {}
  }
  if (bk->n == bk->cap) {
    uint32_t cap = bk->cap ? bk->cap + bk->cap / 2 : 8;
    r->ring_bytes += (size_t)(cap - bk->cap) * sizeof(cell_t);
    bk->cap = cap;
    bk->cells = xrealloc(bk->cells, bk->cap * sizeof *bk->cells);
  }
  cell_t *c = &bk->cells[bk->n];
  memset(c, 0, sizeof *c);
  c->key = key;
  bk->tab[i] = ++bk->n;
  *created = 1;
  return c;
}

static void cell_add_user(rollup_t *r, cell_t *c, uint64_t hash) {
  switch (c->users) {
  case U_FRESH:
    c->users = U_ONE;
    c->u.hash = hash;
    break;
  case U_ONE:
    if (c->u.hash != hash) {
      hll_t *h = hll_new();
      hll_add_hash(h, c->u.hash);
      hll_add_hash(h, hash);
      c->users = U_HLL;
      c->u.hll = h;
      r->ring_bytes += hll_bytes(h);
    }
    break;
  case U_HLL:
    r->ring_bytes += hll_add_hash(c->u.hll, hash);
    break;
  default:
    break;
  }
}

/* Add minute bucket mk into its hour's cells (the hour bucket claimed as needed): count,
 * sum and users when with_counts, else users only (a version-1 snapshot, whose hours
 * already hold the counts); marks mk folded. Hour cells get their events this way, one
 * merge per minute and cell, rather than a second cell update and a bigger sketch insert
 * per event. */
static bucket_t *claim_bucket(rollup_t *r, int g, int64_t b);
static void fold_minute(rollup_t *r, bucket_t *mk, int with_counts) {
  int64_t h = floor_div(mk->idx, 60);
  mk->folded = 1;
  if (!retained(r, G_HOUR, h, r->hw_us)) return;
  bucket_t *hk = claim_bucket(r, G_HOUR, h);
  for (uint32_t i = 0; i < mk->n; i++) {
    const cell_t *c = &mk->cells[i];
    int created;
    cell_t *hc = with_counts ? cell_get(r, hk, c->key, &created) : (cell_t *)bucket_cell(hk, c->key);
    if (!hc) continue;
    if (with_counts) {
      hc->count += c->count;
      hc->sum += c->sum;
    }
    if (c->users == U_ONE) {
      cell_add_user(r, hc, c->u.hash);
    } else if (c->users != U_HLL) {
      continue;
    } else if (hc->users == U_HLL) {
      r->ring_bytes -= hll_bytes(hc->u.hll);
      hll_merge(hc->u.hll, c->u.hll);
      r->ring_bytes += hll_bytes(hc->u.hll);
    } else {
      hll_t *u = hll_clone(c->u.hll);
      if (hc->users == U_ONE) hll_add_hash(u, hc->u.hash);
      hc->users = U_HLL;
      hc->u.hll = u;
      r->ring_bytes += hll_bytes(u);
    }
  }
}

/* Fold the pending minute at pending[i] (if its slot still holds it) and drop it from the
 * list. */
static void fold_pending(rollup_t *r, uint32_t i) {
  int64_t b = r->pending[i];
  bucket_t *bk = &r->ring[G_MIN].slots[ring_slot(b, r->ring[G_MIN].size)];
  if (bk->n && bk->idx == b && !bk->folded) fold_minute(r, bk, 1);
  memmove(&r->pending[i], &r->pending[i + 1], (r->npending - i - 1) * sizeof *r->pending);
  r->npending--;
}

/* Fold minute bucket bk, about to be emptied, unless it already is folded. */
static void close_minute(rollup_t *r, bucket_t *bk) {
  if (!bk->n || bk->folded) return;
  for (uint32_t i = 0; i < r->npending; i++)
    if (r->pending[i] == bk->idx) {
      fold_pending(r, i);
      return;
    }
  fold_minute(r, bk, 1); /* not reached: an unfolded minute is always pending */
}

/* A new minute bucket b has just been claimed: list it as pending, folding the oldest
 * pending minute when the list is full. */
static void add_pending(rollup_t *r, int64_t b) {
  if (r->npending == PENDING_MAX) fold_pending(r, 0);
  r->pending[r->npending++] = b;
}

/* The bucket b of granularity g, claimed (its slot emptied of an older bucket) if needed.
 * The caller has checked that b is inside the window. */
static bucket_t *claim_bucket(rollup_t *r, int g, int64_t b) {
  bucket_t *bk = &r->ring[g].slots[ring_slot(b, r->ring[g].size)];
  if (bk->n && bk->idx == b) return bk;
  if (g == G_MIN) close_minute(r, bk);
  bucket_reset(r, bk);
  bk->idx = b;
  bk->folded = 0;
  if (!bk->tbits) bucket_grow_table(r, bk);
  return bk;
}

/* ---- Lifetime ---- */

static int name_ok(const char *s) {
  size_t n = s ? strnlen(s, ROLLUP_MAX_DIM_NAME + 1) : 0;
  return n >= 1 && n <= ROLLUP_MAX_DIM_NAME;
}

/* Checks opts (defaults applied) and builds the store; names are taken from opts->dims. */
rollup_t *rollup_new(const rollup_opts_t *opts) {
  if (!opts || !opts->dims || opts->ndims < 1 || opts->ndims > ROLLUP_MAX_DIMS) return NULL;
  uint32_t sec = opts->second_ring ? opts->second_ring : 3600;
  uint32_t min = opts->minute_ring ? opts->minute_ring : 10080;
  uint32_t hour = opts->hour_ring ? opts->hour_ring : 2160;
  uint32_t maxv = opts->max_values ? opts->max_values : 10000;
  uint32_t maxlen = opts->max_value_len ? opts->max_value_len : 256;
  int64_t fut = opts->max_future_us ? opts->max_future_us : 300 * (int64_t)1000000;
  if (sec < 60 || sec > 86400 || min < 60 || min > 527040 || hour < 24 || hour > 175320 ||
      min > (uint64_t)hour * 60 || maxv > MAX_VALUES || maxlen < 8 || maxlen > 4096 || fut < 1 || fut > 86400 * (int64_t)1000000 ||
      (opts->max_bytes && opts->max_bytes < ROLLUP_MIN_BYTES))
    return NULL;
  for (size_t i = 0; i < opts->ndims; i++) {
    if (!name_ok(opts->dims[i])) return NULL;
    for (size_t j = 0; j < i; j++)
      if (strcmp(opts->dims[i], opts->dims[j]) == 0) return NULL;
  }
  rollup_t *r = xcalloc(1, sizeof *r);
  r->ndims = (uint32_t)opts->ndims;
  r->max_values = maxv;
  r->max_value_len = maxlen;
  r->max_future_us = fut;
  r->now_us = opts->now_us ? opts->now_us : wall_now;
  r->now_ctx = opts->now_us ? opts->now_ctx : NULL;
  r->max_bytes = opts->max_bytes;
  const uint32_t sizes[NGRAN] = {sec, min, hour};
  for (int g = 0; g < NGRAN; g++) {
    r->ring[g].size = sizes[g];
    r->ring[g].slots = xcalloc(sizes[g], sizeof(bucket_t));
    r->ring_bytes += (size_t)sizes[g] * sizeof(bucket_t);
    r->floor[g] = INT64_MIN;
  }
  for (uint32_t i = 0; i < r->ndims; i++) {
    dim_t *d = &r->dims[i];
    d->name = xstrdup(opts->dims[i]);
    dim_grow_table(d);
    const char *other = ROLLUP_OTHER;
    dim_insert(d, other, strlen(other), (uint32_t)XXH3_64bits(other, strlen(other)));
  }
  r->hw_us = now_of(r);
  return r;
}

void rollup_free(rollup_t *r) {
  if (!r) return;
  for (int g = 0; g < NGRAN; g++) {
    for (uint32_t i = 0; i < r->ring[g].size; i++) bucket_release(r, &r->ring[g].slots[i]);
    free(r->ring[g].slots);
  }
  for (uint32_t i = 0; i < r->ndims; i++) dim_free(&r->dims[i]);
  free(r);
}

int rollup_set_max_bytes(rollup_t *r, size_t max_bytes) {
  if (!r || (max_bytes && max_bytes < ROLLUP_MIN_BYTES)) return -EINVAL;
  r->max_bytes = max_bytes;
  r->starved = 0;
  return 0;
}

void rollup_set_clock(rollup_t *r, int64_t (*now_us)(void *ctx), void *ctx) {
  if (!r) return;
  r->now_us = now_us ? now_us : wall_now;
  r->now_ctx = now_us ? ctx : NULL;
}

size_t rollup_ndims(const rollup_t *r) { return r ? r->ndims : 0; }

int rollup_dim_index(const rollup_t *r, const char *name) {
  if (!r || !name) return -ENOENT;
  for (uint32_t i = 0; i < r->ndims; i++)
    if (strcmp(r->dims[i].name, name) == 0) return (int)i;
  return -ENOENT;
}

/* ---- Memory budget ---- */

/* The fewest buckets the budget leaves each ring: a minute of seconds, an hour of minutes,
 * a day of hours. */
static const uint32_t KEEP[NGRAN] = {60, 60, 24};

/* Release the oldest held bucket of ring g (folding a minute into its hour first) and
 * raise the ring's floor past it. Returns 0, or -1 when the ring is at its minimum. */
static int evict_oldest(rollup_t *r, int g) {
  const ring_t *rg = &r->ring[g];
  int64_t last = floor_div(r->hw_us, WIDTH_US[g]), lo = last - rg->size + 1;
  if (r->floor[g] > lo) lo = r->floor[g];
  for (int64_t b = lo; b <= last - KEEP[g]; b++) {
    bucket_t *bk = &rg->slots[ring_slot(b, rg->size)];
    r->floor[g] = b + 1; /* empty buckets below go too: no rescan of them next time */
    if (!bk->n || bk->idx != b) continue;
    if (g == G_MIN) close_minute(r, bk);
    bucket_release(r, bk);
    r->evicted[g]++;
    return 0;
  }
  return -1;
}

/* Over the budget: give up the oldest minutes first (their events stay in their hours, so
 * answers there come at hour granularity), then the oldest seconds (kept in minutes),
 * then the oldest hours (gone: the retention shrinks); at every ring's minimum, new
 * dimension values fold into "(other)" until memory falls below the budget again. */
static void enforce_budget(rollup_t *r) {
  static const int order[NGRAN] = {G_MIN, G_SEC, G_HOUR};
  r->starved = 0;
  int k = 0;
  while (r->ring_bytes > r->max_bytes && k < NGRAN)
    if (evict_oldest(r, order[k]) < 0) k++;
  r->starved = r->ring_bytes > r->max_bytes;
}

/* ---- Adding ---- */

/* Move hw to t_us if later, folding (and emptying) the minutes that leave their ring. */
static void advance_to(rollup_t *r, int64_t t_us) {
  if (t_us <= r->hw_us) return;
  const ring_t *mr = &r->ring[G_MIN];
  int64_t old_lo = floor_div(r->hw_us, WIDTH_US[G_MIN]) - mr->size + 1;
  int64_t new_lo = floor_div(t_us, WIDTH_US[G_MIN]) - mr->size + 1;
  int64_t end = new_lo - old_lo > (int64_t)mr->size ? old_lo + mr->size : new_lo;
  for (int64_t b = old_lo; b < end; b++) {
    bucket_t *bk = &mr->slots[ring_slot(b, mr->size)];
    if (bk->n && bk->idx < new_lo) {
      close_minute(r, bk);
      bucket_reset(r, bk);
    }
  }
  r->hw_us = t_us;
}

void rollup_advance(rollup_t *r) {
  if (r) advance_to(r, now_of(r));
}

int rollup_add(rollup_t *r, int64_t t_us, const char *const *dim_values, uint64_t user_hash,
               double value_sum) {
  if (!r || !isfinite(value_sum)) return -EINVAL;
  int64_t now = now_of(r);
  advance_to(r, now);
  if (t_us > now && (uint64_t)t_us - (uint64_t)now > (uint64_t)r->max_future_us) {
    r->rejected_future++;
    return -ERANGE;
  }
  if (!retained(r, G_HOUR, floor_div(t_us, WIDTH_US[G_HOUR]), r->hw_us)) {
    r->rejected_old++;
    return -ERANGE;
  }
  advance_to(r, t_us);

  uint32_t keys[ROLLUP_MAX_DIMS];
  uint32_t nkeys = 0;
  if (dim_values)
    for (uint32_t d = 0; d < r->ndims; d++) {
      const char *v = dim_values[d];
      if (v && *v) keys[nkeys++] = KEY(d, intern(r, &r->dims[d], v));
    }

  /* An event goes to its hour directly only when its minute is gone or already folded;
   * else the minute carries it into the hour later (see fold_minute). */
  int64_t mb = floor_div(t_us, WIDTH_US[G_MIN]);
  int to_min = retained(r, G_MIN, mb, r->hw_us), to_hour = 1;
  if (to_min) {
    bucket_t *mk = claim_bucket(r, G_MIN, mb);
    if (!mk->n) add_pending(r, mb);
    to_hour = (int)mk->folded;
  }
  for (int g = 0; g < NGRAN; g++) {
    int64_t b = floor_div(t_us, WIDTH_US[g]);
    if ((g == G_MIN && !to_min) || (g == G_HOUR && !to_hour) || !retained(r, g, b, r->hw_us))
      continue;
    bucket_t *bk = claim_bucket(r, g, b);
    int created;
    cell_t *c = cell_get(r, bk, TOTAL_KEY, &created);
    c->count++;
    c->sum += value_sum;
    cell_add_user(r, c, user_hash);
    for (uint32_t k = 0; k < nkeys; k++) {
      c = cell_get(r, bk, keys[k], &created);
      c->count++;
      c->sum += value_sum;
      if (g == G_SEC) c->users = U_NONE; /* per-second dimension cells keep no users */
      else cell_add_user(r, c, user_hash);
    }
  }
  r->accepted++;
  if (r->max_bytes && (r->ring_bytes > r->max_bytes || r->starved)) enforce_budget(r);
  return 0;
}

/* ---- Queries ---- */

/* The key a filter list selects: 0 with *key set (*absent when the value is unknown), or
 * -EINVAL / -ENOTSUP. */
static int filter_key(const rollup_t *r, const rollup_filter_t *f, size_t nf, uint32_t *key,
                      int *absent) {
  *key = TOTAL_KEY;
  *absent = 0;
  if (nf == 0) return 0;
  if (!f) return -EINVAL;
  if (nf > 1) return -ENOTSUP;
  if (!f[0].dim || !f[0].value) return -EINVAL;
  int d = rollup_dim_index(r, f[0].dim);
  if (d < 0) return -EINVAL;
  const dim_t *dm = &r->dims[d];
  size_t len = value_len(r, f[0].value);
  int64_t id = dim_find(dm, f[0].value, len, (uint32_t)XXH3_64bits(f[0].value, len), NULL);
  if (id < 0 || len == 0) *absent = 1;
  else *key = KEY(d, id);
  return 0;
}

static uint64_t cell_uniques(const cell_t *c) {
  switch (c->users) {
  case U_ONE: return 1;
  case U_HLL: return hll_count(c->u.hll);
  case U_NONE: return ROLLUP_NA;
  default: return 0;
  }
}

/* Add c's users to the query accumulator acc (created on demand). A sparse accumulator
 * that passes ~1150 entries goes dense: a register update is cheaper than growing the
 * table further, and a range merges thousands of cells. Up to there counts stay exact. */
#define ACC_DENSE_BYTES 6200 /* a table of 2296 slots: more than ~1150 users */
static void merge_users(hll_t **acc, const cell_t *c) {
  if (c->users != U_ONE && c->users != U_HLL) return;
  if (!*acc) *acc = hll_new();
  if (c->users == U_ONE) hll_add_hash(*acc, c->u.hash);
  else hll_merge(*acc, c->u.hll);
  if (!hll_is_dense(*acc) && hll_bytes(*acc) > ACC_DENSE_BYTES) {
    hll_t *d = hll_new_dense();
    hll_merge(d, *acc);
    hll_free(*acc);
    *acc = d;
  }
}

/* Query times are clamped far inside int64_t so bucket arithmetic cannot overflow. */
static int64_t clamp_t(int64_t t) {
  return t > HW_LIMIT ? HW_LIMIT : t < -HW_LIMIT ? -HW_LIMIT : t;
}

typedef void (*visit_fn)(const bucket_t *bk, void *ctx);

/* Call fn on the pending minutes of hour h: their events are not yet in the hour's cells. */
static void hour_pending(const rollup_t *r, int64_t h, visit_fn fn, void *ctx) {
  for (uint32_t i = 0; i < r->npending; i++) {
    int64_t m = r->pending[i];
    if (floor_div(m, 60) != h) continue;
    const bucket_t *bk = find_bucket(r, G_MIN, m, r->hw_us);
    if (bk && !bk->folded) fn(bk, ctx);
  }
}

static int hour_has_pending(const rollup_t *r, int64_t h) {
  for (uint32_t i = 0; i < r->npending; i++)
    if (floor_div(r->pending[i], 60) == h) return 1;
  return 0;
}

/* Call fn on every held bucket of the greedy cover of [t0, t1) (see rollup.h), using
 * granularities gmin and coarser, and on the pending minutes of each hour bucket used;
 * stores the span covered. */
static void walk(const rollup_t *r, int gmin, int64_t t0, int64_t t1, visit_fn fn, void *ctx,
                 int64_t *from, int64_t *to) {
  int64_t hw = r->hw_us;
  t0 = clamp_t(t0);
  t1 = clamp_t(t1);
  int64_t lo_b = floor_div(hw, WIDTH_US[G_HOUR]) - r->ring[G_HOUR].size + 1;
  if (r->floor[G_HOUR] > lo_b) lo_b = r->floor[G_HOUR];
  int64_t lo = lo_b * WIDTH_US[G_HOUR];
  int64_t hi = (floor_div(hw, WIDTH_US[G_SEC]) + 1) * WIDTH_US[G_SEC];
  if (t0 < lo) t0 = lo;
  if (t1 > hi) t1 = hi;
  *from = *to = t0;
  if (t0 >= t1) return;
  int64_t t = t0;
  while (t < t1) {
    int g = -1;
    for (int k = G_HOUR; k >= gmin && g < 0; k--) {
      int64_t b = floor_div(t, WIDTH_US[k]);
      if (b * WIDTH_US[k] == t && t1 - t >= WIDTH_US[k] && retained(r, k, b, hw)) g = k;
    }
    for (int k = gmin; k < NGRAN && g < 0; k++)
      if (retained(r, k, floor_div(t, WIDTH_US[k]), hw)) g = k;
    if (g < 0) break; /* cannot happen: t >= lo is inside the hour ring */
    int64_t b = floor_div(t, WIDTH_US[g]);
    if (b * WIDTH_US[g] < *from) *from = b * WIDTH_US[g];
    const bucket_t *bk = find_bucket(r, g, b, hw);
    if (bk) fn(bk, ctx);
    if (g == G_HOUR) hour_pending(r, b, fn, ctx);
    t = (b + 1) * WIDTH_US[g];
  }
  *to = t;
}

typedef struct {
  uint32_t key;
  uint64_t count;
  double sum;
  hll_t *users;
} totals_ctx;

static void visit_counts(const bucket_t *bk, void *ctx) {
  totals_ctx *tc = ctx;
  const cell_t *c = bucket_cell(bk, tc->key);
  if (!c) return;
  tc->count += c->count;
  tc->sum += c->sum;
}

static void visit_totals(const bucket_t *bk, void *ctx) {
  totals_ctx *tc = ctx;
  const cell_t *c = bucket_cell(bk, tc->key);
  if (!c) return;
  tc->count += c->count;
  tc->sum += c->sum;
  merge_users(&tc->users, c);
}

/* rollup_totals (users 1) and rollup_counts (users 0). */
static int totals(const rollup_t *r, int64_t t0_us, int64_t t1_us,
                  const rollup_filter_t *filters, size_t nfilters, int users,
                  rollup_totals_t *out) {
  if (!r || !out) return -EINVAL;
  memset(out, 0, sizeof *out);
  uint32_t key;
  int absent, rc = filter_key(r, filters, nfilters, &key, &absent);
  if (rc < 0) return rc;
  if (absent) key = UINT32_MAX; /* matches no cell */
  totals_ctx tc = {key, 0, 0, NULL};
  /* Per-second dimension cells keep no users: a filter reads minutes at the finest (the
   * same span for counts, so both read the same buckets). */
  walk(r, key == TOTAL_KEY ? G_SEC : G_MIN, t0_us, t1_us, users ? visit_totals : visit_counts,
       &tc, &out->from_us, &out->to_us);
  out->count = tc.count;
  out->sum = tc.sum;
  out->uniques = !users ? ROLLUP_NA : tc.users ? hll_count(tc.users) : 0;
  hll_free(tc.users);
  return 0;
}

int rollup_totals(const rollup_t *r, int64_t t0_us, int64_t t1_us,
                  const rollup_filter_t *filters, size_t nfilters, rollup_totals_t *out) {
  return totals(r, t0_us, t1_us, filters, nfilters, 1, out);
}

int rollup_counts(const rollup_t *r, int64_t t0_us, int64_t t1_us,
                  const rollup_filter_t *filters, size_t nfilters, rollup_totals_t *out) {
  return totals(r, t0_us, t1_us, filters, nfilters, 0, out);
}

int rollup_timeseries(const rollup_t *r, int gran_s, int64_t t0_us, int64_t t1_us,
                      const rollup_filter_t *filters, size_t nfilters, rollup_point_t *out,
                      size_t cap, int *gran_used) {
  if (!r || (!out && cap)) return -EINVAL;
  int g;
  switch (gran_s) {
  case ROLLUP_AUTO: g = -1; break;
  case ROLLUP_SECOND: g = G_SEC; break;
  case ROLLUP_MINUTE: g = G_MIN; break;
  case ROLLUP_HOUR: g = G_HOUR; break;
  default: return -EINVAL;
  }
  uint32_t key;
  int absent, rc = filter_key(r, filters, nfilters, &key, &absent);
  if (rc < 0) return rc;
  t0_us = clamp_t(t0_us);
  t1_us = clamp_t(t1_us);
  if (t1_us <= t0_us) {
    if (gran_used) *gran_used = g < 0 ? ROLLUP_HOUR : WIDTH_S[g];
    return 0;
  }
  int64_t hw = r->hw_us;
  if (g < 0) {
    for (int k = G_SEC; k < NGRAN && g < 0; k++) {
      int64_t b0 = floor_div(t0_us, WIDTH_US[k]), b1 = floor_div(t1_us - 1, WIDTH_US[k]);
      if ((uint64_t)(b1 - b0) < cap && retained(r, k, b0, hw)) g = k;
    }
    if (g < 0) g = G_HOUR;
  }
  if (gran_used) *gran_used = WIDTH_S[g];
  int64_t b0 = floor_div(t0_us, WIDTH_US[g]), b1 = floor_div(t1_us - 1, WIDTH_US[g]);
  if ((uint64_t)(b1 - b0) >= cap) return -ENOSPC;
  size_t n = 0;
  for (int64_t b = b0; b <= b1; b++, n++) {
    rollup_point_t *pt = &out[n];
    memset(pt, 0, sizeof *pt);
    pt->t_us = b * WIDTH_US[g];
    pt->retained = retained(r, g, b, hw);
    if (!pt->retained) {
      pt->uniques = ROLLUP_NA;
      continue;
    }
    if (g == G_SEC && key != TOTAL_KEY) pt->uniques = ROLLUP_NA;
    if (absent) continue;
    const bucket_t *bk = find_bucket(r, g, b, hw);
    if (g == G_HOUR && hour_has_pending(r, b)) {
      totals_ctx tc = {key, 0, 0, NULL};
      if (bk) visit_totals(bk, &tc);
      hour_pending(r, b, visit_totals, &tc);
      pt->count = tc.count;
      pt->sum = tc.sum;
      pt->uniques = tc.users ? hll_count(tc.users) : 0;
      hll_free(tc.users);
      continue;
    }
    const cell_t *c = bk ? bucket_cell(bk, key) : NULL;
    if (!c) continue;
    pt->count = c->count;
    pt->sum = c->sum;
    pt->uniques = cell_uniques(c);
  }
  return (int)n;
}

/* ---- TopN ---- */

typedef struct {
  uint32_t dim; /* KEY_DIM + 1, as it sits in the key's top byte */
  uint64_t *count;
  double *sum;
  hll_t **users;    /* per value id, or NULL when not collected */
  int32_t *rank_of; /* second pass: value id -> output row, or -1 */
  hll_t **row_users;
} topn_ctx;

static void visit_topn(const bucket_t *bk, void *ctx) {
  topn_ctx *tc = ctx;
  for (uint32_t i = 1; i < bk->n; i++) {
    const cell_t *c = &bk->cells[i];
    if (c->key >> 24 != tc->dim) continue;
    uint32_t id = KEY_ID(c->key);
    tc->count[id] += c->count;
    tc->sum[id] += c->sum;
    if (tc->users) merge_users(&tc->users[id], c);
  }
}

static void visit_topn_users(const bucket_t *bk, void *ctx) {
  topn_ctx *tc = ctx;
  for (uint32_t i = 1; i < bk->n; i++) {
    const cell_t *c = &bk->cells[i];
    if (c->key >> 24 != tc->dim) continue;
    int32_t row = tc->rank_of[KEY_ID(c->key)];
    if (row >= 0) merge_users(&tc->row_users[row], c);
  }
}

typedef struct {
  uint32_t id;
  uint64_t count, uniques;
  double sum;
  const char *value;
} row_t;

static int row_cmp(const void *pa, const void *pb, void *arg) {
  const row_t *a = pa, *b = pb;
  int c = 0;
  switch (*(const rollup_metric_t *)arg) {
  case ROLLUP_BY_COUNT: c = (a->count < b->count) - (a->count > b->count); break;
  case ROLLUP_BY_SUM: c = (a->sum < b->sum) - (a->sum > b->sum); break;
  case ROLLUP_BY_UNIQUES: c = (a->uniques < b->uniques) - (a->uniques > b->uniques); break;
  }
  return c ? c : strcmp(a->value, b->value);
}

int rollup_topn(const rollup_t *r, const char *dim, rollup_metric_t by, int64_t t0_us,
                int64_t t1_us, rollup_top_t *out, size_t n, int64_t *from_us, int64_t *to_us) {
  if (!r || !dim || (!out && n) || (unsigned)by > ROLLUP_BY_UNIQUES) return -EINVAL;
  int d = rollup_dim_index(r, dim);
  if (d < 0) return -ENOENT;
  const dim_t *dm = &r->dims[d];
  uint32_t nv = dm->n;
  topn_ctx tc = {(uint32_t)d + 1, xcalloc(nv, sizeof(uint64_t)), xcalloc(nv, sizeof(double)),
                 by == ROLLUP_BY_UNIQUES ? xcalloc(nv, sizeof(hll_t *)) : NULL, NULL, NULL};
  int64_t from, to;
  walk(r, G_MIN, t0_us, t1_us, visit_topn, &tc, &from, &to);
  if (from_us) *from_us = from;
  if (to_us) *to_us = to;

  row_t *rows = xmalloc((size_t)nv * sizeof *rows);
  uint32_t nrows = 0;
  for (uint32_t id = 0; id < nv; id++) {
    if (!tc.count[id]) continue;
    row_t *w = &rows[nrows++];
    w->id = id;
    w->count = tc.count[id];
    w->sum = tc.sum[id];
    w->uniques = tc.users && tc.users[id] ? hll_count(tc.users[id]) : 0;
    w->value = dm->vals[id];
  }
  qsort_r(rows, nrows, sizeof *rows, row_cmp, &by);
  size_t m = nrows < n ? nrows : n;
  if (by != ROLLUP_BY_UNIQUES && m) { /* uniques for the rows kept only */
    tc.rank_of = xmalloc((size_t)nv * sizeof *tc.rank_of);
    memset(tc.rank_of, 0xff, (size_t)nv * sizeof *tc.rank_of);
    tc.row_users = xcalloc(m, sizeof *tc.row_users);
    for (size_t i = 0; i < m; i++) tc.rank_of[rows[i].id] = (int32_t)i;
    walk(r, G_MIN, t0_us, t1_us, visit_topn_users, &tc, &from, &to);
    for (size_t i = 0; i < m; i++) {
      rows[i].uniques = tc.row_users[i] ? hll_count(tc.row_users[i]) : 0;
      hll_free(tc.row_users[i]);
    }
    free(tc.row_users);
    free(tc.rank_of);
  }
  for (size_t i = 0; i < m; i++)
    out[i] = (rollup_top_t){rows[i].value, rows[i].count, rows[i].sum, rows[i].uniques};
  if (tc.users)
    for (uint32_t id = 0; id < nv; id++) hll_free(tc.users[id]);
  free(tc.users);
  free(tc.count);
  free(tc.sum);
  free(rows);
  return (int)m;
}

/* ---- Introspection ---- */

void rollup_stats(const rollup_t *r, rollup_stats_t *out) {
  memset(out, 0, sizeof *out);
  if (!r) return;
  out->accepted = r->accepted;
  out->rejected_future = r->rejected_future;
  out->rejected_old = r->rejected_old;
  out->folded = r->folded;
  size_t bytes = sizeof *r;
  for (uint32_t i = 0; i < r->ndims; i++) {
    const dim_t *d = &r->dims[i];
    out->values += d->n;
    bytes += strlen(d->name) + 1 + ((size_t)4 << d->tbits) +
             (size_t)d->cap * (sizeof *d->vals + sizeof *d->vlen + sizeof *d->vhash);
    for (uint32_t k = 0; k < d->n; k++) bytes += d->vlen[k] + 1;
  }
  for (int g = 0; g < NGRAN; g++) {
    size_t rb = (size_t)r->ring[g].size * sizeof(bucket_t);
    for (uint32_t s = 0; s < r->ring[g].size; s++) {
      const bucket_t *bk = &r->ring[g].slots[s];
      rb += (size_t)bk->cap * sizeof(cell_t) + (bk->tbits ? (size_t)4 << bk->tbits : 0);
      out->cells += bk->n;
      for (uint32_t k = 0; k < bk->n; k++)
        if (bk->cells[k].users == U_HLL) {
          out->sketches++;
          rb += hll_bytes(bk->cells[k].u.hll);
        }
    }
    out->ring_bytes[g] = rb;
    bytes += rb;
    int64_t lo = floor_div(r->hw_us, WIDTH_US[g]) - r->ring[g].size + 1;
    out->held_from_us[g] = (r->floor[g] > lo ? r->floor[g] : lo) * WIDTH_US[g];
    out->evicted[g] = r->evicted[g];
  }
  out->budget_bytes = r->ring_bytes;
  out->max_bytes = r->max_bytes;
  out->budget_folded = r->budget_folded;
  out->bytes = bytes;
}

/* ---- Snapshot ---- */

static const char MAGIC[4] = {'S', 'L', 'R', 'U'};
enum { WIRE_ONE = 1, WIRE_HLL = 2, WIRE_NONE = 3 };

static void put_varint(buf_t *b, uint64_t v) {
  uint8_t tmp[10];
  size_t n = 0;
  do {
    tmp[n++] = (uint8_t)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
    v >>= 7;
  } while (v);
  buf_append(b, tmp, n);
}

static void put_u64(buf_t *b, uint64_t v) {
  uint8_t tmp[8];
  for (int i = 0; i < 8; i++) tmp[i] = (uint8_t)(v >> (8 * i));
  buf_append(b, tmp, 8);
}

static void put_bytes(buf_t *b, const char *s, size_t n) {
  put_varint(b, n);
  buf_append(b, s, n);
}

size_t rollup_serialize(const rollup_t *r, buf_t *out) {
  size_t start = out->len;
  buf_append(out, MAGIC, 4);
  buf_putc(out, ROLLUP_SERIAL_VERSION);
  for (int g = 0; g < NGRAN; g++) put_varint(out, r->ring[g].size);
  put_varint(out, r->max_values);
  put_varint(out, r->max_value_len);
  put_varint(out, (uint64_t)r->max_future_us);
  put_u64(out, (uint64_t)r->hw_us);
  put_varint(out, r->accepted);
  put_varint(out, r->rejected_future);
  put_varint(out, r->rejected_old);
  put_varint(out, r->folded);
  put_varint(out, r->max_bytes);
  put_varint(out, r->budget_folded);
  for (int g = 0; g < NGRAN; g++) {
    put_varint(out, r->evicted[g]);
    buf_putc(out, r->floor[g] != INT64_MIN);
    if (r->floor[g] != INT64_MIN) put_u64(out, (uint64_t)r->floor[g]);
  }
  put_varint(out, r->ndims);
  for (uint32_t i = 0; i < r->ndims; i++) {
    const dim_t *d = &r->dims[i];
    put_bytes(out, d->name, strlen(d->name));
    put_varint(out, d->n);
    for (uint32_t k = 0; k < d->n; k++) put_bytes(out, d->vals[k], d->vlen[k]);
  }
  buf_t sketch = BUF_INIT;
  for (int g = 0; g < NGRAN; g++) {
    const ring_t *rg = &r->ring[g];
    int64_t last = floor_div(r->hw_us, WIDTH_US[g]), first = last - rg->size + 1;
    uint64_t nb = 0;
    for (int64_t b = first; b <= last; b++) nb += find_bucket(r, g, b, r->hw_us) != NULL;
    put_varint(out, nb);
    int64_t prev = 0;
    int any = 0;
    for (int64_t b = first; b <= last; b++) {
      const bucket_t *bk = find_bucket(r, g, b, r->hw_us);
      if (!bk) continue;
      if (any) put_varint(out, (uint64_t)(b - prev));
      else put_u64(out, (uint64_t)b);
      any = 1;
      prev = b;
      if (g == G_MIN) buf_putc(out, bk->folded ? 1 : 0);
      put_varint(out, bk->n);
      for (uint32_t k = 0; k < bk->n; k++) {
        const cell_t *c = &bk->cells[k];
        uint64_t sum;
        memcpy(&sum, &c->sum, 8);
        put_varint(out, c->key);
        put_varint(out, c->count);
        put_u64(out, sum);
        if (c->users == U_ONE) {
          buf_putc(out, WIRE_ONE);
          put_u64(out, c->u.hash);
        } else if (c->users == U_HLL) {
          buf_putc(out, WIRE_HLL);
          buf_reset(&sketch);
          hll_serialize(c->u.hll, &sketch);
          put_bytes(out, sketch.data, sketch.len);
        } else {
          buf_putc(out, WIRE_NONE);
        }
      }
    }
  }
  buf_free(&sketch);
  return out->len - start;
}

typedef struct {
  const uint8_t *p;
  size_t n, off;
  int bad;
} reader_t;

static uint64_t get_varint(reader_t *rd) {
  uint64_t v = 0;
  for (int shift = 0; !rd->bad; shift += 7) {
    if (rd->off >= rd->n || shift > 63) break;
    uint8_t byte = rd->p[rd->off++];
    if (shift == 63 && byte > 1) break;
    v |= (uint64_t)(byte & 0x7f) << shift;
    if (!(byte & 0x80)) {
      if (byte == 0 && shift > 0) break; /* overlong */
      return v;
    }
  }
  rd->bad = 1;
  return 0;
}

static uint64_t get_u64(reader_t *rd) {
  if (rd->bad || rd->n - rd->off < 8) {
    rd->bad = 1;
    return 0;
  }
  uint64_t v = 0;
  for (int i = 0; i < 8; i++) v |= (uint64_t)rd->p[rd->off + i] << (8 * i);
  rd->off += 8;
  return v;
}

static uint8_t get_u8(reader_t *rd) {
  if (rd->bad || rd->off >= rd->n) {
    rd->bad = 1;
    return 0;
  }
  return rd->p[rd->off++];
}

/* A length-prefixed byte string of 1..max bytes without NUL; NULL (and bad) otherwise. */
static const char *get_str(reader_t *rd, size_t max, size_t *len) {
  uint64_t n = get_varint(rd);
  if (rd->bad || n < 1 || n > max || n > rd->n - rd->off) {
    rd->bad = 1;
    return NULL;
  }
  const char *s = (const char *)rd->p + rd->off;
  if (memchr(s, 0, n)) {
    rd->bad = 1;
    return NULL;
  }
  rd->off += n;
  *len = n;
  return s;
}

static int read_cell(reader_t *rd, rollup_t *r, int g, bucket_t *bk, uint32_t k) {
  uint64_t key = get_varint(rd), count = get_varint(rd), sumbits = get_u64(rd);
  uint8_t kind = get_u8(rd);
  if (rd->bad || key > UINT32_MAX || count < 1) return -1;
  if ((k == 0) != (key == TOTAL_KEY)) return -1;
  if (key != TOTAL_KEY) {
    int d = KEY_DIM((uint32_t)key);
    if (d < 0 || (uint32_t)d >= r->ndims || KEY_ID((uint32_t)key) >= r->dims[d].n) return -1;
  }
  int created;
  cell_t *c = cell_get(r, bk, (uint32_t)key, &created);
  if (!created) return -1;
  c->count = count;
  memcpy(&c->sum, &sumbits, 8);
  /* per-second dimension cells never have users, minute cells and second totals always;
   * hour cells get theirs as their minutes fold, or directly for old events */
  int want_none = g == G_SEC && key != TOTAL_KEY;
  if (kind == WIRE_NONE && want_none) {
    c->users = U_NONE;
  } else if (kind == WIRE_NONE && g == G_HOUR) {
    c->users = U_FRESH;
  } else if (kind == WIRE_ONE && !want_none) {
    c->users = U_ONE;
    c->u.hash = get_u64(rd);
  } else if (kind == WIRE_HLL && !want_none) {
    uint64_t len = get_varint(rd);
    hll_t *h = NULL;
    if (rd->bad || len > rd->n - rd->off || hll_deserialize(rd->p + rd->off, len, &h) < 0)
      return -1;
    rd->off += len;
    c->users = U_HLL;
    c->u.hll = h;
    r->ring_bytes += hll_bytes(h);
  } else {
    return -1;
  }
  return rd->bad ? -1 : 0;
}

/* Reads one ring of a version-1 or 2 encoding. */
static int read_ring(reader_t *rd, rollup_t *r, int g, int version) {
  const ring_t *rg = &r->ring[g];
  int64_t last = floor_div(r->hw_us, WIDTH_US[g]), first = last - rg->size + 1;
  uint64_t nb = get_varint(rd);
  if (rd->bad || nb > rg->size) return -1;
  int64_t b = 0;
  for (uint64_t i = 0; i < nb; i++) {
    if (i == 0) {
      b = (int64_t)get_u64(rd);
    } else {
      uint64_t delta = get_varint(rd);
      if (delta < 1 || delta > (uint64_t)(last - b)) return -1;
      b += (int64_t)delta;
    }
    if (rd->bad || b < first || b > last || b < r->floor[g]) return -1;
    uint8_t folded = g == G_MIN && version >= 2 ? get_u8(rd) : 1;
    if (folded > 1 || (!folded && r->npending == PENDING_MAX)) return -1;
    uint64_t ncells = get_varint(rd);
    /* a cell takes at least 11 bytes; the keys bound it too */
    if (rd->bad || ncells < 1 || ncells > (rd->n - rd->off) / 11 ||
        ncells > 1 + (uint64_t)r->ndims * (r->max_values + 1))
      return -1;
    bucket_t *bk = claim_bucket(r, g, b);
    for (uint32_t k = 0; k < ncells; k++)
      if (read_cell(rd, r, g, bk, k) < 0) return -1;
    bk->folded = folded;
    if (!folded) r->pending[r->npending++] = b;
  }
  return 0;
}

int rollup_deserialize(const void *p, size_t n, rollup_t **out) {
  if (!out) return -EINVAL;
  *out = NULL;
  if (!p && n) return -EINVAL;
  reader_t rd = {p, n, 0, 0};
  rollup_t *r = NULL;
  if (n < 5 || memcmp(p, MAGIC, 4) != 0) goto fail;
  rd.off = 4;
  int version = get_u8(&rd);
  if (version != 1 && version != ROLLUP_SERIAL_VERSION) goto fail;
  uint64_t sizes[NGRAN], maxv, maxlen, fut, hw, counters[4], ndims;
  for (int g = 0; g < NGRAN; g++) sizes[g] = get_varint(&rd);
  maxv = get_varint(&rd);
  maxlen = get_varint(&rd);
  fut = get_varint(&rd);
  hw = get_u64(&rd);
  for (int i = 0; i < 4; i++) counters[i] = get_varint(&rd);
  uint64_t max_bytes = 0, budget_folded = 0, evicted[NGRAN] = {0};
  int64_t floors[NGRAN] = {INT64_MIN, INT64_MIN, INT64_MIN};
  if (version >= 2) {
    max_bytes = get_varint(&rd);
    budget_folded = get_varint(&rd);
    for (int g = 0; g < NGRAN; g++) {
      evicted[g] = get_varint(&rd);
      uint8_t has_floor = get_u8(&rd);
      if (has_floor > 1) goto fail;
      if (has_floor) floors[g] = (int64_t)get_u64(&rd);
      /* INT64_MIN means none; far floors would overflow bucket arithmetic */
      if (has_floor && (floors[g] <= -HW_LIMIT || floors[g] > HW_LIMIT)) goto fail;
    }
    if (max_bytes > SIZE_MAX || (max_bytes && max_bytes < ROLLUP_MIN_BYTES)) goto fail;
  }
  ndims = get_varint(&rd);
  if (rd.bad || ndims < 1 || ndims > ROLLUP_MAX_DIMS || (int64_t)hw > HW_LIMIT ||
      (int64_t)hw < -HW_LIMIT)
    goto fail;
  /* 0 would mean "default" to rollup_new: reject it here so the header stays canonical */
  for (int g = 0; g < NGRAN; g++)
    if (!sizes[g] || sizes[g] > UINT32_MAX) goto fail;
  if (!maxv || maxv > UINT32_MAX || !maxlen || maxlen > UINT32_MAX || !fut ||
      fut > INT64_MAX)
    goto fail;
  char names[ROLLUP_MAX_DIMS][ROLLUP_MAX_DIM_NAME + 1];
  const char *name_ptrs[ROLLUP_MAX_DIMS];
  size_t value_starts[ROLLUP_MAX_DIMS];
  /* Names come first in each dimension's record, its values after: read the names in a
   * first pass, skipping the values, to build the store; then read the values. */
  for (uint64_t i = 0; i < ndims; i++) {
    size_t len;
    const char *s = get_str(&rd, ROLLUP_MAX_DIM_NAME, &len);
    if (!s) goto fail;
    memcpy(names[i], s, len);
    names[i][len] = 0;
    name_ptrs[i] = names[i];
    value_starts[i] = rd.off;
    uint64_t nv = get_varint(&rd);
    if (rd.bad || nv < 1 || nv > maxv + 1 || nv > (rd.n - rd.off) / 2) goto fail;
    for (uint64_t k = 0; k < nv; k++)
      if (!get_str(&rd, maxlen, &len)) goto fail;
  }
  size_t rings_start = rd.off;
  rollup_opts_t o = {name_ptrs, (size_t)ndims, (uint32_t)sizes[0], (uint32_t)sizes[1],
                     (uint32_t)sizes[2], (uint32_t)maxv, (uint32_t)maxlen, (int64_t)fut,
                     NULL, NULL, (size_t)max_bytes};
  r = rollup_new(&o);
  if (!r) goto fail;
  r->hw_us = (int64_t)hw;
  r->accepted = counters[0];
  r->rejected_future = counters[1];
  r->rejected_old = counters[2];
  r->folded = counters[3];
  r->budget_folded = budget_folded;
  for (int g = 0; g < NGRAN; g++) {
    r->evicted[g] = evicted[g];
    r->floor[g] = floors[g];
  }
  for (uint32_t i = 0; i < r->ndims; i++) {
    dim_t *d = &r->dims[i];
    rd.off = value_starts[i];
    uint64_t nv = get_varint(&rd);
    for (uint64_t k = 0; k < nv; k++) {
      size_t len;
      const char *s = get_str(&rd, maxlen, &len);
      uint32_t h = (uint32_t)XXH3_64bits(s, len);
      int64_t id = dim_find(d, s, len, h, NULL);
      if (k == 0) { /* "(other)", already there */
        if (id != 0) goto fail;
      } else {
        if (id >= 0) goto fail;
        dim_insert(d, s, len, h);
      }
    }
  }
  rd.off = rings_start;
  for (int g = 0; g < NGRAN; g++)
    if (read_ring(&rd, r, g, version) < 0) goto fail;
  if (rd.bad || rd.off != rd.n) goto fail;
  if (version == 1) { /* its hours hold the counts of their minutes, not yet the users */
    const ring_t *mr = &r->ring[G_MIN];
    for (uint32_t i = 0; i < mr->size; i++)
      if (mr->slots[i].n) fold_minute(r, &mr->slots[i], 0);
  }
  *out = r;
  return 0;
fail:
  rollup_free(r);
  return -EBADMSG;
}
