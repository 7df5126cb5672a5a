/* uaparse: uap-core user-agent parsing with PCRE2 and a bounded cache (see uaparse.h).
 *
 * uaparse_open reads regexes.yaml with libfyaml into three rule lists and compiles each
 * regex once. uaparse_match runs the lists (first match wins), filling fields from the
 * rule's replacement templates or, without one, from the capture group of the same
 * position. uaparse_parse puts the cache in front and derives sluice's ua_info_t. */
#include "uaparse.h"

#include "util/yaml.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <errno.h>
#include <libfyaml.h>
#include <pcre2.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "util/rand.h"

/* Limits on one regex match. Subjects are at most UAPARSE_MAX_UA bytes, so these only
 * cut off pathological backtracking; uap-core's own patterns stay far below them. */
#define MATCH_LIMIT 100000
#define DEPTH_LIMIT 2000
#define HEAP_LIMIT_KIB 4096
#define JIT_STACK_MAX (512 * 1024)
#define OVECTOR_PAIRS 20

enum { LIST_UA, LIST_OS, LIST_DEVICE, LIST_COUNT };
#define MAX_FIELDS 5

/* The YAML key of each list and the replacement keys of its fields, in field order. */
static const struct {
  const char *key;
  int nfields;
  const char *repl[MAX_FIELDS];
} list_spec[LIST_COUNT] = {
    {"user_agent_parsers", 4, {"family_replacement", "v1_replacement", "v2_replacement",
                               "v3_replacement"}},
    {"os_parsers", 5, {"os_replacement", "os_v1_replacement", "os_v2_replacement",
                       "os_v3_replacement", "os_v4_replacement"}},
    {"device_parsers", 3, {"device_replacement", "brand_replacement", "model_replacement"}},
};

typedef struct rule {
  pcre2_code *re;
  char *repl[MAX_FIELDS]; /* owned; NULL = take the capture group */
} rule_t;

typedef struct rule_list {
  rule_t *rules;
  size_t n, cap;
} rule_list_t;

/* Cache geometry: sets of WAYS slots. The tags of a set sit together (WAYS * 32 bytes)
 * so a lookup scans a few cache lines; the payloads live in a parallel array. */
#define WAYS 8

typedef struct tag {
  uint64_t lo, hi; /* XXH3-128 of the truncated user agent */
  uint64_t used;   /* access stamp (p->tick) of the last hit or fill; 0 = empty */
  uint32_t len;    /* length of the truncated user agent */
} tag_t;

/* The JSON objects uaparse_enrich_step sets for a cached user agent, rendered when the
 * slot is filled: a hit then costs three edits, not three objects built and escaped.
 * The three texts lie back to back in json; a length of 0 means they did not fit (rare:
 * long, escaped names) and the step renders them itself. */
#define FRAG_BYTES 240
typedef struct frag {
  uint16_t browser, os, device; /* lengths in json */
  char json[FRAG_BYTES];
} frag_t;

struct uaparse {
  rule_list_t lists[LIST_COUNT];
  pcre2_match_context *mctx;
  pcre2_jit_stack *jit_stack;
  pcre2_match_data *md;
  tag_t *tags;           /* WAYS * (set_mask + 1); set s is tags[WAYS*s ..] */
  ua_info_t *infos;      /* parallel to tags */
  frag_t *frags;         /* parallel to tags */
  buf_t render;          /* scratch for filling a frag */
  size_t set_mask;
  uint64_t tick;         /* access counter for LRU within a set */
  uint64_t seed;
  uint64_t hits, misses;
};

__attribute__((format(printf, 3, 4))) static void fmt(char *err, size_t errlen,
                                                       const char *f, ...) {
  if (!err || !errlen) return;
  va_list ap;
  va_start(ap, f);
  vsnprintf(err, errlen, f, ap);
  va_end(ap);
}

/* ---- Loading ---- */

/* 1-based line and column of n, or of its first scalar for a mapping or list
 * (libfyaml keeps positions on tokens, and only scalars expose theirs); 0 unknown. */

/* The scalar text of n (NUL-terminated, owned by the document), or NULL when n is
 * absent, null or not a scalar. */
