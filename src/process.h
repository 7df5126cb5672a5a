/* process: the processing stage — tails the event log into rollups and profiles.
 *
 * Design. The log is the source of truth; everything here is derived from it and can be
 * rebuilt by reading it again. On the loop thread, process reads the durable records
 * after its offset with a log_reader, in bounded slices (at most PROCESS_SLICE_RECORDS
 * records or about 1 ms per loop turn, continued from a uv_idle handle) so ingestion on
 * the same loop is never starved. Each record's value is decoded with evfields (jscan:
 * one pass, no tree, trusting bytes that ingestion validated and the log's CRC checked;
 * the log-scan queries of scan.h decode the same way) and feeds:
 *   - the profile store (profile.h): identity stitching and sessions;
 *   - the events rollup, dimensions PROCESS_DIMS, sum = revenue of orders (events named
 *     the conversion event; properties.revenue, else properties.total), unique users by
 *     the user key (anonymousId when present, else userId: a browser's anonymous events
 *     and its later identified ones count as one user);
 *   - the KPI state (kpi.h), after the profile store: facts per campaign, retention
 *     cohorts, lifetime value and user-defined KPIs (opts.kpis). "Marketing Cost" events
 *     feed only its cost facts (not the rollups or profiles);
 *   - the sessions rollup, one dimension "session" whose values are "start" (counted at
 *     the session's start when it starts), "converted" (at the session's start, when it
 *     converts), "bounce" (at the session's start, when it ends with one page view) and
 *     "end" (at its start, when it ends). Keeping sessions in their own store keeps the
 *     events' counts and uniques free of synthetic events; conversion and bounce rates are
 *     ratios of these counts over the same buckets.
 * Event time is timestamp, else receivedAt, else the record's receive time. Sessions end
 * lazily: process sweeps idle sessions against the newest event time seen (not the wall
 * clock), so replaying old traffic closes its sessions as they closed live.
 *
 * Checkpoints. Every checkpoint interval and at process_free, the two rollups, the
 * profile store, the KPI state, the rules engine's state (decide.h) and the processed
 * offset are written to <state dir>/snapshot in one file (see process.c for the format:
 * versioned header, CRC-32C over everything), replaced
 * atomically (file_write_atomic). Serialising runs on the loop thread; the write runs on
 * the thread pool. process_new loads it; a snapshot that is missing, corrupt or from an
 * incompatible configuration is reported (process_snapshot_status) and processing starts
 * again from offset 0.
 *
 * Live: with an SSE hub, process publishes once a second on channel "live" a JSON frame
 * {"t","events","eventsPerSecond","activeUsers","revenue","orders","offset","lag",
 * "visitorsOnline","sessionsToday","revenueToday","ordersToday","conversionRateToday"}
 * (docs/API.md). The KPI state (kpi.h) is fed after each profile update and is part of
 * the snapshot. And on channel "feed" a sample of the events processed during that second (feed.h: at most
 * PROCESS_FEED_PER_TICK, only the rollup dimensions, the time and the order revenue; only
 * events received within PROCESS_FEED_MAX_AGE_S, so a replay does not flood it).
 *
 * Single-threaded: every call on the loop thread (or, offline, the caller's). */
#ifndef SLUICE_PROCESS_H
#define SLUICE_PROCESS_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "kpi.h"
#include "log.h"
#include "rollup.h"
#include "sse.h"

typedef struct process process_t;

/* Dimensions of the events rollup, in rollup_add order. */
#define PROCESS_DIMS                                                                        \
  "event", "page_path", "utm_source", "utm_medium", "utm_campaign", "referrer_class",      \
      "country", "device_type", "browser", "product"
#define PROCESS_NDIMS 10
#define PROCESS_SLICE_RECORDS 5000
#define PROCESS_LIVE_CHANNEL "live"
#define PROCESS_FEED_CHANNEL "feed"
#define PROCESS_FEED_PER_TICK 20   /* events per feed frame, at most */
#define PROCESS_FEED_MAX_AGE_S 300 /* events received earlier (a replay) stay out */

typedef struct process_opts {
  uv_loop_t *loop;             /* borrowed; NULL: offline (process_run_until_caught_up) */
  log_t *log;                  /* borrowed; outlives the process */
  const char *state_dir;       /* borrowed; NULL: no snapshots */
  uint64_t checkpoint_ms;      /* 0: 10000 */
  const char *const *tracked;  /* ntracked event names with a profile counter (copied) */
  size_t ntracked;             /* at most 8 */
  const char *conversion_event;/* NULL: "Order Completed" */
  uint64_t session_timeout_s;  /* 0: 1800 */
  sse_hub_t *hub;              /* borrowed, may be NULL: no live frames */
  const config_kpis_t *kpis;   /* borrowed, outlives the process; NULL: no user-defined
                                  KPIs. Part of the snapshot's configuration check. */
  struct decide *decide;       /* borrowed, may be NULL: no rules (decide.h: the engine
                                  sees every record after its profile update, ticks with
                                  the live timer, its state is a snapshot part) */
  uint64_t max_profiles;       /* profiles in memory; 0: 1,000,000 */
  uint64_t spill_max_ids;      /* ids (people + aliases) the on-disk spill of evicted
                                  profiles indexes; 0: 16,777,216. The spill exists with
                                  a state_dir only (spill.h) */
  uint64_t log_cache_bytes;    /* 0: the log's pages stay in the page cache; else the
                                  reader drops them once this far behind it
                                  (log_reader_drop_behind) */
  uint64_t rollup_max_bytes;   /* memory budget of each rollup store (events, sessions):
                                  0 none, else >= ROLLUP_MIN_BYTES (rollup.h) */
} process_opts_t;

