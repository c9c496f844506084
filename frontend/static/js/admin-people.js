// admin-people.js: the People part of the console, for administrators:
// finding accounts, adding one (with its one-time enrolment link), and per
// account disabling and enabling, resetting the authenticator, unlocking
// after too many failed sign-ins, signing out everywhere, and the global
// roles. The server checks admin.users on every request.

import { ApiError, apiGet, apiPost, apiPut, seg } from './api.js';
import {
  UNREADABLE, clearErrors, confirmButton, copyInput, errorEl, handle, me, str, strings, time, timeEl,
} from './admin-common.js';
import { byId, el, formById, inputById, setBusy, showError } from './ui.js';

/**
 * @typedef {Object} User an account as the console shows it
 * @property {string} id
 * @property {string} username
 * @property {string} displayName
 * @property {string[]} roles global roles
 * @property {boolean} disabled
 * @property {boolean} mfaEnabled
 * @property {boolean} activated
 * @property {boolean|null} locked null when the server does not say
 * @property {boolean} throttled sign-ins are slowed down after failures
 * @property {number} failedSignIns failures since the last success
 * @property {Date|null} lastLoginAt
 * @property {Date|null} createdAt
 */

/** The global roles, most rights first. */
const GLOBAL_ROLES = ['admin', 'member'];

/** @type {Record<string, string>} */
const GLOBAL_ROLE_NAMES = { admin: 'Administrator', member: 'Member' };

/** @type {Record<string, string>} what each action did, for the status line */
const DONE = {
  disable: 'Disabled the account of',
  enable: 'Enabled the account of',
  'reset-mfa': 'Reset the authenticator of',
  unlock: 'Unlocked the account of',
  'revoke-sessions': 'Signed out everywhere:',
  'enrollment-link': 'Made a new enrolment link for',
};

/** Usernames by account id, for the audit log's actors. */
export const userNames = new Map();

const searchForm = formById('people-search-form');
const search = inputById('people-search');
const statusEl = byId('people-status');
const body = /** @type {HTMLTableElement} */ (byId('people-list')).tBodies[0];
const emptyEl = byId('people-empty');

const createForm = formById('create-user-form');
const createUsername = inputById('create-username');
const createDisplayName = inputById('create-display-name');
const resultEl = byId('new-user-result');
const resultLabel = byId('new-user-label');
const linkInput = inputById('new-user-link');
const linkCopy = /** @type {HTMLButtonElement} */ (byId('new-user-copy'));
const linkStatus = byId('new-user-status');

/** Counts list loads, so that a slow answer cannot replace a newer one. */
let loadSeq = 0;
/** @type {number|undefined} */
let searchTimer;
let started = false;

/**
 * @param {any} v
 * @returns {User|null}
 */
export function userOf(v) {
  if (!v || typeof v !== 'object' || typeof v.username !== 'string' || v.username === '') return null;
  return {
    id: str(v.id),
    username: v.username,
    displayName: str(v.display_name) || v.username,
    roles: strings(v.roles),
    disabled: v.disabled === true,
    mfaEnabled: v.mfa_enabled === true,
    activated: v.activated === true,
    locked: typeof v.locked === 'boolean' ? v.locked : null,
    throttled: v.throttled === true,
    failedSignIns: Number.isInteger(v.failed_sign_ins) && v.failed_sign_ins > 0 ? v.failed_sign_ins : 0,
    lastLoginAt: time(v.last_login_at),
    createdAt: time(v.created_at),
  };
}

/** @param {User} u */
function who(u) {
  return u.displayName !== u.username ? `${u.displayName} (${u.username})` : u.username;
}

/**
 * @param {string} text
 * @param {string} [kind] an extra class: "off", "warn", "bad"
 */
function badge(text, kind = '') {
  return el('span', { className: kind ? `badge ${kind}` : 'badge', text });
}

