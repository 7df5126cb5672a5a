/* geo: client IP to country/region/city from a MaxMind DB file (see geo.h). */
#include "geo.h"

#include <arpa/inet.h>
#include <errno.h>
#include <maxminddb.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>

#include "util/mem.h"

struct geo {
  MMDB_s db;
  char *description; /* geo_description's line, owned */
  uint64_t generation; /* unique per geo_open (see memo) */
};

/* The events of one request (a batch from one browser) share their address, so
 * geo_enrich_step keeps its last lookup: once per request instead of once per event. The
 * memo is per thread (lookups stay lock-free) and keyed by the database's generation, not
 * its address, which a freed database may pass on to the next one. */
static atomic_uint_fast64_t generations;
static _Thread_local struct {
  uint64_t generation; /* 0: empty */
  char ip[46];
  int rc;
  geo_info_t info;
} memo;

/* Say why MMDB_open failed in words a user can act on: libmaxminddb reports every
 * open(2), fstat(2) and mmap(2) failure as one of two generic codes. */
static void explain_open_error(const char *path, int rc, int saved_errno, char *err,
                               size_t errlen) {
  struct stat st;
  if (rc == MMDB_FILE_OPEN_ERROR || rc == MMDB_IO_ERROR) {
    if (stat(path, &st) != 0)
      snprintf(err, errlen, "geo database %s: %s", path, strerror(errno));
    else if (!S_ISREG(st.st_mode))
      snprintf(err, errlen, "geo database %s: not a regular file", path);
    else if (st.st_size == 0)
      snprintf(err, errlen, "geo database %s: empty file", path);
    else
      snprintf(err, errlen, "geo database %s: %s", path,
               saved_errno ? strerror(saved_errno) : MMDB_strerror(rc));
    return;
  }
  snprintf(err, errlen, "geo database %s: %s (is it a MaxMind DB .mmdb file?)", path,
           MMDB_strerror(rc));
}

geo_t *geo_open(const char *mmdb_path, char *err, size_t errlen) {
  if (!mmdb_path || !mmdb_path[0]) {
    snprintf(err, errlen, "geo database: no path given");
    return NULL;
  }
  geo_t *g = xcalloc(1, sizeof *g);
  g->generation = atomic_fetch_add(&generations, 1) + 1;
  errno = 0;
  int rc = MMDB_open(mmdb_path, MMDB_MODE_MMAP, &g->db);
  if (rc != MMDB_SUCCESS) {
    explain_open_error(mmdb_path, rc, errno, err, errlen);
    /* MMDB_open frees its own state on failure (libmaxminddb before 1.12 leaks a few KB
     * on some corrupt metadata: upstream PR #356; nothing to do about it here). */
    free(g);
    return NULL;
  }

  const MMDB_metadata_s *m = &g->db.metadata;
  char built[16] = "unknown";
  time_t epoch = (time_t)m->build_epoch;
  struct tm tm;
  if (m->build_epoch && gmtime_r(&epoch, &tm)) strftime(built, sizeof built, "%Y-%m-%d", &tm);
  const char *desc = NULL;
  for (size_t i = 0; i < m->description.count; i++) {
    const MMDB_description_s *d = m->description.descriptions[i];
    if (d && d->language && d->description && strcmp(d->language, "en") == 0)
      desc = d->description;
  }
  /* Sized to fit, so a long description is never cut inside a UTF-8 character. */
  const char *type = m->database_type ? m->database_type : "unnamed database";
  int n = snprintf(NULL, 0, "%s, built %s%s%s", type, built, desc ? ": " : "", desc ? desc : "");
  g->description = xmalloc((size_t)n + 1);
  snprintf(g->description, (size_t)n + 1, "%s, built %s%s%s", type, built, desc ? ": " : "",
           desc ? desc : "");
  return g;
}

void geo_free(geo_t *g) {
  if (!g) return;
  MMDB_close(&g->db);
  free(g->description);
  free(g);
}

const char *geo_description(const geo_t *g) { return g->description; }

/* Copy a UTF-8 string of n bytes into out (capacity cap), cutting at a character
 * boundary when it does not fit so the result stays valid UTF-8. */
static void copy_utf8(char *out, size_t cap, const char *s, size_t n) {
  if (n >= cap) {
    n = cap - 1;
    while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80) n--; /* s[n] starts the cut char */
  }
  memcpy(out, s, n);
  out[n] = 0;
}

/* Read the string at the NULL-terminated path below entry into out. Returns 1 when found,
 * 0 when absent or not a string, -1 when the data is corrupt. */
static int get_string(MMDB_entry_s *entry, char *out, size_t cap, const char *const *path) {
  MMDB_entry_data_s d;
  int rc = MMDB_aget_value(entry, &d, path);
  if (rc == MMDB_INVALID_DATA_ERROR || rc == MMDB_CORRUPT_SEARCH_TREE_ERROR) return -1;
  /* Anything else not SUCCESS is a path that does not exist in this record's shape. */
  if (rc != MMDB_SUCCESS || !d.has_data || d.type != MMDB_DATA_TYPE_UTF8_STRING) return 0;
  if (d.data_size == 0) return 0;
  copy_utf8(out, cap, d.utf8_string, d.data_size);
  return 1;
}

