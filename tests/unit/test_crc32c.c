/* test_crc32c: known CRC-32C vectors, and the SSE4.2 and table paths agreeing on every
 * length and alignment. The .c is included to reach the table path directly. */
#include "util/crc32c.c"

#include "test.h"

TEST(known_vectors) {
  unsigned char b[32];
  CHECK_INT(crc32c(0, "123456789", 9), 0xE3069283u);
  CHECK_INT(crc32c(0, "", 0), 0);
  memset(b, 0, sizeof b); /* RFC 3720 B.4 */
  CHECK_INT(crc32c(0, b, 32), 0x8A9136AAu);
  memset(b, 0xff, sizeof b);
  CHECK_INT(crc32c(0, b, 32), 0x62A8AB43u);
  for (int i = 0; i < 32; i++) b[i] = (unsigned char)i;
  CHECK_INT(crc32c(0, b, 32), 0x46DD794Eu);
  for (int i = 0; i < 32; i++) b[i] = (unsigned char)(31 - i);
  CHECK_INT(crc32c(0, b, 32), 0x113FDB5Cu);
}

TEST(paths_agree_and_extend) {
  static unsigned char b[4096 + 16];
  uint32_t x = 12345;
  for (size_t i = 0; i < sizeof b; i++) {
    x = x * 1103515245u + 12345u;
    b[i] = (unsigned char)(x >> 16);
  }
  int mismatches = 0, split_bad = 0;
  for (size_t align = 0; align < 8; align++)
    for (size_t n = 0; n < 1500; n += 1 + n / 16) { /* past several three-stream rounds */
      uint32_t whole = crc32c(0, b + align, n);
      if (~crc_sw(~0u, b + align, n) != whole) mismatches++;
      size_t cut = n / 3;
      if (crc32c(crc32c(0, b + align, cut), b + align + cut, n - cut) != whole) split_bad++;
    }
  CHECK_INT(mismatches, 0);
  CHECK_INT(split_bad, 0);
  CHECK_INT(~crc_sw(~0u, (const unsigned char *)"123456789", 9), 0xE3069283u);
  CHECK(crc32c(0, b, 4096) == ~crc_sw(~0u, b, 4096));
}

int main(void) {
  RUN(known_vectors);
  RUN(paths_agree_and_extend);
  return TEST_REPORT("test_crc32c");
}
