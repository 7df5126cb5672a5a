/* collect: the ingestion endpoints — HTTP request in, log records out.
 *
 *   POST /v1/batch /v1/import            Segment batch {"batch":[...]}
 *   POST /v1/track /v1/page /v1/screen /v1/identify /v1/group /v1/alias
 *                                         one Segment event, type implied by the path
 *   POST /v1/events                       NDJSON, one event per line (type per line,
 *                                         "track" when absent)
 *   GET  /v1/p.gif                        1x1 GIF pixel: event in query parameters
 *   GET  /v1/r                            e-mail click: records it, 302 to an allowed host
 *   OPTIONS on any of them                CORS preflight
 *
 * A request goes: CORS origin check -> backpressure check -> key (Authorization header,
 * else writeKey in the body or query) -> body decoding (gzip/deflate, bounded) -> JSON
 * parse -> per event: validate (event.h), enrich (enrich.h), skip if its messageId is
 * already stored (dedup.h) or it has no analytics consent, serialise -> one log_append
 * for all good events of the request -> response once the log acknowledges them.
 * Rejected events are reported by index with a code and a message, and are written with
 * their reason to the bad-event log (a second log, <data-dir>/bad). The good events of a
 * partly bad batch are accepted (200 with a "rejected" list); a request with no good
 * event gets 400. When the log cannot take the events (queue bound, disk full, I/O
 * error) the answer is 503 with Retry-After and nothing of the request is acknowledged. */
#ifndef SLUICE_COLLECT_H
#define SLUICE_COLLECT_H

#include "config.h"
#include "dedup.h"
#include "enrich.h"
#include "http.h"
#include "log.h"
#include "metrics.h"

typedef struct collect collect_t;

typedef struct collect_deps {
  const config_t *cfg;  /* borrowed; keys resolved */
  log_t *log;           /* borrowed: the event log */
  log_t *bad;           /* borrowed: the bad-event log */
  enrich_t *enrich;     /* borrowed */
  metrics_t *metrics;   /* borrowed */
  dedup_t *dedup;       /* borrowed; NULL = no deduplication */
} collect_deps_t;

collect_t *collect_new(const collect_deps_t *deps);
void collect_free(collect_t *c);

/* If r is an ingestion route, handle it (answering now or after the log acks) and
 * return 1; otherwise return 0 and leave r alone. */
int collect_handle(collect_t *c, http_req_t *r);

/* Append one event the server emits itself (the act stage's ACTION_EMIT): json is a
 * Segment event object (borrowed for the call). It goes the way a collected event goes
 * — validation, enrichment (no client address; ids are taken as stored), dedup by
 * messageId, the log — without an HTTP request. done(ud, rc) runs once, possibly before
 * collect_emit returns: rc 0 when the event is durable or was a duplicate (already
 * stored), -EINVAL when it was rejected (it is in the bad-event log), -EAGAIN when the
 * log is full or failing. */
void collect_emit(collect_t *c, const char *json, size_t len, void (*done)(void *ud, int rc),
                  void *ud);

/* Does origin (an Origin header value) pass the CORS allowlist for a request whose
 * Host header is host? Same-origin requests always pass. */
int collect_origin_allowed(const config_t *cfg, const char *origin, const char *host);

/* Is url an absolute http(s) URL whose host is on the redirect allowlist? */
int collect_redirect_allowed(const config_t *cfg, const char *url);

#endif
