/* process: log -> profiles + rollups, checkpoints, live frames (see process.h).
 *
 * Snapshot file, version 4, little-endian:
 *   "SLSN", u32 version, u64 config fingerprint (tracked names, conversion event, session
 *   timeout: a snapshot taken under other settings is rebuilt), u64 offset, i64 newest
 *   event time (µs), u64 length of each of the six parts (events rollup, sessions
 *   rollup, profile store, KPI state, rules engine state, profile spill), the parts
 *   (rollup_serialize, profile_store_serialize, kpi_serialize, decide_serialize: empty
 *   without rules; the spill's u64 generation and u64 length, empty without a state
 *   dir), u32 CRC-32C of every byte before it. Older versions (1: no KPI state, 2: no
 *   rules state, 3: no spill) are reported as an unknown version and rebuilt from the log.
 *
 * Evicted profiles go to the spill (spill.h) in state_dir and come back when their person
 * does. The spill file is made durable before the snapshot that names its length. */
#include "process.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <fcntl.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "decide.h"
#include "evfields.h"
#include "feed.h"
#include "kpi.h"
#include "profile.h"
#include "spill.h"
#include "util/buf.h"
#include "util/clock.h"
#include "util/crc32c.h"
#include "util/file.h"
#include "util/mem.h"

#define SNAP_MAGIC "SLSN"
#define SNAP_VERSION 4
#define SNAP_PARTS 6
#define SNAP_HEADER (4 + 4 + 8 + 8 + 8 + SNAP_PARTS * 8)
/* A slice's time budget. Requests that arrive during a slice wait for it: at half the
 * full load of 100-event batches (about 2,330 a second, one CPU) 2 ms slices gave ack
 * p99 5.44 / 7.32 ms at the client, 1 ms slices 4.73 / 5.01 ms, for the same CPU per
 * event (1.75-1.81 against 1.84-1.87 us at full load). */
#define SLICE_US 1000
#define SWEEP_BUDGET 65536
#define CKPT_SHARE 20 /* checkpoints take at most 1/20 of one core (on_ckpt) */

static const char *const dim_names[PROCESS_NDIMS] = {PROCESS_DIMS};
static const char *const session_dims[1] = {"session"};

static const char *const default_tracked[] = {"Product Viewed", "Product Added",
                                              "Checkout Started", "Order Completed",
                                              "Email Opened", "Email Link Clicked"};

typedef struct ckpt_job {
  uv_work_t work;
  process_t *p;
  char *path;
  buf_t data;
  uint64_t spill_gen;  /* the generation the snapshot names */
  int64_t cpu_us;      /* CPU time the pool thread spent on it */
  int rc;
} ckpt_job_t;

struct process {
  uv_loop_t *loop;
  log_t *log;
  uint64_t log_cache_bytes; /* process_opts_t.log_cache_bytes */
  int64_t ckpt_at_us;  /* clock_mono_us when the last periodic checkpoint started */
  int64_t swept_s;     /* watermark second of the current sweep pass (sweep_due) */
  int sweep_again;     /* a late event came: start a new pass */
  size_t sweep_left;   /* slots the pass has still to visit */
  int64_t ckpt_cpu_us; /* CPU time the last checkpoint took (on_ckpt) */
  char *snap_path;
  char *state_dir;
  spill_t *spill;  /* NULL without a state dir */
  uint64_t spill_max_ids;
  uint64_t checkpoint_ms;
  sse_hub_t *hub;
  decide_t *decide; /* borrowed, may be NULL: no rules */
  int replayed;     /* reached the log's end once since start or rebuild (then: live) */
  profile_opts_t popts;
  char *kinds[PROFILE_KINDS];
  char *conversion;
  uint64_t fingerprint;
  profile_store_t *profiles;
  rollup_t *events, *sessions;
  evfields_decoder_t *dec;
  evfields_t *ev; /* decode buffer */
  kpi_t *kpi;
  const config_kpis_t *custom; /* user-defined KPIs, or NULL */
  size_t rollup_max_bytes;     /* budget of each rollup store, 0: none */
  int custom_field[2 * CONFIG_KPI_MAX]; /* extra slot (evfields_extra) of each part's
                                           summed property, or -1 */
  log_reader_t *reader;
  uint64_t offset;
  int64_t watermark_us; /* newest event time seen */
  int64_t now_us;       /* the stores' clock: the wall clock read once per slice (and every
                           4,096 records in it) and per live tick, not once per add */
  int snap_status;
  char snap_msg[256];
  process_stats_t st;
  /* loop mode */
  uv_idle_t idle;
  uv_timer_t ckpt_timer, live_timer;
  int started, idle_active, stopped, jobs;
  /* live counters since the last frame */
  uint64_t tick_events, tick_orders;
  double tick_revenue;
  int64_t tick_mono_us;
  /* the sampled event feed; events received before feed_since_us (a replay) stay out */
  feed_t *feed;
  int64_t feed_since_us;
  /* erasure: snapshot file operations are serialised with snap_mu */
  pthread_mutex_t snap_mu;
  atomic_int rebuild; /* set by process_forget, cleared by the loop once rebuilt */
  /* readers on other threads (process_read_begin): the loop writes only when none reads */
  pthread_mutex_t rw_mu;
  pthread_cond_t rw_cond;
  int readers, writing, writer_waits;
  uv_async_t wake; /* the last reader out wakes a waiting stage */
  spill_stats_t spill_st; /* for process_stats, refreshed by the loop under the lock */
};

/* ---- stores ---- */

/* Count a session event (what: a literal) in the sessions store. */
#define SESSION_ADD(p, t, what, who, revenue)                                              \
  rollup_add_len((p)->sessions, (t), (const char *const[]){what},                          \
                 (const uint32_t[]){sizeof what - 1}, (who), (revenue))

