/* rollup_bench: CPU time per rollup_add and memory held, on a day of synthetic traffic.
 * Built and run by bench/rollup.sh (see there for what it prints).
 *
 * Scenario "day": N events (default 1,000,000) in time order over 24 h, the clock
 * following event time as it does for the process stage, 10 dimensions with Zipf-skewed
 * values: event 6, page_path 200, utm_source 20 (70% absent), utm_medium 5 (70% absent),
 * utm_campaign 50 (80% absent), referrer_class 5, country 100, device_type 3, browser 10,
 * os 8; 100,000 users (Zipf), a purchase value on 2% of events.
 * Scenario "day/1h": the same day with a 1-hour minute ring, so that 23 of its hours have
 * folded their minutes as they do in steady state: the long-term memory of an hour.
 * Scenario "hostile": N events over the last hour, each with a fresh page_path and
 * campaign (the "(other)" bound at work).
 * Reference, in the same run: the unavoidable part of an add — XXH3 of every present
 * value plus one hll_add_hash into a single sketch — so the ratio says what the rings,
 * tables and cells cost on top. CPU time from CLOCK_PROCESS_CPUTIME_ID; inputs are
 * generated before timing. */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#define XXH_INLINE_ALL
#include <xxhash.h>

#include "hll.h"
#include "rollup.h"

#define NDIMS 10
#define SEC 1000000LL
static const char *const DIMS[NDIMS] = {"event",          "page_path", "utm_source",
                                        "utm_medium",     "utm_campaign", "referrer_class",
                                        "country",        "device_type", "browser", "os"};
static const int CARD[NDIMS] = {6, 200, 20, 5, 50, 5, 100, 3, 10, 8};
static const double ABSENT[NDIMS] = {0, 0, 0.7, 0.7, 0.8, 0, 0, 0, 0, 0};

static int64_t clock_now;
static int64_t fake_now(void *ctx) { return *(int64_t *)ctx; }

static uint64_t rng = 88172645463325252ull;
static uint64_t next_rand(void) {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return rng;
}
static double uniform(void) { return (double)(next_rand() >> 11) / 9007199254740992.0; }

