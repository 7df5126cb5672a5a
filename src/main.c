/* sluice: one binary — argv and config in, the chosen command out.
 *
 *   sluice serve          collect -> enrich -> log, with the HTTP API (default command)
 *   sluice check-config   load and validate the configuration, print what is wrong
 *   sluice check-rules    compile rule files (or rules-dir) and report file:line:col errors
 *   sluice export         write the log (or a time/offset range) as NDJSON to stdout
 *   sluice forget ID      erase a user (see users.h); the server must be stopped
 *   sluice export-user ID write all events of a user as NDJSON to stdout
 *   sluice replay         rebuild rollups and profiles from the whole log (server stopped)
 *   sluice redeliver [KEY] requeue webhook dead letters (all, or one) in the running server
 *   sluice version
 *
 * Settings come from the option table in config.h: --config FILE, SLUICE_* environment
 * variables and --long-option flags, in that order of precedence (flags win). */
#include <errno.h>
#include <sys/resource.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <sys/stat.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "config.h"
#include "decide.h"
#include "keys.h"
#include "log.h"
#include "privacy.h"
#include "process.h"
#include "rules.h"
#include "users.h"
#include "serve.h"
#include "util/clock.h"

static void usage(FILE *f) {
  fprintf(f,
          "usage: sluice [serve|check-config|export|version] [--config FILE] [--option=value ...]\n"
          "\n"
          "  serve          start the server (default)\n"
          "  check-config   validate the configuration and exit (0 when valid)\n"
          "  check-rules [PATH ...]  compile rule files or directories (default: rules-dir)\n"
          "                 and print what is wrong as file:line:col (0 when valid)\n"
          "  export         write events as NDJSON to stdout; export options:\n"
          "                   --since=ISO8601 --until=ISO8601   receive-time range\n"
          "                   --from-offset=N --to-offset=N      offset range (to exclusive)\n"
          "                   --bad                              the bad-event log instead\n"
          "  forget ID      erase every event of user ID (stop the server first, or use\n"
          "                 DELETE /v1/users/ID with the admin key while it runs)\n"
          "  export-user ID write every event of user ID as NDJSON to stdout\n"
          "  replay         delete the processing snapshot and rebuild rollups and profiles\n"
          "                 from the whole log (stop the server first)\n"
          "  redeliver [KEY] requeue the webhook dead letters (all, or the one with\n"
          "                 idempotency key KEY) in the running server at --listen\n"
          "  version        print the version\n\n");
  config_print_help();
}

typedef struct export_args {
  int64_t since_us, until_us;
  uint64_t from, to;
  int bad;
} export_args_t;

/* Take export's own flags out of argv (compacting it). Returns 0 or -1 on a bad value. */
static int take_export_args(int *argc, char **argv, export_args_t *ea) {
  int out = 0;
  for (int i = 0; i < *argc; i++) {
    const char *a = argv[i];
    const char *v = strchr(a, '=');
    v = v ? v + 1 : "";
    int ok = 1;
    if (!strncmp(a, "--since=", 8)) {
      ok = clock_parse_iso(v, strlen(v), &ea->since_us) == 0;
    } else if (!strncmp(a, "--until=", 8)) {
      ok = clock_parse_iso(v, strlen(v), &ea->until_us) == 0;
    } else if (!strncmp(a, "--from-offset=", 14)) {
      char *end;
      ea->from = strtoull(v, &end, 10);
      ok = *v && !*end;
    } else if (!strncmp(a, "--to-offset=", 12)) {
      char *end;
      ea->to = strtoull(v, &end, 10);
      ok = *v && !*end;
    } else if (!strcmp(a, "--bad")) {
      ea->bad = 1;
    } else {
      argv[out++] = argv[i];
      continue;
    }
    if (!ok) {
      fprintf(stderr, "sluice export: bad value in '%s'\n", a);
      return -1;
    }
  }
  *argc = out;
  return 0;
}

