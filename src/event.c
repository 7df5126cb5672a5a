/* event: Segment event validation and normalisation (see event.h). */
#include "event.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "util/clock.h"

static const char *const types[] = {"track", "page", "screen", "identify", "group", "alias"};

int event_type_known(const char *name) {
  for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
    if (strcmp(name, types[i]) == 0) return 1;
  return 0;
}

static int fail(event_error_t *err, const char *code, const char *f, ...)
    __attribute__((format(printf, 3, 4)));
static int fail(event_error_t *err, const char *code, const char *f, ...) {
  err->code = code;
  va_list ap;
  va_start(ap, f);
  vsnprintf(err->message, sizeof err->message, f, ap);
  va_end(ap);
  return -1;
}

/* An id may be a string or an integer (some SDKs send numbers); normalise to a string.
 * Returns 1 when present and non-empty, 0 when absent/null/empty, -1 when invalid. */
static int id_field(evdoc_t *ev, const char *name, jscan_val_t v, event_error_t *err) {
  if (v.type == JSCAN_NONE || v.type == JSCAN_NULL) return 0;
  if (v.type == JSCAN_NUMBER) {
    double d = v.num;
    if (d != d || d > 9007199254740992.0 || d < -9007199254740992.0 || d != (double)(long long)d)
      return fail(err, EVENT_ERR_FIELD, "%s must be a string or an integer", name);
    char tmp[32];
    snprintf(tmp, sizeof tmp, "%lld", (long long)d);
    evdoc_set_str(ev, name, tmp);
    return 1;
  }
  if (v.type != JSCAN_STRING) return fail(err, EVENT_ERR_FIELD, "%s must be a string", name);
  /* Raw length bounds the decoded length from above; decode only near the limit. */
  if (v.n > EVENT_MAX_ID) {
    char buf[EVENT_MAX_ID + 8];
    if (jscan_string(&v, buf, sizeof buf) > EVENT_MAX_ID)
      return fail(err, EVENT_ERR_FIELD, "%s is longer than %d bytes", name, EVENT_MAX_ID);
  }
  return v.n > 0;
}

static int object_field(const char *name, jscan_type_t t, event_error_t *err) {
  if (t == JSCAN_NONE || t == JSCAN_NULL || t == JSCAN_OBJECT) return 0;
  return fail(err, EVENT_ERR_FIELD, "%s must be an object", name);
}

static int time_field(const char *name, jscan_val_t v, event_error_t *err) {
  if (v.type == JSCAN_NONE || v.type == JSCAN_NULL) return 0;
  int64_t t;
  if (v.type != JSCAN_STRING || v.escaped || clock_parse_iso(v.p, v.n, &t) != 0)
    return fail(err, EVENT_ERR_TIMESTAMP, "%s must be an ISO-8601 date-time string", name);
  return 0;
}

static int name_field(const char *name, jscan_val_t v, int required, event_error_t *err) {
  if (v.type == JSCAN_NONE || v.type == JSCAN_NULL) {
    if (required) return fail(err, EVENT_ERR_MISSING, "%s is required", name);
    return 0;
  }
  if (v.type != JSCAN_STRING) return fail(err, EVENT_ERR_FIELD, "%s must be a string", name);
  if (required && v.n == 0) return fail(err, EVENT_ERR_MISSING, "%s must not be empty", name);
  if (v.n > EVENT_MAX_NAME) {
    char buf[EVENT_MAX_NAME + 8];
    if (jscan_string(&v, buf, sizeof buf) > EVENT_MAX_NAME)
      return fail(err, EVENT_ERR_FIELD, "%s is longer than %d bytes", name, EVENT_MAX_NAME);
  }
  return 0;
}

/* Every top-level field validation reads, fetched in one walk (evdoc_get_top). Each is read
 * before any edit of its own, and no edit touches another, so reading them all first sees
 * what reading each in turn would. */
enum { F_TYPE, F_WRITE_KEY, F_USER_ID, F_ANONYMOUS_ID, F_MESSAGE_ID, F_PROPERTIES, F_TRAITS,
       F_CONTEXT, F_INTEGRATIONS, F_TIMESTAMP, F_SENT_AT, F_ORIGINAL_TIMESTAMP, F_EVENT, F_NAME,
       F_CATEGORY, F_GROUP_ID, F_PREVIOUS_ID, F_COUNT };
