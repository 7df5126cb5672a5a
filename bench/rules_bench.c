/* rules_bench: evaluation cost per event with N rules loaded (default 1,000). The rules
 * are spread over 250 event names and mix the constructs of docs/RULES.md: property
 * conditions, counts over a window with a bound variable, absence (not seen), sequences,
 * absence timers, caps and limits. Events: 100,000 users, names drawn from the 250 rule
 * names and 250 names no rule mentions, a small JSON body each. Prints ns per event, the
 * rule evaluations and actions per event, and the state's memory. Built and run by
 * bench/rules.sh. Arguments: rules (default 1000), events (default 1,000,000). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "profile.h"
#include "rules.h"

#define T0 1798761600LL

static uint64_t mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

static int sink(void *ud, const action_t *a) {
  (void)a;
  (*(long *)ud)++;
  return 0;
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
  int nrules = argc > 1 ? atoi(argv[1]) : 1000;
  long nevents = argc > 2 ? atol(argv[2]) : 1000000;
  buf_t b = BUF_INIT;
  buf_puts(&b, "webhook \"crm\" { url \"https://crm.example/h\" }\n");
  for (int i = 0; i < nrules; i++) {
    int e = i % 250, k = i % 5;
    buf_printf(&b, "rule \"r%d\" {\n  on track \"Event %d\"\n  let p = properties.product_id\n", i, e);
    if (k == 0)
      buf_printf(&b, "  when properties.price > %d and properties.category in [\"a\", \"b\"]\n", i % 100);
    else if (k == 1)
      buf_printf(&b, "  when count(track \"Event %d\" where properties.product_id == p, 10m) >= 3\n"
                     "   and not seen(track \"Event %d\", 1h)\n", e, (e + 1) % 250);
    else if (k == 2)
      buf_printf(&b, "  when sequence(track \"Event %d\", track \"Event %d\", 30m)\n", (e + 7) % 250, e);
    else if (k == 3)
      buf_printf(&b, "  wait 30m unless track \"Event %d\"\n", (e + 3) % 250);
    else
      buf_printf(&b, "  when properties.path starts_with \"/shop\" and time.hour >= 8\n");
    buf_printf(&b, "  do %s { product: p, n: %d }\n  cap 1 per user per 24h\n  limit 1000 per minute\n}\n",
               k == 3 ? "webhook \"crm\"" : "offer \"o\"", i);
  }
  char err[512];
  rules_src_t src = {"bench.rules", b.data, b.len};
  double t = now_s();
  rules_set_t *s = rules_set_parse(&src, 1, err, sizeof err);
  double compile_ms = (now_s() - t) * 1e3;
  if (!s) {
    fprintf(stderr, "%s\n", err);
    return 1;
  }
  long actions = 0;
  rules_opts_t o = {.sink = sink, .sink_ud = &actions, .max_users = 100000};
  rules_t *r = rules_new(&o);
  rules_swap(r, s);
  char json[512], name[32], uid[32], pid[16];
  rules_event_t ev = {.type = PROFILE_TRACK, .json = json, .name = name, .user_id = uid,
                      .consent_marketing = 1};
  /* pass 0 only builds the events (the baseline); pass 1 also decides */
  double secs = 0, base = 0;
  for (int pass = 0; pass < 2; pass++) {
    t = now_s();
    for (long i = 0; i < nevents; i++) {
      uint64_t h = mix((uint64_t)i);
      snprintf(name, sizeof name, "Event %d", (int)(h % 500)); /* half of the names match no rule */
      snprintf(uid, sizeof uid, "user-%d", (int)((h >> 20) % 100000));
      snprintf(pid, sizeof pid, "p%d", (int)((h >> 40) % 20));
      ev.json_len = (size_t)snprintf(json, sizeof json,
          "{\"type\":\"track\",\"event\":\"%s\",\"userId\":\"%s\",\"properties\":{\"product_id\":"
          "\"%s\",\"price\":%d,\"category\":\"%c\",\"path\":\"/shop/x\"},\"context\":{\"ip\":"
          "\"10.0.0.0\",\"page\":{\"path\":\"/shop/x\"}}}", name, uid, pid, (int)(h >> 50) % 200,
          'a' + (int)((h >> 8) % 3));
      ev.user = mix((h >> 20) % 100000) | 1;
      ev.t_us = (T0 + i / 200) * 1000000LL; /* 200 events a second */
      ev.offset = (uint64_t)i;
      if (pass) rules_event(r, &ev);
    }
    if (pass) secs = now_s() - t;
    else base = now_s() - t;
  }
  rules_advance(r, (T0 + nevents / 200 + 7200) * 1000000LL);
  rules_stats_t st;
  rules_stats(r, &st);
  printf("rules: %d compiled in %.1f ms\n", nrules, compile_ms);
  printf("events: %ld in %.3f s: %.0f ns/event in the engine (%.0f ns with building each "
         "event's JSON, %.0f ns for that alone)\n", nevents, secs, (secs - base) * 1e9 / (double)nevents,
         secs * 1e9 / (double)nevents, base * 1e9 / (double)nevents);
  printf("per event: %.2f rule evaluations, %.3f actions; timers armed %llu, fired %llu, "
         "cancelled %llu\n", (double)st.evaluated / (double)nevents,
         (double)actions / (double)nevents, (unsigned long long)st.timers_armed,
         (unsigned long long)st.timers_fired, (unsigned long long)st.timers_cancelled);
  printf("state: %llu users, %.1f MB (%.0f bytes per user)\n", (unsigned long long)st.users,
         (double)rules_memory(r) / 1e6, (double)rules_memory(r) / (double)(st.users ? st.users : 1));
  rules_free(r);
  buf_free(&b);
  return 0;
}
