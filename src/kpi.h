/* kpi: stream-side state for the marketing KPIs that the events and sessions rollups
 * cannot answer alone — new users, new customers and marketing cost per campaign,
 * sessions and conversions per campaign, first-seen retention cohorts and customer
 * lifetime value. The process stage calls kpi_observe once per event, after the profile
 * store has applied it; the query API reads the results. docs/API.md ("KPI definitions")
 * states each KPI precisely.
 *
 * Design. Range-based counts go into one rollup (rollup.h) whose records are "facts"
 * told apart by the dimension "fact" (KPI_FACT_*), with one dimension per campaign-keyed
 * fact so that a per-campaign filter selects only that fact's records (a rollup cannot
 * AND two filters):
 *   new_user       at the profile's creation (PROFILE_R_NEW_PROFILE);
 *   merged_user    at the first_seen of a profile merged away by identity stitching, so
 *                  new users = new_user - merged_user over a range (the merged person was
 *                  counted twice at creation);
 *   session        at a session's start, dimension session_campaign = its utm_campaign
 *                  ("(none)" without one);
 *   conversion     at the start of a session that converted, conversion_campaign = the
 *                  session's campaign;
 *   new_customer   at a profile's first order (orders was 0 before the event), sum = that
 *                  order's revenue, customer_campaign = the campaign of the session it
 *                  converted in (last touch of that session);
 *   cost           at a "Marketing Cost" event, sum = properties.cost, cost_campaign =
 *                  properties.campaign (matched to utm_campaign by name).
 * Facts are read as counts and sums, never unique users, so they carry none (user 0).
 * The session's campaign name is found again at conversion through a bounded map from
 * the profile's 32-bit session_campaign to the name seen at the session's start.
 *
 * Retention: two grids, by first-seen day (KPI_COHORT_DAYS cohorts x as many offsets) and
 * by first-seen week (weeks start Monday 00:00 UTC; KPI_COHORT_WEEKS x as many). For each
 * applied event whose day (week) is later than the profile's last_seen before the event
 * (or that created the profile), cell [cohort of first_seen][period - cohort] gains one:
 * each user is counted once per (cohort, offset) without per-profile state beyond
 * profile_t. Events older than the profile's last activity (late or out of order) are
 * not counted. Cohort rows are a ring keyed by the cohort's day (week): a newer cohort
 * reuses the oldest row.
 *
 * Lifetime value: running totals, not scans. customers = profiles whose first order was
 * seen (minus merges of two customers); revenue = the revenue of every order applied to
 * a profile. Kept overall and per first-seen week cohort (KPI_COHORT_WEEKS rows).
 *
 * User-defined KPIs (config_kpi.h): a second rollup with one dimension "part" whose
 * values are "<name>:n" and "<name>:d"; kpi_custom_observe adds a record to each part
 * whose event name and filters match, with the part's property value as sum and the
 * user key as user, so count, sum and uniques of a part are its rollup totals.
 *
 * Memory: the facts rollup (a few records per session, not per event) plus ~40 KiB of
 * grids and at most KPI_MAX_CAMPAIGNS campaign names. Not thread-safe (the process
 * stage's thread). Core module: no logging. */
#ifndef SLUICE_KPI_H
#define SLUICE_KPI_H

#include <stddef.h>
#include <stdint.h>

#include "config_kpi.h"
#include "profile.h"
#include "rollup.h"
#include "util/buf.h"

typedef struct kpi kpi_t;

#define KPI_COHORT_DAYS 90
#define KPI_COHORT_WEEKS 26
#define KPI_MAX_CAMPAIGNS 4096
#define KPI_COST_EVENT "Marketing Cost"
#define KPI_NO_CAMPAIGN "(none)"

/* Fact names (values of dimension "fact") and the per-campaign dimensions. */
#define KPI_FACT_NEW_USER "new_user"
#define KPI_FACT_MERGED_USER "merged_user"
#define KPI_FACT_SESSION "session"
#define KPI_FACT_CONVERSION "conversion"
#define KPI_FACT_NEW_CUSTOMER "new_customer"
#define KPI_FACT_COST "cost"
#define KPI_DIMS                                                                            \
  "fact", "session_campaign", "conversion_campaign", "customer_campaign", "cost_campaign"
#define KPI_NDIMS 5

/* One event as kpi_observe sees it. Strings are borrowed for the call. */
typedef struct kpi_event {
  int64_t t_us;                   /* event time */
  const char *campaign;           /* context.campaign.name, or NULL */
  int is_order;                   /* a conversion event */
  double revenue;                 /* its revenue (0 when none) */
  const profile_result_t *result; /* profile_apply's result, or NULL when not applied */
  uint32_t campaign_len;          /* strlen of campaign when the caller knows it, else 0 */
} kpi_event_t;

typedef struct kpi_clv {
  uint64_t customers;
  double revenue; /* currency units */
} kpi_clv_t;

/* ---- Lifetime ---- */

/* A new, empty state; rollup clock as in rollup_opts_t (NULL: CLOCK_REALTIME). Owned by
 * the caller (kpi_free). */
