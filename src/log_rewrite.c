/* log_rewrite: taking data out of the durable log — log_retain deletes old segments,
 * log_rewrite turns chosen records into tombstones (see log.h for the interface).
 *
 * Both only touch closed segments, which nothing else writes: the writer thread holds a
 * descriptor on the active (last) segment only, and readers open segments by name. So the
 * work is done without `mu`; `mu` is taken only for a moment, to read the segment list or
 * to drop a deleted segment from its front, and `admin_mu` keeps the two operations from
 * running at once. For the records still in the active segment, log_rewrite first has
 * the writer roll between two groups (log_roll_active), which closes it.
 *
 * Replacing a segment: frames are read and CRC-checked from the original; the rewrite
 * file <base>.log.rewrite is only created at the first record to replace, by copying
 * everything before it verbatim, so untouched segments cost one read. Kept frames are
 * copied byte for byte; a tombstone keeps offset and time and gets a fresh length and CRC.
 * The index <base>.idx.rewrite is built on the way with the writer's sparse rule. Then:
 * fsync the copy, unlink <base>.idx, rename the copy over <base>.log, rename the index
 * into place, fsync the directory. Unlinking the old index first means a crash can only
 * leave a segment without an index (rebuilt by log_open), never with one that points into
 * the other version of the file. */
#include "log.h"
#include "log_int.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/mem.h"

#define COPY_CHUNK (1u << 20) /* output buffered up to this before each write */

static void disk_bytes_adjust(log_t *log, uint64_t before, uint64_t after) {
  if (after >= before) atomic_fetch_add(&log->disk_bytes, after - before);
  else atomic_fetch_sub(&log->disk_bytes, before - after);
}

/* ---- retention ---- */

/* Whether an entry of segment base's index records a time >= t: 1 or 0. The index may be
 * stale or missing; it is only used to keep a segment without reading it, which is
 * always safe. */
static int index_names_time(log_t *log, uint64_t base, int64_t t) {
  char iname[NAME_LEN];
  seg_name(iname, base, "idx");
  int ifd = openat(log->dirfd, iname, O_RDONLY | O_CLOEXEC);
  if (ifd < 0) return 0;
  buf_t idx = BUF_INIT;
  struct stat st;
  int found = 0;
  if (fstat(ifd, &st) == 0 && st.st_size >= IDX_ENTRY && st.st_size <= (64 << 20)) {
    size_t n = (size_t)st.st_size / IDX_ENTRY * IDX_ENTRY;
    buf_reserve(&idx, n);
    ssize_t got = pread_full(ifd, idx.data, n, 0);
    for (ssize_t i = 0; got > 0 && i + IDX_ENTRY <= got && !found; i += IDX_ENTRY)
      found = (int64_t)rd64(idx.data + i + 8) >= t;
  }
  buf_free(&idx);
  close(ifd);
  return found;
}

/* Whether closed segment base, whose records are [base, next_base), holds a record with
 * time_us >= t: 1, 0, or a negative errno (-EBADMSG when it is corrupt or does not end
 * where the next segment starts). */
static int holds_time(log_t *log, uint64_t base, uint64_t next_base, int64_t t) {
  if (index_names_time(log, base, t)) return 1;
  char name[NAME_LEN], h[SEG_HDR];
  seg_name(name, base, "log");
  window_t w = {.fd = openat(log->dirfd, name, O_RDONLY | O_CLOEXEC)};
  if (w.fd < 0) return -errno;
  int ret;
  ssize_t hn = pread_full(w.fd, h, SEG_HDR, 0);
  if (hn != SEG_HDR || !header_ok(h, base)) {
    ret = hn < 0 ? (int)hn : -EBADMSG;
    goto out;
  }
  uint64_t pos = SEG_HDR, off = base;
  for (;;) {
    frame_t f;
    int rc = frame_read(&w, pos, off, SCAN_CHUNK, &f);
    if (rc < 0) {
      ret = rc;
      break;
    }
    if (rc == FRAME_END) {
      ret = off == next_base ? 0 : -EBADMSG;
      break;
    }
    if (rc != FRAME_OK) {
      ret = -EBADMSG;
      break;
    }
    if (f.time_us >= t) {
      ret = 1;
      break;
    }
    pos += 8 + (uint64_t)f.len;
    off++;
  }
out:
  close(w.fd);
  buf_free(&w.b);
  return ret;
}

