/* rules_parse: the rules language — lexer, recursive-descent parser and compiler into the
 * indexed set of rules_int.h (grammar in docs/RULES.md). Errors stop at the first problem
 * with "file:line:col: expected X, got Y" and free everything allocated so far. */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "profile.h"
#include "rules_int.h"
#include "util/mem.h"

#define MAX_DEPTH 64
#define MAX_LETS 32
#define MAX_FIELDS 32
#define MAX_SEQ 8
#define MAX_KEYS 4
#define MAX_LIST 1024

static char *arena_strndup(rules_set_t *s, const char *p, size_t n) {
  char *d = rules_arena_alloc(s, n + 1);
  memcpy(d, p, n);
  d[n] = 0;
  return d;
}

/* ---- lexer ---- */

enum { T_EOF, T_IDENT, T_STR, T_NUM, T_DUR, T_PUNCT };

typedef struct tok {
  int kind;
  const char *p; /* source bytes */
  size_t n;
  int line, col;
  double num;    /* T_NUM; T_DUR: microseconds */
} tok_t;

typedef struct parser {
  rules_set_t *set;
  const char *file, *text;
  size_t len, pos;
  int line, col;
  tok_t tok;
  char *err;
  size_t errlen;
  jmp_buf jb;
  buf_t canon;   /* canonical text of the rule being parsed (fingerprints) */
  int depth;
  /* the rule being parsed */
  int nlets;
  const char *let_names[MAX_LETS];
  int in_pattern;
  /* growable arrays, copied into the arena at the end */
  rule_t *rules;
  size_t nrules, caprules;
  pattern_t *pats;
  size_t npats, cappats;
  rules_webhook_t *hooks;
  size_t nhooks, caphooks;
  alert_def_t *alerts;
  size_t nalerts, capalerts;
  const char **paths;
  size_t npaths, cappaths;
  /* names (kind 1: v = 0 rule, 1 alert, 2 webhook), paths (kind 2: v = path number) and
   * patterns (kind 3, by fingerprint: v = pattern number); open addressing */
  struct hslot { uint64_t h; const char *s; int v, used; } *tab;
  size_t ntab, captab;
  /* webhook references to check at the end */
  struct hookref { const char *name; int line, col; const char *file; } *refs;
  size_t nrefs, caprefs;
} parser_t;

static void grow(void **p, size_t *cap, size_t n, size_t sz) {
  if (n < *cap) return;
  *cap = *cap ? *cap * 2 : 16;
  *p = xrealloc(*p, *cap * sz);
}
#define PUSH(P, arr, n, cap) (grow((void **)&(P)->arr, &(P)->cap, (P)->n, sizeof *(P)->arr), &(P)->arr[(P)->n++])

static void describe(const tok_t *t, char *out, size_t cap) {
  if (t->kind == T_EOF) snprintf(out, cap, "end of file");
  else snprintf(out, cap, "'%.*s'", (int)(t->n > 40 ? 40 : t->n), t->p);
}

static void fail_at(parser_t *P, int line, int col, const char *fmt, ...)
    __attribute__((format(printf, 4, 5), noreturn));
static void fail_at(parser_t *P, int line, int col, const char *fmt, ...) {
  if (P->err && P->errlen) {
    int k = snprintf(P->err, P->errlen, "%s:%d:%d: ", P->file, line, col);
    if (k >= 0 && (size_t)k < P->errlen) {
      va_list ap;
      va_start(ap, fmt);
      vsnprintf(P->err + k, P->errlen - (size_t)k, fmt, ap);
      va_end(ap);
    }
  }
  longjmp(P->jb, 1);
}

/* "expected WHAT, got <current token>" */
static void __attribute__((noreturn)) expected(parser_t *P, const char *what) {
  char d[64];
  describe(&P->tok, d, sizeof d);
  fail_at(P, P->tok.line, P->tok.col, "expected %s, got %s", what, d);
}

static void adv(parser_t *P, size_t n) {
  for (size_t i = 0; i < n; i++) {
    if (P->text[P->pos + i] == '\n') {
      P->line++;
      P->col = 1;
    } else {
      P->col++;
    }
  }
  P->pos += n;
}

static const int64_t unit_us[] = {1000, 1000000, 60000000, 3600000000LL, 86400000000LL,
                                  604800000000LL};
static const char *const unit_names[] = {"ms", "s", "m", "h", "d", "w"};

