/* Fuzz target: one-pass JSON field extraction on hostile bytes. Every extracted string
 * must decode, and every document jscan accepts must also be accepted by cJSON (jscan is
 * never the more lenient parser of the two). The trusted scan runs on the same bytes: it
 * must never read outside them, keep its spans inside them, and give exactly what the
 * validating scan gives on every document that one accepts. Indexing the top-level
 * members while recording one array member's elements must agree with indexing them
 * and then walking that array. Every object a tape records must hold exactly the members
 * the trusted indexer finds in its bytes. */
#include <cjson/cJSON.h>
#include <stdint.h>
#include <string.h>

#include "jscan.h"

static const char *const paths[] = {"type", "event", "userId", "anonymousId", "properties.revenue",
                                    "context.page.url", "context", "a.b",
                                    /* around the 16-byte key register's limit */
                                    "k23456789abcdef", "k23456789abcdefg", "a.k23456789abcdefgh"};

/* On a validated object, the trusted indexer must find exactly the same members. */
static void check_trusted(const uint8_t *data, size_t size) {
  static jscan_member_t a[64], b[64];
  long na = jscan_members((const char *)data, size, a, 64);
  if (na < 0) return;
  long nb = jscan_members_trusted((const char *)data, size, b, 64);
  if (na != nb) __builtin_trap();
  for (long i = 0; i < na; i++) {
    if (a[i].key != b[i].key || a[i].keylen != b[i].keylen || a[i].key_escaped != b[i].key_escaped ||
        a[i].val.type != b[i].val.type || a[i].val.p != b[i].val.p || a[i].val.n != b[i].val.n ||
        a[i].val.escaped != b[i].val.escaped)
      __builtin_trap();
    if (a[i].val.type == JSCAN_ARRAY) { /* elements: trusted iteration sees every one */
      size_t pos = 0;
      jscan_val_t el;
      while (jscan_array_next(&a[i].val, &pos, &el) == 1)
        if (el.p < a[i].val.p || el.p + el.n > a[i].val.p + a[i].val.n) __builtin_trap();
    }
  }
}

/* The objects t recorded: each one's members as jscan_members_trusted finds them, the
 * spans inside the document. */
static void check_tape_objects(const jscan_tape_t *t, const uint8_t *data, size_t size) {
  static jscan_member_t b[4096];
  for (size_t i = 0; i < t->nobj; i++) {
    const jscan_obj_t *o = &t->obj[i];
    if (o->p < (const char *)data || o->p + o->n > (const char *)data + size || *o->p != '{')
      __builtin_trap();
    long nb = jscan_members_trusted(o->p, o->n, b, 4096);
    if (nb == -2) continue;
    if (nb != (long)o->count) __builtin_trap();
    for (long k = 0; k < nb; k++) {
      const jscan_member_t *a = &o->members[k];
      if (a->key != b[k].key || a->keylen != b[k].keylen || a->key_escaped != b[k].key_escaped ||
          a->val.type != b[k].val.type || a->val.p != b[k].val.p || a->val.n != b[k].val.n ||
          a->val.escaped != b[k].val.escaped)
        __builtin_trap();
    }
  }
}

/* Recording the nested objects must change nothing else (see check_tape_objects). */
static void check_tape(const uint8_t *data, size_t size) {
  static jscan_member_t a[64], b[64];
  static jscan_tape_t t; /* reused from input to input, as an evdoc does */
  long na = jscan_members((const char *)data, size, a, 64);
  long nb = jscan_members_tape((const char *)data, size, b, 64, &t);
  if (na != nb) __builtin_trap();
  if (na < 0) return;
  for (long i = 0; i < na; i++)
    if (a[i].key != b[i].key || a[i].val.p != b[i].val.p || a[i].val.n != b[i].val.n)
      __builtin_trap();
  check_tape_objects(&t, data, size);
}

/* Recording an array member's elements while validating must change nothing else and
 * record exactly what jscan_array_next walks. The member recorded is named after the
 * document's first array member (or "batch"), so most inputs with arrays exercise it;
 * max varies with the input so that counting past it is exercised too. */
