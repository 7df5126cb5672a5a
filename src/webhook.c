/* webhook: durable signed deliveries over libcurl multi on libuv (see webhook.h).
 *
 * Every pending journal entry has a delivery_t (entry->ud) that is, at any moment, in
 * exactly one place: waiting for its record's sync (the unsynced FIFO), waiting for its
 * attempt (the heap, by next_at), or in flight (its easy handle in the multi). */
#include "webhook.h"

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "outbox.h"
#include "serve.h"
#include "util/buf.h"
#include "util/clock.h"
#include "util/hmac.h"
#include "util/mem.h"
#include "util/rand.h"

#define RESPONSE_CAP (64 * 1024)
#define COMPACT_MS 60000

typedef struct endpoint {
  char *name, *url, *secret;
  uint32_t timeout_ms;
} endpoint_t;

typedef struct delivery {
  webhook_t *w;
  outbox_entry_t *e;
  uint32_t attempts;
  int64_t next_at;       /* mono us */
  size_t heap_idx;       /* SIZE_MAX: not in the heap */
  uint64_t sync_gen;     /* the write generation its record belongs to */
  struct delivery *next; /* unsynced FIFO */
  CURL *easy;            /* in flight */
  struct curl_slist *headers;
  size_t received;       /* response bytes, capped */
  char error[CURL_ERROR_SIZE];
} delivery_t;

typedef struct sockctx {
  uv_poll_t poll;
  curl_socket_t fd;
  webhook_t *w;
} sockctx_t;

struct webhook {
  webhook_opts_t opts;
  char dir[4096];
  uv_loop_t *loop;
  outbox_t *ob;
  CURLM *multi;
  uv_timer_t curl_timer, retry_timer, compact_timer;
  int handles_open, stopping;
  endpoint_t *eps;
  size_t neps;
  delivery_t **heap;
  size_t heap_len, heap_cap;
  delivery_t *unsynced_head, *unsynced_tail;
  uint64_t write_gen;    /* bumped per journal record that a delivery waits for */
  uv_fs_t sync_req;
  int syncing;
  int sync_error;        /* sticky: a failed fdatasync of the journal */
  uint64_t sync_gen, sync_bytes;
  size_t in_flight;
  webhook_stats_t st;
  buf_t body;
};

static void pump(webhook_t *w);
static void on_retry_timer(uv_timer_t *t) { pump(t->data); }

/* ---- options and endpoints ---- */

void webhook_opts_from_config(const config_t *cfg, uv_loop_t *loop, webhook_opts_t *o,
                              char *dirbuf, size_t dirlen) {
  snprintf(dirbuf, dirlen, "%s/webhooks", cfg->data_dir);
  *o = (webhook_opts_t){
      .loop = loop,
      .dir = dirbuf,
      .timeout_ms = (uint32_t)cfg->webhook_timeout_ms,
      .max_attempts = (uint32_t)cfg->webhook_max_attempts,
      .retry_base_ms = (uint32_t)cfg->webhook_retry_base_ms,
      .retry_max_ms = (uint32_t)cfg->webhook_retry_max_ms,
      .max_in_flight = (uint32_t)cfg->webhook_max_in_flight,
      .outbox_max_bytes = cfg->webhook_outbox_max_bytes,
      .remember_us = (int64_t)cfg->webhook_remember_s * 1000000,
      .remember_max = cfg->webhook_remember_keys,
  };
}

static int name_ok(const char *s) {
  size_t n = s ? strlen(s) : 0;
  if (!n || n > OUTBOX_MAX_NAME) return 0;
  for (size_t i = 0; i < n; i++) {
    char c = s[i];
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
          c == '_' || c == '-' || c == '.'))
      return 0;
  }
  return 1;
}

static int url_ok(const char *u) {
  if (!u || strlen(u) > 2048) return 0;
  if (strncmp(u, "http://", 7) != 0 && strncmp(u, "https://", 8) != 0) return 0;
  for (const char *p = u; *p; p++)
    if ((unsigned char)*p <= ' ' || *p == 0x7f) return 0;
  return 1;
}

