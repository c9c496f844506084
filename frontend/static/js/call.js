// call.js: the one RTCPeerConnection of a meeting, between this browser and
// Parley's media server (an SFU). It publishes the local tracks, receives
// everyone else's, and keeps the session negotiated:
//
//   - The client offers first (after `welcome`), with a map from each local
//     track's id to its source ("camera", "microphone", "screen").
//   - Afterwards the server sends `offer`s as others' tracks come and go;
//     the client answers them. The client offers again when it adds or
//     removes a track of its own (a screen share) and for an ICE restart.
//   - On glare (both sides offered at once) the server is the polite side:
//     it rolls its offer back and answers ours, so the client ignores an
//     offer that arrives while its own is outstanding.
//
// All work on the connection runs one step at a time through a queue, so an
// offer, an answer and the candidates that follow are applied in the order
// the server sent them.

import { E2EE } from './e2ee.js';

/**
 * @typedef {'camera'|'microphone'|'screen'} Source
 */

/**
 * @typedef {Object} CallHooks
 * @property {(type: string, fields: Record<string, unknown>) => boolean} send sends a signaling message
 * @property {() => void} onRemoteChange a remote description was applied, or a track arrived: what is received may have changed
 * @property {(state: RTCIceConnectionState) => void} onIceState
 * @property {(err: unknown) => void} onFailure a step on the connection failed
 */

/** How long ICE may stay disconnected or failed before the client restarts it. */
export const ICE_RESTART_AFTER_MS = 5000;

/**
 * Simulcast layers of a camera: the server forwards to each subscriber the
 * one that fits the size it shows the video at, and its bandwidth.
 * @type {RTCRtpEncodingParameters[]}
 */
export const SIMULCAST = [
  { rid: 'q', scaleResolutionDownBy: 4, maxBitrate: 150_000 },
  { rid: 'h', scaleResolutionDownBy: 2, maxBitrate: 500_000 },
  { rid: 'f', scaleResolutionDownBy: 1, maxBitrate: 1_500_000 },
];

export class Call {
  /**
   * @param {RTCIceServer[]} iceServers from welcome.ice_servers
   * @param {CallHooks} hooks
   * @param {E2EE|null} [e2ee] in an end-to-end encrypted meeting: every
   *   frame sent and received goes through its Worker
   */
  constructor(iceServers, hooks, e2ee = null) {
    this.hooks = hooks;
    this.e2ee = e2ee;
    this.pc = new RTCPeerConnection(/** @type {RTCConfiguration} */ ({
      iceServers, bundlePolicy: 'max-bundle', rtcpMuxPolicy: 'require', ...(e2ee ? e2ee.pcConfig() : {}),
    }));
    /** @type {Map<string, Source>} source of each local track, by track id */
    this.sources = new Map();
    /** @type {Promise<void>} */
    this.queue = Promise.resolve();
    /** Whether our offer waits for the server's answer. */
    this.offering = false;
    /** Whether another offer is due once the current exchange ends. */
    this.renegotiate = false;
    /** Whether the next offer restarts ICE. */
    this.iceRestartDue = false;
    /** Set once start() has sent the first offer; before that nothing is offered. */
    this.started = false;
    this.closed = false;
    /** @type {RTCIceCandidateInit[]} remote candidates that came before the remote description */
    this.pendingCandidates = [];
    /** @type {ReturnType<typeof setTimeout>|null} */
    this.iceTimer = null;

    this.pc.addEventListener('icecandidate', (ev) => {
      if (ev.candidate && ev.candidate.candidate !== '') {
        this.hooks.send('candidate', { candidate: ev.candidate.toJSON() });
      }
    });
    this.pc.addEventListener('track', () => this.hooks.onRemoteChange());
    this.pc.addEventListener('negotiationneeded', () => {
      if (this.started) this.enqueue(() => this.offer());
    });
    this.pc.addEventListener('iceconnectionstatechange', () => this.iceChanged());
  }

  /**
   * Runs a step after every step before it; a failing step is reported and
   * does not stop the queue.
   * @param {() => Promise<void>} step
   * @returns {Promise<void>}
   */
  enqueue(step) {
    this.queue = this.queue.then(() => (this.closed ? undefined : step())).catch((err) => {
      if (!this.closed) this.hooks.onFailure(err);
    });
    return this.queue;
  }

