/* profile_bench: memory per profile and CPU time per profile_apply at a million profiles,
 * beside a reference that does the floor of any hashed per-user store (format the id,
 * XXH3 it, read-modify-write a random 112-byte record in an array of the same size).
 * Built and run by bench/profile.sh; prints its figures. Argument: profile count (default
 * 1,000,000); the store's bound is that count. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#define XXH_INLINE_ALL
#include <xxhash.h>

#include "profile.h"

#define T0 1700000000

static uint64_t mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

/* "<prefix>-<16 hex digits of mix(i)>": uuid-like ids without a formatted-string cost. */
static size_t make_id(char *out, const char *prefix, uint64_t i) {
  static const char hex[] = "0123456789abcdef";
  size_t n = strlen(prefix);
  memcpy(out, prefix, n);
  out[n++] = '-';
  uint64_t h = mix(i);
  for (int k = 0; k < 16; k++) out[n++] = hex[(h >> (60 - 4 * k)) & 15];
  out[n] = 0;
  return n;
}

static double cpu_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static size_t rss_bytes(void) {
  FILE *f = fopen("/proc/self/statm", "r");
  unsigned long size = 0, resident = 0;
  if (f) {
    if (fscanf(f, "%lu %lu", &size, &resident) != 2) resident = 0;
    fclose(f);
  }
  return resident * (size_t)sysconf(_SC_PAGESIZE);
}

static uint64_t n_evicted, n_session_ends, n_bounces;
static void on_evict(void *ud, const profile_t *p, const uint64_t *keys,
                     const uint32_t *used, size_t n) {
  (void)ud, (void)p, (void)keys, (void)used, (void)n;
  n_evicted++;
}
static void on_session_end(void *ud, const profile_session_t *s) {
  (void)ud;
  n_session_ends++;
  n_bounces += s->pages == 1;
}

typedef struct rec {
  unsigned char b[112];
} rec_t;

