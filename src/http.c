/* http: the HTTP/1.1 server adapter (see http.h) — libuv streams in, http-parser in the
 * middle, requests out to the collector's handler.
 *
 * How a connection moves (conn_t.state):
 *
 *   IDLE --first byte--> HEAD --headers--> BODY --complete--> READY --dispatch--> HANDLER
 *     ^                                                                              |
 *     +------------------ http_respond, keep-alive -------------------------------+
 *   HANDLER --http_stream_start--> STREAM --http_stream_end/drain--> LINGER
 *   any state --error/timeout/Connection: close--> LINGER --EOF/timer--> CLOSED
 *
 * - Parser callbacks only record; they never call the handler. on_message_complete pauses
 *   the parser, http_parser_execute returns, and conn_pump dispatches. A handler that
 *   answers synchronously is thus never inside the parser, and conn_pump's loop (not
 *   recursion) walks through pipelined requests, however many arrived in one read.
 * - Reads land in one server-wide 64 KiB buffer: libuv calls alloc_cb and read_cb back to
 *   back for one stream, and every callback copies what it keeps (URL and headers into
 *   req.head, body into req.body). Only bytes left unparsed when a request completes
 *   (pipelining) are copied into the connection's own `pending` buffer. All buffers are
 *   kept across requests, so a steady keep-alive connection does not allocate.
 * - Reading does not stop while the handler holds a request: toggling it costs two
 *   epoll_ctl calls per request, which dominated the per-request CPU. Bytes that arrive
 *   meanwhile are appended to `pending` unparsed (the parser stays paused, so the next
 *   request's timers start only when it is parsed, after the answer). Only when more than
 *   PENDING_MAX bytes wait does reading stop, until the pump has parsed them down again;
 *   the kernel's socket buffer and TCP flow control hold the rest. A FIN that arrives
 *   meanwhile (a client that half-closes after sending) is remembered in `eof`: what was
 *   received is still answered, then the connection closes.
 * - A stream (http_stream_start) is a response without Content-Length whose body ends
 *   with the connection. Its head goes out like any response, then the per-request
 *   buffers are released: an idle stream owns no allocation beyond its conn_t. It keeps
 *   reading (into the shared buffer, discarded) only to notice the client leaving.
 * - Time limits (header, body, idle, linger) are one deadline per connection and a timer
 *   that is only moved when the deadline comes earlier than it would fire: when it fires
 *   early it sees the later deadline and re-arms. A steady keep-alive connection thus
 *   re-arms about once per header timeout instead of starting and stopping its timer
 *   four times per request (each a remove and insert in libuv's timer heap).
 * - Writes try uv_try_write first; only a remainder the kernel did not take is copied into
 *   a heap write request for uv_write.
 * - After a final error (or Connection: close) the connection shuts down its write side
 *   and discards input until EOF or LINGER_MS ("lingering close"), so the client gets the
 *   response instead of a reset caused by unread bytes.
 * - Lifetime: a connection is freed once both of its handles are closed and no request is
 *   with the handler; a request the handler still holds keeps its connection's memory
 *   (marked gone) until http_respond. The server struct is freed once it is freeing and
 *   its last handle and connection are gone (refs), so http_server_free never leaves a
 *   close callback pointing at freed memory. */
#include "http.h"

#include <errno.h>
#include <http_parser.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "util/buf.h"
#include "util/clock.h"
#include "util/mem.h"

#define READ_BUF_SIZE (64 * 1024)
#define LISTEN_BACKLOG 511
#define LINGER_MS 2000
/* More header lines than this is 431 too: it bounds the duplicate-joining pass. */
#define MAX_HEADERS 128
/* Buffers that grew past this for one big request are released when it is done. */
#define KEEP_BUF_BYTES (64 * 1024)
/* Read-ahead while the handler holds a request: beyond this many unparsed bytes reading
 * stops until they are parsed. It only bounds memory (at most this plus one read, 128 KiB
 * per connection); it is no protocol limit, since a bigger request is parsed as it is
 * read once reading resumes. Browsers and beacons rarely pipeline, so it is seldom hit. */
#define PENDING_MAX (64 * 1024)
/* Default bound of a stream's user-space write queue (http_stream_set_max_queue). */
#define STREAM_MAX_QUEUE (256 * 1024)

enum conn_state {
  ST_IDLE, ST_HEAD, ST_BODY, ST_READY, ST_HANDLER, ST_STREAM, ST_LINGER, ST_CLOSED
};
enum head_part { HP_URL, HP_FIELD, HP_VALUE, HP_DONE };

typedef struct hdr_span {
  size_t name_off, name_len;
  size_t val_off, val_len; /* val_off == SIZE_MAX: no value seen */
  int dead;                /* joined into an earlier header of the same name */
} hdr_span_t;

typedef struct conn conn_t;

struct http_stream {
  conn_t *conn;
  void (*on_close)(void *ud); /* run once from the connection's close callback */
  void *on_close_ud;
  size_t max_queue;
};

struct http_req {
  conn_t *conn;
  buf_t head;          /* url \0 name \0 value \0 ... [joined values \0] path \0 query \0 */
  size_t url_len;
  size_t head_bytes;   /* URL + header names and values, against max_header_bytes */
  enum head_part part;
  hdr_span_t *hdrs;
  size_t nhdrs, hdr_cap;
  size_t path_off, query_off;
  buf_t body;
  const char *route;
  void *data;
  int64_t start_us;
  int keep_alive;
  int is_head;
  int gone;            /* connection closed while the handler held the request */
};

struct conn {
  uv_tcp_t tcp;
  uv_timer_t timer;
  uv_shutdown_t shutdown;
  http_server_t *srv;
  conn_t *prev, *next;
  http_parser parser;
  http_req_t req;
  buf_t pending;       /* read but not yet parsed (pipelined requests) */
  size_t pending_off;
  buf_t out;           /* response head being written */
  buf_t scratch;       /* JSON error bodies */
  enum conn_state state;
  int open_handles;    /* tcp + timer until their close callbacks ran */
  uint64_t deadline;   /* loop time (ms) at which the state's time limit ends; 0: none */
  uint64_t armed;      /* loop time the timer fires at; 0: not armed */
  int req_pending;     /* the handler holds req */
  int reading;
  int pumping;
  int eof;             /* the client half-closed while a request was in flight */
  int err_status;      /* set by a parser callback: 413/431, or -1 to close silently */
  const char *err_code, *err_msg;
  http_stream_t stream; /* used once the state is ST_STREAM */
  char peer[64];
};

