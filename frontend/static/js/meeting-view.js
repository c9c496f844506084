// meeting-view.js: drawing the meeting: one tile per participant in the
// grid (with a <video> per camera or screen track and an <audio> per audio
// track), the participant list with its host controls, and the chat. Every
// name and message goes in as text; nothing here parses markup.

import { roleName } from './rooms.js';
import { el } from './ui.js';

/**
 * @typedef {Object} Person
 * @property {string} id
 * @property {string} name
 * @property {string} role
 * @property {boolean} handRaised
 * @property {boolean} inLobby
 * @property {boolean} self
 * @property {boolean} [cannotDecrypt] in an end-to-end encrypted meeting:
 *   this page cannot decrypt what they send (their video is hidden)
 */

/**
 * Reads a participant object of a server message (welcome.participants[],
 * participant_joined.participant).
 * @param {any} v
 * @param {string} selfId
 * @returns {Person|null}
 */
export function person(v, selfId) {
  if (!v || typeof v !== 'object' || typeof v.id !== 'string' || v.id === '') return null;
  return {
    id: v.id,
    name: typeof v.name === 'string' && v.name !== '' ? v.name : 'Someone',
    role: typeof v.role === 'string' ? v.role : '',
    handRaised: v.hand_raised === true,
    inLobby: v.in_lobby === true,
    self: v.id === selfId,
  };
}

/**
 * The participant id a message names: a string, or an object with an id.
 * @param {unknown} v
 * @returns {string}
 */
export function participantId(v) {
  if (typeof v === 'string') return v;
  if (v && typeof v === 'object' && typeof (/** @type {any} */ (v)).id === 'string') return (/** @type {any} */ (v)).id;
  return '';
}

/** CSS attribute selector value, quoted. @param {string} v */
export function attrValue(v) {
  return JSON.stringify(v);
}

export class Grid {
  /** @param {HTMLElement} root */
  constructor(root) {
    this.root = root;
  }

  /**
   * The tile of a participant, made when missing.
   * @param {Person} p
   * @returns {HTMLElement}
   */
  tile(p) {
    let tile = this.find(p.id);
    if (!tile) {
      const media = el('div', { className: 'tile-media' });
      const name = el('span', { className: 'tile-name' });
      const hand = el('span', { className: 'tile-hand', text: 'Hand raised', hidden: true });
      const muted = el('span', { className: 'tile-muted', hidden: true });
      const e2ee = el('span', { className: 'tile-e2ee', text: 'Cannot decrypt', hidden: true });
      tile = el('div', {
        className: p.self ? 'tile self' : 'tile',
        attrs: { 'data-participant-id': p.id, role: 'group' },
      }, media, el('div', { className: 'tile-label' }, name, hand, muted, e2ee));
      if (p.self) this.root.prepend(tile);
      else this.root.append(tile);
    }
    this.update(tile, p);
    return tile;
  }

  /**
   * @param {HTMLElement} tile
   * @param {Person} p
   */
  update(tile, p) {
    const label = p.self ? `${p.name} (you)` : p.name;
    const name = /** @type {HTMLElement} */ (tile.querySelector('.tile-name'));
    name.textContent = label;
    tile.setAttribute('aria-label', label);
    const hand = /** @type {HTMLElement} */ (tile.querySelector('.tile-hand'));
    hand.hidden = !p.handRaised;
    tile.classList.toggle('hand', p.handRaised);
    // Frames that do not decrypt are dropped; what the video last showed
    // is hidden too, so that nothing stale passes for the person.
    const e2ee = /** @type {HTMLElement} */ (tile.querySelector('.tile-e2ee'));
    e2ee.hidden = p.cannotDecrypt !== true;
    tile.classList.toggle('undecryptable', p.cannotDecrypt === true);
  }

  /** @param {string} id */
  find(id) {
    return /** @type {HTMLElement|null} */ (this.root.querySelector(`.tile[data-participant-id=${attrValue(id)}]`));
  }

  /** @param {string} id */
  remove(id) {
    const tile = this.find(id);
    if (!tile) return;
    for (const m of tile.querySelectorAll('video, audio')) detach(/** @type {HTMLMediaElement} */ (m));
    tile.remove();
  }

