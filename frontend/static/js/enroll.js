// enroll.js: the TOTP enrollment steps, shared by /enroll and /setup.
//
// Given an enrollment challenge, it asks the server for a new secret, shows
// the QR code and the key, confirms the first code from the app, then shows
// the recovery codes once and waits for the person to say they saved them.

import { ApiError, apiPost, setCsrfToken } from './api.js';
import { codesPanel } from './codes.js';
import { clearError, digitsOnly, el, focusOn, setBusy, showError } from './ui.js';

/** The sessionStorage key /login uses to hand a challenge to /enroll. */
export const CHALLENGE_KEY = 'parley.challenge';

/**
 * Takes the challenge /login left in sessionStorage, removing it at once.
 * @returns {string} '' when there is none
 */
export function takeStoredChallenge() {
  try {
    const challenge = window.sessionStorage.getItem(CHALLENGE_KEY) ?? '';
    window.sessionStorage.removeItem(CHALLENGE_KEY);
    return challenge;
  } catch {
    return ''; // storage disabled
  }
}

const SIGN_IN_AGAIN = { href: '/login', text: 'Sign in again to start over.' };

/**
 * @typedef {Object} EnrollmentOptions
 * @property {string} challenge the enrollment challenge from login, activate or setup
 * @property {HTMLElement} container where the steps are drawn (emptied first)
 * @property {HTMLElement} errorEl the page's role="alert" element
 * @property {string} [username] shown in the recovery-code file when known
 * @property {string} [doneHref] where #enroll-done leads; '/' by default
 */

/**
 * Runs the enrollment UI in container.
 * @param {EnrollmentOptions} opts
 * @returns {Promise<void>} resolves once the first step is on screen
 */
export async function runEnrollment(opts) {
  const { challenge, container, errorEl } = opts;
  clearError(errorEl);
  const waiting = el('p', { className: 'muted', text: 'Preparing your authenticator set-up…', attrs: { role: 'status' } });
  container.replaceChildren(waiting);

  /** @type {any} */
  let secret;
  try {
    secret = await apiPost('/api/v1/auth/enroll', { challenge });
  } catch (err) {
    container.replaceChildren();
    if (err instanceof ApiError && (err.code === 'invalid_challenge' || err.status === 401)) {
      showError(errorEl, err, SIGN_IN_AGAIN);
      return;
    }
    showError(errorEl, err);
    const retry = el('button', { className: 'btn secondary', text: 'Try again', attrs: { type: 'button' } });
    retry.addEventListener('click', () => { void runEnrollment(opts); });
    container.append(retry);
    retry.focus();
    return;
  }
  showSecretStep(opts, secret);
}

/**
 * Groups a base32 secret in fours for reading aloud or typing.
 * @param {string} secret
 */
function groupSecret(secret) {
  return (secret.match(/.{1,4}/g) ?? []).join(' ');
}

/**
 * Step 2: QR code, key and the confirm form.
 * @param {EnrollmentOptions} opts
 * @param {{secret?: unknown, otpauth_uri?: unknown, qr_png?: unknown}} data
 */
