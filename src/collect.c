/* collect: ingestion endpoints (see collect.h). */
#include "collect.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <zlib.h>
#define XXH_INLINE_ALL
#include <xxhash.h>

#include "costs.h"
#include "event.h"
#include "evdoc.h"
#include "keys.h"
#include "qevent.h"
#include "ratelimit.h"
#include "util/buf.h"
#include "util/clock.h"
#include "util/mem.h"
#include "util/str.h"

typedef enum { K_BATCH, K_SINGLE, K_NDJSON, K_PIXEL, K_REDIRECT, K_COSTS } kind_t;

typedef struct route {
  const char *path;
  const char *method;
  kind_t kind;
  const char *implied_type; /* K_SINGLE */
  const char *label;        /* metrics route label */
} route_t;

static const route_t routes[] = {
    {"/v1/batch", "POST", K_BATCH, NULL, "batch"},
    {"/v1/import", "POST", K_BATCH, NULL, "batch"},
    {"/v1/track", "POST", K_SINGLE, "track", "track"},
    {"/v1/page", "POST", K_SINGLE, "page", "page"},
    {"/v1/screen", "POST", K_SINGLE, "screen", "screen"},
    {"/v1/identify", "POST", K_SINGLE, "identify", "identify"},
    {"/v1/group", "POST", K_SINGLE, "group", "group"},
    {"/v1/alias", "POST", K_SINGLE, "alias", "alias"},
    {"/v1/events", "POST", K_NDJSON, NULL, "events"},
    {"/v1/p.gif", "GET", K_PIXEL, NULL, "pixel"},
    {"/v1/r", "GET", K_REDIRECT, NULL, "redirect"},
    {"/v1/costs", "POST", K_COSTS, NULL, "costs"},
};

typedef struct flight flight_t;

struct collect {
  const config_t *cfg;
  log_t *log, *bad;
  enrich_t *enrich;
  metrics_t *metrics;
  dedup_t *dedup;
  ratelimit_t *limiter;
  buf_t body;    /* decompressed body scratch */
  buf_t values;  /* serialised events of the request being built */
  buf_t badvals; /* bad-event records of the request being built */
  evdoc_t *ev;    /* the event being taken */
  evdoc_t *batch; /* the /v1/batch body around it */
  log_entry_t *entries; /* reused per request */
  size_t entries_cap;
  jscan_elems_t elems;  /* the "batch" array's elements, recorded as the body is
                         * validated; v reused per request */
  jscan_tape_t tape;    /* the objects in them, recorded by the same walk */
  /* The batch body's context and integrations members (evdoc_members of c->batch), found
   * once per request for merge_defaults: count, or -1 when the body has no such object. */
  const jscan_member_t *defaults[2];
  long ndefaults[2];
  flight_t *flight;     /* see flight_t; cap a power of two */
  size_t flight_cap, flight_used;
  buf_t query_event; /* pixel/redirect event text */
  qevent_t *qevent;  /* builds it */
  struct ingest *spare; /* freed requests' records, for reuse (see ingest_new) */
  size_t nspare;
};

/* One request waiting for its log ack. */
typedef struct ingest {
  collect_t *c;
  http_req_t *req;
  const route_t *route;
  size_t accepted;  /* events stored by this request (appended to the log) */
  size_t skipped;   /* accepted but not stored: duplicates, no analytics consent */
  size_t nrejected;
  buf_t ids;        /* NUL-separated messageIds of the stored events, for dedup */
  buf_t rejected; /* JSON array body items, "" when none */
  char *redirect; /* K_REDIRECT target */
  char origin[256];
  const char *content_type, *content_encoding; /* the request's headers, or NULL */
  /* Duplicates of events another request is still writing are not stored again, but
   * this request is answered only once those are durable, and fails if they fail. */
  struct ingest **owners, **deps; /* requests we wait for / requests waiting for us */
  size_t nowners, ndeps;
  int own_pending;  /* our own append is not acknowledged yet */
  int own_status;   /* its result */
  int dep_failed;   /* a request we waited for failed */
  void (*emit_done)(void *ud, int rc); /* collect_emit: no request, a callback */
  void *emit_ud;
  struct ingest *next_spare; /* in collect_t's spare list */
} ingest_t;

/* messageIds being written right now (appended, not yet acknowledged), by request: an
 * open-addressing table of 128-bit id hashes. */
struct flight {
  uint64_t lo, hi;
  ingest_t *owner; /* NULL: empty; FLIGHT_GONE: deleted */
};
#define FLIGHT_GONE ((ingest_t *)1)

static const unsigned char gif[] = {
    0x47, 0x49, 0x46, 0x38, 0x39, 0x61, 0x01, 0x00, 0x01, 0x00, 0x80, 0x00, 0x00, 0x00,
    0x00, 0x00, 0xff, 0xff, 0xff, 0x21, 0xf9, 0x04, 0x01, 0x00, 0x00, 0x00, 0x00, 0x2c,
    0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00, 0x02, 0x02, 0x44, 0x01, 0x00, 0x3b};

/* Slack over max-event-bytes for what enrichment adds (receivedAt, messageId, ip...). */
#define ENRICH_SLACK 1024

collect_t *collect_new(const collect_deps_t *d) {
  collect_t *c = xcalloc(1, sizeof *c);
  c->cfg = d->cfg;
  c->log = d->log;
  c->bad = d->bad;
  c->enrich = d->enrich;
  c->metrics = d->metrics;
  c->dedup = d->dedup;
  double rate = (double)d->cfg->rate_limit_per_ip;
  c->limiter = ratelimit_new(rate, d->cfg->rate_limit_burst ? (double)d->cfg->rate_limit_burst : 2 * rate, 0);
  c->ev = evdoc_new();
  c->batch = evdoc_new();
  c->elems.key = "batch";
  c->elems.keylen = 5;
  c->elems.tape = &c->tape;
  c->qevent = qevent_new();
  return c;
}