  /**
   * Shows a track in a participant's tile: a muted <video> for video
   * (its sound, if any, comes through its own <audio>), an <audio> for
   * audio. Returns the element.
   * @param {HTMLElement} tile
   * @param {MediaStreamTrack} track
   * @param {string} trackId the id the server knows the track by
   * @param {string} source "camera", "microphone" or "screen"
   * @param {boolean} local our own track (never played back as audio)
   * @returns {HTMLMediaElement|null}
   */
  attach(tile, track, trackId, source, local) {
    const media = /** @type {HTMLElement} */ (tile.querySelector('.tile-media'));
    const existing = /** @type {HTMLMediaElement|null} */ (media.querySelector(`[data-track-id=${attrValue(trackId)}]`));
    if (existing) {
      const s = /** @type {MediaStream|null} */ (existing.srcObject);
      if (s && s.getTracks()[0] === track) return existing;
      detach(existing);
      existing.remove();
    }
    if (track.kind === 'audio' && local) return null;
    /** @type {HTMLMediaElement} */
    let node;
    if (track.kind === 'video') {
      node = el('video', {
        className: source === 'screen' ? 'screen' : 'camera',
        attrs: { 'data-track-id': trackId, 'data-source': source, autoplay: '', playsinline: '' },
      });
      node.muted = true;
      if (local && source !== 'screen') node.classList.add('mirror');
    } else {
      node = el('audio', { attrs: { 'data-track-id': trackId, 'data-source': source, autoplay: '' } });
    }
    node.srcObject = new MediaStream([track]);
    if (source === 'screen') media.prepend(node);
    else media.append(node);
    play(node);
    tile.classList.toggle('has-video', media.querySelector('video') !== null);
    return node;
  }

  /**
   * Removes the element of a track (by the id the server knows it by).
   * @param {string} trackId
   */
  detachTrack(trackId) {
    for (const node of this.root.querySelectorAll(`[data-track-id=${attrValue(trackId)}]`)) {
      detach(/** @type {HTMLMediaElement} */ (node));
      const tile = node.closest('.tile');
      node.remove();
      if (tile) tile.classList.toggle('has-video', tile.querySelector('video') !== null);
    }
  }

  /** @param {string|null} id the participant speaking, or null */
  speaking(id) {
    for (const tile of this.root.querySelectorAll('.tile')) {
      const on = /** @type {HTMLElement} */ (tile).dataset.participantId === id;
      tile.classList.toggle('speaking', on);
      if (on) tile.setAttribute('data-speaking', 'true');
      else tile.removeAttribute('data-speaking');
    }
  }

  clear() {
    for (const m of this.root.querySelectorAll('video, audio')) detach(/** @type {HTMLMediaElement} */ (m));
    this.root.replaceChildren();
  }
}

/**
 * Starts playback; a refusal (autoplay policy) leaves the element paused
 * and is not an error of the page.
 * @param {HTMLMediaElement} node
 */
function play(node) {
  const p = node.play();
  if (p) {
    p.catch((err) => {
      if (err && err.name !== 'AbortError') console.warn('parley: playback did not start:', err.name);
    });
  }
}

/** @param {HTMLMediaElement} node */
function detach(node) {
  node.srcObject = null;
}

/**
 * @typedef {Object} ListActions
 * @property {(id: string, action: 'admit'|'deny'|'mute'|'kick') => void} onAction
 */

export class ParticipantList {
  /**
   * @param {HTMLElement} root
   * @param {ListActions} actions
   */
  constructor(root, actions) {
    this.root = root;
    this.moderate = false;
    root.addEventListener('click', (ev) => {
      const target = /** @type {HTMLElement} */ (ev.target);
      const button = /** @type {HTMLButtonElement|null} */ (target.closest('button[data-action]'));
      const item = /** @type {HTMLElement|null} */ (target.closest('li[data-participant-id]'));
      if (!button || !item || button.disabled) return;
      const action = /** @type {'admit'|'deny'|'mute'|'kick'} */ (button.dataset.action);
      actions.onAction(item.dataset.participantId ?? '', action);
    });
  }

