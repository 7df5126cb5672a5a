/* file: small durable file operations shared by the modules that keep state files. */
#ifndef SLUICE_FILE_H
#define SLUICE_FILE_H

#include <stddef.h>
#include <sys/types.h>

/* Replace path with data[0..len) so that a crash leaves either the old file or the new
 * one whole: write path.tmp (mode), fsync it, rename it over path, fsync the directory.
 * Returns 0 or a negative errno (the temporary file is removed). */
int file_write_atomic(const char *path, const void *data, size_t len, mode_t mode);

/* Read the secret of n bytes kept at path, or create it (random bytes, mode 0600, written
 * atomically) when path does not exist. Returns 0, or -1 with a message naming path in
 * err (a file of the wrong size is an error, never replaced: data made with it would
 * no longer verify). */
int file_load_key(const char *path, unsigned char *key, size_t n, char *err, size_t errlen);

#endif
