// index.js: the signed-in home page (/). It shows who is signed in, the
// rooms they are in and a form to create one, the state of their recovery
// codes, sign-out, and regenerating the codes.

import { ApiError, apiGet, apiPost, seg, setCsrfToken } from './api.js';
import { codesPanel } from './codes.js';
import { can, roleName, roomView } from './rooms.js';
import {
  byId, clearError, digitsOnly, el, focusOn, formById, inputById, setBusy, showError,
} from './ui.js';

/** @import { RoomView } from './rooms.js' */

const DAY_MS = 24 * 60 * 60 * 1000;
/** A recovery code used this recently gets a visible warning. */
const RECENT_USE_MS = 30 * DAY_MS;
/** At or below this many codes left, suggest regenerating. */
const FEW_CODES = 3;

const pageError = byId('index-error');
const loading = byId('loading');
const account = byId('account');
const whoami = byId('whoami');
const roles = byId('roles');
const recoveryLeft = byId('recovery-left');
const recoveryLow = byId('recovery-low');
const lastUsed = byId('recovery-last-used');
const warning = byId('recovery-warning');
const logout = /** @type {HTMLButtonElement} */ (byId('logout'));
const regenForm = formById('regen-form');
const regenPassword = inputById('regen-password');
const regenCode = inputById('regen-code');
const regenError = byId('regen-error');
const regenResult = byId('regen-result');
const roomsError = byId('rooms-error');
const roomsLoading = byId('rooms-loading');
const roomsEmpty = byId('rooms-empty');
const roomsList = byId('rooms-list');
const createForm = formById('create-room-form');
const roomName = inputById('room-name');
const roomLobby = inputById('room-lobby');
const roomE2EE = inputById('room-e2ee');
const roomGuests = inputById('room-guests');
const createStatus = byId('create-room-status');
const consoleLink = byId('console-link');

/** @type {string} */
let username = '';

/**
 * @param {string} iso
 * @returns {Date|null}
 */
function parseTime(iso) {
  const t = Date.parse(iso);
  return Number.isNaN(t) ? null : new Date(t);
}

/** @param {Date} when */
function formatTime(when) {
  return when.toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'short' });
}

/**
 * Draws the signed-in person from a /api/v1/me answer.
 * @param {any} me
 */
function render(me) {
  username = typeof me.username === 'string' ? me.username : '';
  const display = typeof me.display_name === 'string' && me.display_name !== '' ? me.display_name : username;
  whoami.textContent = display === username ? `Signed in as ${username}` : `Signed in as ${display} (${username})`;

  const list = Array.isArray(me.roles) ? me.roles.map(String) : [];
  // The console is for administrators, and for those who moderate a room
  // (loadRooms shows the link for them).
  if (list.includes('admin')) consoleLink.hidden = false;
  roles.replaceChildren();
  if (list.length === 0) {
    roles.append(el('span', { className: 'muted', text: 'none' }));
  }
  for (const role of list) {
    roles.append(el('span', { className: 'badge', text: role }), ' ');
  }

  const mfa = me.mfa && typeof me.mfa === 'object' ? me.mfa : {};
  const left = Number.isInteger(mfa.recovery_codes_left) ? mfa.recovery_codes_left : null;
  recoveryLeft.textContent = left === null ? 'unknown' : String(left);
  recoveryLow.hidden = left === null || left > FEW_CODES;
  recoveryLow.textContent = left === 0
    ? 'You have no recovery codes left. Regenerate them below so you can still sign in if you lose your phone.'
    : 'You are running low on recovery codes. Regenerate them below.';

  const used = typeof mfa.recovery_code_last_used_at === 'string' ? parseTime(mfa.recovery_code_last_used_at) : null;
  lastUsed.replaceChildren();
  if (used === null) {
    lastUsed.textContent = 'No recovery code has been used yet.';
    warning.hidden = true;
  } else {
    lastUsed.append('A recovery code was last used on ',
      el('time', { text: formatTime(used), attrs: { datetime: used.toISOString() } }), '.');
    const recent = Date.now() - used.getTime() < RECENT_USE_MS;
    warning.hidden = !recent;
    warning.textContent = recent
      ? `A recovery code was used to sign in to this account on ${formatTime(used)}. ` +
        'If that was not you, regenerate your recovery codes now and tell your administrator.'
      : '';
  }
}

/**
 * Fetches /api/v1/me. Sends the person to /login when not signed in.
 * @returns {Promise<boolean>} whether the page could be drawn
 */
async function loadMe() {
  /** @type {any} */
  let me;
  try {
    me = await apiGet('/api/v1/me');
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) {
      window.location.replace('/login');
      return false;
    }
    loading.hidden = true;
    showError(pageError, err);
    return false;
  }
  setCsrfToken(me.csrf_token);
  render(me);
  loading.hidden = true;
  account.hidden = false;
  return true;
}

logout.addEventListener('click', async () => {
  clearError(pageError);
  logout.disabled = true;
  try {
    await apiPost('/api/v1/auth/logout', {});
  } catch (err) {
    // A session that is already gone counts as signed out.
    if (!(err instanceof ApiError && err.status === 401)) {
      logout.disabled = false;
      showError(pageError, err);
      return;
    }
  }
  setCsrfToken('');
  window.location.assign('/login');
});

