/* serve: wiring and the request router (see serve.h). */
#include "serve.h"

#include <cjson/cJSON.h>
#include <errno.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "act.h"
#include "collect.h"
#include "decide.h"
#include "dedup.h"
#include "enrich.h"
#include "geo.h"
#include "uaparse.h"
#include "http.h"
#include "keys.h"
#include "log.h"
#include "metrics.h"
#include "privacy.h"
#include "process.h"
#include "query.h"
#include "sse.h"
#include "static.h"
#include "users.h"
#include "util/buf.h"
#include "util/clock.h"
#include "util/mem.h"
#include "util/msg.h"
#include "util/str.h"
#include "webhook.h"

typedef struct server {
  config_t *cfg;
  uv_loop_t *loop;
  log_t *log, *bad;
  enrich_t *enrich;
  geo_t *geo;
  uaparse_t *ua;
  privacy_t *privacy;
  dedup_t *dedup;
  metrics_t *metrics;
  collect_t *collect;
  users_t *users;
  sse_hub_t *hub;
  process_t *process;
  decide_t *decide;
  query_t *query;
  act_t *act;
  uv_timer_t retention;
  int retention_running;
  http_server_t *http;
  uv_signal_t sigterm, sigint, sighup;
  int draining;
  int64_t started_us;
} server_t;

/* The event log's quiet probe (log.h, Commit window): every connection waits for its
 * answer, so no request can join the group the writer lets fill. */
static int all_held(void *http) { return http_server_all_held(http); }

void serve_log_opts(const config_t *cfg, const char *subdir, uv_loop_t *loop, log_opts_t *o,
                    char *path, size_t pathlen) {
  snprintf(path, pathlen, "%s/%s", cfg->data_dir, subdir);
  memset(o, 0, sizeof *o);
  o->dir = path;
  o->segment_bytes = cfg->segment_bytes;
  o->sync = !strcmp(cfg->fsync, "off") ? LOG_SYNC_OFF
            : !strcmp(cfg->fsync, "interval") ? LOG_SYNC_INTERVAL
                                              : LOG_SYNC_ALWAYS;
  o->sync_interval_ms = (uint32_t)cfg->fsync_interval_ms;
  o->commit_window_us = (uint32_t)cfg->commit_window_us;
  o->max_pending_bytes = cfg->max_queue_bytes;
  /* The event log keeps 1 MiB of zeros written ahead of its records (fsync=always only):
   * each group's fdatasync then flushes data alone, not the file's size and block
   * allocation (docs/PERFORMANCE.md: about 10% less CPU per single-event request). The
   * cost is one extra fdatasync per MiB (about 2,700 events of 380 bytes); large groups
   * (batches at full load) get zeros only from idle CPU (log.h, Preallocation). */
  if (!strcmp(subdir, "log")) o->preallocate_bytes = 1u << 20;
  o->loop = loop;
  o->read_only = loop == NULL;
}

/* ---- operational endpoints ---- */

static void json_reply(http_req_t *r, int status, const char *body) {
  http_header_t h[] = {{"Content-Type", "application/json"}, {"Cache-Control", "no-store"}};
  http_respond(r, status, h, 2, body, strlen(body), 0);
}

