/* Unit tests for the per-address token buckets. */
#include "ratelimit.h"

#include "test.h"

TEST(disabled_allows_everything) {
  ratelimit_t *rl = ratelimit_new(0, 0, 0);
  for (int i = 0; i < 100000; i++) CHECK_INT(ratelimit_take(rl, "1.2.3.4", 0), 0);
  ratelimit_free(rl);
}

TEST(burst_then_rate) {
  ratelimit_t *rl = ratelimit_new(10, 20, 64);
  int64_t t = 1000000;
  int allowed = 0;
  for (int i = 0; i < 50; i++) allowed += ratelimit_take(rl, "1.2.3.4", t) == 0;
  CHECK_INT(allowed, 20);
  CHECK(ratelimit_take(rl, "1.2.3.4", t) >= 1);
  CHECK_INT(ratelimit_take(rl, "5.6.7.8", t), 0); /* other addresses unaffected */
  t += 500000; /* half a second: 5 tokens */
  allowed = 0;
  for (int i = 0; i < 50; i++) allowed += ratelimit_take(rl, "1.2.3.4", t) == 0;
  CHECK_INT(allowed, 5);
  ratelimit_free(rl);
}

/* Requests read in one turn carry their own start times, a little out of order: an
 * earlier time must not wind the bucket's clock back and have an interval credited
 * twice. */
TEST(times_out_of_order) {
  ratelimit_t *rl = ratelimit_new(1, 1, 64);
  CHECK_INT(ratelimit_take(rl, "1.2.3.4", 10000000), 0); /* the burst's one token */
  CHECK(ratelimit_take(rl, "1.2.3.4", 9500000) >= 1);     /* earlier: nothing gained */
  CHECK(ratelimit_take(rl, "1.2.3.4", 10500000) >= 1);    /* half a token since 10 s */
  CHECK_INT(ratelimit_take(rl, "1.2.3.4", 11000000), 0);  /* one second after 10 s */
  ratelimit_free(rl);
}

TEST(bounded_memory_many_addresses) {
  ratelimit_t *rl = ratelimit_new(1, 1, 16);
  char ip[32];
  for (int i = 0; i < 10000; i++) {
    snprintf(ip, sizeof ip, "10.0.%d.%d", i / 256, i % 256);
    CHECK_INT(ratelimit_take(rl, ip, i), 0); /* evicted buckets start full */
  }
  ratelimit_free(rl);
}

int main(void) {
  RUN(disabled_allows_everything);
  RUN(burst_then_rate);
  RUN(times_out_of_order);
  RUN(bounded_memory_many_addresses);
  return TEST_REPORT("test_ratelimit");
}
