/* query: POST /v1/query and GET /v1/live (see query.h). */
#include "query.h"

#include <cJSON.h>
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keys.h"
#include "query_kpi.h"
#include "util/clock.h"
#include "util/mem.h"

struct query {
  const config_t *cfg;
  process_t *process;
  sse_hub_t *hub;
};

typedef struct qerr {
  const char *field;
  char msg[256];
} qerr_t;

static int fail(qerr_t *e, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fail(qerr_t *e, const char *field, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  e->field = field;
  vsnprintf(e->msg, sizeof e->msg, fmt, ap);
  va_end(ap);
  return -1;
}

/* ---- parsing ---- */

/* A time: ISO 8601 string, "now", "-<n><s|m|h|d>" relative to now, or epoch ms. */
static int parse_time(const cJSON *v, int64_t now, int64_t *out) {
  if (cJSON_IsNumber(v)) {
    if (!isfinite(v->valuedouble) || v->valuedouble < 0 || v->valuedouble > 4102444800000.0)
      return -1;
    *out = (int64_t)v->valuedouble * 1000;
    return 0;
  }
  if (!cJSON_IsString(v)) return -1;
  const char *s = v->valuestring;
  if (!strcmp(s, "now")) {
    *out = now;
    return 0;
  }
  if (s[0] == '-' && isdigit((unsigned char)s[1])) {
    char *end;
    long long n = strtoll(s + 1, &end, 10);
    int64_t unit = !strcmp(end, "s") ? 1 : !strcmp(end, "m") ? 60 : !strcmp(end, "h") ? 3600
                 : !strcmp(end, "d") ? 86400 : 0;
    if (!unit || n < 0 || n > 100000000LL / unit * 100) return -1;
    *out = now - (int64_t)n * unit * 1000000;
    return 0;
  }
  return clock_parse_iso(s, strlen(s), out) == 0 ? 0 : -1;
}

static const char *const dims[] = {PROCESS_DIMS};

static int known_dim(const char *d) {
  for (size_t i = 0; i < PROCESS_NDIMS; i++)
    if (!strcmp(dims[i], d)) return 1;
  return 0;
}

enum { Q_TIMESERIES, Q_TOPN, Q_TOTALS, Q_KPI };
static const char *const type_names[] = {"timeseries", "topN", "totals", "kpi"};
#define GRAN_DAY 86400 /* kpi series only */

typedef struct q {
  int type, kpi, gran, gran_given, compare;
  int64_t from, to;
  const char *dimension, *kpi_name;
  rollup_filter_t filter;
  int has_filter;
  rollup_metric_t metric;
  int limit;
} q_t;

static int pick(const char *s, const char *const *names, int n) {
  for (int i = 0; i < n; i++)
    if (!strcmp(s, names[i])) return i;
  return -1;
}

static int parse(const query_stores_t *st, const cJSON *root, int64_t now, q_t *q, qerr_t *e) {
  if (!cJSON_IsObject(root)) return fail(e, "", "the body must be a JSON object");
  static const char *const allowed[] = {"type", "from", "to", "granularity", "dimension",
                                        "filter", "metric", "limit", "kpi", "compare"};
  for (const cJSON *c = root->child; c; c = c->next)
    if (pick(c->string, allowed, 10) < 0) return fail(e, c->string, "unknown field '%s'", c->string);
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, "type");
  if (!cJSON_IsString(v) || (q->type = pick(v->valuestring, type_names, 4)) < 0)
    return fail(e, "type", "type must be one of timeseries, topN, totals, kpi");

  q->to = now;
  q->from = now - 3600LL * 1000000;
  if ((v = cJSON_GetObjectItemCaseSensitive(root, "from")) && parse_time(v, now, &q->from))
    return fail(e, "from", "from must be an ISO 8601 time, epoch milliseconds, \"now\" or "
                           "relative like \"-1h\"");
  if ((v = cJSON_GetObjectItemCaseSensitive(root, "to")) && parse_time(v, now, &q->to))
    return fail(e, "to", "to must be an ISO 8601 time, epoch milliseconds, \"now\" or "
                         "relative like \"-1h\"");
  if (q->to <= q->from) return fail(e, "to", "to must be after from");
  if (q->to - q->from > QUERY_MAX_RANGE_S * 1000000)
    return fail(e, "from", "the range from..to may span at most 400 days");

  q->gran = ROLLUP_AUTO;
  if ((v = cJSON_GetObjectItemCaseSensitive(root, "granularity"))) {
    static const char *const g[] = {"auto", "second", "minute", "hour", "day"};
    static const int gs[] = {ROLLUP_AUTO, ROLLUP_SECOND, ROLLUP_MINUTE, ROLLUP_HOUR, GRAN_DAY};
    int i = cJSON_IsString(v) ? pick(v->valuestring, g, 5) : -1;
    if (i < 0 || (gs[i] == GRAN_DAY && q->type != Q_KPI))
      return fail(e, "granularity", "granularity must be second, minute or hour (day: kpi "
                                    "only)");
    q->gran = gs[i];
    q->gran_given = i > 0;
  }
  if (q->gran == ROLLUP_AUTO) {
    int64_t span = q->to - q->from;
    q->gran = span <= 600LL * 1000000 && q->from >= now - 3500LL * 1000000 ? ROLLUP_SECOND
              : span <= 2 * 86400LL * 1000000                              ? ROLLUP_MINUTE
                                                                           : ROLLUP_HOUR;
  }

  if ((v = cJSON_GetObjectItemCaseSensitive(root, "dimension"))) {
    if (!cJSON_IsString(v) || !known_dim(v->valuestring))
      return fail(e, "dimension", "unknown dimension; use one of event, page_path, utm_source, "
                                  "utm_medium, utm_campaign, referrer_class, country, "
                                  "device_type, browser");
    q->dimension = v->valuestring;
  }
  if ((v = cJSON_GetObjectItemCaseSensitive(root, "filter")) && !cJSON_IsNull(v)) {
    const cJSON *d = cJSON_GetObjectItemCaseSensitive(v, "dimension");
    const cJSON *val = cJSON_GetObjectItemCaseSensitive(v, "value");
    if (!cJSON_IsObject(v) || !cJSON_IsString(d) || !cJSON_IsString(val))
      return fail(e, "filter", "filter must be {\"dimension\": name, \"value\": string}");
    if (!known_dim(d->valuestring))
      return fail(e, "filter.dimension", "unknown filter dimension '%s'", d->valuestring);
    q->filter.dim = d->valuestring;
    q->filter.value = val->valuestring;
    q->has_filter = 1;
  }
  q->metric = ROLLUP_BY_COUNT;
  if ((v = cJSON_GetObjectItemCaseSensitive(root, "metric"))) {
    static const char *const m[] = {"count", "sum", "uniques"};
    int i = cJSON_IsString(v) ? pick(v->valuestring, m, 3) : -1;
    if (i < 0) return fail(e, "metric", "metric must be count, sum or uniques");
    q->metric = (rollup_metric_t)i;
  }
  q->limit = 10;
  if ((v = cJSON_GetObjectItemCaseSensitive(root, "limit"))) {
    if (!cJSON_IsNumber(v) || v->valuedouble < 1 || v->valuedouble > QUERY_MAX_LIMIT ||
        v->valuedouble != floor(v->valuedouble))
      return fail(e, "limit", "limit must be an integer from 1 to 100");
    q->limit = (int)v->valuedouble;
  }
  q->kpi = -1;
  if ((v = cJSON_GetObjectItemCaseSensitive(root, "kpi"))) {
    if (!cJSON_IsString(v) || (q->kpi = query_kpi_lookup(st, v->valuestring)) < 0)
      return fail(e, "kpi", "kpi must be one of %s, or a kpi of the configuration",
                  query_kpi_list());
    q->kpi_name = v->valuestring;
  }
  if ((v = cJSON_GetObjectItemCaseSensitive(root, "compare"))) {
    if (!cJSON_IsString(v) || strcmp(v->valuestring, "previous") || q->type != Q_KPI)
      return fail(e, "compare", "compare must be \"previous\" (kpi queries only)");
    q->compare = 1;
    if (q->kpi >= 0 && query_kpi_shape(q->kpi) >= QUERY_KPI_LIFETIME)
      return fail(e, "compare", "kpi %s has no previous period", q->kpi_name);
  }
  if (q->type == Q_TOPN && !q->dimension)
    return fail(e, "dimension", "topN needs a dimension");
  if (q->type == Q_TOPN && q->has_filter)
    return fail(e, "filter", "topN does not take a filter");
  if (q->type == Q_KPI && q->kpi < 0) return fail(e, "kpi", "a kpi query needs kpi");
  if (q->type == Q_KPI && q->has_filter) {
    int fk = query_kpi_filter_kind(q->kpi);
    if (fk == QUERY_KPI_NO_FILTER)
      return fail(e, "filter", "kpi %s cannot be filtered (docs/API.md lists the filters "
                               "each KPI takes)", q->kpi_name);
    if (fk == QUERY_KPI_CAMPAIGN_FILTER && strcmp(q->filter.dim, "utm_campaign"))
      return fail(e, "filter", "kpi %s can only be filtered by utm_campaign",
                  q->kpi_name);
  }
  if (q->type == Q_KPI && q->gran_given) {
    int sh = query_kpi_shape(q->kpi);
    if (sh == QUERY_KPI_GRID || sh == QUERY_KPI_LIFETIME)
      return fail(e, "granularity", "kpi %s has no series", q->kpi_name);
    int max = query_kpi_max_points(q->kpi);
    if ((q->to - q->from) / ((int64_t)q->gran * 1000000) >= max)
      return fail(e, "granularity", "too many points: at most %d for kpi %s; use a coarser "
                                    "granularity", max, q->kpi_name);
  }
  return 0;
}

