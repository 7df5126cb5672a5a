/* config_kpi: the `kpis` section of the config file (see config_kpi.h). */
#include "config_kpi.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "process.h"
#include "query_kpi.h"
#include "util/mem.h"
#include "util/yaml.h"

static const char *const dims[PROCESS_NDIMS] = {PROCESS_DIMS};
static const char *const formats[] = {"number", "percent", "currency"};
static const char *const metrics[] = {"count", "sum", "uniques"};

const char *config_kpi_format_name(int f) { return formats[f]; }
const char *config_kpi_metric_name(int m) { return metrics[m]; }

typedef struct ctx {
  const char *path;
  char *err;
  size_t errlen;
} ctx_t;

static int bad(const ctx_t *c, struct fy_node *n, const char *f, ...)
    __attribute__((format(printf, 3, 4)));
static int bad(const ctx_t *c, struct fy_node *n, const char *f, ...) {
  int line, col;
  yaml_mark(n, &line, &col);
  int k = snprintf(c->err, c->errlen, "%s:%d:%d: kpis: ", c->path, line, col);
  va_list ap;
  va_start(ap, f);
  if (k >= 0 && (size_t)k < c->errlen) vsnprintf(c->err + k, c->errlen - (size_t)k, f, ap);
  va_end(ap);
  return -1;
}

/* The scalar n as a new string of 1..max bytes, or NULL. */
static char *scalar(struct fy_node *n, size_t max) {
  size_t len = 0;
  const char *s = n && fy_node_get_type(n) == FYNT_SCALAR ? fy_node_get_scalar(n, &len) : NULL;
  if (!s || !len || len > max) return NULL;
  return xstrndup(s, len);
}

static int pick(const char *s, const char *const *names, int n) {
  for (int i = 0; s && i < n; i++)
    if (!strcmp(s, names[i])) return i;
  return -1;
}

/* Which of the four keys the pair's key is (0..3), its value in *val (OUT); -1 with the
 * message in c->err for an unknown key or a missing value. */
static int key_of(const ctx_t *c, struct fy_node_pair *pair, const char *const keys[4],
                  struct fy_node **val) {
  struct fy_node *k = fy_node_pair_key(pair);
  *val = fy_node_pair_value(pair);
  char *ks = scalar(k, 32);
  int which = pick(ks, keys, 4);
  free(ks);
  if (which < 0)
    return bad(c, k, "unknown key; use %s, %s, %s or %s", keys[0], keys[1], keys[2], keys[3]);
  if (!*val) return bad(c, k, "missing value");
  return which;
}

static void part_free(config_kpi_part_t *p) {
  free(p->event);
  free(p->property);
  for (size_t i = 0; i < p->nfilters; i++) free(p->filter_value[i]);
  memset(p, 0, sizeof *p);
}

static int parse_filter(config_kpi_part_t *p, struct fy_node *v, const ctx_t *c) {
  if (fy_node_get_type(v) != FYNT_MAPPING)
    return bad(c, v, "filter must be a mapping of dimension: value");
  void *it = NULL;
  struct fy_node_pair *pair;
  while ((pair = fy_node_mapping_iterate(v, &it))) {
    struct fy_node *k = fy_node_pair_key(pair), *val = fy_node_pair_value(pair);
    char *dim = scalar(k, 64);
    int d = pick(dim, dims, PROCESS_NDIMS);
    free(dim);
    if (d < 0)
      return bad(c, k, "unknown filter dimension; use one of event, page_path, utm_source, "
                       "utm_medium, utm_campaign, referrer_class, country, device_type, "
                       "browser");
    if (p->nfilters == CONFIG_KPI_MAX_FILTERS)
      return bad(c, k, "at most %d filters per part", CONFIG_KPI_MAX_FILTERS);
    char *value = scalar(val, 256);
    if (!value) return bad(c, val ? val : k, "a filter value must be a string of 1 to 256 bytes");
    p->filter_dim[p->nfilters] = d;
    p->filter_value[p->nfilters++] = value;
  }
  return 0;
}

static int parse_part(config_kpi_part_t *p, struct fy_node *v, const ctx_t *c) {
  if (fy_node_get_type(v) != FYNT_MAPPING)
    return bad(c, v, "numerator and denominator must be mappings (event, metric, filter, "
                     "property)");
  p->present = 1;
  void *it = NULL;
  struct fy_node_pair *pair;
  static const char *const keys[4] = {"event", "metric", "filter", "property"};
  while ((pair = fy_node_mapping_iterate(v, &it))) {
    struct fy_node *val;
    int which = key_of(c, pair, keys, &val);
    if (which < 0) return -1;
    if (which == 0) {
      free(p->event);
      if (!(p->event = scalar(val, 256))) return bad(c, val, "event must be a name of 1 to 256 bytes");
    } else if (which == 1) {
      char *m = scalar(val, 16);
      p->metric = pick(m, metrics, 3);
      free(m);
      if (p->metric < 0) return bad(c, val, "metric must be count, sum or uniques");
    } else if (which == 2) {
      if (parse_filter(p, val, c)) return -1;
    } else {
      free(p->property);
      p->property = scalar(val, 64);
      for (const char *s = p->property; s && *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              *s == '_'))
          return bad(c, val, "property must be a plain name (letters, digits, _)");
      if (!p->property) return bad(c, val, "property must be a name of 1 to 64 bytes");
    }
  }
  if (p->metric == CONFIG_KPI_SUM && !p->property) p->property = xstrdup("revenue");
  if (p->metric != CONFIG_KPI_SUM && p->property)
    return bad(c, v, "property is only for metric: sum");
  return 0;
}

