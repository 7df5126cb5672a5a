/* evdoc: client JSON bytes plus edits (see evdoc.h).
 *
 * Edits are kept in order in a small array; their path segments and values live in one
 * arena buffer, addressed by offset because the arena may move as it grows. Setting or
 * deleting a path retires every earlier edit at or below it, so for any path the live
 * edits are: at most one at the path itself, plus deeper ones made after it. Objects are
 * indexed (jscan_members) on first use and cached by their address for this document;
 * those the validating walk recorded (jscan_tape_t) are in the cache from the load on,
 * their members borrowed from the tape, their names hashed on first use. */
#include "evdoc.h"

#include <assert.h>
#include <stdatomic.h>
#include <string.h>

#include "util/mem.h"
#include "util/plain.h"

enum { OP_NOP, OP_SET, OP_DEL };

typedef struct edit {
  uint8_t op, nsegs;
  uint8_t below; /* a later edit lies strictly below this one's path (see begin_edit) */
  uint8_t escape; /* bit i: segment i has bytes JSON must escape (written by buf_json_escape) */
  uint64_t phash[EVDOC_MAX_DEPTH]; /* hash of the path's first i+1 segments */
  uint32_t seg_off[EVDOC_MAX_DEPTH]; /* in the arena, unless segp */
  uint16_t seg_len[EVDOC_MAX_DEPTH];
  const char *const *segp; /* the segments of a constant path's memo (they outlive the edit) */
  uint32_t val_off, val_len;
} edit_t;

#define CACHE 32
#define KID_SLOTS 1024 /* > 2 * NODES_MAX (see node_t), a power of two */
typedef struct indexed {
  const char *p;
  size_t n;
  long count;
  const jscan_member_t *members; /* own, or a tape's (evdoc_load_indexed, evdoc_load) */
  uint64_t *names;               /* name_hash of each member's decoded name, once hashed */
  int hashed;                    /* names holds count hashes */
  jscan_member_t *own;           /* cap entries, allocated on first use */
  size_t cap, names_cap;
} indexed_t;

struct evdoc {
  const char *json;
  size_t len;
  jscan_val_t root;
  edit_t *edits;
  size_t nedits, cap_edits;
  size_t seg_room; /* each edit's segments written as new members (see evdoc_write) */
  buf_t arena;
  indexed_t cache[CACHE];
  size_t ncache, next_evict;
  buf_t scratch; /* JSON text of values being set */
  jscan_tape_t tape; /* the nested objects evdoc_load's walk recorded */
  uint64_t mask[EVDOC_MAX_DEPTH]; /* per depth: bit_of(prefix hash) of every edit made */
  uint64_t endmask[EVDOC_MAX_DEPTH]; /* per depth: bit_of(path hash) of edits that end there */
  struct memo *memo;              /* parsed dotted paths, see evdoc_get */
  struct memo **paths;            /* parsed evdoc_path_t, by id (see path_memo) */
  size_t npaths;
  size_t memo_evict;              /* round-robin way to replace in a full bucket */
  struct node *nodes;             /* interned path prefixes, see resolve */
  size_t nnodes, cap_nodes;
  uint32_t root_filled;           /* as node_t's filled, for the nodes at the top */
  uint16_t kid_slot[KID_SLOTS];   /* node index + 1 by kid_at(parent, nh), 0 empty */
  uint32_t gen;                   /* counts loads: a node's value is current when its gen is */
  /* evdoc_get_top's last table (by address) and, per name, its node and path hash when
   * it is a top-level name with a node (else it is read with evdoc_get). */
  const char *const *top_names;
  size_t top_n;
  uint32_t top_node[EVDOC_MAX_MEMBERS];
  uint64_t top_h[EVDOC_MAX_MEMBERS];
};

/* A dotted path parsed and hashed once. Callers pass the same few paths again and again,
 * so evdoc_get keeps the parse by the path's text: its bucket comes from the text's
 * length and first and last bytes, never from its address, so which paths share a
 * bucket (and what a read costs) is the same in every run and every build. */
#define MEMO 256 /* 64 buckets of MEMO_WAYS */
#define MEMO_WAYS 4
#define MEMO_TEXT 96
typedef struct memo {
  size_t used; /* 0: an empty way; else the text's length + 1 */
  char text[MEMO_TEXT];
  size_t n;
  const char *segs[EVDOC_MAX_DEPTH];
  size_t lens[EVDOC_MAX_DEPTH];
  uint64_t h[EVDOC_MAX_DEPTH];
  uint64_t nh[EVDOC_MAX_DEPTH]; /* name_hash of each segment */
  uint8_t escape;               /* as edit_t's, for the edits made through this memo */
  uint8_t stable;               /* a constant path's (never refilled): edits may point at segs */
  uint32_t node;                /* the whole path's node (see resolve), 0 for none */
} memo_t;

/* A path prefix, interned once per document object for every memo that has it: the
 * nodes of "context.page.url" are context, context.page and context.page.url, and the
 * first is shared with "context.ip". A node keeps what its path reads in the ORIGINAL
 * bytes of the loaded event, found on the first read after a load: edits never change
 * that (get_hashed applies them on top), so nothing is invalidated but by the next load.
 * Most reads then cost one comparison. The first read below a node (or the root) fills
 * all its children at once: each member of its object looks for a node of its name in a
 * table by parent and name hash (kid_slot), so an object is walked once however many of
 * its members are read, and a member no path names costs one probe. Nodes are matched by
 * their segment's text and their parent, never by hash alone. */
#define NODES_MAX 512
typedef struct node {
  uint32_t parent; /* index + 1 of the node one segment shorter, 0 at the top */
  uint32_t gen;    /* val is this load's when gen == the document's gen */
  uint64_t nh;     /* name_hash of the segment */
  size_t len;
  char seg[MEMO_TEXT];
  jscan_val_t val; /* the original value at the path, JSCAN_NONE when absent */
  uint32_t filled; /* == the document's gen: every child node's val is this load's */
  /* The edit evdoc_set_plain_p made last at the path, when edit_gen is the document's
   * gen: a read (evdoc_get_p) takes its value while it is live, without the search of
   * the edits (the enriched timestamp the collector reads back: 120 instructions less,
   * for about 12 more in each of an event's four plain edits). Only there: noted by
   * every edit, it cost the other edits more than it saved (+21 per event). */
  uint32_t edit_gen, edit;
} node_t;

evdoc_t *evdoc_new(void) { return xcalloc(1, sizeof(evdoc_t)); }

void evdoc_free(evdoc_t *d) {
  if (!d) return;
  for (size_t i = 0; i < CACHE; i++) {
    free(d->cache[i].own);
    free(d->cache[i].names);
  }
  free(d->edits);
  free(d->memo);
  for (size_t i = 0; i < d->npaths; i++) free(d->paths[i]);
  free(d->paths);
  free(d->nodes);
  buf_free(&d->arena);
  buf_free(&d->scratch);
  jscan_tape_free(&d->tape);
  free(d);
}

/* ---- object index ---- */

static inline uint64_t name_hash(const char *s, size_t n);

/* Hash every member's decoded name of the object x indexes. */
static void hash_names(indexed_t *x) {
  if ((size_t)x->count > x->names_cap) {
    x->names_cap = (size_t)x->count > EVDOC_MAX_MEMBERS ? (size_t)x->count : EVDOC_MAX_MEMBERS;
    x->names = xrealloc(x->names, x->names_cap * sizeof *x->names);
  }
  x->hashed = 1;
  /* In locals: a store to names may alias count (long and uint64_t may), which would be
   * read again for every member. */
  const long count = x->count;
  const jscan_member_t *members = x->members;
  uint64_t *names = x->names;
  for (long i = 0; i < count; i++) {
    const jscan_member_t *m = &members[i];
    if (!m->key_escaped) {
      names[i] = name_hash(m->key, m->keylen);
    } else {
      char dec[256];
      jscan_val_t kv = {JSCAN_STRING, m->key, m->keylen, 1, 0};
      long k = m->keylen < sizeof dec ? jscan_string(&kv, dec, sizeof dec) : -1;
      names[i] = k >= 0 ? name_hash(dec, (size_t)k) : name_hash(m->key, m->keylen);
    }
  }
}

