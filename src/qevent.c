/* qevent: query-string events (see qevent.h). */
#include "qevent.h"

#include <stdio.h>
#include <string.h>

#include "evdoc.h"
#include "event.h"
#include "util/mem.h"
#include "util/str.h"

struct qevent {
  evdoc_t *ev;   /* the event being built: "{}" plus one edit per parameter */
  evdoc_t *data; /* the decoded data parameter */
  buf_t name, value, dec, json; /* scratch, kept between calls */
};

qevent_t *qevent_new(void) {
  qevent_t *q = xcalloc(1, sizeof *q);
  q->ev = evdoc_new();
  q->data = evdoc_new();
  return q;
}

void qevent_free(qevent_t *q) {
  if (!q) return;
  evdoc_free(q->ev);
  evdoc_free(q->data);
  buf_free(&q->name);
  buf_free(&q->value);
  buf_free(&q->dec);
  buf_free(&q->json);
  free(q);
}

/* What a decoded parameter name is. */
enum { N_OTHER, N_KEY, N_URL, N_DATA, N_FIELD };

/* The kind of parameter name (n bytes): the write key (writeKey, k), the redirect target
 * (u, url), data, a field (a dotted path, or one of the top-level names a parameter
 * without a dot may set), or another (ignored). By length first: this runs for every
 * parameter of every pixel request. */
static int name_kind(const char *name, size_t n) {
  static const char *const fields[] = {"type",        "event",     "name",      "userId",
                                       "anonymousId", "messageId", "timestamp"};
  if (memchr(name, '.', n)) return N_FIELD;
  if (n == 1) return name[0] == 'k' ? N_KEY : name[0] == 'u' ? N_URL : N_OTHER;
  if (n == 3 && !memcmp(name, "url", 3)) return N_URL;
  if (n == 4 && !memcmp(name, "data", 4)) return N_DATA;
  if (n == 8 && !memcmp(name, "writeKey", 8)) return N_KEY;
  for (size_t i = 0; i < sizeof fields / sizeof *fields; i++)
    if (strlen(fields[i]) == n && !memcmp(name, fields[i], n)) return N_FIELD;
  return N_OTHER;
}

/* Set the dotted path (modified in place: dots become NULs) to the string s. Paths with
 * an empty segment, a segment of 64 bytes or more, or too many segments are ignored. */
static void set_path(qevent_t *q, char *path, const char *s) {
  const char *segs[EVDOC_MAX_DEPTH];
  size_t n = 0;
  for (char *p = path;;) {
    char *dot = strchr(p, '.');
    size_t len = dot ? (size_t)(dot - p) : strlen(p);
    if (!len || len >= 64 || n == EVDOC_MAX_DEPTH) return;
    segs[n++] = p;
    if (!dot) break;
    *dot = 0;
    p = dot + 1;
  }
  buf_t *v = &q->json;
  buf_reset(v);
  buf_putc(v, '"');
  buf_json_escape(v, s, strlen(s));
  buf_putc(v, '"');
  evdoc_set_raw_v(q->ev, segs, n, v->data, v->len);
}

/* Merge the event the data parameter (base64 text b64) holds: its members replace the
 * event's members of the same names; its writeKey becomes the key. Returns 0 or -1. */
static int merge_data(qevent_t *q, const char *b64, char *key, size_t keycap) {
  size_t n = strlen(b64);
  buf_reset(&q->dec);
  buf_reserve(&q->dec, n + 4);
  long dl = str_base64_decode(b64, n, (unsigned char *)q->dec.data);
  if (dl < 0 || evdoc_load(q->data, q->dec.data, (size_t)dl) != 0) return -1;
  char name[256];
  jscan_val_t wk = evdoc_get(q->data, "writeKey");
  if (wk.type == JSCAN_STRING && wk.n < sizeof name && jscan_string(&wk, name, sizeof name) >= 0)
    snprintf(key, keycap, "%s", name);
  const jscan_member_t *m;
  long count = evdoc_members(q->data, NULL, &m);
  for (long i = 0; i < count; i++) {
    jscan_val_t kv = {JSCAN_STRING, m[i].key, m[i].keylen, m[i].key_escaped, 0};
    if (m[i].keylen >= sizeof name || jscan_string(&kv, name, sizeof name) < 0) continue;
    const char *seg = name;
    const jscan_val_t *v = &m[i].val;
    if (v->type == JSCAN_STRING)
      evdoc_set_raw_v(q->ev, &seg, 1, v->p - 1, v->n + 2);
    else
      evdoc_set_raw_v(q->ev, &seg, 1, v->p, v->n);
  }
  return 0;
}

int qevent_build(qevent_t *q, const char *query, size_t qlen, qevent_kind_t kind, buf_t *out,
                 char *key, size_t keycap, char **redirect, const char **code, const char **msg) {
  static const char empty[] = "{}";
  evdoc_load(q->ev, empty, 2);
  buf_reset(&q->name);
  buf_reset(&q->value);
  buf_reserve(&q->name, qlen + 1);
  buf_reserve(&q->value, qlen + 1);
  char *kd = q->name.data, *vd = q->value.data;
  size_t pos = 0, kl, vl, fields = 0;
  const char *k, *v;
  if (keycap) *key = 0;
  while (str_query_next(query, qlen, &pos, &k, &kl, &v, &vl)) {
    if (str_url_decode(k, kl, kd, 1) < 0 || str_url_decode(v, vl, vd, 1) < 0) {
      *code = "bad_query";
      *msg = "malformed percent-encoding in the query string";
      return -1;
    }
    int what = name_kind(kd, strlen(kd)); /* a decoded NUL ends the name */
    if (what == N_KEY) {
      snprintf(key, keycap, "%s", vd);
    } else if (what == N_URL) {
      free(*redirect);
      *redirect = xstrdup(vd);
    } else if (what == N_OTHER || kl >= QEVENT_MAX_NAME || fields >= QEVENT_MAX_FIELDS) {
      continue;
    } else if (what == N_DATA) {
      fields++;
      if (merge_data(q, vd, key, keycap) != 0) {
        *code = EVENT_ERR_JSON;
        *msg = "data must be base64 of a JSON object with unique member names";
        return -1;
      }
    } else {
      fields++;
      set_path(q, kd, vd);
    }
  }
  /* Constant paths: read and set on every request without parsing their text. */
  static evdoc_path_t P_TYPE = EVDOC_PATH("type"), P_EVENT = EVDOC_PATH("event"),
                      P_PROPERTIES = EVDOC_PATH("properties"),
                      P_PROPERTIES_URL = EVDOC_PATH("properties.url");
  char type[16];
  if (evdoc_get_p(q->ev, &P_TYPE).type == JSCAN_NONE) evdoc_set_str_p(q->ev, &P_TYPE, "track");
  if (evdoc_str_p(q->ev, &P_TYPE, type, sizeof type) && !strcmp(type, "track") &&
      evdoc_get_p(q->ev, &P_EVENT).type == JSCAN_NONE)
    evdoc_set_str_p(q->ev, &P_EVENT, kind == QEVENT_REDIRECT ? "Email Link Clicked" : "Email Opened");
  if (kind == QEVENT_REDIRECT && *redirect) {
    jscan_type_t pt = evdoc_get_p(q->ev, &P_PROPERTIES).type;
    if (pt == JSCAN_NONE || (pt == JSCAN_OBJECT && evdoc_get_p(q->ev, &P_PROPERTIES_URL).type == JSCAN_NONE))
      evdoc_set_str_p(q->ev, &P_PROPERTIES_URL, *redirect);
  }
  evdoc_write(q->ev, out);
  return 0;
}
