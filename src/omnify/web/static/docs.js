// Boots Swagger UI from our own static files; the page's CSP allows no inline script.
(function () {
  "use strict";
  function boot() {
    var root = document.getElementById("swagger-ui");
    window.SwaggerUIBundle({
      url: root.getAttribute("data-openapi-url"),
      dom_id: "#swagger-ui",
      deepLinking: true,
      presets: [window.SwaggerUIBundle.presets.apis],
      layout: "BaseLayout",
      validatorUrl: null,
      tryItOutEnabled: false
    });
  }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", boot);
  } else {
    boot();
  }
})();
