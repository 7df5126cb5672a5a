/* Unit tests for the sampled live event feed: a quiet tick lists every event in order,
 * a busy one at most max_per_tick with the number seen, every event has a fair chance to
 * be shown, values are cut and escaped, and a tick without events renders nothing. */
#include <cJSON.h>
#include <string.h>

#include "feed.h"
#include "test.h"

static const char *const NAMES[] = {"event", "page_path", "country"};
#define T0 1700000000000000LL

TEST(test_quiet_tick_lists_everything_in_order) {
  feed_t *f = feed_new(NAMES, 3, 5, 42);
  buf_t out = BUF_INIT;
  CHECK_INT(feed_flush(f, T0, &out), 0);
  CHECK_INT(out.len, 0);
  const char *a[] = {"$page", "/a", NULL}, *b[] = {"Order Completed", NULL, "NL"};
  feed_offer(f, T0 + 1000, a, 0);
  feed_offer(f, T0 + 2000, b, 12.5);
  CHECK_INT(feed_flush(f, T0 + 1000000, &out), 2);
  CHECK_STR(out.data,
            "{\"t\":\"2023-11-14T22:13:21.000Z\",\"seen\":2,\"shown\":2,\"events\":["
            "{\"t\":\"2023-11-14T22:13:20.001Z\",\"event\":\"$page\",\"page_path\":\"/a\"},"
            "{\"t\":\"2023-11-14T22:13:20.002Z\",\"event\":\"Order Completed\",\"country\":\"NL\","
            "\"revenue\":12.50}]}");
  /* The next tick starts empty. */
  buf_reset(&out);
  CHECK_INT(feed_flush(f, T0, &out), 0);
  buf_free(&out);
  feed_free(f);
}

TEST(test_busy_tick_is_bounded_and_fair) {
  feed_t *f = feed_new(NAMES, 3, 10, 7);
  int shown[1000] = {0};
  buf_t out = BUF_INIT;
  for (int round = 0; round < 200; round++) {
    char ev[1000][12];
    for (int i = 0; i < 1000; i++) {
      snprintf(ev[i], sizeof ev[i], "%d", i);
      const char *v[] = {ev[i], NULL, NULL};
      feed_offer(f, T0 + i, v, 0);
    }
    buf_reset(&out);
    CHECK_INT(feed_flush(f, T0, &out), 1000);
    cJSON *j = cJSON_Parse(out.data);
    CHECK(j != NULL);
    if (!j) break;
    CHECK_INT(cJSON_GetObjectItem(j, "seen")->valueint, 1000);
    CHECK_INT(cJSON_GetObjectItem(j, "shown")->valueint, 10);
    cJSON *evs = cJSON_GetObjectItem(j, "events");
    CHECK_INT(cJSON_GetArraySize(evs), 10);
    int last = -1;
    for (cJSON *e = evs->child; e; e = e->next) {
      int n = atoi(cJSON_GetObjectItem(e, "event")->valuestring);
      CHECK(n > last); /* processing order */
      last = n;
      shown[n]++;
    }
    cJSON_Delete(j);
  }
  /* 2000 picks over 1000 events: the first half and the second half each get about
   * half (a sampler that kept the first ten would give the second half none). */
  int first = 0, second = 0;
  for (int i = 0; i < 1000; i++) *(i < 500 ? &first : &second) += shown[i];
  CHECK_INT(first + second, 2000);
  if (first < 850 || second < 850) FAILF("unfair sample: %d / %d", first, second);
  buf_free(&out);
  feed_free(f);
}

TEST(test_values_are_cut_and_escaped) {
  feed_t *f = feed_new(NAMES, 3, 1, 1);
  char long_path[400];
  memset(long_path, 'x', sizeof long_path - 1);
  long_path[sizeof long_path - 1] = 0;
  memcpy(long_path + FEED_VALUE_MAX - 1, "\xc3\xa9", 2); /* é across the cut */
  const char *v[] = {"say \"hi\"\n", long_path, "\xe2\x80\xa8"};
  feed_offer(f, T0, v, 0);
  buf_t out = BUF_INIT;
  feed_flush(f, T0, &out);
  cJSON *j = cJSON_Parse(out.data);
  CHECK(j != NULL);
  if (j) {
    cJSON *e = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "events"), 0);
    CHECK_STR(cJSON_GetObjectItem(e, "event")->valuestring, "say \"hi\"\n");
    CHECK_INT(strlen(cJSON_GetObjectItem(e, "page_path")->valuestring), FEED_VALUE_MAX - 1);
    cJSON_Delete(j);
  }
  CHECK(!strchr(out.data, '\n'));
  CHECK(feed_new(NAMES, 0, 1, 1) == NULL);
  buf_free(&out);
  feed_free(f);
  feed_free(NULL);
}

int main(void) {
  RUN(test_quiet_tick_lists_everything_in_order);
  RUN(test_busy_tick_is_bounded_and_fair);
  RUN(test_values_are_cut_and_escaped);
  return TEST_REPORT("test_feed");
}
