/* Fuzz target: an untrusted request body through the event path as /v1/batch and the
 * single-event endpoints run it — evdoc load (one-pass JSON validation; for a batch, the
 * elements recorded in that pass, checked against a second walk of the array), Segment
 * validation (event.c), the enrichment chain (enrich.c) and evdoc's spliced output. The
 * first byte picks the endpoint's implied type. Checks: the written event is valid JSON
 * (cJSON parses it), a valid event has an identity, the raw IP never survives, and an
 * element loaded from the objects the body's walk recorded (evdoc_load_indexed) reads,
 * validates and writes as the same bytes indexed by the trusted walk. */

#include <cjson/cJSON.h>
#include <stdint.h>
#include <string.h>

#include "config.h"
#include "enrich.h"
#include "evdoc.h"
#include "event.h"

static config_t cfg;
static enrich_t *chain;
static evdoc_t *body_doc, *ev_doc, *idx_doc, *trusted_doc;

/* Validate both and write them: the same result, the same bytes. */
static void same_as_trusted(void) {
  event_error_t ea, eb;
  int a = event_validate(idx_doc, NULL, &ea), b = event_validate(trusted_doc, NULL, &eb);
  if (a != b || (a && strcmp(ea.message, eb.message))) __builtin_trap();
  if (a) return;
  static const char *const paths[] = {"context", "context.page.url", "properties", "userId"};
  for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
    jscan_val_t x = evdoc_get(idx_doc, paths[i]), y = evdoc_get(trusted_doc, paths[i]);
    if (x.type != y.type || x.n != y.n || (x.n && memcmp(x.p, y.p, x.n))) __builtin_trap();
  }
  buf_t wa = BUF_INIT, wb = BUF_INIT;
  evdoc_write(idx_doc, &wa);
  evdoc_write(trusted_doc, &wb);
  if (wa.len != wb.len || memcmp(wa.data, wb.data, wa.len)) __builtin_trap();
  buf_free(&wa);
  buf_free(&wb);
}

static void one(evdoc_t *ev, const char *implied, const uint8_t *data, size_t size) {
  event_error_t err;
  if (event_validate(ev, implied, &err) != 0) {
    if (!err.code || !err.message[0]) __builtin_trap();
    return;
  }
  char key[1100];
  if (!event_key(ev, key, sizeof key)[0]) __builtin_trap(); /* a valid event has an identity */
  enrich_ctx_t ctx = {1795376225000000LL, "203.0.113.77", "fuzz-agent", NULL, ""};
  enrich_ctx_prepare(&ctx);
  char msg[200];
  if (enrich_event(chain, ev, &ctx, msg, sizeof msg) != 0) return;
  buf_t out = BUF_INIT;
  evdoc_write(ev, &out);
  cJSON *parsed = cJSON_ParseWithLength(out.data, out.len);
  if (!parsed) __builtin_trap(); /* splicing must always give valid JSON */
  cJSON_Delete(parsed);
  if (memmem(out.data, out.len, "203.0.113.77", 12) && !memmem(data, size, "203.0.113.77", 12))
    __builtin_trap(); /* the raw IP must never survive */
  buf_free(&out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (!chain) {
    config_defaults(&cfg);
    chain = enrich_new(&cfg);
    body_doc = evdoc_new();
    ev_doc = evdoc_new();
    idx_doc = evdoc_new();
    trusted_doc = evdoc_new();
  }
  if (size < 1) return 0;
  static const char *implied[] = {NULL, "track", "page", "screen", "identify", "group", "alias"};
  const char *type = implied[data[0] % 7];
  const char *body = (const char *)data + 1;
  if (type) {
    if (evdoc_load(ev_doc, body, size - 1) == 0) one(ev_doc, type, data, size);
    return 0;
  }
  /* As /v1/batch does: the elements are recorded while the body is validated. They must
   * be the "batch" member evdoc_get finds and each element jscan_array_next walks. */
  static jscan_tape_t tape;
  static jscan_elems_t elems = {.key = "batch", .keylen = 5, .tape = &tape};
  elems.max = data[0] / 7 % 4 == 0 ? SIZE_MAX : data[0] / 7 % 4; /* 1..3: counted past max */
  int plain = evdoc_load(body_doc, body, size - 1);
  int lr = evdoc_load_elems(body_doc, body, size - 1, &elems);
  if (lr != plain) __builtin_trap();
  if (lr != 0) return 0;
  jscan_val_t arr = evdoc_get(body_doc, "batch");
  if (arr.type != elems.val.type || arr.p != elems.val.p || arr.n != elems.val.n) __builtin_trap();
  if (arr.type != JSCAN_ARRAY) {
    if (elems.n) __builtin_trap();
    return 0;
  }
  size_t pos = 0, count = 0;
  jscan_val_t el;
  while (jscan_array_next(&arr, &pos, &el) == 1) {
    const char *raw = el.type == JSCAN_STRING ? el.p - 1 : el.p;
    size_t n = el.type == JSCAN_STRING ? el.n + 2 : el.n;
    if (count < elems.max) {
      const jscan_val_t *r = &elems.v[count];
      if (r->type != el.type || r->p != el.p || r->n != el.n || r->escaped != el.escaped ||
          r->num != 0)
        __builtin_trap();
      const uint32_t *o = &elems.obj[2 * count];
      if (o[0] > o[1] || o[1] > tape.nobj) __builtin_trap();
      int a = evdoc_load_indexed(idx_doc, raw, n, tape.obj + o[0], o[1] - o[0]);
      int b = evdoc_load_trusted(trusted_doc, raw, n);
      if (a != b) __builtin_trap();
      if (a == 0) same_as_trusted();
    }
    count++;
    /* every element (also those past max), so the event path sees them all */
    if (evdoc_load(ev_doc, raw, n) == 0) one(ev_doc, NULL, data, size);
  }
  if (count != elems.n) __builtin_trap();
  return 0;
}
