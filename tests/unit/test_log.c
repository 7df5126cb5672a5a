/* test_log: the durable event log, driven through a real libuv loop in a temp dir.
 *
 * Each TEST builds a scenario on disk (or damages one), opens the log and checks what a
 * user relies on: acks in order and only after sync, records read back byte for byte,
 * recovery cutting exactly the torn tail, read-only opens leaving files alone,
 * backpressure, and ENOSPC (on a tiny tmpfs when the test may mount one). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/vfs.h>
#include <unistd.h>

#include "test.h"
#include "logtest.h"
#include "util/crc32c.h"

#define SEG0 "00000000000000000000.log"
#define FRAME_HDR 28

/* ---- helpers ---- */

static int count_files(const char *dir, const char *ext) {
  char cmd[700];
  snprintf(cmd, sizeof cmd, "ls '%s' | grep -c '\\.%s$'", dir, ext);
  FILE *f = popen(cmd, "r");
  int n = -1;
  if (f) {
    if (fscanf(f, "%d", &n) != 1) n = -1;
    pclose(f);
  }
  return n;
}

/* Deterministic content of the record at offset i. */
static void make_entry(uint64_t i, log_entry_t *e, char *key, char *val) {
  int klen = i % 5 == 0 ? 0 : snprintf(key, 32, "user-%d", (int)(i % 7));
  int vlen = snprintf(val, 40, "{\"n\":%llu}", (unsigned long long)i);
  entry_fill(e, i, key, klen, val, vlen, 300);
}

static uint64_t frame_size(uint64_t i) {
  char key[32], val[400];
  log_entry_t e;
  make_entry(i, &e, key, val);
  return FRAME_HDR + e.key_len + e.value_len;
}

typedef struct ackbox {
  int calls, errors, last_status;
  uint64_t last_offset;
  int order_ok;
  int next_seq;      /* sequence number the next ack must carry */
} ackbox_t;

typedef struct req {
  ackbox_t *box;
  int seq;
  int status;
  uint64_t offset;
  int called;
} req_t;

static void on_ack(void *ud, int status, uint64_t first) {
  req_t *q = ud;
  q->called++;
  q->status = status;
  q->offset = first;
  q->box->calls++;
  q->box->last_status = status;
  q->box->last_offset = first;
  if (status) q->box->errors++;
  if (q->seq != q->box->next_seq) q->box->order_ok = 0;
  q->box->next_seq++;
}

typedef struct want {
  ackbox_t *box;
  int n;
} want_t;

static int acks_reached(void *ctx) {
  want_t *w = ctx;
  return w->box->calls >= w->n;
}

static int wait_acks(ackbox_t *box, int n) {
  want_t w = {box, n};
  return run_until(acks_reached, &w, 10000);
}

/* Append records [from, from+n) one append each, wait for every ack; returns errors. */
static int append_range(log_t *log, uint64_t from, int n) {
  ackbox_t box = {.order_ok = 1};
  req_t *q = calloc((size_t)n, sizeof *q);
  for (int k = 0; k < n; k++) {
    char key[32], val[400];
    log_entry_t e;
    make_entry(from + (uint64_t)k, &e, key, val);
    q[k] = (req_t){.box = &box, .seq = k};
    int rc = log_append(log, &e, 1, on_ack, &q[k]);
    if (rc) {
      free(q);
      return rc;
    }
  }
  int bad = !wait_acks(&box, n) || box.errors || !box.order_ok;
  for (int k = 0; k < n && !bad; k++) bad = q[k].offset != from + (uint64_t)k;
  free(q);
  return bad ? -1 : 0;
}

static int matches(const log_record_t *r, uint64_t want, void *ctx) {
  return record_matches(r, want);
}

/* Read every record from `from`; check each against make_entry. Returns the count read,
 * or -1 on a mismatch or error. */
static long read_all(log_t *log, uint64_t from) { return read_log(log, from, from, matches, NULL); }

/* open_log, then records [0, n) appended (checked); NULL if it did not open. */
static log_t *new_log(const char *dir, log_sync_t sync, uint64_t seg_bytes, int n) {
  log_t *log = logtest_open(dir, sync, seg_bytes, NULL);
  if (log) CHECK_INT(append_range(log, 0, n), 0);
  return log;
}

/* ---- group commit and ordering ---- */

static atomic_ullong syncs, synced_records;

static void on_sync(void *ud, uint64_t us, uint64_t records) {
  (void)ud, (void)us;
  atomic_fetch_add(&syncs, 1);
  atomic_fetch_add(&synced_records, records);
}

#define CLIENTS 32
#define APPENDS 1500

typedef struct client {
  log_t *log;
  int sent, acked, bad_order, errors;
  uint64_t records_sent, last_offset;
  int *per_client_expected;
} client_t;

static int total_acked, total_sent;
static uint64_t expected_next_offset; /* acks arrive in append order: offsets ascend */
static int ack_offset_errors;

typedef struct creq {
  client_t *c;
  uint64_t nrec;
} creq_t;

static void client_send(client_t *c);

static void on_client_ack(void *ud, int status, uint64_t first) {
  creq_t *q = ud;
  client_t *c = q->c;
  if (status) c->errors++;
  if (first != expected_next_offset) ack_offset_errors++;
  expected_next_offset = first + q->nrec;
  total_acked++;
  free(q);
  if (total_sent < APPENDS) client_send(c);
}

static void client_send(client_t *c) {
  static uint64_t next_rec; /* offsets equal append order: content is known in advance */
  size_t n = 1 + (size_t)(total_sent % 3);
  log_entry_t e[3];
  char key[3][32], val[3][400];
  for (size_t k = 0; k < n; k++) make_entry(next_rec + k, &e[k], key[k], val[k]);
  creq_t *q = malloc(sizeof *q);
  q->c = c;
  q->nrec = n;
  int rc = log_append(c->log, e, n, on_client_ack, q);
  if (rc) {
    c->errors++;
    free(q);
    return;
  }
  next_rec += n;
  total_sent++;
}

static int notifies;
static uint64_t notified_end;

static void on_notify(void *ud, uint64_t end) {
  (void)ud;
  if (end < notified_end) ack_offset_errors++; /* the readable end only grows */
  notified_end = end;
  notifies++;
}

static int all_acked(void *ctx) {
  (void)ctx;
  return total_acked >= APPENDS;
}

TEST(group_commit_orders_acks) {
  const char *dir = test_dir("group");
  log_t *log = logtest_open(dir, LOG_SYNC_ALWAYS, 0, NULL);
  REQUIRE(log != NULL);
  log_set_sync_observer(log, on_sync, NULL);
  CHECK_INT(log_subscribe(log, on_notify, NULL), 0);
  client_t c[CLIENTS] = {0};
  for (int i = 0; i < CLIENTS; i++) {
    c[i].log = log;
    client_send(&c[i]);
  }
  CHECK_INT(total_acked, 0); /* never acked from inside log_append */
  CHECK(run_until(all_acked, NULL, 60000));
  int errors = 0;
  for (int i = 0; i < CLIENTS; i++) errors += c[i].errors;
  CHECK_INT(errors, 0);
  CHECK_INT(ack_offset_errors, 0);
  uint64_t end = log_end_offset(log);
  CHECK_INT(end, expected_next_offset);
  CHECK_INT(atomic_load(&synced_records), end);
  CHECK(notifies > 0);
  CHECK_INT(notified_end, end);
  /* group commit: many appends share one fdatasync */
  CHECK(atomic_load(&syncs) < (unsigned long long)APPENDS / 2);
  CHECK_INT(log_pending_bytes(log), 0);
  CHECK_INT(log_error(log), 0);
  CHECK_INT(log_disk_bytes(log), file_size(path_in(dir, SEG0)));
  CHECK_INT(read_all(log, 0), end);
  printf("  %d appends, %llu records, %llu fdatasyncs\n", APPENDS, (unsigned long long)end,
         (unsigned long long)atomic_load(&syncs));
  close_log(log);
}

/* ---- reading back across segments, from another thread ---- */

typedef struct tail {
  log_t *log;
  uint64_t want;
  long got;
  int bad;
} tail_t;

static void *tail_main(void *arg) {
  tail_t *t = arg;
  char err[256];
  log_reader_t *r = log_reader_open(t->log, 0, err, sizeof err);
  if (!r) {
    t->bad = 1;
    return NULL;
  }
  int64_t deadline = clock_mono_us() + 30000000;
  while ((uint64_t)t->got < t->want && clock_mono_us() < deadline) {
    log_record_t rec;
    int rc = log_reader_next(r, &rec);
    if (rc < 0 || (rc == 1 && !record_matches(&rec, (uint64_t)t->got))) {
      t->bad = 1;
      break;
    }
    if (rc == 1) t->got++;
    else usleep(200);
  }
  log_reader_close(r);
  return NULL;
}

static int sum_log_sizes(const char *dir, long long *sum) {
  char cmd[700];
  snprintf(cmd, sizeof cmd, "cat '%s'/*.log | wc -c", dir);
  FILE *f = popen(cmd, "r");
  int ok = f && fscanf(f, "%lld", sum) == 1;
  if (f) pclose(f);
  return ok;
}