static void metrics_reply(server_t *s, http_req_t *r) {
  if (keys_require(s->cfg, r, KEY_READ, NULL) != 0) return;
  uint64_t ua_hits = 0, ua_misses = 0;
  if (s->ua) uaparse_stats(s->ua, &ua_hits, &ua_misses);
  process_stats_t ps = {0};
  if (s->process) process_stats(s->process, &ps);
  uint64_t end = log_end_offset(s->log);
  /* the four rollup stores: events, sessions, KPI facts, KPI parts */
  rollup_stats_t st[4] = {0};
  if (s->process) {
    rollup_stats(process_events(s->process), &st[0]);
    rollup_stats(process_sessions(s->process), &st[1]);
    kpi_rollup_stats(process_kpi(s->process), &st[2]);
  }
  const rollup_stats_t *re = &st[0];
  double evicted = 0, users_dropped = 0, budget_bytes = 0, budget_folded = 0, starved = 0;
  for (int i = 0; i < 4; i++) {
    for (int g = 0; g < 3; g++) {
      evicted += (double)st[i].evicted[g];
      users_dropped += (double)st[i].users_dropped[g];
    }
    budget_bytes += (double)st[i].budget_bytes;
    budget_folded += (double)st[i].budget_folded;
    starved += st[i].starved;
  }
  /* The allocator's view: what RSS holds beyond the live heap. */
  double heap_in_use = 0, heap_free = 0;
#ifdef __GLIBC__
  struct mallinfo2 mi = mallinfo2();
  heap_in_use = (double)(mi.uordblks + mi.hblkhd);
  heap_free = (double)mi.fordblks;
#endif
  struct statvfs vfs;
  double disk_free = statvfs(s->cfg->data_dir, &vfs) == 0 ? (double)vfs.f_bavail * vfs.f_frsize : 0;
  metrics_gauge_t g[] = {
      {"sluice_log_queue_bytes", "Bytes accepted but not yet durable.", (double)log_pending_bytes(s->log)},
      {"sluice_log_end_offset", "Offset the next event will get.", (double)log_end_offset(s->log)},
      {"sluice_log_disk_bytes", "Bytes of log segments on disk.", (double)log_disk_bytes(s->log)},
      {"sluice_log_prepared_rolls", "Segment rolls that took a segment prepared in the background.", (double)log_prepared_rolls(s->log)},
      {"sluice_bad_log_disk_bytes", "Bytes of bad-event log segments on disk.", (double)log_disk_bytes(s->bad)},
      {"sluice_log_error", "1 when the log has failed and needs a restart.", log_error(s->log) ? 1 : 0},
      {"sluice_http_connections", "Open HTTP connections.", (double)http_server_connections(s->http)},
      {"sluice_data_dir_free_bytes", "Free bytes on the data dir's file system.", disk_free},
      {"sluice_uptime_seconds", "Seconds since start.", (double)(clock_mono_us() - s->started_us) / 1e6},
      {"sluice_ua_cache_hits", "User agents answered from the parse cache since start.", (double)ua_hits},
      {"sluice_ua_cache_misses", "User agents parsed with the regexes since start.", (double)ua_misses},
      {"sluice_process_offset", "Next log offset the processing stage reads.", (double)ps.offset},
      {"sluice_process_lag_events", "Durable events not processed yet.", (double)(end > ps.offset ? end - ps.offset : 0)},
      {"sluice_rollup_bytes", "Heap bytes of the rollups (events and sessions).", (double)(st[0].bytes + st[1].bytes)},
      {"sluice_kpi_rollup_bytes", "Heap bytes of the KPI state's rollups (facts, user-defined KPIs).", (double)(st[2].bytes + st[3].bytes)},
      {"sluice_rollup_budget_bytes", "Bytes rollup-max-bytes counts, summed over the four rollup stores.", budget_bytes},
      {"sluice_rollup_evicted_buckets", "Rollup buckets given up to rollup-max-bytes (all rollup stores).", evicted},
      {"sluice_rollup_users_dropped_buckets", "Rollup buckets whose unique users were given up to rollup-max-bytes.", users_dropped},
      {"sluice_rollup_budget_folded", "Dimension values counted as \"(other)\" because rollup-max-bytes was reached.", budget_folded},
      {"sluice_rollup_starved_stores", "Rollup stores at rollup-max-bytes with nothing left to give up.", starved},
      {"sluice_rollup_minute_ring_start_timestamp_seconds", "Unix time of the oldest minute the events rollup still holds.",
       (double)re->held_from_us[1] / 1e6},
      {"sluice_malloc_in_use_bytes", "Heap bytes allocated and not freed (glibc mallinfo2).", heap_in_use},
      {"sluice_malloc_free_bytes", "Freed heap bytes the allocator keeps for reuse (glibc mallinfo2).", heap_free},
      {"sluice_process_unreadable_events", "Events skipped because the disk damaged their log records.", (double)ps.unreadable},
      {"sluice_profiles", "Profiles held in memory.", (double)ps.profiles},
      {"sluice_profile_bytes", "Heap bytes of the profiles in memory.", (double)ps.profile_bytes},
      {"sluice_profiles_spilled", "Evicted profiles kept on disk until their person returns.", (double)ps.spilled},
      {"sluice_profile_spill_ids", "Ids (people and aliases) in the profile spill's index.", (double)ps.spill_ids},
      {"sluice_profile_spill_bytes", "Length of the profile spill file.", (double)ps.spill_bytes},
      {"sluice_profile_spill_index_bytes", "Heap bytes of the profile spill's index.", (double)ps.spill_index_bytes},
      {"sluice_profiles_restored", "Profiles brought back from the spill since start.", (double)ps.restored},
      {"sluice_profiles_dropped", "Evicted profiles not kept (spill full or failing) since start.", (double)ps.dropped},
  };
  metrics_gauge_t all[sizeof g / sizeof g[0] + 32];
  memcpy(all, g, sizeof g);
  size_t n = sizeof g / sizeof g[0];
  n += act_gauges(s->act, all + n, sizeof all / sizeof all[0] - n);
  buf_t b = BUF_INIT;
  metrics_render(s->metrics, &b, all, n);
  decide_metrics(s->decide, &b);
  http_header_t h[] = {{"Content-Type", "text/plain; version=0.0.4; charset=utf-8"}};
  http_respond(r, 200, h, 1, b.data, b.len, 0);
  buf_free(&b);
}