void collect_free(collect_t *c) {
  if (!c) return;
  buf_free(&c->body);
  buf_free(&c->values);
  buf_free(&c->badvals);
  ratelimit_free(c->limiter);
  evdoc_free(c->ev);
  evdoc_free(c->batch);
  free(c->entries);
  jscan_elems_free(&c->elems);
  jscan_tape_free(&c->tape);
  free(c->flight);
  buf_free(&c->query_event);
  qevent_free(c->qevent);
  while (c->spare) {
    ingest_t *in = c->spare;
    c->spare = in->next_spare;
    free(in);
  }
  free(c);
}

/* ---- CORS and redirect allowlists ---- */

static int host_matches(const char *pattern, const char *host, size_t hlen) {
  if (strcmp(pattern, "*") == 0) return 1;
  if (pattern[0] == '*' && pattern[1] == '.') {
    size_t plen = strlen(pattern + 1); /* ".example.com" */
    return hlen > plen && strncasecmp(host + hlen - plen, pattern + 1, plen) == 0;
  }
  return strlen(pattern) == hlen && strncasecmp(pattern, host, hlen) == 0;
}

int collect_origin_allowed(const config_t *cfg, const char *origin, const char *host) {
  const char *sep = strstr(origin, "://");
  if (sep && host && strcasecmp(sep + 3, host) == 0) return 1;
  for (size_t i = 0; i < cfg->cors_origins.n; i++) {
    const char *p = cfg->cors_origins.items[i];
    if (strcmp(p, "*") == 0 || strcasecmp(p, origin) == 0) return 1;
  }
  return 0;
}

int collect_redirect_allowed(const config_t *cfg, const char *url) {
  size_t skip;
  if (str_has_prefix_ci(url, strlen(url), "https://"))
    skip = 8;
  else if (str_has_prefix_ci(url, strlen(url), "http://"))
    skip = 7;
  else
    return 0;
  const char *h = url + skip;
  size_t hlen = strcspn(h, "/?#");
  /* Userinfo ("allowed.com@evil.com") and backslashes confuse browsers: refuse them. */
  if (memchr(h, '@', hlen) || memchr(h, '\\', hlen) || strpbrk(url, "\r\n\t ")) return 0;
  const char *colon = memchr(h, ':', hlen);
  if (colon) hlen = (size_t)(colon - h);
  if (!hlen) return 0;
  for (size_t i = 0; i < cfg->redirect_hosts.n; i++)
    if (strcmp(cfg->redirect_hosts.items[i], "*") != 0 &&
        host_matches(cfg->redirect_hosts.items[i], h, hlen))
      return 1;
  return 0;
}

/* ---- responses ---- */

static size_t cors_headers(const ingest_t *in, http_header_t *h, size_t n) {
  if (!in->origin[0]) return n;
  h[n++] = (http_header_t){"Access-Control-Allow-Origin", in->origin};
  h[n++] = (http_header_t){"Access-Control-Allow-Credentials", "true"};
  h[n++] = (http_header_t){"Vary", "Origin"};
  return n;
}

static void retry_after(const collect_t *c, char out[24]) {
  snprintf(out, 24, "%llu", (unsigned long long)c->cfg->retry_after_s);
}

static void fail_req(ingest_t *in, int status, const char *code, const char *msg) {
  if (in->emit_done) {
    in->emit_done(in->emit_ud, status == 503 ? -EAGAIN : -EINVAL);
    return;
  }
  http_header_t h[6];
  size_t n = cors_headers(in, h, 0);
  char ra[24];
  if (status == 503) {
    retry_after(in->c, ra);
    h[n++] = (http_header_t){"Retry-After", ra};
  }
  if (status == 401) h[n++] = (http_header_t){"WWW-Authenticate", "Basic realm=\"sluice\""};
  http_respond_error(in->req, status, code, msg, h, n);
}

/* ---- events in flight ---- */

static flight_t *flight_slot(collect_t *c, uint64_t lo, uint64_t hi, int for_insert) {
  if (!c->flight_cap) return NULL;
  size_t mask = c->flight_cap - 1, i = (size_t)lo & mask;
  flight_t *gone = NULL;
  for (;; i = (i + 1) & mask) {
    flight_t *f = &c->flight[i];
    if (!f->owner) return for_insert ? (gone ? gone : f) : NULL;
    if (f->owner == FLIGHT_GONE) {
      if (!gone) gone = f;
    } else if (f->lo == lo && f->hi == hi) {
      return f;
    }
  }
}

static void flight_grow(collect_t *c) {
  flight_t *old = c->flight;
  size_t oldcap = c->flight_cap, live = 0;
  for (size_t i = 0; i < oldcap; i++) live += old[i].owner && old[i].owner != FLIGHT_GONE;
  size_t cap = 1024;
  while (cap < 4 * (live + 1)) cap *= 2;
  c->flight = xcalloc(cap, sizeof *c->flight);
  c->flight_cap = cap;
  c->flight_used = 0;
  for (size_t i = 0; i < oldcap; i++)
    if (old[i].owner && old[i].owner != FLIGHT_GONE) {
      *flight_slot(c, old[i].lo, old[i].hi, 1) = old[i];
      c->flight_used++;
    }
  free(old);
}

static void id_hash(const char *id, size_t n, uint64_t *lo, uint64_t *hi) {
  XXH128_hash_t h = XXH3_128bits(id, n);
  *lo = h.low64;
  *hi = h.high64;
}

/* Who is writing the event with this id right now, or NULL. */
static ingest_t *flight_owner(collect_t *c, const char *id, size_t n) {
  uint64_t lo, hi;
  id_hash(id, n, &lo, &hi);
  flight_t *f = flight_slot(c, lo, hi, 0);
  return f ? f->owner : NULL;
}

static void flight_add(collect_t *c, const char *id, size_t n, ingest_t *owner) {
  if (2 * (c->flight_used + 1) > c->flight_cap) flight_grow(c);
  uint64_t lo, hi;
  id_hash(id, n, &lo, &hi);
  flight_t *f = flight_slot(c, lo, hi, 1);
  if (!f->owner) c->flight_used++;
  *f = (flight_t){lo, hi, owner};
}

