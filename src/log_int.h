/* log_int: what the files of the log module share — private, included only by log.c
 * (writer, recovery, life cycle), log_read.c (readers) and log_rewrite.c (retention and
 * erasure). Nothing here is an interface for other modules; see log.h for that.
 *
 * It holds the on-disk format constants, the little-endian codec, the EINTR-safe file
 * I/O helpers, the read window and frame parser that recovery, readers and rewriting all
 * use, and the definition of struct log. The helpers are static inline so each file keeps
 * calling them by their short names; the locking rules are spelled out beside each
 * field of struct log. */
#ifndef SLUICE_LOG_INT_H
#define SLUICE_LOG_INT_H

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

#include "log.h"
#include "log_evt.h"
#include "util/buf.h"
#include "util/crc32c.h"

#define SEG_HDR 16                     /* "SLOG" | u32 version | u64 base */
#define SEG_VERSION 1
#define FRAME_HDR 28                   /* len crc offset time key_len */
#define LEN_MIN 20                     /* len of a frame with empty key and value */
#define MAX_RECORD (16u << 20)         /* key + value */
#define LEN_MAX (LEN_MIN + MAX_RECORD)
#define IDX_ENTRY 16
#define SCAN_CHUNK (256u << 10)        /* recovery and rewrite reads */
#define READ_CHUNK (64u << 10)         /* reader read-ahead */
#define GROUP_KEEP (8u << 20)          /* larger group buffers are freed, not reused */
#define NAME_LEN 48                    /* "<20 digits>.log.rewrite" and NUL fit */
#define REWRITE_EXT ".rewrite"         /* suffix of files a rewrite has not renamed yet */
#define PREP_NAME "next.prealloc"      /* the prepared next segment (log.c, "Preparing") */

/* ---- little-endian encoding ---- */

static inline void wr32(char *p, uint32_t v) {
  for (int i = 0; i < 4; i++) p[i] = (char)(v >> (8 * i));
}
static inline void wr64(char *p, uint64_t v) {
  for (int i = 0; i < 8; i++) p[i] = (char)(v >> (8 * i));
}
static inline uint32_t rd32(const char *p) {
  const unsigned char *u = (const unsigned char *)p;
  return (uint32_t)u[0] | (uint32_t)u[1] << 8 | (uint32_t)u[2] << 16 | (uint32_t)u[3] << 24;
}
static inline uint64_t rd64(const char *p) { return rd32(p) | (uint64_t)rd32(p + 4) << 32; }

/* Open a log file read-only without updating its access time. The readers read behind a
 * writer that changes the file's mtime every clock tick, so under relatime every tick's
 * first read would make the inode dirty again, and on ext4 without a journal the next
 * fdatasync would write the inode's block once more (a third more of those writes in
 * the benchmark). O_NOATIME needs the file's owner: another user's log (a read-only open)
 * is opened without it. */
static inline int open_read(int dirfd, const char *name) {
  int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC | O_NOATIME);
  if (fd < 0 && errno == EPERM) fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC);
  return fd;
}

/* "<20-digit base>.<ext>" into out (NAME_LEN bytes). */
static inline void seg_name(char *out, uint64_t base, const char *ext) {
  snprintf(out, NAME_LEN, "%020" PRIu64 ".%s", base, ext);
}

static inline void header_encode(char *h, uint64_t base) {
  memcpy(h, "SLOG", 4);
  wr32(h + 4, SEG_VERSION);
  wr64(h + 8, base);
}

static inline int header_ok(const char *h, uint64_t base) {
  return memcmp(h, "SLOG", 4) == 0 && rd32(h + 4) == SEG_VERSION && rd64(h + 8) == base;
}

/* ---- file I/O that survives EINTR and short transfers ---- */

/* Read up to n bytes at pos, going on after a short read only while fewer than need
 * (1 <= need <= n) are in. Returns the bytes read (< need only at end of file) or a
 * negative errno. */
