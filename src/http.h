/* http: a small HTTP/1.1 server on libuv + http-parser — the only file that knows either.
 *
 * The collector sees requests and answers them; it never sees sockets or parser state.
 * Design:
 * - One connection handles one request at a time: after a request is complete the parser
 *   pauses until the handler has answered, then parsing resumes on the bytes buffered
 *   meanwhile. Reading goes on while the handler works (stopping and restarting it costs
 *   two syscalls per request); it stops only when 64 KiB wait unparsed. Pipelined
 *   requests are thus answered in order, and a slow durable ack on one connection never
 *   blocks another. A client that half-closes after sending still gets its answers.
 * - The handler may answer at once or later (after the log acks): a request stays valid
 *   until http_respond. If the client goes away first, the request is marked gone and
 *   http_respond just frees it.
 * - Limits are enforced here, before the handler runs: header bytes (431), body bytes
 *   (413, checked against Content-Length before reading and while reading chunked
 *   bodies), time to receive the headers and the body (408), keep-alive idle time (close),
 *   and open connections (accept and close beyond the limit). Malformed requests get 400.
 *   Those answers are JSON like every other: {"success":false,"error":CODE,"message":...}.
 * - Expect: 100-continue is answered with 100 unless the body is already too large.
 * - Keep-alive follows HTTP/1.1 rules (Connection: close, HTTP/1.0 without keep-alive).
 * - Streams (http_stream_start): instead of a response, the handler may turn the
 *   connection into a stream — a head without Content-Length, then body bytes written
 *   whenever the caller likes until the connection closes (what Server-Sent Events
 *   need). A stream has no timeouts, serves no further request, owns no buffer beyond
 *   its connection struct while idle, and has a bounded write queue so a slow reader is
 *   reported (-ENOBUFS) instead of growing memory.
 * - Draining (http_server_drain): the listener closes, idle connections close, busy ones
 *   close right after their response, streams end at once (queued bytes flushed, FIN);
 *   the drained callback runs when none is left. */
#ifndef SLUICE_HTTP_H
#define SLUICE_HTTP_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

typedef struct http_server http_server_t;
typedef struct http_req http_req_t;
typedef struct http_stream http_stream_t;

typedef struct http_limits {
  size_t max_header_bytes;     /* URL + header names and values; default 16 KiB. More than
                                  128 header fields is 431 too */
  size_t max_body_bytes;       /* default 512000 */
  uint32_t header_timeout_ms;  /* first byte to end of headers; default 10000 */
  uint32_t body_timeout_ms;    /* end of headers to end of body; default 30000 */
  uint32_t idle_timeout_ms;    /* wait for the next (or a new connection's first) request,
                                  then close silently; default 60000 */
  uint32_t max_connections;    /* default 10000 */
} http_limits_t;

typedef struct http_header {
  const char *name;
  const char *value;
} http_header_t;

/* Handles one complete request. Must eventually call http_respond exactly once. */
typedef void (*http_handler_fn)(http_req_t *req, void *ud);

/* Observes every response sent, including the server's own errors (400/408/413/431),
 * once it is queued for writing: route is the handler-set route label
 * (http_req_set_route) or "other"; latency_us counts from the request's first byte.
 * Not called for a request whose client went away before the answer. */
typedef void (*http_observer_fn)(void *ud, const char *route, int status, uint64_t latency_us);

/* ---- Server ---- */

/* Create a server on loop (borrowed). limits may be NULL for defaults; zero fields take
 * their defaults. Returns NULL if loop or handler is NULL or the listener cannot be set up. */
http_server_t *http_server_new(uv_loop_t *loop, const http_limits_t *limits,
                               http_handler_fn handler, void *ud);
void http_server_set_observer(http_server_t *s, http_observer_fn fn, void *ud);

/* Listen on host:port (IPv4 or IPv6 literal, or "localhost"); port 0 picks a free port.
 * Returns 0 or a negative errno (-EADDRINUSE, -EINVAL for a bad host). */
int http_server_listen(http_server_t *s, const char *host, int port);
/* The bound port (useful after port 0), or -1 before listen. */
int http_server_port(const http_server_t *s);

/* Stop accepting and close connections as they become idle; drained(ud) runs on the loop
 * once every connection is closed. */
void http_server_drain(http_server_t *s, void (*drained)(void *ud), void *ud);
/* Open connections right now, streams included. */
size_t http_server_connections(const http_server_t *s);
/* Whether every open connection has a request the handler has not answered yet: then no
 * request can arrive before an answer goes out, short of a new connection. */
int http_server_all_held(const http_server_t *s);
/* Close everything and free. Call after drain completed, or at teardown. NULL no-op.
 * Handles close asynchronously: run the loop until it has no more handles before
 * closing and freeing the loop; the memory goes with the last close callback. Requests
 * the handler still holds become gone: http_respond on them only releases them. */
void http_server_free(http_server_t *s);

/* ---- Request (borrowed from the server until http_respond) ---- */