/* ---- answering ---- */

static void put_time(buf_t *b, const char *key, int64_t t) {
  char iso[25];
  clock_format_iso(t, iso);
  buf_printf(b, "\"%s\":\"%s\"", key, iso);
}

static void put_num(buf_t *b, double v) {
  if (!isfinite(v)) buf_puts(b, "null");
  else if (v == floor(v) && fabs(v) < 1e15) buf_printf(b, "%.0f", v);
  else buf_printf(b, "%.6g", v);
}

static void put_str(buf_t *b, const char *s) {
  buf_putc(b, '"');
  buf_json_escape(b, s, strlen(s));
  buf_putc(b, '"');
}

static const char *gran_name(int g) {
  return g == ROLLUP_SECOND ? "second" : g == ROLLUP_MINUTE ? "minute"
         : g == ROLLUP_HOUR ? "hour" : "day";
}

static void head(buf_t *out, const q_t *q, int64_t from, int64_t to) {
  buf_printf(out, "{\"type\":\"%s\",", type_names[q->type]);
  put_time(out, "from", from);
  buf_putc(out, ',');
  put_time(out, "to", to);
}

static int totals(const rollup_t *r, const q_t *q, const rollup_filter_t *f, size_t nf,
                  rollup_totals_t *t) {
  memset(t, 0, sizeof *t);
  return rollup_totals(r, q->from, q->to, f, nf, t);
}

