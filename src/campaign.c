/* campaign: UTM, click ids and referrer class (see campaign.h). */
#include "campaign.h"

#include <stdint.h>
#include <string.h>
#include <strings.h>

#include <stdio.h>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "util/buf.h"
#include "util/plain.h"
#include "util/str.h"

/* Host patterns: "google." matches any label sequence containing "google." at a label
 * start (www.google.com, google.co.uk); "t.co" matches t.co and *.t.co exactly. */
static const char *const search_hosts[] = {
    "google.",  "bing.com",       "duckduckgo.com", "yahoo.",     "yandex.",  "baidu.com",
    "ecosia.org", "search.brave.com", "startpage.com", "qwant.com", "naver.com", "seznam.cz",
    "ask.com",  "aol.com",        "so.com",         "sogou.com",  "kagi.com", NULL};
static const char *const social_hosts[] = {
    "facebook.com", "fb.com",     "m.facebook.com", "instagram.com", "t.co",        "twitter.com",
    "x.com",        "linkedin.com", "lnkd.in",      "pinterest.",    "reddit.com",  "tiktok.com",
    "youtube.com",  "youtu.be",   "snapchat.com",   "whatsapp.",     "telegram.",   "t.me",
    "vk.com",       "threads.net", "bsky.app",      "mastodon.",     "quora.com",   "tumblr.com",
    NULL};
static const char *const email_hosts[] = {
    "mail.google.com", "outlook.live.com", "outlook.office.com", "outlook.office365.com",
    "mail.yahoo.com",  "mail.aol.com",     "mail.proton.me",     "mail.zoho.com",
    "webmail.",        "mail.yandex.",     "gmx.",               "web.de", NULL};

static int host_in(const char *host, const char *const *list) {
  size_t hl = strlen(host);
  for (; *list; list++) {
    const char *p = *list;
    size_t pl = strlen(p);
    if (p[pl - 1] == '.') {
      /* label-prefix pattern: at the start or after a dot */
      for (const char *s = host; s && *s; s = strchr(s, '.') ? strchr(s, '.') + 1 : NULL)
        if (strncmp(s, p, pl) == 0) return 1;
    } else if (hl == pl ? strcmp(host, p) == 0
                        : hl > pl && host[hl - pl - 1] == '.' && strcmp(host + hl - pl, p) == 0) {
      return 1;
    }
  }
  return 0;
}

/* Strip one leading "www." so www.shop.example and shop.example count as one site. */
static const char *bare(const char *h) {
  return h[0] == 'w' && h[1] == 'w' && h[2] == 'w' && h[3] == '.' ? h + 4 : h;
}

const char *campaign_referrer_class(const char *ref_host, const char *page_host) {
  if (!ref_host || !*ref_host) return "direct";
  if (page_host && *page_host && strcmp(bare(ref_host), bare(page_host)) == 0) return "internal";
  if (host_in(ref_host, email_hosts)) return "email";
  if (host_in(ref_host, search_hosts)) return "search";
  if (host_in(ref_host, social_hosts)) return "social";
  return "other";
}

/* out[0..8) = p[0..8) with ASCII capitals lowercased (tolower in the C locale) in one
 * word: a byte gets 0x20 added when it is ASCII and its low seven bits lie in 'A'..'Z'
 * (both tests by the carry into the byte's top bit). */
static inline void lower8(char *out, const char *p) {
  const uint64_t low7 = 0x7f7f7f7f7f7f7f7full, top = 0x8080808080808080ull;
  uint64_t w, h;
  memcpy(&w, p, 8);
  h = w & low7;
  uint64_t from_a = h + 0x3f3f3f3f3f3f3f3full; /* top bit: >= 'A' */
  uint64_t past_z = h + 0x2525252525252525ull; /* top bit: > 'Z' */
  w |= (from_a & ~past_z & ~w & top) >> 2;
  memcpy(out, &w, 8);
}

