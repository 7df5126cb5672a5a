/* Unit tests for the log-scan query engine (scan.c, scan_parse.c) through query_run: a log
 * with a fixed set of events in a temp dir, and answers computed by hand below. */
#include "test.h"
#include "logtest.h"

#include <cJSON.h>
#include <dirent.h>

#include "query.h"
#include "scan.h"

#define SEC 1000000LL
static const int64_t T0 = 1795298400LL * SEC; /* a whole hour */

/* Record order = arrival order. t: event time, seconds after T0. Receive times rise by one
 * second per record from T0 - 200 s (the first and last records excepted, see fill).
 *
 *  #  user event            t     country device   source
 *  0  u1   $page            0     PL      mobile   google
 *  1  u1   view             10    PL      mobile   google
 *  2  u1   cart             20    PL      mobile   google
 *  3  u1   checkout         30    PL      mobile
 *  4  u1   Order Completed  40    PL      mobile            revenue 100
 *  5  u2   view             5     DE      desktop  google
 *  6  u2   cart             65    DE      desktop
 *  7  u4   cart             130   PL      desktop  facebook (arrives before its view)
 *  8  u4   view             120   PL      desktop  facebook
 *  9  u5   view             200   DE      mobile
 * 10  u5   cart             3900  DE      mobile            (3700 s after the view)
 * 11  u6   view             300   US      mobile   google
 * 12  u6   view             400   US      mobile   google   (repeats step 1)
 * 13  u6   cart             410   US      mobile
 * 14  u6   checkout         415   US      desktop
 * 15  u6   Order Completed  420   US      desktop           revenue 50
 * 16  u7   cart             500   PL      mobile            (no view)
 * 17  u8   $page            600   -       mobile
 * 18  u3   view             700   PL      desktop
 * 19  u3   cart             690   PL      desktop           (before its view)
 * 20  u9   view             -100  PL      desktop           (before the range)
 * 21  u9   cart             50    PL      desktop
 * Range [T0, T0 + 2 h). Also: a record that is not JSON (after #21), one received an hour
 * before everything (first; the seek skips it) and u10's view at t 1000 received 4 h after
 * T0 (last; past to + 1 h, so read only when late_us does not bound the scan). */
static const struct {
  const char *user, *event;
  int t;
  const char *country, *device, *source;
  double revenue;
} EV[] = {
    {"u1", NULL, 0, "PL", "mobile", "google", 0},
    {"u1", "view", 10, "PL", "mobile", "google", 0},
    {"u1", "cart", 20, "PL", "mobile", "google", 0},
    {"u1", "checkout", 30, "PL", "mobile", NULL, 0},
    {"u1", "Order Completed", 40, "PL", "mobile", NULL, 100},
    {"u2", "view", 5, "DE", "desktop", "google", 0},
    {"u2", "cart", 65, "DE", "desktop", NULL, 0},
    {"u4", "cart", 130, "PL", "desktop", "facebook", 0},
    {"u4", "view", 120, "PL", "desktop", "facebook", 0},
    {"u5", "view", 200, "DE", "mobile", NULL, 0},
    {"u5", "cart", 3900, "DE", "mobile", NULL, 0},
    {"u6", "view", 300, "US", "mobile", "google", 0},
    {"u6", "view", 400, "US", "mobile", "google", 0},
    {"u6", "cart", 410, "US", "mobile", NULL, 0},
    {"u6", "checkout", 415, "US", "desktop", NULL, 0},
    {"u6", "Order Completed", 420, "US", "desktop", NULL, 50},
    {"u7", "cart", 500, "PL", "mobile", NULL, 0},
    {"u8", NULL, 600, NULL, "mobile", NULL, 0},
    {"u3", "view", 700, "PL", "desktop", NULL, 0},
    {"u3", "cart", 690, "PL", "desktop", NULL, 0},
    {"u9", "view", -100, "PL", "desktop", NULL, 0},
    {"u9", "cart", 50, "PL", "desktop", NULL, 0},
};
#define NEV (sizeof EV / sizeof EV[0])