kpi_t *kpi_new(int64_t (*now_us)(void *ctx), void *now_ctx);
/* Free k. NULL is a no-op. */
void kpi_free(kpi_t *k);
/* Heap bytes of the state's rollups (fact counts and user-defined KPI parts; the cohort
 * grids are fixed-size). */
size_t kpi_rollup_bytes(const kpi_t *k);
/* rollup_stats of the state's two rollups (facts, user-defined KPI parts) into out[0] and
 * out[1] (OUT); zeros for NULL k. */
void kpi_rollup_stats(const kpi_t *k, rollup_stats_t out[2]);
/* Apply the memory budget max_bytes (0: none, else >= ROLLUP_MIN_BYTES) to each of the
 * state's two rollups (rollup_set_max_bytes), after kpi_new or kpi_deserialize. Returns 0,
 * or -EINVAL for NULL k or a budget below the minimum. */
int kpi_set_max_bytes(kpi_t *k, size_t max_bytes);
/* Slide the facts rollup's windows to its clock (rollup_advance). */
void kpi_advance(kpi_t *k);

/* ---- Adding ---- */

/* Account one applied (or rejected: result NULL) event. */
void kpi_observe(kpi_t *k, const kpi_event_t *e);
/* Account a "Marketing Cost" event: cost (finite, else ignored) for campaign (NULL:
 * KPI_NO_CAMPAIGN) at t_us. Returns 0, -EINVAL for a non-finite or negative cost, or
 * -ERANGE when t_us is outside the rollup's windows. */
int kpi_cost(kpi_t *k, int64_t t_us, const char *campaign, double cost);

/* Use the user-defined KPIs defs (borrowed: must outlive k; NULL: none). Call after
 * kpi_new and kpi_deserialize; the caller keeps the snapshot consistent with them. */
void kpi_set_custom(kpi_t *k, const config_kpis_t *defs);
/* Account one event for the user-defined KPIs: its name (NULL: none), its PROCESS_DIMS
 * values (NULL or "" absent), the user key hash, and for each KPI i the numerator's and
 * denominator's property values at values[2i] and values[2i + 1] (used by metric sum;
 * non-finite: 0). */
void kpi_custom_observe(kpi_t *k, int64_t t_us, const char *name, const char *const *dims,
                        uint64_t user, const double *values);

/* ---- Reading ---- */

/* The facts rollup (borrowed, valid while k lives): query it with a filter on "fact"
 * or on one of the *_campaign dimensions. */
const rollup_t *kpi_facts(const kpi_t *k);
/* Users of cohort (the first-seen day, or week, as days / weeks since the epoch; weeks
 * counted from Monday 1970-01-05, so week w starts on day 4 + 7w) active offset periods
 * later. week: 0 days, 1 weeks. Returns the count, or 0 when the cohort is not held or
 * offset is out of range. */
uint64_t kpi_retention(const kpi_t *k, int week, int64_t cohort, int offset);
/* The newest cohort held (days or weeks since the epoch), or -1 when none. */
int64_t kpi_newest_cohort(const kpi_t *k, int week);
/* Lifetime value totals, overall (cohort_week < 0) or of one first-seen week cohort (0
 * when not held) into *out (OUT). */
void kpi_clv(const kpi_t *k, int64_t cohort_week, kpi_clv_t *out);
/* Index of user-defined KPI name, or -1. */
int kpi_custom_index(const kpi_t *k, const char *name);
/* Definition of user-defined KPI i (borrowed), or NULL. */
const config_kpi_t *kpi_custom_def(const kpi_t *k, int i);
/* Numerator and denominator (NAN without one) of user-defined KPI i over [from_us,
 * to_us) into *num, *den (OUT); the span read into *read_from, *read_to (OUT). Returns 0
 * or -ENOENT. */
int kpi_custom_eval(const kpi_t *k, int i, int64_t from_us, int64_t to_us, double *num,
                    double *den, int64_t *read_from, int64_t *read_to);
/* Day and week index of a time (UTC). */
int64_t kpi_day_of(int64_t t_us);
int64_t kpi_week_of(int64_t t_us);

/* ---- Snapshot ----
 * "SLKP", u8 version 1, then little-endian: u64 customers, f64 revenue; u32 number of
 * campaign names, each u32 hash + u16 length + bytes; day grid then week grid: per row
 * i64 cohort (-1 unused) + offsets x u32; CLV cohort rows: i64 week (-1 unused), u64
 * customers, f64 revenue; u64 length + the facts rollup (rollup_serialize); u64 length
 * + the user-defined KPIs' rollup. */

/* Append k's encoding to out. Returns the number of bytes appended. */
size_t kpi_serialize(const kpi_t *k, buf_t *out);
/* Decode exactly n bytes at p (hostile input is fine) into a new state with the given
 * clock. Returns 0 and the state in *out (OUT, owned by the caller), or -EBADMSG. */
int kpi_deserialize(const void *p, size_t n, int64_t (*now_us)(void *ctx), void *now_ctx,
                    kpi_t **out);

#endif
