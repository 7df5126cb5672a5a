// Retention: the cohort grids of the retention_day and retention_week KPIs as a heat-map
// table (a real <table>: cohort rows, period columns, each cell its rate as text and as
// colour, its count below), with the weighted average per period; and customer lifetime
// value per first-seen week from the clv KPI.
(function () {
  "use strict";
  var SD = window.SD, el = SD.el, F = SD.fmt;
  var SPANS = { day: [["7", "7 days"], ["14", "14 days"], ["30", "30 days"]], week: [["4", "4 weeks"], ["8", "8 weeks"], ["12", "12 weeks"], ["26", "26 weeks"]] };
  var st = null;

  function cohortLabel(iso, week) {
    var d = new Date(iso);
    var s = d.toLocaleDateString([], { month: "short", day: "numeric", timeZone: "UTC" });
    return week ? "Week of " + s : s;
  }

  // A cell's background: the accent colour, stronger with the rate.
  function cell(rate, n, of) {
    var td = el("td", { class: "r heat", title: F.int(n) + " of " + F.int(of) + " people" }, [el("span", { text: F.pct(rate) }), el("small", { text: F.int(n) })]);
    td.style.background = "color-mix(in srgb, var(--heat) " + Math.round(8 + rate * 82) + "%, transparent)";
    if (rate >= 0.5) td.classList.add("hot");
    return td;
  }

  function grid(a, week) {
    var n = a.cohorts.reduce(function (m, c) { return Math.max(m, c.retained.length); }, 0), unit = week ? "Week " : "Day ";
    var cols = [];
    for (var k = 0; k < n; k++) cols.push(k);
    var avg = cols.map(function (k) {
      var users = 0, back = 0;
      a.cohorts.forEach(function (c) { if (c.retained.length > k) { users += c.users; back += c.retained[k]; } });
      return { users: users, back: back };
    });
    var head = el("tr", {}, [el("th", { scope: "col", text: "Cohort" }), el("th", { scope: "col", class: "r", text: "People" })].concat(cols.map(function (k) {
      return el("th", { scope: "col", class: "r", text: unit + k });
    })));
    var rows = a.cohorts.slice().reverse().map(function (c) {
      return el("tr", {}, [el("th", { scope: "row", text: cohortLabel(c.cohort, week) }), el("td", { class: "r", text: F.int(c.users) })].concat(cols.map(function (k) {
        return k < c.retained.length ? cell(c.rate[k], c.retained[k], c.users) : el("td", { class: "r future", "aria-label": "not yet" });
      })));
    });
    var foot = el("tr", { class: "avg" }, [el("th", { scope: "row", text: "Average" }), el("td", { class: "r", text: F.int(avg[0] ? avg[0].users : 0) })].concat(avg.map(function (x) {
      return el("td", { class: "r", text: F.pct(x.users ? x.back / x.users : null) });
    })));
    return el("div", { class: "scroll wide" }, [el("table", { id: "ret-grid", class: "heatmap" }, [
      el("caption", { text: "Share of each " + (week ? "week" : "day") + "'s new people active again " + (week ? "k weeks" : "k days") + " later (count below)" }),
      el("thead", {}, [head]), el("tbody", {}, rows), el("tfoot", {}, [foot])])]);
  }

  function load() {
    var week = st.unit === "week", span = parseInt(st.span.value, 10), now = Date.now(), seq = ++st.seq;
    var from = now - span * (week ? 7 : 1) * 86400000;
    var q = { type: "kpi", kpi: week ? "retention_week" : "retention_day", from: from, to: now };
    SD.query(q).then(function (a) {
      if (!st || seq !== st.seq) return;
      st.gridBox.setAttribute("data-query", JSON.stringify(q));
      st.gridBox.textContent = "";
      if (!a.cohorts.length) st.gridBox.appendChild(el("p", { class: "empty", text: "No new people in this range yet." }));
      else st.gridBox.appendChild(grid(a, week));
    }).catch(report);
  }

  function loadClv() {
    SD.query({ type: "kpi", kpi: "clv", from: Date.now() - 26 * 7 * 86400000, to: Date.now() }).then(function (a) {
      if (!st) return;
      st.clvValue.textContent = F.money(a.value);
      st.clvSub.textContent = "lifetime revenue per customer · " + F.int(a.denominator) + " customers · " + F.money(a.numerator) + " revenue";
      st.clvBox.textContent = "";
      var cs = (a.cohorts || []).slice().reverse();
      if (!cs.length) { st.clvBox.appendChild(el("p", { class: "empty", text: "No customers yet." })); return; }
      var max = Math.max.apply(null, cs.map(function (c) { return c.value; })) || 1;
      st.clvBox.appendChild(el("div", { class: "scroll" }, [el("table", { id: "clv-table" }, [el("thead", {}, [el("tr", {}, [
        el("th", { scope: "col", text: "First seen" }), el("th", { scope: "col", class: "r", text: "Customers" }),
        el("th", { scope: "col", class: "r", text: "Revenue" }), el("th", { scope: "col", class: "r", text: "Value per customer" }), el("th", { scope: "col", "aria-hidden": "true" })])]),
        el("tbody", {}, cs.map(function (c) {
          var fill = el("i");
          fill.style.width = Math.max(1, c.value / max * 100) + "%";
          return el("tr", {}, [el("th", { scope: "row", text: cohortLabel(c.cohort, true) }), el("td", { class: "r", text: F.int(c.users) }),
            el("td", { class: "r", text: F.money(c.revenue) }), el("td", { class: "r", text: F.money(c.value) }),
            el("td", { class: "barcell", "aria-hidden": "true" }, [el("span", { class: "bar" }, [fill])])]);
        }))])]));
    }).catch(report);
  }

  function report(e) {
    if (st && !e.auth) st.err.textContent = "Could not load: " + e.message;
  }

  function setUnit(u) {
    st.unit = u;
    Array.prototype.forEach.call(st.seg.children, function (b) { b.setAttribute("aria-pressed", b.getAttribute("data-unit") === u ? "true" : "false"); });
    st.span.textContent = "";
    SPANS[u].forEach(function (o, i) { st.span.appendChild(el("option", { value: o[0], text: o[1], selected: i === 1 })); });
    load();
  }

  function mount(main) {
    st = { seq: 0 };
    st.err = el("p", { class: "error", role: "alert" });
    st.seg = el("div", { class: "seg", role: "group", "aria-label": "Cohorts by" }, [["day", "Daily"], ["week", "Weekly"]].map(function (u) {
      return el("button", { type: "button", "data-unit": u[0], id: "ret-" + u[0], text: u[1], onclick: function () { setUnit(u[0]); } });
    }));
    st.span = el("select", { id: "ret-span", onchange: load });
    st.gridBox = el("div", { id: "ret-box", "aria-live": "polite" });
    st.clvValue = el("div", { class: "value", id: "clv-value", text: "…" });
    st.clvSub = el("div", { class: "sub" });
    st.clvBox = el("div");
    main.appendChild(el("div", { class: "head" }, [el("div", {}, [el("h1", { text: "Retention" }),
      el("p", { text: "Do the people you win come back? Each row is the people first seen that day or week." })]),
      el("div", { class: "controls tight" }, [st.seg, el("label", { for: "ret-span" }, ["Cohorts from the last", st.span])])]));
    main.appendChild(st.err);
    main.appendChild(el("section", { class: "card", "aria-label": "Retention grid" }, [el("h2", { text: "Cohort retention" }), st.gridBox]));
    main.appendChild(el("section", { class: "card clv", "aria-label": "Customer lifetime value" }, [el("h2", { text: "Customer lifetime value by first-seen week" }),
      el("div", { class: "stat" }, [st.clvValue, st.clvSub]), st.clvBox]));
    setUnit(/week/.test(location.hash) ? "week" : "day");
    loadClv();
  }

  function unmount() { st = null; }

  SD.view({ id: "retention", title: "Retention", order: 26, mount: mount, unmount: unmount });
})();
