// Omnify's browser code: small enhancements on server-rendered pages. Loaded from our
// own origin (CSP: no inline script); every request carries the CSRF token.
(function () {
  "use strict";

  function csrf() { return document.body.getAttribute("data-csrf") || ""; }

  // A notice from a redirect (?flash=...) is shown once; a reload must not repeat it.
  function dropFlashParam() {
    var url = new URL(window.location.href);
    if (url.searchParams.has("flash")) {
      url.searchParams.delete("flash");
      window.history.replaceState(null, "", url.pathname + (url.search ? url.search : "") + url.hash);
    }
  }

  // <form data-confirm="..."> asks before submitting (htmx forms use hx-confirm).
  function wireConfirms(root) {
    root.querySelectorAll("form[data-confirm]").forEach(function (form) {
      if (form.dataset.confirmWired) { return; }
      form.dataset.confirmWired = "1";
      form.addEventListener("submit", function (event) {
        if (!window.confirm(form.getAttribute("data-confirm"))) { event.preventDefault(); }
      });
    });
  }

  // <table data-sortable>: header buttons sort the rows in place (numbers by data-value).
  function cellValue(row, index) {
    var cell = row.children[index];
    if (!cell) { return ""; }
    var raw = cell.getAttribute("data-value");
    if (raw !== null && raw !== "" && !isNaN(Number(raw))) { return Number(raw); }
    return (raw !== null ? raw : cell.textContent).trim().toLowerCase();
  }
  function wireSorting(root) {
    root.querySelectorAll("table[data-sortable]").forEach(function (table) {
      if (table.dataset.sortWired) { return; }
      table.dataset.sortWired = "1";
      var headers = table.querySelectorAll("thead th");
      headers.forEach(function (th, index) {
        var button = th.querySelector("button.sort");
        if (!button) { return; }
        button.addEventListener("click", function () {
          var ascending = th.getAttribute("aria-sort") !== "ascending";
          headers.forEach(function (h) { h.removeAttribute("aria-sort"); });
          th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
          var body = table.tBodies[0];
          var rows = Array.prototype.slice.call(body.rows);
          rows.sort(function (a, b) {
            var x = cellValue(a, index), y = cellValue(b, index);
            if (x === y) { return 0; }
            return (x < y ? -1 : 1) * (ascending ? 1 : -1);
          });
          rows.forEach(function (r) { body.appendChild(r); });
        });
      });
    });
  }

  // <form method="get" data-navigate>: the browser goes to action?fields as a plain
  // navigation. For flows that leave our origin by redirect (a platform's OAuth consent):
  // the CSP's form-action 'self' would block the form submission itself.
  function wireNavigate(root) {
    root.querySelectorAll("form[data-navigate]").forEach(function (form) {
      if (form.dataset.navigateWired) { return; }
      form.dataset.navigateWired = "1";
      form.addEventListener("submit", function (event) {
        event.preventDefault();
        var query = new URLSearchParams(new FormData(form)).toString();
        window.location.assign(form.getAttribute("action") + (query ? "?" + query : ""));
      });
    });
  }

  function wireAll(root) {
    wireConfirms(root);
    wireNavigate(root);
    wireSorting(root);
    if (window.OmnifyCharts) { window.OmnifyCharts.render(root); }
    if (window.OmnifyUpload) { window.OmnifyUpload.wire(root); }
  }

  window.Omnify = { csrf: csrf, wireAll: wireAll };

  document.addEventListener("DOMContentLoaded", function () {
    dropFlashParam();
    wireAll(document);
  });
  document.addEventListener("htmx:afterSettle", function (event) { wireAll(event.target); });
})();
