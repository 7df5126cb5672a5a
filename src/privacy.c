/* privacy: consent and pseudonymisation steps (see privacy.h). */
#include "privacy.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/file.h"
#include "util/mem.h"
#include "util/rand.h"

#define KEY_BYTES 32

struct privacy {
  const config_t *cfg;
  int pseudonymise;
  int granted_by_default; /* consent-default=granted, decided once (not a strcmp per event) */
  unsigned char key[KEY_BYTES];
};

/* Read the key, or create it when missing. */
static int load_key(const char *dir, unsigned char key[KEY_BYTES], char *err, size_t errlen) {
  char path[4096], why[4300];
  snprintf(path, sizeof path, "%s/pseudonym.key", dir);
  if (file_load_key(path, key, KEY_BYTES, why, sizeof why) == 0) return 0;
  snprintf(err, errlen, "%s (without it pseudonyms cannot be recomputed)", why);
  return -1;
}

privacy_t *privacy_new(const config_t *cfg, char *err, size_t errlen) {
  privacy_t *p = xcalloc(1, sizeof *p);
  p->cfg = cfg;
  p->pseudonymise = cfg->pseudonymise;
  p->granted_by_default = strcmp(cfg->consent_default, "denied") != 0;
  if (p->pseudonymise && load_key(cfg->data_dir, p->key, err, errlen) != 0) {
    free(p);
    return NULL;
  }
  return p;
}

void privacy_free(privacy_t *p) {
  if (!p) return;
  OPENSSL_cleanse(p->key, sizeof p->key);
  free(p);
}

int privacy_pseudonym(const privacy_t *p, const char *value, size_t len, char out[36]) {
  if (!p || !p->pseudonymise) return -EINVAL;
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int maclen = 0;
  HMAC(EVP_sha256(), p->key, KEY_BYTES, (const unsigned char *)value, len, mac, &maclen);
  static const char hex[] = "0123456789abcdef";
  memcpy(out, "p1_", 3);
  for (int i = 0; i < 16; i++) {
    out[3 + 2 * i] = hex[mac[i] >> 4];
    out[4 + 2 * i] = hex[mac[i] & 15];
  }
  out[35] = 0;
  return 0;
}

/* ---- consent ---- */

static evdoc_path_t P_PREFERENCES = EVDOC_PATH("context.consent.categoryPreferences"),
                    P_CONSENT = EVDOC_PATH("context.consent"),
                    P_ANALYTICS = EVDOC_PATH("context.consent.analytics"),
                    P_MARKETING = EVDOC_PATH("context.consent.marketing");

/* 1 granted, 0 denied, -1 no information, for the categories in list (the event has a
 * context.consent.categoryPreferences object). */
static int decide(evdoc_t *ev, const strlist_t *list) {
  int seen = 0;
  for (size_t i = 0; i < list->n; i++) {
    const char *segs[] = {"context", "consent", "categoryPreferences", list->items[i]};
    jscan_type_t t = evdoc_get_v(ev, segs, 4).type;
    if (t == JSCAN_TRUE) return 1;
    if (t == JSCAN_FALSE) seen = 1;
  }
  return seen ? 0 : -1;
}

static void reduce_to_count(evdoc_t *ev) {
  static const char *const keep[] = {"type", "event", "name", "messageId", "timestamp",
                                     "receivedAt", "originalTimestamp", "sentAt", NULL};
  evdoc_keep_only(ev, keep);
  evdoc_set_bool(ev, "anonymous", 1);
  static const char none[] = "{\"consent\":{\"analytics\":false,\"marketing\":false}}";
  evdoc_set_raw(ev, "context", none, sizeof none - 1);
}

int privacy_consent_step(evdoc_t *ev, const enrich_ctx_t *ctx, void *state, char *msg,
                         size_t msglen) {
  privacy_t *p = state;
  int dflt = p->granted_by_default;
  int analytics = -1, marketing = -1;
  /* Preferences are an object only inside a consent object: most events have neither,
   * and the one read answers both questions. */
  int consent_obj = evdoc_get_p(ev, &P_CONSENT).type == JSCAN_OBJECT;
  if (consent_obj && evdoc_get_p(ev, &P_PREFERENCES).type == JSCAN_OBJECT) {
    analytics = decide(ev, &p->cfg->analytics_categories);
    marketing = decide(ev, &p->cfg->marketing_categories);
  }
  if (analytics < 0) analytics = dflt;
  if (marketing < 0) marketing = dflt;
  if (!analytics) {
    if (!strcmp(p->cfg->without_analytics_consent, "drop")) return ENRICH_DROP;
    reduce_to_count(ev);
    return 0;
  }
  if (!consent_obj) {
    /* No consent object to keep members of (most events): the whole object in one edit,
     * written as the two members set one by one would be. */
    static const char granted[] = "{\"analytics\":true,\"marketing\":true}",
                      denied[] = "{\"analytics\":true,\"marketing\":false}";
    evdoc_set_raw_p(ev, &P_CONSENT, marketing ? granted : denied,
                    marketing ? sizeof granted - 1 : sizeof denied - 1);
    return 0;
  }
  evdoc_set_bool_p(ev, &P_ANALYTICS, 1);
  evdoc_set_bool_p(ev, &P_MARKETING, marketing);
  return 0;
}

/* ---- pseudonymisation ---- */

int privacy_pseudonymise_step(evdoc_t *ev, const enrich_ctx_t *ctx, void *state, char *msg,
                              size_t msglen) {
  const privacy_t *p = state;
  if (!p->pseudonymise || ctx->internal) return 0;
  for (size_t i = 0; i < p->cfg->pseudonymise_fields.n; i++) {
    const char *path = p->cfg->pseudonymise_fields.items[i];
    jscan_val_t v = evdoc_get(ev, path);
    char text[1100];
    if (v.type == JSCAN_STRING) {
      if (jscan_string(&v, text, sizeof text) <= 0) continue;
    } else if (v.type == JSCAN_NUMBER) {
      snprintf(text, sizeof text, "%.*s", (int)(v.n < 64 ? v.n : 64), v.p);
    } else {
      continue;
    }
    char out[36];
    privacy_pseudonym(p, text, strlen(text), out);
    evdoc_set_str(ev, path, out);
  }
  return 0;
}
