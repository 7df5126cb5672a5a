/* Unit tests for rollup: hand-computed counts, sums and uniques per second / minute / hour,
 * filters, topN order and ties, late and old events, ring wrap-around, rejection of
 * future and too-old events, the "(other)" cardinality bound, uniques accuracy, snapshot
 * round trips and hostile snapshots. Time comes from a fake clock. */
#include <errno.h>
#include <math.h>

#include "rollup.h"
#include "rolluptest.h"
#include "test.h"

#define SEC 1000000LL
#define MIN (60 * SEC)
#define HOUR (60 * MIN)
/* An hour boundary (2023-11-14T22:00:00Z). */
#define T0 (1699999200LL * SEC)

static int64_t clock_now;
static int64_t fake_now(void *ctx) { return *(int64_t *)ctx; }

static const char *const DIMS[] = {"event", "page_path", "utm_source", "country"};
enum { D_EVENT, D_PAGE, D_SOURCE, D_COUNTRY };

static rollup_t *make(uint32_t sec, uint32_t min, uint32_t hour, uint32_t maxv, uint32_t maxlen) {
  rollup_opts_t o = {DIMS, 4, sec, min, hour, maxv, maxlen, 0, fake_now, &clock_now};
  return rollup_new(&o);
}

static int add(rollup_t *r, int64_t t, const char *event, const char *page, const char *source,
               const char *country, uint64_t user, double sum) {
  const char *v[4] = {event, page, source, country};
  return rollup_add(r, t, v, mix(user), sum);
}

static rollup_totals_t totals(rollup_t *r, int64_t t0, int64_t t1, const char *dim,
                              const char *value) {
  rollup_filter_t f = {dim, value};
  rollup_totals_t t;
  int rc = rollup_totals(r, t0, t1, dim ? &f : NULL, dim ? 1 : 0, &t);
  if (rc != 0) printf("  rollup_totals: %d\n", rc);
  /* rollup_counts reads the same span, count and sum, without the users. */
  rollup_totals_t c;
  CHECK_INT(rollup_counts(r, t0, t1, dim ? &f : NULL, dim ? 1 : 0, &c), rc);
  if (rc == 0) {
    CHECK_INT(c.count, t.count);
    CHECK(c.sum == t.sum);
    CHECK_INT(c.from_us, t.from_us);
    CHECK_INT(c.to_us, t.to_us);
    CHECK(c.uniques == ROLLUP_NA);
  }
  return t;
}

#define CHECK_POINT(p, t, c, s, u)                                                        \
  do {                                                                                    \
    CHECK_INT((p).t_us, (t));                                                             \
    CHECK_INT((p).retained, 1);                                                           \
    CHECK_INT((p).count, (c));                                                            \
    CHECK((p).sum == (s));                                                                \
    CHECK_INT((p).uniques, (u));                                                          \
  } while (0)

TEST(test_new_and_dims) {
  CHECK(rollup_new(NULL) == NULL);
  rollup_opts_t o = {DIMS, 0};
  CHECK(rollup_new(&o) == NULL); /* no dimension */
  const char *dup[] = {"a", "b", "a"};
  o = (rollup_opts_t){dup, 3};
  CHECK(rollup_new(&o) == NULL);
  const char *empty[] = {"a", ""};
  o = (rollup_opts_t){empty, 2};
  CHECK(rollup_new(&o) == NULL);
  o = (rollup_opts_t){DIMS, 4, 10}; /* second ring below 60 */
  CHECK(rollup_new(&o) == NULL);
  o = (rollup_opts_t){DIMS, 4, 0, 0, 0, 0, 4}; /* max_value_len below 8 */
  CHECK(rollup_new(&o) == NULL);
  rollup_t *r = make(0, 0, 0, 0, 0);
  CHECK(r != NULL);
  CHECK_INT(rollup_ndims(r), 4);
  CHECK_INT(rollup_dim_index(r, "utm_source"), D_SOURCE);
  CHECK_INT(rollup_dim_index(r, "nope"), -ENOENT);
  CHECK_INT(rollup_add(r, clock_now, NULL, 1, NAN), -EINVAL);
  CHECK_INT(rollup_add(NULL, clock_now, NULL, 1, 0), -EINVAL);
  rollup_free(r);
  rollup_free(NULL);
}

/* The fixed event set most tests read: clock at T0 + 2 h.
 *   a  T0+1h+10.2s  pageview /a  google  user 1  sum 1.5
 *   b  T0+1h+10.9s  pageview /a  -       user 2  sum 2
 *   c  T0+1h+11s    click    /b  google  user 1  sum 0
 *   d  T0+1h+75s    purchase /a  bing    user 3  sum 10
 *   e  T0+30min     pageview /b  -       user 4  sum 4   (older than the second ring) */
static rollup_t *fixture(void) {
  clock_now = T0 + 2 * HOUR;
  rollup_t *r = make(0, 0, 0, 0, 0);
  int rc = 0;
  rc |= add(r, T0 + HOUR + 10 * SEC + 200000, "pageview", "/a", "google", "DE", 1, 1.5);
  rc |= add(r, T0 + HOUR + 10 * SEC + 900000, "pageview", "/a", NULL, "FR", 2, 2);
  rc |= add(r, T0 + HOUR + 11 * SEC, "click", "/b", "google", "", 1, 0);
  rc |= add(r, T0 + HOUR + 75 * SEC, "purchase", "/a", "bing", "DE", 3, 10);
  rc |= add(r, T0 + 30 * MIN, "pageview", "/b", NULL, NULL, 4, 4);
  if (rc) printf("  fixture: add failed\n");
  return r;
}

TEST(test_buckets) {
  rollup_t *r = fixture();
  rollup_point_t p[8];
  int gran = 0;
  /* seconds */
  CHECK_INT(rollup_timeseries(r, ROLLUP_SECOND, T0 + HOUR + 10 * SEC, T0 + HOUR + 12 * SEC,
                              NULL, 0, p, 8, &gran), 2);
  CHECK_INT(gran, ROLLUP_SECOND);
  CHECK_POINT(p[0], T0 + HOUR + 10 * SEC, 2, 3.5, 2);
  CHECK_POINT(p[1], T0 + HOUR + 11 * SEC, 1, 0, 1);
  /* minutes */
  CHECK_INT(rollup_timeseries(r, ROLLUP_MINUTE, T0 + HOUR, T0 + HOUR + 2 * MIN, NULL, 0, p, 8,
                              NULL), 2);
  CHECK_POINT(p[0], T0 + HOUR, 3, 3.5, 2);
  CHECK_POINT(p[1], T0 + HOUR + MIN, 1, 10, 1);
  CHECK_INT(rollup_timeseries(r, ROLLUP_MINUTE, T0 + 30 * MIN, T0 + 31 * MIN, NULL, 0, p, 8,
                              NULL), 1);
  CHECK_POINT(p[0], T0 + 30 * MIN, 1, 4, 1);
  /* hours */
  CHECK_INT(rollup_timeseries(r, ROLLUP_HOUR, T0, T0 + 2 * HOUR, NULL, 0, p, 8, NULL), 2);
  CHECK_POINT(p[0], T0, 1, 4, 1);
  CHECK_POINT(p[1], T0 + HOUR, 4, 13.5, 3);
  /* event e is older than the second ring: its second is not held */
  CHECK_INT(rollup_timeseries(r, ROLLUP_SECOND, T0 + 30 * MIN, T0 + 30 * MIN + SEC, NULL, 0, p,
                              8, NULL), 1);
  CHECK_INT(p[0].retained, 0);
  CHECK_INT(p[0].count, 0);
  /* a second-ring second without events: retained, zero */
  CHECK_INT(rollup_timeseries(r, ROLLUP_SECOND, T0 + HOUR + 12 * SEC, T0 + HOUR + 13 * SEC,
                              NULL, 0, p, 8, NULL), 1);
  CHECK_POINT(p[0], T0 + HOUR + 12 * SEC, 0, 0, 0);
  /* partial buckets at both ends count as whole points */
  CHECK_INT(rollup_timeseries(r, ROLLUP_MINUTE, T0 + HOUR + 30 * SEC, T0 + HOUR + 61 * SEC,
                              NULL, 0, p, 8, NULL), 2);
  /* cap too small, bad granularity, empty range */
  CHECK_INT(rollup_timeseries(r, ROLLUP_SECOND, T0, T0 + HOUR, NULL, 0, p, 8, NULL), -ENOSPC);
  CHECK_INT(rollup_timeseries(r, 7, T0, T0 + HOUR, NULL, 0, p, 8, NULL), -EINVAL);
  CHECK_INT(rollup_timeseries(r, ROLLUP_SECOND, T0, T0, NULL, 0, p, 8, NULL), 0);
  /* auto: 2 h do not fit 8 seconds or minutes -> hours; 2 min start inside the second ring
   * but 120 seconds do not fit 8 points -> minutes */
  CHECK_INT(rollup_timeseries(r, ROLLUP_AUTO, T0, T0 + 2 * HOUR, NULL, 0, p, 8, &gran), 2);
  CHECK_INT(gran, ROLLUP_HOUR);
  CHECK_INT(rollup_timeseries(r, ROLLUP_AUTO, T0 + HOUR, T0 + HOUR + 2 * MIN, NULL, 0, p, 8,
                              &gran), 2);
  CHECK_INT(gran, ROLLUP_MINUTE);
  CHECK_INT(rollup_timeseries(r, ROLLUP_AUTO, T0 + HOUR + 10 * SEC, T0 + HOUR + 12 * SEC, NULL,
                              0, p, 8, &gran), 2);
  CHECK_INT(gran, ROLLUP_SECOND);
  /* auto: 30 min ago is older than the second ring -> minutes */
  rollup_point_t big[64];
  CHECK_INT(rollup_timeseries(r, ROLLUP_AUTO, T0 + 30 * MIN, T0 + 31 * MIN, NULL, 0, big, 64,
                              &gran), 1);
  CHECK_INT(gran, ROLLUP_MINUTE);
  rollup_free(r);
}

