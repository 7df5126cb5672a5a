/* Unit tests for config (file, environment, flags, errors with file:line:col) and keys. */
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "keys.h"

#include "test.h"

static char dir[] = "/tmp/sluice-test-config-XXXXXX";

static const char *write_file(const char *name, const char *text) {
  static char path[256];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  FILE *f = fopen(path, "w");
  fputs(text, f);
  fclose(f);
  return path;
}

TEST(defaults) {
  config_t c;
  config_defaults(&c);
  CHECK_STR(c.listen, "127.0.0.1:8080");
  CHECK_STR(c.data_dir, "./sluice-data");
  CHECK_STR(c.fsync, "always");
  CHECK_INT(c.commit_window_us, 400);
  CHECK_INT(c.max_body_bytes, 500 * 1024);
  CHECK_INT(c.max_event_bytes, 32 * 1024);
  CHECK_INT(c.keep_full_ip, 0);
  char err[256];
  CHECK_INT(config_validate(&c, err, sizeof err), 0);
  config_free(&c);
}

TEST(file_values_and_lists) {
  const char *p = write_file("ok.yaml",
                             "# comment\nlisten: 0.0.0.0:9000\nmax-body-bytes: 1m\nfsync: interval\n"
                             "cors-origins:\n  - https://shop.example\n  - https://www.shop.example\n"
                             "redirect-hosts: [\"shop.example\", \"*.cdn.example\"]\nkeep-full-ip: true\n");
  config_t c;
  char err[256] = "";
  config_defaults(&c);
  CHECK_INT(config_load_file(&c, p, err, sizeof err), 0);
  CHECK_STR(c.listen, "0.0.0.0:9000");
  CHECK_INT(c.max_body_bytes, 1024 * 1024);
  CHECK_STR(c.fsync, "interval");
  CHECK_INT(c.cors_origins.n, 2);
  CHECK_STR(c.cors_origins.items[1], "https://www.shop.example");
  CHECK_INT(c.redirect_hosts.n, 2);
  CHECK_STR(c.redirect_hosts.items[1], "*.cdn.example");
  CHECK_INT(c.keep_full_ip, 1);
  config_free(&c);
}

