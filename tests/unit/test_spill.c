/* Unit tests for spill: put and take by profile or alias id, reopening at a snapshot's
 * (generation, length) and cutting what came after, damage and foreign files refused,
 * compaction into the next generation, the index bound; and the profile store with a
 * spill behind a small memory bound, which must end with the same lifetime counters for
 * every person as a store that never evicts. */
#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

#include "profile.h"
#include "spill.h"
#include "test.h"
#include "tmpdir.h"

#define SEED 4242u
#define T0 1700000000u

static profile_t person(uint64_t id, uint32_t orders) {
  profile_t p;
  memset(&p, 0, sizeof p);
  p.id = id;
  p.orders = orders;
  p.revenue_cents = (int64_t)orders * 1250;
  p.first_seen = T0;
  p.last_seen = T0 + orders;
  p.events = 3 * orders + 1;
  return p;
}

/* A new, empty spill (generation 1) in a fresh directory named name (its path in *dir). */
static spill_t *fresh(const char *name, uint64_t max_ids, const char **dir) {
  *dir = test_dir(name);
  mkdir(*dir, 0700);
  char err[256];
  spill_t *s = spill_open(*dir, 1, 0, SEED, max_ids, err, sizeof err);
  if (!s) printf("  spill_open: %s\n", err);
  return s;
}

static char path_buf[600];
static const char *gen_file(const char *dir, uint64_t gen) {
  snprintf(path_buf, sizeof path_buf, "%s/profiles.spill.%llu", dir, (unsigned long long)gen);
  return path_buf;
}

TEST(test_put_take_by_id_and_alias) {
  const char *dir;
  spill_t *s = fresh("basic", 0, &dir);
  REQUIRE(s);
  profile_t p = person(100, 2), q;
  uint64_t keys[2] = {200, 300}, k[8];
  uint32_t used[2] = {T0 + 1, T0 + 2}, u[8];
  size_t n = 99;
  CHECK_INT(spill_put(s, &p, keys, used, 2), 0);
  CHECK_INT(spill_put(s, &p, NULL, NULL, 0), -EINVAL); /* already there */
  CHECK(spill_has(s, 100) && spill_has(s, 200) && spill_has(s, 300) && !spill_has(s, 400));
  CHECK_INT(spill_take(s, 400, &q, k, u, &n, 8), 0);
  CHECK_INT(spill_take(s, 300, &q, k, u, &n, 8), 1); /* by an alias */
  CHECK(memcmp(&p, &q, sizeof p) == 0);
  CHECK_INT(n, 2);
  CHECK(k[0] == 200 && k[1] == 300 && u[0] == T0 + 1 && u[1] == T0 + 2);
  CHECK(!spill_has(s, 100) && !spill_has(s, 200) && !spill_has(s, 300));
  CHECK_INT(spill_take(s, 100, &q, k, u, &n, 8), 0);
  spill_stats_t st;
  spill_stats(s, &st);
  CHECK_INT(st.profiles, 0);
  CHECK_INT(st.ids, 0);
  CHECK_INT(st.puts, 1);
  CHECK_INT(st.takes, 1);
  spill_close(s);
}

TEST(test_reopen_cuts_after_the_snapshot) {
  const char *dir;
  char err[256];
  spill_t *s = fresh("reopen", 0, &dir);
  REQUIRE(s);
  for (uint64_t i = 1; i <= 1000; i++) {
    profile_t p = person(i, (uint32_t)i);
    uint64_t a = 100000 + i;
    uint32_t used = T0;
    CHECK_INT(spill_put(s, &p, &a, &used, 1), 0);
  }
  profile_t q;
  uint64_t k[4];
  uint32_t u[4];
  size_t n;
  for (uint64_t i = 1; i <= 100; i++) CHECK_INT(spill_take(s, i, &q, k, u, &n, 4), 1);
  uint64_t gen, len;
  CHECK_INT(spill_commit(s, &gen, &len), 0);
  CHECK_INT(gen, 1);
  /* After the snapshot: more changes that a crash would lose. */
  for (uint64_t i = 101; i <= 200; i++) CHECK_INT(spill_take(s, i, &q, k, u, &n, 4), 1);
  profile_t extra = person(5000, 1);
  CHECK_INT(spill_put(s, &extra, NULL, NULL, 0), 0);
  uint64_t g2, l2;
  CHECK_INT(spill_commit(s, &g2, &l2), 0);
  CHECK(l2 > len);
  spill_close(s);

  s = spill_open(dir, 1, len, SEED, 0, err, sizeof err);
  REQUIRE(s);
  CHECK(!spill_has(s, 50) && spill_has(s, 150) && spill_has(s, 100150) && !spill_has(s, 5000));
  CHECK_INT(spill_take(s, 100999, &q, k, u, &n, 4), 1);
  CHECK_INT(q.orders, 999);
  CHECK_INT(q.id, 999);
  spill_stats_t st;
  spill_stats(s, &st);
  CHECK_INT(st.profiles, 899);
  CHECK_INT(st.ids, 2 * 899);
  spill_close(s);
  struct stat sb;
  CHECK(stat(gen_file(dir, 1), &sb) == 0 && (uint64_t)sb.st_size == len);
}

