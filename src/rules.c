/* rules: the engine — per-event evaluation, history, timers, caps, merges (see rules.h). */
#include "rules.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "profile.h"
#include "rules_int.h"
#include "util/mem.h"

enum { V_NONE, V_NUM, V_STR, V_BOOL };

typedef struct val {
  int t;
  double n;
  const char *s;
  size_t len;
} val_t;

/* What an expression is evaluated against. */
typedef struct ctx {
  rules_t *r;
  const rules_event_t *ev;
  ustate_t *u;
  val_t *lets;
} ctx_t;

#define SAMPLE 8

/* ---- users ---- */

static size_t map_find_pos(const rules_t *r, uint64_t key) {
  size_t m = r->map_cap - 1;
  for (size_t i = (size_t)XXH3_64bits(&key, 8) & m;; i = (i + 1) & m) {
    uint32_t v = r->map[i];
    if (!v || r->users[v - 1]->key == key) return i;
  }
}

ustate_t *rules_user_find(rules_t *r, uint64_t key) {
  uint32_t v = r->map[map_find_pos(r, key)];
  return v ? r->users[v - 1] : NULL;
}

void rules_timer_free(utimer_t *t) {
  free(t->uid);
  free(t->aid);
  for (int i = 0; i < t->npay; i++) free(t->payloads[i]);
  free(t->payloads);
}

static void user_free(rules_t *r, ustate_t *u) {
  for (uint32_t i = 0; i < u->ntm; i++) rules_timer_free(&u->tm[i]);
  for (uint32_t i = 0; i < u->nrs; i++) free(u->rs[i].fires);
  r->ntimers -= u->ntm;
  free(u->tm);
  free(u->rs);
  free(u->hist);
  free(u->uid);
  free(u->aid);
  free(u);
}

/* Delete map slot i with backward shift (linear probing). */
static void map_delete(rules_t *r, size_t i) {
  size_t m = r->map_cap - 1;
  r->map[i] = 0;
  for (size_t j = (i + 1) & m; r->map[j]; j = (j + 1) & m) {
    uint32_t v = r->map[j];
    size_t home = (size_t)XXH3_64bits(&r->users[v - 1]->key, 8) & m;
    /* move v to i when its home is not in (i, j] (cyclically) */
    if ((j > i && (home <= i || home > j)) || (j < i && home <= i && home > j)) {
      r->map[i] = v;
      r->map[j] = 0;
      i = j;
    }
  }
}

void rules_user_remove(rules_t *r, ustate_t *u) {
  size_t pos = map_find_pos(r, u->key);
  uint32_t v = r->map[pos];
  map_delete(r, pos);
  size_t last = r->nusers - 1;
  if (v - 1 != last) {
    r->users[v - 1] = r->users[last];
    r->map[map_find_pos(r, r->users[v - 1]->key)] = v;
  }
  r->nusers--;
  user_free(r, u);
}

static void free_users(rules_t *r) {
  for (size_t i = 0; i < r->nusers; i++) user_free(r, r->users[i]);
  r->nusers = 0;
}

void rules_users_clear(rules_t *r) {
  free_users(r);
  memset(r->map, 0, r->map_cap * sizeof *r->map);
  r->nheap = 0;
  r->ntimers = 0;
}

ustate_t *rules_user_add(rules_t *r, uint64_t key) {
  if (r->nusers >= r->o.max_users) {
    ustate_t *victim = NULL;
    for (int k = 0; k < SAMPLE; k++) {
      ustate_t *c = r->users[r->hand++ % r->nusers];
      if (!victim || c->last_us < victim->last_us) victim = c;
    }
    r->st.timers_dropped += victim->ntm;
    r->st.evicted++;
    rules_user_remove(r, victim);
  }
  ustate_t *u = xcalloc(1, sizeof *u);
  u->key = key;
  r->users[r->nusers++] = u;
  r->map[map_find_pos(r, key)] = (uint32_t)r->nusers;
  return u;
}

/* ---- timers heap ---- */

static int heap_less(const heap_ent_t *a, const heap_ent_t *b) {
  return a->deadline_us < b->deadline_us ||
         (a->deadline_us == b->deadline_us && a->offset < b->offset);
}

static void heap_add(rules_t *r, int64_t deadline_us, uint64_t user, uint64_t fp, uint64_t offset);

/* Entries of cancelled, moved or dropped timers stay in the heap until due; when they
 * outnumber the live timers the heap is rebuilt from the users' timers. */
static void heap_compact(rules_t *r) {
  r->nheap = 0;
  for (size_t i = 0; i < r->nusers; i++) {
    const ustate_t *u = r->users[i];
    for (uint32_t k = 0; k < u->ntm; k++)
      heap_add(r, u->tm[k].deadline_us, u->key, u->tm[k].fp, u->tm[k].offset);
  }
}

void rules_heap_push(rules_t *r, int64_t deadline_us, uint64_t user, uint64_t fp, uint64_t offset) {
  if (r->nheap >= 2 * r->ntimers + 1024) heap_compact(r);
  heap_add(r, deadline_us, user, fp, offset);
}