static void readyz_reply(server_t *s, http_req_t *r) {
  const char *why = s->draining                                          ? "draining"
                    : log_error(s->log)                                  ? "log_failed"
                    : log_pending_bytes(s->log) >= s->cfg->max_queue_bytes ? "overloaded"
                                                                         : NULL;
  char body[128];
  snprintf(body, sizeof body, "{\"ready\":%s%s%s%s}", why ? "false" : "true",
           why ? ",\"reason\":\"" : "", why ? why : "", why ? "\"" : "");
  json_reply(r, why ? 503 : 200, body);
}

/* ---- rules: reload, listing, on/off ---- */

/* The webhook endpoints: the configured ones plus those the rules files declare. */
static void register_endpoints(server_t *s) {
  size_t cap = rules_set_webhooks(rules_current(decide_rules(s->decide)));
  webhook_endpoint_t *eps = xcalloc(cap ? cap : 1, sizeof *eps);
  size_t n = decide_endpoints(s->decide, eps, cap);
  char err[512];
  if (act_set_endpoints(s->act, eps, n, err, sizeof err) != 0)
    msg_error("cannot register the webhook endpoints of the rules", "error=\"%s\"", err);
  free(eps);
}

static void log_rules(server_t *s, const char *what) {
  const rules_set_t *set = rules_current(decide_rules(s->decide));
  msg_info(what, "dir=\"%s\" rules=%zu alerts=%zu webhooks=%zu", s->cfg->rules_dir,
           rules_set_rules(set), rules_set_alerts(set), rules_set_webhooks(set));
}

static void on_sighup(uv_signal_t *h, int signum) {
  server_t *s = h->data;
  char err[1024];
  process_write_lock(s->process); /* a checkpoint may be reading the rules' state */
  int rc = decide_reload(s->decide, err, sizeof err);
  process_write_unlock(s->process);
  if (rc < 0) {
    msg_error("rules reload failed; the running rules stay", "error=\"%s\"", err);
    return;
  }
  register_endpoints(s);
  log_rules(s, "rules reloaded");
}

/* PUT /v1/rules?file=NAME.rules (admin), body = the file's text. */
static void rules_put(server_t *s, http_req_t *r) {
  if (keys_require(s->cfg, r, KEY_ADMIN, NULL) != 0) return;
  char name[DECIDE_NAME_MAX + 2], err[1024];
  long nl = str_query_param(http_req_query(r), "file", name, sizeof name);
  if (nl <= 0 || (size_t)nl >= sizeof name) {
    http_respond_error(r, 400, "bad_request", "give the file name: ?file=NAME.rules", NULL, 0);
    return;
  }
  size_t len;
  char *body = http_req_body(r, &len);
  int invalid;
  process_write_lock(s->process);
  long n = decide_put_file(s->decide, name, body ? body : "", body ? len : 0, &invalid, err, sizeof err);
  process_write_unlock(s->process);
  if (n < 0) {
    http_respond_error(r, n == -ENOENT ? 409 : n == -EINVAL ? 400 : 500,
                       invalid ? "invalid_rules" : n == -ENOENT ? "no_rules_dir" : n == -EINVAL ? "bad_request" : "write_failed",
                       err, NULL, 0);
    if (invalid) msg_warn("rules upload refused; the running rules stay", "file=%s error=\"%s\"", name, err);
    return;
  }
  register_endpoints(s);
  log_rules(s, "rules uploaded");
  const rules_set_t *set = rules_current(decide_rules(s->decide));
  char out[160];
  snprintf(out, sizeof out, "{\"success\":true,\"rules\":%zu,\"alerts\":%zu,\"webhooks\":%zu}",
           rules_set_rules(set), rules_set_alerts(set), rules_set_webhooks(set));
  json_reply(r, 200, out);
}

/* PUT /v1/rules/NAME/enabled (admin), body {"enabled": bool}. */
static void rules_enable(server_t *s, http_req_t *r, const char *name, size_t nlen) {
  if (keys_require(s->cfg, r, KEY_ADMIN, NULL) != 0) return;
  size_t len;
  char *body = http_req_body(r, &len);
  cJSON *root = body ? cJSON_ParseWithLength(body, len) : NULL;
  const cJSON *en = cJSON_GetObjectItemCaseSensitive(root, "enabled");
  /* the name is percent-decoded like a query parameter */
  char rule[RULES_VALUE_MAX], q[RULES_VALUE_MAX * 3 + 4];
  long rl = -1;
  if (nlen < sizeof q - 3) {
    snprintf(q, sizeof q, "n=%.*s", (int)nlen, name);
    rl = str_query_param(q, "n", rule, sizeof rule);
  }
  if (!cJSON_IsBool(en)) {
    http_respond_error(r, 400, "bad_request", "body must be {\"enabled\": true|false}", NULL, 0);
  } else if (rl <= 0 || (size_t)rl >= sizeof rule) {
    http_respond_error(r, 404, "unknown_rule", "no rule has that name", NULL, 0);
  } else {
    process_write_lock(s->process);
    int rc = decide_set_enabled(s->decide, rule, cJSON_IsTrue(en));
    process_write_unlock(s->process);
    if (rc == -ENOENT) http_respond_error(r, 404, "unknown_rule", "no rule has that name", NULL, 0);
    else if (rc) http_respond_error(r, 500, "write_failed", strerror(-rc), NULL, 0);
    else {
      msg_info("rule switched", "rule=\"%s\" enabled=%d", rule, cJSON_IsTrue(en));
      json_reply(r, 200, cJSON_IsTrue(en) ? "{\"success\":true,\"enabled\":true}"
                                          : "{\"success\":true,\"enabled\":false}");
    }
  }
  cJSON_Delete(root);
}

