/* Unit tests for the stream-side KPIs (kpi.h) and their query answers (query_kpi.h): a
 * small fixed story of profile events and costs, fed through the profile store and
 * kpi_observe as the process stage does, with every answer computed by hand below; the
 * snapshot encoding round-trips canonically and refuses every truncation. */
#include <errno.h>
#include <math.h>
#include <string.h>

#include <cJSON.h>

#include "kpi.h"
#include "query.h"
#include "query_kpi.h"
#include "test.h"

#define SEC 1000000LL
#define DAY (86400 * SEC)
/* 2023-11-14 22:00:00 UTC, a Tuesday: day 19675, week 2810 (Monday 2023-11-13). */
#define T0 (1699999200LL * SEC)

static int64_t clock_now = T0 + 2 * DAY + 3600 * SEC;
static int64_t fake_now(void *ctx) { return *(int64_t *)ctx; }

static const char *const EV_DIMS[] = {PROCESS_DIMS};
static const char *const SESSION_DIMS[] = {"session"};

static profile_store_t *ps;
static rollup_t *ev, *se;
static kpi_t *kp;

/* One event: ids, type, campaign name (its hash is the name's, as process builds it from
 * source/medium/name), order revenue (< 0: not an order). */
static void apply(int64_t t, int type, const char *user, const char *anon, const char *prev,
                  const char *campaign, double order) {
  profile_event_t pe = {.t_us = t,
                        .type = type,
                        .user_id = user,
                        .anonymous_id = anon,
                        .previous_id = prev,
                        .kind = PROFILE_KIND_NONE,
                        .is_order = order >= 0,
                        .revenue = order >= 0 ? order : 0,
                        .campaign_hash = campaign ? 0x1000u + strlen(campaign) : 0};
  profile_result_t res;
  if (profile_apply(ps, &pe, &res) != 0) {
    FAILF("profile_apply refused the event at %lld", (long long)t);
    return;
  }
  kpi_event_t ke = {t, campaign, order >= 0, order >= 0 ? order : 0, &res};
  kpi_observe(kp, &ke);
}

/* The story (session timeout 30 min):
 *   day 19675  T0+0    anon a1 page, campaign "bf"        new user, session bf
 *              T0+60   anon a2 page                       new user, session (none)
 *              T0+120  alice+a1 order 100                 a1 renamed alice: first order,
 *                                                         converts session bf
 *              T0+180  bob order 50, campaign "nov"       new user, session nov, converts,
 *                                                         first order
 *              T0+240  alice order 30                     not a new customer
 *              T0+300  costs: bf 40, nov 25, none 10
 *   day 19676  +1d+0   alice page                         cohort 19675 offset 1
 *              +1d+10  a2 page; +1d+20 a2 page again      once for a2
 *              +1d+25  bob page                           cohort 19675 offset 1
 *              +1d+30  anon a3 page                       new user (cohort 19676)
 *              +1d+40  alias bob <- a3                    a3 merged into bob
 * Hand-computed: new users day 1: 3, day 2: 1 - 1 merged = 0; sessions bf 1 (converted
 * 1), nov 1 (1), (none) 5 (0); new customers bf 1, nov 1; cost 75 (bf 40, nov 25);
 * CLV 180 / 2; retention_day cohort 19675 [3, 3], cohort 19676 [1]; retention_week
 * cohort 2810 [4]. */
