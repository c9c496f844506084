// meeting.js: the meeting page, /rooms/{id}. First a pre-join screen
// (camera and microphone, a preview, the name others see); then the
// meeting over the room's signaling socket (signal.js) and one
// RTCPeerConnection to the media server (call.js), drawn by
// meeting-view.js. What a person may do in the meeting (publish, share the
// screen, chat, moderate) is what the server's `welcome` and `permissions`
// messages say; the server checks every action again.

import { ApiError, apiGet, seg, setCsrfToken } from './api.js';
import { Call } from './call.js';
import { E2EE, e2eeSupport } from './e2ee.js';
import {
  Chat, Grid, ParticipantList, participantId, person,
} from './meeting-view.js';
import { loginHere, roomIdFromPath, roomView } from './rooms.js';
import { Signal, signalURL } from './signal.js';
import {
  byId, clearError, el, focusOn, formById, inputById, showError,
} from './ui.js';

/** @import { Person } from './meeting-view.js' */
/** @import { Source } from './call.js' */

const errorEl = byId('meeting-error');
const loading = byId('room-loading');
const noRoom = byId('no-room');

const prejoin = byId('prejoin');
const prejoinTitle = byId('prejoin-title');
const recordingNotice = byId('recording-notice');
const e2eeNotice = byId('e2ee-notice');
const e2eeUnsupported = byId('e2ee-unsupported');
const prejoinMedia = byId('prejoin-media');
const preview = /** @type {HTMLVideoElement} */ (byId('preview'));
const previewStatus = byId('preview-status');
const prejoinViewer = byId('prejoin-viewer');
const prejoinForm = formById('prejoin-form');
const deviceFields = byId('device-fields');
const cameraSelect = /** @type {HTMLSelectElement} */ (byId('camera-select'));
const micSelect = /** @type {HTMLSelectElement} */ (byId('mic-select'));
const nameInput = inputById('prejoin-name');
const joinButton = /** @type {HTMLButtonElement} */ (byId('join-button'));

const screens = {
  connecting: byId('connecting-screen'),
  lobby: byId('lobby-screen'),
  denied: byId('denied-screen'),
  kicked: byId('kicked-screen'),
  ended: byId('ended-screen'),
  left: byId('left-screen'),
  lost: byId('lost-screen'),
  meeting: byId('meeting'),
  prejoin,
};
const lobbyPosition = byId('lobby-position');
const lobbyLeave = byId('lobby-leave');
const lostStatus = byId('lost-status');
const reconnectButton = byId('reconnect');
const lostLeave = byId('lost-leave');
const rejoinLink = byId('rejoin-link');

const meetingTitle = byId('meeting-title');
const recordingIndicator = byId('recording-indicator');
const lockedIndicator = byId('locked-indicator');
const e2eeIndicator = byId('e2ee-indicator');
const e2eePanel = byId('e2ee-panel');
const e2eeCode = byId('e2ee-safety-code');
const meetingStatus = byId('meeting-status');
const toggleMic = /** @type {HTMLButtonElement} */ (byId('toggle-mic'));
const toggleCamera = /** @type {HTMLButtonElement} */ (byId('toggle-camera'));
const toggleScreen = /** @type {HTMLButtonElement} */ (byId('toggle-screen'));
const raiseHand = /** @type {HTMLButtonElement} */ (byId('raise-hand'));
const leaveButton = byId('leave');
const moderation = byId('moderation');
const lockRoom = /** @type {HTMLButtonElement} */ (byId('lock-room'));
const toggleRecording = /** @type {HTMLButtonElement} */ (byId('toggle-recording'));
const endMeeting = byId('end-meeting');
const endConfirm = byId('end-confirm');
const endYes = byId('end-meeting-confirm');
const endNo = byId('end-meeting-cancel');
const chatForm = formById('chat-form');
const chatInput = inputById('chat-input');
const chatDisabled = byId('chat-disabled');

const grid = new Grid(byId('grid'));
const list = new ParticipantList(byId('participants'), { onAction: moderate });
const chat = new Chat(byId('chat-messages'));

const roomId = roomIdFromPath('/rooms/');

/** How long the pre-join waits for `welcome` before it counts as lost. */
const JOIN_TIMEOUT_MS = 15000;
/** Reconnect delays after the socket drops, in ms; the last one repeats. */
const RECONNECT_DELAYS = [500, 1000, 2000, 4000, 8000];
/** How often the active speaker is worked out. */
const SPEAKER_EVERY_MS = 500;
/** Below this audio level (0..1) nobody is speaking. */
const SPEAKING_LEVEL = 0.03;
/**
 * How long a sender's frames may arrive before its key (someone who just
 * joined, a new key on its way) before the page says it cannot decrypt them.
 */
const KEY_WAIT_MS = 3000;
/**
 * How long the record button waits for the server's answer before it can
 * be pressed again (the server gives the recorder 15 s to start or stop).
 */
const RECORD_TIMEOUT_MS = 20000;

/**
 * @typedef {'prejoin'|'connecting'|'lobby'|'meeting'|'lost'|'denied'|'kicked'|'ended'|'left'} Phase
 */

/**
 * @typedef {Object} Published a track the server announced
 * @property {string} participant
 * @property {string} kind "audio" or "video"
 * @property {string} source "camera", "microphone" or "screen"
 */

/**
 * @typedef {Object} Remote a track this browser receives
 * @property {MediaStreamTrack} track the receiving track (its id is this browser's)
 * @property {string} mid its transceiver's mid
 * @property {string} msid the publisher's track id, from the m-section's a=msid
 * @property {string} streamId the publisher's stream id, from a=msid
 * @property {RTCRtpReceiver} receiver
 * @property {string} trackId the published track it shows ('' until shown)
 * @property {string} participant whose it is ('' until shown)
 */

