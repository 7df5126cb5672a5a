/* keys: the three API keys and who may do what.
 *
 *   write  public (it sits in the shop's pages): may only send events
 *   read   query API, dashboard, /metrics
 *   admin  everything read may, plus rules, forget, export
 *
 * Keys come from config, flag or environment; any left unset is taken from
 * <data-dir>/keys.yaml, and if that has none either it is generated (32 random bytes,
 * hex) and saved there (mode 0600, written to a temporary file, synced, renamed), so a
 * restart keeps the keys a shop already embedded. A request presents a key as the HTTP
 * Basic user (Segment's convention; the password is ignored) or as
 * "Authorization: Bearer KEY"; ingestion also takes writeKey in the body or query.
 * Comparisons take constant time. */
#ifndef SLUICE_KEYS_H
#define SLUICE_KEYS_H

#include <stddef.h>

#include "config.h"
#include "http.h"

typedef enum { KEY_NONE = 0, KEY_WRITE = 1, KEY_READ = 2, KEY_ADMIN = 3 } key_kind_t;

/* Fill the empty keys of c from <data_dir>/keys.yaml, generating and saving the missing
 * ones. *generated (may be NULL) receives a bit set of the keys generated now:
 * 1 << KEY_WRITE, 1 << KEY_READ, 1 << KEY_ADMIN. data_dir must exist. Returns 0 or -1
 * with a message. */
int keys_resolve(config_t *c, int *generated, char *err, size_t errlen);

/* Which key is s (length n)? KEY_NONE when it matches none. */
key_kind_t keys_match(const config_t *c, const char *s, size_t n);

/* Extract the key from an Authorization header value (Basic user or Bearer token) into
 * out (capacity outlen). Returns its length, 0 when the header holds no key, -1 when the
 * header is malformed. */
long keys_from_authorization(const char *header, char *out, size_t outlen);

/* The gate of every endpoint that is not ingestion: 0 when r presents a key that may do
 * what `need` may (KEY_READ: the read or admin key; KEY_ADMIN: the admin key). Otherwise
 * it answers r and returns -1: 401 "unauthorized" with WWW-Authenticate when r has no
 * key or an unknown one, 403 "wrong_key_kind" when the key is valid but of a lesser kind
 * (the public write key on the query API, the read key on an admin endpoint). The key is
 * taken from Authorization, or, when query_param is not NULL, from that query parameter
 * (EventSource cannot send headers). */
int keys_require(const config_t *c, http_req_t *r, key_kind_t need, const char *query_param);

#endif