static uint64_t file_size_at(int dirfd, const char *name) {
  struct stat st;
  return fstatat(dirfd, name, &st, 0) == 0 ? (uint64_t)st.st_size : 0;
}

int log_retain(log_t *log, int64_t min_time_us, uint64_t *deleted_segments,
               uint64_t *deleted_bytes) {
  uint64_t nsegs = 0, nbytes = 0;
  int rc = 0;
  if (!log) return -EINVAL;
  if (log->read_only) {
    rc = -EROFS;
    goto out;
  }
  pthread_mutex_lock(&log->admin_mu);
  for (;;) {
    pthread_mutex_lock(&log->mu);
    int closed = log->nseg >= 2; /* the last segment is the writer's */
    uint64_t base = closed ? log->segs[0] : 0, next = closed ? log->segs[1] : 0;
    pthread_mutex_unlock(&log->mu);
    if (!closed) break;
    rc = holds_time(log, base, next, min_time_us);
    if (rc != 0) {
      if (rc > 0) rc = 0; /* the first segment that stays: done */
      break;
    }
    char name[NAME_LEN], iname[NAME_LEN];
    seg_name(name, base, "log");
    seg_name(iname, base, "idx");
    uint64_t log_size = file_size_at(log->dirfd, name), idx_size = file_size_at(log->dirfd, iname);

    /* Out of the list first (readers then skip to the new start), then off the disk. */
    pthread_mutex_lock(&log->mu);
    memmove(log->segs, log->segs + 1, (log->nseg - 1) * sizeof *log->segs);
    log->nseg--;
    atomic_store(&log->start_offset, log->segs[0]);
    pthread_mutex_unlock(&log->mu);
    (void)unlinkat(log->dirfd, iname, 0); /* derived data; log_open ignores a stray one */
    seg_name(iname, base, "evt");
    (void)unlinkat(log->dirfd, iname, 0);
    if (unlinkat(log->dirfd, name, 0) != 0 && errno != ENOENT) {
      rc = -errno;
      pthread_mutex_lock(&log->mu); /* still there: put it back at the front */
      memmove(log->segs + 1, log->segs, log->nseg * sizeof *log->segs);
      log->segs[0] = base;
      log->nseg++;
      atomic_store(&log->start_offset, base);
      pthread_mutex_unlock(&log->mu);
      break;
    }
    atomic_fetch_sub(&log->disk_bytes, log_size);
    nsegs++;
    nbytes += log_size + idx_size;
    /* One segment at a time: the directory must never lose a later segment first. */
    if ((rc = sync_fd(log->dirfd, 0)) < 0) break;
  }
  pthread_mutex_unlock(&log->admin_mu);
out:
  if (deleted_segments) *deleted_segments = nsegs;
  if (deleted_bytes) *deleted_bytes = nbytes;
  return rc;
}

/* ---- rewriting ---- */

typedef struct rewriter {
  log_t *log;
  log_rewrite_fn keep;
  void *ud;
  log_rewrite_stats_t *st;
  char *err;
  size_t errlen;
  window_t w;  /* over the original segment */
  buf_t out;   /* frames not yet written to the copy */
  buf_t idx;   /* the copy's index */
  buf_t repl;  /* the callback's replacement */
} rewriter_t;

/* Copy bytes [0, n) of fd `in` to the start of fd `out`. Returns 0 or a negative errno. */
static int copy_prefix(int in, int out, uint64_t n) {
  buf_t b = BUF_INIT;
  buf_reserve(&b, COPY_CHUNK);
  int rc = 0;
  for (uint64_t pos = 0; pos < n && rc == 0;) {
    size_t want = n - pos < COPY_CHUNK ? (size_t)(n - pos) : COPY_CHUNK;
    ssize_t got = pread_full(in, b.data, want, pos);
    if (got < 0) rc = (int)got;
    else if ((size_t)got < want) rc = -EIO; /* a closed segment does not shrink */
    else rc = pwrite_full(out, b.data, want, pos);
    pos += want;
  }
  buf_free(&b);
  return rc;
}

/* Write an index file `name` holding idx and fsync it. Returns 0 or a negative errno
 * (nothing is left behind then). */
