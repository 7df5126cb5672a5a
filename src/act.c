/* act: the action dispatcher and its admin routes (see act.h). */
#include "act.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "keys.h"
#include "offers.h"
#include "util/buf.h"
#include "util/clock.h"
#include "util/mem.h"
#include "util/rand.h"
#include "webhook.h"

#define PAYLOAD_MAX (64 * 1024)

struct act {
  const config_t *cfg;
  collect_t *collect;
  offers_t *offers;
  webhook_t *webhook;
  size_t nendpoints; /* configured plus declared in rules files */
  uint64_t emitted, emit_failed, unsupported, sink_errors, no_consent;
  buf_t scratch;
};

/* ---- emit ---- */

typedef struct emit_wait {
  act_t *a;
  http_req_t *req;  /* POST /v1/actions waiting for the log, or NULL */
  char key[ACTION_KEY_MAX];
} emit_wait_t;

static void reply_accepted(http_req_t *r, int status, const char *key) {
  char body[128];
  snprintf(body, sizeof body, "{\"success\":true,\"key\":\"%s\"}", key);
  http_header_t h[] = {{"Content-Type", "application/json"}, {"Cache-Control", "no-store"}};
  http_respond(r, status, h, 2, body, strlen(body), 0);
}

static void on_emitted(void *ud, int rc) {
  emit_wait_t *w = ud;
  if (rc == 0) w->a->emitted++;
  else w->a->emit_failed++;
  if (w->req) {
    if (rc == 0) reply_accepted(w->req, 200, w->key);
    else if (rc == -EAGAIN)
      http_respond_error(w->req, 503, "log_unavailable", "the event log cannot take the event; retry later", NULL, 0);
    else
      http_respond_error(w->req, 400, "invalid_event", "the emitted event was rejected (see the bad-event log)", NULL, 0);
  }
  free(w);
}

static void put_field(buf_t *b, const char *name, const char *v) {
  if (!v) return;
  buf_printf(b, ",\"%s\":\"", name);
  buf_json_escape(b, v, strlen(v));
  buf_putc(b, '"');
}

/* The Segment track event an ACTION_EMIT becomes, into b. */
static void emit_event(const act_t *a, const action_t *x, buf_t *b) {
  char iso[25];
  clock_format_iso(x->decided_us, iso);
  buf_reset(b);
  buf_puts(b, "{\"type\":\"track\"");
  put_field(b, "event", x->target);
  buf_puts(b, ",\"properties\":");
  buf_puts(b, x->payload ? x->payload : "{}");
  put_field(b, "userId", x->user_id);
  put_field(b, "anonymousId", x->anonymous_id);
  put_field(b, "messageId", x->key);
  put_field(b, "timestamp", iso);
  /* The person's consent travels with the event, so the consent step keeps it as is. */
  const strlist_t *ac = &a->cfg->analytics_categories, *mc = &a->cfg->marketing_categories;
  buf_puts(b, ",\"context\":{\"library\":{\"name\":\"sluice-act\"},\"consent\":{\"categoryPreferences\":{");
  int first = 1;
  if (ac->n) {
    buf_putc(b, '"');
    buf_json_escape(b, ac->items[0], strlen(ac->items[0]));
    buf_puts(b, "\":true");
    first = 0;
  }
  if (mc->n) {
    buf_puts(b, first ? "\"" : ",\"");
    buf_json_escape(b, mc->items[0], strlen(mc->items[0]));
    buf_puts(b, x->consent_marketing ? "\":true" : "\":false");
  }
  buf_puts(b, "}}}");
  buf_putc(b, '}');
}

static int emit_action(act_t *a, const action_t *x, http_req_t *req) {
  if (!x->target || !*x->target || (!x->user_id && !x->anonymous_id)) return -EINVAL;
  emit_event(a, x, &a->scratch);
  emit_wait_t *w = xcalloc(1, sizeof *w);
  w->a = a;
  w->req = req;
  snprintf(w->key, sizeof w->key, "%s", x->key);
  collect_emit(a->collect, a->scratch.data, a->scratch.len, on_emitted, w);
  if (a->scratch.cap > 256 * 1024) buf_free(&a->scratch);
  return 0;
}

/* ---- dispatch ---- */

static int dispatch(act_t *a, const action_t *x, http_req_t *req) {
  int rc;
  /* The engine never decides these without marketing consent; a sink does not carry
   * one out that says otherwise. */
  if (!x->consent_marketing &&
      (x->kind == ACTION_OFFER || x->kind == ACTION_WEBHOOK || x->kind == ACTION_EMIT)) {
    a->no_consent++;
    return -EPERM;
  }
  switch (x->kind) {
  case ACTION_OFFER: rc = offers_sink(a->offers, x); break;
  case ACTION_WEBHOOK: rc = webhook_sink(a->webhook, x); break;
  case ACTION_EMIT: rc = emit_action(a, x, req); break;
  default: a->unsupported++; return -ENOTSUP;
  }
  if (rc) a->sink_errors++;
  return rc;
}

