/* config: the option table and its three sources (see config.h). */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <libfyaml.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "profile.h"
#include "util/mem.h"
#include "util/yaml.h"

typedef enum { T_STR, T_SIZE, T_UINT, T_BOOL, T_LIST, T_ENUM } opt_type_t;

typedef struct opt {
  const char *name;
  opt_type_t type;
  size_t off;
  const char *def;
  const char *choices; /* T_ENUM: "a|b|c" */
  const char *help;
} opt_t;

#define O(field) offsetof(config_t, field)

static const opt_t opts[] = {
    {"listen", T_STR, O(listen), "127.0.0.1:8080", NULL, "address and port to serve HTTP on"},
    {"data-dir", T_STR, O(data_dir), "./sluice-data", NULL, "where the log, keys and state live"},
    {"log-level", T_ENUM, O(log_level), "info", "debug|info|warn|error", "lowest level logged"},
    {"write-key", T_STR, O(write_key), "", NULL,
     "public key that may only send events (generated and kept in data-dir when empty)"},
    {"read-key", T_STR, O(read_key), "", NULL, "key for the query API, dashboard and /metrics"},
    {"admin-key", T_STR, O(admin_key), "", NULL, "key for admin: rules, forget, export"},
    {"fsync", T_ENUM, O(fsync), "always", "always|interval|off",
     "always: ack after fdatasync (group commit); interval: ack after write, sync every "
     "fsync-interval-ms; off: never sync"},
    {"fsync-interval-ms", T_UINT, O(fsync_interval_ms), "1000", NULL, "sync period for fsync=interval"},
    {"commit-window-us", T_UINT, O(commit_window_us), "400", NULL,
     "fsync=always under sustained load (a group still being written when the next request "
     "arrives): how long the next group may gather requests, from its first, before its "
     "fdatasync; fewer, fuller syncs for up to this much more ack latency (0 = none, at "
     "most 100000)"},
    {"segment-bytes", T_SIZE, O(segment_bytes), "64m", NULL, "log segment roll size"},
    {"log-cache-bytes", T_SIZE, O(log_cache_bytes), "16m", NULL,
     "log bytes kept in the page cache behind the processing stage: older log pages leave "
     "the cache once processed, so the log does not crowd out other files (0 = leave them "
     "to the kernel)"},
    {"max-queue-bytes", T_SIZE, O(max_queue_bytes), "64m", NULL,
     "bytes accepted but not yet durable; past it requests get 503 + Retry-After"},
    {"retry-after-s", T_UINT, O(retry_after_s), "1", NULL, "Retry-After seconds sent with 503"},
    {"max-body-bytes", T_SIZE, O(max_body_bytes), "500k", NULL, "request body limit (413)"},
    {"max-decompressed-bytes", T_SIZE, O(max_decompressed_bytes), "4m", NULL,
     "limit on a gzip body once inflated (413)"},
    {"max-event-bytes", T_SIZE, O(max_event_bytes), "32k", NULL, "limit on one event's JSON"},
    {"max-batch-events", T_UINT, O(max_batch_events), "2500", NULL, "events in one request"},
    {"max-header-bytes", T_SIZE, O(max_header_bytes), "16k", NULL, "request line + headers (431)"},
    {"header-timeout-ms", T_UINT, O(header_timeout_ms), "10000", NULL, "time to send headers (408)"},
    {"body-timeout-ms", T_UINT, O(body_timeout_ms), "30000", NULL, "time to send the body (408)"},
    {"idle-timeout-ms", T_UINT, O(idle_timeout_ms), "60000", NULL, "keep-alive idle time"},
    {"max-connections", T_UINT, O(max_connections), "10000", NULL, "open connections"},
    {"rate-limit-per-ip", T_UINT, O(rate_limit_per_ip), "0", NULL,
     "ingestion requests per second per client address before 429 (0 = no limit; behind a "
     "proxy set trusted-proxies so clients are told apart)"},
    {"rate-limit-burst", T_UINT, O(rate_limit_burst), "0", NULL,
     "requests a client may send at once above the rate (0 = twice the rate)"},
    {"cors-origins", T_LIST, O(cors_origins), "", NULL,
     "browser origins allowed to send events (\"*\" = any); empty allows none"},
    {"redirect-hosts", T_LIST, O(redirect_hosts), "", NULL,
     "hosts the e-mail click redirect may send to (\"*.example.com\" matches subdomains)"},
    {"trusted-proxies", T_LIST, O(trusted_proxies), "", NULL,
     "peer IPs whose X-Forwarded-For header gives the client IP"},
    {"keep-full-ip", T_BOOL, O(keep_full_ip), "false", NULL,
     "store full client IPs (default: IPv4 /24, IPv6 /48 before disk)"},
    {"pseudonymise", T_BOOL, O(pseudonymise), "false", NULL,
     "replace pseudonymise-fields by a keyed HMAC-SHA256 before disk (key in data-dir)"},
    {"pseudonymise-fields", T_LIST, O(pseudonymise_fields),
     "userId,previousId,traits.email,traits.phone,context.traits.email,context.traits.phone", NULL,
     "dotted paths of the identifying fields pseudonymise replaces"},
    {"consent-default", T_ENUM, O(consent_default), "granted", "granted|denied",
     "consent assumed for events that carry no context.consent.categoryPreferences"},
    {"without-analytics-consent", T_ENUM, O(without_analytics_consent), "drop", "drop|anonymous",
     "events without analytics consent: drop them, or keep an anonymous count (name and time only)"},
    {"analytics-categories", T_LIST, O(analytics_categories), "Analytics,analytics,statistics", NULL,
     "consent categories that grant analytics"},
    {"marketing-categories", T_LIST, O(marketing_categories),
     "Marketing,marketing,Advertising,advertising", NULL,
     "consent categories that grant marketing (rule actions target only such visitors)"},
    {"geo-db", T_STR, O(geo_db), "", NULL,
     "MaxMind DB (.mmdb: GeoIP2, GeoLite2, DB-IP, ...) for context.location; empty: the "
     "geoip-country.mmdb built beside the binary; off: no geo lookups"},
    {"ua-regexes", T_STR, O(ua_regexes), "/usr/share/uap-core/regexes.yaml", NULL,
     "uap-core regexes for browser/OS/device parsing; off: no user-agent parsing"},
    {"ua-cache-entries", T_UINT, O(ua_cache_entries), "16384", NULL,
     "parsed user agents kept in memory"},
    {"retention-days", T_UINT, O(retention_days), "0", NULL,
     "delete log segments whose events are all older than this (checked hourly; 0 = keep)"},
    {"bad-retention-days", T_UINT, O(bad_retention_days), "30", NULL,
     "the same for the bad-event log (0 = keep)"},
    {"dedup-window-events", T_UINT, O(dedup_window_events), "1000000", NULL,
     "messageIds remembered to drop retried duplicates (32 bytes each; 0 = off)"},
    {"dedup-window-s", T_UINT, O(dedup_window_s), "86400", NULL,
     "longest time a messageId is remembered"},
    {"checkpoint-interval-s", T_UINT, O(checkpoint_interval_s), "10", NULL,
     "seconds between snapshots of rollups and profiles, or more when writing one takes "
     "over 1/20 of that in CPU (also written at shutdown)"},
    {"rollup-max-bytes", T_SIZE, O(rollup_max_bytes), "1g", NULL,
     "memory budget of each rollup store (events, sessions, KPI facts, KPI parts, segment "
     "alerts; at least 1m, 0 = none): at the bound the oldest minutes are dropped (those ranges answer from "
     "hours), then seconds, then hours, first down to an hour, a minute and a day, then down "
     "to the newest bucket; then the unique users of the oldest buckets (uniques read null); "
     "when even the newest buckets do not fit, every value counts as \"(other)\" and new "
     "users are not counted as uniques until it fits again"},
    {"tracked-events", T_LIST, O(tracked_events),
     "Product Viewed,Product Added,Checkout Started,Order Completed,Email Opened,Email Link Clicked",
     NULL, "event names counted per profile (at most 8)"},
    {"conversion-event", T_STR, O(conversion_event), "Order Completed", NULL,
     "event name that is an order: converts its session, its revenue is summed"},
    {"session-timeout-s", T_UINT, O(session_timeout_s), "1800", NULL,
     "inactivity that ends a session"},
    {"max-profiles", T_UINT, O(max_profiles), "1000000", NULL,
     "profiles kept in memory (about 150 bytes each); past it the least recently active go to the on-disk spill and come back with their person"},
    {"profile-spill-max-ids", T_UINT, O(profile_spill_max_ids), "16777216", NULL,
     "ids (people and their aliases) the profile spill indexes (about 21 bytes of memory each); past it evicted profiles are dropped and counted"},
    {"scan-concurrency", T_UINT, O(scan_concurrency), "2", NULL,
     "log-scan queries (multi-dimension filters, groupBy, funnel) running at once; more get 503"},
    {"scan-max-records", T_UINT, O(scan_max_records), "20000000", NULL,
     "records one log-scan query may read (more: 422 scan_limit)"},
    {"scan-max-bytes", T_SIZE, O(scan_max_bytes), "8g", NULL,
     "event bytes one log-scan query may read (more: 422 scan_limit)"},
    {"scan-timeout-ms", T_UINT, O(scan_timeout_ms), "30000", NULL,
     "wall time one log-scan query may take (more: 422 scan_limit)"},
    {"scan-max-memory", T_SIZE, O(scan_max_memory), "256m", NULL,
     "memory for one log-scan query's groups, unique users and funnel state (more: 422)"},
    {"scan-max-groups", T_UINT, O(scan_max_groups), "10000", NULL,
     "groups of a groupBy or funnel breakdown before the rest fold into \"(other)\""},
    {"scan-exact-uniques", T_UINT, O(scan_exact_uniques), "10000", NULL,
     "users counted exactly per cell of a log scan before a HyperLogLog estimate"},
    {"scan-late-s", T_UINT, O(scan_late_s), "0", NULL,
     "a log scan reads events received up to this long after the end of its range (0: to the log's end, passing over what the event-time runs rule out)"},
    {"offers-token-ttl-s", T_UINT, O(offers_token_ttl_s), "86400", NULL,
     "lifetime of a visitor's offers stream token (POST /v1/offers/token)"},
    {"offers-max-age-ms", T_UINT, O(offers_max_age_ms), "5000", NULL,
     "offers decided longer ago than this (replayed after a restart) are skipped and counted"},
    {"webhook-endpoints", T_LIST, O(webhook_endpoints), "", NULL,
     "webhook endpoints, each \"NAME URL secret=SECRET [timeout-ms=N]\" (the rules name "
     "them; POST /v1/actions tests them)"},
    {"webhook-timeout-ms", T_UINT, O(webhook_timeout_ms), "10000", NULL,
     "time one webhook attempt may take, connect to response (endpoint default)"},
    {"webhook-max-attempts", T_UINT, O(webhook_max_attempts), "10", NULL,
     "attempts before a webhook action goes to the dead letters"},
    {"webhook-retry-base-ms", T_UINT, O(webhook_retry_base_ms), "1000", NULL,
     "wait before the first retry; doubles per attempt, with jitter"},
    {"webhook-retry-max-ms", T_UINT, O(webhook_retry_max_ms), "3600000", NULL,
     "longest wait between two attempts"},
    {"webhook-max-in-flight", T_UINT, O(webhook_max_in_flight), "64", NULL,
     "webhook requests open at once"},
    {"webhook-outbox-max-bytes", T_SIZE, O(webhook_outbox_max_bytes), "64m", NULL,
     "undelivered and dead-letter webhook bodies kept; when full new actions are refused "
     "(counted in sluice_webhook_refused_total)"},
    {"webhook-remember-s", T_UINT, O(webhook_remember_s), "604800", NULL,
     "how long a delivered idempotency key is remembered so it is never delivered again"},
    {"webhook-remember-keys", T_UINT, O(webhook_remember_keys), "1000000", NULL,
     "most delivered keys remembered (about 200 bytes of memory each); the oldest go first"},
    {"rules-dir", T_STR, O(rules_dir), "", NULL,
     "directory whose *.rules files hold the marketing rules, KPI alerts and webhook "
     "endpoints (docs/RULES.md); empty: no rules. Check with `sluice check-rules`"},
};

