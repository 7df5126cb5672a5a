/* ratelimit: token buckets per client address, for 429 Too Many Requests.
 *
 * Each address gets `rate` requests per second with bursts up to `burst`. The table has a
 * fixed number of slots, so memory is bounded whatever the number of addresses: an
 * address hashes to a small window of slots, and when the window is full the bucket
 * idle the longest is reused (that address starts again with a full bucket, which errs
 * on the side of accepting traffic). Loop thread only. */
#ifndef SLUICE_RATELIMIT_H
#define SLUICE_RATELIMIT_H

#include <stddef.h>
#include <stdint.h>

typedef struct ratelimit ratelimit_t;

/* rate 0 disables limiting (ratelimit_take always allows). slots is rounded up to a
 * power of two; 0 means 65536. NULL on allocation failure. */
ratelimit_t *ratelimit_new(double rate, double burst, size_t slots);
void ratelimit_free(ratelimit_t *rl);

/* Take one token for key (an address) at time now_us (monotonic; a time before the
 * bucket's latest counts as that one). Returns 0 when allowed, or the number of whole
 * seconds (>= 1) after which a token will be there. */
uint32_t ratelimit_take(ratelimit_t *rl, const char *key, int64_t now_us);

#endif