/* forget / export-user: open both logs (writable for forget, with a loop of our own). */
static int run_user(const config_t *cfg, const char *id, int forget) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  log_opts_t o;
  char path[4096], err[1024];
  log_t *logs[2] = {NULL, NULL};
  privacy_t *priv = NULL;
  users_t *u = NULL;
  int rc = 1;
  for (int i = 0; i < 2; i++) {
    serve_log_opts(cfg, i ? "bad" : "log", forget ? &loop : NULL, &o, path, sizeof path);
    if (!(logs[i] = log_open(&o, NULL, err, sizeof err))) {
      fprintf(stderr, "sluice: %s%s\n", err,
              forget ? " (if the server is running, use DELETE /v1/users/ID with the admin key)" : "");
      goto out;
    }
  }
  if (!(priv = privacy_new(cfg, err, sizeof err))) {
    fprintf(stderr, "sluice: %s\n", err);
    goto out;
  }
  u = users_new(cfg, &loop, logs[0], logs[1], priv);
  if (forget) {
    users_forget_result_t res;
    if (users_forget(u, id, "cli", &res, err, sizeof err) != 0) {
      fprintf(stderr, "sluice forget: %s\n", err);
      goto out;
    }
    printf("forgot %llu events and %llu bad-event records of %zu ids in %llu segments "
           "(audit request %s)\n",
           (unsigned long long)res.events, (unsigned long long)res.bad_records, res.ids,
           (unsigned long long)res.segments, res.request_id);
    /* Rollups and profiles derived from the forgotten events are rebuilt from the
     * rewritten log at the next start: the snapshot may quote their values. */
    snprintf(path, sizeof path, "%s/state", cfg->data_dir);
    process_remove_snapshot(path);
  } else {
    buf_t b = BUF_INIT;
    size_t n;
    if (users_export(u, id, &b, &n, err, sizeof err) != 0) {
      fprintf(stderr, "sluice export-user: %s\n", err);
      buf_free(&b);
      goto out;
    }
    fwrite(b.data ? b.data : "", 1, b.len, stdout);
    fprintf(stderr, "sluice export-user: %zu events\n", n);
    buf_free(&b);
  }
  rc = fflush(stdout) != 0;
out:
  users_free(u);
  privacy_free(priv);
  log_close(logs[0]);
  log_close(logs[1]);
  uv_run(&loop, UV_RUN_DEFAULT);
  uv_loop_close(&loop);
  return rc;
}

static int run_export(const config_t *cfg, const export_args_t *ea) {
  log_opts_t o;
  char path[4096], err[512];
  serve_log_opts(cfg, ea->bad ? "bad" : "log", NULL, &o, path, sizeof path);
  log_t *log = log_open(&o, NULL, err, sizeof err);
  if (!log) {
    fprintf(stderr, "sluice export: %s\n", err);
    return 1;
  }
  log_reader_t *r = log_reader_open(log, ea->from, err, sizeof err);
  if (!r) {
    fprintf(stderr, "sluice export: %s\n", err);
    log_close(log);
    return 1;
  }
  int rc = 0;
  if (ea->since_us && log_reader_seek_time(r, ea->since_us) != 0) rc = 1;
  log_record_t rec;
  int n;
  uint64_t count = 0, unreadable = 0;
  /* Damage is reported and passed over: the rest of the log is still worth having. */
  while (!rc && ((n = log_reader_next(r, &rec)) == 1 || n == -EBADMSG)) {
    if (n == -EBADMSG) {
      log_damage_t d;
      log_reader_damage(r, &d);
      if (d.to == UINT64_MAX) break;
      fprintf(stderr,
              "sluice export: segment %s is damaged at byte %llu: records %llu..%llu are "
              "unreadable and were skipped\n",
              d.segment, (unsigned long long)d.pos, (unsigned long long)d.from,
              (unsigned long long)d.to - 1);
      unreadable += d.to - d.from;
      continue;
    }
    if (ea->to && rec.offset >= ea->to) break;
    if (ea->until_us && rec.time_us >= ea->until_us) break;
    if (rec.time_us < ea->since_us || rec.offset < ea->from) continue;
    fwrite(rec.value, 1, rec.value_len, stdout);
    putchar('\n');
    count++;
  }
  if (!rc && n < 0) {
    fprintf(stderr, "sluice export: read error at offset %llu: %s\n",
            (unsigned long long)log_reader_offset(r), strerror(-n));
    rc = 1;
  }
  if (fflush(stdout) != 0) rc = 1;
  fprintf(stderr, "sluice export: %llu events\n", (unsigned long long)count);
  if (unreadable) {
    fprintf(stderr, "sluice export: %llu damaged records skipped\n",
            (unsigned long long)unreadable);
    if (!rc) rc = 3;
  }
  log_reader_close(r);
  log_close(log);
  return rc;
}