TEST(reader_crosses_segments) {
  const char *dir = test_dir("segments");
  log_t *log = logtest_open(dir, LOG_SYNC_OFF, 4096, NULL);
  REQUIRE(log != NULL);
  tail_t t = {.log = log, .want = 600};
  pthread_t th;
  pthread_create(&th, NULL, tail_main, &t);
  CHECK_INT(append_range(log, 0, 300), 0);
  CHECK_INT(append_range(log, 300, 300), 0);
  pthread_join(th, NULL);
  CHECK_INT(t.bad, 0);
  CHECK_INT(t.got, 600);
  CHECK(count_files(dir, "log") >= 10);
  CHECK_INT(read_all(log, 0), 600);
  CHECK_INT(read_all(log, 237), 600 - 237);
  CHECK_INT(read_all(log, 599), 1);
  CHECK_INT(read_all(log, 600), 0);
  long long sum = 0;
  CHECK(sum_log_sizes(dir, &sum));
  CHECK_INT(log_disk_bytes(log), sum);
  for (long long i = 0; i < 600; i++) { /* every segment stays within segment_bytes */
    char name[40];
    snprintf(name, sizeof name, "%020lld.log", i);
    long long sz = file_size(path_in(dir, name));
    if (sz > 4096) FAILF("%s is %lld bytes", name, sz);
  }
  close_log(log);

  /* The index is derived data: delete it and log_open rebuilds it identically. */
  char idx_before[8192];
  FILE *f = fopen(path_in(dir, "00000000000000000000.idx"), "rb");
  size_t idx_len = f ? fread(idx_before, 1, sizeof idx_before, f) : 0;
  if (f) fclose(f);
  CHECK(idx_len > 16);
  char cmd[700];
  snprintf(cmd, sizeof cmd, "rm -f '%s'/*.idx", dir);
  CHECK_INT(system(cmd), 0);
  log_recovery_t rec;
  log = logtest_open(dir, LOG_SYNC_OFF, 4096, &rec);
  REQUIRE(log != NULL);
  CHECK_INT(rec.records, 600);
  CHECK_INT(rec.dropped_bytes, 0);
  CHECK(rec.segments >= 10);
  char idx_after[8192];
  f = fopen(path_in(dir, "00000000000000000000.idx"), "rb");
  size_t idx_len2 = f ? fread(idx_after, 1, sizeof idx_after, f) : 0;
  if (f) fclose(f);
  CHECK_INT(idx_len2, idx_len);
  CHECK(idx_len2 == idx_len && memcmp(idx_before, idx_after, idx_len) == 0);
  CHECK_INT(count_files(dir, "idx"), count_files(dir, "log"));
  CHECK_INT(read_all(log, 451), 600 - 451);
  close_log(log);
}

/* A reader leaves the segment's access time as it was (O_NOATIME): under relatime each
 * read after a write would dirty the inode again, costing an inode write in the next
 * fdatasync on ext4 without a journal. Skipped where the file system keeps no access
 * times (a noatime mount): a plain read is tried first. */
TEST(readers_leave_access_time_alone) {
  const char *dir = test_dir("atime");
  log_t *log = logtest_open(dir, LOG_SYNC_OFF, 1 << 20, NULL);
  REQUIRE(log != NULL);
  CHECK_INT(append_range(log, 0, 50), 0);
  const char *seg = path_in(dir, "00000000000000000000.log");
  const struct timespec old[2] = {{.tv_sec = 1000000}, {.tv_nsec = UTIME_OMIT}};
  struct stat st;
  char b[64];
  REQUIRE(utimensat(AT_FDCWD, seg, old, 0) == 0);
  int fd = open(seg, O_RDONLY);
  REQUIRE(fd >= 0);
  CHECK(pread(fd, b, sizeof b, 0) == (ssize_t)sizeof b);
  close(fd);
  REQUIRE(stat(seg, &st) == 0);
  if (st.st_atim.tv_sec == old[0].tv_sec) {
    printf("  (skipped: this file system keeps no access times)\n");
    close_log(log);
    return;
  }
  REQUIRE(utimensat(AT_FDCWD, seg, old, 0) == 0);
  CHECK_INT(read_all(log, 0), 50);
  REQUIRE(stat(seg, &st) == 0);
  CHECK_INT(st.st_atim.tv_sec, old[0].tv_sec);
  close_log(log);
}

/* log_reader_peek_key: a hint, but when it answers, it names the right record's key. */
TEST(peek_key_names_coming_records) {
  const char *dir = test_dir("peek");
  log_t *log = logtest_open(dir, LOG_SYNC_OFF, 4096, NULL);
  REQUIRE(log != NULL);
  CHECK_INT(append_range(log, 0, 600), 0);
  char err[256];
  log_reader_t *r = log_reader_open(log, 0, err, sizeof err);
  REQUIRE(r != NULL);
  log_record_t rec;
  int answered = 0, wrong = 0, n = 0;
  while (log_reader_next(r, &rec) == 1) {
    n++;
    for (unsigned skip = 0; skip < 3; skip++) {
      const char *k;
      uint32_t kl;
      if (!log_reader_peek_key(r, skip, &k, &kl)) continue;
      answered++;
      char key[32], val[400];
      log_entry_t e;
      make_entry(rec.offset + 1 + skip, &e, key, val);
      if (rec.offset + 1 + skip >= 600 || kl != e.key_len || (kl && memcmp(k, e.key, kl) != 0))
        wrong++;
    }
  }
  CHECK_INT(n, 600);
  CHECK_INT(wrong, 0);
  CHECK(answered > 600); /* most records have the next ones in the window already */
  const char *k;
  uint32_t kl;
  CHECK_INT(log_reader_peek_key(r, 0, &k, &kl), 0); /* caught up */
  log_reader_close(r);
  close_log(log);
}

/* ---- reopening ---- */

TEST(reopen_continues_offsets) {
  const char *dir = test_dir("reopen");
  log_recovery_t rec;
  log_t *log = logtest_open(dir, LOG_SYNC_ALWAYS, 0, &rec);
  REQUIRE(log != NULL);
  CHECK_INT(rec.segments, 0);
  CHECK_INT(rec.records, 0);
  CHECK_INT(append_range(log, 0, 10), 0);
  close_log(log);
  log = logtest_open(dir, LOG_SYNC_ALWAYS, 0, &rec);
  REQUIRE(log != NULL);
  CHECK_INT(rec.segments, 1);
  CHECK_INT(rec.records, 10);
  CHECK_INT(rec.dropped_bytes, 0);
  CHECK_STR(rec.dropped_segment, "");
  CHECK_INT(log_end_offset(log), 10);
  CHECK_INT(append_range(log, 10, 5), 0);
  CHECK_INT(read_all(log, 0), 15);

  /* a second writer on the same directory is refused */
  char err[256] = "";
  log_opts_t o = {.dir = dir, .loop = &loop};
  log_t *two = log_open(&o, NULL, err, sizeof err);
  CHECK(two == NULL);
  CHECK(strstr(err, "already open") != NULL);
  close_log(log);
}

/* A log whose oldest segments are gone (log_retain deletes whole segments from the front)
 * starts at its first segment's base: it recovers, reads, seeks and appends from there. */
TEST(first_segment_above_zero) {
  const char *dir = test_dir("startabove0");
  log_t *log = new_log(dir, LOG_SYNC_OFF, 4096, 300);
  REQUIRE(log != NULL);
  CHECK_INT(log_start_offset(log), 0);
  close_log(log);
  int nlog = count_files(dir, "log");
  CHECK(nlog >= 4);
  /* Delete the first two segments; leave segment 0's index behind as a stray. */
  uint64_t second = 0, third = 0;
  for (uint64_t i = 1; i < 300 && !third; i++) {
    char name[40];
    snprintf(name, sizeof name, "%020llu.log", (unsigned long long)i);
    if (file_size(path_in(dir, name)) < 0) continue;
    if (!second) second = i;
    else third = i;
  }
  CHECK(second > 0 && third > second);
  char name[40];
  snprintf(name, sizeof name, "%020llu.log", (unsigned long long)second);
  CHECK_INT(unlink(path_in(dir, SEG0)), 0);
  CHECK_INT(unlink(path_in(dir, name)), 0);

  log_recovery_t rec;
  log = logtest_open(dir, LOG_SYNC_OFF, 4096, &rec);
  REQUIRE(log != NULL);
  CHECK_INT(rec.segments, nlog - 2);
  CHECK_INT(rec.records, 300 - third);
  CHECK_INT(rec.dropped_bytes, 0);
  CHECK_INT(log_start_offset(log), third);
  CHECK_INT(log_end_offset(log), 300);
  CHECK_INT(read_all(log, third), 300 - (long)third);
  char err[256];
  log_reader_t *r = log_reader_open(log, 0, err, sizeof err);
  CHECK(r != NULL);
  if (r) {
    CHECK_INT(log_reader_offset(r), third);
    log_record_t rr;
    CHECK_INT(log_reader_next(r, &rr), 1);
    CHECK(record_matches(&rr, third));
    CHECK_INT(log_reader_seek_time(r, 0), 0);
    CHECK_INT(log_reader_offset(r), third);
    log_reader_close(r);
  }
  CHECK_INT(append_range(log, 300, 10), 0);
  close_log(log);

  log_opts_t o = {.dir = dir, .read_only = 1};
  log = log_open(&o, &rec, err, sizeof err);
  REQUIRE(log != NULL);
  CHECK_INT(rec.records, 310 - third);
  CHECK_INT(log_start_offset(log), third);
  CHECK_INT(read_all(log, third), 310 - (long)third);
  log_close(log);
}

/* ---- recovery: damage the last segment, table-driven ---- */

typedef enum { CUT_TAIL, FLIP_BYTE, ADD_GARBAGE, ADD_ZEROS } damage_t;

typedef struct recovery_case {
  const char *name;
  damage_t damage;
  long long arg;          /* bytes cut / record whose value byte flips / bytes added */
  uint64_t want_records;  /* records left after recovery */
} recovery_case_t;

static const recovery_case_t recovery_cases[] = {
    {"torn last record", CUT_TAIL, 5, 9},
    {"torn inside header of last", CUT_TAIL, 0 /* set below: frame - 3 */, 9},
    {"corrupt byte in last record", FLIP_BYTE, 9, 9},
    {"corrupt byte mid-log", FLIP_BYTE, 4, 4},
    {"garbage after records", ADD_GARBAGE, 37, 10},
    {"zeros after records", ADD_ZEROS, 4096, 10},
};

