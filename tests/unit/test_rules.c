/* Unit tests for the rules engine: the table of cases in tests/cases/rules.txt (rule
 * text, timed events, expected actions), parser errors with their exact file:line:col
 * messages, idempotency keys, reloads, checkpoints, bounds and KPI alerts. */
#include "rules.h"

#include <errno.h>
#include <math.h>
#include <unistd.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "profile.h"
#include "test.h"

#define BASE_S 1798761600LL /* 2027-01-01 00:00:00 UTC, a Friday */
#define SEC 1000000LL

/* ---- the case runner ---- */

typedef struct run {
  buf_t out;      /* "T KIND RULE TARGET USER PAYLOAD\n" per action */
  buf_t keys;     /* idempotency keys, one per line */
  double kpi;     /* value the KPI callback returns */
} run_t;

static const char *const kind_names[] = {"?", "offer", "webhook", "emit", "segment-add",
                                         "segment-remove", "alert"};

static int sink(void *ud, const action_t *a) {
  run_t *r = ud;
  buf_printf(&r->out, "%lld %s %s %s %s %s\n", (long long)(a->decided_us / SEC - BASE_S),
             kind_names[a->kind], a->rule, a->target,
             a->user_id ? a->user_id : a->anonymous_id ? a->anonymous_id : "-", a->payload);
  buf_printf(&r->keys, "%s\n", a->key);
  return 0;
}

static int kpi_cb(void *ud, const rules_alert_t *a, int64_t now, double *v) {
  (void)a, (void)now;
  *v = ((run_t *)ud)->kpi;
  return 0;
}

/* "90", "90s", "10m", "2h", "1d9h30m" -> seconds */
static long long secs(const char *s) {
  long long total = 0;
  while (*s) {
    char *end;
    long long v = strtoll(s, &end, 10);
    long long unit = *end == 'm' ? 60 : *end == 'h' ? 3600 : *end == 'd' ? 86400 : 1;
    total += v * unit;
    if (!*end || end == s) break;
    s = end + 1;
  }
  return total;
}

static uint64_t ukey(const char *name) { return XXH3_64bits(name, strlen(name)); }

typedef struct evline {
  char user[64], type[16], name[128], json[2048];
  char segs[256], country[256], device[256];
  int consent;
  long long t, session, first;
  double revenue;
  unsigned orders;
} evline_t;

/* Parse one event line: T USER TYPE ["Name"] [{json}] [flags]. 0 or -1. */
static int parse_event(const char *l, evline_t *e) {
  memset(e, 0, sizeof *e);
  e->consent = 1;
  char ts[32];
  int n = 0;
  if (sscanf(l, "%31s %63s %15s %n", ts, e->user, e->type, &n) < 3) return -1;
  e->t = secs(ts);
  l += n;
  if (*l == '"') {
    const char *q = strchr(l + 1, '"');
    if (!q) return -1;
    snprintf(e->name, sizeof e->name, "%.*s", (int)(q - l - 1), l + 1);
    l = q + 1;
    while (*l == ' ') l++;
  }
  if (*l == '{') {
    int depth = 0, in_str = 0;
    const char *p = l;
    for (; *p; p++) {
      if (in_str) {
        if (*p == '\\' && p[1]) p++;
        else if (*p == '"') in_str = 0;
      } else if (*p == '"') in_str = 1;
      else if (*p == '{') depth++;
      else if (*p == '}' && --depth == 0) break;
    }
    if (!*p) return -1;
    snprintf(e->json, sizeof e->json, "%.*s", (int)(p - l + 1), l);
    l = p + 1;
  }
  char flag[256];
  while (sscanf(l, " %255s%n", flag, &n) == 1) {
    l += n;
    if (!strcmp(flag, "noconsent")) e->consent = 0;
    else if (!strncmp(flag, "session=", 8)) e->session = secs(flag + 8);
    else if (!strncmp(flag, "first=", 6)) e->first = secs(flag + 6);
    else if (!strncmp(flag, "seg=", 4)) snprintf(e->segs, sizeof e->segs, "%s", flag + 4);
    else if (!strncmp(flag, "country=", 8)) snprintf(e->country, sizeof e->country, "%s", flag + 8);
    else if (!strncmp(flag, "device=", 7)) snprintf(e->device, sizeof e->device, "%s", flag + 7);
    else if (!strncmp(flag, "revenue=", 8)) e->revenue = atof(flag + 8);
    else if (!strncmp(flag, "orders=", 7)) e->orders = (unsigned)atoi(flag + 7);
    else return -1;
  }
  return 0;
}

