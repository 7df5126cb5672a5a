/* sse: the Server-Sent Events hub (see sse.h) — channels of subscribers over http
 * streams, a replay ring per channel, one heartbeat timer.
 *
 * Ownership:
 * - A subscriber (sub_t) is linked in its channel while attached. It is freed only in its
 *   stream's on_close callback, which http runs from a close callback, never inside an
 *   http_stream_* call: so a publish walking a channel can detach subscribers (falling
 *   behind, write failed) without any of them being freed under its feet. Detached
 *   (chan == NULL) means the hub forgot it; on_close then only frees it. That is also how
 *   sse_hub_free leaves the streams it ends pointing at nothing freed.
 * - A channel without subscribers sits in the idle list, ordered by the time it may be
 *   freed: at once when it has no event to replay, else replay_ms after its last event.
 *   The heartbeat tick frees the expired head of that list; a channel left empty by a
 *   client going away (outside any walk) with nothing to replay is freed right away.
 * - An event's frame is one allocation, shared by the ring and every write (http copies
 *   what the kernel does not take at once). */
#include "sse.h"

#include <errno.h>
#include <inttypes.h>
#include <string.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "util/buf.h"
#include "util/clock.h"
#include "util/mem.h"
#include "util/rand.h"

#define RETRY_LINE "retry: 3000\n\n"
#define HEARTBEAT ": hb\n\n"

typedef struct chan chan_t;

typedef struct event {
  uint64_t id;
  int64_t at_us; /* clock_mono_us at publish */
  size_t len;
  char frame[];
} event_t;

typedef struct sub {
  chan_t *chan; /* NULL once detached */
  http_stream_t *stream;
  struct sub *prev, *next;
} sub_t;

struct chan {
  sse_hub_t *hub;
  chan_t *hnext;          /* hash bucket chain */
  chan_t *iprev, *inext;  /* idle list, while in_idle */
  int64_t free_at_us;     /* idle: may be freed from then on */
  int in_idle;
  uint64_t hash;
  sub_t *subs;
  size_t nsubs;
  event_t **ring;         /* replay_events slots, allocated at the first event */
  uint32_t ring_start, ring_len;
  size_t name_len;
  char name[];
};

struct sse_hub {
  uv_loop_t *loop;
  uv_timer_t timer;
  sse_opts_t opts;
  uint64_t seed;
  chan_t **buckets;
  size_t nbuckets; /* power of two */
  size_t nchans;
  chan_t *idle_head, *idle_tail;
  size_t nsubs;
  uint64_t next_id;
  buf_t scratch; /* framing */
};

static const sse_opts_t default_opts = {
    .heartbeat_ms = 15000,
    .replay_events = 16,
    .replay_ms = 60000,
    .max_queue_bytes = 64 * 1024,
    .max_subscribers = 100000,
};

/* ---- Channels ---- */

static uint64_t name_hash(const sse_hub_t *h, const char *name, size_t len) {
  return XXH3_64bits_withSeed(name, len, h->seed);
}

static chan_t *chan_find(const sse_hub_t *h, const char *name, size_t len, uint64_t hash) {
  for (chan_t *c = h->buckets[hash & (h->nbuckets - 1)]; c; c = c->hnext)
    if (c->hash == hash && c->name_len == len && memcmp(c->name, name, len) == 0) return c;
  return NULL;
}

static void grow_buckets(sse_hub_t *h) {
  size_t n = h->nbuckets * 2;
  chan_t **b = xcalloc(n, sizeof *b);
  for (size_t i = 0; i < h->nbuckets; i++) {
    chan_t *c = h->buckets[i];
    while (c) {
      chan_t *next = c->hnext;
      c->hnext = b[c->hash & (n - 1)];
      b[c->hash & (n - 1)] = c;
      c = next;
    }
  }
  free(h->buckets);
  h->buckets = b;
  h->nbuckets = n;
}

static chan_t *chan_get(sse_hub_t *h, const char *name, size_t len) {
  uint64_t hash = name_hash(h, name, len);
  chan_t *c = chan_find(h, name, len, hash);
  if (c) return c;
  if (h->nchans >= h->nbuckets) grow_buckets(h);
  c = xcalloc(1, sizeof *c + len + 1);
  c->hub = h;
  c->hash = hash;
  c->name_len = len;
  memcpy(c->name, name, len);
  size_t b = hash & (h->nbuckets - 1);
  c->hnext = h->buckets[b];
  h->buckets[b] = c;
  h->nchans++;
  return c;
}

