/* kpi: facts rollup, retention grids, lifetime value totals (see kpi.h). */
#include "kpi.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "util/mem.h"
#include "util/rd.h"

#define DAY_US (86400LL * 1000000)
#define MAP_SLOTS (2 * KPI_MAX_CAMPAIGNS) /* power of two, load <= 1/2 */
#define NAME_MAX_LEN 256

static const char *const fact_dims[KPI_NDIMS] = {KPI_DIMS};
static const char *const custom_dims[1] = {"part"};

/* One retention grid: rows are cohorts (ring by cohort index), columns offsets. */
typedef struct grid {
  int n;            /* rows = columns */
  int64_t *cohort;  /* per row: the cohort it holds, -1 unused */
  uint32_t *cells;  /* n x n */
} grid_t;

typedef struct clv_row {
  int64_t week; /* -1 unused */
  uint64_t customers;
  double revenue;
} clv_row_t;

typedef struct campaign {
  uint32_t hash; /* profile_t.session_campaign; 0 = free slot */
  uint32_t len;  /* strlen of name */
  char *name;
} campaign_t;

struct kpi {
  rollup_t *facts;
  rollup_t *custom; /* dimension "part": "<name>:n", "<name>:d" */
  const config_kpis_t *defs;
  grid_t day, week;
  kpi_clv_t clv;
  clv_row_t clv_rows[KPI_COHORT_WEEKS];
  campaign_t map[MAP_SLOTS];
  size_t ncampaigns;
};

/* ---- time ---- */

static int64_t floor_div(int64_t a, int64_t b) { return a / b - (a % b < 0); }

/* (times and days after the epoch: an unsigned division by the constant, a multiplication,
 * with no floor correction) */
int64_t kpi_day_of(int64_t t_us) {
  return t_us >= 0 ? (int64_t)((uint64_t)t_us / DAY_US) : floor_div(t_us, DAY_US);
}
/* Day 4 of the epoch (1970-01-05) is a Monday. */
static int64_t week_of_day(int64_t day) {
  return day >= 4 ? (int64_t)((uint64_t)(day - 4) / 7) : floor_div(day - 4, 7);
}
int64_t kpi_week_of(int64_t t_us) { return week_of_day(kpi_day_of(t_us)); }

/* ---- grids ---- */

static void grid_init(grid_t *g, int n) {
  g->n = n;
  g->cohort = xmalloc((size_t)n * sizeof *g->cohort);
  for (int i = 0; i < n; i++) g->cohort[i] = -1;
  g->cells = xcalloc((size_t)n * (size_t)n, sizeof *g->cells);
}

static void grid_free(grid_t *g) {
  free(g->cohort);
  free(g->cells);
}

static int64_t row_of(const grid_t *g, int64_t cohort) {
  return (int64_t)(((uint64_t)cohort) % (uint64_t)g->n);
}

static void grid_add(grid_t *g, int64_t cohort, int64_t period) {
  int64_t off = period - cohort;
  if (cohort < 0 || off < 0 || off >= g->n) return;
  int64_t r = row_of(g, cohort);
  if (g->cohort[r] != cohort) {
    if (g->cohort[r] > cohort) return; /* an older cohort than the ring holds */
    g->cohort[r] = cohort;
    memset(g->cells + r * g->n, 0, (size_t)g->n * sizeof *g->cells);
  }
  uint32_t *c = &g->cells[r * g->n + off];
  if (*c < UINT32_MAX) (*c)++;
}

static uint64_t grid_get(const grid_t *g, int64_t cohort, int off) {
  if (cohort < 0 || off < 0 || off >= g->n) return 0;
  int64_t r = row_of(g, cohort);
  return g->cohort[r] == cohort ? g->cells[r * g->n + off] : 0;
}

/* ---- campaign names ---- */

static size_t slot_of(uint32_t h) { return (h * 2654435761u) & (MAP_SLOTS - 1); }

/* The name remembered for h ("(none)" for 0, "(other)" when the map has none); its strlen
 * in *len (OUT). */
static const char *campaign_name(const kpi_t *k, uint32_t h, uint32_t *len) {
  if (!h) {
    *len = sizeof KPI_NO_CAMPAIGN - 1;
    return KPI_NO_CAMPAIGN;
  }
  for (size_t i = slot_of(h);; i = (i + 1) & (MAP_SLOTS - 1)) {
    if (k->map[i].hash == h) {
      *len = k->map[i].len;
      return k->map[i].name;
    }
    if (!k->map[i].hash) {
      *len = sizeof ROLLUP_OTHER - 1;
      return ROLLUP_OTHER;
    }
  }
}