typedef struct write_req {
  uv_write_t w;
  conn_t *conn;
  char data[];
} write_req_t;

struct http_server {
  uv_loop_t *loop;
  uv_tcp_t listener;
  int listener_open;   /* until its close callback */
  int listening;
  int port;
  http_limits_t lim;
  http_handler_fn handler;
  void *ud;
  http_observer_fn observer;
  void *observer_ud;
  conn_t *conns;
  size_t nconns;
  size_t nheld;        /* connections in ST_HANDLER: their request waits for an answer */
  size_t refs;         /* listener + conn structs + rejected handles still allocated */
  int draining, drain_done, freeing;
  void (*drained)(void *ud);
  void *drained_ud;
  char *rbuf;          /* shared read buffer, READ_BUF_SIZE */
  uint64_t date_until; /* uv_now (ms) from which date may be a second behind */
  char date[40];
  size_t date_len;
};

static const http_limits_t default_limits = {
    .max_header_bytes = 16 * 1024,
    .max_body_bytes = 512000,
    .header_timeout_ms = 10000,
    .body_timeout_ms = 30000,
    .idle_timeout_ms = 60000,
    .max_connections = 10000,
};

static void conn_pump(conn_t *c);
static void conn_abort(conn_t *c);
static void on_timer(uv_timer_t *t);
static void deadline_set(conn_t *c, uint64_t ms);

/* ---- Server lifetime ---- */

static void server_unref(http_server_t *s) {
  if (--s->refs == 0 && s->freeing) {
    free(s->rbuf);
    free(s);
  }
}

/* Move c to state st, counting the connections whose request the handler holds. */
static void conn_set_state(conn_t *c, enum conn_state st) {
  c->srv->nheld += (size_t)(st == ST_HANDLER) - (size_t)(c->state == ST_HANDLER);
  c->state = st;
}

static void maybe_drained(http_server_t *s) {
  if (!s->draining || s->drain_done || s->listener_open || s->nconns) return;
  s->drain_done = 1;
  if (s->drained) s->drained(s->drained_ud);
}

static void on_listener_close(uv_handle_t *h) {
  http_server_t *s = h->data;
  s->listener_open = 0;
  maybe_drained(s);
  server_unref(s);
}

static void close_listener(http_server_t *s) {
  if (s->listener_open && !uv_is_closing((uv_handle_t *)&s->listener))
    uv_close((uv_handle_t *)&s->listener, on_listener_close);
}

/* ---- Connection lifetime ---- */

static void req_free_bufs(http_req_t *r) {
  buf_free(&r->head);
  buf_free(&r->body);
  free(r->hdrs);
}

static void conn_free(conn_t *c) {
  req_free_bufs(&c->req);
  buf_free(&c->pending);
  buf_free(&c->out);
  buf_free(&c->scratch);
  free(c);
}

static void on_conn_close(uv_handle_t *h) {
  conn_t *c = h->data;
  if (--c->open_handles > 0) return;
  http_server_t *s = c->srv;
  if (c->stream.on_close) { /* before anything is freed: the owner may still look */
    void (*fn)(void *) = c->stream.on_close;
    c->stream.on_close = NULL;
    fn(c->stream.on_close_ud);
  }
  if (c->prev) c->prev->next = c->next;
  else s->conns = c->next;
  if (c->next) c->next->prev = c->prev;
  s->nconns--;
  int held = c->req_pending;
  if (!held) conn_free(c);
  maybe_drained(s);
  if (!held) server_unref(s);
}

/* Close now, whatever is in flight (pending writes are cancelled). Safe to call from any
 * callback: memory goes away only in the close callbacks. */
static void conn_abort(conn_t *c) {
  if (c->state == ST_CLOSED) return;
  if (c->req_pending) c->req.gone = 1;
  conn_set_state(c, ST_CLOSED);
  c->reading = 0;
  uv_close((uv_handle_t *)&c->tcp, on_conn_close);
  uv_close((uv_handle_t *)&c->timer, on_conn_close);
}

static void on_shutdown(uv_shutdown_t *req, int status) {
  conn_t *c = req->handle->data;
  if (status < 0) conn_abort(c);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b);
static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *b);

static int conn_read_start(conn_t *c) {
  if (c->reading) return 0;
  int rc = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
  if (rc == 0) c->reading = 1;
  return rc;
}

static void conn_read_stop(conn_t *c) {
  if (!c->reading) return;
  uv_read_stop((uv_stream_t *)&c->tcp);
  c->reading = 0;
}

/* Lingering close: FIN after the queued response, then discard input until EOF. */
static void conn_linger(conn_t *c) {
  if (c->state >= ST_LINGER) return;
  conn_set_state(c, ST_LINGER);
  buf_free(&c->pending);
  c->pending_off = 0;
  deadline_set(c, LINGER_MS);
  if (uv_shutdown(&c->shutdown, (uv_stream_t *)&c->tcp, on_shutdown) < 0 ||
      conn_read_start(c) < 0)
    conn_abort(c);
}

/* ---- Writing ---- */

static void on_write(uv_write_t *w, int status) {
  write_req_t *wr = (write_req_t *)w;
  conn_t *c = wr->conn;
  free(wr);
  if (status < 0) conn_abort(c);
}

