/*
 * The application form's affordability preview (收支评估), live as the borrower types:
 * monthly income minus essential expenses = what is left each month, and the payment that
 * leaves the affordability engine's reserve untouched (app.batch.affordability: what it keeps,
 * per hardship, arrives in basis points as T.keep_bp).
 *
 * Money is integer fen throughout. What a person types ("6,000.50", "￥1，200", "２０００．５")
 * is read as a decimal string, the way the server reads it (app.portals.common.yuan_to_fen):
 * never through floating point, so 0.1 + 0.2 never shows as 0.30000000000000004.
 * The texts come, translated, from the JSON block #afford-text (the CSP forbids inline scripts).
 * Without JavaScript the "Check the figures" button asks the server for the same preview.
 */
(function () {
  'use strict';

  var section = document.getElementById('affordability');
  var textBlock = document.getElementById('afford-text');
  var income = document.getElementById('monthly_income_yuan');
  var expenses = document.getElementById('monthly_expenses_yuan');
  if (!section || !textBlock || !income || !expenses) return;

  var T = JSON.parse(textBlock.textContent);
  var out = {
    income: document.getElementById('afford-income'),
    expenses: document.getElementById('afford-expenses'),
    left: document.getElementById('afford-left'),
    message: document.getElementById('afford-message'),
    plan: document.getElementById('afford-plan')
  };
  var hardship = document.getElementById('hardship_reason');
  // The server's sentence (after "Check the figures") also names a plan; it stands while the
  // figures it was made from do.
  function figures() {
    return [income.value, expenses.value, hardship ? hardship.value : ''].join('|');
  }
  var served = out.plan && !out.plan.hidden ? figures() : null;
  // Up to 15 digits of yuan, at most two decimals; the same rule as the server.
  var AMOUNT = /^(-?)([0-9]{1,15})(?:\.([0-9]{1,2}))?$/;
  // Fen stays an exact integer in a double up to 2^53; amounts above the schema's limit
  // (10^13 fen) are refused by the server anyway.
  var MAX_FEN = 1e13;

  /** Fen from typed yuan: a number, null for an empty field, NaN for something unreadable. */
  function toFen(typed) {
    var s = String(typed);
    if (s.normalize) s = s.normalize('NFKC'); // full-width digits, "．", "，", "￥" to ASCII
    s = s.replace(/,/g, '').replace(/\s+/g, '');
    if (s.charAt(0) === '¥') s = s.slice(1);
    if (s.charAt(s.length - 1) === '元') s = s.slice(0, -1);
    if (s === '') return null;
    var m = AMOUNT.exec(s);
    if (!m) return NaN;
    var frac = (m[3] || '') + '00';
    var fen = parseInt(m[2], 10) * 100 + parseInt(frac.slice(0, 2), 10);
    if (fen > MAX_FEN) return NaN;
    return m[1] === '-' ? -fen : fen;
  }

  /** ¥1,234.56, as the server's money filter writes it (app.i18n.format_fen). */
  function money(fen) {
    var sign = fen < 0 ? '-' : '';
    var abs = Math.abs(fen);
    var yuan = String(Math.floor(abs / 100));
    var cents = String(abs % 100);
    if (cents.length < 2) cents = '0' + cents;
    var grouped = yuan.replace(/\B(?=(\d{3})+(?!\d))/g, ',');
    return sign + '¥' + grouped + '.' + cents;
  }

  function fill(template, values) {
    return template.replace(/%\((\w+)\)s/g, function (whole, key) {
      return Object.prototype.hasOwnProperty.call(values, key) ? values[key] : whole;
    });
  }

  function show(node, text) {
    if (node && node.textContent !== text) node.textContent = text;
  }

  /** The sustainable monthly payment in fen: floor(left × keep / 10000), exactly. */
  function sustainable(leftFen) {
    var keep = T.keep_bp[hardship ? hardship.value : ''];
    if (typeof keep !== 'number') keep = T.keep_bp[''];
    // left × keep can pass 2^53; split left into 10000s and the rest so every step is exact.
    var whole = Math.floor(leftFen / 10000);
    var rest = leftFen % 10000;
    return whole * keep + Math.floor((rest * keep) / 10000);
  }

  function showPlan(inFen, exFen, left) {
    if (!out.plan) return;
    if (served !== null && figures() === served) return;
    served = null;
    var amount = left > 0 ? sustainable(left) : 0;
    if (amount <= 0) {
      out.plan.hidden = true;
      show(out.plan, '');
      return;
    }
    show(
      out.plan,
      fill(T.sustain, { income: money(inFen), expenses: money(exFen), amount: money(amount) })
    );
    out.plan.hidden = false;
  }

  function update() {
    var inFen = toFen(income.value);
    var exFen = toFen(expenses.value);
    var readable = function (fen) {
      return typeof fen === 'number' && !isNaN(fen) && fen >= 0;
    };
    show(out.income, readable(inFen) ? money(inFen) : '—');
    show(out.expenses, readable(exFen) ? money(exFen) : '—');
    var bad = (inFen !== null && !readable(inFen)) || (exFen !== null && !readable(exFen));
    if (!readable(inFen) || !readable(exFen)) {
      show(out.left, '—');
      out.left.classList.remove('short');
      show(out.message, bad ? T.invalid : T.empty);
      section.setAttribute('data-state', bad ? 'invalid' : 'empty');
      showPlan(0, 0, 0);
      return;
    }
    var left = inFen - exFen;
    showPlan(inFen, exFen, left);
    show(out.left, money(left));
    out.left.classList.toggle('short', left <= 0);
    if (left < 0) {
      show(out.message, fill(T.short, { amount: money(-left) }));
      section.setAttribute('data-state', 'short');
    } else if (left === 0) {
      show(out.message, T.zero);
      section.setAttribute('data-state', 'zero');
    } else {
      show(out.message, fill(T.left, { amount: money(left) }));
      section.setAttribute('data-state', 'left');
    }
  }

  income.addEventListener('input', update);
  expenses.addEventListener('input', update);
  if (hardship) hardship.addEventListener('change', update);
  // The live figure makes the server round trip unnecessary; keep it for those without JS.
  var check = document.getElementById('afford-check');
  if (check) check.hidden = true;
  section.setAttribute('data-live', 'on');
  update();
})();
