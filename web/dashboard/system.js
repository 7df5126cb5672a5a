// System: ingestion, the log, processing lag, fsync and acknowledgement latency, disk,
// the act stage (webhook deliveries, retries, dead letters, outbox, offers) and health, from /metrics (Prometheus text, parsed here), the live stream, /version (with
// the geo database's credit line) and /healthz and /readyz. Polled every 2 seconds.
(function () {
  "use strict";
  var SD = window.SD, el = SD.el, F = SD.fmt;
  var st = null;

  // Prometheus text -> {name: [{labels: {...}, value}]}.
  function parse(text) {
    var out = {};
    text.split("\n").forEach(function (line) {
      if (!line || line.charAt(0) === "#") return;
      var sp = line.lastIndexOf(" "), key = line.slice(0, sp), v = parseFloat(line.slice(sp + 1));
      var br = key.indexOf("{"), name = br < 0 ? key : key.slice(0, br), labels = {};
      if (br >= 0) key.slice(br + 1, -1).split(",").forEach(function (kv) {
        var eq = kv.indexOf("=");
        if (eq > 0) labels[kv.slice(0, eq)] = kv.slice(eq + 2, -1);
      });
      (out[name] = out[name] || []).push({ labels: labels, value: v });
    });
    return out;
  }
  function one(m, name) { return m[name] && m[name].length ? m[name][0].value : null; }
  function sum(m, name) { return (m[name] || []).reduce(function (a, x) { return a + x.value; }, 0); }

  // The q quantile (an upper bound: a bucket's le) of a cumulative histogram, from the
  // change of its buckets since the previous sample when there were observations in
  // between (recent latency), else since start.
  function quantile(m, prevM, name, q) {
    var cur = m[name + "_bucket"] || [], old = prevM && prevM[name + "_bucket"];
    if (old && old.length === cur.length && cur.length && cur[cur.length - 1].value === old[old.length - 1].value) old = null;
    var b = cur.map(function (x, i) {
      return { le: x.labels.le === "+Inf" ? Infinity : parseFloat(x.labels.le), n: x.value - (old ? old[i].value : 0) };
    });
    var total = b.length ? b[b.length - 1].n : 0;
    if (!total) return null;
    for (var i = 0; i < b.length; i++) if (b[i].n >= q * total) return b[i].le === Infinity ? b[i - 1].le : b[i].le;
    return null;
  }

  function stat(id, label) {
    var t = { value: el("div", { class: "value", id: "sys-" + id, text: "–" }), sub: el("div", { class: "sub" }), spark: SD.chart.sparkNode(), hist: [] };
    t.node = el("div", { class: "card stat" }, [el("div", { class: "label", text: label }), t.value, t.sub, t.spark]);
    return t;
  }
  function set(t, v, text, sub) {
    t.value.textContent = text;
    t.sub.textContent = sub || "";
    if (v != null) {
      t.hist.push(v);
      if (t.hist.length > 60) t.hist.shift();
      SD.chart.spark(t.spark, t.hist);
    }
  }

  function poll() {
    if (!st) return;
    var now = Date.now();
    Promise.all([SD.api("/metrics"), fetch("/healthz").then(function (r) { return r.ok; }),
      fetch("/readyz").then(function (r) { return r.json(); })]).then(function (a) {
      if (!st) return;
      var m = parse(a[0]), p = st.prev, dt = p ? (now - st.prevT) / 1000 : 0, s = st.s;
      var acc = one(m, "sluice_events_accepted_total");
      var rate = p && dt > 0 ? Math.max(0, acc - one(p, "sluice_events_accepted_total")) / dt : null;
      set(s.ingest, rate, rate == null ? "…" : F.dec(rate) + "/s", F.int(acc) + " events stored since start");
      set(s.log, one(m, "sluice_log_disk_bytes"), F.bytes(one(m, "sluice_log_disk_bytes")), "queue " + F.bytes(one(m, "sluice_log_queue_bytes")) + " · next offset " + F.int(one(m, "sluice_log_end_offset")));
      var lag = st.frame ? st.frame.lag : null;
      set(s.lag, lag, lag == null ? "…" : F.int(lag) + " events", st.frame ? "processed up to offset " + F.int(st.frame.offset) : "");
      var f50 = quantile(m, p, "sluice_log_fsync_seconds", 0.5), f99 = quantile(m, p, "sluice_log_fsync_seconds", 0.99);
      set(s.fsync, f99, f99 == null ? "no fsync yet" : "≤ " + F.ms(f99), f50 == null ? "" : "p99 · p50 ≤ " + F.ms(f50));
      var a50 = quantile(m, p, "sluice_ack_latency_seconds", 0.5), a99 = quantile(m, p, "sluice_ack_latency_seconds", 0.99);
      set(s.ack, a99, a99 == null ? "no writes yet" : "≤ " + F.ms(a99), a50 == null ? "" : "p99 · p50 ≤ " + F.ms(a50));
      set(s.disk, one(m, "sluice_data_dir_free_bytes"), F.bytes(one(m, "sluice_data_dir_free_bytes")), "free on the data directory's disk");
      set(s.conn, one(m, "sluice_http_connections"), F.int(one(m, "sluice_http_connections")), "open HTTP connections");
      var rej = sum(m, "sluice_events_rejected_total"), dup = one(m, "sluice_events_duplicate_total"), failed = one(m, "sluice_events_failed_total");
      set(s.rejected, rej, F.int(rej), F.int(dup) + " duplicates ignored · " + F.int(failed) + " failed");
      act(m, p, dt);
      var ready = a[2] && a[2].ready, err = one(m, "sluice_log_error");
      st.health.textContent = "";
      [["Health", a[1] ? "OK" : "failing", a[1]], ["Ready", ready ? "yes" : "no: " + (a[2].reason || "unknown"), ready],
        ["Log", err ? "failed: restart needed" : "OK", !err], ["Uptime", F.dur(one(m, "sluice_uptime_seconds") || 0), true],
        ["Requests", F.int(sum(m, "sluice_http_requests_total")) + " answered", true]].forEach(function (r) {
        st.health.appendChild(el("dt", { text: r[0] }));
        st.health.appendChild(el("dd", { class: r[2] ? "ok" : "error", text: r[1] }));
      });
      st.prev = m;
      st.prevT = now;
      st.err.textContent = "";
    }).catch(function (e) {
      if (st && !e.auth) st.err.textContent = "Could not read the metrics: " + e.message;
    });
  }

  // The act stage: webhook deliveries (per second since the previous sample), retries,
  // dead letters, the outbox, and offers published to visitors' streams.
  function act(m, p, dt) {
    var w = st.w, rate = function (name) { return p && dt > 0 ? Math.max(0, one(m, name) - one(p, name)) / dt : null; };
    var del = one(m, "sluice_webhook_delivered_total");
    if (del == null) { st.actBox.hidden = true; return; }
    st.actBox.hidden = false;
    var r = rate("sluice_webhook_delivered_total");
    set(w.delivered, r, F.int(del), r == null ? "delivered since start" : F.dec(r) + "/s now · delivered since start");
    set(w.retries, one(m, "sluice_webhook_retries_total"), F.int(one(m, "sluice_webhook_retries_total")), "failed attempts scheduled again");
    var dead = one(m, "sluice_webhook_dead_letters");
    set(w.dead, dead, F.int(dead), F.int(one(m, "sluice_webhook_dead_letters_total")) + " since start · " + F.int(one(m, "sluice_webhook_refused_total")) + " refused (outbox full)");
    w.dead.node.classList.toggle("warn", dead > 0);
    set(w.outbox, one(m, "sluice_webhook_outbox_depth"), F.int(one(m, "sluice_webhook_outbox_depth")), F.int(one(m, "sluice_webhook_in_flight")) + " requests in flight");
    set(w.offers, one(m, "sluice_offers_published_total"), F.int(one(m, "sluice_offers_published_total")),
      F.int(one(m, "sluice_offers_stale_total")) + " skipped (decided too long ago) · " + F.int(one(m, "sluice_offers_refused_total")) + " streams refused");
    set(w.actions, one(m, "sluice_actions_emitted_total"), F.int(one(m, "sluice_actions_emitted_total")),
      F.int(one(m, "sluice_actions_failed_total")) + " refused by a sink · " + F.int(one(m, "sluice_actions_no_consent_total")) + " without consent");
  }

  function showVersion(v) {
    if (!st || !v) return;
    st.version.textContent = "";
    [["Version", "sluice " + v.version], ["Geo database", v.geoDatabase || "none configured (events get no location)"]].forEach(function (r) {
      st.version.appendChild(el("dt", { text: r[0] }));
      st.version.appendChild(el("dd", { id: r[0] === "Version" ? "sys-version" : "sys-geo", text: r[1] }));
    });
  }

  function mount(main) {
    st = {};
    var s = st.s = { ingest: stat("ingest", "Ingest rate"), log: stat("log", "Log on disk"), lag: stat("lag", "Processing lag"),
      fsync: stat("fsync", "fsync latency"), ack: stat("ack", "Ack latency"), disk: stat("disk", "Disk free"),
      conn: stat("conn", "Connections"), rejected: stat("rejected", "Rejected events") };
    var w = st.w = { delivered: stat("wh-delivered", "Webhooks delivered"), retries: stat("wh-retries", "Webhook retries"),
      dead: stat("wh-dead", "Dead letters"), outbox: stat("wh-outbox", "Outbox depth"), offers: stat("offers", "Offers published"),
      actions: stat("actions", "Events emitted by actions") };
    st.actBox = el("section", { "aria-label": "Actions" }, [el("h2", { text: "Actions and webhooks" }),
      el("div", { class: "grid sys act" }, Object.keys(w).map(function (k) { return w[k].node; }))]);
    st.err = el("p", { class: "error", role: "alert" });
    st.health = el("dl", { class: "kv", id: "sys-health" });
    st.version = el("dl", { class: "kv" });
    main.appendChild(el("div", { class: "head" }, [el("div", {}, [el("h1", { text: "System" }),
      el("p", { text: "Ingestion, storage and processing of this sluice instance." })])]));
    main.appendChild(st.err);
    main.appendChild(el("section", { class: "grid sys", "aria-label": "Figures" }, Object.keys(s).map(function (k) { return s[k].node; })));
    main.appendChild(st.actBox);
    main.appendChild(el("div", { class: "grid two" }, [el("section", { class: "card" }, [el("h2", { text: "Health" }), st.health]),
      el("section", { class: "card" }, [el("h2", { text: "About" }), st.version])]));
    st.unlive = SD.live(function (f) { if (st) st.frame = f; });
    if (SD.version) showVersion(SD.version);
    else SD.api("/version").then(showVersion).catch(function () {});
    st.timer = setInterval(poll, 2000);
    poll();
  }

  function unmount() {
    if (!st) return;
    clearInterval(st.timer);
    st.unlive();
    st = null;
  }

  SD.view({ id: "system", title: "System", order: 90, mount: mount, unmount: unmount });
})();
