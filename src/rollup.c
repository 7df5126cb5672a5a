/* rollup: rings of time buckets holding per-dimension-value cells (see rollup.h for the
 * design, the query semantics and the snapshot encoding). */
#include "rollup.h"
#include "rollup_int.h"

#include <errno.h>
#include <math.h>
#include <string.h>
#define XXH_INLINE_ALL
#include <xxhash.h>

#include "hll.h"
#include "util/clock.h"
#include "util/mem.h"

static const int WIDTH_S[NGRAN] = {1, 60, 3600};

/* ---- Small helpers ---- */

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

static inline uint32_t slot_of(uint32_t key, uint32_t bits) {
  return (uint32_t)((key * 2654435769u) >> (32 - bits));
}

/* ---- Value interning ---- */

/* The stored length of value s of n bytes (its strlen): cut to max_value_len at a UTF-8
 * character boundary. */
static size_t value_len(const rollup_t *r, const char *s, size_t n) {
  size_t len = n;
  if (len > r->max_value_len) {
    len = r->max_value_len;
    while (len > 0 && ((unsigned char)s[len] & 0xc0) == 0x80) len--;
    if (len == 0) len = r->max_value_len;
  }
  return len;
}

/* Are a[0..n) and b[0..n) the same bytes? Dimension values are short: up to 16 bytes take
 * two overlapping word loads from each, not a call. */
static inline int same_bytes(const char *a, const char *b, size_t n) {
  uint64_t x, y, u, v;
  if (n > 16) return memcmp(a, b, n) == 0;
  if (n >= 8) {
    memcpy(&x, a, 8), memcpy(&y, b, 8), memcpy(&u, a + n - 8, 8), memcpy(&v, b + n - 8, 8);
    return ((x ^ y) | (u ^ v)) == 0;
  }
  uint32_t x4, y4, u4, v4;
  if (n >= 4) {
    memcpy(&x4, a, 4), memcpy(&y4, b, 4), memcpy(&u4, a + n - 4, 4), memcpy(&v4, b + n - 4, 4);
    return ((x4 ^ y4) | (u4 ^ v4)) == 0;
  }
  uint16_t x2, y2, u2, v2;
  if (n >= 2) {
    memcpy(&x2, a, 2), memcpy(&y2, b, 2), memcpy(&u2, a + n - 2, 2), memcpy(&v2, b + n - 2, 2);
    return ((x2 ^ y2) | (u2 ^ v2)) == 0;
  }
  return n == 0 || a[0] == b[0];
}

/* The hash that places dimension values in their table (rollup_value_hash). Values of up to
 * 16 bytes (nearly all: event names, paths, campaign parts) are mixed from two loads that
 * cover every byte, inline; longer ones take XXH3. Only the table's layout depends on it:
 * value ids follow the order values came in. */
static inline uint32_t value_hash(const char *s, size_t len) {
  uint64_t a, b;
  if (len > 16) return (uint32_t)XXH3_64bits(s, len);
  if (len >= 8) {
    memcpy(&a, s, 8), memcpy(&b, s + len - 8, 8);
  } else if (len >= 4) {
    uint32_t x, y;
    memcpy(&x, s, 4), memcpy(&y, s + len - 4, 4);
    a = x, b = y;
  } else {
    a = len ? (uint64_t)(unsigned char)s[0] << 16 | (uint64_t)(unsigned char)s[len / 2] << 8 |
                  (unsigned char)s[len - 1]
            : 0;
    b = 0;
  }
  uint64_t h = (a ^ 0x9E3779B97F4A7C15ull) * 0xBF58476D1CE4E5B9ull;
  h ^= (b + len) * 0x94D049BB133111EBull;
  h ^= h >> 31;
  h *= 0xBF58476D1CE4E5B9ull;
  return (uint32_t)(h >> 32);
}

uint32_t rollup_value_hash(const char *s, size_t len) { return value_hash(s, len); }

/* Value id of s[0..len) in d, or -1. *slot gets the table slot where it would go. */
int64_t rollup_dim_find(const dim_t *d, const char *s, size_t len, uint32_t h, uint32_t *slot) {
  /* The hash sits in the slot beside the id: a probe past another value costs no access
   * to the value arrays. */
  uint32_t mask = (1u << d->tbits) - 1, i = slot_of(h, d->tbits);
  for (;; i = (i + 1) & mask) {
    uint64_t e = d->tab[i];
    if (!e) break;
    if ((uint32_t)(e >> 32) != h) continue;
    uint32_t id = (uint32_t)e - 1;
    if (d->vlen[id] == len && same_bytes(d->vals[id], s, len)) return id;
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
    d->tab[i] = (uint64_t)d->vhash[id] << 32 | (id + 1);
  }
}

