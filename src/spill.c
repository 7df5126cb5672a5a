/* spill: evicted profiles on disk (see spill.h for the file format and the contract).
 *
 * Layout. Appends go to a write buffer flushed at SPILL_BUF bytes and at commit; a record
 * still in the buffer is read from it. The index is open addressing with linear probing
 * and backward-shift deletion, {key, offset of the PUT}, key 0 marking an empty slot. */
#include "spill.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util/buf.h"
#include "util/crc32c.h"
#include "util/mem.h"

#define MAGIC "SLSP"
#define HEAD 32
#define REC_HEAD 8 /* crc, length */
#define K_PUT 1
#define K_DEL 2
#define PUT_FIXED (1 + 8 + sizeof(profile_t) + 2)
#define ALIAS_BYTES 12
#define DEL_BODY (1 + 8 + 8)
#define PUT_MAX (PUT_FIXED + SPILL_MAX_ALIASES * ALIAS_BYTES)
#define SPILL_BUF (64u << 10)
#define PREFIX "profiles.spill."

typedef struct slot {
  uint64_t key;
  uint64_t off;
} slot_t;

struct spill {
  char *dir;
  int fd;
  uint64_t gen, seed, max_ids;
  uint64_t flushed; /* bytes in the file */
  buf_t wbuf;       /* appended after flushed */
  slot_t *t;
  uint32_t t_bits;
  uint64_t t_count;
  uint64_t live_profiles, garbage;
  uint64_t puts, takes, compactions;
};

/* ---- little-endian fields ---- */

static void wr32(unsigned char *b, uint32_t v) {
  for (int i = 0; i < 4; i++) b[i] = (unsigned char)(v >> (8 * i));
}
static void wr64(unsigned char *b, uint64_t v) {
  for (int i = 0; i < 8; i++) b[i] = (unsigned char)(v >> (8 * i));
}
static uint32_t rd32(const unsigned char *b) {
  return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}
static uint64_t rd64(const unsigned char *b) { return rd32(b) | (uint64_t)rd32(b + 4) << 32; }

/* ---- index ---- */

static uint64_t home(const spill_t *s, uint64_t key) {
  return (key * 0x9E3779B97F4A7C15ull) >> (64 - s->t_bits);
}

static uint64_t t_pos(const spill_t *s, uint64_t key) {
  uint64_t mask = (1ull << s->t_bits) - 1;
  for (uint64_t i = home(s, key);; i = (i + 1) & mask) {
    if (s->t[i].key == key || !s->t[i].key) return i;
  }
}

static void t_grow(spill_t *s) {
  slot_t *old = s->t;
  uint64_t n = 1ull << s->t_bits;
  s->t_bits++;
  s->t = xcalloc((size_t)1 << s->t_bits, sizeof(slot_t));
  for (uint64_t i = 0; i < n; i++)
    if (old[i].key) s->t[t_pos(s, old[i].key)] = old[i];
  free(old);
}

static void t_set(spill_t *s, uint64_t key, uint64_t off) {
  if ((s->t_count + 1) * 4 > (3ull << s->t_bits)) t_grow(s);
  uint64_t i = t_pos(s, key);
  if (!s->t[i].key) s->t_count++;
  s->t[i] = (slot_t){key, off};
}

static int t_get(const spill_t *s, uint64_t key, uint64_t *off) {
  uint64_t i = t_pos(s, key);
  if (!s->t[i].key) return 0;
  *off = s->t[i].off;
  return 1;
}

static void t_del(spill_t *s, uint64_t key) {
  uint64_t mask = (1ull << s->t_bits) - 1, i = t_pos(s, key);
  if (!s->t[i].key) return;
  for (uint64_t j = (i + 1) & mask; s->t[j].key; j = (j + 1) & mask) {
    uint64_t h = home(s, s->t[j].key);
    int stays = i <= j ? (h > i && h <= j) : (h > i || h <= j);
    if (!stays) {
      s->t[i] = s->t[j];
      i = j;
    }
  }
  s->t[i].key = 0;
  s->t_count--;
}

/* ---- file ---- */

static char *gen_path(const char *dir, uint64_t gen) {
  size_t n = strlen(dir) + sizeof PREFIX + 24;
  char *p = xmalloc(n);
  snprintf(p, n, "%s/" PREFIX "%" PRIu64, dir, gen);
  return p;
}

static int write_all(int fd, const void *p, size_t n) {
  const char *c = p;
  while (n) {
    ssize_t w = write(fd, c, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return -errno;
    }
    c += w;
    n -= (size_t)w;
  }
  return 0;
}

