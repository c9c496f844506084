// admin-rooms.js: the Rooms part of the console: every room for an
// administrator (the caller's own for anyone else), each with links to its
// meeting and its settings page (members, lobby and guests, invitation
// links live there), and deleting it after a second click.

import { ApiError, apiDelete, apiGet, seg } from './api.js';
import { UNREADABLE, clearErrors, confirmButton, errorEl, handle } from './admin-common.js';
import { can, roleName, roomView } from './rooms.js';
import { byId, el, focusOn, showError } from './ui.js';

/** @import { RoomView } from './rooms.js' */

const listEl = byId('rooms-list');
const emptyEl = byId('rooms-empty');
const statusEl = byId('rooms-status');
const titleEl = byId('rooms-title');
const refreshButton = /** @type {HTMLButtonElement} */ (byId('rooms-refresh'));

let started = false;

/** @param {RoomView} room */
function roomItem(room) {
  const li = el('li', { className: 'item', attrs: { 'data-room-id': room.id, 'data-role': room.role } });
  const head = el('div', { className: 'item-head' }, el('span', { className: 'item-name', text: room.name }));
  if (room.role !== '') head.append(el('span', { className: 'badge', text: roleName(room.role) }));
  const facts = [room.lobby ? 'Lobby' : 'No lobby', room.guestsAllowed ? 'guests allowed' : 'no guests'];
  if (room.retentionDays > 0) facts.push(`recordings kept ${room.retentionDays} days`);
  if (room.e2ee) {
    facts.unshift('End-to-end encrypted');
    li.dataset.e2ee = 'true';
    head.append(el('span', { className: 'badge e2ee', text: 'End-to-end encrypted' }));
  }

  const links = el('div', { className: 'small item-links row-actions' },
    el('a', { text: 'Join the meeting', attrs: { href: `/rooms/${seg(room.id)}` } }));
  if (can(room, 'room.manage')) {
    links.append(el('a', {
      className: 'settings-link',
      text: 'Settings, members and invitations',
      attrs: { href: `/rooms/${seg(room.id)}/settings`, 'aria-label': `Settings of ${room.name}` },
    }));
    links.append(confirmButton({
      action: 'delete',
      label: 'Delete…',
      ariaLabel: `Delete the room ${room.name}`,
      question: () => `Delete “${room.name}” for good? Its invitation links stop working.`,
      confirm: 'Delete for good',
      cancel: 'Keep it',
      act: () => deleteRoom(room),
    }));
  }
  li.append(head, el('p', { className: 'muted small item-facts', text: facts.join(' · ') }), links);
  return li;
}

/**
 * @param {RoomView} room
 * @returns {Promise<boolean>}
 */
async function deleteRoom(room) {
  clearErrors();
  try {
    await apiDelete(`/api/v1/rooms/${seg(room.id)}`);
  } catch (err) {
    if (err instanceof ApiError && err.status === 404) {
      await load(); // gone already
      return true;
    }
    await handle(err);
    return false;
  }
  statusEl.textContent = `Deleted the room “${room.name}”.`;
  await load();
  focusOn(titleEl);
  return true;
}

/** Fetches and draws the rooms. */
export async function load() {
  /** @type {any} */
  let res;
  try {
    res = await apiGet('/api/v1/rooms');
  } catch (err) {
    await handle(err);
    return false;
  }
  if (!res || !Array.isArray(res.rooms)) {
    showError(errorEl, UNREADABLE);
    return false;
  }
  /** @type {RoomView[]} */
  const rooms = [];
  for (const v of res.rooms) {
    const r = roomView(v);
    if (r) rooms.push(r);
  }
  rooms.sort((a, b) => a.name.localeCompare(b.name));
  listEl.replaceChildren(...rooms.map(roomItem));
  emptyEl.hidden = rooms.length > 0;
  return true;
}

refreshButton.addEventListener('click', async () => {
  refreshButton.disabled = true;
  clearErrors();
  try {
    if (await load()) {
      const n = listEl.children.length;
      statusEl.textContent = `Loaded ${n} ${n === 1 ? 'room' : 'rooms'}.`;
    }
  } finally {
    refreshButton.disabled = false;
  }
});

/** The Rooms tab is shown: load it the first time. */
export function showRooms() {
  if (started) return;
  started = true;
  void load();
}
