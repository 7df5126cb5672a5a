// Live feed: the sampled stream of processed events (GET /v1/live?feed=events, at most
// 20 a second), newest first, with the fields enrichment added. Pausing keeps the list
// still; the stream keeps counting.
(function () {
  "use strict";
  var SD = window.SD, el = SD.el, F = SD.fmt;
  var KEEP = 100;
  var COLS = [["t", "Time"], ["event", "Event"], ["page_path", "Page"], ["utm_source", "Source"], ["utm_campaign", "Campaign"],
    ["referrer_class", "Referrer"], ["country", "Country"], ["device_type", "Device"], ["browser", "Browser"], ["revenue", "Revenue"]];
  var st = null;

  function cell(k, e) {
    if (k === "t") return el("td", { class: "num", text: F.time(Date.parse(e.t)) });
    if (k === "revenue") return el("td", { class: "r", text: e.revenue ? F.money(e.revenue) : "" });
    if (k === "event") return el("td", {}, [el("span", { class: "pill" + (e.revenue ? " order" : ""), text: SD.label(e.event || "") })]);
    return el("td", { text: e[k] || "" });
  }

  function onFrame(m) {
    var f;
    try { f = JSON.parse(m.data); } catch (x) { return; }
    st.seen += f.seen;
    st.shown += f.shown;
    st.status.textContent = F.int(f.seen) + " events in the last second" + (f.seen > f.shown ? ", " + F.int(f.shown) + " shown (sampled)" : "") + " · " + F.int(st.seen) + " since you opened this view";
    if (st.paused) return;
    var body = st.body;
    f.events.forEach(function (e) {
      var tr = el("tr", { class: "new" }, COLS.map(function (c) { return cell(c[0], e); }));
      body.insertBefore(tr, body.firstChild);
    });
    while (body.children.length > KEEP) body.removeChild(body.lastChild);
    st.empty.hidden = body.children.length > 0;
  }

  function mount(main) {
    st = { seen: 0, shown: 0, paused: false };
    st.body = el("tbody", { id: "feed-rows" });
    st.status = el("p", { class: "muted", id: "feed-status", role: "status", text: "Waiting for events…" });
    st.empty = el("p", { class: "empty", text: "No events yet. They appear here within a second of arriving." });
    var pause = el("button", { class: "btn", type: "button", "aria-pressed": "false", text: "Pause", onclick: function () {
      st.paused = !st.paused;
      pause.setAttribute("aria-pressed", st.paused ? "true" : "false");
      pause.textContent = st.paused ? "Resume" : "Pause";
    } });
    main.appendChild(el("div", { class: "head" }, [el("div", {}, [el("h1", { text: "Live feed" }),
      el("p", { text: "Events as they are processed, with what sluice added: campaign, referrer, country, device, browser." })]), pause]));
    main.appendChild(el("section", { class: "card", "aria-label": "Events" }, [st.status,
      el("div", { class: "scroll" }, [el("table", { class: "feed-table" }, [el("caption", { class: "muted", hidden: true, text: "Recent events, newest first" }),
        el("thead", {}, [el("tr", {}, COLS.map(function (c) { return el("th", { scope: "col", class: c[0] === "revenue" ? "r" : "", text: c[1] }); }))]), st.body])]), st.empty]));
    st.src = new EventSource("/v1/live?feed=events&key=" + encodeURIComponent(SD.key()));
    st.src.onmessage = onFrame;
  }

  function unmount() {
    if (!st) return;
    st.src.close();
    st = null;
  }

  SD.view({ id: "feed", title: "Live feed", order: 30, mount: mount, unmount: unmount });
})();
