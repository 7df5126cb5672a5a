/* profile: per-person state for the process stage — one small record per user, with
 * identity stitching (anonymous browsing joins the account at login), sessions, and a
 * hard memory bound.
 *
 * The process stage reads every stored event in log order and calls profile_apply; the
 * store answers with what changed (new profile, session started, conversion, ...) and
 * reports ended sessions and evicted profiles through callbacks, so the rollups can count
 * sessions, bounces and converted sessions and a caller can spill evicted profiles to disk.
 *
 * Keys. An id (userId, anonymousId, previousId) is a string of 1..PROFILE_ID_MAX bytes;
 * NULL or "" means absent. The store keeps no strings: an id is its 64-bit XXH3 hash with
 * a per-store secret seed (random unless profile_opts_t.seed is set; kept in snapshots,
 * so a snapshot is as private as the data). userIds, anonymousIds and previousIds share
 * one key space (an alias's previousId may be either kind). Collision risk: two ids with
 * the same hash would share a profile; among n live keys the chance that any pair
 * collides is about n^2 / 2^65 — 1e-7 at two million keys — and the secret seed keeps a
 * client from crafting one. We take that over 128-bit keys, which would cost 8 more bytes
 * per profile and per index entry.
 *
 * Identity — the exact rules, for an event with userId U, anonymousId A (either may be
 * absent, not both) and, for type alias, previousId P:
 *   1. The event's profile is U's when U is present, else A's. An id resolves to its own
 *      profile, or through an alias to another one; an id never seen gets a new profile —
 *      except that when U is new and A is an anonymous profile, that profile is renamed
 *      to U (A becomes its alias) instead of creating and merging.
 *   2. An event carrying both U and A (an identify, or any event sent after one: Segment's
 *      libraries send both) links A to U's profile T:
 *        - A unknown: A becomes an alias of T;
 *        - A has its own anonymous profile: that profile is merged into T (below), its
 *          aliases move to T, and A becomes an alias of T;
 *        - A is an alias of another profile T' (a shared device: U1 then U2 log in on
 *          one browser): A is re-pointed to T. T' is NOT merged into T and keeps
 *          everything it had; from now on events with only A go to T — "the most recent
 *          user seen with A" — and events with userId U1 still go to U1;
 *        - A is itself an identified profile (some event used it as a userId): nothing
 *          (two users are never merged by a shared id).
 *   3. An alias event (type PROFILE_ALIAS with previous_id P) says "P is now this
 *      person": P unknown becomes an alias of T; P's own profile — anonymous or
 *      identified, the caller said so explicitly — is merged into T; an alias P is
 *      re-pointed to T.
 *   Merge: counters, page views, sessions, orders, kind counters and revenue add
 *   (saturating), first_seen = min, last_seen = max, segments OR, the recent-event rings
 *   interleave by time (4 most recent kept), the identified flag ORs. Of the two current
 *   sessions the open one with the later last activity survives; the other, if open, is
 *   ended (PROFILE_END_MERGE).
 *
 * Sessions (track, page and screen events; identify, group and alias only update the
 * lifetime fields). Times are kept in whole seconds. An event at time t, with the
 * profile's current session [start, last]:
 *   - no session yet, or the last one closed and t >= its last: a new session starts;
 *   - session open and t >= last: the session ends first and a new one starts when
 *       t - last > session timeout (PROFILE_END_TIMEOUT; a gap of exactly the timeout
 *       continues), or the event has a campaign and it differs from the session's
 *       (PROFILE_END_CAMPAIGN; an event without a campaign continues), or both the
 *       session and the event have a tracker session id and they differ
 *       (PROFILE_END_SESSION_ID); a session without one adopts the first it sees. A
 *       tracker id only adds splits: the timeout applies to it too, so profile_sweep and
 *       profile_apply always agree;
 *   - start <= t < last (late, out of order, within the session): counted in the session
 *       (pages, conversion) but never splits it;
 *   - t < start, or t < last of a closed session: PROFILE_R_LATE — counted in the
 *       lifetime fields only; late events never reopen or split sessions.
 * A session converts at its first order (is_order) or event of a conversion kind
 * (profile_opts_t.conversion_kinds). A bounce is a session that ended with pages == 1.
 * Sessions end lazily (the next event) or by profile_sweep; every session that started
 * is reported ended exactly once (timeout, split, merge, eviction, forget).
 *
 * Memory bound. At most max_profiles profiles and max_aliases aliases. A new profile at
 * the bound evicts one chosen by CLOCK (second chance, an approximate LRU in event arrival
 * order): the hand skips profiles touched since it last passed, clearing their mark, and
 * evicts the first unmarked one (never one the current event resolved to). The victim's
 * open session is ended, on_evict gets the profile and its aliases, then they are dropped
 * from memory. With on_fetch set (the process stage keeps evicted profiles on disk,
 * spill.h), an event, erasure or segment edit for an id memory does not hold first asks
 * on_fetch, and a person who comes back resumes their profile: not new, same lifetime
 * counters, same aliases (profile_get reads memory only). An alias at the bound replaces the least
 * recently used of the next 8 aliases from an alias hand (the dropped anonymous id, if
 * seen again alone, starts a new anonymous profile). Memory: 112 bytes per profile
 * (+4 for its alias list), 8 per index entry at a load <= 3/4 (about 17 at 1M keys),
 * 24 per alias; arrays grow geometrically and never past the bounds. bench/profile.sh
 * prints the measured bytes per profile and CPU time per event at a million profiles.
 *
 * Not thread-safe: one thread owns a store. Callbacks run inside the call that caused
 * them and must not call back into the store. */
