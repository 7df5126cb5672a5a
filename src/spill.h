/* spill: profiles evicted from memory, kept on disk until their person comes back.
 *
 * The profile store holds at most max-profiles people in memory (profile.h). The process
 * stage hands every evicted profile, with its aliases, to the spill; when an id that
 * memory does not know arrives, the store asks the spill first, and the person comes
 * back with their whole history instead of starting again as a stranger (a returning
 * customer counted as new, lifetime revenue and orders lost).
 *
 * File. <dir>/profiles.spill.<gen>: a 32-byte header ("SLSP", u32 version, u64 the
 * profile store's seed, u64 generation, u64 zero) and records, each u32 CRC-32C of the
 * bytes after it, u32 length of the bytes after the length, u8 kind, u64 key, then
 *   PUT: profile_t (112 bytes, host byte order: the file belongs to this data dir),
 *        u16 alias count, per alias u64 key and u32 last use (seconds);
 *   DEL: u64 offset of the PUT it ends (the person came back, or was erased).
 * Records are only appended. Keys are the profile store's 64-bit id hashes (never 0).
 *
 * Crash consistency. The file moves on after every snapshot; the snapshot says how far
 * it reflects. spill_commit flushes and reports (generation, length); the caller makes
 * the file durable (spill_sync_fd) before the snapshot that names them, and
 * spill_open(gen, len) cuts whatever came after — those records are written again when
 * the log's tail is replayed. With no usable snapshot the caller starts an empty spill.
 *
 * Memory. An index maps every key (profile ids and alias ids) to its PUT: 16 bytes a key
 * at a load <= 3/4, about 21 bytes, against about 150 bytes for a profile in memory.
 * max_ids bounds it: a profile whose keys do not fit is refused (-ENOSPC) and the caller
 * counts it as dropped. A person has at most SPILL_MAX_ALIASES aliases on disk.
 *
 * Compaction. PUTs ended by a DEL, and DELs, are garbage. spill_commit rewrites the live
 * records into generation gen + 1 when garbage passes half of the file and
 * SPILL_COMPACT_MIN bytes; spill_retire deletes older generations once a snapshot naming
 * the new one is durable. The rewrite runs in the calling thread (a sequential copy of
 * the live bytes) at most once per commit.
 *
 * Errors are negative errnos; the module never logs. Not thread-safe: one thread owns a
 * spill (spill_sync_fd hands a descriptor to another thread). */
#ifndef SLUICE_SPILL_H
#define SLUICE_SPILL_H

#include <stddef.h>
#include <stdint.h>

#include "profile.h"

#define SPILL_VERSION 1
#define SPILL_MAX_ALIASES 256
#define SPILL_COMPACT_MIN (8u << 20)

typedef struct spill spill_t;

typedef struct spill_stats {
  uint64_t generation;
  uint64_t profiles;  /* live PUTs */
  uint64_t ids;       /* keys in the index */
  uint64_t bytes;     /* file length */
  uint64_t garbage;   /* bytes of ended PUTs and of DELs */
  uint64_t index_bytes;
  uint64_t puts, takes, compactions; /* since open */
} spill_stats_t;

/* Open generation gen in dir for a store with this seed, keeping its first len bytes
 * (len 0: a new, empty file, replacing any of that name). max_ids: bound of the index
 * (0: 16,777,216). Returns the spill, or NULL with a message in err: the file is missing,
 * shorter than len, from another store (seed) or generation, or damaged before len. */
spill_t *spill_open(const char *dir, uint64_t gen, uint64_t len, uint64_t seed,
                    uint64_t max_ids, char *err, size_t errlen);
/* Close (no flush: what is not committed is what a crash would lose). NULL is a no-op. */
void spill_close(spill_t *s);

/* Keep profile p and its n aliases (keys[i], last use used[i]; n <= SPILL_MAX_ALIASES).
 * 0, -ENOSPC when the index bound would be passed (nothing kept), -EINVAL for a zero or
 * already spilled profile key, or a write error. */
int spill_put(spill_t *s, const profile_t *p, const uint64_t *keys, const uint32_t *used,
              size_t n);
/* The person key (a profile id or an alias id) belongs to: fills *p and up to cap
 * aliases (keys, used; *n their count) and removes the person from the spill. 1 found,
 * 0 not here, or a negative errno (a damaged record: -EBADMSG; it stays). */
int spill_take(spill_t *s, uint64_t key, profile_t *p, uint64_t *keys, uint32_t *used,
               size_t *n, size_t cap);
/* 1 when key is in the spill, else 0. */
int spill_has(const spill_t *s, uint64_t key);

/* Write buffered records, compact when due, and report the generation and length a
 * snapshot may name (OUT). 0 or a negative errno. */
int spill_commit(spill_t *s, uint64_t *gen, uint64_t *len);
/* A new descriptor of the current file for fdatasync in another thread (close it), or a
 * negative errno. */
int spill_sync_fd(const spill_t *s);
/* Delete the files of generations older than gen in the spill's directory. */
void spill_retire(const spill_t *s, uint64_t gen);
/* Delete every spill file in dir (a rebuild from the log starts without them). */
void spill_remove_all(const char *dir);

void spill_stats(const spill_t *s, spill_stats_t *out /* OUT */);

#endif
