// Applies the stored theme before the page paints (no flash); "auto" follows the OS (prefers-color-scheme).
(function () {
  "use strict";
  try {
    var t = window.localStorage.getItem("jobs-ui-theme");
    if (t === "dark" || t === "light") { document.documentElement.setAttribute("data-theme", t); }
  } catch (e) { /* storage blocked: follow the OS */ }
})();
