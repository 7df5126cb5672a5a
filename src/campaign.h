/* campaign: where a visitor came from — UTM parameters, ad click ids and the referrer's
 * class — as an enrichment step.
 *
 * Reads the page URL (context.page.url, else properties.url) and the referrer
 * (context.page.referrer, else properties.referrer) the tracker or SDK sent, and adds:
 *   context.campaign  {"source","medium","name","term","content"} from utm_* (Segment's
 *                     names: utm_campaign is "name"), plus "clickId" {"type","value"} for
 *                     gclid, fbclid, msclkid, ttclid, twclid, li_fat_id, dclid, wbraid,
 *                     gbraid, yclid — only when the event has no context.campaign yet
 *   context.referrer  {"host", "class"} merged into what is there; class is one of
 *                     search, social, email, internal (same site as the page), direct (no
 *                     referrer), other. utm_medium=email (or newsletter) makes it email.
 * Host lists are built in (see campaign.c) and matched on registrable-domain suffixes,
 * e.g. "google." matches www.google.com and google.co.uk. */
#ifndef SLUICE_CAMPAIGN_H
#define SLUICE_CAMPAIGN_H

#include <stddef.h>

#include "enrich.h"

/* Classify a referrer host given the page's host (either may be NULL/empty). Returns a
 * static string: "search", "social", "email", "internal", "direct" or "other". */
const char *campaign_referrer_class(const char *ref_host, const char *page_host);

/* Copy the host of an absolute URL (lowercased, without port or userinfo) into out.
 * Returns its length, or 0 when url has no host. */
size_t campaign_url_host(const char *url, char *out, size_t outlen);
/* The same for the URL url[0..len), which need not be NUL-terminated (a span of the
 * event's bytes). */
size_t campaign_url_host_n(const char *url, size_t len, char *out, size_t outlen);

/* enrich_step_fn: state is a buf_t (borrowed) the step reuses for the context.campaign
 * JSON it sets, so steady-state events do not allocate; NULL uses one per event. One
 * state must not serve two chains running at once. Never fails. */
int campaign_enrich_step(evdoc_t *ev, const enrich_ctx_t *ctx, void *state, char *msg,
                         size_t msglen);

#endif
