/* rules_set: the compiled set's memory (arena), its event index, loading a directory of
 * rule files, and accessors (see rules.h and rules_int.h). */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "rules_int.h"
#include "util/mem.h"

/* ---- arena ---- */

struct arena_blk {
  arena_blk_t *next;
  size_t used, cap;
  _Alignas(16) unsigned char data[];
};

void *rules_arena_alloc(rules_set_t *s, size_t n) {
  n = (n + 15) & ~(size_t)15;
  arena_blk_t *b = s->arena;
  if (!b || b->cap - b->used < n) {
    size_t cap = n > 65536 ? n : 65536;
    b = xmalloc(sizeof *b + cap);
    b->next = s->arena;
    b->used = 0;
    b->cap = cap;
    s->arena = b;
  }
  void *p = b->data + b->used;
  b->used += n;
  memset(p, 0, n);
  return p;
}

void rules_set_free(rules_set_t *s) {
  if (!s) return;
  for (size_t i = 0; i < s->nchunks; i++) jscan_paths_free(s->chunks[i]);
  arena_blk_t *b = s->arena;
  while (b) {
    arena_blk_t *n = b->next;
    free(b);
    b = n;
  }
  free(s);
}

/* ---- index ---- */

uint64_t rules_index_hash(int type, const char *name) {
  return XXH3_64bits_withSeed(name ? name : "", name ? strlen(name) : 0, (uint64_t)(type + 2));
}

static index_entry_t *index_slot(rules_set_t *s, int type, const char *name) {
  uint64_t h = rules_index_hash(type, name);
  size_t m = s->index_cap - 1;
  for (size_t i = h & m;; i = (i + 1) & m) {
    index_entry_t *e = &s->index[i];
    if (!e->used) {
      e->used = 1;
      e->h = h;
      e->type = type;
      e->name = name;
      return e;
    }
    if (e->h == h && e->type == type && (e->name == name || (e->name && name && !strcmp(e->name, name))))
      return e;
  }
}

const index_entry_t *rules_index_find(const rules_set_t *s, int type, const char *name) {
  if (!s->index_cap) return NULL;
  uint64_t h = rules_index_hash(type, name);
  size_t m = s->index_cap - 1;
  for (size_t i = h & m;; i = (i + 1) & m) {
    const index_entry_t *e = &s->index[i];
    if (!e->used) return NULL;
    if (e->h == h && e->type == type && (e->name == name || (e->name && name && !strcmp(e->name, name))))
      return e;
  }
}

void rules_index_build(rules_set_t *s) {
  size_t keys = s->npats;
  for (size_t i = 0; i < s->nrules; i++) keys += (size_t)s->rules[i].ntrig;
  if (!keys) return;
  size_t cap = 16;
  while (cap < 2 * keys) cap *= 2;
  s->index_cap = cap;
  s->index = rules_arena_alloc(s, cap * sizeof *s->index);
  /* pass 1: count; pass 2: fill (counts become positions) */
  for (int pass = 0; pass < 2; pass++) {
    for (size_t i = 0; i < s->nrules; i++)
      for (int k = 0; k < s->rules[i].ntrig; k++) {
        index_entry_t *e = index_slot(s, s->rules[i].trig[k].type, s->rules[i].trig[k].name);
        if (pass == 0) e->nrules++;
        else if (!e->nrules || e->rules[e->nrules - 1] != (int)i) e->rules[e->nrules++] = (int)i;
      }
    for (size_t i = 0; i < s->npats; i++) {
      index_entry_t *e = index_slot(s, s->pats[i].type, s->pats[i].name);
      if (pass == 0) e->npats++;
      else e->pats[e->npats++] = (int)i;
    }
    if (pass == 0)
      for (size_t i = 0; i < cap; i++) {
        index_entry_t *e = &s->index[i];
        if (!e->used) continue;
        e->rules = rules_arena_alloc(s, (size_t)(e->nrules + 1) * sizeof(int));
        e->pats = rules_arena_alloc(s, (size_t)(e->npats + 1) * sizeof(int));
        e->nrules = e->npats = 0;
      }
  }
}

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

