/* http: a small HTTP/1.1 server on libuv + http-parser — the only file that knows either.
 *
 * The collector sees requests and answers them; it never sees sockets or parser state.
 * Design:
 * - One connection handles one request at a time: after a request is complete the parser
 *   pauses and reading stops until the handler has answered, then parsing resumes on the
 *   bytes already buffered. Pipelined requests are thus answered in order, and a slow
 *   durable ack on one connection never blocks another.
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
 * - Draining (http_server_drain): the listener closes, idle connections close, busy ones
 *   close right after their response; the drained callback runs when none is left. */
#ifndef SLUICE_HTTP_H
#define SLUICE_HTTP_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

typedef struct http_server http_server_t;
typedef struct http_req http_req_t;

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
/* Open connections right now. */
size_t http_server_connections(const http_server_t *s);
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
 * Repeated headers are joined with ", " as RFC 9110 allows. */
const char *http_req_header(const http_req_t *r, const char *name);
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

/* Reason phrase for a status code ("Not Found"). */
const char *http_status_text(int status);

#endif
