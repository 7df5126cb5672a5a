// KPIs: a tile for every KPI the server knows — the catalogue of GET /v1/kpis, built-in
// and configured — grouped by theme, each formatted by its "format" and compared with
// the period before ("compare": "previous"); the retention grids as their day-1 (week-1)
// rate with a link to the Retention view; and the per-campaign KPIs as a table.
(function () {
  "use strict";
  var SD = window.SD, el = SD.el, F = SD.fmt;
  var RANGES = [["today", "Today"], ["7d", "7 days"], ["30d", "30 days"], ["90d", "90 days"]];
  var NAMES = { aov: "Average order value", dau: "Daily active users", wau: "Weekly active users", mau: "Monthly active users",
    offer_ctr: "Offer click-through", email_open_rate: "E-mail open rate", email_click_to_open: "E-mail click-to-open",
    email_ctr: "E-mail click-through", cac: "Acquisition cost (CAC)", clv: "Customer lifetime value",
    retention_day: "Day-1 retention", retention_week: "Week-1 retention", new_users: "New visitors", returning_users: "Returning visitors" };
  var GROUPS = [["Sales", ["revenue", "orders", "aov", "conversion_rate", "new_customers", "clv"]],
    ["Audience", ["active_users", "dau", "wau", "mau", "new_users", "returning_users", "bounce_rate", "events"]],
    ["Retention", ["retention_day", "retention_week"]],
    ["Offers and e-mail", ["offer_ctr", "email_open_rate", "email_click_to_open", "email_ctr"]],
    ["Acquisition", ["marketing_cost", "cac"]]];
  var LOWER_IS_BETTER = { bounce_rate: true, cac: true };
  var st = null;

  SD.kpiName = function (k) { return NAMES[k] || SD.title(k); };

  function range(id) {
    var now = Date.now();
    return { from: id === "today" ? SD.startOfToday() : now - parseInt(id, 10) * 86400000, to: now };
  }

  // One tile: value, delta against the previous period, what it measures.
  function tile(k, r) {
    var value = el("div", { class: "value", text: "…" }), sub = el("div", { class: "sub" });
    var node = el("div", { class: "card stat kpi", id: "kpit-" + k.name, "data-format": k.format }, [
      el("div", { class: "label" }, [SD.kpiName(k.name), k.custom ? el("span", { class: "badge", text: "custom" }) : null]),
      value, sub, el("div", { class: "desc", text: k.description })]);
    var q = { type: "kpi", kpi: k.name, from: r.from, to: r.to };
    if (k.compare) q.compare = "previous";
    if (k.shape === "grid") q.from = r.to - (k.name === "retention_week" ? 8 * 7 : 14) * 86400000;
    SD.query(q).then(function (a) {
      if (k.shape === "grid") return grid(k, a, node, value, sub);
      value.textContent = SD.fmtKpi(a.format, a.value);
      node.setAttribute("data-value", a.value == null ? "" : a.value);
      if (k.shape === "lifetime") {
        sub.textContent = "all time · " + F.int(a.denominator) + " customers";
        return;
      }
      var before = a.previous ? a.previous.value : null, d = F.delta(a.value, before);
      var good = a.value != null && before != null && a.value !== before && ((a.value > before) !== !!LOWER_IS_BETTER[k.name]);
      var cls = d ? (good ? "up" : "down") : "";
      if (SD.kpiState) cls = SD.kpiState(k.name, a.value) || cls;
      if (cls) node.classList.add(cls);
      sub.textContent = "";
      if (d) sub.appendChild(el("span", { class: "delta " + cls, text: d }));
      sub.appendChild(document.createTextNode(d ? " vs previous period" : before == null ? "no previous period data" : "previous period: " + SD.fmtKpi(a.format, before)));
    }).catch(function (e) {
      value.textContent = "–";
      sub.textContent = e.auth ? "" : "unavailable: " + e.message;
    });
    return node;
  }

  // The share of the cohorts' people back one period later, over the cohorts that have
  // had that period.
  function grid(k, a, node, value, sub) {
    var users = 0, back = 0;
    a.cohorts.forEach(function (c) {
      if (c.retained.length > 1) { users += c.users; back += c.retained[1]; }
    });
    value.textContent = F.pct(users ? back / users : null);
    node.setAttribute("data-value", users ? back / users : "");
    sub.textContent = "";
    sub.appendChild(el("a", { href: "#/retention?" + (k.name === "retention_week" ? "week" : "day"), text: F.int(a.cohorts.length) + " cohorts · open the grid" }));
  }

  // The per-campaign KPIs for the range's top campaigns.
  function campaigns(r, cat) {
    var names = cat.filter(function (k) { return k.filter === "utm_campaign"; });
    st.campBox.textContent = "";
    return SD.query({ type: "topN", dimension: "utm_campaign", from: r.from, to: r.to, limit: 8 }).then(function (top) {
      if (!st) return;
      var rows = top.rows.map(function (row) { return row.value; });
      if (!rows.length) { st.campBox.appendChild(el("p", { class: "empty", text: "No campaign traffic in this range." })); return; }
      return Promise.all(rows.map(function (c) {
        return Promise.all(names.map(function (k) {
          return SD.query({ type: "kpi", kpi: k.name, from: r.from, to: r.to, filter: { dim: "utm_campaign", value: c } })
            .catch(function () { return { value: null, format: k.format }; });
        }));
      })).then(function (a) {
        if (!st) return;
        st.campBox.appendChild(el("div", { class: "scroll" }, [el("table", { id: "kpi-campaigns" }, [
          el("thead", {}, [el("tr", {}, [el("th", { scope: "col", text: "Campaign" })].concat(names.map(function (k) {
            return el("th", { scope: "col", class: "r", text: SD.kpiName(k.name) });
          })))]),
          el("tbody", {}, rows.map(function (c, i) {
            return el("tr", {}, [el("th", { scope: "row", text: c })].concat(a[i].map(function (v) {
              return el("td", { class: "r", text: SD.fmtKpi(v.format, v.value) });
            })));
          }))])]));
      });
    });
  }

  function load() {
    var r = range(st.range), seq = ++st.seq;
    return SD.api("/v1/kpis").then(function (c) {
      if (!st || seq !== st.seq) return;
      var byName = {}, placed = {};
      c.kpis.forEach(function (k) { byName[k.name] = k; });
      st.box.textContent = "";
      var groups = GROUPS.map(function (g) { return [g[0], g[1].filter(function (n) { return byName[n]; }).map(function (n) { placed[n] = 1; return byName[n]; })]; });
      groups.push(["Your KPIs", c.kpis.filter(function (k) { return k.custom; })]);
      groups.push(["Other", c.kpis.filter(function (k) { return !k.custom && !placed[k.name]; })]);
      groups.forEach(function (g) {
        if (!g[1].length) return;
        st.box.appendChild(el("section", { class: "kgroup", "aria-label": g[0] }, [el("h2", { text: g[0] }),
          el("div", { class: "grid kcat" }, g[1].map(function (k) { return tile(k, r); }))]));
      });
      return campaigns(r, c.kpis);
    }).catch(function (e) {
      if (st && !e.auth) st.err.textContent = "Could not load the KPI catalogue: " + e.message;
    });
  }

  function mount(main) {
    st = { range: "7d", seq: 0 };
    st.err = el("p", { class: "error", role: "alert" });
    st.box = el("div", { id: "kpi-tiles", "aria-live": "polite" });
    st.campBox = el("div");
    var seg = el("div", { class: "seg", role: "group", "aria-label": "Range" }, RANGES.map(function (r) {
      return el("button", { type: "button", "aria-pressed": r[0] === st.range ? "true" : "false", text: r[1], onclick: function (e) {
        st.range = r[0];
        Array.prototype.forEach.call(seg.children, function (b) { b.setAttribute("aria-pressed", b === e.currentTarget ? "true" : "false"); });
        load();
      } });
    }));
    main.appendChild(el("div", { class: "head" }, [el("div", {}, [el("h1", { text: "KPIs" }),
      el("p", { text: "Every KPI this server computes, against the period before." })]), seg]));
    main.appendChild(st.err);
    main.appendChild(st.box);
    main.appendChild(el("section", { class: "card", "aria-label": "By campaign" }, [el("h2", { text: "By campaign" }), st.campBox]));
    load();
  }

  function unmount() { st = null; }

  SD.view({ id: "kpis", title: "KPIs", order: 15, mount: mount, unmount: unmount });
})();