static void idle_unlink(chan_t *c) {
  sse_hub_t *h = c->hub;
  if (!c->in_idle) return;
  if (c->iprev) c->iprev->inext = c->inext;
  else h->idle_head = c->inext;
  if (c->inext) c->inext->iprev = c->iprev;
  else h->idle_tail = c->iprev;
  c->iprev = c->inext = NULL;
  c->in_idle = 0;
}

static void ring_clear(chan_t *c) {
  uint32_t cap = c->hub->opts.replay_events;
  for (uint32_t i = 0; i < c->ring_len; i++) free(c->ring[(c->ring_start + i) % cap]);
  free(c->ring);
  c->ring = NULL;
  c->ring_start = c->ring_len = 0;
}

/* Remove from the table and free; the channel has no subscriber. */
static void chan_free(chan_t *c) {
  sse_hub_t *h = c->hub;
  idle_unlink(c);
  chan_t **pp = &h->buckets[c->hash & (h->nbuckets - 1)];
  while (*pp != c) pp = &(*pp)->hnext;
  *pp = c->hnext;
  h->nchans--;
  ring_clear(c);
  free(c);
}

/* Newest event still replayable, or NULL. */
static const event_t *ring_newest(const chan_t *c) {
  if (!c->ring_len) return NULL;
  uint32_t cap = c->hub->opts.replay_events;
  return c->ring[(c->ring_start + c->ring_len - 1) % cap];
}

/* The channel just lost its last subscriber, or got an event while it has none: queue
 * it to be freed once nothing in it can be replayed. may_free: not inside a walk over
 * channels or subscribers, so a channel with nothing to replay can go at once. */
static void chan_idle(chan_t *c, int may_free) {
  sse_hub_t *h = c->hub;
  if (c->nsubs) return;
  const event_t *e = ring_newest(c);
  int64_t now = clock_mono_us();
  int64_t until = e ? e->at_us + (int64_t)h->opts.replay_ms * 1000 : 0;
  if (until <= now && may_free) {
    chan_free(c);
    return;
  }
  idle_unlink(c);
  /* Keep the list ordered by free_at_us: nothing to replay goes first, the others last
   * (their last event is the newest of all idle channels, or at least no older than when
   * the channel emptied, so now + replay_ms bounds it from above). */
  c->in_idle = 1;
  if (until <= now) {
    c->free_at_us = 0;
    c->inext = h->idle_head;
    if (h->idle_head) h->idle_head->iprev = c;
    else h->idle_tail = c;
    h->idle_head = c;
  } else {
    c->free_at_us = now + (int64_t)h->opts.replay_ms * 1000;
    c->iprev = h->idle_tail;
    if (h->idle_tail) h->idle_tail->inext = c;
    else h->idle_head = c;
    h->idle_tail = c;
  }
}

static void sweep_idle(sse_hub_t *h) {
  int64_t now = clock_mono_us();
  while (h->idle_head && h->idle_head->free_at_us <= now) chan_free(h->idle_head);
}

/* ---- Subscribers ---- */

static void sub_unlink(sub_t *s) {
  chan_t *c = s->chan;
  if (s->prev) s->prev->next = s->next;
  else c->subs = s->next;
  if (s->next) s->next->prev = s->prev;
  s->prev = s->next = NULL;
  s->chan = NULL;
  c->nsubs--;
  c->hub->nsubs--;
}

static void on_sub_close(void *ud) {
  sub_t *s = ud;
  chan_t *c = s->chan;
  if (c) { /* the client went away: runs from a close callback, outside any walk */
    sub_unlink(s);
    chan_idle(c, 1);
  }
  free(s);
}

/* Detach and end: the subscriber fell behind or its write failed. Used inside walks,
 * so the channel is only queued for freeing; on_sub_close frees the subscriber later. */
static void sub_drop(sub_t *s) {
  chan_t *c = s->chan;
  sub_unlink(s);
  http_stream_end(s->stream);
  chan_idle(c, 0);
}

/* Write to every subscriber of c; returns how many took it. */
static int chan_write(chan_t *c, const char *data, size_t len) {
  int reached = 0;
  sub_t *next;
  for (sub_t *s = c->subs; s; s = next) {
    next = s->next;
    if (http_stream_write(s->stream, data, len) == 0) reached++;
    else sub_drop(s);
  }
  return reached;
}

/* ---- Heartbeat ---- */

static void on_tick(uv_timer_t *t) {
  sse_hub_t *h = t->data;
  for (size_t i = 0; i < h->nbuckets; i++)
    for (chan_t *c = h->buckets[i]; c; c = c->hnext)
      if (c->nsubs) chan_write(c, HEARTBEAT, sizeof HEARTBEAT - 1);
  sweep_idle(h);
}

/* ---- Hub ---- */