/* Write bufs in order: what the kernel takes now, the rest queued (copied). */
static int conn_write(conn_t *c, uv_buf_t *bufs, unsigned n) {
  size_t total = 0;
  for (unsigned i = 0; i < n; i++) total += bufs[i].len;
  int rc = uv_try_write((uv_stream_t *)&c->tcp, bufs, n);
  size_t done;
  if (rc >= 0) done = (size_t)rc;
  else if (rc == UV_EAGAIN) done = 0;
  else return rc;
  if (done == total) return 0;
  write_req_t *wr = xmalloc(sizeof *wr + (total - done));
  wr->conn = c;
  size_t at = 0, skip = done;
  for (unsigned i = 0; i < n; i++) {
    size_t len = bufs[i].len;
    if (skip >= len) {
      skip -= len;
      continue;
    }
    memcpy(wr->data + at, bufs[i].base + skip, len - skip);
    at += len - skip;
    skip = 0;
  }
  uv_buf_t rest = uv_buf_init(wr->data, (unsigned)at);
  rc = uv_write(&wr->w, (uv_stream_t *)&c->tcp, &rest, 1, on_write);
  if (rc < 0) free(wr);
  return rc;
}

/* The Date header's text, read from the clock at most once a second: until the loop's
 * time (taken once per turn, as nginx caches its time) reaches the end of the second
 * it shows. A turn is at most milliseconds long, so a response may show the second
 * before for that long. */
static void update_date(http_server_t *s) {
  if (uv_now(s->loop) < s->date_until) return;
  int64_t now = clock_wall_us(), sec = now / 1000000;
  s->date_until = uv_now(s->loop) + (uint64_t)(1000000 - now % 1000000) / 1000;
  time_t t = (time_t)sec;
  struct tm tm;
  gmtime_r(&t, &tm);
  s->date_len = strftime(s->date, sizeof s->date, "%a, %d %b %Y %H:%M:%S GMT", &tm);
}

static void put_uint(buf_t *b, uint64_t v) {
  char tmp[24];
  size_t i = sizeof tmp;
  do {
    tmp[--i] = (char)('0' + v % 10);
    v /= 10;
  } while (v);
  buf_append(b, tmp + i, sizeof tmp - i);
}

/* Bit c: byte c is a token character (RFC 9110: letters, digits, !#$%&'*+-.^_`|~). One
 * test a byte where ranges and a strchr took a dozen instructions (with value_ok: 1,503
 * -> 1,363 instructions per response). */
static const uint64_t tchar_bits[4] = {0x03ff6cfa00000000ull, 0x57ffffffc7fffffeull, 0, 0};

static int is_tchar(unsigned char ch) { return (int)(tchar_bits[ch >> 6] >> (ch & 63) & 1); }

/* Has the NUL-terminated v no control byte but tab (so no CR or LF) and no DEL? Eight
 * bytes a step: a word with a byte below 0x20 or equal to 0x7f (the usual borrow tests,
 * which never fire for bytes >= 0x80) is looked at byte by byte. */
static int value_ok(const char *v) {
  const uint64_t ones = 0x0101010101010101ull, high = 0x8080808080808080ull;
  size_t n = strlen(v), i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t w, del;
    memcpy(&w, v + i, 8);
    del = w ^ (ones * 0x7f);
    if ((((w - ones * 0x20) & ~w) | ((del - ones) & ~del)) & high) break;
  }
  for (; i < n; i++) {
    unsigned char c = (unsigned char)v[i];
    if ((c < 0x20 && c != '\t') || c == 0x7f) return 0;
  }
  return 1;
}

/* A caller header goes out only if it cannot break the framing: a token name, a value
 * without CR, LF or other controls (no response splitting), and not one of the headers
 * the server writes itself. */
static int header_ok(const http_header_t *h) {
  if (!h->name || !h->value || !h->name[0]) return 0;
  size_t nl = 0;
  for (const unsigned char *p = (const unsigned char *)h->name; *p; p++, nl++)
    if (!is_tchar(*p)) return 0;
  if (!value_ok(h->value)) return 0;
  static const struct {
    const char *name;
    size_t len;
  } reserved[] = {{"content-length", 14}, {"connection", 10}, {"date", 4}, {"transfer-encoding", 17}};
  for (size_t i = 0; i < sizeof reserved / sizeof reserved[0]; i++)
    if (nl == reserved[i].len && strcasecmp(h->name, reserved[i].name) == 0) return 0;
  return 1;
}

/* stream: the head of a stream (no Content-Length, Connection: close, no body). */
static int write_response(conn_t *c, int status, const http_header_t *headers,
                          size_t nheaders, const void *body, size_t len, int close,
                          const char *content_type, int stream) {
  http_server_t *s = c->srv;
  buf_t *o = &c->out;
  buf_reset(o);
  buf_reserve(o, 160);
  update_date(s);
  buf_append(o, "HTTP/1.1 ", 9);
  put_uint(o, (uint64_t)(status > 0 ? status : 500));
  buf_putc(o, ' ');
  buf_puts(o, http_status_text(status));
  buf_append(o, "\r\nDate: ", 8);
  buf_append(o, s->date, s->date_len);
  int bodiless = status < 200 || status == 204 || status == 304;
  if (!bodiless && !stream) {
    buf_append(o, "\r\nContent-Length: ", 18);
    put_uint(o, len);
  }
  if (close) buf_append(o, "\r\nConnection: close\r\n", 21);
  else buf_append(o, "\r\nConnection: keep-alive\r\n", 26);
  for (size_t i = 0; i < nheaders; i++) {
    const http_header_t *h = &headers[i];
    if (!header_ok(h)) continue;
    if (content_type && strcasecmp(h->name, "content-type") == 0) content_type = NULL;
    buf_puts(o, h->name);
    buf_append(o, ": ", 2);
    buf_puts(o, h->value);
    buf_append(o, "\r\n", 2);
  }
  if (content_type) {
    buf_append(o, "Content-Type: ", 14);
    buf_puts(o, content_type);
    buf_append(o, "\r\n", 2);
  }
  buf_append(o, "\r\n", 2);
  uv_buf_t bufs[2] = {uv_buf_init(o->data, (unsigned)o->len),
                      uv_buf_init((char *)(body ? body : ""), (unsigned)len)};
  int send_body = !bodiless && !stream && !c->req.is_head && len > 0;
  return conn_write(c, bufs, send_body ? 2 : 1);
}

/* ---- Requests ---- */

