/* logtest.h: what test_log and test_log_rewrite share to drive the durable log through a
 * real libuv loop in a temp dir. logtest_init makes a per-run directory (tmpdir.h) and
 * the loop; logtest_finish checks the loop is empty, removes the directory
 * and reports. Each test takes a fresh subdirectory with test_dir and names files in it
 * with path_in; run_until turns the loop until a condition holds, logtest_open opens a
 * log with the tests' usual options and close_log closes it and lets the loop release
 * it. entry_fill and record_matches build and check the tests' deterministic records
 * (the including test defines make_entry), and read_each / read_log read records back
 * through the test's own check. Include after test.h. */
#ifndef SLUICE_LOGTEST_H
#define SLUICE_LOGTEST_H

#include <ftw.h>
#include <stdio.h>
#include <sys/stat.h>
#include <uv.h>

#include "log.h"
#include "tmpdir.h"
#include "util/clock.h"

static uv_loop_t loop;

/* Make root (named after suite) and the loop; 0, or -1 after saying why. */
static inline int logtest_init(const char *suite) {
  if (tmpdir_init(suite) != 0) return -1;
  uv_loop_init(&loop);
  return 0;
}

/* Check that no test left a handle on the loop, remove root, and report (exit code). */
static inline int logtest_finish(const char *suite) {
  if (uv_loop_close(&loop) != 0) {
    printf("loop still has handles\n");
    test_failed++;
  }
  tmpdir_finish();
  return TEST_REPORT(suite);
}

/* dir/file in one of four rotating buffers, so two results can be used together. */
static inline const char *path_in(const char *dir, const char *file) {
  static char p[4][600];
  static int turn;
  char *out = p[turn++ % 4];
  snprintf(out, sizeof p[0], "%s/%s", dir, file);
  return out;
}

static inline long long file_size(const char *p) {
  struct stat st;
  return stat(p, &st) == 0 ? (long long)st.st_size : -1;
}

static inline void write_file(const char *p, const void *data, size_t n) {
  FILE *f = fopen(p, "wb");
  if (f) {
    fwrite(data, 1, n, f);
    fclose(f);
  }
}

static inline void logtest_noop_timer(uv_timer_t *t) { (void)t; }

/* Run the loop until pred(ctx) holds or timeout_ms passes; returns pred's last value. */
static inline int run_until(int (*pred)(void *), void *ctx, int timeout_ms) {
  uv_timer_t t;
  uv_timer_init(&loop, &t);
  uv_timer_start(&t, logtest_noop_timer, 2, 2);
  int64_t deadline = clock_mono_us() + (int64_t)timeout_ms * 1000;
  int ok;
  while (!(ok = pred(ctx)) && clock_mono_us() < deadline) uv_run(&loop, UV_RUN_ONCE);
  uv_close((uv_handle_t *)&t, NULL);
  uv_run(&loop, UV_RUN_NOWAIT);
  return ok;
}

/* Close the log and let the loop release its handle; the loop must then be empty. */
static inline void close_log(log_t *log) {
  log_close(log);
  uv_run(&loop, UV_RUN_DEFAULT);
}

/* Open the log in dir on the loop (index every 256 bytes); prints why when it fails. */
static inline log_t *logtest_open(const char *dir, log_sync_t sync, uint64_t seg_bytes,
                                  log_recovery_t *rec) {
  char err[256] = "";
  log_opts_t o = {.dir = dir, .segment_bytes = seg_bytes, .index_interval = 256,
                  .sync = sync, .loop = &loop};
  log_t *log = log_open(&o, rec, err, sizeof err);
  if (!log) printf("  log_open: %s\n", err);
  return log;
}

/* The tests' deterministic record i: time 1 s + 1 ms per offset, key (klen bytes, none
 * if 0), and value: the vlen bytes already in val, then (i * 37) % pad_mod bytes of a
 * letter picked by i (val must have room). */
static inline void entry_fill(log_entry_t *e, uint64_t i, char *key, int klen, char *val,
                              int vlen, int pad_mod) {
  int pad = (int)((i * 37) % (uint64_t)pad_mod);
  memset(val + vlen, 'a' + (int)(i % 26), (size_t)pad);
  *e = (log_entry_t){.time_us = 1000000 + (int64_t)i * 1000, .key = klen ? key : NULL,
                     .key_len = (uint32_t)klen, .value = val, .value_len = (uint32_t)(vlen + pad)};
}

/* Whether r is entry e at offset i, byte for byte. */
static inline int record_is(const log_record_t *r, uint64_t i, const log_entry_t *e) {
  return r->offset == i && r->time_us == e->time_us && r->key_len == e->key_len &&
         (e->key_len == 0 || memcmp(r->key, e->key, e->key_len) == 0) &&
         r->value_len == e->value_len && memcmp(r->value, e->value, e->value_len) == 0;
}

/* The including test defines make_entry: its deterministic record i, built in key (32
 * bytes of room) and val (400), as entry_fill does. */
static void make_entry(uint64_t i, log_entry_t *e, char *key, char *val);

/* Whether r is the test's record i. */
static inline int record_matches(const log_record_t *r, uint64_t i) {
  char key[32], val[400];
  log_entry_t e;
  make_entry(i, &e, key, val);
  return record_is(r, i, &e);
}

/* Whether rec is what the test expects at offset want. */
typedef int (*record_check_fn)(const log_record_t *rec, uint64_t want, void *ctx);

/* Read r until it is caught up, checking each record against offsets that run densely
 * from first. Returns the records read, or -1 at the first mismatch or a read error. */
static inline long read_each(log_reader_t *r, uint64_t first, record_check_fn ok, void *ctx) {
  log_record_t rec;
  long n = 0;
  int rc;
  while ((rc = log_reader_next(r, &rec)) == 1) {
    uint64_t want = first + (uint64_t)n;
    if (!ok(&rec, want, ctx)) {
      printf("  record %llu (offset %llu) differs\n", (unsigned long long)want,
             (unsigned long long)rec.offset);
      return -1;
    }
    n++;
  }
  if (rc < 0) printf("  reader: %s\n", strerror(-rc));
  return rc == 0 ? n : -1;
}

/* read_each on a reader of log opened at from. */
static inline long read_log(log_t *log, uint64_t from, uint64_t first, record_check_fn ok,
                            void *ctx) {
  char err[256];
  log_reader_t *r = log_reader_open(log, from, err, sizeof err);
  if (!r) {
    printf("  reader: %s\n", err);
    return -1;
  }
  long n = read_each(r, first, ok, ctx);
  log_reader_close(r);
  return n;
}

#endif
