/* hmac: HMAC-SHA256 hex over parts (see hmac.h), with OpenSSL 3's EVP_MAC. */
#include "util/hmac.h"

#include <errno.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <string.h>

int hmac_sha256_hex(const void *key, size_t keylen, const void *const *parts,
                    const size_t *lens, size_t n, char hex[65]) {
  unsigned char mac[EVP_MAX_MD_SIZE];
  size_t maclen = 0;
  int ok = 0;
  EVP_MAC *m = EVP_MAC_fetch(NULL, "HMAC", NULL);
  EVP_MAC_CTX *c = m ? EVP_MAC_CTX_new(m) : NULL;
  OSSL_PARAM params[] = {
      OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0),
      OSSL_PARAM_construct_end()};
  if (c && EVP_MAC_init(c, key, keylen, params)) {
    ok = 1;
    for (size_t i = 0; i < n && ok; i++)
      ok = EVP_MAC_update(c, parts[i], lens[i]);
    ok = ok && EVP_MAC_final(c, mac, &maclen, sizeof mac) && maclen == 32;
  }
  EVP_MAC_CTX_free(c);
  EVP_MAC_free(m);
  if (!ok) memset(mac, 0, 32);
  static const char digits[] = "0123456789abcdef";
  for (int i = 0; i < 32; i++) {
    hex[2 * i] = digits[mac[i] >> 4];
    hex[2 * i + 1] = digits[mac[i] & 15];
  }
  hex[64] = 0;
  return ok ? 0 : -EIO;
}
