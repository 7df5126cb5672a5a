// The demo shop: a single-page app (history.pushState routes under /demo/) so that
// sluice.js's automatic page views for SPA navigation can be seen at work. Cart and
// consent choice live in localStorage. Every tracking call goes through `sl`, which
// queues calls until the async tracker has loaded (window.sluice = [[method, args...]]).
(function () {
  "use strict";
  var PRODUCTS = [
    { id: "1", name: "Canal Kayak", price: 489, color: "teal", blurb: "A stable touring kayak for slow water and long locks." },
    { id: "2", name: "Lock Keeper's Lantern", price: 64, color: "amber", blurb: "Brass storm lantern, the kind that hung by every lock gate." },
    { id: "3", name: "River Map Set", price: 29, color: "indigo", blurb: "Waterproof charts of 1,200 km of navigable rivers." },
    { id: "4", name: "Weir Gauge", price: 118, color: "slate", blurb: "Enamelled depth gauge, marked in centimetres." },
    { id: "5", name: "Floodgate Mug", price: 18, color: "rose", blurb: "Stoneware mug that holds a whole afternoon of tea." },
    { id: "6", name: "Tideline Tote", price: 35, color: "olive", blurb: "Waxed canvas bag that shrugs off spray." }
  ];
  var app = document.getElementById("app");

  function sl() {
    var a = Array.prototype.slice.call(arguments);
    if (window.sluice && window.sluice.ready) window.sluice[a[0]].apply(window.sluice, a.slice(1));
    else (window.sluice = window.sluice || []).push(a);
  }
  function find(id) { return PRODUCTS.filter(function (p) { return p.id === id; })[0]; }
  function cart() { try { return JSON.parse(localStorage.getItem("demo_cart")) || []; } catch (e) { return []; } }
  function saveCart(c) { localStorage.setItem("demo_cart", JSON.stringify(c)); count(); }
  function count() {
    document.getElementById("cart-count").textContent =
      cart().reduce(function (n, l) { return n + l.quantity; }, 0);
  }
  function total(c) { return c.reduce(function (t, l) { return t + l.price * l.quantity; }, 0); }
  function money(n) { return "€" + n.toFixed(2); }
  function esc(s) {
    return String(s).replace(/[&<>"']/g, function (c) {
      return { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c];
    });
  }
  function item(p, q) {
    return { product_id: p.id, name: p.name, price: p.price, quantity: q || 1 };
  }

  // ---- views: each sets the title and the content, and tracks what it shows
  function catalog() {
    document.title = "Catalog · Sluice Supply";
    app.innerHTML = "<h1>Catalog</h1><div class=\"grid\">" + PRODUCTS.map(function (p) {
      return "<a class=\"card\" id=\"p-" + p.id + "\" href=\"/demo/product/" + p.id + "\">" +
        "<div class=\"swatch " + p.color + "\"></div><h2>" + esc(p.name) + "</h2>" +
        "<p class=\"price\">" + money(p.price) + "</p></a>";
    }).join("") + "</div>";
  }
  function product(id) {
    var p = find(id);
    if (!p) return notFound();
    document.title = p.name + " · Sluice Supply";
    app.innerHTML = "<article class=\"product\"><div class=\"swatch big " + p.color + "\"></div><div>" +
      "<h1>" + esc(p.name) + "</h1><p class=\"price\">" + money(p.price) + "</p><p>" + esc(p.blurb) +
      "</p><button id=\"add\" class=\"cta\" type=\"button\">Add to cart</button> " +
      "<a id=\"go-cart\" href=\"/demo/cart\" hidden>Go to cart →</a></div></article>";
    sl("track", "Product Viewed", { product_id: p.id, name: p.name, price: p.price, currency: "EUR" });
    document.getElementById("add").addEventListener("click", function () {
      var c = cart(), l = c.filter(function (x) { return x.product_id === p.id; })[0];
      if (l) l.quantity++;
      else c.push(item(p));
      saveCart(c);
      sl("track", "Product Added", { product_id: p.id, name: p.name, price: p.price, quantity: 1, currency: "EUR" });
      this.textContent = "Added ✓";
      document.getElementById("go-cart").hidden = false;
    });
  }
  function cartView() {
    var c = cart();
    document.title = "Cart · Sluice Supply";
    if (!c.length) {
      app.innerHTML = "<h1>Your cart</h1><p class=\"muted\">Empty, for now. <a href=\"/demo/\" id=\"browse\">Browse the catalog</a>.</p>";
      return;
    }
    app.innerHTML = "<h1>Your cart</h1><table class=\"lines\">" + c.map(function (l) {
      return "<tr><td>" + esc(l.name) + "</td><td>× " + l.quantity + "</td><td class=\"num\">" +
        money(l.price * l.quantity) + "</td></tr>";
    }).join("") + "<tr class=\"sum\"><td>Total</td><td></td><td class=\"num\">" + money(total(c)) +
      "</td></tr></table><div id=\"cart-offer\" class=\"cart-offer\" role=\"status\" aria-live=\"polite\" hidden></div>" +
      "<a class=\"cta\" id=\"checkout\" href=\"/demo/checkout\">Checkout</a>";
    sl("track", "Cart Viewed", { products: c, value: total(c), currency: "EUR" });
  }
  function checkout() {
    var c = cart();
    if (!c.length) return cartView();
    document.title = "Checkout · Sluice Supply";
    app.innerHTML = "<h1>Checkout</h1><form id=\"order\" class=\"order\">" +
      "<label>E-mail <input id=\"email\" type=\"email\" name=\"email\" required></label>" +
      "<label>Name <input id=\"name\" type=\"text\" name=\"name\" required></label>" +
      "<label>Address <textarea id=\"address\" name=\"address\" rows=\"2\" required></textarea></label>" +
      "<p class=\"muted small\">Demo: no payment is taken, nothing is shipped.</p>" +
      "<p class=\"price\">Total " + money(total(c)) + "</p>" +
      "<button id=\"place-order\" class=\"cta\" type=\"submit\">Place order</button></form>";
    sl("track", "Checkout Started", { products: c, value: total(c), currency: "EUR" });
    document.getElementById("order").addEventListener("submit", function (e) {
      e.preventDefault();
      var email = document.getElementById("email").value.trim().toLowerCase(),
        orderId = "o-" + Date.now().toString(36), h = 0;
      // A stable customer id derived from the e-mail; the e-mail itself goes in traits
      // (sluice can pseudonymise ids and forget a user on request).
      for (var i = 0; i < email.length; i++) h = (h * 31 + email.charCodeAt(i)) >>> 0;
      sl("identify", "cust-" + h.toString(36), { email: email, name: document.getElementById("name").value });
      sl("track", "Order Completed", { order_id: orderId, products: c, total: total(c), revenue: total(c), currency: "EUR" });
      saveCart([]);
      go("/demo/thanks");
    });
  }
  function thanks() {
    document.title = "Thank you · Sluice Supply";
    app.innerHTML = "<h1>Thank you!</h1><p>Your (imaginary) order is on its way down the canal.</p>" +
      "<p><a href=\"/demo/\" id=\"continue\">Continue shopping</a></p>";
  }
  function notFound() {
    document.title = "Not found · Sluice Supply";
    app.innerHTML = "<h1>Not found</h1><p><a href=\"/demo/\">Back to the catalog</a></p>";
  }

  function render() {
    var path = location.pathname.replace(/\/+$/, "") || "/demo", m;
    if (path === "/demo") catalog();
    else if ((m = path.match(/^\/demo\/product\/(\w+)$/))) product(m[1]);
    else if (path === "/demo/cart") cartView();
    else if (path === "/demo/checkout") checkout();
    else if (path === "/demo/thanks") thanks();
    else notFound();
    window.scrollTo(0, 0);
  }
  // pushState first, then render: sluice.js notices the URL change and records the
  // page view once the new title is set.
  function go(url) {
    history.pushState(null, "", url);
    render();
  }

  document.addEventListener("click", function (e) {
    var a = e.target.closest && e.target.closest("a[href^='/demo']");
    if (!a || e.defaultPrevented || e.button || e.metaKey || e.ctrlKey || e.shiftKey) return;
    e.preventDefault();
    if (a.getAttribute("href") !== location.pathname) go(a.getAttribute("href"));
  });
  window.addEventListener("popstate", render);

  document.getElementById("newsletter").addEventListener("submit", function (e) {
    e.preventDefault();
    // Only that someone signed up, and where: the address stays out of the event.
    sl("track", "Newsletter Signed Up", { location: "footer" });
    this.innerHTML = "<p class=\"ok\" id=\"nl-thanks\">Thanks! Watch your inbox.</p>";
  });

  var banner = document.getElementById("consent");
  function choose(advertising) {
    localStorage.setItem("demo_consent", advertising ? "all" : "analytics");
    sl("consent", { Analytics: true, Advertising: advertising });
    banner.hidden = true;
  }
  if (!localStorage.getItem("demo_consent")) banner.hidden = false;
  document.getElementById("consent-all").addEventListener("click", function () { choose(true); });
  document.getElementById("consent-analytics").addEventListener("click", function () { choose(false); });

  // Offers: sluice's default banner, except "cart-note" offers while the cart is open,
  // which the cart shows in its own style (returning false hands an offer to the banner).
  sl("onOffer", function (offer, record) {
    var slot = document.getElementById("cart-offer"), f = offer.fields || {};
    if (offer.template !== "cart-note" || !slot) return false;
    slot.innerHTML = "<div><strong>" + esc(f.title || "") + "</strong> " + esc(f.text || "") + "</div>" +
      (f.code ? "<button id=\"cart-offer-apply\" type=\"button\">Apply " + esc(f.code) + "</button>" : "") +
      "<button id=\"cart-offer-close\" type=\"button\" class=\"secondary\" aria-label=\"No thanks\">No thanks</button>";
    slot.hidden = false;
    var apply = document.getElementById("cart-offer-apply");
    if (apply) apply.addEventListener("click", function () {
      record("clicked");
      slot.innerHTML = "<div class=\"ok\">Code " + esc(f.code) + " applied: see it at checkout.</div>";
    });
    document.getElementById("cart-offer-close").addEventListener("click", function () {
      record("dismissed");
      slot.hidden = true;
    });
  });

  count();
  render();
})();
