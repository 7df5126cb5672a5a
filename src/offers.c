/* offers: visitor streams, channel tokens and admin push (see offers.h). */
#include "offers.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <inttypes.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <string.h>

#include "collect.h"
#include "keys.h"
#include "util/buf.h"
#include "util/clock.h"
#include "util/file.h"
#include "util/hmac.h"
#include "util/mem.h"
#include "util/str.h"

#define CHANNEL_PREFIX "offers:"
#define TEMPLATE_MAX 128
#define FIELDS_MAX 8192

struct offers {
  const config_t *cfg;
  sse_hub_t *hub;
  unsigned char key[OFFERS_KEY_BYTES];
  offers_stats_t stats;
  buf_t scratch;
};

/* ---- tokens ---- */

static void token_mac(const unsigned char key[OFFERS_KEY_BYTES], const char *id, size_t n,
                      int64_t expires_s, char hex[65]) {
  /* Domain-separated and length-prefixed: no (id, expiry) pair encodes like another. */
  char head[48], tail[32];
  int hl = snprintf(head, sizeof head, "sluice-offers-v1\n%zu\n", n);
  int tl = snprintf(tail, sizeof tail, "\n%" PRId64, expires_s);
  const void *parts[] = {head, id, tail};
  size_t lens[] = {(size_t)hl, n, (size_t)tl};
  hmac_sha256_hex(key, OFFERS_KEY_BYTES, parts, lens, 3, hex);
}

int offers_token_sign(const unsigned char key[OFFERS_KEY_BYTES], const char *id, size_t n,
                      int64_t expires_s, char out[OFFERS_TOKEN_MAX]) {
  if (!id || !n || n > OFFERS_MAX_ID || expires_s < 0) return -EINVAL;
  char hex[65];
  token_mac(key, id, n, expires_s, hex);
  return snprintf(out, OFFERS_TOKEN_MAX, "v1.%" PRId64 ".%s", expires_s, hex);
}

int offers_token_verify(const unsigned char key[OFFERS_KEY_BYTES], const char *id, size_t n,
                        const char *token, int64_t now_s) {
  if (!id || !n || n > OFFERS_MAX_ID || !token || strncmp(token, "v1.", 3) != 0) return -EINVAL;
  const char *p = token + 3;
  int64_t exp = 0;
  int digits = 0;
  for (; *p >= '0' && *p <= '9'; p++, digits++) {
    if (digits == 12) return -EINVAL; /* past year 33000: not ours */
    exp = exp * 10 + (*p - '0');
  }
  if (!digits || *p != '.') return -EINVAL;
  const char *mac = p + 1;
  if (strlen(mac) != 64) return -EINVAL;
  char want[65];
  token_mac(key, id, n, exp, want);
  if (CRYPTO_memcmp(want, mac, 64) != 0) return -EACCES;
  return exp > now_s ? 0 : -ETIMEDOUT;
}

/* ---- the stage ---- */

offers_t *offers_new(const config_t *cfg, sse_hub_t *hub, char *err, size_t errlen) {
  offers_t *o = xcalloc(1, sizeof *o);
  o->cfg = cfg;
  o->hub = hub;
  char path[4096];
  snprintf(path, sizeof path, "%s/offers.key", cfg->data_dir);
  if (file_load_key(path, o->key, OFFERS_KEY_BYTES, err, errlen) != 0) {
    free(o);
    return NULL;
  }
  return o;
}

void offers_free(offers_t *o) {
  if (!o) return;
  OPENSSL_cleanse(o->key, sizeof o->key);
  buf_free(&o->scratch);
  free(o);
}

void offers_stats(const offers_t *o, offers_stats_t *out) { *out = o->stats; }

/* An anonymousId we accept: 1..OFFERS_MAX_ID bytes, no control characters. */
static int id_ok(const char *id, size_t n) {
  if (!n || n > OFFERS_MAX_ID) return 0;
  for (size_t i = 0; i < n; i++)
    if ((unsigned char)id[i] < 0x20 || id[i] == 0x7f) return 0;
  return 1;
}

