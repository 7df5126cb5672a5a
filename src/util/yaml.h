/* yaml: load a YAML file with libfyaml, with errors a user can act on. */
#ifndef SLUICE_YAML_H
#define SLUICE_YAML_H

#include <libfyaml.h>
#include <stddef.h>

/* Files are read whole into memory: a bigger one is refused (the user-agent regexes,
 * the biggest file loaded this way, are about 200 KB). */
#define YAML_MAX_BYTES (4 << 20)

/* Parse the file at path. Returns the document (free with fy_document_destroy), or NULL
 * with "path:line:col: message" (or "path: <reason>" when unreadable or over YAML_MAX_BYTES) in err. what names
 * the file for the reader ("configuration", "user-agent regexes"). */
struct fy_document *yaml_load(const char *path, const char *what, char *err, size_t errlen);

/* 1-based line and column where node n starts — for a mapping or sequence, where its
 * first scalar starts (0, 0 when unknown or empty). */
void yaml_mark(struct fy_node *n, int *line, int *col);

#endif