static void heap_add(rules_t *r, int64_t deadline_us, uint64_t user, uint64_t fp, uint64_t offset) {
  if (r->nheap == r->capheap) {
    r->capheap = r->capheap ? r->capheap * 2 : 64;
    r->heap = xrealloc(r->heap, r->capheap * sizeof *r->heap);
  }
  size_t i = r->nheap++;
  heap_ent_t e = {deadline_us, user, fp, offset};
  while (i && heap_less(&e, &r->heap[(i - 1) / 2])) {
    r->heap[i] = r->heap[(i - 1) / 2];
    i = (i - 1) / 2;
  }
  r->heap[i] = e;
}

static void heap_pop(rules_t *r) {
  heap_ent_t e = r->heap[--r->nheap];
  size_t i = 0;
  for (;;) {
    size_t c = 2 * i + 1;
    if (c >= r->nheap) break;
    if (c + 1 < r->nheap && heap_less(&r->heap[c + 1], &r->heap[c])) c++;
    if (!heap_less(&r->heap[c], &e)) break;
    r->heap[i] = r->heap[c];
    i = c;
  }
  if (r->nheap) r->heap[i] = e;
}

/* ---- lifetime ---- */

static int cmp_fp(const void *a, const void *b) {
  uint64_t x = ((const fpidx_t *)a)->fp, y = ((const fpidx_t *)b)->fp;
  return x < y ? -1 : x > y;
}

int rules_rule_by_fp(const rules_t *r, uint64_t fp) {
  size_t lo = 0, hi = r->set->nrules;
  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    if (r->rule_fps[mid].fp < fp) lo = mid + 1;
    else hi = mid;
  }
  return lo < r->set->nrules && r->rule_fps[lo].fp == fp ? r->rule_fps[lo].idx : -1;
}

rules_t *rules_new(const rules_opts_t *o) {
  rules_opts_t d = o ? *o : (rules_opts_t){0};
  if (!d.max_users) d.max_users = 100000;
  if (!d.history_per_user) d.history_per_user = 64;
  if (!d.rules_per_user) d.rules_per_user = 32;
  if (!d.timers_per_user) d.timers_per_user = 8;
  if (d.max_users > (1u << 26) || d.history_per_user > 4096 || d.rules_per_user > 1024 ||
      d.timers_per_user > 256)
    return NULL;
  rules_t *r = xcalloc(1, sizeof *r);
  r->o = d;
  r->map_cap = 16;
  while (r->map_cap < d.max_users * 2) r->map_cap *= 2;
  r->map = xcalloc(r->map_cap, sizeof *r->map);
  r->users = xcalloc(d.max_users, sizeof *r->users);
  char err[8];
  rules_src_t none = {"empty", "", 0};
  rules_swap(r, rules_set_parse(&none, 1, err, sizeof err));
  return r;
}

void rules_free(rules_t *r) {
  if (!r) return;
  free_users(r); /* not rules_users_clear: the map is freed, not cleared (it can be large) */
  free(r->users);
  free(r->map);
  free(r->heap);
  free(r->rule_fps);
  free(r->vals);
  free(r->scanned);
  rules_set_free(r->set);
  free(r);
}

size_t rules_swap(rules_t *r, rules_set_t *s) {
  rules_set_t *old = r->set;
  for (size_t i = 0; old && i < s->nrules; i++) {
    int k = rules_rule_by_fp(r, s->rules[i].fp); /* r->rule_fps still indexes old */
    if (k >= 0) {
      s->rules[i].limit_start_us = old->rules[k].limit_start_us;
      s->rules[i].limit_count = old->rules[k].limit_count;
    }
  }
  if (old && old->nalerts && s->nalerts) {
    fpidx_t *a = xmalloc(old->nalerts * sizeof *a);
    for (size_t k = 0; k < old->nalerts; k++) a[k] = (fpidx_t){old->alerts[k].fp, (int)k};
    qsort(a, old->nalerts, sizeof *a, cmp_fp);
    for (size_t i = 0; i < s->nalerts; i++) {
      fpidx_t key = {s->alerts[i].fp, 0}, *hit = bsearch(&key, a, old->nalerts, sizeof *a, cmp_fp);
      if (hit) s->alerts[i].st = old->alerts[hit->idx].st;
    }
    free(a);
  }
  r->set = s;
  rules_set_free(old);
  free(r->rule_fps);
  r->rule_fps = xmalloc((s->nrules + 1) * sizeof *r->rule_fps);
  for (size_t i = 0; i < s->nrules; i++) r->rule_fps[i] = (fpidx_t){s->rules[i].fp, (int)i};
  qsort(r->rule_fps, s->nrules, sizeof *r->rule_fps, cmp_fp);
  if (r->vals_cap < s->npaths + 1) {
    r->vals_cap = s->npaths + 1;
    free(r->vals);
    r->vals = xmalloc(r->vals_cap * sizeof *r->vals);
  }
  if (r->scanned_cap < s->nchunks + 1) {
    r->scanned_cap = s->nchunks + 1;
    free(r->scanned);
    r->scanned = xmalloc(r->scanned_cap);
  }
  return s->nrules;
}

