/*
 * The live mediation room: one websocket speaking the hejie.v1 protocol (docs/session-protocol.md).
 * Vanilla JavaScript, no build step. Configuration comes from data-* attributes on #room and the
 * translated texts from the JSON block #room-text-data (the page's CSP forbids inline scripts).
 *
 * Connection states: connecting -> connected -> reconnecting (backoff, visible banner) -> ended.
 * Money is integer fen throughout; yuan typed by a person is parsed to fen with string and
 * integer arithmetic only.
 */
(function () {
  'use strict';

  var root = document.getElementById('room');
  if (!root) return;
  if (root.dataset.mode === 'waiting') {
    reloadWhenOpen(root.dataset.opensAt);
    return;
  }
  if (root.dataset.mode !== 'live') return;

  var cfg = root.dataset;
  var data = JSON.parse(document.getElementById('room-text-data').textContent);
  var T = data.text;
  var E = data.errors;
  var SIDES = data.sides;
  var STATUS = data.status;
  var mySide = cfg.side;
  var isParty = mySide === 'borrower' || mySide === 'bank';
  var listSep = cfg.locale === 'en' ? ', ' : '、';
  var RETRIES = 3; // times a message the server could not store is sent again by itself

  // --- small helpers ------------------------------------------------------------------------

  function fmt(template, values) {
    return template.replace(/\{(\w+)\}/g, function (whole, key) {
      return Object.prototype.hasOwnProperty.call(values, key) ? String(values[key]) : whole;
    });
  }

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = text;
    return node;
  }

  function $(id) {
    return document.getElementById(id);
  }

  function newId() {
    // Works outside secure contexts too (crypto.randomUUID does not).
    var bytes = new Uint8Array(16);
    window.crypto.getRandomValues(bytes);
    return Array.prototype.map
      .call(bytes, function (b) {
        return (b < 16 ? '0' : '') + b.toString(16);
      })
      .join('');
  }

  function pad2(n) {
    return (n < 10 ? '0' : '') + n;
  }

  // ¥1,234.56 from integer fen, as the server's i18n.format_fen prints it.
  function formatFen(fen) {
    var sign = fen < 0 ? '-' : '';
    var abs = Math.abs(fen);
    var yuan = String(Math.floor(abs / 100)).replace(/\B(?=(\d{3})+(?!\d))/g, ',');
    return sign + '¥' + yuan + '.' + pad2(abs % 100);
  }

  // "23500.00" for a form field.
  function fenToYuan(fen) {
    return Math.floor(fen / 100) + '.' + pad2(fen % 100);
  }

  // Yuan typed by a person ("1,234.5", full-width digits, "¥", "元") to integer fen, or null.
  // Digits are read as strings: no float ever holds a money amount.
  function parseYuan(text) {
    var s = String(text).normalize('NFKC').replace(/[,\s]/g, '');
    s = s.replace(/^¥/, '').replace(/元$/, '');
    var m = /^(\d{1,13})(?:\.(\d{1,2}))?$/.exec(s);
    if (!m) return null;
    var cents = (m[2] || '') + '00';
    return parseInt(m[1], 10) * 100 + parseInt(cents.slice(0, 2), 10);
  }

  function parseWhole(text) {
    var s = String(text).normalize('NFKC').trim();
    return /^\d{1,4}$/.test(s) ? parseInt(s, 10) : null;
  }

  var stampFormat = new Intl.DateTimeFormat('en-GB', {
    timeZone: 'Asia/Shanghai',
    year: 'numeric',
    month: '2-digit',
    day: '2-digit',
    hour: '2-digit',
    minute: '2-digit',
    hourCycle: 'h23',
  });

  function shanghaiParts(date) {
    var parts = {};
    stampFormat.formatToParts(date).forEach(function (p) {
      parts[p.type] = p.value;
    });
    return parts;
  }

  function parseAt(iso) {
    // The server sends microseconds; keep milliseconds for every browser's parser.
    return new Date(String(iso).replace(/(\.\d{3})\d+/, '$1'));
  }

  function timeElement(iso) {
    var p = shanghaiParts(parseAt(iso));
    var node = el('time', null, p.hour + ':' + p.minute);
    node.dateTime = iso;
    node.title = p.year + '-' + p.month + '-' + p.day + ' ' + p.hour + ':' + p.minute;
    return node;
  }

  function shanghaiClock(iso) {
    var p = shanghaiParts(parseAt(iso));
    return p.hour + ':' + p.minute;
  }

  function shanghaiToday() {
    var p = shanghaiParts(new Date());
    return p.year ? p.year + '-' + p.month + '-' + p.day : cfg.today;
  }

  // The same day `months` later, clamped to the month's end (app/repayment/plans.add_months).
  function addMonths(iso, months) {
    var y = parseInt(iso.slice(0, 4), 10);
    var m = parseInt(iso.slice(5, 7), 10);
    var d = parseInt(iso.slice(8, 10), 10);
    var index = y * 12 + (m - 1) + months;
    var ny = Math.floor(index / 12);
    var nm = (index % 12) + 1;
    var last = new Date(Date.UTC(ny, nm, 0)).getUTCDate();
    return ny + '-' + pad2(nm) + '-' + pad2(Math.min(d, last));
  }

  function addDay(iso) {
    var t = Date.UTC(+iso.slice(0, 4), +iso.slice(5, 7) - 1, +iso.slice(8, 10)) + 86400000;
    var next = new Date(t);
    return next.getUTCFullYear() + '-' + pad2(next.getUTCMonth() + 1) + '-' + pad2(next.getUTCDate());
  }

  function sideName(side) {
    return SIDES[side] || side;
  }

  function errorText(frame) {
    return E[frame.code] || frame.detail || E.unknown;
  }

  // --- elements -----------------------------------------------------------------------------

  var banner = $('room-banner');
  var bannerText = $('room-banner-text');
  var reconnectButton = $('room-reconnect');
  var transcriptLink = $('room-transcript-link');
  var statusBadge = $('room-status-badge');
  var tabs = Array.prototype.slice.call(root.querySelectorAll('[role="tab"]'));
  var composer = $('room-composer');
  var textInput = $('room-text');
  var composerChannel = $('room-composer-channel');
  var composerNote = $('room-composer-note');
  var sendButton = $('room-send');
  var typingLine = $('room-typing');
  var mutedLine = $('room-muted');
  var offerForm = $('offer-form');

  // --- state --------------------------------------------------------------------------------

  var S = {
    phase: 'connecting',
    ws: null,
    connId: 0,
    attempts: 0,
    timer: null,
    everConnected: false,
    loaded: false, // the first resume has been replayed: later messages count as unread
    lastError: null,
    status: cfg.status,
    lastSeq: 0, // highest seq of a message frame; never an ack's (see resume below)
    welcomeSeq: 0,
    seen: new Map(), // seq -> message
    nodes: new Map(), // seq -> <li>
    offers: new Map(), // offer_id -> {payload, box}
    pending: new Map(), // client_msg_id -> {frame, sentOn, onAck, onFail}
    outbox: new Map(), // client_msg_id -> <li> shown while a text is on its way
    held: new Map(), // seq -> <li> in the mediator's held list
    active: tabs.length ? tabs[0].dataset.channel : 'joint',
    unread: {},
    typing: {},
    presence: {},
    muted: {},
    acceptedOfferId: null,
    lastFrameAt: 0,
    pingAt: 0,
    lastTypingSent: 0,
    leaving: false,
  };

  // --- connection ---------------------------------------------------------------------------

  function setPhase(phase) {
    S.phase = phase;
    root.dataset.state = phase;
    renderBanner();
    renderControls();
  }

  function renderBanner() {
    var text;
    reconnectButton.hidden = true;
    transcriptLink.hidden = true;
    banner.className = 'room-banner phase-' + S.phase;
    if (S.phase === 'connecting') text = T.connecting;
    else if (S.phase === 'connected') text = S.status === 'scheduled' ? T.waiting : T.connected;
    else if (S.phase === 'reconnecting' && navigator.onLine === false) {
      banner.classList.add('offline');
      text = T.offline;
    } else if (S.phase === 'reconnecting') {
      text = fmt(T.reconnecting, { n: Math.max(1, S.attempts) });
      reconnectButton.hidden = false;
    } else if (S.phase === 'not_open') {
      text = T.not_open;
      reconnectButton.hidden = false;
    } else if (S.phase === 'signed_out') {
      text = T.signed_out;
    } else {
      text = T.ended;
      transcriptLink.hidden = false;
    }
    bannerText.textContent = text;
  }

  function connect() {
    clearTimeout(S.timer);
    S.timer = null;
    if (S.phase === 'ended' || S.phase === 'signed_out' || S.leaving) return;
    if (navigator.onLine === false) {
      setPhase('reconnecting'); // waits for the browser's `online` event
      return;
    }
    if (!S.everConnected) setPhase('connecting');
    var scheme = location.protocol === 'https:' ? 'wss://' : 'ws://';
    var ws = new WebSocket(scheme + location.host + cfg.wsPath, ['hejie.v1']);
    S.ws = ws;
    S.connId += 1;
    S.lastError = null;
    S.pingAt = 0;
    S.lastFrameAt = Date.now();
    ws.onmessage = function (event) {
      if (S.ws === ws) onFrame(event.data);
    };
    ws.onclose = function (event) {
      if (S.ws !== ws) return;
      S.ws = null;
      onClosed(event.code);
    };
  }

  // Forget the socket at once (its close may take long on a dead network) and close it.
  function dropSocket() {
    var ws = S.ws;
    S.ws = null;
    if (!ws) return;
    ws.onmessage = null;
    ws.onclose = null;
    try {
      ws.close();
    } catch (e) {
      /* already closing */
    }
  }

  function scheduleReconnect() {
    if (S.phase === 'ended' || S.phase === 'signed_out' || S.leaving) return;
    if (navigator.onLine === false) {
      setPhase('reconnecting'); // waits for the browser's `online` event
      return;
    }
    S.attempts += 1;
    var base = Math.min(15000, 500 * Math.pow(2, S.attempts - 1));
    var delay = base * (0.8 + Math.random() * 0.4);
    setPhase('reconnecting');
    clearTimeout(S.timer);
    S.timer = setTimeout(connect, delay);
  }

  function onClosed(code) {
    if (S.phase === 'ended' || S.phase === 'signed_out' || S.leaving) return;
    if (code === 4000) {
      endRoom();
      return;
    }
    if (code === 4401) {
      // The sign-in ended (logged out elsewhere, or expired): reconnecting cannot help.
      setPhase('signed_out');
      clearTimeout(S.timer);
      return;
    }
    if (code === 4409) {
      if (S.lastError === 'too_early') {
        setPhase('not_open');
        clearTimeout(S.timer);
        S.timer = setTimeout(connect, 30000);
      } else {
        // The session ended while this page was away: the transcript has the rest.
        endRoom();
      }
      return;
    }
    scheduleReconnect();
  }

  function sendFrame(frame) {
    if (S.ws && S.ws.readyState === WebSocket.OPEN) {
      S.ws.send(JSON.stringify(frame));
      return true;
    }
    return false;
  }

  // An action the server acknowledges; kept until then and sent again (same id) after a reconnect.
  function act(frame, handlers) {
    var cid = newId();
    frame.client_msg_id = cid;
    var entry = {
      frame: frame,
      sentOn: 0,
      retries: 0,
      onAck: handlers && handlers.onAck,
      onFail: handlers && handlers.onFail,
    };
    S.pending.set(cid, entry);
    if (S.phase === 'connected' && sendFrame(frame)) entry.sentOn = S.connId;
    return cid;
  }

  function flushPending() {
    S.pending.forEach(function (entry, cid) {
      if (entry.sentOn === S.connId) return;
      if (sendFrame(entry.frame)) entry.sentOn = S.connId;
      var bubble = S.outbox.get(cid);
      if (bubble) setBubbleState(bubble, T.sending);
    });
  }

  function onFrame(text) {
    var frame;
    try {
      frame = JSON.parse(text);
    } catch (e) {
      return;
    }
    S.lastFrameAt = Date.now();
    S.pingAt = 0;
    switch (frame.type) {
      case 'welcome':
        onWelcome(frame);
        break;
      case 'resumed':
        onResumed();
        break;
      case 'message':
        applyMessage(frame);
        break;
      case 'ack':
        onAck(frame);
        break;
      case 'error':
        onError(frame);
        break;
      case 'typing':
        onTyping(frame);
        break;
      default:
        break;
    }
  }

  function onWelcome(frame) {
    S.status = frame.status;
    S.welcomeSeq = frame.last_seq;
    S.presence = frame.presence || {};
    S.muted = frame.muted || {};
    if (frame.accepted_offer_id) S.acceptedOfferId = frame.accepted_offer_id;
    renderPresence();
    renderStatus();
    // Resume from the last message seen: the room sends what was missed, each message once.
    sendFrame({ type: 'resume', after: S.lastSeq });
  }

  function onResumed() {
    S.loaded = true;
    S.everConnected = true;
    S.attempts = 0;
    setPhase('connected');
    flushPending();
  }

  function onAck(frame) {
    var entry = S.pending.get(frame.client_msg_id);
    if (!entry) return;
    S.pending.delete(frame.client_msg_id);
    var bubble = S.outbox.get(frame.client_msg_id);
    if (bubble && frame.state === 'held') setBubbleState(bubble, T.held_own);
    if (entry.onAck) entry.onAck(frame);
  }

  function onError(frame) {
    if (!frame.client_msg_id) {
      S.lastError = frame.code;
      return;
    }
    var entry = S.pending.get(frame.client_msg_id);
    if (!entry) return;
    // Too fast, or not stored (the server lost its database for a moment): the same frame again,
    // which the server acks once whatever happened to the first try. `retry` a few times only.
    if (frame.code === 'rate_limited' || (frame.code === 'retry' && ++entry.retries <= RETRIES)) {
      var wait = Math.max(0.2, Number(frame.retry_after) || 1) * 1000;
      setTimeout(function () {
        if (S.pending.get(frame.client_msg_id) === entry && sendFrame(entry.frame)) {
          entry.sentOn = S.connId;
        }
      }, wait);
      return;
    }
    S.pending.delete(frame.client_msg_id);
    var bubble = S.outbox.get(frame.client_msg_id);
    if (bubble) {
      bubble.classList.add('failed');
      setBubbleState(bubble, fmt(T.not_sent, { reason: errorText(frame) }));
      S.outbox.delete(frame.client_msg_id);
    }
    if (entry.onFail) entry.onFail(frame);
  }

  function endRoom() {
    clearTimeout(S.timer);
    dropSocket();
    if (S.status === 'in_session' || S.status === 'scheduled') S.status = 'ended';
    S.typing = {};
    renderTyping();
    toolsStatus('');
    setPhase('ended');
    S.offers.forEach(function (offer) {
      if (offer.payload.status === 'open') offer.payload.status = 'superseded';
      drawOffer(offer);
    });
  }

  // A silent network drop leaves a socket that looks open: ping when quiet, give up on silence.
  setInterval(function () {
    if (!S.ws) return;
    var now = Date.now();
    if (S.phase !== 'connected') {
      // A handshake or resume that hangs (a half-open network) is given up too.
      if (now - S.lastFrameAt > 15000) {
        dropSocket();
        scheduleReconnect();
      }
      return;
    }
    if (S.pingAt && now - S.pingAt > 10000) {
      dropSocket();
      scheduleReconnect();
    } else if (!S.pingAt && now - S.lastFrameAt > 25000) {
      S.pingAt = now;
      sendFrame({ type: 'ping' });
    }
  }, 5000);

  // The network went away: the socket may still look open for a long time, so let it go now.
  window.addEventListener('offline', function () {
    if (S.phase === 'ended' || S.phase === 'signed_out' || S.leaving) return;
    dropSocket();
    clearTimeout(S.timer);
    setPhase('reconnecting');
  });

  window.addEventListener('online', function () {
    if (S.phase === 'reconnecting' && !S.ws) connect();
  });

  window.addEventListener('pagehide', function () {
    S.leaving = true;
    dropSocket();
  });

  // Back from the browser's page cache (a phone's back button): connect and resume again.
  window.addEventListener('pageshow', function (event) {
    if (!event.persisted || S.phase === 'ended') return;
    S.leaving = false;
    connect();
  });

  reconnectButton.addEventListener('click', function () {
    dropSocket();
    connect();
  });

  // --- messages -----------------------------------------------------------------------------

  function panelList(channel) {
    var panel = root.querySelector('.room-panel[data-channel="' + channel + '"]');
    return panel ? panel.querySelector('.messages') : null;
  }

  function appendTo(channel, node, seq, mine) {
    var list = panelList(channel);
    if (!list) return;
    var nearBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 60;
    list.appendChild(node);
    if (seq) S.nodes.set(seq, node);
    if (nearBottom || mine || !S.loaded) list.scrollTop = list.scrollHeight;
  }

  function messageShell(m) {
    var li = el('li', 'msg msg-' + m.kind + ' from-' + m.sender.side);
    if (m.sender.side === mySide) li.classList.add('mine');
    if (m.state && m.state !== 'delivered') li.classList.add('state-' + m.state);
    li.id = 'msg-' + m.seq;
    var meta = el('p', 'msg-meta');
    var who = sideName(m.sender.side) + (m.sender.name ? ' · ' + m.sender.name : '');
    meta.appendChild(el('span', 'msg-who', who));
    meta.appendChild(document.createTextNode(' '));
    meta.appendChild(timeElement(m.at));
    li.appendChild(meta);
    return li;
  }

  function heldNote(m) {
    var text = T.held;
    if (m.flagged && m.flagged.length) text += ' — ' + fmt(T.flagged, { terms: m.flagged.join(listSep) });
    return text;
  }

  function renderText(m) {
    var li = messageShell(m);
    if (m.body === null || m.body === undefined) {
      li.classList.add('state-removed');
      li.appendChild(el('p', 'msg-note', T.removed));
      return li;
    }
    li.appendChild(el('p', 'msg-body', m.body));
    if (m.state === 'removed') li.appendChild(el('p', 'msg-note', T.removed_mediator));
    if (m.state === 'held') {
      li.appendChild(el('p', 'msg-note', mySide === 'mediator' ? heldNote(m) : T.held_own));
    }
    if (mySide === 'mediator' && m.state === 'delivered') {
      var remove = el('button', 'link msg-remove', T.remove);
      remove.type = 'button';
      remove.setAttribute('aria-label', fmt(T.remove_label, { seq: m.seq }));
      remove.addEventListener('click', function () {
        if (!window.confirm(fmt(T.remove_label, { seq: m.seq }) + '?')) return;
        remove.disabled = true;
        act(
          { type: 'remove', seq: m.seq },
          {
            onFail: function (f) {
              remove.disabled = false;
              toolsStatus(fmt(T.refused, { reason: errorText(f) }));
            },
          }
        );
      });
      li.appendChild(remove);
    }
    return li;
  }

  function markRemoved(seq) {
    var old = S.seen.get(seq);
    if (!old || old.kind !== 'text') return;
    old.state = 'removed';
    if (mySide !== 'mediator') old.body = null;
    var node = S.nodes.get(seq);
    if (node) {
      var fresh = renderText(old);
      node.replaceWith(fresh);
      S.nodes.set(seq, fresh);
    }
    removeHeld(seq);
  }

  // A held message the mediator let through: shown where it was, or now to those who never had it.
  function markReleased(seq, original) {
    removeHeld(seq);
    var old = S.seen.get(seq);
    if (old) {
      old.state = 'delivered';
      var node = S.nodes.get(seq);
      if (node) {
        var fresh = renderText(old);
        node.replaceWith(fresh);
        S.nodes.set(seq, fresh);
      }
      return;
    }
    if (!original || original.body === null || original.body === undefined) return;
    S.seen.set(seq, original);
    appendTo(original.channel, renderText(original), seq, false);
    if (S.loaded && original.channel !== S.active) {
      S.unread[original.channel] = (S.unread[original.channel] || 0) + 1;
      renderUnread();
    }
  }

  function applySystem(m) {
    var p = m.payload || {};
    var text = null;
    if (p.event === 'joined' || p.event === 'left') {
      // The welcome's presence already counts everything up to its last_seq.
      if (m.seq > S.welcomeSeq) updatePresence(m.sender.side, m.sender.name, p.event === 'joined');
      return null;
    }
    if (p.event === 'started') {
      S.status = 'in_session';
      text = T.started;
      renderStatus();
    } else if (p.event === 'ended') {
      S.status = p.outcome === 'agreed' ? 'signing' : 'failed';
      text = p.outcome === 'agreed' ? T.ended_agreed : T.ended_failed;
      S.offers.forEach(function (offer) {
        if (offer.payload.status === 'open') {
          offer.payload.status = 'superseded';
          drawOffer(offer);
        }
      });
      renderStatus();
    } else if (p.event === 'resumed') {
      // A party declined the draft agreement: back to negotiating.
      S.status = 'in_session';
      text = T.resumed;
      renderStatus();
    } else if (p.event === 'muted') {
      if (p.until) S.muted[p.party] = p.until;
      text = fmt(T.muted, { party: sideName(p.party), time: p.until ? shanghaiClock(p.until) : '' });
      renderPresence();
    } else if (p.event === 'unmuted') {
      delete S.muted[p.party];
      text = fmt(T.unmuted, { party: sideName(p.party) });
      renderPresence();
    } else {
      return null;
    }
    var li = messageShell(m);
    li.appendChild(el('p', 'msg-body', text));
    if (m.body) li.appendChild(el('p', 'msg-body prewrap', m.body));
    return li;
  }

  function applyMessage(m) {
    if (typeof m.seq !== 'number' || S.seen.has(m.seq)) return; // each message once
    S.seen.set(m.seq, m);
    if (m.seq > S.lastSeq) S.lastSeq = m.seq;
    if (m.client_msg_id) {
      // Our own action came back (perhaps in a resume, before its ack): it is done.
      var entry = S.pending.get(m.client_msg_id);
      S.pending.delete(m.client_msg_id);
      if (entry && entry.onAck) entry.onAck({ seq: m.seq, state: m.state, duplicate: true });
      var bubble = S.outbox.get(m.client_msg_id);
      if (bubble) {
        bubble.remove();
        S.outbox.delete(m.client_msg_id);
      }
    }
    var p = m.payload || {};
    var node = null;
    stopTyping(m);
    if (m.kind === 'text') {
      node = renderText(m);
      if (m.state === 'held' && mySide === 'mediator') addHeld(m);
    } else if (m.kind === 'offer' && m.payload) {
      node = renderOfferMessage(m);
    } else if (m.kind === 'offer_response' && m.payload) {
      updateOffer(p);
      node = messageShell(m);
      var said = p.response === 'accept' ? T.response_accept : T.response_decline;
      node.appendChild(el('p', 'msg-body', fmt(said, { who: sideName(m.sender.side) })));
      if (m.body) node.appendChild(el('p', 'msg-body prewrap', m.body));
    } else if (m.kind === 'removed' && m.payload) {
      markRemoved(p.target_seq);
    } else if (m.kind === 'released' && m.payload) {
      markReleased(p.target_seq, p.message);
    } else if (m.kind === 'system') {
      node = applySystem(m);
    }
    if (!node) return;
    appendTo(m.channel, node, m.seq, m.sender.side === mySide);
    if (S.loaded && m.channel !== S.active) {
      S.unread[m.channel] = (S.unread[m.channel] || 0) + 1;
      renderUnread();
    }
  }

  // --- offers -------------------------------------------------------------------------------

  function renderOfferMessage(m) {
    var li = messageShell(m);
    var box = el('div', 'offer');
    li.appendChild(box);
    // A new offer replaces any still open.
    S.offers.forEach(function (offer) {
      if (offer.payload.status === 'open') {
        offer.payload.status = 'superseded';
        drawOffer(offer);
      }
    });
    var payload = JSON.parse(JSON.stringify(m.payload));
    var offer = { payload: payload, box: box, busy: false, error: '', declining: false };
    S.offers.set(payload.offer_id, offer);
    if (payload.status === 'accepted') S.acceptedOfferId = payload.offer_id;
    drawOffer(offer);
    renderControls();
    return li;
  }

  function updateOffer(p) {
    var offer = S.offers.get(p.offer_id);
    if (p.status === 'accepted') S.acceptedOfferId = p.offer_id;
    if (offer) {
      offer.payload.status = p.status;
      offer.payload.awaiting = p.awaiting || [];
      offer.busy = false;
      offer.declining = false;
      drawOffer(offer);
    }
    renderControls();
  }

  function canAnswer(payload) {
    return (
      isParty &&
      S.status === 'in_session' &&
      S.phase !== 'ended' &&
      payload.status === 'open' &&
      (payload.awaiting || []).indexOf(mySide) !== -1
    );
  }

  function fact(dl, label, value) {
    dl.appendChild(el('dt', null, label));
    dl.appendChild(el('dd', null, value));
  }

  function drawOffer(offer) {
    var p = offer.payload;
    var plan = p.plan;
    var box = offer.box;
    box.textContent = '';
    box.className = 'offer offer-' + p.status;
    var head = el('p', 'offer-head');
    head.tabIndex = -1;
    head.appendChild(el('strong', null, T.offer_title));
    head.appendChild(document.createTextNode(' '));
    var label = { open: T.status_open, accepted: T.status_accepted, declined: T.status_declined };
    var badgeText = p.status === 'open' ? '' : label[p.status] || T.status_superseded;
    if (p.status === 'open') {
      var waiting = (p.awaiting || []).map(sideName).join(listSep);
      badgeText = fmt(T.status_open, { sides: waiting });
    }
    head.appendChild(el('span', 'badge offer-status', badgeText));
    box.appendChild(head);
    box.appendChild(el('p', 'muted', fmt(T.proposed_by, { who: sideName(p.proposer_side) })));

    var dl = el('dl', 'facts offer-facts');
    fact(dl, T.total, formatFen(plan.total_fen));
    fact(dl, T.waiver, formatFen(plan.waiver_fen));
    fact(dl, T.installments, String(plan.installments));
    fact(dl, T.deferral, fmt(T.months, { n: plan.deferral_months }));
    fact(dl, T.monthly, formatFen(plan.monthly_fen));
    if (plan.final_fen !== plan.monthly_fen) fact(dl, T.final, formatFen(plan.final_fen));
    fact(dl, T.first_due, plan.first_due);
    fact(dl, T.last_due, plan.last_due);
    if (p.note) fact(dl, T.note, p.note);
    box.appendChild(dl);

    var wrap = el('div', 'schedule-wrap');
    var table = el('table', 'schedule');
    table.appendChild(el('caption', null, T.schedule));
    var thead = el('thead');
    var hr = el('tr');
    [T.col_number, T.col_due, T.col_amount].forEach(function (text, i) {
      var th = el('th', i === 2 ? 'num' : null, text);
      th.scope = 'col';
      hr.appendChild(th);
    });
    thead.appendChild(hr);
    table.appendChild(thead);
    var tbody = el('tbody');
    (plan.schedule || []).forEach(function (item) {
      var tr = el('tr');
      tr.appendChild(el('td', null, String(item.number)));
      tr.appendChild(el('td', null, item.due));
      tr.appendChild(el('td', 'num', formatFen(item.amount_fen)));
      tbody.appendChild(tr);
    });
    table.appendChild(tbody);
    wrap.appendChild(table);
    box.appendChild(wrap);

    if (canAnswer(p)) box.appendChild(offerActions(offer));
    if (offer.error) {
      var err = el('p', 'field-error', offer.error);
      err.setAttribute('role', 'alert');
      box.appendChild(err);
    }
  }

  function respond(offer, response, reason) {
    offer.busy = true;
    offer.error = '';
    drawOffer(offer);
    var frame = { type: 'respond', offer_id: offer.payload.offer_id, response: response };
    if (reason) frame.reason = reason;
    act(frame, {
      onFail: function (f) {
        offer.busy = false;
        offer.error = fmt(T.refused, { reason: errorText(f) });
        drawOffer(offer);
      },
    });
  }

  function offerActions(offer) {
    var box = el('div', 'offer-actions');
    if (offer.declining) {
      var id = 'decline-' + offer.payload.offer_id;
      var lab = el('label', null, T.decline_reason);
      lab.htmlFor = id;
      var reason = el('textarea');
      reason.id = id;
      reason.rows = 2;
      reason.maxLength = 1000;
      var confirmBtn = el('button', 'danger', T.confirm_decline);
      confirmBtn.type = 'button';
      confirmBtn.disabled = offer.busy;
      confirmBtn.addEventListener('click', function () {
        respond(offer, 'decline', reason.value.trim());
      });
      var cancel = el('button', 'secondary', T.cancel);
      cancel.type = 'button';
      cancel.addEventListener('click', function () {
        offer.declining = false;
        drawOffer(offer);
      });
      box.appendChild(lab);
      box.appendChild(reason);
      box.appendChild(confirmBtn);
      box.appendChild(document.createTextNode(' '));
      box.appendChild(cancel);
      setTimeout(function () {
        reason.focus();
      }, 0);
      return box;
    }
    var accept = el('button', 'offer-accept', offer.busy ? T.sending : T.accept);
    accept.type = 'button';
    accept.disabled = offer.busy;
    accept.addEventListener('click', function () {
      respond(offer, 'accept');
      offer.box.querySelector('.offer-head').focus();
    });
    var decline = el('button', 'secondary offer-decline', T.decline);
    decline.type = 'button';
    decline.disabled = offer.busy;
    decline.addEventListener('click', function () {
      offer.declining = true;
      drawOffer(offer);
    });
    box.appendChild(accept);
    box.appendChild(document.createTextNode(' '));
    box.appendChild(decline);
    return box;
  }

  // --- presence, status, typing, unread -----------------------------------------------------

  function updatePresence(side, name, here) {
    var names = (S.presence[side] = S.presence[side] || []);
    var at = names.indexOf(name);
    if (here && at === -1) names.push(name);
    if (!here && at !== -1) names.splice(at, 1);
    renderPresence();
  }

  function mutedUntil(side) {
    var until = S.muted[side];
    return until && parseAt(until).getTime() > Date.now() ? until : null;
  }

  function renderPresence() {
    root.querySelectorAll('#room-presence li').forEach(function (li) {
      var side = li.dataset.side;
      var names = S.presence[side] || [];
      var namesNode = li.querySelector('.presence-names');
      namesNode.textContent = names.length ? names.join(listSep) : T.nobody;
      namesNode.classList.toggle('muted', !names.length);
      li.classList.toggle('present', names.length > 0);
      var until = mutedUntil(side);
      li.querySelector('.presence-muted').textContent = until
        ? '(' + fmt(T.muted_until, { time: shanghaiClock(until) }) + ')'
        : '';
    });
    var mine = mutedUntil(mySide);
    mutedLine.hidden = !mine;
    mutedLine.textContent = mine ? fmt(T.you_are_muted, { time: shanghaiClock(mine) }) : '';
    if (mine) {
      // Lift the notice when the mute runs out.
      setTimeout(renderPresence, parseAt(mine).getTime() - Date.now() + 500);
    }
  }

  function renderStatus() {
    if (statusBadge && STATUS[S.status]) {
      statusBadge.textContent = STATUS[S.status];
      statusBadge.className = 'badge status-' + S.status;
    }
    root.dataset.status = S.status;
    var startBox = $('room-start-box');
    if (startBox) startBox.hidden = S.status !== 'scheduled';
    renderBanner();
    renderControls();
  }

  function renderControls() {
    var live = S.phase !== 'ended' && S.status === 'in_session';
    textInput.disabled = S.phase === 'ended';
    sendButton.disabled = !live;
    if (S.phase === 'ended') composerNote.textContent = T.ended;
    else if (S.status === 'scheduled') composerNote.textContent = T.waiting;
    else if (S.phase !== 'connected') composerNote.textContent = T.queued;
    else composerNote.textContent = '';
    if (offerForm) {
      var closed = Boolean(S.acceptedOfferId);
      $('offer-submit').disabled = !live || closed;
      var closedNote = $('offer-closed-note');
      if (closed && !closedNote) {
        closedNote = el('p', 'help', T.offer_closed);
        closedNote.id = 'offer-closed-note';
        offerForm.insertBefore(closedNote, offerForm.firstChild);
      }
    }
    var tools = $('room-tools');
    if (tools) {
      tools.querySelectorAll('form').forEach(function (form) {
        form.hidden = S.phase === 'ended';
      });
      tools.querySelectorAll('form button, form input, form select, form textarea').forEach(
        function (control) {
          control.disabled = !live;
        }
      );
      var start = $('room-start');
      if (start) start.disabled = S.phase !== 'connected' || S.status !== 'scheduled';
    }
    S.offers.forEach(function (offer) {
      var hasActions = Boolean(offer.box.querySelector('.offer-actions'));
      if (hasActions !== canAnswer(offer.payload)) drawOffer(offer);
    });
  }

  function onTyping(frame) {
    var names = (S.typing[frame.channel] = S.typing[frame.channel] || {});
    names[frame.name] = Date.now() + 4000;
    renderTyping();
    setTimeout(renderTyping, 4100);
  }

  // Whoever's message has arrived is no longer typing it.
  function stopTyping(m) {
    var names = S.typing[m.channel];
    if (!names || !m.sender || !(m.sender.name in names)) return;
    delete names[m.sender.name];
    renderTyping();
  }

  function renderTyping() {
    var now = Date.now();
    var names = S.typing[S.active] || {};
    var active = Object.keys(names).filter(function (name) {
      return names[name] > now;
    });
    typingLine.textContent = active.length ? fmt(T.typing, { names: active.join(listSep) }) : '';
  }

  function renderUnread() {
    tabs.forEach(function (tab) {
      var n = S.unread[tab.dataset.channel] || 0;
      var count = tab.querySelector('.count');
      count.hidden = n === 0;
      count.textContent = String(n);
      tab.querySelector('.tab-unread').textContent = n ? ' ' + fmt(T.unread, { n: n }) : '';
    });
  }

  // --- tabs (WAI-ARIA tabs: arrow keys move between them) -----------------------------------

  function selectTab(tab, focus) {
    tabs.forEach(function (t) {
      var on = t === tab;
      t.setAttribute('aria-selected', on ? 'true' : 'false');
      t.tabIndex = on ? 0 : -1;
      $(t.getAttribute('aria-controls')).hidden = !on;
    });
    S.active = tab.dataset.channel;
    S.unread[S.active] = 0;
    renderUnread();
    renderTyping();
    composerChannel.textContent = tab.querySelector('.tab-name').textContent;
    var list = panelList(S.active);
    if (list) list.scrollTop = list.scrollHeight;
    if (focus) tab.focus();
  }

  tabs.forEach(function (tab, i) {
    tab.addEventListener('click', function () {
      selectTab(tab, false);
    });
    tab.addEventListener('keydown', function (event) {
      var next = null;
      if (event.key === 'ArrowRight') next = tabs[(i + 1) % tabs.length];
      else if (event.key === 'ArrowLeft') next = tabs[(i - 1 + tabs.length) % tabs.length];
      else if (event.key === 'Home') next = tabs[0];
      else if (event.key === 'End') next = tabs[tabs.length - 1];
      if (next) {
        event.preventDefault();
        selectTab(next, true);
      }
    });
  });

  // --- composer -----------------------------------------------------------------------------

  function setBubbleState(bubble, text) {
    bubble.querySelector('.msg-note').textContent = text;
  }

  function sendText() {
    var text = textInput.value.trim();
    if (!text || S.status !== 'in_session' || S.phase === 'ended') return;
    var channel = S.active;
    var cid = act({ type: 'send', channel: channel, text: text });
    // Shown at once; replaced by the stored message when it comes back with its seq.
    var bubble = el('li', 'msg msg-text mine pending from-' + mySide);
    bubble.appendChild(el('p', 'msg-body', text));
    bubble.appendChild(el('p', 'msg-note', S.phase === 'connected' ? T.sending : T.queued));
    S.outbox.set(cid, bubble);
    appendTo(channel, bubble, null, true);
    textInput.value = '';
    textInput.focus();
  }

  composer.addEventListener('submit', function (event) {
    event.preventDefault();
    sendText();
  });

  textInput.addEventListener('keydown', function (event) {
    if (event.key === 'Enter' && (event.ctrlKey || event.metaKey)) {
      event.preventDefault();
      sendText();
    }
  });

  textInput.addEventListener('input', function () {
    var now = Date.now();
    if (S.phase !== 'connected' || S.status !== 'in_session' || now - S.lastTypingSent < 2000) return;
    S.lastTypingSent = now;
    sendFrame({ type: 'typing', channel: S.active });
  });

  // --- offer composer -----------------------------------------------------------------------

  if (offerForm) {
    var debtFen = parseInt(cfg.debtFen, 10);
    var waivableFen = parseInt(cfg.waivableFen, 10);
    var maxInstallments = parseInt(cfg.maxInstallments, 10);
    var maxDeferral = parseInt(cfg.maxDeferral, 10);
    var totalInput = $('offer-total');
    var waiverInput = $('offer-waiver');
    var countInput = $('offer-installments');
    var deferralInput = $('offer-deferral');
    var dueInput = $('offer-first-due');
    var noteInput = $('offer-note');
    var preview = $('offer-preview');
    var offerError = $('offer-error');

    var showOfferError = function (messages) {
      offerError.hidden = !messages.length;
      offerError.textContent = messages.join(' ');
    };

    var dueLimits = function () {
      var deferral = parseWhole(deferralInput.value);
      var today = shanghaiToday();
      dueInput.min = addDay(today);
      if (deferral !== null && deferral <= maxDeferral) {
        dueInput.max = addMonths(today, deferral + 1);
      }
    };

    var updatePreview = function () {
      var total = parseYuan(totalInput.value);
      var count = parseWhole(countInput.value);
      if (total === null || count === null || count < 1 || count > maxInstallments || total < count) {
        preview.textContent = '';
        return;
      }
      var regular = Math.floor(total / count);
      var last = total - regular * (count - 1);
      preview.textContent = fmt(T.preview, {
        count: count,
        monthly: formatFen(regular),
        final: formatFen(last),
      });
    };

    // The two amounts always add up to the debt: editing one fills in the other.
    waiverInput.addEventListener('input', function () {
      var waiver = parseYuan(waiverInput.value);
      if (waiver !== null && waiver <= debtFen) totalInput.value = fenToYuan(debtFen - waiver);
      updatePreview();
    });
    totalInput.addEventListener('input', function () {
      var total = parseYuan(totalInput.value);
      if (total !== null && total <= debtFen) waiverInput.value = fenToYuan(debtFen - total);
      updatePreview();
    });
    countInput.addEventListener('input', updatePreview);
    deferralInput.addEventListener('input', dueLimits);
    dueLimits();
    updatePreview();

    // The mediator's suggested plans (server-rendered): "Use this plan" fills the form.
    Array.prototype.forEach.call(document.querySelectorAll('.suggestion-fill'), function (button) {
      button.addEventListener('click', function () {
        totalInput.value = fenToYuan(parseInt(button.dataset.total, 10));
        waiverInput.value = fenToYuan(parseInt(button.dataset.waiver, 10));
        countInput.value = button.dataset.installments;
        deferralInput.value = button.dataset.deferral;
        dueInput.value = button.dataset.firstDue;
        dueLimits();
        updatePreview();
        totalInput.focus();
      });
    });

    var offerTerms = function () {
      var problems = [];
      var total = parseYuan(totalInput.value);
      var waiver = parseYuan(waiverInput.value);
      var count = parseWhole(countInput.value);
      var deferral = parseWhole(deferralInput.value);
      var due = dueInput.value;
      var today = shanghaiToday();
      [totalInput, waiverInput, countInput, deferralInput, dueInput].forEach(function (input) {
        input.removeAttribute('aria-invalid');
      });
      var bad = function (input, message) {
        input.setAttribute('aria-invalid', 'true');
        if (problems.indexOf(message) === -1) problems.push(message);
      };
      if (total === null) bad(totalInput, T.yuan_invalid);
      if (waiver === null) bad(waiverInput, T.yuan_invalid);
      if (count === null) bad(countInput, T.whole_number);
      if (deferral === null) bad(deferralInput, T.whole_number);
      if (!/^\d{4}-\d{2}-\d{2}$/.test(due)) bad(dueInput, T.date_invalid);
      if (problems.length) return { problems: problems };
      if (total <= 0) bad(totalInput, E.total_not_positive);
      if (total + waiver !== debtFen) bad(totalInput, E.does_not_add_up);
      if (waiver > waivableFen) bad(waiverInput, E.waiver_exceeds_interest_and_fees);
      if (count < 1 || count > maxInstallments) bad(countInput, E.installments_out_of_range);
      if (deferral > maxDeferral) bad(deferralInput, E.deferral_out_of_range);
      else if (due <= today) bad(dueInput, E.first_due_not_in_future);
      else if (due > addMonths(today, deferral + 1)) bad(dueInput, E.first_due_too_late);
      if (total > 0 && count >= 1 && total < count) bad(countInput, E.installment_below_minimum);
      return {
        problems: problems,
        terms: {
          total_fen: total,
          waiver_fen: waiver,
          installments: count,
          first_due: due,
          deferral_months: deferral,
        },
      };
    };

    offerForm.addEventListener('submit', function (event) {
      event.preventDefault();
      if (S.status !== 'in_session' || S.acceptedOfferId) return;
      var checked = offerTerms();
      showOfferError(checked.problems);
      if (checked.problems.length) {
        var invalid = offerForm.querySelector('[aria-invalid="true"]');
        if (invalid) invalid.focus();
        return;
      }
      var frame = { type: 'offer', terms: checked.terms };
      var note = noteInput.value.trim();
      if (note) frame.note = note;
      var submit = $('offer-submit');
      submit.disabled = true;
      preview.textContent = T.sending;
      act(frame, {
        onAck: function () {
          submit.disabled = false;
          noteInput.value = '';
          preview.textContent = T.offer_sent;
        },
        onFail: function (f) {
          submit.disabled = false;
          preview.textContent = '';
          showOfferError([errorText(f)]);
        },
      });
    });
  }

  // --- mediator tools -----------------------------------------------------------------------

  function toolsStatus(text) {
    var node = $('room-tools-status');
    if (node) node.textContent = text;
  }

  function postJson(path, body) {
    var headers = { 'X-CSRF-Token': cfg.csrf, Accept: 'application/json' };
    var init = { method: 'POST', headers: headers, credentials: 'same-origin' };
    if (body !== undefined) {
      headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    return fetch(cfg.apiBase + path, init).then(
      function (response) {
        if (response.ok) return null;
        return response.json().then(
          function (payload) {
            return fmt(T.refused, { reason: errorText(payload) });
          },
          function () {
            return fmt(T.refused, { reason: E.unknown });
          }
        );
      },
      function () {
        return E.network;
      }
    );
  }

  var startButton = $('room-start');
  if (startButton) {
    startButton.addEventListener('click', function () {
      startButton.disabled = true;
      postJson('/session/start').then(function (problem) {
        toolsStatus(problem || T.started_ok);
        if (problem) startButton.disabled = false;
      });
    });
  }

  var endForm = $('room-end');
  if (endForm) {
    endForm.addEventListener('submit', function (event) {
      event.preventDefault();
      var chosen = endForm.querySelector('input[name="outcome"]:checked');
      if (!chosen) {
        toolsStatus(E.choose_outcome);
        endForm.querySelector('input[name="outcome"]').focus();
        return;
      }
      var note = $('end-note').value.trim();
      toolsStatus(T.ending);
      postJson('/session/end', { outcome: chosen.value, note: note || null }).then(function (problem) {
        // On success the room says `ended` and closes; the banner follows from that.
        if (problem) toolsStatus(problem);
      });
    });
  }

  var muteForm = $('room-mute');
  if (muteForm) {
    muteForm.addEventListener('submit', function (event) {
      event.preventDefault();
      var minutes = parseWhole($('mute-minutes').value);
      if (minutes === null) {
        toolsStatus(E.invalid_minutes);
        return;
      }
      act(
        { type: 'mute', party: $('mute-party').value, minutes: minutes },
        {
          onAck: function () {
            toolsStatus(T.mute_sent);
          },
          onFail: function (f) {
            toolsStatus(fmt(T.refused, { reason: errorText(f) }));
          },
        }
      );
    });
  }

  function addHeld(m) {
    var list = $('room-held');
    if (!list || S.held.has(m.seq)) return;
    var li = el('li', 'held-item');
    var meta = el('p', 'msg-meta');
    meta.appendChild(el('span', 'msg-who', sideName(m.sender.side) + ' · ' + m.sender.name));
    meta.appendChild(document.createTextNode(' '));
    meta.appendChild(timeElement(m.at));
    li.appendChild(meta);
    li.appendChild(el('p', 'msg-body', m.body));
    li.appendChild(el('p', 'msg-note', heldNote(m)));
    var release = el('button', 'secondary', T.release);
    release.type = 'button';
    release.setAttribute('aria-label', fmt(T.release_label, { seq: m.seq }));
    release.addEventListener('click', function () {
      release.disabled = true;
      act(
        { type: 'release', seq: m.seq },
        {
          onFail: function (f) {
            release.disabled = false;
            toolsStatus(fmt(T.refused, { reason: errorText(f) }));
          },
        }
      );
    });
    li.appendChild(release);
    list.appendChild(li);
    S.held.set(m.seq, li);
    renderHeldCount();
  }

  function removeHeld(seq) {
    var li = S.held.get(seq);
    if (!li) return;
    li.remove();
    S.held.delete(seq);
    renderHeldCount();
  }

  function renderHeldCount() {
    var count = $('room-held-count');
    if (!count) return;
    count.hidden = S.held.size === 0;
    count.textContent = String(S.held.size);
    $('room-held-empty').hidden = S.held.size > 0;
  }

  // --- go -----------------------------------------------------------------------------------

  renderPresence();
  renderStatus();
  connect();

  function reloadWhenOpen(iso) {
    var at = Date.parse(iso);
    if (isNaN(at)) return;
    var wait = Math.max(0, at - Date.now()) + 1000;
    // Timers of more than a few hours are unreliable (sleeping devices); the person reloads.
    if (wait < 6 * 3600 * 1000) setTimeout(function () { location.reload(); }, wait);
  }
})();
