/* decide: the rules engine inside the process stage, and its operations (see decide.h). */
#include "decide.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "util/clock.h"
#include "util/file.h"
#include "util/mem.h"
#include "webhook.h"

typedef struct alert_hist {
  int64_t t_us;
  double value;
  int firing;
} alert_hist_t;

/* What is counted per rule or alert name (names are unique across both in a set; kept
 * across reloads by name). */
typedef struct named {
  char *name;
  uint64_t fires;
  int64_t last_us;      /* decision time of the last fire, 0 never */
  uint64_t last_offset; /* a rule's actions of one decision count as one fire */
  int disabled;
  alert_hist_t *hist;   /* alerts: ring of DECIDE_ALERT_HISTORY, newest at (nhist-1) % N */
  size_t nhist;
} named_t;

struct decide {
  rules_t *r;
  char *dir, *disabled_path;
  action_sink_fn sink;
  void *sink_ud;
  rules_kpi_fn kpi;
  void *kpi_ud;
  rules_opts_t eo;
  named_t *rs;            /* records, in order of first use */
  size_t nrs, caprs;
  uint32_t *idx;          /* open addressing over rs by name hash: index + 1, 0 empty */
  size_t idxcap;          /* a power of two, at least twice nrs */
  uint64_t suppressed, stale, alert_webhook_errors;
  profile_store_t *ps;    /* where segment edits go (decide_bind_profiles) */
  char *segs[DECIDE_MAX_SEGMENTS]; /* segment names by bit */
  size_t nsegs;
  struct {
    char *segment;
    rollup_t *events;
    int64_t since_us;      /* wall clock when it started watching */
  } segr[DECIDE_SEGMENT_ROLLUPS];   /* one per segment an alert names (segment scopes) */
  size_t nsegr;
  size_t rollup_max_bytes; /* budget of each segment rollup, 0: none */
  uint64_t segment_edits, segments_refused;
};

/* ---- per-rule and per-alert records ---- */

static uint64_t name_hash(const char *name) { return XXH3_64bits(name, strlen(name)); }

/* The first empty slot of the probe sequence of h. */
static size_t empty_slot(const decide_t *d, uint64_t h) {
  size_t mask = d->idxcap - 1, i = h & mask;
  while (d->idx[i]) i = (i + 1) & mask;
  return i;
}

/* The record of name, created when absent. */
static named_t *named(decide_t *d, const char *name) {
  uint64_t h = name_hash(name);
  for (size_t i = h & (d->idxcap - 1); d->idxcap && d->idx[i]; i = (i + 1) & (d->idxcap - 1))
    if (!strcmp(d->rs[d->idx[i] - 1].name, name)) return &d->rs[d->idx[i] - 1];
  if (2 * (d->nrs + 1) > d->idxcap) { /* grow and rehash */
    free(d->idx);
    d->idxcap = d->idxcap ? d->idxcap * 2 : 64;
    d->idx = xcalloc(d->idxcap, sizeof *d->idx);
    for (size_t k = 0; k < d->nrs; k++) d->idx[empty_slot(d, name_hash(d->rs[k].name))] = (uint32_t)k + 1;
  }
  if (d->nrs == d->caprs) d->rs = xrealloc(d->rs, (d->caprs = d->caprs * 2 + 16) * sizeof *d->rs);
  named_t *e = &d->rs[d->nrs];
  memset(e, 0, sizeof *e);
  e->name = xstrdup(name);
  d->idx[empty_slot(d, h)] = (uint32_t)++d->nrs;
  return e;
}

static const rules_alert_t *find_alert(const rules_set_t *s, const char *name) {
  const rules_alert_t *a;
  for (size_t i = 0; (a = rules_set_alert(s, i)); i++)
    if (!strcmp(a->name, name)) return a;
  return NULL;
}

/* An alert's state change: remember it, post it to the alert's webhook. */
static int on_alert(decide_t *d, const action_t *a) {
  named_t *e = named(d, a->rule);
  if (!e->hist) e->hist = xcalloc(DECIDE_ALERT_HISTORY, sizeof *e->hist);
  const char *v = strstr(a->payload, "\"value\":");
  alert_hist_t *h = &e->hist[e->nhist++ % DECIDE_ALERT_HISTORY];
  h->t_us = a->decided_us;
  h->value = v ? strtod(v + 8, NULL) : NAN;
  h->firing = strstr(a->payload, "\"state\":\"firing\"") != NULL;
  const rules_alert_t *def = find_alert(rules_current(d->r), a->rule);
  if (!def || !def->webhook || !d->sink) return 0;
  action_t w = *a;
  w.kind = ACTION_WEBHOOK;
  w.target = def->webhook;
  w.consent_marketing = 1; /* an operational notice about the shop, not about a person */
  int rc = d->sink(d->sink_ud, &w);
  if (rc < 0) d->alert_webhook_errors++;
  return rc;
}

