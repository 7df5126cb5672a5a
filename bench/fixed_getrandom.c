/* Preloaded by bench/replay_same.sh: getrandom(2) returns the same bytes in every run, so
 * the profile store's hash seed (and with it the snapshot) does not change from run to
 * run. For benchmarks only. */
#include <stddef.h>
#include <sys/types.h>

ssize_t getrandom(void *buf, size_t n, unsigned flags) {
  (void)flags;
  for (size_t i = 0; i < n; i++) ((unsigned char *)buf)[i] = (unsigned char)(i * 37 + 11);
  return (ssize_t)n;
}
