/* profile: the per-person store of the process stage (see profile.h for the rules).
 *
 * Layout. Profiles live in one array of 112-byte slots (freed slots chain through
 * alias_head and are reused first); aliases in a second array of 24-byte records, each on
 * a doubly linked list hanging off its target's alias_head, so evicting or erasing a
 * profile drops its aliases without a scan. One open-addressing index (linear probing,
 * backward-shift deletion, load <= 3/4) maps every key — profile ids and alias ids — to
 * a slot or an alias record: an entry is 8 bytes, the key's high 32 bits as a tag plus
 * the reference; a tag match is confirmed against the full 64-bit key in the slot or
 * record, and the home bucket is computed from the tag alone, so growing or deleting
 * never has to look outside the index. */
#include "profile.h"

#include <errno.h>
#include <math.h>
#include <string.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif
#define XXH_INLINE_ALL
#include <xxhash.h>

#include "util/crc32c.h"
#include "util/mem.h"
#include "util/rand.h"

_Static_assert(sizeof(profile_t) == 112, "profile_t is 112 bytes");

#define NONE UINT32_MAX
#define ALIAS_BIT 0x80000000u
#define F_REF 0x80 /* CLOCK mark: touched since the hand last passed */
#define F_PERSIST \
  (PROFILE_F_IDENTIFIED | PROFILE_F_SESSION | PROFILE_F_OPEN | PROFILE_F_CONVERTED)
#define AGO_MAX 65535u
#define ALIAS_SAMPLE 8
#define SNAP_HEAD 24
#define SNAP_PROFILE 112
#define SNAP_ALIAS 16
#define PIN_MAX 3

typedef struct alias {
  uint64_t key;
  uint32_t target;     /* profile slot, or NONE when the record is free */
  uint32_t next, prev; /* target's alias list; next doubles as the free list */
  uint32_t last_used;  /* latest event time that used or linked it */
} alias_t;

typedef struct entry {
  uint32_t tag; /* key >> 32 */
  uint32_t ref; /* slot, or ALIAS_BIT | alias record; NONE: empty */
} entry_t;

struct profile_store {
  uint32_t max_profiles, max_aliases, timeout_s;
  uint8_t conversion_kinds;
  uint64_t seed;
  char *kinds[PROFILE_KINDS];
  size_t kind_len[PROFILE_KINDS];
  /* The tracked names by kind_slot of their bytes: k + 1 for kind k, 0 none, KIND_SLOTS_MANY
   * when several share the slot (profile_kind then looks at each). Every event looks up
   * its name: one slot and one comparison instead of a pass over the names. */
  uint8_t kind_slots[64];
  profile_evict_fn on_evict;
  profile_fetch_fn on_fetch;
  profile_session_fn on_session_end;
  void *ud;

  profile_t *p;         /* slots; id 0 marks a free one */
  uint32_t *alias_head; /* per slot: first alias record, or next free slot */
  uint32_t p_cap, p_used, count, p_free, hand, sweep_hand;

  alias_t *a;
  uint32_t a_cap, a_used, a_count, a_free, a_hand;

  entry_t *t;
  uint32_t t_bits, t_count;

  uint32_t pin[PIN_MAX]; /* slots the current call resolved to: never evicted by it */
  uint32_t npin;
};

/* ---- Small helpers ---- */

static inline uint32_t sat_add32(uint32_t a, uint32_t b) {
  return a + b < a ? UINT32_MAX : a + b;
}

static inline int64_t sat_add64(int64_t a, int64_t b) {
  int64_t r;
  if (__builtin_add_overflow(a, b, &r)) return b > 0 ? INT64_MAX : INT64_MIN;
  return r;
}

static inline uint16_t ago_add(uint16_t ago, uint32_t d) {
  return (uint16_t)((uint32_t)ago + d > AGO_MAX || d > AGO_MAX ? AGO_MAX : ago + d);
}

#define KIND_SLOTS_MANY 0xff

/* The slot of name[0..len) (len > 0) in kind_slots: its length and first and last bytes. */
static inline unsigned kind_slot(const char *name, size_t len) {
  return (unsigned)(len + 31u * (unsigned char)name[0] + 7u * (unsigned char)name[len - 1]) & 63;
}

static size_t id_len(const char *id, size_t len) {
  return id && !len ? strlen(id) : (id ? len : 0);
}

static uint64_t key_of(const profile_store_t *s, const char *id, size_t len) {
  uint64_t h = XXH3_64bits_withSeed(id, len, s->seed);
  return h ? h : 1; /* 0 marks free slots */
}

static uint32_t fold32(uint64_t h) {
  uint32_t x = (uint32_t)(h ^ (h >> 32));
  return x ? x : 1;
}

/* ---- Index ---- */

static inline uint32_t t_home(const profile_store_t *s, uint32_t tag) {
  return (uint32_t)(tag * 0x9E3779B1u) >> (32 - s->t_bits);
}

static inline uint64_t ref_key(const profile_store_t *s, uint32_t ref) {
  return ref & ALIAS_BIT ? s->a[ref & ~ALIAS_BIT].key : s->p[ref].id;
}

/* Position of key in the index, or NONE. */
static uint32_t t_find(const profile_store_t *s, uint64_t key) {
  uint32_t mask = (1u << s->t_bits) - 1, tag = (uint32_t)(key >> 32);
  for (uint32_t i = t_home(s, tag);; i = (i + 1) & mask) {
    entry_t e = s->t[i];
    if (e.ref == NONE) return NONE;
    if (e.tag == tag && ref_key(s, e.ref) == key) return i;
  }
}

static void t_place(profile_store_t *s, uint32_t tag, uint32_t ref) {
  uint32_t mask = (1u << s->t_bits) - 1, i = t_home(s, tag);
  while (s->t[i].ref != NONE) i = (i + 1) & mask;
  s->t[i] = (entry_t){tag, ref};
}

static void t_alloc(profile_store_t *s, uint32_t bits) {
  s->t_bits = bits;
  s->t = xmalloc(sizeof(entry_t) << bits);
  memset(s->t, 0xff, sizeof(entry_t) << bits); /* ref = NONE */
}

