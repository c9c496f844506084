// e2ee-worker.js: the Worker that encrypts and decrypts every encoded
// frame of an end-to-end encrypted meeting (docs/protocol.md). The page
// (e2ee.js) gives it keys and tells it which participant each receiving
// transform currently carries; frames come to it through
// RTCRtpScriptTransform (the `rtctransform` event) or, in browsers that only
// have createEncodedStreams, as transferred streams.
//
// Fail closed: a frame that is not encrypted, whose key is unknown or that
// does not authenticate is dropped, never passed on; the page is told which
// sender cannot be decrypted.

import {
  clearBytes, decryptFrame, encryptFrame, generation, importSenderKey, ratchet, readTrailer, step,
} from './e2ee-frame.js';

/** @import { SenderKey } from './e2ee-frame.js' */

/** Keys kept per sender. */
const KEEP_KEYS = 8;
/** How far a receiver ratchets a sender's key by itself. */
const MAX_RATCHET = 16;

/**
 * The key this browser sends with, with the IV's salt and frame counter.
 * @type {{k: SenderKey, salt: Uint8Array, counter: bigint}|null}
 */
let sending = null;
/** @type {Map<string, Map<number, SenderKey>>} received keys, by participant and key id */
const received = new Map();
/** @type {Map<number, string>} the participant each receiving transform carries, by transform id */
const routes = new Map();
/** @type {Map<string, string>} the last state reported per participant */
const states = new Map();
/** @type {Set<any>} the sending transformers (for keyframes after a key change) */
const senders = new Set();
/** @type {Map<number, any>} the receiving transformers, by transform id */
const receivers = new Map();

/**
 * @typedef {Object} TransformOptions
 * @property {'send'|'receive'} side
 * @property {'audio'|'video'} kind
 * @property {number} tid the transform's id (receivers)
 */

/**
 * Tells the page how decrypting a sender's frames goes, when it changes.
 * @param {string} who
 * @param {'ok'|'nokey'|'failed'} state
 */
function report(who, state) {
  if (states.get(who) === state) return;
  states.set(who, state);
  self.postMessage({ op: 'state', participant: who, state });
}

/**
 * The key of who with id, ratcheting a kept key of the same generation
 * forward when needed; null when there is none.
 * @param {string} who
 * @param {number} id
 * @returns {Promise<SenderKey|null>}
 */
async function keyOf(who, id) {
  const keys = received.get(who);
  if (!keys) return null;
  const exact = keys.get(id);
  if (exact) return exact;
  /** @type {SenderKey|null} */
  let from = null;
  for (const k of keys.values()) {
    if (generation(k.id) === generation(id) && step(k.id) < step(id) && step(id) - step(k.id) <= MAX_RATCHET &&
        (from === null || step(k.id) > step(from.id))) from = k;
  }
  if (from === null) return null;
  let k = from;
  while (step(k.id) < step(id)) k = await ratchet(k);
  // The sender may have changed keys meanwhile: store only if still wanted.
  if (received.get(who) === keys) keep(keys, k);
  return k;
}

/**
 * @param {Map<number, SenderKey>} keys
 * @param {SenderKey} k
 */
function keep(keys, k) {
  keys.set(k.id, k);
  while (keys.size > KEEP_KEYS) {
    const oldest = keys.keys().next().value;
    if (oldest === undefined) break;
    keys.delete(oldest);
  }
}

/** The next IV of the sending key: salt ‖ 64-bit counter. */
function nextIV() {
  if (!sending) throw new Error('no sender key');
  const iv = new Uint8Array(12);
  iv.set(sending.salt, 0);
  new DataView(iv.buffer).setBigUint64(4, sending.counter);
  sending.counter += 1n;
  return iv;
}

/**
 * Runs one transform until its streams end.
 * @param {ReadableStream<any>} readable
 * @param {WritableStream<any>} writable
 * @param {TransformOptions} options
 * @param {any} transformer the RTCRtpScriptTransformer, or null
 */