static void on_session_end(void *ud, const profile_session_t *s) {
  process_t *p = ud;
  /* a bounce is counted with its end in one add (same time, user and sum) */
  static const char *const what[2] = {"end", "bounce"};
  static const uint32_t len[2] = {3, 6};
  rollup_add_values(p->sessions, s->start_us, what, len, s->pages == 1 ? 2 : 1, s->profile, 0);
}

static void on_evict(void *ud, const profile_t *pr, const uint64_t *keys,
                     const uint32_t *used, size_t n) {
  process_t *p = ud;
  if (!p->spill || spill_put(p->spill, pr, keys, used, n) != 0) p->st.dropped++;
}

static int on_fetch(void *ud, uint64_t key, profile_t *pr, uint64_t *keys, uint32_t *used,
                    size_t *n, size_t cap) {
  process_t *p = ud;
  if (!p->spill || spill_take(p->spill, key, pr, keys, used, n, cap) != 1) return 0;
  p->st.restored++;
  return 1;
}

/* A new, empty spill for the current profile store (older files deleted). */
static int fresh_spill(process_t *p, char *err, size_t errlen) {
  spill_close(p->spill);
  p->spill = NULL;
  if (!p->state_dir) return 0;
  spill_remove_all(p->state_dir);
  p->spill = spill_open(p->state_dir, 1, 0, profile_store_seed(p->profiles),
                        p->spill_max_ids, err, errlen);
  return p->spill ? 0 : -1;
}

static int64_t stage_now(void *ctx) { return ((const process_t *)ctx)->now_us; }

static int new_stores(process_t *p) {
  rollup_opts_t ro = {.dims = dim_names, .ndims = PROCESS_NDIMS, .max_bytes = p->rollup_max_bytes,
                      .now_us = stage_now, .now_ctx = p};
  /* sessions are read as counts only (conversion and bounce rates, the live frame): their
   * store keeps no unique-user sketches */
  rollup_opts_t so = {.dims = session_dims, .ndims = 1, .no_users = 1,
                      .max_bytes = p->rollup_max_bytes, .now_us = stage_now, .now_ctx = p};
  p->events = rollup_new(&ro);
  p->sessions = rollup_new(&so);
  p->profiles = profile_store_new(&p->popts);
  decide_bind_profiles(p->decide, p->profiles);
  p->kpi = kpi_new(stage_now, p);
  if (p->kpi) {
    kpi_set_custom(p->kpi, p->custom);
    kpi_set_max_bytes(p->kpi, p->rollup_max_bytes);
  }
  return p->events && p->sessions && p->profiles && p->kpi ? 0 : -EINVAL;
}

static void free_stores(process_t *p) {
  spill_close(p->spill);
  p->spill = NULL;
  rollup_free(p->events);
  rollup_free(p->sessions);
  profile_store_free(p->profiles);
  kpi_free(p->kpi);
  p->events = p->sessions = NULL;
  p->profiles = NULL;
  p->kpi = NULL;
}

static uint64_t rd64(const unsigned char *b) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; i--) v = v << 8 | b[i];
  return v;
}

static void put64(buf_t *b, uint64_t v) {
  unsigned char x[8];
  for (int i = 0; i < 8; i++) x[i] = (unsigned char)(v >> (8 * i));
  buf_append(b, x, 8);
}