/* /v1/rules and /v1/rules/NAME/enabled; returns 0 when r is not one of them. */
static int rules_handle(server_t *s, http_req_t *r) {
  const char *path = http_req_path(r), *method = http_req_method(r);
  if (strncmp(path, "/v1/rules", 9) || (path[9] && path[9] != '/')) return 0;
  http_req_set_route(r, "rules");
  const char *rest = path[9] ? path + 10 : "";
  size_t rl = strlen(rest);
  if (rl > 8 && !strcmp(rest + rl - 8, "/enabled")) {
    if (strcmp(method, "PUT")) {
      http_header_t h[] = {{"Allow", "PUT"}};
      http_respond_error(r, 405, "method_not_allowed", "use PUT", h, 1);
    } else {
      rules_enable(s, r, rest, rl - 8);
    }
  } else if (*rest) {
    http_respond_error(r, 404, "not_found", "no such endpoint", NULL, 0);
  } else if (!strcmp(method, "PUT")) {
    rules_put(s, r);
  } else if (!strcmp(method, "GET") || !strcmp(method, "HEAD")) {
    if (keys_require(s->cfg, r, KEY_READ, NULL) != 0) return 1;
    buf_t b = BUF_INIT;
    decide_describe(s->decide, &b);
    /* "adminKey": whether this key may switch rules and upload files, so a client can
     * tell without trying a change (the object's closing brace is replaced) */
    char key[256];
    long kn = keys_from_authorization(http_req_header(r, "Authorization"), key, sizeof key);
    int admin = kn > 0 && keys_match(s->cfg, key, (size_t)kn) == KEY_ADMIN;
    b.len--;
    buf_printf(&b, ",\"adminKey\":%s}", admin ? "true" : "false");
    json_reply(r, 200, b.data);
    buf_free(&b);
  } else {
    http_header_t h[] = {{"Allow", "GET, HEAD, PUT"}};
    http_respond_error(r, 405, "method_not_allowed", "use GET or PUT", h, 1);
  }
  return 1;
}

static void on_request(http_req_t *r, void *ud) {
  server_t *s = ud;
  if (rules_handle(s, r)) return;
  if (collect_handle(s->collect, r)) return;
  if (users_handle(s->users, r)) return;
  if (query_handle(s->query, r)) return;
  if (act_handle(s->act, r)) return;
  if (static_handle(s->cfg, r)) return;
  const char *path = http_req_path(r), *method = http_req_method(r);
  int get = !strcmp(method, "GET") || !strcmp(method, "HEAD");
  if (!strcmp(path, "/healthz") || !strcmp(path, "/readyz") || !strcmp(path, "/metrics") ||
      !strcmp(path, "/version")) {
    static const char *const labels[] = {"healthz", "readyz", "metrics", "version"};
    static const char *const paths[] = {"/healthz", "/readyz", "/metrics", "/version"};
    for (size_t i = 0; i < 4; i++)
      if (!strcmp(path, paths[i])) http_req_set_route(r, labels[i]);
    if (!get) {
      http_header_t h[] = {{"Allow", "GET, HEAD"}};
      http_respond_error(r, 405, "method_not_allowed", "use GET", h, 1);
    } else if (!strcmp(path, "/healthz")) {
      json_reply(r, 200, "{\"status\":\"ok\"}");
    } else if (!strcmp(path, "/readyz")) {
      readyz_reply(s, r);
    } else if (!strcmp(path, "/metrics")) {
      metrics_reply(s, r);
    } else {
      /* The geo data's licence (CC BY-SA) asks for visible credit: it travels here. */
      buf_t b = BUF_INIT;
      buf_puts(&b, "{\"name\":\"sluice\",\"version\":\"" SLUICE_VERSION "\",\"geoDatabase\":");
      if (s->geo) {
        const char *g = geo_description(s->geo);
        buf_putc(&b, '"');
        buf_json_escape(&b, g, strlen(g));
        buf_putc(&b, '"');
      } else {
        buf_puts(&b, "null");
      }
      buf_putc(&b, '}');
      json_reply(r, 200, b.data);
      buf_free(&b);
    }
    return;
  }
  http_respond_error(r, 404, "not_found", "no such endpoint", NULL, 0);
}