static void lex(parser_t *P) {
  const char *t = P->text;
  for (;;) {
    while (P->pos < P->len && isspace((unsigned char)t[P->pos])) adv(P, 1);
    if (P->pos < P->len && (t[P->pos] == '#' ||
                            (t[P->pos] == '/' && P->pos + 1 < P->len && t[P->pos + 1] == '/'))) {
      while (P->pos < P->len && t[P->pos] != '\n') adv(P, 1);
      continue;
    }
    break;
  }
  tok_t k = {.p = t + P->pos, .line = P->line, .col = P->col};
  if (P->pos >= P->len) {
    k.kind = T_EOF;
    P->tok = k;
    return;
  }
  unsigned char c = (unsigned char)t[P->pos];
  size_t i = P->pos;
  if (isalpha(c) || c == '_') {
    while (i < P->len && (isalnum((unsigned char)t[i]) || t[i] == '_')) i++;
    k.kind = T_IDENT;
  } else if (isdigit(c)) {
    while (i < P->len && (isdigit((unsigned char)t[i]) || t[i] == '.')) i++;
    char nb[64];
    size_t nl = i - P->pos;
    if (nl >= sizeof nb) fail_at(P, k.line, k.col, "number too long");
    memcpy(nb, t + P->pos, nl);
    nb[nl] = 0;
    char *end;
    k.num = strtod(nb, &end);
    if (*end || !isfinite(k.num)) fail_at(P, k.line, k.col, "bad number '%s'", nb);
    k.kind = T_NUM;
    if (i < P->len && t[i] == '%') {
      k.num /= 100;
      i++;
    } else if (i < P->len && isalpha((unsigned char)t[i])) {
      size_t j = i;
      while (j < P->len && isalpha((unsigned char)t[j])) j++;
      int u = -1;
      for (int q = 0; q < 6; q++)
        if (strlen(unit_names[q]) == j - i && !memcmp(t + i, unit_names[q], j - i)) u = q;
      if (u < 0)
        fail_at(P, k.line, k.col + (int)(i - P->pos),
                "expected a duration unit (ms, s, m, h, d, w), got '%.*s'", (int)(j - i), t + i);
      k.num *= (double)unit_us[u];
      if (k.num > (double)RULES_MAX_WINDOW_US)
        fail_at(P, k.line, k.col, "duration longer than 400 days");
      k.kind = T_DUR;
      i = j;
    }
  } else if (c == '"') {
    i++;
    while (i < P->len && t[i] != '"') {
      if (t[i] == '\n') break;
      if (t[i] == '\\' && i + 1 < P->len) i++;
      i++;
    }
    if (i >= P->len || t[i] != '"') fail_at(P, k.line, k.col, "unterminated string");
    i++;
    k.kind = T_STR;
  } else {
    static const char *const two[] = {"==", "!=", "<=", ">="};
    k.kind = T_PUNCT;
    i++;
    for (int q = 0; q < 4; q++)
      if (P->pos + 1 < P->len && !memcmp(t + P->pos, two[q], 2)) i = P->pos + 2;
    if (!strchr("{}()[],:.=<>+-*/", c) && i == P->pos + 1)
      fail_at(P, k.line, k.col, "unexpected character '%c'", isprint(c) ? c : '?');
  }
  k.n = i - P->pos;
  adv(P, k.n);
  P->tok = k;
}

/* Consume the current token (appending it to the canonical text) and read the next. */
static tok_t next(parser_t *P) {
  tok_t t = P->tok;
  buf_append(&P->canon, t.p, t.n);
  buf_putc(&P->canon, ' ');
  lex(P);
  return t;
}

static int is_ident(const parser_t *P, const char *w) {
  return P->tok.kind == T_IDENT && strlen(w) == P->tok.n && !memcmp(P->tok.p, w, P->tok.n);
}
static int is_punct(const parser_t *P, const char *w) {
  return P->tok.kind == T_PUNCT && strlen(w) == P->tok.n && !memcmp(P->tok.p, w, P->tok.n);
}
static int accept_ident(parser_t *P, const char *w) {
  if (!is_ident(P, w)) return 0;
  next(P);
  return 1;
}
static int accept_punct(parser_t *P, const char *w) {
  if (!is_punct(P, w)) return 0;
  next(P);
  return 1;
}
static void want_punct(parser_t *P, const char *w) {
  if (!accept_punct(P, w)) {
    char what[16];
    snprintf(what, sizeof what, "'%s'", w);
    expected(P, what);
  }
}

/* The decoded text of a string literal (arena). */
static const char *string_lit(parser_t *P, const char *what) {
  if (P->tok.kind != T_STR) expected(P, what);
  tok_t t = next(P);
  char *d = rules_arena_alloc(P->set, t.n);
  size_t o = 0;
  for (size_t i = 1; i + 1 < t.n; i++) {
    char c = t.p[i];
    if (c == '\\') {
      c = t.p[++i];
      if (c == 'n') c = '\n';
      else if (c == 't') c = '\t';
      else if (c != '"' && c != '\\')
        fail_at(P, t.line, t.col + (int)i - 1, "unknown escape '\\%c' (use \\\" \\\\ \\n \\t)",
                isprint((unsigned char)c) ? c : '?');
    }
    if (c == 0) fail_at(P, t.line, t.col, "NUL in a string");
    d[o++] = c;
  }
  d[o] = 0;
  return d;
}

static double number(parser_t *P, const char *what) {
  if (P->tok.kind != T_NUM) expected(P, what);
  return next(P).num;
}

static uint32_t count_lit(parser_t *P, uint32_t max) {
  tok_t t = P->tok;
  double v = number(P, "a whole number");
  if (v < 1 || v > max || v != floor(v))
    fail_at(P, t.line, t.col, "expected a whole number from 1 to %u, got '%.*s'", max, (int)t.n, t.p);
  return (uint32_t)v;
}

static int64_t duration(parser_t *P) {
  if (P->tok.kind != T_DUR) expected(P, "a duration (like 30s, 10m, 24h)");
  tok_t t = next(P);
  if (t.num < 1000) fail_at(P, t.line, t.col, "duration shorter than 1ms");
  return (int64_t)t.num;
}

/* ---- expressions ---- */

static expr_t *node(parser_t *P, int kind, const tok_t *at) {
  expr_t *e = rules_arena_alloc(P->set, sizeof *e);
  e->kind = (uint8_t)kind;
  e->line = at->line;
  e->col = at->col;
  return e;
}

static expr_t *node2(parser_t *P, int kind, int op, const tok_t *at, expr_t *a, expr_t *b) {
  expr_t *e = node(P, kind, at);
  e->op = (uint8_t)op;
  e->nkids = b ? 2 : 1;
  e->kids = rules_arena_alloc(P->set, 2 * sizeof *e->kids);
  e->kids[0] = a;
  e->kids[1] = b;
  if (b) e->line = a->line, e->col = a->col; /* a binary node starts at its left side */
  return e;
}

