/* privacy: consent and pseudonymisation, as enrichment steps.
 *
 * Consent (Segment's context.consent.categoryPreferences, e.g. {"Analytics":true,
 * "Advertising":false}): an event grants analytics when any of analytics-categories is
 * true, denies it when those present are all false, and otherwise takes consent-default.
 * Without analytics consent the event is dropped (answered as accepted, never stored,
 * counted) or, with without-analytics-consent=anonymous, reduced to an anonymous count:
 * only type, event/name, messageId and times are kept. Marketing consent is decided the
 * same way from marketing-categories and recorded as context.consent.marketing (true or
 * false) so later stages never act on a visitor who did not give it.
 *
 * Pseudonymisation (off by default): each configured dotted path holding a string (or a
 * number) is replaced by "p1_" + the first 128 bits of HMAC-SHA256(key, value) in hex.
 * The same id always maps to the same pseudonym, so counting, sessions and identity
 * stitching still work; without the key (<data-dir>/pseudonym.key, 32 random bytes, mode
 * 0600, generated on first use) the mapping cannot be reversed or recomputed. */
#ifndef SLUICE_PRIVACY_H
#define SLUICE_PRIVACY_H

#include <stddef.h>

#include "config.h"
#include "enrich.h"

typedef struct privacy privacy_t;

/* Consent and (when cfg->pseudonymise) the key from cfg->data_dir. NULL with err on an
 * unreadable or unwritable key file. cfg is borrowed. */
privacy_t *privacy_new(const config_t *cfg, char *err, size_t errlen);
void privacy_free(privacy_t *p);

/* Pseudonym of value (len bytes) into out ("p1_" + 32 hex + NUL: 36 bytes). Returns 0,
 * or -EINVAL when pseudonymisation is off. */
int privacy_pseudonym(const privacy_t *p, const char *value, size_t len, char out[36]);

/* enrich_step_fn, state = privacy_t*: consent. Returns ENRICH_DROP for an event to drop. */
int privacy_consent_step(evdoc_t *ev, const enrich_ctx_t *ctx, void *state, char *msg,
                         size_t msglen);
/* enrich_step_fn, state = privacy_t*: pseudonymisation (no-op when off). */
int privacy_pseudonymise_step(evdoc_t *ev, const enrich_ctx_t *ctx, void *state, char *msg,
                              size_t msglen);

#endif
