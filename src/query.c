/* query: POST /v1/query and GET /v1/live (see query.h). */
#include "query.h"

#include <cJSON.h>
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keys.h"
#include "scan.h"
#include "query_kpi.h"
#include "util/clock.h"
#include "util/mem.h"
#include "util/str.h"

struct query {
  const config_t *cfg;
  process_t *process;
  sse_hub_t *hub;
  /* log scans (query_enable_scan) */
  uv_loop_t *loop;
  log_t *log;
  scan_limits_t limits;
  int max_scans;
  struct scan_job *jobs; /* running, for query_cancel */
  int njobs;
  int nanswers; /* rollup answers on the pool */
};

#define MAX_ANSWERS 64 /* rollup answers queued or running at once; more get 503 */

typedef struct qerr {
  const char *field;
  char msg[256];
  char fieldbuf[160];
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

enum { Q_TIMESERIES, Q_TOPN, Q_TOTALS, Q_KPI, Q_GROUPBY, Q_FUNNEL, Q_NTYPES };
static const char *const type_names[] = {"timeseries", "topN", "totals", "kpi", "groupBy",
                                         "funnel"};
#define GRAN_DAY 86400 /* kpi series only */

typedef struct q {
  int type, kpi, gran, gran_given, compare;
  int64_t from, to;
  const char *dimension, *kpi_name;
  rollup_filter_t filter;
  int has_filter;
  rollup_metric_t metric;
  int limit;
  scan_query_t sq;  /* the log scan, when needs_scan */
  int needs_scan;
} q_t;

static int pick(const char *s, const char *const *names, int n) {
  for (int i = 0; i < n; i++)
    if (!strcmp(s, names[i])) return i;
  return -1;
}

/* ---- log scans (scan.h): other filters, groupBy, funnel ---- */

static int scan_fail(qerr_t *e) {
  e->field = e->fieldbuf;
  return -1;
}

/* Fields that belong to one query type only. */
static int scan_fields_misplaced(const cJSON *root, int type, qerr_t *e) {
  static const struct {
    const char *name;
    int type;
  } only[] = {{"groupBy", Q_GROUPBY}, {"orderBy", Q_GROUPBY}, {"order", Q_GROUPBY},
              {"steps", Q_FUNNEL},    {"window", Q_FUNNEL},   {"breakdown", Q_FUNNEL}};
  for (size_t i = 0; i < sizeof only / sizeof only[0]; i++)
    if (type != only[i].type && cJSON_GetObjectItemCaseSensitive(root, only[i].name))
      return fail(e, only[i].name, "%s applies only to %s queries", only[i].name,
                  type_names[only[i].type]);
  return 0;
}

/* After the common fields: the scan's own fields, and whether the log must be read. */
static int plan_scan(const cJSON *root, q_t *q, qerr_t *e) {
  scan_query_t *sq = &q->sq;
  if (q->type == Q_GROUPBY) {
    if (scan_parse_groupby(root, sq, e->fieldbuf, sizeof e->fieldbuf, e->msg, sizeof e->msg))
      return scan_fail(e);
    sq->kind = SCAN_GROUPBY;
    q->needs_scan = 1;
  } else if (q->type == Q_FUNNEL) {
    if (scan_parse_funnel(root, sq, e->fieldbuf, sizeof e->fieldbuf, e->msg, sizeof e->msg))
      return scan_fail(e);
    sq->kind = SCAN_FUNNEL;
    q->needs_scan = 1;
  } else {
    sq->kind = q->type == Q_TIMESERIES ? SCAN_TIMESERIES : SCAN_TOTALS;
  }
  if (!q->needs_scan) return 0;
  if ((q->type == Q_GROUPBY || q->type == Q_FUNNEL) &&
      !cJSON_GetObjectItemCaseSensitive(root, "limit"))
    q->limit = q->type == Q_GROUPBY ? 100 : 10;
  sq->from_us = q->from;
  sq->to_us = q->to;
  sq->limit = (size_t)q->limit;
  if (sq->kind == SCAN_TIMESERIES) {
    sq->bucket_us = q->gran == ROLLUP_SECOND ? 1000000 : q->gran == ROLLUP_MINUTE ? 60000000
                                                                                  : 3600000000LL;
    sq->granularity = q->gran == ROLLUP_SECOND ? "second" : q->gran == ROLLUP_MINUTE ? "minute"
                                                                                     : "hour";
    int64_t b = sq->bucket_us, first = q->from / b - (q->from % b < 0);
    if ((q->to - 1) / b - first + 1 > QUERY_MAX_POINTS)
      return fail(e, "granularity", "too many points: at most 1000 per query; use a coarser "
                                    "granularity");
  }
  return 0;
}

static int parse(const query_stores_t *st, const cJSON *root, int64_t now, q_t *q, qerr_t *e) {
  if (!cJSON_IsObject(root)) return fail(e, "", "the body must be a JSON object");
  static const char *const allowed[] = {"type", "from", "to", "granularity", "dimension",
                                        "filter", "metric", "limit", "kpi", "groupBy",
                                        "orderBy", "order", "steps", "window", "breakdown",
                                        "compare"};
  for (const cJSON *c = root->child; c; c = c->next)
    if (pick(c->string, allowed, 16) < 0) return fail(e, c->string, "unknown field '%s'", c->string);
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, "type");
  if (!cJSON_IsString(v) || (q->type = pick(v->valuestring, type_names, Q_NTYPES)) < 0)
    return fail(e, "type", "type must be one of timeseries, topN, totals, kpi, groupBy, funnel");
  if (scan_fields_misplaced(root, q->type, e)) return -1;

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
    q->sq.filter = scan_filter_parse(v, "filter", e->fieldbuf, sizeof e->fieldbuf, e->msg,
                                     sizeof e->msg);
    if (!q->sq.filter) return scan_fail(e);
    int d;
    if (scan_filter_simple(q->sq.filter, &d, &q->filter.value)) { /* the rollups answer */
      q->filter.dim = dims[d];
      q->has_filter = 1;
    } else {
      q->needs_scan = 1;
    }
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
    int max = q->type == Q_GROUPBY || q->type == Q_FUNNEL ? SCAN_MAX_ROWS : QUERY_MAX_LIMIT;
    if (!cJSON_IsNumber(v) || v->valuedouble < 1 || v->valuedouble > max ||
        v->valuedouble != floor(v->valuedouble))
      return fail(e, "limit", "limit must be an integer from 1 to %d", max);
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
  if (q->type == Q_TOPN && q->sq.filter)
    return fail(e, "filter", "topN does not take a filter; use groupBy");
  if (q->type == Q_KPI && q->needs_scan)
    return fail(e, "filter", "a kpi takes only one {\"dim\", \"value\"} filter; use totals "
                             "for other filters");
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
  return plan_scan(root, q, e);
}

