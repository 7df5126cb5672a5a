/* log_read: the readers of the durable log (log_reader_*; see log.h for the interface).
 *
 * A reader has its own file descriptor on one segment and a read-ahead window over it.
 * It only trusts file bytes for offsets below the log's `durable_end`: bytes past it may
 * still be rolled back by the writer, so the window is dropped whenever the reader
 * reaches what was the durable end when the window was filled. It looks segments up in
 * the log's list (under `mu`) and opens them by name, so it sees what log_retain and
 * log_rewrite did to the directory the next time it opens a segment: a segment that was
 * deleted under it is skipped (the reader continues at the first offset still on disk),
 * while a segment it already holds open stays readable, old bytes and all, until it
 * moves on (Linux keeps an unlinked or replaced file alive for its open descriptors). */
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

/* ---- reading ---- */

struct log_reader {
  log_t *log;
  int fd;             /* current segment, -1 before the first */
  uint64_t seg_base;
  uint64_t seg_next;  /* base of the following segment, UINT64_MAX if not known yet */
  uint64_t pos;       /* file position of record `next` */
  uint64_t next;      /* offset of the record at pos */
  uint64_t skip_to;   /* records below this are read and passed over (seeks) */
  window_t win;
  uint64_t win_valid; /* the window's bytes are final for offsets below this */
  int err;            /* sticky -EBADMSG */
  log_damage_t damage;/* the last damage skipped (log_reader_damage) */

  /* log_reader_set_window: records whose event times the log's runs put all outside
   * [win_lo, win_hi) are passed over. */
  int windowed;
  int64_t win_lo, win_hi;
  uint64_t runs_base;  /* segment the runs and index below belong to; UINT64_MAX: none */
  evt_entry_t *runs;   /* its event-time runs (log_evt.h) */
  size_t nruns, run_i; /* run_i: the first run that may hold r->next */
  char *idx;           /* its sparse index, read whole on the first jump */
  size_t nidx;         /* entries in idx; SIZE_MAX: not read yet */

  /* log_reader_drop_behind: the segment's page cache below dropped_to is dropped, and
   * the next drop is due when pos reaches drop_due. */
  int drop;
  uint64_t drop_keep, dropped_to, drop_due;
};

/* ---- page-cache drop-behind (log_reader_drop_behind) ---- */

#define DROP_STEP (1u << 20) /* drop in steps of at least this many bytes */

static void drop_due_set(log_reader_t *r) { r->drop_due = r->dropped_to + r->drop_keep + DROP_STEP; }

/* Drop the current segment's cached pages up to drop_keep bytes before r->pos. */
static void drop_passed(log_reader_t *r) {
  uint64_t page = 4096, to = (r->pos - r->drop_keep) & ~(page - 1);
  if (to > r->dropped_to)
    (void)posix_fadvise(r->fd, (off_t)r->dropped_to, (off_t)(to - r->dropped_to),
                        POSIX_FADV_DONTNEED);
  r->dropped_to = to > r->dropped_to ? to : r->dropped_to;
  drop_due_set(r);
}

void log_reader_drop_behind(log_reader_t *r, uint64_t keep_bytes) {
  /* Without a sync per group the pages behind a reader may still be dirty: asking to
   * drop them would only start their writeback early, on the reader's thread. */
  if (r->log->read_only || r->log->sync != LOG_SYNC_ALWAYS) return;
  r->drop = 1;
  r->drop_keep = keep_bytes;
  drop_due_set(r);
}

/* ---- event-time window ---- */

static int outside(const log_reader_t *r, const evt_entry_t *e) {
  return e->hi < r->win_lo || e->lo >= r->win_hi;
}

/* Forget the runs and index held, making them those of segment `base` (not loaded). */
static void runs_reset(log_reader_t *r, uint64_t base) {
  free(r->runs);
  free(r->idx);
  r->runs = NULL;
  r->idx = NULL;
  r->nruns = r->run_i = 0;
  r->nidx = SIZE_MAX;
  r->runs_base = base;
}