/* The slot of (kind, s) or (kind, fp when s is NULL): the matching one or a free one. */
static struct hslot *lookup(parser_t *P, int kind, const char *str, uint64_t fp) {
  if (P->ntab * 2 >= P->captab) {
    size_t oc = P->captab;
    struct hslot *old = P->tab;
    P->captab = oc ? oc * 2 : 256;
    P->tab = xcalloc(P->captab, sizeof *P->tab);
    P->ntab = 0;
    for (size_t i = 0; i < oc; i++)
      if (old[i].used) {
        size_t m = P->captab - 1, k = old[i].h & m;
        while (P->tab[k].used) k = (k + 1) & m;
        P->tab[k] = old[i];
        P->ntab++;
      }
    free(old);
  }
  uint64_t h = str ? XXH3_64bits_withSeed(str, strlen(str), (uint64_t)kind) : fp ^ (uint64_t)kind;
  size_t m = P->captab - 1;
  for (size_t k = h & m;; k = (k + 1) & m) {
    struct hslot *e = &P->tab[k];
    if (!e->used) {
      e->h = h;
      e->s = str;
      e->v = -1;
      return e;
    }
    if (e->h == h && (!str || !strcmp(e->s, str))) return e;
  }
}

static void claim(parser_t *P, struct hslot *e, int v) {
  e->used = 1;
  e->v = v;
  P->ntab++;
}

static int path_index(parser_t *P, const char *path) {
  struct hslot *e = lookup(P, 2, path, 0);
  if (e->used) return e->v;
  *PUSH(P, paths, npaths, cappaths) = path;
  claim(P, e, (int)P->npaths - 1);
  return (int)P->npaths - 1;
}

static const char *const prof_names[PF_COUNT] = {
    "events", "page_views", "sessions", "orders", "revenue", "first_seen", "last_seen",
    "device", "country", "consent", "identified"};
static const char *const type_names[PROFILE_TYPES] = {"track", "page", "screen",
                                                      "identify", "group", "alias"};

static expr_t *parse_expr(parser_t *P);
static int parse_pattern(parser_t *P, pat_use_t *use);

/* A dotted name: a let variable, profile.X, time.X, now, or an event field. */
static expr_t *parse_name(parser_t *P) {
  tok_t first = next(P);
  char path[512];
  size_t n = 0;
  int parts = 1;
  if (first.n >= sizeof path) fail_at(P, first.line, first.col, "name too long");
  memcpy(path, first.p, first.n);
  n = first.n;
  while (is_punct(P, ".")) {
    next(P);
    if (P->tok.kind != T_IDENT && P->tok.kind != T_STR) expected(P, "a field name after '.'");
    tok_t t = P->tok;
    const char *seg = t.kind == T_STR ? string_lit(P, "a field name") : NULL;
    if (!seg) next(P);
    size_t sl = seg ? strlen(seg) : t.n;
    if (seg && (!sl || strchr(seg, '.'))) fail_at(P, t.line, t.col, "field names cannot be empty or contain '.'");
    if (n + 1 + sl >= sizeof path || ++parts > 16) fail_at(P, t.line, t.col, "field path too long");
    path[n++] = '.';
    memcpy(path + n, seg ? seg : t.p, sl);
    n += sl;
  }
  path[n] = 0;
  if (parts == 1) {
    for (int i = 0; i < P->nlets; i++)
      if (!strcmp(P->let_names[i], path)) {
        expr_t *e = node(P, E_VAR, &first);
        e->idx = i;
        return e;
      }
    if (!strcmp(path, "now")) {
      expr_t *e = node(P, E_TIME, &first);
      e->idx = TF_NOW;
      return e;
    }
    if (strcmp(path, "event") && strcmp(path, "type") && strcmp(path, "userId") &&
        strcmp(path, "anonymousId"))
      fail_at(P, first.line, first.col,
              "unknown name '%s' (expected a let variable, event, type, userId, anonymousId, "
              "properties.*, context.*, traits.*, profile.*, time.* or now)", path);
  } else if (!strncmp(path, "profile.", 8)) {
    for (int i = 0; i < PF_COUNT; i++)
      if (!strcmp(path + 8, prof_names[i])) {
        expr_t *e = node(P, E_PROF, &first);
        e->idx = i;
        return e;
      }
    fail_at(P, first.line, first.col,
            "unknown profile field '%s' (expected events, page_views, sessions, orders, "
            "revenue, first_seen, last_seen, device, country, consent or identified)", path + 8);
  } else if (!strncmp(path, "time.", 5)) {
    static const char *const tn[] = {"hour", "minute", "weekday"};
    for (int i = 0; i < 3; i++)
      if (!strcmp(path + 5, tn[i])) {
        expr_t *e = node(P, E_TIME, &first);
        e->idx = i;
        return e;
      }
    fail_at(P, first.line, first.col, "unknown time field '%s' (expected hour, minute or weekday)", path + 5);
  } else if (strncmp(path, "properties.", 11) && strncmp(path, "context.", 8) &&
             strncmp(path, "traits.", 7)) {
    fail_at(P, first.line, first.col,
            "unknown field '%s' (expected properties.*, context.*, traits.*, profile.* or time.*)", path);
  }
  expr_t *e = node(P, E_FIELD, &first);
  e->idx = path_index(P, arena_strndup(P->set, path, n));
  return e;
}

