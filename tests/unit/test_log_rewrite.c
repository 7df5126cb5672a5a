/* test_log_rewrite: taking data out of the durable log — log_retain and log_rewrite —
 * driven through a real libuv loop in a temp dir.
 *
 * What a user relies on: retention deletes only whole closed segments whose every record
 * is older than the cut-off, keeps the log contiguous and reopenable, and readers carry
 * on at the new start; erasure leaves no byte of a forgotten user's records in any file
 * of the log directory while every other record stays intact, offsets stay dense, and
 * appends keep being acknowledged while it runs; a crash's leftovers are cleaned up. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <unistd.h>

#include "test.h"
#include "logtest.h"
#include "util/buf.h"

#define FRAME_HDR 28
#define TOMBSTONE "{\"type\":\"forgotten\"}"

/* ---- helpers ---- */

/* Call fn(path, name, ctx) for each file of dir whose name ends with suffix (dot files
 * aside). Returns 0, or -1 if dir cannot be read. */
static int each_file(const char *dir, const char *suffix,
                     void (*fn)(const char *path, const char *name, void *ctx), void *ctx) {
  DIR *d = opendir(dir);
  if (!d) return -1;
  struct dirent *de;
  size_t sl = strlen(suffix);
  while ((de = readdir(d))) {
    size_t l = strlen(de->d_name);
    if (de->d_name[0] != '.' && l > sl && strcmp(de->d_name + l - sl, suffix) == 0)
      fn(path_in(dir, de->d_name), de->d_name, ctx);
  }
  closedir(d);
  return 0;
}

/* The bases of a log directory's segments, ascending. */
typedef struct seglist {
  int n;
  uint64_t base[256];
} seglist_t;

static void add_base(const char *path, const char *name, void *ctx) {
  seglist_t *l = ctx;
  if (strlen(name) == 24 && l->n < (int)(sizeof l->base / sizeof l->base[0]))
    l->base[l->n++] = strtoull(name, NULL, 10);
}

static seglist_t list_segments(const char *dir) {
  seglist_t l = {0};
  each_file(dir, ".log", add_base, &l);
  for (int i = 1; i < l.n; i++)
    for (int k = i; k > 0 && l.base[k - 1] > l.base[k]; k--) {
      uint64_t t = l.base[k];
      l.base[k] = l.base[k - 1];
      l.base[k - 1] = t;
    }
  return l;
}

static void count_one(const char *path, const char *name, void *ctx) { ++*(long long *)ctx; }

static void add_size(const char *path, const char *name, void *ctx) {
  *(long long *)ctx += file_size(path);
}

/* Files in dir whose name ends with suffix. */
static int count_suffix(const char *dir, const char *suffix) {
  long long n = 0;
  return each_file(dir, suffix, count_one, &n) ? -1 : (int)n;
}

/* Sum of the sizes of the dir's files ending with suffix. */
static long long sum_sizes(const char *dir, const char *suffix) {
  long long sum = 0;
  return each_file(dir, suffix, add_size, &sum) ? -1 : sum;
}

typedef struct needle {
  const char *s;
  long hits;
} needle_t;

static void count_needle(const char *path, const char *name, void *ctx) {
  needle_t *nd = ctx;
  FILE *f = fopen(path, "rb");
  if (!f) return;
  buf_t b = BUF_INIT;
  char chunk[65536];
  size_t n, nl = strlen(nd->s);
  while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) buf_append(&b, chunk, n);
  fclose(f);
  for (const char *p = b.data; p && (size_t)(p - b.data) + nl <= b.len;) {
    const char *q = memmem(p, b.len - (size_t)(p - b.data), nd->s, nl);
    if (!q) break;
    nd->hits++;
    p = q + 1;
  }
  buf_free(&b);
}

/* Occurrences of needle in the raw bytes of every file of dir. */
static long count_in_files(const char *dir, const char *needle) {
  needle_t nd = {needle, 0};
  return each_file(dir, "", count_needle, &nd) ? -1 : nd.hits;
}

/* Deterministic content of the record at offset i: every third record is alice's (key
 * and value name her), the others bob's or carol's, except that offsets in
 * [dave_from, dave_to) are all dave's; times rise 1 ms per offset. */
static uint64_t dave_from = UINT64_MAX, dave_to;

static int is_dave(uint64_t i) { return i >= dave_from && i < dave_to; }
static int is_alice(uint64_t i) { return !is_dave(i) && i % 3 == 0; }