TEST(test_totals) {
  rollup_t *r = fixture();
  rollup_totals_t t = totals(r, T0, T0 + 2 * HOUR, NULL, NULL);
  CHECK_INT(t.count, 5);
  CHECK(t.sum == 17.5);
  CHECK_INT(t.uniques, 4);
  CHECK_INT(t.from_us, T0);
  CHECK_INT(t.to_us, T0 + 2 * HOUR);
  /* inside the second ring: exact to the second */
  t = totals(r, T0 + HOUR + 10 * SEC, T0 + HOUR + 11 * SEC, NULL, NULL);
  CHECK_INT(t.count, 2);
  CHECK_INT(t.uniques, 2);
  CHECK_INT(t.from_us, T0 + HOUR + 10 * SEC);
  CHECK_INT(t.to_us, T0 + HOUR + 11 * SEC);
  /* a sub-second start widens to its second */
  t = totals(r, T0 + HOUR + 10 * SEC + 500000, T0 + HOUR + 12 * SEC, NULL, NULL);
  CHECK_INT(t.count, 3);
  CHECK_INT(t.from_us, T0 + HOUR + 10 * SEC);
  /* older than the second ring: widened to whole minutes */
  t = totals(r, T0 + 30 * MIN + 30 * SEC, T0 + 45 * MIN, NULL, NULL);
  CHECK_INT(t.count, 1);
  CHECK_INT(t.from_us, T0 + 30 * MIN);
  CHECK_INT(t.to_us, T0 + 45 * MIN);
  /* the future and the far past read nothing */
  t = totals(r, T0 + 3 * HOUR, T0 + 4 * HOUR, NULL, NULL);
  CHECK_INT(t.count, 0);
  t = totals(r, INT64_MIN, INT64_MAX, NULL, NULL);
  CHECK_INT(t.count, 5);
  CHECK_INT(t.uniques, 4);
  rollup_free(r);
}

TEST(test_filters) {
  rollup_t *r = fixture();
  rollup_totals_t t = totals(r, T0, T0 + 2 * HOUR, "page_path", "/b");
  CHECK_INT(t.count, 2);
  CHECK(t.sum == 4);
  CHECK_INT(t.uniques, 2); /* users 1 and 4 */
  t = totals(r, T0, T0 + 2 * HOUR, "utm_source", "google");
  CHECK_INT(t.count, 2);
  CHECK(t.sum == 1.5);
  CHECK_INT(t.uniques, 1); /* user 1 twice */
  t = totals(r, T0, T0 + 2 * HOUR, "country", "DE");
  CHECK_INT(t.count, 2);
  CHECK_INT(t.uniques, 2);
  t = totals(r, T0, T0 + 2 * HOUR, "country", "US"); /* never seen */
  CHECK_INT(t.count, 0);
  CHECK_INT(t.uniques, 0);
  /* a filter reads minutes at the finest: a second-level start widens to its minute */
  t = totals(r, T0 + HOUR + 10 * SEC, T0 + HOUR + 11 * SEC, "page_path", "/a");
  CHECK_INT(t.from_us, T0 + HOUR);
  CHECK_INT(t.to_us, T0 + HOUR + MIN);
  CHECK_INT(t.count, 2);
  CHECK_INT(t.uniques, 2);

  rollup_point_t p[4];
  rollup_filter_t f = {"page_path", "/a"};
  CHECK_INT(rollup_timeseries(r, ROLLUP_MINUTE, T0 + HOUR, T0 + HOUR + 2 * MIN, &f, 1, p, 4,
                              NULL), 2);
  CHECK_POINT(p[0], T0 + HOUR, 2, 3.5, 2);
  CHECK_POINT(p[1], T0 + HOUR + MIN, 1, 10, 1);
  /* per-second dimension cells have counts and sums but no uniques */
  CHECK_INT(rollup_timeseries(r, ROLLUP_SECOND, T0 + HOUR + 10 * SEC, T0 + HOUR + 12 * SEC, &f,
                              1, p, 4, NULL), 2);
  CHECK_INT(p[0].count, 2);
  CHECK(p[0].sum == 3.5);
  CHECK(p[0].uniques == ROLLUP_NA);
  CHECK_INT(p[1].count, 0);
  /* two filters: not answerable from per-value cells */
  rollup_filter_t two[2] = {{"page_path", "/a"}, {"country", "DE"}};
  rollup_totals_t tt;
  CHECK_INT(rollup_totals(r, T0, T0 + 2 * HOUR, two, 2, &tt), -ENOTSUP);
  CHECK_INT(rollup_timeseries(r, ROLLUP_MINUTE, T0, T0 + MIN, two, 2, p, 4, NULL), -ENOTSUP);
  rollup_filter_t bad = {"nope", "x"};
  CHECK_INT(rollup_totals(r, T0, T0 + 2 * HOUR, &bad, 1, &tt), -EINVAL);
  rollup_free(r);
}

TEST(test_topn) {
  clock_now = T0 + HOUR;
  rollup_t *r = make(0, 0, 0, 0, 0);
  /* /a: 3 events (users 1,2,3; sum 1), /b: 2 (user 1 twice; sum 5), /c: 2 (users 4,5;
   * sum 5), /d: 1 (user 6; sum 0.5) */
  int64_t t = T0 + 10 * MIN;
  add(r, t, "pv", "/c", NULL, NULL, 4, 2);
  add(r, t, "pv", "/a", NULL, NULL, 1, 0);
  add(r, t + MIN, "pv", "/b", NULL, NULL, 1, 2);
  add(r, t + MIN, "pv", "/a", NULL, NULL, 2, 1);
  add(r, t + 2 * MIN, "pv", "/d", NULL, NULL, 6, 0.5);
  add(r, t + 2 * MIN, "pv", "/b", NULL, NULL, 1, 3);
  add(r, t + 3 * MIN, "pv", "/a", NULL, NULL, 3, 0);
  add(r, t + 3 * MIN, "pv", "/c", NULL, NULL, 5, 3);
  rollup_top_t top[8];
  int64_t from, to;
  CHECK_INT(rollup_topn(r, "page_path", ROLLUP_BY_COUNT, T0, T0 + HOUR, top, 8, &from, &to), 4);
  CHECK_INT(from, T0);
  CHECK_INT(to, T0 + HOUR);
  CHECK_STR(top[0].value, "/a");
  CHECK_INT(top[0].count, 3);
  CHECK_INT(top[0].uniques, 3);
  CHECK_STR(top[1].value, "/b"); /* tie on count 2: by value string */
  CHECK_INT(top[1].uniques, 1);
  CHECK(top[1].sum == 5);
  CHECK_STR(top[2].value, "/c");
  CHECK_INT(top[2].uniques, 2);
  CHECK_STR(top[3].value, "/d");
  /* by sum: /b and /c tie at 5 -> /b first; then /a 1, /d 0.5 */
  CHECK_INT(rollup_topn(r, "page_path", ROLLUP_BY_SUM, T0, T0 + HOUR, top, 3, NULL, NULL), 3);
  CHECK_STR(top[0].value, "/b");
  CHECK_STR(top[1].value, "/c");
  CHECK_STR(top[2].value, "/a");
  CHECK_INT(top[2].uniques, 3);
  /* by uniques: /a 3, /c 2, then /b and /d tie at 1 -> /b, /d */
  CHECK_INT(rollup_topn(r, "page_path", ROLLUP_BY_UNIQUES, T0, T0 + HOUR, top, 8, NULL, NULL),
            4);
  CHECK_STR(top[0].value, "/a");
  CHECK_STR(top[1].value, "/c");
  CHECK_STR(top[2].value, "/b");
  CHECK_STR(top[3].value, "/d");
  CHECK_INT(top[3].count, 1);
  /* a sub-range: minutes 11 and 12 only -> /b 2, /a 1, /d 1 */
  CHECK_INT(rollup_topn(r, "page_path", ROLLUP_BY_COUNT, t + MIN, t + 3 * MIN, top, 8, NULL,
                        NULL), 3);
  CHECK_STR(top[0].value, "/b");
  CHECK_STR(top[1].value, "/a");
  CHECK_STR(top[2].value, "/d");
  /* no values / unknown dimension / n = 0 */
  CHECK_INT(rollup_topn(r, "utm_source", ROLLUP_BY_COUNT, T0, T0 + HOUR, top, 8, NULL, NULL), 0);
  CHECK_INT(rollup_topn(r, "nope", ROLLUP_BY_COUNT, T0, T0 + HOUR, top, 8, NULL, NULL), -ENOENT);
  CHECK_INT(rollup_topn(r, "page_path", ROLLUP_BY_COUNT, T0, T0 + HOUR, top, 0, NULL, NULL), 0);
  rollup_free(r);
}

