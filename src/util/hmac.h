/* hmac: HMAC-SHA256 as lowercase hex, over a message given in parts — channel tokens and
 * webhook signatures sign concatenations without building them first. */
#ifndef SLUICE_HMAC_H
#define SLUICE_HMAC_H

#include <stddef.h>

/* hex receives the 64 hex digits of HMAC-SHA256(key, parts[0] || ... || parts[n-1]) and
 * a NUL. Returns 0, or -EIO when the crypto library fails (hex is then all zeros). */
int hmac_sha256_hex(const void *key, size_t keylen, const void *const *parts,
                    const size_t *lens, size_t n, char hex[65]);

#endif