const state = {
  /** @type {Phase} */
  phase: 'prejoin',
  roomName: '',
  selfId: '',
  role: '',
  /** @type {Set<string>} */
  permissions: new Set(),
  /** The permissions of the room view, before joining. @type {Set<string>} */
  restPermissions: new Set(),
  /** @type {Map<string, Person>} */
  people: new Map(),
  /** @type {Map<string, Published>} by the publisher's track id */
  published: new Map(),
  /** @type {Map<string, Remote>} by transceiver mid */
  remote: new Map(),
  locked: false,
  recording: false,
  /**
   * The recording state asked for with `record` and not yet confirmed by
   * `room_state` (or refused with `error`); null when nothing is pending.
   * @type {boolean|null}
   */
  recordWanted: null,
  /** @type {ReturnType<typeof setTimeout>|null} */
  recordTimer: null,
  handRaised: false,
  /** @type {MediaStream|null} camera and microphone */
  local: null,
  /** @type {MediaStream|null} */
  screen: null,
  /** @type {Signal|null} */
  signal: null,
  /** @type {Call|null} */
  call: null,
  displayName: '',
  reconnectAttempt: 0,
  /** @type {ReturnType<typeof setTimeout>|null} */
  reconnectTimer: null,
  /** @type {ReturnType<typeof setTimeout>|null} */
  joinTimer: null,
  /** @type {ReturnType<typeof setInterval>|null} */
  speakerTimer: null,
  /** @type {Map<string, number>} last max_width asked for, by track id */
  layers: new Map(),
  /** The room is end-to-end encrypted (the room view, before joining). */
  roomE2EE: false,
  /** @type {E2EE|null} the end-to-end encryption of this connection */
  e2ee: null,
  /** The meeting is end-to-end encrypted (the welcome). */
  encrypted: false,
  /** @type {Map<string, {state: string, since: number}>} decryption of each sender's frames */
  decrypt: new Map(),
};

/** @param {string} action */
function can(action) {
  return state.permissions.has(action);
}

// ---- Screens ----

/** @param {Phase} phase */
function show(phase) {
  state.phase = phase;
  loading.hidden = true;
  noRoom.hidden = true;
  for (const [name, section] of Object.entries(screens)) {
    section.hidden = name !== phase;
  }
  const heading = screens[phase].querySelector('h1');
  if (phase !== 'meeting' && phase !== 'prejoin' && heading) focusOn(/** @type {HTMLElement} */ (heading));
}

function showNoRoom() {
  loading.hidden = true;
  for (const section of Object.values(screens)) section.hidden = true;
  noRoom.hidden = false;
  document.title = 'No such room · Parley';
  focusOn(byId('no-room-title'));
}

/**
 * An error for people, with the server's code kept in data-code.
 * @param {string} message
 * @param {string} [code]
 */
function showMeetingError(message, code = '') {
  showError(errorEl, message);
  if (code !== '') errorEl.dataset.code = code;
  else delete errorEl.dataset.code;
}

function clearMeetingError() {
  clearError(errorEl);
  delete errorEl.dataset.code;
}

/** @param {string} text */
function status(text) {
  meetingStatus.textContent = text;
}

// ---- Before joining ----

/** Loads the room, and the person's name for the pre-join form. */
async function start() {
  if (roomId === '') {
    showNoRoom();
    return;
  }
  /** @type {any} */
  let res;
  try {
    res = await apiGet(`/api/v1/rooms/${seg(roomId)}`);
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) {
      window.location.replace(loginHere());
      return;
    }
    if (err instanceof ApiError && err.status === 404) {
      showNoRoom();
      return;
    }
    loading.hidden = true;
    showError(errorEl, err);
    return;
  }
  const room = roomView(res && res.room);
  if (room === null) {
    loading.hidden = true;
    showError(errorEl, 'Parley sent an answer this page could not read. Reload the page and try again.');
    return;
  }
  state.roomName = room.name;
  state.restPermissions = new Set(room.permissions);
  document.title = `${room.name} · Parley`;
  prejoinTitle.textContent = room.name;
  meetingTitle.textContent = room.name;
  recordingNotice.hidden = !(res.room.recording === true);
  state.roomE2EE = room.e2ee;
  e2eeNotice.hidden = !room.e2ee;
  if (room.e2ee && e2eeSupport().mode === '') {
    // Fail closed: no way in without encrypting.
    e2eeUnsupported.textContent = `You cannot join this meeting from this browser: it is end-to-end encrypted, and ${e2eeSupport().why}. ` +
      'Use a current version of Chrome, Edge, Firefox or Safari.';
    e2eeUnsupported.hidden = false;
    joinButton.disabled = true;
  }
  rejoinLink.setAttribute('href', `/rooms/${seg(roomId)}`);

  const guestName = res.guest && typeof res.guest.display_name === 'string' ? res.guest.display_name : '';
  if (guestName !== '') {
    nameInput.value = guestName;
  } else {
    try {
      /** @type {any} */
      const me = await apiGet('/api/v1/me');
      setCsrfToken(me.csrf_token);
      const n = typeof me.display_name === 'string' && me.display_name !== '' ? me.display_name : me.username;
      if (typeof n === 'string') nameInput.value = n;
    } catch (err) {
      if (err instanceof ApiError && err.status === 401) {
        window.location.replace(loginHere());
        return;
      }
      // The name stays for the person to type.
    }
  }

  show('prejoin');
  if (state.roomE2EE && e2eeSupport().mode === '') {
    prejoinMedia.hidden = true;
    deviceFields.hidden = true;
  } else if (state.restPermissions.has('room.publish')) {
    await openDevices();
  } else {
    prejoinMedia.hidden = true;
    deviceFields.hidden = true;
    prejoinViewer.hidden = false;
  }
  joinButton.focus();
}

/**
 * Opens camera and microphone for the preview (and later the meeting).
 * Either may be missing or refused: the person can still join.
 */
async function openDevices() {
  /** @type {MediaStream|null} */
  let stream = null;
  const tries = [{ video: true, audio: true }, { audio: true }, { video: true }];
  let lastError = '';
  for (const constraints of tries) {
    try {
      stream = await navigator.mediaDevices.getUserMedia(constraints);
      break;
    } catch (err) {
      lastError = err instanceof DOMException ? err.name : 'Error';
    }
  }
  if (stream === null) {
    previewStatus.textContent = lastError === 'NotAllowedError'
      ? 'This browser did not allow the camera and microphone. You can still join to watch and listen.'
      : 'No camera or microphone could be opened. You can still join to watch and listen.';
    deviceFields.hidden = true;
    return;
  }
  state.local = stream;
  preview.srcObject = stream;
  if (stream.getVideoTracks().length === 0) previewStatus.textContent = 'No camera: you join with your microphone only.';
  else if (stream.getAudioTracks().length === 0) previewStatus.textContent = 'No microphone: you join with your camera only.';
  await listDevices();
}

