/* rollup_snap: the snapshot encoding of a rollup store (rollup.h documents the format). */
#include "rollup.h"
#include "rollup_int.h"

#include <errno.h>
#include <string.h>

#include "hll.h"
#include "util/buf.h"

/* ---- Snapshot ---- */

static const char MAGIC[4] = {'S', 'L', 'R', 'U'};
enum { WIRE_ONE = 1, WIRE_HLL = 2, WIRE_NONE = 3, WIRE_GIVEN_UP = 4 };

static void put_varint(buf_t *b, uint64_t v) {
  uint8_t tmp[10];
  size_t n = 0;
  do {
    tmp[n++] = (uint8_t)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
    v >>= 7;
  } while (v);
  buf_append(b, tmp, n);
}

static void put_u64(buf_t *b, uint64_t v) {
  uint8_t tmp[8];
  for (int i = 0; i < 8; i++) tmp[i] = (uint8_t)(v >> (8 * i));
  buf_append(b, tmp, 8);
}

/* The same encodings written at p (room reserved by the caller); they return the byte
 * after. A cell takes one reservation and no call per field: a snapshot holds millions. */
#define CELL_MAX (10 + 10 + 8 + 1 + 8) /* key, count, sum, user kind, one hash */
static inline uint8_t *wr_varint(uint8_t *p, uint64_t v) {
  while (v > 0x7f) {
    *p++ = (uint8_t)(v | 0x80);
    v >>= 7;
  }
  *p++ = (uint8_t)v;
  return p;
}

static inline uint8_t *wr_u64(uint8_t *p, uint64_t v) {
  for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
  return p + 8;
}

static void put_bytes(buf_t *b, const char *s, size_t n) {
  put_varint(b, n);
  buf_append(b, s, n);
}

size_t rollup_serialize(const rollup_t *r, buf_t *out) {
  size_t start = out->len;
  buf_append(out, MAGIC, 4);
  buf_putc(out, ROLLUP_SERIAL_VERSION);
  for (int g = 0; g < NGRAN; g++) put_varint(out, r->ring[g].size);
  put_varint(out, r->max_values);
  put_varint(out, r->max_value_len);
  put_varint(out, (uint64_t)r->max_future_us);
  put_u64(out, (uint64_t)r->hw_us);
  put_varint(out, r->accepted);
  put_varint(out, r->rejected_future);
  put_varint(out, r->rejected_old);
  put_varint(out, r->folded);
  put_varint(out, r->max_bytes);
  put_varint(out, r->budget_folded);
  for (int g = 0; g < NGRAN; g++) {
    put_varint(out, r->evicted[g]);
    buf_putc(out, r->floor[g] != INT64_MIN);
    if (r->floor[g] != INT64_MIN) put_u64(out, (uint64_t)r->floor[g]);
  }
  put_varint(out, r->no_users ? 1 : 0); /* flags (version 3) */
  put_varint(out, r->ndims);
  for (uint32_t i = 0; i < r->ndims; i++) {
    const dim_t *d = &r->dims[i];
    put_bytes(out, d->name, strlen(d->name));
    put_varint(out, d->n);
    for (uint32_t k = 0; k < d->n; k++) put_bytes(out, d->vals[k], d->vlen[k]);
  }
  buf_t sketch = BUF_INIT;
  for (int g = 0; g < NGRAN; g++) {
    const ring_t *rg = &r->ring[g];
    int64_t last = floor_div(r->hw_us, WIDTH_US[g]), first = last - rg->size + 1;
    uint64_t nb = 0;
    for (int64_t b = first; b <= last; b++) nb += find_bucket(r, g, b, r->hw_us) != NULL;
    put_varint(out, nb);
    int64_t prev = 0;
    int any = 0;
    for (int64_t b = first; b <= last; b++) {
      const bucket_t *bk = find_bucket(r, g, b, r->hw_us);
      if (!bk) continue;
      if (any) put_varint(out, (uint64_t)(b - prev));
      else put_u64(out, (uint64_t)b);
      any = 1;
      prev = b;
      if (g == G_MIN) buf_putc(out, bk->folded ? 1 : 0);
      put_varint(out, bk->n);
      for (uint32_t k = 0; k < bk->n; k++) {
        const cell_t *c = &bk->cells[k];
        uint64_t sum;
        memcpy(&sum, &c->sum, 8);
        buf_reserve(out, CELL_MAX);
        uint8_t *p = (uint8_t *)out->data + out->len;
        p = wr_varint(p, c->key);
        p = wr_varint(p, c->count);
        p = wr_u64(p, sum);
        if (c->users == U_ONE) {
          *p++ = WIRE_ONE;
          p = wr_u64(p, c->u.hash);
        } else if (c->users == U_HLL) {
          *p++ = WIRE_HLL;
        } else if (c->users == U_NONE && (g != G_SEC || c->key == TOTAL_KEY)) {
          *p++ = WIRE_GIVEN_UP;
        } else {
          *p++ = WIRE_NONE;
        }
        out->len = (size_t)((char *)p - out->data);
        out->data[out->len] = 0;
        if (c->users == U_HLL) {
          buf_reset(&sketch);
          hll_serialize(c->u.hll, &sketch);
          put_bytes(out, sketch.data, sketch.len);
        }
      }
    }
  }
  buf_free(&sketch);
  return out->len - start;
}