static void send_event(rules_t *r, const evline_t *e, uint64_t offset) {
  char json[4096];
  const char *anon = !strncmp(e->user, "a:", 2) ? e->user + 2 : NULL;
  snprintf(json, sizeof json, "{\"type\":\"%s\",\"event\":\"%s\",\"properties\":%s}", e->type,
           e->name, e->json[0] ? e->json : "{}");
  const char *segs[8];
  size_t nseg = 0;
  char sb[256];
  snprintf(sb, sizeof sb, "%s", e->segs);
  for (char *tok = strtok(sb, ","); tok && nseg < 8; tok = strtok(NULL, ",")) segs[nseg++] = tok;
  const char *cn[1] = {"Product Viewed"};
  uint32_t cv[1] = {3};
  rules_profile_t p = {
      .events = 10, .orders = e->orders, .revenue = e->revenue,
      .first_seen_us = (BASE_S + e->first) * SEC, .last_seen_us = (BASE_S + e->t) * SEC,
      .device = e->device[0] ? e->device : NULL, .country = e->country[0] ? e->country : NULL,
      .segments = segs, .nsegments = nseg, .counter_names = cn, .counter_values = cv,
      .ncounters = 1, .identified = anon == NULL,
  };
  rules_event_t ev = {
      .t_us = (BASE_S + e->t) * SEC,
      .offset = offset,
      .type = profile_type(e->type, strlen(e->type)),
      .name = e->name[0] ? e->name : NULL,
      .json = json,
      .json_len = strlen(json),
      .user = ukey(anon ? anon : e->user),
      .user_id = anon ? NULL : e->user,
      .anonymous_id = anon,
      .consent_marketing = e->consent,
      .session_us = (BASE_S + e->session) * SEC,
      .profile = &p,
  };
  int rc = rules_event(r, &ev);
  if (rc < 0) FAILF("rules_event: %d for %s", rc, e->user);
}

static rules_set_t *compile(const char *text, char *err, size_t errlen) {
  rules_src_t src = {"case.rules", text, strlen(text)};
  return rules_set_parse(&src, 1, err, errlen);
}

/* Restart: serialize, new engine with the same rules, deserialize. */
static rules_t *restart(rules_t *r, const char *rules_text, run_t *run, const rules_opts_t *o) {
  buf_t b = BUF_INIT;
  rules_serialize(r, &b);
  rules_free(r);
  rules_t *n = rules_new(o);
  char err[512];
  rules_swap(n, compile(rules_text, err, sizeof err));
  int rc = rules_deserialize(n, b.data, b.len);
  if (rc) FAILF("deserialize after restart: %d", rc);
  buf_free(&b);
  (void)run;
  return n;
}