/** @param {User} u */
function stateCell(u) {
  const td = el('td', { className: 'state-cell' });
  if (u.disabled) td.append(badge('Disabled', 'bad'));
  else if (!u.activated) td.append(badge('Not enrolled yet', 'warn'));
  else td.append(badge('Active', 'off'));
  if (u.locked === true) td.append(' ', badge('Locked', 'bad'));
  else if (u.throttled) td.append(' ', badge('Slowed down', 'warn'));
  td.append(' ', u.mfaEnabled ? badge('Authenticator', 'off') : badge('No authenticator', 'warn'));
  if (u.failedSignIns > 0) {
    td.append(el('div', { className: 'small bad-text', text: `${u.failedSignIns} failed ${u.failedSignIns === 1 ? 'sign-in' : 'sign-ins'}` }));
  }
  if (u.createdAt !== null) td.append(el('div', { className: 'muted small' }, 'Added ', timeEl(u.createdAt)));
  return td;
}

/**
 * The global roles as check boxes; a change is saved at once.
 * @param {User} u
 */
function rolesCell(u) {
  const td = el('td', { className: 'roles-cell' });
  const roles = [...GLOBAL_ROLES];
  for (const r of u.roles) if (!roles.includes(r)) roles.push(r);
  const group = el('div', { className: 'role-checks', attrs: { role: 'group', 'aria-label': `Roles of ${who(u)}` } });
  for (const role of roles) {
    const box = el('input', { attrs: { type: 'checkbox', 'data-role': role } });
    box.checked = u.roles.includes(role);
    box.addEventListener('change', () => void saveRoles(u, group, box));
    group.append(el('label', { className: 'role-check' }, box, ` ${GLOBAL_ROLE_NAMES[role] ?? role}`));
  }
  td.append(group);
  return td;
}

/**
 * Saves the roles ticked in group; puts the box back when refused.
 * @param {User} u
 * @param {HTMLElement} group
 * @param {HTMLInputElement} changed
 */
async function saveRoles(u, group, changed) {
  clearErrors();
  statusEl.textContent = '';
  const boxes = /** @type {HTMLInputElement[]} */ ([...group.querySelectorAll('input[type="checkbox"]')]);
  const roles = boxes.filter((b) => b.checked).map((b) => b.dataset.role ?? '').filter((r) => r !== '');
  for (const b of boxes) b.disabled = true;
  try {
    /** @type {any} */
    const res = await apiPut(`/api/v1/admin/users/${seg(u.username)}/roles`, { roles });
    u.roles = Array.isArray(res.roles) ? strings(res.roles) : roles;
    statusEl.textContent = u.roles.length > 0
      ? `${who(u)} now has the roles: ${u.roles.map((r) => GLOBAL_ROLE_NAMES[r] ?? r).join(', ')}.`
      : `${who(u)} now has no global role.`;
  } catch (err) {
    changed.checked = !changed.checked;
    if (err instanceof ApiError && err.code === 'last_admin') {
      showError(errorEl, 'Parley keeps at least one enabled administrator: make someone else an administrator first.');
    } else if (err instanceof ApiError && err.status === 404) {
      showError(errorEl, `The account ${u.username} no longer exists.`);
      void load();
    } else if (await handle(err)) {
      return;
    }
  } finally {
    for (const b of boxes) b.disabled = false;
  }
  if (u.id === me.id && !u.roles.includes('admin')) {
    window.location.reload(); // no longer an administrator: the console changes
  }
}

/**
 * Runs one action on an account and redraws its row.
 * @param {User} u
 * @param {string} action "disable", "enable", "reset-mfa", "unlock", "revoke-sessions",
 *   "enrollment-link"
 * @returns {Promise<boolean>} whether it was done
 */