int webhook_parse_endpoint(const char *spec, webhook_endpoint_t *out, char *buf, size_t buflen,
                           char *err, size_t errlen) {
  memset(out, 0, sizeof *out);
  if (snprintf(buf, buflen, "%s", spec) >= (int)buflen) {
    snprintf(err, errlen, "webhook endpoint too long");
    return -EINVAL;
  }
  char *save = NULL;
  for (char *tok = strtok_r(buf, " \t", &save); tok; tok = strtok_r(NULL, " \t", &save)) {
    if (!out->name) {
      out->name = tok;
    } else if (!out->url) {
      out->url = tok;
    } else if (!strncmp(tok, "secret=", 7)) {
      out->secret = tok + 7;
    } else if (!strncmp(tok, "timeout-ms=", 11)) {
      char *end;
      unsigned long v = strtoul(tok + 11, &end, 10);
      if (!tok[11] || *end || v == 0 || v > 600000) {
        snprintf(err, errlen, "webhook endpoint '%s': timeout-ms must be 1..600000", out->name);
        return -EINVAL;
      }
      out->timeout_ms = (uint32_t)v;
    } else {
      snprintf(err, errlen, "webhook endpoint '%s': unknown part '%s' (expected "
               "\"NAME URL secret=SECRET [timeout-ms=N]\")", out->name, tok);
      return -EINVAL;
    }
  }
  if (!out->name || !out->url || !out->secret) {
    snprintf(err, errlen, "webhook endpoint '%s': expected \"NAME URL secret=SECRET "
             "[timeout-ms=N]\"", spec);
    return -EINVAL;
  }
  return 0;
}

static void endpoints_free(endpoint_t *eps, size_t n) {
  for (size_t i = 0; i < n; i++) {
    free(eps[i].name);
    free(eps[i].url);
    free(eps[i].secret);
  }
  free(eps);
}

int webhook_set_endpoints(webhook_t *w, const webhook_endpoint_t *eps, size_t n, char *err,
                          size_t errlen) {
  for (size_t i = 0; i < n; i++) {
    const char *why = !name_ok(eps[i].name)    ? "the name must be 1-64 of A-Z a-z 0-9 _ . -"
                      : !url_ok(eps[i].url)    ? "the URL must be http:// or https:// without spaces"
                      : !eps[i].secret || !*eps[i].secret ? "the secret must not be empty"
                                                          : NULL;
    for (size_t j = 0; j < i && !why; j++)
      if (!strcmp(eps[i].name, eps[j].name)) why = "the name is given twice";
    if (why) {
      snprintf(err, errlen, "webhook endpoint '%s': %s", eps[i].name ? eps[i].name : "", why);
      return -EINVAL;
    }
  }
  endpoint_t *copy = xcalloc(n ? n : 1, sizeof *copy);
  for (size_t i = 0; i < n; i++)
    copy[i] = (endpoint_t){xstrdup(eps[i].name), xstrdup(eps[i].url), xstrdup(eps[i].secret),
                           eps[i].timeout_ms};
  endpoints_free(w->eps, w->neps);
  w->eps = copy;
  w->neps = n;
  return 0;
}

static const endpoint_t *endpoint_find(const webhook_t *w, const char *name) {
  for (size_t i = 0; i < w->neps; i++)
    if (!strcmp(w->eps[i].name, name)) return &w->eps[i];
  return NULL;
}

/* ---- the heap of deliveries waiting for their attempt ---- */

static void heap_swap(webhook_t *w, size_t a, size_t b) {
  delivery_t *t = w->heap[a];
  w->heap[a] = w->heap[b];
  w->heap[b] = t;
  w->heap[a]->heap_idx = a;
  w->heap[b]->heap_idx = b;
}