static void t_insert(profile_store_t *s, uint64_t key, uint32_t ref) {
  if ((uint64_t)(s->t_count + 1) * 4 > (uint64_t)3 << s->t_bits) {
    entry_t *old = s->t;
    uint32_t n = 1u << s->t_bits;
    t_alloc(s, s->t_bits + 1);
    for (uint32_t i = 0; i < n; i++)
      if (old[i].ref != NONE) t_place(s, old[i].tag, old[i].ref);
    free(old);
  }
  t_place(s, (uint32_t)(key >> 32), ref);
  s->t_count++;
}

/* Remove the entry at i, shifting later members of its cluster back. */
static void t_delete_at(profile_store_t *s, uint32_t i) {
  uint32_t mask = (1u << s->t_bits) - 1;
  for (uint32_t j = (i + 1) & mask; s->t[j].ref != NONE; j = (j + 1) & mask) {
    uint32_t h = t_home(s, s->t[j].tag);
    /* s->t[j] may fill the hole at i unless its home lies cyclically in (i, j]. */
    int stays = i <= j ? (h > i && h <= j) : (h > i || h <= j);
    if (!stays) {
      s->t[i] = s->t[j];
      i = j;
    }
  }
  s->t[i].ref = NONE;
  s->t_count--;
}

static void t_delete(profile_store_t *s, uint64_t key) {
  uint32_t i = t_find(s, key);
  if (i != NONE) t_delete_at(s, i);
}

/* ---- Aliases ---- */

static void alias_link(profile_store_t *s, uint32_t ai, uint32_t target) {
  alias_t *a = &s->a[ai];
  a->target = target;
  a->prev = NONE;
  a->next = s->alias_head[target];
  if (a->next != NONE) s->a[a->next].prev = ai;
  s->alias_head[target] = ai;
}

static void alias_unlink(profile_store_t *s, uint32_t ai) {
  alias_t *a = &s->a[ai];
  if (a->prev != NONE)
    s->a[a->prev].next = a->next;
  else
    s->alias_head[a->target] = a->next;
  if (a->next != NONE) s->a[a->next].prev = a->prev;
}

/* Unlink and free record ai (its index entry is the caller's business). */
static void alias_release(profile_store_t *s, uint32_t ai) {
  alias_unlink(s, ai);
  s->a[ai].target = NONE;
  s->a[ai].key = 0;
  s->a[ai].next = s->a_free;
  s->a_free = ai;
  s->a_count--;
}

/* Drop the least recently used of the next ALIAS_SAMPLE aliases after the hand. */
static void alias_evict_one(profile_store_t *s) {
  uint32_t victim = NONE, seen = 0;
  for (uint32_t steps = 0; steps < s->a_used && seen < ALIAS_SAMPLE; steps++) {
    uint32_t i = s->a_hand;
    s->a_hand = i + 1 < s->a_used ? i + 1 : 0;
    if (s->a[i].target == NONE) continue;
    seen++;
    if (victim == NONE || s->a[i].last_used < s->a[victim].last_used) victim = i;
  }
  t_delete(s, s->a[victim].key);
  alias_release(s, victim);
}

/* A free alias record (evicting one at the bound); the caller fills key and links it. */
static uint32_t alias_alloc(profile_store_t *s) {
  if (s->a_count >= s->max_aliases) alias_evict_one(s);
  uint32_t ai = s->a_free;
  if (ai != NONE) {
    s->a_free = s->a[ai].next;
  } else {
    if (s->a_used == s->a_cap) {
      uint64_t cap = s->a_cap ? (uint64_t)s->a_cap * 2 : 64;
      s->a_cap = (uint32_t)(cap < s->max_aliases ? cap : s->max_aliases);
      s->a = xrealloc(s->a, (size_t)s->a_cap * sizeof(alias_t));
    }
    ai = s->a_used++;
  }
  s->a_count++;
  return ai;
}

/* ---- Sessions ---- */

/* End the open session held in p, reporting it under profile id `owner`. */
static void end_session(profile_store_t *s, profile_t *p, uint64_t owner, int reason,
                        profile_result_t *res) {
  profile_session_t ses = {
      .profile = owner,
      .start_us = (int64_t)p->session_start * 1000000,
      .last_us = (int64_t)p->session_last * 1000000,
      .pages = p->session_pages,
      .campaign = p->session_campaign,
      .converted = (p->flags & PROFILE_F_CONVERTED) ? 1 : 0,
      .reason = (uint8_t)reason,
  };
  p->flags &= (uint8_t) ~(PROFILE_F_OPEN | PROFILE_F_CONVERTED);
  if (res) {
    res->flags |= PROFILE_R_SESSION_END;
    res->sessions_ended++;
  }
  if (s->on_session_end) s->on_session_end(s->ud, &ses);
}

static void copy_session(profile_t *dst, const profile_t *src) {
  dst->session_start = src->session_start;
  dst->session_last = src->session_last;
  dst->session_campaign = src->session_campaign;
  dst->session_key = src->session_key;
  dst->session_pages = src->session_pages;
  dst->flags =
      (uint8_t)((dst->flags & ~(PROFILE_F_SESSION | PROFILE_F_OPEN | PROFILE_F_CONVERTED)) |
                (src->flags & (PROFILE_F_SESSION | PROFILE_F_OPEN | PROFILE_F_CONVERTED)));
}

/* ---- Profiles ---- */

static void slot_release(profile_store_t *s, uint32_t i) {
  memset(&s->p[i], 0, sizeof(profile_t));
  s->alias_head[i] = s->p_free;
  s->p_free = i;
  s->count--;
}

/* Remove profile i, its index entry and all its aliases. */
static void drop_profile(profile_store_t *s, uint32_t i) {
  t_delete(s, s->p[i].id);
  while (s->alias_head[i] != NONE) {
    uint32_t ai = s->alias_head[i];
    t_delete(s, s->a[ai].key);
    alias_release(s, ai);
  }
  slot_release(s, i);
}

static int pinned(const profile_store_t *s, uint32_t i) {
  for (uint32_t k = 0; k < s->npin; k++)
    if (s->pin[k] == i) return 1;
  return 0;
}

static void pin(profile_store_t *s, uint32_t i) {
  if (i != NONE && s->npin < PIN_MAX && !pinned(s, i)) s->pin[s->npin++] = i;
}