#define NOPTS (sizeof opts / sizeof opts[0])

static void fmt(char *err, size_t errlen, const char *f, ...) __attribute__((format(printf, 3, 4)));
static void fmt(char *err, size_t errlen, const char *f, ...) {
  if (!err || !errlen) return;
  va_list ap;
  va_start(ap, f);
  vsnprintf(err, errlen, f, ap);
  va_end(ap);
}

static const opt_t *find(const char *name, size_t n) {
  for (size_t i = 0; i < NOPTS; i++)
    if (strlen(opts[i].name) == n && memcmp(opts[i].name, name, n) == 0) return &opts[i];
  return NULL;
}

static void list_clear(strlist_t *l) {
  for (size_t i = 0; i < l->n; i++) free(l->items[i]);
  free(l->items);
  l->items = NULL;
  l->n = 0;
}

static void list_add(strlist_t *l, const char *s, size_t n) {
  while (n && isspace((unsigned char)*s)) s++, n--;
  while (n && isspace((unsigned char)s[n - 1])) n--;
  if (!n) return;
  l->items = xrealloc(l->items, (l->n + 1) * sizeof *l->items);
  l->items[l->n++] = xstrndup(s, n);
}

static int parse_uint(const char *v, int sized, uint64_t *out) {
  char *end;
  errno = 0;
  if (!isdigit((unsigned char)*v)) return -1;
  unsigned long long x = strtoull(v, &end, 10);
  if (errno) return -1;
  uint64_t mul = 1;
  if (sized && *end) {
    switch (tolower((unsigned char)*end)) {
      case 'k': mul = 1024ull; break;
      case 'm': mul = 1024ull * 1024; break;
      case 'g': mul = 1024ull * 1024 * 1024; break;
      default: return -1;
    }
    end++;
    if (tolower((unsigned char)*end) == 'b') end++;
  }
  if (*end) return -1;
  if (x > UINT64_MAX / mul) return -1;
  *out = x * mul;
  return 0;
}

