/* query_kpi: KPI definitions over the rollups and the KPI state (see query_kpi.h). */
#include "query_kpi.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <string.h>

#include "kpi.h"
#include "util/clock.h"

#define DAY_US (86400LL * 1000000)

enum {
  K_CONV, K_BOUNCE, K_REVENUE, K_ORDERS, K_AOV, K_ACTIVE, K_EVENTS, K_DAU, K_WAU, K_MAU,
  K_NEW, K_RETURNING, K_OFFER_CTR, K_OPEN_RATE, K_CTO, K_EMAIL_CTR, K_NEW_CUSTOMERS,
  K_COST, K_CAC, K_CLV, K_RET_DAY, K_RET_WEEK, K_N
};

enum { NUM, PCT, CUR }; /* display formats */
static const char *const format_names[] = {"number", "percent", "currency"};

static const struct {
  const char *name;
  int filter, shape, format;
  const char *desc; /* GET /v1/kpis; docs/API.md has the full definition */
} cat[K_N] = {
    [K_CONV] = {"conversion_rate", QUERY_KPI_CAMPAIGN_FILTER, QUERY_KPI_RATIO, PCT,
                 "Sessions started in the range that converted / sessions started"},
    [K_BOUNCE] = {"bounce_rate", QUERY_KPI_NO_FILTER, QUERY_KPI_RATIO, PCT,
                 "Ended sessions with exactly one page or screen view / ended sessions"},
    [K_REVENUE] = {"revenue", QUERY_KPI_ANY_FILTER, QUERY_KPI_VALUE, CUR,
                 "Sum of order revenue"},
    [K_ORDERS] = {"orders", QUERY_KPI_NO_FILTER, QUERY_KPI_VALUE, NUM,
                 "Number of orders"},
    [K_AOV] = {"aov", QUERY_KPI_NO_FILTER, QUERY_KPI_RATIO, CUR,
                 "Average order value: revenue / orders"},
    [K_ACTIVE] = {"active_users", QUERY_KPI_ANY_FILTER, QUERY_KPI_VALUE, NUM,
                 "Distinct users with an event in the range"},
    [K_EVENTS] = {"events", QUERY_KPI_ANY_FILTER, QUERY_KPI_VALUE, NUM,
                 "Number of events"},
    [K_DAU] = {"dau", QUERY_KPI_ANY_FILTER, QUERY_KPI_VALUE, NUM,
                 "Distinct users in the day ending at to"},
    [K_WAU] = {"wau", QUERY_KPI_ANY_FILTER, QUERY_KPI_VALUE, NUM,
                 "Distinct users in the 7 days ending at to"},
    [K_MAU] = {"mau", QUERY_KPI_ANY_FILTER, QUERY_KPI_VALUE, NUM,
                 "Distinct users in the 30 days ending at to"},
    [K_NEW] = {"new_users", QUERY_KPI_NO_FILTER, QUERY_KPI_VALUE, NUM,
                 "People first seen in the range"},
    [K_RETURNING] = {"returning_users", QUERY_KPI_NO_FILTER, QUERY_KPI_VALUE, NUM,
                 "Active users who were seen before the range"},
    [K_OFFER_CTR] = {"offer_ctr", QUERY_KPI_NO_FILTER, QUERY_KPI_RATIO, PCT,
                 "Offer Clicked / Offer Shown events"},
    [K_OPEN_RATE] = {"email_open_rate", QUERY_KPI_NO_FILTER, QUERY_KPI_RATIO, PCT,
                 "Email Opened / Email Sent events"},
    [K_CTO] = {"email_click_to_open", QUERY_KPI_NO_FILTER, QUERY_KPI_RATIO, PCT,
                 "Email Link Clicked / Email Opened events"},
    [K_EMAIL_CTR] = {"email_ctr", QUERY_KPI_NO_FILTER, QUERY_KPI_RATIO, PCT,
                 "Email Link Clicked / Email Sent events"},
    [K_NEW_CUSTOMERS] = {"new_customers", QUERY_KPI_CAMPAIGN_FILTER, QUERY_KPI_VALUE, NUM,
                 "People whose first order is in the range"},
    [K_COST] = {"marketing_cost", QUERY_KPI_CAMPAIGN_FILTER, QUERY_KPI_VALUE, CUR,
                 "Sum of Marketing Cost events"},
    [K_CAC] = {"cac", QUERY_KPI_CAMPAIGN_FILTER, QUERY_KPI_RATIO, CUR,
                 "Customer acquisition cost: marketing cost / new customers"},
    [K_CLV] = {"clv", QUERY_KPI_NO_FILTER, QUERY_KPI_LIFETIME, CUR,
                 "Lifetime revenue per customer, overall and per first-seen week"},
    [K_RET_DAY] = {"retention_day", QUERY_KPI_NO_FILTER, QUERY_KPI_GRID, PCT,
                 "Share of each first-seen day's people active k days later"},
    [K_RET_WEEK] = {"retention_week", QUERY_KPI_NO_FILTER, QUERY_KPI_GRID, PCT,
                 "Share of each first-seen week's people active k weeks later"},
};