static void make_entry(uint64_t i, log_entry_t *e, char *key, char *val) {
  const char *user = is_dave(i) ? "dave" : is_alice(i) ? "alice" : i % 3 == 1 ? "bob" : "carol";
  int klen = snprintf(key, 32, "%s", user);
  int vlen = snprintf(val, 80, "{\"userId\":\"%s\",\"n\":%llu}", user, (unsigned long long)i);
  entry_fill(e, i, key, klen, val, vlen, 200);
}

static int is_tombstone(const log_record_t *r, uint64_t i) {
  return r->offset == i && r->time_us == 1000000 + (int64_t)i * 1000 && r->key_len == 0 &&
         r->value_len == strlen(TOMBSTONE) && memcmp(r->value, TOMBSTONE, r->value_len) == 0;
}

static atomic_int acks, ack_errors;

static void on_ack(void *ud, int status, uint64_t first) {
  (void)ud, (void)first;
  if (status) atomic_fetch_add(&ack_errors, 1);
  atomic_fetch_add(&acks, 1);
}

static int acks_reached(void *ctx) { return atomic_load(&acks) >= *(int *)ctx; }

/* Queue records [from, from+n), one append each; returns 0 or the first refusal. */
static int append_queue(log_t *log, uint64_t from, int n) {
  for (int k = 0; k < n; k++) {
    char key[32], val[300];
    log_entry_t e;
    make_entry(from + (uint64_t)k, &e, key, val);
    int rc = log_append(log, &e, 1, on_ack, NULL);
    if (rc) return rc;
  }
  return 0;
}

/* Append records [from, from+n) and wait for their acks; returns 0 or -1. */
static int append_range(log_t *log, uint64_t from, int n) {
  atomic_store(&acks, 0);
  atomic_store(&ack_errors, 0);
  if (append_queue(log, from, n)) return -1;
  return run_until(acks_reached, &n, 10000) && atomic_load(&ack_errors) == 0 ? 0 : -1;
}

static log_t *open_log(const char *dir, uint64_t seg_bytes, log_recovery_t *rec) {
  return logtest_open(dir, LOG_SYNC_OFF, seg_bytes, rec);
}

/* Alice's records below *forgotten_below are tombstones, everything else as appended. */
static int as_rewritten(const log_record_t *rec, uint64_t want, void *forgotten_below) {
  return is_alice(want) && want < *(uint64_t *)forgotten_below ? is_tombstone(rec, want)
                                                              : record_matches(rec, want);
}

/* open_log, then records [0, n) appended (checked); NULL if it did not open. */
static log_t *new_log(const char *dir, uint64_t seg_bytes, int n) {
  log_t *log = open_log(dir, seg_bytes, NULL);
  if (log) CHECK_INT(append_range(log, 0, n), 0);
  return log;
}

/* Read every record from `from` and check it: offsets dense from `first`, alice's
 * records below forgotten_below tombstones, everything else as appended. Returns the
 * count read, or -1. */
static long read_check(log_t *log, uint64_t from, uint64_t first, uint64_t forgotten_below) {
  return read_log(log, from, first, as_rewritten, &forgotten_below);
}

static int forget_alice(void *ud, const log_record_t *rec, buf_t *replacement) {
  (void)ud;
  if (rec->key_len != 5 || memcmp(rec->key, "alice", 5) != 0) return 1;
  buf_puts(replacement, TOMBSTONE);
  return 0;
}

/* ---- retention ---- */

/* Read r to the end: offsets must ascend by one from `expect`, except for one jump to
 * `jump_to` (retention deleted what came next), and end at `end`. Returns 0 or -1. */
static int read_with_jump(log_reader_t *r, uint64_t expect, uint64_t jump_to, uint64_t end) {
  log_record_t rec;
  int jumped = 0, rc, bad = 0;
  while ((rc = log_reader_next(r, &rec)) == 1) {
    if (rec.offset != expect) {
      if (jumped || rec.offset != jump_to) {
        printf("  offset %llu after %llu\n", (unsigned long long)rec.offset,
               (unsigned long long)expect);
        bad = 1;
      }
      jumped = 1;
    }
    if (!record_matches(&rec, rec.offset)) bad = 1;
    expect = rec.offset + 1;
  }
  if (rc != 0 || !jumped || expect != end) {
    printf("  rc %d, jumped %d, ended at %llu\n", rc, jumped, (unsigned long long)expect);
    bad = 1;
  }
  return bad ? -1 : 0;
}