static int set_opt(config_t *c, const opt_t *o, const char *v, char *err, size_t errlen) {
  void *p = (char *)c + o->off;
  switch (o->type) {
    case T_STR:
      free(*(char **)p);
      *(char **)p = xstrdup(v);
      return 0;
    case T_ENUM: {
      size_t n = strlen(v);
      for (const char *ch = o->choices; ch;) {
        const char *bar = strchr(ch, '|');
        size_t len = bar ? (size_t)(bar - ch) : strlen(ch);
        if (len == n && memcmp(ch, v, n) == 0) {
          free(*(char **)p);
          *(char **)p = xstrdup(v);
          return 0;
        }
        ch = bar ? bar + 1 : NULL;
      }
      fmt(err, errlen, "%s: '%s' is not one of %s", o->name, v, o->choices);
      return -EINVAL;
    }
    case T_SIZE:
    case T_UINT:
      if (parse_uint(v, o->type == T_SIZE, (uint64_t *)p) != 0) {
        fmt(err, errlen, "%s: '%s' is not a %s", o->name, v,
            o->type == T_SIZE ? "size (e.g. 512k, 64m)" : "non-negative integer");
        return -EINVAL;
      }
      return 0;
    case T_BOOL:
      if (!strcmp(v, "true") || !strcmp(v, "yes") || !strcmp(v, "on") || !strcmp(v, "1")) {
        *(int *)p = 1;
      } else if (!strcmp(v, "false") || !strcmp(v, "no") || !strcmp(v, "off") || !strcmp(v, "0")) {
        *(int *)p = 0;
      } else {
        fmt(err, errlen, "%s: '%s' is not true or false", o->name, v);
        return -EINVAL;
      }
      return 0;
    case T_LIST: {
      strlist_t *l = p;
      list_clear(l);
      for (const char *s = v; *s;) {
        const char *comma = strchr(s, ',');
        size_t len = comma ? (size_t)(comma - s) : strlen(s);
        list_add(l, s, len);
        s += len + (comma ? 1 : 0);
      }
      return 0;
    }
  }
  return -EINVAL;
}

