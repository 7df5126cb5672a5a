/* uaparse: user-agent parsing for the enrichment stage — browser, OS, device, bot.
 *
 * Implements the uap-core specification over its regexes.yaml (Debian package uap-core):
 * three ordered lists of regexes (user_agent_parsers, os_parsers, device_parsers); in each
 * list the first regex that matches wins and its *_replacement templates ($1..$9) fill the
 * fields. Every regex is compiled once by uaparse_open with PCRE2 (JIT when the platform
 * allows it) and matched with match/depth/heap limits, on at most UAPARSE_MAX_UA bytes of
 * the user agent, so a hostile header costs a bounded amount of CPU. Matching the three
 * lists costs ~100 us per user agent, so uaparse_parse keeps results in a bounded cache
 * (below); real traffic repeats a few thousand user agents, and a hit is a hash and a copy.
 *
 * Cache: a fixed table of cache_entries slots (rounded up to a power of two), 8-way set
 * associative — the hash picks a set of eight slots, a miss replaces the least recently
 * used of them; no allocation after uaparse_open. (Eight ways, not two: with fewer, a
 * few sets overflow even when the working set is a tenth of the table, and a cyclic
 * access pattern then misses on every pass.) A slot holds the 128-bit seeded XXH3 hash
 * and the length of the (truncated) user agent plus the parsed ua_info_t and the JSON
 * objects uaparse_enrich_step sets (rendered once, when the slot is filled) — about 680
 * bytes, 11 MB for the default 16384. A hit needs all 128 bits and the length to agree;
 * the seed is random per process, so colliding keys cannot be prepared offline.
 *
 * Threads: a uaparse_t holds mutable state (cache, match data) and belongs to one thread
 * — the event loop. There is no locking; use one uaparse_t per thread if that changes.
 *
 * Device type (ua_info_t.device_type) is sluice's own rule on top of uap-core, first
 * rule that applies:
 *   "bot"      device family "Spider" (uap-core's family for crawlers and monitors)
 *   "tablet"   device family or model names a tablet (iPad, Kindle, Tablet, PlayBook,
 *              Xoom, Galaxy Tab, MediaPad, MatePad, MI PAD, Nexus 7/9/10, Lenovo TAB,
 *              SM-T*), the OS names one (BlackBerry Tablet OS), or the OS is Android and
 *              the user agent lacks "Mobile" (Google's convention for Android tablets)
 *   "other"    device family or OS names a TV (HbbTV, SMART-TV, GoogleTV, tvOS, ...) or
 *              the family a games console (PlayStation, Xbox, Nintendo, Ouya)
 *   "mobile"   device family names a phone (iPhone, iPod, "Generic Smartphone", "Generic
 *              Feature Phone", ...), the OS is a mobile one (iOS, Android with "Mobile",
 *              Windows Phone, BlackBerry OS, Symbian, KaiOS, Firefox OS, Tizen, ...), or
 *              uap-core identified a device (not "Other" or "Mac") but no OS — feature
 *              phones such as "Nokia 6300"
 *   "desktop"  device family "Other" or "Mac" and a desktop OS (Windows, Mac OS X,
 *              Linux, Ubuntu, Chrome OS, Fedora, FreeBSD, ...)
 *   "other"    everything else (HTTP libraries, unknown)
 * Device families and models are matched as case-insensitive substrings, OS families
 * exactly (any other "Windows ..." family counts as a desktop OS). */
#ifndef SLUICE_UAPARSE_H
#define SLUICE_UAPARSE_H

#include <stddef.h>
#include <stdint.h>

#include "enrich.h"

/* The Debian package's regexes; used when uaparse_open is given NULL. */
#define UAPARSE_DEFAULT_REGEXES "/usr/share/uap-core/regexes.yaml"
/* Cache slots when uaparse_open is given 0, and the most it accepts (~700 MB). */
#define UAPARSE_DEFAULT_CACHE 16384
#define UAPARSE_MAX_CACHE (1u << 20)
/* Only the first UAPARSE_MAX_UA bytes of a user agent are matched (and hashed). */
#define UAPARSE_MAX_UA 1024

typedef struct uaparse uaparse_t;

