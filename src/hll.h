/* hll: HyperLogLog sketches — approximate distinct counts (unique users, sessions) for the
 * time-bucketed rollups, where one sketch exists per bucket x dimension value.
 *
 * Design. Precision p = 14: 16384 registers, standard error 1.04/sqrt(16384) = 0.81%.
 * Because most sketches see few distinct values, a sketch starts SPARSE: a set of 32-bit
 * entries (index << 6 | rank) at a finer precision p' = 25 (as in HLL++), one entry per
 * distinct 25-bit index holding the largest rank seen. Its count is linear counting
 * over 2^25 buckets, which is exact up to 25-bit index collisions (expected 0.015 of them
 * at 1,000 values, 0.08 at 2,300): small sets count exactly in practice. The set is an
 * open-addressing hash table (linear probing over groups of four slots compared at once,
 * at most 3/4 full, growing by half from 8 slots; an index's home group is the index
 * scaled to the table, so the table holds its entries nearly sorted and serializing
 * sorts them in about one move each), so an add or the union of a small sketch into a big one costs time in
 * proportion to what is added, not to the size of the big one: a rollup adds every event
 * to several sketches and merges each closed minute's sketches into its hour's. A sparse
 * entry folds into the p = 14 register it implies without losing anything, so a sketch
 * that went sparse -> dense has exactly the registers of one that was dense from the
 * start. Once a sparse sketch would need more than 2304 entries (a 3072-slot table,
 * 12 KiB, the size of the dense form) it is promoted to DENSE: 16384 six-bit registers
 * packed 4 per 3 bytes (12 KiB, against 16 KiB at one byte per register; the add is a
 * two-byte read-modify-write either way, so packing costs next to nothing). Memory is
 * therefore bounded by about 12 KiB per sketch (a sparse one holds 4 to 8 bytes per value).
 * The dense count is Ertl's improved raw estimator ("New cardinality estimation algorithms
 * for HyperLogLog sketches", 2017, algorithm 6), which is unbiased over the whole range
 * without HLL++'s empirical bias tables or a switch-over to linear counting.
 *
 * Input is a 64-bit hash that must be well mixed (XXH3_64bits; hll_add hashes for you).
 * Not thread-safe: a sketch belongs to one thread at a time; distinct sketches are
 * independent.
 *
 * Serialized form (version 1), compact and canonical — one sketch has exactly one
 * encoding, so deserialize -> serialize reproduces the input bytes:
 *   u8 version = 1, u8 kind (1 sparse, 2 dense), u8 precision = 14, then
 *   sparse: varint n (<= 2304), then n varints: the first entry, then each entry minus
 *           the previous one (entries strictly increasing by index, ranks 1..40);
 *           earlier code kept up to 3072 entries sparse: such an encoding still decodes,
 *           into the dense sketch of its entries (which then serializes dense);
 *   dense:  the 12288 packed register bytes (register i at bits 6i..6i+5, little-endian
 *           bit order), every register <= 51.
 * Varints are unsigned LEB128 without overlong forms. An empty sketch takes 4 bytes, a
 * 10-value sketch 47 (about 3.4 bytes per entry at 1,000 values), a dense one 12291.
 * The encoding is not self-delimiting: a caller storing several sketches frames each
 * (e.g. with a length prefix). */
#ifndef SLUICE_HLL_H
#define SLUICE_HLL_H

#include <stddef.h>
#include <stdint.h>

#include "util/buf.h"

typedef struct hll hll_t;

#define HLL_PRECISION 14
#define HLL_REGISTERS (1u << HLL_PRECISION)
#define HLL_DENSE_BYTES (HLL_REGISTERS * 6 / 8) /* 12288 */
#define HLL_SERIAL_VERSION 1

/* ---- Lifetime ---- */

/* A new, empty (sparse) sketch; owned by the caller, free with hll_free. Never NULL
 * (allocation failure aborts, see util/mem.h). */
hll_t *hll_new(void);
/* A new sparse sketch holding the hashes a and b (equal or not): what hll_new and
 * hll_add_hash of a, then of b, give, made at once (a rollup cell's second user). Owned by
 * the caller; never NULL. */
hll_t *hll_new_pair(uint64_t a, uint64_t b);
/* A new, empty sketch already in the dense form (12 KiB), for an accumulator that will
 * take many sketches: merging into it costs per source entry. Never NULL. */
hll_t *hll_new_dense(void);
/* Free h and everything it owns. NULL is a no-op. */
void hll_free(hll_t *h);
/* A deep copy of h (same representation), owned by the caller. Never NULL. */
hll_t *hll_clone(const hll_t *h);

/* ---- Adding and counting ---- */

/* Add one value by its 64-bit hash (XXH3_64bits or as well mixed). Adding a hash that is
 * already present changes nothing. May promote h from sparse to dense. Returns how many
 * bytes hll_bytes(h) grew by (0 for most adds), for a caller keeping a memory budget. */
size_t hll_add_hash(hll_t *h, uint64_t hash);
/* Add n bytes at p (borrowed): hll_add_hash(h, XXH3_64bits(p, n)). */
void hll_add(hll_t *h, const void *p, size_t n);
/* Estimated number of distinct values added: exact in practice while sparse (up to
 * about 2,300 values), about 0.81% standard error once dense. 0 for an empty sketch,
 * UINT64_MAX for a saturated one (every register at its maximum: only a crafted
 * encoding gets there). O(1) when sparse; one pass over the 16384 registers when dense. */
uint64_t hll_count(const hll_t *h);

/* ---- Union ---- */

/* Make dst the union of dst and src (src, borrowed, is not changed); any mix of sparse and
 * dense. The result equals adding both inputs' values to one sketch: for a dense result,
 * register for register. dst == src is allowed (no change). Returns 0, or -EINVAL when
 * dst or src is NULL. */
int hll_merge(hll_t *dst, const hll_t *src);

/* ---- Introspection ---- */

/* Heap bytes h holds: the struct plus its allocated array (allocator overhead not
 * included): the struct (56 bytes, the first 8 table slots inside it), plus 4 x (table
 * slots) once the table outgrows it while sparse, or 12289 once dense. */
size_t hll_bytes(const hll_t *h);
/* 1 when h uses the dense registers, 0 while sparse. */
int hll_is_dense(const hll_t *h);

/* ---- Serialization ---- */

/* Append h's version-1 encoding (above) to out; returns the number of bytes appended. */
size_t hll_serialize(const hll_t *h, buf_t *out);
/* Decode exactly n bytes at p (borrowed; hostile input is fine) into a new sketch.
 * On success returns 0 and stores the sketch, owned by the caller, in *out (OUT).
 * Returns -EBADMSG when the bytes are not exactly one valid, canonical version-1
 * encoding (unknown version or precision, truncation, trailing bytes, out-of-range or
 * unordered entries, overlong varints, a register above 51), -EINVAL when out is NULL or
 * p is NULL with n > 0; *out is NULL on any error. */
int hll_deserialize(const void *p, size_t n, hll_t **out);

#endif
