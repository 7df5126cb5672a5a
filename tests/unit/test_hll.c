/* Unit tests for hll: accuracy across cardinalities, duplicates, merge == union, sparse ->
 * dense promotion, serialization round trips and hostile encodings, memory per sketch. */
#include <errno.h>
#include <math.h>
#include <pthread.h>

#include "hll.h"
#include "test.h"

/* A bijection on 64-bit integers (splitmix64's finalizer): distinct inputs give distinct,
 * well-mixed hashes, so a test knows the exact cardinality it added. */
static uint64_t mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

/* Adds the values [from, to) of stream seed. */
static void add_range(hll_t *h, uint64_t seed, uint64_t from, uint64_t to) {
  for (uint64_t i = from; i < to; i++) hll_add_hash(h, mix(seed << 40 ^ i));
}

static double rel_err(uint64_t est, uint64_t n) { return n ? ((double)est - (double)n) / (double)n : 0; }

/* Do a and b serialize to the same bytes (same representation, same registers/entries)? */
static int same_bytes(const hll_t *a, const hll_t *b) {
  buf_t x = BUF_INIT, y = BUF_INIT;
  hll_serialize(a, &x);
  hll_serialize(b, &y);
  int same = x.len == y.len && memcmp(x.data, y.data, x.len) == 0;
  buf_free(&x);
  buf_free(&y);
  return same;
}

TEST(test_empty) {
  hll_t *h = hll_new();
  CHECK_INT(hll_count(h), 0);
  CHECK_INT(hll_is_dense(h), 0);
  buf_t b = BUF_INIT;
  CHECK_INT(hll_serialize(h, &b), 4);
  hll_t *d = NULL;
  CHECK_INT(hll_deserialize(b.data, b.len, &d), 0);
  CHECK(d && hll_count(d) == 0);
  hll_free(d);
  buf_free(&b);
  hll_free(h);
  hll_free(NULL);
}

TEST(test_cardinalities) {
  static const uint64_t ns[] = {0, 1, 10, 100, 1000, 2000, 3000, 10000, 100000, 1000000};
  for (size_t k = 0; k < sizeof ns / sizeof ns[0]; k++) {
    hll_t *h = hll_new();
    for (uint64_t i = 0; i < ns[k]; i++) hll_add(h, &i, sizeof i); /* distinct 8-byte keys */
    uint64_t est = hll_count(h);
    double e = rel_err(est, ns[k]);
    printf("  n=%-8" PRIu64 " estimate=%-8" PRIu64 " error=%+.3f%% (%s, %zu bytes)\n", ns[k], est,
           100 * e, hll_is_dense(h) ? "dense" : "sparse", hll_bytes(h));
    if (ns[k] <= 1000) CHECK_INT(est, ns[k]); /* sparse: exact */
    else if (ns[k] <= 2000) CHECK(fabs(e) <= 0.001); /* sparse: a 25-bit collision or two */
    else if (fabs(e) > 0.02) FAILF("n=%" PRIu64 ": error %.3f%% beyond 2%%", ns[k], 100 * e);
    hll_free(h);
  }
}

/* Many independent sketches per cardinality: the spread must match the 0.81% standard error
 * and the mean must show no bias, in particular around the range where classic HLL
 * switches from linear counting and overestimates (a few times 16384). */
TEST(test_error_distribution) {
  static const uint64_t ns[] = {5000, 20000, 60000, 200000};
  enum { TRIALS = 24 };
  for (size_t k = 0; k < sizeof ns / sizeof ns[0]; k++) {
    double sum = 0, sumsq = 0;
    for (uint64_t t = 0; t < TRIALS; t++) {
      hll_t *h = hll_new();
      add_range(h, 1000 + t, 0, ns[k]);
      double e = rel_err(hll_count(h), ns[k]);
      sum += e;
      sumsq += e * e;
      hll_free(h);
    }
    double bias = sum / TRIALS, rms = sqrt(sumsq / TRIALS);
    printf("  n=%-7" PRIu64 " over %d sketches: bias %+.3f%%, rms error %.3f%% (theory 0.81%%)\n",
           ns[k], TRIALS, 100 * bias, 100 * rms);
    CHECK(rms < 0.0125);
    CHECK(fabs(bias) < 0.005);
  }
}

