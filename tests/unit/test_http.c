/* test_http: the HTTP/1.1 server adapter over real sockets.
 *
 * Each test starts a server on 127.0.0.1:0 with its own uv loop running in a second
 * thread; the test thread is the client, with blocking sockets and poll() deadlines.
 * Anything that touches the server or the loop from the test thread goes through
 * fx_call, which runs a function on the loop thread and waits for it (nettest.h). */
#include <stdarg.h>
#include <strings.h>

#include "test.h"
#include "nettest.h"

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

typedef struct resp {
  int status;
  char head[8192];
  char body[65536];
  size_t body_len;
} resp_t;

struct fx {
  nt_server_t nt;
  resp_t *r; /* the test thread's response buffer */
  enum mode mode;
  /* loop-thread state, read by the test under nt.mu */
  int nreq;
  char log[512];
  http_req_t *held[8];
  int nheld;
  uv_timer_t delay;
  int nobserved;
  int last_status;
  char last_route[32];
  http_stream_t *stream; /* MODE_STREAM: the current one, NULL after its on_close */
  int stream_closed;     /* on_close calls */
};

static void fx_lock(fx_t *f) { pthread_mutex_lock(&f->nt.mu); }
static void fx_unlock(fx_t *f) { pthread_mutex_unlock(&f->nt.mu); }

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
  /* Headers found in one pass are the ones found one by one (cases, joined repeats,
   * absent names, names of the same length, a name past 63 bytes). */
  static const http_hname_t names[] = {
      HTTP_HNAME("X-Test"), HTTP_HNAME("Host"), HTTP_HNAME("x-test"), HTTP_HNAME("Missing"),
      HTTP_HNAME("Content-Length"), HTTP_HNAME("Transfer-Encoding"), HTTP_HNAME("X-Tes"),
      HTTP_HNAME("X-Long-Header-Name-That-Is-Longer-Than-Sixty-Three-Bytes-For-The-Test")};
  const char *one[sizeof names / sizeof names[0]];
  http_req_headers(r, names, sizeof names / sizeof names[0], one);
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
    const char *want = http_req_header(r, names[i].name);
    ok = ok && (want == one[i] || (want && one[i] && !strcmp(want, one[i])));
  }
  /* More names than the one-pass index holds: those past it are still looked up. */
  static http_hname_t many[300];
  for (size_t i = 0; i < 300; i++) many[i] = names[i % (sizeof names / sizeof names[0])];
  static const char *out_many[300];
  memset(out_many, 0xff, sizeof out_many); /* garbage where nothing would be written */
  http_req_headers(r, many, 300, out_many);
  for (size_t i = 0; i < 300; i++)
    ok = ok && out_many[i] == one[i % (sizeof names / sizeof names[0])];
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

/* Log "R<path>" under the lock, then echo. */
static void echo_logged(fx_t *f, http_req_t *r, const char *route) {
  fx_lock(f);
  fx_log(f, "R%s ", http_req_path(r));
  fx_unlock(f);
  echo(r, route);
}

/* Take the oldest held request out of f->held (NULL if none). */
static http_req_t *take_held(fx_t *f) {
  fx_lock(f);
  http_req_t *r = f->nheld ? f->held[0] : NULL;
  if (r) memmove(f->held, f->held + 1, (size_t)--f->nheld * sizeof f->held[0]);
  fx_unlock(f);
  return r;
}

static void hold(fx_t *f, http_req_t *r) {
  fx_lock(f);
  f->held[f->nheld++] = r;
  fx_unlock(f);
}

static void on_delay(uv_timer_t *t) {
  fx_t *f = t->data;
  echo_logged(f, take_held(f), "delayed");
}

static void on_stream_close(void *ud) {
  fx_t *f = ud;
  fx_lock(f);
  f->stream_closed++;
  f->stream = NULL;
  fx_unlock(f);
}

static void start_stream(fx_t *f, http_req_t *r) {
  http_header_t h[] = {{"Content-Type", "text/plain"},
                       {"Content-Length", "5"},
                       {"Transfer-Encoding", "chunked"}};
  http_req_set_route(r, "stream");
  http_stream_t *st = http_stream_start(r, 200, h, sizeof h / sizeof h[0]);
  if (st) http_stream_on_close(st, on_stream_close, f);
  fx_lock(f);
  f->stream = st;
  fx_unlock(f);
}

