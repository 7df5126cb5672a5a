/* scan_parse: the query JSON of filters, groupBy and funnels -> scan_query_t (see scan.h).
 * Queries come from the network: every list, string and nesting level is bounded, and a
 * bad value is reported with the path of the field that holds it. */
#include "scan.h"

#include <cJSON.h>
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "evfields.h"
#include "process.h"
#include "util/mem.h"

enum { OP_EQ, OP_IN, OP_AND, OP_OR, OP_NOT };

struct scan_filter {
  int op;
  int dim;                 /* OP_EQ, OP_IN */
  char **values;           /* OP_EQ (one), OP_IN */
  size_t nvalues;
  scan_filter_t **kids;    /* OP_AND, OP_OR, OP_NOT (one) */
  size_t nkids;
};

static const char *const dim_names[PROCESS_NDIMS] = {PROCESS_DIMS};

typedef struct perr {
  char *field, *err;
  size_t fieldlen, errlen;
  int nodes;
} perr_t;

static int bad(perr_t *e, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int bad(perr_t *e, const char *field, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  snprintf(e->field, e->fieldlen, "%s", field);
  vsnprintf(e->err, e->errlen, fmt, ap);
  va_end(ap);
  return -1;
}

/* The length of array v when it has min..max elements, else -1. */
static int sized(const cJSON *v, int min, int max) {
  int n = cJSON_IsArray(v) ? cJSON_GetArraySize(v) : -1;
  return n >= min && n <= max ? n : -1;
}

static int dim_index(const char *name) {
  for (int i = 0; i < PROCESS_NDIMS; i++)
    if (!strcmp(name, dim_names[i])) return i;
  return -1;
}

static int dim_of(const cJSON *v, const char *field, perr_t *e) {
  int d = cJSON_IsString(v) ? dim_index(v->valuestring) : -1;
  if (d < 0)
    bad(e, field, "unknown dimension; use one of event, page_path, utm_source, utm_medium, "
                  "utm_campaign, referrer_class, country, device_type, browser");
  return d;
}

/* A filter value: a string of at most EVFIELDS_VAL_CAP - 1 bytes. */
static char *value_of(const cJSON *v, const char *field, perr_t *e) {
  if (!cJSON_IsString(v)) {
    bad(e, field, "a filter value must be a string");
    return NULL;
  }
  if (strlen(v->valuestring) >= EVFIELDS_VAL_CAP) {
    bad(e, field, "a filter value may have at most %d bytes", EVFIELDS_VAL_CAP - 1);
    return NULL;
  }
  return xstrdup(v->valuestring);
}

void scan_filter_free(scan_filter_t *f) {
  if (!f) return;
  for (size_t i = 0; i < f->nvalues; i++) free(f->values[i]);
  for (size_t i = 0; i < f->nkids; i++) scan_filter_free(f->kids[i]);
  free(f->values);
  free(f->kids);
  free(f);
}

static scan_filter_t *parse_node(const cJSON *v, const char *path, int depth, perr_t *e) {
  char sub[160];
  if (!cJSON_IsObject(v)) {
    bad(e, path, "a filter must be an object: {\"dim\",\"value\"}, {\"dim\",\"in\"}, "
                 "{\"and\":[...]}, {\"or\":[...]} or {\"not\":{...}}");
    return NULL;
  }
  if (depth > SCAN_MAX_FILTER_DEPTH) {
    bad(e, path, "a filter may nest at most %d levels", SCAN_MAX_FILTER_DEPTH);
    return NULL;
  }
  if (++e->nodes > SCAN_MAX_FILTER_NODES) {
    bad(e, path, "a filter may have at most %d nodes", SCAN_MAX_FILTER_NODES);
    return NULL;
  }
  const cJSON *dim = NULL, *value = NULL, *in = NULL, *list = NULL, *not = NULL;
  int op = -1, nkeys = 0;
  for (const cJSON *c = v->child; c; c = c->next, nkeys++) {
    if (!strcmp(c->string, "dim") || !strcmp(c->string, "dimension")) dim = c;
    else if (!strcmp(c->string, "value")) value = c;
    else if (!strcmp(c->string, "in")) in = c;
    else if (!strcmp(c->string, "and") || !strcmp(c->string, "or")) {
      list = c;
      op = c->string[0] == 'a' ? OP_AND : OP_OR;
    } else if (!strcmp(c->string, "not")) not = c;
    else {
      snprintf(sub, sizeof sub, "%s.%s", path, c->string);
      bad(e, sub, "unknown filter key '%s'", c->string);
      return NULL;
    }
  }
  scan_filter_t *f = xcalloc(1, sizeof *f);
  if (dim && (value || in) && !(value && in) && nkeys == 2) {
    snprintf(sub, sizeof sub, "%s.%s", path, dim->string);
    if ((f->dim = dim_of(dim, sub, e)) < 0) goto fail;
    if (value) {
      f->op = OP_EQ;
      f->values = xmalloc(sizeof *f->values);
      snprintf(sub, sizeof sub, "%s.value", path);
      if (!(f->values[0] = value_of(value, sub, e))) goto fail;
      f->nvalues = 1;
      return f;
    }
    f->op = OP_IN;
    snprintf(sub, sizeof sub, "%s.in", path);
    int n = sized(in, 1, SCAN_MAX_IN_VALUES);
    if (n < 0) {
      bad(e, sub, "\"in\" must be an array of 1 to %d strings", SCAN_MAX_IN_VALUES);
      goto fail;
    }
    f->values = xcalloc((size_t)n, sizeof *f->values);
    for (const cJSON *c = in->child; c; c = c->next) {
      snprintf(sub, sizeof sub, "%s.in[%zu]", path, f->nvalues);
      if (!(f->values[f->nvalues] = value_of(c, sub, e))) goto fail;
      f->nvalues++;
    }
    return f;
  }
  if (list && nkeys == 1) {
    f->op = op;
    snprintf(sub, sizeof sub, "%s.%s", path, list->string);
    int n = sized(list, 1, SCAN_MAX_FILTER_NODES);
    if (n < 0) {
      bad(e, sub, "\"%s\" must be an array of 1 to %d filters", list->string,
          SCAN_MAX_FILTER_NODES);
      goto fail;
    }
    f->kids = xcalloc((size_t)n, sizeof *f->kids);
    for (const cJSON *c = list->child; c; c = c->next) {
      snprintf(sub, sizeof sub, "%s.%s[%zu]", path, list->string, f->nkids);
      if (!(f->kids[f->nkids] = parse_node(c, sub, depth + 1, e))) goto fail;
      f->nkids++;
    }
    return f;
  }
  if (not && nkeys == 1) {
    f->op = OP_NOT;
    f->kids = xcalloc(1, sizeof *f->kids);
    snprintf(sub, sizeof sub, "%s.not", path);
    if (!(f->kids[0] = parse_node(not, sub, depth + 1, e))) goto fail;
    f->nkids = 1;
    return f;
  }
  bad(e, path, "a filter is exactly one of {\"dim\",\"value\"}, {\"dim\",\"in\"}, "
               "{\"and\":[...]}, {\"or\":[...]}, {\"not\":{...}}");
fail:
  scan_filter_free(f);
  return NULL;
}

scan_filter_t *scan_filter_parse(const cJSON *v, const char *path, char *field, size_t fieldlen,
                                 char *err, size_t errlen) {
  perr_t e = {field, err, fieldlen, errlen, 0};
  return parse_node(v, path, 1, &e);
}

int scan_filter_match(const scan_filter_t *f, const char *const *dims) {
  if (!f) return 1;
  switch (f->op) {
  case OP_EQ:
  case OP_IN: {
    const char *v = dims[f->dim];
    if (!v) return 0;
    for (size_t i = 0; i < f->nvalues; i++)
      if (!strcmp(v, f->values[i])) return 1;
    return 0;
  }
  case OP_AND:
    for (size_t i = 0; i < f->nkids; i++)
      if (!scan_filter_match(f->kids[i], dims)) return 0;
    return 1;
  case OP_OR:
    for (size_t i = 0; i < f->nkids; i++)
      if (scan_filter_match(f->kids[i], dims)) return 1;
    return 0;
  default:
    return !scan_filter_match(f->kids[0], dims);
  }
}

int scan_filter_simple(const scan_filter_t *f, int *dim, const char **value) {
  if (!f || f->op != OP_EQ) return 0;
  *dim = f->dim;
  *value = f->values[0];
  return 1;
}

void scan_query_free(scan_query_t *q) {
  if (!q) return;
  scan_filter_free(q->filter);
  for (int i = 0; i < q->nsteps; i++) {
    free(q->steps[i].event);
    scan_filter_free(q->steps[i].filter);
  }
  q->filter = NULL;
  q->nsteps = 0;
}

static int pick(const cJSON *v, const char *const *names, int n) {
  if (!cJSON_IsString(v)) return -1;
  for (int i = 0; i < n; i++)
    if (!strcmp(v->valuestring, names[i])) return i;
  return -1;
}

/* orderBy and order (groupBy rows, funnel breakdown groups). */
static int parse_order(const cJSON *root, scan_query_t *q, perr_t *e) {
  static const char *const metrics[] = {"count", "sum", "uniques"};
  static const char *const dirs[] = {"desc", "asc"};
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, "orderBy");
  int i;
  if (v && (i = pick(v, metrics, 3)) < 0)
    return bad(e, "orderBy", "orderBy must be count, sum or uniques");
  q->order_by = v ? (scan_metric_t)i : SCAN_BY_COUNT;
  v = cJSON_GetObjectItemCaseSensitive(root, "order");
  if (v && (i = pick(v, dirs, 2)) < 0) return bad(e, "order", "order must be desc or asc");
  q->ascending = v ? i : 0;
  return 0;
}