/* ---- answering ---- */

static void put_time(buf_t *b, const char *key, int64_t t) {
  char iso[25];
  clock_format_iso(t, iso);
  buf_printf(b, "\"%s\":\"%s\"", key, iso);
}

static void put_num(buf_t *b, double v) { buf_json_num(b, v); }

static void put_str(buf_t *b, const char *s) { buf_json_str(b, s); }

/* ,"uniques":N, or null where the store does not keep them (ROLLUP_NA). */
static void put_uniques(buf_t *b, uint64_t uniques) {
  if (uniques == ROLLUP_NA) buf_puts(b, ",\"uniques\":null");
  else buf_printf(b, ",\"uniques\":%llu", (unsigned long long)uniques);
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
      put_uniques(out, pts[i].uniques);
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
      put_uniques(out, rows[i].uniques);
      buf_putc(out, '}');
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
    put_uniques(out, t.uniques);
    buf_putc(out, '}');
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

/* Parse json and answer it from the rollups: returns the HTTP status with the body in
 * out; or 0 when the log must be scanned, with q->sq ready (q->sq is the caller's to
 * free either way). */
static int plan(const query_stores_t *st, const char *json, size_t len, int64_t now_us, q_t *q,
                buf_t *out) {
  qerr_t e = {0};
  cJSON *root = cJSON_ParseWithLength(json ? json : "", json ? len : 0);
  size_t mark = out->len;
  int rc;
  if (!root) rc = fail(&e, "", "the body is not valid JSON");
  else if ((rc = parse(st, root, now_us, q, &e)) == 0 && !q->needs_scan) rc = answer(st, q, out, &e);
  if (rc != 0) {
    out->len = mark;
    if (out->data) out->data[mark] = 0;
    error_body(out, &e);
  }
  cJSON_Delete(root);
  q->sq.conversion = st->conversion_event;
  return rc ? 400 : q->needs_scan ? 0 : 200;
}

/* The HTTP status and body for scan_run's result rc. */
static int scan_status(int rc, const char *err, const scan_stats_t *ss, buf_t *out) {
  if (rc == 0) return 200;
  int status = rc == -E2BIG || rc == -ETIMEDOUT ? 422 : rc == -ECANCELED ? 503 : 500;
  buf_printf(out, "{\"success\":false,\"error\":\"%s\",\"message\":",
             status == 422 ? "scan_limit" : status == 503 ? "unavailable" : "log_error");
  put_str(out, err);
  buf_printf(out, ",\"scanned\":%llu}", (unsigned long long)ss->records);
  return status;
}

int query_run(const query_stores_t *st, const char *json, size_t len, int64_t now_us, buf_t *out) {
  q_t q = {0};
  int status = plan(st, json, len, now_us, &q, out);
  if (status == 0 && !st->log) {
    buf_puts(out, "{\"success\":false,\"error\":\"unavailable\",\"message\":\"no log to scan\"}");
    status = 503;
  } else if (status == 0) {
    char err[256] = "";
    scan_stats_t ss = {0};
    int rc = scan_run(st->log, &q.sq, st->scan_limits, NULL, out, &ss, err, sizeof err);
    status = scan_status(rc, err, &ss, out);
  }
  scan_query_free(&q.sq);
  return status;
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

void query_enable_scan(query_t *q, uv_loop_t *loop, log_t *log, const scan_limits_t *limits,
                       int max_scans) {
  q->loop = loop;
  q->log = log;
  if (limits) q->limits = *limits;
  q->max_scans = max_scans > 0 ? max_scans : 2;
}

int query_busy(const query_t *q) { return q && (q->njobs > 0 || q->nanswers > 0); }

/* A scan on the thread pool, holding its request until it is done. */
typedef struct scan_job {
  uv_work_t work;
  query_t *q;
  http_req_t *req;
  scan_query_t sq;
  buf_t out;
  int rc;
  char err[256];
  scan_stats_t stats;
  atomic_int cancel;
  struct scan_job *next;
} scan_job_t;

void query_cancel(query_t *q) {
  for (scan_job_t *j = q ? q->jobs : NULL; j; j = j->next) atomic_store(&j->cancel, 1);
}

static void scan_work(uv_work_t *w) {
  scan_job_t *j = w->data;
  j->rc = scan_run(j->q->log, &j->sq, &j->q->limits, &j->cancel, &j->out, &j->stats, j->err,
                   sizeof j->err);
}

static void scan_done(uv_work_t *w, int status) {
  scan_job_t *j = w->data;
  query_t *q = j->q;
  for (scan_job_t **p = &q->jobs; *p; p = &(*p)->next)
    if (*p == j) {
      *p = j->next;
      break;
    }
  q->njobs--;
  if (status == UV_ECANCELED && j->rc == 0) {
    j->rc = -ECANCELED;
    snprintf(j->err, sizeof j->err, "the query was cancelled");
  }
  int code = scan_status(j->rc, j->err, &j->stats, &j->out);
  http_header_t h[] = {{"Content-Type", "application/json"}, {"Cache-Control", "no-store"}};
  http_respond(j->req, code, h, 2, j->out.data, j->out.len, 0);
  scan_query_free(&j->sq);
  buf_free(&j->out);
  free(j);
}

/* Start a log scan for r on the thread pool, taking over pq->sq; or answer 503. */
static void start_scan(query_t *q, http_req_t *r, q_t *pq) {
  if (!q->log || q->njobs >= q->max_scans) {
    http_header_t busy[] = {{"Retry-After", "1"}};
    if (q->log)
      http_respond_error(r, 503, "busy", "too many log scans are running; retry shortly", busy, 1);
    else
      http_respond_error(r, 503, "unavailable", "log scans are not available", NULL, 0);
    return;
  }
  scan_job_t *j = xcalloc(1, sizeof *j);
  j->q = q;
  j->req = r;
  j->sq = pq->sq;
  memset(&pq->sq, 0, sizeof pq->sq); /* moved into the job */
  j->work.data = j;
  j->next = q->jobs;
  q->jobs = j;
  q->njobs++;
  int rc = uv_queue_work(q->loop, &j->work, scan_work, scan_done);
  if (rc != 0) {
    j->rc = -EIO;
    snprintf(j->err, sizeof j->err, "cannot start the scan: %s", uv_strerror(rc));
    scan_done(&j->work, 0);
  }
}

/* Parse and answer from the rollups, reading the process stage's stores. The HTTP status
 * with the body in out, or 0 when the log must be scanned (pq->sq ready). */
static int answer_from_rollups(process_t *p, const char *body, size_t len, int64_t now_us,
                               q_t *pq, buf_t *out) {
  query_stores_t st = {process_events(p), process_sessions(p), process_conversion_event(p),
                       NULL, NULL, process_kpi(p)};
  return plan(&st, body, len, now_us, pq, out);
}

/* A rollup answer on the thread pool: the stores are read there (process_read_begin), so
 * a long answer never holds up the loop that ingests. */
typedef struct answer_job {
  uv_work_t work;
  query_t *q;
  http_req_t *req;
  char *body; /* a copy of the request's */
  size_t len;
  int64_t now_us;
  q_t pq;
  buf_t out;
  int status;
} answer_job_t;

static void answer_work(uv_work_t *w) {
  answer_job_t *j = w->data;
  process_read_begin(j->q->process);
  j->status = answer_from_rollups(j->q->process, j->body, j->len, j->now_us, &j->pq, &j->out);
  process_read_end(j->q->process);
}

static void answer_done(uv_work_t *w, int status) {
  answer_job_t *j = w->data;
  j->q->nanswers--;
  http_header_t h[] = {{"Content-Type", "application/json"}, {"Cache-Control", "no-store"}};
  if (status == UV_ECANCELED)
    http_respond_error(j->req, 503, "unavailable", "the server is stopping", NULL, 0);
  else if (j->status == 0)
    start_scan(j->q, j->req, &j->pq);
  else
    http_respond(j->req, j->status, h, 2, j->out.data, j->out.len, 0);
  scan_query_free(&j->pq.sq);
  buf_free(&j->out);
  free(j->body);
  free(j);
}

/* Answer r's query on the thread pool: from the rollups, or from a log scan. */
static void run_query(query_t *q, http_req_t *r, const char *body, size_t len) {
  if (!q->loop) { /* no pool: answer here (the loop thread may read the stores) */
    buf_t out = BUF_INIT;
    q_t pq = {0};
    int status = answer_from_rollups(q->process, body, len, clock_wall_us(), &pq, &out);
    http_header_t h[] = {{"Content-Type", "application/json"}, {"Cache-Control", "no-store"}};
    if (status == 0)
      http_respond_error(r, 503, "unavailable", "log scans are not available", NULL, 0);
    else
      http_respond(r, status, h, 2, out.data, out.len, 0);
    scan_query_free(&pq.sq);
    buf_free(&out);
    return;
  }
  if (q->nanswers >= MAX_ANSWERS) {
    http_header_t busy[] = {{"Retry-After", "1"}};
    http_respond_error(r, 503, "busy", "too many queries are running; retry shortly", busy, 1);
    return;
  }
  answer_job_t *j = xcalloc(1, sizeof *j);
  j->q = q;
  j->req = r;
  j->body = xmalloc(len + 1);
  if (len) memcpy(j->body, body, len);
  j->body[len] = 0;
  j->len = len;
  j->now_us = clock_wall_us();
  j->work.data = j;
  q->nanswers++;
  if (uv_queue_work(q->loop, &j->work, answer_work, answer_done) != 0) {
    q->nanswers--;
    free(j->body);
    free(j);
    http_respond_error(r, 503, "unavailable", "cannot start the query", NULL, 0);
  }
}

/* Name r's route for the metrics; answer 405 (returning 1) unless r uses method. */
static int wrong_method(http_req_t *r, const char *route, const char *method) {
  http_req_set_route(r, route);
  if (!strcmp(http_req_method(r), method)) return 0;
  char use[16];
  snprintf(use, sizeof use, "use %s", method);
  http_header_t h[] = {{"Allow", method}};
  http_respond_error(r, 405, "method_not_allowed", use, h, 1);
  return 1;
}

int query_handle(query_t *q, http_req_t *r) {
  const char *path = http_req_path(r);
  if (!strcmp(path, "/v1/query")) {
    if (wrong_method(r, "query", "POST")) return 1;
    if (keys_require(q->cfg, r, KEY_READ, NULL) != 0) return 1;
    size_t len = 0;
    const char *body = http_req_body(r, &len);
    run_query(q, r, body, len);
    return 1;
  }
  if (!strcmp(path, "/v1/kpis")) {
    if (wrong_method(r, "kpis", "GET")) return 1;
    if (keys_require(q->cfg, r, KEY_READ, NULL) != 0) return 1;
    query_stores_t st = {.kpi = process_kpi(q->process)};
    http_header_t h[] = {{"Content-Type", "application/json"}, {"Cache-Control", "no-store"}};
    buf_t out = BUF_INIT;
    query_kpi_catalogue(&st, &out);
    http_respond(r, 200, h, 2, out.data, out.len, 0);
    buf_free(&out);
    return 1;
  }
  if (!strcmp(path, "/v1/live")) {
    if (wrong_method(r, "live", "GET")) return 1;
    /* ?feed=events: the sampled event feed instead of the counters (process.h). */
    char feed[16];
    const char *channel = PROCESS_LIVE_CHANNEL;
    long fl = str_query_param(http_req_query(r), "feed", feed, sizeof feed);
    if (fl >= 0) {
      if (fl != 6 || strcmp(feed, "events")) {
        http_respond_error(r, 400, "bad_request", "feed must be \"events\"", NULL, 0);
        return 1;
      }
      channel = PROCESS_FEED_CHANNEL;
    }
    if (keys_require(q->cfg, r, KEY_READ, "key") != 0) return 1;
    int rc = q->hub ? sse_subscribe(q->hub, r, channel,
                                    http_req_header(r, "Last-Event-ID"))
                    : -ENOSPC;
    if (rc == -ENOSPC || rc == -EINVAL)
      http_respond_error(r, 503, "unavailable", "too many live subscribers", NULL, 0);
    return 1;
  }
  return 0;
}
