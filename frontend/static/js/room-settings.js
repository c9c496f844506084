// room-settings.js: the /rooms/{id}/settings page, for the room's hosts
// (room.manage): the room's name and switches, the people in it and their
// roles, invitation links, and deleting the room. A room the person may not
// see is "No such room", whether it exists or not.

import {
  ApiError, apiDelete, apiGet, apiPatch, apiPost, apiPut, seg, setCsrfToken,
} from './api.js';
import {
  ROOM_ROLES, can, formatTime, loginHere, parseTime, roleName, roomIdFromPath, roomView,
} from './rooms.js';
import {
  byId, clearError, el, focusOn, formById, inputById, setBusy, showError,
} from './ui.js';

/** @import { RoomView } from './rooms.js' */

const errorEl = byId('settings-error');
const loading = byId('settings-loading');
const noRoom = byId('no-room');
const notHost = byId('not-host');
const notHostText = byId('not-host-text');
const roomPanel = byId('room');

const settingsForm = formById('settings-form');
const settingsName = inputById('settings-name');
const settingsLobby = inputById('settings-lobby');
const settingsGuests = inputById('settings-guests');
const settingsRetention = inputById('settings-retention');
const settingsE2EE = inputById('settings-e2ee');
const settingsStatus = byId('settings-status');

const membersBody = /** @type {HTMLTableElement} */ (byId('members-list')).tBodies[0];
const membersStatus = byId('members-status');
const addForm = formById('add-member-form');
const addUsername = inputById('add-member-username');
const addRole = /** @type {HTMLSelectElement} */ (byId('add-member-role'));

const inviteForm = formById('invite-form');
const inviteRole = /** @type {HTMLSelectElement} */ (byId('invite-role'));
const inviteExpires = /** @type {HTMLSelectElement} */ (byId('invite-expires'));
const inviteMaxUses = inputById('invite-max-uses');
const inviteResult = byId('invite-result');
const inviteUrl = inputById('invite-url');
const inviteCopy = /** @type {HTMLButtonElement} */ (byId('invite-copy'));
const inviteStatus = byId('invite-status');
const invitesEmpty = byId('invites-empty');
const invitesList = byId('invites-list');

const deleteButton = /** @type {HTMLButtonElement} */ (byId('delete-room'));
const deleteConfirm = byId('delete-confirm');
const deleteConfirmText = byId('delete-confirm-text');
const deleteYes = /** @type {HTMLButtonElement} */ (byId('delete-room-confirm'));
const deleteNo = /** @type {HTMLButtonElement} */ (byId('delete-room-cancel'));

const INVITE_SHOWN = 'Send this link to the people you invite. It is shown only this once.';

const roomId = roomIdFromPath('/rooms/', '/settings');
const roomPath = roomId === '' ? '' : `/api/v1/rooms/${seg(roomId)}`;

/** @type {RoomView|null} */
let room = null;
/** The signed-in person's username, to mark "(you)". */
let myUsername = '';
/** Whether a refusal is already redrawing the page. */
let redrawing = false;

/** Shows "No such room" and nothing else about the room. */
function showNoRoom() {
  room = null;
  loading.hidden = true;
  roomPanel.hidden = true;
  notHost.hidden = true;
  noRoom.hidden = false;
  clearError(errorEl);
  document.title = 'No such room · Parley';
  focusOn(byId('no-room-title'));
}

/**
 * The common answers to a failed request: 401 goes to sign-in, a room
 * that is gone (or hidden) is "No such room", a refused CSRF token is
 * renewed. Anything else is shown in the alert. Returns whether the page
 * should stop what it was doing.
 * @param {unknown} err
 */
async function handle(err) {
  if (err instanceof ApiError) {
    if (err.status === 401) {
      window.location.replace(loginHere());
      return true;
    }
    if (err.status === 404) {
      showNoRoom();
      return true;
    }
    if (err.code === 'csrf') {
      await refreshMe();
      showError(errorEl, 'The page’s security token was out of date and has been renewed. Try again.');
      return false;
    }
    if (err.code === 'forbidden') {
      // Perhaps no longer a host: draw the room as it is now (once, so that
      // a server that says both "host" and "forbidden" cannot loop us).
      showError(errorEl, err);
      if (!redrawing) {
        redrawing = true;
        try {
          await loadRoom();
        } finally {
          redrawing = false;
        }
      }
      return true;
    }
  }
  showError(errorEl, err);
  return false;
}