/* ---- segments ---- */

/* The bit of segment name; a new name gets the next free bit when create. -1: unknown
 * (not create) or no bit left. */
static int segment_bit(decide_t *d, const char *name, int create) {
  for (size_t i = 0; i < d->nsegs; i++)
    if (!strcmp(d->segs[i], name)) return (int)i;
  if (!create || d->nsegs == DECIDE_MAX_SEGMENTS || strlen(name) > 255) return -1;
  d->segs[d->nsegs] = xstrdup(name);
  return (int)d->nsegs++;
}

static int on_segment(decide_t *d, const action_t *a) {
  const char *id = a->user_id ? a->user_id : a->anonymous_id;
  int bit = segment_bit(d, a->target, a->kind == ACTION_SEGMENT_ADD);
  if (!d->ps || !id) return 0;
  if (bit < 0) {
    if (a->kind == ACTION_SEGMENT_ADD) d->segments_refused++;
    return a->kind == ACTION_SEGMENT_ADD ? -ENOSPC : 0;
  }
  uint64_t m = 1ull << bit;
  int rc = profile_segments(d->ps, id, 0, a->kind == ACTION_SEGMENT_ADD ? m : 0,
                            a->kind == ACTION_SEGMENT_REMOVE ? m : 0);
  if (rc == 0) d->segment_edits++;
  return rc;
}

void decide_bind_profiles(decide_t *d, profile_store_t *ps) {
  if (d) d->ps = ps;
}

/* ---- segment scopes of alerts ---- */

static void drop_segment_rollup(decide_t *d, size_t i) {
  free(d->segr[i].segment);
  rollup_free(d->segr[i].events);
  d->segr[i] = d->segr[--d->nsegr];
}

/* One rollup per segment the current alerts name: new ones start empty, unused ones go. */
static void sync_segment_rollups(decide_t *d, int64_t now_us) {
  const rules_set_t *s = rules_current(d->r);
  const rules_alert_t *a;
  for (size_t i = 0; i < d->nsegr;) {
    int used = 0;
    for (size_t k = 0; (a = rules_set_alert(s, k)) && !used; k++)
      used = a->segment && !strcmp(a->segment, d->segr[i].segment);
    if (used) i++;
    else drop_segment_rollup(d, i);
  }
  for (size_t k = 0; (a = rules_set_alert(s, k)); k++) {
    if (!a->segment || d->nsegr == DECIDE_SEGMENT_ROLLUPS) continue;
    size_t i = 0;
    while (i < d->nsegr && strcmp(d->segr[i].segment, a->segment)) i++;
    if (i < d->nsegr) continue;
    static const char *const dims[] = {PROCESS_DIMS};
    rollup_opts_t o = {.dims = dims, .ndims = PROCESS_NDIMS, .second_ring = 60,
                       .minute_ring = 1440, .hour_ring = 24, .max_bytes = d->rollup_max_bytes};
    d->segr[i].events = rollup_new(&o);
    d->segr[i].segment = xstrdup(a->segment);
    d->segr[i].since_us = now_us;
    d->nsegr++;
  }
}

/* The event of a person now in some watched segments goes into their rollups. */
static void feed_segment_rollups(decide_t *d, const evfields_t *e, const profile_t *prof) {
  for (size_t i = 0; i < d->nsegr; i++) {
    int bit = segment_bit(d, d->segr[i].segment, 0);
    if (bit >= 0 && (prof->segments >> bit & 1))
      rollup_add(d->segr[i].events, e->t_us, e->dims, e->user_hash, e->revenue);
  }
}

const rollup_t *decide_segment_events(const decide_t *d, const char *segment,
                                      int64_t window_us, int64_t now_us) {
  if (window_us > 86400LL * 1000000) return NULL;
  for (size_t i = 0; i < d->nsegr; i++)
    if (!strcmp(d->segr[i].segment, segment))
      return now_us - d->segr[i].since_us >= window_us ? d->segr[i].events : NULL;
  return NULL;
}

/* Counts a as a fire of its rule (a rule's actions of one decision count once). 0 when
 * the rule is switched off: a is dropped (suppressed). */