typedef struct process_stats {
  uint64_t offset;         /* next log offset to process */
  uint64_t events;         /* records processed since start (replay included) */
  uint64_t undecodable;    /* records that were not a JSON object */
  uint64_t unreadable;     /* records skipped because the disk damaged them (log.h) */
  uint64_t rejected;       /* events the rollup refused (too old or too far ahead) */
  uint64_t checkpoints;    /* snapshots written */
  int read_error;          /* sticky log read error (negative errno) or 0 */
  uint64_t profiles;       /* profiles held */
  uint64_t profile_bytes;  /* heap bytes of the profile store */
  uint64_t spilled;        /* evicted profiles kept on disk (spill.h) */
  uint64_t spill_ids;      /* their ids (people and aliases) in the spill's index */
  uint64_t spill_bytes;    /* length of the spill file */
  uint64_t spill_index_bytes; /* heap bytes of the spill's index */
  uint64_t restored;       /* profiles brought back from the spill since start */
  uint64_t dropped;        /* evicted profiles not kept: spill full or failing */
} process_stats_t;

/* ---- Lifetime ---- */

/* A new process stage: loads the snapshot from state_dir when there is one (see
 * process_snapshot_status), but reads nothing yet. Returns NULL with a message in err
 * for bad options (too many tracked names). */
process_t *process_new(const process_opts_t *o, char *err, size_t errlen);
/* After process_new: 1 when a snapshot was loaded; 0 when there was none; -1 when one
 * was present but unusable (message in msg: processing restarts from offset 0). */
int process_snapshot_status(const process_t *p, char *msg, size_t msglen);
/* Start tailing (loop mode): subscribe to the log, catch up in slices, start the
 * checkpoint and live timers. Returns 0. */
int process_start(process_t *p);
/* Stop the timers and handles (loop mode). Then run the loop so they close, then call
 * process_free. Safe to call twice. */
void process_stop(process_t *p);
/* 1 while a checkpoint write is running on the thread pool: run the loop until 0 before
 * process_free. */
int process_busy(const process_t *p);
/* Free p (handles must be closed: process_stop and a loop turn). NULL is a no-op. Does
 * not checkpoint: call process_checkpoint_sync first. */
void process_free(process_t *p);

/* ---- Work ---- */

/* Read and process records until caught up with the log's durable end (offline replay
 * and tests). Returns the number processed, or a negative errno on a read error. */
long process_run_until_caught_up(process_t *p);
/* Write the snapshot now, on the calling thread. Returns 0 or a negative errno. */
int process_checkpoint_sync(process_t *p);
/* Delete the snapshot in state_dir (sluice replay). Returns 0 (also when absent) or a
 * negative errno. */
int process_remove_snapshot(const char *state_dir);

/* Erasure (users.h): a user's values may sit in the rollups and profiles, and in the
 * snapshot. process_forget deletes the snapshot at once and makes the stage rebuild
 * everything from the (rewritten) log on its next live tick, about a second later; no
 * snapshot is written in between. Thread-safe (it runs on the erasure's worker thread);
 * has the users_forget_fn signature, with ud = the process. Returns 0 or a negative
 * errno from deleting the snapshot. While the rebuild replays, queries see partial
 * numbers. */
int process_forget(void *ud, const char *ids, size_t n);

/* ---- Reading (for the query API; borrowed) ----
 *
 * The stores belong to the loop thread, which is also the thread that serves HTTP and
 * ingests. On that thread they may be read at any time. Another thread (the query API
 * answers on libuv's pool, so a long query never holds up ingestion) reads them between
 * process_read_begin and process_read_end (the query API, and the checkpoint, which
 * serialises the stores there), and fetches the pointers inside that window:
 * a rebuild replaces the stores. The loop never waits for readers: while one reads, the
 * stage defers its next slice and timer work (events queue in the log) and resumes when
 * the last reader leaves; a reader that arrives while the stage waits lets it go first. */

void process_read_begin(process_t *p);
void process_read_end(process_t *p);
/* On the loop thread, around a change to state a checkpoint serialises that is not made by
 * the stage itself (the rules engine's reloads and switches): waits for the readers to
 * finish (at most one checkpoint's serialisation or one query), so keep it to rare
 * operations. No-op before process_start. */
void process_write_lock(process_t *p);
void process_write_unlock(process_t *p);

const rollup_t *process_events(const process_t *p);
const rollup_t *process_sessions(const process_t *p);
/* Stream-side KPI state (kpi.h): facts, retention cohorts, lifetime value. */
const kpi_t *process_kpi(const process_t *p);
const char *process_conversion_event(const process_t *p);
void process_stats(const process_t *p, process_stats_t *out /* OUT */);

#endif
