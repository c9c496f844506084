// ui.js: small DOM helpers shared by the pages. Text always goes in with
// textContent; nothing here parses markup.

import { ApiError } from './api.js';

/**
 * The element with this id; throws if the page lacks it, so a broken page
 * fails loudly in the console instead of half-working.
 * @param {string} id
 * @returns {HTMLElement}
 */
export function byId(id) {
  const found = document.getElementById(id);
  if (!found) throw new Error(`parley: the page has no #${id}`);
  return found;
}

/**
 * @param {string} id
 * @returns {HTMLInputElement}
 */
export function inputById(id) {
  return /** @type {HTMLInputElement} */ (byId(id));
}

/**
 * @param {string} id
 * @returns {HTMLFormElement}
 */
export function formById(id) {
  return /** @type {HTMLFormElement} */ (byId(id));
}

/**
 * @typedef {Object} ElOptions
 * @property {string} [id]
 * @property {string} [className]
 * @property {string} [text] set as textContent
 * @property {Record<string, string>} [attrs] plain attributes (never style or on*)
 * @property {boolean} [hidden]
 */

/**
 * Creates an element.
 * @template {keyof HTMLElementTagNameMap} K
 * @param {K} tag
 * @param {ElOptions} [opts]
 * @param {...(Node|string)} children strings become text nodes
 * @returns {HTMLElementTagNameMap[K]}
 */
export function el(tag, opts = {}, ...children) {
  const node = document.createElement(tag);
  if (opts.id) node.id = opts.id;
  if (opts.className) node.className = opts.className;
  if (opts.text !== undefined) node.textContent = opts.text;
  if (opts.hidden) node.hidden = true;
  for (const [name, value] of Object.entries(opts.attrs ?? {})) {
    const lower = name.toLowerCase();
    if (lower === 'style' || lower.startsWith('on')) {
      throw new Error(`parley: refusing attribute ${name}`);
    }
    node.setAttribute(name, value);
  }
  node.append(...children);
  return node;
}

/**
 * Shows an error in a role="alert" element, optionally followed by a link.
 * @param {HTMLElement} target
 * @param {unknown} err an ApiError, an Error or a string
 * @param {{href: string, text: string}} [link]
 */
export function showError(target, err, link) {
  let message = 'Something went wrong. Try again.';
  if (typeof err === 'string') message = err;
  else if (err instanceof ApiError) message = err.message;
  else if (err instanceof Error) {
    console.error(err);
  }
  target.replaceChildren(el('span', { text: message }));
  if (link) {
    target.append(' ', el('a', { text: link.text, attrs: { href: link.href } }));
  }
}

/** @param {HTMLElement} target */
export function clearError(target) {
  target.replaceChildren();
}

/**
 * Marks a form as busy: its buttons are disabled while a request runs.
 * @param {HTMLFormElement} form
 * @param {boolean} busy
 */
export function setBusy(form, busy) {
  form.setAttribute('aria-busy', busy ? 'true' : 'false');
  for (const button of form.querySelectorAll('button')) {
    button.disabled = busy;
  }
}

/**
 * Keeps a one-time-code input to digits only, also when a code such as
 * "123 456" is pasted (maxlength alone would cut the paste short).
 * @param {HTMLInputElement} input
 */
export function digitsOnly(input) {
  const max = input.maxLength > 0 ? input.maxLength : 6;
  input.addEventListener('input', () => {
    const clean = input.value.replace(/\D/g, '').slice(0, max);
    if (clean !== input.value) input.value = clean;
  });
  input.addEventListener('paste', (ev) => {
    const pasted = ev.clipboardData ? ev.clipboardData.getData('text') : '';
    if (!pasted) return;
    ev.preventDefault();
    input.value = pasted.replace(/\D/g, '').slice(0, max);
    input.dispatchEvent(new Event('input'));
  });
}

/**
 * Reads the token from the address's fragment (#<token>) and removes it from
 * the address bar and history at once, so it is not left on screen, in
 * history or in a bookmark.
 * @returns {string} the token, or '' when there is none
 */
export function takeFragmentToken() {
  let raw = window.location.hash.slice(1);
  if (raw === '') return '';
  window.history.replaceState(null, '', window.location.pathname + window.location.search);
  if (raw.startsWith('token=')) raw = raw.slice('token='.length);
  try {
    raw = decodeURIComponent(raw);
  } catch {
    // Not percent-encoded after all: use it as it came.
  }
  return raw.trim();
}

/**
 * Starts the page afresh when a new #<token> is pasted into the address bar
 * of an open page: the browser changes only the fragment and does not
 * reload by itself.
 */
export function reloadOnNewFragment() {
  window.addEventListener('hashchange', () => {
    if (window.location.hash.length > 1) window.location.reload();
  });
}

/**
 * Moves focus to an element (making headings focusable for this purpose).
 * @param {HTMLElement} target
 */
export function focusOn(target) {
  if (!target.hasAttribute('tabindex') && !(target instanceof HTMLInputElement) &&
      !(target instanceof HTMLButtonElement) && !(target instanceof HTMLAnchorElement)) {
    target.setAttribute('tabindex', '-1');
  }
  target.focus();
}

/**
 * Whether two password fields match; shows the error and focuses the second
 * field when they do not.
 * @param {HTMLInputElement} first
 * @param {HTMLInputElement} second
 * @param {HTMLElement} errorTarget
 */
export function passwordsMatch(first, second, errorTarget) {
  if (first.value === second.value) return true;
  showError(errorTarget, 'The two passwords do not match. Type the same password in both fields.');
  second.value = '';
  second.focus();
  return false;
}

/**
 * Where to go once signed in (or enrolled): ?next= when it is a path on
 * this site, such as /join/abc or /rooms/abc/settings, otherwise "/".
 * "//host", "/\host" and control characters are refused because browsers
 * read them as another host.
 * @returns {string}
 */
export function nextPath() {
  const next = new URLSearchParams(window.location.search).get('next');
  if (!next || !next.startsWith('/') || next.startsWith('//')) return '/';
  if (/[\\\u0000-\u001f\u007f]/.test(next)) return '/';
  try {
    const url = new URL(next, window.location.origin);
    if (url.origin !== window.location.origin) return '/';
    return url.pathname + url.search + url.hash;
  } catch {
    return '/';
  }
}
