/*
 * The document upload form (partials/documents.html), sent with XMLHttpRequest so the borrower
 * sees a progress bar and a percentage instead of a frozen page on a slow mobile connection.
 *
 * The request is the form itself (FormData: the CSRF token, the kind, the file) to the form's
 * own address, so the server applies exactly the same checks as without JavaScript. The server
 * answers a good upload with a redirect to the case page (which XHR follows): its document
 * list replaces ours. A refusal comes back as the case page (or the error page) with the reason
 * in its alert: that text is shown. Size and type are checked here first, so nobody waits for
 * a 12 MB photo to be refused.
 */
(function () {
  'use strict';

  var form = document.getElementById('upload-form');
  var textBlock = document.getElementById('upload-text');
  if (!form || !textBlock || !window.FormData || !window.XMLHttpRequest) return;

  var T = JSON.parse(textBlock.textContent);
  var fileInput = form.querySelector('input[type="file"]');
  var box = document.getElementById('upload-progress');
  var bar = document.getElementById('upload-bar');
  var percent = document.getElementById('upload-percent');
  var status = document.getElementById('upload-status');
  var button = form.querySelector('button[type="submit"]');
  var maxBytes = parseInt(form.getAttribute('data-max-bytes'), 10) || 10 * 1024 * 1024;
  var ACCEPTED = ['image/jpeg', 'image/png', 'application/pdf'];
  var busy = false;

  function fill(template, values) {
    return template.replace(/%\((\w+)\)s/g, function (whole, key) {
      return Object.prototype.hasOwnProperty.call(values, key) ? values[key] : whole;
    });
  }

  /** A size in words: "850 KB", "2.4 MB". */
  function sizeWords(bytes) {
    if (bytes < 1024 * 1024) return Math.max(1, Math.round(bytes / 1024)) + ' KB';
    var mb = Math.round((bytes / (1024 * 1024)) * 10) / 10;
    return String(mb) + ' MB';
  }

  function say(text, isError) {
    status.textContent = text;
    status.classList.toggle('error', !!isError);
    status.setAttribute('role', isError ? 'alert' : 'status');
  }

  function setProgress(value) {
    var p = Math.max(0, Math.min(100, Math.round(value)));
    bar.value = p;
    percent.textContent = p + '%';
    form.setAttribute('data-progress', String(p));
  }

  /** The reason in a refusal page: the alert above the form, or the error page's message. */
  function reasonIn(html) {
    try {
      var doc = new DOMParser().parseFromString(html, 'text/html');
      var alert = doc.querySelector('main .alert.error') || doc.querySelector('main .card p');
      var text = alert ? alert.textContent.replace(/\s+/g, ' ').trim() : '';
      return text || null;
    } catch (e) {
      return null;
    }
  }

  /** Put the document list of the returned case page in place of ours. */
  function refreshList(html) {
    var doc = new DOMParser().parseFromString(html, 'text/html');
    var fresh = doc.getElementById('document-list');
    var mine = document.getElementById('document-list');
    if (fresh && mine) {
      mine.replaceWith(document.importNode(fresh, true));
      return true;
    }
    return false;
  }

  function finish(ok) {
    busy = false;
    button.disabled = false;
    form.setAttribute('data-state', ok ? 'done' : 'failed');
    form.removeAttribute('aria-busy');
  }

  fileInput.addEventListener('change', function () {
    var file = fileInput.files && fileInput.files[0];
    if (!file) return;
    if (file.size > maxBytes) {
      say(fill(T.too_large, { size: sizeWords(file.size), limit: T.limit }), true);
    } else {
      say(file.name + ' · ' + sizeWords(file.size), false);
    }
  });

  form.addEventListener('submit', function (event) {
    event.preventDefault();
    if (busy) return;
    var file = fileInput.files && fileInput.files[0];
    if (!file) {
      say(T.no_file, true);
      fileInput.focus();
      return;
    }
    if (file.size > maxBytes) {
      say(fill(T.too_large, { size: sizeWords(file.size), limit: T.limit }), true);
      return;
    }
    // Some phones give no type; the server judges the bytes in any case.
    if (file.type && ACCEPTED.indexOf(file.type) === -1) {
      say(T.wrong_type, true);
      return;
    }

    var xhr = new XMLHttpRequest();
    busy = true;
    button.disabled = true;
    form.setAttribute('data-state', 'uploading');
    form.setAttribute('aria-busy', 'true');
    box.hidden = false;
    setProgress(0);
    say(fill(T.uploading, { percent: '0%' }), false);

    xhr.upload.addEventListener('progress', function (e) {
      if (!e.lengthComputable) return;
      // The last percent waits for the server's answer.
      var p = Math.min(99, (e.loaded / e.total) * 100);
      setProgress(p);
      say(fill(T.uploading, { percent: Math.round(p) + '%' }), false);
    });

    xhr.addEventListener('load', function () {
      var path = '';
      try {
        path = new URL(xhr.responseURL).pathname;
      } catch (e) {
        path = '';
      }
      var landed = xhr.status >= 200 && xhr.status < 300 && !/\/documents$/.test(path);
      if (landed) {
        setProgress(100);
        if (!refreshList(xhr.responseText)) {
          window.location.reload();
          return;
        }
        say(fill(T.done, { name: file.name }), false);
        form.reset();
        finish(true);
        return;
      }
      var reason = reasonIn(xhr.responseText);
      if (!reason && xhr.status === 413) {
        reason = fill(T.too_large, { size: sizeWords(file.size), limit: T.limit });
      }
      say(reason || T.failed, true);
      finish(false);
    });

    xhr.addEventListener('error', function () {
      say(T.failed, true);
      finish(false);
    });
    xhr.addEventListener('abort', function () {
      say(T.failed, true);
      finish(false);
    });

    xhr.open('POST', form.action);
    xhr.setRequestHeader('Accept', 'text/html');
    xhr.send(new FormData(form));
  });
})();