int main(int argc, char **argv) {
  size_t n = argc > 1 ? strtoull(argv[1], NULL, 10) : 1000000;
  if (n < 1000) n = 1000;
  char id[64], uid[64];
  profile_result_t r;
  double t;

  size_t rss0 = rss_bytes();
  profile_opts_t o = {.max_profiles = n,
                      .kinds = {"Product Viewed", "Added to Cart", "Order Completed"},
                      .conversion_kinds = 1u << 2,
                      .seed = 1,
                      .on_evict = on_evict,
                      .on_session_end = on_session_end};
  profile_store_t *s = profile_store_new(&o);

  /* 1. n new visitors, one page each. */
  t = cpu_s();
  for (size_t i = 0; i < n; i++) {
    profile_event_t ev = {.t_us = (int64_t)(T0 + i / 1000) * 1000000,
                          .type = PROFILE_PAGE,
                          .kind = PROFILE_KIND_NONE};
    ev.anonymous_id = id;
    ev.anonymous_id_len = make_id(id, "anon", i);
    profile_apply(s, &ev, &r);
  }
  double new_ns = (cpu_s() - t) / n * 1e9;
  size_t rss1 = rss_bytes();
  size_t count1 = profile_count(s), bytes1 = profile_store_bytes(s);

  /* 2. 4n events on existing visitors in random order: pages, tracked events, orders. */
  int64_t now = T0 + (int64_t)n / 1000;
  t = cpu_s();
  for (size_t i = 0; i < 4 * n; i++) {
    uint64_t x = mix(i ^ 0x5555);
    int what = (int)(x >> 60) % 8;
    profile_event_t ev = {.t_us = (now + (int64_t)(i / 2000)) * 1000000,
                          .type = what < 5 ? PROFILE_PAGE : PROFILE_TRACK,
                          .kind = (uint8_t)(what < 5 ? PROFILE_KIND_NONE : what - 5),
                          .is_order = what == 7,
                          .revenue = what == 7 ? 49.99 : 0,
                          .campaign_hash = (x >> 20) % 50 == 0 ? x : 0};
    ev.anonymous_id = id;
    ev.anonymous_id_len = make_id(id, "anon", x % n);
    profile_apply(s, &ev, &r);
  }
  double hit_ns = (cpu_s() - t) / (4.0 * n) * 1e9;

  /* 3. A fifth of them log in: identify renames the anonymous profile (alias kept). */
  now += (int64_t)(4 * n) / 2000 + 1;
  t = cpu_s();
  size_t n_ident = n / 5;
  for (size_t i = 0; i < n_ident; i++) {
    profile_event_t ev = {
        .t_us = now * 1000000, .type = PROFILE_IDENTIFY, .kind = PROFILE_KIND_NONE};
    ev.anonymous_id = id;
    ev.anonymous_id_len = make_id(id, "anon", i * 5);
    ev.user_id = uid;
    ev.user_id_len = make_id(uid, "user", i * 5);
    profile_apply(s, &ev, &r);
  }
  double ident_ns = (cpu_s() - t) / n_ident * 1e9;
  size_t rss2 = rss_bytes(), bytes2 = profile_store_bytes(s),
         aliases2 = profile_alias_count(s);

  /* 4. Snapshot. */
  buf_t snap = BUF_INIT;
  t = cpu_s();
  profile_store_serialize(s, &snap);
  double ser_s = cpu_s() - t;
  profile_store_t *s2 = profile_store_new(&o);
  t = cpu_s();
  int rc = profile_store_deserialize(s2, snap.data, snap.len);
  double de_s = cpu_s() - t;
  profile_store_free(s2);
  size_t snap_len = snap.len;
  buf_free(&snap);

  /* 5. At the bound: n more new visitors, each evicting one (CLOCK) to the callback. */
  t = cpu_s();
  for (size_t i = 0; i < n; i++) {
    profile_event_t ev = {.t_us = (now + 1 + (int64_t)(i / 1000)) * 1000000,
                          .type = PROFILE_PAGE,
                          .kind = PROFILE_KIND_NONE};
    ev.anonymous_id = id;
    ev.anonymous_id_len = make_id(id, "new", i);
    profile_apply(s, &ev, &r);
  }
  double evict_ns = (cpu_s() - t) / n * 1e9;
  size_t bytes3 = profile_store_bytes(s);

  /* Reference: the same id formatting and hashing, then one random 112-byte record
   * touched. Run last, so its freed array cannot inflate the store's RSS figures. */
  rec_t *ref = calloc(n, sizeof *ref);
  for (size_t i = 0; i < n; i++) ref[i].b[0] = 1; /* fault the pages in first */
  t = cpu_s();
  uint64_t sink = 0;
  for (size_t i = 0; i < 4 * n; i++) {
    size_t len = make_id(id, "anon", mix(i ^ 0x5555) % n);
    uint64_t h = XXH3_64bits(id, len);
    rec_t *x = &ref[h % n];
    x->b[8]++;
    sink += x->b[0];
  }
  double ref_ns = (cpu_s() - t) / (4.0 * n) * 1e9;
  free(ref);

  printf("profile store, %zu profiles (bound %zu), sizeof(profile_t) = %zu\n", count1, n,
         sizeof(profile_t));
  printf("  memory after n new profiles:  %.1f B/profile RSS, %.1f B/profile store bytes\n",
         (double)(rss1 - rss0) / count1, (double)bytes1 / count1);
  printf(
      "  + %zu identified (%zu aliases): %.1f B/profile RSS, %.1f B/profile store bytes\n",
      n_ident, aliases2, (double)(rss2 - rss0) / profile_count(s),
      (double)bytes2 / profile_count(s));
  /* RSS is not reported here: the freed snapshot and second store leave heap pages the
   * allocator keeps, which would be charged to the store. */
  printf(
      "  after n evictions:            %.1f B/profile store bytes (%zu profiles, %zu "
      "aliases)\n",
      (double)bytes3 / profile_count(s), profile_count(s), profile_alias_count(s));
  printf("  CPU ns per profile_apply (ids formatted and hashed in the loop):\n");
  printf("    new profile                 %7.1f\n", new_ns);
  printf("    existing profile, random    %7.1f   (%.2fx reference)\n", hit_ns,
         hit_ns / ref_ns);
  printf("    identify (anon -> user)     %7.1f\n", ident_ns);
  printf("    new profile + eviction      %7.1f   (%" PRIu64 " evicted)\n", evict_ns,
         n_evicted);
  printf("    reference: id + XXH3 + random 112-byte RMW  %.1f\n", ref_ns);
  printf(
      "  snapshot: %.1f B/profile, serialize %.1f ns/profile, load %.1f ns/profile (rc "
      "%d)\n",
      (double)snap_len / count1, ser_s / count1 * 1e9, de_s / count1 * 1e9, rc);
  printf("  sessions ended %" PRIu64 ", bounces %" PRIu64 " (sink %" PRIu64 ")\n",
         n_session_ends, n_bounces, sink & 1);
  profile_store_free(s);
  return 0;
}