/* Index the object at p[0..n), whose members are members[0..count_or_neg), into x. */
static void fill_index(indexed_t *x, const char *p, size_t n, const jscan_member_t *members,
                       long count_or_neg) {
  x->p = p;
  x->n = n;
  x->members = members;
  x->count = count_or_neg < 0 ? 0 : count_or_neg;
  hash_names(x);
}

/* Put the objects a validating walk recorded, o[0..n), in the cache after the ones there
 * (as many as fit; the rest are indexed when read). Their names are hashed on first use:
 * most are never read (properties). */
static void adopt(evdoc_t *d, const jscan_obj_t *o, size_t n) {
  for (size_t i = 0; i < n && d->ncache < CACHE; i++) {
    if (!o[i].members) continue;
    indexed_t *x = &d->cache[d->ncache++];
    x->p = o[i].p;
    x->n = o[i].n;
    x->members = o[i].members;
    x->count = (long)o[i].count;
    x->hashed = 0;
  }
}

static indexed_t *index_of(evdoc_t *d, const jscan_val_t *obj) {
  if (obj->type != JSCAN_OBJECT || !obj->p) return NULL;
  for (size_t i = 0; i < d->ncache; i++)
    if (d->cache[i].p == obj->p && d->cache[i].n == obj->n) {
      if (!d->cache[i].hashed) hash_names(&d->cache[i]);
      return &d->cache[i];
    }
  /* Full: replace round-robin, never the root (slot 0). */
  indexed_t *x;
  if (d->ncache < CACHE) {
    x = &d->cache[d->ncache++];
  } else {
    x = &d->cache[1 + d->next_evict++ % (CACHE - 1)];
  }
  /* Validated at load: index without checking again. A nested object may have any
   * number of members (its bytes bound them), so the arrays grow until they fit: an
   * object that is rewritten must never lose a member. */
  long n;
  while ((n = jscan_members_trusted(obj->p, obj->n, x->own, x->cap)) == -2 || !x->own) {
    x->cap = x->cap ? x->cap * 2 : EVDOC_MAX_MEMBERS;
    x->own = xrealloc(x->own, x->cap * sizeof *x->own);
  }
  fill_index(x, obj->p, obj->n, x->own, n);
  return x;
}

/* Do a and b share their first w bytes and their last w bytes (w <= 8, w <= n)? */
static inline int same_ends(const char *a, const char *b, size_t n, size_t w) {
  uint64_t a0 = 0, a1 = 0, b0 = 0, b1 = 0;
  memcpy(&a0, a, w);
  memcpy(&b0, b, w);
  memcpy(&a1, a + n - w, w);
  memcpy(&b1, b + n - w, w);
  return a0 == b0 && a1 == b1;
}

/* a[0..n) == b[0..n), for member names: most are 4 to 16 bytes, compared here in two
 * overlapping words each instead of a call to memcmp (once per read of a new path). */
static inline int same_bytes(const char *a, const char *b, size_t n) {
  if (n >= 8 && n <= 16) return same_ends(a, b, n, 8);
  if (n >= 4 && n < 8) return same_ends(a, b, n, 4);
  return memcmp(a, b, n) == 0;
}

/* The member called name (n bytes, name_hash nh) of the object indexed in x (NULL: no
 * object). The index holds every member's name hash, so only a member whose hash matches
 * is compared byte by byte. */
static const jscan_member_t *member_in(const indexed_t *x, const char *name, size_t n,
                                       uint64_t nh) {
  if (!x) return NULL;
  for (long i = 0; i < x->count; i++) {
    if (x->names[i] != nh) continue;
    const jscan_member_t *m = &x->members[i];
    if (!m->key_escaped) {
      if (m->keylen == n && same_bytes(m->key, name, n)) return m;
    } else if (jscan_key_is(m, name, n)) {
      return m;
    }
  }
  return NULL;
}

static const jscan_member_t *member(evdoc_t *d, const jscan_val_t *obj, const char *name, size_t n,
                                    uint64_t nh) {
  return member_in(index_of(d, obj), name, n, nh);
}

/* How load finds the root's members. */
typedef enum {
  L_CHECK,   /* validate (recording the nested objects in d->tape) */
  L_ELEMS,   /* validate, recording an array member's elements (evdoc_load_elems) */
  L_TRUSTED, /* index bytes validated before */
  L_INDEXED  /* take them from the objects a validating walk recorded */
} load_how_t;

typedef struct load_src {
  load_how_t how;
  jscan_elems_t *elems;   /* L_ELEMS */
  const jscan_obj_t *obj; /* L_INDEXED: the document first, then the objects inside it */
  size_t nobj;
} load_src_t;

static int load(evdoc_t *d, const char *json, size_t len, const load_src_t *src);

int evdoc_load(evdoc_t *d, const char *json, size_t len) {
  return load(d, json, len, &(load_src_t){L_CHECK, NULL, NULL, 0});
}

int evdoc_load_trusted(evdoc_t *d, const char *json, size_t len) {
  return load(d, json, len, &(load_src_t){L_TRUSTED, NULL, NULL, 0});
}

int evdoc_load_elems(evdoc_t *d, const char *json, size_t len, jscan_elems_t *elems) {
  return load(d, json, len, &(load_src_t){L_ELEMS, elems, NULL, 0});
}

int evdoc_load_indexed(evdoc_t *d, const char *json, size_t len, const jscan_obj_t *obj,
                       size_t nobj) {
  /* The document's own members must have been kept, or it is indexed as usual. */
  load_how_t how = nobj && obj[0].members && obj[0].p == json && obj[0].n == len ? L_INDEXED
                                                                                : L_TRUSTED;
  return load(d, json, len, &(load_src_t){how, NULL, obj, nobj});
}

static int load(evdoc_t *d, const char *json, size_t len, const load_src_t *src) {
  d->json = json;
  d->len = len;
  if (++d->gen == 0) { /* wrapped: no node may look current */
    for (size_t i = 0; i < d->nnodes; i++)
      d->nodes[i].gen = d->nodes[i].filled = d->nodes[i].edit_gen = 0;
    d->root_filled = 0;
    d->gen = 1;
  }
  d->nedits = 0;
  d->seg_room = 0;
  d->ncache = 0;
  memset(d->mask, 0, sizeof d->mask);
  memset(d->endmask, 0, sizeof d->endmask);
  buf_reset(&d->arena);
  jscan_val_t root = {JSCAN_OBJECT, json, len, 0, 0};
  /* Trim whitespace so the root span is exactly the object. */
  while (root.n && (root.p[0] == ' ' || root.p[0] == '\n' || root.p[0] == '\r' || root.p[0] == '\t'))
    root.p++, root.n--;
  while (root.n && (root.p[root.n - 1] == ' ' || root.p[root.n - 1] == '\n' ||
                    root.p[root.n - 1] == '\r' || root.p[root.n - 1] == '\t'))
    root.n--;
  if (!root.n) return -1;
  if (root.p[0] != '{') {
    /* Something that starts like another JSON value gets its own answer. */
    char c = root.p[0];
    return (c == '[' || c == '"' || c == 't' || c == 'f' || c == 'n' || c == '-' ||
            (c >= '0' && c <= '9'))
               ? -2
               : -1;
  }
  d->root = root;
  indexed_t *r = &d->cache[0];
  if (r->cap < EVDOC_MAX_MEMBERS) {
    r->cap = EVDOC_MAX_MEMBERS;
    r->own = xrealloc(r->own, r->cap * sizeof *r->own);
  }
  jscan_member_t *out = r->own;
  const jscan_member_t *m = out;
  long n;
  switch (src->how) {
    case L_INDEXED:
      m = src->obj[0].members;
      n = src->obj[0].count > EVDOC_MAX_MEMBERS ? -2 : (long)src->obj[0].count;
      break;
    case L_TRUSTED: n = jscan_members_trusted(root.p, root.n, out, EVDOC_MAX_MEMBERS); break;
    case L_ELEMS: n = jscan_members_elems(root.p, root.n, out, EVDOC_MAX_MEMBERS, src->elems); break;
    default: n = jscan_members_tape(root.p, root.n, out, EVDOC_MAX_MEMBERS, &d->tape); break;
  }
  if (n == -2) return -3;
  if (n < 0) return -1;
  fill_index(r, root.p, root.n, m, n);
  d->ncache = 1;
  if (src->how == L_INDEXED) adopt(d, src->obj + 1, src->nobj - 1);
  if (src->how == L_CHECK) adopt(d, d->tape.obj, d->tape.nobj);
  /* Duplicate names: two members whose names (hashed by fill_index) fall in different
   * slots of a 512-bit table differ, so the pairs are compared only when two share one. */
  uint64_t seen[8] = {0}, clash = 0;
  for (long i = 0; i < n; i++) {
    uint64_t slot = r->names[i] >> 55, bit = 1ull << (slot & 63);
    clash |= seen[slot >> 6] & bit;
    seen[slot >> 6] |= bit;
  }
  for (long i = 0; clash && i < n; i++)
    for (long j = i + 1; j < n; j++)
      if (m[i].keylen == m[j].keylen && !m[i].key_escaped && !m[j].key_escaped &&
          memcmp(m[i].key, m[j].key, m[i].keylen) == 0)
        return -3;
  return 0;
}