/* Zipf(s = 1) sampler over 1..n by inverting a precomputed CDF. */
typedef struct {
  double *cdf;
  int n;
} zipf_t;
static zipf_t zipf_new(int n) {
  zipf_t z = {malloc(sizeof(double) * (size_t)n), n};
  double sum = 0;
  for (int i = 0; i < n; i++) z.cdf[i] = (sum += 1.0 / (i + 1));
  for (int i = 0; i < n; i++) z.cdf[i] /= sum;
  return z;
}
static int zipf_draw(const zipf_t *z) {
  double u = uniform();
  int lo = 0, hi = z->n - 1;
  while (lo < hi) {
    int mid = (lo + hi) / 2;
    if (z->cdf[mid] < u) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

static double cpu_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static long rss_kib(void) {
  FILE *f = fopen("/proc/self/statm", "r");
  long pages = 0, res = 0;
  if (f) {
    if (fscanf(f, "%ld %ld", &pages, &res) != 2) res = 0;
    fclose(f);
  }
  return res * 4;
}

typedef struct {
  int64_t t;
  uint64_t user;
  double value;
  const char *v[NDIMS];
} ev_t;

static char **names[NDIMS];

static ev_t *gen_day(long n, int64_t start) {
  ev_t *ev = malloc(sizeof *ev * (size_t)n);
  zipf_t z[NDIMS], zu = zipf_new(100000);
  for (int d = 0; d < NDIMS; d++) {
    z[d] = zipf_new(CARD[d]);
    names[d] = malloc(sizeof(char *) * (size_t)CARD[d]);
    for (int k = 0; k < CARD[d]; k++) {
      char buf[64];
      if (d == 1) snprintf(buf, sizeof buf, "/products/category-%d/item", k);
      else snprintf(buf, sizeof buf, "%s-%d", DIMS[d], k);
      names[d][k] = strdup(buf);
    }
  }
  for (long i = 0; i < n; i++) {
    ev[i].t = start + (int64_t)((double)i / (double)n * 86400.0 * SEC);
    uint64_t user_id = (uint64_t)zipf_draw(&zu);
    ev[i].user = XXH3_64bits(&user_id, sizeof user_id);
    ev[i].value = uniform() < 0.02 ? 10 + 90 * uniform() : 0;
    for (int d = 0; d < NDIMS; d++)
      ev[i].v[d] = uniform() < ABSENT[d] ? NULL : names[d][zipf_draw(&z[d])];
  }
  for (int d = 0; d < NDIMS; d++) free(z[d].cdf);
  free(zu.cdf);
  return ev;
}

static rollup_t *make(uint32_t minute_ring) {
  rollup_opts_t o = {DIMS, NDIMS, .minute_ring = minute_ring, .now_us = fake_now,
                     .now_ctx = &clock_now};
  return rollup_new(&o);
}

static void report_stats(const char *label, rollup_t *r, long n, double cpu, long rss0) {
  rollup_stats_t st;
  rollup_stats(r, &st);
  printf("%-8s add: %.0f ns/event CPU (%ld events, %.2f s)\n", label, cpu / n * 1e9, n, cpu);
  printf("%-8s memory: %.1f MiB held (rollup_stats), %.1f MiB RSS growth; %zu cells, "
         "%zu sketches, %zu values, %" PRIu64 " folded\n",
         label, st.bytes / 1048576.0, (rss_kib() - rss0) / 1024.0, st.cells, st.sketches,
         st.values, st.folded);
  printf("%-8s memory by ring: seconds %.1f MiB, minutes %.1f MiB, hours %.1f MiB\n", label,
         st.ring_bytes[0] / 1048576.0, st.ring_bytes[1] / 1048576.0, st.ring_bytes[2] / 1048576.0);
}

int main(int argc, char **argv) {
  long n = argc > 1 ? atol(argv[1]) : 1000000;
  const int64_t start = 1700000000LL / 86400 * 86400 * SEC; /* a midnight, UTC */

  /* ---- day ---- */
  ev_t *ev = gen_day(n, start);
  double c0 = cpu_s();
  uint64_t sink = 0;
  hll_t *ref = hll_new();
  for (long i = 0; i < n; i++) {
    for (int d = 0; d < NDIMS; d++)
      if (ev[i].v[d]) sink += XXH3_64bits(ev[i].v[d], strlen(ev[i].v[d]));
    hll_add_hash(ref, ev[i].user);
  }
  double ref_cpu = cpu_s() - c0;
  hll_free(ref);

  long rss0 = rss_kib();
  rollup_t *r = make(0);
  c0 = cpu_s();
  for (long i = 0; i < n; i++) {
    clock_now = ev[i].t;
    if (rollup_add(r, ev[i].t, ev[i].v, ev[i].user, ev[i].value) != 0) sink++;
  }
  double cpu = cpu_s() - c0;
  printf("reference (XXH3 of each value + 1 hll_add_hash): %.0f ns/event CPU (sink %u)\n",
         ref_cpu / n * 1e9, (unsigned)(sink & 1));
  report_stats("day", r, n, cpu, rss0);
  printf("day      ratio add / reference: %.1f\n", cpu / ref_cpu);

  /* queries at the end of the day */
  int64_t end = start + 86400 * SEC;
  rollup_totals_t t;
  c0 = cpu_s();
  rollup_totals(r, start, end, NULL, 0, &t);
  double q_tot = cpu_s() - c0;
  rollup_filter_t f = {"country", "country-0"};
  rollup_totals_t tf;
  c0 = cpu_s();
  rollup_totals(r, start, end, &f, 1, &tf);
  double q_totf = cpu_s() - c0;
  rollup_top_t top[10];
  c0 = cpu_s();
  int nt = rollup_topn(r, "page_path", ROLLUP_BY_UNIQUES, start, end, top, 10, NULL, NULL);
  double q_top = cpu_s() - c0;
  c0 = cpu_s();
  int nc = rollup_topn(r, "page_path", ROLLUP_BY_COUNT, start, end, top, 10, NULL, NULL);
  double q_topc = cpu_s() - c0;
  printf("queries: topN page_path by count 24h %.2f ms (%d rows)\n", q_topc * 1e3, nc);
  static rollup_point_t pts[1440];
  c0 = cpu_s();
  int np = rollup_timeseries(r, ROLLUP_MINUTE, start, end, NULL, 0, pts, 1440, NULL);
  double q_ts = cpu_s() - c0;
  c0 = cpu_s();
  int np2 = rollup_timeseries(r, ROLLUP_SECOND, end - 300 * SEC, end, NULL, 0, pts, 1440, NULL);
  double q_live = cpu_s() - c0;
  printf("queries: totals 24h %.2f ms (count %" PRIu64 ", uniques %" PRIu64 "); "
         "totals 24h country=country-0 %.2f ms (uniques %" PRIu64 "); topN page_path by "
         "uniques 24h %.2f ms (%d rows, first %s %" PRIu64 "); minute series 24h %.2f ms "
         "(%d points); second series 5 min %.2f ms (%d points)\n",
         q_tot * 1e3, t.count, t.uniques, q_totf * 1e3, tf.uniques, q_top * 1e3, nt,
         nt > 0 ? top[0].value : "-", nt > 0 ? top[0].uniques : 0, q_ts * 1e3, np,
         q_live * 1e3, np2);

  buf_t snap = BUF_INIT;
  c0 = cpu_s();
  rollup_serialize(r, &snap);
  double s_cpu = cpu_s() - c0;
  rollup_t *back = NULL;
  c0 = cpu_s();
  int rc = rollup_deserialize(snap.data, snap.len, &back);
  double d_cpu = cpu_s() - c0;
  printf("snapshot: %.1f MiB, serialize %.0f ms, deserialize %.0f ms (rc %d)\n",
         snap.len / 1048576.0, s_cpu * 1e3, d_cpu * 1e3, rc);
  rollup_free(back);
  buf_free(&snap);
  rollup_free(r);

  /* ---- the same day with a 1-hour minute ring: 23 of its hours folded, as in steady
   * state, which gives the long-term cost of an hour ---- */
  rss0 = rss_kib();
  r = make(60);
  c0 = cpu_s();
  for (long i = 0; i < n; i++) {
    clock_now = ev[i].t;
    rollup_add(r, ev[i].t, ev[i].v, ev[i].user, ev[i].value);
  }
  cpu = cpu_s() - c0;
  report_stats("day/1h", r, n, cpu, rss0);
  rollup_totals_t t2;
  rollup_totals(r, start, end, NULL, 0, &t2);
  printf("day/1h   totals 24h from hours: count %" PRIu64 ", uniques %" PRIu64 "\n", t2.count,
         t2.uniques);
  rollup_free(r);

  /* ---- hostile: fresh values every event, all within the last hour ---- */
  rss0 = rss_kib();
  r = make(0);
  char page[64], camp[64];
  const char *v[NDIMS] = {"pageview", page, NULL, NULL, camp, "search", "country-1",
                          "device_type-0", "browser-0", "os-0"};
  int64_t hstart = start + 86400 * SEC;
  c0 = cpu_s();
  for (long i = 0; i < n; i++) {
    snprintf(page, sizeof page, "/p/%ld", i);
    snprintf(camp, sizeof camp, "c%ld", i);
    clock_now = hstart + (int64_t)((double)i / (double)n * 3600.0 * SEC);
    rollup_add(r, clock_now, v, ev[i].user, 0);
  }
  cpu = cpu_s() - c0;
  report_stats("hostile", r, n, cpu, rss0);
  rollup_free(r);
  free(ev);
  return 0;
}
