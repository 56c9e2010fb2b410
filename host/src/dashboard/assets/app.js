// elihu's dashboard script: the only JavaScript it has. Pages are rendered
// on the server; this refreshes a page's live part and wires "select all".
"use strict";
(function () {
  const all = document.getElementById("select-all");
  if (all) {
    all.addEventListener("change", function () {
      document.querySelectorAll("input[name=id]").forEach(function (box) { box.checked = all.checked; });
    });
  }
  // <main data-live="MS">: fetch this page's <main> again every MS
  // milliseconds while the tab is visible, until the server says the page
  // is no longer live (a job that finished).
  const main = document.querySelector("main[data-live]");
  if (!main) return;
  const every = Number(main.dataset.live) || 2000;
  function refresh() {
    if (document.visibilityState !== "visible") { setTimeout(refresh, every); return; }
    fetch(location.href, { headers: { "X-Elihu-Part": "main" }, credentials: "same-origin", cache: "no-store" })
      .then(function (response) {
        if (response.redirected || !response.ok) { setTimeout(refresh, every * 2); return; }
        const live = response.headers.get("X-Elihu-Live");
        return response.text().then(function (html) {
          main.innerHTML = html;
          if (live) setTimeout(refresh, every);
        });
      })
      .catch(function () { setTimeout(refresh, every * 2); });
  }
  setTimeout(refresh, every);
})();