static expr_t *parse_call(parser_t *P) {
  tok_t f = next(P);
  want_punct(P, "(");
  expr_t *e;
#define FN(s) (f.n == strlen(s) && !memcmp(f.p, s, f.n))
  if (FN("count") || FN("seen") || FN("sequence")) {
    if (P->in_pattern) fail_at(P, f.line, f.col, "window functions cannot be nested in a pattern");
    e = node(P, FN("count") ? E_COUNT : FN("seen") ? E_SEEN : E_SEQ, &f);
    pat_use_t uses[MAX_SEQ];
    int n = 0;
    for (;;) {
      if (n == MAX_SEQ) fail_at(P, P->tok.line, P->tok.col, "at most %d steps in a sequence", MAX_SEQ);
      parse_pattern(P, &uses[n++]);
      want_punct(P, ",");
      if (P->tok.kind == T_DUR) break;
      if (e->kind != E_SEQ) expected(P, "a window duration (like 10m)");
    }
    int64_t w = duration(P);
    if (e->kind != E_SEQ && n != 1) fail_at(P, f.line, f.col, "expected one pattern");
    e->uses = rules_arena_alloc(P->set, (size_t)n * sizeof *e->uses);
    e->nuses = n;
    for (int i = 0; i < n; i++) {
      uses[i].window_us = w;
      e->uses[i] = uses[i];
      pattern_t *pt = &P->pats[uses[i].pat];
      if (pt->max_window_us < w) pt->max_window_us = w;
    }
  } else if (FN("segment") || FN("counter")) {
    e = node(P, FN("segment") ? E_SEGMENT : E_COUNTER, &f);
    e->str = string_lit(P, "a name in quotes");
    e->len = strlen(e->str);
  } else if (FN("exists")) {
    e = node(P, E_EXISTS, &f);
    if (P->tok.kind != T_IDENT) expected(P, "a field");
    expr_t *a = parse_name(P);
    if (a->kind != E_FIELD && a->kind != E_PROF && a->kind != E_VAR)
      fail_at(P, a->line, a->col, "exists() takes a field");
    e->nkids = 1;
    e->kids = rules_arena_alloc(P->set, sizeof *e->kids);
    e->kids[0] = a;
  } else {
    fail_at(P, f.line, f.col,
            "unknown function '%.*s' (expected count, seen, sequence, segment, counter or exists)",
            (int)f.n, f.p);
  }
#undef FN
  want_punct(P, ")");
  return e;
}

static expr_t *parse_primary(parser_t *P) {
  tok_t t = P->tok;
  if (t.kind == T_NUM || t.kind == T_DUR) {
    next(P);
    expr_t *e = node(P, E_NUM, &t);
    e->num = t.kind == T_DUR ? t.num / 1e6 : t.num; /* durations compare in seconds */
    return e;
  }
  if (t.kind == T_STR) {
    expr_t *e = node(P, E_STR, &t);
    e->str = string_lit(P, "a string");
    e->len = strlen(e->str);
    return e;
  }
  if (accept_punct(P, "(")) {
    expr_t *e = parse_expr(P);
    want_punct(P, ")");
    return e;
  }
  if (t.kind == T_IDENT) {
    if (accept_ident(P, "true") || accept_ident(P, "false")) {
      expr_t *e = node(P, E_BOOL, &t);
      e->num = t.p[0] == 't';
      return e;
    }
    if (accept_ident(P, "null")) return node(P, E_NULL, &t);
    static const char *const clause[] = {"on", "let", "when", "wait", "unless", "do", "cap",
                                         "limit", "where", "and", "or", "in", "rule"};
    for (size_t i = 0; i < sizeof clause / sizeof *clause; i++)
      if (is_ident(P, clause[i])) expected(P, "a value, a field or '('");
    /* a call when '(' follows the identifier directly */
    if (t.p + t.n < P->text + P->len && t.p[t.n] == '(') return parse_call(P);
    return parse_name(P);
  }
  expected(P, "a value, a field or '('");
}

static expr_t *parse_unary(parser_t *P) {
  tok_t t = P->tok;
  if (accept_punct(P, "-")) return node2(P, E_NEG, 0, &t, parse_unary(P), NULL);
  return parse_primary(P);
}

/* Left-associative arithmetic: level 0 is + and -, level 1 is * and /. */
static expr_t *parse_arith(parser_t *P, int level) {
  static const char *const ops[2][2] = {{"+", "-"}, {"*", "/"}};
  expr_t *l = level ? parse_unary(P) : parse_arith(P, 1);
  for (;;) {
    tok_t t = P->tok;
    if (!accept_punct(P, ops[level][0]) && !accept_punct(P, ops[level][1])) return l;
    l = node2(P, E_ARITH, t.p[0], &t, l, level ? parse_unary(P) : parse_arith(P, 1));
  }
}

static expr_t *parse_in_list(parser_t *P, expr_t *l, const tok_t *at) {
  want_punct(P, "[");
  expr_t *items[MAX_LIST];
  int n = 0;
  while (!is_punct(P, "]")) {
    tok_t it = P->tok;
    if (n == MAX_LIST) fail_at(P, it.line, it.col, "at most %d items in a set", MAX_LIST);
    expr_t *v = parse_primary(P);
    if (v->kind != E_STR && v->kind != E_NUM && v->kind != E_BOOL)
      fail_at(P, it.line, it.col, "set items must be strings, numbers or booleans");
    items[n++] = v;
    if (!accept_punct(P, ",")) break;
  }
  want_punct(P, "]");
  expr_t *e = node(P, E_IN, at);
  e->nkids = n + 1;
  e->kids = rules_arena_alloc(P->set, (size_t)(n + 1) * sizeof *e->kids);
  e->kids[0] = l;
  memcpy(e->kids + 1, items, (size_t)n * sizeof *items);
  return e;
}