#ifndef SLUICE_PROFILE_H
#define SLUICE_PROFILE_H

#include <stddef.h>
#include <stdint.h>

#include "util/buf.h"

typedef struct profile_store profile_store_t;

#define PROFILE_ID_MAX 1024         /* longest id in bytes */
#define PROFILE_KINDS 8             /* tracked event names with their own counter */
#define PROFILE_KIND_NONE 0xff      /* event is not one of the tracked names */
#define PROFILE_RECENT 4            /* length of the recent-event ring */
#define PROFILE_MAX_BOUND (1u << 28) /* largest max_profiles / max_aliases */
#define PROFILE_SNAPSHOT_VERSION 1

/* Event types (Segment's). */
enum {
  PROFILE_TRACK = 0,
  PROFILE_PAGE,
  PROFILE_SCREEN,
  PROFILE_IDENTIFY,
  PROFILE_GROUP,
  PROFILE_ALIAS,
  PROFILE_TYPES
};

/* profile_t.flags */
#define PROFILE_F_IDENTIFIED 0x01 /* some event with a userId reached it */
#define PROFILE_F_SESSION 0x02    /* session_* describe a session (open or closed) */
#define PROFILE_F_OPEN 0x04       /* that session is open */
#define PROFILE_F_CONVERTED 0x08  /* the open session has converted */
/* Other bits are the store's own. */