long rules_reload_dir(rules_t *r, const char *dir, char *err, size_t errlen) {
  rules_set_t *s = rules_set_load_dir(dir, err, errlen);
  return s ? (long)rules_swap(r, s) : -EINVAL;
}

long rules_reload_text(rules_t *r, const char *name, const char *text, size_t len, char *err,
                       size_t errlen) {
  rules_src_t src = {name, text, len};
  rules_set_t *s = rules_set_parse(&src, 1, err, errlen);
  return s ? (long)rules_swap(r, s) : -EINVAL;
}

const rules_set_t *rules_current(const rules_t *r) { return r->set; }

/* ---- values ---- */

static int truthy(val_t v) {
  switch (v.t) {
  case V_NUM:
  case V_BOOL: return v.n != 0;
  case V_STR: return v.len > 0;
  default: return 0;
  }
}

static val_t num(double n) { return (val_t){V_NUM, n, NULL, 0}; }
static val_t boolean(int b) { return (val_t){V_BOOL, b != 0, NULL, 0}; }
static const val_t none = {V_NONE, 0, NULL, 0};

static val_t field(ctx_t *c, int idx) {
  rules_t *r = c->r;
  const rules_event_t *ev = c->ev;
  if (!ev->json) return none;
  size_t chunk = (size_t)idx / JSCAN_MAX_PATHS;
  if (!r->scanned[chunk]) {
    int rc = jscan_scan(r->set->chunks[chunk], ev->json, ev->json_len, r->vals + chunk * JSCAN_MAX_PATHS);
    r->scanned[chunk] = rc == 0 ? 1 : 2;
  }
  if (r->scanned[chunk] != 1) return none;
  const jscan_val_t *v = &r->vals[idx];
  switch (v->type) {
  case JSCAN_NUMBER: return num(v->num);
  case JSCAN_TRUE: return boolean(1);
  case JSCAN_FALSE: return boolean(0);
  case JSCAN_STRING:
    if (!v->escaped) return (val_t){V_STR, 0, v->p, v->n};
    if (r->scratch_used + v->n + 1 <= sizeof r->scratch) {
      char *d = r->scratch + r->scratch_used;
      long n = jscan_string(v, d, v->n + 1);
      if (n >= 0) {
        r->scratch_used += (size_t)n + 1;
        return (val_t){V_STR, 0, d, (size_t)n};
      }
    }
    return none;
  default: return none;
  }
}

static val_t str_val(const char *s) { return s ? (val_t){V_STR, 0, s, strlen(s)} : none; }

static val_t profile_field(const ctx_t *c, int idx) {
  const rules_profile_t *p = c->ev ? c->ev->profile : NULL;
  if (idx == PF_CONSENT) return boolean(c->u ? c->u->consent : 0);
  if (!p) return none;
  switch (idx) {
  case PF_EVENTS: return num(p->events);
  case PF_PAGE_VIEWS: return num(p->page_views);
  case PF_SESSIONS: return num(p->sessions);
  case PF_ORDERS: return num(p->orders);
  case PF_REVENUE: return num(p->revenue);
  case PF_FIRST_SEEN: return p->first_seen_us ? num((double)(p->first_seen_us / 1000000)) : none;
  case PF_LAST_SEEN: return p->last_seen_us ? num((double)(p->last_seen_us / 1000000)) : none;
  case PF_DEVICE: return str_val(p->device);
  case PF_COUNTRY: return str_val(p->country);
  case PF_IDENTIFIED: return boolean(p->identified);
  default: return none;
  }
}

static int val_eq(val_t a, val_t b) {
  if (a.t != b.t) return 0;
  if (a.t == V_STR) return a.len == b.len && !memcmp(a.s, b.s, a.len);
  return a.t == V_NONE || a.n == b.n;
}

static int compare(int op, val_t a, val_t b) {
  switch (op) {
  case CMP_EQ: return val_eq(a, b);
  case CMP_NE: return !val_eq(a, b);
  case CMP_PREFIX:
  case CMP_SUFFIX:
  case CMP_CONTAINS:
    if (a.t != V_STR || b.t != V_STR || b.len > a.len) return 0;
    if (op == CMP_PREFIX) return !memcmp(a.s, b.s, b.len);
    if (op == CMP_SUFFIX) return !memcmp(a.s + a.len - b.len, b.s, b.len);
    return b.len == 0 || memmem(a.s, a.len, b.s, b.len) != NULL;
  default: break;
  }
  int d;
  if (a.t == V_NUM && b.t == V_NUM) d = a.n < b.n ? -1 : a.n > b.n;
  else if (a.t == V_STR && b.t == V_STR) {
    size_t n = a.len < b.len ? a.len : b.len;
    d = memcmp(a.s, b.s, n);
    if (!d) d = a.len < b.len ? -1 : a.len > b.len;
  } else return 0;
  return op == CMP_LT ? d < 0 : op == CMP_LE ? d <= 0 : op == CMP_GT ? d > 0 : d >= 0;
}