TEST(test_duplicates) {
  hll_t *once = hll_new(), *many = hll_new();
  add_range(once, 7, 0, 1000);
  for (int r = 0; r < 5; r++) add_range(many, 7, 0, 1000);
  CHECK_INT(hll_count(many), 1000);
  CHECK(same_bytes(once, many));
  add_range(once, 8, 0, 50000); /* dense now */
  for (int r = 0; r < 3; r++) add_range(many, 8, 0, 50000);
  CHECK(hll_is_dense(many));
  CHECK_INT(hll_count(many), hll_count(once));
  CHECK(same_bytes(once, many));
  hll_free(once);
  hll_free(many);
}

/* Merging sketches of A and B gives exactly the sketch of A u B, for every representation
 * mix (including a sparse union that outgrows sparse). */
/* hll_new_pair(a, b) is hll_new and two adds: the same entries, count and size, and the
 * same after more adds, for pairs that differ, are equal, share an index (ranks apart
 * both ways) or a home group. */
TEST(test_new_pair) {
  int bad = 0;
  for (uint64_t i = 0; i < 4000; i++) {
    uint64_t a = mix(i), b = mix(i + 100000);
    if (i % 4 == 1) b = a;                                      /* equal */
    if (i % 4 == 2) /* one index, another rank (the bits below the index: leading zeros) */
      b = (a & ~((1ull << 39) - 1)) | mix(i + 7) >> (25 + i % 12);
    if (i % 4 == 3) b = a ^ (1ull << 40); /* a near index: the same home group */
    if (i % 8 == 2) { uint64_t t = a; a = b; b = t; }
    hll_t *p = hll_new_pair(a, b), *q = hll_new();
    hll_add_hash(q, a);
    hll_add_hash(q, b);
    if (!same_bytes(p, q) || hll_count(p) != hll_count(q) || hll_bytes(p) != hll_bytes(q)) bad++;
    add_range(p, i, 0, 40);
    add_range(q, i, 0, 40);
    if (!same_bytes(p, q) || hll_bytes(p) != hll_bytes(q)) bad++;
    hll_free(p);
    hll_free(q);
  }
  CHECK_INT(bad, 0);
}

TEST(test_merge_equals_union) {
  static const struct { uint64_t a0, a1, b0, b1; const char *what; } cases[] = {
      {0, 500, 300, 900, "sparse+sparse"},
      {0, 200, 100, 200, "sparse+subset"},
      {0, 2000, 1500, 4000, "sparse+sparse -> dense"},
      {0, 1000, 500, 60000, "sparse+dense"},
      {0, 60000, 50000, 50500, "dense+sparse"},
      {0, 60000, 40000, 100000, "dense+dense"},
      {0, 0, 0, 100, "empty+sparse"},
      {0, 100, 0, 0, "sparse+empty"},
  };
  for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
    hll_t *a = hll_new(), *b = hll_new(), *u = hll_new();
    add_range(a, 3, cases[k].a0, cases[k].a1);
    add_range(b, 3, cases[k].b0, cases[k].b1);
    add_range(u, 3, cases[k].a0, cases[k].a1);
    add_range(u, 3, cases[k].b0, cases[k].b1);
    uint64_t bcount = hll_count(b);
    CHECK_INT(hll_merge(a, b), 0);
    if (!same_bytes(a, u)) FAILF("%s: merge differs from the union sketch", cases[k].what);
    CHECK_INT(hll_count(a), hll_count(u));
    CHECK_INT(hll_count(b), bcount); /* src untouched */
    printf("  %-24s union estimate %" PRIu64 " (%s)\n", cases[k].what, hll_count(a),
           hll_is_dense(a) ? "dense" : "sparse");
    hll_free(a);
    hll_free(b);
    hll_free(u);
  }
  hll_t *h = hll_new();
  add_range(h, 4, 0, 100);
  hll_t *c = hll_clone(h);
  CHECK_INT(hll_merge(h, h), 0);
  CHECK(same_bytes(h, c));
  CHECK_INT(hll_merge(h, NULL), -EINVAL);
  CHECK_INT(hll_merge(NULL, h), -EINVAL);
  hll_free(h);
  hll_free(c);
}

