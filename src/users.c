/* users: erasure and export of one user's data (see users.h). */
#include "users.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "keys.h"
#include "util/clock.h"
#include "util/mem.h"
#include "util/rand.h"
#include "util/str.h"

#define MAX_IDS 4096  /* a user with more ids than this is not one person */
#define MAX_PASSES 8
#define MAX_EXPORT (256u << 20)
static const char tombstone[] = "{\"type\":\"forgotten\"}";

typedef struct eraser {
  users_forget_fn fn;
  void *ud;
} eraser_t;

struct users {
  const config_t *cfg;
  uv_loop_t *loop;
  log_t *log, *bad;
  const privacy_t *privacy;
  eraser_t *erasers;
  size_t nerasers;
  pthread_mutex_t mu; /* one erasure or export at a time */
  size_t jobs;        /* queued HTTP jobs (loop thread) */
};

size_t users_busy(const users_t *u) { return u ? u->jobs : 0; }

users_t *users_new(const config_t *cfg, uv_loop_t *loop, log_t *log, log_t *bad,
                   const privacy_t *privacy) {
  users_t *u = xcalloc(1, sizeof *u);
  u->cfg = cfg;
  u->loop = loop;
  u->log = log;
  u->bad = bad;
  u->privacy = privacy;
  pthread_mutex_init(&u->mu, NULL);
  return u;
}

void users_free(users_t *u) {
  if (!u) return;
  pthread_mutex_destroy(&u->mu);
  free(u->erasers);
  free(u);
}

void users_on_forget(users_t *u, users_forget_fn fn, void *ud) {
  u->erasers = xrealloc(u->erasers, (u->nerasers + 1) * sizeof *u->erasers);
  u->erasers[u->nerasers++] = (eraser_t){fn, ud};
}

/* ---- the user's ids ---- */

typedef struct idset {
  char **ids;
  size_t n;
} idset_t;

static int idset_has(const idset_t *s, const char *id) {
  for (size_t i = 0; i < s->n; i++)
    if (strcmp(s->ids[i], id) == 0) return 1;
  return 0;
}

/* Returns 1 when added, 0 when already there or empty. */
static int idset_add(idset_t *s, const char *id) {
  if (!id || !id[0] || idset_has(s, id) || s->n >= MAX_IDS) return 0;
  s->ids = xrealloc(s->ids, (s->n + 1) * sizeof *s->ids);
  s->ids[s->n++] = xstrdup(id);
  return 1;
}

static void idset_free(idset_t *s) {
  for (size_t i = 0; i < s->n; i++) free(s->ids[i]);
  free(s->ids);
  s->ids = NULL;
  s->n = 0;
}

/* Does any id of s occur in the bytes? A cheap filter before parsing. */
static int mentions(const idset_t *s, const char *p, size_t n) {
  for (size_t i = 0; i < s->n; i++)
    if (memmem(p, n, s->ids[i], strlen(s->ids[i]))) return 1;
  return 0;
}

static const char *str_field(const cJSON *ev, const char *name) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(ev, name);
  return cJSON_IsString(v) && v->valuestring[0] ? v->valuestring : NULL;
}

/* Is the event the user's? (see users.h) */
static int belongs(const cJSON *ev, const idset_t *s) {
  const char *uid = str_field(ev, "userId"), *aid = str_field(ev, "anonymousId");
  const char *type = str_field(ev, "type"), *prev = str_field(ev, "previousId");
  if (uid) return idset_has(s, uid) || (type && !strcmp(type, "alias") && prev && idset_has(s, prev));
  return aid && idset_has(s, aid);
}

/* Parse a record and decide whether it is the user's. */
static int record_belongs(const idset_t *s, const log_record_t *rec, cJSON **out) {
  if (!mentions(s, rec->value, rec->value_len)) return 0;
  cJSON *ev = cJSON_ParseWithLength(rec->value, rec->value_len);
  int yes = ev && belongs(ev, s);
  if (out && yes)
    *out = ev;
  else
    cJSON_Delete(ev);
  return yes;
}