int offers_publish(offers_t *o, const char *id, const char *tmpl, const char *fields,
                   const char *rule, const char *key) {
  if (!tmpl || (id && !id_ok(id, strlen(id)))) return -EINVAL;
  buf_t *b = &o->scratch;
  buf_reset(b);
  buf_puts(b, "{\"template\":\"");
  buf_json_escape(b, tmpl, strlen(tmpl));
  buf_puts(b, "\",\"fields\":");
  buf_puts(b, fields && *fields ? fields : "{}");
  if (rule) {
    buf_puts(b, ",\"rule\":\"");
    buf_json_escape(b, rule, strlen(rule));
    buf_putc(b, '"');
  }
  if (key) {
    buf_puts(b, ",\"key\":\"");
    buf_json_escape(b, key, strlen(key));
    buf_putc(b, '"');
  }
  buf_putc(b, '}');
  int rc;
  if (id) {
    char chan[sizeof CHANNEL_PREFIX + OFFERS_MAX_ID];
    snprintf(chan, sizeof chan, CHANNEL_PREFIX "%s", id);
    rc = sse_publish(o->hub, chan, OFFERS_EVENT, b->data, NULL);
  } else {
    rc = sse_publish_prefix(o->hub, CHANNEL_PREFIX, OFFERS_EVENT, b->data, NULL);
  }
  if (b->cap > 64 * 1024) buf_free(b);
  if (rc >= 0) o->stats.published++;
  return rc;
}

int offers_sink(void *ud, const action_t *a) {
  offers_t *o = ud;
  if (a->kind != ACTION_OFFER || !a->anonymous_id || !a->target) return -EINVAL;
  if (clock_wall_us() - a->decided_us > (int64_t)o->cfg->offers_max_age_ms * 1000) {
    o->stats.stale++;
    return 0;
  }
  /* The payload is the engine's JSON object; check it so a bad one cannot break the
   * stream's framing for the page. */
  cJSON *f = cJSON_Parse(a->payload ? a->payload : "{}");
  int ok = cJSON_IsObject(f);
  cJSON_Delete(f);
  if (!ok) return -EINVAL;
  int rc = offers_publish(o, a->anonymous_id, a->target, a->payload, a->rule, a->key);
  return rc < 0 ? rc : 0;
}

/* ---- HTTP ---- */

static void json_reply(http_req_t *r, int status, const char *body, const http_header_t *extra,
                       size_t nextra) {
  http_header_t h[8] = {{"Content-Type", "application/json"}, {"Cache-Control", "no-store"}};
  size_t n = 2;
  for (size_t i = 0; i < nextra && n < 8; i++) h[n++] = extra[i];
  http_respond(r, status, h, n, body, strlen(body), 0);
}

static key_kind_t request_key(const offers_t *o, http_req_t *r) {
  char key[256];
  long n = keys_from_authorization(http_req_header(r, "Authorization"), key, sizeof key);
  return n > 0 ? keys_match(o->cfg, key, (size_t)n) : KEY_NONE;
}

static void unauthorized(http_req_t *r, const char *code, const char *msg,
                         const http_header_t *cors, size_t ncors) {
  http_header_t h[5] = {{"WWW-Authenticate", "Bearer realm=\"sluice\""}};
  size_t n = 1;
  for (size_t i = 0; i < ncors && n < 5; i++) h[n++] = cors[i];
  http_respond_error(r, 401, code, msg, h, n);
}

/* CORS for the two routes a page calls. Returns the number of headers written into h
 * (capacity 3); -1 when the Origin is not allowed (r answered 403). */
static int cors(const offers_t *o, http_req_t *r, http_header_t *h) {
  const char *origin = http_req_header(r, "Origin");
  if (!origin || !*origin) return 0;
  if (!collect_origin_allowed(o->cfg, origin, http_req_header(r, "Host"))) {
    http_respond_error(r, 403, "origin_not_allowed",
                       "this Origin is not on the cors-origins allowlist", NULL, 0);
    return -1;
  }
  h[0] = (http_header_t){"Access-Control-Allow-Origin", origin};
  h[1] = (http_header_t){"Access-Control-Allow-Credentials", "true"};
  h[2] = (http_header_t){"Vary", "Origin"};
  return 3;
}