static int rule_fires(decide_t *d, const action_t *a) {
  named_t *e = named(d, a->rule);
  if (e->disabled) {
    d->suppressed++;
    return 0;
  }
  if (!e->fires || e->last_offset != a->offset || e->last_us != a->decided_us) e->fires++;
  e->last_offset = a->offset;
  e->last_us = a->decided_us;
  return 1;
}

static int on_action(void *ud, const action_t *a) {
  decide_t *d = ud;
  if (a->kind == ACTION_ALERT) return on_alert(d, a);
  int segment = a->kind == ACTION_SEGMENT_ADD || a->kind == ACTION_SEGMENT_REMOVE;
  if (!segment && a->decided_us < clock_wall_us() - DECIDE_MAX_AGE_US) {
    d->stale++; /* replayed history or an old event: decided, not carried out */
    return 0;
  }
  if (!rule_fires(d, a)) return 0;
  if (segment) return on_segment(d, a); /* state, applied however late (decide.h) */
  return d->sink ? d->sink(d->sink_ud, a) : 0;
}

/* ---- the switched-off rules file ---- */

static void load_disabled(decide_t *d) {
  if (!d->disabled_path) return;
  FILE *f = fopen(d->disabled_path, "r");
  if (!f) return;
  char line[RULES_VALUE_MAX];
  while (fgets(line, sizeof line, f)) {
    line[strcspn(line, "\n")] = 0;
    if (*line) named(d, line)->disabled = 1;
  }
  fclose(f);
}

static int save_disabled(const decide_t *d) {
  if (!d->disabled_path) return 0;
  buf_t b = BUF_INIT;
  buf_puts(&b, "");
  for (size_t i = 0; i < d->nrs; i++)
    if (d->rs[i].disabled) buf_printf(&b, "%s\n", d->rs[i].name);
  int rc = file_write_atomic(d->disabled_path, b.data, b.len, 0600);
  buf_free(&b);
  return rc;
}

/* ---- life cycle ---- */

decide_t *decide_new(const decide_opts_t *o, char *err, size_t errlen) {
  decide_t *d = xcalloc(1, sizeof *d);
  d->sink = o->sink, d->sink_ud = o->sink_ud;
  d->kpi = o->kpi, d->kpi_ud = o->kpi_ud;
  d->rollup_max_bytes = o->rollup_max_bytes;
  if (o->engine) d->eo = *o->engine;
  d->eo.sink = on_action;
  d->eo.sink_ud = d;
  if (o->rules_dir && *o->rules_dir) d->dir = xstrdup(o->rules_dir);
  if (o->state_dir) {
    size_t n = strlen(o->state_dir) + 32;
    d->disabled_path = xmalloc(n);
    snprintf(d->disabled_path, n, "%s/rules-disabled", o->state_dir);
  }
  if (!(d->r = rules_new(&d->eo))) {
    snprintf(err, errlen, "rules engine bounds out of range");
    goto fail;
  }
  if (d->dir && decide_reload(d, err, errlen) < 0) goto fail;
  load_disabled(d);
  return d;
fail:
  decide_free(d);
  return NULL;
}

void decide_free(decide_t *d) {
  if (!d) return;
  rules_free(d->r);
  for (size_t i = 0; i < d->nrs; i++) {
    free(d->rs[i].name);
    free(d->rs[i].hist);
  }
  free(d->rs);
  free(d->idx);
  for (size_t i = 0; i < d->nsegs; i++) free(d->segs[i]);
  while (d->nsegr) drop_segment_rollup(d, 0);
  free(d->dir);
  free(d->disabled_path);
  free(d);
}

rules_t *decide_rules(decide_t *d) { return d->r; }

/* ---- hooks ---- */

uint64_t decide_key_before(const profile_store_t *ps, const evfields_t *e) {
  const char *id = e->type == PROFILE_ALIAS ? e->previous_id : e->user_id ? e->anonymous_id : NULL;
  if (!id) return 0;
  const profile_t *p = profile_get(ps, id, 0);
  return p ? p->id : 0;
}

