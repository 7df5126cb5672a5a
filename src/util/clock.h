/* clock: wall and monotonic time in microseconds. */
#ifndef SLUICE_CLOCK_H
#define SLUICE_CLOCK_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

/* Microseconds since the Unix epoch (CLOCK_REALTIME): event receive times. */
static inline int64_t clock_wall_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* Microseconds on CLOCK_MONOTONIC: latencies and timeouts, immune to clock jumps. */
static inline int64_t clock_mono_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* Format t_us as RFC 3339 UTC with milliseconds, "2026-11-22T19:37:05.123Z".
 * out must hold 25 bytes; returns the length written (24). */
size_t clock_format_iso(int64_t t_us, char out[25]);

/* Parse an ISO-8601 / RFC 3339 timestamp ("2026-11-22T19:37:05Z", with optional
 * fraction and offset, or a date alone). Returns 0 and sets *t_us, or -EINVAL. */
int clock_parse_iso(const char *s, size_t n, int64_t *t_us);

/* clock_parse_iso, the same answers, faster on runs of times in the form
 * clock_format_iso writes: each thread remembers the last such time's first 14 bytes
 * (up to the hour, validated by a full parse) and what they are worth, so a time of the
 * same hour costs its minutes, seconds and milliseconds (consecutive events mostly share
 * one). */
int clock_parse_iso_memo(const char *s, size_t n, int64_t *t_us);

#endif
