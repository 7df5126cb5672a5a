/* test_http: the HTTP/1.1 server adapter over real sockets.
 *
 * Each test starts a server on 127.0.0.1:0 with its own uv loop running in a second
 * thread; the test thread is the client, with blocking sockets and poll() deadlines.
 * Anything that touches the server or the loop from the test thread goes through
 * fx_call, which runs a function on the loop thread and waits for it. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include "http.h"
#include "test.h"
#include "util/clock.h"

#define WAIT_MS 3000

/* ---- Fixture: server + loop thread ---- */

enum mode {
  MODE_ECHO,        /* answer at once with a description of the request */
  MODE_ASYNC_FIRST, /* hold the first request 100 ms (uv_timer), answer the rest at once */
  MODE_HOLD,        /* hold every request until the test answers it */
  MODE_CRLF,        /* answer with caller headers, some carrying CR/LF */
  MODE_ERROR,       /* http_respond_error with characters to escape */
  MODE_BIG,         /* answer with BIG_LEN bytes of a pattern, more than a socket takes */
  MODE_STREAM,      /* answer with a stream (f->stream), ended by the test */
};

#define BIG_LEN (8u << 20)
static char *big_body;

typedef struct fx {
  uv_loop_t loop;
  uv_async_t wake;
  pthread_t thread;
  http_server_t *srv;
  int port;
  enum mode mode;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  void (*cmd)(struct fx *, void *);
  void *cmd_arg;
  int cmd_done;
  /* loop-thread state, read by the test under mu */
  int nreq;
  char log[512];
  http_req_t *held[8];
  int nheld;
  uv_timer_t delay;
  int delay_active;
  int drained;
  int nobserved;
  int last_status;
  char last_route[32];
  http_stream_t *stream; /* MODE_STREAM: the current one, NULL after its on_close */
  int stream_closed;     /* on_close calls */
} fx_t;

static void fx_log(fx_t *f, const char *fmt, ...) {
  size_t n = strlen(f->log);
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(f->log + n, sizeof f->log - n, fmt, ap);
  va_end(ap);
}

static void echo(http_req_t *r, const char *route) {
  char out[1024];
  size_t blen;
  const char *body = http_req_body(r, &blen);
  const char *xt = http_req_header(r, "X-Test");
  static int slot;
  int ok = http_req_data(r) == NULL; /* a fresh request starts without data */
  http_req_set_data(r, &slot);
  ok = ok && http_req_data(r) == &slot && body[blen] == '\0';
  int64_t age_us = clock_mono_us() - http_req_start_us(r);
  ok = ok && http_req_start_us(r) > 0 && age_us >= 0 && age_us < 60 * 1000000;
  if (!ok) {
    http_respond(r, 500, NULL, 0, "echo: request checks failed", 27, 0);
    return;
  }
  int n = snprintf(out, sizeof out, "method=%s path=%s query=%s peer=%s x-test=%s body=%zu:%.64s",
                   http_req_method(r), http_req_path(r), http_req_query(r), http_req_peer(r),
                   xt ? xt : "(none)", blen, body);
  http_header_t h[] = {{"Content-Type", "text/plain"}};
  http_req_set_route(r, route);
  http_respond(r, 200, h, 1, out, (size_t)n, 0);
}

static void on_delay(uv_timer_t *t) {
  fx_t *f = t->data;
  pthread_mutex_lock(&f->mu);
  http_req_t *r = f->held[0];
  f->nheld = 0;
  fx_log(f, "R%s ", http_req_path(r));
  pthread_mutex_unlock(&f->mu);
  echo(r, "delayed");
}

static void on_stream_close(void *ud) {
  fx_t *f = ud;
  pthread_mutex_lock(&f->mu);
  f->stream_closed++;
  f->stream = NULL;
  pthread_mutex_unlock(&f->mu);
}

static void start_stream(fx_t *f, http_req_t *r) {
  http_header_t h[] = {{"Content-Type", "text/plain"},
                       {"Content-Length", "5"},
                       {"Transfer-Encoding", "chunked"}};
  http_req_set_route(r, "stream");
  http_stream_t *st = http_stream_start(r, 200, h, sizeof h / sizeof h[0]);
  if (st) http_stream_on_close(st, on_stream_close, f);
  pthread_mutex_lock(&f->mu);
  f->stream = st;
  pthread_mutex_unlock(&f->mu);
}

static void handler(http_req_t *r, void *ud) {
  fx_t *f = ud;
  pthread_mutex_lock(&f->mu);
  f->nreq++;
  fx_log(f, "D%s ", http_req_path(r));
  pthread_mutex_unlock(&f->mu);
  switch (f->mode) {
    case MODE_ECHO: echo(r, "echo"); break;
    case MODE_ASYNC_FIRST:
      if (f->nreq == 1) {
        pthread_mutex_lock(&f->mu);
        f->held[f->nheld++] = r;
        pthread_mutex_unlock(&f->mu);
        uv_timer_start(&f->delay, on_delay, 100, 0);
      } else {
        pthread_mutex_lock(&f->mu);
        fx_log(f, "R%s ", http_req_path(r));
        pthread_mutex_unlock(&f->mu);
        echo(r, "echo");
      }
      break;
    case MODE_HOLD:
      pthread_mutex_lock(&f->mu);
      f->held[f->nheld++] = r;
      pthread_mutex_unlock(&f->mu);
      break;
    case MODE_CRLF: {
      http_header_t h[] = {{"X-Good", "ok"},
                           {"X-Bad", "a\r\nSet-Cookie: evil=1"},
                           {"X-Bad2", "x\ny"},
                           {"Bad Name", "v"},
                           {"Content-Length", "999"},
                           {"X-Good2", "fine\tvalue"}};
      http_respond(r, 200, h, sizeof h / sizeof h[0], "body", 4, 0);
      break;
    }
    case MODE_ERROR:
      http_respond_error(r, 422, "bad\"code", "line\nbreak", NULL, 0);
      break;
    case MODE_BIG:
      for (size_t i = 0; i < BIG_LEN; i++) big_body[i] = (char)('a' + i % 26);
      http_respond(r, 200, NULL, 0, big_body, BIG_LEN, 0);
      memset(big_body, '!', BIG_LEN); /* borrowed only during the call */
      break;
    case MODE_STREAM: start_stream(f, r); break;
  }
}

static void observer(void *ud, const char *route, int status, uint64_t latency_us) {
  fx_t *f = ud;
  pthread_mutex_lock(&f->mu);
  f->nobserved++;
  f->last_status = status;
  snprintf(f->last_route, sizeof f->last_route, "%s", route);
  pthread_mutex_unlock(&f->mu);
  (void)latency_us;
}

static void on_wake(uv_async_t *a) {
  fx_t *f = a->data;
  pthread_mutex_lock(&f->mu);
  void (*cmd)(fx_t *, void *) = f->cmd;
  void *arg = f->cmd_arg;
  f->cmd = NULL;
  pthread_mutex_unlock(&f->mu);
  if (!cmd) return;
  cmd(f, arg);
  pthread_mutex_lock(&f->mu);
  f->cmd_done = 1;
  pthread_cond_broadcast(&f->cv);
  pthread_mutex_unlock(&f->mu);
}

static void *loop_main(void *arg) {
  fx_t *f = arg;
  uv_run(&f->loop, UV_RUN_DEFAULT);
  return NULL;
}

/* Run cmd(f, arg) on the loop thread and wait for it. */
static void fx_call(fx_t *f, void (*cmd)(fx_t *, void *), void *arg) {
  pthread_mutex_lock(&f->mu);
  f->cmd = cmd;
  f->cmd_arg = arg;
  f->cmd_done = 0;
  uv_async_send(&f->wake);
  while (!f->cmd_done) pthread_cond_wait(&f->cv, &f->mu);
  pthread_mutex_unlock(&f->mu);
}

