/* jscan: one-pass JSON field extraction (see jscan.h).
 *
 * The requested paths form a trie of object keys. The scanner is a recursive descent
 * over the document that carries the trie node of the object it is in (NULL once outside
 * every requested path, where it only validates and skips). The trusted scan walks the
 * same trie over bytes validated before, with an explicit stack as deep as the paths (plus
 * the objects directly inside theirs, which it walks member by member); everything
 * further out it skips looking only for quotes, backslashes and brackets, sixteen bytes a
 * step, and it tries the key each member of an object had in the document before first
 * (tguess_t). */
#include "jscan.h"

#include <stdlib.h>
#include <string.h>

#include "util/mem.h"
#include "util/plain.h"

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

/* Children are found by a hash of the key's first eight bytes and its length, and
 * compared sixteen bytes at a time: keys are matched for every member of every object on
 * a path, the busiest step of a scan. The trusted scan hashes and compares the key's
 * bytes straight from the register it found the closing quote in. */
#define NODE_BUCKETS 32
/* Key guesses of the trusted scan (see tguess_t): rows (objects on the paths) and the
 * members of each object guessed. */
#define GUESS_ROWS 12
#define GUESS_POS 16

typedef struct node {
  char *key;
  size_t keylen;
  uint64_t head[2];    /* the key's first 16 bytes, zero-padded */
  uint64_t mask[2];    /* keeps the first keylen (at most 16) bytes of a 16-byte load */
  int out;             /* index into out[], or -1 */
  int row;             /* the trusted scan's row of key guesses for this object, or -1 */
  struct node *child;  /* first child */
  struct node *next;   /* next sibling */
  struct node *bucket[NODE_BUCKETS]; /* children by key_hash */
  struct node *hnext;  /* next child in the same bucket */
} node_t;

struct jscan_paths {
  node_t root;
  size_t n;
  uint64_t id; /* unique among the sets a process compiles (the key guesses' owner) */
  int rows;    /* rows of key guesses its objects use: 0 .. rows - 1 */
};

/* head: the key's first min(n, 8) bytes as a little-endian word, zero-padded. */
static inline unsigned key_hash(uint64_t head, size_t n) {
  return (unsigned)(((head ^ n) * 0x9E3779B97F4A7C15ull) >> 59) % NODE_BUCKETS;
}

/* The first min(n, 8) bytes of k as key_hash wants them; bytes up to limit may be read. */
static inline uint64_t key_head(const char *k, size_t n, const char *limit) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  if (limit - k >= 8) {
    uint64_t w;
    memcpy(&w, k, 8);
    return n >= 8 ? w : w & ((1ull << (8 * n)) - 1);
  }
#endif
  unsigned char b[8] = {0};
  memcpy(b, k, n < 8 ? n : 8);
  uint64_t h = 0;
  for (int i = 7; i >= 0; i--) h = h << 8 | b[i];
  return h;
}

static node_t *child_get(node_t *parent, const char *k, size_t n, int create) {
  for (node_t *c = parent->child; c; c = c->next)
    if (c->keylen == n && memcmp(c->key, k, n) == 0) return c;
  if (!create) return NULL;
  node_t *c = xcalloc(1, sizeof *c);
  c->key = xstrndup(k, n);
  c->keylen = n;
  memcpy(c->head, k, n < 16 ? n : 16);
  memset(c->mask, 0xff, n < 16 ? n : 16);
  c->out = -1;
  c->row = -1;
  c->next = parent->child;
  parent->child = c;
  unsigned h = key_hash(key_head(k, n, k + n), n);
  c->hnext = parent->bucket[h];
  parent->bucket[h] = c;
  return c;
}

/* The child of at named k[0..n) (decoded), or NULL. Bytes up to limit may be read. */
static inline const node_t *child_find(const node_t *at, const char *k, size_t n,
                                       const char *limit) {
  if (!n) return NULL;
  uint64_t w[2];
  int wide = n <= 16 && limit - k >= 16;
  if (wide) memcpy(w, k, 16);
  for (const node_t *c = at->bucket[key_hash(key_head(k, n, limit), n)]; c; c = c->hnext) {
    if (c->keylen != n) continue;
    if (wide) {
      if (((w[0] & c->mask[0]) ^ c->head[0]) == 0 && ((w[1] & c->mask[1]) ^ c->head[1]) == 0)
        return c;
    } else if (memcmp(c->key, k, n) == 0) {
      return c;
    }
  }
  return NULL;
}

static void node_free(node_t *n) {
  for (node_t *c = n->child, *next; c; c = next) {
    next = c->next;
    node_free(c);
    free(c->key);
    free(c);
  }
}

/* Give each object node (root included) a row of key guesses while rows last. */
static void number_rows(node_t *n, int *next);

jscan_paths_t *jscan_compile(const char *const *paths, size_t n) {
  static _Atomic uint64_t last_id;
  if (n > JSCAN_MAX_PATHS) return NULL;
  jscan_paths_t *ps = xcalloc(1, sizeof *ps);
  ps->root.out = -1;
  ps->n = n;
  ps->id = ++last_id;
  for (size_t i = 0; i < n; i++) {
    node_t *at = &ps->root;
    const char *s = paths[i];
    int depth = 0;
    while (1) {
      size_t len = strcspn(s, ".");
      if (!len || ++depth > JSCAN_MAX_DEPTH) {
        jscan_paths_free(ps);
        return NULL;
      }
      at = child_get(at, s, len, 1);
      if (!s[len]) break;
      s += len + 1;
    }
    if (at->out < 0) at->out = (int)i;
  }
  number_rows(&ps->root, &ps->rows);
  return ps;
}

static void number_rows(node_t *n, int *next) {
  n->row = n->child && *next < GUESS_ROWS ? (*next)++ : -1;
  for (node_t *c = n->child; c; c = c->next) number_rows(c, next);
}

void jscan_paths_free(jscan_paths_t *ps) {
  if (!ps) return;
  node_free(&ps->root);
  free(ps);
}

/* ---- scanner ---- */

typedef struct scan {
  const char *p, *end;
  jscan_val_t *out;
  int depth;
  int lazy_num; /* leave num 0 (jscan_num computes it when needed) */
  jscan_tape_t *tape; /* record objects there (jscan_members_tape), or NULL */
  int level;          /* the tape level of an object opened next; -1: not recorded */
} scan_t;

static inline void ws(scan_t *s) {
  /* Events are mostly compact JSON: one test says there is no white space here. */
  if (__builtin_expect(s->p < s->end && (unsigned char)*s->p > ' ', 1)) return;
  while (s->p < s->end && (*s->p == ' ' || *s->p == '\n' || *s->p == '\r' || *s->p == '\t')) s->p++;
}

static int hex4(const char *p) {
  for (int i = 0; i < 4; i++) {
    char c = p[i];
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'))) return 0;
  }
  return 1;
}

static unsigned hexval4(const char *p);

/* Length of the valid UTF-8 sequence at p (lead byte >= 0x80), or 0 when invalid:
 * no overlong forms, no surrogates, nothing above U+10FFFF. */