/**
 * Fetches /api/v1/me for the CSRF token and the username.
 * @returns {Promise<boolean>} false when not signed in (and on the way to /login)
 */
async function refreshMe() {
  try {
    /** @type {any} */
    const me = await apiGet('/api/v1/me');
    setCsrfToken(me.csrf_token);
    myUsername = typeof me.username === 'string' ? me.username : '';
    return true;
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) {
      window.location.replace(loginHere());
      return false;
    }
    loading.hidden = true;
    showError(errorEl, err);
    return false;
  }
}

/** @param {RoomView} r */
function fillSettings(r) {
  settingsName.value = r.name;
  settingsLobby.checked = r.lobby;
  settingsGuests.checked = r.guestsAllowed;
  settingsRetention.value = String(r.retentionDays);
  settingsE2EE.checked = r.e2ee;
  document.title = `${r.name} · Room settings · Parley`;
}

/** Loads the room and, for a host, everything on the page. */
async function loadRoom() {
  /** @type {any} */
  let res;
  try {
    res = await apiGet(roomPath);
  } catch (err) {
    loading.hidden = true;
    await handle(err);
    return;
  }
  const r = roomView(res.room);
  loading.hidden = true;
  if (r === null) {
    showError(errorEl, 'Parley sent an answer this page could not read. Reload the page and try again.');
    return;
  }
  room = r;
  if (!can(r, 'room.manage')) {
    roomPanel.hidden = true;
    notHostText.textContent = r.role === ''
      ? `You may join “${r.name}”, but only its hosts can change its settings.`
      : `Your role in “${r.name}” is ${roleName(r.role).toLowerCase()}; only its hosts can change its settings.`;
    notHost.hidden = false;
    return;
  }
  notHost.hidden = true;
  fillSettings(r);
  roomPanel.hidden = false;
  await Promise.all([loadMembers(), loadInvites()]);
}

// ---- Room settings ----

let saving = false;
settingsForm.addEventListener('submit', async (ev) => {
  ev.preventDefault();
  if (saving || room === null) return;
  clearError(errorEl);
  settingsStatus.textContent = '';
  const name = settingsName.value.trim();
  if (name === '') {
    showError(errorEl, 'Enter a name for the room.');
    settingsName.focus();
    return;
  }
  const retention = Number(settingsRetention.value === '' ? '0' : settingsRetention.value);
  if (!Number.isInteger(retention) || retention < 0 || retention > 36500) {
    showError(errorEl, 'Keep recordings for 0 (the server’s setting) to 36500 days.');
    settingsRetention.focus();
    return;
  }
  saving = true;
  setBusy(settingsForm, true);
  try {
    const r = roomView(await apiPatch(roomPath, {
      name,
      lobby: settingsLobby.checked,
      guests_allowed: settingsGuests.checked,
      recording_retention_days: retention,
      e2ee: settingsE2EE.checked,
    }));
    if (r !== null) {
      room = r;
      fillSettings(r);
    }
    settingsStatus.textContent = 'Saved the settings.';
  } catch (err) {
    if (err instanceof ApiError && err.code === 'meeting_in_progress') {
      showError(errorEl, 'People are meeting in this room now: end-to-end encryption can be switched only between meetings. Nothing was saved.');
      settingsE2EE.checked = room.e2ee;
      settingsE2EE.focus();
      return;
    }
    if (!(await handle(err))) settingsName.focus();
  } finally {
    saving = false;
    setBusy(settingsForm, false);
  }
});

// ---- People ----

/**
 * A role picker for one person.
 * @param {string} current
 * @param {string} label the accessible name
 */
function roleSelect(current, label) {
  const select = el('select', { className: 'role-select', attrs: { 'aria-label': label } });
  const roles = /** @type {string[]} */ ([...ROOM_ROLES]);
  if (!roles.includes(current)) roles.push(current);
  for (const r of roles) {
    const option = el('option', { text: roleName(r), attrs: { value: r } });
    option.selected = r === current;
    select.append(option);
  }
  return select;
}