/* Forget the ids in->ids that in is writing. */
static void flight_remove(collect_t *c, ingest_t *in) {
  for (size_t pos = 0; pos < in->ids.len;) {
    size_t n = strlen(in->ids.data + pos);
    uint64_t lo, hi;
    id_hash(in->ids.data + pos, n, &lo, &hi);
    flight_t *f = flight_slot(c, lo, hi, 0);
    if (f && f->owner == in) f->owner = FLIGHT_GONE;
    pos += n + 1;
  }
}

static void list_add(ingest_t ***list, size_t *n, ingest_t *x) {
  for (size_t i = 0; i < *n; i++)
    if ((*list)[i] == x) return;
  *list = xrealloc(*list, (*n + 1) * sizeof **list);
  (*list)[(*n)++] = x;
}

static void list_del(ingest_t **list, size_t *n, ingest_t *x) {
  for (size_t i = 0; i < *n; i++)
    if (list[i] == x) {
      list[i] = list[--*n];
      return;
    }
}

/* A request's record, zeroed. Records are reused: a client sends request after request,
 * and allocating and freeing each cost a twentieth of a small request's handling. At
 * most SPARE_MAX freed ones are kept. */
#define SPARE_MAX 64
static ingest_t *ingest_new(collect_t *c) {
  ingest_t *in = c->spare;
  if (in) {
    c->spare = in->next_spare;
    c->nspare--;
    memset(in, 0, sizeof *in);
  } else {
    in = xcalloc(1, sizeof *in);
  }
  in->c = c;
  return in;
}

static void ingest_free(ingest_t *in) {
  /* Unlink from the requests it waited for (an early failure) and forget its ids. */
  for (size_t i = 0; i < in->nowners; i++) list_del(in->owners[i]->deps, &in->owners[i]->ndeps, in);
  flight_remove(in->c, in);
  free(in->owners);
  free(in->deps);
  buf_free(&in->rejected);
  buf_free(&in->ids);
  free(in->redirect);
  collect_t *c = in->c;
  if (c->nspare < SPARE_MAX) {
    in->next_spare = c->spare;
    c->spare = in;
    c->nspare++;
  } else {
    free(in);
  }
}

static void respond_done(ingest_t *in) {
  http_header_t h[6];
  size_t n = cors_headers(in, h, 0);
  size_t ok = in->accepted + in->skipped;
  if (in->emit_done) {
    in->emit_done(in->emit_ud, ok ? 0 : -EINVAL);
    return;
  }
  if (ok && in->route->kind == K_PIXEL) {
    h[n++] = (http_header_t){"Content-Type", "image/gif"};
    h[n++] = (http_header_t){"Cache-Control", "no-store, max-age=0"};
    http_respond(in->req, 200, h, n, gif, sizeof gif, 0);
    return;
  }
  if (ok && in->route->kind == K_REDIRECT) {
    h[n++] = (http_header_t){"Location", in->redirect};
    h[n++] = (http_header_t){"Cache-Control", "no-store"};
    http_respond(in->req, 302, h, n, "", 0, 0);
    return;
  }
  h[n++] = (http_header_t){"Content-Type", "application/json"};
  if (!in->nrejected) {
    static const char success[] = "{\"success\":true}";
    http_respond(in->req, ok ? 200 : 400, h, n, success, sizeof success - 1, 0);
    return;
  }
  buf_t b = BUF_INIT;
  buf_printf(&b, "{\"success\":%s,", ok ? "true" : "false");
  if (!ok)
    buf_puts(&b, "\"error\":\"invalid_events\",\"message\":\"no event in the request was valid\",");
  buf_printf(&b, "\"accepted\":%zu,\"rejected\":[%s]}", ok,
             in->rejected.data ? in->rejected.data : "");
  http_respond(in->req, ok ? 200 : 400, h, n, b.data, b.len, 0);
  buf_free(&b);
}

/* ---- the log ack ---- */

/* Answer once our own events and every duplicate we waited for are settled. */
static void try_finish(ingest_t *in) {
  if (in->own_pending || in->nowners) return;
  if (in->own_status == 0 && !in->dep_failed) {
    respond_done(in);
  } else if (in->route->kind == K_REDIRECT) {
    /* The shopper clicked a link: send them on even though the click is not stored. */
    respond_done(in);
  } else if (in->own_status == -ENOSPC || in->own_status == -EDQUOT) {
    fail_req(in, 503, "disk_full", "the event log's disk is full; retry later");
  } else {
    fail_req(in, 503, "log_unavailable", "the event log cannot write; retry later");
  }
  ingest_free(in);
}

static void on_ack(void *ud, int status, uint64_t first_offset) {
  ingest_t *in = ud;
  collect_t *c = in->c;
  if (in->req)
    metrics_observe(c->metrics, MH_ACK, (uint64_t)(clock_mono_us() - http_req_start_us(in->req)));
  in->own_pending = 0;
  in->own_status = status;
  flight_remove(c, in);
  if (status == 0) {
    metrics_add(c->metrics, MC_EVENTS_ACCEPTED, in->accepted);
    /* Durable now: from here on a retry of these events is a duplicate. */
    int64_t now = in->ids.len ? clock_wall_us() : 0;
    for (size_t pos = 0; pos < in->ids.len;) {
      size_t n = strlen(in->ids.data + pos);
      dedup_add(c->dedup, in->ids.data + pos, n, now);
      pos += n + 1;
    }
  } else {
    metrics_add(c->metrics, MC_EVENTS_FAILED, in->accepted);
  }
  /* Requests that skipped our events as duplicates learn how they ended. */
  for (size_t i = 0; i < in->ndeps; i++) {
    ingest_t *d = in->deps[i];
    list_del(d->owners, &d->nowners, in);
    if (status != 0) d->dep_failed = 1;
    try_finish(d);
  }
  in->ndeps = 0;
  try_finish(in);
}