function run(readable, writable, options, transformer) {
  const kind = options.kind === 'audio' ? 'audio' : 'video';
  if (options.side === 'send') {
    if (transformer) senders.add(transformer);
  } else if (transformer) {
    receivers.set(options.tid, transformer);
  }
  const transform = new TransformStream({
    async transform(frame, controller) {
      const data = /** @type {ArrayBuffer} */ (frame.data);
      if (data.byteLength === 0) {
        controller.enqueue(frame); // nothing to hide
        return;
      }
      if (options.side === 'send') {
        if (!sending) return; // no key yet: nothing leaves unencrypted
        const k = sending.k;
        frame.data = await encryptFrame(k.key, k.id, nextIV(), data, clearBytes(kind, frame.type));
        controller.enqueue(frame);
        return;
      }
      const who = routes.get(options.tid);
      if (who === undefined) return; // nobody's yet: dropped
      const trailer = readTrailer(data);
      if (!trailer) {
        report(who, 'failed');
        return;
      }
      const k = await keyOf(who, trailer.keyId);
      if (!k) {
        report(who, 'nokey');
        return;
      }
      try {
        frame.data = await decryptFrame(k.key, data, clearBytes(kind, frame.type));
      } catch {
        report(who, 'failed');
        return;
      }
      report(who, 'ok');
      controller.enqueue(frame);
    },
  });
  readable.pipeThrough(transform).pipeTo(writable).catch(() => {
    // The connection or the transceiver ended.
  }).finally(() => {
    if (transformer) senders.delete(transformer);
    if (options.side === 'receive' && receivers.get(options.tid) === transformer) receivers.delete(options.tid);
  });
}

/** @param {any} ev */
function onTransform(ev) {
  const t = ev.transformer;
  run(t.readable, t.writable, t.options, t);
}
/** @type {any} */ (self).onrtctransform = onTransform;

/**
 * Asks for keyframes after a key change, where the browser can.
 * @param {'send'|'receive'} side
 */
function keyframes(side) {
  if (side === 'send') {
    for (const t of senders) {
      if (typeof t.generateKeyFrame === 'function') t.generateKeyFrame().catch(() => {});
    }
    return;
  }
  for (const t of receivers.values()) {
    if (typeof t.sendKeyFrameRequest === 'function') t.sendKeyFrameRequest().catch(() => {});
  }
}

/** @type {Map<string, any>} */
const ops = new Map(Object.entries({
  /** The key to send with from now on (a fresh IV salt, the counter from 0). */
  'send-key': (/** @type {any} */ m) => {
    const salt = self.crypto.getRandomValues(new Uint8Array(4));
    sending = { k: { id: m.id, base: m.base, key: m.key }, salt, counter: 0n };
    keyframes('send');
  },
  /** A key received from a participant. */
  'recv-key': (/** @type {any} */ m) => {
    let keys = received.get(m.participant);
    if (!keys) {
      keys = new Map();
      received.set(m.participant, keys);
    }
    keep(keys, { id: m.id, base: m.base, key: m.key });
    if (states.get(m.participant) !== 'ok') keyframes('receive');
  },
  /** A participant left: its keys go. */
  forget: (/** @type {any} */ m) => {
    received.delete(m.participant);
    states.delete(m.participant);
  },
  /** Which participant each receiving transform carries now. */
  routes: (/** @type {any} */ m) => {
    routes.clear();
    for (const [tid, who] of m.routes) routes.set(tid, who);
  },
  /** The fallback: streams from createEncodedStreams. */
  streams: (/** @type {any} */ m) => run(m.readable, m.writable, m.options, null),
  /**
   * For tests of the page: replaces every key of a participant with a
   * random one under the same ids (the page then cannot decrypt them).
   */
  corrupt: async (/** @type {any} */ m) => {
    const keys = received.get(m.participant);
    if (!keys) return;
    for (const id of [...keys.keys()]) keys.set(id, await importSenderKey(self.crypto.getRandomValues(new Uint8Array(32)), id));
  },
  /** Decrypts one frame with a participant's keys (for the page's tests). */
  decrypt: async (/** @type {any} */ m) => {
    try {
      const trailer = readTrailer(m.data);
      const k = trailer ? await keyOf(m.participant, trailer.keyId) : null;
      if (!k) throw new Error('no key');
      const data = await decryptFrame(k.key, m.data, clearBytes(m.kind, m.type));
      self.postMessage({ op: 'decrypted', req: m.req, data }, { transfer: [data] });
    } catch (err) {
      self.postMessage({ op: 'decrypted', req: m.req, error: err instanceof Error && err.message !== '' ? err.message : 'it does not decrypt' });
    }
  },
  /** The key ids in use (for the page's tests). */
  ids: (/** @type {any} */ m) => {
    /** @type {Record<string, number[]>} */
    const recv = {};
    for (const [who, keys] of received) recv[who] = [...keys.keys()];
    self.postMessage({ op: 'ids', req: m.req, sending: sending ? sending.k.id : null, received: recv });
  },
}));

self.addEventListener('message', (ev) => {
  const m = ev.data;
  const op = m && typeof m === 'object' ? ops.get(m.op) : undefined;
  if (op) void op(m);
});
