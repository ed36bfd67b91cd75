// weft console: live updates of the System Jobs list (server-sent events), confirmations for destructive
// actions and a keyboard shortcut. Everything works without this script; it only saves reloads and clicks.
"use strict";
(function () {
  // "/" focuses the first filter field, as in most consoles.
  document.addEventListener("keydown", function (e) {
    if (e.key === "/" && !/^(INPUT|SELECT|TEXTAREA)$/.test(document.activeElement.tagName)) {
      var first = document.querySelector("form.filters input, form.filters select");
      if (first) { e.preventDefault(); first.focus(); }
    }
  });
  // Forms marked data-confirm ask first (delete, bulk retry).
  document.addEventListener("submit", function (e) {
    var msg = e.target.getAttribute("data-confirm");
    if (msg && !window.confirm(msg)) { e.preventDefault(); }
  });
  // The System Jobs list: when the server says jobs changed, fetch the same page's table and swap it in.
  var table = document.getElementById("jobs-table");
  if (!table || !window.EventSource) { return; }
  var status = document.getElementById("live");
  var source = new EventSource("/console/jobs/events" + window.location.search);
  var busy = false;
  source.addEventListener("changed", function () {
    if (busy) { return; }
    busy = true;
    var url = window.location.pathname + window.location.search + (window.location.search ? "&" : "?") + "fragment=1";
    fetch(url, { credentials: "same-origin" }).then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) {
        if (html !== null) { table.innerHTML = html; }
        if (status) { status.textContent = "live · updated " + new Date().toLocaleTimeString(); }
      }).finally(function () { busy = false; });
  });
  source.onopen = function () { if (status) { status.textContent = "live"; } };
  source.onerror = function () { if (status) { status.textContent = "live updates paused (reconnecting)"; } };
})();