/* Grow s to every id of the user by scanning the log until nothing is added. */
static int resolve(users_t *u, const char *id, idset_t *s, char *err, size_t errlen) {
  idset_add(s, id);
  char p[36];
  if (privacy_pseudonym(u->privacy, id, strlen(id), p) == 0) idset_add(s, p);
  for (int pass = 0, grew = 1; grew && pass < MAX_PASSES; pass++) {
    grew = 0;
    log_reader_t *r = log_reader_open(u->log, 0, err, errlen);
    if (!r) return -1;
    log_record_t rec;
    int rc;
    while ((rc = log_reader_next_intact(r, &rec, NULL)) == 1) {
      cJSON *ev = NULL;
      if (!record_belongs(s, &rec, &ev)) continue;
      grew |= idset_add(s, str_field(ev, "userId"));
      grew |= idset_add(s, str_field(ev, "anonymousId"));
      const char *type = str_field(ev, "type");
      if (type && !strcmp(type, "alias")) grew |= idset_add(s, str_field(ev, "previousId"));
      cJSON_Delete(ev);
    }
    log_reader_close(r);
    if (rc < 0) {
      snprintf(err, errlen, "reading the log: %s", strerror(-rc));
      return -1;
    }
  }
  return 0;
}

/* ---- erasure ---- */

static int keep_event(void *ud, const log_record_t *rec, buf_t *replacement) {
  if (!record_belongs(ud, rec, NULL)) return 1;
  buf_append(replacement, tombstone, sizeof tombstone - 1);
  return 0;
}

static int keep_bad(void *ud, const log_record_t *rec, buf_t *replacement) {
  if (!mentions(ud, rec->value, rec->value_len) && !mentions(ud, rec->key, rec->key_len)) return 1;
  buf_append(replacement, tombstone, sizeof tombstone - 1);
  return 0;
}

static int audit(users_t *u, const char *by, const users_forget_result_t *res) {
  char path[4096], ts[25];
  snprintf(path, sizeof path, "%s/audit.log", u->cfg->data_dir);
  clock_format_iso(clock_wall_us(), ts);
  char line[512];
  int n = snprintf(line, sizeof line,
                   "{\"time\":\"%s\",\"action\":\"forget\",\"request\":\"%s\",\"by\":\"%s\","
                   "\"ids\":%zu,\"events\":%llu,\"badRecords\":%llu,\"segments\":%llu}\n",
                   ts, res->request_id, by, res->ids, (unsigned long long)res->events,
                   (unsigned long long)res->bad_records, (unsigned long long)res->segments);
  int fd = open(path, O_WRONLY | O_CREAT | O_APPEND, 0600);
  if (fd < 0) return -errno;
  int rc = (write(fd, line, (size_t)n) == n && fdatasync(fd) == 0) ? 0 : -errno;
  close(fd);
  return rc;
}

int users_forget(users_t *u, const char *id, const char *by, users_forget_result_t *out,
                 char *err, size_t errlen) {
  memset(out, 0, sizeof *out);
  rand_uuid(out->request_id);
  idset_t s = {0};
  int rc = -1;
  pthread_mutex_lock(&u->mu);
  if (resolve(u, id, &s, err, errlen) != 0) goto done;
  out->ids = s.n;
  log_rewrite_stats_t st;
  if (log_rewrite(u->log, keep_event, &s, &st, err, errlen) != 0) goto done;
  out->events = st.records_replaced;
  out->segments = st.segments_rewritten;
  if (u->bad && log_rewrite(u->bad, keep_bad, &s, &st, err, errlen) != 0) goto done;
  out->bad_records = st.records_replaced;
  out->segments += st.segments_rewritten;
  buf_t ids = BUF_INIT;
  for (size_t i = 0; i < s.n; i++) buf_append(&ids, s.ids[i], strlen(s.ids[i]) + 1);
  for (size_t i = 0; i < u->nerasers; i++) {
    int e = u->erasers[i].fn(u->erasers[i].ud, ids.data, s.n);
    if (e) {
      snprintf(err, errlen, "erasing derived state: %s", strerror(-e));
      buf_free(&ids);
      goto done;
    }
  }
  buf_free(&ids);
  int a = audit(u, by, out);
  if (a) {
    snprintf(err, errlen, "the user was erased but the audit line could not be written: %s",
             strerror(-a));
    goto done;
  }
  rc = 0;
done:
  pthread_mutex_unlock(&u->mu);
  idset_free(&s);
  return rc;
}