/* Load the snapshot into fresh stores. 1 loaded, 0 none, -1 unusable (message). */
static int load_snapshot(process_t *p) {
  if (!p->snap_path) return 0;
  FILE *f = fopen(p->snap_path, "rb");
  if (!f) {
    if (errno == ENOENT) return 0;
    snprintf(p->snap_msg, sizeof p->snap_msg, "cannot open: %s", strerror(errno));
    return -1;
  }
  buf_t b = BUF_INIT;
  char chunk[65536];
  size_t n;
  while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) buf_append(&b, chunk, n);
  int rerr = ferror(f);
  fclose(f);
  const unsigned char *d = (const unsigned char *)b.data;
  const char *why = NULL;
  rollup_t *ev = NULL, *se = NULL;
  kpi_t *kp = NULL;
  if (rerr) why = "read error";
  else if (b.len < SNAP_HEADER + 4 || memcmp(d, SNAP_MAGIC, 4)) why = "not a snapshot";
  else if (d[4] != SNAP_VERSION || d[5] || d[6] || d[7]) why = "unknown version";
  else {
    uint32_t crc = (uint32_t)d[b.len - 4] | (uint32_t)d[b.len - 3] << 8 |
                   (uint32_t)d[b.len - 2] << 16 | (uint32_t)d[b.len - 1] << 24;
    uint64_t l0 = rd64(d + 32), l1 = rd64(d + 40), l2 = rd64(d + 48), l3 = rd64(d + 56),
             l4 = rd64(d + 64), l5 = rd64(d + 72);
    if (crc32c(0, d, b.len - 4) != crc) why = "checksum mismatch";
    else if (rd64(d + 8) != p->fingerprint) why = "taken with other settings";
    else if (l0 > b.len || l1 > b.len || l2 > b.len || l3 > b.len || l4 > b.len ||
             l5 > b.len || SNAP_HEADER + l0 + l1 + l2 + l3 + l4 + l5 + 4 != b.len)
      why = "bad lengths";
    else if (l5 != (p->state_dir ? 16u : 0u)) why = "bad spill part";
    else {
      const unsigned char *q = d + SNAP_HEADER;
      if (rollup_deserialize(q, l0, &ev) != 0 || rollup_deserialize(q + l0, l1, &se) != 0)
        why = "bad rollup";
      else if (rollup_ndims(ev) != PROCESS_NDIMS || rollup_ndims(se) != 1)
        why = "other dimensions";
      else {
        for (size_t i = 0; i < PROCESS_NDIMS && !why; i++)
          if (rollup_dim_index(ev, dim_names[i]) != (int)i) why = "other dimensions";
        if (!why && rollup_dim_index(se, "session") != 0) why = "other dimensions";
      }
      if (!why) {
        profile_store_free(p->profiles);
        p->profiles = profile_store_new(&p->popts);
        decide_bind_profiles(p->decide, p->profiles);
        if (profile_store_deserialize(p->profiles, q + l0 + l1, l2) != 0) why = "bad profiles";
      }
      if (!why) {
        rollup_set_clock(ev, stage_now, p);
        rollup_set_clock(se, stage_now, p);
      }
      if (!why && kpi_deserialize(q + l0 + l1 + l2, l3, stage_now, p, &kp) != 0)
        why = "bad KPI state";
      if (!why && p->decide && decide_deserialize(p->decide, q + l0 + l1 + l2 + l3, l4) != 0)
        why = "bad rules state";
      uint64_t off = rd64(d + 16);
      if (!why && off > log_end_offset(p->log)) why = "ahead of the log";
      if (!why && p->state_dir) {
        const unsigned char *sp = q + l0 + l1 + l2 + l3 + l4;
        if (!(p->spill = spill_open(p->state_dir, rd64(sp), rd64(sp + 8),
                                    profile_store_seed(p->profiles), p->spill_max_ids,
                                    p->snap_msg, sizeof p->snap_msg)))
          why = p->snap_msg;
        else
          spill_retire(p->spill, rd64(sp));
      }
      if (!why) {
        rollup_free(p->events);
        rollup_free(p->sessions);
        kpi_free(p->kpi);
        p->events = ev;
        p->sessions = se;
        rollup_set_max_bytes(ev, p->rollup_max_bytes); /* the configured budget, not the saved one */
        rollup_set_max_bytes(se, p->rollup_max_bytes);
        rollup_set_no_users(se, 1);
        p->kpi = kp;
        kpi_set_custom(p->kpi, p->custom);
        kpi_set_max_bytes(p->kpi, p->rollup_max_bytes);
        ev = se = NULL;
        kp = NULL;
        p->offset = off;
        p->watermark_us = (int64_t)rd64(d + 24);
      }
    }
  }
  rollup_free(ev);
  rollup_free(se);
  kpi_free(kp);
  buf_free(&b);
  if (why) {
    if (why != p->snap_msg) snprintf(p->snap_msg, sizeof p->snap_msg, "%s", why);
    /* Only the profile store (and the rules state) may hold part of the snapshot: the
     * rollups and the KPI state are replaced on success only, so they are still fresh,
     * and the spill is opened last, only when everything else loaded. */
    profile_store_free(p->profiles);
    p->profiles = profile_store_new(&p->popts);
    decide_bind_profiles(p->decide, p->profiles);
    if (p->decide) decide_reset(p->decide);
    p->offset = 0;
    p->watermark_us = 0;
    return -1;
  }
  return 1;
}

/* Serialise the state; with a spill, flush it first and name its generation and length
 * (*spill_gen, OUT). 0, or the spill's error (nothing serialised). */
static int serialize(process_t *p, buf_t *b, uint64_t *spill_gen) {
  uint64_t gen = 0, slen = 0;
  if (p->spill) {
    int rc = spill_commit(p->spill, &gen, &slen);
    if (rc) return rc;
  }
  *spill_gen = gen;
  buf_append(b, SNAP_MAGIC, 4);
  unsigned char v[4] = {SNAP_VERSION, 0, 0, 0};
  buf_append(b, v, 4);
  put64(b, p->fingerprint);
  put64(b, p->offset);
  put64(b, (uint64_t)p->watermark_us);
  size_t lens_at = b->len;
  for (int i = 0; i < SNAP_PARTS; i++) put64(b, 0);
  uint64_t lens[SNAP_PARTS];
  lens[0] = rollup_serialize(p->events, b);
  lens[1] = rollup_serialize(p->sessions, b);
  lens[2] = profile_store_serialize(p->profiles, b);
  lens[3] = kpi_serialize(p->kpi, b);
  lens[4] = p->decide ? decide_serialize(p->decide, b) : 0;
  lens[5] = 0;
  if (p->spill) {
    put64(b, gen);
    put64(b, slen);
    lens[5] = 16;
  }
  for (int i = 0; i < SNAP_PARTS; i++)
    for (int k = 0; k < 8; k++) b->data[lens_at + 8 * i + k] = (char)(lens[i] >> (8 * k));
  uint32_t crc = crc32c(0, b->data, b->len);
  unsigned char c[4] = {(unsigned char)crc, (unsigned char)(crc >> 8),
                        (unsigned char)(crc >> 16), (unsigned char)(crc >> 24)};
  buf_append(b, c, 4);
  return 0;
}

/* ---- one record ---- */

/* Slots of the extra paths (new_decoder below). */
enum { X_CAMPAIGN, X_COST, X_FIXED };


/* pkey: the profile index key of the record's user whose index slot slice() prefetched
 * while the record before was processed (0: none). */