static void on_bad_ack(void *ud, int status, uint64_t first_offset) {
  (void)ud, (void)status, (void)first_offset;
}

/* ---- per event ---- */

static void reject(collect_t *c, ingest_t *in, size_t index, const char *code, const char *msg,
                   const char *raw, size_t rawlen, const enrich_ctx_t *ctx) {
  in->nrejected++;
  metrics_rejected(c->metrics, code);
  buf_t *r = &in->rejected;
  if (r->len) buf_putc(r, ',');
  buf_printf(r, "{\"index\":%zu,\"error\":\"%s\",\"message\":\"", index, code);
  buf_json_escape(r, msg, strlen(msg));
  buf_puts(r, "\"}");

  /* Bad-event record: reason, where, when, and the event as received (bounded). */
  char iso[25], anon[46];
  clock_format_iso(ctx->received_us, iso);
  snprintf(anon, sizeof anon, "%s", c->cfg->keep_full_ip ? ctx->client_ip : ctx->client_ip_anon);
  buf_t *b = &c->badvals;
  buf_printf(b, "{\"receivedAt\":\"%s\",\"endpoint\":\"%s\",\"index\":%zu,\"error\":\"%s\",\"message\":\"",
             iso, in->route->path, index, code);
  buf_json_escape(b, msg, strlen(msg));
  buf_printf(b, "\",\"ip\":\"%s\",\"raw\":\"", anon);
  size_t cap = c->cfg->max_event_bytes;
  buf_json_escape(b, raw ? raw : "", raw ? (rawlen < cap ? rawlen : cap) : 0);
  buf_printf(b, "\",\"truncated\":%s}", raw && rawlen > cap ? "true" : "false");
  buf_putc(b, '\n'); /* record separator inside badvals; see flush_bad */
}

/* The batch-level objects merged into each event (Segment semantics: the event's own keys
 * win), in the order of c->defaults. */
static const char *const default_names[2] = {"context", "integrations"};

/* Merge the batch-level object default_names[which] into the event: keys the event lacks
 * are added. */
static void merge_defaults(collect_t *c, evdoc_t *ev, int which) {
  const char *name = default_names[which];
  const jscan_member_t *m = c->defaults[which];
  long n = c->ndefaults[which];
  if (n <= 0) return;
  jscan_type_t t = evdoc_get(ev, name).type;
  if (t != JSCAN_NONE && t != JSCAN_OBJECT && t != JSCAN_NULL) return;
  char key[256];
  for (long i = 0; i < n; i++) {
    jscan_val_t kv = {JSCAN_STRING, m[i].key, m[i].keylen, m[i].key_escaped, 0};
    if (m[i].keylen >= sizeof key || jscan_string(&kv, key, sizeof key) < 0) continue;
    const char *segs[2] = {name, key};
    if (evdoc_get_v(ev, segs, 2).type != JSCAN_NONE) continue;
    const jscan_val_t *v = &m[i].val;
    if (v->type == JSCAN_STRING)
      evdoc_set_raw_v(ev, segs, 2, v->p - 1, v->n + 2);
    else
      evdoc_set_raw_v(ev, segs, 2, v->p, v->n);
  }
}

/* The event's time as processing will read it from the stored event (evfields.h: its
 * enriched `timestamp`, else `receivedAt`), for the log's event-time index, which must
 * never place an event elsewhere than processing and scans do. */
static int64_t event_time(evdoc_t *ev, const enrich_ctx_t *ctx) {
  static evdoc_path_t ts = EVDOC_PATH("timestamp"), recv = EVDOC_PATH("receivedAt");
  evdoc_path_t *paths[2] = {&ts, &recv};
  for (int i = 0; i < 2; i++) {
    jscan_val_t v = evdoc_get_p(ev, paths[i]);
    int64_t t;
    if (v.type == JSCAN_STRING && !v.escaped && clock_parse_iso_memo(v.p, v.n, &t) == 0)
      return t;
  }
  return ctx->received_us;
}

/* Validate, enrich and serialise the event loaded in c->ev into c->values. raw/rawlen
 * are the client's bytes of this event (for the size check and the bad-event log);
 * batch_defaults says whether to merge c->batch's context/integrations. Returns 0 when
 * the event is accepted (stored or skipped). */