/* An empty sketch in the dense form, from the all-zero dense encoding. */
static hll_t *dense_empty(void) {
  static uint8_t enc[3 + HLL_DENSE_BYTES] = {HLL_SERIAL_VERSION, 2, HLL_PRECISION};
  hll_t *h = NULL;
  CHECK_INT(hll_deserialize(enc, sizeof enc, &h), 0);
  return h ? h : hll_new();
}

/* Random sparse unions, small into big (the binary-search path) and alike in size, with
 * hashes drawn so that 25-bit indexes collide with different ranks: the in-place merge
 * gives exactly the sketch of adding both streams to one, and its dense form equals the
 * merge of the two inputs' dense forms. */
TEST(test_merge_random) {
  uint64_t rng = 99;
  int failures = 0, rounds = 400;
  for (int round = 0; round < rounds; round++) {
    rng = mix(rng);
    uint32_t na = (uint32_t)(rng % 3200), nb = (uint32_t)((rng >> 20) % (round & 1 ? 300 : 3200));
    uint32_t universe = 1 + (uint32_t)((rng >> 40) % 6000);
    hll_t *a = hll_new(), *b = hll_new(), *u = hll_new();
    for (int side = 0; side < 2; side++)
      for (uint32_t i = 0; i < (side ? nb : na); i++) {
        rng = mix(rng);
        /* index from a small universe, rank from the low bits */
        uint64_t h = (uint64_t)(rng % universe) << 39 | (rng >> 30 & ((1ull << 39) - 1)) >> (rng & 31);
        hll_add_hash(side ? b : a, h);
        hll_add_hash(u, h);
      }
    hll_t *da = dense_empty(), *db = dense_empty(), *du = dense_empty();
    hll_merge(da, a);
    hll_merge(db, b);
    CHECK_INT(hll_merge(a, b), 0);
    hll_merge(da, db);
    hll_merge(du, a);
    if (!same_bytes(a, u) || !same_bytes(da, du) || hll_count(a) != hll_count(u)) failures++;
    hll_free(a);
    hll_free(b);
    hll_free(u);
    hll_free(da);
    hll_free(db);
    hll_free(du);
  }
  CHECK_INT(failures, 0);
}

/* A value folded from a sparse entry lands in the same register, with the same rank, as the
 * value added straight to dense registers — including the edge hashes where the rank runs
 * past the 11 bits between precision 14 and 25, or the whole hash is zero below the index. */
TEST(test_sparse_to_dense_exact) {
  static const uint64_t edge[] = {0, 1, 1ull << 13, 1ull << 38, 1ull << 39, 1ull << 40,
                                  1ull << 49, 1ull << 50, 3ull << 50, UINT64_MAX,
                                  0x0003ffffffffffffull, 0xfffc000000000000ull, 0x8000000000000000ull};
  hll_t *base = hll_new();
  add_range(base, 5, 0, 4000); /* promoted */
  CHECK(hll_is_dense(base));
  hll_t *direct = hll_clone(base), *folded = hll_clone(base), *small = hll_new();
  for (size_t k = 0; k < sizeof edge / sizeof edge[0]; k++) {
    hll_add_hash(direct, edge[k]);
    hll_add_hash(small, edge[k]);
  }
  add_range(direct, 6, 0, 500);
  add_range(small, 6, 0, 500);
  CHECK(!hll_is_dense(small));
  CHECK_INT(hll_merge(folded, small), 0);
  CHECK(same_bytes(direct, folded));
  hll_free(base);
  hll_free(direct);
  hll_free(folded);
  hll_free(small);
}