static void process_record(process_t *p, const log_record_t *rec, uint64_t pkey) {
  evfields_t *e = p->ev;
  p->st.events++;
  /* profile_apply below waits on two cache misses: the index slot of the id it resolves
   * first, then the profile. With the slot prefetched one record ahead (the log record's
   * key is that id), the profile's lines are asked for before the scan; otherwise the
   * slot is started between scanning the event and decoding its fields and the profile
   * before the events rollup, so each has work to hide behind. */
  int early = pkey != 0;
  if (early) profile_prefetch_profile(p->profiles, pkey);
  size_t idn;
  /* An identified event's anonymousId, which profile_apply links after resolving the
   * userId, costs two more misses (its index slot, its alias record): asked for the same
   * way, the slot after the scan and the record before the events rollup. */
  uint64_t akey = 0;
  int drc = evfields_scan(p->dec, rec, e);
  if (drc == 0) {
    const char *id = early ? NULL : evfields_raw_user(e, &idn);
    if (id) pkey = profile_prefetch_index(p->profiles, id, idn);
    if ((id = evfields_raw_linked(e, &idn))) akey = profile_prefetch_index(p->profiles, id, idn);
    drc = evfields_finish(p->dec, rec, e);
  }
  if (drc < 0) p->st.undecodable++;
  if (drc <= 0) return;
  int type = e->type;
  int64_t t = e->t_us;
  if (t > p->watermark_us) p->watermark_us = t;
  /* An event already idle past the timeout (a late one) may open a session that has
   * timed out at once: the next sweep_due starts a new pass for it. */
  else if (t < p->watermark_us - p->popts.session_timeout_us) p->sweep_again = 1;
  const char *user = e->user_id, *anon = e->anonymous_id, *prev = e->previous_id;
  const char *session = e->session_id;
  const char *const *dims = e->dims;
  const char *name = dims[0];
  int is_order = e->is_order;
  double revenue = e->revenue;
  uint64_t uh = e->user_hash;
  if (type == PROFILE_TRACK && name && e->dlen[0] == sizeof KPI_COST_EVENT - 1 &&
      !memcmp(name, KPI_COST_EVENT, sizeof KPI_COST_EVENT - 1)) { /* (no strcmp call) */
    /* Marketing cost: input of the CAC KPI only, not a visitor's event. */
    char cb[EVFIELDS_VAL_CAP];
    const jscan_val_t *cv = evfields_extra(e, X_CAMPAIGN), *costv = evfields_extra(e, X_COST);
    const char *c = NULL;
    if (cv->type == JSCAN_STRING && cv->n && jscan_string(cv, cb, sizeof cb) > 0) c = cb;
    double cost = costv->type == JSCAN_NUMBER ? costv->num : NAN;
    if (kpi_cost(p->kpi, t, c, cost) == -ERANGE) p->st.rejected++;
    return;
  }
  uint64_t camp = 0;
  if (dims[2] || dims[3] || dims[4]) {
    /* "source\nmedium\nname", absent parts empty (built by hand: snprintf showed in
     * replay profiles) */
    char cb[3 * EVFIELDS_VAL_CAP + 16];
    size_t n = 0;
    for (int i = 2; i <= 4; i++) {
      if (dims[i]) {
        /* a short part in one fixed-size move, not a call: the parts lie in e's value
         * buffers (EVFIELDS_VAL_CAP bytes each), so 16 bytes can be read */
        if (e->dlen[i] < 16) memcpy(cb + n, dims[i], 16);
        else memcpy(cb + n, dims[i], e->dlen[i]);
        n += e->dlen[i];
      }
      if (i < 4) cb[n++] = '\n';
    }
    camp = XXH3_64bits(cb, n) | 1;
  }
  profile_event_t pe = {
      .t_us = t,
      .type = type,
      .user_id = user,
      .user_id_len = e->user_id_len,
      .anonymous_id = anon,
      .anonymous_id_len = e->anonymous_id_len,
      .previous_id = prev,
      .previous_id_len = e->previous_id_len,
      .session_id = session,
      .session_id_len = e->session_id_len,
      .kind = name ? profile_kind(p->profiles, name, e->dlen[0]) : PROFILE_KIND_NONE,
      .is_order = is_order,
      .revenue = revenue,
      .campaign_hash = camp,
  };
  if (!early) profile_prefetch_profile(p->profiles, pkey);
  if (akey) profile_prefetch_profile(p->profiles, akey);
  if (rollup_add_len(p->events, t, dims, e->dlen, uh, revenue) != 0) p->st.rejected++;
  if (p->custom && p->custom->n) {
    double vals[2 * CONFIG_KPI_MAX];
    for (size_t i = 0; i < 2 * p->custom->n; i++) {
      int fi = p->custom_field[i];
      const jscan_val_t *v = fi >= 0 ? evfields_extra(e, (size_t)fi) : NULL;
      vals[i] = v && v->type == JSCAN_NUMBER ? v->num : 0;
    }
    kpi_custom_observe(p->kpi, t, name, dims, uh, vals);
  }
  p->tick_events++;
  if (p->feed && rec->time_us >= p->feed_since_us) feed_offer(p->feed, t, dims, revenue);
  if (is_order) {
    p->tick_orders++;
    p->tick_revenue += revenue;
  }

  profile_result_t res;
  int rules = p->decide && !decide_idle(p->decide);
  uint64_t key_before = rules ? decide_key_before(p->profiles, e) : 0;
  if (profile_apply(p->profiles, &pe, &res) != 0) return;
  kpi_event_t ke = {t, dims[4], is_order, revenue, &res, e->dlen[4]};
  kpi_observe(p->kpi, &ke);
  if (rules)
    decide_event(p->decide, e, rec, (const char *const *)p->kinds, res.profile, key_before);
  int64_t start_us = (int64_t)res.profile->session_start * 1000000;
  if (res.flags & PROFILE_R_SESSION_START) SESSION_ADD(p, start_us, "start", res.profile->id, 0);
  if (res.flags & PROFILE_R_CONVERSION)
    SESSION_ADD(p, start_us, "converted", res.profile->id, revenue);
}

/* End the sessions the watermark (the latest event time) has timed out. Timeouts count
 * in whole seconds of it, so one full pass over the profile slots per second the
 * watermark moves finds them all, and one more after a late event; the pass is spread
 * over calls of at most SWEEP_BUDGET slots. Sweeping every time a slice caught up cost
 * 22% of the server's CPU with 430k profiles under load (every loop turn catches up). */
static void sweep_due(process_t *p) {
  int64_t wm_s = p->watermark_us / 1000000;
  if (wm_s != p->swept_s || p->sweep_again) {
    p->swept_s = wm_s;
    p->sweep_again = 0;
    p->sweep_left = profile_slots(p->profiles);
  }
  if (!p->sweep_left) return;
  size_t k = p->sweep_left < SWEEP_BUDGET ? p->sweep_left : SWEEP_BUDGET;
  profile_sweep(p->profiles, p->watermark_us, k);
  p->sweep_left -= k;
}

