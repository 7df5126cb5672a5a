/* Unit tests for profile: identity stitching (anonymous -> identified merge, alias, shared
 * device), sessions (inactivity, campaign, tracker id, late events, bounce, conversion),
 * eviction at the bound, erasure, snapshots (round trip, hostile input) and input checks.
 * Scenarios are tables of events with the result flags each must return and the profile
 * each must leave, computed by hand from the rules in profile.h. */
#include <errno.h>

#include "profile.h"
#include "test.h"
#include "util/crc32c.h"

#define T0 1700000000 /* a Tuesday in November 2023, in seconds */
#define KIND_VIEW 0   /* tracked names used throughout: "Product Viewed" */
#define KIND_ORDER 1  /*                                  "Order Completed" (converts) */
#define NK PROFILE_KIND_NONE
#define PG PROFILE_PAGE
#define TR PROFILE_TRACK
#define ID PROFILE_IDENTIFY
#define AL PROFILE_ALIAS

/* ---- Recording callbacks ---- */

static profile_session_t ended[64];
static int n_ended;
static uint64_t evicted[4096];
static int n_evicted;

static void on_session_end(void *ud, const profile_session_t *s) {
  (void)ud;
  if (n_ended < 64) ended[n_ended] = *s;
  n_ended++;
}

static void on_evict(void *ud, const profile_t *p, const uint64_t *keys,
                     const uint32_t *used, size_t n) {
  (void)ud, (void)keys, (void)used, (void)n;
  if (n_evicted < 4096) evicted[n_evicted] = p->id;
  n_evicted++;
}

static profile_store_t *store(size_t max_profiles, size_t max_aliases) {
  profile_opts_t o = {.max_profiles = max_profiles,
                      .max_aliases = max_aliases,
                      .kinds = {"Product Viewed", "Order Completed"},
                      .conversion_kinds = 1u << KIND_ORDER,
                      .seed = 42,
                      .on_evict = on_evict,
                      .on_session_end = on_session_end};
  n_ended = n_evicted = 0;
  return profile_store_new(&o);
}

/* ---- Scenario tables ---- */

typedef struct step {
  int dt; /* seconds after T0 */
  int type;
  const char *user, *anon, *prev, *sid;
  uint8_t kind;
  double revenue;
  int order;
  uint64_t campaign;
  uint32_t want; /* exact PROFILE_R_* flags */
} step_t;

typedef struct want {
  const char *id;
  uint32_t events, page_views, sessions, orders;
  int64_t revenue_cents;
  int first, last; /* dt */
  uint32_t view, order_kind; /* kind_count[KIND_VIEW], [KIND_ORDER] */
  uint8_t flags;             /* public flags */
  uint16_t session_pages;
  int session_start; /* dt */
} want_t;

typedef struct ended_want {
  int reason, pages, converted, start, last; /* start/last: dt */
} ended_want_t;

typedef struct scenario {
  const char *name;
  step_t steps[12];
  want_t wants[3];
  ended_want_t ends[4];
  size_t profiles, aliases;
  const char *same[2]; /* two ids that must resolve to the same profile */
} scenario_t;

#define NEW PROFILE_R_NEW_PROFILE
#define USER PROFILE_R_NEW_USER
#define MERGED PROFILE_R_MERGED
#define LINKED PROFILE_R_LINKED
#define RELINK PROFILE_R_RELINKED
#define START PROFILE_R_SESSION_START
#define END PROFILE_R_SESSION_END
#define CONV PROFILE_R_CONVERSION
#define LATE PROFILE_R_LATE
#define F_ID PROFILE_F_IDENTIFIED
#define F_OPEN (PROFILE_F_SESSION | PROFILE_F_OPEN)
#define F_CONV PROFILE_F_CONVERTED

