/* ratelimit: bounded per-address token buckets (see ratelimit.h). */
#include "ratelimit.h"

#include <math.h>
#include <string.h>

#include "util/mem.h"

#define KEY_MAX 46 /* INET6_ADDRSTRLEN */
#define WINDOW 8

typedef struct bucket {
  char key[KEY_MAX];
  double tokens;
  int64_t last_us;
} bucket_t;

struct ratelimit {
  double rate, burst;
  size_t mask;
  bucket_t *slots;
};

ratelimit_t *ratelimit_new(double rate, double burst, size_t slots) {
  ratelimit_t *rl = xcalloc(1, sizeof *rl);
  rl->rate = rate;
  rl->burst = burst >= 1 ? burst : (rate >= 1 ? rate : 1);
  size_t n = 1;
  while (n < (slots ? slots : 65536)) n <<= 1;
  rl->mask = n - 1;
  rl->slots = rate > 0 ? xcalloc(n, sizeof *rl->slots) : NULL;
  return rl;
}

void ratelimit_free(ratelimit_t *rl) {
  if (!rl) return;
  free(rl->slots);
  free(rl);
}

static uint64_t hash(const char *s) {
  uint64_t h = 1469598103934665603ull; /* FNV-1a */
  for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
  return h;
}

uint32_t ratelimit_take(ratelimit_t *rl, const char *key, int64_t now_us) {
  if (rl->rate <= 0) return 0;
  size_t base = (size_t)hash(key), victim = base & rl->mask;
  bucket_t *b = NULL;
  for (size_t i = 0; i < WINDOW; i++) {
    bucket_t *s = &rl->slots[(base + i) & rl->mask];
    if (strncmp(s->key, key, KEY_MAX) == 0) {
      b = s;
      break;
    }
    if (s->last_us < rl->slots[victim].last_us) victim = (base + i) & rl->mask;
  }
  if (!b) {
    b = &rl->slots[victim];
    strncpy(b->key, key, KEY_MAX - 1);
    b->key[KEY_MAX - 1] = 0;
    b->tokens = rl->burst;
    b->last_us = now_us;
  }
  /* Times from requests read in one turn may come a little out of order: the bucket's
   * clock only moves forward, so no interval is credited twice. */
  if (now_us > b->last_us) {
    b->tokens = fmin(rl->burst, b->tokens + (double)(now_us - b->last_us) / 1e6 * rl->rate);
    b->last_us = now_us;
  }
  if (b->tokens >= 1) {
    b->tokens -= 1;
    return 0;
  }
  double wait = (1 - b->tokens) / rl->rate;
  return (uint32_t)ceil(wait < 1 ? 1 : wait);
}