sse_hub_t *sse_hub_new(uv_loop_t *loop, const sse_opts_t *opts) {
  if (!loop) return NULL;
  sse_hub_t *h = xcalloc(1, sizeof *h);
  h->loop = loop;
  h->opts = default_opts;
  if (opts) {
    if (opts->heartbeat_ms) h->opts.heartbeat_ms = opts->heartbeat_ms;
    if (opts->replay_events) h->opts.replay_events = opts->replay_events;
    if (opts->replay_ms) h->opts.replay_ms = opts->replay_ms;
    if (opts->max_queue_bytes) h->opts.max_queue_bytes = opts->max_queue_bytes;
    if (opts->max_subscribers) h->opts.max_subscribers = opts->max_subscribers;
  }
  rand_bytes(&h->seed, sizeof h->seed);
  int64_t wall = clock_wall_us();
  h->next_id = wall > 0 ? (uint64_t)wall : 1;
  h->nbuckets = 64;
  h->buckets = xcalloc(h->nbuckets, sizeof *h->buckets);
  if (uv_timer_init(loop, &h->timer) < 0) goto fail;
  h->timer.data = h;
  uv_timer_start(&h->timer, on_tick, h->opts.heartbeat_ms, h->opts.heartbeat_ms);
  return h;
fail:
  free(h->buckets);
  free(h);
  return NULL;
}

static void on_timer_close(uv_handle_t *t) {
  sse_hub_t *h = t->data;
  buf_free(&h->scratch);
  free(h->buckets);
  free(h);
}

void sse_hub_free(sse_hub_t *h) {
  if (!h) return;
  for (size_t i = 0; i < h->nbuckets; i++) {
    chan_t *c = h->buckets[i];
    while (c) {
      chan_t *next = c->hnext;
      while (c->subs) {
        sub_t *s = c->subs;
        sub_unlink(s); /* detached: its on_close only frees it */
        http_stream_end(s->stream);
      }
      chan_free(c);
      c = next;
    }
  }
  uv_close((uv_handle_t *)&h->timer, on_timer_close);
}

size_t sse_subscribers(const sse_hub_t *h, const char *channel) {
  if (!channel) return h->nsubs;
  size_t len = strlen(channel);
  const chan_t *c = chan_find(h, channel, len, name_hash(h, channel, len));
  return c ? c->nsubs : 0;
}

size_t sse_channels(const sse_hub_t *h) { return h->nchans; }

/* ---- Subscribe ---- */

/* A Last-Event-ID: decimal digits only, no overflow. */
static int parse_id(const char *s, uint64_t *out) {
  if (!s || !*s) return 0;
  uint64_t v = 0;
  for (; *s; s++) {
    if (*s < '0' || *s > '9') return 0;
    unsigned d = (unsigned)(*s - '0');
    if (v > (UINT64_MAX - d) / 10) return 0;
    v = v * 10 + d;
  }
  *out = v;
  return 1;
}

int sse_subscribe(sse_hub_t *h, http_req_t *r, const char *channel,
                  const char *last_event_id) {
  return sse_subscribe_with(h, r, channel, last_event_id, NULL, 0);
}

int sse_subscribe_with(sse_hub_t *h, http_req_t *r, const char *channel,
                       const char *last_event_id, const http_header_t *extra, size_t nextra) {
  if (!h || !r || !channel) return -EINVAL;
  size_t len = strlen(channel);
  if (len == 0 || len > SSE_MAX_CHANNEL) return -EINVAL;
  if (h->nsubs >= h->opts.max_subscribers) return -ENOSPC;
  /* Both strings may live in r, which the stream start releases. */
  uint64_t last = 0;
  int replay = parse_id(last_event_id, &last);
  chan_t *c = chan_get(h, channel, len);
  http_header_t headers[11] = {{"Content-Type", "text/event-stream"},
                               {"Cache-Control", "no-store"},
                               {"X-Accel-Buffering", "no"}};
  size_t nh = 3;
  for (size_t i = 0; i < nextra && nh < sizeof headers / sizeof headers[0]; i++)
    headers[nh++] = extra[i];
  http_stream_t *st = http_stream_start(r, 200, headers, nh);
  if (!st) {
    chan_idle(c, 1);
    return -EPIPE;
  }
  sub_t *s = xcalloc(1, sizeof *s);
  s->chan = c;
  s->stream = st;
  s->next = c->subs;
  if (c->subs) c->subs->prev = s;
  c->subs = s;
  c->nsubs++;
  h->nsubs++;
  idle_unlink(c);
  http_stream_set_max_queue(st, h->opts.max_queue_bytes);
  http_stream_on_close(st, on_sub_close, s);

  buf_t *b = &h->scratch;
  buf_reset(b);
  buf_append(b, RETRY_LINE, sizeof RETRY_LINE - 1);
  if (replay) {
    int64_t oldest = clock_mono_us() - (int64_t)h->opts.replay_ms * 1000;
    uint32_t cap = h->opts.replay_events;
    for (uint32_t i = 0; i < c->ring_len; i++) {
      const event_t *e = c->ring[(c->ring_start + i) % cap];
      if (e->id > last && e->at_us >= oldest) buf_append(b, e->frame, e->len);
    }
  }
  /* An empty queue takes any length, so a long replay is not refused. */
  if (http_stream_write(st, b->data, b->len) < 0) sub_drop(s);
  if (b->cap > 64 * 1024) buf_free(b);
  return 0;
}

