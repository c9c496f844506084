package sfu

import (
	"fmt"
	"strings"
)

// Codec restriction: a room whose sessions may negotiate only some codecs.
// An end-to-end encrypted meeting needs it: its browsers leave a few codec
// header bytes of each frame in the clear (so that keyframe detection and
// layer switching still work) and encrypt the rest, which they can do only
// for codecs whose header they know (VP8, VP9, Opus). The restriction is
// applied to the client's descriptions before Pion sees them, so Pion's
// answer, and every later server offer built from what was negotiated,
// carries the allowed codecs only.

// RestrictCodecs limits the codecs of the room's sessions to mimeTypes
// ("video/VP8", "audio/opus"; compared case-insensitively); the RTX
// streams of allowed codecs stay. Call it before anyone joins: it applies
// to the descriptions applied after the call. No argument lifts the
// restriction.
func (r *Room) RestrictCodecs(mimeTypes ...string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(mimeTypes) == 0 {
		r.codecs = nil
		return
	}
	r.codecs = append([]string(nil), mimeTypes...)
}

// allowedCodecs is the room's restriction, nil when there is none.
func (r *Room) allowedCodecs() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.codecs
}

// restrictSDP removes from every audio and video m-section of sdp the
// payload types whose codec is not in allowed (MIME types), with their
// rtpmap, fmtp and rtcp-fb lines; an RTX payload type stays when the one it
// repairs (apt) stays. An m-section in use (port not 0) that keeps no
// payload type is refused with ErrBadSDP. Other sections are untouched.
func restrictSDP(sdp string, allowed []string) (string, error) {
	eol := "\n"
	if strings.Contains(sdp, "\r\n") {
		eol = "\r\n"
	}
	lines := strings.Split(strings.TrimSuffix(strings.ReplaceAll(sdp, "\r\n", "\n"), "\n"), "\n")
	var out []string
	start := 0
	for start < len(lines) {
		end := start + 1
		for end < len(lines) && !strings.HasPrefix(lines[end], "m=") {
			end++
		}
		section := lines[start:end]
		if strings.HasPrefix(section[0], "m=") {
			kept, err := restrictSection(section, allowed)
			if err != nil {
				return "", err
			}
			out = append(out, kept...)
		} else {
			out = append(out, section...) // the session part
		}
		start = end
	}
	return strings.Join(out, eol) + eol, nil
}

// restrictSection applies restrictSDP to one m-section (its m= line first).
func restrictSection(section []string, allowed []string) ([]string, error) {
	fields := strings.Fields(strings.TrimPrefix(section[0], "m="))
	if len(fields) < 4 || fields[0] != "audio" && fields[0] != "video" {
		return section, nil
	}
	kind := fields[0]
	codec := map[string]string{} // payload type → encoding name
	apt := map[string]string{}   // RTX payload type → the one it repairs
	for _, l := range section[1:] {
		if pt, rest, ok := ptAttr(l, "a=rtpmap:"); ok {
			name, _, _ := strings.Cut(rest, "/")
			codec[pt] = name
		}
		if pt, rest, ok := ptAttr(l, "a=fmtp:"); ok {
			for _, kv := range strings.Split(rest, ";") {
				if k, v, ok := strings.Cut(strings.TrimSpace(kv), "="); ok && strings.EqualFold(k, "apt") {
					apt[pt] = v
				}
			}
		}
	}
	allows := func(name string) bool {
		for _, m := range allowed {
			if strings.EqualFold(m, kind+"/"+name) {
				return true
			}
		}
		return false
	}
	keep := map[string]bool{}
	var pts []string
	for _, pt := range fields[3:] {
		if allows(codec[pt]) {
			keep[pt] = true
		}
	}
	for _, pt := range fields[3:] {
		if strings.EqualFold(codec[pt], "rtx") && keep[apt[pt]] {
			keep[pt] = true
		}
		if keep[pt] {
			pts = append(pts, pt)
		}
	}
	if len(pts) == 0 {
		if fields[1] == "0" {
			return section, nil // rejected: nothing is negotiated there
		}
		return nil, fmt.Errorf("%w: a %s section offers no codec this room allows (%s)", ErrBadSDP, kind, strings.Join(allowed, ", "))
	}
	out := []string{"m=" + strings.Join(append(fields[:3:3], pts...), " ")}
	for _, l := range section[1:] {
		dropped := false
		for _, prefix := range []string{"a=rtpmap:", "a=fmtp:", "a=rtcp-fb:"} {
			if pt, _, ok := ptAttr(l, prefix); ok && pt != "*" && !keep[pt] {
				dropped = true
			}
		}
		if !dropped {
			out = append(out, l)
		}
	}
	return out, nil
}

// ptAttr splits an attribute line "a=<name>:<pt> <rest>" with the given
// prefix into the payload type and the rest.
func ptAttr(line, prefix string) (pt, rest string, ok bool) {
	v, found := strings.CutPrefix(line, prefix)
	if !found {
		return "", "", false
	}
	pt, rest, _ = strings.Cut(v, " ")
	return pt, rest, true
}
