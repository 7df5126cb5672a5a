/* rules_state: checkpoints of the rules engine and the KPI alert state machine.
 *
 * State, version 1, little-endian:
 *   "SLRU", u32 version, u32 user count, per user:
 *     u64 key, i64 last activity, i64 session start, u8 consent, str userId, str anonymousId,
 *     u32 n + n history records (i64 time, i64 expiry, u64 pattern, u64 key),
 *     u32 n + n rule states (u64 rule, i64 session, u32 session fires, u32 k, k x i64 fire
 *       times ascending),
 *     u32 n + n timers (u64 rule, i64 deadline, i64 armed, u64 offset, u64 cancel pattern,
 *       u64 cancel key, str userId, str anonymousId, u32 k, k x str payload);
 *   u32 n + n rate limits (u64 rule, i64 window start, u32 count);
 *   u32 n + n alert states (u64 alert, u8 firing, u32 streak, i64 next due, f64 value);
 *   u32 CRC-32C of every byte before it.
 * str: u32 length (0xffffffff = absent) + bytes (no NUL). */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "profile.h"
#include "rules_int.h"
#include "util/crc32c.h"
#include "util/mem.h"
#include "util/rd.h"

#define MAGIC "SLRU"
#define NO_STR 0xffffffffu
#define PAYLOAD_MAX (1u << 20)

/* ---- writing ---- */

static void put(buf_t *b, uint64_t v, int n) {
  unsigned char x[8];
  for (int i = 0; i < n; i++) x[i] = (unsigned char)(v >> (8 * i));
  buf_append(b, x, (size_t)n);
}

static void put_str(buf_t *b, const char *s) {
  if (!s) {
    put(b, NO_STR, 4);
    return;
  }
  size_t n = strlen(s);
  put(b, n, 4);
  buf_append(b, s, n);
}

size_t rules_serialize(const rules_t *r, buf_t *out) {
  size_t start = out->len;
  buf_append(out, MAGIC, 4);
  put(out, RULES_STATE_VERSION, 4);
  put(out, r->nusers, 4);
  for (size_t i = 0; i < r->nusers; i++) {
    const ustate_t *u = r->users[i];
    put(out, u->key, 8);
    put(out, (uint64_t)u->last_us, 8);
    put(out, (uint64_t)u->session_us, 8);
    put(out, (uint64_t)u->consent, 1);
    put_str(out, u->uid);
    put_str(out, u->aid);
    put(out, u->hn, 4);
    for (uint32_t k = 0; k < u->hn; k++) {
      put(out, (uint64_t)u->hist[k].t_us, 8);
      put(out, (uint64_t)u->hist[k].expires_us, 8);
      put(out, u->hist[k].pat, 8);
      put(out, u->hist[k].key, 8);
    }
    put(out, u->nrs, 4);
    for (uint32_t k = 0; k < u->nrs; k++) {
      const rstate_t *s = &u->rs[k];
      put(out, s->fp, 8);
      put(out, (uint64_t)s->session_us, 8);
      put(out, s->session_n, 4);
      put(out, s->nf, 4);
      for (uint32_t j = 0; j < s->nf; j++) put(out, (uint64_t)s->fires[j], 8);
    }
    put(out, u->ntm, 4);
    for (uint32_t k = 0; k < u->ntm; k++) {
      const utimer_t *t = &u->tm[k];
      put(out, t->fp, 8);
      put(out, (uint64_t)t->deadline_us, 8);
      put(out, (uint64_t)t->armed_us, 8);
      put(out, t->offset, 8);
      put(out, t->cancel_pat, 8);
      put(out, t->cancel_key, 8);
      put_str(out, t->uid);
      put_str(out, t->aid);
      put(out, (uint64_t)t->npay, 4);
      for (int j = 0; j < t->npay; j++) put_str(out, t->payloads[j]);
    }
  }
  const rules_set_t *s = r->set;
  put(out, s->nrules, 4);
  for (size_t i = 0; i < s->nrules; i++) {
    put(out, s->rules[i].fp, 8);
    put(out, (uint64_t)s->rules[i].limit_start_us, 8);
    put(out, s->rules[i].limit_count, 4);
  }
  put(out, s->nalerts, 4);
  for (size_t i = 0; i < s->nalerts; i++) {
    const alert_state_t *a = &s->alerts[i].st;
    uint64_t bits;
    memcpy(&bits, &a->last_value, 8);
    put(out, s->alerts[i].fp, 8);
    put(out, (uint64_t)a->firing, 1);
    put(out, a->streak, 4);
    put(out, (uint64_t)a->next_due_us, 8);
    put(out, bits, 8);
  }
  uint32_t crc = crc32c(0, out->data + start, out->len - start);
  put(out, crc, 4);
  return out->len - start;
}

