/* Fuzz target: costs_event (the POST /v1/costs body) on hostile bytes. Oracles: no crash
 * or leak; an accepted body gives one JSON object naming the cost event, with a finite
 * cost; a rejected one gives a message and no output. */
#include <cJSON.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "costs.h"
#include "kpi.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  buf_t out = BUF_INIT;
  char err[128] = "";
  int rc = costs_event((const char *)data, size, &out, err, sizeof err);
  if (rc != 0) {
    if (out.len || !err[0]) __builtin_trap();
  } else {
    cJSON *ev = cJSON_ParseWithLength(out.data, out.len);
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(ev, "event");
    const cJSON *props = cJSON_GetObjectItemCaseSensitive(ev, "properties");
    const cJSON *cost = cJSON_GetObjectItemCaseSensitive(props, "cost");
    if (!cJSON_IsString(name) || strcmp(name->valuestring, KPI_COST_EVENT) ||
        !cJSON_IsNumber(cost) || !isfinite(cost->valuedouble))
      __builtin_trap();
    cJSON_Delete(ev);
  }
  buf_free(&out);
  return 0;
}
