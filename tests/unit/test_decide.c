/* Unit tests for the decide stage's glue: uploads that compile the whole directory before
 * writing anything, file-name validation, the clock of timers (event watermark while
 * replaying, wall clock once caught up), the on/off switch and its state file, resets. */
#include "decide.h"

#include <errno.h>
#include <unistd.h>

#include "test.h"
#include "tmpdir.h"

#define SEC 1000000LL
#define T0 (1798761600LL * SEC)

static const char cart_rule[] =
    "rule \"cart\" {\n  on track \"Product Added\"\n  wait 30s unless track \"Order Completed\"\n"
    "  do emit \"Reminder\" { n: 1 }\n}\n";

typedef struct seen {
  int n;
  int64_t last_us;
} seen_t;

static int sink(void *ud, const action_t *a) {
  seen_t *s = ud;
  s->n++;
  s->last_us = a->decided_us;
  return 0;
}

static void write_file(const char *dir, const char *name, const char *text) {
  char p[600];
  snprintf(p, sizeof p, "%s/%s", dir, name);
  FILE *f = fopen(p, "w");
  fputs(text, f);
  fclose(f);
}

static int exists(const char *dir, const char *name) {
  char p[600];
  snprintf(p, sizeof p, "%s/%s", dir, name);
  return access(p, F_OK) == 0;
}

static decide_t *new_decide(const char *dir, seen_t *s) {
  decide_opts_t o = {.rules_dir = dir, .state_dir = dir, .sink = sink, .sink_ud = s};
  char err[256];
  decide_t *d = decide_new(&o, err, sizeof err);
  if (!d) printf("  decide_new: %s\n", err);
  return d;
}

/* A rules dir named name holding shop.rules = cart_rule, and an engine over it. */
static decide_t *setup(const char *name, char dir[512], seen_t *s) {
  snprintf(dir, 512, "%s", test_dir(name));
  mkdir(dir, 0700);
  write_file(dir, "shop.rules", cart_rule);
  return new_decide(dir, s);
}

static void add_to_cart(decide_t *d, int64_t t, uint64_t user) {
  rules_event_t ev = {.t_us = t, .offset = 7, .type = PROFILE_TRACK, .name = "Product Added",
                      .user = user, .anonymous_id = "a1", .consent_marketing = 1};
  rules_event(decide_rules(d), &ev);
}

TEST(test_bad_file_at_start_stops_it) {
  char dir[512];
  snprintf(dir, sizeof dir, "%s", test_dir("start"));
  mkdir(dir, 0700);
  write_file(dir, "a.rules", "rule \"x\" {\n  on track\n  do nothing\n}\n");
  decide_opts_t o = {.rules_dir = dir};
  char err[256] = "";
  CHECK(decide_new(&o, err, sizeof err) == NULL);
  CHECK(strstr(err, "a.rules:3:") != NULL);
}

TEST(test_upload_compiles_the_whole_set_first) {
  char dir[512];
  seen_t s = {0};
  decide_t *d = setup("put", dir, &s);
  REQUIRE(d);
  char err[256];
  int invalid = -1;
  /* A name clash with shop.rules is an error of the whole set: nothing written. */
  CHECK_INT(decide_put_file(d, "more.rules", cart_rule, strlen(cart_rule), &invalid, err, sizeof err), -EINVAL);
  CHECK_INT(invalid, 1);
  CHECK(strstr(err, "more.rules:1:") != NULL || strstr(err, "shop.rules:1:") != NULL);
  CHECK(!exists(dir, "more.rules"));
  CHECK_INT(rules_set_rules(rules_current(decide_rules(d))), 1);
  static const char *const bad_names[] = {"../x.rules", "a/b.rules", ".x.rules", "x.txt", ".rules", ""};
  for (size_t i = 0; i < sizeof bad_names / sizeof bad_names[0]; i++) {
    CHECK_INT(decide_put_file(d, bad_names[i], "", 0, &invalid, err, sizeof err), -EINVAL);
    CHECK_INT(invalid, 0);
  }
  const char *warm = "rule \"warm\" { on page do segment add \"w\" }";
  CHECK_INT(decide_put_file(d, "more.rules", warm, strlen(warm), &invalid, err, sizeof err), 2);
  CHECK(exists(dir, "more.rules"));
  /* Replacing the same file: still two rules, not three. */
  CHECK_INT(decide_put_file(d, "more.rules", warm, strlen(warm), &invalid, err, sizeof err), 2);
  decide_free(d);
}

