// recordings.js: the recording portal, /recordings. It lists the
// recordings the signed-in person may watch (their rooms' recordings and
// those shared with them), newest first; choosing one (/recordings?id=…)
// shows its tracks, each in a player that streams the file from the API
// (the browser seeks with Range requests), and, as the recording's
// permissions allow, download links, sharing with other people until a
// date, and deleting it. The server checks every right again.

import {
  ApiError, apiDelete, apiGet, apiPost, seg, setCsrfToken,
} from './api.js';
import { formatTime, parseTime } from './rooms.js';
import {
  byId, clearError, el, focusOn, formById, inputById, setBusy, showError,
} from './ui.js';

/**
 * @typedef {Object} Track one file of a recording
 * @property {string} id
 * @property {string} kind "av" (camera and microphone) or "screen"
 * @property {string} participantName
 * @property {string[]} codecs such as "video/VP8", "audio/opus"
 * @property {Date|null} startedAt
 * @property {number} durationS
 * @property {number} size bytes
 * @property {string} status "recording", "complete", "incomplete", "failed", "unsupported"
 * @property {string} note why a track is as it is, '' when nothing to say
 */

/**
 * @typedef {Object} Share
 * @property {string} username
 * @property {string} displayName
 * @property {Date|null} expiresAt
 */

/**
 * @typedef {Object} Recording a recording view of the API
 * @property {string} id
 * @property {string} roomId
 * @property {string} roomName
 * @property {Date|null} startedAt
 * @property {Date|null} endedAt null while it runs
 * @property {number} durationS
 * @property {string} status "recording", "complete", "incomplete" or "failed"
 * @property {string[]} participants display names
 * @property {number} size bytes, all tracks together
 * @property {Track[]} tracks
 * @property {string[]} permissions the caller's: "recording.view", "recording.download", …
 * @property {Share[]} shares only for those who may share
 * @property {Date|null} sharedUntil when the caller sees it through a share, until when
 */

const DAY_MS = 24 * 60 * 60 * 1000;
/** Shares last from 60 s to 366 days (the server's bounds). */
const SHARE_MIN_S = 60;
const SHARE_MAX_S = 366 * 24 * 60 * 60;
/** The "until" date a share form starts with, in days from today. */
const SHARE_DEFAULT_DAYS = 7;
const UNREADABLE = 'Parley sent an answer this page could not read. Reload the page and try again.';

const errorEl = byId('recordings-error');
const statusEl = byId('recordings-status');
const panel = byId('recordings');
const refreshButton = /** @type {HTMLButtonElement} */ (byId('recordings-refresh'));
const emptyEl = byId('recordings-empty');
const listEl = byId('recordings-list');
const listTitle = byId('recordings-list-title');
const pickEl = byId('recording-pick');

const detail = byId('recording-detail');
const titleEl = byId('recording-title');
const factsEl = byId('recording-facts');
const sharedEl = byId('recording-shared');
const noticeEl = byId('recording-notice');
const tracksEmpty = byId('tracks-empty');
const tracksList = byId('tracks-list');

const shareSection = byId('share-section');
const shareForm = formById('share-form');
const shareUsername = inputById('share-username');
const shareUntil = inputById('share-until');
const sharesEmpty = byId('shares-empty');
const sharesList = byId('shares-list');

const deleteSection = byId('delete-section');
const deleteButton = /** @type {HTMLButtonElement} */ (byId('delete-recording'));
const deletePanel = byId('delete-confirm-panel');
const deleteText = byId('delete-confirm-text');
const deleteYes = /** @type {HTMLButtonElement} */ (byId('delete-confirm'));
const deleteNo = /** @type {HTMLButtonElement} */ (byId('delete-cancel'));

/** @type {Recording[]} the list as last loaded */
let recordings = [];
/** The id of the recording shown (or being loaded), '' for none. */
let selectedId = '';
/** @type {Recording|null} the recording drawn in the detail */
let current = null;
/** What the drawn tracks were drawn from, so that a refresh keeps players playing. */
let drawnTracks = '';
/** Counts detail loads, so that a slow answer cannot replace a newer one. */
let loadSeq = 0;

