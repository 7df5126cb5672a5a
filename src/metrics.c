/* metrics: Prometheus exposition (see metrics.h). */
#include "metrics.h"

#include <stdatomic.h>
#include <string.h>

#include "util/mem.h"

#define NBUCKETS 16
static const double bucket_s[NBUCKETS] = {0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025,
                                          0.005,   0.01,   0.025,   0.05,   0.1,   0.25,
                                          0.5,     1,      2.5,     10};

typedef struct hist {
  _Atomic uint64_t buckets[NBUCKETS + 1]; /* last = +Inf */
  _Atomic uint64_t sum_us, count;
} hist_t;

#define MAX_ROUTES 128
typedef struct route_count {
  const char *route;
  int status;
  uint64_t count;
} route_count_t;

#define MAX_REASONS 32
typedef struct reason_count {
  const char *code;
  uint64_t count;
} reason_count_t;

struct metrics {
  _Atomic uint64_t counters[MC_COUNT_];
  hist_t hist[MH_COUNT_];
  route_count_t routes[MAX_ROUTES];
  size_t nroutes;
  reason_count_t reasons[MAX_REASONS];
  size_t nreasons;
};

static const struct {
  const char *name, *help;
} counter_info[MC_COUNT_] = {
    [MC_EVENTS_ACCEPTED] = {"sluice_events_accepted_total", "Events made durable in the log."},
    [MC_EVENTS_REJECTED] = {"sluice_events_rejected_total", "Events refused by validation."},
    [MC_EVENTS_FAILED] = {"sluice_events_failed_total",
                          "Events refused because the log could not take them (503)."},
    [MC_REQUEST_BYTES] = {"sluice_request_bytes_total", "Request body bytes received."},
    [MC_BAD_EVENTS_LOGGED] = {"sluice_bad_events_logged_total",
                              "Records written to the bad-event log."},
    [MC_EVENTS_DUPLICATE] = {"sluice_events_duplicate_total",
                             "Events not stored again because their messageId was stored."},
    [MC_EVENTS_NO_CONSENT] = {"sluice_events_dropped_no_consent_total",
                              "Events not stored because the visitor gave no analytics consent."},
};

static const struct {
  const char *name, *help;
} hist_info[MH_COUNT_] = {
    [MH_FSYNC] = {"sluice_log_fsync_seconds", "Duration of one log fdatasync (group commit)."},
    [MH_ACK] = {"sluice_ack_latency_seconds", "Request receipt to durable acknowledgement."},
    [MH_REQUEST] = {"sluice_http_request_duration_seconds", "Request receipt to response."},
};

metrics_t *metrics_new(void) { return xcalloc(1, sizeof(metrics_t)); }

void metrics_free(metrics_t *m) { free(m); }

void metrics_add(metrics_t *m, metrics_counter_t c, uint64_t n) {
  atomic_fetch_add_explicit(&m->counters[c], n, memory_order_relaxed);
}

uint64_t metrics_counter(const metrics_t *m, metrics_counter_t c) {
  return atomic_load_explicit(&m->counters[c], memory_order_relaxed);
}

void metrics_rejected(metrics_t *m, const char *code) {
  metrics_add(m, MC_EVENTS_REJECTED, 1);
  for (size_t i = 0; i < m->nreasons; i++)
    if (m->reasons[i].code == code || strcmp(m->reasons[i].code, code) == 0) {
      m->reasons[i].count++;
      return;
    }
  if (m->nreasons < MAX_REASONS) m->reasons[m->nreasons++] = (reason_count_t){code, 1};
}

void metrics_observe(metrics_t *m, metrics_hist_t h, uint64_t us) {
  hist_t *hs = &m->hist[h];
  double s = (double)us / 1e6;
  size_t b = 0;
  while (b < NBUCKETS && s > bucket_s[b]) b++;
  atomic_fetch_add_explicit(&hs->buckets[b], 1, memory_order_relaxed);
  atomic_fetch_add_explicit(&hs->sum_us, us, memory_order_relaxed);
  atomic_fetch_add_explicit(&hs->count, 1, memory_order_relaxed);
}

void metrics_request(metrics_t *m, const char *route, int status, uint64_t latency_us) {
  metrics_observe(m, MH_REQUEST, latency_us);
  for (size_t i = 0; i < m->nroutes; i++)
    if (m->routes[i].status == status &&
        (m->routes[i].route == route || strcmp(m->routes[i].route, route) == 0)) {
      m->routes[i].count++;
      return;
    }
  if (m->nroutes < MAX_ROUTES) m->routes[m->nroutes++] = (route_count_t){route, status, 1};
}

static void header(buf_t *out, const char *name, const char *type, const char *help) {
  buf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

void metrics_render(metrics_t *m, buf_t *out, const metrics_gauge_t *gauges, size_t ngauges) {
  header(out, "sluice_http_requests_total", "counter", "HTTP responses by route and status.");
  for (size_t i = 0; i < m->nroutes; i++)
    buf_printf(out, "sluice_http_requests_total{route=\"%s\",status=\"%d\"} %llu\n",
               m->routes[i].route, m->routes[i].status, (unsigned long long)m->routes[i].count);
  for (int c = 0; c < MC_COUNT_; c++) {
    if (c == MC_EVENTS_REJECTED) continue;
    header(out, counter_info[c].name, "counter", counter_info[c].help);
    buf_printf(out, "%s %llu\n", counter_info[c].name, (unsigned long long)metrics_counter(m, c));
  }
  header(out, counter_info[MC_EVENTS_REJECTED].name, "counter",
         "Events refused by validation, by reason.");
  for (size_t i = 0; i < m->nreasons; i++)
    buf_printf(out, "%s{reason=\"%s\"} %llu\n", counter_info[MC_EVENTS_REJECTED].name,
               m->reasons[i].code, (unsigned long long)m->reasons[i].count);
  for (int h = 0; h < MH_COUNT_; h++) {
    hist_t *hs = &m->hist[h];
    header(out, hist_info[h].name, "histogram", hist_info[h].help);
    uint64_t cum = 0;
    for (int b = 0; b <= NBUCKETS; b++) {
      cum += atomic_load_explicit(&hs->buckets[b], memory_order_relaxed);
      if (b < NBUCKETS)
        buf_printf(out, "%s_bucket{le=\"%g\"} %llu\n", hist_info[h].name, bucket_s[b],
                   (unsigned long long)cum);
      else
        buf_printf(out, "%s_bucket{le=\"+Inf\"} %llu\n", hist_info[h].name,
                   (unsigned long long)cum);
    }
    buf_printf(out, "%s_sum %.6f\n%s_count %llu\n", hist_info[h].name,
               (double)atomic_load_explicit(&hs->sum_us, memory_order_relaxed) / 1e6,
               hist_info[h].name, (unsigned long long)cum);
  }
  for (size_t i = 0; i < ngauges; i++) {
    header(out, gauges[i].name, gauges[i].counter ? "counter" : "gauge", gauges[i].help);
    buf_printf(out, "%s %.17g\n", gauges[i].name, gauges[i].value);
  }
}