/* ---- paths ---- */

static size_t split(const char *path, const char *segs[EVDOC_MAX_DEPTH], char store[256]) {
  size_t n = 0, len = strlen(path);
  if (len >= 256) return 0;
  memcpy(store, path, len + 1);
  for (char *s = store; n < EVDOC_MAX_DEPTH;) {
    segs[n++] = s;
    char *dot = strchr(s, '.');
    if (!dot) break;
    *dot = 0;
    s = dot + 1;
  }
  return n;
}

static const char *seg_of(const evdoc_t *d, const edit_t *e, size_t i) {
  return e->segp ? e->segp[i] : d->arena.data + e->seg_off[i];
}

static int seg_eq(const evdoc_t *d, const edit_t *e, size_t i, const char *s, size_t n) {
  return e->seg_len[i] == n && memcmp(seg_of(d, e, i), s, n) == 0;
}

/* Paths are compared by the hashes of their prefixes: a hash of each segment's bytes and
 * its length, chained from one segment to the next. Every lookup, edit and written
 * member compares paths against every edit, so this must be a couple of instructions;
 * a false match needs a 64-bit collision between two field names of one event (the
 * hash is not keyed: a client that crafts two such names mixes up its own event's
 * fields, nothing else). Every
 * member name of every indexed object is hashed, so the bytes are taken eight at a time
 * (a byte-at-a-time FNV-1a cost four instructions a byte): words, then the last up to
 * eight bytes as two overlapping halves, or three bytes that cover a shorter rest. */
static uint64_t mix(uint64_t h, uint64_t w) {
  h = (h ^ w) * 0xff51afd7ed558ccdull;
  return h ^ (h >> 32);
}

static inline uint64_t name_hash(const char *s, size_t n) {
  /* The length spread over all 64 bits: XORed into the low byte alone, it cancelled
   * against the first byte, and "b" and "ab", or "ip" and "hpp", hashed the same. */
  uint64_t h = 0xcbf29ce484222325ull ^ (n * 0x9E3779B97F4A7C15ull), w;
  size_t k = n;
  for (; k > 8; k -= 8, s += 8) {
    memcpy(&w, s, 8);
    h = mix(h, w);
  }
  if (k >= 4) {
    uint32_t a, b;
    memcpy(&a, s, 4);
    memcpy(&b, s + k - 4, 4);
    w = (uint64_t)a << 32 | b;
  } else {
    w = k ? (uint64_t)(unsigned char)s[0] | (uint64_t)(unsigned char)s[k / 2] << 8 |
                (uint64_t)(unsigned char)s[k - 1] << 16
          : 0;
  }
  h = mix(h, w) * 0xc4ceb9fe1a85ec53ull;
  return h ^ (h >> 29);
}

/* The hash of path parent.name from the parent's hash and the name's own hash, so a
 * member's name is hashed once (when its object is indexed) whatever its depth. */
static uint64_t chain(uint64_t parent, uint64_t name) {
  return (parent * 0x9E3779B97F4A7C15ull) ^ name ^ (name >> 29);
}
#define ROOT_HASH 0x84222325cbf29ce4ull

/* OUT: h[i] the hash of the first i+1 segments, nh[i] (when not NULL) segment i's name_hash. */
static void path_hashes(const char *const *segs, const size_t *lens, size_t n, uint64_t *h,
                        uint64_t *nh) {
  for (size_t i = 0; i < n; i++) {
    uint64_t name = name_hash(segs[i], lens[i]);
    if (nh) nh[i] = name;
    h[i] = chain(i ? h[i - 1] : ROOT_HASH, name);
  }
}

static uint64_t bit_of(uint64_t h) { return 1ull << (h >> 58); }

/* Does edit e's path start with the n-segment path whose prefix hashes are qh? */
static int edit_under(const evdoc_t *d, const edit_t *e, const uint64_t *qh, size_t n) {
  (void)d;
  return e->nsegs >= n && (n == 0 || e->phash[n - 1] == qh[n - 1]);
}

static jscan_val_t edit_val(const evdoc_t *d, const edit_t *e) {
  jscan_val_t v = {JSCAN_NONE, d->arena.data + e->val_off, e->val_len, 0, 0};
  switch (v.p[0]) {
    case '{': v.type = JSCAN_OBJECT; break;
    case '[': v.type = JSCAN_ARRAY; break;
    case '"':
      v.type = JSCAN_STRING;
      v.p++;
      v.n -= 2;
      v.escaped = memchr(v.p, '\\', v.n) != NULL;
      break;
    case 't': v.type = JSCAN_TRUE; break;
    case 'f': v.type = JSCAN_FALSE; break;
    case 'n': v.type = JSCAN_NULL; break;
    default: {
      v.type = JSCAN_NUMBER;
      char tmp[64];
      size_t k = v.n < 63 ? v.n : 63;
      memcpy(tmp, v.p, k);
      tmp[k] = 0;
      v.num = strtod(tmp, NULL);
    }
  }
  return v;
}

/* nhs: the segments' name hashes, or NULL to hash them here. */
static jscan_val_t descend(evdoc_t *d, jscan_val_t at, const char *const *segs, const size_t *lens,
                           const uint64_t *nhs, size_t n) {
  for (size_t i = 0; i < n; i++) {
    const jscan_member_t *m =
        member(d, &at, segs[i], lens[i], nhs ? nhs[i] : name_hash(segs[i], lens[i]));
    if (!m) return (jscan_val_t){JSCAN_NONE, NULL, 0, 0, 0};
    at = m->val;
  }
  return at;
}

/* Segments are (pointer, length) pairs, not necessarily NUL-terminated. */
static jscan_val_t get_hashed(evdoc_t *d, const char *const *segs, const size_t *lens,
                              const uint64_t *qh, const uint64_t *nhs, size_t nsegs, uint32_t node);

static jscan_val_t get_path(evdoc_t *d, const char *const *segs, const size_t *lens, size_t nsegs) {
  uint64_t qh[EVDOC_MAX_DEPTH], nh[EVDOC_MAX_DEPTH];
  path_hashes(segs, lens, nsegs, qh, nh);
  return get_hashed(d, segs, lens, qh, nh, nsegs, 0);
}

/* Might an edit lie at, above or below the path with prefix hashes qh? One at depth j <= n
 * has set endmask[j-1]'s bit of qh[j-1]; one at or below the path has set mask[n-1]'s bit
 * of qh[n-1]. No bit: no edit concerns the path (most reads, before and during enrichment). */
static inline int edits_near(const evdoc_t *d, const uint64_t *qh, size_t n) {
  if (d->mask[n - 1] & bit_of(qh[n - 1])) return 1;
  for (size_t j = 0; j + 1 < n; j++)
    if (d->endmask[j] & bit_of(qh[j])) return 1;
  return 0;
}

/* Might an edit lie at the path with prefix hashes qh, or above it? One at depth j <= n
 * has set endmask[j-1]'s bit of qh[j-1]. */
static inline int edits_at_or_above(const evdoc_t *d, const uint64_t *qh, size_t n) {
  for (size_t j = 0; j < n; j++)
    if (d->endmask[j] & bit_of(qh[j])) return 1;
  return 0;
}

