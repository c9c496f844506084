package sfu

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/pion/webrtc/v4"
)

const (
	// offerDelay batches subscription changes into one server offer, and
	// lets the answer HandleOffer returned reach the client first.
	offerDelay = 30 * time.Millisecond
	// gatherTimeout bounds the wait for our candidates (host candidates
	// on the muxes: normally immediate).
	gatherTimeout = 2 * time.Second
	// maxTrickled bounds the candidates a client may trickle.
	maxTrickled = maxSDPCandidates
	// maxCandidateLen bounds one trickled candidate line.
	maxCandidateLen = 512
)

var errNoOffer = errors.New("sfu: no server offer is outstanding")

// HandleOffer applies a client offer (the first one, or a client-initiated
// renegotiation such as adding a screen share) and returns the answer, with
// the server's candidates in it. sources maps msid track ids to
// "microphone", "camera" or "screen".
//
// Glare: if a server offer is outstanding, the server (the polite side)
// withdraws it (glare.go), applies the client's offer, answers, and offers
// again afterwards.
func (p *Participant) HandleOffer(sdp string, sources map[string]string) (string, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return "", ErrClosed
	}
	clean, refused, err := checkSDP(sdp, limitsFor(len(p.slots)), p.sfu.policy)
	if err != nil {
		p.log.Info("offer refused", "err", err)
		return "", err
	}
	if allowed := p.room.allowedCodecs(); allowed != nil {
		if clean, err = restrictSDP(clean, allowed); err != nil {
			p.log.Info("offer refused", "err", err)
			return "", err
		}
	}
	p.countRefused(refused)
	p.mergeSources(sources)

	if p.pc.SignalingState() == webrtc.SignalingStateHaveLocalOffer {
		// Glare: we are polite; our offer gives way (glare.go).
		if err := p.withdrawOffer(); err != nil {
			return "", fmt.Errorf("sfu: withdrawing our offer: %w", err)
		}
		p.offerPending, p.needOffer = false, true
		for _, s := range p.slots {
			if s.awaiting {
				s.holdGen = 0 // the client never saw that offer
			}
		}
		p.log.Debug("glare: withdrew the server offer")
	}
	// checkSDP has made sure Pion will not fail half-way (missing mid, ICE
	// credentials, unparsable candidates): Pion cannot roll back a remote
	// offer either.
	if err := p.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: clean}); err != nil {
		return "", p.pionRefused("offer", err)
	}
	answer, err := p.pc.CreateAnswer(nil)
	if err != nil {
		return "", p.pionRefused("offer", err)
	}
	var gathered <-chan struct{}
	if !p.started {
		gathered = webrtc.GatheringCompletePromise(p.pc)
	}
	if err := p.pc.SetLocalDescription(answer); err != nil {
		return "", p.pionRefused("offer", err)
	}
	if gathered != nil {
		t := time.NewTimer(gatherTimeout)
		select {
		case <-gathered:
		case <-t.C:
			p.log.Warn("ICE gathering is slow; the rest of our candidates will be trickled")
		}
		t.Stop()
	}
	p.gen++
	p.completedGen = p.gen
	p.releaseStarted() // a withdrawn offer (glare) was completed too
	if !p.started {
		// Subscriptions start with the session: the room's tracks are
		// offered right after this answer.
		p.started = true
		for _, t := range p.room.snapshotTracks() {
			p.subscribeLocked(t)
		}
		p.armReportsLocked(reportInterval)
	}
	answerSDP := p.pc.LocalDescription().SDP
	p.lastLocal.Store(&answerSDP)
	if p.needOffer {
		p.scheduleLocked()
	}
	return answerSDP, nil
}

// HandleAnswer applies the client's answer to the server's last offer.
func (p *Participant) HandleAnswer(sdp string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return ErrClosed
	}
	clean, refused, err := checkSDP(sdp, limitsFor(len(p.slots)), p.sfu.policy)
	if err != nil {
		p.log.Info("answer refused", "err", err)
		return err
	}
	if !p.offerPending || p.pc.SignalingState() != webrtc.SignalingStateHaveLocalOffer {
		return errNoOffer
	}
	if allowed := p.room.allowedCodecs(); allowed != nil {
		if clean, err = restrictSDP(clean, allowed); err != nil {
			p.log.Info("answer refused", "err", err)
			return err
		}
	}
	p.countRefused(refused)
	if err := p.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: clean}); err != nil {
		// The offer stays outstanding (the client may answer again, or
		// offer, which withdraws ours) unless Pion failed after leaving
		// have-local-offer.
		if p.pc.SignalingState() == webrtc.SignalingStateStable {
			p.offerPending, p.needOffer = false, true
		}
		return p.pionRefused("answer", err)
	}
	p.offerPending = false
	p.completedGen = p.offerGen
	p.releaseStarted()
	p.releaseDescribed()
	for _, d := range p.rekey {
		d.release()
	}
	p.rekey = nil
	if p.needOffer {
		p.scheduleLocked()
	}
	return nil
}