int act_sink(void *ud, const action_t *x) { return dispatch(ud, x, NULL); }

/* ---- life cycle ---- */

int act_set_endpoints(act_t *a, const webhook_endpoint_t *extra, size_t nextra, char *err,
                      size_t errlen) {
  const strlist_t *l = &a->cfg->webhook_endpoints;
  size_t n = l->n + nextra;
  webhook_endpoint_t *eps = xcalloc(n ? n : 1, sizeof *eps);
  char **bufs = xcalloc(l->n ? l->n : 1, sizeof *bufs);
  int rc = 0;
  for (size_t i = 0; i < l->n && !rc; i++) {
    size_t len = strlen(l->items[i]) + 1;
    bufs[i] = xmalloc(len);
    rc = webhook_parse_endpoint(l->items[i], &eps[i], bufs[i], len, err, errlen);
  }
  if (nextra) memcpy(eps + l->n, extra, nextra * sizeof *eps);
  if (!rc) rc = webhook_set_endpoints(a->webhook, eps, n, err, errlen);
  if (!rc) a->nendpoints = n;
  for (size_t i = 0; i < l->n; i++) free(bufs[i]);
  free(bufs);
  free(eps);
  return rc;
}

act_t *act_new(const act_deps_t *d, char *err, size_t errlen) {
  act_t *a = xcalloc(1, sizeof *a);
  a->cfg = d->cfg;
  a->collect = d->collect;
  if (!(a->offers = offers_new(d->cfg, d->hub, err, errlen))) goto fail;
  char dir[4096];
  webhook_opts_t wo;
  webhook_opts_from_config(d->cfg, d->loop, &wo, dir, sizeof dir);
  if (!(a->webhook = webhook_new(&wo, err, errlen))) goto fail;
  int rc = act_set_endpoints(a, NULL, 0, err, errlen);
  if (rc) goto fail;
  return a;
fail:
  act_stop(a);
  act_free(a);
  return NULL;
}

void act_stop(act_t *a) {
  if (a) webhook_stop(a->webhook);
}

void act_free(act_t *a) {
  if (!a) return;
  offers_free(a->offers);
  webhook_free(a->webhook);
  buf_free(&a->scratch);
  free(a);
}

/* ---- POST /v1/actions ---- */

static int key_ok(const char *k) {
  size_t n = strlen(k);
  if (!n || n >= ACTION_KEY_MAX) return 0;
  for (size_t i = 0; i < n; i++) {
    char c = k[i];
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
          c == '-' || c == '_' || c == '.' || c == ':'))
      return 0;
  }
  return 1;
}

static int bad(const char **field, const char *f, char *err, size_t errlen, const char *msg) {
  *field = f;
  snprintf(err, errlen, "%s", msg);
  return -EINVAL;
}

/* A string member of at most max bytes, or NULL when absent; -1 when of another type. */
static int opt_string(const cJSON *root, const char *name, size_t max, const char **out) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, name);
  *out = NULL;
  if (!v || cJSON_IsNull(v)) return 0;
  if (!cJSON_IsString(v) || !*v->valuestring || strlen(v->valuestring) > max) return -1;
  *out = v->valuestring;
  return 0;
}

