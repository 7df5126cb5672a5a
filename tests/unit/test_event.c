/* Unit tests for event validation (table in tests/cases/events.txt) and normalisation. */
#include "event.h"

#include "evtest.h"
#include "test.h"

static evdoc_t *ev;

static void run_case(const char *type, const char *json, const char *expect, int line) {
  int lr = evdoc_load(ev, json, strlen(json));
  if (lr == -2) {
    /* Not an object: the collector answers not_an_object before validation. */
    if (strcmp(expect, "not_an_object")) FAILF("line %d: %s is not an object", line, json);
    return;
  }
  if (lr != 0) {
    FAILF("line %d: case JSON does not parse: %s", line, json);
    return;
  }
  event_error_t err = {0};
  int rc = event_validate(ev, strcmp(type, "-") ? type : NULL, &err);
  const char *got = rc == 0 ? "ok" : err.code;
  if (strcmp(got, expect) != 0)
    FAILF("line %d: %s %s -> %s (%s), expected %s", line, type, json, got, err.message, expect);
  if (rc != 0 && !err.message[0]) FAILF("line %d: rejection without a message", line);
}

/* Validate json as /v1/<implied>; return the normalised event as cJSON (caller frees). */
static cJSON *validated(const char *json, const char *implied, int *rc) {
  evdoc_load(ev, json, strlen(json));
  event_error_t err;
  *rc = event_validate(ev, implied, &err);
  return evtest_written(ev);
}

TEST(table_cases) {
  FILE *f = fopen("tests/cases/events.txt", "r");
  if (!f) {
    FAILF("cannot open tests/cases/events.txt (run from the repo root)");
    return;
  }
  char line[4096];
  int n = 0, cases = 0;
  while (fgets(line, sizeof line, f)) {
    n++;
    if (line[0] == '#' || line[0] == '\n') continue;
    line[strcspn(line, "\n")] = 0;
    char *t1 = strchr(line, '\t'), *t2 = t1 ? strchr(t1 + 1, '\t') : NULL;
    if (!t1 || !t2) {
      FAILF("line %d: malformed case", n);
      continue;
    }
    *t1 = *t2 = 0;
    run_case(line, t1 + 1, t2 + 1, n);
    cases++;
  }
  fclose(f);
  CHECK(cases >= 40);
}

TEST(normalises) {
  int rc;
  cJSON *j = validated("{\"event\":\"x\",\"userId\":12345,\"writeKey\":\"secret\"}", "track", &rc);
  CHECK_INT(rc, 0);
  CHECK_STR(cJSON_GetObjectItem(j, "type")->valuestring, "track");
  CHECK_STR(cJSON_GetObjectItem(j, "userId")->valuestring, "12345");
  CHECK(cJSON_GetObjectItem(j, "writeKey") == NULL);
  char key[64];
  CHECK_STR(event_key(ev, key, sizeof key), "12345");
  cJSON_Delete(j);
}

TEST(key_falls_back_to_anonymous_id) {
  int rc;
  cJSON *j = validated("{\"type\":\"page\",\"anonymousId\":\"anon-1\"}", NULL, &rc);
  CHECK_INT(rc, 0);
  char key[64];
  CHECK_STR(event_key(ev, key, sizeof key), "anon-1");
  cJSON_Delete(j);
}

TEST(long_ids_rejected) {
  char json[3000];
  char id[1100];
  memset(id, 'a', sizeof id - 1);
  id[sizeof id - 1] = 0;
  snprintf(json, sizeof json, "{\"event\":\"x\",\"userId\":\"%s\"}", id);
  evdoc_load(ev, json, strlen(json));
  event_error_t err;
  CHECK_INT(event_validate(ev, "track", &err), -1);
  CHECK_STR(err.code, EVENT_ERR_FIELD);
}

int main(void) {
  ev = evdoc_new();
  RUN(table_cases);
  RUN(normalises);
  RUN(key_falls_back_to_anonymous_id);
  RUN(long_ids_rejected);
  evdoc_free(ev);
  return TEST_REPORT("test_event");
}
