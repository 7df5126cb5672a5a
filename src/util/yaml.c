/* yaml: libfyaml loading with file:line:col errors (see yaml.h). */
#include "util/yaml.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

void yaml_mark(struct fy_node *n, int *line, int *col) {
  *line = *col = 0;
  /* Collections carry no token here: use their first scalar (a mapping's first key, a
   * sequence's first item), which is where a reader looks for them. */
  for (int depth = 0; n && depth < 64 && fy_node_get_type(n) != FYNT_SCALAR; depth++) {
    void *it = NULL;
    if (fy_node_get_type(n) == FYNT_MAPPING) {
      struct fy_node_pair *pr = fy_node_mapping_iterate(n, &it);
      n = pr ? fy_node_pair_key(pr) : NULL;
    } else {
      n = fy_node_sequence_iterate(n, &it);
    }
  }
  struct fy_token *t = n ? fy_node_get_scalar_token(n) : NULL;
  const struct fy_mark *m = t ? fy_token_start_mark(t) : NULL;
  if (m) {
    *line = m->line + 1;
    *col = m->column + 1;
  }
}

/* Length of the well-formed UTF-8 sequence at p (n bytes left), or 0 when it is not one
 * (overlong, surrogate, past U+10FFFF, cut short). */
static size_t utf8_len(const unsigned char *p, size_t n) {
  if (p[0] < 0x80) return 1;
  size_t k = p[0] >= 0xc2 && p[0] <= 0xdf ? 2 : p[0] >= 0xe0 && p[0] <= 0xef ? 3
             : p[0] >= 0xf0 && p[0] <= 0xf4 ? 4 : 0;
  if (!k || k > n) return 0;
  for (size_t i = 1; i < k; i++)
    if ((p[i] & 0xc0) != 0x80) return 0;
  if ((p[0] == 0xe0 && p[1] < 0xa0) || (p[0] == 0xed && p[1] > 0x9f) ||
      (p[0] == 0xf0 && p[1] < 0x90) || (p[0] == 0xf4 && p[1] > 0x8f))
    return 0;
  return k;
}

/* YAML is Unicode text; libfyaml 0.7.12 loops forever on some invalid UTF-8 (a directive
 * line "%" followed by byte 0xfe), so the file is checked before it is parsed. Returns 0,
 * or -1 with "path:line:col: ..." in err. */
static int check_utf8(FILE *f, const char *path, char *err, size_t errlen) {
  unsigned char b[8192];
  size_t have = 0, n;
  int line = 1, col = 1;
  while ((n = fread(b + have, 1, sizeof b - have, f)) > 0 || have) {
    size_t len = have + n, i = 0;
    int eof = n == 0;
    while (i < len) {
      if (!eof && len - i < 4 && b[i] >= 0x80) break; /* maybe cut by the read */
      size_t k = utf8_len(b + i, len - i);
      if (!k) {
        snprintf(err, errlen, "%s:%d:%d: not UTF-8 text (byte 0x%02x)", path, line, col, b[i]);
        return -1;
      }
      if (b[i] == '\n') {
        line++;
        col = 1;
      } else {
        col++;
      }
      i += k;
    }
    have = len - i;
    memmove(b, b + i, have);
    if (eof) break;
  }
  return 0;
}

struct fy_document *yaml_load(const char *path, const char *what, char *err, size_t errlen) {
  FILE *probe = fopen(path, "r");
  if (!probe) {
    snprintf(err, errlen, "%s: cannot open the %s (%s)", path, what, strerror(errno));
    return NULL;
  }
  struct stat st;
  if (fstat(fileno(probe), &st) == 0 && st.st_size > YAML_MAX_BYTES) {
    snprintf(err, errlen, "%s: the %s is %lld bytes, more than the limit of %d", path, what,
             (long long)st.st_size, YAML_MAX_BYTES);
    fclose(probe);
    return NULL;
  }
  int bad = check_utf8(probe, path, err, errlen);
  fclose(probe);
  if (bad) return NULL;
  struct fy_diag_cfg dcfg;
  fy_diag_cfg_default(&dcfg);
  dcfg.fp = NULL;
  dcfg.output_fn = NULL;
  struct fy_diag *diag = fy_diag_create(&dcfg);
  if (!diag) {
    snprintf(err, errlen, "%s: out of memory", path);
    return NULL;
  }
  fy_diag_set_collect_errors(diag, true);
  struct fy_parse_cfg pcfg = {.flags = FYPCF_QUIET, .diag = diag};
  struct fy_document *doc = fy_document_build_from_file(&pcfg, path);
  if (!doc) {
    void *it = NULL;
    struct fy_diag_error *e = fy_diag_errors_iterate(diag, &it);
    if (e)
      snprintf(err, errlen, "%s:%d:%d: %s", path, e->line + 1, e->column + 1, e->msg);
    else
      snprintf(err, errlen, "%s: cannot read the %s", path, what);
  }
  fy_diag_destroy(diag);
  return doc;
}