static inline ssize_t pread_least(int fd, void *p, size_t n, size_t need, uint64_t pos) {
  size_t got = 0;
  while (got < need) {
    ssize_t r = pread(fd, (char *)p + got, n - got, (off_t)(pos + got));
    if (r < 0) {
      if (errno == EINTR) continue;
      return -errno;
    }
    if (r == 0) break;
    got += (size_t)r;
  }
  return (ssize_t)got;
}

/* Returns bytes read (< n only at end of file) or a negative errno. */
static inline ssize_t pread_full(int fd, void *p, size_t n, uint64_t pos) {
  return pread_least(fd, p, n, n, pos);
}

/* Returns 0 or a negative errno. */
static inline int pwrite_full(int fd, const void *p, size_t n, uint64_t pos) {
  size_t done = 0;
  while (done < n) {
    ssize_t r = pwrite(fd, (const char *)p + done, n - done, (off_t)(pos + done));
    if (r < 0) {
      if (errno == EINTR) continue;
      return -errno;
    }
    if (r == 0) return -EIO;
    done += (size_t)r;
  }
  return 0;
}

/* fdatasync (data_only) or fsync; returns 0 or a negative errno. */
static inline int sync_fd(int fd, int data_only) {
  int rc;
  do rc = data_only ? fdatasync(fd) : fsync(fd);
  while (rc != 0 && errno == EINTR);
  return rc == 0 ? 0 : -errno;
}

/* ---- a read window over a file: recovery, readers and rewrites parse frames from it ---- */

typedef struct window {
  int fd;       /* borrowed */
  buf_t b;      /* owned: buf_free it when done */
  uint64_t pos; /* file position of b.data[0] */
  size_t len;   /* bytes of the file held */
} window_t;

/* Point *p at file bytes [pos, pos+n), asking for chunk bytes when it must read.
 * Returns the bytes available at *p (< n only at end of file) or a negative errno. */
static inline ssize_t window_get(window_t *w, uint64_t pos, size_t n, size_t chunk,
                                 const char **p) {
  if (w->len && pos >= w->pos && pos + n <= w->pos + w->len) {
    *p = w->b.data + (pos - w->pos);
    return (ssize_t)n;
  }
  size_t want = n > chunk ? n : chunk;
  buf_reset(&w->b);
  buf_reserve(&w->b, want);
  w->len = 0;
  /* One pread asks for the whole chunk; more only while fewer than n bytes are in. A
   * reader at the log's tail gets a short read at every call, and going on to read the
   * end of file would cost a second system call per record. */
  ssize_t got = pread_least(w->fd, w->b.data, want, n, pos);
  if (got < 0) return got;
  w->pos = pos;
  w->len = (size_t)got;
  *p = w->b.data;
  return got < (ssize_t)n ? got : (ssize_t)n;
}

static inline void window_drop(window_t *w) { w->len = 0; }

enum { FRAME_OK, FRAME_END, FRAME_TORN, FRAME_BAD };

/* A negative errno held in a ssize_t, as an int that is still negative. */
static inline int err_int(ssize_t e) { return e < 0 && e >= -4095 ? (int)e : -EIO; }

typedef struct frame {
  uint32_t len; /* bytes after the crc field */
  uint64_t offset;
  int64_t time_us;
  const char *key;
  uint32_t key_len;
  const char *value;
  uint32_t value_len;
} frame_t;

/* Parse and verify the frame at pos, which must carry offset `expect`. Returns FRAME_OK
 * with *f filled (pointers into the window; the whole frame starts at f->key - FRAME_HDR),
 * FRAME_END when the file ends exactly at pos, FRAME_TORN when it ends inside the frame,
 * FRAME_BAD for a bad length, CRC, offset or key length, or a negative errno. */