int scan_parse_groupby(const cJSON *root, scan_query_t *q, char *field, size_t fieldlen,
                       char *err, size_t errlen) {
  perr_t e = {field, err, fieldlen, errlen, 0};
  const cJSON *g = cJSON_GetObjectItemCaseSensitive(root, "groupBy");
  if (sized(g, 1, SCAN_MAX_GROUP_DIMS) < 0)
    return bad(&e, "groupBy", "groupBy must be an array of 1 to %d dimension names",
               SCAN_MAX_GROUP_DIMS);
  q->ngroup = 0;
  for (const cJSON *c = g->child; c; c = c->next) {
    char sub[32];
    snprintf(sub, sizeof sub, "groupBy[%d]", q->ngroup);
    int d = dim_of(c, sub, &e);
    if (d < 0) return -1;
    for (int k = 0; k < q->ngroup; k++)
      if (q->group_dims[k] == d) return bad(&e, sub, "dimension '%s' is repeated", dim_names[d]);
    q->group_dims[q->ngroup++] = d;
  }
  return parse_order(root, q, &e);
}

/* "30m", "1h", "7d", "90s" or a number of seconds -> µs; -1 when bad or out of range. */
static int64_t duration_of(const cJSON *v) {
  double s;
  if (cJSON_IsNumber(v)) s = v->valuedouble;
  else if (cJSON_IsString(v) && isdigit((unsigned char)v->valuestring[0])) {
    char *end;
    double n = strtod(v->valuestring, &end);
    int64_t unit = !strcmp(end, "s") ? 1 : !strcmp(end, "m") ? 60 : !strcmp(end, "h") ? 3600
                 : !strcmp(end, "d") ? 86400 : 0;
    if (!unit) return -1;
    s = n * (double)unit;
  } else {
    return -1;
  }
  if (!isfinite(s) || s < 1 || s > 90 * 86400.0) return -1;
  return (int64_t)(s * 1e6);
}

