/* rollup: time-bucketed aggregates (count, sum, unique users) per dimension value — what
 * the query API and the live dashboard read. The process stage calls rollup_add once per
 * stored event; queries read the buckets.
 *
 * Design. Three granularities, each a ring of buckets indexed by event time (µs since the
 * epoch): seconds (default 3600 slots = the last hour), minutes (default 10080 = 7 days)
 * and hours (default 2160 = 90 days; the long-term store, whose memory grows as hours
 * fill and is bounded by the retention). A ring's window ends at the store's high-water
 * mark hw = max(clock at the last add or advance, newest accepted event) and reaches back
 * ring-size buckets; a bucket that leaves the window is gone (its slot is reused lazily,
 * a minute's users are first folded into its hour, see below). An event lands in
 * every ring whose window still holds its bucket: a late event within the hour counts
 * everywhere, an older one in minutes and hours only, one older than the minute ring in
 * hours only. Each bucket, once it exists, is therefore complete, so any mix of granular-
 * ities gives the same answer. Events older than the hour ring are rejected (-ERANGE), as
 * are events more than max_future_us (default 5 min) past the clock: a client with a wrong
 * clock must not slide the windows forward and wipe the recent data (a caller that prefers
 * clamping passes min(t, received + skew) itself).
 *
 * Dimensions: up to ROLLUP_MAX_DIMS named slots fixed at creation ("page_path",
 * "utm_source", ...). Each event gives a value string per slot, NULL or "" for absent.
 * Values are interned per dimension (id <-> string). Value id 0 is "(other)": once a
 * dimension holds max_values distinct values, every new value folds into "(other)" (a
 * literal "(other)" is the same value), so hostile cardinality costs nothing more. Values
 * longer than max_value_len bytes are cut to it (at a UTF-8 character boundary).
 *
 * Metrics per cell — one cell per (bucket, dimension, value), plus a total cell per bucket:
 * count of events, sum of a double (e.g. revenue), unique users (an HLL of the caller's
 * 64-bit user hash; see hll.h). A cell that has seen one user keeps the hash inline and
 * only allocates a sketch at the second distinct user. Unique users are kept for every
 * minute and hour cell and for the total of each second, but NOT for per-second dimension
 * cells (count and sum only): that keeps the hour of seconds cheap. Consequently queries
 * that involve a dimension (filters, topN) read minutes at the finest, and a second-level
 * timeseries with a filter reports uniques as ROLLUP_NA. Hour cells do not take events
 * one by one while their minute is in the minute ring: the newest minutes with events (at
 * most 4) are "pending", and a minute is added into its hour's cells (counts, sums, one
 * sketch merge per cell) when a fifth one starts or when it leaves the ring; an event for
 * a minute already added goes to the minute and the hour. Queries add the pending minutes
 * to their hours, so an hour answers in one cell instead of sixty and a day in ~24 sketch
 * merges. Hence the minute ring may not reach further back than the hour ring
 * (minute_ring <= 60 x hour_ring).
 *
 * Memory: at most ~(ndims + 1) cells per event still in some window (32 bytes each, plus
 * bucket index tables and sketches, which stay below 12 KiB each), and max_values strings
 * of at most max_value_len bytes per dimension; rollup_stats reports the bytes held.
 * Measured (bench/rollup.sh: 1M events/day, 10 dimensions, realistic cardinalities): the
 * second ring ~9 MiB, a day of minutes ~80 MiB (so ~560 MiB for the default 7-day ring),
 * a day of hours ~20 MiB (so ~1.7 GiB for the default 90 days). A budget (max_bytes)
 * bounds the rings: the store counts their bytes as they change, and after an add that
 * leaves it above the budget it gives up, until the budget holds, in three passes:
 *  1. buckets, oldest first: minutes down to the last hour (their events remain in their
 *     hours, so such ranges answer at hour granularity, and the span read or a timeseries
 *     point's retained flag says so), then seconds down to the last minute (kept in their
 *     minutes), then hours down to the last day (gone, like the retention: events older
 *     than the oldest hour held are rejected as too old);
 *  2. the same, down to the newest bucket of each ring;
 *  3. unique users, oldest bucket first, minutes, seconds, hours: the bucket's sketches
 *     are freed and its cells report uniques as ROLLUP_NA (a minute's given-up users make
 *     its hour's ROLLUP_NA too; any range or topN row reading such a cell reports
 *     ROLLUP_NA: never a number that silently misses users).
 * When even that leaves the rings above the budget (the newest buckets' cells alone pass
 * it) the store is "starved" until it falls below again: every dimension value counts as
 * "(other)" (so no new per-value cells) and a cell reaching its second user marks its
 * uniques ROLLUP_NA instead of starting a sketch. The budget therefore bounds the rings
 * (budget_bytes in rollup_stats) after every add, give or take ROLLUP_BUDGET_SLACK while
 * starved (the store re-examines itself only after that much growth, so an add stays
 * cheap); only when the newest bucket of each ring, without sketches, holds more than the
 * budget are the rings bounded by what those hold plus half the slack. The slot tables
 * count against the budget (so it may not be smaller than they are); the interned value
 * strings (at most max_values x max_value_len per dimension) are outside it. Nothing fails; rollup_stats reports the buckets given up, the buckets
 * whose users were given up, the values folded, whether it is starved and where each
 * ring now starts.
 *
 * Ranges. Totals and topN read [t0, t1) composed greedily of the coarsest whole buckets
 * that fit (hours in the middle, then minutes, then seconds at the edges) among the
 * granularities that still hold the data; where an edge is only held at a coarser
 * granularity the range is widened to that bucket. The span actually read is returned.
 *
 * Not thread-safe: one thread (the process stage's) owns a store. Core module: no logging,
 * allocation failure aborts (util/mem.h). */
