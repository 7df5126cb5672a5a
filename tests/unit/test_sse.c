/* test_sse: the Server-Sent Events hub over real sockets.
 *
 * Same shape as test_http (the harness is nettest.h): a server and a hub on their own uv
 * loop in a second thread; the test thread is the client (blocking sockets, poll()
 * deadlines) and reaches the hub only through fx_call, which runs a function on the loop
 * thread and waits for it.
 * GET /sub/<channel> subscribes (Last-Event-ID passed through); -ENOSPC is answered 503. */
#include "test.h"
#include "nettest.h"
#include "sse.h"

/* ---- Fixture: server + hub + loop thread ---- */

struct fx {
  nt_server_t nt;
  sse_hub_t *hub;
};

static void handler(http_req_t *r, void *ud) {
  fx_t *f = ud;
  const char *path = http_req_path(r);
  if (strncmp(path, "/sub/", 5) != 0) {
    http_respond_error(r, 404, "not_found", "no such path", NULL, 0);
    return;
  }
  int rc = sse_subscribe(f->hub, r, path + 5, http_req_header(r, "Last-Event-ID"));
  if (rc == -ENOSPC) http_respond_error(r, 503, "busy", "too many subscribers", NULL, 0);
  else if (rc == -EINVAL) http_respond_error(r, 400, "bad_channel", "bad channel", NULL, 0);
}

static void fx_call(fx_t *f, nt_cmd_fn cmd, void *arg) { nt_call(&f->nt, cmd, arg); }

static int fx_start(fx_t *f, const sse_opts_t *opts) {
  memset(f, 0, sizeof *f);
  nt_init(&f->nt, f);
  f->nt.srv = http_server_new(&f->nt.loop, NULL, handler, f);
  f->hub = sse_hub_new(&f->nt.loop, opts);
  if (!f->nt.srv || !f->hub || nt_listen(&f->nt, "127.0.0.1") < 0) return -1;
  return 0;
}

static void cmd_stop(fx_t *f, void *arg) {
  sse_hub_free(f->hub);
  http_server_free(f->nt.srv);
}

/* Free hub and server, let the loop run dry, and check nothing was left open. */
static void fx_stop(fx_t *f) { nt_stop(&f->nt, cmd_stop); }

/* Close the clients a and b (either may be NULL), then fx_stop. */
static void fx_end(fx_t *f, cli_t *a, cli_t *b) {
  cli_close(a);
  cli_close(b);
  fx_stop(f);
}

