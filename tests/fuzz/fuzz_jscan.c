/* Fuzz target: one-pass JSON field extraction on hostile bytes. Every extracted string
 * must decode, and every document jscan accepts must also be accepted by cJSON (jscan is
 * never the more lenient parser of the two). The trusted scan runs on the same bytes: it
 * must never read outside them, keep its spans inside them, and give exactly what the
 * validating scan gives on every document that one accepts. */
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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  check_trusted(data, size);
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
