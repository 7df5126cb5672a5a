/* event: what a valid incoming event is — the Segment Tracking API spec, checked.
 *
 * The collector loads each event into an evdoc (the client's bytes, validated as JSON)
 * and hands it here. event_validate checks it against the Segment spec (type, the
 * identity it needs, field types, timestamp syntax) and normalises it with edits: the
 * type implied by the endpoint is set, numeric ids become strings, and writeKey (a
 * credential) is removed so it never reaches disk. A rejected event gets a stable machine-readable code
 * (listed below; clients and the bad-event log use it) and a sentence a developer can act
 * on. This module does no I/O and keeps no state, so it is fuzzed directly. */
#ifndef SLUICE_EVENT_H
#define SLUICE_EVENT_H

#include <stddef.h>

#include "evdoc.h"

/* Error codes (stable API strings). */
#define EVENT_ERR_JSON "invalid_json"
#define EVENT_ERR_NOT_OBJECT "not_an_object"
#define EVENT_ERR_TYPE "invalid_type"
#define EVENT_ERR_FIELD "invalid_field"
#define EVENT_ERR_MISSING "missing_field"
#define EVENT_ERR_IDENTITY "missing_identity"
#define EVENT_ERR_TIMESTAMP "invalid_timestamp"
#define EVENT_ERR_TOO_LARGE "event_too_large"
#define EVENT_ERR_TOO_MANY "too_many_events"

/* Longest accepted id (userId, anonymousId, messageId, groupId, previousId) and name. */
#define EVENT_MAX_ID 1024
#define EVENT_MAX_NAME 1024

typedef struct event_error {
  const char *code;  /* one of EVENT_ERR_* (static) */
  char message[200];
} event_error_t;

/* Validate and normalise one event in place. implied_type is the type the endpoint
 * implies ("track" for /v1/track, NULL for /v1/batch where each event must say).
 * Returns 0, or -1 with err filled. */
int event_validate(evdoc_t *ev, const char *implied_type, event_error_t *err /* OUT */);

/* The partition key of a valid event: userId if set, else anonymousId, decoded into buf
 * (capacity cap, at least EVENT_MAX_ID + 1). Returns buf ("" when neither is set). */
const char *event_key(evdoc_t *ev, char *buf, size_t cap);

/* Is name one of the Segment types (track, page, screen, identify, group, alias)? */
int event_type_known(const char *name);

#endif
