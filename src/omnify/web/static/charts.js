// Dashboard charts: uPlot over the JSON block the page carries (the CSP allows no inline
// script, so the data travels as <script type="application/json"> and this file draws it).
// <div data-chart="spend|revenue" data-source="<id of the JSON block>" data-currency="USD">
(function () {
  "use strict";

  var COLORS = { meta_ads: "#1d4ed8", google_ads: "#b45309", tiktok_ads: "#be185d", shopify: "#15803d" };
  var FALLBACK = ["#4338ca", "#0f766e", "#9a3412", "#6d28d9"];

  function color(platform, i) { return COLORS[platform] || FALLBACK[i % FALLBACK.length]; }

  function amount(currency) {
    var fmt;
    try { fmt = new Intl.NumberFormat(undefined, { style: "currency", currency: currency, maximumFractionDigits: 0 }); }
    catch (e) { fmt = new Intl.NumberFormat(undefined, { maximumFractionDigits: 0 }); }
    return function (u, v) { return v == null ? "" : fmt.format(v); };
  }

  function options(kind, data, currency, width) {
    var money = amount(currency);
    var series = [{}];
    data.platforms.forEach(function (p, i) {
      series.push({ label: (data.labels && data.labels[p]) || p || "Other", stroke: color(p, i), width: 2, value: money, scale: "money" });
    });
    var axes = [{}, { scale: "money", values: function (u, vals) { return vals.map(function (v) { return money(u, v); }); }, size: 70 }];
    if (kind === "revenue") {
      series.push({ label: "ROAS", stroke: "#111827", width: 2, dash: [6, 4], scale: "roas",
        value: function (u, v) { return v == null ? "" : v.toFixed(2); } });
      axes.push({ scale: "roas", side: 1, grid: { show: false }, size: 50 });
    }
    return { width: width, height: 260, series: series, axes: axes,
      scales: { x: { time: true } }, cursor: { focus: { prox: 16 } } };
  }

  function columns(kind, data) {
    var cols = [data.x];
    var values = kind === "spend" ? data.spend : data.revenue;
    data.platforms.forEach(function (p) { cols.push(values[p]); });
    if (kind === "revenue") { cols.push(data.roas); }
    return cols;
  }

  function draw(el) {
    if (el.dataset.drawn || typeof window.uPlot !== "function") { return; }
    var source = document.getElementById(el.getAttribute("data-source"));
    if (!source) { return; }
    var data = JSON.parse(source.textContent);
    var kind = el.getAttribute("data-chart");
    el.dataset.drawn = "1";
    if (!data.x.length) { el.textContent = "No data in this period."; return; }
    var width = Math.max(240, el.clientWidth || 600);
    var plot = new window.uPlot(options(kind, data, el.getAttribute("data-currency"), width), columns(kind, data), el);
    el.uplot = plot;
    el.setAttribute("data-ready", "1");
    if (window.performance && performance.mark) { performance.mark("omnify:chart-ready"); }
  }

  function resizeAll() {
    document.querySelectorAll("[data-chart][data-ready]").forEach(function (el) {
      if (el.uplot) { el.uplot.setSize({ width: Math.max(240, el.clientWidth), height: 260 }); }
    });
  }

  var pending = null;
  window.addEventListener("resize", function () {
    if (pending) { window.clearTimeout(pending); }
    pending = window.setTimeout(resizeAll, 150);
  });

  window.OmnifyCharts = {
    render: function (root) { (root || document).querySelectorAll("[data-chart]").forEach(draw); }
  };
  document.addEventListener("DOMContentLoaded", function () { window.OmnifyCharts.render(document); });
})();
