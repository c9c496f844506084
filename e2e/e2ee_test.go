package e2e

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	cdppage "github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
)

var flagTapBin = flag.String("parley-tap-bin", "../bin/parley-e2etap",
	"path to a parley binary built with -tags parley_e2etap (it writes the media it forwards to <data-dir>/e2etap)")

// e2eeHook is a JavaScript expression for the meeting page's test hooks
// (e2ee.js testHooks): the page's own module, imported again (modules are
// evaluated once, so this is the instance the page uses).
const e2eeHook = `(await import('/static/js/e2ee.js')).testHooks`

// keyIDs reads the sender key id a page sends with and the key ids it
// holds per sender.
func keyIDs(p *page) (sending float64, received map[string]any) {
	p.t.Helper()
	v := evalAwait[map[string]any](p, "read the key ids", `(async () => (await `+e2eeHook+`.keyIds()))()`)
	s, _ := v["sending"].(float64)
	r, _ := v["received"].(map[string]any)
	return s, r
}

// safetyCodeOf reads the safety code a page shows.
func safetyCodeOf(p *page) string {
	p.t.Helper()
	return eval[string](p, "read the safety code", `document.getElementById('e2ee-safety-code').textContent`)
}

// tapFrames reads the frames the test build's tap wrote for one of a
// participant's tracks (<participant>.<source>.<codec>.frames).
func tapFrames(t *testing.T, srv *parleyServer, participant, source, codec string) [][]byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(srv.dataDir, "e2etap", participant+"."+source+"."+codec+".frames"))
	if err != nil {
		return nil
	}
	var out [][]byte
	for len(b) >= 4 {
		n := int(binary.BigEndian.Uint32(b))
		if len(b) < 4+n {
			t.Fatalf("a truncated tap file")
		}
		out = append(out, b[4:4+n])
		b = b[4+n:]
	}
	return out
}

// trailer of an encrypted frame: IV (12) ‖ key id (4) ‖ 0xE2.
func frameTrailer(f []byte) (iv []byte, keyID uint32, ok bool) {
	if len(f) < 17+16 || f[len(f)-1] != 0xe2 {
		return nil, 0, false
	}
	t := f[len(f)-17:]
	return t[:12], binary.BigEndian.Uint32(t[12:16]), true
}

// vp8Key: the frame's clear header shows a keyframe (P bit 0, start code).
func vp8Key(f []byte) bool {
	return len(f) >= 10 && f[0]&1 == 0 && f[3] == 0x9d && f[4] == 0x01 && f[5] == 0x2a
}