/* Hash of key values (equal values hash equally, whatever their source). */
static uint64_t key_hash(const val_t *v, int n) {
  uint64_t h = 0x5bd1e995u;
  for (int i = 0; i < n; i++) {
    if (v[i].t == V_STR) h = XXH3_64bits_withSeed(v[i].s, v[i].len, h ^ 1);
    else {
      double d = v[i].n == 0 ? 0 : v[i].n;
      h = XXH3_64bits_withSeed(&d, sizeof d, h ^ (uint64_t)(v[i].t + 1));
    }
  }
  return h;
}

static val_t eval(ctx_t *c, const expr_t *e);

/* The key of a pattern use: the let values it compares with; 0 with *ok = 0 when one
 * is missing (nothing can match). */
static uint64_t use_key(ctx_t *c, const pat_use_t *u, int *ok) {
  val_t v[8];
  *ok = 1;
  for (int i = 0; i < u->nkeys; i++) {
    v[i] = c->lets ? c->lets[u->vars[i]] : none;
    if (v[i].t == V_NONE) *ok = 0;
  }
  return key_hash(v, u->nkeys);
}

static long count_use(ctx_t *c, const pat_use_t *pu) {
  int ok;
  uint64_t key = use_key(c, pu, &ok);
  if (!ok || !c->u) return 0;
  uint64_t fp = c->r->set->pats[pu->pat].fp;
  int64_t now = c->ev->t_us, from = now - pu->window_us;
  long n = 0;
  for (uint32_t i = 0; i < c->u->hn; i++) {
    const hrec_t *h = &c->u->hist[i];
    n += h->pat == fp && h->key == key && h->t_us > from && h->t_us <= now;
  }
  return n;
}

/* Steps in order of arrival, each no earlier than the previous, all within the window. */
static int sequence(ctx_t *c, const expr_t *e) {
  if (!c->u) return 0;
  int64_t now = c->ev->t_us, tprev = now - e->uses[0].window_us + 1;
  long pos = -1;
  for (int s = 0; s < e->nuses; s++) {
    int ok;
    uint64_t key = use_key(c, &e->uses[s], &ok);
    if (!ok) return 0;
    uint64_t fp = c->r->set->pats[e->uses[s].pat].fp;
    long found = -1;
    for (uint32_t i = (uint32_t)(pos + 1); i < c->u->hn; i++) {
      const hrec_t *h = &c->u->hist[i];
      if (h->pat == fp && h->key == key && h->t_us >= tprev && h->t_us <= now) {
        found = i;
        break;
      }
    }
    if (found < 0) return 0;
    pos = found;
    tprev = c->u->hist[found].t_us;
  }
  return 1;
}

static val_t eval_time(const ctx_t *c, int idx) {
  int64_t s = c->ev->t_us / 1000000;
  if (c->ev->t_us < 0 && c->ev->t_us % 1000000) s--;
  int64_t day = s >= 0 ? s / 86400 : (s - 86399) / 86400, sec = s - day * 86400;
  switch (idx) {
  case TF_HOUR: return num((double)(sec / 3600));
  case TF_MINUTE: return num((double)(sec / 60 % 60));
  case TF_WEEKDAY: return num((double)(((day % 7 + 7) % 7 + 3) % 7 + 1)); /* 1 = Monday */
  default: return num((double)s);
  }
}

static val_t eval(ctx_t *c, const expr_t *e) {
  switch (e->kind) {
  case E_NUM: return num(e->num);
  case E_STR: return (val_t){V_STR, 0, e->str, e->len};
  case E_BOOL: return boolean(e->num != 0);
  case E_NULL: return none;
  case E_FIELD: return field(c, e->idx);
  case E_VAR: return c->lets ? c->lets[e->idx] : none;
  case E_PROF: return profile_field(c, e->idx);
  case E_TIME: return eval_time(c, e->idx);
  case E_NOT: return boolean(!truthy(eval(c, e->kids[0])));
  case E_NEG: {
    val_t v = eval(c, e->kids[0]);
    return v.t == V_NUM ? num(-v.n) : none;
  }
  case E_AND: return boolean(truthy(eval(c, e->kids[0])) && truthy(eval(c, e->kids[1])));
  case E_OR: return boolean(truthy(eval(c, e->kids[0])) || truthy(eval(c, e->kids[1])));
  case E_CMP: return boolean(compare(e->op, eval(c, e->kids[0]), eval(c, e->kids[1])));
  case E_IN: {
    val_t v = eval(c, e->kids[0]);
    for (int i = 1; i < e->nkids; i++)
      if (val_eq(v, eval(c, e->kids[i]))) return boolean(1);
    return boolean(0);
  }
  case E_ARITH: {
    val_t a = eval(c, e->kids[0]), b = eval(c, e->kids[1]);
    if (a.t != V_NUM || b.t != V_NUM) return none;
    double v = e->op == '+' ? a.n + b.n : e->op == '-' ? a.n - b.n : e->op == '*' ? a.n * b.n
               : b.n != 0 ? a.n / b.n : NAN;
    return isfinite(v) ? num(v) : none;
  }
  case E_COUNT: return num((double)count_use(c, &e->uses[0]));
  case E_SEEN: return boolean(count_use(c, &e->uses[0]) > 0);
  case E_SEQ: return boolean(sequence(c, e));
  case E_SEGMENT: {
    const rules_profile_t *p = c->ev->profile;
    for (size_t i = 0; p && i < p->nsegments; i++)
      if (p->segments[i] && !strcmp(p->segments[i], e->str)) return boolean(1);
    return boolean(0);
  }
  case E_COUNTER: {
    const rules_profile_t *p = c->ev->profile;
    if (!p) return none;
    for (size_t i = 0; i < p->ncounters; i++)
      if (p->counter_names[i] && !strcmp(p->counter_names[i], e->str)) return num(p->counter_values[i]);
    return num(0);
  }
  case E_EXISTS: return boolean(eval(c, e->kids[0]).t != V_NONE);
  default: return none;
  }
}