static expr_t *parse_cmp(parser_t *P) {
  expr_t *l = parse_arith(P, 0);
  tok_t t = P->tok;
  static const char *const ops[] = {"==", "!=", "<", "<=", ">", ">="};
  for (int i = 0; i < 6; i++)
    if (accept_punct(P, ops[i])) return node2(P, E_CMP, CMP_EQ + i, &t, l, parse_arith(P, 0));
  if (accept_ident(P, "starts_with")) return node2(P, E_CMP, CMP_PREFIX, &t, l, parse_arith(P, 0));
  if (accept_ident(P, "ends_with")) return node2(P, E_CMP, CMP_SUFFIX, &t, l, parse_arith(P, 0));
  if (accept_ident(P, "contains")) return node2(P, E_CMP, CMP_CONTAINS, &t, l, parse_arith(P, 0));
  if (accept_ident(P, "in")) return parse_in_list(P, l, &t);
  if (is_ident(P, "not")) {
    /* "a not in [...]" */
    size_t save_pos = P->pos;
    int sl = P->line, sc = P->col;
    tok_t save = P->tok;
    lex(P);
    if (is_ident(P, "in")) {
      buf_puts(&P->canon, "not ");
      next(P);
      return node2(P, E_NOT, 0, &t, parse_in_list(P, l, &t), NULL);
    }
    P->pos = save_pos, P->line = sl, P->col = sc, P->tok = save;
  }
  return l;
}

static expr_t *parse_not(parser_t *P) {
  tok_t t = P->tok;
  if (++P->depth > MAX_DEPTH) fail_at(P, t.line, t.col, "expression nested too deeply");
  expr_t *e = accept_ident(P, "not") ? node2(P, E_NOT, 0, &t, parse_not(P), NULL) : parse_cmp(P);
  P->depth--;
  return e;
}

static expr_t *parse_and(parser_t *P) {
  expr_t *l = parse_not(P);
  for (;;) {
    tok_t t = P->tok;
    if (!accept_ident(P, "and")) return l;
    l = node2(P, E_AND, 0, &t, l, parse_not(P));
  }
}

static expr_t *parse_expr(parser_t *P) {
  if (++P->depth > MAX_DEPTH) fail_at(P, P->tok.line, P->tok.col, "expression nested too deeply");
  expr_t *l = parse_and(P);
  for (;;) {
    tok_t t = P->tok;
    if (!accept_ident(P, "or")) break;
    l = node2(P, E_OR, 0, &t, l, parse_and(P));
  }
  P->depth--;
  return l;
}

static int has_var(const expr_t *e) {
  if (!e) return 0;
  if (e->kind == E_VAR) return 1;
  for (int i = 0; i < e->nkids; i++)
    if (has_var(e->kids[i])) return 1;
  return 0;
}

/* Split a pattern's where-clause: conjuncts without variables stay conditions on the past
 * event; `field == var` conjuncts become keys. Returns the static part (or NULL). */
static expr_t *split_where(parser_t *P, expr_t *e, int *key_fields, int *key_vars, int *nkeys) {
  if (e->kind == E_AND) {
    expr_t *a = split_where(P, e->kids[0], key_fields, key_vars, nkeys);
    expr_t *b = split_where(P, e->kids[1], key_fields, key_vars, nkeys);
    if (!a || !b) return a ? a : b;
    e->kids[0] = a;
    e->kids[1] = b;
    return e;
  }
  if (!has_var(e)) return e;
  if (e->kind == E_CMP && e->op == CMP_EQ) {
    expr_t *f = e->kids[0], *v = e->kids[1];
    if (f->kind == E_VAR) f = e->kids[1], v = e->kids[0];
    if (f->kind == E_FIELD && v->kind == E_VAR) {
      if (*nkeys == MAX_KEYS) fail_at(P, e->line, e->col, "at most %d variable comparisons in a pattern", MAX_KEYS);
      key_fields[*nkeys] = f->idx;
      key_vars[(*nkeys)++] = v->idx;
      return NULL;
    }
  }
  fail_at(P, e->line, e->col,
          "a pattern may use a let variable only as 'field == variable' joined by 'and'");
}

/* TYPE ["name"] [where expr]; the pattern is deduplicated by its canonical text. */
static int parse_pattern(parser_t *P, pat_use_t *use) {
  size_t c0 = P->canon.len;
  tok_t t = P->tok;
  int type = -1;
  for (int i = 0; i < PROFILE_TYPES; i++)
    if (is_ident(P, type_names[i])) type = i;
  if (type < 0) expected(P, "an event type (track, page, screen, identify, group, alias)");
  next(P);
  const char *name = NULL;
  if (P->tok.kind == T_STR) {
    if (type != PROFILE_TRACK)
      fail_at(P, P->tok.line, P->tok.col, "only track events have names; match other types with where");
    name = string_lit(P, "an event name");
  }
  expr_t *cond = NULL;
  int kf[MAX_KEYS], kv[MAX_KEYS], nk = 0;
  if (accept_ident(P, "where")) {
    P->in_pattern = 1;
    expr_t *w = parse_expr(P);
    P->in_pattern = 0;
    cond = split_where(P, w, kf, kv, &nk);
  }
  uint64_t fp = XXH3_64bits(P->canon.data + c0, P->canon.len - c0);
  struct hslot *slot = lookup(P, 3, NULL, fp);
  int idx = slot->used ? slot->v : -1;
  if (idx < 0) {
    claim(P, slot, (int)P->npats);
    pattern_t *pt = PUSH(P, pats, npats, cappats);
    memset(pt, 0, sizeof *pt);
    pt->fp = fp;
    pt->type = type;
    pt->name = name;
    pt->cond = cond;
    pt->nkeys = nk;
    pt->key_fields = rules_arena_alloc(P->set, (size_t)(nk + 1) * sizeof(int));
    memcpy(pt->key_fields, kf, (size_t)nk * sizeof(int));
    idx = (int)P->npats - 1;
  }
  use->pat = idx;
  use->nkeys = nk;
  use->vars = rules_arena_alloc(P->set, (size_t)(nk + 1) * sizeof(int));
  memcpy(use->vars, kv, (size_t)nk * sizeof(int));
  (void)t;
  return idx;
}

/* ---- declarations ---- */