TEST(test_late_and_old) {
  clock_now = T0 + 2 * HOUR;
  rollup_t *r = make(0, 0, 0, 0, 0);
  CHECK_INT(add(r, T0 + 2 * HOUR - 10 * SEC, "pv", "/x", NULL, NULL, 1, 1), 0);
  /* late by 20 minutes: still in the second ring */
  CHECK_INT(add(r, T0 + 2 * HOUR - 20 * MIN, "pv", "/x", NULL, NULL, 2, 1), 0);
  /* 3 hours old: minutes and hours only */
  CHECK_INT(add(r, T0 - HOUR + 5 * SEC, "pv", "/x", NULL, NULL, 3, 1), 0);
  rollup_point_t p[2];
  CHECK_INT(rollup_timeseries(r, ROLLUP_SECOND, T0 + 2 * HOUR - 20 * MIN,
                              T0 + 2 * HOUR - 20 * MIN + SEC, NULL, 0, p, 2, NULL), 1);
  CHECK_POINT(p[0], T0 + 2 * HOUR - 20 * MIN, 1, 1, 1);
  CHECK_INT(rollup_timeseries(r, ROLLUP_SECOND, T0 - HOUR + 5 * SEC, T0 - HOUR + 6 * SEC, NULL,
                              0, p, 2, NULL), 1);
  CHECK_INT(p[0].retained, 0);
  CHECK_INT(rollup_timeseries(r, ROLLUP_MINUTE, T0 - HOUR, T0 - HOUR + MIN, NULL, 0, p, 2, NULL),
            1);
  CHECK_POINT(p[0], T0 - HOUR, 1, 1, 1);
  CHECK_INT(rollup_timeseries(r, ROLLUP_HOUR, T0 - HOUR, T0, NULL, 0, p, 2, NULL), 1);
  CHECK_POINT(p[0], T0 - HOUR, 1, 1, 1);
  rollup_totals_t t = totals(r, T0 - 2 * HOUR, T0 + 2 * HOUR, "page_path", "/x");
  CHECK_INT(t.count, 3);
  CHECK_INT(t.uniques, 3);
  rollup_free(r);
}

TEST(test_wrap_and_reject) {
  /* small rings: 60 s of seconds, 60 min of minutes, 24 h of hours */
  clock_now = T0;
  rollup_t *r = make(60, 60, 24, 0, 0);
  CHECK_INT(add(r, T0 - 5 * SEC, "pv", "/x", NULL, NULL, 1, 1), 0);
  CHECK_INT(add(r, T0 - 5 * SEC, "pv", "/y", NULL, NULL, 2, 1), 0);
  rollup_point_t p[2];
  CHECK_INT(rollup_timeseries(r, ROLLUP_SECOND, T0 - 5 * SEC, T0 - 4 * SEC, NULL, 0, p, 2, NULL),
            1);
  CHECK_POINT(p[0], T0 - 5 * SEC, 2, 2, 2);
  /* the clock passes the second ring: that second is gone, its minute remains */
  clock_now = T0 + 55 * SEC + 1;
  rollup_advance(r); /* queries see the windows as of the last add or advance */
  CHECK_INT(rollup_timeseries(r, ROLLUP_SECOND, T0 - 5 * SEC, T0 - 4 * SEC, NULL, 0, p, 2, NULL),
            1);
  CHECK_INT(p[0].retained, 0);
  CHECK_INT(p[0].count, 0);
  CHECK_INT(rollup_timeseries(r, ROLLUP_MINUTE, T0 - MIN, T0, NULL, 0, p, 2, NULL), 1);
  CHECK_POINT(p[0], T0 - MIN, 2, 2, 2);
  /* T0+55s reuses T0-5s's slot: only the new event is in it */
  CHECK_INT(add(r, T0 + 55 * SEC, "pv", "/z", NULL, NULL, 3, 7), 0);
  CHECK_INT(rollup_timeseries(r, ROLLUP_SECOND, T0 + 55 * SEC, T0 + 56 * SEC, NULL, 0, p, 2,
                              NULL), 1);
  CHECK_POINT(p[0], T0 + 55 * SEC, 1, 7, 1);
  /* a late event for a second that left the ring: minutes and hours only */
  CHECK_INT(add(r, T0 - 5 * SEC, "pv", "/x", NULL, NULL, 4, 1), 0);
  CHECK_INT(rollup_timeseries(r, ROLLUP_MINUTE, T0 - MIN, T0, NULL, 0, p, 2, NULL), 1);
  CHECK_POINT(p[0], T0 - MIN, 3, 3, 3);
  /* two hours on: the minute is gone, the hour remains; the filter reads hours */
  clock_now = T0 + 2 * HOUR;
  rollup_advance(r);
  CHECK_INT(rollup_timeseries(r, ROLLUP_MINUTE, T0 - MIN, T0, NULL, 0, p, 2, NULL), 1);
  CHECK_INT(p[0].retained, 0);
  rollup_totals_t t = totals(r, T0 - HOUR, T0, "page_path", "/x");
  CHECK_INT(t.count, 2);
  CHECK_INT(t.uniques, 2);
  CHECK_INT(t.from_us, T0 - HOUR);
  t = totals(r, T0 - HOUR, T0 + 2 * HOUR, NULL, NULL);
  CHECK_INT(t.count, 4);
  /* future beyond the 5-minute skew, and older than the hour ring: rejected */
  CHECK_INT(add(r, clock_now + 5 * MIN, "pv", NULL, NULL, NULL, 5, 1), 0);
  CHECK_INT(add(r, clock_now + 5 * MIN + 1, "pv", NULL, NULL, NULL, 5, 1), -ERANGE);
  CHECK_INT(add(r, INT64_MAX, "pv", NULL, NULL, NULL, 5, 1), -ERANGE);
  CHECK_INT(add(r, clock_now - 24 * HOUR, "pv", NULL, NULL, NULL, 5, 1), -ERANGE);
  CHECK_INT(add(r, INT64_MIN, "pv", NULL, NULL, NULL, 5, 1), -ERANGE);
  CHECK_INT(add(r, clock_now - 23 * HOUR, "pv", NULL, NULL, NULL, 5, 1), 0);
  rollup_stats_t st;
  rollup_stats(r, &st);
  CHECK_INT(st.accepted, 6);
  CHECK_INT(st.rejected_future, 2);
  CHECK_INT(st.rejected_old, 2);
  /* the accepted future event counts, and moved hw: the clock never moves it back */
  t = totals(r, clock_now, clock_now + HOUR, NULL, NULL);
  CHECK_INT(t.count, 1);
  rollup_free(r);
}

/* Hour cells take their users from the minutes leaving the minute ring: every answer about
 * hours is the same before and after, and old events add to the hours directly. */
