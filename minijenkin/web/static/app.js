// Mini-Jenkin dashboard: actions, live regions and relative times.
//
// Every state-changing request sends the page's CSRF token in the
// X-CSRF-Token header (see minijenkin/web/session.py). Text that comes from
// the server as JSON is inserted with textContent. The only HTML inserted is
// what the server rendered and escaped itself (pages, log lines).
"use strict";

(function () {
  const csrfToken = () => document.querySelector('meta[name="csrf-token"]').content;

  function flash(message, isError) {
    const box = document.getElementById("flash");
    if (!box) return;
    box.textContent = message;
    box.classList.toggle("error", Boolean(isError));
    box.hidden = false;
    clearTimeout(flash.timer);
    flash.timer = setTimeout(() => { box.hidden = true; }, isError ? 8000 : 4000);
  }

  async function post(url) {
    const response = await fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "X-CSRF-Token": csrfToken(), "Accept": "application/json" },
    });
    let body = null;
    try { body = await response.json(); } catch (error) { body = null; }
    if (!response.ok) {
      const detail = body && body.detail ? body.detail : `HTTP ${response.status}`;
      throw new Error(detail);
    }
    return body;
  }

  // Buttons with data-action POST to that API path; event delegation keeps
  // them working after a live region is swapped.
  document.addEventListener("click", async (event) => {
    const button = event.target.closest("button[data-action]");
    if (!button) return;
    event.preventDefault();
    if (button.dataset.confirm && !window.confirm(button.dataset.confirm)) return;
    button.disabled = true;
    try {
      await post(button.dataset.action);
      flash(button.dataset.done || "Done");
      refreshLive();
    } catch (error) {
      flash(`${button.textContent.trim()} failed: ${error.message}`, true);
    } finally {
      button.disabled = false;
    }
  });

  // Live regions: elements with data-live are replaced by the same element
  // of a fresh copy of the page whenever their event stream sends `changed`.
  let refreshing = false;
  let refreshAgain = false;

  async function refreshLive() {
    if (refreshing) { refreshAgain = true; return; }
    refreshing = true;
    try {
      const response = await fetch(window.location.href, {
        credentials: "same-origin", headers: { "Accept": "text/html" }, redirect: "manual",
      });
      if (response.ok) {
        const fresh = new DOMParser().parseFromString(await response.text(), "text/html");
        for (const region of document.querySelectorAll("[data-live]")) {
          const replacement = fresh.querySelector(`[data-live="${region.dataset.live}"]`);
          if (replacement) region.replaceWith(document.importNode(replacement, true));
        }
        updateTimes();
        document.dispatchEvent(new CustomEvent("minijenkin:refreshed"));
      }
    } catch (error) {
      // A failed refresh is retried at the next event.
    } finally {
      refreshing = false;
      if (refreshAgain) { refreshAgain = false; refreshLive(); }
    }
  }
  window.minijenkinRefresh = refreshLive;

  function subscribe() {
    const streams = new Set();
    for (const region of document.querySelectorAll("[data-live][data-events]")) {
      streams.add(region.dataset.events);
    }
    for (const url of streams) {
      const source = new EventSource(url);
      source.addEventListener("changed", () => refreshLive());
    }
    const timed = document.querySelector("[data-live][data-refresh-seconds]");
    if (timed) {
      setInterval(refreshLive, Number(timed.dataset.refreshSeconds) * 1000);
    }
  }

  // Absolute UTC times from the server become relative ones ("5 min ago").
  function relative(date) {
    const seconds = Math.round((Date.now() - date.getTime()) / 1000);
    if (seconds < 45) return "just now";
    const minutes = Math.round(seconds / 60);
    if (minutes < 60) return `${minutes} min ago`;
    const hours = Math.round(minutes / 60);
    if (hours < 36) return `${hours} h ago`;
    const days = Math.round(hours / 24);
    return days < 60 ? `${days} days ago` : date.toISOString().slice(0, 10);
  }

  function updateTimes() {
    for (const element of document.querySelectorAll("time[datetime]")) {
      const date = new Date(element.getAttribute("datetime"));
      if (!Number.isNaN(date.getTime())) element.textContent = relative(date);
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    updateTimes();
    setInterval(updateTimes, 15000);
    subscribe();
  });
})();