static void on_response(void *ud, const char *route, int status, uint64_t latency_us) {
  server_t *s = ud;
  metrics_request(s->metrics, route, status, latency_us);
}

static void on_sync(void *ud, uint64_t sync_us, uint64_t records) {
  metrics_observe(ud, MH_FSYNC, sync_us);
}

/* ---- retention ---- */

/* Deleting segments reads and unlinks files: it runs on the thread pool, never on the
 * loop, and one run at a time. */
typedef struct retention_job {
  uv_work_t work;
  server_t *s;
  int rc[2];
  uint64_t segs[2], bytes[2];
} retention_job_t;

static void retention_run(uv_work_t *w) {
  retention_job_t *j = w->data;
  log_t *logs[2] = {j->s->log, j->s->bad};
  uint64_t days[2] = {j->s->cfg->retention_days, j->s->cfg->bad_retention_days};
  for (int i = 0; i < 2; i++)
    if (days[i])
      j->rc[i] = log_retain(logs[i], clock_wall_us() - (int64_t)days[i] * 86400 * 1000000,
                            &j->segs[i], &j->bytes[i]);
}

static void retention_done(uv_work_t *w, int status) {
  retention_job_t *j = w->data;
  static const char *const names[2] = {"events", "bad"};
  for (int i = 0; i < 2; i++) {
    if (j->rc[i])
      msg_warn("retention failed", "log=%s error=\"%s\"", names[i], strerror(-j->rc[i]));
    else if (j->segs[i])
      msg_info("retention deleted old segments", "log=%s segments=%llu bytes=%llu", names[i],
               (unsigned long long)j->segs[i], (unsigned long long)j->bytes[i]);
  }
  j->s->retention_running = 0;
  free(j);
}

static void on_retention(uv_timer_t *t) {
  server_t *s = t->data;
  if (s->retention_running || (!s->cfg->retention_days && !s->cfg->bad_retention_days)) return;
  retention_job_t *j = xcalloc(1, sizeof *j);
  j->s = s;
  j->work.data = j;
  s->retention_running = 1;
  if (uv_queue_work(s->loop, &j->work, retention_run, retention_done) != 0) {
    s->retention_running = 0;
    free(j);
  }
}

/* ---- enrichment data ---- */

/* The geo database: the configured one (failing to open it is fatal), else the one built
 * beside the binary (absent: events get no location), or none with "off". */
static int open_geo(server_t *s) {
  const char *want = s->cfg->geo_db;
  if (!strcmp(want, "off")) return 0;
  char path[4096], err[512];
  if (want[0]) {
    snprintf(path, sizeof path, "%s", want);
  } else {
    ssize_t n = readlink("/proc/self/exe", path, sizeof path - 32);
    if (n <= 0) return 0;
    path[n] = 0;
    char *slash = strrchr(path, '/');
    strcpy(slash ? slash + 1 : path, "geoip-country.mmdb");
    if (access(path, R_OK) != 0) {
      msg_info("no geo database; events get no location", "looked_for=\"%s\"", path);
      return 0;
    }
  }
  if (!(s->geo = geo_open(path, err, sizeof err))) {
    msg_error("cannot open the geo database", "error=\"%s\"", err);
    return -1;
  }
  msg_info("geo database", "path=\"%s\" description=\"%s\"", path, geo_description(s->geo));
  return 0;
}

/* ---- processing and queries ---- */

/* decide -> act: the act stage is built after the process stage (it needs the hub), and
 * actions only flow once the loop runs. */
static int to_act(void *ud, const action_t *a) {
  server_t *s = ud;
  return s->act ? act_sink(s->act, a) : -EAGAIN;
}

/* rules_kpi_fn: an alert's KPI over [now - window, now) from the rollups, through the
 * query module's kpi query (campaign scope: filter utm_campaign). Segment scopes are not
 * kept by the rollups: -ENOTSUP (the alert is not evaluated). */
