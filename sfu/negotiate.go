package sfu

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
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
	p.countRefused(refused)
	p.mergeSources(sources)

	if p.pc.SignalingState() == webrtc.SignalingStateHaveLocalOffer {
		// Glare: we are polite; our offer gives way (glare.go).
		if err := p.withdrawOffer(); err != nil {
			return "", fmt.Errorf("sfu: withdrawing our offer: %w", err)
		}
		p.offerPending, p.needOffer = false, true
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
	if !p.started {
		// Subscriptions start with the session: the room's tracks are
		// offered right after this answer.
		p.started = true
		for _, t := range p.room.snapshotTracks() {
			p.subscribeLocked(t)
		}
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
	if li := t.selectLayer(int(d.maxWidth.Load()), nanotime()); li >= 0 {
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
	p.wg.Add(1)
	go d.rtcpLoop()
	p.needOffer = true
	p.scheduleLocked()
}

// slot is a transceiver the server created to send one subscription. When
// the subscription ends its m-line goes inactive, and once that is
// negotiated the slot carries the next subscription of the same kind: the
// number of m-lines follows the number of concurrent subscriptions, not
// their history.
type slot struct {
	tr         *webrtc.RTPTransceiver
	kind       webrtc.RTPCodecType
	down       *downTrack
	removedGen uint64 // p.gen when its last subscription ended
}

// attach gives d a transceiver. p.mu is held.
func (p *Participant) attach(d *downTrack) error {
	for _, s := range p.slots {
		if s.down != nil || s.kind != d.Kind() || p.completedGen <= s.removedGen {
			continue
		}
		sender, err := p.sfu.api.NewRTPSender(d, p.pc.SCTP().Transport())
		if err != nil {
			return err
		}
		if err := s.tr.SetSender(sender, d); err != nil {
			_ = sender.Stop()
			return err
		}
		s.down, d.sender = d, sender
		return nil
	}
	// A transceiver the client offered as recvonly (a client that only
	// receives must offer one): it is negotiated already, and wants media.
	for _, tr := range p.pc.GetTransceivers() {
		if tr.Kind() != d.Kind() || tr.Sender() != nil || tr.Mid() == "" ||
			tr.Direction() != webrtc.RTPTransceiverDirectionSendonly || p.isSlot(tr) {
			continue
		}
		sender, err := p.sfu.api.NewRTPSender(d, p.pc.SCTP().Transport())
		if err != nil {
			return err
		}
		if err := tr.SetSender(sender, d); err != nil {
			_ = sender.Stop()
			return err
		}
		p.slots = append(p.slots, &slot{tr: tr, kind: d.Kind(), down: d})
		d.sender = sender
		return nil
	}
	tr, err := p.pc.AddTransceiverFromTrack(d, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly})
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
	p.slots = append(p.slots, &slot{tr: tr, kind: d.Kind(), down: d})
	d.sender = tr.Sender()
	return nil
}

func (p *Participant) isSlot(tr *webrtc.RTPTransceiver) bool {
	for _, s := range p.slots {
		if s.tr == tr {
			return true
		}
	}
	return false
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
	for _, s := range p.slots {
		if s.down == d {
			s.down, s.removedGen = nil, p.gen
		}
	}
	if p.closed {
		return
	}
	if err := p.pc.RemoveTrack(d.sender); err != nil {
		p.log.Debug("removing a subscription", "err", err)
	}
	p.needOffer = true
	p.scheduleLocked()
}

// containsLine reports whether sdp has line as one of its lines.
func containsLine(sdp, line string) bool {
	return strings.Contains(sdp, line+"\r\n") || strings.Contains(sdp, line+"\n")
}
