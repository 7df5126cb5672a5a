/* Fuzz target: an untrusted request body through the event path — JSON parse, Segment
 * validation (event.c) and the enrichment chain (enrich.c) — as /v1/batch and the
 * single-event endpoints run it. The first byte picks the endpoint's implied type. */
#include <stdint.h>
#include <string.h>

#include "config.h"
#include "enrich.h"
#include "event.h"

static config_t cfg;
static enrich_t *chain;

static void one(cJSON *ev, const char *implied) {
  event_error_t err;
  if (event_validate(ev, implied, &err) != 0) {
    if (!err.code || !err.message[0]) __builtin_trap();
    return;
  }
  size_t klen;
  const char *key = event_key(ev, &klen);
  if (!key || klen == 0) __builtin_trap(); /* a valid event always has an identity */
  enrich_ctx_t ctx = {1795376225000000LL, "203.0.113.77", "fuzz-agent", NULL};
  char msg[200];
  if (enrich_event(chain, ev, &ctx, msg, sizeof msg) != 0) return;
  char *out = cJSON_PrintUnformatted(ev);
  if (!out || strstr(out, "203.0.113.77")) __builtin_trap(); /* raw IP must never survive */
  cJSON_free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (!chain) {
    config_defaults(&cfg);
    chain = enrich_new(&cfg);
  }
  if (size < 1) return 0;
  static const char *implied[] = {NULL, "track", "page", "screen", "identify", "group", "alias"};
  const char *type = implied[data[0] % 7];
  cJSON *root = cJSON_ParseWithLength((const char *)data + 1, size - 1);
  if (!root) return 0;
  cJSON *batch = type ? NULL : cJSON_GetObjectItemCaseSensitive(root, "batch");
  if (cJSON_IsArray(batch)) {
    for (cJSON *ev = batch->child; ev; ev = ev->next) one(ev, NULL);
  } else {
    one(root, type);
  }
  cJSON_Delete(root);
  return 0;
}