static void req_reset(http_req_t *r) {
  if (r->head.cap > KEEP_BUF_BYTES) buf_free(&r->head);
  if (r->body.cap > KEEP_BUF_BYTES) buf_free(&r->body);
  buf_reset(&r->head);
  buf_reset(&r->body);
  r->url_len = r->head_bytes = 0;
  r->part = HP_URL;
  r->nhdrs = 0;
  r->path_off = r->query_off = 0;
  r->route = NULL;
  r->data = NULL;
  r->start_us = 0;
  r->keep_alive = r->is_head = 0;
}

static void observe(conn_t *c, int status) {
  http_server_t *s = c->srv;
  if (s->observer)
    s->observer(s->observer_ud, c->req.route ? c->req.route : "other", status,
                (uint64_t)(clock_mono_us() - c->req.start_us));
}

/* Send a response for c->req (handler's or the server's own), then either close or go
 * back to parsing. */
static void finish_response(conn_t *c, int status, const http_header_t *headers,
                            size_t nheaders, const void *body, size_t len, int close_after,
                            const char *content_type) {
  http_server_t *s = c->srv;
  int close = close_after || !c->req.keep_alive || s->draining || c->parser.upgrade;
  int rc = write_response(c, status, headers, nheaders, body, len, close, content_type, 0);
  observe(c, status);
  if (rc < 0) {
    conn_abort(c);
    return;
  }
  if (close) {
    conn_linger(c);
    return;
  }
  req_reset(&c->req);
  conn_set_state(c, ST_IDLE);
  http_parser_init(&c->parser, HTTP_REQUEST);
  c->parser.data = c;
  conn_pump(c);
}

static void error_body(buf_t *b, const char *code, const char *message) {
  buf_reset(b);
  buf_puts(b, "{\"success\":false,\"error\":\"");
  if (code) buf_json_escape(b, code, strlen(code));
  buf_puts(b, "\",\"message\":\"");
  if (message) buf_json_escape(b, message, strlen(message));
  buf_puts(b, "\"}");
}

/* The server's own final answer (400/408/413/431): respond and close. */
static void conn_fail(conn_t *c, int status, const char *code, const char *message) {
  if (c->state >= ST_LINGER) return;
  if (!c->req.start_us) c->req.start_us = clock_mono_us();
  deadline_set(c, 0);
  error_body(&c->scratch, code, message);
  finish_response(c, status, NULL, 0, c->scratch.data, c->scratch.len, 1,
                  "application/json");
}

static void set_err(conn_t *c, int status, const char *code, const char *msg) {
  if (c->err_status) return;
  c->err_status = status;
  c->err_code = code;
  c->err_msg = msg;
}

/* ---- Parser callbacks: record only ---- */

static int count_head(conn_t *c, size_t n) {
  http_req_t *r = &c->req;
  r->head_bytes += n;
  if (r->head_bytes > c->srv->lim.max_header_bytes) {
    set_err(c, 431, "header_too_large", "request line and headers are too large");
    return -1;
  }
  return 0;
}

static int on_message_begin(http_parser *p) {
  conn_t *c = p->data;
  conn_set_state(c, ST_HEAD);
  c->req.start_us = clock_mono_us();
  deadline_set(c, c->srv->lim.header_timeout_ms);
  return 0;
}

static int on_url(http_parser *p, const char *at, size_t n) {
  conn_t *c = p->data;
  if (count_head(c, n)) return -1;
  buf_append(&c->req.head, at, n);
  c->req.url_len += n;
  return 0;
}

static int on_header_field(http_parser *p, const char *at, size_t n) {
  conn_t *c = p->data;
  http_req_t *r = &c->req;
  if (count_head(c, n)) return -1;
  if (r->part == HP_DONE) return 0; /* chunked trailers: counted, not kept */
  if (r->part != HP_FIELD) {
    if (r->nhdrs == MAX_HEADERS) {
      set_err(c, 431, "header_too_large", "too many header fields");
      return -1;
    }
    if (r->nhdrs == r->hdr_cap) {
      r->hdr_cap = r->hdr_cap ? r->hdr_cap * 2 : 16;
      r->hdrs = xrealloc(r->hdrs, r->hdr_cap * sizeof *r->hdrs);
    }
    buf_putc(&r->head, '\0'); /* ends the URL or the previous value */
    r->hdrs[r->nhdrs++] = (hdr_span_t){r->head.len, 0, SIZE_MAX, 0, 0};
    r->part = HP_FIELD;
  }
  buf_append(&r->head, at, n);
  r->hdrs[r->nhdrs - 1].name_len += n;
  return 0;
}

static int on_header_value(http_parser *p, const char *at, size_t n) {
  conn_t *c = p->data;
  http_req_t *r = &c->req;
  if (count_head(c, n)) return -1;
  if (r->part == HP_DONE) return 0;
  if (r->part != HP_VALUE) {
    if (r->part != HP_FIELD) return -1; /* the parser never does this */
    buf_putc(&r->head, '\0'); /* ends the name */
    r->hdrs[r->nhdrs - 1].val_off = r->head.len;
    r->part = HP_VALUE;
  }
  buf_append(&r->head, at, n);
  r->hdrs[r->nhdrs - 1].val_len += n;
  return 0;
}

/* Append n bytes that are already in b at off (b may move while growing). */
static void append_self(buf_t *b, size_t off, size_t n) {
  buf_reserve(b, n);
  buf_append(b, b->data + off, n);
}