TEST(test_timers_follow_the_watermark_until_caught_up) {
  char dir[512];
  seen_t s = {0};
  decide_t *d = setup("clock", dir, &s);
  REQUIRE(d);
  add_to_cart(d, T0, 42);
  /* Replaying: the wall clock is far ahead but the watermark is not past the deadline. */
  decide_tick(d, T0 + 10 * SEC, T0 + 3600 * SEC, 0);
  CHECK_INT(s.n, 0);
  /* Caught up: the wall clock fires it, at its deadline. */
  decide_tick(d, T0 + 10 * SEC, T0 + 31 * SEC, 1);
  CHECK_INT(s.n, 1);
  CHECK_INT(s.last_us, T0 + 30 * SEC);
  decide_tick(d, T0 + 10 * SEC, T0 + 40 * SEC, 1);
  CHECK_INT(s.n, 1);
  /* A reset forgets pending timers. */
  add_to_cart(d, T0 + 100 * SEC, 43);
  decide_reset(d);
  decide_tick(d, T0 + 200 * SEC, T0 + 200 * SEC, 1);
  CHECK_INT(s.n, 1);
  decide_free(d);
}

TEST(test_switched_off_rule_is_suppressed_and_remembered) {
  char dir[512];
  seen_t s = {0};
  decide_t *d = setup("onoff", dir, &s);
  REQUIRE(d);
  CHECK_INT(decide_set_enabled(d, "nope", 0), -ENOENT);
  CHECK_INT(decide_set_enabled(d, "cart", 0), 0);
  decide_free(d);
  d = new_decide(dir, &s); /* the switch survives a restart */
  REQUIRE(d);
  add_to_cart(d, T0, 1);
  decide_tick(d, T0 + 31 * SEC, T0 + 31 * SEC, 1);
  CHECK_INT(s.n, 0);
  buf_t b = BUF_INIT;
  decide_describe(d, &b);
  CHECK(strstr(b.data, "\"name\":\"cart\",\"enabled\":false,\"fires\":0") != NULL);
  CHECK(strstr(b.data, "\"suppressed\":1") != NULL);
  buf_free(&b);
  CHECK_INT(decide_set_enabled(d, "cart", 1), 0);
  add_to_cart(d, T0 + 100 * SEC, 2);
  decide_tick(d, T0 + 131 * SEC, T0 + 131 * SEC, 1);
  CHECK_INT(s.n, 1);
  decide_free(d);
}

TEST(test_many_rules_are_listed_with_their_switches) {
  char dir[512];
  snprintf(dir, sizeof dir, "%s", test_dir("many"));
  mkdir(dir, 0700);
  buf_t text = BUF_INIT;
  for (int i = 0; i < 3000; i++) buf_printf(&text, "rule \"r%d\" { on page do segment add \"s\" }\n", i);
  write_file(dir, "many.rules", text.data);
  buf_free(&text);
  seen_t s = {0};
  decide_t *d = new_decide(dir, &s);
  REQUIRE(d);
  for (int i = 0; i < 3000; i += 7) {
    char n[16];
    snprintf(n, sizeof n, "r%d", i);
    CHECK_INT(decide_set_enabled(d, n, 0), 0);
  }
  buf_t b = BUF_INIT;
  decide_describe(d, &b);
  int off = 0, on = 0;
  for (const char *p = b.data; (p = strstr(p, "\"enabled\":")); p++) p[10] == 'f' ? off++ : on++;
  CHECK_INT(off, 429);
  CHECK_INT(on, 2571);
  CHECK(strstr(b.data, "{\"name\":\"r2999\",\"enabled\":true,\"fires\":0,\"lastFire\":null}") != NULL);
  CHECK(strstr(b.data, "{\"name\":\"r14\",\"enabled\":false,") != NULL);
  buf_free(&b);
  decide_free(d);
}

int main(void) {
  if (tmpdir_init("decide") != 0) return 1;
  RUN(test_bad_file_at_start_stops_it);
  RUN(test_upload_compiles_the_whole_set_first);
  RUN(test_timers_follow_the_watermark_until_caught_up);
  RUN(test_switched_off_rule_is_suppressed_and_remembered);
  RUN(test_many_rules_are_listed_with_their_switches);
  tmpdir_finish();
  return TEST_REPORT("test_decide");
}