static uint64_t offset_pos(uint64_t i) { /* file position of record i in segment 0 */
  uint64_t pos = 16;
  for (uint64_t k = 0; k < i; k++) pos += frame_size(k);
  return pos;
}

TEST(recovery_truncates_bad_tail) {
  for (size_t c = 0; c < sizeof recovery_cases / sizeof *recovery_cases; c++) {
    const recovery_case_t *tc = &recovery_cases[c];
    const char *dir = test_dir("recovery");
    log_t *log = logtest_open(dir, LOG_SYNC_ALWAYS, 0, NULL);
    REQUIRE(log != NULL);
    CHECK_INT(append_range(log, 0, 10), 0);
    close_log(log);

    const char *seg = path_in(dir, SEG0);
    long long size = file_size(seg);
    CHECK_INT(size, offset_pos(10));
    int fd = open(seg, O_RDWR);
    switch (tc->damage) {
      case CUT_TAIL: {
        long long cut = tc->arg ? tc->arg : (long long)frame_size(9) - 3;
        CHECK_INT(ftruncate(fd, size - cut), 0);
        break;
      }
      case FLIP_BYTE: {
        off_t at = (off_t)offset_pos((uint64_t)tc->arg) + FRAME_HDR + 3;
        char b;
        CHECK_INT(pread(fd, &b, 1, at), 1);
        b ^= 0x40;
        CHECK_INT(pwrite(fd, &b, 1, at), 1);
        break;
      }
      case ADD_GARBAGE:
      case ADD_ZEROS: {
        char junk[4096];
        for (int i = 0; i < (int)sizeof junk; i++)
          junk[i] = tc->damage == ADD_ZEROS ? 0 : (char)(i * 7 + 1);
        CHECK_INT(pwrite(fd, junk, (size_t)tc->arg, size), tc->arg);
        break;
      }
    }
    close(fd);
    long long damaged = file_size(seg);

    log_recovery_t rec;
    log = logtest_open(dir, LOG_SYNC_ALWAYS, 0, &rec);
    REQUIRE(log != NULL);
    uint64_t keep = offset_pos(tc->want_records);
    if (rec.records != tc->want_records) printf("  case: %s\n", tc->name);
    CHECK_INT(rec.records, tc->want_records);
    /* zeros after the last record are how a preallocated segment ends: not reported */
    int clean_end = tc->damage == ADD_ZEROS;
    CHECK_INT(rec.dropped_bytes, clean_end ? 0 : damaged - (long long)keep);
    CHECK_STR(rec.dropped_segment, clean_end ? "" : SEG0);
    CHECK_INT(file_size(seg), keep);
    CHECK_INT(log_end_offset(log), tc->want_records);
    /* offsets continue where the valid records end, and the new ones read back */
    CHECK_INT(append_range(log, tc->want_records, 3), 0);
    CHECK_INT(read_all(log, 0), tc->want_records + 3);
    close_log(log);

    log = logtest_open(dir, LOG_SYNC_ALWAYS, 0, &rec); /* and the repair was clean */
    REQUIRE(log != NULL);
    CHECK_INT(rec.dropped_bytes, 0);
    CHECK_INT(rec.records, tc->want_records + 3);
    close_log(log);
  }
}

/* Whether the last byte of file p is non-zero (a record's, not preallocated zeros). */
static int ends_with_record(const char *p) {
  int fd = open(p, O_RDONLY);
  char b = 0;
  int ok = fd >= 0 && pread(fd, &b, 1, file_size(p) - 1) == 1 && b != 0;
  if (fd >= 0) close(fd);
  return ok;
}

#define PREP "next.prealloc"

static int prepared_ready(void *log) { return log_prepared_ready(log); }

/* What the log's files take: every *.log and a prepared next segment. */
static long long log_dir_bytes(const char *dir) {
  long long sum = 0;
  if (!sum_log_sizes(dir, &sum)) return -1;
  long long prep = file_size(path_in(dir, PREP));
  return sum + (prep > 0 ? prep : 0);
}

/* The name of a segment other than segment 0 into out (NAME_LEN), or 0 when none. */
static int other_segment(const char *dir, char *out) {
  int found = 0;
  DIR *d = opendir(dir);
  for (struct dirent *de; d && (de = readdir(d));)
    if (strstr(de->d_name, ".log") && strcmp(de->d_name, SEG0) != 0) {
      snprintf(out, 48, "%.47s", de->d_name);
      found++;
    }
  if (d) closedir(d);
  return found == 1;
}

TEST(preallocated_segments) {
  /* Zeros are kept written ahead of the records, counted in the disk bytes (with the
   * prepared next segment), cut when a segment closes, and a crash's copy of the files
   * (zeros included) recovers cleanly. */
  char dir[600], copy[600];
  snprintf(dir, sizeof dir, "%s", test_dir("prealloc"));
  snprintf(copy, sizeof copy, "%s", test_dir("prealloc-crash"));
  log_opts_t o = {.dir = dir, .segment_bytes = 16 << 10, .index_interval = 256,
                  .sync = LOG_SYNC_ALWAYS, .preallocate_bytes = 8192, .loop = &loop};
  log_t *log = log_open(&o, NULL, NULL, 0);
  REQUIRE(log != NULL);
  CHECK_INT(append_range(log, 0, 10), 0);
  long long end = (long long)offset_pos(10), size = file_size(path_in(dir, SEG0));
  CHECK(size > end && size <= end + 8192);
  CHECK(run_until(prepared_ready, log, 10000)); /* the next segment, counted too */
  CHECK_INT(log_disk_bytes(log), size + (16 << 10));
  CHECK(!ends_with_record(path_in(dir, SEG0)));
  char cmd[1900];
  snprintf(cmd, sizeof cmd, "mkdir -p '%s' && cp '%s'/*.log '%s'/", copy, dir, copy);
  CHECK_INT(system(cmd), 0); /* the files as a crash would leave them */

  CHECK_INT(append_range(log, 10, 190), 0); /* rolls several segments */
  CHECK(run_until(prepared_ready, log, 10000));
  CHECK_INT(log_disk_bytes(log), log_dir_bytes(dir));
  CHECK_INT(read_all(log, 0), 200);
  close_log(log);
  int segs = 0;
  DIR *d = opendir(dir);
  for (struct dirent *de; d && (de = readdir(d));)
    if (strstr(de->d_name, ".log")) {
      segs++;
      if (!ends_with_record(path_in(dir, de->d_name))) FAILF("%s ends with zeros", de->d_name);
    }
  if (d) closedir(d);
  CHECK(segs >= 3);
  log_recovery_t rec;
  log = logtest_open(dir, LOG_SYNC_ALWAYS, 0, &rec);
  REQUIRE(log != NULL);
  CHECK_INT(rec.records, 200);
  CHECK_INT(rec.dropped_bytes + rec.damaged_segments, 0);
  close_log(log);

  log = logtest_open(copy, LOG_SYNC_ALWAYS, 0, &rec);
  REQUIRE(log != NULL);
  CHECK_INT(rec.records, 10);
  CHECK_INT(rec.dropped_bytes, 0);
  CHECK_INT(file_size(path_in(copy, SEG0)), end);
  CHECK_INT(append_range(log, 10, 3), 0);
  CHECK_INT(read_all(log, 0), 13);
  close_log(log);
}

/* A roll takes the segment the preparer zeroed in the background: the new segment is
 * that very file (same inode), already at segment_bytes, so the writer wrote no zeros
 * for it; the file is counted in the disk bytes while it waits, and gone after close. */
/* Threads of this process in the SCHED_IDLE class (policy 5, field 41 of
 * /proc/self/task/TID/stat). */
static int idle_threads(void) {
  DIR *d = opendir("/proc/self/task");
  if (!d) return -1;
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d))) {
    if (e->d_name[0] == '.') continue;
    char path[300], line[1024];
    snprintf(path, sizeof path, "/proc/self/task/%s/stat", e->d_name);
    FILE *f = fopen(path, "r");
    if (!f) continue;
    size_t len = fread(line, 1, sizeof line - 1, f);
    fclose(f);
    line[len] = 0;
    const char *p = strrchr(line, ')'); /* fields after the command name */
    int field = 2, policy = -1;
    for (; p && *p; p++)
      if (*p == ' ' && ++field == 41) policy = atoi(p + 1);
    n += policy == 5;
  }
  closedir(d);
  return n;
}

TEST(roll_takes_the_prepared_segment) {
  const char *dir = test_dir("prepared");
  log_opts_t o = {.dir = dir, .segment_bytes = 64 << 10, .index_interval = 256,
                  .sync = LOG_SYNC_ALWAYS, .preallocate_bytes = 8192, .loop = &loop};
  log_t *log = log_open(&o, NULL, NULL, 0);
  REQUIRE(log != NULL);
  REQUIRE(run_until(prepared_ready, log, 10000));
  CHECK_INT(idle_threads(), 1); /* the preparer never takes the CPU from the others */
  struct stat st;
  REQUIRE(stat(path_in(dir, PREP), &st) == 0);
  CHECK_INT(st.st_size, 64 << 10);
  ino_t prepared_ino = st.st_ino;
  CHECK_INT(log_disk_bytes(log), log_dir_bytes(dir));

  CHECK_INT(append_range(log, 0, 400), 0); /* one roll: ~330 records fill 64 KiB */
  CHECK_INT(log_prepared_rolls(log), 1);
  char seg1[48];
  REQUIRE(other_segment(dir, seg1));
  REQUIRE(stat(path_in(dir, seg1), &st) == 0);
  CHECK(st.st_ino == prepared_ino);
  CHECK_INT(st.st_size, 64 << 10);
  CHECK(ends_with_record(path_in(dir, SEG0))); /* the closed one lost its zeros */
  CHECK(run_until(prepared_ready, log, 10000)); /* the preparer made the next one */
  CHECK_INT(log_disk_bytes(log), log_dir_bytes(dir));
  CHECK_INT(read_all(log, 0), 400);
  close_log(log);
  CHECK_INT(file_size(path_in(dir, PREP)), -1);
  CHECK(ends_with_record(path_in(dir, seg1)));

  log_recovery_t rec;
  log = logtest_open(dir, LOG_SYNC_ALWAYS, 64 << 10, &rec);
  REQUIRE(log != NULL);
  CHECK_INT(rec.records, 400);
  CHECK_INT(rec.dropped_bytes + rec.damaged_segments, 0);
  CHECK_INT(read_all(log, 0), 400);
  close_log(log);
}

