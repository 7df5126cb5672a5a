/* log_evt: the event-time index of the log — private to the log module (log.c writes it,
 * log_read.c reads it, log_rewrite.c deletes it with its segment).
 *
 * A record carries its receive time in the frame; its own time (an event's time, given by
 * the appender as log_entry_t.event_us) can lie anywhere before that: an offline queue
 * emptied the next day, a history imported in an hour. Readers that want a range of
 * event times would have to read the whole log. Beside each segment, <base>.evt therefore
 * holds, for each run of records that fills about index_interval bytes of the segment,
 * the smallest and largest event time in it:
 *
 *   u32 rel_from | u32 rel_to | i64 lo | i64 hi | u32 kind | u32 crc32c(first 28 bytes)
 *
 * (32 bytes, little-endian; records [base + rel_from, base + rel_to) all have event times
 * in [lo, hi]). Kind 1 is a run; kind 2, written once as the last entry when a segment
 * is closed and its runs cover every record of it, sums the whole segment (rel_from 0,
 * rel_to its record count), so a reader decides a segment with one read.
 *
 * It is derived data and only ever a promise of "nothing in here": a run may be missing
 * (records appended before a restart and not yet in a run, a write that failed, a file
 * lost), and then its records are simply read. A run is written after its records were
 * written (and synced, with LOG_SYNC_ALWAYS), without fsync of its own; recovery of the
 * last segment keeps the valid entries that describe records still in it and cuts the
 * rest, so an entry never speaks for records written after a crash. Offsets are all it
 * names, so a log_rewrite (same offsets, new positions) leaves it valid. */
#ifndef SLUICE_LOG_EVT_H
#define SLUICE_LOG_EVT_H

#include <stddef.h>
#include <stdint.h>

#include "util/buf.h"

#define EVT_ENTRY 32
#define EVT_RUN 1
#define EVT_SEGMENT 2

typedef struct evt_entry {
  uint32_t rel_from, rel_to; /* records [base + rel_from, base + rel_to) */
  int64_t lo, hi;            /* their event times lie in [lo, hi] */
} evt_entry_t;

/* The writer's state for the active segment (writer thread only). */
typedef struct evt_writer {
  int fd;             /* <base>.evt, -1 when not open (then entries are not written) */
  uint64_t size;      /* bytes of whole entries in the file */
  uint64_t base;      /* the segment's base offset */
  uint64_t from;      /* the open run starts at this offset ... */
  uint64_t from_pos;  /* ... and this file position */
  uint64_t n;         /* records in the open run */
  int64_t lo, hi;     /* their event times */
  int64_t seg_lo, seg_hi; /* event times of the segment's runs so far */
  int gap;            /* some record of the segment is in no entry */
} evt_writer_t;

/* Start the index of segment `base` (dirfd: the log directory), whose next record will
 * be `next` at file position `pos`. fresh: a new segment (the file is created empty);
 * else the recovered last segment: its valid entries for records below `next` are kept,
 * the rest cut. Best effort: without a file, w->fd stays -1. */
void evt_start(evt_writer_t *w, int dirfd, uint64_t base, uint64_t next, uint64_t pos,
               int fresh);

/* Add the record `off` at file position `pos` with event time t (0: unknown) to the state w (a copy
 * of the writer's, until its records are written), appending the run it closes, if any,
 * to pending: a run closes before the first record at least interval bytes past its own
 * first one. */
void evt_add(evt_writer_t *w, uint64_t off, uint64_t pos, int64_t t, uint32_t interval,
             buf_t *pending);

/* Write the entries in pending (then emptied). */
void evt_flush(evt_writer_t *w, buf_t *pending);

/* Close the open run, write it and, when the segment is closed (`closing`: it holds
 * records [base, end) and no more will come) and no record missed an entry, the
 * whole-segment entry; then close the file. */
void evt_finish(evt_writer_t *w, uint64_t end, int closing, buf_t *pending);

/* ---- reading ---- */

/* The whole-segment entry of segment `base` (dirfd: the log directory), when its index
 * ends with one that verifies: 1 with *out filled, else 0. One read. */
int evt_segment(int dirfd, uint64_t base, evt_entry_t *out /* OUT */);

/* The runs of segment `base` (OUT *out, malloc'd, ascending and not overlapping, *n of
 * them; NULL and 0 when there are none). Reading stops at the first entry that does not
 * verify or breaks the order. */
void evt_load(int dirfd, uint64_t base, evt_entry_t **out /* OUT */, size_t *n /* OUT */);

#endif
