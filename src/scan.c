/* scan: exact answers from the log — timeseries and totals under any filter, groupBy,
 * funnels (see scan.h).
 *
 * Aggregation state, all counted against the memory bound:
 *   - a cell (count, revenue sum, unique users) per timeseries bucket or group; its users
 *     are a hash set of 64-bit user hashes until it holds exact_uniques, then an HLL;
 *   - groups: an open-addressing table of byte keys (each group dimension's value, length
 *     prefixed, so no value can forge another's key), bounded by max_groups; past it,
 *     new groups fold into one "(other)" group;
 *   - funnels: per user (table keyed by user hash) the events that match some step, as
 *     (time, log order, matching steps, breakdown value). Arrival order is not event-time
 *     order (late and offline events), so each user's events are sorted by time once the
 *     range is read, and then walked once (see user_funnel). */
#include "scan.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "evfields.h"
#include "hll.h"
#include "process.h"
#include "util/clock.h"
#include "util/mem.h"

static const char *const dim_names[PROCESS_NDIMS] = {PROCESS_DIMS};

typedef struct scan scan_t;

/* ---- unique users: exact set, then HLL ---- */

typedef struct uset {
  uint64_t *slots; /* open addressing, 0 = empty (0 is "no user") */
  uint32_t n, cap;
  hll_t *hll;
} uset_t;

struct scan {
  const scan_query_t *q;
  scan_limits_t lim;
  size_t mem;
  int inexact; /* some cell's uniques went to HLL */
};

static void uset_put(uint64_t *slots, uint32_t cap, uint64_t h) {
  uint32_t i = (uint32_t)h & (cap - 1);
  while (slots[i] && slots[i] != h) i = (i + 1) & (cap - 1);
  slots[i] = h;
}

static void uset_add(scan_t *s, uset_t *u, uint64_t h) {
  if (!h) return;
  if (u->hll) {
    hll_add_hash(u->hll, h);
    return;
  }
  if ((u->n + 1) * 2 > u->cap) {
    if (u->n + 1 > s->lim.exact_uniques) {
      u->hll = hll_new();
      for (uint32_t i = 0; i < u->cap; i++)
        if (u->slots[i]) hll_add_hash(u->hll, u->slots[i]);
      hll_add_hash(u->hll, h);
      free(u->slots);
      s->mem += HLL_DENSE_BYTES - (size_t)u->cap * 8;
      u->slots = NULL;
      s->inexact = 1;
      return;
    }
    uint32_t cap = u->cap ? u->cap * 2 : 4;
    uint64_t *slots = xcalloc(cap, 8);
    for (uint32_t i = 0; i < u->cap; i++)
      if (u->slots[i]) uset_put(slots, cap, u->slots[i]);
    free(u->slots);
    s->mem += (size_t)(cap - u->cap) * 8;
    u->slots = slots;
    u->cap = cap;
  }
  uint32_t i = (uint32_t)h & (u->cap - 1);
  while (u->slots[i] && u->slots[i] != h) i = (i + 1) & (u->cap - 1);
  if (!u->slots[i]) {
    u->slots[i] = h;
    u->n++;
  }
}

static uint64_t uset_count(const uset_t *u) { return u->hll ? hll_count(u->hll) : u->n; }

static void uset_free(uset_t *u) {
  free(u->slots);
  hll_free(u->hll);
}

typedef struct cell {
  uint64_t count;
  double sum;
  uset_t users;
} cell_t;

static void cell_add(scan_t *s, cell_t *c, const evfields_t *e) {
  c->count++;
  c->sum += e->revenue;
  uset_add(s, &c->users, e->user_hash);
}

/* ---- groups: byte keys -> dense indexes, bounded ---- */

typedef struct gtable {
  uint32_t *slots; /* index + 1, 0 = empty */
  uint32_t cap;
  char **keys;     /* owned copies; keys[i] of klen[i] bytes */
  uint32_t *klen;
  uint64_t *hash;
  size_t n, alloc;
  long other;      /* index of the "(other)" group, -1 until needed */
  size_t folded;   /* events folded into it */
} gtable_t;

/* The index of key[0..len), added when new; past max groups, the "(other)" group (an
 * entry with a NULL key). */