/* ---- reading ---- */


/* A string of at most max bytes without NUL; NULL when absent (or bad: d->bad set). */
static char *get_str(rd_t *d, size_t max) {
  uint32_t n = (uint32_t)rd_get(d, 4);
  if (d->bad || n == NO_STR) return NULL;
  if (n > max || d->n - d->pos < n || memchr(d->p + d->pos, 0, n)) {
    d->bad = 1;
    return NULL;
  }
  char *s = xstrndup((const char *)d->p + d->pos, n);
  d->pos += n;
  return s;
}

/* A count of at most max (else bad, or *over set when over is given and it fits a u32). */
static uint32_t get_count(rd_t *d, size_t max, int *over) {
  uint32_t n = (uint32_t)rd_get(d, 4);
  if (n > max) {
    if (over) *over = 1;
    d->bad = 1;
  }
  /* every element takes at least 4 bytes */
  if (!d->bad && (size_t)n > (d->n - d->pos) / 4) d->bad = 1;
  return d->bad ? 0 : n;
}

static void read_user(rules_t *r, rd_t *d, int *over) {
  uint64_t key = rd_get(d, 8);
  if (d->bad) return;
  if (!key || rules_user_find(r, key)) {
    d->bad = 1;
    return;
  }
  if (r->nusers >= r->o.max_users) {
    *over = 1;
    d->bad = 1;
    return;
  }
  ustate_t *u = rules_user_add(r, key);
  u->last_us = (int64_t)rd_get(d, 8);
  u->session_us = (int64_t)rd_get(d, 8);
  u->consent = (int)rd_get(d, 1);
  if (u->consent > 1) d->bad = 1;
  u->uid = get_str(d, PROFILE_ID_MAX);
  u->aid = get_str(d, PROFILE_ID_MAX);
  uint32_t hn = get_count(d, r->o.history_per_user, over);
  if (hn) {
    u->hist = xmalloc(hn * sizeof *u->hist);
    u->hcap = hn;
  }
  for (uint32_t i = 0; i < hn && !d->bad; i++) {
    hrec_t *h = &u->hist[u->hn++];
    h->t_us = (int64_t)rd_get(d, 8);
    h->expires_us = (int64_t)rd_get(d, 8);
    h->pat = rd_get(d, 8);
    h->key = rd_get(d, 8);
  }
  uint32_t nrs = get_count(d, r->o.rules_per_user, over);
  if (nrs) u->rs = xcalloc(nrs, sizeof *u->rs);
  for (uint32_t i = 0; i < nrs && !d->bad; i++) {
    rstate_t *s = &u->rs[u->nrs++];
    s->fp = rd_get(d, 8);
    s->session_us = (int64_t)rd_get(d, 8);
    s->session_n = (uint32_t)rd_get(d, 4);
    uint32_t nf = (uint32_t)rd_get(d, 4);
    if (nf > RULES_CAP_MAX) d->bad = 1;
    for (uint32_t k = 0; k < nf && !d->bad; k++) {
      int64_t t = (int64_t)rd_get(d, 8);
      if (s->nf && t < s->fires[s->nf - 1]) d->bad = 1;
      else rules_rstate_add_fire(s, t);
    }
    for (uint32_t k = 0; k + 1 < u->nrs; k++)
      if (u->rs[k].fp == s->fp) d->bad = 1;
  }
  uint32_t ntm = get_count(d, r->o.timers_per_user, over);
  if (ntm) u->tm = xcalloc(ntm, sizeof *u->tm);
  for (uint32_t i = 0; i < ntm && !d->bad; i++) {
    utimer_t *t = &u->tm[u->ntm++];
    r->ntimers++;
    t->fp = rd_get(d, 8);
    t->deadline_us = (int64_t)rd_get(d, 8);
    t->armed_us = (int64_t)rd_get(d, 8);
    t->offset = rd_get(d, 8);
    t->cancel_pat = rd_get(d, 8);
    t->cancel_key = rd_get(d, 8);
    t->uid = get_str(d, PROFILE_ID_MAX);
    t->aid = get_str(d, PROFILE_ID_MAX);
    uint32_t np = (uint32_t)rd_get(d, 4);
    if (np > 8) d->bad = 1;
    if (d->bad) break;
    t->payloads = xcalloc(np + 1, sizeof *t->payloads);
    for (uint32_t k = 0; k < np && !d->bad; k++) {
      t->payloads[t->npay++] = get_str(d, PAYLOAD_MAX);
      if (!t->payloads[t->npay - 1]) d->bad = 1;
    }
    if (t->deadline_us < t->armed_us) d->bad = 1;
    for (uint32_t k = 0; k + 1 < u->ntm; k++)
      if (u->tm[k].fp == t->fp) d->bad = 1;
    if (!d->bad) rules_heap_push(r, t->deadline_us, key, t->fp, t->offset);
  }
}

