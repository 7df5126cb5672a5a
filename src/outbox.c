/* outbox: the durable journal of webhook actions (see outbox.h). */
#include "outbox.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "util/buf.h"
#include "util/crc32c.h"
#include "util/mem.h"

#define HEADER 8 /* u32 length | u32 crc */
#define MAX_RECORD (OUTBOX_MAX_BODY + 256)

typedef struct list {
  outbox_entry_t *head, *tail;
  uint64_t n;
} list_t;

struct outbox {
  char path[4096];
  int fd;
  int error;            /* sticky write error */
  outbox_opts_t opts;
  outbox_entry_t **buckets;
  size_t nbuckets, nentries;
  list_t lists[4];      /* by state */
  uint64_t bytes;       /* bodies of pending + dead */
  uint64_t file_bytes, live_bytes, unsynced, dropped;
  buf_t rec;
};

/* ---- entries ---- */

static size_t bucket(const outbox_t *o, const char *key) {
  return (size_t)XXH3_64bits(key, strlen(key)) & (o->nbuckets - 1);
}

outbox_entry_t *outbox_find(const outbox_t *o, const char *key) {
  for (outbox_entry_t *e = o->buckets[bucket(o, key)]; e; e = e->hnext)
    if (!strcmp(e->key, key)) return e;
  return NULL;
}

static void list_push(list_t *l, outbox_entry_t *e) {
  e->next = NULL;
  e->prev = l->tail;
  if (l->tail) l->tail->next = e;
  else l->head = e;
  l->tail = e;
  l->n++;
}

static void list_unlink(list_t *l, outbox_entry_t *e) {
  if (e->prev) e->prev->next = e->next;
  else l->head = e->next;
  if (e->next) e->next->prev = e->prev;
  else l->tail = e->prev;
  e->prev = e->next = NULL;
  l->n--;
}

static void set_state(outbox_t *o, outbox_entry_t *e, outbox_state_t s) {
  if (e->state) list_unlink(&o->lists[e->state], e);
  e->state = s;
  list_push(&o->lists[s], e);
}

static uint64_t live_size(const outbox_entry_t *e);

/* Move an existing entry to state s (done: its body is freed and at_us is the delivery
 * time), keeping the byte counts right. */
static void become(outbox_t *o, outbox_entry_t *e, outbox_state_t s, int64_t at_us) {
  o->live_bytes -= live_size(e);
  if (s == OUTBOX_DONE) {
    o->bytes -= e->body_len;
    free(e->body);
    e->body = NULL;
    e->body_len = 0;
    e->at_us = at_us;
  }
  set_state(o, e, s);
  o->live_bytes += live_size(e);
}

/* Live bytes an entry needs in a compacted file. */
static uint64_t live_size(const outbox_entry_t *e) {
  size_t k = strlen(e->key) + 1 + 8 + 1 + HEADER;
  if (e->state == OUTBOX_DONE) return k;
  return k + strlen(e->endpoint) + 1 + e->body_len + (e->state == OUTBOX_DEAD ? k : 0);
}

static void grow(outbox_t *o) {
  size_t n = o->nbuckets * 2;
  outbox_entry_t **b = xcalloc(n, sizeof *b);
  for (size_t i = 0; i < o->nbuckets; i++)
    for (outbox_entry_t *e = o->buckets[i], *next; e; e = next) {
      next = e->hnext;
      size_t j = (size_t)XXH3_64bits(e->key, strlen(e->key)) & (n - 1);
      e->hnext = b[j];
      b[j] = e;
    }
  free(o->buckets);
  o->buckets = b;
  o->nbuckets = n;
}

static outbox_entry_t *entry_new(outbox_t *o, const char *key) {
  if (o->nentries >= o->nbuckets) grow(o);
  outbox_entry_t *e = xcalloc(1, sizeof *e);
  snprintf(e->key, sizeof e->key, "%s", key);
  size_t b = bucket(o, key);
  e->hnext = o->buckets[b];
  o->buckets[b] = e;
  o->nentries++;
  return e;
}

static void entry_free(outbox_t *o, outbox_entry_t *e) {
  outbox_entry_t **pp = &o->buckets[bucket(o, e->key)];
  while (*pp != e) pp = &(*pp)->hnext;
  *pp = e->hnext;
  list_unlink(&o->lists[e->state], e);
  o->live_bytes -= live_size(e);
  if (e->state != OUTBOX_DONE) o->bytes -= e->body_len;
  o->nentries--;
  free(e->body);
  free(e);
}

/* ---- records ---- */

