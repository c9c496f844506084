// api.js: the one place where the pages talk to Parley's JSON API.
//
// Every call is a same-origin fetch that is never cached. The session is an
// HttpOnly cookie this code never sees; the CSRF token from the latest
// /api/v1/me (or sign-in) answer lives only in this module's memory and goes
// out as X-CSRF-Token on every POST, PATCH, PUT and DELETE once it is known.

/** @type {string} */
let csrfToken = '';

/**
 * Remembers the CSRF token for later POSTs. Anything but a non-empty string
 * forgets it.
 * @param {unknown} token
 */
export function setCsrfToken(token) {
  csrfToken = typeof token === 'string' ? token : '';
}

/** An API answer with a 4xx/5xx status, or no answer at all (status 0). */
export class ApiError extends Error {
  /**
   * @param {number} status HTTP status, 0 when the server could not be reached
   * @param {string} code the stable error code, such as "invalid_code"
   * @param {string} message text for people, safe to show as text
   * @param {number|null} retryAfter seconds from Retry-After, on 429
   */
  constructor(status, code, message, retryAfter = null) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
    this.retryAfter = retryAfter;
  }
}

/**
 * Reads Retry-After, given either as seconds or as an HTTP date.
 * @param {string|null} value
 * @returns {number|null} whole seconds, at least 1
 */
function parseRetryAfter(value) {
  if (!value) return null;
  const v = value.trim();
  if (/^\d+$/.test(v)) return Math.max(1, Number.parseInt(v, 10));
  const when = Date.parse(v);
  if (Number.isNaN(when)) return null;
  return Math.max(1, Math.ceil((when - Date.now()) / 1000));
}

/**
 * The sentence shown for a 429.
 * @param {number|null} seconds
 */
export function tooManyAttempts(seconds) {
  if (seconds === null) return 'Too many attempts, try again later.';
  return `Too many attempts, try again in ${seconds} ${seconds === 1 ? 'second' : 'seconds'}.`;
}

/** @param {number} status */
function fallbackMessage(status) {
  if (status === 401) return 'You are not signed in, or your sign-in has expired.';
  if (status === 403) return 'You are not allowed to do that.';
  if (status === 404) return 'Parley could not find what was asked for.';
  if (status >= 500) return 'Parley ran into a problem. Try again in a moment.';
  return `Something went wrong (HTTP ${status}). Try again.`;
}

/**
 * @param {'GET'|'POST'|'PATCH'|'PUT'|'DELETE'} method
 * @param {string} path
 * @param {object} [body] sent as JSON; DELETE sends none
 * @returns {Promise<any>} the decoded JSON answer; an empty object for 204
 */
async function request(method, path, body) {
  /** @type {Record<string, string>} */
  const headers = { Accept: 'application/json' };
  /** @type {RequestInit} */
  const init = { method, headers, credentials: 'same-origin', cache: 'no-store' };
  if (method !== 'GET') {
    if (csrfToken !== '') headers['X-CSRF-Token'] = csrfToken;
    if (method !== 'DELETE') {
      headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body ?? {});
    }
  }

  let res;
  try {
    res = await fetch(path, init);
  } catch {
    throw new ApiError(0, 'network',
      'Could not reach the Parley server. Check your connection and try again.');
  }

  let data = null;
  const type = res.headers.get('Content-Type') || '';
  if (res.status !== 204 && type.includes('application/json')) {
    try {
      data = await res.json();
    } catch {
      data = null;
    }
  }

  if (res.ok) {
    if (res.status !== 204 && (data === null || typeof data !== 'object')) {
      throw new ApiError(res.status, 'bad_response',
        'Parley sent an answer this page could not read. Reload the page and try again.');
    }
    return data ?? {};
  }

  const code = data && typeof data.error === 'string' ? data.error : `http_${res.status}`;
  if (res.status === 429) {
    const seconds = parseRetryAfter(res.headers.get('Retry-After'));
    throw new ApiError(429, code, tooManyAttempts(seconds), seconds);
  }
  const message = data && typeof data.message === 'string' && data.message.trim() !== ''
    ? data.message
    : fallbackMessage(res.status);
  throw new ApiError(res.status, code, message);
}

/**
 * GET a JSON resource.
 * @param {string} path
 */
export function apiGet(path) {
  return request('GET', path);
}

/**
 * POST a JSON body; sends the CSRF token when one is known.
 * @param {string} path
 * @param {object} body
 */
export function apiPost(path, body) {
  return request('POST', path, body);
}

/**
 * PATCH a JSON body (only the fields to change); sends the CSRF token.
 * @param {string} path
 * @param {object} body
 */
export function apiPatch(path, body) {
  return request('PATCH', path, body);
}

/**
 * PUT a JSON body; sends the CSRF token.
 * @param {string} path
 * @param {object} body
 */
export function apiPut(path, body) {
  return request('PUT', path, body);
}

/**
 * DELETE a resource (no body); sends the CSRF token.
 * @param {string} path
 */
export function apiDelete(path) {
  return request('DELETE', path);
}

/**
 * One path segment for an API URL, such as a room id or a username:
 * percent-encoded, so it can never add a "/"; "." and ".." (which fetch
 * would resolve) and the empty segment are refused.
 * @param {string} value
 * @returns {string}
 */
export function seg(value) {
  if (value === '' || value === '.' || value === '..') {
    throw new Error(`parley: ${JSON.stringify(value)} is not a path segment`);
  }
  return encodeURIComponent(value);
}
