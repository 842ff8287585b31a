// Copy buttons for the console's copyable URLs (.copyable a) and CLI lines (.cli code): one small button after
// each, added here so that a page without this script (or without JavaScript) shows no button that does nothing.
// A click writes the text to the clipboard, marks the button (data-copied, for tests and styles) and says
// "Copied" in the page's live region (#flash). Content swapped in by htmx gets its buttons on htmx:afterSettle.
// No inline code anywhere: loaded with defer from base.html, allowed by the CSP's script-src 'self'.
(function () {
  "use strict";

  function copied(button, text) {
    button.dataset.copied = text;
    button.textContent = "Copied";
    var flash = document.getElementById("flash");
    if (flash) { flash.textContent = "Copied to the clipboard."; }
    window.setTimeout(function () { button.textContent = "Copy"; }, 2000);
  }

  function copy(button, text) {
    if (navigator.clipboard && navigator.clipboard.writeText) {
      navigator.clipboard.writeText(text).then(function () { copied(button, text); }, function () {
        button.dataset.copied = "";
        var flash = document.getElementById("flash");
        if (flash) { flash.textContent = "The browser refused the clipboard: select the text and copy it."; }
      });
    }
  }

  function add(root) {
    var targets = root.querySelectorAll(".copyable a, .cli code");
    for (var i = 0; i < targets.length; i++) {
      var target = targets[i];
      var holder = target.closest(".copyable, .cli");
      if (!holder || holder.querySelector(".copy")) { continue; }
      var button = document.createElement("button");
      button.type = "button";
      button.className = "copy";
      button.textContent = "Copy";
      var what = holder.classList.contains("cli") ? "the command" : target.textContent;
      button.setAttribute("aria-label", "Copy " + what);
      button.addEventListener("click", copy.bind(null, button, target.textContent.trim()));
      holder.appendChild(document.createTextNode(" "));
      holder.appendChild(button);
    }
  }

  add(document);
  document.addEventListener("htmx:afterSettle", function (event) { add(event.target); });
})();