static const char *scalar(struct fy_node *n) {
  if (!n || fy_node_get_type(n) != FYNT_SCALAR) return NULL;
  if (fy_node_is_null(n)) return NULL;
  return fy_node_get_scalar0(n);
}

static void rule_clear(rule_t *r) {
  pcre2_code_free(r->re);
  for (int i = 0; i < MAX_FIELDS; i++) free(r->repl[i]);
}

/* Compile one list item into a rule appended to l. Returns 0 or -1 with err filled. */
static int load_rule(rule_list_t *l, int which, struct fy_node *item, const char *path,
                     char *err, size_t errlen) {
  int line, col;
  yaml_mark(item, &line, &col);
  if (fy_node_get_type(item) != FYNT_MAPPING) {
    fmt(err, errlen, "%s:%d:%d: %s entry is not a mapping", path, line, col,
        list_spec[which].key);
    return -1;
  }
  struct fy_node *rn = fy_node_mapping_lookup_by_string(item, "regex", -1);
  size_t rlen = 0;
  const char *rx = rn && fy_node_get_type(rn) == FYNT_SCALAR ? fy_node_get_scalar(rn, &rlen)
                                                             : NULL;
  if (!rx) {
    fmt(err, errlen, "%s:%d:%d: %s entry has no regex", path, line, col, list_spec[which].key);
    return -1;
  }
  uint32_t opts = 0;
  const char *flag = scalar(fy_node_mapping_lookup_by_string(item, "regex_flag", -1));
  if (flag && strchr(flag, 'i')) opts |= PCRE2_CASELESS;

  int ecode;
  PCRE2_SIZE eoff;
  pcre2_code *re = pcre2_compile((PCRE2_SPTR)rx, rlen, opts, &ecode, &eoff, NULL);
  if (!re) {
    PCRE2_UCHAR msg[160];
    pcre2_get_error_message(ecode, msg, sizeof msg);
    yaml_mark(rn, &line, &col);
    fmt(err, errlen, "%s:%d:%d: regex rejected at offset %zu: %s", path, line, col,
        (size_t)eoff, (const char *)msg);
    return -1;
  }
  /* JIT is an optimisation: where the platform forbids it, the interpreter runs. */
  (void)pcre2_jit_compile(re, PCRE2_JIT_COMPLETE);

  if (l->n == l->cap) {
    size_t cap = l->cap ? l->cap * 2 : 256;
    rule_t *nr = realloc(l->rules, cap * sizeof *nr);
    if (!nr) {
      pcre2_code_free(re);
      fmt(err, errlen, "%s: out of memory", path);
      return -1;
    }
    l->rules = nr;
    l->cap = cap;
  }
  rule_t *r = &l->rules[l->n++];
  memset(r, 0, sizeof *r);
  r->re = re;
  for (int i = 0; i < list_spec[which].nfields; i++) {
    struct fy_node *v = fy_node_mapping_lookup_by_string(item, list_spec[which].repl[i], -1);
    if (v && fy_node_get_type(v) != FYNT_SCALAR) {
      yaml_mark(v, &line, &col);
      fmt(err, errlen, "%s:%d:%d: %s must be a string", path, line, col,
          list_spec[which].repl[i]);
      return -1;
    }
    const char *s = scalar(v);
    /* An empty replacement counts as none, as in the reference implementations. */
    if (s && *s && !(r->repl[i] = strdup(s))) {
      fmt(err, errlen, "%s: out of memory", path);
      return -1;
    }
  }
  return 0;
}

