/* buf: a growable byte buffer.
 *
 * The one buffer type of sluice. Hot paths keep a buf_t per connection or per writer and
 * reset it (len = 0) instead of freeing, so steady-state appends do not allocate. Growth
 * is geometric; allocation failure aborts (see xalloc in util/mem.h), so appends return
 * nothing. data is always NUL-terminated when cap > 0, which lets a buffer be handed to
 * string APIs without a copy. */
#ifndef SLUICE_BUF_H
#define SLUICE_BUF_H

#include <stdarg.h>
#include <stddef.h>

typedef struct buf {
  char *data;  /* owned; NULL until the first append */
  size_t len;  /* bytes in use */
  size_t cap;  /* bytes allocated, excluding the NUL kept after len */
} buf_t;

#define BUF_INIT {NULL, 0, 0}

/* Ensure room for extra more bytes (plus the NUL). */
void buf_reserve_slow(buf_t *b, size_t extra);
static inline void buf_reserve(buf_t *b, size_t extra) {
  if (!b->data || b->cap - b->len < extra) buf_reserve_slow(b, extra);
}
/* Appends are on every hot path: the common case (room already there) is inline. */
static inline void buf_append(buf_t *b, const void *p, size_t n) {
  buf_reserve(b, n);
  if (n) __builtin_memcpy(b->data + b->len, p, n);
  b->len += n;
  b->data[b->len] = 0;
}
static inline void buf_putc(buf_t *b, char c) {
  buf_reserve(b, 1);
  b->data[b->len++] = c;
  b->data[b->len] = 0;
}
void buf_puts(buf_t *b, const char *s);
/* printf-style append. */
void buf_printf(buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void buf_vprintf(buf_t *b, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));
/* Append s as the inside of a JSON string (quotes not included), escaping as RFC 8259
 * requires. Valid UTF-8 is copied as it is; a byte that is not part of valid UTF-8
 * becomes U+FFFD, so the result is always valid JSON text. */
void buf_json_escape(buf_t *b, const char *s, size_t n);
/* Append s (NUL-terminated) as a quoted JSON string; NULL appends null. */
void buf_json_str(buf_t *b, const char *s);
/* Append v as a JSON number: integers without a fraction, others with 6 significant
 * digits; a non-finite v appends null (JSON has no NaN). */
void buf_json_num(buf_t *b, double v);
/* Drop the first n bytes, keeping the rest. */
void buf_consume(buf_t *b, size_t n);
static inline void buf_reset(buf_t *b) { b->len = 0; if (b->data) b->data[0] = 0; }
/* Free the storage; the buffer may be reused afterwards. NULL-safe. */
void buf_free(buf_t *b);

#endif
