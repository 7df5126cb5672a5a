/* query_kpi: the built-in KPI catalogue of POST /v1/query {"type":"kpi"} — each KPI's
 * numerator and denominator computed from the rollups and the KPI state (kpi.h) over one
 * range. query.c parses the request and writes the JSON; docs/API.md ("KPI definitions")
 * states every definition and must change with this file.
 *
 * Design. A KPI is a value (num, den = NAN) or a ratio (num / den; null when den is 0)
 * computed from rollup_totals over [from, to) — so a KPI series is the same function
 * per bucket — or a grid (retention, lifetime value per cohort) read from kpi.h's
 * stream-side state. Event names used: the conversion event (config), "Offer Shown" /
 * "Offer Clicked" for offers, "Email Sent" / "Email Opened" / "Email Link Clicked" for
 * e-mail (the collector's pixel and redirect record the last two by default). */
#ifndef SLUICE_QUERY_KPI_H
#define SLUICE_QUERY_KPI_H

#include <stdint.h>

#include "query.h"

#define QUERY_KPI_OFFER_SHOWN "Offer Shown"
#define QUERY_KPI_OFFER_CLICKED "Offer Clicked"
#define QUERY_KPI_EMAIL_SENT "Email Sent"
#define QUERY_KPI_EMAIL_OPENED "Email Opened"
#define QUERY_KPI_EMAIL_CLICKED "Email Link Clicked"

/* How a KPI accepts a filter. */
enum { QUERY_KPI_NO_FILTER, QUERY_KPI_ANY_FILTER, QUERY_KPI_CAMPAIGN_FILTER };
/* What a KPI answers. */
enum { QUERY_KPI_VALUE, QUERY_KPI_RATIO, QUERY_KPI_LIFETIME, QUERY_KPI_GRID };

typedef struct query_kpi_value {
  double num, den;        /* den is NAN for a plain value */
  int64_t from_us, to_us; /* span actually read */
} query_kpi_value_t;

/* Index of a built-in KPI name, or -1. */
int query_kpi_index(const char *name);
/* Index of a built-in or (with st->kpi) user-defined KPI name (config_kpi.h), or -1.
 * User-defined KPIs follow the built-in ones: index query_kpi_count() + their index. */
int query_kpi_lookup(const query_stores_t *st, const char *name);
/* Name of built-in KPI i (0 <= i < query_kpi_count()). */
const char *query_kpi_name(int i);
/* "percent", "currency" or "number": how KPI i reads. */
const char *query_kpi_format(const query_stores_t *st, int i);
int query_kpi_count(void);
/* "a, b, ..." of every name (static). */
const char *query_kpi_list(void);
/* QUERY_KPI_*_FILTER and QUERY_KPI_VALUE... of KPI i (user-defined: no filter, ratio). */
int query_kpi_filter_kind(int i);
int query_kpi_shape(int i);
/* Most points a series of KPI i may have: QUERY_MAX_POINTS, fewer for the KPIs whose
 * every point unions a long window (dau, wau, mau: QUERY_KPI_WINDOW_POINTS), so one
 * query stays cheap. */
#define QUERY_KPI_WINDOW_POINTS 100
int query_kpi_max_points(int i);

/* Compute KPI i over [from_us, to_us) with an optional filter (NULL: none; the caller
 * checked it against query_kpi_filter_kind) into *out (OUT). Returns 0, -EINVAL when a
 * store cannot answer the filter, -ENOTSUP for a grid KPI or a missing KPI state. */
int query_kpi_eval(const query_stores_t *st, int i, int64_t from_us, int64_t to_us,
                   const rollup_filter_t *f, query_kpi_value_t *out);
/* Append the ",\"cohorts\":[...]" member of KPI i — retention grids, and lifetime value
 * per first-seen week — for cohorts starting in [from_us, to_us) to out. Returns 0 or
 * -ENOTSUP (KPI without cohorts, no KPI state). */
int query_kpi_grid(const query_stores_t *st, int i, int64_t from_us, int64_t to_us,
                   buf_t *out);

/* ---- Catalogue ---- */

/* Append GET /v1/kpis's body to out: {"kpis":[{"name", "format", "shape" (value | ratio |
 * lifetime | grid), "filter" (none | any | utm_campaign), "series", "compare", "custom",
 * "description"}]}, the built-in KPIs then st's user-defined ones. */
void query_kpi_catalogue(const query_stores_t *st, buf_t *out /* OUT */);

#endif