/* CLOCK: evict the first profile after the hand not touched since the hand last passed
 * (and not pinned, when the bound leaves room for that). */
static void evict_one(profile_store_t *s, profile_result_t *res) {
  uint32_t i;
  int honour_pins = s->max_profiles > PIN_MAX;
  for (;;) {
    i = s->hand;
    s->hand = i + 1 < s->p_used ? i + 1 : 0;
    if (!s->p[i].id || (honour_pins && pinned(s, i))) continue;
    if (!(s->p[i].flags & F_REF)) break;
    s->p[i].flags &= (uint8_t)~F_REF;
  }
  profile_t *p = &s->p[i];
  if (p->flags & PROFILE_F_OPEN) end_session(s, p, p->id, PROFILE_END_EVICT, res);
  if (s->on_evict) {
    profile_t copy = *p;
    copy.flags &= F_PERSIST;
    uint64_t keys[PROFILE_EVICT_ALIASES];
    uint32_t used[PROFILE_EVICT_ALIASES];
    size_t n = 0;
    for (uint32_t ai = s->alias_head[i]; ai != NONE && n < PROFILE_EVICT_ALIASES;
         ai = s->a[ai].next) {
      keys[n] = s->a[ai].key;
      used[n++] = s->a[ai].last_used;
    }
    s->on_evict(s->ud, &copy, keys, used, n);
  }
  drop_profile(s, i);
  res->flags |= PROFILE_R_EVICTED;
}

/* A free profile slot (evicting one at the bound), counted, with no aliases. */
static uint32_t alloc_slot(profile_store_t *s, profile_result_t *res) {
  if (s->count >= s->max_profiles) evict_one(s, res);
  uint32_t i = s->p_free;
  if (i != NONE) {
    s->p_free = s->alias_head[i];
  } else {
    if (s->p_used == s->p_cap) {
      uint64_t cap = s->p_cap ? (uint64_t)s->p_cap * 2 : 64;
      s->p_cap = (uint32_t)(cap < s->max_profiles ? cap : s->max_profiles);
      s->p = xrealloc(s->p, (size_t)s->p_cap * sizeof(profile_t));
      s->alias_head = xrealloc(s->alias_head, (size_t)s->p_cap * sizeof(uint32_t));
    }
    i = s->p_used++;
  }
  s->alias_head[i] = NONE;
  s->count++;
  return i;
}

/* A fresh profile for key seen at ts (evicting one at the bound). */
static uint32_t new_profile(profile_store_t *s, uint64_t key, uint32_t ts,
                            profile_result_t *res) {
  uint32_t i = alloc_slot(s, res);
  profile_t *p = &s->p[i];
  memset(p, 0, sizeof *p);
  p->id = key;
  p->first_seen = p->last_seen = ts;
  p->flags = F_REF;
  t_insert(s, key, i);
  res->flags |= PROFILE_R_NEW_PROFILE;
  return i;
}

/* When memory does not know key, ask on_fetch for the person it belongs to and put them
 * back (profile and aliases; an alias id memory meanwhile uses elsewhere stays there). */
static void fault_in(profile_store_t *s, uint64_t key, profile_result_t *res) {
  if (!s->on_fetch || !key || t_find(s, key) != NONE) return;
  profile_t back;
  uint64_t keys[PROFILE_EVICT_ALIASES];
  uint32_t used[PROFILE_EVICT_ALIASES];
  size_t n = 0;
  if (s->on_fetch(s->ud, key, &back, keys, used, &n, PROFILE_EVICT_ALIASES) != 1) return;
  if (!back.id || t_find(s, back.id) != NONE) return; /* memory's own is newer */
  uint32_t i = alloc_slot(s, res);
  back.flags = (uint8_t)((back.flags & F_PERSIST) | F_REF);
  s->p[i] = back;
  t_insert(s, back.id, i);
  pin(s, i);
  for (size_t k = 0; k < n; k++) {
    if (!keys[k] || t_find(s, keys[k]) != NONE) continue;
    uint32_t ai = alias_alloc(s);
    s->a[ai].key = keys[k];
    s->a[ai].last_used = used[k];
    alias_link(s, ai, i);
    t_insert(s, keys[k], ai | ALIAS_BIT);
  }
  res->flags |= PROFILE_R_RESTORED;
}

/* Before an event changes the store: bring back from on_fetch the people its ids (up to
 * three; 0: none) belong to that memory does not hold, and pin the slots they resolve
 * to, so that making room for one never evicts another. In-memory people are pinned
 * before any restore; pins matter only within PIN_MAX allocations of the bound. Returns 1
 * when it looked every id up and none was missing, with the index slot of k0 (else k1) in
 * *first (OUT), still valid as nothing moved; else 0. */
static int hold(profile_store_t *s, uint64_t k0, uint64_t k1, uint64_t k2,
                profile_result_t *res, uint32_t *first) {
  int near_bound = s->count + PIN_MAX >= s->max_profiles;
  if (!s->on_fetch && !near_bound) return 0;
  uint64_t k[3] = {k0, k1, k2};
  uint32_t pos[3] = {NONE, NONE, NONE};
  int missing = 0;
  for (int i = 0; i < 3; i++) {
    if (!k[i]) continue;
    pos[i] = t_find(s, k[i]);
    if (pos[i] == NONE) {
      missing = 1;
    } else if (near_bound) {
      uint32_t ref = s->t[pos[i]].ref;
      pin(s, ref & ALIAS_BIT ? s->a[ref & ~ALIAS_BIT].target : ref);
    }
  }
  if (!missing) {
    *first = k0 ? pos[0] : pos[1];
    return 1;
  }
  for (int i = 0; i < 3; i++)
    if (k[i] && pos[i] == NONE) fault_in(s, k[i], res);
  return 0;
}

/* The slot key resolves to (following an alias), or NONE; pos: key's index slot (t_find's). */
static uint32_t resolve_pos(const profile_store_t *s, uint32_t pos, uint32_t *alias_out) {
  if (pos == NONE) return NONE;
  uint32_t ref = s->t[pos].ref;
  if (alias_out) *alias_out = ref & ALIAS_BIT ? ref & ~ALIAS_BIT : NONE;
  return ref & ALIAS_BIT ? s->a[ref & ~ALIAS_BIT].target : ref;
}