static int flush(spill_t *s) {
  if (!s->wbuf.len) return 0;
  int rc = write_all(s->fd, s->wbuf.data, s->wbuf.len);
  if (rc) {
    /* Cut what part reached the file, so the next flush lands at `flushed` again. */
    if (ftruncate(s->fd, (off_t)s->flushed) != 0) return rc;
    lseek(s->fd, (off_t)s->flushed, SEEK_SET);
    return rc;
  }
  s->flushed += s->wbuf.len;
  s->wbuf.len = 0;
  return 0;
}

static uint64_t end_of(const spill_t *s) { return s->flushed + s->wbuf.len; }

/* Read n bytes at off, from the file or the write buffer. */
static int read_at(const spill_t *s, uint64_t off, void *dst, size_t n) {
  if (off >= s->flushed) {
    if (off + n > end_of(s)) return -EBADMSG;
    memcpy(dst, s->wbuf.data + (off - s->flushed), n);
    return 0;
  }
  if (off + n > s->flushed) return -EBADMSG; /* records never straddle a flush */
  size_t got = 0;
  while (got < n) {
    ssize_t r = pread(s->fd, (char *)dst + got, n - got, (off_t)(off + got));
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return -errno;
    if (r == 0) return -EBADMSG;
    got += (size_t)r;
  }
  return 0;
}

/* A PUT body's parts. */
static uint64_t put_key(const unsigned char *rec) { return rd64(rec + REC_HEAD + 1); }
static size_t put_aliases(const unsigned char *rec) {
  return rec[REC_HEAD + PUT_FIXED - 2] | (size_t)rec[REC_HEAD + PUT_FIXED - 1] << 8;
}
static uint64_t alias_key(const unsigned char *rec, size_t i) {
  return rd64(rec + REC_HEAD + PUT_FIXED + i * ALIAS_BYTES);
}

/* The body length of the whole, valid record at rec (avail bytes there), or -EBADMSG. */
static long check_record(const unsigned char *rec, size_t avail) {
  if (avail < REC_HEAD) return -EBADMSG;
  uint32_t len = rd32(rec + 4);
  if (len < DEL_BODY || len > PUT_MAX || len > avail - REC_HEAD) return -EBADMSG;
  if (crc32c(0, rec + 4, 4 + len) != rd32(rec)) return -EBADMSG;
  unsigned kind = rec[REC_HEAD];
  if (kind == K_DEL && len == DEL_BODY) return len;
  if (kind == K_PUT && len >= PUT_FIXED && len == PUT_FIXED + put_aliases(rec) * ALIAS_BYTES)
    return len;
  return -EBADMSG;
}

/* The record at off into rec (at least REC_HEAD + PUT_MAX bytes): its body length, or a
 * negative errno. */
static long read_record(const spill_t *s, uint64_t off, unsigned char *rec) {
  int rc = read_at(s, off, rec, REC_HEAD);
  if (rc) return rc;
  uint32_t len = rd32(rec + 4);
  if (len < DEL_BODY || len > PUT_MAX) return -EBADMSG;
  if ((rc = read_at(s, off + REC_HEAD, rec + REC_HEAD, len))) return rc;
  return check_record(rec, REC_HEAD + len);
}

/* Reading the file front to back a large block at a time (scan, compaction). */
#define SEQ_BUF (1u << 20)
typedef struct seq {
  int fd;
  unsigned char *buf;
  size_t have, pos; /* bytes in buf; where the next record starts */
  uint64_t off;     /* file offset of buf[pos] */
  uint64_t end;
} seq_t;

/* The next record before end: *rec points at it in the block (valid until the next
 * call), *at is its offset. Its body length, 0 at the end, or a negative errno. */
static long seq_next(seq_t *q, const unsigned char **rec, uint64_t *at) {
  if (q->off >= q->end) return 0;
  size_t left = q->have - q->pos;
  if (left < REC_HEAD + PUT_MAX && q->off + left < q->end) {
    memmove(q->buf, q->buf + q->pos, left);
    q->have = left;
    q->pos = 0;
    uint64_t want = q->end - (q->off + left);
    if (want > SEQ_BUF - left) want = SEQ_BUF - left;
    while (want) {
      ssize_t r = pread(q->fd, q->buf + q->have, (size_t)want, (off_t)(q->off + q->have));
      if (r < 0 && errno == EINTR) continue;
      if (r < 0) return -errno;
      if (r == 0) return -EBADMSG;
      q->have += (size_t)r;
      want -= (uint64_t)r;
    }
    left = q->have;
  }
  if (left > q->end - q->off) left = (size_t)(q->end - q->off);
  long n = check_record(q->buf + q->pos, left);
  if (n < 0) return n;
  *rec = q->buf + q->pos;
  *at = q->off;
  q->pos += REC_HEAD + (size_t)n;
  q->off += REC_HEAD + (uint64_t)n;
  return n;
}