/* "value" and, for a ratio, "numerator" and "denominator" (value null when it is 0). */
static void put_kpi_value(buf_t *out, const query_kpi_value_t *v) {
  int ratio = !isnan(v->den);
  buf_puts(out, "\"value\":");
  put_num(out, ratio ? (v->den > 0 ? v->num / v->den : NAN) : v->num);
  if (ratio) {
    buf_puts(out, ",\"numerator\":");
    put_num(out, v->num);
    buf_puts(out, ",\"denominator\":");
    put_num(out, v->den);
  }
}

/* KPIs (query_kpi.h; docs/API.md defines each): one value over the range, a series with
 * granularity, cohorts for the grid KPIs; compare: the same over the previous period of
 * equal length. */
static int answer_kpi(const query_stores_t *st, const q_t *q, buf_t *out, qerr_t *e) {
  const rollup_filter_t *f = q->has_filter ? &q->filter : NULL;
  const char *name = q->kpi_name, *format = query_kpi_format(st, q->kpi);
  int shape = query_kpi_shape(q->kpi);
  int64_t span = q->to - q->from;
  query_kpi_value_t v, pv;
  if (shape == QUERY_KPI_GRID) {
    head(out, q, q->from, q->to);
    buf_printf(out, ",\"kpi\":\"%s\",\"format\":\"%s\"", name, format);
    if (query_kpi_grid(st, q->kpi, q->from, q->to, out) != 0)
      return fail(e, "kpi", "kpi %s is not available", name);
    buf_putc(out, '}');
    return 0;
  }
  if (!q->gran_given) {
    if (query_kpi_eval(st, q->kpi, q->from, q->to, f, &v) != 0)
      return fail(e, "filter", "cannot answer kpi %s with this filter", name);
    head(out, q, v.from_us, v.to_us);
    buf_printf(out, ",\"kpi\":\"%s\",\"format\":\"%s\",", name, format);
    put_kpi_value(out, &v);
    if (q->compare && query_kpi_eval(st, q->kpi, q->from - span, q->from, f, &pv) == 0) {
      buf_puts(out, ",\"previous\":{");
      put_time(out, "from", pv.from_us);
      buf_putc(out, ',');
      put_time(out, "to", pv.to_us);
      buf_putc(out, ',');
      put_kpi_value(out, &pv);
      buf_putc(out, '}');
    }
    if (shape == QUERY_KPI_LIFETIME) query_kpi_grid(st, q->kpi, q->from, q->to, out);
    buf_putc(out, '}');
    return 0;
  }
  int64_t g = (int64_t)q->gran * 1000000;
  int64_t t0 = q->from / g * g, t1 = (q->to + g - 1) / g * g;
  head(out, q, t0, t1);
  buf_printf(out, ",\"kpi\":\"%s\",\"format\":\"%s\",\"granularity\":\"%s\",\"points\":[",
             name, format, gran_name(q->gran));
  for (int64_t t = t0; t < t1; t += g) {
    if (query_kpi_eval(st, q->kpi, t, t + g, f, &v) != 0)
      return fail(e, "filter", "cannot answer kpi %s with this filter", name);
    buf_puts(out, t == t0 ? "{" : ",{");
    put_time(out, "t", t);
    buf_putc(out, ',');
    put_kpi_value(out, &v);
    if (q->compare && query_kpi_eval(st, q->kpi, t - span, t - span + g, f, &pv) == 0) {
      buf_puts(out, ",\"previous\":{");
      put_kpi_value(out, &pv);
      buf_putc(out, '}');
    }
    buf_putc(out, '}');
  }
  buf_puts(out, "]}");
  return 0;
}