int config_set(config_t *c, const char *name, const char *value, char *err, size_t errlen) {
  const opt_t *o = find(name, strlen(name));
  if (!o) {
    fmt(err, errlen, "unknown option '%s' (see sluice --help)", name);
    return -ENOENT;
  }
  return set_opt(c, o, value, err, errlen);
}

void config_defaults(config_t *c) {
  memset(c, 0, sizeof *c);
  for (size_t i = 0; i < NOPTS; i++) set_opt(c, &opts[i], opts[i].def, NULL, 0);
}

void config_free(config_t *c) {
  if (!c) return;
  for (size_t i = 0; i < NOPTS; i++) {
    void *p = (char *)c + opts[i].off;
    if (opts[i].type == T_STR || opts[i].type == T_ENUM) {
      free(*(char **)p);
      *(char **)p = NULL;
    } else if (opts[i].type == T_LIST) {
      list_clear(p);
    }
  }
  config_kpi_free(&c->kpis);
}

/* ---- YAML file ---- */

int config_load_file(config_t *c, const char *path, char *err, size_t errlen) {
  struct fy_document *doc = yaml_load(path, "configuration", err, errlen);
  if (!doc) return -1;
  int rc = 0;
  struct fy_node *root = fy_document_root(doc);
  if (!root) goto done; /* empty file: nothing to set */
  if (fy_node_get_type(root) != FYNT_MAPPING) {
    fmt(err, errlen, "%s:1:1: expected a mapping of option names to values", path);
    rc = -1;
    goto done;
  }
  void *it = NULL;
  struct fy_node_pair *pair;
  while ((pair = fy_node_mapping_iterate(root, &it))) {
    struct fy_node *k = fy_node_pair_key(pair), *v = fy_node_pair_value(pair);
    int line, col;
    yaml_mark(k, &line, &col);
    size_t klen = 0;
    const char *key = fy_node_get_type(k) == FYNT_SCALAR ? fy_node_get_scalar(k, &klen) : NULL;
    if (key && klen == 4 && !memcmp(key, "kpis", 4)) {
      if (config_kpi_parse(&c->kpis, v, path, err, errlen)) {
        rc = -1;
        goto done;
      }
      continue;
    }
    const opt_t *o = key ? find(key, klen) : NULL;
    if (!o) {
      fmt(err, errlen, "%s:%d:%d: unknown option '%.*s'", path, line, col, (int)klen,
          key ? key : "?");
      rc = -1;
      goto done;
    }
    char msg[256];
    if (v && fy_node_get_type(v) == FYNT_SEQUENCE) {
      if (o->type != T_LIST) {
        fmt(err, errlen, "%s:%d:%d: %s takes one value, not a list", path, line, col, o->name);
        rc = -1;
        goto done;
      }
      strlist_t *l = (strlist_t *)((char *)c + o->off);
      list_clear(l);
      void *si = NULL;
      struct fy_node *item;
      while ((item = fy_node_sequence_iterate(v, &si))) {
        size_t ilen = 0;
        const char *s = fy_node_get_type(item) == FYNT_SCALAR ? fy_node_get_scalar(item, &ilen) : NULL;
        if (!s) {
          yaml_mark(item, &line, &col);
          fmt(err, errlen, "%s:%d:%d: %s: list items must be plain values", path, line, col, o->name);
          rc = -1;
          goto done;
        }
        list_add(l, s, ilen);
      }
      continue;
    }
    if (v && fy_node_get_type(v) != FYNT_SCALAR) {
      fmt(err, errlen, "%s:%d:%d: %s: expected a value, found a mapping", path, line, col, o->name);
      rc = -1;
      goto done;
    }
    size_t vlen = 0;
    const char *sv = v ? fy_node_get_scalar(v, &vlen) : "";
    char *val = xstrndup(sv ? sv : "", sv ? vlen : 0);
    if (v) yaml_mark(v, &line, &col);
    int r = set_opt(c, o, val, msg, sizeof msg);
    free(val);
    if (r) {
      fmt(err, errlen, "%s:%d:%d: %s", path, line, col, msg);
      rc = -1;
      goto done;
    }
  }
done:
  fy_document_destroy(doc);
  return rc;
}

