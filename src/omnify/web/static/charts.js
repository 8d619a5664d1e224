// Dashboard charts: uPlot over the JSON block the page carries (the CSP allows no inline
// script, so the data travels as <script type="application/json"> and this file draws it).
// <div data-chart="spend|revenue" data-source="<id of the JSON block>" data-currency="USD">
// data-chart="evidence": a recommendation's evidence (series with a unit each: percent, money
// or count; vertical marks such as the onset of a decline; a shaded band of anomalous days).
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

  var EVIDENCE_COLORS = ["#1d4ed8", "#4b5563", "#b45309", "#15803d", "#111827"];

  function unitFormat(unit, currency) {
    if (unit === "percent") {
      return function (u, v) { return v == null ? "" : (v * 100).toFixed(2) + " %"; };
    }
    if (unit === "money") { return amount(currency); }
    var fmt = new Intl.NumberFormat(undefined, { maximumFractionDigits: 1 });
    return function (u, v) { return v == null ? "" : fmt.format(v); };
  }

  // Vertical marks (a decline's onset, the day it was flagged) on top of the series and a
  // shaded band (an anomaly's days, an onset's interval) under them, in the plot's own canvas.
  function annotate(data) {
    function px(u, x) { return Math.round(u.valToPos(x, "x", true)); }
    return {
      drawClear: [function (u) {
        if (!data.band) { return; }
        var ctx = u.ctx, top = u.bbox.top, h = u.bbox.height;
        var x0 = Math.max(px(u, data.band[0]), u.bbox.left);
        var x1 = Math.min(px(u, data.band[1]), u.bbox.left + u.bbox.width);
        if (x1 <= x0) { return; }
        ctx.save(); ctx.fillStyle = "rgba(185, 28, 28, 0.12)"; ctx.fillRect(x0, top, x1 - x0, h); ctx.restore();
      }],
      draw: [function (u) {
        var ctx = u.ctx, top = u.bbox.top, h = u.bbox.height;
        ctx.save();
        ctx.strokeStyle = "#b91c1c"; ctx.fillStyle = "#7f1d1d"; ctx.lineWidth = 2 * (window.devicePixelRatio || 1);
        ctx.font = (12 * (window.devicePixelRatio || 1)) + "px sans-serif";
        (data.marks || []).forEach(function (m, i) {
          var x = px(u, m.x);
          ctx.setLineDash(i === 0 ? [] : [4, 4]);
          ctx.beginPath(); ctx.moveTo(x, top); ctx.lineTo(x, top + h); ctx.stroke();
          ctx.fillText(m.label, x + 4, top + 14 * (i + 1) * (window.devicePixelRatio || 1));
        });
        ctx.restore();
      }]
    };
  }

  function evidenceOptions(data, width) {
    var units = [];
    data.series.forEach(function (s) { if (units.indexOf(s.unit) < 0) { units.push(s.unit); } });
    var series = [{}];
    data.series.forEach(function (s, i) {
      series.push({ label: s.label, stroke: EVIDENCE_COLORS[i % EVIDENCE_COLORS.length], width: 2,
        dash: s.dash ? [6, 4] : undefined, points: { show: !s.dash }, scale: s.unit, value: unitFormat(s.unit, data.currency),
        spanGaps: false });
    });
    var axes = [{}];
    units.slice(0, 2).forEach(function (unit, i) {
      var fmt = unitFormat(unit, data.currency);
      axes.push({ scale: unit, side: i === 0 ? 3 : 1, grid: { show: i === 0 }, size: 70,
        values: function (u, vals) { return vals.map(function (v) { return fmt(u, v); }); } });
    });
    var scales = { x: { time: true } };
    units.forEach(function (unit) { scales[unit] = { range: function (u, min, max) { return [Math.min(0, min), max > 0 ? max * 1.1 : 1]; } }; });
    return { width: width, height: 240, series: series, axes: axes, scales: scales, hooks: annotate(data),
      cursor: { focus: { prox: 16 } } };
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
    var plot = kind === "evidence"
      ? new window.uPlot(evidenceOptions(data, width), [data.x].concat(data.series.map(function (s) { return s.values; })), el)
      : new window.uPlot(options(kind, data, el.getAttribute("data-currency"), width), columns(kind, data), el);
    el.uplot = plot;
    el.setAttribute("data-ready", "1");
    if (window.performance && performance.mark) { performance.mark("omnify:chart-ready"); }
  }

  function resizeAll() {
    document.querySelectorAll("[data-chart][data-ready]").forEach(function (el) {
      if (el.uplot) { el.uplot.setSize({ width: Math.max(240, el.clientWidth), height: el.uplot.height }); }
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