static int cmp_u32(const void *a, const void *b) {
  uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
  return (x > y) - (x < y);
}

/* Earlier code kept up to 3072 entries sparse; such an encoding (built here the way it
 * wrote them: sorted idx25 << 6 | rank entries, delta varints) still decodes, into the
 * dense sketch of the same values, register for register. */
TEST(test_legacy_long_sparse) {
  enum { N = 3000 };
  static uint32_t e[N];
  hll_t *direct = hll_new();
  for (uint64_t i = 0; i < N; i++) {
    uint64_t h = mix(77ull << 40 ^ i);
    hll_add_hash(direct, h);
    e[i] = (uint32_t)(h >> 39) << 6 | (uint32_t)(__builtin_clzll(h << 25 | (1ull << 24)) + 1);
  }
  qsort(e, N, sizeof *e, cmp_u32);
  uint32_t n = 0;
  for (uint32_t i = 0; i < N; i++) { /* one entry per index: the larger rank sorts last */
    if (n && e[n - 1] >> 6 == e[i] >> 6) n--;
    e[n++] = e[i];
  }
  buf_t b = BUF_INIT;
  uint8_t head[3] = {HLL_SERIAL_VERSION, 1, HLL_PRECISION};
  buf_append(&b, head, 3);
  for (uint32_t k = 0, prev = 0; k <= n; k++) {
    uint32_t v = k == 0 ? n : e[k - 1] - prev;
    if (k) prev = e[k - 1];
    for (; v >= 0x80; v >>= 7) buf_putc(&b, (char)(v | 0x80));
    buf_putc(&b, (char)v);
  }
  hll_t *d = NULL;
  CHECK(n > 2400);
  CHECK_INT(hll_deserialize(b.data, b.len, &d), 0);
  if (d) {
    CHECK(hll_is_dense(d));
    CHECK(hll_is_dense(direct));
    CHECK(same_bytes(d, direct));
  }
  hll_free(d);
  hll_free(direct);
  buf_free(&b);
}

TEST(test_promotion) {
  hll_t *h = hll_new();
  uint64_t i = 0, last_sparse = 0;
  size_t peak_sparse = 0;
  while (!hll_is_dense(h)) {
    last_sparse = hll_count(h);
    if (hll_bytes(h) > peak_sparse) peak_sparse = hll_bytes(h);
    hll_add_hash(h, mix(i++));
  }
  uint64_t after = hll_count(h);
  printf("  promoted at value %" PRIu64 ": sparse count %" PRIu64 ", dense count %" PRIu64
         " (%+.2f%%); peak sparse %zu bytes, dense %zu bytes\n",
         i, last_sparse, after, 100 * rel_err(after, i), peak_sparse, hll_bytes(h));
  CHECK(i >= 2300 && i <= 2400); /* 2304 entries, a table as big as the dense registers */
  CHECK(last_sparse + 1 >= i - 1 && last_sparse <= i); /* exact up to a collision or two */
  CHECK(fabs(rel_err(after, i)) < 0.03);
  CHECK(peak_sparse <= hll_bytes(h)); /* sparse never outweighs dense */
  CHECK(hll_bytes(h) <= HLL_DENSE_BYTES + 64);
  hll_free(h);
}