static size_t gtable_get(scan_t *s, gtable_t *g, const char *key, size_t len) {
  uint64_t h = XXH3_64bits(key, len);
  if (g->cap) {
    uint32_t i = (uint32_t)h & (g->cap - 1);
    for (uint32_t k; (k = g->slots[i]); i = (i + 1) & (g->cap - 1))
      if (g->hash[k - 1] == h && g->klen[k - 1] == len && g->keys[k - 1] &&
          !memcmp(g->keys[k - 1], key, len))
        return k - 1;
  }
  int full = g->n >= s->lim.max_groups + (g->other >= 0);
  if (full && g->other >= 0) {
    g->folded++;
    return (size_t)g->other;
  }
  if (g->n == g->alloc) {
    size_t a = g->alloc ? g->alloc * 2 : 16;
    g->keys = xrealloc(g->keys, a * sizeof *g->keys);
    g->klen = xrealloc(g->klen, a * sizeof *g->klen);
    g->hash = xrealloc(g->hash, a * sizeof *g->hash);
    s->mem += (a - g->alloc) * (sizeof *g->keys + sizeof *g->klen + sizeof *g->hash);
    g->alloc = a;
  }
  size_t idx = g->n++;
  g->keys[idx] = full ? NULL : xmalloc(len ? len : 1);
  if (!full) memcpy(g->keys[idx], key, len);
  g->klen[idx] = full ? 0 : (uint32_t)len;
  g->hash[idx] = h;
  s->mem += len;
  if (full) {
    g->other = (long)idx;
    g->folded++;
    return idx;
  }
  if ((g->n + 1) * 2 > g->cap) {
    uint32_t cap = g->cap ? g->cap * 2 : 64;
    free(g->slots);
    g->slots = xcalloc(cap, sizeof *g->slots);
    s->mem += (size_t)(cap - g->cap) * sizeof *g->slots;
    g->cap = cap;
    for (size_t k = 0; k < g->n; k++) {
      if (!g->keys[k]) continue;
      uint32_t i = (uint32_t)g->hash[k] & (cap - 1);
      while (g->slots[i]) i = (i + 1) & (cap - 1);
      g->slots[i] = (uint32_t)k + 1;
    }
  } else {
    uint32_t i = (uint32_t)h & (g->cap - 1);
    while (g->slots[i]) i = (i + 1) & (g->cap - 1);
    g->slots[i] = (uint32_t)idx + 1;
  }
  return idx;
}

static void gtable_free(gtable_t *g) {
  for (size_t i = 0; i < g->n; i++) free(g->keys[i]);
  free(g->keys);
  free(g->klen);
  free(g->hash);
  free(g->slots);
}

/* Append dimension value v (NULL: absent) to a group key: u16 length, 0xffff = absent. */
static void key_part(buf_t *k, const char *v) {
  size_t n = v ? strlen(v) : 0xffff;
  unsigned char l[2] = {(unsigned char)n, (unsigned char)(n >> 8)};
  buf_append(k, l, 2);
  if (v) buf_append(k, v, n);
}

/* Part i of key (from key_part) as a NUL-terminated string in out, or NULL if absent. */
static const char *key_value(const char *key, size_t len, int part, char *out, size_t cap) {
  size_t at = 0;
  for (int i = 0;; i++) {
    if (at + 2 > len) return NULL;
    size_t n = (unsigned char)key[at] | (size_t)(unsigned char)key[at + 1] << 8;
    at += 2;
    if (n == 0xffff) {
      if (i == part) return NULL;
      continue;
    }
    if (i == part) {
      if (n >= cap) n = cap - 1;
      memcpy(out, key + at, n);
      out[n] = 0;
      return out;
    }
    at += n;
  }
}

/* Group keys in the order of their values, part by part (absent after any value). */
static int key_cmp(const char *x, size_t lx, const char *y, size_t ly) {
  size_t i = 0, j = 0;
  while (i + 2 <= lx && j + 2 <= ly) {
    size_t nx = (unsigned char)x[i] | (size_t)(unsigned char)x[i + 1] << 8;
    size_t ny = (unsigned char)y[j] | (size_t)(unsigned char)y[j + 1] << 8;
    i += 2, j += 2;
    if (nx == 0xffff || ny == 0xffff) {
      if (nx != ny) return nx == 0xffff ? 1 : -1;
      continue;
    }
    int c = memcmp(x + i, y + j, nx < ny ? nx : ny);
    if (c || nx != ny) return c ? c : nx < ny ? -1 : 1;
    i += nx, j += ny;
  }
  return 0;
}

