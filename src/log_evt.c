/* log_evt: the event-time index beside each log segment (see log_evt.h). */
#include "log_evt.h"

#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>

#include "log_int.h"
#include "util/mem.h"

static void encode(char *e, const evt_entry_t *x, uint32_t kind) {
  wr32(e, x->rel_from);
  wr32(e + 4, x->rel_to);
  wr64(e + 8, (uint64_t)x->lo);
  wr64(e + 16, (uint64_t)x->hi);
  wr32(e + 24, kind);
  wr32(e + 28, crc32c(0, e, 28));
}

/* The entry at e: its kind (EVT_RUN, EVT_SEGMENT) with *x filled, or 0 when it does not
 * verify. */
static uint32_t decode(const char *e, evt_entry_t *x) {
  uint32_t kind = rd32(e + 24);
  if (crc32c(0, e, 28) != rd32(e + 28) || (kind != EVT_RUN && kind != EVT_SEGMENT)) return 0;
  x->rel_from = rd32(e);
  x->rel_to = rd32(e + 4);
  x->lo = (int64_t)rd64(e + 8);
  x->hi = (int64_t)rd64(e + 16);
  return x->rel_from < x->rel_to && x->lo <= x->hi ? kind : 0;
}

/* The whole file `<base>.evt` (OUT *data, malloc'd; *len bytes), or -1. */
static int read_all(int dirfd, uint64_t base, char **data, size_t *len) {
  char name[NAME_LEN];
  seg_name(name, base, "evt");
  int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC);
  struct stat st;
  if (fd < 0) return -1;
  if (fstat(fd, &st) != 0 || st.st_size < EVT_ENTRY || st.st_size > (1 << 30)) {
    close(fd);
    return -1;
  }
  size_t n = (size_t)st.st_size / EVT_ENTRY * EVT_ENTRY;
  *data = xmalloc(n);
  ssize_t got = pread_full(fd, *data, n, 0);
  close(fd);
  if (got < EVT_ENTRY) {
    free(*data);
    return -1;
  }
  *len = (size_t)got / EVT_ENTRY * EVT_ENTRY;
  return 0;
}

/* Runs of data[0..len) in order, up to the first entry that is not a valid run following
 * the previous one (or past limit records, relative). Returns how many. */
static size_t valid_runs(const char *data, size_t len, uint64_t limit, evt_entry_t *out) {
  size_t n = 0;
  uint32_t prev_to = 0;
  for (size_t at = 0; at + EVT_ENTRY <= len; at += EVT_ENTRY) {
    evt_entry_t x;
    if (decode(data + at, &x) != EVT_RUN || x.rel_from < prev_to || x.rel_to > limit) break;
    if (out) out[n] = x;
    prev_to = x.rel_to;
    n++;
  }
  return n;
}

/* ---- writing ---- */

static void run_reset(evt_writer_t *w) {
  w->n = 0;
  w->lo = INT64_MAX;
  w->hi = INT64_MIN;
}

void evt_start(evt_writer_t *w, int dirfd, uint64_t base, uint64_t next, uint64_t pos,
               int fresh) {
  char name[NAME_LEN];
  seg_name(name, base, "evt");
  *w = (evt_writer_t){.fd = -1, .base = base, .from = next, .from_pos = pos,
                      .seg_lo = INT64_MAX, .seg_hi = INT64_MIN};
  run_reset(w);
  w->fd = openat(dirfd, name, O_RDWR | O_CREAT | O_CLOEXEC | (fresh ? O_TRUNC : 0), 0600);
  if (w->fd < 0) {
    w->gap = 1;
    return;
  }
  if (fresh) return;
  /* The recovered last segment: keep the runs of records still in it, in order. */
  char *data = NULL;
  size_t len = 0, n = 0;
  uint64_t covered = 0;
  if (read_all(dirfd, base, &data, &len) == 0) {
    evt_entry_t *runs = xmalloc(len / EVT_ENTRY * sizeof *runs);
    n = valid_runs(data, len, next - base, runs);
    for (size_t i = 0; i < n; i++) {
      if (runs[i].rel_from != covered) w->gap = 1;
      covered = runs[i].rel_to;
      if (runs[i].lo < w->seg_lo) w->seg_lo = runs[i].lo;
      if (runs[i].hi > w->seg_hi) w->seg_hi = runs[i].hi;
    }
    free(runs);
    free(data);
  }
  if (covered != next - base) w->gap = 1;
  w->size = n * EVT_ENTRY;
  if (ftruncate(w->fd, (off_t)w->size) != 0) {
    close(w->fd);
    w->fd = -1;
    w->gap = 1;
  }
}