#ifndef SLUICE_ROLLUP_H
#define SLUICE_ROLLUP_H

#include <stddef.h>
#include <stdint.h>

#include "util/buf.h"

typedef struct rollup rollup_t;

#define ROLLUP_MAX_DIMS 16
#define ROLLUP_MAX_DIM_NAME 64
#define ROLLUP_OTHER "(other)"
#define ROLLUP_NA UINT64_MAX /* uniques that the store does not keep */
#define ROLLUP_SERIAL_VERSION 3
#define ROLLUP_MIN_BYTES ((size_t)1 << 20)
#define ROLLUP_BUDGET_SLACK ((size_t)64 << 10) /* see "Memory" above */

/* Granularities in seconds; ROLLUP_AUTO lets a query choose. */
enum { ROLLUP_AUTO = 0, ROLLUP_SECOND = 1, ROLLUP_MINUTE = 60, ROLLUP_HOUR = 3600 };

typedef struct rollup_opts {
  const char *const *dims; /* ndims dimension names (borrowed, copied): unique, 1..64 bytes */
  size_t ndims;            /* 1..ROLLUP_MAX_DIMS */
  uint32_t second_ring;    /* seconds kept per second, 60..86400 (0: 3600) */
  uint32_t minute_ring;    /* minutes kept per minute, 60..527040 and at most 60 x
                              hour_ring (0: 10080 = 7 days) */
  uint32_t hour_ring;      /* hours kept per hour, 24..175320 (0: 2160 = 90 days) */
  uint32_t max_values;     /* distinct values per dimension before "(other)", 1..1000000
                              (0: 10000) */
  uint32_t max_value_len;  /* bytes kept of a value, 8..4096 (0: 256) */
  int64_t max_future_us;   /* accepted lead over the clock, 1 µs..1 day (0: 300 s) */
  /* The clock (µs since the epoch); NULL: CLOCK_REALTIME. Read by add and advance. */
  int64_t (*now_us)(void *ctx);
  void *now_ctx;
  size_t max_bytes;        /* memory budget of the rings, 0 (none) or >= ROLLUP_MIN_BYTES
                              and >= the slot tables (40 bytes per bucket of the three
                              windows: 620 KiB for the defaults); see "Memory" above */
  int no_users;            /* 1: keep counts and sums only, no unique users (every cell's
                              uniques read ROLLUP_NA): for a store read by counts alone */
} rollup_opts_t;

