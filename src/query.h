/* query: the read side of serve — POST /v1/query over the rollups the process stage
 * keeps, and GET /v1/live, the SSE stream of the process stage's once-a-second frames
 * (channel "live"; with ?feed=events the sampled event feed, channel "feed"; any other
 * feed value is answered 400).
 *
 * A query is a small JSON object (docs/API.md): {"type": timeseries | topN | totals | kpi |
 * groupBy | funnel, "from", "to", "granularity", "dimension", "filter", "metric", "limit",
 * "kpi", "groupBy", "orderBy", "order", "steps", "window", "breakdown"}. It is parsed with
 * cJSON (queries are rare and small; the event path never sees cJSON). What the rollups
 * hold — no filter or one {"dim","value"} test — is answered from them on the loop
 * thread: rollup reads are bounded by the point and row limits below, so one query costs
 * at most a few milliseconds. Everything else (filters with and/or/not/in, groupBy,
 * funnel) is answered exactly by a log scan (scan.h) on the libuv thread pool, the
 * request held until it is done; at most max_scans run at once (beyond: 503 busy with
 * Retry-After), and a scan over its bounds answers 422 scan_limit. A bad query is
 * answered 400 with {"success":false,"error":"bad_query","field":<name>,"message":...}.
 *
 * Keys: the read or admin key (Authorization: Bearer or Basic user; /v1/live also takes
 * ?key= because EventSource cannot send headers). The write key is public: 403. None or
 * an unknown key: 401. */
#ifndef SLUICE_QUERY_H
#define SLUICE_QUERY_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "http.h"
#include "process.h"
#include "rollup.h"
#include "scan.h"
#include "sse.h"
#include "util/buf.h"

#define QUERY_MAX_POINTS 1000       /* timeseries points per answer */
#define QUERY_MAX_LIMIT 100         /* topN rows */
#define QUERY_MAX_RANGE_S (400LL * 86400) /* longest from..to */

typedef struct query query_t;

/* What a query reads (borrowed). */
typedef struct query_stores {
  const rollup_t *events;   /* dimensions PROCESS_DIMS, sum = order revenue */
  const rollup_t *sessions; /* dimension "session": start, end, bounce, converted */
  const char *conversion_event;
  log_t *log;                        /* what query_run scans; NULL: scans answer 503 */
  const scan_limits_t *scan_limits;  /* NULL: scan.h's defaults */
  const kpi_t *kpi;         /* stream-side KPI state (kpi.h); NULL: those KPIs fail */
} query_stores_t;

/* ---- Pure evaluation (unit-tested) ---- */

/* Run the query JSON json[0..len) against st at time now_us, scanning st->log on the
 * calling thread when the rollups cannot answer. Appends the answer's JSON body to out
 * (OUT) and returns its HTTP status: 200; 400 with the error body naming the bad field;
 * 422 when a scan passed its bounds; 503 without a log; 500 when the log is unreadable. */
int query_run(const query_stores_t *st, const char *json, size_t len, int64_t now_us,
              buf_t *out /* OUT */);

/* ---- HTTP ---- */

/* cfg (keys), p and hub (may be NULL: /v1/live answers 503) are borrowed and outlive q. */
query_t *query_new(const config_t *cfg, process_t *p, sse_hub_t *hub);
void query_free(query_t *q);
/* Answer the queries that need a log scan, on loop's thread pool, reading log (both
 * borrowed, outliving q) within limits (copied; NULL: defaults), at most max_scans at
 * once (<= 0: 2). Without this call such queries answer 503. */
void query_enable_scan(query_t *q, uv_loop_t *loop, log_t *log, const scan_limits_t *limits,
                       int max_scans);
/* Ask running scans to stop (shutdown); their requests are answered 503. */
void query_cancel(query_t *q);
/* 1 while a scan runs on the thread pool: run the loop until 0 before closing the log
 * or calling query_free. */
int query_busy(const query_t *q);
/* Answer r when its path is /v1/query or /v1/live. Returns 1 when r was consumed, 0 when
 * the path is not ours (r untouched). */
int query_handle(query_t *q, http_req_t *r);

#endif