int rules_deserialize(rules_t *r, const void *p, size_t n) {
  rules_users_clear(r);
  rd_t d = {p, n, 0, 0};
  int over = 0;
  if (!p || n < 16 || memcmp(p, MAGIC, 4)) return -EBADMSG;
  d.pos = 4;
  uint32_t crc = (uint32_t)(d.p[n - 4] | d.p[n - 3] << 8 | d.p[n - 2] << 16 | (uint32_t)d.p[n - 1] << 24);
  if (crc32c(0, p, n - 4) != crc) return -EBADMSG;
  d.n = n - 4;
  if (rd_get(&d, 4) != RULES_STATE_VERSION) return -EBADMSG;
  uint32_t nu = (uint32_t)rd_get(&d, 4);
  if (nu > r->o.max_users) return -ENOSPC;
  for (uint32_t i = 0; i < nu && !d.bad; i++) read_user(r, &d, &over);
  rules_set_t *s = r->set;
  uint32_t nl = get_count(&d, RULES_MAX_RULES, NULL);
  for (uint32_t i = 0; i < nl && !d.bad; i++) {
    uint64_t fp = rd_get(&d, 8);
    int64_t start = (int64_t)rd_get(&d, 8);
    uint32_t cnt = (uint32_t)rd_get(&d, 4);
    int ri = rules_rule_by_fp(r, fp);
    if (ri >= 0 && !d.bad) {
      s->rules[ri].limit_start_us = start;
      s->rules[ri].limit_count = cnt;
    }
  }
  uint32_t na = get_count(&d, RULES_MAX_RULES, NULL);
  for (uint32_t i = 0; i < na && !d.bad; i++) {
    uint64_t fp = rd_get(&d, 8);
    alert_state_t st = {0};
    st.firing = (int)rd_get(&d, 1);
    st.streak = (unsigned)rd_get(&d, 4);
    st.next_due_us = (int64_t)rd_get(&d, 8);
    uint64_t bits = rd_get(&d, 8);
    memcpy(&st.last_value, &bits, 8);
    if (st.firing > 1) d.bad = 1;
    for (size_t k = 0; k < s->nalerts && !d.bad; k++)
      if (s->alerts[k].fp == fp) s->alerts[k].st = st;
  }
  if (!d.bad && d.pos != d.n) d.bad = 1;
  if (d.bad) {
    rules_users_clear(r);
    for (size_t i = 0; i < s->nrules; i++) s->rules[i].limit_start_us = 0, s->rules[i].limit_count = 0;
    for (size_t i = 0; i < s->nalerts; i++) memset(&s->alerts[i].st, 0, sizeof s->alerts[i].st);
    return over ? -ENOSPC : -EBADMSG;
  }
  return 0;
}