/* logtest.h's deterministic records are not used here. */
static void make_entry(uint64_t i, log_entry_t *e, char *key, char *val) {
  entry_fill(e, i, key, 0, val, 0, 1);
}

static log_t *lg;
static int acked;

static void on_ack(void *ud, int status, uint64_t first) {
  (void)ud, (void)first;
  if (status == 0) acked++;
}

static int all_acked(void *ud) { return acked == *(int *)ud; }

static void event_json(buf_t *b, const char *user, const char *event, int64_t t_us,
                       const char *country, const char *device, const char *source, double rev) {
  char iso[25];
  clock_format_iso(t_us, iso);
  buf_printf(b, "{\"type\":\"%s\",", event ? "track" : "page");
  if (event) buf_printf(b, "\"event\":\"%s\",", event);
  buf_printf(b, "\"anonymousId\":\"%s\",\"timestamp\":\"%s\",\"context\":{", user, iso);
  if (country) buf_printf(b, "\"location\":{\"country\":\"%s\"},", country);
  if (source) buf_printf(b, "\"campaign\":{\"source\":\"%s\"},", source);
  buf_printf(b, "\"device\":{\"type\":\"%s\"}}", device);
  if (rev) buf_printf(b, ",\"properties\":{\"revenue\":%g}", rev);
  buf_putc(b, '}');
}

/* Write the records into a new log in dir, segments rolling at seg_bytes (0: default). */
static int fill(const char *dir, uint64_t seg_bytes) {
  acked = 0;
  lg = logtest_open(test_dir(dir), LOG_SYNC_OFF, seg_bytes, NULL);
  if (!lg) return -1;
  buf_t vals[NEV + 3];
  log_entry_t e[NEV + 3];
  size_t n = 0;
  for (size_t i = 0; i < NEV + 3; i++) vals[i] = (buf_t)BUF_INIT;
  event_json(&vals[n], "u0", "view", T0 - 3600 * SEC, "PL", "mobile", NULL, 0);
  e[n] = (log_entry_t){.time_us = T0 - 3600 * SEC};
  n++;
  for (size_t i = 0; i < NEV; i++, n++) {
    event_json(&vals[n], EV[i].user, EV[i].event, T0 + EV[i].t * SEC, EV[i].country,
               EV[i].device, EV[i].source, EV[i].revenue);
    e[n] = (log_entry_t){.time_us = T0 - 200 * SEC + (int64_t)i * SEC};
  }
  buf_puts(&vals[n], "not json");
  e[n] = (log_entry_t){.time_us = T0 - 100 * SEC};
  n++;
  event_json(&vals[n], "u10", "view", T0 + 1000 * SEC, "PL", "mobile", NULL, 0);
  e[n] = (log_entry_t){.time_us = T0 + 4 * 3600 * SEC};
  n++;
  for (size_t i = 0; i < n; i++) {
    e[i].value = vals[i].data;
    e[i].value_len = (uint32_t)vals[i].len;
  }
  /* one append per record: an append never spans segments */
  int want = (int)n, rc = 0;
  for (size_t i = 0; i < n && rc == 0; i++) rc = log_append(lg, &e[i], 1, on_ack, NULL);
  for (size_t i = 0; i < n; i++) buf_free(&vals[i]);
  return rc == 0 && run_until(all_acked, &want, 5000) ? 0 : -1;
}

/* Segment files in the log dir of the last fill. */
static int segments(const char *dir) {
  DIR *d = opendir(path_in(root, dir));
  int n = 0;
  for (struct dirent *e; d && (e = readdir(d));)
    if (strstr(e->d_name, ".log")) n++;
  if (d) closedir(d);
  return n;
}

/* Bounded the old way (an hour after `to`) unless a test says otherwise. */
static scan_limits_t limits = {.late_us = 3600LL * 1000000};
static cJSON *answer;