/* The kid_slot where the search for the child named nh of node parent starts. */
static inline size_t kid_at(uint32_t parent, uint64_t nh) {
  return (size_t)((nh ^ (parent * 0x9E3779B97F4A7C15ull)) >> 54) & (KID_SLOTS - 1);
}

/* Give every child node of node parent (0: the root) that names a member of x (its
 * object's index, NULL when it is not an object) that member's value: the first member
 * of the name, as a search finds it. */
static void fill_kids(evdoc_t *d, uint32_t parent, const indexed_t *x) {
  for (long i = 0; x && i < x->count; i++) {
    uint64_t nh = x->names[i];
    for (size_t at = kid_at(parent, nh); d->kid_slot[at]; at = (at + 1) & (KID_SLOTS - 1)) {
      node_t *nd = &d->nodes[d->kid_slot[at] - 1];
      if (nd->nh != nh || nd->parent != parent || nd->gen == d->gen) continue;
      const jscan_member_t *m = &x->members[i];
      if (m->key_escaped ? !jscan_key_is(m, nd->seg, nd->len)
                         : m->keylen != nd->len || !same_bytes(m->key, nd->seg, nd->len))
        continue;
      nd->val = m->val;
      if (nd->val.type == JSCAN_NUMBER) nd->val.num = jscan_num(&nd->val);
      nd->gen = d->gen;
      break; /* nodes are unique by parent and name: no other is this member's */
    }
  }
}

static const jscan_val_t absent = {JSCAN_NONE, NULL, 0, 0, 0};

static const jscan_val_t *resolve_fill(evdoc_t *d, uint32_t k);

/* The original value at node k (index + 1), read once per load (see node_t). Returned by
 * address (the node's, or a constant's): valid until the next load. A node its parent's
 * fill did not give a value is absent: every read of a member the event lacks
 * (context.campaign, context.location...) ends here, without a call. */
static inline const jscan_val_t *resolve_at(evdoc_t *d, uint32_t k) {
  const node_t *nd = &d->nodes[k - 1];
  if (nd->gen == d->gen) return &nd->val;
  uint32_t parent = nd->parent;
  if ((parent ? d->nodes[parent - 1].filled : d->root_filled) == d->gen) return &absent;
  return resolve_fill(d, k);
}

/* resolve_at for a node whose parent's children are not filled in this load yet. */
static __attribute__((noinline)) const jscan_val_t *resolve_fill(evdoc_t *d, uint32_t k) {
  uint32_t parent = d->nodes[k - 1].parent;
  /* The root was indexed at load; another object is indexed (or found) here. */
  const indexed_t *x = !parent ? (d->ncache ? &d->cache[0] : index_of(d, &d->root))
                               : index_of(d, resolve_at(d, parent));
  fill_kids(d, parent, x);
  *(parent ? &d->nodes[parent - 1].filled : &d->root_filled) = d->gen;
  const node_t *nd = &d->nodes[k - 1];
  return nd->gen == d->gen ? &nd->val : &absent;
}

static jscan_val_t resolve(evdoc_t *d, uint32_t k) { return *resolve_at(d, k); }

/* The original value at a path from the root: through its node when it has one. */
static jscan_val_t original(evdoc_t *d, const char *const *segs, const size_t *lens,
                            const uint64_t *nhs, size_t nsegs, uint32_t node) {
  if (node) return resolve(d, node);
  jscan_val_t v = descend(d, d->root, segs, lens, nhs, nsegs);
  if (v.type == JSCAN_NUMBER) v.num = jscan_num(&v);
  return v;
}

/* node: the path's node, or 0 to search the original bytes. */
static jscan_val_t get_hashed(evdoc_t *d, const char *const *segs, const size_t *lens,
                              const uint64_t *qh, const uint64_t *nhs, size_t nsegs, uint32_t node) {
  if (!d->nedits || !edits_near(d, qh, nsegs)) return original(d, segs, lens, nhs, nsegs, node);
  /* An edit at or above the path has set endmask's bit of its prefix at its depth. Reads
   * near edits are mostly of a sibling or a parent of an edited member (context after
   * context.ip was set): with no such bit, only edits below can matter. */
  int above = edits_at_or_above(d, qh, nsegs);
  for (size_t i = d->nedits; above && i-- > 0;) {
    const edit_t *e = &d->edits[i];
    if (e->op == OP_NOP || e->nsegs > nsegs || !edit_under(d, e, qh, e->nsegs)) continue;
    /* The latest edit at or above the path decides: a deleted ancestor hides the
     * original, a set one holds the value. */
    if (e->op == OP_DEL) return (jscan_val_t){JSCAN_NONE, NULL, 0, 0, 0};
    jscan_val_t v = edit_val(d, e);
    if (e->nsegs < nsegs)
      v = descend(d, v, segs + e->nsegs, lens + e->nsegs, nhs + e->nsegs, nsegs - e->nsegs);
    if (v.type == JSCAN_NUMBER) v.num = jscan_num(&v);
    return v;
  }
  jscan_val_t v = original(d, segs, lens, nhs, nsegs, node);
  if (v.type != JSCAN_OBJECT) {
    /* Members set below a path make it an object even before it is written. */
    for (size_t i = 0; i < d->nedits; i++) {
      const edit_t *e = &d->edits[i];
      if (e->op == OP_SET && e->nsegs > nsegs && edit_under(d, e, qh, nsegs))
        return (jscan_val_t){JSCAN_OBJECT, NULL, 0, 0, 0};
    }
  }
  return v;
}

jscan_val_t evdoc_get_v(evdoc_t *d, const char *const *segs, size_t nsegs) {
  size_t lens[EVDOC_MAX_DEPTH];
  if (!nsegs || nsegs > EVDOC_MAX_DEPTH) return (jscan_val_t){JSCAN_NONE, NULL, 0, 0, 0};
  for (size_t i = 0; i < nsegs; i++) lens[i] = strlen(segs[i]);
  return get_path(d, segs, lens, nsegs);
}

/* Bit i set when segment i has a byte that JSON must escape: the writer copies the
 * others as they are (a new member's name is written once per event). */
static uint8_t escape_mask(const char *const *segs, const size_t *lens, size_t n) {
  uint8_t mask = 0;
  for (size_t i = 0; i < n; i++)
    if (plain_end(segs[i], segs[i] + lens[i]) != segs[i] + lens[i]) mask |= (uint8_t)(1u << i);
  return mask;
}

/* Parse and hash path into m. Returns m, or NULL when the path is too long to keep or
 * malformed (then the caller parses it itself). */
static uint32_t intern(evdoc_t *d, const memo_t *m);

static const memo_t *memo_fill(evdoc_t *d, memo_t *m, const char *path) {
  size_t len = strlen(path);
  if (len >= MEMO_TEXT) return NULL;
  memcpy(m->text, path, len + 1);
  m->used = len + 1;
  m->n = 0;
  for (const char *p = m->text;;) {
    const char *dot = strchr(p, '.');
    size_t l = dot ? (size_t)(dot - p) : strlen(p);
    if (!l || m->n == EVDOC_MAX_DEPTH) {
      m->n = 0; /* malformed: remembered as such */
      return NULL;
    }
    m->segs[m->n] = p;
    m->lens[m->n++] = l;
    if (!dot) break;
    p = dot + 1;
  }
  path_hashes(m->segs, m->lens, m->n, m->h, m->nh);
  m->escape = escape_mask(m->segs, m->lens, m->n);
  m->node = intern(d, m);
  return m;
}

/* The node of m's whole path, made with those of its prefixes when new; 0 once
 * NODES_MAX nodes exist (paths built at run time could otherwise add nodes forever:
 * reads of later paths just search the bytes). Runs when a memo is filled, not per read. */