static const scenario_t scenarios[] = {
    {"anonymous browsing, then identify: history moves to the user",
     {{0, PG, NULL, "a1", NULL, NULL, NK, 0, 0, 0, NEW | START},
      {60, TR, NULL, "a1", NULL, NULL, KIND_VIEW, 0, 0, 0, 0},
      {120, TR, NULL, "a1", NULL, NULL, KIND_ORDER, 49.99, 1, 0, CONV},
      {180, ID, "u1", "a1", NULL, NULL, NK, 0, 0, 0, LINKED | USER},
      {240, PG, "u1", "a1", NULL, NULL, NK, 0, 0, 0, 0},
      {300, PG, NULL, "a1", NULL, NULL, NK, 0, 0, 0, 0},
      {-1}},
     {{"u1", 6, 3, 1, 1, 4999, 0, 300, 1, 1, F_ID | F_OPEN | F_CONV, 3, 0}},
     {{0}},
     1, 1, {"u1", "a1"}},
    {"identify on a second device merges into the existing user",
     {{0, PG, "u1", "d1", NULL, NULL, NK, 0, 0, 0, NEW | USER | LINKED | START},
      {10, PG, NULL, "a2", NULL, NULL, NK, 0, 0, 0, NEW | START},
      {20, TR, NULL, "a2", NULL, NULL, KIND_VIEW, 10, 0, 0, 0},
      /* both sessions open: a2's is more recent and survives, u1's ends */
      {30, ID, "u1", "a2", NULL, NULL, NK, 0, 0, 0, MERGED | LINKED | END},
      {40, PG, NULL, "d1", NULL, NULL, NK, 0, 0, 0, 0},
      {-1}},
     {{"u1", 5, 3, 2, 0, 1000, 0, 40, 1, 0, F_ID | F_OPEN, 2, 10}},
     {{PROFILE_END_MERGE, 1, 0, 0, 0}},
     1, 2, {"a2", "d1"}},
    {"alias merges an identified profile and an anonymous one",
     {{0, PG, NULL, "a1", NULL, NULL, NK, 0, 0, 0, NEW | START},
      {5, PG, "old", NULL, NULL, NULL, NK, 0, 0, 0, NEW | USER | START},
      {10, AL, "new", NULL, "old", NULL, NK, 0, 0, 0, NEW | USER | MERGED | LINKED},
      {20, AL, "new", NULL, "a1", NULL, NK, 0, 0, 0, MERGED | LINKED | END},
      {30, PG, "old", NULL, NULL, NULL, NK, 0, 0, 0, 0},
      {-1}},
     {{"new", 5, 3, 2, 0, 0, 0, 30, 0, 0, F_ID | F_OPEN, 2, 5}},
     {{PROFILE_END_MERGE, 1, 0, 0, 0}},
     1, 2, {"old", "a1"}},
    {"shared device: two users on one anonymousId are never merged",
     {{0, PG, NULL, "A", NULL, NULL, NK, 0, 0, 0, NEW | START},
      {10, ID, "u1", "A", NULL, NULL, NK, 0, 0, 0, LINKED | USER},
      {20, PG, "u1", "A", NULL, NULL, NK, 0, 0, 0, 0},
      {30, ID, "u2", "A", NULL, NULL, NK, 0, 0, 0, NEW | USER | LINKED | RELINK},
      {40, PG, NULL, "A", NULL, NULL, NK, 0, 0, 0, START}, /* u2 now */
      {50, PG, "u1", NULL, NULL, NULL, NK, 0, 0, 0, 0},   /* u1 by userId */
      {60, TR, "u2", "A", NULL, NULL, KIND_ORDER, 5, 1, 0, CONV},
      {-1}},
     {{"u1", 4, 3, 1, 0, 0, 0, 50, 0, 0, F_ID | F_OPEN, 3, 0},
      {"u2", 3, 1, 1, 1, 500, 30, 60, 0, 1, F_ID | F_OPEN | F_CONV, 1, 40}},
     {{0}},
     2, 1, {"A", "u2"}},
    {"an anonymousId that is another user's userId never merges the two",
     {{0, PG, "x", NULL, NULL, NULL, NK, 0, 0, 0, NEW | USER | START},
      {10, PG, "u", "x", NULL, NULL, NK, 0, 0, 0, NEW | USER | START},
      {20, PG, NULL, "x", NULL, NULL, NK, 0, 0, 0, 0},
      {-1}},
     {{"x", 2, 2, 1, 0, 0, 0, 20, 0, 0, F_ID | F_OPEN, 2, 0},
      {"u", 1, 1, 1, 0, 0, 10, 10, 0, 0, F_ID | F_OPEN, 1, 10}},
     {{0}},
     2, 0, {NULL, NULL}},
    {"inactivity: a gap of exactly the timeout continues, one longer splits",
     {{0, PG, NULL, "s", NULL, NULL, NK, 0, 0, 0, NEW | START},
      {1800, PG, NULL, "s", NULL, NULL, NK, 0, 0, 0, 0},
      {3601, PG, NULL, "s", NULL, NULL, NK, 0, 0, 0, END | START},
      {3700, TR, NULL, "s", NULL, NULL, KIND_ORDER, 20, 1, 0, CONV},
      {3800, TR, NULL, "s", NULL, NULL, KIND_ORDER, 20, 1, 0, 0},
      {-1}},
     {{"s", 5, 3, 2, 2, 4000, 0, 3800, 0, 2, F_OPEN | F_CONV, 1, 3601}},
     {{PROFILE_END_TIMEOUT, 2, 0, 0, 1800}},
     1, 0, {NULL, NULL}},
    {"campaign change splits; no campaign continues; a bounce has one page",
     {{0, PG, NULL, "c", NULL, NULL, NK, 0, 0, 0, NEW | START},
      {60, PG, NULL, "c", NULL, NULL, NK, 0, 0, 111, END | START},
      {120, PG, NULL, "c", NULL, NULL, NK, 0, 0, 0, 0},
      {180, PG, NULL, "c", NULL, NULL, NK, 0, 0, 111, 0},
      {240, PG, NULL, "c", NULL, NULL, NK, 0, 0, 222, END | START},
      {-1}},
     {{"c", 5, 5, 3, 0, 0, 0, 240, 0, 0, F_OPEN, 1, 240}},
     {{PROFILE_END_CAMPAIGN, 1, 0, 0, 0}, {PROFILE_END_CAMPAIGN, 3, 0, 60, 180}},
     1, 0, {NULL, NULL}},
    {"tracker session id: a new id splits, no id continues, timeout still applies",
     {{0, PG, NULL, "t", NULL, "s1", NK, 0, 0, 0, NEW | START},
      {10, PG, NULL, "t", NULL, "s1", NK, 0, 0, 0, 0},
      {20, PG, NULL, "t", NULL, "s2", NK, 0, 0, 0, END | START},
      {30, PG, NULL, "t", NULL, NULL, NK, 0, 0, 0, 0},
      {40, PG, NULL, "t", NULL, "s2", NK, 0, 0, 0, 0},
      {2000, PG, NULL, "t", NULL, "s2", NK, 0, 0, 0, END | START},
      {-1}},
     {{"t", 6, 6, 3, 0, 0, 0, 2000, 0, 0, F_OPEN, 1, 2000}},
     {{PROFILE_END_SESSION_ID, 2, 0, 0, 10}, {PROFILE_END_TIMEOUT, 3, 0, 20, 40}},
     1, 0, {NULL, NULL}},
    {"late events: before the session only lifetime, inside it absorbed",
     {{100, PG, NULL, "l", NULL, NULL, NK, 0, 0, 0, NEW | START},
      {50, PG, NULL, "l", NULL, NULL, NK, 0, 0, 0, LATE},
      {200, PG, NULL, "l", NULL, NULL, NK, 0, 0, 0, 0},
      {150, TR, NULL, "l", NULL, NULL, NK, 5, 1, 999, CONV}, /* no campaign split */
      {-1}},
     {{"l", 4, 3, 1, 1, 500, 50, 200, 0, 0, F_OPEN | F_CONV, 2, 100}},
     {{0}},
     1, 0, {NULL, NULL}},
};