rules_set_t *rules_set_load_dir(const char *dir, char *err, size_t errlen) {
  return rules_set_load_dir_with(dir, NULL, NULL, 0, err, errlen);
}

rules_set_t *rules_set_load_dir_with(const char *dir, const char *name, const char *text,
                                     size_t len, char *err, size_t errlen) {
  DIR *d = opendir(dir);
  if (!d) {
    snprintf(err, errlen, "%s: %s", dir, strerror(errno));
    return NULL;
  }
  char **names = NULL;
  size_t n = 0, cap = 0;
  struct dirent *de;
  while ((de = readdir(d))) {
    size_t l = strlen(de->d_name);
    if (l < 7 || strcmp(de->d_name + l - 6, ".rules") || de->d_name[0] == '.') continue;
    if (n == cap) {
      cap = cap ? cap * 2 : 16;
      names = xrealloc(names, cap * sizeof *names);
    }
    if (name && !strcmp(de->d_name, name)) continue; /* added below, replaced */
    names[n++] = xstrdup(de->d_name);
  }
  closedir(d);
  if (name) {
    if (n == cap) names = xrealloc(names, (cap = cap * 2 + 1) * sizeof *names);
    names[n++] = xstrdup(name);
  }
  if (n) qsort(names, n, sizeof *names, cmp_str);
  rules_src_t *srcs = xcalloc(n + 1, sizeof *srcs);
  rules_set_t *s = NULL;
  size_t i;
  for (i = 0; i < n; i++) {
    size_t pl = strlen(dir) + strlen(names[i]) + 2;
    char *path = xmalloc(pl);
    snprintf(path, pl, "%s/%s", dir, names[i]);
    srcs[i].name = path;
    if (name && !strcmp(names[i], name)) {
      char *copy = xmalloc(len + 1);
      memcpy(copy, text, len);
      srcs[i].text = copy;
      srcs[i].len = len;
      continue;
    }
    FILE *f = fopen(path, "rb");
    struct stat st;
    if (!f || fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode) ||
        (uint64_t)st.st_size > RULES_MAX_FILE_BYTES) {
      snprintf(err, errlen, "%s: %s", path, !f ? strerror(errno) : "not a regular file under 4 MiB");
      if (f) fclose(f);
      i++;
      goto out;
    }
    char *data = xmalloc((size_t)st.st_size + 1);
    size_t got = fread(data, 1, (size_t)st.st_size, f);
    fclose(f);
    srcs[i].text = data;
    srcs[i].len = got;
  }
  s = rules_set_parse(srcs, n, err, errlen);
out:
  for (size_t k = 0; k < i; k++) {
    free((void *)srcs[k].name);
    free((void *)srcs[k].text);
  }
  for (size_t k = 0; k < n; k++) free(names[k]);
  free(names);
  free(srcs);
  return s;
}

size_t rules_set_rules(const rules_set_t *s) { return s ? s->nrules : 0; }
size_t rules_set_alerts(const rules_set_t *s) { return s ? s->nalerts : 0; }
size_t rules_set_webhooks(const rules_set_t *s) { return s ? s->nhooks : 0; }

const char *rules_set_rule_name(const rules_set_t *s, size_t i) {
  return s && i < s->nrules ? s->rules[i].name : NULL;
}

const rules_webhook_t *rules_set_webhook(const rules_set_t *s, size_t i) {
  return s && i < s->nhooks ? &s->hooks[i] : NULL;
}

const rules_webhook_t *rules_set_webhook_find(const rules_set_t *s, const char *name) {
  for (size_t i = 0; s && i < s->nhooks; i++)
    if (!strcmp(s->hooks[i].name, name)) return &s->hooks[i];
  return NULL;
}

const rules_alert_t *rules_set_alert(const rules_set_t *s, size_t i) {
  return s && i < s->nalerts ? &s->alerts[i].pub : NULL;
}
