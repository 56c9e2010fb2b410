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
  // <pre id="live-log" data-job="ID">: the job's log lines as its runs
  // write them, from GET /v1/events?job=ID (the session cookie admits it),
  // kept here across refreshes of <main>; data-connected is set once the
  // stream is open.
  let logLines = null;
  let logOpen = false;
  function showLog() {
    const pre = document.getElementById("live-log");
    if (!pre || !logLines) return;
    pre.textContent = logLines.join("\n");
    if (logOpen) pre.dataset.connected = "1";
  }
  const firstLog = document.getElementById("live-log");
  if (firstLog && window.EventSource) {
    logLines = [];
    const source = new EventSource("/v1/events?job=" + encodeURIComponent(firstLog.dataset.job));
    source.addEventListener("open", function () { logOpen = true; showLog(); });
    source.addEventListener("log", function (e) {
      const line = JSON.parse(e.data).line;
      logLines.push(line.level + " " + line.message);
      if (logLines.length > 500) logLines.shift();
      showLog();
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
          showLog();
          if (live) setTimeout(refresh, every);
        });
      })
      .catch(function () { setTimeout(refresh, every * 2); });
  }
  setTimeout(refresh, every);
})();
