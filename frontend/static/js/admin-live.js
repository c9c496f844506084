// admin-live.js: the Live part of the console: the meetings in progress
// that the caller may moderate (all of them for an administrator), with
// each participant's connection and tracks, refreshed every few seconds
// while the tab is open and the page visible. A moderator can mute a
// participant's microphone or camera, remove them from the meeting, end
// the meeting (after a second click), and, with room.record, start and
// stop its recording. The server checks every right again.
//
// A refresh updates what is drawn in place, keyed by room and participant,
// so that a button keeps the keyboard focus and an open question (End
// meeting?) stays open while the numbers change around it.

import { ApiError, apiGet, apiPost, seg } from './api.js';
import {
  UNREADABLE, ago, clearErrors, confirmButton, errorEl, handle, num, str, strings, time,
} from './admin-common.js';
import { formatTime } from './rooms.js';
import { byId, el, showError } from './ui.js';

/** How often the tab refreshes while it is open, in ms. */
const REFRESH_MS = 2500;

/**
 * @typedef {Object} LiveTrack
 * @property {string} id
 * @property {string} kind "audio" or "video"
 * @property {string} source "camera", "microphone", "screen", …
 * @property {string} codec
 * @property {string} layer simulcast layer, '' when none
 * @property {number} width pixels, 0 when unknown
 * @property {number} bitrate bits per second
 * @property {number} packets
 * @property {number} packetsLost
 * @property {number} lossPercent
 */

/**
 * @typedef {Object} LiveParticipant
 * @property {string} id
 * @property {string} name
 * @property {string} role
 * @property {boolean} guest
 * @property {boolean} inLobby
 * @property {boolean} handRaised
 * @property {Date|null} connectedAt
 * @property {string} connection the peer connection's state, '' in the lobby
 * @property {string} transport "udp", "tcp" or ''
 * @property {number} bandwidth the estimate for what it receives, bits per second
 * @property {LiveTrack[]} published
 * @property {LiveTrack[]} subscribed
 */

/**
 * @typedef {Object} LiveRoom
 * @property {string} id
 * @property {string} name
 * @property {boolean} locked
 * @property {boolean} recording
 * @property {boolean} e2ee the meeting is end-to-end encrypted (it cannot be recorded)
 * @property {string} node the server node that runs the meeting (multi-node mode; '' otherwise)
 * @property {string[]} permissions the caller's: room.moderate, room.record, room.manage
 * @property {LiveParticipant[]} participants
 */

/**
 * @typedef {Object} DrawnParticipant
 * @property {HTMLLIElement} li
 * @property {(p: LiveParticipant) => void} update
 */

/**
 * @typedef {Object} DrawnRoom
 * @property {HTMLElement} section
 * @property {(r: LiveRoom) => void} update
 */

const listEl = byId('live-list');
const emptyEl = byId('live-empty');
const statusEl = byId('live-status');
const updatedEl = byId('live-updated');
const refreshButton = /** @type {HTMLButtonElement} */ (byId('live-refresh'));

/** @type {Map<string, DrawnRoom>} */
const drawn = new Map();

let active = false;
/** @type {number|undefined} */
let timer;
/** Whether the last refresh failed (its error is shown once, not every time). */
let failing = false;
/** Called when the server says the caller moderates no room any more. */
let forbidden = () => {};

// ---- Reading the answer ----

/**
 * @param {any} v
 * @returns {LiveTrack|null}
 */
function trackOf(v) {
  if (!v || typeof v !== 'object') return null;
  return {
    id: str(v.id),
    kind: str(v.kind),
    source: str(v.source),
    codec: str(v.codec),
    layer: str(v.layer),
    width: num(v.width),
    bitrate: num(v.bitrate),
    packets: num(v.packets),
    packetsLost: num(v.packets_lost),
    lossPercent: num(v.loss_percent),
  };
}

/** @param {unknown} v */
function tracksOf(v) {
  /** @type {LiveTrack[]} */
  const out = [];
  for (const t of Array.isArray(v) ? v : []) {
    const track = trackOf(t);
    if (track) out.push(track);
  }
  return out;
}

/**
 * @param {any} v
 * @returns {LiveParticipant|null}
 */