/* Compile one PATH: a directory of *.rules files or a single file. */
static rules_set_t *compile_path(const char *path, char *err, size_t errlen) {
  struct stat st;
  if (stat(path, &st) != 0) {
    snprintf(err, errlen, "%s: %s", path, strerror(errno));
    return NULL;
  }
  if (S_ISDIR(st.st_mode)) return rules_set_load_dir(path, err, errlen);
  FILE *f = fopen(path, "rb");
  if (!f) {
    snprintf(err, errlen, "%s: %s", path, strerror(errno));
    return NULL;
  }
  buf_t b = BUF_INIT;
  char chunk[65536];
  size_t n;
  while ((n = fread(chunk, 1, sizeof chunk, f)) > 0 && b.len <= RULES_MAX_FILE_BYTES)
    buf_append(&b, chunk, n);
  fclose(f);
  rules_src_t src = {path, b.data ? b.data : "", b.len};
  rules_set_t *s = rules_set_parse(&src, 1, err, errlen);
  buf_free(&b);
  return s;
}

/* check-rules: compile each path (default: rules-dir) and print a summary or the error. */
static int run_check_rules(const config_t *cfg, char **paths, int npaths) {
  const char *def[1] = {cfg->rules_dir};
  if (!npaths) {
    if (!cfg->rules_dir || !*cfg->rules_dir) {
      fprintf(stderr, "sluice check-rules: give a file or directory, or set rules-dir\n");
      return 2;
    }
    paths = (char **)def;
    npaths = 1;
  }
  int rc = 0;
  for (int i = 0; i < npaths; i++) {
    char err[1024];
    rules_set_t *s = compile_path(paths[i], err, sizeof err);
    if (!s) {
      fprintf(stderr, "%s\n", err);
      rc = 1;
      continue;
    }
    printf("%s: %zu rules, %zu alerts, %zu webhooks\n", paths[i], rules_set_rules(s),
           rules_set_alerts(s), rules_set_webhooks(s));
    rules_set_free(s);
  }
  return rc;
}