static int load_regexes(uaparse_t *p, const char *path, char *err, size_t errlen) {
  int rc = -1;
  struct fy_document *doc = yaml_load(path, "user-agent regexes", err, errlen);
  if (!doc) return -1;
  struct fy_node *root = fy_document_root(doc);
  if (!root || fy_node_get_type(root) != FYNT_MAPPING) {
    fmt(err, errlen, "%s:1:1: expected a mapping with user_agent_parsers, os_parsers "
                     "and device_parsers", path);
    goto done;
  }
  size_t total = 0;
  for (int w = 0; w < LIST_COUNT; w++) {
    struct fy_node *seq = fy_node_mapping_lookup_by_string(root, list_spec[w].key, -1);
    if (!seq) continue;
    if (fy_node_get_type(seq) != FYNT_SEQUENCE) {
      int line, col;
      yaml_mark(seq, &line, &col);
      fmt(err, errlen, "%s:%d:%d: %s must be a list", path, line, col, list_spec[w].key);
      goto done;
    }
    void *it = NULL;
    struct fy_node *item;
    while ((item = fy_node_sequence_iterate(seq, &it)))
      if (load_rule(&p->lists[w], w, item, path, err, errlen) != 0) goto done;
    total += p->lists[w].n;
  }
  if (total == 0) {
    fmt(err, errlen, "%s: no user_agent_parsers, os_parsers or device_parsers entries",
        path);
    goto done;
  }
  rc = 0;
done:
  fy_document_destroy(doc);
  return rc;
}

/* ---- Lifecycle ---- */

uaparse_t *uaparse_open(const char *regexes_path, size_t cache_entries, char *err,
                        size_t errlen) {
  const char *path = regexes_path ? regexes_path : UAPARSE_DEFAULT_REGEXES;
  if (cache_entries == 0) cache_entries = UAPARSE_DEFAULT_CACHE;
  if (cache_entries > UAPARSE_MAX_CACHE) {
    fmt(err, errlen, "ua cache entries %zu exceeds the maximum %u", cache_entries,
        UAPARSE_MAX_CACHE);
    return NULL;
  }
  size_t slots = WAYS;
  while (slots < cache_entries) slots <<= 1;

  uaparse_t *p = calloc(1, sizeof *p);
  if (!p) goto oom;
  p->tags = calloc(slots, sizeof *p->tags);
  p->infos = calloc(slots, sizeof *p->infos);
  p->frags = calloc(slots, sizeof *p->frags);
  p->mctx = pcre2_match_context_create(NULL);
  p->jit_stack = pcre2_jit_stack_create(32 * 1024, JIT_STACK_MAX, NULL);
  p->md = pcre2_match_data_create(OVECTOR_PAIRS, NULL);
  if (!p->tags || !p->infos || !p->frags || !p->mctx || !p->jit_stack || !p->md) goto oom;
  p->set_mask = slots / WAYS - 1;
  pcre2_set_match_limit(p->mctx, MATCH_LIMIT);
  pcre2_set_depth_limit(p->mctx, DEPTH_LIMIT);
  pcre2_set_heap_limit(p->mctx, HEAP_LIMIT_KIB);
  pcre2_jit_stack_assign(p->mctx, NULL, p->jit_stack);
  rand_bytes(&p->seed, sizeof p->seed);
  if (load_regexes(p, path, err, errlen) != 0) goto fail;
  return p;
oom:
  fmt(err, errlen, "user-agent parser: out of memory");
fail:
  uaparse_free(p);
  return NULL;
}

void uaparse_free(uaparse_t *p) {
  if (!p) return;
  for (int w = 0; w < LIST_COUNT; w++) {
    for (size_t i = 0; i < p->lists[w].n; i++) rule_clear(&p->lists[w].rules[i]);
    free(p->lists[w].rules);
  }
  pcre2_match_data_free(p->md);
  pcre2_jit_stack_free(p->jit_stack);
  pcre2_match_context_free(p->mctx);
  free(p->tags);
  free(p->infos);
  free(p->frags);
  buf_free(&p->render);
  free(p);
}

void uaparse_stats(const uaparse_t *p, uint64_t *hits, uint64_t *misses) {
  if (hits) *hits = p ? p->hits : 0;
  if (misses) *misses = p ? p->misses : 0;
}

/* ---- Matching ---- */

/* A bounded string builder: appends are cut at the capacity, never overflow. */
typedef struct sbuf {
  char *s;
  size_t cap, len;
} sbuf_t;

static void sb_put(sbuf_t *b, const char *s, size_t n) {
  size_t room = b->cap - 1 - b->len;
  if (n > room) n = room;
  memcpy(b->s + b->len, s, n);
  b->len += n;
  b->s[b->len] = '\0';
}