/* Remember name for h (first name wins). Returns the entry that holds h, or NULL when the
 * map is full. */
static const campaign_t *campaign_put(kpi_t *k, uint32_t h, const char *name, size_t len) {
  size_t i = slot_of(h);
  for (; k->map[i].hash; i = (i + 1) & (MAP_SLOTS - 1))
    if (k->map[i].hash == h) return &k->map[i];
  if (k->ncampaigns >= KPI_MAX_CAMPAIGNS) return NULL;
  if (len > NAME_MAX_LEN) len = NAME_MAX_LEN;
  k->map[i].hash = h;
  k->map[i].len = (uint32_t)strnlen(name, len); /* (the name ends at a NUL, if any) */
  k->map[i].name = xmalloc(len + 1);
  memcpy(k->map[i].name, name, len);
  k->map[i].name[len] = 0;
  k->ncampaigns++;
  return &k->map[i];
}

/* ---- lifetime value ---- */

static clv_row_t *clv_row(kpi_t *k, int64_t week, int create) {
  if (week < 0) return NULL; /* before 1970-01-05: no cohort row */
  clv_row_t *r = &k->clv_rows[(uint64_t)week % KPI_COHORT_WEEKS];
  if (r->week == week) return r;
  if (!create || r->week > week) return NULL;
  r->week = week;
  r->customers = 0;
  r->revenue = 0;
  return r;
}

/* ---- public ---- */

/* The state without its two rollups (kpi_deserialize reads them instead of building
 * default ones to throw away). */
static kpi_t *kpi_alloc(void) {
  kpi_t *k = xcalloc(1, sizeof *k);
  grid_init(&k->day, KPI_COHORT_DAYS);
  grid_init(&k->week, KPI_COHORT_WEEKS);
  for (int i = 0; i < KPI_COHORT_WEEKS; i++) k->clv_rows[i].week = -1;
  return k;
}

kpi_t *kpi_new(int64_t (*now_us)(void *ctx), void *now_ctx) {
  rollup_opts_t o = {.dims = fact_dims, .ndims = KPI_NDIMS, .now_us = now_us, .now_ctx = now_ctx};
  rollup_t *r = rollup_new(&o);
  o.dims = custom_dims;
  o.ndims = 1;
  rollup_t *cu = rollup_new(&o);
  if (!r || !cu) {
    rollup_free(r);
    rollup_free(cu);
    return NULL;
  }
  rollup_set_no_users(r, 1); /* facts are read as counts and sums only */
  kpi_t *k = kpi_alloc();
  k->facts = r;
  k->custom = cu;
  return k;
}

void kpi_free(kpi_t *k) {
  if (!k) return;
  rollup_free(k->facts);
  rollup_free(k->custom);
  grid_free(&k->day);
  grid_free(&k->week);
  /* stop at the last name: the untouched rest of the map is never read */
  for (size_t i = 0, left = k->ncampaigns; i < MAP_SLOTS && left; i++)
    if (k->map[i].name) {
      free(k->map[i].name);
      left--;
    }
  free(k);
}

void kpi_rollup_stats(const kpi_t *k, rollup_stats_t out[2]) {
  rollup_stats(k ? k->facts : NULL, &out[0]);
  rollup_stats(k ? k->custom : NULL, &out[1]);
}

size_t kpi_rollup_bytes(const kpi_t *k) {
  rollup_stats_t st[2];
  kpi_rollup_stats(k, st);
  return st[0].bytes + st[1].bytes;
}

int kpi_set_max_bytes(kpi_t *k, size_t max_bytes) {
  if (!k) return -EINVAL;
  int rc = rollup_set_max_bytes(k->facts, max_bytes);
  return rc ? rc : rollup_set_max_bytes(k->custom, max_bytes);
}

void kpi_advance(kpi_t *k) {
  rollup_advance(k->facts);
  rollup_advance(k->custom);
}

/* ---- user-defined KPIs ---- */

void kpi_set_custom(kpi_t *k, const config_kpis_t *defs) { k->defs = defs; }

static int part_matches(const config_kpi_part_t *p, const char *name, const char *const *dims) {
  if (p->event && (!name || strcmp(p->event, name))) return 0;
  for (size_t i = 0; i < p->nfilters; i++) {
    const char *v = dims[p->filter_dim[i]];
    if (!v || strcmp(v, p->filter_value[i])) return 0;
  }
  return 1;
}

static void part_value(const config_kpi_t *d, int den, char *out, size_t cap) {
  snprintf(out, cap, "%s:%c", d->name, den ? 'd' : 'n');
}

