/* costs: the body of POST /v1/costs (admin key) turned into a "Marketing Cost" track
 * event, which the collector then stores through the normal write path — so marketing
 * costs are durable, replayed with the log and read by the CAC KPI (kpi.h, docs/API.md).
 *
 * Design. A strict parser: the body is one JSON object with exactly the known members,
 * each checked (type, length, range); the event it builds carries only them, under
 * properties, with userId COSTS_USER_ID. Core module: no logging. */
#ifndef SLUICE_COSTS_H
#define SLUICE_COSTS_H

#include <stddef.h>

#include "util/buf.h"

#define COSTS_USER_ID "sluice-costs"
#define COSTS_MAX_TEXT 256      /* campaign and source, bytes */
#define COSTS_MAX_COST 1e12     /* largest cost accepted */

/* Parse body[0..len): {"campaign": string (1..256 bytes, required), "cost": number
 * 0..1e12 (required), "source": string (0..256 bytes), "currency": 3-letter code,
 * "timestamp": ISO 8601 time, "messageId": string (1..256 bytes: makes a retry a
 * duplicate)}. Appends the event's JSON to out (OUT) and returns 0; or returns -EINVAL
 * with a message naming the member in err. */
int costs_event(const char *body, size_t len, buf_t *out, char *err, size_t errlen);

#endif