typedef struct {
  const uint8_t *p;
  size_t n, off;
  int bad;
} reader_t;

static uint64_t get_varint(reader_t *rd) {
  uint64_t v = 0;
  for (int shift = 0; !rd->bad; shift += 7) {
    if (rd->off >= rd->n || shift > 63) break;
    uint8_t byte = rd->p[rd->off++];
    if (shift == 63 && byte > 1) break;
    v |= (uint64_t)(byte & 0x7f) << shift;
    if (!(byte & 0x80)) {
      if (byte == 0 && shift > 0) break; /* overlong */
      return v;
    }
  }
  rd->bad = 1;
  return 0;
}

static uint64_t get_u64(reader_t *rd) {
  if (rd->bad || rd->n - rd->off < 8) {
    rd->bad = 1;
    return 0;
  }
  uint64_t v = 0;
  for (int i = 0; i < 8; i++) v |= (uint64_t)rd->p[rd->off + i] << (8 * i);
  rd->off += 8;
  return v;
}

static uint8_t get_u8(reader_t *rd) {
  if (rd->bad || rd->off >= rd->n) {
    rd->bad = 1;
    return 0;
  }
  return rd->p[rd->off++];
}

/* A length-prefixed byte string of 1..max bytes without NUL; NULL (and bad) otherwise. */
static const char *get_str(reader_t *rd, size_t max, size_t *len) {
  uint64_t n = get_varint(rd);
  if (rd->bad || n < 1 || n > max || n > rd->n - rd->off) {
    rd->bad = 1;
    return NULL;
  }
  const char *s = (const char *)rd->p + rd->off;
  if (memchr(s, 0, n)) {
    rd->bad = 1;
    return NULL;
  }
  rd->off += n;
  *len = n;
  return s;
}

static int read_cell(reader_t *rd, rollup_t *r, int g, bucket_t *bk, uint32_t k) {
  uint64_t key = get_varint(rd), count = get_varint(rd), sumbits = get_u64(rd);
  uint8_t kind = get_u8(rd);
  if (rd->bad || key > UINT32_MAX || count < 1) return -1;
  if ((k == 0) != (key == TOTAL_KEY)) return -1;
  if (key != TOTAL_KEY) {
    int d = KEY_DIM((uint32_t)key);
    if (d < 0 || (uint32_t)d >= r->ndims || KEY_ID((uint32_t)key) >= r->dims[d].n) return -1;
  }
  int created;
  cell_t *c = rollup_cell_get(r, bk, (uint32_t)key, &created);
  if (!created) return -1;
  c->count = count;
  memcpy(&c->sum, &sumbits, 8);
  /* per-second dimension cells never have users, minute cells and second totals always
   * (unless given up, or the store keeps none: kind 4); hour cells get theirs as their
   * minutes fold, or directly for old events */
  int want_none = g == G_SEC && key != TOTAL_KEY;
  if (kind == WIRE_NONE && want_none) {
    c->users = U_NONE;
  } else if (kind == WIRE_NONE && g == G_HOUR) {
    c->users = U_FRESH;
  } else if (kind == WIRE_GIVEN_UP && !want_none) {
    c->users = U_NONE; /* given up to the memory budget */
  } else if (kind == WIRE_ONE && !want_none) {
    c->users = U_ONE;
    c->u.hash = get_u64(rd);
  } else if (kind == WIRE_HLL && !want_none) {
    uint64_t len = get_varint(rd);
    hll_t *h = NULL;
    if (rd->bad || len > rd->n - rd->off || hll_deserialize(rd->p + rd->off, len, &h) < 0)
      return -1;
    rd->off += len;
    c->users = U_HLL;
    c->u.hll = h;
    r->ring_bytes += hll_bytes(h);
  } else {
    return -1;
  }
  return rd->bad ? -1 : 0;
}

