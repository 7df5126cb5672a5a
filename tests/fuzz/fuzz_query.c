/* Fuzz target: a hostile POST /v1/query body through query_run against small rollups.
 * Checks: no crash or leak, the status is 200 or 400, and the answer is valid JSON. */
#include <cjson/cJSON.h>
#include <stdint.h>
#include <string.h>

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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static rollup_t *ev, *se;
  static kpi_t *kp;
  static config_kpi_t defs[1] = {
      {.name = (char *)"atc", .num = {.present = 1, .event = (char *)"$page"},
       .den = {.present = 1, .metric = CONFIG_KPI_UNIQUES}}};
  static const config_kpis_t list = {defs, 1};
  if (!ev) {
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
  query_stores_t st = {ev, se, "Order Completed", kp};
  buf_t out = BUF_INIT;
  int status = query_run(&st, (const char *)data, size, now_us, &out);
  if (status != 200 && status != 400) __builtin_trap();
  cJSON *j = cJSON_ParseWithLength(out.data ? out.data : "", out.len);
  if (!j) __builtin_trap();
  cJSON_Delete(j);
  buf_free(&out);
  return 0;
}
