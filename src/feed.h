/* feed: a sampled, bounded stream of recently processed events for the live dashboard.
 *
 * Design. The process stage offers every event it processes (feed_offer) and once a
 * second renders what it kept (feed_flush) into one JSON frame that it publishes on the
 * SSE channel "feed" (GET /v1/live?feed=events). At most max_per_tick events are kept per
 * tick, chosen by reservoir sampling (each event of the tick is kept with the same
 * probability), and the frame lists them in the order they were processed, with the
 * number seen so the dashboard can say "12 of 3,400 shown". Only fields the rollups
 * already derive from the stored event go out (event name, page path, campaign, referrer
 * class, country, device type, browser, order revenue, event time): no user ids, no IP,
 * no properties. Values are cut to FEED_VALUE_MAX bytes. Memory is fixed at feed_new:
 * max_per_tick slots of ndims values each; an offer costs a counter increment, plus a copy
 * of the values for the ones kept (about max_per_tick * ln(seen / max_per_tick) a tick).
 * Single-threaded (the loop thread). Core module: never logs. */
#ifndef SLUICE_FEED_H
#define SLUICE_FEED_H

#include <stddef.h>
#include <stdint.h>

#include "util/buf.h"

typedef struct feed feed_t;

#define FEED_MAX_PER_TICK 100 /* largest max_per_tick */
#define FEED_MAX_DIMS 16
#define FEED_VALUE_MAX 128

/* A feed for events described by ndims named values; names (borrowed, must outlive the
 * feed) become the JSON keys, in that order. max_per_tick is clamped to 1..
 * FEED_MAX_PER_TICK; seed drives the sampling. Returns NULL when ndims is 0 or above
 * FEED_MAX_DIMS. */
feed_t *feed_new(const char *const *names, size_t ndims, size_t max_per_tick, uint64_t seed);
void feed_free(feed_t *f); /* NULL: no-op */

/* Offer one event: its time (µs since the epoch), its ndims values (borrowed; a NULL
 * value is left out of the frame) and its order revenue (0: left out). */
void feed_offer(feed_t *f, int64_t t_us, const char *const *values, double revenue);

/* Append the frame of this tick to out (OUT) — {"t":now,"seen":N,"shown":K,"events":
 * [{"t":...,name:value,...,"revenue":R},...]} — and start the next tick. Returns the
 * number of events offered during the tick; when it is 0 nothing is appended. */
uint64_t feed_flush(feed_t *f, int64_t now_us, buf_t *out /* OUT */);

#endif