/* Reads one ring of a version-1 or 2 encoding. */
static int read_ring(reader_t *rd, rollup_t *r, int g, int version) {
  const ring_t *rg = &r->ring[g];
  int64_t last = floor_div(r->hw_us, WIDTH_US[g]), first = last - rg->size + 1;
  uint64_t nb = get_varint(rd);
  if (rd->bad || nb > rg->size) return -1;
  int64_t b = 0;
  for (uint64_t i = 0; i < nb; i++) {
    if (i == 0) {
      b = (int64_t)get_u64(rd);
    } else {
      uint64_t delta = get_varint(rd);
      if (delta < 1 || delta > (uint64_t)(last - b)) return -1;
      b += (int64_t)delta;
    }
    if (rd->bad || b < first || b > last || b < r->floor[g]) return -1;
    uint8_t folded = g == G_MIN && version >= 2 ? get_u8(rd) : 1;
    if (folded > 1 || (!folded && r->npending == PENDING_MAX)) return -1;
    uint64_t ncells = get_varint(rd);
    /* a cell takes at least 11 bytes; the keys bound it too */
    if (rd->bad || ncells < 1 || ncells > (rd->n - rd->off) / 11 ||
        ncells > 1 + (uint64_t)r->ndims * (r->max_values + 1))
      return -1;
    bucket_t *bk = rollup_claim_bucket(r, g, b);
    for (uint32_t k = 0; k < ncells; k++)
      if (read_cell(rd, r, g, bk, k) < 0) return -1;
    bk->folded = folded;
    if (!folded) r->pending[r->npending++] = b;
  }
  return 0;
}

