/* log: the durable, segmented, append-only event log — sluice's source of truth.
 *
 * Every accepted event becomes one record. Records carry a dense 64-bit offset (0, 1, 2,
 * ... as in a Kafka partition), the server receive time, a key (the user the event belongs
 * to, so a Kafka backend can partition by it) and a value (the enriched event JSON).
 *
 * On disk a log is a directory of segments, <dir>/<20-digit base offset>.log, each opening
 * with a 16-byte header ("SLOG", version, base offset) followed by frames:
 *
 *   u32 len | u32 crc32c | u64 offset | i64 time_us | u32 key_len | key | value
 *
 * all little-endian; len counts the bytes after the crc field and the CRC32C covers them.
 * Beside each segment a sparse index <base>.idx holds one 16-byte entry (u32 relative
 * offset, u32 file position, i64 time_us) every index_interval bytes; it is derived data,
 * rebuilt from the segment whenever it is missing, shorter than the segment needs or (for
 * the last segment) different from what the segment says. A third file, <base>.evt,
 * keeps the smallest and largest event time (log_entry_t.event_us) of each run of
 * records of about index_interval bytes, and of a closed segment as a whole; readers with
 * a time window (log_reader_set_window) pass over what it rules out. Its format and rules
 * are in log_evt.h. A segment rolls before an
 * append would take it past segment_bytes; an append larger than that gets a segment to
 * itself, since one append never spans two segments.
 *
 * Writing (group commit): the loop thread calls log_append, which copies the records into
 * the open group and returns at once; the writer is woken once per turn of the loop
 * (after the I/O callbacks, or before the loop would block), or at once when the group
 * has grown large, so the requests one turn reads share a group. One writer thread takes the whole group, assigns
 * offsets, frames and CRCs the records, write()s them and, with LOG_SYNC_ALWAYS, calls
 * fdatasync once for the group (once per segment when it fills one); then every ack callback of that group runs on the loop
 * thread. Many requests thus share one fdatasync, and a request is acknowledged only
 * after its records are durable. While a group is being written the next one fills up.
 * If a write or sync fails (ENOSPC, EIO), the segment is truncated back to where the group
 * began, its callbacks get the error, and the next group tries again: the log resumes by
 * itself once space returns and no partial group is ever left behind. An fdatasync
 * failure other than ENOSPC makes the log fail sticky (-EIO) since the kernel may have
 * dropped the dirty pages; only a restart (which recovers from disk) clears it.
 *
 * Commit window (opts->commit_window_us, with LOG_SYNC_ALWAYS): under sustained load,
 * when the next group already holds requests as the writer finishes one, the writer
 * lets that group fill until commit_window_us after its first request arrived before
 * writing it (PostgreSQL's commit_delay and MySQL's binlog_group_commit_sync_delay do
 * the same). A group that reaches the writer's size limit, a roll, log_close and the
 * quiet probe (log_set_quiet_probe: no more requests can come) end the wait early.
 * Each group costs the same fdatasync, its block requests and thread switches whatever
 * its size, so fuller groups cost less CPU per request, at the price of up to
 * commit_window_us more latency under load. When the writer was idle a new group is
 * taken at once, so a lone request never waits for the window; except after a group
 * whose window the quiet probe ended: every connection was waiting for it, they send
 * again as its answers arrive, and the next group fills the same way (at full load,
 * groups of single events came to 62 requests instead of 53).
 *
 * Preallocation (opts->preallocate_bytes, with LOG_SYNC_ALWAYS): the writer keeps the
 * active segment written with zeros, and synced, up to that many bytes past its last
 * record (never past segment_bytes), so a group's fdatasync has only data blocks to
 * flush. Appending at the end of the file instead makes every fdatasync also write the
 * inode (its new size) and the block allocation: on ext4 two more writes that the sync
 * waits for. The zeros are cut off when the segment is closed (roll, log_close) and by
 * recovery, which takes zeros after the last frame for the clean end of a preallocated
 * segment and reports only other bytes as dropped. Preallocating is best effort: if it
 * fails (a full disk), records are appended at the end of the file as without it. It
 * pays only while groups are small or the CPU has time to spare: when the groups' syncs
 * average more than 96 KiB (100-event batches at full load), writing zeros costs more
 * CPU than the inode writes they spare, so the writer writes none, and the preparer
 * below is left in the idle class when a roll found no file, until the average falls
 * under 32 KiB (log.c, zeros_pay).
 *
 * The next segment is prepared ahead, as PostgreSQL does with WAL segments: a preparer
 * thread (started with preallocation, joined by log_close) writes <dir>/next.prealloc
 * with zeros to segment_bytes and syncs it, then waits. A roll takes that file: it
 * writes and syncs the header, renames the file to <base>.log and syncs the directory,
 * so the new segment is preallocated whole and the writer tops up no zeros in it (the
 * first segment, one created while none was ready, and the one a restart goes on with
 * are preallocated as above). The preparer's I/O is in the idle I/O class, so the block
 * layer serves a group's sync before it. It declines to start when the file system would
 * be left with less than one more segment_bytes free, and drops the file on any error
 * (a full disk), trying again a second later. next.prealloc never matches a segment's
 * name, so recovery, readers and read-only opens (sluice export) ignore it; a writable
 * log_open deletes one left by a crash, and a crash after the rename leaves a segment
 * of a header and zeros, the clean end recovery accepts. It is counted in
 * log_disk_bytes once fully written.
 *
 * Recovery (log_open): the last segment is scanned from its start; a torn or corrupt tail
 * (short frame, bad length, CRC mismatch, offset out of sequence) is truncated away and
 * reported in log_recovery_t; a last segment torn inside its header holds no records and
 * gets its header rewritten. Earlier segments were closed cleanly and are trusted (readers
 * still check every CRC); a bad header in an earlier one, or segments that overlap, make
 * log_open fail with a message instead of guessing.
 *
 * Damage. A record in a closed segment whose frame does not verify (the disk changed
 * bytes after they were synced), a closed segment cut short, or one missing altogether
 * (a gap between the segments around it) does not stop the log: log_open counts it in
 * log_recovery_t.damaged_segments when it sees it, and a reader that meets it skips to
 * the next frame that verifies, reporting the records it could not read once
 * (log_reader_next's -EBADMSG, then log_reader_damage). Everything else stays readable
 * and appends go on. Frames are found again by their header: offset, length and CRC-32C
 * must all agree; event JSON cannot hold the NUL bytes a small offset field carries, so
 * client data cannot fake one.
 *
 * Reading: a log_reader_t reads durable records by offset, from any thread, whether the
 * log is open for writing in this process or opened read-only by a tool (sluice export).
 * The same interface is what a Kafka-backed log will implement later: keyed records,
 * offsets, and acks after durability.
 *
 * Removing data. Only closed segments (every one but the last) are ever changed, and only
 * whole: log_retain deletes the oldest ones once all their records are older than a
 * cut-off, so the log becomes the contiguous range [log_start_offset, log_end_offset) and
 * its first segment's base may be above 0 (log_open accepts that); log_rewrite replaces
 * chosen records by tombstones with the same offset and time (erasure: the old bytes
 * leave the files, offsets stay dense). A rewrite first asks the writer to roll, so the
 * records it must see are all in closed segments, then copies each affected segment to
 * <base>.log.rewrite, fsyncs it and renames it over the original; a crash leaves either
 * the old or the new segment, and log_open deletes any *.rewrite left behind. Appends go
 * on meanwhile: neither call holds the lock the writer needs while it reads or copies. */