static int append(spill_t *s, const unsigned char *body, size_t len) {
  unsigned char h[REC_HEAD];
  wr32(h + 4, (uint32_t)len);
  wr32(h, crc32c(crc32c(0, h + 4, 4), body, len));
  if (s->wbuf.len + REC_HEAD + len > SPILL_BUF) {
    int rc = flush(s);
    if (rc) return rc;
  }
  buf_append(&s->wbuf, h, REC_HEAD);
  buf_append(&s->wbuf, body, len);
  return 0;
}

/* Drop from the index every key of the PUT rec (at off) that still points at it. */
static void unindex(spill_t *s, const unsigned char *rec, uint64_t off) {
  uint64_t o;
  if (t_get(s, put_key(rec), &o) && o == off) t_del(s, put_key(rec));
  for (size_t i = 0; i < put_aliases(rec); i++)
    if (t_get(s, alias_key(rec, i), &o) && o == off) t_del(s, alias_key(rec, i));
}

/* Point every key of the PUT rec at off (later records win over earlier ones). */
static void index_put(spill_t *s, const unsigned char *rec, uint64_t off) {
  t_set(s, put_key(rec), off);
  for (size_t i = 0; i < put_aliases(rec); i++) t_set(s, alias_key(rec, i), off);
}

/* Make a new file's name durable. */
static int sync_dir(const char *dir) {
  int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return -errno;
  int rc = fsync(fd) != 0 ? -errno : 0;
  close(fd);
  return rc;
}

static int write_header(int fd, uint64_t seed, uint64_t gen) {
  unsigned char h[HEAD] = {0};
  memcpy(h, MAGIC, 4);
  wr32(h + 4, SPILL_VERSION);
  wr64(h + 8, seed);
  wr64(h + 16, gen);
  return write_all(fd, h, HEAD);
}

/* Rebuild the index from the first len bytes. 0 or a message. */
static int scan(spill_t *s, uint64_t len, char *err, size_t errlen) {
  unsigned char put[REC_HEAD + PUT_MAX];
  seq_t q = {.fd = s->fd, .buf = xmalloc(SEQ_BUF), .off = HEAD, .end = len};
  const unsigned char *rec;
  uint64_t off;
  long n;
  while ((n = seq_next(&q, &rec, &off)) > 0) {
    if (rec[REC_HEAD] == K_PUT) {
      index_put(s, rec, off);
      s->live_profiles++;
    } else {
      uint64_t at = rd64(rec + REC_HEAD + 9);
      long pn = at < off ? read_record(s, at, put) : -EBADMSG;
      if (pn < 0 || put[REC_HEAD] != K_PUT || put_key(put) != rd64(rec + REC_HEAD + 1)) {
        snprintf(err, errlen, "profile spill: a deletion at byte %" PRIu64 " names no record",
                 off);
        free(q.buf);
        return -1;
      }
      unindex(s, put, at);
      s->live_profiles--;
      s->garbage += (uint64_t)(REC_HEAD + pn) + REC_HEAD + (uint64_t)n;
    }
  }
  free(q.buf);
  if (n < 0) {
    snprintf(err, errlen, "profile spill damaged at byte %" PRIu64, q.off);
    return -1;
  }
  return 0;
}

/* ---- public ---- */

