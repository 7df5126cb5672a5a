/* dedup: which messageIds were already stored — so a retried batch (SDKs retry on
 * timeouts) never becomes a second copy.
 *
 * A bounded window: at most max_entries ids, none older than window_us. Each id is kept
 * as its 128-bit XXH3 hash (a false match needs a 2^-64-scale collision) plus the time it
 * was stored, in a ring buffer (oldest evicted first) indexed by an open-addressing table
 * with linear probing and backward-shift deletion: 32 bytes per id, so the default
 * million ids take 32 MiB. Ids enter the window only once their event is durable, so a
 * duplicate is never acknowledged before its original. On start the window is refilled
 * from the log tail (dedup_rebuild), so it holds across restarts. Loop thread only. */
#ifndef SLUICE_DEDUP_H
#define SLUICE_DEDUP_H

#include <stddef.h>
#include <stdint.h>

#include "log.h"

typedef struct dedup dedup_t;

/* NULL when max_entries is 0 (dedup off). */
dedup_t *dedup_new(size_t max_entries, int64_t window_us);
void dedup_free(dedup_t *d);

/* Is id (len bytes) in the window at time now_us? 1 or 0. NULL d: 0. */
int dedup_seen(dedup_t *d, const char *id, size_t len, int64_t now_us);
/* Record id as stored at t_us (evicting the oldest when full). NULL d: no-op. */
void dedup_add(dedup_t *d, const char *id, size_t len, int64_t t_us);
size_t dedup_size(const dedup_t *d);

/* Refill the window from the last records of log (each value's top-level messageId),
 * skipping records older than the window. Returns the number of ids loaded or a negative
 * errno. */
long dedup_rebuild(dedup_t *d, log_t *log, int64_t now_us);

#endif