/* Process up to max records (0: no limit) or until budget_us of wall time passes (0: no
 * limit). Returns 1 when it stopped on a limit (more may wait), 0 when caught up, or a
 * negative errno. */
static int slice(process_t *p, size_t max, int64_t budget_us) {
  if (p->st.read_error) return p->st.read_error;
  if (!p->reader) {
    char err[256];
    if (!(p->reader = log_reader_open(p->log, p->offset, err, sizeof err))) return -EIO;
    if (p->log_cache_bytes) log_reader_drop_behind(p->reader, p->log_cache_bytes);
  }
  int64_t t0 = budget_us ? clock_mono_us() : 0;
  log_record_t rec;
  size_t n = 0;
  uint64_t next_key = 0; /* the next record's profile key (from its log key), its index
                            slot asked for (two records ahead measured no better) */
  p->now_us = clock_wall_us();
  for (;;) {
    if ((n & 4095) == 4095) p->now_us = clock_wall_us();
    int rc = log_reader_next_intact(p->reader, &rec, &p->st.unreadable);
    if (rc < 0) {
      p->st.read_error = rc;
      return rc;
    }
    if (rc == 0) break;
    uint64_t pkey = next_key;
    const char *nk;
    uint32_t nkl;
    next_key = log_reader_peek_key(p->reader, 0, &nk, &nkl) && nkl > 0 /* 0: NUL-terminated */
                   ? profile_prefetch_index(p->profiles, nk, nkl)
                   : 0;
    process_record(p, &rec, pkey);
    p->offset = rec.offset + 1;
    n++;
    if (max && n >= max) return 1;
    /* Checked every 32 records: at 3-8 us a record (cache misses, a busy CPU) every 256
     * let slices overshoot a 2 ms budget to 3-8 ms, all of it time the loop's acks wait
     * (the budget is now SLICE_US). */
    if (budget_us && (n & 31) == 0 && clock_mono_us() - t0 >= budget_us) return 1;
  }
  sweep_due(p);
  p->replayed = 1;
  return 0;
}

/* ---- loop mode ---- */

/* The loop thread may change the stores: 1 when no other thread reads them (then call
 * write_end), 0 when one does (the caller defers; the last reader wakes the stage). */
static int write_begin(process_t *p) {
  if (!p->started) return 1;
  pthread_mutex_lock(&p->rw_mu);
  int ok = p->readers == 0;
  if (ok) p->writing = 1;
  else p->writer_waits = 1;
  pthread_mutex_unlock(&p->rw_mu);
  return ok;
}

static void write_end(process_t *p) {
  if (!p->started) return;
  pthread_mutex_lock(&p->rw_mu);
  p->writing = 0;
  p->writer_waits = 0;
  pthread_cond_broadcast(&p->rw_cond);
  pthread_mutex_unlock(&p->rw_mu);
}

void process_read_begin(process_t *p) {
  pthread_mutex_lock(&p->rw_mu);
  while (p->writing || p->writer_waits) pthread_cond_wait(&p->rw_cond, &p->rw_mu);
  p->readers++;
  pthread_mutex_unlock(&p->rw_mu);
}

void process_read_end(process_t *p) {
  pthread_mutex_lock(&p->rw_mu);
  int last = --p->readers == 0;
  if (last && p->writer_waits) {
    pthread_cond_broadcast(&p->rw_cond); /* a process_write_lock waiting on the loop */
    if (p->started && !p->stopped) uv_async_send(&p->wake);
  }
  pthread_mutex_unlock(&p->rw_mu);
}

void process_write_lock(process_t *p) {
  if (!p || !p->started) return;
  pthread_mutex_lock(&p->rw_mu);
  p->writer_waits = 1;
  while (p->readers) pthread_cond_wait(&p->rw_cond, &p->rw_mu);
  p->writing = 1;
  pthread_mutex_unlock(&p->rw_mu);
}

void process_write_unlock(process_t *p) {
  if (p) write_end(p);
}

static void on_idle(uv_idle_t *h) {
  process_t *p = h->data;
  int more = 0;
  if (write_begin(p)) {
    more = slice(p, PROCESS_SLICE_RECORDS, SLICE_US) == 1;
    write_end(p);
  }
  if (!more) {
    uv_idle_stop(&p->idle);
    p->idle_active = 0;
  }
}

static void schedule(process_t *p) {
  if (p->stopped || p->idle_active) return;
  p->idle_active = 1;
  uv_idle_start(&p->idle, on_idle);
}

static void on_notify(void *ud, uint64_t end_offset) {
  process_t *p = ud;
  if (end_offset > p->offset) schedule(p);
}

static void on_wake(uv_async_t *h) { schedule(h->data); }

/* Write a serialised snapshot unless an erasure asked for a rebuild (the data may hold
 * what was just forgotten). Any thread. */
static int write_snapshot(process_t *p, const char *path, const buf_t *data) {
  pthread_mutex_lock(&p->snap_mu);
  int rc = atomic_load(&p->rebuild) ? -ECANCELED : file_write_atomic(path, data->data, data->len, 0600);
  pthread_mutex_unlock(&p->snap_mu);
  return rc;
}

/* Make the spill durable up to what the snapshot names, then write the snapshot. */
static int sync_and_write(process_t *p, int spill_fd, const char *path, const buf_t *data) {
  int rc = 0;
  if (spill_fd >= 0) {
    if (fdatasync(spill_fd) != 0) rc = -errno;
    close(spill_fd);
  }
  return rc ? rc : write_snapshot(p, path, data);
}

static int64_t thread_cpu_us(void) {
  struct timespec ts;
  if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) != 0) return 0;
  return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* On the pool: serialise under the read lock (the stage holds its next slice meanwhile,
 * ingestion goes on), then make the spill durable and write the file. Its CPU time goes
 * to on_ckpt, which spaces checkpoints by it. */
