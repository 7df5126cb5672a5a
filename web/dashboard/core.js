// sluice dashboard core: the read key (login screen, sessionStorage or localStorage, sent
// as Bearer), the API client, formatting, the shared live stream, and the view registry.
// Each view is a module that calls SD.view({id, title, order, mount, unmount}); the
// navigation lists the registered views only, so a view whose API is not in this build
// (funnels, retention) is simply absent. Plain ES5-style scripts, no framework:
// scripts/embed.py strips comment lines and indentation, so comments stay on lines of
// their own and template literals are not used.
(function () {
  "use strict";
  var SD = window.SD = { views: [] };
  var KEY = "sluice_read_key";
  var current = null, liveSrc = null, liveSubs = [], liveLast = null;

  // ---- DOM ----

  // el("div", {class: "x", text: "hi", onclick: fn, "aria-label": "..."}, [children])
  SD.el = function (tag, attrs, kids) {
    var e = document.createElement(tag);
    setAttrs(e, attrs);
    (kids || []).forEach(function (k) {
      if (k != null) e.appendChild(typeof k === "string" ? document.createTextNode(k) : k);
    });
    return e;
  };
  SD.svg = function (tag, attrs) {
    var e = document.createElementNS("http://www.w3.org/2000/svg", tag);
    setAttrs(e, attrs);
    return e;
  };
  function setAttrs(e, attrs) {
    Object.keys(attrs || {}).forEach(function (k) {
      var v = attrs[k];
      if (v == null || v === false) return;
      if (k === "text") e.textContent = v;
      else if (k.slice(0, 2) === "on") e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, v === true ? "" : v);
    });
  }
  SD.$ = function (sel, root) { return (root || document).querySelector(sel); };

  // ---- formatting ----

  var nf0 = new Intl.NumberFormat(undefined, { maximumFractionDigits: 0 });
  var nf1 = new Intl.NumberFormat(undefined, { maximumFractionDigits: 1 });
  var nf2 = new Intl.NumberFormat(undefined, { minimumFractionDigits: 2, maximumFractionDigits: 2 });
  SD.fmt = {
    int: function (v) { return v == null ? "–" : nf0.format(v); },
    dec: function (v) { return v == null ? "–" : nf1.format(v); },
    money: function (v) { return v == null ? "–" : nf2.format(v); },
    pct: function (v) { return v == null ? "–" : nf1.format(v * 100) + "%"; },
    compact: function (v) {
      if (v == null) return "–";
      var a = Math.abs(v);
      if (a >= 1e9) return nf1.format(v / 1e9) + "B";
      if (a >= 1e6) return nf1.format(v / 1e6) + "M";
      if (a >= 1e4) return nf1.format(v / 1e3) + "k";
      return a < 10 && v !== Math.round(v) ? nf1.format(v) : nf0.format(v);
    },
    bytes: function (v) {
      if (v == null) return "–";
      var u = ["B", "KB", "MB", "GB", "TB"], i = 0;
      while (v >= 1024 && i < u.length - 1) { v /= 1024; i++; }
      return nf1.format(v) + " " + u[i];
    },
    ms: function (s) {
      if (s == null) return "–";
      return s < 0.001 ? nf0.format(s * 1e6) + " µs" : nf1.format(s * 1000) + " ms";
    },
    dur: function (s) {
      if (s === 86400) return "1 day";
      if (s < 60) return nf0.format(s) + " s";
      if (s < 3600) return nf0.format(s / 60) + " min";
      if (s < 86400) return nf1.format(s / 3600) + " h";
      return nf0.format(s / 86400) + " days";
    },
    time: function (t) {
      return new Date(t).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
    },
    // A timestamp for a chart axis or tooltip, as fine as the bucket size (ms).
    at: function (t, step) {
      var d = new Date(t);
      if (step >= 86400000) return d.toLocaleDateString([], { month: "short", day: "numeric" });
      if (step >= 3600000) return d.toLocaleString([], { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" });
      if (step >= 60000) return d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
      return SD.fmt.time(t);
    },
    // A short axis label: the time of day within a day's span, the date beyond.
    tick: function (t, step, span) {
      var d = new Date(t);
      if (step >= 86400000 || span > 3 * 86400000) return d.toLocaleDateString([], { month: "short", day: "numeric" });
      if (step >= 60000) return d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
      return SD.fmt.time(t);
    },
    // "+12.5%" from the previous period's value, or "" when there is nothing to compare.
    delta: function (now, before) {
      if (now == null || before == null || before === 0) return "";
      var d = (now - before) / Math.abs(before);
      return (d >= 0 ? "+" : "−") + nf1.format(Math.abs(d) * 100) + "%";
    }
  };

  // Display names of dimension values sluice stores.
  SD.dims = [
    ["event", "Event"], ["page_path", "Page"], ["utm_source", "Source (utm)"], ["utm_medium", "Medium (utm)"],
    ["utm_campaign", "Campaign (utm)"], ["referrer_class", "Referrer class"], ["country", "Country"],
    ["device_type", "Device"], ["browser", "Browser"]];
  SD.label = function (v) {
    if (v === "$page") return "Page view";
    if (v === "$screen") return "Screen view";
    if (v === "$identify") return "Identify";
    if (v === "$group") return "Group";
    if (v === "$alias") return "Alias";
    return v;
  };

  // ---- time ----

  SD.startOfToday = function () {
    var d = new Date();
    d.setHours(0, 0, 0, 0);
    return d.getTime();
  };

  // The finest granularity that keeps a span (ms) under the API's 1000 points; "day"
  // is summed here from hours.
  SD.granFor = function (span, from) {
    if (span <= 600000 && from >= Date.now() - 3500000) return "second";
    if (span <= 16 * 3600000) return "minute";
    if (span <= 41 * 86400000) return "hour";
    return "day";
  };
  SD.step = { second: 1000, minute: 60000, hour: 3600000, day: 86400000 };

  // ---- API ----

  SD.key = function () { return sessionStorage.getItem(KEY) || localStorage.getItem(KEY) || ""; };

  function authFailure(status, body) {
    if (status === 403) return "That is the write key. The dashboard needs the read key (or the admin key).";
    return "That key was not accepted. Check the read key printed by sluice serve.";
  }

  // fetch JSON with the key; a 401/403 signs out with a message and rejects.
  SD.api = function (path, body, key) {
    var opts = { headers: { Authorization: "Bearer " + (key || SD.key()) }, cache: "no-store" };
    if (body) {
      opts.method = "POST";
      opts.body = JSON.stringify(body);
      opts.headers["Content-Type"] = "application/json";
    }
    return fetch(path, opts).then(function (r) {
      if (r.status === 401 || r.status === 403) {
        if (!key) SD.logout(authFailure(r.status));
        var e = new Error(authFailure(r.status));
        e.auth = true;
        throw e;
      }
      var text = r.headers.get("Content-Type") || "";
      return (text.indexOf("json") >= 0 ? r.json() : r.text()).then(function (v) {
        if (!r.ok) {
          var e = new Error((v && v.message) || ("HTTP " + r.status));
          e.status = r.status;
          e.code = v && v.error;
          e.retryAfter = parseInt(r.headers.get("Retry-After"), 10) || 1;
          throw e;
        }
        return v;
      });
    });
  };
  SD.query = function (q) { return SD.api("/v1/query", q); };

  // A query answered by a log scan: on 503 busy, wait the Retry-After seconds and ask
  // again (up to 20 times), telling onWait(seconds) each time; alive() false (a newer
  // query replaced it) stops it.
  // Scans from this tab run one at a time, so one view's queries do not crowd each other
  // out of the server's few scan slots.
  var scanQueue = Promise.resolve();
  SD.scan = function (q, onWait, alive) {
    var tries = 0, p = scanQueue.then(go, go);
    scanQueue = p.catch(function () {});
    return p;
    function go() {
      if (alive && !alive()) return Promise.reject(new Error("stale"));
      return SD.query(q).catch(function (e) {
        if (e.status !== 503 || e.code !== "busy" || ++tries > 20 || (alive && !alive())) throw e;
        if (onWait) onWait(e.retryAfter);
        return new Promise(function (ok) { setTimeout(ok, e.retryAfter * 1000); }).then(go);
      });
    }
    return go();
  };
  // What a failed scan means to a reader: 422 is a limit, not a fault.
  SD.scanError = function (e) {
    if (e.status === 422) return "This query would read more than the server allows for one scan (" + e.message + "). Pick a shorter range or a narrower filter.";
    if (e.status === 503) return "The server is busy with other scans; try again in a moment.";
    return "Could not load: " + e.message;
  };
  // The value of a KPI answer formatted by its "format".
  SD.fmtKpi = function (format, v) {
    return format === "percent" ? SD.fmt.pct(v) : format === "currency" ? SD.fmt.money(v) : SD.fmt.compact(v);
  };
  // "conversion_rate" -> "Conversion rate".
  SD.title = function (name) {
    var s = name.replace(/_/g, " ");
    return s.charAt(0).toUpperCase() + s.slice(1);
  };

  // Timeseries with "day" summed from hourly points (several requests when the range
  // holds more than 1000 hours). Resolves to [{t (ms), count, sum, uniques}].
  // run: how to ask (default SD.query; SD.scan's retrying form for log scans).
  SD.series = function (q, run) {
    run = run || SD.query;
    if (q.granularity !== "day") {
      return run(q).then(function (r) {
        return r.points.map(function (p) { return { t: Date.parse(p.t), count: p.count, sum: p.sum, uniques: p.uniques }; });
      });
    }
    var chunks = [], from = q.from, H = 3600000;
    while (from < q.to) {
      var to = Math.min(q.to, from + 990 * H);
      chunks.push(run(Object.assign({}, q, { from: from, to: to, granularity: "hour" })));
      from = to;
    }
    return Promise.all(chunks).then(function (rs) {
      var days = {}, order = [];
      rs.forEach(function (r) {
        r.points.forEach(function (p) {
          var d = new Date(Date.parse(p.t));
          d.setHours(0, 0, 0, 0);
          var k = d.getTime();
          if (!days[k]) { days[k] = { t: k, count: 0, sum: 0, uniques: null }; order.push(k); }
          days[k].count += p.count;
          days[k].sum += p.sum || 0;
        });
      });
      return order.map(function (k) { return days[k]; });
    });
  };

  // ---- KPI alert states: set by the rules module, read by the KPI tiles ----

  // SD.kpiAlerts maps a KPI name to {state: "firing" | "near" | "ok", title}.
  // SD.kpiState(kpi) is the tile class for it ("down", "warn", "up"), "" when no alert
  // watches that KPI. SD.setKpiAlerts(map) replaces the map. Either way the tiles on
  // screen (id "kpi-" + KPI name, class "kpi") get the class, a data-alert attribute and
  // a tooltip right after, so a view never waits for its own refresh.
  var KPI_CLASS = { firing: "down", near: "warn", ok: "up" }, kpiPaint = null, kpiOld = {};
  SD.kpiAlerts = {};
  SD.kpiState = function (kpi) {
    var a = SD.kpiAlerts[kpi];
    if (a && !kpiPaint) kpiPaint = setTimeout(paintKpis, 0);
    return a ? KPI_CLASS[a.state] || "" : "";
  };
  SD.setKpiAlerts = function (map) {
    SD.kpiAlerts = map;
    paintKpis();
  };
  function paintKpis() {
    var map = SD.kpiAlerts;
    kpiPaint = null;
    Object.keys(kpiOld).concat(Object.keys(map)).forEach(function (k) {
      var t = document.getElementById("kpi-" + k), a = map[k];
      if (!t || !t.classList.contains("kpi")) return;
      t.classList.remove("up", "down", "warn");
      if (a) t.classList.add(KPI_CLASS[a.state]);
      if (a) t.setAttribute("data-alert", a.state);
      else t.removeAttribute("data-alert");
      if (a) t.setAttribute("title", a.title);
      else t.removeAttribute("title");
    });
    kpiOld = map;
  }

  // ---- live stream: one EventSource shared by every view ----

  SD.live = function (fn) {
    liveSubs.push(fn);
    if (liveLast) fn(liveLast);
    return function () { liveSubs = liveSubs.filter(function (f) { return f !== fn; }); };
  };
  function startLive() {
    if (liveSrc) return;
    var conn = SD.$("#conn");
    liveSrc = new EventSource("/v1/live?key=" + encodeURIComponent(SD.key()));
    liveSrc.onopen = function () { conn.textContent = "Live"; conn.classList.add("on"); };
    liveSrc.onerror = function () { conn.textContent = "Reconnecting…"; conn.classList.remove("on"); };
    liveSrc.onmessage = function (m) {
      var f;
      try { f = JSON.parse(m.data); } catch (e) { return; }
      liveLast = f;
      conn.textContent = "Live";
      conn.classList.add("on");
      liveSubs.forEach(function (fn) { fn(f); });
    };
  }
  function stopLive() {
    if (liveSrc) liveSrc.close();
    liveSrc = null;
    liveLast = null;
  }

  // ---- views and routing ----

  SD.view = function (v) {
    SD.views.push(v);
    SD.views.sort(function (a, b) { return a.order - b.order; });
  };

  function buildNav() {
    var nav = SD.$("#nav");
    nav.textContent = "";
    SD.views.forEach(function (v) {
      nav.appendChild(SD.el("a", { href: "#/" + v.id, id: "nav-" + v.id, text: v.title }));
    });
  }

  function route() {
    if (SD.$("#app").hidden) return;
    var id = (location.hash.replace("#/", "") || "overview").split("?")[0];
    var v = SD.views.filter(function (x) { return x.id === id; })[0] || SD.views[0];
    if (current && current.unmount) current.unmount();
    current = v;
    var main = SD.$("#main");
    main.textContent = "";
    Array.prototype.forEach.call(document.querySelectorAll("#nav a"), function (a) {
      if (a.id === "nav-" + v.id) a.setAttribute("aria-current", "page");
      else a.removeAttribute("aria-current");
    });
    document.title = v.title + " · sluice";
    v.mount(main);
  }

  // ---- sign in / out ----

  function showLogin(msg) {
    SD.$("#app").hidden = true;
    SD.$("#login").hidden = false;
    var m = SD.$("#login-msg");
    m.hidden = !msg;
    m.textContent = msg || "";
    SD.$("#login-key").focus();
  }

  SD.logout = function (msg) {
    if (current && current.unmount) current.unmount();
    current = null;
    stopLive();
    SD.kpiAlerts = {};
    sessionStorage.removeItem(KEY);
    localStorage.removeItem(KEY);
    showLogin(msg);
  };

  function showApp() {
    SD.$("#login").hidden = true;
    SD.$("#app").hidden = false;
    buildNav();
    startLive();
    SD.api("/version").then(function (v) {
      SD.version = v;
      SD.$("#foot-version").textContent = "sluice " + v.version + ".";
      SD.$("#foot-geo").textContent = v.geoDatabase ? "Location data: " + v.geoDatabase : "";
    }).catch(function () {});
    route();
  }

  // The key is checked with a cheap query before it is kept.
  function signIn(ev) {
    ev.preventDefault();
    var key = SD.$("#login-key").value.trim(), btn = SD.$("#login-submit");
    if (!key) { showLogin("Enter the read key."); return; }
    btn.disabled = true;
    SD.api("/v1/query", { type: "kpi", kpi: "events", from: "-1m" }, key).then(function () {
      (SD.$("#login-remember").checked ? localStorage : sessionStorage).setItem(KEY, key);
      SD.$("#login-key").value = "";
      showApp();
    }, function (e) {
      showLogin(e.auth ? e.message : "Cannot reach sluice: " + e.message);
    }).then(function () { btn.disabled = false; });
  }

  document.addEventListener("DOMContentLoaded", function () {
    SD.$("#login-form").addEventListener("submit", signIn);
    SD.$("#logout").addEventListener("click", function () { SD.logout("Signed out."); });
    window.addEventListener("hashchange", function () {
      route();
      SD.$("#main").focus({ preventScroll: true });
    });
    if (!SD.key()) { showLogin(); return; }
    SD.api("/v1/query", { type: "kpi", kpi: "events", from: "-1m" }).then(showApp, function (e) {
      if (!e.auth) showLogin("Cannot reach sluice: " + e.message);
    });
  });
})();