  /**
   * Adds a local track before or during the call.
   * @param {MediaStreamTrack} track
   * @param {MediaStream} stream
   * @param {Source} source
   * @returns {RTCRtpSender}
   */
  addTrack(track, stream, source) {
    this.sources.set(track.id, source);
    // A new send-only transceiver, so that a camera can be given its
    // simulcast layers (pc.addTrack() cannot, and may reuse a transceiver
    // the server made to send us someone else's track; the server would
    // publish that too, but its m-line then carries both directions).
    /** @type {RTCRtpTransceiverInit} */
    const init = { direction: 'sendonly', streams: [stream] };
    if (source === 'camera') init.sendEncodings = SIMULCAST;
    const transceiver = this.pc.addTransceiver(track, init);
    this.encrypt(transceiver);
    return transceiver.sender;
  }

  /**
   * In an end-to-end encrypted meeting, puts a transceiver's sender and
   * receiver through the encryption Worker and limits its codecs, before
   * it is negotiated.
   * @param {RTCRtpTransceiver} transceiver
   */
  encrypt(transceiver) {
    const e2ee = this.e2ee;
    if (!e2ee) return;
    const kind = transceiver.receiver.track.kind === 'audio' ? 'audio' : 'video';
    e2ee.attachSender(transceiver.sender, kind);
    e2ee.attachReceiver(transceiver.receiver, kind);
    E2EE.preferCodecs(transceiver, kind);
  }

  /** Every transceiver the server added gets the Worker too. */
  encryptAll() {
    if (!this.e2ee) return;
    for (const t of this.pc.getTransceivers()) {
      if (t.currentDirection !== 'stopped') this.encrypt(t);
    }
  }

  /**
   * Stops sending a local track (the next offer tells the server).
   * @param {MediaStreamTrack} track
   */
  removeTrack(track) {
    for (const sender of this.pc.getSenders()) {
      if (sender.track === track) this.pc.removeTrack(sender);
    }
    this.sources.delete(track.id);
  }

  /** The local tracks being sent. @returns {MediaStreamTrack[]} */
  localTracks() {
    return this.pc.getSenders().map((s) => s.track).filter((t) => t !== null);
  }

  /**
   * The tracks map of an offer: every track this connection sends, with
   * its source. A track this page did not add itself is described by its
   * kind (video as "camera", audio as "microphone"): the server decides
   * whether it may be published, never this page.
   * @returns {Record<string, Source>}
   */
  trackMap() {
    /** @type {Record<string, Source>} */
    const map = {};
    for (const track of this.localTracks()) {
      map[track.id] = this.sources.get(track.id) ?? (track.kind === 'audio' ? 'microphone' : 'camera');
    }
    return map;
  }

  /**
   * Sends the first offer. A page without tracks to send still offers to
   * receive audio and video, so that the offer has media sections to
   * answer (and the DTLS fingerprint the server needs).
   */
  start() {
    if (this.localTracks().length === 0) {
      this.encrypt(this.pc.addTransceiver('audio', { direction: 'recvonly' }));
      this.encrypt(this.pc.addTransceiver('video', { direction: 'recvonly' }));
    }
    this.started = true;
    return this.enqueue(() => this.offer());
  }

  /** Creates and sends an offer, unless an exchange is under way. */
  async offer() {
    if (this.closed) return;
    if (this.offering || this.pc.signalingState !== 'stable') {
      this.renegotiate = true;
      return;
    }
    const iceRestart = this.iceRestartDue;
    this.iceRestartDue = false;
    this.renegotiate = false;
    const offer = await this.pc.createOffer(iceRestart ? { iceRestart: true } : {});
    await this.pc.setLocalDescription(offer);
    this.offering = true;
    const sdp = this.pc.localDescription ? this.pc.localDescription.sdp : offer.sdp;
    if (!this.hooks.send('offer', { sdp, tracks: this.trackMap() })) {
      // The socket is gone; the reconnect builds a new connection anyway.
      await this.rollback();
    }
  }