static void hour_answers(rollup_t *r, buf_t *b) {
  rollup_point_t p[4];
  rollup_filter_t f = {"page_path", "/a"};
  int n = rollup_timeseries(r, ROLLUP_HOUR, T0, T0 + 3 * HOUR, NULL, 0, p, 4, NULL);
  for (int i = 0; i < n; i++) buf_printf(b, "%" PRIu64 "/%" PRIu64 " ", p[i].count, p[i].uniques);
  n = rollup_timeseries(r, ROLLUP_HOUR, T0, T0 + 3 * HOUR, &f, 1, p, 4, NULL);
  for (int i = 0; i < n; i++) buf_printf(b, "%" PRIu64 "/%" PRIu64 " ", p[i].count, p[i].uniques);
  rollup_totals_t t = totals(r, T0, T0 + 3 * HOUR, "page_path", "/b");
  buf_printf(b, "| %" PRIu64 "/%" PRIu64 " |", t.count, t.uniques);
  rollup_top_t top[4];
  n = rollup_topn(r, "page_path", ROLLUP_BY_UNIQUES, T0, T0 + 3 * HOUR, top, 4, NULL, NULL);
  for (int i = 0; i < n; i++) buf_printf(b, " %s %" PRIu64, top[i].value, top[i].uniques);
}

TEST(test_fold_minutes_into_hours) {
  clock_now = T0;
  rollup_t *r = make(60, 60, 24, 0, 0);
  /* 3 hours: /a gets users h..h+29 every 10 minutes of hour h, /b users 100..699 each hour
   * (unions stay below ~1000 users, where sketches and query unions are exact) */
  for (int64_t m = 0; m < 180; m++) {
    clock_now = T0 + m * MIN;
    for (uint64_t u = 0; u < 30; u++)
      if (m % 10 == 0) add(r, clock_now, "pv", "/a", NULL, NULL, u + (uint64_t)m / 60, 1);
    for (uint64_t u = 0; u < 10; u++)
      add(r, clock_now + (int64_t)u * SEC, "pv", "/b", NULL, NULL, 100 + (m % 60) * 10 + u, 1);
  }
  clock_now = T0 + 3 * HOUR - 1;
  rollup_advance(r);
  buf_t before = BUF_INIT, after = BUF_INIT;
  hour_answers(r, &before);
  /* before the fold, exactly */
  rollup_point_t p[3];
  rollup_filter_t fb = {"page_path", "/b"};
  CHECK_INT(rollup_timeseries(r, ROLLUP_HOUR, T0, T0 + 3 * HOUR, &fb, 1, p, 3, NULL), 3);
  CHECK_POINT(p[0], T0, 600, 600, 600);
  CHECK_POINT(p[2], T0 + 2 * HOUR, 600, 600, 600);
  CHECK_INT(totals(r, T0, T0 + 3 * HOUR, NULL, NULL).uniques, 632);
  CHECK_INT(totals(r, T0, T0 + HOUR, "page_path", "/a").uniques, 30);
  CHECK_INT(totals(r, T0, T0 + 3 * HOUR, "page_path", "/a").uniques, 32);
  /* the clock moves on by more than the minute ring: everything folds */
  clock_now = T0 + 5 * HOUR;
  rollup_advance(r);
  hour_answers(r, &after);
  CHECK(before.len > 20);
  CHECK_STR(after.data, before.data);
  CHECK_INT(rollup_timeseries(r, ROLLUP_MINUTE, T0, T0 + MIN, NULL, 0, p, 3, NULL), 1);
  CHECK_INT(p[0].retained, 0);
  /* an old event now goes to its hour directly, users included */
  CHECK_INT(add(r, T0 + 5 * MIN, "pv", "/a", NULL, NULL, 999, 1), 0);
  CHECK_INT(totals(r, T0, T0 + HOUR, "page_path", "/a").uniques, 31);
  /* and survives a snapshot */
  buf_t s = BUF_INIT;
  rollup_serialize(r, &s);
  rollup_t *d = NULL;
  CHECK_INT(rollup_deserialize(s.data, s.len, &d), 0);
  if (d) CHECK_INT(totals(d, T0, T0 + HOUR, "page_path", "/a").uniques, 31);
  rollup_free(d);
  buf_free(&s);
  buf_free(&before);
  buf_free(&after);
  rollup_free(r);
}

TEST(test_other_and_truncation) {
  clock_now = T0 + HOUR;
  rollup_t *r = make(0, 0, 0, 3, 8);
  const char *vals[] = {"v1", "v2", "v1", "v3", "v4", "v5", "v4", ROLLUP_OTHER};
  for (int i = 0; i < 8; i++) add(r, T0 + i * SEC, "pv", NULL, vals[i], NULL, (uint64_t)i, 1);
  rollup_stats_t st;
  rollup_stats(r, &st);
  CHECK_INT(st.folded, 3); /* v4, v5, v4 */
  rollup_top_t top[8];
  CHECK_INT(rollup_topn(r, "utm_source", ROLLUP_BY_COUNT, T0, T0 + HOUR, top, 8, NULL, NULL), 4);
  CHECK_STR(top[0].value, ROLLUP_OTHER); /* v4 v5 v4 + the literal "(other)" */
  CHECK_INT(top[0].count, 4);
  CHECK_STR(top[1].value, "v1");
  CHECK_INT(top[1].count, 2);
  CHECK_STR(top[2].value, "v2");
  CHECK_STR(top[3].value, "v3");
  CHECK_INT(totals(r, T0, T0 + HOUR, "utm_source", "v5").count, 0);
  CHECK_INT(totals(r, T0, T0 + HOUR, "utm_source", ROLLUP_OTHER).count, 4);
  /* values are cut to 8 bytes, at a UTF-8 boundary; a filter matches the same way */
  add(r, T0, "pv", "abcdefghij", NULL, NULL, 1, 1);
  add(r, T0, "pv", "abcdefgh-other", NULL, NULL, 2, 1);
  add(r, T0, "pv", "abcdefg\xc3\xa9", NULL, NULL, 3, 1); /* é would straddle byte 8 */
  CHECK_INT(rollup_topn(r, "page_path", ROLLUP_BY_COUNT, T0, T0 + HOUR, top, 8, NULL, NULL), 2);
  CHECK_STR(top[0].value, "abcdefgh");
  CHECK_INT(top[0].count, 2);
  CHECK_STR(top[1].value, "abcdefg");
  CHECK_INT(totals(r, T0, T0 + HOUR, "page_path", "abcdefghXYZ").count, 2);
  /* absent values: NULL and "" */
  add(r, T0, "", "", NULL, NULL, 9, 1);
  CHECK_INT(totals(r, T0, T0 + HOUR, "event", "").count, 0);
  CHECK_INT(totals(r, T0, T0 + HOUR, NULL, NULL).count, 12);
  rollup_free(r);
}

/* Interning compares a value with the one its dimension's memo holds for it before it
 * hashes: a run of values that extend, shorten or repeat one another, values cut to the length
 * bound (then equal to the value held, or not), values past the cardinality bound right
 * after a held one, and "(other)" itself all count where a fresh lookup puts them. */
TEST(test_repeated_values) {
  clock_now = T0 + HOUR;
  rollup_t *r = make(0, 0, 0, 5, 8);
  const char *seq[] = {"ab",      "abc",      "ab",           "ab",      "abcdefgh", "abcdefghij",
                       "abcdefgh", "abcdefg", "abcdefg\xc3\xa9", "abcdefg", "x",        "y",
                       "y",        "abc",     "",             "abc",     ROLLUP_OTHER, ROLLUP_OTHER};
  for (size_t i = 0; i < sizeof seq / sizeof *seq; i++)
    add(r, T0 + (int64_t)i * SEC, "pv", seq[i], NULL, NULL, i, 1);
  /* "abcdefghij" counts as "abcdefgh", "abcdefgé" as "abcdefg" (é would straddle byte 8);
   * "x" is the 5th value, the last one held, so both "y" fold into "(other)"; "" is no
   * value */
  static const struct { const char *value; uint64_t count; } want[] = {
      {ROLLUP_OTHER, 4}, {"ab", 3}, {"abc", 3}, {"abcdefg", 3}, {"abcdefgh", 3}, {"x", 1}};
  rollup_top_t top[10];
  int n = rollup_topn(r, "page_path", ROLLUP_BY_COUNT, T0, T0 + HOUR, top, 10, NULL, NULL);
  CHECK_INT(n, 6);
  for (size_t i = 0; i < sizeof want / sizeof *want && (int)i < n; i++) {
    CHECK_STR(top[i].value, want[i].value);
    CHECK_INT(top[i].count, want[i].count);
  }
  rollup_stats_t st;
  rollup_stats(r, &st);
  CHECK_INT(st.folded, 2);
  CHECK_INT(totals(r, T0, T0 + HOUR, NULL, NULL).count, 18);
  /* rollup_add_len, given each value's length, stores exactly what rollup_add does */
  rollup_t *rl = make(0, 0, 0, 5, 8);
  for (size_t i = 0; i < sizeof seq / sizeof *seq; i++) {
    const char *v[4] = {"pv", seq[i], NULL, NULL};
    const uint32_t lens[4] = {2, (uint32_t)strlen(seq[i]), 0, 0};
    CHECK_INT(rollup_add_len(rl, T0 + (int64_t)i * SEC, v, lens, mix(i), 1), 0);
  }
  buf_t a = BUF_INIT, b = BUF_INIT;
  rollup_serialize(r, &a);
  rollup_serialize(rl, &b);
  CHECK(a.len == b.len && memcmp(a.data, b.data, a.len) == 0);
  buf_free(&a);
  buf_free(&b);
  rollup_free(rl);
  rollup_free(r);
}

