/*
 * A portfolio import's live progress (bank/import.html): while the import runs, read
 * GET /api/v1/imports/{id} every second and update the progress bar and the counts; when it has
 * finished, load the page again once, so the refused rows are listed. Without JavaScript the
 * page shows the counts as they were when it was loaded.
 */
(function () {
  'use strict';

  var box = document.getElementById('import');
  if (!box || !window.fetch) return;
  var url = box.getAttribute('data-import-url');
  if (box.getAttribute('data-status') !== 'running') return;
  var bar = document.getElementById('import-progress');
  var FIELDS = ['rows_done', 'rows_created', 'rows_updated', 'rows_unchanged', 'rows_failed'];

  function show(data) {
    FIELDS.forEach(function (name) {
      var el = document.getElementById(name.replace('_', '-'));
      if (el) el.textContent = String(data[name]);
    });
    if (data.rows_total !== null && data.rows_total !== undefined) {
      document.getElementById('rows-total').textContent = String(data.rows_total);
      bar.max = Math.max(data.rows_total, 1);
      bar.value = Math.min(data.rows_done, bar.max);
    }
  }

  function poll() {
    fetch(url, { credentials: 'same-origin', headers: { Accept: 'application/json' } })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (data) {
        if (!data) { window.setTimeout(poll, 5000); return; }
        show(data);
        if (data.status === 'running') window.setTimeout(poll, 1000);
        else window.location.reload();
      })
      .catch(function () { window.setTimeout(poll, 5000); });
  }

  window.setTimeout(poll, 1000);
})();