static void heap_push(webhook_t *w, delivery_t *d) {
  if (w->heap_len == w->heap_cap) {
    w->heap_cap = w->heap_cap ? w->heap_cap * 2 : 64;
    w->heap = xrealloc(w->heap, w->heap_cap * sizeof *w->heap);
  }
  size_t i = w->heap_len++;
  w->heap[i] = d;
  d->heap_idx = i;
  while (i && w->heap[(i - 1) / 2]->next_at > w->heap[i]->next_at) {
    heap_swap(w, i, (i - 1) / 2);
    i = (i - 1) / 2;
  }
}

static delivery_t *heap_pop(webhook_t *w) {
  delivery_t *top = w->heap[0];
  heap_swap(w, 0, --w->heap_len);
  top->heap_idx = SIZE_MAX;
  for (size_t i = 0;;) {
    size_t l = 2 * i + 1, r = l + 1, m = i;
    if (l < w->heap_len && w->heap[l]->next_at < w->heap[m]->next_at) m = l;
    if (r < w->heap_len && w->heap[r]->next_at < w->heap[m]->next_at) m = r;
    if (m == i) break;
    heap_swap(w, i, m);
    i = m;
  }
  return top;
}

/* ---- durability: one fdatasync for all records written meanwhile ---- */

static void start_sync(webhook_t *w);

static void on_synced(uv_fs_t *req) {
  webhook_t *w = req->data;
  int ok = req->result == 0;
  uv_fs_req_cleanup(req);
  w->syncing = 0;
  /* A failed sync leaves the journal's durability unknown: new actions are refused from
   * now on (sticky), and the ones written are still tried — a receiver getting them is
   * better than nobody. */
  if (ok) outbox_synced(w->ob, w->sync_bytes);
  else w->sync_error = (int)req->result;
  int64_t now = clock_mono_us();
  while (w->unsynced_head && w->unsynced_head->sync_gen <= w->sync_gen) {
    delivery_t *d = w->unsynced_head;
    w->unsynced_head = d->next;
    if (!w->unsynced_head) w->unsynced_tail = NULL;
    d->next = NULL;
    d->next_at = now;
    heap_push(w, d);
  }
  if (w->stopping) return;
  if (ok) start_sync(w);
  pump(w);
}

static void start_sync(webhook_t *w) {
  if (w->syncing || w->stopping || !outbox_unsynced(w->ob)) return;
  w->sync_gen = w->write_gen;
  w->sync_bytes = outbox_unsynced(w->ob);
  w->sync_req.data = w;
  if (uv_fs_fdatasync(w->loop, &w->sync_req, outbox_fd(w->ob), on_synced) == 0) w->syncing = 1;
}

/* ---- deliveries ---- */

static delivery_t *delivery_new(webhook_t *w, outbox_entry_t *e) {
  delivery_t *d = xcalloc(1, sizeof *d);
  d->w = w;
  d->e = e;
  d->heap_idx = SIZE_MAX;
  e->ud = d;
  return d;
}

static void delivery_free(delivery_t *d) {
  if (d->e) d->e->ud = NULL;
  curl_slist_free_all(d->headers);
  free(d);
}

static size_t on_body(char *p, size_t size, size_t n, void *ud) {
  delivery_t *d = ud;
  d->received += size * n;
  return d->received > RESPONSE_CAP ? 0 : size * n; /* 0 ends the transfer */
}

/* Start one attempt. Returns 0, or -1 when it failed before any I/O (then handled as a
 * failed attempt by the caller). */