static size_t utf8_valid(const unsigned char *p, const unsigned char *end) {
  unsigned c = p[0];
  size_t n = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC2 ? 2 : 0;
  if (!n || c > 0xF4 || (size_t)(end - p) < n) return 0;
  for (size_t i = 1; i < n; i++)
    if ((p[i] & 0xC0) != 0x80) return 0;
  if (c == 0xE0 && p[1] < 0xA0) return 0; /* overlong */
  if (c == 0xED && p[1] >= 0xA0) return 0; /* surrogate */
  if (c == 0xF0 && p[1] < 0x90) return 0; /* overlong */
  if (c == 0xF4 && p[1] >= 0x90) return 0; /* above U+10FFFF */
  return n;
}

/* At an opening quote: skip the string, setting its span (inside the quotes). Strings
 * must be valid UTF-8 and \u escapes must pair surrogates (RFC 8259 text that every
 * consumer of the stored events accepts). */
static int string_slow(scan_t *s, const char **sp, size_t *sn, int *escaped);

/* The common case inline: plain bytes up to the closing quote. Anything else (escapes,
 * UTF-8, errors) goes to string_slow, which starts over at the opening quote. */
static inline int string(scan_t *s, const char **sp, size_t *sn, int *escaped) {
  if (s->p >= s->end || *s->p != '"') return -1;
  const char *start = s->p + 1, *q = plain_end(start, s->end);
  if (q < s->end && *q == '"') {
    *sp = start;
    *sn = (size_t)(q - start);
    *escaped = 0;
    s->p = q + 1;
    return 0;
  }
  return string_slow(s, sp, sn, escaped);
}

static __attribute__((noinline)) int string_slow(scan_t *s, const char **sp, size_t *sn,
                                                 int *escaped) {
  if (s->p >= s->end || *s->p != '"') return -1;
  const char *start = ++s->p;
  int esc = 0;
  while (s->p < s->end) {
    /* Plain bytes are the common case: skip them with one table lookup each. */
    s->p = plain_end(s->p, s->end);
    if (s->p >= s->end) break;
    unsigned char c = (unsigned char)*s->p;
    if (c == '"') {
      *sp = start;
      *sn = (size_t)(s->p - start);
      *escaped = esc;
      s->p++;
      return 0;
    }
    if (c < 0x20) return -1;
    if (c >= 0x80) {
      size_t n = utf8_valid((const unsigned char *)s->p, (const unsigned char *)s->end);
      if (!n) return -1;
      s->p += n;
      continue;
    }
    if (c == '\\') {
      esc = 1;
      if (s->end - s->p < 2) return -1;
      char e = s->p[1];
      if (e == 'u') {
        if (s->end - s->p < 6 || !hex4(s->p + 2)) return -1;
        unsigned cp = hexval4(s->p + 2);
        s->p += 6;
        if (cp >= 0xDC00 && cp < 0xE000) return -1; /* lone low surrogate */
        if (cp >= 0xD800 && cp < 0xDC00) {
          if (s->end - s->p < 6 || s->p[0] != '\\' || s->p[1] != 'u' || !hex4(s->p + 2)) return -1;
          unsigned lo = hexval4(s->p + 2);
          if (lo < 0xDC00 || lo >= 0xE000) return -1;
          s->p += 6;
        }
        continue;
      }
      if (!strchr("\"\\/bfnrt", e) || !e) return -1;
      s->p += 2;
      continue;
    }
    s->p++;
  }
  return -1;
}

/* Past the digits at p (none: p). */
static inline const char *digits(const char *p, const char *end) {
  while (p < end && (unsigned char)(*p - '0') < 10) p++;
  return p;
}

/* number() on a local cursor: the position after the number at p, or NULL when there is
 * none. Inline in the recording walk (a call per number cost it 20 instructions more). */
static inline const char *number_at(const char *p, const char *end) {
  if (p < end && *p == '-') p++;
  if (p >= end) return NULL;
  if (*p == '0') {
    p++;
  } else if ((unsigned char)(*p - '1') < 9) {
    p = digits(p + 1, end);
  } else {
    return NULL;
  }
  if (p < end && *p == '.') {
    const char *f = digits(p + 1, end);
    if (f == p + 1) return NULL;
    p = f;
  }
  if (p < end && (*p == 'e' || *p == 'E')) {
    p++;
    if (p < end && (*p == '+' || *p == '-')) p++;
    const char *x = digits(p, end);
    if (x == p) return NULL;
    p = x;
  }
  return p;
}

static int number(scan_t *s) {
  const char *p = number_at(s->p, s->end);
  if (!p) return -1;
  s->p = p;
  return 0;
}

static int literal(scan_t *s, const char *word, size_t n) {
  if ((size_t)(s->end - s->p) < n || memcmp(s->p, word, n) != 0) return -1;
  s->p += n;
  return 0;
}

/* The child of at (may be NULL) named by the raw key k[0..kn) (escaped: decoded first),
 * or NULL. Bytes up to limit may be read. */
static const node_t *child_match_escaped(const node_t *at, const char *k, size_t kn);

static inline __attribute__((always_inline)) const node_t *
child_match(const node_t *at, const char *k, size_t kn, int kesc, const char *limit) {
  if (!at) return NULL;
  return kesc ? child_match_escaped(at, k, kn) : child_find(at, k, kn, limit);
}

static __attribute__((noinline)) const node_t *child_match_escaped(const node_t *at,
                                                                   const char *k, size_t kn) {
  if (kn >= 256) return NULL;
  char dec[256];
  jscan_val_t kv = {JSCAN_STRING, k, kn, 1, 0};
  long dn = jscan_string(&kv, dec, sizeof dec);
  return dn >= 0 ? child_find(at, dec, (size_t)dn, dec + sizeof dec) : NULL;
}

static int value(scan_t *s, const node_t *at, int out_index);
static int object_rec(scan_t *s);
static int object_rec_into(scan_t *s, int level, jscan_val_t *v);

static int object(scan_t *s, const node_t *at) {
  if (s->tape && s->level >= 0) return object_rec(s);
  s->p++; /* '{' */
  ws(s);
  if (s->p < s->end && *s->p == '}') {
    s->p++;
    return 0;
  }
  for (;;) {
    ws(s);
    const char *k;
    size_t kn;
    int kesc;
    if (string(s, &k, &kn, &kesc)) return -1;
    const node_t *child = child_match(at, k, kn, kesc, s->end);
    ws(s);
    if (s->p >= s->end || *s->p != ':') return -1;
    s->p++;
    ws(s);
    if (value(s, child, child ? child->out : -1)) return -1;
    ws(s);
    if (s->p >= s->end) return -1;
    if (*s->p == ',') {
      s->p++;
      continue;
    }
    if (*s->p == '}') {
      s->p++;
      return 0;
    }
    return -1;
  }
}

/* Validate the element at s->p and record it in e (see jscan_members_elems). */
static int elem(scan_t *s, jscan_elems_t *e);

/* rec: record each element there (jscan_members_elems), or NULL. */
static int array(scan_t *s, jscan_elems_t *rec) {
  s->p++; /* '[' */
  ws(s);
  if (s->p < s->end && *s->p == ']') {
    s->p++;
    return 0;
  }
  for (;;) {
    ws(s);
    if (rec ? elem(s, rec) : value(s, NULL, -1)) return -1;
    ws(s);
    if (s->p >= s->end) return -1;
    if (*s->p == ',') {
      s->p++;
      continue;
    }
    if (*s->p == ']') {
      s->p++;
      return 0;
    }
    return -1;
  }
}