/* ---- Lifetime ---- */

/* A new, empty store, owned by the caller (rollup_free). NULL when opts is NULL or out of
 * the ranges above (no dimension, too many, a duplicate or bad name). */
rollup_t *rollup_new(const rollup_opts_t *opts);
/* Free r and everything it owns; value strings returned by queries die with it. NULL is a
 * no-op. */
void rollup_free(rollup_t *r);
/* Replace the clock (NULL: CLOCK_REALTIME), e.g. after rollup_deserialize. The clock never
 * moves hw backwards. */
void rollup_set_clock(rollup_t *r, int64_t (*now_us)(void *ctx), void *ctx);
/* Set the memory budget (0: none, else >= ROLLUP_MIN_BYTES and the slot tables, see
 * rollup_opts_t), e.g. after rollup_deserialize when the configuration changed; it
 * applies from the next add. Returns 0, or -EINVAL for NULL r or a budget below the
 * minimum. */
int rollup_set_max_bytes(rollup_t *r, size_t max_bytes);
/* Stop (no_users 1) or resume (0) keeping unique users from the next add on, e.g. after
 * rollup_deserialize (the snapshot does not record it); cells that hold users keep them
 * until they next take an event. NULL r is a no-op. */
void rollup_set_no_users(rollup_t *r, int no_users);
/* Read the clock and slide the windows to it (rollup_add does this too). Queries do not
 * read the clock: they see the windows as of the last add or advance, so a caller whose
 * events may pause calls this on a timer (e.g. every second) to keep them current. */
void rollup_advance(rollup_t *r);

/* ---- Dimensions ---- */

size_t rollup_ndims(const rollup_t *r);
/* Index of dimension name (the slot in rollup_add's dim_values), or -ENOENT. */
int rollup_dim_index(const rollup_t *r, const char *name);

/* ---- Adding ---- */

/* Count one event at t_us: dim_values (borrowed; NULL allowed when every dimension is
 * absent) holds rollup_ndims(r) strings, NULL or "" meaning absent; user_hash is a well-
 * mixed 64-bit hash of the user id (XXH3_64bits); value_sum is added to the sums.
 * Returns 0 when counted (in at least the hour ring), -ERANGE when t_us is older than the
 * hour ring or more than max_future_us past the clock (not counted; see rollup_stats),
 * -EINVAL for NULL r or a non-finite value_sum. */
int rollup_add(rollup_t *r, int64_t t_us, const char *const *dim_values, uint64_t user_hash,
               double value_sum);
/* rollup_add for a caller that knows each value's strlen: dim_lens (borrowed; NULL: not
 * known) holds them, 0 for an absent value. Counts exactly as rollup_add does; spares it
 * measuring each value and comparing it byte by byte with the value interned last. */
int rollup_add_len(rollup_t *r, int64_t t_us, const char *const *dim_values,
                   const uint32_t *dim_lens, uint64_t user_hash, double value_sum);

/* n events (at most a handful) at t_us with the same user_hash and value_sum, event i
 * having values[i] (lens[i] bytes, its strlen; NULL or 0: absent) in dimension 0 and no
 * value in the others: e.g. a session's "end" and "bounce". Counts exactly as n
 * rollup_add_len calls in that order would with the clock reading the same for all, and
 * spares the later ones the clock and range work. Returns 0 when all were counted, or the
 * error rollup_add_len gives (the same for all n: -ERANGE counts n rejected events), or
 * -EINVAL for NULL r, a non-finite value_sum or NULL arrays with n > 0. */
int rollup_add_values(rollup_t *r, int64_t t_us, const char *const *values,
                      const uint32_t *lens, size_t n, uint64_t user_hash, double value_sum);