/* RFC 9110: repeated fields may be joined with ", " in order. */
static void join_duplicates(http_req_t *r) {
  /* Headers of one name have one length: those whose length (mod 64) no other header
   * has cannot repeat, and are not compared at all (all of most requests' headers: the
   * pairs cost 200 instructions a request). */
  uint64_t seen = 0, twice = 0;
  for (size_t i = 0; i < r->nhdrs; i++) {
    uint64_t bit = 1ull << (r->hdrs[i].name_len & 63);
    twice |= seen & bit;
    seen |= bit;
  }
  for (size_t i = 0; twice && i < r->nhdrs; i++) {
    hdr_span_t *a = &r->hdrs[i];
    if (a->dead || !(twice >> (a->name_len & 63) & 1)) continue;
    size_t joined = SIZE_MAX;
    for (size_t j = i + 1; j < r->nhdrs; j++) {
      hdr_span_t *b = &r->hdrs[j];
      if (b->dead || b->name_len != a->name_len ||
          strncasecmp(r->head.data + a->name_off, r->head.data + b->name_off, a->name_len))
        continue;
      if (joined == SIZE_MAX) {
        joined = r->head.len;
        if (a->val_off != SIZE_MAX) append_self(&r->head, a->val_off, a->val_len);
      }
      buf_append(&r->head, ", ", 2);
      if (b->val_off != SIZE_MAX) append_self(&r->head, b->val_off, b->val_len);
      b->dead = 1;
    }
    if (joined != SIZE_MAX) {
      a->val_off = joined;
      a->val_len = r->head.len - joined;
      buf_putc(&r->head, '\0');
    }
  }
}

/* Split the request target into path and query, copied NUL-terminated after the headers.
 * Absolute-form (http://host/p?q) yields its path; an empty path is "/". */
static void split_target(http_req_t *r) {
  size_t n = r->url_len, i = 0;
  const char *u = r->head.data;
  if (n && u[0] != '/' && u[0] != '*') {
    const char *sep = memmem(u, n, "://", 3);
    if (sep) {
      i = (size_t)(sep - u) + 3;
      while (i < n && u[i] != '/' && u[i] != '?' && u[i] != '#') i++;
      if (i == n || u[i] != '/') {
        /* no path: "/" then the query if any */
        r->path_off = r->head.len;
        buf_append(&r->head, "/", 2);
        goto query;
      }
    }
  }
  {
    size_t end = i;
    while (end < n && u[end] != '?' && u[end] != '#') end++;
    r->path_off = r->head.len;
    append_self(&r->head, i, end - i);
    buf_putc(&r->head, '\0');
    i = end;
  }
query:
  u = r->head.data;
  r->query_off = r->head.len;
  if (i < n && u[i] == '?') {
    size_t end = ++i;
    while (end < n && u[end] != '#') end++;
    append_self(&r->head, i, end - i);
  }
  buf_putc(&r->head, '\0');
}

/* a[0..n) and b[0..n) are the same header name but for case. Names are tokens (the
 * parser refuses other bytes), where setting bit 0x20 folds the letters' two cases and
 * one more pair, '^' and '~': b, the name looked up, must hold neither (the names the
 * server looks up are letters, digits and '-'). Eight bytes a step: the collector looks
 * up seven headers per request. */
static int same_name_ci(const char *a, const char *b, size_t n) {
  const uint64_t fold = 0x2020202020202020ull;
  uint64_t x, y;
  if (n < 8) {
    for (; n; n--, a++, b++)
      if ((*a | 0x20) != (*b | 0x20)) return 0;
    return 1;
  }
  /* Whole words, then the last eight bytes (overlapping the words before). */
  for (size_t i = 0; i + 8 < n; i += 8) {
    memcpy(&x, a + i, 8);
    memcpy(&y, b + i, 8);
    if ((x | fold) != (y | fold)) return 0;
  }
  memcpy(&x, a + n - 8, 8);
  memcpy(&y, b + n - 8, 8);
  return (x | fold) == (y | fold);
}

static const hdr_span_t *find_header(const http_req_t *r, const char *name) {
  size_t len = strlen(name);
  for (size_t i = 0; i < r->nhdrs; i++) {
    const hdr_span_t *h = &r->hdrs[i];
    if (h->name_len == len && !h->dead && same_name_ci(r->head.data + h->name_off, name, len))
      return h;
  }
  return NULL;
}

static int on_headers_complete(http_parser *p) {
  conn_t *c = p->data;
  http_req_t *r = &c->req;
  const http_limits_t *lim = &c->srv->lim;
  buf_putc(&r->head, '\0'); /* ends the URL or the last value */
  r->part = HP_DONE;
  join_duplicates(r);
  split_target(r);
  r->is_head = p->method == HTTP_HEAD;
  int chunked = (p->flags & F_CHUNKED) != 0;
  int has_length = !chunked && p->content_length != ULLONG_MAX && p->content_length > 0;
  if (has_length && p->content_length > lim->max_body_bytes) {
    set_err(c, 413, "body_too_large", "request body is too large");
    return -1;
  }
  if (!chunked && !has_length) return 0; /* no body: message_complete follows */
  const hdr_span_t *ex = find_header(r, "expect");
  if (ex && ex->val_off != SIZE_MAX && p->http_major == 1 && p->http_minor >= 1 &&
      ex->val_len == 12 && strncasecmp(r->head.data + ex->val_off, "100-continue", 12) == 0) {
    static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
    uv_buf_t b = uv_buf_init((char *)cont, sizeof cont - 1);
    if (conn_write(c, &b, 1) < 0) {
      set_err(c, -1, NULL, NULL);
      return -1;
    }
  }
  if (has_length)
    buf_reserve(&r->body, p->content_length < KEEP_BUF_BYTES ? p->content_length
                                                             : KEEP_BUF_BYTES);
  conn_set_state(c, ST_BODY);
  deadline_set(c, lim->body_timeout_ms);
  return 0;
}

static int on_body(http_parser *p, const char *at, size_t n) {
  conn_t *c = p->data;
  http_req_t *r = &c->req;
  if (r->body.len + n > c->srv->lim.max_body_bytes) {
    set_err(c, 413, "body_too_large", "request body is too large");
    return -1;
  }
  buf_append(&r->body, at, n);
  return 0;
}

static int on_message_complete(http_parser *p) {
  conn_t *c = p->data;
  conn_set_state(c, ST_READY);
  c->req.keep_alive = http_should_keep_alive(p);
  deadline_set(c, 0);
  http_parser_pause(p, 1);
  return 0;
}

static const http_parser_settings parser_settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

/* Feed bytes to the parser. Returns how many were consumed: all of them, or fewer when a
 * request completed (state READY). A malformed request is answered and closed here. */
