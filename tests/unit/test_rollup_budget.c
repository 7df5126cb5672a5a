/* Unit tests for the rollup memory budget (rollup.h "Memory"): hours of high-cardinality
 * events (every event a new user, thousands of page values) from a fake clock into a
 * store whose budget is far below what its windows would hold. After every add the rings'
 * bytes stay within the budget plus ROLLUP_BUDGET_SLACK, whichever pass the store is in
 * (buckets given up down to an hour / minute / day, then down to the newest bucket, then
 * unique users, then starved), and what it still holds answers correctly: counts exact
 * over the span it reports, uniques either close to exact or ROLLUP_NA, never a number
 * that misses users; a snapshot keeps given-up users given up. */
#include <errno.h>
#include <math.h>

#include "kpi.h"
#include "rollup.h"
#include "rolluptest.h"
#include "test.h"

#define SEC 1000000LL
#define MIN (60 * SEC)
#define HOUR (60 * MIN)
/* An hour boundary (2023-11-14T22:00:00Z). */
#define T0 (1699999200LL * SEC)
#define HOURS 6
#define PAGES 3000
#define TOP_CAP (PAGES + 2)

static int64_t clock_now;
static int64_t fake_now(void *ctx) { return *(int64_t *)ctx; }

static const char *const DIMS[] = {"event", "page_path", "utm_source", "country"};

/* Event i of the load: a new user, one of pages pages, one of 50 sources. */
static int add_event(rollup_t *r, int64_t t, uint64_t i, unsigned pages) {
  char page[16], source[8];
  snprintf(page, sizeof page, "/p%u", (unsigned)(i * 7919 % pages));
  snprintf(source, sizeof source, "s%u", (unsigned)(i % 50));
  const char *v[4] = {i % 10 ? "pv" : "buy", page, source, NULL};
  return rollup_add(r, t, v, mix(i), 1.0);
}

/* The uniques of n distinct users as the store reports them: ROLLUP_NA, or within the
 * sketch's error (0.81% standard error; 4 sigma). */
static int uniques_ok(uint64_t u, uint64_t n) {
  return u == ROLLUP_NA || fabs((double)u - (double)n) <= 0.035 * (double)n + 2;
}

/* What the store must answer after hour h of the load (cnt[k] events in hour k). */
static void check_answers(rollup_t *r, const uint64_t *cnt, int h, int64_t now) {
  rollup_stats_t st;
  rollup_stats(r, &st);
  /* everything held: from the oldest hour the budget left, counts exact */
  rollup_totals_t t;
  CHECK_INT(rollup_totals(r, T0, now + SEC, NULL, 0, &t), 0);
  int64_t from = st.held_from_us[2] > T0 ? st.held_from_us[2] : T0;
  CHECK_INT(t.from_us, from);
  uint64_t want = 0;
  for (int k = 0; k <= h; k++)
    if (T0 + k * HOUR >= from) want += cnt[k];
  CHECK_INT(t.count, want);
  CHECK(uniques_ok(t.uniques, want));
  /* the newest hour, whole */
  int64_t h0 = T0 + h * HOUR;
  CHECK_INT(rollup_totals(r, h0, h0 + HOUR, NULL, 0, &t), 0);
  CHECK_INT(t.from_us, h0);
  CHECK_INT(t.count, cnt[h]);
  CHECK(uniques_ok(t.uniques, cnt[h]));
  rollup_point_t p;
  CHECK_INT(rollup_timeseries(r, ROLLUP_HOUR, h0, h0 + HOUR, NULL, 0, &p, 1, NULL), 1);
  CHECK_INT(p.retained, 1);
  CHECK_INT(p.count, cnt[h]);
  CHECK(uniques_ok(p.uniques, cnt[h]));
  /* every event of the hour sits in some page value or in "(other)" */
  static rollup_top_t rows[TOP_CAP];
  int n = rollup_topn(r, "page_path", ROLLUP_BY_COUNT, h0, h0 + HOUR, rows, TOP_CAP, NULL, NULL);
  CHECK(n > 0);
  uint64_t sum = 0;
  for (int i = 0; i < n; i++) sum += rows[i].count;
  CHECK_INT(sum, cnt[h]);
  /* a minute the store says it no longer holds reads as not retained, zeros */
  if (st.held_from_us[1] > h0) {
    CHECK_INT(rollup_timeseries(r, ROLLUP_MINUTE, h0, h0 + MIN, NULL, 0, &p, 1, NULL), 1);
    CHECK_INT(p.retained, 0);
    CHECK_INT(p.count, 0);
  }
}

