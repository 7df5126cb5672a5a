/* rules: the decide stage — marketing rules written in a small language of our own,
 * compiled once into an index by event name and evaluated per event, with windows,
 * sequences, absence timers, caps and rate limits; also KPI alert and webhook endpoint
 * declarations. The language is described in docs/RULES.md.
 *
 * Design. A rule file is compiled (rules_set_parse / rules_set_load_dir) into an immutable
 * rules_set_t: every rule, every event pattern the rules look back on (count, seen,
 * sequence, the `unless` of a timer), and a hash index from (event type, event name) to
 * the rules triggered by it and the patterns it feeds. An engine (rules_t) holds one set
 * and the per-user state; per event it looks up the two index entries (type + name, type
 * + any name), so the cost of an event grows with the rules and patterns that name it,
 * not with the whole set. The event's JSON is scanned (jscan) only when a matching rule
 * reads one of its fields.
 *
 * State, per user (the profile key the process stage uses, profile_t.id):
 *   - history: the recent events that matched a pattern, as (time, pattern, key) where
 *     key hashes the fields a pattern compares with a `let` variable; at most
 *     history_per_user records (oldest dropped first) and none older than the longest
 *     window that uses its pattern;
 *   - per-rule state: the times of recent fires (for `cap N per user per D`, N <= 32),
 *     the fires in the current session (`cap N per session`); at most rules_per_user
 *     entries, the one fired longest ago is dropped first;
 *   - pending absence timers (`wait D unless PATTERN`): at most timers_per_user, one per
 *     rule; a new one beyond the bound is not armed (counted in stats);
 *   - the latest marketing consent, session and ids seen for the user.
 * At most max_users users: a new user at the bound evicts the least recently active of
 * 8 users sampled from a rotating hand (its history, caps and timers are lost; counted).
 * Rate limits (`limit N per D`) and alert states are global per rule. Everything is keyed
 * by 64-bit fingerprints of the rule's or pattern's canonical text, so rules_swap keeps
 * the state of every rule and pattern whose name and definition did not change, and
 * drops the rest.
 *
 * Time. The engine never reads a clock: event times order everything and rules_advance
 * (called by the caller on a timer, with the newest event time or the wall clock) fires
 * absence timers whose deadline has passed; rules_event first fires the timers due before
 * its event. Replaying the same log from the same checkpoint therefore decides the same
 * actions with the same idempotency keys: XXH3 of (rule name, action index, the person's
 * userId or else anonymousId) in hex, '-', the log offset of the triggering event (for a
 * timer: of the event that armed it) in hex.
 *
 * Consent: no action is decided for a person whose latest event did not carry marketing
 * consent (the decision is counted in stats as skipped_consent).
 *
 * Wiring (process stage, loop thread):
 *   - start: rules_new, then rules_reload_dir(cfg->rules_dir) (an error stops the start);
 *     load the engine's part of the checkpoint with rules_deserialize after rules_swap,
 *     and write rules_serialize as one more part of the process snapshot;
 *   - per record, after profile_apply: rules_event with the record's offset, the
 *     profile's key, consent from context.consent (marketing-categories), the session
 *     start (profile_t.session_start) and a rules_profile_t filled from profile_t;
 *   - identity: take the key the anonymousId (or, for alias, the previousId) resolved to
 *     before profile_apply; when the event's profile key differs afterwards (a merge or a
 *     rename), call rules_merge(old, new) before rules_event; on erasure, rules_forget;
 *   - every second (the live timer): rules_advance with the newest event time, and
 *     rules_alerts_tick with a KPI callback from the query module;
 *   - SIGHUP: rules_reload_dir; PUT /v1/rules (admin key): write the body to the rules
 *     directory only after rules_reload_text accepted it, else 400 with the message.
 *
 * Not thread-safe: one thread (the loop thread) owns an engine. Compiling a set is pure
 * and may run anywhere. Core module: never logs. */
#ifndef SLUICE_RULES_H
#define SLUICE_RULES_H

#include <stddef.h>
#include <stdint.h>

#include "action.h"
#include "util/buf.h"

typedef struct rules_set rules_set_t;
typedef struct rules rules_t;

#define RULES_STATE_VERSION 1
#define RULES_MAX_FILE_BYTES (4u << 20)  /* one rule file or PUT body */
#define RULES_MAX_RULES 100000           /* rules, webhooks and alerts in one set */
#define RULES_CAP_MAX 32                 /* largest N in `cap N per user per D` */
#define RULES_VALUE_MAX 512              /* string values in payloads are cut to this */
#define RULES_MAX_WINDOW_US (400LL * 86400 * 1000000) /* longest window or wait */

/* One source text, for rules_set_parse. */
typedef struct rules_src {
  const char *name;  /* file name used in messages ("rules/shop.rules") */
  const char *text;  /* borrowed for the call */
  size_t len;
} rules_src_t;

