/* Unit tests for query-string events (pixel, redirect): query string in, JSON text out. */
#include "qevent.h"

#include "evdoc.h"
#include "test.h"

static qevent_t *q;

/* Build query as kind; returns the text (static) or NULL with *code set. */
static const char *build(const char *query, qevent_kind_t kind, char *key, char **redirect,
                         const char **code) {
  static buf_t out;
  const char *msg = NULL;
  buf_reset(&out);
  *code = NULL;
  if (qevent_build(q, query, strlen(query), kind, &out, key, 256, redirect, code, &msg) != 0) {
    if (!*code || !msg) return "(no code or message)";
    return NULL;
  }
  buf_putc(&out, 0);
  out.len--;
  return out.data;
}

TEST(table) {
  static const struct {
    const char *query;
    qevent_kind_t kind;
    const char *json, *key, *redirect;
  } cases[] = {
      {"writeKey=wk&userId=u-1&event=Email+Opened&properties.campaign=nov%20sale", QEVENT_PIXEL,
       "{\"userId\":\"u-1\",\"event\":\"Email Opened\",\"properties\":{\"campaign\":\"nov sale\"},"
       "\"type\":\"track\"}",
       "wk", NULL},
      {"k=wk&userId=u", QEVENT_PIXEL,
       "{\"userId\":\"u\",\"type\":\"track\",\"event\":\"Email Opened\"}", "wk", NULL},
      {"k=wk&u=https%3A%2F%2Fshop.example%2Fp&userId=u", QEVENT_REDIRECT,
       "{\"userId\":\"u\",\"type\":\"track\",\"event\":\"Email Link Clicked\","
       "\"properties\":{\"url\":\"https://shop.example/p\"}}",
       "wk", "https://shop.example/p"},
      /* the last value of a parameter wins; the key too */
      {"k=a&userId=a&event=x&userId=b&writeKey=b", QEVENT_PIXEL,
       "{\"event\":\"x\",\"userId\":\"b\",\"type\":\"track\"}", "b", NULL},
      /* a dotted parameter below a member that is not an object replaces it */
      {"data=eyJjb250ZXh0Ijoic3RyIn0&context.campaign.source=x", QEVENT_PIXEL,
       "{\"context\":{\"campaign\":{\"source\":\"x\"}},\"type\":\"track\",\"event\":\"Email Opened\"}",
       "", NULL},
      /* data: its members (writeKey too) and key; later parameters go inside its objects */
      {"data=eyJ1c2VySWQiOiJkIiwicHJvcGVydGllcyI6eyJhIjoxfSwid3JpdGVLZXkiOiJkayJ9&properties.b=2",
       QEVENT_PIXEL,
       "{\"userId\":\"d\",\"properties\":{\"a\":1,\"b\":\"2\"},\"writeKey\":\"dk\",\"type\":\"track\","
       "\"event\":\"Email Opened\"}",
       "dk", NULL},
      /* a data member name with a dot stays one member */
      {"data=eyJhXHUwMDJlYiI6dHJ1ZX0", QEVENT_PIXEL,
       "{\"a.b\":true,\"type\":\"track\",\"event\":\"Email Opened\"}", "", NULL},
      /* later parameters win over data's members, and data over earlier parameters */
      {"userId=q&data=eyJ1c2VySWQiOiJkIiwicHJvcGVydGllcyI6eyJhIjoxfSwid3JpdGVLZXkiOiJkayJ9"
       "&userId=late&properties=ignored&k=last",
       QEVENT_PIXEL,
       "{\"properties\":{\"a\":1},\"writeKey\":\"dk\",\"userId\":\"late\",\"type\":\"track\","
       "\"event\":\"Email Opened\"}",
       "last", NULL},
      /* escapes: quotes, backslashes, control bytes; bad UTF-8; a decoded NUL ends a value */
      {"userId=%22q%5C%0A%01&anonymousId=%FF&name=a%00b&type=page", QEVENT_PIXEL,
       "{\"userId\":\"\\\"q\\\\\\n\\u0001\",\"anonymousId\":\"\\ufffd\",\"name\":\"a\","
       "\"type\":\"page\"}",
       "", NULL},
      /* ignored: unknown names, empty segments, a 64-byte segment, a 7-segment path */
      {"foo=1&.x=1&a..b=1&properties.=1&"
       "p.aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa=1&a.b.c.d.e.f.g=1"
       "&a.b.c.d.e.f=6",
       QEVENT_PIXEL,
       "{\"a\":{\"b\":{\"c\":{\"d\":{\"e\":{\"f\":\"6\"}}}}},\"type\":\"track\",\"event\":\"Email Opened\"}",
       "", NULL},
      /* the redirect keeps a url the event has and leaves a non-object properties alone */
      {"u=https%3A%2F%2Fa.example%2F&properties.url=mine", QEVENT_REDIRECT,
       "{\"properties\":{\"url\":\"mine\"},\"type\":\"track\",\"event\":\"Email Link Clicked\"}", "",
       "https://a.example/"},
      {"url=https%3A%2F%2Fa.example%2F&data=eyJwcm9wZXJ0aWVzIjoieCJ9", QEVENT_REDIRECT,
       "{\"properties\":\"x\",\"type\":\"track\",\"event\":\"Email Link Clicked\"}", "",
       "https://a.example/"},
      {"", QEVENT_PIXEL, "{\"type\":\"track\",\"event\":\"Email Opened\"}", "", NULL},
  };
  evdoc_t *check = evdoc_new();
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char key[256] = "junk";
    char *redirect = NULL;
    const char *code;
    const char *got = build(cases[i].query, cases[i].kind, key, &redirect, &code);
    if (!got) {
      FAILF("case %zu: error %s", i, code);
      continue;
    }
    if (strcmp(got, cases[i].json)) FAILF("case %zu:\n  got  %s\n  want %s", i, got, cases[i].json);
    if (evdoc_load(check, got, strlen(got)) != 0) FAILF("case %zu: not a loadable object", i);
    if (strcmp(key, cases[i].key)) FAILF("case %zu: key %s, want %s", i, key, cases[i].key);
    if (!cases[i].redirect != !redirect ||
        (redirect && strcmp(redirect, cases[i].redirect)))
      FAILF("case %zu: redirect %s", i, redirect ? redirect : "(null)");
    free(redirect);
  }
  evdoc_free(check);
}