static void run_scenario(const scenario_t *sc) {
  profile_store_t *s = store(100, 100);
  for (int i = 0; sc->steps[i].dt >= 0; i++) {
    const step_t *st = &sc->steps[i];
    profile_event_t ev = {.t_us = (int64_t)(T0 + st->dt) * 1000000 + 123456,
                          .type = st->type,
                          .user_id = st->user,
                          .anonymous_id = st->anon,
                          .previous_id = st->prev,
                          .session_id = st->sid,
                          .kind = st->kind,
                          .revenue = st->revenue,
                          .is_order = st->order,
                          .campaign_hash = st->campaign};
    profile_result_t r;
    int rc = profile_apply(s, &ev, &r);
    if (rc != 0 || r.flags != st->want)
      FAILF("%s: step %d: rc %d flags 0x%x, expected 0x%x", sc->name, i, rc, r.flags,
            st->want);
  }
  for (int i = 0; i < 3 && sc->wants[i].id; i++) {
    const want_t *w = &sc->wants[i];
    const profile_t *p = profile_get(s, w->id, 0);
    if (!p) {
      FAILF("%s: no profile %s", sc->name, w->id);
      continue;
    }
    long long got[] = {p->events, p->page_views, p->sessions, p->orders, p->revenue_cents,
                       p->first_seen, p->last_seen, p->kind_count[KIND_VIEW],
                       p->kind_count[KIND_ORDER], p->flags & 0x0f, p->session_pages,
                       p->session_start, p->id == profile_hash(s, w->id, 0)};
    long long exp[] = {w->events, w->page_views, w->sessions, w->orders, w->revenue_cents,
                       T0 + w->first, T0 + w->last, w->view, w->order_kind, w->flags,
                       w->session_pages, T0 + w->session_start, 1};
    static const char *const names[] = {"events", "page_views", "sessions", "orders",
                                        "revenue_cents", "first_seen", "last_seen", "view",
                                        "order_kind", "flags", "session_pages",
                                        "session_start", "own id"};
    for (size_t k = 0; k < sizeof got / sizeof got[0]; k++)
      if (got[k] != exp[k])
        FAILF("%s: %s.%s == %lld, expected %lld", sc->name, w->id, names[k], got[k],
              exp[k]);
  }
  int n_want = 0;
  while (n_want < 4 && sc->ends[n_want].reason) n_want++;
  if (n_ended != n_want)
    FAILF("%s: %d sessions ended, expected %d", sc->name, n_ended, n_want);
  for (int i = 0; i < n_want && i < n_ended; i++) {
    const ended_want_t *e = &sc->ends[i];
    const profile_session_t *g = &ended[i];
    if (g->reason != e->reason || (int)g->pages != e->pages ||
        g->converted != e->converted ||
        g->start_us != (int64_t)(T0 + e->start) * 1000000 ||
        g->last_us != (int64_t)(T0 + e->last) * 1000000)
      FAILF("%s: ended[%d] = reason %d pages %u conv %d start %+lld last %+lld", sc->name,
            i,
            g->reason, g->pages, g->converted, (long long)(g->start_us / 1000000 - T0),
            (long long)(g->last_us / 1000000 - T0));
  }
  if (profile_count(s) != sc->profiles || profile_alias_count(s) != sc->aliases)
    FAILF("%s: %zu profiles, %zu aliases; expected %zu, %zu", sc->name, profile_count(s),
          profile_alias_count(s), sc->profiles, sc->aliases);
  if (sc->same[0] && profile_get(s, sc->same[0], 0) != profile_get(s, sc->same[1], 0))
    FAILF("%s: %s and %s resolve to different profiles", sc->name, sc->same[0],
          sc->same[1]);
  profile_store_free(s);
}

TEST(test_scenarios) {
  for (size_t i = 0; i < sizeof scenarios / sizeof scenarios[0]; i++)
    run_scenario(&scenarios[i]);
}

/* ---- Focused tests ---- */

static int apply(profile_store_t *s, int dt, int type, const char *user, const char *anon,
                 uint8_t kind, profile_result_t *r) {
  profile_event_t ev = {.t_us = (int64_t)(T0 + dt) * 1000000, .type = type, .user_id = user,
                        .anonymous_id = anon, .kind = kind};
  profile_result_t tmp;
  return profile_apply(s, &ev, r ? r : &tmp);
}