TEST(file_errors_name_the_place) {
  static const struct {
    const char *text, *expect;
  } cases[] = {
      {"listen: a:1\nbogus-key: 3\n", "bad.yaml:2:1: unknown option 'bogus-key'"},
      {"max-body-bytes: lots\n", "bad.yaml:1:17: max-body-bytes: 'lots' is not a size"},
      {"fsync: sometimes\n", "bad.yaml:1:8: fsync: 'sometimes' is not one of always|interval|off"},
      {"listen: [a, b]\n", "bad.yaml:1:1: listen takes one value, not a list"},
      {"listen: a\n  b: c: d\n", "bad.yaml:2:"},
      {"- a\n- b\n", "bad.yaml:1:1: expected a mapping"},
      /* the kpis section (config_kpi.h) */
      /* libfyaml 0.7.12 hangs on this one: refused before it is parsed */
      {"%\xfe\xff\x8f\xfe\xff\xff\xff\xff\xff", "bad.yaml:1:2: not UTF-8 text (byte 0xfe)"},
      {"listen: \"a\"\n# caf\xc3\xa9 \xed\xa0\x80\n", "bad.yaml:2:8: not UTF-8 text (byte 0xed)"},
      {"kpis: 3\n", "bad.yaml:1:7: kpis: expected a list"},
      {"kpis:\n  - 3\n", "bad.yaml:2:5: kpis: each KPI must be a mapping"},
      {"kpis:\n  - name: x\n", "bad.yaml:2:5: kpis: KPI 'x' needs a numerator"},
      {"kpis:\n  - numerator: {}\n", "bad.yaml:2:5: kpis: a KPI needs a name"},
      {"kpis:\n  - name: Bad-Name\n", "bad.yaml:2:11: kpis: name must be"},
      {"kpis:\n  - name: revenue\n", "bad.yaml:2:11: kpis: 'revenue' is a built-in KPI"},
      {"kpis:\n  - name: a\n    numerator: {event: x}\n  - name: a\n",
       "bad.yaml:4:11: kpis: KPI 'a' is defined twice"},
      {"kpis:\n  - name: a\n    colour: red\n", "bad.yaml:3:5: kpis: unknown key"},
      {"kpis:\n  - name: a\n    format: stars\n", "bad.yaml:3:13: kpis: format must be"},
      {"kpis:\n  - name: a\n    numerator: {metric: avg}\n", "bad.yaml:3:25: kpis: metric must be"},
      {"kpis:\n  - name: a\n    numerator: {filter: {os: x}}\n",
       "bad.yaml:3:26: kpis: unknown filter dimension"},
      {"kpis:\n  - name: a\n    numerator: {metric: count, property: x}\n",
       "bad.yaml:3:17: kpis: property is only for metric: sum"},
      {"kpis:\n  - name: a\n    numerator: {metric: sum, property: a.b}\n",
       "bad.yaml:3:40: kpis: property must be a plain name"},
      {"kpis:\n  - name: a\n    numerator: [1]\n", "bad.yaml:3:17: kpis: numerator and"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    const char *p = write_file("bad.yaml", cases[i].text);
    config_t c;
    char err[512] = "";
    config_defaults(&c);
    int rc = config_load_file(&c, p, err, sizeof err);
    const char *base = strstr(err, "bad.yaml");
    if (rc == 0 || !base || strncmp(base, cases[i].expect, strlen(cases[i].expect)) != 0)
      FAILF("case %zu: rc %d err '%s', expected '%s...'", i, rc, err, cases[i].expect);
    CHECK_INT(c.kpis.n, 0);
    config_free(&c);
  }
  config_t c;
  char err[256] = "";
  config_defaults(&c);
  CHECK(config_load_file(&c, "/nonexistent/sluice.yaml", err, sizeof err) != 0);
  CHECK(strstr(err, "/nonexistent/sluice.yaml") != NULL);
  config_free(&c);
  /* A file over the size limit is refused before it is parsed. */
  size_t big = ((size_t)4 << 20) + 1;
  char *text = malloc(big + 1);
  memset(text, '#', big);
  text[big] = '\0';
  const char *p = write_file("big.yaml", text);
  free(text);
  config_defaults(&c);
  CHECK(config_load_file(&c, p, err, sizeof err) != 0);
  CHECK(strstr(err, "big.yaml: the configuration is 4194305 bytes, more than the limit") != NULL);
  config_free(&c);
}

TEST(kpis_section) {
  const char *p = write_file("kpis.yaml",
                             "kpis:\n"
                             "  - name: add_to_cart_rate\n"
                             "    format: percent\n"
                             "    numerator: {event: Product Added, metric: uniques}\n"
                             "    denominator: {event: Product Viewed, metric: uniques}\n"
                             "  - name: google_revenue\n"
                             "    format: currency\n"
                             "    numerator:\n"
                             "      event: Order Completed\n"
                             "      metric: sum\n"
                             "      filter: {utm_source: google, country: DE}\n"
                             "listen: 127.0.0.1:9\n");
  config_t c;
  char err[512] = "";
  config_defaults(&c);
  CHECK_INT(config_load_file(&c, p, err, sizeof err), 0);
  CHECK_INT(c.kpis.n, 2);
  if (c.kpis.n == 2) {
    const config_kpi_t *a = &c.kpis.items[0], *b = &c.kpis.items[1];
    CHECK_STR(a->name, "add_to_cart_rate");
    CHECK_INT(a->format, CONFIG_KPI_PERCENT);
    CHECK_STR(a->num.event, "Product Added");
    CHECK_INT(a->num.metric, CONFIG_KPI_UNIQUES);
    CHECK_INT(a->den.present, 1);
    CHECK_STR(b->num.property, "revenue"); /* the default of metric sum */
    CHECK_INT(b->num.nfilters, 2);
    CHECK_INT(b->num.filter_dim[0], 2); /* utm_source */
    CHECK_STR(b->num.filter_value[1], "DE");
    CHECK_INT(b->den.present, 0);
  }
  CHECK_STR(c.listen, "127.0.0.1:9");
  config_free(&c);
}

TEST(precedence_file_env_flags) {
  const char *p = write_file("p.yaml", "listen: 127.0.0.1:1000\nmax-batch-events: 10\nlog-level: warn\n");
  char path[256];
  snprintf(path, sizeof path, "%s", p);
  setenv("SLUICE_MAX_BATCH_EVENTS", "20", 1);
  setenv("SLUICE_LOG_LEVEL", "debug", 1);
  config_t c;
  char err[256] = "";
  config_defaults(&c);
  char *argv[] = {"--config", path, "--log-level=error", "--keep-full-ip", "rest"};
  int i = 0;
  CHECK_INT(config_load_env(&c, err, sizeof err), 0);
  CHECK_INT(config_parse_args(&c, 5, argv, &i, err, sizeof err), 0);
  CHECK_INT(i, 4);
  /* --config applied after env here because flags are parsed after env: file wins over env
   * only when loaded first, so main loads SLUICE_CONFIG before env; a --config flag is a
   * flag and wins. */
  CHECK_STR(c.listen, "127.0.0.1:1000");
  CHECK_INT(c.max_batch_events, 10);
  CHECK_STR(c.log_level, "error");
  CHECK_INT(c.keep_full_ip, 1);
  unsetenv("SLUICE_MAX_BATCH_EVENTS");
  unsetenv("SLUICE_LOG_LEVEL");
  char *bad[] = {"--no-such-option=1"};
  i = 0;
  CHECK(config_parse_args(&c, 1, bad, &i, err, sizeof err) != 0);
  CHECK(strstr(err, "no-such-option") != NULL);
  char *missing[] = {"--listen"};
  i = 0;
  CHECK(config_parse_args(&c, 1, missing, &i, err, sizeof err) != 0);
  config_free(&c);
}

TEST(validate_and_split_listen) {
  char host[64];
  int port;
  CHECK_INT(config_split_listen("127.0.0.1:8080", host, &port), 0);
  CHECK_STR(host, "127.0.0.1");
  CHECK_INT(port, 8080);
  CHECK_INT(config_split_listen("[::1]:0", host, &port), 0);
  CHECK_STR(host, "::1");
  CHECK_INT(port, 0);
  CHECK(config_split_listen("nohost", host, &port) != 0);
  CHECK(config_split_listen("a:99999", host, &port) != 0);
  config_t c;
  char err[256];
  config_defaults(&c);
  config_set(&c, "write-key", "same", err, sizeof err);
  config_set(&c, "read-key", "same", err, sizeof err);
  CHECK(config_validate(&c, err, sizeof err) != 0);
  config_free(&c);
  /* log-scan bounds: none may be 0, and none so large that it overflows */
  static const char *const bad_scan[][2] = {{"scan-concurrency", "0"}, {"scan-max-records", "0"},
                                            {"scan-max-memory", "1k"}, {"scan-timeout-ms", "3600001"},
                                            {"scan-late-s", "99999999999999"},
                                            {"commit-window-us", "100001"}};
  for (size_t i = 0; i < sizeof bad_scan / sizeof bad_scan[0]; i++) {
    config_defaults(&c);
    CHECK_INT(config_set(&c, bad_scan[i][0], bad_scan[i][1], err, sizeof err), 0);
    if (config_validate(&c, err, sizeof err) == 0) FAILF("%s=%s accepted", bad_scan[i][0], bad_scan[i][1]);
    config_free(&c);
  }
  config_defaults(&c);
  CHECK_INT(config_validate(&c, err, sizeof err), 0);
  config_free(&c);
}

TEST(keys_generated_once_and_kept) {
  config_t c;
  char err[256] = "";
  config_defaults(&c);
  config_set(&c, "data-dir", dir, err, sizeof err);
  config_set(&c, "read-key", "my-read-key", err, sizeof err);
  int gen = 0;
  CHECK_INT(keys_resolve(&c, &gen, err, sizeof err), 0);
  CHECK_INT(gen, (1 << KEY_WRITE) | (1 << KEY_ADMIN));
  CHECK_INT(strlen(c.write_key), 48);
  CHECK_STR(c.read_key, "my-read-key");
  char path[256];
  snprintf(path, sizeof path, "%s/keys.yaml", dir);
  struct stat st;
  CHECK_INT(stat(path, &st), 0);
  CHECK_INT(st.st_mode & 0777, 0600);
  char *w = strdup(c.write_key), *a = strdup(c.admin_key);
  config_free(&c);

  config_defaults(&c);
  config_set(&c, "data-dir", dir, err, sizeof err);
  config_set(&c, "read-key", "my-read-key", err, sizeof err);
  CHECK_INT(keys_resolve(&c, &gen, err, sizeof err), 0);
  CHECK_INT(gen, 0);
  CHECK_STR(c.write_key, w);
  CHECK_STR(c.admin_key, a);
  CHECK_INT(keys_match(&c, w, strlen(w)), KEY_WRITE);
  CHECK_INT(keys_match(&c, a, strlen(a)), KEY_ADMIN);
  CHECK_INT(keys_match(&c, "nope", 4), KEY_NONE);
  CHECK_INT(keys_match(&c, "", 0), KEY_NONE);
  free(w);
  free(a);
  config_free(&c);
}

TEST(authorization_header) {
  char k[128];
  CHECK_INT(keys_from_authorization("Basic d2s6", k, sizeof k), 2); /* "wk:" */
  CHECK_STR(k, "wk");
  CHECK_INT(keys_from_authorization("Basic d2s=", k, sizeof k), 2); /* "wk" no colon */
  CHECK_INT(keys_from_authorization("Bearer abc", k, sizeof k), 3);
  CHECK_STR(k, "abc");
  CHECK_INT(keys_from_authorization("bearer  abc ", k, sizeof k), 3);
  CHECK_INT(keys_from_authorization("Digest xyz", k, sizeof k), -1);
  CHECK_INT(keys_from_authorization("Basic ***", k, sizeof k), -1);
  CHECK_INT(keys_from_authorization(NULL, k, sizeof k), 0);
}

int main(void) {
  if (!mkdtemp(dir)) return 1;
  RUN(defaults);
  RUN(file_values_and_lists);
  RUN(file_errors_name_the_place);
  RUN(kpis_section);
  RUN(precedence_file_env_flags);
  RUN(validate_and_split_listen);
  RUN(keys_generated_once_and_kept);
  RUN(authorization_header);
  char cmd[300];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  if (system(cmd) != 0) return 1;
  return TEST_REPORT("test_config");
}