async function act(u, action) {
  clearErrors();
  statusEl.textContent = '';
  /** @type {any} */
  let res;
  try {
    res = await apiPost(`/api/v1/admin/users/${seg(u.username)}/${action}`, {});
  } catch (err) {
    if (err instanceof ApiError && err.status === 404) {
      showError(errorEl, `The account ${u.username} no longer exists.`);
      void load();
      return false;
    }
    await handle(err);
    return false;
  }
  const fresh = userOf(res && typeof res.user === 'object' ? res.user : res) ?? u;
  const row = body.querySelector(`tr[data-username="${CSS.escape(u.username)}"]`);
  const next = userRow(fresh);
  if (row) row.replaceWith(next);
  statusEl.textContent = `${DONE[action] ?? 'Done:'} ${who(fresh)}.`;
  if (typeof res.enrollment_url === 'string' && res.enrollment_url !== '') {
    showLink(res.enrollment_url, `New enrolment link for ${who(fresh)}`, who(fresh));
    return true;
  }
  // Keep the keyboard where it was: on the same action, or its opposite.
  const opposite = /** @type {Record<string, string>} */ ({ disable: 'enable', enable: 'disable' })[action] ?? action;
  const again = next.querySelector(`button[data-action="${opposite}"]`) ?? next.querySelector('button[data-action]');
  if (again instanceof HTMLButtonElement) again.focus();
  return true;
}

/**
 * A plain action button.
 * @param {User} u
 * @param {string} action
 * @param {string} text
 * @param {string} label its accessible name
 */
function actionButton(u, action, text, label) {
  const b = el('button', {
    className: 'btn link',
    text,
    attrs: { type: 'button', 'data-action': action, 'aria-label': label },
  });
  b.addEventListener('click', async () => {
    b.disabled = true;
    if (!(await act(u, action))) b.disabled = false;
  });
  return b;
}

/** @param {User} u */
function userRow(u) {
  const self = u.id !== '' && u.id === me.id;
  const person = el('td', {}, el('span', { className: 'member-name', text: u.displayName }));
  if (u.username !== u.displayName) person.append(' ', el('span', { className: 'muted small mono', text: u.username }));
  if (self) person.append(' ', el('span', { className: 'muted small', text: '(you)' }));

  const last = el('td', { className: 'small' }, timeEl(u.lastLoginAt, 'Never'));

  const actions = el('td', { className: 'actions-cell' });
  const list = el('div', { className: 'row-actions' });
  if (u.disabled) {
    list.append(actionButton(u, 'enable', 'Enable', `Enable the account of ${who(u)}`));
  } else if (!self) {
    list.append(actionButton(u, 'disable', 'Disable', `Disable the account of ${who(u)}`));
  }
  if (u.locked !== false || u.throttled) {
    list.append(actionButton(u, 'unlock', 'Unlock', `Unlock ${who(u)} after failed sign-ins`));
  }
  if (!u.disabled && !u.mfaEnabled) {
    list.append(actionButton(u, 'enrollment-link', 'New enrolment link',
      `Make a new enrolment link for ${who(u)} (the old one stops working)`));
  }
  list.append(actionButton(u, 'revoke-sessions', 'Sign out everywhere', `Sign ${who(u)} out of every session`));
  list.append(confirmButton({
    action: 'reset-mfa',
    label: 'Reset authenticator…',
    ariaLabel: `Reset the authenticator of ${who(u)}`,
    question: () => `Reset the authenticator of ${who(u)}? Their app and recovery codes stop working; ` +
      'they cannot sign in until they enrol again with a new enrolment link.',
    confirm: 'Reset',
    act: () => act(u, 'reset-mfa'),
  }));
  actions.append(list);

  const tr = el('tr', {
    attrs: {
      'data-username': u.username,
      'data-user-id': u.id,
      'data-disabled': String(u.disabled),
      'data-locked': String(u.locked === true),
    },
  });
  tr.append(person, rolesCell(u), stateCell(u), last, actions);
  return tr;
}

/**
 * Fetches the accounts that match the search box.
 * @returns {Promise<boolean>}
 */
