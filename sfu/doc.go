// Package sfu is Parley's media plane: a selective forwarding unit on Pion.
// It moves packets and reports events; it knows nothing of users, room
// policies, HTTP or SQL. signaling/ drives it through Room and Participant
// and relays the SDP it produces.
//
// # What it owns
//
//   - The media sockets: one UDP port for all media (Pion's ICE UDP mux) and
//     one ICE-TCP port (TCP mux), the candidates announced (PublicIPs for
//     1:1 NAT), the interfaces gathered from, and the remote-address policy.
//   - One PeerConnection per participant, used both to publish and to
//     subscribe. The client makes the first offer; after that the SFU drives
//     renegotiation: whenever a participant's subscriptions change it
//     offers (Events.OnOffer) and the client answers (HandleAnswer).
//   - Forwarding: every published track (Opus audio, VP8/VP9/H.264 video,
//     screen share) goes to every subscribed participant of the room, never
//     back to its publisher, with SSRC, sequence numbers, timestamps and
//     VP8/VP9 picture ids rewritten so a subscriber sees one continuous
//     stream.
//   - Simulcast: a subscriber gets the widest layer (rid) that fits both
//     the width it asks for (RequestLayer) and its share of the bandwidth
//     estimate toward it (bwe.go, twcc.go: a GCC-style send-side estimator
//     on the subscriber's transport-cc feedback, numbered in the forwarding
//     path; receiver-report loss for clients without it,
//     and a cap lifted one layer at a time after quiet periods); switches
//     wait for a keyframe on the target layer, which is requested (PLI)
//     when the choice changes.
//   - Codec restriction (restrict.go): a room may negotiate only some
//     codecs (RestrictCodecs); the client's descriptions lose the others
//     before Pion sees them. End-to-end encrypted meetings use it (VP8,
//     VP9, Opus: the codecs whose clear header bytes the browsers keep, so
//     that keyframe detection keeps working on encrypted frames).
//   - Fan-out: one goroutine reads each published layer and forwards each
//     packet to its subscribers; a large room's copies are made on several
//     cores (fanout.go) when there are several.
//   - RTCP: subscribers' PLI/FIR reach the publisher throttled (one per
//     500 ms per layer); a subscription waiting for a keyframe to start or
//     to switch layers asks for one, throttled to one per 100 ms per layer
//     (a join storm's subscribers start within about 100 ms); NACKs are
//     served from one fixed-size packet cache per incoming RTP stream,
//     whatever the number of subscribers; publishers get receiver reports,
//     TWCC feedback and NACKs from Pion's interceptors, started only when a
//     connection receives a stream; subscribers get sender reports (about
//     one a second, made from the forwarding path's counters: no
//     interceptor in a forwarded packet's write, reports.go) and TWCC
//     sequence numbers (twcc.go).
//
// # Negotiation and glare
//
// The client makes the first offer (HandleOffer); it must carry at least one
// m-line, so a client that only receives offers recvonly transceivers; the
// SFU adds its own for subscriptions and leaves those idle. The
// answer carries all the server's candidates (host candidates on the muxes
// gather at once), so the SFU hardly ever trickles (OnCandidate).
// Subscriptions start with the session: right after the first answer, and
// whenever tracks are published or unpublished, the SFU offers
// (Events.OnOffer, about 30 ms after the change, to batch changes) and the
// client answers (HandleAnswer). Server offers are never produced while
// HandleOffer or HandleAnswer runs, and at most one is outstanding.
//
// The server is the polite peer. If a client offer arrives while a server
// offer is outstanding, the server withdraws its offer, applies the
// client's, answers, and offers again right after; a client that receives a
// server offer while its own is outstanding ignores it (it is the impolite
// peer) and waits for the answer and the new offer. Pion v4.2.26 cannot
// roll back a local offer (it accepts the type, refuses the transition), so
// the withdrawal completes the offer with an answer the SFU builds from the
// client's last description (glare.go): nothing reaches the client, the
// streams it never saw are held until it has really answered, and the
// outcome is the same as a rollback. The transceivers the server adds carry
// their own mids ("s1", "s2", ...), so a withdrawn offer can never collide
// with the mids of the client's next offer.
//
// The server's transceivers are sendrecv: a client may put a track of its
// own on one (a browser's addTrack reuses a transceiver that only
// received), and it is published like any other. When a subscription ends,
// its transceiver's sender is emptied (ReplaceTrack(nil): the m-section
// keeps its direction but loses its a=msid and SSRC); once the client has
// seen that, the transceiver carries the next subscription of the same
// kind, on the same SSRC, continuing its sequence numbers, timestamps and
// picture ids, and held back until the client has applied the offer that
// names it. The number of m-lines follows the number of concurrent
// subscriptions.
// Clients must therefore map received tracks by their transceiver's mid —
// the m-section's a=msid names the publisher's stream (its participant id)
// and the TrackInfo.ID; no a=msid means nothing is sent there now — not by
// MediaStreamTrack.id. Every sender comes from AddTransceiverFromTrack and
// is kept for the transceiver's life, because a sender made with
// API.NewRTPSender would bypass the connection's interceptor chain (when
// sender reports and transport-cc numbering were Pion interceptors, such
// senders had neither).
//
// Pion itself also cannot roll back a remote offer, and fails some offers
// half-way through; the SDP check refuses those before Pion sees them
// (missing mid, ICE credentials or fingerprint, no m-line, unparsable
// candidates).
//
// # What it must never do
//
//   - Send to a remote address the policy refuses: loopback, private
//     (10/8, 172.16/12, 192.168/16, fc00::/7), link-local (169.254/16 with
//     the metadata address 169.254.169.254, fe80::/10), CGNAT (100.64/10),
//     unspecified, multicast, broadcast or reserved, unless the address is
//     inside Config.AllowedRemote. Pion applies the policy to signaled and
//     peer-reflexive candidates (SetRemoteIPFilter); AddCandidate and the
//     SDP check drop refused candidates before Pion sees them; host names
//     are never resolved.
//   - Accept SDP that is oversized, has too many m-lines or candidates, no
//     DTLS fingerprint, SDES keys (a=crypto) or a protocol other than
//     UDP/TLS/RTP/SAVPF: such SDP is refused (ErrBadSDP) by a line scanner
//     before Pion parses it. Media is DTLS-SRTP only, AEAD GCM profiles
//     preferred.
//   - Forward a participant's tracks back to itself, or tracks it is not
//     allowed to publish (Publish, SetPublish, StopTrack).
//   - Allocate per forwarded packet: each incoming stream has one reader
//     goroutine with one reused buffer, subscribers are a copy-on-write
//     slice read without a lock, packets are cached in preallocated slots
//     (BenchmarkForward reports 0 allocs/op).
//   - Leave a goroutine behind: every goroutine belongs to a participant
//     (its stream readers, its RTCP readers, its offer timer, its event
//     goroutine) or to Pion objects the participant closes; Close ends them
//     and SFU.Close waits for all of them.
//   - Log SDP, candidates, ICE passwords or fingerprints at info level or
//     above.
//
// # Not done yet
//
// REMB values are parsed and reported, not used (transport-cc feedback is).
// The SFU does not send padding to probe for bandwidth; the cap is lifted
// by trying the next layer. Temporal layers are forwarded as they come:
// across a layer switch the picture id and TL0PICIDX continue
// (frameids.go), the VP8 KEYIDX does not. Layer switches align timestamps
// by wall clock, not by the publisher's sender reports. Retransmissions go
// out on the primary SSRC, not on the negotiated RTX stream (RFC 4588
// allows either; browsers accept both).
package sfu