TEST(test_recent_ring) {
  profile_store_t *s = store(10, 10);
  apply(s, 100, PG, NULL, "x", NK, NULL);
  apply(s, 50, PG, NULL, "x", NK, NULL);        /* late */
  apply(s, 200, TR, NULL, "x", KIND_VIEW, NULL);
  apply(s, 150, TR, NULL, "x", NK, NULL);       /* late, inside the session */
  apply(s, 70000, ID, "ux", "x", NK, NULL);     /* 69800 s later: older ages saturate */
  const profile_t *p = profile_get(s, "ux", 0);
  CHECK(p != NULL);
  CHECK_INT(p->recent_n, 4);
  /* most recent first: identify@70000, view@200, track@150, page@100 (page@50 dropped) */
  CHECK_INT(p->recent_code[0], 0x80 | PROFILE_IDENTIFY);
  CHECK_INT(p->recent_ago[0], 0);
  CHECK_INT(p->recent_code[1], KIND_VIEW);
  CHECK_INT(p->recent_ago[1], 65535);
  CHECK_INT(p->recent_code[2], 0x80 | PROFILE_TRACK);
  CHECK_INT(p->recent_code[3], 0x80 | PROFILE_PAGE);
  CHECK_INT(p->recent_ago[3], 65535);

  /* A ring not yet full ages its entries only (those past recent_n stay 0), saturating. */
  apply(s, 0, PG, NULL, "y", NK, NULL);
  apply(s, 100, PG, NULL, "y", NK, NULL);
  apply(s, 65500, TR, NULL, "y", KIND_VIEW, NULL);
  p = profile_get(s, "y", 0);
  CHECK(p != NULL);
  CHECK_INT(p->recent_n, 3);
  const uint16_t young[] = {0, 65400, 65500, 0};
  for (int i = 0; i < 4; i++) CHECK_INT(p->recent_ago[i], young[i]);
  CHECK_INT(p->recent_code[2], 0x80 | PROFILE_PAGE);
  CHECK_INT(p->recent_code[3], 0);
  apply(s, 65600, PG, NULL, "y", NK, NULL);
  p = profile_get(s, "y", 0);
  const uint16_t aged[] = {0, 100, 65500, 65535};
  for (int i = 0; i < 4; i++) CHECK_INT(p->recent_ago[i], aged[i]);
  CHECK_INT(p->recent_code[1], KIND_VIEW);

  /* Merging interleaves the two rings by time. */
  apply(s, 1000, PG, NULL, "m1", NK, NULL);
  apply(s, 1010, TR, NULL, "m1", KIND_ORDER, NULL);
  apply(s, 1010, TR, NULL, "m2", KIND_VIEW, NULL); /* ties m1's order: the user's first */
  apply(s, 1020, ID, "mu", "m1", NK, NULL); /* m1 renamed to mu */
  apply(s, 1030, ID, "mu", "m2", NK, NULL); /* m2 merged */
  p = profile_get(s, "mu", 0);
  CHECK(p != NULL);
  const uint8_t codes[] = {0x80 | PROFILE_IDENTIFY, 0x80 | PROFILE_IDENTIFY, KIND_ORDER,
                           KIND_VIEW};
  const uint16_t agos[] = {0, 10, 20, 20};
  for (int i = 0; i < 4; i++) {
    CHECK_INT(p->recent_code[i], codes[i]);
    CHECK_INT(p->recent_ago[i], agos[i]);
  }
  profile_store_free(s);
}

TEST(test_sweep_ends_idle_sessions) {
  profile_store_t *s = store(10, 10);
  apply(s, 0, PG, NULL, "a", NK, NULL);
  apply(s, 1000, PG, NULL, "b", NK, NULL);
  apply(s, 1100, TR, NULL, "b", KIND_ORDER, NULL);
  CHECK_INT(profile_sweep(s, (int64_t)(T0 + 1800) * 1000000, 100), 0);
  CHECK_INT(profile_sweep(s, (int64_t)(T0 + 1801) * 1000000, 100), 1); /* a */
  CHECK_INT(n_ended, 1);
  CHECK_INT(ended[0].pages, 1);
  CHECK_INT(ended[0].reason, PROFILE_END_TIMEOUT);
  /* A budget of one slot: first a (already ended), then b. */
  CHECK_INT(profile_sweep(s, (int64_t)(T0 + 1100 + 1801) * 1000000, 1), 0);
  CHECK_INT(profile_sweep(s, (int64_t)(T0 + 1100 + 1801) * 1000000, 1), 1);
  CHECK_INT(ended[1].converted, 1);
  CHECK_INT(ended[1].pages, 1);
  /* A closed session is not reopened by an event before its end; a later one starts
   * anew. */
  profile_result_t r;
  apply(s, 1050, PG, NULL, "b", NK, &r);
  CHECK_INT(r.flags, LATE);
  apply(s, 5000, PG, NULL, "b", NK, &r);
  CHECK_INT(r.flags, START);
  CHECK_INT(profile_get(s, "b", 0)->sessions, 2);
  profile_store_free(s);
}