TEST(errors) {
  static const struct {
    const char *query, *code;
  } cases[] = {
      {"userId=%zz", "bad_query"},
      {"%4=1", "bad_query"},
      {"data=!!!", "invalid_json"},
      {"data=WzFd", "invalid_json"},             /* [1] */
      {"data=eyJhIjoxLCJhIjoyfQ", "invalid_json"}, /* {"a":1,"a":2} */
      {"data=", "invalid_json"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char key[256];
    char *redirect = NULL;
    const char *code;
    const char *got = build(cases[i].query, QEVENT_PIXEL, key, &redirect, &code);
    if (got) FAILF("case %zu (%s): built %s", i, cases[i].query, got);
    else CHECK_STR(code, cases[i].code);
    free(redirect);
  }
}

/* At most QEVENT_MAX_FIELDS field parameters count; the key and target still do. */
TEST(field_limit) {
  buf_t query = BUF_INIT;
  for (int i = 0; i < QEVENT_MAX_FIELDS + 50; i++) buf_printf(&query, "properties.p%d=%d&", i, i);
  buf_puts(&query, "k=wk&u=https%3A%2F%2Fa.example%2F");
  char key[256];
  char *redirect = NULL;
  const char *code;
  const char *got = build(query.data, QEVENT_REDIRECT, key, &redirect, &code);
  REQUIRE(got);
  evdoc_t *d = evdoc_new();
  REQUIRE(evdoc_load(d, got, strlen(got)) == 0);
  const jscan_member_t *m;
  /* 256 fields, then properties.url from the target */
  CHECK_INT(evdoc_members(d, "properties", &m), QEVENT_MAX_FIELDS + 1);
  CHECK(evdoc_get(d, "properties.p255").type == JSCAN_STRING);
  CHECK(evdoc_get(d, "properties.p256").type == JSCAN_NONE);
  CHECK_STR(key, "wk");
  CHECK_STR(redirect, "https://a.example/");
  free(redirect);
  evdoc_free(d);
  buf_free(&query);
}

int main(void) {
  q = qevent_new();
  RUN(table);
  RUN(errors);
  RUN(field_limit);
  qevent_free(q);
  return TEST_REPORT("test_qevent");
}