/* Run query (from/to added) through query_run; returns the status, answer parsed. */
static int run(const char *body) {
  char json[2048];
  snprintf(json, sizeof json, "{\"from\":%lld,\"to\":%lld,%s}", (long long)(T0 / 1000),
           (long long)((T0 + 7200 * SEC) / 1000), body);
  query_stores_t st = {NULL, NULL, "Order Completed", lg, &limits};
  buf_t out = BUF_INIT;
  int status = query_run(&st, json, strlen(json), T0 + 7200 * SEC, &out);
  cJSON_Delete(answer);
  answer = cJSON_Parse(out.data ? out.data : "");
  if (!answer) printf("  not JSON: %s\n", out.data);
  buf_free(&out);
  return status;
}

/* The value at path ("steps.1.users": object keys and array indexes) of the last answer. */
static const cJSON *at(const char *path) {
  const cJSON *v = answer;
  char p[256];
  snprintf(p, sizeof p, "%s", path);
  for (char *save, *tok = strtok_r(p, ".", &save); tok && v; tok = strtok_r(NULL, ".", &save))
    v = cJSON_IsArray(v) ? cJSON_GetArrayItem(v, atoi(tok)) : cJSON_GetObjectItemCaseSensitive(v, tok);
  return v;
}

static double num(const char *path) {
  const cJSON *v = at(path);
  return cJSON_IsNumber(v) ? v->valuedouble : -12345;
}

static const char *str(const char *path) {
  const cJSON *v = at(path);
  return cJSON_IsString(v) ? v->valuestring : cJSON_IsNull(v) ? "null" : "?";
}

#define CHECK_AT_NUM(path, want)                                                             \
  do {                                                                                    \
    double got_ = num(path);                                                              \
    if (!(got_ > (want) - 1e-6 && got_ < (want) + 1e-6))                                  \
      FAILF("%s: got %g, want %g", path, got_, (double)(want));                           \
  } while (0)
#define CHECK_AT_STR(path, want)                                                             \
  do {                                                                                    \
    if (strcmp(str(path), want)) FAILF("%s: got %s, want %s", path, str(path), want);     \
  } while (0)

TEST(test_filters) {
  /* and: PL and mobile = #0-4 (u1), #16 (u7) */
  CHECK_INT(run("\"type\":\"totals\",\"filter\":{\"and\":[{\"dim\":\"country\",\"value\":\"PL\"},"
                "{\"dim\":\"device_type\",\"value\":\"mobile\"}]}"), 200);
  CHECK_AT_NUM("count", 6);
  CHECK_AT_NUM("uniques", 2);
  CHECK_AT_NUM("sum", 100);
  CHECK_AT_NUM("scanned", 23); /* 22 events and the bad record; not the early or the late one */
  CHECK_AT_STR("source", "log");
  /* or: US (#11-15) or facebook (#7, #8) */
  CHECK_INT(run("\"type\":\"totals\",\"filter\":{\"or\":[{\"dim\":\"country\",\"value\":\"US\"},"
                "{\"dim\":\"utm_source\",\"value\":\"facebook\"}]}"), 200);
  CHECK_AT_NUM("count", 7);
  CHECK_AT_NUM("uniques", 2);
  CHECK_AT_NUM("sum", 50);
  /* not in: neither PL nor DE, an absent country included (#11-15, #17) */
  CHECK_INT(run("\"type\":\"totals\",\"filter\":{\"not\":{\"dim\":\"country\",\"in\":[\"PL\",\"DE\"]}}"), 200);
  CHECK_AT_NUM("count", 6);
  CHECK_AT_NUM("uniques", 2);
  /* nested: view or cart, not on mobile: #5-8, #18, #19, #21 */
  CHECK_INT(run("\"type\":\"totals\",\"filter\":{\"and\":[{\"dim\":\"event\",\"in\":[\"view\",\"cart\"]},"
                "{\"not\":{\"dim\":\"device_type\",\"value\":\"mobile\"}}]}"), 200);
  CHECK_AT_NUM("count", 7);
  CHECK_AT_NUM("uniques", 4);
  /* timeseries by hour: carts outside PL are #6, #13 (hour 0) and #10 (hour 1) */
  CHECK_INT(run("\"type\":\"timeseries\",\"granularity\":\"hour\",\"filter\":{\"and\":["
                "{\"dim\":\"event\",\"value\":\"cart\"},{\"not\":{\"dim\":\"country\",\"value\":\"PL\"}}]}"), 200);
  CHECK_AT_NUM("points.0.count", 2);
  CHECK_AT_NUM("points.1.count", 1);
  CHECK(at("points.2") == NULL);
  CHECK_AT_STR("granularity", "hour");
  /* the late record counts once the scan reads to the log's end */
  CHECK_INT(run("\"type\":\"totals\",\"filter\":{\"or\":[{\"dim\":\"event\",\"value\":\"view\"}]}"), 200);
  CHECK_AT_NUM("count", 7);
  limits.late_us = -1;
  CHECK_INT(run("\"type\":\"totals\",\"filter\":{\"or\":[{\"dim\":\"event\",\"value\":\"view\"}]}"), 200);
  CHECK_AT_NUM("count", 8);
  CHECK_AT_NUM("scanned", 24);
  limits.late_us = 0; /* the default: to the log's end */
  CHECK_INT(run("\"type\":\"totals\",\"filter\":{\"or\":[{\"dim\":\"event\",\"value\":\"view\"}]}"), 200);
  CHECK_AT_NUM("count", 8);
  limits.late_us = 3600LL * 1000000;
}