// ---- Reading the API's answers ----

/** @param {unknown} v */
function str(v) {
  return typeof v === 'string' ? v : '';
}

/** @param {unknown} v a count or a length, 0 when it is none */
function num(v) {
  return typeof v === 'number' && Number.isFinite(v) && v > 0 ? v : 0;
}

/** @param {unknown} v */
function strings(v) {
  return Array.isArray(v) ? v.filter((x) => typeof x === 'string') : [];
}

/**
 * @param {any} v
 * @returns {Track|null}
 */
function trackOf(v) {
  if (!v || typeof v !== 'object' || typeof v.id !== 'string' || v.id === '') return null;
  return {
    id: v.id,
    kind: str(v.kind),
    participantName: str(v.participant_name),
    codecs: strings(v.codecs),
    startedAt: parseTime(v.started_at),
    durationS: num(v.duration_s),
    size: num(v.size),
    status: str(v.status),
    note: str(v.note),
  };
}

/**
 * @param {any} v
 * @returns {Share|null}
 */
function shareOf(v) {
  if (!v || typeof v !== 'object') return null;
  return {
    username: str(v.username),
    displayName: str(v.display_name),
    expiresAt: parseTime(v.expires_at),
  };
}

/**
 * Reads a recording view, keeping only well-typed fields.
 * @param {any} v
 * @returns {Recording|null} null when v is not a recording
 */
function recordingOf(v) {
  if (!v || typeof v !== 'object' || typeof v.id !== 'string' || v.id === '') return null;
  /** @type {Track[]} */
  const tracks = [];
  for (const t of Array.isArray(v.tracks) ? v.tracks : []) {
    const track = trackOf(t);
    if (track) tracks.push(track);
  }
  /** @type {Share[]} */
  const shares = [];
  for (const s of Array.isArray(v.shares) ? v.shares : []) {
    const share = shareOf(s);
    if (share) shares.push(share);
  }
  const mine = v.shared_with_me && typeof v.shared_with_me === 'object' ? v.shared_with_me : null;
  return {
    id: v.id,
    roomId: str(v.room_id),
    roomName: str(v.room_name),
    startedAt: parseTime(v.started_at),
    endedAt: parseTime(v.ended_at),
    durationS: num(v.duration_s),
    status: str(v.status),
    participants: strings(v.participants),
    size: num(v.size),
    tracks,
    permissions: strings(v.permissions),
    shares,
    sharedUntil: mine ? parseTime(mine.expires_at) : null,
  };
}

/**
 * @param {Recording} rec
 * @param {string} action such as "recording.download"
 */
function can(rec, action) {
  return rec.permissions.includes(action);
}

// ---- Words and numbers for people ----

/**
 * "1 h 02 min", "5 min 07 s", "42 s".
 * @param {number} seconds
 */
function formatDuration(seconds) {
  const total = Math.max(0, Math.round(seconds));
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = total % 60;
  if (h > 0) return `${h} h ${String(m).padStart(2, '0')} min`;
  if (m > 0) return `${m} min ${String(s).padStart(2, '0')} s`;
  return `${s} s`;
}

/**
 * "812 bytes", "4.2 MB", "1.3 GB" (powers of 1000).
 * @param {number} bytes
 */
function formatSize(bytes) {
  const units = ['KB', 'MB', 'GB', 'TB'];
  if (bytes < 1000) return `${bytes} ${bytes === 1 ? 'byte' : 'bytes'}`;
  let value = bytes;
  let unit = '';
  for (const u of units) {
    value /= 1000;
    unit = u;
    if (value < 999.5) break;
  }
  return `${value < 9.95 ? value.toFixed(1) : String(Math.round(value))} ${unit}`;
}

/** @type {Record<string, string>} */
const STATUS_NAMES = {
  recording: 'Recording',
  complete: 'Complete',
  incomplete: 'Incomplete',
  failed: 'Failed',
  unsupported: 'Not recorded',
};

