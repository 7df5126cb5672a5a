/* str: small string helpers for untrusted input: percent-decoding, query strings,
 * base64, constant-time comparison. All take explicit lengths and never read past them. */
#ifndef SLUICE_STR_H
#define SLUICE_STR_H

#include <stddef.h>

/* Percent-decode s[0..n) into out (capacity >= n + 1), '+' becoming a space when
 * plus_is_space. Returns the decoded length, or -1 for a malformed escape. NUL-terminates. */
long str_url_decode(const char *s, size_t n, char *out, int plus_is_space);

/* Iterate over a query string "a=1&b=2". Start with *pos = 0; each call sets the raw
 * (still encoded) key and value spans and returns 1, or returns 0 at the end. */
int str_query_next(const char *q, size_t qlen, size_t *pos, const char **key, size_t *klen,
                   const char **val, size_t *vlen);

/* The value of the first parameter named name (NUL-terminated) in the query string q
 * (NUL-terminated; NULL is empty), percent-decoded ('+' is a space) into out (capacity
 * cap). Returns the decoded length; -1 when it is absent or malformed; a length >= cap
 * (out left "") when it does not fit. */
long str_query_param(const char *q, const char *name, char *out, size_t cap);

/* Decode standard or URL-safe base64 (padding optional) into out (capacity >= n*3/4+3).
 * Returns the decoded length or -1 for invalid input. */
long str_base64_decode(const char *s, size_t n, unsigned char *out);
/* Encode n bytes as standard base64 with padding into out (capacity >= 4*((n+2)/3)+1). */
size_t str_base64_encode(const unsigned char *p, size_t n, char *out);

/* Compare a and b in time independent of where they differ. 1 when equal. */
int str_ct_equal(const char *a, size_t alen, const char *b, size_t blen);

/* Case-insensitive: does s[0..n) start with prefix (NUL-terminated)? */
int str_has_prefix_ci(const char *s, size_t n, const char *prefix);

#endif
