/* evdoc: one event as the client's JSON bytes plus a short list of edits.
 *
 * The collector must validate each event, add a dozen fields and remove a few, then store
 * it. Parsing into a tree and printing it back costs several times more than everything
 * else together (allocating a node per value, re-formatting every number). An evdoc
 * instead validates the bytes once (jscan), indexes objects lazily as their members are
 * asked for, records edits (set a value, delete a member, keep only some members), and
 * writes the result by copying the client's bytes and splicing the edits in: untouched
 * members — typically all of "properties" — are copied byte for byte.
 *
 * Paths are dotted member names, at most EVDOC_MAX_DEPTH deep ("context.page.url");
 * path_v variants take segments, for names that may contain dots. Reads see the edits
 * made so far. Setting a path below a member that is not an object replaces that member
 * with an object. New members are written after the existing ones, in the order they were
 * first set. Arrays are values; paths never go inside them.
 *
 * An evdoc is reused from event to event (evdoc_load resets it), so steady state does not
 * allocate. The JSON bytes are borrowed and must stay unchanged until the next load. */
#ifndef SLUICE_EVDOC_H
#define SLUICE_EVDOC_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "jscan.h"
#include "util/buf.h"

#define EVDOC_MAX_DEPTH 6
#define EVDOC_MAX_MEMBERS 256 /* top-level members; more is refused (nested: no limit) */

typedef struct evdoc evdoc_t;

/* A constant dotted path for the _p variants below: a step that reads or sets the same
 * paths on every event declares them once (static evdoc_path_t P = EVDOC_PATH("a.b");)
 * and each evdoc keeps their parse and hashes by the path's id, given on first use
 * (atomically: any thread may be first). The dotted-string calls instead find their
 * parse by the string's address and compare its text on every call. text is borrowed
 * (a string literal); the object must stay at its address (static). */
typedef struct evdoc_path {
  const char *text;
  _Atomic uint32_t id;
} evdoc_path_t;
#define EVDOC_PATH(dotted) {(dotted), 0}

evdoc_t *evdoc_new(void);
void evdoc_free(evdoc_t *d);

/* Load json[0..len): it must be one JSON object. Returns 0, -1 for malformed JSON,
 * -2 when it is valid JSON but not an object, -3 when an object has duplicate member
 * names at the top level or more than EVDOC_MAX_MEMBERS members. */
int evdoc_load(evdoc_t *d, const char *json, size_t len);
/* The same for bytes known to be valid JSON (an element of a validated batch): only
 * indexes, does not check. */
int evdoc_load_trusted(evdoc_t *d, const char *json, size_t len);
/* evdoc_load_trusted for an element of a body validated with a tape (jscan_elems_t):
 * obj[0..nobj) are the objects the walk recorded in it, the element itself first. Its
 * members and those of the objects inside it are taken from the tape (borrowed: the tape
 * must stay unchanged until the next load), so nothing is walked again. Returns what
 * evdoc_load_trusted does. */
int evdoc_load_indexed(evdoc_t *d, const char *json, size_t len, const jscan_obj_t *obj,
                       size_t nobj);
/* evdoc_load that also records, in the same pass, the elements of the top-level array
 * member named elems->key (jscan_members_elems; elems is borrowed, its v stays the
 * caller's): a /v1/batch body's events without a second walk of its "batch" array. The
 * spans point into json. elems is meaningful only when 0 is returned; its val is then the
 * member evdoc_get(d, elems->key) finds before any edit (for a key without dots). */
int evdoc_load_elems(evdoc_t *d, const char *json, size_t len, jscan_elems_t *elems);

/* The value at path (the edited one if set), or type JSCAN_NONE. An object that exists
 * only through members set below it reads as JSCAN_OBJECT with no bytes (p NULL). An
 * object read after members were set below it shows its bytes before those edits. */
jscan_val_t evdoc_get(evdoc_t *d, const char *path);
jscan_val_t evdoc_get_v(evdoc_t *d, const char *const *segs, size_t nsegs);
/* Where evdoc_get remembers a dotted path's parse: a bucket (0..63) computed from the
 * path's len bytes of text alone, so the same path lands in the same bucket whatever
 * buffer holds it, in every run and build. Exposed for tests. */
size_t evdoc_memo_bucket(const char *path, size_t len);
/* Several top-level members at once: out[i] receives what evdoc_get(d, names[i]) would
 * (n <= EVDOC_MAX_MEMBERS). One walk over the root's members (the one the first read of
 * any top-level path makes, which later reads then need not) instead of one lookup per
 * name: for validators that read a dozen fields of every event. names must be a constant
 * table (static, never changed): its names are parsed and hashed on the first call and
 * then remembered by the table's address. */
void evdoc_get_top(evdoc_t *d, const char *const *names, size_t n, jscan_val_t *out /* OUT */);
/* The decoded string at path into buf (capacity cap), or NULL when absent or not a
 * string. */
const char *evdoc_str(evdoc_t *d, const char *path, char *buf, size_t cap);
/* evdoc_get and evdoc_str by a constant path. */
jscan_val_t evdoc_get_p(evdoc_t *d, evdoc_path_t *p);
const char *evdoc_str_p(evdoc_t *d, evdoc_path_t *p, char *buf, size_t cap);

/* Edits. Values are copied. set_raw takes valid JSON text (the caller's promise). */
void evdoc_set_raw(evdoc_t *d, const char *path, const char *json, size_t n);
void evdoc_set_raw_v(evdoc_t *d, const char *const *segs, size_t nsegs, const char *json, size_t n);
void evdoc_set_str(evdoc_t *d, const char *path, const char *s);
void evdoc_set_bool(evdoc_t *d, const char *path, int b);
void evdoc_del(evdoc_t *d, const char *path);
/* Set path to an object of string members in one edit: kv holds n name/value pairs
 * (2n strings); pairs with a NULL or empty value are left out. */
void evdoc_set_strings(evdoc_t *d, const char *path, const char *const *kv, size_t n);
/* The same edits by a constant path. */
void evdoc_set_raw_p(evdoc_t *d, evdoc_path_t *p, const char *json, size_t n);
void evdoc_set_str_p(evdoc_t *d, evdoc_path_t *p, const char *s);
/* evdoc_set_str_p for a string the caller made and knows needs no escaping (printable
 * ASCII without '"' or '\\': times, generated ids, formatted addresses), n bytes long
 * and NUL-terminated there: it is copied without being looked at. */
void evdoc_set_plain_p(evdoc_t *d, evdoc_path_t *p, const char *s, size_t n);
void evdoc_set_bool_p(evdoc_t *d, evdoc_path_t *p, int b);
void evdoc_del_p(evdoc_t *d, evdoc_path_t *p);
void evdoc_set_strings_p(evdoc_t *d, evdoc_path_t *p, const char *const *kv, size_t n);
/* The JSON text evdoc_set_strings sets, appended to out (for callers that keep it to set
 * with evdoc_set_raw later). */
void evdoc_render_strings(buf_t *out, const char *const *kv, size_t n);
/* Delete every top-level member whose name is not in keep (NULL-terminated). */
void evdoc_keep_only(evdoc_t *d, const char *const *keep);

/* Iterate the members of the ORIGINAL object at path (edits not applied): returns the
 * member count and points *out at an array owned by d (valid until the next load), or -1
 * when path is not an object. */
long evdoc_members(evdoc_t *d, const char *path, const jscan_member_t **out);

/* Append the edited document to out as compact-where-edited JSON. */
void evdoc_write(evdoc_t *d, buf_t *out);

#endif
