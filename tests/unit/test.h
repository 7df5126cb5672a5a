/* test.h: the unit-test harness. A test file defines TEST(name) functions and lists them
 * in main() with RUN(name); each failed CHECK prints file:line and both values. The last
 * line a test binary prints is "<binary>: N passed, N failed", which tests/run.sh adds up. */
#ifndef SLUICE_TEST_H
#define SLUICE_TEST_H

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int test_passed, test_failed, test_cur_failed;

#define TEST(name) static void name(void)

#define RUN(name)                                               \
  do {                                                          \
    test_cur_failed = 0;                                        \
    name();                                                     \
    if (test_cur_failed) {                                      \
      test_failed++;                                            \
      printf("FAIL %s\n", #name);                               \
    } else {                                                    \
      test_passed++;                                            \
      printf("ok   %s\n", #name);                               \
    }                                                           \
  } while (0)

#define FAILF(...)                                              \
  do {                                                          \
    printf("  %s:%d: ", __FILE__, __LINE__);                    \
    printf(__VA_ARGS__);                                        \
    printf("\n");                                               \
    test_cur_failed = 1;                                        \
  } while (0)

#define CHECK(cond)                                             \
  do {                                                          \
    if (!(cond)) FAILF("check failed: %s", #cond);              \
  } while (0)

#define CHECK_INT(a, b)                                                         \
  do {                                                                          \
    long long _a = (long long)(a), _b = (long long)(b);                         \
    if (_a != _b) FAILF("%s == %lld, expected %s == %lld", #a, _a, #b, _b);     \
  } while (0)

#define CHECK_STR(a, b)                                                         \
  do {                                                                          \
    const char *_a = (a), *_b = (b);                                            \
    if (!_a || !_b || strcmp(_a, _b) != 0)                                      \
      FAILF("%s == \"%s\", expected \"%s\"", #a, _a ? _a : "(null)", _b ? _b : "(null)"); \
  } while (0)

/* CHECK(cond) that also ends the test (returns) when cond fails. */
#define REQUIRE(cond)                                           \
  do {                                                          \
    if (!(cond)) {                                              \
      FAILF("check failed: %s", #cond);                         \
      return;                                                   \
    }                                                           \
  } while (0)

/* Call last in main: prints the summary and returns the exit code. */
#define TEST_REPORT(suite)                                                      \
  (printf("%s: %d passed, %d failed\n", suite, test_passed, test_failed),       \
   test_failed ? 1 : 0)

#endif