TEST(test_damage_and_foreign_files_refused) {
  const char *dir;
  char err[256];
  spill_t *s = fresh("damage", 0, &dir);
  REQUIRE(s);
  for (uint64_t i = 1; i <= 50; i++) {
    profile_t p = person(i, 1);
    CHECK_INT(spill_put(s, &p, NULL, NULL, 0), 0);
  }
  uint64_t gen, len;
  CHECK_INT(spill_commit(s, &gen, &len), 0);
  spill_close(s);
  CHECK(spill_open(dir, 1, len, SEED + 1, 0, err, sizeof err) == NULL);
  CHECK(strstr(err, "another snapshot") != NULL);
  CHECK(spill_open(dir, 2, len, SEED, 0, err, sizeof err) == NULL);
  CHECK(spill_open(dir, 1, len + 1, SEED, 0, err, sizeof err) == NULL);
  CHECK(strstr(err, "shorter") != NULL);
  int fd = open(gen_file(dir, 1), O_RDWR);
  REQUIRE(fd >= 0);
  unsigned char byte;
  CHECK(pread(fd, &byte, 1, (off_t)len / 2) == 1);
  byte ^= 0x40;
  CHECK(pwrite(fd, &byte, 1, (off_t)len / 2) == 1);
  close(fd);
  CHECK(spill_open(dir, 1, len, SEED, 0, err, sizeof err) == NULL);
  CHECK(strstr(err, "damaged at byte") != NULL);
}

TEST(test_compaction_next_generation) {
  const char *dir;
  char err[256];
  spill_t *s = fresh("compact", 0, &dir);
  REQUIRE(s);
  /* 1,000 people stay; 60,000 come and go (about 9 MB of garbage). */
  for (uint64_t i = 1; i <= 1000; i++) {
    profile_t p = person(i, 7);
    uint64_t a = 1000000 + i;
    uint32_t used = T0 + (uint32_t)i;
    CHECK_INT(spill_put(s, &p, &a, &used, 1), 0);
  }
  profile_t q;
  uint64_t k[4];
  uint32_t u[4];
  size_t n;
  for (uint64_t i = 0; i < 60000; i++) {
    profile_t p = person(5000 + i, 1);
    if (spill_put(s, &p, NULL, NULL, 0) || spill_take(s, 5000 + i, &q, k, u, &n, 4) != 1) {
      FAILF("cycle %llu", (unsigned long long)i);
      break;
    }
  }
  spill_stats_t before, after;
  spill_stats(s, &before);
  uint64_t gen, len;
  CHECK_INT(spill_commit(s, &gen, &len), 0);
  spill_stats(s, &after);
  CHECK_INT(gen, 2);
  CHECK_INT(after.compactions, 1);
  CHECK(after.bytes < before.bytes / 10);
  CHECK_INT(after.garbage, 0);
  CHECK_INT(after.profiles, 1000);
  spill_retire(s, gen);
  struct stat sb;
  CHECK(stat(gen_file(dir, 1), &sb) != 0);
  spill_close(s);
  s = spill_open(dir, 2, len, SEED, 0, err, sizeof err);
  REQUIRE(s);
  CHECK_INT(spill_take(s, 1000777, &q, k, u, &n, 4), 1);
  CHECK_INT(q.id, 777);
  CHECK_INT(n, 1);
  CHECK_INT(u[0], T0 + 777);
  spill_close(s);
}

TEST(test_index_bound) {
  const char *dir;
  spill_t *s = fresh("bound", 16, &dir);
  REQUIRE(s);
  uint64_t a[3] = {900, 901, 902};
  uint32_t used[3] = {T0, T0, T0};
  int kept = 0, rc = 0;
  for (uint64_t i = 1; i <= 10 && rc == 0; i++) {
    profile_t p = person(i, 1);
    a[0] = 900 + 3 * i, a[1] = 901 + 3 * i, a[2] = 902 + 3 * i;
    if ((rc = spill_put(s, &p, a, used, 3)) == 0) kept++;
  }
  CHECK_INT(rc, -ENOSPC);
  CHECK_INT(kept, 4); /* 4 ids each: 16 */
  spill_close(s);
}

/* ---- the profile store with a spill behind it ---- */

static spill_t *cb_spill;
static uint64_t cb_dropped;

static void cb_evict(void *ud, const profile_t *p, const uint64_t *keys, const uint32_t *used,
                     size_t n) {
  (void)ud;
  if (spill_put(cb_spill, p, keys, used, n) != 0) cb_dropped++;
}