/* The slot key resolves to (following an alias), or NONE. */
static uint32_t resolve(const profile_store_t *s, uint64_t key, uint32_t *alias_out) {
  return resolve_pos(s, t_find(s, key), alias_out);
}

/* Insert an event (code, seconds before last_seen) into p's ring, most recent first. */
static void ring_insert(profile_t *p, uint8_t code, uint16_t ago) {
  unsigned i = 0;
  while (i < p->recent_n && p->recent_ago[i] < ago) i++;
  if (i >= PROFILE_RECENT) return;
  if (i == 0) { /* the newest (events mostly come in order): every entry moves one place,
                   the oldest drops out, and the zeros past recent_n stay zeros. Through
                   a copy: moves of a few bytes that do not overlap are inlined, 37
                   instructions per event fewer than two calls of memmove */
    uint8_t code0[PROFILE_RECENT];
    uint16_t ago0[PROFILE_RECENT];
    memcpy(code0, p->recent_code, sizeof code0);
    memcpy(ago0, p->recent_ago, sizeof ago0);
    memcpy(p->recent_code + 1, code0, sizeof code0 - sizeof *code0);
    memcpy(p->recent_ago + 1, ago0, sizeof ago0 - sizeof *ago0);
  } else {
    unsigned last = p->recent_n < PROFILE_RECENT ? p->recent_n : PROFILE_RECENT - 1;
    for (unsigned j = last; j > i; j--) {
      p->recent_code[j] = p->recent_code[j - 1];
      p->recent_ago[j] = p->recent_ago[j - 1];
    }
  }
  p->recent_code[i] = code;
  p->recent_ago[i] = ago;
  if (p->recent_n < PROFILE_RECENT) p->recent_n++;
}

/* Move p's last_seen forward to ts, ageing the ring. */
static void advance_last_seen(profile_t *p, uint32_t ts) {
  if (ts <= p->last_seen) return;
  uint32_t d = ts - p->last_seen;
#if defined(__SSE2__) && PROFILE_RECENT == 4
  /* the four ages at once: a saturating add of d (itself capped) to the valid entries */
  __m128i ago = _mm_loadl_epi64((const __m128i *)(const void *)p->recent_ago);
  __m128i valid = _mm_cmpgt_epi16(_mm_set1_epi16((short)p->recent_n), _mm_setr_epi16(0, 1, 2, 3, 4, 5, 6, 7));
  __m128i add = _mm_and_si128(_mm_set1_epi16((short)(uint16_t)(d > AGO_MAX ? AGO_MAX : d)), valid);
  _mm_storel_epi64((__m128i *)(void *)p->recent_ago, _mm_adds_epu16(ago, add));
#else
  for (unsigned i = 0; i < p->recent_n; i++)
    p->recent_ago[i] = ago_add(p->recent_ago[i], d);
#endif
  p->last_seen = ts;
}

/* Fold profile src into dst (rules in profile.h): fields, rings, sessions, aliases; then
 * free src's slot. src's own index entry is left to the caller. */
static void merge(profile_store_t *s, uint32_t src, uint32_t dst, profile_result_t *res) {
  profile_t *a = &s->p[src], *b = &s->p[dst];
  /* Rings: age both to the later last_seen, then interleave a's entries into b's (after
   * b's entries of equal age), keeping the PROFILE_RECENT most recent. */
  profile_t ra = *a;
  uint32_t last = a->last_seen > b->last_seen ? a->last_seen : b->last_seen;
  advance_last_seen(&ra, last);
  advance_last_seen(b, last);
  for (unsigned i = 0; i < ra.recent_n; i++) {
    uint16_t ago = ra.recent_ago[i];
    unsigned k = 0;
    while (k < b->recent_n && b->recent_ago[k] <= ago) k++;
    if (k >= PROFILE_RECENT) break;
    unsigned top = b->recent_n < PROFILE_RECENT ? b->recent_n : PROFILE_RECENT - 1;
    for (unsigned j = top; j > k; j--) {
      b->recent_code[j] = b->recent_code[j - 1];
      b->recent_ago[j] = b->recent_ago[j - 1];
    }
    b->recent_code[k] = ra.recent_code[i];
    b->recent_ago[k] = ago;
    if (b->recent_n < PROFILE_RECENT) b->recent_n++;
  }

  res->merged_first_seen = a->first_seen;
  if (a->orders && b->orders) res->merged_customers++;
  if (a->first_seen < b->first_seen) b->first_seen = a->first_seen;
  b->events = sat_add32(b->events, a->events);
  b->page_views = sat_add32(b->page_views, a->page_views);
  b->sessions = sat_add32(b->sessions, a->sessions);
  b->orders = sat_add32(b->orders, a->orders);
  for (int k = 0; k < PROFILE_KINDS; k++)
    b->kind_count[k] = sat_add32(b->kind_count[k], a->kind_count[k]);
  b->revenue_cents = sat_add64(b->revenue_cents, a->revenue_cents);
  b->segments |= a->segments;
  b->flags |= a->flags & (PROFILE_F_IDENTIFIED | F_REF);

  int a_open = a->flags & PROFILE_F_OPEN, b_open = b->flags & PROFILE_F_OPEN;
  if (a_open && (!b_open || a->session_last > b->session_last)) {
    if (b_open) end_session(s, b, b->id, PROFILE_END_MERGE, res);
    copy_session(b, a);
  } else if (a_open) {
    end_session(s, a, b->id, PROFILE_END_MERGE, res);
  } else if (!(b->flags & PROFILE_F_SESSION) && (a->flags & PROFILE_F_SESSION)) {
    copy_session(b, a); /* keeps late-event detection for the closed session */
  }

  while (s->alias_head[src] != NONE) {
    uint32_t ai = s->alias_head[src];
    alias_unlink(s, ai);
    alias_link(s, ai, dst);
  }
  slot_release(s, src);
  res->flags |= PROFILE_R_MERGED;
}

/* Make key an alias of profile T (rules 2 and 3 in profile.h). explicit: an alias event,
 * which may merge an identified profile. */
