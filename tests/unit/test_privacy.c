/* Unit tests for consent decisions and pseudonymisation. */
#include <stdlib.h>
#include <sys/stat.h>

#include "config.h"
#include "privacy.h"

#include "evtest.h"
#include "test.h"

static char dir[] = "/tmp/sluice-test-privacy-XXXXXX";

static int consent(privacy_t *p, const char *json, cJSON **out) {
  enrich_ctx_t ctx = {0, "127.0.0.1", NULL, NULL, ""};
  int rc = -99;
  cJSON *ev = evtest_step(privacy_consent_step, p, json, &ctx, &rc);
  if (out)
    *out = ev;
  else
    cJSON_Delete(ev);
  return rc;
}

static int marketing(cJSON *ev) {
  cJSON *c = cJSON_GetObjectItem(cJSON_GetObjectItem(ev, "context"), "consent");
  cJSON *m = cJSON_GetObjectItem(c, "marketing");
  return cJSON_IsBool(m) ? cJSON_IsTrue(m) : -1;
}

TEST(consent_decisions) {
  config_t c;
  config_defaults(&c);
  char err[256];
  privacy_t *p = privacy_new(&c, err, sizeof err);
  cJSON *ev;
  /* No information: default granted; marketing granted by default too. */
  CHECK_INT(consent(p, "{\"type\":\"track\",\"event\":\"x\",\"context\":{}}", &ev), 0);
  CHECK_INT(marketing(ev), 1);
  cJSON_Delete(ev);
  /* Analytics yes, advertising no. */
  CHECK_INT(consent(p, "{\"type\":\"track\",\"event\":\"x\",\"context\":{\"consent\":{\"categoryPreferences\":"
                       "{\"Analytics\":true,\"Advertising\":false}}}}", &ev), 0);
  CHECK_INT(marketing(ev), 0);
  cJSON_Delete(ev);
  /* Analytics explicitly denied: dropped. */
  CHECK_INT(consent(p, "{\"type\":\"track\",\"event\":\"x\",\"context\":{\"consent\":{\"categoryPreferences\":"
                       "{\"Analytics\":false}}}}", NULL), ENRICH_DROP);
  privacy_free(p);

  config_set(&c, "without-analytics-consent", "anonymous", err, sizeof err);
  config_set(&c, "consent-default", "denied", err, sizeof err);
  p = privacy_new(&c, err, sizeof err);
  CHECK_INT(consent(p, "{\"type\":\"track\",\"event\":\"Bought\",\"userId\":\"alice\",\"messageId\":\"m\","
                       "\"properties\":{\"email\":\"a@x\"},\"context\":{\"ip\":\"1.2.3.0\"}}", &ev), 0);
  char *text = cJSON_PrintUnformatted(ev);
  CHECK(strstr(text, "alice") == NULL && strstr(text, "a@x") == NULL && strstr(text, "1.2.3.0") == NULL);
  CHECK(strstr(text, "\"event\":\"Bought\"") != NULL && strstr(text, "\"anonymous\":true") != NULL);
  free(text);
  cJSON_Delete(ev);
  privacy_free(p);
  config_free(&c);
}

TEST(pseudonyms_are_keyed_stable_and_kept) {
  config_t c;
  config_defaults(&c);
  char err[256];
  config_set(&c, "data-dir", dir, err, sizeof err);
  config_set(&c, "pseudonymise", "true", err, sizeof err);
  privacy_t *p = privacy_new(&c, err, sizeof err);
  CHECK(p != NULL);
  char a[36], b[36], x[36];
  CHECK_INT(privacy_pseudonym(p, "alice", 5, a), 0);
  CHECK_INT(privacy_pseudonym(p, "alice", 5, b), 0);
  CHECK_INT(privacy_pseudonym(p, "bob", 3, x), 0);
  CHECK_STR(a, b);
  CHECK(strcmp(a, x) != 0);
  CHECK(strncmp(a, "p1_", 3) == 0 && strlen(a) == 35);
  char path[256];
  snprintf(path, sizeof path, "%s/pseudonym.key", dir);
  struct stat st;
  CHECK_INT(stat(path, &st), 0);
  CHECK_INT(st.st_mode & 0777, 0600);
  CHECK_INT(st.st_size, 32);

  enrich_ctx_t ctx = {0, "127.0.0.1", NULL, NULL, ""};
  int rc = -1;
  cJSON *ev = evtest_step(privacy_pseudonymise_step, p,
                          "{\"type\":\"identify\",\"userId\":\"alice\",\"anonymousId\":\"anon\","
                          "\"traits\":{\"email\":\"alice@example.com\",\"plan\":\"pro\"},\"context\":{\"traits\":{\"phone\":12345}}}",
                          &ctx, &rc);
  CHECK_INT(rc, 0);
  CHECK_STR(cJSON_GetObjectItem(ev, "userId")->valuestring, a);
  CHECK_STR(cJSON_GetObjectItem(ev, "anonymousId")->valuestring, "anon");
  char *text = cJSON_PrintUnformatted(ev);
  CHECK(strstr(text, "alice") == NULL && strstr(text, "12345") == NULL);
  CHECK(strstr(text, "\"plan\":\"pro\"") != NULL);
  free(text);
  cJSON_Delete(ev);
  privacy_free(p);

  /* Restart: same key, same pseudonym. */
  p = privacy_new(&c, err, sizeof err);
  CHECK_INT(privacy_pseudonym(p, "alice", 5, b), 0);
  CHECK_STR(a, b);
  privacy_free(p);
  config_free(&c);
}

int main(void) {
  if (!mkdtemp(dir)) return 1;
  RUN(consent_decisions);
  RUN(pseudonyms_are_keyed_stable_and_kept);
  char cmd[300];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  if (system(cmd) != 0) return 1;
  return TEST_REPORT("test_privacy");
}