int act_parse_action(const char *json, size_t len, int64_t now_us, action_t *out,
                     cJSON **holder, const char **field, char *err, size_t errlen) {
  memset(out, 0, sizeof *out);
  *holder = NULL;
  *field = "";
  cJSON *root = cJSON_ParseWithLength(json, len);
  if (!cJSON_IsObject(root)) {
    cJSON_Delete(root);
    return bad(field, "", err, errlen, "the body must be a JSON object");
  }
  static const char *const allowed[] = {"kind", "target", "payload", "userId", "anonymousId",
                                        "key", "rule", "decidedAt"};
  int rc = 0;
  for (const cJSON *c = root->child; c && !rc; c = c->next) {
    size_t i = 0;
    while (i < 8 && strcmp(c->string, allowed[i]) != 0) i++;
    if (i == 8) {
      *field = "";
      snprintf(err, errlen, "unknown field '%.64s'", c->string);
      rc = -EINVAL;
    }
  }
  const cJSON *kind = cJSON_GetObjectItemCaseSensitive(root, "kind");
  const cJSON *payload = cJSON_GetObjectItemCaseSensitive(root, "payload");
  const cJSON *decided = cJSON_GetObjectItemCaseSensitive(root, "decidedAt");
  const char *key = NULL;
  if (rc) {
  } else if (!cJSON_IsString(kind) || (strcmp(kind->valuestring, "offer") &&
                                      strcmp(kind->valuestring, "webhook") &&
                                      strcmp(kind->valuestring, "emit"))) {
    rc = bad(field, "kind", err, errlen, "kind must be \"offer\", \"webhook\" or \"emit\"");
  } else if (opt_string(root, "target", 128, &out->target) || !out->target) {
    rc = bad(field, "target", err, errlen, "target must be a string of 1 to 128 bytes");
  } else if (payload && !cJSON_IsObject(payload)) {
    rc = bad(field, "payload", err, errlen, "payload must be a JSON object");
  } else if (opt_string(root, "userId", 1024, &out->user_id)) {
    rc = bad(field, "userId", err, errlen, "userId must be a string of 1 to 1024 bytes");
  } else if (opt_string(root, "anonymousId", 128, &out->anonymous_id)) {
    rc = bad(field, "anonymousId", err, errlen, "anonymousId must be a string of 1 to 128 bytes");
  } else if (opt_string(root, "rule", 128, &out->rule)) {
    rc = bad(field, "rule", err, errlen, "rule must be a string of 1 to 128 bytes");
  } else if (opt_string(root, "key", ACTION_KEY_MAX - 1, &key) || (key && !key_ok(key))) {
    rc = bad(field, "key", err, errlen, "key must be 1 to 39 of A-Z a-z 0-9 - _ . :");
  } else if (decided && (!cJSON_IsString(decided) ||
                         clock_parse_iso(decided->valuestring, strlen(decided->valuestring),
                                         &out->decided_us) != 0)) {
    rc = bad(field, "decidedAt", err, errlen, "decidedAt must be an ISO 8601 time");
  }
  if (rc) {
    cJSON_Delete(root);
    return rc;
  }
  out->kind = !strcmp(kind->valuestring, "offer")     ? ACTION_OFFER
              : !strcmp(kind->valuestring, "webhook") ? ACTION_WEBHOOK
                                                      : ACTION_EMIT;
  if (!decided) out->decided_us = now_us;
  if (!out->rule) out->rule = "operator";
  if (key) {
    snprintf(out->key, sizeof out->key, "%s", key);
  } else {
    memcpy(out->key, "op-", 3);
    rand_hex(out->key + 3, 16);
  }
  /* The payload as compact text, kept in the tree so it lives as long as the rest. */
  char *text = payload ? cJSON_PrintUnformatted(payload) : NULL;
  cJSON *keep = cJSON_CreateString(text ? text : "{}");
  cJSON_free(text);
  cJSON_AddItemToObject(root, "\x01payload", keep);
  out->payload = keep->valuestring;
  if (strlen(out->payload) > PAYLOAD_MAX) {
    cJSON_Delete(root);
    return bad(field, "payload", err, errlen, "payload must be at most 64 KiB of JSON");
  }
  out->consent_marketing = 1; /* an operator's action: the operator answers for consent */
  *holder = root;
  return 0;
}

/* ---- HTTP ---- */

static void post_action(act_t *a, http_req_t *r) {
  size_t len;
  const char *body = http_req_body(r, &len);
  action_t x;
  cJSON *holder;
  const char *field;
  char err[200];
  if (act_parse_action(body, len, clock_wall_us(), &x, &holder, &field, err, sizeof err) != 0) {
    char msg[300];
    snprintf(msg, sizeof msg, "%s%s%s", field[0] ? field : "", field[0] ? ": " : "", err);
    http_respond_error(r, 400, "invalid_action", msg, NULL, 0);
    return;
  }
  int rc = dispatch(a, &x, x.kind == ACTION_EMIT ? r : NULL);
  if (rc == 0 && x.kind == ACTION_EMIT) {
    /* answered by on_emitted once the event is durable */
  } else if (rc == 0) {
    reply_accepted(r, 202, x.key);
  } else if (rc == -ENOENT) {
    http_respond_error(r, 404, "unknown_endpoint", "no webhook endpoint has that name", NULL, 0);
  } else if (rc == -ENOSPC) {
    http_header_t h[] = {{"Retry-After", "60"}};
    http_respond_error(r, 503, "outbox_full", "the webhook outbox is full; retry later", h, 1);
  } else if (rc == -EIO) {
    http_respond_error(r, 503, "outbox_unavailable", "the webhook outbox cannot write", NULL, 0);
  } else {
    http_respond_error(r, 400, "invalid_action",
                       x.kind == ACTION_OFFER ? "an offer needs an anonymousId"
                       : x.kind == ACTION_EMIT ? "an emit needs a userId or an anonymousId"
                                               : "the action cannot be carried out",
                       NULL, 0);
  }
  cJSON_Delete(holder);
}