static uint32_t intern(evdoc_t *d, const memo_t *m) {
  uint32_t parent = 0;
  for (size_t i = 0; i < m->n; i++) {
    uint32_t k = 0;
    for (size_t j = 0; j < d->nnodes && !k; j++) {
      const node_t *nd = &d->nodes[j];
      if (nd->parent == parent && nd->nh == m->nh[i] && nd->len == m->lens[i] &&
          memcmp(nd->seg, m->segs[i], nd->len) == 0)
        k = (uint32_t)j + 1;
    }
    if (!k) {
      if (d->nnodes == NODES_MAX) return 0;
      if (d->nnodes == d->cap_nodes) {
        d->cap_nodes = d->cap_nodes ? d->cap_nodes * 2 : 32;
        d->nodes = xrealloc(d->nodes, d->cap_nodes * sizeof *d->nodes);
      }
      node_t *nd = &d->nodes[d->nnodes++];
      memset(nd, 0, sizeof *nd); /* gen 0: never current */
      nd->parent = parent;
      nd->nh = m->nh[i];
      nd->len = m->lens[i]; /* < MEMO_TEXT: a segment of the memo's text */
      memcpy(nd->seg, m->segs[i], nd->len);
      k = (uint32_t)d->nnodes;
      size_t at = kid_at(parent, nd->nh);
      while (d->kid_slot[at]) at = (at + 1) & (KID_SLOTS - 1);
      d->kid_slot[at] = (uint16_t)k;
      /* Its siblings may be filled already in this load: they are filled again (only
       * the ones not yet current, this one) on its first read. */
      if (parent) d->nodes[parent - 1].filled = 0;
      else d->root_filled = 0;
    }
    parent = k;
  }
  return parent;
}

/* The bucket of a path of len bytes: its length with its first and last (up to) eight
 * bytes, mixed. Paths that differ only in the middle share a bucket, which is fine:
 * the ways tell them apart by text. */
size_t evdoc_memo_bucket(const char *path, size_t len) {
  uint64_t head = 0, tail = 0;
  memcpy(&head, path, len < 8 ? len : 8);
  if (len > 8) memcpy(&tail, path + len - 8, 8);
  uint64_t h = (head ^ (tail * 0xFF51AFD7ED558CCDull) ^ len) * 0x9E3779B97F4A7C15ull;
  return (size_t)(h >> 58); /* MEMO / MEMO_WAYS = 64 buckets */
}

/* The memo of a dotted path (parsed and hashed), or NULL when the path is too long to
 * keep or malformed (then the caller parses it itself). */
static const memo_t *memo_of(evdoc_t *d, const char *path) {
  if (!d->memo) d->memo = xcalloc(MEMO, sizeof *d->memo);
  size_t len = strlen(path);
  if (len >= MEMO_TEXT) return NULL;
  /* MEMO_WAYS entries per bucket: with one, two hot paths sharing a bucket evicted each
   * other on every event. */
  memo_t *set = &d->memo[evdoc_memo_bucket(path, len) * MEMO_WAYS];
  memo_t *m = NULL;
  for (size_t w = 0; w < MEMO_WAYS; w++) {
    if (set[w].used == len + 1 && memcmp(set[w].text, path, len) == 0)
      return set[w].n ? &set[w] : NULL;
    if (!m && !set[w].used) m = &set[w];
  }
  if (!m) m = &set[d->memo_evict++ % MEMO_WAYS];
  return memo_fill(d, m, path);
}

/* Ids of evdoc_path_t objects, handed out on first use (from 1): an evdoc keeps each
 * path's parse in its own array at that index, so no text is compared on a read. */
static _Atomic uint32_t path_ids;

/* path_memo's first use of p in d: an id for p, and p parsed into a memo of d's. */
static __attribute__((noinline)) const memo_t *path_memo_new(evdoc_t *d, evdoc_path_t *p) {
  uint32_t id = atomic_load_explicit(&p->id, memory_order_relaxed);
  if (!id) {
    uint32_t fresh = atomic_fetch_add(&path_ids, 1) + 1, none = 0;
    id = atomic_compare_exchange_strong(&p->id, &none, fresh) ? fresh : none;
  }
  if (id >= d->npaths) {
    size_t n = (size_t)id * 2;
    d->paths = xrealloc(d->paths, n * sizeof *d->paths);
    memset(d->paths + d->npaths, 0, (n - d->npaths) * sizeof *d->paths);
    d->npaths = n;
  }
  memo_t *m = d->paths[id]; /* allocated one by one: a memo points into itself */
  if (m) return m->n ? m : NULL;
  m = d->paths[id] = xcalloc(1, sizeof *m); /* n stays 0 if memo_fill refuses the path */
  m->stable = 1;
  return memo_fill(d, m, p->text);
}

/* p's memo in d, or NULL when the path is malformed or too long to keep. Every read and
 * edit by a constant path starts here: the usual case (p used before) is inline. */
static inline const memo_t *path_memo(evdoc_t *d, evdoc_path_t *p) {
  uint32_t id = atomic_load_explicit(&p->id, memory_order_relaxed);
  const memo_t *m = id && id < d->npaths ? d->paths[id] : NULL;
  if (m) return m->n ? m : NULL;
  return path_memo_new(d, p);
}

/* Read through m, or parse path here when m is NULL. */
static jscan_val_t get_memo(evdoc_t *d, const memo_t *m, const char *path) {
  if (m) return get_hashed(d, m->segs, m->lens, m->h, m->nh, m->n, m->node);
  const char *segs[EVDOC_MAX_DEPTH];
  char store[256];
  size_t lens[EVDOC_MAX_DEPTH], n = split(path, segs, store);
  if (!n) return (jscan_val_t){JSCAN_NONE, NULL, 0, 0, 0};
  for (size_t i = 0; i < n; i++) lens[i] = strlen(segs[i]);
  return get_path(d, segs, lens, n);
}

jscan_val_t evdoc_get(evdoc_t *d, const char *path) { return get_memo(d, memo_of(d, path), path); }

jscan_val_t evdoc_get_p(evdoc_t *d, evdoc_path_t *p) {
  /* Most reads are of a path with no edit near it: its node's value, read once per load,
   * without the general lookup's calls. */
  const memo_t *m = path_memo(d, p);
  if (m && m->node) {
    if (!d->nedits || !edits_near(d, m->h, m->n)) return *resolve_at(d, m->node);
    /* The path's own edit, still live, is what get_hashed would find: an edit at or above
     * the path made after it would have retired it, and edits below do not change a read.
     * (edit_val gives a number's value as get_hashed's jscan_num does.) */
    const node_t *nd = &d->nodes[m->node - 1];
    if (nd->edit_gen == d->gen && d->edits[nd->edit].op == OP_SET)
      return edit_val(d, &d->edits[nd->edit]);
    /* Edits only below an object (context once context.ip is set: every step that checks
     * context reads it so) leave its original value, as get_hashed would find. */
    if (!edits_at_or_above(d, m->h, m->n)) {
      const jscan_val_t *v = resolve_at(d, m->node);
      if (v->type == JSCAN_OBJECT) return *v;
    }
  }
  return get_memo(d, m, p->text);
}

void evdoc_get_top(evdoc_t *d, const char *const *names, size_t n, jscan_val_t *out) {
  if (n > EVDOC_MAX_MEMBERS) n = EVDOC_MAX_MEMBERS;
  if (d->top_names != names || d->top_n != n) {
    for (size_t i = 0; i < n; i++) {
      const memo_t *m = memo_of(d, names[i]);
      int top = m && m->n == 1 && m->node;
      d->top_node[i] = top ? m->node : 0;
      d->top_h[i] = top ? m->h[0] : 0;
    }
    d->top_names = names;
    d->top_n = n;
  }
  /* The root's nodes are filled in one walk of its members, as the first read by any
   * path at the top fills them: later reads of these names (messageId, timestamp,
   * userId...) take their values from there. A walk of its own with a table of the
   * names, followed by that fill at the first later read, cost 22 instructions more per
   * event. */
  memset(out, 0, n * sizeof *out); /* JSCAN_NONE: most names are absent */
  for (size_t i = 0; i < n; i++) {
    uint32_t k = d->top_node[i];
    /* A dotted or unkept name, or (once edited: validation comes first) one with edits at
     * or below it, is read by itself. */
    if (!k || (d->nedits && edits_near(d, &d->top_h[i], 1))) {
      out[i] = evdoc_get(d, names[i]);
      continue;
    }
    if (d->root_filled != d->gen) resolve_fill(d, k);
    const node_t *nd = &d->nodes[k - 1];
    if (nd->gen == d->gen) out[i] = nd->val;
  }
}

