// Hand-written SVG charts: sparklines, a time-series line/area chart with axes, a hover
// and keyboard cursor with a tooltip, and a table alternative; bar lists for top values.
// Every chart carries an aria-label with its figures.
(function () {
  "use strict";
  var SD = window.SD, svg = SD.svg, el = SD.el;
  var C = SD.chart = {};

  function path(pts) {
    return pts.map(function (p, i) { return (i ? "L" : "M") + p[0].toFixed(1) + " " + p[1].toFixed(1); }).join("");
  }

  // A sparkline of values into an <svg class="spark"> (decorative: the figure is text).
  C.spark = function (node, values) {
    node.textContent = "";
    var n = values.length;
    if (n < 2) return;
    var max = Math.max.apply(null, values), min = Math.min(0, Math.min.apply(null, values));
    var span = max - min || 1;
    var pts = values.map(function (v, i) { return [i / (n - 1) * 100, 30 - (v - min) / span * 28 - 1]; });
    node.appendChild(svg("path", { class: "area", d: path(pts) + "L100 30L0 30Z" }));
    node.appendChild(svg("path", { class: "line", d: path(pts) }));
  };
  C.sparkNode = function (teal) {
    return svg("svg", { class: "spark" + (teal ? " teal" : ""), viewBox: "0 0 100 30", preserveAspectRatio: "none", "aria-hidden": "true", focusable: "false" });
  };

  // 0, 1, 2, 2.5, 5 x 10^k steps: about n ticks from 0 to at least max.
  function niceTicks(max, n) {
    if (!(max > 0)) max = 1;
    var raw = max / n, p = Math.pow(10, Math.floor(Math.log10(raw))), m = raw / p;
    var step = (m <= 1 ? 1 : m <= 2 ? 2 : m <= 2.5 ? 2.5 : m <= 5 ? 5 : 10) * p, out = [];
    for (var v = 0; v < max + step * 0.999; v += step) out.push(v);
    if (out.length < 2) out.push(step);
    return out;
  }

  // Line chart. o = {series: [{name, values: [v...], cls: "s0"}], times: [ms...],
  // step: ms per point, fmt: value formatter, label: what is plotted, area: bool}.
  // The first series is the main one; others (the previous period) share its x axis.
  C.line = function (box, o) {
    box.textContent = "";
    box.classList.add("chart");
    var W = Math.max(280, box.clientWidth || 600), H = o.height || (W < 500 ? 200 : 260);
    var m = { l: 52, r: 14, t: 10, b: 26 }, iw = W - m.l - m.r, ih = H - m.t - m.b;
    var n = o.times.length, all = [];
    o.series.forEach(function (s) { s.values.forEach(function (v) { if (v != null) all.push(v); }); });
    var ticks = niceTicks(all.length ? Math.max.apply(null, all) : 0, W < 500 ? 3 : 4), top = ticks[ticks.length - 1];
    var x = function (i) { return m.l + (n > 1 ? i / (n - 1) * iw : iw / 2); };
    var y = function (v) { return m.t + ih - v / top * ih; };
    var main = o.series[0], total = 0, peak = null;
    main.values.forEach(function (v, i) { if (v != null) { total += v; if (peak == null || v > main.values[peak]) peak = i; } });
    var s = svg("svg", { viewBox: "0 0 " + W + " " + H, width: W, height: H, role: "img", tabindex: "0",
      "aria-label": o.label + ": " + n + " points from " + SD.fmt.at(o.times[0], o.step) + " to " + SD.fmt.at(o.times[n - 1], o.step) +
        (peak != null ? "; peak " + o.fmt(main.values[peak]) + " at " + SD.fmt.at(o.times[peak], o.step) : "") +
        "; latest " + o.fmt(main.values[n - 1]) + ". Use the arrow keys to read each point." });
    ticks.forEach(function (t) {
      s.appendChild(svg("line", { class: "grid-line", x1: m.l, x2: W - m.r, y1: y(t), y2: y(t) }));
      var lab = svg("text", { class: "axis", x: m.l - 8, y: y(t) + 4, "text-anchor": "end" });
      lab.textContent = SD.fmt.compact(t);
      s.appendChild(lab);
    });
    var nx = Math.max(2, Math.min(n, Math.floor(iw / 130))), span = o.times[n - 1] - o.times[0];
    for (var k = 0; k < nx; k++) {
      var i = nx > 1 ? Math.round(k * (n - 1) / (nx - 1)) : 0;
      var tl = svg("text", { class: "axis", x: x(i), y: H - 6, "text-anchor": k === 0 ? "start" : k === nx - 1 ? "end" : "middle" });
      tl.textContent = SD.fmt.tick(o.times[i], o.step, span);
      s.appendChild(tl);
    }
    o.series.slice().reverse().forEach(function (ser, ri) {
      var pts = [];
      ser.values.forEach(function (v, i) { if (v != null) pts.push([x(i), y(v)]); });
      if (!pts.length) return;
      if (o.area && ser === main && pts.length > 1)
        s.appendChild(svg("path", { class: "area", d: path(pts) + "L" + pts[pts.length - 1][0] + " " + y(0) + "L" + pts[0][0] + " " + y(0) + "Z" }));
      s.appendChild(svg("path", { class: "line " + (ser.cls || "s0"), d: path(pts) }));
    });
    var cursor = svg("line", { class: "cursor", y1: m.t, y2: m.t + ih, visibility: "hidden" });
    s.appendChild(cursor);
    var dots = o.series.map(function (ser) {
      var d = svg("circle", { class: "dot " + (ser.cls || "s0"), r: 4, visibility: "hidden" });
      s.appendChild(d);
      return d;
    });
    var tip = el("div", { class: "tip", hidden: true, "aria-hidden": "true" });
    box.appendChild(s);
    box.appendChild(tip);
    var at = -1;
    function show(i) {
      at = Math.max(0, Math.min(n - 1, i));
      cursor.setAttribute("x1", x(at));
      cursor.setAttribute("x2", x(at));
      cursor.setAttribute("visibility", "visible");
      var lines = [SD.fmt.at(o.times[at], o.step)];
      o.series.forEach(function (ser, j) {
        var v = ser.values[at];
        dots[j].setAttribute("visibility", v == null ? "hidden" : "visible");
        if (v != null) { dots[j].setAttribute("cx", x(at)); dots[j].setAttribute("cy", y(v)); }
        lines.push(ser.name + ": " + o.fmt(v));
      });
      tip.textContent = lines.join(" · ");
      tip.hidden = false;
      var r = s.getBoundingClientRect(), scale = r.width / W;
      tip.style.left = Math.max(90, Math.min(r.width - 90, x(at) * scale)) + "px";
      tip.style.top = (m.t + 6) * scale + "px";
    }
    function hide() {
      at = -1;
      tip.hidden = true;
      cursor.setAttribute("visibility", "hidden");
      dots.forEach(function (d) { d.setAttribute("visibility", "hidden"); });
    }
    s.addEventListener("mousemove", function (e) {
      var r = s.getBoundingClientRect(), px = (e.clientX - r.left) * W / r.width;
      show(Math.round((px - m.l) / (iw || 1) * (n - 1)));
    });
    s.addEventListener("mouseleave", hide);
    s.addEventListener("blur", hide);
    s.addEventListener("keydown", function (e) {
      var d = { ArrowRight: 1, ArrowLeft: -1, Home: -n, End: n }[e.key];
      if (d == null) return;
      e.preventDefault();
      show(at < 0 ? (d > 0 ? 0 : n - 1) : at + d);
    });
  };

  // The same figures as a table, inside a collapsed <details>.
  C.table = function (o) {
    var head = [el("th", { scope: "col", text: "Time" })].concat(o.series.map(function (s) { return el("th", { scope: "col", class: "r", text: s.name }); }));
    var rows = o.times.map(function (t, i) {
      return el("tr", {}, [el("td", { text: SD.fmt.at(t, o.step) })].concat(o.series.map(function (s) { return el("td", { class: "r", text: o.fmt(s.values[i]) }); })));
    });
    return el("details", { class: "table" }, [el("summary", { text: "Show as table" }),
      el("div", { class: "scroll" }, [el("table", {}, [el("thead", {}, [el("tr", {}, head)]), el("tbody", {}, rows)])])]);
  };

  // A ranked list of values with bars relative to the first: rows [{value, count}].
  C.bars = function (rows, fmt, name) {
    if (!rows.length) return el("p", { class: "empty", text: "No data in this range yet." });
    var max = rows[0].n || 1;
    return el("ol", { class: "bars", "aria-label": name }, rows.map(function (r) {
      var fill = el("i");
      fill.style.width = Math.max(1, r.n / max * 100) + "%";
      return el("li", {}, [el("span", { class: "name", title: r.label, text: r.label }),
        el("span", { class: "val", text: fmt(r.n) }), el("span", { class: "bar", "aria-hidden": "true" }, [fill])]);
    }));
  };
})();
