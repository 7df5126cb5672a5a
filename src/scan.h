/* scan: the log-scan query engine — exact answers the rollups cannot give, read from the
 * event log itself: filters over several dimensions (and, or, not, in), groupBy on up to
 * three dimensions, and funnels per user.
 *
 * Design. The rollups keep one cell per (bucket, dimension value), never intersections,
 * so "country = PL and device_type = mobile" or "utm_source by country" cannot be read
 * from them. A scan reads the records of the range instead: it seeks the log by receive
 * time with its sparse time index (log_reader_seek_time) to SCAN_EARLY_US before `from`
 * (an event's time may lie at most that far after its receive time: the rollups refuse
 * events further in the future), decodes each record with evfields (the same decoding the
 * process stage uses, so both count an event alike), keeps the events whose event time
 * lies in [from, to) and that pass the filter, and aggregates them. It reads on to the
 * log's end as of the start of the scan, so an event delivered long after its own time
 * (an offline queue emptied the next day, a history imported later) counts as it does in
 * the rollups; the reader's event-time window (log_reader_set_window) passes over the
 * runs of records and whole segments whose event times all lie outside the range, so
 * what is read is about the range itself, whenever its events arrived. late_us > 0
 * bounds it the old way: stop at the first record received late_us after `to`. Every
 * answer says how many records it read.
 *
 * Scans block the calling thread (query.c runs them on the libuv thread pool) and are
 * bounded: records and value bytes read, wall time, memory for groups, uniques and funnel
 * state, and the number of groups. A scan over a bound stops and fails (-E2BIG or
 * -ETIMEDOUT with a message naming the bound); partial answers are never returned.
 *
 * Unique users are counted exactly (a hash set of 64-bit user-key hashes) up to
 * exact_uniques per cell, then with a HyperLogLog sketch (hll.h; ~0.8% error); the answer
 * says "uniquesExact": false when any cell crossed over.
 *
 * Query shapes are plain structs filled by scan_parse.c from the query JSON (query.c
 * dispatches); scan_run formats the answer's JSON itself. */
#ifndef SLUICE_SCAN_H
#define SLUICE_SCAN_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "log.h"
#include "util/buf.h"

#define SCAN_MAX_GROUP_DIMS 3
#define SCAN_MAX_STEPS 8
#define SCAN_MAX_FILTER_NODES 64
#define SCAN_MAX_FILTER_DEPTH 8
#define SCAN_MAX_IN_VALUES 100
#define SCAN_MAX_POINTS 1000
#define SCAN_MAX_ROWS 1000
#define SCAN_EARLY_US (300LL * 1000000) /* events up to 5 min ahead of their receipt */

typedef struct scan_filter scan_filter_t;

typedef enum { SCAN_TIMESERIES, SCAN_TOTALS, SCAN_GROUPBY, SCAN_FUNNEL } scan_kind_t;
typedef enum { SCAN_BY_COUNT, SCAN_BY_SUM, SCAN_BY_UNIQUES } scan_metric_t;

typedef struct scan_step {
  char *event;            /* owned: the event name ("event" dimension) */
  scan_filter_t *filter;  /* owned, NULL: none */
} scan_step_t;

/* A parsed query (scan_parse.c fills it; scan_query_free frees what it owns). */
typedef struct scan_query {
  scan_kind_t kind;
  int64_t from_us, to_us;
  int64_t bucket_us;            /* timeseries: bucket width (1 s, 1 min or 1 h) */
  const char *granularity;      /* timeseries: its name (static) */
  scan_filter_t *filter;        /* owned, NULL: every event */
  int group_dims[SCAN_MAX_GROUP_DIMS]; /* groupBy: indexes into PROCESS_DIMS */
  int ngroup;
  scan_metric_t order_by;       /* groupBy rows and funnel groups: by this, ... */
  int ascending;                /* ... descending unless set */
  size_t limit;                 /* rows / breakdown groups returned, 1..SCAN_MAX_ROWS */
  scan_step_t steps[SCAN_MAX_STEPS];
  int nsteps;
  int64_t window_us;            /* funnel: last step at most this long after the first */
  int breakdown_dim;            /* funnel: index into PROCESS_DIMS, -1: none */
  const char *conversion;       /* borrowed: the order event (revenue); NULL: default */
} scan_query_t;