static const char *str_of(jscan_val_t v, char *buf, size_t cap) {
  if (v.type != JSCAN_STRING || jscan_string(&v, buf, cap) < 0) return NULL;
  return buf;
}

const char *evdoc_str(evdoc_t *d, const char *path, char *buf, size_t cap) {
  return str_of(evdoc_get(d, path), buf, cap);
}

const char *evdoc_str_p(evdoc_t *d, evdoc_path_t *p, char *buf, size_t cap) {
  return str_of(evdoc_get_p(d, p), buf, cap);
}

long evdoc_members(evdoc_t *d, const char *path, const jscan_member_t **out) {
  jscan_val_t v = d->root;
  if (path && *path) {
    const char *segs[EVDOC_MAX_DEPTH];
    char store[256];
    size_t lens[EVDOC_MAX_DEPTH], n = split(path, segs, store);
    for (size_t i = 0; i < n; i++) lens[i] = strlen(segs[i]);
    v = descend(d, d->root, segs, lens, NULL, n);
  }
  indexed_t *x = index_of(d, &v);
  if (!x) return -1;
  *out = x->members;
  return x->count;
}

/* ---- edits ---- */

/* escape: escape_mask of the segments, or -1 to compute it here. stable: segs outlive
 * the document's edits (a constant path's memo), so they are not copied. */
static void add_edit_hashed(evdoc_t *d, int op, const char *const *segs, const size_t *lens,
                            const uint64_t *qh, size_t nsegs, int escape, int stable,
                            const char *val, size_t vlen);

static void add_edit(evdoc_t *d, int op, const char *const *segs, size_t nsegs, const char *val,
                     size_t vlen) {
  if (!nsegs || nsegs > EVDOC_MAX_DEPTH) return;
  size_t lens[EVDOC_MAX_DEPTH];
  uint64_t qh[EVDOC_MAX_DEPTH];
  for (size_t i = 0; i < nsegs; i++) lens[i] = strlen(segs[i]);
  path_hashes(segs, lens, nsegs, qh, NULL);
  add_edit_hashed(d, op, segs, lens, qh, nsegs, -1, 0, val, vlen);
}

/* Edit at a dotted path through its memo m, or parsed here when m is NULL. */
static void add_edit_memo(evdoc_t *d, int op, const memo_t *m, const char *path, const char *val,
                          size_t vlen) {
  if (m) {
    add_edit_hashed(d, op, m->segs, m->lens, m->h, m->n, m->escape, m->stable, val, vlen);
    return;
  }
  const char *segs[EVDOC_MAX_DEPTH];
  char store[256];
  size_t k = split(path, segs, store);
  add_edit(d, op, segs, k, val, vlen);
}

static void store_segs(evdoc_t *d, edit_t *e, const char *const *segs, const size_t *lens,
                       const uint64_t *qh, size_t nsegs);

/* The edit add_edit_hashed makes, its segments stored and its value still empty: the
 * caller appends the value's text to the arena and sets val_len. Inline: a step's edit
 * is a few dozen instructions, and the call with its eight arguments cost a fifth more. */
static inline __attribute__((always_inline)) edit_t *
begin_edit(evdoc_t *d, int op, const char *const *segs, const size_t *lens, const uint64_t *qh,
           size_t nsegs, int escape, int stable) {
  /* Retire earlier edits at or below the path. Each set its prefix hash's bit in
   * mask[nsegs - 1] when it was made: without that bit there is none (the usual case). */
  if (d->mask[nsegs - 1] & bit_of(qh[nsegs - 1]))
    for (size_t i = 0; i < d->nedits; i++)
      if (d->edits[i].op != OP_NOP && edit_under(d, &d->edits[i], qh, nsegs))
        d->edits[i].op = OP_NOP;
  /* Live edits at a proper prefix of the path now have one below them (the writer then
   * need not search for it). An edit at depth j has set endmask[j-1]'s bit of its path:
   * without that bit there is none. A mark stays right while its edit is live: what
   * retires the edit below either retires this one too or is below it as well. */
  for (size_t j = 0; j + 1 < nsegs; j++)
    if (d->endmask[j] & bit_of(qh[j]))
      for (size_t i = 0; i < d->nedits; i++) {
        edit_t *a = &d->edits[i];
        if (a->op != OP_NOP && a->nsegs == j + 1 && a->phash[j] == qh[j]) a->below = 1;
      }
  if (d->nedits == d->cap_edits) {
    d->cap_edits = d->cap_edits ? d->cap_edits * 2 : 32;
    d->edits = xrealloc(d->edits, d->cap_edits * sizeof *d->edits);
  }
  edit_t *e = &d->edits[d->nedits++];
  e->op = (uint8_t)op;
  e->nsegs = (uint8_t)nsegs;
  e->below = 0;
  e->escape = escape >= 0 ? (uint8_t)escape : escape_mask(segs, lens, nsegs);
  e->segp = stable ? segs : NULL;
  if (stable) {
    size_t room = 0;
    for (size_t i = 0; i < nsegs; i++) {
      e->phash[i] = qh[i];
      d->mask[i] |= bit_of(qh[i]);
      e->seg_len[i] = (uint16_t)lens[i]; /* < MEMO_TEXT */
      room += lens[i] + 6;
    }
    d->seg_room += room;
  } else {
    store_segs(d, e, segs, lens, qh, nsegs);
  }
  d->endmask[nsegs - 1] |= bit_of(qh[nsegs - 1]);
  e->val_off = (uint32_t)d->arena.len;
  e->val_len = 0;
  return e;
}

/* Copy an edit's segments into the arena (and note its prefix hashes). */
static void store_segs(evdoc_t *d, edit_t *e, const char *const *segs, const size_t *lens,
                       const uint64_t *qh, size_t nsegs) {
  /* Room for every segment and its NUL at once: one reservation, not two per segment. */
  size_t room = 0;
  for (size_t i = 0; i < nsegs; i++) room += (lens[i] < 65535 ? lens[i] : 65535) + 1;
  buf_reserve(&d->arena, room);
  char *w = d->arena.data + d->arena.len;
  for (size_t i = 0; i < nsegs; i++) {
    e->phash[i] = qh[i];
    d->mask[i] |= bit_of(qh[i]);
    size_t len = lens[i] < 65535 ? lens[i] : 65535;
    e->seg_off[i] = (uint32_t)(w - d->arena.data);
    e->seg_len[i] = (uint16_t)len;
    d->seg_room += len + 6;
    memcpy(w, segs[i], len);
    w[len] = 0;
    w += len + 1;
  }
  d->arena.len = (size_t)(w - d->arena.data);
}

static void add_edit_hashed(evdoc_t *d, int op, const char *const *segs, const size_t *lens,
                            const uint64_t *qh, size_t nsegs, int escape, int stable,
                            const char *val, size_t vlen) {
  edit_t *e = begin_edit(d, op, segs, lens, qh, nsegs, escape, stable);
  e->val_len = (uint32_t)vlen;
  if (vlen) buf_append(&d->arena, val, vlen);
}

void evdoc_set_raw_v(evdoc_t *d, const char *const *segs, size_t nsegs, const char *json, size_t n) {
  add_edit(d, OP_SET, segs, nsegs, json, n);
}

void evdoc_set_raw(evdoc_t *d, const char *path, const char *json, size_t n) {
  add_edit_memo(d, OP_SET, memo_of(d, path), path, json, n);
}

void evdoc_set_raw_p(evdoc_t *d, evdoc_path_t *p, const char *json, size_t n) {
  add_edit_memo(d, OP_SET, path_memo(d, p), p->text, json, n);
}

/* Append s[0..n), which needs no escaping, as a JSON string. */
static inline void put_quoted(buf_t *b, const char *s, size_t n) {
  buf_reserve(b, n + 2);
  char *w = b->data + b->len;
  w[0] = '"';
  memcpy(w + 1, s, n);
  w[n + 1] = '"';
  b->len += n + 2;
}

/* Set the dotted path (through its memo m when not NULL) to the JSON string of s. The
 * string is escaped straight into the arena: no copy through scratch. */
