// Jobs API console: theme toggle, local-time tooltips, live updates (SSE with polling fallback, paused
// while the tab is hidden), copy buttons, select-all. No framework, no inline script (strict CSP).
(function () {
  "use strict";
  var THEME_KEY = "jobs-ui-theme";
  var POLL_MS = 2000;

  function systemDark() {
    return window.matchMedia && window.matchMedia("(prefers-color-scheme: dark)").matches;
  }

  function currentTheme() {
    var t = document.documentElement.getAttribute("data-theme");
    if (t === "dark" || t === "light") { return t; }
    return systemDark() ? "dark" : "light";
  }

  function setupTheme() {
    var btn = document.getElementById("theme-toggle");
    if (!btn) { return; }
    function label() {
      var dark = currentTheme() === "dark";
      btn.setAttribute("aria-pressed", dark ? "true" : "false");
      btn.title = dark ? "Switch to light mode" : "Switch to dark mode";
    }
    btn.addEventListener("click", function () {
      var next = currentTheme() === "dark" ? "light" : "dark";
      document.documentElement.setAttribute("data-theme", next);
      try { window.localStorage.setItem(THEME_KEY, next); } catch (e) { /* not kept */ }
      label();
    });
    label();
  }

  function localTimes(root) {
    var nodes = (root || document).querySelectorAll("time[datetime]");
    for (var i = 0; i < nodes.length; i++) {
      var d = new Date(nodes[i].getAttribute("datetime"));
      if (!isNaN(d.getTime())) { nodes[i].title = "Local: " + d.toLocaleString(); }
    }
  }

  function csrf() {
    var m = document.querySelector('meta[name="csrf-token"]');
    return m ? m.getAttribute("content") : "";
  }

  function setLive(text) {
    var el = document.getElementById("live-state");
    if (el) { el.textContent = text; }
  }

  // ---- live updates: refresh() is called on every event (or poll tick) while the tab is visible
  // everyMs: polling interval; pollOnly: skip the event stream (a job page wants progress, which is not
  // an event)
  function live(refresh, everyMs, pollOnly) {
    var interval = everyMs || POLL_MS;
    var timer = null;
    var source = null;
    var pending = false;
    var last = 0;
    var scheduled = false;
    function tick() {
      if (document.visibilityState !== "visible") { pending = true; return; }
      pending = false;
      // a burst of events costs one refresh a second, not one each
      var wait = last + 1000 - Date.now();
      if (wait > 0) {
        if (!scheduled) {
          scheduled = true;
          window.setTimeout(function () { scheduled = false; tick(); }, wait);
        }
        return;
      }
      last = Date.now();
      refresh();
    }
    function startPolling() {
      if (timer === null) { timer = window.setInterval(tick, interval); }
      setLive("Live: polling every " + interval / 1000 + " s.");
    }
    function stopPolling() {
      if (timer !== null) { window.clearInterval(timer); timer = null; }
    }
    function connect() {
      if (pollOnly || !window.EventSource || document.body.getAttribute("data-events") !== "on") {
        startPolling();
        return;
      }
      source = new EventSource("/events");
      source.onopen = function () { stopPolling(); setLive("Live: streaming events."); };
      source.onmessage = tick;
      source.addEventListener("job", tick);
      source.addEventListener("queue", tick);  // pause / resume / cap, from any session or the API
      source.addEventListener("reset", tick);
      // EventSource reconnects by itself (with Last-Event-ID) after a dropped stream; when the server
      // refuses (503: its streams are taken) it gives up: poll instead
      source.onerror = function () {
        if (source.readyState === EventSource.CLOSED) { startPolling(); }
      };
    }
    document.addEventListener("visibilitychange", function () {
      if (document.visibilityState === "visible") {
        setLive("Live.");
        if (pending) { tick(); }
      } else {
        setLive("Paused while the tab is hidden.");
      }
    });
    connect();
  }

  function fetchJSON(url) {
    return fetch(url, { headers: { "Accept": "application/json" }, credentials: "same-origin" })
      .then(function (r) { if (!r.ok) { throw new Error("HTTP " + r.status); } return r.json(); });
  }

  function fetchPage(url) {
    return fetch(url, { headers: { "Accept": "text/html" }, credentials: "same-origin" })
      .then(function (r) { if (!r.ok) { throw new Error("HTTP " + r.status); } return r.text(); })
      .then(function (text) { return new DOMParser().parseFromString(text, "text/html"); });
  }

  // ---- pages
  function jobPage() {
    var box = document.getElementById("job-summary");
    if (!box) { return; }
    var terminal = ["succeeded", "failed", "cancelled"];
    if (terminal.indexOf(box.getAttribute("data-status")) >= 0) { return; }
    live(function () {
      fetchJSON(box.getAttribute("data-state-url")).then(function (job) {
        if (job.status !== box.getAttribute("data-status")) { window.location.reload(); return; }
        var bar = document.getElementById("job-progress");
        if (job.progress !== null && job.progress !== undefined) {
          bar.value = job.progress;
          document.getElementById("job-progress-text").textContent = Math.round(job.progress * 100) + "%";
        }
        document.getElementById("job-message").textContent = job.message || "";
      }).catch(function () { setLive("Live: update failed; retrying."); });
    }, 1000, true);
  }

  function swapFrom(doc, id) {
    var fresh = doc.getElementById(id);
    var old = document.getElementById(id);
    if (fresh && old) { old.replaceWith(fresh); localTimes(fresh); }
  }

  function jobsPage() {
    var table = document.getElementById("jobs-table");
    if (!table) { return; }
    var all = document.getElementById("select-all");
    if (all) {
      all.addEventListener("change", function () {
        var boxes = table.querySelectorAll('tbody input[name="ids"]');
        for (var i = 0; i < boxes.length; i++) { boxes[i].checked = all.checked; }
      });
    }
    if (table.getAttribute("data-live") !== "jobs") { return; }
    live(function () {
      // never fight the user: no refresh while rows are selected or the table has focus
      if (table.querySelector("tbody input:checked") || table.contains(document.activeElement)) { return; }
      fetchPage(window.location.href).then(function (doc) { swapFrom(doc, "jobs-rows"); })
        .catch(function () { setLive("Live: update failed; retrying."); });
    });
  }

  // the overview and the queues page (both have the #queues table)
  function overviewPage() {
    var table = document.getElementById("queues");
    if (!table) { return; }
    live(function () {
      // never fight the user: not while they type a cap or sit on a button of the table
      if (table.contains(document.activeElement)) { return; }
      fetchPage(window.location.href).then(function (doc) {
        swapFrom(doc, "queues");
        swapFrom(doc, "task-stats");
      }).catch(function () { setLive("Live: update failed; retrying."); });
    });
  }

  function bulkPage() {
    var box = document.getElementById("bulk-op");
    if (!box || box.getAttribute("data-state") === "done" || box.getAttribute("data-state") === "failed") { return; }
    var timer = window.setInterval(function () {
      if (document.visibilityState !== "visible") { return; }
      fetchJSON(box.getAttribute("data-status-url")).then(function (op) {
        document.getElementById("bulk-state").textContent = op.state;
        document.getElementById("bulk-done").textContent = op.done;
        document.getElementById("bulk-changed").textContent = op.changed;
        document.getElementById("bulk-skipped").textContent = op.skipped;
        document.getElementById("bulk-resumed").textContent = op.resumed;
        document.getElementById("bulk-progress").value = op.done;
        box.setAttribute("data-state", op.state);
        if (op.state === "done" || op.state === "failed") { window.clearInterval(timer); }
      }).catch(function () { /* next tick */ });
    }, 1000);
  }

  function copyButtons() {
    var buttons = document.querySelectorAll("button[data-copy]");
    for (var i = 0; i < buttons.length; i++) {
      buttons[i].addEventListener("click", function (ev) {
        var btn = ev.currentTarget;
        var src = document.getElementById(btn.getAttribute("data-copy"));
        src.select();
        var done = function () { btn.textContent = "Copied"; };
        if (navigator.clipboard && window.isSecureContext) {
          navigator.clipboard.writeText(src.value).then(done, function () { document.execCommand("copy"); done(); });
        } else {
          document.execCommand("copy");
          done();
        }
      });
    }
  }

  document.addEventListener("DOMContentLoaded", function () {
    setupTheme();
    localTimes(document);
    copyButtons();
    jobPage();
    jobsPage();
    overviewPage();
    bulkPage();
  });
  window.jobsConsole = { csrf: csrf };
})();
