/* Unit tests for event validation (table in tests/cases/events.txt) and normalisation. */
#include "event.h"

#include "test.h"

static void run_case(const char *type, const char *json, const char *expect, int line) {
  cJSON *ev = cJSON_Parse(json);
  if (!ev) {
    FAILF("line %d: case JSON does not parse: %s", line, json);
    return;
  }
  event_error_t err = {0};
  int rc = event_validate(ev, strcmp(type, "-") ? type : NULL, &err);
  const char *got = rc == 0 ? "ok" : err.code;
  if (strcmp(got, expect) != 0)
    FAILF("line %d: %s %s -> %s (%s), expected %s", line, type, json, got, err.message, expect);
  if (rc != 0 && !err.message[0]) FAILF("line %d: rejection without a message", line);
  cJSON_Delete(ev);
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
  cJSON *ev = cJSON_Parse("{\"event\":\"x\",\"userId\":12345,\"writeKey\":\"secret\"}");
  event_error_t err;
  CHECK_INT(event_validate(ev, "track", &err), 0);
  CHECK_STR(cJSON_GetObjectItem(ev, "type")->valuestring, "track");
  CHECK_STR(cJSON_GetObjectItem(ev, "userId")->valuestring, "12345");
  CHECK(cJSON_GetObjectItem(ev, "writeKey") == NULL);
  size_t n;
  CHECK_STR(event_key(ev, &n), "12345");
  CHECK_INT(n, 5);
  cJSON_Delete(ev);
}

TEST(key_falls_back_to_anonymous_id) {
  cJSON *ev = cJSON_Parse("{\"type\":\"page\",\"anonymousId\":\"anon-1\"}");
  event_error_t err;
  CHECK_INT(event_validate(ev, NULL, &err), 0);
  size_t n;
  CHECK_STR(event_key(ev, &n), "anon-1");
  cJSON_Delete(ev);
}

TEST(long_ids_rejected) {
  char json[3000];
  char id[1100];
  memset(id, 'a', sizeof id - 1);
  id[sizeof id - 1] = 0;
  snprintf(json, sizeof json, "{\"event\":\"x\",\"userId\":\"%s\"}", id);
  cJSON *ev = cJSON_Parse(json);
  event_error_t err;
  CHECK_INT(event_validate(ev, "track", &err), -1);
  CHECK_STR(err.code, EVENT_ERR_FIELD);
  cJSON_Delete(ev);
}

int main(void) {
  RUN(table_cases);
  RUN(normalises);
  RUN(key_falls_back_to_anonymous_id);
  RUN(long_ids_rejected);
  return TEST_REPORT("test_event");
}
