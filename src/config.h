/* config: every setting of sluice, from one option table.
 *
 * The same table drives the config file, the command line, the environment, --help and
 * docs/CONFIG.md, so the three always agree: a config file key is the long option name
 * (`max-body-bytes: 512k`), the flag is `--max-body-bytes=512k` (or `--max-body-bytes 512k`),
 * and the environment variable is SLUICE_MAX_BODY_BYTES. Later sources win:
 * defaults < config file < environment < flags.
 *
 * The config file is YAML (libfyaml): a mapping of option names to scalars, or sequences
 * for list options. Unknown keys, bad values and bad YAML are reported as
 * "file:line:col: message". Sizes accept k/m/g suffixes (powers of 1024). */
#ifndef SLUICE_CONFIG_H
#define SLUICE_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "config_kpi.h"

typedef struct strlist {
  char **items; /* owned */
  size_t n;
} strlist_t;

typedef struct config {
  /* serve */
  char *listen;              /* host:port */
  char *data_dir;
  char *log_level;
  /* keys */
  char *write_key, *read_key, *admin_key;
  /* log */
  char *fsync;               /* always | interval | off */
  uint64_t fsync_interval_ms;
  uint64_t commit_window_us;  /* fsync=always: how long a group may fill under load */
  uint64_t segment_bytes;
  uint64_t log_cache_bytes;
  uint64_t max_queue_bytes;  /* appended but not yet durable: past it, 503 */
  uint64_t retry_after_s;
  /* HTTP limits */
  uint64_t max_body_bytes;
  uint64_t max_decompressed_bytes;
  uint64_t max_event_bytes;
  uint64_t max_batch_events;
  uint64_t max_header_bytes;
  uint64_t header_timeout_ms, body_timeout_ms, idle_timeout_ms;
  uint64_t max_connections;
  uint64_t rate_limit_per_ip, rate_limit_burst; /* ingestion requests/s per client; 0 = off */
  /* browsers and e-mail */
  strlist_t cors_origins;    /* "*" allows any origin */
  strlist_t redirect_hosts;  /* click redirect allowlist: "shop.example", "*.example.com" */
  /* privacy / proxies */
  strlist_t trusted_proxies; /* peers whose X-Forwarded-For is believed */
  int keep_full_ip;          /* 0: anonymise IPv4 /24, IPv6 /48 before disk */
  int pseudonymise;          /* replace identifying fields by keyed HMAC-SHA256 */
  strlist_t pseudonymise_fields;
  char *consent_default;     /* granted | denied: events without consent information */
  char *without_analytics_consent; /* drop | anonymous */
  strlist_t analytics_categories, marketing_categories;
  /* enrichment */
  char *geo_db;              /* .mmdb path; "" = default next to the binary; "off" */
  char *ua_regexes;          /* uap-core regexes.yaml; "off" disables UA parsing */
  uint64_t ua_cache_entries;
  /* retention */
  uint64_t retention_days, bad_retention_days;
  /* dedup */
  uint64_t dedup_window_events, dedup_window_s;
  /* process */
  uint64_t checkpoint_interval_s;
  uint64_t rollup_max_bytes;
  strlist_t tracked_events;  /* profile counters, at most 8 */
  char *conversion_event;
  uint64_t session_timeout_s;
  uint64_t max_profiles;
  uint64_t profile_spill_max_ids;
  /* log-scan queries */
  uint64_t scan_concurrency, scan_max_records, scan_max_bytes, scan_timeout_ms;
  uint64_t scan_max_memory, scan_max_groups, scan_exact_uniques, scan_late_s;
  /* act: offers into the page */
  uint64_t offers_token_ttl_s;
  uint64_t offers_max_age_ms;  /* offers decided longer ago are skipped (replayed) */
  /* act: webhooks */
  strlist_t webhook_endpoints; /* "NAME URL secret=S [timeout-ms=N]" */
  uint64_t webhook_timeout_ms;
  uint64_t webhook_max_attempts;
  uint64_t webhook_retry_base_ms, webhook_retry_max_ms;
  uint64_t webhook_max_in_flight;
  uint64_t webhook_outbox_max_bytes;
  uint64_t webhook_remember_s;  /* delivered keys kept this long (never delivered twice) */
  uint64_t webhook_remember_keys; /* and at most this many */
  /* decide */
  char *rules_dir;           /* *.rules files (docs/RULES.md); "" = no rules */
  config_kpis_t kpis;        /* the `kpis` section (config file only; config_kpi.h) */
} config_t;

/* Fill c with the built-in defaults. */
void config_defaults(config_t *c);

/* Apply the YAML file at path. Returns 0, or -1 with "path:line:col: message" in err. */
int config_load_file(config_t *c, const char *path, char *err, size_t errlen);

/* Apply SLUICE_* environment variables. Returns 0 or -1 with a message in err. */
int config_load_env(config_t *c, char *err, size_t errlen);

/* Set one option by long name from text (as the file, the environment and flags do).
 * Returns 0, -ENOENT for an unknown name, -EINVAL for a bad value (message in err). */
int config_set(config_t *c, const char *name, const char *value, char *err, size_t errlen);

/* Parse argv from index *i on: consume every --name[=value] option (also `--config FILE`,
 * which is applied in order), stopping at the first non-option. Returns 0 or -1 with a
 * message in err. *i is left at the first unconsumed argument. */
int config_parse_args(config_t *c, int argc, char **argv, int *i, char *err, size_t errlen);

/* Cross-field checks after loading (listen address parses, fsync mode known, ...).
 * Returns 0 or -1 with a message. */
int config_validate(const config_t *c, char *err, size_t errlen);

/* Split "host:port" / "[v6]:port". Returns 0 or -EINVAL. host must hold 64 bytes. */
int config_split_listen(const char *listen, char host[64], int *port);

/* Print the option table (name, default, help) for --help. */
void config_print_help(void);
/* Print the option table as the Markdown of docs/CONFIG.md (a test keeps them equal). */
void config_print_markdown(void);

/* Free everything the config owns. NULL-safe. */
void config_free(config_t *c);

#endif