static int kpi_value(void *ud, const rules_alert_t *a, int64_t now_us, double *value) {
  server_t *s = ud;
  const rollup_t *events = process_events(s->process);
  if (a->segment) {
    /* The segment's own events rollup (decide.h) answers the KPIs made of events only. */
    static const char *const of_events[] = {"email_open_rate", "email_click_to_open",
                                            "email_ctr", "offer_ctr", "revenue", "orders",
                                            "aov", "events", "active_users"};
    size_t k = 0;
    while (k < sizeof of_events / sizeof *of_events && strcmp(of_events[k], a->kpi)) k++;
    if (k == sizeof of_events / sizeof *of_events ||
        !(events = decide_segment_events(s->decide, a->segment, a->window_us, now_us)))
      return -ENOTSUP;
  }
  query_stores_t st = {.events = events,
                       .sessions = process_sessions(s->process),
                       .conversion_event = process_conversion_event(s->process),
                       .kpi = process_kpi(s->process)};
  buf_t q = BUF_INIT, out = BUF_INIT;
  buf_puts(&q, "{\"type\":\"kpi\",\"kpi\":");
  buf_json_str(&q, a->kpi);
  buf_printf(&q, ",\"from\":%lld,\"to\":%lld", (long long)((now_us - a->window_us) / 1000),
             (long long)(now_us / 1000));
  if (a->campaign) {
    buf_puts(&q, ",\"filter\":{\"dim\":\"utm_campaign\",\"value\":");
    buf_json_str(&q, a->campaign);
    buf_putc(&q, '}');
  }
  buf_putc(&q, '}');
  int rc = -EINVAL;
  if (query_run(&st, q.data, q.len, now_us, &out) == 200) {
    cJSON *root = cJSON_ParseWithLength(out.data, out.len);
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, "value");
    if (cJSON_IsNumber(v) && isfinite(v->valuedouble)) *value = v->valuedouble, rc = 0;
    else rc = -EDOM; /* no data in the window (a ratio over nothing) */
    cJSON_Delete(root);
  }
  buf_free(&q);
  buf_free(&out);
  return rc;
}

/* The process stage (snapshot loaded, then the log's tail replayed in slices) with the
 * rules engine, the SSE hub for /v1/live and the query API. */
static int start_process(server_t *s) {
  char state[4096], err[1024];
  snprintf(state, sizeof state, "%s/state", s->cfg->data_dir);
  mkdir(state, 0700);
  decide_opts_t dopt = {.rules_dir = s->cfg->rules_dir, .state_dir = state, .sink = to_act,
                        .sink_ud = s, .kpi = kpi_value, .kpi_ud = s,
                        .rollup_max_bytes = (size_t)s->cfg->rollup_max_bytes};
  if (!(s->decide = decide_new(&dopt, err, sizeof err))) {
    msg_error("cannot load the rules", "error=\"%s\"", err);
    return -1;
  }
  if (*s->cfg->rules_dir) log_rules(s, "rules loaded");
  s->hub = sse_hub_new(s->loop, NULL);
  process_opts_t po = {
      .loop = s->loop,
      .log = s->log,
      .state_dir = state,
      .checkpoint_ms = s->cfg->checkpoint_interval_s * 1000,
      .tracked = (const char *const *)s->cfg->tracked_events.items,
      .ntracked = s->cfg->tracked_events.n,
      .conversion_event = s->cfg->conversion_event,
      .session_timeout_s = s->cfg->session_timeout_s,
      .max_profiles = s->cfg->max_profiles,
      .spill_max_ids = s->cfg->profile_spill_max_ids,
      .kpis = &s->cfg->kpis,
      .hub = s->hub,
      .decide = s->decide,
      .rollup_max_bytes = s->cfg->rollup_max_bytes,
      .log_cache_bytes = s->cfg->log_cache_bytes,
  };
  int64_t t0 = clock_mono_us();
  if (!(s->process = process_new(&po, err, sizeof err))) {
    msg_error("cannot start processing", "error=\"%s\"", err);
    return -1;
  }
  int st = process_snapshot_status(s->process, err, sizeof err);
  process_stats_t ps;
  process_stats(s->process, &ps);
  if (st < 0)
    msg_warn("processing snapshot unusable; rebuilding from the log", "error=\"%s\"", err);
  else
    msg_info("processing state", "snapshot=%s offset=%llu end_offset=%llu ms=%lld",
             st ? "loaded" : "none", (unsigned long long)ps.offset,
             (unsigned long long)log_end_offset(s->log), (long long)(clock_mono_us() - t0) / 1000);
  s->query = query_new(s->cfg, s->process, s->hub);
  scan_limits_t sl = {
      .max_records = s->cfg->scan_max_records,
      .max_bytes = s->cfg->scan_max_bytes,
      .max_time_us = (int64_t)s->cfg->scan_timeout_ms * 1000,
      .max_memory = (size_t)s->cfg->scan_max_memory,
      .max_groups = (size_t)s->cfg->scan_max_groups,
      .exact_uniques = (size_t)s->cfg->scan_exact_uniques,
      .late_us = s->cfg->scan_late_s ? (int64_t)s->cfg->scan_late_s * 1000000 : -1,
  };
  query_enable_scan(s->query, s->loop, s->log, &sl, (int)s->cfg->scan_concurrency);
  return process_start(s->process);
}

/* After the HTTP server drained and the process stage's handles closed: the last
 * snapshot, then free. */
static void stop_process(server_t *s, int checkpoint) {
  if (!s->process) return;
  if (checkpoint) {
    int rc = process_checkpoint_sync(s->process);
    if (rc) msg_warn("cannot write the processing snapshot", "error=\"%s\"", strerror(-rc));
  }
  uv_run(s->loop, UV_RUN_NOWAIT); /* the stage's handles finish closing */
  process_free(s->process); /* closes its log reader: before log_close */
  s->process = NULL;
  sse_hub_free(s->hub);
  s->hub = NULL;
}

