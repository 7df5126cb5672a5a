/* enrich: what the server adds to an event before it is logged — a chain of steps.
 *
 * Each step is a function over a validated event (cJSON, modified in place) and the
 * request's context. The chain built by enrich_new runs, in order:
 *   receivedAt  server receive time (always set by the server, never trusted from clients)
 *   timestamp   kept when sent, corrected for client clock skew with sentAt (Segment's
 *               rule: timestamp + (receivedAt - sentAt)); receivedAt when absent
 *   messageId   kept when sent (dedup key), otherwise a fresh "srv-<uuid4>"
 *   context.ip  the client IP (the event's own context.ip from a server-side SDK, else the
 *               socket peer, else the X-Forwarded-For client when the peer is a trusted
 *               proxy), anonymised — IPv4 to its /24, IPv6 to its /48 — unless
 *               keep-full-ip is set. This is the only place a raw IP exists; it is gone
 *               before the event is serialised for disk.
 *   context.userAgent  from the User-Agent header when the event has none
 * Later stages (geo, user agent parsing, UTM, pseudonymisation, consent) add their
 * steps with enrich_add (appended) or enrich_insert (before a named step); a step that
 * needs the raw IP reads ctx->client_ip, which stays raw for every step even after the
 * "ip" step has anonymised context.ip. */
#ifndef SLUICE_ENRICH_H
#define SLUICE_ENRICH_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "evdoc.h"

typedef struct enrich enrich_t;

typedef struct enrich_ctx {
  int64_t received_us;        /* server receive time */
  const char *client_ip;      /* raw client IP. enrich_event passes steps the event's own:
                               * a valid context.ip sent by a server-side SDK, else the
                               * request's (socket peer or trusted X-Forwarded-For) */
  const char *user_agent;     /* User-Agent header or NULL */
  const char *referer;        /* Referer header or NULL */
  /* Filled by enrich_ctx_prepare (per request work done once, not per event): */
  char received_iso[25];      /* received_us as RFC 3339 */
  int internal;               /* 1: an event the server emits itself (act stage): its ids
                               * come from the log, already in their stored form, and
                               * are not pseudonymised a second time */
  char client_ip_anon[46];    /* client_ip anonymised (see enrich_anonymise_ip); "" when
                               * client_ip is not an address */
  /* The lengths of received_iso and client_ip_anon: steps copy them per event. */
  size_t received_iso_len, client_ip_anon_len;
} enrich_ctx_t;

/* Prepare ctx for a request: fills the derived fields. Call once per request, after
 * setting the others; steps rely on it. */
void enrich_ctx_prepare(enrich_ctx_t *ctx);

/* A step: edit ev (see evdoc.h). Return 0; -1 to reject the event (msg filled; the client
 * is told and the event goes to the bad-event log); or ENRICH_DROP to drop it silently
 * (answered as accepted, never stored: a visitor without consent). */
#define ENRICH_DROP 1
typedef int (*enrich_step_fn)(evdoc_t *ev, const enrich_ctx_t *ctx, void *state, char *msg,
                              size_t msglen);

/* The default chain for config c (borrowed; must outlive the chain). NULL on OOM. */
enrich_t *enrich_new(const config_t *c);
/* Append a step; name (static) and state are borrowed. Returns 0. */
int enrich_add(enrich_t *e, const char *name, enrich_step_fn fn, void *state);
/* Insert a step before the step called before (appended when there is none). Returns 0. */
int enrich_insert(enrich_t *e, const char *before, const char *name, enrich_step_fn fn,
                  void *state);
/* Run every step over ev. Returns 0, ENRICH_DROP when a step dropped the event, or -1
 * with msg naming the failing step. Steps keep scratch state: one chain runs one event at
 * a time. */
int enrich_event(enrich_t *e, evdoc_t *ev, const enrich_ctx_t *ctx, char *msg, size_t msglen);
void enrich_free(enrich_t *e);

/* Resolve the client IP of a request: the peer, or — when the peer is in trusted
 * (a list of IPs) — the right-most address of X-Forwarded-For that is not itself trusted.
 * Writes into out (INET6_ADDRSTRLEN bytes). */
void enrich_client_ip(const char *peer, const char *xff, const strlist_t *trusted,
                      char out[46]);

/* Anonymise ip text in place into out: IPv4 a.b.c.0, IPv6 first 48 bits then ::.
 * Returns 0, or -EINVAL when ip is not an address (out then holds ""). */
int enrich_anonymise_ip(const char *ip, char out[46]);

#endif
