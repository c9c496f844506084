// e2ee.js: end-to-end encryption of a meeting, on the page's side
// (docs/protocol.md, "End-to-end encrypted meetings"). For one signaling
// connection it holds an ephemeral ECDH key pair (its public key goes with
// `join`) and this browser's sender key; it wraps the sender key for each
// other participant's public key and unwraps theirs (`e2ee_key`), ratchets
// when someone joins and makes a new key when someone leaves, computes the
// safety code, and drives the Worker (e2ee-worker.js) that encrypts and
// decrypts every frame. Key material never leaves this page unwrapped and is
// never logged; everything is WebCrypto.

import { importSenderKey, ratchetMaterial, step } from './e2ee-frame.js';

/** @import { SenderKey } from './e2ee-frame.js' */

const subtle = globalThis.crypto.subtle;
const text = new TextEncoder();

/** How long after sending a new key this browser starts to use it. */
export const KEY_SWITCH_MS = 1000;
/** Codecs an end-to-end encrypted meeting uses, in order of preference. */
const CODECS = ['video/vp8', 'video/vp9', 'audio/opus'];
/** The version byte of a wrapped key. */
const WRAP_VERSION = 1;

/**
 * Whether this browser can take part in an end-to-end encrypted meeting,
 * and how.
 * @returns {{mode: 'script'|'streams'|'', why: string}}
 */
export function e2eeSupport() {
  if (!globalThis.crypto || !globalThis.crypto.subtle) {
    return { mode: '', why: 'this page has no WebCrypto (it needs a secure https:// connection)' };
  }
  if (typeof Worker !== 'function') return { mode: '', why: 'this browser has no Web Workers' };
  if (typeof (/** @type {any} */ (globalThis)).RTCRtpScriptTransform === 'function') return { mode: 'script', why: '' };
  if (typeof RTCRtpSender !== 'undefined' && typeof (/** @type {any} */ (RTCRtpSender.prototype)).createEncodedStreams === 'function') {
    return { mode: 'streams', why: '' };
  }
  return { mode: '', why: 'this browser cannot encrypt meeting media (it lacks WebRTC encoded transforms)' };
}

/** @param {Uint8Array} b */
function b64url(b) {
  let s = '';
  for (const x of b) s += String.fromCharCode(x);
  return btoa(s).replaceAll('+', '-').replaceAll('/', '_').replace(/=+$/, '');
}

/**
 * @param {string} s
 * @returns {Uint8Array<ArrayBuffer>}
 */
