/* rand: unpredictable bytes for keys and ids, from the kernel (getrandom). */
#ifndef SLUICE_RAND_H
#define SLUICE_RAND_H

#include <stddef.h>

/* Fill p with n random bytes. Aborts if the kernel cannot supply them. */
void rand_bytes(void *p, size_t n);
/* Write 2*n lowercase hex chars of n random bytes plus a NUL into out. */
void rand_hex(char *out, size_t n);
/* Write a random RFC 4122 version-4 UUID (36 chars + NUL) into out. Its bytes come from
 * a small per-thread pool of kernel randomness (one getrandom call per 32 ids). */
void rand_uuid(char out[37]);

#endif
