/* jscan: one-pass JSON field extraction (see jscan.h).
 *
 * The requested paths form a trie of object keys. The scanner is a recursive descent
 * over the document that carries the trie node of the object it is in (NULL once outside
 * every requested path, where it only validates and skips). */
#include "jscan.h"

#include <stdlib.h>
#include <string.h>

#include "util/mem.h"

typedef struct node {
  char *key;
  size_t keylen;
  int out;             /* index into out[], or -1 */
  struct node *child;  /* first child */
  struct node *next;   /* next sibling */
} node_t;

struct jscan_paths {
  node_t root;
  size_t n;
};

static node_t *child_get(node_t *parent, const char *k, size_t n, int create) {
  for (node_t *c = parent->child; c; c = c->next)
    if (c->keylen == n && memcmp(c->key, k, n) == 0) return c;
  if (!create) return NULL;
  node_t *c = xcalloc(1, sizeof *c);
  c->key = xstrndup(k, n);
  c->keylen = n;
  c->out = -1;
  c->next = parent->child;
  parent->child = c;
  return c;
}

static void node_free(node_t *n) {
  for (node_t *c = n->child, *next; c; c = next) {
    next = c->next;
    node_free(c);
    free(c->key);
    free(c);
  }
}

jscan_paths_t *jscan_compile(const char *const *paths, size_t n) {
  if (n > JSCAN_MAX_PATHS) return NULL;
  jscan_paths_t *ps = xcalloc(1, sizeof *ps);
  ps->root.out = -1;
  ps->n = n;
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
  return ps;
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
} scan_t;

