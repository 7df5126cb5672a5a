/* fuzz_log_recovery: log_open must recover any damaged last segment.
 *
 * The input becomes a log directory: the first byte picks how.
 *   0  segment 0 = valid header + the bytes
 *   1  segment 0 = the raw bytes
 *   2  segment 0 = valid header + valid frames built from the bytes, then damaged
 *      (truncated, a byte flipped, garbage added) as the bytes say
 *   3  like 2, plus an .idx file holding arbitrary bytes (and, with flag 8, an .evt file
 *      holding the same bytes)
 *   4  like 2, but the damaged segment is closed: a second segment follows it. log_open
 *      must succeed; readers must return increasing offsets, report each damage once
 *      with a range inside the damaged segment, and read or skip every record exactly
 *      once, ending with the next segment's record (damaged_closed below)
 * Invariants once log_open succeeds (it must, whenever the header is valid): the reader
 * returns consecutive offsets and never an error; dropped_bytes + what is left == the
 * original size, or dropped_bytes is 0 and only zeros were cut (a preallocated tail);
 * what is left is exactly whole, valid frames; an append after recovery
 * gets the next offset; and reopening finds nothing more to repair. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include "fuzz_tmpdir.h"
#include "log.h"
#include "util/buf.h"
#include "util/crc32c.h"

#define SEG0 "00000000000000000000.log"
#define IDX0 "00000000000000000000.idx"
#define EVT0 "00000000000000000000.evt"

static char dir[256];
static uv_loop_t loop;

static void clear_dir(void) {
  DIR *d = opendir(dir);
  if (!d) return;
  struct dirent *de;
  char p[600];
  while ((de = readdir(d))) {
    if (de->d_name[0] == '.') continue;
    snprintf(p, sizeof p, "%s/%s", dir, de->d_name);
    unlink(p);
  }
  closedir(d);
}

static void cleanup(void) {
  clear_dir();
  rmdir(dir);
}

static void init(void) {
  fuzz_mkdtemp(dir, sizeof dir, "log");
  uv_loop_init(&loop);
  atexit(cleanup);
}

static void put32(buf_t *b, uint32_t v) {
  char c[4];
  for (int i = 0; i < 4; i++) c[i] = (char)(v >> (8 * i));
  buf_append(b, c, 4);
}

static void put64(buf_t *b, uint64_t v) {
  put32(b, (uint32_t)v);
  put32(b, (uint32_t)(v >> 32));
}

static uint32_t get32(const unsigned char *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void header_at(buf_t *b, uint64_t base) {
  buf_append(b, "SLOG", 4);
  put32(b, 1);
  put64(b, base);
}

static void header(buf_t *b) { header_at(b, 0); }

/* Valid frames from the input: each record takes [klen][vlen] then that many bytes. */
static size_t frames_from(buf_t *b, const uint8_t *p, size_t n, uint64_t off) {
  size_t used = 0;
  for (uint64_t first = off; used + 2 <= n && off < first + 64;) {
    size_t klen = p[used] % 8, vlen = p[used + 1];
    if (used + 2 + klen + vlen > n) break;
    size_t at = b->len;
    put32(b, (uint32_t)(20 + klen + vlen));
    put32(b, 0);
    put64(b, off);
    put64(b, off * 1000);
    put32(b, (uint32_t)klen);
    buf_append(b, p + used + 2, klen + vlen);
    uint32_t crc = crc32c(0, b->data + at + 8, 20 + klen + vlen);
    for (int i = 0; i < 4; i++) b->data[at + 4 + i] = (char)(crc >> (8 * i));
    used += 2 + klen + vlen;
    off++;
  }
  return used;
}

static size_t frames(buf_t *b, const uint8_t *p, size_t n) { return frames_from(b, p, n, 0); }

static int acked, ack_status;
static uint64_t ack_offset;

static void write_file(const char *name, const void *p, size_t n) {
  char path[600];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
  if (fd < 0) abort();
  if (n && write(fd, p, n) != (ssize_t)n) abort();
  close(fd);
}

/* An .evt file of entries made of the bytes, 24 at a time (rel_from, rel_to, lo, hi),
 * each with a kind picked by its first byte and a correct CRC: what recovery must sort. */
static void evt_file(const uint8_t *p, size_t n) {
  buf_t b = BUF_INIT;
  for (; n >= 24; p += 24, n -= 24) {
    char e[32];
    memcpy(e, p, 24);
    uint32_t kind = p[0] & 1 ? 2 : 1;
    for (int i = 0; i < 4; i++) e[24 + i] = (char)(kind >> (8 * i));
    uint32_t crc = crc32c(0, e, 28);
    for (int i = 0; i < 4; i++) e[28 + i] = (char)(crc >> (8 * i));
    buf_append(&b, e, sizeof e);
  }
  write_file(EVT0, b.data, b.len);
  buf_free(&b);
}

/* After recovery, an append and a close, the active segment's .evt (if any) holds only
 * runs, in order, of records that exist (below records). Returns 0 or -1. */