#ifndef SLUICE_LOG_H
#define SLUICE_LOG_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "util/buf.h"

typedef struct log log_t;
typedef struct log_reader log_reader_t;

typedef enum {
  LOG_SYNC_ALWAYS,   /* fdatasync every group before acknowledging it (default) */
  LOG_SYNC_INTERVAL, /* acknowledge after write(); fdatasync every sync_interval_ms */
  LOG_SYNC_OFF,      /* acknowledge after write(); never fdatasync (page cache only) */
} log_sync_t;

typedef struct log_opts {
  const char *dir;           /* borrowed; created (mode 0700) if missing */
  uint64_t segment_bytes;    /* roll threshold; default 64 MiB when 0 */
  uint32_t index_interval;   /* bytes between sparse index entries; default 4096 when 0 */
  log_sync_t sync;
  uint32_t sync_interval_ms; /* for LOG_SYNC_INTERVAL; default 1000 when 0 */
  uint64_t max_pending_bytes;/* log_append refuses with -EAGAIN past this; 0 = 64 MiB */
  uint64_t preallocate_bytes;/* with LOG_SYNC_ALWAYS: zeros kept written ahead of the
                                active segment's records (see Preallocation); 0 = off */
  uint32_t commit_window_us; /* with LOG_SYNC_ALWAYS: how long a group that began while
                                the writer was busy may fill (see Commit window); 0 = off */
  uv_loop_t *loop;           /* borrowed; ack callbacks run here. NULL with read_only */
  int read_only;             /* open for reading only: no writer, no truncation */
} log_opts_t;