/* ---- Publish ---- */

/* "id: N\n[event: T\n]data: line\n...\n" — every line of data its own data: line. */
static void frame_event(buf_t *b, uint64_t id, const char *type, const char *data) {
  buf_reset(b);
  buf_printf(b, "id: %" PRIu64 "\n", id);
  if (type) {
    buf_append(b, "event: ", 7);
    buf_puts(b, type);
    buf_putc(b, '\n');
  }
  const char *p = data ? data : "";
  for (;;) {
    size_t n = strcspn(p, "\r\n");
    buf_append(b, "data: ", 6);
    buf_append(b, p, n);
    buf_putc(b, '\n');
    p += n;
    if (!*p) break;
    p += (p[0] == '\r' && p[1] == '\n') ? 2 : 1;
  }
  buf_putc(b, '\n');
}

static void ring_push(chan_t *c, event_t *e) {
  uint32_t cap = c->hub->opts.replay_events;
  if (!c->ring) c->ring = xcalloc(cap, sizeof *c->ring);
  if (c->ring_len == cap) {
    free(c->ring[c->ring_start]);
    c->ring_start = (c->ring_start + 1) % cap;
    c->ring_len--;
  }
  c->ring[(c->ring_start + c->ring_len) % cap] = e;
  c->ring_len++;
}

/* Frame the next event in h->scratch; returns its id, or 0 for a bad event_type. */
static uint64_t frame_next(sse_hub_t *h, const char *event_type, const char *data) {
  if (event_type && (!*event_type || strpbrk(event_type, "\r\n"))) return 0;
  uint64_t id = h->next_id++;
  frame_event(&h->scratch, id, event_type, data);
  return id;
}

static event_t *event_copy(const sse_hub_t *h, uint64_t id) {
  event_t *e = xmalloc(sizeof *e + h->scratch.len);
  e->id = id;
  e->at_us = clock_mono_us();
  e->len = h->scratch.len;
  memcpy(e->frame, h->scratch.data, e->len);
  return e;
}

int sse_publish(sse_hub_t *h, const char *channel, const char *event_type,
                const char *data, uint64_t *id_out) {
  if (!h || !channel) return -EINVAL;
  size_t len = strlen(channel);
  if (len == 0 || len > SSE_MAX_CHANNEL) return -EINVAL;
  uint64_t id = frame_next(h, event_type, data);
  if (!id) return -EINVAL;
  if (id_out) *id_out = id;
  event_t *e = event_copy(h, id);
  if (h->scratch.cap > 64 * 1024) buf_free(&h->scratch);
  chan_t *c = chan_get(h, channel, len);
  ring_push(c, e);
  int reached = chan_write(c, e->frame, e->len);
  if (!c->nsubs) chan_idle(c, 0); /* keeps the event replayable for replay_ms */
  return reached;
}

int sse_publish_prefix(sse_hub_t *h, const char *prefix, const char *event_type,
                       const char *data, uint64_t *id_out) {
  if (!h || !prefix) return -EINVAL;
  size_t plen = strlen(prefix);
  if (plen > SSE_MAX_CHANNEL) return -EINVAL;
  uint64_t id = frame_next(h, event_type, data);
  if (!id) return -EINVAL;
  if (id_out) *id_out = id;
  int reached = 0;
  /* chan_write may only queue channels for freeing (never frees inside the walk). */
  for (size_t i = 0; i < h->nbuckets; i++)
    for (chan_t *c = h->buckets[i]; c; c = c->hnext) {
      if (!c->nsubs || c->name_len < plen || memcmp(c->name, prefix, plen) != 0) continue;
      event_t *e = event_copy(h, id);
      ring_push(c, e);
      reached += chan_write(c, e->frame, e->len);
    }
  if (h->scratch.cap > 64 * 1024) buf_free(&h->scratch);
  return reached;
}
