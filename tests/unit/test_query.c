/* Unit tests for query_run: table-driven bad queries (status 400 and the field named in
 * the error), and answers over small hand-filled rollups for each query type and KPI. */
#include <string.h>

#include "query.h"
#include "test.h"

#define SEC 1000000LL
#define T0 (1699999200LL * SEC) /* an hour boundary */

static int64_t clock_now = T0 + 1800 * SEC;
static int64_t fake_now(void *ctx) { return *(int64_t *)ctx; }

static const char *const EV_DIMS[] = {PROCESS_DIMS};
static const char *const SESSION_DIMS[] = {"session"};

static rollup_t *ev, *se;

/* Distinct, well-mixed user hashes. */
#define U(i) ((uint64_t)(i) * 0x9e3779b97f4a7c15ull)

static void fill(void) {
  rollup_opts_t eo = {EV_DIMS, PROCESS_NDIMS, 0, 0, 0, 0, 0, 0, fake_now, &clock_now};
  rollup_opts_t so = {SESSION_DIMS, 1, 0, 0, 0, 0, 0, 0, fake_now, &clock_now};
  ev = rollup_new(&eo);
  se = rollup_new(&so);
  const char *page[PROCESS_NDIMS] = {"$page", "/", "google"};
  const char *order[PROCESS_NDIMS] = {"Order Completed", NULL, NULL};
  rollup_add(ev, T0 + 10 * SEC, page, U(1), 0);
  rollup_add(ev, T0 + 70 * SEC, page, U(2), 0);
  rollup_add(ev, T0 + 80 * SEC, order, U(2), 30);
  rollup_add(ev, T0 + 90 * SEC, order, U(3), 50);
  const char *v[1];
  for (int i = 0; i < 4; i++) {
    v[0] = "start";
    rollup_add(se, T0 + i * SEC, v, (uint64_t)i + 1, 0);
  }
  v[0] = "converted";
  rollup_add(se, T0, v, 1, 0);
  v[0] = "end";
  rollup_add(se, T0, v, 1, 0);
  rollup_add(se, T0 + 1 * SEC, v, 2, 0);
  v[0] = "bounce";
  rollup_add(se, T0 + 1 * SEC, v, 2, 0);
}

static int run(const char *json, buf_t *out) {
  query_stores_t st = {ev, se, "Order Completed"};
  buf_reset(out);
  return query_run(&st, json, strlen(json), clock_now, out);
}

TEST(test_bad_queries) {
  static const struct {
    const char *json, *field;
  } cases[] = {
      {"", ""},
      {"[]", ""},
      {"{\"type\":1}", "type"},
      {"{\"type\":\"sum\"}", "type"},
      {"{\"type\":\"totals\",\"from\":\"soon\"}", "from"},
      {"{\"type\":\"totals\",\"from\":\"-5x\"}", "from"},
      {"{\"type\":\"totals\",\"to\":true}", "to"},
      {"{\"type\":\"totals\",\"from\":\"-1h\",\"to\":\"-1h\"}", "to"},
      {"{\"type\":\"totals\",\"from\":\"-401d\"}", "from"},
      {"{\"type\":\"timeseries\",\"granularity\":\"day\"}", "granularity"},
      {"{\"type\":\"timeseries\",\"granularity\":\"second\",\"from\":\"-1d\"}", "granularity"},
      {"{\"type\":\"topN\"}", "dimension"},
      {"{\"type\":\"topN\",\"dimension\":\"colour\"}", "dimension"},
      {"{\"type\":\"topN\",\"dimension\":\"event\",\"limit\":0}", "limit"},
      {"{\"type\":\"topN\",\"dimension\":\"event\",\"limit\":2.5}", "limit"},
      {"{\"type\":\"topN\",\"dimension\":\"event\",\"filter\":{\"dimension\":\"event\",\"value\":\"x\"}}", "filter"},
      {"{\"type\":\"totals\",\"metric\":\"avg\"}", "metric"},
      {"{\"type\":\"totals\",\"filter\":{\"dimension\":\"event\"}}", "filter"},
      {"{\"type\":\"totals\",\"filter\":{\"dimension\":\"os\",\"value\":\"x\"}}", "filter.dimension"},
      {"{\"type\":\"kpi\"}", "kpi"},
      {"{\"type\":\"kpi\",\"kpi\":\"ltv\"}", "kpi"},
      {"{\"type\":\"kpi\",\"kpi\":\"aov\",\"filter\":{\"dimension\":\"event\",\"value\":\"x\"}}", "filter"},
      {"{\"type\":\"totals\",\"extra\":1}", "extra"},
  };
  buf_t out = BUF_INIT;
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    int st = run(cases[i].json, &out);
    char want[128];
    snprintf(want, sizeof want, "\"field\":\"%s\"", cases[i].field);
    if (st != 400 || !strstr(out.data, want) || !strstr(out.data, "\"error\":\"bad_query\""))
      FAILF("case %zu %s: status %d body %s", i, cases[i].json, st, out.data);
  }
  buf_free(&out);
}

