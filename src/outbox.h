/* outbox: the webhook stage's durable journal — actions written before they are tried,
 * marked done after a 2xx, moved to the dead letters after the last attempt.
 *
 * Design. One append-only file, <dir>/outbox, of CRC-framed records
 * (u32 length | u32 CRC-32C | type | payload): A (accepted: key, endpoint, time, body),
 * D (delivered: key, time), X (dead letter: key, time), R (requeued: key, time). The
 * state is rebuilt at open by replaying the file; a torn or corrupt tail (a crash in the
 * middle of a write) is cut off at the last whole record. Every key is in one state:
 * pending (to deliver), dead (a dead letter, kept until requeued) or done (delivered;
 * only the key and time are kept, for remember_us, so a decision replayed after a crash
 * is recognised and never delivered twice). The file is rewritten (temporary file,
 * fsync, rename) with only the live records when it has grown past four times their
 * size. Records are written with write(2) as they happen; making them durable is the
 * caller's choice of moment: outbox_sync, or fdatasync on outbox_fd from a thread
 * (the webhook stage groups many records into one sync and tries an action only after
 * its record is durable). The bodies of pending and dead entries count against
 * max_bytes: beyond it outbox_add refuses. Not thread-safe; core module: never logs. */
#ifndef SLUICE_OUTBOX_H
#define SLUICE_OUTBOX_H

#include <stddef.h>
#include <stdint.h>

#include "action.h"

typedef struct outbox outbox_t;

typedef enum { OUTBOX_PENDING = 1, OUTBOX_DEAD, OUTBOX_DONE } outbox_state_t;

/* Longest endpoint name; longest body. */
#define OUTBOX_MAX_NAME 64
#define OUTBOX_MAX_BODY (1024 * 1024)

typedef struct outbox_entry {
  char key[ACTION_KEY_MAX];
  char endpoint[OUTBOX_MAX_NAME + 1];
  outbox_state_t state;
  int64_t at_us;      /* accepted (pending, dead) or delivered (done), wall clock */
  char *body;         /* owned by the outbox; NULL once done */
  size_t body_len;
  void *ud;           /* the caller's slot (the webhook stage's delivery state) */
  /* private */
  struct outbox_entry *hnext, *prev, *next;
} outbox_entry_t;

typedef struct outbox_opts {
  uint64_t max_bytes;   /* bodies of pending + dead entries; default 64 MiB */
  int64_t remember_us;  /* done keys are forgotten after this; default 7 days */
  uint64_t remember_max;/* and beyond this many, oldest first; default 1,000,000 (about
                           200 bytes each) */
} outbox_opts_t;

/* Open (creating dir, mode 0700, and the file as needed) and replay the journal.
 * opts may be NULL. Returns NULL with a message in err. */
outbox_t *outbox_open(const char *dir, const outbox_opts_t *opts, char *err, size_t errlen);
/* Close (without syncing) and free. NULL no-op. */
void outbox_close(outbox_t *o);

/* Accept an action: write its A record and return the new pending entry (OUT: *out,
 * owned by the outbox). Returns 0; -EEXIST when key is already pending, dead or done
 * (*out then points at that entry); -ENOSPC when the bodies would pass max_bytes;
 * -E2BIG for a body over OUTBOX_MAX_BODY; -EINVAL for an empty or too long key or
 * endpoint; another negative errno when the write failed (sticky: every later write
 * fails too). */
int outbox_add(outbox_t *o, const char *key, const char *endpoint, const char *body,
               size_t len, int64_t now_us, outbox_entry_t **out /* OUT */);
/* A pending entry was delivered: D record, body freed, state done; the oldest done key
 * is forgotten when there are more than remember_max. Returns 0 or -errno. */
int outbox_done(outbox_t *o, outbox_entry_t *e, int64_t now_us);
/* A pending entry gave up: X record, state dead. Returns 0 or -errno. */
int outbox_dead(outbox_t *o, outbox_entry_t *e, int64_t now_us);
/* Dead entries back to pending (R records): the one with key, or all when key is NULL.
 * fn(ud, e) runs for each requeued entry. Returns how many, or a negative errno. */
long outbox_requeue(outbox_t *o, const char *key, void (*fn)(void *ud, outbox_entry_t *e),
                    void *ud);

/* The entry for key in any state, or NULL. */
outbox_entry_t *outbox_find(const outbox_t *o, const char *key);
/* Call fn for each entry in state, oldest first. fn must not add or remove entries. */
void outbox_each(outbox_t *o, outbox_state_t state, void (*fn)(void *ud, outbox_entry_t *e),
                 void *ud);

/* Durability: bytes written since the last sync; the file descriptor (for fdatasync on
 * another thread; valid until the next outbox_compact or outbox_close); outbox_synced
 * tells the outbox that a sync covering written bytes finished. outbox_sync does it all
 * here. Returns 0 or -errno. */
uint64_t outbox_unsynced(const outbox_t *o);
int outbox_fd(const outbox_t *o);
void outbox_synced(outbox_t *o, uint64_t bytes);
int outbox_sync(outbox_t *o);

/* Forget done keys older than remember_us, then rewrite the file when it has grown past
 * four times its live records (and 1 MiB). Call only with no sync in flight on
 * outbox_fd. Returns 0 or -errno (the old file stays in use on failure). */
int outbox_compact(outbox_t *o, int64_t now_us);

typedef struct outbox_stats {
  uint64_t pending, dead, done; /* entries per state */
  uint64_t bytes;               /* bodies of pending + dead */
  uint64_t file_bytes;          /* size of the journal */
  uint64_t dropped_tail_bytes;  /* cut off at open (torn or corrupt) */
} outbox_stats_t;
void outbox_stats(const outbox_t *o, outbox_stats_t *out /* OUT */);

#endif
