// admin.js: the console, /admin. Administrators see every part: People
// (accounts), Rooms, Live (meetings in progress), Audit (the log and its
// check) and Security (sign-in trouble). Hosts and moderators who are not
// administrators see Rooms and Live, for the rooms they moderate; anyone
// else is told there is nothing here. The parts are tabs (the ARIA tabs
// pattern: arrow keys, Home and End move between them); the address's
// fragment names the open one (/admin#audit), so it can be linked and
// survives a reload. What a person may see is a convenience: the server
// checks every request.

import { apiGet } from './api.js';
import { clearErrors, errorEl, handle, isAdmin, refreshMe } from './admin-common.js';
import { showAudit } from './admin-audit.js';
import { hideLive, initLive, showLive } from './admin-live.js';
import { showPeople } from './admin-people.js';
import { showRooms } from './admin-rooms.js';
import { showSecurity } from './admin-security.js';
import { can, roomView } from './rooms.js';
import { byId, focusOn, showError } from './ui.js';

const TABS = /** @type {const} */ (['people', 'rooms', 'live', 'audit', 'security']);
/** @typedef {typeof TABS[number]} Tab */

/** @type {Record<Tab, string>} */
const TITLES = { people: 'People', rooms: 'Rooms', live: 'Live meetings', audit: 'Audit log', security: 'Security' };

/** @type {Record<Tab, () => void>} */
const SHOW = { people: showPeople, rooms: showRooms, live: showLive, audit: showAudit, security: showSecurity };

const loading = byId('admin-loading');
const consoleEl = byId('console');
const noConsole = byId('no-console');
const tablist = byId('console-tabs');

/** @type {Tab|null} */
let current = null;

/** @param {Tab} tab */
function tabButton(tab) {
  return /** @type {HTMLButtonElement} */ (byId(`tab-${tab}`));
}

/** @param {Tab} tab */
function panel(tab) {
  return byId(`panel-${tab}`);
}

/** The tabs this person has, in order. */
function available() {
  return TABS.filter((t) => !tabButton(t).hidden);
}

/**
 * @param {string} name
 * @returns {Tab|null}
 */
function tabNamed(name) {
  const t = /** @type {Tab} */ (name);
  return TABS.includes(t) && !tabButton(t).hidden ? t : null;
}

/**
 * Opens a tab.
 * @param {Tab} tab
 * @param {{focus?: boolean, record?: boolean}} [opts] focus: move the
 *   keyboard to its button; record: put it in the address
 */
function select(tab, opts = {}) {
  if (current === 'live' && tab !== 'live') hideLive();
  for (const t of TABS) {
    const on = t === tab;
    const b = tabButton(t);
    b.setAttribute('aria-selected', String(on));
    b.tabIndex = on ? 0 : -1;
    panel(t).hidden = !on;
  }
  const changed = current !== tab;
  current = tab;
  document.title = `${TITLES[tab]} · Console · Parley`;
  if (opts.record && window.location.hash !== `#${tab}`) {
    window.history.replaceState(null, '', `#${tab}`);
  }
  if (opts.focus) tabButton(tab).focus();
  if (changed) {
    clearErrors();
    SHOW[tab]();
  }
}

tablist.addEventListener('click', (ev) => {
  const target = ev.target instanceof Element ? ev.target.closest('[role="tab"]') : null;
  if (!(target instanceof HTMLElement)) return;
  const tab = tabNamed(target.dataset.tab ?? '');
  if (tab) select(tab, { record: true });
});

tablist.addEventListener('keydown', (ev) => {
  const tabs = available();
  if (current === null || tabs.length === 0) return;
  const i = tabs.indexOf(current);
  /** @type {Tab|undefined} */
  let next;
  switch (ev.key) {
    case 'ArrowRight':
    case 'ArrowDown':
      next = tabs[(i + 1) % tabs.length];
      break;
    case 'ArrowLeft':
    case 'ArrowUp':
      next = tabs[(i - 1 + tabs.length) % tabs.length];
      break;
    case 'Home':
      next = tabs[0];
      break;
    case 'End':
      next = tabs[tabs.length - 1];
      break;
    default:
      return;
  }
  ev.preventDefault();
  select(next, { focus: true, record: true });
});

window.addEventListener('hashchange', () => {
  const tab = tabNamed(window.location.hash.slice(1));
  if (tab) select(tab);
});

/** Nothing for this person here. */
function showNothing() {
  hideLive();
  consoleEl.hidden = true;
  noConsole.hidden = false;
  focusOn(byId('no-console-title'));
}

/** The server says the caller moderates no meeting (any more). */
function liveForbidden() {
  tabButton('live').hidden = true;
  panel('live').hidden = true;
  if (current !== 'live') return;
  current = null;
  const rest = available();
  if (rest.length === 0) {
    showNothing();
    return;
  }
  showError(errorEl, 'You no longer moderate any room, so the live meetings are not shown.');
  select(rest[0], { record: true });
}

/**
 * Whether a person who is not an administrator hosts or moderates a room.
 * @returns {Promise<boolean|null>} null when the rooms could not be loaded
 */
async function moderatesARoom() {
  /** @type {any} */
  let res;
  try {
    res = await apiGet('/api/v1/rooms');
  } catch (err) {
    await handle(err);
    return null;
  }
  for (const v of Array.isArray(res.rooms) ? res.rooms : []) {
    const room = roomView(v);
    if (room && can(room, 'room.moderate')) return true;
  }
  return false;
}

async function start() {
  initLive(liveForbidden);
  if (!(await refreshMe())) {
    loading.hidden = true;
    return;
  }
  const admin = isAdmin();
  if (!admin) {
    const moderates = await moderatesARoom();
    loading.hidden = true;
    if (moderates === null) return;
    if (!moderates) {
      showNothing();
      return;
    }
  }
  loading.hidden = true;
  for (const t of ['people', 'audit', 'security']) {
    tabButton(/** @type {Tab} */ (t)).hidden = !admin;
  }
  consoleEl.hidden = false;
  select(tabNamed(window.location.hash.slice(1)) ?? (admin ? 'people' : 'live'));
}

void start();