static int answer(const query_stores_t *st, const q_t *q, buf_t *out, qerr_t *e) {
  const rollup_filter_t *f = q->has_filter ? &q->filter : NULL;
  size_t nf = q->has_filter ? 1 : 0;
  if (q->type == Q_TIMESERIES) {
    rollup_point_t *pts = xmalloc(QUERY_MAX_POINTS * sizeof *pts);
    int used = 0;
    int n = rollup_timeseries(st->events, q->gran, q->from, q->to, f, nf, pts, QUERY_MAX_POINTS,
                              &used);
    if (n < 0) {
      free(pts);
      return n == -ENOSPC ? fail(e, "granularity", "too many points: at most 1000 per query; "
                                                   "use a coarser granularity")
                          : fail(e, "filter", "cannot answer this filter");
    }
    head(out, q, q->from, q->to);
    buf_printf(out, ",\"granularity\":\"%s\",\"points\":[", gran_name(used));
    for (int i = 0; i < n; i++) {
      buf_puts(out, i ? ",{" : "{");
      put_time(out, "t", pts[i].t_us);
      buf_printf(out, ",\"count\":%llu,\"sum\":", (unsigned long long)pts[i].count);
      put_num(out, pts[i].sum);
      if (pts[i].uniques == ROLLUP_NA) buf_puts(out, ",\"uniques\":null");
      else buf_printf(out, ",\"uniques\":%llu", (unsigned long long)pts[i].uniques);
      buf_printf(out, ",\"retained\":%s}", pts[i].retained ? "true" : "false");
    }
    buf_puts(out, "]}");
    free(pts);
    return 0;
  }
  if (q->type == Q_TOPN) {
    rollup_top_t rows[QUERY_MAX_LIMIT];
    int64_t from = q->from, to = q->to;
    int n = rollup_topn(st->events, q->dimension, q->metric, q->from, q->to, rows,
                        (size_t)q->limit, &from, &to);
    if (n < 0) return fail(e, "dimension", "cannot answer for dimension '%s'", q->dimension);
    head(out, q, from, to);
    static const char *const m[] = {"count", "sum", "uniques"};
    buf_puts(out, ",\"dimension\":");
    put_str(out, q->dimension);
    buf_printf(out, ",\"metric\":\"%s\",\"rows\":[", m[q->metric]);
    for (int i = 0; i < n; i++) {
      buf_puts(out, i ? ",{\"value\":" : "{\"value\":");
      put_str(out, rows[i].value);
      buf_printf(out, ",\"count\":%llu,\"sum\":", (unsigned long long)rows[i].count);
      put_num(out, rows[i].sum);
      buf_printf(out, ",\"uniques\":%llu}", (unsigned long long)rows[i].uniques);
    }
    buf_puts(out, "]}");
    return 0;
  }
  rollup_totals_t t;
  if (q->type == Q_TOTALS) {
    if (totals(st->events, q, f, nf, &t) != 0) return fail(e, "filter", "cannot answer this filter");
    head(out, q, t.from_us, t.to_us);
    buf_printf(out, ",\"count\":%llu,\"sum\":", (unsigned long long)t.count);
    put_num(out, t.sum);
    buf_printf(out, ",\"uniques\":%llu}", (unsigned long long)t.uniques);
    return 0;
  }
  return answer_kpi(st, q, out, e);
}