/* Feeds HOURS hours of rate events a second into r (budget max): checks the bound after
 * every 7th add (and the last of each hour) and the answers after every hour. Fills *st
 * (OUT) at the end. */
static void run_load(rollup_t *r, size_t max, int rate, rollup_stats_t *st, int *was_starved) {
  static uint64_t cnt[HOURS];
  memset(cnt, 0, sizeof cnt);
  size_t worst = 0;
  uint64_t i = 0;
  *was_starved = 0;
  for (int h = 0; h < HOURS; h++) {
    for (int64_t s = 0; s < 3600; s++)
      for (int e = 0; e < rate; e++, i++) {
        int64_t t = T0 + h * HOUR + s * SEC + e * (SEC / rate);
        clock_now = t;
        if (add_event(r, t, i, PAGES) != 0) FAILF("add %llu refused", (unsigned long long)i);
        cnt[h]++;
        if (i % 7 == 0 || (s == 3599 && e == rate - 1)) {
          rollup_stats(r, st);
          if (st->budget_bytes > worst) worst = st->budget_bytes;
          if (st->starved) *was_starved = 1;
          if (st->budget_bytes > max + ROLLUP_BUDGET_SLACK) {
            FAILF("event %llu: %zu bytes held (%zu s, %zu min, %zu h; from %lld, %lld, %lld), "
                  "budget %zu, starved %d", (unsigned long long)i, st->budget_bytes,
                  st->ring_bytes[0], st->ring_bytes[1], st->ring_bytes[2],
                  (long long)(st->held_from_us[0] - T0) / SEC,
                  (long long)(st->held_from_us[1] - T0) / SEC,
                  (long long)(st->held_from_us[2] - T0) / SEC, max, st->starved);
            return;
          }
        }
      }
    check_answers(r, cnt, h, clock_now);
  }
  rollup_stats(r, st);
  CHECK_INT(st->budget_bytes, st->ring_bytes[0] + st->ring_bytes[1] + st->ring_bytes[2]);
  CHECK_INT(st->accepted, i);
  printf("  budget %zu: most held %zu, now %zu (%zu with the values); evicted %" PRIu64
         " s, %" PRIu64 " min, %" PRIu64 " h; users given up in %" PRIu64 " s, %" PRIu64
         " min, %" PRIu64 " h buckets; %" PRIu64 " values folded; starved %d (ever %d)\n",
         max, worst, st->budget_bytes, st->bytes, st->evicted[0], st->evicted[1],
         st->evicted[2], st->users_dropped[0], st->users_dropped[1], st->users_dropped[2],
         st->budget_folded, st->starved, *was_starved);
}

/* Default windows (an hour of seconds, 7 days of minutes, 90 days of hours) in the
 * smallest budget: every pass is needed. */
TEST(test_budget_bounds_the_rings) {
  clock_now = T0;
  rollup_opts_t o = {DIMS, 4, .max_bytes = ROLLUP_MIN_BYTES, .now_us = fake_now,
                     .now_ctx = &clock_now};
  rollup_t *r = rollup_new(&o);
  REQUIRE(r);
  rollup_stats_t st;
  int was_starved;
  run_load(r, ROLLUP_MIN_BYTES, 12, &st, &was_starved);
  CHECK(st.evicted[0] > 0);
  CHECK(st.evicted[1] > 0);
  CHECK(st.evicted[2] > 0); /* hours too: a day of them did not fit */
  CHECK(st.users_dropped[0] + st.users_dropped[1] + st.users_dropped[2] > 0);
  /* the hours given up are gone: an event for one is refused as too old */
  int64_t gone = st.held_from_us[2] - HOUR;
  CHECK(gone >= T0);
  CHECK_INT(add_event(r, gone, 1, PAGES), -ERANGE);
  /* a snapshot keeps what was given up */
  rollup_t *d = reload(r);
  if (d) {
    rollup_totals_t a, b;
    int64_t t0 = st.held_from_us[2];
    CHECK_INT(rollup_totals(r, t0, clock_now + SEC, NULL, 0, &a), 0);
    CHECK_INT(rollup_totals(d, t0, clock_now + SEC, NULL, 0, &b), 0);
    CHECK_INT(b.count, a.count);
    CHECK_INT(b.uniques, a.uniques);
  }
  rollup_free(d);
  rollup_free(r);
}

/* A budget the slot tables nearly fill (12,000 seconds: 947 KiB of the 1 MiB): the store
 * lives starved, still within the bound, still counting every event; a budget below the
 * slot tables is refused. */