TEST(test_eviction_least_recently_seen) {
  profile_store_t *s = store(4, 4);
  char id[16];
  for (int i = 1; i <= 4; i++) {
    snprintf(id, sizeof id, "p%d", i);
    apply(s, i, PG, NULL, id, NK, NULL);
  }
  apply(s, 5, ID, "u1", "p1", NK, NULL); /* p1 becomes u1, with alias p1 */
  CHECK_INT(profile_alias_count(s), 1);
  profile_result_t r;
  apply(s, 6, PG, NULL, "p5", NK, &r); /* all marked: the hand clears them, takes slot 0 */
  CHECK(r.flags & PROFILE_R_EVICTED);
  CHECK_INT(n_evicted, 1);
  CHECK(evicted[0] == profile_hash(s, "u1", 0));
  CHECK(profile_get(s, "u1", 0) == NULL);
  CHECK(profile_get(s, "p1", 0) == NULL); /* its alias went with it */
  CHECK_INT(profile_alias_count(s), 0);
  CHECK_INT(n_ended, 1);
  CHECK_INT(ended[0].reason, PROFILE_END_EVICT);
  apply(s, 7, PG, NULL, "p2", NK, NULL); /* p2 seen again: p3 is now least recent */
  apply(s, 8, PG, NULL, "p6", NK, NULL);
  CHECK_INT(n_evicted, 2);
  CHECK(evicted[1] == profile_hash(s, "p3", 0));
  CHECK(profile_get(s, "p2", 0) && profile_get(s, "p4", 0) && profile_get(s, "p5", 0));
  CHECK_INT(profile_count(s), 4);
  /* Many more: the count never passes the bound and every profile is evicted once. */
  for (int i = 0; i < 2000; i++) {
    snprintf(id, sizeof id, "q%d", i);
    char user[16];
    snprintf(user, sizeof user, "v%d", i % 7);
    apply(s, 10 + i, i % 3 ? PG : TR, i % 5 ? NULL : user, id, NK, NULL);
    if (profile_count(s) > 4 || profile_alias_count(s) > 4) {
      FAILF("bound passed at %d: %zu profiles %zu aliases", i, profile_count(s),
            profile_alias_count(s));
      break;
    }
  }
  CHECK_INT(profile_count(s), 4);
  CHECK(profile_get(s, "q1999", 0) != NULL); /* the newest stays */
  CHECK(profile_store_bytes(s) < 4096);
  profile_store_free(s);
}

TEST(test_forget) {
  profile_store_t *s = store(10, 10);
  apply(s, 0, PG, NULL, "a1", NK, NULL);
  apply(s, 10, ID, "u1", "a1", NK, NULL);
  apply(s, 20, PG, "u1", "d1", NK, NULL);
  apply(s, 30, PG, "u2", "shared", NK, NULL);
  apply(s, 40, PG, "u1", "shared", NK, NULL); /* shared now points to u1 */
  CHECK_INT(profile_count(s), 2);
  CHECK_INT(profile_alias_count(s), 3);
  CHECK_INT(profile_forget(s, "d1", 0), 0); /* through an alias: erases u1 */
  CHECK(profile_get(s, "u1", 0) == NULL);
  CHECK(profile_get(s, "a1", 0) == NULL);
  CHECK(profile_get(s, "d1", 0) == NULL);
  CHECK(profile_get(s, "shared", 0) == NULL);
  CHECK(profile_get(s, "u2", 0) != NULL); /* the other user keeps theirs */
  CHECK_INT(profile_count(s), 1);
  CHECK_INT(profile_alias_count(s), 0);
  CHECK_INT(n_evicted, 0);
  CHECK_INT(n_ended, 1);
  CHECK_INT(ended[0].reason, PROFILE_END_FORGET);
  CHECK_INT(profile_forget(s, "u1", 0), -ENOENT);
  CHECK_INT(profile_forget(s, "nobody", 0), -ENOENT);
  profile_result_t r;
  apply(s, 50, PG, NULL, "a1", NK, &r); /* a1 comes back as a stranger */
  CHECK_INT(r.flags, NEW | START);
  CHECK_INT(profile_get(s, "a1", 0)->events, 1);
  profile_store_free(s);
}