static void parse_payload(parser_t *P, rule_action_t *a) {
  if (!accept_punct(P, "{")) return;
  payload_field_t f[MAX_FIELDS];
  int n = 0;
  while (!is_punct(P, "}")) {
    tok_t t = P->tok;
    if (n == MAX_FIELDS) fail_at(P, t.line, t.col, "at most %d payload fields", MAX_FIELDS);
    const char *key;
    if (t.kind == T_IDENT) key = arena_strndup(P->set, next(P).p, t.n);
    else key = string_lit(P, "a payload field name");
    for (int i = 0; i < n; i++)
      if (!strcmp(f[i].key, key)) fail_at(P, t.line, t.col, "duplicate payload field '%s'", key);
    want_punct(P, ":");
    f[n].key = key;
    f[n++].val = parse_expr(P);
    if (!accept_punct(P, ",")) break;
  }
  want_punct(P, "}");
  a->nfields = n;
  a->fields = rules_arena_alloc(P->set, (size_t)(n + 1) * sizeof *f);
  memcpy(a->fields, f, (size_t)n * sizeof *f);
}

static void parse_action(parser_t *P, rule_action_t *a) {
  tok_t t = P->tok;
  if (accept_ident(P, "offer")) a->kind = ACTION_OFFER;
  else if (accept_ident(P, "webhook")) a->kind = ACTION_WEBHOOK;
  else if (accept_ident(P, "emit")) a->kind = ACTION_EMIT;
  else if (accept_ident(P, "segment")) {
    if (accept_ident(P, "add")) a->kind = ACTION_SEGMENT_ADD;
    else if (accept_ident(P, "remove")) a->kind = ACTION_SEGMENT_REMOVE;
    else expected(P, "add or remove");
  } else {
    expected(P, "an action (offer, webhook, emit, segment add, segment remove)");
  }
  tok_t nt = P->tok;
  a->target = string_lit(P, "a name in quotes");
  if (!*a->target) fail_at(P, nt.line, nt.col, "empty name");
  if (a->kind == ACTION_WEBHOOK) {
    struct hookref *r = PUSH(P, refs, nrefs, caprefs);
    r->name = a->target, r->line = nt.line, r->col = nt.col, r->file = P->file;
  }
  if (a->kind != ACTION_SEGMENT_ADD && a->kind != ACTION_SEGMENT_REMOVE) parse_payload(P, a);
  (void)t;
}

/* Register a declaration's name (kind: 0 rule, 1 alert, 2 webhook); unique across all. */
static void check_name(parser_t *P, const char *name, const tok_t *at, int kind) {
  if (!*name) fail_at(P, at->line, at->col, "empty name");
  struct hslot *e = lookup(P, 1, name, 0);
  if (e->used) fail_at(P, at->line, at->col, "'%s' is declared twice", name);
  if (P->nrules + P->nalerts + P->nhooks >= RULES_MAX_RULES)
    fail_at(P, at->line, at->col, "more than %d declarations", RULES_MAX_RULES);
  claim(P, e, kind);
}