function participantOf(v) {
  if (!v || typeof v !== 'object' || typeof v.id !== 'string' || v.id === '') return null;
  return {
    id: v.id,
    name: str(v.name) || 'Someone',
    role: str(v.role),
    guest: v.guest === true,
    inLobby: v.in_lobby === true,
    handRaised: v.hand_raised === true,
    connectedAt: time(v.connected_at),
    connection: str(v.connection),
    transport: str(v.transport),
    bandwidth: num(v.bandwidth_estimate),
    published: tracksOf(v.published),
    subscribed: tracksOf(v.subscribed),
  };
}

/**
 * @param {any} v
 * @returns {LiveRoom|null}
 */
function roomOf(v) {
  if (!v || typeof v !== 'object' || typeof v.id !== 'string' || v.id === '') return null;
  /** @type {LiveParticipant[]} */
  const participants = [];
  for (const p of Array.isArray(v.participants) ? v.participants : []) {
    const part = participantOf(p);
    if (part) participants.push(part);
  }
  return {
    id: v.id,
    name: str(v.name) || 'A room',
    locked: v.locked === true,
    recording: v.recording === true,
    e2ee: v.e2ee === true,
    node: str(v.node),
    permissions: strings(v.permissions),
    participants,
  };
}

// ---- Words and numbers ----

/** @param {number} bps bits per second, as kbit/s */
function kbps(bps) {
  return `${Math.round(bps / 1000)} kbit/s`;
}

/** @param {number} bps */
function rate(bps) {
  return bps >= 10_000_000 ? `${(bps / 1_000_000).toFixed(1)} Mbit/s` : kbps(bps);
}

/** @param {string} s */
function capital(s) {
  return s === '' ? s : s[0].toUpperCase() + s.slice(1);
}

/** @param {LiveParticipant} p */
function connectionText(p) {
  if (p.inLobby) return 'Waiting in the lobby';
  const parts = [];
  parts.push(p.connection !== '' ? `Media ${p.connection}` : 'No media connection yet');
  if (p.transport !== '') parts.push(`over ${p.transport.toUpperCase()}`);
  if (p.bandwidth > 0) parts.push(`· estimate ${rate(p.bandwidth)}`);
  return parts.join(' ');
}

/**
 * The tracks of one direction as a table.
 * @param {LiveTrack[]} tracks
 * @param {string} caption
 */