/* One person's hot state, 112 bytes. Read-only for callers; times are Unix seconds. */
typedef struct profile {
  uint64_t id;                        /* hash of the profile's own id (profile_hash):
                                         the userId, or the anonymousId while anonymous */
  int64_t revenue_cents;              /* lifetime revenue x 100, rounded, saturating */
  uint64_t segments;                  /* segment bitmap (profile_segments) */
  uint32_t first_seen, last_seen;     /* min / max event time */
  uint32_t events;                    /* events applied (all types) */
  uint32_t page_views;                /* page + screen events */
  uint32_t sessions;                  /* sessions started */
  uint32_t orders;                    /* events with is_order */
  uint32_t kind_count[PROFILE_KINDS]; /* events per tracked name */
  uint32_t session_start;             /* current (or last closed) session: first event */
  uint32_t session_last;              /*   and latest event time */
  uint32_t session_campaign;          /*   campaign (campaign_hash folded to 32 bits) */
  uint32_t session_key;               /*   tracker session id (32-bit hash; 0 none) */
  uint16_t session_pages;             /*   page + screen events in it (saturating) */
  uint8_t flags;                      /* PROFILE_F_* */
  uint8_t recent_n;                   /* valid entries in the ring, 0..4 */
  /* The last PROFILE_RECENT events by time, most recent first. code: the kind (0..7) for
   * a tracked name, else 0x80 | type. ago: seconds before last_seen, saturating at 65535
   * (about 18 hours; 65535 reads "that long or longer"). Entries past recent_n are 0. */
  uint8_t recent_code[PROFILE_RECENT];
  uint16_t recent_ago[PROFILE_RECENT];
} profile_t;

/* A session that ended, reported to on_session_end. */
typedef struct profile_session {
  uint64_t profile;   /* profile_t.id of its profile */
  int64_t start_us;   /* first and latest event (whole seconds, in microseconds) */
  int64_t last_us;
  uint32_t pages;     /* page + screen events; 1 = a bounce */
  uint32_t campaign;  /* session_campaign */
  uint8_t converted;  /* 1 when the session converted */
  uint8_t reason;     /* PROFILE_END_* */
} profile_session_t;

enum {
  PROFILE_END_TIMEOUT = 1, /* inactivity (seen by the next event or profile_sweep) */
  PROFILE_END_CAMPAIGN,    /* a new campaign started a new session */
  PROFILE_END_SESSION_ID,  /* the tracker's session id changed */
  PROFILE_END_MERGE,       /* identity merge kept the other profile's session */
  PROFILE_END_EVICT,       /* its profile was evicted */
  PROFILE_END_FORGET       /* its profile was erased */
};

/* Callbacks; pointers are borrowed for the call.
 * on_evict: p (store-private flag bits cleared, session ended) and up to
 *   PROFILE_EVICT_ALIASES of its aliases (keys[i], last use used[i] in seconds), most
 *   recently linked first, as they leave memory.
 * on_fetch: asked for a key memory does not hold, before the store treats it as new:
 *   returns 1 after filling *p and up to cap aliases (*n) of the person the key belongs
 *   to, handing them back to memory (the caller forgets them), 0 when it has none. */
typedef void (*profile_evict_fn)(void *ud, const profile_t *p, const uint64_t *keys,
                                 const uint32_t *used, size_t n);
typedef int (*profile_fetch_fn)(void *ud, uint64_t key, profile_t *p, uint64_t *keys,
                                uint32_t *used, size_t *n, size_t cap);
typedef void (*profile_session_fn)(void *ud, const profile_session_t *s);

#define PROFILE_EVICT_ALIASES 256 /* most aliases given to on_evict / taken from on_fetch */

typedef struct profile_opts {
  size_t max_profiles;        /* 0: 1,000,000; at most PROFILE_MAX_BOUND */
  size_t max_aliases;         /* 0: max_profiles; at most PROFILE_MAX_BOUND */
  int64_t session_timeout_us; /* 0: 30 minutes; rounded down to whole seconds, >= 1 s */
  const char *kinds[PROFILE_KINDS]; /* tracked event names (copied); NULL or "": unused */
  uint8_t conversion_kinds;   /* bit i: kind i converts a session (orders always do) */
  uint64_t seed;              /* hash seed; 0: random (tests and benches fix it) */
  profile_evict_fn on_evict;  /* may be NULL */
  profile_fetch_fn on_fetch;  /* may be NULL: evicted profiles are gone */
  profile_session_fn on_session_end; /* may be NULL */
  void *ud;                   /* passed to both callbacks */
} profile_opts_t;

/* One event, as the process stage reads it. Strings are borrowed for the call; a *_len
 * of 0 means NUL-terminated. */
