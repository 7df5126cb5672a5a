/* action: what the rules engine decides and the act stage carries out — the one record
 * that flows from decide (rules.h) to act (offers over SSE, webhooks, emitted events,
 * segment edits, alerts).
 *
 * Design. The rules engine runs inside the process stage, which reads the log; it never
 * calls a sink directly but hands each action to an action_sink_fn. Because everything
 * the engine knows is derived from the log, a restart replays the events after the last
 * checkpoint and may decide some actions a second time. Every action therefore carries
 * an idempotency key that is a pure function of what caused it (the rule, the log offset
 * of the triggering event or the timer, and the user), so a replayed decision produces
 * the same key and the sinks drop what they already carried out (the webhook outbox
 * keeps delivered keys; an emitted event uses the key as its messageId, which the
 * collector's dedup drops). Offers are only worth showing to a page that is open now:
 * a sink may skip offers whose decision time is older than a few seconds (replayed).
 *
 * Strings are borrowed for the call; a sink that keeps one copies it. */
#ifndef SLUICE_ACTION_H
#define SLUICE_ACTION_H

#include <stddef.h>
#include <stdint.h>

typedef enum {
  ACTION_OFFER = 1,     /* push payload to the visitor's open pages (SSE) */
  ACTION_WEBHOOK,       /* POST payload to the endpoint named target */
  ACTION_EMIT,          /* append an event named target, properties payload, to the log */
  ACTION_SEGMENT_ADD,   /* add the profile to segment target */
  ACTION_SEGMENT_REMOVE,/* remove it */
  ACTION_ALERT          /* a KPI alert changed state: payload describes it */
} action_kind_t;

/* Longest idempotency key, text form: "<16 hex>-<16 hex>" plus NUL. */
#define ACTION_KEY_MAX 40

typedef struct action {
  action_kind_t kind;
  const char *rule;        /* name of the rule (or alert) that decided it */
  const char *target;      /* offer template, webhook endpoint, event name, segment or
                              alert name */
  const char *payload;     /* a JSON object (NUL-terminated), never NULL ("{}") */
  const char *user_id;     /* the person: userId when known, else NULL */
  const char *anonymous_id;/* their anonymousId when known, else NULL (offers go to the
                              visitor's channel, which is keyed by it) */
  char key[ACTION_KEY_MAX];/* idempotency key (see above), NUL-terminated */
  int64_t decided_us;      /* event or timer time the decision was made at */
  uint64_t offset;         /* log offset of the triggering event (timers: of the event
                              that armed them) */
  int consent_marketing;   /* 1 when the person consented to marketing; the engine never
                              decides an offer, webhook or emit without it */
} action_t;

/* Receives one action; returns 0 or a negative errno (the caller counts failures but
 * does not retry: durable retry is the sink's job). */
typedef int (*action_sink_fn)(void *ud, const action_t *a);

#endif