static int attempt(webhook_t *w, delivery_t *d) {
  const endpoint_t *ep = endpoint_find(w, d->e->endpoint);
  if (!ep) {
    snprintf(d->error, sizeof d->error, "no endpoint named '%s'", d->e->endpoint);
    return -1;
  }
  char t[24], hex[65], sig[128], idem[ACTION_KEY_MAX + 20];
  int tl = snprintf(t, sizeof t, "%lld", (long long)(clock_wall_us() / 1000000));
  const void *parts[] = {t, ".", d->e->body};
  size_t lens[] = {(size_t)tl, 1, d->e->body_len};
  hmac_sha256_hex(ep->secret, strlen(ep->secret), parts, lens, 3, hex);
  snprintf(sig, sizeof sig, "Sluice-Signature: t=%s,v1=%s", t, hex);
  snprintf(idem, sizeof idem, "Idempotency-Key: %s", d->e->key);
  curl_slist_free_all(d->headers);
  d->headers = NULL;
  d->headers = curl_slist_append(d->headers, "Content-Type: application/json");
  d->headers = curl_slist_append(d->headers, "User-Agent: sluice/" SLUICE_VERSION);
  d->headers = curl_slist_append(d->headers, "Expect:");
  d->headers = curl_slist_append(d->headers, idem);
  d->headers = curl_slist_append(d->headers, sig);
  CURL *c = curl_easy_init();
  if (!c || !d->headers) {
    if (c) curl_easy_cleanup(c);
    snprintf(d->error, sizeof d->error, "out of memory");
    return -1;
  }
  long timeout = ep->timeout_ms ? ep->timeout_ms : w->opts.timeout_ms;
  d->error[0] = 0;
  d->received = 0;
  curl_easy_setopt(c, CURLOPT_URL, ep->url);
  curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, timeout);
  curl_easy_setopt(c, CURLOPT_POST, 1L);
  curl_easy_setopt(c, CURLOPT_POSTFIELDS, d->e->body);
  curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)d->e->body_len);
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, d->headers);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, d);
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, d->error);
  curl_easy_setopt(c, CURLOPT_PRIVATE, d);
  if (curl_multi_add_handle(w->multi, c) != CURLM_OK) {
    curl_easy_cleanup(c);
    snprintf(d->error, sizeof d->error, "cannot start the transfer");
    return -1;
  }
  d->easy = c;
  w->in_flight++;
  return 0;
}

/* Wait before attempt n+1 after n failures: base * 2^(n-1), capped, drawn uniformly
 * from its upper half. */
static int64_t backoff_us(const webhook_t *w, uint32_t failures) {
  uint64_t ms = w->opts.retry_base_ms;
  for (uint32_t i = 1; i < failures && ms < w->opts.retry_max_ms; i++) ms *= 2;
  if (ms > w->opts.retry_max_ms) ms = w->opts.retry_max_ms;
  uint32_t r;
  rand_bytes(&r, sizeof r);
  uint64_t half = ms * 1000 / 2;
  return (int64_t)(half + (half ? r % (half + 1) : 0));
}

static void dead_letter_line(webhook_t *w, const delivery_t *d) {
  char path[4200], iso[25];
  snprintf(path, sizeof path, "%s/dead-letters.jsonl", w->dir);
  FILE *f = fopen(path, "a");
  if (!f) return;
  buf_t *b = &w->body;
  buf_reset(b);
  clock_format_iso(clock_wall_us(), iso);
  buf_printf(b, "{\"key\":\"%s\",\"endpoint\":\"%s\",\"failedAt\":\"%s\",\"attempts\":%u,"
             "\"lastError\":\"", d->e->key, d->e->endpoint, iso, d->attempts);
  buf_json_escape(b, d->error, strlen(d->error));
  buf_puts(b, "\",\"body\":");
  buf_append(b, d->e->body, d->e->body_len);
  buf_puts(b, "}\n");
  fwrite(b->data, 1, b->len, f);
  fclose(f);
}

/* An attempt ended: done, retried later or dead. */
static void finished(webhook_t *w, delivery_t *d, int delivered) {
  outbox_entry_t *e = d->e;
  if (delivered) {
    w->st.delivered++;
    outbox_done(w->ob, e, clock_wall_us());
    delivery_free(d);
    start_sync(w);
    return;
  }
  w->st.failed_attempts++;
  d->attempts++;
  if (d->attempts >= w->opts.max_attempts) {
    w->st.dead_letters++;
    dead_letter_line(w, d);
    outbox_dead(w->ob, e, clock_wall_us());
    delivery_free(d);
    start_sync(w);
    return;
  }
  w->st.retries++;
  d->next_at = clock_mono_us() + backoff_us(w, d->attempts);
  heap_push(w, d);
}