static void ckpt_work(uv_work_t *w) {
  ckpt_job_t *j = w->data;
  process_t *p = j->p;
  int64_t cpu0 = thread_cpu_us();
  process_read_begin(p);
  int rc = serialize(p, &j->data, &j->spill_gen); /* the spill's commit included: the loop
                                                     touches the spill only as a writer */
  int fd = rc == 0 && p->spill ? spill_sync_fd(p->spill) : -1;
  if (rc == 0 && p->spill && fd < 0) rc = fd;
  process_read_end(p);
  j->rc = rc ? rc : sync_and_write(p, fd, j->path, &j->data);
  buf_free(&j->data);
#ifdef __GLIBC__
  /* Give the pages of freed memory back to the system: the snapshot buffer just freed,
   * and what the rollup budget gives up, would otherwise stay in RSS as free heap
   * (docs/RELIABILITY.md "Soak"). On the pool, not the loop thread: it walks every arena. */
  malloc_trim(0);
#endif
  j->cpu_us = thread_cpu_us() - cpu0;
}

int process_forget(void *ud, const char *ids, size_t n) {
  process_t *p = ud;
  (void)ids, (void)n;
  pthread_mutex_lock(&p->snap_mu);
  atomic_store(&p->rebuild, 1);
  int rc = 0;
  if (p->snap_path && unlink(p->snap_path) != 0 && errno != ENOENT) rc = -errno;
  pthread_mutex_unlock(&p->snap_mu);
  return rc;
}

/* Start again from offset 0 with empty stores (loop thread). */
static void rebuild_now(process_t *p) {
  p->swept_s = 0;
  p->sweep_left = 0;
  free_stores(p);
  if (new_stores(p) != 0) abort(); /* the options were valid at process_new */
  log_reader_close(p->reader);
  p->reader = NULL;
  if (p->decide) decide_reset(p->decide);
  char err[256];
  if (fresh_spill(p, err, sizeof err) != 0) p->spill = NULL; /* evictions counted dropped */
  p->replayed = 0;
  p->offset = 0;
  p->watermark_us = 0;
  p->st.read_error = 0;
  atomic_store(&p->rebuild, 0);
  schedule(p);
}

static void ckpt_done(uv_work_t *w, int status) {
  ckpt_job_t *j = w->data;
  j->p->jobs--;
  j->p->ckpt_cpu_us = j->cpu_us;
  spill_stats(j->p->spill, &j->p->spill_st);
  if (j->rc == 0) {
    j->p->st.checkpoints++;
    if (j->p->spill) spill_retire(j->p->spill, j->spill_gen);
  }
  buf_free(&j->data);
  free(j->path);
  free(j);
}

static void on_ckpt(uv_timer_t *t) {
  process_t *p = t->data;
  if (p->jobs || !p->snap_path || atomic_load(&p->rebuild)) return;
  /* Writing a snapshot costs CPU in proportion to the state, not to the events since
   * the last one: with large state the period stretches so that it stays at most
   * 1/CKPT_SHARE of one core (the log's tail replays at start in any case). */
  int64_t now = clock_mono_us();
  if (p->ckpt_at_us && now - p->ckpt_at_us < CKPT_SHARE * p->ckpt_cpu_us) return;
  p->ckpt_at_us = now;
  ckpt_job_t *j = xcalloc(1, sizeof *j);
  j->p = p;
  j->path = xstrdup(p->snap_path);
  j->work.data = j;
  p->jobs++;
  if (uv_queue_work(p->loop, &j->work, ckpt_work, ckpt_done) != 0) {
    p->jobs--;
    free(j->path);
    free(j);
  }
}

static void on_live(uv_timer_t *t) {
  process_t *p = t->data;
  int64_t now_mono = clock_mono_us(), now = clock_wall_us();
  p->now_us = now;
  if (write_begin(p)) { /* else next second: a query is reading */
    if (atomic_load(&p->rebuild) && !p->jobs) rebuild_now(p);
    sweep_due(p);
    rollup_advance(p->events);
    rollup_advance(p->sessions);
    kpi_advance(p->kpi);
    if (p->decide) decide_tick(p->decide, p->watermark_us, now, p->replayed);
    spill_stats(p->spill, &p->spill_st);
    write_end(p);
  }
  double secs = (double)(now_mono - p->tick_mono_us) / 1e6;
  if (secs <= 0) secs = 1;
  rollup_totals_t tot = {0};
  rollup_totals(p->events, now - 300 * 1000000LL, now + 1000000, NULL, 0, &tot);
  if (p->hub) {
    /* Today: from 00:00 UTC to the end of the current second. */
    int64_t day0 = kpi_day_of(now) * 86400 * 1000000LL, end_us = now + 1000000;
    rollup_totals_t ord = {0}, ses = {0}, conv = {0};
    rollup_filter_t of = {"event", p->conversion}, sf = {"session", "start"};
    rollup_counts(p->events, day0, end_us, &of, 1, &ord);
    rollup_counts(p->sessions, day0, end_us, &sf, 1, &ses);
    sf.value = "converted";
    rollup_counts(p->sessions, day0, end_us, &sf, 1, &conv);
    char iso[25], body[768], rate[32], active[24];
    clock_format_iso(now, iso);
    if (tot.uniques == ROLLUP_NA) snprintf(active, sizeof active, "null"); /* budget */
    else snprintf(active, sizeof active, "%llu", (unsigned long long)tot.uniques);
    if (ses.count) snprintf(rate, sizeof rate, "%.6g", (double)conv.count / (double)ses.count);
    else snprintf(rate, sizeof rate, "null");
    uint64_t end = log_end_offset(p->log);
    snprintf(body, sizeof body,
             "{\"t\":\"%s\",\"events\":%llu,\"eventsPerSecond\":%.1f,\"activeUsers\":%s,"
             "\"revenue\":%.2f,\"orders\":%llu,\"offset\":%llu,\"lag\":%llu,"
             "\"visitorsOnline\":%s,\"sessionsToday\":%llu,\"revenueToday\":%.2f,"
             "\"ordersToday\":%llu,\"conversionRateToday\":%s}",
             iso, (unsigned long long)p->tick_events, (double)p->tick_events / secs,
             active, p->tick_revenue,
             (unsigned long long)p->tick_orders, (unsigned long long)p->offset,
             (unsigned long long)(end > p->offset ? end - p->offset : 0),
             active, (unsigned long long)ses.count, ord.sum,
             (unsigned long long)ord.count, rate);
    sse_publish(p->hub, PROCESS_LIVE_CHANNEL, NULL, body, NULL);
  }
  if (p->feed) {
    buf_t b = BUF_INIT;
    if (feed_flush(p->feed, now, &b)) sse_publish(p->hub, PROCESS_FEED_CHANNEL, NULL, b.data, NULL);
    buf_free(&b);
    p->feed_since_us = now - PROCESS_FEED_MAX_AGE_S * 1000000LL;
  }
  p->tick_events = p->tick_orders = 0;
  p->tick_revenue = 0;
  p->tick_mono_us = now_mono;
}

