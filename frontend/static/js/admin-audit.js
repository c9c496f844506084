// admin-audit.js: the Audit part of the console, for administrators: the
// audit log newest first, filtered by actor, action, outcome and time,
// paged back with "Older entries"; the check of its hash chain; and a JSON
// Lines export of the same filter.

import { apiGet } from './api.js';
import { UNREADABLE, clearErrors, errorEl, handle, num, str, time, timeEl } from './admin-common.js';
import { ensureUserNames, userNames } from './admin-people.js';
import { byId, el, formById, inputById, showError } from './ui.js';

/** Entries per page. */
const PAGE = 50;

/**
 * @typedef {Object} AuditEntry
 * @property {number} seq
 * @property {Date|null} at
 * @property {string} actor such as "user:…", "guest:…", "system"
 * @property {string} action such as "signal.kick"
 * @property {string} target
 * @property {string} outcome "success", "failure" or "denied"
 * @property {string} clientIP
 * @property {unknown} details
 */

const form = formById('audit-filter');
const actorInput = inputById('audit-actor');
const actionInput = inputById('audit-action');
const targetInput = inputById('audit-target');
const outcomeSelect = /** @type {HTMLSelectElement} */ (byId('audit-outcome'));
const fromInput = inputById('audit-from');
const toInput = inputById('audit-to');
const submitButton = /** @type {HTMLButtonElement} */ (byId('audit-submit'));
const exportLink = /** @type {HTMLAnchorElement} */ (byId('audit-export'));
const statusEl = byId('audit-status');
const body = /** @type {HTMLTableElement} */ (byId('audit-table')).tBodies[0];
const emptyEl = byId('audit-empty');
const olderButton = /** @type {HTMLButtonElement} */ (byId('audit-older'));
const verifyEl = byId('audit-verify');
const verifyButton = /** @type {HTMLButtonElement} */ (byId('audit-verify-run'));

/** The filter applied to the table (and the export). */
let filter = new URLSearchParams();
/** The seq to page back from, null at the oldest entry. */
let nextBefore = /** @type {number|null} */ (null);
/** Counts loads, so that a slow answer cannot replace a newer one. */
let loadSeq = 0;
let started = false;

/**
 * @param {any} v
 * @returns {AuditEntry|null}
 */
function entryOf(v) {
  if (!v || typeof v !== 'object' || typeof v.seq !== 'number') return null;
  return {
    seq: v.seq,
    at: time(v.at),
    actor: str(v.actor),
    action: str(v.action),
    target: str(v.target),
    outcome: str(v.outcome),
    clientIP: str(v.client_ip),
    details: v.details,
  };
}

/**
 * An actor or a target, with the username when it is a known account.
 * @param {string} who such as "user:abc"
 * @param {string} field "actor" or "target"
 */
function subjectCell(who, field) {
  const td = el('td', { className: 'mono small subject', attrs: { 'data-field': field } });
  const m = /^user:(.+)$/.exec(who);
  const name = m ? userNames.get(m[1]) : undefined;
  if (name) {
    td.append(el('span', { className: 'subject-name', text: name }), ' ', el('span', { className: 'muted', text: who }));
  } else {
    td.textContent = who || '—';
  }
  return td;
}

/** @param {unknown} details */
function detailsText(details) {
  if (details === null || details === undefined) return '';
  if (typeof details !== 'object' || Array.isArray(details)) return JSON.stringify(details);
  return Object.entries(details)
    .map(([k, v]) => `${k}: ${typeof v === 'string' ? v : JSON.stringify(v)}`)
    .join('; ');
}

/** @param {AuditEntry} e */
function entryRow(e) {
  const outcome = el('td', { attrs: { 'data-field': 'outcome' } },
    el('span', { className: `badge outcome ${['success', 'failure', 'denied'].includes(e.outcome) ? e.outcome : 'other'}`, text: e.outcome || '—' }));
  const details = detailsText(e.details);
  return el('tr', { attrs: { 'data-seq': String(e.seq), 'data-action': e.action, 'data-outcome': e.outcome } },
    el('td', { className: 'num small', text: String(e.seq) }),
    el('td', { className: 'small nowrap' }, timeEl(e.at)),
    subjectCell(e.actor, 'actor'),
    el('td', { className: 'mono small', text: e.action, attrs: { 'data-field': 'action' } }),
    subjectCell(e.target, 'target'),
    outcome,
    el('td', { className: 'mono small', text: e.clientIP || '—', attrs: { 'data-field': 'client_ip' } }),
    el('td', { className: 'small details-cell', text: details || '—', attrs: { 'data-field': 'details' } }));
}

/**
 * A datetime-local value as RFC 3339 (in UTC), '' when empty or invalid.
 * @param {string} value
 */
function rfc3339(value) {
  if (value === '') return '';
  const d = new Date(value); // local time, as the person typed it
  return Number.isNaN(d.getTime()) ? '' : d.toISOString();
}

/**
 * An actor or target as the log names it: a known username becomes
 * "user:<id>" (the log names accounts by id); anything else stays as typed.
 * @param {string} value
 */
function subject(value) {
  const v = value.trim();
  if (v === '' || v.includes(':')) return v;
  for (const [id, name] of userNames) {
    if (name === v.toLowerCase()) return `user:${id}`;
  }
  return v;
}

/**
 * The filter of the form; null (and the alert shown) when it is wrong.
 * @returns {URLSearchParams|null}
 */