static void story(void) {
  profile_opts_t po = {.seed = 7};
  ps = profile_store_new(&po);
  kp = kpi_new(fake_now, &clock_now);
  rollup_opts_t eo = {EV_DIMS, PROCESS_NDIMS, 0, 0, 0, 0, 0, 0, fake_now, &clock_now};
  rollup_opts_t so = {SESSION_DIMS, 1, 0, 0, 0, 0, 0, 0, fake_now, &clock_now};
  ev = rollup_new(&eo);
  se = rollup_new(&so);
  apply(T0, PROFILE_PAGE, NULL, "a1", NULL, "bf", -1);
  apply(T0 + 60 * SEC, PROFILE_PAGE, NULL, "a2", NULL, NULL, -1);
  apply(T0 + 120 * SEC, PROFILE_TRACK, "alice", "a1", NULL, NULL, 100);
  apply(T0 + 180 * SEC, PROFILE_TRACK, "bob", NULL, NULL, "nov", 50);
  apply(T0 + 240 * SEC, PROFILE_TRACK, "alice", NULL, NULL, NULL, 30);
  CHECK_INT(kpi_cost(kp, T0 + 300 * SEC, "bf", 40), 0);
  CHECK_INT(kpi_cost(kp, T0 + 300 * SEC, "nov", 25), 0);
  CHECK_INT(kpi_cost(kp, T0 + 300 * SEC, NULL, 10), 0);
  CHECK_INT(kpi_cost(kp, T0 + 300 * SEC, "bf", NAN), -EINVAL);
  CHECK_INT(kpi_cost(kp, T0 + 300 * SEC, "bf", -1), -EINVAL);
  apply(T0 + DAY, PROFILE_PAGE, "alice", NULL, NULL, NULL, -1);
  apply(T0 + DAY + 10 * SEC, PROFILE_PAGE, NULL, "a2", NULL, NULL, -1);
  apply(T0 + DAY + 20 * SEC, PROFILE_PAGE, NULL, "a2", NULL, NULL, -1);
  apply(T0 + DAY + 25 * SEC, PROFILE_PAGE, "bob", NULL, NULL, NULL, -1);
  apply(T0 + DAY + 30 * SEC, PROFILE_PAGE, NULL, "a3", NULL, NULL, -1);
  apply(T0 + DAY + 40 * SEC, PROFILE_ALIAS, "bob", NULL, "a3", NULL, -1);
}

static int run(const char *json, buf_t *out) {
  query_stores_t st = {.events = ev, .sessions = se, .conversion_event = "Order Completed",
                       .kpi = kp};
  buf_reset(out);
  return query_run(&st, json, strlen(json), clock_now, out);
}

/* Run a kpi query over [from, to) plus extra members; the body must contain want. */
static void expect(const char *kpi, int64_t from, int64_t to, const char *extra,
                   const char *want) {
  char q[512];
  buf_t out = BUF_INIT;
  snprintf(q, sizeof q, "{\"type\":\"kpi\",\"kpi\":\"%s\",\"from\":%lld,\"to\":%lld%s}", kpi,
           (long long)(from / 1000), (long long)(to / 1000), extra);
  int st = run(q, &out);
  if (st != 200 || !strstr(out.data, want))
    FAILF("%s: status %d, body %s\n    wanted %s", q, st, out.data, want);
  buf_free(&out);
}

TEST(test_days_and_weeks) {
  CHECK_INT(kpi_day_of(T0), 19675);
  CHECK_INT(kpi_week_of(T0), 2810);
  CHECK_INT(kpi_week_of(T0 - 2 * DAY), 2809); /* Sunday 2023-11-12 */
  CHECK_INT(kpi_week_of(T0 - DAY - 22 * 3600 * SEC), 2810); /* Monday 00:00 */
  CHECK_INT(kpi_day_of(-1), -1);
  CHECK_INT(kpi_day_of(0), 0);
  CHECK_INT(kpi_day_of(DAY - 1), 0);
  CHECK_INT(kpi_day_of(DAY), 1);
  CHECK_INT(kpi_day_of(-DAY), -1);
  CHECK_INT(kpi_day_of(-DAY - 1), -2);
  /* weeks start on Mondays: 1970-01-05 is day 4 */
  CHECK_INT(kpi_week_of(4 * DAY), 0);
  CHECK_INT(kpi_week_of(4 * DAY - 1), -1);
  CHECK_INT(kpi_week_of(11 * DAY - 1), 0);
  CHECK_INT(kpi_week_of(11 * DAY), 1);
  CHECK_INT(kpi_week_of(-3 * DAY), -1);
  CHECK_INT(kpi_week_of(-3 * DAY - 1), -2);
}

TEST(test_campaign_kpis) {
  int64_t a = T0, b = T0 + 2 * DAY;
  const char *bf = ",\"filter\":{\"dimension\":\"utm_campaign\",\"value\":\"bf\"}";
  const char *nov = ",\"filter\":{\"dimension\":\"utm_campaign\",\"value\":\"nov\"}";
  const char *none = ",\"filter\":{\"dimension\":\"utm_campaign\",\"value\":\"(none)\"}";
  expect("conversion_rate", a, b, bf, "\"value\":1,\"numerator\":1,\"denominator\":1");
  expect("conversion_rate", a, b, nov, "\"value\":1,\"numerator\":1,\"denominator\":1");
  expect("conversion_rate", a, b, none, "\"value\":0,\"numerator\":0,\"denominator\":5");
  expect("new_customers", a, b, "", "\"value\":2}");
  expect("new_customers", a, b, bf, "\"value\":1}");
  expect("marketing_cost", a, b, "", "\"value\":75}");
  expect("marketing_cost", a, b, nov, "\"value\":25}");
  expect("cac", a, b, "", "\"value\":37.5,\"numerator\":75,\"denominator\":2");
  expect("cac", a, b, bf, "\"value\":40,\"numerator\":40,\"denominator\":1");
  /* A campaign with cost but no customer: null, not infinity. */
  expect("cac", a, b, ",\"filter\":{\"dimension\":\"utm_campaign\",\"value\":\"x\"}",
         "\"value\":null");
  /* Day 2 has no new customer and no cost. */
  expect("cac", T0 + DAY, b, "", "\"value\":null,\"numerator\":0,\"denominator\":0");
}

