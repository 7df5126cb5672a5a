/* evfields: one stored event -> its dimensions, time, ids and revenue (see evfields.h). */
#include "evfields.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "util/clock.h"
#include "util/mem.h"

enum {
  F_TYPE, F_EVENT, F_USER, F_ANON, F_PREV, F_TS, F_RECV, F_REVENUE, F_TOTAL, F_URL, F_PATH,
  F_SOURCE, F_MEDIUM, F_CAMPAIGN, F_REFCLASS, F_COUNTRY, F_DEVICE, F_BROWSER, F_PSESSION,
  F_CSESSION, F_CONSENT, F_PRODUCT, F_SKU, F_COUNT
};

static const char *const field_paths[F_COUNT] = {
    "type", "event", "userId", "anonymousId", "previousId", "timestamp", "receivedAt",
    "properties.revenue", "properties.total", "context.page.url", "context.page.path",
    "context.campaign.source", "context.campaign.medium", "context.campaign.name",
    "context.referrer.class", "context.location.country", "context.device.type",
    "context.browser.name", "properties.sessionId", "context.sessionId",
    "context.consent.marketing", "properties.product_id", "properties.sku"};

struct evfields_decoder {
  jscan_paths_t *paths;
  char *conversion;
  uint32_t conversion_len;
  size_t nextra;
  int alias[EVFIELDS_MAX_EXTRA]; /* extra path i is base path alias[i] (jscan scans a path
                                    into one slot only), or -1 */
  uint8_t aliased[EVFIELDS_MAX_EXTRA]; /* the extra paths i with alias[i] >= 0 */
  size_t naliased;
};

evfields_decoder_t *evfields_new(const char *conversion, const char *const *extra,
                                 size_t nextra) {
  _Static_assert(F_COUNT + EVFIELDS_MAX_EXTRA <= JSCAN_MAX_PATHS, "extra paths do not fit");
  if (nextra > EVFIELDS_MAX_EXTRA) return NULL;
  const char *paths[F_COUNT + EVFIELDS_MAX_EXTRA];
  evfields_decoder_t *d = xcalloc(1, sizeof *d);
  memcpy(paths, field_paths, sizeof field_paths);
  d->nextra = nextra;
  for (size_t i = 0; i < nextra; i++) {
    d->alias[i] = -1;
    for (int k = 0; k < F_COUNT; k++)
      if (!strcmp(extra[i], field_paths[k])) d->alias[i] = k;
    /* an aliased slot is scanned as a path no event has */
    paths[F_COUNT + i] = d->alias[i] >= 0 ? "\x01" : extra[i];
    if (d->alias[i] >= 0) d->aliased[d->naliased++] = (uint8_t)i;
  }
  d->paths = jscan_compile(paths, F_COUNT + nextra);
  d->conversion = xstrdup(conversion && *conversion ? conversion : "Order Completed");
  d->conversion_len = (uint32_t)strlen(d->conversion);
  if (!d->paths) {
    evfields_free(d);
    return NULL;
  }
  return d;
}

void evfields_free(evfields_decoder_t *d) {
  if (!d) return;
  jscan_paths_free(d->paths);
  free(d->conversion);
  free(d);
}

/* The string at v (inside a value that ends at vend), decoded into buf (cap >= 16), its
 * strlen in *len (OUT; 0 for NULL); NULL when absent, not a string or empty. */
static inline const char *str_len_of(const jscan_val_t *v, const char *vend, char *buf,
                                     size_t cap, uint32_t *len) {
  *len = 0;
  if (v->type != JSCAN_STRING || v->n == 0) return NULL;
  if (!v->escaped && v->n < cap) { /* (validated JSON holds no raw NUL) */
    if (v->n < 16 && vend - v->p >= 16)
      memcpy(buf, v->p, 16); /* most values: one fixed-size move, not a call */
    else
      memcpy(buf, v->p, v->n);
    buf[v->n] = 0;
    *len = (uint32_t)v->n;
    return buf;
  }
  long n = jscan_string(v, buf, cap);
  if (n <= 0) return NULL;
  *len = (uint32_t)strlen(buf); /* a decoded "\u0000" ends the C string early */
  return buf;
}

/* The first c in [p, end), or NULL: the first 16 bytes in one step when they lie inside
 * (a URL's scheme and host mostly do), else memchr. */
static inline const char *find_byte(const char *p, const char *end, char c) {
#if defined(__SSE2__)
  if (end - p >= 16) {
    __m128i w = _mm_loadu_si128((const __m128i *)(const void *)p);
    unsigned m = (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(w, _mm_set1_epi8(c)));
    if (m) return p + __builtin_ctz(m);
    p += 16;
  }
#endif
  return p < end ? memchr(p, c, (size_t)(end - p)) : NULL;
}