/* replay: delete the snapshot, process the whole log offline, write a new snapshot. */
/* CPU seconds (user + system) this process has used so far. */
static double cpu_seconds(void) {
  struct rusage u;
  if (getrusage(RUSAGE_SELF, &u) != 0) return 0;
  return (double)(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         (double)(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

static int run_replay(const config_t *cfg) {
  log_opts_t o;
  char path[4096], state[4096], err[512];
  serve_log_opts(cfg, "log", NULL, &o, path, sizeof path);
  log_t *log = log_open(&o, NULL, err, sizeof err);
  if (!log) {
    fprintf(stderr, "sluice replay: %s\n", err);
    return 1;
  }
  snprintf(state, sizeof state, "%s/state", cfg->data_dir);
  int rc = process_remove_snapshot(state);
  if (rc) {
    fprintf(stderr, "sluice replay: cannot delete the snapshot: %s\n", strerror(-rc));
    log_close(log);
    return 1;
  }
  /* The rules engine with the configured rules, as `sluice serve` runs it (its actions go
   * nowhere): the snapshot then holds the engine's state, and serve can load it. */
  mkdir(state, 0700);
  decide_opts_t dopt = {.rules_dir = cfg->rules_dir, .state_dir = state};
  decide_t *decide = decide_new(&dopt, err, sizeof err);
  if (!decide) {
    fprintf(stderr, "sluice replay: cannot load the rules: %s\n", err);
    log_close(log);
    return 1;
  }
  process_opts_t po = {
      .log = log,
      .state_dir = state,
      .decide = decide,
      .tracked = (const char *const *)cfg->tracked_events.items,
      .ntracked = cfg->tracked_events.n,
      .conversion_event = cfg->conversion_event,
      .session_timeout_s = cfg->session_timeout_s,
      .max_profiles = cfg->max_profiles,
      .spill_max_ids = cfg->profile_spill_max_ids,
      .kpis = &cfg->kpis,
      .rollup_max_bytes = cfg->rollup_max_bytes,
  };
  process_t *p = process_new(&po, err, sizeof err);
  if (!p) {
    fprintf(stderr, "sluice replay: %s\n", err);
    decide_free(decide);
    log_close(log);
    return 1;
  }
  int64_t t0 = clock_mono_us();
  double c0 = cpu_seconds();
  long n = process_run_until_caught_up(p);
  double secs = (double)(clock_mono_us() - t0) / 1e6, cpu = cpu_seconds() - c0;
  rc = 0;
  if (n < 0) {
    fprintf(stderr, "sluice replay: read error: %s\n", strerror((int)-n));
    rc = 1;
  } else {
    process_stats_t st;
    process_stats(p, &st);
    int64_t t1 = clock_mono_us();
    double c1 = cpu_seconds();
    int wr = process_checkpoint_sync(p);
    double snap_cpu = cpu_seconds() - c1;
    if (wr) {
      fprintf(stderr, "sluice replay: cannot write the snapshot: %s\n", strerror(-wr));
      rc = 1;
    }
    printf("replayed %ld events in %.3f s: %.0f events/s (undecodable %llu, outside the "
           "rollup windows %llu); snapshot written in %.3f s\n",
           n, secs, secs > 0 ? (double)n / secs : 0.0, (unsigned long long)st.undecodable,
           (unsigned long long)st.rejected, (double)(clock_mono_us() - t1) / 1e6);
    printf("cpu (user + sys): reading and processing %.3f s, %.0f events/s per core "
           "(%.2f us per event); writing the snapshot %.3f s\n",
           cpu, cpu > 0 ? (double)n / cpu : 0.0, n > 0 ? cpu * 1e6 / (double)n : 0.0, snap_cpu);
    printf("profiles %llu, %.1f bytes per profile (store heap / profiles)\n",
           (unsigned long long)st.profiles,
           st.profiles ? (double)st.profile_bytes / (double)st.profiles : 0.0);
    if (st.spilled || st.dropped)
      printf("profiles on disk %llu (%llu ids, %llu bytes; index %llu bytes), dropped %llu\n",
             (unsigned long long)st.spilled, (unsigned long long)st.spill_ids,
             (unsigned long long)st.spill_bytes, (unsigned long long)st.spill_index_bytes,
             (unsigned long long)st.dropped);
  }
  process_free(p);
  decide_free(decide);
  log_close(log);
  return rc;
}

static size_t print_body(char *p, size_t size, size_t n, void *ud) {
  fwrite(p, size, n, stdout);
  return size * n;
}

/* Ask the running server (at listen, admin key from the config or the data dir) to
 * requeue dead letters: it owns the outbox journal while it runs. */
static int run_redeliver(config_t *cfg, const char *key) {
  char err[512], host[64], url[256], auth[600], body[128];
  int port;
  if (keys_resolve(cfg, NULL, err, sizeof err) != 0) {
    fprintf(stderr, "sluice redeliver: %s\n", err);
    return 1;
  }
  config_split_listen(cfg->listen, host, &port);
  int v6 = strchr(host, ':') != NULL;
  snprintf(url, sizeof url, "http://%s%s%s:%d/v1/webhooks/redeliver", v6 ? "[" : "",
           !strcmp(host, "0.0.0.0") ? "127.0.0.1" : !strcmp(host, "::") ? "::1" : host,
           v6 ? "]" : "", port);
  snprintf(auth, sizeof auth, "Authorization: Bearer %s", cfg->admin_key);
  if (key) snprintf(body, sizeof body, "{\"key\":\"%.40s\"}", key);
  else snprintf(body, sizeof body, "{\"all\":true}");
  CURL *c = curl_easy_init();
  struct curl_slist *h = curl_slist_append(NULL, auth);
  h = curl_slist_append(h, "Content-Type: application/json");
  curl_easy_setopt(c, CURLOPT_URL, url);
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
  curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 10000L);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, print_body);
  CURLcode res = curl_easy_perform(c);
  long code = 0;
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
  curl_slist_free_all(h);
  curl_easy_cleanup(c);
  if (res != CURLE_OK) {
    fprintf(stderr, "sluice redeliver: %s: %s (is `sluice serve` running with this "
            "--listen?)\n", url, curl_easy_strerror(res));
    return 1;
  }
  printf("\n");
  return code == 200 ? 0 : 1;
}

int main(int argc, char **argv) {
#ifdef __GLIBC__
  /* Blocks of 1 MiB or more (snapshot buffers, big tables) come from mmap and go back to
   * the system when freed. glibc's default threshold rises to the largest block freed (up
   * to 32 MiB) and its trim threshold to twice that, so each checkpoint's buffer stayed
   * resident as free heap in a pool thread's arena (docs/RELIABILITY.md "Soak"). */
  mallopt(M_MMAP_THRESHOLD, 1 << 20);
#endif
  const char *cmd = "serve";
  int i = 1;
  if (argc > 1 && argv[1][0] != '-') {
    cmd = argv[1];
    i = 2;
  }
  if (!strcmp(cmd, "version") || (argc > 1 && !strcmp(argv[1], "--version"))) {
    printf("sluice %s\n", SLUICE_VERSION);
    return 0;
  }
  if (!strcmp(cmd, "config-doc")) {
    config_print_markdown();
    return 0;
  }
  if (!strcmp(cmd, "help") || (argc > 1 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")))) {
    usage(stdout);
    return 0;
  }
  int is_serve = !strcmp(cmd, "serve"), is_check = !strcmp(cmd, "check-config"),
      is_export = !strcmp(cmd, "export"), is_forget = !strcmp(cmd, "forget"),
      is_export_user = !strcmp(cmd, "export-user"), is_replay = !strcmp(cmd, "replay"),
      is_redeliver = !strcmp(cmd, "redeliver"), is_check_rules = !strcmp(cmd, "check-rules");
  const char *user_id = NULL, *redeliver_key = NULL;
  if (is_redeliver && i < argc && argv[i][0] != '-') redeliver_key = argv[i++];
  if (is_forget || is_export_user) {
    if (i >= argc || argv[i][0] == '-' || !argv[i][0]) {
      fprintf(stderr, "sluice %s: give the user id: sluice %s ID [--options]\n", cmd, cmd);
      return 2;
    }
    user_id = argv[i++];
  }
  char **rule_paths = argv + i;
  int nrule_paths = 0;
  while (is_check_rules && i < argc && argv[i][0] != '-') i++, nrule_paths++;
  if (!is_serve && !is_check && !is_export && !is_replay && !is_redeliver && !is_check_rules &&
      !user_id) {
    fprintf(stderr, "sluice: unknown command '%s'\n\n", cmd);
    usage(stderr);
    return 2;
  }

  export_args_t ea = {0};
  int nargs = argc - i;
  char **args = argv + i;
  if (is_export && take_export_args(&nargs, args, &ea) != 0) return 2;

  config_t cfg;
  char err[1024];
  config_defaults(&cfg);
  const char *file = getenv("SLUICE_CONFIG");
  int rc = 0, k = 0;
  if (file && *file && config_load_file(&cfg, file, err, sizeof err) != 0) goto bad;
  if (config_load_env(&cfg, err, sizeof err) != 0) goto bad;
  if (config_parse_args(&cfg, nargs, args, &k, err, sizeof err) != 0) goto bad;
  if (k < nargs) {
    snprintf(err, sizeof err, "unexpected argument '%s'", args[k]);
    goto bad;
  }
  if (config_validate(&cfg, err, sizeof err) != 0) goto bad;

  if (is_check && cfg.rules_dir && *cfg.rules_dir) {
    rules_set_t *rs = rules_set_load_dir(cfg.rules_dir, err, sizeof err);
    if (!rs) goto bad;
    rules_set_free(rs);
  }
  if (is_check_rules) {
    rc = run_check_rules(&cfg, rule_paths, nrule_paths);
  } else if (is_check) {
    printf("configuration is valid\n");
  } else if (is_export) {
    rc = run_export(&cfg, &ea);
  } else if (is_replay) {
    rc = run_replay(&cfg);
  } else if (is_redeliver) {
    rc = run_redeliver(&cfg, redeliver_key);
  } else if (user_id) {
    rc = run_user(&cfg, user_id, is_forget);
  } else {
    rc = serve_run(&cfg);
  }
  config_free(&cfg);
  return rc;
bad:
  fprintf(stderr, "sluice %s: %s\n", cmd, err);
  config_free(&cfg);
  return 2;
}
