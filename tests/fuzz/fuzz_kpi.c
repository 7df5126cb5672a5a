/* Fuzz target: kpi_deserialize (the KPI part of the process snapshot) on hostile bytes.
 * Oracles: no crash or leak; an accepted encoding serializes to bytes that decode again
 * and serialize to the same bytes; reading every cohort and lifetime value of an accepted
 * state is safe. */
#include <stdint.h>
#include <string.h>

#include "kpi.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  kpi_t *k = NULL;
  if (kpi_deserialize(data, size, NULL, NULL, &k) != 0) {
    if (k) __builtin_trap();
    return 0;
  }
  for (int week = 0; week < 2; week++) {
    int64_t c = kpi_newest_cohort(k, week);
    for (int off = -1; off <= KPI_COHORT_DAYS; off++) (void)kpi_retention(k, week, c, off);
  }
  kpi_clv_t v;
  kpi_clv(k, -1, &v);
  kpi_clv(k, kpi_newest_cohort(k, 1), &v);
  buf_t a = BUF_INIT, b = BUF_INIT;
  kpi_serialize(k, &a);
  kpi_t *again = NULL;
  if (kpi_deserialize(a.data, a.len, NULL, NULL, &again) != 0) __builtin_trap();
  kpi_serialize(again, &b);
  if (a.len != b.len || memcmp(a.data, b.data, a.len) != 0) __builtin_trap();
  kpi_free(again);
  kpi_free(k);
  buf_free(&a);
  buf_free(&b);
  return 0;
}
