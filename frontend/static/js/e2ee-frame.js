// e2ee-frame.js: the formats of end-to-end encrypted meetings that both the
// page (e2ee.js) and its Worker (e2ee-worker.js) use: sender keys and their
// ratchet, and encrypted frames (docs/protocol.md, "End-to-end encrypted
// meetings"). Everything here is WebCrypto; nothing is hand-rolled.
//
// An encrypted frame is
//   clear header ‖ AES-GCM(rest; additional data: clear header) ‖ IV (12) ‖ key id (4) ‖ 0xE2
// The clear header is what the media server and the receiving browser's
// depacketizer read (VP8/VP9: 10 bytes of a keyframe, 3 of a delta frame;
// Opus: 1).

const subtle = globalThis.crypto.subtle;
const text = new TextEncoder();

/** The last byte of every encrypted frame. */
export const FRAME_FORMAT = 0xe2;
/** IV, key id and format byte. */
export const TRAILER_BYTES = 12 + 4 + 1;
/** The AES-GCM tag. */
const TAG_BYTES = 16;

/** The HKDF info strings. */
const FRAME_INFO = text.encode('parley-e2ee frame v1');
const RATCHET_INFO = text.encode('parley-e2ee ratchet v1');

/**
 * The bytes of a frame left in the clear.
 * @param {'audio'|'video'} kind
 * @param {string|undefined} type the video frame's type: 'key', 'delta' or 'empty'
 */
export function clearBytes(kind, type) {
  if (kind === 'audio') return 1;
  return type === 'key' ? 10 : 3;
}

/**
 * A key id's generation (a new key after someone left) and ratchet step
 * (after someone joined).
 * @param {number} id
 */
export function generation(id) {
  return id >>> 8;
}

/** @param {number} id */
export function step(id) {
  return id & 0xff;
}

/**
 * @typedef {Object} SenderKey
 * @property {number} id the key id
 * @property {CryptoKey} base HKDF key of the material (for the ratchet)
 * @property {CryptoKey} key the AES-GCM frame key
 */

/**
 * Imports 32 bytes of key material as a sender key.
 * @param {Uint8Array<ArrayBuffer>} material
 * @param {number} id
 * @returns {Promise<SenderKey>}
 */
export async function importSenderKey(material, id) {
  const base = await subtle.importKey('raw', material, 'HKDF', false, ['deriveBits', 'deriveKey']);
  return senderKeyFrom(base, id);
}

/**
 * @param {CryptoKey} base
 * @param {number} id
 * @returns {Promise<SenderKey>}
 */
async function senderKeyFrom(base, id) {
  const key = await subtle.deriveKey(
    { name: 'HKDF', hash: 'SHA-256', salt: new Uint8Array(0), info: FRAME_INFO },
    base, { name: 'AES-GCM', length: 256 }, false, ['encrypt', 'decrypt']);
  return { id, base, key };
}

/**
 * The material of the next ratchet step.
 * @param {CryptoKey} base
 * @returns {Promise<Uint8Array<ArrayBuffer>>}
 */
export async function ratchetMaterial(base) {
  const bits = await subtle.deriveBits({ name: 'HKDF', hash: 'SHA-256', salt: new Uint8Array(0), info: RATCHET_INFO }, base, 256);
  return new Uint8Array(bits);
}

/**
 * The sender key one ratchet step after k (the id's step + 1).
 * @param {SenderKey} k
 * @returns {Promise<SenderKey>}
 */
export async function ratchet(k) {
  const material = await ratchetMaterial(k.base);
  return importSenderKey(material, ((k.id & ~0xff) | ((step(k.id) + 1) & 0xff)) >>> 0);
}

/**
 * Encrypts one encoded frame.
 * @param {CryptoKey} key
 * @param {number} keyId
 * @param {Uint8Array<ArrayBuffer>} iv 12 bytes, never used before with this key
 * @param {ArrayBuffer} data the encoded frame
 * @param {number} clear bytes left in the clear
 * @returns {Promise<ArrayBuffer>}
 */
export async function encryptFrame(key, keyId, iv, data, clear) {
  const bytes = new Uint8Array(data);
  const n = Math.min(clear, bytes.length);
  const header = bytes.subarray(0, n);
  const sealed = new Uint8Array(await subtle.encrypt({ name: 'AES-GCM', iv, additionalData: header }, key, bytes.subarray(n)));
  const out = new Uint8Array(n + sealed.length + TRAILER_BYTES);
  out.set(header, 0);
  out.set(sealed, n);
  let at = n + sealed.length;
  out.set(iv, at);
  at += 12;
  new DataView(out.buffer).setUint32(at, keyId >>> 0);
  out[at + 4] = FRAME_FORMAT;
  return out.buffer;
}

/**
 * The trailer of an encrypted frame, or null when it has none.
 * @param {ArrayBuffer} data
 * @returns {{keyId: number, iv: Uint8Array<ArrayBuffer>}|null}
 */
export function readTrailer(data) {
  const bytes = new Uint8Array(data);
  if (bytes.length < TRAILER_BYTES + TAG_BYTES || bytes[bytes.length - 1] !== FRAME_FORMAT) return null;
  const at = bytes.length - TRAILER_BYTES;
  return {
    iv: bytes.slice(at, at + 12),
    keyId: new DataView(data).getUint32(at + 12),
  };
}

/**
 * Decrypts one encrypted frame; throws when it does not authenticate.
 * @param {CryptoKey} key
 * @param {ArrayBuffer} data
 * @param {number} clear bytes the sender left in the clear
 * @returns {Promise<ArrayBuffer>}
 */
export async function decryptFrame(key, data, clear) {
  const trailer = readTrailer(data);
  if (!trailer) throw new Error('not an encrypted frame');
  const bytes = new Uint8Array(data);
  const end = bytes.length - TRAILER_BYTES;
  const n = Math.min(clear, end - TAG_BYTES);
  const header = bytes.subarray(0, n);
  const plain = new Uint8Array(await subtle.decrypt({ name: 'AES-GCM', iv: trailer.iv, additionalData: header }, key, bytes.subarray(n, end)));
  const out = new Uint8Array(n + plain.length);
  out.set(header, 0);
  out.set(plain, n);
  return out.buffer;
}
