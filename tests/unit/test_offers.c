/* test_offers: channel tokens — valid for their id until their expiry, refused for
 * another id, another key, a changed expiry or signature, and malformed text. */
#include "test.h"

#include <errno.h>

#include "offers.h"

static const unsigned char key[OFFERS_KEY_BYTES] = "0123456789abcdef0123456789abcde";
static const unsigned char other_key[OFFERS_KEY_BYTES] = "ffffffffffffffffffffffffffffffff";

#define ID "6f1c2a9e-0b7d-4d3e-9a51-3f0e8c2b7a10"
#define NOW 1795376225

static int verify(const char *id, const char *tok, int64_t now) {
  return offers_token_verify(key, id, strlen(id), tok, now);
}

TEST(token_round_trip) {
  char t[OFFERS_TOKEN_MAX];
  int n = offers_token_sign(key, ID, strlen(ID), NOW + 60, t);
  CHECK(n > 0 && (size_t)n == strlen(t));
  CHECK(!strncmp(t, "v1.1795376285.", 14));
  CHECK_INT(strlen(t), 14 + 64);
  CHECK_INT(verify(ID, t, NOW), 0);
  CHECK_INT(verify(ID, t, NOW + 59), 0);
  /* Deterministic: the same inputs sign the same. */
  char t2[OFFERS_TOKEN_MAX];
  offers_token_sign(key, ID, strlen(ID), NOW + 60, t2);
  CHECK_STR(t, t2);
}

TEST(token_expires) {
  char t[OFFERS_TOKEN_MAX];
  offers_token_sign(key, ID, strlen(ID), NOW + 60, t);
  CHECK_INT(verify(ID, t, NOW + 60), -ETIMEDOUT);
  CHECK_INT(verify(ID, t, NOW + 100000), -ETIMEDOUT);
}

TEST(token_bound_to_id_and_key) {
  char t[OFFERS_TOKEN_MAX];
  offers_token_sign(key, ID, strlen(ID), NOW + 60, t);
  CHECK_INT(verify("6f1c2a9e-0b7d-4d3e-9a51-3f0e8c2b7a11", t, NOW), -EACCES);
  CHECK_INT(verify("6f1c2a9e", t, NOW), -EACCES);
  CHECK_INT(offers_token_verify(other_key, ID, strlen(ID), t, NOW), -EACCES);
  /* Length-prefixed: an id that ends in digits cannot borrow the expiry's. */
  char a[OFFERS_TOKEN_MAX];
  offers_token_sign(key, "ab", 2, 12, a);
  char forged[OFFERS_TOKEN_MAX];
  snprintf(forged, sizeof forged, "v1.2.%s", a + 6);
  CHECK_INT(verify("ab1", forged, 0), -EACCES);
}

TEST(token_tampering_refused) {
  char t[OFFERS_TOKEN_MAX];
  offers_token_sign(key, ID, strlen(ID), NOW + 60, t);
  char c[OFFERS_TOKEN_MAX];
  /* A later expiry under the old signature. */
  snprintf(c, sizeof c, "v1.1795376999.%s", t + 14);
  CHECK_INT(verify(ID, c, NOW), -EACCES);
  /* One hex digit changed, anywhere. */
  for (size_t i = 14; i < strlen(t); i++) {
    snprintf(c, sizeof c, "%s", t);
    c[i] = c[i] == '0' ? '1' : '0';
    if (verify(ID, c, NOW) != -EACCES) FAILF("digit %zu changed still verifies", i);
  }
  /* Upper-case hex is another string, not the same signature. */
  snprintf(c, sizeof c, "%s", t);
  for (char *p = c + 14; *p; p++)
    if (*p >= 'a' && *p <= 'f') *p = (char)(*p - 32);
  CHECK(verify(ID, c, NOW) != 0);
}

TEST(token_malformed) {
  char t[OFFERS_TOKEN_MAX];
  offers_token_sign(key, ID, strlen(ID), NOW + 60, t);
  const char *bad[] = {"", "v1", "v1.", "v1..", "v2.1795376285.00", "v1.x.00",
                       "v1.1795376285", "v1.1795376285.", "v1.-5.00",
                       "v1.1234567890123.0000000000000000000000000000000000000000000000000000000000000000"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    if (verify(ID, bad[i], NOW) != -EINVAL) FAILF("'%s' not refused as malformed", bad[i]);
  char longer[OFFERS_TOKEN_MAX + 8];
  snprintf(longer, sizeof longer, "%s0", t);
  CHECK_INT(verify(ID, longer, NOW), -EINVAL);
  CHECK_INT(verify("", t, NOW), -EINVAL);
  CHECK_INT(offers_token_verify(key, ID, strlen(ID), NULL, NOW), -EINVAL);
  char big[OFFERS_MAX_ID + 2];
  memset(big, 'a', sizeof big - 1);
  big[sizeof big - 1] = 0;
  CHECK_INT(offers_token_sign(key, big, strlen(big), NOW, t), -EINVAL);
}

int main(void) {
  RUN(token_round_trip);
  RUN(token_expires);
  RUN(token_bound_to_id_and_key);
  RUN(token_tampering_refused);
  RUN(token_malformed);
  return TEST_REPORT("test_offers");
}
