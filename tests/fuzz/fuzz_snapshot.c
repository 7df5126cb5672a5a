/* Fuzz target: hostile bytes as the processing snapshot (<state dir>/snapshot), loaded by
 * process_new the way `sluice serve` loads it at start: the header, then every part in
 * turn — the events and sessions rollups, the profiles, the KPI state and the rules
 * state. The input's fingerprint (bytes 8..16) and log offset (16..24) are replaced by
 * this process's fingerprint and 0, and its trailing CRC-32C is recomputed, so mutations
 * reach the parts instead of stopping at the checksum.
 * Checks: no crash or leak; the load reports loaded (1) or unusable (-1) with a reason,
 * never "none" for a file that exists; a loaded snapshot is written back out and loads
 * again (1). About two thousand executions a second under ASan: a store's ring slots are
 * allocated only once the ring holds a bucket (rollup_int.h), so the default stores cost
 * little, decide_reset no longer builds a default-size engine, and the seeds carry the
 * smallest rings the loader accepts (60/60/24; it reads ring sizes from the input). The
 * parts have faster targets of their own (kpi, decide_state, hll, rules_state).
 * Seeds: after-40-events, what process_checkpoint_sync wrote after loading a snapshot of
 * 40 events (format version 4, rollup encoding version 2, its spill part pointing at a
 * new empty spill); after-40-events-rollup-v1, the same state with version-1 rollups (the
 * loader still reads them); truncated. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "decide.h"
#include "fuzz_tmpdir.h"
#include "log.h"
#include "process.h"
#include "util/crc32c.h"

static char dir[256], state[300], snap[320];
static log_t *logp;
static decide_t *decide;
static unsigned char fingerprint[8];

static process_t *open_process(void) {
  static const char *const tracked[] = {"Product Viewed", "Order Completed"};
  process_opts_t o = {.log = logp, .state_dir = state, .tracked = tracked, .ntracked = 2,
                      .decide = decide};
  char err[256];
  process_t *p = process_new(&o, err, sizeof err);
  if (!p) abort();
  return p;
}

static void write_file(const unsigned char *d, size_t n) {
  FILE *f = fopen(snap, "wb");
  if (!f || (n && fwrite(d, 1, n, f) != n)) abort();
  fclose(f);
}

static void init(void) {
  fuzz_mkdtemp(dir, sizeof dir, "snapshot");
  char logdir[300];
  snprintf(logdir, sizeof logdir, "%s/log", dir);
  snprintf(state, sizeof state, "%s/state", dir);
  snprintf(snap, sizeof snap, "%s/snapshot", state);
  mkdir(logdir, 0700);
  char err[256];
  log_opts_t lo = {.dir = logdir, .read_only = 1};
  logp = log_open(&lo, NULL, err, sizeof err);
  rules_opts_t engine = {.max_users = 64, .history_per_user = 16, .timers_per_user = 4};
  decide_opts_t dopt = {.engine = &engine};
  decide = decide_new(&dopt, err, sizeof err);
  if (!logp || !decide) abort();
  /* This process's fingerprint: from a snapshot it writes itself. */
  process_t *p = open_process();
  if (process_checkpoint_sync(p) != 0) abort();
  process_free(p);
  FILE *f = fopen(snap, "rb");
  if (!f || fseek(f, 8, SEEK_SET) != 0 || fread(fingerprint, 1, 8, f) != 8) abort();
  fclose(f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size > (1u << 20)) return 0;
  if (!logp) init();
  unsigned char *b = malloc(size + 1);
  memcpy(b, data, size);
  if (size >= 24) {
    memcpy(b + 8, fingerprint, 8);
    memset(b + 16, 0, 8);
  }
  if (size >= 28) {
    uint32_t crc = crc32c(0, b, size - 4);
    for (int i = 0; i < 4; i++) b[size - 4 + (size_t)i] = (unsigned char)(crc >> (8 * i));
  }
  write_file(b, size);
  free(b);

  process_t *p = open_process();
  char msg[256] = "";
  int st = process_snapshot_status(p, msg, sizeof msg);
  if (st == 0 || (st < 0 && !msg[0])) abort();
  if (st == 1) { /* what was loaded, written back, loads again */
    if (process_checkpoint_sync(p) != 0) abort();
    process_free(p);
    p = open_process();
    if (process_snapshot_status(p, msg, sizeof msg) != 1) abort();
  }
  process_free(p);
  unlink(snap);
  return 0;
}
