/* qevent: the event a URL's query string describes — the e-mail open pixel
 * (GET /v1/p.gif) and the click redirect (GET /v1/r) — built as JSON text that the
 * collector then loads and takes like any posted event.
 *
 * Design. Parameters are applied in order onto an empty object held by an evdoc (one
 * edit each, copied into its arena), then the evdoc writes the text once: no tree of
 * nodes, no second printing pass. Later parameters win over earlier ones at the same
 * path; a dotted parameter below a member that is not an object replaces that member
 * with an object. `data` is a whole event as base64 JSON (Segment's pixel style): its
 * members replace the event's members of the same names. The hostile-input limits:
 * at most QEVENT_MAX_FIELDS field parameters, parameter names under QEVENT_MAX_NAME
 * bytes, paths of at most EVDOC_MAX_DEPTH segments of 1..63 bytes (others are ignored);
 * `data` must decode to one JSON object with unique member names. Core module: no
 * logging. */
#ifndef SLUICE_QEVENT_H
#define SLUICE_QEVENT_H

#include <stddef.h>

#include "util/buf.h"

#define QEVENT_MAX_FIELDS 256 /* field parameters (and data) per query; more are ignored */
#define QEVENT_MAX_NAME 200   /* bytes of an encoded parameter name; longer ones are ignored */

typedef enum { QEVENT_PIXEL, QEVENT_REDIRECT } qevent_kind_t;

typedef struct qevent qevent_t;

/* A builder with its reusable buffers. Returns it (never NULL). qevent_free(NULL) is a
 * no-op. */
qevent_t *qevent_new(void);
void qevent_free(qevent_t *q);

/* Build the event query[0..qlen) describes and append its JSON text (one object) to out.
 * Parameters: writeKey or k (the write key), u or url (the redirect target), data (base64,
 * standard or URL-safe, of a JSON object), type, event, name, userId, anonymousId,
 * messageId, timestamp, and dotted paths (properties.x, context.campaign.source, ...);
 * others are ignored. Values are percent-decoded ('+' is a space) and end at a decoded
 * NUL. Defaults: type "track"; for a track without event, "Email Opened" (pixel) or
 * "Email Link Clicked" (redirect); the redirect's target as properties.url when
 * properties is absent or an object without url.
 * Returns 0 with key (capacity keycap, OUT) set to the last write key given ("" for none)
 * and *redirect (OUT, malloc'd, the caller frees it; NULL when absent) to the last u/url.
 * Returns -1 with *code and *msg (static strings, OUT) for malformed percent-encoding or a
 * bad data parameter; key and *redirect then hold what was read so far. */
int qevent_build(qevent_t *q, const char *query, size_t qlen, qevent_kind_t kind, buf_t *out,
                 char *key, size_t keycap, char **redirect, const char **code, const char **msg);

#endif