static void check_done(webhook_t *w) {
  CURLMsg *m;
  int left;
  while ((m = curl_multi_info_read(w->multi, &left))) {
    if (m->msg != CURLMSG_DONE) continue;
    CURL *c = m->easy_handle;
    CURLcode res = m->data.result;
    delivery_t *d = NULL;
    long code = 0;
    curl_easy_getinfo(c, CURLINFO_PRIVATE, (char **)&d);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
    curl_multi_remove_handle(w->multi, c);
    curl_easy_cleanup(c);
    d->easy = NULL;
    w->in_flight--;
    /* A 2xx counts even when we cut a long response body short. */
    int ok = code >= 200 && code < 300 && (res == CURLE_OK || res == CURLE_WRITE_ERROR);
    if (!ok && code)
      snprintf(d->error, sizeof d->error, "HTTP %ld", code);
    else if (!ok && !d->error[0])
      snprintf(d->error, sizeof d->error, "%s", curl_easy_strerror(res));
    finished(w, d, ok);
  }
}

/* Start every attempt that is due, up to max_in_flight; arm the timer for the next. */
static void pump(webhook_t *w) {
  if (w->stopping) return;
  int64_t now = clock_mono_us();
  while (w->heap_len && w->in_flight < w->opts.max_in_flight && w->heap[0]->next_at <= now) {
    delivery_t *d = heap_pop(w);
    if (attempt(w, d) != 0) finished(w, d, 0);
  }
  if (w->heap_len && w->in_flight < w->opts.max_in_flight) {
    int64_t wait = w->heap[0]->next_at - now;
    uv_timer_start(&w->retry_timer, on_retry_timer, wait > 0 ? (uint64_t)(wait + 999) / 1000 : 0, 0);
  }
}

/* ---- libcurl multi on the libuv loop ---- */

static void on_poll(uv_poll_t *h, int status, int events) {
  sockctx_t *s = h->data;
  webhook_t *w = s->w;
  int flags = 0, running;
  if (status < 0) flags = CURL_CSELECT_ERR;
  if (events & UV_READABLE) flags |= CURL_CSELECT_IN;
  if (events & UV_WRITABLE) flags |= CURL_CSELECT_OUT;
  curl_multi_socket_action(w->multi, s->fd, flags, &running);
  check_done(w);
  pump(w);
}

static void on_handle_closed(uv_handle_t *h) {
  webhook_t *w = ((sockctx_t *)h->data)->w;
  w->handles_open--;
  free(h->data);
}

static int on_socket(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp) {
  webhook_t *w = userp;
  sockctx_t *s = socketp;
  if (what == CURL_POLL_REMOVE) {
    if (s) {
      uv_poll_stop(&s->poll);
      uv_close((uv_handle_t *)&s->poll, on_handle_closed);
      curl_multi_assign(w->multi, fd, NULL);
    }
    return 0;
  }
  if (!s) {
    s = xcalloc(1, sizeof *s);
    s->fd = fd;
    s->w = w;
    if (uv_poll_init_socket(w->loop, &s->poll, fd) != 0) {
      free(s);
      return -1;
    }
    s->poll.data = s;
    w->handles_open++;
    curl_multi_assign(w->multi, fd, s);
  }
  int ev = (what & CURL_POLL_IN ? UV_READABLE : 0) | (what & CURL_POLL_OUT ? UV_WRITABLE : 0);
  uv_poll_start(&s->poll, ev, on_poll);
  return 0;
}

static void on_curl_timeout(uv_timer_t *t) {
  webhook_t *w = t->data;
  int running;
  curl_multi_socket_action(w->multi, CURL_SOCKET_TIMEOUT, 0, &running);
  check_done(w);
  pump(w);
}