/** Fills the camera and microphone selects, marking the ones in use. */
async function listDevices() {
  /** @type {MediaDeviceInfo[]} */
  let devices = [];
  try {
    devices = await navigator.mediaDevices.enumerateDevices();
  } catch {
    devices = [];
  }
  const local = state.local;
  const fill = (/** @type {HTMLSelectElement} */ select, /** @type {MediaDeviceKind} */ kind, /** @type {MediaStreamTrack|undefined} */ track, /** @type {string} */ noun) => {
    const inUse = track ? track.getSettings().deviceId ?? '' : '';
    const options = devices.filter((d) => d.kind === kind).map((d, i) => {
      const o = el('option', { text: d.label || `${noun} ${i + 1}`, attrs: { value: d.deviceId } });
      if (d.deviceId === inUse) o.selected = true;
      return o;
    });
    if (options.length === 0) options.push(el('option', { text: `No ${noun.toLowerCase()}`, attrs: { value: '' } }));
    select.replaceChildren(...options);
    select.disabled = !track;
  };
  fill(cameraSelect, 'videoinput', local?.getVideoTracks()[0], 'Camera');
  fill(micSelect, 'audioinput', local?.getAudioTracks()[0], 'Microphone');
}

/**
 * Switches the preview to another device of one kind.
 * @param {'video'|'audio'} kind
 * @param {string} deviceId
 */
async function switchDevice(kind, deviceId) {
  const local = state.local;
  if (!local || deviceId === '') return;
  try {
    const fresh = await navigator.mediaDevices.getUserMedia({ [kind]: { deviceId: { exact: deviceId } } });
    for (const old of kind === 'video' ? local.getVideoTracks() : local.getAudioTracks()) {
      old.stop();
      local.removeTrack(old);
    }
    for (const t of fresh.getTracks()) local.addTrack(t);
    preview.srcObject = local;
    previewStatus.textContent = '';
  } catch (err) {
    previewStatus.textContent = `That ${kind === 'video' ? 'camera' : 'microphone'} could not be opened (${err instanceof DOMException ? err.name : 'error'}).`;
  }
}

cameraSelect.addEventListener('change', () => void switchDevice('video', cameraSelect.value));
micSelect.addEventListener('change', () => void switchDevice('audio', micSelect.value));

prejoinForm.addEventListener('submit', (ev) => {
  ev.preventDefault();
  if (state.phase !== 'prejoin') return;
  clearMeetingError();
  const name = nameInput.value.trim();
  const length = [...name].length;
  if (length < 1 || length > 64) {
    showMeetingError('Enter your name: 1 to 64 characters.');
    nameInput.focus();
    return;
  }
  state.displayName = name;
  preview.srcObject = null;
  connect();
});

// ---- The signaling connection ----

/** Opens the socket and asks to join. */
function connect() {
  if (state.reconnectTimer !== null) clearTimeout(state.reconnectTimer);
  state.reconnectTimer = null;
  if (state.signal) state.signal.close(); // never two sockets of one page
  state.signal = null;
  if (state.phase !== 'lost') show('connecting');
  /** @type {Signal} */
  const signal = new Signal(signalURL(roomId), {
    onOpen: () => {
      if (!state.roomE2EE) {
        signal.send('join', { display_name: state.displayName });
        return;
      }
      void joinEncrypted(signal);
    },
    onMessage: (msg) => {
      if (state.signal === signal) handle(msg);
    },
    onClose: (ev, opened) => {
      if (state.signal === signal) void socketLost(ev, opened);
    },
  });
  state.signal = signal;
  if (state.joinTimer !== null) clearTimeout(state.joinTimer);
  state.joinTimer = setTimeout(() => {
    state.joinTimer = null;
    if (state.signal === signal && (state.phase === 'connecting' || state.phase === 'lost')) {
      signal.close();
      void socketLost(null, false);
    }
  }, JOIN_TIMEOUT_MS);
}

/**
 * Joins an end-to-end encrypted meeting: a fresh key pair for this
 * connection, whose public key goes with join.
 * @param {Signal} signal
 */
async function joinEncrypted(signal) {
  const mode = e2eeSupport().mode;
  if (mode === '') return;
  closeE2EE();
  /** @type {E2EE} */
  let e;
  try {
    e = await E2EE.create(mode, {
      send: (type, fields) => send(type, fields),
      onState: decryptState,
      onSafetyCode: (code) => {
        e2eeCode.textContent = code;
      },
    });
  } catch (err) {
    console.warn('parley: end-to-end encryption could not start:', err instanceof Error ? err.name : 'error');
    showMeetingError('This browser could not start the end-to-end encryption this meeting needs.');
    leave();
    return;
  }
  if (state.signal !== signal) {
    e.close();
    return;
  }
  state.e2ee = e;
  signal.send('join', { display_name: state.displayName, e2ee_public_key: e.publicKey });
}

/** Ends this connection's end-to-end encryption. */
function closeE2EE() {
  if (state.e2ee) state.e2ee.close();
  state.e2ee = null;
  state.decrypt.clear();
  e2eeCode.textContent = '';
}

/**
 * How decrypting a sender's frames goes (from the Worker).
 * @param {string} participant
 * @param {'ok'|'nokey'|'failed'} s
 */
function decryptState(participant, s) {
  if (participant === state.selfId) {
    showMeetingError('End-to-end encryption stopped working on this page: leave the meeting and join again.');
    return;
  }
  state.decrypt.set(participant, { state: s, since: Date.now() });
  drawDecrypt();
}