static int write_all(int fd, const void *p, size_t n) {
  while (n) {
    ssize_t w = write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return w < 0 ? -errno : -EIO;
    p = (const char *)p + w;
    n -= (size_t)w;
  }
  return 0;
}

/* Frame type + key\0 + time [+ endpoint\0 + body] into o->rec. */
static void frame(outbox_t *o, char type, const char *key, int64_t at_us, const char *endpoint,
                  const char *body, size_t len) {
  buf_t *b = &o->rec;
  buf_reset(b);
  uint32_t zero = 0;
  buf_append(b, &zero, 4);
  buf_append(b, &zero, 4);
  buf_putc(b, type);
  buf_append(b, key, strlen(key) + 1);
  buf_append(b, &at_us, 8);
  if (endpoint) {
    buf_append(b, endpoint, strlen(endpoint) + 1);
    buf_append(b, body, len);
  }
  uint32_t n = (uint32_t)(b->len - HEADER), crc = crc32c(0, b->data + HEADER, n);
  memcpy(b->data, &n, 4);
  memcpy(b->data + 4, &crc, 4);
}

static int emit(outbox_t *o, char type, const char *key, int64_t at_us, const char *endpoint,
                const char *body, size_t len) {
  if (o->error) return o->error;
  frame(o, type, key, at_us, endpoint, body, len);
  int rc = write_all(o->fd, o->rec.data, o->rec.len);
  if (rc) return o->error = rc;
  o->file_bytes += o->rec.len;
  o->unsynced += o->rec.len;
  if (o->rec.cap > 256 * 1024) buf_free(&o->rec);
  return 0;
}

/* Apply one record's payload p[0..n) during replay. Returns 0, -1 when malformed. */
static int apply(outbox_t *o, const char *p, size_t n) {
  if (n < 1 + 1 + 8) return -1;
  char type = p[0];
  const char *key = p + 1;
  const char *kend = memchr(key, 0, n - 1);
  if (!kend || kend == key || (size_t)(kend - key) >= ACTION_KEY_MAX) return -1;
  size_t off = (size_t)(kend - p) + 1;
  if (n - off < 8) return -1;
  int64_t at;
  memcpy(&at, p + off, 8);
  off += 8;
  outbox_entry_t *e = outbox_find(o, key);
  switch (type) {
  case 'A': {
    const char *ep = p + off, *eend = memchr(ep, 0, n - off);
    if (!eend || eend == ep || (size_t)(eend - ep) > OUTBOX_MAX_NAME) return -1;
    if (e) return 0; /* accepted once: the first record wins */
    e = entry_new(o, key);
    memcpy(e->endpoint, ep, (size_t)(eend - ep));
    off = (size_t)(eend - p) + 1;
    e->body_len = n - off;
    e->body = xmalloc(e->body_len + 1);
    memcpy(e->body, p + off, e->body_len);
    e->body[e->body_len] = 0;
    e->at_us = at;
    o->bytes += e->body_len;
    set_state(o, e, OUTBOX_PENDING);
    break;
  }
  case 'D':
    if (e && e->state == OUTBOX_DONE) return 0;
    if (e) {
      become(o, e, OUTBOX_DONE, at);
      return 0;
    }
    e = entry_new(o, key);
    e->at_us = at;
    set_state(o, e, OUTBOX_DONE);
    break;
  case 'X':
  case 'R':
    if (e && e->state == (type == 'X' ? OUTBOX_PENDING : OUTBOX_DEAD))
      become(o, e, type == 'X' ? OUTBOX_DEAD : OUTBOX_PENDING, at);
    return 0;
  default:
    return -1;
  }
  o->live_bytes += live_size(e);
  return 0;
}

/* Replay the file; cut a torn or corrupt tail. */
static int replay(outbox_t *o, char *err, size_t errlen) {
  struct stat st;
  if (fstat(o->fd, &st) != 0) return -errno;
  uint64_t pos = 0, size = (uint64_t)st.st_size;
  char *rec = NULL;
  size_t cap = 0;
  while (pos + HEADER <= size) {
    uint32_t hdr[2];
    if (pread(o->fd, hdr, HEADER, (off_t)pos) != HEADER) break;
    if (hdr[0] == 0 || hdr[0] > MAX_RECORD || pos + HEADER + hdr[0] > size) break;
    if (cap < hdr[0]) rec = xrealloc(rec, cap = hdr[0]);
    if (pread(o->fd, rec, hdr[0], (off_t)(pos + HEADER)) != (ssize_t)hdr[0]) break;
    if (crc32c(0, rec, hdr[0]) != hdr[1] || apply(o, rec, hdr[0]) != 0) break;
    pos += HEADER + hdr[0];
  }
  free(rec);
  while (o->lists[OUTBOX_DONE].n > o->opts.remember_max) entry_free(o, o->lists[OUTBOX_DONE].head);
  if (pos < size) {
    o->dropped = size - pos;
    if (ftruncate(o->fd, (off_t)pos) != 0 || fdatasync(o->fd) != 0) {
      snprintf(err, errlen, "%s: cannot cut the torn tail: %s", o->path, strerror(errno));
      return -1;
    }
  }
  o->file_bytes = pos;
  if (lseek(o->fd, (off_t)pos, SEEK_SET) < 0) return -1;
  return 0;
}