static int fx_start_on(fx_t *f, const http_limits_t *lim, enum mode mode, const char *host) {
  memset(f, 0, sizeof *f);
  f->mode = mode;
  pthread_mutex_init(&f->mu, NULL);
  pthread_cond_init(&f->cv, NULL);
  uv_loop_init(&f->loop);
  uv_async_init(&f->loop, &f->wake, on_wake);
  f->wake.data = f;
  uv_timer_init(&f->loop, &f->delay);
  f->delay.data = f;
  f->srv = http_server_new(&f->loop, lim, handler, f);
  if (!f->srv) return -1;
  http_server_set_observer(f->srv, observer, f);
  int rc = http_server_listen(f->srv, host, 0);
  if (rc < 0) {
    http_server_free(f->srv);
    uv_close((uv_handle_t *)&f->delay, NULL);
    uv_close((uv_handle_t *)&f->wake, NULL);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    uv_loop_close(&f->loop);
    return rc;
  }
  f->port = http_server_port(f->srv);
  pthread_create(&f->thread, NULL, loop_main, f);
  return 0;
}

static int fx_start(fx_t *f, const http_limits_t *lim, enum mode mode) {
  return fx_start_on(f, lim, mode, "127.0.0.1");
}

static void cmd_stop(fx_t *f, void *arg) {
  http_server_free(f->srv);
  /* requests still held are answered after the free: they must only be released */
  for (int i = 0; i < f->nheld; i++) http_respond(f->held[i], 200, NULL, 0, "late", 4, 0);
  f->nheld = 0;
  uv_close((uv_handle_t *)&f->delay, NULL);
  uv_close((uv_handle_t *)&f->wake, NULL);
}

/* Free the server, let the loop run dry, and check nothing was left open. */
static void fx_stop(fx_t *f) {
  fx_call(f, cmd_stop, NULL);
  pthread_join(f->thread, NULL);
  CHECK_INT(uv_loop_close(&f->loop), 0);
  pthread_mutex_destroy(&f->mu);
  pthread_cond_destroy(&f->cv);
}

static void cmd_conns(fx_t *f, void *arg) { *(size_t *)arg = http_server_connections(f->srv); }

static size_t fx_conns(fx_t *f) {
  size_t n = 0;
  fx_call(f, cmd_conns, &n);
  return n;
}

/* Poll until the server has n connections open. */
static int fx_wait_conns(fx_t *f, size_t n) {
  int64_t deadline = clock_mono_us() + WAIT_MS * 1000;
  while (clock_mono_us() < deadline) {
    if (fx_conns(f) == n) return 1;
    usleep(2000);
  }
  return 0;
}

/* Poll until the handler holds n requests. */
static int fx_wait_held(fx_t *f, int n) {
  int64_t deadline = clock_mono_us() + WAIT_MS * 1000;
  while (clock_mono_us() < deadline) {
    pthread_mutex_lock(&f->mu);
    int held = f->nheld;
    pthread_mutex_unlock(&f->mu);
    if (held == n) return 1;
    usleep(2000);
  }
  return 0;
}

static int fx_get(fx_t *f, int *field) {
  pthread_mutex_lock(&f->mu);
  int v = *field;
  pthread_mutex_unlock(&f->mu);
  return v;
}

/* Poll until *field (guarded by mu) equals want. */
static int fx_wait_int(fx_t *f, int *field, int want) {
  int64_t deadline = clock_mono_us() + WAIT_MS * 1000;
  while (clock_mono_us() < deadline) {
    if (fx_get(f, field) == want) return 1;
    usleep(1000);
  }
  return 0;
}

static void cmd_free_server(fx_t *f, void *arg) {
  http_server_free(f->srv);
  f->srv = NULL;
}

/* Answer held requests (after the server is gone: only releases them). */
static void cmd_answer_gone(fx_t *f, void *arg) {
  for (int i = 0; i < f->nheld; i++) http_respond_error(f->held[i], 500, "late", "late", NULL, 0);
  f->nheld = 0;
}

/* Answer only the oldest held request (its answer may dispatch the next at once). */
static void cmd_answer_first(fx_t *f, void *arg) {
  if (!f->nheld) return;
  pthread_mutex_lock(&f->mu);
  http_req_t *r = f->held[0];
  memmove(f->held, f->held + 1, (size_t)--f->nheld * sizeof f->held[0]);
  pthread_mutex_unlock(&f->mu);
  echo(r, "held");
}

static void cmd_answer_held(fx_t *f, void *arg) {
  for (int i = 0; i < f->nheld; i++) echo(f->held[i], "held");
  f->nheld = 0;
}

static void on_drained(void *ud) {
  fx_t *f = ud;
  pthread_mutex_lock(&f->mu);
  f->drained++;
  pthread_mutex_unlock(&f->mu);
}

static void cmd_drain(fx_t *f, void *arg) { http_server_drain(f->srv, on_drained, f); }

/* ---- Client ---- */

typedef struct cli {
  int fd;
  size_t len;
  char buf[256 * 1024];
} cli_t;

typedef struct resp {
  int status;
  char head[8192];
  char body[65536];
  size_t body_len;
} resp_t;

static cli_t *cli_open(int port) {
  cli_t *c = calloc(1, sizeof *c);
  c->fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(c->fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
    close(c->fd);
    free(c);
    return NULL;
  }
  int one = 1;
  setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return c;
}

static void cli_close(cli_t *c) {
  if (!c) return;
  close(c->fd);
  free(c);
}

/* Close with RST instead of FIN. */
static void cli_reset(cli_t *c) {
  struct linger lg = {1, 0};
  setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
  cli_close(c);
}

static void cli_send_n(cli_t *c, const char *s, size_t n) {
  while (n) {
    ssize_t w = send(c->fd, s, n, MSG_NOSIGNAL);
    if (w <= 0) return;
    s += w;
    n -= (size_t)w;
  }
}

static void cli_send(cli_t *c, const char *s) { cli_send_n(c, s, strlen(s)); }

