/*
 * Live progress of background work (a portfolio import, a round of invitations). A box with
 * data-progress-url and data-status="running" reads that JSON address every second: each
 * element inside it with data-field="name" shows the field's value, and a <progress> with
 * data-done="name" data-total="name" moves with those two fields. When the work has finished,
 * the page is loaded again once, so what depends on the outcome is shown. Without JavaScript
 * the page shows the figures as they were when it was loaded.
 */
(function () {
  'use strict';

  if (!window.fetch) return;

  function show(box, data) {
    box.querySelectorAll('[data-field]').forEach(function (el) {
      var value = data[el.getAttribute('data-field')];
      if (value !== null && value !== undefined) el.textContent = String(value);
    });
    box.querySelectorAll('progress[data-done]').forEach(function (bar) {
      var total = data[bar.getAttribute('data-total')];
      if (total === null || total === undefined) return;
      bar.max = Math.max(total, 1);
      bar.value = Math.min(data[bar.getAttribute('data-done')], bar.max);
    });
  }

  function follow(box) {
    var url = box.getAttribute('data-progress-url');
    function poll() {
      fetch(url, { credentials: 'same-origin', headers: { Accept: 'application/json' } })
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (data) {
          if (!data) { window.setTimeout(poll, 5000); return; }
          show(box, data);
          if (data.status === 'running') window.setTimeout(poll, 1000);
          else window.location.reload();
        })
        .catch(function () { window.setTimeout(poll, 5000); });
    }
    window.setTimeout(poll, 1000);
  }

  document.querySelectorAll('[data-progress-url][data-status="running"]').forEach(follow);
})();