spill_t *spill_open(const char *dir, uint64_t gen, uint64_t len, uint64_t seed,
                    uint64_t max_ids, char *err, size_t errlen) {
  char *path = gen_path(dir, gen);
  int fd = len ? open(path, O_RDWR | O_CLOEXEC)
               : open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) {
    snprintf(err, errlen, "cannot open the profile spill %s: %s", path, strerror(errno));
    free(path);
    return NULL;
  }
  spill_t *s = xcalloc(1, sizeof *s);
  s->dir = xstrdup(dir);
  s->fd = fd;
  s->gen = gen;
  s->seed = seed;
  s->max_ids = max_ids ? max_ids : (1u << 24);
  s->wbuf = (buf_t)BUF_INIT;
  s->t_bits = 10;
  s->t = xcalloc((size_t)1 << s->t_bits, sizeof(slot_t));
  if (!len) {
    int rc = write_header(fd, seed, gen);
    if (!rc) rc = sync_dir(dir);
    if (rc) {
      snprintf(err, errlen, "cannot write the profile spill %s: %s", path, strerror(-rc));
      goto fail;
    }
    s->flushed = HEAD;
    free(path);
    return s;
  }
  unsigned char h[HEAD];
  off_t size = lseek(fd, 0, SEEK_END);
  if (size < 0 || (uint64_t)size < len || len < HEAD || pread(fd, h, HEAD, 0) != HEAD) {
    snprintf(err, errlen, "the profile spill %s is shorter than the snapshot says", path);
    goto fail;
  }
  if (memcmp(h, MAGIC, 4) || rd32(h + 4) != SPILL_VERSION || rd64(h + 8) != seed ||
      rd64(h + 16) != gen) {
    snprintf(err, errlen, "the profile spill %s belongs to another snapshot", path);
    goto fail;
  }
  if (ftruncate(fd, (off_t)len) != 0 || lseek(fd, (off_t)len, SEEK_SET) < 0) {
    snprintf(err, errlen, "cannot cut the profile spill %s: %s", path, strerror(errno));
    goto fail;
  }
  s->flushed = len;
  if (scan(s, len, err, errlen) != 0) goto fail;
  free(path);
  return s;
fail:
  free(path);
  spill_close(s);
  return NULL;
}

void spill_close(spill_t *s) {
  if (!s) return;
  if (s->fd >= 0) close(s->fd);
  buf_free(&s->wbuf);
  free(s->t);
  free(s->dir);
  free(s);
}

int spill_has(const spill_t *s, uint64_t key) {
  uint64_t off;
  return key && t_get(s, key, &off);
}

int spill_put(spill_t *s, const profile_t *p, const uint64_t *keys, const uint32_t *used,
              size_t n) {
  if (!p->id || n > SPILL_MAX_ALIASES || spill_has(s, p->id)) return -EINVAL;
  if (s->t_count + 1 + n > s->max_ids) return -ENOSPC;
  unsigned char body[PUT_MAX];
  body[0] = K_PUT;
  wr64(body + 1, p->id);
  memcpy(body + 9, p, sizeof *p);
  body[PUT_FIXED - 2] = (unsigned char)n;
  body[PUT_FIXED - 1] = (unsigned char)(n >> 8);
  for (size_t i = 0; i < n; i++) {
    wr64(body + PUT_FIXED + i * ALIAS_BYTES, keys[i]);
    wr32(body + PUT_FIXED + i * ALIAS_BYTES + 8, used[i]);
  }
  size_t len = PUT_FIXED + n * ALIAS_BYTES;
  int rc = append(s, body, len);
  if (rc) return rc;
  uint64_t off = end_of(s) - REC_HEAD - len; /* append may have flushed first */
  t_set(s, p->id, off);
  for (size_t i = 0; i < n; i++)
    if (keys[i] && keys[i] != p->id) t_set(s, keys[i], off);
  s->live_profiles++;
  s->puts++;
  return 0;
}

int spill_take(spill_t *s, uint64_t key, profile_t *p, uint64_t *keys, uint32_t *used,
               size_t *n, size_t cap) {
  uint64_t off;
  if (!key || !t_get(s, key, &off)) return 0;
  unsigned char rec[REC_HEAD + PUT_MAX];
  long len = read_record(s, off, rec);
  if (len < 0) return (int)len;
  if (rec[REC_HEAD] != K_PUT) return -EBADMSG;
  unsigned char del[DEL_BODY];
  del[0] = K_DEL;
  wr64(del + 1, put_key(rec));
  wr64(del + 9, off);
  int rc = append(s, del, sizeof del);
  if (rc) return rc;
  memcpy(p, rec + REC_HEAD + 9, sizeof *p);
  size_t na = put_aliases(rec);
  *n = 0;
  for (size_t i = 0; i < na && *n < cap; i++) {
    uint64_t o, k = alias_key(rec, i);
    if (!t_get(s, k, &o) || o != off) continue; /* taken over by a later record */
    keys[*n] = k;
    used[(*n)++] = rd32(rec + REC_HEAD + PUT_FIXED + i * ALIAS_BYTES + 8);
  }
  unindex(s, rec, off);
  s->live_profiles--;
  s->garbage += (uint64_t)(REC_HEAD + len) + REC_HEAD + DEL_BODY;
  s->takes++;
  return 1;
}