TEST(test_answers) {
  buf_t out = BUF_INIT;
  char q[512];
  snprintf(q, sizeof q, "{\"type\":\"totals\",\"from\":%lld,\"to\":%lld}",
           (long long)(T0 / 1000), (long long)((T0 + 600 * SEC) / 1000));
  CHECK_INT(run(q, &out), 200);
  CHECK(strstr(out.data, "\"count\":4,\"sum\":80,\"uniques\":3") != NULL);
  snprintf(q, sizeof q, "{\"type\":\"timeseries\",\"granularity\":\"minute\",\"from\":%lld,\"to\":%lld}",
           (long long)(T0 / 1000), (long long)((T0 + 120 * SEC) / 1000));
  CHECK_INT(run(q, &out), 200);
  CHECK(strstr(out.data, "\"count\":1,\"sum\":0,\"uniques\":1") != NULL);
  CHECK(strstr(out.data, "\"count\":3,\"sum\":80,\"uniques\":2") != NULL);
  snprintf(q, sizeof q, "{\"type\":\"topN\",\"dimension\":\"event\",\"from\":%lld,\"to\":%lld}",
           (long long)(T0 / 1000), (long long)((T0 + 600 * SEC) / 1000));
  CHECK_INT(run(q, &out), 200);
  CHECK(strstr(out.data, "\"rows\":[{\"value\":\"$page\",\"count\":2") != NULL);
  static const struct {
    const char *kpi, *want;
  } kpis[] = {
      {"conversion_rate", "\"value\":0.25,\"numerator\":1,\"denominator\":4"},
      {"bounce_rate", "\"value\":0.5,\"numerator\":1,\"denominator\":2"},
      {"revenue", "\"value\":80}"},
      {"orders", "\"value\":2}"},
      {"aov", "\"value\":40,\"numerator\":80,\"denominator\":2"},
      {"active_users", "\"value\":3}"},
      {"events", "\"value\":4}"},
  };
  for (size_t i = 0; i < sizeof kpis / sizeof kpis[0]; i++) {
    snprintf(q, sizeof q, "{\"type\":\"kpi\",\"kpi\":\"%s\",\"from\":%lld,\"to\":%lld}", kpis[i].kpi,
             (long long)(T0 / 1000), (long long)((T0 + 600 * SEC) / 1000));
    CHECK_INT(run(q, &out), 200);
    if (!strstr(out.data, kpis[i].want)) FAILF("kpi %s: %s", kpis[i].kpi, out.data);
  }
  /* An empty range: rates are null, not a division by zero. */
  snprintf(q, sizeof q, "{\"type\":\"kpi\",\"kpi\":\"conversion_rate\",\"from\":%lld,\"to\":%lld}",
           (long long)((T0 + 900 * SEC) / 1000), (long long)((T0 + 960 * SEC) / 1000));
  CHECK_INT(run(q, &out), 200);
  CHECK(strstr(out.data, "\"value\":null") != NULL);
  buf_free(&out);
}

/* Unique users the memory budget gave up read null, never as a number that misses users:
 * totals, topN rows, timeseries points and the active_users KPI; counts stay exact. */
TEST(test_given_up_uniques_are_null) {
  int64_t saved_now = clock_now;
  rollup_opts_t o = {EV_DIMS, PROCESS_NDIMS, 60, 60, 24, 0, 0, 0, fake_now, &clock_now,
                     ROLLUP_MIN_BYTES};
  rollup_t *full = ev;
  clock_now = T0;
  ev = rollup_new(&o);
  REQUIRE(ev);
  char page[16];
  const char *v[PROCESS_NDIMS] = {"$page", page, "google"};
  for (int i = 0; i < 60000; i++) { /* 60,000 users over 10,000 pages in one minute */
    snprintf(page, sizeof page, "/p%d", i * 7919 % 10000);
    clock_now = T0 + (i / 1000) * SEC;
    rollup_add(ev, clock_now, v, U(i + 1), 0);
  }
  static const struct {
    const char *fields, *want; /* the query's type-specific fields; a piece of the answer */
  } cases[] = {
      {"\"type\":\"totals\"", "\"count\":60000,\"sum\":0,\"uniques\":null}"},
      {"\"type\":\"topN\",\"dimension\":\"event\"",
       "{\"value\":\"$page\",\"count\":60000,\"sum\":0,\"uniques\":null}"},
      {"\"type\":\"timeseries\",\"granularity\":\"hour\"",
       "\"count\":60000,\"sum\":0,\"uniques\":null,\"retained\":true"},
      {"\"type\":\"kpi\",\"kpi\":\"active_users\"", "\"value\":null"},
  };
  buf_t out = BUF_INIT;
  char q[512];
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    snprintf(q, sizeof q, "{%s,\"from\":%lld,\"to\":%lld}", cases[i].fields,
             (long long)(T0 / 1000), (long long)((T0 + 3600 * SEC) / 1000));
    CHECK_INT(run(q, &out), 200);
    if (!strstr(out.data, cases[i].want)) FAILF("%s: %s", q, out.data);
  }
  buf_free(&out);
  rollup_free(ev);
  ev = full;
  clock_now = saved_now;
}

int main(void) {
  fill();
  RUN(test_bad_queries);
  RUN(test_answers);
  RUN(test_given_up_uniques_are_null);
  rollup_free(ev);
  rollup_free(se);
  return TEST_REPORT("test_query");
}