/**
 * @typedef {Object} Member
 * @property {string} kind "user" or "guest"
 * @property {string} id
 * @property {string} username '' for guests
 * @property {string} displayName
 * @property {string} role
 */

/**
 * @param {any} v
 * @returns {Member|null}
 */
function memberOf(v) {
  if (!v || typeof v !== 'object' || typeof v.role !== 'string') return null;
  const username = typeof v.username === 'string' ? v.username : '';
  const displayName = typeof v.display_name === 'string' && v.display_name !== '' ? v.display_name : username;
  return {
    kind: v.kind === 'user' ? 'user' : 'guest',
    id: typeof v.id === 'string' ? v.id : '',
    username,
    displayName,
    role: v.role,
  };
}

/** @param {Member} m */
function memberRow(m) {
  const me = m.kind === 'user' && m.username !== '' && m.username === myUsername;
  const who = el('td', {}, el('span', { className: 'member-name', text: m.displayName }));
  if (m.kind === 'user' && m.username !== '' && m.username !== m.displayName) {
    who.append(' ', el('span', { className: 'muted small mono', text: m.username }));
  }
  if (me) who.append(' ', el('span', { className: 'muted small', text: '(you)' }));
  if (m.kind === 'guest') who.append(' ', el('span', { className: 'muted small', text: '(guest, no account)' }));

  const tr = el('tr', {
    attrs: { 'data-member-kind': m.kind, 'data-username': m.username, 'data-role': m.role },
  });
  if (m.kind !== 'user' || m.username === '') {
    // A guest is in the room through a link; their session ends by itself.
    tr.append(who, el('td', { text: roleName(m.role) }), el('td'));
    return tr;
  }

  const select = roleSelect(m.role, `Role of ${m.displayName}`);
  select.addEventListener('change', async () => {
    const role = select.value;
    clearError(errorEl);
    membersStatus.textContent = '';
    select.disabled = true;
    try {
      await apiPut(`${roomPath}/members/${seg(m.username)}`, { role });
      membersStatus.textContent = `${m.displayName} is now ${roleName(role).toLowerCase()}.`;
    } catch (err) {
      select.value = m.role;
      select.disabled = false;
      if (err instanceof ApiError && err.code === 'last_host') {
        showError(errorEl, 'A room keeps at least one host: make someone else a host first.');
        select.focus();
        return;
      }
      if (err instanceof ApiError && err.status === 404) {
        await loadRoom(); // the account, or the room, is gone
        return;
      }
      await handle(err);
      return;
    }
    if (me) await loadRoom(); // my own rights may have changed
    else await loadMembers();
  });

  const remove = el('button', {
    className: 'btn link danger-text',
    text: 'Remove',
    attrs: { type: 'button', 'aria-label': `Remove ${m.displayName} from the room` },
  });
  remove.addEventListener('click', async () => {
    clearError(errorEl);
    membersStatus.textContent = '';
    remove.disabled = true;
    try {
      await apiDelete(`${roomPath}/members/${seg(m.username)}`);
    } catch (err) {
      remove.disabled = false;
      if (err instanceof ApiError && err.code === 'last_host') {
        showError(errorEl, 'A room keeps at least one host: make someone else a host first.');
        return;
      }
      if (err instanceof ApiError && err.status === 404) {
        await loadRoom(); // gone already, or the room is
        return;
      }
      await handle(err);
      return;
    }
    if (me) {
      window.location.assign('/'); // no longer in the room
      return;
    }
    membersStatus.textContent = `Removed ${m.displayName} from the room.`;
    await loadMembers();
  });

  tr.append(who, el('td', {}, select), el('td', { className: 'actions-cell' }, remove));
  return tr;
}

async function loadMembers() {
  /** @type {any} */
  let res;
  try {
    res = await apiGet(`${roomPath}/members`);
  } catch (err) {
    await handle(err);
    return;
  }
  /** @type {Member[]} */
  const members = [];
  for (const v of Array.isArray(res.members) ? res.members : []) {
    const m = memberOf(v);
    if (m) members.push(m);
  }
  // Most rights first, people with an account before guests, then by name.
  const roles = /** @type {string[]} */ ([...ROOM_ROLES]);
  const rank = (/** @type {string} */ role) => (roles.includes(role) ? roles.indexOf(role) : roles.length);
  members.sort((a, b) => rank(a.role) - rank(b.role) ||
    Number(a.kind !== 'user') - Number(b.kind !== 'user') ||
    a.displayName.localeCompare(b.displayName));
  membersBody.replaceChildren(...members.map(memberRow));
}

