// Rules & alerts: each rule's fires, last fire and on/off switch, each KPI alert's state
// with the KPI's value now against its threshold and its last transitions, and the
// engine's counters, from GET /v1/rules every 2 seconds. Switching a rule and uploading
// a rules file need the admin key (the answer's adminKey says whether this key is it).
// While signed in, it also gives core.js the alert states of the Overview's KPI tiles
// (SD.setKpiAlerts), every 5 seconds.
(function () {
  "use strict";
  var SD = window.SD, el = SD.el, F = SD.fmt;
  var st = null;
  // The query API's KPIs, how each reads, and those that take a campaign filter.
  var KPIS = { conversion_rate: ["Conversion rate", F.pct], bounce_rate: ["Bounce rate", F.pct], revenue: ["Revenue", F.money],
    orders: ["Orders", F.int], aov: ["Average order", F.money], active_users: ["Visitors", F.int], events: ["Events", F.int] };
  var FILTERABLE = { revenue: true, active_users: true, events: true };
  var RANK = { ok: 0, near: 1, firing: 2 };
  var STATE_TEXT = { firing: "Firing", near: "Near threshold", ok: "OK", off: "Not evaluated" };
  // At most this many alerts are shown (and get their KPI queried) and rules listed.
  var MAX_ALERTS = 50, MAX_RULES = 1000;
  // "Near": within this fraction of the threshold on the breaching side.
  var NEAR = 0.1;
  var NEEDS_ADMIN = "needs the admin key";

  function put(path, body) {
    return fetch(path, { method: "PUT", cache: "no-store", body: body,
      headers: { Authorization: "Bearer " + SD.key(), "Content-Type": "application/json" } }).then(function (r) {
      return r.json().then(function (v) {
        if (!r.ok) throw new Error(v.message || ("HTTP " + r.status));
        return v;
      });
    });
  }

  function count(n, one) { return F.int(n) + " " + one + (n === 1 ? "" : "s"); }

  function ago(iso, now) {
    if (!iso) return "never";
    var s = Math.max(0, (now - Date.parse(iso)) / 1000);
    if (s < 5) return "just now";
    if (s < 60) return Math.floor(s) + " s ago";
    if (s < 3600) return Math.floor(s / 60) + " min ago";
    if (s < 86400) return Math.floor(s / 3600) + " h ago";
    return Math.floor(s / 86400) + " days ago";
  }

  function fmtKpi(kpi, v) { return (KPIS[kpi] ? KPIS[kpi][1] : F.dec)(v); }

  // Why an alert is not evaluated (RULES.md), or "".
  function skipped(a) {
    if (a.segment) return "segment scope: not evaluated";
    if (!KPIS[a.kpi]) return "unknown KPI: not evaluated";
    return "";
  }

  // The KPI of each alert over its window, as the engine reads it; null where the query
  // API cannot give the same figure.
  function values(alerts) {
    return Promise.all(alerts.map(function (a, i) {
      if (i >= MAX_ALERTS || skipped(a) || (a.campaign && !FILTERABLE[a.kpi])) return null;
      var q = { type: "kpi", kpi: a.kpi, from: "-" + Math.max(1, a.windowSeconds) + "s", to: "now" };
      if (a.campaign) q.filter = { dim: "utm_campaign", value: a.campaign };
      return SD.query(q).then(function (r) { return r.value; }, function () { return null; });
    }));
  }

  function stateOf(a, v) {
    if (skipped(a)) return "off";
    if (a.firing) return "firing";
    if (v == null) return "ok";
    var m = Math.abs(a.threshold) * NEAR;
    return (a.above ? v >= a.threshold - m : v <= a.threshold + m) ? "near" : "ok";
  }

  function describe(a) {
    var k = KPIS[a.kpi] ? KPIS[a.kpi][0] : a.kpi;
    return k + " over " + F.dur(a.windowSeconds) + (a.campaign ? " (campaign " + a.campaign + ")" : "") +
      (a.above ? " above " : " below ") + fmtKpi(a.kpi, a.threshold) +
      (a.clear !== a.threshold ? ", clears at " + fmtKpi(a.kpi, a.clear) : "");
  }

  function load() {
    return SD.api("/v1/rules").then(function (d) {
      return values(d.alerts).then(function (v) { return { d: d, v: v }; });
    });
  }

  // The Overview's tiles: unscoped alerts only (the tiles are the whole shop's), the worst
  // state when several watch one KPI.
  function publish(x) {
    var map = {};
    x.d.alerts.forEach(function (a, i) {
      var s = stateOf(a, x.v[i]), cur = map[a.kpi];
      if (s === "off" || a.campaign || (cur && RANK[cur.state] >= RANK[s])) return;
      map[a.kpi] = { state: s, title: "Alert " + a.name + ": " + describe(a) + ". " + STATE_TEXT[s] +
        (x.v[i] != null ? ", now " + fmtKpi(a.kpi, x.v[i]) : "") + "." };
    });
    SD.setKpiAlerts(map);
  }

  // ---- the view ----

  function stat(id, label) {
    var t = { value: el("div", { class: "value", id: "rs-" + id, text: "–" }), sub: el("div", { class: "sub" }) };
    t.node = el("div", { class: "card stat" }, [el("div", { class: "label", text: label }), t.value, t.sub]);
    return t;
  }

  function showStats(s) {
    var t = st.stats;
    t.events.value.textContent = F.compact(s.events);
    t.events.sub.textContent = "events the rules saw";
    t.actions.value.textContent = F.compact(s.actions);
    t.actions.sub.textContent = F.int(s.suppressed) + " suppressed (rules off)";
    t.skipped.value.textContent = F.compact(s.skippedConsent + s.skippedCap + s.skippedLimit);
    t.skipped.sub.textContent = "consent " + F.int(s.skippedConsent) + " · cap " + F.int(s.skippedCap) + " · limit " + F.int(s.skippedLimit);
    t.timers.value.textContent = F.compact(s.timersArmed);
    t.timers.sub.textContent = F.int(s.timersFired) + " fired · " + F.int(s.timersCancelled) + " cancelled";
    t.users.value.textContent = F.compact(s.users);
    t.users.sub.textContent = "with rule state";
    t.memory.value.textContent = F.bytes(s.memoryBytes);
    t.memory.sub.textContent = "rule state in memory";
  }

  function ruleRow(r) {
    var row = { sw: el("button", { type: "button", class: "switch", role: "switch", "aria-label": "Rule " + r.name }),
      state: el("span", { class: "sw-text" }), fires: el("td", { class: "r num" }), last: el("td", {}) };
    row.sw.addEventListener("click", function () { toggle(r.name, row); });
    row.tip = el("span", { class: "sw-wrap" }, [row.sw, row.state]);
    row.tr = el("tr", { "data-rule": r.name }, [el("th", { scope: "row", class: "rule-name", text: r.name }), el("td", {}, [row.tip]), row.fires, row.last]);
    return row;
  }

  function toggle(name, row) {
    var on = row.sw.getAttribute("aria-checked") !== "true";
    row.busy = row.sw.disabled = true;
    st.gen++;
    put("/v1/rules/" + encodeURIComponent(name) + "/enabled", JSON.stringify({ enabled: on })).then(function () {
      if (!st) return;
      row.sw.setAttribute("aria-checked", on ? "true" : "false");
      row.state.textContent = on ? "On" : "Off";
      st.err.textContent = "";
    }, function (e) {
      if (st) st.err.textContent = "Could not switch " + name + ": " + e.message;
    }).then(function () {
      row.busy = false;
      if (st) row.sw.disabled = !st.admin;
    });
  }

  function showRules(rules, admin, now, stale) {
    var seen = {}, off = 0;
    rules.forEach(function (r) { if (!r.enabled) off++; });
    rules.slice(0, MAX_RULES).forEach(function (r) {
      var row = st.rows[r.name];
      if (!row) row = st.rows[r.name] = ruleRow(r);
      seen[r.name] = true;
      st.tbody.appendChild(row.tr);
      if (!row.busy && !stale) {
        row.sw.setAttribute("aria-checked", r.enabled ? "true" : "false");
        row.state.textContent = r.enabled ? "On" : "Off";
        row.sw.disabled = !admin;
      }
      if (admin) row.tip.removeAttribute("title");
      else row.tip.setAttribute("title", NEEDS_ADMIN);
      var fires = F.int(r.fires);
      if (row.fires.textContent && row.fires.textContent !== fires) {
        row.fires.classList.remove("bump");
        void row.fires.offsetWidth;
        row.fires.classList.add("bump");
      }
      row.fires.textContent = fires;
      row.last.textContent = ago(r.lastFire, now);
      row.last.title = r.lastFire ? new Date(r.lastFire).toLocaleString() : "";
    });
    Object.keys(st.rows).forEach(function (n) {
      if (!seen[n]) { st.tbody.removeChild(st.rows[n].tr); delete st.rows[n]; }
    });
    st.rulesNote.textContent = rules.length ? count(rules.length, "rule") + " · " + F.int(off) + " off" +
      (rules.length > MAX_RULES ? " · first " + F.int(MAX_RULES) + " shown" : "") : "";
    st.rulesEmpty.hidden = rules.length > 0;
    st.table.hidden = !rules.length;
  }

  // The alert's states over the span its history covers (at least 15 minutes), red where
  // it was firing.
  function timeline(a, now) {
    var h = a.history.slice().reverse(), from = Math.min(now - 900000, h.length ? Date.parse(h[0].t) - 60000 : now);
    var svg = SD.svg("svg", { class: "timeline", viewBox: "0 0 1000 14", preserveAspectRatio: "none", "aria-hidden": "true" });
    var x = function (t) { return Math.max(0, Math.min(1000, (t - from) / (now - from) * 1000)); };
    var t0 = from, firing = h.length ? h[0].state !== "firing" : a.firing;
    h.concat([{ t: new Date(now).toISOString(), state: null }]).forEach(function (p) {
      var t1 = Date.parse(p.t);
      // a firing span stays visible however short it is against the whole
      var w = Math.max(firing ? 6 : 0, x(t1) - x(t0));
      svg.appendChild(SD.svg("rect", { x: Math.min(x(t0), 1000 - w), y: 0, width: w, height: 14, class: firing ? "tl-firing" : "tl-ok" }));
      t0 = t1;
      firing = p.state === "firing";
    });
    return el("div", { class: "tl" }, [svg, el("div", { class: "tl-axis", "aria-hidden": "true" }, [
      el("span", { text: F.time(from) }), el("span", { text: "now" })])]);
  }

  function alertCard(a, v, now) {
    var s = stateOf(a, v), why = skipped(a);
    var hist = a.history.slice(0, 6).map(function (h) {
      return el("li", { class: "is-" + h.state }, [el("time", { datetime: h.t, text: F.time(Date.parse(h.t)) }),
        el("span", { text: (h.state === "firing" ? "fired at " : "resolved at ") + fmtKpi(a.kpi, h.value) })]);
    });
    return el("article", { class: "card alert-card is-" + s, "data-alert": a.name, "data-state": s }, [
      el("div", { class: "alert-head" }, [el("span", { class: "badge is-" + s, text: STATE_TEXT[s] }), el("h3", { text: a.name })]),
      el("p", { class: "alert-desc", text: describe(a) + (a.webhook ? " · webhook " + a.webhook : "") }),
      el("div", { class: "alert-val" }, [el("span", { class: "big num", text: why ? "–" : fmtKpi(a.kpi, v) }),
        el("span", { class: "muted", text: why || (v == null ? "no value for this scope" : "now, threshold " + fmtKpi(a.kpi, a.threshold)) })]),
      timeline(a, now),
      hist.length ? el("ol", { class: "hist", "aria-label": "Last transitions, newest first" }, hist) : el("p", { class: "empty", text: "No transitions since start." })]);
  }

  function show(x) {
    if (!st) return;
    var d = x.d, now = Date.now();
    st.admin = !!d.adminKey;
    st.who.textContent = st.admin ? "Admin key: you can switch rules and upload files" : "Read key: view only";
    st.who.className = "pill" + (st.admin ? " order" : "");
    showStats(d.stats);
    showRules(d.rules, st.admin, now, x.stale);
    st.alerts.textContent = "";
    d.alerts.slice(0, MAX_ALERTS).forEach(function (a, i) { st.alerts.appendChild(alertCard(a, x.v[i], now)); });
    var firing = d.alerts.filter(function (a) { return a.firing; }).length;
    st.alertsNote.textContent = d.alerts.length ? count(d.alerts.length, "alert") + " · " + F.int(firing) + " firing" +
      (d.alerts.length > MAX_ALERTS ? " · first " + F.int(MAX_ALERTS) + " shown" : "") : "";
    if (!d.alerts.length) st.alerts.appendChild(el("p", { class: "empty", text: "No alerts in the rules files." }));
    st.apply.disabled = !st.admin || !!st.uploading;
    if (st.admin) st.editTip.removeAttribute("title");
    else st.editTip.setAttribute("title", NEEDS_ADMIN);
    st.err.textContent = "";
    publish(x);
  }

  // A poll that started before a switch was flipped does not set the switches back.
  function poll() {
    if (!st) return;
    var gen = st.gen;
    load().then(function (x) {
      x.stale = !st || st.gen !== gen;
      show(x);
    }, function (e) { if (st && !e.auth) st.err.textContent = "Could not load: " + e.message; });
  }

  // "DIR/file:line:col: ..." from the server: shown without the directory, and that line
  // selected in the editor.
  function showUploadError(msg) {
    msg = msg.replace(/^[^:]*\//, "");
    st.editMsg.className = "error";
    st.editMsg.textContent = msg;
    var m = /^[^:]*:(\d+):(\d+):/.exec(msg), text = st.text.value;
    if (!m) return;
    var start = 0;
    for (var line = 1; line < +m[1] && start >= 0; line++) start = text.indexOf("\n", start) + 1;
    if (start < 0) return;
    var end = text.indexOf("\n", start);
    st.text.focus();
    st.text.setSelectionRange(start, end < 0 ? text.length : end);
  }

  function upload(ev) {
    ev.preventDefault();
    var name = st.file.value.trim();
    st.apply.disabled = st.uploading = true;
    st.editMsg.className = "muted";
    st.editMsg.textContent = "Checking…";
    put("/v1/rules?file=" + encodeURIComponent(name), st.text.value).then(function (r) {
      if (!st) return;
      st.editMsg.className = "ok";
      st.editMsg.textContent = "Applied " + name + ": " + F.int(r.rules) + " rules, " + F.int(r.alerts) + " alerts, " + F.int(r.webhooks) + " webhooks now loaded.";
      poll();
    }, function (e) { if (st) showUploadError(e.message); }).then(function () {
      if (!st) return;
      st.uploading = false;
      st.apply.disabled = !st.admin;
    });
  }

  function editor() {
    st.file = el("input", { type: "text", id: "rules-file", value: "dashboard.rules", spellcheck: "false" });
    st.text = el("textarea", { id: "rules-text", rows: "9", spellcheck: "false",
      placeholder: "rule \"welcome\" {\n  on track \"Signed Up\"\n  do offer \"welcome\" { percent: 10 }\n}" });
    st.apply = el("button", { type: "submit", class: "btn btn-primary", id: "rules-apply", text: "Check & apply", disabled: true });
    st.editTip = el("span", { title: NEEDS_ADMIN }, [st.apply]);
    st.editMsg = el("p", { id: "rules-msg", role: "status" });
    return el("details", { class: "card editor" }, [el("summary", { text: "Upload a rules file" }),
      el("form", { onsubmit: upload }, [
        el("p", { class: "muted", text: "The file is compiled first: nothing is written and the running rules stay unless it is valid. Same name replaces that file." }),
        el("label", { for: "rules-file", text: "File name" }), st.file,
        el("label", { for: "rules-text", text: "Rules" }), st.text,
        el("div", { class: "editor-foot" }, [st.editTip, st.editMsg])])]);
  }

  function mount(main) {
    st = { rows: {}, admin: false, gen: 0 };
    st.err = el("p", { class: "error", role: "alert" });
    st.who = el("span", { class: "pill", id: "rules-key" });
    st.stats = { events: stat("events", "Events"), actions: stat("actions", "Actions"), skipped: stat("skipped", "Skipped"),
      timers: stat("timers", "Timers armed"), users: stat("users", "Users"), memory: stat("memory", "Memory") };
    st.tbody = el("tbody");
    st.table = el("table", { class: "rules-table", id: "rules-table" }, [el("thead", {}, [el("tr", {}, [
      el("th", { text: "Rule" }), el("th", { text: "On / off" }), el("th", { class: "r", text: "Fires" }), el("th", { text: "Last fire" })])]), st.tbody]);
    st.rulesEmpty = el("p", { class: "empty", text: "No rules loaded. Rules live in the files of --rules-dir (docs/RULES.md); with one set, upload a file here.", hidden: true });
    st.rulesNote = el("span", { class: "muted" });
    st.alertsNote = el("span", { class: "muted" });
    st.alerts = el("div", { class: "alerts", id: "alerts", "aria-live": "polite" });
    var s = st.stats;
    main.appendChild(el("div", { class: "head" }, [el("div", {}, [el("h1", { text: "Rules & alerts" }),
      el("p", { text: "What the rules engine decides, live. Refreshed when events arrive, at least every 2 seconds." })]), st.who]));
    main.appendChild(st.err);
    main.appendChild(el("section", { class: "grid now", "aria-label": "Engine" }, [s.events.node, s.actions.node, s.skipped.node, s.timers.node, s.users.node, s.memory.node]));
    main.appendChild(el("div", { class: "grid two rules-grid" }, [
      el("div", { class: "grid" }, [el("section", { class: "card", "aria-label": "Rules" }, [el("div", { class: "card-head" }, [el("h2", { text: "Rules" }), st.rulesNote]),
        el("div", { class: "scroll" }, [st.table]), st.rulesEmpty]), editor()]),
      el("section", { "aria-label": "Alerts" }, [el("div", { class: "card-head" }, [el("h2", { text: "Alerts" }), st.alertsNote]), st.alerts])]));
    st.timer = setInterval(poll, 2000);
    st.unlive = SD.live(function (f) {
      if (!st || !f.events || st.soon) return;
      st.soon = setTimeout(function () { if (st) { st.soon = null; poll(); } }, 300);
    });
    poll();
  }

  function unmount() {
    if (!st) return;
    clearInterval(st.timer);
    clearTimeout(st.soon);
    st.unlive();
    st = null;
  }

  // The Overview's tiles follow the alerts while this view is not open.
  setInterval(function () {
    if (st || !SD.key() || !document.querySelector(".kpi")) return;
    load().then(publish, function () {});
  }, 5000);

  SD.view({ id: "rules", title: "Rules & alerts", order: 40, mount: mount, unmount: unmount });
})();