static void link_id(profile_store_t *s, uint64_t key, uint32_t T, uint32_t ts, int explicit,
                    profile_result_t *res) {
  uint32_t pos = t_find(s, key);
  if (pos == NONE) {
    uint32_t ai = alias_alloc(s);
    s->a[ai].key = key;
    s->a[ai].last_used = ts;
    alias_link(s, ai, T);
    t_insert(s, key, ai | ALIAS_BIT);
    res->flags |= PROFILE_R_LINKED;
    return;
  }
  uint32_t ref = s->t[pos].ref;
  if (ref & ALIAS_BIT) {
    alias_t *a = &s->a[ref & ~ALIAS_BIT];
    if (ts > a->last_used) a->last_used = ts;
    if (a->target == T) return;
    alias_unlink(s, ref & ~ALIAS_BIT);
    alias_link(s, ref & ~ALIAS_BIT, T);
    res->flags |= PROFILE_R_LINKED | PROFILE_R_RELINKED;
    return;
  }
  if (ref == T) return;
  if (!explicit && (s->p[ref].flags & PROFILE_F_IDENTIFIED)) return;
  uint32_t ai = alias_alloc(s); /* may evict an alias and shift the index */
  pos = t_find(s, key);
  s->t[pos].ref = ai | ALIAS_BIT;
  s->a[ai].key = key;
  s->a[ai].last_used = ts;
  merge(s, ref, T, res);
  alias_link(s, ai, T);
  res->flags |= PROFILE_R_LINKED;
}

/* The tracked-event, page, revenue and session part of an event on profile p. */
static void update(profile_store_t *s, profile_t *p, const profile_event_t *ev, uint32_t ts,
                   profile_result_t *res) {
  p->flags |= F_REF;
  p->events = sat_add32(p->events, 1);
  if (ts < p->first_seen) p->first_seen = ts;
  advance_last_seen(p, ts);
  int is_page = ev->type == PROFILE_PAGE || ev->type == PROFILE_SCREEN;
  if (ev->kind != PROFILE_KIND_NONE)
    p->kind_count[ev->kind] = sat_add32(p->kind_count[ev->kind], 1);
  if (is_page) p->page_views = sat_add32(p->page_views, 1);
  if (ev->is_order) p->orders = sat_add32(p->orders, 1);
  if (isfinite(ev->revenue) && ev->revenue != 0) {
    double c = ev->revenue * 100.0;
    int64_t cents = c >= 9.2e18 ? INT64_MAX : c <= -9.2e18 ? INT64_MIN : llround(c);
    p->revenue_cents = sat_add64(p->revenue_cents, cents);
  }
  uint32_t ago = p->last_seen - ts;
  ring_insert(p, ev->kind != PROFILE_KIND_NONE ? ev->kind : (uint8_t)(0x80 | ev->type),
              (uint16_t)(ago > AGO_MAX ? AGO_MAX : ago));

  if (ev->type > PROFILE_SCREEN) return; /* identify, group, alias: no session activity */
  int had = p->flags & PROFILE_F_SESSION, open = p->flags & PROFILE_F_OPEN;
  if (had && (ts < p->session_start || (!open && ts < p->session_last))) {
    res->flags |= PROFILE_R_LATE;
    return;
  }
  uint32_t campaign = ev->campaign_hash ? fold32(ev->campaign_hash) : 0;
  size_t sid_len = id_len(ev->session_id, ev->session_id_len);
  uint32_t sid = sid_len ? fold32(key_of(s, ev->session_id, sid_len)) : 0;
  if (open && ts >= p->session_last) {
    int reason = 0;
    if (ts - p->session_last > s->timeout_s)
      reason = PROFILE_END_TIMEOUT;
    else if (campaign && campaign != p->session_campaign)
      reason = PROFILE_END_CAMPAIGN;
    else if (sid && p->session_key && sid != p->session_key)
      reason = PROFILE_END_SESSION_ID;
    if (reason) {
      end_session(s, p, p->id, reason, res);
      open = 0;
    } else {
      p->session_last = ts;
      if (!p->session_key) p->session_key = sid;
    }
  }
  if (!open) {
    p->session_start = p->session_last = ts;
    p->session_campaign = campaign;
    p->session_key = sid;
    p->session_pages = 0;
    p->flags =
        (uint8_t)((p->flags & ~PROFILE_F_CONVERTED) | PROFILE_F_SESSION | PROFILE_F_OPEN);
    p->sessions = sat_add32(p->sessions, 1);
    res->flags |= PROFILE_R_SESSION_START;
  }
  if (is_page && p->session_pages < UINT16_MAX) p->session_pages++;
  int converts = ev->is_order ||
                 (ev->kind != PROFILE_KIND_NONE && (s->conversion_kinds >> ev->kind & 1));
  if (converts && !(p->flags & PROFILE_F_CONVERTED)) {
    p->flags |= PROFILE_F_CONVERTED;
    res->flags |= PROFILE_R_CONVERSION;
  }
}

/* ---- Public API ---- */

profile_store_t *profile_store_new(const profile_opts_t *opts) {
  profile_opts_t o = {0};
  if (opts) o = *opts;
  if (!o.max_profiles) o.max_profiles = 1000000;
  if (!o.max_aliases) o.max_aliases = o.max_profiles;
  if (!o.session_timeout_us) o.session_timeout_us = 30 * 60 * INT64_C(1000000);
  if (o.max_profiles > PROFILE_MAX_BOUND || o.max_aliases > PROFILE_MAX_BOUND ||
      o.session_timeout_us < 1000000 || o.session_timeout_us / 1000000 > UINT32_MAX)
    return NULL;
  profile_store_t *s = xcalloc(1, sizeof *s);
  s->max_profiles = (uint32_t)o.max_profiles;
  s->max_aliases = (uint32_t)o.max_aliases;
  s->timeout_s = (uint32_t)(o.session_timeout_us / 1000000);
  s->conversion_kinds = o.conversion_kinds;
  s->seed = o.seed;
  while (!s->seed) rand_bytes(&s->seed, sizeof s->seed);
  for (int k = 0; k < PROFILE_KINDS; k++) {
    if (!o.kinds[k] || !*o.kinds[k]) continue;
    s->kinds[k] = xstrdup(o.kinds[k]);
    s->kind_len[k] = strlen(o.kinds[k]);
    uint8_t *slot = &s->kind_slots[kind_slot(s->kinds[k], s->kind_len[k])];
    *slot = *slot ? KIND_SLOTS_MANY : (uint8_t)(k + 1);
  }
  s->on_evict = o.on_evict;
  s->on_fetch = o.on_fetch;
  s->on_session_end = o.on_session_end;
  s->ud = o.ud;
  s->p_free = s->a_free = NONE;
  t_alloc(s, 6);
  return s;
}