/* The capture group g of the last match (rc from pcre2_match), or NULL when unset. */
static const char *group(const uaparse_t *p, int rc, const char *subj, unsigned g,
                         size_t *n) {
  PCRE2_SIZE *ov = pcre2_get_ovector_pointer(p->md);
  if (g >= (unsigned)rc || ov[2 * g] == PCRE2_UNSET) return NULL;
  *n = ov[2 * g + 1] - ov[2 * g];
  return subj + ov[2 * g];
}

static int is_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

/* Fill out (capacity cap) with field i of rule r after a match: its template with $1..$9
 * expanded (unset groups empty) and trimmed, or without a template capture group i+1.
 * For the device brand there is no default group. */
static void field(const uaparse_t *p, const rule_t *r, int rc, const char *subj, int i,
                  int default_group, char *out, size_t cap) {
  sbuf_t b = {out, cap, 0};
  out[0] = '\0';
  const char *t = r->repl[i];
  size_t n;
  if (!t) {
    const char *g = default_group ? group(p, rc, subj, (unsigned)default_group, &n) : NULL;
    if (g) sb_put(&b, g, n);
    return;
  }
  for (; *t; t++) {
    if (t[0] == '$' && t[1] >= '1' && t[1] <= '9') {
      const char *g = group(p, rc, subj, (unsigned)(t[1] - '0'), &n);
      if (g) sb_put(&b, g, n);
      t++;
    } else {
      sb_put(&b, t, 1);
    }
  }
  size_t start = 0;
  while (start < b.len && is_space(out[start])) start++;
  while (b.len > start && is_space(out[b.len - 1])) b.len--;
  memmove(out, out + start, b.len - start);
  out[b.len - start] = '\0';
}

/* The first rule of list w matching subj, with rc its pcre2_match result; NULL if none.
 * A match that hits a limit counts as no match. */
static const rule_t *first_match(uaparse_t *p, int w, const char *subj, size_t n, int *rc) {
  const rule_list_t *l = &p->lists[w];
  for (size_t i = 0; i < l->n; i++) {
    int r = pcre2_match(l->rules[i].re, (PCRE2_SPTR)subj, n, 0, 0, p->md, p->mctx);
    if (r == 0) r = OVECTOR_PAIRS; /* more groups than the ovector: the first ones count */
    if (r > 0) {
      *rc = r;
      return &l->rules[i];
    }
  }
  return NULL;
}

#define FIELD(r, i, grp, dst) field(p, r, rc, subj, i, grp, dst, sizeof dst)

void uaparse_match(uaparse_t *p, const char *ua, size_t len, ua_parts_t *out) {
  memset(out, 0, sizeof *out);
  const char *subj = ua ? ua : "";
  if (!ua) len = 0;
  if (len > UAPARSE_MAX_UA) len = UAPARSE_MAX_UA;
  int rc;
  const rule_t *r;

  if ((r = first_match(p, LIST_UA, subj, len, &rc))) {
    FIELD(r, 0, 1, out->ua_family);
    FIELD(r, 1, 2, out->ua_major);
    FIELD(r, 2, 3, out->ua_minor);
    FIELD(r, 3, 4, out->ua_patch);
  }
  if ((r = first_match(p, LIST_OS, subj, len, &rc))) {
    FIELD(r, 0, 1, out->os_family);
    FIELD(r, 1, 2, out->os_major);
    FIELD(r, 2, 3, out->os_minor);
    FIELD(r, 3, 4, out->os_patch);
    FIELD(r, 4, 5, out->os_patch_minor);
  }
  if ((r = first_match(p, LIST_DEVICE, subj, len, &rc))) {
    FIELD(r, 0, 1, out->device_family);
    FIELD(r, 1, 0, out->device_brand);
    FIELD(r, 2, 1, out->device_model);
  }
  if (!out->ua_family[0]) strcpy(out->ua_family, "Other");
  if (!out->os_family[0]) strcpy(out->os_family, "Other");
  if (!out->device_family[0]) strcpy(out->device_family, "Other");
}

/* ---- sluice's view: truncation, versions, device type ---- */