function tracksTable(tracks, caption) {
  const head = el('tr', {}, ...['Kind', 'Source', 'Codec', 'Layer', 'Width', 'Bitrate', 'Loss']
    .map((h, i) => el('th', { className: i >= 4 ? 'num' : '', text: h, attrs: { scope: 'col' } })));
  const rows = tracks.map((t) => el('tr', {
    attrs: { 'data-track-id': t.id, 'data-track-kind': t.kind, 'data-track-source': t.source },
  },
  el('td', { text: capital(t.kind) || '—' }),
  el('td', { text: t.source || '—' }),
  el('td', { className: 'mono', text: t.codec.replace(/^(audio|video)\//i, '') || '—' }),
  el('td', { text: t.layer || '—' }),
  el('td', { className: 'num', text: t.width > 0 ? `${t.width} px` : '—' }),
  el('td', { className: 'num', text: kbps(t.bitrate) }),
  el('td', {
    className: t.lossPercent >= 5 ? 'num bad-text' : 'num',
    text: `${t.lossPercent.toFixed(t.lossPercent < 10 ? 1 : 0)} %`,
    attrs: { title: `${t.packetsLost} of ${t.packets} packets lost` },
  })));
  return el('table', { className: 'table tracks-table small' },
    el('caption', { className: 'visually-hidden', text: caption }),
    el('thead', {}, head),
    el('tbody', {}, ...rows));
}

// ---- Actions ----

/**
 * Runs a moderation request; a meeting that is over meanwhile is no error.
 * @param {string} path
 * @param {object} body
 * @param {string} done what to announce
 * @returns {Promise<boolean>} whether it was done
 */
async function moderate(path, body, done) {
  clearErrors();
  statusEl.textContent = '';
  try {
    await apiPost(path, body);
  } catch (err) {
    if (err instanceof ApiError && (err.code === 'no_meeting' || err.status === 404)) {
      statusEl.textContent = 'That person or meeting is gone already.';
      await refresh();
      return false;
    }
    if (err instanceof ApiError && err.code === 'forbidden') {
      showError(errorEl, err);
      await refresh();
      return false;
    }
    await handle(err);
    return false;
  }
  statusEl.textContent = done;
  await refresh();
  return true;
}

// ---- Drawing ----

/**
 * Draws one participant; update() redraws its facts and tracks in place.
 * @param {LiveRoom} room
 * @param {LiveParticipant} first
 * @returns {DrawnParticipant}
 */
function drawParticipant(room, first) {
  let p = first;
  const li = el('li', { className: 'live-participant', attrs: { 'data-participant-id': p.id } });
  const head = el('div', { className: 'item-head' });
  const facts = el('p', { className: 'muted small item-facts' });
  const sends = el('div', { className: 'live-tracks' });
  const receivesSummary = el('summary', { className: 'small' });
  const receivesBody = el('div');
  const receives = el('details', { className: 'live-receives' }, receivesSummary, receivesBody);

  const roomPath = `/api/v1/rooms/${seg(room.id)}/participants/${seg(p.id)}`;
  /**
   * @param {string} action
   * @param {string} text
   * @param {(p: LiveParticipant) => string} label
   * @param {() => Promise<boolean>} run
   */
  const button = (action, text, label, run) => {
    const b = el('button', { className: 'btn link', text, attrs: { type: 'button', 'data-action': action } });
    b.setAttribute('aria-label', label(p));
    b.addEventListener('click', async () => {
      b.disabled = true;
      try {
        await run();
      } finally {
        b.disabled = false;
      }
    });
    return b;
  };
  const muteAudio = button('mute-audio', 'Mute microphone', (x) => `Mute the microphone of ${x.name}`,
    () => moderate(`${roomPath}/mute`, { kind: 'audio' }, `Muted the microphone of ${p.name}.`));
  const muteVideo = button('mute-video', 'Turn camera off', (x) => `Turn off the camera of ${x.name}`,
    () => moderate(`${roomPath}/mute`, { kind: 'video' }, `Turned off the camera of ${p.name}.`));
  const kick = button('kick', 'Remove from meeting', (x) => `Remove ${x.name} from the meeting`,
    () => moderate(`${roomPath}/kick`, {}, `Removed ${p.name} from the meeting of “${room.name}”.`));
  kick.classList.add('danger-text');
  const actions = el('div', { className: 'row-actions' }, muteAudio, muteVideo, kick);
  li.append(head, facts, sends, receives, actions);

  /** @param {LiveParticipant} next */
  const update = (next) => {
    p = next;
    li.dataset.inLobby = String(p.inLobby);
    head.replaceChildren(el('span', { className: 'item-name', text: p.name }));
    if (p.role !== '') head.append(el('span', { className: 'badge', text: capital(p.role) }));
    if (p.guest) head.append(el('span', { className: 'badge off', text: 'Guest' }));
    if (p.inLobby) head.append(el('span', { className: 'badge warn', text: 'In the lobby' }));
    if (p.handRaised) head.append(el('span', { className: 'badge hand', text: 'Hand raised' }));

    facts.replaceChildren(connectionText(p));
    li.dataset.connection = p.connection;
    li.dataset.transport = p.transport;
    if (p.connectedAt !== null) {
      facts.append(' · joined ', el('time', {
        text: ago(p.connectedAt),
        attrs: { datetime: p.connectedAt.toISOString(), title: formatTime(p.connectedAt) },
      }));
    }

    sends.replaceChildren();
    if (p.published.length > 0) {
      sends.append(el('p', { className: 'small tracks-title', text: `Sends ${p.published.length} ${p.published.length === 1 ? 'track' : 'tracks'}` }),
        el('div', { className: 'table-wrap' }, tracksTable(p.published, `Tracks ${p.name} sends`)));
    } else if (!p.inLobby) {
      sends.append(el('p', { className: 'muted small', text: 'Sends nothing.' }));
    }
    receives.hidden = p.subscribed.length === 0;
    receivesSummary.textContent = `Receives ${p.subscribed.length} ${p.subscribed.length === 1 ? 'track' : 'tracks'}`;
    receivesBody.replaceChildren(el('div', { className: 'table-wrap' }, tracksTable(p.subscribed, `Tracks ${p.name} receives`)));

    muteAudio.hidden = p.inLobby;
    muteVideo.hidden = p.inLobby;
    muteAudio.setAttribute('aria-label', `Mute the microphone of ${p.name}`);
    muteVideo.setAttribute('aria-label', `Turn off the camera of ${p.name}`);
    kick.setAttribute('aria-label', `Remove ${p.name} from the meeting`);
  };
  update(p);
  return { li, update };
}

/**
 * Draws one meeting; update() redraws it in place.
 * @param {LiveRoom} first
 * @returns {DrawnRoom}
 */
function drawRoom(first) {
  let room = first;
  const titleId = `live-room-${room.id}`;
  const title = el('h3', { id: titleId, className: 'live-room-title' });
  const badges = el('span', { className: 'live-badges' });
  const count = el('span', { className: 'muted small' });
  const head = el('div', { className: 'live-room-head' }, title, badges, count);

  const record = el('button', { className: 'btn secondary small-btn', attrs: { type: 'button', 'data-action': 'record' } });
  record.addEventListener('click', async () => {
    const start = !room.recording;
    clearErrors();
    statusEl.textContent = '';
    record.disabled = true;
    try {
      /** @type {any} */
      const res = await apiPost(`/api/v1/rooms/${seg(room.id)}/recording`, { action: start ? 'start' : 'stop' });
      room.recording = res.recording === true;
      statusEl.textContent = room.recording
        ? `Recording the meeting of “${room.name}”. Everyone in it sees that it is recorded.`
        : `Stopped recording the meeting of “${room.name}”.`;
    } catch (err) {
      if (!(err instanceof ApiError && err.code === 'recording_state')) await handle(err);
    } finally {
      record.disabled = false;
    }
    await refresh();
  });

  const end = confirmButton({
    action: 'end',
    label: 'End meeting…',
    ariaLabel: `End the meeting of ${room.name}`,
    className: 'btn secondary small-btn danger-outline',
    question: () => `End the meeting of “${room.name}” for everyone in it (${room.participants.length})?`,
    confirm: 'End it',
    cancel: 'Keep it going',
    act: () => moderate(`/api/v1/rooms/${seg(room.id)}/end`, {}, `Ended the meeting of “${room.name}”.`),
  });
  const open = el('a', { className: 'small', text: 'Open the meeting', attrs: { href: `/rooms/${seg(room.id)}` } });
  const actions = el('div', { className: 'row-actions' }, record, end, open);
  const people = el('ul', { className: 'live-participants', attrs: { 'aria-labelledby': titleId } });
  const section = el('section', { className: 'live-room', attrs: { 'data-room-id': room.id, 'aria-labelledby': titleId } },
    head, actions, people);

  /** @type {Map<string, DrawnParticipant>} */
  const parts = new Map();

  /** @param {LiveRoom} next */
  const update = (next) => {
    room = next;
    title.textContent = room.name;
    badges.replaceChildren();
    if (room.recording) badges.append(el('span', { className: 'badge status recording', text: 'Recording' }));
    if (room.locked) badges.append(el('span', { className: 'badge warn', text: 'Locked' }));
    if (room.e2ee) badges.append(el('span', { className: 'badge e2ee', text: 'End-to-end encrypted' }));
    if (room.node !== '') badges.append(el('span', { className: 'badge', text: `Node ${room.node}` }));
    section.dataset.e2ee = String(room.e2ee);
    const inMeeting = room.participants.filter((p) => !p.inLobby).length;
    const inLobby = room.participants.length - inMeeting;
    count.textContent = `${inMeeting} in the meeting` + (inLobby > 0 ? `, ${inLobby} in the lobby` : '');
    section.dataset.recording = String(room.recording);
    section.dataset.count = String(room.participants.length);

    record.hidden = !room.permissions.includes('room.record') || room.e2ee; // never recorded
    record.textContent = room.recording ? 'Stop recording' : 'Start recording';
    record.setAttribute('aria-pressed', String(room.recording));
    record.setAttribute('aria-label', `${room.recording ? 'Stop' : 'Start'} recording the meeting of ${room.name}`);

    const seen = new Set();
    for (const p of room.participants) {
      seen.add(p.id);
      const d = parts.get(p.id);
      if (d) d.update(p);
      else parts.set(p.id, drawParticipant(room, p));
    }
    for (const [id, d] of parts) {
      if (!seen.has(id)) {
        d.li.remove();
        parts.delete(id);
      }
    }
    // In the server's order, moving only what moved (a focused button stays focused).
    let prev = /** @type {Element|null} */ (null);
    for (const p of room.participants) {
      const li = /** @type {DrawnParticipant} */ (parts.get(p.id)).li;
      const want = prev === null ? people.firstElementChild : prev.nextElementSibling;
      if (want !== li) {
        if (prev === null) people.prepend(li);
        else prev.after(li);
      }
      prev = li;
    }
  };
  update(room);
  return { section, update };
}

/** @param {LiveRoom[]} rooms */
function draw(rooms) {
  const seen = new Set();
  for (const r of rooms) {
    seen.add(r.id);
    const d = drawn.get(r.id);
    if (d) d.update(r);
    else drawn.set(r.id, drawRoom(r));
  }
  for (const [id, d] of drawn) {
    if (!seen.has(id)) {
      d.section.remove();
      drawn.delete(id);
    }
  }
  let prev = /** @type {Element|null} */ (null);
  for (const r of rooms) {
    const section = /** @type {DrawnRoom} */ (drawn.get(r.id)).section;
    const want = prev === null ? listEl.firstElementChild : prev.nextElementSibling;
    if (want !== section) {
      if (prev === null) listEl.prepend(section);
      else prev.after(section);
    }
    prev = section;
  }
  emptyEl.hidden = rooms.length > 0;
}

// ---- Loading and the refresh loop ----

/**
 * Fetches the meetings in progress and draws them.
 * @returns {Promise<boolean>}
 */
async function load() {
  /** @type {any} */
  let res;
  try {
    res = await apiGet('/api/v1/admin/live');
  } catch (err) {
    if (err instanceof ApiError && err.status === 403) {
      stop();
      forbidden();
      return false;
    }
    if (!failing) await handle(err);
    failing = true;
    return false;
  }
  if (!res || !Array.isArray(res.rooms)) {
    if (!failing) showError(errorEl, UNREADABLE);
    failing = true;
    return false;
  }
  failing = false;
  /** @type {LiveRoom[]} */
  const rooms = [];
  for (const v of res.rooms) {
    const r = roomOf(v);
    if (r) rooms.push(r);
  }
  rooms.sort((a, b) => a.name.localeCompare(b.name) || a.id.localeCompare(b.id));
  draw(rooms);
  const now = new Date();
  const missing = strings(res.unreachable_nodes);
  updatedEl.textContent = `Last updated ${now.toLocaleTimeString()}.` +
    (missing.length > 0 ? ` Not shown: the meetings of ${missing.join(', ')}, which did not answer.` : '');
  listEl.dataset.updated = String(now.getTime());
  return true;
}

/** @type {Promise<boolean>|null} the refresh under way */
let inflight = null;
/** Whether another refresh was asked for while one ran. */
let rerun = false;

/**
 * Loads the meetings; asked again while a load runs, it loads once more
 * after it, so that what an action changed is drawn.
 * @returns {Promise<boolean>}
 */
export function refresh() {
  if (inflight !== null) {
    rerun = true;
    return inflight;
  }
  inflight = (async () => {
    let ok = false;
    do {
      rerun = false;
      ok = await load();
    } while (rerun && active);
    return ok;
  })().finally(() => {
    inflight = null;
  });
  return inflight;
}

function schedule() {
  window.clearTimeout(timer);
  timer = undefined;
  if (!active || document.hidden) return;
  timer = window.setTimeout(async () => {
    timer = undefined;
    await refresh();
    schedule();
  }, REFRESH_MS);
}

function stop() {
  active = false;
  window.clearTimeout(timer);
  timer = undefined;
}

document.addEventListener('visibilitychange', () => {
  if (!active) return;
  if (document.hidden) {
    window.clearTimeout(timer);
    timer = undefined;
  } else {
    void refresh().then(schedule);
  }
});

refreshButton.addEventListener('click', async () => {
  refreshButton.disabled = true;
  clearErrors();
  failing = false;
  try {
    if (await refresh()) {
      const n = drawn.size;
      statusEl.textContent = n === 0 ? 'Nobody is meeting right now.' : `${n} ${n === 1 ? 'meeting' : 'meetings'} in progress.`;
    }
  } finally {
    refreshButton.disabled = false;
  }
  schedule();
});

/**
 * @param {() => void} onForbidden called when the caller moderates no room
 */
export function initLive(onForbidden) {
  forbidden = onForbidden;
}

/** The Live tab is shown: load now and keep refreshing. */
export function showLive() {
  active = true;
  void refresh().then(schedule);
}

/** The Live tab is hidden: stop refreshing. */
export function hideLive() {
  stop();
}
