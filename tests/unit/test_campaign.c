/* Unit tests for campaign attribution: UTM, click ids, referrer classes. */
#include "campaign.h"

#include <ctype.h>

#include "evtest.h"
#include "test.h"

TEST(referrer_classes) {
  static const struct {
    const char *ref, *page, *cls;
  } cases[] = {
      {"www.google.com", "shop.example", "search"},
      {"google.co.uk", "shop.example", "search"},
      {"duckduckgo.com", "shop.example", "search"},
      {"search.brave.com", "shop.example", "search"},
      {"l.facebook.com", "shop.example", "social"},
      {"t.co", "shop.example", "social"},
      {"x.com", "shop.example", "social"},
      {"mail.google.com", "shop.example", "email"},
      {"outlook.live.com", "shop.example", "email"},
      {"www.shop.example", "shop.example", "internal"},
      {"shop.example", "shop.example", "internal"},
      {"", "shop.example", "direct"},
      {NULL, "shop.example", "direct"},
      {"blog.example.org", "shop.example", "other"},
      {"notgoogle.com", "shop.example", "other"},
      {"myt.co", "shop.example", "other"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    const char *got = campaign_referrer_class(cases[i].ref, cases[i].page);
    if (strcmp(got, cases[i].cls))
      FAILF("%s -> %s, expected %s", cases[i].ref ? cases[i].ref : "(null)", got, cases[i].cls);
  }
}

TEST(url_host) {
  char h[64];
  CHECK_INT(campaign_url_host("https://User@WWW.Shop.Example:8443/p?q=1", h, sizeof h), 16);
  CHECK_STR(h, "www.shop.example");
  CHECK_INT(campaign_url_host("http://[2001:db8::1]:80/", h, sizeof h), 13);
  CHECK_INT(campaign_url_host("/relative/path", h, sizeof h), 0);
  /* The host follows the first "://", wherever the first ':' is. */
  CHECK_INT(campaign_url_host("a:b:/c://Host.Example/x", h, sizeof h), 12);
  CHECK_STR(h, "host.example");
  CHECK_INT(campaign_url_host("mailto:x@y.example", h, sizeof h), 0);
  CHECK_INT(campaign_url_host("x:/", h, sizeof h), 0);
  CHECK_INT(campaign_url_host("x:", h, sizeof h), 0);
  /* Userinfo, a port or an IPv6 literal within a short authority. */
  CHECK_INT(campaign_url_host("http://u:p@H.ex/long/path/here", h, sizeof h), 4);
  CHECK_STR(h, "h.ex");
  CHECK_INT(campaign_url_host("https://H.ex:8080/long/path/here", h, sizeof h), 4);
  CHECK_STR(h, "h.ex");
  CHECK_INT(campaign_url_host("https://[::1]:8080/long/path/here", h, sizeof h), 5);
  CHECK_STR(h, "[::1]");
  CHECK_INT(campaign_url_host("HTTPS://H.ex/long/path/here", h, sizeof h), 4);
  CHECK_INT(campaign_url_host("https:///long/path/here/and/more", h, sizeof h), 0);
}

/* A span ends the URL wherever its bytes go on: the host of the first 24 or 20 bytes of a
 * longer text stops there, and a "://" or an authority cut by the span's end is not
 * read past it. The authority is searched sixteen bytes a step: hosts around that
 * length end at the span's end or at each delimiter. */
TEST(url_host_span) {
  char h[64];
  const char *text = "https://shop.example.org/p?q=1";
  CHECK_INT(campaign_url_host_n(text, 24, h, sizeof h), 16);
  CHECK_STR(h, "shop.example.org");
  CHECK_INT(campaign_url_host_n(text, 20, h, sizeof h), 12);
  CHECK_STR(h, "shop.example");
  CHECK_INT(campaign_url_host_n(text, 7, h, sizeof h), 0);
  CHECK_INT(campaign_url_host_n(text, 6, h, sizeof h), 0);
  CHECK_INT(campaign_url_host_n("x://a", 4, h, sizeof h), 0);
  for (size_t hl = 1; hl <= 40; hl++) {
    for (const char *d = "/?#"; *d; d++) {
      char url[64];
      memcpy(url, "http://", 7);
      memset(url + 7, 'A', hl);
      url[7 + hl] = *d;
      memcpy(url + 8 + hl, "zz", 3);
      CHECK_INT(campaign_url_host_n(url, 10 + hl, h, sizeof h), hl);
      CHECK_INT(campaign_url_host_n(url, 7 + hl, h, sizeof h), hl);
      CHECK_INT(h[0], 'a');
      CHECK_INT(campaign_url_host(url, h, sizeof h), hl);
    }
  }
}

/* A host is lowercased as tolower does in the C locale, eight bytes a step: every byte
 * value at every place of a host longer than two words. */
TEST(url_host_lowercase) {
  char url[64], h[64], host[20];
  for (int c = 1; c < 256; c++) {
    if (strchr("/?#@:[", c)) continue; /* they end or split the host */
    for (size_t at = 0; at < 19; at++) {
      memcpy(host, "Shop-X.EXAMPLE.Co.U", 19);
      host[19] = 0;
      host[at] = (char)c;
      snprintf(url, sizeof url, "https://%s/x", host);
      CHECK_INT(campaign_url_host(url, h, sizeof h), 19);
      for (size_t i = 0; i < 19; i++)
        if (h[i] != (char)tolower((unsigned char)host[i]))
          FAILF("byte %d at %zu: %02x for %02x", c, i, (unsigned char)h[i], (unsigned char)host[i]);
    }
  }
}

static buf_t *step_state; /* the step's reused buffer, or NULL */

static cJSON *enrich(const char *json) {
  enrich_ctx_t ctx = {0, "127.0.0.1", NULL, NULL, ""};
  int rc = -1;
  cJSON *ev = evtest_step(campaign_enrich_step, step_state, json, &ctx, &rc);
  CHECK_INT(rc, 0);
  return ev;
}

static const char *path(cJSON *ev, const char *a, const char *b, const char *c) {
  cJSON *v = cJSON_GetObjectItem(ev, a);
  if (v && b) v = cJSON_GetObjectItem(v, b);
  if (v && c) v = cJSON_GetObjectItem(v, c);
  return cJSON_IsString(v) ? v->valuestring : NULL;
}

TEST(utm_and_click_ids) {
  cJSON *ev = enrich("{\"type\":\"page\",\"context\":{\"page\":{\"url\":\"https://shop.example/p/1?"
                     "utm_source=newsletter&utm_medium=email&utm_campaign=Black%20Friday&utm_term=shoes"
                     "&utm_content=hero&gclid=abc123#top\",\"referrer\":\"https://mail.google.com/\"}}}");
  CHECK_STR(path(ev, "context", "campaign", "source"), "newsletter");
  CHECK_STR(path(ev, "context", "campaign", "medium"), "email");
  CHECK_STR(path(ev, "context", "campaign", "name"), "Black Friday");
  CHECK_STR(path(ev, "context", "campaign", "term"), "shoes");
  CHECK_STR(path(ev, "context", "campaign", "content"), "hero");
  cJSON *ci = cJSON_GetObjectItem(cJSON_GetObjectItem(cJSON_GetObjectItem(ev, "context"), "campaign"), "clickId");
  CHECK_STR(cJSON_GetObjectItem(ci, "type")->valuestring, "gclid");
  CHECK_STR(cJSON_GetObjectItem(ci, "value")->valuestring, "abc123");
  CHECK_STR(path(ev, "context", "referrer", "class"), "email");
  CHECK_STR(path(ev, "context", "referrer", "host"), "mail.google.com");
  cJSON_Delete(ev);
}

TEST(existing_campaign_kept_and_direct) {
  cJSON *ev = enrich("{\"type\":\"page\",\"properties\":{\"url\":\"https://shop.example/?utm_source=x\"},"
                     "\"context\":{\"campaign\":{\"source\":\"sdk\"}}}");
  CHECK_STR(path(ev, "context", "campaign", "source"), "sdk");
  CHECK_STR(path(ev, "context", "referrer", "class"), "direct");
  cJSON_Delete(ev);
  ev = enrich("{\"type\":\"track\",\"event\":\"x\",\"context\":{\"ip\":\"1.2.3.0\"}}");
  CHECK(cJSON_GetObjectItem(cJSON_GetObjectItem(ev, "context"), "referrer") == NULL);
  cJSON_Delete(ev);
}

/* One buffer reused for event after event (as the chain does) gives each event what a
 * fresh one gives: nothing of a longer earlier campaign is left over. */
TEST(reused_state_matches_fresh) {
  static const char *const evs[] = {
      "{\"type\":\"page\",\"context\":{\"page\":{\"url\":\"https://s.example/?utm_source=news"
      "letter&utm_medium=email&utm_campaign=Spring%20Sale&utm_term=t&utm_content=c&fbclid=F1\"}}}",
      "{\"type\":\"page\",\"context\":{\"page\":{\"url\":\"https://s.example/?utm_source=g\"}}}",
      "{\"type\":\"page\",\"context\":{\"page\":{\"url\":\"https://s.example/?gclid=x%22y\"}}}",
      "{\"type\":\"page\",\"context\":{\"page\":{\"url\":\"https://s.example/plain\"}}}"};
  buf_t state = BUF_INIT;
  for (int round = 0; round < 2; round++)
    for (size_t i = 0; i < sizeof evs / sizeof evs[0]; i++) {
      step_state = NULL;
      cJSON *fresh = enrich(evs[i]);
      step_state = &state;
      cJSON *reused = enrich(evs[i]);
      step_state = NULL;
      char *a = cJSON_PrintUnformatted(fresh), *b = cJSON_PrintUnformatted(reused);
      if (!a || !b || strcmp(a, b) != 0) FAILF("event %zu: %s vs %s", i, a ? a : "-", b ? b : "-");
      free(a);
      free(b);
      cJSON_Delete(fresh);
      cJSON_Delete(reused);
    }
  CHECK(state.data != NULL); /* the step wrote into it */
  buf_free(&state);
}

int main(void) {
  RUN(referrer_classes);
  RUN(url_host);
  RUN(url_host_span);
  RUN(url_host_lowercase);
  RUN(utm_and_click_ids);
  RUN(existing_campaign_kept_and_direct);
  RUN(reused_state_matches_fresh);
  return TEST_REPORT("test_campaign");
}
