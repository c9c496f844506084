// join.js: the /join/{room id} page, opened through an invitation link
// (/join/{room id}#<token>). A signed-in person joins with their account at
// once; anyone else gives a display name and joins as a guest of that one
// room. A member link asks for sign-in first: the token waits in
// sessionStorage while the person signs in and comes back here.

import { ApiError, apiGet, apiPost, seg, setCsrfToken } from './api.js';
import { roomIdFromPath, roomView } from './rooms.js';
import {
  byId, clearError, el, focusOn, formById, inputById, reloadOnNewFragment, setBusy, showError, takeFragmentToken,
} from './ui.js';

/** sessionStorage key: a JSON object from room id to invitation token. */
const INVITE_KEY = 'parley.invite';

const errorEl = byId('join-error');
const loading = byId('join-loading');
const form = formById('join-form');
const nameInput = inputById('join-name');
const signInLink = byId('join-sign-in');
const joined = byId('join-joined');
const roomName = byId('join-room-name');
const waiting = byId('join-waiting');
const joinedAs = byId('join-as');
const home = byId('join-home');
const missing = byId('join-missing');

const roomId = roomIdFromPath('/join/');
const fragmentToken = takeFragmentToken();
reloadOnNewFragment();

/** The invitation token: from the link, or kept from before a sign-in. */
let token = '';

/** @returns {Record<string, string>} */
function storedInvites() {
  try {
    const v = JSON.parse(window.sessionStorage.getItem(INVITE_KEY) ?? '{}');
    return v && typeof v === 'object' && !Array.isArray(v) ? v : {};
  } catch {
    return {};
  }
}

/**
 * Keeps (or, with '', forgets) the token of this room's invitation for the
 * rest of this tab's life, so that a detour through /login can come back.
 * @param {string} token
 */
function storeInvite(token) {
  const all = storedInvites();
  if (token === '') delete all[roomId];
  else all[roomId] = token;
  try {
    if (Object.keys(all).length === 0) window.sessionStorage.removeItem(INVITE_KEY);
    else window.sessionStorage.setItem(INVITE_KEY, JSON.stringify(all));
  } catch {
    // Storage blocked: the token lives in memory only, which is enough
    // unless the person has to sign in first.
  }
}

/** The address of /login that comes back here. */
const loginNext = '/login?next=' + encodeURIComponent(`/join/${roomId}`);

/** @param {string} message */
function showMissing(message = '') {
  loading.hidden = true;
  form.hidden = true;
  joined.hidden = true;
  missing.hidden = false;
  if (message !== '') showError(errorEl, message);
  focusOn(byId('join-missing-title'));
}

/**
 * Shows the room the person is now in.
 * @param {any} res an answer with "room" and, for a guest, "guest"
 * @param {string} who the name they joined with
 * @param {boolean} signedIn
 */
function showJoined(res, who, signedIn) {
  const room = roomView(res && res.room);
  if (room === null) {
    loading.hidden = true;
    showError(errorEl, 'Parley sent an answer this page could not read. Reload the page and try again.');
    return;
  }
  const guestName = res.guest && typeof res.guest.display_name === 'string' ? res.guest.display_name : '';
  const name = guestName !== '' ? guestName : who;
  loading.hidden = true;
  form.hidden = true;
  missing.hidden = true;
  clearError(errorEl);
  document.title = `${room.name} · Parley`;
  roomName.textContent = room.name;
  waiting.replaceChildren(
    room.lobby
      ? `You may join “${room.name}”; a host lets you in from the lobby. `
      : `You may join “${room.name}”. `,
    el('a', { id: 'join-meeting', text: 'Join the meeting', attrs: { href: `/rooms/${seg(room.id)}` } }));
  joinedAs.textContent = name === ''
    ? ''
    : signedIn ? `You joined with your account, as ${name}.` : `You joined as a guest, as ${name}.`;
  home.hidden = !signedIn;
  joined.hidden = false;
  focusOn(roomName);
}

