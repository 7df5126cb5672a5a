/* decide: the decide stage's glue — runs the rules engine (rules.h) inside the process
 * stage and hands what it decides to the act stage's sink.
 *
 * Design. The process stage owns nothing of the rules: it calls four hooks — before and
 * after profile_apply for each record (identity merges, then rules_event), once a second
 * (timers and KPI alerts), and when it writes or loads its snapshot (the engine's state
 * is one part of it). Everything else (reloads, the on/off switch of rules, per-rule fire
 * counts, alert history, the listing GET /v1/rules shows) lives here, so serve wires one
 * object and the data still flows one way: log -> process -> decide -> act.
 *
 * Clock. While the process stage replays the log (from its snapshot or from 0, until it
 * first reaches the log's end; a backlog of live traffic later does not count), absence
 * timers fire only by the event-time watermark (the newest event time read), so a replay
 * from a checkpoint re-decides exactly what the live run decided, with the same keys.
 * Once it has caught up, timers fire by max(watermark, wall clock): an absence timer
 * fires when its deadline passes even with no traffic. A timer's decision time (and key) is its
 * deadline either way. KPI alerts are evaluated only when caught up (a half-replayed
 * rollup would breach thresholds that were never breached).
 *
 * On/off. A rule switched off (decide_set_enabled) still runs in the engine (its caps and
 * timers advance as before) but its actions are dropped here and counted as suppressed;
 * the set of switched-off names is kept in <state dir>/rules-disabled (one name a line,
 * written atomically), so it survives restarts and rebuilds.
 *
 * Age. An action whose decision time (its event's time, or a timer's deadline) is more
 * than DECIDE_MAX_AGE_US before the wall clock is not carried out (counted as stale):
 * replaying the log from 0 (no usable snapshot, an upgrade, an erasure's rebuild) decides
 * its whole history again, and the sinks only remember what they did for a while (the
 * webhook outbox 7 days, the collector's dedup 24 hours); imported old events and a
 * timer that came due during a long outage do not act either. The engine's state and the
 * keys do not depend on it.
 *
 * Fire counts and last fire times are counted since start (a replay after a restart counts
 * again what it re-decides). Alert transitions: the last DECIDE_ALERT_HISTORY per alert.
 * An alert naming a webhook (`webhook "NAME"` in its declaration) also has its state
 * changes posted there, with the alert's own idempotency key.
 *
 * Single-threaded: the loop thread. Never logs: callers log the results. */
#ifndef SLUICE_DECIDE_H
#define SLUICE_DECIDE_H

#include <stddef.h>
#include <stdint.h>

#include "action.h"
#include "evfields.h"
#include "log.h"
#include "profile.h"
#include "rollup.h"
#include "rules.h"
#include "util/buf.h"

#define DECIDE_ALERT_HISTORY 20
#define DECIDE_MAX_AGE_US (3600LL * 1000000) /* older decisions are not carried out */
#define DECIDE_NAME_MAX 128 /* rule file names for decide_put_file */

typedef struct decide decide_t;

typedef struct decide_opts {
  const char *rules_dir;  /* *.rules; NULL or "": no rules (PUT answers an error) */
  const char *state_dir;  /* where rules-disabled is kept; NULL: not kept */
  action_sink_fn sink;    /* every action (alerts included); may be NULL */
  void *sink_ud;
  rules_kpi_fn kpi;       /* KPI values for alerts; NULL: alerts never evaluated */
  void *kpi_ud;
  const rules_opts_t *engine; /* bounds (sink fields ignored); NULL: defaults */
  size_t rollup_max_bytes;    /* memory budget of each segment rollup (rollup.h), 0: none,
                                 else at least ROLLUP_MIN_BYTES */
} decide_opts_t;

/* Compile rules_dir and build the engine. Returns NULL with "file:line:col: message" in
 * err when a rule file does not compile (the server does not start). */
decide_t *decide_new(const decide_opts_t *o, char *err, size_t errlen);
void decide_free(decide_t *d);
/* The engine (borrowed). */
rules_t *decide_rules(decide_t *d);

/* ---- Hooks of the process stage ---- */

/* Before profile_apply: the profile key the event's anonymousId (alias: previousId)
 * resolves to now, or 0. Only events that can merge or rename (a userId or an alias)
 * pay the lookup. */
uint64_t decide_key_before(const profile_store_t *ps, const evfields_t *e);
/* After profile_apply: merge rules state when the key changed (from key_before to
 * prof->id), then rules_event. kinds: the PROFILE_KINDS tracked names (NULL entries
 * unused), for counter("..."). */