/* ---- life cycle ---- */

static void on_drained(void *ud) {
  server_t *s = ud;
  uv_stop(s->loop);
}

static void on_signal(uv_signal_t *h, int signum) {
  server_t *s = h->data;
  if (s->draining) {
    msg_warn("second signal: exiting without waiting", "signal=%d", signum);
    uv_stop(s->loop);
    return;
  }
  s->draining = 1;
  msg_info("draining", "signal=%d connections=%zu", signum, http_server_connections(s->http));
  http_server_drain(s->http, on_drained, s);
}

static void raise_fd_limit(void) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
}

static log_t *open_log(server_t *s, const char *sub) {
  log_opts_t o;
  char path[4096], err[512];
  serve_log_opts(s->cfg, sub, s->loop, &o, path, sizeof path);
  log_recovery_t rec;
  log_t *l = log_open(&o, &rec, err, sizeof err);
  if (!l) {
    msg_error("cannot open the log", "dir=\"%s\" error=\"%s\"", path, err);
    return NULL;
  }
  if (rec.dropped_bytes)
    msg_warn("log recovered a torn tail", "dir=\"%s\" segment=%s dropped_bytes=%llu", path,
             rec.dropped_segment, (unsigned long long)rec.dropped_bytes);
  if (rec.damaged_segments)
    msg_warn("log has damaged segments; their unreadable records are skipped",
             "dir=\"%s\" segments=%llu first=%s", path,
             (unsigned long long)rec.damaged_segments, rec.damaged_segment);
  msg_info("log open", "dir=\"%s\" segments=%llu records=%llu end_offset=%llu", path,
           (unsigned long long)rec.segments, (unsigned long long)rec.records,
           (unsigned long long)log_end_offset(l));
  return l;
}