typedef struct profile_event {
  int64_t t_us;                /* event time, Unix microseconds, 1 s .. 2^32 s */
  int type;                    /* PROFILE_TRACK ... PROFILE_ALIAS */
  const char *user_id;         /* userId or NULL */
  size_t user_id_len;
  const char *anonymous_id;    /* anonymousId or NULL */
  size_t anonymous_id_len;
  const char *previous_id;     /* alias only: previousId */
  size_t previous_id_len;
  const char *session_id;      /* tracker session id or NULL */
  size_t session_id_len;
  uint8_t kind;                /* tracked-name index (profile_kind) or PROFILE_KIND_NONE;
                                  0 is kind 0, so set it on every event */
  int is_order;                /* 1: an order (counts in orders, converts the session) */
  double revenue;              /* in currency units; 0 or non-finite: none; may be < 0 */
  uint64_t campaign_hash;      /* hash of utm source/medium/campaign; 0: none */
} profile_event_t;

/* profile_result_t.flags */
#define PROFILE_R_NEW_PROFILE 0x001 /* a profile was created for this event */
#define PROFILE_R_NEW_USER 0x002    /* the profile became identified (first userId) */
#define PROFILE_R_MERGED 0x004      /* another profile was merged into it */
#define PROFILE_R_LINKED 0x008      /* an id became its alias (new, renamed or moved) */
#define PROFILE_R_RELINKED 0x010    /* ... taken from another user (shared device) */
#define PROFILE_R_SESSION_START 0x020 /* this event started a session */
#define PROFILE_R_SESSION_END 0x040 /* sessions ended during the call (sessions_ended) */
#define PROFILE_R_CONVERSION 0x080  /* this event converted its session (first time) */
#define PROFILE_R_LATE 0x100        /* before the session: lifetime fields only */
#define PROFILE_R_EVICTED 0x200     /* a profile was evicted to make room */
#define PROFILE_R_RESTORED 0x400    /* a profile came back from on_fetch */

typedef struct profile_result {
  const profile_t *profile; /* the profile updated; valid until the next call that
                               changes the store */
  uint32_t flags;           /* PROFILE_R_* */
  uint32_t sessions_ended;  /* on_session_end calls made by this apply */
  /* For stream-side KPIs (kpi.h): the profile's last_seen and orders just before this
   * event was applied (after any merge; 0 and 0 for a profile created by it), the
   * first_seen of the last profile merged into it (0: none), and how many merges joined
   * two profiles that both had orders. */
  uint32_t prev_last_seen;
  uint32_t prev_orders;
  uint32_t merged_first_seen;
  uint32_t merged_customers;
} profile_result_t;

/* ---- Lifetime ---- */

/* A new, empty store configured by opts (borrowed; NULL: all defaults). Returns NULL when
 * an option is out of range. Free with profile_store_free. */
profile_store_t *profile_store_new(const profile_opts_t *opts);
/* Free the store and everything it owns; no callbacks are made. NULL is a no-op. */
void profile_store_free(profile_store_t *s);

/* ---- Events ---- */

/* Apply one event (rules above). Returns 0 and fills *out (OUT, may be NULL), or -EINVAL
 * when the event is malformed: no user or anonymous id, an id longer than PROFILE_ID_MAX,
 * an unknown type or kind, an alias without previous_id, a time out of range. A rejected
 * event changes nothing. */
int profile_apply(profile_store_t *s, const profile_event_t *ev, profile_result_t *out);
/* End the open sessions that have been idle longer than the timeout at now_us (the same
 * clock as event times, e.g. the latest event time), visiting at most budget profile
 * slots from where the previous sweep stopped, so a caller can spread a full pass over
 * several calls. Returns the number of sessions ended (each reported to on_session_end). */
size_t profile_sweep(profile_store_t *s, int64_t now_us, size_t budget);
/* Profile slots a full pass of profile_sweep visits (live profiles and freed slots). */
size_t profile_slots(const profile_store_t *s);