/* ---- life cycle ---- */

outbox_t *outbox_open(const char *dir, const outbox_opts_t *opts, char *err, size_t errlen) {
  if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
    snprintf(err, errlen, "%s: %s", dir, strerror(errno));
    return NULL;
  }
  outbox_t *o = xcalloc(1, sizeof *o);
  o->opts.max_bytes = opts && opts->max_bytes ? opts->max_bytes : 64ull << 20;
  o->opts.remember_us = opts && opts->remember_us ? opts->remember_us : 7LL * 86400 * 1000000;
  o->opts.remember_max = opts && opts->remember_max ? opts->remember_max : 1000000;
  o->nbuckets = 64;
  o->buckets = xcalloc(o->nbuckets, sizeof *o->buckets);
  snprintf(o->path, sizeof o->path, "%s/outbox", dir);
  o->fd = open(o->path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (o->fd < 0) {
    snprintf(err, errlen, "%s: %s", o->path, strerror(errno));
    outbox_close(o);
    return NULL;
  }
  if (replay(o, err, errlen) != 0) {
    outbox_close(o);
    return NULL;
  }
  return o;
}

void outbox_close(outbox_t *o) {
  if (!o) return;
  for (size_t i = 0; i < o->nbuckets; i++)
    for (outbox_entry_t *e = o->buckets[i], *next; e; e = next) {
      next = e->hnext;
      free(e->body);
      free(e);
    }
  free(o->buckets);
  if (o->fd >= 0) close(o->fd);
  buf_free(&o->rec);
  free(o);
}

/* ---- transitions ---- */

int outbox_add(outbox_t *o, const char *key, const char *endpoint, const char *body,
               size_t len, int64_t now_us, outbox_entry_t **out) {
  size_t kl = key ? strlen(key) : 0, el = endpoint ? strlen(endpoint) : 0;
  if (out) *out = NULL;
  if (!kl || kl >= ACTION_KEY_MAX || !el || el > OUTBOX_MAX_NAME) return -EINVAL;
  if (len > OUTBOX_MAX_BODY) return -E2BIG;
  outbox_entry_t *e = outbox_find(o, key);
  if (e) {
    if (out) *out = e;
    return -EEXIST;
  }
  if (o->bytes + len > o->opts.max_bytes) return -ENOSPC;
  int rc = emit(o, 'A', key, now_us, endpoint, body, len);
  if (rc) return rc;
  e = entry_new(o, key);
  memcpy(e->endpoint, endpoint, el + 1);
  e->body = xmalloc(len + 1);
  memcpy(e->body, body, len);
  e->body[len] = 0;
  e->body_len = len;
  e->at_us = now_us;
  o->bytes += len;
  set_state(o, e, OUTBOX_PENDING);
  o->live_bytes += live_size(e);
  if (out) *out = e;
  return 0;
}

int outbox_done(outbox_t *o, outbox_entry_t *e, int64_t now_us) {
  if (e->state != OUTBOX_PENDING) return -EINVAL;
  int rc = emit(o, 'D', e->key, now_us, NULL, NULL, 0);
  if (rc) return rc;
  become(o, e, OUTBOX_DONE, now_us);
  while (o->lists[OUTBOX_DONE].n > o->opts.remember_max) entry_free(o, o->lists[OUTBOX_DONE].head);
  return 0;
}

int outbox_dead(outbox_t *o, outbox_entry_t *e, int64_t now_us) {
  if (e->state != OUTBOX_PENDING) return -EINVAL;
  int rc = emit(o, 'X', e->key, now_us, NULL, NULL, 0);
  if (!rc) become(o, e, OUTBOX_DEAD, now_us);
  return rc;
}

