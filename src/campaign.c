/* campaign: UTM, click ids and referrer class (see campaign.h). */
#include "campaign.h"

#include <ctype.h>
#include <string.h>
#include <strings.h>

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
static const char *bare(const char *h) { return strncmp(h, "www.", 4) == 0 ? h + 4 : h; }

const char *campaign_referrer_class(const char *ref_host, const char *page_host) {
  if (!ref_host || !*ref_host) return "direct";
  if (page_host && *page_host && strcmp(bare(ref_host), bare(page_host)) == 0) return "internal";
  if (host_in(ref_host, email_hosts)) return "email";
  if (host_in(ref_host, search_hosts)) return "search";
  if (host_in(ref_host, social_hosts)) return "social";
  return "other";
}

size_t campaign_url_host(const char *url, char *out, size_t outlen) {
  const char *p = strstr(url, "://");
  if (!p) return 0;
  p += 3;
  size_t n = strcspn(p, "/?#");
  const char *at = memchr(p, '@', n);
  if (at) {
    n -= (size_t)(at + 1 - p);
    p = at + 1;
  }
  size_t h = 0;
  if (n && p[0] == '[') {
    const char *close = memchr(p, ']', n);
    h = close ? (size_t)(close - p + 1) : n;
  } else {
    const char *colon = memchr(p, ':', n);
    h = colon ? (size_t)(colon - p) : n;
  }
  if (!h || h >= outlen) return 0;
  for (size_t i = 0; i < h; i++) out[i] = (char)tolower((unsigned char)p[i]);
  out[h] = 0;
  return h;
}

static const char *str_at(const cJSON *obj, const char *a, const char *b) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, a);
  if (b) v = cJSON_GetObjectItemCaseSensitive(v, b);
  return cJSON_IsString(v) && v->valuestring[0] ? v->valuestring : NULL;
}

static const char *const click_ids[] = {"gclid", "fbclid", "msclkid", "ttclid", "twclid",
                                        "li_fat_id", "dclid", "wbraid", "gbraid", "yclid", NULL};

/* Fill context.campaign (created lazily in *camp) from the URL's query string. */
static void parse_query(const char *url, cJSON *context, cJSON **camp) {
  const char *q = strchr(url, '?');
  if (!q) return;
  q++;
  size_t qlen = strcspn(q, "#"), pos = 0, kl, vl;
  const char *k, *v;
  char key[32], val[512];
  while (str_query_next(q, qlen, &pos, &k, &kl, &v, &vl)) {
    if (kl >= sizeof key || vl >= sizeof val) continue;
    if (str_url_decode(k, kl, key, 1) < 0 || str_url_decode(v, vl, val, 1) < 0 || !val[0]) continue;
    const char *field = NULL;
    if (!strncmp(key, "utm_", 4)) {
      const char *s = key + 4;
      field = !strcmp(s, "source")     ? "source"
              : !strcmp(s, "medium")   ? "medium"
              : !strcmp(s, "campaign") ? "name"
              : !strcmp(s, "term")     ? "term"
              : !strcmp(s, "content")  ? "content"
                                       : NULL;
    }
    int click = 0;
    for (const char *const *c = click_ids; *c && !field; c++) click |= !strcmp(key, *c);
    if (!field && !click) continue;
    if (!*camp) *camp = cJSON_AddObjectToObject(context, "campaign");
    if (field && !cJSON_GetObjectItemCaseSensitive(*camp, field)) {
      cJSON_AddStringToObject(*camp, field, val);
    } else if (click && !cJSON_GetObjectItemCaseSensitive(*camp, "clickId")) {
      cJSON *ci = cJSON_AddObjectToObject(*camp, "clickId");
      cJSON_AddStringToObject(ci, "type", key);
      cJSON_AddStringToObject(ci, "value", val);
    }
  }
}

int campaign_enrich_step(cJSON *ev, const enrich_ctx_t *ctx, void *state, char *msg,
                         size_t msglen) {
  cJSON *context = cJSON_GetObjectItemCaseSensitive(ev, "context");
  if (!cJSON_IsObject(context)) return 0; /* the ip step always creates it */
  const char *url = str_at(context, "page", "url");
  if (!url) url = str_at(ev, "properties", "url");
  const char *ref = str_at(context, "page", "referrer");
  if (!ref) ref = str_at(ev, "properties", "referrer");

  cJSON *camp = cJSON_GetObjectItemCaseSensitive(context, "campaign");
  if (!camp && url) parse_query(url, context, &camp);
  if (camp && !cJSON_IsObject(camp)) camp = NULL;

  /* Only page views and events that carry a page say where the visitor came from. */
  if (!url && !ref) return 0;
  char page_host[256] = "", ref_host[256] = "";
  if (url) campaign_url_host(url, page_host, sizeof page_host);
  if (ref) campaign_url_host(ref, ref_host, sizeof ref_host);
  const char *cls = campaign_referrer_class(ref_host, page_host);
  const char *medium = camp ? str_at(camp, "medium", NULL) : NULL;
  if (medium && (!strcasecmp(medium, "email") || !strcasecmp(medium, "e-mail") ||
                 !strcasecmp(medium, "newsletter")))
    cls = "email";
  cJSON *r = cJSON_GetObjectItemCaseSensitive(context, "referrer");
  if (!r) r = cJSON_AddObjectToObject(context, "referrer");
  if (!cJSON_IsObject(r)) return 0;
  if (ref_host[0] && !cJSON_GetObjectItemCaseSensitive(r, "host"))
    cJSON_AddStringToObject(r, "host", ref_host);
  if (!cJSON_GetObjectItemCaseSensitive(r, "class")) cJSON_AddStringToObject(r, "class", cls);
  return 0;
}