let adding = false;
addForm.addEventListener('submit', async (ev) => {
  ev.preventDefault();
  if (adding) return;
  clearError(errorEl);
  membersStatus.textContent = '';
  const username = addUsername.value.trim().toLowerCase();
  if (username === '' || username === '.' || username === '..') {
    showError(errorEl, 'Enter the username of the person to add.');
    addUsername.focus();
    return;
  }
  adding = true;
  setBusy(addForm, true);
  try {
    /** @type {any} */
    const res = await apiPut(`${roomPath}/members/${seg(username)}`, { role: addRole.value });
    const m = memberOf(res);
    addForm.reset();
    membersStatus.textContent = m
      ? `Added ${m.displayName} as ${roleName(m.role).toLowerCase()}.`
      : 'Added.';
    if (m && m.username === myUsername) await loadRoom();
    else await loadMembers();
    addUsername.focus();
  } catch (err) {
    if (err instanceof ApiError && err.status === 404) {
      // Either no such account, or the room is gone: the room decides.
      try {
        await apiGet(roomPath);
      } catch (roomErr) {
        await handle(roomErr);
        return;
      }
      showError(errorEl, `No account has the username “${username}”.`);
      addUsername.focus();
      return;
    }
    if (err instanceof ApiError && err.code === 'last_host') {
      showError(errorEl, 'A room keeps at least one host: make someone else a host first.');
      return;
    }
    if (!(await handle(err))) addUsername.focus();
  } finally {
    adding = false;
    setBusy(addForm, false);
  }
});

// ---- Invitation links ----

/**
 * @typedef {Object} Invite
 * @property {string} id
 * @property {string} role
 * @property {Date|null} expiresAt
 * @property {number} maxUses
 * @property {number} uses
 * @property {boolean} revoked
 */

/**
 * @param {any} v
 * @returns {Invite|null}
 */
function inviteOf(v) {
  if (!v || typeof v !== 'object' || typeof v.id !== 'string') return null;
  return {
    id: v.id,
    role: typeof v.role === 'string' ? v.role : '',
    expiresAt: parseTime(v.expires_at),
    maxUses: Number.isInteger(v.max_uses) ? v.max_uses : 0,
    uses: Number.isInteger(v.uses) ? v.uses : 0,
    revoked: v.revoked === true,
  };
}

/**
 * What an invite is now: "revoked", "expired", "used" or "live".
 * @param {Invite} inv
 */
function inviteState(inv) {
  if (inv.revoked) return 'revoked';
  if (inv.expiresAt === null || inv.expiresAt.getTime() <= Date.now()) return 'expired';
  if (inv.uses >= inv.maxUses) return 'used';
  return 'live';
}

/** @type {Record<string, string>} */
const STATE_NAMES = { live: 'Active', revoked: 'Revoked', expired: 'Expired', used: 'Used up' };

/** @param {Invite} inv */
function inviteItem(inv) {
  const state = inviteState(inv);
  const li = el('li', { className: 'item', attrs: { 'data-invite-id': inv.id, 'data-state': state } });
  const head = el('div', { className: 'item-head' },
    el('span', { className: 'item-name', text: `${roleName(inv.role)} link` }),
    el('span', { className: state === 'live' ? 'badge' : 'badge off', text: STATE_NAMES[state] }));
  const facts = el('p', { className: 'muted small item-facts' },
    `Used ${inv.uses} of ${inv.maxUses} ${inv.maxUses === 1 ? 'time' : 'times'}`);
  if (inv.expiresAt !== null) {
    facts.append(` · ${state === 'expired' ? 'expired' : 'expires'} `,
      el('time', { text: formatTime(inv.expiresAt), attrs: { datetime: inv.expiresAt.toISOString() } }));
  }
  li.append(head, facts);
  if (state === 'live') {
    const revoke = el('button', {
      className: 'btn link danger-text revoke',
      text: 'Revoke',
      attrs: { type: 'button', 'aria-label': `Revoke this ${roleName(inv.role).toLowerCase()} link` },
    });
    revoke.addEventListener('click', async () => {
      clearError(errorEl);
      revoke.disabled = true;
      try {
        await apiDelete(`${roomPath}/invites/${seg(inv.id)}`);
      } catch (err) {
        revoke.disabled = false;
        if (err instanceof ApiError && err.status === 404) {
          await loadRoom(); // the invite, or the room, is gone
          return;
        }
        await handle(err);
        return;
      }
      if (inviteUrl.dataset.inviteId === inv.id) {
        inviteStatus.textContent = 'This link has been revoked and no longer works.';
      }
      await loadInvites();
      focusOn(byId('invites-list-title'));
    });
    li.append(revoke);
  }
  return li;
}

