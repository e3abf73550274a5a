/* iomt dashboard: progressive enhancement only. Every page works without this file:
   forms post and redirect, the heatmap toggle is a CSS checkbox. With it: the alert feed
   updates live over server-sent events, "acknowledge" is one click without a reload, and
   the heatmap opacity follows a slider. No dependencies. */
(function () {
  "use strict";

  /* Live alert feed (server-sent events). The server sends each alert already rendered
     (and HTML-escaped) by the same Jinja partial as the page, so markup stays in one place. */
  function startFeed(list) {
    if (!("EventSource" in window)) return;
    var status = document.querySelector("[data-feed-status]");
    var announcer = document.querySelector("[data-feed-announce]");
    var source = new EventSource(list.getAttribute("data-stream-url"));
    function setState(state, text) {
      if (!status) return;
      status.setAttribute("data-state", state);
      status.textContent = text;
    }
    source.addEventListener("open", function () { setState("live", "Live: new alerts appear here"); });
    source.addEventListener("error", function () { setState("reconnecting", "Connection lost, reconnecting\u2026"); });
    source.addEventListener("alert", function (event) {
      var data;
      try { data = JSON.parse(event.data); } catch (e) { return; }
      if (document.getElementById("alert-" + data.id)) return; /* already shown */
      var empty = list.querySelector("[data-empty]");
      if (empty) empty.remove();
      list.insertAdjacentHTML("afterbegin", data.html);
      var item = document.getElementById("alert-" + data.id);
      if (item) { item.classList.add("new"); bindAck(item); }
      if (announcer) announcer.textContent = "New alert: " + data.title;
      var count = document.querySelector("[data-open-count]");
      if (count) count.textContent = String(Number(count.textContent || "0") + 1);
    });
    window.addEventListener("beforeunload", function () { source.close(); });
  }

  /* One-click acknowledge: the form still works without JS; with JS it posts via fetch. */
  function bindAck(root) {
    var forms = root.matches && root.matches("form[data-ack]") ? [root] : root.querySelectorAll("form[data-ack]");
    Array.prototype.forEach.call(forms, function (form) {
      if (form.dataset.bound) return;
      form.dataset.bound = "1";
      form.addEventListener("submit", function (event) {
        event.preventDefault();
        var button = form.querySelector("button");
        if (button) { button.disabled = true; button.textContent = "Acknowledging\u2026"; }
        fetch(form.action, {
          method: "POST",
          headers: { "Accept": "application/json" },
          body: new FormData(form),
          credentials: "same-origin"
        }).then(function (response) {
          if (!response.ok) throw new Error("HTTP " + response.status);
          return response.json();
        }).then(function (data) {
          var item = form.closest(".alert-item");
          if (item) {
            item.classList.add("acked");
            var state = item.querySelector("[data-ack-state]");
            if (state) state.textContent = "Acknowledged by " + data.acknowledged_by + " at " + data.acknowledged_at;
          }
          form.replaceWith(document.createTextNode("\u2714 Acknowledged"));
          var count = document.querySelector("[data-open-count]");
          if (count) count.textContent = String(Math.max(0, Number(count.textContent || "1") - 1));
        }).catch(function (error) {
          if (button) { button.disabled = false; button.textContent = "Acknowledge (retry)"; }
          var state = form.closest(".alert-item") && form.closest(".alert-item").querySelector("[data-ack-state]");
          if (state) state.textContent = "Could not acknowledge: " + error.message;
        });
      });
    });
  }

  /* Heatmap opacity slider (the on/off toggle itself is pure CSS). */
  function bindHeatmap(slider) {
    var target = document.querySelector(slider.getAttribute("data-heatmap-opacity"));
    function apply() { if (target) target.style.setProperty("--heatmap-opacity", String(slider.value / 100)); }
    slider.addEventListener("input", apply);
    apply();
  }

  /* Ward: re-read the server-rendered table when an alert arrives (and every 30 s), so
     the urgency order stays current without a reload; focus and scroll are kept. */
  function liveWard(table) {
    var busy = false;
    var status = document.querySelector("[data-ward-status]");
    function refresh() {
      if (busy || document.hidden) return;
      busy = true;
      fetch(table.getAttribute("data-refresh-url"), { credentials: "same-origin" })
        .then(function (response) {
          if (!response.ok) throw new Error("HTTP " + response.status);
          return response.text();
        })
        .then(function (html) {
          var fresh = new DOMParser().parseFromString(html, "text/html").getElementById("ward-table");
          var active = document.activeElement && table.contains(document.activeElement) ? document.activeElement.getAttribute("href") : null;
          if (fresh) table.querySelector("tbody").replaceWith(fresh.querySelector("tbody"));
          var count = document.querySelector("[data-open-count]");
          var freshCount = fresh && fresh.ownerDocument.querySelector("[data-open-count]");
          if (count && freshCount) count.textContent = freshCount.textContent;
          if (active) { var link = table.querySelector('a[href="' + active + '"]'); if (link) link.focus(); }
          if (status) status.textContent = "Updated " + new Date().toLocaleTimeString();
        })
        .catch(function () { if (status) status.textContent = "Could not update; retrying"; })
        .then(function () { busy = false; });
    }
    setInterval(refresh, 30000);
    if ("EventSource" in window && table.getAttribute("data-stream-url")) {
      var source = new EventSource(table.getAttribute("data-stream-url"));
      source.addEventListener("alert", refresh);
      window.addEventListener("beforeunload", function () { source.close(); });
    }
  }

  document.addEventListener("DOMContentLoaded", function () {
    var ward = document.querySelector("table[data-refresh-url]");
    if (ward) liveWard(ward);
    var list = document.querySelector("ul[data-stream-url]");
    if (list) startFeed(list);
    bindAck(document);
    Array.prototype.forEach.call(document.querySelectorAll("[data-heatmap-opacity]"), bindHeatmap);
  });
})();
