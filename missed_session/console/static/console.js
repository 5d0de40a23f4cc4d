/* The console's live regions: refresh what changed, never what a person is editing.
 *
 * A live region (`[data-live-url]`) long-polls its URL with the fingerprint of what it shows
 * and the change cursor the server last sent (`X-Live-Cursor`): the server holds the request
 * until something it shows changed (200, at once) or about 25 s passed (204), and the region
 * asks again straight away; a hidden tab stops asking until it is shown. The new content is merged
 * into the page by key (`data-key` on every child that can change): a child that holds the
 * focus or a field with typed text (or a form sent back with an error, or an opened ladder)
 * is kept exactly as it is (its text, its caret, its focus), and only its keyed children
 * are merged (`data-merge`); every other child is replaced or removed. A card
 * that is kept while the server no longer lists it is marked "changed elsewhere", so the
 * person knows their form may now be refused.
 */
(function () {
  "use strict";
  var AGAIN = 100;    /* ms before the next long poll after an answer */
  var RETRY = 5000;   /* ms after an error or an answer that is neither 200 nor 204 */

  function dirty(root) {
    var fields = root.querySelectorAll("input, textarea, select");
    for (var i = 0; i < fields.length; i++) {
      var f = fields[i];
      if (f.type === "hidden" || f.type === "submit") continue;
      if (f.type === "checkbox" || f.type === "radio") {
        if (f.checked !== f.defaultChecked) return true;
      } else if (f.tagName === "SELECT") {
        for (var j = 0; j < f.options.length; j++) {
          if (f.options[j].selected !== f.options[j].defaultSelected) return true;
        }
      } else if (f.value !== f.defaultValue) {
        return true;
      }
    }
    return false;
  }

  function busy(node) {
    if (node.nodeType !== 1) return false;
    /* A form the server sent back with an error keeps its error and text until sent again. */
    if (node.hasAttribute("data-hold") || node.querySelector("[data-hold]")) return true;
    /* A notice's ladder someone opened stays open until they move on. */
    if (node.matches("details.ladder[open]") || node.querySelector("details.ladder[open]")) {
      return true;
    }
    var active = document.activeElement;
    if (active && active !== document.body && node.contains(active)) return true;
    return dirty(node);
  }

  function keyOf(node, index) {
    return node.nodeType === 1 && node.hasAttribute("data-key")
      ? node.getAttribute("data-key") : "#" + index;
  }

  function keyedChildren(node) {
    var out = [];
    for (var i = 0; i < node.children.length; i++) out.push(node.children[i]);
    return out;
  }

  /* Merge `fresh`'s children into `current`'s, keeping busy children where they are. */
  function merge(current, fresh) {
    var old = keyedChildren(current), byKey = {}, kept = {};
    old.forEach(function (child, i) { byKey[keyOf(child, i)] = child; });
    var incoming = keyedChildren(fresh), incomingKeys = {};
    incoming.forEach(function (child, i) { incomingKeys[keyOf(child, i)] = true; });
    old.forEach(function (child, i) {
      var key = keyOf(child, i);
      if (busy(child)) {
        kept[key] = child;
        if (!incomingKeys[key]) child.setAttribute("data-gone", "changed elsewhere");
      } else {
        current.removeChild(child);
      }
    });
    var cursor = current.firstElementChild;
    incoming.forEach(function (child, i) {
      var key = keyOf(child, i), keep = kept[key];
      if (keep) {
        keep.removeAttribute("data-gone");
        if (keep.children.length && child.children.length &&
            keep.hasAttribute("data-merge")) {
          merge(keep, child);
        }
        cursor = keep.nextElementSibling;
        return;
      }
      current.insertBefore(document.importNode(child, true), cursor);
    });
  }

  function later(region, ms) {
    window.setTimeout(function () { poll(region); }, ms);
  }

  function poll(region) {
    if (document.hidden) { region.setAttribute("data-live-paused", ""); return; }
    var url = region.getAttribute("data-live-url");
    var version = region.getAttribute("data-live-version");
    var cursor = region.getAttribute("data-live-cursor");
    var target = url + (url.indexOf("?") < 0 ? "?" : "&") + "v=" + encodeURIComponent(version) +
      (cursor === null ? "" : "&c=" + encodeURIComponent(cursor));
    fetch(target, {credentials: "same-origin", headers: {"X-Live": "1"}})
      .then(function (response) {
        var redirect = response.headers.get("X-Live-Redirect");
        if (redirect) { window.location.assign(redirect); return null; }
        var next = response.headers.get("X-Live-Cursor");
        if (next !== null) region.setAttribute("data-live-cursor", next);
        if (response.status === 204) { later(region, AGAIN); return null; }
        if (response.status !== 200) { later(region, RETRY); return null; }
        return response.text();
      })
      .then(function (html) {
        if (html === null || html === undefined) return;
        try {
          var holder = document.createElement("template");
          holder.innerHTML = html;
          var fresh = holder.content.querySelector("[data-live-url]");
          if (fresh) {
            merge(region, fresh);
            region.setAttribute("data-live-version", fresh.getAttribute("data-live-version"));
            region.dispatchEvent(new CustomEvent("live:updated", {bubbles: true}));
          }
        } catch (e) { /* an answer that cannot be merged: the next one replaces it */ }
        later(region, AGAIN);
      })
      .catch(function () { later(region, RETRY); /* offline for a moment */ });
  }

  function start() {
    var regions = document.querySelectorAll("[data-live-url]");
    regions.forEach(function (region) { poll(region); });
    document.addEventListener("visibilitychange", function () {
      if (document.hidden) return;
      document.querySelectorAll("[data-live-paused]").forEach(function (region) {
        region.removeAttribute("data-live-paused");
        poll(region);
      });
    });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
