package sfu

import (
	"errors"
	"strconv"
	"strings"

	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
)

// Glare, and why there is no SetLocalDescription(rollback) here: Pion
// v4.2.26 accepts the "rollback" type but its signaling state machine refuses
// every rollback transition, so a PeerConnection in have-local-offer can only
// return to stable through an answer. When a client offer meets our
// outstanding offer, withdrawOffer therefore completes our offer with an
// answer built locally from what the client last agreed to: every m-section
// the client knows keeps the client's own last description (its SSRCs,
// rids, ICE credentials, fingerprint), with the direction our offer now
// asks for; the m-sections it has never seen are answered as if accepted.
// Nothing reaches the client; the session is back to stable, the client's
// offer is applied, and the changes are offered again right after. The
// streams the client has never seen are held (not forwarded) until it has
// really answered, then start on a keyframe (Participant.rekey).

var errNoRemote = errors.New("sfu: no remote description to withdraw an offer against")

// withdrawOffer returns the session to stable. p.mu is held and the
// signaling state is have-local-offer.
func (p *Participant) withdrawOffer() error {
	local, remote := p.pc.PendingLocalDescription(), p.pc.CurrentRemoteDescription()
	if local == nil || remote == nil {
		return errNoRemote
	}
	// The SSRCs the client has seen are in our last completed description.
	seen := ""
	if cl := p.pc.CurrentLocalDescription(); cl != nil {
		seen = cl.SDP
	}
	answer, err := localAnswer(local.SDP, remote.SDP)
	if err != nil {
		return err
	}
	// Hold the streams the client has not seen before Pion starts them.
	for _, s := range p.slots {
		if s.down == nil {
			continue
		}
		enc := s.down.sender.GetParameters().Encodings
		if len(enc) > 0 && !strings.Contains(seen, "a=ssrc:"+strconv.FormatUint(uint64(enc[0].SSRC), 10)+" ") {
			s.down.hold()
			p.rekey = append(p.rekey, s.down)
		}
	}
	return p.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer})
}

// localAnswer builds the answer the client would have given to offer,
// from remote, the client's last description.
func localAnswer(offer, remote string) (string, error) {
	var o, r sdp.SessionDescription
	if err := o.UnmarshalString(offer); err != nil {
		return "", err
	}
	if err := r.UnmarshalString(remote); err != nil {
		return "", err
	}
	byMid := map[string]*sdp.MediaDescription{}
	for _, m := range r.MediaDescriptions {
		if mid, ok := m.Attribute(sdp.AttrKeyMID); ok {
			byMid[mid] = m
		}
	}
	// Transport parameters of the client's session: ICE credentials,
	// fingerprint and DTLS role, at session level or in its first section.
	transport := map[string]string{}
	for _, key := range []string{"ice-ufrag", "ice-pwd", "fingerprint", "setup", "ice-options"} {
		if v, ok := r.Attribute(key); ok {
			transport[key] = v
		} else if len(r.MediaDescriptions) > 0 {
			if v, ok := r.MediaDescriptions[0].Attribute(key); ok {
				transport[key] = v
			}
		}
	}

	a := sdp.SessionDescription{
		Version:               r.Version,
		Origin:                r.Origin,
		SessionName:           r.SessionName,
		TimeDescriptions:      r.TimeDescriptions,
		ConnectionInformation: r.ConnectionInformation,
	}
	a.Origin.SessionVersion++
	mids := make([]string, 0, len(o.MediaDescriptions))
	for _, om := range o.MediaDescriptions {
		mid, _ := om.Attribute(sdp.AttrKeyMID)
		mids = append(mids, mid)
		ours := directionOf(om)
		if rm := byMid[mid]; rm != nil {
			m := *rm
			m.Attributes = withDirection(rm.Attributes, answerDirection(ours, directionOf(rm)))
			a.MediaDescriptions = append(a.MediaDescriptions, &m)
			continue
		}
		m := *om
		m.Attributes = nil
		for _, at := range om.Attributes {
			switch at.Key {
			case "ssrc", "ssrc-group", "msid", "ice-ufrag", "ice-pwd", "fingerprint", "setup",
				"candidate", "end-of-candidates", "rid", "simulcast", "ice-options",
				"sendonly", "recvonly", "sendrecv", "inactive":
				continue
			}
			m.Attributes = append(m.Attributes, at)
		}
		for _, key := range []string{"ice-ufrag", "ice-pwd", "fingerprint", "setup"} {
			if v, ok := transport[key]; ok {
				m.Attributes = append(m.Attributes, sdp.NewAttribute(key, v))
			}
		}
		m.Attributes = append(m.Attributes, sdp.NewPropertyAttribute(answerDirection(ours, "inactive")))
		a.MediaDescriptions = append(a.MediaDescriptions, &m)
	}
	for _, at := range r.Attributes {
		if at.Key != "group" {
			a.Attributes = append(a.Attributes, at)
		}
	}
	a.Attributes = append(a.Attributes, sdp.NewAttribute("group", "BUNDLE "+strings.Join(mids, " ")))
	out, err := a.Marshal()
	if err != nil {
		return "", err
	}
	return string(out), nil
}

// answerDirection is the client's direction in an answer to our direction
// ours, given what it last said (theirs): it receives whatever we send, and
// keeps sending only where it did and we still receive.
func answerDirection(ours, theirs string) string {
	weSend := ours == "sendonly" || ours == "sendrecv"
	weRecv := ours == "recvonly" || ours == "sendrecv"
	theySend := weRecv && (theirs == "sendonly" || theirs == "sendrecv")
	switch {
	case weSend && theySend:
		return "sendrecv"
	case weSend:
		return "recvonly"
	case theySend:
		return "sendonly"
	}
	return "inactive"
}

func directionOf(m *sdp.MediaDescription) string {
	for _, at := range m.Attributes {
		switch at.Key {
		case "sendonly", "recvonly", "sendrecv", "inactive":
			return at.Key
		}
	}
	return "sendrecv"
}

func withDirection(attrs []sdp.Attribute, dir string) []sdp.Attribute {
	out := make([]sdp.Attribute, 0, len(attrs)+1)
	for _, at := range attrs {
		switch at.Key {
		case "sendonly", "recvonly", "sendrecv", "inactive":
			continue
		}
		out = append(out, at)
	}
	return append(out, sdp.NewPropertyAttribute(dir))
}
