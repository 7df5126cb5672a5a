/* nettest.h: the socket harness of test_http and test_sse. A fixture (the test's own
 * struct fx) embeds an nt_server_t: an http_server_t on a uv loop that runs in a second
 * thread, while the test thread is the client, with blocking sockets and poll()
 * deadlines. Whatever touches the server or the loop from the test thread goes through
 * nt_call, which runs a command (the test's typed fx_t function) on the loop thread and
 * waits for it; nt_poll waits for a condition for up to WAIT_MS. The cli_* functions are
 * that client: connect, send, read more within a deadline, read a response head, and
 * tell a closed connection from a silent one. Include after test.h. */
#ifndef SLUICE_NETTEST_H
#define SLUICE_NETTEST_H

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include "http.h"
#include "util/clock.h"

#ifndef WAIT_MS
#define WAIT_MS 3000
#endif

/* ---- Server side: the loop thread ---- */

typedef struct fx fx_t; /* the test's fixture; the harness only passes pointers to it */
typedef void (*nt_cmd_fn)(fx_t *f, void *arg);

typedef struct nt_server {
  uv_loop_t loop;
  uv_async_t wake;
  pthread_t thread;
  pthread_mutex_t mu; /* the command hand-off, and whatever loop-thread state the test keeps */
  pthread_cond_t cv;
  fx_t *fx;
  nt_cmd_fn cmd;
  void *cmd_arg;
  int cmd_done;
  http_server_t *srv;
  int port;
  int drained; /* on_drained calls, under mu */
} nt_server_t;

static inline void nt_on_wake(uv_async_t *a) {
  nt_server_t *s = a->data;
  pthread_mutex_lock(&s->mu);
  nt_cmd_fn cmd = s->cmd;
  void *arg = s->cmd_arg;
  s->cmd = NULL;
  pthread_mutex_unlock(&s->mu);
  if (!cmd) return;
  cmd(s->fx, arg);
  pthread_mutex_lock(&s->mu);
  s->cmd_done = 1;
  pthread_cond_broadcast(&s->cv);
  pthread_mutex_unlock(&s->mu);
}

/* Set up the loop and its wake-up handle (s zeroed by the caller); fx is what commands get. */
static inline void nt_init(nt_server_t *s, fx_t *fx) {
  s->fx = fx;
  pthread_mutex_init(&s->mu, NULL);
  pthread_cond_init(&s->cv, NULL);
  uv_loop_init(&s->loop);
  uv_async_init(&s->loop, &s->wake, nt_on_wake);
  s->wake.data = s;
}

static inline void *nt_loop_main(void *arg) {
  nt_server_t *s = arg;
  uv_run(&s->loop, UV_RUN_DEFAULT);
  return NULL;
}

/* Listen on host, port 0; on success note the port and start the loop thread. */
static inline int nt_listen(nt_server_t *s, const char *host) {
  int rc = http_server_listen(s->srv, host, 0);
  if (rc < 0) return rc;
  s->port = http_server_port(s->srv);
  pthread_create(&s->thread, NULL, nt_loop_main, s);
  return 0;
}

/* Run cmd(fx, arg) on the loop thread and wait for it. */
static inline void nt_call(nt_server_t *s, nt_cmd_fn cmd, void *arg) {
  pthread_mutex_lock(&s->mu);
  s->cmd = cmd;
  s->cmd_arg = arg;
  s->cmd_done = 0;
  uv_async_send(&s->wake);
  while (!s->cmd_done) pthread_cond_wait(&s->cv, &s->mu);
  pthread_mutex_unlock(&s->mu);
}

/* The harness's own commands get the server through this, and a count back. */
typedef struct nt_job {
  nt_server_t *s;
  nt_cmd_fn free_all;
  size_t n;
} nt_job_t;

static inline void nt_cmd_stop(fx_t *f, void *arg) {
  nt_job_t *j = arg;
  j->free_all(f, NULL);
  uv_close((uv_handle_t *)&j->s->wake, NULL);
}

/* Run free_all (which frees the server and the test's handles) on the loop thread, let
 * the loop run dry, and check nothing was left open. */
static inline void nt_stop(nt_server_t *s, nt_cmd_fn free_all) {
  nt_job_t j = {s, free_all, 0};
  nt_call(s, nt_cmd_stop, &j);
  pthread_join(s->thread, NULL);
  CHECK_INT(uv_loop_close(&s->loop), 0);
  pthread_mutex_destroy(&s->mu);
  pthread_cond_destroy(&s->cv);
}

static inline void nt_cmd_conns(fx_t *f, void *arg) {
  nt_job_t *j = arg;
  j->n = http_server_connections(j->s->srv);
}

/* The server's open connections, counted on the loop thread. */
static inline size_t nt_conns(nt_server_t *s) {
  nt_job_t j = {s, NULL, 0};
  nt_call(s, nt_cmd_conns, &j);
  return j.n;
}

static inline void nt_on_drained(void *ud) {
  nt_server_t *s = ud;
  pthread_mutex_lock(&s->mu);
  s->drained++;
  pthread_mutex_unlock(&s->mu);
}

