// Metrics page: draws the charts whose data the page embeds (#chart-data) with uPlot.
"use strict";

(function () {
  const COLOURS = ["#0969da", "#cf222e", "#1a7f37", "#8250df", "#bc4c00"];

  function formatter(unit) {
    if (unit === "ratio") return (value) => (value === null ? "" : `${(value * 100).toFixed(0)}%`);
    if (unit === "seconds") {
      return (value) => {
        if (value === null) return "";
        if (value < 120) return `${value.toFixed(value < 10 ? 1 : 0)}s`;
        if (value < 7200) return `${(value / 60).toFixed(1)}m`;
        return `${(value / 3600).toFixed(1)}h`;
      };
    }
    return (value) => (value === null ? "" : value.toLocaleString("en", { maximumFractionDigits: 1 }));
  }

  function draw(chart, container) {
    const format = formatter(chart.unit);
    const few = chart.times.length < 3;
    const series = [{}].concat(chart.series.map((item, index) => ({
      label: item.label,
      stroke: COLOURS[index % COLOURS.length],
      width: 2,
      spanGaps: false,
      points: { show: few, size: 6 },
      value: (plot, value) => format(value),
    })));
    const data = [chart.times].concat(chart.series.map((item) => item.values));
    const width = Math.max(320, container.clientWidth || 560);
    const options = {
      width,
      height: 240,
      series,
      scales: chart.unit === "ratio" ? { y: { range: [0, 1] } } : {},
      axes: [{}, { values: (plot, ticks) => ticks.map(format), size: 60 }],
      legend: { live: true },
    };
    container.replaceChildren();
    return new uPlot(options, data, container);
  }

  document.addEventListener("DOMContentLoaded", () => {
    const dataElement = document.getElementById("chart-data");
    if (!dataElement || typeof uPlot === "undefined") return;
    const charts = JSON.parse(dataElement.textContent);
    const plots = [];
    for (const chart of charts) {
      const container = document.querySelector(`[data-chart="${chart.id}"] .chart-canvas`);
      if (container) plots.push([chart, container, draw(chart, container)]);
    }
    let timer = 0;
    window.addEventListener("resize", () => {
      clearTimeout(timer);
      timer = setTimeout(() => {
        for (const [, container, plot] of plots) {
          plot.setSize({ width: Math.max(320, container.clientWidth), height: 240 });
        }
      }, 150);
    });
    document.body.dataset.chartsDrawn = String(plots.length);
  });
})();