static void run_case(const char *name, const char *rules_text, const char *events,
                     const char *expect, int line) {
  char err[512];
  rules_set_t *s = compile(rules_text, err, sizeof err);
  if (!s) {
    FAILF("case '%s' (line %d): rules do not compile: %s", name, line, err);
    return;
  }
  run_t run = {BUF_INIT, BUF_INIT, 0};
  rules_opts_t o = {.sink = sink, .sink_ud = &run, .max_users = 64};
  rules_t *r = rules_new(&o);
  rules_swap(r, s);
  const char *p = events;
  uint64_t offset = 100;
  while (*p) {
    const char *nl = strchr(p, '\n');
    size_t n = nl ? (size_t)(nl - p) : strlen(p);
    char l[4096];
    snprintf(l, sizeof l, "%.*s", (int)(n < sizeof l ? n : sizeof l - 1), p);
    p += n + (nl != NULL);
    char a[64], b[64];
    if (!l[0] || l[0] == '#') continue;
    if (sscanf(l, "advance %63s", a) == 1) {
      rules_advance(r, (BASE_S + secs(a)) * SEC);
    } else if (sscanf(l, "merge %63s %63s", a, b) == 2) {
      if (rules_merge(r, ukey(a), ukey(b)) != 0) FAILF("case '%s': merge %s %s failed", name, a, b);
    } else if (sscanf(l, "forget %63s", a) == 1) {
      rules_forget(r, ukey(a));
    } else if (!strcmp(l, "restart")) {
      r = restart(r, rules_text, &run, &o);
    } else if (!strcmp(l, "reload")) {
      rules_swap(r, compile(rules_text, err, sizeof err));
    } else if (sscanf(l, "kpi %63s %63s", a, b) == 2) {
      run.kpi = atof(b);
      rules_alerts_tick(r, (BASE_S + secs(a)) * SEC, kpi_cb, &run);
    } else {
      evline_t e;
      if (parse_event(l, &e) != 0) {
        FAILF("case '%s': bad event line: %s", name, l);
        continue;
      }
      send_event(r, &e, offset++);
    }
  }
  if (strcmp(run.out.data ? run.out.data : "", expect)) {
    FAILF("case '%s' (line %d): actions differ\n--- got\n%s--- expected\n%s", name, line,
          run.out.data ? run.out.data : "", expect);
  }
  rules_free(r);
  buf_free(&run.out);
  buf_free(&run.keys);
}

TEST(table) {
  FILE *f = fopen("tests/cases/rules.txt", "r");
  if (!f) {
    FAILF("cannot open tests/cases/rules.txt (run from the repo root)");
    return;
  }
  buf_t sec[3] = {BUF_INIT, BUF_INIT, BUF_INIT};
  char name[4096] = "", line[4096];
  int which = -1, cases = 0, n = 0, start = 0;
  for (;;) {
    char *got = fgets(line, sizeof line, f);
    n++;
    if (!got || !strncmp(line, "=== ", 4)) {
      if (name[0]) {
        int before = test_cur_failed;
        test_cur_failed = 0;
        run_case(name, sec[0].data ? sec[0].data : "", sec[1].data ? sec[1].data : "",
                 sec[2].data ? sec[2].data : "", start);
        printf("%s case: %s\n", test_cur_failed ? "FAIL" : "ok  ", name);
        test_cur_failed |= before;
        cases++;
      }
      if (!got) break;
      snprintf(name, sizeof name, "%s", line + 4);
      name[strcspn(name, "\n")] = 0;
      for (int i = 0; i < 3; i++) buf_reset(&sec[i]);
      which = -1;
      start = n;
      continue;
    }
    if (!strncmp(line, "--- rules", 9)) which = 0;
    else if (!strncmp(line, "--- events", 10)) which = 1;
    else if (!strncmp(line, "--- expect", 10)) which = 2;
    else if (which >= 0 && !(which == 2 && (line[0] == '#' || line[0] == '\n')))
      buf_puts(&sec[which], line);
  }
  fclose(f);
  for (int i = 0; i < 3; i++) buf_free(&sec[i]);
  printf("  %d table cases\n", cases);
  CHECK(cases >= 40);
}

/* ---- parser errors ---- */