// TestE2EE is the acceptance test of end-to-end encrypted meetings, with
// the test build of the server whose tap writes what the SFU forwards.
// Two people meet in an end-to-end encrypted room: each decodes the
// other's video and both pages show the same safety code. The VP8 frames
// and Opus packets the server forwards are ciphertext: each carries the
// trailer with the sender's key id and an IV never repeated under one
// key, the clear header still shows keyframes to the SFU, a receiver's page
// decrypts a captured frame into other bytes (so it was encrypted with the
// key the participants share and the server never had), and the same
// frame with one bit flipped, or opened with a wrong key, does not decrypt.
// Recording is refused. A page whose key for a sender was replaced with a
// wrong one decodes no more of that sender's frames and says it cannot
// decrypt them. A browser without encoded transforms may not join, and is
// told why. A third person joins (everyone's codes agree again, the
// senders' keys ratchet) and leaves: the others' sender key ids change to
// a new generation, and the page that could not decrypt decodes again with
// the new key.
func TestE2EE(t *testing.T) {
	_, chromium := environment(t)
	tapBin, err := filepath.Abs(*flagTapBin)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(tapBin); err != nil {
		t.Fatalf("no test build of parley at %s (-parley-tap-bin): build it with "+
			"`go build -tags parley_e2etap -o bin/parley-e2etap ./cmd/parley` or run `make e2e`", tapBin)
	}
	began := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	t.Cleanup(cancel)

	srv := startParley(ctx, t, tapBin, meetingServerFlags...)
	host, member := browserPage(ctx, t, chromium), browserPage(ctx, t, chromium)
	hostAcct := account{username: "erin.encrypted", displayName: "Erin Encrypted", password: "quartz falcon meadow 2231"}
	memberAcct := account{username: "mo.member", displayName: "Mo Member", password: "ribbon cactus harbor 8842"}
	thirdAcct := account{username: "tess.third", displayName: "Tess Third", password: "walnut pylon sonnet 6617"}
	setUpFirstAdmin(ctx, host, srv, hostAcct)
	srv.addUserWithPassword(ctx, t, memberAcct)
	srv.addUserWithPassword(ctx, t, thirdAcct)
	signInFirstTime(ctx, member, srv, memberAcct)

	status, body := pageAPI(host, "POST", "/api/v1/rooms", map[string]any{"name": "Sealed ward round", "e2ee": true})
	if status != 201 || !strings.Contains(body, `"e2ee":true`) {
		t.Fatalf("creating the end-to-end encrypted room: %d %s", status, body)
	}
	roomID := between(body, `"id":"`, `"`)
	for _, u := range []string{memberAcct.username, thirdAcct.username} {
		if status, body := pageAPI(host, "PUT", "/api/v1/rooms/"+roomID+"/members/"+u, map[string]string{"role": "member"}); status != 200 {
			t.Fatalf("adding %s: %d %s", u, status, body)
		}
	}

	// ---- Two people meet: each decodes the other; equal safety codes. ----
	installRecorder(host)
	installRecorder(member)
	host.do("host: open the meeting", chromedp.Navigate(srv.publicURL+"/rooms/"+roomID), chromedp.WaitVisible(chromedp.ID("prejoin")))
	if !eval[bool](host, "host: the pre-join notice", `!document.getElementById('e2ee-notice').hidden && document.getElementById('e2ee-unsupported').hidden`) {
		t.Error("the pre-join screen does not say the meeting is end-to-end encrypted")
	}
	member.do("member: open the meeting", chromedp.Navigate(srv.publicURL+"/rooms/"+roomID))
	joinMeeting(host, "host", hostAcct.displayName, true)
	joinMeeting(member, "member", memberAcct.displayName, true)
	hostID, memberID := selfID(host), selfID(member)
	expectDecodes(member, "member", host, "host", hostID)
	expectDecodes(host, "host", member, "member", memberID)
	var code string
	waitUntil(host, "both pages show the same safety code", 10*time.Second, func() bool {
		code = safetyCodeOf(host)
		return code != "" && code == safetyCodeOf(member)
	})
	t.Logf("safety code of two: %s", code)
	if len(strings.Fields(code)) != 6 {
		t.Errorf("the safety code %q is not six groups", code)
	}
	for _, p := range []*page{host, member} {
		if !eval[bool](p, "the meeting shows it is encrypted", `!document.getElementById('e2ee-indicator').hidden && !document.getElementById('e2ee-panel').hidden && document.getElementById('toggle-recording').hidden`) {
			t.Error("a page does not show the meeting as end-to-end encrypted, or offers to record it")
		}
	}
	host.screenshot("e2ee-host.png")

	// ---- What the server forwards is ciphertext. ----
	var video, audio [][]byte
	hostSending, _ := keyIDs(host)
	waitUntil(host, "the tap captures 60 VP8 frames (a keyframe among them) under the host's key and 50 Opus packets", 30*time.Second, func() bool {
		video = tapFrames(t, srv, hostID, "camera", "vp8")
		audio = tapFrames(t, srv, hostID, "microphone", "opus")
		n, k := 0, 0
		for _, f := range video {
			if _, id, ok := frameTrailer(f); ok && id == uint32(hostSending) {
				n++
				if vp8Key(f) {
					k++
				}
			}
		}
		return n >= 60 && k >= 1 && len(audio) >= 50
	})
	ivs := map[uint32]map[string][]byte{} // key id → IV → the frame
	keys := 0
	var keyFrame, deltaFrame []byte
	for i, f := range video {
		iv, id, ok := frameTrailer(f)
		if !ok {
			t.Fatalf("forwarded VP8 frame %d (%d bytes) has no encryption trailer: % x…", i, len(f), f[:min(len(f), 24)])
		}
		if ivs[id] == nil {
			ivs[id] = map[string][]byte{}
		}
		if seen, ok := ivs[id][string(iv)]; ok && !bytes.Equal(seen, f) {
			// (The same frame twice is a retransmission the SFU forwarded.)
			t.Fatalf("frame %d repeats an IV under key %#x for other content", i, id)
		}
		ivs[id][string(iv)] = f
		// The member holds the keys from its arrival on (the host's key
		// ratcheted then): frames under the key the host sends with now.
		if id != uint32(hostSending) {
			continue
		}
		if vp8Key(f) {
			keys++
			keyFrame = f
		} else if deltaFrame == nil || len(f) > len(deltaFrame) {
			deltaFrame = f
		}
	}
	for i, f := range audio {
		if _, id, ok := frameTrailer(f); !ok || ivs[id] == nil && uint32(hostSending)>>8 != id>>8 {
			t.Fatalf("forwarded Opus packet %d has no trailer of the host's keys: % x", i, f[:min(len(f), 24)])
		}
	}
	if _, last, _ := frameTrailer(video[len(video)-1]); float64(last) != hostSending && last>>8 != uint32(hostSending)>>8 {
		t.Errorf("the last captured frame has key id %#x; the host's page sends with %#x", last, uint32(hostSending))
	}
	t.Logf("the tap captured %d VP8 frames (%d keyframes under the current key seen by their clear header, %d key ids) and %d Opus packets; all encrypted, no IV repeated",
		len(video), keys, len(ivs), len(audio))
	if keyFrame == nil || deltaFrame == nil {
		t.Fatalf("the tap saw %d keyframes; want a keyframe and a delta frame", keys)
	}
	for _, c := range []struct {
		name  string
		frame []byte
		typ   string
		clear int
	}{{"keyframe", keyFrame, "key", 10}, {"delta frame", deltaFrame, "delta", 3}} {
		b64 := base64.RawURLEncoding.EncodeToString(c.frame)
		plain := evalAwait[string](member, "member: decrypt a captured "+c.name,
			`(async () => (await `+e2eeHook+`.decrypt(`+js(hostID)+`, `+js(b64)+`, 'video', `+js(c.typ)+`)))()`)
		pt, err := base64.RawURLEncoding.DecodeString(plain)
		if err != nil {
			t.Fatal(err)
		}
		if len(pt) != len(c.frame)-16-17 || !bytes.Equal(pt[:c.clear], c.frame[:c.clear]) {
			t.Fatalf("the %s decrypts to %d bytes (from %d): not the frame the sender encoded", c.name, len(pt), len(c.frame))
		}
		if bytes.Equal(pt[c.clear:], c.frame[c.clear:len(pt)]) {
			t.Errorf("the %s's bytes after the clear header are the same encrypted and decrypted", c.name)
		}
		flipped := append([]byte(nil), c.frame...)
		flipped[c.clear+len(pt)/3] ^= 0x01
		got := evalAwait[string](member, "member: decrypt a captured "+c.name+" with one bit flipped",
			`(async () => { try { return await `+e2eeHook+`.decrypt(`+js(hostID)+`, `+js(base64.RawURLEncoding.EncodeToString(flipped))+`, 'video', `+js(c.typ)+`); } catch (e) { return 'refused: ' + e.message; } })()`)
		if !strings.HasPrefix(got, "refused: ") {
			t.Errorf("a captured %s with a flipped bit decrypted (%d characters)", c.name, len(got))
		}
		// Any key but the participants': AES-GCM refuses.
		wrong := make([]byte, 32)
		rand.Read(wrong)
		block, _ := aes.NewCipher(wrong)
		gcm, _ := cipher.NewGCM(block)
		iv, _, _ := frameTrailer(c.frame)
		end := len(c.frame) - 17
		if _, err := gcm.Open(nil, iv, c.frame[c.clear:end], c.frame[:c.clear]); err == nil {
			t.Errorf("a captured %s decrypted with a random key", c.name)
		}
	}
	host.watcher.allowHTTPError("/api/v1/rooms/"+roomID+"/recording", 409)
	if status, body := pageAPI(host, "POST", "/api/v1/rooms/"+roomID+"/recording", map[string]string{"action": "start"}); status != 409 || !strings.Contains(body, "e2ee_room") {
		t.Errorf("recording the meeting: %d %s", status, body)
	}

	// ---- A wrong key: the member's page decodes no more of the host and
	// says so. ----
	evalAwait[bool](member, "member: replace the host's keys with wrong ones", `(async () => { (await `+e2eeHook+`).corruptKeys(`+js(hostID)+`); return true; })()`)
	hostTile := `document.querySelector(` + js(tileSel(hostID)) + `)`
	member.waitTrue("member: the host's tile says it cannot decrypt",
		hostTile+`.classList.contains('undecryptable') && !`+hostTile+`.querySelector('.tile-e2ee').hidden && `+
			`document.querySelector('#participants li[data-participant-id=`+js(hostID)+`]').dataset.e2ee === 'failed'`)
	time.Sleep(500 * time.Millisecond) // frames already decrypted leave the jitter buffer
	stuck := framesDecoded(member, hostID)
	sentBefore := framesSent(host)
	time.Sleep(3 * time.Second)
	after := framesDecoded(member, hostID)
	if after != stuck {
		t.Errorf("with a wrong key the member's page decoded %d more frames of the host", after-stuck)
	}
	if sent := framesSent(host); sent <= sentBefore+20 {
		t.Errorf("the host sent %d frames meanwhile; the test shows nothing", sent-sentBefore)
	}
	label := eval[string](member, "member: read the tile's label", hostTile+`.querySelector('.tile-e2ee').textContent`)
	t.Logf("the member's page shows %q for the host and decoded %d frames of the host in 3 s", label, after-stuck)
	member.screenshot("e2ee-cannot-decrypt.png")

	// ---- A third person joins: codes agree again; keys ratchet. ----
	third := browserPage(ctx, t, chromium)
	signInFirstTime(ctx, third, srv, thirdAcct)
	// First as a browser without encoded transforms: it may not join, and
	// is told why.
	var hide cdppage.ScriptIdentifier
	third.do("third: hide the encoded-transform APIs", chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		res, err := cdp.Call(ctx, tg, cdppage.AddScriptToEvaluateOnNewDocument,
			cdppage.AddScriptToEvaluateOnNewDocumentParams{Source: `delete window.RTCRtpScriptTransform; delete RTCRtpSender.prototype.createEncodedStreams;`})
		if err == nil {
			hide = res.Identifier
		}
		return err
	}))
	third.do("third: open the meeting without encoded transforms",
		chromedp.Navigate(srv.publicURL+"/rooms/"+roomID), chromedp.WaitVisible(chromedp.ID("e2ee-unsupported")))
	refusal := eval[map[string]any](third, "third: read the refusal", `({
		text: document.getElementById('e2ee-unsupported').textContent,
		disabled: document.getElementById('join-button').disabled,
	})`)
	if refusal["disabled"] != true || !strings.Contains(refusal["text"].(string), "cannot join") || !strings.Contains(refusal["text"].(string), "encoded transforms") {
		t.Errorf("a browser without encoded transforms sees %v", refusal)
	}
	third.do("third: show the APIs again", chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		_, err := cdp.Call(ctx, tg, cdppage.RemoveScriptToEvaluateOnNewDocument,
			cdppage.RemoveScriptToEvaluateOnNewDocumentParams{Identifier: hide})
		return err
	}))
	installRecorder(third)
	third.do("third: open the meeting", chromedp.Navigate(srv.publicURL+"/rooms/"+roomID))
	joinMeeting(third, "third", thirdAcct.displayName, true)
	thirdID := selfID(third)
	expectDecodes(third, "third", host, "host", hostID)
	var code3 string
	waitUntil(host, "three pages show the same new safety code", 10*time.Second, func() bool {
		code3 = safetyCodeOf(host)
		return code3 != code && code3 == safetyCodeOf(member) && code3 == safetyCodeOf(third)
	})
	hostRatcheted, _ := keyIDs(host)
	memberRatcheted, _ := keyIDs(member)
	t.Logf("safety code of three: %s; sender keys after the join: host %#x, member %#x", code3, uint32(hostRatcheted), uint32(memberRatcheted))
	if uint32(hostRatcheted)>>8 != uint32(hostSending)>>8 || uint32(hostRatcheted)&0xff <= uint32(hostSending)&0xff {
		t.Errorf("the host's key %#x did not ratchet from %#x when someone joined", uint32(hostRatcheted), uint32(hostSending))
	}

	// ---- The third leaves: the others' sender keys change. ----
	third.do("third: leave", chromedp.Click(chromedp.ID("leave")), chromedp.WaitVisible(chromedp.ID("left-screen")))
	host.waitTrue("host: the third has left", `!document.querySelector(`+js(tileSel(thirdID))+`)`)
	var hostNew, memberNew float64
	waitUntil(host, "the host's and the member's sender keys change", 10*time.Second, func() bool {
		hostNew, _ = keyIDs(host)
		memberNew, _ = keyIDs(member)
		return uint32(hostNew)>>8 > uint32(hostRatcheted)>>8 && uint32(memberNew)>>8 > uint32(memberRatcheted)>>8
	})
	t.Logf("sender keys after the leave: host %#x (was %#x), member %#x (was %#x)", uint32(hostNew), uint32(hostRatcheted), uint32(memberNew), uint32(memberRatcheted))
	waitUntil(host, "the two remaining pages show the same two-person code", 10*time.Second, func() bool {
		c := safetyCodeOf(host)
		return c != code3 && c == safetyCodeOf(member)
	})
	// The member's page has the host's new key: it decodes again.
	before := framesDecoded(member, hostID)
	waitUntil(member, "the member decodes the host again with the new key", 20*time.Second, func() bool {
		return framesDecoded(member, hostID) > before+30
	})
	member.waitTrue("member: the host's tile no longer says it cannot decrypt", `!`+hostTile+`.classList.contains('undecryptable')`)
	expectDecodes(host, "host", member, "member", memberID)

	for who, p := range map[string]*page{"host": host, "member": member, "third": third} {
		p.watcher.check(t, who+": end-to-end encrypted meeting")
	}
	t.Logf("TestE2EE took %v", time.Since(began).Round(100*time.Millisecond))
}

// framesSent is how many video frames the page's connection has sent (all
// simulcast layers).
func framesSent(p *page) int {
	p.t.Helper()
	return evalAwait[int](p, "read framesSent", `(async () => {
		let n = 0;
		(await `+livePC+`.getStats()).forEach(s => { if (s.type === 'outbound-rtp' && s.kind === 'video') n += s.framesSent || 0; });
		return n;
	})()`)
}

// between returns the text of s after the first before and up to after.
func between(s, before, after string) string {
	_, rest, ok := strings.Cut(s, before)
	if !ok {
		return ""
	}
	v, _, _ := strings.Cut(rest, after)
	return v
}
