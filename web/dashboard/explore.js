// Explore: a time-series explorer over POST /v1/query — metric (events, visitors,
// revenue), range (15 minutes to 90 days, or custom), granularity, a filter of one or
// more conditions (is, is not, is one of; all or any of them), and the previous period
// drawn beside the current one. One "is" condition is answered from the rollups; any
// other filter by an exact log scan, which may take longer (503 busy is retried).
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
    var f = filter();
    if (f) q.filter = f;
    return q;
  }

  // ---- the filter: conditions [{dim, op, val}] ----

  var OPS = [["is", "is"], ["not", "is not"], ["in", "is one of"]];
  function node(k) {
    if (k.op === "in") return { dim: k.dim, in: k.val.split(",").map(function (v) { return v.trim(); }).filter(Boolean) };
    return k.op === "not" ? { not: { dim: k.dim, value: k.val } } : { dim: k.dim, value: k.val };
  }
  function conds() {
    return st.conds.map(function (k) { return { dim: k.dim.input.value, op: k.op.input.value, val: k.val.value.trim() }; })
      .filter(function (k) { return k.dim && k.val; });
  }
  function filter() {
    var cs = conds();
    if (!cs.length) return null;
    if (cs.length === 1 && cs[0].op === "is") return { dimension: cs[0].dim, value: cs[0].val };
    if (cs.length === 1) return node(cs[0]);
    var f = {};
    f[st.c.match.value] = cs.map(node);
    return f;
  }
  function describe() {
    var sign = { is: " = ", not: " ≠ ", in: " in " };
    return conds().map(function (k) { return k.dim + sign[k.op] + k.val; }).join(st.c.match.value === "or" ? " or " : " and ");
  }
  // A filter the rollups cannot answer goes to a log scan.
  function scanned(f) { return f && !(f.dimension && f.value != null); }

  function addCond() {
    var i = st.conds.length, sfx = i ? "-" + (i + 1) : "";
    var k = { dim: select("ex-dim" + sfx, i ? "And" : "Filter", [["", "No filter"]].concat(SD.dims), ""),
      op: select("ex-op" + sfx, "Condition", OPS, "is"),
      val: el("input", { type: "text", id: "ex-value" + sfx, list: "ex-values" + sfx, placeholder: "value", disabled: true, autocomplete: "off" }),
      list: el("datalist", { id: "ex-values" + sfx }) };
    k.dim.input.addEventListener("change", function () { suggest(k); if (k.val.value) load(); });
    k.op.input.addEventListener("change", function () { if (k.val.value) load(); });
    k.val.addEventListener("change", load);
    k.node = el("div", { class: "cond" }, [k.dim.node, k.op.node, el("label", { for: "ex-value" + sfx }, ["Value", k.val]), k.list,
      i ? el("button", { type: "button", class: "btn btn-ghost icon", "aria-label": "Remove condition " + (i + 1), text: "✕", onclick: function () {
        st.conds.splice(st.conds.indexOf(k), 1);
        k.node.remove();
        showMatch();
        load();
      } }) : null]);
    st.conds.push(k);
    st.condBox.appendChild(k.node);
    showMatch();
    return k;
  }
  function showMatch() {
    st.c.matchLabel.hidden = st.conds.length < 2;
    st.conds.forEach(function (k, i) { if (i) k.dim.node.firstChild.textContent = st.c.match.value === "or" ? "Or" : "And"; });
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
    var scan = scanned(q.filter), alive = function () { return st && seq === st.seq; };
    var run = scan ? function (x) { return SD.scan(x, function (s) { if (alive()) st.scanNote.textContent = "Server busy, retrying in " + s + " s…"; }, alive); } : SD.query;
    var tot = function (x) { return run({ type: "totals", from: x.from, to: x.to, filter: x.filter }); };
    st.scanNote.textContent = scan ? "Exact count from the event log: this filter is answered by a log scan, which may take a few seconds." : "";
    st.scanNote.hidden = !scan;
    breakdown(q).catch(function () {});
    return Promise.all([SD.series(Object.assign({ type: "timeseries" }, q), run), tot(q),
      compare ? SD.series(Object.assign({ type: "timeseries" }, prev), run) : null, compare ? tot(prev) : null]).then(function (a) {
      if (!st || seq !== st.seq) return;
      if (scan) st.scanNote.textContent = "Exact count from the event log · " + F.int(a[1].scanned) + " records read";
      var pts = a[0], total = a[1][metric], before = a[3] ? a[3][metric] : null, d = F.delta(total, before);
      st.total.textContent = m[2](total);
      st.totalLabel.textContent = m[1] + (q.filter ? " where " + describe() : "") + " · " + rangeLabel();
      st.delta.textContent = compare ? (d ? d + " vs previous period (" + m[2](before) + ")" : "previous period: " + m[2](before)) : "";
      st.delta.className = "delta " + (d ? (d.charAt(0) === "+" ? "up" : "down") : "");
      var series = [{ name: m[1], values: pts.map(function (p) { return p[metric]; }), cls: "s0" }];
      if (compare) series.push({ name: "Previous period", values: a[2].slice(0, pts.length).map(function (p) { return p[metric]; }), cls: "s1" });
      st.chart = { series: series, times: pts.map(function (p) { return p.t; }), step: SD.step[q.granularity], fmt: m[2], area: true,
        label: m[1] + " per " + q.granularity + (q.filter ? " where " + describe() : "") };
      st.chartBox.setAttribute("data-query", JSON.stringify(q));
      draw();
    }).catch(function (e) {
      if (st && seq === st.seq && !e.auth) st.err.textContent = SD.scanError(e);
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
          var k = st.conds[0];
          k.dim.input.value = dim;
          k.op.input.value = "is";
          k.val.disabled = false;
          k.val.value = row.value;
          suggest(k);
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
  function suggest(k) {
    var dim = k.dim.input.value;
    k.list.textContent = "";
    k.val.disabled = !dim;
    if (!dim) return;
    SD.query({ type: "topN", dimension: dim, from: "-30d", limit: 25 }).then(function (r) {
      if (!st) return;
      r.rows.forEach(function (row) { k.list.appendChild(el("option", { value: row.value })); });
    }).catch(function () {});
  }

  function mount(main) {
    st = { seq: 0 };
    var c = st.c = {
      metric: select("ex-metric", "Metric", METRICS, "count"),
      range: select("ex-range", "Range", RANGES, "1h"),
      gran: select("ex-gran", "Granularity", GRANS, "auto"),
      match: el("select", { id: "ex-match" }, [el("option", { value: "and", text: "all conditions" }), el("option", { value: "or", text: "any condition" })]),
      compare: el("input", { type: "checkbox", id: "ex-compare", checked: true })
    };
    c.by = select("ex-by", "Break down by", SD.dims, "page_path");
    st.byBox = el("div", { id: "ex-by-box" });
    c.by.input.addEventListener("change", function () { var q = chosen(); if (!q.error) breakdown(q).catch(function () {}); });
    c.matchLabel = el("label", { for: "ex-match" }, ["Match", c.match]);
    c.match.addEventListener("change", function () { showMatch(); load(); });
    st.conds = [];
    st.condBox = el("div", { class: "conds", id: "ex-conds" });
    st.scanNote = el("p", { class: "note", id: "ex-scan", role: "status", hidden: true });
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
      c.metric.node, c.range.node, c.gran.node,
      el("label", { class: "check", for: "ex-compare" }, [c.compare, "Compare with previous period"])]);
    var filterForm = el("form", { class: "filter", "aria-label": "Filter", onsubmit: function (e) { e.preventDefault(); load(); } }, [
      st.condBox, el("div", { class: "controls" }, [
        el("button", { type: "button", class: "btn", id: "ex-add-cond", text: "+ Condition", onclick: function () { addCond().dim.input.focus(); } }),
        c.matchLabel, el("button", { class: "btn btn-primary", type: "submit", id: "ex-apply", text: "Apply" })])]);
    [c.metric.input, c.range.input, c.gran.input, c.compare, c.from, c.to].forEach(function (i) { i.addEventListener("change", load); });
    main.appendChild(el("div", { class: "head" }, [el("div", {}, [el("h1", { text: "Explore" }),
      el("p", { text: "Any metric over any range, filtered by any combination of dimensions." })])]));
    addCond();
    main.appendChild(el("section", { class: "card" }, [form, c.custom, filterForm, st.scanNote, st.err,
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
