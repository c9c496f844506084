// setup.js: the /setup page, opened once through the link `parley serve`
// prints on first start (/setup#<token>). It creates the first
// administrator, then runs the same authenticator enrollment as /enroll.

import { ApiError, apiPost } from './api.js';
import { runEnrollment } from './enroll.js';
import {
  byId, clearError, focusOn, formById, inputById, passwordsMatch, reloadOnNewFragment, setBusy, showError, takeFragmentToken,
} from './ui.js';

const errorEl = byId('setup-error');
const intro = byId('setup-intro');
const form = formById('setup-form');
const username = inputById('setup-username');
const displayName = inputById('setup-display-name');
const password = inputById('setup-password');
const password2 = inputById('setup-password2');
const steps = byId('enroll-steps');
const missing = byId('setup-missing');

const token = takeFragmentToken();
reloadOnNewFragment();

/** Which field to put the cursor in for each refusal. */
const fieldFor = /** @type {Record<string, HTMLInputElement>} */ ({
  invalid_username: username,
  invalid_display_name: displayName,
  invalid_password: password,
});

if (token === '') {
  intro.hidden = true;
  missing.hidden = false;
  focusOn(byId('setup-missing-title'));
} else {
  form.hidden = false;
  username.focus();

  let sending = false;
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    if (sending) return;
    clearError(errorEl);
    if (!passwordsMatch(password, password2, errorEl)) return;
    const name = username.value.trim();
    sending = true;
    setBusy(form, true);
    /** @type {any} */
    let res;
    try {
      res = await apiPost('/api/v1/setup', {
        token,
        username: name,
        display_name: displayName.value.trim(),
        password: password.value,
      });
    } catch (err) {
      sending = false;
      setBusy(form, false);
      const code = err instanceof ApiError ? err.code : '';
      if (code === 'setup_complete') {
        form.hidden = true;
        showError(errorEl, err, { href: '/login', text: 'Go to sign-in.' });
        focusOn(errorEl);
        return;
      }
      if (code === 'invalid_token') {
        form.hidden = true;
        showError(errorEl, err);
        focusOn(errorEl);
        return;
      }
      showError(errorEl, err);
      const field = fieldFor[code] ?? username;
      field.focus();
      if (field === password) password2.value = '';
      return;
    }
    password.value = '';
    password2.value = '';
    if (typeof res.challenge !== 'string' || res.challenge === '') {
      sending = false;
      setBusy(form, false);
      showError(errorEl, 'Parley sent an unexpected answer. Reload the page and try again.');
      return;
    }
    form.hidden = true;
    intro.hidden = true;
    void runEnrollment({ challenge: res.challenge, container: steps, errorEl, username: name });
  });
}