/** Marks the people whose frames this page cannot decrypt. */
function drawDecrypt() {
  const now = Date.now();
  for (const p of state.people.values()) {
    if (p.self) continue;
    const d = state.decrypt.get(p.id);
    const cannot = d !== undefined && (d.state === 'failed' || (d.state === 'nokey' && now - d.since >= KEY_WAIT_MS));
    if ((p.cannotDecrypt === true) !== cannot) {
      p.cannotDecrypt = cannot;
      drawPerson(p);
    }
  }
}

/**
 * @param {string} type
 * @param {Record<string, unknown>} [fields]
 */
function send(type, fields = {}) {
  return state.signal !== null && state.signal.send(type, fields);
}

/** Whether the phase is one the page does not come back from by itself. */
function finished() {
  return state.phase === 'denied' || state.phase === 'kicked' || state.phase === 'ended' || state.phase === 'left';
}

/**
 * The socket closed without us closing it: try again, unless the meeting
 * is over for this person or the room is gone.
 * @param {CloseEvent|null} ev
 * @param {boolean} opened
 */
async function socketLost(ev, opened) {
  tearDown(false);
  if (finished()) return;
  if (opened) state.reconnectAttempt = 0;
  show('lost');
  const why = ev && ev.reason ? ` (${ev.reason})` : '';
  // Is the room still there for us? A 401 or 404 ends the reconnecting.
  try {
    await apiGet(`/api/v1/rooms/${seg(roomId)}`);
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) {
      lostStatus.textContent = 'Your sign-in has ended.';
      window.location.replace(loginHere());
      return;
    }
    if (err instanceof ApiError && err.status === 404) {
      showNoRoom();
      return;
    }
  }
  // Left, or already reconnecting (the button) while the room was checked.
  if (state.phase !== 'lost' || state.signal !== null) return;
  const delay = RECONNECT_DELAYS[Math.min(state.reconnectAttempt, RECONNECT_DELAYS.length - 1)];
  state.reconnectAttempt++;
  lostStatus.textContent = `Parley lost the connection to the meeting${why} and tries again in ${Math.ceil(delay / 1000)} s (attempt ${state.reconnectAttempt}).`;
  if (state.reconnectTimer !== null) clearTimeout(state.reconnectTimer);
  state.reconnectTimer = setTimeout(() => {
    state.reconnectTimer = null;
    if (state.phase === 'lost') connect();
  }, delay);
}

reconnectButton.addEventListener('click', () => {
  if (state.phase !== 'lost') return;
  lostStatus.textContent = 'Reconnecting…';
  if (state.signal) state.signal.close();
  state.signal = null;
  connect();
});

/**
 * Ends the socket and the media connection, and forgets everyone else.
 * @param {boolean} stopMedia also stop camera, microphone and screen
 */
function tearDown(stopMedia) {
  if (state.joinTimer !== null) clearTimeout(state.joinTimer);
  state.joinTimer = null;
  recordSettled();
  if (state.speakerTimer !== null) clearInterval(state.speakerTimer);
  state.speakerTimer = null;
  if (state.signal) state.signal.close();
  state.signal = null;
  if (state.call) state.call.close();
  state.call = null;
  closeE2EE();
  state.people.clear();
  state.published.clear();
  state.remote.clear();
  state.layers.clear();
  grid.clear();
  list.clear();
  if (stopMedia) {
    stopScreen(false);
    if (state.local) for (const t of state.local.getTracks()) t.stop();
    state.local = null;
    preview.srcObject = null;
  }
}

/**
 * Leaves for good (the leave button, the lobby, the lost screen).
 * @param {Phase} phase where to end up
 */
function leave(phase = 'left') {
  send('leave');
  if (state.reconnectTimer !== null) clearTimeout(state.reconnectTimer);
  state.reconnectTimer = null;
  state.phase = phase;
  tearDown(true);
  show(phase);
}

leaveButton.addEventListener('click', () => leave());
lobbyLeave.addEventListener('click', () => leave());
lostLeave.addEventListener('click', () => leave());
window.addEventListener('pagehide', () => {
  if (state.signal) send('leave');
});

// ---- Messages from the server ----

/** @param {Record<string, any>} msg */
function handle(msg) {
  switch (msg.type) {
    case 'welcome': welcome(msg); break;
    case 'lobby':
      if (state.joinTimer !== null) clearTimeout(state.joinTimer);
      state.joinTimer = null;
      show('lobby');
      lobbyPosition.textContent = Number.isInteger(msg.position) && msg.position > 0
        ? `You are number ${msg.position} in the queue.`
        : 'You are in the queue.';
      break;
    case 'admitted':
      show('connecting');
      break;
    case 'denied':
      state.phase = 'denied';
      tearDown(true);
      show('denied');
      break;
    case 'kicked':
      state.phase = 'kicked';
      tearDown(true);
      show('kicked');
      break;
    case 'ended':
      state.phase = 'ended';
      tearDown(true);
      show('ended');
      break;
    case 'offer':
      if (state.call && typeof msg.sdp === 'string') void state.call.handleOffer(msg.sdp);
      break;
    case 'answer':
      if (state.call && typeof msg.sdp === 'string') void state.call.handleAnswer(msg.sdp);
      break;
    case 'candidate':
      if (state.call && msg.candidate && typeof msg.candidate === 'object') void state.call.handleCandidate(msg.candidate);
      break;
    case 'ice_servers':
      // Fresh TURN credentials before the old ones expire: used by the
      // next ICE restart and by new relay allocations.
      if (state.call && Array.isArray(msg.ice_servers)) state.call.setIceServers(msg.ice_servers.filter(validIceServer));
      break;
    case 'participant_joined': joined(msg.participant); break;
    case 'e2ee_key':
      if (state.e2ee && typeof msg.from === 'string' && typeof msg.key === 'string') void state.e2ee.received(msg.from, msg.key);
      break;
    case 'participant_left': left(participantId(msg.participant)); break;
    case 'track_published': trackPublished(msg); break;
    case 'track_unpublished': trackUnpublished(String(msg.track_id ?? '')); break;
    case 'chat': chatMessage(msg); break;
    case 'muted': muted(msg); break;
    case 'permissions':
      if (Array.isArray(msg.permissions)) {
        permissionsChanged(msg.permissions.filter((/** @type {unknown} */ p) => typeof p === 'string'),
          typeof msg.role === 'string' ? msg.role : '');
      }
      break;
    case 'room_state': roomState(msg); break;
    case 'hand': hand(participantId(msg.participant), msg.raised === true); break;
    case 'error': serverError(msg); break;
    default:
      // A newer server may say more; this page ignores what it does not know.
      break;
  }
}