typedef struct scan_limits {
  uint64_t max_records;   /* records read per scan (0: 20,000,000) */
  uint64_t max_bytes;     /* value bytes read per scan (0: 8 GiB) */
  int64_t max_time_us;    /* wall time per scan (0: 30 s) */
  size_t max_memory;      /* bytes of groups, uniques and funnel state (0: 256 MiB) */
  size_t max_groups;      /* distinct groups before "(other)" (0: 10,000) */
  size_t exact_uniques;   /* users counted exactly per cell before HLL (0: 10,000) */
  int64_t late_us;        /* stop at the first record received this long after `to`
                             (0 or negative: read to the log's end) */
} scan_limits_t;

typedef struct scan_stats {
  uint64_t records;       /* records read */
  uint64_t bytes;         /* value bytes read */
  uint64_t matched;       /* events in range that passed the filter */
  int64_t elapsed_us;
} scan_stats_t;

/* ---- Parsing (scan_parse.c; the query JSON, see docs/API.md) ----
 *
 * Each parser takes a cJSON value (borrowed) and, on a bad value, returns -1 (or NULL)
 * with the path of the offending field ("filter.and[1].dim") in field and a message a
 * user can act on in err. */

struct cJSON;
/* A filter: {"dim","value"}, {"dim","in":[...]}, {"and":[...]}, {"or":[...]},
 * {"not":{...}} ("dimension" is accepted for "dim"). path names v in messages. Returns
 * the filter, owned by the caller, or NULL. Bounded: SCAN_MAX_FILTER_NODES nodes,
 * SCAN_MAX_FILTER_DEPTH levels, SCAN_MAX_IN_VALUES values per "in". */
scan_filter_t *scan_filter_parse(const struct cJSON *v, const char *path, char *field,
                                 size_t fieldlen, char *err, size_t errlen);
/* groupBy's fields of the query object root into q: "groupBy" (1..3 dimension names),
 * "orderBy" (count | sum | uniques), "order" (desc | asc). Returns 0 or -1. */
int scan_parse_groupby(const struct cJSON *root, scan_query_t *q, char *field, size_t fieldlen,
                       char *err, size_t errlen);
/* funnel's fields into q: "steps" (2..SCAN_MAX_STEPS of {"event", "filter"?}), "window"
 * ("30m", "1h", "7d", or seconds; at most 90 days; default 1 day), "breakdown" (a
 * dimension). Returns 0 or -1. */
int scan_parse_funnel(const struct cJSON *root, scan_query_t *q, char *field, size_t fieldlen,
                      char *err, size_t errlen);

/* ---- Filters ---- */

/* Evaluate f against an event's dimension values (PROCESS_DIMS order, NULL = absent).
 * A NULL filter matches everything. */
int scan_filter_match(const scan_filter_t *f, const char *const *dims);
/* When f is one {"dim","value"} test (what the rollups answer), its dimension index and
 * value (borrowed from f); returns 1, else 0. */
int scan_filter_simple(const scan_filter_t *f, int *dim /* OUT */, const char **value /* OUT */);
void scan_filter_free(scan_filter_t *f);
/* Free what q owns (not q). NULL is a no-op. */
void scan_query_free(scan_query_t *q);

/* ---- Running ---- */

/* Read log (borrowed; any thread, see log.h) over q's range and append the answer's JSON
 * object to out (OUT). cancel (may be NULL) is polled: set it to stop early. Returns 0;
 * -E2BIG (records, bytes or memory bound), -ETIMEDOUT (time bound), -ECANCELED, or
 * -EIO / -EBADMSG (the log could not be read), with a message in err; out is then left
 * as it was. st (may be NULL) receives what was read either way. */
int scan_run(log_t *log, const scan_query_t *q, const scan_limits_t *lim, atomic_int *cancel,
             buf_t *out /* OUT */, scan_stats_t *st /* OUT */, char *err, size_t errlen);

#endif