/**
 * A badge for a recording's or a track's status; its class names the
 * status ("badge status incomplete") for the stylesheet and the tests.
 * @param {string} status
 */
function statusBadge(status) {
  const known = Object.hasOwn(STATUS_NAMES, status);
  return el('span', {
    className: `badge status ${known ? status : 'unknown'}`,
    text: known ? STATUS_NAMES[status] : (status || 'Unknown'),
  });
}

/** @param {Date} when */
function timeEl(when) {
  return el('time', { text: formatTime(when), attrs: { datetime: when.toISOString() } });
}

/**
 * How long a recording lasted, or that it still runs.
 * @param {Recording} rec
 */
function recordingLength(rec) {
  if (rec.status === 'recording') return 'still recording';
  if (rec.endedAt === null && rec.durationS === 0) return 'length unknown';
  return formatDuration(rec.durationS);
}

/** @param {Recording} rec */
function roomName(rec) {
  return rec.roomName !== '' ? rec.roomName : 'A deleted room';
}

/** @param {Track} t */
function hasVideo(t) {
  return t.codecs.some((c) => /^video\//i.test(c) || /^(vp8|vp9|av1|h264|h265)$/i.test(c));
}

/** @param {Track} t whether the file holds sound only */
function audioOnly(t) {
  return t.codecs.length > 0 && !hasVideo(t) && t.kind !== 'screen';
}

/** @param {Track} t */
function trackWhat(t) {
  if (t.kind === 'screen') return 'Screen';
  return audioOnly(t) ? 'Microphone' : 'Camera and microphone';
}

/** @param {string} codec "video/VP8" as "VP8" */
function codecName(codec) {
  const slash = codec.indexOf('/');
  return slash >= 0 ? codec.slice(slash + 1) : codec;
}

/**
 * @param {string} recordingId
 * @param {string} trackId
 */
function mediaURL(recordingId, trackId) {
  return `/api/v1/recordings/${seg(recordingId)}/tracks/${seg(trackId)}/media`;
}

/** @param {string} id */
function recordingHref(id) {
  return `/recordings?id=${encodeURIComponent(id)}`;
}

/** The recording id in the address (?id=…), '' for none. */
function idFromAddress() {
  return new URLSearchParams(window.location.search).get('id') ?? '';
}

/** @param {string} id whether seg() takes it */
function validId(id) {
  return id !== '' && id !== '.' && id !== '..';
}

// ---- Signing in, and the common answers to a failed request ----

function toLogin() {
  window.location.replace('/login?next=' + encodeURIComponent(window.location.pathname + window.location.search));
}

/**
 * Fetches /api/v1/me for the CSRF token; goes to /login when not signed in.
 * @returns {Promise<boolean>} whether the person is signed in
 */
async function loadMe() {
  try {
    /** @type {any} */
    const me = await apiGet('/api/v1/me');
    setCsrfToken(me.csrf_token);
    return true;
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) {
      toLogin();
      return false;
    }
    statusEl.textContent = '';
    showError(errorEl, err);
    return false;
  }
}

/**
 * Shows a failed request. A 401 goes to sign-in and a refused CSRF token is
 * renewed (the person tries again). Returns whether the page is leaving.
 * @param {unknown} err
 */
async function handle(err) {
  if (err instanceof ApiError) {
    if (err.status === 401) {
      toLogin();
      return true;
    }
    if (err.code === 'csrf') {
      if (!(await loadMe())) return true;
      showError(errorEl, 'The page’s security token was out of date and has been renewed. Try again.');
      return false;
    }
  }
  showError(errorEl, err);
  if (err instanceof ApiError && err.code !== '') errorEl.dataset.code = err.code;
  return false;
}

function clearErrors() {
  clearError(errorEl);
  delete errorEl.dataset.code;
}

// ---- The list ----