/* A query parameter, percent-decoded into out (capacity cap). Returns its length, or
 * -1 when absent, malformed or too long. */
static long query_param(http_req_t *r, const char *name, char *out, size_t cap) {
  long n = str_query_param(http_req_query(r), name, out, cap);
  return n >= (long)cap ? -1 : n;
}

static void stream(offers_t *o, http_req_t *r) {
  http_header_t ch[3];
  int nc = cors(o, r, ch);
  if (nc < 0) return;
  char id[OFFERS_MAX_ID + 1], token[OFFERS_TOKEN_MAX + 1];
  long idn = query_param(r, "anonymousId", id, sizeof id);
  long tn = query_param(r, "token", token, sizeof token);
  if (idn <= 0 || !id_ok(id, (size_t)idn) || memchr(id, 0, (size_t)idn)) {
    http_respond_error(r, 400, "invalid_anonymous_id",
                       "anonymousId must be 1 to 128 bytes without control characters", ch,
                       (size_t)nc);
    return;
  }
  if (tn <= 0) {
    o->stats.refused++;
    unauthorized(r, "missing_token", "get a token from POST /v1/offers/token", ch, (size_t)nc);
    return;
  }
  int v = offers_token_verify(o->key, id, (size_t)idn, token, clock_wall_us() / 1000000);
  if (v == -ETIMEDOUT) {
    o->stats.refused++;
    unauthorized(r, "token_expired", "the token has expired; get a new one", ch, (size_t)nc);
    return;
  }
  if (v != 0) {
    o->stats.refused++;
    http_respond_error(r, 403, "invalid_token", "the token is not valid for this anonymousId",
                       ch, (size_t)nc);
    return;
  }
  char chan[sizeof CHANNEL_PREFIX + OFFERS_MAX_ID];
  snprintf(chan, sizeof chan, CHANNEL_PREFIX "%s", id);
  /* A new page cannot give EventSource a Last-Event-ID header: it may pass the last id
   * its tab saw as lastEventId (the header wins: it is the browser's own reconnect). */
  char qlast[24];
  const char *last = http_req_header(r, "Last-Event-ID");
  if (!last && query_param(r, "lastEventId", qlast, sizeof qlast) > 0) last = qlast;
  int rc = sse_subscribe_with(o->hub, r, chan, last, ch, (size_t)nc);
  if (rc == -ENOSPC || rc == -EINVAL)
    http_respond_error(r, 503, "unavailable", "too many live subscribers", ch, (size_t)nc);
}

/* Parse the JSON body into a cJSON object; answers 400 and returns NULL when it is not. */
static cJSON *body_object(http_req_t *r, const http_header_t *h, size_t nh) {
  size_t len;
  const char *body = http_req_body(r, &len);
  cJSON *root = cJSON_ParseWithLength(body, len);
  if (!cJSON_IsObject(root)) {
    cJSON_Delete(root);
    http_respond_error(r, 400, "invalid_json", "the body must be a JSON object", h, nh);
    return NULL;
  }
  return root;
}

static void issue_token(offers_t *o, http_req_t *r) {
  http_header_t ch[3];
  int nc = cors(o, r, ch);
  if (nc < 0) return;
  key_kind_t k = request_key(o, r);
  if (k == KEY_READ) {
    http_respond_error(r, 403, "wrong_key_kind", "the read key cannot ask for tokens; use the write key",
                       ch, (size_t)nc);
    return;
  }
  if (k != KEY_WRITE && k != KEY_ADMIN) {
    unauthorized(r, "unauthorized", "send the write key as the HTTP Basic user", ch, (size_t)nc);
    return;
  }
  cJSON *root = body_object(r, ch, (size_t)nc);
  if (!root) return;
  const cJSON *id = cJSON_GetObjectItemCaseSensitive(root, "anonymousId");
  if (!cJSON_IsString(id) || !id_ok(id->valuestring, strlen(id->valuestring))) {
    cJSON_Delete(root);
    http_respond_error(r, 400, "invalid_anonymous_id",
                       "anonymousId must be a string of 1 to 128 bytes without control characters",
                       ch, (size_t)nc);
    return;
  }
  int64_t exp = clock_wall_us() / 1000000 + (int64_t)o->cfg->offers_token_ttl_s;
  char token[OFFERS_TOKEN_MAX], iso[25], body[256];
  offers_token_sign(o->key, id->valuestring, strlen(id->valuestring), exp, token);
  clock_format_iso(exp * 1000000, iso);
  snprintf(body, sizeof body, "{\"token\":\"%s\",\"expiresAt\":\"%s\"}", token, iso);
  cJSON_Delete(root);
  json_reply(r, 200, body, ch, (size_t)nc);
}

