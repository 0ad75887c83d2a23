/* PixelTracking conversions, t.js v1 (docs/conversions.md). No dependencies, no cookies.
 * <script async src="https://TRACKER/t.js?v=1" data-lifetime-days="30"></script>
 * pixeltrack.convert("purchase", {value: "42.50", currency: "EUR", id: "order-1"}) */
(function (w) {
  "use strict";
  var KEY = "pixeltrack.pt", me = document.currentScript, url = "/e", days = 30, pt = null;
  if (me && me.src) {
    var src = new URL(me.src, location.href);
    url = src.origin + src.pathname.replace(/t\.js$/, "e");
    days = parseFloat(me.getAttribute("data-lifetime-days")) || days;
  }
  function box() {
    try { return w.localStorage; } catch (e) { return null; }
  }
  try { pt = new URL(location.href).searchParams.get("pt"); } catch (e) { /* no URL API */ }
  if (pt) {
    try { box().setItem(KEY, JSON.stringify({pt: pt, exp: Date.now() + days * 864e5})); } catch (e) { /* private mode */ }
  }
  function token() {
    if (pt) return pt;
    try {
      var kept = JSON.parse(box().getItem(KEY));
      if (kept && kept.exp > Date.now()) return kept.pt;
      box().removeItem(KEY);
    } catch (e) { /* nothing kept */ }
    return null;
  }
  function convert(name, opts) {
    var t = token(), body;
    opts = opts || {};
    if (!t || !name) return false;
    body = {pt: t, name: String(name)};
    if (opts.value != null) { body.value = String(opts.value); body.currency = opts.currency; }
    if (opts.id != null) body.id = String(opts.id);
    body = JSON.stringify(body);
    try {
      if (navigator.sendBeacon && navigator.sendBeacon(url, body)) return true;
    } catch (e) { /* fall back to fetch */ }
    try {
      fetch(url, {method: "POST", body: body, keepalive: true, credentials: "omit",
        headers: {"Content-Type": "text/plain"}});
      return true;
    } catch (e) { return false; }
  }
  var api = w.pixeltrack = w.pixeltrack || {};
  api.version = "1";
  api.convert = convert;
  api.token = token;
})(window);