/* Append s[0..len) (known absent) as a new value; returns its id. */
uint32_t rollup_dim_insert(dim_t *d, const char *s, size_t len, uint32_t h) {
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
  rollup_dim_find(d, s, len, h, &slot); /* not present: finds the empty slot */
  d->tab[slot] = (uint64_t)h << 32 | (id + 1);
  return id;
}

/* The memo slot of a value of len bytes (at least one) at s: its length and last byte tell
 * apart most of the few values that alternate in a dimension. Measured on a replay of the
 * 300,000-event uniform log: adding 31 times the first byte cost 125 instructions per
 * event more than it saved; the length alone, 104 more (values of one length collide). */
static inline uint32_t memo_slot(const char *s, size_t len) {
  return (uint32_t)(len + (unsigned char)s[len - 1]) & (DIM_MEMO - 1);
}

/* The id of value s (n bytes, its strlen, at least one) in d, interned as needed. */
static inline __attribute__((always_inline)) uint32_t intern(rollup_t *r, dim_t *d,
                                                             const char *s, size_t n) {
  size_t len = value_len(r, s, n);
  uint32_t h = 0, *memo = &d->memo[memo_slot(s, len)];
  int64_t id = *memo;
  /* A held value that s equals whole is the one the table find gives (held values are
   * stored cut, so one of len bytes is equal exactly when the bytes are). */
  if (d->vlen[id] != len || !same_bytes(d->vals[id], s, len)) {
    h = value_hash(s, len);
    /* the value in its home slot or the one after found inline; any other case by the
     * full probe. In a table up to 3/4 full about a quarter of the values lie past their
     * home slot (a small dimension's frequent value among them, every time): the slot
     * after took 225,000 of the replay's 379,000 calls of the probe (300,000 events). */
    uint32_t mask = (1u << d->tbits) - 1, i = slot_of(h, d->tbits);
    uint64_t e = d->tab[i];
    if (e && (uint32_t)(e >> 32) != h) e = d->tab[(i + 1) & mask];
    id = (uint32_t)e - 1;
    if (!e || (uint32_t)(e >> 32) != h || d->vlen[id] != len || !same_bytes(d->vals[id], s, len))
      id = rollup_dim_find(d, s, len, h, NULL);
  }
  if (r->starved && id != 0) { /* the memory budget is spent: no new cells (enforce_budget) */
    r->folded++;
    r->budget_folded++;
    return 0;
  }
  if (id >= 0) {
    *memo = (uint32_t)id;
    return (uint32_t)id;
  }
  if (d->n > r->max_values) { /* full: max_values real values plus "(other)" */
    r->folded++;
    return 0;
  }
  *memo = rollup_dim_insert(d, s, len, h);
  return *memo;
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
  return bk->tbits ? sizeof *bk->tab << bk->tbits : 0;
}