/** @param {Record<string, any>} msg */
function welcome(msg) {
  if (state.joinTimer !== null) clearTimeout(state.joinTimer);
  state.joinTimer = null;
  state.reconnectAttempt = 0;
  clearMeetingError();
  recordSettled();
  state.selfId = typeof msg.participant_id === 'string' ? msg.participant_id : '';
  state.role = typeof msg.role === 'string' ? msg.role : '';
  state.permissions = new Set(Array.isArray(msg.permissions) ? msg.permissions.filter((/** @type {unknown} */ p) => typeof p === 'string') : []);
  const room = msg.room && typeof msg.room === 'object' ? msg.room : {};
  if (typeof room.name === 'string' && room.name !== '') {
    state.roomName = room.name;
    meetingTitle.textContent = room.name;
    document.title = `${room.name} · Parley`;
  }
  roomState(room);

  // A person who may not publish sends nothing: their camera and microphone close.
  if (!can('room.publish') && state.local) {
    for (const t of state.local.getTracks()) t.stop();
    state.local = null;
  }
  if (!can('room.screen')) stopScreen(false);

  const encrypted = room.e2ee === true;
  state.encrypted = encrypted;
  if (!encrypted) closeE2EE(); // (the room's setting changed since the page loaded)
  if (encrypted && !state.e2ee) {
    showMeetingError('This meeting is end-to-end encrypted and this page did not start its encryption. Reload the page.');
    leave();
    return;
  }
  e2eeIndicator.hidden = !encrypted;
  e2eePanel.hidden = !encrypted;
  if (!encrypted && state.roomE2EE) status('This meeting is not end-to-end encrypted: its room’s setting was changed.');
  const iceServers = Array.isArray(msg.ice_servers) ? msg.ice_servers.filter(validIceServer) : [];
  if (state.call) state.call.close();
  const call = new Call(iceServers, {
    send: (type, fields) => send(type, fields),
    onRemoteChange: syncRemote,
    onIceState: (s) => {
      if (s === 'disconnected' || s === 'failed') status('The media connection is interrupted; Parley is reconnecting…');
      else if (s === 'connected' || s === 'completed') status('');
    },
    onFailure: (err) => {
      console.warn('parley: a step of the media connection failed:', err);
      showMeetingError('The media connection ran into a problem. If others stay frozen, leave and join again.');
    },
  }, encrypted ? state.e2ee : null);
  state.call = call;
  if (state.local) {
    for (const t of state.local.getTracks()) {
      call.addTrack(t, state.local, t.kind === 'audio' ? 'microphone' : 'camera');
    }
  }
  if (state.screen) {
    for (const t of state.screen.getVideoTracks()) call.addTrack(t, state.screen, 'screen');
  }

  show('meeting');
  grid.clear();
  list.clear();
  chat.clear(); // the server sends the chat history again after welcome
  state.people.clear();
  state.published.clear();
  const self = {
    id: state.selfId, name: state.displayName, role: state.role, handRaised: state.handRaised, inLobby: false, self: true,
  };
  if (typeof msg.name === 'string' && msg.name !== '') self.name = msg.name;
  state.people.set(self.id, self);
  for (const v of Array.isArray(msg.participants) ? msg.participants : []) {
    const p = person(v, state.selfId);
    if (p === null) continue;
    if (p.self) {
      // The server's view of us wins: the name it shows others.
      self.name = p.name;
      self.handRaised = p.handRaised;
      continue;
    }
    state.people.set(p.id, p);
    for (const t of Array.isArray(v.tracks) ? v.tracks : []) {
      if (t && typeof t === 'object') {
        publish(String(t.track_id ?? t.id ?? ''), p.id, String(t.kind ?? ''), String(t.source ?? ''));
      } else if (typeof t === 'string') {
        publish(t, p.id, '', '');
      }
    }
  }
  if (encrypted && state.e2ee) {
    /** @type {{id: string, publicKey: string}[]} */
    const others = [];
    for (const v of Array.isArray(msg.participants) ? msg.participants : []) {
      if (v && typeof v === 'object' && v.in_lobby !== true && typeof v.id === 'string' && typeof v.e2ee_public_key === 'string') {
        others.push({ id: v.id, publicKey: v.e2ee_public_key });
      }
    }
    void state.e2ee.start(state.selfId, others);
  }
  drawControls();
  for (const p of state.people.values()) drawPerson(p);
  drawLocal();
  void call.start();
  if (state.speakerTimer !== null) clearInterval(state.speakerTimer);
  state.speakerTimer = setInterval(() => void activeSpeaker(), SPEAKER_EVERY_MS);
}

/** @param {unknown} s */
function validIceServer(s) {
  if (!s || typeof s !== 'object') return false;
  const urls = /** @type {any} */ (s).urls;
  return typeof urls === 'string' || (Array.isArray(urls) && urls.every((u) => typeof u === 'string'));
}

/** @param {Person} p */
function drawPerson(p) {
  if (!p.inLobby) grid.tile(p);
  else grid.remove(p.id);
  list.render(p);
}

/** @param {unknown} v */
function joined(v) {
  const p = person(v, state.selfId);
  if (p === null || p.self) return;
  const before = state.people.get(p.id);
  if (before) p.handRaised = p.handRaised || before.handRaised;
  state.people.set(p.id, p);
  drawPerson(p);
  if (state.e2ee && !p.inLobby) {
    const key = v && typeof v === 'object' ? /** @type {any} */ (v).e2ee_public_key : undefined;
    void state.e2ee.joined(p.id, typeof key === 'string' ? key : '');
  }
  if (!before) chat.note(p.inLobby ? `${p.name} is waiting in the lobby.` : `${p.name} joined.`);
  else if (before.inLobby && !p.inLobby) chat.note(`${p.name} joined.`);
  // Tracks that arrived before the person did.
  for (const r of state.remote.values()) resolveRemote(r);
}

