/* msg: the one structured log line format of sluice.
 *
 * Every line goes to stderr as logfmt:
 *   ts=2026-11-22T19:37:05.123Z level=info msg="log recovered" segment=3 dropped_bytes=17
 * The message is quoted; the fields that follow are written by the caller as key=value
 * pairs (quote values that may hold spaces with msg_quote). Core modules do not log: they
 * return errors, and the boundary that has the context (main, collect) logs once. */
#ifndef SLUICE_MSG_H
#define SLUICE_MSG_H

#include <stddef.h>

typedef enum { MSG_DEBUG, MSG_INFO, MSG_WARN, MSG_ERROR } msg_level_t;

/* Lines below this level are dropped. Default MSG_INFO. */
void msg_set_level(msg_level_t level);
/* Parse "debug"/"info"/"warn"/"error". Returns 0 or -EINVAL. */
int msg_parse_level(const char *s, msg_level_t *out);

/* Write one line: msg is the human text, fields (may be NULL) a printf format for the
 * key=value pairs that follow it. Thread-safe: one write(2) per line. */
void msg_log(msg_level_t level, const char *msg, const char *fields, ...)
    __attribute__((format(printf, 3, 4)));

#define msg_debug(m, ...) msg_log(MSG_DEBUG, m, __VA_ARGS__)
#define msg_info(m, ...) msg_log(MSG_INFO, m, __VA_ARGS__)
#define msg_warn(m, ...) msg_log(MSG_WARN, m, __VA_ARGS__)
#define msg_error(m, ...) msg_log(MSG_ERROR, m, __VA_ARGS__)

#endif