async function loadInvites() {
  /** @type {any} */
  let res;
  try {
    res = await apiGet(`${roomPath}/invites`);
  } catch (err) {
    await handle(err);
    return;
  }
  const items = [];
  for (const v of Array.isArray(res.invites) ? res.invites : []) {
    const inv = inviteOf(v);
    if (inv) items.push(inviteItem(inv));
  }
  invitesList.replaceChildren(...items);
  invitesEmpty.hidden = items.length > 0;
}

let inviting = false;
inviteForm.addEventListener('submit', async (ev) => {
  ev.preventDefault();
  if (inviting) return;
  clearError(errorEl);
  const maxUses = Number(inviteMaxUses.value);
  if (!Number.isInteger(maxUses) || maxUses < 1 || maxUses > 1000) {
    showError(errorEl, 'Uses is a whole number from 1 to 1000.');
    inviteMaxUses.focus();
    return;
  }
  inviting = true;
  setBusy(inviteForm, true);
  try {
    /** @type {any} */
    const res = await apiPost(`${roomPath}/invites`, {
      role: inviteRole.value,
      expires_in_s: Number(inviteExpires.value),
      max_uses: maxUses,
    });
    if (typeof res.url !== 'string' || res.url === '') {
      showError(errorEl, 'Parley sent an answer this page could not read. Reload the page and try again.');
      return;
    }
    inviteUrl.value = res.url;
    inviteUrl.dataset.inviteId = typeof res.id === 'string' ? res.id : '';
    inviteStatus.textContent = INVITE_SHOWN;
    inviteResult.hidden = false;
    inviteUrl.focus();
    inviteUrl.select();
    await loadInvites();
  } catch (err) {
    if (err instanceof ApiError && err.code === 'guests_not_allowed') {
      showError(errorEl, 'This room does not admit guests. Turn on “Allow guests” above and save, or create a member link.');
      settingsGuests.focus();
      return;
    }
    if (!(await handle(err))) inviteRole.focus();
  } finally {
    inviting = false;
    setBusy(inviteForm, false);
  }
});

inviteCopy.addEventListener('click', async () => {
  try {
    if (!navigator.clipboard) throw new Error('no clipboard');
    await navigator.clipboard.writeText(inviteUrl.value);
    inviteStatus.textContent = 'Copied the link to the clipboard. It is shown only this once.';
  } catch {
    inviteUrl.focus();
    inviteUrl.select();
    inviteStatus.textContent = 'This browser did not allow copying. The link is selected: copy it yourself.';
  }
});

// ---- Deleting the room ----

deleteButton.addEventListener('click', () => {
  if (room === null) return;
  clearError(errorEl);
  deleteConfirmText.textContent =
    `Delete “${room.name}” for good? Its invitation links stop working and its guests lose their place.`;
  deleteButton.hidden = true;
  deleteConfirm.hidden = false;
  deleteNo.focus();
});

deleteNo.addEventListener('click', () => {
  deleteConfirm.hidden = true;
  deleteButton.hidden = false;
  deleteButton.focus();
});

deleteYes.addEventListener('click', async () => {
  clearError(errorEl);
  deleteYes.disabled = true;
  deleteNo.disabled = true;
  try {
    await apiDelete(roomPath);
  } catch (err) {
    deleteYes.disabled = false;
    deleteNo.disabled = false;
    await handle(err);
    return;
  }
  window.location.assign('/');
});

// ---- Start ----

if (roomId === '') {
  showNoRoom();
} else {
  void refreshMe().then((ok) => {
    if (ok) void loadRoom();
  });
}
