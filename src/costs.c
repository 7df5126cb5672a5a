/* costs: POST /v1/costs body -> "Marketing Cost" event (see costs.h). */
#include "costs.h"

#include <cJSON.h>
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "kpi.h"
#include "util/clock.h"

/* The string member name of o when it is a string of min..max bytes; NULL when absent.
 * Sets *bad when present and invalid. */
static const char *text(const cJSON *o, const char *name, size_t min, size_t max, int *bad) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
  if (!v) return NULL;
  size_t n = cJSON_IsString(v) ? strlen(v->valuestring) : 0;
  if (!cJSON_IsString(v) || n < min || n > max) {
    *bad = 1;
    return NULL;
  }
  return v->valuestring;
}

int costs_event(const char *body, size_t len, buf_t *out, char *err, size_t errlen) {
  static const char *const known[] = {"campaign", "cost", "source", "currency", "timestamp",
                                      "messageId"};
  cJSON *o = cJSON_ParseWithLength(body ? body : "", body ? len : 0);
  const char *why = NULL;
  int bad = 0;
  if (!cJSON_IsObject(o)) {
    why = "the body must be a JSON object";
    goto done;
  }
  for (const cJSON *c = o->child; c && !why; c = c->next) {
    size_t k = 0;
    while (k < sizeof known / sizeof known[0] && strcmp(c->string, known[k])) k++;
    if (k == sizeof known / sizeof known[0]) why = "unknown member (allowed: campaign, cost, "
                                                   "source, currency, timestamp, messageId)";
  }
  if (why) goto done;
  const char *campaign = text(o, "campaign", 1, COSTS_MAX_TEXT, &bad);
  if (!campaign) {
    why = "campaign must be a string of 1 to 256 bytes";
    goto done;
  }
  const cJSON *cost = cJSON_GetObjectItemCaseSensitive(o, "cost");
  if (!cJSON_IsNumber(cost) || !isfinite(cost->valuedouble) || cost->valuedouble < 0 ||
      cost->valuedouble > COSTS_MAX_COST) {
    why = "cost must be a number from 0 to 1e12";
    goto done;
  }
  const char *source = text(o, "source", 0, COSTS_MAX_TEXT, &bad);
  if (bad) {
    why = "source must be a string of at most 256 bytes";
    goto done;
  }
  const char *currency = text(o, "currency", 3, 3, &bad);
  for (int i = 0; currency && i < 3; i++)
    if (!isupper((unsigned char)currency[i])) bad = 1;
  if (bad) {
    why = "currency must be a 3-letter code like EUR";
    goto done;
  }
  const char *ts = text(o, "timestamp", 1, 64, &bad);
  int64_t t;
  if (bad || (ts && clock_parse_iso(ts, strlen(ts), &t) != 0)) {
    why = "timestamp must be an ISO 8601 time";
    goto done;
  }
  const char *mid = text(o, "messageId", 1, COSTS_MAX_TEXT, &bad);
  if (bad) {
    why = "messageId must be a string of 1 to 256 bytes";
    goto done;
  }
  cJSON *ev = cJSON_CreateObject();
  cJSON_AddStringToObject(ev, "type", "track");
  cJSON_AddStringToObject(ev, "event", KPI_COST_EVENT);
  cJSON_AddStringToObject(ev, "userId", COSTS_USER_ID);
  if (ts) cJSON_AddStringToObject(ev, "timestamp", ts);
  if (mid) cJSON_AddStringToObject(ev, "messageId", mid);
  cJSON *props = cJSON_AddObjectToObject(ev, "properties");
  cJSON_AddStringToObject(props, "campaign", campaign);
  if (source) cJSON_AddStringToObject(props, "source", source);
  cJSON_AddNumberToObject(props, "cost", cost->valuedouble);
  if (currency) cJSON_AddStringToObject(props, "currency", currency);
  char *s = cJSON_PrintUnformatted(ev);
  cJSON_Delete(ev);
  buf_puts(out, s ? s : "{}");
  cJSON_free(s);
done:
  cJSON_Delete(o);
  if (why) {
    snprintf(err, errlen, "%s", why);
    return -EINVAL;
  }
  return 0;
}
