/* Fuzz target: hostile rule files through rules_set_parse, and when one compiles, a few
 * events through an engine holding it. Checks: no crash, leak or undefined behaviour; a
 * refused file always has a "file:line:col: " message. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "profile.h"
#include "rules.h"

static int sink(void *ud, const action_t *a) {
  (void)ud;
  return a->payload[0] == '{' ? 0 : -1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char err[512];
  rules_src_t src = {"f.rules", (const char *)data, size};
  rules_set_t *s = rules_set_parse(&src, 1, err, sizeof err);
  if (!s) {
    if (strncmp(err, "f.rules:", 8)) abort();
    return 0;
  }
  rules_opts_t o = {.sink = sink, .max_users = 16};
  rules_t *r = rules_new(&o);
  rules_swap(r, s);
  static const char *const names[] = {"Product Viewed", "Order Completed", "X", "A"};
  static const char *const json =
      "{\"type\":\"track\",\"event\":\"X\",\"properties\":{\"product_id\":\"p1\",\"n\":5,"
      "\"path\":\"/pricing\",\"q\":\"sh\\u00f6e\"},\"context\":{\"page\":{\"path\":\"/\"}}}";
  for (int i = 0; i < 12; i++) {
    rules_event_t ev = {
        .t_us = 1798761600000000LL + (int64_t)i * 200000000,
        .offset = (uint64_t)i,
        .type = i % 3 ? PROFILE_TRACK : PROFILE_PAGE,
        .name = names[i % 4],
        .json = json,
        .json_len = strlen(json),
        .user = 1 + (uint64_t)(i % 2),
        .user_id = i % 2 ? "u1" : NULL,
        .anonymous_id = "a1",
        .consent_marketing = 1,
    };
    rules_event(r, &ev);
    if (i == 6) rules_merge(r, 2, 1);
  }
  rules_advance(r, 1798761600000000LL + 400LL * 86400000000LL);
  rules_free(r);
  return 0;
}