TEST(parse_errors) {
  static const struct {
    const char *text, *msg;
  } cases[] = {
      {"rule \"a\" {\n  on track \"X\"\n  when properties.n >> 3\n  do offer \"o\"\n}",
       "case.rules:3:22: expected a value, a field or '(', got '>'"},
      {"rule \"a\" {\n  on track \"X\"\n  do offer \"o\"\n", "case.rules:4:1: expected a clause (on, let, when, wait, do, cap, limit) or '}', got end of file"},
      {"rule \"a\" {\n  on track \"X\"\n}", "case.rules:1:6: rule 'a' has no 'do' clause"},
      {"rule \"a\" {\n  on track \"X\"\n  when foo == 1\n  do offer \"o\"\n}",
       "case.rules:3:8: unknown name 'foo' (expected a let variable, event, type, userId, "
       "anonymousId, properties.*, context.*, traits.*, profile.*, time.* or now)"},
      {"rule \"a\" {\n  on track \"X\"\n  when count(track \"Y\", 10x) > 1\n  do offer \"o\"\n}",
       "case.rules:3:27: expected a duration unit (ms, s, m, h, d, w), got 'x'"},
      {"rule \"a\" {\n  on track \"X\"\n  do webhook \"mail\"\n}",
       "case.rules:3:14: no webhook named 'mail' is declared"},
      {"rule \"a\" {\n  on track \"X\"\n  let p = properties.p\n"
       "  when count(track \"Y\" where properties.q != p, 1h) > 1\n  do offer \"o\"\n}",
       "case.rules:4:30: a pattern may use a let variable only as 'field == variable' joined by 'and'"},
      {"rule \"a\" {\n  on track \"X\"\n  do offer \"o\"\n}\nrule \"a\" {\n  on track \"X\"\n  do offer \"o\"\n}",
       "case.rules:5:6: 'a' is declared twice"},
      {"rule \"a\" {\n  on page \"Home\"\n  do offer \"o\"\n}",
       "case.rules:2:11: only track events have names; match other types with when"},
      {"rule \"a\" {\n  on track \"X\"\n  cap 40 per user per 1h\n  do offer \"o\"\n}",
       "case.rules:3:7: a per-user cap allows at most 32 fires per window"},
      {"rule \"a\" {\n  on track \"X\"\n  cap 1 per visit\n  do offer \"o\"\n}",
       "case.rules:3:13: expected user or session, got 'visit'"},
      {"rule \"a\" {\n  on track \"X\"\n  wait 30m\n  do offer \"o\"\n}",
       "case.rules:4:3: expected 'unless' and the event that cancels the wait, got 'do'"},
      {"webhook \"w\" {\n  url \"ftp://x\"\n}", "case.rules:2:7: expected an http:// or https:// URL"},
      {"alert \"a\" {\n  kpi \"open_rate\"\n  over 1h\n  below 15%\n  clear 10%\n}",
       "case.rules:1:7: alert 'a': clear must be on the good side of the threshold (at least 0.15)"},
      {"alert \"a\" {\n  kpi \"open_rate\"\n  below 15%\n}", "case.rules:1:7: alert 'a' has no window (over 1h)"},
      {"alert \"a\" {\n  kpi \"orders\"\n  over 1h\n  below 3\n  webhook \"ops\"\n}",
       "case.rules:5:11: no webhook named 'ops' is declared"},
      {"rule \"a\" {\n  on track \"X\n  do offer \"o\"\n}", "case.rules:2:12: unterminated string"},
      {"rule \"a\" {\n  on track \"X\"\n  when properties.a in [1, properties.b]\n  do offer \"o\"\n}",
       "case.rules:3:28: set items must be strings, numbers or booleans"},
      {"rule \"a\" {\n  on track \"X\"\n  when nosuch(1)\n  do offer \"o\"\n}",
       "case.rules:3:8: unknown function 'nosuch' (expected count, seen, sequence, segment, counter or exists)"},
      {"frobnicate", "case.rules:1:1: expected rule, alert or webhook, got 'frobnicate'"},
      {"rule \"a\" {\n  on track \"X\"\n  when profile.shoe_size > 3\n  do offer \"o\"\n}",
       "case.rules:3:8: unknown profile field 'shoe_size' (expected events, page_views, "
       "sessions, orders, revenue, first_seen, last_seen, device, country, consent or identified)"},
      {"rule \"a\" {\n  on track \"X\"\n  when count(track \"Y\" where count(track \"Z\", 1m) > 0, 1m) > 0\n  do offer \"o\"\n}",
       "case.rules:3:30: window functions cannot be nested in a pattern"},
      {"rule \"a\" {\n  on track \"X\"\n  do offer \"o\" { a: 1, a: 2 }\n}",
       "case.rules:3:24: duplicate payload field 'a'"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    char err[512] = "";
    rules_set_t *s = compile(cases[i].text, err, sizeof err);
    if (s) {
      FAILF("case %zu compiled", i);
      rules_set_free(s);
      continue;
    }
    if (strcmp(err, cases[i].msg)) FAILF("case %zu:\n  got      %s\n  expected %s", i, err, cases[i].msg);
  }
  /* deep nesting is refused, not a stack overflow */
  buf_t b = BUF_INIT;
  buf_puts(&b, "rule \"a\" {\n on track \"X\"\n when ");
  for (int i = 0; i < 10000; i++) buf_putc(&b, '(');
  buf_puts(&b, "1");
  char err[512];
  CHECK(compile(b.data, err, sizeof err) == NULL);
  CHECK(strstr(err, "nested too deeply") != NULL);
  buf_free(&b);
}

/* ---- keys, reload, checkpoints, bounds ---- */

static const char *const offer_rule =
    "rule \"viewer\" {\n on track \"Product Viewed\"\n let product = properties.product_id\n"
    " when count(track \"Product Viewed\" where properties.product_id == product, 10m) >= 2\n"
    " do offer \"discount\" { percent: 10, product: product }\n}\n";

static void view(rules_t *r, const char *user, long long t, uint64_t off, const char *product) {
  evline_t e;
  char l[256];
  snprintf(l, sizeof l, "%lld %s track \"Product Viewed\" {\"product_id\":\"%s\"}", t, user, product);
  if (parse_event(l, &e) != 0) FAILF("bad line");
  send_event(r, &e, off);
}

TEST(keys_are_deterministic) {
  char err[512];
  run_t a = {BUF_INIT, BUF_INIT, 0}, b = {BUF_INIT, BUF_INIT, 0};
  rules_opts_t oa = {.sink = sink, .sink_ud = &a}, ob = {.sink = sink, .sink_ud = &b};
  rules_t *ra = rules_new(&oa), *rb = rules_new(&ob);
  rules_swap(ra, compile(offer_rule, err, sizeof err));
  rules_swap(rb, compile(offer_rule, err, sizeof err));
  for (int i = 0; i < 4; i++) {
    view(ra, "u1", i * 10, 500 + (uint64_t)i, "p1");
    view(rb, "u1", i * 10, 500 + (uint64_t)i, "p1");
  }
  CHECK(a.keys.len > 0);
  CHECK_STR(a.keys.data, b.keys.data);
  /* the offset of the triggering event is the key's second half */
  CHECK(strstr(a.keys.data, "-00000000000001f5\n") != NULL);
  /* another user: other keys */
  view(rb, "u2", 0, 600, "p1");
  view(rb, "u2", 5, 601, "p1");
  CHECK(strstr(b.keys.data, "-0000000000000259\n") != NULL);
  CHECK(strncmp(b.keys.data + b.keys.len - 34, a.keys.data, 16) != 0);
  rules_free(ra);
  rules_free(rb);
  buf_free(&a.out), buf_free(&a.keys), buf_free(&b.out), buf_free(&b.keys);
}

TEST(reload_keeps_unchanged_state) {
  static const char *const capped =
      "rule \"c\" {\n on track \"X\"\n do offer \"o\" { percent: 10 }\n cap 1 per user per 1d\n}\n";
  char err[512];
  run_t run = {BUF_INIT, BUF_INIT, 0};
  rules_opts_t o = {.sink = sink, .sink_ud = &run};
  rules_t *r = rules_new(&o);
  rules_swap(r, compile(capped, err, sizeof err));
  evline_t e;
  parse_event("0 u1 track \"X\"", &e);
  send_event(r, &e, 1);
  CHECK(run.out.len > 0);
  /* reformatted and commented: the same definition, the cap is kept */
  buf_reset(&run.out);
  char re[1024];
  snprintf(re, sizeof re, "# reformatted\n\n%s", capped);
  *strstr(re, "\n do") = ' ';
  CHECK_INT(rules_swap(r, compile(re, err, sizeof err)), 1);
  parse_event("10 u1 track \"X\"", &e);
  send_event(r, &e, 2);
  CHECK_INT(run.out.len, 0);
  /* a changed definition starts over */
  char changed[1024];
  snprintf(changed, sizeof changed, "%s", capped);
  strstr(changed, "10 }")[0] = '2';
  rules_swap(r, compile(changed, err, sizeof err));
  parse_event("20 u1 track \"X\"", &e);
  send_event(r, &e, 3);
  CHECK_STR(run.out.data, "20 offer c o u1 {\"percent\":20}\n");
  /* a bad body is refused with its position and the running set stays, state included */
  CHECK_INT(rules_reload_text(r, "PUT", "rule \"x\" {", 10, err, sizeof err), -EINVAL);
  CHECK_STR(err, "PUT:1:11: expected a clause (on, let, when, wait, do, cap, limit) or '}', got end of file");
  CHECK_INT(rules_set_rules(rules_current(r)), 1);
  parse_event("30 u1 track \"X\"", &e);
  send_event(r, &e, 4);
  CHECK_STR(run.out.data, "20 offer c o u1 {\"percent\":20}\n");
  CHECK_INT(rules_reload_text(r, "PUT", changed, strlen(changed), err, sizeof err), 1);
  CHECK_INT(rules_reload_dir(r, "build/no-such-dir", err, sizeof err), -EINVAL);
  CHECK_INT(rules_set_rules(rules_current(r)), 1);
  rules_free(r);
  buf_free(&run.out), buf_free(&run.keys);
}

TEST(state_roundtrip_and_hostile) {
  char err[512];
  static const char *const rules_text =
      "rule \"cart\" {\n on track \"Product Added\"\n wait 30m unless track \"Order Completed\"\n"
      " do segment add \"abandoned\"\n cap 1 per user per 24h\n limit 5 per hour\n}\n";
  run_t run = {BUF_INIT, BUF_INIT, 0};
  rules_opts_t o = {.sink = sink, .sink_ud = &run};
  rules_t *r = rules_new(&o);
  rules_swap(r, compile(rules_text, err, sizeof err));
  evline_t e;
  parse_event("0 u1 track \"Product Added\"", &e);
  send_event(r, &e, 1);
  parse_event("0 a:anon7 track \"Product Added\"", &e);
  send_event(r, &e, 2);
  buf_t b = BUF_INIT, b2 = BUF_INIT;
  rules_serialize(r, &b);
  rules_t *r2 = rules_new(&o);
  rules_swap(r2, compile(rules_text, err, sizeof err));
  CHECK_INT(rules_deserialize(r2, b.data, b.len), 0);
  rules_serialize(r2, &b2);
  CHECK_INT(b.len, b2.len);
  CHECK(b.len == b2.len && !memcmp(b.data, b2.data, b.len));
  CHECK_INT(rules_advance(r2, (BASE_S + 1801) * SEC), 2);
  /* every truncation and every flipped byte is refused, with the state left empty */
  for (size_t n = 0; n < b.len; n++)
    if (rules_deserialize(r2, b.data, n) != -EBADMSG) FAILF("truncated to %zu accepted", n);
  for (size_t i = 0; i < b.len; i++) {
    b.data[i] ^= 0x41;
    if (rules_deserialize(r2, b.data, b.len) != -EBADMSG) FAILF("flip at %zu accepted", i);
    b.data[i] ^= 0x41;
  }
  rules_stats_t st;
  rules_stats(r2, &st);
  CHECK_INT(st.users, 0);
  /* more users than the bound: -ENOSPC */
  rules_opts_t small = {.max_users = 1};
  rules_t *r3 = rules_new(&small);
  CHECK_INT(rules_deserialize(r3, b.data, b.len), -ENOSPC);
  rules_free(r3);
  rules_free(r);
  rules_free(r2);
  buf_free(&b), buf_free(&b2), buf_free(&run.out), buf_free(&run.keys);
}

TEST(bounds) {
  char err[512];
  run_t run = {BUF_INIT, BUF_INIT, 0};
  rules_opts_t o = {.sink = sink, .sink_ud = &run, .max_users = 100, .history_per_user = 8};
  rules_t *r = rules_new(&o);
  rules_swap(r, compile(offer_rule, err, sizeof err));
  for (int i = 0; i < 1000; i++) {
    char u[16];
    snprintf(u, sizeof u, "u%d", i);
    view(r, u, i, (uint64_t)i, "p");
  }
  rules_stats_t st;
  rules_stats(r, &st);
  CHECK_INT(st.users, 100);
  CHECK_INT(st.evicted, 900);
  /* one user, many products: the history stays at 8 records */
  for (int i = 0; i < 100; i++) {
    char p[16];
    snprintf(p, sizeof p, "p%d", i);
    view(r, "heavy", 2000 + i, 5000 + (uint64_t)i, p);
  }
  size_t mem = rules_memory(r);
  CHECK(mem < 100 * 1024 + 100 * (sizeof(void *) + 8) + 64 * 1024);
  CHECK(rules_new(&(rules_opts_t){.max_users = (1u << 26) + 1}) == NULL);
  rules_free(r);
  buf_free(&run.out), buf_free(&run.keys);
}

TEST(webhooks_and_alert_decls) {
  char err[512];
  setenv("SLUICE_TEST_HOOK_SECRET", "s3cret", 1);
  rules_set_t *s = compile(
      "webhook \"mail\" {\n url \"https://mail.example/hook\"\n secret env \"SLUICE_TEST_HOOK_SECRET\"\n"
      " timeout 3s\n}\nwebhook \"crm\" { url \"http://crm.local/x\" secret \"lit\" }\n"
      "alert \"open-rate\" {\n kpi \"email_open_rate\"\n segment \"newsletter-pl\"\n over 1h\n"
      " every 10s\n below 15%\n clear 17%\n for 2\n}\n",
      err, sizeof err);
  if (!s) {
    FAILF("%s", err);
    return;
  }
  CHECK_INT(rules_set_webhooks(s), 2);
  const rules_webhook_t *w = rules_set_webhook_find(s, "mail");
  CHECK(w != NULL);
  if (w) {
    CHECK_STR(w->url, "https://mail.example/hook");
    CHECK_STR(w->secret, "s3cret");
    CHECK_STR(w->secret_env, "SLUICE_TEST_HOOK_SECRET");
    CHECK_INT(w->timeout_us, 3 * SEC);
  }
  CHECK_STR(rules_set_webhook(s, 1)->secret, "lit");
  CHECK_INT(rules_set_webhook(s, 1)->timeout_us, 5 * SEC);
  const rules_alert_t *a = rules_set_alert(s, 0);
  CHECK_STR(a->segment, "newsletter-pl");
  CHECK(fabs(a->threshold - 0.15) < 1e-12 && fabs(a->clear - 0.17) < 1e-12);
  CHECK_INT(a->every_us, 10 * SEC);
  CHECK_INT(a->window_us, 3600 * SEC);
  CHECK_INT(a->for_n, 2);
  CHECK(a->campaign == NULL && a->above == 0);
  rules_set_free(s);
}

/* Replaying from a checkpoint decides what an uninterrupted run decided, keys included. */
TEST(replay_from_checkpoint_is_identical) {
  static const char *const text =
      "webhook \"w\" { url \"https://x.example/\" }\n"
      "rule \"cart\" {\n on track \"Product Added\"\n let p = properties.product_id\n"
      " wait 20m unless track \"Order Completed\" where properties.product_id == p\n"
      " do webhook \"w\" { product: p }\n cap 2 per user per 1h\n}\n"
      "rule \"views\" {\n on track \"Product Viewed\"\n let p = properties.product_id\n"
      " when count(track \"Product Viewed\" where properties.product_id == p, 15m) >= 2\n"
      " do offer \"o\" { product: p }\n limit 7 per 10m\n}\n";
  static const char *const names[] = {"Product Added", "Order Completed", "Product Viewed"};
  char err[512];
  run_t a = {BUF_INIT, BUF_INIT, 0}, b = {BUF_INIT, BUF_INIT, 0};
  rules_opts_t oa = {.sink = sink, .sink_ud = &a}, ob = {.sink = sink, .sink_ud = &b};
  rules_t *ra = rules_new(&oa), *rb = rules_new(&ob);
  rules_swap(ra, compile(text, err, sizeof err));
  rules_swap(rb, compile(text, err, sizeof err));
  uint64_t x = 42;
  for (int i = 0; i < 3000; i++) {
    x = x * 6364136223846793005ull + 1442695040888963407ull;
    char line[256];
    snprintf(line, sizeof line, "%d u%d track \"%s\" {\"product_id\":\"p%d\"}", i * 7,
             (int)(x >> 33) % 20, names[(x >> 40) % 3], (int)(x >> 50) % 3);
    evline_t e;
    parse_event(line, &e);
    send_event(ra, &e, (uint64_t)i);
    send_event(rb, &e, (uint64_t)i);
    if (i % 500 == 499) rb = restart(rb, text, &b, &ob);
  }
  rules_advance(ra, (BASE_S + 30000) * SEC);
  rules_advance(rb, (BASE_S + 30000) * SEC);
  CHECK(a.out.len > 1000);
  CHECK_STR(b.out.data, a.out.data);
  CHECK_STR(b.keys.data, a.keys.data);
  rules_free(ra);
  rules_free(rb);
  buf_free(&a.out), buf_free(&a.keys), buf_free(&b.out), buf_free(&b.keys);
}

TEST(churn_and_unmatched_events) {
  char err[512];
  run_t run = {BUF_INIT, BUF_INIT, 0};
  rules_opts_t o = {.sink = sink, .sink_ud = &run, .max_users = 16};
  rules_t *r = rules_new(&o);
  rules_swap(r, compile("rule \"cart\" {\n on track \"Product Added\"\n wait 30d unless track "
                        "\"Order Completed\"\n do segment add \"a\"\n}\n", err, sizeof err));
  evline_t add, buy, other;
  parse_event("0 u1 track \"Product Added\"", &add);
  parse_event("0 u1 track \"Order Completed\"", &buy);
  parse_event("0 u9 track \"Nobody Cares\"", &other);
  for (int i = 0; i < 20000; i++) {
    add.t = buy.t = other.t = i;
    send_event(r, &add, (uint64_t)(3 * i));
    send_event(r, &buy, (uint64_t)(3 * i + 1));
    send_event(r, &other, (uint64_t)(3 * i + 2));
  }
  rules_stats_t st;
  rules_stats(r, &st);
  CHECK_INT(st.timers_armed, 20000);
  CHECK_INT(st.timers_cancelled, 20000);
  CHECK_INT(st.users, 1); /* u9's events match nothing: no state */
  CHECK(rules_memory(r) < 256 * 1024); /* the timer heap does not keep 20,000 dead entries */
  CHECK_INT(rules_advance(r, (BASE_S + 100 * 86400) * SEC), 0);
  CHECK_INT(run.out.len, 0);
  rules_free(r);
  buf_free(&run.out), buf_free(&run.keys);
}

TEST(load_dir) {
  char dir[] = "build/rules-test-XXXXXX";
  if (!mkdtemp(dir)) {
    FAILF("mkdtemp");
    return;
  }
  char path[256], err[512];
  snprintf(path, sizeof path, "%s/b.rules", dir);
  FILE *f = fopen(path, "w");
  fputs("rule \"b\" {\n on page\n do webhook \"w\"\n}\n", f);
  fclose(f);
  snprintf(path, sizeof path, "%s/a.rules", dir);
  f = fopen(path, "w");
  fputs("webhook \"w\" { url \"https://x.example/\" }\n", f);
  fclose(f);
  snprintf(path, sizeof path, "%s/notes.txt", dir);
  f = fopen(path, "w");
  fputs("not rules", f);
  fclose(f);
  rules_set_t *s = rules_set_load_dir(dir, err, sizeof err);
  CHECK(s != NULL);
  CHECK_INT(rules_set_rules(s), 1);
  CHECK_INT(rules_set_webhooks(s), 1);
  rules_set_free(s);
  /* an error names the file it is in */
  snprintf(path, sizeof path, "%s/c.rules", dir);
  f = fopen(path, "w");
  fputs("rule \"c\" {\n on page\n do offer 3\n}\n", f);
  fclose(f);
  CHECK(rules_set_load_dir(dir, err, sizeof err) == NULL);
  char want[512];
  snprintf(want, sizeof want, "%s/c.rules:3:11: expected a name in quotes, got '3'", dir);
  CHECK_STR(err, want);
  const char *names[] = {"a.rules", "b.rules", "c.rules", "notes.txt"};
  for (int i = 0; i < 4; i++) {
    snprintf(path, sizeof path, "%s/%s", dir, names[i]);
    unlink(path);
  }
  rmdir(dir);
  CHECK(rules_set_load_dir(dir, err, sizeof err) == NULL);
}

int main(void) {
  RUN(table);
  RUN(parse_errors);
  RUN(keys_are_deterministic);
  RUN(reload_keeps_unchanged_state);
  RUN(state_roundtrip_and_hostile);
  RUN(bounds);
  RUN(webhooks_and_alert_decls);
  RUN(replay_from_checkpoint_is_identical);
  RUN(churn_and_unmatched_events);
  RUN(load_dir);
  return TEST_REPORT("test_rules");
}