TEST(retention_deletes_old_closed_segments) {
  const char *dir = test_dir("retain");
  log_t *log = new_log(dir, 4096, 600);
  REQUIRE(log != NULL);
  seglist_t disk = list_segments(dir);
  CHECK(disk.n >= 10);
  CHECK_INT(log_start_offset(log), 0);

  /* A reader in the middle of segment 0 when retention deletes it. */
  char err[256];
  log_reader_t *early = log_reader_open(log, 0, err, sizeof err);
  REQUIRE(early != NULL);
  log_record_t rec;
  CHECK_INT(log_reader_next(early, &rec), 1);
  /* And one of a read-only open (as sluice export has) beside the writer. */
  log_opts_t ro_opts = {.dir = dir, .read_only = 1};
  log_t *ro = log_open(&ro_opts, NULL, err, sizeof err);
  REQUIRE(ro != NULL);
  log_reader_t *ro_early = log_reader_open(ro, 0, err, sizeof err);
  REQUIRE(ro_early != NULL);
  CHECK_INT(log_reader_next(ro_early, &rec), 1);
  log_t *ro2 = log_open(&ro_opts, NULL, err, sizeof err); /* for a reader opened later */
  REQUIRE(ro2 != NULL);

  /* Cut-off at record 300's time: the segment holding 300 stays, every one before goes. */
  uint64_t want_start = 0;
  long long want_bytes = 0;
  for (int i = 0; i < disk.n && disk.base[i] <= 300; i++) want_start = disk.base[i];
  for (int i = 0; i < disk.n && disk.base[i] < want_start; i++) {
    char name[40];
    snprintf(name, sizeof name, "%020llu.log", (unsigned long long)disk.base[i]);
    want_bytes += file_size(path_in(dir, name));
    snprintf(name, sizeof name, "%020llu.idx", (unsigned long long)disk.base[i]);
    want_bytes += file_size(path_in(dir, name));
  }
  CHECK(want_start > 0);
  uint64_t segs = 99, bytes = 99;
  CHECK_INT(log_retain(log, 1000000 + 300 * 1000, &segs, &bytes), 0);
  int deleted = 0;
  while (deleted < disk.n && disk.base[deleted] < want_start) deleted++;
  CHECK_INT(segs, deleted);
  CHECK_INT(bytes, want_bytes);
  CHECK_INT(log_start_offset(log), want_start);
  CHECK_INT(count_suffix(dir, ".log"), disk.n - deleted);
  CHECK_INT(count_suffix(dir, ".idx"), disk.n - deleted);
  CHECK_INT(log_disk_bytes(log), sum_sizes(dir, ".log"));
  /* Again with the same cut-off: nothing more to do. */
  CHECK_INT(log_retain(log, 1000000 + 300 * 1000, &segs, &bytes), 0);
  CHECK_INT(segs, 0);
  CHECK_INT(bytes, 0);

  /* The early readers finish their (deleted) segment, then jump to the new start. */
  CHECK_INT(read_with_jump(early, 1, want_start, 600), 0);
  log_reader_close(early);
  CHECK_INT(read_with_jump(ro_early, 1, want_start, 600), 0);
  log_reader_close(ro_early);
  CHECK_INT(read_check(ro, 0, want_start, 0), 600 - (long)want_start);
  CHECK_INT(log_start_offset(ro), want_start);
  log_close(ro);
  CHECK_INT(read_check(ro2, 0, want_start, 0), 600 - (long)want_start);
  CHECK_INT(log_start_offset(ro2), want_start);
  log_close(ro2);

  /* A reader from 0 starts at the first offset still on disk. */
  CHECK_INT(read_check(log, 0, want_start, 0), 600 - (long)want_start);

  /* A cut-off in the future deletes every closed segment, never the active one. */
  CHECK_INT(log_retain(log, INT64_MAX, &segs, &bytes), 0);
  CHECK_INT(segs, disk.n - deleted - 1);
  CHECK_INT(count_suffix(dir, ".log"), 1);
  CHECK_INT(log_start_offset(log), disk.base[disk.n - 1]);
  CHECK_INT(read_check(log, 0, disk.base[disk.n - 1], 0), 600 - (long)disk.base[disk.n - 1]);
  CHECK_INT(append_range(log, 600, 100), 0);
  uint64_t start = log_start_offset(log);
  close_log(log);

  /* Reopen: a log whose first segment is not 0 recovers, reads, and appends on. */
  log_recovery_t rr;
  log = open_log(dir, 4096, &rr);
  REQUIRE(log != NULL);
  CHECK_INT(rr.dropped_bytes, 0);
  CHECK_INT(rr.records, 700 - start);
  CHECK_INT(log_start_offset(log), start);
  CHECK_INT(log_end_offset(log), 700);
  CHECK_INT(read_check(log, 0, start, 0), 700 - (long)start);
  CHECK_INT(append_range(log, 700, 50), 0);
  CHECK_INT(read_check(log, 650, 650, 0), 100);
  close_log(log);

  /* Read-only opens of it work too, and refuse to delete. */
  log_opts_t o = {.dir = dir, .read_only = 1};
  log = log_open(&o, NULL, err, sizeof err);
  REQUIRE(log != NULL);
  CHECK_INT(log_start_offset(log), start);
  CHECK_INT(read_check(log, 0, start, 0), 750 - (long)start);
  CHECK_INT(log_retain(log, INT64_MAX, &segs, &bytes), -EROFS);
  log_close(log);
}