/* Empty bk, keeping its arrays for the next bucket of its slot. */
static void bucket_reset(rollup_t *r, bucket_t *bk) {
  for (uint32_t i = 0; i < bk->n; i++)
    if (bk->cells[i].users == U_HLL) {
      r->ring_bytes -= hll_bytes(bk->cells[i].u.hll);
      hll_free(bk->cells[i].u.hll);
    }
  bk->n = 0;
  if (bk->tab) memset(bk->tab, 0, table_bytes(bk));
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

/* Give bk a table of 1 << bits slots (replacing any it has) holding its cells. */
static void table_fill(bucket_t *bk, uint32_t bits) {
  uint32_t mask = (1u << bits) - 1;
  free(bk->tab);
  bk->tab = xcalloc((size_t)1 << bits, sizeof *bk->tab);
  bk->tbits = bits;
  for (uint32_t k = 0; k < bk->n; k++) {
    uint32_t i = slot_of(bk->cells[k].key, bits);
    while (bk->tab[i]) i = (i + 1) & mask;
    bk->tab[i] = (uint64_t)bk->cells[k].key << 32 | (k + 1);
  }
}

static void bucket_grow_table(rollup_t *r, bucket_t *bk) {
  r->ring_bytes -= table_bytes(bk);
  table_fill(bk, bk->tbits + 1);
  r->ring_bytes += table_bytes(bk);
}

/* A small bucket: one whose table is not allocated yet (tab NULL, tbits the size it is
 * counted at in ring_bytes). It finds a cell by scanning its cells, the total (cells[0])
 * first, and gets its table when its SMALL_CELLS + 1st cell comes. Most buckets of the
 * sessions store hold five cells; an event's session end lands in buckets of its start,
 * hours or days back, and a scan of their cells, one block of memory with the total at
 * its start, waits on fewer cache misses than a table probe followed by the cell it
 * names. Counting the table's bytes from the start keeps the memory budget's figures
 * (and so every result) the same as when the table was allocated at once. */
#define SMALL_CELLS 8

static inline cell_t *small_find(const bucket_t *bk, uint32_t key) {
  for (uint32_t k = 0; k < bk->n; k++)
    if (bk->cells[k].key == key) return &bk->cells[k];
  return NULL;
}

static const cell_t *bucket_cell(const bucket_t *bk, uint32_t key) {
  if (!bk->tab) return small_find(bk, key);
  uint32_t mask = (1u << bk->tbits) - 1;
  for (uint32_t i = slot_of(key, bk->tbits);; i = (i + 1) & mask) {
    uint64_t e = bk->tab[i];
    if (!e) return NULL;
    if ((uint32_t)(e >> 32) == key) return &bk->cells[(uint32_t)e - 1];
  }
}

/* Append a zeroed cell of key to bk's cells (growing the array as needed). */
static cell_t *append_cell(rollup_t *r, bucket_t *bk, uint32_t key) {
  if (bk->n == bk->cap) {
    uint32_t cap = bk->cap ? bk->cap + bk->cap / 2 : 8;
    r->ring_bytes += (size_t)(cap - bk->cap) * sizeof(cell_t);
    bk->cap = cap;
    bk->cells = xrealloc(bk->cells, bk->cap * sizeof *bk->cells);
  }
  cell_t *c = &bk->cells[bk->n++];
  memset(c, 0, sizeof *c);
  c->key = key;
  return c;
}

/* Add a zeroed cell (U_FRESH) of key, known absent from bk; slot: the empty table slot
 * the lookup's probe ended on (any value while bk is small). A small bucket gets its table
 * with its SMALL_CELLS + 1st cell. */
static __attribute__((noinline)) cell_t *cell_insert(rollup_t *r, bucket_t *bk, uint32_t key,
                                                     uint32_t slot) {
  if (!bk->tab) {
    if (bk->n < SMALL_CELLS) return append_cell(r, bk, key);
    table_fill(bk, bk->tbits); /* no longer small */
    uint32_t mask = (1u << bk->tbits) - 1;
    for (slot = slot_of(key, bk->tbits); bk->tab[slot]; slot = (slot + 1) & mask) {}
  }
  if ((uint64_t)(bk->n + 1) * 4 > ((uint64_t)1 << bk->tbits) * 3) {
    bucket_grow_table(r, bk);
    uint32_t mask = (1u << bk->tbits) - 1;
    for (slot = slot_of(key, bk->tbits); bk->tab[slot]; slot = (slot + 1) & mask) {}
  }
  cell_t *c = append_cell(r, bk, key);
  bk->tab[slot] = (uint64_t)key << 32 | bk->n;
  return c;
}

/* The cell of key in bk, created when absent: the lookup inline (most adds find their
 * cell), the insert out of line, from where the lookup ended (no second lookup). */
static inline cell_t *cell_of(rollup_t *r, bucket_t *bk, uint32_t key) {
  uint32_t i = 0;
  if (!bk->tab) {
    cell_t *c = small_find(bk, key);
    if (c) return c;
  } else {
    uint32_t mask = (1u << bk->tbits) - 1;
    for (i = slot_of(key, bk->tbits);; i = (i + 1) & mask) {
      uint64_t e = bk->tab[i];
      if (!e) break;
      if ((uint32_t)(e >> 32) == key) return &bk->cells[(uint32_t)e - 1];
    }
  }
  return cell_insert(r, bk, key, i);
}

/* The cell of key in bk; *created says whether it was just added (zeroed, U_FRESH). */
cell_t *rollup_cell_get(rollup_t *r, bucket_t *bk, uint32_t key, int *created) {
  uint32_t n = bk->n;
  cell_t *c = cell_of(r, bk, key);
  *created = bk->n != n;
  return c;
}

/* c keeps no users from now on (its sketch freed): a per-second dimension cell, a cell of
 * a store without users, or users given up to the budget; queries report ROLLUP_NA. */
static void drop_cell_users(rollup_t *r, cell_t *c) {
  if (c->users == U_HLL) {
    r->ring_bytes -= hll_bytes(c->u.hll);
    hll_free(c->u.hll);
  }
  c->users = U_NONE;
}

/* cell_add_user's cases but a sketch's add. */
static void cell_add_user_rare(rollup_t *r, cell_t *c, uint64_t hash) {
  if (r->no_users) {
    drop_cell_users(r, c);
    return;
  }
  switch (c->users) {
  case U_FRESH:
    c->users = U_ONE;
    c->u.hash = hash;
    break;
  case U_ONE:
    if (c->u.hash != hash && r->starved) {
      c->users = U_NONE; /* no sketch to spare: this cell's users are not kept */
    } else if (c->u.hash != hash) {
      hll_t *h = hll_new_pair(c->u.hash, hash);
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

/* Add the user of hash to c's users (a cell of a store without users drops them). */
static inline void cell_add_user(rollup_t *r, cell_t *c, uint64_t hash) {
  if (c->users == U_HLL && !r->no_users) {
    r->ring_bytes += hll_add_hash(c->u.hll, hash);
  } else if (c->users == U_FRESH && !r->no_users) { /* a new cell's first user */
    c->users = U_ONE;
    c->u.hash = hash;
  } else if (c->users != U_NONE) { /* U_NONE stays U_NONE */
    cell_add_user_rare(r, c, hash);
  }
}

/* Add minute bucket mk into its hour's cells (the hour bucket claimed as needed): count,
 * sum and users when with_counts, else users only (a version-1 snapshot, whose hours
 * already hold the counts); marks mk folded. Hour cells get their events this way, one
 * merge per minute and cell, rather than a second cell update and a bigger sketch insert
 * per event. */
void rollup_fold_minute(rollup_t *r, bucket_t *mk, int with_counts) {
  int64_t h = floor_div(mk->idx, 60);
  mk->folded = 1;
  if (!retained(r, G_HOUR, h, r->hw_us)) return;
  bucket_t *hk = rollup_claim_bucket(r, G_HOUR, h);
  for (uint32_t i = 0; i < mk->n; i++) {
    const cell_t *c = &mk->cells[i];
    cell_t *hc = with_counts ? cell_of(r, hk, c->key) : (cell_t *)bucket_cell(hk, c->key);
    if (!hc) continue;
    if (with_counts) {
      hc->count += c->count;
      hc->sum += c->sum;
    }
    if (c->users == U_NONE) {
      drop_cell_users(r, hc); /* the minute's users were given up: so are the hour's */
    } else if (c->users == U_ONE) {
      cell_add_user(r, hc, c->u.hash);
    } else if (c->users != U_HLL || hc->users == U_NONE) {
      continue;
    } else if (hc->users == U_HLL) {
      r->ring_bytes -= hll_bytes(hc->u.hll);
      hll_merge(hc->u.hll, c->u.hll);
      r->ring_bytes += hll_bytes(hc->u.hll);
    } else if (r->starved) {
      hc->users = U_NONE;
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
  if (bk->n && bk->idx == b && !bk->folded) rollup_fold_minute(r, bk, 1);
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
  rollup_fold_minute(r, bk, 1); /* not reached: an unfolded minute is always pending */
}

/* A new minute bucket b has just been claimed: list it as pending, folding the oldest
 * pending minute when the list is full. */
static void add_pending(rollup_t *r, int64_t b) {
  if (r->npending == PENDING_MAX) fold_pending(r, 0);
  r->pending[r->npending++] = b;
}

/* The bucket b of granularity g, claimed (its slot emptied of an older bucket) if needed.
 * The caller has checked that b is inside the window. */
bucket_t *rollup_claim_bucket(rollup_t *r, int g, int64_t b) {
  ring_t *rg = &r->ring[g];
  if (!rg->slots) rg->slots = xcalloc(rg->size, sizeof(bucket_t));
  if (b != rg->memo_b) {
    rg->memo_slot = ring_slot(b, rg->size);
    rg->memo_b = b;
  }
  uint32_t slot = rg->memo_slot;
  bucket_t *bk = &rg->slots[slot];
  if (bk->n && bk->idx == b) return bk;
  if (slot < rg->held_lo) rg->held_lo = slot;
  if (slot >= rg->held_hi) rg->held_hi = slot + 1;
  if (g == G_MIN) close_minute(r, bk);
  bucket_reset(r, bk);
  bk->idx = b;
  bk->folded = 0;
  if (!bk->tbits) { /* a small bucket (see SMALL_CELLS): the table comes later */
    bk->tbits = 4;
    r->ring_bytes += table_bytes(bk);
  }
  return bk;
}

/* rollup_claim_bucket, with the common cases inline: b is held, mostly the ring's last
 * bucket (the sessions store's session ends go to the buckets of their starts: the
 * slot is computed then). */
static inline bucket_t *claim(rollup_t *r, int g, int64_t b) {
  ring_t *rg = &r->ring[g];
  if (rg->slots) {
    if (b == rg->memo_b) {
      bucket_t *bk = &rg->slots[rg->memo_slot];
      if (bk->n && bk->idx == b) return bk;
    } else {
      uint32_t slot = ring_slot(b, rg->size);
      bucket_t *bk = &rg->slots[slot];
      if (bk->n && bk->idx == b) {
        rg->memo_b = b;
        rg->memo_slot = slot;
        return bk;
      }
    }
  }
  return rollup_claim_bucket(r, g, b);
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
      (opts->max_bytes && (opts->max_bytes < ROLLUP_MIN_BYTES ||
                           opts->max_bytes < ((size_t)sec + min + hour) * sizeof(bucket_t))))
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
  r->no_users = opts->no_users != 0;
  const uint32_t sizes[NGRAN] = {sec, min, hour};
  for (int g = 0; g < NGRAN; g++) {
    r->ring[g].size = sizes[g];
    r->ring[g].held_lo = sizes[g];
    r->ring_bytes += (size_t)sizes[g] * sizeof(bucket_t);
    r->floor[g] = r->ufloor[g] = INT64_MIN;
  }
  for (uint32_t i = 0; i < r->ndims; i++) {
    dim_t *d = &r->dims[i];
    d->name = xstrdup(opts->dims[i]);
    dim_grow_table(d);
    const char *other = ROLLUP_OTHER;
    rollup_dim_insert(d, other, strlen(other), value_hash(other, strlen(other)));
  }
  set_hw(r, now_of(r));
  return r;
}

void rollup_free(rollup_t *r) {
  if (!r) return;
  for (int g = 0; g < NGRAN; g++) {
    for (uint32_t i = r->ring[g].held_lo; i < r->ring[g].held_hi; i++)
      bucket_release(r, &r->ring[g].slots[i]);
    free(r->ring[g].slots);
  }
  for (uint32_t i = 0; i < r->ndims; i++) dim_free(&r->dims[i]);
  free(r);
}

int rollup_set_max_bytes(rollup_t *r, size_t max_bytes) {
  if (!r || (max_bytes && max_bytes < ROLLUP_MIN_BYTES)) return -EINVAL;
  size_t slots = 0;
  for (int g = 0; g < NGRAN; g++) slots += (size_t)r->ring[g].size * sizeof(bucket_t);
  if (max_bytes && max_bytes < slots) return -EINVAL;
  r->max_bytes = max_bytes;
  r->starved = 0;
  return 0;
}

void rollup_set_no_users(rollup_t *r, int no_users) {
  if (r) r->no_users = no_users != 0;
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

/* The buckets the budget's first pass leaves each ring: a minute of seconds, an hour of
 * minutes, a day of hours. The second pass leaves the newest bucket only. */
static const uint32_t KEEP[NGRAN] = {60, 60, 24};

/* Release the oldest held bucket of ring g older than its newest keep (folding a minute
 * into its hour first) and raise the ring's floor past it. Returns 0, or -1 when the ring
 * holds no more than that. */
static int evict_oldest(rollup_t *r, int g, uint32_t keep) {
  const ring_t *rg = &r->ring[g];
  int64_t last = floor_div(r->hw_us, WIDTH_US[g]), lo = last - rg->size + 1;
  if (r->floor[g] > lo) lo = r->floor[g];
  for (int64_t b = lo; b <= last - keep; b++) {
    bucket_t *bk = rg->slots ? &rg->slots[ring_slot(b, rg->size)] : NULL;
    r->floor[g] = b + 1; /* empty buckets below go too: no rescan of them next time */
    if (!bk || !bk->n || bk->idx != b) continue;
    if (g == G_MIN) close_minute(r, bk);
    bucket_release(r, bk);
    r->evicted[g]++;
    return 0;
  }
  return -1;
}

/* Give up the sketches of the oldest held bucket of ring g that has any (its counts and
 * sums stay; its uniques read ROLLUP_NA). Returns 0, or -1 when no bucket has one. The
 * newest bucket is looked at every time: it may have started sketches since. */
static int drop_users(rollup_t *r, int g) {
  const ring_t *rg = &r->ring[g];
  int64_t last = floor_div(r->hw_us, WIDTH_US[g]), lo = last - rg->size + 1;
  if (r->floor[g] > lo) lo = r->floor[g];
  if (r->ufloor[g] > lo) lo = r->ufloor[g];
  for (int64_t b = lo; b <= last; b++) {
    bucket_t *bk = &rg->slots[ring_slot(b, rg->size)];
    if (b < last) r->ufloor[g] = b + 1;
    if (!bk->n || bk->idx != b) continue;
    size_t before = r->ring_bytes;
    for (uint32_t i = 0; i < bk->n; i++)
      if (bk->cells[i].users == U_HLL) drop_cell_users(r, &bk->cells[i]);
    if (r->ring_bytes < before) {
      r->users_dropped[g]++;
      return 0;
    }
  }
  return -1;
}

/* Over the budget, in passes, each ring in the order minutes, seconds, hours, oldest
 * bucket first: (1) give up buckets down to an hour of minutes, a minute of seconds, a day
 * of hours (a minute's events stay in its hour, a second's in its minute; hours are gone,
 * like the retention); (2) the same down to each ring's newest bucket; (3) give up the
 * buckets' sketches. When even that leaves it above, the store is starved: every value
 * counts as "(other)" and no cell starts a sketch, until it is below the budget again;
 * meanwhile this returns at once until the rings pass the budget by ROLLUP_BUDGET_SLACK
 * (or, where the newest buckets alone held more, what they held by half of it). */
static void enforce_budget(rollup_t *r) {
  static const int order[NGRAN] = {G_MIN, G_SEC, G_HOUR};
  size_t again = r->starved_bytes + ROLLUP_BUDGET_SLACK / 2; /* the newest buckets' floor */
  if (again < r->max_bytes + ROLLUP_BUDGET_SLACK) again = r->max_bytes + ROLLUP_BUDGET_SLACK;
  if (r->starved && r->ring_bytes > r->max_bytes && r->ring_bytes < again) return;
  r->starved = 0;
  for (int pass = 0; pass < 3; pass++)
    for (int k = 0; k < NGRAN && r->ring_bytes > r->max_bytes;) {
      int g = order[k];
      int rc = pass == 2 ? drop_users(r, g) : evict_oldest(r, g, pass ? 1 : KEEP[g]);
      if (rc < 0) k++;
    }
  r->starved = r->ring_bytes > r->max_bytes;
  r->starved_bytes = r->ring_bytes;
}

/* ---- Adding ---- */

/* Move hw to t_us (later than it), folding (and emptying) the minutes that leave their
 * ring. */
static __attribute__((noinline)) void advance_past(rollup_t *r, int64_t t_us) {
  const ring_t *mr = &r->ring[G_MIN];
  if (!mr->slots) { /* no minute ever held */
    set_hw(r, t_us);
    return;
  }
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
  set_hw(r, t_us);
}

/* Move hw to t_us if later: the test inline (an add mostly finds hw ahead already). */
static inline void advance_to(rollup_t *r, int64_t t_us) {
  if (t_us > r->hw_us) advance_past(r, t_us);
}

void rollup_advance(rollup_t *r) {
  if (r) advance_to(r, now_of(r));
}

int rollup_add(rollup_t *r, int64_t t_us, const char *const *dim_values, uint64_t user_hash,
               double value_sum) {
  return rollup_add_len(r, t_us, dim_values, NULL, user_hash, value_sum);
}

/* The checks and clock work of an add at t_us: the store advanced to the clock and to
 * t_us, t_us's bucket numbers in tb (OUT). 0, or -ERANGE (counted) when t_us is too far
 * ahead or too old (n events rejected at once). */
static inline __attribute__((always_inline)) int add_begin(rollup_t *r, int64_t t_us,
                                                           uint64_t n, int64_t tb[NGRAN]) {
  int64_t now = now_of(r);
  advance_to(r, now);
  if (t_us > now && (uint64_t)t_us - (uint64_t)now > (uint64_t)r->max_future_us) {
    r->rejected_future += n;
    return -ERANGE;
  }
  /* each divisor a constant (a multiplication, not a division); times after 1970 need no
   * rounding towards minus infinity */
  tb[G_SEC] = t_us >= 0 ? (int64_t)((uint64_t)t_us / 1000000) : floor_div(t_us, 1000000);
  tb[G_MIN] = t_us >= 0 ? (int64_t)((uint64_t)t_us / 60000000) : floor_div(t_us, 60000000);
  tb[G_HOUR] = t_us >= 0 ? (int64_t)((uint64_t)t_us / 3600000000) : floor_div(t_us, 3600000000);
  if (!retained(r, G_HOUR, tb[G_HOUR], r->hw_us)) {
    r->rejected_old += n;
    return -ERANGE;
  }
  advance_to(r, t_us);
  return 0;
}

/* Count one event in the buckets tb (add_begin's) with its dimension keys[0..nkeys).
 * Returns 1 when the memory budget was enforced after it (buckets and floors may have
 * moved), else 0. */
static inline __attribute__((always_inline)) int
add_event(rollup_t *r, const int64_t tb[NGRAN], const uint32_t *keys, uint32_t nkeys,
          uint64_t user_hash, double value_sum) {
  /* Which rings take the event: decided once (claiming buckets and folding minutes
   * moves neither hw nor the floors). An event goes to its hour directly only when its
   * minute is gone or already folded; else the minute carries it into the hour later (see
   * rollup_fold_minute). */
  int to[NGRAN];
  for (int g = 0; g < G_HOUR; g++)
    to[g] = tb[g] > r->hw_b[g] - (int64_t)r->ring[g].size && tb[g] >= r->floor[g];
  to[G_HOUR] = 1;
  if (to[G_MIN]) {
    bucket_t *mk = claim(r, G_MIN, tb[G_MIN]);
    if (!mk->n) add_pending(r, tb[G_MIN]);
    to[G_HOUR] = (int)mk->folded;
  }
#pragma GCC unroll 3 /* (each ring's code knows its ring: no per-second test per value) */
  for (int g = 0; g < NGRAN; g++) {
    if (!to[g]) continue;
    bucket_t *bk = claim(r, g, tb[g]);
    cell_t *c = cell_of(r, bk, TOTAL_KEY);
    c->count++;
    c->sum += value_sum;
    cell_add_user(r, c, user_hash);
    for (uint32_t k = 0; k < nkeys; k++) {
      c = cell_of(r, bk, keys[k]);
      c->count++;
      c->sum += value_sum;
      if (g == G_SEC) drop_cell_users(r, c); /* per-second dimension cells keep no users */
      else cell_add_user(r, c, user_hash);
    }
  }
  r->accepted++;
  if (r->max_bytes && (r->ring_bytes > r->max_bytes || r->starved)) {
    enforce_budget(r);
    return 1;
  }
  return 0;
}

int rollup_add_len(rollup_t *r, int64_t t_us, const char *const *dim_values,
                   const uint32_t *dim_lens, uint64_t user_hash, double value_sum) {
  if (!r || !isfinite(value_sum)) return -EINVAL;
  int64_t tb[NGRAN];
  int rc = add_begin(r, t_us, 1, tb);
  if (rc) return rc;
  uint32_t keys[ROLLUP_MAX_DIMS], *kp = keys;
  if (dim_values) {
    dim_t *dm = r->dims;
    for (uint32_t d = 0; d < r->ndims; d++, dm++) {
      const char *v = dim_values[d];
      if (!v) continue;
      /* (a value past max_value_len is cut: its bytes beyond do not matter) */
      size_t n = dim_lens ? dim_lens[d] : strnlen(v, (size_t)r->max_value_len + 1);
      if (n) *kp++ = KEY(d, intern(r, dm, v, n));
    }
  }
  add_event(r, tb, keys, (uint32_t)(kp - keys), user_hash, value_sum);
  return 0;
}

int rollup_add_values(rollup_t *r, int64_t t_us, const char *const *values,
                      const uint32_t *lens, size_t n, uint64_t user_hash, double value_sum) {
  if (!r || !isfinite(value_sum) || (n && (!values || !lens))) return -EINVAL;
  int64_t tb[NGRAN];
  int rc = n ? add_begin(r, t_us, n, tb) : 0;
  if (rc) return rc;
  for (size_t i = 0; i < n; i++) {
    uint32_t key = 0, nkeys = 0;
    if (values[i] && lens[i]) key = KEY(0, intern(r, &r->dims[0], values[i], lens[i])), nkeys = 1;
    if (add_event(r, tb, &key, nkeys, user_hash, value_sum) && i + 1 < n) {
      /* the budget moved buckets and floors: the rest as adds of their own */
      const char *v[ROLLUP_MAX_DIMS] = {0};
      uint32_t l[ROLLUP_MAX_DIMS] = {0};
      for (size_t j = i + 1; j < n; j++) {
        v[0] = values[j];
        l[0] = lens[j];
        int rcj = rollup_add_len(r, t_us, v, l, user_hash, value_sum);
        if (rcj && !rc) rc = rcj;
      }
      return rc;
    }
  }
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
  size_t len = value_len(r, f[0].value, strnlen(f[0].value, (size_t)r->max_value_len + 1));
  int64_t id = rollup_dim_find(dm, f[0].value, len, value_hash(f[0].value, len), NULL);
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
  int users_na; /* a cell read had its users given up to the budget */
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
  if (c->users == U_NONE) tc->users_na = 1;
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
  totals_ctx tc = {key, 0, 0, NULL, 0};
  /* Per-second dimension cells keep no users: a filter reads minutes at the finest (the
   * same span for counts, so both read the same buckets). */
  walk(r, key == TOTAL_KEY ? G_SEC : G_MIN, t0_us, t1_us, users ? visit_totals : visit_counts,
       &tc, &out->from_us, &out->to_us);
  out->count = tc.count;
  out->sum = tc.sum;
  out->uniques =
      !users || r->no_users || tc.users_na ? ROLLUP_NA : tc.users ? hll_count(tc.users) : 0;
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
      totals_ctx tc = {key, 0, 0, NULL, 0};
      if (bk) visit_totals(bk, &tc);
      hour_pending(r, b, visit_totals, &tc);
      pt->count = tc.count;
      pt->sum = tc.sum;
      pt->uniques = tc.users_na ? ROLLUP_NA : tc.users ? hll_count(tc.users) : 0;
      hll_free(tc.users);
      continue;
    }
    const cell_t *c = bk ? bucket_cell(bk, key) : NULL;
    if (!c) continue;
    pt->count = c->count;
    pt->sum = c->sum;
    pt->uniques = cell_uniques(c);
  }
  if (r->no_users)
    for (size_t i = 0; i < n; i++) out[i].uniques = ROLLUP_NA;
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
  uint8_t *users_na; /* per value id: a cell read had its users given up */
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
    if (c->users == U_NONE) tc->users_na[id] = 1;
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
  case ROLLUP_BY_UNIQUES: { /* uniques not kept (ROLLUP_NA) rank below every count */
    uint64_t ua = a->uniques == ROLLUP_NA ? 0 : a->uniques + 1;
    uint64_t ub = b->uniques == ROLLUP_NA ? 0 : b->uniques + 1;
    c = (ua < ub) - (ua > ub);
    break;
  }
  }
  return c ? c : strcmp(a->value, b->value);
}

int rollup_topn(const rollup_t *r, const char *dim, rollup_metric_t by, int64_t t0_us,
                int64_t t1_us, rollup_top_t *out, size_t n, int64_t *from_us, int64_t *to_us) {
  if (!r || !dim || (!out && n) || (unsigned)by > ROLLUP_BY_UNIQUES) return -EINVAL;
  if (r->no_users && by == ROLLUP_BY_UNIQUES) return -ENOTSUP;
  int d = rollup_dim_index(r, dim);
  if (d < 0) return -ENOENT;
  const dim_t *dm = &r->dims[d];
  uint32_t nv = dm->n;
  topn_ctx tc = {(uint32_t)d + 1, xcalloc(nv, sizeof(uint64_t)), xcalloc(nv, sizeof(double)),
                 by == ROLLUP_BY_UNIQUES ? xcalloc(nv, sizeof(hll_t *)) : NULL, NULL, NULL,
                 xcalloc(nv, 1)};
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
    w->uniques = tc.users_na[id] ? ROLLUP_NA : tc.users && tc.users[id] ? hll_count(tc.users[id]) : 0;
    w->value = dm->vals[id];
  }
  qsort_r(rows, nrows, sizeof *rows, row_cmp, &by);
  size_t m = nrows < n ? nrows : n;
  if (by != ROLLUP_BY_UNIQUES && m && r->no_users) {
    for (size_t i = 0; i < m; i++) rows[i].uniques = ROLLUP_NA;
  } else if (by != ROLLUP_BY_UNIQUES && m) { /* uniques for the rows kept only */
    tc.rank_of = xmalloc((size_t)nv * sizeof *tc.rank_of);
    memset(tc.rank_of, 0xff, (size_t)nv * sizeof *tc.rank_of);
    tc.row_users = xcalloc(m, sizeof *tc.row_users);
    for (size_t i = 0; i < m; i++) tc.rank_of[rows[i].id] = (int32_t)i;
    walk(r, G_MIN, t0_us, t1_us, visit_topn_users, &tc, &from, &to);
    for (size_t i = 0; i < m; i++) {
      if (rows[i].uniques != ROLLUP_NA)
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
  free(tc.users_na);
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
    bytes += strlen(d->name) + 1 + (sizeof *d->tab << d->tbits) +
             (size_t)d->cap * (sizeof *d->vals + sizeof *d->vlen + sizeof *d->vhash);
    for (uint32_t k = 0; k < d->n; k++) bytes += d->vlen[k] + 1;
  }
  for (int g = 0; g < NGRAN; g++) {
    size_t rb = (size_t)r->ring[g].size * sizeof(bucket_t);
    for (uint32_t s = r->ring[g].held_lo; s < r->ring[g].held_hi; s++) {
      const bucket_t *bk = &r->ring[g].slots[s];
      rb += (size_t)bk->cap * sizeof(cell_t) + table_bytes(bk);
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
    out->users_dropped[g] = r->users_dropped[g];
  }
  out->budget_bytes = r->ring_bytes;
  out->max_bytes = r->max_bytes;
  out->budget_folded = r->budget_folded;
  out->starved = r->starved;
  out->bytes = bytes;
}