/* ---- Queries ----
 * Filters select one dimension value's cells; no filter selects the bucket totals. A
 * rollup keeps per-value cells, not their intersections, so an AND across two dimensions
 * cannot be answered: more than one filter returns -ENOTSUP. A filter naming an unknown
 * dimension returns -EINVAL; a value never seen gives zeros (when the dimension is full
 * its events may sit in "(other)"). Value strings are matched as rollup_add stores them
 * (cut to max_value_len). Results are caller-owned structs; value strings in them are
 * borrowed from r and live as long as r. Unique counts of a union of cells are exact
 * while it stays below about 1000 users (sketches and the query's union stay sparse) and
 * HLL estimates beyond (0.81% standard error), so the same span can read slightly
 * differently at another granularity or once its minutes have folded into its hours. */

typedef struct rollup_filter {
  const char *dim;   /* dimension name */
  const char *value; /* value string */
} rollup_filter_t;

typedef struct rollup_point {
  int64_t t_us;     /* bucket start */
  int retained;     /* 0: the store no longer (or never) holds this bucket; zeros below */
  uint64_t count;
  double sum;
  uint64_t uniques; /* ROLLUP_NA for per-second buckets with a filter, or users given up
                       to the budget */
} rollup_point_t;

/* One point per bucket of gran_s (ROLLUP_SECOND, _MINUTE, _HOUR or _AUTO) overlapping
 * [t0_us, t1_us), oldest first, into out[0..cap). ROLLUP_AUTO picks the finest granularity
 * that still holds t0's bucket and fits in cap points (else hours). Stores the granularity
 * used in *gran_used (OUT, may be NULL). Returns the number of points (0 when t1 <= t0),
 * -ENOSPC when they do not fit in cap, -EINVAL for a bad argument, or a filter error. */
int rollup_timeseries(const rollup_t *r, int gran_s, int64_t t0_us, int64_t t1_us,
                      const rollup_filter_t *filters, size_t nfilters, rollup_point_t *out,
                      size_t cap, int *gran_used);

typedef struct rollup_totals {
  int64_t from_us, to_us; /* span actually read (see Ranges above); from == to: none */
  uint64_t count;
  double sum;
  uint64_t uniques;       /* HLL union over the buckets read; ROLLUP_NA when one of them
                             had its users given up to the budget */
} rollup_totals_t;

/* Count, sum and unique users over [t0_us, t1_us) into *out (OUT). Returns 0, -EINVAL for
 * a bad argument, or a filter error. */
int rollup_totals(const rollup_t *r, int64_t t0_us, int64_t t1_us,
                  const rollup_filter_t *filters, size_t nfilters, rollup_totals_t *out);
/* rollup_totals without the unique users (out->uniques = ROLLUP_NA): the same span,
 * count and sum, without the sketch unions that dominate a long range's cost. */
int rollup_counts(const rollup_t *r, int64_t t0_us, int64_t t1_us,
                  const rollup_filter_t *filters, size_t nfilters, rollup_totals_t *out);

typedef enum { ROLLUP_BY_COUNT, ROLLUP_BY_SUM, ROLLUP_BY_UNIQUES } rollup_metric_t;

typedef struct rollup_top {
  const char *value; /* borrowed from r */
  uint64_t count;
  double sum;
  uint64_t uniques;  /* ROLLUP_NA: users given up to the budget; ranks last by uniques */
} rollup_top_t;

/* The n values of dimension dim with the largest metric over [t0_us, t1_us) (read at
 * minute granularity at the finest), best first, into out[0..n). Ties (equal metric) are
 * ordered by value string, bytewise ascending. Only values with events in the range are
 * listed. Stores the span read in *from_us / *to_us (OUT, may be NULL). Returns the
 * number of rows, -ENOENT for an unknown dimension, -EINVAL for a bad argument, -ENOTSUP
 * for ROLLUP_BY_UNIQUES on a store without users (no_users: its rows' uniques are
 * ROLLUP_NA, as are every total's and point's). */