static const char *const fields[F_COUNT] = {
    "type",     "writeKey",     "userId",    "anonymousId", "messageId", "properties",
    "traits",   "context",      "integrations", "timestamp", "sentAt",   "originalTimestamp",
    "event",    "name",         "category",  "groupId",     "previousId"};

int event_validate(evdoc_t *ev, const char *implied_type, event_error_t *err) {
  char type[16];
  jscan_val_t f[F_COUNT];
  evdoc_get_top(ev, fields, F_COUNT, f);
  jscan_val_t t = f[F_TYPE];
  int have_type = t.type == JSCAN_STRING && t.n < sizeof type && jscan_string(&t, type, sizeof type) >= 0;
  if (implied_type) {
    if (t.type != JSCAN_NONE && !(have_type && strcmp(type, implied_type) == 0)) {
      if (t.type != JSCAN_STRING) return fail(err, EVENT_ERR_TYPE, "type must be a string");
      return fail(err, EVENT_ERR_TYPE, "type '%.40s' does not match this endpoint (%s)",
                  have_type ? type : "?", implied_type);
    }
    if (t.type == JSCAN_NONE) evdoc_set_str(ev, "type", implied_type);
    size_t tl = strlen(implied_type); /* a route's constant, shorter than type */
    if (tl >= sizeof type) tl = sizeof type - 1;
    memcpy(type, implied_type, tl);
    type[tl] = 0;
  } else {
    if (t.type == JSCAN_NONE)
      return fail(err, EVENT_ERR_TYPE, "type is required (track, page, screen, identify, group, alias)");
    if (!have_type || !event_type_known(type))
      return fail(err, EVENT_ERR_TYPE, "type must be one of track, page, screen, identify, group, alias");
  }
  if (f[F_WRITE_KEY].type != JSCAN_NONE) evdoc_del(ev, "writeKey");

  int uid = id_field(ev, "userId", f[F_USER_ID], err);
  if (uid < 0) return -1;
  int aid = id_field(ev, "anonymousId", f[F_ANONYMOUS_ID], err);
  if (aid < 0) return -1;
  if (!uid && !aid) return fail(err, EVENT_ERR_IDENTITY, "userId or anonymousId is required");
  if (id_field(ev, "messageId", f[F_MESSAGE_ID], err) < 0) return -1;

  for (int i = F_PROPERTIES; i <= F_INTEGRATIONS; i++)
    if (object_field(fields[i], f[i].type, err)) return -1;
  for (int i = F_TIMESTAMP; i <= F_ORIGINAL_TIMESTAMP; i++)
    if (time_field(fields[i], f[i], err)) return -1;

  if (strcmp(type, "track") == 0) return name_field("event", f[F_EVENT], 1, err);
  if (strcmp(type, "page") == 0 || strcmp(type, "screen") == 0)
    return name_field("name", f[F_NAME], 0, err) || name_field("category", f[F_CATEGORY], 0, err)
               ? -1
               : 0;
  if (strcmp(type, "group") == 0) {
    int g = id_field(ev, "groupId", f[F_GROUP_ID], err);
    if (g < 0) return -1;
    if (!g) return fail(err, EVENT_ERR_MISSING, "groupId is required for group");
    return 0;
  }
  if (strcmp(type, "alias") == 0) {
    int p = id_field(ev, "previousId", f[F_PREVIOUS_ID], err);
    if (p < 0) return -1;
    if (!p) return fail(err, EVENT_ERR_MISSING, "previousId is required for alias");
    if (!uid) return fail(err, EVENT_ERR_MISSING, "userId is required for alias");
  }
  return 0;
}

const char *event_key(evdoc_t *ev, char *buf, size_t cap) {
  static evdoc_path_t user_id = EVDOC_PATH("userId"), anonymous_id = EVDOC_PATH("anonymousId");
  buf[0] = 0;
  jscan_val_t v = evdoc_get_p(ev, &user_id);
  if (v.type != JSCAN_STRING || v.n == 0) v = evdoc_get_p(ev, &anonymous_id);
  if (v.type == JSCAN_STRING && jscan_string(&v, buf, cap) < 0) buf[0] = 0;
  return buf;
}
