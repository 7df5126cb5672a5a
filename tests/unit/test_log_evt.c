/* test_log_evt: the log's event-time runs (log_evt.h) and log_reader_set_window.
 *
 * The one promise a window makes: a reader with a window returns every record whose event
 * time lies in it (it may return others), in offset order. Each test checks that against
 * the event times it appended, and checks that the runs really spare reading, across
 * segments, restarts, a torn tail, lost or damaged .evt files and retention. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "test.h"
#include "logtest.h"

static void make_entry(uint64_t i, log_entry_t *e, char *key, char *val) {
  (void)i, (void)e, (void)key, (void)val; /* logtest.h's deterministic records: unused */
}

/* Event times of the records appended by the test, by offset. */
static int64_t times[20000];
static uint64_t nrec;

typedef struct {
  int acked, errors;
} box_t;

static void on_ack(void *ud, int status, uint64_t first) {
  box_t *b = ud;
  (void)first;
  b->acked++;
  if (status) b->errors++;
}

static int all_acked(void *ud) { return ((box_t *)ud)->acked > 0; }

/* Append one batch of n records with event times t(k) (seconds), k = 0 .. n-1. */
static int append_times(log_t *log, int n, int64_t (*t)(int k, void *ctx), void *ctx) {
  log_entry_t *e = calloc((size_t)n, sizeof *e);
  char (*val)[64] = calloc((size_t)n, sizeof *val);
  for (int k = 0; k < n; k++) {
    int64_t et = t(k, ctx) * 1000000;
    times[nrec + (uint64_t)k] = et;
    snprintf(val[k], sizeof val[k], "{\"record\":%llu,\"t\":%lld}",
             (unsigned long long)(nrec + (uint64_t)k), (long long)et);
    e[k] = (log_entry_t){.time_us = 5000000000000LL, .event_us = et, .key = "u",
                         .key_len = 1, .value = val[k], .value_len = (uint32_t)strlen(val[k])};
  }
  box_t box = {0};
  int rc = log_append(log, e, (size_t)n, on_ack, &box);
  if (rc == 0 && (!run_until(all_acked, &box, 5000) || box.errors)) rc = -EIO;
  if (rc == 0) nrec += (uint64_t)n;
  free(e);
  free(val);
  return rc;
}

/* Read the whole log with the window [lo, hi) (seconds). Returns the records returned, or
 * -1 when one in the window was left out, offsets did not rise, or reading failed. */
static long read_window(log_t *log, int64_t lo, int64_t hi) {
  char err[256];
  log_reader_t *r = log_reader_open(log, 0, err, sizeof err);
  if (!r) return -1;
  log_reader_set_window(r, lo * 1000000, hi * 1000000);
  log_record_t rec;
  long n = 0;
  uint64_t want = 0; /* every in-window record below this was seen */
  int rc, ok = 1;
  while ((rc = log_reader_next(r, &rec)) == 1) {
    for (; want < rec.offset; want++)
      if (times[want] >= lo * 1000000 && times[want] < hi * 1000000) {
        printf("  record %llu (t=%lld) in the window was passed over\n",
               (unsigned long long)want, (long long)times[want]);
        ok = 0;
      }
    if (rec.offset != want) ok = 0;
    want = rec.offset + 1;
    n++;
  }
  for (; want < nrec; want++)
    if (times[want] >= lo * 1000000 && times[want] < hi * 1000000) ok = 0;
  log_reader_close(r);
  return rc == 0 && ok ? n : -1;
}

static long in_window(int64_t lo, int64_t hi) {
  long n = 0;
  for (uint64_t i = 0; i < nrec; i++) n += times[i] >= lo * 1000000 && times[i] < hi * 1000000;
  return n;
}

/* Times rising with the offset, one a second, every 50th record a day late. */
static int64_t rising(int k, void *ctx) {
  int64_t first = *(int64_t *)ctx + k;
  return k % 50 == 49 ? first - 86400 : first;
}

static log_t *open_log(const char *dir, uint64_t seg_bytes) {
  return logtest_open(dir, LOG_SYNC_OFF, seg_bytes, NULL);
}

/* A fresh log in dir holding `batches` batches of `per` records from rising(), the
 * first at `start` s. */
static log_t *filled_log(const char *dir, uint64_t seg_bytes, int batches, int per,
                         int64_t start) {
  nrec = 0;
  log_t *log = open_log(dir, seg_bytes);
  for (int64_t b = 0; log && b < batches; b++) {
    int64_t first = start + b * per;
    if (append_times(log, per, rising, &first) != 0) FAILF("batch %lld not written", (long long)b);
  }
  return log;
}