static void parse_rule(parser_t *P) {
  buf_reset(&P->canon);
  tok_t at = P->tok;
  const char *name = string_lit(P, "a rule name in quotes");
  check_name(P, name, &at, 0);
  want_punct(P, "{");
  rule_t r = {.name = name};
  trigger_t trig[16];
  expr_t *lets[MAX_LETS];
  rule_action_t acts[8];
  int seen_when = 0, seen_wait = 0, seen_cap = 0, seen_limit = 0;
  P->nlets = 0;
  while (!accept_punct(P, "}")) {
    tok_t c = P->tok;
    if (accept_ident(P, "on")) {
      do {
        if (r.ntrig == 16) fail_at(P, P->tok.line, P->tok.col, "at most 16 triggers");
        int type = -1;
        for (int i = 0; i < PROFILE_TYPES; i++)
          if (is_ident(P, type_names[i])) type = i;
        if (type < 0) expected(P, "an event type (track, page, screen, identify, group, alias)");
        next(P);
        trig[r.ntrig].type = type;
        trig[r.ntrig].name = NULL;
        if (P->tok.kind == T_STR) {
          if (type != PROFILE_TRACK)
            fail_at(P, P->tok.line, P->tok.col, "only track events have names; match other types with when");
          trig[r.ntrig].name = string_lit(P, "an event name");
        }
        r.ntrig++;
      } while (accept_punct(P, ","));
    } else if (accept_ident(P, "let")) {
      tok_t v = P->tok;
      if (v.kind != T_IDENT) expected(P, "a variable name");
      next(P);
      char vn[64];
      if (v.n >= sizeof vn) fail_at(P, v.line, v.col, "variable name too long");
      memcpy(vn, v.p, v.n);
      vn[v.n] = 0;
      static const char *const reserved[] = {"event", "type", "userId", "anonymousId", "now",
                                             "properties", "context", "traits", "profile",
                                             "time", "true", "false", "null", "and", "or",
                                             "not", "in", "on", "let", "when", "wait",
                                             "unless", "do", "cap", "limit", "where", "rule"};
      for (size_t i = 0; i < sizeof reserved / sizeof *reserved; i++)
        if (!strcmp(vn, reserved[i])) fail_at(P, v.line, v.col, "'%s' is a reserved name", vn);
      for (int i = 0; i < P->nlets; i++)
        if (!strcmp(P->let_names[i], vn)) fail_at(P, v.line, v.col, "'%s' is already defined", vn);
      if (P->nlets == MAX_LETS) fail_at(P, v.line, v.col, "at most %d variables", MAX_LETS);
      want_punct(P, "=");
      lets[P->nlets] = parse_expr(P);
      P->let_names[P->nlets++] = arena_strndup(P->set, vn, strlen(vn));
    } else if (accept_ident(P, "when")) {
      if (seen_when++) fail_at(P, c.line, c.col, "a rule has one 'when' (join conditions with and)");
      r.when = parse_expr(P);
    } else if (accept_ident(P, "wait")) {
      if (seen_wait++) fail_at(P, c.line, c.col, "a rule has one 'wait'");
      r.wait_us = duration(P);
      if (!accept_ident(P, "unless")) expected(P, "'unless' and the event that cancels the wait");
      parse_pattern(P, &r.unless);
      pattern_t *pt = &P->pats[r.unless.pat];
      if (pt->max_window_us < r.wait_us) pt->max_window_us = r.wait_us;
    } else if (accept_ident(P, "do")) {
      if (r.nactions == 8) fail_at(P, c.line, c.col, "at most 8 actions in a rule");
      memset(&acts[r.nactions], 0, sizeof acts[0]);
      parse_action(P, &acts[r.nactions++]);
    } else if (accept_ident(P, "cap")) {
      if (seen_cap++) fail_at(P, c.line, c.col, "a rule has one 'cap'");
      tok_t nt = P->tok;
      r.cap_n = count_lit(P, 1000000);
      if (!accept_ident(P, "per")) expected(P, "'per'");
      if (accept_ident(P, "user")) {
        r.cap_scope = CAP_USER;
        if (!accept_ident(P, "per")) expected(P, "'per' and a duration (cap N per user per 24h)");
        r.cap_window_us = duration(P);
        if (r.cap_n > RULES_CAP_MAX)
          fail_at(P, nt.line, nt.col, "a per-user cap allows at most %d fires per window", RULES_CAP_MAX);
      } else if (accept_ident(P, "session")) {
        r.cap_scope = CAP_SESSION;
      } else {
        expected(P, "user or session");
      }
    } else if (accept_ident(P, "limit")) {
      if (seen_limit++) fail_at(P, c.line, c.col, "a rule has one 'limit'");
      r.limit_n = count_lit(P, 1000000000);
      if (!accept_ident(P, "per")) expected(P, "'per'");
      if (accept_ident(P, "second")) r.limit_per_us = 1000000;
      else if (accept_ident(P, "minute")) r.limit_per_us = 60000000;
      else if (accept_ident(P, "hour")) r.limit_per_us = 3600000000LL;
      else if (accept_ident(P, "day")) r.limit_per_us = 86400000000LL;
      else if (P->tok.kind == T_DUR) r.limit_per_us = duration(P);
      else expected(P, "second, minute, hour, day or a duration");
    } else {
      expected(P, "a clause (on, let, when, wait, do, cap, limit) or '}'");
    }
  }
  if (!r.ntrig) fail_at(P, at.line, at.col, "rule '%s' has no 'on' clause", name);
  if (!r.nactions) fail_at(P, at.line, at.col, "rule '%s' has no 'do' clause", name);
  r.trig = rules_arena_alloc(P->set, (size_t)r.ntrig * sizeof *trig);
  memcpy(r.trig, trig, (size_t)r.ntrig * sizeof *trig);
  r.nlets = P->nlets;
  r.lets = rules_arena_alloc(P->set, (size_t)(r.nlets + 1) * sizeof *lets);
  memcpy(r.lets, lets, (size_t)r.nlets * sizeof *lets);
  r.let_names = rules_arena_alloc(P->set, (size_t)(r.nlets + 1) * sizeof(char *));
  memcpy(r.let_names, P->let_names, (size_t)r.nlets * sizeof(char *));
  r.actions = rules_arena_alloc(P->set, (size_t)r.nactions * sizeof *acts);
  memcpy(r.actions, acts, (size_t)r.nactions * sizeof *acts);
  r.fp = XXH3_64bits(P->canon.data, P->canon.len);
  r.name_h = XXH3_64bits(name, strlen(name));
  *PUSH(P, rules, nrules, caprules) = r;
  P->nlets = 0;
}

static void parse_webhook(parser_t *P) {
  tok_t at = P->tok;
  rules_webhook_t h = {.name = string_lit(P, "a webhook name in quotes"), .timeout_us = 5000000};
  check_name(P, h.name, &at, 2);
  want_punct(P, "{");
  while (!accept_punct(P, "}")) {
    tok_t c = P->tok;
    if (accept_ident(P, "url")) {
      tok_t u = P->tok;
      h.url = string_lit(P, "a URL in quotes");
      if (strncmp(h.url, "http://", 7) && strncmp(h.url, "https://", 8))
        fail_at(P, u.line, u.col, "expected an http:// or https:// URL");
      for (const char *q = h.url; *q; q++)
        if ((unsigned char)*q <= ' ') fail_at(P, u.line, u.col, "a URL cannot contain spaces or controls");
    } else if (accept_ident(P, "secret")) {
      if (accept_ident(P, "env")) {
        h.secret_env = string_lit(P, "an environment variable name");
        const char *v = getenv(h.secret_env);
        h.secret = arena_strndup(P->set, v ? v : "", v ? strlen(v) : 0);
      } else {
        h.secret = string_lit(P, "a secret in quotes, or env \"VARIABLE\"");
      }
    } else if (accept_ident(P, "timeout")) {
      h.timeout_us = duration(P);
      if (h.timeout_us > 600000000LL) fail_at(P, c.line, c.col, "timeout longer than 10m");
    } else {
      expected(P, "url, secret, timeout or '}'");
    }
  }
  if (!h.url) fail_at(P, at.line, at.col, "webhook '%s' has no url", h.name);
  if (!h.secret) h.secret = "";
  *PUSH(P, hooks, nhooks, caphooks) = h;
}