/* ---- actions ---- */

static void json_str(buf_t *b, const char *s, size_t n) {
  buf_putc(b, '"');
  buf_json_escape(b, s, n);
  buf_putc(b, '"');
}

static void render_value(buf_t *b, val_t v) {
  switch (v.t) {
  case V_STR: {
    size_t n = v.len;
    if (n > RULES_VALUE_MAX) {
      n = RULES_VALUE_MAX;
      while (n && ((unsigned char)v.s[n] & 0xc0) == 0x80) n--; /* a character boundary */
    }
    json_str(b, v.s, n);
    break;
  }
  case V_NUM:
    if (v.n == floor(v.n) && fabs(v.n) < 1e15) buf_printf(b, "%lld", (long long)v.n);
    else buf_printf(b, "%.17g", v.n);
    break;
  case V_BOOL: buf_puts(b, v.n ? "true" : "false"); break;
  default: buf_puts(b, "null");
  }
}

static char *render_payload(ctx_t *c, const rule_action_t *a) {
  buf_t b = BUF_INIT;
  buf_putc(&b, '{');
  for (int i = 0; i < a->nfields; i++) {
    if (i) buf_putc(&b, ',');
    json_str(&b, a->fields[i].key, strlen(a->fields[i].key));
    buf_putc(&b, ':');
    render_value(&b, eval(c, a->fields[i].val));
  }
  buf_putc(&b, '}');
  return b.data;
}

static rstate_t *rstate_get(rules_t *r, ustate_t *u, uint64_t fp, int create) {
  for (uint32_t i = 0; i < u->nrs; i++)
    if (u->rs[i].fp == fp) return &u->rs[i];
  if (!create) return NULL;
  if (u->nrs >= r->o.rules_per_user) {
    /* drop the state fired longest ago */
    uint32_t v = 0;
    for (uint32_t i = 1; i < u->nrs; i++) {
      int64_t a = u->rs[i].nf ? u->rs[i].fires[u->rs[i].nf - 1] : u->rs[i].session_us;
      int64_t b = u->rs[v].nf ? u->rs[v].fires[u->rs[v].nf - 1] : u->rs[v].session_us;
      if (a < b) v = i;
    }
    free(u->rs[v].fires);
    u->rs[v] = u->rs[--u->nrs];
  } else {
    u->rs = xrealloc(u->rs, (u->nrs + 1) * sizeof *u->rs);
  }
  rstate_t *s = &u->rs[u->nrs++];
  memset(s, 0, sizeof *s);
  s->fp = fp;
  return s;
}

/* Consent, caps and the rate limit: 1 when the rule may fire at t for u. */
static int allowed(rules_t *r, rule_t *ru, ustate_t *u, int64_t t) {
  if (!u->consent) {
    r->st.skipped_consent++;
    return 0;
  }
  rstate_t *s = ru->cap_scope ? rstate_get(r, u, ru->fp, 0) : NULL;
  if (s && ru->cap_scope == CAP_USER) {
    uint32_t k = 0;
    while (k < s->nf && s->fires[k] <= t - ru->cap_window_us) k++;
    memmove(s->fires, s->fires + k, (s->nf - k) * sizeof *s->fires);
    s->nf -= k;
    if (s->nf >= ru->cap_n) {
      r->st.skipped_cap++;
      return 0;
    }
  } else if (s && ru->cap_scope == CAP_SESSION) {
    if (s->session_us == u->session_us && s->session_n >= ru->cap_n) {
      r->st.skipped_cap++;
      return 0;
    }
  }
  if (ru->limit_n) {
    int64_t start = t - (((t % ru->limit_per_us) + ru->limit_per_us) % ru->limit_per_us);
    if (start != ru->limit_start_us) {
      ru->limit_start_us = start;
      ru->limit_count = 0;
    }
    if (ru->limit_count >= ru->limit_n) {
      r->st.skipped_limit++;
      return 0;
    }
  }
  return 1;
}

