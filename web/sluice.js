// sluice.js: the browser tracker of sluice (docs/TRACKER.md). Captures page views (SPA
// history changes too), clicks, opt-in hovers / scroll depth / key presses (field type
// only, never what was typed) and the shop's own track/identify calls, and sends them to
// POST /v1/batch as Segment-compatible events. With data-offers it loads
// /sluice-offers.js, which shows the offers sluice pushes to the visitor.
// Delivery: events wait in a queue mirrored in localStorage (bounded); a batch goes out
// at flushAt events or flushMs ms, with fetch(keepalive); on failure it stays queued and
// is retried with exponential backoff, also across page loads; on pagehide / hidden the
// queue goes out with sendBeacon. An event may thus be sent twice, never lost on purpose:
// the server keeps one copy per messageId. Nothing here throws into the page.
// Served with comment lines and indentation stripped (scripts/embed.py): comments only on
// lines of their own, no template literals spanning lines.
(function (W, D) {
  var N = W.navigator, L, S = D.currentScript, H = W.history;
  // localStorage access throws where storage is disabled; every use is guarded.
  try { L = W.localStorage; } catch (e) {}
  if (W.sluice && W.sluice.ready) return;
  // Options are the script tag's data-* attributes (docs/TRACKER.md).
  function opt(k, v) {
    var x = S && S.getAttribute("data-" + k);
    return x == null ? v : x;
  }
  // A present attribute turns a capture on ("", "1", "true"), "false" or "0" off.
  function flag(k, v) {
    var x = opt(k);
    return x == null ? v : x != "false" && x != "0";
  }
  var VERSION = "0.1.0",
    key = opt("write-key"),
    host = opt("host", S && S.src ? new URL(S.src).origin : ""),
    store = opt("storage", "localStorage"),
    flushAt = +opt("flush-at", 20),
    flushMs = +opt("flush-ms", 2000),
    maxQ = +opt("max-queue", 500),
    P = "sluice_", q = [], sent = {}, timer = 0, fails = 0, busy = 0, lastUrl, ref = D.referrer;

  // ---- storage: anonymousId, userId, session, consent in a first-party cookie or
  // localStorage (data-storage="cookie"); the queue always in localStorage.
  function get(k) {
    try {
      if (store == "cookie") {
        var m = D.cookie.match("(?:^|; )" + P + k + "=([^;]*)");
        return m ? decodeURIComponent(m[1]) : null;
      }
      return L.getItem(P + k);
    } catch (e) { return null; }
  }
  function set(k, v) {
    try {
      if (store == "cookie") D.cookie = P + k + "=" + encodeURIComponent(v == null ? "" : v) + "; path=/; SameSite=Lax; max-age=" + (v == null ? 0 : 31536000);
      else v == null ? L.removeItem(P + k) : L.setItem(P + k, v);
    } catch (e) {}
  }
  function json(k) {
    try { return JSON.parse(get(k)); } catch (e) { return null; }
  }
  // A random (version 4) UUID; crypto.randomUUID needs a secure context, this does not.
  function uuid() {
    var b = W.crypto.getRandomValues(new Uint8Array(16)), h = "", i = 0;
    b[6] = b[6] & 15 | 64;
    b[8] = b[8] & 63 | 128;
    for (; i < 16; i++) h += (b[i] + 256).toString(16).slice(1);
    return h.replace(/^(.{8})(.{4})(.{4})(.{4})/, "$1-$2-$3-$4-");
  }
  var aid = get("aid") || (set("aid", aid = uuid()), aid),
    uid = get("uid"),
    consent = json("consent");

  // A session ends after 30 minutes without an event.
  function session() {
    var s = json("session") || {}, t = Date.now();
    if (!s.id || t - s.t > 18e5) s.id = uuid();
    s.t = t;
    set("session", JSON.stringify(s));
    return s.id;
  }

  function saveQ() {
    var s;
    while (q.length > maxQ) q.shift();
    try {
      while ((s = JSON.stringify(q)).length > 5e5 && q.length > 1) q.shift();
      L.setItem(P + "queue", s);
    } catch (e) {}
  }

  // ---- events
  function pageCtx() {
    var l = D.location;
    return { url: l.href, path: l.pathname, search: l.search, referrer: ref, title: D.title };
  }
  function send(type, o) {
    try {
      o.type = type;
      o.anonymousId = aid;
      if (uid) o.userId = uid;
      o.messageId = uuid();
      o.timestamp = new Date().toISOString();
      o.context = { page: pageCtx(), userAgent: N.userAgent, locale: N.language, sessionId: session(), library: { name: "sluice.js", version: VERSION } };
      if (consent) o.context.consent = { categoryPreferences: consent };
      q.push(o);
      saveQ();
      if (q.length >= flushAt) flush();
      else if (!timer) timer = setTimeout(flush, flushMs);
    } catch (e) {}
  }

  function body(b) {
    var t = new Date().toISOString();
    b.forEach(function (e) { e.sentAt = t; });
    return JSON.stringify({ batch: b, writeKey: key });
  }
  function drop(ids) {
    q = q.filter(function (e) { return ids.indexOf(e.messageId) < 0; });
    saveQ();
  }
  function ids(b) {
    return b.map(function (e) { return e.messageId; });
  }
  function mark(i, v) {
    i.forEach(function (m) { v ? sent[m] = 1 : delete sent[m]; });
  }

  // One request at a time, up to 100 events; 2xx and 4xx (the server will never take
  // them; 408/429 excepted) remove the batch, anything else backs off and retries.
  function flush() {
    clearTimeout(timer);
    timer = 0;
    if (busy || !q.length) return;
    if (N.onLine === false) return;
    var b = q.slice(0, 100), i = ids(b), s = body(b), k = s.length < 6e4;
    busy = 1;
    // A keepalive request outlives the page: beacon() leaves its events alone meanwhile.
    mark(i, k);
    fetch(host + "/v1/batch", { method: "POST", body: s, keepalive: k, headers: { "Content-Type": "text/plain" } })
      .then(function (r) {
        var st = r.status;
        if (st < 300 || st < 500 && st != 408 && st != 429) return drop(i), fails = 0, 1;
      }, function () {})
      .then(function (ok) {
        busy = 0;
        mark(i);
        if (ok) { if (q.length) timer = setTimeout(flush, 0); }
        else timer = setTimeout(flush, Math.min(1e3 << Math.min(fails++, 6), 6e4) * (0.5 + Math.random() / 2));
      });
  }

  // Page hidden or leaving: hand sendBeacon (64 KB per page in flight) what is not on its
  // way yet; hidden-then-pagehide thus sends once. The events stay queued: if the page
  // lives on or the beacon was lost, they go again later (one copy is stored).
  function beacon() {
    try {
      var b = q.filter(function (e) { return !sent[e.messageId]; }), i = 0, n = 0, s, c;
      if (N.onLine === false || !N.sendBeacon) return;
      for (; i < b.length && n < 6e4; i += 50) {
        s = body(c = b.slice(i, i + 50));
        n += s.length;
        if (n > 6e4 || !N.sendBeacon(host + "/v1/batch", s)) break;
        mark(ids(c), 1);
      }
    } catch (e) {}
  }

  // ---- automatic capture
  function page(name, props) {
    var l = D.location, o = { properties: props || {} };
    lastUrl = l.pathname + l.search;
    if (name) o.name = name;
    "url path search referrer title".split(" ").forEach(function (k) {
      if (!(k in o.properties)) o.properties[k] = pageCtx()[k];
    });
    depth = 0;
    send("page", o);
    return o;
  }
  // A new URL (pushState, replaceState, back/forward) is a page view, recorded at once so
  // it comes before the events of the new page; apps often set the title just after
  // changing the URL, so the title is taken again once they had the chance.
  function changed() {
    var l = D.location, o;
    if (l.pathname + l.search != lastUrl) {
      ref = l.origin + lastUrl;
      o = page();
      setTimeout(function () { try { o.properties.title = o.context.page.title = D.title; saveQ(); } catch (e) {} }, 0);
    }
  }
  ["pushState", "replaceState"].forEach(function (m) {
    var f = H[m];
    H[m] = function () {
      var r = f.apply(this, arguments);
      changed();
      return r;
    };
  });
  on("popstate", changed, W);

  // What was clicked, briefly: tag, id, classes, text prefix, href.
  function target(e) {
    var t = e.target;
    return t && t.closest && t.closest("a,button,input,select,textarea,summary,[role=button],[data-track]") || null;
  }
  function describe(t) {
    var o = { tag: t.tagName.toLowerCase() }, x;
    if (t.id) o.id = t.id;
    if (x = t.getAttribute("class")) o.classes = x.trim().split(/\s+/).slice(0, 5);
    if (!/^(input|select|textarea)$/.test(o.tag)) {
      x = (t.innerText || t.textContent || "").replace(/\s+/g, " ").trim().slice(0, 40);
      if (x) o.text = x;
    } else o.type = t.type;
    if (typeof t.href == "string" && t.href) o.href = t.href;
    return o;
  }
  function on(ev, f, t) {
    (t || D).addEventListener(ev, function (e) { try { f(e); } catch (x) {} }, { capture: true, passive: true });
  }
  if (flag("clicks", 1)) on("click", function (e) {
    var t = target(e);
    if (t) send("track", { event: "Element Clicked", properties: describe(t) });
  });

  // Hovers: the pointer rests 500 ms on an element; each element once per page view, at
  // most one event a second.
  var hovered = [], hoverT, lastHover = 0;
  if (flag("hovers")) {
    on("mouseover", function (e) {
      var t = target(e);
      clearTimeout(hoverT);
      if (t && hovered.indexOf(t) < 0) hoverT = setTimeout(function () {
        if (Date.now() - lastHover < 1e3) return;
        lastHover = Date.now();
        hovered.push(t);
        send("track", { event: "Element Hovered", properties: describe(t) });
      }, 500);
    });
    on("mouseout", function () { clearTimeout(hoverT); });
  }

  // Scroll depth: 25/50/75/100 % of the page, each once per page view.
  var depth = 0, scrollT;
  if (flag("scroll")) on("scroll", function () {
    if (scrollT) return;
    scrollT = setTimeout(function () {
      scrollT = 0;
      var e = D.documentElement, p = Math.min(100, (W.scrollY + W.innerHeight) / e.scrollHeight * 100), m = 0;
      while (m < 100 && p >= m + 25) m += 25;
      if (m > depth) send("track", { event: "Scroll Depth Reached", properties: { depth: depth = m } });
    }, 250);
  });

  // Key presses: which kind of field is being typed in, at most once a second per
  // field. Never the key or the value.
  var keyed = [];
  if (flag("keys")) on("keydown", function (e) {
    var t = e.target, i = keyed.indexOf(t), tag = t && t.tagName && t.tagName.toLowerCase();
    if (!/^(input|textarea|select)$/.test(tag) && !(t && t.isContentEditable)) return;
    if (i >= 0 && Date.now() - keyed[i + 1] < 1e3) return;
    if (i >= 0) keyed[i + 1] = Date.now();
    else keyed.push(t, Date.now());
    send("track", { event: "Key Pressed", properties: { tag: tag, fieldType: t.type || tag } });
  });

  on("visibilitychange", function () { if (D.visibilityState == "hidden") beacon(); });
  on("pagehide", beacon, W);
  on("online", flush, W);

  // ---- offers (opt-in: data-offers) live in /sluice-offers.js, loaded only then, so
  // pages without offers do not download them. It calls back through api._o, and
  // window.sluiceOffers (re)opens the stream when consent or the anonymousId change.
  var handler, loading;
  function offers() {
    if (W.sluiceOffers) W.sluiceOffers();
    else if (flag("offers") && !loading) {
      loading = D.createElement("script");
      loading.src = host + "/sluice-offers.js";
      D.head.append(loading);
    }
  }

  // ---- the API
  var api = {
    ready: 1,
    VERSION: VERSION,
    track: function (event, props) { send("track", { event: String(event), properties: props || {} }); },
    page: page,
    identify: function (id, traits) {
      if (typeof id == "object" && id) traits = id, id = null;
      if (id != null) set("uid", uid = String(id));
      send("identify", { traits: traits || {} });
    },
    // Segment's context.consent.categoryPreferences, e.g. {Analytics: true, Advertising: false}.
    consent: function (prefs) {
      set("consent", JSON.stringify(consent = prefs));
      offers();
    },
    reset: function () {
      uid = null;
      set("uid");
      set("aid", aid = uuid());
      set("session");
      offers();
    },
    flush: flush,
    anonymousId: function () { return aid; },
    // The shop's own offer display: fn(offer, record); false hands it to the banner.
    onOffer: function (fn) { handler = fn; },
    // For sluice-offers.js only.
    _o: function () { return [key, host, aid, consent, handler]; }
  };

  // Calls queued before the script loaded: window.sluice = [["track", "x", {...}], ...].
  var pre = W.sluice;
  W.sluice = api;
  try { q = JSON.parse(L.getItem(P + "queue")) || []; } catch (e) {}
  if (!Array.isArray(q)) q = [];
  if (Array.isArray(pre)) pre.forEach(function (c) { try { api[c[0]].apply(api, c.slice(1)); } catch (e) {} });
  if (flag("auto-page", 1)) page();
  if (q.length) timer = timer || setTimeout(flush, 0);
  offers();
})(window, document);