TEST(test_segments_and_helpers) {
  profile_store_t *s = store(10, 10);
  apply(s, 0, PG, NULL, "a", NK, NULL);
  apply(s, 0, PG, "u", NULL, NK, NULL);
  CHECK_INT(profile_segments(s, "a", 0, 0x5, 0), 0);
  CHECK_INT(profile_segments(s, "u", 0, 0x18, 0x8), 0);
  CHECK_INT(profile_segments(s, "zz", 0, 1, 0), -ENOENT);
  apply(s, 10, ID, "u", "a", NK, NULL);
  CHECK(profile_get(s, "u", 0)->segments == 0x15);
  CHECK_INT(profile_kind(s, "Order Completed", 0), KIND_ORDER);
  CHECK_INT(profile_kind(s, "Order Completedx", 15), KIND_ORDER);
  CHECK_INT(profile_kind(s, "Order", 0), PROFILE_KIND_NONE);
  CHECK_INT(profile_kind(s, "Order Cdmpleted", 0), PROFILE_KIND_NONE); /* same slot */
  CHECK_INT(profile_kind(s, "", 0), PROFILE_KIND_NONE);
  {
    /* names that share a slot (length, first and last bytes), a name twice (the first
     * kind wins), and names of other slots */
    profile_opts_t o = {.max_profiles = 10,
                        .kinds = {"aXz", "aYz", "", "bcd", "aXz", "Product Viewed"}};
    profile_store_t *k = profile_store_new(&o);
    CHECK_INT(profile_kind(k, "aXz", 0), 0);
    CHECK_INT(profile_kind(k, "aYz", 0), 1);
    CHECK_INT(profile_kind(k, "aZz", 0), PROFILE_KIND_NONE);
    CHECK_INT(profile_kind(k, "bcd", 0), 3);
    CHECK_INT(profile_kind(k, "bce", 0), PROFILE_KIND_NONE);
    CHECK_INT(profile_kind(k, "Product Viewed", 0), 5);
    CHECK_INT(profile_kind(k, "Product", 7), PROFILE_KIND_NONE);
    profile_store_free(k);
  }
  CHECK_INT(profile_type("identify", 0), PROFILE_IDENTIFY);
  CHECK_INT(profile_type("pagex", 4), PROFILE_PAGE);
  CHECK_INT(profile_type("bogus", 0), -EINVAL);
  static const char *const types[] = {"track", "page", "screen", "identify", "group", "alias"};
  for (int k = 0; k < 6; k++) {
    size_t n = strlen(types[k]);
    CHECK_INT(profile_type(types[k], n), k);
    CHECK_INT(profile_type(types[k], n - 1), -EINVAL); /* a prefix */
    char longer[16];
    snprintf(longer, sizeof longer, "%sx", types[k]);
    CHECK_INT(profile_type(longer, n + 1), -EINVAL);
  }
  CHECK_INT(profile_type("", 0), -EINVAL);
  CHECK_INT(profile_type("trick", 5), -EINVAL);
  CHECK(profile_hash(s, "abc", 3) == profile_hash(s, "abcd", 3));
  /* the prefetch hints take anything and change nothing; the key is the id's hash */
  CHECK(profile_prefetch_index(NULL, "u", 0) == 0);
  CHECK(profile_prefetch_index(s, NULL, 0) == 0);
  CHECK(profile_prefetch_index(s, "", 0) == 0);
  CHECK(profile_prefetch_index(s, "u", 0) == profile_hash(s, "u", 0));
  profile_prefetch_profile(s, profile_prefetch_index(s, "u", 0));
  profile_prefetch_profile(s, profile_prefetch_index(s, "a", 0)); /* an alias now */
  profile_prefetch_profile(s, profile_prefetch_index(s, "never seen", 10));
  profile_prefetch_profile(s, 0);
  profile_prefetch_profile(NULL, 1);
  CHECK_INT(profile_count(s), 1);
  CHECK(profile_get(s, "never seen", 0) == NULL && profile_get(s, "u", 0)->segments == 0x15);
  profile_store_free(s);
}

TEST(test_rejects_bad_events) {
  profile_store_t *s = store(10, 10);
  static char long_id[PROFILE_ID_MAX + 2];
  memset(long_id, 'x', PROFILE_ID_MAX + 1);
  profile_event_t ok = {.t_us = (int64_t)T0 * 1000000, .type = PG, .anonymous_id = "a",
                        .kind = NK};
  profile_result_t r;
  profile_event_t e = ok;
  e.anonymous_id = NULL;
  CHECK_INT(profile_apply(s, &e, &r), -EINVAL);
  e.anonymous_id = "";
  CHECK_INT(profile_apply(s, &e, &r), -EINVAL);
  e = ok;
  e.kind = PROFILE_KINDS;
  CHECK_INT(profile_apply(s, &e, &r), -EINVAL);
  e = ok;
  e.type = PROFILE_TYPES;
  CHECK_INT(profile_apply(s, &e, &r), -EINVAL);
  e = ok;
  e.t_us = 0;
  CHECK_INT(profile_apply(s, &e, &r), -EINVAL);
  e = ok;
  e.t_us = (INT64_C(1) << 32) * 1000000;
  CHECK_INT(profile_apply(s, &e, &r), -EINVAL);
  e = ok;
  e.type = AL;
  e.user_id = "u";
  CHECK_INT(profile_apply(s, &e, &r), -EINVAL); /* alias without previousId */
  e = ok;
  e.anonymous_id = long_id;
  CHECK_INT(profile_apply(s, &e, &r), -EINVAL);
  CHECK_INT(profile_count(s), 0);
  e.anonymous_id_len = PROFILE_ID_MAX;
  CHECK_INT(profile_apply(s, &e, &r), 0);
  CHECK(profile_get(s, long_id, PROFILE_ID_MAX) != NULL);
  CHECK_INT(profile_count(s), 1);
  e = ok;
  e.revenue = 1.0 / 0.0;
  CHECK_INT(profile_apply(s, &e, &r), 0);
  e.revenue = 1e300;
  CHECK_INT(profile_apply(s, &e, &r), 0);
  CHECK(profile_get(s, "a", 0)->revenue_cents == INT64_MAX);
  CHECK(profile_store_new(&(profile_opts_t){.session_timeout_us = 999999}) == NULL);
  profile_opts_t too_big = {.max_profiles = (size_t)PROFILE_MAX_BOUND + 1};
  CHECK(profile_store_new(&too_big) == NULL);
  profile_store_free(NULL);
  profile_store_free(s);
}

/* ---- Snapshots ---- */