/* A prepared file left by a crash is never a segment: a read-only open leaves it alone
 * and does not count it, a writable open deletes it. A crash just after a roll renamed
 * the file leaves a segment of a header and zeros: recovered as empty, appends go on. */
TEST(crash_leftovers_of_preparation) {
  const char *dir = test_dir("prepcrash");
  log_t *log = new_log(dir, LOG_SYNC_ALWAYS, 4096, 50);
  REQUIRE(log != NULL);
  uint64_t end = log_end_offset(log);
  close_log(log);
  static char junk[40000]; /* a half-written preparation; bytes that are no segment */
  memset(junk, 'x', sizeof junk);
  memcpy(junk, "SLOG", 4);
  write_file(path_in(dir, PREP), junk, sizeof junk);
  long long segs = 0;
  CHECK(sum_log_sizes(dir, &segs));

  char err[256];
  log_recovery_t rec;
  log_opts_t ro = {.dir = dir, .read_only = 1};
  log = log_open(&ro, &rec, err, sizeof err);
  REQUIRE(log != NULL);
  CHECK_INT(log_disk_bytes(log), segs);
  CHECK_INT(rec.records, 50);
  CHECK_INT(read_all(log, 0), 50);
  log_close(log);
  CHECK_INT(file_size(path_in(dir, PREP)), sizeof junk);

  /* The roll after offset `end` renamed the prepared file, wrote its header, and died. */
  char name[48], h[16] = "SLOG";
  snprintf(name, sizeof name, "%020llu.log", (unsigned long long)end);
  static char seg[16 << 10];
  memset(seg, 0, sizeof seg);
  h[4] = 1;
  for (int i = 0; i < 8; i++) h[8 + i] = (char)(end >> (8 * i));
  memcpy(seg, h, sizeof h);
  write_file(path_in(dir, name), seg, sizeof seg);

  log = logtest_open(dir, LOG_SYNC_ALWAYS, 4096, &rec);
  REQUIRE(log != NULL);
  CHECK_INT(file_size(path_in(dir, PREP)), -1);
  CHECK_INT(rec.records, 50);
  CHECK_INT(rec.dropped_bytes + rec.damaged_segments, 0);
  CHECK_INT(file_size(path_in(dir, name)), 16);
  CHECK_INT(append_range(log, 50, 100), 0);
  CHECK_INT(read_all(log, 0), 150);
  close_log(log);
}

/* A log in dir whose preparer can make no file (a directory holds its name): every roll
 * misses. Remove the directory with rmdir(path_in(dir, PREP)) at the end. */
static log_t *open_unpreparable(const char *dir, uint64_t seg_bytes, uint64_t prealloc,
                                uint32_t index_interval) {
  mkdir(dir, 0700);
  CHECK_INT(mkdir(path_in(dir, PREP), 0700), 0);
  log_opts_t o = {.dir = dir, .segment_bytes = seg_bytes, .index_interval = index_interval,
                  .sync = LOG_SYNC_ALWAYS, .preallocate_bytes = prealloc, .loop = &loop};
  return log_open(&o, NULL, NULL, 0);
}

/* The newest segment's name into out (48 bytes), or 0 when there is none. */
static int newest_segment(const char *dir, char *out) {
  int found = 0;
  DIR *d = opendir(dir);
  for (struct dirent *de; d && (de = readdir(d));)
    if (strstr(de->d_name, ".log") && (!found || strcmp(de->d_name, out) > 0)) {
      snprintf(out, 48, "%.47s", de->d_name);
      found = 1;
    }
  if (d) closedir(d);
  return found;
}

/* Zeros pay only for small groups or idle CPU (log.c, zeros_pay). Here no file can be
 * prepared (a directory holds the name), so every roll misses: once the groups' syncs
 * average more than 96 KiB, the writer writes no zeros ahead and the misses leave the
 * preparer in the idle class; small groups bring the zeros back. */
TEST(large_groups_write_no_zeros) {
  const char *dir = test_dir("bigroups");
  log_t *log = open_unpreparable(dir, 1 << 20, 8192, 4096);
  REQUIRE(log != NULL);
  uint64_t next = 0;
  CHECK_INT(append_range(log, next, 10), 0); /* small: zeros ahead */
  next += 10;
  CHECK(!ends_with_record(path_in(dir, SEG0)));
  /* Groups of ~160 KiB: the average passes 96 KiB at the 7th (~1.1 MiB: after the
   * first roll, whose miss moved the preparer to normal priority), then three more
   * rolls miss. */
  int per_group = (int)((160u << 10) / frame_size(1));
  for (int g = 0; g < 28; g++, next += (uint64_t)per_group)
    CHECK_INT(append_range(log, next, per_group), 0);
  CHECK(count_files(dir, "log") >= 4);
  char last[48];
  REQUIRE(newest_segment(dir, last));
  CHECK(ends_with_record(path_in(dir, last))); /* the records reach the end: no zeros */
  CHECK_INT(idle_threads(), 1);                 /* the misses left the preparer idle */
  long long sum = 0;
  CHECK(sum_log_sizes(dir, &sum));
  CHECK_INT(log_disk_bytes(log), sum);

  for (int g = 0; g < 24; g++, next++) CHECK_INT(append_range(log, next, 1), 0);
  CHECK(!ends_with_record(path_in(dir, last))); /* small groups: zeros ahead again */
  CHECK_INT(read_all(log, 0), (long)next);
  close_log(log);
  log_recovery_t rec;
  log = logtest_open(dir, LOG_SYNC_ALWAYS, 1 << 20, &rec);
  REQUIRE(log != NULL);
  CHECK_INT(rec.records, (long)next);
  CHECK_INT(rec.dropped_bytes + rec.damaged_segments, 0);
  close_log(log);
  rmdir(path_in(dir, PREP));
}

/* When no file can be prepared (here a directory holds the name), rolls create their
 * segments as without a preparer. */
TEST(rolls_without_a_prepared_segment) {
  const char *dir = test_dir("noprep");
  log_t *log = open_unpreparable(dir, 16 << 10, 4096, 256);
  REQUIRE(log != NULL);
  CHECK_INT(append_range(log, 0, 300), 0);
  CHECK_INT(log_prepared_rolls(log), 0);
  CHECK_INT(idle_threads(), 0); /* rolls found no file: the preparer left the idle class */
  CHECK(count_files(dir, "log") >= 3);
  long long sum = 0;
  CHECK(sum_log_sizes(dir, &sum));
  CHECK_INT(log_disk_bytes(log), sum);
  CHECK_INT(read_all(log, 0), 300);
  close_log(log);
  log_recovery_t rec;
  log = logtest_open(dir, LOG_SYNC_ALWAYS, 16 << 10, &rec);
  REQUIRE(log != NULL);
  CHECK_INT(rec.records, 300);
  CHECK_INT(rec.dropped_bytes + rec.damaged_segments, 0);
  close_log(log);
  rmdir(path_in(dir, PREP));
}

TEST(recovery_torn_header_and_gaps) {
  /* A segment torn while being created holds no records: its header is rewritten. */
  const char *dir = test_dir("tornhdr");
  mkdir(dir, 0700);
  write_file(path_in(dir, SEG0), "SLO", 3);
  log_recovery_t rec;
  log_t *log = logtest_open(dir, LOG_SYNC_ALWAYS, 0, &rec);
  REQUIRE(log != NULL);
  CHECK_INT(rec.records, 0);
  CHECK_INT(file_size(path_in(dir, SEG0)), 16);
  CHECK_INT(append_range(log, 0, 10), 0);
  close_log(log);

  /* ...also when it follows full segments */
  write_file(path_in(dir, "00000000000000000010.log"), "", 0);
  log = logtest_open(dir, LOG_SYNC_ALWAYS, 0, &rec);
  REQUIRE(log != NULL);
  CHECK_INT(rec.segments, 2);
  CHECK_INT(rec.records, 10);
  CHECK_INT(append_range(log, 10, 2), 0);
  CHECK_INT(file_size(path_in(dir, "00000000000000000010.log")),
            16 + frame_size(10) + frame_size(11));
  CHECK_INT(read_all(log, 0), 12);
  close_log(log);

  char err[512] = "";
  log_opts_t o = {.dir = dir, .loop = &loop};

  /* A bad header in a segment that is not the last is refused: nothing in it can be
   * trusted, not even where it starts. */
  int fd = open(path_in(dir, SEG0), O_RDWR);
  CHECK_INT(pwrite(fd, "XLOG", 4, 0), 4);
  close(fd);
  log = log_open(&o, NULL, err, sizeof err);
  CHECK(log == NULL);
  CHECK(strstr(err, "bad header") != NULL);
  close_log(log);
  fd = open(path_in(dir, SEG0), O_RDWR);
  CHECK_INT(pwrite(fd, "SLOG", 4, 0), 4);
  close(fd);
  log = log_open(&o, &rec, err, sizeof err);
  CHECK(log != NULL);
  CHECK_INT(rec.records, 12);
  close_log(log);
}

/* ---- damage in closed segments ---- */

