package server

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/fasthttp/websocket"

	"github.com/parley-meet/parley/signaling"
)

// Case 26: an oversized message, fragments adding past the limit, or a
// frame header announcing a huge payload: closed with 1009 before the
// payload is read.
func TestCase26OversizedMessages(t *testing.T) {
	f := newMeetingFixture(t, false, nil)
	ms := f.ms
	big := `{"type":"chat","text":"` + strings.Repeat("a", signaling.MaxMessageBytes) + `"}`

	s := ms.open(t, f.bob, f.room)
	s.join()
	s.send(big)
	s.expectClose(websocket.CloseMessageTooBig, 3*time.Second)

	// Fragments: the client's 1 KiB write buffer sends the message as
	// many continuation frames, none of them large.
	s = ms.open(t, f.bob, f.room)
	s.join()
	w, err := s.ws.NextWriter(websocket.TextMessage)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 80; i++ {
		if _, err := w.Write([]byte(strings.Repeat("b", 1000))); err != nil {
			break // the server closed after the limit
		}
	}
	w.Close()
	s.expectClose(websocket.CloseMessageTooBig, 3*time.Second)

	// A frame header that announces 1 GiB: refused on the header.
	s = ms.open(t, f.bob, f.room)
	s.join()
	hdr := []byte{0x81, 0x80 | 127, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4}
	binary.BigEndian.PutUint64(hdr[2:10], 1<<30)
	if _, err := s.ws.NetConn().Write(hdr); err != nil {
		t.Fatal(err)
	}
	s.expectClose(websocket.CloseMessageTooBig, 3*time.Second)

	// Just under the limit, in fragments, is read (and refused as text
	// that is too long for a chat message, not as a frame).
	s = ms.open(t, f.bob, f.room)
	s.join()
	s.send(`{"type":"chat","text":"` + strings.Repeat("c", signaling.MaxMessageBytes-100) + `"}`)
	s.expectError("invalid")
	if resp, _ := ms.do(t, "GET", "/healthz", nil, nil); resp.StatusCode != 200 {
		t.Errorf("healthz: %d", resp.StatusCode)
	}
}

// Case 27: a flood is throttled, then closed with 1008; another
// participant's signaling stays responsive meanwhile.
func TestCase27Flood(t *testing.T) {
	f := newMeetingFixture(t, false, nil)
	ms := f.ms
	host := ms.open(t, f.host, f.room)
	host.join()
	flood := ms.open(t, f.bob, f.room)
	flood.join()
	done := make(chan struct{})
	go func() {
		defer close(done)
		msg := []byte(`{"type":"raise_hand","raised":true}`)
		for i := 0; i < 5000; i++ {
			if flood.ws.WriteMessage(websocket.TextMessage, msg) != nil {
				return
			}
		}
	}()
	flood.expectError("rate_limited")
	// The host's round trips stay quick during the flood.
	for i := 0; i < 3; i++ {
		start := time.Now()
		host.send(map[string]any{"type": "chat", "text": fmt.Sprintf("still here %d", i)})
		for {
			if m := host.expect("chat"); m["text"] == fmt.Sprintf("still here %d", i) {
				break
			}
		}
		if d := time.Since(start); d > time.Second {
			t.Errorf("round trip during a flood took %v", d)
		}
	}
	flood.expectClose(websocket.ClosePolicyViolation, 5*time.Second)
	<-done
	host.send(map[string]any{"type": "raise_hand", "raised": true})
	host.expect("hand")
}

// Case 29: invalid UTF-8, deep nesting, wrong types, unknown types,
// duplicate keys, binary frames: a clear error each, no internals, then a
// close after ten; the server stays healthy.
func TestCase29MalformedMessages(t *testing.T) {
	f := newMeetingFixture(t, false, nil)
	ms := f.ms
	s := ms.open(t, f.bob, f.room)
	s.join()
	for _, tc := range []struct {
		in   string
		code string
	}{
		{"{\"type\":\"chat\",\"text\":\"\xff\xfe\xfd\"}", "bad_message"},
		{strings.Repeat("[", 5000) + strings.Repeat("]", 5000), "bad_message"},
		{strings.Repeat(`{"a":`, 1000) + "1" + strings.Repeat("}", 1000), "bad_message"},
		{`{"type":"raise_hand","raised":"yes"}`, "bad_message"},
		{`{"type":["chat"]}`, "bad_message"},
		{`{"type":"\u0000admin"}`, "unknown_type"},
		{`{"type":"chat","text":"a","text":"b"}`, "bad_message"},
		{`{"type":"kick","participant":{"$ne":null}}`, "bad_message"},
		{`{"type":"chat","text":"hi"} trailing`, "bad_message"},
	} {
		s.send(tc.in)
		e := s.expectError(tc.code)
		raw := e["_raw"].(string)
		for _, leak := range []string{"json:", "invalid character", "goroutine", ".go:", "panic", "\xff"} {
			if strings.Contains(raw, leak) {
				t.Errorf("%q: the error leaks %q: %s", tc.in[:min(len(tc.in), 40)], leak, raw)
			}
		}
	}
	if err := s.ws.WriteMessage(websocket.BinaryMessage, []byte{0, 1, 2}); err != nil {
		t.Fatal(err)
	}
	s.expectClose(websocket.ClosePolicyViolation, 3*time.Second)
	if resp, _ := ms.do(t, "GET", "/healthz", nil, nil); resp.StatusCode != 200 {
		t.Errorf("healthz: %d", resp.StatusCode)
	}
	ms.open(t, f.bob, f.room).join()
}