// AddCandidate adds a trickled client candidate. Candidates whose address
// the remote policy refuses, host names, and those beyond the limit are
// dropped silently (and counted).
func (p *Participant) AddCandidate(c webrtc.ICECandidateInit) error {
	if strings.TrimSpace(c.Candidate) == "" {
		return nil // end of candidates
	}
	if len(c.Candidate) > maxCandidateLen {
		return fmt.Errorf("%w: candidate too long", ErrBadSDP)
	}
	if !p.sfu.policy.candidateAllowed(c.Candidate) || p.trickled.Add(1) > maxTrickled {
		p.countRefused(1)
		return nil
	}
	if p.isClosed() {
		return ErrClosed
	}
	if err := p.pc.AddICECandidate(c); err != nil {
		p.log.Debug("candidate refused by Pion", "err", err)
		return fmt.Errorf("%w: candidate not applicable", ErrBadSDP)
	}
	return nil
}

// pionRefused logs (at debug: Pion's errors may quote the SDP) why Pion
// would not apply a description and returns ErrBadSDP without the details.
func (p *Participant) pionRefused(what string, err error) error {
	p.log.Info(what+" refused by Pion", "state", p.pc.SignalingState().String())
	p.log.Debug(what+" refused by Pion", "err", err)
	return fmt.Errorf("%w: %s could not be applied", ErrBadSDP, what)
}

func (p *Participant) countRefused(n int) {
	if n > 0 {
		p.refusedCandidates.Add(uint64(n))
		p.log.Debug("remote candidates refused by the address policy", "count", n)
	}
}

// scheduleLocked arranges a server offer after offerDelay. p.mu is held.
// Before the first client offer is answered there is nothing to offer on.
func (p *Participant) scheduleLocked() {
	if p.closed || !p.started || p.timer != nil {
		return
	}
	p.wg.Add(1)
	p.timer = time.AfterFunc(offerDelay, func() {
		defer p.wg.Done()
		p.negotiate()
	})
}

// negotiate makes a server offer if subscriptions changed and the session
// is stable; otherwise the answer or offer in progress calls it again.
func (p *Participant) negotiate() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.timer = nil
	if p.closed || !p.needOffer || p.offerPending || p.pc.SignalingState() != webrtc.SignalingStateStable {
		return
	}
	offer, err := p.pc.CreateOffer(nil)
	if err == nil {
		err = p.pc.SetLocalDescription(offer)
	}
	if err != nil {
		p.log.Warn("creating a server offer", "err", err)
		return
	}
	p.gen++
	p.offerGen = p.gen
	p.offerPending, p.needOffer = true, false
	for _, s := range p.slots {
		if s.offeredGen == 0 {
			s.offeredGen = p.gen
		}
		if s.awaiting && s.holdGen == 0 {
			s.holdGen = p.gen
		}
	}
	sdp := p.pc.LocalDescription().SDP
	p.lastLocal.Store(&sdp)
	p.log.Debug("server offer", "m_lines", strings.Count(sdp, "\nm="))
	p.events.push(func() { p.ev.OnOffer(sdp) })
}

// subscribeTo starts forwarding t to p: a downtrack on a free transceiver
// of ours (or a new one), announced to the client by the next server offer.
// Before the client's first offer nothing happens: HandleOffer subscribes
// to the room's tracks then.
func (p *Participant) subscribeTo(t *publishedTrack) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.subscribeLocked(t)
}

func (p *Participant) subscribeLocked(t *publishedTrack) {
	if t.owner == p {
		return // never a participant's own tracks
	}
	if p.closed || !p.started || !p.subscribed || p.down[t] != nil {
		return
	}
	d := newDownTrack(t, p)
	if w, ok := p.prefs[t.info.ID]; ok {
		d.maxWidth.Store(int32(w))
	}
	if li := t.selectLayer(int(d.maxWidth.Load()), 0, nanotime()); li >= 0 {
		d.target.Store(int32(li))
	}
	if !t.addDown(d) {
		return // unpublished meanwhile
	}
	if err := p.attach(d); err != nil {
		t.removeDown(d)
		p.log.Warn("subscribing to a track", "track", t.info.ID, "err", err)
		return
	}
	p.down[t] = d
	p.countDown(d, 1)
	p.needOffer = true
	p.scheduleLocked()
}

// slot is a transceiver the server created to send subscriptions. When a
// subscription ends, the slot's sender stops (its m-line keeps no msid or
// SSRC), and once that is negotiated the slot carries the next
// subscription of the same kind: the number of m-lines follows the number
// of concurrent subscriptions, not their history.
//
// A slot keeps its RTPSender for life and changes tracks with ReplaceTrack:
// a sender made outside PeerConnection.AddTrack/AddTransceiverFromTrack
// would bypass the connection's interceptors (no sender reports, no
// transport-cc numbering, no bandwidth estimate). The next subscription
// continues the slot's sequence numbers and timestamps (downTrack.resume).
type slot struct {
	tr         *webrtc.RTPTransceiver
	sender     *webrtc.RTPSender
	kind       webrtc.RTPCodecType
	down       *downTrack // under p.mu
	last       *downTrack // the slot's previous subscription, under p.mu
	removedGen uint64     // p.gen when its last subscription ended
	offeredGen uint64     // p.gen of the first offer that carried it; 0: none yet
	releasing  bool       // its subscription ended before its sender started
	// A subscription that reuses the slot is held (not forwarded) until the
	// client has applied an offer that describes it: packets on the reused
	// SSRC before that reach a receiver the client has just stopped.
	awaiting bool
	holdGen  uint64 // p.gen of the offer that describes it; 0: not offered yet
	cur      atomic.Pointer[downTrack]
}