TEST(test_groupby) {
  CHECK_INT(run("\"type\":\"groupBy\",\"groupBy\":[\"country\",\"device_type\"]"), 200);
  CHECK_AT_NUM("groupCount", 7);
  static const struct {
    const char *country, *device;
    int count, uniques;
  } want[] = {{"PL", "mobile", 6, 2}, {"PL", "desktop", 5, 3}, {"US", "mobile", 3, 1},
              {"DE", "desktop", 2, 1}, {"DE", "mobile", 2, 1}, {"US", "desktop", 2, 1},
              {"null", "mobile", 1, 1}};
  for (int i = 0; i < 7; i++) {
    char p[64];
    snprintf(p, sizeof p, "rows.%d.country", i);
    CHECK_AT_STR(p, want[i].country);
    snprintf(p, sizeof p, "rows.%d.device_type", i);
    CHECK_AT_STR(p, want[i].device);
    snprintf(p, sizeof p, "rows.%d.count", i);
    CHECK_AT_NUM(p, want[i].count);
    snprintf(p, sizeof p, "rows.%d.uniques", i);
    CHECK_AT_NUM(p, want[i].uniques);
  }
  /* by revenue, two rows, with a filter */
  CHECK_INT(run("\"type\":\"groupBy\",\"groupBy\":[\"country\"],\"orderBy\":\"sum\",\"limit\":1,"
                "\"filter\":{\"not\":{\"dim\":\"utm_source\",\"value\":\"google\"}}"), 200);
  CHECK_AT_STR("rows.0.country", "PL");
  CHECK_AT_NUM("rows.0.sum", 100);
  CHECK(at("rows.1") == NULL);
  CHECK_AT_NUM("groupCount", 4);
  /* ascending by count */
  CHECK_INT(run("\"type\":\"groupBy\",\"groupBy\":[\"event\"],\"order\":\"asc\""), 200);
  CHECK_AT_STR("rows.0.event", "$page");
  CHECK_AT_NUM("rows.0.count", 2);
  CHECK_AT_STR("rows.4.event", "cart");
  CHECK_AT_NUM("rows.4.count", 8);
  /* bounded groups: the first 3 seen stay, the rest (8 events) fold into "(other)" */
  limits.max_groups = 3;
  CHECK_INT(run("\"type\":\"groupBy\",\"groupBy\":[\"country\",\"device_type\"]"), 200);
  CHECK_AT_NUM("groupCount", 4);
  CHECK_AT_NUM("otherEvents", 8);
  CHECK_AT_STR("rows.0.country", "(other)");
  CHECK(cJSON_IsTrue(at("rows.0.other")));
  CHECK_AT_NUM("rows.0.count", 8);
  CHECK_AT_NUM("rows.0.uniques", 3);
  limits.max_groups = 0;
  /* uniques beyond the exact threshold: an estimate, said so */
  limits.exact_uniques = 2;
  CHECK_INT(run("\"type\":\"groupBy\",\"groupBy\":[\"browser\"]"), 200);
  CHECK_AT_NUM("rows.0.uniques", 9);
  CHECK(cJSON_IsFalse(at("uniquesExact")));
  limits.exact_uniques = 0;
  CHECK_INT(run("\"type\":\"groupBy\",\"groupBy\":[\"browser\"]"), 200);
  CHECK(cJSON_IsTrue(at("uniquesExact")));
  CHECK_AT_STR("rows.0.browser", "null");
  CHECK_AT_NUM("rows.0.count", 21);
}