static int valid_name(const char *s) {
  for (; *s; s++)
    if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '_')) return 0;
  return 1;
}

static int parse_one(config_kpis_t *out, struct fy_node *item, const ctx_t *c) {
  if (fy_node_get_type(item) != FYNT_MAPPING)
    return bad(c, item, "each KPI must be a mapping (name, format, numerator, denominator)");
  config_kpi_t *k = &out->items[out->n++];
  memset(k, 0, sizeof *k);
  void *it = NULL;
  struct fy_node_pair *pair;
  static const char *const keys[4] = {"name", "format", "numerator", "denominator"};
  while ((pair = fy_node_mapping_iterate(item, &it))) {
    struct fy_node *val;
    int which = key_of(c, pair, keys, &val);
    if (which < 0) return -1;
    if (which == 0) {
      free(k->name);
      k->name = scalar(val, CONFIG_KPI_MAX_NAME);
      if (!k->name || !valid_name(k->name))
        return bad(c, val, "name must be 1 to 64 of a-z, 0-9 and _");
      if (query_kpi_index(k->name) >= 0) return bad(c, val, "'%s' is a built-in KPI", k->name);
      for (size_t i = 0; i + 1 < out->n; i++)
        if (!strcmp(out->items[i].name, k->name))
          return bad(c, val, "KPI '%s' is defined twice", k->name);
    } else if (which == 1) {
      char *f = scalar(val, 16);
      k->format = pick(f, formats, 3);
      free(f);
      if (k->format < 0) return bad(c, val, "format must be percent, currency or number");
    } else if (parse_part(which == 2 ? &k->num : &k->den, val, c)) {
      return -1;
    }
  }
  if (!k->name) return bad(c, item, "a KPI needs a name");
  if (!k->num.present) return bad(c, item, "KPI '%s' needs a numerator", k->name);
  return 0;
}

int config_kpi_parse(config_kpis_t *out, struct fy_node *v, const char *path, char *err,
                     size_t errlen) {
  ctx_t c = {path, err, errlen};
  config_kpi_free(out);
  if (!v || fy_node_get_type(v) != FYNT_SEQUENCE) {
    if (!v) {
      snprintf(err, errlen, "%s: kpis: expected a list of KPIs", path);
      return -1;
    }
    return bad(&c, v, "expected a list of KPIs");
  }
  out->items = xcalloc(CONFIG_KPI_MAX, sizeof *out->items);
  void *it = NULL;
  struct fy_node *item;
  while ((item = fy_node_sequence_iterate(v, &it))) {
    if (out->n == CONFIG_KPI_MAX) {
      bad(&c, item, "at most %d KPIs", CONFIG_KPI_MAX);
      config_kpi_free(out);
      return -1;
    }
    if (parse_one(out, item, &c)) {
      config_kpi_free(out);
      return -1;
    }
  }
  return 0;
}

void config_kpi_free(config_kpis_t *k) {
  if (!k) return;
  for (size_t i = 0; i < k->n; i++) {
    free(k->items[i].name);
    part_free(&k->items[i].num);
    part_free(&k->items[i].den);
  }
  free(k->items);
  k->items = NULL;
  k->n = 0;
}

void config_kpi_print_markdown(void) {
  printf("\n## User-defined KPIs (`kpis`, config file only)\n\n"
         "A list of KPIs answered by `POST /v1/query {\"type\":\"kpi\",\"kpi\":NAME}` like the\n"
         "built-in ones (series and `compare` included). Each is `numerator / denominator`\n"
         "(or the numerator alone), both counted in the stream over the events that match.\n"
         "Changing the list rebuilds the processed state from the log at the next start.\n\n"
         "```yaml\nkpis:\n"
         "  - name: add_to_cart_rate          # a-z, 0-9, _; 1..64; not a built-in KPI\n"
         "    format: percent                 # percent | currency | number (default)\n"
         "    numerator: {event: Product Added, metric: uniques}\n"
         "    denominator: {event: Product Viewed, metric: uniques}\n"
         "  - name: google_revenue_per_visitor\n"
         "    format: currency\n"
         "    numerator: {event: Order Completed, metric: sum, property: revenue,\n"
         "                filter: {utm_source: google}}\n"
         "    denominator: {event: $page, metric: uniques, filter: {utm_source: google}}\n"
         "```\n\n"
         "| key | meaning |\n|---|---|\n"
         "| `event` | event name as the `event` dimension reads it (`$page` for pages); "
         "absent: every event |\n"
         "| `metric` | `count` (default): events; `sum`: of `properties.<property>` "
         "(default `revenue`; non-numbers add 0); `uniques`: distinct users |\n"
         "| `filter` | `dimension: value` pairs (query dimensions: `utm_source`, `country`, "
         "...), all must hold; at most %d |\n"
         "| `format` | how the dashboard shows the value; returned as `format` |\n\n"
         "At most %d KPIs. Errors are reported as `file:line:col: message`.\n",
         CONFIG_KPI_MAX_FILTERS, CONFIG_KPI_MAX);
}