static inline void nt_cmd_drain(fx_t *f, void *arg) {
  nt_server_t *s = arg;
  http_server_drain(s->srv, nt_on_drained, s);
}

/* Start draining the server; s->drained counts its callback. */
static inline void nt_drain(nt_server_t *s) { nt_call(s, nt_cmd_drain, s); }

/* *field, read under mu. */
static inline int nt_get(nt_server_t *s, const int *field) {
  pthread_mutex_lock(&s->mu);
  int v = *field;
  pthread_mutex_unlock(&s->mu);
  return v;
}

/* Poll pred(f, arg) every step_us until it holds (1) or WAIT_MS pass (0). */
static inline int nt_poll(int (*pred)(fx_t *f, const void *arg), fx_t *f, const void *arg,
                          int step_us) {
  int64_t deadline = clock_mono_us() + WAIT_MS * 1000;
  while (clock_mono_us() < deadline) {
    if (pred(f, arg)) return 1;
    usleep((useconds_t)step_us);
  }
  return 0;
}

/* ---- Client side ---- */

typedef struct cli {
  int fd;
  size_t len;
  char buf[256 * 1024];
} cli_t;

/* Connect to 127.0.0.1:port (rcvbuf: SO_RCVBUF first, 0 for the default); NULL if refused. */
static inline cli_t *cli_connect(int port, int rcvbuf) {
  cli_t *c = calloc(1, sizeof *c);
  c->fd = socket(AF_INET, SOCK_STREAM, 0);
  if (rcvbuf) setsockopt(c->fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
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

static inline cli_t *cli_open(int port) { return cli_connect(port, 0); }

static inline void cli_close(cli_t *c) {
  if (!c) return;
  close(c->fd);
  free(c);
}

/* Close with RST instead of FIN. */
static inline void cli_reset(cli_t *c) {
  struct linger lg = {1, 0};
  setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
  cli_close(c);
}

static inline void cli_send_n(cli_t *c, const char *s, size_t n) {
  while (n) {
    ssize_t w = send(c->fd, s, n, MSG_NOSIGNAL);
    if (w <= 0) return;
    s += w;
    n -= (size_t)w;
  }
}

static inline void cli_send(cli_t *c, const char *s) { cli_send_n(c, s, strlen(s)); }

/* Read more bytes within the deadline: >0 got bytes, 0 EOF or reset, -1 timeout or error. */
static inline int cli_fill(cli_t *c, int64_t deadline) {
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

/* Drop the first n buffered bytes. */
static inline void cli_take(cli_t *c, size_t n) {
  memmove(c->buf, c->buf + n, c->len - n);
  c->len -= n;
}

/* Read a response head (through the blank line) into head, NUL-terminated, and take it
 * from the buffer. Returns the status, or -1 on EOF/timeout or a head that does not fit. */
static inline int cli_head(cli_t *c, char *head, size_t headlen, int64_t deadline) {
  char *end;
  while (!(end = memmem(c->buf, c->len, "\r\n\r\n", 4)))
    if (cli_fill(c, deadline) <= 0) return -1;
  size_t n = (size_t)(end - c->buf) + 4;
  if (n >= headlen) return -1;
  memcpy(head, c->buf, n);
  head[n] = 0;
  cli_take(c, n);
  int status = -1;
  return sscanf(head, "HTTP/1.1 %d ", &status) == 1 ? status : -1;
}

/* Read until the buffer holds want (NUL-terminated compare) or WAIT_MS pass. */
static inline int cli_wait_for(cli_t *c, const char *want) {
  int64_t deadline = clock_mono_us() + WAIT_MS * 1000;
  size_t n = strlen(want);
  while (!memmem(c->buf, c->len, want, n))
    if (cli_fill(c, deadline) <= 0) return 0;
  return 1;
}

/* 1 if the server closes the connection within ms (EOF or reset) with no extra bytes. */
static inline int cli_closed(cli_t *c, int ms) {
  int64_t deadline = clock_mono_us() + (int64_t)ms * 1000;
  size_t before = c->len;
  for (;;) {
    int rc = cli_fill(c, deadline);
    if (rc == 0) return c->len == before;
    if (rc < 0) return 0;
  }
}

/* 1 if the server closes within ms (EOF or reset); what still arrives before is dropped. */
static inline int cli_closed_after_rest(cli_t *c, int ms) {
  int64_t deadline = clock_mono_us() + (int64_t)ms * 1000;
  for (;;) {
    int rc = cli_fill(c, deadline);
    if (rc == 0) return 1;
    if (rc < 0) return 0;
    c->len = 0;
  }
}

/* 1 if nothing at all arrives within ms (connection still open, silent). */
static inline int cli_quiet(cli_t *c, int ms) {
  struct pollfd p = {c->fd, POLLIN, 0};
  return poll(&p, 1, ms) == 0;
}

static inline int has(const char *hay, const char *needle) { return strstr(hay, needle) != NULL; }

#endif
