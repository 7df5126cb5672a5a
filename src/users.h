/* users: a person's rights over their data — forget them, or export everything of theirs.
 *
 *   DELETE /v1/users/{id}         (admin key)  erase the user: every event of theirs
 *   GET    /v1/users/{id}/export  (admin key)  all their events as NDJSON
 *   sluice forget ID / sluice export-user ID   the same from the command line
 *
 * Who "the user" is: starting from the id given (and its pseudonym when
 * pseudonymisation is on), an event belongs to the user when its userId is one of their
 * ids, when it has no userId and its anonymousId is one of theirs, or when it is an alias
 * whose previousId is theirs. The userId and anonymousId of every event that belongs to
 * them join their ids, and the log is scanned again until no id is added, so the
 * anonymous browsing before a login goes with the account. Another user's events are never
 * taken, even from a shared device: an event with someone else's userId stays.
 *
 * Erasure rewrites the affected log segments (log_rewrite): each event of the user
 * becomes a tombstone {"type":"forgotten"} with the same offset, so offsets stay dense for
 * every consumer, and the old bytes are gone from disk once the rename lands. Bad-event
 * records that mention any of the user's ids are tombstoned too. We chose rewriting over
 * crypto-shredding: it needs no per-user key store on the hot path, readers stay
 * key-free, and the result can be checked by scanning the files. The audit trail
 * (<data-dir>/audit.log, one JSON line per erasure, fsync'd) records when, by whom, how
 * many records, and a random request id — never the id itself. Later stages (profiles,
 * rule state) register their own erasers with users_on_forget. */
#ifndef SLUICE_USERS_H
#define SLUICE_USERS_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "config.h"
#include "http.h"
#include "log.h"
#include "privacy.h"
#include "util/buf.h"

typedef struct users users_t;

typedef struct users_forget_result {
  uint64_t events;           /* event records tombstoned */
  uint64_t bad_records;      /* bad-event records tombstoned */
  uint64_t segments;         /* segment files rewritten */
  size_t ids;                /* ids the user turned out to have */
  char request_id[37];       /* also in the audit line */
} users_forget_result_t;

/* Erases what a later stage holds about the ids (NUL-separated in ids, n of them).
 * Runs on a worker thread. Returns 0 or a negative errno. */
typedef int (*users_forget_fn)(void *ud, const char *ids, size_t n);

/* cfg, log, bad, privacy are borrowed. loop may be NULL for the CLI (no HTTP). */
users_t *users_new(const config_t *cfg, uv_loop_t *loop, log_t *log, log_t *bad,
                   const privacy_t *privacy);
void users_free(users_t *u);
void users_on_forget(users_t *u, users_forget_fn fn, void *ud);

/* If r is a /v1/users/ route, handle it (admin key; the work runs on the libuv thread
 * pool, the answer comes after) and return 1; else return 0. */
int users_handle(users_t *u, http_req_t *r);

/* Jobs queued by users_handle that have not answered yet (shutdown waits for them). */
size_t users_busy(const users_t *u);

/* Blocking versions (CLI, tests). by names the actor for the audit line. Return 0 or -1
 * with err. */
int users_forget(users_t *u, const char *id, const char *by, users_forget_result_t *out,
                 char *err, size_t errlen);
int users_export(users_t *u, const char *id, buf_t *out, size_t *events, char *err,
                 size_t errlen);

#endif