void kpi_custom_observe(kpi_t *k, int64_t t_us, const char *name, const char *const *dims,
                        uint64_t user, const double *values) {
  if (!k->defs) return;
  for (size_t i = 0; i < k->defs->n; i++) {
    const config_kpi_t *d = &k->defs->items[i];
    for (int j = 0; j < 2; j++) {
      const config_kpi_part_t *p = j ? &d->den : &d->num;
      if (!p->present || !part_matches(p, name, dims)) continue;
      char v[CONFIG_KPI_MAX_NAME + 3];
      part_value(d, j, v, sizeof v);
      const char *vp[1] = {v};
      double x = p->metric == CONFIG_KPI_SUM && isfinite(values[2 * i + j]) ? values[2 * i + j] : 0;
      rollup_add(k->custom, t_us, vp, user, x);
    }
  }
}

int kpi_custom_index(const kpi_t *k, const char *name) {
  for (size_t i = 0; k->defs && i < k->defs->n; i++)
    if (!strcmp(k->defs->items[i].name, name)) return (int)i;
  return -1;
}

const config_kpi_t *kpi_custom_def(const kpi_t *k, int i) {
  return k->defs && i >= 0 && (size_t)i < k->defs->n ? &k->defs->items[i] : NULL;
}

int kpi_custom_eval(const kpi_t *k, int i, int64_t from, int64_t to, double *num, double *den,
                    int64_t *read_from, int64_t *read_to) {
  const config_kpi_t *d = kpi_custom_def(k, i);
  if (!d) return -ENOENT;
  double out[2] = {0, NAN};
  for (int j = 0; j < 2; j++) {
    const config_kpi_part_t *p = j ? &d->den : &d->num;
    if (!p->present) continue;
    char v[CONFIG_KPI_MAX_NAME + 3];
    part_value(d, j, v, sizeof v);
    rollup_filter_t f = {"part", v};
    rollup_totals_t t = {0};
    (p->metric == CONFIG_KPI_UNIQUES ? rollup_totals : rollup_counts)(k->custom, from, to, &f, 1,
                                                                       &t);
    out[j] = p->metric == CONFIG_KPI_COUNT ? (double)t.count
             : p->metric == CONFIG_KPI_SUM ? t.sum
             : t.uniques == ROLLUP_NA ? NAN /* given up to the memory budget */
                                      : (double)t.uniques;
    *read_from = t.from_us, *read_to = t.to_us;
  }
  *num = out[0], *den = out[1];
  return 0;
}

const rollup_t *kpi_facts(const kpi_t *k) { return k->facts; }

/* Add one fact record: dims[0] = fact (a literal), dims[dim] = campaign of clen bytes (its
 * strlen; dim 0: none). Facts are read as counts and sums only: their store keeps no users
 * (no_users). The lengths spare the store measuring each value. */
#define FACT(k, t_us, name, dim, campaign, clen, sum) \
  fact((k), (t_us), (name), sizeof name - 1, (dim), (campaign), (clen), (sum))
static void fact(kpi_t *k, int64_t t_us, const char *name, uint32_t nlen, int dim,
                 const char *campaign, uint32_t clen, double sum) {
  const char *v[KPI_NDIMS] = {name};
  uint32_t lens[KPI_NDIMS] = {nlen};
  if (dim) {
    v[dim] = campaign;
    lens[dim] = clen;
  }
  rollup_add_len(k->facts, t_us, v, lens, 0, sum);
}

