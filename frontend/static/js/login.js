// login.js: the /login page. Step 1 checks the password; step 2 asks for
// the authenticator code (or a recovery code). An account without an
// authenticator yet is sent on to /enroll with its challenge.

import { ApiError, apiPost, setCsrfToken } from './api.js';
import { CHALLENGE_KEY } from './enroll.js';
import {
  byId, clearError, digitsOnly, formById, inputById, nextPath, setBusy, showError,
} from './ui.js';

const errorEl = byId('login-error');
const loginForm = formById('login-form');
const username = inputById('username');
const password = inputById('password');
const mfaForm = formById('mfa-form');
const mfaHint = byId('mfa-hint');
const codeField = byId('code-field');
const code = inputById('code');
const recoveryField = byId('recovery-field');
const recoveryCode = inputById('recovery-code');
const useRecovery = byId('use-recovery');
const startOver = byId('mfa-start-over');

/** The challenge between the two steps; kept only in memory. */
let challenge = '';
let recoveryMode = false;
let sending = false;

/** @param {boolean} on */
function setRecoveryMode(on) {
  recoveryMode = on;
  codeField.hidden = on;
  code.disabled = on;
  code.required = !on;
  recoveryField.hidden = !on;
  recoveryCode.disabled = !on;
  recoveryCode.required = on;
  useRecovery.textContent = on ? 'Use the code from my authenticator app' : 'Use a recovery code instead';
  mfaHint.textContent = on
    ? 'Enter one of the recovery codes you saved when you set up Parley. Each code works once.'
    : 'Enter the 6-digit code from your authenticator app.';
}

function showPasswordStep() {
  challenge = '';
  mfaForm.hidden = true;
  loginForm.hidden = false;
  code.value = '';
  recoveryCode.value = '';
  password.value = '';
  if (username.value === '') username.focus();
  else password.focus();
}

function showMfaStep() {
  loginForm.hidden = true;
  mfaForm.hidden = false;
  setRecoveryMode(false);
  code.value = '';
  recoveryCode.value = '';
  code.focus();
}

loginForm.addEventListener('submit', async (ev) => {
  ev.preventDefault();
  if (sending) return;
  clearError(errorEl);
  const name = username.value.trim();
  if (name === '' || password.value === '') {
    showError(errorEl, 'Enter your username and password.');
    (name === '' ? username : password).focus();
    return;
  }
  sending = true;
  setBusy(loginForm, true);
  try {
    /** @type {any} */
    const res = await apiPost('/api/v1/auth/login', { username: name, password: password.value });
    if (res.next === 'mfa' && typeof res.challenge === 'string') {
      challenge = res.challenge;
      password.value = '';
      showMfaStep();
    } else if (res.next === 'enroll' && typeof res.challenge === 'string') {
      try {
        window.sessionStorage.setItem(CHALLENGE_KEY, res.challenge);
      } catch {
        showError(errorEl, 'This browser blocks session storage, which Parley needs to finish setting up your account.');
        return;
      }
      // After enrolment, /enroll goes on to the same ?next= as sign-in.
      const next = nextPath();
      window.location.assign(next === '/' ? '/enroll' : '/enroll?next=' + encodeURIComponent(next));
      return;
    } else {
      showError(errorEl, 'Parley sent an unexpected answer. Reload the page and try again.');
    }
  } catch (err) {
    showError(errorEl, err);
    password.focus();
    password.select();
  } finally {
    sending = false;
    setBusy(loginForm, false);
  }
});

mfaForm.addEventListener('submit', async (ev) => {
  ev.preventDefault();
  if (sending) return;
  clearError(errorEl);
  const input = recoveryMode ? recoveryCode : code;
  const value = input.value.trim();
  if (!recoveryMode && !/^[0-9]{6}$/.test(value)) {
    showError(errorEl, 'Enter the 6 digits your authenticator app shows.');
    code.focus();
    return;
  }
  if (recoveryMode && value === '') {
    showError(errorEl, 'Enter one of your recovery codes.');
    recoveryCode.focus();
    return;
  }
  sending = true;
  setBusy(mfaForm, true);
  const body = recoveryMode ? { challenge, recovery_code: value } : { challenge, code: value };
  try {
    /** @type {any} */
    const res = await apiPost('/api/v1/auth/mfa', body);
    setCsrfToken(res.csrf_token);
    window.location.assign(nextPath());
    return; // buttons stay disabled while the next page loads
  } catch (err) {
    sending = false;
    setBusy(mfaForm, false);
    if (err instanceof ApiError && err.code === 'invalid_challenge') {
      // Expired, or destroyed after too many wrong codes: the password again.
      showPasswordStep();
      showError(errorEl, err);
      return;
    }
    showError(errorEl, err);
    input.value = '';
    input.focus();
  }
});

useRecovery.addEventListener('click', () => {
  clearError(errorEl);
  setRecoveryMode(!recoveryMode);
  (recoveryMode ? recoveryCode : code).focus();
});

startOver.addEventListener('click', () => {
  clearError(errorEl);
  showPasswordStep();
});

digitsOnly(code);
setRecoveryMode(false);
username.focus();