/* The first of several paths that holds a string. Same returns as get_string. */
static int get_first(MMDB_entry_s *entry, char *out, size_t cap,
                     const char *const *const *paths) {
  for (; *paths; paths++) {
    int rc = get_string(entry, out, cap, *paths);
    if (rc) return rc;
  }
  return 0;
}

static const char *const country_iso[] = {"country", "iso_code", NULL};
static const char *const country_flat[] = {"country_code", NULL};
static const char *const region_iso[] = {"subdivisions", "0", "iso_code", NULL};
static const char *const region_state1[] = {"state1", NULL};
static const char *const region_flat[] = {"region", NULL};
static const char *const city_en[] = {"city", "names", "en", NULL};
static const char *const city_flat[] = {"city", NULL};

static const char *const *const country_paths[] = {country_iso, country_flat, NULL};
static const char *const *const region_paths[] = {region_iso, region_state1, region_flat,
                                                  NULL};
static const char *const *const city_paths[] = {city_en, city_flat, NULL};

static int is_country_code(const char *s) {
  return s[0] >= 'A' && s[0] <= 'Z' && s[1] >= 'A' && s[1] <= 'Z' && s[2] == 0;
}

int geo_lookup(geo_t *g, const char *ip, geo_info_t *out) {
  memset(out, 0, sizeof *out);
  if (!ip) return -EINVAL;

  /* Parse once with inet_pton (stricter than getaddrinfo, which MMDB_lookup_string uses,
   * and no resolver is ever involved) and hand libmaxminddb the socket address. */
  struct sockaddr_storage ss;
  memset(&ss, 0, sizeof ss);
  struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
  struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
  if (inet_pton(AF_INET, ip, &s4->sin_addr) == 1) {
    s4->sin_family = AF_INET;
  } else if (inet_pton(AF_INET6, ip, &s6->sin6_addr) == 1) {
    s6->sin6_family = AF_INET6;
    /* A dual-stack socket reports IPv4 peers as ::ffff:a.b.c.d. Not every database
     * aliases that range to its IPv4 data, so look the IPv4 address up directly. */
    if (IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr)) {
      struct in_addr a;
      memcpy(&a, s6->sin6_addr.s6_addr + 12, 4);
      memset(&ss, 0, sizeof ss);
      s4->sin_family = AF_INET;
      s4->sin_addr = a;
    }
  } else {
    return -EINVAL;
  }

  int mmdb_err = MMDB_SUCCESS;
  MMDB_lookup_result_s r = MMDB_lookup_sockaddr(&g->db, (struct sockaddr *)&ss, &mmdb_err);
  if (mmdb_err == MMDB_IPV6_LOOKUP_IN_IPV4_DATABASE_ERROR) return -ENOENT;
  if (mmdb_err != MMDB_SUCCESS) return -EIO;
  if (!r.found_entry) return -ENOENT;

  /* Read the country into a larger buffer first: "XYZ" must be rejected, not cut to
   * "XY". */
  char cc[8];
  int rc_country = get_first(&r.entry, cc, sizeof cc, country_paths);
  int rc_region = get_first(&r.entry, out->region, sizeof out->region, region_paths);
  int rc_city = get_first(&r.entry, out->city, sizeof out->city, city_paths);
  if (rc_country < 0 || rc_region < 0 || rc_city < 0) {
    memset(out, 0, sizeof *out);
    return -EIO;
  }
  if (rc_country > 0 && is_country_code(cc)) memcpy(out->country, cc, 3);
  out->found = out->country[0] || out->region[0] || out->city[0];
  return out->found ? 0 : -ENOENT;
}

static evdoc_path_t P_CONTEXT = EVDOC_PATH("context"), P_LOCATION = EVDOC_PATH("context.location");

int geo_enrich_step(evdoc_t *ev, const enrich_ctx_t *ctx, void *state, char *msg,
                    size_t msglen) {
  geo_t *g = state;
  if (!g || !ctx->client_ip || !ctx->client_ip[0]) return 0;
  /* The address first (memoised): one the database does not know (a private or loopback
   * address) needs no read of the event at all. */
  geo_info_t fresh;
  const geo_info_t *info = &fresh;
  size_t n = strlen(ctx->client_ip);
  int rc;
  if (memo.generation == g->generation && n < sizeof memo.ip && memcmp(memo.ip, ctx->client_ip, n + 1) == 0) {
    rc = memo.rc;
    info = &memo.info;
  } else {
    rc = geo_lookup(g, ctx->client_ip, &fresh);
    if (n < sizeof memo.ip) {
      memo.generation = g->generation;
      memcpy(memo.ip, ctx->client_ip, n + 1);
      memo.rc = rc;
      memo.info = fresh;
    }
  }
  if (rc != 0) return 0;
  jscan_type_t ct = evdoc_get_p(ev, &P_CONTEXT).type;
  if (ct != JSCAN_NONE && ct != JSCAN_OBJECT) return 0; /* the validator's business, not ours */
  /* A location the client sent (a mobile SDK's device position) beats an IP guess. */
  jscan_type_t have = evdoc_get_p(ev, &P_LOCATION).type;
  if (have != JSCAN_NONE && have != JSCAN_NULL) return 0;
  const char *kv[] = {"country", info->country, "region", info->region, "city", info->city};
  evdoc_set_strings_p(ev, &P_LOCATION, kv, 3);
  return 0;
}