static void error_body(buf_t *out, const qerr_t *e) {
  buf_puts(out, "{\"success\":false,\"error\":\"bad_query\",\"field\":");
  put_str(out, e->field ? e->field : "");
  buf_puts(out, ",\"message\":");
  put_str(out, e->msg);
  buf_putc(out, '}');
}

int query_run(const query_stores_t *st, const char *json, size_t len, int64_t now_us, buf_t *out) {
  qerr_t e = {0};
  q_t q = {0};
  cJSON *root = cJSON_ParseWithLength(json ? json : "", json ? len : 0);
  size_t mark = out->len;
  int rc;
  if (!root) rc = fail(&e, "", "the body is not valid JSON");
  else if ((rc = parse(st, root, now_us, &q, &e)) == 0) rc = answer(st, &q, out, &e);
  if (rc != 0) {
    out->len = mark;
    if (out->data) out->data[mark] = 0;
    error_body(out, &e);
  }
  cJSON_Delete(root);
  return rc ? 400 : 200;
}

/* ---- HTTP ---- */

query_t *query_new(const config_t *cfg, process_t *p, sse_hub_t *hub) {
  query_t *q = xcalloc(1, sizeof *q);
  q->cfg = cfg;
  q->process = p;
  q->hub = hub;
  return q;
}

void query_free(query_t *q) { free(q); }

/* The key from ?key= in the query string, or "" */
static size_t query_key(const char *qs, char *out, size_t cap) {
  for (const char *s = qs; s && *s;) {
    size_t n = strcspn(s, "&");
    if (n > 4 && !strncmp(s, "key=", 4) && n - 4 < cap) {
      memcpy(out, s + 4, n - 4);
      out[n - 4] = 0;
      return n - 4;
    }
    s += n + (s[n] == '&');
  }
  return 0;
}

/* 0 when r may read; otherwise answers r (401 or 403) and returns -1. */
static int authorize(query_t *q, http_req_t *r, int allow_query_key) {
  char key[256];
  long n = keys_from_authorization(http_req_header(r, "Authorization"), key, sizeof key);
  if (n <= 0 && allow_query_key) n = (long)query_key(http_req_query(r), key, sizeof key);
  key_kind_t k = n > 0 ? keys_match(q->cfg, key, (size_t)n) : KEY_NONE;
  if (k == KEY_READ || k == KEY_ADMIN) return 0;
  if (k == KEY_WRITE) {
    http_respond_error(r, 403, "forbidden", "the write key may only send events; use the read key",
                       NULL, 0);
  } else {
    http_header_t h[] = {{"WWW-Authenticate", "Bearer realm=\"sluice\""}};
    http_respond_error(r, 401, "unauthorized", "send the read key: Authorization: Bearer KEY", h, 1);
  }
  return -1;
}

int query_handle(query_t *q, http_req_t *r) {
  const char *path = http_req_path(r), *method = http_req_method(r);
  if (!strcmp(path, "/v1/query")) {
    http_req_set_route(r, "query");
    if (strcmp(method, "POST") != 0) {
      http_header_t h[] = {{"Allow", "POST"}};
      http_respond_error(r, 405, "method_not_allowed", "use POST", h, 1);
      return 1;
    }
    if (authorize(q, r, 0) != 0) return 1;
    size_t len = 0;
    const char *body = http_req_body(r, &len);
    query_stores_t st = {process_events(q->process), process_sessions(q->process),
                         process_conversion_event(q->process), process_kpi(q->process)};
    buf_t out = BUF_INIT;
    int status = query_run(&st, body, len, clock_wall_us(), &out);
    http_header_t h[] = {{"Content-Type", "application/json"}, {"Cache-Control", "no-store"}};
    http_respond(r, status, h, 2, out.data, out.len, 0);
    buf_free(&out);
    return 1;
  }
  if (!strcmp(path, "/v1/live")) {
    http_req_set_route(r, "live");
    if (strcmp(method, "GET") != 0) {
      http_header_t h[] = {{"Allow", "GET"}};
      http_respond_error(r, 405, "method_not_allowed", "use GET", h, 1);
      return 1;
    }
    if (authorize(q, r, 1) != 0) return 1;
    int rc = q->hub ? sse_subscribe(q->hub, r, PROCESS_LIVE_CHANNEL,
                                    http_req_header(r, "Last-Event-ID"))
                    : -ENOSPC;
    if (rc == -ENOSPC || rc == -EINVAL)
      http_respond_error(r, 503, "unavailable", "too many live subscribers", NULL, 0);
    return 1;
  }
  return 0;
}