/* The path of a URL of ulen bytes (its strlen): after the host, before '?' or '#'; its
 * strlen in *len (OUT). */
static const char *url_path(const char *url, size_t ulen, char *buf, size_t cap,
                            uint32_t *len) {
  const char *end = url + ulen, *s = find_byte(url, end, ':');
  while (s && !(end - s >= 3 && s[1] == '/' && s[2] == '/')) s = find_byte(s + 1, end, ':');
  s = s ? find_byte(s + 3, end, '/') : (url[0] == '/' ? url : NULL);
  *len = 1;
  if (!s) return "/";
  size_t n = 0;
#if defined(__SSE2__)
  /* 16 bytes a step while they lie inside the URL: a path is mostly found in the first */
  const __m128i q = _mm_set1_epi8('?'), hash = _mm_set1_epi8('#');
  for (; end - (s + n) >= 16; n += 16) {
    __m128i w = _mm_loadu_si128((const __m128i *)(const void *)(s + n));
    unsigned m = (unsigned)_mm_movemask_epi8(_mm_or_si128(_mm_cmpeq_epi8(w, q), _mm_cmpeq_epi8(w, hash)));
    if (m) {
      n += (unsigned)__builtin_ctz(m);
      goto found;
    }
  }
#endif
  while (s + n < end && s[n] != '?' && s[n] != '#') n++;
#if defined(__SSE2__)
found:
#endif
  if (n >= cap) n = cap - 1;
  memcpy(buf, s, n);
  buf[n] = 0;
  *len = (uint32_t)n;
  return buf;
}

static int time_of(const jscan_val_t *v, int64_t *t) {
  return v->type == JSCAN_STRING && !v->escaped && clock_parse_iso_memo(v->p, v->n, t) == 0;
}

/* Dimension "product": properties.product_id, else properties.sku (Segment's e-commerce
 * spec); an integral number is written in decimal, since shops send numeric ids. */
static const char *product_of(const jscan_val_t *f, const char *vend, char *buf,
                              uint32_t *len) {
  for (int k = F_PRODUCT; k <= F_SKU; k++) {
    const jscan_val_t *v = &f[k];
    if (v->type == JSCAN_NUMBER && fabs(v->num) < 9e15 && v->num == (double)(long long)v->num) {
      *len = (uint32_t)snprintf(buf, EVFIELDS_VAL_CAP, "%lld", (long long)v->num);
      return buf;
    }
    const char *s = str_len_of(v, vend, buf, EVFIELDS_VAL_CAP, len);
    if (s) return s;
  }
  return NULL;
}

static const char *const type_dim[PROFILE_TYPES] = {NULL, "$page", "$screen", "$identify",
                                                    "$group", "$alias"};
static const uint32_t type_dim_len[PROFILE_TYPES] = {0, 5, 7, 9, 6, 6};

const jscan_val_t *evfields_extra(const evfields_t *e, size_t i) { return &e->raw[F_COUNT + i]; }

