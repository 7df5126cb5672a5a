/* Unit tests for the messageId window. */
#include "dedup.h"

#include "test.h"

TEST(seen_after_add) {
  dedup_t *d = dedup_new(100, 1000000);
  CHECK(!dedup_seen(d, "m1", 2, 0));
  dedup_add(d, "m1", 2, 0);
  CHECK(dedup_seen(d, "m1", 2, 10));
  CHECK(!dedup_seen(d, "m2", 2, 10));
  dedup_add(d, "m1", 2, 5);
  CHECK_INT(dedup_size(d), 1);
  dedup_free(d);
  CHECK(!dedup_seen(NULL, "m1", 2, 0));
  dedup_free(NULL);
}

TEST(count_bound_evicts_oldest) {
  dedup_t *d = dedup_new(1000, INT64_MAX / 4);
  char id[32];
  for (int i = 0; i < 5000; i++) {
    int n = snprintf(id, sizeof id, "id-%d", i);
    dedup_add(d, id, (size_t)n, i);
  }
  CHECK_INT(dedup_size(d), 1000);
  int old = 0, recent = 0;
  for (int i = 0; i < 5000; i++) {
    int n = snprintf(id, sizeof id, "id-%d", i);
    if (dedup_seen(d, id, (size_t)n, 5000)) *(i < 4000 ? &old : &recent) += 1;
  }
  CHECK_INT(old, 0);
  CHECK_INT(recent, 1000);
  dedup_free(d);
}

TEST(time_window_expires) {
  dedup_t *d = dedup_new(100, 1000);
  dedup_add(d, "a", 1, 0);
  dedup_add(d, "b", 1, 600);
  CHECK(dedup_seen(d, "a", 1, 900));
  CHECK(!dedup_seen(d, "a", 1, 1100));
  CHECK(dedup_seen(d, "b", 1, 1100));
  CHECK_INT(dedup_size(d), 1);
  dedup_free(d);
}

TEST(churn_keeps_index_consistent) {
  /* Many add/evict cycles through a small table exercise backward-shift deletion. */
  dedup_t *d = dedup_new(64, INT64_MAX / 4);
  char id[32];
  for (int i = 0; i < 100000; i++) {
    int n = snprintf(id, sizeof id, "k%d", i);
    dedup_add(d, id, (size_t)n, i);
    if (!dedup_seen(d, id, (size_t)n, i)) {
      FAILF("just-added id %d not found", i);
      break;
    }
    if (i >= 64) {
      n = snprintf(id, sizeof id, "k%d", i - 64);
      if (dedup_seen(d, id, (size_t)n, i)) {
        FAILF("evicted id %d still found", i - 64);
        break;
      }
    }
  }
  dedup_free(d);
}

int main(void) {
  RUN(seen_after_add);
  RUN(count_bound_evicts_oldest);
  RUN(time_window_expires);
  RUN(churn_keeps_index_consistent);
  return TEST_REPORT("test_dedup");
}