/* Read everything from 0, collecting the records read and the damage reported. */
static long read_damaged(log_t *log, log_damage_t *dmg, int *ndmg, uint64_t *missing) {
  char err[256];
  log_reader_t *r = log_reader_open(log, 0, err, sizeof err);
  if (!r) return -1;
  long n = 0;
  uint64_t expect = 0;
  *ndmg = 0;
  *missing = UINT64_MAX;
  for (int guard = 0; guard < 10000; guard++) {
    log_record_t rec;
    int rc = log_reader_next(r, &rec);
    if (rc == 0) break;
    if (rc == -EBADMSG) {
      log_reader_damage(r, &dmg[*ndmg < 4 ? *ndmg : 3]);
      (*ndmg)++;
      if (dmg[0].to == UINT64_MAX) break;
      expect = dmg[*ndmg <= 4 ? *ndmg - 1 : 3].to;
      continue;
    }
    if (rc != 1 || !record_matches(&rec, expect)) {
      if (*missing == UINT64_MAX) *missing = expect;
      break;
    }
    expect++;
    n++;
  }
  log_reader_close(r);
  return n;
}

/* Bases of the segment files, ascending; returns how many (at most cap). */
static int segment_bases(const char *dir, uint64_t *out, int cap) {
  int n = 0;
  for (uint64_t b = 0; b < 600 && n < cap; b++) {
    char name[40];
    snprintf(name, sizeof name, "%020llu.log", (unsigned long long)b);
    if (file_size(path_in(dir, name)) > 0) out[n++] = b;
  }
  return n;
}

TEST(damage_in_closed_segments_is_skipped) {
  const char *dir = test_dir("damage");
  log_t *log = logtest_open(dir, LOG_SYNC_OFF, 4096, NULL);
  REQUIRE(log != NULL);
  CHECK_INT(append_range(log, 0, 600), 0);
  close_log(log);
  uint64_t bases[64];
  int nb = segment_bases(dir, bases, 64);
  REQUIRE(nb >= 6);
  char name[40];
  log_damage_t d[4];
  int nd;
  uint64_t missing;
  log_recovery_t rec;

  /* A flipped byte in the value of a record in the middle of a closed segment: exactly
   * that record is reported and skipped, the ones after it are read. */
  uint64_t k = bases[1] + 2;
  uint64_t pos = 16 + frame_size(bases[1]) + frame_size(bases[1] + 1);
  snprintf(name, sizeof name, "%020llu.log", (unsigned long long)bases[1]);
  int fd = open(path_in(dir, name), O_RDWR);
  char c;
  CHECK_INT(pread(fd, &c, 1, (off_t)(pos + FRAME_HDR + 3)), 1);
  c ^= 0x20;
  CHECK_INT(pwrite(fd, &c, 1, (off_t)(pos + FRAME_HDR + 3)), 1);
  close(fd);
  log = logtest_open(dir, LOG_SYNC_OFF, 4096, &rec);
  REQUIRE(log != NULL);
  CHECK_INT(read_damaged(log, d, &nd, &missing), 599);
  CHECK_INT(missing, UINT64_MAX);
  CHECK_INT(nd, 1);
  CHECK_INT(d[0].from, k);
  CHECK_INT(d[0].to, k + 1);
  CHECK_INT(d[0].pos, pos);
  CHECK(!strcmp(d[0].segment, name));
  /* Appends go on, and are read after the damage. */
  CHECK_INT(append_range(log, 600, 5), 0);
  CHECK_INT(read_damaged(log, d, &nd, &missing), 604);
  close_log(log);

  /* A length field destroyed: the next record is found again by its header. */
  uint64_t k2 = bases[3] + 1, pos2 = 16 + frame_size(bases[3]);
  snprintf(name, sizeof name, "%020llu.log", (unsigned long long)bases[3]);
  fd = open(path_in(dir, name), O_RDWR);
  CHECK_INT(pwrite(fd, "\xff\xff\xff\x7f", 4, (off_t)pos2), 4);
  close(fd);
  log = logtest_open(dir, LOG_SYNC_OFF, 4096, &rec);
  REQUIRE(log != NULL);
  CHECK_INT(read_damaged(log, d, &nd, &missing), 603);
  CHECK_INT(nd, 2);
  CHECK(nd == 2 && d[1].from == k2 && d[1].to == k2 + 1);
  close_log(log);

  /* A closed segment cut short (its last two records gone): log_open reports it instead
   * of refusing to start, and readers skip to the next segment. */
  snprintf(name, sizeof name, "%020llu.log", (unsigned long long)bases[4]);
  long long sz = file_size(path_in(dir, name));
  uint64_t last = bases[5] - 1;
  CHECK_INT(truncate(path_in(dir, name), sz - (long long)frame_size(last) - 5), 0);
  log = logtest_open(dir, LOG_SYNC_OFF, 4096, &rec);
  REQUIRE(log != NULL);
  CHECK_INT(rec.damaged_segments, 1);
  CHECK(!strcmp(rec.damaged_segment, name));
  CHECK_INT(read_damaged(log, d, &nd, &missing), 601);
  CHECK_INT(nd, 3);
  CHECK(nd == 3 && d[2].from == last - 1 && d[2].to == bases[5]);
  close_log(log);

  /* A closed segment gone altogether (a gap): the same, its records are reported. */
  snprintf(name, sizeof name, "%020llu.log", (unsigned long long)bases[2]);
  CHECK_INT(unlink(path_in(dir, name)), 0);
  log = logtest_open(dir, LOG_SYNC_OFF, 4096, &rec);
  REQUIRE(log != NULL);
  CHECK_INT(rec.damaged_segments, 2);
  CHECK_INT(read_damaged(log, d, &nd, &missing), 601 - (long)(bases[3] - bases[2]));
  CHECK_INT(nd, 4);
  CHECK(nd == 4 && d[1].from == bases[2] && d[1].to == bases[3]);
  close_log(log);
}

/* ---- time seeks ---- */

TEST(seek_time_finds_first_at_or_after) {
  const char *dir = test_dir("seektime");
  log_t *log = new_log(dir, LOG_SYNC_OFF, 8192, 400);
  REQUIRE(log != NULL);
  char err[256];
  log_reader_t *r = log_reader_open(log, 0, err, sizeof err);
  REQUIRE(r != NULL);
  /* record i has time 1000000 + 1000 i */
  static const struct {
    int64_t t;
    uint64_t want;
  } cases[] = {
      {0, 0},          {1000000, 0},   {1000001, 1},   {1000999, 1},   {1001000, 1},
      {1123456, 124},  {1250000, 250}, {1250001, 251}, {1399000, 399}, {1399001, 400},
      {9999999, 400},  {1042000, 42},  {1300500, 301},
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    CHECK_INT(log_reader_seek_time(r, cases[i].t), 0);
    if (log_reader_offset(r) != cases[i].want)
      printf("  seek %lld\n", (long long)cases[i].t);
    CHECK_INT(log_reader_offset(r), cases[i].want);
    log_record_t rec;
    int rc = log_reader_next(r, &rec);
    if (cases[i].want < 400) {
      CHECK_INT(rc, 1);
      CHECK(rc == 1 && record_matches(&rec, cases[i].want));
    } else {
      CHECK_INT(rc, 0);
    }
  }
  log_reader_close(r);
  close_log(log);
}

/* ---- read-only ---- */

typedef struct snap {
  long long size[8];
  struct timespec mtime[8];
  int n;
} snap_t;

static void snapshot(const char *dir, snap_t *s) {
  static const char *names[] = {SEG0, "00000000000000000000.idx"};
  s->n = 2;
  for (int i = 0; i < s->n; i++) {
    struct stat st;
    memset(&st, 0, sizeof st);
    stat(path_in(dir, names[i]), &st);
    s->size[i] = st.st_size;
    s->mtime[i] = st.st_mtim;
  }
}

static int snap_equal(const snap_t *a, const snap_t *b) {
  for (int i = 0; i < a->n; i++)
    if (a->size[i] != b->size[i] || a->mtime[i].tv_sec != b->mtime[i].tv_sec ||
        a->mtime[i].tv_nsec != b->mtime[i].tv_nsec)
      return 0;
  return 1;
}

TEST(read_only_leaves_files_alone) {
  const char *dir = test_dir("readonly");
  log_t *log = new_log(dir, LOG_SYNC_ALWAYS, 0, 10);
  REQUIRE(log != NULL);
  close_log(log);
  int fd = open(path_in(dir, SEG0), O_WRONLY | O_APPEND);
  CHECK_INT(write(fd, "torn tail!", 10), 10);
  close(fd);
  unlink(path_in(dir, "00000000000000000000.idx")); /* and no index either */
  snap_t before, after;
  snapshot(dir, &before);

  char err[256] = "";
  log_opts_t o = {.dir = dir, .read_only = 1};
  log_recovery_t rec;
  log_t *ro = log_open(&o, &rec, err, sizeof err);
  REQUIRE(ro != NULL);
  CHECK_INT(rec.records, 10);
  CHECK_INT(rec.dropped_bytes, 10); /* reported, left in place */
  CHECK_INT(log_end_offset(ro), 10);
  CHECK_INT(read_all(ro, 0), 10);
  CHECK_INT(read_all(ro, 7), 3);
  CHECK_INT(log_append(ro, NULL, 0, NULL, NULL), -EINVAL);
  log_close(ro);
  snapshot(dir, &after);
  CHECK(snap_equal(&before, &after));
  CHECK_INT(file_size(path_in(dir, "00000000000000000000.idx")), -1);

  /* A read-only reader follows a log another writer is appending to. */
  log = logtest_open(dir, LOG_SYNC_ALWAYS, 0, NULL);
  REQUIRE(log != NULL);
  ro = log_open(&o, &rec, err, sizeof err);
  CHECK(ro != NULL);
  if (!ro) {
    close_log(log);
    return;
  }
  log_reader_t *r = log_reader_open(ro, 0, err, sizeof err);
  log_record_t x;
  long n = 0;
  while (log_reader_next(r, &x) == 1) n += record_matches(&x, (uint64_t)n);
  CHECK_INT(n, 10);
  CHECK_INT(append_range(log, 10, 5), 0);
  while (log_reader_next(r, &x) == 1) n += record_matches(&x, (uint64_t)n);
  CHECK_INT(n, 15);
  CHECK_INT(log_end_offset(ro), 15);
  log_reader_close(r);
  log_close(ro);
  close_log(log);

  /* a missing directory is not created in read-only mode */
  o.dir = path_in(dir, "nope");
  CHECK(log_open(&o, NULL, err, sizeof err) == NULL);
  CHECK_INT(file_size(o.dir), -1);
}