void decide_event(decide_t *d, const evfields_t *e, const log_record_t *rec,
                  const char *const *kinds, const profile_t *prof, uint64_t key_before) {
  if (key_before && key_before != prof->id) rules_merge(d->r, key_before, prof->id);
  const char *names[PROFILE_KINDS];
  uint32_t counts[PROFILE_KINDS];
  size_t nc = 0;
  for (size_t i = 0; i < PROFILE_KINDS; i++)
    if (kinds[i]) names[nc] = kinds[i], counts[nc++] = prof->kind_count[i];
  const char *segnames[DECIDE_MAX_SEGMENTS];
  size_t nseg = 0;
  for (size_t i = 0; i < d->nsegs; i++)
    if (prof->segments >> i & 1) segnames[nseg++] = d->segs[i];
  rules_profile_t rp = {
      .events = prof->events,
      .page_views = prof->page_views,
      .sessions = prof->sessions,
      .orders = prof->orders,
      .revenue = (double)prof->revenue_cents / 100,
      .first_seen_us = (int64_t)prof->first_seen * 1000000,
      .last_seen_us = (int64_t)prof->last_seen * 1000000,
      .device = e->dims[7],
      .country = e->dims[6],
      .counter_names = names,
      .counter_values = counts,
      .ncounters = nc,
      .identified = (prof->flags & PROFILE_F_IDENTIFIED) != 0,
      .segments = segnames,
      .nsegments = nseg,
  };
  rules_event_t ev = {
      .t_us = e->t_us,
      .offset = rec->offset,
      .type = e->type,
      .name = e->type == PROFILE_TRACK ? e->dims[0] : NULL,
      .json = rec->value,
      .json_len = rec->value_len,
      .user = prof->id,
      .user_id = e->user_id,
      .anonymous_id = e->anonymous_id,
      .consent_marketing = e->consent_marketing,
      .session_us = (int64_t)prof->session_start * 1000000,
      .profile = &rp,
  };
  rules_event(d->r, &ev);
  if (d->nsegr) feed_segment_rollups(d, e, prof);
}

int decide_idle(const decide_t *d) {
  return d->nsegs == 0 && d->nsegr == 0 && rules_idle(d->r);
}

void decide_tick(decide_t *d, int64_t watermark_us, int64_t wall_us, int caught_up) {
  if (!caught_up) {
    rules_advance(d->r, watermark_us);
    return;
  }
  rules_advance(d->r, wall_us > watermark_us ? wall_us : watermark_us);
  sync_segment_rollups(d, wall_us);
  if (d->kpi) rules_alerts_tick(d->r, wall_us, d->kpi, d->kpi_ud);
}

size_t decide_serialize(const decide_t *d, buf_t *out) {
  size_t start = out->len;
  char z[4] = {0};
  buf_append(out, z, 4);
  size_t n = rules_serialize(d->r, out);
  for (int k = 0; k < 4; k++) out->data[start + k] = (char)(n >> (8 * k));
  unsigned char c = (unsigned char)d->nsegs;
  buf_append(out, &c, 1);
  for (size_t i = 0; i < d->nsegs; i++) {
    c = (unsigned char)strlen(d->segs[i]);
    buf_append(out, &c, 1);
    buf_append(out, d->segs[i], c);
  }
  return out->len - start;
}

int decide_deserialize(decide_t *d, const void *p, size_t n) {
  const unsigned char *b = p;
  if (n < 5) return -EBADMSG;
  size_t rl = (size_t)b[0] | (size_t)b[1] << 8 | (size_t)b[2] << 16 | (size_t)b[3] << 24;
  if (rl > n - 5) return -EBADMSG;
  size_t at = 4 + rl, count = b[at++];
  if (count > DECIDE_MAX_SEGMENTS) return -EBADMSG;
  char *names[DECIDE_MAX_SEGMENTS];
  size_t got = 0;
  for (; got < count; got++) {
    if (at >= n || b[at] == 0 || b[at] > n - at - 1 || memchr(b + at + 1, 0, b[at])) break;
    names[got] = xmalloc((size_t)b[at] + 1);
    memcpy(names[got], b + at + 1, b[at]);
    names[got][b[at]] = 0;
    at += 1 + (size_t)b[at];
  }
  int rc = got == count && at == n ? rules_deserialize(d->r, b + 4, rl) : -EBADMSG;
  if (rc != 0) {
    for (size_t i = 0; i < got; i++) free(names[i]);
    return rc;
  }
  for (size_t i = 0; i < d->nsegs; i++) free(d->segs[i]);
  memcpy(d->segs, names, got * sizeof *names);
  d->nsegs = got;
  return 0;
}

