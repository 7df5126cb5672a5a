/* enrich: the enrichment chain (see enrich.h). */
#include "enrich.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "campaign.h"
#include "util/clock.h"
#include "util/mem.h"
#include "util/rand.h"

typedef struct step {
  const char *name;
  enrich_step_fn fn;
  void *state;
} step_t;

struct enrich {
  const config_t *cfg;
  step_t *steps;
  size_t n;
};

int enrich_anonymise_ip(const char *ip, char out[46]) {
  unsigned char a[16];
  out[0] = 0;
  if (inet_pton(AF_INET, ip, a) == 1) {
    a[3] = 0;
    inet_ntop(AF_INET, a, out, 46);
    return 0;
  }
  if (inet_pton(AF_INET6, ip, a) == 1) {
    memset(a + 6, 0, 10);
    inet_ntop(AF_INET6, a, out, 46);
    return 0;
  }
  return -EINVAL;
}

static int listed(const strlist_t *l, const char *s) {
  for (size_t i = 0; i < l->n; i++)
    if (strcmp(l->items[i], s) == 0) return 1;
  return 0;
}

void enrich_client_ip(const char *peer, const char *xff, const strlist_t *trusted,
                      char out[46]) {
  snprintf(out, 46, "%s", peer ? peer : "");
  if (!xff || !listed(trusted, peer)) return;
  /* Walk X-Forwarded-For from the right: the first hop not in trusted is the client. */
  size_t n = strlen(xff);
  while (n > 0) {
    size_t end = n;
    while (n > 0 && xff[n - 1] != ',') n--;
    const char *s = xff + n;
    size_t len = end - n;
    while (len && (*s == ' ' || *s == '\t')) s++, len--;
    while (len && (s[len - 1] == ' ' || s[len - 1] == '\t')) len--;
    char cand[46];
    unsigned char tmp[16];
    if (len == 0 || len >= sizeof cand) break;
    memcpy(cand, s, len);
    cand[len] = 0;
    if (inet_pton(AF_INET, cand, tmp) != 1 && inet_pton(AF_INET6, cand, tmp) != 1) break;
    memcpy(out, cand, len + 1);
    if (!listed(trusted, cand)) return;
    if (n) n--; /* skip the comma */
  }
}

static cJSON *ensure_object(cJSON *parent, const char *name) {
  cJSON *o = cJSON_GetObjectItemCaseSensitive(parent, name);
  if (cJSON_IsObject(o)) return o;
  if (o) cJSON_DeleteItemFromObjectCaseSensitive(parent, name);
  return cJSON_AddObjectToObject(parent, name);
}

static void set_string(cJSON *obj, const char *name, const char *value) {
  cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);
  if (v)
    cJSON_ReplaceItemInObjectCaseSensitive(obj, name, cJSON_CreateString(value));
  else
    cJSON_AddStringToObject(obj, name, value);
}

static int time_of(const cJSON *ev, const char *name, int64_t *t) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(ev, name);
  return cJSON_IsString(v) && clock_parse_iso(v->valuestring, strlen(v->valuestring), t) == 0;
}

static int step_times(cJSON *ev, const enrich_ctx_t *ctx, void *state, char *msg, size_t ml) {
  char iso[25];
  clock_format_iso(ctx->received_us, iso);
  set_string(ev, "receivedAt", iso);
  int64_t ts, sent;
  if (time_of(ev, "timestamp", &ts)) {
    if (time_of(ev, "sentAt", &sent)) {
      if (!cJSON_GetObjectItemCaseSensitive(ev, "originalTimestamp")) {
        cJSON *orig = cJSON_GetObjectItemCaseSensitive(ev, "timestamp");
        cJSON_AddStringToObject(ev, "originalTimestamp", orig->valuestring);
      }
      clock_format_iso(ts + (ctx->received_us - sent), iso);
      set_string(ev, "timestamp", iso);
    }
  } else {
    set_string(ev, "timestamp", iso);
  }
  return 0;
}