/* Receive times can step backwards: a segment holding one record at or after the cut-off
 * stays even when its other records, and its last one, are older. */
TEST(retention_keeps_segment_with_any_newer_record) {
  const char *dir = test_dir("retain_clock");
  log_t *log = open_log(dir, 4096, NULL);
  REQUIRE(log != NULL);
  char key[32], val[300];
  log_entry_t e;
  make_entry(1, &e, key, val);
  CHECK_INT(append_range(log, 0, 1), 0);
  /* Record 1, not in the sparse index (it sits 71 bytes into the segment), is far in the
   * future of the cut-off: only reading the segment finds it. */
  e.time_us = 5000000000;
  atomic_store(&acks, 0);
  CHECK_INT(log_append(log, &e, 1, on_ack, NULL), 0);
  int one = 1;
  CHECK(run_until(acks_reached, &one, 5000));
  CHECK_INT(append_range(log, 2, 300), 0);
  seglist_t disk = list_segments(dir);
  CHECK(disk.n >= 4);
  uint64_t segs = 9, bytes = 9;
  CHECK_INT(log_retain(log, 1000000 + 200 * 1000, &segs, &bytes), 0);
  CHECK_INT(segs, 0);
  CHECK_INT(bytes, 0);
  CHECK_INT(log_start_offset(log), 0);
  CHECK_INT(count_suffix(dir, ".log"), disk.n);
  close_log(log);
}

/* ---- rewrite ---- */

typedef struct rewrite_job {
  log_t *log;
  int slow_us;          /* callback delay per record, so appends overlap the rewrite */
  int rc;
  log_rewrite_stats_t st;
  char err[256];
  atomic_int done;
} rewrite_job_t;

static int forget_alice_slowly(void *ud, const log_record_t *rec, buf_t *replacement) {
  rewrite_job_t *j = ud;
  if (j->slow_us) usleep((useconds_t)j->slow_us);
  return forget_alice(NULL, rec, replacement);
}

static void *rewrite_main(void *arg) {
  rewrite_job_t *j = arg;
  j->rc = log_rewrite(j->log, forget_alice_slowly, j, &j->st, j->err, sizeof j->err);
  atomic_store(&j->done, 1);
  return NULL;
}