/** @param {string} id */
function left(id) {
  if (id === '' || id === state.selfId) return;
  const p = state.people.get(id);
  state.people.delete(id);
  if (state.e2ee) void state.e2ee.left(id); // a new key for those who stay
  state.decrypt.delete(id);
  grid.remove(id);
  list.remove(id);
  for (const [trackId, pub] of state.published) if (pub.participant === id) state.published.delete(trackId);
  for (const r of state.remote.values()) {
    if (r.participant === id) {
      r.trackId = '';
      r.participant = '';
    }
  }
  if (p) chat.note(p.inLobby ? `${p.name} left the lobby.` : `${p.name} left.`);
}

// ---- Tracks ----

/**
 * Notes a track the server announced, and shows it if it has arrived.
 * @param {string} trackId
 * @param {string} participant
 * @param {string} kind
 * @param {string} source
 */
function publish(trackId, participant, kind, source) {
  if (trackId === '' || participant === '') return;
  state.published.set(trackId, { participant, kind, source });
  for (const r of state.remote.values()) {
    if (r.msid === trackId) resolveRemote(r);
  }
  routeE2EE();
}

/** @param {Record<string, any>} msg */
function trackPublished(msg) {
  const participant = participantId(msg.participant);
  if (participant === state.selfId) return;
  publish(String(msg.track_id ?? ''), participant, String(msg.kind ?? ''), String(msg.source ?? ''));
}

/** @param {string} trackId */
function trackUnpublished(trackId) {
  if (trackId === '') return;
  state.published.delete(trackId);
  grid.detachTrack(trackId);
  for (const r of state.remote.values()) {
    if (r.trackId === trackId) forget(r);
  }
  state.layers.delete(trackId);
}

/**
 * Brings what the grid shows in line with what the connection receives:
 * a transceiver the server now uses for another publisher's track moves
 * to that track, one it no longer sends on goes away.
 */
function syncRemote() {
  const call = state.call;
  if (!call) return;
  const seen = new Set();
  for (const rx of call.receiving()) {
    seen.add(rx.mid);
    let r = state.remote.get(rx.mid);
    if (r && r.track !== rx.track) {
      forget(r);
      r = undefined;
    }
    if (!r) {
      r = { track: rx.track, receiver: rx.receiver, mid: rx.mid, msid: rx.trackId, streamId: rx.streamId, trackId: '', participant: '' };
      state.remote.set(rx.mid, r);
    }
    if (r.msid !== rx.trackId) {
      forget(r);
      r.msid = rx.trackId;
    }
    r.streamId = rx.streamId;
    resolveRemote(r);
  }
  for (const [mid, r] of state.remote) {
    if (!seen.has(mid)) {
      forget(r);
      state.remote.delete(mid);
    }
  }
  routeE2EE();
}

/**
 * Tells the encryption Worker whose frames each receiver carries: the
 * publisher the m-section's a=msid names (known from track_published).
 */
function routeE2EE() {
  if (!state.e2ee) return;
  /** @type {Map<RTCRtpReceiver, string>} */
  const owners = new Map();
  for (const r of state.remote.values()) {
    const pub = state.published.get(r.msid);
    if (pub) owners.set(r.receiver, pub.participant);
  }
  state.e2ee.route(owners);
}

/**
 * Takes a received track off the grid.
 * @param {Remote} r
 */
function forget(r) {
  if (r.trackId !== '') grid.detachTrack(r.trackId);
  r.trackId = '';
  r.participant = '';
}

/**
 * Works out whose a received track is and shows it in their tile: the
 * a=msid of its m-section names the publisher's track id, which
 * `track_published` announced with its participant.
 * @param {Remote} r
 */
function resolveRemote(r) {
  if (r.trackId !== '' || r.msid === '') return;
  const pub = state.published.get(r.msid);
  if (!pub) return;
  const p = state.people.get(pub.participant);
  if (!p || p.inLobby) return;
  r.trackId = r.msid;
  r.participant = pub.participant;
  const source = pub.source !== '' ? pub.source : (r.track.kind === 'audio' ? 'microphone' : 'camera');
  const node = grid.attach(grid.tile(p), r.track, r.trackId, source, false);
  if (node instanceof HTMLVideoElement) watchLayer(node, r.trackId);
}

/**
 * Tells the server how wide a remote video is shown, so that it can send a
 * smaller layer to a small tile.
 * @param {HTMLVideoElement} video
 * @param {string} trackId
 */
function watchLayer(video, trackId) {
  if (typeof ResizeObserver !== 'function') return;
  const observer = new ResizeObserver(() => {
    if (!video.isConnected) {
      observer.disconnect();
      return;
    }
    const width = Math.round(video.clientWidth * (window.devicePixelRatio || 1));
    if (width <= 0) return;
    const before = state.layers.get(trackId) ?? 0;
    if (before > 0 && Math.abs(width - before) / before < 0.25) return;
    state.layers.set(trackId, width);
    send('layer', { track_id: trackId, max_width: width });
  });
  observer.observe(video);
}

/** Our own tile: camera preview and screen share. */
function drawLocal() {
  const self = state.people.get(state.selfId);
  if (!self) return;
  const tile = grid.tile(self);
  for (const v of tile.querySelectorAll('video')) {
    const id = /** @type {HTMLElement} */ (v).dataset.trackId ?? '';
    const alive = [...(state.local?.getVideoTracks() ?? []), ...(state.screen?.getVideoTracks() ?? [])].some((t) => t.id === id);
    if (!alive) grid.detachTrack(id);
  }
  for (const t of state.local?.getVideoTracks() ?? []) grid.attach(tile, t, t.id, 'camera', true);
  for (const t of state.screen?.getVideoTracks() ?? []) grid.attach(tile, t, t.id, 'screen', true);
}