  /** Takes back an offer the server will not answer. */
  async rollback() {
    this.offering = false;
    if (this.pc.signalingState === 'have-local-offer') {
      await this.pc.setLocalDescription({ type: 'rollback' });
    }
  }

  /**
   * The server's answer to our offer.
   * @param {string} sdp
   */
  handleAnswer(sdp) {
    return this.enqueue(async () => {
      if (this.pc.signalingState !== 'have-local-offer') return; // stale
      await this.pc.setRemoteDescription({ type: 'answer', sdp });
      this.encryptAll();
      this.offering = false;
      this.hooks.onRemoteChange();
      await this.flushCandidates();
      if (this.renegotiate) await this.offer();
    });
  }

  /**
   * A server-driven renegotiation: apply the offer and answer it.
   * @param {string} sdp
   */
  handleOffer(sdp) {
    return this.enqueue(async () => {
      if (this.offering || this.pc.signalingState !== 'stable') {
        // Glare: the server is the polite side and answers our offer.
        return;
      }
      await this.pc.setRemoteDescription({ type: 'offer', sdp });
      this.encryptAll(); // before the answer: nothing reaches a decoder untransformed
      this.hooks.onRemoteChange();
      await this.flushCandidates();
      const answer = await this.pc.createAnswer();
      await this.pc.setLocalDescription(answer);
      const local = this.pc.localDescription ? this.pc.localDescription.sdp : answer.sdp;
      this.hooks.send('answer', { sdp: local });
      if (this.renegotiate) await this.offer();
    });
  }

  /**
   * The server refused our outstanding offer (an error message): take it
   * back, and stop sending the tracks this page may not publish.
   * @param {(track: MediaStreamTrack) => boolean} refused
   */
  offerRefused(refused) {
    return this.enqueue(async () => {
      if (!this.offering) return;
      await this.rollback();
      for (const sender of this.pc.getSenders()) {
        if (sender.track && refused(sender.track)) {
          this.sources.delete(sender.track.id);
          this.pc.removeTrack(sender);
        }
      }
      this.renegotiate = false;
    });
  }

  /**
   * A remote ICE candidate.
   * @param {RTCIceCandidateInit} candidate
   */
  handleCandidate(candidate) {
    return this.enqueue(async () => {
      if (!this.pc.remoteDescription) {
        this.pendingCandidates.push(candidate);
        return;
      }
      await this.addCandidate(candidate);
    });
  }

  async flushCandidates() {
    const pending = this.pendingCandidates;
    this.pendingCandidates = [];
    for (const c of pending) await this.addCandidate(c);
  }

  /** @param {RTCIceCandidateInit} candidate */
  async addCandidate(candidate) {
    try {
      await this.pc.addIceCandidate(candidate);
    } catch (err) {
      // A candidate of a generation we rolled back, or for a section
      // that is gone: nothing to do about it.
      console.warn('parley: an ICE candidate was not added:', err);
    }
  }

  /**
   * Replaces the ICE servers (fresh TURN credentials from the server).
   * @param {RTCIceServer[]} iceServers
   */
  setIceServers(iceServers) {
    if (this.closed) return;
    try {
      this.pc.setConfiguration({ ...this.pc.getConfiguration(), iceServers });
    } catch (err) {
      console.warn('parley: the new ICE servers were not taken:', err);
    }
  }

  /** Restarts ICE with a fresh offer (after a network change). */
  restartIce() {
    this.iceRestartDue = true;
    return this.enqueue(() => this.offer());
  }

  iceChanged() {
    const state = this.pc.iceConnectionState;
    this.hooks.onIceState(state);
    if (state === 'disconnected' || state === 'failed') {
      if (this.iceTimer === null) {
        this.iceTimer = setTimeout(() => {
          this.iceTimer = null;
          const now = this.pc.iceConnectionState;
          if (!this.closed && (now === 'disconnected' || now === 'failed')) void this.restartIce();
        }, ICE_RESTART_AFTER_MS);
      }
    } else if (this.iceTimer !== null) {
      clearTimeout(this.iceTimer);
      this.iceTimer = null;
    }
  }