/* ---- admission ---- */

TEST(backpressure_and_bad_appends) {
  const char *dir = test_dir("pressure");
  char err[256];
  log_opts_t o = {.dir = dir, .loop = &loop, .max_pending_bytes = 1};
  log_t *log = log_open(&o, NULL, err, sizeof err);
  REQUIRE(log != NULL);
  ackbox_t box = {.order_ok = 1};
  req_t q1 = {.box = &box, .seq = 0}, q2 = {.box = &box, .seq = 1};
  char big[5000];
  memset(big, 'x', sizeof big);
  log_entry_t e = {.time_us = 1, .value = big, .value_len = sizeof big};
  CHECK_INT(log_append(log, &e, 1, on_ack, &q1), 0); /* alone: allowed however big */
  CHECK(log_pending_bytes(log) >= sizeof big);
  CHECK_INT(log_append(log, &e, 1, on_ack, &q2), -EAGAIN);
  CHECK(wait_acks(&box, 1));
  CHECK_INT(q1.status, 0);
  CHECK_INT(q2.called, 0);
  CHECK_INT(log_pending_bytes(log), 0);
  CHECK_INT(log_append(log, &e, 1, on_ack, &q2), 0);
  CHECK(wait_acks(&box, 2));
  CHECK_INT(q2.offset, 1);
  CHECK_INT(box.order_ok, 1);

  log_entry_t empty = {.time_us = 1};
  CHECK_INT(log_append(log, &e, 0, on_ack, &q1), -EINVAL);
  CHECK_INT(log_append(log, &empty, 1, on_ack, &q1), -EINVAL);
  log_entry_t huge = {.time_us = 1, .value = big, .value_len = (16u << 20) + 1};
  CHECK_INT(log_append(log, &huge, 1, on_ack, &q1), -EINVAL);
  CHECK_INT(box.calls, 2);
  close_log(log);
}

/* ---- sync policies ---- */

static int synced_at_least(void *ctx) { return atomic_load(&synced_records) >= *(uint64_t *)ctx; }

TEST(sync_policies) {
  const char *dir = test_dir("interval");
  char err[256];
  atomic_store(&syncs, 0);
  atomic_store(&synced_records, 0);
  log_opts_t o = {.dir = dir, .loop = &loop, .sync = LOG_SYNC_INTERVAL,
                  .sync_interval_ms = 30};
  log_t *log = log_open(&o, NULL, err, sizeof err);
  REQUIRE(log != NULL);
  log_set_sync_observer(log, on_sync, NULL);
  CHECK_INT(append_range(log, 0, 20), 0);
  uint64_t want = 20;
  CHECK(run_until(synced_at_least, &want, 5000)); /* the timer syncs what was acked */
  CHECK_INT(atomic_load(&synced_records), 20);
  close_log(log);

  dir = test_dir("off");
  atomic_store(&syncs, 0);
  o.dir = dir;
  o.sync = LOG_SYNC_OFF;
  log = log_open(&o, NULL, err, sizeof err);
  REQUIRE(log != NULL);
  log_set_sync_observer(log, on_sync, NULL);
  CHECK_INT(append_range(log, 0, 20), 0);
  close_log(log);
  CHECK_INT(atomic_load(&syncs), 0);
}

/* The writer is woken once per turn of the loop: the appends of one turn share one
 * group and one fdatasync, and none is written before the loop turns. A group past
 * 1 MiB wakes the writer at once, without a turn. */
typedef struct count {
  int acked, want;
} count_t;
static void count_ack(void *ud, int status, uint64_t first) {
  (void)first;
  count_t *c = ud;
  if (status == 0) c->acked++;
}
static int counted(void *ctx) {
  count_t *c = ctx;
  return c->acked >= c->want;
}

/* A durable log in test dir name whose fdatasyncs obs sees, the counters zeroed. */
static log_t *observed_log(const char *name, log_sync_observer_fn obs) {
  log_t *log = logtest_open(test_dir(name), LOG_SYNC_ALWAYS, 1 << 20, NULL);
  atomic_store(&syncs, 0);
  atomic_store(&synced_records, 0);
  if (log) log_set_sync_observer(log, obs, NULL);
  return log;
}

TEST(appends_of_one_turn_share_a_group) {
  log_t *log = observed_log("oneturn", on_sync);
  REQUIRE(log != NULL);
  /* One group first, then time for the writer to go back to waiting. */
  CHECK_INT(append_range(log, 0, 1), 0);
  usleep(100 * 1000);
  atomic_store(&syncs, 0);
  atomic_store(&synced_records, 0);
  char key[32], val[400];
  count_t c = {0, 50};
  for (int k = 1; k <= 50; k++) {
    log_entry_t e;
    make_entry((uint64_t)k, &e, key, val);
    CHECK_INT(log_append(log, &e, 1, count_ack, &c), 0);
  }
  usleep(200 * 1000); /* the loop has not turned: the writer must not have been woken */
  CHECK_INT(atomic_load(&syncs), 0);
  CHECK(run_until(counted, &c, 10000));
  CHECK_INT(atomic_load(&syncs), 1);
  CHECK_INT(atomic_load(&synced_records), 50);
  CHECK_INT(read_all(log, 0), 51);

  /* 300 appends of 4 KiB: the group passes 1 MiB, the writer starts without a turn. */
  static char big[4096];
  memset(big, 'x', sizeof big);
  atomic_store(&syncs, 0);
  c = (count_t){0, 300};
  for (int k = 0; k < 300; k++) {
    log_entry_t e = {.key = "k", .key_len = 1, .value = big, .value_len = sizeof big,
                     .time_us = 1000000, .event_us = 1000000};
    CHECK_INT(log_append(log, &e, 1, count_ack, &c), 0);
  }
  for (int i = 0; i < 200 && !atomic_load(&syncs); i++) usleep(10 * 1000);
  CHECK(atomic_load(&syncs) >= 1);
  CHECK(run_until(counted, &c, 10000));
  CHECK_INT(log_end_offset(log), 351);
  close_log(log);
}

/* The observer of the first group holds the writer (as a slow fdatasync would) until the
 * test has appended the next requests. */
static atomic_int held_in, held_release;
static void on_sync_hold(void *ud, uint64_t us, uint64_t records) {
  on_sync(ud, us, records);
  if (atomic_fetch_add(&held_in, 1) == 0)
    while (!atomic_load(&held_release)) usleep(1000);
}

TEST(busy_writer_waits_for_the_turn) {
  atomic_store(&held_in, 0);
  atomic_store(&held_release, 0);
  log_t *log = observed_log("turnend", on_sync_hold);
  REQUIRE(log != NULL);
  char key[32], val[400];
  log_entry_t e;
  count_t first = {0, 1};
  make_entry(0, &e, key, val);
  CHECK_INT(log_append(log, &e, 1, count_ack, &first), 0);
  uv_run(&loop, UV_RUN_NOWAIT); /* the turn ends: the writer takes it */
  for (int i = 0; i < 1000 && !atomic_load(&held_in); i++) usleep(1000);
  REQUIRE(atomic_load(&held_in) == 1);
  /* Half a turn: the writer, done with the first group, must not take these alone. */
  count_t c = {0, 20};
  for (int k = 1; k <= 20; k++) {
    make_entry((uint64_t)k, &e, key, val);
    CHECK_INT(log_append(log, &e, 1, count_ack, &c), 0);
  }
  atomic_store(&held_release, 1);
  usleep(200 * 1000);
  CHECK_INT(atomic_load(&syncs), 1);
  CHECK_INT(atomic_load(&synced_records), 1);
  CHECK(run_until(counted, &c, 10000));
  CHECK_INT(atomic_load(&syncs), 2);
  CHECK_INT(atomic_load(&synced_records), 21);
  CHECK_INT(read_all(log, 0), 21);
  close_log(log);
}

/* ---- the commit window ---- */

#define WINDOW_US 2000000 /* long, so that the early ends below are plain to see */

static int quiet_answer;
static int quiet_probe(void *ud) {
  (void)ud;
  return quiet_answer;
}

/* A durable log with a commit window whose first sync holds the writer (on_sync_hold),
 * and whose quiet probe answers quiet. */
static log_t *window_log(const char *name, int quiet) {
  quiet_answer = quiet;
  atomic_store(&held_in, 0);
  atomic_store(&held_release, 0);
  atomic_store(&syncs, 0);
  atomic_store(&synced_records, 0);
  char err[256] = "";
  log_opts_t o = {.dir = test_dir(name), .segment_bytes = 8 << 20, .index_interval = 256,
                  .sync = LOG_SYNC_ALWAYS, .loop = &loop, .commit_window_us = WINDOW_US};
  log_t *log = log_open(&o, NULL, err, sizeof err);
  if (!log) {
    printf("  log_open: %s\n", err);
    return NULL;
  }
  log_set_sync_observer(log, on_sync_hold, NULL);
  log_set_quiet_probe(log, quiet_probe, NULL);
  return log;
}

/* Record 0 makes a group the writer takes and is held in; records 1..n, appended in a
 * turn of their own meanwhile, begin the next group while the writer is busy. Returns
 * the time before their first append; the writer is still held. */
