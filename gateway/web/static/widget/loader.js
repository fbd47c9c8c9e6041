// The embed snippet: <script src="https://totem.example/widget.js" data-token="pk_…" async></script>
// Asks the API (cross-origin: the token's allowed_origins decide) which provider the token books for, then
// mounts that provider's booking page in an iframe right after this script (or into data-target's element),
// sized to its content. A site the token does not allow is told so, in place of the widget.
(function () {
  "use strict";
  var script = document.currentScript;
  if (!script) return;
  var base = new URL(script.src).origin;
  var token = script.getAttribute("data-token") || "";
  var host = document.createElement("div");
  host.className = "totem-widget";
  var target = script.getAttribute("data-target");
  var mountPoint = target ? document.querySelector(target) : null;
  if (mountPoint) mountPoint.appendChild(host); else script.insertAdjacentElement("afterend", host);

  function refuse(text) {
    var note = document.createElement("p");
    note.setAttribute("role", "alert");
    note.textContent = text;
    host.replaceChildren(note);
  }

  fetch(base + "/v1/providers?limit=1", { headers: { Authorization: "Bearer " + token, Accept: "application/json" } })
    .then(function (response) {
      if (!response.ok) throw new Error(String(response.status));
      return response.json();
    })
    .then(function (page) {
      var provider = page.items[0];
      if (!provider) throw new Error("no provider");
      var frame = document.createElement("iframe");
      frame.src = base + "/widget/" + encodeURIComponent(provider.slug) + "?token=" + encodeURIComponent(token);
      frame.title = "Book with " + provider.name;
      frame.setAttribute("allow", "payment");
      frame.style.cssText = "width:100%;max-width:640px;height:720px;border:0;display:block;";
      window.addEventListener("message", function (event) {
        if (event.origin !== base || event.source !== frame.contentWindow) return;
        var data = event.data || {};
        if (data.type === "totem-widget:height" && typeof data.height === "number") {
          frame.style.height = Math.max(200, Math.min(4000, data.height)) + "px";
        }
      });
      host.replaceChildren(frame);
    })
    .catch(function () {
      refuse("This booking widget is not enabled for this site, or the booking service cannot be reached.");
    });
})();