/* lower8 over out[0..n) = p[0..n). */
static void lower_copy(char *out, const char *p, size_t n) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8) lower8(out + i, p + i);
  /* The last few bytes of a longer host as one more word that overlaps the last (the
   * bytes it writes again get the same values): a byte loop cost 40 instructions. */
  if (i < n && n >= 8) {
    lower8(out + n - 8, p + n - 8);
    return;
  }
  for (; i < n; i++) {
    unsigned char c = (unsigned char)p[i];
    out[i] = (char)((unsigned)(c - 'A') < 26u ? c + 32 : c);
  }
}

/* The end of a URL's authority: the first '/', '?' or '#' in [p, end), or end. Sixteen
 * bytes a step with SSE2, where strcspn needed a NUL-terminated copy of the URL. */
#if defined(__SSE2__)
static inline unsigned bytes_in(__m128i w, char a, char b, char c) {
  __m128i m = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(w, _mm_set1_epi8(a)),
                                        _mm_cmpeq_epi8(w, _mm_set1_epi8(b))),
                           _mm_cmpeq_epi8(w, _mm_set1_epi8(c)));
  return (unsigned)_mm_movemask_epi8(m);
}
#endif

static const char *authority_end(const char *p, const char *end) {
#if defined(__SSE2__)
  for (; end - p >= 16; p += 16) {
    unsigned bits = bytes_in(_mm_loadu_si128((const __m128i *)(const void *)p), '/', '?', '#');
    if (bits) return p + __builtin_ctz(bits);
  }
#endif
  while (p < end && *p != '/' && *p != '?' && *p != '#') p++;
  return p;
}

/* The length of the authority at p when it is a bare host (no userinfo, port or IPv6
 * literal) ended within sixteen bytes, as most are; else 0, and the general search
 * decides. One load and two compares instead of three memchr calls (about 55
 * instructions a host). */
static size_t bare_host(const char *p, const char *end) {
#if defined(__SSE2__)
  if (end - p < 16) return 0;
  __m128i w = _mm_loadu_si128((const __m128i *)(const void *)p);
  unsigned stop = bytes_in(w, '/', '?', '#');
  if (!stop) return 0;
  unsigned before = (1u << __builtin_ctz(stop)) - 1;
  return bytes_in(w, '@', ':', '[') & before ? 0 : (size_t)__builtin_ctz(stop);
#else
  (void)p, (void)end;
  return 0;
#endif
}

size_t campaign_url_host_n(const char *url, size_t len, char *out, size_t outlen) {
  const char *end = url + len, *p;
  /* The first "://": the first ':' followed by "//", usually the first ':' (strstr
   * costs three times as much on a URL), which most URLs show at once. */
  if (len >= 8 && memcmp(url, "https://", 8) == 0) {
    p = url + 5;
  } else if (len >= 7 && memcmp(url, "http://", 7) == 0) {
    p = url + 4;
  } else {
    p = memchr(url, ':', len);
    while (p && (end - p < 3 || p[1] != '/' || p[2] != '/'))
      p = memchr(p + 1, ':', (size_t)(end - p - 1));
    if (!p) return 0;
  }
  p += 3;
  size_t h = bare_host(p, end);
  if (!h) {
    size_t n = (size_t)(authority_end(p, end) - p);
    const char *at = memchr(p, '@', n);
    if (at) {
      n -= (size_t)(at + 1 - p);
      p = at + 1;
    }
    if (n && p[0] == '[') {
      const char *close = memchr(p, ']', n);
      h = close ? (size_t)(close - p + 1) : n;
    } else {
      const char *colon = memchr(p, ':', n);
      h = colon ? (size_t)(colon - p) : n;
    }
  }
  if (!h || h >= outlen) return 0;
  lower_copy(out, p, h);
  out[h] = 0;
  return h;
}

size_t campaign_url_host(const char *url, char *out, size_t outlen) {
  return campaign_url_host_n(url, strlen(url), out, outlen);
}

static evdoc_path_t P_CAMPAIGN = EVDOC_PATH("context.campaign");

static const char *const click_ids[] = {"gclid", "fbclid", "msclkid", "ttclid", "twclid",
                                        "li_fat_id", "dclid", "wbraid", "gbraid", "yclid", NULL};