static int on_curl_timer(CURLM *m, long timeout_ms, void *userp) {
  webhook_t *w = userp;
  if (timeout_ms < 0) uv_timer_stop(&w->curl_timer);
  else uv_timer_start(&w->curl_timer, on_curl_timeout, (uint64_t)timeout_ms, 0);
  return 0;
}

static void on_compact(uv_timer_t *t) {
  webhook_t *w = t->data;
  if (!w->syncing) outbox_compact(w->ob, clock_wall_us());
}

/* ---- life cycle ---- */

static void resume(void *ud, outbox_entry_t *e) {
  webhook_t *w = ud;
  delivery_t *d = delivery_new(w, e);
  d->next_at = clock_mono_us();
  heap_push(w, d);
}

webhook_t *webhook_new(const webhook_opts_t *o, char *err, size_t errlen) {
  static int curl_ready;
  if (!o || !o->loop || !o->dir) {
    snprintf(err, errlen, "webhook: loop and dir are required");
    return NULL;
  }
  if (!curl_ready) {
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
      snprintf(err, errlen, "cannot initialise libcurl");
      return NULL;
    }
    curl_ready = 1;
  }
  webhook_t *w = xcalloc(1, sizeof *w);
  w->opts = *o;
  snprintf(w->dir, sizeof w->dir, "%s", o->dir);
  w->opts.dir = w->dir;
  if (!w->opts.timeout_ms) w->opts.timeout_ms = 10000;
  if (!w->opts.max_attempts) w->opts.max_attempts = 10;
  if (!w->opts.retry_base_ms) w->opts.retry_base_ms = 1000;
  if (!w->opts.retry_max_ms) w->opts.retry_max_ms = 3600000;
  if (w->opts.retry_max_ms < w->opts.retry_base_ms) w->opts.retry_max_ms = w->opts.retry_base_ms;
  if (!w->opts.max_in_flight) w->opts.max_in_flight = 64;
  w->loop = o->loop;
  outbox_opts_t oo = {o->outbox_max_bytes, o->remember_us, o->remember_max};
  if (!(w->ob = outbox_open(w->dir, &oo, err, errlen))) {
    free(w);
    return NULL;
  }
  w->multi = curl_multi_init();
  curl_multi_setopt(w->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
  curl_multi_setopt(w->multi, CURLMOPT_SOCKETDATA, w);
  curl_multi_setopt(w->multi, CURLMOPT_TIMERFUNCTION, on_curl_timer);
  curl_multi_setopt(w->multi, CURLMOPT_TIMERDATA, w);
  uv_timer_t *timers[] = {&w->curl_timer, &w->retry_timer, &w->compact_timer};
  for (int i = 0; i < 3; i++) {
    uv_timer_init(w->loop, timers[i]);
    timers[i]->data = w;
  }
  w->handles_open = 3;
  uv_timer_start(&w->compact_timer, on_compact, COMPACT_MS, COMPACT_MS);
  outbox_compact(w->ob, clock_wall_us());
  outbox_each(w->ob, OUTBOX_PENDING, resume, w);
  uv_timer_start(&w->retry_timer, on_retry_timer, 0, 0);
  return w;
}

static void on_timer_closed(uv_handle_t *h) { ((webhook_t *)h->data)->handles_open--; }

static void abort_transfer(void *ud, outbox_entry_t *e) {
  webhook_t *w = ud;
  delivery_t *d = e->ud;
  if (!d || !d->easy) return;
  curl_multi_remove_handle(w->multi, d->easy);
  curl_easy_cleanup(d->easy);
  d->easy = NULL;
}

void webhook_stop(webhook_t *w) {
  if (!w || w->stopping) return;
  w->stopping = 1;
  /* In-flight transfers end here; their entries stay pending in the journal. */
  outbox_each(w->ob, OUTBOX_PENDING, abort_transfer, w);
  curl_multi_cleanup(w->multi);
  w->multi = NULL;
  w->in_flight = 0;
  uv_timer_t *timers[] = {&w->curl_timer, &w->retry_timer, &w->compact_timer};
  for (int i = 0; i < 3; i++) uv_close((uv_handle_t *)timers[i], on_timer_closed);
}