/** @param {Recording} rec */
function recordingItem(rec) {
  const li = el('li', {
    className: 'item recording-item',
    attrs: { 'data-recording-id': rec.id, 'data-status': rec.status },
  });
  const link = el('a', {
    className: 'item-name recording-link',
    text: roomName(rec),
    attrs: { href: recordingHref(rec.id) },
  });
  link.addEventListener('click', (ev) => {
    if (ev.button !== 0 || ev.ctrlKey || ev.metaKey || ev.shiftKey || ev.altKey) return;
    ev.preventDefault();
    void select(rec.id, { push: true, focus: true });
  });
  const head = el('div', { className: 'item-head' }, link, statusBadge(rec.status));
  if (rec.sharedUntil !== null) head.append(el('span', { className: 'badge shared', text: 'Shared with you' }));

  const facts = el('p', { className: 'muted small item-facts' });
  if (rec.startedAt !== null) facts.append(timeEl(rec.startedAt), ' · ');
  facts.append(`${recordingLength(rec)} · ${formatSize(rec.size)}`);
  li.append(head, facts);
  if (rec.participants.length > 0) {
    li.append(el('p', {
      className: 'muted small item-facts recording-participants',
      text: `With ${rec.participants.join(', ')}`,
    }));
  }
  return li;
}

/** Marks the chosen recording in the list. */
function markSelected() {
  for (const li of listEl.querySelectorAll('li[data-recording-id]')) {
    const item = /** @type {HTMLElement} */ (li);
    const on = item.dataset.recordingId === selectedId;
    item.classList.toggle('selected', on);
    const link = item.querySelector('a.recording-link');
    if (link && on) link.setAttribute('aria-current', 'true');
    else if (link) link.removeAttribute('aria-current');
  }
}

function drawList() {
  listEl.replaceChildren(...recordings.map(recordingItem));
  emptyEl.hidden = recordings.length > 0;
  pickEl.hidden = recordings.length === 0 || selectedId !== '';
  markSelected();
}

/**
 * Fetches the recordings the person may watch, newest first.
 * @returns {Promise<boolean>} whether the list could be drawn
 */
async function loadList() {
  /** @type {any} */
  let res;
  try {
    res = await apiGet('/api/v1/recordings');
  } catch (err) {
    statusEl.textContent = '';
    await handle(err);
    return false;
  }
  /** @type {Recording[]} */
  const list = [];
  for (const v of Array.isArray(res.recordings) ? res.recordings : []) {
    const rec = recordingOf(v);
    if (rec) list.push(rec);
  }
  list.sort((a, b) => (b.startedAt?.getTime() ?? 0) - (a.startedAt?.getTime() ?? 0));
  recordings = list;
  panel.hidden = false;
  drawList();
  return true;
}

/**
 * Puts a fresher view of one recording into the list.
 * @param {Recording} rec
 */
function updateListItem(rec) {
  const i = recordings.findIndex((r) => r.id === rec.id);
  if (i < 0) return;
  recordings[i] = rec;
  const old = listEl.querySelector(`li[data-recording-id="${CSS.escape(rec.id)}"]`);
  if (old) old.replaceWith(recordingItem(rec));
  markSelected();
}

// ---- One recording ----

/** Stops the players of the drawn tracks and their downloads. */
function stopPlayers() {
  for (const node of tracksList.querySelectorAll('.recording-player')) {
    const player = /** @type {HTMLMediaElement} */ (node);
    player.dataset.closed = 'true';
    player.pause();
    player.removeAttribute('src');
    player.load();
  }
}

/** Hides the detail: nothing is chosen. */
function closeDetail() {
  loadSeq++;
  stopPlayers();
  tracksList.replaceChildren();
  drawnTracks = '';
  current = null;
  selectedId = '';
  detail.hidden = true;
  hideDelete();
  pickEl.hidden = recordings.length === 0;
  markSelected();
}

/**
 * Shows one recording, fetched afresh.
 * @param {string} id
 * @param {{push?: boolean, focus?: boolean}} [opts] push: add it to the
 *   history (a click); focus: move focus to its heading once drawn
 */