/* Set context.campaign from the query string of the URL url[0..len) (only called when
 * the event has no context.campaign), in one edit, its JSON built in obj (reset here).
 * Returns whether utm_medium says e-mail. */
static int parse_query(evdoc_t *ev, const char *url, size_t len, buf_t *obj) {
  const char *q = memchr(url, '?', len);
  if (!q) return 0;
  q++;
  const char *hash = memchr(q, '#', (size_t)(url + len - q));
  size_t qlen = (size_t)((hash ? hash : url + len) - q), pos = 0, kl, vl;
  const char *k, *v;
  static const char *const fields[] = {"source", "medium", "name", "term", "content"};
  /* Only the first byte of each is cleared: these run once per event. */
  char vals[5][256], click_type[32], click[256];
  char key[32], val[256];
  for (int i = 0; i < 5; i++) vals[i][0] = 0;
  click_type[0] = click[0] = 0;
  while (str_query_next(q, qlen, &pos, &k, &kl, &v, &vl)) {
    if (kl >= sizeof key || vl >= sizeof val) continue;
    if (str_url_decode(k, kl, key, 1) < 0 || str_url_decode(v, vl, val, 1) < 0 || !val[0]) continue;
    if (!strncmp(key, "utm_", 4)) {
      const char *s = key + 4;
      int f = !strcmp(s, "source")     ? 0
              : !strcmp(s, "medium")   ? 1
              : !strcmp(s, "campaign") ? 2
              : !strcmp(s, "term")     ? 3
              : !strcmp(s, "content")  ? 4
                                       : -1;
      if (f >= 0 && !vals[f][0]) memcpy(vals[f], val, strlen(val) + 1); /* both < 256 */
      continue;
    }
    for (const char *const *c = click_ids; *c && !click[0]; c++)
      if (!strcmp(key, *c)) {
        memcpy(click_type, key, strlen(key) + 1); /* both < 32 */
        memcpy(click, val, strlen(val) + 1);
      }
  }
  int any = click[0];
  for (int i = 0; i < 5; i++) any |= vals[i][0] != 0;
  if (!any) return 0;
  buf_reset(obj);
  buf_putc(obj, '{');
  for (int i = 0; i < 5; i++) {
    if (!vals[i][0]) continue;
    if (obj->len > 1) buf_putc(obj, ',');
    buf_putc(obj, '"');
    buf_puts(obj, fields[i]);
    buf_append(obj, "\":\"", 3);
    buf_json_escape(obj, vals[i], strlen(vals[i]));
    buf_putc(obj, '"');
  }
  if (click[0]) {
    if (obj->len > 1) buf_putc(obj, ',');
    buf_puts(obj, "\"clickId\":{\"type\":\"");
    buf_puts(obj, click_type);
    buf_puts(obj, "\",\"value\":\"");
    buf_json_escape(obj, click, strlen(click));
    buf_puts(obj, "\"}");
  }
  buf_putc(obj, '}');
  evdoc_set_raw_p(ev, &P_CAMPAIGN, obj->data, obj->len);
  const char *m = vals[1];
  return !strcasecmp(m, "email") || !strcasecmp(m, "e-mail") || !strcasecmp(m, "newsletter");
}

static evdoc_path_t P_PAGE_URL = EVDOC_PATH("context.page.url"),
                    P_PROPS_URL = EVDOC_PATH("properties.url"),
                    P_PAGE_REFERRER = EVDOC_PATH("context.page.referrer"),
                    P_PROPS_REFERRER = EVDOC_PATH("properties.referrer"),
                    P_CAMPAIGN_MEDIUM = EVDOC_PATH("context.campaign.medium"),
                    P_REFERRER = EVDOC_PATH("context.referrer"),
                    P_REFERRER_HOST = EVDOC_PATH("context.referrer.host"),
                    P_REFERRER_CLASS = EVDOC_PATH("context.referrer.class");