static void push(offers_t *o, http_req_t *r) {
  if (keys_require(o->cfg, r, KEY_ADMIN, NULL) != 0) return;
  cJSON *root = body_object(r, NULL, 0);
  if (!root) return;
  const cJSON *id = cJSON_GetObjectItemCaseSensitive(root, "anonymousId");
  const cJSON *all = cJSON_GetObjectItemCaseSensitive(root, "all");
  const cJSON *tmpl = cJSON_GetObjectItemCaseSensitive(root, "template");
  const cJSON *fields = cJSON_GetObjectItemCaseSensitive(root, "fields");
  const char *code = NULL, *msg = NULL;
  char *ftext = NULL;
  if (!!id == cJSON_IsTrue(all))
    code = "invalid_target", msg = "give either anonymousId or \"all\": true";
  else if (id && (!cJSON_IsString(id) || !id_ok(id->valuestring, strlen(id->valuestring))))
    code = "invalid_anonymous_id", msg = "anonymousId must be a string of 1 to 128 bytes";
  else if (!cJSON_IsString(tmpl) || !*tmpl->valuestring || strlen(tmpl->valuestring) > TEMPLATE_MAX)
    code = "invalid_template", msg = "template must be a string of 1 to 128 bytes";
  else if (fields && !cJSON_IsObject(fields))
    code = "invalid_fields", msg = "fields must be a JSON object";
  else if (fields && (!(ftext = cJSON_PrintUnformatted(fields)) || strlen(ftext) > FIELDS_MAX))
    code = "invalid_fields", msg = "fields must be at most 8 KiB of JSON";
  if (code) {
    http_respond_error(r, 400, code, msg, NULL, 0);
  } else {
    int reached = offers_publish(o, id ? id->valuestring : NULL, tmpl->valuestring, ftext, NULL, NULL);
    char body[96];
    snprintf(body, sizeof body, "{\"success\":true,\"reached\":%d}", reached < 0 ? 0 : reached);
    json_reply(r, 200, body, NULL, 0);
  }
  cJSON_free(ftext);
  cJSON_Delete(root);
}

static void preflight(offers_t *o, http_req_t *r) {
  http_header_t h[6];
  int n = cors(o, r, h);
  if (n < 0) return;
  h[n++] = (http_header_t){"Access-Control-Allow-Methods", "GET, POST, OPTIONS"};
  h[n++] = (http_header_t){"Access-Control-Allow-Headers", "Content-Type, Authorization, Last-Event-ID"};
  h[n++] = (http_header_t){"Access-Control-Max-Age", "86400"};
  http_respond(r, 204, h, (size_t)n, "", 0, 0);
}

int offers_handle(offers_t *o, http_req_t *r) {
  const char *path = http_req_path(r), *method = http_req_method(r);
  int is_stream = !strcmp(path, "/v1/offers"), is_token = !strcmp(path, "/v1/offers/token"),
      is_push = !strcmp(path, "/v1/push");
  if (!is_stream && !is_token && !is_push) return 0;
  http_req_set_route(r, is_stream ? "offers" : is_token ? "offers_token" : "push");
  if (!strcmp(method, "OPTIONS") && !is_push) {
    preflight(o, r);
    return 1;
  }
  const char *want = is_stream ? "GET" : "POST";
  if (strcmp(method, want) != 0) {
    http_header_t h[] = {{"Allow", want}};
    http_respond_error(r, 405, "method_not_allowed", is_stream ? "use GET" : "use POST", h, 1);
    return 1;
  }
  if (is_stream) stream(o, r);
  else if (is_token) issue_token(o, r);
  else push(o, r);
  return 1;
}
