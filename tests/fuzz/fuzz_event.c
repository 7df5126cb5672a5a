/* Fuzz target: an untrusted request body through the event path as /v1/batch and the
 * single-event endpoints run it — evdoc load (one-pass JSON validation; for a batch, the
 * elements recorded in that pass, checked against a second walk of the array), Segment
 * validation (event.c), the enrichment chain (enrich.c) and evdoc's spliced output. The
 * first byte picks the endpoint's implied type. Checks: the written event is valid JSON
 * (cJSON parses it), a valid event has an identity, the raw IP never survives. */

#include <cjson/cJSON.h>
#include <stdint.h>
#include <string.h>

#include "config.h"
#include "enrich.h"
#include "evdoc.h"
#include "event.h"

static config_t cfg;
static enrich_t *chain;
static evdoc_t *body_doc, *ev_doc;

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
  static jscan_elems_t elems = {.key = "batch", .keylen = 5};
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
    if (count < elems.max) {
      const jscan_val_t *r = &elems.v[count];
      if (r->type != el.type || r->p != el.p || r->n != el.n || r->escaped != el.escaped ||
          r->num != 0)
        __builtin_trap();
    }
    count++;
    /* every element (also those past max), so the event path sees them all */
    const char *raw = el.type == JSCAN_STRING ? el.p - 1 : el.p;
    size_t n = el.type == JSCAN_STRING ? el.n + 2 : el.n;
    if (evdoc_load(ev_doc, raw, n) == 0) one(ev_doc, NULL, data, size);
  }
  if (count != elems.n) __builtin_trap();
  return 0;
}