static void handler(http_req_t *r, void *ud) {
  fx_t *f = ud;
  fx_lock(f);
  f->nreq++;
  fx_log(f, "D%s ", http_req_path(r));
  fx_unlock(f);
  switch (f->mode) {
    case MODE_ECHO: echo(r, "echo"); break;
    case MODE_ASYNC_FIRST:
      if (f->nreq == 1) {
        hold(f, r);
        uv_timer_start(&f->delay, on_delay, 100, 0);
      } else {
        echo_logged(f, r, "echo");
      }
      break;
    case MODE_HOLD: hold(f, r); break;
    case MODE_CRLF: {
      http_header_t h[] = {{"X-Good", "ok"},
                           {"X-Bad", "a\r\nSet-Cookie: evil=1"},
                           {"X-Bad2", "x\ny"},
                           {"Bad Name", "v"},
                           {"Content-Length", "999"},
                           {"X-Good2", "fine\tvalue"},
                           {"X-Bad3", "a value long enough\x7f"},
                           {"X-Bad4", "0123456789abcdef\rX"},
                           {"Bad(Name", "v"},
                           {"X-Good3", "a longer value, \xc3\xa9, with\ttabs\t"},
                           {"X~!#$%&'*+-.^_`|9z", "punctuation"}};
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
  fx_lock(f);
  f->nobserved++;
  f->last_status = status;
  snprintf(f->last_route, sizeof f->last_route, "%s", route);
  fx_unlock(f);
  (void)latency_us;
}

/* Run cmd(f, arg) on the loop thread and wait for it. */
static void fx_call(fx_t *f, nt_cmd_fn cmd, void *arg) { nt_call(&f->nt, cmd, arg); }

static int fx_start_on(fx_t *f, const http_limits_t *lim, enum mode mode, const char *host) {
  memset(f, 0, sizeof *f);
  f->mode = mode;
  nt_init(&f->nt, f);
  uv_timer_init(&f->nt.loop, &f->delay);
  f->delay.data = f;
  f->nt.srv = http_server_new(&f->nt.loop, lim, handler, f);
  if (!f->nt.srv) return -1;
  http_server_set_observer(f->nt.srv, observer, f);
  int rc = nt_listen(&f->nt, host);
  if (rc < 0) {
    http_server_free(f->nt.srv);
    uv_close((uv_handle_t *)&f->delay, NULL);
    uv_close((uv_handle_t *)&f->nt.wake, NULL);
    uv_run(&f->nt.loop, UV_RUN_DEFAULT);
    uv_loop_close(&f->nt.loop);
    return rc;
  }
  f->r = malloc(sizeof *f->r);
  return 0;
}

static int fx_start(fx_t *f, const http_limits_t *lim, enum mode mode) {
  return fx_start_on(f, lim, mode, "127.0.0.1");
}

static void cmd_stop(fx_t *f, void *arg) {
  http_server_free(f->nt.srv);
  /* requests still held are answered after the free: they must only be released */
  for (int i = 0; i < f->nheld; i++) http_respond(f->held[i], 200, NULL, 0, "late", 4, 0);
  f->nheld = 0;
  uv_close((uv_handle_t *)&f->delay, NULL);
}

/* Free the server, let the loop run dry, and check nothing was left open. */
static void fx_stop(fx_t *f) {
  nt_stop(&f->nt, cmd_stop);
  free(f->r);
}

static size_t fx_conns(fx_t *f) { return nt_conns(&f->nt); }

static int fx_get(fx_t *f, int *field) { return nt_get(&f->nt, field); }

static int conns_are(fx_t *f, const void *n) { return fx_conns(f) == *(const size_t *)n; }
static int held_are(fx_t *f, const void *n) { return fx_get(f, &f->nheld) == *(const int *)n; }

/* Poll until the server has n connections open. */
static int fx_wait_conns(fx_t *f, size_t n) { return nt_poll(conns_are, f, &n, 2000); }

/* Poll until the handler holds n requests. */
static int fx_wait_held(fx_t *f, int n) { return nt_poll(held_are, f, &n, 2000); }

typedef struct field_is {
  int *field;
  int want;
} field_is_t;

static int field_is(fx_t *f, const void *arg) {
  const field_is_t *w = arg;
  return fx_get(f, w->field) == w->want;
}

/* Poll until *field (guarded by nt.mu) equals want. */
static int fx_wait_int(fx_t *f, int *field, int want) {
  field_is_t w = {field, want};
  return nt_poll(field_is, f, &w, 1000);
}

/* 1 if the string field of f (last_route, log; read under nt.mu) is want. */
static int fx_str_is(fx_t *f, const char *field, const char *want) {
  fx_lock(f);
  int same = strcmp(field, want) == 0;
  if (!same) printf("  \"%s\", expected \"%s\"\n", field, want);
  fx_unlock(f);
  return same;
}

static void cmd_free_server(fx_t *f, void *arg) {
  http_server_free(f->nt.srv);
  f->nt.srv = NULL;
}

/* Answer held requests (after the server is gone: only releases them). */
static void cmd_answer_gone(fx_t *f, void *arg) {
  for (int i = 0; i < f->nheld; i++) http_respond_error(f->held[i], 500, "late", "late", NULL, 0);
  f->nheld = 0;
}

/* Answer only the oldest held request (its answer may dispatch the next at once). */
static void cmd_answer_first(fx_t *f, void *arg) {
  http_req_t *r = take_held(f);
  if (r) echo(r, "held");
}

static void cmd_answer_held(fx_t *f, void *arg) {
  for (int i = 0; i < f->nheld; i++) echo(f->held[i], "held");
  f->nheld = 0;
}

/* ---- Client ---- */

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
  int status = cli_head(c, r->head, sizeof r->head, deadline);
  if (status < 0) return r->status = -1;
  char v[32];
  size_t cl = 0;
  if (!head_only && resp_header(r, "Content-Length", v, sizeof v)) cl = strtoul(v, NULL, 10);
  if (cl >= sizeof r->body) return r->status = -1;
  while (c->len < cl)
    if (cli_fill(c, deadline) <= 0) return r->status = -1;
  memcpy(r->body, c->buf, cl);
  r->body[cl] = 0;
  r->body_len = cl;
  cli_take(c, cl);
  return r->status = status;
}

/* Read the next response: 1 if its status is want and its body holds sub (NULL: any
 * body); otherwise print what came and return 0. */
static int answered(cli_t *c, resp_t *r, int want, const char *sub) {
  int status = cli_response(c, r, 0);
  if (status == want && (!sub || has(r->body, sub))) return 1;
  printf("  got %d \"%.200s\", expected %d with \"%s\"\n", status, r->body, want, sub ? sub : "");
  return 0;
}

/* Send req on c, then as answered(). */
static int ask(cli_t *c, resp_t *r, const char *req, int want, const char *sub) {
  cli_send(c, req);
  return answered(c, r, want, sub);
}

/* A test's usual start: the fixture started and one client connected to it. */
static cli_t *fx_begin(fx_t *f, const http_limits_t *lim, enum mode mode) {
  CHECK_INT(fx_start(f, lim, mode), 0);
  return cli_open(f->nt.port);
}

/* ... and its end: the client closed, the fixture stopped. */
static void fx_end(fx_t *f, cli_t *c) {
  cli_close(c);
  fx_stop(f);
}

/* fx_end once the server has closed c: 1, or 0 if it did not within WAIT_MS (as cli_closed). */
static int fx_end_closed(fx_t *f, cli_t *c) {
  int closed = cli_closed(c, WAIT_MS);
  fx_end(f, c);
  return closed;
}

/* ---- Tests ---- */

/* Seconds between the response's Date header and now (the clock is read at most once a
 * second, and the header must still follow it); a large number when it does not parse. */
static double date_skew(const resp_t *r) {
  char v[64];
  struct tm tm = {0};
  if (!resp_header(r, "Date", v, sizeof v)) return 1e9;
  const char *end = strptime(v, "%a, %d %b %Y %H:%M:%S GMT", &tm);
  if (!end || *end) return 1e9;
  return difftime(time(NULL), timegm(&tm));
}

TEST(date_follows_the_clock) {
  fx_t f;
  cli_t *c = fx_begin(&f, NULL, MODE_ECHO);
  for (int i = 0; i < 3; i++) {
    if (i) usleep(1100 * 1000); /* into another second */
    cli_send(c, "GET /p HTTP/1.1\r\nHost: h\r\n\r\n");
    CHECK_INT(cli_response(c, f.r, 0), 200);
    double skew = date_skew(f.r);
    CHECK(skew >= 0 && skew <= 1);
  }
  fx_end(&f, c);
}

TEST(test_get) {
  fx_t f;
  cli_t *c = fx_begin(&f, NULL, MODE_ECHO);
  cli_send(c, "GET /p/a?x=1&y=2#frag HTTP/1.1\r\nHost: h\r\nX-Test: hello\r\n\r\n");
  CHECK_INT(cli_response(c, f.r, 0), 200);
  CHECK_STR(f.r->body, "method=GET path=/p/a query=x=1&y=2 peer=127.0.0.1 x-test=hello body=0:");
  char v[64];
  CHECK(resp_header(f.r, "Date", v, sizeof v) && has(v, " GMT"));
  CHECK_STR(resp_header(f.r, "Connection", v, sizeof v), "keep-alive");
  CHECK_STR(resp_header(f.r, "Content-Type", v, sizeof v), "text/plain");
  CHECK_INT(strtoul(resp_header(f.r, "Content-Length", v, sizeof v), NULL, 10), f.r->body_len);
  CHECK(strncmp(f.r->head, "HTTP/1.1 200 OK\r\n", 17) == 0);
  CHECK(fx_wait_int(&f, &f.nobserved, 1)); /* observed once the response is queued */
  CHECK_INT(fx_get(&f, &f.last_status), 200);
  CHECK(fx_str_is(&f, f.last_route, "echo"));

  /* absolute-form target, no query; duplicated header joined */
  CHECK(ask(c, f.r, "GET http://example.com:8080/abs/p HTTP/1.1\r\nHost: h\r\n"
                  "x-test: a\r\nX-TEST: b\r\n"
                  "x-long-header-name-that-is-longer-than-sixty-three-bytes-for-the-test: l\r\n"
                  "\r\n", 200, "path=/abs/p query= "));
  CHECK(has(f.r->body, "x-test=a, b "));
  CHECK(ask(c, f.r, "GET http://example.com?q=1 HTTP/1.1\r\nHost: h\r\n\r\n", 200,
            "path=/ query=q=1 "));
  fx_end(&f, c);
}

/* One request per case on a fresh echo server; the answer must contain every want. */
typedef struct echo_case {
  const char *name;
  const char *req[2]; /* sent in turn, 20 ms apart (a body split across reads) */
  const char *want[2];
} echo_case_t;

static const echo_case_t echo_cases[] = {
    {"post content-length",
     {"POST /v1/track HTTP/1.1\r\nHost: h\r\nContent-Length: 11\r\n\r\nhello", " world"},
     {"method=POST path=/v1/track ", "body=11:hello world"}},
    {"chunked",
     {"POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
      "5\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n"},
     {"body=11:hello world", "x-test=(none)"}},
};

static void run_echo_case(const echo_case_t *tc) {
  fx_t f;
  cli_t *c = fx_begin(&f, NULL, MODE_ECHO);
  cli_send(c, tc->req[0]);
  if (tc->req[1]) {
    usleep(20000);
    cli_send(c, tc->req[1]);
  }
  CHECK_INT(cli_response(c, f.r, 0), 200);
  for (int i = 0; i < 2; i++)
    if (!has(f.r->body, tc->want[i]))
      FAILF("%s: \"%s\" lacks \"%s\"", tc->name, f.r->body, tc->want[i]);
  fx_end(&f, c);
}

TEST(test_post_content_length) { run_echo_case(&echo_cases[0]); }

TEST(test_chunked) { run_echo_case(&echo_cases[1]); }

/* Open a connection, send req, expect a 200 whose Connection header is conn. */
static cli_t *ask_conn(fx_t *f, resp_t *r, const char *req, const char *conn) {
  cli_t *c = cli_open(f->nt.port);
  CHECK(ask(c, r, req, 200, NULL));
  char v[32];
  CHECK_STR(resp_header(r, "Connection", v, sizeof v), conn);
  return c;
}

TEST(test_keep_alive) {
  fx_t f;
  cli_t *c = fx_begin(&f, NULL, MODE_ECHO);
  CHECK(ask(c, f.r, "GET /one HTTP/1.1\r\nHost: h\r\n\r\n", 200, "path=/one "));
  CHECK(ask(c, f.r, "POST /two HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc", 200,
            "path=/two "));
  CHECK(has(f.r->body, "body=3:abc"));
  CHECK_INT(fx_conns(&f), 1);
  CHECK_INT(fx_get(&f, &f.nreq), 2);
  /* Connection: close is honoured */
  cli_send(c, "GET /three HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n");
  CHECK_INT(cli_response(c, f.r, 0), 200);
  char v[32];
  CHECK_STR(resp_header(f.r, "Connection", v, sizeof v), "close");
  CHECK(cli_closed(c, WAIT_MS));
  cli_close(c);

  /* HTTP/1.0: close by default, keep-alive on request */
  c = ask_conn(&f, f.r, "GET /old HTTP/1.0\r\n\r\n", "close");
  CHECK(cli_closed(c, WAIT_MS));
  cli_close(c);
  c = ask_conn(&f, f.r, "GET /old HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", "keep-alive");
  CHECK(ask(c, f.r, "GET /old2 HTTP/1.0\r\n\r\n", 200, "path=/old2 "));
  fx_end(&f, c);
}

TEST(test_pipelined_in_order) {
  fx_t f;
  cli_t *c = fx_begin(&f, NULL, MODE_ASYNC_FIRST);
  cli_send(c, "GET /a HTTP/1.1\r\nHost: h\r\n\r\n"
              "POST /b HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\nhi"
              "GET /c HTTP/1.1\r\nHost: h\r\n\r\n");
  CHECK(answered(c, f.r, 200, "path=/a "));
  CHECK(answered(c, f.r, 200, "path=/b "));
  CHECK(has(f.r->body, "body=2:hi"));
  CHECK(answered(c, f.r, 200, "path=/c "));
  /* /b was not dispatched before /a was answered */
  CHECK(fx_str_is(&f, f.log, "D/a R/a D/b R/b D/c R/c "));
  fx_end(&f, c);
}

TEST(test_many_pipelined_sync) {
  /* 2000 tiny requests in one go: answered in order without recursion */
  fx_t f;
  cli_t *c = fx_begin(&f, NULL, MODE_ECHO);
  static char big[2000 * 40];
  size_t n = 0;
  for (int i = 0; i < 2000; i++) n += (size_t)sprintf(big + n, "GET /%d HTTP/1.1\r\n\r\n", i);
  cli_send_n(c, big, n);
  int ok = 1;
  for (int i = 0; i < 2000 && ok; i++) {
    char want[32];
    snprintf(want, sizeof want, "path=/%d ", i);
    ok = cli_response(c, f.r, 0) == 200 && has(f.r->body, want);
  }
  CHECK(ok);
  CHECK_INT(fx_get(&f, &f.nreq), 2000);
  fx_end(&f, c);
}

#define RUN_MAX 2048

/* n times ch (n < RUN_MAX), as a string in a static buffer: one at a time. */
static const char *run_of(char ch, size_t n) {
  static char run[RUN_MAX];
  if (n >= sizeof run) n = sizeof run - 1;
  memset(run, ch, n);
  run[n] = 0;
  return run;
}

/* Expect the error answer status/error on c, then the close, no request dispatched.
 * Returns when the answer came (clock_mono_us). */
static int64_t check_refused(fx_t *f, cli_t *c, resp_t *r, int status, const char *error) {
  char want[64];
  snprintf(want, sizeof want, "\"error\":\"%s\"", error);
  CHECK(answered(c, r, status, want));
  int64_t at = clock_mono_us();
  CHECK(cli_closed(c, WAIT_MS));
  CHECK_INT(fx_get(f, &f->nreq), 0);
  return at;
}

TEST(test_header_too_large) {
  fx_t f;
  cli_t *c = fx_begin(&f, &(http_limits_t){.max_header_bytes = 1024}, MODE_ECHO);
  char req[2 * RUN_MAX + 256];
  snprintf(req, sizeof req, "GET / HTTP/1.1\r\nHost: h\r\nX-Big: %s\r\n\r\n", run_of('v', 2000));
  cli_send(c, req);
  check_refused(&f, c, f.r, 431, "header_too_large");
  CHECK(has(f.r->body, "\"success\":false"));
  char v[64];
  CHECK_STR(resp_header(f.r, "Connection", v, sizeof v), "close");
  CHECK_STR(resp_header(f.r, "Content-Type", v, sizeof v), "application/json");
  CHECK(fx_wait_int(&f, &f.nobserved, 1));
  CHECK_INT(fx_get(&f, &f.last_status), 431);
  CHECK(fx_str_is(&f, f.last_route, "other"));
  cli_close(c);

  /* many small header fields: 431 as well */
  c = cli_open(f.nt.port);
  size_t n = (size_t)snprintf(req, sizeof req, "GET / HTTP/1.1\r\n");
  for (int i = 0; i < 200; i++) n += (size_t)snprintf(req + n, sizeof req - n, "h%d:\r\n", i);
  snprintf(req + n, sizeof req - n, "\r\n");
  CHECK(ask(c, f.r, req, 431, NULL));
  CHECK(cli_closed(c, WAIT_MS));
  cli_close(c);

  /* just under the limit passes */
  c = cli_open(f.nt.port);
  snprintf(req, sizeof req, "GET / HTTP/1.1\r\nHost: h\r\nX-Big: %s\r\n\r\n", run_of('v', 900));
  CHECK(ask(c, f.r, req, 200, NULL));
  fx_end(&f, c);
}

TEST(test_body_too_large_by_length) {
  fx_t f;
  cli_t *c = fx_begin(&f, &(http_limits_t){.max_body_bytes = 100}, MODE_ECHO);
  /* headers only: the 413 must come without the body being sent */
  cli_send(c, "POST /v1/batch HTTP/1.1\r\nHost: h\r\nContent-Length: 101\r\n\r\n");
  check_refused(&f, c, f.r, 413, "body_too_large");
  cli_close(c);

  /* exactly the limit is fine */
  c = cli_open(f.nt.port);
  char req[2 * RUN_MAX + 256];
  snprintf(req, sizeof req, "POST / HTTP/1.1\r\nContent-Length: 100\r\n\r\n%s", run_of('b', 100));
  CHECK(ask(c, f.r, req, 200, "body=100:"));
  fx_end(&f, c);
}

TEST(test_chunked_too_large) {
  fx_t f;
  cli_t *c = fx_begin(&f, &(http_limits_t){.max_body_bytes = 100}, MODE_ECHO);
  char req[2 * RUN_MAX + 256];
  const char *chunk = run_of('c', 80);
  snprintf(req, sizeof req,
           "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
           "50\r\n%s\r\n50\r\n%s\r\n0\r\n\r\n", chunk, chunk);
  cli_send(c, req);
  check_refused(&f, c, f.r, 413, "body_too_large");
  fx_end(&f, c);
}

TEST(test_malformed) {
  fx_t f;
  CHECK_INT(fx_start(&f, NULL, MODE_ECHO), 0);
  const char *bad[] = {
      "GARBAGE\r\n\r\n",
      "GET / HTTP/1.1\r\nBad Header\r\n\r\n",
      "GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
      "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    cli_t *c = cli_open(f.nt.port);
    CHECK(ask(c, f.r, bad[i], 400, "\"error\":\"bad_request\""));
    CHECK(cli_closed(c, WAIT_MS));
    cli_close(c);
  }
  /* a bad request after a good one on the same connection: first answered, then 400 */
  cli_t *c = cli_open(f.nt.port);
  CHECK(ask(c, f.r, "GET /ok HTTP/1.1\r\n\r\nNOT HTTP AT ALL\r\n\r\n", 200, NULL));
  CHECK(answered(c, f.r, 400, NULL));
  CHECK(cli_closed(c, WAIT_MS));
  cli_close(c);
  CHECK_INT(fx_get(&f, &f.nreq), 1);
  fx_stop(&f);
}

/* A request that stops short: 408 after the limit's timeout, then the close. */
static void check_timeout(const http_limits_t *lim, const char *req) {
  fx_t f;
  cli_t *c = fx_begin(&f, lim, MODE_ECHO);
  int64_t t0 = clock_mono_us();
  cli_send(c, req);
  int64_t waited_ms = (check_refused(&f, c, f.r, 408, "timeout") - t0) / 1000;
  CHECK(waited_ms >= 150);
  fx_end(&f, c);
}

TEST(test_header_timeout) {
  http_limits_t lim = {.header_timeout_ms = 200};
  check_timeout(&lim, "GET / HTTP/1.1\r\nHost: h\r\n");
}

TEST(test_body_timeout) {
  http_limits_t lim = {.body_timeout_ms = 200};
  check_timeout(&lim, "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\nabc");
}

TEST(test_longer_limit_after_shorter) {
  /* The connection's timer is only moved when a limit ends sooner than it would fire: the
   * header limit's shorter wait must neither close an idle connection nor cut a body. */
  fx_t f;
  http_limits_t lim = {.header_timeout_ms = 100, .body_timeout_ms = 600, .idle_timeout_ms = 600};
  cli_t *c = fx_begin(&f, &lim, MODE_ECHO);
  CHECK(ask(c, f.r, "GET / HTTP/1.1\r\nHost: h\r\n\r\n", 200, NULL));
  CHECK(cli_quiet(c, 300)); /* idle three header limits long: still open, nothing sent */
  int64_t t0 = clock_mono_us();
  cli_send(c, "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\nabc");
  CHECK(answered(c, f.r, 408, "\"error\":\"timeout\""));
  int64_t waited_ms = (clock_mono_us() - t0) / 1000;
  CHECK(waited_ms >= 550);
  CHECK(cli_closed(c, WAIT_MS));
  CHECK_INT(fx_get(&f, &f.nreq), 1);
  fx_end(&f, c);
}

TEST(test_idle_timeout) {
  fx_t f;
  http_limits_t lim = {.idle_timeout_ms = 200};
  CHECK_INT(fx_start(&f, &lim, MODE_ECHO), 0);
  /* after a request */
  cli_t *c = cli_open(f.nt.port);
  CHECK(ask(c, f.r, "GET / HTTP/1.1\r\nHost: h\r\n\r\n", 200, NULL));
  int64_t t0 = clock_mono_us();
  CHECK(cli_closed(c, WAIT_MS)); /* silently: no bytes before EOF */
  CHECK((clock_mono_us() - t0) / 1000 >= 150);
  cli_close(c);
  /* a connection that never sends */
  c = cli_open(f.nt.port);
  CHECK(cli_closed(c, WAIT_MS));
  cli_close(c);
  CHECK(fx_wait_conns(&f, 0));
  CHECK_INT(fx_get(&f, &f.nobserved), 1);
  fx_stop(&f);
}

TEST(test_expect_continue) {
  fx_t f;
  cli_t *c = fx_begin(&f, &(http_limits_t){.max_body_bytes = 100}, MODE_ECHO);
  CHECK(ask(c, f.r, "POST /e HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\n"
                    "Content-Length: 5\r\n\r\n", 100, NULL));
  CHECK_STR(f.r->head, "HTTP/1.1 100 Continue\r\n\r\n");
  CHECK(ask(c, f.r, "hello", 200, "body=5:hello"));
  cli_close(c);

  /* too large: 413 and no 100 */
  c = cli_open(f.nt.port);
  CHECK(ask(c, f.r, "POST /e HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\n"
                    "Content-Length: 500\r\n\r\n", 413, NULL));
  CHECK(fx_end_closed(&f, c));
}

TEST(test_head) {
  fx_t f;
  cli_t *c = fx_begin(&f, NULL, MODE_ECHO);
  cli_send(c, "HEAD /h HTTP/1.1\r\nHost: h\r\n\r\n");
  CHECK_INT(cli_response(c, f.r, 1), 200);
  char v[32];
  size_t expect = strlen("method=HEAD path=/h query= peer=127.0.0.1 x-test=(none) body=0:");
  CHECK_INT(strtoul(resp_header(f.r, "Content-Length", v, sizeof v), NULL, 10), expect);
  /* no body bytes followed: the next response starts right away */
  CHECK(ask(c, f.r, "GET /next HTTP/1.1\r\nHost: h\r\n\r\n", 200, "path=/next "));
  fx_end(&f, c);
}

/* Open a connection to a MODE_HOLD fixture and send req; returns once it is held. */
static cli_t *send_held(fx_t *f, const char *req) {
  cli_t *c = cli_open(f->nt.port);
  cli_send(c, req);
  CHECK(fx_wait_held(f, 1));
  return c;
}

/* http_server_all_held, read on the loop thread. */
static void cmd_all_held(fx_t *f, void *arg) { *(int *)arg = http_server_all_held(f->nt.srv); }
static int all_held(fx_t *f) {
  int v = -1;
  fx_call(f, cmd_all_held, &v);
  return v;
}

TEST(test_all_held) {
  fx_t f;
  CHECK_INT(fx_start(&f, NULL, MODE_HOLD), 0);
  CHECK_INT(all_held(&f), 0); /* no connection */
  cli_t *a = send_held(&f, "GET /a HTTP/1.1\r\nHost: h\r\n\r\n");
  CHECK_INT(all_held(&f), 1);
  cli_t *b = cli_open(f.nt.port); /* open, but sends nothing yet */
  CHECK(fx_wait_conns(&f, 2));
  CHECK_INT(all_held(&f), 0);
  cli_send(b, "POST /b HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\nhi");
  CHECK(fx_wait_held(&f, 2));
  CHECK_INT(all_held(&f), 1);
  fx_call(&f, cmd_answer_first, NULL); /* a is answered and waits for its next request */
  CHECK_INT(all_held(&f), 0);
  cli_reset(b); /* the held request's connection goes away */
  CHECK(fx_wait_conns(&f, 1));
  CHECK_INT(all_held(&f), 0);
  cli_send(a, "GET /a2 HTTP/1.1\r\nHost: h\r\n\r\n");
  CHECK(fx_wait_held(&f, 2)); /* b's request, still held, and a's next */
  CHECK_INT(all_held(&f), 1);
  fx_call(&f, cmd_answer_held, NULL);
  CHECK_INT(all_held(&f), 0);
  cli_close(a);
  fx_stop(&f);
}

TEST(test_disconnect_before_async_response) {
  fx_t f;
  CHECK_INT(fx_start(&f, NULL, MODE_HOLD), 0);
  /* client resets, or closes politely */
  for (int polite = 0; polite < 2; polite++) {
    cli_t *c = send_held(&f, polite ? "GET /slow HTTP/1.1\r\nHost: h\r\n\r\n"
                                    : "POST /slow HTTP/1.1\r\nHost: h\r\n"
                                      "Content-Length: 2\r\n\r\nhi");
    if (polite) cli_close(c);
    else cli_reset(c);
    usleep(20000);
    fx_call(&f, cmd_answer_held, NULL);
    CHECK(fx_wait_conns(&f, 0));
  }
  fx_stop(&f);

  /* server freed while a request is held: cmd_stop answers it in the same loop turn */
  CHECK_INT(fx_start(&f, NULL, MODE_HOLD), 0);
  cli_t *c = send_held(&f, "GET /held HTTP/1.1\r\nHost: h\r\n\r\n");
  fx_stop(&f);
  CHECK(cli_closed(c, WAIT_MS));
  cli_close(c);

  /* ... and answered only after the connection's handles are closed */
  CHECK_INT(fx_start(&f, NULL, MODE_HOLD), 0);
  c = send_held(&f, "GET /held HTTP/1.1\r\nHost: h\r\n\r\n");
  fx_call(&f, cmd_free_server, NULL);
  CHECK(cli_closed(c, WAIT_MS));
  fx_call(&f, cmd_answer_gone, NULL); /* close callbacks ran in the earlier loop turn */
  fx_stop(&f);
  cli_close(c);
}

TEST(test_response_header_crlf_dropped) {
  fx_t f;
  cli_t *c = fx_begin(&f, NULL, MODE_CRLF);
  CHECK(ask(c, f.r, "GET / HTTP/1.1\r\nHost: h\r\n\r\n", 200, NULL));
  CHECK_STR(f.r->body, "body");
  char v[32];
  CHECK_STR(resp_header(f.r, "X-Good", v, sizeof v), "ok");
  CHECK_STR(resp_header(f.r, "X-Good2", v, sizeof v), "fine\tvalue");
  CHECK_STR(resp_header(f.r, "X-Good3", v, sizeof v), "a longer value, \xc3\xa9, with\ttabs\t");
  CHECK_STR(resp_header(f.r, "X~!#$%&'*+-.^_`|9z", v, sizeof v), "punctuation");
  static const char *dropped[] = {"X-Bad", "Set-Cookie", "Bad Name", "999", "Bad(Name"};
  for (size_t i = 0; i < sizeof dropped / sizeof dropped[0]; i++)
    if (has(f.r->head, dropped[i])) FAILF("head holds \"%s\"", dropped[i]);
  /* the connection is still usable: nothing injected */
  CHECK(ask(c, f.r, "GET / HTTP/1.1\r\nHost: h\r\n\r\n", 200, NULL));
  CHECK_INT(c->len, 0);
  fx_end(&f, c);
}

TEST(test_respond_error_json) {
  fx_t f;
  cli_t *c = fx_begin(&f, NULL, MODE_ERROR);
  CHECK(ask(c, f.r, "GET / HTTP/1.1\r\nHost: h\r\n\r\n", 422, NULL));
  char v[32];
  CHECK_STR(resp_header(f.r, "Content-Type", v, sizeof v), "application/json");
  CHECK_STR(resp_header(f.r, "Connection", v, sizeof v), "keep-alive");
  CHECK_STR(f.r->body,
            "{\"success\":false,\"error\":\"bad\\\"code\",\"message\":\"line\\nbreak\"}");
  CHECK(ask(c, f.r, "GET / HTTP/1.1\r\nHost: h\r\n\r\n", 422, NULL));
  fx_end(&f, c);
}

/* The held request of c is answered: a 200 with Connection: close, then the close. */
static void check_last_answer(fx_t *f, cli_t *c, resp_t *r) {
  fx_call(f, cmd_answer_held, NULL);
  CHECK(answered(c, r, 200, NULL));
  char v[32];
  CHECK_STR(resp_header(r, "Connection", v, sizeof v), "close");
  CHECK(cli_closed(c, WAIT_MS));
  cli_close(c);
}

TEST(test_drain) {
  fx_t f;
  CHECK_INT(fx_start(&f, NULL, MODE_HOLD), 0);
  cli_t *idle1 = cli_open(f.nt.port);
  cli_t *idle2 = cli_open(f.nt.port);
  cli_t *busy = cli_open(f.nt.port);
  cli_t *partial = cli_open(f.nt.port);
  cli_send(busy, "GET /busy HTTP/1.1\r\nHost: h\r\n\r\n");
  CHECK(fx_wait_held(&f, 1));
  cli_send(partial, "GET /partial HTTP/1.1\r\n");
  CHECK(fx_wait_conns(&f, 4));
  usleep(20000); /* let the partial bytes reach the server */
  nt_drain(&f.nt);
  CHECK(cli_closed(idle1, WAIT_MS));
  CHECK(cli_closed(idle2, WAIT_MS));
  CHECK(fx_wait_conns(&f, 2));
  CHECK_INT(fx_get(&f, &f.nt.drained), 0);
  CHECK(cli_quiet(busy, 50)); /* still waiting for its answer, not closed */
  /* no new connections */
  cli_t *late = cli_open(f.nt.port);
  CHECK(late == NULL);
  cli_close(late);
  /* the busy one gets its answer with Connection: close */
  check_last_answer(&f, busy, f.r);
  CHECK_INT(fx_get(&f, &f.nt.drained), 0);
  /* the partial one finishes its request and is closed after the answer */
  cli_send(partial, "Host: h\r\n\r\n");
  CHECK(fx_wait_held(&f, 1));
  check_last_answer(&f, partial, f.r);
  CHECK(fx_wait_conns(&f, 0));
  CHECK(fx_wait_int(&f, &f.nt.drained, 1));
  cli_close(idle1);
  cli_close(idle2);
  fx_stop(&f);
}

TEST(test_max_connections) {
  fx_t f;
  http_limits_t lim = {.max_connections = 2};
  CHECK_INT(fx_start(&f, &lim, MODE_ECHO), 0);
  const char *get = "GET / HTTP/1.1\r\n\r\n";
  cli_t *a = cli_open(f.nt.port), *b = cli_open(f.nt.port);
  CHECK(ask(a, f.r, get, 200, NULL));
  CHECK(ask(b, f.r, get, 200, NULL));
  cli_t *c = cli_open(f.nt.port);
  CHECK(c != NULL);
  cli_send(c, get);
  CHECK(cli_closed(c, WAIT_MS)); /* accepted, then closed without an answer */
  CHECK_INT(fx_conns(&f), 2);
  cli_close(c);
  /* a slot frees up */
  cli_close(a);
  CHECK(fx_wait_conns(&f, 1));
  c = cli_open(f.nt.port);
  CHECK(ask(c, f.r, get, 200, NULL));
  cli_close(b);
  fx_end(&f, c);
}

TEST(test_large_response) {
  fx_t f;
  big_body = malloc(BIG_LEN);
  cli_t *c = fx_begin(&f, NULL, MODE_BIG);
  /* two pipelined requests; the first answer cannot go out in one write */
  cli_send(c, "GET /big HTTP/1.1\r\n\r\nGET /big2 HTTP/1.1\r\n\r\n");
  usleep(50000); /* let the server fill the socket before reading */
  for (int k = 0; k < 2; k++) {
    CHECK_INT(cli_response(c, f.r, 1), 200); /* head only: the body is streamed below */
    char v[32];
    CHECK_INT(strtoul(resp_header(f.r, "Content-Length", v, sizeof v), NULL, 10), BIG_LEN);
    size_t got = 0, bad = 0;
    int64_t deadline = clock_mono_us() + WAIT_MS * 1000;
    while (got < BIG_LEN) {
      if (c->len == 0 && cli_fill(c, deadline) <= 0) break;
      size_t n = c->len < BIG_LEN - got ? c->len : BIG_LEN - got;
      for (size_t i = 0; i < n; i++)
        if (c->buf[i] != (char)('a' + (got + i) % 26)) bad++;
      cli_take(c, n);
      got += n;
    }
    CHECK_INT(got, BIG_LEN);
    CHECK_INT(bad, 0);
  }
  CHECK_INT(fx_get(&f, &f.nreq), 2);
  fx_end(&f, c);
  free(big_body);
}

TEST(test_upgrade_refused) {
  fx_t f;
  cli_t *c = fx_begin(&f, NULL, MODE_ECHO);
  /* answered as plain HTTP, then closed */
  CHECK(ask(c, f.r, "GET /ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\n"
                    "Upgrade: websocket\r\n\r\n\x81\x05hello", 200, NULL));
  char v[32];
  CHECK_STR(resp_header(f.r, "Connection", v, sizeof v), "close");
  CHECK(cli_closed(c, WAIT_MS));
  CHECK_INT(fx_get(&f, &f.nreq), 1);
  fx_end(&f, c);
}

TEST(test_peer_ipv6) {
  fx_t f;
  if (fx_start_on(&f, NULL, MODE_ECHO, "::") != 0) {
    printf("  (skipped: no IPv6)\n");
    return;
  }
  /* IPv4 client on a dual-stack listener: shown as plain IPv4 */
  cli_t *c = cli_open(f.nt.port);
  CHECK(c != NULL);
  if (c) {
    CHECK(ask(c, f.r, "GET / HTTP/1.1\r\n\r\n", 200, " peer=127.0.0.1 "));
    cli_close(c);
  }
  int fd = socket(AF_INET6, SOCK_STREAM, 0);
  struct sockaddr_in6 sa = {.sin6_family = AF_INET6, .sin6_port = htons((uint16_t)f.nt.port)};
  sa.sin6_addr = in6addr_loopback;
  if (connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0) {
    c = calloc(1, sizeof *c);
    c->fd = fd;
    CHECK(ask(c, f.r, "GET / HTTP/1.1\r\n\r\n", 200, " peer=::1 "));
    cli_close(c);
  } else {
    close(fd);
  }
  fx_stop(&f);
}

/* ---- Read-ahead while the handler holds a request ---- */

/* Answer the oldest held request and expect its response to hold sub. */
static int answer_next(fx_t *f, cli_t *c, resp_t *r, const char *sub) {
  fx_call(f, cmd_answer_first, NULL);
  return answered(c, r, 200, sub);
}

TEST(test_pipelined_while_held) {
  /* the next request arrives while the first is with the handler: parked, then served */
  fx_t f;
  cli_t *c = fx_begin(&f, NULL, MODE_HOLD);
  cli_send(c, "GET /a HTTP/1.1\r\nHost: h\r\n\r\n");
  CHECK(fx_wait_held(&f, 1));
  cli_send(c, "POST /b HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nxyz");
  usleep(30000);
  CHECK_INT(fx_get(&f, &f.nreq), 1); /* not dispatched before /a is answered */
  CHECK(answer_next(&f, c, f.r, "path=/a "));
  CHECK(fx_wait_held(&f, 1));
  CHECK(answer_next(&f, c, f.r, "path=/b "));
  CHECK(has(f.r->body, "body=3:xyz"));
  CHECK(fx_str_is(&f, f.log, "D/a D/b "));
  fx_end(&f, c);
}

TEST(test_read_ahead_bound) {
  /* 300 KB arrive while a request is held: more than the read-ahead bound, so reading
   * stops and must resume for the rest of the big body once the first is answered */
  fx_t f;
  cli_t *c = fx_begin(&f, NULL, MODE_HOLD);
  cli_send(c, "GET /a HTTP/1.1\r\nHost: h\r\n\r\n");
  CHECK(fx_wait_held(&f, 1));
  size_t blen = 300000;
  char *req = malloc(blen + 128);
  int n = snprintf(req, 128, "POST /big HTTP/1.1\r\nHost: h\r\nContent-Length: %zu\r\n\r\n", blen);
  memset(req + n, 'b', blen);
  cli_send_n(c, req, (size_t)n + blen); /* fits the socket buffers: returns */
  cli_send(c, "GET /after HTTP/1.1\r\nHost: h\r\n\r\n");
  usleep(50000);
  static const char *order[] = {"path=/a ", "path=/big ", "path=/after "};
  for (int i = 0; i < 3; i++) {
    if (i) CHECK(fx_wait_held(&f, 1));
    CHECK(answer_next(&f, c, f.r, order[i]));
    if (i == 1) CHECK(has(f.r->body, "body=300000:bbbb"));
  }
  free(req);
  fx_end(&f, c);
}

TEST(test_next_header_timeout_starts_at_parse) {
  /* a partial next request parked while the first is held: its header timeout starts
   * when it is parsed (after the answer), not when its bytes arrived */
  fx_t f;
  cli_t *c = fx_begin(&f, &(http_limits_t){.header_timeout_ms = 200}, MODE_HOLD);
  cli_send(c, "GET /a HTTP/1.1\r\nHost: h\r\n\r\nGET /b HTTP/1.1\r\n");
  CHECK(fx_wait_held(&f, 1));
  usleep(400000); /* twice the header timeout while held */
  fx_call(&f, cmd_answer_first, NULL);
  int64_t t0 = clock_mono_us();
  CHECK(answered(c, f.r, 200, "path=/a "));
  CHECK(answered(c, f.r, 408, NULL));
  CHECK((clock_mono_us() - t0) / 1000 >= 150);
  CHECK(fx_end_closed(&f, c));
}

TEST(test_half_close_answered) {
  /* the client sends two requests and half-closes: both are answered, then the close */
  fx_t f;
  cli_t *c = fx_begin(&f, NULL, MODE_ASYNC_FIRST);
  cli_send(c, "GET /a HTTP/1.1\r\nHost: h\r\n\r\nGET /b HTTP/1.1\r\nHost: h\r\n\r\n");
  shutdown(c->fd, SHUT_WR);
  CHECK(answered(c, f.r, 200, "path=/a "));
  CHECK(answered(c, f.r, 200, "path=/b "));
  CHECK(cli_closed(c, WAIT_MS));
  CHECK(fx_wait_conns(&f, 0));
  fx_end(&f, c);
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
  fx_lock(f);
  int yes = f->stream != NULL;
  fx_unlock(f);
  return yes;
}

static int stream_is_up(fx_t *f, const void *arg) { return fx_has_stream(f); }

/* The head can reach the client before the handler stored the handle: poll. */
static int fx_wait_stream(fx_t *f) { return nt_poll(stream_is_up, f, NULL, 1000); }

/* Send a streamed request on a new connection and read the head of its answer. */
static cli_t *open_stream(fx_t *f, resp_t *r, const char *req) {
  cli_t *c = cli_open(f->nt.port);
  cli_send(c, req);
  CHECK_INT(cli_response(c, r, 1), 200);
  return c;
}

/* End the stream: the client sees the close, the server the n-th on_close. */
static void end_stream(fx_t *f, cli_t *c, int n) {
  fx_call(f, cmd_stream_end, NULL);
  CHECK(cli_closed(c, WAIT_MS));
  CHECK(fx_wait_int(f, &f->stream_closed, n));
}

TEST(test_stream_basic) {
  fx_t f;
  http_limits_t lim = {.idle_timeout_ms = 100, .header_timeout_ms = 100};
  CHECK_INT(fx_start(&f, &lim, MODE_STREAM), 0);
  /* a pipelined request behind the stream's is never served */
  cli_t *c = open_stream(&f, f.r, "GET /s HTTP/1.1\r\nHost: h\r\n\r\n"
                                  "GET /x HTTP/1.1\r\nHost: h\r\n\r\n");
  char v[64];
  CHECK(resp_header(f.r, "Content-Length", v, sizeof v) == NULL);
  CHECK(resp_header(f.r, "Transfer-Encoding", v, sizeof v) == NULL);
  CHECK_STR(resp_header(f.r, "Connection", v, sizeof v), "close");
  CHECK_STR(resp_header(f.r, "Content-Type", v, sizeof v), "text/plain");
  CHECK(fx_wait_int(&f, &f.nobserved, 1));
  CHECK(fx_str_is(&f, f.last_route, "stream"));
  CHECK(fx_wait_stream(&f));
  /* no idle or header timeout for a stream */
  CHECK(cli_quiet(c, 300));
  CHECK_INT(fx_conns(&f), 1);
  CHECK_INT(fx_stream_write(&f, "hello "), 0);
  CHECK_INT(fx_stream_write(&f, "world"), 0);
  CHECK(cli_wait_for(c, "hello world"));
  CHECK_INT(fx_get(&f, &f.stream_closed), 0);
  end_stream(&f, c, 1);
  CHECK(c->len == 11 && memcmp(c->buf, "hello world", 11) == 0);
  CHECK(fx_wait_conns(&f, 0));
  CHECK_INT(fx_get(&f, &f.nreq), 1);
  cli_close(c);

  /* HTTP/1.0 gets the same framing */
  c = open_stream(&f, f.r, "GET /s HTTP/1.0\r\n\r\n");
  CHECK(resp_header(f.r, "Content-Length", v, sizeof v) == NULL);
  CHECK_INT(fx_stream_write(&f, "old"), 0);
  CHECK(cli_wait_for(c, "old"));
  end_stream(&f, c, 2);
  cli_close(c);

  /* HEAD: the head, then the end at once */
  c = cli_open(f.nt.port);
  cli_send(c, "HEAD /s HTTP/1.1\r\nHost: h\r\n\r\n");
  CHECK_INT(cli_response(c, f.r, 1), 200);
  CHECK(cli_closed(c, WAIT_MS));
  CHECK(fx_wait_int(&f, &f.stream_closed, 3));
  fx_end(&f, c);
}

TEST(test_stream_client_leaves) {
  fx_t f;
  CHECK_INT(fx_start(&f, NULL, MODE_STREAM), 0);
  for (int k = 0; k < 2; k++) {
    cli_t *c = open_stream(&f, f.r, "GET /s HTTP/1.1\r\nHost: h\r\n\r\n");
    CHECK(fx_wait_stream(&f));
    if (k == 0) cli_close(c); /* FIN */
    else cli_reset(c);        /* RST */
    CHECK(fx_wait_int(&f, &f.stream_closed, k + 1)); /* noticed without writing */
    CHECK(fx_wait_conns(&f, 0));
    CHECK(!fx_has_stream(&f));
  }
  fx_stop(&f);
}

TEST(test_stream_start_after_client_left) {
  fx_t f;
  CHECK_INT(fx_start(&f, NULL, MODE_HOLD), 0);
  cli_reset(send_held(&f, "GET /s HTTP/1.1\r\nHost: h\r\n\r\n"));
  CHECK(fx_wait_conns(&f, 0));
  fx_call(&f, cmd_start_stream, take_held(&f));
  CHECK(!fx_has_stream(&f)); /* NULL: released */
  CHECK_INT(fx_get(&f, &f.stream_closed), 0);
  fx_stop(&f);
}

TEST(test_stream_nobufs) {
  fx_t f;
  CHECK_INT(fx_start(&f, NULL, MODE_STREAM), 0);
  /* a reader that takes little and reads nothing for now */
  cli_t *c = cli_connect(f.nt.port, 4096);
  CHECK(c != NULL);
  cli_send(c, "GET /s HTTP/1.1\r\nHost: h\r\n\r\n");
  CHECK_INT(cli_response(c, f.r, 1), 200);
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
  fx_end(&f, c);
}

TEST(test_stream_drain) {
  fx_t f;
  CHECK_INT(fx_start(&f, NULL, MODE_STREAM), 0);
  cli_t *c = cli_open(f.nt.port);
  cli_t *idle = cli_open(f.nt.port);
  cli_send(c, "GET /s HTTP/1.1\r\nHost: h\r\n\r\n");
  CHECK_INT(cli_response(c, f.r, 1), 200);
  CHECK_INT(fx_stream_write(&f, "before drain"), 0);
  CHECK(fx_wait_conns(&f, 2)); /* streams count as connections */
  nt_drain(&f.nt);
  CHECK(cli_closed(idle, WAIT_MS));
  CHECK(cli_wait_for(c, "before drain"));
  CHECK(cli_closed(c, WAIT_MS));
  CHECK(fx_wait_int(&f, &f.stream_closed, 1));
  CHECK(fx_wait_int(&f, &f.nt.drained, 1));
  CHECK_INT(fx_conns(&f), 0);
  cli_close(idle);
  fx_end(&f, c);
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
  RUN(date_follows_the_clock);
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
  RUN(test_longer_limit_after_shorter);
  RUN(test_idle_timeout);
  RUN(test_expect_continue);
  RUN(test_head);
  RUN(test_all_held);
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
