// Explore: a time-series explorer over POST /v1/query — metric (events, visitors,
// revenue), range (15 minutes to 90 days, or custom), granularity, a filter on any
// dimension, and the previous period drawn beside the current one.
(function () {
  "use strict";
  var SD = window.SD, el = SD.el, F = SD.fmt;
  var METRICS = [["count", "Events", F.int], ["uniques", "Visitors", F.int], ["sum", "Revenue", F.money]];
  var RANGES = [["15m", "Last 15 minutes", 900], ["1h", "Last hour", 3600], ["24h", "Last 24 hours", 86400],
    ["7d", "Last 7 days", 7 * 86400], ["30d", "Last 30 days", 30 * 86400], ["90d", "Last 90 days", 90 * 86400], ["custom", "Custom…", 0]];
  var GRANS = [["auto", "Automatic"], ["second", "Second"], ["minute", "Minute"], ["hour", "Hour"], ["day", "Day"]];
  var st = null;

  function select(id, label, opts, value) {
    var s = el("select", { id: id }, opts.map(function (o) { return el("option", { value: o[0], text: o[1], selected: o[0] === value }); }));
    return { input: s, node: el("label", { for: id }, [label, s]) };
  }
  function localInput(t) {
    var d = new Date(t - new Date(t).getTimezoneOffset() * 60000);
    return d.toISOString().slice(0, 16);
  }

  // The chosen range in ms, or an error message.
  function chosen() {
    var c = st.c, r = c.range.input.value, to = Date.now(), from;
    if (r === "custom") {
      from = Date.parse(c.from.value);
      to = Date.parse(c.to.value);
      if (!(from < to)) return { error: "Pick a start before the end." };
      if (to - from > 400 * 86400000) return { error: "A range may span at most 400 days." };
    } else {
      from = to - RANGES.filter(function (x) { return x[0] === r; })[0][2] * 1000;
    }
    var g = c.gran.input.value, auto = SD.granFor(to - from, from), order = ["second", "minute", "hour", "day"];
    if (g === "auto") g = auto;
    else if (order.indexOf(g) < order.indexOf(auto) && (to - from) / SD.step[g] > 1000) return { error: "Too many points for that granularity: pick a coarser one or a shorter range." };
    if (g === "second" && from < Date.now() - 3600000) return { error: "Per-second points are kept for the last hour only." };
    // Start on a bucket boundary, so the previous period's last bucket is not the current
    // period's first one.
    var unit = SD.step[g === "day" ? "hour" : g];
    var q = { from: Math.floor(from / unit) * unit, to: Math.round(to), granularity: g };
    var dim = c.dim.input.value, val = c.val.value.trim();
    if (dim && val) q.filter = { dimension: dim, value: val };
    return q;
  }

  function rangeLabel() {
    var r = st.c.range.input;
    return r.value === "custom" ? st.c.from.value.replace("T", " ") + " – " + st.c.to.value.replace("T", " ") : r.options[r.selectedIndex].text.toLowerCase();
  }

  function load() {
    var q = chosen(), c = st.c;
    c.custom.hidden = c.range.input.value !== "custom";
    st.err.textContent = q.error || "";
    if (q.error) return Promise.resolve();
    var metric = c.metric.input.value, m = METRICS.filter(function (x) { return x[0] === metric; })[0];
    var span = q.to - q.from, prev = Object.assign({}, q, { from: q.from - span, to: q.from });
    var compare = c.compare.checked, seq = ++st.seq;
    var tot = function (x) { return SD.query({ type: "totals", from: x.from, to: x.to, filter: x.filter }); };
    breakdown(q).catch(function () {});
    return Promise.all([SD.series(Object.assign({ type: "timeseries" }, q)), tot(q),
      compare ? SD.series(Object.assign({ type: "timeseries" }, prev)) : null, compare ? tot(prev) : null]).then(function (a) {
      if (!st || seq !== st.seq) return;
      var pts = a[0], total = a[1][metric], before = a[3] ? a[3][metric] : null, d = F.delta(total, before);
      st.total.textContent = m[2](total);
      st.totalLabel.textContent = m[1] + (q.filter ? " where " + q.filter.dimension + " = " + q.filter.value : "") + " · " + rangeLabel();
      st.delta.textContent = compare ? (d ? d + " vs previous period (" + m[2](before) + ")" : "previous period: " + m[2](before)) : "";
      st.delta.className = "delta " + (d ? (d.charAt(0) === "+" ? "up" : "down") : "");
      var series = [{ name: m[1], values: pts.map(function (p) { return p[metric]; }), cls: "s0" }];
      if (compare) series.push({ name: "Previous period", values: a[2].slice(0, pts.length).map(function (p) { return p[metric]; }), cls: "s1" });
      st.chart = { series: series, times: pts.map(function (p) { return p.t; }), step: SD.step[q.granularity], fmt: m[2], area: true,
        label: m[1] + " per " + q.granularity + (q.filter ? " where " + q.filter.dimension + " is " + q.filter.value : "") };
      st.chartBox.setAttribute("data-query", JSON.stringify(q));
      draw();
    }).catch(function (e) {
      if (st && !e.auth) st.err.textContent = "Could not load: " + e.message;
    });
  }
  function draw() {
    if (!st || !st.chart) return;
    st.legend.textContent = "";
    st.chart.series.forEach(function (s, i) { st.legend.appendChild(el("span", { class: i ? "l1" : "", text: s.name })); });
    if (!st.chart.times.length) {
      st.chartBox.textContent = "No data in this range.";
      st.tableBox.textContent = "";
      return;
    }
    SD.chart.line(st.chartBox, st.chart);
    st.tableBox.textContent = "";
    st.tableBox.appendChild(SD.chart.table(st.chart));
  }

  // The range's top values of one dimension (all traffic: topN takes no filter); a
  // value's button filters the chart by it.
  function breakdown(q) {
    var dim = st.c.by.input.value, seq = st.seq;
    return SD.query({ type: "topN", dimension: dim, from: q.from, to: q.to, limit: 15 }).then(function (r) {
      if (!st || seq !== st.seq) return;
      var total = r.rows.reduce(function (a, x) { return a + x.count; }, 0);
      st.byBox.textContent = "";
      if (!r.rows.length) { st.byBox.appendChild(el("p", { class: "empty", text: "No data in this range." })); return; }
      var rows = r.rows.map(function (row) {
        return el("tr", {}, [el("td", {}, [el("button", { type: "button", class: "link", text: SD.label(row.value), title: "Filter by " + row.value, onclick: function () {
          st.c.dim.input.value = dim;
          st.c.val.disabled = false;
          st.c.val.value = row.value;
          suggest();
          load();
        } })]), el("td", { class: "r", text: F.int(row.count) }), el("td", { class: "r", text: F.pct(total ? row.count / total : null) }),
          el("td", { class: "r", text: F.int(row.uniques) }), el("td", { class: "r", text: row.sum ? F.money(row.sum) : "" })]);
      });
      st.byBox.appendChild(el("div", { class: "scroll" }, [el("table", { id: "ex-breakdown" }, [el("thead", {}, [el("tr", {}, [
        el("th", { scope: "col", text: st.c.by.input.options[st.c.by.input.selectedIndex].text }), el("th", { scope: "col", class: "r", text: "Events" }),
        el("th", { scope: "col", class: "r", text: "Share" }), el("th", { scope: "col", class: "r", text: "Visitors" }),
        el("th", { scope: "col", class: "r", text: "Revenue" })])]), el("tbody", {}, rows)])]));
    });
  }

  // Suggest the most frequent values of the chosen dimension.
  function suggest() {
    var dim = st.c.dim.input.value;
    st.c.list.textContent = "";
    st.c.val.disabled = !dim;
    if (!dim) return;
    SD.query({ type: "topN", dimension: dim, from: "-30d", limit: 25 }).then(function (r) {
      if (!st) return;
      r.rows.forEach(function (row) { st.c.list.appendChild(el("option", { value: row.value })); });
    }).catch(function () {});
  }

  function mount(main) {
    st = { seq: 0 };
    var c = st.c = {
      metric: select("ex-metric", "Metric", METRICS, "count"),
      range: select("ex-range", "Range", RANGES, "1h"),
      gran: select("ex-gran", "Granularity", GRANS, "auto"),
      dim: select("ex-dim", "Filter", [["", "No filter"]].concat(SD.dims), ""),
      list: el("datalist", { id: "ex-values" }),
      compare: el("input", { type: "checkbox", id: "ex-compare", checked: true })
    };
    c.by = select("ex-by", "Break down by", SD.dims, "page_path");
    st.byBox = el("div", { id: "ex-by-box" });
    c.by.input.addEventListener("change", function () { var q = chosen(); if (!q.error) breakdown(q).catch(function () {}); });
    c.val = el("input", { type: "text", id: "ex-value", list: "ex-values", placeholder: "value", disabled: true, autocomplete: "off" });
    c.from = el("input", { type: "datetime-local", id: "ex-from", value: localInput(Date.now() - 86400000) });
    c.to = el("input", { type: "datetime-local", id: "ex-to", value: localInput(Date.now()) });
    c.custom = el("div", { class: "controls", hidden: true }, [el("label", { for: "ex-from" }, ["From", c.from]), el("label", { for: "ex-to" }, ["To", c.to])]);
    st.err = el("p", { class: "error", role: "alert" });
    st.total = el("span", { class: "big", id: "ex-total" });
    st.totalLabel = el("span", { class: "muted", id: "ex-total-label" });
    st.delta = el("span", { class: "delta", id: "ex-delta" });
    st.legend = el("div", { class: "legend", "aria-hidden": "true" });
    st.chartBox = el("div", { class: "chart", id: "ex-chart" });
    st.tableBox = el("div");
    var form = el("form", { class: "controls", "aria-label": "Query", onsubmit: function (e) { e.preventDefault(); load(); } }, [
      c.metric.node, c.range.node, c.gran.node, c.dim.node,
      el("label", { for: "ex-value" }, ["Value", c.val]), c.list,
      el("label", { class: "check", for: "ex-compare" }, [c.compare, "Compare with previous period"]),
      el("button", { class: "btn btn-primary", type: "submit", id: "ex-apply", text: "Apply" })]);
    [c.metric.input, c.range.input, c.gran.input, c.compare, c.from, c.to].forEach(function (i) { i.addEventListener("change", load); });
    c.dim.input.addEventListener("change", function () { suggest(); if (!c.val.value) return; load(); });
    c.val.addEventListener("change", load);
    main.appendChild(el("div", { class: "head" }, [el("div", {}, [el("h1", { text: "Explore" }),
      el("p", { text: "Any metric over any range, filtered by any dimension." })])]));
    main.appendChild(el("section", { class: "card" }, [form, c.custom, st.err,
      el("div", { class: "total", "aria-live": "polite" }, [st.total, st.totalLabel, st.delta]), st.legend, st.chartBox, st.tableBox]));
    main.appendChild(el("section", { class: "card breakdown", "aria-label": "Breakdown" }, [el("div", { class: "head" }, [
      el("div", {}, [el("h2", { text: "Breakdown" }), el("p", { text: "Top values over the range, all traffic. Pick one to filter the chart." })]), c.by.node]), st.byBox]));
    st.onresize = draw;
    window.addEventListener("resize", draw);
    load();
  }

  function unmount() {
    if (!st) return;
    window.removeEventListener("resize", st.onresize);
    st = null;
  }

  SD.view({ id: "explore", title: "Explore", order: 20, mount: mount, unmount: unmount });
})();