void profile_store_free(profile_store_t *s) {
  if (!s) return;
  for (int k = 0; k < PROFILE_KINDS; k++) free(s->kinds[k]);
  free(s->p);
  free(s->alias_head);
  free(s->a);
  free(s->t);
  free(s);
}

int profile_apply(profile_store_t *s, const profile_event_t *ev, profile_result_t *out) {
  if (!s || !ev || ev->type < 0 || ev->type >= PROFILE_TYPES) return -EINVAL;
  if (ev->kind != PROFILE_KIND_NONE && ev->kind >= PROFILE_KINDS) return -EINVAL;
  if (ev->t_us < 1000000 || ev->t_us / 1000000 > UINT32_MAX) return -EINVAL;
  size_t ul = id_len(ev->user_id, ev->user_id_len);
  size_t al = id_len(ev->anonymous_id, ev->anonymous_id_len);
  size_t pl = ev->type == PROFILE_ALIAS ? id_len(ev->previous_id, ev->previous_id_len) : 0;
  if ((!ul && !al) || ul > PROFILE_ID_MAX || al > PROFILE_ID_MAX || pl > PROFILE_ID_MAX)
    return -EINVAL;
  if (ev->type == PROFILE_ALIAS && !pl) return -EINVAL;
  if (ev->session_id && id_len(ev->session_id, ev->session_id_len) > PROFILE_ID_MAX)
    return -EINVAL;

  profile_result_t res = {0};
  uint32_t ts = (uint32_t)(ev->t_us / 1000000);
  uint64_t hu = ul ? key_of(s, ev->user_id, ul) : 0;
  uint64_t ha = al ? key_of(s, ev->anonymous_id, al) : 0;
  uint64_t hp = pl ? key_of(s, ev->previous_id, pl) : 0;
  if (ha == hu) ha = 0; /* the same id twice */
  s->npin = 0;
  /* (the slot hold found for the id resolved first, when the index has not changed since:
   * no second lookup) */
  uint32_t first;
  int found = hold(s, hu, ha, hp, &res, &first);

  uint32_t alias_used = NONE;
  uint32_t T = resolve_pos(s, found ? first : t_find(s, hu ? hu : ha), &alias_used);
  if (alias_used != NONE && ts > s->a[alias_used].last_used)
    s->a[alias_used].last_used = ts;
  int linked = 0;
  if (T == NONE && hu && ha) {
    /* A new user whose anonymous profile exists: rename it rather than create + merge. */
    uint32_t pos = t_find(s, ha);
    uint32_t ref = pos == NONE ? NONE : s->t[pos].ref;
    if (ref != NONE && !(ref & ALIAS_BIT) && !(s->p[ref].flags & PROFILE_F_IDENTIFIED)) {
      uint32_t ai = alias_alloc(s); /* may shift the index */
      s->t[t_find(s, ha)].ref = ai | ALIAS_BIT;
      s->a[ai].key = ha;
      s->a[ai].last_used = ts;
      alias_link(s, ai, ref);
      s->p[ref].id = hu;
      t_insert(s, hu, ref);
      T = ref;
      linked = 1;
      res.flags |= PROFILE_R_LINKED;
    }
  }
  if (T == NONE) T = new_profile(s, hu ? hu : ha, ts, &res);
  if (hu && !(s->p[T].flags & PROFILE_F_IDENTIFIED)) {
    s->p[T].flags |= PROFILE_F_IDENTIFIED;
    res.flags |= PROFILE_R_NEW_USER;
  }
  if (hu && ha && !linked) link_id(s, ha, T, ts, 0, &res);
  if (hp) link_id(s, hp, T, ts, 1, &res);
  if (!(res.flags & PROFILE_R_NEW_PROFILE) || (res.flags & PROFILE_R_MERGED))
    res.prev_last_seen = s->p[T].last_seen;
  res.prev_orders = s->p[T].orders;
  update(s, &s->p[T], ev, ts, &res);
  s->npin = 0;
  res.profile = &s->p[T];
  if (out) *out = res;
  return 0;
}

size_t profile_sweep(profile_store_t *s, int64_t now_us, size_t budget) {
  if (!s || !s->p_used || now_us < 0) return 0;
  int64_t now_s = now_us / 1000000;
  size_t ended = 0;
  if (budget > s->p_used) budget = s->p_used;
  for (size_t k = 0; k < budget; k++) {
    uint32_t i = s->sweep_hand;
    s->sweep_hand = i + 1 < s->p_used ? i + 1 : 0;
    profile_t *p = &s->p[i];
    if (p->id && (p->flags & PROFILE_F_OPEN) &&
        now_s - (int64_t)p->session_last > s->timeout_s) {
      end_session(s, p, p->id, PROFILE_END_TIMEOUT, NULL);
      ended++;
    }
  }
  return ended;
}

const profile_t *profile_get(const profile_store_t *s, const char *id, size_t len) {
  len = id_len(id, len);
  if (!s || !len) return NULL;
  uint32_t i = resolve(s, key_of(s, id, len), NULL);
  return i == NONE ? NULL : &s->p[i];
}

uint64_t profile_store_seed(const profile_store_t *s) { return s->seed; }

uint64_t profile_hash(const profile_store_t *s, const char *id, size_t len) {
  return key_of(s, id, id_len(id, len));
}

uint64_t profile_prefetch_index(const profile_store_t *s, const char *id, size_t len) {
  len = id_len(id, len);
  if (!s || !len || !s->t) return 0;
  uint64_t key = key_of(s, id, len);
  __builtin_prefetch(&s->t[t_home(s, (uint32_t)(key >> 32))]);
  return key;
}

