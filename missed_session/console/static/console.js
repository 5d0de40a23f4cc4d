/* The console's live regions: refresh what changed, never what a person is editing.
 *
 * A live region (`[data-live-url]`) polls its URL every few seconds with the fingerprint of
 * what it shows; the server answers 204 until something changed. The new content is merged
 * into the page by key (`data-key` on every child that can change): a child that holds the
 * focus or a field with typed text (or a form sent back with an error, or an opened ladder)
 * is kept exactly as it is (its text, its caret, its focus), and only its keyed children
 * are merged (`data-merge`); every other child is replaced or removed. A card
 * that is kept while the server no longer lists it is marked "changed elsewhere", so the
 * person knows their form may now be refused.
 */
(function () {
  "use strict";
  var PERIOD = 3000;

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

  function poll(region) {
    if (document.hidden) return;
    var url = region.getAttribute("data-live-url");
    var version = region.getAttribute("data-live-version");
    var target = url + (url.indexOf("?") < 0 ? "?" : "&") + "v=" + encodeURIComponent(version);
    fetch(target, {credentials: "same-origin", headers: {"X-Live": "1"}})
      .then(function (response) {
        var redirect = response.headers.get("X-Live-Redirect");
        if (redirect) { window.location.assign(redirect); return null; }
        if (response.status !== 200) return null;
        return response.text();
      })
      .then(function (html) {
        if (!html) return;
        var holder = document.createElement("template");
        holder.innerHTML = html;
        var fresh = holder.content.querySelector("[data-live-url]");
        if (!fresh) return;
        merge(region, fresh);
        region.setAttribute("data-live-version", fresh.getAttribute("data-live-version"));
        region.dispatchEvent(new CustomEvent("live:updated", {bubbles: true}));
      })
      .catch(function () { /* offline for a moment: the next poll tries again */ });
  }

  function start() {
    var regions = document.querySelectorAll("[data-live-url]");
    regions.forEach(function (region) {
      window.setInterval(function () { poll(region); }, PERIOD);
    });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
