/* enrich: the enrichment chain (see enrich.h). */
#include "enrich.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "campaign.h"
#include "util/buf.h"
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
  buf_t campaign_json; /* the campaign step's state (see campaign_enrich_step) */
};

/* The last address anonymised on this thread and its result: a keep-alive connection sends
 * request after request from one address, and inet_pton is most of this step's cost. */
static _Thread_local struct {
  char ip[46]; /* "" when empty */
  char out[46];
  int rc;
} last_anon;

static int anonymise(const char *ip, char out[46]);

int enrich_anonymise_ip(const char *ip, char out[46]) {
  size_t n = strnlen(ip, sizeof last_anon.ip);
  if (n && n < sizeof last_anon.ip && memcmp(last_anon.ip, ip, n + 1) == 0) {
    memcpy(out, last_anon.out, strlen(last_anon.out) + 1);
    return last_anon.rc;
  }
  int rc = anonymise(ip, out);
  if (n && n < sizeof last_anon.ip) {
    memcpy(last_anon.ip, ip, n + 1);
    memcpy(last_anon.out, out, strlen(out) + 1);
    last_anon.rc = rc;
  }
  return rc;
}

static int anonymise(const char *ip, char out[46]) {
  unsigned char a[16];
  out[0] = 0;
  if (inet_pton(AF_INET, ip, a) == 1) {
    /* a.b.c.0 by hand: inet_ntop costs more than the rest of this step. */
    char *o = out;
    for (int i = 0; i < 3; i++) {
      unsigned v = a[i];
      if (v >= 100) *o++ = (char)('0' + v / 100);
      if (v >= 10) *o++ = (char)('0' + v / 10 % 10);
      *o++ = (char)('0' + v % 10);
      *o++ = '.';
    }
    *o++ = '0';
    *o = 0;
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
  size_t pl = peer ? strnlen(peer, 45) : 0; /* an address fits; snprintf cost 600 instructions */
  memcpy(out, peer ? peer : "", pl);
  out[pl] = 0;
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

void enrich_ctx_prepare(enrich_ctx_t *ctx) {
  ctx->received_iso_len = clock_format_iso(ctx->received_us, ctx->received_iso);
  if (!ctx->client_ip || enrich_anonymise_ip(ctx->client_ip, ctx->client_ip_anon) != 0)
    ctx->client_ip_anon[0] = 0;
  ctx->client_ip_anon_len = strlen(ctx->client_ip_anon);
}

/* The paths the built-in steps read and set on every event. */
static evdoc_path_t P_RECEIVED_AT = EVDOC_PATH("receivedAt"), P_TIMESTAMP = EVDOC_PATH("timestamp"),
                    P_SENT_AT = EVDOC_PATH("sentAt"),
                    P_ORIGINAL_TIMESTAMP = EVDOC_PATH("originalTimestamp"),
                    P_MESSAGE_ID = EVDOC_PATH("messageId"), P_IP = EVDOC_PATH("context.ip"),
                    P_USER_AGENT = EVDOC_PATH("context.userAgent");

static int time_of(evdoc_t *ev, evdoc_path_t *name, int64_t *t) {
  jscan_val_t v = evdoc_get_p(ev, name);
  return v.type == JSCAN_STRING && !v.escaped && clock_parse_iso(v.p, v.n, t) == 0;
}

static int step_times(evdoc_t *ev, const enrich_ctx_t *ctx, void *state, char *msg, size_t ml) {
  /* Times, ids and anonymised addresses made here need no escaping (evdoc_set_plain_p). */
  size_t rl = ctx->received_iso_len;
  evdoc_set_plain_p(ev, &P_RECEIVED_AT, ctx->received_iso, rl);
  int64_t ts, sent;
  if (time_of(ev, &P_TIMESTAMP, &ts)) {
    if (time_of(ev, &P_SENT_AT, &sent)) {
      jscan_val_t orig = evdoc_get_p(ev, &P_TIMESTAMP);
      if (evdoc_get_p(ev, &P_ORIGINAL_TIMESTAMP).type == JSCAN_NONE)
        evdoc_set_raw_p(ev, &P_ORIGINAL_TIMESTAMP, orig.p - 1, orig.n + 2);
      char iso[25];
      size_t il = clock_format_iso(ts + (ctx->received_us - sent), iso);
      evdoc_set_plain_p(ev, &P_TIMESTAMP, iso, il);
    }
  } else {
    evdoc_set_plain_p(ev, &P_TIMESTAMP, ctx->received_iso, rl);
  }
  return 0;
}

static int step_message_id(evdoc_t *ev, const enrich_ctx_t *ctx, void *state, char *msg, size_t ml) {
  jscan_val_t v = evdoc_get_p(ev, &P_MESSAGE_ID);
  if (v.type == JSCAN_STRING && v.n) return 0;
  char id[41] = "srv-";
  rand_uuid(id + 4);
  evdoc_set_plain_p(ev, &P_MESSAGE_ID, id, 40);
  return 0;
}

static int step_ip(evdoc_t *ev, const enrich_ctx_t *ctx, void *state, char *msg, size_t ml) {
  const config_t *cfg = state;
  /* ctx->client_ip is the event's own address (see enrich_event): anything a client put
   * in context.ip that is not an address was already replaced by the request's. Its
   * anonymised form was made once per request (enrich_ctx_prepare) or per event that
   * brought its own address (enrich_event). */
  if (!ctx->client_ip || !ctx->client_ip_anon[0]) {
    if (evdoc_get_p(ev, &P_IP).type != JSCAN_NONE) evdoc_del_p(ev, &P_IP);
    return 0;
  }
  if (cfg->keep_full_ip)
    evdoc_set_str_p(ev, &P_IP, ctx->client_ip);
  else
    evdoc_set_plain_p(ev, &P_IP, ctx->client_ip_anon, ctx->client_ip_anon_len);
  return 0;
}

static int step_user_agent(evdoc_t *ev, const enrich_ctx_t *ctx, void *state, char *msg, size_t ml) {
  if (!ctx->user_agent || !ctx->user_agent[0]) return 0;
  if (evdoc_get_p(ev, &P_USER_AGENT).type == JSCAN_NONE)
    evdoc_set_str_p(ev, &P_USER_AGENT, ctx->user_agent);
  return 0;
}

enrich_t *enrich_new(const config_t *c) {
  enrich_t *e = xcalloc(1, sizeof *e);
  e->cfg = c;
  enrich_add(e, "times", step_times, NULL);
  enrich_add(e, "message_id", step_message_id, NULL);
  enrich_add(e, "ip", step_ip, (void *)c);
  enrich_add(e, "user_agent", step_user_agent, NULL);
  enrich_add(e, "campaign", campaign_enrich_step, &e->campaign_json);
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

int enrich_event(enrich_t *e, evdoc_t *ev, const enrich_ctx_t *ctx_in, char *msg, size_t msglen) {
  /* A server-side SDK reports its visitor's address in context.ip: that is the event's
   * client. Anything there that is not an address is ignored. */
  enrich_ctx_t local = *ctx_in;
  char raw[46], tmp[46];
  if (evdoc_str_p(ev, &P_IP, raw, sizeof raw) && enrich_anonymise_ip(raw, tmp) == 0) {
    local.client_ip = raw;
    memcpy(local.client_ip_anon, tmp, sizeof tmp);
    local.client_ip_anon_len = strlen(tmp);
  }
  const enrich_ctx_t *ctx = &local;
  for (size_t i = 0; i < e->n; i++) {
    char m[160];
    m[0] = 0; /* not `= ""`: that clears all 160 bytes, for every step of every event */
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
  buf_free(&e->campaign_json);
  free(e->steps);
  free(e);
}
