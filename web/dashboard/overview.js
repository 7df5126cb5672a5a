// Overview: the Now strip (live counters with sparklines, every figure from /v1/live's
// once-a-second frame), KPI tiles for a chosen range compared with the
// period before, traffic over the range, and the top pages, events, campaigns, sources,
// referrer classes, countries, devices and browsers; products by properties.product_id.
(function () {
  "use strict";
  var SD = window.SD, el = SD.el, F = SD.fmt;
  var RANGES = [["today", "Today"], ["24h", "24 hours"], ["7d", "7 days"], ["30d", "30 days"]];
  var KPIS = [["revenue", "Revenue"], ["orders", "Orders"], ["conversion_rate", "Conversion rate"],
    ["aov", "Average order"], ["active_users", "Visitors"], ["events", "Events"], ["bounce_rate", "Bounce rate"]];
  // KPIs where a rise is bad news (coloured red).
  var LOWER_IS_BETTER = { bounce_rate: true };
  var TOPS = [["page_path", "Top pages"], ["product", "Top products"], ["event", "Top events"], ["utm_campaign", "Campaigns"], ["utm_source", "Sources"],
    ["referrer_class", "Referrers"], ["country", "Countries"], ["device_type", "Devices"], ["browser", "Browsers"]];
  var HISTORY = 90;

  var st = null;

  function range(id) {
    var now = Date.now(), from = id === "today" ? SD.startOfToday() : now - { "24h": 1, "7d": 7, "30d": 30 }[id] * 86400000;
    return { from: from, to: now };
  }

  function tile(id, label, teal, live) {
    var t = { value: el("div", { class: "value", id: "now-" + id, text: "–" }), sub: el("div", { class: "sub" }), spark: SD.chart.sparkNode(teal), hist: [] };
    t.node = el("div", { class: "card stat" + (live ? " live" : "") }, [el("div", { class: "label", text: label }), t.value, t.sub, t.spark]);
    return t;
  }
  function push(t, v) {
    t.hist.push(v);
    if (t.hist.length > HISTORY) t.hist.shift();
    SD.chart.spark(t.spark, t.hist);
  }

  // ---- Now ----

  // Every figure of the strip comes from the frame: today's totals are kept by the
  // process stage (since 00:00 UTC, by event time).
  function onFrame(f) {
    var n = st.now, online = f.visitorsOnline != null ? f.visitorsOnline : f.activeUsers;
    n.eps.value.textContent = F.dec(f.eventsPerSecond);
    n.eps.sub.textContent = F.int(f.events) + " in the last second";
    push(n.eps, f.eventsPerSecond);
    n.users.value.textContent = F.int(online);
    n.users.sub.textContent = "active in the last 5 minutes";
    push(n.users, online);
    if (f.sessionsToday == null) return;
    n.sessions.value.textContent = F.int(f.sessionsToday);
    n.sessions.sub.textContent = "started today (UTC)";
    push(n.sessions, f.sessionsToday);
    n.revenue.value.textContent = F.money(f.revenueToday);
    n.revenue.sub.textContent = "today · " + F.int(f.ordersToday) + " orders";
    push(n.revenue, f.revenue);
    n.orders.value.textContent = F.int(f.ordersToday);
    n.orders.sub.textContent = "today · AOV " + F.money(f.ordersToday ? f.revenueToday / f.ordersToday : null);
    push(n.orders, f.orders);
    n.conv.value.textContent = F.pct(f.conversionRateToday);
    n.conv.sub.textContent = "of sessions today";
    push(n.conv, f.conversionRateToday || 0);
    if (f.events > 0) soon();
  }

  // ---- the range: KPI tiles, traffic, top lists ----

  function loadKpis(r) {
    return Promise.all(KPIS.map(function (k) {
      return SD.query({ type: "kpi", kpi: k[0], from: r.from, to: r.to, compare: "previous" });
    })).then(function (a) {
      if (!st) return;
      st.kpiBox.textContent = "";
      KPIS.forEach(function (k, i) {
        var now = a[i].value, before = a[i].previous ? a[i].previous.value : null, d = F.delta(now, before);
        var good = now != null && before != null && now !== before && ((now > before) !== !!LOWER_IS_BETTER[k[0]]);
        var cls = d ? (good ? "up" : "down") : "";
        // A rules module may colour tiles by alert state instead: SD.kpiState(kpi, value)
        // returning "up" (fine) or "down" (alerting).
        if (SD.kpiState) cls = SD.kpiState(k[0], now) || cls;
        st.kpiBox.appendChild(el("div", { class: "card stat kpi " + cls, id: "kpi-" + k[0] }, [
          el("div", { class: "label", text: k[1] }),
          el("div", { class: "value", text: SD.fmtKpi(a[i].format, now) }),
          el("div", { class: "sub" }, [d ? el("span", { class: "delta " + cls, text: d }) : null, d ? " vs previous period" : "no previous period data"])]));
      });
    });
  }

  function loadTraffic(r) {
    var gran = SD.granFor(r.to - r.from, r.from);
    if (gran === "second") gran = "minute";
    return SD.series({ type: "timeseries", from: r.from, to: r.to, granularity: gran }).then(function (pts) {
      if (!st) return;
      st.traffic = { series: [{ name: "Events", values: pts.map(function (p) { return p.count; }), cls: "s0" },
        { name: "Visitors", values: pts.map(function (p) { return p.uniques; }), cls: "s2" }],
        times: pts.map(function (p) { return p.t; }), step: SD.step[gran], fmt: F.int, area: true, label: "Events and visitors per " + gran };
      st.rev = { series: [{ name: "Revenue", values: pts.map(function (p) { return p.sum; }), cls: "s0" }],
        times: st.traffic.times, step: SD.step[gran], fmt: F.money, area: true, label: "Revenue per " + gran };
      drawTraffic();
    });
  }
  function drawTraffic() {
    if (!st || !st.traffic || !st.traffic.times.length) return;
    SD.chart.line(st.trafficBox, st.traffic);
    SD.chart.line(st.revBox, st.rev);
  }

  function loadTops(r) {
    return Promise.all(TOPS.map(function (t) {
      return SD.query({ type: "topN", dimension: t[0], from: r.from, to: r.to, limit: 8 });
    })).then(function (a) {
      if (!st) return;
      TOPS.forEach(function (t, i) {
        var box = st.tops[t[0]];
        box.textContent = "";
        box.appendChild(SD.chart.bars(a[i].rows.map(function (row) { return { label: SD.label(row.value), n: row.count }; }), F.compact, t[1]));
      });
    });
  }

  function loadRange() {
    var r = range(st.range);
    return Promise.all([loadKpis(r), loadTraffic(r), loadTops(r)]);
  }

  // New events arrived: refresh the charts at most once a second, the KPI tiles and top
  // lists (15 queries) at most every 5 seconds, so an
  // open dashboard costs the server little while traffic flows.
  function soon() {
    if (!st || st.pending) return;
    st.pending = setTimeout(refresh, Math.max(100, 1000 - (Date.now() - st.lastLoad)));
  }
  function refresh() {
    if (!st) return;
    var r = range(st.range), now = Date.now(), all = now - st.lastFull >= 5000;
    st.pending = null;
    st.lastLoad = now;
    if (all) st.lastFull = now;
    Promise.all(all ? [loadKpis(r), loadTraffic(r), loadTops(r)] : [loadTraffic(r)]).catch(report);
    if (!all && !st.pendingFull) st.pendingFull = setTimeout(function () { if (st) { st.pendingFull = null; refresh(); } }, 5000 - (now - st.lastFull));
  }
  function report(e) {
    if (st && !e.auth) st.err.textContent = "Could not load: " + e.message;
  }

  function mount(main) {
    st = { range: "today", lastLoad: 0, lastFull: 0, tops: {} };
    st.err = el("p", { class: "error", role: "alert" });
    var n = st.now = {
      eps: tile("eps", "Events / sec", false, true), users: tile("users", "Visitors online", true, true),
      sessions: tile("sessions", "Sessions today"), revenue: tile("revenue", "Revenue today"),
      orders: tile("orders", "Orders today"), conv: tile("conv", "Conversion today", true)
    };
    var seg = el("div", { class: "seg", role: "group", "aria-label": "Range" }, RANGES.map(function (r) {
      return el("button", { type: "button", "aria-pressed": r[0] === st.range ? "true" : "false", "data-range": r[0], text: r[1], onclick: function (e) {
        st.range = r[0];
        Array.prototype.forEach.call(seg.children, function (b) { b.setAttribute("aria-pressed", b === e.currentTarget ? "true" : "false"); });
        loadRange().catch(report);
      } });
    }));
    st.kpiBox = el("div", { class: "grid kpis", "aria-live": "polite" });
    st.trafficBox = el("div", { class: "chart", id: "traffic-chart" });
    st.revBox = el("div", { class: "chart", id: "revenue-chart" });
    var tops = TOPS.map(function (t) {
      st.tops[t[0]] = el("div", { id: "top-" + t[0] });
      return el("section", { class: "card", "aria-label": t[1] }, [el("h2", { text: t[1] }), st.tops[t[0]]]);
    });
    main.appendChild(el("div", { class: "head" }, [el("div", {}, [el("h1", { text: "Overview" }),
      el("p", { text: "Live activity and how your shop is doing." })])]));
    main.appendChild(st.err);
    main.appendChild(el("section", { class: "grid now", "aria-label": "Now" }, [n.eps.node, n.users.node, n.sessions.node, n.revenue.node, n.orders.node, n.conv.node]));
    main.appendChild(el("div", { class: "head" }, [el("h2", { class: "inline" }, ["Performance ", el("a", { href: "#/kpis", class: "more", text: "All KPIs →" })]), seg]));
    main.appendChild(st.kpiBox);
    main.appendChild(el("div", { class: "grid two" }, [
      el("section", { class: "card", "aria-label": "Traffic" }, [el("h2", { text: "Traffic" }),
        el("div", { class: "legend", "aria-hidden": "true" }, [el("span", { text: "Events" }), el("span", { class: "l2", text: "Visitors" })]), st.trafficBox]),
      el("section", { class: "card", "aria-label": "Revenue" }, [el("h2", { text: "Revenue" }), st.revBox])]));
    main.appendChild(el("div", { class: "grid tops" }, tops));
    // The last 90 seconds from the store, so the sparklines start full.
    SD.query({ type: "timeseries", from: "-90s", to: "now", granularity: "second" }).then(function (r) {
      if (!st || st.now.eps.hist.length) return;
      r.points.forEach(function (p) { st.now.eps.hist.push(p.count); st.now.revenue.hist.push(p.sum); });
      SD.chart.spark(st.now.eps.spark, st.now.eps.hist);
      SD.chart.spark(st.now.revenue.spark, st.now.revenue.hist);
    }).catch(function () {});
    st.unlive = SD.live(onFrame);
    st.onresize = drawTraffic;
    window.addEventListener("resize", st.onresize);
    st.timer = setInterval(refresh, 30000);
    refresh();
  }

  function unmount() {
    if (!st) return;
    st.unlive();
    clearTimeout(st.pending);
    clearTimeout(st.pendingFull);
    clearInterval(st.timer);
    window.removeEventListener("resize", st.onresize);
    st = null;
  }

  SD.view({ id: "overview", title: "Overview", order: 10, mount: mount, unmount: unmount });
})();
