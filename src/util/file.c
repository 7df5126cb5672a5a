/* file: durable file operations (see file.h). */
#include "util/file.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "util/rand.h"

static int sync_dir_of(const char *path) {
  char copy[4096];
  snprintf(copy, sizeof copy, "%s", path);
  int fd = open(dirname(copy), O_RDONLY | O_DIRECTORY);
  if (fd < 0) return -errno;
  int rc = fsync(fd) == 0 ? 0 : -errno;
  close(fd);
  return rc;
}

int file_write_atomic(const char *path, const void *data, size_t len, mode_t mode) {
  char tmp[4200];
  snprintf(tmp, sizeof tmp, "%s.tmp", path);
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, mode);
  if (fd < 0) return -errno;
  const char *p = data;
  size_t left = len;
  int rc = 0;
  while (left && !rc) {
    ssize_t w = write(fd, p, left);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) rc = w < 0 ? -errno : -EIO;
    else p += w, left -= (size_t)w;
  }
  if (!rc && fsync(fd) != 0) rc = -errno;
  close(fd);
  if (!rc && rename(tmp, path) != 0) rc = -errno;
  if (rc) {
    unlink(tmp);
    return rc;
  }
  return sync_dir_of(path);
}

int file_load_key(const char *path, unsigned char *key, size_t n, char *err, size_t errlen) {
  int fd = open(path, O_RDONLY);
  if (fd >= 0) {
    ssize_t got = read(fd, key, n);
    close(fd);
    if (got == (ssize_t)n) return 0;
    snprintf(err, errlen, "%s: expected %zu bytes; restore it from backup", path, n);
    return -1;
  }
  if (errno != ENOENT) {
    snprintf(err, errlen, "%s: %s", path, strerror(errno));
    return -1;
  }
  rand_bytes(key, n);
  int rc = file_write_atomic(path, key, n, 0600);
  if (rc) snprintf(err, errlen, "%s: %s", path, strerror(-rc));
  return rc ? -1 : 0;
}