static void redeliver(act_t *a, http_req_t *r) {
  size_t len;
  const char *body = http_req_body(r, &len);
  cJSON *root = cJSON_ParseWithLength(body, len);
  const cJSON *key = cJSON_GetObjectItemCaseSensitive(root, "key");
  const cJSON *all = cJSON_GetObjectItemCaseSensitive(root, "all");
  if (!cJSON_IsObject(root) || !!cJSON_IsString(key) == cJSON_IsTrue(all) ||
      (key && !cJSON_IsString(key))) {
    cJSON_Delete(root);
    http_respond_error(r, 400, "invalid_request", "give {\"key\": KEY} or {\"all\": true}", NULL, 0);
    return;
  }
  long n = webhook_redeliver(a->webhook, cJSON_IsString(key) ? key->valuestring : NULL);
  cJSON_Delete(root);
  if (n < 0) {
    http_respond_error(r, 503, "outbox_unavailable", "the webhook outbox cannot write", NULL, 0);
    return;
  }
  char out[64];
  snprintf(out, sizeof out, "{\"success\":true,\"requeued\":%ld}", n);
  http_header_t h[] = {{"Content-Type", "application/json"}, {"Cache-Control", "no-store"}};
  http_respond(r, 200, h, 2, out, strlen(out), 0);
}

int act_handle(act_t *a, http_req_t *r) {
  if (offers_handle(a->offers, r)) return 1;
  const char *path = http_req_path(r);
  int is_actions = !strcmp(path, "/v1/actions");
  if (!is_actions && strcmp(path, "/v1/webhooks/redeliver") != 0) return 0;
  http_req_set_route(r, is_actions ? "actions" : "redeliver");
  if (strcmp(http_req_method(r), "POST") != 0) {
    http_header_t h[] = {{"Allow", "POST"}};
    http_respond_error(r, 405, "method_not_allowed", "use POST", h, 1);
    return 1;
  }
  if (keys_require(a->cfg, r, KEY_ADMIN, NULL) != 0) return 1;
  if (is_actions) post_action(a, r);
  else redeliver(a, r);
  return 1;
}

/* ---- metrics ---- */

void act_summary(const act_t *a, size_t *endpoints, uint64_t *pending, uint64_t *dead) {
  webhook_stats_t ws;
  webhook_stats(a->webhook, &ws);
  *endpoints = a->nendpoints;
  *pending = ws.pending;
  *dead = ws.dead;
}

size_t act_gauges(const act_t *a, metrics_gauge_t *g, size_t cap) {
  webhook_stats_t ws;
  offers_stats_t os;
  webhook_stats(a->webhook, &ws);
  offers_stats(a->offers, &os);
  metrics_gauge_t all[] = {
      {"sluice_webhook_delivered_total", "Webhook actions delivered (2xx).", (double)ws.delivered, 1},
      {"sluice_webhook_retries_total", "Webhook attempts that failed and were scheduled again.", (double)ws.retries, 1},
      {"sluice_webhook_dead_letters_total", "Webhook actions moved to the dead letters.", (double)ws.dead_letters, 1},
      {"sluice_webhook_refused_total", "Webhook actions refused because the outbox was full.", (double)ws.refused, 1},
      {"sluice_webhook_duplicates_total", "Webhook actions whose key was already known (replayed decisions).", (double)ws.duplicates, 1},
      {"sluice_webhook_outbox_depth", "Webhook actions waiting for delivery.", (double)ws.pending},
      {"sluice_webhook_dead_letters", "Dead letters kept now.", (double)ws.dead},
      {"sluice_webhook_in_flight", "Webhook requests open now.", (double)ws.in_flight},
      {"sluice_offers_published_total", "Offers and pushes published to visitor streams.", (double)os.published, 1},
      {"sluice_offers_stale_total", "Offers skipped because they were decided too long ago.", (double)os.stale, 1},
      {"sluice_offers_refused_total", "Offer stream requests refused (bad, foreign or expired token).", (double)os.refused, 1},
      {"sluice_actions_emitted_total", "Events emitted by actions and made durable.", (double)a->emitted, 1},
      {"sluice_actions_emit_failed_total", "Emitted events rejected or not stored.", (double)a->emit_failed, 1},
      {"sluice_actions_failed_total", "Actions a sink refused.", (double)a->sink_errors, 1},
      {"sluice_actions_no_consent_total", "Actions refused because they lacked marketing consent.", (double)a->no_consent, 1},
      {"sluice_actions_unsupported_total", "Actions of kinds the act stage does not carry out.", (double)a->unsupported, 1},
  };
  size_t n = sizeof all / sizeof all[0];
  if (n > cap) n = cap;
  memcpy(g, all, n * sizeof *g);
  return n;
}