/* Make the runs (and index) those of the current segment. Returns 1 when the whole
 * segment's entry puts it outside the window (then nothing else is loaded). */
static int runs_for_segment(log_reader_t *r) {
  if (r->runs_base == r->seg_base) return 0;
  runs_reset(r, r->seg_base);
  evt_entry_t whole;
  if (r->seg_next != UINT64_MAX && evt_segment(r->log->dirfd, r->seg_base, &whole) &&
      r->seg_base + whole.rel_to == r->seg_next && outside(r, &whole))
    return 1;
  evt_load(r->log->dirfd, r->seg_base, &r->runs, &r->nruns);
  return 0;
}

/* Move forward to the indexed record at or before `target` (in the current segment),
 * passing over the records up to target. */
static void jump(log_reader_t *r, uint64_t target) {
  r->skip_to = target;
  if (r->nidx == SIZE_MAX) {
    char iname[NAME_LEN];
    struct stat st;
    seg_name(iname, r->seg_base, "idx");
    r->nidx = 0;
    int ifd = openat(r->log->dirfd, iname, O_RDONLY | O_CLOEXEC);
    if (ifd >= 0 && fstat(ifd, &st) == 0 && st.st_size >= IDX_ENTRY &&
        st.st_size <= (64 << 20)) {
      size_t want = (size_t)st.st_size / IDX_ENTRY * IDX_ENTRY;
      r->idx = xmalloc(want);
      ssize_t got = pread_full(ifd, r->idx, want, 0);
      r->nidx = got > 0 ? (size_t)got / IDX_ENTRY : 0;
    }
    if (ifd >= 0) close(ifd);
  }
  /* last entry at or before target */
  size_t lo = 0, hi = r->nidx, found = SIZE_MAX;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (r->seg_base + rd32(r->idx + mid * IDX_ENTRY) <= target) {
      found = mid;
      lo = mid + 1;
    } else {
      hi = mid;
    }
  }
  if (found == SIZE_MAX) return;
  uint64_t rel = rd32(r->idx + found * IDX_ENTRY), pos = rd32(r->idx + found * IDX_ENTRY + 4);
  if (r->seg_base + rel <= r->next || pos <= r->pos) return; /* not ahead: read on */
  /* The index is derived data: trust the entry only when its frame header is there (read
   * from the file: the window may hold bytes from before they were final). */
  char fh[FRAME_HDR];
  if (pread_full(r->fd, fh, FRAME_HDR, pos) != FRAME_HDR || rd64(fh + 8) != r->seg_base + rel ||
      rd32(fh) < LEN_MIN || rd32(fh) > LEN_MAX)
    return;
  r->pos = pos;
  r->next = r->seg_base + rel;
}

/* At r->next (not inside a skip): pass over the runs outside the window that start
 * there. Returns 1 when the reader moved. `end`: the durable end. */
static int window_skip(log_reader_t *r, uint64_t end) {
  if (runs_for_segment(r)) {
    r->skip_to = r->next = r->seg_next; /* the next call opens the following segment */
    return 1;
  }
  uint64_t rel = r->next - r->seg_base;
  while (r->run_i < r->nruns && r->runs[r->run_i].rel_to <= rel) r->run_i++;
  if (r->run_i == r->nruns) return 0;
  const evt_entry_t *e = &r->runs[r->run_i];
  if (e->rel_from > rel || !outside(r, e)) return 0;
  uint64_t to = e->rel_to;
  while (r->run_i + 1 < r->nruns && r->runs[r->run_i + 1].rel_from == to &&
         outside(r, &r->runs[r->run_i + 1]))
    to = r->runs[++r->run_i].rel_to;
  uint64_t target = r->seg_base + to;
  if (r->seg_next != UINT64_MAX && target >= r->seg_next) {
    r->skip_to = r->next = r->seg_next;
    return 1;
  }
  if (target > end) target = end; /* runs are written just before records turn durable */
  if (target <= r->next) return 0;
  jump(r, target);
  return 1;
}