TEST(test_serialize_roundtrip) {
  static const uint64_t ns[] = {0, 1, 10, 1000, 3000, 100000};
  for (size_t k = 0; k < sizeof ns / sizeof ns[0]; k++) {
    hll_t *h = hll_new();
    add_range(h, 9, 0, ns[k]);
    buf_t b = BUF_INIT;
    buf_append(&b, "prefix", 6); /* serialize appends */
    size_t len = hll_serialize(h, &b);
    CHECK_INT(b.len, 6 + len);
    CHECK(memcmp(b.data, "prefix", 6) == 0);
    printf("  n=%-7" PRIu64 " %s, %zu bytes serialized, %zu bytes in memory\n", ns[k],
           hll_is_dense(h) ? "dense " : "sparse", len, hll_bytes(h));
    hll_t *d = NULL;
    CHECK_INT(hll_deserialize(b.data + 6, len, &d), 0);
    if (d) {
      CHECK_INT(hll_count(d), hll_count(h));
      CHECK_INT(hll_is_dense(d), hll_is_dense(h));
      buf_t again = BUF_INIT;
      hll_serialize(d, &again);
      CHECK(again.len == len && memcmp(again.data, b.data + 6, len) == 0);
      buf_free(&again);
      /* A deserialized sketch keeps working like the original. */
      add_range(d, 10, 0, 50);
      add_range(h, 10, 0, 50);
      CHECK(same_bytes(d, h));
    }
    hll_t *c = hll_clone(h);
    CHECK(same_bytes(c, h));
    hll_free(c);
    hll_free(d);
    hll_free(h);
    buf_free(&b);
  }
}

static int decode(const void *p, size_t n) {
  hll_t *h = (hll_t *)1;
  int rc = hll_deserialize(p, n, &h);
  if (rc == 0) hll_free(h);
  else if (h != NULL) rc = -9999; /* *out must be NULL on error */
  return rc;
}

TEST(test_malformed) {
  /* input, reason: every one must be rejected with -EBADMSG. */
  static const struct { const char *bytes; size_t n; const char *why; } bad[] = {
      {"", 0, "empty"},
      {"\x01\x01", 2, "header cut short"},
      {"\x01\x01\x0e", 3, "no count"},
      {"\x02\x01\x0e\x00", 4, "unknown version"},
      {"\x01\x01\x0c\x00", 4, "other precision"},
      {"\x01\x03\x0e\x00", 4, "unknown kind"},
      {"\x01\x01\x0e\x00\x00", 5, "trailing byte"},
      {"\x01\x01\x0e\x01", 4, "entry missing"},
      {"\x01\x01\x0e\x02\x41", 5, "second entry missing"},
      {"\x01\x01\x0e\x01\x00", 5, "zero entry (rank 0)"},
      {"\x01\x01\x0e\x01\x40", 5, "rank 0"},
      {"\x01\x01\x0e\x01\x29", 5, "rank 41"},
      {"\x01\x01\x0e\x02\x41\x01", 6, "same index twice"},
      {"\x01\x01\x0e\x02\x41\x00", 6, "zero delta"},
      {"\x01\x01\x0e\x01\x81\x80\x80\x80\x08", 9, "index beyond 2^25"},
      {"\x01\x01\x0e\x01\xc1\x00", 6, "overlong varint"},
      {"\x01\x01\x0e\x01\x81\x80\x80\x80\x80\x01", 10, "varint over 5 bytes"},
      {"\x01\x01\x0e\x81\x00", 5, "overlong count"},
      {"\x01\x01\x0e\x81\x18", 5, "count 3073 > sparse limit"},
      {"\x01\x01\x0e\xff\xff\xff\xff\x0f", 8, "count 2^32-1"},
      {"\x01\x02\x0e", 3, "dense without registers"},
  };
  for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
    int rc = decode(bad[k].bytes, bad[k].n);
    if (rc != -EBADMSG) FAILF("%s: rc %d, expected -EBADMSG", bad[k].why, rc);
  }
  CHECK_INT(decode("\x01\x01\x0e\x01\x41", 5), 0); /* the smallest valid one, for contrast */
  CHECK_INT(decode("\x01\x01\x0e\x01\xc1\xff\xff\xff\x07", 9), 0); /* top index, rank 1 */
  CHECK_INT(hll_deserialize("x", 1, NULL), -EINVAL);
  CHECK_INT(decode(NULL, 5), -EINVAL);

  /* Dense: wrong lengths, a register above 51. */
  hll_t *h = hll_new();
  add_range(h, 11, 0, 20000);
  buf_t b = BUF_INIT;
  hll_serialize(h, &b);
  CHECK_INT(b.len, 3 + HLL_DENSE_BYTES);
  CHECK_INT(decode(b.data, b.len), 0);
  CHECK_INT(decode(b.data, b.len - 1), -EBADMSG);
  buf_putc(&b, 0);
  CHECK_INT(decode(b.data, b.len), -EBADMSG);
  b.len--;
  unsigned char save = (unsigned char)b.data[3 + 100];
  b.data[3 + 100] = (char)0xff; /* registers 133 and 134 (part): 63 */
  CHECK_INT(decode(b.data, b.len), -EBADMSG);
  b.data[3 + 100] = (char)save;
  b.data[3 + HLL_DENSE_BYTES - 1] = (char)(52 << 2); /* the last register: 52 */
  CHECK_INT(decode(b.data, b.len), -EBADMSG);
  b.data[3 + HLL_DENSE_BYTES - 1] = (char)(51 << 2);
  CHECK_INT(decode(b.data, b.len), 0);
  hll_free(h);

  /* Sparse: every strict prefix of a valid encoding is rejected; every single-bit flip is
   * rejected or decodes to a sketch whose encoding is exactly the flipped bytes. */
  h = hll_new();
  add_range(h, 12, 0, 300);
  buf_reset(&b);
  hll_serialize(h, &b);
  for (size_t n = 0; n < b.len; n++)
    if (decode(b.data, n) != -EBADMSG) FAILF("prefix of %zu bytes accepted", n);
  int accepted = 0;
  for (size_t bit = 0; bit < b.len * 8; bit++) {
    b.data[bit / 8] ^= (char)(1 << (bit % 8));
    hll_t *d = NULL;
    if (hll_deserialize(b.data, b.len, &d) == 0) {
      accepted++;
      buf_t again = BUF_INIT;
      hll_serialize(d, &again);
      if (again.len != b.len || memcmp(again.data, b.data, b.len) != 0)
        FAILF("bit %zu: accepted but not canonical", bit);
      buf_free(&again);
      hll_free(d);
    }
    b.data[bit / 8] ^= (char)(1 << (bit % 8));
  }
  printf("  %zu single-bit flips of a 300-value sketch: %d decode (canonically), rest rejected\n",
         b.len * 8, accepted);
  hll_free(h);
  buf_free(&b);
}