static int cb_fetch(void *ud, uint64_t key, profile_t *p, uint64_t *keys, uint32_t *used,
                    size_t *n, size_t cap) {
  (void)ud;
  return spill_take(cb_spill, key, p, keys, used, n, cap) == 1;
}

/* Random traffic (page views, orders, identifies, aliases, shared devices) into a store
 * of 64 profiles with a spill and one that never evicts: every id must end with the same
 * lifetime counters in both. Sessions differ by design (an eviction ends a session). */
TEST(test_store_with_spill_matches_unbounded_store) {
  const char *dir = test_dir("store");
  mkdir(dir, 0700);
  char err[256];
  profile_opts_t big = {.max_profiles = 100000, .max_aliases = 100000, .seed = SEED,
                        .kinds = {"Product Viewed", "Order Completed"},
                        .conversion_kinds = 2};
  profile_opts_t small = big;
  small.max_profiles = 64;
  small.on_evict = cb_evict;
  small.on_fetch = cb_fetch;
  profile_store_t *a = profile_store_new(&big), *b = profile_store_new(&small);
  REQUIRE(a && b);
  cb_spill = spill_open(dir, 1, 0, SEED, 0, err, sizeof err);
  REQUIRE(cb_spill);
  cb_dropped = 0;
  uint64_t x = 0x9E3779B97F4A7C15ull;
  char u[32], an[32], pv[32];
  int restored = 0;
  for (int i = 0; i < 40000; i++) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    snprintf(u, sizeof u, "u%u", (unsigned)(x % 300));
    snprintf(an, sizeof an, "a%u", (unsigned)(x >> 20) % 700);
    snprintf(pv, sizeof pv, "a%u", (unsigned)(x >> 40) % 700);
    int kind = (int)(x >> 60) % 8;
    profile_event_t ev = {.t_us = (int64_t)(T0 + (uint32_t)i * 7) * 1000000,
                          .type = kind < 4 ? PROFILE_PAGE : kind < 6 ? PROFILE_TRACK
                                  : kind < 7 ? PROFILE_IDENTIFY : PROFILE_ALIAS,
                          .user_id = (kind >= 6 || x % 3 == 0) ? u : NULL,
                          .anonymous_id = an,
                          .previous_id = pv,
                          .kind = (uint8_t)(kind == 5 ? 1 : kind == 4 ? 0 : PROFILE_KIND_NONE),
                          .is_order = kind == 5,
                          .revenue = kind == 5 ? 19.99 : 0};
    profile_result_t ra, rb;
    if (profile_apply(a, &ev, &ra) != 0 || profile_apply(b, &ev, &rb) != 0) {
      FAILF("event %d rejected", i);
      break;
    }
    if (rb.flags & PROFILE_R_RESTORED) restored++;
    if ((ra.flags & PROFILE_R_NEW_PROFILE) != (rb.flags & PROFILE_R_NEW_PROFILE)) {
      FAILF("event %d: new profile in one store only", i);
      break;
    }
    if (profile_count(b) > 64) {
      FAILF("event %d: %zu profiles in memory", i, profile_count(b));
      break;
    }
  }
  CHECK(restored > 1000);
  CHECK_INT(cb_dropped, 0);
  int compared = 0;
  for (unsigned i = 0; i < 300 + 700; i++) {
    char id[32];
    snprintf(id, sizeof id, i < 300 ? "u%u" : "a%u", i < 300 ? i : i - 300);
    const profile_t *pa = profile_get(a, id, 0);
    if (!pa) continue;
    profile_segments(b, id, 0, 0, 0); /* brings the person back into memory */
    const profile_t *pb = profile_get(b, id, 0);
    if (!pb) {
      FAILF("%s is lost", id);
      continue;
    }
    compared++;
    if (pa->id != pb->id || pa->events != pb->events || pa->orders != pb->orders ||
        pa->page_views != pb->page_views || pa->revenue_cents != pb->revenue_cents ||
        pa->first_seen != pb->first_seen || pa->last_seen != pb->last_seen ||
        memcmp(pa->kind_count, pb->kind_count, sizeof pa->kind_count) ||
        (pa->flags & PROFILE_F_IDENTIFIED) != (pb->flags & PROFILE_F_IDENTIFIED))
      FAILF("%s differs: events %u/%u orders %u/%u first %u/%u", id, pa->events, pb->events,
            pa->orders, pb->orders, pa->first_seen, pb->first_seen);
  }
  CHECK(compared > 300);
  profile_store_free(a);
  profile_store_free(b);
  spill_close(cb_spill);
}

int main(void) {
  if (tmpdir_init("spill")) return 1;
  RUN(test_put_take_by_id_and_alias);
  RUN(test_reopen_cuts_after_the_snapshot);
  RUN(test_damage_and_foreign_files_refused);
  RUN(test_compaction_next_generation);
  RUN(test_index_bound);
  RUN(test_store_with_spill_matches_unbounded_store);
  tmpdir_finish();
  return TEST_REPORT("test_spill");
}