/* ---- environment and flags ---- */

int config_load_env(config_t *c, char *err, size_t errlen) {
  for (size_t i = 0; i < NOPTS; i++) {
    char var[64] = "SLUICE_";
    size_t k = 7;
    for (const char *s = opts[i].name; *s && k < sizeof var - 1; s++)
      var[k++] = *s == '-' ? '_' : (char)toupper((unsigned char)*s);
    var[k] = 0;
    const char *v = getenv(var);
    if (!v) continue;
    char msg[256];
    if (set_opt(c, &opts[i], v, msg, sizeof msg)) {
      fmt(err, errlen, "environment %s: %s", var, msg);
      return -1;
    }
  }
  return 0;
}

int config_parse_args(config_t *c, int argc, char **argv, int *i, char *err, size_t errlen) {
  for (; *i < argc; (*i)++) {
    const char *a = argv[*i];
    if (strncmp(a, "--", 2) != 0 || !a[2]) return 0;
    a += 2;
    const char *eq = strchr(a, '=');
    size_t nlen = eq ? (size_t)(eq - a) : strlen(a);
    const char *val = eq ? eq + 1 : NULL;
    int is_config = nlen == 6 && memcmp(a, "config", 6) == 0;
    const opt_t *o = is_config ? NULL : find(a, nlen);
    if (!o && !is_config) {
      fmt(err, errlen, "unknown option '--%.*s' (see sluice --help)", (int)nlen, a);
      return -1;
    }
    if (!val) {
      if (o && o->type == T_BOOL) {
        val = "true";
      } else if (*i + 1 < argc) {
        val = argv[++(*i)];
      } else {
        fmt(err, errlen, "option '--%.*s' needs a value", (int)nlen, a);
        return -1;
      }
    }
    if (is_config) {
      if (config_load_file(c, val, err, errlen)) return -1;
      continue;
    }
    char msg[256];
    if (set_opt(c, o, val, msg, sizeof msg)) {
      fmt(err, errlen, "--%s", msg);
      return -1;
    }
  }
  return 0;
}