void log_reader_set_window(log_reader_t *r, int64_t from_us, int64_t to_us) {
  r->windowed = from_us < to_us;
  r->win_lo = from_us;
  r->win_hi = to_us;
  runs_reset(r, UINT64_MAX);
}

/* The frame at r->pos does not verify although it is below the durable end `end`: move
 * to the next frame that does, in this segment, or else to the next segment. Records
 * [r->next, where it lands) are reported. Returns -EBADMSG; sticky when there is nowhere
 * to go (the last segment holds no verifiable frame after the damage). */
static int skip_damage(log_reader_t *r, uint64_t end) {
  log_damage_t *d = &r->damage;
  seg_name(d->segment, r->seg_base, "log");
  d->from = r->next;
  d->pos = r->pos;
  uint64_t below = r->seg_next != UINT64_MAX ? r->seg_next : end, at = 0;
  frame_t f;
  int rc = frame_resync(&r->win, r->pos, r->next, below, READ_CHUNK, &at, &f);
  if (rc == FRAME_OK) {
    d->to = f.offset;
    r->pos = at;
    r->next = f.offset;
    return -EBADMSG;
  }
  if (rc == FRAME_END && r->seg_next != UINT64_MAX) {
    d->to = r->seg_next;
    r->next = r->seg_next; /* the next call opens the following segment */
    return -EBADMSG;
  }
  d->to = UINT64_MAX;
  return r->err = -EBADMSG;
}

/* Open segment `base` for reading and check its header. Returns 0, -EBADMSG for a bad or
 * torn header, or another negative errno (-ENOENT when it does not exist). */
static int reader_open_seg(log_reader_t *r, uint64_t base, uint64_t next_base) {
  char name[NAME_LEN], h[SEG_HDR];
  seg_name(name, base, "log");
  int fd = open_read(r->log->dirfd, name);
  if (fd < 0) return -errno;
  ssize_t n = pread_full(fd, h, SEG_HDR, 0);
  if (n != SEG_HDR || !header_ok(h, base)) {
    close(fd);
    return n < 0 ? (int)n : -EBADMSG;
  }
  if (r->fd >= 0) {
    /* Left behind for good: a reader moves to another segment only forward. */
    if (r->drop && base > r->seg_base) (void)posix_fadvise(r->fd, 0, 0, POSIX_FADV_DONTNEED);
    close(r->fd);
  }
  r->fd = fd;
  r->win.fd = fd;
  window_drop(&r->win);
  r->seg_base = base;
  r->seg_next = next_base;
  r->pos = SEG_HDR;
  r->next = base;
  r->dropped_to = 0;
  if (r->drop) drop_due_set(r);
  return 0;
}

/* Segment `base` was not found: true when log_retain deleted it, so "look again" rather
 * than "not there yet". On a writable log, log_retain moved start_offset before it
 * unlinked anything. A read_only log's list is the directory at log_open, so another
 * process's retention shows as a listed segment gone while a later one is still listed;
 * retention deletes oldest first, so it and every one before it are gone: they leave
 * the list. */
static int retained_away(log_t *log, uint64_t base) {
  if (!log->read_only) return base < atomic_load(&log->start_offset);
  int gone = 0;
  pthread_mutex_lock(&log->mu);
  if (log->nseg) {
    size_t k = seg_find(log, base);
    if (log->segs[k] == base && k + 1 < log->nseg) {
      memmove(log->segs, log->segs + k + 1, (log->nseg - k - 1) * sizeof *log->segs);
      log->nseg -= k + 1;
      atomic_store(&log->start_offset, log->segs[0]);
      gone = 1;
    }
  }
  pthread_mutex_unlock(&log->mu);
  return gone;
}

/* Move to the segment starting at r->next, or, when log_retain deleted it, to the first
 * segment still on disk. Returns 1 when there, 0 when no such segment exists (yet) or it
 * is the segment already open (an empty one: nothing to move to), or a negative errno. */