int users_export(users_t *u, const char *id, buf_t *out, size_t *events, char *err,
                 size_t errlen) {
  idset_t s = {0};
  int rc = -1;
  *events = 0;
  pthread_mutex_lock(&u->mu);
  if (resolve(u, id, &s, err, errlen) != 0) goto done;
  log_reader_t *r = log_reader_open(u->log, 0, err, errlen);
  if (!r) goto done;
  log_record_t rec;
  int n;
  while ((n = log_reader_next_intact(r, &rec, NULL)) == 1) {
    if (!record_belongs(&s, &rec, NULL)) continue;
    if (out->len + rec.value_len + 1 > MAX_EXPORT) {
      snprintf(err, errlen, "the export is larger than %u MiB; use sluice export-user", MAX_EXPORT >> 20);
      log_reader_close(r);
      goto done;
    }
    buf_append(out, rec.value, rec.value_len);
    buf_putc(out, '\n');
    (*events)++;
  }
  log_reader_close(r);
  if (n < 0) {
    snprintf(err, errlen, "reading the log: %s", strerror(-n));
    goto done;
  }
  rc = 0;
done:
  pthread_mutex_unlock(&u->mu);
  idset_free(&s);
  return rc;
}

/* ---- HTTP ---- */

typedef struct job {
  uv_work_t work;
  users_t *u;
  http_req_t *req;
  int forget;
  char id[1025];
  int rc;
  char err[512];
  users_forget_result_t res;
  buf_t body;
  size_t events;
} job_t;

static void job_run(uv_work_t *w) {
  job_t *j = w->data;
  if (j->forget)
    j->rc = users_forget(j->u, j->id, "admin-api", &j->res, j->err, sizeof j->err);
  else
    j->rc = users_export(j->u, j->id, &j->body, &j->events, j->err, sizeof j->err);
}

static void job_done(uv_work_t *w, int status) {
  job_t *j = w->data;
  if (j->rc != 0 || status != 0) {
    http_respond_error(j->req, 500, "internal", status ? "the job was cancelled" : j->err, NULL, 0);
  } else if (j->forget) {
    char body[512];
    int n = snprintf(body, sizeof body,
                     "{\"success\":true,\"request\":\"%s\",\"ids\":%zu,\"events\":%llu,"
                     "\"badRecords\":%llu,\"segments\":%llu}",
                     j->res.request_id, j->res.ids, (unsigned long long)j->res.events,
                     (unsigned long long)j->res.bad_records, (unsigned long long)j->res.segments);
    http_header_t h[] = {{"Content-Type", "application/json"}};
    http_respond(j->req, 200, h, 1, body, (size_t)n, 0);
  } else {
    http_header_t h[] = {{"Content-Type", "application/x-ndjson"},
                         {"Content-Disposition", "attachment; filename=\"user-export.ndjson\""},
                         {"Cache-Control", "no-store"}};
    http_respond(j->req, 200, h, 3, j->body.data ? j->body.data : "", j->body.len, 0);
  }
  buf_free(&j->body);
  j->u->jobs--;
  free(j);
}

int users_handle(users_t *u, http_req_t *r) {
  const char *path = http_req_path(r);
  static const char prefix[] = "/v1/users/";
  if (strncmp(path, prefix, sizeof prefix - 1) != 0) return 0;
  const char *rest = path + sizeof prefix - 1;
  size_t n = strlen(rest);
  int is_export = n > 7 && !strcmp(rest + n - 7, "/export");
  if (is_export) n -= 7;
  const char *method = http_req_method(r);
  http_req_set_route(r, is_export ? "user_export" : "user_forget");
  if (keys_require(u->cfg, r, KEY_ADMIN, NULL) != 0) return 1;
  if (is_export ? strcmp(method, "GET") != 0 : strcmp(method, "DELETE") != 0) {
    http_header_t h[] = {{"Allow", is_export ? "GET" : "DELETE"}};
    http_respond_error(r, 405, "method_not_allowed", is_export ? "use GET" : "use DELETE", h, 1);
    return 1;
  }
  job_t *j = xcalloc(1, sizeof *j);
  long idlen = n < sizeof j->id ? str_url_decode(rest, n, j->id, 0) : -1;
  if (idlen <= 0 || memchr(j->id, '/', (size_t)idlen) || strlen(j->id) != (size_t)idlen) {
    free(j);
    http_respond_error(r, 400, "bad_user_id", "give the user id as /v1/users/{id} (percent-encoded, at most 1024 bytes)", NULL, 0);
    return 1;
  }
  j->u = u;
  j->req = r;
  j->forget = !is_export;
  j->work.data = j;
  int rc = uv_queue_work(u->loop, &j->work, job_run, job_done);
  if (rc == 0) u->jobs++;
  if (rc) {
    free(j);
    http_respond_error(r, 503, "busy", "cannot start the job now; retry later", NULL, 0);
  }
  return 1;
}