int rollup_deserialize(const void *p, size_t n, rollup_t **out) {
  if (!out) return -EINVAL;
  *out = NULL;
  if (!p && n) return -EINVAL;
  reader_t rd = {p, n, 0, 0};
  rollup_t *r = NULL;
  if (n < 5 || memcmp(p, MAGIC, 4) != 0) goto fail;
  rd.off = 4;
  int version = get_u8(&rd);
  if (version < 1 || version > ROLLUP_SERIAL_VERSION) goto fail;
  uint64_t sizes[NGRAN], maxv, maxlen, fut, hw, counters[4], ndims;
  for (int g = 0; g < NGRAN; g++) sizes[g] = get_varint(&rd);
  maxv = get_varint(&rd);
  maxlen = get_varint(&rd);
  fut = get_varint(&rd);
  hw = get_u64(&rd);
  for (int i = 0; i < 4; i++) counters[i] = get_varint(&rd);
  uint64_t max_bytes = 0, budget_folded = 0, evicted[NGRAN] = {0};
  int64_t floors[NGRAN] = {INT64_MIN, INT64_MIN, INT64_MIN};
  if (version >= 2) {
    max_bytes = get_varint(&rd);
    budget_folded = get_varint(&rd);
    for (int g = 0; g < NGRAN; g++) {
      evicted[g] = get_varint(&rd);
      uint8_t has_floor = get_u8(&rd);
      if (has_floor > 1) goto fail;
      if (has_floor) floors[g] = (int64_t)get_u64(&rd);
      /* INT64_MIN means none; far floors would overflow bucket arithmetic */
      if (has_floor && (floors[g] <= -HW_LIMIT || floors[g] > HW_LIMIT)) goto fail;
    }
    if (max_bytes > SIZE_MAX || (max_bytes && max_bytes < ROLLUP_MIN_BYTES)) goto fail;
  }
  uint64_t flags = version >= 3 ? get_varint(&rd) : 0; /* bit 0: no_users */
  if (flags > 1) goto fail;
  ndims = get_varint(&rd);
  if (rd.bad || ndims < 1 || ndims > ROLLUP_MAX_DIMS || (int64_t)hw > HW_LIMIT ||
      (int64_t)hw < -HW_LIMIT)
    goto fail;
  /* 0 would mean "default" to rollup_new: reject it here so the header stays canonical */
  for (int g = 0; g < NGRAN; g++)
    if (!sizes[g] || sizes[g] > UINT32_MAX) goto fail;
  if (!maxv || maxv > UINT32_MAX || !maxlen || maxlen > UINT32_MAX || !fut ||
      fut > INT64_MAX)
    goto fail;
  char names[ROLLUP_MAX_DIMS][ROLLUP_MAX_DIM_NAME + 1];
  const char *name_ptrs[ROLLUP_MAX_DIMS];
  size_t value_starts[ROLLUP_MAX_DIMS];
  /* Names come first in each dimension's record, its values after: read the names in a
   * first pass, skipping the values, to build the store; then read the values. */
  for (uint64_t i = 0; i < ndims; i++) {
    size_t len;
    const char *s = get_str(&rd, ROLLUP_MAX_DIM_NAME, &len);
    if (!s) goto fail;
    memcpy(names[i], s, len);
    names[i][len] = 0;
    name_ptrs[i] = names[i];
    value_starts[i] = rd.off;
    uint64_t nv = get_varint(&rd);
    if (rd.bad || nv < 1 || nv > maxv + 1 || nv > (rd.n - rd.off) / 2) goto fail;
    for (uint64_t k = 0; k < nv; k++)
      if (!get_str(&rd, maxlen, &len)) goto fail;
  }
  size_t rings_start = rd.off;
  rollup_opts_t o = {name_ptrs, (size_t)ndims, (uint32_t)sizes[0], (uint32_t)sizes[1],
                     (uint32_t)sizes[2], (uint32_t)maxv, (uint32_t)maxlen, (int64_t)fut,
                     NULL, NULL, (size_t)max_bytes, (int)flags};
  r = rollup_new(&o);
  if (!r) goto fail;
  set_hw(r, (int64_t)hw);
  r->accepted = counters[0];
  r->rejected_future = counters[1];
  r->rejected_old = counters[2];
  r->folded = counters[3];
  r->budget_folded = budget_folded;
  for (int g = 0; g < NGRAN; g++) {
    r->evicted[g] = evicted[g];
    r->floor[g] = floors[g];
  }
  for (uint32_t i = 0; i < r->ndims; i++) {
    dim_t *d = &r->dims[i];
    rd.off = value_starts[i];
    uint64_t nv = get_varint(&rd);
    for (uint64_t k = 0; k < nv; k++) {
      size_t len;
      const char *s = get_str(&rd, maxlen, &len);
      uint32_t h = rollup_value_hash(s, len);
      int64_t id = rollup_dim_find(d, s, len, h, NULL);
      if (k == 0) { /* "(other)", already there */
        if (id != 0) goto fail;
      } else {
        if (id >= 0) goto fail;
        rollup_dim_insert(d, s, len, h);
      }
    }
  }
  rd.off = rings_start;
  for (int g = 0; g < NGRAN; g++)
    if (read_ring(&rd, r, g, version) < 0) goto fail;
  if (rd.bad || rd.off != rd.n) goto fail;
  if (version == 1) { /* its hours hold the counts of their minutes, not yet the users */
    const ring_t *mr = &r->ring[G_MIN];
    for (uint32_t i = mr->held_lo; i < mr->held_hi; i++)
      if (mr->slots[i].n) rollup_fold_minute(r, &mr->slots[i], 0);
  }
  *out = r;
  return 0;
fail:
  rollup_free(r);
  return -EBADMSG;
}