#define FUNNEL_IN(window)                                                                 \
  "\"type\":\"funnel\",\"window\":\"" window "\",\"steps\":[{\"event\":\"view\"},{\"event\":\"cart\"},"      \
  "{\"event\":\"checkout\"},{\"event\":\"Order Completed\"}]"
static const char *const FUNNEL =
    "\"type\":\"funnel\",\"window\":\"1h\",\"steps\":[{\"event\":\"view\"},{\"event\":\"cart\"},"
    "{\"event\":\"checkout\"},{\"event\":\"Order Completed\"}]";

TEST(test_funnel) {
  char q[1024];
  snprintf(q, sizeof q, "%s", FUNNEL);
  CHECK_INT(run(q), 200);
  /* step 1: u1 u2 u4 u5 u6 u3; 2: u1 u2 u4 (late arrival, in time order) u6 — not u5
   * (cart 3700 s after), u3 (cart before view), u7 and u9 (no view in range); 3, 4: u1 u6 */
  CHECK_AT_NUM("steps.0.users", 6);
  CHECK_AT_NUM("steps.1.users", 4);
  CHECK_AT_NUM("steps.2.users", 2);
  CHECK_AT_NUM("steps.3.users", 2);
  CHECK_AT_NUM("steps.0.conversionFromPrevious", 1);
  CHECK_AT_NUM("steps.1.conversionFromPrevious", 4.0 / 6);
  CHECK_AT_NUM("steps.2.conversionFromPrevious", 0.5);
  CHECK_AT_NUM("steps.3.conversionFromPrevious", 1);
  CHECK_AT_NUM("steps.3.conversionFromFirst", 2.0 / 6);
  CHECK_AT_NUM("steps.1.dropOff", 2);
  CHECK_AT_NUM("steps.2.dropOff", 2);
  CHECK_AT_NUM("steps.3.dropOff", 0);
  /* view -> cart: u1 10, u2 60, u4 10, u6 10 (from its second view) -> 10 */
  CHECK_AT_NUM("steps.1.medianSecondsFromPrevious", 10);
  /* cart -> checkout: u1 10, u6 5 -> 7.5 */
  CHECK_AT_NUM("steps.2.medianSecondsFromPrevious", 7.5);
  CHECK_AT_NUM("steps.3.medianSecondsFromPrevious", 7.5);
  CHECK(cJSON_IsNull(at("steps.0.medianSecondsFromPrevious")));
  CHECK_AT_NUM("window", 3600);
  /* a wider window lets u5's cart count */
  CHECK_INT(run(FUNNEL_IN("62m")), 200);
  CHECK_AT_NUM("steps.1.users", 5);
  CHECK_AT_NUM("window", 3720);
  /* breakdown by the first step's country: PL u1 u4 u3, DE u2 u5, US u6 */
  snprintf(q, sizeof q, "%s,\"breakdown\":\"country\"", FUNNEL);
  CHECK_INT(run(q), 200);
  CHECK_AT_STR("groups.0.value", "PL");
  CHECK_AT_NUM("groups.0.steps.0.users", 3);
  CHECK_AT_NUM("groups.0.steps.1.users", 2);
  CHECK_AT_NUM("groups.0.steps.3.users", 1);
  CHECK_AT_STR("groups.1.value", "DE");
  CHECK_AT_NUM("groups.1.steps.0.users", 2);
  CHECK_AT_NUM("groups.1.steps.1.users", 1);
  CHECK_AT_NUM("groups.1.steps.2.users", 0);
  CHECK_AT_NUM("groups.1.steps.1.medianSecondsFromPrevious", 60);
  CHECK_AT_STR("groups.2.value", "US");
  CHECK_AT_NUM("groups.2.steps.3.users", 1);
  CHECK_AT_NUM("groupCount", 3);
  /* a global filter: PL only */
  snprintf(q, sizeof q, "%s,\"filter\":{\"dim\":\"country\",\"value\":\"PL\"}", FUNNEL);
  CHECK_INT(run(q), 200);
  CHECK_AT_NUM("steps.0.users", 3);
  CHECK_AT_NUM("steps.1.users", 2);
  CHECK_AT_NUM("steps.3.users", 1);
  /* a step filter: checkout on mobile only (u1; u6 checked out on desktop) */
  CHECK_INT(run("\"type\":\"funnel\",\"steps\":[{\"event\":\"view\"},{\"event\":\"checkout\","
                "\"filter\":{\"dim\":\"device_type\",\"value\":\"mobile\"}}]"), 200);
  CHECK_AT_NUM("steps.0.users", 6);
  CHECK_AT_NUM("steps.1.users", 1);
  CHECK_AT_NUM("steps.1.medianSecondsFromPrevious", 20);
  CHECK_AT_NUM("window", 86400);
}