TEST(test_users_and_series) {
  expect("new_users", T0, T0 + 2 * DAY, "", "\"value\":3}");
  expect("new_users", T0, T0 + DAY, "", "\"value\":3}");
  expect("new_users", T0 + DAY, T0 + 2 * DAY, ",\"compare\":\"previous\"",
         "\"value\":0,\"previous\":{\"from\":\"2023-11-14T22:00:00.000Z\","
         "\"to\":\"2023-11-15T22:00:00.000Z\",\"value\":3}");
  expect("new_users", T0, T0 + 2 * DAY, ",\"granularity\":\"day\"",
         "\"granularity\":\"day\",\"points\":[{\"t\":\"2023-11-14T00:00:00.000Z\",\"value\":3},"
         "{\"t\":\"2023-11-15T00:00:00.000Z\",\"value\":0},"
         "{\"t\":\"2023-11-16T00:00:00.000Z\",\"value\":0}]");
  /* Series with compare: each bucket against the bucket one range earlier. */
  expect("new_customers", T0 - 22 * 3600 * SEC + DAY, T0 - 22 * 3600 * SEC + 2 * DAY,
         ",\"granularity\":\"day\",\"compare\":\"previous\"",
         "\"points\":[{\"t\":\"2023-11-15T00:00:00.000Z\",\"value\":0,\"previous\":{\"value\":2}}]");
}

TEST(test_retention_and_clv) {
  /* Offsets run to the period holding the range's end: day 19676 here. */
  expect("retention_day", T0, T0 + DAY + 7200 * SEC, "",
         "\"cohorts\":[{\"cohort\":\"2023-11-14T00:00:00.000Z\",\"users\":3,\"retained\":[3,3],"
         "\"rate\":[1,1]},{\"cohort\":\"2023-11-15T00:00:00.000Z\",\"users\":1,"
         "\"retained\":[1],\"rate\":[1]}]");
  expect("retention_day", T0, T0 + 2 * DAY, "", "\"retained\":[3,3,0],\"rate\":[1,1,0]}");
  expect("retention_week", T0, T0 + 2 * DAY, "",
         "\"cohorts\":[{\"cohort\":\"2023-11-13T00:00:00.000Z\",\"users\":4,\"retained\":[4],"
         "\"rate\":[1]}]");
  CHECK_INT(kpi_retention(kp, 0, 19675, 1), 3);
  CHECK_INT(kpi_retention(kp, 0, 19675, 2), 0);
  CHECK_INT(kpi_retention(kp, 0, 19000, 0), 0);
  CHECK_INT(kpi_newest_cohort(kp, 0), 19676);
  expect("clv", T0, T0 + 2 * DAY, "",
         "\"value\":90,\"numerator\":180,\"denominator\":2,\"cohorts\":[{\"cohort\":"
         "\"2023-11-13T00:00:00.000Z\",\"users\":2,\"revenue\":180.00,\"value\":90}]");
}

TEST(test_merging_two_customers) {
  /* carol (order 10) and dave (order 20) turn out to be one person: customers drop by
   * one, revenue stays. */
  kpi_clv_t before, after;
  kpi_clv(kp, -1, &before);
  apply(T0 + DAY + 100 * SEC, PROFILE_TRACK, "carol", NULL, NULL, NULL, 10);
  apply(T0 + DAY + 110 * SEC, PROFILE_TRACK, "dave", NULL, NULL, NULL, 20);
  apply(T0 + DAY + 120 * SEC, PROFILE_ALIAS, "carol", NULL, "dave", NULL, -1);
  kpi_clv(kp, -1, &after);
  CHECK_INT(after.customers, before.customers + 1);
  CHECK(fabs(after.revenue - before.revenue - 30) < 1e-9);
}

