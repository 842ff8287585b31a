// Loading states of the console's action forms (templates/component/*: forms with data-busy). htmx disables the
// form's button (hx-disabled-elt) and marks the form htmx-request (console.css shows its "Deploying…" text); this
// marks the region being replaced aria-busy while the request is in flight, and once the answer is in gives the
// focus back to the button the user pressed (same id in the new markup), or to the region when that is gone.
(function () {
  var pending = null;
  document.addEventListener("htmx:beforeRequest", function (e) {
    var form = e.detail.elt;
    if (!form || !form.hasAttribute || !form.hasAttribute("data-busy")) return;
    var button = form.querySelector("button[id]");
    pending = { xhr: e.detail.xhr, button: button ? button.id : null, region: e.detail.target };
    if (e.detail.target) e.detail.target.setAttribute("aria-busy", "true");
  });
  // only the action's own request: a card's status poll may settle while the action is in flight
  function ours(e) { return pending && e.detail && e.detail.xhr === pending.xhr; }
  document.addEventListener("htmx:afterRequest", function (e) {
    if (ours(e) && pending.region && pending.region.isConnected) pending.region.removeAttribute("aria-busy");
  });
  document.addEventListener("htmx:afterSettle", function (e) {
    if (!ours(e)) return;
    var again = pending.button && document.getElementById(pending.button);
    var region = pending.region && pending.region.id && document.getElementById(pending.region.id);
    pending = null;
    if (again && !again.disabled) again.focus();
    else if (region) { region.removeAttribute("aria-busy"); region.focus(); }
  });
})();
