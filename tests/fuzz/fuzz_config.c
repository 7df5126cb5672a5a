/* Fuzz target: a hostile configuration file through config_load_file (libfyaml, the
 * option table, list options and the `kpis` section) and config_validate.
 * Checks: no crash or leak; a refusal says why, naming the file; loading is
 * deterministic (the same file into fresh defaults gives the same answer and message);
 * loading the file again on top of itself (as `--config A --config A` does) neither
 * crashes nor leaks. Inputs over 64 KiB are skipped: the loader's own size limit is
 * tested by test_config, and bigger files only slow the run down. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "fuzz_tmpdir.h"

static char path[256];

/* libfyaml 0.7.12 leaks 2 KB each time it unescapes a long single-quoted scalar full of
 * '' escapes (found by this target: tests/fuzz/corpus/config/libfyaml-leak-quoted-key.yaml;
 * a program of nothing but libfyaml calls leaks the same). A config file is read once
 * at start, so it is harmless there, but LeakSanitizer would stop the run at it: leaks
 * allocated inside libfyaml are not reported for this target. Its stack frames carry no
 * symbols, so the library is the narrowest name there is. */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void) { return "leak:libfyaml.so\n"; }

static int load(const char *p, config_t *c, char *err, size_t errlen) {
  config_defaults(c);
  err[0] = '\0';
  return config_load_file(c, p, err, errlen);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size > 65536) return 0;
  if (!path[0]) {
    char dir[200];
    fuzz_mkdtemp(dir, sizeof dir, "config");
    snprintf(path, sizeof path, "%s/sluice.yaml", dir);
  }
  FILE *f = fopen(path, "wb");
  if (!f) abort();
  if (size && fwrite(data, 1, size, f) != size) abort();
  fclose(f);

  config_t a, b;
  char ea[1024], eb[1024];
  int ra = load(path, &a, ea, sizeof ea);
  int rb = load(path, &b, eb, sizeof eb);
  if (ra != rb || strcmp(ea, eb) != 0) abort();
  if (ra != 0 && strncmp(ea, path, strlen(path)) != 0) abort(); /* names the file */
  if (ra == 0) {
    char verr[1024];
    verr[0] = '\0';
    if (config_validate(&a, verr, sizeof verr) != 0 && !verr[0]) abort();
    (void)config_load_file(&a, path, ea, sizeof ea); /* the same file applied twice */
  }
  config_free(&a);
  config_free(&b);
  unlink(path);
  return 0;
}
