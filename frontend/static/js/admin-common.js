// admin-common.js: what the parts of the console (/admin) share: the
// page's alert, the signed-in person, the common answers to a failed
// request, reading the API's loosely typed answers, and the two-step
// confirmation that stands in for the browser's dialogs (which the
// browser tests cannot answer).

import { ApiError, apiGet, setCsrfToken } from './api.js';
import { formatTime, parseTime } from './rooms.js';
import { byId, clearError, el, showError } from './ui.js';

export const UNREADABLE = 'Parley sent an answer this page could not read. Reload the page and try again.';

/** The console's one alert region. */
export const errorEl = byId('admin-error');

/**
 * @typedef {Object} Me the signed-in person
 * @property {string} id
 * @property {string} username
 * @property {string} displayName
 * @property {string[]} roles global roles, such as "admin"
 */

/** @type {Me} */
export const me = { id: '', username: '', displayName: '', roles: [] };

/** Goes to sign-in, coming back here afterwards. */
export function toLogin() {
  window.location.replace('/login?next=' + encodeURIComponent(window.location.pathname + window.location.hash));
}

/**
 * Fetches /api/v1/me: the CSRF token and who is signed in.
 * @returns {Promise<boolean>} false when not signed in (then on the way to
 *   /login) or when the server could not answer (then shown)
 */
export async function refreshMe() {
  /** @type {any} */
  let res;
  try {
    res = await apiGet('/api/v1/me');
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) {
      toLogin();
      return false;
    }
    showError(errorEl, err);
    return false;
  }
  setCsrfToken(res.csrf_token);
  me.id = str(res.id);
  me.username = str(res.username);
  me.displayName = str(res.display_name) || me.username;
  me.roles = strings(res.roles);
  return true;
}

/** Whether the signed-in person is an administrator. */
export function isAdmin() {
  return me.roles.includes('admin');
}

/**
 * The common answers to a failed request: 401 goes to sign-in; a refused
 * CSRF token is renewed (the person tries again); anything else is shown
 * in the alert.
 * @param {unknown} err
 * @returns {Promise<boolean>} whether the page is leaving
 */
export async function handle(err) {
  if (err instanceof ApiError) {
    if (err.status === 401) {
      toLogin();
      return true;
    }
    if (err.code === 'csrf') {
      await refreshMe();
      showError(errorEl, 'The page’s security token was out of date and has been renewed. Try again.');
      errorEl.dataset.code = 'csrf';
      return false;
    }
  }
  showError(errorEl, err);
  errorEl.dataset.code = err instanceof ApiError ? err.code : '';
  return false;
}

/** Empties the alert. */
export function clearErrors() {
  clearError(errorEl);
  delete errorEl.dataset.code;
}

// ---- Reading the API's answers ----

/** @param {unknown} v */
export function str(v) {
  return typeof v === 'string' ? v : '';
}

/** @param {unknown} v a count, 0 when it is none */
export function num(v) {
  return typeof v === 'number' && Number.isFinite(v) && v > 0 ? v : 0;
}

/** @param {unknown} v */
export function strings(v) {
  return Array.isArray(v) ? v.filter((x) => typeof x === 'string') : [];
}

/**
 * @param {unknown} v an RFC 3339 time, or anything else
 * @returns {Date|null}
 */
export function time(v) {
  return typeof v === 'string' ? parseTime(v) : null;
}

/**
 * A <time> element, or a dash when there is no time.
 * @param {Date|null} when
 * @param {string} [none] what to say when there is no time
 */
export function timeEl(when, none = '—') {
  if (when === null) return el('span', { className: 'muted', text: none });
  return el('time', { text: formatTime(when), attrs: { datetime: when.toISOString() } });
}

/**
 * "3 min ago", "2 h ago", "5 days ago".
 * @param {Date} when
 */
export function ago(when) {
  const s = Math.max(0, Math.round((Date.now() - when.getTime()) / 1000));
  if (s < 60) return 'just now';
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  const days = Math.floor(s / 86400);
  return `${days} ${days === 1 ? 'day' : 'days'} ago`;
}

// ---- Two-step confirmation ----

/**
 * A button that asks before it acts: the first click shows a question with
 * "confirm" and "cancel" buttons in its place; only "confirm" runs act.
 * The buttons carry data-action="<action>", "<action>-confirm" and
 * "<action>-cancel".
 * @param {Object} opts
 * @param {string} opts.action such as "end"
 * @param {string} opts.label the first button's text
 * @param {string} opts.ariaLabel its accessible name
 * @param {() => string} opts.question asked when it is clicked
 * @param {string} opts.confirm the confirming button's text
 * @param {string} [opts.cancel] the cancelling button's text
 * @param {string} [opts.className] the first button's classes
 * @param {() => Promise<boolean>} opts.act does it; true when done (the
 *   question closes either way)
 * @returns {HTMLElement} a container holding all of it
 */
export function confirmButton(opts) {
  const box = el('span', { className: 'confirm-box' });
  const first = el('button', {
    className: opts.className ?? 'btn link danger-text',
    text: opts.label,
    attrs: { type: 'button', 'data-action': opts.action, 'aria-label': opts.ariaLabel },
  });
  const text = el('span', { className: 'confirm-text' });
  const yes = el('button', {
    className: 'btn danger small-btn',
    text: opts.confirm,
    attrs: { type: 'button', 'data-action': `${opts.action}-confirm` },
  });
  const no = el('button', {
    className: 'btn secondary small-btn',
    text: opts.cancel ?? 'Cancel',
    attrs: { type: 'button', 'data-action': `${opts.action}-cancel` },
  });
  const panel = el('span', { className: 'confirm-panel', hidden: true, attrs: { role: 'group' } }, text, ' ', yes, ' ', no);

  const close = () => {
    panel.hidden = true;
    first.hidden = false;
    yes.disabled = false;
    no.disabled = false;
  };
  first.addEventListener('click', () => {
    clearErrors();
    text.textContent = opts.question();
    first.hidden = true;
    panel.hidden = false;
    no.focus();
  });
  no.addEventListener('click', () => {
    close();
    first.focus();
  });
  panel.addEventListener('keydown', (ev) => {
    if (ev.key === 'Escape') {
      ev.preventDefault();
      close();
      first.focus();
    }
  });
  yes.addEventListener('click', async () => {
    yes.disabled = true;
    no.disabled = true;
    let done = false;
    try {
      done = await opts.act();
    } finally {
      close();
      if (!done && first.isConnected) first.focus();
    }
  });
  box.append(first, panel);
  return box;
}

/**
 * Copies an input's text, or selects it for the person to copy.
 * @param {HTMLInputElement} input
 * @param {HTMLElement} status where to say what happened
 * @param {string} done the sentence once copied
 */
export async function copyInput(input, status, done) {
  try {
    if (!navigator.clipboard) throw new Error('no clipboard');
    await navigator.clipboard.writeText(input.value);
    status.textContent = done;
  } catch {
    input.focus();
    input.select();
    status.textContent = 'This browser did not allow copying. The link is selected: copy it yourself.';
  }
}