/* What log_open found and repaired. */
typedef struct log_recovery {
  uint64_t segments;         /* segment files found */
  uint64_t records;          /* records in the log after recovery */
  uint64_t dropped_bytes;    /* torn/corrupt tail bytes truncated (0 when clean: zeros
                                a preallocated segment ends with are not counted); with
                                read_only, the bytes that would be, left in place */
  char dropped_segment[32];  /* file name of the segment truncated, "" if none */
  uint64_t damaged_segments; /* closed segments holding frames that do not verify (see
                                Damage above; readers skip what they cannot read) */
  char damaged_segment[32];  /* the first of them, "" if none */
} log_recovery_t;

/* One record to append; offset and framing are assigned by the log. */
typedef struct log_entry {
  int64_t time_us;           /* server receive time */
  int64_t event_us;          /* the record's own time (an event's time), which the log
                                keeps per run of records for log_reader_set_window; 0:
                                unknown (its run is never passed over) */
  const void *key;           /* borrowed; may be NULL when key_len is 0 */
  uint32_t key_len;
  const void *value;         /* borrowed */
  uint32_t value_len;
} log_entry_t;

/* One record read back. Pointers are borrowed from the reader and valid until the next
 * call on it. */
typedef struct log_record {
  uint64_t offset;
  int64_t time_us;
  const char *key;
  uint32_t key_len;
  const char *value;
  uint32_t value_len;
} log_record_t;

/* Called on the loop thread once the records of one log_append are durable (status 0,
 * first_offset = offset of its first record) or have failed (status -ENOSPC, -EIO, ...;
 * nothing of that append is in the log). Never called from inside log_append. */
typedef void (*log_ack_fn)(void *ud, int status, uint64_t first_offset);

/* Called on the loop thread after each group becomes readable; end_offset is the offset
 * the next record will get. */
typedef void (*log_notify_fn)(void *ud, uint64_t end_offset);

/* ---- Life cycle ---- */

/* Open (creating if needed) the log in opts->dir and recover its tail. Returns the log, or
 * NULL with a message in err. rec (may be NULL) receives what recovery found. */
log_t *log_open(const log_opts_t *opts, log_recovery_t *rec /* OUT */, char *err,
                size_t errlen);

/* Write and sync everything appended so far, run pending callbacks, stop the writer and
 * free the log. Must run on the loop thread with the loop still alive, not from an ack or
 * notify callback, after the log's readers are closed. The log's uv handle is released on
 * the loop's next iteration: run the loop (uv_run) once more before uv_loop_close.
 * NULL is a no-op. */
void log_close(log_t *log);

/* ---- Appending (loop thread only) ---- */

/* Queue n records as one unit and call ack (may be NULL) when they are durable or failed.
 * Returns 0 when queued (ack will be called exactly once), or, with ack never called:
 * -EAGAIN when more than max_pending_bytes are waiting (backpressure: answer 503),
 * -EIO when the log has failed sticky, -EINVAL for an empty or oversized record
 * (no key and no value, or key + value over 16 MiB), n == 0 or a read_only log,
 * -ESHUTDOWN from a callback run by log_close. */
int log_append(log_t *log, const log_entry_t *entries, size_t n, log_ack_fn ack, void *ud);

/* Subscribe to new durable records (later stages tail the log). One subscriber per call;
 * returns 0. */
int log_subscribe(log_t *log, log_notify_fn fn, void *ud);

/* ---- State (any thread) ---- */

uint64_t log_end_offset(const log_t *log);     /* next offset to be assigned */
uint64_t log_start_offset(const log_t *log);   /* first offset still on disk (0 until
                                                  log_retain deletes a segment) */
uint64_t log_pending_bytes(const log_t *log);  /* appended, not yet acknowledged */
uint64_t log_disk_bytes(const log_t *log);     /* sum of segment sizes (preallocated
                                                  zeros included) and of the prepared
                                                  next segment when there is one */
int log_error(const log_t *log);               /* sticky error (negative errno) or 0 */
uint64_t log_prepared_rolls(const log_t *log); /* rolls that took the prepared next
                                                  segment (see Preallocation) */
int log_prepared_ready(const log_t *log);      /* 1 when a prepared next segment is
                                                  waiting for the next roll, else 0 */

