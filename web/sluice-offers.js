// sluice-offers.js: offers for sluice.js (docs/TRACKER.md#offers), which loads it when its
// script tag has data-offers. Opens the visitor's offers stream (docs/ACTIONS.md) with a
// channel token kept in sessionStorage until it expires, asks for a new token when the
// stream is refused (401 token_expired...) and hands each offer to the shop's onOffer
// callback or, when there is none or it returns false, to the default banner. An offer
// whose key this tab has seen already is skipped (the last 50 keys, in sessionStorage):
// a decision replayed by the engine, or arriving again, is shown once per tab.
// offer_shown, offer_clicked and offer_dismissed are recorded at most once each per
// offer. Nothing here throws into the page or takes its focus.
// Minified by scripts/minify.sh into web/sluice-offers.min.js, like sluice.js.
(function (W, D) {
  var S = W.sluice, es, hide, fails = 0;
  if (!S || !S._o || W.sluiceOffers) return;
  // sessionStorage, JSON: ss(k) reads, ss(k, v) writes; disabled storage reads nothing.
  function ss(k, v) {
    try {
      k = "sluice_" + k;
      return v ? sessionStorage.setItem(k, JSON.stringify(v)) : JSON.parse(sessionStorage.getItem(k));
    } catch (e) {}
  }
  // A refused stream or a failed token request: try again with a new token, after 1, 2,
  // 4 ... up to 64 s.
  function retry() {
    setTimeout(open, 1e3 << Math.min(fails++, 6), 1);
  }
  // Close the stream; open it again unless marketing consent is refused (sluice's
  // default categories: a Marketing or Advertising category given, none of them true).
  // The token: t when just fetched, else the stored one while it lasts, else a new one
  // (always when fresh).
  function open(fresh, t) {
    try {
      var c = S._o(), key = c[0], host = c[1], aid = c[2], consent = c[3], s = ss("token"), ok = 1, k;
      t = t || !fresh && s && s.id == aid && Date.parse(s.expiresAt) > Date.now() && s;
      es && es.close();
      es = 0;
      for (k in consent) if (/^(marketing|advertising)$/i.test(k)) { if (consent[k]) { ok = 1; break; } ok = 0; }
      if (!ok) return;
      if (t) {
        // lastEventId: what this tab missed since its last page is sent again.
        es = new EventSource(host + "/v1/offers?anonymousId=" + encodeURIComponent(aid) + "&token=" + encodeURIComponent(t.token) + "&lastEventId=" + (ss("last") || ""));
        es.onopen = function () { fails = 0; };
        // A network error leaves the stream CONNECTING (the browser retries, sending
        // Last-Event-ID); an error answer closes it.
        es.onerror = function () { if (this.readyState > 1) es = 0, retry(); };
        es.addEventListener("offer", function (e) {
          try {
            ss("last", e.lastEventId);
            offer(JSON.parse(e.data));
          } catch (x) {}
        });
      } else fetch(host + "/v1/offers/token", { method: "POST", headers: { Authorization: "Bearer " + key }, body: JSON.stringify({ anonymousId: aid }) })
        .then(function (r) { if (!r.ok) throw r; return r.json(); })
        .then(function (t) { t.id = aid; ss("token", t); open(0, t); }, retry);
    } catch (e) {}
  }

  function el(tag, text, css, parent) {
    var e = D.createElement(tag);
    e.textContent = text;
    e.style.cssText = css;
    parent.append(e);
    return e;
  }

  // One offer: {template, fields, rule?, key?}. The default banner shows fields.title,
  // .text, .code and a link .cta to .url (http(s) or a path only); every field optional.
  function offer(m) {
    var handler = S._o()[4], k = m.key, seen = ss("seen") || [], p = { template: m.template, rule: m.rule, key: k }, done = {}, f = m.fields || {}, b, x;
    if (k) {
      if (seen.indexOf(k) >= 0) return;
      ss("seen", seen.concat(k).slice(-50));
    }
    function record(n) {
      done[n] || S.track("offer_" + n, p);
      done[n] = 1;
    }
    if (!handler || handler(m, record) === false) {
      hide && hide();
      b = el("div", "", "position:fixed;z-index:2147483647;left:16px;bottom:16px;margin-right:16px;max-width:340px;padding:16px 48px 18px 18px;border-radius:12px;background:#1f2a36;color:#fff;font:15px/1.45 system-ui,sans-serif;box-shadow:0 8px 28px rgba(0,0,0,.3)", D.body);
      b.setAttribute("role", "dialog");
      b.setAttribute("aria-live", "polite");
      b.setAttribute("aria-label", f.title || "Offer");
      if (f.title) el("strong", f.title, "display:block;font-size:17px", b);
      if (f.text) el("div", f.text, "margin-top:4px", b);
      if (f.code) el("code", f.code, "display:inline-block;margin-top:10px;padding:2px 10px;border:1px dashed #9fb3c8;border-radius:6px;font:600 15px ui-monospace,monospace;letter-spacing:.06em", b);
      if (/^(https?:\/\/|\/)/i.test(f.url)) {
        x = el("a", f.cta || "Open", "display:table;margin-top:12px;padding:8px 16px;border-radius:8px;background:#fff;color:#1f2a36;font-weight:600;text-decoration:none", b);
        x.href = f.url;
        // Removed only once the click is over: a link no longer in the page would not
        // be followed.
        x.onclick = function () { record("clicked"); setTimeout(hide); };
      }
      x = el("button", "\u00d7", "position:absolute;top:6px;right:6px;width:36px;height:36px;border:0;border-radius:8px;background:none;color:inherit;font:24px/1 sans-serif;cursor:pointer", b);
      x.setAttribute("aria-label", "Close");
      x.onclick = function () { record("dismissed"); hide(); };
      // Escape closes the banner wherever the focus is.
      var esc = function (e) { e.key == "Escape" && x.onclick(); };
      D.addEventListener("keydown", esc);
      hide = function () { b.remove(); D.removeEventListener("keydown", esc); hide = 0; };
    }
    record("shown");
  }

  W.sluiceOffers = open;
  open();
})(window, document);