/* The string at p: the event's own bytes when they need no decoding (most URLs), else
 * decoded into buf (cap bytes). Its length in *n; NULL when absent, not a string or not
 * shorter than cap (as evdoc_str_p). The bytes may be an edit's, which move with the
 * next edit: they are read before this step makes one. */
static const char *str_span(evdoc_t *ev, evdoc_path_t *p, char *buf, size_t cap, size_t *n) {
  jscan_val_t v = evdoc_get_p(ev, p);
  if (v.type != JSCAN_STRING) return NULL;
  if (!v.escaped) {
    *n = v.n;
    return v.n < cap ? v.p : NULL;
  }
  if (jscan_string(&v, buf, cap) < 0) return NULL;
  *n = strlen(buf); /* up to a decoded NUL, as the C string is read */
  return buf;
}

int campaign_enrich_step(evdoc_t *ev, const enrich_ctx_t *ctx, void *state, char *msg,
                         size_t msglen) {
  char url[2048], ref[2048], medium[64];
  size_t un = 0, rn = 0;
  const char *u = str_span(ev, &P_PAGE_URL, url, sizeof url, &un);
  if (!u) u = str_span(ev, &P_PROPS_URL, url, sizeof url, &un);
  const char *r = str_span(ev, &P_PAGE_REFERRER, ref, sizeof ref, &rn);
  if (!r) r = str_span(ev, &P_PROPS_REFERRER, ref, sizeof ref, &rn);
  char page_host[256], ref_host[256];
  page_host[0] = ref_host[0] = 0;
  if (u) campaign_url_host_n(u, un, page_host, sizeof page_host);
  size_t hl = r ? campaign_url_host_n(r, rn, ref_host, sizeof ref_host) : 0;

  int email = 0;
  if (evdoc_get_p(ev, &P_CAMPAIGN).type == JSCAN_NONE) {
    if (u) {
      buf_t own = BUF_INIT;
      email = parse_query(ev, u, un, state ? (buf_t *)state : &own);
      if (!state) buf_free(&own);
    }
  } else {
    const char *m = evdoc_str_p(ev, &P_CAMPAIGN_MEDIUM, medium, sizeof medium);
    email = m && (!strcasecmp(m, "email") || !strcasecmp(m, "e-mail") || !strcasecmp(m, "newsletter"));
  }

  /* Only page views and events that carry a page say where the visitor came from. */
  if (!u && !r) return 0;
  const char *cls = email ? "email" : campaign_referrer_class(ref_host, page_host);
  jscan_type_t rt = evdoc_get_p(ev, &P_REFERRER).type;
  if (rt != JSCAN_NONE && rt != JSCAN_OBJECT) return 0;
  if (rt == JSCAN_NONE) {
    /* {"host","class"} as evdoc_set_strings would render it (host left out when empty);
     * class is one of this file's constants, which need no escaping. */
    buf_t own = BUF_INIT, *obj = state ? (buf_t *)state : &own;
    buf_reset(obj);
    if (ref_host[0]) {
      buf_append(obj, "{\"host\":\"", 9);
      if (plain_end(ref_host, ref_host + hl) == ref_host + hl) /* most hosts */
        buf_append(obj, ref_host, hl);
      else
        buf_json_escape(obj, ref_host, hl);
      buf_append(obj, "\",\"class\":\"", 11);
    } else {
      buf_append(obj, "{\"class\":\"", 10);
    }
    buf_append(obj, cls, strlen(cls));
    buf_append(obj, "\"}", 2);
    evdoc_set_raw_p(ev, &P_REFERRER, obj->data, obj->len);
    if (!state) buf_free(&own);
    return 0;
  }
  if (ref_host[0] && evdoc_get_p(ev, &P_REFERRER_HOST).type == JSCAN_NONE)
    evdoc_set_str_p(ev, &P_REFERRER_HOST, ref_host);
  if (evdoc_get_p(ev, &P_REFERRER_CLASS).type == JSCAN_NONE)
    evdoc_set_str_p(ev, &P_REFERRER_CLASS, cls);
  return 0;
}
