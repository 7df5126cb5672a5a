/* webhook: the act stage's webhook sink — durable, signed, retried HTTP POSTs.
 *
 * Design. An action is written to the outbox journal (outbox.h) and made durable
 * (fdatasync, shared by all actions written meanwhile, on the thread pool) BEFORE its
 * first attempt; a 2xx marks it done; on start the journal's pending entries are tried
 * again. The idempotency key is the journal's primary key, so an action the rules
 * engine decides again after a crash replay (same key) is recognised — pending, dead or
 * delivered within webhook-remember-s — and not delivered twice by us; receivers also
 * get it as the Idempotency-Key header for the case where our "done" mark did not reach
 * the disk before a crash. Each attempt is a POST of the JSON body with
 *   Content-Type: application/json
 *   Idempotency-Key: <action key>
 *   Sluice-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>
 * and a timeout; the response body is read and thrown away (at most 64 KiB), redirects
 * are not followed, only http and https are spoken. A failure (connect error, timeout,
 * non-2xx) is retried after webhook-retry-base-ms doubling per attempt up to
 * webhook-retry-max-ms, each wait drawn uniformly from its upper half (jitter, so
 * receivers recovering from an outage are not hit by every retry at once). After
 * webhook-max-attempts the entry becomes a dead letter (kept in the journal, also
 * written as a JSON line to <dir>/dead-letters.jsonl for people to read) until
 * webhook_redeliver requeues it. Transfers run on libcurl's multi interface driven by
 * the libuv loop (curl_multi_socket_action with a uv_poll per socket and one uv_timer),
 * at most max_in_flight at once; due entries wait in a heap ordered by their next
 * attempt. When the journal's bodies would pass outbox_max_bytes a new action is
 * refused (counted), never dropped silently. Single-threaded (the loop's thread); core
 * module: never logs. */
#ifndef SLUICE_WEBHOOK_H
#define SLUICE_WEBHOOK_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "action.h"
#include "config.h"

typedef struct webhook webhook_t;

typedef struct webhook_endpoint {
  const char *name;    /* 1..64 of [A-Za-z0-9_.-] */
  const char *url;     /* http:// or https:// */
  const char *secret;  /* signing secret, non-empty */
  uint32_t timeout_ms; /* 0: the stage's default */
} webhook_endpoint_t;

typedef struct webhook_opts {
  uv_loop_t *loop;             /* borrowed */
  const char *dir;             /* journal directory (created) */
  uint32_t timeout_ms;         /* default 10000 */
  uint32_t max_attempts;       /* default 10 */
  uint32_t retry_base_ms;      /* default 1000 */
  uint32_t retry_max_ms;       /* default 3600000 */
  uint32_t max_in_flight;      /* default 64 */
  uint64_t outbox_max_bytes;   /* default 64 MiB */
  int64_t remember_us;         /* default 7 days */
  uint64_t remember_max;       /* delivered keys kept at most; default 1,000,000 */
} webhook_opts_t;

/* Fill opts from cfg (dir = <data-dir>/webhooks, written into dirbuf of dirlen). */
void webhook_opts_from_config(const config_t *cfg, uv_loop_t *loop, webhook_opts_t *opts /* OUT */,
                              char *dirbuf, size_t dirlen);

/* Open the journal and resume its pending entries (their first attempt is due at once).
 * Returns NULL with a message in err. */
webhook_t *webhook_new(const webhook_opts_t *opts, char *err, size_t errlen);

/* Replace the endpoints (copied). Pending entries for a name that no longer exists fail
 * their attempts until they are dead letters. Returns 0, or -EINVAL with a message for
 * a bad name, URL or secret, or a name given twice (nothing replaced). */
int webhook_set_endpoints(webhook_t *w, const webhook_endpoint_t *eps, size_t n, char *err,
                          size_t errlen);
/* Parse one endpoint of the webhook-endpoints option, "NAME URL secret=S [timeout-ms=N]",
 * into out, whose strings point into buf (capacity buflen, which receives a copy of
 * spec). Returns 0, or -EINVAL with a message in err. */
int webhook_parse_endpoint(const char *spec, webhook_endpoint_t *out, char *buf, size_t buflen,
                           char *err, size_t errlen);

/* action_sink_fn for ACTION_WEBHOOK (target names the endpoint). Returns 0 when the
 * action was written to the journal or its key was already known (a replayed decision;
 * counted as a duplicate); -ENOENT for an unknown endpoint; -ENOSPC when the journal is
 * full (counted as refused); -E2BIG for a payload past 1 MiB; -EINVAL for another kind
 * or a payload that is not a JSON object; -EIO when the journal cannot be written. */
int webhook_sink(void *w, const action_t *a);

/* Requeue dead letters: the one with key, or all when key is NULL; their attempts start
 * over. Returns how many, or a negative errno. */
long webhook_redeliver(webhook_t *w, const char *key);

typedef struct webhook_stats {
  uint64_t delivered, retries, dead_letters, refused, duplicates, failed_attempts;
  uint64_t pending, dead, in_flight;
} webhook_stats_t;
void webhook_stats(const webhook_t *w, webhook_stats_t *out /* OUT */);

/* Abort transfers (they stay pending in the journal) and close the loop handles. Run
 * the loop afterwards so the handles finish closing, then webhook_free. */
void webhook_stop(webhook_t *w);
/* Sync and close the journal, free. NULL no-op. */
void webhook_free(webhook_t *w);

#endif