static int value(scan_t *s, const node_t *at, int out_index) {
  if (s->p >= s->end) return -1;
  jscan_val_t v = {JSCAN_NONE, s->p, 0, 0, 0};
  int rc;
  switch (*s->p) {
    case '{':
      if (++s->depth > JSCAN_MAX_DEPTH) return -1;
      v.type = JSCAN_OBJECT;
      rc = object(s, at);
      s->depth--;
      break;
    case '[': {
      if (++s->depth > JSCAN_MAX_DEPTH) return -1;
      v.type = JSCAN_ARRAY;
      int level = s->level;
      s->level = -1; /* paths never go inside arrays: nothing there is recorded */
      rc = array(s, NULL);
      s->level = level;
      s->depth--;
      break;
    }
    case '"':
      v.type = JSCAN_STRING;
      rc = string(s, &v.p, &v.n, &v.escaped);
      break;
    case 't':
      v.type = JSCAN_TRUE;
      rc = literal(s, "true", 4);
      break;
    case 'f':
      v.type = JSCAN_FALSE;
      rc = literal(s, "false", 5);
      break;
    case 'n':
      v.type = JSCAN_NULL;
      rc = literal(s, "null", 4);
      break;
    default:
      v.type = JSCAN_NUMBER;
      rc = number(s);
      break;
  }
  if (rc) return -1;
  if (out_index >= 0 && s->out[out_index].type == JSCAN_NONE) {
    if (v.type != JSCAN_STRING) v.n = (size_t)(s->p - v.p);
    if (v.type == JSCAN_NUMBER && !s->lazy_num) {
      char tmp[64];
      size_t n = v.n < sizeof tmp - 1 ? v.n : sizeof tmp - 1;
      memcpy(tmp, v.p, n);
      tmp[n] = 0;
      v.num = strtod(tmp, NULL);
    }
    s->out[out_index] = v;
  }
  return 0;
}

int jscan_scan(const jscan_paths_t *ps, const char *json, size_t len, jscan_val_t *out) {
  memset(out, 0, ps->n * sizeof *out);
  scan_t s = {json, json + len, out, 0};
  ws(&s);
  if (s.p >= s.end || *s.p != '{') return -1;
  s.depth = 1;
  if (object(&s, &ps->root)) return -1;
  ws(&s);
  return s.p == s.end ? 0 : -1;
}

/* ---- trusted scan ---- */

/* The type of a value that is neither string, object nor array, by its first byte (in a
 * document validated before). */
static inline jscan_type_t scalar_type(char c) {
  return c == 't' ? JSCAN_TRUE : c == 'f' ? JSCAN_FALSE : c == 'n' ? JSCAN_NULL : JSCAN_NUMBER;
}

/* jscan_num of a number span, without strtod for the common form: an optional '-', at
 * most 15 digits and at most one '.' among them (prices, counts). The digits then make an
 * integer m below 2^53 and the fraction digits a power of ten 10^k of at most 10^15, both
 * exact doubles, so m / 10^k is the correctly rounded value of the decimal, which is what
 * strtod returns. Any other form goes to jscan_num. */
static double tnum(const jscan_val_t *v) {
  static const double pow10[16] = {1e0, 1e1, 1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                   1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15};
  const char *p = v->p, *end = v->p + v->n;
  int neg = p < end && *p == '-';
  p += neg;
  uint64_t m = 0;
  int digits = 0, frac = -1; /* frac: digits after the '.', -1 before one */
  for (; p < end; p++) {
    unsigned d = (unsigned)(unsigned char)*p - '0';
    if (d <= 9) {
      m = m * 10 + d;
      digits++;
      frac += frac >= 0;
    } else if (*p == '.' && frac < 0) {
      frac = 0;
    } else {
      return jscan_num(v);
    }
  }
  if (!digits || digits > 15) return jscan_num(v);
  double x = (double)m / pow10[frac > 0 ? frac : 0];
  return neg ? -x : x;
}

/* Bytes that end a number or literal. */
static const unsigned char delim[256] = {[','] = 1, ['}'] = 1, [']'] = 1, [' '] = 1,
                                         ['\n'] = 1, ['\r'] = 1, ['\t'] = 1};

/* Sixteen bytes at a time where SSE2 is there (every x86-64): a trusted scan only looks
 * for quotes, backslashes and brackets, so it can skip runs without classifying bytes. */
#if defined(__SSE2__)
#define TSCAN_SSE2 1
static inline __m128i eqv(__m128i w, char c) { return _mm_cmpeq_epi8(w, _mm_set1_epi8(c)); }
static inline unsigned eq16(__m128i w, char c) { return (unsigned)_mm_movemask_epi8(eqv(w, c)); }
/* Bit i: w's byte i is '"' or '\\'. */
static inline unsigned quote16(__m128i w) {
  return (unsigned)_mm_movemask_epi8(_mm_or_si128(eqv(w, '"'), eqv(w, '\\')));
}
#else
#define TSCAN_SSE2 0
#endif

/* The first '"' or '\\' in [p, end), or end. */
static inline const char *tquote(const char *p, const char *end) {
#if TSCAN_SSE2
  if (end - p >= 16) {
    const char *last = end - 16;
    do {
      __m128i w = _mm_loadu_si128((const __m128i *)(const void *)p);
      unsigned m = quote16(w);
      if (m) return p + __builtin_ctz(m);
      p += 16;
    } while (p <= last);
    if (p == end) return p;
    /* the last few bytes: the 16 that end the buffer (all after the first p), less
     * those already seen */
    __m128i w = _mm_loadu_si128((const __m128i *)(const void *)last);
    unsigned m = quote16(w) >> (p - last);
    return m ? p + __builtin_ctz(m) : end;
  }
  while (p < end && *p != '"' && *p != '\\') p++;
  return p;
#else
  return plain_quote_or_backslash(p, end);
#endif
}

/* The first '"', '{', '}', '[' or ']' in [p, end), or end. '[' and ']' are '{' and '}'
 * without bit 0x20. */
static inline const char *tstructural(const char *p, const char *end) {
#if TSCAN_SSE2
  while (end - p >= 16) {
    __m128i w = _mm_loadu_si128((const __m128i *)(const void *)p);
    __m128i f = _mm_or_si128(w, _mm_set1_epi8(0x20));
    unsigned m = eq16(w, '"') | eq16(f, '{') | eq16(f, '}');
    if (m) return p + __builtin_ctz(m);
    p += 16;
  }
#endif
  while (p < end && *p != '"' && (*p | 0x20) != '{' && (*p | 0x20) != '}') p++;
  return p;
}

/* p just after an opening quote: just after the closing quote, or NULL when the string
 * does not end before end. Sets *escaped when it holds a backslash. */
static inline const char *tstring(const char *p, const char *end, int *escaped) {
  for (;;) {
    p = tquote(p, end);
    if (p >= end) return NULL;
    if (*p == '"') return p + 1;
    *escaped = 1;
    if (end - p < 3) return NULL; /* the escaped byte and at least the closing quote */
    p += 2;
  }
}