/* evfields_decode once the spans are in e->raw (scan returned rc). */
static int decode_spans(const evfields_decoder_t *d, const log_record_t *rec, evfields_t *e,
                        int rc) {
  jscan_val_t *f = e->raw;
  const char *vend = rec->value + rec->value_len;
  if (rc != 0 || f[F_TYPE].type != JSCAN_STRING) return -EBADMSG;
  for (size_t k = 0; k < d->naliased; k++) {
    size_t i = d->aliased[k];
    f[F_COUNT + i] = f[d->alias[i]];
  }
  /* (profile_type reads a length of 0 as "NUL-terminated": an empty type must not reach it) */
  int type = f[F_TYPE].n ? profile_type(f[F_TYPE].p, f[F_TYPE].n) : -EINVAL;
  if (type < 0) return 0; /* tombstones ("forgotten"), unknown types */
  e->type = type;
  if (!time_of(&f[F_TS], &e->t_us) && !time_of(&f[F_RECV], &e->t_us)) e->t_us = rec->time_us;

  e->user_id = str_len_of(&f[F_USER], vend, e->idb[0], sizeof e->idb[0], &e->user_id_len);
  e->anonymous_id =
      str_len_of(&f[F_ANON], vend, e->idb[1], sizeof e->idb[1], &e->anonymous_id_len);
  e->previous_id =
      str_len_of(&f[F_PREV], vend, e->idb[2], sizeof e->idb[2], &e->previous_id_len);
  e->session_id = str_len_of(&f[F_PSESSION], vend, e->sid, sizeof e->sid, &e->session_id_len);
  if (!e->session_id)
    e->session_id = str_len_of(&f[F_CSESSION], vend, e->sid, sizeof e->sid, &e->session_id_len);

  const char *name;
  if (type == PROFILE_TRACK) {
    name = str_len_of(&f[F_EVENT], vend, e->vb[0], EVFIELDS_VAL_CAP, &e->dlen[0]);
  } else {
    name = type_dim[type];
    e->dlen[0] = type_dim_len[type];
  }
  e->dims[0] = name;
  e->dims[1] = str_len_of(&f[F_PATH], vend, e->vb[1], EVFIELDS_VAL_CAP, &e->dlen[1]);
  if (!e->dims[1]) {
    /* A URL without escapes is its raw bytes: its path is taken from the record, with no
     * copy of the whole URL first. */
    const jscan_val_t *uv = &f[F_URL];
    uint32_t urlen;
    const char *u = uv->type == JSCAN_STRING && uv->n && !uv->escaped && uv->n < sizeof e->urlb
                        ? (urlen = (uint32_t)uv->n, uv->p)
                        : str_len_of(uv, vend, e->urlb, sizeof e->urlb, &urlen);
    e->dims[1] = u ? url_path(u, urlen, e->vb[1], EVFIELDS_VAL_CAP, &e->dlen[1]) : NULL;
  }
  static const int dim_field[PROCESS_NDIMS - 1] = {0, 0, F_SOURCE, F_MEDIUM, F_CAMPAIGN,
                                                   F_REFCLASS, F_COUNTRY, F_DEVICE, F_BROWSER};
  e->dims[PROCESS_NDIMS - 1] =
      product_of(f, vend, e->vb[PROCESS_NDIMS - 1], &e->dlen[PROCESS_NDIMS - 1]);
  for (int i = 2; i < PROCESS_NDIMS - 1; i++)
    e->dims[i] = str_len_of(&f[dim_field[i]], vend, e->vb[i], EVFIELDS_VAL_CAP, &e->dlen[i]);

  e->is_order = name && type == PROFILE_TRACK && e->dlen[0] == d->conversion_len &&
                !memcmp(name, d->conversion, d->conversion_len);
  e->revenue = 0;
  if (e->is_order) {
    e->revenue = f[F_REVENUE].type == JSCAN_NUMBER ? f[F_REVENUE].num
                 : f[F_TOTAL].type == JSCAN_NUMBER ? f[F_TOTAL].num
                                                   : 0;
    if (!isfinite(e->revenue)) e->revenue = 0;
  }
  e->consent_marketing = f[F_CONSENT].type == JSCAN_TRUE;
  e->user_key = e->anonymous_id ? e->anonymous_id : e->user_id;
  e->user_hash =
      e->user_key ? XXH3_64bits(e->user_key, e->anonymous_id ? e->anonymous_id_len : e->user_id_len)
                  : 0;
  return 1;
}

int evfields_scan(const evfields_decoder_t *d, const log_record_t *rec, evfields_t *e) {
  return jscan_scan_trusted(d->paths, rec->value, rec->value_len, e->raw) ? -EBADMSG : 0;
}

int evfields_finish(const evfields_decoder_t *d, const log_record_t *rec, evfields_t *e) {
  return decode_spans(d, rec, e, 0);
}

int evfields_decode(const evfields_decoder_t *d, const log_record_t *rec, evfields_t *e) {
  int rc = evfields_scan(d, rec, e);
  return rc ? rc : evfields_finish(d, rec, e);
}

const char *evfields_raw_user(const evfields_t *e, size_t *len) {
  const jscan_val_t *v = &e->raw[F_USER];
  if (v->type != JSCAN_STRING || !v->n) v = &e->raw[F_ANON];
  if (v->type != JSCAN_STRING || !v->n || v->escaped) return NULL;
  *len = v->n;
  return v->p;
}

const char *evfields_raw_linked(const evfields_t *e, size_t *len) {
  const jscan_val_t *u = &e->raw[F_USER], *a = &e->raw[F_ANON];
  if (u->type != JSCAN_STRING || !u->n || a->type != JSCAN_STRING || !a->n || a->escaped)
    return NULL;
  *len = a->n;
  return a->p;
}

int evfields_decode_strict(const evfields_decoder_t *d, const log_record_t *rec, evfields_t *e) {
  return decode_spans(d, rec, e, jscan_scan(d->paths, rec->value, rec->value_len, e->raw));
}