async function select(id, opts = {}) {
  if (opts.push && id !== idFromAddress()) window.history.pushState(null, '', recordingHref(id));
  clearErrors();
  if (id !== selectedId) {
    hideDelete();
    stopPlayers();
    tracksList.replaceChildren();
    drawnTracks = '';
  }
  selectedId = id;
  pickEl.hidden = true;
  markSelected();
  const ok = await loadDetail(id);
  if (ok && opts.focus) focusOn(titleEl);
}

/**
 * Fetches and draws the recording; players that still show the same files
 * keep playing.
 * @param {string} id
 * @returns {Promise<boolean>} whether it was drawn
 */
async function loadDetail(id) {
  const seq = ++loadSeq;
  /** @type {any} */
  let res;
  try {
    if (!validId(id)) throw new ApiError(404, 'not_found', '');
    res = await apiGet(`/api/v1/recordings/${seg(id)}`);
  } catch (err) {
    if (seq !== loadSeq) return false;
    if (err instanceof ApiError && err.status === 404) {
      closeDetail();
      showError(errorEl, 'There is no such recording, or you may not watch it. It may have been deleted, or its share has ended.');
      errorEl.dataset.code = 'not_found';
      return false;
    }
    await handle(err);
    return false;
  }
  if (seq !== loadSeq) return false;
  const rec = recordingOf(res && res.recording);
  if (rec === null) {
    showError(errorEl, UNREADABLE);
    return false;
  }
  current = rec;
  updateListItem(rec);
  drawDetail(rec);
  return true;
}

/** @param {Recording} rec */
function drawDetail(rec) {
  detail.hidden = false;
  detail.dataset.recordingId = rec.id;
  titleEl.textContent = rec.startedAt !== null
    ? `${roomName(rec)}, ${formatTime(rec.startedAt)}`
    : roomName(rec);
  document.title = `${roomName(rec)} · Recordings · Parley`;

  factsEl.replaceChildren(statusBadge(rec.status), ' ');
  if (rec.startedAt !== null) factsEl.append('Started ', timeEl(rec.startedAt));
  if (rec.endedAt !== null) factsEl.append(rec.startedAt !== null ? ', ended ' : 'Ended ', timeEl(rec.endedAt));
  factsEl.append(` · ${recordingLength(rec)} · ${formatSize(rec.size)}`);
  if (rec.participants.length > 0) factsEl.append(` · With ${rec.participants.join(', ')}`);

  sharedEl.hidden = rec.sharedUntil === null;
  sharedEl.replaceChildren();
  if (rec.sharedUntil !== null) {
    sharedEl.append('This recording is shared with you until ', timeEl(rec.sharedUntil), '.');
  }

  /** @type {Record<string, string>} */
  const notices = {
    recording: 'This meeting is still being recorded. What is recorded so far can be played; reload for more.',
    incomplete: 'This recording is incomplete: the server stopped before finishing it. It holds what was saved until then.',
    failed: 'This recording failed. Whatever could be saved is listed below.',
  };
  const notice = Object.hasOwn(notices, rec.status) ? notices[rec.status] : '';
  noticeEl.textContent = notice;
  noticeEl.hidden = notice === '';

  drawTracks(rec);
  drawShares(rec);
  deleteSection.hidden = !can(rec, 'recording.delete');
  if (deleteSection.hidden) hideDelete();
}

// ---- Tracks ----

/** @param {Recording} rec */
function drawTracks(rec) {
  const key = JSON.stringify([rec.id, can(rec, 'recording.download'),
    rec.tracks.map((t) => [t.id, t.kind, t.status, t.size, t.durationS, t.note, t.codecs])]);
  tracksEmpty.hidden = rec.tracks.length > 0;
  if (key === drawnTracks) return;
  stopPlayers();
  tracksList.replaceChildren(...rec.tracks.map((t) => trackItem(rec, t)));
  drawnTracks = key;
}

/**
 * @param {Recording} rec
 * @param {Track} t
 */