/* The commit window's early end (see Commit window): before each poll, while the writer
 * lets a group fill, the loop asks fn(ud) whether any more appends can come before an
 * ack goes out (the HTTP server: every open connection waits for its answer); when fn
 * says no, the writer takes the group at once. Loop thread; call before appending. */
void log_set_quiet_probe(log_t *log, int (*fn)(void *ud), void *ud);

/* Latency observer for metrics: called on the writer thread after every fdatasync with
 * its duration and the number of records it made durable. */
typedef void (*log_sync_observer_fn)(void *ud, uint64_t sync_us, uint64_t records);
void log_set_sync_observer(log_t *log, log_sync_observer_fn fn, void *ud);

/* ---- Reading ---- */

/* A reader positioned at offset `from` (clamped to the first offset still on disk; an
 * offset not written yet is waited for). Borrows log, which must outlive it. Returns NULL
 * on allocation or I/O error with a message in err.
 *
 * Readers and log_retain / log_rewrite: a reader keeps reading the segment file it has
 * open, even once it is deleted or replaced (the old file stays alive for its
 * descriptor), so it may return records, or record bytes, that are no longer in the log.
 * When it then needs a segment that log_retain has deleted, it continues at
 * log_start_offset: the offsets it returns jump forward, never back, and never error. A
 * reader opened after a log_rewrite returned sees only the rewritten data. This holds for
 * a read_only log too, whose readers notice another process's log_retain when a segment
 * they need is gone while a later one is still there. */
log_reader_t *log_reader_open(log_t *log, uint64_t from, char *err, size_t errlen);

/* Read the next durable record. Returns 1 with *out filled, 0 when caught up (no record
 * at this offset yet), or a negative errno: -EIO on a read error; -EBADMSG for damage
 * (see Damage above): log_reader_damage says which records could not be read, and the
 * next call goes on after them — unless the damage's `to` is UINT64_MAX (no verifiable
 * record after it in the last segment), when the reader stops there for good. On a
 * read_only log the reader also picks up valid records another process appended after
 * log_open. */
int log_reader_next(log_reader_t *r, log_record_t *out /* OUT */);

typedef struct log_damage {
  uint64_t from, to;   /* records [from, to) could not be read; to == UINT64_MAX: the
                          reader cannot go on */
  uint64_t pos;        /* byte in the segment where the damage starts */
  char segment[48];    /* segment file name */
} log_damage_t;

/* After log_reader_next returned -EBADMSG: what was skipped (OUT). */
void log_reader_damage(const log_reader_t *r, log_damage_t *out /* OUT */);

/* log_reader_next for readers that go on past damage: the records it skips are added to
 * *skipped (may be NULL). Returns 1, 0, -EIO, or -EBADMSG only when the reader cannot go
 * on (see log_reader_next). */
int log_reader_next_intact(log_reader_t *r, log_record_t *out /* OUT */,
                           uint64_t *skipped /* IN/OUT */);

/* Position at the first record with time_us >= t (approximate to one index interval,
 * then exact by scanning). Returns 0 or a negative errno. */
int log_reader_seek_time(log_reader_t *r, int64_t t_us);

/* From now on, pass over runs of records whose event times (log_entry_t.event_us) the
 * log has recorded as all outside [from_us, to_us): whole segments, or stretches of about
 * index_interval bytes, are then not read at all. Records the log has no such record of
 * (appended before a restart and not yet in a closed run, or in a segment whose
 * <base>.evt is missing) are returned as usual, so the caller still filters by event
 * time; the window only saves reading. from_us >= to_us turns it off. */
void log_reader_set_window(log_reader_t *r, int64_t from_us, int64_t to_us);

/* A hint for prefetching: the key of the record log_reader_next will probably return
 * after skip (0, 1, ...) others, when the frames up to its header and key already sit in
 * the reader's read-ahead window (no system call, no check: the bytes are not verified
 * yet and may belong to a record that turns out damaged, or be skipped). Returns 1 with
 * *key / *len pointing into the window (valid until the next call on r), else 0. */
int log_reader_peek_key(const log_reader_t *r, unsigned skip, const char **key /* OUT */,
                        uint32_t *len /* OUT */);

/* Make r drop the log's pages it has read from the page cache, once they lie more than
 * keep_bytes behind it in its segment (and a segment's every page once it moves on to
 * the next). For the one reader that reads everything last (the process stage): the log
 * is written once and read once, and without this its pages push everything else out
 * of the page cache while the kernel keeps allocating new ones. Only for a log written
 * with LOG_SYNC_ALWAYS, where every page a reader has passed is on disk already (with
 * the other policies the call does nothing); other readers of the same bytes read them
 * from disk again. */