/* ---- funnels ---- */

static const scan_query_t *sort_q; /* qsort has no context argument; set before sorting */
static const gtable_t *sort_g;


typedef struct fevent {
  int64_t t;
  uint32_t seq;  /* log order, breaks ties between equal times */
  uint32_t bd;   /* breakdown group of this event's value */
  uint32_t mask; /* steps this event matches */
} fevent_t;

typedef struct fuser {
  uint64_t h;
  fevent_t *ev;
  uint32_t n, cap;
} fuser_t;

typedef struct fresult {
  uint32_t bd;
  int reached;                         /* steps reached, 0..nsteps */
  int64_t dt[SCAN_MAX_STEPS];          /* dt[k]: step k-1 -> step k, k < reached */
} fresult_t;

typedef struct state {
  cell_t *cells;    /* timeseries buckets, totals (1), groups */
  size_t ncells;
  gtable_t groups;
  buf_t key;
  fuser_t *users;   /* funnel users, open addressing on h (0 = empty) */
  size_t nusers, ucap;
  uint32_t seq;
} state_t;

static fuser_t *user_of(scan_t *s, state_t *st, uint64_t h) {
  if ((st->nusers + 1) * 2 > st->ucap) {
    size_t cap = st->ucap ? st->ucap * 2 : 1024;
    fuser_t *u = xcalloc(cap, sizeof *u);
    for (size_t k = 0; k < st->ucap; k++) {
      if (!st->users[k].h) continue;
      size_t i = st->users[k].h & (cap - 1);
      while (u[i].h) i = (i + 1) & (cap - 1);
      u[i] = st->users[k];
    }
    free(st->users);
    s->mem += (cap - st->ucap) * sizeof *u;
    st->users = u;
    st->ucap = cap;
  }
  size_t i = h & (st->ucap - 1);
  while (st->users[i].h && st->users[i].h != h) i = (i + 1) & (st->ucap - 1);
  if (!st->users[i].h) {
    st->users[i].h = h;
    st->nusers++;
  }
  return &st->users[i];
}

static void funnel_add(scan_t *s, state_t *st, const evfields_t *e) {
  const scan_query_t *q = s->q;
  uint32_t mask = 0;
  if (!e->user_hash || !e->dims[0]) return;
  for (int k = 0; k < q->nsteps; k++)
    if (!strcmp(e->dims[0], q->steps[k].event) && scan_filter_match(q->steps[k].filter, e->dims))
      mask |= 1u << k;
  if (!mask) return;
  uint32_t bd = 0;
  if (q->breakdown_dim >= 0 && (mask & 1)) {
    buf_reset(&st->key);
    key_part(&st->key, e->dims[q->breakdown_dim]);
    bd = (uint32_t)gtable_get(s, &st->groups, st->key.data, st->key.len);
  }
  fuser_t *u = user_of(s, st, e->user_hash);
  if (u->n == u->cap) {
    uint32_t cap = u->cap ? u->cap * 2 : 4;
    u->ev = xrealloc(u->ev, cap * sizeof *u->ev);
    s->mem += (cap - u->cap) * sizeof *u->ev;
    u->cap = cap;
  }
  u->ev[u->n++] = (fevent_t){e->t_us, st->seq++, bd, mask};
}

