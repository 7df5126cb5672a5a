/* Fuzz target: a hostile profile spill file through spill_open's scan (the input is the
 * file; its header names the seed and generation it is opened with, its size the length).
 * Checks: no crash or leak; a file that opens commits and reopens with the same counts;
 * a profile put then taken comes back byte for byte; keys drawn from the input are taken
 * without harm. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "spill.h"

static char dir[256];

static uint64_t le64(const uint8_t *p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; i--) v = v << 8 | p[i];
  return v;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (!dir[0]) {
    const char *tmp = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/sluice-fuzz-spill-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(dir)) abort();
  }
  if (size < 24) return 0;
  uint64_t seed = le64(data + 8), gen = le64(data + 16);
  if (gen == 0 || gen > 1000) return 0; /* keep file names few */
  char path[320];
  snprintf(path, sizeof path, "%s/profiles.spill.%llu", dir, (unsigned long long)gen);
  FILE *f = fopen(path, "wb");
  if (!f) abort();
  fwrite(data, 1, size, f);
  fclose(f);
  char err[256];
  spill_t *s = spill_open(dir, gen, size, seed, 4096, err, sizeof err);
  if (!s) {
    spill_remove_all(dir);
    return 0;
  }
  spill_stats_t a, b;
  spill_stats(s, &a);
  profile_t p, q;
  uint64_t keys[SPILL_MAX_ALIASES];
  uint32_t used[SPILL_MAX_ALIASES];
  size_t n;
  for (size_t off = 24; off + 8 <= size && off < 24 + 8 * 64; off += 8)
    if (spill_take(s, le64(data + off), &q, keys, used, &n, SPILL_MAX_ALIASES) < 0) break;
  uint64_t g, len;
  if (spill_commit(s, &g, &len) != 0) abort();
  spill_stats(s, &a);
  spill_close(s);
  s = spill_open(dir, g, len, seed, 4096, err, sizeof err);
  if (!s) abort();
  spill_stats(s, &b);
  if (a.profiles != b.profiles || a.ids != b.ids || a.bytes != b.bytes) abort();
  memset(&p, 0x5a, sizeof p);
  p.id = 0x1234567890abcdefull;
  uint64_t alias = 0xfedcba0987654321ull;
  uint32_t when = 1700000000u;
  if (!spill_has(s, p.id) && !spill_has(s, alias) && spill_put(s, &p, &alias, &when, 1) == 0) {
    if (spill_take(s, alias, &q, keys, used, &n, SPILL_MAX_ALIASES) != 1) abort();
    if (memcmp(&p, &q, sizeof p) || n != 1 || keys[0] != alias || used[0] != when) abort();
  }
  spill_close(s);
  spill_remove_all(dir);
  return 0;
}