/* A store with every kind of state: users, aliases, open/closed/converted sessions. */
static profile_store_t *busy_store(void) {
  profile_store_t *s = store(1000, 1000);
  char a[32], u[32];
  for (int i = 0; i < 300; i++) {
    snprintf(a, sizeof a, "anon-%d", i);
    snprintf(u, sizeof u, "user-%d", i % 97);
    profile_event_t ev = {.t_us = (int64_t)(T0 + i * 37 % 5000) * 1000000,
                          .type = i % 4 == 0 ? PG : i % 4 == 1 ? TR : i % 4 == 2 ? ID : PG,
                          .anonymous_id = a,
                          .user_id = i % 3 == 0 ? NULL : u,
                          .kind = (uint8_t)(i % 5 == 0 ? KIND_ORDER : NK),
                          .revenue = i % 5 == 0 ? i * 1.25 : 0,
                          .is_order = i % 5 == 0,
                          .campaign_hash = (uint64_t)(i % 11)};
    profile_result_t r;
    profile_apply(s, &ev, &r);
    if (i % 50 == 0) profile_segments(s, a, 0, 1ull << (i % 64), 0);
  }
  profile_sweep(s, (int64_t)(T0 + 3000) * 1000000, 1000);
  return s;
}

static int load(const void *p, size_t n) {
  profile_store_t *s = store(1000, 1000);
  int rc = profile_store_deserialize(s, p, n);
  profile_store_free(s);
  return rc;
}

TEST(test_snapshot_round_trip) {
  profile_store_t *a = busy_store();
  buf_t x = BUF_INIT, y = BUF_INIT;
  size_t n = profile_store_serialize(a, &x);
  CHECK_INT(n, x.len);
  CHECK_INT(n, 24 + 112 * profile_count(a) + 16 * profile_alias_count(a) + 4);
  profile_opts_t o = {.max_profiles = 1000, .kinds = {"Product Viewed", "Order Completed"},
                      .conversion_kinds = 1u << KIND_ORDER}; /* random seed: adopted */
  profile_store_t *b = profile_store_new(&o);
  CHECK_INT(profile_store_deserialize(b, x.data, x.len), 0);
  CHECK_INT(profile_count(b), profile_count(a));
  CHECK_INT(profile_alias_count(b), profile_alias_count(a));
  profile_store_serialize(b, &y);
  CHECK(x.len == y.len && memcmp(x.data, y.data, x.len) == 0);
  char id[32];
  for (int i = 0; i < 300; i++) {
    snprintf(id, sizeof id, i % 2 ? "anon-%d" : "user-%d", i);
    const profile_t *p = profile_get(a, id, 0), *q = profile_get(b, id, 0);
    if (!p != !q) FAILF("%s: found in one store only", id);
    if (p && q) {
      profile_t pc = *p, qc = *q;
      pc.flags &= 0x0f;
      qc.flags &= 0x0f;
      if (memcmp(&pc, &qc, sizeof pc) != 0) FAILF("%s: profiles differ", id);
    }
  }
  CHECK_INT(profile_store_deserialize(b, x.data, x.len), -EBUSY);
  profile_store_free(b);

  /* Empty store. */
  profile_store_t *e = store(10, 10);
  buf_reset(&y);
  CHECK_INT(profile_store_serialize(e, &y), 28);
  CHECK_INT(load(y.data, y.len), 0);
  profile_store_free(e);
  /* A store too small for it. */
  profile_store_t *small = store(10, 10);
  CHECK_INT(profile_store_deserialize(small, x.data, x.len), -ENOSPC);
  CHECK_INT(profile_count(small), 0);
  profile_store_free(small);
  profile_store_free(a);
  buf_free(&x);
  buf_free(&y);
}

/* Rewrite the trailing CRC so the semantic checks, not the checksum, must catch an edit. */
static void reseal(unsigned char *p, size_t n) {
  uint32_t c = crc32c(0, p, n - 4);
  for (int i = 0; i < 4; i++) p[n - 4 + i] = (unsigned char)(c >> (8 * i));
}