function unb64url(s) {
  const bin = atob(s.replaceAll('-', '+').replaceAll('_', '/') + '='.repeat((4 - (s.length % 4)) % 4));
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

/**
 * @param {...Uint8Array} parts
 * @returns {Uint8Array<ArrayBuffer>}
 */
function concat(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/**
 * The safety code of a set of public keys: six groups of five digits.
 * @param {string[]} publicKeys base64url
 * @returns {Promise<string>}
 */
export async function safetyCode(publicKeys) {
  const sorted = [...publicKeys].sort();
  /** @type {Uint8Array[]} */
  const parts = [text.encode('parley-e2ee safety v1')];
  for (const k of sorted) {
    const raw = unb64url(k);
    parts.push(new Uint8Array([raw.length >> 8, raw.length & 0xff]), raw);
  }
  const digest = new DataView(await subtle.digest('SHA-256', concat(...parts)));
  const groups = [];
  for (let g = 0; g < 6; g++) groups.push(String(digest.getUint32(g * 4) % 100000).padStart(5, '0'));
  return groups.join(' ');
}

/**
 * @typedef {Object} E2EEHooks
 * @property {(type: string, fields: Record<string, unknown>) => boolean} send a signaling message
 * @property {(participant: string, state: 'ok'|'nokey'|'failed') => void} onState how decrypting a sender's frames goes
 * @property {(code: string) => void} onSafetyCode the safety code changed
 */

/**
 * @typedef {Object} Peer
 * @property {string} publicKey base64url, as the server passed it on
 * @property {Uint8Array<ArrayBuffer>} raw
 * @property {CryptoKey|null} key the imported ECDH public key
 * @property {CryptoKey|null} wrapOut the key that wraps ours for them
 * @property {CryptoKey|null} wrapIn the key that unwraps theirs
 */

/** The session of the page, for the tests' hooks below. @type {E2EE|null} */
let current = null;

export class E2EE {
  /**
   * Makes the key pair, the first sender key and the Worker.
   * @param {'script'|'streams'} mode
   * @param {E2EEHooks} hooks
   * @returns {Promise<E2EE>}
   */
  static async create(mode, hooks) {
    const pair = /** @type {CryptoKeyPair} */ (await subtle.generateKey({ name: 'ECDH', namedCurve: 'P-256' }, false, ['deriveBits']));
    const raw = new Uint8Array(await subtle.exportKey('raw', pair.publicKey));
    const e = new E2EE(mode, hooks, pair.privateKey, raw);
    await e.newKey(1);
    e.useKey();
    current = e;
    return e;
  }

  /**
   * @param {'script'|'streams'} mode
   * @param {E2EEHooks} hooks
   * @param {CryptoKey} privateKey
   * @param {Uint8Array<ArrayBuffer>} publicRaw
   */
  constructor(mode, hooks, privateKey, publicRaw) {
    this.mode = mode;
    this.hooks = hooks;
    this.privateKey = privateKey;
    this.publicRaw = publicRaw;
    /** The public key that goes with `join`. */
    this.publicKey = b64url(publicRaw);
    this.selfId = '';
    /** @type {Map<string, Peer>} the other participants, by id */
    this.peers = new Map();
    /** @type {Map<string, string[]>} keys from senders not known yet */
    this.early = new Map();
    /** The material of the newest sender key (wrapped for others). @type {Uint8Array<ArrayBuffer>} */
    this.material = new Uint8Array(0);
    /** @type {SenderKey|null} the newest sender key */
    this.next = null;
    /** @type {SenderKey|null} the key frames are sent with */
    this.sendKey = null;
    /** @type {ReturnType<typeof setTimeout>|null} */
    this.switchTimer = null;
    /** Key operations, one at a time. @type {Promise<void>} */
    this.queue = Promise.resolve();
    this.closed = false;
    this.nextTid = 1;
    /** @type {WeakMap<RTCRtpReceiver, number>} */
    this.tids = new WeakMap();
    /** @type {Map<number, (v: any) => void>} */
    this.pending = new Map();
    this.nextReq = 1;
    this.code = '';
    this.worker = new Worker('/static/js/e2ee-worker.js', { type: 'module', name: 'parley-e2ee' });
    this.worker.addEventListener('message', (ev) => this.fromWorker(ev.data));
    this.worker.addEventListener('error', () => {
      this.hooks.onState(this.selfId, 'failed');
    });
  }

  /** Extra RTCPeerConnection settings the mode needs. @returns {Record<string, unknown>} */
  pcConfig() {
    return this.mode === 'streams' ? { encodedInsertableStreams: true } : {};
  }

  /**
   * Runs a key operation after the ones before it.
   * @param {() => Promise<void>} step
   */
  enqueue(step) {
    this.queue = this.queue.then(() => (this.closed ? undefined : step())).catch((err) => {
      console.warn('parley: an end-to-end encryption step failed:', err instanceof Error ? err.name : 'error');
    });
    return this.queue;
  }

  /** @param {any} m */
  fromWorker(m) {
    if (!m || typeof m !== 'object') return;
    if (m.op === 'state' && typeof m.participant === 'string') {
      this.hooks.onState(m.participant, m.state);
    } else if ((m.op === 'decrypted' || m.op === 'ids') && this.pending.has(m.req)) {
      const resolve = this.pending.get(m.req);
      this.pending.delete(m.req);
      if (resolve) resolve(m);
    }
  }

  /**
   * Asks the Worker something and waits for its answer.
   * @param {Record<string, unknown>} m
   * @param {Transferable[]} [transfer]
   * @returns {Promise<any>}
   */
  ask(m, transfer = []) {
    const req = this.nextReq++;
    return new Promise((resolve) => {
      this.pending.set(req, resolve);
      this.worker.postMessage({ ...m, req }, transfer);
    });
  }

  /**
   * Makes a new sender key of a generation (fresh material).
   * @param {number} gen
   */
  async newKey(gen) {
    this.material = globalThis.crypto.getRandomValues(new Uint8Array(32));
    this.next = await importSenderKey(this.material, ((gen & 0xffffff) << 8) >>> 0);
  }

  /** Starts sending with the newest key. */
  useKey() {
    if (!this.next || this.closed) return;
    this.sendKey = this.next;
    this.worker.postMessage({ op: 'send-key', id: this.next.id, base: this.next.base, key: this.next.key });
  }

  /** Starts sending with the newest key after KEY_SWITCH_MS. */
  switchSoon() {
    if (this.switchTimer !== null) clearTimeout(this.switchTimer);
    this.switchTimer = setTimeout(() => {
      this.switchTimer = null;
      this.useKey();
    }, KEY_SWITCH_MS);
  }

  /**
   * The meeting: who we are and who is there (the welcome). Our key goes
   * to everyone.
   * @param {string} selfId
   * @param {{id: string, publicKey: string}[]} others
   */
  start(selfId, others) {
    this.selfId = selfId;
    return this.enqueue(async () => {
      for (const o of others) this.addPeer(o.id, o.publicKey);
      await this.sendKeyTo([...this.peers.keys()]);
      await this.drainEarly();
      await this.updateCode();
    });
  }

  /**
   * @param {string} id
   * @param {string} publicKey
   */
  addPeer(id, publicKey) {
    if (id === this.selfId || typeof publicKey !== 'string' || publicKey === '') return;
    /** @type {Uint8Array<ArrayBuffer>} */
    let raw;
    try {
      raw = unb64url(publicKey);
    } catch {
      this.hooks.onState(id, 'failed');
      return;
    }
    this.peers.set(id, { publicKey, raw, key: null, wrapOut: null, wrapIn: null });
  }

  /**
   * Someone entered the meeting: our key ratchets (they cannot go back to
   * the earlier one) and the new one goes to them.
   * @param {string} id
   * @param {string} publicKey
   */
  joined(id, publicKey) {
    return this.enqueue(async () => {
      if (this.peers.has(id) || id === this.selfId) return;
      this.addPeer(id, publicKey);
      if (!this.next) return;
      if (step(this.next.id) >= 255) {
        await this.newKey((this.next.id >>> 8) + 1);
        await this.sendKeyTo([...this.peers.keys()]);
      } else {
        const material = await ratchetMaterial(this.next.base);
        this.material = material;
        this.next = await importSenderKey(material, this.next.id + 1);
        await this.sendKeyTo([id]);
      }
      this.switchSoon();
      await this.drainEarly();
      await this.updateCode();
    });
  }

  /**
   * Someone left: a new key for everyone who stays.
   * @param {string} id
   */
  left(id) {
    return this.enqueue(async () => {
      if (!this.peers.delete(id)) return;
      this.early.delete(id);
      this.worker.postMessage({ op: 'forget', participant: id });
      if (!this.next) return;
      await this.newKey((this.next.id >>> 8) + 1);
      if (this.peers.size > 0) await this.sendKeyTo([...this.peers.keys()]);
      this.switchSoon();
      await this.updateCode();
    });
  }

  /**
   * A key wrapped for us by a participant.
   * @param {string} from
   * @param {string} blob
   */
  received(from, blob) {
    return this.enqueue(async () => {
      if (!this.peers.has(from)) {
        // Its participant_joined is still on the way: keep it for then.
        const list = this.early.get(from) ?? [];
        if (list.length < 8) list.push(blob);
        this.early.set(from, list);
        return;
      }
      await this.unwrap(from, blob);
    });
  }

  async drainEarly() {
    for (const [from, blobs] of this.early) {
      if (!this.peers.has(from)) continue;
      this.early.delete(from);
      for (const b of blobs) await this.unwrap(from, b);
    }
  }

  /**
   * The AES-GCM key that wraps keys between us and a peer, one per
   * direction.
   * @param {Peer} peer
   * @param {boolean} out ours for them (else theirs for us)
   * @returns {Promise<CryptoKey>}
   */
  async wrapKey(peer, out) {
    const cached = out ? peer.wrapOut : peer.wrapIn;
    if (cached) return cached;
    if (!peer.key) {
      peer.key = await subtle.importKey('raw', peer.raw, { name: 'ECDH', namedCurve: 'P-256' }, false, []);
    }
    const shared = await subtle.deriveBits({ name: 'ECDH', public: peer.key }, this.privateKey, 256);
    const hk = await subtle.importKey('raw', shared, 'HKDF', false, ['deriveKey']);
    const [from, to] = out ? [this.publicRaw, peer.raw] : [peer.raw, this.publicRaw];
    const key = await subtle.deriveKey(
      { name: 'HKDF', hash: 'SHA-256', salt: new Uint8Array(0), info: concat(text.encode('parley-e2ee wrap v1'), from, to) },
      hk, { name: 'AES-GCM', length: 256 }, false, ['encrypt', 'decrypt']);
    if (out) peer.wrapOut = key;
    else peer.wrapIn = key;
    return key;
  }

  /**
   * Sends the newest sender key to these participants, wrapped for each.
   * @param {string[]} ids
   */
  async sendKeyTo(ids) {
    if (!this.next || ids.length === 0) return;
    const plain = new Uint8Array(4 + this.material.length);
    new DataView(plain.buffer).setUint32(0, this.next.id);
    plain.set(this.material, 4);
    /** @type {Record<string, string>} */
    const keys = {};
    for (const id of ids) {
      const peer = this.peers.get(id);
      if (!peer) continue;
      try {
        const iv = globalThis.crypto.getRandomValues(new Uint8Array(12));
        const aad = concat(text.encode('parley-e2ee key v1'), this.publicRaw, peer.raw);
        const sealed = new Uint8Array(await subtle.encrypt({ name: 'AES-GCM', iv, additionalData: aad }, await this.wrapKey(peer, true), plain));
        keys[id] = b64url(concat(new Uint8Array([WRAP_VERSION]), iv, sealed));
      } catch {
        this.hooks.onState(id, 'failed'); // an unusable public key
      }
    }
    plain.fill(0);
    if (Object.keys(keys).length > 0) this.hooks.send('e2ee_key', { keys });
  }

  /**
   * Unwraps a key from a participant and gives it to the Worker.
   * @param {string} from
   * @param {string} blob
   */
  async unwrap(from, blob) {
    const peer = this.peers.get(from);
    if (!peer) return;
    try {
      const b = unb64url(blob);
      if (b.length < 1 + 12 + 4 + 16 || b[0] !== WRAP_VERSION) throw new Error('unknown format');
      const aad = concat(text.encode('parley-e2ee key v1'), peer.raw, this.publicRaw);
      const plain = new Uint8Array(await subtle.decrypt({ name: 'AES-GCM', iv: b.subarray(1, 13), additionalData: aad },
        await this.wrapKey(peer, false), b.subarray(13)));
      const id = new DataView(plain.buffer).getUint32(0);
      const k = await importSenderKey(plain.subarray(4), id);
      plain.fill(0);
      this.worker.postMessage({ op: 'recv-key', participant: from, id: k.id, base: k.base, key: k.key });
    } catch {
      // A key that does not open was not wrapped for our key: someone, or
      // the server, substituted one. Its frames will not decrypt.
      this.hooks.onState(from, 'failed');
    }
  }

  async updateCode() {
    const code = await safetyCode([this.publicKey, ...[...this.peers.values()].map((p) => p.publicKey)]);
    if (code !== this.code) {
      this.code = code;
      this.hooks.onSafetyCode(code);
    }
  }

  /**
   * Encrypts what a sender sends.
   * @param {RTCRtpSender} sender
   * @param {'audio'|'video'} kind
   */
  attachSender(sender, kind) {
    this.attach(sender, { side: 'send', kind, tid: 0 });
  }

  /**
   * Decrypts what a receiver receives (before it is negotiated, so that
   * nothing reaches the decoder untransformed).
   * @param {RTCRtpReceiver} receiver
   * @param {'audio'|'video'} kind
   */
  attachReceiver(receiver, kind) {
    if (this.tids.has(receiver)) return;
    const tid = this.nextTid++;
    this.tids.set(receiver, tid);
    this.attach(receiver, { side: 'receive', kind, tid });
  }

  /**
   * @param {RTCRtpSender|RTCRtpReceiver} end
   * @param {{side: 'send'|'receive', kind: 'audio'|'video', tid: number}} options
   */
  attach(end, options) {
    const e = /** @type {any} */ (end);
    if (this.mode === 'script') {
      if (e.transform) return;
      e.transform = new (/** @type {any} */ (globalThis)).RTCRtpScriptTransform(this.worker, options);
      return;
    }
    if (e.parleyStreams) return;
    e.parleyStreams = true;
    const { readable, writable } = e.createEncodedStreams();
    this.worker.postMessage({ op: 'streams', options, readable, writable }, [readable, writable]);
  }

  /**
   * Tells the Worker whose frames each receiver carries now.
   * @param {Map<RTCRtpReceiver, string>} owners
   */
  route(owners) {
    /** @type {[number, string][]} */
    const routes = [];
    for (const [receiver, who] of owners) {
      const tid = this.tids.get(receiver);
      if (tid !== undefined && who !== '') routes.push([tid, who]);
    }
    this.worker.postMessage({ op: 'routes', routes });
  }

  /**
   * Limits a transceiver to the codecs of an end-to-end encrypted meeting
   * (the server enforces it too).
   * @param {RTCRtpTransceiver} transceiver
   * @param {'audio'|'video'} kind
   */
  static preferCodecs(transceiver, kind) {
    if (typeof transceiver.setCodecPreferences !== 'function' || typeof RTCRtpReceiver.getCapabilities !== 'function') return;
    const caps = RTCRtpReceiver.getCapabilities(kind);
    if (!caps) return;
    const wanted = caps.codecs.filter((c) => CODECS.includes(c.mimeType.toLowerCase()))
      .sort((a, b) => CODECS.indexOf(a.mimeType.toLowerCase()) - CODECS.indexOf(b.mimeType.toLowerCase()));
    const rtx = caps.codecs.filter((c) => c.mimeType.toLowerCase() === 'video/rtx');
    try {
      if (wanted.length > 0) transceiver.setCodecPreferences([...wanted, ...(kind === 'video' ? rtx : [])]);
    } catch {
      // Older browsers refuse some lists: the server removes the others.
    }
  }

  /** Ends the session: the Worker stops, the keys go. */
  close() {
    this.closed = true;
    if (this.switchTimer !== null) clearTimeout(this.switchTimer);
    this.switchTimer = null;
    this.worker.terminate();
    this.peers.clear();
    this.early.clear();
    this.material = new Uint8Array(0);
    for (const resolve of this.pending.values()) resolve({ error: 'closed' });
    this.pending.clear();
    if (current === this) current = null;
  }
}

/**
 * Hooks for the browser tests of this page (e2e/), called through the
 * DevTools protocol; nothing on the page uses them. They read key ids,
 * replace the keys this page holds for a sender with wrong ones (this page
 * then shows that sender as "cannot decrypt"), and decrypt a captured
 * frame with this page's keys. None of them reveals key material, and
 * none affects anyone but this page.
 */
export const testHooks = Object.freeze({
  /** @returns {Promise<{sending: number|null, received: Record<string, number[]>}|null>} */
  keyIds: async () => (current ? current.ask({ op: 'ids' }) : null),
  /** @param {string} participant */
  corruptKeys: (participant) => {
    if (current) current.worker.postMessage({ op: 'corrupt', participant });
  },
  /**
   * @param {string} participant
   * @param {string} frame base64url
   * @param {'audio'|'video'} kind
   * @param {string} type
   * @returns {Promise<string>} the decrypted frame, base64url; throws when it does not decrypt
   */
  decrypt: async (participant, frame, kind, type) => {
    if (!current) throw new Error('no end-to-end encrypted meeting');
    const data = unb64url(frame).buffer;
    const r = await current.ask({ op: 'decrypt', participant, data, kind, type }, [data]);
    if (!(r.data instanceof ArrayBuffer)) throw new Error(typeof r.error === 'string' && r.error !== '' ? r.error : 'it does not decrypt');
    return b64url(new Uint8Array(r.data));
  },
});
