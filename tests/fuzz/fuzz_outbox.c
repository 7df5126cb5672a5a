/* Fuzz target: a hostile or torn webhook outbox journal through outbox_open's replay.
 * Checks: no crash or leak; the file is cut to whole records (reopening drops nothing
 * more and finds the same state); a record appended after the cut survives a reopen. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fuzz_tmpdir.h"
#include "outbox.h"

static char dir[256];

static outbox_t *reopen(void) {
  char err[512];
  outbox_t *o = outbox_open(dir, NULL, err, sizeof err);
  if (!o) abort();
  return o;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (!dir[0]) fuzz_mkdtemp(dir, sizeof dir, "outbox");
  char path[300];
  snprintf(path, sizeof path, "%s/outbox", dir);
  FILE *f = fopen(path, "wb");
  if (!f) abort();
  fwrite(data, 1, size, f);
  fclose(f);
  outbox_t *o = reopen();
  outbox_stats_t a, b;
  outbox_stats(o, &a);
  if (a.file_bytes + a.dropped_tail_bytes != size) abort();
  outbox_close(o);
  o = reopen();
  outbox_stats(o, &b);
  if (b.dropped_tail_bytes || b.pending != a.pending || b.dead != a.dead || b.done != a.done) abort();
  int rc = outbox_add(o, "fuzz-new-key", "crm", "{}", 2, 0, NULL);
  if (rc != 0 && rc != -EEXIST && rc != -ENOSPC) abort();
  outbox_close(o);
  o = reopen();
  if (!outbox_find(o, "fuzz-new-key") && rc == 0) abort();
  outbox_close(o);
  unlink(path);
  return 0;
}