static size_t conn_parse(conn_t *c, const char *data, size_t len) {
  size_t used = http_parser_execute(&c->parser, &parser_settings, data, len);
  enum http_errno e = HTTP_PARSER_ERRNO(&c->parser);
  if (e == HPE_OK || e == HPE_PAUSED) return used;
  if (c->err_status > 0) conn_fail(c, c->err_status, c->err_code, c->err_msg);
  else if (c->err_status < 0) conn_abort(c);
  else if (e == HPE_HEADER_OVERFLOW)
    conn_fail(c, 431, "header_too_large", "request line and headers are too large");
  else conn_fail(c, 400, "bad_request", http_errno_description(e));
  return len;
}

/* Drive the connection as far as it can go without new input: dispatch a completed
 * request, parse pipelined bytes after an answer, or go back to reading. Runs as a loop
 * guarded against re-entry, so a handler answering synchronously just returns here. */
static void conn_pump(conn_t *c) {
  if (c->pumping) return;
  c->pumping = 1;
  for (;;) {
    if (c->state == ST_READY) {
      http_server_t *s = c->srv;
      /* reading goes on while the handler works (see the top of the file) */
      if (c->parser.upgrade) { /* no protocol switch here: answer, then close */
        c->req.keep_alive = 0;
        buf_reset(&c->pending);
        c->pending_off = 0;
      }
      buf_append(&c->req.body, "", 0); /* allocated and NUL-terminated, even if empty */
      conn_set_state(c, ST_HANDLER);
      c->req_pending = 1;
      s->handler(&c->req, s->ud);
      continue;
    }
    if (c->state == ST_HANDLER) {
      /* resume a read-ahead that hit PENDING_MAX once the parser has caught up */
      if (!c->reading && !c->eof && c->pending.len - c->pending_off <= PENDING_MAX &&
          conn_read_start(c) < 0)
        conn_abort(c);
      break;
    }
    if (c->state > ST_HANDLER) break;
    if (c->pending_off < c->pending.len) {
      c->pending_off +=
          conn_parse(c, c->pending.data + c->pending_off, c->pending.len - c->pending_off);
      if (c->pending_off >= c->pending.len) {
        if (c->pending.cap > KEEP_BUF_BYTES) buf_free(&c->pending);
        buf_reset(&c->pending);
        c->pending_off = 0;
      }
      continue;
    }
    /* Everything received is answered; a client that half-closed sends no more. */
    if (c->eof || conn_read_start(c) < 0) {
      conn_abort(c);
      break;
    }
    if (c->state == ST_IDLE) deadline_set(c, c->srv->lim.idle_timeout_ms);
    break;
  }
  c->pumping = 0;
}

/* ---- libuv callbacks ---- */

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b) {
  conn_t *c = h->data;
  *b = uv_buf_init(c->srv->rbuf, READ_BUF_SIZE);
}

/* Bytes that arrived while the handler holds a request wait, unparsed, in pending. */
static void park(conn_t *c, const char *data, size_t len) {
  if (c->parser.upgrade) return; /* the connection closes after this answer */
  if (c->pending_off) {
    buf_consume(&c->pending, c->pending_off);
    c->pending_off = 0;
  }
  buf_append(&c->pending, data, len);
  if (c->pending.len > PENDING_MAX) conn_read_stop(c);
}

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *b) {
  conn_t *c = st->data;
  if (nread < 0) {
    /* A FIN after complete requests: answer what was received first (conn_pump closes
     * once nothing is left). A stream's client is gone, as is one mid-request. */
    if (nread == UV_EOF && c->state < ST_STREAM &&
        (c->state >= ST_READY || c->pending_off < c->pending.len)) {
      c->eof = 1;
      conn_read_stop(c);
      return;
    }
    conn_abort(c);
    return;
  }
  if (nread == 0 || c->state >= ST_STREAM) return; /* streaming or lingering: discard */
  if (c->state >= ST_READY) {
    park(c, b->base, (size_t)nread);
    return;
  }
  size_t used = conn_parse(c, b->base, (size_t)nread);
  if (c->state != ST_READY) return;
  if (used < (size_t)nread) buf_append(&c->pending, b->base + used, (size_t)nread - used);
  conn_pump(c);
}

/* The current state's time limit ends ms from now (0: it has none). The timer moves only
 * when it would fire later than that (see the top of the file). */
static void deadline_set(conn_t *c, uint64_t ms) {
  if (!ms) {
    c->deadline = 0; /* an armed timer fires, finds no deadline and stays off */
    return;
  }
  c->deadline = uv_now(c->srv->loop) + ms;
  if (c->armed && c->armed <= c->deadline) return;
  c->armed = c->deadline;
  uv_timer_start(&c->timer, on_timer, ms, 0);
}

static void on_timer(uv_timer_t *t) {
  conn_t *c = t->data;
  c->armed = 0;
  if (!c->deadline) return;
  uint64_t now = uv_now(c->srv->loop);
  if (now < c->deadline) { /* fired for an earlier limit that has since moved on */
    c->armed = c->deadline;
    uv_timer_start(&c->timer, on_timer, c->deadline - now, 0);
    return;
  }
  c->deadline = 0;
  switch (c->state) {
    case ST_IDLE: conn_abort(c); break;
    case ST_HEAD: conn_fail(c, 408, "timeout", "request headers took too long"); break;
    case ST_BODY: conn_fail(c, 408, "timeout", "request body took too long"); break;
    case ST_LINGER: conn_abort(c); break;
    default: break;
  }
}

static void on_reject_close(uv_handle_t *h) {
  http_server_t *s = h->data;
  free(h);
  server_unref(s);
}