void profile_prefetch_profile(const profile_store_t *s, uint64_t key) {
  if (!s || !key || !s->t) return;
  /* t_find's probe by tag only: the first slot with key's tag most likely holds key */
  uint32_t mask = (1u << s->t_bits) - 1, tag = (uint32_t)(key >> 32);
  for (uint32_t i = t_home(s, tag), n = 0; n <= mask; i = (i + 1) & mask, n++) {
    entry_t e = s->t[i];
    if (e.ref == NONE) return;
    if (e.tag != tag) continue;
    if (e.ref & ALIAS_BIT) {
      __builtin_prefetch(&s->a[e.ref & ~ALIAS_BIT]);
    } else { /* a profile spans two or three cache lines */
      __builtin_prefetch(&s->p[e.ref]);
      __builtin_prefetch((const char *)&s->p[e.ref] + 64);
      __builtin_prefetch((const char *)&s->p[e.ref] + sizeof s->p[0] - 1);
    }
    return;
  }
}

uint8_t profile_kind(const profile_store_t *s, const char *name, size_t len) {
  len = id_len(name, len);
  if (!len) return PROFILE_KIND_NONE; /* (no tracked name is empty) */
  unsigned e = s->kind_slots[kind_slot(name, len)];
  if (e != KIND_SLOTS_MANY)
    return e && s->kind_len[e - 1] == len && memcmp(s->kinds[e - 1], name, len) == 0
               ? (uint8_t)(e - 1)
               : PROFILE_KIND_NONE;
  for (int k = 0; k < PROFILE_KINDS; k++)
    if (s->kinds[k] && s->kind_len[k] == len && s->kinds[k][0] == name[0] &&
        memcmp(s->kinds[k], name, len) == 0)
      return (uint8_t)k;
  return PROFILE_KIND_NONE;
}

int profile_segments(profile_store_t *s, const char *id, size_t len, uint64_t set,
                     uint64_t clear) {
  len = id_len(id, len);
  if (!s || !len) return -ENOENT;
  profile_result_t res = {0};
  fault_in(s, key_of(s, id, len), &res);
  uint32_t i = resolve(s, key_of(s, id, len), NULL);
  if (i == NONE) return -ENOENT;
  s->p[i].segments = (s->p[i].segments | set) & ~clear;
  return 0;
}

int profile_forget(profile_store_t *s, const char *id, size_t len) {
  len = id_len(id, len);
  if (!s || !len) return -ENOENT;
  profile_result_t res = {0};
  fault_in(s, key_of(s, id, len), &res);
  uint32_t i = resolve(s, key_of(s, id, len), NULL);
  if (i == NONE) return -ENOENT;
  profile_t *p = &s->p[i];
  if (p->flags & PROFILE_F_OPEN) end_session(s, p, p->id, PROFILE_END_FORGET, NULL);
  drop_profile(s, i);
  return 0;
}

size_t profile_count(const profile_store_t *s) { return s ? s->count : 0; }

size_t profile_slots(const profile_store_t *s) { return s ? s->p_used : 0; }

size_t profile_alias_count(const profile_store_t *s) { return s ? s->a_count : 0; }

size_t profile_store_bytes(const profile_store_t *s) {
  if (!s) return 0;
  return sizeof *s + (size_t)s->p_cap * (sizeof(profile_t) + sizeof(uint32_t)) +
         (size_t)s->a_cap * sizeof(alias_t) + (sizeof(entry_t) << s->t_bits);
}

/* ---- Snapshots ---- */

static void put16(unsigned char *b, uint16_t v) {
  b[0] = (unsigned char)v;
  b[1] = (unsigned char)(v >> 8);
}
static void put32(unsigned char *b, uint32_t v) {
  put16(b, (uint16_t)v);
  put16(b + 2, (uint16_t)(v >> 16));
}
static void put64(unsigned char *b, uint64_t v) {
  put32(b, (uint32_t)v);
  put32(b + 4, (uint32_t)(v >> 32));
}
static uint16_t get16(const unsigned char *b) { return (uint16_t)(b[0] | b[1] << 8); }
static uint32_t get32(const unsigned char *b) {
  return get16(b) | (uint32_t)get16(b + 2) << 16;
}
static uint64_t get64(const unsigned char *b) {
  return get32(b) | (uint64_t)get32(b + 4) << 32;
}

static void encode_profile(const profile_t *p, unsigned char *b) {
  put64(b, p->id);
  put64(b + 8, (uint64_t)p->revenue_cents);
  put64(b + 16, p->segments);
  const uint32_t u[] = {p->first_seen, p->last_seen, p->events,
                        p->page_views, p->sessions,  p->orders};
  for (int k = 0; k < 6; k++) put32(b + 24 + 4 * k, u[k]);
  for (int k = 0; k < PROFILE_KINDS; k++) put32(b + 48 + 4 * k, p->kind_count[k]);
  put32(b + 80, p->session_start);
  put32(b + 84, p->session_last);
  put32(b + 88, p->session_campaign);
  put32(b + 92, p->session_key);
  put16(b + 96, p->session_pages);
  b[98] = p->flags & F_PERSIST;
  b[99] = p->recent_n;
  memcpy(b + 100, p->recent_code, PROFILE_RECENT);
  for (int k = 0; k < PROFILE_RECENT; k++) put16(b + 104 + 2 * k, p->recent_ago[k]);
}

