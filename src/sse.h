/* sse: a Server-Sent Events hub — pushes events to browsers over http streams.
 *
 * The live dashboard and the offers pushed into shoppers' pages subscribe here; the
 * stages that decide what to push publish here. Design:
 * - Subscribers are http streams (http_stream_start) registered under a channel, a
 *   string key such as "live" or "visitor:<id>". Channels live in one hash table keyed
 *   by name (seeded hash: names come from clients).
 * - An event is framed once ("id:", optional "event:", one "data:" line per line of the
 *   data, blank line) and the same bytes go to every subscriber of its channel.
 * - Ids are per hub and increase monotonically; they start at the wall clock in
 *   microseconds, so ids stay increasing across restarts and a client reconnecting with
 *   an id from before a restart is not mistaken for one that is ahead.
 * - Each channel keeps a ring of its most recent events (replay_events, no older than
 *   replay_ms) so a client that reconnects with Last-Event-ID gets what it missed. The
 *   ring exists even without subscribers: an offer published while a shopper moves
 *   between pages is delivered on the next page's connection.
 * - Slow readers: a subscriber whose queued bytes would pass max_queue_bytes is
 *   disconnected, not buffered without bound; EventSource reconnects with Last-Event-ID.
 * - One timer for the whole hub writes a heartbeat comment to every subscriber (keeps
 *   proxies from closing idle streams, detects dead peers) and frees channels that have
 *   had no subscriber for replay_ms: memory stays bounded by live subscribers plus the
 *   channels published to within replay_ms.
 * - Single-threaded: every call runs on the loop's thread. Core module: never logs. */
#ifndef SLUICE_SSE_H
#define SLUICE_SSE_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "http.h"

typedef struct sse_hub sse_hub_t;

typedef struct sse_opts {
  uint32_t heartbeat_ms;   /* comment line to every subscriber; default 15000 */
  uint32_t replay_events;  /* ring of recent events per channel; default 16 */
  uint32_t replay_ms;      /* how long an event can be replayed; default 60000 */
  size_t max_queue_bytes;  /* per subscriber, beyond: disconnected; default 64 KiB */
  size_t max_subscribers;  /* whole hub; default 100000 */
} sse_opts_t;

/* Longest channel name accepted. */
#define SSE_MAX_CHANNEL 256

/* ---- Hub ---- */

/* Create a hub on loop (borrowed). opts may be NULL for defaults; zero fields take their
 * defaults. Returns NULL if loop is NULL. */
sse_hub_t *sse_hub_new(uv_loop_t *loop, const sse_opts_t *opts);

/* End every stream (queued bytes are flushed, then the connections close) and free the
 * hub. NULL no-op. The memory goes with the heartbeat timer's close callback: run the
 * loop before closing it. Safe before or after the http server is freed. */
void sse_hub_free(sse_hub_t *h);

/* ---- Subscribing and publishing ---- */

/* Answer r with an event stream on channel (borrowed; copied), with Content-Type:
 * text/event-stream, Cache-Control: no-store, X-Accel-Buffering: no, then
 * "retry: 3000", then the channel's events still replayable whose id is greater than
 * last_event_id (borrowed; the Last-Event-ID header value, NULL or not a decimal number:
 * no replay, "0": everything still in the ring). channel and last_event_id may point
 * into r. The subscriber leaves when its client goes away, when it falls behind, or at
 * sse_hub_free / http_server_drain.
 * Returns 0 (r consumed), -EPIPE (the client already went away; r consumed), or with r
 * untouched for the caller to answer: -ENOSPC (max_subscribers reached: answer 503),
 * -EINVAL (channel empty or longer than SSE_MAX_CHANNEL). */
int sse_subscribe(sse_hub_t *h, http_req_t *r, const char *channel,
                  const char *last_event_id);

/* sse_subscribe with extra response headers (borrowed; filtered like http_respond's),
 * e.g. CORS headers for a cross-origin EventSource. At most 8 are sent. */
int sse_subscribe_with(sse_hub_t *h, http_req_t *r, const char *channel,
                       const char *last_event_id, const http_header_t *extra, size_t nextra);

/* Publish data (borrowed; NULL is empty) on channel as an event of type event_type
 * (NULL: the default "message"). A multi-line data (LF, CRLF or CR) becomes several
 * "data:" lines, which the browser joins with LF. The event gets the next id (OUT:
 * *id_out, may be NULL), is kept in the channel's replay ring, and is written to every
 * subscriber of the channel. Returns the number of subscribers it was written to
 * (subscribers that fell behind are disconnected and not counted), or -EINVAL for an
 * empty or too long channel, or an event_type that is empty or holds CR or LF. */
int sse_publish(sse_hub_t *h, const char *channel, const char *event_type,
                const char *data, uint64_t *id_out /* OUT */);

/* Publish like sse_publish, once, to every channel whose name starts with prefix and
 * that has a subscriber now (channels without one are not created or kept: a broadcast
 * reaches who is connected). Every such channel gets the event, with one id, in its
 * replay ring. Returns the number of subscribers reached, or -EINVAL as sse_publish. */
int sse_publish_prefix(sse_hub_t *h, const char *prefix, const char *event_type,
                       const char *data, uint64_t *id_out /* OUT */);

/* Subscribers of channel right now, or of the whole hub when channel is NULL. */
size_t sse_subscribers(const sse_hub_t *h, const char *channel);
/* Channels held in memory: those with subscribers, plus those without whose events can
 * still be replayed (freed at the heartbeat tick after that, so up to heartbeat_ms late). */
size_t sse_channels(const sse_hub_t *h);

#endif