static void on_connection(uv_stream_t *listener, int status) {
  http_server_t *s = listener->data;
  if (status < 0 || s->draining) return;
  if (s->nconns >= s->lim.max_connections) {
    uv_tcp_t *t = xmalloc(sizeof *t);
    if (uv_tcp_init(s->loop, t) < 0) {
      free(t);
      return;
    }
    t->data = s;
    s->refs++;
    uv_accept(listener, (uv_stream_t *)t);
    uv_close((uv_handle_t *)t, on_reject_close);
    return;
  }
  conn_t *c = xcalloc(1, sizeof *c);
  c->srv = s;
  c->req.conn = c;
  if (uv_tcp_init(s->loop, &c->tcp) < 0) {
    free(c);
    return;
  }
  uv_timer_init(s->loop, &c->timer);
  c->tcp.data = c->timer.data = c;
  c->open_handles = 2;
  s->refs++;
  s->nconns++;
  c->next = s->conns;
  if (s->conns) s->conns->prev = c;
  s->conns = c;
  conn_set_state(c, ST_IDLE);
  if (uv_accept(listener, (uv_stream_t *)&c->tcp) < 0) {
    conn_abort(c);
    return;
  }
  uv_tcp_nodelay(&c->tcp, 1);
  http_parser_init(&c->parser, HTTP_REQUEST);
  c->parser.data = c;
  conn_pump(c);
}

/* ---- Server API ---- */

http_server_t *http_server_new(uv_loop_t *loop, const http_limits_t *limits,
                               http_handler_fn handler, void *ud) {
  if (!loop || !handler) return NULL;
  http_server_t *s = xcalloc(1, sizeof *s);
  s->loop = loop;
  s->handler = handler;
  s->ud = ud;
  s->port = -1;
  s->lim = default_limits;
  if (limits) {
    if (limits->max_header_bytes) s->lim.max_header_bytes = limits->max_header_bytes;
    if (limits->max_body_bytes) s->lim.max_body_bytes = limits->max_body_bytes;
    if (limits->header_timeout_ms) s->lim.header_timeout_ms = limits->header_timeout_ms;
    if (limits->body_timeout_ms) s->lim.body_timeout_ms = limits->body_timeout_ms;
    if (limits->idle_timeout_ms) s->lim.idle_timeout_ms = limits->idle_timeout_ms;
    if (limits->max_connections) s->lim.max_connections = limits->max_connections;
  }
  if (uv_tcp_init(loop, &s->listener) < 0) goto fail;
  s->listener.data = s;
  s->listener_open = 1;
  s->refs = 1;
  s->rbuf = xmalloc(READ_BUF_SIZE);
  return s;
fail:
  free(s);
  return NULL;
}

void http_server_set_observer(http_server_t *s, http_observer_fn fn, void *ud) {
  s->observer = fn;
  s->observer_ud = ud;
}

int http_server_listen(http_server_t *s, const char *host, int port) {
  struct sockaddr_storage ss;
  if (!host || port < 0 || port > 65535) return -EINVAL;
  if (s->listening || !s->listener_open || s->draining) return -EINVAL;
  if (strcmp(host, "localhost") == 0) host = "127.0.0.1";
  if (uv_ip4_addr(host, port, (struct sockaddr_in *)&ss) != 0 &&
      uv_ip6_addr(host, port, (struct sockaddr_in6 *)&ss) != 0)
    return -EINVAL;
  int rc = uv_tcp_bind(&s->listener, (const struct sockaddr *)&ss, 0);
  if (rc == 0) rc = uv_listen((uv_stream_t *)&s->listener, LISTEN_BACKLOG, on_connection);
  if (rc < 0) return rc;
  int len = sizeof ss;
  rc = uv_tcp_getsockname(&s->listener, (struct sockaddr *)&ss, &len);
  if (rc < 0) return rc;
  s->port = ss.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
                                     : ntohs(((struct sockaddr_in *)&ss)->sin_port);
  s->listening = 1;
  return 0;
}

int http_server_port(const http_server_t *s) { return s->port; }

void http_server_drain(http_server_t *s, void (*drained)(void *ud), void *ud) {
  if (s->freeing) return;
  s->draining = 1;
  s->drained = drained;
  s->drained_ud = ud;
  close_listener(s);
  for (conn_t *c = s->conns; c; c = c->next) {
    if (c->state == ST_IDLE && c->pending_off >= c->pending.len) conn_abort(c);
    else if (c->state == ST_STREAM) conn_linger(c); /* a stream never becomes idle */
  }
}

size_t http_server_connections(const http_server_t *s) { return s->nconns; }
int http_server_all_held(const http_server_t *s) { return s->nconns && s->nheld == s->nconns; }

void http_server_free(http_server_t *s) {
  if (!s || s->freeing) return;
  s->freeing = 1;
  s->draining = 1;
  s->drained = NULL;
  close_listener(s);
  for (conn_t *c = s->conns; c; c = c->next) conn_abort(c);
  /* Usually the last close callback frees the struct; after a completed drain nothing
   * is left to close. */
  if (s->refs == 0) {
    s->refs = 1;
    server_unref(s);
  }
}

/* ---- Request API ---- */

const char *http_req_method(const http_req_t *r) {
  return http_method_str((enum http_method)r->conn->parser.method);
}

const char *http_req_path(const http_req_t *r) { return r->head.data + r->path_off; }

const char *http_req_query(const http_req_t *r) { return r->head.data + r->query_off; }

const char *http_req_header(const http_req_t *r, const char *name) {
  const hdr_span_t *h = find_header(r, name);
  if (!h) return NULL;
  return h->val_off == SIZE_MAX ? "" : r->head.data + h->val_off;
}

void http_req_headers(const http_req_t *r, const http_hname_t *names, size_t n, const char **out) {
  /* The names by length: by_len[l] is the first name of l bytes (index + 1, 0 none) and
   * next[k] the next one after name k; names of 64 bytes or more are looked up alone. Most
   * of a request's headers then cost one test, the others a comparison or two. */
  uint8_t by_len[64] = {0}, next[255];
  for (size_t k = n; k-- > 0;) {
    out[k] = NULL;
    if (names[k].len >= 64 || k >= 255) { /* past the index's reach: alone */
      const hdr_span_t *h = find_header(r, names[k].name);
      if (h) out[k] = h->val_off == SIZE_MAX ? "" : r->head.data + h->val_off;
      continue;
    }
    next[k] = by_len[names[k].len];
    by_len[names[k].len] = (uint8_t)(k + 1);
  }
  for (size_t i = 0; i < r->nhdrs; i++) {
    const hdr_span_t *h = &r->hdrs[i];
    if (h->name_len >= 64 || !by_len[h->name_len] || h->dead) continue;
    /* The first header of a name wins, as find_header finds it. */
    for (size_t k = by_len[h->name_len]; k; k = next[k - 1])
      if (!out[k - 1] && same_name_ci(r->head.data + h->name_off, names[k - 1].name, h->name_len))
        out[k - 1] = h->val_off == SIZE_MAX ? "" : r->head.data + h->val_off;
  }
}

