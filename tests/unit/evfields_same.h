/* evfields_same.h: do two decodes of one record hold the same fields? Used by the unit
 * test and the fuzz target that hold the trusted decoder (evfields_decode) to the
 * validating one (evfields_decode_strict). */
#ifndef SLUICE_EVFIELDS_SAME_H
#define SLUICE_EVFIELDS_SAME_H

#include <stdio.h>
#include <string.h>

#include "evfields.h"

static inline int evfields_same_str(const char *a, const char *b) {
  return a == b || (a && b && strcmp(a, b) == 0);
}

/* Is alen the strlen of a (0 for NULL), and blen the same? */
static inline int evfields_same_len(const char *a, uint32_t alen, uint32_t blen) {
  return alen == (a ? strlen(a) : 0) && alen == blen;
}

/* 1 when a and b (decoded with nextra extra paths) agree on every field, else 0 with the
 * first difference named in why. */
static inline int evfields_same(const evfields_t *a, const evfields_t *b, size_t nextra,
                                char *why, size_t whylen) {
  const char *bad = NULL;
  if (a->type != b->type) bad = "type";
  else if (a->t_us != b->t_us) bad = "t_us";
  else if (!evfields_same_str(a->user_id, b->user_id)) bad = "user_id";
  else if (!evfields_same_str(a->anonymous_id, b->anonymous_id)) bad = "anonymous_id";
  else if (!evfields_same_str(a->previous_id, b->previous_id)) bad = "previous_id";
  else if (!evfields_same_str(a->session_id, b->session_id)) bad = "session_id";
  else if (!evfields_same_str(a->user_key, b->user_key)) bad = "user_key";
  else if (a->user_hash != b->user_hash) bad = "user_hash";
  else if (a->is_order != b->is_order) bad = "is_order";
  else if (memcmp(&a->revenue, &b->revenue, sizeof a->revenue)) bad = "revenue";
  else if (a->consent_marketing != b->consent_marketing) bad = "consent_marketing";
  else if (!evfields_same_len(a->user_id, a->user_id_len, b->user_id_len) ||
           !evfields_same_len(a->anonymous_id, a->anonymous_id_len, b->anonymous_id_len) ||
           !evfields_same_len(a->previous_id, a->previous_id_len, b->previous_id_len) ||
           !evfields_same_len(a->session_id, a->session_id_len, b->session_id_len))
    bad = "an id's length";
  for (int i = 0; !bad && i < PROCESS_NDIMS; i++)
    if (!evfields_same_str(a->dims[i], b->dims[i])) bad = "a dimension";
    else if (a->dlen[i] != (a->dims[i] ? strlen(a->dims[i]) : 0) || a->dlen[i] != b->dlen[i])
      bad = "a dimension's length";
  for (size_t i = 0; !bad && i < nextra; i++) {
    const jscan_val_t *x = evfields_extra(a, i), *y = evfields_extra(b, i);
    if (x->type != y->type || x->p != y->p || x->n != y->n || x->escaped != y->escaped ||
        memcmp(&x->num, &y->num, sizeof x->num))
      bad = "an extra path";
  }
  if (bad) snprintf(why, whylen, "%s differs", bad);
  return !bad;
}

#endif