/* Read more bytes within the deadline: >0 got bytes, 0 EOF, -1 timeout or error. */
static int cli_fill(cli_t *c, int64_t deadline) {
  for (;;) {
    int64_t left_ms = (deadline - clock_mono_us()) / 1000;
    if (left_ms <= 0) return -1;
    struct pollfd p = {c->fd, POLLIN, 0};
    int rc = poll(&p, 1, (int)left_ms);
    if (rc < 0 && errno == EINTR) continue;
    if (rc <= 0) return -1;
    if (c->len == sizeof c->buf) return -1;
    ssize_t n = recv(c->fd, c->buf + c->len, sizeof c->buf - c->len, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errno == ECONNRESET ? 0 : -1;
    c->len += (size_t)n;
    return n > 0 ? 1 : 0;
  }
}

/* Header value from a response head ("" terminated copy in out), or NULL. */
static const char *resp_header(const resp_t *r, const char *name, char *out, size_t outlen) {
  size_t nl = strlen(name);
  const char *p = strstr(r->head, "\r\n");
  while (p && p[2]) {
    p += 2;
    if (strncasecmp(p, name, nl) == 0 && p[nl] == ':') {
      const char *v = p + nl + 1;
      while (*v == ' ') v++;
      const char *e = strstr(v, "\r\n");
      size_t n = e ? (size_t)(e - v) : strlen(v);
      if (n >= outlen) n = outlen - 1;
      memcpy(out, v, n);
      out[n] = 0;
      return out;
    }
    p = strstr(p, "\r\n");
  }
  return NULL;
}

/* Read one response (head_only: a HEAD answer, no body follows). Returns the status,
 * or -1 on EOF/timeout before a complete response. */
static int cli_response(cli_t *c, resp_t *r, int head_only) {
  int64_t deadline = clock_mono_us() + WAIT_MS * 1000;
  memset(r, 0, sizeof *r);
  r->status = -1;
  char *end;
  while (!(end = memmem(c->buf, c->len, "\r\n\r\n", 4)))
    if (cli_fill(c, deadline) <= 0) return -1;
  size_t head_len = (size_t)(end - c->buf) + 4;
  if (head_len >= sizeof r->head) return -1;
  memcpy(r->head, c->buf, head_len);
  r->head[head_len] = 0;
  char v[32];
  size_t cl = 0;
  if (!head_only && resp_header(r, "Content-Length", v, sizeof v)) cl = strtoul(v, NULL, 10);
  if (cl >= sizeof r->body) return -1;
  while (c->len < head_len + cl)
    if (cli_fill(c, deadline) <= 0) return -1;
  memcpy(r->body, c->buf + head_len, cl);
  r->body[cl] = 0;
  r->body_len = cl;
  memmove(c->buf, c->buf + head_len + cl, c->len - head_len - cl);
  c->len -= head_len + cl;
  if (sscanf(r->head, "HTTP/1.1 %d ", &r->status) != 1) return -1;
  return r->status;
}

/* 1 if the server closes the connection within ms (EOF or reset) with no extra bytes. */
static int cli_closed(cli_t *c, int ms) {
  int64_t deadline = clock_mono_us() + (int64_t)ms * 1000;
  size_t before = c->len;
  for (;;) {
    int rc = cli_fill(c, deadline);
    if (rc == 0) return c->len == before;
    if (rc < 0) return 0;
  }
}

/* 1 if nothing at all arrives within ms (connection still open, silent). */
static int cli_quiet(cli_t *c, int ms) {
  struct pollfd p = {c->fd, POLLIN, 0};
  return poll(&p, 1, ms) == 0;
}

static int has(const char *hay, const char *needle) { return strstr(hay, needle) != NULL; }

/* ---- Tests ---- */

TEST(test_get) {
  fx_t f;
  CHECK_INT(fx_start(&f, NULL, MODE_ECHO), 0);
  cli_t *c = cli_open(f.port);
  resp_t *r = malloc(sizeof *r);
  cli_send(c, "GET /p/a?x=1&y=2#frag HTTP/1.1\r\nHost: h\r\nX-Test: hello\r\n\r\n");
  CHECK_INT(cli_response(c, r, 0), 200);
  CHECK_STR(r->body, "method=GET path=/p/a query=x=1&y=2 peer=127.0.0.1 x-test=hello body=0:");
  char v[64];
  CHECK(resp_header(r, "Date", v, sizeof v) && has(v, " GMT"));
  CHECK_STR(resp_header(r, "Connection", v, sizeof v), "keep-alive");
  CHECK_STR(resp_header(r, "Content-Type", v, sizeof v), "text/plain");
  CHECK_INT(strtoul(resp_header(r, "Content-Length", v, sizeof v), NULL, 10), r->body_len);
  CHECK(strncmp(r->head, "HTTP/1.1 200 OK\r\n", 17) == 0);
  CHECK(fx_wait_int(&f, &f.nobserved, 1)); /* observed once the response is queued */
  CHECK_INT(fx_get(&f, &f.last_status), 200);
  pthread_mutex_lock(&f.mu);
  CHECK_STR(f.last_route, "echo");
  pthread_mutex_unlock(&f.mu);

  /* absolute-form target, no query; duplicated header joined */
  cli_send(c, "GET http://example.com:8080/abs/p HTTP/1.1\r\nHost: h\r\n"
              "x-test: a\r\nX-TEST: b\r\n\r\n");
  CHECK_INT(cli_response(c, r, 0), 200);
  CHECK(has(r->body, "path=/abs/p query= "));
  CHECK(has(r->body, "x-test=a, b "));
  cli_send(c, "GET http://example.com?q=1 HTTP/1.1\r\nHost: h\r\n\r\n");
  CHECK_INT(cli_response(c, r, 0), 200);
  CHECK(has(r->body, "path=/ query=q=1 "));
  cli_close(c);
  free(r);
  fx_stop(&f);
}

TEST(test_post_content_length) {
  fx_t f;
  CHECK_INT(fx_start(&f, NULL, MODE_ECHO), 0);
  cli_t *c = cli_open(f.port);
  resp_t *r = malloc(sizeof *r);
  cli_send(c, "POST /v1/track HTTP/1.1\r\nHost: h\r\nContent-Length: 11\r\n\r\nhello");
  usleep(20000); /* body split across reads */
  cli_send(c, " world");
  CHECK_INT(cli_response(c, r, 0), 200);
  CHECK(has(r->body, "method=POST path=/v1/track "));
  CHECK(has(r->body, "body=11:hello world"));
  cli_close(c);
  free(r);
  fx_stop(&f);
}

TEST(test_chunked) {
  fx_t f;
  CHECK_INT(fx_start(&f, NULL, MODE_ECHO), 0);
  cli_t *c = cli_open(f.port);
  resp_t *r = malloc(sizeof *r);
  cli_send(c, "POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
              "5\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n");
  CHECK_INT(cli_response(c, r, 0), 200);
  CHECK(has(r->body, "body=11:hello world"));
  CHECK(has(r->body, "x-test=(none)"));
  cli_close(c);
  free(r);
  fx_stop(&f);
}

TEST(test_keep_alive) {
  fx_t f;
  CHECK_INT(fx_start(&f, NULL, MODE_ECHO), 0);
  cli_t *c = cli_open(f.port);
  resp_t *r = malloc(sizeof *r);
  cli_send(c, "GET /one HTTP/1.1\r\nHost: h\r\n\r\n");
  CHECK_INT(cli_response(c, r, 0), 200);
  CHECK(has(r->body, "path=/one "));
  cli_send(c, "POST /two HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc");
  CHECK_INT(cli_response(c, r, 0), 200);
  CHECK(has(r->body, "path=/two "));
  CHECK(has(r->body, "body=3:abc"));
  CHECK_INT(fx_conns(&f), 1);
  CHECK_INT(fx_get(&f, &f.nreq), 2);
  /* Connection: close is honoured */
  cli_send(c, "GET /three HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n");
  CHECK_INT(cli_response(c, r, 0), 200);
  char v[32];
  CHECK_STR(resp_header(r, "Connection", v, sizeof v), "close");
  CHECK(cli_closed(c, WAIT_MS));
  cli_close(c);

  /* HTTP/1.0: close by default, keep-alive on request */
  c = cli_open(f.port);
  cli_send(c, "GET /old HTTP/1.0\r\n\r\n");
  CHECK_INT(cli_response(c, r, 0), 200);
  CHECK_STR(resp_header(r, "Connection", v, sizeof v), "close");
  CHECK(cli_closed(c, WAIT_MS));
  cli_close(c);
  c = cli_open(f.port);
  cli_send(c, "GET /old HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
  CHECK_INT(cli_response(c, r, 0), 200);
  CHECK_STR(resp_header(r, "Connection", v, sizeof v), "keep-alive");
  cli_send(c, "GET /old2 HTTP/1.0\r\n\r\n");
  CHECK_INT(cli_response(c, r, 0), 200);
  CHECK(has(r->body, "path=/old2 "));
  cli_close(c);
  free(r);
  fx_stop(&f);
}

TEST(test_pipelined_in_order) {
  fx_t f;
  CHECK_INT(fx_start(&f, NULL, MODE_ASYNC_FIRST), 0);
  cli_t *c = cli_open(f.port);
  resp_t *r = malloc(sizeof *r);
  cli_send(c, "GET /a HTTP/1.1\r\nHost: h\r\n\r\n"
              "POST /b HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\nhi"
              "GET /c HTTP/1.1\r\nHost: h\r\n\r\n");
  CHECK_INT(cli_response(c, r, 0), 200);
  CHECK(has(r->body, "path=/a "));
  CHECK_INT(cli_response(c, r, 0), 200);
  CHECK(has(r->body, "path=/b "));
  CHECK(has(r->body, "body=2:hi"));
  CHECK_INT(cli_response(c, r, 0), 200);
  CHECK(has(r->body, "path=/c "));
  /* /b was not dispatched before /a was answered */
  pthread_mutex_lock(&f.mu);
  CHECK_STR(f.log, "D/a R/a D/b R/b D/c R/c ");
  pthread_mutex_unlock(&f.mu);
  cli_close(c);
  free(r);
  fx_stop(&f);
}

TEST(test_many_pipelined_sync) {
  /* 2000 tiny requests in one go: answered in order without recursion */
  fx_t f;
  CHECK_INT(fx_start(&f, NULL, MODE_ECHO), 0);
  cli_t *c = cli_open(f.port);
  resp_t *r = malloc(sizeof *r);
  static char big[2000 * 40];
  size_t n = 0;
  for (int i = 0; i < 2000; i++) n += (size_t)sprintf(big + n, "GET /%d HTTP/1.1\r\n\r\n", i);
  cli_send_n(c, big, n);
  int ok = 1;
  for (int i = 0; i < 2000 && ok; i++) {
    char want[32];
    snprintf(want, sizeof want, "path=/%d ", i);
    ok = cli_response(c, r, 0) == 200 && has(r->body, want);
  }
  CHECK(ok);
  CHECK_INT(fx_get(&f, &f.nreq), 2000);
  cli_close(c);
  free(r);
  fx_stop(&f);
}

TEST(test_header_too_large) {
  fx_t f;
  http_limits_t lim = {.max_header_bytes = 1024};
  CHECK_INT(fx_start(&f, &lim, MODE_ECHO), 0);
  cli_t *c = cli_open(f.port);
  resp_t *r = malloc(sizeof *r);
  char req[4096];
  char val[2001];
  memset(val, 'v', 2000);
  val[2000] = 0;
  snprintf(req, sizeof req, "GET / HTTP/1.1\r\nHost: h\r\nX-Big: %s\r\n\r\n", val);
  cli_send(c, req);
  CHECK_INT(cli_response(c, r, 0), 431);
  CHECK(has(r->body, "\"success\":false"));
  CHECK(has(r->body, "\"error\":\"header_too_large\""));
  char v[64];
  CHECK_STR(resp_header(r, "Connection", v, sizeof v), "close");
  CHECK_STR(resp_header(r, "Content-Type", v, sizeof v), "application/json");
  CHECK(cli_closed(c, WAIT_MS));
  CHECK_INT(fx_get(&f, &f.nreq), 0);
  CHECK(fx_wait_int(&f, &f.nobserved, 1));
  CHECK_INT(fx_get(&f, &f.last_status), 431);
  pthread_mutex_lock(&f.mu);
  CHECK_STR(f.last_route, "other");
  pthread_mutex_unlock(&f.mu);
  cli_close(c);

  /* many small header fields: 431 as well */
  c = cli_open(f.port);
  size_t n = (size_t)snprintf(req, sizeof req, "GET / HTTP/1.1\r\n");
  for (int i = 0; i < 200; i++) n += (size_t)snprintf(req + n, sizeof req - n, "h%d:\r\n", i);
  snprintf(req + n, sizeof req - n, "\r\n");
  cli_send(c, req);
  CHECK_INT(cli_response(c, r, 0), 431);
  CHECK(cli_closed(c, WAIT_MS));
  cli_close(c);

  /* just under the limit passes */
  c = cli_open(f.port);
  memset(val, 'v', 900);
  val[900] = 0;
  snprintf(req, sizeof req, "GET / HTTP/1.1\r\nHost: h\r\nX-Big: %s\r\n\r\n", val);
  cli_send(c, req);
  CHECK_INT(cli_response(c, r, 0), 200);
  cli_close(c);
  free(r);
  fx_stop(&f);
}

TEST(test_body_too_large_by_length) {
  fx_t f;
  http_limits_t lim = {.max_body_bytes = 100};
  CHECK_INT(fx_start(&f, &lim, MODE_ECHO), 0);
  cli_t *c = cli_open(f.port);
  resp_t *r = malloc(sizeof *r);
  /* headers only: the 413 must come without the body being sent */
  cli_send(c, "POST /v1/batch HTTP/1.1\r\nHost: h\r\nContent-Length: 101\r\n\r\n");
  CHECK_INT(cli_response(c, r, 0), 413);
  CHECK(has(r->body, "\"error\":\"body_too_large\""));
  CHECK(cli_closed(c, WAIT_MS));
  CHECK_INT(fx_get(&f, &f.nreq), 0);
  cli_close(c);

  /* exactly the limit is fine */
  c = cli_open(f.port);
  char req[512];
  char body[101];
  memset(body, 'b', 100);
  body[100] = 0;
  snprintf(req, sizeof req, "POST / HTTP/1.1\r\nContent-Length: 100\r\n\r\n%s", body);
  cli_send(c, req);
  CHECK_INT(cli_response(c, r, 0), 200);
  CHECK(has(r->body, "body=100:"));
  cli_close(c);
  free(r);
  fx_stop(&f);
}

TEST(test_chunked_too_large) {
  fx_t f;
  http_limits_t lim = {.max_body_bytes = 100};
  CHECK_INT(fx_start(&f, &lim, MODE_ECHO), 0);
  cli_t *c = cli_open(f.port);
  resp_t *r = malloc(sizeof *r);
  char req[1024];
  char chunk[81];
  memset(chunk, 'c', 80);
  chunk[80] = 0;
  snprintf(req, sizeof req,
           "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
           "50\r\n%s\r\n50\r\n%s\r\n0\r\n\r\n", chunk, chunk);
  cli_send(c, req);
  CHECK_INT(cli_response(c, r, 0), 413);
  CHECK(has(r->body, "\"error\":\"body_too_large\""));
  CHECK(cli_closed(c, WAIT_MS));
  CHECK_INT(fx_get(&f, &f.nreq), 0);
  cli_close(c);
  free(r);
  fx_stop(&f);
}

TEST(test_malformed) {
  fx_t f;
  CHECK_INT(fx_start(&f, NULL, MODE_ECHO), 0);
  resp_t *r = malloc(sizeof *r);
  const char *bad[] = {
      "GARBAGE\r\n\r\n",
      "GET / HTTP/1.1\r\nBad Header\r\n\r\n",
      "GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
      "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    cli_t *c = cli_open(f.port);
    cli_send(c, bad[i]);
    CHECK_INT(cli_response(c, r, 0), 400);
    CHECK(has(r->body, "\"error\":\"bad_request\""));
    CHECK(cli_closed(c, WAIT_MS));
    cli_close(c);
  }
  /* a bad request after a good one on the same connection: first answered, then 400 */
  cli_t *c = cli_open(f.port);
  cli_send(c, "GET /ok HTTP/1.1\r\n\r\nNOT HTTP AT ALL\r\n\r\n");
  CHECK_INT(cli_response(c, r, 0), 200);
  CHECK_INT(cli_response(c, r, 0), 400);
  CHECK(cli_closed(c, WAIT_MS));
  cli_close(c);
  CHECK_INT(fx_get(&f, &f.nreq), 1);
  free(r);
  fx_stop(&f);
}

TEST(test_header_timeout) {
  fx_t f;
  http_limits_t lim = {.header_timeout_ms = 200};
  CHECK_INT(fx_start(&f, &lim, MODE_ECHO), 0);
  cli_t *c = cli_open(f.port);
  resp_t *r = malloc(sizeof *r);
  int64_t t0 = clock_mono_us();
  cli_send(c, "GET / HTTP/1.1\r\nHost: h\r\n");
  CHECK_INT(cli_response(c, r, 0), 408);
  int64_t waited_ms = (clock_mono_us() - t0) / 1000;
  CHECK(waited_ms >= 150);
  CHECK(has(r->body, "\"error\":\"timeout\""));
  CHECK(cli_closed(c, WAIT_MS));
  CHECK_INT(fx_get(&f, &f.nreq), 0);
  cli_close(c);
  free(r);
  fx_stop(&f);
}

TEST(test_body_timeout) {
  fx_t f;
  http_limits_t lim = {.body_timeout_ms = 200};
  CHECK_INT(fx_start(&f, &lim, MODE_ECHO), 0);
  cli_t *c = cli_open(f.port);
  resp_t *r = malloc(sizeof *r);
  int64_t t0 = clock_mono_us();
  cli_send(c, "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\nabc");
  CHECK_INT(cli_response(c, r, 0), 408);
  CHECK((clock_mono_us() - t0) / 1000 >= 150);
  CHECK(has(r->body, "\"error\":\"timeout\""));
  CHECK(cli_closed(c, WAIT_MS));
  CHECK_INT(fx_get(&f, &f.nreq), 0);
  cli_close(c);
  free(r);
  fx_stop(&f);
}

TEST(test_idle_timeout) {
  fx_t f;
  http_limits_t lim = {.idle_timeout_ms = 200};
  CHECK_INT(fx_start(&f, &lim, MODE_ECHO), 0);
  resp_t *r = malloc(sizeof *r);
  /* after a request */
  cli_t *c = cli_open(f.port);
  cli_send(c, "GET / HTTP/1.1\r\nHost: h\r\n\r\n");
  CHECK_INT(cli_response(c, r, 0), 200);
  int64_t t0 = clock_mono_us();
  CHECK(cli_closed(c, WAIT_MS)); /* silently: no bytes before EOF */
  CHECK((clock_mono_us() - t0) / 1000 >= 150);
  cli_close(c);
  /* a connection that never sends */
  c = cli_open(f.port);
  CHECK(cli_closed(c, WAIT_MS));
  cli_close(c);
  CHECK(fx_wait_conns(&f, 0));
  CHECK_INT(fx_get(&f, &f.nobserved), 1);
  free(r);
  fx_stop(&f);
}

TEST(test_expect_continue) {
  fx_t f;
  http_limits_t lim = {.max_body_bytes = 100};
  CHECK_INT(fx_start(&f, &lim, MODE_ECHO), 0);
  cli_t *c = cli_open(f.port);
  resp_t *r = malloc(sizeof *r);
  cli_send(c, "POST /e HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n");
  CHECK_INT(cli_response(c, r, 0), 100);
  CHECK_STR(r->head, "HTTP/1.1 100 Continue\r\n\r\n");
  cli_send(c, "hello");
  CHECK_INT(cli_response(c, r, 0), 200);
  CHECK(has(r->body, "body=5:hello"));
  cli_close(c);

  /* too large: 413 and no 100 */
  c = cli_open(f.port);
  cli_send(c, "POST /e HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 500\r\n\r\n");
  CHECK_INT(cli_response(c, r, 0), 413);
  CHECK(cli_closed(c, WAIT_MS));
  cli_close(c);
  free(r);
  fx_stop(&f);
}

TEST(test_head) {
  fx_t f;
  CHECK_INT(fx_start(&f, NULL, MODE_ECHO), 0);
  cli_t *c = cli_open(f.port);
  resp_t *r = malloc(sizeof *r);
  cli_send(c, "HEAD /h HTTP/1.1\r\nHost: h\r\n\r\n");
  CHECK_INT(cli_response(c, r, 1), 200);
  char v[32];
  size_t expect = strlen("method=HEAD path=/h query= peer=127.0.0.1 x-test=(none) body=0:");
  CHECK_INT(strtoul(resp_header(r, "Content-Length", v, sizeof v), NULL, 10), expect);
  /* no body bytes followed: the next response starts right away */
  cli_send(c, "GET /next HTTP/1.1\r\nHost: h\r\n\r\n");
  CHECK_INT(cli_response(c, r, 0), 200);
  CHECK(has(r->body, "path=/next "));
  cli_close(c);
  free(r);
  fx_stop(&f);
}

TEST(test_disconnect_before_async_response) {
  fx_t f;
  CHECK_INT(fx_start(&f, NULL, MODE_HOLD), 0);
  /* client resets */
  cli_t *c = cli_open(f.port);
  cli_send(c, "POST /slow HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\nhi");
  CHECK(fx_wait_held(&f, 1));
  cli_reset(c);
  usleep(20000);
  fx_call(&f, cmd_answer_held, NULL);
  CHECK(fx_wait_conns(&f, 0));
  /* client closes politely */
  c = cli_open(f.port);
  cli_send(c, "GET /slow HTTP/1.1\r\nHost: h\r\n\r\n");
  CHECK(fx_wait_held(&f, 1));
  cli_close(c);
  usleep(20000);
  fx_call(&f, cmd_answer_held, NULL);
  CHECK(fx_wait_conns(&f, 0));
  fx_stop(&f);

  /* server freed while a request is held: cmd_stop answers it in the same loop turn */
  CHECK_INT(fx_start(&f, NULL, MODE_HOLD), 0);
  c = cli_open(f.port);
  cli_send(c, "GET /held HTTP/1.1\r\nHost: h\r\n\r\n");
  CHECK(fx_wait_held(&f, 1));
  fx_stop(&f);
  CHECK(cli_closed(c, WAIT_MS));
  cli_close(c);

  /* ... and answered only after the connection's handles are closed */
  CHECK_INT(fx_start(&f, NULL, MODE_HOLD), 0);
  c = cli_open(f.port);
  cli_send(c, "GET /held HTTP/1.1\r\nHost: h\r\n\r\n");
  CHECK(fx_wait_held(&f, 1));
  fx_call(&f, cmd_free_server, NULL);
  CHECK(cli_closed(c, WAIT_MS));
  fx_call(&f, cmd_answer_gone, NULL); /* close callbacks ran in the earlier loop turn */
  fx_stop(&f);
  cli_close(c);
}

TEST(test_response_header_crlf_dropped) {
  fx_t f;
  CHECK_INT(fx_start(&f, NULL, MODE_CRLF), 0);
  cli_t *c = cli_open(f.port);
  resp_t *r = malloc(sizeof *r);
  cli_send(c, "GET / HTTP/1.1\r\nHost: h\r\n\r\n");
  CHECK_INT(cli_response(c, r, 0), 200);
  CHECK_STR(r->body, "body");
  char v[32];
  CHECK_STR(resp_header(r, "X-Good", v, sizeof v), "ok");
  CHECK_STR(resp_header(r, "X-Good2", v, sizeof v), "fine\tvalue");
  CHECK(!has(r->head, "X-Bad"));
  CHECK(!has(r->head, "Set-Cookie"));
  CHECK(!has(r->head, "Bad Name"));
  CHECK(!has(r->head, "999"));
  /* the connection is still usable: nothing injected */
  cli_send(c, "GET / HTTP/1.1\r\nHost: h\r\n\r\n");
  CHECK_INT(cli_response(c, r, 0), 200);
  CHECK_INT(c->len, 0);
  cli_close(c);
  free(r);
  fx_stop(&f);
}

TEST(test_respond_error_json) {
  fx_t f;
  CHECK_INT(fx_start(&f, NULL, MODE_ERROR), 0);
  cli_t *c = cli_open(f.port);
  resp_t *r = malloc(sizeof *r);
  cli_send(c, "GET / HTTP/1.1\r\nHost: h\r\n\r\n");
  CHECK_INT(cli_response(c, r, 0), 422);
  CHECK_STR(r->body, "{\"success\":false,\"error\":\"bad\\\"code\",\"message\":\"line\\nbreak\"}");
  char v[32];
  CHECK_STR(resp_header(r, "Content-Type", v, sizeof v), "application/json");
  CHECK_STR(resp_header(r, "Connection", v, sizeof v), "keep-alive");
  cli_send(c, "GET / HTTP/1.1\r\nHost: h\r\n\r\n");
  CHECK_INT(cli_response(c, r, 0), 422);
  cli_close(c);
  free(r);
  fx_stop(&f);
}

TEST(test_drain) {
  fx_t f;
  CHECK_INT(fx_start(&f, NULL, MODE_HOLD), 0);
  resp_t *r = malloc(sizeof *r);
  cli_t *idle1 = cli_open(f.port);
  cli_t *idle2 = cli_open(f.port);
  cli_t *busy = cli_open(f.port);
  cli_t *partial = cli_open(f.port);
  cli_send(busy, "GET /busy HTTP/1.1\r\nHost: h\r\n\r\n");
  CHECK(fx_wait_held(&f, 1));
  cli_send(partial, "GET /partial HTTP/1.1\r\n");
  CHECK(fx_wait_conns(&f, 4));
  usleep(20000); /* let the partial bytes reach the server */
  fx_call(&f, cmd_drain, NULL);
  CHECK(cli_closed(idle1, WAIT_MS));
  CHECK(cli_closed(idle2, WAIT_MS));
  CHECK(fx_wait_conns(&f, 2));
  CHECK_INT(fx_get(&f, &f.drained), 0);
  CHECK(cli_quiet(busy, 50)); /* still waiting for its answer, not closed */
  /* no new connections */
  cli_t *late = cli_open(f.port);
  CHECK(late == NULL);
  cli_close(late);
  /* the busy one gets its answer with Connection: close */
  fx_call(&f, cmd_answer_held, NULL);
  CHECK_INT(cli_response(busy, r, 0), 200);
  char v[32];
  CHECK_STR(resp_header(r, "Connection", v, sizeof v), "close");
  CHECK(cli_closed(busy, WAIT_MS));
  cli_close(busy);
  CHECK_INT(fx_get(&f, &f.drained), 0);
  /* the partial one finishes its request and is closed after the answer */
  cli_send(partial, "Host: h\r\n\r\n");
  CHECK(fx_wait_held(&f, 1));
  fx_call(&f, cmd_answer_held, NULL);
  CHECK_INT(cli_response(partial, r, 0), 200);
  CHECK_STR(resp_header(r, "Connection", v, sizeof v), "close");
  CHECK(cli_closed(partial, WAIT_MS));
  cli_close(partial);
  CHECK(fx_wait_conns(&f, 0));
  CHECK(fx_wait_int(&f, &f.drained, 1));
  cli_close(idle1);
  cli_close(idle2);
  free(r);
  fx_stop(&f);
}

TEST(test_max_connections) {
  fx_t f;
  http_limits_t lim = {.max_connections = 2};
  CHECK_INT(fx_start(&f, &lim, MODE_ECHO), 0);
  resp_t *r = malloc(sizeof *r);
  cli_t *a = cli_open(f.port), *b = cli_open(f.port);
  cli_send(a, "GET / HTTP/1.1\r\n\r\n");
  CHECK_INT(cli_response(a, r, 0), 200);
  cli_send(b, "GET / HTTP/1.1\r\n\r\n");
  CHECK_INT(cli_response(b, r, 0), 200);
  cli_t *c = cli_open(f.port);
  CHECK(c != NULL);
  cli_send(c, "GET / HTTP/1.1\r\n\r\n");
  CHECK(cli_closed(c, WAIT_MS)); /* accepted, then closed without an answer */
  CHECK_INT(fx_conns(&f), 2);
  cli_close(c);
  /* a slot frees up */
  cli_close(a);
  CHECK(fx_wait_conns(&f, 1));
  c = cli_open(f.port);
  cli_send(c, "GET / HTTP/1.1\r\n\r\n");
  CHECK_INT(cli_response(c, r, 0), 200);
  cli_close(c);
  cli_close(b);
  free(r);
  fx_stop(&f);
}

TEST(test_large_response) {
  fx_t f;
  big_body = malloc(BIG_LEN);
  CHECK_INT(fx_start(&f, NULL, MODE_BIG), 0);
  cli_t *c = cli_open(f.port);
  resp_t *r = malloc(sizeof *r);
  /* two pipelined requests; the first answer cannot go out in one write */
  cli_send(c, "GET /big HTTP/1.1\r\n\r\nGET /big2 HTTP/1.1\r\n\r\n");
  usleep(50000); /* let the server fill the socket before reading */
  for (int k = 0; k < 2; k++) {
    CHECK_INT(cli_response(c, r, 1), 200); /* head only: the body is streamed below */
    char v[32];
    CHECK_INT(strtoul(resp_header(r, "Content-Length", v, sizeof v), NULL, 10), BIG_LEN);
    size_t got = 0, bad = 0;
    int64_t deadline = clock_mono_us() + WAIT_MS * 1000;
    while (got < BIG_LEN) {
      if (c->len == 0 && cli_fill(c, deadline) <= 0) break;
      size_t n = c->len < BIG_LEN - got ? c->len : BIG_LEN - got;
      for (size_t i = 0; i < n; i++)
        if (c->buf[i] != (char)('a' + (got + i) % 26)) bad++;
      memmove(c->buf, c->buf + n, c->len - n);
      c->len -= n;
      got += n;
    }
    CHECK_INT(got, BIG_LEN);
    CHECK_INT(bad, 0);
  }
  CHECK_INT(fx_get(&f, &f.nreq), 2);
  cli_close(c);
  free(r);
  fx_stop(&f);
  free(big_body);
}

TEST(test_upgrade_refused) {
  fx_t f;
  CHECK_INT(fx_start(&f, NULL, MODE_ECHO), 0);
  cli_t *c = cli_open(f.port);
  resp_t *r = malloc(sizeof *r);
  cli_send(c, "GET /ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
              "\x81\x05hello");
  CHECK_INT(cli_response(c, r, 0), 200); /* answered as plain HTTP, then closed */
  char v[32];
  CHECK_STR(resp_header(r, "Connection", v, sizeof v), "close");
  CHECK(cli_closed(c, WAIT_MS));
  CHECK_INT(fx_get(&f, &f.nreq), 1);
  cli_close(c);
  free(r);
  fx_stop(&f);
}

TEST(test_peer_ipv6) {
  fx_t f;
  if (fx_start_on(&f, NULL, MODE_ECHO, "::") != 0) {
    printf("  (skipped: no IPv6)\n");
    return;
  }
  resp_t *r = malloc(sizeof *r);
  /* IPv4 client on a dual-stack listener: shown as plain IPv4 */
  cli_t *c = cli_open(f.port);
  CHECK(c != NULL);
  if (c) {
    cli_send(c, "GET / HTTP/1.1\r\n\r\n");
    CHECK_INT(cli_response(c, r, 0), 200);
    CHECK(has(r->body, " peer=127.0.0.1 "));
    cli_close(c);
  }
  int fd = socket(AF_INET6, SOCK_STREAM, 0);
  struct sockaddr_in6 sa = {.sin6_family = AF_INET6, .sin6_port = htons((uint16_t)f.port)};
  sa.sin6_addr = in6addr_loopback;
  if (connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0) {
    c = calloc(1, sizeof *c);
    c->fd = fd;
    cli_send(c, "GET / HTTP/1.1\r\n\r\n");
    CHECK_INT(cli_response(c, r, 0), 200);
    CHECK(has(r->body, " peer=::1 "));
    cli_close(c);
  } else {
    close(fd);
  }
  free(r);
  fx_stop(&f);
}

/* ---- Read-ahead while the handler holds a request ---- */

TEST(test_pipelined_while_held) {
  /* the next request arrives while the first is with the handler: parked, then served */
  fx_t f;
  CHECK_INT(fx_start(&f, NULL, MODE_HOLD), 0);
  cli_t *c = cli_open(f.port);
  resp_t *r = malloc(sizeof *r);
  cli_send(c, "GET /a HTTP/1.1\r\nHost: h\r\n\r\n");
  CHECK(fx_wait_held(&f, 1));
  cli_send(c, "POST /b HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nxyz");
  usleep(30000);
  CHECK_INT(fx_get(&f, &f.nreq), 1); /* not dispatched before /a is answered */
  fx_call(&f, cmd_answer_first, NULL);
  CHECK_INT(cli_response(c, r, 0), 200);
  CHECK(has(r->body, "path=/a "));
  CHECK(fx_wait_held(&f, 1));
  fx_call(&f, cmd_answer_first, NULL);
  CHECK_INT(cli_response(c, r, 0), 200);
  CHECK(has(r->body, "path=/b "));
  CHECK(has(r->body, "body=3:xyz"));
  pthread_mutex_lock(&f.mu);
  CHECK_STR(f.log, "D/a D/b ");
  pthread_mutex_unlock(&f.mu);
  cli_close(c);
  free(r);
  fx_stop(&f);
}

TEST(test_read_ahead_bound) {
  /* 300 KB arrive while a request is held: more than the read-ahead bound, so reading
   * stops and must resume for the rest of the big body once the first is answered */
  fx_t f;
  CHECK_INT(fx_start(&f, NULL, MODE_HOLD), 0);
  cli_t *c = cli_open(f.port);
  resp_t *r = malloc(sizeof *r);
  cli_send(c, "GET /a HTTP/1.1\r\nHost: h\r\n\r\n");
  CHECK(fx_wait_held(&f, 1));
  size_t blen = 300000;
  char *req = malloc(blen + 128);
  int n = snprintf(req, 128, "POST /big HTTP/1.1\r\nHost: h\r\nContent-Length: %zu\r\n\r\n", blen);
  memset(req + n, 'b', blen);
  cli_send_n(c, req, (size_t)n + blen); /* fits the socket buffers: returns */
  cli_send(c, "GET /after HTTP/1.1\r\nHost: h\r\n\r\n");
  usleep(50000);
  fx_call(&f, cmd_answer_first, NULL);
  CHECK_INT(cli_response(c, r, 0), 200);
  CHECK(has(r->body, "path=/a "));
  CHECK(fx_wait_held(&f, 1));
  fx_call(&f, cmd_answer_first, NULL);
  CHECK_INT(cli_response(c, r, 0), 200);
  CHECK(has(r->body, "path=/big "));
  CHECK(has(r->body, "body=300000:bbbb"));
  CHECK(fx_wait_held(&f, 1));
  fx_call(&f, cmd_answer_first, NULL);
  CHECK_INT(cli_response(c, r, 0), 200);
  CHECK(has(r->body, "path=/after "));
  cli_close(c);
  free(req);
  free(r);
  fx_stop(&f);
}

TEST(test_next_header_timeout_starts_at_parse) {
  /* a partial next request parked while the first is held: its header timeout starts
   * when it is parsed (after the answer), not when its bytes arrived */
  fx_t f;
  http_limits_t lim = {.header_timeout_ms = 200};
  CHECK_INT(fx_start(&f, &lim, MODE_HOLD), 0);
  cli_t *c = cli_open(f.port);
  resp_t *r = malloc(sizeof *r);
  cli_send(c, "GET /a HTTP/1.1\r\nHost: h\r\n\r\nGET /b HTTP/1.1\r\n");
  CHECK(fx_wait_held(&f, 1));
  usleep(400000); /* twice the header timeout while held */
  fx_call(&f, cmd_answer_first, NULL);
  int64_t t0 = clock_mono_us();
  CHECK_INT(cli_response(c, r, 0), 200);
  CHECK(has(r->body, "path=/a "));
  CHECK_INT(cli_response(c, r, 0), 408);
  CHECK((clock_mono_us() - t0) / 1000 >= 150);
  CHECK(cli_closed(c, WAIT_MS));
  cli_close(c);
  free(r);
  fx_stop(&f);
}

TEST(test_half_close_answered) {
  /* the client sends two requests and half-closes: both are answered, then the close */
  fx_t f;
  CHECK_INT(fx_start(&f, NULL, MODE_ASYNC_FIRST), 0);
  cli_t *c = cli_open(f.port);
  resp_t *r = malloc(sizeof *r);
  cli_send(c, "GET /a HTTP/1.1\r\nHost: h\r\n\r\nGET /b HTTP/1.1\r\nHost: h\r\n\r\n");
  shutdown(c->fd, SHUT_WR);
  CHECK_INT(cli_response(c, r, 0), 200);
  CHECK(has(r->body, "path=/a "));
  CHECK_INT(cli_response(c, r, 0), 200);
  CHECK(has(r->body, "path=/b "));
  CHECK(cli_closed(c, WAIT_MS));
  CHECK(fx_wait_conns(&f, 0));
  cli_close(c);
  free(r);
  fx_stop(&f);
}

/* ---- Streams ---- */

typedef struct stream_write {
  const void *data;
  size_t len;
  int rc;
  size_t queued;
} stream_write_t;

static void cmd_stream_write(fx_t *f, void *arg) {
  stream_write_t *w = arg;
  w->rc = f->stream ? http_stream_write(f->stream, w->data, w->len) : -EBADF;
  w->queued = f->stream ? http_stream_queued(f->stream) : 0;
}

static void cmd_start_stream(fx_t *f, void *arg) { start_stream(f, arg); }

static void cmd_stream_end(fx_t *f, void *arg) {
  if (f->stream) http_stream_end(f->stream);
}

static void cmd_stream_bound(fx_t *f, void *arg) {
  if (f->stream) http_stream_set_max_queue(f->stream, *(size_t *)arg);
}

static int fx_stream_write(fx_t *f, const char *s) {
  stream_write_t w = {s, strlen(s), 0, 0};
  fx_call(f, cmd_stream_write, &w);
  return w.rc;
}

static int fx_has_stream(fx_t *f) {
  pthread_mutex_lock(&f->mu);
  int yes = f->stream != NULL;
  pthread_mutex_unlock(&f->mu);
  return yes;
}

/* The head can reach the client before the handler stored the handle: poll. */
static int fx_wait_stream(fx_t *f) {
  int64_t deadline = clock_mono_us() + WAIT_MS * 1000;
  while (clock_mono_us() < deadline) {
    if (fx_has_stream(f)) return 1;
    usleep(1000);
  }
  return 0;
}

/* Read until the buffer holds want (NUL-terminated compare) or the deadline passes. */
static int cli_wait_for(cli_t *c, const char *want) {
  int64_t deadline = clock_mono_us() + WAIT_MS * 1000;
  size_t n = strlen(want);
  while (!memmem(c->buf, c->len, want, n))
    if (cli_fill(c, deadline) <= 0) return 0;
  return 1;
}

TEST(test_stream_basic) {
  fx_t f;
  http_limits_t lim = {.idle_timeout_ms = 100, .header_timeout_ms = 100};
  CHECK_INT(fx_start(&f, &lim, MODE_STREAM), 0);
  cli_t *c = cli_open(f.port);
  resp_t *r = malloc(sizeof *r);
  /* a pipelined request behind the stream's is never served */
  cli_send(c, "GET /s HTTP/1.1\r\nHost: h\r\n\r\nGET /x HTTP/1.1\r\nHost: h\r\n\r\n");
  CHECK_INT(cli_response(c, r, 1), 200);
  char v[64];
  CHECK(resp_header(r, "Content-Length", v, sizeof v) == NULL);
  CHECK(resp_header(r, "Transfer-Encoding", v, sizeof v) == NULL);
  CHECK_STR(resp_header(r, "Connection", v, sizeof v), "close");
  CHECK_STR(resp_header(r, "Content-Type", v, sizeof v), "text/plain");
  CHECK(fx_wait_int(&f, &f.nobserved, 1));
  pthread_mutex_lock(&f.mu);
  CHECK_STR(f.last_route, "stream");
  pthread_mutex_unlock(&f.mu);
  CHECK(fx_wait_stream(&f));
  /* no idle or header timeout for a stream */
  CHECK(cli_quiet(c, 300));
  CHECK_INT(fx_conns(&f), 1);
  CHECK_INT(fx_stream_write(&f, "hello "), 0);
  CHECK_INT(fx_stream_write(&f, "world"), 0);
  CHECK(cli_wait_for(c, "hello world"));
  CHECK_INT(fx_get(&f, &f.stream_closed), 0);
  fx_call(&f, cmd_stream_end, NULL);
  CHECK(cli_closed(c, WAIT_MS));
  CHECK(c->len == 11 && memcmp(c->buf, "hello world", 11) == 0);
  CHECK(fx_wait_int(&f, &f.stream_closed, 1));
  CHECK(fx_wait_conns(&f, 0));
  CHECK_INT(fx_get(&f, &f.nreq), 1);
  cli_close(c);

  /* HTTP/1.0 gets the same framing */
  c = cli_open(f.port);
  cli_send(c, "GET /s HTTP/1.0\r\n\r\n");
  CHECK_INT(cli_response(c, r, 1), 200);
  CHECK(resp_header(r, "Content-Length", v, sizeof v) == NULL);
  CHECK_INT(fx_stream_write(&f, "old"), 0);
  CHECK(cli_wait_for(c, "old"));
  fx_call(&f, cmd_stream_end, NULL);
  CHECK(cli_closed(c, WAIT_MS));
  CHECK(fx_wait_int(&f, &f.stream_closed, 2));
  cli_close(c);

  /* HEAD: the head, then the end at once */
  c = cli_open(f.port);
  cli_send(c, "HEAD /s HTTP/1.1\r\nHost: h\r\n\r\n");
  CHECK_INT(cli_response(c, r, 1), 200);
  CHECK(cli_closed(c, WAIT_MS));
  CHECK(fx_wait_int(&f, &f.stream_closed, 3));
  cli_close(c);
  free(r);
  fx_stop(&f);
}

TEST(test_stream_client_leaves) {
  fx_t f;
  CHECK_INT(fx_start(&f, NULL, MODE_STREAM), 0);
  resp_t *r = malloc(sizeof *r);
  for (int k = 0; k < 2; k++) {
    cli_t *c = cli_open(f.port);
    cli_send(c, "GET /s HTTP/1.1\r\nHost: h\r\n\r\n");
    CHECK_INT(cli_response(c, r, 1), 200);
    CHECK(fx_wait_stream(&f));
    if (k == 0) cli_close(c); /* FIN */
    else cli_reset(c);        /* RST */
    CHECK(fx_wait_int(&f, &f.stream_closed, k + 1)); /* noticed without writing */
    CHECK(fx_wait_conns(&f, 0));
    CHECK(!fx_has_stream(&f));
  }
  free(r);
  fx_stop(&f);
}

TEST(test_stream_start_after_client_left) {
  fx_t f;
  CHECK_INT(fx_start(&f, NULL, MODE_HOLD), 0);
  cli_t *c = cli_open(f.port);
  cli_send(c, "GET /s HTTP/1.1\r\nHost: h\r\n\r\n");
  CHECK(fx_wait_held(&f, 1));
  cli_reset(c);
  CHECK(fx_wait_conns(&f, 0));
  pthread_mutex_lock(&f.mu);
  http_req_t *held = f.held[0];
  f.nheld = 0;
  pthread_mutex_unlock(&f.mu);
  fx_call(&f, cmd_start_stream, held);
  CHECK(!fx_has_stream(&f)); /* NULL: released */
  CHECK_INT(fx_get(&f, &f.stream_closed), 0);
  fx_stop(&f);
}

TEST(test_stream_nobufs) {
  fx_t f;
  CHECK_INT(fx_start(&f, NULL, MODE_STREAM), 0);
  cli_t *c = calloc(1, sizeof *c);
  c->fd = socket(AF_INET, SOCK_STREAM, 0);
  int small = 4096; /* a reader that takes little and reads nothing for now */
  setsockopt(c->fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)f.port)};
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  CHECK_INT(connect(c->fd, (struct sockaddr *)&sa, sizeof sa), 0);
  resp_t *r = malloc(sizeof *r);
  cli_send(c, "GET /s HTTP/1.1\r\nHost: h\r\n\r\n");
  CHECK_INT(cli_response(c, r, 1), 200);
  CHECK(fx_wait_stream(&f));
  size_t bound = 64 * 1024;
  fx_call(&f, cmd_stream_bound, &bound);
  enum { CHUNK = 16 * 1024 };
  static char chunk[CHUNK];
  size_t sent = 0;
  stream_write_t w = {0};
  int nobufs = 0;
  for (int i = 0; i < 4000 && !nobufs; i++) { /* at most 64 MB: kernel buffers are less */
    for (size_t k = 0; k < CHUNK; k++) chunk[k] = (char)('a' + (sent + k) % 26);
    w = (stream_write_t){chunk, CHUNK, 0, 0};
    fx_call(&f, cmd_stream_write, &w);
    if (w.rc == -ENOBUFS) nobufs = 1;
    else if (w.rc == 0) sent += CHUNK;
    else break;
  }
  CHECK(nobufs);
  CHECK(w.queued > 0 && w.queued <= bound);
  /* refused writes queued nothing: the reader gets exactly the accepted bytes */
  fx_call(&f, cmd_stream_end, NULL);
  size_t got = c->len, bad = 0;
  for (size_t i = 0; i < c->len; i++)
    if (c->buf[i] != (char)('a' + i % 26)) bad++;
  c->len = 0;
  int64_t deadline = clock_mono_us() + 10 * WAIT_MS * 1000;
  for (;;) {
    int rc = cli_fill(c, deadline);
    for (size_t i = 0; i < c->len; i++)
      if (c->buf[i] != (char)('a' + (got + i) % 26)) bad++;
    got += c->len;
    c->len = 0;
    if (rc <= 0) break;
  }
  CHECK_INT(got, sent);
  CHECK_INT(bad, 0);
  CHECK(fx_wait_int(&f, &f.stream_closed, 1));
  cli_close(c);
  free(r);
  fx_stop(&f);
}