/** Looks for the loudest person every SPEAKER_EVERY_MS. */
async function activeSpeaker() {
  const call = state.call;
  if (!call || state.phase !== 'meeting') return;
  if (state.e2ee) drawDecrypt();
  /** @type {Map<string, number>} */
  let levels;
  try {
    levels = await call.audioLevels();
  } catch {
    return;
  }
  let best = '';
  let loudest = SPEAKING_LEVEL;
  for (const [id, level] of levels) {
    let who = '';
    if (id === 'local') {
      const mic = state.local?.getAudioTracks()[0];
      if (mic && mic.enabled) who = state.selfId;
    } else {
      for (const r of state.remote.values()) if (r.track.id === id) who = r.participant;
    }
    if (who !== '' && level > loudest) {
      loudest = level;
      best = who;
    }
  }
  grid.speaking(best === '' ? null : best);
}

// ---- Controls ----

function drawControls() {
  const mic = state.local?.getAudioTracks()[0];
  const cam = state.local?.getVideoTracks()[0];
  const publish = can('room.publish');
  toggleMic.hidden = !publish;
  toggleCamera.hidden = !publish;
  toggleMic.textContent = mic && mic.enabled ? 'Mute' : (mic ? 'Unmute' : 'Start microphone');
  toggleMic.setAttribute('aria-pressed', mic && mic.enabled ? 'false' : 'true');
  toggleCamera.textContent = cam && cam.enabled ? 'Stop camera' : 'Start camera';
  toggleCamera.setAttribute('aria-pressed', cam && cam.enabled ? 'false' : 'true');
  toggleScreen.hidden = !can('room.screen') || !navigator.mediaDevices || typeof navigator.mediaDevices.getDisplayMedia !== 'function';
  toggleScreen.textContent = state.screen ? 'Stop sharing' : 'Share screen';
  toggleScreen.setAttribute('aria-pressed', state.screen ? 'true' : 'false');
  raiseHand.textContent = state.handRaised ? 'Lower hand' : 'Raise hand';
  raiseHand.setAttribute('aria-pressed', state.handRaised ? 'true' : 'false');
  const mod = can('room.moderate');
  const record = can('room.record') && !state.encrypted; // never recorded
  moderation.hidden = !mod && !record;
  lockRoom.hidden = !mod;
  endMeeting.hidden = !mod;
  if (!mod) endConfirm.hidden = true;
  lockRoom.textContent = state.locked ? 'Unlock meeting' : 'Lock meeting';
  lockRoom.setAttribute('aria-pressed', state.locked ? 'true' : 'false');
  toggleRecording.hidden = !record;
  toggleRecording.textContent = state.recording ? 'Stop recording' : 'Record';
  toggleRecording.setAttribute('aria-pressed', state.recording ? 'true' : 'false');
  toggleRecording.disabled = state.recordWanted !== null;
  toggleRecording.setAttribute('aria-busy', state.recordWanted !== null ? 'true' : 'false');
  const chatOK = can('room.chat');
  chatForm.hidden = !chatOK;
  chatDisabled.hidden = chatOK;
  if (list.moderate !== mod) {
    list.moderate = mod;
    for (const p of state.people.values()) list.render(p);
  }
}

/**
 * Turns a local device on or off. Off disables the track (it sends black
 * or silence); on a device that was never opened, opens it.
 * @param {'audio'|'video'} kind
 */
async function toggleDevice(kind) {
  if (!can('room.publish')) return;
  const track = kind === 'audio' ? state.local?.getAudioTracks()[0] : state.local?.getVideoTracks()[0];
  if (track) {
    track.enabled = !track.enabled;
    drawControls();
    return;
  }
  try {
    const chosen = (kind === 'audio' ? micSelect : cameraSelect).value;
    const fresh = await navigator.mediaDevices.getUserMedia({ [kind]: chosen !== '' ? { deviceId: { ideal: chosen } } : true });
    const t = fresh.getTracks()[0];
    if (!can('room.publish') || !state.call) {
      t.stop();
      return;
    }
    if (!state.local) state.local = new MediaStream();
    state.local.addTrack(t);
    state.call.addTrack(t, state.local, kind === 'audio' ? 'microphone' : 'camera');
    drawLocal();
  } catch (err) {
    showMeetingError(`Your ${kind === 'audio' ? 'microphone' : 'camera'} could not be opened (${err instanceof DOMException ? err.name : 'error'}).`);
  }
  drawControls();
}

toggleMic.addEventListener('click', () => void toggleDevice('audio'));
toggleCamera.addEventListener('click', () => void toggleDevice('video'));

toggleScreen.addEventListener('click', async () => {
  if (state.screen) {
    stopScreen(true);
    return;
  }
  if (!can('room.screen') || !state.call) return;
  /** @type {MediaStream} */
  let stream;
  try {
    stream = await navigator.mediaDevices.getDisplayMedia({ video: true, audio: false });
  } catch (err) {
    if (!(err instanceof DOMException && err.name === 'NotAllowedError')) {
      showMeetingError('Your screen could not be shared in this browser.');
    }
    return;
  }
  const track = stream.getVideoTracks()[0];
  if (!track || !state.call || !can('room.screen')) {
    for (const t of stream.getTracks()) t.stop();
    return;
  }
  state.screen = stream;
  track.addEventListener('ended', () => stopScreen(true));
  state.call.addTrack(track, stream, 'screen');
  drawLocal();
  drawControls();
});

/**
 * Stops the screen share.
 * @param {boolean} redraw
 */
function stopScreen(redraw) {
  const stream = state.screen;
  if (!stream) return;
  state.screen = null;
  for (const t of stream.getTracks()) {
    if (state.call) state.call.removeTrack(t);
    t.stop();
    if (redraw) grid.detachTrack(t.id);
  }
  if (redraw) drawControls();
}

raiseHand.addEventListener('click', () => {
  send('raise_hand', { raised: !state.handRaised });
});

lockRoom.addEventListener('click', () => {
  send('lock', { locked: !state.locked });
});