static int64_t busy_next_group(log_t *log, count_t *first, count_t *c, int n) {
  char key[32], val[400];
  log_entry_t e;
  make_entry(0, &e, key, val);
  CHECK_INT(log_append(log, &e, 1, count_ack, first), 0);
  uv_run(&loop, UV_RUN_NOWAIT);
  for (int i = 0; i < 5000 && !atomic_load(&held_in); i++) usleep(1000);
  CHECK_INT(atomic_load(&held_in), 1);
  int64_t t0 = clock_mono_us();
  for (int k = 1; k <= n; k++) {
    make_entry((uint64_t)k, &e, key, val);
    CHECK_INT(log_append(log, &e, 1, count_ack, c), 0);
  }
  uv_run(&loop, UV_RUN_NOWAIT);
  return t0;
}

TEST(busy_writer_lets_the_group_fill) {
  log_t *log = window_log("window", 0);
  REQUIRE(log != NULL);
  count_t first = {0, 1}, c = {0, 30};
  int64_t t0 = busy_next_group(log, &first, &c, 10);
  atomic_store(&held_release, 1);
  /* Turns within the window: their appends join the group that waits. */
  char key[32], val[400];
  for (int k = 11; k <= 30; k++) {
    log_entry_t e;
    make_entry((uint64_t)k, &e, key, val);
    CHECK_INT(log_append(log, &e, 1, count_ack, &c), 0);
    uv_run(&loop, UV_RUN_NOWAIT);
    usleep(2000);
  }
  CHECK(run_until(counted, &c, 30000));
  int64_t waited = clock_mono_us() - t0;
  CHECK_INT(first.acked, 1);
  CHECK_INT(atomic_load(&syncs), 2);
  CHECK_INT(atomic_load(&synced_records), 31);
  CHECK(waited >= WINDOW_US); /* not before the window ended */

  /* The writer went idle: a new group is taken at once, with no window. */
  c = (count_t){0, 1};
  int64_t t1 = clock_mono_us();
  log_entry_t e;
  make_entry(31, &e, key, val);
  CHECK_INT(log_append(log, &e, 1, count_ack, &c), 0);
  CHECK(run_until(counted, &c, 30000));
  CHECK(clock_mono_us() - t1 < WINDOW_US / 2);
  CHECK_INT(read_all(log, 0), 32);
  close_log(log);
}

TEST(commit_window_ends_early) {
  /* The quiet probe: no more requests can come, so the writer stops waiting. */
  log_t *log = window_log("quiet", 1);
  REQUIRE(log != NULL);
  count_t first = {0, 1}, c = {0, 5};
  int64_t t0 = busy_next_group(log, &first, &c, 5);
  atomic_store(&held_release, 1);
  CHECK(run_until(counted, &c, 30000));
  CHECK(clock_mono_us() - t0 < WINDOW_US / 2);
  CHECK_INT(atomic_load(&syncs), 2);
  /* Every connection waited for that group: the next one fills too, although the writer
   * was idle when it began, until the probe says no more requests can come. */
  quiet_answer = 0;
  count_t next = {0, 1};
  char key[32], val[400];
  log_entry_t one;
  make_entry(6, &one, key, val);
  t0 = clock_mono_us();
  CHECK_INT(log_append(log, &one, 1, count_ack, &next), 0);
  for (int i = 0; i < 30; i++) {
    uv_run(&loop, UV_RUN_NOWAIT);
    usleep(10 * 1000);
  }
  CHECK_INT(next.acked, 0);
  CHECK_INT(atomic_load(&syncs), 2);
  quiet_answer = 1;
  CHECK(run_until(counted, &next, 30000));
  CHECK(clock_mono_us() - t0 < WINDOW_US / 2);
  CHECK_INT(atomic_load(&syncs), 3);
  close_log(log);

  /* A group past 1 MiB does not wait either. */
  log = window_log("windowbig", 0);
  REQUIRE(log != NULL);
  first = (count_t){0, 1};
  c = (count_t){0, 1};
  t0 = busy_next_group(log, &first, &c, 1);
  static char big[4096];
  memset(big, 'x', sizeof big);
  count_t b = {0, 300};
  for (int k = 0; k < 300; k++) {
    log_entry_t e = {.key = "k", .key_len = 1, .value = big, .value_len = sizeof big,
                     .time_us = 1000000, .event_us = 1000000};
    CHECK_INT(log_append(log, &e, 1, count_ack, &b), 0);
  }
  atomic_store(&held_release, 1);
  CHECK(run_until(counted, &b, 30000));
  CHECK(clock_mono_us() - t0 < WINDOW_US / 2);
  CHECK_INT(c.acked, 1);
  close_log(log);

  /* Closing does not wait for the window: the group is written and acknowledged. */
  log = window_log("windowclose", 0);
  REQUIRE(log != NULL);
  first = (count_t){0, 1};
  c = (count_t){0, 3};
  t0 = busy_next_group(log, &first, &c, 3);
  atomic_store(&held_release, 1);
  usleep(50 * 1000); /* the writer is in the window now */
  close_log(log);
  CHECK_INT(c.acked, 3);
  CHECK(clock_mono_us() - t0 < WINDOW_US / 2);
  CHECK_INT(atomic_load(&synced_records), 4);
}

/* ---- close ---- */

TEST(close_acks_pending) {
  const char *dir = test_dir("close");
  log_t *log = logtest_open(dir, LOG_SYNC_ALWAYS, 0, NULL);
  REQUIRE(log != NULL);
  ackbox_t box = {.order_ok = 1};
  req_t q[100];
  for (int k = 0; k < 100; k++) {
    char key[32], val[400];
    log_entry_t e;
    make_entry((uint64_t)k, &e, key, val);
    q[k] = (req_t){.box = &box, .seq = k};
    CHECK_INT(log_append(log, &e, 1, on_ack, &q[k]), 0);
  }
  log_close(log); /* without running the loop: close itself delivers */
  CHECK_INT(box.calls, 100);
  CHECK_INT(box.errors, 0);
  CHECK_INT(box.order_ok, 1);
  CHECK_INT(q[99].offset, 99);
  uv_run(&loop, UV_RUN_DEFAULT);
  log_recovery_t rec;
  log = logtest_open(dir, LOG_SYNC_ALWAYS, 0, &rec);
  CHECK(log != NULL);
  CHECK_INT(rec.records, 100);
  CHECK_INT(read_all(log, 0), 100);
  close_log(log);
}

/* ---- ENOSPC on a tiny tmpfs ---- */

static int fill(const char *p) { /* write until the filesystem is full */
  int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0600);
  char b[4096];
  memset(b, 'F', sizeof b);
  while (write(fd, b, sizeof b) > 0) {
  }
  close(fd);
  return 0;
}

/* A tmpfs of `size` mounted on a fresh test dir, and the paths of a log dir and a filler
 * file in it (600 bytes each, OUT). Returns the mount point, or NULL after saying the
 * test is skipped when it cannot mount one. */
static const char *tiny_fs(const char *name, const char *size, char *logdir, char *filler) {
  const char *dir = test_dir(name);
  char opt[32];
  snprintf(opt, sizeof opt, "size=%s", size);
  mkdir(dir, 0700);
  if (mount("tmpfs", dir, "tmpfs", 0, opt) != 0) {
    printf("  skip: cannot mount a tmpfs (%s)\n", strerror(errno));
    rmdir(dir);
    return NULL;
  }
  snprintf(logdir, 600, "%s/log", dir);
  snprintf(filler, 600, "%s/filler", dir);
  return dir;
}

/* Ten records in a log on a 256 KiB tmpfs (tiny_fs), which is then filled but for two
 * pages. NULL when the test is skipped (*dir NULL) or the log did not open. */
static log_t *log_on_full_fs(const char *name, const char **dir, char *logdir, char *filler) {
  *dir = tiny_fs(name, "256k", logdir, filler);
  if (!*dir) return NULL;
  log_t *log = logtest_open(logdir, LOG_SYNC_ALWAYS, 0, NULL);
  CHECK(log != NULL);
  if (!log) return NULL;
  CHECK_INT(append_range(log, 0, 10), 0);
  fill(filler);
  CHECK_INT(truncate(filler, file_size(filler) - 8192), 0); /* two pages left */
  return log;
}

/* On log_on_full_fs's log: appending the n records e fails with ENOSPC and leaves the
 * log as it was, not failed for good; once filler is gone the same append succeeds by
 * itself, at offset 10. */
static void enospc_then_resume(log_t *log, const char *logdir, const char *filler,
                               const log_entry_t *e, size_t n) {
  const char *seg = path_in(logdir, SEG0);
  long long before = file_size(seg);
  ackbox_t box = {.order_ok = 1};
  req_t q1 = {.box = &box, .seq = 0}, q2 = {.box = &box, .seq = 1};
  CHECK_INT(log_append(log, e, n, on_ack, &q1), 0);
  CHECK(wait_acks(&box, 1));
  CHECK_INT(q1.status, -ENOSPC);
  CHECK_INT(file_size(seg), before); /* no partial record left behind */
  CHECK_INT(log_error(log), 0);      /* not sticky */
  CHECK_INT(log_end_offset(log), 10);
  CHECK_INT(log_pending_bytes(log), 0);
  unlink(filler); /* space returns: the log resumes by itself */
  CHECK_INT(log_append(log, e, n, on_ack, &q2), 0);
  CHECK(wait_acks(&box, 2));
  CHECK_INT(q2.status, 0);
  CHECK_INT(q2.offset, 10);
}