long outbox_requeue(outbox_t *o, const char *key, void (*fn)(void *ud, outbox_entry_t *e),
                    void *ud) {
  long n = 0;
  outbox_entry_t *next;
  for (outbox_entry_t *e = o->lists[OUTBOX_DEAD].head; e; e = next) {
    next = e->next;
    if (key && strcmp(key, e->key) != 0) continue;
    int rc = emit(o, 'R', e->key, e->at_us, NULL, NULL, 0);
    if (rc) return rc;
    become(o, e, OUTBOX_PENDING, e->at_us);
    n++;
    if (fn) fn(ud, e);
  }
  return n;
}

void outbox_each(outbox_t *o, outbox_state_t state, void (*fn)(void *ud, outbox_entry_t *e),
                 void *ud) {
  if (state < OUTBOX_PENDING || state > OUTBOX_DONE) return;
  for (outbox_entry_t *e = o->lists[state].head; e; e = e->next) fn(ud, e);
}

/* ---- durability ---- */

uint64_t outbox_unsynced(const outbox_t *o) { return o->unsynced; }
int outbox_fd(const outbox_t *o) { return o->fd; }

void outbox_synced(outbox_t *o, uint64_t bytes) {
  o->unsynced = bytes >= o->unsynced ? 0 : o->unsynced - bytes;
}

int outbox_sync(outbox_t *o) {
  if (o->error) return o->error;
  if (!o->unsynced) return 0;
  if (fdatasync(o->fd) != 0) return o->error = -errno;
  o->unsynced = 0;
  return 0;
}

/* The live records, in an order replay rebuilds the same state from. */
static void write_live(outbox_t *o, buf_t *out) {
  static const outbox_state_t order[] = {OUTBOX_DONE, OUTBOX_DEAD, OUTBOX_PENDING};
  for (int i = 0; i < 3; i++)
    for (outbox_entry_t *e = o->lists[order[i]].head; e; e = e->next) {
      if (e->state == OUTBOX_DONE) {
        frame(o, 'D', e->key, e->at_us, NULL, NULL, 0);
        buf_append(out, o->rec.data, o->rec.len);
        continue;
      }
      frame(o, 'A', e->key, e->at_us, e->endpoint, e->body, e->body_len);
      buf_append(out, o->rec.data, o->rec.len);
      if (e->state == OUTBOX_DEAD) {
        frame(o, 'X', e->key, e->at_us, NULL, NULL, 0);
        buf_append(out, o->rec.data, o->rec.len);
      }
    }
}

int outbox_compact(outbox_t *o, int64_t now_us) {
  while (o->lists[OUTBOX_DONE].head &&
         o->lists[OUTBOX_DONE].head->at_us < now_us - o->opts.remember_us)
    entry_free(o, o->lists[OUTBOX_DONE].head);
  if (o->error) return o->error;
  if (o->file_bytes <= 4 * o->live_bytes || o->file_bytes < (1u << 20)) return 0;
  buf_t b = BUF_INIT;
  write_live(o, &b);
  char tmp[4200];
  snprintf(tmp, sizeof tmp, "%s.tmp", o->path);
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  int rc = fd < 0 ? -errno : write_all(fd, b.data, b.len);
  if (!rc && fsync(fd) != 0) rc = -errno;
  if (!rc && rename(tmp, o->path) != 0) rc = -errno;
  if (rc) {
    if (fd >= 0) close(fd);
    unlink(tmp);
    buf_free(&b);
    return rc;
  }
  /* The renamed file is the journal now; append to it from here on. */
  close(o->fd);
  o->fd = open(o->path, O_RDWR | O_APPEND | O_CLOEXEC);
  close(fd);
  if (o->fd < 0) {
    buf_free(&b);
    return o->error = -errno;
  }
  char dir[4096];
  snprintf(dir, sizeof dir, "%s", o->path);
  char *slash = strrchr(dir, '/');
  if (slash) *slash = 0;
  int dfd = open(dir, O_RDONLY | O_DIRECTORY);
  if (dfd >= 0) {
    fsync(dfd);
    close(dfd);
  }
  o->file_bytes = b.len;
  o->unsynced = 0;
  buf_free(&b);
  return 0;
}

void outbox_stats(const outbox_t *o, outbox_stats_t *out) {
  out->pending = o->lists[OUTBOX_PENDING].n;
  out->dead = o->lists[OUTBOX_DEAD].n;
  out->done = o->lists[OUTBOX_DONE].n;
  out->bytes = o->bytes;
  out->file_bytes = o->file_bytes;
  out->dropped_tail_bytes = o->dropped;
}