TEST(rewrite_while_appending) {
  const char *dir = test_dir("rewrite");
  log_t *log = new_log(dir, 4096, 400);
  REQUIRE(log != NULL);
  CHECK(count_in_files(dir, "alice") > 0);

  /* The rewrite runs on another thread (as the server runs it on the thread pool); the
   * loop thread keeps appending (dave's records, so they hold nothing to forget) and
   * gets them acknowledged meanwhile. */
  rewrite_job_t job = {.log = log, .slow_us = 1500};
  dave_from = 400;
  dave_to = UINT64_MAX;
  atomic_store(&acks, 0);
  atomic_store(&ack_errors, 0);
  pthread_t th;
  pthread_create(&th, NULL, rewrite_main, &job);
  uint64_t next = 400;
  int queued = 0, acked_during = 0;
  int64_t deadline = clock_mono_us() + 30000000;
  while (!atomic_load(&job.done) && clock_mono_us() < deadline) {
    if (queued - atomic_load(&acks) < 8) {
      CHECK_INT(append_queue(log, next++, 1), 0);
      queued++;
    }
    uv_run(&loop, UV_RUN_NOWAIT);
    if (!atomic_load(&job.done)) acked_during = atomic_load(&acks);
    usleep(200);
  }
  pthread_join(th, NULL);
  CHECK_INT(job.rc, 0);
  if (job.rc) printf("  log_rewrite: %s\n", job.err);
  CHECK(run_until(acks_reached, &queued, 10000));
  CHECK_INT(atomic_load(&ack_errors), 0);
  CHECK(acked_during > 20); /* appends were acknowledged while the rewrite ran */
  dave_to = next;

  long alice_before = 0;
  for (uint64_t i = 0; i < 400; i++) alice_before += is_alice(i);
  CHECK_INT(job.st.records_replaced, alice_before);
  CHECK(job.st.segments_rewritten >= 5);
  CHECK(job.st.end_offset >= 400);
  CHECK(job.st.records_examined >= 400);
  CHECK(job.st.bytes_after < job.st.bytes_before);
  CHECK_INT(log_disk_bytes(log), sum_sizes(dir, ".log"));
  CHECK_INT(count_suffix(dir, ".rewrite"), 0);

  /* And more afterwards, alice's too: they are new, so they stay. */
  CHECK_INT(append_range(log, next, 60), 0);
  uint64_t end = next + 60;
  CHECK_INT(log_end_offset(log), end);

  /* Every offset is there, alice's old records are tombstones, the rest intact; not one
   * byte of hers is in any file below `next` (the new alice records name her, so count
   * them and nothing else). */
  CHECK_INT(read_check(log, 0, 0, next), (long)end);
  long alice_new = 0;
  for (uint64_t i = next; i < end; i++) alice_new += is_alice(i);
  CHECK_INT(count_in_files(dir, "alice"), 2 * alice_new); /* key + value each */
  CHECK_INT(count_in_files(dir, TOMBSTONE), alice_before);
  close_log(log);

  /* The rewritten segments need no repair; the index the rewrite built is the one
   * recovery would build. */
  seglist_t disk = list_segments(dir);
  CHECK(disk.n >= 6);
  char idx_name[40], idx_before[4096];
  snprintf(idx_name, sizeof idx_name, "%020llu.idx", (unsigned long long)disk.base[1]);
  FILE *f = fopen(path_in(dir, idx_name), "rb");
  size_t idx_len = f ? fread(idx_before, 1, sizeof idx_before, f) : 0;
  if (f) fclose(f);
  CHECK(idx_len >= 16);
  unlink(path_in(dir, idx_name));
  log_recovery_t rr;
  log = open_log(dir, 4096, &rr);
  REQUIRE(log != NULL);
  CHECK_INT(rr.dropped_bytes, 0);
  CHECK_INT(rr.records, end);
  char idx_after[4096];
  f = fopen(path_in(dir, idx_name), "rb");
  size_t idx_len2 = f ? fread(idx_after, 1, sizeof idx_after, f) : 0;
  if (f) fclose(f);
  CHECK(idx_len2 == idx_len && memcmp(idx_before, idx_after, idx_len) == 0);
  CHECK_INT(read_check(log, 0, 0, next), (long)end);

  /* Seeking by time through rewritten segments still lands exactly. */
  char err[256];
  log_reader_t *r = log_reader_open(log, 0, err, sizeof err);
  CHECK(r != NULL);
  if (r) {
    for (uint64_t i = 0; i < end; i += 37) {
      CHECK_INT(log_reader_seek_time(r, 1000000 + (int64_t)i * 1000), 0);
      CHECK_INT(log_reader_offset(r), i);
    }
    log_reader_close(r);
  }

  /* A second rewrite finds nothing of the old alice; it takes the new ones. */
  log_rewrite_stats_t st;
  CHECK_INT(log_rewrite(log, forget_alice, NULL, &st, err, sizeof err), 0);
  CHECK_INT(st.records_replaced, alice_new);
  CHECK_INT(count_in_files(dir, "alice"), 0);
  CHECK_INT(read_check(log, 0, 0, end), (long)end);
  close_log(log);
  dave_from = UINT64_MAX;
  dave_to = 0;
}

/* The whole log in its one (active) segment, as right after a small start. This is also
 * how the offline CLI calls it: the loop is never run while the rewrite works. */
