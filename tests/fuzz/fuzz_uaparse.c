/* Fuzz target: an untrusted User-Agent through uaparse — the cached parse, the uncached
 * uap-core match, and the enrichment step that writes the result into an event. Checks
 * that output strings are bounded, valid UTF-8 text, that a repeat is a cache hit with the
 * same answer, and that the cache never returns another user agent's result. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "uaparse.h"
#include "../unit/evtest.h"

static uaparse_t *parser;

static void check_text(const char *s, size_t cap) {
  size_t n = strnlen(s, cap);
  if (n == cap) __builtin_trap(); /* not terminated inside its buffer */
  const unsigned char *u = (const unsigned char *)s;
  for (size_t i = 0; i < n;) {
    if (u[i] < 0x20 || u[i] == 0x7f) __builtin_trap();
    size_t k = u[i] < 0x80 ? 1 : (u[i] & 0xe0) == 0xc0 ? 2 : (u[i] & 0xf0) == 0xe0 ? 3
             : (u[i] & 0xf8) == 0xf0 ? 4 : 0;
    if (!k || i + k > n) __builtin_trap();
    for (size_t j = 1; j < k; j++)
      if ((u[i + j] & 0xc0) != 0x80) __builtin_trap();
    i += k;
  }
}

#define TEXT(f) check_text(f, sizeof f)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (!parser) {
    char err[256];
    parser = uaparse_open(NULL, 64, err, sizeof err); /* small: evictions happen */
    if (!parser) __builtin_trap();
  }
  const char *ua = (const char *)data;
  ua_info_t a, b, fresh;
  uaparse_parse(parser, ua, size, &a);
  TEXT(a.browser);
  TEXT(a.browser_version);
  TEXT(a.os);
  TEXT(a.os_version);
  TEXT(a.device_family);
  TEXT(a.device_brand);
  TEXT(a.device_model);
  if (!a.browser[0] || !a.os[0] || !a.device_family[0]) __builtin_trap(); /* "Other" at least */
  static const char *const types[] = {"desktop", "mobile", "tablet", "bot", "other"};
  int known = 0;
  for (int i = 0; i < 5; i++) known |= a.device_type == types[i] || !strcmp(a.device_type, types[i]);
  if (!known || a.bot != !strcmp(a.device_type, "bot")) __builtin_trap();

  if (uaparse_parse(parser, ua, size, &b) != 1) __builtin_trap(); /* just cached */
  ua_parts_t parts;
  uaparse_match(parser, ua, size, &parts);
  uaparse_info_from_parts(&parts, ua, size, &fresh);
  if (memcmp(&a, &b, sizeof a) || memcmp(&a, &fresh, sizeof a)) __builtin_trap();

  /* The enrichment step over an event carrying this user agent (up to its first NUL). */
  char *s = malloc(size + 1);
  memcpy(s, data, size);
  s[size] = '\0';
  buf_t in = BUF_INIT;
  buf_puts(&in, "{\"context\":{\"userAgent\":\"");
  buf_json_escape(&in, s, strlen(s));
  buf_puts(&in, "\"}}");
  char *text = in.data;
  enrich_ctx_t ectx = {0};
  int rc = -1;
  cJSON *ev = evtest_step(uaparse_enrich_step, parser, text, &ectx, &rc);
  buf_free(&in);
  (void)text;
  if (!ev) __builtin_trap(); /* escaping makes any user agent valid JSON text */
  if (rc != 0) __builtin_trap();
  cJSON *ctx = cJSON_GetObjectItem(ev, "context");
  if (!cJSON_IsBool(cJSON_GetObjectItem(ctx, "bot"))) __builtin_trap();
  cJSON *dev = cJSON_GetObjectItem(ctx, "device");
  if (!cJSON_IsString(cJSON_GetObjectItem(dev, "type"))) __builtin_trap();
  char *out = cJSON_PrintUnformatted(ev);
  if (!out) __builtin_trap();
  cJSON_free(out);
  cJSON_Delete(ev);
  free(s);
  return 0;
}