static void ws(scan_t *s) {
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

/* Bytes that need no attention inside a string: printable ASCII but '"' and '\\'. */
static const unsigned char plain[256] = {
#define R16(x) x, x, x, x, x, x, x, x, x, x, x, x, x, x, x, x
    R16(0), R16(0),                                       /* 0x00-0x1f: control */
    1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,       /* 0x20-0x2f: '"' */
    R16(1), R16(1),                                       /* 0x30-0x4f */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1,       /* 0x50-0x5f: '\\' */
    R16(1), R16(1),                                       /* 0x60-0x7f */
    R16(0), R16(0), R16(0), R16(0), R16(0), R16(0), R16(0), R16(0), /* 0x80-0xff: UTF-8 */
#undef R16
};

/* 1 when none of the 8 bytes of w needs attention (plain[] above for each): no '"', no
 * '\\', nothing below 0x20 or from 0x80. Exact: each term is the classic "has a zero
 * byte" / "has a byte below n" test, which never reports a byte that is not there. */
static inline int all_plain(uint64_t w) {
  const uint64_t ones = 0x0101010101010101ull, highs = 0x8080808080808080ull;
  uint64_t q = w ^ (ones * '"'), b = w ^ (ones * '\\');
  uint64_t t = ((q - ones) & ~q) | ((b - ones) & ~b) | ((w - ones * 0x20) & ~w) | w;
  return !(t & highs);
}

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
static int string(scan_t *s, const char **sp, size_t *sn, int *escaped) {
  if (s->p >= s->end || *s->p != '"') return -1;
  const char *start = ++s->p;
  int esc = 0;
  while (s->p < s->end) {
    /* Plain bytes are the common case: skip whole 8-byte words of them, then the rest
     * with one table lookup each. */
    while (s->end - s->p >= 8) {
      uint64_t w;
      memcpy(&w, s->p, 8);
      if (!all_plain(w)) break;
      s->p += 8;
    }
    while (s->p < s->end && plain[(unsigned char)*s->p]) s->p++;
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

static int number(scan_t *s) {
  const char *p = s->p;
  if (p < s->end && *p == '-') p++;
  if (p >= s->end) return -1;
  if (*p == '0') {
    p++;
  } else if (*p >= '1' && *p <= '9') {
    while (p < s->end && *p >= '0' && *p <= '9') p++;
  } else {
    return -1;
  }
  if (p < s->end && *p == '.') {
    p++;
    if (p >= s->end || *p < '0' || *p > '9') return -1;
    while (p < s->end && *p >= '0' && *p <= '9') p++;
  }
  if (p < s->end && (*p == 'e' || *p == 'E')) {
    p++;
    if (p < s->end && (*p == '+' || *p == '-')) p++;
    if (p >= s->end || *p < '0' || *p > '9') return -1;
    while (p < s->end && *p >= '0' && *p <= '9') p++;
  }
  s->p = p;
  return 0;
}

static int literal(scan_t *s, const char *word, size_t n) {
  if ((size_t)(s->end - s->p) < n || memcmp(s->p, word, n) != 0) return -1;
  s->p += n;
  return 0;
}

static int value(scan_t *s, const node_t *at, int out_index);

static int object(scan_t *s, const node_t *at) {
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
    const node_t *child = NULL;
    if (at) {
      if (!kesc) {
        for (const node_t *c = at->child; c && !child; c = c->next)
          if (c->keylen == kn && memcmp(c->key, k, kn) == 0) child = c;
      } else if (kn < 256) {
        char dec[256];
        jscan_val_t kv = {JSCAN_STRING, k, kn, 1, 0};
        long dn = jscan_string(&kv, dec, sizeof dec);
        for (const node_t *c = at->child; c && dn >= 0 && !child; c = c->next)
          if (c->keylen == (size_t)dn && memcmp(c->key, dec, (size_t)dn) == 0) child = c;
      }
    }
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

static int array(scan_t *s) {
  s->p++; /* '[' */
  ws(s);
  if (s->p < s->end && *s->p == ']') {
    s->p++;
    return 0;
  }
  for (;;) {
    ws(s);
    if (value(s, NULL, -1)) return -1;
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
    case '[':
      if (++s->depth > JSCAN_MAX_DEPTH) return -1;
      v.type = JSCAN_ARRAY;
      rc = array(s);
      s->depth--;
      break;
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

long jscan_members(const char *json, size_t len, jscan_member_t *out, size_t max) {
  scan_t s = {json, json + len, NULL, 1, 1};
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
      if (value_into(&s, &m.val)) return -1;
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
  return s.p == s.end ? (long)n : -1;
}

/* ---- trusted walking (input already validated) ---- */

/* Bytes that end a run inside a string: '"' and '\\'. */
static const unsigned char stop[256] = {['"'] = 1, ['\\'] = 1};
/* Bytes that end a number or literal. */
static const unsigned char delim[256] = {[','] = 1, ['}'] = 1, [']'] = 1, [' '] = 1,
                                         ['\n'] = 1, ['\r'] = 1, ['\t'] = 1};

/* p just after an opening quote; returns just after the closing quote. */
static const char *skip_string_t(const char *p, const char *end, int *escaped) {
  for (;;) {
    while (p < end && !stop[(unsigned char)*p]) p++;
    if (p >= end) return end;
    if (*p == '"') return p + 1;
    *escaped = 1;
    p += 2;
  }
}

static const char *skip_value_t(const char *p, const char *end, jscan_val_t *v) {
  v->p = p;
  v->escaped = 0;
  v->num = 0;
  switch (*p) {
    case '"': {
      const char *q = skip_string_t(p + 1, end, &v->escaped);
      v->type = JSCAN_STRING;
      v->p = p + 1;
      v->n = (size_t)(q - p - 2);
      return q;
    }
    case '{':
    case '[': {
      v->type = *p == '{' ? JSCAN_OBJECT : JSCAN_ARRAY;
      int depth = 0, esc = 0;
      const char *q = p;
      while (q < end) {
        char c = *q;
        if (c == '"') {
          q = skip_string_t(q + 1, end, &esc);
          continue;
        }
        if (c == '{' || c == '[') depth++;
        if (c == '}' || c == ']') {
          if (--depth == 0) {
            q++;
            break;
          }
        }
        q++;
      }
      v->n = (size_t)(q - p);
      return q;
    }
    default: {
      v->type = *p == 't' ? JSCAN_TRUE : *p == 'f' ? JSCAN_FALSE : *p == 'n' ? JSCAN_NULL : JSCAN_NUMBER;
      const char *q = p;
      while (q < end && !delim[(unsigned char)*q]) q++;
      v->n = (size_t)(q - p);
      return q;
    }
  }
}

static const char *ws_t(const char *p, const char *end) {
  while (p < end && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t')) p++;
  return p;
}

long jscan_members_trusted(const char *json, size_t len, jscan_member_t *out, size_t max) {
  const char *p = ws_t(json, json + len), *end = json + len;
  if (p >= end || *p != '{') return -1;
  p = ws_t(p + 1, end);
  size_t n = 0;
  while (p < end && *p == '"') {
    jscan_member_t m;
    m.key_escaped = 0;
    const char *k = p + 1;
    p = skip_string_t(k, end, &m.key_escaped);
    m.key = k;
    m.keylen = (size_t)(p - k - 1);
    p = ws_t(p, end);
    if (p >= end || *p != ':') return -1;
    p = ws_t(p + 1, end);
    if (p >= end) return -1;
    p = ws_t(skip_value_t(p, end, &m.val), end);
    if (n >= max) return -2;
    out[n++] = m;
    if (p < end && *p == ',') p = ws_t(p + 1, end);
  }
  return (long)n;
}

int jscan_array_next(const jscan_val_t *arr, size_t *pos, jscan_val_t *out) {
  if (arr->type != JSCAN_ARRAY || arr->n < 2) return -1;
  const char *end = arr->p + arr->n - 1; /* the closing ']' */
  const char *p = ws_t(arr->p + (*pos ? *pos : 1), end);
  if (*pos) {
    if (p >= end) return 0;
    if (*p != ',') return -1;
    p = ws_t(p + 1, end);
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