TEST(test_stream_drain) {
  fx_t f;
  CHECK_INT(fx_start(&f, NULL, MODE_STREAM), 0);
  cli_t *c = cli_open(f.port);
  cli_t *idle = cli_open(f.port);
  resp_t *r = malloc(sizeof *r);
  cli_send(c, "GET /s HTTP/1.1\r\nHost: h\r\n\r\n");
  CHECK_INT(cli_response(c, r, 1), 200);
  CHECK_INT(fx_stream_write(&f, "before drain"), 0);
  CHECK(fx_wait_conns(&f, 2)); /* streams count as connections */
  fx_call(&f, cmd_drain, NULL);
  CHECK(cli_closed(idle, WAIT_MS));
  CHECK(cli_wait_for(c, "before drain"));
  CHECK(cli_closed(c, WAIT_MS));
  CHECK(fx_wait_int(&f, &f.stream_closed, 1));
  CHECK(fx_wait_int(&f, &f.drained, 1));
  CHECK_INT(fx_conns(&f), 0);
  cli_close(c);
  cli_close(idle);
  free(r);
  fx_stop(&f);
}

static void noop_handler(http_req_t *r, void *ud) { http_respond(r, 204, NULL, 0, NULL, 0, 0); }

TEST(test_listen) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  http_server_t *a = http_server_new(&loop, NULL, noop_handler, NULL);
  http_server_t *b = http_server_new(&loop, NULL, noop_handler, NULL);
  CHECK_INT(http_server_port(a), -1);
  CHECK_INT(http_server_listen(a, "not-a-host", 0), -EINVAL);
  CHECK_INT(http_server_listen(a, "127.0.0.1", 70000), -EINVAL);
  CHECK_INT(http_server_listen(a, "localhost", 0), 0);
  int port = http_server_port(a);
  CHECK(port > 0);
  CHECK_INT(http_server_listen(b, "127.0.0.1", port), -EADDRINUSE);
  http_server_t *v6 = http_server_new(&loop, NULL, noop_handler, NULL);
  int rc = http_server_listen(v6, "::1", 0);
  CHECK(rc == 0 || rc == -EADDRNOTAVAIL || rc == -EAFNOSUPPORT);
  if (rc == 0) CHECK(http_server_port(v6) > 0);
  http_server_free(a);
  http_server_free(b);
  http_server_free(v6);
  http_server_free(NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK_INT(uv_loop_close(&loop), 0);
  CHECK_STR(http_status_text(404), "Not Found");
  CHECK_STR(http_status_text(431), "Request Header Fields Too Large");
}