int query_kpi_count(void) { return K_N; }
const char *query_kpi_name(int i) { return cat[i].name; }
int query_kpi_filter_kind(int i) { return i < K_N ? cat[i].filter : QUERY_KPI_NO_FILTER; }
int query_kpi_shape(int i) { return i < K_N ? cat[i].shape : QUERY_KPI_RATIO; }

int query_kpi_max_points(int i) {
  return i == K_DAU || i == K_WAU || i == K_MAU ? QUERY_KPI_WINDOW_POINTS : QUERY_MAX_POINTS;
}

int query_kpi_lookup(const query_stores_t *st, const char *name) {
  int i = query_kpi_index(name);
  if (i >= 0 || !st->kpi) return i;
  i = kpi_custom_index(st->kpi, name);
  return i >= 0 ? K_N + i : -1;
}

const char *query_kpi_format(const query_stores_t *st, int i) {
  if (i < K_N) return format_names[cat[i].format];
  const config_kpi_t *d = st->kpi ? kpi_custom_def(st->kpi, i - K_N) : NULL;
  return d ? config_kpi_format_name(d->format) : "number";
}

int query_kpi_index(const char *name) {
  for (int i = 0; i < K_N; i++)
    if (!strcmp(name, cat[i].name)) return i;
  return -1;
}

static char kpi_names[512];
static pthread_once_t kpi_names_once = PTHREAD_ONCE_INIT;

static void build_kpi_names(void) {
  size_t n = 0;
  for (int i = 0; i < K_N; i++)
    n += (size_t)snprintf(kpi_names + n, sizeof kpi_names - n, "%s%s", i ? ", " : "",
                          cat[i].name);
}

const char *query_kpi_list(void) {
  pthread_once(&kpi_names_once, build_kpi_names); /* queries answer on several threads */
  return kpi_names;
}

/* ---- evaluation ---- */

/* Count and sum (and with users, unique users) of r over [a, b) with an optional
 * one-dimension filter (value NULL: none). */
static int tot_users(const rollup_t *r, int64_t a, int64_t b, const char *dim,
                     const char *value, int users, rollup_totals_t *t) {
  rollup_filter_t f = {dim, value};
  memset(t, 0, sizeof *t);
  int rc = (users ? rollup_totals : rollup_counts)(r, a, b, value ? &f : NULL, value ? 1 : 0, t);
  return rc ? -EINVAL : 0;
}

static int tot(const rollup_t *r, int64_t a, int64_t b, const char *dim, const char *value,
               rollup_totals_t *t) {
  return tot_users(r, a, b, dim, value, 0, t);
}

/* Count of events named a over the range: the numerator or denominator of a ratio. */
static double event_count(const query_stores_t *st, int64_t a, int64_t b, const char *name,
                          query_kpi_value_t *out) {
  rollup_totals_t t;
  tot(st->events, a, b, "event", name, &t);
  out->from_us = t.from_us, out->to_us = t.to_us;
  return (double)t.count;
}

/* The facts rollup's totals for fact (no campaign) or for campaign in dimension dim. */
static void facts(const query_stores_t *st, int64_t a, int64_t b, const char *fact,
                  const char *dim, const rollup_filter_t *f, rollup_totals_t *t) {
  const rollup_t *r = kpi_facts(st->kpi);
  if (f) tot(r, a, b, dim, f->value, t);
  else tot(r, a, b, "fact", fact, t);
}

/* A unique-user count as a KPI value: NAN (rendered null) where the rollup memory budget
 * gave the users up (ROLLUP_NA). */
static double users_num(uint64_t uniques) {
  return uniques == ROLLUP_NA ? NAN : (double)uniques;
}