/* ---- public ---- */

static uint64_t fingerprint(const process_t *p) {
  buf_t b = BUF_INIT;
  for (int i = 0; i < PROFILE_KINDS; i++) buf_printf(&b, "%s\n", p->kinds[i] ? p->kinds[i] : "");
  buf_printf(&b, "%s\n%lld", p->conversion, (long long)p->popts.session_timeout_us);
  for (size_t i = 0; p->custom && i < p->custom->n; i++) {
    const config_kpi_t *k = &p->custom->items[i];
    buf_printf(&b, "\nkpi %s", k->name);
    for (int j = 0; j < 2; j++) {
      const config_kpi_part_t *q = j ? &k->den : &k->num;
      buf_printf(&b, "|%d %s %d %s", q->present, q->event ? q->event : "", q->metric,
                 q->property ? q->property : "");
      for (size_t x = 0; x < q->nfilters; x++)
        buf_printf(&b, " %d=%s", q->filter_dim[x], q->filter_value[x]);
    }
  }
  uint64_t h = XXH3_64bits(b.data, b.len);
  buf_free(&b);
  return h;
}

/* Extra paths the process stage reads beyond evfields' own: a cost's campaign and amount,
 * then properties.<property> of each user-defined KPI part that sums one, each distinct
 * property once (recording each part's extra slot in custom_field). */

static evfields_decoder_t *new_decoder(process_t *p) {
  const char *paths[EVFIELDS_MAX_EXTRA] = {"properties.campaign", "properties.cost"};
  char *own[2 * CONFIG_KPI_MAX];
  size_t n = X_FIXED, nown = 0;
  evfields_decoder_t *d = NULL;
  for (size_t i = 0; p->custom && i < p->custom->n && i < CONFIG_KPI_MAX; i++)
    for (int j = 0; j < 2; j++) {
      const config_kpi_part_t *q = j ? &p->custom->items[i].den : &p->custom->items[i].num;
      int *slot = &p->custom_field[2 * i + (size_t)j];
      *slot = -1;
      if (!q->present || q->metric != CONFIG_KPI_SUM || !q->property) continue;
      char path[CONFIG_KPI_MAX_NAME + 16];
      snprintf(path, sizeof path, "properties.%s", q->property);
      for (size_t k = 0; k < n; k++) /* a path is scanned into one slot only */
        if (!strcmp(paths[k], path)) *slot = (int)k;
      if (*slot >= 0) continue;
      if (n == EVFIELDS_MAX_EXTRA) goto done; /* too many distinct properties */
      own[nown] = xstrdup(path);
      *slot = (int)n;
      paths[n++] = own[nown++];
    }
  d = evfields_new(p->conversion, paths, n);
done:
  for (size_t i = 0; i < nown; i++) free(own[i]);
  return d;
}

process_t *process_new(const process_opts_t *o, char *err, size_t errlen) {
  const char *const *tracked = o->tracked;
  size_t ntracked = o->ntracked;
  if (!tracked) {
    tracked = default_tracked;
    ntracked = sizeof default_tracked / sizeof default_tracked[0];
  }
  if (ntracked > PROFILE_KINDS) {
    snprintf(err, errlen, "at most %d tracked events (got %zu)", PROFILE_KINDS, ntracked);
    return NULL;
  }
  if (o->rollup_max_bytes && o->rollup_max_bytes < ROLLUP_MIN_BYTES) {
    snprintf(err, errlen, "rollup-max-bytes: at least %zu (1m), or 0 for no bound",
             ROLLUP_MIN_BYTES);
    return NULL;
  }
  process_t *p = xcalloc(1, sizeof *p);
  p->rollup_max_bytes = (size_t)o->rollup_max_bytes;
  pthread_mutex_init(&p->snap_mu, NULL);
  pthread_mutex_init(&p->rw_mu, NULL);
  pthread_cond_init(&p->rw_cond, NULL);
  p->loop = o->loop;
  p->log = o->log;
  p->log_cache_bytes = o->log_cache_bytes;
  p->hub = o->hub;
  p->decide = o->decide;
  p->checkpoint_ms = o->checkpoint_ms ? o->checkpoint_ms : 10000;
  p->conversion = xstrdup(o->conversion_event && *o->conversion_event ? o->conversion_event
                                                                       : "Order Completed");
  for (size_t i = 0; i < ntracked; i++) {
    p->kinds[i] = xstrdup(tracked[i]);
    p->popts.kinds[i] = p->kinds[i];
    if (!strcmp(tracked[i], p->conversion)) p->popts.conversion_kinds |= (uint8_t)(1u << i);
  }
  p->popts.session_timeout_us = (int64_t)(o->session_timeout_s ? o->session_timeout_s : 1800) * 1000000;
  p->popts.on_session_end = on_session_end;
  p->popts.max_profiles = o->max_profiles;
  if (o->state_dir) {
    p->popts.on_evict = on_evict;
    p->popts.on_fetch = on_fetch;
  }
  p->spill_max_ids = o->spill_max_ids;
  p->popts.ud = p;
  p->custom = o->kpis;
  p->fingerprint = fingerprint(p);
  p->dec = new_decoder(p);
  p->ev = xmalloc(sizeof *p->ev);
  p->now_us = clock_wall_us();
  if (new_stores(p) != 0 || !p->dec) {
    snprintf(err, errlen, "bad processing options");
    process_free(p);
    return NULL;
  }
  if (o->state_dir) {
    mkdir(o->state_dir, 0700);
    size_t n = strlen(o->state_dir) + 16;
    p->snap_path = xmalloc(n);
    snprintf(p->snap_path, n, "%s/snapshot", o->state_dir);
    p->state_dir = xstrdup(o->state_dir);
  }
  p->snap_status = load_snapshot(p);
  if (p->state_dir && !p->spill && fresh_spill(p, err, errlen) != 0) {
    process_free(p);
    return NULL;
  }
  p->tick_mono_us = clock_mono_us();
  if (p->hub && p->loop) {
    p->feed = feed_new(dim_names, PROCESS_NDIMS, PROCESS_FEED_PER_TICK, (uint64_t)clock_wall_us());
    p->feed_since_us = clock_wall_us() - PROCESS_FEED_MAX_AGE_S * 1000000LL;
  }
  return p;
}