function readFilter() {
  const q = new URLSearchParams();
  const actor = subject(actorInput.value);
  if (actor !== '') q.set('actor', actor);
  const target = subject(targetInput.value);
  if (target !== '') q.set('target', target);
  const action = actionInput.value.trim();
  if (action !== '') q.set('action', action);
  if (outcomeSelect.value !== '') q.set('outcome', outcomeSelect.value);
  const from = rfc3339(fromInput.value);
  const to = rfc3339(toInput.value);
  if (fromInput.value !== '' && from === '') {
    showError(errorEl, 'The “From” time is not a date and time.');
    fromInput.focus();
    return null;
  }
  if (toInput.value !== '' && to === '') {
    showError(errorEl, 'The “To” time is not a date and time.');
    toInput.focus();
    return null;
  }
  if (from !== '' && to !== '' && from > to) {
    showError(errorEl, '“From” is after “To”: swap them.');
    fromInput.focus();
    return null;
  }
  if (from !== '') q.set('from', from);
  if (to !== '') q.set('to', to);
  return q;
}

/**
 * Loads a page of entries: the newest (older = false, replacing the table)
 * or those before the last one shown.
 * @param {boolean} older
 * @returns {Promise<boolean>}
 */
async function load(older) {
  const seq = ++loadSeq;
  const q = new URLSearchParams(filter);
  q.set('limit', String(PAGE));
  if (older && nextBefore !== null) q.set('before_seq', String(nextBefore));
  /** @type {any} */
  let res;
  try {
    res = await apiGet(`/api/v1/admin/audit?${q}`);
  } catch (err) {
    if (seq === loadSeq) await handle(err);
    return false;
  }
  if (seq !== loadSeq) return false;
  if (!res || !Array.isArray(res.entries)) {
    showError(errorEl, UNREADABLE);
    return false;
  }
  /** @type {AuditEntry[]} */
  const entries = [];
  for (const v of res.entries) {
    const e = entryOf(v);
    if (e) entries.push(e);
  }
  const rows = entries.map(entryRow);
  if (older) body.append(...rows);
  else body.replaceChildren(...rows);
  nextBefore = typeof res.next_before_seq === 'number' ? res.next_before_seq : null;
  olderButton.hidden = nextBefore === null;
  emptyEl.hidden = body.rows.length > 0;
  const n = body.rows.length;
  statusEl.textContent = `Showing ${n} ${n === 1 ? 'entry' : 'entries'}${nextBefore !== null ? '; there are older ones' : ''}.`;
  return true;
}

/** Points the export link at the applied filter. */
function updateExport() {
  const q = filter.toString();
  exportLink.href = '/api/v1/admin/audit/export' + (q !== '' ? `?${q}` : '');
}

/** Checks the hash chain and says what it found. */
async function verify() {
  verifyButton.disabled = true;
  verifyEl.textContent = 'Checking the log…';
  delete verifyEl.dataset.ok;
  /** @type {any} */
  let res;
  try {
    res = await apiGet('/api/v1/admin/audit/verify');
  } catch (err) {
    verifyEl.textContent = 'The log could not be checked.';
    await handle(err);
    return;
  } finally {
    verifyButton.disabled = false;
  }
  if (!res || typeof res.ok !== 'boolean') {
    verifyEl.textContent = 'The log could not be checked.';
    showError(errorEl, UNREADABLE);
    return;
  }
  const entries = num(res.entries);
  const head = str(res.head_hash);
  verifyEl.dataset.ok = String(res.ok);
  verifyEl.classList.toggle('bad', !res.ok);
  verifyEl.classList.toggle('good', res.ok);
  if (res.ok) {
    verifyEl.replaceChildren(
      el('strong', { text: 'The log is intact.' }),
      ` Checked ${entries} ${entries === 1 ? 'entry' : 'entries'}` +
        (typeof res.head_seq === 'number' ? `, up to #${res.head_seq}` : '') + '. ');
  } else {
    const at = typeof res.broken_at === 'number' ? ` at entry #${res.broken_at}` : '';
    const reason = str(res.reason);
    verifyEl.replaceChildren(
      el('strong', { text: `The log has been altered${at}.` }),
      reason !== '' ? ` ${reason}. ` : ' ',
      'Entries from there on cannot be trusted. ');
  }
  if (head !== '') {
    verifyEl.append('Head hash: ', el('code', { className: 'hash', text: head, attrs: { 'data-field': 'head_hash' } }));
  }
}

form.addEventListener('submit', async (ev) => {
  ev.preventDefault();
  clearErrors();
  const q = readFilter();
  if (q === null) return;
  filter = q;
  updateExport();
  submitButton.disabled = true;
  try {
    await load(false);
  } finally {
    submitButton.disabled = false;
  }
});

form.addEventListener('reset', () => {
  clearErrors();
  filter = new URLSearchParams();
  updateExport();
  void load(false);
});

olderButton.addEventListener('click', async () => {
  if (nextBefore === null) return;
  olderButton.disabled = true;
  const before = body.rows.length;
  try {
    await load(true);
  } finally {
    olderButton.disabled = false;
  }
  // Keep the keyboard on the list: the first entry that came in.
  const first = body.rows[before];
  if (first && olderButton.hidden) {
    first.setAttribute('tabindex', '-1');
    first.focus();
  }
});

verifyButton.addEventListener('click', () => void verify());

/** The Audit tab is shown: load it the first time, check the chain each time. */
export function showAudit() {
  void verify();
  if (started) return;
  started = true;
  updateExport();
  void ensureUserNames().then(() => load(false));
}
