/* act: the last stage — carries out what the rules engine decided.
 *
 * One action_sink_fn (act_sink) takes every action_t (action.h) and hands it to its
 * sink by kind: ACTION_OFFER to the visitor's live stream (offers.h), ACTION_WEBHOOK to
 * the durable webhook outbox (webhook.h), ACTION_EMIT back into the event log through
 * the collector's own path (collect_emit: validation, enrichment, dedup by messageId =
 * the action key, so an emit decided again after a replay is stored once). Segment
 * edits and alerts belong to the stages that own profiles and KPIs; here they are
 * refused (-ENOTSUP) and counted.
 *
 * HTTP routes owned here (besides the offers routes of offers.h):
 *   POST /v1/actions             admin key: submit one action as JSON to the sinks, the
 *                                way the rules engine would (test a webhook endpoint,
 *                                send a one-off offer, emit an event)
 *   POST /v1/webhooks/redeliver  admin key: {"key": K} or {"all": true} requeues dead
 *                                letters (what `sluice redeliver` calls)
 * Single-threaded (the loop's thread). */
#ifndef SLUICE_ACT_H
#define SLUICE_ACT_H

#include <stddef.h>
#include <uv.h>

#include "action.h"
#include "collect.h"
#include "config.h"
#include "http.h"
#include "metrics.h"
#include "sse.h"

typedef struct act act_t;

typedef struct act_deps {
  const config_t *cfg;  /* borrowed; keys resolved */
  uv_loop_t *loop;      /* borrowed */
  sse_hub_t *hub;       /* borrowed: visitor streams */
  collect_t *collect;   /* borrowed: emitted events */
} act_deps_t;

/* Build the stage: offers (secret in the data dir), webhooks (journal in
 * <data-dir>/webhooks, endpoints from webhook-endpoints; pending deliveries resume).
 * Returns NULL with a message in err. */
act_t *act_new(const act_deps_t *deps, char *err, size_t errlen);
/* Stop delivering (transfers abort, stay pending) and close loop handles; run the loop,
 * then act_free. */
void act_stop(act_t *a);
/* Replace the webhook endpoints by those of the webhook-endpoints option plus extra[0..n)
 * (those the rules files declare; copied). Returns 0, or -EINVAL with a message in err
 * (a bad endpoint or a name given twice: nothing replaced). */
struct webhook_endpoint;
int act_set_endpoints(act_t *a, const struct webhook_endpoint *extra, size_t n, char *err,
                      size_t errlen);
void act_free(act_t *a);

/* The action_sink_fn of the rules engine: ud is the act_t. Returns what the kind's sink
 * returns (0 when taken), -ENOTSUP for kinds not carried out here, -EPERM for an offer,
 * webhook or emit without consent_marketing (counted; the engine should never send one). */
int act_sink(void *ud, const action_t *a);

/* If r is an act route (offers, push, actions, redeliver), answer it and return 1. */
int act_handle(act_t *a, http_req_t *r);

/* Parse the JSON of POST /v1/actions into out, whose strings point into *holder (OUT,
 * the caller frees it with cJSON_Delete; NULL on error). Fills err with a message and
 * *field with the offending field on error. Returns 0 or -EINVAL. */
struct cJSON;
int act_parse_action(const char *json, size_t len, int64_t now_us, action_t *out /* OUT */,
                     struct cJSON **holder /* OUT */, const char **field /* OUT */, char *err,
                     size_t errlen);

/* What a start found, for the log line: webhook endpoints configured, actions pending
 * (resumed from the journal), dead letters kept. OUT parameters. */
void act_summary(const act_t *a, size_t *endpoints, uint64_t *pending, uint64_t *dead);

/* Counters and gauges for /metrics, written into g (capacity cap). Returns how many. */
size_t act_gauges(const act_t *a, metrics_gauge_t *g, size_t cap);

#endif
