/* Fuzz target: the process stage's decoder on hostile bytes as a log record's value. The
 * trusted decoder (evfields_decode, which skips validation) must never crash or read
 * outside the value, and on every value the validating decoder accepts it must give the
 * same fields. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "evfields.h"

#include "../unit/evfields_same.h"

static const char *const extra[] = {"properties.campaign", "properties.cost",
                                    "properties.revenue", "properties.cart.total",
                                    "properties.items", "context"};
#define NX (sizeof extra / sizeof extra[0])

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static evfields_decoder_t *dec;
  static evfields_t a, b;
  if (!dec) dec = evfields_new(NULL, extra, NX);
  if (size > UINT32_MAX) return 0;
  log_record_t rec = {.time_us = 1, .value = (const char *)data, .value_len = (uint32_t)size};
  int rb = evfields_decode(dec, &rec, &b);
  if (rb == 1)
    for (size_t i = 0; i < NX; i++) {
      const jscan_val_t *v = evfields_extra(&b, i);
      if (v->type != JSCAN_NONE &&
          (v->p < (const char *)data || v->p + v->n > (const char *)data + size))
        __builtin_trap();
    }
  int ra = evfields_decode_strict(dec, &rec, &a);
  char why[64];
  if (ra >= 0 && (ra != rb || (ra == 1 && !evfields_same(&a, &b, NX, why, sizeof why))))
    __builtin_trap();
  return 0;
}