TEST(enospc_fails_group_and_resumes) {
  char logdir[600], filler[600];
  const char *dir;
  log_t *log = log_on_full_fs("enospc", &dir, logdir, filler);
  if (!dir) return;
  if (!log) goto out;
  const char *seg = path_in(logdir, SEG0);
  long long before = file_size(seg);
  static char big[64 << 10];
  memset(big, 'B', sizeof big);
  log_entry_t e = {.time_us = 5, .value = big, .value_len = sizeof big};
  enospc_then_resume(log, logdir, filler, &e, 1);
  CHECK_INT(file_size(seg), before + FRAME_HDR + (long long)sizeof big);
  char err[256];
  log_reader_t *r = log_reader_open(log, 0, err, sizeof err);
  log_record_t rec;
  for (uint64_t i = 0; i < 10; i++)
    CHECK(log_reader_next(r, &rec) == 1 && record_matches(&rec, i));
  CHECK_INT(log_reader_next(r, &rec), 1);
  CHECK_INT(rec.offset, 10);
  CHECK_INT(rec.value_len, sizeof big);
  CHECK_INT(log_reader_next(r, &rec), 0);
  log_reader_close(r);
  close_log(log);
  log_recovery_t rr;
  log = logtest_open(logdir, LOG_SYNC_ALWAYS, 0, &rr);
  CHECK(log != NULL);
  CHECK_INT(rr.dropped_bytes, 0);
  CHECK_INT(rr.records, 11);
  close_log(log);
out:
  umount2(dir, MNT_DETACH);
}

/* Entries of the index and the event-time runs that records of a failed group closed
 * go with those records: the group's retry, at the same offsets, adds them once. (They
 * gather over groups before they are written, so a failed group must take its own back
 * out of what gathered.) */
static int rising_entries(const char *path, size_t size, size_t from_off, size_t to_off,
                          int strict, size_t *n) {
  int fd = open(path, O_RDONLY);
  if (fd < 0) return 0;
  unsigned char e[64];
  int ok = 1;
  long long prev = -1;
  *n = 0;
  while (read(fd, e, size) == (ssize_t)size) {
    long long from = e[from_off] | e[from_off + 1] << 8 | e[from_off + 2] << 16 |
                     (long long)e[from_off + 3] << 24;
    long long to = e[to_off] | e[to_off + 1] << 8 | e[to_off + 2] << 16 |
                   (long long)e[to_off + 3] << 24;
    if (strict ? from <= prev : from < prev) ok = 0;
    prev = to;
    (*n)++;
  }
  close(fd);
  return ok;
}

TEST(failed_group_leaves_no_index_entries) {
  char logdir[600], filler[600];
  const char *dir;
  log_t *log = log_on_full_fs("enospc-idx", &dir, logdir, filler);
  if (!dir) return;
  if (!log) goto out;
  static char big[64 << 10];
  memset(big, 'B', sizeof big);
  /* the second record lies past index_interval: it gets an index entry and closes a run */
  log_entry_t e[2] = {
      {.time_us = 5, .event_us = 7000000, .value = big, .value_len = 8192},
      {.time_us = 6, .event_us = 7000000, .value = big, .value_len = sizeof big}};
  enospc_then_resume(log, logdir, filler, e, 2);
  close_log(log);
  size_t n = 0;
  /* index entries (u32 offset - base, ...): offsets rising */
  CHECK(rising_entries(path_in(logdir, "00000000000000000000.idx"), 16, 0, 0, 1, &n));
  CHECK(n >= 2);
  /* runs (u32 rel_from, u32 rel_to, ...): each starts at or after the last one's end */
  CHECK(rising_entries(path_in(logdir, "00000000000000000000.evt"), 32, 0, 4, 0, &n));
  CHECK(n >= 1);
out:
  umount2(dir, MNT_DETACH);
}

/* On a nearly full file system the preparer declines (it would leave less than a
 * segment free) instead of taking the space appends need, and rolls create their
 * segments as without it; once space returns it prepares one by itself. */
TEST(preparer_on_a_nearly_full_disk) {
  char logdir[600], filler[600];
  const char *dir = tiny_fs("prepfull", "1m", logdir, filler);
  if (!dir) return;
  fill(filler);
  /* 200 KiB left: room for the records below, not for them and a prepared segment. */
  CHECK_INT(truncate(filler, file_size(filler) - (200 << 10)), 0);
  log_opts_t o = {.dir = logdir, .segment_bytes = 128 << 10, .index_interval = 256,
                  .sync = LOG_SYNC_ALWAYS, .preallocate_bytes = 8192, .loop = &loop};
  log_t *log = log_open(&o, NULL, NULL, 0);
  CHECK(log != NULL);
  if (!log) goto out;
  CHECK(!run_until(prepared_ready, log, 500)); /* it declined, taking no space */
  CHECK_INT(append_range(log, 0, 800), 0); /* one roll: ~650 records fill 128 KiB */
  CHECK(count_files(logdir, "log") == 2);
  CHECK_INT(log_prepared_rolls(log), 0);
  CHECK_INT(log_error(log), 0);
  CHECK_INT(file_size(path_in(logdir, PREP)), -1);
  unlink(filler); /* space returns: a prepared segment follows within a retry */
  CHECK(run_until(prepared_ready, log, 5000));
  CHECK_INT(append_range(log, 800, 800), 0);
  CHECK_INT(log_prepared_rolls(log), 1);
  CHECK_INT(read_all(log, 0), 1600);
  close_log(log);
out:
  umount2(dir, MNT_DETACH);
}

/* ---- page-cache drop-behind ---- */

/* Pages of file p in the page cache: in [0, split) and in [split, end of file). */
static int cached_pages(const char *p, long long split, long long *below, long long *above) {
  *below = *above = 0;
  int fd = open(p, O_RDONLY);
  if (fd < 0) return -1;
  long long size = file_size(p), page = sysconf(_SC_PAGESIZE);
  void *m = size > 0 ? mmap(NULL, (size_t)size, PROT_READ, MAP_SHARED, fd, 0) : MAP_FAILED;
  close(fd);
  if (m == MAP_FAILED) return -1;
  size_t n = (size_t)((size + page - 1) / page);
  unsigned char *vec = malloc(n);
  int rc = mincore(m, (size_t)size, vec);
  for (size_t i = 0; rc == 0 && i < n; i++)
    if (vec[i] & 1) *((long long)i * page < split ? below : above) += 1;
  free(vec);
  munmap(m, (size_t)size);
  return rc;
}

/* A drop-behind reader leaves the pages it has passed out of the page cache: all of
 * every segment it left, and the active one's up to keep (plus the step) behind it. A
 * reader opened later reads every record back from disk. */
TEST(drop_behind_reader_uncaches_what_it_passed) {
  const char *dir = test_dir("dropbehind");
  mkdir(dir, 0700);
  struct statfs fs;
  if (statfs(dir, &fs) == 0 && fs.f_type == 0x01021994 /* TMPFS_MAGIC */) {
    printf("  skipped: %s is on tmpfs, whose pages cannot leave the cache\n", dir);
    return;
  }
  const uint64_t seg = 2u << 20, keep = 256u << 10;
  log_t *log = logtest_open(dir, LOG_SYNC_ALWAYS, seg, NULL);
  REQUIRE(log != NULL);
  const int n = 30000;
  for (int k = 0; k < n; k += 5000) CHECK_INT(append_range(log, (uint64_t)k, 5000), 0);
  int segs = count_files(dir, "log");
  CHECK(segs >= 3);
  /* Written just now: the last segment is in the cache before anyone reads it. */
  char names[64][40];
  int nn = 0;
  DIR *dp = opendir(dir);
  for (struct dirent *de; dp && (de = readdir(dp)) && nn < 64;)
    if (strlen(de->d_name) == 24 && !strcmp(de->d_name + 20, ".log"))
      memcpy(names[nn++], de->d_name, 25);
  if (dp) closedir(dp);
  qsort(names, (size_t)nn, sizeof names[0], (int (*)(const void *, const void *))strcmp);
  REQUIRE(nn == segs);
  const char *last = path_in(dir, names[nn - 1]);
  long long below, above, last_size = file_size(last);
  CHECK_INT(cached_pages(last, 0, &below, &above), 0);
  CHECK(above >= last_size / 4096 / 2);

  char err[256];
  log_reader_t *r = log_reader_open(log, 0, err, sizeof err);
  REQUIRE(r != NULL);
  log_reader_drop_behind(r, keep);
  CHECK_INT(read_each(r, 0, matches, NULL), n);
  log_reader_close(r);
  for (int i = 0; i + 1 < nn; i++) {
    CHECK_INT(cached_pages(path_in(dir, names[i]), 0, &below, &above), 0);
    if (above) FAILF("%s: %lld pages still cached after the reader left it", names[i], above);
  }
  /* The active segment: nothing cached more than keep + 1 MiB + a page behind its end. */
  long long split = last_size - (long long)keep - (1 << 20) - 4096;
  CHECK_INT(cached_pages(last, split, &below, &above), 0);
  if (split > 0 && below) FAILF("%lld pages cached more than keep behind the reader", below);
  CHECK(above > 0); /* the last keep bytes stay */
  CHECK_INT(read_all(log, 0), n);
  close_log(log);
}

int main(void) {
  if (logtest_init("test-log")) return 1;
  RUN(group_commit_orders_acks);
  RUN(reader_crosses_segments);
  RUN(readers_leave_access_time_alone);
  RUN(peek_key_names_coming_records);
  RUN(reopen_continues_offsets);
  RUN(first_segment_above_zero);
  RUN(recovery_truncates_bad_tail);
  RUN(preallocated_segments);
  RUN(large_groups_write_no_zeros);
  RUN(roll_takes_the_prepared_segment);
  RUN(crash_leftovers_of_preparation);
  RUN(rolls_without_a_prepared_segment);
  RUN(recovery_torn_header_and_gaps);
  RUN(damage_in_closed_segments_is_skipped);
  RUN(seek_time_finds_first_at_or_after);
  RUN(read_only_leaves_files_alone);
  RUN(backpressure_and_bad_appends);
  RUN(sync_policies);
  RUN(appends_of_one_turn_share_a_group);
  RUN(busy_writer_waits_for_the_turn);
  RUN(busy_writer_lets_the_group_fill);
  RUN(commit_window_ends_early);
  RUN(close_acks_pending);
  RUN(enospc_fails_group_and_resumes);
  RUN(failed_group_leaves_no_index_entries);
  RUN(preparer_on_a_nearly_full_disk);
  RUN(drop_behind_reader_uncaches_what_it_passed);
  return logtest_finish("test_log");
}