/**
 * Spends the invitation: as the signed-in person (displayName '') or as a
 * guest with that name. Failure messages go to the alert.
 * @param {string} token
 * @param {string} displayName
 * @param {string} who the signed-in person's name, for the joined state
 */
async function redeem(token, displayName, who) {
  const signedIn = displayName === '';
  const body = signedIn ? { token } : { token, display_name: displayName };
  /** @type {any} */
  let res;
  try {
    res = await apiPost('/api/v1/invites/redeem', body);
  } catch (err) {
    loading.hidden = true;
    const code = err instanceof ApiError ? err.code : '';
    if (code === 'sign_in_required') {
      // A member link: sign in, then come back; the token waits in storage.
      window.location.assign(loginNext);
      return;
    }
    if (code === 'invalid_invite') {
      storeInvite('');
      form.hidden = true;
      showError(errorEl, 'This invitation link no longer works: it has expired, was revoked or has been ' +
        'used up. Ask the person who sent it for a new one.');
      focusOn(errorEl);
      return;
    }
    if (code === 'unauthenticated') {
      // A sign-in cookie that is no longer good stands in the way.
      form.hidden = true;
      showError(errorEl, 'Your sign-in on this browser has expired.', { href: loginNext, text: 'Sign in again to join.' });
      focusOn(errorEl);
      return;
    }
    showError(errorEl, err);
    if (!signedIn) {
      form.hidden = false;
      nameInput.focus();
    }
    return;
  }
  storeInvite('');
  showJoined(res, who, signedIn);
}

/**
 * Without a token: shows the room if this browser is already in it (a
 * guest session for this room, or an account that may join it).
 * @param {string} who
 * @param {boolean} signedIn
 */
async function showIfAlreadyIn(who, signedIn) {
  /** @type {any} */
  let res;
  try {
    res = await apiGet(`/api/v1/rooms/${seg(roomId)}`);
  } catch (err) {
    if (err instanceof ApiError && (err.status === 401 || err.status === 404)) {
      showMissing();
      return;
    }
    loading.hidden = true;
    showError(errorEl, err);
    return;
  }
  showJoined(res, who, signedIn);
}

let sending = false;
form.addEventListener('submit', async (ev) => {
  ev.preventDefault();
  if (sending) return;
  clearError(errorEl);
  const name = nameInput.value.trim();
  const length = [...name].length;
  if (length < 1 || length > 64) {
    showError(errorEl, 'Enter your name: 1 to 64 characters.');
    nameInput.focus();
    return;
  }
  sending = true;
  setBusy(form, true);
  try {
    await redeem(token, name, '');
  } finally {
    sending = false;
    setBusy(form, false);
  }
});

async function start() {
  if (roomId === '') {
    showMissing(fragmentToken === '' ? '' : 'This invitation link is not complete. Open the whole link you were sent.');
    return;
  }
  token = fragmentToken !== '' ? fragmentToken : (storedInvites()[roomId] ?? '');
  if (typeof token !== 'string') token = '';
  if (fragmentToken !== '') storeInvite(fragmentToken);
  signInLink.setAttribute('href', loginNext);

  /** @type {any} */
  let me = null;
  try {
    me = await apiGet('/api/v1/me');
  } catch (err) {
    if (!(err instanceof ApiError && err.status === 401)) {
      loading.hidden = true;
      showError(errorEl, err);
      return;
    }
  }
  if (me !== null) {
    setCsrfToken(me.csrf_token);
    const who = typeof me.display_name === 'string' && me.display_name !== ''
      ? me.display_name
      : String(me.username ?? '');
    if (token !== '') await redeem(token, '', who);
    else await showIfAlreadyIn(who, true);
    return;
  }
  if (token !== '') {
    loading.hidden = true;
    form.hidden = false;
    nameInput.focus();
    return;
  }
  await showIfAlreadyIn('', false);
}

void start();
