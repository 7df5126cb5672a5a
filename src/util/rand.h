/* rand: unpredictable bytes for keys and ids: keys from the kernel (getrandom), ids from
 * OpenSSL's generator (seeded by the kernel), which costs a tenth per id. */
#ifndef SLUICE_RAND_H
#define SLUICE_RAND_H

#include <stddef.h>

/* Fill p with n random bytes. Aborts if the kernel cannot supply them. */
void rand_bytes(void *p, size_t n);
/* Write 2*n lowercase hex chars of n random bytes plus a NUL into out. */
void rand_hex(char *out, size_t n);
/* Write a random RFC 4122 version-4 UUID (36 chars + NUL) into out. Its bytes come from
 * a per-thread pool filled by OpenSSL's RAND_bytes (one call per 256 ids). */
void rand_uuid(char out[37]);

#endif