static inline int frame_read(window_t *w, uint64_t pos, uint64_t expect, size_t chunk,
                             frame_t *f) {
  /* The errors come from pread_full as -errno; narrowing them through err_int lets the
   * compiler see that a negative result never becomes FRAME_OK with *f unset. */
  const char *p;
  ssize_t got = window_get(w, pos, 8, chunk, &p);
  if (got < 0) return err_int(got);
  if (got == 0) return FRAME_END;
  if (got < 8) return FRAME_TORN;
  uint32_t len = rd32(p), crc = rd32(p + 4);
  if (len < LEN_MIN || len > LEN_MAX) return FRAME_BAD;
  got = window_get(w, pos, 8 + (size_t)len, chunk, &p);
  if (got < 0) return err_int(got);
  if ((size_t)got < 8 + (size_t)len) return FRAME_TORN;
  if (crc32c(0, p + 8, len) != crc) return FRAME_BAD;
  uint32_t key_len = rd32(p + 24);
  if (rd64(p + 8) != expect || key_len > len - LEN_MIN) return FRAME_BAD;
  f->len = len;
  f->offset = expect;
  f->time_us = (int64_t)rd64(p + 16);
  f->key = p + FRAME_HDR;
  f->key_len = key_len;
  f->value = p + FRAME_HDR + key_len;
  f->value_len = len - LEN_MIN - key_len;
  return FRAME_OK;
}

/* After damage at pos: the first position past pos holding a frame that verifies and
 * carries an offset in (after, below). Candidates are filtered by their offset and length
 * fields before the CRC is computed, so the scan costs little more than reading. Returns
 * FRAME_OK with *at and *f, FRAME_END when the file holds none, or a negative errno. */
static inline int frame_resync(window_t *w, uint64_t pos, uint64_t after, uint64_t below,
                               size_t chunk, uint64_t *at, frame_t *f) {
  for (uint64_t p = pos + 1;; p++) {
    const char *h;
    ssize_t got = window_get(w, p, FRAME_HDR, chunk, &h);
    if (got < 0) return err_int(got);
    if (got < FRAME_HDR) return FRAME_END;
    uint64_t off = rd64(h + 8);
    uint32_t len = rd32(h);
    if (off <= after || off >= below || len < LEN_MIN || len > LEN_MAX) continue;
    int rc = frame_read(w, p, off, chunk, f);
    if (rc < 0) return rc;
    if (rc == FRAME_OK) {
      *at = p;
      return FRAME_OK;
    }
  }
}

/* The sparse index rule, shared by the writer, recovery and rewrites so all build the
 * same file: an entry for the frame at pos when pos has reached *due. */
static inline void idx_maybe_add(buf_t *idx, uint64_t *due, uint32_t interval, uint64_t base,
                                 uint64_t offset, uint64_t pos, int64_t time_us) {
  if (pos < *due || pos > UINT32_MAX || offset - base > UINT32_MAX) return;
  char e[IDX_ENTRY];
  wr32(e, (uint32_t)(offset - base));
  wr32(e + 4, (uint32_t)pos);
  wr64(e + 8, (uint64_t)time_us);
  buf_append(idx, e, sizeof e);
  *due = pos + interval;
}

/* ---- the log ---- */

typedef struct waiter {
  log_ack_fn ack;
  void *ud;
  uint64_t nrecords;
  uint64_t bytes;        /* framed bytes in the group buffer */
  uint64_t first_offset; /* set by the writer */
  size_t rec0;           /* index of its first record's event time in the group's times */
  int status;            /* set by the writer */
} waiter_t;

/* A batch of appends: framed records back to back, and who to tell. */
typedef struct group {
  buf_t data;
  buf_t times;  /* i64 event time of each record, in order */
  waiter_t *w;
  size_t nw, capw;
  int64_t first_us; /* monotonic time of its first append */
  struct group *next;
} group_t;

typedef struct sub {
  log_notify_fn fn;
  void *ud;
} sub_t;

struct log {
  int read_only;
  log_sync_t sync;
  uint64_t segment_bytes, max_pending;
  uint32_t index_interval, sync_interval_ms;
  uv_loop_t *loop;
  int dirfd;

  pthread_mutex_t mu; /* guards everything down to `writer` */
  pthread_cond_t wake;
  int stopping;
  group_t *open;      /* filled by log_append */
  group_t *free;      /* recycled groups */
  group_t *done, *done_tail;
  uint64_t *segs;     /* segment bases, ascending; only the writer appends (roll), only
                         log_retain removes from the front */
  size_t nseg, capseg;
  log_sync_observer_fn obs_fn;
  void *obs_ud;
  uint64_t roll_asked, roll_served; /* log_roll_active tickets */
  int roll_status;                  /* result of the last roll served */
  pthread_cond_t rolled;            /* signalled when roll_served advances */

