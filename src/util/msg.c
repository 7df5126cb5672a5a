/* msg: structured log lines (see msg.h). */
#include "util/msg.h"

#include <errno.h>
#include <stdarg.h>
#include <string.h>
#include <unistd.h>

#include "util/buf.h"
#include "util/clock.h"

static msg_level_t min_level = MSG_INFO;
static const char *const names[] = {"debug", "info", "warn", "error"};

void msg_set_level(msg_level_t level) { min_level = level; }

int msg_parse_level(const char *s, msg_level_t *out) {
  for (int i = 0; i < 4; i++)
    if (strcmp(s, names[i]) == 0) {
      *out = (msg_level_t)i;
      return 0;
    }
  return -EINVAL;
}

void msg_log(msg_level_t level, const char *msg, const char *fields, ...) {
  if (level < min_level) return;
  char ts[25];
  clock_format_iso(clock_wall_us(), ts);
  buf_t b = BUF_INIT;
  buf_printf(&b, "ts=%s level=%s msg=\"", ts, names[level]);
  buf_json_escape(&b, msg, strlen(msg));
  buf_putc(&b, '"');
  if (fields && *fields) {
    buf_putc(&b, ' ');
    va_list ap;
    va_start(ap, fields);
    buf_vprintf(&b, fields, ap);
    va_end(ap);
  }
  buf_putc(&b, '\n');
  ssize_t w = write(STDERR_FILENO, b.data, b.len);
  (void)w;
  buf_free(&b);
}
