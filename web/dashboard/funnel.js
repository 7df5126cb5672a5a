// Funnels: ordered steps (event names offered from the range's top events), a window, a
// range, an optional breakdown dimension and filter, answered by POST /v1/query
// {"type": "funnel"} — an exact log scan that may take a second or more. Drawn as
// horizontal bars (conversion from step 1 and from the previous step, drop-off, median
// time between steps) with the same figures as a table; 503 busy is retried after the
// Retry-After seconds, 422 scan_limit explained.
(function () {
  "use strict";
  var SD = window.SD, el = SD.el, F = SD.fmt;
  var RANGES = [["1d", "Last 24 hours", 1], ["7d", "Last 7 days", 7], ["30d", "Last 30 days", 30]];
  var WINDOWS = [["30m", "30 minutes"], ["1h", "1 hour"], ["1d", "1 day"], ["7d", "7 days"]];
  var PREFERRED = ["$page", "Product Viewed", "Product Added", "Checkout Started", "Order Completed"];
  var MAX_STEPS = 8;
  var st = null;

  function select(id, label, opts, value) {
    var s = el("select", { id: id }, opts.map(function (o) { return el("option", { value: o[0], text: o[1], selected: o[0] === value }); }));
    return { input: s, node: el("label", { for: id }, [label, s]) };
  }
  function secs(s) {
    if (s == null) return "–";
    if (s < 10) return F.dec(s) + " s";
    return F.dur(Math.round(s));
  }

  // ---- steps ----

  function eventOptions() {
    return st.events.map(function (e) { return [e, SD.label(e)]; });
  }
  function drawSteps() {
    st.stepsBox.textContent = "";
    st.steps.forEach(function (ev, i) {
      var s = select("fn-step-" + (i + 1), "Step " + (i + 1), eventOptions(), ev);
      s.input.addEventListener("change", function () { st.steps[i] = s.input.value; });
      var move = function (d) { return function () { var t = st.steps[i]; st.steps[i] = st.steps[i + d]; st.steps[i + d] = t; drawSteps(); }; };
      st.stepsBox.appendChild(el("li", { class: "fn-step" }, [s.node,
        el("button", { type: "button", class: "btn btn-ghost icon", "aria-label": "Move step " + (i + 1) + " up", disabled: i === 0, onclick: move(-1), text: "↑" }),
        el("button", { type: "button", class: "btn btn-ghost icon", "aria-label": "Move step " + (i + 1) + " down", disabled: i === st.steps.length - 1, onclick: move(1), text: "↓" }),
        el("button", { type: "button", class: "btn btn-ghost icon", "aria-label": "Remove step " + (i + 1), disabled: st.steps.length <= 2, text: "✕", onclick: function () {
          st.steps.splice(i, 1);
          drawSteps();
        } })]));
    });
    st.add.disabled = st.steps.length >= MAX_STEPS;
  }

  // ---- query and answer ----

  function query() {
    var c = st.c, now = Date.now(), days = RANGES.filter(function (r) { return r[0] === c.range.input.value; })[0][2];
    var q = { type: "funnel", from: now - days * 86400000, to: now, window: c.window.input.value,
      steps: st.steps.map(function (e) { return { event: e }; }) };
    if (c.by.input.value) q.breakdown = c.by.input.value;
    var dim = c.fdim.input.value, val = c.fval.value.trim();
    if (dim && val) q.filter = { dim: dim, value: val };
    return q;
  }

  function run() {
    var q = query(), seq = ++st.seq;
    st.err.textContent = "";
    st.status.textContent = "Counting from the event log…";
    st.result.setAttribute("aria-busy", "true");
    SD.scan(q, function (s) {
      if (st && seq === st.seq) st.status.textContent = "Server busy, retrying in " + s + " s…";
    }, function () { return st && seq === st.seq; }).then(function (a) {
      if (!st || seq !== st.seq) return;
      st.result.setAttribute("data-query", JSON.stringify(q));
      st.status.textContent = "Exact count from the event log · " + F.int(a.scanned) + " records read";
      draw(a);
    }).catch(function (e) {
      if (!st || seq !== st.seq || e.auth) return;
      st.status.textContent = "";
      st.err.textContent = SD.scanError(e);
    }).then(function () { if (st) st.result.removeAttribute("aria-busy"); });
  }

  function draw(a) {
    var box = st.result, s = a.steps, first = s[0].users, last = s[s.length - 1];
    box.textContent = "";
    box.appendChild(el("div", { class: "total" }, [el("span", { class: "big", id: "fn-overall", text: F.pct(first ? last.users / first : null) }),
      el("span", { class: "muted", text: F.int(last.users) + " of " + F.int(first) + " users went from " + SD.label(s[0].event) + " to " + SD.label(last.event) + " within " + st.c.window.input.options[st.c.window.input.selectedIndex].text })]));
    if (!first) box.appendChild(el("p", { class: "empty", text: "Nobody did the first step in this range." }));
    box.appendChild(el("ol", { class: "funnel", id: "fn-bars", "aria-label": "Funnel" }, s.map(function (x, i) {
      var fill = el("i");
      fill.style.width = Math.max(first ? 0.5 : 0, (x.conversionFromFirst || 0) * 100) + "%";
      return el("li", {}, [
        el("div", { class: "fn-name" }, [el("span", { class: "fn-n", text: String(i + 1) }), SD.label(x.event)]),
        el("div", { class: "fn-track" }, [fill, el("span", { class: "fn-users", text: F.int(x.users) + " users" })]),
        el("div", { class: "fn-figs" }, [el("span", { class: "fn-pct", text: F.pct(x.conversionFromFirst) }),
          i ? el("span", { text: F.pct(x.conversionFromPrevious) + " from previous" }) : el("span", { text: "entered" }),
          i ? el("span", { class: "fn-drop", text: "−" + F.int(x.dropOff) + " dropped" }) : null,
          i ? el("span", { text: "median " + secs(x.medianSecondsFromPrevious) }) : null])]);
    })));
    var rows = s.map(function (x, i) {
      return el("tr", {}, [el("th", { scope: "row", text: (i + 1) + ". " + SD.label(x.event) }), el("td", { class: "r", text: F.int(x.users) }),
        el("td", { class: "r", text: F.pct(x.conversionFromFirst) }), el("td", { class: "r", text: F.pct(x.conversionFromPrevious) }),
        el("td", { class: "r", text: F.int(x.dropOff) }), el("td", { class: "r", text: secs(x.medianSecondsFromPrevious) })]);
    });
    box.appendChild(el("details", { class: "table" }, [el("summary", { text: "Show as table" }), el("div", { class: "scroll" }, [
      el("table", { id: "fn-table" }, [el("thead", {}, [el("tr", {}, ["Step", "Users", "From step 1", "From previous", "Drop-off", "Median time"].map(function (h, i) {
        return el("th", { scope: "col", class: i ? "r" : "", text: h });
      }))]), el("tbody", {}, rows)])])]));
    if (a.groups) groups(a);
  }

  // One row per breakdown value: users at each step and the overall conversion.
  function groups(a) {
    var head = [el("th", { scope: "col", text: st.c.by.input.options[st.c.by.input.selectedIndex].text })].concat(a.steps.map(function (x, i) {
      return el("th", { scope: "col", class: "r", text: (i + 1) + ". " + SD.label(x.event) });
    })).concat([el("th", { scope: "col", class: "r", text: "Conversion" })]);
    var rows = a.groups.map(function (g) {
      var f = g.steps[0].users, l = g.steps[g.steps.length - 1].users;
      return el("tr", {}, [el("th", { scope: "row", text: g.value == null ? "(none)" : SD.label(g.value) })].concat(g.steps.map(function (x) {
        return el("td", { class: "r", text: F.int(x.users) });
      })).concat([el("td", { class: "r" }, [el("span", { class: "pill", text: F.pct(f ? l / f : null) })])]));
    });
    st.result.appendChild(el("section", { "aria-label": "Breakdown" }, [el("h2", { text: "By " + head[0].textContent.toLowerCase() }),
      el("div", { class: "scroll" }, [el("table", { id: "fn-groups" }, [el("thead", {}, [el("tr", {}, head)]), el("tbody", {}, rows)])])]));
  }

  // ---- mount ----

  function mount(main) {
    st = { seq: 0, steps: [], events: [] };
    var c = st.c = {
      range: select("fn-range", "Range", RANGES, "7d"),
      window: select("fn-window", "Completed within", WINDOWS, "1d"),
      by: select("fn-by", "Break down by", [["", "Nothing"]].concat(SD.dims.filter(function (d) { return d[0] !== "event"; })), ""),
      fdim: select("fn-fdim", "Only events where", [["", "any event"]].concat(SD.dims.filter(function (d) { return d[0] !== "event"; })), ""),
      fval: el("input", { type: "text", id: "fn-fval", placeholder: "value", autocomplete: "off" })
    };
    st.stepsBox = el("ol", { class: "fn-steps", id: "fn-steps" });
    st.add = el("button", { type: "button", class: "btn", id: "fn-add", text: "+ Add step", onclick: function () {
      var unused = st.events.filter(function (e) { return st.steps.indexOf(e) < 0; });
      st.steps.push(unused[0] || st.events[0]);
      drawSteps();
      SD.$("#fn-step-" + st.steps.length).focus();
    } });
    st.err = el("p", { class: "error", role: "alert" });
    st.status = el("p", { class: "muted status", id: "fn-status", role: "status" });
    st.result = el("div", { id: "fn-result", "aria-live": "polite" });
    var form = el("form", { "aria-label": "Funnel", onsubmit: function (e) { e.preventDefault(); run(); } }, [
      el("h2", { text: "Steps" }), st.stepsBox, el("div", { class: "controls" }, [st.add]),
      el("div", { class: "controls" }, [c.range.node, c.window.node, c.by.node, c.fdim.node,
        el("label", { for: "fn-fval" }, ["is", c.fval]),
        el("button", { class: "btn btn-primary", type: "submit", id: "fn-run", text: "Run funnel" })])]);
    main.appendChild(el("div", { class: "head" }, [el("div", {}, [el("h1", { text: "Funnels" }),
      el("p", { text: "How many visitors take your steps in order, and where they drop off." })])]));
    main.appendChild(el("div", { class: "grid fn-layout" }, [el("section", { class: "card" }, [form]),
      el("section", { class: "card" }, [st.err, st.status, st.result])]));
    SD.query({ type: "topN", dimension: "event", from: "-30d", limit: 50 }).then(function (r) {
      if (!st) return;
      st.events = r.rows.map(function (x) { return x.value; });
      PREFERRED.forEach(function (e) { if (st.events.indexOf(e) < 0) st.events.push(e); });
      st.steps = PREFERRED.filter(function (e) { return r.rows.some(function (x) { return x.value === e; }); });
      if (st.steps.length < 2) st.steps = st.events.slice(0, 3);
      drawSteps();
      run();
    }).catch(function (e) {
      if (st && !e.auth) st.err.textContent = "Could not load the events: " + e.message;
    });
  }

  function unmount() { st = null; }

  SD.view({ id: "funnel", title: "Funnels", order: 24, mount: mount, unmount: unmount });
})();