static int reader_next_seg(log_reader_t *r) {
  log_t *log = r->log;
  for (;;) {
    uint64_t want = r->next, base = UINT64_MAX, after = UINT64_MAX;
    pthread_mutex_lock(&log->mu);
    if (log->nseg) {
      if (want < log->segs[0]) want = log->segs[0]; /* retained away */
      size_t k = seg_find(log, want);
      if (log->segs[k] == want) {
        base = want;
        if (k + 1 < log->nseg) after = log->segs[k + 1];
      }
    }
    pthread_mutex_unlock(&log->mu);
    /* A read-only log may be growing under another process: look for the file itself. */
    if (base == UINT64_MAX && log->read_only) base = want;
    if (base == UINT64_MAX) return 0;
    /* The segment that starts at r->next is the one already open: it holds no record
     * (yet), as after a roll with nothing appended since. There is nowhere to move to;
     * reopening it would only find its end again, forever. */
    if (r->fd >= 0 && base == r->seg_base) return 0;
    int rc = reader_open_seg(r, base, after);
    if (rc == -ENOENT && retained_away(log, base)) continue;
    if (rc == -ENOENT) return 0;
    return rc < 0 ? rc : 1;
  }
}

/* Position at the indexed record at or before `target` and skip up to it lazily. */
static int reader_locate(log_reader_t *r, uint64_t target) {
  log_t *log = r->log;
  uint64_t base, after;
  int have, rc;
again:
  base = 0, after = UINT64_MAX, have = 0;
  pthread_mutex_lock(&log->mu);
  if (log->nseg) {
    if (target < log->segs[0]) target = log->segs[0];
    size_t k = seg_find(log, target);
    base = log->segs[k];
    if (k + 1 < log->nseg) after = log->segs[k + 1];
    have = 1;
  }
  pthread_mutex_unlock(&log->mu);
  r->skip_to = target;
  r->err = 0;
  if (!have) { /* empty read-only log: wait for the first segment */
    if (r->fd >= 0) close(r->fd);
    r->fd = -1;
    r->next = 0;
    return 0;
  }
  rc = reader_open_seg(r, base, after);
  if (rc == -ENOENT && retained_away(log, base)) goto again;
  if (rc == -EBADMSG && base >= atomic_load(&log->durable_end)) {
    /* A read-only log whose last segment was torn while being created: nothing to read
     * in it yet; log_reader_next retries the file. */
    if (r->fd >= 0) close(r->fd);
    r->fd = -1;
    r->next = base;
    return 0;
  }
  if (rc < 0) return rc;

  char iname[NAME_LEN], e[IDX_ENTRY], fh[FRAME_HDR];
  seg_name(iname, base, "idx");
  int ifd = openat(log->dirfd, iname, O_RDONLY | O_CLOEXEC);
  struct stat st;
  if (ifd < 0) return 0;
  if (fstat(ifd, &st) == 0 && st.st_size >= IDX_ENTRY) {
    /* Last entry whose offset is <= target; entries are written only for records that
     * were written successfully, so the frame they point to is final. */
    uint64_t lo = 0, hi = (uint64_t)st.st_size / IDX_ENTRY, found = UINT64_MAX;
    uint32_t rel = 0, epos = 0;
    while (lo < hi) {
      uint64_t mid = lo + (hi - lo) / 2;
      if (pread_full(ifd, e, IDX_ENTRY, mid * IDX_ENTRY) != IDX_ENTRY) break;
      if (base + rd32(e) <= target) {
        found = mid;
        rel = rd32(e);
        epos = rd32(e + 4);
        lo = mid + 1;
      } else {
        hi = mid;
      }
    }
    if (found != UINT64_MAX && epos >= SEG_HDR &&
        pread_full(r->fd, fh, FRAME_HDR, epos) == FRAME_HDR && rd64(fh + 8) == base + rel &&
        rd32(fh) >= LEN_MIN && rd32(fh) <= LEN_MAX) {
      r->pos = epos;
      r->next = base + rel;
    }
  }
  close(ifd);
  return 0;
}