static int write_index(log_t *log, const char *name, const buf_t *idx) {
  int fd = openat(log->dirfd, name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return -errno;
  int rc = pwrite_full(fd, idx->data, idx->len, 0);
  if (rc == 0) rc = sync_fd(fd, 1);
  close(fd);
  if (rc < 0) unlinkat(log->dirfd, name, 0);
  return rc;
}

/* Rewrite closed segment base (records [base, next_base)) if keep rejects any of its
 * records. Returns 0 or a negative errno with rw->err filled. */
static int rewrite_segment(rewriter_t *rw, uint64_t base, uint64_t next_base) {
  log_t *log = rw->log;
  char name[NAME_LEN], iname[NAME_LEN], tname[NAME_LEN], tiname[NAME_LEN], h[SEG_HDR];
  seg_name(name, base, "log");
  seg_name(iname, base, "idx");
  seg_name(tname, base, "log" REWRITE_EXT);
  seg_name(tiname, base, "idx" REWRITE_EXT);
  int in = -1, out = -1, ret = 0;
  const char *what = "read";
  struct stat st;
  uint64_t pos = SEG_HDR, newpos = SEG_HDR, off = base, due = SEG_HDR, written = 0;
  uint64_t examined = 0, replaced = 0;

  in = openat(log->dirfd, name, O_RDONLY | O_CLOEXEC);
  if (in < 0 || fstat(in, &st) != 0) {
    ret = -errno;
    goto io_fail;
  }
  ssize_t hn = pread_full(in, h, SEG_HDR, 0);
  if (hn < 0) {
    ret = (int)hn;
    goto io_fail;
  }
  if (hn != SEG_HDR || !header_ok(h, base)) {
    snprintf(rw->err, rw->errlen, "log: segment %s has a bad header; nothing was rewritten in it",
             name);
    ret = -EBADMSG;
    goto fail;
  }
  rw->w.fd = in;
  window_drop(&rw->w);
  buf_reset(&rw->out);
  buf_reset(&rw->idx);
  for (;;) {
    frame_t f;
    int rc = frame_read(&rw->w, pos, off, SCAN_CHUNK, &f);
    if (rc == FRAME_END) break;
    if (rc < 0) {
      ret = rc;
      goto io_fail;
    }
    if (rc != FRAME_OK) {
      snprintf(rw->err, rw->errlen,
               "log: segment %s is corrupt at byte %" PRIu64 " (offset %" PRIu64
               "); nothing was rewritten in it",
               name, pos, off);
      ret = -EBADMSG;
      goto fail;
    }
    log_record_t rec = {.offset = off, .time_us = f.time_us, .key = f.key,
                        .key_len = f.key_len, .value = f.value, .value_len = f.value_len};
    buf_reset(&rw->repl);
    int keep = rw->keep(rw->ud, &rec, &rw->repl);
    examined++;
    if (keep < 0) {
      snprintf(rw->err, rw->errlen, "log: rewrite stopped at offset %" PRIu64 ": %s", off,
               strerror(-keep));
      ret = keep;
      goto fail;
    }
    uint64_t flen = 8 + (uint64_t)f.len;
    if (keep == 0) {
      if (rw->repl.len == 0 || rw->repl.len > MAX_RECORD) {
        snprintf(rw->err, rw->errlen,
                 "log: the replacement for offset %" PRIu64 " is %zu bytes (1 to %u allowed)",
                 off, rw->repl.len, MAX_RECORD);
        ret = -EINVAL;
        goto fail;
      }
      if (out < 0) { /* first record to replace: start the copy with all before it */
        what = "write";
        out = openat(log->dirfd, tname, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (out < 0) {
          ret = -errno;
          goto io_fail;
        }
        if ((ret = copy_prefix(in, out, pos)) < 0) goto io_fail;
        written = pos;
      }
      char fh[FRAME_HDR];
      uint32_t len = LEN_MIN + (uint32_t)rw->repl.len;
      wr32(fh, len);
      wr64(fh + 8, off);
      wr64(fh + 16, (uint64_t)f.time_us);
      wr32(fh + 24, 0);
      wr32(fh + 4, crc32c(crc32c(0, fh + 8, LEN_MIN), rw->repl.data, rw->repl.len));
      buf_append(&rw->out, fh, FRAME_HDR);
      buf_append(&rw->out, rw->repl.data, rw->repl.len);
      flen = FRAME_HDR + rw->repl.len;
      replaced++;
    } else if (out >= 0) {
      buf_append(&rw->out, f.key - FRAME_HDR, 8 + (size_t)f.len);
    }
    idx_maybe_add(&rw->idx, &due, log->index_interval, base, off, newpos, f.time_us);
    newpos += flen;
    pos += 8 + (uint64_t)f.len;
    off++;
    if (rw->out.len >= COPY_CHUNK) {
      what = "write";
      if ((ret = pwrite_full(out, rw->out.data, rw->out.len, written)) < 0) goto io_fail;
      written += rw->out.len;
      buf_reset(&rw->out);
    }
  }
  if (off != next_base) {
    snprintf(rw->err, rw->errlen,
             "log: segment %s ends at offset %" PRIu64 " but the next one starts at %" PRIu64
             "; nothing was rewritten in it",
             name, off, next_base);
    ret = -EBADMSG;
    goto fail;
  }
  rw->st->records_examined += examined;
  if (out < 0) goto done; /* nothing to replace here */

  what = "write";
  if (rw->out.len && (ret = pwrite_full(out, rw->out.data, rw->out.len, written)) < 0)
    goto io_fail;
  buf_reset(&rw->out);
  if ((ret = sync_fd(out, 0)) < 0) goto io_fail;
  close(out);
  out = -1;
  int have_idx = write_index(log, tiname, &rw->idx) == 0;

  /* The swap. Until the rename lands the old segment is the one on disk. */
  what = "replace";
  if (unlinkat(log->dirfd, iname, 0) != 0 && errno != ENOENT) {
    ret = -errno;
    goto io_fail;
  }
  if (renameat(log->dirfd, tname, log->dirfd, name) != 0) {
    ret = -errno;
    goto io_fail;
  }
  if (have_idx && renameat(log->dirfd, tiname, log->dirfd, iname) != 0)
    unlinkat(log->dirfd, tiname, 0); /* log_open rebuilds the index */
  if ((ret = sync_fd(log->dirfd, 0)) < 0) /* in place, maybe not durably: say so */
    snprintf(rw->err, rw->errlen, "log: cannot sync the directory after rewriting %s: %s",
             name, strerror(-ret));
  disk_bytes_adjust(log, (uint64_t)st.st_size, newpos);
  rw->st->segments_rewritten++;
  rw->st->records_replaced += replaced;
  rw->st->bytes_before += (uint64_t)st.st_size;
  rw->st->bytes_after += newpos;
  goto done;

io_fail:
  snprintf(rw->err, rw->errlen, "log: cannot %s segment %s while rewriting it: %s", what,
           name, strerror(-ret));
fail:
  if (out >= 0) close(out);
  out = -1;
  unlinkat(log->dirfd, tname, 0);
  unlinkat(log->dirfd, tiname, 0);
done:
  if (in >= 0) close(in);
  rw->w.fd = -1;
  return ret;
}

int log_rewrite(log_t *log, log_rewrite_fn keep, void *ud, log_rewrite_stats_t *stats,
                char *err, size_t errlen) {
  log_rewrite_stats_t st;
  memset(&st, 0, sizeof st);
  char dummy[1];
  if (!err || !errlen) {
    err = dummy;
    errlen = sizeof dummy;
  }
  err[0] = 0;
  int rc = 0;
  uint64_t *segs = NULL;
  if (!log || !keep) {
    snprintf(err, errlen, "log: log_rewrite needs a log and a callback");
    rc = -EINVAL;
    goto out;
  }
  if (log->read_only) {
    snprintf(err, errlen, "log: opened read-only; open it for writing to rewrite it");
    rc = -EROFS;
    goto out;
  }
  pthread_mutex_lock(&log->admin_mu);
  rc = log_roll_active(log);
  if (rc < 0) {
    snprintf(err, errlen, "log: cannot close the active segment before rewriting: %s",
             strerror(-rc));
    pthread_mutex_unlock(&log->admin_mu);
    goto out;
  }
  pthread_mutex_lock(&log->mu);
  size_t n = log->nseg;
  segs = xmalloc((n ? n : 1) * sizeof *segs);
  if (n) memcpy(segs, log->segs, n * sizeof *segs);
  pthread_mutex_unlock(&log->mu);
  st.end_offset = n ? segs[n - 1] : 0; /* the active segment's base */

  rewriter_t rw = {.log = log, .keep = keep, .ud = ud, .st = &st, .err = err,
                   .errlen = errlen, .w = {.fd = -1}};
  for (size_t i = 0; i + 1 < n && rc == 0; i++) rc = rewrite_segment(&rw, segs[i], segs[i + 1]);
  buf_free(&rw.w.b);
  buf_free(&rw.out);
  buf_free(&rw.idx);
  buf_free(&rw.repl);
  pthread_mutex_unlock(&log->admin_mu);
out:
  free(segs);
  if (stats) *stats = st;
  return rc;
}