/* Check cond; if it fails, stop the fixture and end the test. */
#define REQUIRE_OR_STOP(f, cond)                \
  do {                                          \
    if (!(cond)) {                              \
      FAILF("check failed: %s", #cond);         \
      fx_stop(f);                               \
      return;                                   \
    }                                           \
  } while (0)

typedef struct pub {
  const char *channel, *type, *data;
  int rc;
  uint64_t id;
} pub_t;

static void cmd_publish(fx_t *f, void *arg) {
  pub_t *p = arg;
  p->rc = sse_publish(f->hub, p->channel, p->type, p->data, &p->id);
}

/* Publish on the loop thread; returns subscribers reached, *id (may be NULL) the id. */
static int fx_publish(fx_t *f, const char *channel, const char *type, const char *data,
                      uint64_t *id) {
  pub_t p = {channel, type, data, 0, 0};
  fx_call(f, cmd_publish, &p);
  if (id) *id = p.id;
  return p.rc;
}

typedef struct count {
  const char *channel;
  size_t n;
} count_t;

static void cmd_count(fx_t *f, void *arg) {
  count_t *c = arg;
  c->n = sse_subscribers(f->hub, c->channel);
}

static size_t fx_subs(fx_t *f, const char *channel) {
  count_t c = {channel, 0};
  fx_call(f, cmd_count, &c);
  return c.n;
}

static int subs_are(fx_t *f, const void *arg) {
  const count_t *want = arg;
  return fx_subs(f, want->channel) == want->n;
}

/* Poll until channel (NULL: all) has n subscribers. */
static int fx_wait_subs(fx_t *f, const char *channel, size_t n) {
  count_t want = {channel, n};
  return nt_poll(subs_are, f, &want, 2000);
}

static size_t fx_conns(fx_t *f) { return nt_conns(&f->nt); }

static int no_conns(fx_t *f, const void *arg) { return fx_conns(f) == 0; }

static int drained(fx_t *f, const void *arg) { return nt_get(&f->nt, &f->nt.drained) != 0; }

static void cmd_free_hub(fx_t *f, void *arg) {
  sse_hub_free(f->hub);
  f->hub = NULL;
}

/* ---- Client ---- */

/* Next SSE block (the lines before a blank line, each ending in \n) into out; 1 or 0 on
 * EOF/timeout. */
static int cli_block(cli_t *c, char *out, size_t outlen, int ms) {
  int64_t deadline = clock_mono_us() + (int64_t)ms * 1000;
  char *end;
  while (!(end = memmem(c->buf, c->len, "\n\n", 2)))
    if (cli_fill(c, deadline) <= 0) return 0;
  size_t n = (size_t)(end - c->buf) + 1;
  if (n >= outlen) return 0;
  memcpy(out, c->buf, n);
  out[n] = 0;
  cli_take(c, n + 1);
  return 1;
}

/* Next block that is not a heartbeat. */
static int cli_event(cli_t *c, char *out, size_t outlen) {
  for (;;) {
    if (!cli_block(c, out, outlen, WAIT_MS)) return 0;
    if (strcmp(out, ": hb\n") != 0) return 1;
  }
}

/* 1 if nothing but heartbeats arrives within ms. */
static int cli_no_event(cli_t *c, int ms) {
  char b[256];
  int64_t deadline = clock_mono_us() + (int64_t)ms * 1000;
  for (;;) {
    int left = (int)((deadline - clock_mono_us()) / 1000);
    if (left <= 0) return 1;
    if (!cli_block(c, b, sizeof b, left)) return c->len == 0;
    if (strcmp(b, ": hb\n") != 0) return 0;
  }
}

static char last_head[4096];

/* Send the request without waiting; sse_open_read completes the subscription. */
static cli_t *sse_open_send(int port, const char *channel, const char *last_id, int rcvbuf) {
  cli_t *c = cli_connect(port, rcvbuf);
  if (!c) return NULL;
  char req[512];
  snprintf(req, sizeof req, "GET /sub/%s HTTP/1.1\r\nHost: h\r\n%s%s%s\r\n", channel,
           last_id ? "Last-Event-ID: " : "", last_id ? last_id : "", last_id ? "\r\n" : "");
  cli_send(c, req);
  return c;
}

/* Read the response head and the retry block. Returns the status (-1: none). */
static int sse_open_read(cli_t *c) {
  int status = cli_head(c, last_head, sizeof last_head, clock_mono_us() + WAIT_MS * 1000);
  if (status != 200) return status;
  char b[64];
  if (!cli_block(c, b, sizeof b, WAIT_MS) || strcmp(b, "retry: 3000\n") != 0) return -2;
  return status;
}

/* Subscribe and wait until the hub counts the subscriber (sub_count after it). */
static cli_t *sse_open(fx_t *f, const char *channel, const char *last_id) {
  cli_t *c = sse_open_send(f->nt.port, channel, last_id, 0);
  if (!c) return NULL;
  if (sse_open_read(c) != 200) {
    cli_close(c);
    return NULL;
  }
  return c;
}

static char *fmt_id(char *out, uint64_t id) {
  sprintf(out, "%" PRIu64, id);
  return out;
}

/* ---- Tests ---- */

TEST(test_framing) {
  fx_t f;
  CHECK_INT(fx_start(&f, NULL), 0);
  cli_t *c = sse_open(&f, "live", NULL);
  REQUIRE_OR_STOP(&f, c != NULL);
  CHECK(has(last_head, "\r\nContent-Type: text/event-stream\r\n"));
  CHECK(has(last_head, "\r\nCache-Control: no-store\r\n"));
  CHECK(has(last_head, "\r\nX-Accel-Buffering: no\r\n"));
  CHECK(has(last_head, "\r\nConnection: close\r\n"));
  CHECK(!has(last_head, "Content-Length"));
  CHECK_INT(fx_subs(&f, "live"), 1);
  uint64_t id1, id2;
  char want[256], got[4096], n1[24], n2[24];
  CHECK_INT(fx_publish(&f, "live", "offer", "{\"pct\":10}", &id1), 1);
  CHECK(cli_event(c, got, sizeof got));
  snprintf(want, sizeof want, "id: %s\nevent: offer\ndata: {\"pct\":10}\n", fmt_id(n1, id1));
  CHECK_STR(got, want);
  /* no type: no event line; ids increase */
  CHECK_INT(fx_publish(&f, "live", NULL, "{}", &id2), 1);
  CHECK(id2 > id1);
  CHECK(cli_event(c, got, sizeof got));
  snprintf(want, sizeof want, "id: %s\ndata: {}\n", fmt_id(n2, id2));
  CHECK_STR(got, want);
  CHECK_INT(c->len, 0); /* nothing but whole events */
  /* bad arguments */
  CHECK_INT(fx_publish(&f, "live", "a\nb", "{}", NULL), -EINVAL);
  CHECK_INT(fx_publish(&f, "", NULL, "{}", NULL), -EINVAL);
  char longname[SSE_MAX_CHANNEL + 2];
  memset(longname, 'x', sizeof longname - 1);
  longname[sizeof longname - 1] = 0;
  CHECK_INT(fx_publish(&f, longname, NULL, "{}", NULL), -EINVAL);
  CHECK(cli_no_event(c, 50));
  fx_end(&f, c, NULL);
  sse_hub_free(NULL);
}

TEST(test_multiline_data) {
  fx_t f;
  CHECK_INT(fx_start(&f, NULL), 0);
  cli_t *c = sse_open(&f, "m", NULL);
  REQUIRE_OR_STOP(&f, c != NULL);
  static const struct {
    const char *data, *lines;
  } cases[] = {
      {"a\nb\r\nc\rd", "data: a\ndata: b\ndata: c\ndata: d\n"},
      {"x\n", "data: x\ndata: \n"},
      {"", "data: \n"},
      {"\r\n\r\n", "data: \ndata: \ndata: \n"},
      {"one line", "data: one line\n"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    uint64_t id;
    char want[256], got[1024], n[24];
    CHECK_INT(fx_publish(&f, "m", NULL, cases[i].data, &id), 1);
    CHECK(cli_event(c, got, sizeof got));
    snprintf(want, sizeof want, "id: %s\n%s", fmt_id(n, id), cases[i].lines);
    CHECK_STR(got, want);
  }
  fx_end(&f, c, NULL);
}

TEST(test_channels) {
  fx_t f;
  CHECK_INT(fx_start(&f, NULL), 0);
  cli_t *a1 = sse_open(&f, "a", NULL), *a2 = sse_open(&f, "a", NULL);
  cli_t *b = sse_open(&f, "visitor:b", NULL);
  REQUIRE_OR_STOP(&f, a1 && a2 && b);
  CHECK_INT(fx_subs(&f, "a"), 2);
  CHECK_INT(fx_subs(&f, "visitor:b"), 1);
  CHECK_INT(fx_subs(&f, "nobody"), 0);
  CHECK_INT(fx_subs(&f, NULL), 3);
  char got[1024];
  CHECK_INT(fx_publish(&f, "a", "t", "for a", NULL), 2);
  CHECK(cli_event(a1, got, sizeof got) && has(got, "data: for a\n"));
  CHECK(cli_event(a2, got, sizeof got) && has(got, "data: for a\n"));
  CHECK(cli_no_event(b, 100));
  CHECK_INT(fx_publish(&f, "visitor:b", NULL, "for b", NULL), 1);
  CHECK(cli_event(b, got, sizeof got) && has(got, "data: for b\n"));
  CHECK(cli_no_event(a1, 100));
  CHECK(cli_no_event(a2, 0));
  CHECK_INT(fx_publish(&f, "nobody", NULL, "x", NULL), 0);
  cli_close(a1);
  fx_end(&f, a2, b);
}

static void cmd_channels(fx_t *f, void *arg);

static void cmd_publish_prefix(fx_t *f, void *arg) {
  pub_t *p = arg;
  p->rc = sse_publish_prefix(f->hub, p->channel, p->type, p->data, &p->id);
}

TEST(test_publish_prefix) {
  fx_t f;
  CHECK_INT(fx_start(&f, NULL), 0);
  cli_t *a1 = sse_open(&f, "visitor:a", NULL), *a2 = sse_open(&f, "visitor:a", NULL);
  cli_t *b = sse_open(&f, "visitor:b", NULL), *live = sse_open(&f, "live", NULL);
  REQUIRE_OR_STOP(&f, a1 && a2 && b && live);
  size_t chans;
  fx_call(&f, cmd_channels, &chans);
  CHECK_INT(chans, 3);
  pub_t p = {"visitor:", "offer", "{\"all\":1}", 0, 0};
  fx_call(&f, cmd_publish_prefix, &p);
  CHECK_INT(p.rc, 3);
  char got[1024], want[128], n[24];
  snprintf(want, sizeof want, "id: %s\nevent: offer\ndata: {\"all\":1}\n", fmt_id(n, p.id));
  CHECK(cli_event(a1, got, sizeof got) && strcmp(got, want) == 0);
  CHECK(cli_event(a2, got, sizeof got) && strcmp(got, want) == 0);
  CHECK(cli_event(b, got, sizeof got) && strcmp(got, want) == 0);
  CHECK(cli_no_event(live, 100));
  fx_call(&f, cmd_channels, &chans);
  CHECK_INT(chans, 3); /* no channel made for the broadcast */
  /* Each channel keeps it for Last-Event-ID. */
  cli_close(b);
  CHECK(fx_wait_subs(&f, "visitor:b", 0));
  char before[24];
  cli_t *b2 = sse_open(&f, "visitor:b", fmt_id(before, p.id - 1));
  REQUIRE_OR_STOP(&f, b2);
  CHECK(cli_event(b2, got, sizeof got) && strcmp(got, want) == 0);
  /* Bad arguments. */
  pub_t bad = {"visitor:", "a\nb", "x", 0, 0};
  fx_call(&f, cmd_publish_prefix, &bad);
  CHECK_INT(bad.rc, -EINVAL);
  cli_close(a1);
  cli_close(live);
  fx_end(&f, a2, b2);
}

TEST(test_replay) {
  fx_t f;
  sse_opts_t o = {.replay_events = 4, .replay_ms = 400};
  CHECK_INT(fx_start(&f, &o), 0);
  uint64_t id[7];
  char data[16], got[1024], n[24];
  for (int i = 1; i <= 6; i++) { /* no subscriber yet: kept for replay all the same */
    snprintf(data, sizeof data, "e%d", i);
    CHECK_INT(fx_publish(&f, "v", NULL, data, &id[i]), 0);
  }
  /* Last-Event-ID e2: e3..e6 are in the ring of 4 */
  cli_t *c = sse_open(&f, "v", fmt_id(n, id[2]));
  CHECK(c != NULL);
  for (int i = 3; i <= 6 && c; i++) {
    char want[64];
    snprintf(want, sizeof want, "id: %s\ndata: e%d\n", fmt_id(n, id[i]), i);
    CHECK(cli_event(c, got, sizeof got));
    CHECK_STR(got, want);
  }
  if (c) CHECK(cli_no_event(c, 50));
  /* e4: only e5, e6; then live events follow */
  cli_t *d = sse_open(&f, "v", fmt_id(n, id[4]));
  CHECK(d != NULL);
  if (d) {
    CHECK(cli_event(d, got, sizeof got) && has(got, "data: e5\n"));
    CHECK(cli_event(d, got, sizeof got) && has(got, "data: e6\n"));
    CHECK_INT(fx_publish(&f, "v", NULL, "live", NULL), 2);
    CHECK(cli_event(d, got, sizeof got) && has(got, "data: live\n"));
    CHECK(cli_event(c, got, sizeof got) && has(got, "data: live\n"));
  }
  /* Last-Event-ID older than the ring: only what the ring still has (e3 fell out) */
  cli_t *e = sse_open(&f, "v", fmt_id(n, id[1]));
  CHECK(e != NULL);
  if (e) {
    CHECK(cli_event(e, got, sizeof got) && has(got, "data: e4\n"));
    cli_close(e);
  }
  /* no Last-Event-ID (or garbage): no replay; "0": the whole ring */
  cli_t *g = sse_open(&f, "v", NULL), *h = sse_open(&f, "v", "12x");
  CHECK(g && h && cli_no_event(g, 50) && cli_no_event(h, 0));
  cli_close(g);
  cli_close(h);
  cli_t *z = sse_open(&f, "v", "0");
  CHECK(z && cli_event(z, got, sizeof got) && has(got, "data: e4\n")); /* e4..live */
  cli_close(z);
  cli_close(c);
  cli_close(d);
  /* past replay_ms nothing is replayed */
  usleep(500000);
  c = sse_open(&f, "v", fmt_id(n, id[2]));
  CHECK(c && cli_no_event(c, 100));
  cli_close(c);
  CHECK(fx_wait_subs(&f, NULL, 0));
  fx_stop(&f);
}

TEST(test_heartbeat) {
  fx_t f;
  sse_opts_t o = {.heartbeat_ms = 50};
  CHECK_INT(fx_start(&f, &o), 0);
  cli_t *c = sse_open(&f, "hb", NULL);
  CHECK(c != NULL);
  if (c) {
    char got[64];
    int64_t t0 = clock_mono_us();
    CHECK(cli_block(c, got, sizeof got, WAIT_MS));
    CHECK_STR(got, ": hb\n");
    CHECK(cli_block(c, got, sizeof got, WAIT_MS));
    CHECK_STR(got, ": hb\n");
    CHECK((clock_mono_us() - t0) / 1000 >= 50); /* two ticks */
    cli_close(c);
  }
  fx_stop(&f);
}

TEST(test_slow_reader_dropped) {
  fx_t f;
  sse_opts_t o = {.max_queue_bytes = 64 * 1024};
  CHECK_INT(fx_start(&f, &o), 0);
  cli_t *fast = sse_open(&f, "s", NULL);
  cli_t *slow = sse_open_send(f.nt.port, "s", NULL, 4096); /* small window, never reads */
  REQUIRE_OR_STOP(&f, fast && slow);
  CHECK(fx_wait_subs(&f, "s", 2));
  enum { BIG = 32 * 1024 };
  char *data = malloc(BIG + 1), *got = malloc(BIG + 256);
  memset(data, 'x', BIG);
  data[BIG] = 0;
  int dropped_at = -1;
  for (int i = 0; i < 2000 && dropped_at < 0; i++) { /* 64 MB at most */
    int rc = fx_publish(&f, "s", NULL, data, NULL);
    if (rc == 1) dropped_at = i;
    else CHECK_INT(rc, 2);
    /* the fast reader keeps up */
    if (!cli_event(fast, got, BIG + 256) || strlen(got) < BIG) {
      CHECK(!"fast reader missed an event");
      break;
    }
  }
  CHECK(dropped_at > 0);
  CHECK_INT(fx_subs(&f, "s"), 1);
  /* the slow one is closed once what was queued is out (or at the linger deadline) */
  CHECK(cli_closed_after_rest(slow, 3 * WAIT_MS));
  CHECK(fx_wait_subs(&f, NULL, 1));
  CHECK_INT(fx_publish(&f, "s", NULL, "small", NULL), 1);
  CHECK(cli_event(fast, got, BIG + 256) && has(got, "data: small\n"));
  free(data);
  free(got);
  fx_end(&f, slow, fast);
}

TEST(test_client_disconnect) {
  fx_t f;
  CHECK_INT(fx_start(&f, NULL), 0);
  cli_t *a = sse_open(&f, "d", NULL), *b = sse_open(&f, "d", NULL);
  CHECK(a && b);
  CHECK_INT(fx_subs(&f, "d"), 2);
  cli_close(a); /* FIN: noticed without publishing */
  CHECK(fx_wait_subs(&f, "d", 1));
  cli_reset(b); /* RST */
  CHECK(fx_wait_subs(&f, "d", 0));
  CHECK_INT(fx_subs(&f, NULL), 0);
  CHECK_INT(fx_conns(&f), 0);
  CHECK_INT(fx_publish(&f, "d", NULL, "x", NULL), 0);
  fx_stop(&f);
}

TEST(test_max_subscribers) {
  fx_t f;
  sse_opts_t o = {.max_subscribers = 2};
  CHECK_INT(fx_start(&f, &o), 0);
  cli_t *a = sse_open(&f, "x", NULL), *b = sse_open(&f, "y", NULL);
  CHECK(a && b);
  cli_t *c = sse_open_send(f.nt.port, "x", NULL, 0);
  CHECK_INT(sse_open_read(c), 503);
  cli_close(c);
  /* an invalid channel is the caller's to answer too */
  c = sse_open_send(f.nt.port, "", NULL, 0);
  CHECK_INT(sse_open_read(c), 400);
  cli_close(c);
  cli_close(a);
  CHECK(fx_wait_subs(&f, NULL, 1));
  c = sse_open(&f, "x", NULL);
  CHECK(c != NULL);
  fx_end(&f, c, b);
}

TEST(test_drain_ends_streams) {
  fx_t f;
  CHECK_INT(fx_start(&f, NULL), 0);
  cli_t *a = sse_open(&f, "live", NULL), *b = sse_open(&f, "other", NULL);
  REQUIRE_OR_STOP(&f, a && b);
  CHECK_INT(fx_publish(&f, "live", NULL, "last", NULL), 1);
  nt_drain(&f.nt);
  char got[256];
  CHECK(cli_event(a, got, sizeof got) && has(got, "data: last\n")); /* flushed first */
  CHECK(cli_closed_after_rest(a, WAIT_MS));
  CHECK(cli_closed_after_rest(b, WAIT_MS));
  CHECK(fx_wait_subs(&f, NULL, 0));
  nt_poll(drained, &f, NULL, 2000);
  CHECK_INT(nt_get(&f.nt, &f.nt.drained), 1);
  fx_end(&f, a, b);
}

TEST(test_hub_free_ends_streams) {
  fx_t f;
  CHECK_INT(fx_start(&f, NULL), 0);
  cli_t *a = sse_open(&f, "live", NULL);
  CHECK(a != NULL);
  fx_call(&f, cmd_free_hub, NULL);
  CHECK(a && cli_closed_after_rest(a, WAIT_MS));
  nt_poll(no_conns, &f, NULL, 2000);
  CHECK_INT(fx_conns(&f), 0);
  fx_end(&f, a, NULL);
}

static void cmd_channels(fx_t *f, void *arg) { *(size_t *)arg = sse_channels(f->hub); }

static int fx_wait_channels(fx_t *f, size_t n) {
  int64_t deadline = clock_mono_us() + WAIT_MS * 1000;
  while (clock_mono_us() < deadline) {
    size_t have = 0;
    fx_call(f, cmd_channels, &have);
    if (have == n) return 1;
    usleep(2000);
  }
  return 0;
}

TEST(test_channels_freed) {
  fx_t f;
  sse_opts_t o = {.heartbeat_ms = 50, .replay_ms = 200};
  CHECK_INT(fx_start(&f, &o), 0);
  size_t n = 9;
  /* subscribed, never published to: gone with its last subscriber */
  cli_t *a = sse_open(&f, "visitor:a", NULL);
  CHECK(a != NULL);
  fx_call(&f, cmd_channels, &n);
  CHECK_INT(n, 1);
  cli_close(a);
  CHECK(fx_wait_subs(&f, NULL, 0));
  fx_call(&f, cmd_channels, &n);
  CHECK_INT(n, 0);
  /* published to without subscribers: kept for replay_ms, then freed */
  int64_t t0 = clock_mono_us();
  CHECK_INT(fx_publish(&f, "visitor:b", NULL, "offer", NULL), 0);
  fx_call(&f, cmd_channels, &n);
  CHECK_INT(n, 1);
  CHECK(fx_wait_channels(&f, 0));
  CHECK((clock_mono_us() - t0) / 1000 >= 150);
  /* with events and a subscriber that leaves: the same */
  cli_t *c = sse_open(&f, "visitor:c", NULL);
  CHECK_INT(fx_publish(&f, "visitor:c", NULL, "offer", NULL), 1);
  cli_close(c);
  CHECK(fx_wait_subs(&f, NULL, 0));
  fx_call(&f, cmd_channels, &n);
  CHECK_INT(n, 1);
  CHECK(fx_wait_channels(&f, 0));
  fx_stop(&f);
}

TEST(test_many_subscribers) {
  enum { N = 1000 };
  fx_t f;
  CHECK_INT(fx_start(&f, NULL), 0);
  static cli_t *cs[N];
  int opened = 0;
  for (int i = 0; i < N; i++) {
    cs[i] = sse_open_send(f.nt.port, "live", NULL, 0);
    if (cs[i]) opened++;
  }
  CHECK_INT(opened, N);
  int ok = 0;
  for (int i = 0; i < N; i++)
    if (cs[i] && sse_open_read(cs[i]) == 200) ok++;
  CHECK_INT(ok, N);
  CHECK(fx_wait_subs(&f, "live", N));
  uint64_t id;
  CHECK_INT(fx_publish(&f, "live", "offer", "{\"n\":1}", &id), N);
  char want[128], got[256], n[24];
  snprintf(want, sizeof want, "id: %s\nevent: offer\ndata: {\"n\":1}\n", fmt_id(n, id));
  int received = 0;
  for (int i = 0; i < N; i++)
    if (cs[i] && cli_event(cs[i], got, sizeof got) && strcmp(got, want) == 0) received++;
  CHECK_INT(received, N);
  for (int i = 0; i < N; i++) cli_close(cs[i]);
  CHECK(fx_wait_subs(&f, NULL, 0));
  fx_stop(&f);
}

int main(void) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  RUN(test_framing);
  RUN(test_multiline_data);
  RUN(test_channels);
  RUN(test_publish_prefix);
  RUN(test_replay);
  RUN(test_heartbeat);
  RUN(test_slow_reader_dropped);
  RUN(test_client_disconnect);
  RUN(test_max_subscribers);
  RUN(test_drain_ends_streams);
  RUN(test_hub_free_ends_streams);
  RUN(test_channels_freed);
  RUN(test_many_subscribers);
  return TEST_REPORT("test_sse");
}