static int check_evt(uint64_t records) {
  char path[600];
  snprintf(path, sizeof path, "%s/%s", dir, EVT0);
  FILE *f = fopen(path, "rb");
  if (!f) return 0;
  unsigned char e[32];
  uint64_t prev = 0;
  int rc = 0;
  size_t got;
  while ((got = fread(e, 1, sizeof e, f)) == sizeof e) {
    uint32_t from = get32(e), to = get32(e + 4), kind = get32(e + 24);
    if (crc32c(0, e, 28) != get32(e + 28) || kind != 1 || from < prev || to <= from ||
        to > records) {
      fprintf(stderr, "bad run [%u, %u) kind %u after %llu, %llu records\n", from, to, kind,
              (unsigned long long)prev, (unsigned long long)records);
      rc = -1;
      break;
    }
    prev = to;
  }
  if (rc == 0 && got != 0) rc = -1; /* a partial entry */
  fclose(f);
  return rc;
}

static long long seg_size(void) {
  char path[600];
  struct stat st;
  snprintf(path, sizeof path, "%s/%s", dir, SEG0);
  return stat(path, &st) == 0 ? (long long)st.st_size : -1;
}

/* After recovery the segment must be a header and whole valid frames, nothing else.
 * Returns the number of frames, or -1. */
static long check_file(uint64_t expect_records) {
  char path[600];
  snprintf(path, sizeof path, "%s/%s", dir, SEG0);
  FILE *f = fopen(path, "rb");
  if (!f) return -1;
  buf_t b = BUF_INIT;
  char tmp[4096];
  size_t n;
  while ((n = fread(tmp, 1, sizeof tmp, f)) > 0) buf_append(&b, tmp, n);
  fclose(f);
  long count = 0;
  size_t pos = 16;
  const unsigned char *u = (const unsigned char *)b.data;
  if (b.len < 16 || memcmp(b.data, "SLOG", 4) != 0) count = -1;
  while (count >= 0 && pos < b.len) {
    if (b.len - pos < 28) {
      count = -1;
      break;
    }
    uint32_t len = get32(u + pos);
    if (len < 20 || b.len - pos - 8 < len || crc32c(0, u + pos + 8, len) != get32(u + pos + 4) ||
        get32(u + pos + 8) != (uint32_t)count) {
      count = -1;
      break;
    }
    pos += 8 + len;
    count++;
  }
  buf_free(&b);
  if (count >= 0 && (uint64_t)count != expect_records) count = -1;
  return count;
}

static void on_ack(void *ud, int status, uint64_t first) {
  (void)ud;
  acked = 1;
  ack_status = status;
  ack_offset = first;
}

