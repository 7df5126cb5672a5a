/* log: the durable event log (see log.h for the design and the on-disk format).
 *
 * On disk, in short: <dir>/<20-digit base>.log segments, each a 16-byte header
 * ("SLOG", u32 version 1, u64 base offset) and then frames
 *   u32 len | u32 crc32c | u64 offset | i64 time_us | u32 key_len | key | value
 * (little-endian; len counts the bytes after the crc field, 20 + key + value, and the
 * CRC32C covers exactly those len bytes). Offsets are dense and a segment's first frame
 * has offset == base, so a segment's name says where its records start and the next
 * segment's name says where they end. Beside each segment, <base>.idx holds 16-byte
 * entries (u32 offset - base, u32 file position, i64 time_us): the first frame of a
 * segment gets one, then the first frame starting index_interval bytes or more past the
 * previous entry. Positions past 4 GiB are not indexed (readers then scan). The index is
 * written without fsync; log_open completes or rebuilds it from the segment.
 *
 * Threads. The loop thread frames records into the open group (offset and CRC left for
 * later) under `mu`; the writer thread swaps the group out, stamps offsets and CRCs,
 * writes it in chunks that fit the current segment (rolling between chunks, never inside
 * one append), syncs per policy, and queues it on `done`; a uv_async wakes the loop,
 * which calls the acks in order and recycles the group. The loop wakes the writer once
 * per turn of the loop, not once per append (see "Waking"). Readers use their own file
 * descriptors and only read offsets below `durable_end`, an atomic the writer advances
 * after a chunk is written (and synced with LOG_SYNC_ALWAYS); bytes past it may still
 * be rolled back, so a reader never trusts cached file bytes for them.
 *
 * The module spans three files sharing log_int.h: this one (writer thread, acks,
 * recovery, life cycle), log_read.c (readers) and log_rewrite.c (log_retain and
 * log_rewrite, which change closed segments while the writer keeps appending). */
#include "log.h"
#include "log_int.h"

#include <errno.h>
#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "util/clock.h"
#include "util/mem.h"

/* ---- the log ---- */

/* A group this large wakes the writer at once (see "Waking"). */
#define KICK_BYTES (1u << 20)

static group_t *group_take(log_t *log) {
  group_t *g = log->free;
  if (g) {
    log->free = g->next;
    g->next = NULL;
    return g;
  }
  return xcalloc(1, sizeof *g);
}

static void group_destroy(group_t *g) {
  while (g) {
    group_t *next = g->next;
    buf_free(&g->data);
    buf_free(&g->times);
    free(g->w);
    free(g);
    g = next;
  }
}

static void set_error(log_t *log, int err) {
  int zero = 0;
  atomic_compare_exchange_strong(&log->error, &zero, err);
}

static void seg_push(log_t *log, uint64_t base) {
  if (log->nseg == log->capseg) {
    log->capseg = log->capseg ? log->capseg * 2 : 16;
    log->segs = xrealloc(log->segs, log->capseg * sizeof *log->segs);
  }
  log->segs[log->nseg++] = base;
}

/* Create segment `base` with its header and an empty index. With sync, the header and
 * the directory entry are made durable before returning. */