static int take_event(collect_t *c, ingest_t *in, size_t index, const enrich_ctx_t *ctx,
                      const char *raw, size_t rawlen, int batch_defaults) {
  evdoc_t *ev = c->ev;
  event_error_t err;
  char msg[200];
  if (rawlen > c->cfg->max_event_bytes) {
    snprintf(msg, sizeof msg, "the event is larger than %llu bytes",
             (unsigned long long)c->cfg->max_event_bytes);
    reject(c, in, index, EVENT_ERR_TOO_LARGE, msg, raw, rawlen, ctx);
    return -1;
  }
  if (event_validate(ev, in->route->implied_type, &err) != 0) {
    reject(c, in, index, err.code, err.message, raw, rawlen, ctx);
    return -1;
  }
  if (batch_defaults) {
    merge_defaults(c, ev, 0);
    merge_defaults(c, ev, 1);
  }
  /* Only a messageId the client sent can come back in a retry. One enrichment makes up
   * (srv-<uuid>) is new by construction and never shown to the client, so it skips the
   * in-flight table and the dedup window: under load those probes into tables of
   * millions of entries were cache misses costing about 1 µs per event, and the window
   * keeps room for the ids that can repeat. (The rule is enrichment's: a non-empty
   * string is kept.) */
  static evdoc_path_t message_id = EVDOC_PATH("messageId");
  jscan_val_t sent_id = c->dedup ? evdoc_get_p(ev, &message_id) : (jscan_val_t){0};
  int client_id = sent_id.type == JSCAN_STRING && sent_id.n > 0;
  int erc = enrich_event(c->enrich, ev, ctx, msg, sizeof msg);
  if (erc == ENRICH_DROP) {
    in->skipped++;
    metrics_add(c->metrics, MC_EVENTS_NO_CONSENT, 1);
    return 0;
  }
  if (erc != 0) {
    reject(c, in, index, EVENT_ERR_FIELD, msg, raw, rawlen, ctx);
    return -1;
  }
  char id[EVENT_MAX_ID + 8];
  id[0] = 0; /* not `= ""`: that clears all its bytes, for every event */
  if (client_id && !evdoc_str_p(ev, &message_id, id, sizeof id)) id[0] = 0;
  size_t idlen = id[0] ? strlen(id) : 0;
  ingest_t *owner = idlen ? flight_owner(c, id, idlen) : NULL;
  if (owner || (idlen && dedup_seen(c->dedup, id, idlen, ctx->received_us))) {
    in->skipped++;
    metrics_add(c->metrics, MC_EVENTS_DUPLICATE, 1);
    if (owner && owner != in) { /* still being written: answer when it is durable */
      list_add(&in->owners, &in->nowners, owner);
      list_add(&owner->deps, &owner->ndeps, in);
    }
    return 0;
  }
  /* values holds: u32 key_len | key | i64 event time | u32 value_len | value, repeated */
  char key[EVENT_MAX_ID + 8];
  event_key(ev, key, sizeof key);
  int64_t t_us = event_time(ev, ctx);
  size_t mark = c->values.len;
  uint32_t k32 = (uint32_t)strlen(key), v32 = 0;
  buf_append(&c->values, &k32, 4);
  buf_append(&c->values, key, k32);
  buf_append(&c->values, &t_us, 8);
  size_t vpos = c->values.len;
  buf_append(&c->values, &v32, 4);
  evdoc_write(ev, &c->values);
  size_t vlen = c->values.len - vpos - 4;
  if (vlen > c->cfg->max_event_bytes + ENRICH_SLACK) {
    c->values.len = mark;
    snprintf(msg, sizeof msg, "the event is larger than %llu bytes once enriched",
             (unsigned long long)c->cfg->max_event_bytes);
    reject(c, in, index, EVENT_ERR_TOO_LARGE, msg, raw, rawlen, ctx);
    return -1;
  }
  v32 = (uint32_t)vlen;
  memcpy(c->values.data + vpos, &v32, 4);
  if (idlen) {
    buf_append(&in->ids, id, idlen + 1);
    flight_add(c, id, idlen, in);
  }
  in->accepted++;
  return 0;
}

/* Load bytes into c->ev and take the event; a load failure is the event's rejection.
 * elem: the index of a batch element in c->elems (its objects were recorded in c->tape),
 * or -1 for bytes to validate. */
static int load_and_take(collect_t *c, ingest_t *in, size_t index, const enrich_ctx_t *ctx,
                         const char *raw, size_t rawlen, long elem, int default_track) {
  /* A batch element was validated and indexed with its batch: not walked again. */
  const uint32_t *o = elem >= 0 ? &c->elems.obj[2 * elem] : NULL;
  int lr = o ? evdoc_load_indexed(c->ev, raw, rawlen, c->tape.obj + o[0], o[1] - o[0])
             : evdoc_load(c->ev, raw, rawlen);
  int batch_defaults = elem >= 0;
  if (lr != 0) {
    reject(c, in, index, lr == -2 ? EVENT_ERR_NOT_OBJECT : lr == -3 ? EVENT_ERR_FIELD : EVENT_ERR_JSON,
           lr == -2   ? "an event must be a JSON object"
           : lr == -3 ? "the event has duplicate or too many top-level fields"
                      : "the event is not valid JSON",
           raw, rawlen, ctx);
    return -1;
  }
  if (default_track && evdoc_get(c->ev, "type").type == JSCAN_NONE) evdoc_set_str(c->ev, "type", "track");
  return take_event(c, in, index, ctx, raw, rawlen, batch_defaults);
}

/* ---- request decoding ---- */

static int inflate_body(collect_t *c, const char *in, size_t inlen, int gzip, const char **out,
                        size_t *outlen, const char **code, const char **msg) {
  z_stream z;
  memset(&z, 0, sizeof z);
  if (inflateInit2(&z, gzip ? 15 + 16 : 15) != Z_OK) {
    *code = "internal";
    *msg = "cannot start the decompressor";
    return 500;
  }
  buf_reset(&c->body);
  size_t limit = c->cfg->max_decompressed_bytes;
  z.next_in = (Bytef *)in;
  z.avail_in = (uInt)inlen;
  int rc = Z_OK;
  while (rc != Z_STREAM_END) {
    buf_reserve(&c->body, 65536);
    size_t room = c->body.cap - c->body.len;
    if (c->body.len + room > limit + 1) room = limit + 1 - c->body.len;
    z.next_out = (Bytef *)c->body.data + c->body.len;
    z.avail_out = (uInt)room;
    rc = inflate(&z, Z_NO_FLUSH);
    c->body.len += room - z.avail_out;
    if (c->body.len > limit) {
      inflateEnd(&z);
      *code = "body_too_large";
      *msg = "the decompressed body exceeds max-decompressed-bytes";
      return 413;
    }
    if (rc == Z_STREAM_END) break;
    if (rc != Z_OK || (z.avail_in == 0 && z.avail_out != 0)) {
      inflateEnd(&z);
      *code = "bad_encoding";
      *msg = gzip ? "the body is not valid gzip" : "the body is not valid deflate data";
      return 400;
    }
  }
  inflateEnd(&z);
  c->body.data[c->body.len] = 0;
  *out = c->body.data;
  *outlen = c->body.len;
  return 0;
}

/* Checks Content-Type and Content-Encoding and yields the plain body. Returns 0 or an
 * HTTP status with code/msg. */
