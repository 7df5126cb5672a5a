/* evtest.h: run enrichment steps on JSON text in tests. The step sees an evdoc, as in the
 * collector; the test sees the written document parsed back by cJSON (caller frees). */
#ifndef SLUICE_EVTEST_H
#define SLUICE_EVTEST_H

#include <cjson/cJSON.h>
#include <string.h>

#include "enrich.h"
#include "evdoc.h"

static inline cJSON *evtest_written(evdoc_t *d) {
  buf_t b = BUF_INIT;
  evdoc_write(d, &b);
  cJSON *out = cJSON_ParseWithLength(b.data ? b.data : "", b.len);
  buf_free(&b);
  return out;
}

/* Load json, run one step (rc receives its result), return the written event. */
static inline cJSON *evtest_step(enrich_step_fn fn, void *state, const char *json,
                                 const enrich_ctx_t *ctx, int *rc) {
  evdoc_t *d = evdoc_new();
  cJSON *out = NULL;
  if (evdoc_load(d, json, strlen(json)) == 0) {
    enrich_ctx_t local = *ctx;
    enrich_ctx_prepare(&local);
    char msg[200];
    int r = fn(d, &local, state, msg, sizeof msg);
    if (rc) *rc = r;
    out = evtest_written(d);
  }
  evdoc_free(d);
  return out;
}

/* Load json, run a whole chain (rc receives enrich_event's result, msg its message). */
static inline cJSON *evtest_chain(enrich_t *e, const char *json, const enrich_ctx_t *ctx, int *rc,
                                  char *msg, size_t msglen) {
  evdoc_t *d = evdoc_new();
  cJSON *out = NULL;
  if (evdoc_load(d, json, strlen(json)) == 0) {
    enrich_ctx_t local = *ctx;
    enrich_ctx_prepare(&local);
    int r = enrich_event(e, d, &local, msg, msglen);
    if (rc) *rc = r;
    out = evtest_written(d);
  }
  evdoc_free(d);
  return out;
}

#endif