/* Values that alternate, some sharing a memo slot (the same length and last byte:
 * "a0z" ... "a9z"), others in slots of their own, each count where a fresh lookup puts them
 * whichever value the memo held before. */
TEST(test_alternating_values) {
  clock_now = T0 + HOUR;
  rollup_t *r = make(0, 0, 0, 0, 0);
  char vals[16][16];
  for (int i = 0; i < 10; i++) snprintf(vals[i], sizeof vals[i], "a%dz", i);
  static const char *const other[6] = {"start", "end", "bounce", "converted", "page", "p"};
  for (int i = 0; i < 6; i++) snprintf(vals[10 + i], sizeof vals[10 + i], "%s", other[i]);
  uint64_t want[16] = {0};
  for (int i = 0; i < 600; i++) {
    int k = i % 3 == 0 ? 10 + i / 3 % 6 : (i * 7 + i / 16) % 10; /* (runs of one value too) */
    add(r, T0 + (int64_t)i * SEC, "pv", vals[k], NULL, NULL, (uint64_t)i, 1);
    want[k]++;
  }
  rollup_top_t top[20];
  int n = rollup_topn(r, "page_path", ROLLUP_BY_COUNT, T0, T0 + HOUR, top, 20, NULL, NULL);
  CHECK_INT(n, 16);
  for (int i = 0; i < n; i++)
    for (int k = 0; k < 16; k++)
      if (!strcmp(top[i].value, vals[k])) CHECK_INT(top[i].count, want[k]);
  rollup_free(r);
}

/* Values of every length up to past 16 bytes that differ from one another in one byte
 * (at every position) are told apart: the short values' hash and comparisons look at
 * every byte. Each is added twice, never right after itself. */
TEST(test_values_one_byte_apart) {
  clock_now = T0 + HOUR;
  rollup_t *r = make(0, 0, 0, 0, 0);
  char vals[300][24];
  size_t nv = 0;
  for (size_t len = 1; len <= 20; len++)
    for (size_t at = 0; at <= len; at++) { /* at == len: the unchanged value */
      memset(vals[nv], 'a', len);
      vals[nv][len] = 0;
      if (at < len) vals[nv][at] = 'b';
      nv++;
    }
  for (int pass = 0; pass < 2; pass++)
    for (size_t i = 0; i < nv; i++)
      add(r, T0 + (int64_t)(pass * nv + i) * SEC, "pv", vals[pass ? i * 7 % nv : i], NULL, NULL,
          i, 1); /* (nv = 230: a second pass in another order) */
  rollup_top_t top[300];
  int n = rollup_topn(r, "page_path", ROLLUP_BY_COUNT, T0, T0 + HOUR, top, 300, NULL, NULL);
  CHECK_INT(n, (int)nv);
  for (int i = 0; i < n; i++) CHECK_INT(top[i].count, 2);
  rollup_free(r);
}

TEST(test_uniques) {
  clock_now = T0 + HOUR;
  rollup_t *r = make(0, 0, 0, 0, 0);
  /* small: 50 users x 3 events, exact */
  for (int rep = 0; rep < 3; rep++)
    for (uint64_t u = 0; u < 50; u++) add(r, T0 + (int64_t)u * SEC, "pv", "/s", NULL, NULL, u, 0);
  CHECK_INT(totals(r, T0, T0 + HOUR, NULL, NULL).uniques, 50);
  CHECK_INT(totals(r, T0, T0 + HOUR, "page_path", "/s").uniques, 50);
  CHECK_INT(totals(r, T0, T0 + HOUR, NULL, NULL).count, 150);
  /* 100k users over 50 minutes, each twice: within 2% at every granularity mix */
  const uint64_t n = 100000;
  for (int rep = 0; rep < 2; rep++)
    for (uint64_t u = 0; u < n; u++)
      add(r, T0 + 5 * MIN + (int64_t)(u % 3000) * SEC, "pv", "/big", NULL, NULL, 1000 + u, 0);
  uint64_t want = n + 50;
  rollup_totals_t t = totals(r, T0, T0 + HOUR, NULL, NULL);
  double err = fabs((double)t.uniques - (double)want) / (double)want;
  printf("  uniques: %" PRIu64 " of %" PRIu64 " (%.3f%%)\n", t.uniques, want, 100 * err);
  CHECK(err < 0.02);
  /* seconds 7..59, then minutes: users whose u % 3000 >= 7, 100000 - 7 x 34 of them */
  t = totals(r, T0 + 5 * MIN + 7 * SEC, T0 + 55 * MIN, NULL, NULL);
  err = fabs((double)t.uniques - 99762.0) / 99762.0;
  CHECK(err < 0.02);
  t = totals(r, T0, T0 + HOUR, "page_path", "/big");
  err = fabs((double)t.uniques - (double)n) / (double)n;
  CHECK(err < 0.02);
  CHECK_INT(t.count, 2 * n);
  rollup_free(r);
}

/* Every query the tests make, printed to one buffer: equal buffers, equal answers. */
static void dump(rollup_t *r, buf_t *b) {
  static const int grans[] = {ROLLUP_SECOND, ROLLUP_MINUTE, ROLLUP_HOUR};
  static const rollup_filter_t fs[] = {{"page_path", "/a"}, {"utm_source", "google"}};
  rollup_point_t p[200];
  for (int g = 0; g < 3; g++)
    for (int f = -1; f < 2; f++) {
      int64_t w = grans[g] * SEC;
      int n = rollup_timeseries(r, grans[g], T0 - 100 * w, T0 + 100 * w, f < 0 ? NULL : &fs[f],
                                f < 0 ? 0 : 1, p, 200, NULL);
      buf_printf(b, "ts %d %d: %d\n", g, f, n);
      for (int i = 0; i < n; i++)
        buf_printf(b, " %" PRId64 " %d %" PRIu64 " %.17g %" PRIu64 "\n", p[i].t_us,
                   p[i].retained, p[i].count, p[i].sum, p[i].uniques);
    }
  for (int f = -1; f < 2; f++) {
    rollup_totals_t t;
    rollup_totals(r, T0 - 2 * HOUR, T0 + 2 * HOUR, f < 0 ? NULL : &fs[f], f < 0 ? 0 : 1, &t);
    buf_printf(b, "tot %" PRId64 " %" PRId64 " %" PRIu64 " %.17g %" PRIu64 "\n", t.from_us,
               t.to_us, t.count, t.sum, t.uniques);
  }
  for (size_t d = 0; d < 4; d++)
    for (int by = 0; by < 3; by++) {
      rollup_top_t top[10];
      int n = rollup_topn(r, DIMS[d], (rollup_metric_t)by, T0 - 2 * HOUR, T0 + 2 * HOUR, top, 10,
                          NULL, NULL);
      buf_printf(b, "top %zu %d: %d\n", d, by, n);
      for (int i = 0; i < n; i++)
        buf_printf(b, " %s %" PRIu64 " %.17g %" PRIu64 "\n", top[i].value, top[i].count,
                   top[i].sum, top[i].uniques);
    }
  rollup_stats_t st;
  rollup_stats(r, &st);
  buf_printf(b, "stats %" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64 " %zu %zu %zu\n",
             st.accepted, st.rejected_future, st.rejected_old, st.folded, st.values, st.cells,
             st.sketches);
}

/* A store with every kind of content: all rings, inline and sketch users (one dense),
 * folded values, rejections, negative and fractional sums. */
