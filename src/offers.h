/* offers: the visitor's own live stream — offers and admin pushes into the open page.
 *
 *   POST /v1/offers/token   write key, {"anonymousId": ID} -> {"token", "expiresAt"}
 *   GET  /v1/offers         ?anonymousId=ID&token=T: an SSE stream of that visitor's
 *                           offers and pushes (every open tab subscribes to the same one)
 *   POST /v1/push           admin key, {"anonymousId": ID | "all": true, "template",
 *                           "fields"}: one message to a visitor, or to everyone online
 *
 * Design. A visitor's channel is "offers:<anonymousId>" on the SSE hub (sse.h), which
 * gives heartbeats, a replay ring for Last-Event-ID and a bounded queue per connection.
 * The anonymousId is a random UUID the browser keeps, so knowing it is what makes a
 * stream someone's own; the channel token adds that a stream URL which leaks (logs,
 * referrers, a shared screenshot) stops working when it expires, and that nobody can
 * open a stream for an id without first asking the server with the write key. A token
 * is "v1.<expiry unix seconds>.<64 hex>", the hex being HMAC-SHA256 under a server
 * secret (<data-dir>/offers.key, 32 random bytes, mode 0600) of the id and the expiry,
 * so it is valid for that id only, until then; it is compared in constant time.
 * Tokens are issued by a separate endpoint rather than in the batch response so the
 * ingestion path stays as it is and a page asks once per token lifetime, not per batch.
 * A push to "all" is written to every visitor channel that has a subscriber right now
 * (a flash sale reaches who is online, not who comes later); each channel's ring keeps
 * it for Last-Event-ID like any other message. Offers that the rules engine decided
 * more than offers-max-age-ms ago (a replay after a restart) are skipped and counted:
 * the page they were meant for is gone. Single-threaded (the loop's thread). */
#ifndef SLUICE_OFFERS_H
#define SLUICE_OFFERS_H

#include <stddef.h>
#include <stdint.h>

#include "action.h"
#include "config.h"
#include "http.h"
#include "metrics.h"
#include "sse.h"

typedef struct offers offers_t;

#define OFFERS_KEY_BYTES 32
/* Longest token text, NUL included. */
#define OFFERS_TOKEN_MAX 96
/* Longest anonymousId accepted (bytes). */
#define OFFERS_MAX_ID 128
/* SSE event type of offers and pushes. */
#define OFFERS_EVENT "offer"

/* ---- Tokens (pure functions: no state beyond the key) ---- */

/* Write the token for anonymous id id (length n), valid until expires_s (Unix seconds),
 * into out. Returns its length, or -EINVAL for an empty or too long id. */
int offers_token_sign(const unsigned char key[OFFERS_KEY_BYTES], const char *id, size_t n,
                      int64_t expires_s, char out[OFFERS_TOKEN_MAX]);
/* Check token (NUL-terminated, untrusted) for id at now_s. Returns 0 when valid;
 * -EINVAL malformed, -EACCES signed for another id or forged, -ETIMEDOUT expired. */
int offers_token_verify(const unsigned char key[OFFERS_KEY_BYTES], const char *id, size_t n,
                        const char *token, int64_t now_s);

/* ---- The stage ---- */

/* cfg, hub and metrics are borrowed. Loads or creates <data-dir>/offers.key. Returns
 * NULL with a message in err. */
offers_t *offers_new(const config_t *cfg, sse_hub_t *hub, char *err, size_t errlen);
void offers_free(offers_t *o);

/* If r is one of the routes above, answer it and return 1; else 0 (r untouched). */
int offers_handle(offers_t *o, http_req_t *r);

/* action_sink_fn for ACTION_OFFER: publishes {"template","fields","rule","key"} to the
 * visitor's channel. Returns 0 (also for a skipped stale offer), -EINVAL for an action
 * without anonymousId or of another kind. */
int offers_sink(void *o, const action_t *a);

/* Publish a message {"template","fields"[,"rule","key"]} (fields: JSON text) to the
 * visitor id, or to every visitor online when id is NULL. Returns the number of
 * streams it reached or -EINVAL. */
int offers_publish(offers_t *o, const char *id, const char *tmpl, const char *fields,
                   const char *rule, const char *key);

typedef struct offers_stats {
  uint64_t published;  /* messages published (a broadcast counts once) */
  uint64_t stale;      /* offers skipped: decided longer ago than offers-max-age-ms */
  uint64_t refused;    /* stream requests refused: bad, foreign or expired token */
} offers_stats_t;
void offers_stats(const offers_t *o, offers_stats_t *out /* OUT */);

#endif
