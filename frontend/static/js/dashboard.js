/*
 * The bank dashboard's charts, drawn with the vendored ECharts (frontend/static/vendor/echarts).
 * The figures and their translated labels come from the JSON block #dashboard-data (the page's
 * CSP forbids inline scripts); each chart goes into the container of the same name, which the
 * page only renders when there is something to draw. Money is integer fen, formatted here as
 * ¥1,234.56 with integer arithmetic. Tooltips are drawn on the canvas (richText): ECharts' HTML
 * tooltips carry inline style attributes, which the CSP refuses.
 */
(function () {
  'use strict';

  var source = document.getElementById('dashboard-data');
  if (!source || typeof window.echarts === 'undefined') return;
  var data = JSON.parse(source.textContent);
  if (!data) return;

  var INK = '#1d2733';
  var MUTED = '#56606b';
  var LINE = '#d5dbe1';
  // Brand green first; then colours that stay apart for colour-blind readers.
  var PALETTE = ['#0b5c52', '#c0612b', '#6a4c93', '#8a96a3', '#2f7bbf'];

  function groupThousands(digits) {
    return digits.replace(/\B(?=(\d{3})+(?!\d))/g, ',');
  }

  function money(fen) {
    var sign = fen < 0 ? '-' : '';
    var abs = Math.abs(fen);
    var cents = String(abs % 100);
    if (cents.length < 2) cents = '0' + cents;
    return sign + '¥' + groupThousands(String(Math.floor(abs / 100))) + '.' + cents;
  }

  function moneyAxis(fen) {
    // Whole yuan on the axis; the tooltip and the table give the fen.
    return '¥' + groupThousands(String(Math.round(fen / 100)));
  }

  var common = {
    color: PALETTE,
    textStyle: { color: INK },
    animation: false,
    tooltip: { renderMode: 'richText', confine: true },
    grid: { left: 8, right: 24, top: 24, bottom: 8, containLabel: true }
  };

  function base(extra) {
    var option = {};
    var key;
    for (key in common) option[key] = common[key];
    for (key in extra) option[key] = extra[key];
    return option;
  }

  function axisStyle(axis) {
    axis.axisLine = { lineStyle: { color: MUTED } };
    axis.axisLabel = axis.axisLabel || {};
    axis.axisLabel.color = INK;
    axis.splitLine = { lineStyle: { color: LINE } };
    return axis;
  }

  function wrapped(d, width) {
    // Every category named, each label wrapped to its share of the chart's width.
    return { interval: 0, width: Math.max(40, width / d.labels.length - 8), overflow: 'break' };
  }

  var builders = {
    status: function (d) {
      return base({
        tooltip: { renderMode: 'richText', confine: true, trigger: 'axis' },
        xAxis: axisStyle({ type: 'value', minInterval: 1 }),
        yAxis: axisStyle({ type: 'category', data: d.labels, inverse: true }),
        series: [{ type: 'bar', name: d.name, data: d.values, label: { show: true, position: 'right' } }]
      });
    },
    settlement: function (d) {
      var slices = [];
      var counts = {};
      for (var i = 0; i < d.labels.length; i++) {
        counts[d.labels[i]] = d.values[i];
        if (d.values[i] > 0) slices.push({ name: d.labels[i], value: d.values[i] });
      }
      // The counts go in the legend rather than beside the slices, where a phone cuts them off.
      return base({
        tooltip: { renderMode: 'richText', confine: true, trigger: 'item' },
        legend: {
          bottom: 0,
          textStyle: { color: INK },
          formatter: function (name) { return name + ': ' + counts[name]; }
        },
        series: [{
          type: 'pie',
          name: d.name,
          radius: ['40%', '68%'],
          center: ['50%', '45%'],
          data: slices,
          label: { show: false }
        }]
      });
    },
    duration: function (d, width) {
      return base({
        tooltip: { renderMode: 'richText', confine: true, trigger: 'axis' },
        xAxis: axisStyle({ type: 'category', data: d.labels, axisLabel: wrapped(d, width) }),
        yAxis: axisStyle({ type: 'value', minInterval: 1 }),
        series: [{ type: 'bar', name: d.name, data: d.values, label: { show: true, position: 'top' } }]
      });
    },
    money: function (d, width) {
      return base({
        tooltip: {
          renderMode: 'richText',
          confine: true,
          trigger: 'axis',
          valueFormatter: function (value) { return money(value); }
        },
        legend: { top: 0, textStyle: { color: INK } },
        grid: { left: 8, right: 24, top: 36, bottom: 8, containLabel: true },
        xAxis: axisStyle({ type: 'category', data: d.labels, axisLabel: wrapped(d, width) }),
        yAxis: axisStyle({ type: 'value', axisLabel: { formatter: moneyAxis } }),
        series: d.series.map(function (s) {
          return { type: 'bar', name: s.name, data: s.values_fen };
        })
      });
    }
  };

  var drawn = [];
  Object.keys(builders).forEach(function (name) {
    var el = document.getElementById('chart-' + name);
    if (!el || !data[name]) return;
    var chart = window.echarts.init(el, null, { renderer: 'canvas' });
    chart.setOption(builders[name](data[name], el.clientWidth));
    el.setAttribute('data-rendered', 'true');
    drawn.push({ chart: chart, el: el, build: builders[name], data: data[name] });
  });

  var pending = null;
  window.addEventListener('resize', function () {
    if (pending) window.clearTimeout(pending);
    pending = window.setTimeout(function () {
      drawn.forEach(function (item) {
        item.chart.setOption(item.build(item.data, item.el.clientWidth));
        item.chart.resize();
      });
    }, 150);
  });
})();