void decide_event(decide_t *d, const evfields_t *e, const log_record_t *rec,
                  const char *const *kinds, const profile_t *prof, uint64_t key_before);
/* Segments. `do segment add/remove "NAME"` edits the person's segment bitmap in the
 * profile store (profile_t.segments) right here, in log order, so replays rebuild it:
 * unlike the other actions, segment edits are state, not effects, and are applied
 * however old their decision (a switched-off rule's are dropped like its other actions).
 * Names get bits in order of first use, at most DECIDE_MAX_SEGMENTS (more are refused
 * and counted); the names are part of the snapshot. segment("NAME") in a rule reads the
 * bitmap. The process stage tells decide which store to edit whenever it makes one. */
#define DECIDE_MAX_SEGMENTS 64
void decide_bind_profiles(decide_t *d, profile_store_t *ps);

/* Segment-scoped KPI alerts (`segment "NAME"` in an alert). The shop-wide rollups know
 * nothing of segments, so for each segment an alert names, decide keeps an events rollup
 * (the process stage's dimensions, a day of minutes, rollup_max_bytes each,
 * DECIDE_SEGMENT_ROLLUPS at most) fed
 * with the events of persons in that segment when the event happened. It starts empty at
 * start and on reload (it is not in the snapshot): decide_segment_events answers only
 * once it has watched a whole window, so an alert is not evaluated on a partial one.
 * Returns the rollup, or NULL: no such scope, window longer than a day, or not yet. */
#define DECIDE_SEGMENT_ROLLUPS 8
const rollup_t *decide_segment_events(const decide_t *d, const char *segment,
                                      int64_t window_us, int64_t now_us);

/* Once a second: timers (see Clock) and, when caught_up (the stage reached the log's
 * end once since it started or rebuilt), KPI alerts. */
void decide_tick(decide_t *d, int64_t watermark_us, int64_t wall_us, int caught_up);
/* Snapshot part (u32 length + the engine's state, u8 count + the segment names, each u8
 * length + bytes): append it; load one (0, or a negative errno: the caller
 * rebuilds from the log); forget every person's state (erasure rebuild). */
/* 1 when an event can change nothing in d: the engine is idle (rules_idle: no rules) and
 * no segment exists or is watched. The process stage then skips decide_key_before and
 * decide_event, a profile lookup and the engine's bookkeeping per event. */
int decide_idle(const decide_t *d);
size_t decide_serialize(const decide_t *d, buf_t *out);
int decide_deserialize(decide_t *d, const void *p, size_t n);
void decide_reset(decide_t *d);

/* ---- Operations (serve) ---- */

/* Recompile rules_dir and swap (SIGHUP). Returns the rules loaded, or -EINVAL with the
 * message in err and the running rules unchanged. */
long decide_reload(decide_t *d, char *err, size_t errlen);
/* PUT /v1/rules?file=NAME: compile the directory with NAME's text replaced by text; only
 * when it compiles write it to rules_dir/NAME atomically and swap. name must be 1..
 * DECIDE_NAME_MAX of [A-Za-z0-9_.-], end in ".rules", not start with '.'. Returns the
 * rules loaded; -EINVAL (bad name: err says so, *invalid_rules 0; or a compile error:
 * *invalid_rules 1), -ENOENT without a rules dir, or a negative errno from the write. */
long decide_put_file(decide_t *d, const char *name, const char *text, size_t len,
                     int *invalid_rules /* OUT */, char *err, size_t errlen);
/* Switch a rule on or off. 0, or -ENOENT for an unknown rule, or a write error. */
int decide_set_enabled(decide_t *d, const char *rule, int enabled);
/* The endpoints the loaded rules files declare, for act_set_endpoints: fills out[0..cap)
 * (strings borrowed from the set, valid until the next reload). Returns how many. */
struct webhook_endpoint;
size_t decide_endpoints(const decide_t *d, struct webhook_endpoint *out, size_t cap);
/* GET /v1/rules: {"rules":[{"name","enabled","fires","lastFire"}],"alerts":[{"name",
 * "kpi","firing","value","history":[{"t","state","value"}]}],"webhooks":[names],"stats":
 * {...}} appended to out. */
void decide_describe(const decide_t *d, buf_t *out);
/* Prometheus text: sluice_alert_firing{alert="NAME"} 0/1 and the engine's counters. */
void decide_metrics(const decide_t *d, buf_t *out);

#endif
