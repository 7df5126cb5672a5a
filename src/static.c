/* static: serves the embedded tracker, dashboard and demo shop (see static.h). */
#include "static.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "util/buf.h"

#define DEMO_INDEX "/demo/index.html"
#define DASHBOARD_INDEX "/dashboard/index.html"
#define TEMPLATE_KEY "{{WRITE_KEY}}"

static const static_asset_t *by_name(const char *name) {
  for (size_t i = 0; i < static_nassets; i++)
    if (!strcmp(static_assets[i].name, name)) return &static_assets[i];
  return NULL;
}

/* A demo route the single-page shop handles itself: /demo, /demo/, /demo/cart,
 * /demo/product/3 — letters, digits, '_', '-' and single slashes, no dot. */
static int demo_route(const char *path) {
  if (!strcmp(path, "/demo")) return 1;
  if (strncmp(path, "/demo/", 6)) return 0;
  for (const char *p = path + 5; *p; p++) {
    if (*p == '/' && p[1] == '/') return 0;
    if (!(*p == '/' || *p == '_' || *p == '-' || (*p >= '0' && *p <= '9') ||
          (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z')))
      return 0;
  }
  return 1;
}

const static_asset_t *static_find(const char *path) {
  if (!strcmp(path, "/")) return by_name(DASHBOARD_INDEX);
  const static_asset_t *a = by_name(path);
  if (a) return a;
  return demo_route(path) ? by_name(DEMO_INDEX) : NULL;
}

/* Does Accept-Encoding allow gzip? A "gzip" (or "*") token without q=0. */
static int accepts_gzip(const char *ae) {
  if (!ae) return 0;
  const char *p = ae;
  while (*p) {
    while (*p == ' ' || *p == '\t' || *p == ',') p++;
    const char *tok = p;
    while (*p && *p != ',' && *p != ';' && *p != ' ' && *p != '\t') p++;
    size_t n = (size_t)(p - tok);
    int match = (n == 4 && !strncasecmp(tok, "gzip", 4)) || (n == 1 && *tok == '*');
    double qv = 1;
    while (*p && *p != ',') {
      if (*p == ';') {
        const char *s = p + 1;
        while (*s == ' ') s++;
        if ((*s == 'q' || *s == 'Q') && s[1] == '=') qv = strtod(s + 2, NULL);
      }
      p++;
    }
    if (match) return qv > 0;
  }
  return 0;
}

/* Does If-None-Match list etag (or "*")? Weak validators compare equal too. */
static int etag_matches(const char *inm, const char *etag) {
  if (!inm) return 0;
  size_t el = strlen(etag);
  for (const char *p = inm; *p;) {
    while (*p == ' ' || *p == '\t' || *p == ',') p++;
    if (*p == '*') return 1;
    if (!strncmp(p, "W/", 2)) p += 2;
    if (!strncmp(p, etag, el) && (p[el] == 0 || p[el] == ',' || p[el] == ' ')) return 1;
    while (*p && *p != ',') p++;
  }
  return 0;
}

static void html_escape(buf_t *b, const char *s) {
  for (; *s; s++) {
    switch (*s) {
    case '&': buf_puts(b, "&amp;"); break;
    case '<': buf_puts(b, "&lt;"); break;
    case '>': buf_puts(b, "&gt;"); break;
    case '"': buf_puts(b, "&quot;"); break;
    case '\'': buf_puts(b, "&#39;"); break;
    default: buf_putc(b, *s);
    }
  }
}

/* FNV-1a: the key's part of a templated page's ETag (not a secret: the key is public). */
static uint64_t fnv1a(const char *s) {
  uint64_t h = 1469598103934665603ULL;
  for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ULL;
  return h;
}

int static_handle(const config_t *cfg, http_req_t *r) {
  const char *path = http_req_path(r);
  const static_asset_t *a = static_find(path);
  if (!a) return 0;
  http_req_set_route(r, "static");
  const char *method = http_req_method(r);
  if (strcmp(method, "GET") && strcmp(method, "HEAD")) {
    http_header_t h[] = {{"Allow", "GET, HEAD"}};
    http_respond_error(r, 405, "method_not_allowed", "use GET", h, 1);
    return 1;
  }
  const char *key = cfg && cfg->write_key ? cfg->write_key : "";
  char etag[96];
  if (a->templated)
    snprintf(etag, sizeof etag, "%.*s-%016llx\"", (int)strlen(a->etag) - 1, a->etag,
             (unsigned long long)fnv1a(key));
  else
    snprintf(etag, sizeof etag, "%s", a->etag);
  int html = !strncmp(a->type, "text/html", 9);
  http_header_t h[8];
  size_t n = 0;
  h[n++] = (http_header_t){"ETag", etag};
  h[n++] = (http_header_t){"Cache-Control", html ? "no-cache" : "public, max-age=3600"};
  h[n++] = (http_header_t){"X-Content-Type-Options", "nosniff"};
  if (a->gz) h[n++] = (http_header_t){"Vary", "Accept-Encoding"};
  if (etag_matches(http_req_header(r, "If-None-Match"), etag)) {
    http_respond(r, 304, h, n, NULL, 0, 0);
    return 1;
  }
  h[n++] = (http_header_t){"Content-Type", a->type};
  if (html)
    h[n++] = (http_header_t){"Content-Security-Policy",
                             "default-src 'self'; img-src 'self' data:; style-src 'self'; "
                             "object-src 'none'; base-uri 'none'; frame-ancestors 'none'"};
  if (a->templated) {
    /* Substitute every {{WRITE_KEY}}; the asset is small and this path is not hot. */
    buf_t b = BUF_INIT;
    const char *p = (const char *)a->data, *end = p + a->len;
    size_t kl = strlen(TEMPLATE_KEY);
    while (p < end) {
      const char *m = memmem(p, (size_t)(end - p), TEMPLATE_KEY, kl);
      if (!m) {
        buf_append(&b, p, (size_t)(end - p));
        break;
      }
      buf_append(&b, p, (size_t)(m - p));
      html_escape(&b, key);
      p = m + kl;
    }
    http_respond(r, 200, h, n, b.data, b.len, 0);
    buf_free(&b);
  } else if (a->gz && accepts_gzip(http_req_header(r, "Accept-Encoding"))) {
    h[n++] = (http_header_t){"Content-Encoding", "gzip"};
    http_respond(r, 200, h, n, a->gz, a->gzlen, 0);
  } else {
    http_respond(r, 200, h, n, a->data, a->len, 0);
  }
  return 1;
}