static void check_elems(const uint8_t *data, size_t size) {
  static jscan_member_t a[64], b[64];
  static jscan_elems_t e; /* v reused from input to input, as a server does */
  static jscan_tape_t t;
  e.tape = size % 2 ? &t : NULL; /* with and without the elements' objects */
  long na = jscan_members((const char *)data, size, a, 64);
  char name[64] = "batch";
  long nlen = 5;
  for (long i = 0; i < na; i++)
    if (a[i].val.type == JSCAN_ARRAY) {
      jscan_val_t kv = {JSCAN_STRING, a[i].key, a[i].keylen, a[i].key_escaped, 0};
      nlen = jscan_string(&kv, name, sizeof name);
      if (nlen < 0 || (size_t)nlen != strlen(name)) { /* a bad escape or a NUL */
        memcpy(name, "batch", 6);
        nlen = 5;
      }
      break;
    }
  e.key = name;
  e.keylen = (size_t)nlen;
  e.max = size % 7 == 0 ? SIZE_MAX : size % 7 - 1;
  long nb = jscan_members_elems((const char *)data, size, b, 64, &e);
  if (na != nb) __builtin_trap();
  if (na < 0) return;
  for (long i = 0; i < na; i++)
    if (a[i].key != b[i].key || a[i].keylen != b[i].keylen || a[i].val.type != b[i].val.type ||
        a[i].val.p != b[i].val.p || a[i].val.n != b[i].val.n)
      __builtin_trap();
  const jscan_val_t *want = NULL;
  for (long i = 0; i < na && !want; i++)
    if (jscan_key_is(&a[i], e.key, e.keylen)) want = &a[i].val;
  if (!want) {
    if (e.val.type != JSCAN_NONE || e.n) __builtin_trap();
    return;
  }
  if (e.val.type != want->type || e.val.p != want->p || e.val.n != want->n) __builtin_trap();
  if (e.tape) {
    check_tape_objects(&t, data, size);
    /* Each element's objects: in order, the element itself first when it is one. */
    for (size_t k = 0; k < e.n && k < e.max; k++) {
      uint32_t first = e.obj[2 * k], end = e.obj[2 * k + 1];
      if (first > end || end > t.nobj || (k && first < e.obj[2 * k - 1])) __builtin_trap();
      if (e.v[k].type == JSCAN_OBJECT && first < end && t.obj[first].p != e.v[k].p)
        __builtin_trap();
      if (e.v[k].type == JSCAN_OBJECT && first == end && t.kept < JSCAN_TAPE_MAX) __builtin_trap();
    }
  }
  size_t pos = 0, i = 0;
  jscan_val_t el;
  if (want->type == JSCAN_ARRAY)
    for (; jscan_array_next(want, &pos, &el) == 1; i++) {
      if (i >= e.n || i >= e.max) continue;
      const jscan_val_t *r = &e.v[i];
      if (r->type != el.type || r->p != el.p || r->n != el.n || r->escaped != el.escaped ||
          memcmp(&r->num, &el.num, sizeof el.num))
        __builtin_trap();
    }
  if (i != e.n) __builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  check_trusted(data, size);
  check_elems(data, size);
  check_tape(data, size);
  static jscan_paths_t *ps;
  if (!ps) ps = jscan_compile(paths, sizeof paths / sizeof paths[0]);
  jscan_val_t v[sizeof paths / sizeof paths[0]];
  jscan_val_t t[sizeof paths / sizeof paths[0]];
  int trc = jscan_scan_trusted(ps, (const char *)data, size, t);
  if (trc == 0)
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++)
      if (t[i].type != JSCAN_NONE &&
          (t[i].p < (const char *)data || t[i].p + t[i].n > (const char *)data + size))
        __builtin_trap();
  int rc = jscan_scan(ps, (const char *)data, size, v);
  if (rc != 0) return 0;
  if (trc != 0) __builtin_trap();
  for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++)
    if (t[i].type != v[i].type || t[i].p != v[i].p || t[i].n != v[i].n ||
        t[i].escaped != v[i].escaped || memcmp(&t[i].num, &v[i].num, sizeof v[i].num))
      __builtin_trap();
  for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
    if (v[i].type == JSCAN_NONE) continue;
    if (v[i].p < (const char *)data || v[i].p + v[i].n > (const char *)data + size) __builtin_trap();
    if (v[i].type == JSCAN_STRING) {
      char out[64];
      if (jscan_string(&v[i], out, sizeof out) < 0) __builtin_trap();
    }
  }
  cJSON *j = cJSON_ParseWithLength((const char *)data, size);
  if (!j && !memchr(data, 0, size)) __builtin_trap();
  cJSON_Delete(j);
  return 0;
}