int query_kpi_eval(const query_stores_t *st, int i, int64_t from, int64_t to,
                   const rollup_filter_t *f, query_kpi_value_t *out) {
  out->num = 0;
  out->den = NAN;
  out->from_us = from, out->to_us = to;
  if (i >= K_N)
    return st->kpi && kpi_custom_eval(st->kpi, i - K_N, from, to, &out->num, &out->den,
                                      &out->from_us, &out->to_us) == 0 ? 0 : -ENOTSUP;
  if (i < 0 || cat[i].shape == QUERY_KPI_GRID) return -ENOTSUP;
  int needs_state = i == K_NEW || i == K_RETURNING || i >= K_NEW_CUSTOMERS ||
                    (i == K_CONV && f);
  if (needs_state && !st->kpi) return -ENOTSUP;
  const char *fd = f ? f->dim : NULL, *fv = f ? f->value : NULL;
  rollup_totals_t a, b;
  switch (i) {
  case K_CONV:
    if (f) {
      facts(st, from, to, NULL, "conversion_campaign", f, &a);
      facts(st, from, to, NULL, "session_campaign", f, &b);
    } else {
      tot(st->sessions, from, to, "session", "converted", &a);
      tot(st->sessions, from, to, "session", "start", &b);
    }
    out->num = (double)a.count, out->den = (double)b.count;
    break;
  case K_BOUNCE:
    tot(st->sessions, from, to, "session", "bounce", &a);
    tot(st->sessions, from, to, "session", "end", &b);
    out->num = (double)a.count, out->den = (double)b.count;
    break;
  case K_REVENUE:
  case K_ACTIVE:
  case K_EVENTS:
  case K_DAU:
  case K_WAU:
  case K_MAU: {
    int64_t days = i == K_DAU ? 1 : i == K_WAU ? 7 : i == K_MAU ? 30 : 0;
    if (tot_users(st->events, days ? to - days * DAY_US : from, to, fd, fv,
                  i != K_REVENUE && i != K_EVENTS, &a))
      return -EINVAL;
    out->num = i == K_REVENUE ? a.sum : i == K_EVENTS ? (double)a.count : users_num(a.uniques);
    break;
  }
  case K_ORDERS:
  case K_AOV:
    tot(st->events, from, to, "event", st->conversion_event, &a);
    out->num = i == K_ORDERS ? (double)a.count : a.sum;
    if (i == K_AOV) out->den = (double)a.count;
    break;
  case K_NEW:
  case K_RETURNING: {
    rollup_totals_t m;
    facts(st, from, to, KPI_FACT_NEW_USER, NULL, NULL, &a);
    facts(st, from, to, KPI_FACT_MERGED_USER, NULL, NULL, &m);
    double fresh = a.count > m.count ? (double)(a.count - m.count) : 0;
    out->num = fresh;
    if (i == K_RETURNING) {
      tot_users(st->events, from, to, NULL, NULL, 1, &b);
      out->num = b.uniques == ROLLUP_NA ? NAN : (double)b.uniques > fresh ? (double)b.uniques - fresh : 0;
    }
    break;
  }
  case K_OFFER_CTR:
  case K_OPEN_RATE:
  case K_CTO:
  case K_EMAIL_CTR: {
    static const char *const num_ev[] = {QUERY_KPI_OFFER_CLICKED, QUERY_KPI_EMAIL_OPENED,
                                         QUERY_KPI_EMAIL_CLICKED, QUERY_KPI_EMAIL_CLICKED};
    static const char *const den_ev[] = {QUERY_KPI_OFFER_SHOWN, QUERY_KPI_EMAIL_SENT,
                                         QUERY_KPI_EMAIL_OPENED, QUERY_KPI_EMAIL_SENT};
    out->num = event_count(st, from, to, num_ev[i - K_OFFER_CTR], out);
    out->den = event_count(st, from, to, den_ev[i - K_OFFER_CTR], out);
    return 0;
  }
  case K_NEW_CUSTOMERS:
  case K_COST:
  case K_CAC:
    facts(st, from, to, KPI_FACT_NEW_CUSTOMER, "customer_campaign", f, &a);
    facts(st, from, to, KPI_FACT_COST, "cost_campaign", f, &b);
    out->num = i == K_NEW_CUSTOMERS ? (double)a.count : b.sum;
    if (i == K_CAC) out->den = (double)a.count;
    break;
  case K_CLV: {
    kpi_clv_t c;
    kpi_clv(st->kpi, -1, &c);
    out->num = c.revenue, out->den = (double)c.customers;
    return 0;
  }
  }
  out->from_us = a.from_us, out->to_us = a.to_us;
  return 0;
}

/* ---- grids ---- */

static void put_cohort(buf_t *out, int64_t start_us, uint64_t size) {
  char iso[25];
  clock_format_iso(start_us, iso);
  buf_printf(out, "{\"cohort\":\"%s\",\"users\":%llu", iso, (unsigned long long)size);
}

