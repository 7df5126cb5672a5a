/* Unit tests for the enrichment chain: IPs, times, message ids, user agent. */
#include "enrich.h"

#include "config.h"
#include "evtest.h"
#include "test.h"

TEST(anonymise) {
  static const struct {
    const char *in, *out;
  } cases[] = {
      {"203.0.113.77", "203.0.113.0"},
      {"10.1.2.3", "10.1.2.0"},
      {"0.0.0.0", "0.0.0.0"},
      {"255.255.255.255", "255.255.255.0"},
      {"1.20.100.9", "1.20.100.0"},
      {"99.100.9.10", "99.100.9.0"},
      {"2001:db8:abcd:12:34::1", "2001:db8:abcd::"},
      {"::1", "::"},
      {"::ffff:198.51.100.9", "::"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char out[46];
    CHECK_INT(enrich_anonymise_ip(cases[i].in, out), 0);
    if (strcmp(out, cases[i].out)) FAILF("%s -> %s, expected %s", cases[i].in, out, cases[i].out);
  }
  char out[46];
  CHECK(enrich_anonymise_ip("not-an-ip", out) != 0);
  CHECK_STR(out, "");
}

TEST(client_ip_through_trusted_proxies) {
  char *items[] = {"10.0.0.1", "10.0.0.2"};
  strlist_t trusted = {items, 2};
  strlist_t none = {NULL, 0};
  char out[46];
  enrich_client_ip("10.0.0.1", "198.51.100.7, 10.0.0.2", &trusted, out);
  CHECK_STR(out, "198.51.100.7");
  enrich_client_ip("10.0.0.1", "6.6.6.6, 198.51.100.7", &trusted, out);
  CHECK_STR(out, "198.51.100.7"); /* the left-most hop is client-supplied: not believed */
  enrich_client_ip("192.0.2.5", "198.51.100.7", &trusted, out);
  CHECK_STR(out, "192.0.2.5"); /* untrusted peer: header ignored */
  enrich_client_ip("10.0.0.1", "198.51.100.7", &none, out);
  CHECK_STR(out, "10.0.0.1");
  enrich_client_ip("10.0.0.1", "garbage", &trusted, out);
  CHECK_STR(out, "10.0.0.1");
}

static cJSON *run(const char *json, config_t *c, const enrich_ctx_t *ctx) {
  enrich_t *e = enrich_new(c);
  char msg[200] = "";
  int rc = -1;
  cJSON *ev = evtest_chain(e, json, ctx, &rc, msg, sizeof msg);
  if (rc != 0) FAILF("enrich failed: %s", msg);
  enrich_free(e);
  return ev;
}

static const char *ctx_str(cJSON *ev, const char *name) {
  cJSON *c = cJSON_GetObjectItem(ev, "context");
  cJSON *v = c ? cJSON_GetObjectItem(c, name) : NULL;
  return cJSON_IsString(v) ? v->valuestring : NULL;
}

TEST(chain_defaults) {
  config_t c;
  config_defaults(&c);
  /* received at 2026-11-22T19:37:05.000Z */
  enrich_ctx_t ctx = {1795376225000000LL, "203.0.113.77", "Mozilla/5.0 test", NULL, ""};
  cJSON *ev = run("{\"type\":\"track\",\"event\":\"x\",\"userId\":\"u\"}", &c, &ctx);
  CHECK_STR(cJSON_GetObjectItem(ev, "receivedAt")->valuestring, "2026-11-22T19:37:05.000Z");
  CHECK_STR(cJSON_GetObjectItem(ev, "timestamp")->valuestring, "2026-11-22T19:37:05.000Z");
  const char *mid = cJSON_GetObjectItem(ev, "messageId")->valuestring;
  CHECK(strncmp(mid, "srv-", 4) == 0 && strlen(mid) == 40);
  CHECK_STR(ctx_str(ev, "ip"), "203.0.113.0");
  CHECK_STR(ctx_str(ev, "userAgent"), "Mozilla/5.0 test");
  char *text = cJSON_PrintUnformatted(ev);
  CHECK(strstr(text, "203.0.113.77") == NULL);
  free(text);
  cJSON_Delete(ev);
  config_free(&c);
}

TEST(client_values_kept_or_corrected) {
  config_t c;
  config_defaults(&c);
  enrich_ctx_t ctx = {1795376225000000LL, "203.0.113.77", "UA-header", NULL, ""};
  /* Client clock 10 s behind: sentAt 19:36:55, timestamp 19:36:50 -> 19:37:00. */
  cJSON *ev = run("{\"type\":\"track\",\"event\":\"x\",\"userId\":\"u\",\"messageId\":\"m-1\","
                  "\"timestamp\":\"2026-11-22T19:36:50Z\",\"sentAt\":\"2026-11-22T19:36:55Z\","
                  "\"context\":{\"ip\":\"2001:db8:1:2::9\",\"userAgent\":\"UA-sdk\"}}",
                  &c, &ctx);
  CHECK_STR(cJSON_GetObjectItem(ev, "timestamp")->valuestring, "2026-11-22T19:37:00.000Z");
  CHECK_STR(cJSON_GetObjectItem(ev, "originalTimestamp")->valuestring, "2026-11-22T19:36:50Z");
  CHECK_STR(cJSON_GetObjectItem(ev, "messageId")->valuestring, "m-1");
  CHECK_STR(ctx_str(ev, "ip"), "2001:db8:1::");
  CHECK_STR(ctx_str(ev, "userAgent"), "UA-sdk");
  cJSON_Delete(ev);
  /* A client-supplied non-address never reaches disk; receivedAt is never the client's. */
  ev = run("{\"type\":\"track\",\"event\":\"x\",\"userId\":\"u\",\"receivedAt\":\"1999-01-01T00:00:00Z\","
           "\"context\":{\"ip\":\"<script>\"}}", &c, &ctx);
  CHECK_STR(ctx_str(ev, "ip"), "203.0.113.0");
  CHECK_STR(cJSON_GetObjectItem(ev, "receivedAt")->valuestring, "2026-11-22T19:37:05.000Z");
  cJSON_Delete(ev);
  config_free(&c);
}

TEST(keep_full_ip) {
  config_t c;
  config_defaults(&c);
  c.keep_full_ip = 1;
  enrich_ctx_t ctx = {1795376225000000LL, "203.0.113.77", NULL, NULL, ""};
  cJSON *ev = run("{\"type\":\"track\",\"event\":\"x\",\"userId\":\"u\"}", &c, &ctx);
  CHECK_STR(ctx_str(ev, "ip"), "203.0.113.77");
  CHECK(ctx_str(ev, "userAgent") == NULL);
  cJSON_Delete(ev);
  config_free(&c);
}

static int reject_all(evdoc_t *ev, const enrich_ctx_t *ctx, void *state, char *msg, size_t n) {
  snprintf(msg, n, "nope");
  return -1;
}

TEST(steps_extend_the_chain) {
  config_t c;
  config_defaults(&c);
  enrich_t *e = enrich_new(&c);
  enrich_add(e, "later_stage", reject_all, NULL);
  enrich_ctx_t ctx = {0, "127.0.0.1", NULL, NULL, ""};
  char msg[200];
  int rc = 0;
  cJSON *ev = evtest_chain(e, "{\"type\":\"track\",\"event\":\"x\",\"userId\":\"u\"}", &ctx, &rc, msg, sizeof msg);
  CHECK_INT(rc, -1);
  CHECK_STR(msg, "later_stage: nope");
  cJSON_Delete(ev);
  enrich_free(e);
  config_free(&c);
}

int main(void) {
  RUN(anonymise);
  RUN(client_ip_through_trusted_proxies);
  RUN(chain_defaults);
  RUN(client_values_kept_or_corrected);
  RUN(keep_full_ip);
  RUN(steps_extend_the_chain);
  return TEST_REPORT("test_enrich");
}