static int decode_body(collect_t *c, ingest_t *in, const char **body, size_t *len,
                       const char **code, const char **msg) {
  const char *ct = in->content_type;
  if (ct && *ct) {
    size_t n = strlen(ct);
    int ok = str_has_prefix_ci(ct, n, "application/json") || str_has_prefix_ci(ct, n, "text/plain") ||
             (in->route->kind == K_NDJSON &&
              (str_has_prefix_ci(ct, n, "application/x-ndjson") ||
               str_has_prefix_ci(ct, n, "application/jsonl") ||
               str_has_prefix_ci(ct, n, "application/x-jsonlines")));
    if (!ok) {
      *code = "unsupported_media_type";
      *msg = in->route->kind == K_NDJSON
                 ? "send application/x-ndjson, application/json or text/plain"
                 : "send application/json or text/plain";
      return 415;
    }
  }
  char *raw = http_req_body(in->req, len);
  *body = raw;
  const char *ce = in->content_encoding;
  if (!ce || !*ce || strcasecmp(ce, "identity") == 0) return 0;
  if (strcasecmp(ce, "gzip") == 0 || strcasecmp(ce, "x-gzip") == 0)
    return inflate_body(c, raw, *len, 1, body, len, code, msg);
  if (strcasecmp(ce, "deflate") == 0) return inflate_body(c, raw, *len, 0, body, len, code, msg);
  *code = "unsupported_encoding";
  *msg = "Content-Encoding must be gzip, deflate or identity";
  return 415;
}

/* Key check: returns 0 when key (len n) may write, else an HTTP status with code/msg. */
static int check_write_key(const config_t *cfg, const char *key, size_t n, const char **code,
                           const char **msg) {
  if (!n) {
    *code = "missing_key";
    *msg = "send the write key as the HTTP Basic user, or as writeKey";
    return 401;
  }
  key_kind_t k = keys_match(cfg, key, n);
  if (k == KEY_WRITE || k == KEY_ADMIN) return 0;
  if (k == KEY_READ) {
    *code = "wrong_key_kind";
    *msg = "the read key cannot send events; use the write key";
    return 403;
  }
  *code = "invalid_key";
  *msg = "the write key is not valid";
  return 401;
}

/* ---- the handler ---- */

static const route_t *find_route(const char *path) {
  /* Every route is "/v1/...": the rest is compared only for routes whose next byte
   * matches (a strcmp per route came with every request). */
  if (strncmp(path, "/v1/", 4) != 0) return NULL;
  for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++)
    if (routes[i].path[4] == path[4] && strcmp(routes[i].path + 4, path + 4) == 0) return &routes[i];
  return NULL;
}

static void preflight(ingest_t *in) {
  http_header_t h[8];
  size_t n = cors_headers(in, h, 0);
  h[n++] = (http_header_t){"Access-Control-Allow-Methods", "POST, GET, OPTIONS"};
  h[n++] = (http_header_t){"Access-Control-Allow-Headers",
                           "Content-Type, Authorization, Content-Encoding"};
  h[n++] = (http_header_t){"Access-Control-Max-Age", "86400"};
  http_respond(in->req, 204, h, n, "", 0, 0);
}

/* Hand the request's good events (c->values) and bad records (c->badvals) to the logs.
 * Takes ownership of in. */
/* Append the bad-event records gathered in c->badvals (newline-separated) to the bad
 * log. Best effort: the client has its answer either way. */
static void flush_bad(collect_t *c, int64_t now_us) {
  if (!c->badvals.len) return;
  size_t nbad = 0;
  for (size_t i = 0; i < c->badvals.len; i++) nbad += c->badvals.data[i] == '\n';
  log_entry_t *be = xcalloc(nbad, sizeof *be);
  size_t k = 0, start = 0;
  for (size_t i = 0; i < c->badvals.len; i++)
    if (c->badvals.data[i] == '\n') {
      be[k++] = (log_entry_t){.time_us = now_us, .value = c->badvals.data + start,
                               .value_len = (uint32_t)(i - start)};
      start = i + 1;
    }
  if (log_append(c->bad, be, nbad, on_bad_ack, NULL) == 0)
    metrics_add(c->metrics, MC_BAD_EVENTS_LOGGED, nbad);
  free(be);
  buf_reset(&c->badvals);
}

/* Hand the request's good events (c->values) to the log and its bad records to the bad
 * log. Takes ownership of in. */
static void submit(collect_t *c, ingest_t *in, int64_t now_us) {
  flush_bad(c, now_us);
  if (!in->accepted) {
    try_finish(in); /* at once, or when the duplicates it waits for are durable */
    return;
  }
  if (c->entries_cap < in->accepted) {
    c->entries_cap = in->accepted * 2;
    c->entries = xrealloc(c->entries, c->entries_cap * sizeof *c->entries);
  }
  log_entry_t *e = c->entries;
  size_t pos = 0;
  for (size_t i = 0; i < in->accepted; i++) {
    uint32_t kl, vl;
    memcpy(&kl, c->values.data + pos, 4);
    pos += 4;
    e[i].key = c->values.data + pos;
    e[i].key_len = kl;
    pos += kl;
    memcpy(&e[i].event_us, c->values.data + pos, 8);
    pos += 8;
    memcpy(&vl, c->values.data + pos, 4);
    pos += 4;
    e[i].value = c->values.data + pos;
    e[i].value_len = vl;
    e[i].time_us = now_us;
    pos += vl;
  }
  in->own_pending = 1;
  int rc = log_append(c->log, e, in->accepted, on_ack, in);
  buf_reset(&c->values);
  if (rc != 0) {
    metrics_add(c->metrics, MC_EVENTS_FAILED, in->accepted);
    if (rc == -EAGAIN)
      fail_req(in, 503, "overloaded", "the event log's write queue is full; retry later");
    else
      fail_req(in, 503, "log_unavailable", "the event log cannot write; retry later");
    ingest_free(in);
  }
}

/* Answer st (with code, msg) when it is set; else take the event built in c->query_event
 * (pixel, redirect, costs) and submit it. */