int config_split_listen(const char *listen, char host[64], int *port) {
  const char *colon;
  if (listen[0] == '[') {
    const char *close = strchr(listen, ']');
    if (!close || close[1] != ':' || (size_t)(close - listen - 1) >= 64) return -EINVAL;
    memcpy(host, listen + 1, (size_t)(close - listen - 1));
    host[close - listen - 1] = 0;
    colon = close + 1;
  } else {
    colon = strrchr(listen, ':');
    if (!colon || (size_t)(colon - listen) >= 64) return -EINVAL;
    memcpy(host, listen, (size_t)(colon - listen));
    host[colon - listen] = 0;
  }
  char *end;
  long p = strtol(colon + 1, &end, 10);
  if (!colon[1] || *end || p < 0 || p > 65535) return -EINVAL;
  if (!host[0]) strcpy(host, "0.0.0.0");
  *port = (int)p;
  return 0;
}

int config_validate(const config_t *c, char *err, size_t errlen) {
  char host[64];
  int port;
  if (config_split_listen(c->listen, host, &port)) {
    fmt(err, errlen, "listen: '%s' is not host:port", c->listen);
    return -1;
  }
  if (!c->data_dir[0]) {
    fmt(err, errlen, "data-dir: must not be empty");
    return -1;
  }
  if (c->max_body_bytes < 1024 || c->max_event_bytes < 256 || c->max_header_bytes < 1024) {
    fmt(err, errlen, "max-body-bytes, max-event-bytes and max-header-bytes must be at least "
                     "1k, 256 and 1k");
    return -1;
  }
  if (c->max_batch_events < 1) {
    fmt(err, errlen, "max-batch-events: must be at least 1");
    return -1;
  }
  if (c->commit_window_us > 100000) {
    fmt(err, errlen, "commit-window-us: must be at most 100000 (0.1 s)");
    return -1;
  }
  if (c->segment_bytes < 4096) {
    fmt(err, errlen, "segment-bytes: must be at least 4k");
    return -1;
  }
  const char *keys[] = {c->write_key, c->read_key, c->admin_key};
  for (int i = 0; i < 3; i++)
    for (int j = i + 1; j < 3; j++)
      if (keys[i][0] && !strcmp(keys[i], keys[j])) {
        fmt(err, errlen, "write-key, read-key and admin-key must differ");
        return -1;
      }
  if (c->tracked_events.n > 8) {
    fmt(err, errlen, "tracked-events: at most 8 names (got %zu)", c->tracked_events.n);
    return -1;
  }
  if (c->scan_concurrency < 1 || c->scan_max_records < 1 || c->scan_timeout_ms < 1 ||
      c->scan_max_groups < 1 || c->scan_exact_uniques < 1 || c->scan_max_memory < (1u << 20)) {
    fmt(err, errlen, "scan-concurrency, scan-max-records, scan-timeout-ms, scan-max-groups and "
                     "scan-exact-uniques must be at least 1, scan-max-memory at least 1m");
    return -1;
  }
  if (c->scan_timeout_ms > 3600000 || c->scan_late_s > 366 * 86400) {
    fmt(err, errlen, "scan-timeout-ms may be at most 3600000 (1 h), scan-late-s at most 31622400 "
                     "(366 days)");
    return -1;
  }
  if (c->checkpoint_interval_s < 1 || c->session_timeout_s < 1) {
    fmt(err, errlen, "checkpoint-interval-s and session-timeout-s must be at least 1");
    return -1;
  }
  if (c->max_profiles < 16 || c->max_profiles > PROFILE_MAX_BOUND ||
      c->profile_spill_max_ids < 16 || c->profile_spill_max_ids > (1ull << 32)) {
    fmt(err, errlen, "max-profiles must be 16..%u and profile-spill-max-ids 16..4294967296",
        PROFILE_MAX_BOUND);
    return -1;
  }
  if (c->rollup_max_bytes && c->rollup_max_bytes < ((uint64_t)1 << 20)) {
    fmt(err, errlen, "rollup-max-bytes: must be 0 (no bound) or at least 1m");
    return -1;
  }
  return 0;
}