/* ---- Compiling ---- */

/* Compile n sources into one set. Returns the set (free with rules_set_free), or NULL with
 * "file:line:col: message" in err (what was expected and what was found). Names of rules,
 * webhooks and alerts are unique across the sources; a `do webhook` must name a declared
 * webhook. Pure: no I/O except reading the environment for `secret env "NAME"`. */
rules_set_t *rules_set_parse(const rules_src_t *srcs, size_t n, char *err, size_t errlen);
/* Compile every regular file named *.rules in dir, in name order. Returns the set or NULL
 * with the message in err (a missing directory is an error; an empty one gives an empty
 * set). */
rules_set_t *rules_set_load_dir(const char *dir, char *err, size_t errlen);
/* Like rules_set_load_dir, but with the file named name (a plain file name ending in
 * .rules) read as text[0..len) instead of from the directory (added when absent): what
 * the set would be once that file is written. */
rules_set_t *rules_set_load_dir_with(const char *dir, const char *name, const char *text,
                                     size_t len, char *err, size_t errlen);
/* Free a set no engine owns. NULL is a no-op. */
void rules_set_free(rules_set_t *s);
/* Counts of what a set declares. */
size_t rules_set_rules(const rules_set_t *s);
size_t rules_set_alerts(const rules_set_t *s);
size_t rules_set_webhooks(const rules_set_t *s);

/* A webhook endpoint declaration (borrowed from the set; valid while the set lives). */
typedef struct rules_webhook {
  const char *name;
  const char *url;
  const char *secret;   /* resolved: the literal, or the env variable's value ("" unset) */
  const char *secret_env; /* the variable's name when declared as `secret env "X"` */
  int64_t timeout_us;   /* default 5 s */
} rules_webhook_t;

/* The name of the i-th rule (0 <= i < rules_set_rules), in declaration order, or NULL. */
const char *rules_set_rule_name(const rules_set_t *s, size_t i);
/* The i-th webhook (0 <= i < rules_set_webhooks), or NULL. */
const rules_webhook_t *rules_set_webhook(const rules_set_t *s, size_t i);
/* The webhook named name, or NULL. */
const rules_webhook_t *rules_set_webhook_find(const rules_set_t *s, const char *name);

/* ---- The engine ---- */

typedef struct rules_opts {
  size_t max_users;        /* 0: 100,000 */
  size_t history_per_user; /* 0: 64 records (24 bytes each) */
  size_t rules_per_user;   /* 0: 32 per-rule states */
  size_t timers_per_user;  /* 0: 8 pending timers */
  action_sink_fn sink;     /* receives every action (may be NULL: counted only); it runs
                              inside the engine's call and must not call back into it */
  void *sink_ud;
} rules_opts_t;

/* A person's profile as the rules see it (filled by the caller from profile_t and the
 * event; every field may be left zero / NULL when unknown). */
typedef struct rules_profile {
  uint32_t events, page_views, sessions, orders;
  double revenue;                   /* lifetime, currency units */
  int64_t first_seen_us, last_seen_us;
  const char *device, *country;     /* latest known, or NULL */
  const char *const *segments;      /* names of the segments the person is in */
  size_t nsegments;
  const char *const *counter_names; /* tracked event names and their counts */
  const uint32_t *counter_values;
  size_t ncounters;
  int identified;                   /* 1: some event carried a userId */
} rules_profile_t;

/* One event as the process stage read it. Strings are borrowed for the call. */
typedef struct rules_event {
  int64_t t_us;              /* event time */
  uint64_t offset;           /* its log offset */
  int type;                  /* PROFILE_TRACK ... PROFILE_ALIAS (profile.h) */
  const char *name;          /* the track event's name; NULL for other types */
  const char *json;          /* the whole event (properties, context, traits...) */
  size_t json_len;           /* 0 with json NULL: no fields */
  uint64_t user;             /* profile key (profile_t.id after the event); 0 = none */
  const char *user_id;       /* userId or NULL */
  const char *anonymous_id;  /* anonymousId or NULL */
  int consent_marketing;     /* 1 when the event carries marketing consent */
  int64_t session_us;        /* start of the person's current session (cap per session) */
  const rules_profile_t *profile; /* may be NULL: profile.* reads as missing */
} rules_event_t;

typedef struct rules_stats {
  uint64_t events;          /* events given to rules_event */
  uint64_t evaluated;       /* rule evaluations (index hits) */
  uint64_t fired;           /* rule decisions that produced actions */
  uint64_t actions;         /* actions handed to the sink */
  uint64_t sink_errors;     /* the sink returned < 0 */
  uint64_t skipped_consent, skipped_cap, skipped_limit;
  uint64_t timers_armed, timers_fired, timers_cancelled;
  uint64_t timers_dropped;  /* not armed (bound) or lost (eviction, rule removed) */
  uint64_t users, evicted;  /* users held now; evicted at the bound */
  uint64_t alerts_fired, alerts_resolved;
} rules_stats_t;