  /**
   * What this connection receives: for every transceiver whose m-section
   * the server sends on, the receiving track and the publisher's track id
   * and stream id from that m-section's a=msid. The media server reuses a
   * transceiver for another subscription once the old one ended, so a
   * received track is known by its transceiver's mid, never by its own id
   * (which this browser chose when the transceiver was made).
   * @returns {Received[]}
   */
  receiving() {
    const sections = remoteSections(this.pc.remoteDescription ? this.pc.remoteDescription.sdp : '');
    /** @type {Received[]} */
    const out = [];
    for (const t of this.pc.getTransceivers()) {
      if (t.mid === null || t.currentDirection === 'stopped') continue;
      const s = sections.get(t.mid);
      if (!s || !s.sending || s.trackId === '') continue;
      out.push({ mid: t.mid, track: t.receiver.track, receiver: t.receiver, trackId: s.trackId, streamId: s.streamId });
    }
    return out;
  }

  /**
   * Audio levels (0..1) from the connection's statistics: what this page
   * receives, by the receiving track's id, and what it sends, under "local".
   * @returns {Promise<Map<string, number>>}
   */
  async audioLevels() {
    /** @type {Map<string, number>} */
    const levels = new Map();
    if (this.closed) return levels;
    const stats = await this.pc.getStats();
    stats.forEach((/** @type {any} */ s) => {
      if (s.kind !== 'audio' || typeof s.audioLevel !== 'number') return;
      if (s.type === 'inbound-rtp' && typeof s.trackIdentifier === 'string') {
        levels.set(s.trackIdentifier, s.audioLevel);
      } else if (s.type === 'media-source') {
        levels.set('local', Math.max(levels.get('local') ?? 0, s.audioLevel));
      }
    });
    return levels;
  }

  /** Ends the connection; local tracks are the caller's to stop. */
  close() {
    this.closed = true;
    if (this.iceTimer !== null) clearTimeout(this.iceTimer);
    this.iceTimer = null;
    this.pc.close();
  }
}

/**
 * @typedef {Object} Received
 * @property {string} mid
 * @property {MediaStreamTrack} track the receiving track in this browser
 * @property {RTCRtpReceiver} receiver
 * @property {string} trackId the publisher's track id (a=msid)
 * @property {string} streamId the publisher's stream id (a=msid)
 */

/**
 * @typedef {Object} Section
 * @property {string} trackId
 * @property {string} streamId
 * @property {boolean} sending whether the side that wrote the SDP sends on it
 */

/**
 * Reads the m-sections of an SDP: by mid, the a=msid stream and track ids
 * and whether its author sends media on it (sendrecv or sendonly, port not
 * zero).
 * @param {string} sdp
 * @returns {Map<string, Section>}
 */
export function remoteSections(sdp) {
  /** @type {Map<string, Section>} */
  const out = new Map();
  let sessionDir = 'sendrecv';
  /** @type {{mid: string, trackId: string, streamId: string, dir: string, open: boolean}|null} */
  let cur = null;
  const flush = () => {
    if (cur && cur.mid !== '') {
      out.set(cur.mid, {
        trackId: cur.trackId,
        streamId: cur.streamId,
        sending: cur.open && (cur.dir === 'sendrecv' || cur.dir === 'sendonly'),
      });
    }
  };
  for (const raw of sdp.split('\n')) {
    const line = raw.endsWith('\r') ? raw.slice(0, -1) : raw;
    if (line.startsWith('m=')) {
      flush();
      const port = line.slice(2).split(' ')[1] ?? '0';
      cur = { mid: '', trackId: '', streamId: '', dir: sessionDir, open: port !== '0' };
    } else if (/^a=(sendrecv|sendonly|recvonly|inactive)$/.test(line)) {
      if (cur) cur.dir = line.slice(2);
      else sessionDir = line.slice(2);
    } else if (cur && line.startsWith('a=mid:')) {
      cur.mid = line.slice('a=mid:'.length).trim();
    } else if (cur && line.startsWith('a=msid:')) {
      const [stream = '', track = ''] = line.slice('a=msid:'.length).trim().split(/\s+/);
      cur.streamId = stream === '-' ? '' : stream;
      cur.trackId = track;
    }
  }
  flush();
  return out;
}