/* A parsed user agent as sluice stores it. Strings are NUL-terminated, valid UTF-8
 * (invalid bytes and control characters become '?'), trimmed, and cut at a character
 * boundary when longer than their buffer. Empty string = unknown. */
typedef struct ua_info {
  char browser[64];         /* uap-core user agent family, "Other" when unknown */
  char browser_version[32]; /* "major.minor.patch", up to the first missing part */
  char os[64];              /* uap-core OS family, "Other" when unknown */
  char os_version[32];      /* "major.minor.patch.patch_minor", same rule */
  char device_family[64];   /* uap-core device family, "Other" when unknown */
  char device_brand[64];    /* manufacturer, "" when unknown */
  char device_model[64];    /* model, "" when unknown */
  const char *device_type;  /* static: "desktop", "mobile", "tablet", "bot" or "other" */
  int bot;                  /* 1 when device_type is "bot" */
} ua_info_t;

/* The raw uap-core result, field for field as the uap-core test files state it, before
 * sluice's joining and truncation. Fields longer than their buffers are cut. */
typedef struct ua_parts {
  char ua_family[256], ua_major[64], ua_minor[64], ua_patch[64];
  char os_family[256], os_major[64], os_minor[64], os_patch[64], os_patch_minor[64];
  char device_family[256], device_brand[256], device_model[256];
} ua_parts_t;

/* ---- Lifecycle ---- */

/* Load and compile the regexes at regexes_path (borrowed; NULL = UAPARSE_DEFAULT_REGEXES)
 * and allocate a cache of cache_entries slots (0 = UAPARSE_DEFAULT_CACHE; rounded up to
 * a power of two, at least 8; more than UAPARSE_MAX_CACHE is an error). Returns the parser (owned by
 * the caller; release with uaparse_free), or NULL with err filled: an unreadable file,
 * invalid YAML or a regex PCRE2 rejects (as "path:line:col: message"), a file with no
 * parsers, or out of memory. */
uaparse_t *uaparse_open(const char *regexes_path, size_t cache_entries, char *err,
                        size_t errlen);

/* Release p and everything it owns. uaparse_free(NULL) is a no-op. */
void uaparse_free(uaparse_t *p);

/* ---- Parsing ---- */

/* Parse ua[0..len) (borrowed; any bytes, need not be NUL-terminated; NULL with len 0 is
 * the empty user agent) into OUT: out, through the cache. Only the first UAPARSE_MAX_UA
 * bytes count. Returns 1 when the result came from the cache, 0 when it was computed
 * (and cached). Never fails: input no regex matches yields "Other" everywhere. */
int uaparse_parse(uaparse_t *p, const char *ua, size_t len, ua_info_t *out);

/* Match ua[0..len) against the three lists without the cache, into OUT: out, as uap-core
 * defines the result (unmatched fields ""; families "Other" when nothing matched). For
 * conformance tests and benchmarks; uaparse_parse is this plus uaparse_info_from_parts
 * plus the cache. */
void uaparse_match(uaparse_t *p, const char *ua, size_t len, ua_parts_t *out);

/* Derive sluice's ua_info_t (OUT: out) from a uap-core result and the user agent it came
 * from (borrowed; read for the "Mobile" token), applying the device-type rule above. */
void uaparse_info_from_parts(const ua_parts_t *parts, const char *ua, size_t len,
                             ua_info_t *out);

/* Cache counters since uaparse_open. OUT: hits, misses (either may be NULL). */
void uaparse_stats(const uaparse_t *p, uint64_t *hits, uint64_t *misses);

/* ---- Enrichment step ---- */

/* An enrich_step_fn; state is a uaparse_t * (borrowed; must outlive the chain). Reads the
 * event's context.userAgent (a string; events without one are left alone) and adds, each
 * only when the event does not already have that key (mobile SDKs send their own):
 *   context.browser {"name", "version"}
 *   context.os      {"name", "version"}
 *   context.device  {"type", "family", "manufacturer", "model"}
 *   context.bot     true / false
 * "version", "manufacturer" and "model" are left out when unknown. Never rejects an event:
 * always returns 0 (on out of memory the event is left partly enriched). */
int uaparse_enrich_step(evdoc_t *ev, const enrich_ctx_t *ctx, void *state, char *msg,
                        size_t msglen);

#endif