log_reader_t *log_reader_open(log_t *log, uint64_t from, char *err, size_t errlen) {
  if (!log) {
    if (err && errlen) snprintf(err, errlen, "log: no log");
    return NULL;
  }
  log_reader_t *r = xcalloc(1, sizeof *r);
  r->log = log;
  r->fd = -1;
  r->win.fd = -1;
  r->runs_base = UINT64_MAX;
  r->nidx = SIZE_MAX;
  int rc = reader_locate(r, from);
  if (rc < 0) {
    if (err && errlen)
      snprintf(err, errlen, "log: cannot open a reader at offset %" PRIu64 ": %s", from,
               strerror(-rc));
    log_reader_close(r);
    return NULL;
  }
  return r;
}

int log_reader_next(log_reader_t *r, log_record_t *out) {
  if (r->err) return r->err;
  log_t *log = r->log;
  for (;;) {
    uint64_t end = atomic_load_explicit(&log->durable_end, memory_order_acquire);
    /* Past the durable end only a read-only log reads on, opportunistically: another
     * process may be appending, and whatever is not (yet) valid just means "caught up". */
    int beyond = r->next >= end;
    if (beyond && !log->read_only) return 0;
    if (r->fd < 0 || r->next >= r->seg_next) {
      int rc = r->next > r->seg_next && r->fd >= 0 ? -EBADMSG : reader_next_seg(r);
      if (rc == 1) continue;
      if (beyond) return 0;
      if (rc == -EBADMSG || rc == 0) return r->err = -EBADMSG;
      return -EIO;
    }
    if (r->windowed && r->next >= r->skip_to && window_skip(r, end)) continue;
    if (r->next >= r->win_valid) {
      window_drop(&r->win); /* may hold bytes read before they were final */
      r->win_valid = end;
    }
    frame_t f;
    int rc = frame_read(&r->win, r->pos, r->next, READ_CHUNK, &f);
    if (rc < 0) return -EIO;
    if (rc == FRAME_END && !beyond && r->next < r->seg_next && r->seg_next != UINT64_MAX)
      return skip_damage(r, end); /* a closed segment cut short */
    if (rc == FRAME_END) {
      rc = reader_next_seg(r);
      if (rc == 1) continue;
      if (beyond) return 0;
      if (rc < 0 && rc != -EBADMSG) return -EIO;
      return r->err = -EBADMSG;
    }
    if (rc != FRAME_OK) {
      if (beyond) return 0;
      return skip_damage(r, end);
    }
    r->pos += 8 + (uint64_t)f.len;
    r->next++;
    if (r->drop && r->pos >= r->drop_due) drop_passed(r);
    if (beyond) { /* found more valid records: the read-only log grew */
      uint64_t cur = end;
      while (cur < r->next &&
             !atomic_compare_exchange_weak(&log->durable_end, &cur, r->next)) {
      }
    }
    if (f.offset < r->skip_to) continue;
    out->offset = f.offset;
    out->time_us = f.time_us;
    out->key = f.key;
    out->key_len = f.key_len;
    out->value = f.value;
    out->value_len = f.value_len;
    return 1;
  }
}