TEST(test_budget_starved) {
  clock_now = T0;
  rollup_opts_t o = {DIMS, 4, .second_ring = 30000, .max_bytes = ROLLUP_MIN_BYTES,
                     .now_us = fake_now, .now_ctx = &clock_now};
  CHECK(rollup_new(&o) == NULL);
  o.second_ring = 12000;
  rollup_t *r = rollup_new(&o);
  REQUIRE(r);
  rollup_stats_t st;
  int was_starved;
  run_load(r, ROLLUP_MIN_BYTES, 3, &st, &was_starved);
  CHECK(was_starved);
  CHECK(st.budget_folded > 0);
  /* a bigger budget ends it: a new value counts under its own name again */
  CHECK_INT(rollup_set_max_bytes(r, 64 * ROLLUP_MIN_BYTES), 0);
  const char *v[4] = {"pv", "/after", NULL, NULL};
  CHECK_INT(rollup_add(r, clock_now, v, mix(1), 0), 0);
  rollup_stats(r, &st);
  CHECK_INT(st.starved, 0);
  rollup_filter_t f = {"page_path", "/after"};
  rollup_totals_t t;
  CHECK_INT(rollup_totals(r, clock_now - HOUR, clock_now + SEC, &f, 1, &t), 0);
  CHECK_INT(t.count, 1);
  rollup_free(r);
}

/* Given-up users stay given up: a minute whose sketches went makes its hour's uniques
 * ROLLUP_NA, in totals, timeseries and topN, while counts stay exact. */
TEST(test_given_up_users_read_na) {
  clock_now = T0;
  rollup_opts_t o = {DIMS, 4, .second_ring = 60, .minute_ring = 60, .hour_ring = 24,
                     .max_bytes = ROLLUP_MIN_BYTES, .now_us = fake_now, .now_ctx = &clock_now};
  rollup_t *r = rollup_new(&o);
  REQUIRE(r);
  /* a 60,000-user minute over 10,000 pages: its sketches alone pass 1 MiB */
  uint64_t n = 0;
  for (int64_t s = 0; s < 60; s++)
    for (int e = 0; e < 1000; e++, n++) {
      clock_now = T0 + s * SEC + e;
      CHECK_INT(add_event(r, clock_now, n, 10000), 0);
    }
  rollup_stats_t st;
  rollup_stats(r, &st);
  CHECK(st.budget_bytes <= ROLLUP_MIN_BYTES + ROLLUP_BUDGET_SLACK);
  CHECK(st.users_dropped[0] + st.users_dropped[1] + st.users_dropped[2] > 0);
  rollup_totals_t t;
  CHECK_INT(rollup_totals(r, T0, T0 + HOUR, NULL, 0, &t), 0);
  CHECK_INT(t.count, n);
  CHECK(t.uniques == ROLLUP_NA);
  rollup_point_t p;
  CHECK_INT(rollup_timeseries(r, ROLLUP_HOUR, T0, T0 + HOUR, NULL, 0, &p, 1, NULL), 1);
  CHECK_INT(p.count, n);
  CHECK(p.uniques == ROLLUP_NA);
  rollup_top_t rows[2];
  CHECK_INT(rollup_topn(r, "event", ROLLUP_BY_UNIQUES, T0, T0 + HOUR, rows, 2, NULL, NULL), 2);
  CHECK_INT(rows[0].count + rows[1].count, n);
  /* the next minute folds into the same hour: the hour stays ROLLUP_NA, never a number */
  clock_now = T0 + MIN + SEC;
  CHECK_INT(add_event(r, clock_now, n++, 10000), 0);
  clock_now = T0 + 10 * MIN;
  rollup_advance(r);
  CHECK_INT(rollup_totals(r, T0, T0 + HOUR, NULL, 0, &t), 0);
  CHECK_INT(t.count, n);
  CHECK(t.uniques == ROLLUP_NA);
  rollup_free(r);
}

/* The KPI state's rollups take the budget too. */
TEST(test_kpi_budget) {
  clock_now = T0;
  kpi_t *k = kpi_new(fake_now, &clock_now);
  REQUIRE(k);
  CHECK_INT(kpi_set_max_bytes(k, ROLLUP_MIN_BYTES - 1), -EINVAL);
  CHECK_INT(kpi_set_max_bytes(NULL, ROLLUP_MIN_BYTES), -EINVAL);
  CHECK_INT(kpi_set_max_bytes(k, 2 * ROLLUP_MIN_BYTES), 0);
  rollup_stats_t st[2];
  kpi_rollup_stats(k, st);
  CHECK_INT(st[0].max_bytes, 2 * ROLLUP_MIN_BYTES);
  CHECK_INT(st[1].max_bytes, 2 * ROLLUP_MIN_BYTES);
  CHECK_INT(kpi_rollup_bytes(k), st[0].bytes + st[1].bytes);
  kpi_free(k);
}

