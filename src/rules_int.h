/* rules_int: the compiled form of a rule set, shared by the compiler (rules_parse.c), the
 * evaluator (rules.c) and the checkpoint code (rules_state.c). Not a public interface.
 *
 * Design. Everything a set owns is allocated from one arena and freed at once. An
 * expression is a tree of expr_t; fields of the event are numbered paths scanned with
 * jscan in chunks of JSCAN_MAX_PATHS, lazily per event. */
#ifndef SLUICE_RULES_INT_H
#define SLUICE_RULES_INT_H

#include <stddef.h>
#include <stdint.h>

#include "jscan.h"
#include "rules.h"

/* Expression node kinds. */
enum {
  E_NUM, E_STR, E_BOOL, E_NULL, /* literals */
  E_FIELD,   /* event field: u.idx = path number */
  E_VAR,     /* let variable: u.idx */
  E_PROF,    /* profile field: u.idx = PF_* */
  E_TIME,    /* time.*: u.idx = TF_* */
  E_NOT, E_NEG, E_AND, E_OR,
  E_CMP,     /* op = CMP_* */
  E_IN,      /* a in [list]: kids[1..] */
  E_ARITH,   /* op = '+', '-', '*', '/' */
  E_COUNT,   /* count(pattern, window): u.use */
  E_SEEN,    /* seen(pattern, window) */
  E_SEQ,     /* sequence(p1, ..., pn, window): uses[0..n) */
  E_SEGMENT, /* segment("name") */
  E_COUNTER, /* counter("Event Name") */
  E_EXISTS,  /* exists(field) */
};

enum { CMP_EQ, CMP_NE, CMP_LT, CMP_LE, CMP_GT, CMP_GE, CMP_PREFIX, CMP_SUFFIX, CMP_CONTAINS };

enum {
  PF_EVENTS, PF_PAGE_VIEWS, PF_SESSIONS, PF_ORDERS, PF_REVENUE, PF_FIRST_SEEN, PF_LAST_SEEN,
  PF_DEVICE, PF_COUNTRY, PF_CONSENT, PF_IDENTIFIED, PF_COUNT
};
enum { TF_HOUR, TF_MINUTE, TF_WEEKDAY, TF_NOW };

/* A use of a pattern in a rule: the pattern and the let variables its keys compare with. */
typedef struct pat_use {
  int pat;
  int nkeys;
  int *vars;        /* nkeys let indices, aligned with the pattern's key fields */
  int64_t window_us;
} pat_use_t;

typedef struct expr expr_t;
struct expr {
  uint8_t kind, op;
  int nkids;
  expr_t **kids;
  double num;
  const char *str;
  size_t len;
  int idx;
  pat_use_t *uses; /* E_COUNT / E_SEEN: 1; E_SEQ: nuses */
  int nuses;
  int line, col;   /* where it starts in its file (messages) */
};

/* An event pattern looked back on: type (+ name), conditions on the event alone, and the
 * fields compared with let variables (their values hash into the record's key). */
typedef struct pattern {
  uint64_t fp;
  int type;         /* PROFILE_TRACK ...; -1: any type */
  const char *name; /* NULL: any name */
  expr_t *cond;     /* NULL: none */
  int nkeys;
  int *key_fields;  /* path numbers */
  int64_t max_window_us;
} pattern_t;

typedef struct payload_field {
  const char *key;
  expr_t *val;
} payload_field_t;

typedef struct rule_action {
  int kind;          /* action_kind_t */
  const char *target;
  int nfields;
  payload_field_t *fields;
} rule_action_t;

enum { CAP_NONE, CAP_USER, CAP_SESSION };

typedef struct trigger {
  int type;          /* -1 any */
  const char *name;  /* NULL any */
} trigger_t;

typedef struct rule {
  const char *name;
  uint64_t fp;       /* name + canonical definition */
  uint64_t name_h;   /* XXH3 of the name (idempotency keys) */
  int ntrig;
  trigger_t *trig;
  int nlets;
  const char **let_names;
  expr_t **lets;
  expr_t *when;      /* NULL: always */
  int64_t wait_us;   /* 0: fire at once */
  pat_use_t unless;  /* wait_us > 0: the cancelling pattern */
  int nactions;
  rule_action_t *actions;
  int cap_scope;
  uint32_t cap_n;
  int64_t cap_window_us;
  uint32_t limit_n;
  int64_t limit_per_us;
  /* rate limit state (carried over by rules_swap, checkpointed) */
  int64_t limit_start_us;
  uint32_t limit_count;
} rule_t;

typedef struct alert_state {
  int firing;
  unsigned streak;
  int64_t next_due_us;
  double last_value;
} alert_state_t;

