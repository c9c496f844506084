// enroll-page.js: the /enroll page.
//
// Two ways in: an operator's enrollment link (/enroll#<token>), where the
// person first chooses a password, or a challenge that /login left in
// sessionStorage for an account that has a password but no authenticator yet.

import { ApiError, apiPost } from './api.js';
import { runEnrollment, takeStoredChallenge } from './enroll.js';
import {
  byId, clearError, focusOn, formById, inputById, nextPath, passwordsMatch, reloadOnNewFragment, setBusy, showError,
  takeFragmentToken,
} from './ui.js';

const errorEl = byId('enroll-error');
const intro = byId('enroll-intro');
const activateForm = formById('activate-form');
const password = inputById('new-password');
const password2 = inputById('new-password2');
const steps = byId('enroll-steps');
const missing = byId('enroll-missing');

// Read both at once so neither stays behind: the token leaves the address
// bar, the challenge leaves sessionStorage.
const token = takeFragmentToken();
reloadOnNewFragment();
const storedChallenge = takeStoredChallenge();

/**
 * @param {string} challenge
 * @param {string} [username]
 * @param {string} [doneHref] where to go at the end; '/' by default
 */
function startEnrollment(challenge, username, doneHref = '/') {
  intro.hidden = true;
  activateForm.hidden = true;
  void runEnrollment({ challenge, container: steps, errorEl, username, doneHref });
}

if (token !== '') {
  activateForm.hidden = false;
  password.focus();

  let sending = false;
  activateForm.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    if (sending) return;
    clearError(errorEl);
    if (!passwordsMatch(password, password2, errorEl)) return;
    sending = true;
    setBusy(activateForm, true);
    /** @type {any} */
    let res;
    try {
      res = await apiPost('/api/v1/auth/activate', { token, password: password.value });
    } catch (err) {
      sending = false;
      setBusy(activateForm, false);
      showError(errorEl, err);
      if (err instanceof ApiError && err.code === 'invalid_token') {
        // The link is used or expired: typing again will not help.
        activateForm.hidden = true;
        focusOn(errorEl);
        return;
      }
      password.focus();
      password.select();
      return;
    }
    password.value = '';
    password2.value = '';
    if (typeof res.challenge !== 'string' || res.challenge === '') {
      sending = false;
      setBusy(activateForm, false);
      showError(errorEl, 'Parley sent an unexpected answer. Reload the page and try again.');
      return;
    }
    startEnrollment(res.challenge, typeof res.username === 'string' ? res.username : '');
  });
} else if (storedChallenge !== '') {
  // From /login, which passes on where the person was going.
  startEnrollment(storedChallenge, undefined, nextPath());
} else {
  intro.hidden = true;
  missing.hidden = false;
  focusOn(byId('enroll-missing-title'));
}
