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

#include "util/mem.h"
#include "util/rand.h"

#define KEY_BYTES 32

struct privacy {
  const config_t *cfg;
  int pseudonymise;
  unsigned char key[KEY_BYTES];
};

/* Read the key, or create it (tmp file, fsync, rename) when missing. */
static int load_key(const char *dir, unsigned char key[KEY_BYTES], char *err, size_t errlen) {
  char path[4096], tmp[4200];
  snprintf(path, sizeof path, "%s/pseudonym.key", dir);
  int fd = open(path, O_RDONLY);
  if (fd >= 0) {
    ssize_t n = read(fd, key, KEY_BYTES);
    close(fd);
    if (n == KEY_BYTES) return 0;
    snprintf(err, errlen, "%s: expected %d bytes; restore it from backup (without it "
                          "pseudonyms cannot be recomputed)", path, KEY_BYTES);
    return -1;
  }
  if (errno != ENOENT) goto fail;
  rand_bytes(key, KEY_BYTES);
  snprintf(tmp, sizeof tmp, "%s.tmp", path);
  fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
  if (fd < 0) goto fail;
  if (write(fd, key, KEY_BYTES) != KEY_BYTES || fsync(fd) != 0) {
    close(fd);
    unlink(tmp);
    goto fail;
  }
  close(fd);
  if (rename(tmp, path) != 0) goto fail;
  return 0;
fail:
  snprintf(err, errlen, "%s: %s", path, strerror(errno));
  return -1;
}

privacy_t *privacy_new(const config_t *cfg, char *err, size_t errlen) {
  privacy_t *p = xcalloc(1, sizeof *p);
  p->cfg = cfg;
  p->pseudonymise = cfg->pseudonymise;
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

/* 1 granted, 0 denied, -1 no information, for the categories in list. */
static int decide(const cJSON *prefs, const strlist_t *list) {
  int seen = 0;
  for (size_t i = 0; i < list->n; i++) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(prefs, list->items[i]);
    if (cJSON_IsTrue(v)) return 1;
    if (cJSON_IsBool(v)) seen = 1;
  }
  return seen ? 0 : -1;
}

static void reduce_to_count(cJSON *ev) {
  static const char *const keep[] = {"type", "event", "name", "messageId", "timestamp",
                                     "receivedAt", "originalTimestamp", "sentAt", NULL};
  for (cJSON *it = ev->child; it;) {
    cJSON *next = it->next;
    int kept = 0;
    for (const char *const *k = keep; *k && !kept; k++) kept = it->string && !strcmp(it->string, *k);
    if (!kept) cJSON_Delete(cJSON_DetachItemViaPointer(ev, it));
    it = next;
  }
  cJSON_AddTrueToObject(ev, "anonymous");
  cJSON *consent = cJSON_AddObjectToObject(cJSON_AddObjectToObject(ev, "context"), "consent");
  cJSON_AddFalseToObject(consent, "analytics");
  cJSON_AddFalseToObject(consent, "marketing");
}

int privacy_consent_step(cJSON *ev, const enrich_ctx_t *ctx, void *state, char *msg,
                         size_t msglen) {
  privacy_t *p = state;
  int dflt = strcmp(p->cfg->consent_default, "denied") != 0;
  cJSON *context = cJSON_GetObjectItemCaseSensitive(ev, "context");
  cJSON *consent = cJSON_GetObjectItemCaseSensitive(context, "consent");
  const cJSON *prefs = cJSON_GetObjectItemCaseSensitive(consent, "categoryPreferences");
  int analytics = cJSON_IsObject(prefs) ? decide(prefs, &p->cfg->analytics_categories) : -1;
  int marketing = cJSON_IsObject(prefs) ? decide(prefs, &p->cfg->marketing_categories) : -1;
  if (analytics < 0) analytics = dflt;
  if (marketing < 0) marketing = dflt;
  if (!analytics) {
    if (!strcmp(p->cfg->without_analytics_consent, "drop")) return ENRICH_DROP;
    reduce_to_count(ev);
    return 0;
  }
  if (!cJSON_IsObject(context)) return 0; /* the ip step always creates it */
  if (!cJSON_IsObject(consent)) {
    if (consent) cJSON_DeleteItemFromObjectCaseSensitive(context, "consent");
    consent = cJSON_AddObjectToObject(context, "consent");
  }
  cJSON_DeleteItemFromObjectCaseSensitive(consent, "analytics");
  cJSON_DeleteItemFromObjectCaseSensitive(consent, "marketing");
  cJSON_AddTrueToObject(consent, "analytics");
  cJSON_AddBoolToObject(consent, "marketing", marketing);
  return 0;
}

/* ---- pseudonymisation ---- */

static void pseudonymise_path(const privacy_t *p, cJSON *obj, const char *path) {
  const char *dot = strchr(path, '.');
  if (dot) {
    char head[64];
    size_t n = (size_t)(dot - path);
    if (n >= sizeof head) return;
    memcpy(head, path, n);
    head[n] = 0;
    cJSON *child = cJSON_GetObjectItemCaseSensitive(obj, head);
    if (cJSON_IsObject(child)) pseudonymise_path(p, child, dot + 1);
    return;
  }
  cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, path);
  char text[64];
  const char *s = NULL;
  if (cJSON_IsString(v)) {
    s = v->valuestring;
  } else if (cJSON_IsNumber(v)) {
    snprintf(text, sizeof text, "%.17g", v->valuedouble);
    s = text;
  }
  if (!s || !s[0]) return;
  char out[36];
  privacy_pseudonym(p, s, strlen(s), out);
  cJSON_ReplaceItemInObjectCaseSensitive(obj, path, cJSON_CreateString(out));
}

int privacy_pseudonymise_step(cJSON *ev, const enrich_ctx_t *ctx, void *state, char *msg,
                              size_t msglen) {
  const privacy_t *p = state;
  if (!p->pseudonymise) return 0;
  for (size_t i = 0; i < p->cfg->pseudonymise_fields.n; i++)
    pseudonymise_path(p, ev, p->cfg->pseudonymise_fields.items[i]);
  return 0;
}