/* Decode and check one profile record; 0 or -EBADMSG. */
static int decode_profile(const unsigned char *b, profile_t *p) {
  memset(p, 0, sizeof *p);
  p->id = get64(b);
  p->revenue_cents = (int64_t)get64(b + 8);
  p->segments = get64(b + 16);
  uint32_t *u[] = {&p->first_seen, &p->last_seen, &p->events,
                   &p->page_views, &p->sessions,  &p->orders};
  for (int k = 0; k < 6; k++) *u[k] = get32(b + 24 + 4 * k);
  for (int k = 0; k < PROFILE_KINDS; k++) p->kind_count[k] = get32(b + 48 + 4 * k);
  p->session_start = get32(b + 80);
  p->session_last = get32(b + 84);
  p->session_campaign = get32(b + 88);
  p->session_key = get32(b + 92);
  p->session_pages = get16(b + 96);
  p->flags = b[98];
  p->recent_n = b[99];
  memcpy(p->recent_code, b + 100, PROFILE_RECENT);
  for (int k = 0; k < PROFILE_RECENT; k++) p->recent_ago[k] = get16(b + 104 + 2 * k);

  uint8_t f = p->flags;
  if (!p->id || (f & ~F_PERSIST) || p->first_seen < 1 || p->first_seen > p->last_seen)
    return -EBADMSG;
  if (((f & PROFILE_F_OPEN) && !(f & PROFILE_F_SESSION)) ||
      ((f & PROFILE_F_CONVERTED) && !(f & PROFILE_F_OPEN)))
    return -EBADMSG;
  if (f & PROFILE_F_SESSION) {
    if (p->session_start < p->first_seen || p->session_start > p->session_last ||
        p->session_last > p->last_seen)
      return -EBADMSG;
  } else if (p->session_start || p->session_last || p->session_campaign || p->session_key ||
             p->session_pages) {
    return -EBADMSG;
  }
  if (p->recent_n > PROFILE_RECENT) return -EBADMSG;
  for (unsigned k = 0; k < PROFILE_RECENT; k++) {
    uint8_t c = p->recent_code[k];
    if (k >= p->recent_n) {
      if (c || p->recent_ago[k]) return -EBADMSG;
      continue;
    }
    if (c >= PROFILE_KINDS && (c < 0x80 || c >= 0x80 + PROFILE_TYPES)) return -EBADMSG;
    if (k && p->recent_ago[k] < p->recent_ago[k - 1]) return -EBADMSG;
  }
  return 0;
}

size_t profile_store_serialize(const profile_store_t *s, buf_t *out) {
  size_t start = out->len;
  size_t total =
      SNAP_HEAD + (size_t)s->count * SNAP_PROFILE + (size_t)s->a_count * SNAP_ALIAS + 4;
  buf_reserve(out, total);
  unsigned char *b = (unsigned char *)out->data + start;
  memcpy(b, "SLPF", 4);
  put32(b + 4, PROFILE_SNAPSHOT_VERSION);
  put64(b + 8, s->seed);
  put32(b + 16, s->count);
  put32(b + 20, s->a_count);
  b += SNAP_HEAD;
  uint32_t *ordinal = xmalloc(((size_t)s->p_used + 1) * sizeof(uint32_t));
  uint32_t n = 0;
  for (uint32_t i = 0; i < s->p_used; i++) {
    if (!s->p[i].id) continue;
    ordinal[i] = n++;
    encode_profile(&s->p[i], b);
    b += SNAP_PROFILE;
  }
  for (uint32_t i = 0; i < s->a_used; i++) {
    if (s->a[i].target == NONE) continue;
    put64(b, s->a[i].key);
    put32(b + 8, ordinal[s->a[i].target]);
    put32(b + 12, s->a[i].last_used);
    b += SNAP_ALIAS;
  }
  free(ordinal);
  put32(b, crc32c(0, out->data + start, total - 4));
  out->len = start + total;
  out->data[out->len] = 0;
  return total;
}

/* Forget everything (keeping the allocations). */
static void store_clear(profile_store_t *s) {
  s->p_used = s->count = s->hand = s->sweep_hand = 0;
  s->a_used = s->a_count = s->a_hand = 0;
  s->p_free = s->a_free = NONE;
  memset(s->t, 0xff, sizeof(entry_t) << s->t_bits);
  s->t_count = 0;
}

int profile_store_deserialize(profile_store_t *s, const void *data, size_t n) {
  if (!s || (!data && n)) return -EINVAL;
  if (s->count || s->a_count) return -EBUSY;
  const unsigned char *b = data;
  if (n < SNAP_HEAD + 4 || memcmp(b, "SLPF", 4) != 0 ||
      get32(b + 4) != PROFILE_SNAPSHOT_VERSION)
    return -EBADMSG;
  uint64_t np = get32(b + 16), na = get32(b + 20);
  if ((uint64_t)n != SNAP_HEAD + np * SNAP_PROFILE + na * SNAP_ALIAS + 4) return -EBADMSG;
  if (get32(b + n - 4) != crc32c(0, b, n - 4)) return -EBADMSG;
  if (np > s->max_profiles || na > s->max_aliases) return -ENOSPC;
  if (!get64(b + 8)) return -EBADMSG;

  uint64_t old_seed = s->seed;
  s->seed = get64(b + 8);
  store_clear(s);
  const unsigned char *r = b + SNAP_HEAD;
  profile_result_t ignored = {0};
  for (uint64_t k = 0; k < np; k++, r += SNAP_PROFILE) {
    profile_t p;
    if (decode_profile(r, &p) < 0 || t_find(s, p.id) != NONE) goto fail;
    uint32_t i = new_profile(s, p.id, p.first_seen, &ignored);
    s->p[i] = p;
  }
  for (uint64_t k = 0; k < na; k++, r += SNAP_ALIAS) {
    uint64_t key = get64(r);
    uint32_t target = get32(r + 8);
    if (!key || target >= np || t_find(s, key) != NONE) goto fail;
    uint32_t ai = alias_alloc(s);
    s->a[ai].key = key;
    s->a[ai].last_used = get32(r + 12);
    alias_link(s, ai, target);
    t_insert(s, key, ai | ALIAS_BIT);
  }
  return 0;
fail:
  store_clear(s);
  s->seed = old_seed;
  return -EBADMSG;
}

int profile_type(const char *name, size_t len) {
  len = id_len(name, len);
  /* every event has a type: the first letters differ, so one comparison decides (of
   * constant size: inline, not a call) */
#define TYPE_IS(lit, k) (len == sizeof lit - 1 && memcmp(name, lit, sizeof lit - 1) == 0 ? (k) : -EINVAL)
  switch (len ? name[0] : 0) {
    case 't': return TYPE_IS("track", PROFILE_TRACK);
    case 'p': return TYPE_IS("page", PROFILE_PAGE);
    case 's': return TYPE_IS("screen", PROFILE_SCREEN);
    case 'i': return TYPE_IS("identify", PROFILE_IDENTIFY);
    case 'g': return TYPE_IS("group", PROFILE_GROUP);
    case 'a': return TYPE_IS("alias", PROFILE_ALIAS);
    default: return -EINVAL;
  }
#undef TYPE_IS
}