/* Mode 4: segment 0 (closed, damaged as the bytes say) then segment `k` with one record. */
static int damaged_closed(const uint8_t *data, size_t size) {
  if (size < 5) return 0;
  uint8_t flags = data[0];
  size_t cut = data[1] | (size_t)data[2] << 8, flip = data[3] | (size_t)data[4] << 8;
  data += 5;
  size -= 5;
  buf_t seg = BUF_INIT, next = BUF_INIT;
  header(&seg);
  frames(&seg, data, size);
  uint64_t k = 0;
  for (size_t pos = 16; pos + 8 <= seg.len; k++)
    pos += 8 + get32((const unsigned char *)seg.data + pos);
  if ((flags & 1) && seg.len > 16) seg.len = 16 + cut % (seg.len - 16 + 1);
  if ((flags & 2) && seg.len > 16) seg.data[16 + flip % (seg.len - 16)] ^= (char)(flags | 1);
  if ((flags & 4) && seg.len > 16) /* a run of zeroes, as a lost page reads */
    memset(seg.data + 16 + flip % (seg.len - 16), 0,
           (seg.len - 16 - flip % (seg.len - 16)) < 64 ? seg.len - 16 - flip % (seg.len - 16) : 64);
  char name[40];
  snprintf(name, sizeof name, "%020llu.log", (unsigned long long)k);
  uint8_t one[4] = {1, 1, 'k', 'v'};
  header_at(&next, k);
  frames_from(&next, one, sizeof one, k);
  write_file(SEG0, seg.data, seg.len);
  write_file(name, next.data, next.len);
  buf_free(&seg);
  buf_free(&next);

  char err[256];
  log_opts_t o = {.dir = dir, .sync = LOG_SYNC_OFF, .index_interval = 64, .loop = &loop};
  log_t *log = log_open(&o, NULL, err, sizeof err);
  if (!log) {
    fprintf(stderr, "log_open refused a damaged closed segment: %s\n", err);
    abort();
  }
  log_reader_t *r = log_reader_open(log, 0, err, sizeof err);
  if (!r) abort();
  uint64_t next_off = 0, seen = 0, last = UINT64_MAX;
  for (;;) {
    log_record_t x;
    int rc = log_reader_next(r, &x);
    if (rc == 0) break;
    if (rc == -EBADMSG) {
      log_damage_t d;
      log_reader_damage(r, &d);
      if (d.from != next_off || d.to <= d.from || d.to > k) abort();
      seen += d.to - d.from;
      next_off = d.to;
      continue;
    }
    if (rc != 1 || x.offset != next_off) abort();
    last = x.offset;
    next_off++;
    seen++;
  }
  if (seen != k + 1 || last != k) {
    fprintf(stderr, "k=%llu seen=%llu last=%llu\n", (unsigned long long)k, (unsigned long long)seen, (unsigned long long)last);
    abort();
  }
  log_reader_close(r);
  log_close(log);
  uv_run(&loop, UV_RUN_NOWAIT);
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (!dir[0]) init();
  if (size < 1) return 0;
  int mode = data[0] % 5;
  data++;
  size--;
  clear_dir();
  if (mode == 4) return damaged_closed(data, size);

  buf_t seg = BUF_INIT;
  if (mode == 0) {
    header(&seg);
    buf_append(&seg, data, size);
  } else if (mode == 1) {
    buf_append(&seg, data, size);
  } else {
    /* [flags][cut u16][flip u16][frames...][rest: garbage or idx] */
    if (size < 5) return 0;
    uint8_t flags = data[0];
    size_t cut = data[1] | (size_t)data[2] << 8, flip = data[3] | (size_t)data[4] << 8;
    data += 5;
    size -= 5;
    header(&seg);
    size_t used = frames(&seg, data, size);
    if ((flags & 1) && seg.len > 16) seg.len = 16 + cut % (seg.len - 16 + 1);
    if ((flags & 2) && seg.len > 16) seg.data[16 + flip % (seg.len - 16)] ^= (char)(flags | 1);
    if (mode == 3) write_file(IDX0, data + used, size - used);
    if (mode == 3 && (flags & 8)) evt_file(data + used, size - used);
    else if (flags & 4) buf_append(&seg, data + used, size - used);
  }
  write_file(SEG0, seg.data, seg.len);
  long long original = (long long)seg.len;
  int valid_header = seg.len >= 16 && memcmp(seg.data, "SLOG\1\0\0\0\0\0\0\0\0\0\0\0", 16) == 0;

  char err[256];
  log_opts_t o = {.dir = dir, .sync = LOG_SYNC_OFF, .index_interval = 64, .loop = &loop};
  log_recovery_t rec;
  log_t *log = log_open(&o, &rec, err, sizeof err);
  if (!log) {
    if (valid_header || original <= 16) {
      fprintf(stderr, "log_open failed on a recoverable segment: %s\n", err);
      abort();
    }
    buf_free(&seg);
    return 0;
  }
  /* Cut bytes are counted as dropped, unless they were all zeros: a preallocated
   * segment's clean end. */
  long long left = seg_size();
  if (valid_header && (left < 16 || left > original)) abort();
  if (valid_header && rec.dropped_bytes == 0) {
    for (long long i = left; i < original; i++)
      if (seg.data[i]) abort();
  } else if (valid_header && rec.dropped_bytes + (uint64_t)left != (uint64_t)original) {
    abort();
  }
  buf_free(&seg);
  if (log_end_offset(log) != rec.records) abort();

  /* every record readable, offsets consecutive, from any starting point */
  for (uint64_t from = 0; from <= rec.records; from += rec.records / 3 + 1) {
    log_reader_t *r = log_reader_open(log, from, err, sizeof err);
    if (!r) abort();
    uint64_t next = from;
    log_record_t x;
    int rc;
    while ((rc = log_reader_next(r, &x)) == 1) {
      if (x.offset != next++) abort();
    }
    if (rc != 0 || next != rec.records) abort();
    log_reader_close(r);
  }

  /* the log resumes right after what survived */
  acked = 0;
  log_entry_t e = {.time_us = 7, .key = "k", .key_len = 1, .value = "v", .value_len = 1};
  if (log_append(log, &e, 1, on_ack, NULL) != 0) abort();
  while (!acked) uv_run(&loop, UV_RUN_ONCE);
  if (ack_status != 0 || ack_offset != rec.records) abort();
  log_close(log);
  uv_run(&loop, UV_RUN_NOWAIT); /* frees the log's async handle */

  if (check_file(rec.records + 1) < 0) abort();
  if (check_evt(rec.records + 1) < 0) abort();

  log_recovery_t again;
  o.read_only = 1;
  o.loop = NULL;
  log = log_open(&o, &again, err, sizeof err);
  if (!log || again.dropped_bytes != 0 || again.records != rec.records + 1) abort();
  log_reader_t *r = log_reader_open(log, 0, err, sizeof err);
  if (!r) abort();
  log_record_t x;
  uint64_t n = 0;
  while (log_reader_next(r, &x) == 1) n++;
  if (n != rec.records + 1) abort();
  log_reader_close(r);
  log_close(log);
  return 0;
}
