/* tmpdir.h: a per-run temporary directory for tests that write files. tmpdir_init makes
 * it (named after the suite, under TMPDIR, else /tmp); test_dir names a fresh, emptied
 * subdirectory in it; rm_rf removes a tree; tmpdir_finish removes the whole directory.
 * Include after test.h. */
#ifndef SLUICE_TMPDIR_H
#define SLUICE_TMPDIR_H

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

static char root[256]; /* per-run temp dir; each test uses a subdirectory */

static inline int tmpdir_rm_one(const char *p, const struct stat *st, int flag, struct FTW *f) {
  (void)st, (void)flag, (void)f;
  return remove(p);
}

static inline void rm_rf(const char *p) { nftw(p, tmpdir_rm_one, 16, FTW_DEPTH | FTW_PHYS); }

/* Make root; 0, or -1 after saying why. */
static inline int tmpdir_init(const char *suite) {
  const char *tmp = getenv("TMPDIR");
  snprintf(root, sizeof root, "%s/sluice-%s-XXXXXX", tmp && *tmp ? tmp : "/tmp", suite);
  if (!mkdtemp(root)) {
    perror("mkdtemp");
    return -1;
  }
  return 0;
}

static inline void tmpdir_finish(void) { rm_rf(root); }

/* root/name, emptied (in a static buffer). */
static inline const char *test_dir(const char *name) {
  static char d[512];
  snprintf(d, sizeof d, "%s/%s", root, name);
  rm_rf(d);
  return d;
}

#endif
