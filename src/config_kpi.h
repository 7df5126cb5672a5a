/* config_kpi: user-defined KPIs, the `kpis` section of the YAML config file — a ratio of
 * two filtered event metrics (or one metric alone), kept in the stream by kpi.h and
 * answered by POST /v1/query {"type":"kpi","kpi": name}.
 *
 *   kpis:
 *     - name: add_to_cart_rate          # [a-z0-9_], 1..64 bytes, not a built-in KPI
 *       format: percent                 # percent | currency | number (default number)
 *       numerator:
 *         event: Product Added          # event name as the "event" dimension reads it
 *         metric: uniques               # count (default) | sum | uniques
 *       denominator:
 *         event: Product Viewed
 *         metric: uniques
 *         filter: {utm_source: google}  # optional: dimension: value, all must hold
 *     - name: revenue_per_order
 *       format: currency
 *       numerator: {event: Order Completed, metric: sum, property: revenue}
 *
 * `sum` adds properties.<property> (a number; default: revenue). `event` may be omitted
 * (any event). Errors are "file:line:col: message". Lives beside config.c (which calls
 * config_kpi_parse for the `kpis` key) so the option table stays scalar-only. */
#ifndef SLUICE_CONFIG_KPI_H
#define SLUICE_CONFIG_KPI_H

#include <libfyaml.h>
#include <stddef.h>

#define CONFIG_KPI_MAX 32          /* user-defined KPIs */
#define CONFIG_KPI_MAX_FILTERS 4   /* dimension filters per part */
#define CONFIG_KPI_MAX_NAME 64

enum { CONFIG_KPI_COUNT, CONFIG_KPI_SUM, CONFIG_KPI_UNIQUES };
enum { CONFIG_KPI_NUMBER, CONFIG_KPI_PERCENT, CONFIG_KPI_CURRENCY };

typedef struct config_kpi_part {
  int present;        /* 0: no such part (a KPI without denominator is a plain value) */
  char *event;        /* NULL: any event */
  int metric;         /* CONFIG_KPI_COUNT ... */
  char *property;     /* sum: properties.<property> */
  size_t nfilters;
  int filter_dim[CONFIG_KPI_MAX_FILTERS]; /* index into PROCESS_DIMS */
  char *filter_value[CONFIG_KPI_MAX_FILTERS];
} config_kpi_part_t;

typedef struct config_kpi {
  char *name;
  int format;
  config_kpi_part_t num, den;
} config_kpi_t;

typedef struct config_kpis {
  config_kpi_t *items; /* owned */
  size_t n;
} config_kpis_t;

/* Replace *out with the KPIs of the YAML sequence v (of file path, for messages). Names
 * of built-in KPIs (query_kpi.h) are refused. Returns 0, or -1 with "path:line:col:
 * message" in err (out is then emptied). */
int config_kpi_parse(config_kpis_t *out, struct fy_node *v, const char *path, char *err,
                     size_t errlen);
/* Free what k owns and empty it. NULL-safe. */
void config_kpi_free(config_kpis_t *k);
/* Names of CONFIG_KPI_* formats and metrics. */
const char *config_kpi_format_name(int format);
const char *config_kpi_metric_name(int metric);
/* Append the Markdown section documenting `kpis` (docs/CONFIG.md) to stdout. */
void config_kpi_print_markdown(void);

#endif