TEST(rewrite_single_active_segment) {
  const char *dir = test_dir("rewrite_active");
  log_t *log = new_log(dir, 0, 50);
  REQUIRE(log != NULL);
  CHECK_INT(count_suffix(dir, ".log"), 1);
  char err[256] = "";
  log_rewrite_stats_t st;
  int rc = log_rewrite(log, forget_alice, NULL, &st, err, sizeof err);
  CHECK_INT(rc, 0);
  if (rc) printf("  log_rewrite: %s\n", err);
  CHECK_INT(st.segments_rewritten, 1);
  CHECK_INT(st.records_replaced, 17);
  CHECK_INT(st.records_examined, 50);
  CHECK_INT(st.end_offset, 50);
  CHECK_INT(count_suffix(dir, ".log"), 2); /* the writer rolled first */
  CHECK_INT(count_in_files(dir, "alice"), 0);
  CHECK_INT(append_range(log, 50, 10), 0);
  CHECK_INT(read_check(log, 0, 0, 50), 60);
  /* Again: the new active segment (50..59) is rolled and rewritten in turn. */
  CHECK_INT(log_rewrite(log, forget_alice, NULL, &st, err, sizeof err), 0);
  CHECK_INT(st.segments_rewritten, 1);
  CHECK_INT(st.records_replaced, 3);
  CHECK_INT(st.end_offset, 60);
  CHECK_INT(count_suffix(dir, ".log"), 3);
  /* Nothing left to replace: nothing is rewritten, and the empty active segment is not
   * rolled again. */
  CHECK_INT(log_rewrite(log, forget_alice, NULL, &st, err, sizeof err), 0);
  CHECK_INT(st.segments_rewritten, 0);
  CHECK_INT(st.records_examined, 60);
  CHECK_INT(count_suffix(dir, ".log"), 3);
  CHECK_INT(count_in_files(dir, "alice"), 0);
  CHECK_INT(read_check(log, 0, 0, 60), 60);
  close_log(log);

  log_recovery_t rr;
  log = open_log(dir, 0, &rr);
  REQUIRE(log != NULL);
  CHECK_INT(rr.records, 60);
  CHECK_INT(rr.dropped_bytes, 0);
  CHECK_INT(read_check(log, 0, 0, 60), 60);
  close_log(log);
}

static int fail_at_40(void *ud, const log_record_t *rec, buf_t *replacement) {
  (void)ud;
  if (rec->offset == 40) return -ECANCELED;
  return forget_alice(NULL, rec, replacement);
}

static int empty_replacement(void *ud, const log_record_t *rec, buf_t *replacement) {
  (void)ud, (void)replacement;
  return rec->offset == 7 ? 0 : 1;
}

TEST(rewrite_errors_leave_segments_whole) {
  const char *dir = test_dir("rewrite_err");
  log_t *log = new_log(dir, 4096, 200);
  REQUIRE(log != NULL);
  seglist_t disk = list_segments(dir);
  CHECK(disk.n >= 3 && disk.base[1] <= 40 && disk.base[2] > 40);
  char err[256] = "";
  log_rewrite_stats_t st;
  /* Stopped by the callback in the second segment: the first is rewritten, the rest
   * untouched, no temporary file left. */
  CHECK_INT(log_rewrite(log, fail_at_40, NULL, &st, err, sizeof err), -ECANCELED);
  CHECK(strstr(err, "offset 40") != NULL);
  CHECK_INT(st.segments_rewritten, 1);
  CHECK_INT(count_suffix(dir, ".rewrite"), 0);
  CHECK_INT(read_check(log, 0, 0, disk.base[1]), 200);
  CHECK_INT(log_rewrite(log, empty_replacement, NULL, &st, err, sizeof err), -EINVAL);
  CHECK_INT(st.segments_rewritten, 0);
  CHECK_INT(count_suffix(dir, ".rewrite"), 0);
  CHECK_INT(read_check(log, 0, 0, disk.base[1]), 200);
  CHECK_INT(log_rewrite(log, NULL, NULL, &st, err, sizeof err), -EINVAL);
  close_log(log);

  log_opts_t o = {.dir = dir, .read_only = 1};
  log = log_open(&o, NULL, err, sizeof err);
  REQUIRE(log != NULL);
  CHECK_INT(log_rewrite(log, forget_alice, NULL, &st, err, sizeof err), -EROFS);
  log_close(log);
}