static void parse_alert(parser_t *P) {
  buf_reset(&P->canon);
  tok_t at = P->tok;
  alert_def_t a = {0};
  rules_alert_t *p = &a.pub;
  p->name = string_lit(P, "an alert name in quotes");
  check_name(P, p->name, &at, 1);
  p->every_us = 10000000;
  p->for_n = 1;
  int have_thr = 0, have_clear = 0;
  want_punct(P, "{");
  while (!accept_punct(P, "}")) {
    tok_t c = P->tok;
    if (accept_ident(P, "kpi")) p->kpi = string_lit(P, "a KPI name in quotes");
    else if (accept_ident(P, "segment")) p->segment = string_lit(P, "a segment name");
    else if (accept_ident(P, "campaign")) p->campaign = string_lit(P, "a campaign name");
    else if (accept_ident(P, "webhook")) {
      tok_t nt = P->tok;
      p->webhook = string_lit(P, "a webhook name in quotes");
      struct hookref *r = PUSH(P, refs, nrefs, caprefs);
      r->name = p->webhook, r->line = nt.line, r->col = nt.col, r->file = P->file;
    }
    else if (accept_ident(P, "over")) p->window_us = duration(P);
    else if (accept_ident(P, "every")) {
      p->every_us = duration(P);
      if (p->every_us < 1000000) fail_at(P, c.line, c.col, "evaluate at most once a second");
    } else if (accept_ident(P, "below") || accept_ident(P, "above")) {
      if (have_thr++) fail_at(P, c.line, c.col, "an alert has one threshold");
      p->above = c.p[0] == 'a';
      p->threshold = number(P, "a threshold number (15% or 0.15)");
    } else if (accept_ident(P, "clear")) {
      tok_t v = P->tok;
      p->clear = number(P, "a number");
      have_clear = v.line;
      if (!have_clear) have_clear = 1;
    } else if (accept_ident(P, "for")) {
      p->for_n = count_lit(P, 1000);
    } else {
      expected(P, "kpi, segment, campaign, webhook, over, every, below, above, clear, for or '}'");
    }
  }
  if (!p->kpi) fail_at(P, at.line, at.col, "alert '%s' has no kpi", p->name);
  if (!p->window_us) fail_at(P, at.line, at.col, "alert '%s' has no window (over 1h)", p->name);
  if (!have_thr) fail_at(P, at.line, at.col, "alert '%s' has no threshold (below X or above X)", p->name);
  if (!have_clear) p->clear = p->threshold;
  else if (p->above ? p->clear > p->threshold : p->clear < p->threshold)
    fail_at(P, at.line, at.col, "alert '%s': clear must be on the good side of the threshold (%s %g)",
            p->name, p->above ? "at most" : "at least", p->threshold);
  a.fp = XXH3_64bits(P->canon.data, P->canon.len);
  *PUSH(P, alerts, nalerts, capalerts) = a;
}

static void parse_file(parser_t *P) {
  lex(P);
  while (P->tok.kind != T_EOF) {
    if (accept_ident(P, "rule")) parse_rule(P);
    else if (accept_ident(P, "webhook")) parse_webhook(P);
    else if (accept_ident(P, "alert")) parse_alert(P);
    else expected(P, "rule, alert or webhook");
  }
}

/* ---- public ---- */

static void free_parser(parser_t *P) {
  free(P->rules);
  free(P->pats);
  free(P->hooks);
  free(P->alerts);
  free(P->paths);
  free(P->refs);
  free(P->tab);
  buf_free(&P->canon);
}

#define MOVE(P, s, arr, n) \
  ((s)->n = (P)->n, (s)->arr = rules_arena_alloc((s), ((P)->n + 1) * sizeof *(P)->arr), \
   (P)->n ? memcpy((void *)(s)->arr, (P)->arr, (P)->n * sizeof *(P)->arr) : NULL)

rules_set_t *rules_set_parse(const rules_src_t *srcs, size_t n, char *err, size_t errlen) {
  rules_set_t *s = xcalloc(1, sizeof *s);
  parser_t P = {.set = s, .err = err, .errlen = errlen};
  if (err && errlen) err[0] = 0;
  if (setjmp(P.jb)) {
    free_parser(&P);
    rules_set_free(s);
    return NULL;
  }
  for (size_t i = 0; i < n; i++) {
    P.file = srcs[i].name ? srcs[i].name : "rules";
    P.text = srcs[i].text ? srcs[i].text : "";
    P.len = srcs[i].text ? srcs[i].len : 0;
    P.pos = 0;
    P.line = P.col = 1;
    if (P.len > RULES_MAX_FILE_BYTES) fail_at(&P, 1, 1, "file larger than %u bytes", RULES_MAX_FILE_BYTES);
    if (memchr(P.text, 0, P.len)) fail_at(&P, 1, 1, "file contains a NUL byte");
    parse_file(&P);
  }
  for (size_t i = 0; i < P.nrefs; i++) {
    struct hslot *e = lookup(&P, 1, P.refs[i].name, 0);
    if (!e->used || e->v != 2) {
      P.file = P.refs[i].file;
      fail_at(&P, P.refs[i].line, P.refs[i].col, "no webhook named '%s' is declared", P.refs[i].name);
    }
  }
  MOVE(&P, s, rules, nrules);
  MOVE(&P, s, pats, npats);
  MOVE(&P, s, hooks, nhooks);
  MOVE(&P, s, alerts, nalerts);
  MOVE(&P, s, paths, npaths);
  s->nchunks = (s->npaths + JSCAN_MAX_PATHS - 1) / JSCAN_MAX_PATHS;
  s->chunks = rules_arena_alloc(s, (s->nchunks + 1) * sizeof *s->chunks);
  for (size_t c = 0; c < s->nchunks; c++) {
    size_t k = s->npaths - c * JSCAN_MAX_PATHS;
    if (k > JSCAN_MAX_PATHS) k = JSCAN_MAX_PATHS;
    s->chunks[c] = jscan_compile(s->paths + c * JSCAN_MAX_PATHS, k);
    if (!s->chunks[c]) {
      P.file = "rules";
      fail_at(&P, 1, 1, "a field path is too deep");
    }
  }
  rules_index_build(s);
  free_parser(&P);
  return s;
}