static void take_built(collect_t *c, ingest_t *in, int st, const char *code, const char *msg,
                       const enrich_ctx_t *ctx) {
  if (st) {
    fail_req(in, st, code, msg);
    ingest_free(in);
    return;
  }
  load_and_take(c, in, 0, ctx, c->query_event.data, c->query_event.len, -1, 0);
  submit(c, in, ctx->received_us);
}

static void handle_json(collect_t *c, ingest_t *in, char *hkey, const enrich_ctx_t *ctx) {
  const char *body, *code = NULL, *msg = NULL;
  size_t len;
  int st = decode_body(c, in, &body, &len, &code, &msg);
  if (st) goto fail;
  kind_t kind = in->route->kind;

  if (kind == K_NDJSON) {
    if (!hkey[0]) {
      st = 401, code = "missing_key", msg = "send the write key as the HTTP Basic user";
      goto fail;
    }
    size_t index = 0;
    for (size_t pos = 0; pos < len;) {
      const char *nl = memchr(body + pos, '\n', len - pos);
      size_t end = nl ? (size_t)(nl - body) : len, n = end - pos;
      const char *line = body + pos;
      pos = end + 1;
      while (n && (line[n - 1] == '\r' || line[n - 1] == ' ' || line[n - 1] == '\t')) n--;
      if (!n) continue;
      if (index >= c->cfg->max_batch_events) {
        st = 413, code = EVENT_ERR_TOO_MANY, msg = "more lines than max-batch-events";
        goto fail;
      }
      load_and_take(c, in, index++, ctx, line, n, -1, 1);
    }
    if (!index) {
      st = 400, code = "empty_body", msg = "the body holds no event";
      goto fail;
    }
    submit(c, in, ctx->received_us);
    return;
  }

  evdoc_t *doc = kind == K_SINGLE ? c->ev : c->batch;
  /* A batch's elements are recorded by the pass that validates the body, so the count
   * limit holds before any event is taken and no element is walked twice. Past
   * max_batch_events they are counted, not stored. */
  c->elems.max = (size_t)c->cfg->max_batch_events;
  int lr = kind == K_SINGLE ? evdoc_load(doc, body, len)
                            : evdoc_load_elems(doc, body, len, &c->elems);
  if (lr == -1) {
    reject(c, in, 0, EVENT_ERR_JSON, "the body is not valid JSON", body, len, ctx);
    flush_bad(c, ctx->received_us);
    st = 400, code = EVENT_ERR_JSON, msg = "the body is not valid JSON";
    goto fail;
  }
  if (lr == -2) {
    st = 400, code = EVENT_ERR_NOT_OBJECT, msg = "the body must be a JSON object";
    goto fail;
  }
  if (lr == -3) {
    st = 400, code = EVENT_ERR_FIELD, msg = "the body has duplicate or too many top-level fields";
    goto fail;
  }
  if (!hkey[0]) { /* a key in the Authorization header was checked by collect_handle */
    if (!evdoc_str(doc, "writeKey", hkey, 256)) hkey[0] = 0;
    st = check_write_key(c->cfg, hkey, strlen(hkey), &code, &msg);
    if (st) goto fail;
  }
  if (kind == K_SINGLE) {
    take_event(c, in, 0, ctx, body, len, 0);
  } else {
    if (c->elems.val.type != JSCAN_ARRAY) { /* the "batch" member evdoc_get finds */
      st = 400, code = EVENT_ERR_MISSING, msg = "the body must have a \"batch\" array";
      goto fail;
    }
    size_t count = c->elems.n;
    if (count > c->elems.max) {
      st = 413, code = EVENT_ERR_TOO_MANY, msg = "the batch has more events than max-batch-events";
      goto fail;
    }
    if (!count) {
      st = 400, code = "empty_batch", msg = "the batch holds no event";
      goto fail;
    }
    for (int i = 0; i < 2; i++)
      c->ndefaults[i] = evdoc_members(c->batch, default_names[i], &c->defaults[i]);
    for (size_t index = 0; index < count; index++) {
      const jscan_val_t *e = &c->elems.v[index];
      const char *raw = e->type == JSCAN_STRING ? e->p - 1 : e->p;
      size_t rawlen = e->type == JSCAN_STRING ? e->n + 2 : e->n;
      load_and_take(c, in, index, ctx, raw, rawlen, (long)index, 0);
    }
  }
  submit(c, in, ctx->received_us);
  return;
fail:
  buf_reset(&c->values);
  buf_reset(&c->badvals);
  fail_req(in, st, code, msg);
  ingest_free(in);
}

static void handle_query(collect_t *c, ingest_t *in, char *hkey, const enrich_ctx_t *ctx) {
  const char *code = NULL, *msg = NULL;
  char qkey[256];
  const char *q = http_req_query(in->req);
  buf_reset(&c->query_event);
  int st = qevent_build(c->qevent, q, strlen(q),
                        in->route->kind == K_REDIRECT ? QEVENT_REDIRECT : QEVENT_PIXEL,
                        &c->query_event, qkey, sizeof qkey, &in->redirect, &code, &msg) != 0
               ? 400
               : 0;
  if (!st && !hkey[0]) snprintf(hkey, 256, "%s", qkey);
  if (!st) st = check_write_key(c->cfg, hkey, strlen(hkey), &code, &msg);
  if (!st && in->route->kind == K_REDIRECT &&
      (!in->redirect || !collect_redirect_allowed(c->cfg, in->redirect))) {
    st = 400;
    code = "redirect_not_allowed";
    msg = in->redirect ? "the target host is not on the redirect-hosts allowlist"
                       : "the u parameter (target URL) is required";
  }
  take_built(c, in, st, code, msg, ctx);
}

void collect_emit(collect_t *c, const char *json, size_t len, void (*done)(void *ud, int rc),
                  void *ud) {
  static const route_t emit_route = {"emit", "POST", K_SINGLE, NULL, "emit"};
  ingest_t *in = ingest_new(c);
  in->route = &emit_route;
  in->emit_done = done;
  in->emit_ud = ud;
  if (log_error(c->log) || log_pending_bytes(c->log) >= c->cfg->max_queue_bytes) {
    fail_req(in, 503, "overloaded", "the event log cannot take the event");
    ingest_free(in);
    return;
  }
  enrich_ctx_t ctx = {clock_wall_us(), "", NULL, NULL, "", 1};
  enrich_ctx_prepare(&ctx);
  load_and_take(c, in, 0, &ctx, json, len, -1, 1);
  submit(c, in, ctx.received_us);
}