/* Copy the live PUTs into generation gen + 1 and switch to it. */
static int compact(spill_t *s) {
  char *path = gen_path(s->dir, s->gen + 1);
  int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  int rc = fd < 0 ? -errno : write_header(fd, s->seed, s->gen + 1);
  buf_t out = BUF_INIT;
  uint64_t at = HEAD;
  seq_t q = {.fd = s->fd, .buf = xmalloc(SEQ_BUF), .off = HEAD, .end = s->flushed};
  const unsigned char *rec;
  uint64_t off;
  long n;
  while (!rc && (n = seq_next(&q, &rec, &off)) != 0) {
    if (n < 0) {
      rc = (int)n;
      break;
    }
    uint64_t o;
    int live = rec[REC_HEAD] == K_PUT && t_get(s, put_key(rec), &o) && o == off;
    for (size_t i = 0; !live && rec[REC_HEAD] == K_PUT && i < put_aliases(rec); i++)
      live = t_get(s, alias_key(rec, i), &o) && o == off;
    if (live) {
      /* Re-point the keys that name this record; keys elsewhere keep their record. */
      uint64_t k = put_key(rec);
      if (t_get(s, k, &o) && o == off) t_set(s, k, at + out.len);
      for (size_t i = 0; i < put_aliases(rec); i++)
        if (t_get(s, alias_key(rec, i), &o) && o == off) t_set(s, alias_key(rec, i), at + out.len);
      buf_append(&out, rec, REC_HEAD + (size_t)n);
      if (out.len >= SPILL_BUF) {
        rc = write_all(fd, out.data, out.len);
        at += out.len;
        out.len = 0;
      }
    }
  }
  free(q.buf);
  if (!rc) rc = write_all(fd, out.data, out.len);
  at += out.len;
  buf_free(&out);
  if (!rc && fdatasync(fd) != 0) rc = -errno;
  if (!rc) rc = sync_dir(s->dir);
  if (rc) {
    /* The index may point into the new file already: rebuild it from the old one. */
    if (fd >= 0) close(fd);
    unlink(path);
    free(path);
    memset(s->t, 0, sizeof(slot_t) << s->t_bits);
    s->t_count = 0;
    s->live_profiles = s->garbage = 0;
    char err[128];
    return scan(s, s->flushed, err, sizeof err) ? -EBADMSG : rc;
  }
  free(path);
  close(s->fd);
  s->fd = fd;
  s->gen++;
  s->flushed = at;
  s->garbage = 0;
  s->compactions++;
  return 0;
}

int spill_commit(spill_t *s, uint64_t *gen, uint64_t *len) {
  int rc = flush(s);
  if (rc) return rc;
  if (s->garbage >= SPILL_COMPACT_MIN && s->garbage * 2 > s->flushed) {
    rc = compact(s);
    if (rc) return rc;
  }
  *gen = s->gen;
  *len = s->flushed;
  return 0;
}

int spill_sync_fd(const spill_t *s) {
  int fd = dup(s->fd); /* dup, not fcntl: ThreadSanitizer follows dup's new descriptor */
  if (fd < 0) return -errno;
  (void)fcntl(fd, F_SETFD, FD_CLOEXEC);
  return fd;
}

/* Remove spill files in dir whose generation is below gen (UINT64_MAX: all). */
static void remove_below(const char *dir, uint64_t gen) {
  DIR *d = opendir(dir);
  if (!d) return;
  struct dirent *e;
  while ((e = readdir(d))) {
    if (strncmp(e->d_name, PREFIX, sizeof PREFIX - 1)) continue;
    char *end;
    unsigned long long g = strtoull(e->d_name + sizeof PREFIX - 1, &end, 10);
    if (*end || g >= gen) continue;
    char *p = gen_path(dir, g);
    unlink(p);
    free(p);
  }
  closedir(d);
}

void spill_retire(const spill_t *s, uint64_t gen) { remove_below(s->dir, gen); }

void spill_remove_all(const char *dir) { remove_below(dir, UINT64_MAX); }

void spill_stats(const spill_t *s, spill_stats_t *out) {
  memset(out, 0, sizeof *out);
  if (!s) return;
  out->generation = s->gen;
  out->profiles = s->live_profiles;
  out->ids = s->t_count;
  out->bytes = end_of(s);
  out->garbage = s->garbage;
  out->index_bytes = sizeof(slot_t) << s->t_bits;
  out->puts = s->puts;
  out->takes = s->takes;
  out->compactions = s->compactions;
}