/* rollup_add_values counts exactly as one rollup_add_len per value: two stores, one fed
 * each way, over a load that crosses the budget (enforced between the values of one
 * call), with late, too-old and future events, absent and repeated values, give the same
 * results and the same snapshot bytes. */
TEST(test_add_values_as_single_adds) {
  static const char *const one_dim[] = {"page_path", "event"};
  for (int no_users = 0; no_users <= 1; no_users++) {
    rollup_opts_t o = {one_dim, 2, 60, 120, 24, 0, 0, 0, fake_now, &clock_now,
                       ROLLUP_MIN_BYTES, no_users};
    rollup_t *a = rollup_new(&o), *b = rollup_new(&o);
    REQUIRE(a && b);
    uint64_t x = 42;
    int enforced_mid_call = 0;
    for (uint64_t i = 0; i < 60000; i++) {
      clock_now = T0 + (int64_t)i * 200 * 1000; /* 5 events a second */
      x = mix(x);
      int64_t t = clock_now - (int64_t)(x % (20 * HOUR));
      if (x % 97 == 0) t = clock_now - 30 * HOUR;       /* too old */
      if (x % 89 == 0) t = clock_now + 10 * MIN;        /* too far ahead */
      char v[3][16];
      const char *vals[3];
      uint32_t lens[3];
      size_t n = 1 + (size_t)(x >> 20) % 3;
      for (size_t k = 0; k < n; k++) {
        uint64_t y = mix(x + k);
        int len = snprintf(v[k], sizeof v[k], "/p%u", (unsigned)(y % 5000));
        vals[k] = y % 11 ? v[k] : NULL; /* some absent */
        lens[k] = vals[k] ? (uint32_t)len : 0;
        if (k && y % 7 == 0) vals[k] = vals[0], lens[k] = lens[0]; /* a repeat */
      }
      uint64_t user = mix(x >> 3) % 5 ? mix(i) : mix(7);
      double sum = (double)(x % 13) / 4;
      rollup_stats_t before;
      if (n > 1) rollup_stats(a, &before);
      int ra = rollup_add_values(a, t, vals, lens, n, user, sum), rb = 0;
      for (size_t k = 0; k < n; k++) {
        const char *dv[2] = {vals[k], NULL};
        uint32_t dl[2] = {lens[k], 0};
        int rc = rollup_add_len(b, t, dv, dl, user, sum);
        if (rc && !rb) rb = rc;
      }
      if (ra != rb) FAILF("event %llu: add_values %d, single adds %d", (unsigned long long)i, ra, rb);
      if (n > 1) { /* the budget gave something up during a call of several values */
        rollup_stats_t after;
        rollup_stats(a, &after);
        for (int g = 0; g < 3; g++)
          if (after.evicted[g] != before.evicted[g] ||
              after.users_dropped[g] != before.users_dropped[g]) {
            enforced_mid_call++;
            break;
          }
      }
    }
    buf_t sa = BUF_INIT, sb = BUF_INIT;
    rollup_serialize(a, &sa);
    rollup_serialize(b, &sb);
    CHECK(sa.len == sb.len && memcmp(sa.data, sb.data, sa.len) == 0);
    rollup_stats_t st;
    rollup_stats(a, &st);
    CHECK(st.evicted[0] + st.evicted[1] + st.evicted[2] > 0); /* the budget was reached */
    CHECK(st.rejected_old > 0 && st.rejected_future > 0);
    CHECK(enforced_mid_call > 0);
    CHECK_INT(rollup_add_values(a, T0, NULL, NULL, 1, 0, 0), -EINVAL);
    CHECK_INT(rollup_add_values(a, T0, (const char *const[]){"x"}, (const uint32_t[]){1}, 1, 0,
                                NAN), -EINVAL);
    CHECK_INT(rollup_add_values(NULL, T0, NULL, NULL, 0, 0, 0), -EINVAL);
    buf_free(&sa);
    buf_free(&sb);
    rollup_free(a);
    rollup_free(b);
  }
}

int main(void) {
  RUN(test_budget_bounds_the_rings);
  RUN(test_budget_starved);
  RUN(test_given_up_users_read_na);
  RUN(test_kpi_budget);
  RUN(test_add_values_as_single_adds);
  return TEST_REPORT("test_rollup_budget");
}