/* Length of the valid UTF-8 sequence at s[0..n), or 0 when it is not one. */
static size_t utf8_seq(const unsigned char *s, size_t n) {
  unsigned c = s[0];
  size_t len;
  unsigned min;
  if (c < 0x80) return 1;
  if (c >= 0xc2 && c <= 0xdf) len = 2, min = 0x80;
  else if (c >= 0xe0 && c <= 0xef) len = 3, min = 0x800;
  else if (c >= 0xf0 && c <= 0xf4) len = 4, min = 0x10000;
  else return 0;
  if (n < len) return 0;
  unsigned cp = c & (0x3f >> (len - 1));
  for (size_t i = 1; i < len; i++) {
    if ((s[i] & 0xc0) != 0x80) return 0;
    cp = (cp << 6) | (s[i] & 0x3f);
  }
  if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
  return len;
}

/* Copy src into dst (capacity cap): invalid UTF-8 bytes and control characters become
 * '?', the copy stops before a character that does not fit, surrounding spaces go. */
static void copy_clean(char *dst, size_t cap, const char *src) {
  while (*src == ' ') src++;
  const unsigned char *s = (const unsigned char *)src;
  size_t n = strlen(src), i = 0, o = 0;
  while (i < n) {
    size_t k = utf8_seq(s + i, n - i);
    if (k == 0 || (k == 1 && (s[i] < 0x20 || s[i] == 0x7f))) {
      if (o + 1 >= cap) break;
      dst[o++] = '?';
      i++;
      continue;
    }
    if (o + k >= cap) break;
    memcpy(dst + o, s + i, k);
    o += k;
    i += k;
  }
  while (o > 0 && dst[o - 1] == ' ') o--;
  dst[o] = '\0';
}

/* Join the leading non-empty parts with '.' into dst (capacity cap). */
static void join_version(char *dst, size_t cap, const char *const *parts, int n) {
  char tmp[256];
  sbuf_t b = {tmp, sizeof tmp, 0};
  tmp[0] = '\0';
  for (int i = 0; i < n && parts[i][0]; i++) {
    if (i) sb_put(&b, ".", 1);
    sb_put(&b, parts[i], strlen(parts[i]));
  }
  copy_clean(dst, cap, tmp);
}

static int contains_ci(const char *hay, const char *needle) {
  size_t n = strlen(needle);
  for (; *hay; hay++)
    if (strncasecmp(hay, needle, n) == 0) return 1;
  return 0;
}

static int any_ci(const char *s, const char *const *list) {
  for (; *list; list++)
    if (contains_ci(s, *list)) return 1;
  return 0;
}

static int one_of(const char *s, const char *const *list) {
  for (; *list; list++)
    if (strcmp(s, *list) == 0) return 1;
  return 0;
}

static const char *const tablet_names[] = {
    "iPad", "Tablet", "Kindle", "PlayBook", "Xoom", "Galaxy Tab", "MediaPad", "MatePad",
    "MI PAD", "Nexus 7", "Nexus 9", "Nexus 10", "Lenovo TAB", "SM-T", "WeTab", NULL};
static const char *const console_names[] = {"PlayStation", "Xbox", "Nintendo", "Ouya", NULL};
static const char *const phone_names[] = {"iPhone", "iPod", "Phone", NULL};
static const char *const mobile_oses[] = {
    "iOS", "Android", "Windows Phone", "Windows Mobile", "Windows CE", "BlackBerry OS",
    "Symbian OS", "Symbian^3", "Symbian^3 Anna", "Symbian^3 Belle", "Nokia Series 40",
    "Nokia Series 30 Plus", "Series 60", "KaiOS", "Firefox OS", "Tizen", "Sailfish", "Bada",
    "webOS", "MeeGo", "Maemo", "Brew MP", "BREW", "Ubuntu Touch", NULL};
static const char *const desktop_oses[] = {
    "Windows", "Mac OS X", "Mac OS", "Linux", "Ubuntu", "Chrome OS", "Fedora", "Debian",
    "FreeBSD", "OpenBSD", "NetBSD", "BSD", "Solaris", "Red Hat", "Mandriva", "Gentoo",
    "SUSE", "openSUSE", "Slackware", "Arch Linux", "Linux Mint", "CentOS", "Kubuntu",
    "Xubuntu", NULL};