static rollup_t *varied(void) {
  clock_now = T0;
  rollup_t *r = make(0, 0, 0, 20, 0);
  static const char *pages[] = {"/a", "/b", "/c", "/d"};
  static const char *srcs[] = {"google", "bing", NULL, ""};
  for (uint64_t i = 0; i < 300; i++) {
    char c[16];
    snprintf(c, sizeof c, "C%02u", (unsigned)(i % 25));
    add(r, T0 - (int64_t)(i * 37) * SEC, i % 7 ? "pv" : "buy", pages[i % 4], srcs[i % 4], c,
        i % 40, i % 7 ? 0 : 9.99 - (double)i / 3);
  }
  for (uint64_t u = 0; u < 5000; u++) add(r, T0 - 90 * MIN, "pv", "/a", NULL, NULL, u, 0);
  add(r, T0 + HOUR, "pv", NULL, NULL, NULL, 1, 0); /* future: rejected */
  return r;
}

/* A store without users (the process stage's sessions): counts and sums as usual, no
 * sketch anywhere (minutes, their hours, late events straight to hours), uniques NA; and a
 * store that had users drops a cell's sketch when the cell next takes an event. */
TEST(test_no_users) {
  clock_now = T0 + 3 * HOUR;
  rollup_opts_t o = {DIMS, 4, 0, 0, 0, 0, 0, 0, fake_now, &clock_now, 0, 1};
  rollup_t *r = rollup_new(&o), *w = make(0, 0, 0, 0, 0);
  for (uint64_t u = 0; u < 3000; u++) {
    int64_t t = T0 + (int64_t)(u % 7200) * SEC; /* two hours: minutes fold into hours */
    CHECK_INT(add(r, t, "start", "/p", "g", "PL", u, 1.5), 0);
    CHECK_INT(add(w, t, "start", "/p", "g", "PL", u, 1.5), 0);
  }
  clock_now = T0 + 200 * HOUR; /* minutes gone, hours remain: a late event goes to an hour */
  CHECK_INT(add(r, T0 + 30 * MIN, "start", "/p", NULL, NULL, 99999, 0), 0);
  CHECK_INT(add(w, T0 + 30 * MIN, "start", "/p", NULL, NULL, 99999, 0), 0);
  rollup_stats_t st, sw;
  rollup_stats(r, &st);
  rollup_stats(w, &sw);
  CHECK_INT(st.sketches, 0);
  CHECK(sw.sketches > 0);
  CHECK(st.bytes < sw.bytes);
  rollup_totals_t a = totals(r, T0, T0 + 2 * HOUR, NULL, NULL);
  rollup_totals_t b = totals(w, T0, T0 + 2 * HOUR, NULL, NULL);
  CHECK_INT(a.count, 3001);
  CHECK_INT(a.count, b.count);
  CHECK(a.sum == b.sum);
  CHECK(a.uniques == ROLLUP_NA);
  CHECK(b.uniques > 2900 && b.uniques < 3100);
  CHECK(totals(r, T0, T0 + 2 * HOUR, "country", "PL").uniques == ROLLUP_NA);
  rollup_top_t top[2];
  CHECK_INT(rollup_topn(r, "page_path", ROLLUP_BY_UNIQUES, T0, T0 + 2 * HOUR, top, 2, NULL, NULL),
            -ENOTSUP);
  CHECK_INT(rollup_topn(r, "page_path", ROLLUP_BY_COUNT, T0, T0 + 2 * HOUR, top, 2, NULL, NULL), 1);
  CHECK_INT(top[0].count, 3001);
  CHECK(top[0].uniques == ROLLUP_NA);
  /* switching users off later: a cell that takes another event drops its sketch */
  rollup_set_no_users(w, 1);
  CHECK_INT(add(w, T0 + 30 * MIN, "start", "/p", "g", "PL", 5, 0), 0);
  rollup_stats_t sw2;
  rollup_stats(w, &sw2);
  CHECK(sw2.sketches < sw.sketches);
  CHECK(sw2.budget_bytes < sw.budget_bytes);
  CHECK(totals(w, T0, T0 + HOUR, NULL, NULL).uniques == ROLLUP_NA);
  rollup_free(r);
  rollup_free(w);
}

TEST(test_snapshot_roundtrip) {
  rollup_t *r = varied();
  buf_t s1 = BUF_INIT, s2 = BUF_INIT, q1 = BUF_INIT, q2 = BUF_INIT;
  size_t n = rollup_serialize(r, &s1);
  CHECK_INT(n, s1.len);
  printf("  snapshot: %zu bytes\n", n);
  rollup_t *d = NULL;
  CHECK_INT(rollup_deserialize(s1.data, s1.len, &d), 0);
  if (d) {
    rollup_set_clock(d, fake_now, &clock_now);
    dump(r, &q1);
    dump(d, &q2);
    CHECK(q1.len > 1000);
    CHECK(q1.len == q2.len && memcmp(q1.data, q2.data, q1.len) == 0);
    rollup_serialize(d, &s2);
    CHECK(s1.len == s2.len && memcmp(s1.data, s2.data, s1.len) == 0);
    /* the copy keeps working like the original */
    CHECK_INT(add(r, T0, "pv", "/new", "x", NULL, 77, 1), 0);
    CHECK_INT(add(d, T0, "pv", "/new", "x", NULL, 77, 1), 0);
    buf_reset(&q1);
    buf_reset(&q2);
    dump(r, &q1);
    dump(d, &q2);
    CHECK(q1.len == q2.len && memcmp(q1.data, q2.data, q1.len) == 0);
  }
  rollup_free(d);
  /* an empty store */
  clock_now = T0;
  rollup_t *e = make(0, 0, 0, 0, 0);
  buf_reset(&s1);
  buf_reset(&s2);
  rollup_serialize(e, &s1);
  CHECK_INT(rollup_deserialize(s1.data, s1.len, &d), 0);
  if (d) rollup_serialize(d, &s2);
  CHECK(s1.len == s2.len && memcmp(s1.data, s2.data, s1.len) == 0);
  rollup_free(d);
  rollup_free(e);
  rollup_free(r);
  buf_free(&s1);
  buf_free(&s2);
  buf_free(&q1);
  buf_free(&q2);
}

/* Hours take their events from their minutes in batches (a minute is added into its hour
 * once it is no longer among the newest few), and a late event for a minute already
 * added goes to the hour directly: whatever the arrival order, every hour and every day
 * answers exactly what its events say. Ground truth is kept here; unions stay below
 * ~1000 users (exact). */
TEST(test_hours_exact_any_order) {
  enum { NEV = 12000, NPAGE = 3, NH = 72, NU = 400 };
  static const char *pages[NPAGE] = {"/a", "/b", "/c"};
  const int64_t D0 = T0 - T0 % (24 * HOUR); /* a day boundary */
  clock_now = D0 + NH * HOUR;
  rollup_t *r = make(60, 240, 96, 0, 0);
  static uint64_t count[NH][NPAGE + 1];
  static double sum[NH][NPAGE + 1];
  static unsigned char seen[NH][NPAGE + 1][NU];
  memset(count, 0, sizeof count);
  memset(sum, 0, sizeof sum);
  memset(seen, 0, sizeof seen);
  uint64_t rng = 12345;
  for (int i = 0; i < NEV; i++) {
    rng = mix(rng);
    /* mostly in time order, one in four anywhere in the three days */
    int64_t t = (rng & 3) ? D0 + (int64_t)i * (NH * HOUR / NEV)
                          : D0 + (int64_t)((rng >> 8) % (uint64_t)(NH * HOUR));
    int h = (int)((t - D0) / HOUR), pg = (int)((rng >> 4) % NPAGE);
    uint64_t user = (rng >> 20) % NU;
    double v = (double)(rng >> 40 & 7);
    CHECK_INT(add(r, t, "pv", pages[pg], NULL, NULL, user, v), 0);
    for (int k = 0; k < 2; k++) {
      int c = k ? pg + 1 : 0;
      count[h][c]++;
      sum[h][c] += v;
      seen[h][c][user] = 1;
    }
  }
  for (int round = 0; round < 2; round++) {
    static rollup_point_t p[NH];
    int bad = 0;
    for (int c = 0; c <= NPAGE; c++) {
      rollup_filter_t f = {"page_path", c ? pages[c - 1] : ""};
      CHECK_INT(rollup_timeseries(r, ROLLUP_HOUR, D0, D0 + NH * HOUR, &f, c ? 1 : 0, p, NH, NULL),
                NH);
      for (int h = 0; h < NH; h++) {
        uint64_t u = 0;
        for (int k = 0; k < NU; k++) u += seen[h][c][k];
        if (p[h].count != count[h][c] || p[h].sum != sum[h][c] || p[h].uniques != u) bad++;
      }
      for (int day = 0; day < NH / 24; day++) { /* whole days */
        uint64_t n = 0, u = 0;
        for (int h = day * 24; h < day * 24 + 24; h++) n += count[h][c];
        for (int k = 0; k < NU; k++) {
          int any = 0;
          for (int h = day * 24; h < day * 24 + 24; h++) any |= seen[h][c][k];
          u += (uint64_t)any;
        }
        rollup_totals_t t = totals(r, D0 + day * 24 * HOUR, D0 + (day + 1) * 24 * HOUR,
                                   c ? "page_path" : NULL, c ? pages[c - 1] : NULL);
        if (t.count != n || t.uniques != u) bad++;
      }
    }
    CHECK_INT(bad, 0);
    /* the same through a snapshot, and once the minutes have left their ring */
    buf_t s = BUF_INIT;
    rollup_serialize(r, &s);
    rollup_t *d = NULL;
    CHECK_INT(rollup_deserialize(s.data, s.len, &d), 0);
    buf_free(&s);
    if (!d) break;
    rollup_set_clock(d, fake_now, &clock_now);
    rollup_free(r);
    r = d;
    clock_now = D0 + (NH + 5) * HOUR;
    rollup_advance(r);
  }
  rollup_free(r);
}