static int step_message_id(cJSON *ev, const enrich_ctx_t *ctx, void *state, char *msg, size_t ml) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(ev, "messageId");
  if (cJSON_IsString(v) && v->valuestring[0]) return 0;
  char id[41] = "srv-";
  rand_uuid(id + 4);
  set_string(ev, "messageId", id);
  return 0;
}

static int step_ip(cJSON *ev, const enrich_ctx_t *ctx, void *state, char *msg, size_t ml) {
  const config_t *cfg = state;
  cJSON *context = ensure_object(ev, "context");
  char anon[46];
  const char *ip = NULL;
  /* ctx->client_ip is the event's own address (see enrich_event): anything a client put
   * in context.ip that is not an address was already replaced by the request's. */
  if (ctx->client_ip && enrich_anonymise_ip(ctx->client_ip, anon) == 0) ip = ctx->client_ip;
  if (!ip) {
    cJSON_DeleteItemFromObjectCaseSensitive(context, "ip");
    return 0;
  }
  char keep[46];
  snprintf(keep, sizeof keep, "%s", cfg->keep_full_ip ? ip : anon);
  set_string(context, "ip", keep);
  return 0;
}

static int step_user_agent(cJSON *ev, const enrich_ctx_t *ctx, void *state, char *msg, size_t ml) {
  if (!ctx->user_agent || !ctx->user_agent[0]) return 0;
  cJSON *context = ensure_object(ev, "context");
  if (!cJSON_GetObjectItemCaseSensitive(context, "userAgent"))
    cJSON_AddStringToObject(context, "userAgent", ctx->user_agent);
  return 0;
}

enrich_t *enrich_new(const config_t *c) {
  enrich_t *e = xcalloc(1, sizeof *e);
  e->cfg = c;
  enrich_add(e, "times", step_times, NULL);
  enrich_add(e, "message_id", step_message_id, NULL);
  enrich_add(e, "ip", step_ip, (void *)c);
  enrich_add(e, "user_agent", step_user_agent, NULL);
  enrich_add(e, "campaign", campaign_enrich_step, NULL);
  return e;
}

int enrich_add(enrich_t *e, const char *name, enrich_step_fn fn, void *state) {
  e->steps = xrealloc(e->steps, (e->n + 1) * sizeof *e->steps);
  e->steps[e->n++] = (step_t){name, fn, state};
  return 0;
}

int enrich_insert(enrich_t *e, const char *before, const char *name, enrich_step_fn fn,
                  void *state) {
  size_t at = e->n;
  for (size_t i = 0; i < e->n; i++)
    if (strcmp(e->steps[i].name, before) == 0) {
      at = i;
      break;
    }
  e->steps = xrealloc(e->steps, (e->n + 1) * sizeof *e->steps);
  memmove(e->steps + at + 1, e->steps + at, (e->n - at) * sizeof *e->steps);
  e->steps[at] = (step_t){name, fn, state};
  e->n++;
  return 0;
}

int enrich_event(enrich_t *e, cJSON *ev, const enrich_ctx_t *ctx_in, char *msg, size_t msglen) {
  /* A server-side SDK reports its visitor's address in context.ip: that is the event's
   * client. Anything there that is not an address is ignored. */
  enrich_ctx_t local = *ctx_in;
  const cJSON *context = cJSON_GetObjectItemCaseSensitive(ev, "context");
  const cJSON *given = cJSON_GetObjectItemCaseSensitive(context, "ip");
  char tmp[46], raw[46];
  if (cJSON_IsString(given) && enrich_anonymise_ip(given->valuestring, tmp) == 0) {
    snprintf(raw, sizeof raw, "%s", given->valuestring); /* steps may replace the item */
    local.client_ip = raw;
  }
  const enrich_ctx_t *ctx = &local;
  for (size_t i = 0; i < e->n; i++) {
    char m[160] = "";
    int rc = e->steps[i].fn(ev, ctx, e->steps[i].state, m, sizeof m);
    if (rc == ENRICH_DROP) return ENRICH_DROP;
    if (rc != 0) {
      snprintf(msg, msglen, "%s: %s", e->steps[i].name, m);
      return -1;
    }
  }
  return 0;
}

void enrich_free(enrich_t *e) {
  if (!e) return;
  free(e->steps);
  free(e);
}