int process_snapshot_status(const process_t *p, char *msg, size_t msglen) {
  if (msg && msglen) snprintf(msg, msglen, "%s", p->snap_msg);
  return p->snap_status;
}

int process_start(process_t *p) {
  uv_idle_init(p->loop, &p->idle);
  uv_timer_init(p->loop, &p->ckpt_timer);
  uv_timer_init(p->loop, &p->live_timer);
  uv_async_init(p->loop, &p->wake, on_wake);
  p->idle.data = p->ckpt_timer.data = p->live_timer.data = p->wake.data = p;
  p->started = 1;
  log_subscribe(p->log, on_notify, p);
  uv_timer_start(&p->ckpt_timer, on_ckpt, p->checkpoint_ms, p->checkpoint_ms);
  uv_timer_start(&p->live_timer, on_live, 1000, 1000);
  schedule(p);
  return 0;
}

void process_stop(process_t *p) {
  if (!p || !p->started || p->stopped) return;
  pthread_mutex_lock(&p->rw_mu);
  p->stopped = 1;
  p->writer_waits = 0; /* no slice will come: a checkpoint still waiting may read */
  pthread_cond_broadcast(&p->rw_cond);
  pthread_mutex_unlock(&p->rw_mu);
  uv_close((uv_handle_t *)&p->wake, NULL);
  uv_close((uv_handle_t *)&p->idle, NULL);
  uv_close((uv_handle_t *)&p->ckpt_timer, NULL);
  uv_close((uv_handle_t *)&p->live_timer, NULL);
}

int process_busy(const process_t *p) { return p && p->jobs > 0; }

void process_free(process_t *p) {
  if (!p) return;
  log_reader_close(p->reader);
  free_stores(p);
  evfields_free(p->dec);
  free(p->ev);
  feed_free(p->feed);
  for (int i = 0; i < PROFILE_KINDS; i++) free(p->kinds[i]);
  free(p->conversion);
  free(p->snap_path);
  free(p->state_dir);
  pthread_mutex_destroy(&p->snap_mu);
  pthread_mutex_destroy(&p->rw_mu);
  pthread_cond_destroy(&p->rw_cond);
  free(p);
}

long process_run_until_caught_up(process_t *p) {
  uint64_t before = p->st.events;
  int rc;
  while ((rc = slice(p, 0, 0)) == 1) {
  }
  if (rc < 0) return rc;
  return (long)(p->st.events - before);
}

int process_checkpoint_sync(process_t *p) {
  if (!p->snap_path) return 0;
  buf_t b = BUF_INIT;
  uint64_t gen;
  int rc = serialize(p, &b, &gen);
  int fd = rc == 0 && p->spill ? spill_sync_fd(p->spill) : -1;
  if (rc == 0 && p->spill && fd < 0) rc = fd;
  if (rc == 0) rc = sync_and_write(p, fd, p->snap_path, &b);
  buf_free(&b);
  if (rc == 0) {
    p->st.checkpoints++;
    if (p->spill) spill_retire(p->spill, gen);
  }
  return rc == -ECANCELED ? 0 : rc;
}

int process_remove_snapshot(const char *state_dir) {
  char path[4096];
  snprintf(path, sizeof path, "%s/snapshot", state_dir);
  if (unlink(path) != 0 && errno != ENOENT) return -errno;
  return 0;
}

const rollup_t *process_events(const process_t *p) { return p->events; }
const rollup_t *process_sessions(const process_t *p) { return p->sessions; }
const kpi_t *process_kpi(const process_t *p) { return p->kpi; }
const char *process_conversion_event(const process_t *p) { return p->conversion; }

void process_stats(const process_t *p, process_stats_t *out) {
  *out = p->st;
  out->offset = p->offset;
  out->profiles = profile_count(p->profiles);
  out->profile_bytes = profile_store_bytes(p->profiles);
  spill_stats_t ss = p->started ? p->spill_st : (spill_stats_t){0};
  if (!p->started) spill_stats(p->spill, &ss);
  out->spilled = ss.profiles;
  out->spill_ids = ss.ids;
  out->spill_bytes = ss.bytes;
  out->spill_index_bytes = ss.index_bytes;
}