function trackItem(rec, t) {
  const li = el('li', {
    className: 'track',
    attrs: { 'data-track-id': t.id, 'data-kind': t.kind, 'data-status': t.status },
  });
  const who = t.participantName !== '' ? t.participantName : 'Someone';
  const what = trackWhat(t);
  const head = el('div', { className: 'item-head' }, el('h4', { className: 'track-title', text: `${who} · ${what}` }));
  if (t.status !== 'complete') head.append(statusBadge(t.status));
  li.append(head);

  const facts = el('p', { className: 'muted small item-facts' });
  if (t.startedAt !== null) facts.append('From ', timeEl(t.startedAt), ' · ');
  facts.append(`${formatDuration(t.durationS)} · ${formatSize(t.size)}`);
  if (t.codecs.length > 0) facts.append(` · ${t.codecs.map(codecName).join(', ')}`);
  li.append(facts);
  if (t.note !== '') li.append(el('p', { className: 'small track-note', text: t.note }));

  if (t.status === 'unsupported') return li;

  const src = mediaURL(rec.id, t.id);
  const problem = el('p', { className: 'alert track-problem', hidden: true, attrs: { role: 'alert' } });
  /** @type {HTMLMediaElement} */
  const player = audioOnly(t)
    ? el('audio', { className: 'recording-player', attrs: { controls: '', preload: 'none' } })
    : el('video', { className: 'recording-player', attrs: { controls: '', preload: 'none', playsinline: '' } });
  player.dataset.trackId = t.id;
  player.setAttribute('aria-label', `${who}: ${what.toLowerCase()}`);
  player.addEventListener('error', () => {
    if (player.dataset.closed === 'true') return;
    const code = player.error ? player.error.code : 0;
    if (code === MediaError.MEDIA_ERR_ABORTED) return;
    void explainMediaError(problem, src, can(rec, 'recording.download'));
  });
  player.src = src;
  li.append(player, problem);

  if (can(rec, 'recording.download')) {
    li.append(el('p', { className: 'track-actions' }, el('a', {
      className: 'btn secondary download-link',
      text: 'Download',
      attrs: {
        href: `${src}?download=1`,
        download: '',
        'data-track-id': t.id,
        'aria-label': `Download ${who}: ${what.toLowerCase()} (WebM, ${formatSize(t.size)})`,
      },
    })));
  }
  return li;
}

/**
 * A player could not play its file: ask the server why (the element
 * itself is never told), and say so under the player.
 * @param {HTMLElement} target
 * @param {string} src
 * @param {boolean} mayDownload
 */
async function explainMediaError(target, src, mayDownload) {
  target.hidden = false;
  target.textContent = 'This track could not be played.';
  /** @type {Response} */
  let res;
  try {
    res = await fetch(src, {
      headers: { Range: 'bytes=0-0', Accept: 'application/json, */*' },
      credentials: 'same-origin',
      cache: 'no-store',
    });
  } catch {
    target.textContent = 'This track could not be loaded: Parley could not be reached. Check your connection and reload the page.';
    return;
  }
  if (res.ok) {
    if (res.body) void res.body.cancel();
    target.textContent = mayDownload
      ? 'This browser cannot play this track. Download it and play it with another program.'
      : 'This browser cannot play this track. Try another browser.';
    return;
  }
  if (res.status === 401) {
    toLogin();
    return;
  }
  let message = '';
  if ((res.headers.get('Content-Type') || '').includes('application/json')) {
    try {
      /** @type {any} */
      const data = await res.json();
      message = data && typeof data.message === 'string' ? data.message.trim() : '';
    } catch {
      message = '';
    }
  }
  target.textContent = message !== ''
    ? `This track could not be played: ${message}`
    : `This track could not be played (HTTP ${res.status}).`;
}

// ---- Sharing ----

/** @param {Date} d as an <input type="date"> value, in local time */
function dayValue(d) {
  const mm = String(d.getMonth() + 1).padStart(2, '0');
  const dd = String(d.getDate()).padStart(2, '0');
  return `${d.getFullYear()}-${mm}-${dd}`;
}

