/* mem: allocation that never returns NULL.
 *
 * sluice bounds every input, so running out of memory means the bounds are wrong for the
 * machine; aborting with a message beats limping on with half-built state. */
#ifndef SLUICE_MEM_H
#define SLUICE_MEM_H

#include <stddef.h>
#include <stdlib.h>

void *xmalloc(size_t n);
void *xcalloc(size_t count, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);

#endif