void kpi_observe(kpi_t *k, const kpi_event_t *e) {
  const profile_result_t *r = e->result;
  if (!r || !r->profile) return;
  const profile_t *p = r->profile;
  int64_t t = e->t_us;
  if (r->flags & PROFILE_R_NEW_PROFILE) FACT(k, t, KPI_FACT_NEW_USER, 0, NULL, 0, 0);
  if ((r->flags & PROFILE_R_MERGED) && r->merged_first_seen)
    FACT(k, (int64_t)r->merged_first_seen * 1000000, KPI_FACT_MERGED_USER, 0, NULL, 0, 0);

  int64_t start_us = (int64_t)p->session_start * 1000000;
  uint32_t clen;
  const char *camp;
  if (r->flags & PROFILE_R_SESSION_START) {
    const campaign_t *c = NULL;
    if (p->session_campaign) {
      const char *name = e->campaign ? e->campaign : KPI_NO_CAMPAIGN;
      c = campaign_put(k, p->session_campaign, name,
                       e->campaign && e->campaign_len ? e->campaign_len : strlen(name));
    }
    if (c) /* the name just remembered, or remembered before (what campaign_name finds) */
      camp = c->name, clen = c->len;
    else
      camp = campaign_name(k, p->session_campaign, &clen);
    FACT(k, start_us, KPI_FACT_SESSION, 1, camp, clen, 0);
  }
  if (r->flags & PROFILE_R_CONVERSION) {
    camp = campaign_name(k, p->session_campaign, &clen);
    FACT(k, start_us, KPI_FACT_CONVERSION, 2, camp, clen, e->is_order ? e->revenue : 0);
  }

  /* (days and weeks each computed once: an event asks for them several times) */
  int64_t first_day = kpi_day_of((int64_t)p->first_seen * 1000000), t_day = kpi_day_of(t);
  int64_t cohort_week = week_of_day(first_day), t_week = week_of_day(t_day);
  if (e->is_order) {
    double rev = isfinite(e->revenue) ? e->revenue : 0;
    clv_row_t *row = clv_row(k, cohort_week, 1);
    if (r->prev_orders == 0) {
      camp = campaign_name(k, p->session_campaign, &clen);
      FACT(k, t, KPI_FACT_NEW_CUSTOMER, 3, camp, clen, rev);
      k->clv.customers++;
      if (row) row->customers++;
    }
    k->clv.revenue += rev;
    if (row) row->revenue += rev;
  }
  if (r->merged_customers) {
    uint64_t m = r->merged_customers;
    k->clv.customers -= m < k->clv.customers ? m : k->clv.customers;
    clv_row_t *row = clv_row(k, cohort_week, 0);
    if (row) row->customers -= m < row->customers ? m : row->customers;
  }

  /* Retention: the first event of this day (week) for the profile. */
  int64_t prev_day = r->prev_last_seen ? kpi_day_of((int64_t)r->prev_last_seen * 1000000) : 0;
  if (!r->prev_last_seen || t_day > prev_day) grid_add(&k->day, first_day, t_day);
  if (!r->prev_last_seen || t_week > week_of_day(prev_day))
    grid_add(&k->week, cohort_week, t_week);
}

int kpi_cost(kpi_t *k, int64_t t_us, const char *campaign, double cost) {
  if (!isfinite(cost) || cost < 0) return -EINVAL;
  const char *v[KPI_NDIMS] = {KPI_FACT_COST, NULL, NULL, NULL,
                              campaign && *campaign ? campaign : KPI_NO_CAMPAIGN};
  return rollup_add(k->facts, t_us, v, 0, cost);
}

uint64_t kpi_retention(const kpi_t *k, int week, int64_t cohort, int offset) {
  return grid_get(week ? &k->week : &k->day, cohort, offset);
}

int64_t kpi_newest_cohort(const kpi_t *k, int week) {
  const grid_t *g = week ? &k->week : &k->day;
  int64_t best = -1;
  for (int i = 0; i < g->n; i++)
    if (g->cohort[i] > best) best = g->cohort[i];
  return best;
}

void kpi_clv(const kpi_t *k, int64_t cohort_week, kpi_clv_t *out) {
  memset(out, 0, sizeof *out);
  if (cohort_week < 0) {
    *out = k->clv;
    return;
  }
  const clv_row_t *r = &k->clv_rows[(uint64_t)cohort_week % KPI_COHORT_WEEKS];
  if (r->week == cohort_week) {
    out->customers = r->customers;
    out->revenue = r->revenue;
  }
}

/* ---- snapshot ---- */

#define MAGIC "SLKP"
#define VERSION 1

static void put(buf_t *b, uint64_t v, int bytes) {
  unsigned char x[8];
  for (int i = 0; i < bytes; i++) x[i] = (unsigned char)(v >> (8 * i));
  buf_append(b, x, (size_t)bytes);
}

static void put_f64(buf_t *b, double d) {
  uint64_t v;
  memcpy(&v, &d, 8);
  put(b, v, 8);
}

static void put_grid(buf_t *b, const grid_t *g) {
  for (int i = 0; i < g->n; i++) {
    put(b, (uint64_t)g->cohort[i], 8);
    for (int j = 0; j < g->n; j++) put(b, g->cells[i * g->n + j], 4);
  }
}