/* Time of the first record of segment base, or INT64_MAX when it has none readable. */
static int64_t first_time(log_t *log, uint64_t base) {
  if (base >= atomic_load(&log->durable_end)) return INT64_MAX;
  char name[NAME_LEN], fh[FRAME_HDR];
  seg_name(name, base, "log");
  int fd = openat(log->dirfd, name, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return INT64_MAX;
  int64_t t = INT64_MAX;
  if (pread_full(fd, fh, FRAME_HDR, SEG_HDR) == FRAME_HDR && rd64(fh + 8) == base)
    t = (int64_t)rd64(fh + 16);
  close(fd);
  return t;
}

int log_reader_seek_time(log_reader_t *r, int64_t t_us) {
  log_t *log = r->log;
  pthread_mutex_lock(&log->mu);
  size_t n = log->nseg;
  uint64_t *segs = n ? xmalloc(n * sizeof *segs) : NULL;
  if (n) memcpy(segs, log->segs, n * sizeof *segs);
  pthread_mutex_unlock(&log->mu);
  if (!n) return reader_locate(r, 0);

  /* Last segment whose first record is older than t (times rise with offsets, up to
   * clock steps, which only make the answer approximate). */
  size_t lo = 0, hi = n, k = SIZE_MAX;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (first_time(log, segs[mid]) < t_us) {
      k = mid;
      lo = mid + 1;
    } else {
      hi = mid;
    }
  }
  uint64_t base = segs[k == SIZE_MAX ? 0 : k];
  free(segs);
  int rc = reader_locate(r, base);
  if (rc < 0 || k == SIZE_MAX) return rc;

  /* Within it, the last index entry older than t. */
  char iname[NAME_LEN], e[IDX_ENTRY], fh[FRAME_HDR];
  seg_name(iname, base, "idx");
  int ifd = openat(log->dirfd, iname, O_RDONLY | O_CLOEXEC);
  struct stat st;
  if (ifd >= 0 && fstat(ifd, &st) == 0 && r->fd >= 0) {
    uint64_t elo = 0, ehi = (uint64_t)st.st_size / IDX_ENTRY;
    uint32_t rel = 0, epos = 0;
    int found = 0;
    while (elo < ehi) {
      uint64_t mid = elo + (ehi - elo) / 2;
      if (pread_full(ifd, e, IDX_ENTRY, mid * IDX_ENTRY) != IDX_ENTRY) break;
      if ((int64_t)rd64(e + 8) < t_us) {
        found = 1;
        rel = rd32(e);
        epos = rd32(e + 4);
        elo = mid + 1;
      } else {
        ehi = mid;
      }
    }
    if (found && epos >= SEG_HDR && pread_full(r->fd, fh, FRAME_HDR, epos) == FRAME_HDR &&
        rd64(fh + 8) == base + rel && rd32(fh) >= LEN_MIN && rd32(fh) <= LEN_MAX) {
      r->pos = epos;
      r->next = base + rel;
    }
  }
  if (ifd >= 0) close(ifd);

  /* Then exactly: read forward to the first record at or after t and step back. */
  r->skip_to = 0;
  for (;;) {
    log_record_t rec;
    rc = log_reader_next_intact(r, &rec, NULL);
    if (rc < 0) return rc;
    if (rc == 0) return 0;
    if (rec.time_us >= t_us) {
      r->pos -= FRAME_HDR + (uint64_t)rec.key_len + rec.value_len;
      r->next--;
      return 0;
    }
  }
}

void log_reader_damage(const log_reader_t *r, log_damage_t *out) { *out = r->damage; }

int log_reader_next_intact(log_reader_t *r, log_record_t *out, uint64_t *skipped) {
  for (;;) {
    int rc = log_reader_next(r, out);
    if (rc != -EBADMSG || r->err) return rc;
    if (skipped) *skipped += r->damage.to - r->damage.from;
  }
}

int log_reader_peek_key(const log_reader_t *r, unsigned skip, const char **key,
                        uint32_t *len) {
  const window_t *w = &r->win;
  if (r->err || r->fd < 0 || r->next + skip >= r->seg_next || r->next + skip >= r->win_valid ||
      !w->len || r->pos < w->pos)
    return 0;
  uint64_t at = r->pos - w->pos; /* frames from here, bounded by the window */
  for (;; skip--) {
    if (at + FRAME_HDR > w->len) return 0;
    const char *h = w->b.data + at;
    if (!skip) {
      uint32_t kl = rd32(h + 24);
      if (kl > w->len - at - FRAME_HDR) return 0;
      *key = h + FRAME_HDR;
      *len = kl;
      return 1;
    }
    at += 8 + (uint64_t)rd32(h);
  }
}

uint64_t log_reader_offset(const log_reader_t *r) {
  return r->next > r->skip_to ? r->next : r->skip_to;
}

void log_reader_close(log_reader_t *r) {
  if (!r) return;
  if (r->fd >= 0) close(r->fd);
  buf_free(&r->win.b);
  free(r->runs);
  free(r->idx);
  free(r);
}