void decide_reset(decide_t *d) {
  for (size_t i = 0; i < d->nsegs; i++) free(d->segs[i]);
  d->nsegs = 0;
  /* An empty engine's state reads the same at any size: the smallest one, not a default
   * 100,000-user table built and freed at every reset */
  rules_opts_t o = {.max_users = 1};
  rules_t *empty = rules_new(&o);
  buf_t b = BUF_INIT;
  rules_serialize(empty, &b);
  rules_deserialize(d->r, b.data, b.len);
  buf_free(&b);
  rules_free(empty);
}

/* ---- operations ---- */

long decide_reload(decide_t *d, char *err, size_t errlen) {
  if (!d->dir) return (long)rules_set_rules(rules_current(d->r));
  return rules_reload_dir(d->r, d->dir, err, errlen);
}

static int valid_file_name(const char *name) {
  size_t n = strlen(name);
  if (n < 7 || n > DECIDE_NAME_MAX || name[0] == '.' || strcmp(name + n - 6, ".rules")) return 0;
  for (size_t i = 0; i < n; i++)
    if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-", name[i]))
      return 0;
  return 1;
}

long decide_put_file(decide_t *d, const char *name, const char *text, size_t len,
                     int *invalid_rules, char *err, size_t errlen) {
  *invalid_rules = 0;
  if (!d->dir) {
    snprintf(err, errlen, "no rules-dir is configured");
    return -ENOENT;
  }
  if (!valid_file_name(name)) {
    snprintf(err, errlen, "file must be a plain name of [A-Za-z0-9_.-] ending in .rules");
    return -EINVAL;
  }
  rules_set_t *s = rules_set_load_dir_with(d->dir, name, text, len, err, errlen);
  if (!s) {
    *invalid_rules = 1;
    return -EINVAL;
  }
  size_t pl = strlen(d->dir) + strlen(name) + 2;
  char *path = xmalloc(pl);
  snprintf(path, pl, "%s/%s", d->dir, name);
  int rc = file_write_atomic(path, text, len, 0644);
  free(path);
  if (rc) {
    snprintf(err, errlen, "cannot write %s: %s", name, strerror(-rc));
    rules_set_free(s);
    return rc;
  }
  return (long)rules_swap(d->r, s);
}

int decide_set_enabled(decide_t *d, const char *rule, int enabled) {
  const rules_set_t *s = rules_current(d->r);
  const char *n;
  size_t i;
  for (i = 0; (n = rules_set_rule_name(s, i)); i++)
    if (!strcmp(n, rule)) break;
  if (!n) return -ENOENT;
  named_t *e = named(d, rule);
  int was = e->disabled;
  e->disabled = !enabled;
  int rc = save_disabled(d);
  if (rc) e->disabled = was;
  return rc;
}

size_t decide_endpoints(const decide_t *d, webhook_endpoint_t *out, size_t cap) {
  const rules_set_t *s = rules_current(d->r);
  const rules_webhook_t *w;
  size_t n = 0;
  for (size_t i = 0; n < cap && (w = rules_set_webhook(s, i)); i++)
    out[n++] = (webhook_endpoint_t){w->name, w->url, w->secret, (uint32_t)(w->timeout_us / 1000)};
  return n;
}

static void put_time(buf_t *b, int64_t us) {
  if (!us) {
    buf_puts(b, "null");
    return;
  }
  char iso[32];
  clock_format_iso(us, iso);
  buf_printf(b, "\"%s\"", iso);
}

/* A JSON string, or null for NULL. */
static void put_opt_str(buf_t *b, const char *v) {
  if (v) buf_json_str(b, v);
  else buf_puts(b, "null");
}

