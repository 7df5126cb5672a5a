/* Fuzz target: a hostile POST /v1/query body through query_run against small rollups
 * and, for filters, groupBy and funnels, a small log scanned on the spot (written once to
 * a temp dir, removed at exit). Checks: no crash or leak, the status is 200, 400 or 422,
 * and the answer is valid JSON. */
#include <cjson/cJSON.h>
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "log.h"
#include "util/clock.h"

#include "kpi.h"
#include "process.h"
#include "query.h"
#include "rollup.h"

#define SEC 1000000LL
static const int64_t T0 = 1795300000LL * SEC;
static int64_t now_us = 1795300000LL * SEC + 3600 * SEC;
static int64_t fixed_now(void *ctx) { return *(int64_t *)ctx; }

static const char *const ev_dims[] = {PROCESS_DIMS};
static const char *const se_dims[] = {"session"};

static char dir[256];
static log_t *lg;

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *f) {
  (void)st, (void)flag, (void)f;
  return remove(p);
}

static void cleanup(void) {
  log_close(lg);
  nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static void on_ack(void *ud, int status, uint64_t first) { *(int *)ud = status == 0 ? 1 : -1; }

/* 40 events a minute apart over T0's first 40 minutes: 4 users, 3 countries, a funnel. */
static void make_log(void) {
  snprintf(dir, sizeof dir, "%s/sluice-fuzz-query-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
  if (!mkdtemp(dir)) abort();
  uv_loop_t loop;
  uv_loop_init(&loop);
  log_opts_t o = {.dir = dir, .sync = LOG_SYNC_OFF, .loop = &loop, .index_interval = 512};
  char err[256];
  log_t *w = log_open(&o, NULL, err, sizeof err);
  if (!w) abort();
  static const char *const names[] = {"view", "cart", "checkout", "Order Completed"};
  static const char *const countries[] = {"PL", "DE", "US"};
  char vals[40][300];
  log_entry_t e[40];
  for (int i = 0; i < 40; i++) {
    char iso[25];
    clock_format_iso(T0 + i * 60 * SEC, iso);
    int n = snprintf(vals[i], sizeof vals[i],
                     "{\"type\":\"track\",\"event\":\"%s\",\"anonymousId\":\"u%d\",\"timestamp\":\"%s\","
                     "\"context\":{\"location\":{\"country\":\"%s\"},\"device\":{\"type\":\"%s\"}},"
                     "\"properties\":{\"revenue\":%d}}",
                     names[(i / 4) % 4], i % 4, iso, countries[i % 3], i % 2 ? "mobile" : "desktop", i);
    e[i] = (log_entry_t){.time_us = T0 + i * 60 * SEC, .value = vals[i], .value_len = (uint32_t)n};
  }
  int done = 0;
  if (log_append(w, e, 40, on_ack, &done) != 0) abort();
  while (!done) uv_run(&loop, UV_RUN_ONCE);
  log_close(w);
  uv_run(&loop, UV_RUN_DEFAULT);
  uv_loop_close(&loop);
  log_opts_t ro = {.dir = dir, .read_only = 1};
  if (!(lg = log_open(&ro, NULL, err, sizeof err))) abort();
  atexit(cleanup);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static rollup_t *ev, *se;
  static kpi_t *kp;
  static config_kpi_t defs[1] = {
      {.name = (char *)"atc", .num = {.present = 1, .event = (char *)"$page"},
       .den = {.present = 1, .metric = CONFIG_KPI_UNIQUES}}};
  static const config_kpis_t list = {defs, 1};
  if (!ev) {
    make_log();
    kp = kpi_new(fixed_now, &now_us);
    kpi_set_custom(kp, &list);
    kpi_cost(kp, T0, "bf", 10);
    rollup_opts_t eo = {.dims = ev_dims, .ndims = PROCESS_NDIMS, .now_us = fixed_now, .now_ctx = &now_us};
    rollup_opts_t so = {.dims = se_dims, .ndims = 1, .now_us = fixed_now, .now_ctx = &now_us};
    ev = rollup_new(&eo);
    se = rollup_new(&so);
    const char *page[PROCESS_NDIMS] = {"$page", "/", "google", "cpc", "bf", "search", "DE", "mobile", "Chrome"};
    const char *order[PROCESS_NDIMS] = {"Order Completed", "/checkout", "google"};
    const char *v[1] = {"start"};
    for (int i = 0; i < 50; i++) {
      rollup_add(ev, T0 + i * 37 * SEC, i % 3 ? page : order, (uint64_t)i * 0x9e3779b97f4a7c15ull, i % 3 ? 0 : 20);
      rollup_add(se, T0 + i * 37 * SEC, v, (uint64_t)i, 0);
      double vals[2] = {0, 0};
      kpi_custom_observe(kp, T0 + i * 37 * SEC, page[0], page, (uint64_t)i * 0x9e3779b97f4a7c15ull, vals);
    }
  }
  static const scan_limits_t lim = {.max_records = 1000, .max_time_us = 1000000,
                                    .max_memory = 4u << 20, .max_groups = 8, .exact_uniques = 2};
  query_stores_t st = {ev, se, "Order Completed", lg, &lim, kp};
  buf_t out = BUF_INIT;
  int status = query_run(&st, (const char *)data, size, now_us, &out);
  if (status != 200 && status != 400 && status != 422) __builtin_trap();
  cJSON *j = cJSON_ParseWithLength(out.data ? out.data : "", out.len);
  if (!j) __builtin_trap();
  cJSON_Delete(j);
  buf_free(&out);
  return 0;
}