/* Method name as http-parser spells it: "GET", "POST", "OPTIONS", ... */
const char *http_req_method(const http_req_t *r);
/* Path without the query string, not percent-decoded, NUL-terminated. */
const char *http_req_path(const http_req_t *r);
/* Raw query string after '?', "" when absent, NUL-terminated. */
const char *http_req_query(const http_req_t *r);
/* Value of the first header named name (case-insensitive), NUL-terminated, or NULL.
 * Repeated headers are joined with ", " as RFC 9110 allows. name must not hold '^' or
 * '~' (the comparison folds them together; see same_name_ci in http.c). */
const char *http_req_header(const http_req_t *r, const char *name);
/* Several headers in one pass over the request's: out[i] receives what
 * http_req_header(r, names[i].name) would. For a handler that reads a handful of headers
 * of every request; names is usually a static table of HTTP_HNAME("Content-Type")...
 * Names must not hold '^' or '~' (see same_name_ci in http.c). */
typedef struct http_hname {
  const char *name;
  size_t len; /* strlen(name) */
} http_hname_t;
#define HTTP_HNAME(literal) {(literal), sizeof(literal) - 1}
void http_req_headers(const http_req_t *r, const http_hname_t *names, size_t n, const char **out);
/* The (de-chunked) body; *len receives its length. Never NULL (empty body = ""). The
 * handler may modify the bytes in place. NUL-terminated at [len]. */
char *http_req_body(http_req_t *r, size_t *len /* OUT */);
/* Peer address as text ("127.0.0.1", "::1"; IPv4-mapped IPv6 shown as IPv4); "" if
 * unknown (the connection already closed). */
const char *http_req_peer(const http_req_t *r);
/* Monotonic time (clock_mono_us) when the first byte of this request arrived. */
int64_t http_req_start_us(const http_req_t *r);
/* Label used for metrics; a static string owned by the caller. */
void http_req_set_route(http_req_t *r, const char *route);
/* Per-request slot for the handler's own state. */
void http_req_set_data(http_req_t *r, void *data);
void *http_req_data(const http_req_t *r);

/* ---- Response ---- */

/* Send the response and release the request; r must not be used afterwards. headers
 * (borrowed, may be NULL) are added to Date, Content-Length and Connection, which the
 * server writes itself; a caller header naming one of those or Transfer-Encoding, with a
 * name that is not a token, or with a value holding CR, LF or another control character
 * is dropped (no response splitting). Content-Length is omitted for 1xx, 204 and 304,
 * and a HEAD request gets no body. body is borrowed (copied if it cannot be written at
 * once). close_after forces Connection: close. Safe after the client went away (only
 * frees). */
void http_respond(http_req_t *r, int status, const http_header_t *headers, size_t nheaders,
                  const void *body, size_t len, int close_after);

/* Convenience: status with the JSON error body
 * {"success":false,"error":"<code>","message":"<message>"} (both JSON-escaped) and
 * Content-Type: application/json unless headers set one. The connection stays open. */
void http_respond_error(http_req_t *r, int status, const char *code, const char *message,
                        const http_header_t *headers, size_t nheaders);

/* ---- Streams (a response whose body lasts until the connection closes) ---- */

/* Answer r with a stream: sends the status line, Date, Connection: close and headers
 * (borrowed; filtered like http_respond's, Content-Length and Transfer-Encoding
 * included), and no Content-Length — the body is everything written until the
 * connection closes, for HTTP/1.1 and 1.0 alike. Consumes r like http_respond; the
 * connection serves no further request. status must allow a body (not 1xx, 204, 304):
 * otherwise it is sent as a plain response that closes, and NULL is returned. Returns
 * NULL if the client already went away (r is then only released). For a HEAD request,
 * during a drain, or when the client already half-closed, the stream ends at once
 * (writes return -EPIPE, on_close follows).
 * Lifetime: the handle is the server's; it stays valid until its on_close callback has
 * run (on a later loop turn: never inside an http_stream_* call). A caller that keeps
 * the handle past the current callback must therefore register on_close. */
http_stream_t *http_stream_start(http_req_t *r, int status, const http_header_t *headers,
                                 size_t nheaders);

/* Queue len bytes of data (borrowed; copied if the kernel does not take them at once).
 * Returns 0; -EPIPE once the stream has ended or the client went away (nothing queued);
 * -ENOBUFS when bytes are already queued and these would take the queue past its bound
 * (nothing queued: the caller drops the data or ends the stream). An empty queue takes
 * any len, so one write larger than the bound is not refused forever. */
int http_stream_write(http_stream_t *s, const void *data, size_t len);
/* Bytes queued in user space, not yet taken by the kernel. */
size_t http_stream_queued(const http_stream_t *s);
/* Bound for http_stream_write's -ENOBUFS; 0 restores the default, 256 KiB. */
void http_stream_set_max_queue(http_stream_t *s, size_t bytes);
/* fn(ud) runs once, from a libuv close callback, when the connection is closed: the
 * client went away, the stream ended, a write failed, or the server was freed. After it
 * returns the handle is freed. Replaces an earlier callback; fn NULL unregisters. */
void http_stream_on_close(http_stream_t *s, void (*fn)(void *ud), void *ud);
/* End the stream: the queued bytes are flushed, then the server closes (FIN, then
 * reading until the client's EOF or 2 s). Further writes return -EPIPE. No-op on a
 * stream that already ended. */
void http_stream_end(http_stream_t *s);

/* Reason phrase for a status code ("Not Found"). */
const char *http_status_text(int status);

#endif