char *http_req_body(http_req_t *r, size_t *len) {
  *len = r->body.len;
  return r->body.data;
}

const char *http_req_peer(const http_req_t *r) {
  conn_t *c = r->conn;
  if (c->peer[0] || c->state == ST_CLOSED) return c->peer;
  struct sockaddr_storage ss;
  int len = sizeof ss;
  if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) != 0) return c->peer;
  if (ss.ss_family == AF_INET) {
    uv_ip4_name((struct sockaddr_in *)&ss, c->peer, sizeof c->peer);
  } else if (ss.ss_family == AF_INET6) {
    uv_ip6_name((struct sockaddr_in6 *)&ss, c->peer, sizeof c->peer);
    if (strncasecmp(c->peer, "::ffff:", 7) == 0 && strchr(c->peer + 7, '.'))
      memmove(c->peer, c->peer + 7, strlen(c->peer + 7) + 1);
  }
  return c->peer;
}

int64_t http_req_start_us(const http_req_t *r) { return r->start_us; }

void http_req_set_route(http_req_t *r, const char *route) { r->route = route; }

void http_req_set_data(http_req_t *r, void *data) { r->data = data; }

void *http_req_data(const http_req_t *r) { return r->data; }

/* ---- Response API ---- */

/* The handler is done with a request whose connection already closed: release it. */
static void release_gone(conn_t *c) {
  c->req_pending = 0;
  if (c->open_handles == 0) {
    http_server_t *s = c->srv;
    conn_free(c);
    server_unref(s);
  }
}

static void respond(http_req_t *r, int status, const http_header_t *headers, size_t nheaders,
                    const void *body, size_t len, int close_after, const char *content_type) {
  conn_t *c = r->conn;
  if (r->gone || c->state != ST_HANDLER) {
    if (c->req_pending) release_gone(c);
    return;
  }
  c->req_pending = 0;
  finish_response(c, status, headers, nheaders, body, len, close_after, content_type);
}

void http_respond(http_req_t *r, int status, const http_header_t *headers, size_t nheaders,
                  const void *body, size_t len, int close_after) {
  respond(r, status, headers, nheaders, body, len, close_after, NULL);
}

void http_respond_error(http_req_t *r, int status, const char *code, const char *message,
                        const http_header_t *headers, size_t nheaders) {
  conn_t *c = r->conn;
  if (r->gone) {
    respond(r, status, NULL, 0, NULL, 0, 1, NULL);
    return;
  }
  error_body(&c->scratch, code, message);
  respond(r, status, headers, nheaders, c->scratch.data, c->scratch.len, 0,
          "application/json");
}

/* ---- Streams ---- */

http_stream_t *http_stream_start(http_req_t *r, int status, const http_header_t *headers,
                                 size_t nheaders) {
  conn_t *c = r->conn;
  if (r->gone || c->state != ST_HANDLER) {
    if (c->req_pending) release_gone(c);
    return NULL;
  }
  c->req_pending = 0;
  if (status < 200 || status == 204 || status == 304) { /* no body, so no stream */
    finish_response(c, status, headers, nheaders, NULL, 0, 1, NULL);
    return NULL;
  }
  int rc = write_response(c, status, headers, nheaders, NULL, 0, 1, NULL, 1);
  observe(c, status);
  if (rc < 0) {
    conn_abort(c);
    return NULL;
  }
  /* A stream may stay open for hours: give back everything the request used. */
  http_req_t *q = &c->req;
  req_free_bufs(q);
  q->hdrs = NULL;
  q->nhdrs = q->hdr_cap = 0;
  q->path_off = q->query_off = 0;
  buf_free(&c->pending);
  c->pending_off = 0;
  buf_free(&c->out);
  buf_free(&c->scratch);
  c->stream = (http_stream_t){.conn = c, .max_queue = STREAM_MAX_QUEUE};
  conn_set_state(c, ST_STREAM);
  /* No time limit applies to a stream; reading goes on (discarding) to notice the client leave. */
  if (q->is_head || c->srv->draining || c->eof) conn_linger(c);
  else if (conn_read_start(c) < 0) conn_abort(c);
  return &c->stream;
}

int http_stream_write(http_stream_t *st, const void *data, size_t len) {
  conn_t *c = st->conn;
  if (c->state != ST_STREAM) return -EPIPE;
  if (len == 0) return 0;
  size_t queued = c->tcp.write_queue_size;
  if (queued > 0 && queued + len > st->max_queue) return -ENOBUFS;
  uv_buf_t b = uv_buf_init((char *)data, (unsigned)len);
  if (conn_write(c, &b, 1) < 0) {
    conn_abort(c);
    return -EPIPE;
  }
  return 0;
}

size_t http_stream_queued(const http_stream_t *st) { return st->conn->tcp.write_queue_size; }

void http_stream_set_max_queue(http_stream_t *st, size_t bytes) {
  st->max_queue = bytes ? bytes : STREAM_MAX_QUEUE;
}

void http_stream_on_close(http_stream_t *st, void (*fn)(void *ud), void *ud) {
  st->on_close = fn;
  st->on_close_ud = ud;
}

void http_stream_end(http_stream_t *st) {
  conn_t *c = st->conn;
  if (c->state == ST_STREAM) conn_linger(c);
}

const char *http_status_text(int status) {
  switch (status) {
    case 100: return "Continue";
    case 101: return "Switching Protocols";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 206: return "Partial Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 303: return "See Other";
    case 304: return "Not Modified";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 406: return "Not Acceptable";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 410: return "Gone";
    case 411: return "Length Required";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 417: return "Expectation Failed";
    case 422: return "Unprocessable Content";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: return "Unknown";
  }
}