static void set_str_memo(evdoc_t *d, const memo_t *m, const char *path, const char *s) {
  if (!m) {
    buf_t *tmp = &d->scratch;
    buf_reset(tmp);
    buf_putc(tmp, '"');
    buf_json_escape(tmp, s, strlen(s));
    buf_putc(tmp, '"');
    add_edit_memo(d, OP_SET, NULL, path, tmp->data, tmp->len);
    return;
  }
  edit_t *e = begin_edit(d, OP_SET, m->segs, m->lens, m->h, m->n, m->escape, m->stable);
  size_t n = strlen(s);
  if (plain_end(s, s + n) == s + n) { /* most values set (times, ids, addresses): as they are */
    put_quoted(&d->arena, s, n);
  } else {
    buf_putc(&d->arena, '"');
    buf_json_escape(&d->arena, s, n);
    buf_putc(&d->arena, '"');
  }
  e->val_len = (uint32_t)(d->arena.len - e->val_off);
}

void evdoc_set_str(evdoc_t *d, const char *path, const char *s) {
  set_str_memo(d, memo_of(d, path), path, s);
}

void evdoc_set_str_p(evdoc_t *d, evdoc_path_t *p, const char *s) {
  set_str_memo(d, path_memo(d, p), p->text, s);
}

void evdoc_set_plain_p(evdoc_t *d, evdoc_path_t *p, const char *s, size_t n) {
  const memo_t *m = path_memo(d, p);
  if (!m) {
    set_str_memo(d, NULL, p->text, s);
    return;
  }
  edit_t *e = begin_edit(d, OP_SET, m->segs, m->lens, m->h, m->n, m->escape, m->stable);
  if (m->node) {
    node_t *nd = &d->nodes[m->node - 1];
    nd->edit_gen = d->gen;
    nd->edit = (uint32_t)d->nedits - 1; /* e's index */
  }
  put_quoted(&d->arena, s, n);
  e->val_len = (uint32_t)(d->arena.len - e->val_off);
}

void evdoc_render_strings(buf_t *out, const char *const *kv, size_t n) {
  size_t start = out->len;
  buf_putc(out, '{');
  for (size_t i = 0; i < n; i++) {
    const char *v = kv[2 * i + 1];
    if (!v || !*v) continue;
    if (out->len > start + 1) buf_putc(out, ',');
    buf_putc(out, '"');
    buf_json_escape(out, kv[2 * i], strlen(kv[2 * i]));
    buf_append(out, "\":\"", 3);
    buf_json_escape(out, v, strlen(v));
    buf_putc(out, '"');
  }
  buf_putc(out, '}');
}

/* The object evdoc_set_strings sets, in d->scratch. */
static const buf_t *strings_json(evdoc_t *d, const char *const *kv, size_t n) {
  buf_reset(&d->scratch);
  evdoc_render_strings(&d->scratch, kv, n);
  return &d->scratch;
}

void evdoc_set_strings(evdoc_t *d, const char *path, const char *const *kv, size_t n) {
  const buf_t *v = strings_json(d, kv, n);
  evdoc_set_raw(d, path, v->data, v->len);
}

void evdoc_set_strings_p(evdoc_t *d, evdoc_path_t *p, const char *const *kv, size_t n) {
  const buf_t *v = strings_json(d, kv, n);
  evdoc_set_raw_p(d, p, v->data, v->len);
}

void evdoc_set_bool(evdoc_t *d, const char *path, int b) {
  evdoc_set_raw(d, path, b ? "true" : "false", b ? 4 : 5);
}

void evdoc_set_bool_p(evdoc_t *d, evdoc_path_t *p, int b) {
  evdoc_set_raw_p(d, p, b ? "true" : "false", b ? 4 : 5);
}

void evdoc_del(evdoc_t *d, const char *path) {
  add_edit_memo(d, OP_DEL, memo_of(d, path), path, NULL, 0);
}

void evdoc_del_p(evdoc_t *d, evdoc_path_t *p) {
  add_edit_memo(d, OP_DEL, path_memo(d, p), p->text, NULL, 0);
}

void evdoc_keep_only(evdoc_t *d, const char *const *keep) {
  const jscan_member_t *m;
  long n = evdoc_members(d, NULL, &m);
  char name[256];
  for (long i = 0; i < n; i++) {
    jscan_val_t kv = {JSCAN_STRING, m[i].key, m[i].keylen, m[i].key_escaped, 0};
    if (m[i].keylen >= sizeof name || jscan_string(&kv, name, sizeof name) < 0) continue;
    int kept = 0;
    for (const char *const *k = keep; *k && !kept; k++) kept = !strcmp(*k, name);
    const char *seg = name;
    if (!kept) add_edit(d, OP_DEL, &seg, 1, NULL, 0);
  }
  for (size_t i = 0; i < d->nedits; i++) {
    edit_t *e = &d->edits[i];
    if (e->op != OP_SET) continue;
    int kept = 0;
    for (const char *const *k = keep; *k && !kept; k++) kept = seg_eq(d, e, 0, *k, strlen(*k));
    if (!kept) e->op = OP_NOP;
  }
}

/* ---- writing ---- */

/* The live edit exactly at prefix, and whether live edits lie strictly below it, among
 * edits from index `from` on. */
static const edit_t *edit_at(const evdoc_t *d, const uint64_t *hs, size_t n, size_t from,
                             int *deeper) {
  const edit_t *exact = NULL;
  *deeper = 0;
  for (size_t i = from; i < d->nedits; i++) {
    const edit_t *e = &d->edits[i];
    if (e->op == OP_NOP || !edit_under(d, e, hs, n)) continue;
    if (e->nsegs == n)
      exact = e;
    else
      *deeper = 1;
  }
  return exact;
}

/* The writer appends to out through a cursor w into room reserved once (evdoc_write
 * reserves an upper bound of what it writes), so a byte or a span costs a store or a copy,
 * not a buffer's checks each. The functions below take w and return it advanced. Only
 * names that need escaping go through buf_json_escape, which may move out's bytes: room
 * is then reserved again and w found anew. */
typedef struct writer {
  buf_t *out;
  size_t room; /* what evdoc_write reserved: enough for all that is left to write */
  char *limit; /* the end of the room reserved last (checked in debug builds) */
} writer_t;

/* w[0..n) = s[0..n) for k <= n <= 2k (k <= 8): the first and the last k bytes. */
static inline void copy_ends(char *w, const char *s, size_t n, size_t k) {
  uint64_t a, b; /* only their first k bytes are used */
  memcpy(&a, s, k);
  memcpy(&b, s + n - k, k);
  memcpy(w, &a, k);
  memcpy(w + n - k, &b, k);
}

/* Most spans written are short (a member's name, a value set): up to sixteen bytes are
 * copied as two overlapping words or halves, without a call to memcpy (-63 instructions
 * per event). */
static inline char *put(char *w, const void *p, size_t n) {
  const char *s = p;
  if (n > 16) {
    memcpy(w, s, n);
  } else if (n >= 8) {
    copy_ends(w, s, n, 8);
  } else if (n >= 4) {
    copy_ends(w, s, n, 4);
  } else if (n) {
    w[0] = s[0];
    w[n / 2] = s[n / 2];
    w[n - 1] = s[n - 1];
  }
  return w + n;
}

/* '"' name '":' with name escaped. */
static __attribute__((noinline)) char *put_escaped_name(writer_t *o, char *w, const char *s,
                                                        size_t n) {
  buf_t *out = o->out;
  out->len = (size_t)(w - out->data);
  buf_putc(out, '"');
  buf_json_escape(out, s, n);
  buf_append(out, "\":", 2);
  buf_reserve(out, o->room);
  o->limit = out->data + out->len + o->room;
  return out->data + out->len;
}

static char *write_object(evdoc_t *d, const jscan_val_t *obj, uint64_t *hs, size_t depth,
                          writer_t *o, char *w);

/* edit_at (from 0) for a member of an object being written. An edit at the member has set
 * endmask's bit of its path: without that bit (context, with edits below it) the search
 * ends at the first edit below. */