TEST(test_snapshot_rejects_malformed) {
  profile_store_t *s = store(10, 10);
  apply(s, 0, PG, NULL, "a", NK, NULL);
  apply(s, 10, TR, "u", "a", KIND_VIEW, NULL);
  apply(s, 20, PG, NULL, "b", NK, NULL);
  buf_t x = BUF_INIT;
  profile_store_serialize(s, &x);
  profile_store_free(s);
  CHECK_INT(x.len, 24 + 2 * 112 + 16 + 4);
  unsigned char *m = malloc(x.len);
  for (size_t n = 0; n < x.len; n++)
    if (load(x.data, n) != -EBADMSG) FAILF("truncated to %zu accepted", n);
  memcpy(m, x.data, x.len);
  m[x.len - 1] ^= 1;
  CHECK_INT(load(m, x.len), -EBADMSG);
  int flips_ok = 1;
  for (size_t i = 0; i < x.len && flips_ok; i++)
    for (int bit = 0; bit < 8; bit++) {
      memcpy(m, x.data, x.len);
      m[i] ^= (unsigned char)(1u << bit);
      if (load(m, x.len) != -EBADMSG) {
        FAILF("flip of byte %zu bit %d accepted", i, bit);
        flips_ok = 0;
        break;
      }
    }
  unsigned char *longer = calloc(1, x.len + 1);
  memcpy(longer, x.data, x.len);
  CHECK_INT(load(longer, x.len + 1), -EBADMSG);
  free(longer);
  CHECK_INT(load(NULL, 0), -EBADMSG);

  /* Edits with a valid checksum: each breaks one rule. P0 = the first profile record. */
  enum { P0 = 24, P1 = 24 + 112, A0 = 24 + 224 };
  struct { size_t off; uint8_t val; const char *what; } edits[] = {
      {4, 2, "version 2"},
      {8, 0, "zero seed (byte 0 only: seed 42 -> 0)"},
      {P0 + 98, 0x40, "unknown flag"},
      {P0 + 98, PROFILE_F_OPEN | PROFILE_F_IDENTIFIED, "open without a session"},
      {P0 + 99, 5, "ring longer than 4"},
      {P0 + 100 + 3, 0x85, "code past recent_n"},
      {P0 + 100, 0x86, "unknown type code"},
      {P0 + 100, 0x09, "unknown kind code"},
      {P0 + 27, 0x7f, "first_seen after last_seen"},
      {P0 + 83, 0x00, "session start before first_seen"},
      {P0 + 104 + 1, 0xff, "ring not in time order"},
      {A0 + 8, 2, "alias to no profile"},
  };
  for (size_t k = 0; k < sizeof edits / sizeof edits[0]; k++) {
    memcpy(m, x.data, x.len);
    m[edits[k].off] = edits[k].val;
    reseal(m, x.len);
    if (load(m, x.len) != -EBADMSG) FAILF("accepted: %s", edits[k].what);
  }
  /* Duplicate keys: profile 1 with profile 0's id; the alias with a profile's id. */
  memcpy(m, x.data, x.len);
  memcpy(m + P1, m + P0, 8);
  reseal(m, x.len);
  CHECK_INT(load(m, x.len), -EBADMSG);
  memcpy(m, x.data, x.len);
  memcpy(m + A0, m + P1, 8);
  reseal(m, x.len);
  CHECK_INT(load(m, x.len), -EBADMSG);
  memcpy(m, x.data, x.len);
  memset(m + P0, 0, 8);
  reseal(m, x.len);
  CHECK_INT(load(m, x.len), -EBADMSG);
  /* Counts that disagree with the length. */
  memcpy(m, x.data, x.len);
  m[16] = 3;
  reseal(m, x.len);
  CHECK_INT(load(m, x.len), -EBADMSG);
  memcpy(m, x.data, x.len);
  m[19] = 0xff;
  reseal(m, x.len);
  CHECK_INT(load(m, x.len), -EBADMSG);
  free(m);
  buf_free(&x);
}

/* Random traffic with small bounds; after it, a snapshot of the state must load (the
 * loader checks every invariant) and reproduce itself. */
TEST(test_random_traffic_keeps_invariants) {
  profile_store_t *s = store(200, 100);
  uint64_t x = 88172645463325252ull;
  char u[32], a[32], p[32];
  size_t max_p = 0, max_a = 0;
  for (int i = 0; i < 60000; i++) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    snprintf(u, sizeof u, "u%u", (unsigned)(x % 400));
    snprintf(a, sizeof a, "a%u", (unsigned)(x >> 20) % 900);
    snprintf(p, sizeof p, "a%u", (unsigned)(x >> 40) % 900);
    int kind = (int)(x >> 60) % 8;
    profile_event_t ev = {.t_us = (int64_t)(T0 + i / 2 - (int)(x >> 50) % 90) * 1000000,
                          .type = kind < 4 ? PG : kind < 6 ? TR : kind < 7 ? ID : AL,
                          .user_id = (kind >= 6 || x % 3 == 0) ? u : NULL,
                          .anonymous_id = a,
                          .previous_id = p,
                          .kind = (uint8_t)(kind == 5 ? KIND_ORDER : NK),
                          .is_order = kind == 5,
                          .revenue = kind == 5 ? 12.5 : 0,
                          .campaign_hash = (x >> 33) % 16 == 0 ? (x >> 35) % 3 : 0};
    profile_result_t r;
    if (profile_apply(s, &ev, &r) != 0) {
      FAILF("event %d rejected", i);
      break;
    }
    if (i % 1000 == 0) profile_sweep(s, ev.t_us, 50);
    if (i % 5000 == 0) profile_forget(s, u, 0);
    if (profile_count(s) > max_p) max_p = profile_count(s);
    if (profile_alias_count(s) > max_a) max_a = profile_alias_count(s);
  }
  CHECK(max_p <= 200);
  CHECK(max_a <= 100);
  CHECK(n_evicted > 0);
  buf_t b1 = BUF_INIT, b2 = BUF_INIT;
  profile_store_serialize(s, &b1);
  profile_store_t *t = store(200, 100);
  CHECK_INT(profile_store_deserialize(t, b1.data, b1.len), 0);
  profile_store_serialize(t, &b2);
  CHECK(b1.len == b2.len && memcmp(b1.data, b2.data, b1.len) == 0);
  profile_store_free(t);
  profile_store_free(s);
  buf_free(&b1);
  buf_free(&b2);
}

int main(void) {
  RUN(test_scenarios);
  RUN(test_recent_ring);
  RUN(test_sweep_ends_idle_sessions);
  RUN(test_eviction_least_recently_seen);
  RUN(test_forget);
  RUN(test_segments_and_helpers);
  RUN(test_rejects_bad_events);
  RUN(test_snapshot_round_trip);
  RUN(test_snapshot_rejects_malformed);
  RUN(test_random_traffic_keeps_invariants);
  return TEST_REPORT("test_profile");
}
