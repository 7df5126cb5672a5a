/* fuzz_http: the input is what one client sends to the HTTP server.
 *
 * One server (small limits, so 413/431 are reachable) listens on 127.0.0.1 for the whole
 * run. Each input opens a real TCP connection, sends the bytes in up to three chunks cut
 * at input-derived positions (so callbacks see data split across reads), half-closes, and
 * drives the loop while reading whatever comes back until the server has closed the
 * connection — so every connection is freed within its input and LeakSanitizer sees a
 * leak as one. The handler reads every request accessor, echoes the body and a request
 * header back as a response header (response-splitting check), and answers requests for
 * paths containing "async" from a timer instead of synchronously. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include "http.h"

static uv_loop_t loop;
static http_server_t *srv;
static int port;
static uv_timer_t later;
static http_req_t *held;

static void answer(http_req_t *r) {
  size_t len;
  char *body = http_req_body(r, &len);
  if (body[len] != '\0') abort(); /* promised NUL terminator */
  const char *echo = http_req_header(r, "x-echo");
  const char *query = http_req_query(r);
  http_header_t h[] = {{"X-Echo", echo ? echo : "-"},
                       {"X-Path", http_req_path(r)},
                       {"X-Method", http_req_method(r)},
                       {"X-Peer", http_req_peer(r)}};
  if (http_req_start_us(r) <= 0) abort();
  http_req_set_route(r, "fuzz");
  if (strstr(query, "err"))
    http_respond_error(r, 422, "fuzz", query, h, sizeof h / sizeof h[0]);
  else
    http_respond(r, 200, h, sizeof h / sizeof h[0], body, len, strstr(query, "close") != NULL);
}

static void on_later(uv_timer_t *t) {
  http_req_t *r = held;
  held = NULL;
  if (r) answer(r);
}

static void handler(http_req_t *r, void *ud) {
  (void)ud;
  if (strstr(http_req_path(r), "async") && !held) {
    held = r;
    uv_timer_start(&later, on_later, 0, 0);
    return;
  }
  answer(r);
}

static void observer(void *ud, const char *route, int status, uint64_t latency_us) {
  (void)ud;
  (void)latency_us;
  if (!route || status < 100 || status > 599) abort();
}

static void setup(void) {
  uv_loop_init(&loop);
  uv_timer_init(&loop, &later);
  http_limits_t lim = {.max_header_bytes = 1024, .max_body_bytes = 1024};
  srv = http_server_new(&loop, &lim, handler, NULL);
  if (!srv || http_server_listen(srv, "127.0.0.1", 0) < 0) abort();
  http_server_set_observer(srv, observer, NULL);
  port = http_server_port(srv);
}

/* One step: wait (briefly) for the client socket or the loop, read and drop what the
 * server sent, run due loop work. Returns 0 once the client saw EOF or a reset. */
static int step(int fd, int timeout_ms) {
  int t = uv_backend_timeout(&loop);
  if (t < 0 || t > timeout_ms) t = timeout_ms;
  struct pollfd p[2] = {{fd, POLLIN, 0}, {uv_backend_fd(&loop), POLLIN, 0}};
  poll(p, 2, t);
  int open = 1;
  char sink[65536];
  for (;;) {
    ssize_t n = recv(fd, sink, sizeof sink, 0);
    if (n > 0) continue;
    if (n == 0 || (errno != EAGAIN && errno != EINTR)) open = 0;
    break;
  }
  uv_run(&loop, UV_RUN_NOWAIT);
  return open;
}

/* A client socket connected to the server. Running out of local ports or descriptors is
 * the machine's state, not the server's (other programs' connections in TIME_WAIT can
 * take every ephemeral port for a while): retried for up to ten seconds. Any other
 * failure, such as a refused connection (the server stopped listening), ends the run. */
static int connect_server(void) {
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  int e = 0;
  for (int tries = 0; tries < 1000; tries++) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0) return fd;
    e = errno;
    if (fd >= 0) close(fd);
    if (e != EADDRNOTAVAIL && e != EMFILE && e != ENFILE && e != ENOBUFS && e != EAGAIN)
      break;
    uv_run(&loop, UV_RUN_NOWAIT);
    poll(NULL, 0, 10);
  }
  fprintf(stderr, "fuzz_http: cannot connect to the server: %s\n", strerror(e));
  abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (!srv) setup();
  int fd = connect_server();
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);

  uint32_t h = 2166136261u; /* FNV-1a: cut points that follow the input */
  for (size_t i = 0; i < size; i++) h = (h ^ data[i]) * 16777619u;
  size_t cut1 = size ? h % (size + 1) : 0;
  size_t cut2 = cut1 + (size - cut1 ? (h >> 16) % (size - cut1 + 1) : 0);
  size_t cuts[3] = {cut1, cut2, size};
  size_t at = 0;
  int open = 1;
  for (int k = 0; k < 3 && open; k++) {
    while (at < cuts[k] && open) {
      ssize_t n = send(fd, data + at, cuts[k] - at, MSG_NOSIGNAL);
      if (n > 0) at += (size_t)n;
      else if (n < 0 && errno != EAGAIN && errno != EINTR) open = 0; /* server closed */
      else open = step(fd, 10);
    }
    for (int i = 0; i < 2 && open; i++) open = step(fd, 0); /* let the server read it */
  }
  shutdown(fd, SHUT_WR);
  while (open) open = step(fd, 100);
  while (http_server_connections(srv) > 0 || held) step(fd, 100);
  struct linger lg = {1, 0}; /* no TIME_WAIT: a long run would run out of ports */
  setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
  close(fd);
  return 0;
}