int serve_run(config_t *cfg) {
  server_t s = {.cfg = cfg, .started_us = clock_mono_us()};
  char err[512], host[64];
  int port, rc = 1, generated = 0;
  msg_level_t lvl;
  if (msg_parse_level(cfg->log_level, &lvl) == 0) msg_set_level(lvl);
  config_split_listen(cfg->listen, host, &port);
  raise_fd_limit();
  signal(SIGPIPE, SIG_IGN);

  if (mkdir(cfg->data_dir, 0700) != 0 && errno != EEXIST) {
    msg_error("cannot create the data dir", "dir=\"%s\" error=\"%s\"", cfg->data_dir, strerror(errno));
    return 1;
  }
  if (keys_resolve(cfg, &generated, err, sizeof err) != 0) {
    msg_error("cannot resolve keys", "error=\"%s\"", err);
    return 1;
  }
  s.loop = uv_default_loop();
  uv_signal_init(s.loop, &s.sigterm);
  uv_signal_init(s.loop, &s.sigint);
  uv_signal_init(s.loop, &s.sighup);
  uv_timer_init(s.loop, &s.retention);
  s.sigterm.data = s.sigint.data = s.sighup.data = s.retention.data = &s;
  s.metrics = metrics_new();
  if (!(s.log = open_log(&s, "log")) || !(s.bad = open_log(&s, "bad"))) goto out;
  log_set_sync_observer(s.log, on_sync, s.metrics);
  if (!(s.privacy = privacy_new(cfg, err, sizeof err))) {
    msg_error("cannot set up pseudonymisation", "error=\"%s\"", err);
    goto out;
  }
  s.enrich = enrich_new(cfg);
  if (open_geo(&s) != 0) goto out;
  if (s.geo) enrich_add(s.enrich, "geo", geo_enrich_step, s.geo);
  if (strcmp(cfg->ua_regexes, "off") != 0) {
    if (!(s.ua = uaparse_open(cfg->ua_regexes, cfg->ua_cache_entries, err, sizeof err))) {
      msg_error("cannot load the user-agent regexes", "error=\"%s\"", err);
      goto out;
    }
    enrich_add(s.enrich, "user_agent_parse", uaparse_enrich_step, s.ua);
  }
  /* Consent and pseudonymisation run last: they see (and may strip) what the others add. */
  enrich_add(s.enrich, "consent", privacy_consent_step, s.privacy);
  enrich_add(s.enrich, "pseudonymise", privacy_pseudonymise_step, s.privacy);
  s.dedup = dedup_new(cfg->dedup_window_events, (int64_t)cfg->dedup_window_s * 1000000);
  int64_t t0 = clock_mono_us();
  long loaded = dedup_rebuild(s.dedup, s.log, clock_wall_us());
  if (loaded < 0) {
    msg_error("cannot rebuild the dedup window from the log", "error=\"%s\"", strerror((int)-loaded));
    goto out;
  }
  if (s.dedup)
    msg_info("dedup window rebuilt", "ids=%ld ms=%lld", loaded, (long long)(clock_mono_us() - t0) / 1000);
  collect_deps_t deps = {cfg, s.log, s.bad, s.enrich, s.metrics, s.dedup};
  s.collect = collect_new(&deps);
  s.users = users_new(cfg, s.loop, s.log, s.bad, s.privacy);
  if (start_process(&s) != 0) goto out;
  act_deps_t ad = {cfg, s.loop, s.hub, s.collect};
  if (!(s.act = act_new(&ad, err, sizeof err))) {
    msg_error("cannot start the act stage", "error=\"%s\"", err);
    goto out;
  }
  register_endpoints(&s);
  size_t endpoints;
  uint64_t pending, dead;
  act_summary(s.act, &endpoints, &pending, &dead);
  msg_info("webhooks", "endpoints=%zu pending=%llu dead_letters=%llu", endpoints,
           (unsigned long long)pending, (unsigned long long)dead);
  /* An erased user's values also sit in the rollups and profiles: rebuild them. */
  users_on_forget(s.users, process_forget, s.process);
  uv_timer_start(&s.retention, on_retention, 0, 3600 * 1000);
  http_limits_t lim = {
      .max_header_bytes = cfg->max_header_bytes,
      .max_body_bytes = cfg->max_body_bytes,
      .header_timeout_ms = (uint32_t)cfg->header_timeout_ms,
      .body_timeout_ms = (uint32_t)cfg->body_timeout_ms,
      .idle_timeout_ms = (uint32_t)cfg->idle_timeout_ms,
      .max_connections = (uint32_t)cfg->max_connections,
  };
  s.http = http_server_new(s.loop, &lim, on_request, &s);
  http_server_set_observer(s.http, on_response, &s);
  log_set_quiet_probe(s.log, all_held, s.http);
  int lr = http_server_listen(s.http, host, port);
  if (lr != 0) {
    msg_error("cannot listen", "listen=%s error=\"%s\"", cfg->listen, uv_strerror(lr));
    goto out;
  }
  uv_signal_start(&s.sigterm, on_signal, SIGTERM);
  uv_signal_start(&s.sigint, on_signal, SIGINT);
  uv_signal_start(&s.sighup, on_sighup, SIGHUP);

  char url[128];
  snprintf(url, sizeof url, "http://%s%s%s:%d/", strchr(host, ':') ? "[" : "",
           strcmp(host, "0.0.0.0") ? host : "127.0.0.1", strchr(host, ':') ? "]" : "",
           http_server_port(s.http));
  msg_info("sluice serving", "version=%s url=%s data_dir=\"%s\" fsync=%s", SLUICE_VERSION, url,
           cfg->data_dir, cfg->fsync);
  /* The human-facing banner goes to stdout: the keys a shop and an analyst need. */
#define NEW(k) ((generated & (1 << (k))) ? " (new)" : "")
  printf("sluice %s listening on %s\n  dashboard: %s\n  write key: %s%s\n  read key:  %s%s\n"
         "  admin key: %s%s\n  keys are kept in %s/keys.yaml\n",
         SLUICE_VERSION, url, url, cfg->write_key, NEW(KEY_WRITE), cfg->read_key, NEW(KEY_READ),
         cfg->admin_key, NEW(KEY_ADMIN), cfg->data_dir);
#undef NEW
  fflush(stdout);

  uv_run(s.loop, UV_RUN_DEFAULT);
  rc = 0;
  msg_info("stopped accepting; closing the logs", "connections=%zu", http_server_connections(s.http));
out:
  uv_close((uv_handle_t *)&s.sigterm, NULL);
  uv_close((uv_handle_t *)&s.sigint, NULL);
  uv_close((uv_handle_t *)&s.sighup, NULL);
  uv_close((uv_handle_t *)&s.retention, NULL);
  http_server_free(s.http);
  act_stop(s.act);
  process_stop(s.process);
  query_cancel(s.query);
  /* Let thread-pool jobs (erasures, retention, checkpoints, scans) finish before the logs
   * close. */
  while (users_busy(s.users) || s.retention_running || process_busy(s.process) ||
         query_busy(s.query))
    uv_run(s.loop, UV_RUN_ONCE);
  stop_process(&s, rc == 0);
  log_close(s.log);
  log_close(s.bad);
  uv_run(s.loop, UV_RUN_DEFAULT);
  act_free(s.act); /* before the collector: an emit may still wait for the log */
  collect_free(s.collect);
  decide_free(s.decide); /* after the process stage, which borrowed it */
  query_free(s.query);
  users_free(s.users);
  enrich_free(s.enrich);
  geo_free(s.geo);
  uaparse_free(s.ua);
  privacy_free(s.privacy);
  dedup_free(s.dedup);
  metrics_free(s.metrics);
  uv_loop_close(s.loop);
  if (rc == 0) msg_info("sluice stopped cleanly", NULL);
  return rc;
}