static inline const char *tws(const char *p, const char *end) {
  if (__builtin_expect(p < end && (unsigned char)*p > ' ', 1)) return p; /* compact JSON */
  while (p < end && (unsigned char)*p <= ' ' &&
         (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t'))
    p++;
  return p;
}

#if TSCAN_SSE2
/* Bit i set when byte i lies inside a string of the 64 bytes whose quotes are q, the
 * opening quote included and the closing one not (each quote flips the state), given
 * whether the block starts inside one (carry, 0 or all ones). */
static inline uint64_t tinside(uint64_t q, uint64_t carry) {
  q ^= q << 1;
  q ^= q << 2;
  q ^= q << 4;
  q ^= q << 8;
  q ^= q << 16;
  q ^= q << 32;
  return q ^ carry;
}

/* The 64 bytes at b as masks: quotes, backslashes, opening and closing brackets. */
static inline void tclassify64(const char *b, uint64_t *q, uint64_t *bs, uint64_t *open,
                               uint64_t *close) {
  uint64_t mq = 0, ms = 0, mo = 0, mc = 0;
  for (int i = 0; i < 4; i++) {
    __m128i w = _mm_loadu_si128((const __m128i *)(const void *)(b + 16 * i));
    __m128i f = _mm_or_si128(w, _mm_set1_epi8(0x20)); /* '[' -> '{', ']' -> '}' */
    mq |= (uint64_t)eq16(w, '"') << (16 * i);
    ms |= (uint64_t)eq16(w, '\\') << (16 * i);
    mo |= (uint64_t)eq16(f, '{') << (16 * i);
    mc |= (uint64_t)eq16(f, '}') << (16 * i);
  }
  *q = mq, *bs = ms, *open = mo, *close = mc;
}

/* p at '{' or '[': just after the matching closing bracket, or NULL when there is none
 * before end. Strings are skipped whole (brackets inside them do not count); nesting
 * costs a counter, not a stack. The bytes go 64 at a time as bit masks, as simdjson's
 * first stage does: the quotes' prefix XOR marks the bytes inside strings, brackets
 * outside them are counted with popcount, and only a block where the depth may come
 * back to zero is walked bit by bit. A block with a backslash (an escape, rare in
 * events), or after one that ended on an escape, is walked byte by byte. The last few
 * bytes are copied into a zeroed block, so nothing past end is read. */
static const char *tskip_container(const char *p, const char *end) {
  uint64_t depth = 0, carry = 0; /* carry: all ones while inside a string */
  int esc = 0;                   /* the block before ended on a backslash in a string */
  char pad[64];
  while (p < end) {
    size_t n = (size_t)(end - p);
    const char *b = p;
    if (n < 64) {
      memset(pad, 0, sizeof pad);
      memcpy(pad, p, n);
      b = pad;
    } else {
      n = 64;
    }
    uint64_t q, bs, open, close;
    tclassify64(b, &q, &bs, &open, &close);
    if (__builtin_expect((bs | (uint64_t)esc) != 0, 0)) {
      int in = carry != 0;
      for (size_t i = 0; i < n; i++) {
        char c = b[i];
        if (esc) esc = 0;
        else if (in) esc = c == '\\', in = c != '"';
        else if (c == '"') in = 1;
        else if ((c | 0x20) == '{') depth++;
        else if ((c | 0x20) == '}' && --depth == 0) return p + i + 1;
      }
      carry = in ? ~(uint64_t)0 : 0;
    } else {
      uint64_t inside = tinside(q, carry);
      carry = (uint64_t)((int64_t)inside >> 63);
      open &= ~inside;
      close &= ~inside;
      uint64_t nc = (uint64_t)__builtin_popcountll(close);
      if (depth > nc) { /* cannot reach zero in this block */
        depth += (uint64_t)__builtin_popcountll(open) - nc;
      } else {
        for (uint64_t m = open | close; m; m &= m - 1) {
          int i = __builtin_ctzll(m);
          if (open >> i & 1) depth++;
          else if (--depth == 0) return p + i + 1;
        }
      }
    }
    p += n;
  }
  return NULL;
}
#else
/* p at '{' or '[': just after the matching closing bracket, or NULL when there is none
 * before end. Strings are skipped whole (brackets inside them do not count); no other
 * byte is looked at, and nesting costs a counter, not a stack. */
static const char *tskip_container(const char *p, const char *end) {
  size_t depth = 0;
  for (;;) {
    p = tstructural(p, end);
    if (p >= end) return NULL;
    if (*p == '"') {
      int esc = 0;
      if (!(p = tstring(p + 1, end, &esc))) return NULL;
      continue;
    }
    if ((*p | 0x20) == '{') depth++;
    else if (--depth == 0) return p + 1;
    p++;
  }
}
#endif

/* What a key no path names matches: no value to store, no children. */
static const node_t no_node = {.out = -1};

#if TSCAN_SSE2
/* keep + 16 - n: n bytes 0xff, then zeros */
static const unsigned char keep[32] = {255, 255, 255, 255, 255, 255, 255, 255,
                                       255, 255, 255, 255, 255, 255, 255, 255};
#endif

/* p after a key's closing quote: the first byte of its value (after ':' and any
 * whitespace), or NULL. */
static inline const char *tcolon(const char *p, const char *end) {
  if ((p = tws(p, end)) >= end || *p != ':' || (p = tws(p + 1, end)) >= end) return NULL;
  return p;
}

#if TSCAN_SSE2
/* Key guesses. Events from one source put their keys in the same order, so the trusted
 * scan remembers, for member i of each object on the paths, the key it found there last
 * and what that key matched: when the bytes at the next document's member i are that
 * key, its closing quote and the colon (one 16-byte comparison), the key's end, hash and
 * trie lookup are spared. A document that leaves out a member or two the one before had
 * (an event without "event" or "userId") matches the guesses one or two further on, so
 * optional members cost no lookup either. A guess is taken only when the bytes are
 * equal, so it never changes a result. The guesses are per thread (no locking; a path
 * set is shared by threads); a row serves the objects of one path set at a time
 * (guess_owner). */
typedef struct tguess {
  __m128i head;        /* the byte before the key's opening quote (in compact JSON the '{'
                          or ',' before the member), the key in its quotes and ':' (len
                          bytes); bytes past len do not count */
  const node_t *child; /* the key's node under the object (&no_node: none) */
  uint32_t bits;       /* the low len bits: the bytes that must be equal; never all equal
                          (1 << 16) while empty */
  uint32_t len;        /* key + 4, at most 15 (the byte after lies in the 16 compared);
                          0 only in the end mark (never written) */
} tguess_t;

/* Each row ends in an end mark: a guess that never matches and is never replaced, which
 * the scan stays on past the row's last member; objects that have no row (the paths'
 * rows ran out, or no path goes through them) start on never_guess, the same. */
static _Thread_local tguess_t guesses[GUESS_ROWS][GUESS_POS + 1];
static _Thread_local uint64_t guess_owner[GUESS_ROWS]; /* path set id of each row, 0 none */
static _Thread_local uint64_t guess_all; /* the set whose rows were all checked last */
static tguess_t never_guess = {.bits = 1u << 16, .child = &no_node};

/* Claim this thread's rows 0 .. rows - 1 for path set owner, emptying those that served
 * another set: once per scan, not per object (the set checked last needs nothing). */
static inline void guess_claim(int rows, uint64_t owner) {
  if (__builtin_expect(guess_all == owner, 1)) return;
  for (int r = 0; r < rows; r++) {
    if (guess_owner[r] == owner) continue;
    for (int i = 0; i < GUESS_POS; i++)
      guesses[r][i] = (tguess_t){_mm_set1_epi8(-1), &no_node, 1u << 16, 2};
    guesses[r][GUESS_POS] = never_guess;
    guess_owner[r] = owner;
  }
  guess_all = owner;
}

/* The guess for the first member of an object walked with node at. */
static inline tguess_t *guess_first(const node_t *at) {
  return at && at->row >= 0 ? guesses[at->row] : &never_guess;
}

/* Do the 16 bytes w, read from the byte before a key's opening quote, hold g's bytes? */
static inline int guess_is(__m128i w, const tguess_t *g) {
  return ((unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(w, g->head)) & g->bits) == g->bits;
}

/* For a document that leaves out a member or two the guesses hold: the one of the two
 * guesses after g whose bytes w holds, or NULL. */
static inline const tguess_t *guess_skip(__m128i w, const tguess_t *g) {
  if (!g->len) return NULL;
  return guess_is(w, g + 1) ? g + 1 : g[1].len && guess_is(w, g + 2) ? g + 2 : NULL;
}

/* The guess whose bytes w holds: g, else one of guess_skip's; or NULL. */
static inline const tguess_t *guess_find(__m128i w, const tguess_t *g) {
  return guess_is(w, g) ? g : guess_skip(w, g);
}

/* The guess for the member after g's in its object (an end mark stays). */
static inline tguess_t *guess_next(tguess_t *g) { return g + (g->len != 0); }
#else
typedef struct tguess tguess_t;
#endif

/* The member whose key's opening quote is just before k: sets *child to at's child of
 * that name (&no_node when at is NULL or has none) and returns the first byte of the value,
 * or NULL when the structure does not hold together before end. k <= last16 says 16
 * bytes can be read at k. A key of at most 15
 * plain bytes (nearly every key) is found, hashed and compared in one 16-byte register,
 * and in compact JSON the ':' is there too. */
static inline const char *tkey(const char *k, const char *end, const char *last16,
                               const node_t *at, const node_t **child, tguess_t *g) {
#if TSCAN_SSE2
  if (__builtin_expect(k <= last16, 1)) {
    __m128i w = _mm_loadu_si128((const __m128i *)(const void *)k);
    unsigned m = quote16(w);
    size_t n = (size_t)__builtin_ctz(m | 0x8000); /* k[15] at most: read above */
    if (__builtin_expect(k[n] == '"', 1)) { /* the key ends before any backslash */
      const node_t *c = &no_node;
      if (at) {
        __m128i km = _mm_loadu_si128((const __m128i *)(const void *)(keep + 16 - n));
        __m128i kw = _mm_and_si128(w, km);
        c = at->bucket[key_hash((uint64_t)_mm_cvtsi128_si64(kw), n)];
        /* equal zero-padded heads are equal keys: a validated key holds no NUL byte, and a
         * node key of 16 bytes or more has no zero in its head */
        while (c && _mm_movemask_epi8(_mm_cmpeq_epi8(
                        kw, _mm_loadu_si128((const __m128i *)(const void *)c->head))) != 0xffff)
          c = c->hnext;
        if (!c) c = &no_node;
        /* the byte before, the key in quotes, ':' and (within the 16 bytes) one more */
        if (g->len && n <= 11 && k[n + 1] == ':')
          *g = (tguess_t){_mm_loadu_si128((const __m128i *)(const void *)(k - 2)), c,
                          (1u << (n + 4)) - 1, (uint32_t)n + 4};
      }
      *child = c;
      const char *p = k + n + 1;
      if (__builtin_expect(n <= 13 && p[0] == ':' && (unsigned char)p[1] > ' ', 1))
        return p + 1; /* both bytes lie in the 16 just read */
      return tcolon(p, end);
    }
  }
#endif
  (void)g; /* a long or escaped key: not guessed */
  int kesc = 0;
  const char *q = tstring(k, end, &kesc);
  if (!q) return NULL;
  const node_t *c = child_match(at, k, (size_t)(q - 1 - k), kesc, end);
  *child = c ? c : &no_node;
  return tcolon(q, end);
}

/* An object being walked below the one the scan is in. */
typedef struct tframe {
  const node_t *at;  /* the trie node of the enclosing object */
  tguess_t *g;       /* the guess for the enclosing object's next member */
  const char *open;  /* this object's '{' */
  int idx;           /* this object's index into out[], or -1 */
} tframe_t;

/* p at the document's '{': walks the members of the objects on the requested paths and
 * of the objects directly inside them (an explicit stack, no recursion), matching keys
 * against the trie, and skips every other value by finding its end. Returns the byte
 * after the document's '}', or NULL when the structure does not hold together before
 * end. */
static const char *twalk(const char *p, const char *end, const node_t *at, uint64_t owner,
                         int rows, jscan_val_t *out) {
  tframe_t stack[JSCAN_MAX_DEPTH], *top = stack; /* objects open below the document's */
  /* p <= last16: 16 bytes can be read at p (in a shorter document true only at its first
   * byte, which the checks below of the byte before a key take into account) */
  const char *last16 = end - p >= 16 ? end - 16 : p;
  tguess_t *g; /* the guess for the next member's key (NULL without SSE2) */
#if TSCAN_SSE2
  guess_claim(rows, owner);
#else
  (void)rows, (void)owner;
#endif
  const node_t *child;
#if TSCAN_SSE2
  const tguess_t *hit;
#endif
open:            /* p at the '{' of an object walked with node at (NULL: matches nothing) */
#if TSCAN_SSE2
  g = guess_first(at);
  /* a guess is compared from the byte before the key's quote: here the '{' (only the
   * first can match: the others start with a ',' or whitespace) */
  if (__builtin_expect(end - p >= 16, 1) && /* (p <= last16 holds in a short document's '{') */
      guess_is(_mm_loadu_si128((const __m128i *)(const void *)p), hit = g))
    goto take;
#else
  g = NULL;
#endif
  if (__builtin_expect(p < last16 && p[1] == '"', 1)) { /* compact JSON: a first key */
    p += 2;
    goto member;
  }
  p = tws(p + 1, end);
  if (p < end && *p == '}') {
    p++;
    goto close;
  }
  for (;;) {
    if (p >= end || *p != '"') return NULL;
    p++;
#if TSCAN_SSE2
    /* (whitespace before the key: the guesses are compared from the byte before its quote) */
    if (end - (p - 2) >= 16 && /* (not p - 2 <= last16: see the '{' above) */
        (hit = guess_find(_mm_loadu_si128((const __m128i *)(const void *)(p - 2)), g))) {
      p -= 2;
      goto take;
    }
#endif
  member: /* p just after a key's opening quote, its guesses tried */
    if (!(p = tkey(p, end, last16, at, &child, g))) return NULL;
#if TSCAN_SSE2
    g = guess_next(g);
    goto value;
  take: /* hit: the guess for the member at p (the byte before its key's quote) */
    child = hit->child;
    p += hit->len; /* after the ':', inside the 16 bytes compared */
    if (__builtin_expect((unsigned char)*p <= ' ', 0) && (p = tws(p, end)) >= end) return NULL;
    g = (tguess_t *)hit + 1; /* a guess taken is no end mark */
  value:;
#endif
    int idx = child->out;
    jscan_type_t type;
    const char *q;
    switch (*p) {
      case '"': {
        int esc = 0;
#if TSCAN_SSE2
        /* sixteen bytes a step while they can be read at once (most values end in the
         * first); a backslash or the document's last bytes take tstring */
        const char *s16 = p + 1;
        unsigned m = 0;
        while (s16 <= last16 && !(m = quote16(_mm_loadu_si128((const __m128i *)(const void *)s16))))
          s16 += 16;
        if (__builtin_expect(m != 0 && s16[__builtin_ctz(m)] == '"', 1))
          q = s16 + 1 + __builtin_ctz(m);
        else
#endif
        if (!(q = tstring(p + 1, end, &esc))) return NULL;
        if (idx >= 0 && out[idx].type == JSCAN_NONE)
          out[idx] = (jscan_val_t){JSCAN_STRING, p + 1, (size_t)(q - p - 2), esc, 0};
        p = q;
        goto next;
      }
      case '{':
        /* An object inside one on a path is walked member by member too (cheaper than
         * matching its brackets); deeper ones are skipped, so the stack stays as deep as
         * the paths. */
        if (at) {
          if (top == stack + JSCAN_MAX_DEPTH - 1) return NULL;
          *top++ = (tframe_t){at, g, p, idx};
          at = child->child ? child : NULL;
          goto open;
        }
        type = JSCAN_OBJECT;
        q = tskip_container(p, end);
        break;
      case '[':
        type = JSCAN_ARRAY;
        q = tskip_container(p, end);
        break;
      /* a validated literal is the whole word */
      case 't':
        type = JSCAN_TRUE;
        q = end - p >= 4 ? p + 4 : NULL;
        break;
      case 'f':
        type = JSCAN_FALSE;
        q = end - p >= 5 ? p + 5 : NULL;
        break;
      case 'n':
        type = JSCAN_NULL;
        q = end - p >= 4 ? p + 4 : NULL;
        break;
      default:
        type = JSCAN_NUMBER;
        q = p;
        while (q < end && !delim[(unsigned char)*q]) q++;
        if (q == p) return NULL;
        break;
    }
    if (!q) return NULL;
    if (idx >= 0 && out[idx].type == JSCAN_NONE) {
      jscan_val_t v = {type, p, (size_t)(q - p), 0, 0};
      if (type == JSCAN_NUMBER) v.num = tnum(&v);
      out[idx] = v;
    }
    p = q;
  next: /* p just after a member's value */
    if (__builtin_expect(p <= last16, 1)) { /* compact JSON */
#if TSCAN_SSE2
      /* the next member's guess, from its ',' (past left-out members only after a ',') */
      __m128i w = _mm_loadu_si128((const __m128i *)(const void *)p);
      if (guess_is(w, g)) {
        hit = g;
        goto take;
      }
#endif
      if (p[0] == '}') {
        p++;
        goto close;
      }
      if (p[0] == ',') {
#if TSCAN_SSE2
        if ((hit = guess_skip(w, g))) goto take;
#endif
        if (p[1] == '"') {
          p += 2;
          goto member;
        }
      }
    }
    if (p >= end || (unsigned char)*p <= ' ') {
      p = tws(p, end);
      if (p >= end) return NULL;
    }
    if (*p == ',') {
      p = tws(p + 1, end);
      continue;
    }
    if (*p != '}') return NULL;
    p++;
  close: /* p just after an object's '}' */
    if (top == stack) return p;
    const tframe_t *f = --top;
    at = f->at;
    g = f->g;
    if (f->idx >= 0 && out[f->idx].type == JSCAN_NONE)
      out[f->idx] = (jscan_val_t){JSCAN_OBJECT, f->open, (size_t)(p - f->open), 0, 0};
    goto next;
  }
}

int jscan_scan_trusted(const jscan_paths_t *ps, const char *json, size_t len, jscan_val_t *out) {
  memset(out, 0, ps->n * sizeof *out);
  const char *end = json + len, *p = tws(json, end);
  if (p >= end || *p != '{') return -1;
  p = twalk(p, end, &ps->root, ps->id, ps->rows, out);
  return p && tws(p, end) == end ? 0 : -1;
}

/* ---- string decoding ---- */

static size_t utf8_put(char *o, unsigned cp) {
  if (cp < 0x80) {
    o[0] = (char)cp;
    return 1;
  }
  if (cp < 0x800) {
    o[0] = (char)(0xC0 | cp >> 6);
    o[1] = (char)(0x80 | (cp & 0x3F));
    return 2;
  }
  if (cp < 0x10000) {
    o[0] = (char)(0xE0 | cp >> 12);
    o[1] = (char)(0x80 | (cp >> 6 & 0x3F));
    o[2] = (char)(0x80 | (cp & 0x3F));
    return 3;
  }
  o[0] = (char)(0xF0 | cp >> 18);
  o[1] = (char)(0x80 | (cp >> 12 & 0x3F));
  o[2] = (char)(0x80 | (cp >> 6 & 0x3F));
  o[3] = (char)(0x80 | (cp & 0x3F));
  return 4;
}

static unsigned hexval4(const char *p) {
  unsigned v = 0;
  for (int i = 0; i < 4; i++) {
    char c = p[i];
    v = v << 4 | (unsigned)(c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10);
  }
  return v;
}

long jscan_string(const jscan_val_t *v, char *out, size_t cap) {
  if (!cap) return -1;
  if (!v->escaped && v->n < cap) { /* the common case: the bytes are the text */
    memcpy(out, v->p, v->n);
    out[v->n] = 0;
    return (long)v->n;
  }
  size_t o = 0;
  const char *p = v->p, *end = v->p + v->n;
  while (p < end) {
    char buf[4];
    size_t bn;
    if (*p != '\\') {
      /* Copy one UTF-8 character whole, or stop. */
      unsigned char c = (unsigned char)*p;
      bn = c < 0x80 ? 1 : c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
      if (bn > (size_t)(end - p)) bn = (size_t)(end - p);
      memcpy(buf, p, bn);
      p += bn;
    } else {
      if (end - p < 2) return -1;
      char e = p[1];
      p += 2;
      switch (e) {
        case 'n': buf[0] = '\n'; bn = 1; break;
        case 't': buf[0] = '\t'; bn = 1; break;
        case 'r': buf[0] = '\r'; bn = 1; break;
        case 'b': buf[0] = '\b'; bn = 1; break;
        case 'f': buf[0] = '\f'; bn = 1; break;
        case '"': case '\\': case '/': buf[0] = e; bn = 1; break;
        case 'u': {
          if (end - p < 4 || !hex4(p)) return -1;
          unsigned cp = hexval4(p);
          p += 4;
          if (cp >= 0xD800 && cp < 0xDC00 && end - p >= 6 && p[0] == '\\' && p[1] == 'u' &&
              hex4(p + 2)) {
            unsigned lo = hexval4(p + 2);
            if (lo >= 0xDC00 && lo < 0xE000) {
              cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
              p += 6;
            }
          }
          if (cp >= 0xD800 && cp < 0xE000) cp = 0xFFFD; /* lone surrogate */
          bn = utf8_put(buf, cp);
          break;
        }
        default: return -1;
      }
    }
    if (o + bn >= cap) break;
    memcpy(out + o, buf, bn);
    o += bn;
  }
  out[o] = 0;
  return (long)o;
}

/* ---- walking ---- */

/* Scan one value at s->p into *v (span and type). */
static int value_into(scan_t *s, jscan_val_t *v) {
  jscan_val_t *saved = s->out;
  v->type = JSCAN_NONE;
  s->out = v;
  int rc = value(s, NULL, 0);
  s->out = saved;
  return rc;
}

/* value_into for an object (at s->p) that the tape records at level: what value() does
 * for it, without its calls. */
static int object_rec_into(scan_t *s, int level, jscan_val_t *v) {
  const char *open = s->p;
  int outer = s->level;
  s->level = level;
  if (++s->depth > JSCAN_MAX_DEPTH || object_rec(s)) return -1;
  s->depth--;
  s->level = outer;
  *v = (jscan_val_t){JSCAN_OBJECT, open, (size_t)(s->p - open), 0, 0};
  return 0;
}

static int elem(scan_t *s, jscan_elems_t *e) {
  jscan_val_t v;
  uint32_t first = s->tape ? (uint32_t)s->tape->nobj : 0;
  int level = s->level;
  s->level = 0; /* an element is a tape's top level (when there is a tape) */
  int rc = s->tape && s->p < s->end && *s->p == '{' ? object_rec_into(s, 0, &v) : value_into(s, &v);
  s->level = level;
  if (rc) return -1;
  if (e->n < e->max) {
    if (e->n == e->cap) {
      e->cap = e->cap ? e->cap * 2 : 64;
      if (e->cap > e->max) e->cap = e->max;
      e->v = xrealloc(e->v, e->cap * sizeof *e->v);
      e->obj = xrealloc(e->obj, 2 * e->cap * sizeof *e->obj);
    }
    e->v[e->n] = v;
    if (s->tape) {
      e->obj[2 * e->n] = first;
      e->obj[2 * e->n + 1] = (uint32_t)s->tape->nobj;
    }
  }
  e->n++; /* counted past max: the caller reports how many there were */
  return 0;
}

/* The value of the member e names: value_into, recording the elements when it is an
 * array. The array is one level deeper, as value counts it. */
static int value_elems(scan_t *s, jscan_val_t *v, jscan_elems_t *e) {
  if (s->p >= s->end || *s->p != '[') {
    if (value_into(s, v)) return -1;
  } else {
    *v = (jscan_val_t){JSCAN_ARRAY, s->p, 0, 0, 0};
    if (++s->depth > JSCAN_MAX_DEPTH || array(s, e)) return -1;
    s->depth--;
    v->n = (size_t)(s->p - v->p);
  }
  e->val = *v;
  return 0;
}

/* Start a walk that records into t (NULL: none). */
static void tape_start(jscan_tape_t *t) {
  if (!t) return;
  t->nobj = 0;
  t->kept = 0;
  for (int i = 0; i < JSCAN_TAPE_LEVELS; i++) t->lv[i].n = 0;
}

/* The walk succeeded: point each kept object at its members (the buffers no longer move). */
static void tape_finish(jscan_tape_t *t) {
  if (!t) return;
  for (size_t i = 0; i < t->nobj; i++) {
    jscan_obj_t *o = &t->obj[i];
    if (o->members) o->members = t->lv[o->level].m + o->start;
  }
}

/* ws() on a cursor held in a local (object_rec keeps its position in a register: through
 * s->p, every member written to the tape made the compiler read it again). */
static inline const char *ws_at(const char *p, const char *end) {
  if (__builtin_expect(p < end && (unsigned char)*p > ' ', 1)) return p;
  while (p < end && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t')) p++;
  return p;
}

/* The position just past the byte c at p or after white space there, or NULL when
 * another byte comes first. In compact JSON c is at p: one test. */
static inline const char *past(const char *p, const char *end, char c) {
  if (__builtin_expect(p < end && *p == c, 1)) return p + 1;
  p = ws_at(p, end);
  return p < end && *p == c ? p + 1 : NULL;
}

/* string() on a local cursor at an opening quote (end: s->end, in a local: the stores
 * of the span could alias s->end, which was read again for each string): the position
 * after the string, or NULL on malformed input. */
static inline const char *string_at(scan_t *s, const char *p, const char *end, const char **sp,
                                    size_t *sn, int *escaped) {
  const char *start = p + 1, *q = plain_end(start, end);
  if (__builtin_expect(q < end && *q == '"', 1)) {
    *sp = start;
    *sn = (size_t)(q - start);
    *escaped = 0;
    return q + 1;
  }
  s->p = p;
  return string_slow(s, sp, sn, escaped) ? NULL : s->p;
}

/* object() for an object the tape records at level s->level (see jscan_tape_t). The same
 * checks; each member is written straight into its level's buffer (the objects inside
 * go to the next level's, so the slot stays put); strings, numbers and objects are taken
 * without value()'s calls, and the position is kept in a local (see ws_at). */
static __attribute__((noinline)) int object_rec(scan_t *s) {
  jscan_tape_t *t = s->tape;
  int level = s->level;
  if (level >= JSCAN_TAPE_LEVELS || t->kept >= JSCAN_TAPE_MAX) {
    /* Deeper than kept, or past the budget: walk it and what it holds without recording. */
    s->level = -1;
    int rc = object(s, NULL);
    s->level = level;
    return rc;
  }
  if (t->nobj == t->cap) {
    t->cap = t->cap ? t->cap * 2 : 64;
    t->obj = xrealloc(t->obj, t->cap * sizeof *t->obj);
  }
  size_t oi = t->nobj++;
  /* No other object uses this level while this one is open: its count can live here. */
  __typeof__(t->lv[0]) *lv = &t->lv[level];
  size_t start = lv->n, n = start;
  const char *open = s->p, *end = s->end;
  /* In locals: the members' stores may alias them (the objects inside use the next
   * level's buffer, never this one; -26 instructions per batched event). */
  jscan_member_t *mem = lv->m;
  size_t cap = lv->cap;
  const int lazy_num = s->lazy_num;
  const char *p = ws_at(open + 1, end);
  if (p < end && *p == '}') {
    p++;
  } else {
    for (;;) {
      if (n == cap) {
        cap = lv->cap = cap ? cap * 2 : 256;
        mem = lv->m = xrealloc(mem, cap * sizeof *mem);
      }
      jscan_member_t *m = &mem[n];
      p = ws_at(p, end);
      if (p >= end || *p != '"' ||
          !(p = string_at(s, p, end, &m->key, &m->keylen, &m->key_escaped)))
        return -1;
      if (!(p = past(p, end, ':'))) return -1;
      p = ws_at(p, end);
      if (p < end && *p == '"') {
        m->val.type = JSCAN_STRING;
        m->val.num = 0;
        if (!(p = string_at(s, p, end, &m->val.p, &m->val.n, &m->val.escaped))) return -1;
      } else if (p < end && *p == '{') {
        s->p = p;
        if (object_rec_into(s, level + 1, &m->val)) return -1;
        p = s->p;
      } else if (lazy_num && p < end && (*p == '-' || (*p >= '0' && *p <= '9'))) {
        const char *v = p;
        if (!(p = number_at(p, end))) return -1;
        m->val = (jscan_val_t){JSCAN_NUMBER, v, (size_t)(p - v), 0, 0};
      } else {
        s->p = p;
        s->level = level + 1;
        int rc = value_into(s, &m->val);
        s->level = level;
        if (rc) return -1;
        p = s->p;
      }
      n++;
      const char *next = past(p, end, ',');
      if (next) {
        p = next;
        continue;
      }
      if (!(p = past(p, end, '}'))) return -1;
      break;
    }
  }
  s->p = p;
  lv->n = n;
  t->kept += n - start;
  /* members is only a mark (kept) until tape_finish points it at the buffer. */
  t->obj[oi] = (jscan_obj_t){open, (size_t)(p - open), (const jscan_member_t *)t, n - start,
                             (uint32_t)level, (uint32_t)start};
  return 0;
}

static long members(const char *json, size_t len, jscan_member_t *out, size_t max,
                    jscan_elems_t *e, jscan_tape_t *t) {
  if (e) {
    e->val = (jscan_val_t){JSCAN_NONE, NULL, 0, 0, 0};
    e->n = 0;
  }
  tape_start(t);
  scan_t s = {json, json + len, NULL, 1, 1, t, 0};
  ws(&s);
  if (s.p >= s.end || *s.p != '{') return -1;
  s.p++;
  ws(&s);
  size_t n = 0;
  if (s.p < s.end && *s.p == '}') {
    s.p++;
  } else {
    for (;;) {
      ws(&s);
      jscan_member_t m;
      if (string(&s, &m.key, &m.keylen, &m.key_escaped)) return -1;
      ws(&s);
      if (s.p >= s.end || *s.p != ':') return -1;
      s.p++;
      ws(&s);
      /* the first member of e's name only, the one a lookup by name finds */
      if (e && e->val.type == JSCAN_NONE && jscan_key_is(&m, e->key, e->keylen)) {
        if (value_elems(&s, &m.val, e)) return -1;
      } else if (s.p < s.end && *s.p == '"') {
        /* Strings, and objects a tape records, as value_into takes them without its
         * calls: most members of an event's top level (-349 instructions per event
         * sent alone). */
        m.val = (jscan_val_t){JSCAN_STRING, NULL, 0, 0, 0};
        if (string(&s, &m.val.p, &m.val.n, &m.val.escaped)) return -1;
      } else if (t && s.p < s.end && *s.p == '{') {
        if (object_rec_into(&s, 0, &m.val)) return -1;
      } else if (value_into(&s, &m.val)) {
        return -1;
      }
      if (n >= max) return -2;
      out[n++] = m;
      ws(&s);
      if (s.p >= s.end) return -1;
      if (*s.p == ',') {
        s.p++;
        continue;
      }
      if (*s.p != '}') return -1;
      s.p++;
      break;
    }
  }
  ws(&s);
  if (s.p != s.end) return -1;
  tape_finish(t);
  return (long)n;
}

long jscan_members(const char *json, size_t len, jscan_member_t *out, size_t max) {
  return members(json, len, out, max, NULL, NULL);
}

long jscan_members_tape(const char *json, size_t len, jscan_member_t *out, size_t max,
                        jscan_tape_t *t) {
  return members(json, len, out, max, NULL, t);
}

long jscan_members_elems(const char *json, size_t len, jscan_member_t *out, size_t max,
                         jscan_elems_t *e) {
  return members(json, len, out, max, e, e->tape);
}

void jscan_tape_free(jscan_tape_t *t) {
  if (!t) return;
  free(t->obj);
  for (int i = 0; i < JSCAN_TAPE_LEVELS; i++) free(t->lv[i].m);
  memset(t, 0, sizeof *t);
}

void jscan_elems_free(jscan_elems_t *e) {
  if (!e) return;
  free(e->v);
  free(e->obj);
  e->obj = NULL;
  e->v = NULL;
  e->cap = 0;
  e->n = 0;
}

/* ---- trusted walking (input already validated) ---- */


static const char *skip_value_t(const char *p, const char *end, jscan_val_t *v) {
  v->p = p;
  v->escaped = 0;
  v->num = 0;
  const char *q;
  switch (*p) {
    case '"':
      v->type = JSCAN_STRING;
      v->p = p + 1;
      q = tstring(p + 1, end, &v->escaped);
      v->n = q ? (size_t)(q - p - 2) : (size_t)(end - p - 1); /* unterminated: the rest */
      return q ? q : end;
    case '{':
    case '[':
      v->type = *p == '{' ? JSCAN_OBJECT : JSCAN_ARRAY;
      q = tskip_container(p, end);
      if (!q) q = end;
      v->n = (size_t)(q - p);
      return q;
    default:
      v->type = scalar_type(*p);
      q = p;
      while (q < end && !delim[(unsigned char)*q]) q++;
      v->n = (size_t)(q - p);
      return q;
  }
}

long jscan_members_trusted(const char *json, size_t len, jscan_member_t *out, size_t max) {
  const char *p = tws(json, json + len), *end = json + len;
  if (p >= end || *p != '{') return -1;
  p = tws(p + 1, end);
  size_t n = 0;
  while (p < end && *p == '"') {
    jscan_member_t m;
    m.key_escaped = 0;
    const char *k = p + 1;
    if (!(p = tstring(k, end, &m.key_escaped))) return -1;
    m.key = k;
    m.keylen = (size_t)(p - k - 1);
    p = tws(p, end);
    if (p >= end || *p != ':') return -1;
    p = tws(p + 1, end);
    if (p >= end) return -1;
    p = tws(skip_value_t(p, end, &m.val), end);
    if (n >= max) return -2;
    out[n++] = m;
    if (p < end && *p == ',') p = tws(p + 1, end);
  }
  return (long)n;
}

int jscan_array_next(const jscan_val_t *arr, size_t *pos, jscan_val_t *out) {
  if (arr->type != JSCAN_ARRAY || arr->n < 2) return -1;
  const char *end = arr->p + arr->n - 1; /* the closing ']' */
  const char *p = tws(arr->p + (*pos ? *pos : 1), end);
  if (*pos) {
    if (p >= end) return 0;
    if (*p != ',') return -1;
    p = tws(p + 1, end);
  }
  if (p >= end) return 0;
  p = skip_value_t(p, end, out);
  *pos = (size_t)(p - arr->p);
  return 1;
}

double jscan_num(const jscan_val_t *v) {
  if (v->type != JSCAN_NUMBER) return 0;
  char tmp[64];
  size_t n = v->n < sizeof tmp - 1 ? v->n : sizeof tmp - 1;
  memcpy(tmp, v->p, n);
  tmp[n] = 0;
  return strtod(tmp, NULL);
}

int jscan_key_is(const jscan_member_t *m, const char *name, size_t namelen) {
  if (!m->key_escaped) return m->keylen == namelen && memcmp(m->key, name, namelen) == 0;
  char dec[256];
  jscan_val_t kv = {JSCAN_STRING, m->key, m->keylen, 1, 0};
  long n = m->keylen < sizeof dec ? jscan_string(&kv, dec, sizeof dec) : -1;
  return n == (long)namelen && memcmp(dec, name, namelen) == 0;
}
