// faafo's pages that still change, kept up to date while they are looked
// at: every few seconds (while the tab is visible) the script fetches its
// page's URL again and puts in the parts that changed. On the first page:
// the counts by status, the list of finished fractals (the entries that
// did not change keep their nodes, so their images stay on screen) and
// the page links. On a fractal's page, while it is pending or running: its
// details, then its image or its error. It stops once the fresh page no
// longer links this script (the fractal is final) or is a 404 (it was
// deleted), after putting that page in. The server renders the page in one
// place; without this script the page is the same, reloaded by hand.
// A fractal's page says its news (a new status, or that the fractal was
// deleted) in a live region of its own, for screen readers: the article
// is put in anew, and a region that is replaced announces nothing.
// A page that said the database is unavailable (a 503) is loaded again
// once its URL answers.
(function () {
  "use strict";
  var PERIOD = 3000;
  var LONGEST = 60000;
  // A request that has not ended in this long (a laptop woken from sleep,
  // a network that changed under it) is given up and counted as failed,
  // or no poll would start until the connection died, minutes later.
  var PATIENCE = 15000;
  // What may change: the first page has all three, a fractal's page main.
  var PARTS = ["header .counts", "main", "nav[aria-label=pages]"];
  // This script's path, without its ?v=: what a page that follows links.
  var SELF = document.currentScript.getAttribute("src").split("?")[0];
  // The page's own address, its query (a page's `until`) included.
  var HERE = location.pathname + location.search;
  // This page is the 503's, not the one asked for.
  var BROKEN = !!document.querySelector("main.unavailable");
  // A 503 page's back-off, kept across the reloads it makes: a database
  // that comes and goes must not have every open tab load the page every
  // few seconds.
  var STORED = "faafo.live.delay";
  var delay = PERIOD;
  try {
    if (BROKEN) {
      delay = Math.min(Number(sessionStorage.getItem(STORED)) || PERIOD, LONGEST);
    } else {
      sessionStorage.removeItem(STORED);
    }
  } catch (e) {
    // No session storage (a privacy setting): no memory of the back-off.
  }
  // When the last poll ended (ms): a tab shown again during a back-off
  // asks once the back-off is over, not at once.
  var ended = 0;
  var timer = null;
  var busy = false;
  var over = false;
  // Made now, empty, so that the screen reader knows the region before it
  // changes: one made and filled at once is often not read.
  var news = document.createElement("p");
  news.className = "news";
  news.setAttribute("role", "status");
  document.body.appendChild(news);

  // What a fractal's page says of its fractal in a few words, to compare
  // before and after a poll; "" on the first page.
  function headline(root) {
    var status = root.querySelector("main .status");
    if (status) {
      return "Status: " + status.textContent;
    }
    var gone = root.querySelector("main .empty");
    return gone ? gone.textContent : "";
  }

  function visible() {
    return document.visibilityState !== "hidden";
  }

  function later(ms) {
    clearTimeout(timer);
    timer = visible() && !over ? setTimeout(poll, ms) : null;
  }

  // Makes `now` what `next` is, keeping the children that did not change
  // where they are: a node taken out and put back loses the keyboard's
  // focus (and the reader's scroll anchor), so only the new ones go in
  // and only the gone ones go out. A child whose attributes alone changed
  // (the pages' links, whose address carries the newest fractal's time)
  // is changed in place.
  function merge(now, next) {
    if (now.outerHTML === next.outerHTML) {
      return;
    }
    var focused = document.activeElement;
    var kept = {};
    var old = Array.prototype.slice.call(now.children);
    old.forEach(function (child) {
      (kept[child.outerHTML] = kept[child.outerHTML] || []).push(child);
    });
    var fresh = Array.prototype.slice.call(next.children);
    var wanted = fresh.map(function (child) {
      var same = kept[child.outerHTML];
      return (same && same.shift()) || null;
    });
    wanted = wanted.map(function (node, i) {
      if (node) {
        return node;
      }
      var child = fresh[i];
      var here = old[i];
      if (here && wanted.indexOf(here) < 0 && here.tagName === child.tagName &&
          here.innerHTML === child.innerHTML) {
        Array.prototype.slice.call(here.attributes).forEach(function (a) {
          if (!child.hasAttribute(a.name)) {
            here.removeAttribute(a.name);
          }
        });
        Array.prototype.forEach.call(child.attributes, function (a) {
          here.setAttribute(a.name, a.value);
        });
        return here;
      }
      return document.adoptNode(child);
    });
    Array.prototype.slice.call(now.children).forEach(function (child) {
      if (wanted.indexOf(child) < 0) {
        child.remove();
      }
    });
    wanted.forEach(function (node, i) {
      var here = now.children[i];
      if (here !== node) {
        now.insertBefore(node, here || null);
      }
    });
    // The keyboard's focus was on something taken out (an entry pushed
    // off the first page, a fractal's details put in anew): it would fall
    // back to the start of the document. It goes to the part instead.
    if (focused && focused !== document.body && !document.body.contains(focused)) {
      if (!now.hasAttribute("tabindex")) {
        now.setAttribute("tabindex", "-1");
      }
      now.focus({ preventScroll: true });
    }
  }

  // Whether a fresh answer is one of this site's pages (not an
  // authenticating proxy's login page, say, reached by a redirect).
  function ours(response, fresh) {
    var type = response.headers.get("content-type") || "";
    return !response.redirected && type.indexOf("text/html") === 0 &&
      !!fresh.querySelector("main");
  }

  function poll() {
    timer = null;
    if (busy || !visible()) {
      return;
    }
    busy = true;
    var abort = typeof AbortController === "function" ? new AbortController() : null;
    var patience = abort ? setTimeout(function () { abort.abort(); }, PATIENCE) : null;
    fetch(HERE, {
      cache: "no-store",
      credentials: "same-origin",
      signal: abort ? abort.signal : undefined,
    })
      .then(function (response) {
        // A 404 is news too: the fractal was deleted.
        if (!response.ok && response.status !== 404) {
          throw new Error("HTTP " + response.status);
        }
        return response.text().then(function (text) {
          var fresh = new DOMParser().parseFromString(text, "text/html");
          if (!ours(response, fresh)) {
            throw new Error("not one of this site's pages");
          }
          return fresh;
        });
      })
      .then(function (fresh) {
        if (BROKEN) {
          // The page can be shown now: all of it, as asked for. Should it
          // fail again, its 503 page waits longer than this one did.
          over = true;
          try {
            sessionStorage.setItem(STORED, String(Math.min(delay * 2, LONGEST)));
          } catch (e) {
            // As above.
          }
          location.reload();
          return;
        }
        var before = headline(document);
        PARTS.forEach(function (selector) {
          var now = document.querySelector(selector);
          var next = fresh.querySelector(selector);
          if (now && next) {
            merge(now, next);
          }
        });
        var after = headline(document);
        if (after !== before) {
          news.textContent = after;
        }
        // The server links this script only in a page that still changes.
        over = !fresh.querySelector('script[src^="' + SELF + '"]');
        delay = PERIOD;
      })
      .catch(function () {
        // The API is restarting, or wants a token this page cannot send
        // (protect_reads): keep what is shown, ask again less often.
        delay = Math.min(delay * 2, LONGEST);
      })
      .finally(function () {
        clearTimeout(patience);
        busy = false;
        ended = Date.now();
        later(delay);
      });
  }

  document.addEventListener("visibilitychange", function () {
    if (visible()) {
      // At once after a success (the page may be old by now); after a
      // failure, once the back-off since it is over.
      later(delay === PERIOD ? 0 : Math.max(0, ended + delay - Date.now()));
    } else {
      clearTimeout(timer);
      timer = null;
    }
  });
  later(delay);
})();