/* ---- A model of the sparse form: the set of (25-bit index, largest rank) entries ---- */

/* The sparse entry of hash h (hll.h: index << 6 | rank at precision 25). */
static uint32_t model_entry(uint64_t h) {
  uint32_t rank = (uint32_t)__builtin_clzll(h << 25 | (1ull << 24)) + 1;
  return (uint32_t)(h >> 39) << 6 | rank;
}

/* The version-1 encoding of the distinct entries e[0..n) as documented in hll.h: sorted,
 * delta varints. e is sorted in place. */
static void model_encode(uint32_t *e, size_t n, buf_t *out) {
  qsort(e, n, sizeof *e, cmp_u32);
  uint8_t head[3] = {HLL_SERIAL_VERSION, 1, HLL_PRECISION};
  buf_append(out, head, 3);
  uint32_t prev = 0;
  for (size_t k = 0; k <= n; k++) {
    uint32_t v = k == 0 ? (uint32_t)n : e[k - 1] - prev;
    if (k) prev = e[k - 1];
    while (v >= 0x80) {
      buf_putc(out, (char)(v | 0x80));
      v >>= 7;
    }
    buf_putc(out, (char)v);
  }
}

/* Add h to the model m (m[0..*n), unsorted: index -> largest rank). */
static void model_add(uint32_t *m, size_t *n, uint64_t h) {
  uint32_t e = model_entry(h);
  for (size_t k = 0; k < *n; k++)
    if (m[k] >> 6 == e >> 6) {
      if (e > m[k]) m[k] = e;
      return;
    }
  m[(*n)++] = e;
}