// releaseDescribed starts the held subscriptions the client now knows
// (completedGen reached the offer that described them). p.mu is held.
func (p *Participant) releaseDescribed() {
	for _, s := range p.slots {
		if s.awaiting && s.holdGen != 0 && s.holdGen <= p.completedGen {
			s.awaiting, s.holdGen = false, 0
			if s.down != nil {
				s.down.release()
			}
		}
	}
}

// started reports whether the slot's sender has started: an offer carrying
// it was answered. Pion refuses to start a sender without a track, so a
// slot is emptied (ReplaceTrack(nil)) only once it has.
func (s *slot) started(completedGen uint64) bool {
	return s.offeredGen != 0 && s.offeredGen <= completedGen
}

// release empties a slot whose subscription ended; it can carry another
// once the client has seen it empty. p.mu is held.
func (p *Participant) release(s *slot) {
	s.releasing = false
	s.removedGen = p.gen
	s.cur.Store(nil)
	if err := s.sender.ReplaceTrack(nil); err != nil {
		p.log.Debug("emptying a transceiver", "err", err)
	}
	p.needOffer = true
}

// releaseStarted empties the slots that waited for their sender to start
// (after a negotiation completed). p.mu is held.
func (p *Participant) releaseStarted() {
	for _, s := range p.slots {
		if s.releasing && s.started(p.completedGen) {
			p.release(s)
		}
	}
}

// attach gives d a transceiver: a free slot whose release the client has
// seen, else a new one. p.mu is held.
func (p *Participant) attach(d *downTrack) error {
	for _, s := range p.slots {
		if s.down != nil || s.releasing || s.kind != d.Kind() || p.completedGen <= s.removedGen {
			continue
		}
		d.resume(s.last)
		d.hold()
		d.sender = s.sender
		if err := s.sender.ReplaceTrack(d); err != nil {
			return err
		}
		s.down, s.awaiting, s.holdGen = d, true, 0
		s.cur.Store(d)
		return nil
	}
	// sendrecv, not sendonly: the transceiver then has a receiver, so that
	// a client that puts a track of its own on this m-line (a browser's
	// addTrack reuses a transceiver that only received) publishes it like
	// any other, instead of its media arriving nowhere.
	tr, err := p.pc.AddTransceiverFromTrack(d, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendrecv})
	if err != nil {
		return err
	}
	// Our own mids ("s1", "s2"...) never collide with the client's numeric
	// ones, even when a withdrawn offer had already named them (glare).
	p.midSeq++
	if err := tr.SetMid("s" + strconv.Itoa(p.midSeq)); err != nil {
		_ = p.pc.RemoveTrack(tr.Sender())
		return err
	}
	s := &slot{tr: tr, sender: tr.Sender(), kind: d.Kind(), down: d}
	s.cur.Store(d)
	d.sender = s.sender
	p.slots = append(p.slots, s)
	p.wg.Add(1)
	go s.rtcpLoop(p)
	return nil
}

// rtcpLoop reads the subscriber's RTCP for this slot until the sender
// stops, and hands it to the slot's current subscription. Owned by the
// participant (its wg).
func (s *slot) rtcpLoop(p *Participant) {
	defer p.wg.Done()
	buf := make([]byte, maxPacketSize)
	readLoop(func() error {
		n, _, err := s.sender.Read(buf)
		if err == nil {
			if d := s.cur.Load(); d != nil {
				d.handleRTCP(buf[:n])
			}
		}
		return err
	}, nil)
}

// removeDownTrack ends one subscription.
func (p *Participant) removeDownTrack(d *downTrack) {
	d.track.removeDown(d)
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.down[d.track] != d {
		return
	}
	delete(p.down, d.track)
	p.countDown(d, -1)
	if p.closed {
		return
	}
	for _, s := range p.slots {
		if s.down != d {
			continue
		}
		s.down, s.last = nil, d
		s.cur.Store(nil)
		if s.started(p.completedGen) {
			p.release(s)
		} else {
			s.releasing = true // d stays bound, forwarding nothing, until then
		}
	}
	p.needOffer = true
	p.scheduleLocked()
}

// containsLine reports whether sdp has line as one of its lines.
func containsLine(sdp, line string) bool {
	return strings.Contains(sdp, line+"\r\n") || strings.Contains(sdp, line+"\n")
}
