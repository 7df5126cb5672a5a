/* yaml: libfyaml loading with file:line:col errors (see yaml.h). */
#include "util/yaml.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

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

struct fy_document *yaml_load(const char *path, const char *what, char *err, size_t errlen) {
  FILE *probe = fopen(path, "r");
  if (!probe) {
    snprintf(err, errlen, "%s: cannot open the %s (%s)", path, what, strerror(errno));
    return NULL;
  }
  fclose(probe);
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