/* Random insert sequences, by adds and by unions of pieces (a minute's sketches folded
 * into an hour's): while at most 2304 indices are held the sketch encodes exactly the
 * model's entries (whatever the table's layout: indices drawn from a narrow band, at the
 * table's top end so that probes wrap around to its start, or spread out), its count is
 * linear counting over those entries, and once past them its dense registers are those
 * of a sketch dense from the start. Every add reports the bytes it grew the sketch by,
 * and a union grows it to the same size as adding its values one by one; every value is
 * found again after the rehashes (an add of it changes nothing). */
TEST(test_sparse_model) {
  enum { ROUNDS = 300, MAXN = 3000 };
  static uint32_t m[MAXN];
  static uint64_t hs[MAXN];
  uint64_t rng = 2024;
  int bad_bytes = 0, bad_count = 0, bad_growth = 0, bad_union = 0, bad_find = 0, dense_rounds = 0;
  for (int round = 0; round < ROUNDS; round++) {
    rng = mix(rng);
    size_t nh = (size_t)(rng % (round % 10 == 0 ? MAXN : 400));
    uint64_t band = round % 3 == 0 ? 64 : round % 3 == 1 ? 4096 : 1ull << 25;
    uint64_t base = round % 6 == 0 ? (1ull << 25) - band : (rng >> 32) % ((1ull << 25) - band + 1);
    for (size_t i = 0; i < nh; i++) {
      rng = mix(rng);
      uint64_t idx = base + rng % band; /* rank from the low bits, often repeated */
      hs[i] = idx << 39 | ((rng >> 20) & ((1ull << 39) - 1)) >> (rng & 15);
      if (i && rng % 5 == 0) hs[i] = hs[rng % i]; /* a value seen before */
    }
    hll_t *h = hll_new(), *u = hll_new(), *piece = hll_new();
    size_t mn = 0, grown = 0, empty_bytes = hll_bytes(h);
    for (size_t i = 0; i < nh; i++) {
      grown += hll_add_hash(h, hs[i]);
      model_add(m, &mn, hs[i]);
      hll_add_hash(piece, hs[i]);
      if (rng >> (i % 61) & 1 || i + 1 == nh) { /* pieces of random length */
        size_t before = hll_bytes(u);
        hll_merge(u, piece);
        if (hll_bytes(u) < before) bad_union++;
        hll_free(piece);
        piece = hll_new();
      }
    }
    if (grown != hll_bytes(h) - empty_bytes) bad_growth++;
    /* every value is found again after all the rehashes (table growth, unions): adding
     * it once more changes neither the size nor the encoding */
    buf_t before = BUF_INIT, again = BUF_INIT;
    hll_serialize(h, &before);
    size_t regrown = 0;
    for (size_t i = 0; i < nh; i++) regrown += hll_add_hash(h, hs[i]) + hll_add_hash(u, hs[i]);
    hll_serialize(h, &again);
    if (regrown || before.len != again.len || memcmp(before.data, again.data, again.len)) bad_find++;
    buf_free(&before);
    buf_free(&again);
    if (!same_bytes(h, u) || hll_bytes(h) != hll_bytes(u)) bad_union++;
    if (mn <= 2304) {
      buf_t want = BUF_INIT, got = BUF_INIT;
      model_encode(m, mn, &want);
      hll_serialize(h, &got);
      if (hll_is_dense(h) || want.len != got.len || memcmp(want.data, got.data, got.len)) bad_bytes++;
      double lc = -(double)(1u << 25) * log1p(-(double)mn / (double)(1u << 25));
      if (hll_count(h) != (uint64_t)llround(lc)) bad_count++;
      buf_free(&want);
      buf_free(&got);
    } else {
      dense_rounds++;
      hll_t *d = hll_new_dense();
      for (size_t i = 0; i < nh; i++) hll_add_hash(d, hs[i]);
      if (!hll_is_dense(h) || !same_bytes(h, d) || hll_count(h) != hll_count(d)) bad_bytes++;
      hll_free(d);
    }
    hll_free(h);
    hll_free(u);
    hll_free(piece);
  }
  printf("  %d rounds (%d past the sparse limit)\n", ROUNDS, dense_rounds);
  CHECK(dense_rounds > 0);
  CHECK_INT(bad_bytes, 0);
  CHECK_INT(bad_count, 0);
  CHECK_INT(bad_growth, 0);
  CHECK_INT(bad_union, 0);
  CHECK_INT(bad_find, 0);
}