static void emit(evt_writer_t *w, uint64_t to, buf_t *pending) {
  if (!w->n) return;
  evt_entry_t x = {(uint32_t)(w->from - w->base), (uint32_t)(to - w->base), w->lo, w->hi};
  char e[EVT_ENTRY];
  encode(e, &x, EVT_RUN);
  buf_append(pending, e, sizeof e);
  if (w->lo < w->seg_lo) w->seg_lo = w->lo;
  if (w->hi > w->seg_hi) w->seg_hi = w->hi;
  run_reset(w);
}

void evt_add(evt_writer_t *w, uint64_t off, uint64_t pos, int64_t t, uint32_t interval,
             buf_t *pending) {
  if (w->n && pos >= w->from_pos + interval) emit(w, off, pending);
  if (off - w->base > UINT32_MAX - 1) { /* not expressible: the rest has no entry */
    w->gap = 1;
    return;
  }
  if (!w->n) {
    w->from = off;
    w->from_pos = pos;
  }
  w->n++;
  if (t == 0) { /* unknown: the run may hold any time */
    w->lo = INT64_MIN;
    w->hi = INT64_MAX;
  }
  if (t < w->lo) w->lo = t;
  if (t > w->hi) w->hi = t;
}

void evt_flush(evt_writer_t *w, buf_t *pending) {
  if (pending->len && w->fd >= 0) {
    if (pwrite_full(w->fd, pending->data, pending->len, w->size) == 0) {
      w->size += pending->len;
    } else { /* derived data: the segment goes on without it */
      close(w->fd);
      w->fd = -1;
      w->gap = 1;
    }
  } else if (pending->len) {
    w->gap = 1;
  }
  buf_reset(pending);
}

void evt_finish(evt_writer_t *w, uint64_t end, int closing, buf_t *pending) {
  emit(w, end, pending);
  if (closing && !w->gap && end > w->base && end - w->base <= UINT32_MAX) {
    evt_entry_t x = {0, (uint32_t)(end - w->base), w->seg_lo, w->seg_hi};
    char e[EVT_ENTRY];
    encode(e, &x, EVT_SEGMENT);
    buf_append(pending, e, sizeof e);
  }
  evt_flush(w, pending);
  if (w->fd >= 0) close(w->fd);
  w->fd = -1;
}

/* ---- reading ---- */

int evt_segment(int dirfd, uint64_t base, evt_entry_t *out) {
  char name[NAME_LEN], e[EVT_ENTRY];
  seg_name(name, base, "evt");
  int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC);
  struct stat st;
  int ok = 0;
  if (fd < 0) return 0;
  if (fstat(fd, &st) == 0 && st.st_size >= EVT_ENTRY && st.st_size % EVT_ENTRY == 0 &&
      pread_full(fd, e, EVT_ENTRY, (uint64_t)st.st_size - EVT_ENTRY) == EVT_ENTRY)
    ok = decode(e, out) == EVT_SEGMENT && out->rel_from == 0;
  close(fd);
  return ok;
}

void evt_load(int dirfd, uint64_t base, evt_entry_t **out, size_t *n) {
  char *data = NULL;
  size_t len = 0;
  *out = NULL;
  *n = 0;
  if (read_all(dirfd, base, &data, &len) < 0) return;
  evt_entry_t *runs = xmalloc(len / EVT_ENTRY * sizeof *runs);
  *n = valid_runs(data, len, UINT32_MAX, runs);
  free(data);
  if (*n) *out = runs;
  else free(runs);
}
