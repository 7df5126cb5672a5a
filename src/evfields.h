/* evfields: decode one stored event into what the read side aggregates by — its type,
 * event time, the rollup dimensions (PROCESS_DIMS), the ids, order revenue.
 *
 * Design. The process stage (rollups, profiles) and the log-scan query engine (scan.h)
 * must see an event the same way, or an exact scan would disagree with the rollups for
 * the same range; so both decode with this one function. It runs jscan once over the
 * record's value (no tree) with a compiled path set, and copies the strings it returns
 * into buffers inside evfields_t (decoded, cut at EVFIELDS_VAL_CAP - 1 bytes), so the
 * result does not borrow the record.
 *
 * Rules: event time is timestamp, else receivedAt, else the record's receive time.
 * Dimension "event" is the event name for track events and "$page", "$screen",
 * "$identify", "$group", "$alias" for the others; page_path is context.page.path, else the
 * path of context.page.url; product is properties.product_id, else properties.sku. An order is a track event named the conversion event; its
 * revenue is properties.revenue, else properties.total (0 when neither is a finite
 * number). The user key (what unique users and funnels count) is anonymousId when
 * present, else userId: a browser's anonymous events and its later identified ones count
 * as one user.
 *
 * Extra paths. A caller that needs more of the event (the KPI stage: a cost's campaign
 * and amount, the properties its user-defined KPIs sum) names them at evfields_new; they
 * are scanned in the same pass and read raw with evfields_extra.
 *
 * Thread-safety: a decoder is immutable after evfields_new and may be shared by threads;
 * each evfields_t belongs to one caller. */
#ifndef SLUICE_EVFIELDS_H
#define SLUICE_EVFIELDS_H

#include <stddef.h>
#include <stdint.h>

#include "jscan.h"
#include "log.h"
#include "process.h"
#include "profile.h"

#define EVFIELDS_VAL_CAP 512
#define EVFIELDS_MAX_EXTRA 40   /* extra paths a decoder may scan */

typedef struct evfields_decoder evfields_decoder_t;

/* One decoded event. Strings point into the struct's own buffers (NULL when absent or
 * empty); valid until the struct is reused. */
typedef struct evfields {
  int type;                          /* PROFILE_TRACK ... PROFILE_ALIAS */
  int64_t t_us;                      /* event time */
  const char *dims[PROCESS_NDIMS];   /* in PROCESS_DIMS order */
  uint32_t dlen[PROCESS_NDIMS];      /* strlen of each of dims (0 when NULL) */
  const char *user_id, *anonymous_id, *previous_id, *session_id;
  uint32_t user_id_len, anonymous_id_len, previous_id_len, session_id_len; /* their strlen
                                                                             (0 when NULL) */
  const char *user_key;              /* anonymous_id, else user_id, else NULL */
  uint64_t user_hash;                /* XXH3 of user_key, 0 when there is none */
  int is_order;
  double revenue;                    /* order revenue, 0 for other events */
  int consent_marketing;             /* context.consent.marketing is true (privacy.h) */
  jscan_val_t raw[JSCAN_MAX_PATHS];  /* jscan's spans (internal; evfields_extra) */
  char vb[PROCESS_NDIMS][EVFIELDS_VAL_CAP];
  char idb[3][PROFILE_ID_MAX + 1];
  char sid[256], urlb[2048];
} evfields_t;

/* A decoder for events whose order event is named conversion (copied; NULL: "Order
 * Completed"), also scanning the nextra dotted paths extra (borrowed for the call; NULL
 * when nextra is 0). Returns NULL when nextra passes EVFIELDS_MAX_EXTRA or a path is
 * malformed. */
evfields_decoder_t *evfields_new(const char *conversion, const char *const *extra,
                                 size_t nextra);
void evfields_free(evfields_decoder_t *d);

/* Decode rec's value, a record read from the event log, into *out (OUT). Returns 1 when
 * decoded, 0 for a record that is JSON but no event the read side counts (tombstones,
 * unknown types), -EBADMSG when the value is not a JSON object with a string "type".
 * The value is trusted (jscan_scan_trusted): ingestion validated it strictly before
 * appending it and the log reader checked its CRC, so only the structure on the decoded
 * paths is read. Damaged bytes never crash it or make it read outside the value: they
 * give -EBADMSG, or fields that may not mean much. */
int evfields_decode(const evfields_decoder_t *d, const log_record_t *rec, evfields_t *out);
/* evfields_decode in two halves, for a caller with work to start in between (the process
 * stage starts loading the user's profile): evfields_scan finds the spans (0, or -EBADMSG
 * as evfields_decode), then, only after it returned 0, evfields_finish decodes them
 * (returns as evfields_decode). */
int evfields_scan(const evfields_decoder_t *d, const log_record_t *rec, evfields_t *out);
int evfields_finish(const evfields_decoder_t *d, const log_record_t *rec, evfields_t *out);
/* After evfields_scan: the raw bytes (*len of them, borrowed from the record) of the id
 * the profile store resolves first, userId else anonymousId, when it holds no escapes;
 * else NULL. For hints only: it is not cut at PROFILE_ID_MAX as the decoded id is. */
const char *evfields_raw_user(const evfields_t *e, size_t *len /* OUT */);
/* After evfields_scan: the raw bytes (*len of them, borrowed from the record) of the
 * anonymousId of an event that has a userId too (the id the profile store links to the
 * user's profile after resolving the userId), when it holds no escapes; else NULL. For
 * hints only, as evfields_raw_user. */
const char *evfields_raw_linked(const evfields_t *e, size_t *len /* OUT */);
/* The same, validating every byte of the value (jscan_scan): for values of unknown origin.
 * On every value it accepts, evfields_decode gives the same result (tested and fuzzed). */
int evfields_decode_strict(const evfields_decoder_t *d, const log_record_t *rec,
                           evfields_t *out);
/* The raw value of extra path i of the last evfields_decode (JSCAN_NONE when the event
 * has none); valid while the record is. */
const jscan_val_t *evfields_extra(const evfields_t *e, size_t i);

#endif
