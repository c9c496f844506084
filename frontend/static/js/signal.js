// signal.js: the signaling WebSocket of a meeting room
// (wss://HOST/api/v1/rooms/{id}/signal). Every message is one JSON text
// frame: an object with a "type" and that type's fields (docs/protocol.md).
// The browser's session or guest cookie authenticates the socket; this
// module never sees it.

import { seg } from './api.js';

/**
 * @typedef {Object} SignalHandlers
 * @property {(msg: Record<string, any>) => void} onMessage every well-formed message, in order
 * @property {() => void} onOpen
 * @property {(ev: CloseEvent, opened: boolean) => void} onClose the socket is gone (never after close())
 */

/** The address of a room's signaling socket on this server. */
export function signalURL(/** @type {string} */ roomId) {
  const scheme = window.location.protocol === 'http:' ? 'ws:' : 'wss:';
  return `${scheme}//${window.location.host}/api/v1/rooms/${seg(roomId)}/signal`;
}

/** One signaling connection. A new connection is a new Signal. */
export class Signal {
  /**
   * @param {string} url
   * @param {SignalHandlers} handlers
   */
  constructor(url, handlers) {
    this.handlers = handlers;
    /** Set by close(): a socket we closed ourselves reports nothing. */
    this.closedByUs = false;
    this.opened = false;
    this.ws = new WebSocket(url);
    this.ws.addEventListener('open', () => {
      this.opened = true;
      if (!this.closedByUs) this.handlers.onOpen();
    });
    this.ws.addEventListener('message', (ev) => {
      if (this.closedByUs || typeof ev.data !== 'string') return;
      /** @type {any} */
      let msg;
      try {
        msg = JSON.parse(ev.data);
      } catch {
        console.warn('parley: a signaling frame that is not JSON was ignored');
        return;
      }
      if (!msg || typeof msg !== 'object' || Array.isArray(msg) || typeof msg.type !== 'string') {
        console.warn('parley: a signaling message without a type was ignored');
        return;
      }
      this.handlers.onMessage(msg);
    });
    this.ws.addEventListener('close', (ev) => {
      if (!this.closedByUs) this.handlers.onClose(ev, this.opened);
      this.closedByUs = true;
    });
  }

  /** Whether messages can be sent now. */
  get open() {
    return !this.closedByUs && this.ws.readyState === WebSocket.OPEN;
  }

  /**
   * Sends one message; returns false when the socket is not open.
   * @param {string} type
   * @param {Record<string, unknown>} [fields]
   */
  send(type, fields = {}) {
    if (!this.open) return false;
    this.ws.send(JSON.stringify({ ...fields, type }));
    return true;
  }

  /** Closes the socket; no handler runs afterwards. */
  close() {
    this.closedByUs = true;
    if (this.ws.readyState === WebSocket.OPEN) {
      this.ws.close(1000, 'bye');
    } else if (this.ws.readyState === WebSocket.CONNECTING) {
      // Closing a socket that is still connecting makes Chromium log an
      // error; close it as soon as it opens instead.
      this.ws.addEventListener('open', () => this.ws.close(1000, 'bye'));
    }
  }
}