/* Sketches and tables freed are made again (a free list per size): threads that make,
 * grow (through every table size, and dense), merge and free sketches side by side get
 * the same counts as one thread alone, and the sanitizers see every block used within its
 * size. */
#define POOL_THREADS 4
#define POOL_ROUNDS 40
static uint64_t pool_want[POOL_ROUNDS];

static uint64_t pool_round(int r) {
  uint64_t n = (uint64_t)(r * 97 % 3000) + 1; /* 1 .. 3000 distinct: sparse sizes and dense */
  hll_t *a = hll_new(), *b = hll_new();
  add_range(a, (uint64_t)r, 0, n);
  add_range(b, (uint64_t)r, n / 2, n + 50);
  hll_t *c = hll_clone(a);
  hll_merge(c, b);
  uint64_t got = hll_count(c) * 1000003 + hll_count(a);
  hll_free(a);
  hll_free(c);
  hll_free(b);
  return got;
}

static void *pool_thread(void *arg) {
  int *bad = arg;
  for (int k = 0; k < 3; k++)
    for (int r = 0; r < POOL_ROUNDS; r++)
      if (pool_round(r) != pool_want[r]) (*bad)++;
  return NULL;
}

TEST(test_freed_memory_made_again) {
  for (int r = 0; r < POOL_ROUNDS; r++) pool_want[r] = pool_round(r);
  pthread_t th[POOL_THREADS];
  int bad[POOL_THREADS] = {0};
  for (int i = 0; i < POOL_THREADS; i++) pthread_create(&th[i], NULL, pool_thread, &bad[i]);
  for (int i = 0; i < POOL_THREADS; i++) pthread_join(th[i], NULL);
  for (int i = 0; i < POOL_THREADS; i++) CHECK_INT(bad[i], 0);
}

TEST(test_memory) {
  static const uint64_t ns[] = {0, 1, 10, 100, 1000, 3000, 5000};
  for (size_t k = 0; k < sizeof ns / sizeof ns[0]; k++) {
    hll_t *h = hll_new();
    add_range(h, 13, 0, ns[k]);
    printf("  n=%-5" PRIu64 " %zu bytes in memory (%s)\n", ns[k], hll_bytes(h),
           hll_is_dense(h) ? "dense" : "sparse");
    if (ns[k] == 10) CHECK(hll_bytes(h) <= 128);
    /* a sparse table is at least half full: at most 8 bytes per value */
    if (ns[k] == 1000) CHECK(hll_bytes(h) <= 24 + 8 * 1000);
    CHECK(hll_bytes(h) <= 24 + HLL_DENSE_BYTES + 64);
    hll_t *c = hll_clone(h);
    CHECK(hll_bytes(c) <= hll_bytes(h));
    hll_free(c);
    hll_free(h);
  }
}

int main(void) {
  RUN(test_empty);
  RUN(test_cardinalities);
  RUN(test_error_distribution);
  RUN(test_duplicates);
  RUN(test_new_pair);
  RUN(test_merge_equals_union);
  RUN(test_merge_random);
  RUN(test_sparse_to_dense_exact);
  RUN(test_promotion);
  RUN(test_legacy_long_sparse);
  RUN(test_serialize_roundtrip);
  RUN(test_malformed);
  RUN(test_sparse_model);
  RUN(test_freed_memory_made_again);
  RUN(test_memory);
  return TEST_REPORT("test_hll");
}
