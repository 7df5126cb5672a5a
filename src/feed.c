/* feed: reservoir-sampled live event feed (see feed.h). */
#include "feed.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "util/clock.h"
#include "util/mem.h"

typedef struct slot {
  uint64_t seq; /* position in the tick: frames list events in processing order */
  int64_t t_us;
  double revenue;
  unsigned char has[FEED_MAX_DIMS];
  char val[FEED_MAX_DIMS][FEED_VALUE_MAX + 1];
} slot_t;

struct feed {
  const char *const *names;
  size_t ndims, cap, kept;
  uint64_t seen, rng;
  slot_t *slots;
};

feed_t *feed_new(const char *const *names, size_t ndims, size_t max_per_tick, uint64_t seed) {
  if (!ndims || ndims > FEED_MAX_DIMS) return NULL;
  feed_t *f = xcalloc(1, sizeof *f);
  f->names = names;
  f->ndims = ndims;
  f->cap = max_per_tick < 1 ? 1 : max_per_tick > FEED_MAX_PER_TICK ? FEED_MAX_PER_TICK : max_per_tick;
  f->rng = seed | 1;
  f->slots = xcalloc(f->cap, sizeof *f->slots);
  return f;
}

void feed_free(feed_t *f) {
  if (!f) return;
  free(f->slots);
  free(f);
}

/* xorshift64*: cheap, and good enough to pick which events a person sees. */
static uint64_t next_rand(feed_t *f) {
  f->rng ^= f->rng >> 12;
  f->rng ^= f->rng << 25;
  f->rng ^= f->rng >> 27;
  return f->rng * 0x2545F4914F6CDD1DULL;
}

/* Copy at most FEED_VALUE_MAX bytes, not cutting a UTF-8 sequence in two. */
static void copy_value(char *dst, const char *src) {
  size_t n = strlen(src);
  if (n > FEED_VALUE_MAX) {
    n = FEED_VALUE_MAX;
    while (n > 0 && ((unsigned char)src[n] & 0xC0) == 0x80) n--;
  }
  memcpy(dst, src, n);
  dst[n] = 0;
}

void feed_offer(feed_t *f, int64_t t_us, const char *const *values, double revenue) {
  uint64_t k = f->seen++;
  slot_t *s;
  if (f->kept < f->cap) {
    s = &f->slots[f->kept++];
  } else {
    uint64_t j = next_rand(f) % (k + 1);
    if (j >= f->cap) return;
    s = &f->slots[j];
  }
  s->seq = k;
  s->t_us = t_us;
  s->revenue = isfinite(revenue) ? revenue : 0;
  for (size_t i = 0; i < f->ndims; i++) {
    s->has[i] = values[i] != NULL;
    if (values[i]) copy_value(s->val[i], values[i]);
  }
}

static int by_seq(const void *a, const void *b) {
  uint64_t x = ((const slot_t *)a)->seq, y = ((const slot_t *)b)->seq;
  return x < y ? -1 : x > y;
}

uint64_t feed_flush(feed_t *f, int64_t now_us, buf_t *out) {
  uint64_t seen = f->seen;
  if (!seen) return 0;
  qsort(f->slots, f->kept, sizeof *f->slots, by_seq);
  char iso[25];
  clock_format_iso(now_us, iso);
  buf_printf(out, "{\"t\":\"%s\",\"seen\":%llu,\"shown\":%zu,\"events\":[", iso,
             (unsigned long long)seen, f->kept);
  for (size_t i = 0; i < f->kept; i++) {
    const slot_t *s = &f->slots[i];
    clock_format_iso(s->t_us, iso);
    buf_printf(out, "%s{\"t\":\"%s\"", i ? "," : "", iso);
    for (size_t d = 0; d < f->ndims; d++) {
      if (!s->has[d]) continue;
      buf_printf(out, ",\"%s\":\"", f->names[d]);
      buf_json_escape(out, s->val[d], strlen(s->val[d]));
      buf_putc(out, '"');
    }
    if (s->revenue != 0) buf_printf(out, ",\"revenue\":%.2f", s->revenue);
    buf_putc(out, '}');
  }
  buf_puts(out, "]}");
  f->seen = 0;
  f->kept = 0;
  return seen;
}
