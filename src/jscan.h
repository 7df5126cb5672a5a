/* jscan: pick a few fields out of a JSON document in one pass, without building a tree.
 *
 * Processing reads every stored event again (live, and at replay millions per second),
 * but needs only a dozen of its fields. A DOM parser spends most of its time allocating
 * nodes for the rest; jscan walks the bytes once, validates the structure, and records,
 * for each requested path, where its value lies. Values stay in the caller's buffer:
 * strings are reported as spans between the quotes (raw, possibly with escapes; use
 * jscan_string to get the decoded text), numbers as spans and as a double.
 *
 * Paths are dotted object keys ("context.page.url"); arrays are walked (and validated)
 * but never matched. A path matches only the first time it occurs. Keys containing '.'
 * cannot be requested. The input is untrusted: depth is bounded (JSCAN_MAX_DEPTH), every
 * read is bounds-checked, and a malformed document is reported as an error — jscan is
 * fuzzed. Bytes validated before (log records) can take jscan_scan_trusted, which skips
 * what no path needs without checking it (on stored events, 60% of the instructions). */
#ifndef SLUICE_JSCAN_H
#define SLUICE_JSCAN_H

#include <stddef.h>
#include <stdint.h>

#define JSCAN_MAX_DEPTH 64
#define JSCAN_MAX_PATHS 64

typedef enum {
  JSCAN_NONE = 0, /* path absent */
  JSCAN_STRING,
  JSCAN_NUMBER,
  JSCAN_TRUE,
  JSCAN_FALSE,
  JSCAN_NULL,
  JSCAN_OBJECT,
  JSCAN_ARRAY,
} jscan_type_t;

typedef struct jscan_val {
  jscan_type_t type;
  const char *p;   /* value bytes: inside the quotes for strings; whole value otherwise */
  size_t n;
  int escaped;     /* string contains backslash escapes */
  double num;      /* JSCAN_NUMBER */
} jscan_val_t;

/* A compiled set of paths. */
typedef struct jscan_paths jscan_paths_t;

/* Compile paths (n <= JSCAN_MAX_PATHS, each a NUL-terminated dotted key path, borrowed
 * only during the call). NULL on a bad path (empty segment, too deep). */
jscan_paths_t *jscan_compile(const char *const *paths, size_t n);
void jscan_paths_free(jscan_paths_t *ps);

/* Scan the document json[0..len) (an object). out[i] receives path i (JSCAN_NONE when
 * absent). Returns 0, or -1 for malformed JSON, a non-object document or too much depth. */
int jscan_scan(const jscan_paths_t *ps, const char *json, size_t len, jscan_val_t *out);

/* jscan_scan for a document whose bytes were validated before and are known to be intact
 * (a log record: ingestion validated it strictly, the log's CRC-32C vouches for the
 * bytes). It reads only the structure on the requested paths and of the objects directly
 * inside those; other values are skipped by finding their end (quotes and brackets only),
 * literals are taken whole from their first byte, and strings are not checked for UTF-8,
 * control bytes or escapes. Each thread keeps the keys it met at each member of the
 * objects on the paths (6.5 KiB a thread): a document that repeats them there, or leaves
 * out one or two of them (events of one source do), is matched by comparing bytes,
 * without a lookup. On any document
 * jscan_scan accepts it fills out exactly as jscan_scan does (fuzzed). On other bytes it never reads outside json[0..len) and keeps
 * no more open objects than the paths are deep plus one (a fixed stack, no recursion): it
 * returns -1 when the structure it walks does not hold together, or 0 with spans that may
 * not mean much. */
int jscan_scan_trusted(const jscan_paths_t *ps, const char *json, size_t len, jscan_val_t *out);

/* ---- Walking objects and arrays ---- */

typedef struct jscan_member {
  const char *key;  /* raw key bytes inside the quotes */
  size_t keylen;
  int key_escaped;
  jscan_val_t val;
} jscan_member_t;

/* Index the members of the object json[0..len) (one object, whitespace around allowed),
 * validating every value. Returns the member count (up to max stored in out), -1 for
 * malformed JSON or a non-object, -2 when the object has more than max members.
 * Numbers' num is left 0 (see jscan_num). */
long jscan_members(const char *json, size_t len, jscan_member_t *out, size_t max);

/* The same for an object inside a document already validated (by jscan_members or
 * jscan_scan): no checks, about a third of the work. Malformed input gives wrong spans,
 * never reads outside json[0..len). Numbers' num is left 0 (see jscan_num). */