void rules_rstate_add_fire(rstate_t *s, int64_t t) {
  if (s->nf == RULES_CAP_MAX) memmove(s->fires, s->fires + 1, --s->nf * sizeof *s->fires);
  if (s->nf == s->capf) {
    s->capf = s->capf ? s->capf * 2 : 1;
    if (s->capf > RULES_CAP_MAX) s->capf = RULES_CAP_MAX;
    s->fires = xrealloc(s->fires, s->capf * sizeof *s->fires);
  }
  uint32_t k = s->nf++;
  while (k && s->fires[k - 1] > t) {
    s->fires[k] = s->fires[k - 1];
    k--;
  }
  s->fires[k] = t;
}

static void record_fire(rules_t *r, rule_t *ru, ustate_t *u, int64_t t) {
  if (ru->limit_n) ru->limit_count++;
  if (!ru->cap_scope) return;
  rstate_t *s = rstate_get(r, u, ru->fp, 1);
  if (ru->cap_scope == CAP_USER) rules_rstate_add_fire(s, t);
  if (s->session_us != u->session_us) {
    s->session_us = u->session_us;
    s->session_n = 0;
  }
  s->session_n++;
}

/* "<16 hex>-<16 hex>" (action.h), without printf's cost. */
static void format_key(char out[ACTION_KEY_MAX], uint64_t a, uint64_t b) {
  static const char hex[] = "0123456789abcdef";
  for (int i = 0; i < 16; i++) {
    out[15 - i] = hex[(a >> (4 * i)) & 15];
    out[32 - i] = hex[(b >> (4 * i)) & 15];
  }
  out[16] = '-';
  out[33] = 0;
}

/* Decide rule ru for u at t: payloads are given (a timer) or rendered from c. */
static int fire(rules_t *r, rule_t *ru, ustate_t *u, int64_t t, uint64_t offset, const char *uid,
                const char *aid, char *const *payloads, ctx_t *c) {
  if (!allowed(r, ru, u, t)) return 0;
  char ident[17];
  const char *who = uid ? uid : aid;
  if (!who) {
    snprintf(ident, sizeof ident, "%016llx", (unsigned long long)u->key);
    who = ident;
  }
  int n = 0;
  for (int i = 0; i < ru->nactions; i++) {
    const rule_action_t *a = &ru->actions[i];
    char *own = payloads ? NULL : render_payload(c, a);
    action_t act = {
        .kind = (action_kind_t)a->kind,
        .rule = ru->name,
        .target = a->target,
        .payload = payloads ? payloads[i] : own,
        .user_id = uid,
        .anonymous_id = aid,
        .decided_us = t,
        .offset = offset,
        .consent_marketing = 1,
    };
    uint64_t seed = ru->name_h ^ ((uint64_t)i * 0x9e3779b97f4a7c15ull);
    uint64_t h = XXH3_64bits_withSeed(who, strlen(who), seed);
    format_key(act.key, h, offset);
    r->st.actions++;
    n++;
    if (r->o.sink && r->o.sink(r->o.sink_ud, &act) < 0) r->st.sink_errors++;
    free(own);
  }
  r->st.fired++;
  record_fire(r, ru, u, t);
  return n;
}

static void timer_remove(rules_t *r, ustate_t *u, uint32_t i) {
  rules_timer_free(&u->tm[i]);
  u->tm[i] = u->tm[--u->ntm];
  r->ntimers--;
}

static int fire_timers(rules_t *r, int64_t before_us) {
  int n = 0;
  while (r->nheap && r->heap[0].deadline_us < before_us) {
    heap_ent_t e = r->heap[0];
    heap_pop(r);
    ustate_t *u = rules_user_find(r, e.user);
    if (!u) continue;
    for (uint32_t i = 0; i < u->ntm; i++) {
      utimer_t *t = &u->tm[i];
      if (t->fp != e.fp || t->offset != e.offset || t->deadline_us != e.deadline_us) continue;
      int ri = rules_rule_by_fp(r, t->fp);
      if (ri < 0) {
        r->st.timers_dropped++;
      } else {
        r->st.timers_fired++;
        n += fire(r, &r->set->rules[ri], u, t->deadline_us, t->offset, t->uid, t->aid,
                  t->payloads, NULL);
      }
      timer_remove(r, u, i);
      break;
    }
  }
  return n;
}

int rules_advance(rules_t *r, int64_t now_us) {
  return fire_timers(r, now_us);
}

/* ---- events ---- */

static char *dup_or_null(const char *s) { return s ? xstrndup(s, strnlen(s, PROFILE_ID_MAX)) : NULL; }

static void set_id(char **slot, const char *s) {
  if (!s || !*s) return;
  if (*slot && !strcmp(*slot, s)) return;
  free(*slot);
  *slot = dup_or_null(s);
}

static void hist_add(rules_t *r, ustate_t *u, const hrec_t *h) {
  if (u->hn == u->hcap) {
    /* drop expired records; still full: the oldest */
    uint32_t k = 0;
    for (uint32_t i = 0; i < u->hn; i++)
      if (u->hist[i].expires_us >= h->t_us) u->hist[k++] = u->hist[i];
    u->hn = k;
    if (u->hn == r->o.history_per_user) memmove(u->hist, u->hist + 1, --u->hn * sizeof *u->hist);
    if (u->hn == u->hcap) {
      u->hcap = u->hcap ? u->hcap * 2 : 4;
      if (u->hcap > r->o.history_per_user) u->hcap = (uint32_t)r->o.history_per_user;
      u->hist = xrealloc(u->hist, u->hcap * sizeof *u->hist);
    }
  }
  u->hist[u->hn++] = *h;
}