TEST(test_bad_kpi_queries) {
  static const char *const bad[] = {
      "{\"type\":\"kpi\",\"kpi\":\"cac\",\"filter\":{\"dimension\":\"country\",\"value\":\"DE\"}}",
      "{\"type\":\"kpi\",\"kpi\":\"new_users\",\"filter\":{\"dimension\":\"utm_campaign\",\"value\":\"x\"}}",
      "{\"type\":\"kpi\",\"kpi\":\"retention_day\",\"granularity\":\"day\"}",
      "{\"type\":\"kpi\",\"kpi\":\"clv\",\"compare\":\"previous\"}",
      "{\"type\":\"kpi\",\"kpi\":\"orders\",\"compare\":\"next\"}",
      "{\"type\":\"totals\",\"compare\":\"previous\"}",
      "{\"type\":\"timeseries\",\"granularity\":\"day\"}",
      "{\"type\":\"kpi\",\"kpi\":\"orders\",\"granularity\":\"second\",\"from\":\"-1d\"}",
      "{\"type\":\"kpi\",\"kpi\":\"mau\",\"granularity\":\"day\",\"from\":\"-200d\"}",
  };
  buf_t out = BUF_INIT;
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    if (run(bad[i], &out) != 400) FAILF("%s: %s", bad[i], out.data);
  /* Without the KPI state, its KPIs fail cleanly. */
  query_stores_t st = {.events = ev, .sessions = se, .conversion_event = "Order Completed"};
  const char *q = "{\"type\":\"kpi\",\"kpi\":\"retention_day\"}";
  buf_reset(&out);
  CHECK_INT(query_run(&st, q, strlen(q), clock_now, &out), 400);
  buf_free(&out);
}

TEST(test_snapshot_round_trip) {
  buf_t a = BUF_INIT, b = BUF_INIT;
  size_t n = kpi_serialize(kp, &a);
  CHECK_INT(n, a.len);
  kpi_t *copy = NULL;
  CHECK_INT(kpi_deserialize(a.data, a.len, fake_now, &clock_now, &copy), 0);
  if (!copy) return;
  kpi_serialize(copy, &b);
  CHECK(a.len == b.len && !memcmp(a.data, b.data, a.len));
  CHECK_INT(kpi_retention(copy, 0, 19675, 1), 3);
  kpi_clv_t c;
  kpi_clv(copy, -1, &c);
  CHECK_INT(c.customers, 3);
  kpi_free(copy);
  /* Every truncation, and a flipped version, is refused. */
  for (size_t len = 0; len < a.len; len += 1 + len / 64) {
    kpi_t *k = (kpi_t *)1;
    if (kpi_deserialize(a.data, len, fake_now, &clock_now, &k) != -EBADMSG || k)
      FAILF("a truncation to %zu bytes was accepted", len);
  }
  a.data[4] = 9;
  CHECK_INT(kpi_deserialize(a.data, a.len, fake_now, &clock_now, &copy), -EBADMSG);
  buf_free(&a);
  buf_free(&b);
}