/* A crash during a rewrite leaves <base>.log.rewrite (and maybe .idx.rewrite) beside the
 * intact original: log_open deletes them; a read-only open leaves them alone. */
TEST(stray_rewrite_files_are_cleaned) {
  const char *dir = test_dir("stray");
  log_t *log = new_log(dir, 4096, 100);
  REQUIRE(log != NULL);
  close_log(log);
  const char *junk = "SLOG half a copy with alice in it";
  write_file(path_in(dir, "00000000000000000000.log.rewrite"), junk, strlen(junk));
  write_file(path_in(dir, "00000000000000000000.idx.rewrite"), junk, 5);

  char err[256];
  log_opts_t o = {.dir = dir, .read_only = 1};
  log = log_open(&o, NULL, err, sizeof err);
  CHECK(log != NULL);
  if (log) log_close(log);
  CHECK_INT(count_suffix(dir, ".rewrite"), 2);

  log_recovery_t rr;
  log = open_log(dir, 4096, &rr);
  REQUIRE(log != NULL);
  CHECK_INT(count_suffix(dir, ".rewrite"), 0);
  CHECK_INT(rr.records, 100);
  CHECK_INT(rr.dropped_bytes, 0);
  CHECK_INT(read_check(log, 0, 0, 0), 100);
  close_log(log);
}

/* Retention after a rewrite, and a rewrite of a log that retention shortened. */
TEST(retain_and_rewrite_together) {
  const char *dir = test_dir("both");
  log_t *log = new_log(dir, 4096, 300);
  REQUIRE(log != NULL);
  uint64_t segs, bytes;
  CHECK_INT(log_retain(log, 1000000 + 150 * 1000, &segs, &bytes), 0);
  CHECK(segs > 0);
  uint64_t start = log_start_offset(log);
  CHECK(start > 0 && start <= 150);
  char err[256] = "";
  log_rewrite_stats_t st;
  CHECK_INT(log_rewrite(log, forget_alice, NULL, &st, err, sizeof err), 0);
  CHECK_INT(count_in_files(dir, "alice"), 0);
  CHECK_INT(read_check(log, 0, start, 300), 300 - (long)start);
  CHECK_INT(log_retain(log, 1000000 + 250 * 1000, &segs, &bytes), 0);
  CHECK(log_start_offset(log) > start);
  start = log_start_offset(log);
  CHECK_INT(log_disk_bytes(log), sum_sizes(dir, ".log"));
  close_log(log);
  log_recovery_t rr;
  log = open_log(dir, 4096, &rr);
  REQUIRE(log != NULL);
  CHECK_INT(rr.records, 300 - start);
  CHECK_INT(read_check(log, 0, start, 300), 300 - (long)start);
  close_log(log);
}

static log_t *open_read_only(const char *dir) {
  char err[256] = "";
  log_opts_t o = {.dir = dir, .read_only = 1};
  log_t *log = log_open(&o, NULL, err, sizeof err);
  if (!log) printf("  log_open (read_only): %s\n", err);
  return log;
}

/* Read r until it is caught up, checking as read_check does that offsets run densely
 * from `first`. Returns the records read, or -1. */
static long read_to_end(log_reader_t *r, uint64_t first, uint64_t forgotten_below) {
  return read_each(r, first, as_rewritten, &forgotten_below);
}

static void on_hang(int sig) {
  static const char msg[] = "FAIL reader_stops_at_empty_last_segment: timed out (reader spinning?)\n";
  (void)sig;
  (void)!write(1, msg, sizeof msg - 1);
  _exit(1);
}

/* A rewrite rolls the writer, so until something is appended the last segment holds
 * only its header. A reader reaching it must report "caught up" (sluice export reads a
 * read_only log until then): on the writable log, on a read_only one opened beside it or
 * after it closed, and after recovery; records appended later must still reach it. A
 * reader spinning inside log_reader_next cannot be stopped from here, so alarm() turns a
 * hang into a failed run. */