static int segment_create(log_t *log, uint64_t base, int sync, int *fd_out, int *idx_out) {
  char name[NAME_LEN], iname[NAME_LEN], h[SEG_HDR];
  seg_name(name, base, "log");
  seg_name(iname, base, "idx");
  int fd = -1, ifd = -1, rc;
  fd = openat(log->dirfd, name, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return -errno;
  header_encode(h, base);
  if ((rc = pwrite_full(fd, h, SEG_HDR, 0)) < 0) goto fail;
  if (sync && ((rc = sync_fd(fd, 0)) < 0 || (rc = sync_fd(log->dirfd, 0)) < 0)) goto fail;
  ifd = openat(log->dirfd, iname, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (ifd < 0) {
    rc = -errno;
    goto fail;
  }
  *fd_out = fd;
  *idx_out = ifd;
  return 0;
fail:
  close(fd);
  unlinkat(log->dirfd, name, 0);
  return rc;
}

/* ---- preparing the next segment (see Preallocation in log.h) ----
 *
 * A preparer thread keeps one file, PREP_NAME, written with zeros to segment_bytes and
 * synced, so that a roll only has to give it a header and a name (PostgreSQL recycles
 * and pre-creates WAL segments for the same reason): creating and zeroing the new
 * segment would otherwise lie inside the commit of the group that rolled, and topping up
 * zeros would take the writer's time between groups for the whole segment. The file is
 * never a segment until the writer renames it, with a durable header, to <base>.log, so
 * a crash at any point leaves either a stray PREP_NAME (deleted by log_open, ignored by
 * read-only opens, whose segment names it never matches) or a new segment holding a
 * header and zeros, the clean end recovery already accepts. */

static const char zeros[64 << 10];

#define PREP_SYNC_BYTES (1u << 20) /* zeros written between two write-backs */
#define PREP_RETRY_MS 1000         /* after a failed preparation (a full disk) */
#define PREP_TAKEN_MS 200          /* a ready file's wait: the writer's wake-up may be skipped */

/* Write PREP_SYNC_BYTES from pos to the disk and wait; returns 0 or a negative errno. */
static int write_back(int fd, uint64_t pos) {
  int rc;
  do rc = sync_file_range(fd, (off_t)pos, PREP_SYNC_BYTES,
                          SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE |
                              SYNC_FILE_RANGE_WAIT_AFTER);
  while (rc != 0 && errno == EINTR);
  return rc == 0 ? 0 : -errno;
}

/* Write PREP_NAME: segment_bytes of zeros, written back every PREP_SYNC_BYTES so that no
 * flush of the preparer holds much more than one of the writer's groups, and synced
 * once at the end. The write-back in between is sync_file_range, data only: the file's
 * size and block allocation go to the journal in the final fdatasync's one commit, not
 * in one commit per stretch that other syncs on the file system may wait for. Declines
 * (-ENOSPC) when it would leave less than one more segment_bytes free: preparation must
 * not take the space appends need. Returns the file's descriptor, or a negative errno
 * (-ECANCELED when the log is closing) with the file removed. */
static int prepare_file(log_t *log) {
  struct statvfs vfs;
  if (fstatvfs(log->dirfd, &vfs) == 0 &&
      (uint64_t)vfs.f_bavail * vfs.f_frsize < 2 * log->segment_bytes)
    return -ENOSPC;
  int fd = openat(log->dirfd, PREP_NAME, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return -errno;
  int rc = 0;
  for (uint64_t at = 0; at < log->segment_bytes && rc == 0;) {
    uint64_t left = log->segment_bytes - at, n = left < sizeof zeros ? left : sizeof zeros;
    rc = pwrite_full(fd, zeros, (size_t)n, at);
    at += n;
    if (rc == 0 && at == log->segment_bytes) rc = sync_fd(fd, 1);
    else if (rc == 0 && at % PREP_SYNC_BYTES == 0)
      rc = write_back(fd, at - PREP_SYNC_BYTES);
    if (rc == 0 && atomic_load(&log->prep_stop)) rc = -ECANCELED;
  }
  if (rc == 0) return fd;
  close(fd);
  unlinkat(log->dirfd, PREP_NAME, 0);
  return rc;
}

/* The preparer's work is never urgent while the loop's and the writer's is. In the idle
 * I/O class the block layer (mq-deadline, bfq) sends its writes only when the writer's
 * requests are done; in the SCHED_IDLE class it gets the CPU only when nothing else
 * wants it. At nice 0 its zeroing (a 64 MiB copy into the page cache every segment)
 * took time slices from the loop on a one-CPU server: ack p99 of 100-event batches at
 * about half load 7.31 / 5.11 / 7.92 ms, then 3.58 / 3.57 / 5.20 ms in SCHED_IDLE.
 * A CPU that is never idle starves it (the benchmark's one-CPU server at full load: 2
 * of 32 rolls took a prepared segment, against 35 of 35 at nice 0): a roll that finds
 * no file ready creates its segment as without it, and the next file is made at normal
 * priority (prep_behind; then 16 of 32). */
static void io_idle(void) {
#ifdef __linux__
  (void)syscall(SYS_ioprio_set, 1 /* IOPRIO_WHO_PROCESS */, (int)syscall(SYS_gettid),
                3 << 13 /* IOPRIO_CLASS_IDLE */);
#endif
}

/* Put thread t in the CPU class SCHED_IDLE (idle) or back in SCHED_OTHER. */
static void cpu_class(pthread_t t, int idle) {
#ifdef __linux__
  struct sched_param none = {0};
  (void)pthread_setschedparam(t, idle ? SCHED_IDLE : SCHED_OTHER, &none);
#endif
}

/* Wait on prep_wake (prep_mu held) for at most ms. */
static void prep_wait(log_t *log, int64_t ms) {
  int64_t at = clock_mono_us() + ms * 1000;
  struct timespec ts = {at / 1000000, (at % 1000000) * 1000};
  pthread_cond_timedwait(&log->prep_wake, &log->prep_mu, &ts);
}

static void *preparer_main(void *arg) {
  log_t *log = arg;
  io_idle();
  pthread_mutex_lock(&log->prep_mu);
  while (!atomic_load(&log->prep_stop)) {
    if (atomic_load(&log->prep_fd) >= 0) { /* ready: wait for the writer to take it */
      prep_wait(log, PREP_TAKEN_MS);
      continue;
    }
    pthread_mutex_unlock(&log->prep_mu);
    /* In the idle class unless the last roll found no file ready: then the writer has
     * moved this thread back to SCHED_OTHER (segment_take_prepared), and the next file
     * is made at normal priority, so a saturated CPU still gets every other segment
     * prepared. */
    if (!atomic_load(&log->prep_behind)) cpu_class(pthread_self(), 1);
    int fd = prepare_file(log);
    pthread_mutex_lock(&log->prep_mu);
    if (fd >= 0) { /* counted before the writer can see it (and uncount it) */
      atomic_fetch_add(&log->disk_bytes, log->segment_bytes);
      atomic_store(&log->prep_fd, fd);
    } else if (fd != -ECANCELED && !atomic_load(&log->prep_stop)) {
      prep_wait(log, PREP_RETRY_MS);
    }
  }
  pthread_mutex_unlock(&log->prep_mu);
  return NULL;
}

/* Stop the preparer and remove a file it prepared that no roll took. */
static void preparer_stop(log_t *log) {
  if (!log->preparer_started) return;
  atomic_store(&log->prep_stop, 1);
  cpu_class(log->preparer, 0); /* so that a busy machine cannot hold up the close */
  pthread_mutex_lock(&log->prep_mu);
  pthread_cond_signal(&log->prep_wake);
  pthread_mutex_unlock(&log->prep_mu);
  pthread_join(log->preparer, NULL);
  log->preparer_started = 0;
  if (log->prep_fd >= 0) {
    close(log->prep_fd);
    atomic_store(&log->prep_fd, -1);
    unlinkat(log->dirfd, PREP_NAME, 0);
    atomic_fetch_sub(&log->disk_bytes, log->segment_bytes);
  }
}

/* Make the prepared file segment `base` (writer thread): its header, synced before a
 * name can point at it, the rename, a directory fsync and an empty index, as
 * segment_create does. Returns 0, -EAGAIN when no file is ready, or a negative errno
 * (the file is then gone: the caller creates the segment as without preparation). */
static int segment_take_prepared(log_t *log, uint64_t base, int *fd_out, int *idx_out) {
  if (!log->preparer_started) return -EAGAIN;
  int fd = atomic_load(&log->prep_fd);
  if (fd < 0) {
    /* On every miss, not only the first: the preparer may have put itself back in the
     * idle class just after an earlier move (rolls are rare, the call is cheap). With
     * large groups the zeros are not worth the CPU they would take (zeros_pay): the
     * preparer stays in, or goes back to, the idle class. */
    atomic_store(&log->prep_behind, !log->groups_large);
    cpu_class(log->preparer, log->groups_large);
    return -EAGAIN;
  }
  atomic_store(&log->prep_behind, 0);
  char name[NAME_LEN], iname[NAME_LEN], h[SEG_HDR];
  seg_name(name, base, "log");
  seg_name(iname, base, "idx");
  const char *at = PREP_NAME; /* the file's name while it fails */
  int ifd = -1, rc;
  header_encode(h, base);
  if ((rc = pwrite_full(fd, h, SEG_HDR, 0)) < 0 || (rc = sync_fd(fd, 1)) < 0) goto fail;
  if (renameat(log->dirfd, PREP_NAME, log->dirfd, name) != 0) {
    rc = -errno;
    goto fail;
  }
  at = name;
  if ((rc = sync_fd(log->dirfd, 0)) < 0) goto fail;
  ifd = openat(log->dirfd, iname, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (ifd < 0) {
    rc = -errno;
    goto fail;
  }
  *fd_out = fd;
  *idx_out = ifd;
  atomic_fetch_add(&log->prepared_rolls, 1);
  goto out;
fail:
  close(fd);
  unlinkat(log->dirfd, at, 0);
  atomic_fetch_sub(&log->disk_bytes, log->segment_bytes);
out:
  /* The name is free: the preparer may start the next one. The writer never waits for
   * prep_mu (the preparer runs at idle priority and could hold it while preempted): when
   * the lock is busy, the preparer's timed wait finds prep_fd at -1 soon anyway. */
  atomic_store(&log->prep_fd, -1);
  if (pthread_mutex_trylock(&log->prep_mu) == 0) {
    pthread_cond_signal(&log->prep_wake);
    pthread_mutex_unlock(&log->prep_mu);
  }
  return rc;
}

/* ---- writer thread ---- */

static int sync_interval_now(log_t *log) {
  int64_t t0 = clock_mono_us();
  int rc = sync_fd(log->fd, 1);
  int64_t t1 = clock_mono_us();
  if (log->w_obs_fn) log->w_obs_fn(log->w_obs_ud, (uint64_t)(t1 - t0), log->unsynced_records);
  log->last_sync_us = t1;
  log->unsynced_records = 0;
  /* The records were acknowledged already; losing them now can only be reported. */
  if (rc < 0) set_error(log, -EIO);
  return rc < 0 ? -EIO : 0;
}

static int interval_due(const log_t *log) {
  return log->sync == LOG_SYNC_INTERVAL && log->unsynced_records &&
         clock_mono_us() >= log->last_sync_us + (int64_t)log->sync_interval_ms * 1000;
}

static int cut_zeros(log_t *log);
static void index_flush(log_t *log);

static int roll(log_t *log) {
  if (log->sync == LOG_SYNC_INTERVAL && log->unsynced_records) {
    int rc = sync_interval_now(log);
    if (rc < 0) return rc;
  }
  /* A closed segment ends with its last record: cut the preallocated zeros (durably,
   * before the next segment exists) so readers, recovery and rewrites see no tail. */
  int rc = cut_zeros(log);
  if (rc < 0) return rc;
  int fd, ifd;
  uint64_t file = SEG_HDR; /* the new segment's file size */
  if (segment_take_prepared(log, log->next_offset, &fd, &ifd) == 0) {
    file = log->segment_bytes; /* counted in disk_bytes since it was prepared */
  } else {
    rc = segment_create(log, log->next_offset, log->sync != LOG_SYNC_OFF, &fd, &ifd);
    if (rc < 0) return rc;
    atomic_fetch_add(&log->disk_bytes, SEG_HDR);
  }
  index_flush(log);
  evt_finish(&log->evt, log->next_offset, 1, &log->evt_pending);
  evt_start(&log->evt, log->dirfd, log->next_offset, log->next_offset, SEG_HDR, 1);
  pthread_mutex_lock(&log->mu);
  seg_push(log, log->next_offset);
  pthread_mutex_unlock(&log->mu);
  close(log->fd);
  close(log->idx_fd);
  log->fd = fd;
  log->idx_fd = ifd;
  log->seg_base = log->next_offset;
  log->seg_size = SEG_HDR;
  log->seg_file = file;
  log->idx_size = 0;
  log->idx_due = SEG_HDR;
  log->idx_broken = 0;
  return 0;
}

static int is_space_error(int e) { return e == -ENOSPC || e == -EDQUOT || e == -EFBIG; }

/* Put the segment back to `size` after a failed chunk. Returns 0, or -EIO (sticky) when
 * that is impossible: then a partial group might survive, so nothing more is written. */
static int truncate_back(log_t *log, uint64_t size) {
  int rc;
  do rc = ftruncate(log->fd, (off_t)size);
  while (rc != 0 && errno == EINTR);
  if (rc == 0 && log->sync == LOG_SYNC_ALWAYS) {
    /* Make the cut durable too, or a crash could resurrect a failed append. */
    int s = sync_fd(log->fd, 1);
    if (s < 0 && !is_space_error(s)) rc = -1;
  }
  /* The preallocated zeros past size went with the cut. */
  if (log->seg_file > size) atomic_fetch_sub(&log->disk_bytes, log->seg_file - size);
  log->seg_file = size;
  if (rc != 0) {
    set_error(log, -EIO);
    return -EIO;
  }
  return 0;
}

/* ---- preallocation (see log.h) ----
 *
 * What follows keeps zeros ahead of the records in a segment that did not start as a
 * prepared one (the first, one created while none was ready, the one a restart goes on
 * with); a prepared segment is zeroed to segment_bytes already, so both checks below
 * find the zeros reaching far enough and write nothing. */

/* Before records are written up to `end`: unless the zeros already reach it (or, early,
 * whatever they reach), write and sync zeros up to `end` plus the preallocation (at most
 * segment_bytes). Best effort: on failure the file is put back to its records and they
 * are appended as without it. */
static void zero_ahead_to(log_t *log, uint64_t end, int early) {
  if (!log->prealloc || log->groups_large || (!early && end <= log->seg_file)) return;
  uint64_t want = end + log->prealloc, from = log->seg_file;
  if (want <= from) return;
  if (want > log->segment_bytes) want = log->segment_bytes;
  if (want <= end) return; /* the segment is nearly full: append */
  int rc = 0;
  for (uint64_t at = from; at < want && rc == 0;) {
    size_t n = want - at < sizeof zeros ? (size_t)(want - at) : sizeof zeros;
    rc = pwrite_full(log->fd, zeros, n, at);
    at += n;
  }
  if (rc == 0) rc = sync_fd(log->fd, 1);
  if (rc < 0) {
    (void)truncate_back(log, log->seg_size);
    return;
  }
  atomic_fetch_add(&log->disk_bytes, want - from);
  log->seg_file = want;
}

static void zero_ahead(log_t *log, uint64_t end) { zero_ahead_to(log, end, 0); }

/* After a group was handed to the loop for its acks: when less than half the
 * preallocation is left ahead of the records, write (and sync) the next stretch now,
 * while the next group fills. Done before a group's records (zero_ahead in commit), that
 * write and sync lie inside the time the group's requests wait: 1 MiB and one more
 * fdatasync every 1 MiB of log, which took 3-26 ms in 41 of the ~800 top-ups of a 10 s
 * run of 100-event batches at half load. zero_ahead stays for a group that outruns the
 * zeros anyway. */
static void zero_after(log_t *log) {
  if (!log->prealloc || atomic_load(&log->error)) return;
  uint64_t end = log->seg_size;
  if (end + log->prealloc / 2 < log->seg_file) return;
  if (end + log->prealloc / 2 >= log->segment_bytes) return; /* the segment ends soon */
  zero_ahead_to(log, end, 1);
}

/* Zeros pay for themselves only while groups are small, or while the CPU has time to
 * spare. They spare each group's fdatasync the inode and allocation writes, a fixed
 * cost per sync; writing them (the preparer's 64 MiB copy into the page cache and its
 * write-back, or the writer's 1 MiB top-ups) costs in proportion to the bytes logged.
 * Measured on the one-CPU benchmark server at full load: single events (groups of ~17
 * KiB) took 13.0-14.3 us of CPU per request with zeros and 14.6-15.6 us without;
 * 100-event batches (groups of ~350 KiB) 3.06-3.20 us per event with zeros and
 * 2.74-2.88 us without. The crossing lies near 90 KiB per sync. But below full load the
 * zeros come from idle CPU (the preparer runs in SCHED_IDLE) and keep the syncs short:
 * batches at half load with no zeros at all synced in 1.58 ms against 0.84 ms, and
 * their ack p99 rose. So the writer keeps a moving average of the bytes each group's
 * sync covers (1/8 weight to the newest) and, while it is above ZEROS_OFF_BYTES
 * (groups_large, until it falls under ZEROS_ON_BYTES: the gap keeps a load near the
 * crossing from switching at every group), writes no zeros itself and leaves the
 * preparer in the idle class after a roll found no file ready: segments are still
 * prepared when the CPU has time, and not at the requests' expense when it has none. */
#define ZEROS_OFF_BYTES (96u << 10)
#define ZEROS_ON_BYTES (32u << 10)
static void zeros_pay(log_t *log, uint64_t nbytes) {
  if (!log->prealloc) return;
  log->sync_bytes_avg += nbytes / 8 - log->sync_bytes_avg / 8;
  if (!log->groups_large && log->sync_bytes_avg > ZEROS_OFF_BYTES) log->groups_large = 1;
  else if (log->groups_large && log->sync_bytes_avg < ZEROS_ON_BYTES) log->groups_large = 0;
}

/* Cut the zeros after the active segment's last record, durably. Returns 0 or a negative
 * errno. */
static int cut_zeros(log_t *log) {
  if (log->seg_file <= log->seg_size) return 0;
  int rc;
  do rc = ftruncate(log->fd, (off_t)log->seg_size);
  while (rc != 0 && errno == EINTR);
  if (rc != 0) return -errno;
  rc = sync_fd(log->fd, 1);
  if (rc < 0) return rc;
  atomic_fetch_sub(&log->disk_bytes, log->seg_file - log->seg_size);
  log->seg_file = log->seg_size;
  return 0;
}

/* The segment's sparse index and event-time runs are derived data (log_open completes the
 * index, and a reader reads the records no run speaks for), so while requests keep
 * coming their entries gather over groups and are written together: a group of
 * single-event requests adds about two of each, and writing them with every group cost
 * two more pwrites per fdatasync (the writer's CPU per request at full load, 2.4-2.9
 * us, fell by 0.1 us at most: within this machine's noise). They are written once
 * INDEX_FLUSH_BYTES gathered, when a group leaves no request waiting (before its acks,
 * so a reader that saw the ack finds them), at a roll and at close. */
#define INDEX_FLUSH_BYTES 4096

static void index_flush(log_t *log) {
  if (log->idx_pending.len && !log->idx_broken) {
    if (pwrite_full(log->idx_fd, log->idx_pending.data, log->idx_pending.len,
                    log->idx_size) == 0)
      log->idx_size += log->idx_pending.len;
    else
      log->idx_broken = 1; /* derived data: log_open completes it */
  }
  buf_reset(&log->idx_pending);
  evt_flush(&log->evt, &log->evt_pending);
}

/* Write waiters [i, j) of g, whose frames are the nbytes at g->data + byte. */
static void commit(log_t *log, group_t *g, size_t i, size_t j, uint64_t byte,
                   uint64_t nbytes) {
  char *p = g->data.data + byte;
  uint64_t off = log->next_offset, pos = log->seg_size, due = log->idx_due, records = 0;
  int status = 0;
  evt_writer_t ev = log->evt; /* the event-time runs, kept if the records are written */
  size_t idx_keep = log->idx_pending.len, evt_keep = log->evt_pending.len;
  for (size_t k = i; k < j; k++) {
    g->w[k].first_offset = off;
    const char *times = g->times.data + g->w[k].rec0 * 8;
    for (uint64_t r = 0; r < g->w[k].nrecords; r++) {
      uint32_t len = rd32(p);
      wr64(p + 8, off);
      wr32(p + 4, crc32c(0, p + 8, len));
      idx_maybe_add(&log->idx_pending, &due, log->index_interval, log->seg_base, off, pos,
                    (int64_t)rd64(p + 16));
      evt_add(&ev, off, pos, (int64_t)rd64(times + r * 8), log->index_interval,
              &log->evt_pending);
      p += 8 + (size_t)len;
      pos += 8 + (uint64_t)len;
      off++;
      records++;
    }
  }
  zero_ahead(log, pos);
  if ((status = atomic_load(&log->error)) != 0) goto done; /* its clean-up failed */
  status = pwrite_full(log->fd, g->data.data + byte, nbytes, log->seg_size);
  if (status < 0) {
    int t = truncate_back(log, log->seg_size);
    if (t < 0) status = t;
    goto done;
  }
  if (log->sync == LOG_SYNC_ALWAYS) {
    int64_t t0 = clock_mono_us();
    status = sync_fd(log->fd, 1);
    if (log->w_obs_fn) log->w_obs_fn(log->w_obs_ud, (uint64_t)(clock_mono_us() - t0), records);
    if (status == 0) zeros_pay(log, nbytes);
    if (status < 0) {
      if (is_space_error(status)) {
        int t = truncate_back(log, log->seg_size);
        if (t < 0) status = t;
      } else {
        /* The kernel may have dropped the dirty pages: nothing written can be trusted. */
        set_error(log, -EIO);
        status = -EIO;
      }
      goto done;
    }
  }
  log->evt = ev;
  if (log->idx_pending.len + log->evt_pending.len >= INDEX_FLUSH_BYTES) index_flush(log);
  log->idx_due = due;
  log->seg_size = pos;
  log->next_offset = off;
  if (log->sync == LOG_SYNC_INTERVAL) log->unsynced_records += records;
  if (pos > log->seg_file) { /* grew the file (the rest overwrote preallocated zeros) */
    atomic_fetch_add(&log->disk_bytes, pos - log->seg_file);
    log->seg_file = pos;
  }
  atomic_store_explicit(&log->durable_end, off, memory_order_release);
done:
  if (status < 0) { /* the entries of records not written */
    log->idx_pending.len = idx_keep;
    log->evt_pending.len = evt_keep;
  }
  for (size_t k = i; k < j; k++) g->w[k].status = status;
}

static void write_group(log_t *log, group_t *g) {
  size_t i = 0;
  uint64_t byte = 0;
  while (i < g->nw) {
    waiter_t *w = &g->w[i];
    int err = atomic_load(&log->error);
    if (err) {
      for (; i < g->nw; i++) g->w[i].status = err;
      return;
    }
    /* Roll between appends, never inside one, so one append lives in one segment. */
    if (log->seg_size > SEG_HDR && log->seg_size + w->bytes > log->segment_bytes) {
      int rc = roll(log);
      if (rc < 0) {
        w->status = rc;
        byte += w->bytes;
        i++;
        continue;
      }
    }
    size_t j = i + 1;
    uint64_t nbytes = w->bytes;
    while (j < g->nw && log->seg_size + nbytes + g->w[j].bytes <= log->segment_bytes)
      nbytes += g->w[j++].bytes;
    commit(log, g, i, j, byte, nbytes);
    byte += nbytes;
    i = j;
  }
}

/* Whether the writer should let the open group fill (log.h, "Commit window"): it began
 * while the last group was being written (busy), and its window is still open. Waits
 * until the window ends or something wakes the writer; under mu. */
static int window_wait(log_t *log, int busy) {
  if (!busy || !log->window_us || log->stopping || log->hurry ||
      log->open->data.len >= KICK_BYTES || log->roll_served != log->roll_asked)
    return 0;
  int64_t at = log->open->first_us + log->window_us;
  if (clock_mono_us() >= at) return 0;
  struct timespec ts = {at / 1000000, (at % 1000000) * 1000};
  atomic_store_explicit(&log->filling, 1, memory_order_relaxed);
  pthread_cond_timedwait(&log->wake, &log->mu, &ts);
  atomic_store_explicit(&log->filling, 0, memory_order_relaxed);
  return 1;
}

static void *writer_main(void *arg) {
  log_t *log = arg;
  /* The open group may fill (its commit window) when it began while the writer wrote
   * the last one, or when the quiet probe ended the last one's window: every connection
   * was waiting for that group's answers, so as they come, the connections send again
   * at once and the next group is as full as the last only if it waits for them. */
  int busy = 0, hurried = 0;
  pthread_mutex_lock(&log->mu);
  for (;;) {
    log->w_obs_fn = log->obs_fn;
    log->w_obs_ud = log->obs_ud;
    if (interval_due(log)) {
      pthread_mutex_unlock(&log->mu);
      sync_interval_now(log);
      pthread_mutex_lock(&log->mu);
      continue;
    }
    if (log->roll_served != log->roll_asked) { /* log_roll_active, between two groups */
      uint64_t asked = log->roll_asked;
      pthread_mutex_unlock(&log->mu);
      int rc = atomic_load(&log->error);
      if (!rc && log->seg_size > SEG_HDR) rc = roll(log);
      pthread_mutex_lock(&log->mu);
      log->roll_status = rc;
      log->roll_served = asked;
      pthread_cond_broadcast(&log->rolled);
      continue;
    }
    /* A group begun while the writer was busy fills first (its window), and only then
     * waits for the end of the loop's turn, if that has not come yet: the loop's kick
     * does not wake a writer that fills, so the group costs one wake-up, at the window's
     * end or the quiet probe's word, not one at the turn's end and one more after. */
    if (log->open->nw > 0 && window_wait(log, busy || hurried)) continue;
    if (log->open->nw == 0 || (!log->sealed && !log->stopping)) {
      if (log->stopping) break;
      if (log->sync == LOG_SYNC_INTERVAL && log->unsynced_records) {
        int64_t at = log->last_sync_us + (int64_t)log->sync_interval_ms * 1000;
        struct timespec ts = {at / 1000000, (at % 1000000) * 1000};
        pthread_cond_timedwait(&log->wake, &log->mu, &ts);
      } else {
        pthread_cond_wait(&log->wake, &log->mu);
      }
      continue;
    }
    group_t *g = log->open;
    log->open = group_take(log);
    log->sealed = 0;
    hurried = log->hurry;
    log->hurry = 0;
    pthread_mutex_unlock(&log->mu);

    write_group(log, g);

    pthread_mutex_lock(&log->mu);
    busy = log->open->nw > 0;
    if (log->open->nw == 0) { /* no request waits: the entries go to the readers now */
      pthread_mutex_unlock(&log->mu);
      index_flush(log);
      pthread_mutex_lock(&log->mu);
    }
    if (log->done_tail) log->done_tail->next = g;
    else log->done = g;
    log->done_tail = g;
    pthread_mutex_unlock(&log->mu);
    uv_async_send(log->async);
    zero_after(log);
    pthread_mutex_lock(&log->mu);
  }
  pthread_mutex_unlock(&log->mu);
  if (log->sync == LOG_SYNC_INTERVAL && log->unsynced_records) sync_interval_now(log);
  return NULL;
}

int log_roll_active(log_t *log) {
  if (log->read_only) return -EROFS;
  pthread_mutex_lock(&log->mu);
  if (log->stopping) {
    pthread_mutex_unlock(&log->mu);
    return -ESHUTDOWN;
  }
  uint64_t ticket = ++log->roll_asked;
  pthread_cond_signal(&log->wake);
  while (log->roll_served < ticket) pthread_cond_wait(&log->rolled, &log->mu);
  int rc = log->roll_status;
  pthread_mutex_unlock(&log->mu);
  return rc;
}

/* ---- loop thread: waking the writer ----
 *
 * An append only marks the log as kicked; a prepare handle (before the loop polls) and a
 * check handle (after it ran the I/O callbacks) wake the writer if it was. The requests
 * one turn of the loop reads thus go to disk in one group with one fdatasync, and the
 * writer does not take the CPU from the loop in the middle of a turn to write the first
 * of them alone; Redis writes its append-only file once per turn of its loop the same
 * way. Every append is followed by a prepare or a check before the loop can block, so
 * no append waits for the next I/O. A writer done with a group takes the next one only
 * once a turn has ended since that group began (`sealed`): taken as soon as it was
 * done, the group held whatever part of a turn the loop had reached. With the two
 * threads on one CPU, groups of single-event requests grew from 19 to 25 requests that
 * way, and CPU per request fell by about 4%. A group that reaches KICK_BYTES is sealed
 * and wakes the writer at once: a turn that reads many large batches would otherwise
 * hold back the first of them for the whole turn. At 256 KiB (four 100-event batches)
 * that cut groups at full load short of what the load offered: 1 MiB gave 100-event
 * batches 43-47% fewer fdatasyncs, 8-13% more batches per second and 1.89 against 2.01 us
 * of CPU per event, while at half load, where a turn rarely reads that much, the ack
 * p99 stayed where it was (4.75-4.77 ms against 5.07-7.29 ms on a busy machine). */

struct kicker {
  uv_prepare_t prep;
  uv_check_t check;
  log_t *log; /* NULL once stopped */
  int open;   /* handles not closed yet */
};

/* kick and quiet_check change the writer's state under the mutex and signal after they
 * let it go, as log_append does: the writer shares the loop's CPU, and woken while the
 * loop still held the mutex it would run at once, block on the mutex and hand the CPU
 * back, two context switches for nothing. That was nearly one blocked lock per group
 * sync at full load. The writer checks its state under the mutex before it waits, so a
 * signal sent after the unlock is never missed. */
static void kick(log_t *log) {
  if (!atomic_exchange_explicit(&log->kick, 0, memory_order_relaxed)) return;
  pthread_mutex_lock(&log->mu);
  log->sealed = 1;
  /* a writer that fills is woken by its window's end or the quiet probe */
  int wake = !atomic_load_explicit(&log->filling, memory_order_relaxed);
  pthread_mutex_unlock(&log->mu);
  if (wake) pthread_cond_signal(&log->wake);
}

/* The loop is about to poll: if the writer lets a group fill and the quiet probe says
 * no request can come before an answer, the wait is over. Not while acks of a finished
 * group wait to be delivered: their answers let more requests come. */
static void quiet_check(log_t *log) {
  if (!log->quiet_fn || !atomic_load_explicit(&log->filling, memory_order_relaxed) ||
      !log->quiet_fn(log->quiet_ud))
    return;
  pthread_mutex_lock(&log->mu);
  int wake = atomic_load_explicit(&log->filling, memory_order_relaxed) && !log->done;
  if (wake) log->hurry = 1;
  pthread_mutex_unlock(&log->mu);
  if (wake) pthread_cond_signal(&log->wake);
}

static void on_prepare(uv_prepare_t *h) {
  struct kicker *k = h->data;
  if (!k->log) return;
  kick(k->log);
  quiet_check(k->log);
}

static void on_check(uv_check_t *h) {
  struct kicker *k = h->data;
  if (k->log) kick(k->log);
}

static void on_kicker_closed(uv_handle_t *h) {
  struct kicker *k = h->data;
  if (--k->open == 0) free(k);
}

static int kicker_start(log_t *log) {
  struct kicker *k = xcalloc(1, sizeof *k);
  if (uv_prepare_init(log->loop, &k->prep) != 0) {
    free(k);
    return -1;
  }
  k->prep.data = k;
  k->open = 1;
  if (uv_check_init(log->loop, &k->check) != 0) {
    uv_close((uv_handle_t *)&k->prep, on_kicker_closed);
    return -1;
  }
  k->check.data = k;
  k->open = 2;
  k->log = log;
  uv_prepare_start(&k->prep, on_prepare);
  uv_check_start(&k->check, on_check);
  /* They must not keep the loop alive: only pending work does (the async). */
  uv_unref((uv_handle_t *)&k->prep);
  uv_unref((uv_handle_t *)&k->check);
  log->kicker = k;
  return 0;
}

static void kicker_stop(log_t *log) {
  struct kicker *k = log->kicker;
  if (!k) return;
  log->kicker = NULL;
  k->log = NULL;
  uv_close((uv_handle_t *)&k->prep, on_kicker_closed);
  uv_close((uv_handle_t *)&k->check, on_kicker_closed);
}

/* ---- loop thread: acks ---- */

/* Run the callbacks of every finished group, in order, and recycle the groups. */
static void deliver(log_t *log) {
  pthread_mutex_lock(&log->mu);
  group_t *g = log->done;
  log->done = log->done_tail = NULL;
  pthread_mutex_unlock(&log->mu);
  while (g) {
    group_t *next = g->next;
    int any_ok = 0;
    for (size_t k = 0; k < g->nw; k++) {
      waiter_t *w = &g->w[k];
      atomic_fetch_sub(&log->pending_bytes, w->bytes);
      if (w->status == 0) any_ok = 1;
      if (w->ack) w->ack(w->ud, w->status, w->status == 0 ? w->first_offset : 0);
    }
    if (any_ok) {
      uint64_t end = atomic_load(&log->durable_end);
      for (size_t s = 0; s < log->nsubs; s++) log->subs[s].fn(log->subs[s].ud, end);
    }
    if (g->data.cap > GROUP_KEEP) buf_free(&g->data);
    buf_reset(&g->data);
    buf_reset(&g->times);
    g->nw = 0;
    pthread_mutex_lock(&log->mu);
    g->next = log->free;
    log->free = g;
    pthread_mutex_unlock(&log->mu);
    g = next;
  }
}

static void on_async(uv_async_t *h) {
  if (h->data) deliver(h->data);
}

static void on_async_closed(uv_handle_t *h) { free(h); }

/* ---- recovery ---- */

/* Scan frames from (pos, off) until the first one that is not valid. Index entries due
 * on the way are appended to idx. Returns the FRAME_* that stopped the scan (FRAME_END
 * when the segment ends cleanly) or a negative errno; *pos and *off advance past the
 * valid frames. chunk: scan_chunk of the segment's size. */
static int scan(window_t *w, size_t chunk, uint64_t base, uint32_t interval, uint64_t *pos,
                uint64_t *off, uint64_t *due, buf_t *idx) {
  for (;;) {
    frame_t f;
    int rc = frame_read(w, *pos, *off, chunk, &f);
    if (rc != FRAME_OK) return rc;
    idx_maybe_add(idx, due, interval, base, *off, *pos, f.time_us);
    *pos += 8 + (uint64_t)f.len;
    (*off)++;
  }
}

/* Bases of the <20 digits>.log files in the directory, sorted. Unless read_only, files
 * a log_rewrite left behind when it was interrupted (<name>.rewrite, never renamed into
 * place, so never part of the log) are deleted on the way. */
static int list_segments(log_t *log, char *err, size_t errlen, const char *dir) {
  int fd = dup(log->dirfd);
  DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
  if (!d) {
    if (fd >= 0) close(fd);
    snprintf(err, errlen, "log: cannot list %s: %s", dir, strerror(errno));
    return -1;
  }
  rewinddir(d);
  struct dirent *de;
  int removed = 0;
  while ((de = readdir(d))) {
    const char *n = de->d_name;
    size_t nlen = strlen(n), rlen = strlen(REWRITE_EXT);
    /* ... and so is a prepared segment no roll took (see "Preparing the next segment"). */
    if (!log->read_only && ((nlen > rlen && strcmp(n + nlen - rlen, REWRITE_EXT) == 0) ||
                            strcmp(n, PREP_NAME) == 0)) {
      if (unlinkat(log->dirfd, n, 0) == 0) removed++;
      continue;
    }
    if (nlen != 24 || strcmp(n + 20, ".log") != 0) continue;
    uint64_t base = 0;
    int ok = 1;
    for (int i = 0; i < 20; i++) {
      if (n[i] < '0' || n[i] > '9' || base > (UINT64_MAX - 9) / 10) {
        ok = 0;
        break;
      }
      base = base * 10 + (uint64_t)(n[i] - '0');
    }
    if (ok) seg_push(log, base);
  }
  closedir(d);
  if (removed) (void)sync_fd(log->dirfd, 0);
  for (size_t i = 1; i < log->nseg; i++) /* insertion sort: directories are small */
    for (size_t k = i; k > 0 && log->segs[k - 1] > log->segs[k]; k--) {
      uint64_t t = log->segs[k];
      log->segs[k] = log->segs[k - 1];
      log->segs[k - 1] = t;
    }
  return 0;
}

/* A segment before the last: trusted, but its header is checked and its index
 * completed, and the frames after the last index entry are verified to find where it
 * ends. A frame there that does not verify (the disk damaged a closed segment) does not
 * stop the log: the segment ends where the next one begins (next_base), the damage is
 * counted in rec, and readers skip the records they cannot read (log_reader_damage).
 * Returns 0 and *end, or -1 with err. */
/* The read size for recovering a segment of size bytes: SCAN_CHUNK, or the whole segment
 * when smaller (a small segment does not get a buffer of SCAN_CHUNK). */
static size_t scan_chunk(uint64_t size) {
  return size < SCAN_CHUNK ? (size_t)size : SCAN_CHUNK;
}

static int check_closed(log_t *log, uint64_t base, uint64_t next_base, window_t *w,
                        buf_t *idx, uint64_t *end, log_recovery_t *rec, char *err,
                        size_t errlen) {
  char name[NAME_LEN], iname[NAME_LEN], h[SEG_HDR], e[IDX_ENTRY];
  seg_name(name, base, "log");
  seg_name(iname, base, "idx");
  int ifd = -1, ret = -1;
  struct stat st;
  w->fd = openat(log->dirfd, name, O_RDONLY | O_CLOEXEC);
  if (w->fd < 0 || fstat(w->fd, &st) != 0) {
    snprintf(err, errlen, "log: cannot open segment %s: %s", name, strerror(errno));
    goto out;
  }
  atomic_fetch_add(&log->disk_bytes, (uint64_t)st.st_size);
  if (pread_full(w->fd, h, SEG_HDR, 0) != SEG_HDR || !header_ok(h, base)) {
    snprintf(err, errlen,
             "log: segment %s has a bad header; it is not the last segment, so the log "
             "cannot be recovered automatically (restore it or move it and later segments "
             "away)",
             name);
    goto out;
  }
  window_drop(w);
  buf_reset(idx);
  uint64_t pos = SEG_HDR, off = base, due = SEG_HDR, keep = 0;
  ifd = openat(log->dirfd, iname, log->read_only ? O_RDONLY | O_CLOEXEC
                                                 : O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  struct stat ist;
  if (ifd >= 0 && fstat(ifd, &ist) == 0 && ist.st_size >= IDX_ENTRY &&
      ist.st_size % IDX_ENTRY == 0 &&
      pread_full(ifd, e, IDX_ENTRY, (uint64_t)ist.st_size - IDX_ENTRY) == IDX_ENTRY) {
    /* Resume from the last entry if it points at the frame it claims. */
    frame_t f;
    uint64_t epos = rd32(e + 4), eoff = base + rd32(e);
    if (epos >= SEG_HDR && frame_read(w, epos, eoff, scan_chunk((uint64_t)st.st_size), &f) == FRAME_OK &&
        f.time_us == (int64_t)rd64(e + 8)) {
      pos = epos;
      off = eoff;
      due = epos + log->index_interval;
      keep = (uint64_t)ist.st_size;
    }
  }
  int rc = scan(w, scan_chunk((uint64_t)st.st_size), base, log->index_interval, &pos, &off,
                &due, idx);
  if (rc < 0) {
    snprintf(err, errlen, "log: cannot read segment %s: %s", name, strerror(-rc));
    goto out;
  }
  if (rc != FRAME_END || off < next_base) { /* a bad frame, or cut short at a frame edge */
    if (!rec->damaged_segments++)
      snprintf(rec->damaged_segment, sizeof rec->damaged_segment, "%.31s", name);
    off = next_base;
  }
  if (!log->read_only && ifd >= 0 && (idx->len || !keep)) {
    /* Best effort: the index is derived data and readers validate what they use. */
    if (!keep && ftruncate(ifd, 0) != 0) goto done_idx;
    (void)pwrite_full(ifd, idx->data, idx->len, keep);
  }
done_idx:
  *end = off;
  ret = 0;
out:
  if (ifd >= 0) close(ifd);
  if (w->fd >= 0) close(w->fd);
  w->fd = -1;
  return ret;
}

/* 1 when the file's bytes in [from, to) are all zero, 0 when not, or a negative errno. */
static int all_zero(int fd, uint64_t from, uint64_t to) {
  char *chunk = xmalloc(SCAN_CHUNK);
  int rc = 1;
  for (uint64_t at = from; at < to && rc == 1;) {
    size_t want = to - at < SCAN_CHUNK ? (size_t)(to - at) : SCAN_CHUNK;
    ssize_t n = pread_full(fd, chunk, want, at);
    if (n <= 0) {
      rc = n < 0 ? (int)n : 1; /* shorter than fstat said: nothing more to look at */
      break;
    }
    for (ssize_t i = 0; i < n; i++)
      if (chunk[i]) {
        rc = 0;
        break;
      }
    at += (uint64_t)n;
  }
  free(chunk);
  return rc;
}

/* The last segment: scanned fully; a torn or corrupt tail is cut off (not in read_only
 * mode) and the index is rebuilt if it does not match. Leaves the writer state (fd,
 * idx_fd, seg_*, idx_*, next_offset) set up. */
static int recover_last(log_t *log, uint64_t base, window_t *w, buf_t *idx,
                        log_recovery_t *rec, char *err, size_t errlen) {
  char name[NAME_LEN], iname[NAME_LEN], h[SEG_HDR];
  seg_name(name, base, "log");
  seg_name(iname, base, "idx");
  int ro = log->read_only;
  struct stat st;
  log->fd = openat(log->dirfd, name, (ro ? O_RDONLY : O_RDWR) | O_CLOEXEC);
  if (log->fd < 0 || fstat(log->fd, &st) != 0) {
    snprintf(err, errlen, "log: cannot open segment %s: %s", name, strerror(errno));
    return -1;
  }
  uint64_t size = (uint64_t)st.st_size;
  ssize_t hn = pread_full(log->fd, h, SEG_HDR, 0);
  if (hn < 0) {
    snprintf(err, errlen, "log: cannot read segment %s: %s", name, strerror((int)-hn));
    return -1;
  }
  if (hn != SEG_HDR || !header_ok(h, base)) {
    if (size > SEG_HDR) {
      snprintf(err, errlen,
               "log: segment %s has a bad header (not a sluice log segment?); move it away "
               "to start",
               name);
      return -1;
    }
    /* Torn while being created: it cannot hold records, so rewrite its header. */
    if (!ro) {
      header_encode(h, base);
      int rc = pwrite_full(log->fd, h, SEG_HDR, 0);
      if (rc == 0) rc = sync_fd(log->fd, 0);
      if (rc < 0) {
        snprintf(err, errlen, "log: cannot repair the header of %s: %s", name, strerror(-rc));
        return -1;
      }
      size = SEG_HDR;
    }
    atomic_fetch_add(&log->disk_bytes, size);
    log->seg_base = base;
    log->seg_size = SEG_HDR;
    log->seg_file = size;
    log->idx_due = SEG_HDR;
    log->next_offset = base;
    buf_reset(idx);
    goto index;
  }
  w->fd = log->fd;
  window_drop(w);
  buf_reset(idx);
  uint64_t pos = SEG_HDR, off = base, due = SEG_HDR;
  int rc = scan(w, scan_chunk(size), base, log->index_interval, &pos, &off, &due, idx);
  w->fd = -1;
  if (rc < 0) {
    snprintf(err, errlen, "log: cannot read segment %s: %s", name, strerror(-rc));
    return -1;
  }
  if (pos < size) {
    /* Only zeros after the last frame: a preallocated segment's clean end, not damage. */
    int zero = all_zero(log->fd, pos, size);
    if (zero < 0) {
      snprintf(err, errlen, "log: cannot read segment %s: %s", name, strerror(-zero));
      return -1;
    }
    if (!zero) {
      rec->dropped_bytes = size - pos;
      snprintf(rec->dropped_segment, sizeof rec->dropped_segment, "%.31s", name);
    }
    if (!ro) {
      int t;
      do t = ftruncate(log->fd, (off_t)pos);
      while (t != 0 && errno == EINTR);
      if (t != 0 || sync_fd(log->fd, 0) < 0) {
        snprintf(err, errlen, "log: cannot truncate the torn tail of %s: %s", name,
                 strerror(errno));
        return -1;
      }
      size = pos;
    }
  }
  atomic_fetch_add(&log->disk_bytes, size);
  log->seg_base = base;
  log->seg_size = pos;
  log->seg_file = size;
  log->idx_due = due;
  log->next_offset = off;
index:
  log->idx_size = idx->len;
  if (ro) return 0;
  evt_start(&log->evt, log->dirfd, base, log->next_offset, log->seg_size, 0);
  log->idx_fd = openat(log->dirfd, iname, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (log->idx_fd < 0) {
    snprintf(err, errlen, "log: cannot open index %s: %s", iname, strerror(errno));
    return -1;
  }
  struct stat ist;
  int same = 0;
  if (fstat(log->idx_fd, &ist) == 0 && (uint64_t)ist.st_size == idx->len) {
    buf_t cur = BUF_INIT;
    buf_reserve(&cur, idx->len);
    same = pread_full(log->idx_fd, cur.data, idx->len, 0) == (ssize_t)idx->len &&
           (idx->len == 0 || memcmp(cur.data, idx->data, idx->len) == 0);
    buf_free(&cur);
  }
  if (!same && (ftruncate(log->idx_fd, 0) != 0 ||
                pwrite_full(log->idx_fd, idx->data, idx->len, 0) < 0))
    log->idx_broken = 1;
  return 0;
}

static int recover(log_t *log, log_recovery_t *rec, const char *dir, char *err,
                   size_t errlen) {
  window_t w = {.fd = -1};
  buf_t idx = BUF_INIT;
  int ret = -1;
  if (list_segments(log, err, errlen, dir) < 0) goto out;
  rec->segments = log->nseg;
  if (log->nseg == 0) {
    if (!log->read_only) {
      int rc = segment_create(log, 0, log->sync != LOG_SYNC_OFF, &log->fd, &log->idx_fd);
      if (rc < 0) {
        snprintf(err, errlen, "log: cannot create the first segment in %s: %s", dir,
                 strerror(-rc));
        goto out;
      }
      seg_push(log, 0);
      atomic_store(&log->disk_bytes, SEG_HDR);
      log->seg_size = log->seg_file = log->idx_due = SEG_HDR;
      evt_start(&log->evt, log->dirfd, 0, 0, SEG_HDR, 1);
    }
    ret = 0;
    goto out;
  }
  for (size_t i = 0; i + 1 < log->nseg; i++) {
    uint64_t end;
    if (check_closed(log, log->segs[i], log->segs[i + 1], &w, &idx, &end, rec, err,
                     errlen) < 0)
      goto out;
    if (end != log->segs[i + 1]) {
      char a[NAME_LEN], b[NAME_LEN];
      seg_name(a, log->segs[i], "log");
      seg_name(b, log->segs[i + 1], "log");
      snprintf(err, errlen,
               "log: overlap in %s: segment %s ends at offset %" PRIu64 ", past the start of %s; "
               "one of them does not belong here (move it away)",
               dir, a, end, b);
      goto out;
    }
  }
  if (recover_last(log, log->segs[log->nseg - 1], &w, &idx, rec, err, errlen) < 0) goto out;
  ret = 0;
out:
  buf_free(&w.b);
  buf_free(&idx);
  return ret;
}

/* ---- life cycle ---- */

/* Best effort fsync of the directory holding path. */
static void sync_parent(const char *path) {
  size_t n = strlen(path);
  while (n > 1 && path[n - 1] == '/') n--;
  while (n > 0 && path[n - 1] != '/') n--;
  char *parent = n ? xstrndup(path, n) : xstrdup(".");
  int fd = open(parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd >= 0) {
    (void)sync_fd(fd, 0);
    close(fd);
  }
  free(parent);
}

log_t *log_open(const log_opts_t *opts, log_recovery_t *rec, char *err, size_t errlen) {
  log_recovery_t r0;
  memset(&r0, 0, sizeof r0);
  char dummy[1];
  if (!err || !errlen) {
    err = dummy;
    errlen = sizeof dummy;
  }
  err[0] = 0;
  if (!opts || !opts->dir || !opts->dir[0]) {
    snprintf(err, errlen, "log: no directory given");
    return NULL;
  }
  if (!opts->read_only && !opts->loop) {
    snprintf(err, errlen, "log: a loop is required unless read_only");
    return NULL;
  }
  log_t *log = xcalloc(1, sizeof *log);
  int mu_ok = 0, cond_ok = 0, admin_ok = 0, rolled_ok = 0, prep_ok = 0;
  log->read_only = opts->read_only;
  log->sync = opts->sync;
  log->segment_bytes = opts->segment_bytes ? opts->segment_bytes : 64u << 20;
  log->index_interval = opts->index_interval ? opts->index_interval : 4096;
  log->sync_interval_ms = opts->sync_interval_ms ? opts->sync_interval_ms : 1000;
  log->window_us = opts->sync == LOG_SYNC_ALWAYS ? opts->commit_window_us : 0;
  log->max_pending = opts->max_pending_bytes ? opts->max_pending_bytes : 64u << 20;
  log->prealloc = log->sync == LOG_SYNC_ALWAYS ? opts->preallocate_bytes : 0;
  log->loop = opts->loop;
  log->dirfd = log->fd = log->idx_fd = log->evt.fd = -1;
  atomic_init(&log->prep_fd, -1);
  log->last_sync_us = clock_mono_us();
  const char *dir = opts->dir;

  if (pthread_mutex_init(&log->mu, NULL) != 0) {
    snprintf(err, errlen, "log: cannot create a mutex");
    goto fail;
  }
  mu_ok = 1;
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  cond_ok = pthread_cond_init(&log->wake, &ca) == 0;
  rolled_ok = cond_ok && pthread_cond_init(&log->rolled, NULL) == 0;
  admin_ok = rolled_ok && pthread_mutex_init(&log->admin_mu, NULL) == 0;
  prep_ok = admin_ok && pthread_mutex_init(&log->prep_mu, NULL) == 0;
  if (prep_ok && pthread_cond_init(&log->prep_wake, &ca) != 0) {
    pthread_mutex_destroy(&log->prep_mu);
    prep_ok = 0;
  }
  pthread_condattr_destroy(&ca);
  if (!prep_ok) {
    snprintf(err, errlen, "log: cannot create a condition variable");
    goto fail;
  }

  if (!log->read_only) {
    if (mkdir(dir, 0700) == 0) {
      sync_parent(dir); /* so the new directory itself survives a crash */
    } else if (errno != EEXIST) {
      snprintf(err, errlen, "log: cannot create directory %s: %s", dir, strerror(errno));
      goto fail;
    }
  }
  log->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (log->dirfd < 0) {
    snprintf(err, errlen, "log: cannot open directory %s: %s", dir, strerror(errno));
    goto fail;
  }
  if (!log->read_only && flock(log->dirfd, LOCK_EX | LOCK_NB) != 0) {
    if (errno == EWOULDBLOCK)
      snprintf(err, errlen, "log: %s is already open for writing (another sluice running?)",
               dir);
    else
      snprintf(err, errlen, "log: cannot lock %s: %s", dir, strerror(errno));
    goto fail;
  }
  if (recover(log, &r0, dir, err, errlen) < 0) goto fail;
  r0.records = log->nseg ? log->next_offset - log->segs[0] : 0;
  atomic_store(&log->durable_end, log->next_offset);
  atomic_store(&log->start_offset, log->nseg ? log->segs[0] : 0);

  if (!log->read_only) {
    log->open = xcalloc(1, sizeof *log->open);
    log->async = xmalloc(sizeof *log->async);
    if (uv_async_init(log->loop, log->async, on_async) != 0) {
      free(log->async);
      log->async = NULL;
      snprintf(err, errlen, "log: cannot create the wakeup handle");
      goto fail;
    }
    log->async->data = log;
    if (kicker_start(log) != 0) {
      snprintf(err, errlen, "log: cannot create the writer's wakeup handles");
      goto fail;
    }
    if (pthread_create(&log->writer, NULL, writer_main, log) != 0) {
      snprintf(err, errlen, "log: cannot start the writer thread");
      goto fail;
    }
    log->writer_started = 1;
    /* Best effort: without the preparer every roll creates its segment as it did. */
    if (log->prealloc &&
        pthread_create(&log->preparer, NULL, preparer_main, log) == 0)
      log->preparer_started = 1;
  }
  if (rec) *rec = r0;
  return log;

fail:
  kicker_stop(log);
  if (log->async) {
    log->async->data = NULL;
    uv_close((uv_handle_t *)log->async, on_async_closed);
  }
  if (log->fd >= 0) close(log->fd);
  if (log->idx_fd >= 0) close(log->idx_fd);
  if (log->evt.fd >= 0) close(log->evt.fd);
  if (log->dirfd >= 0) close(log->dirfd);
  group_destroy(log->open);
  free(log->segs);
  if (prep_ok) {
    pthread_cond_destroy(&log->prep_wake);
    pthread_mutex_destroy(&log->prep_mu);
  }
  if (admin_ok) pthread_mutex_destroy(&log->admin_mu);
  if (rolled_ok) pthread_cond_destroy(&log->rolled);
  if (cond_ok) pthread_cond_destroy(&log->wake);
  if (mu_ok) pthread_mutex_destroy(&log->mu);
  free(log);
  return NULL;
}

void log_close(log_t *log) {
  if (!log) return;
  if (!log->read_only) {
    log->closing = 1;
    pthread_mutex_lock(&log->mu);
    log->stopping = 1;
    pthread_cond_signal(&log->wake);
    pthread_mutex_unlock(&log->mu);
    pthread_join(log->writer, NULL);
    preparer_stop(log);
    (void)cut_zeros(log); /* a closed log's last segment ends with its last record */
    index_flush(log);
    evt_finish(&log->evt, log->next_offset, 0, &log->evt_pending);
    deliver(log);
    kicker_stop(log);
    log->async->data = NULL;
    uv_close((uv_handle_t *)log->async, on_async_closed);
  }
  if (log->fd >= 0) close(log->fd);
  if (log->idx_fd >= 0) close(log->idx_fd);
  if (log->evt.fd >= 0) close(log->evt.fd); /* read_only: never opened */
  close(log->dirfd); /* releases the flock */
  group_destroy(log->open);
  group_destroy(log->free);
  group_destroy(log->done);
  buf_free(&log->idx_pending);
  buf_free(&log->evt_pending);
  free(log->segs);
  free(log->subs);
  pthread_cond_destroy(&log->prep_wake);
  pthread_mutex_destroy(&log->prep_mu);
  pthread_mutex_destroy(&log->admin_mu);
  pthread_cond_destroy(&log->rolled);
  pthread_cond_destroy(&log->wake);
  pthread_mutex_destroy(&log->mu);
  free(log);
}

/* ---- appending ---- */

int log_append(log_t *log, const log_entry_t *entries, size_t n, log_ack_fn ack, void *ud) {
  if (!log || log->read_only || !entries || n == 0) return -EINVAL;
  if (log->closing) return -ESHUTDOWN;
  uint64_t bytes = 0;
  for (size_t i = 0; i < n; i++) {
    const log_entry_t *e = &entries[i];
    uint64_t body = (uint64_t)e->key_len + e->value_len;
    if (body == 0 || body > MAX_RECORD || (e->key_len && !e->key) ||
        (e->value_len && !e->value))
      return -EINVAL;
    bytes += FRAME_HDR + body;
  }
  if (atomic_load(&log->error)) return -EIO;
  if (atomic_load(&log->pending_bytes) > log->max_pending) return -EAGAIN;
  atomic_fetch_add(&log->pending_bytes, bytes);

  pthread_mutex_lock(&log->mu);
  group_t *g = log->open;
  buf_reserve(&g->data, bytes);
  buf_reserve(&g->times, n * 8);
  size_t rec0 = g->times.len / 8;
  if (g->nw == 0 && log->window_us) g->first_us = clock_mono_us();
  char *p = g->data.data + g->data.len, *t = g->times.data + g->times.len;
  for (size_t i = 0; i < n; i++) {
    const log_entry_t *e = &entries[i];
    uint32_t len = LEN_MIN + e->key_len + e->value_len;
    wr64(t + i * 8, (uint64_t)e->event_us);
    wr32(p, len);
    wr32(p + 4, 0);  /* crc: by the writer */
    wr64(p + 8, 0);  /* offset: by the writer */
    wr64(p + 16, (uint64_t)e->time_us);
    wr32(p + 24, e->key_len);
    if (e->key_len) memcpy(p + FRAME_HDR, e->key, e->key_len);
    if (e->value_len) memcpy(p + FRAME_HDR + e->key_len, e->value, e->value_len);
    p += FRAME_HDR + e->key_len + e->value_len;
  }
  g->data.len += bytes;
  g->times.len += n * 8;
  if (g->nw == g->capw) {
    g->capw = g->capw ? g->capw * 2 : 64;
    g->w = xrealloc(g->w, g->capw * sizeof *g->w);
  }
  g->w[g->nw++] = (waiter_t){.ack = ack, .ud = ud, .nrecords = n, .bytes = bytes, .rec0 = rec0};
  int now = g->data.len >= KICK_BYTES;
  if (now) log->sealed = 1;
  pthread_mutex_unlock(&log->mu);
  /* The writer is woken at the end of this turn of the loop, or at once when the group
   * is large enough (see "Waking"), after the mutex is let go. It reads open->nw under
   * the mutex before it waits, so the wake-up cannot be missed. */
  if (now) pthread_cond_signal(&log->wake);
  else atomic_store_explicit(&log->kick, 1, memory_order_relaxed);
  return 0;
}

int log_subscribe(log_t *log, log_notify_fn fn, void *ud) {
  if (!log || !fn) return -EINVAL;
  log->subs = xrealloc(log->subs, (log->nsubs + 1) * sizeof *log->subs);
  log->subs[log->nsubs++] = (sub_t){fn, ud};
  return 0;
}

/* ---- state ---- */

uint64_t log_end_offset(const log_t *log) {
  return atomic_load(&((log_t *)log)->durable_end);
}
uint64_t log_pending_bytes(const log_t *log) {
  return atomic_load(&((log_t *)log)->pending_bytes);
}
uint64_t log_start_offset(const log_t *log) {
  return atomic_load(&((log_t *)log)->start_offset);
}
uint64_t log_disk_bytes(const log_t *log) { return atomic_load(&((log_t *)log)->disk_bytes); }
int log_error(const log_t *log) { return atomic_load(&((log_t *)log)->error); }
uint64_t log_prepared_rolls(const log_t *log) {
  return atomic_load(&((log_t *)log)->prepared_rolls);
}
int log_prepared_ready(const log_t *log) {
  log_t *l = (log_t *)log;
  if (!l->preparer_started) return 0;
  return atomic_load(&l->prep_fd) >= 0;
}

void log_set_quiet_probe(log_t *log, int (*fn)(void *ud), void *ud) {
  log->quiet_fn = fn;
  log->quiet_ud = ud;
}

void log_set_sync_observer(log_t *log, log_sync_observer_fn fn, void *ud) {
  pthread_mutex_lock(&log->mu);
  log->obs_fn = fn;
  log->obs_ud = ud;
  pthread_mutex_unlock(&log->mu);
}