int scan_parse_funnel(const cJSON *root, scan_query_t *q, char *field, size_t fieldlen,
                      char *err, size_t errlen) {
  perr_t e = {field, err, fieldlen, errlen, 0};
  const cJSON *steps = cJSON_GetObjectItemCaseSensitive(root, "steps");
  if (sized(steps, 2, SCAN_MAX_STEPS) < 0)
    return bad(&e, "steps", "steps must be an array of 2 to %d steps, each {\"event\": name, "
                            "\"filter\": optional filter}", SCAN_MAX_STEPS);
  q->nsteps = 0;
  for (const cJSON *c = steps->child; c; c = c->next) {
    char sub[48];
    int k = q->nsteps;
    snprintf(sub, sizeof sub, "steps[%d]", k);
    if (!cJSON_IsObject(c)) return bad(&e, sub, "a step must be {\"event\": name, \"filter\": ...}");
    for (const cJSON *m = c->child; m; m = m->next)
      if (strcmp(m->string, "event") && strcmp(m->string, "filter")) {
        snprintf(sub, sizeof sub, "steps[%d].%.16s", k, m->string);
        return bad(&e, sub, "unknown step key '%s'", m->string);
      }
    const cJSON *ev = cJSON_GetObjectItemCaseSensitive(c, "event");
    snprintf(sub, sizeof sub, "steps[%d].event", k);
    if (!cJSON_IsString(ev) || !ev->valuestring[0] || strlen(ev->valuestring) >= EVFIELDS_VAL_CAP)
      return bad(&e, sub, "a step's event must be a non-empty event name of at most %d bytes "
                          "(\"$page\" for page views)", EVFIELDS_VAL_CAP - 1);
    q->steps[k].event = xstrdup(ev->valuestring);
    q->steps[k].filter = NULL;
    q->nsteps++;
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(c, "filter");
    if (f && !cJSON_IsNull(f)) {
      snprintf(sub, sizeof sub, "steps[%d].filter", k);
      e.nodes = 0;
      if (!(q->steps[k].filter = parse_node(f, sub, 1, &e))) return -1;
    }
  }
  const cJSON *w = cJSON_GetObjectItemCaseSensitive(root, "window");
  q->window_us = 86400LL * 1000000;
  if (w && (q->window_us = duration_of(w)) < 0)
    return bad(&e, "window", "window must be a duration like \"30m\", \"1h\", \"7d\" or seconds, "
                             "from 1 s to 90 days");
  const cJSON *b = cJSON_GetObjectItemCaseSensitive(root, "breakdown");
  q->breakdown_dim = -1;
  if (b && !cJSON_IsNull(b) && (q->breakdown_dim = dim_of(b, "breakdown", &e)) < 0) return -1;
  return 0;
}