/* ---- alerts ---- */

static void json_q(buf_t *b, const char *s, size_t n) {
  buf_putc(b, '"');
  buf_json_escape(b, s, n);
  buf_putc(b, '"');
}

static void alert_action(rules_t *r, const alert_def_t *a, int64_t now, double v, int firing) {
  const rules_alert_t *p = &a->pub;
  buf_t b = BUF_INIT;
  buf_puts(&b, "{\"alert\":");
  json_q(&b, p->name, strlen(p->name));
  buf_puts(&b, ",\"kpi\":");
  json_q(&b, p->kpi, strlen(p->kpi));
  buf_printf(&b, ",\"state\":\"%s\",\"value\":%.17g,\"threshold\":%.17g,\"window_s\":%lld",
             firing ? "firing" : "resolved", isfinite(v) ? v : 0, p->threshold,
             (long long)(p->window_us / 1000000));
  buf_puts(&b, ",\"segment\":");
  if (p->segment) json_q(&b, p->segment, strlen(p->segment));
  else buf_puts(&b, "null");
  buf_puts(&b, ",\"campaign\":");
  if (p->campaign) json_q(&b, p->campaign, strlen(p->campaign));
  else buf_puts(&b, "null");
  buf_putc(&b, '}');
  action_t act = {.kind = ACTION_ALERT, .rule = p->name, .target = p->name, .payload = b.data,
                  .decided_us = now};
  uint64_t h = XXH3_64bits_withSeed(p->name, strlen(p->name), (uint64_t)firing);
  snprintf(act.key, sizeof act.key, "%016llx-%016llx", (unsigned long long)h,
           (unsigned long long)now);
  r->st.actions++;
  if (firing) r->st.alerts_fired++;
  else r->st.alerts_resolved++;
  if (r->o.sink && r->o.sink(r->o.sink_ud, &act) < 0) r->st.sink_errors++;
  buf_free(&b);
}

int rules_alerts_tick(rules_t *r, int64_t now_us, rules_kpi_fn kpi, void *ud) {
  int n = 0;
  rules_set_t *s = r->set;
  for (size_t i = 0; i < s->nalerts; i++) {
    alert_def_t *a = &s->alerts[i];
    alert_state_t *st = &a->st;
    if (now_us < st->next_due_us) continue;
    st->next_due_us = now_us + a->pub.every_us;
    double v;
    if (!kpi || kpi(ud, &a->pub, now_us, &v) < 0 || !isfinite(v)) continue;
    st->last_value = v;
    if (!st->firing) {
      int breach = a->pub.above ? v > a->pub.threshold : v < a->pub.threshold;
      st->streak = breach ? st->streak + 1 : 0;
      if (st->streak >= a->pub.for_n) {
        st->firing = 1;
        st->streak = 0;
        alert_action(r, a, now_us, v, 1);
        n++;
      }
    } else if (a->pub.above ? v <= a->pub.clear : v >= a->pub.clear) {
      st->firing = 0;
      alert_action(r, a, now_us, v, 0);
      n++;
    }
  }
  return n;
}

int rules_alert_firing(const rules_t *r, const char *name) {
  for (size_t i = 0; i < r->set->nalerts; i++)
    if (!strcmp(r->set->alerts[i].pub.name, name)) return r->set->alerts[i].st.firing;
  return -ENOENT;
}
