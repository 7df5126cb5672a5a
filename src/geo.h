/* geo: country, region and city of a client IP, from a MaxMind DB (.mmdb) file — an
 * enrichment step that adds context.location to events.
 *
 * The database is memory-mapped read-only (libmaxminddb, MMDB_MODE_MMAP); a lookup walks
 * the mapped search tree and reads a few strings from it, so it allocates nothing and
 * costs a few hundred nanoseconds. Two record layouts are read, tried in this order:
 *   MaxMind GeoIP2/GeoLite2 and DB-IP:  country.iso_code, subdivisions.0.iso_code,
 *                                       city.names.en
 *   ip-location-db ("flat"):            country_code, state1 (or region), city
 * so a database of either kind works without configuration; sluice's default database
 * (scripts/build-geoip.pl, docs/GEO.md) uses the first, with only country.iso_code.
 *
 * Threads: after geo_open returns, geo_lookup, geo_description and geo_enrich_step only
 * read the mapping and may run on any number of threads at once. geo_free must not run
 * concurrently with any of them. To swap in a new database, open the new one, switch the
 * pointer the enrich chain uses, and free the old one once no lookup can still hold it.
 *
 * Privacy: the step reads the raw client IP from the enrich context and writes only the
 * location; it never writes the address itself (the "ip" step decides what is kept). */
#ifndef SLUICE_GEO_H
#define SLUICE_GEO_H

#include <stddef.h>

#include "enrich.h"

typedef struct geo geo_t;

/* What a lookup found. Strings are NUL-terminated UTF-8, "" when the database has no
 * such field; a value longer than its buffer is cut at a character boundary. */
typedef struct geo_info {
  char country[3]; /* ISO 3166-1 alpha-2, "DE"; anything else in the database is ignored */
  char region[64]; /* subdivision: the ISO 3166-2 code without the country ("BE") in the
                    * MaxMind layout, the state name ("Tokyo") in the flat layout */
  char city[64];   /* English city name, "Berlin" */
  int found;       /* 1 when at least one of the fields above is set */
} geo_info_t;

/* ---- Opening and closing ---- */

/* Open and map the database at mmdb_path (borrowed). Returns the handle (owned by the
 * caller; release with geo_free), or NULL with err filled with a message naming the path
 * and the reason (missing file, not a MaxMind DB, corrupt metadata). */
geo_t *geo_open(const char *mmdb_path, char *err, size_t errlen);

/* Unmap and free. geo_free(NULL) is a no-op. */
void geo_free(geo_t *g);

/* ---- Lookups ---- */

/* Look up ip, IPv4 or IPv6 text (an IPv4-mapped IPv6 address is looked up as IPv4).
 * Fills *out (OUT:, always cleared first). Returns 0 when at least one field was found,
 * -ENOENT when the address is not in the database or its record has none of the fields
 * (also for an IPv6 address in an IPv4-only database), -EINVAL when ip is not an
 * address, -EIO when the database is corrupt at that record. */
int geo_lookup(geo_t *g, const char *ip, geo_info_t *out);

/* One line for the dashboard's attribution: the database type, its build date and its
 * English description when it has one, e.g. "sluice-geoip-country, built 2026-06-25:
 * Country data from the IPFire Location database ...". Borrowed; valid until geo_free. */
const char *geo_description(const geo_t *g);

/* ---- Enrichment ---- */

/* An enrich_step_fn; state is a geo_t * (borrowed, must outlive the chain). Looks up the
 * raw ctx->client_ip and sets context.location to the fields found, e.g.
 * {"country":"DE","region":"BE","city":"Berlin"}. Leaves the event alone when the address
 * is unknown or absent, or when the event already has a context.location (a mobile SDK
 * sends the device's own, which is better than ours). Always returns 0: a missing
 * location never rejects an event. Register it after the "ip" step, e.g.
 * enrich_add(chain, "geo", geo_enrich_step, g). */
int geo_enrich_step(evdoc_t *ev, const enrich_ctx_t *ctx, void *state, char *msg, size_t msglen);

#endif