int main(void) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  RUN(test_get);
  RUN(test_post_content_length);
  RUN(test_chunked);
  RUN(test_keep_alive);
  RUN(test_pipelined_in_order);
  RUN(test_many_pipelined_sync);
  RUN(test_header_too_large);
  RUN(test_body_too_large_by_length);
  RUN(test_chunked_too_large);
  RUN(test_malformed);
  RUN(test_header_timeout);
  RUN(test_body_timeout);
  RUN(test_idle_timeout);
  RUN(test_expect_continue);
  RUN(test_head);
  RUN(test_disconnect_before_async_response);
  RUN(test_response_header_crlf_dropped);
  RUN(test_respond_error_json);
  RUN(test_drain);
  RUN(test_max_connections);
  RUN(test_large_response);
  RUN(test_upgrade_refused);
  RUN(test_peer_ipv6);
  RUN(test_listen);
  RUN(test_pipelined_while_held);
  RUN(test_read_ahead_bound);
  RUN(test_next_header_timeout_starts_at_parse);
  RUN(test_half_close_answered);
  RUN(test_stream_basic);
  RUN(test_stream_client_leaves);
  RUN(test_stream_start_after_client_left);
  RUN(test_stream_nobufs);
  RUN(test_stream_drain);
  return TEST_REPORT("test_http");
}