  /**
   * Draws one person (again).
   * @param {Person} p
   */
  render(p) {
    let li = /** @type {HTMLElement|null} */ (this.root.querySelector(`li[data-participant-id=${attrValue(p.id)}]`));
    const fresh = li === null;
    if (!li) li = el('li', { className: 'item participant', attrs: { 'data-participant-id': p.id } });
    li.dataset.inLobby = p.inLobby ? 'true' : 'false';
    li.dataset.role = p.role;
    const head = el('div', { className: 'item-head' },
      el('span', { className: 'item-name', text: p.self ? `${p.name} (you)` : p.name }));
    if (p.role !== '') head.append(el('span', { className: 'badge', text: roleName(p.role) }));
    if (p.inLobby) head.append(el('span', { className: 'badge off', text: 'In the lobby' }));
    if (p.handRaised) head.append(el('span', { className: 'badge hand', text: 'Hand raised' }));
    if (p.cannotDecrypt) head.append(el('span', { className: 'badge warn e2ee-failed', text: 'Cannot decrypt' }));
    li.dataset.e2ee = p.cannotDecrypt ? 'failed' : '';
    li.replaceChildren(head);
    if (this.moderate && !p.self) {
      const controls = el('div', { className: 'participant-actions' });
      if (p.inLobby) {
        controls.append(
          actionButton('admit', 'Admit', `Let ${p.name} in`),
          actionButton('deny', 'Deny', `Turn ${p.name} away`));
      } else {
        controls.append(
          actionButton('mute', 'Mute', `Mute ${p.name}’s microphone`),
          actionButton('kick', 'Remove', `Remove ${p.name} from the meeting`));
      }
      li.append(controls);
    }
    if (fresh) {
      // People in the lobby first, so that hosts see them.
      if (p.inLobby) this.root.prepend(li);
      else this.root.append(li);
    } else if (p.inLobby) {
      this.root.prepend(li);
    }
  }

  /** @param {string} id */
  remove(id) {
    const li = this.root.querySelector(`li[data-participant-id=${attrValue(id)}]`);
    if (li) li.remove();
  }

  clear() {
    this.root.replaceChildren();
  }
}

/**
 * @param {string} action
 * @param {string} text
 * @param {string} label
 */
function actionButton(action, text, label) {
  return el('button', {
    className: `btn link ${action}${action === 'kick' || action === 'deny' ? ' danger-text' : ''}`,
    text,
    attrs: { type: 'button', 'data-action': action, 'aria-label': label },
  });
}

export class Chat {
  /** @param {HTMLElement} list */
  constructor(list) {
    this.list = list;
  }

  /**
   * Adds one message. The text and the sender's name are shown as text.
   * @param {{from: string, name: string, text: string, ts: unknown, self: boolean}} m
   */
  add(m) {
    const when = chatTime(m.ts);
    const head = el('div', { className: 'chat-head' },
      el('span', { className: 'chat-name', text: m.self ? `${m.name} (you)` : m.name }));
    if (when) {
      head.append(' ', el('time', {
        className: 'muted small',
        text: when.toLocaleTimeString(undefined, { hour: '2-digit', minute: '2-digit' }),
        attrs: { datetime: when.toISOString() },
      }));
    }
    const li = el('li', { className: m.self ? 'chat-message self' : 'chat-message', attrs: { 'data-from': m.from } },
      head, el('p', { className: 'chat-text', text: m.text }));
    const atEnd = this.list.scrollHeight - this.list.scrollTop - this.list.clientHeight < 40;
    this.list.append(li);
    if (atEnd) this.list.scrollTop = this.list.scrollHeight;
  }

  clear() {
    this.list.replaceChildren();
  }

  /**
   * A line from Parley itself (someone joined, left, was muted).
   * @param {string} text
   */
  note(text) {
    this.list.append(el('li', { className: 'chat-note muted small', text }));
  }
}

/**
 * The time of a chat message: RFC 3339 text, or seconds or milliseconds
 * since the epoch.
 * @param {unknown} ts
 * @returns {Date|null}
 */
export function chatTime(ts) {
  if (typeof ts === 'string') {
    const t = Date.parse(ts);
    return Number.isNaN(t) ? null : new Date(t);
  }
  if (typeof ts === 'number' && Number.isFinite(ts) && ts > 0) {
    return new Date(ts < 1e12 ? ts * 1000 : ts);
  }
  return null;
}