TEST(reader_stops_at_empty_last_segment) {
  const char *dir = test_dir("empty_last");
  log_t *log = new_log(dir, 4096, 100);
  REQUIRE(log != NULL);
  char err[256] = "";
  log_rewrite_stats_t st;
  CHECK_INT(log_rewrite(log, forget_alice, NULL, &st, err, sizeof err), 0);
  seglist_t disk = list_segments(dir);
  CHECK(disk.n >= 3);
  CHECK_INT(disk.base[disk.n - 1], 100);
  CHECK_INT(file_size(path_in(dir, "00000000000000000100.log")), 16);
  fflush(stdout);
  signal(SIGALRM, on_hang);
  alarm(60);

  /* Writable: from the start, from the last record, and from inside the empty segment. */
  CHECK_INT(read_check(log, 0, 0, 100), 100);
  log_reader_t *tail = log_reader_open(log, 98, err, sizeof err);
  log_reader_t *at_end = log_reader_open(log, 100, err, sizeof err);
  CHECK(tail != NULL && at_end != NULL);
  if (!tail || !at_end) return;
  log_record_t rec;
  CHECK_INT(read_to_end(tail, 98, 100), 2);
  CHECK_INT(log_reader_next(tail, &rec), 0);
  CHECK_INT(log_reader_next(at_end, &rec), 0);

  /* Read-only beside the writer, as sluice export runs next to the server. */
  log_t *ro = open_read_only(dir);
  REQUIRE(ro != NULL);
  CHECK_INT(log_end_offset(ro), 100);
  CHECK_INT(read_check(ro, 0, 0, 100), 100);
  log_reader_t *ro_tail = log_reader_open(ro, 98, err, sizeof err);
  REQUIRE(ro_tail != NULL);
  CHECK_INT(read_to_end(ro_tail, 98, 100), 2);
  CHECK_INT(log_reader_next(ro_tail, &rec), 0);

  /* Appends after the roll reach every caught-up reader, the read_only one too. */
  CHECK_INT(append_range(log, 100, 5), 0);
  CHECK_INT(read_to_end(tail, 100, 100), 5);
  CHECK_INT(read_to_end(at_end, 100, 100), 5);
  CHECK_INT(read_to_end(ro_tail, 100, 100), 5);
  log_reader_close(ro_tail);
  log_close(ro);
  log_reader_close(tail);
  log_reader_close(at_end);

  /* Again, then closed with nothing appended after the roll: what export finds. */
  CHECK_INT(append_range(log, 105, 5), 0);
  CHECK_INT(log_rewrite(log, forget_alice, NULL, &st, err, sizeof err), 0);
  disk = list_segments(dir);
  CHECK_INT(disk.base[disk.n - 1], 110);
  CHECK_INT(file_size(path_in(dir, "00000000000000000110.log")), 16);
  close_log(log);

  ro = open_read_only(dir);
  REQUIRE(ro != NULL);
  CHECK_INT(log_end_offset(ro), 110);
  CHECK_INT(read_check(ro, 0, 0, 110), 110);
  at_end = log_reader_open(ro, 110, err, sizeof err);
  CHECK(at_end != NULL);
  if (at_end) CHECK_INT(log_reader_next(at_end, &rec), 0);
  log_reader_close(at_end);
  log_close(ro);

  /* Recovery of a header-only last segment after rewritten ones: appends go into it. */
  log_recovery_t rinfo;
  log = open_log(dir, 4096, &rinfo);
  REQUIRE(log != NULL);
  CHECK_INT(rinfo.segments, disk.n);
  CHECK_INT(rinfo.records, 110);
  CHECK_INT(rinfo.dropped_bytes, 0);
  CHECK_INT(log_end_offset(log), 110);
  CHECK_INT(read_check(log, 0, 0, 110), 110);
  at_end = log_reader_open(log, 110, err, sizeof err);
  REQUIRE(at_end != NULL);
  CHECK_INT(log_reader_next(at_end, &rec), 0);
  CHECK_INT(append_range(log, 110, 3), 0);
  CHECK_INT(read_to_end(at_end, 110, 110), 3);
  log_reader_close(at_end);
  CHECK_INT(list_segments(dir).n, disk.n);
  close_log(log);
  alarm(0);
}

int main(void) {
  if (logtest_init("test-logrw")) return 1;
  RUN(retention_deletes_old_closed_segments);
  RUN(retention_keeps_segment_with_any_newer_record);
  RUN(rewrite_while_appending);
  RUN(rewrite_single_active_segment);
  RUN(rewrite_errors_leave_segments_whole);
  RUN(stray_rewrite_files_are_cleaned);
  RUN(retain_and_rewrite_together);
  RUN(reader_stops_at_empty_last_segment);
  return logtest_finish("test_log_rewrite");
}