typedef struct alert_def {
  rules_alert_t pub;
  uint64_t fp;
  alert_state_t st;
} alert_def_t;

/* One index entry: the rules a (type, name) triggers and the patterns it feeds. */
typedef struct index_entry {
  int used;
  int type;
  const char *name; /* NULL: any name of the type */
  uint64_t h;
  int nrules, npats;
  int *rules, *pats;
} index_entry_t;

typedef struct arena_blk arena_blk_t;

struct rules_set {
  arena_blk_t *arena;
  rule_t *rules;
  size_t nrules;
  pattern_t *pats;
  size_t npats;
  rules_webhook_t *hooks;
  size_t nhooks;
  alert_def_t *alerts;
  size_t nalerts;
  const char **paths; /* event field paths, numbered */
  size_t npaths;
  jscan_paths_t **chunks; /* ceil(npaths / JSCAN_MAX_PATHS) */
  size_t nchunks;
  index_entry_t *index; /* open addressing, power of two (0: empty) */
  size_t index_cap;
};

/* ---- engine state (rules.c, rules_state.c) ---- */

/* A pattern match in a user's history. */
typedef struct hrec {
  int64_t t_us;
  int64_t expires_us; /* t + the longest window of its pattern: dropped after */
  uint64_t pat;       /* pattern fingerprint */
  uint64_t key;       /* hash of the key field values */
} hrec_t;

/* Per user and rule: recent fires (cap per user) and fires in the session. */
typedef struct rstate {
  uint64_t fp;
  int64_t session_us;
  uint32_t session_n;
  uint32_t nf, capf;
  int64_t *fires;       /* ascending, the last nf fires (owned; capf allocated) */
} rstate_t;

/* A pending absence timer. */
typedef struct utimer {
  uint64_t fp;           /* rule */
  int64_t deadline_us, armed_us;
  uint64_t offset;       /* log offset of the arming event */
  uint64_t cancel_pat, cancel_key;
  char *uid, *aid;       /* ids at arming (owned, may be NULL) */
  int npay;
  char **payloads;       /* rendered at arming, one per action (owned) */
} utimer_t;

typedef struct ustate {
  uint64_t key;
  int64_t last_us;
  int64_t session_us;
  int consent;
  char *uid, *aid;       /* latest ids (owned, may be NULL) */
  hrec_t *hist;
  uint32_t hn, hcap;
  rstate_t *rs;
  uint32_t nrs;
  utimer_t *tm;
  uint32_t ntm;
} ustate_t;

typedef struct heap_ent {
  int64_t deadline_us;
  uint64_t user, fp, offset;
} heap_ent_t;

typedef struct fpidx {
  uint64_t fp;
  int idx;
} fpidx_t;

struct rules {
  rules_opts_t o;
  rules_set_t *set;
  fpidx_t *rule_fps;    /* sorted by fp */
  /* users: dense array + open-addressing map key -> position + 1 */
  ustate_t **users;
  size_t nusers;
  uint32_t *map;
  size_t map_cap;
  size_t hand;
  heap_ent_t *heap;
  size_t nheap, capheap;
  size_t ntimers;
  rules_stats_t st;
  /* per-event scratch */
  jscan_val_t *vals;
  uint8_t *scanned;
  size_t vals_cap, scanned_cap;
  char scratch[65536];
  size_t scratch_used;
};

/* User state (rules.c). */
ustate_t *rules_user_find(rules_t *r, uint64_t key);
ustate_t *rules_user_add(rules_t *r, uint64_t key); /* evicts at the bound */
void rules_user_remove(rules_t *r, ustate_t *u);
void rules_users_clear(rules_t *r);
void rules_timer_free(utimer_t *t);
/* Add a fire time to s in order, dropping the oldest past RULES_CAP_MAX. */
void rules_rstate_add_fire(rstate_t *s, int64_t t);
void rules_heap_push(rules_t *r, int64_t deadline_us, uint64_t user, uint64_t fp, uint64_t offset);
/* Rule index of fingerprint fp in the current set, or -1 (binary search). */
int rules_rule_by_fp(const rules_t *r, uint64_t fp);

/* Index lookup (rules.c): the entry for (type, name) (name NULL: any-name entry). */
const index_entry_t *rules_index_find(const rules_set_t *s, int type, const char *name);
/* Build s's index from its rules' triggers and its patterns (arena memory). */
void rules_index_build(rules_set_t *s);
/* The hash of an index key. */
uint64_t rules_index_hash(int type, const char *name);
/* Arena allocation for the set (zeroed, aligned to 16). */
void *rules_arena_alloc(rules_set_t *s, size_t n);

#endif