static const edit_t *member_edit(const evdoc_t *d, const uint64_t *hs, size_t n, int *deeper) {
  if (d->endmask[n - 1] & bit_of(hs[n - 1])) return edit_at(d, hs, n, 0, deeper);
  *deeper = 0;
  for (size_t i = 0; i < d->nedits && !*deeper; i++) {
    const edit_t *e = &d->edits[i];
    *deeper = e->op != OP_NOP && e->nsegs > n && e->phash[n - 1] == hs[n - 1];
  }
  return NULL;
}

/* Write the value at prefix hs[0..depth): orig (the client's, or NULL) with the edits at
 * and below it; e and deeper are what edit_at says for that prefix (the caller has
 * asked already). */
static char *write_value_at(evdoc_t *d, const jscan_val_t *orig, uint64_t *hs, size_t depth,
                            const edit_t *e, int deeper, writer_t *o, char *w) {
  if (e && e->op == OP_DEL) return write_object(d, NULL, hs, depth, o, w); /* deleted, then members set below it */
  if (e) {
    if (deeper && depth < EVDOC_MAX_DEPTH) {
      jscan_val_t v = edit_val(d, e);
      return write_object(d, v.type == JSCAN_OBJECT ? &v : NULL, hs, depth, o, w);
    }
    return put(w, d->arena.data + e->val_off, e->val_len);
  }
  if (deeper && depth < EVDOC_MAX_DEPTH)
    return write_object(d, orig && orig->type == JSCAN_OBJECT ? orig : NULL, hs, depth, o, w);
  if (orig)
    return put(w, orig->type == JSCAN_STRING ? orig->p - 1 : orig->p,
               orig->type == JSCAN_STRING ? orig->n + 2 : orig->n);
  return w;
}

static char *write_object(evdoc_t *d, const jscan_val_t *obj, uint64_t *hs, size_t depth,
                          writer_t *o, char *w) {
  indexed_t *x = obj ? index_of(d, obj) : NULL;
  long count = x ? x->count : 0;
  uint64_t parent = depth ? hs[depth - 1] : ROOT_HASH;
  /* In locals: every byte written through w may alias them, and they were read again for
   * each member and each edit (-51 instructions per event). Nothing here changes them. */
  const jscan_member_t *members = x ? x->members : NULL;
  const uint64_t *names = x ? x->names : NULL;
  const uint64_t mask = depth < EVDOC_MAX_DEPTH ? d->mask[depth] : 0;
  const edit_t *edits = d->edits;
  const size_t nedits = d->nedits;
  /* bit_of() of every member's path hash, and of every new member's written so far: most
   * "is this edit's member new?" questions below are answered by one bit test. */
  uint64_t member_bits = 0, new_bits = 0;
  uint64_t last_member = 0; /* path hash of the member the last search found (edits below
                             * one member, such as context.*, come in runs) */
  int have_last = 0;
  int first = 1;
  const char *run = NULL, *run_end = NULL; /* untouched members not written yet */
  *w++ = '{';
  for (long i = 0; i < count; i++) {
    const jscan_member_t *m = &members[i];
    int deeper = 0;
    const edit_t *e = NULL;
    if (depth < EVDOC_MAX_DEPTH) {
      hs[depth] = chain(parent, names[i]);
      member_bits |= bit_of(hs[depth]);
      /* Most members have no edit at or below them: one bit test says so. */
      if (mask & bit_of(hs[depth])) {
        e = member_edit(d, hs, depth + 1, &deeper);
        /* The edits below it are not new members: the loop below knows at once
         * (context's, at the top, without a search of the members for each). */
        if (deeper) last_member = hs[depth], have_last = 1;
        if (e && e->op == OP_DEL && !deeper) continue;
      }
    }
    if (!e && !deeper) {
      /* Untouched: the client's bytes as they are; in one copy from the key's quote to
       * the value's end when nothing lies between the key's quote, ':' and the value
       * (compact JSON, which is what would be written), and such members that follow
       * each other with just a comma between them in one copy together (run). */
      const jscan_val_t *v = &m->val;
      const char *vp = v->type == JSCAN_STRING ? v->p - 1 : v->p;
      size_t vn = v->type == JSCAN_STRING ? v->n + 2 : v->n;
      if (vp == m->key + m->keylen + 2) {
        const char *start = m->key - 1;
        if (run && start == run_end + 1 && *run_end == ',') {
          run_end = vp + vn;
          continue;
        }
        if (run) w = put(w, run, (size_t)(run_end - run));
        if (!first) *w++ = ',';
        first = 0;
        run = start;
        run_end = vp + vn;
        continue;
      }
    }
    if (run) w = put(w, run, (size_t)(run_end - run));
    run = NULL;
    if (!first) *w++ = ',';
    first = 0;
    *w++ = '"';
    w = put(w, m->key, m->keylen);
    *w++ = '"';
    *w++ = ':';
    if (!e && !deeper) {
      const jscan_val_t *v = &m->val;
      w = put(w, v->type == JSCAN_STRING ? v->p - 1 : v->p,
              v->type == JSCAN_STRING ? v->n + 2 : v->n);
      continue;
    }
    w = write_value_at(d, &m->val, hs, depth + 1, e, deeper, o, w);
  }
  if (run) w = put(w, run, (size_t)(run_end - run));
  /* New members: edits one or more levels below, whose child name the object lacks. */
  for (size_t i = 0; i < nedits; i++) {
    const edit_t *e = &edits[i];
    if (e->op == OP_NOP || e->nsegs <= depth || !edit_under(d, e, hs, depth)) continue;
    int seen = 0;
    uint64_t bit = bit_of(e->phash[depth]);
    if (have_last && last_member == e->phash[depth]) {
      seen = 1;
    } else if (member_bits & bit) {
      for (long k = 0; k < count && !seen; k++) seen = chain(parent, names[k]) == e->phash[depth];
      if (seen) last_member = e->phash[depth], have_last = 1;
    }
    if (new_bits & bit)
      for (size_t k = 0; k < i && !seen; k++) {
        const edit_t *p = &edits[k];
        seen = p->op != OP_NOP && p->nsegs > depth && p->phash[depth] == e->phash[depth];
      }
    if (seen) continue;
    new_bits |= bit;
    hs[depth] = e->phash[depth];
    int deeper;
    /* No live edit before i lies under this new member (it would have been written
     * first), so the search starts at i; an edit at the member itself is the one there
     * (a later one would have retired it), and it knows whether any lies below. */
    const edit_t *ex = e->nsegs == depth + 1 ? (deeper = e->below, e)
                                             : edit_at(d, hs, depth + 1, i, &deeper);
    if ((ex && ex->op == OP_DEL && !deeper) || (!ex && !deeper)) continue;
    if (!first) *w++ = ',';
    first = 0;
    const char *child = seg_of(d, e, depth);
    size_t clen = e->seg_len[depth];
    if (e->escape & (1u << depth)) {
      w = put_escaped_name(o, w, child, clen);
    } else {
      *w++ = '"';
      w = put(w, child, clen);
      *w++ = '"';
      *w++ = ':';
    }
    if (ex && ex->op == OP_SET && !deeper) /* most new members: a value set, as it is */
      w = put(w, d->arena.data + ex->val_off, ex->val_len);
    else
      w = write_value_at(d, NULL, hs, depth + 1, ex, deeper, o, w);
  }
  *w++ = '}';
  return w;
}

void evdoc_write(evdoc_t *d, buf_t *out) {
  uint64_t hs[EVDOC_MAX_DEPTH];
  if (!d->nedits) {
    buf_append(out, d->root.p, d->root.n);
    return;
  }
  /* An upper bound of what is written: the client's bytes (members are copied as they
   * are or more compactly, never longer) plus, per edit, its value and each of its
   * segments as a new member ("name":{...}, with a comma); escaped names are written
   * through the buffer (see put_escaped_name). Values are in the arena and seg_room was
   * added up as the edits were made (retired ones included: a bound still), not by a
   * loop over the edits here (-104 instructions per event). */
  size_t room = d->root.n + 1 + d->arena.len + d->seg_room;
  buf_reserve(out, room);
  writer_t o = {out, room, out->data + out->len + room};
  char *w = write_object(d, &d->root, hs, 0, &o, out->data + out->len);
  assert(w <= o.limit);
  out->len = (size_t)(w - out->data);
  out->data[out->len] = 0;
}