TEST(window_passes_over_runs_outside) {
  const char *dir = test_dir("runs");
  log_t *log = filled_log(dir, 64 << 10, 20, 200, 100000);
  REQUIRE(log != NULL);
  CHECK_INT(nrec, 4000);
  /* a window of 100 s of the 4,000: a few runs around it, and those holding a late one */
  long got = read_window(log, 101000, 101100), want = in_window(101000, 101100);
  CHECK(got >= want && want >= 98);
  if (got > 400) FAILF("read %ld records for %ld in the window", got, want);
  /* the late records: 100000 - 86400 + ... — every run holding one must be read */
  got = read_window(log, 13600, 13600 + 5000);
  want = in_window(13600, 13600 + 5000);
  CHECK(got >= want && want == 80);
  /* nothing there: next to nothing read; everything: everything */
  CHECK(read_window(log, 0, 1000) >= 0 && read_window(log, 0, 1000) < 40);
  CHECK_INT(read_window(log, 0, 1000000), 4000);
  close_log(log);

  /* The same answers after a restart, from the runs on disk. */
  log = open_log(dir, 64 << 10);
  REQUIRE(log != NULL);
  got = read_window(log, 101000, 101100);
  CHECK(got >= 98 && got <= 400);
  close_log(log);
}

/* Closed segments end with a whole-segment entry; a window outside skips them without
 * their runs. Losing or damaging the files only costs reading. */
TEST(whole_segments_and_lost_files) {
  const char *dir = test_dir("whole");
  log_t *log = filled_log(dir, 16 << 10, 10, 300, 200000);
  REQUIRE(log != NULL);
  CHECK_INT(nrec, 3000);
  long got = read_window(log, 202000, 202050);
  CHECK(got >= 50 && got <= 200);
  /* the last entry of a closed segment's .evt is the whole-segment one (kind 2) */
  int fd = open(path_in(dir, "00000000000000000000.evt"), O_RDONLY);
  REQUIRE(fd >= 0);
  off_t end = lseek(fd, 0, SEEK_END);
  unsigned char e[32];
  CHECK(end >= 64 && end % 32 == 0 && pread(fd, e, 32, end - 32) == 32);
  CHECK_INT(e[24], 2);
  CHECK_INT(e[0] | e[1] << 8 | e[2] << 16 | e[3] << 24, 0);
  close(fd);
  /* damage one .evt, delete another: still every record of the window */
  write_file(path_in(dir, "00000000000000000000.evt"), "garbage garbage garbage garbage!", 32);
  char cmd[700];
  snprintf(cmd, sizeof cmd, "ls '%s'/*.evt | sed -n 3p | xargs rm -f", dir);
  CHECK_INT(system(cmd), 0);
  CHECK(read_window(log, 202000, 202050) >= 50);
  CHECK(read_window(log, 200000, 200100) >= 100);
  CHECK_INT(read_window(log, 0, 1000000), 3000);
  /* retention takes a segment's .evt with it */
  uint64_t segs = 0;
  CHECK_INT(log_retain(log, 5000000000001LL, &segs, NULL), 0);
  CHECK(segs > 0);
  snprintf(cmd, sizeof cmd, "test $(ls '%s'/*.evt | wc -l) -le $(ls '%s'/*.log | wc -l)", dir,
           dir);
  CHECK_INT(system(cmd), 0);
  close_log(log);
}

static int64_t at(int k, void *ctx) { return *(int64_t *)ctx + k; }

/* A torn tail: runs that named records recovery cut must go with them, or they would
 * speak for the records appended at those offsets afterwards. */
TEST(runs_of_a_cut_tail_are_cut) {
  const char *dir = test_dir("torn");
  nrec = 0;
  log_t *log = open_log(dir, 1 << 20);
  REQUIRE(log != NULL);
  int64_t first = 1000;
  CHECK_INT(append_times(log, 400, at, &first), 0);
  close_log(log);
  const char *seg = path_in(dir, "00000000000000000000.log");
  long long size = file_size(seg);
  CHECK(size > 10000);
  CHECK_INT(truncate(seg, size - 5000), 0); /* about a sixth of the records */
  log_recovery_t rec;
  log = logtest_open(dir, LOG_SYNC_OFF, 1 << 20, &rec);
  REQUIRE(log != NULL);
  CHECK(rec.records < 400 && rec.records > 250);
  nrec = rec.records;
  first = 900000;
  CHECK_INT(append_times(log, 100, at, &first), 0);
  long got = read_window(log, 900000, 900100);
  CHECK(got >= 100 && got < 160);
  got = read_window(log, 1000, 1100);
  CHECK(got >= 100 && got < 160);
  close_log(log);
}

int main(void) {
  if (logtest_init("test-log-evt")) return 1;
  RUN(window_passes_over_runs_outside);
  RUN(whole_segments_and_lost_files);
  RUN(runs_of_a_cut_tail_are_cut);
  return logtest_finish("test_log_evt");
}