TEST(test_limits_and_errors) {
  limits.max_records = 5;
  CHECK_INT(run("\"type\":\"groupBy\",\"groupBy\":[\"country\"]"), 422);
  CHECK_AT_STR("error", "scan_limit");
  CHECK_AT_NUM("scanned", 5);
  limits.max_records = 0;
  limits.max_memory = 1;
  CHECK_INT(run("\"type\":\"groupBy\",\"groupBy\":[\"country\"]"), 422);
  limits.max_memory = 0;
  /* the rollups still answer one dimension value: without stores that is a 400 here, not
   * a scan (the log would have answered) */
  static const struct {
    const char *body, *field;
  } bad[] = {
      {"\"type\":\"groupBy\"", "groupBy"},
      {"\"type\":\"groupBy\",\"groupBy\":[\"country\",\"country\"]", "groupBy[1]"},
      {"\"type\":\"groupBy\",\"groupBy\":[\"a\",\"b\",\"c\",\"d\"]", "groupBy"},
      {"\"type\":\"groupBy\",\"groupBy\":[\"os\"]", "groupBy[0]"},
      {"\"type\":\"groupBy\",\"groupBy\":[\"event\"],\"orderBy\":\"avg\"", "orderBy"},
      {"\"type\":\"groupBy\",\"groupBy\":[\"event\"],\"limit\":1001", "limit"},
      {"\"type\":\"totals\",\"groupBy\":[\"event\"]", "groupBy"},
      {"\"type\":\"totals\",\"steps\":[]", "steps"},
      {"\"type\":\"funnel\",\"steps\":[{\"event\":\"a\"}]", "steps"},
      {"\"type\":\"funnel\",\"steps\":[{\"event\":\"a\"},{\"name\":\"b\"}]", "steps[1].name"},
      {"\"type\":\"funnel\",\"steps\":[{\"event\":\"a\"},{\"event\":\"\"}]", "steps[1].event"},
      {"\"type\":\"funnel\",\"steps\":[{\"event\":\"a\"},{\"event\":\"b\",\"filter\":{\"dim\":\"x\",\"value\":\"1\"}}]",
       "steps[1].filter.dim"},
      {"\"type\":\"funnel\",\"steps\":[{\"event\":\"a\"},{\"event\":\"b\"}],\"window\":\"1y\"", "window"},
      {"\"type\":\"funnel\",\"steps\":[{\"event\":\"a\"},{\"event\":\"b\"}],\"window\":\"91d\"", "window"},
      {"\"type\":\"funnel\",\"steps\":[{\"event\":\"a\"},{\"event\":\"b\"}],\"breakdown\":\"os\"", "breakdown"},
      {"\"type\":\"totals\",\"filter\":{\"and\":[]}", "filter.and"},
      {"\"type\":\"totals\",\"filter\":{\"and\":[{\"dim\":\"event\",\"value\":1}]}", "filter.and[0].value"},
      {"\"type\":\"totals\",\"filter\":{\"or\":[{\"not\":{\"dim\":\"event\",\"in\":[]}}]}", "filter.or[0].not.in"},
      {"\"type\":\"totals\",\"filter\":{\"not\":{\"dim\":\"event\",\"value\":\"a\"},\"and\":[]}", "filter"},
      {"\"type\":\"totals\",\"filter\":{\"dim\":\"event\",\"value\":\"a\",\"in\":[\"b\"]}", "filter"},
      {"\"type\":\"totals\",\"filter\":{\"nand\":[]}", "filter.nand"},
      {"\"type\":\"totals\",\"filter\":{\"not\":{\"not\":{\"not\":{\"not\":{\"not\":{\"not\":{\"not\":{\"not\":"
       "{\"dim\":\"event\",\"value\":\"a\"}}}}}}}}}", "filter.not.not.not.not.not.not.not.not"},
      {"\"type\":\"kpi\",\"kpi\":\"revenue\",\"filter\":{\"not\":{\"dim\":\"event\",\"value\":\"a\"}}", "filter"},
      {"\"type\":\"topN\",\"dimension\":\"event\",\"filter\":{\"not\":{\"dim\":\"event\",\"value\":\"a\"}}", "filter"},
      {"\"type\":\"timeseries\",\"granularity\":\"second\",\"filter\":{\"not\":{\"dim\":\"event\",\"value\":\"a\"}}",
       "granularity"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    int st = run(bad[i].body);
    if (st != 400 || strcmp(str("field"), bad[i].field))
      FAILF("case %zu %s: status %d field %s", i, bad[i].body, st, str("field"));
  }
  /* 65 nodes */
  buf_t b = BUF_INIT;
  buf_puts(&b, "\"type\":\"totals\",\"filter\":{\"or\":[");
  for (int i = 0; i < 64; i++) buf_printf(&b, "%s{\"dim\":\"event\",\"value\":\"e%d\"}", i ? "," : "", i);
  buf_puts(&b, "]}");
  CHECK_INT(run(b.data), 400);
  CHECK(strstr(str("message"), "at most 64 nodes") != NULL);
  buf_free(&b);
}

int main(void) {
  if (logtest_init("scan") != 0) return 1;
  /* once in one segment, once in several (1500-byte roll size): the seek by time
   * crosses segments and indexes */
  static const uint64_t seg_bytes[] = {0, 1500};
  for (int i = 0; i < 2; i++) {
    char dir[16];
    snprintf(dir, sizeof dir, "scan%d", i);
    if (fill(dir, seg_bytes[i]) != 0 || (i ? segments(dir) < 3 : segments(dir) != 1)) {
      printf("cannot set up the log (%d segments)\n", segments(dir));
      return 1;
    }
    RUN(test_filters);
    RUN(test_groupby);
    RUN(test_funnel);
    RUN(test_limits_and_errors);
    close_log(lg);
  }
  cJSON_Delete(answer);
  return logtest_finish("test_scan");
}