TEST(test_user_defined_kpis) {
  /* add_to_cart_rate = uniques(Product Added) / uniques(Product Viewed);
   * de_revenue = sum of properties.revenue of orders with country DE (no denominator). */
  static config_kpi_t defs[2] = {
      {.name = (char *)"add_to_cart_rate",
       .format = CONFIG_KPI_PERCENT,
       .num = {.present = 1, .event = (char *)"Product Added", .metric = CONFIG_KPI_UNIQUES},
       .den = {.present = 1, .event = (char *)"Product Viewed", .metric = CONFIG_KPI_UNIQUES}},
      {.name = (char *)"de_revenue",
       .format = CONFIG_KPI_CURRENCY,
       .num = {.present = 1, .event = (char *)"Order Completed", .metric = CONFIG_KPI_SUM,
               .property = (char *)"revenue", .nfilters = 1, .filter_dim = {6},
               .filter_value = {(char *)"DE"}}},
  };
  static const config_kpis_t list = {defs, 2};
  kpi_set_custom(kp, &list);
  const char *viewed[PROCESS_NDIMS] = {"Product Viewed"};
  const char *added[PROCESS_NDIMS] = {"Product Added"};
  const char *de[PROCESS_NDIMS] = {"Order Completed", [6] = "DE"};
  const char *fr[PROCESS_NDIMS] = {"Order Completed", [6] = "FR"};
  double v[4] = {0, 0, 0, 0};
  int64_t t = T0 + 1000 * SEC;
  /* Four viewers (one views twice), two of them add to cart (one twice). */
  for (int u = 1; u <= 4; u++) kpi_custom_observe(kp, t, viewed[0], viewed, (uint64_t)u * 0x9e3779b97f4a7c15ull, v);
  kpi_custom_observe(kp, t, viewed[0], viewed, 0x9e3779b97f4a7c15ull, v);
  kpi_custom_observe(kp, t, added[0], added, 0x9e3779b97f4a7c15ull, v);
  kpi_custom_observe(kp, t, added[0], added, 0x9e3779b97f4a7c15ull, v);
  kpi_custom_observe(kp, t, added[0], added, 2 * 0x9e3779b97f4a7c15ull, v);
  v[2] = 30;
  kpi_custom_observe(kp, t, de[0], de, 1, v);
  v[2] = 12.5;
  kpi_custom_observe(kp, t, de[0], de, 2, v);
  v[2] = 99;
  kpi_custom_observe(kp, t, fr[0], fr, 3, v);
  expect("add_to_cart_rate", T0, T0 + 2 * DAY, "",
         "\"format\":\"percent\",\"value\":0.5,\"numerator\":2,\"denominator\":4");
  expect("de_revenue", T0, T0 + 2 * DAY, "", "\"format\":\"currency\",\"value\":42.5}");
  expect("de_revenue", T0, T0 + 2 * DAY, ",\"compare\":\"previous\"",
         "\"previous\":{\"from\":\"2023-11-12T22:00:00.000Z\",\"to\":\"2023-11-14T22:00:00.000Z\",\"value\":0}");
  /* Built-in KPIs carry their format too; unknown names are refused. */
  expect("cac", T0, T0 + 2 * DAY, "", "\"kpi\":\"cac\",\"format\":\"currency\"");
  buf_t out = BUF_INIT;
  CHECK_INT(run("{\"type\":\"kpi\",\"kpi\":\"add_to_basket\"}", &out), 400);
  buf_free(&out);
  /* The snapshot keeps them. */
  buf_t a = BUF_INIT;
  kpi_serialize(kp, &a);
  kpi_t *copy = NULL;
  CHECK_INT(kpi_deserialize(a.data, a.len, fake_now, &clock_now, &copy), 0);
  if (copy) {
    kpi_set_custom(copy, &list);
    double num, den;
    int64_t f, to;
    CHECK_INT(kpi_custom_eval(copy, 1, T0, T0 + DAY, &num, &den, &f, &to), 0);
    CHECK(num == 42.5 && isnan(den));
    CHECK_INT(kpi_custom_eval(copy, 2, T0, T0 + DAY, &num, &den, &f, &to), -ENOENT);
  }
  kpi_free(copy);
  buf_free(&a);
  /* The catalogue (GET /v1/kpis): every built-in KPI, then these two, as valid JSON. */
  query_stores_t st = {.kpi = kp};
  buf_t cat = BUF_INIT;
  query_kpi_catalogue(&st, &cat);
  cJSON *root = cJSON_Parse(cat.data);
  cJSON *list_json = cJSON_GetObjectItemCaseSensitive(root, "kpis");
  CHECK_INT(cJSON_GetArraySize(list_json), query_kpi_count() + 2);
  for (int i = 0; i < query_kpi_count(); i++) {
    cJSON *name = cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(list_json, i), "name");
    CHECK(cJSON_IsString(name) && !strcmp(name->valuestring, query_kpi_name(i)));
  }
  CHECK(strstr(cat.data, "{\"name\":\"de_revenue\",\"format\":\"currency\",\"shape\":\"value\","
                         "\"filter\":\"none\",\"series\":true,\"compare\":true,\"custom\":true,"
                         "\"description\":\"sum of Order Completed (properties.revenue) where "
                         "country = DE\"}]}") != NULL);
  CHECK(strstr(cat.data, "\"name\":\"retention_week\",\"format\":\"percent\",\"shape\":\"grid\","
                         "\"filter\":\"none\",\"series\":false,\"compare\":false") != NULL);
  CHECK(strstr(cat.data, "\"name\":\"add_to_cart_rate\",\"format\":\"percent\",\"shape\":\"ratio\"") != NULL);
  cJSON_Delete(root);
  buf_free(&cat);
  kpi_set_custom(kp, NULL);
}

int main(void) {
  story();
  RUN(test_days_and_weeks);
  RUN(test_campaign_kpis);
  RUN(test_users_and_series);
  RUN(test_retention_and_clv);
  RUN(test_merging_two_customers);
  RUN(test_bad_kpi_queries);
  RUN(test_snapshot_round_trip);
  RUN(test_user_defined_kpis);
  kpi_free(kp);
  profile_store_free(ps);
  rollup_free(ev);
  rollup_free(se);
  return TEST_REPORT("test_kpi");
}