/* Record the event in the history of pattern pi and cancel the timers it satisfies. */
static void match_pattern(ctx_t *c, int pi) {
  const pattern_t *p = &c->r->set->pats[pi];
  if (p->cond && !truthy(eval(c, p->cond))) return;
  val_t v[8];
  for (int i = 0; i < p->nkeys; i++)
    if ((v[i] = field(c, p->key_fields[i])).t == V_NONE) return;
  hrec_t h = {c->ev->t_us, c->ev->t_us + p->max_window_us, p->fp, key_hash(v, p->nkeys)};
  hist_add(c->r, c->u, &h);
  for (uint32_t i = 0; i < c->u->ntm;) {
    utimer_t *t = &c->u->tm[i];
    if (t->cancel_pat == h.pat && t->cancel_key == h.key && t->armed_us <= h.t_us &&
        h.t_us <= t->deadline_us) {
      c->r->st.timers_cancelled++;
      timer_remove(c->r, c->u, i);
    } else {
      i++;
    }
  }
}

static void arm(ctx_t *c, rule_t *ru) {
  rules_t *r = c->r;
  ustate_t *u = c->u;
  for (uint32_t i = 0; i < u->ntm; i++)
    if (u->tm[i].fp == ru->fp) return; /* one pending timer per rule and user */
  if (u->ntm >= r->o.timers_per_user) {
    r->st.timers_dropped++;
    return;
  }
  int ok;
  uint64_t key = use_key(c, &ru->unless, &ok);
  u->tm = xrealloc(u->tm, (u->ntm + 1) * sizeof *u->tm);
  utimer_t *t = &u->tm[u->ntm++];
  memset(t, 0, sizeof *t);
  t->fp = ru->fp;
  t->armed_us = c->ev->t_us;
  t->deadline_us = c->ev->t_us + ru->wait_us;
  t->offset = c->ev->offset;
  t->cancel_pat = r->set->pats[ru->unless.pat].fp;
  t->cancel_key = ok ? key : ~key; /* a missing key value: nothing cancels */
  t->uid = dup_or_null(c->ev->user_id);
  t->aid = dup_or_null(c->ev->anonymous_id);
  t->npay = ru->nactions;
  t->payloads = xcalloc((size_t)ru->nactions, sizeof *t->payloads);
  for (int i = 0; i < ru->nactions; i++) t->payloads[i] = render_payload(c, &ru->actions[i]);
  r->ntimers++;
  r->st.timers_armed++;
  rules_heap_push(r, t->deadline_us, u->key, t->fp, t->offset);
}

static int triggered_by(const rule_t *ru, int type, const char *name) {
  for (int k = 0; k < ru->ntrig; k++)
    if (ru->trig[k].type == type && ru->trig[k].name && name && !strcmp(ru->trig[k].name, name))
      return 1;
  return 0;
}

int rules_event(rules_t *r, const rules_event_t *ev) {
  if (!ev || !ev->user || ev->type < 0 || ev->type >= PROFILE_TYPES ||
      (ev->json_len && !ev->json))
    return -EINVAL;
  r->st.events++;
  int n = fire_timers(r, ev->t_us);
  const rules_set_t *s = r->set;
  const char *name = ev->type == PROFILE_TRACK ? ev->name : NULL;
  const index_entry_t *ents[2] = {name ? rules_index_find(s, ev->type, name) : NULL,
                                  rules_index_find(s, ev->type, NULL)};
  ustate_t *u = rules_user_find(r, ev->user);
  if (!ents[0] && !ents[1]) {
    if (u) { /* keep what later timers need: the latest consent and session */
      u->consent = ev->consent_marketing != 0;
      u->session_us = ev->session_us;
    }
    return n;
  }
  memset(r->scanned, 0, s->nchunks);
  r->scratch_used = 0;
  if (!u) u = rules_user_add(r, ev->user);
  if (ev->t_us > u->last_us) u->last_us = ev->t_us;
  u->consent = ev->consent_marketing != 0;
  u->session_us = ev->session_us;
  set_id(&u->uid, ev->user_id);
  set_id(&u->aid, ev->anonymous_id);
  ctx_t c = {r, ev, u, NULL};
  for (int k = 0; k < 2; k++)
    for (int i = 0; ents[k] && i < ents[k]->npats; i++) match_pattern(&c, ents[k]->pats[i]);
  val_t lets[32];
  for (int k = 0; k < 2; k++)
    for (int i = 0; ents[k] && i < ents[k]->nrules; i++) {
      rule_t *ru = &s->rules[ents[k]->rules[i]];
      if (k == 1 && triggered_by(ru, ev->type, name)) continue; /* evaluated already */
      r->st.evaluated++;
      c.lets = NULL;
      for (int l = 0; l < ru->nlets; l++) {
        c.lets = lets;
        lets[l] = eval(&c, ru->lets[l]);
      }
      c.lets = lets;
      if (ru->when && !truthy(eval(&c, ru->when))) continue;
      if (ru->wait_us) arm(&c, ru);
      else n += fire(r, ru, u, ev->t_us, ev->offset, ev->user_id, ev->anonymous_id, NULL, &c);
    }
  return n;
}

