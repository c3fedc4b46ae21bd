// faafo's index page, kept up to date while it is looked at: every few
// seconds (while the tab is visible) it fetches its own URL again and puts
// in the parts that changed: the counts by status, the list of finished
// fractals (the entries that did not change keep their nodes, so their
// images stay on screen) and the page links. The server renders the page
// in one place; without this script the page is the same, reloaded by hand.
// Served only on the first page: the later pages are history.
(function () {
  "use strict";
  var PERIOD = 3000;
  var LONGEST = 60000;
  var PARTS = ["header .counts", "main", "nav[aria-label=pages]"];
  var delay = PERIOD;
  var timer = null;
  var busy = false;

  function visible() {
    return document.visibilityState !== "hidden";
  }

  function later(ms) {
    clearTimeout(timer);
    timer = visible() ? setTimeout(poll, ms) : null;
  }

  // Makes `now` what `next` is, keeping the children that did not change.
  function merge(now, next) {
    if (now.outerHTML === next.outerHTML) {
      return;
    }
    var kept = {};
    Array.prototype.forEach.call(now.children, function (child) {
      kept[child.outerHTML] = child;
    });
    var children = Array.prototype.slice.call(next.children).map(function (child) {
      return kept[child.outerHTML] || document.adoptNode(child);
    });
    now.replaceChildren.apply(now, children);
  }

  function poll() {
    timer = null;
    if (busy || !visible()) {
      return;
    }
    busy = true;
    fetch(location.pathname, { cache: "no-store", credentials: "same-origin" })
      .then(function (response) {
        if (!response.ok) {
          throw new Error("HTTP " + response.status);
        }
        return response.text();
      })
      .then(function (text) {
        var fresh = new DOMParser().parseFromString(text, "text/html");
        PARTS.forEach(function (selector) {
          var now = document.querySelector(selector);
          var next = fresh.querySelector(selector);
          if (now && next) {
            merge(now, next);
          }
        });
        delay = PERIOD;
      })
      .catch(function () {
        // The API is restarting, or wants a token this page cannot send
        // (protect_reads): keep what is shown, ask again less often.
        delay = Math.min(delay * 2, LONGEST);
      })
      .finally(function () {
        busy = false;
        later(delay);
      });
  }

  document.addEventListener("visibilitychange", function () {
    if (visible()) {
      later(0);
    } else {
      clearTimeout(timer);
      timer = null;
    }
  });
  later(PERIOD);
})();
