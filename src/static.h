/* static: the files sluice serves itself — the tracker (/sluice.js), the analysts'
 * dashboard (/ and the files below /dashboard/) and the demo shop (/demo) — embedded in the binary at
 * build time.
 *
 * Design: scripts/embed.py turns web/ into build/assets.c (a table of static_asset_t:
 * bytes, a gzip copy, type, ETag), so a deployed binary needs no web root and only the
 * names in that table can ever be served: a request path is compared against them, never
 * joined to a directory, so there is no path traversal to defend against. The demo is a
 * single-page shop: /demo, /demo/ and any /demo/<route> made of [A-Za-z0-9_/-] (no dot:
 * not a file) get its index page; "/" gets the dashboard's (web/dashboard/index.html, which
 * asks for the read key itself: the page holds no data). HTML holding {{WRITE_KEY}} gets the configured write key
 * substituted (HTML-escaped) per request; the write key is public by design, it sits in
 * every page that loads sluice.js. Answers carry an ETag (If-None-Match gives 304),
 * Cache-Control (public, max-age=3600 for scripts and styles; no-cache for HTML, whose
 * key may change), and the gzip copy when the client accepts gzip.
 * Stateless: the only state is the config, borrowed per call. Loop thread. */
#ifndef SLUICE_STATIC_H
#define SLUICE_STATIC_H

#include <stddef.h>

#include "config.h"
#include "http.h"

typedef struct static_asset {
  const char *name;          /* URL path, e.g. "/sluice.js" */
  const char *type;          /* Content-Type */
  const unsigned char *data; /* the bytes served */
  size_t len;
  const unsigned char *gz;   /* gzip of data, or NULL when not smaller (or templated) */
  size_t gzlen;
  const char *etag;          /* quoted strong ETag of data */
  int templated;             /* holds {{WRITE_KEY}} */
} static_asset_t;

/* The table generated into build/assets.c. */
extern const static_asset_t static_assets[];
extern const size_t static_nassets;

/* The asset served at path (exact name, the dashboard for "/", or the demo index for a
 * demo route), or NULL. */
const static_asset_t *static_find(const char *path);

/* Answer r if its path is an embedded asset or a demo route: 200/304 for GET and HEAD,
 * 405 for other methods. Returns 1 when r was answered (r is then consumed), 0 when the
 * path is not ours (r untouched). cfg is borrowed (its write key fills templates). */
int static_handle(const config_t *cfg, http_req_t *r);

#endif