static int fevent_cmp(const void *a, const void *b) {
  const fevent_t *x = a, *y = b;
  if (x->t != y->t) return x->t < y->t ? -1 : 1;
  return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* One user's furthest progress. Walking the events in time order, chain[k] is the chain
 * that reached step k with the LATEST first-step time seen so far (the one with the most
 * window left): a step-1 event starts a new chain[0]; an event matching step k extends
 * chain[k-1] into chain[k] when it lies within the window of that chain's first step.
 * Steps are visited from the last down so that one event advances a chain by one step
 * only. The deepest chain gives the steps reached, the times between steps and the
 * breakdown value (that of its first step). */
static void user_funnel(const scan_query_t *q, fuser_t *u, fresult_t *r) {
  struct {
    int ok;
    uint32_t bd;
    int64_t t[SCAN_MAX_STEPS];
  } chain[SCAN_MAX_STEPS] = {{0}};
  qsort(u->ev, u->n, sizeof *u->ev, fevent_cmp);
  for (uint32_t i = 0; i < u->n; i++) {
    const fevent_t *ev = &u->ev[i];
    for (int k = q->nsteps - 1; k >= 0; k--) {
      if (!(ev->mask & (1u << k))) continue;
      if (k == 0) {
        chain[0].ok = 1;
        chain[0].bd = ev->bd;
        chain[0].t[0] = ev->t;
      } else if (chain[k - 1].ok && ev->t - chain[k - 1].t[0] <= q->window_us) {
        chain[k] = chain[k - 1];
        chain[k].t[k] = ev->t;
      }
    }
  }
  r->reached = 0;
  for (int k = q->nsteps - 1; k >= 0; k--)
    if (chain[k].ok) {
      r->reached = k + 1;
      r->bd = chain[k].bd;
      for (int j = 1; j <= k; j++) r->dt[j] = chain[k].t[j] - chain[k].t[j - 1];
      break;
    }
}

static int i64_cmp(const void *a, const void *b) {
  int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return x < y ? -1 : x > y;
}

static int fresult_cmp(const void *a, const void *b) {
  const fresult_t *x = a, *y = b;
  return x->bd < y->bd ? -1 : x->bd > y->bd;
}

/* The steps array of r[0..n) (results of reached >= 1), medians from tmp (room for n). */
static void put_steps(buf_t *out, const scan_query_t *q, const fresult_t *r, size_t n,
                      int64_t *tmp) {
  uint64_t first = 0, prev = 0;
  buf_putc(out, '[');
  for (int k = 0; k < q->nsteps; k++) {
    uint64_t users = 0;
    size_t nd = 0;
    for (size_t i = 0; i < n; i++)
      if (r[i].reached > k) {
        users++;
        if (k) tmp[nd++] = r[i].dt[k];
      }
    if (k == 0) first = prev = users;
    buf_puts(out, k ? ",{\"event\":" : "{\"event\":");
    buf_json_str(out, q->steps[k].event);
    buf_printf(out, ",\"users\":%llu,\"conversionFromPrevious\":", (unsigned long long)users);
    buf_json_num(out, k == 0 ? (users ? 1 : NAN) : prev ? (double)users / (double)prev : NAN);
    buf_puts(out, ",\"conversionFromFirst\":");
    buf_json_num(out, first ? (double)users / (double)first : NAN);
    buf_printf(out, ",\"dropOff\":%llu,\"medianSecondsFromPrevious\":",
               (unsigned long long)(k ? prev - users : 0));
    double med = NAN;
    if (nd) {
      qsort(tmp, nd, sizeof *tmp, i64_cmp);
      med = nd % 2 ? (double)tmp[nd / 2] : ((double)tmp[nd / 2 - 1] + (double)tmp[nd / 2]) / 2;
      med = (double)(int64_t)(med / 1000) / 1000; /* seconds, to the millisecond */
    }
    buf_json_num(out, med);
    buf_putc(out, '}');
    prev = users;
  }
  buf_putc(out, ']');
}

typedef struct fgroup {
  size_t at, n;  /* range in the results sorted by bd */
  uint64_t entered;
  uint32_t bd;
} fgroup_t;

static int fgroup_cmp(const void *a, const void *b) {
  const fgroup_t *x = a, *y = b;
  if (x->entered != y->entered) return x->entered > y->entered ? -1 : 1;
  const char *kx = sort_g->keys[x->bd], *ky = sort_g->keys[y->bd];
  if (!kx || !ky) return !kx - !ky;
  return key_cmp(kx, sort_g->klen[x->bd], ky, sort_g->klen[y->bd]);
}

static void funnel_answer(scan_t *s, state_t *st, buf_t *out) {
  const scan_query_t *q = s->q;
  fresult_t *res = xmalloc((st->nusers ? st->nusers : 1) * sizeof *res);
  int64_t *tmp = xmalloc((st->nusers ? st->nusers : 1) * sizeof *tmp);
  size_t n = 0;
  for (size_t i = 0; i < st->ucap; i++) {
    if (!st->users[i].h) continue;
    user_funnel(q, &st->users[i], &res[n]);
    if (res[n].reached) n++;
  }
  buf_printf(out, ",\"window\":%lld,\"steps\":", (long long)(q->window_us / 1000000));
  put_steps(out, q, res, n, tmp);
  if (q->breakdown_dim >= 0) {
    qsort(res, n, sizeof *res, fresult_cmp);
    fgroup_t *g = xmalloc((n ? n : 1) * sizeof *g);
    size_t ng = 0;
    for (size_t i = 0; i < n; i++) {
      if (!ng || g[ng - 1].bd != res[i].bd) g[ng++] = (fgroup_t){i, 0, 0, res[i].bd};
      g[ng - 1].n++;
      g[ng - 1].entered++;
    }
    sort_g = &st->groups;
    qsort(g, ng, sizeof *g, fgroup_cmp);
    buf_puts(out, ",\"breakdown\":");
    buf_json_str(out, dim_names[q->breakdown_dim]);
    buf_printf(out, ",\"groupCount\":%zu,\"groups\":[", ng);
    for (size_t i = 0; i < ng && i < q->limit; i++) {
      char v[EVFIELDS_VAL_CAP];
      const gtable_t *gt = &st->groups;
      int other = (long)g[i].bd == gt->other;
      const char *val = other ? "(other)" : key_value(gt->keys[g[i].bd], gt->klen[g[i].bd], 0, v, sizeof v);
      buf_puts(out, i ? ",{\"value\":" : "{\"value\":");
      buf_json_str(out, val);
      if (other) buf_puts(out, ",\"other\":true");
      buf_puts(out, ",\"steps\":");
      put_steps(out, q, res + g[i].at, g[i].n, tmp);
      buf_putc(out, '}');
    }
    buf_putc(out, ']');
    free(g);
  }
  free(tmp);
  free(res);
}

/* ---- groupBy rows ---- */

typedef struct row {
  size_t g;
  double v;
} row_t;


static int row_cmp(const void *a, const void *b) {
  const row_t *x = a, *y = b;
  if (x->v != y->v) return (x->v < y->v) == !sort_q->ascending ? 1 : -1;
  /* ties: by the values, "(other)" last */
  const char *kx = sort_g->keys[x->g], *ky = sort_g->keys[y->g];
  if (!kx || !ky) return !kx - !ky;
  return key_cmp(kx, sort_g->klen[x->g], ky, sort_g->klen[y->g]);
}

static void groupby_answer(scan_t *s, state_t *st, buf_t *out) {
  const scan_query_t *q = s->q;
  const gtable_t *g = &st->groups;
  row_t *rows = xmalloc((g->n ? g->n : 1) * sizeof *rows);
  for (size_t i = 0; i < g->n; i++) {
    const cell_t *c = &st->cells[i];
    rows[i].g = i;
    rows[i].v = q->order_by == SCAN_BY_COUNT ? (double)c->count
                : q->order_by == SCAN_BY_SUM ? c->sum
                                             : (double)uset_count(&c->users);
  }
  sort_q = q;
  sort_g = g;
  qsort(rows, g->n, sizeof *rows, row_cmp);
  static const char *const metric[] = {"count", "sum", "uniques"};
  buf_puts(out, ",\"groupBy\":[");
  for (int k = 0; k < q->ngroup; k++) {
    if (k) buf_putc(out, ',');
    buf_json_str(out, dim_names[q->group_dims[k]]);
  }
  buf_printf(out, "],\"orderBy\":\"%s\",\"order\":\"%s\",\"groupCount\":%zu,"
                  "\"otherEvents\":%zu,\"rows\":[",
             metric[q->order_by], q->ascending ? "asc" : "desc", g->n, g->folded);
  for (size_t i = 0; i < g->n && i < q->limit; i++) {
    size_t k = rows[i].g;
    const cell_t *c = &st->cells[k];
    buf_putc(out, i ? ',' : '{');
    if (i) buf_putc(out, '{');
    for (int d = 0; d < q->ngroup; d++) {
      char v[EVFIELDS_VAL_CAP];
      buf_json_str(out, dim_names[q->group_dims[d]]);
      buf_putc(out, ':');
      buf_json_str(out, g->keys[k] ? key_value(g->keys[k], g->klen[k], d, v, sizeof v) : "(other)");
      buf_putc(out, ',');
    }
    if (!g->keys[k]) buf_puts(out, "\"other\":true,");
    buf_printf(out, "\"count\":%llu,\"sum\":", (unsigned long long)c->count);
    buf_json_num(out, c->sum);
    buf_printf(out, ",\"uniques\":%llu}", (unsigned long long)uset_count(&c->users));
  }
  buf_putc(out, ']');
  free(rows);
}

/* ---- the scan ---- */

static void put_time(buf_t *b, const char *key, int64_t t) {
  char iso[25];
  clock_format_iso(t, iso);
  buf_printf(b, "\"%s\":\"%s\"", key, iso);
}

static void put_cell(buf_t *out, const cell_t *c) {
  buf_printf(out, "\"count\":%llu,\"sum\":", (unsigned long long)c->count);
  buf_json_num(out, c->sum);
  buf_printf(out, ",\"uniques\":%llu", (unsigned long long)uset_count(&c->users));
}

static int64_t floor_div(int64_t a, int64_t b) { return a / b - (a % b < 0); }

static void add_event(scan_t *s, state_t *st, const evfields_t *e) {
  const scan_query_t *q = s->q;
  switch (q->kind) {
  case SCAN_TIMESERIES: {
    int64_t first = floor_div(q->from_us, q->bucket_us);
    size_t i = (size_t)(floor_div(e->t_us, q->bucket_us) - first);
    if (i < st->ncells) cell_add(s, &st->cells[i], e);
    break;
  }
  case SCAN_TOTALS:
    cell_add(s, &st->cells[0], e);
    break;
  case SCAN_GROUPBY: {
    buf_reset(&st->key);
    for (int k = 0; k < q->ngroup; k++) key_part(&st->key, e->dims[q->group_dims[k]]);
    size_t before = st->groups.n;
    size_t g = gtable_get(s, &st->groups, st->key.data, st->key.len);
    if (st->groups.n > before) {
      st->cells = xrealloc(st->cells, st->groups.n * sizeof *st->cells);
      memset(&st->cells[g], 0, sizeof *st->cells);
      st->ncells = st->groups.n;
      s->mem += sizeof *st->cells;
    }
    cell_add(s, &st->cells[g], e);
    break;
  }
  case SCAN_FUNNEL:
    funnel_add(s, st, e);
    break;
  }
}

static const char *const kind_names[] = {"timeseries", "totals", "groupBy", "funnel"};

static void answer(scan_t *s, state_t *st, const scan_stats_t *ss, buf_t *out) {
  const scan_query_t *q = s->q;
  buf_printf(out, "{\"type\":\"%s\",", kind_names[q->kind]);
  put_time(out, "from", q->from_us);
  buf_putc(out, ',');
  put_time(out, "to", q->to_us);
  switch (q->kind) {
  case SCAN_TIMESERIES: {
    int64_t first = floor_div(q->from_us, q->bucket_us) * q->bucket_us;
    buf_printf(out, ",\"granularity\":\"%s\",\"points\":[", q->granularity);
    for (size_t i = 0; i < st->ncells; i++) {
      buf_puts(out, i ? ",{" : "{");
      put_time(out, "t", first + (int64_t)i * q->bucket_us);
      buf_putc(out, ',');
      put_cell(out, &st->cells[i]);
      buf_putc(out, '}');
    }
    buf_putc(out, ']');
    break;
  }
  case SCAN_TOTALS:
    buf_putc(out, ',');
    put_cell(out, &st->cells[0]);
    break;
  case SCAN_GROUPBY:
    groupby_answer(s, st, out);
    break;
  case SCAN_FUNNEL:
    funnel_answer(s, st, out);
    break;
  }
  buf_printf(out, ",\"source\":\"log\",\"scanned\":%llu,\"matched\":%llu,\"uniquesExact\":%s}",
             (unsigned long long)ss->records, (unsigned long long)ss->matched,
             s->inexact ? "false" : "true");
}

static void state_free(state_t *st) {
  for (size_t i = 0; i < st->ncells; i++) uset_free(&st->cells[i].users);
  free(st->cells);
  gtable_free(&st->groups);
  buf_free(&st->key);
  for (size_t i = 0; i < st->ucap; i++) free(st->users[i].ev);
  free(st->users);
}

static int stop(char *err, size_t errlen, int rc, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int stop(char *err, size_t errlen, int rc, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  if (err && errlen) vsnprintf(err, errlen, fmt, ap);
  va_end(ap);
  return rc;
}

int scan_run(log_t *log, const scan_query_t *q, const scan_limits_t *lim, atomic_int *cancel,
             buf_t *out, scan_stats_t *stats, char *err, size_t errlen) {
  scan_t s = {.q = q};
  if (lim) s.lim = *lim;
  if (!s.lim.max_records) s.lim.max_records = 20000000;
  if (!s.lim.max_bytes) s.lim.max_bytes = 8ULL << 30;
  if (!s.lim.max_time_us) s.lim.max_time_us = 30LL * 1000000;
  if (!s.lim.max_memory) s.lim.max_memory = 256u << 20;
  if (!s.lim.max_groups) s.lim.max_groups = 10000;
  if (!s.lim.exact_uniques) s.lim.exact_uniques = 10000;
  scan_stats_t ss = {0};
  int64_t t0 = clock_mono_us();
  state_t st = {0};
  st.groups.other = -1;
  if (q->kind == SCAN_TIMESERIES) {
    int64_t first = floor_div(q->from_us, q->bucket_us);
    st.ncells = (size_t)(floor_div(q->to_us - 1, q->bucket_us) - first + 1);
    if (st.ncells > SCAN_MAX_POINTS) st.ncells = SCAN_MAX_POINTS;
  } else if (q->kind == SCAN_TOTALS) {
    st.ncells = 1;
  }
  st.cells = xcalloc(st.ncells ? st.ncells : 1, sizeof *st.cells);
  evfields_decoder_t *dec = evfields_new(q->conversion, NULL, 0);
  evfields_t *e = xmalloc(sizeof *e);
  int rc = 0;
  uint64_t end = log_end_offset(log);
  int64_t stop_recv = s.lim.late_us <= 0 ? INT64_MAX : q->to_us + s.lim.late_us;
  log_reader_t *r = log_reader_open(log, log_start_offset(log), err, errlen);
  if (!r) {
    rc = -EIO;
    goto done;
  }
  if ((rc = log_reader_seek_time(r, q->from_us - SCAN_EARLY_US)) < 0) {
    rc = stop(err, errlen, rc, "cannot read the log: %s", strerror(-rc));
    goto done;
  }
  log_reader_set_window(r, q->from_us, q->to_us);
  log_record_t rec;
  while (log_reader_offset(r) < end) {
    int n = log_reader_next(r, &rec);
    if (n < 0) {
      rc = stop(err, errlen, n, "cannot read the log: %s", strerror(-n));
      goto done;
    }
    if (n == 0 || rec.offset >= end || rec.time_us >= stop_recv) break;
    if (ss.records >= s.lim.max_records || ss.bytes + rec.value_len > s.lim.max_bytes) {
      rc = stop(err, errlen, -E2BIG, "the range holds more than %llu records or %llu bytes, "
                "the most one query may read; narrow from..to",
                (unsigned long long)s.lim.max_records, (unsigned long long)s.lim.max_bytes);
      goto done;
    }
    ss.records++;
    ss.bytes += rec.value_len;
    if ((ss.records & 1023) == 0) {
      if (cancel && atomic_load(cancel)) {
        rc = stop(err, errlen, -ECANCELED, "the query was cancelled");
        goto done;
      }
      if (clock_mono_us() - t0 > s.lim.max_time_us) {
        rc = stop(err, errlen, -ETIMEDOUT, "the query read %llu records in %lld ms, the most "
                  "one query may take; narrow from..to",
                  (unsigned long long)ss.records, (long long)s.lim.max_time_us / 1000);
        goto done;
      }
    }
    if (evfields_decode(dec, &rec, e) <= 0) continue;
    if (e->t_us < q->from_us || e->t_us >= q->to_us) continue;
    if (!scan_filter_match(q->filter, e->dims)) continue;
    ss.matched++;
    add_event(&s, &st, e);
    if (s.mem > s.lim.max_memory) {
      rc = stop(err, errlen, -E2BIG, "the query needs more than %zu MiB for its groups, "
                "unique users or funnel users; narrow from..to or the filter",
                s.lim.max_memory >> 20);
      goto done;
    }
  }
  /* a funnel's answer needs one result per user */
  if (q->kind == SCAN_FUNNEL &&
      s.mem + st.nusers * (sizeof(fresult_t) + sizeof(int64_t)) > s.lim.max_memory) {
    rc = stop(err, errlen, -E2BIG, "the query needs more than %zu MiB for its funnel users; "
              "narrow from..to or the filter", s.lim.max_memory >> 20);
    goto done;
  }
  answer(&s, &st, &ss, out);
done:
  ss.elapsed_us = clock_mono_us() - t0;
  if (stats) *stats = ss;
  log_reader_close(r);
  evfields_free(dec);
  free(e);
  state_free(&st);
  return rc;
}