/* ---- identity ---- */

static int cmp_hrec(const void *a, const void *b) {
  const hrec_t *x = a, *y = b;
  return x->t_us < y->t_us ? -1 : x->t_us > y->t_us;
}

int rules_merge(rules_t *r, uint64_t from, uint64_t into) {
  ustate_t *f = rules_user_find(r, from);
  if (!f) return -ENOENT;
  if (from == into) return 0;
  ustate_t *t = rules_user_find(r, into);
  if (!t) {
    /* a rename: re-key from's state */
    size_t slot = map_find_pos(r, from);
    uint32_t v = r->map[slot];
    map_delete(r, slot);
    f->key = into;
    r->map[map_find_pos(r, into)] = v;
    for (uint32_t i = 0; i < f->ntm; i++)
      rules_heap_push(r, f->tm[i].deadline_us, into, f->tm[i].fp, f->tm[i].offset);
    return 0;
  }
  /* history: interleave by time, keep the most recent */
  uint32_t total = f->hn + t->hn;
  hrec_t *h = xmalloc((total + 1) * sizeof *h);
  if (t->hn) memcpy(h, t->hist, t->hn * sizeof *h);
  if (f->hn) memcpy(h + t->hn, f->hist, f->hn * sizeof *h);
  qsort(h, total, sizeof *h, cmp_hrec);
  uint32_t keep = total < r->o.history_per_user ? total : (uint32_t)r->o.history_per_user;
  memmove(h, h + (total - keep), keep * sizeof *h);
  free(t->hist);
  t->hist = h;
  t->hn = keep;
  t->hcap = total + 1 < keep ? keep : total + 1;
  if (t->hcap > r->o.history_per_user) {
    t->hcap = (uint32_t)r->o.history_per_user;
    t->hist = xrealloc(t->hist, t->hcap * sizeof *h);
  }
  /* caps: fire times union (the most recent kept), session counts add in one session */
  for (uint32_t i = 0; i < f->nrs; i++) {
    rstate_t *a = &f->rs[i], *b = rstate_get(r, t, a->fp, 1);
    for (uint32_t k = 0; k < a->nf; k++) rules_rstate_add_fire(b, a->fires[k]);
    if (a->session_us == b->session_us) b->session_n += a->session_n;
    else if (a->session_us > b->session_us) b->session_us = a->session_us, b->session_n = a->session_n;
  }
  /* timers: move those of rules into has none pending for */
  for (uint32_t i = 0; i < f->ntm;) {
    int dup = 0;
    for (uint32_t k = 0; k < t->ntm; k++) dup |= t->tm[k].fp == f->tm[i].fp;
    if (dup || t->ntm >= r->o.timers_per_user) {
      r->st.timers_dropped += !dup;
      i++;
      continue;
    }
    t->tm = xrealloc(t->tm, (t->ntm + 1) * sizeof *t->tm);
    t->tm[t->ntm++] = f->tm[i];
    rules_heap_push(r, f->tm[i].deadline_us, into, f->tm[i].fp, f->tm[i].offset);
    f->tm[i] = f->tm[--f->ntm]; /* moved: not freed, still counted in ntimers */
  }
  if (f->last_us > t->last_us) {
    t->last_us = f->last_us;
    t->consent = f->consent;
    t->session_us = f->session_us;
  }
  if (!t->uid && f->uid) t->uid = f->uid, f->uid = NULL;
  if (!t->aid && f->aid) t->aid = f->aid, f->aid = NULL;
  rules_user_remove(r, f);
  return 0;
}

int rules_forget(rules_t *r, uint64_t key) {
  ustate_t *u = rules_user_find(r, key);
  if (!u) return -ENOENT;
  rules_user_remove(r, u);
  return 0;
}

void rules_stats(const rules_t *r, rules_stats_t *out) {
  *out = r->st;
  out->users = r->nusers;
}

int rules_idle(const rules_t *r) {
  return rules_set_rules(r->set) == 0 && r->nusers == 0 && r->nheap == 0;
}

size_t rules_memory(const rules_t *r) {
  size_t n = r->map_cap * sizeof *r->map + r->o.max_users * sizeof *r->users +
             r->capheap * sizeof *r->heap;
  for (size_t i = 0; i < r->nusers; i++) {
    const ustate_t *u = r->users[i];
    n += sizeof *u + u->hcap * sizeof *u->hist + u->nrs * sizeof *u->rs + u->ntm * sizeof *u->tm;
    for (uint32_t k = 0; k < u->nrs; k++) n += u->rs[k].capf * sizeof *u->rs[k].fires;
    for (uint32_t k = 0; k < u->ntm; k++)
      for (int j = 0; j < u->tm[k].npay; j++) n += strlen(u->tm[k].payloads[j]) + 1;
  }
  return n;
}