toggleRecording.addEventListener('click', () => {
  if (!can('room.record') || state.recordWanted !== null) return;
  const want = !state.recording;
  clearMeetingError();
  if (!send('record', { action: want ? 'start' : 'stop' })) {
    showMeetingError('Not connected to the meeting: the recording could not be changed. Try again in a moment.');
    return;
  }
  state.recordWanted = want;
  state.recordTimer = setTimeout(() => {
    state.recordTimer = null;
    if (state.recordWanted === null) return;
    recordSettled();
    drawControls();
    showMeetingError(`Parley did not confirm that the recording ${want ? 'started' : 'stopped'}. Try again.`);
  }, RECORD_TIMEOUT_MS);
  drawControls();
});

/** Ends the wait for an answer to `record`: the button works again. */
function recordSettled() {
  if (state.recordTimer !== null) clearTimeout(state.recordTimer);
  state.recordTimer = null;
  state.recordWanted = null;
}

endMeeting.addEventListener('click', () => {
  endConfirm.hidden = false;
  endNo.focus();
});
endNo.addEventListener('click', () => {
  endConfirm.hidden = true;
  endMeeting.focus();
});
endYes.addEventListener('click', () => {
  endConfirm.hidden = true;
  send('end');
});

/**
 * A host control in the participant list.
 * @param {string} id
 * @param {'admit'|'deny'|'mute'|'kick'} action
 */
function moderate(id, action) {
  if (!can('room.moderate') || id === '') return;
  switch (action) {
    case 'admit': send('admit', { participant: id }); break;
    case 'deny': send('deny', { participant: id }); break;
    case 'mute': send('mute', { participant: id, kind: 'audio' }); break;
    case 'kick': send('kick', { participant: id }); break;
  }
}

chatForm.addEventListener('submit', (ev) => {
  ev.preventDefault();
  const text = chatInput.value.trim();
  if (text === '') return;
  if (send('chat', { text })) chatInput.value = '';
});

// ---- What the server says about the room and the people ----

/** @param {Record<string, any>} msg */
function chatMessage(msg) {
  const from = participantId(msg.from);
  const name = typeof msg.name === 'string' && msg.name !== '' ? msg.name : (state.people.get(from)?.name ?? 'Someone');
  chat.add({ from, name, text: typeof msg.text === 'string' ? msg.text : '', ts: msg.ts, self: from === state.selfId });
}

/** @param {Record<string, any>} msg */
function muted(msg) {
  const who = participantId(msg.participant);
  const kind = String(msg.kind ?? 'audio');
  const video = kind === 'video' || kind === 'camera';
  const by = state.people.get(participantId(msg.by))?.name ?? 'A moderator';
  if (who === state.selfId) {
    // The server has stopped forwarding the track: close it. Turning the
    // device on again opens a new track, which is published afresh.
    const local = state.local;
    const track = video ? local?.getVideoTracks()[0] : local?.getAudioTracks()[0];
    if (local && track) {
      if (state.call) state.call.removeTrack(track);
      track.stop();
      local.removeTrack(track);
      drawLocal();
    }
    drawControls();
    status(`${by} turned off your ${video ? 'camera' : 'microphone'}. You can turn it on again.`);
    return;
  }
  const p = state.people.get(who);
  if (p) chat.note(`${by} muted ${p.name}${video ? '’s camera' : ''}.`);
}

/**
 * @param {string[]} permissions
 * @param {string} role
 */
function permissionsChanged(permissions, role) {
  const couldPublish = can('room.publish');
  state.permissions = new Set(permissions);
  const self = state.people.get(state.selfId);
  if (role !== '' && self) {
    state.role = role;
    self.role = role;
    list.render(self);
  }
  if (couldPublish && !can('room.publish') && state.local) {
    // No longer allowed to speak or show: stop sending and close the devices.
    for (const t of state.local.getTracks()) {
      if (state.call) state.call.removeTrack(t);
      t.stop();
    }
    state.local = null;
    drawLocal();
    status('A host changed your role: you can now watch and listen.');
  }
  if (!can('room.screen')) stopScreen(true);
  drawControls();
}

/** @param {Record<string, any>} s */
function roomState(s) {
  const wasRecording = state.recording;
  if (typeof s.locked === 'boolean') state.locked = s.locked;
  if (typeof s.recording === 'boolean') state.recording = s.recording;
  // The answer to our `record` is the room_state that shows what we asked
  // for (a room_state about the lock, meanwhile, is not).
  if (state.recordWanted === state.recording) recordSettled();
  if (state.phase === 'meeting' && wasRecording !== state.recording) {
    chat.note(state.recording ? 'This meeting is now being recorded.' : 'The recording has stopped.');
  }
  recordingIndicator.hidden = !state.recording;
  lockedIndicator.hidden = !state.locked;
  if (state.phase === 'meeting') drawControls();
}

/**
 * @param {string} id
 * @param {boolean} raised
 */
function hand(id, raised) {
  if (id === state.selfId) state.handRaised = raised;
  const p = state.people.get(id);
  if (p) {
    p.handRaised = raised;
    drawPerson(p);
  }
  drawControls();
}

/** @param {Record<string, any>} msg */
function serverError(msg) {
  const code = typeof msg.code === 'string' ? msg.code : 'error';
  const message = typeof msg.message === 'string' && msg.message !== '' ? msg.message : 'Parley refused that.';
  const request = typeof msg.request === 'string' ? msg.request : '';
  if (request === 'e2ee_key' && code === 'no_such_participant') return; // they left while our key was on its way
  if (code === 'e2ee_required') {
    showMeetingError('This meeting has just become end-to-end encrypted. Reload the page to join it.', code);
    return;
  }
  showMeetingError(message, code);
  if (request === 'record') {
    recordSettled();
    drawControls();
  }
  const call = state.call;
  if (call && call.offering && (request === 'offer' || (request === '' && code === 'forbidden'))) {
    // The server refused our offer: take it back and, when it was about
    // rights, stop sending what we may not send.
    void call.offerRefused((track) => {
      if (code !== 'forbidden') return false;
      const source = call.sources.get(track.id);
      if (source === undefined) return true; // not added by this page
      return source === 'screen' ? !can('room.screen') : !can('room.publish');
    });
  }
}

void start();