static void free_delivery(void *ud, outbox_entry_t *e) {
  if (e->ud) delivery_free(e->ud);
}

void webhook_free(webhook_t *w) {
  if (!w) return;
  if (!w->stopping) webhook_stop(w);
  outbox_sync(w->ob);
  outbox_each(w->ob, OUTBOX_PENDING, free_delivery, NULL);
  outbox_close(w->ob);
  endpoints_free(w->eps, w->neps);
  free(w->heap);
  buf_free(&w->body);
  free(w);
}

/* ---- the sink ---- */

static void put_str_or_null(buf_t *b, const char *name, const char *v) {
  buf_printf(b, ",\"%s\":", name);
  if (!v) {
    buf_puts(b, "null");
    return;
  }
  buf_putc(b, '"');
  buf_json_escape(b, v, strlen(v));
  buf_putc(b, '"');
}

int webhook_sink(void *ud, const action_t *a) {
  webhook_t *w = ud;
  if (a->kind != ACTION_WEBHOOK || !a->target || w->stopping) return -EINVAL;
  if (w->sync_error) return -EIO;
  if (!endpoint_find(w, a->target)) return -ENOENT;
  outbox_entry_t *known = outbox_find(w->ob, a->key);
  if (known) {
    w->st.duplicates++;
    return 0;
  }
  cJSON *p = cJSON_Parse(a->payload ? a->payload : "{}");
  int ok = cJSON_IsObject(p);
  cJSON_Delete(p);
  if (!ok) return -EINVAL;
  buf_t *b = &w->body;
  buf_reset(b);
  char iso[25];
  clock_format_iso(a->decided_us, iso);
  buf_puts(b, "{\"key\":\"");
  buf_json_escape(b, a->key, strnlen(a->key, ACTION_KEY_MAX));
  buf_putc(b, '"');
  put_str_or_null(b, "endpoint", a->target);
  put_str_or_null(b, "rule", a->rule);
  put_str_or_null(b, "userId", a->user_id);
  put_str_or_null(b, "anonymousId", a->anonymous_id);
  buf_printf(b, ",\"decidedAt\":\"%s\",\"payload\":%s}", iso, a->payload ? a->payload : "{}");
  outbox_entry_t *e;
  int rc = outbox_add(w->ob, a->key, a->target, b->data, b->len, clock_wall_us(), &e);
  if (b->cap > 256 * 1024) buf_free(b);
  if (rc == -ENOSPC) w->st.refused++;
  if (rc == -EEXIST) {
    w->st.duplicates++;
    return 0;
  }
  if (rc) return rc == -ENOSPC || rc == -E2BIG || rc == -EINVAL ? rc : -EIO;
  delivery_t *d = delivery_new(w, e);
  d->sync_gen = ++w->write_gen;
  if (w->unsynced_tail) w->unsynced_tail->next = d;
  else w->unsynced_head = d;
  w->unsynced_tail = d;
  start_sync(w);
  return 0;
}

static void requeued(void *ud, outbox_entry_t *e) {
  webhook_t *w = ud;
  delivery_t *d = delivery_new(w, e);
  d->next_at = clock_mono_us();
  heap_push(w, d);
}

long webhook_redeliver(webhook_t *w, const char *key) {
  long n = outbox_requeue(w->ob, key, requeued, w);
  if (n > 0) {
    start_sync(w);
    pump(w);
  }
  return n;
}

void webhook_stats(const webhook_t *w, webhook_stats_t *out) {
  *out = w->st;
  outbox_stats_t os;
  outbox_stats(w->ob, &os);
  out->pending = os.pending;
  out->dead = os.dead;
  out->in_flight = w->in_flight;
}
