/* Fuzz target: a hostile POST /v1/actions body through act_parse_action, and the same
 * bytes as an offers channel token. Checks: no crash or leak; a parsed action has a
 * known kind, a target, a key of 1..39 bytes and a payload that is a JSON object; a
 * token that is not ours never verifies. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "act.h"
#include "offers.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  action_t a;
  cJSON *holder;
  const char *field;
  char err[256];
  if (act_parse_action((const char *)data, size, 1795300000000000LL, &a, &holder, &field, err,
                       sizeof err) == 0) {
    if (a.kind != ACTION_OFFER && a.kind != ACTION_WEBHOOK && a.kind != ACTION_EMIT) abort();
    size_t kl = strnlen(a.key, ACTION_KEY_MAX);
    if (!a.target || !*a.target || kl == 0 || kl >= ACTION_KEY_MAX) abort();
    cJSON *p = cJSON_Parse(a.payload);
    if (!cJSON_IsObject(p)) abort();
    cJSON_Delete(p);
    cJSON_Delete(holder);
  } else if (holder || !field || !err[0]) {
    abort();
  }
  static const unsigned char key[OFFERS_KEY_BYTES] = "fuzz-key-fuzz-key-fuzz-key-fuzz";
  char *tok = malloc(size + 1);
  memcpy(tok, data, size);
  tok[size] = 0;
  int rc = offers_token_verify(key, "visitor", 7, tok, 0);
  if (rc != -EINVAL && rc != -EACCES) abort();
  free(tok);
  return 0;
}