size_t kpi_serialize(const kpi_t *k, buf_t *out) {
  size_t start = out->len;
  buf_append(out, MAGIC, 4);
  put(out, VERSION, 1);
  put(out, k->clv.customers, 8);
  put_f64(out, k->clv.revenue);
  put(out, k->ncampaigns, 4);
  for (size_t i = 0; i < MAP_SLOTS; i++) {
    if (!k->map[i].hash) continue;
    size_t n = strlen(k->map[i].name);
    put(out, k->map[i].hash, 4);
    put(out, n, 2);
    buf_append(out, k->map[i].name, n);
  }
  put_grid(out, &k->day);
  put_grid(out, &k->week);
  for (int i = 0; i < KPI_COHORT_WEEKS; i++) {
    put(out, (uint64_t)k->clv_rows[i].week, 8);
    put(out, k->clv_rows[i].customers, 8);
    put_f64(out, k->clv_rows[i].revenue);
  }
  size_t at = out->len;
  put(out, 0, 8);
  uint64_t n = rollup_serialize(k->facts, out);
  for (int i = 0; i < 8; i++) out->data[at + (size_t)i] = (char)(n >> (8 * i));
  at = out->len;
  put(out, 0, 8);
  n = rollup_serialize(k->custom, out);
  for (int i = 0; i < 8; i++) out->data[at + (size_t)i] = (char)(n >> (8 * i));
  return out->len - start;
}


static double get_f64(rd_t *r) {
  uint64_t v = rd_get(r, 8);
  double d;
  memcpy(&d, &v, 8);
  if (!isfinite(d)) r->bad = 1;
  return d;
}

static void get_grid(rd_t *r, grid_t *g) {
  for (int i = 0; i < g->n && !r->bad; i++) {
    int64_t c = (int64_t)rd_get(r, 8);
    if (c < -1 || (c >= 0 && row_of(g, c) != i)) r->bad = 1;
    g->cohort[i] = c;
    for (int j = 0; j < g->n; j++) g->cells[i * g->n + j] = (uint32_t)rd_get(r, 4);
  }
}

int kpi_deserialize(const void *p, size_t n, int64_t (*now_us)(void *ctx), void *now_ctx,
                    kpi_t **out) {
  *out = NULL;
  kpi_t *k = kpi_alloc();
  rd_t r = {p, p ? n : 0, 0, 0};
  if (!p || n < 5 || memcmp(p, MAGIC, 4)) goto fail;
  r.pos = 4;
  if (rd_get(&r, 1) != VERSION) goto fail;
  k->clv.customers = rd_get(&r, 8);
  k->clv.revenue = get_f64(&r);
  uint64_t nc = rd_get(&r, 4);
  if (nc > KPI_MAX_CAMPAIGNS) goto fail;
  for (uint64_t i = 0; i < nc && !r.bad; i++) {
    uint32_t h = (uint32_t)rd_get(&r, 4), known;
    size_t len = (size_t)rd_get(&r, 2);
    if (r.bad || !h || len > NAME_MAX_LEN || r.n - r.pos < len ||
        strcmp(campaign_name(k, h, &known), ROLLUP_OTHER))
      goto fail;
    campaign_put(k, h, (const char *)r.p + r.pos, len);
    r.pos += len;
  }
  get_grid(&r, &k->day);
  get_grid(&r, &k->week);
  for (int i = 0; i < KPI_COHORT_WEEKS && !r.bad; i++) {
    clv_row_t *row = &k->clv_rows[i];
    row->week = (int64_t)rd_get(&r, 8);
    row->customers = rd_get(&r, 8);
    row->revenue = get_f64(&r);
    if (row->week < -1 || (row->week >= 0 && row->week % KPI_COHORT_WEEKS != i)) r.bad = 1;
  }
  rollup_t **stores[2] = {&k->facts, &k->custom};
  const char *const *names[2] = {fact_dims, custom_dims};
  size_t ndims[2] = {KPI_NDIMS, 1};
  for (int s = 0; s < 2; s++) {
    uint64_t len = rd_get(&r, 8);
    if (r.bad || len > r.n - r.pos) goto fail;
    rollup_t *ro;
    if (rollup_deserialize(r.p + r.pos, (size_t)len, &ro) != 0) goto fail;
    r.pos += (size_t)len;
    int ok = rollup_ndims(ro) == ndims[s];
    for (size_t i = 0; ok && i < ndims[s]; i++) ok = rollup_dim_index(ro, names[s][i]) == (int)i;
    if (!ok) {
      rollup_free(ro);
      goto fail;
    }
    rollup_set_clock(ro, now_us, now_ctx);
    if (s == 0) rollup_set_no_users(ro, 1); /* facts: see kpi_new */
    *stores[s] = ro;
  }
  if (r.pos != r.n) goto fail;
  *out = k;
  return 0;
fail:
  kpi_free(k);
  return -EBADMSG;
}