long jscan_members_trusted(const char *json, size_t len, jscan_member_t *out, size_t max);

/* Objects indexed while they are validated: the collector reads members of an event's
 * nested objects (context, context.page) after validating the event, and indexing them
 * then walks their bytes a second time (most of the cost of a first read). A tape keeps
 * the members of every object the validating walk meets, up to JSCAN_TAPE_LEVELS deep
 * and outside arrays, for jscan_members_tape and jscan_members_elems. Each object's
 * members lie together (one buffer per nesting level, so an object's children never land
 * among its members). Once JSCAN_TAPE_MAX members are kept, the objects that open
 * later are not recorded (they are indexed the usual way when read). */
#define JSCAN_TAPE_LEVELS 4
#define JSCAN_TAPE_MAX 65536

typedef struct jscan_obj {
  const char *p;                 /* the object's bytes, '{' to '}' */
  size_t n;
  const jscan_member_t *members; /* its members in order */
  size_t count;
  uint32_t level, start;         /* where they are kept (internal) */
} jscan_obj_t;

typedef struct jscan_tape {
  jscan_obj_t *obj; /* OUT: the objects, in the order they open (a parent before its children) */
  size_t nobj, cap;
  struct {
    jscan_member_t *m;
    size_t n, cap;
  } lv[JSCAN_TAPE_LEVELS]; /* internal */
  size_t kept;             /* internal: members kept by this walk */
} jscan_tape_t;

/* jscan_members that also records in t (emptied first) the objects nested in the
 * object's members (not the object itself: its members are out). Returns what
 * jscan_members returns; t is meaningful only when that is >= 0, and until t's next use. */
long jscan_members_tape(const char *json, size_t len, jscan_member_t *out, size_t max,
                        jscan_tape_t *t);
/* Free what t holds; t itself is the caller's. NULL is a no-op. */
void jscan_tape_free(jscan_tape_t *t);

/* The elements of one array member, recorded while jscan_members_elems validates it: a
 * body that is indexed and then walked element by element (a /v1/batch body and its
 * "batch" array) need not find each element's end a second time. The caller sets key,
 * keylen and max and owns v (grown with xrealloc, kept across calls for reuse; free it
 * with jscan_elems_free). */
typedef struct jscan_elems {
  const char *key;  /* IN: the member's name (decoded, as jscan_key_is compares it) */
  size_t keylen;
  size_t max;       /* IN: at most this many elements are stored in v */
  jscan_val_t val;  /* OUT: the first member of that name (JSCAN_NONE when absent) */
  jscan_val_t *v;   /* OUT: its elements v[0..min(n, max)), when val is an array */
  size_t n;         /* OUT: its element count, also past max (0 when not an array) */
  size_t cap;       /* allocated entries of v */
  /* IN: when not NULL, the objects of the whole body are recorded there (see
   * jscan_tape_t; an element is a tape's top level) and obj[2i], obj[2i+1] bound element
   * i's: tape->obj[obj[2i] .. obj[2i+1]), the element itself first when it is kept. */
  jscan_tape_t *tape;
  uint32_t *obj;    /* OUT: 2 * cap entries */
} jscan_elems_t;

/* jscan_members that also fills e (see jscan_elems_t) from the first top-level member
 * named e->key: each element of that member's array is recorded as jscan_array_next
 * would give it (spans and types; strings' p inside the quotes; num left 0), in order.
 * Returns what jscan_members returns; e is meaningful only when that is >= 0. */
long jscan_members_elems(const char *json, size_t len, jscan_member_t *out, size_t max,
                         jscan_elems_t *e);
/* Free e's elements; e itself is the caller's. NULL is a no-op. */
void jscan_elems_free(jscan_elems_t *e);

/* Iterate the elements of a JSCAN_ARRAY value taken from a validated document: start
 * with *pos = 0; returns 1 with *out set (num left 0), 0 after the last element. */
int jscan_array_next(const jscan_val_t *arr, size_t *pos, jscan_val_t *out);

/* The number a JSCAN_NUMBER value holds (0 for other types). */
double jscan_num(const jscan_val_t *v);

/* Does the raw key (as in jscan_member_t) equal name once decoded? */
int jscan_key_is(const jscan_member_t *m, const char *name, size_t namelen);

/* Decode a JSCAN_STRING value into out (capacity cap, NUL-terminated, truncated at a
 * character boundary when too long). Returns the decoded length, or -1 for a bad escape.
 * Unescaped values are copied as they are. */
long jscan_string(const jscan_val_t *v, char *out, size_t cap);

#endif
