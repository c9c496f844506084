package sfu

import (
	"fmt"
	"strings"

	"github.com/pion/ice/v4"
)

// Limits on the SDP a client may send, checked by a line scanner before Pion
// parses anything (catalog case 30). The m-line and size limits grow with
// the m-lines the server itself put into the session (one per track it
// forwards to this participant, reused when freed), since a valid answer or
// re-offer must repeat those: the 16 m-lines and 64 KiB are what the client
// may add on top.
const (
	maxSDPBytes       = 64 << 10
	maxSDPBytesPerOwn = 4 << 10
	maxClientMLines   = 16
	maxSDPCandidates  = 64
)

type sdpLimits struct {
	maxBytes      int
	maxMedia      int
	maxCandidates int
}

// limitsFor returns the limits for a session in which the server owns
// serverMLines m-lines.
func limitsFor(serverMLines int) sdpLimits {
	return sdpLimits{
		maxBytes:      maxSDPBytes + serverMLines*maxSDPBytesPerOwn,
		maxMedia:      maxClientMLines + serverMLines,
		maxCandidates: maxSDPCandidates,
	}
}

// checkSDP refuses, with ErrBadSDP, an SDP that is too big, has too many
// m-lines or candidates, lacks a DTLS fingerprint, carries SDES keys
// (a=crypto) or a media protocol other than UDP/TLS/RTP/SAVPF, or contains
// control characters; also one without m-lines, or with an m-section that
// lacks a mid or ICE credentials (Pion would fail on those half-way through
// applying it, and it cannot roll back). It returns the SDP without the
// candidate lines the remote policy refuses or Pion could not parse, and how
// many it removed.
func checkSDP(sdp string, lim sdpLimits, pol remotePolicy) (string, int, error) {
	if len(sdp) > lim.maxBytes {
		return "", 0, fmt.Errorf("%w: %d bytes (limit %d)", ErrBadSDP, len(sdp), lim.maxBytes)
	}
	if !strings.HasPrefix(sdp, "v=0") {
		return "", 0, fmt.Errorf("%w: does not start with v=0", ErrBadSDP)
	}
	var (
		media, candidates, refused int
		session, section           sdpAttrs // what the session and the current m-section have
		incomplete                 string   // what an m-section lacks
	)
	endSection := func() {
		if media == 0 || incomplete != "" {
			return
		}
		switch {
		case !section.mid:
			incomplete = "a=mid"
		case !section.fingerprint && !session.fingerprint:
			incomplete = "a=fingerprint"
		case !section.ufrag && !session.ufrag, !section.pwd && !session.pwd:
			incomplete = "ICE credentials"
		}
	}
	var drop []bool // per line: a refused candidate; allocated only when needed
	lineNo := 0
	for rest := sdp; rest != ""; lineNo++ {
		line, next, _ := strings.Cut(rest, "\n")
		rest = next
		line = strings.TrimSuffix(line, "\r")
		for i := 0; i < len(line); i++ {
			if c := line[i]; (c < 0x20 && c != '\t') || c == 0x7f {
				return "", 0, fmt.Errorf("%w: control character on line %d", ErrBadSDP, lineNo+1)
			}
		}
		switch {
		case strings.HasPrefix(line, "m="):
			endSection()
			media++
			section = sdpAttrs{}
			if media > lim.maxMedia {
				return "", 0, fmt.Errorf("%w: more than %d m-lines", ErrBadSDP, lim.maxMedia)
			}
			f := strings.Fields(line[2:])
			if len(f) < 4 {
				return "", 0, fmt.Errorf("%w: malformed m-line %d", ErrBadSDP, media)
			}
			if f[0] != "audio" && f[0] != "video" {
				return "", 0, fmt.Errorf("%w: m-line %d is not audio or video", ErrBadSDP, media)
			}
			if f[2] != "UDP/TLS/RTP/SAVPF" {
				return "", 0, fmt.Errorf("%w: m-line %d: protocol refused (UDP/TLS/RTP/SAVPF only)", ErrBadSDP, media)
			}
		case strings.HasPrefix(line, "a=fingerprint:"):
			at(media, &session, &section).fingerprint = true
		case strings.HasPrefix(line, "a=ice-ufrag:"):
			at(media, &session, &section).ufrag = true
		case strings.HasPrefix(line, "a=ice-pwd:"):
			at(media, &session, &section).pwd = true
		case strings.HasPrefix(line, "a=mid:"):
			section.mid = media > 0
		case strings.HasPrefix(line, "a=crypto:"):
			return "", 0, fmt.Errorf("%w: SDES (a=crypto) refused, DTLS-SRTP only", ErrBadSDP)
		case strings.HasPrefix(line, "a=candidate:"):
			candidates++
			if candidates > lim.maxCandidates {
				return "", 0, fmt.Errorf("%w: more than %d candidates", ErrBadSDP, lim.maxCandidates)
			}
			if !pol.candidateAllowed(line) || !parsableCandidate(line) {
				for len(drop) <= lineNo {
					drop = append(drop, false)
				}
				drop[lineNo] = true
				refused++
			}
		}
	}
	endSection()
	if media == 0 {
		// Nothing to start ICE and DTLS on: a client that only receives
		// offers a recvonly transceiver.
		return "", 0, fmt.Errorf("%w: no m-line", ErrBadSDP)
	}
	if incomplete != "" {
		return "", 0, fmt.Errorf("%w: an m-section lacks %s", ErrBadSDP, incomplete)
	}
	if refused == 0 {
		return sdp, 0, nil
	}
	var b strings.Builder
	b.Grow(len(sdp))
	lineNo = 0
	for rest := sdp; rest != ""; lineNo++ {
		line, next, found := strings.Cut(rest, "\n")
		rest = next
		if lineNo < len(drop) && drop[lineNo] {
			continue
		}
		b.WriteString(line)
		if found {
			b.WriteByte('\n')
		}
	}
	return b.String(), refused, nil
}

// sdpAttrs records which of the attributes Pion insists on a level has.
type sdpAttrs struct{ mid, fingerprint, ufrag, pwd bool }

func at(media int, session, section *sdpAttrs) *sdpAttrs {
	if media == 0 {
		return session
	}
	return section
}

// parsableCandidate reports whether Pion can parse a candidate line (it
// fails the whole description when none of them parses).
func parsableCandidate(line string) bool {
	_, err := ice.UnmarshalCandidate(strings.TrimPrefix(line, "a="))
	return err == nil
}
