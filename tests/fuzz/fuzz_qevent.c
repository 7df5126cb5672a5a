/* Fuzz target: an untrusted query string through the pixel's and the redirect's event
 * builder (qevent.c): percent-decoding, dotted paths, base64 JSON in data, the limits.
 * The first byte picks the kind. Checks: a built event is one valid JSON object (evdoc
 * loads it; only "too many top-level members" may be refused), a failure names its
 * error, and the key stays within its buffer. */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "evdoc.h"
#include "qevent.h"

static qevent_t *q;
static evdoc_t *check;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (!q) {
    q = qevent_new();
    check = evdoc_new();
  }
  if (size < 1) return 0;
  qevent_kind_t kind = data[0] & 1 ? QEVENT_REDIRECT : QEVENT_PIXEL;
  buf_t out = BUF_INIT;
  char key[64];
  char *redirect = NULL;
  const char *code = NULL, *msg = NULL;
  if (qevent_build(q, (const char *)data + 1, size - 1, kind, &out, key, sizeof key, &redirect,
                   &code, &msg) == 0) {
    int rc = evdoc_load(check, out.data, out.len);
    if (rc != 0 && rc != -3) __builtin_trap(); /* the text must be one JSON object */
    if (strlen(key) >= sizeof key) __builtin_trap();
  } else if (!code || !msg) {
    __builtin_trap();
  }
  free(redirect);
  buf_free(&out);
  return 0;
}