// Cases 12 and 14: signing out, or an administrator disabling the
// account, closes the user's open sockets (1008) within 2 s, the socket
// opened with an API token included.
func TestCases12and14SocketsCloseOnLogoutAndDisable(t *testing.T) {
	f := newMeetingFixture(t, false, nil)
	ms := f.ms
	tok := f.bob.post("/api/v1/auth/token", map[string]string{}).str("token")
	cookieSock := ms.open(t, f.bob, f.room)
	cookieSock.join()
	tokenSock, _, _, err := ms.dialWS(t, f.room, http.Header{"Authorization": {"Bearer " + tok}})
	if err != nil {
		t.Fatal(err)
	}
	tokenSock.join()
	start := time.Now()
	expect(t, "logout", f.bob.post("/api/v1/auth/logout", map[string]string{}), 204, "")
	cookieSock.expectClose(websocket.ClosePolicyViolation, 2*time.Second)
	tokenSock.expectClose(websocket.ClosePolicyViolation, 2*time.Second)
	t.Logf("sockets closed %v after logout", time.Since(start))

	ms.clock.Advance(30 * time.Second)
	b := ms.browser(t)
	expect(t, "sign in again", b.signIn(f.bobAcct), 200, "")
	s := ms.open(t, b, f.room)
	s.join()
	if err := ms.auth.SetDisabled(context.Background(), "bob", true, "test"); err != nil {
		t.Fatal(err)
	}
	s.expectClose(websocket.ClosePolicyViolation, 2*time.Second)
}

// A chat message with a script payload is stored and relayed as text, and
// its sender is who the server knows.
func TestChatIsTextAndSenderNotSpoofable(t *testing.T) {
	f := newMeetingFixture(t, false, nil)
	ms := f.ms
	host := ms.open(t, f.host, f.room)
	hw := host.join()
	bob := ms.open(t, f.bob, f.room)
	bw := bob.join()
	payload := `<img src=x onerror=alert(1)><script>alert(2)</script>`
	bob.send(map[string]any{"type": "chat", "text": payload})
	m := host.expect("chat")
	if m["text"] != payload || m["from"] != bw["participant_id"] || m["name"] == "" || m["name"] == "alice" {
		t.Fatalf("chat: %v", m["_raw"])
	}
	if raw := m["_raw"].(string); strings.Contains(raw, "<script>") || !strings.Contains(raw, `\u003cscript\u003e`) {
		t.Errorf("chat is not JSON-escaped text: %s", raw)
	}
	bob.send(map[string]any{"type": "chat", "text": "I am the host", "from": hw["participant_id"], "name": "alice"})
	bob.expectError("bad_message")
	// A late joiner gets the history, as text.
	late := ms.open(t, f.bob, f.room)
	late.join()
	if h := late.expect("chat"); h["text"] != payload {
		t.Errorf("history: %v", h["_raw"])
	}
}

// Malformed SDP gets an error message and leaves the socket usable.
func TestMalformedSDP(t *testing.T) {
	f := newMeetingFixture(t, false, nil)
	ms := f.ms
	s := ms.open(t, f.bob, f.room)
	s.join()
	junk := make([]byte, 300)
	rand.Read(junk)
	for _, sdp := range []string{
		"v=0\r\nthis is not SDP",
		strings.ToValidUTF8(string(junk), "?"),
		"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n" + strings.Repeat("m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=recvonly\r\n", 40),
		"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9 RTP/AVP 0\r\na=recvonly\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:AAAA\r\n",
	} {
		s.send(map[string]any{"type": "offer", "sdp": sdp})
		s.expectError("bad_sdp")
	}
	s.send(map[string]any{"type": "answer", "sdp": "v=0\r\nnot an answer"})
	if e := s.expect("error"); e["code"] != "bad_sdp" && e["code"] != "bad_state" {
		t.Errorf("answer without an offer: %v", e["_raw"])
	}
	s.send(map[string]any{"type": "raise_hand", "raised": true})
	s.expect("hand")
}

// Once upgraded, a signaling socket's connection is the server's to close
// (fasthttp lets go of it at once): after the closing handshake the server
// closes the TCP connection.
func TestSignalConnectionClosedAfterTheHandshake(t *testing.T) {
	f := newMeetingFixture(t, false, nil)
	s := f.ms.open(t, f.bob, f.room)
	s.join()
	s.send(map[string]any{"type": "leave"})
	s.expectClose(websocket.CloseNormalClosure, 3*time.Second)
	// The client's reader has answered the close frame and stopped.
	nc := s.ws.NetConn()
	if err := nc.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if n, err := io.Copy(io.Discard, nc); err != nil || n != 0 {
		t.Fatalf("after the close handshake: %d more bytes, %v (want the connection closed)", n, err)
	}
}