  pthread_t writer;
  int writer_started;
  uv_async_t *async;  /* separately allocated: freed by its close callback */
  struct kicker *kicker; /* wakes the writer once per loop turn (log.c, "Waking") */
  atomic_int kick;    /* an append since the writer was last woken */
  int sealed;         /* under mu: a loop turn ended (or KICK_BYTES passed) since the
                         open group began: the writer may take it */
  atomic_int filling; /* set under mu: the writer lets the open group fill (commit window) */
  int hurry;          /* under mu: the quiet probe ended the window of the open group */
  int (*quiet_fn)(void *ud); /* loop thread: see log_set_quiet_probe */
  void *quiet_ud;
  int64_t window_us;  /* the commit window; 0 with no window or without LOG_SYNC_ALWAYS */

  /* writer thread only (and log_open/log_close around it) */
  int fd, idx_fd;
  uint64_t seg_base, seg_size, idx_size, idx_due, next_offset;
  uint64_t seg_file;  /* the active segment's file size: seg_size plus preallocated zeros */
  uint64_t prealloc;  /* preallocate_bytes, 0 unless LOG_SYNC_ALWAYS */
  uint64_t sync_bytes_avg; /* bytes per group sync, moving average (log.c, zeros_pay) */
  int groups_large;        /* it passed ZEROS_OFF_BYTES (and not yet back under
                              ZEROS_ON_BYTES): no zeros from the writer, an idle preparer */
  int idx_broken;
  uint64_t unsynced_records;
  int64_t last_sync_us;
  buf_t idx_pending;
  evt_writer_t evt;   /* the active segment's event-time index (log_evt.h) */
  buf_t evt_pending;
  log_sync_observer_fn w_obs_fn;
  void *w_obs_ud;

  /* the prepared next segment (log.c, "Preparing the next segment") */
  pthread_mutex_t prep_mu;  /* for prep_wake; never held with mu, never waited for by
                               the writer (only tried) */
  pthread_cond_t prep_wake; /* wakes the preparer: the writer took the file, or stop */
  atomic_int prep_fd;       /* PREP_NAME fully zeroed and synced, or -1. Only the
                               preparer sets it, only the writer (or log_close) clears it:
                               until then the preparer leaves the name alone */
  atomic_int prep_stop;
  atomic_int prep_behind;   /* the last roll found no prepared file: the next one is
                               made at normal CPU priority, not in SCHED_IDLE */
  pthread_t preparer;
  int preparer_started;
  _Atomic uint64_t prepared_rolls; /* rolls that took the prepared file */

  /* loop thread only */
  int closing;
  sub_t *subs;
  size_t nsubs;

  /* Serialises log_retain and log_rewrite, which change closed segments; held for their
   * whole run, never together with the writer's work. Taken before mu. */
  pthread_mutex_t admin_mu;

  _Atomic uint64_t durable_end;  /* records below are readable */
  _Atomic uint64_t start_offset; /* first offset still on disk (segs[0]) */
  _Atomic uint64_t pending_bytes;
  _Atomic uint64_t disk_bytes;
  _Atomic int error;
};

/* Segment list lookup; caller holds mu. Index of the last segment with base <= off, or
 * 0 when off precedes them all. */
static inline size_t seg_find(const log_t *log, uint64_t off) {
  size_t lo = 0, hi = log->nseg;
  while (hi - lo > 1) {
    size_t mid = lo + (hi - lo) / 2;
    if (log->segs[mid] <= off) lo = mid;
    else hi = mid;
  }
  return lo;
}

/* ---- across files ---- */

/* Ask the writer thread to close the active segment and start a new one between two
 * groups, and wait until it has (any thread but the writer's; log must be writable).
 * Afterwards every record that was durable when the call began lies in a closed segment.
 * An active segment holding no record is left as it is. Returns 0, the roll's negative
 * errno (-ENOSPC, -EIO, ...), or -ESHUTDOWN when the log is closing. Defined in log.c. */
int log_roll_active(log_t *log);

#endif