/* ---- Lookup and edits ---- */

/* The profile id (len bytes; 0 = NUL-terminated) resolves to, following an alias, or NULL.
 * Borrowed: valid until the next call that changes the store. Does not count as a use. */
const profile_t *profile_get(const profile_store_t *s, const char *id, size_t len);
/* The store's hash seed (random unless set; adopted from a loaded snapshot). */
uint64_t profile_store_seed(const profile_store_t *s);
/* The key of id (len bytes; 0 = NUL-terminated) in this store, as in profile_t.id. */
uint64_t profile_hash(const profile_store_t *s, const char *id, size_t len);
/* Hints in two steps, no effect on any result. With many profiles, applying an event
 * costs two cache misses: the index slot of the id, then the profile it points to. The
 * process stage starts the first one record ahead (from the next log record's key) and
 * the second before reading the event; without a key, the first as soon as the event is
 * decoded and the second before the rollup work. Both overlap other work.
 * profile_prefetch_index: an event for id (len bytes; 0 = NUL-terminated) comes soon:
 * start loading the index slot where its lookup begins. Returns the id's key (as
 * profile_hash), 0 when id is empty.
 * profile_prefetch_profile: once that slot is likely loaded, start loading the profile
 * (or alias record) it holds for key; nothing when the slot holds another key. */
uint64_t profile_prefetch_index(const profile_store_t *s, const char *id, size_t len);
void profile_prefetch_profile(const profile_store_t *s, uint64_t key);
/* The index of a tracked event name (len bytes; 0 = NUL-terminated), or
 * PROFILE_KIND_NONE. */
uint8_t profile_kind(const profile_store_t *s, const char *name, size_t len);
/* Set then clear segment bits on the profile id resolves to. 0, or -ENOENT. */
int profile_segments(profile_store_t *s, const char *id, size_t len, uint64_t set,
                     uint64_t clear);
/* Erase the profile id resolves to (through an alias: the person it points to) and every
 * alias of it (GDPR erasure). An open session is reported ended (PROFILE_END_FORGET);
 * on_evict is not called. 0, or -ENOENT when id is unknown. Other users that once shared
 * an anonymous id with it keep their own profiles. */
int profile_forget(profile_store_t *s, const char *id, size_t len);

/* ---- Introspection ---- */

size_t profile_count(const profile_store_t *s);
size_t profile_alias_count(const profile_store_t *s);
/* Heap bytes the store holds (arrays as allocated, allocator overhead not included). */
size_t profile_store_bytes(const profile_store_t *s);

/* ---- Snapshots ----
 * Version 1, little-endian: "SLPF", u32 version, u64 seed, u32 profile count, u32 alias
 * count; each profile as profile_t's fields in order (112 bytes, store-private flag bits
 * cleared); each alias as u64 key, u32 profile ordinal, u32 last use (seconds); u32
 * CRC-32C of all the bytes before it. Session timeout, kinds and bounds come from the
 * loading store's options. */

/* Append a snapshot of s to out. Returns the number of bytes appended. */
size_t profile_store_serialize(const profile_store_t *s, buf_t *out);
/* Load a snapshot (n bytes at p, borrowed; hostile input is fine) into the empty store s,
 * adopting its seed. Returns 0; -EBADMSG when the bytes are not exactly one valid
 * version-1 snapshot (bad magic, version, checksum or length, duplicate or zero keys,
 * flags or ring out of range, a session outside its profile's times, an alias to no
 * profile); -ENOSPC when it holds more profiles or aliases than s allows; -EBUSY when
 * s is not empty; -EINVAL for NULL arguments. On error s is left empty. */
int profile_store_deserialize(profile_store_t *s, const void *p, size_t n);

/* ---- Helpers for the caller ---- */

/* PROFILE_TRACK ... for a Segment type name (len bytes), or -EINVAL. */
int profile_type(const char *name, size_t len);

#endif