export async function load() {
  const seq = ++loadSeq;
  const q = search.value.trim();
  /** @type {any} */
  let res;
  try {
    res = await apiGet('/api/v1/admin/users' + (q !== '' ? `?q=${encodeURIComponent(q)}` : ''));
  } catch (err) {
    if (seq === loadSeq) await handle(err);
    return false;
  }
  if (seq !== loadSeq) return false;
  if (!res || !Array.isArray(res.users)) {
    showError(errorEl, UNREADABLE);
    return false;
  }
  /** @type {User[]} */
  const users = [];
  for (const v of res.users) {
    const u = userOf(v);
    if (u === null) continue;
    users.push(u);
    if (u.id !== '') userNames.set(u.id, u.username);
  }
  users.sort((a, b) => a.username.localeCompare(b.username));
  body.replaceChildren(...users.map(userRow));
  emptyEl.hidden = users.length > 0;
  emptyEl.textContent = q !== '' ? `Nobody matches “${q}”.` : 'There are no accounts.';
  return true;
}

/**
 * Shows a one-time enrolment link.
 * @param {string} url
 * @param {string} label
 * @param {string} name whom it is for
 */
function showLink(url, label, name) {
  resultLabel.textContent = label;
  linkInput.value = url;
  linkStatus.textContent = `Send this link to ${name} over a channel you trust. It works once, ` +
    'for a limited time, and is shown only now.';
  resultEl.hidden = false;
  linkInput.focus();
  linkInput.select();
}

let creating = false;
createForm.addEventListener('submit', async (ev) => {
  ev.preventDefault();
  if (creating) return;
  clearErrors();
  statusEl.textContent = '';
  const username = createUsername.value.trim().toLowerCase();
  const displayName = createDisplayName.value.trim();
  if (username === '') {
    showError(errorEl, 'Enter a username for the new account.');
    createUsername.focus();
    return;
  }
  if (displayName === '') {
    showError(errorEl, 'Enter the name people see, such as “Ada Lovelace”.');
    createDisplayName.focus();
    return;
  }
  creating = true;
  setBusy(createForm, true);
  try {
    /** @type {any} */
    const res = await apiPost('/api/v1/admin/users', { username, display_name: displayName });
    const u = userOf(res && res.user);
    const url = res && typeof res.enrollment_url === 'string' ? res.enrollment_url : '';
    if (u === null || url === '') {
      showError(errorEl, UNREADABLE);
      return;
    }
    createForm.reset();
    statusEl.textContent = `Added ${who(u)}.`;
    await load();
    showLink(url, `Enrolment link for ${who(u)}`, who(u));
  } catch (err) {
    if (!(await handle(err))) createUsername.focus();
  } finally {
    creating = false;
    setBusy(createForm, false);
  }
});

linkCopy.addEventListener('click', () => {
  void copyInput(linkInput, linkStatus, 'Copied the link to the clipboard. It works once and is shown only now.');
});

searchForm.addEventListener('submit', (ev) => {
  ev.preventDefault();
  window.clearTimeout(searchTimer);
  clearErrors();
  void load().then((ok) => {
    if (ok) {
      const n = body.rows.length;
      statusEl.textContent = `${n} ${n === 1 ? 'account' : 'accounts'}.`;
    }
  });
});

search.addEventListener('input', () => {
  window.clearTimeout(searchTimer);
  searchTimer = window.setTimeout(() => void load(), 250);
});

/**
 * Fills userNames once, for a part that names accounts (the audit log)
 * opened before People. Failures are left to that part's own requests.
 */
export async function ensureUserNames() {
  if (userNames.size > 0) return;
  try {
    /** @type {any} */
    const res = await apiGet('/api/v1/admin/users');
    for (const v of Array.isArray(res.users) ? res.users : []) {
      const u = userOf(v);
      if (u && u.id !== '') userNames.set(u.id, u.username);
    }
  } catch {
    // The log shows ids instead.
  }
}

/** The People tab is shown: load it the first time. */
export function showPeople() {
  if (started) return;
  started = true;
  void load();
}