/* A new engine with no rules. Returns NULL for out-of-range options (max_users above
 * 2^26, history above 4096, rules above 1024, timers above 256). */
rules_t *rules_new(const rules_opts_t *o);
/* Free the engine, its set and its state. NULL is a no-op. */
void rules_free(rules_t *r);
/* Replace the engine's set by s (ownership passes to the engine; the old set is freed).
 * State of rules and patterns whose fingerprint is in s is kept, the rest is dropped
 * (timers of removed rules lazily, when due). Atomic: it cannot fail once s compiled.
 * Returns the number of rules in s. */
size_t rules_swap(rules_t *r, rules_set_t *s);
/* Reload helpers (SIGHUP, PUT /v1/rules): compile the directory (rules_set_load_dir) or
 * one text named name (rules_set_parse) and swap it in. Returns the number of rules now
 * loaded, or -EINVAL with "file:line:col: message" in err and the running set unchanged. */
long rules_reload_dir(rules_t *r, const char *dir, char *err, size_t errlen);
long rules_reload_text(rules_t *r, const char *name, const char *text, size_t len, char *err,
                       size_t errlen);
/* The engine's set (borrowed), never NULL. */
const rules_set_t *rules_current(const rules_t *r);

/* Decide on one event: fires timers due before ev->t_us, records the event in the
 * histories of the patterns it matches, cancels timers it satisfies, evaluates the rules
 * it triggers. Returns the number of actions handed to the sink, or -EINVAL for a
 * malformed event (no user, bad type). Events without a matching rule or pattern create
 * no state. */
int rules_event(rules_t *r, const rules_event_t *ev);
/* Fire every absence timer whose deadline is <= now_us. Returns the actions decided. */
int rules_advance(rules_t *r, int64_t now_us);
/* Identity merge: the person keyed from is now keyed into (a merge or a rename in the
 * profile store). Histories interleave by time (the most recent kept), fire times and
 * session counts combine, timers move (into's wins for the same rule). Returns 0, or
 * -ENOENT when from has no state. */
int rules_merge(rules_t *r, uint64_t from, uint64_t into);
/* Drop every state of user key (erasure, profile eviction). 0 or -ENOENT. */
int rules_forget(rules_t *r, uint64_t key);
void rules_stats(const rules_t *r, rules_stats_t *out /* OUT */);
/* Approximate heap bytes of the per-user state. */
size_t rules_memory(const rules_t *r);
/* 1 when an event cannot change the engine: no rules in its set, no per-user state and
 * no timers (rules_event would only count it). */
int rules_idle(const rules_t *r);

/* ---- KPI alerts ----
 * Each alert of the set is evaluated when due (its `every`, default 10 s): the callback
 * gives the KPI's value over the alert's window; the state machine fires after `for`
 * consecutive breaching evaluations (default 1) and resolves once the value is back past
 * the `clear` threshold (hysteresis; default the threshold itself). Fire and resolve are
 * ACTION_ALERT actions with payload {"alert","kpi","state","value","threshold",
 * "window_s","segment","campaign"}. A callback error (< 0) skips the evaluation. */
typedef struct rules_alert {
  const char *name, *kpi;
  const char *segment, *campaign; /* NULL when not scoped */
  const char *webhook;            /* endpoint its state changes are posted to, or NULL */
  int64_t window_us, every_us;
  int above;                      /* 1: breach when value > threshold; 0: when < */
  double threshold, clear;
  unsigned for_n;
} rules_alert_t;
typedef int (*rules_kpi_fn)(void *ud, const rules_alert_t *a, int64_t now_us,
                            double *value /* OUT */);
/* The i-th alert of a set, or NULL. */
const rules_alert_t *rules_set_alert(const rules_set_t *s, size_t i);
/* Evaluate the alerts due at now_us. Returns the actions decided. */
int rules_alerts_tick(rules_t *r, int64_t now_us, rules_kpi_fn kpi, void *ud);
/* 1 when the alert named name is firing, 0 when not, -ENOENT when unknown. */
int rules_alert_firing(const rules_t *r, const char *name);

/* ---- Checkpoints ----
 * Version 1, little-endian: "SLRU", u32 version, then users, rule limit states and alert
 * states (see rules_state.c), u32 CRC-32C of every byte before it. */

/* Append the engine's state to out. Returns the bytes appended. */
size_t rules_serialize(const rules_t *r, buf_t *out);
/* Replace the engine's state by a serialized one (n bytes at p; hostile input is safe).
 * Returns 0, -EBADMSG when the bytes are not one valid version-1 state (the state is
 * then empty), -ENOSPC when it exceeds this engine's bounds. State of rules not in the
 * current set is kept until dropped lazily. */
int rules_deserialize(rules_t *r, const void *p, size_t n);

#endif