int query_kpi_grid(const query_stores_t *st, int i, int64_t from, int64_t to, buf_t *out) {
  if (i != K_CLV && i != K_RET_DAY && i != K_RET_WEEK) return -ENOTSUP;
  if (!st->kpi) return -ENOTSUP;
  if (i == K_CLV) {
    int64_t w0 = kpi_week_of(from), w1 = kpi_week_of(to - 1);
    if (w1 - w0 >= KPI_COHORT_WEEKS) w0 = w1 - KPI_COHORT_WEEKS + 1;
    buf_puts(out, ",\"cohorts\":[");
    int first = 1;
    for (int64_t w = w0; w <= w1; w++) {
      kpi_clv_t c;
      kpi_clv(st->kpi, w, &c);
      if (!c.customers) continue;
      buf_puts(out, first ? "" : ",");
      first = 0;
      put_cohort(out, (4 + 7 * w) * DAY_US, c.customers);
      buf_printf(out, ",\"revenue\":%.2f,\"value\":%.6g}", c.revenue,
                 c.revenue / (double)c.customers);
    }
    buf_putc(out, ']');
    return 0;
  }
  int week = i == K_RET_WEEK;
  int n = week ? KPI_COHORT_WEEKS : KPI_COHORT_DAYS;
  int64_t c0 = week ? kpi_week_of(from) : kpi_day_of(from);
  int64_t last = week ? kpi_week_of(to - 1) : kpi_day_of(to - 1);
  if (last - c0 >= n) c0 = last - n + 1;
  buf_puts(out, ",\"cohorts\":[");
  int first = 1;
  for (int64_t c = c0; c <= last; c++) {
    uint64_t size = kpi_retention(st->kpi, week, c, 0);
    if (!size) continue;
    if (!first) buf_putc(out, ',');
    first = 0;
    put_cohort(out, week ? (4 + 7 * c) * DAY_US : c * DAY_US, size);
    buf_puts(out, ",\"retained\":[");
    for (int64_t k = 0; k < n && c + k <= last; k++)
      buf_printf(out, "%s%llu", k ? "," : "",
                 (unsigned long long)kpi_retention(st->kpi, week, c, (int)k));
    buf_puts(out, "],\"rate\":[");
    for (int64_t k = 0; k < n && c + k <= last; k++)
      buf_printf(out, "%s%.6g", k ? "," : "",
                 (double)kpi_retention(st->kpi, week, c, (int)k) / (double)size);
    buf_puts(out, "]}");
  }
  buf_putc(out, ']');
  return 0;
}

/* ---- catalogue ---- */

static const char *const filter_names[] = {"none", "any", "utm_campaign"};
static const char *const shape_names[] = {"value", "ratio", "lifetime", "grid"};

/* "uniques of Product Viewed where utm_source = google": one part of a user-defined KPI. */
static void describe_part(buf_t *d, const config_kpi_part_t *p) {
  static const char *const dims[] = {PROCESS_DIMS};
  buf_printf(d, "%s of %s", config_kpi_metric_name(p->metric), p->event ? p->event : "any event");
  if (p->metric == CONFIG_KPI_SUM && p->property) buf_printf(d, " (properties.%s)", p->property);
  for (size_t j = 0; j < p->nfilters; j++)
    buf_printf(d, "%s%s = %s", j ? " and " : " where ", dims[p->filter_dim[j]],
               p->filter_value[j]);
}

static void put_entry(buf_t *out, const char *name, const char *format, int shape, int filter,
                      const char *desc, int custom) {
  buf_puts(out, "{\"name\":");
  buf_json_str(out, name);
  buf_printf(out, ",\"format\":\"%s\",\"shape\":\"%s\",\"filter\":\"%s\",\"series\":%s,"
                  "\"compare\":%s,\"custom\":%s,\"description\":",
             format, shape_names[shape], filter_names[filter],
             shape <= QUERY_KPI_RATIO ? "true" : "false",
             shape <= QUERY_KPI_RATIO ? "true" : "false", custom ? "true" : "false");
  buf_json_str(out, desc);
  buf_putc(out, '}');
}

void query_kpi_catalogue(const query_stores_t *st, buf_t *out) {
  buf_puts(out, "{\"kpis\":[");
  for (int i = 0; i < K_N; i++) {
    if (i) buf_putc(out, ',');
    put_entry(out, cat[i].name, format_names[cat[i].format], cat[i].shape, cat[i].filter,
              cat[i].desc, 0);
  }
  const config_kpi_t *d;
  for (int i = 0; st->kpi && (d = kpi_custom_def(st->kpi, i)); i++) {
    buf_t desc = BUF_INIT;
    describe_part(&desc, &d->num);
    if (d->den.present) {
      buf_puts(&desc, " / ");
      describe_part(&desc, &d->den);
    }
    buf_putc(out, ',');
    put_entry(out, d->name, config_kpi_format_name(d->format),
              d->den.present ? QUERY_KPI_RATIO : QUERY_KPI_VALUE, QUERY_KPI_NO_FILTER,
              desc.data ? desc.data : "", 1);
    buf_free(&desc);
  }
  buf_puts(out, "]}");
}
