/* metrics: counters and histograms, rendered in the Prometheus text format at /metrics.
 *
 * A fixed set of named metrics (no registry to look up per event): request counters by
 * route and status, event counters, and latency histograms. Everything is updated with
 * relaxed atomics, so the log's writer thread can observe fsync latency while the loop
 * thread renders. Gauges that other modules own (queue depth, log size, connections) are
 * passed in at render time, so there is one source for each number. */
#ifndef SLUICE_METRICS_H
#define SLUICE_METRICS_H

#include <stdint.h>

#include "util/buf.h"

typedef struct metrics metrics_t;

typedef enum {
  MC_EVENTS_ACCEPTED,   /* events made durable */
  MC_EVENTS_REJECTED,   /* events refused by validation (reported per request) */
  MC_EVENTS_FAILED,     /* events refused because the log could not take them (503) */
  MC_REQUEST_BYTES,     /* request body bytes received (before decompression) */
  MC_BAD_EVENTS_LOGGED, /* records written to the bad-event log */
  MC_EVENTS_DUPLICATE,  /* events answered as accepted, not stored: messageId seen */
  MC_EVENTS_NO_CONSENT, /* events answered as accepted, not stored: no analytics consent */
  MC_COUNT_
} metrics_counter_t;

typedef enum {
  MH_FSYNC,   /* one fdatasync of the log */
  MH_ACK,     /* request receipt to durable ack */
  MH_REQUEST, /* request receipt to response, every route */
  MH_COUNT_
} metrics_hist_t;

typedef struct metrics_gauge {
  const char *name;  /* full metric name, e.g. "sluice_log_queue_bytes" */
  const char *help;
  double value;
  int counter;       /* 1: a count since start another module keeps (type counter) */
} metrics_gauge_t;

metrics_t *metrics_new(void);
void metrics_free(metrics_t *m);

void metrics_add(metrics_t *m, metrics_counter_t c, uint64_t n);
/* Count one rejected event under its reason code (a static string). */
void metrics_rejected(metrics_t *m, const char *code);
/* Record one response: route label (static string), status, latency. Loop thread. */
void metrics_request(metrics_t *m, const char *route, int status, uint64_t latency_us);
/* Observe a duration in microseconds. Any thread. */
void metrics_observe(metrics_t *m, metrics_hist_t h, uint64_t us);
uint64_t metrics_counter(const metrics_t *m, metrics_counter_t c);

/* Append the whole exposition (counters, histograms, then the given gauges) to out. */
void metrics_render(metrics_t *m, buf_t *out, const metrics_gauge_t *gauges, size_t ngauges);

#endif