/**
 * The last second of a day given as "YYYY-MM-DD", in local time.
 * @param {string} value
 * @returns {Date|null}
 */
function endOfDay(value) {
  const m = /^(\d{4})-(\d{2})-(\d{2})$/.exec(value);
  if (!m) return null;
  const day = Number(m[3]);
  const d = new Date(Number(m[1]), Number(m[2]) - 1, day, 23, 59, 59);
  return Number.isNaN(d.getTime()) || d.getDate() !== day ? null : d;
}

/** Bounds the date input to what the server takes, and fills it in once. */
function prepareShareForm() {
  const now = new Date();
  shareUntil.min = dayValue(now);
  shareUntil.max = dayValue(new Date(now.getTime() + 365 * DAY_MS));
  if (shareUntil.value === '') shareUntil.value = dayValue(new Date(now.getTime() + SHARE_DEFAULT_DAYS * DAY_MS));
}

/** @param {Share} sh */
function shareName(sh) {
  if (sh.displayName !== '' && sh.displayName !== sh.username) {
    return sh.username !== '' ? `${sh.displayName} (${sh.username})` : sh.displayName;
  }
  return sh.username !== '' ? sh.username : 'Someone';
}

/**
 * @param {Recording} rec
 * @param {Share} sh
 */
function shareItem(rec, sh) {
  const li = el('li', { className: 'item share-item', attrs: { 'data-username': sh.username } });
  const head = el('div', { className: 'item-head' }, el('span', { className: 'item-name', text: shareName(sh) }));
  li.append(head);
  if (sh.expiresAt !== null) {
    li.append(el('p', { className: 'muted small item-facts' }, 'Until ', timeEl(sh.expiresAt)));
  }
  if (sh.username === '') return li;
  const revoke = el('button', {
    className: 'btn link danger-text revoke-share',
    text: 'Revoke',
    attrs: { type: 'button', 'aria-label': `Stop sharing with ${shareName(sh)}` },
  });
  revoke.addEventListener('click', async () => {
    clearErrors();
    revoke.disabled = true;
    try {
      await apiDelete(`/api/v1/recordings/${seg(rec.id)}/shares/${seg(sh.username)}`);
    } catch (err) {
      revoke.disabled = false;
      if (err instanceof ApiError && err.status === 404) {
        await loadDetail(rec.id); // the share, or the recording, is gone
        return;
      }
      await handle(err);
      return;
    }
    statusEl.textContent = `Stopped sharing with ${shareName(sh)}.`;
    if (await loadDetail(rec.id)) focusOn(byId('shares-title'));
  });
  li.append(revoke);
  return li;
}

/** @param {Recording} rec */
function drawShares(rec) {
  const may = can(rec, 'recording.share');
  shareSection.hidden = !may;
  if (!may) {
    sharesList.replaceChildren();
    return;
  }
  prepareShareForm();
  const shares = [...rec.shares].sort((a, b) => shareName(a).localeCompare(shareName(b)));
  sharesList.replaceChildren(...shares.map((sh) => shareItem(rec, sh)));
  sharesEmpty.hidden = shares.length > 0;
}

