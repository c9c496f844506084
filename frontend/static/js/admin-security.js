// admin-security.js: the Security overview of the console, for
// administrators: failed sign-ins and throttled attempts per hour over the
// last day (a bar chart, and the same numbers as a table), the accounts
// nobody has used for a long time, and the recovery codes used lately.

import { apiGet } from './api.js';
import { UNREADABLE, ago, clearErrors, errorEl, handle, num, str, time, timeEl } from './admin-common.js';
import { barChart } from './admin-chart.js';
import { byId, el, showError } from './ui.js';

const HOURS = 24;

const chartEl = byId('security-chart');
const tableBody = /** @type {HTMLTableElement} */ (byId('security-table')).tBodies[0];
const statusEl = byId('security-status');
const inactiveList = byId('inactive-list');
const inactiveEmpty = byId('inactive-empty');
const recoveryList = byId('recovery-used-list');
const recoveryEmpty = byId('recovery-used-empty');
const refreshButton = /** @type {HTMLButtonElement} */ (byId('security-refresh'));

let started = false;

/**
 * @typedef {Object} Hour
 * @property {Date|null} start
 * @property {number} failed
 * @property {number} throttled
 * @property {number} locked accounts locked in that hour
 */

/** @param {Date|null} d "14:00" */
function hourLabel(d) {
  return d === null ? '?' : d.toLocaleTimeString(undefined, { hour: '2-digit', minute: '2-digit' });
}

/** @param {Hour[]} hours */
function drawChart(hours) {
  const failed = hours.reduce((n, h) => n + h.failed, 0);
  const throttled = hours.reduce((n, h) => n + h.throttled, 0);
  const locked = hours.reduce((n, h) => n + h.locked, 0);
  let worst = hours[0];
  for (const h of hours) if (worst === undefined || h.failed > worst.failed) worst = h;
  let summary = `Over the last ${hours.length} hours: ${failed} failed ${failed === 1 ? 'sign-in' : 'sign-ins'} ` +
    `, ${throttled} throttled ${throttled === 1 ? 'attempt' : 'attempts'} ` +
    `and ${locked} ${locked === 1 ? 'account' : 'accounts'} locked.`;
  if (worst !== undefined && worst.failed > 0) {
    summary += ` The most failures, ${worst.failed}, came in the hour from ${hourLabel(worst.start)}.`;
  }
  const svg = barChart({
    labels: hours.map((h) => hourLabel(h.start)),
    series: [
      { name: 'Failed sign-ins', className: 'failed', values: hours.map((h) => h.failed) },
      { name: 'Throttled', className: 'throttled', values: hours.map((h) => h.throttled) },
      { name: 'Accounts locked', className: 'locked', values: hours.map((h) => h.locked) },
    ],
    summary,
    labelEvery: 3,
  });
  chartEl.querySelector('svg')?.remove();
  chartEl.prepend(svg);
  chartEl.dataset.failed = String(failed);
  chartEl.dataset.throttled = String(throttled);

  tableBody.replaceChildren(...hours.map((h) => el('tr', {},
    el('td', {}, timeEl(h.start)),
    el('td', { className: 'num', text: String(h.failed) }),
    el('td', { className: 'num', text: String(h.throttled) }),
    el('td', { className: 'num', text: String(h.locked) }))));
}

/** @param {any} res */
function drawLists(res) {
  const inactive = Array.isArray(res.inactive_accounts) ? res.inactive_accounts : [];
  inactiveList.replaceChildren();
  for (const v of inactive) {
    if (!v || typeof v !== 'object' || typeof v.username !== 'string') continue;
    const last = time(v.last_login_at);
    const name = str(v.display_name);
    const li = el('li', { className: 'item', attrs: { 'data-username': v.username } },
      el('span', { className: 'item-name', text: name !== '' && name !== v.username ? `${name} (${v.username})` : v.username }));
    li.append(el('p', { className: 'muted small item-facts' },
      ...(last === null ? ['Never signed in'] : ['Last signed in ', timeEl(last), ` (${ago(last)})`])));
    inactiveList.append(li);
  }
  inactiveEmpty.hidden = inactiveList.children.length > 0;

  const used = Array.isArray(res.recovery_codes_used) ? res.recovery_codes_used : [];
  recoveryList.replaceChildren();
  for (const v of used) {
    if (!v || typeof v !== 'object' || typeof v.username !== 'string') continue;
    recoveryList.append(el('li', { className: 'item', attrs: { 'data-username': v.username } },
      el('span', { className: 'item-name', text: v.username }), ' ',
      el('span', { className: 'muted small' }, 'used a recovery code on ', timeEl(time(v.at)))));
  }
  recoveryEmpty.hidden = recoveryList.children.length > 0;
}

/** Fetches and draws the overview. */
async function load() {
  /** @type {any} */
  let res;
  try {
    res = await apiGet(`/api/v1/admin/security?hours=${HOURS}`);
  } catch (err) {
    await handle(err);
    return false;
  }
  if (!res || !Array.isArray(res.hours)) {
    showError(errorEl, UNREADABLE);
    return false;
  }
  /** @type {Hour[]} */
  const hours = [];
  for (const v of res.hours) {
    if (!v || typeof v !== 'object') continue;
    hours.push({ start: time(v.start), failed: num(v.failed_sign_ins), throttled: num(v.throttled), locked: num(v.locked) });
  }
  hours.sort((a, b) => (a.start?.getTime() ?? 0) - (b.start?.getTime() ?? 0));
  drawChart(hours);
  drawLists(res);
  return true;
}

refreshButton.addEventListener('click', async () => {
  refreshButton.disabled = true;
  clearErrors();
  try {
    if (await load()) statusEl.textContent = `Updated at ${new Date().toLocaleTimeString()}.`;
  } finally {
    refreshButton.disabled = false;
  }
});

/** The Security tab is shown: load it the first time. */
export function showSecurity() {
  if (started) return;
  started = true;
  void load();
}