int rollup_topn(const rollup_t *r, const char *dim, rollup_metric_t by, int64_t t0_us,
                int64_t t1_us, rollup_top_t *out, size_t n, int64_t *from_us, int64_t *to_us);

/* ---- Introspection ---- */

typedef struct rollup_stats {
  uint64_t accepted;        /* events counted */
  uint64_t rejected_future; /* more than max_future_us past the clock */
  uint64_t rejected_old;    /* older than the hour ring */
  uint64_t folded;          /* dimension values folded into "(other)" */
  size_t values;            /* interned values, all dimensions */
  size_t cells, sketches;   /* live cells; of them, those holding an hll_t */
  size_t bytes;             /* heap bytes held (allocator overhead not included) */
  size_t ring_bytes[3];     /* of which in the second, minute and hour rings */
  size_t budget_bytes;      /* what the budget counts: the three rings (tracked per change) */
  size_t max_bytes;         /* the budget, 0 for none */
  uint64_t evicted[3];      /* buckets given up to the budget: seconds, minutes, hours */
  uint64_t budget_folded;   /* values folded into "(other)" at the bound (also in folded) */
  uint64_t users_dropped[3]; /* buckets whose sketches the budget gave up (since start) */
  int starved;              /* 1: at the bound with nothing left to give up */
  int64_t held_from_us[3];  /* start of the oldest bucket each ring may hold now: the
                               window, or later where the budget cut it */
} rollup_stats_t;

/* Fill *out (OUT). Walks every bucket: O(cells), for monitoring, not per event. */
void rollup_stats(const rollup_t *r, rollup_stats_t *out);

/* ---- Snapshot ----
 * Version-3 encoding, canonical (deserialize -> serialize gives back the same bytes):
 *   "SLRU", u8 version; varints: second_ring, minute_ring, hour_ring, max_values,
 *   max_value_len, max_future_us; i64 hw_us (8 bytes LE); varints: accepted,
 *   rejected_future, rejected_old, folded, max_bytes, budget_folded; per ring (second,
 *   minute, hour): varint buckets evicted, u8 1 + i64 oldest bucket the budget leaves it,
 *   or u8 0; varint flags (bit 0: no_users; version 3); varint ndims, per dimension: varint len + name, varint nvalues, each value
 *   varint len + bytes (value 0 is "(other)");
 *   then per ring (second, minute, hour): varint nbuckets, buckets oldest first: the first
 *   bucket number as i64, later ones as varint delta >= 1; minutes only: u8 1 when added
 *   into its hour, 0 when pending (at most 4); varint ncells; per cell:
 *   varint key (0 total, else (dim + 1) << 24 | value id), varint count >= 1, f64 sum
 *   (8 bytes LE), u8 user kind (1 one hash: u64 follows; 2 sketch: varint len + hll
 *   encoding; 3 none: per-second dimension cells, or an hour cell with no users yet;
 *   4 no users: any other cell whose users were given up to the budget or whose store
 *   keeps none). Varints are LEB128, minimal.
 * Only buckets inside their ring's window are written. Version 2 (no flags) and version 1
 * (no budget fields, no pending flags; hours held the counts of their minutes but not
 * their users) still load: a version-1 store's minutes' users are then added into their
 * hours. */

/* Append r's encoding to out. Returns the number of bytes appended. */
size_t rollup_serialize(const rollup_t *r, buf_t *out);
/* Decode exactly n bytes at p (borrowed; hostile input is fine) into a new store with the
 * CLOCK_REALTIME clock (see rollup_set_clock). Returns 0 and stores it, owned by the
 * caller, in *out (OUT); -EBADMSG when the bytes are not one valid version-1, 2 or 3 encoding
 * (bad magic or version, truncation, trailing bytes, out-of-range sizes, unknown or
 * duplicate keys, values or names, buckets outside their window or out of order, a bad
 * sketch, non-minimal varints); -EINVAL when out is NULL or p is NULL with n > 0. *out is
 * NULL on any error. */
int rollup_deserialize(const void *p, size_t n, rollup_t **out);

#endif
