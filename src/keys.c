/* keys: API keys (see keys.h). */
#include "keys.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/file.h"
#include "util/mem.h"
#include "util/rand.h"
#include "util/str.h"

static int save(const char *path, const config_t *c, char *err, size_t errlen) {
  char text[512];
  int n = snprintf(text, sizeof text,
                   "# sluice API keys, generated on first start. Keep read and admin secret.\n"
                   "write-key: %s\nread-key: %s\nadmin-key: %s\n",
                   c->write_key, c->read_key, c->admin_key);
  int rc = n < 0 || (size_t)n >= sizeof text ? -EOVERFLOW : file_write_atomic(path, text, (size_t)n, 0600);
  if (rc) snprintf(err, errlen, "%s: cannot save keys: %s", path, strerror(-rc));
  return rc ? -1 : 0;
}

int keys_resolve(config_t *c, int *generated, char *err, size_t errlen) {
  char path[4096];
  snprintf(path, sizeof path, "%s/keys.yaml", c->data_dir);
  if (generated) *generated = 0;
  char **mine[3] = {&c->write_key, &c->read_key, &c->admin_key};
  int missing = 0;
  for (int i = 0; i < 3; i++) missing |= !(*mine[i])[0];
  if (!missing) return 0;

  config_t stored;
  config_defaults(&stored);
  if (access(path, F_OK) == 0 && config_load_file(&stored, path, err, errlen) != 0) {
    config_free(&stored);
    return -1;
  }
  char **theirs[3] = {&stored.write_key, &stored.read_key, &stored.admin_key};
  int changed = 0;
  for (int i = 0; i < 3; i++) {
    if ((*mine[i])[0]) continue;
    if (!(*theirs[i])[0]) {
      char key[65];
      rand_hex(key, 24);
      free(*theirs[i]);
      *theirs[i] = xstrdup(key);
      changed |= 1 << (KEY_WRITE + i);
    }
    free(*mine[i]);
    *mine[i] = xstrdup(*theirs[i]);
  }
  int rc = changed ? save(path, &stored, err, errlen) : 0;
  if (generated) *generated = changed;
  config_free(&stored);
  return rc;
}

key_kind_t keys_match(const config_t *c, const char *s, size_t n) {
  if (!n) return KEY_NONE;
  int w = str_ct_equal(s, n, c->write_key, strlen(c->write_key));
  int r = str_ct_equal(s, n, c->read_key, strlen(c->read_key));
  int a = str_ct_equal(s, n, c->admin_key, strlen(c->admin_key));
  return a ? KEY_ADMIN : r ? KEY_READ : w ? KEY_WRITE : KEY_NONE;
}

long keys_from_authorization(const char *h, char *out, size_t outlen) {
  if (!h || !*h) return 0;
  size_t n = strlen(h);
  /* Basic first: the usual scheme (the write key as the user name, as Segment's SDKs
   * send it), found at once by str_has_prefix_ci. The two prefixes exclude each other. */
  if (str_has_prefix_ci(h, n, "Basic ")) {
    const char *b = h + 6;
    while (*b == ' ') b++;
    size_t blen = strlen(b);
    while (blen && b[blen - 1] == ' ') blen--;
    if (blen > 1024) return -1;
    unsigned char dec[800];
    long d = str_base64_decode(b, blen, dec);
    if (d < 0) return -1;
    const unsigned char *colon = memchr(dec, ':', (size_t)d);
    size_t user = colon ? (size_t)(colon - dec) : (size_t)d;
    if (user >= outlen) return -1;
    memcpy(out, dec, user);
    out[user] = 0;
    return (long)user;
  }
  if (str_has_prefix_ci(h, n, "Bearer ")) {
    const char *k = h + 7;
    while (*k == ' ') k++;
    size_t len = strlen(k);
    while (len && k[len - 1] == ' ') len--;
    if (len >= outlen) return -1;
    memcpy(out, k, len);
    out[len] = 0;
    return (long)len;
  }
  return -1;
}

int keys_require(const config_t *c, http_req_t *r, key_kind_t need, const char *query_param) {
  char key[256];
  long n = keys_from_authorization(http_req_header(r, "Authorization"), key, sizeof key);
  if (n <= 0 && query_param) {
    n = str_query_param(http_req_query(r), query_param, key, sizeof key);
    if (n >= (long)sizeof key) n = 0;
  }
  key_kind_t k = n > 0 ? keys_match(c, key, (size_t)n) : KEY_NONE;
  if (k == KEY_ADMIN || (k == KEY_READ && need == KEY_READ)) return 0;
  const char *want = need == KEY_ADMIN ? "admin" : "read";
  char msg[160];
  if (k != KEY_NONE) {
    snprintf(msg, sizeof msg, "the %s key may not use this endpoint; it needs the %s key",
             k == KEY_WRITE ? "write" : "read", want);
    http_respond_error(r, 403, "wrong_key_kind", msg, NULL, 0);
    return -1;
  }
  snprintf(msg, sizeof msg, "send the %s key: Authorization: Bearer KEY", want);
  http_header_t h[] = {{"WWW-Authenticate", "Bearer realm=\"sluice\""}};
  http_respond_error(r, 401, "unauthorized", msg, h, 1);
  return -1;
}