void decide_describe(const decide_t *d, buf_t *out) {
  decide_t *m = (decide_t *)d; /* named() may add a record: counters only */
  const rules_set_t *s = rules_current(d->r);
  const char *n;
  buf_puts(out, "{\"rules\":[");
  for (size_t i = 0; (n = rules_set_rule_name(s, i)); i++) {
    named_t *e = named(m, n);
    buf_puts(out, i ? ",{\"name\":" : "{\"name\":");
    buf_json_str(out, n);
    buf_printf(out, ",\"enabled\":%s,\"fires\":%llu,\"lastFire\":", e->disabled ? "false" : "true",
               (unsigned long long)e->fires);
    put_time(out, e->last_us);
    buf_putc(out, '}');
  }
  buf_puts(out, "],\"alerts\":[");
  const rules_alert_t *a;
  for (size_t i = 0; (a = rules_set_alert(s, i)); i++) {
    named_t *e = named(m, a->name);
    buf_puts(out, i ? ",{\"name\":" : "{\"name\":");
    buf_json_str(out, a->name);
    buf_puts(out, ",\"kpi\":");
    buf_json_str(out, a->kpi);
    buf_printf(out, ",\"above\":%s,\"threshold\":", a->above ? "true" : "false");
    buf_json_num(out, a->threshold);
    buf_puts(out, ",\"clear\":");
    buf_json_num(out, a->clear);
    buf_puts(out, ",\"segment\":");
    put_opt_str(out, a->segment);
    buf_puts(out, ",\"campaign\":");
    put_opt_str(out, a->campaign);
    buf_printf(out, ",\"windowSeconds\":%lld,\"firing\":%s,\"webhook\":",
               (long long)(a->window_us / 1000000), rules_alert_firing(d->r, a->name) == 1 ? "true" : "false");
    put_opt_str(out, a->webhook);
    buf_puts(out, ",\"history\":[");
    size_t k0 = e->nhist > DECIDE_ALERT_HISTORY ? e->nhist - DECIDE_ALERT_HISTORY : 0;
    for (size_t k = e->nhist; k-- > k0;) { /* newest first */
      const alert_hist_t *h = &e->hist[k % DECIDE_ALERT_HISTORY];
      buf_puts(out, k + 1 == e->nhist ? "{\"t\":" : ",{\"t\":");
      put_time(out, h->t_us);
      buf_printf(out, ",\"state\":\"%s\",\"value\":", h->firing ? "firing" : "resolved");
      buf_json_num(out, isfinite(h->value) ? h->value : 0);
      buf_putc(out, '}');
    }
    buf_puts(out, "]}");
  }
  buf_puts(out, "],\"webhooks\":[");
  const rules_webhook_t *w;
  for (size_t i = 0; (w = rules_set_webhook(s, i)); i++) {
    if (i) buf_putc(out, ',');
    buf_json_str(out, w->name);
  }
  rules_stats_t st;
  rules_stats(d->r, &st);
  buf_printf(out,
             "],\"stats\":{\"events\":%llu,\"actions\":%llu,\"suppressed\":%llu,\"stale\":%llu,"
             "\"skippedConsent\":%llu,\"skippedCap\":%llu,\"skippedLimit\":%llu,"
             "\"timersArmed\":%llu,\"timersFired\":%llu,\"timersCancelled\":%llu,"
             "\"users\":%llu,\"memoryBytes\":%zu}}",
             (unsigned long long)st.events, (unsigned long long)st.actions,
             (unsigned long long)d->suppressed, (unsigned long long)d->stale,
             (unsigned long long)st.skipped_consent,
             (unsigned long long)st.skipped_cap, (unsigned long long)st.skipped_limit,
             (unsigned long long)st.timers_armed, (unsigned long long)st.timers_fired,
             (unsigned long long)st.timers_cancelled, (unsigned long long)st.users,
             rules_memory(d->r));
}

void decide_metrics(const decide_t *d, buf_t *out) {
  const rules_set_t *s = rules_current(d->r);
  rules_stats_t st;
  rules_stats(d->r, &st);
  buf_printf(out,
             "# HELP sluice_rules_loaded Rules loaded now.\n# TYPE sluice_rules_loaded gauge\n"
             "sluice_rules_loaded %zu\n"
             "# HELP sluice_rules_actions_total Actions the rules decided since start.\n"
             "# TYPE sluice_rules_actions_total counter\nsluice_rules_actions_total %llu\n"
             "# HELP sluice_rules_skipped_consent_total Decisions skipped for lack of marketing consent.\n"
             "# TYPE sluice_rules_skipped_consent_total counter\nsluice_rules_skipped_consent_total %llu\n"
             "# HELP sluice_rules_timers_fired_total Absence timers fired since start.\n"
             "# TYPE sluice_rules_timers_fired_total counter\nsluice_rules_timers_fired_total %llu\n",
             rules_set_rules(s), (unsigned long long)st.actions,
             (unsigned long long)st.skipped_consent, (unsigned long long)st.timers_fired);
  const rules_alert_t *a = rules_set_alert(s, 0);
  if (!a) return;
  buf_puts(out, "# HELP sluice_alert_firing 1 while the KPI alert is firing.\n"
                "# TYPE sluice_alert_firing gauge\n");
  for (size_t i = 0; (a = rules_set_alert(s, i)); i++) {
    buf_puts(out, "sluice_alert_firing{alert=");
    buf_json_str(out, a->name); /* JSON escaping covers Prometheus' \\ \" \n */
    buf_printf(out, "} %d\n", rules_alert_firing(d->r, a->name) == 1);
  }
}
