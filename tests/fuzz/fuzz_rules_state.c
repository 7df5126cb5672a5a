/* Fuzz target: hostile checkpoint bytes through rules_deserialize (the CRC is fixed up
 * first so the structure checks are reached), then timers and a serialize round trip.
 * Checks: no crash or leak; an accepted state serializes to bytes that load again and
 * serialize to themselves (limits and alerts of rules not in the set are dropped, so the
 * first round may differ from the input). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "rules.h"
#include "util/crc32c.h"

static const char *const rules_text =
    "rule \"cart\" {\n on track \"Product Added\"\n wait 30m unless track \"Order Completed\"\n"
    " do segment add \"a\"\n cap 1 per user per 1d\n limit 5 per hour\n}\n"
    "alert \"k\" { kpi \"x\" over 1h below 1 }\n";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size > (1u << 20)) return 0;
  unsigned char *b = malloc(size + 8);
  memcpy(b, data, size);
  if (size >= 8) {
    uint32_t crc = crc32c(0, b, size - 4);
    for (int i = 0; i < 4; i++) b[size - 4 + (size_t)i] = (unsigned char)(crc >> (8 * i));
  }
  rules_opts_t o = {.max_users = 64, .history_per_user = 16, .timers_per_user = 4};
  rules_t *r = rules_new(&o);
  char err[256];
  rules_src_t src = {"s", rules_text, strlen(rules_text)};
  rules_swap(r, rules_set_parse(&src, 1, err, sizeof err));
  if (rules_deserialize(r, b, size) == 0) {
    buf_t out = BUF_INIT, again = BUF_INIT;
    rules_serialize(r, &out);
    if (rules_deserialize(r, out.data, out.len) != 0) abort();
    rules_serialize(r, &again);
    if (out.len != again.len || memcmp(out.data, again.data, out.len)) abort();
    buf_free(&out);
    buf_free(&again);
    rules_advance(r, INT64_MAX);
  }
  rules_free(r);
  free(b);
  return 0;
}