void log_reader_drop_behind(log_reader_t *r, uint64_t keep_bytes);

/* Offset of the record the next log_reader_next will return. */
uint64_t log_reader_offset(const log_reader_t *r);

void log_reader_close(log_reader_t *r);

/* ---- Retention and erasure (writable logs; any thread but the writer's) ----
 *
 * Both block the calling thread for as long as they read and copy segments, without
 * holding up the writer: appends keep being acknowledged meanwhile, provided the loop
 * thread is free to deliver them (a server runs them on a worker thread; the offline CLI
 * just calls them with a loop of its own that it does not need to run). They are
 * serialised against each other, must not run from the sync observer (the writer's own
 * thread), and must return before log_close. A read_only log refuses them (-EROFS): an
 * offline tool opens the log writable, which also takes the directory lock. */

/* Delete the oldest closed segments whose every record has time_us < min_time_us,
 * oldest first, stopping at the first segment that holds a record at or after
 * min_time_us; the last (active) segment is never deleted, so the log stays one
 * contiguous range of offsets. "Every record" is meant exactly: each candidate segment is
 * read to its end (its index is consulted first, and a segment whose index already names
 * a record at or after the cut-off is kept without reading it), because receive times
 * can step backwards with the wall clock, so neither the next segment's first time nor
 * the segment's last record bounds its newest one. Each deletion removes <base>.idx, then
 * <base>.log, then fsyncs the directory, so a crash never leaves a gap. Returns 0 with
 * the number of segments and bytes (.log + .idx) deleted in *deleted_segments and
 * *deleted_bytes (either may be NULL; counted also when an error stops the run part way),
 * -EBADMSG when a candidate segment is corrupt (it and everything after it are kept),
 * -EROFS for a read_only log, or another negative errno from the file system. */
int log_retain(log_t *log, int64_t min_time_us, uint64_t *deleted_segments /* OUT */,
               uint64_t *deleted_bytes /* OUT */);

/* Decides the fate of one record for log_rewrite: return 1 to keep it as it is, 0 to
 * replace it by a tombstone whose value the callback appends to replacement (empty on
 * entry; 1 byte to 16 MiB), or a negative errno to stop the rewrite. rec and its bytes
 * are borrowed for the duration of the call. Runs on log_rewrite's thread. */
typedef int (*log_rewrite_fn)(void *ud, const log_record_t *rec, buf_t *replacement /* OUT */);

typedef struct log_rewrite_stats {
  uint64_t segments_rewritten; /* segment files replaced */
  uint64_t records_examined;   /* records passed to the callback */
  uint64_t records_replaced;   /* records that became tombstones */
  uint64_t bytes_before;       /* size of the rewritten .log files before ... */
  uint64_t bytes_after;        /* ... and after */
  uint64_t end_offset;         /* every record below this offset was examined */
} log_rewrite_stats_t;

/* Erase records in place: every record durable when the call begins, and any appended
 * since that the writer put in the same segment (all those below stats->end_offset), is
 * passed to keep, and each one it rejects becomes a
 * tombstone record with the same offset and time_us, an empty key and the replacement as
 * value, so offsets stay dense for every consumer. The writer is first made to roll (an
 * active segment holding records is closed, appends continue in a new one); then each
 * closed segment with at least one record to replace is copied to <base>.log.rewrite
 * (kept frames byte for byte, tombstones framed with a new CRC), fsync'd and renamed
 * over <base>.log, its index is rebuilt the same way, and the directory is fsync'd.
 * Segments with nothing to replace are left untouched. On return the replaced records'
 * keys and values are in no file of the log directory; the blocks the old files used are
 * freed, not overwritten, and a reader that had the old file open keeps reading it until
 * it moves to another segment (new readers see the rewritten data). A crash at any point
 * leaves each segment either old or new, never mixed; the stray *.rewrite files are
 * deleted by the next log_open. Returns 0 with *stats (may be NULL) filled, or a negative
 * errno with a message in err (segments already rewritten stay rewritten; stats counts
 * them): the callback's own error, -EINVAL for a replacement that is empty or over
 * 16 MiB, -EBADMSG for a corrupt segment, -EROFS for a read_only log, -ESHUTDOWN when the
 * log is closing, or an I/O error (-ENOSPC: the copy needs room for one segment). */
int log_rewrite(log_t *log, log_rewrite_fn keep, void *ud, log_rewrite_stats_t *stats /* OUT */,
                char *err, size_t errlen);

#endif