/* POST /v1/costs (admin key): the body becomes one "Marketing Cost" event (costs.h). */
static void handle_costs(collect_t *c, ingest_t *in, const char *hkey, const enrich_ctx_t *ctx) {
  const char *body, *code = NULL, *msg = NULL;
  size_t len;
  char err[128];
  int st = 0;
  key_kind_t k = hkey[0] ? keys_match(c->cfg, hkey, strlen(hkey)) : KEY_NONE;
  if (k != KEY_ADMIN)
    st = k != KEY_NONE ? 403 : 401, code = k != KEY_NONE ? "wrong_key_kind" : "unauthorized",
    msg = "costs need the admin key: Authorization: Bearer ADMIN_KEY";
  if (!st) st = decode_body(c, in, &body, &len, &code, &msg);
  buf_reset(&c->query_event);
  if (!st && costs_event(body, len, &c->query_event, err, sizeof err) != 0)
    st = 400, code = "bad_cost", msg = err;
  take_built(c, in, st, code, msg, ctx);
}

int collect_handle(collect_t *c, http_req_t *r) {
  const route_t *route = find_route(http_req_path(r));
  if (!route) return 0;
  http_req_set_route(r, route->label);
  ingest_t *in = ingest_new(c);
  in->req = r;
  in->route = route;

  /* The headers read below, found in one pass. */
  enum { H_ORIGIN, H_XFF, H_AUTHORIZATION, H_USER_AGENT, H_REFERER, H_CTYPE, H_CENCODING, H_N };
  static const http_hname_t names[H_N] = {
      HTTP_HNAME("Origin"),     HTTP_HNAME("X-Forwarded-For"), HTTP_HNAME("Authorization"),
      HTTP_HNAME("User-Agent"), HTTP_HNAME("Referer"),         HTTP_HNAME("Content-Type"),
      HTTP_HNAME("Content-Encoding")};
  const char *hv[H_N];
  http_req_headers(r, names, H_N, hv);
  in->content_type = hv[H_CTYPE];
  in->content_encoding = hv[H_CENCODING];
  const char *origin = hv[H_ORIGIN];
  const char *method = http_req_method(r);
  if (origin && *origin) {
    if (strlen(origin) >= sizeof in->origin ||
        !collect_origin_allowed(c->cfg, origin, http_req_header(r, "Host"))) {
      fail_req(in, 403, "origin_not_allowed", "this Origin is not on the cors-origins allowlist");
      ingest_free(in);
      return 1;
    }
    snprintf(in->origin, sizeof in->origin, "%s", origin);
  }
  if (method[0] == 'O' && strcmp(method, "OPTIONS") == 0) {
    preflight(in);
    ingest_free(in);
    return 1;
  }
  /* Methods are compared only when their first byte says they may match. */
  int is_get = (method[0] == 'G' && strcmp(method, "GET") == 0) ||
               (method[0] == 'H' && strcmp(method, "HEAD") == 0);
  if ((route->method[0] == 'G') ? !is_get : method[0] != 'P' || strcmp(method, "POST") != 0) {
    http_header_t h[5];
    size_t n = cors_headers(in, h, 0);
    h[n++] = (http_header_t){"Allow", route->method[0] == 'G' ? "GET, HEAD, OPTIONS" : "POST, OPTIONS"};
    http_respond_error(r, 405, "method_not_allowed",
                       route->method[0] == 'G' ? "use GET" : "use POST", h, n);
    ingest_free(in);
    return 1;
  }
  size_t blen;
  http_req_body(r, &blen);
  metrics_add(c->metrics, MC_REQUEST_BYTES, blen);
  if (log_error(c->log)) {
    fail_req(in, 503, "log_unavailable", "the event log failed; the server needs a restart");
    ingest_free(in);
    return 1;
  }
  if (log_pending_bytes(c->log) >= c->cfg->max_queue_bytes) {
    fail_req(in, 503, "overloaded", "the event log's write queue is full; retry later");
    ingest_free(in);
    return 1;
  }

  char ip[46];
  enrich_client_ip(http_req_peer(r), hv[H_XFF], &c->cfg->trusted_proxies, ip);
  uint32_t wait_s = ratelimit_take(c->limiter, ip, http_req_start_us(r));
  if (wait_s) {
    char ra[16];
    snprintf(ra, sizeof ra, "%u", wait_s);
    http_header_t h[5];
    size_t n = cors_headers(in, h, 0);
    h[n++] = (http_header_t){"Retry-After", ra};
    http_respond_error(r, 429, "rate_limited", "too many requests from this address; retry later", h, n);
    ingest_free(in);
    return 1;
  }

  char hkey[256];
  hkey[0] = 0;
  long kl = keys_from_authorization(hv[H_AUTHORIZATION], hkey, sizeof hkey);
  if (kl < 0) {
    fail_req(in, 401, "bad_authorization", "the Authorization header is malformed");
    ingest_free(in);
    return 1;
  }
  if (kl > 0) {
    const char *code, *msg;
    int st = check_write_key(c->cfg, hkey, (size_t)kl, &code, &msg);
    if (st) {
      fail_req(in, st, code, msg);
      ingest_free(in);
      return 1;
    }
  }

  enrich_ctx_t ctx = {clock_wall_us(), ip, hv[H_USER_AGENT], hv[H_REFERER], ""};
  enrich_ctx_prepare(&ctx);
  if (route->kind == K_COSTS)
    handle_costs(c, in, hkey, &ctx);
  else if (is_get)
    handle_query(c, in, hkey, &ctx);
  else
    handle_json(c, in, hkey, &ctx);
  return 1;
}