static const char *device_type(const ua_parts_t *pt, const char *ua, size_t len) {
  const char *fam = pt->device_family, *os = pt->os_family;
  if (strcmp(fam, "Spider") == 0) return "bot";
  int android = strcmp(os, "Android") == 0;
  int mobile_token = ua && memmem(ua, len, "Mobile", 6) != NULL;
  if (any_ci(fam, tablet_names) || any_ci(pt->device_model, tablet_names) ||
      contains_ci(os, "Tablet") || (android && !mobile_token))
    return "tablet";
  if (contains_ci(fam, "TV") || contains_ci(os, "TV") || any_ci(fam, console_names))
    return "other";
  int identified = strcmp(fam, "Other") != 0 && strcmp(fam, "Mac") != 0;
  if (any_ci(fam, phone_names) || one_of(os, mobile_oses) ||
      (identified && strcmp(os, "Other") == 0))
    return "mobile";
  if ((strcmp(fam, "Other") == 0 || strcmp(fam, "Mac") == 0) &&
      (one_of(os, desktop_oses) || strncmp(os, "Windows", 7) == 0))
    return "desktop";
  return "other";
}

void uaparse_info_from_parts(const ua_parts_t *pt, const char *ua, size_t len,
                             ua_info_t *out) {
  memset(out, 0, sizeof *out);
  if (!ua) len = 0;
  if (len > UAPARSE_MAX_UA) len = UAPARSE_MAX_UA;
  copy_clean(out->browser, sizeof out->browser, pt->ua_family);
  const char *uv[] = {pt->ua_major, pt->ua_minor, pt->ua_patch};
  join_version(out->browser_version, sizeof out->browser_version, uv, 3);
  copy_clean(out->os, sizeof out->os, pt->os_family);
  const char *ov[] = {pt->os_major, pt->os_minor, pt->os_patch, pt->os_patch_minor};
  join_version(out->os_version, sizeof out->os_version, ov, 4);
  copy_clean(out->device_family, sizeof out->device_family, pt->device_family);
  copy_clean(out->device_brand, sizeof out->device_brand, pt->device_brand);
  copy_clean(out->device_model, sizeof out->device_model, pt->device_model);
  /* A capture of nothing but spaces or NULs leaves a family empty: that is unknown. */
  if (!out->browser[0]) strcpy(out->browser, "Other");
  if (!out->os[0]) strcpy(out->os, "Other");
  if (!out->device_family[0]) strcpy(out->device_family, "Other");
  out->device_type = device_type(pt, ua, len);
  out->bot = strcmp(out->device_type, "bot") == 0;
}

/* ---- Cached parse ---- */

/* The name/value pairs of the three context objects for info (kv: 16 strings). */
static void context_pairs(const ua_info_t *info, const char **kv) {
  const char *pairs[] = {"name",   info->browser,       "version", info->browser_version,
                         "name",   info->os,            "version", info->os_version,
                         "type",   info->device_type,   "family",  info->device_family,
                         "manufacturer", info->device_brand, "model", info->device_model};
  memcpy(kv, pairs, sizeof pairs);
}

/* Render slot w's context objects into its frag (lengths 0 when they do not fit). */
static void fill_frag(uaparse_t *p, size_t w) {
  const char *kv[16];
  context_pairs(&p->infos[w], kv);
  buf_t *b = &p->render;
  buf_reset(b);
  evdoc_render_strings(b, kv, 2);
  size_t browser = b->len;
  evdoc_render_strings(b, kv + 4, 2);
  size_t os = b->len - browser;
  evdoc_render_strings(b, kv + 8, 4);
  size_t device = b->len - browser - os;
  frag_t *f = &p->frags[w];
  if (b->len > sizeof f->json) {
    f->browser = f->os = f->device = 0;
    return;
  }
  memcpy(f->json, b->data, b->len);
  f->browser = (uint16_t)browser;
  f->os = (uint16_t)os;
  f->device = (uint16_t)device;
}

/* The cache slot holding ua[0..len) (len already capped), parsed and filled on a miss.
 * OUT: *hit. */