let sharing = false;
shareForm.addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const rec = current;
  if (sharing || rec === null) return;
  clearErrors();
  const username = shareUsername.value.trim();
  if (username === '') {
    showError(errorEl, 'Enter the username of the person to share with.');
    shareUsername.focus();
    return;
  }
  const until = endOfDay(shareUntil.value);
  if (until === null) {
    showError(errorEl, 'Pick the day until which they may watch the recording.');
    shareUntil.focus();
    return;
  }
  let seconds = Math.floor((until.getTime() - Date.now()) / 1000);
  if (seconds < SHARE_MIN_S) {
    showError(errorEl, 'That day is over: pick today or a later day.');
    shareUntil.focus();
    return;
  }
  if (seconds > SHARE_MAX_S + 24 * 60 * 60) {
    showError(errorEl, 'A recording can be shared for a year at most: pick an earlier day.');
    shareUntil.focus();
    return;
  }
  seconds = Math.min(seconds, SHARE_MAX_S); // the last allowed day, give or take a clock change
  sharing = true;
  setBusy(shareForm, true);
  try {
    /** @type {any} */
    const res = await apiPost(`/api/v1/recordings/${seg(rec.id)}/shares`, { username, expires_in_s: seconds });
    const sh = shareOf(res);
    const name = sh && sh.username !== '' ? shareName(sh) : username;
    const expires = sh && sh.expiresAt !== null ? ` until ${formatTime(sh.expiresAt)}` : '';
    shareUsername.value = '';
    statusEl.textContent = `Shared the recording with ${name}${expires}.`;
    await loadDetail(rec.id);
  } catch (err) {
    if (err instanceof ApiError && err.code === 'unknown_user') {
      showError(errorEl, `Nobody has the username “${username}”. Check the spelling.`);
      errorEl.dataset.code = 'unknown_user';
      shareUsername.focus();
      return;
    }
    if (err instanceof ApiError && err.status === 404) {
      await loadDetail(rec.id); // the recording is gone (or hidden) meanwhile
      return;
    }
    if (!(await handle(err))) {
      (err instanceof ApiError && err.code === 'invalid_expiry' ? shareUntil : shareUsername).focus();
    }
  } finally {
    sharing = false;
    setBusy(shareForm, false);
  }
});

// ---- Deleting ----

function hideDelete() {
  deletePanel.hidden = true;
  deleteButton.hidden = false;
  deleteYes.disabled = false;
  deleteNo.disabled = false;
}

deleteButton.addEventListener('click', () => {
  const rec = current;
  if (rec === null) return;
  clearErrors();
  const when = rec.startedAt !== null ? ` from ${formatTime(rec.startedAt)}` : '';
  deleteText.textContent = `Delete the recording of “${roomName(rec)}”${when} for good? ` +
    'All its tracks are removed, also for the people it is shared with.';
  deleteButton.hidden = true;
  deletePanel.hidden = false;
  deleteNo.focus();
});

deleteNo.addEventListener('click', () => {
  hideDelete();
  deleteButton.focus();
});

deleteYes.addEventListener('click', async () => {
  const rec = current;
  if (rec === null) return;
  clearErrors();
  deleteYes.disabled = true;
  deleteNo.disabled = true;
  try {
    await apiDelete(`/api/v1/recordings/${seg(rec.id)}`);
  } catch (err) {
    hideDelete();
    if (err instanceof ApiError && err.status === 404) {
      await refresh(); // deleted meanwhile, or no longer ours to see
      return;
    }
    await handle(err);
    deleteButton.focus();
    return;
  }
  recordings = recordings.filter((r) => r.id !== rec.id);
  closeDetail();
  window.history.replaceState(null, '', '/recordings');
  document.title = 'Recordings · Parley';
  drawList();
  const when = rec.startedAt !== null ? ` from ${formatTime(rec.startedAt)}` : '';
  statusEl.textContent = `Deleted the recording of “${roomName(rec)}”${when}.`;
  focusOn(listTitle);
});

// ---- Start ----

/** Loads the list again, and the chosen recording. */
async function refresh() {
  clearErrors();
  if (!(await loadList())) return;
  const id = idFromAddress();
  if (id !== '') await select(id);
  else closeDetail();
}

refreshButton.addEventListener('click', async () => {
  refreshButton.disabled = true;
  try {
    await refresh();
    statusEl.textContent = `Loaded ${recordings.length} ${recordings.length === 1 ? 'recording' : 'recordings'}.`;
  } finally {
    refreshButton.disabled = false;
  }
});

window.addEventListener('popstate', () => {
  const id = idFromAddress();
  if (id === '') {
    closeDetail();
    document.title = 'Recordings · Parley';
  } else if (id !== selectedId) {
    void select(id);
  }
});

void loadMe().then(async (ok) => {
  if (!ok) return;
  if (!(await loadList())) return;
  statusEl.textContent = '';
  const id = idFromAddress();
  if (id !== '') await select(id);
});