/* A version-1 snapshot (hours held the counts of their minutes but not yet their users)
 * still loads and answers the same: made by the version-1 code from events at T0 (users
 * 1, 2 on /a), T0 + 1 min (users 2, 3 on /a), T0 + 5 min (user 4 on /b, 2.0) and
 * T0 - 2 h (user 5 on /b, 4.0), clock at T0 + 30 min, rings 60/60/24. */
TEST(test_snapshot_version1) {
  static const char v1[] =
      "\x53\x4c\x52\x55\x01\x3c\x3c\x18\x90\x4e\x80\x02\x80\xc6\x86\x8f"
      "\x01\x00\x0a\xb9\x53\x24\x0a\x06\x00\x06\x00\x00\x00\x01\x09\x70"
      "\x61\x67\x65\x5f\x70\x61\x74\x68\x03\x07\x28\x6f\x74\x68\x65\x72"
      "\x29\x02\x2f\x61\x02\x2f\x62\x00\x03\x08\x55\xb0\x01\x00\x00\x00"
      "\x00\x02\x00\x02\x00\x00\x00\x00\x00\x00\x00\x40\x02\x0d\x01\x01"
      "\x0e\x02\xc1\xad\x94\xc4\x04\x80\x88\x9c\x19\x81\x80\x80\x08\x02"
      "\x00\x00\x00\x00\x00\x00\x00\x40\x02\x0d\x01\x01\x0e\x02\xc1\xad"
      "\x94\xc4\x04\x80\x88\x9c\x19\x01\x02\x00\x02\x00\x00\x00\x00\x00"
      "\x00\x00\x40\x02\x0d\x01\x01\x0e\x02\xc1\x94\x96\x74\x80\xa1\x9a"
      "\xe9\x03\x81\x80\x80\x08\x02\x00\x00\x00\x00\x00\x00\x00\x40\x02"
      "\x0d\x01\x01\x0e\x02\xc1\x94\x96\x74\x80\xa1\x9a\xe9\x03\x04\x02"
      "\x00\x01\x00\x00\x00\x00\x00\x00\x00\x40\x01\xca\x8a\x33\xe2\x72"
      "\xe3\x73\x6e\x82\x80\x80\x08\x01\x00\x00\x00\x00\x00\x00\x00\x40"
      "\x01\xca\x8a\x33\xe2\x72\xe3\x73\x6e\x02\x9c\x34\x07\x00\x00\x00"
      "\x00\x00\x02\x00\x01\x00\x00\x00\x00\x00\x00\x10\x40\x01\x5a\xc3"
      "\x89\xa3\x0c\x3b\x03\x63\x82\x80\x80\x08\x01\x00\x00\x00\x00\x00"
      "\x00\x10\x40\x01\x5a\xc3\x89\xa3\x0c\x3b\x03\x63\x02\x03\x00\x05"
      "\x00\x00\x00\x00\x00\x00\x18\x40\x03\x81\x80\x80\x08\x04\x00\x00"
      "\x00\x00\x00\x00\x10\x40\x03\x82\x80\x80\x08\x01\x00\x00\x00\x00"
      "\x00\x00\x00\x40\x03";
  rollup_t *r = NULL;
  CHECK_INT(rollup_deserialize(v1, sizeof v1 - 1, &r), 0);
  if (!r) return;
  clock_now = T0 + 30 * MIN;
  rollup_set_clock(r, fake_now, &clock_now);
  for (int round = 0; round < 2; round++) {
    rollup_filter_t fa = {"page_path", "/a"};
    rollup_totals_t t;
    CHECK_INT(rollup_totals(r, T0, T0 + HOUR, NULL, 0, &t), 0);
    CHECK_INT(t.count, 5);
    CHECK(t.sum == 6);
    CHECK_INT(t.uniques, 4);
    CHECK_INT(rollup_totals(r, T0, T0 + HOUR, &fa, 1, &t), 0);
    CHECK_INT(t.count, 4);
    CHECK_INT(t.uniques, 3);
    CHECK_INT(rollup_totals(r, T0 - 2 * HOUR, T0 + HOUR, NULL, 0, &t), 0);
    CHECK_INT(t.count, 6);
    CHECK_INT(t.uniques, 5);
    /* once its minutes are gone the hour still knows its users */
    clock_now = T0 + 3 * HOUR;
    rollup_advance(r);
  }
  rollup_free(r);
}

/* The memory budget: the tracked bytes match a full walk; at the bound the oldest minutes
 * go first and their ranges answer from hours (same counts and users, the span says so),
 * then seconds; hostile cardinality gives up seconds and minutes before hours; the store
 * never passes the budget by more than its slack, and a snapshot keeps the cut (the
 * later passes and starvation: test_rollup_budget.c). */
