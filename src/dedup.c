/* dedup: bounded messageId window (see dedup.h). */
#include "dedup.h"

#include <cjson/cJSON.h>
#define XXH_INLINE_ALL
#include <xxhash.h>

#include "util/mem.h"

typedef struct entry {
  uint64_t lo, hi;
  int64_t t_us;
} entry_t;

struct dedup {
  entry_t *ring;
  size_t cap, head, count; /* oldest at head */
  uint32_t *slots;         /* ring index + 1, 0 = empty */
  size_t mask;
  int64_t window_us;
};

dedup_t *dedup_new(size_t max_entries, int64_t window_us) {
  if (!max_entries) return NULL;
  dedup_t *d = xcalloc(1, sizeof *d);
  d->cap = max_entries;
  d->ring = xcalloc(max_entries, sizeof *d->ring);
  size_t n = 16;
  while (n < max_entries * 2) n <<= 1;
  d->slots = xcalloc(n, sizeof *d->slots);
  d->mask = n - 1;
  d->window_us = window_us;
  return d;
}

void dedup_free(dedup_t *d) {
  if (!d) return;
  free(d->ring);
  free(d->slots);
  free(d);
}

size_t dedup_size(const dedup_t *d) { return d ? d->count : 0; }

static size_t find_slot(const dedup_t *d, uint64_t lo, uint64_t hi, int *found) {
  size_t i = lo & d->mask;
  for (;; i = (i + 1) & d->mask) {
    uint32_t v = d->slots[i];
    if (!v) {
      *found = 0;
      return i;
    }
    const entry_t *e = &d->ring[v - 1];
    if (e->lo == lo && e->hi == hi) {
      *found = 1;
      return i;
    }
  }
}

/* Remove the index slot i, shifting later members of its probe run back. */
static void slot_delete(dedup_t *d, size_t i) {
  size_t j = i;
  for (;;) {
    j = (j + 1) & d->mask;
    uint32_t v = d->slots[j];
    if (!v) break;
    size_t home = d->ring[v - 1].lo & d->mask;
    /* v may move to i if its home is not cyclically in (i, j]. */
    if ((j > i && (home <= i || home > j)) || (j < i && (home <= i && home > j))) {
      d->slots[i] = v;
      i = j;
    }
  }
  d->slots[i] = 0;
}

static void evict_oldest(dedup_t *d) {
  entry_t *e = &d->ring[d->head];
  int found;
  size_t i = find_slot(d, e->lo, e->hi, &found);
  if (found && d->slots[i] == d->head + 1) slot_delete(d, i);
  d->head = (d->head + 1) % d->cap;
  d->count--;
}

static void expire(dedup_t *d, int64_t now_us) {
  while (d->count && d->ring[d->head].t_us < now_us - d->window_us) evict_oldest(d);
}

int dedup_seen(dedup_t *d, const char *id, size_t len, int64_t now_us) {
  if (!d) return 0;
  expire(d, now_us);
  XXH128_hash_t h = XXH3_128bits(id, len);
  int found;
  find_slot(d, h.low64, h.high64, &found);
  return found;
}

void dedup_add(dedup_t *d, const char *id, size_t len, int64_t t_us) {
  if (!d) return;
  XXH128_hash_t h = XXH3_128bits(id, len);
  int found;
  size_t i = find_slot(d, h.low64, h.high64, &found);
  if (found) return;
  if (d->count == d->cap) {
    evict_oldest(d);
    i = find_slot(d, h.low64, h.high64, &found);
  }
  size_t r = (d->head + d->count) % d->cap;
  d->ring[r] = (entry_t){h.low64, h.high64, t_us};
  d->slots[i] = (uint32_t)(r + 1);
  d->count++;
}

long dedup_rebuild(dedup_t *d, log_t *log, int64_t now_us) {
  if (!d) return 0;
  uint64_t end = log_end_offset(log);
  uint64_t from = end > d->cap ? end - d->cap : 0;
  char err[256];
  log_reader_t *r = log_reader_open(log, from, err, sizeof err);
  if (!r) return -EIO;
  log_record_t rec;
  long n = 0;
  int rc;
  while ((rc = log_reader_next_intact(r, &rec, NULL)) == 1) {
    if (rec.time_us < now_us - d->window_us) continue;
    cJSON *ev = cJSON_ParseWithLength(rec.value, rec.value_len);
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(ev, "messageId");
    if (cJSON_IsString(m)) {
      dedup_add(d, m->valuestring, strlen(m->valuestring), rec.time_us);
      n++;
    }
    cJSON_Delete(ev);
  }
  log_reader_close(r);
  return rc < 0 ? rc : n;
}