function showSecretStep(opts, data) {
  const { challenge, container, errorEl } = opts;
  const raw = typeof data.secret === 'string' ? data.secret.replace(/[\s=]/g, '').toUpperCase() : '';
  const uri = typeof data.otpauth_uri === 'string' ? data.otpauth_uri : '';
  const qr = typeof data.qr_png === 'string' ? data.qr_png : '';

  const heading = el('h2', { id: 'enroll-title', text: 'Set up your authenticator app' });

  const steps = el('ol', { className: 'steps' },
    el('li', { text: 'Open an authenticator app on your phone (for example FreeOTP, Aegis, Google Authenticator or 1Password).' }),
    el('li', { text: 'Add an account in the app and scan this QR code.' }),
    el('li', { text: 'Type the 6-digit code the app shows into the box below.' }));

  const figure = el('figure', { className: 'qr' });
  if (qr.startsWith('data:image/png;base64,')) {
    figure.append(el('img', {
      id: 'qr',
      attrs: {
        src: qr,
        alt: 'QR code that adds your Parley account to an authenticator app',
        width: '200',
        height: '200',
      },
    }));
  } else {
    figure.hidden = true;
  }

  const secretCode = el('code', {
    id: 'totp-secret',
    className: 'secret',
    text: groupSecret(raw),
    attrs: { 'data-secret': raw, 'aria-label': `Key: ${raw.split('').join(' ')}` },
  });
  const keyBlock = el('div', { className: 'key' },
    el('p', { text: 'Cannot scan the code? Choose to enter a key in the app and type this one (spaces do not matter):' }),
    el('p', {}, secretCode));

  const linkBlock = el('div', { className: 'uri-block' });
  if (uri.startsWith('otpauth://')) {
    linkBlock.append(
      el('p', { className: 'muted small' },
        'Setting up on this device? ',
        el('a', { id: 'otpauth-link', text: 'Open the key in your authenticator app', attrs: { href: uri } }),
        '.'),
      el('details', {},
        el('summary', { text: 'Show the full set-up link' }),
        el('code', { id: 'otpauth-uri', className: 'uri', text: uri })));
  }

  const codeInput = el('input', {
    id: 'confirm-code',
    className: 'code-input',
    attrs: {
      type: 'text',
      name: 'code',
      inputmode: 'numeric',
      pattern: '[0-9]{6}',
      maxlength: '6',
      autocomplete: 'one-time-code',
      required: '',
      'aria-describedby': 'confirm-code-help',
    },
  });
  digitsOnly(codeInput);
  const submit = el('button', { id: 'confirm-submit', className: 'btn primary', text: 'Verify and continue', attrs: { type: 'submit' } });
  const form = el('form', { id: 'confirm-form', attrs: { method: 'post', 'aria-labelledby': 'enroll-title' } },
    el('div', { className: 'field' },
      el('label', { text: '6-digit code from the app', attrs: { for: 'confirm-code' } }),
      codeInput,
      el('p', { id: 'confirm-code-help', className: 'help', text: 'The code changes every 30 seconds; any current one will do.' })),
    submit);

  let sending = false;
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    if (sending) return;
    clearError(errorEl);
    const code = codeInput.value.trim();
    if (!/^[0-9]{6}$/.test(code)) {
      showError(errorEl, 'Enter the 6 digits your authenticator app shows.');
      codeInput.focus();
      return;
    }
    sending = true;
    setBusy(form, true);
    /** @type {any} */
    let done;
    try {
      done = await apiPost('/api/v1/auth/enroll/confirm', { challenge, code });
    } catch (err) {
      sending = false;
      setBusy(form, false);
      if (err instanceof ApiError && err.code === 'invalid_challenge') {
        showError(errorEl, err, SIGN_IN_AGAIN);
        submit.disabled = true;
        codeInput.disabled = true;
        return;
      }
      showError(errorEl, err);
      codeInput.value = '';
      codeInput.focus();
      return;
    }
    setCsrfToken(done.csrf_token);
    const codes = Array.isArray(done.recovery_codes) ? done.recovery_codes.map(String) : [];
    const username = done.user && typeof done.user.username === 'string' ? done.user.username : (opts.username ?? '');
    showCodesStep(opts, codes, username);
  });

  container.replaceChildren(el('section', { className: 'step', attrs: { 'aria-labelledby': 'enroll-title' } },
    heading, steps, figure, keyBlock, linkBlock, form));
  focusOn(heading);
}

/**
 * Step 3: the recovery codes, shown once.
 * @param {EnrollmentOptions} opts
 * @param {string[]} codes
 * @param {string} username
 */
function showCodesStep(opts, codes, username) {
  const { container } = opts;
  const heading = el('h2', { id: 'codes-title', text: 'Save your recovery codes' });
  const intro = el('p', {
    text: 'Two-step verification is on. If you lose your phone, each of these codes signs you in once. ' +
      'They are shown only now: keep them in a password manager or on paper somewhere safe.',
  });

  const saved = el('input', { id: 'codes-saved', attrs: { type: 'checkbox', name: 'codes-saved' } });
  const done = el('button', { id: 'enroll-done', className: 'btn primary', text: 'Continue to Parley', attrs: { type: 'button' } });
  done.disabled = true;
  saved.addEventListener('change', () => { done.disabled = !saved.checked; });
  done.addEventListener('click', () => {
    if (!saved.checked) return;
    window.location.assign(opts.doneHref ?? '/');
  });

  container.replaceChildren(el('section', { className: 'step', attrs: { 'aria-labelledby': 'codes-title' } },
    heading,
    intro,
    codesPanel(codes, username),
    el('div', { className: 'check' },
      saved,
      el('label', { text: 'I have saved these codes somewhere safe', attrs: { for: 'codes-saved' } })),
    done));
  focusOn(heading);
}