TEST(test_memory_budget) {
  clock_now = T0;
  rollup_opts_t o = {DIMS, 4, 600, 600, 48, 0, 0, 0, fake_now, &clock_now, ROLLUP_MIN_BYTES};
  CHECK(rollup_new(&(rollup_opts_t){DIMS, 4, .max_bytes = ROLLUP_MIN_BYTES - 1}) == NULL);
  rollup_t *r = rollup_new(&o);
  rollup_stats_t st;
  /* 8 hours, 100 events a minute over 40 pages and 300 users */
  uint64_t exact_count = 0;
  int64_t last_t = 0;
  for (int64_t m = 0; m < 8 * 60; m++)
    for (int i = 0; i < 100; i++) {
      char page[16];
      snprintf(page, sizeof page, "/p%d", (int)(m * 7 + i) % 40);
      last_t = T0 + m * MIN + i * (MIN / 100);
      clock_now = last_t;
      CHECK_INT(add(r, last_t, "pv", page, NULL, NULL, (uint64_t)(m * 31 + i) % 300, 1), 0);
      exact_count++;
    }
  rollup_stats(r, &st);
  CHECK_INT(st.budget_bytes, st.ring_bytes[0] + st.ring_bytes[1] + st.ring_bytes[2]);
  CHECK(st.budget_bytes <= ROLLUP_MIN_BYTES + 64 * 1024);
  CHECK(st.evicted[1] > 0);                     /* minutes went first */
  CHECK(st.held_from_us[1] > T0);               /* the minute ring holds less than 10 h */
  CHECK_INT(st.budget_folded, 0);
  printf("  budget %zu: held %zu bytes; evicted %" PRIu64 " s, %" PRIu64 " min, %" PRIu64
         " h; minutes from +%lld min\n", st.max_bytes, st.budget_bytes, st.evicted[0],
         st.evicted[1], st.evicted[2], (long long)((st.held_from_us[1] - T0) / MIN));
  /* the early hours still answer in full, read from the hours */
  rollup_totals_t t = totals(r, T0, last_t + 1, NULL, NULL);
  CHECK_INT(t.count, exact_count);
  CHECK_INT(t.uniques, 300);
  t = totals(r, T0 + 30 * MIN, T0 + 90 * MIN, NULL, NULL); /* minutes gone: widened */
  CHECK_INT(t.from_us, T0);
  CHECK_INT(t.to_us, T0 + 2 * HOUR);
  CHECK_INT(t.count, 12000);
  rollup_point_t p[2];
  CHECK_INT(rollup_timeseries(r, ROLLUP_MINUTE, T0, T0 + 2 * MIN, NULL, 0, p, 2, NULL), 2);
  CHECK_INT(p[0].retained, 0);
  /* a snapshot keeps the cut and the counters */
  rollup_t *d = reload(r);
  if (d) {
    rollup_stats_t ds;
    rollup_stats(d, &ds);
    CHECK_INT(ds.evicted[1], st.evicted[1]);
    CHECK_INT(ds.held_from_us[1], st.held_from_us[1]);
    CHECK_INT(ds.budget_bytes, ds.ring_bytes[0] + ds.ring_bytes[1] + ds.ring_bytes[2]);
    rollup_set_clock(d, fake_now, &clock_now);
    rollup_totals_t dt;
    CHECK_INT(rollup_totals(d, T0 + 30 * MIN, T0 + 90 * MIN, NULL, 0, &dt), 0);
    CHECK_INT(dt.from_us, T0);
    CHECK_INT(dt.count, 12000);
  }
  rollup_free(d);
  /* hostile cardinality in a tight budget: seconds and minutes given up, the bound holds */
  CHECK_INT(rollup_set_max_bytes(r, 1), -EINVAL);
  for (int i = 0; i < 20000; i++) {
    char page[24];
    snprintf(page, sizeof page, "/fresh/%d", i);
    clock_now = last_t + (i / 100) * SEC;
    add(r, clock_now, "pv", page, NULL, NULL, (uint64_t)i, 0);
  }
  rollup_stats(r, &st);
  printf("  hostile: held %zu bytes, %" PRIu64 " values folded at the bound, evicted %" PRIu64
         " s, %" PRIu64 " min, %" PRIu64 " h\n", st.budget_bytes, st.budget_folded, st.evicted[0],
         st.evicted[1], st.evicted[2]);
  CHECK(st.budget_bytes <= ROLLUP_MIN_BYTES + 64 * 1024);
  CHECK(st.evicted[0] > 0); /* seconds went before hours (rollup.h "Memory") */
  CHECK_INT(st.budget_bytes, st.ring_bytes[0] + st.ring_bytes[1] + st.ring_bytes[2]);
  /* a bigger budget lifts any folding (test_rollup_budget.c covers a starved store) */
  CHECK_INT(rollup_set_max_bytes(r, 64 * ROLLUP_MIN_BYTES), 0);
  uint64_t before = st.budget_folded;
  add(r, clock_now, "pv", "/p1", NULL, NULL, 1, 0);
  rollup_stats(r, &st);
  CHECK_INT(st.budget_folded, before);
  CHECK_INT(totals(r, clock_now - MIN, clock_now + SEC, "page_path", "/p1").count, 1);
  rollup_free(r);
}

TEST(test_snapshot_hostile) {
  clock_now = T0;
  rollup_t *r = make(60, 60, 24, 0, 0); /* small rings: thousands of decodes below */
  add(r, T0 - 10 * SEC, "pv", "/a", "google", "DE", 1, 2.5);
  add(r, T0 - 10 * SEC, "pv", "/b", NULL, "DE", 2, 1);
  add(r, T0 - 2 * HOUR, "buy", "/a", NULL, NULL, 3, 9);
  buf_t s = BUF_INIT;
  rollup_serialize(r, &s);
  rollup_t *d = (rollup_t *)1;
  CHECK_INT(rollup_deserialize(s.data, s.len, NULL), -EINVAL);
  CHECK_INT(rollup_deserialize(NULL, 5, &d), -EINVAL);
  CHECK(d == NULL);
  CHECK_INT(rollup_deserialize(NULL, 0, &d), -EBADMSG);
  /* every truncation */
  int bad = 0;
  for (size_t n = 0; n < s.len; n++)
    if (rollup_deserialize(s.data, n, &d) != -EBADMSG || d) bad++;
  CHECK_INT(bad, 0);
  /* a trailing byte */
  buf_t t = BUF_INIT;
  buf_append(&t, s.data, s.len);
  buf_putc(&t, 0);
  CHECK_INT(rollup_deserialize(t.data, t.len, &d), -EBADMSG);
  /* wrong magic, wrong version */
  t.data[0] = 'X';
  CHECK_INT(rollup_deserialize(t.data, s.len, &d), -EBADMSG);
  memcpy(t.data, s.data, s.len);
  t.data[4] = ROLLUP_SERIAL_VERSION + 1;
  CHECK_INT(rollup_deserialize(t.data, s.len, &d), -EBADMSG);
  /* every single-bit flip: rejected, or accepted as a store that re-encodes to itself */
  int accepted = 0, rejected = 0, noncanon = 0;
  buf_t again = BUF_INIT;
  for (size_t i = 0; i < s.len; i++)
    for (int bit = 0; bit < 8; bit++) {
      memcpy(t.data, s.data, s.len);
      t.data[i] ^= (char)(1 << bit);
      int rc = rollup_deserialize(t.data, s.len, &d);
      if (rc == 0) {
        accepted++;
        buf_reset(&again);
        rollup_serialize(d, &again);
        if (again.len != s.len || memcmp(again.data, t.data, s.len) != 0) noncanon++;
        rollup_t *tmp = d;
        rollup_totals_t tt;
        rollup_totals(tmp, INT64_MIN, INT64_MAX, NULL, 0, &tt);
        rollup_free(d);
      } else {
        rejected++;
        if (rc != -EBADMSG || d) bad++;
      }
    }
  printf("  bit flips: %d rejected, %d accepted (sums, hashes, counters, strings)\n", rejected,
         accepted);
  CHECK_INT(bad, 0);
  CHECK_INT(noncanon, 0);
  buf_free(&again);
  buf_free(&t);
  buf_free(&s);
  rollup_free(r);
}

/* A bucket finds its cells by a scan while it holds at most eight, through a table after
 * that: every count stays right across the change (in a new bucket and in one whose slot
 * comes round again, table kept), and the memory figures count the table from the
 * bucket's start, as when it was allocated at once. */
TEST(test_small_buckets_grow) {
  clock_now = T0 + HOUR;
  rollup_t *r = make(60, 60, 24, 0, 0);
  rollup_stats_t st;
  char names[24][16];
  for (int v = 0; v < 24; v++) snprintf(names[v], sizeof names[v], "/p%d", v);
  for (int round = 0; round < 2; round++) {
    /* round 1 reuses the second ring's slot of round 0 (60 seconds later) */
    int64_t t = T0 + HOUR + (int64_t)(10 + 60 * round) * SEC;
    clock_now = t;
    int count[24] = {0}, bad = 0;
    for (int i = 0; i < 200; i++) {
      int v = (i * 7 + i / 24) % 24 < 3 ? 0 : (i * 7 + i / 24) % 24; /* repeats, out of order */
      if (i < 30) v = i % 24;
      CHECK_INT(add(r, t, "e", names[v], NULL, NULL, (uint64_t)i, 1), 0);
      count[v]++;
      if (round == 0 && i == 0) rollup_stats(r, &st);
      for (int w = 0; w < 24; w++) {
        rollup_totals_t got = totals(r, t, t + SEC, "page_path", names[w]);
        if (got.count != (uint64_t)count[w]) bad++;
      }
      CHECK_INT(totals(r, t, t + SEC, NULL, NULL).count, i + 1);
    }
    CHECK_INT(bad, 0);
  }
  /* after the first add, the second's bucket held three cells (the total, "e", "/p0") in
   * an array of eight and was counted with its 16-slot table, not yet allocated */
  rollup_t *fresh = make(60, 60, 24, 0, 0);
  rollup_stats_t empty;
  rollup_stats(fresh, &empty);
  CHECK_INT(st.ring_bytes[0] - empty.ring_bytes[0], 8 * 32 + 16 * 8);
  rollup_free(fresh);
  rollup_free(r);
}

int main(void) {
  RUN(test_new_and_dims);
  RUN(test_buckets);
  RUN(test_totals);
  RUN(test_filters);
  RUN(test_topn);
  RUN(test_late_and_old);
  RUN(test_wrap_and_reject);
  RUN(test_fold_minutes_into_hours);
  RUN(test_other_and_truncation);
  RUN(test_repeated_values);
  RUN(test_alternating_values);
  RUN(test_values_one_byte_apart);
  RUN(test_uniques);
  RUN(test_no_users);
  RUN(test_snapshot_roundtrip);
  RUN(test_snapshot_hostile);
  RUN(test_hours_exact_any_order);
  RUN(test_snapshot_version1);
  RUN(test_memory_budget);
  RUN(test_small_buckets_grow);
  return TEST_REPORT("test_rollup");
}