void config_print_help(void) {
  printf("options (config file key = long option; environment SLUICE_NAME):\n");
  for (size_t i = 0; i < NOPTS; i++) {
    printf("  --%-24s %s", opts[i].name, opts[i].help);
    if (opts[i].def[0]) printf(" [%s]", opts[i].def);
    printf("\n");
  }
}

void config_print_markdown(void) {
  printf("# Configuration\n\n"
         "Generated by `sluice config-doc` from the option table in `src/config.h`; a test\n"
         "keeps this file equal to it.\n\n"
         "Every option can be set three ways, later ones winning: a YAML config file\n"
         "(`--config FILE` or `SLUICE_CONFIG=FILE`) whose keys are the option names, an\n"
         "environment variable `SLUICE_NAME` (upper case, `-` as `_`), or a flag `--name=value`.\n"
         "Sizes take `k`, `m`, `g` suffixes (powers of 1024); lists are YAML sequences in the file\n"
         "and comma-separated in the environment and on the command line.\n"
         "`sluice check-config` validates a configuration and reports `file:line:col: message`.\n"
         "A config file must be UTF-8 text of at most 4 MiB.\n\n"
         "| option | default | meaning |\n|---|---|---|\n");
  for (size_t i = 0; i < NOPTS; i++)
    printf("| `%s` | %s%s%s | %s |\n", opts[i].name, opts[i].def[0] ? "`" : "",
           opts[i].def[0] ? opts[i].def : "(empty)", opts[i].def[0] ? "`" : "", opts[i].help);
  config_kpi_print_markdown();
}