static size_t slot_of(uaparse_t *p, const char *ua, size_t len, int *hit) {
  if (len > UAPARSE_MAX_UA) len = UAPARSE_MAX_UA;
  XXH128_hash_t h = XXH3_128bits_withSeed(ua ? ua : "", len, p->seed);
  size_t base = WAYS * ((size_t)h.low64 & p->set_mask), victim = base;
  for (size_t w = base; w < base + WAYS; w++) {
    tag_t *t = &p->tags[w];
    if (t->used && t->lo == h.low64 && t->hi == h.high64 && t->len == len) {
      t->used = ++p->tick;
      p->hits++;
      *hit = 1;
      return w;
    }
    if (t->used < p->tags[victim].used) victim = w; /* an empty slot (0) or the LRU */
  }
  ua_parts_t parts;
  uaparse_match(p, ua, len, &parts);
  uaparse_info_from_parts(&parts, ua, len, &p->infos[victim]);
  fill_frag(p, victim);
  tag_t *t = &p->tags[victim];
  t->lo = h.low64;
  t->hi = h.high64;
  t->len = (uint32_t)len;
  t->used = ++p->tick;
  p->misses++;
  *hit = 0;
  return victim;
}

int uaparse_parse(uaparse_t *p, const char *ua, size_t len, ua_info_t *out) {
  if (!ua) len = 0;
  if (len > UAPARSE_MAX_UA) len = UAPARSE_MAX_UA;
  int hit;
  *out = p->infos[slot_of(p, ua, len, &hit)];
  return hit;
}

/* ---- Enrichment step ---- */

static evdoc_path_t P_CONTEXT = EVDOC_PATH("context"), P_USER_AGENT = EVDOC_PATH("context.userAgent"),
                    P_BOT = EVDOC_PATH("context.bot");
static evdoc_path_t P_PARTS[3] = {EVDOC_PATH("context.browser"), EVDOC_PATH("context.os"),
                                  EVDOC_PATH("context.device")};

int uaparse_enrich_step(evdoc_t *ev, const enrich_ctx_t *ctx, void *state, char *msg,
                        size_t msglen) {
  uaparse_t *p = state;
  if (!p) return 0;
  /* No user agent (most server-side events): nothing to read further, not even context
   * (read second, it says the same then as first: reads change nothing). */
  jscan_val_t uav = evdoc_get_p(ev, &P_USER_AGENT);
  if (uav.type != JSCAN_STRING || evdoc_get_p(ev, &P_CONTEXT).type != JSCAN_OBJECT) return 0;
  int need_browser = evdoc_get_p(ev, &P_PARTS[0]).type == JSCAN_NONE;
  int need_os = evdoc_get_p(ev, &P_PARTS[1]).type == JSCAN_NONE;
  int need_device = evdoc_get_p(ev, &P_PARTS[2]).type == JSCAN_NONE;
  int need_bot = evdoc_get_p(ev, &P_BOT).type == JSCAN_NONE;
  if (!need_browser && !need_os && !need_device && !need_bot) return 0;
  /* Without escapes the client's bytes are the text: no copy. */
  char buf[UAPARSE_MAX_UA + 8];
  const char *ua = uav.p;
  size_t len = uav.n;
  if (uav.escaped) {
    if (jscan_string(&uav, buf, sizeof buf) < 0) return 0;
    ua = buf;
    len = strlen(buf);
  }
  int hit;
  size_t w = slot_of(p, ua, len > UAPARSE_MAX_UA ? UAPARSE_MAX_UA : len, &hit);
  const ua_info_t *info = &p->infos[w];
  const frag_t *f = &p->frags[w];
  const char *kv[16];
  context_pairs(info, kv);
  const int need[] = {need_browser, need_os, need_device};
  const size_t pairs[] = {2, 2, 4}, at[] = {0, f->browser, (size_t)f->browser + f->os};
  const size_t lens[] = {f->browser, f->os, f->device};
  for (int i = 0; i < 3; i++) {
    if (!need[i]) continue;
    if (f->browser)
      evdoc_set_raw_p(ev, &P_PARTS[i], f->json + at[i], lens[i]);
    else
      evdoc_set_strings_p(ev, &P_PARTS[i], kv + 4 * i, pairs[i]);
  }
  if (need_bot) evdoc_set_bool_p(ev, &P_BOT, info->bot);
  return 0;
}