let regenerating = false;
regenForm.addEventListener('submit', async (ev) => {
  ev.preventDefault();
  if (regenerating) return;
  clearError(regenError);
  const code = regenCode.value.trim();
  if (regenPassword.value === '') {
    showError(regenError, 'Enter your password.');
    regenPassword.focus();
    return;
  }
  if (!/^[0-9]{6}$/.test(code)) {
    showError(regenError, 'Enter the 6 digits your authenticator app shows.');
    regenCode.focus();
    return;
  }
  regenerating = true;
  setBusy(regenForm, true);
  try {
    /** @type {any} */
    const res = await apiPost('/api/v1/me/recovery-codes', { password: regenPassword.value, code });
    const codes = Array.isArray(res.recovery_codes) ? res.recovery_codes.map(String) : [];
    regenForm.reset();
    const heading = el('h3', { id: 'regen-title', text: 'Your new recovery codes' });
    regenResult.replaceChildren(
      heading,
      el('p', { text: 'Your old recovery codes no longer work. Save these now: they are shown only once.' }),
      codesPanel(codes, username));
    regenResult.hidden = false;
    focusOn(heading);
    await loadMe(); // new count, and a fresh CSRF token
  } catch (err) {
    if (err instanceof ApiError && err.status === 401 && err.code !== 'invalid_code' && err.code !== 'invalid_password') {
      // Possibly signed out meanwhile: find out, and go to /login if so.
      if (!(await loadMe())) return;
    } else if (err instanceof ApiError && err.status === 403) {
      await loadMe(); // a stale CSRF token: fetch a fresh one for the next try
    }
    showError(regenError, err);
    regenCode.value = '';
    (err instanceof ApiError && err.code === 'invalid_code' ? regenCode : regenPassword).focus();
  } finally {
    regenerating = false;
    setBusy(regenForm, false);
  }
});

/**
 * One room of the list: its name (a link to its meeting), the caller's
 * role, how it admits people, and a link to its settings for those who may
 * manage it.
 * @param {RoomView} room
 */
function roomItem(room) {
  const li = el('li', { className: 'item', attrs: { 'data-room-id': room.id, 'data-role': room.role } });
  const name = el('a', {
    className: 'item-name meeting-link',
    text: room.name,
    attrs: { href: `/rooms/${seg(room.id)}`, title: 'Join the meeting' },
  });
  const head = el('div', { className: 'item-head' }, name);
  if (room.role !== '') {
    head.append(el('span', { className: 'badge', text: roleName(room.role) }));
  }
  const facts = [room.lobby ? 'Lobby' : 'No lobby', room.guestsAllowed ? 'guests allowed' : 'no guests'];
  if (room.e2ee) facts.push('end-to-end encrypted');
  const links = el('p', { className: 'small item-links' },
    el('a', { className: 'join-link', text: 'Join the meeting', attrs: { href: `/rooms/${seg(room.id)}` } }));
  if (can(room, 'room.manage')) {
    links.append(' · ', el('a', {
      className: 'settings-link',
      text: 'Settings',
      attrs: { href: `/rooms/${seg(room.id)}/settings`, 'aria-label': `Settings of ${room.name}` },
    }));
  }
  li.append(head, el('p', { className: 'muted small item-facts', text: facts.join(' · ') }), links);
  return li;
}

/** Fetches and draws the rooms the person may join. */
async function loadRooms() {
  clearError(roomsError);
  /** @type {any} */
  let res;
  try {
    res = await apiGet('/api/v1/rooms');
  } catch (err) {
    roomsLoading.hidden = true;
    if (err instanceof ApiError && err.status === 401) {
      await loadMe();
      return;
    }
    showError(roomsError, err);
    return;
  }
  const items = [];
  for (const v of Array.isArray(res.rooms) ? res.rooms : []) {
    const room = roomView(v);
    if (room) items.push(roomItem(room));
    if (room && can(room, 'room.moderate')) consoleLink.hidden = false;
  }
  roomsList.replaceChildren(...items);
  roomsLoading.hidden = true;
  roomsEmpty.hidden = items.length > 0;
}

let creating = false;
createForm.addEventListener('submit', async (ev) => {
  ev.preventDefault();
  if (creating) return;
  clearError(roomsError);
  createStatus.textContent = '';
  const name = roomName.value.trim();
  if (name === '') {
    showError(roomsError, 'Enter a name for the room.');
    roomName.focus();
    return;
  }
  creating = true;
  setBusy(createForm, true);
  try {
    /** @type {any} */
    const res = await apiPost('/api/v1/rooms', {
      name,
      lobby: roomLobby.checked,
      guests_allowed: roomGuests.checked,
      e2ee: roomE2EE.checked,
    });
    const room = roomView(res);
    createForm.reset();
    createStatus.textContent = room
      ? `Created the room “${room.name}”. Open its settings to add people or invite guests.`
      : 'Created the room.';
    await loadRooms();
  } catch (err) {
    if (err instanceof ApiError && (err.status === 401 || err.code === 'csrf')) {
      // Signed out meanwhile (then loadMe goes to /login), or a stale token.
      if (!(await loadMe())) return;
    }
    showError(roomsError, err);
    roomName.focus();
  } finally {
    creating = false;
    setBusy(createForm, false);
  }
});

digitsOnly(regenCode);
void loadMe().then((ok) => {
  if (ok) void loadRooms();
});
