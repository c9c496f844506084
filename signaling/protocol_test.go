package signaling

import (
	"strings"
	"testing"
)

func TestDecode(t *testing.T) {
	deep := strings.Repeat(`{"a":`, 50) + "1" + strings.Repeat("}", 50)
	many := `{"type":"offer","sdp":"x","tracks":{` + strings.Repeat(`"k":"camera",`, 300) + `"z":"camera"}}`
	for _, tc := range []struct {
		name, in string
		typ      string // "" when refused
		code     string
	}{
		{"join", `{"type":"join"}`, "join", ""},
		{"join with name", `{"type":"join","display_name":"Ann"}`, "join", ""},
		{"offer", `{"type":"offer","sdp":"v=0","tracks":{"t1":"screen"}}`, "offer", ""},
		{"candidate", `{"type":"candidate","candidate":{"candidate":"candidate:1 1 udp 1 127.0.0.1 5000 typ host","sdpMid":"0","sdpMLineIndex":0}}`, "candidate", ""},
		{"end of candidates", `{"type":"candidate","candidate":{"candidate":""}}`, "candidate", ""},
		{"chat", `{"type":"chat","text":"<script>alert(1)</script>"}`, "chat", ""},
		{"raise hand", `{"type":"raise_hand","raised":true}`, "raise_hand", ""},
		{"mute", `{"type":"mute","participant":"abc_-1","kind":"audio"}`, "mute", ""},
		{"layer", `{"type":"layer","track_id":"t","max_width":320}`, "layer", ""},
		{"white space", " \n{ \"type\" : \"leave\" }\n", "leave", ""},

		{"invalid UTF-8", "{\"type\":\"chat\",\"text\":\"\xff\xfe\"}", "", codeBadMessage},
		{"not JSON", `hello`, "", codeBadMessage},
		{"empty", ``, "", codeBadMessage},
		{"array", `[{"type":"join"}]`, "", codeBadMessage},
		{"string", `"join"`, "", codeBadMessage},
		{"two objects", `{"type":"join"}{"type":"join"}`, "", codeBadMessage},
		{"trailing garbage", `{"type":"join"} x`, "", codeBadMessage},
		{"truncated", `{"type":"join"`, "", codeBadMessage},
		{"deep nesting", deep, "", codeBadMessage},
		{"nested three levels", `{"type":"offer","sdp":"x","tracks":{"a":{"b":1}}}`, "", codeBadMessage},
		{"too many tokens", many, "", codeBadMessage},
		{"no type", `{"text":"hi"}`, "", codeBadMessage},
		{"type not a string", `{"type":5}`, "", codeBadMessage},
		{"type null", `{"type":null}`, "", codeBadMessage},
		{"unknown type", `{"type":"frobnicate"}`, "", codeUnknownType},
		{"duplicate type", `{"type":"chat","type":"kick","text":"x"}`, "", codeBadMessage},
		{"duplicate field", `{"type":"chat","text":"a","text":"b"}`, "", codeBadMessage},
		{"duplicate in another case", `{"type":"chat","text":"a","TEXT":"b"}`, "", codeBadMessage},
		{"duplicate nested", `{"type":"candidate","candidate":{"candidate":"a","candidate":"b"}}`, "", codeBadMessage},
		{"field in another case", `{"type":"chat","Text":"a"}`, "", codeBadMessage},
		{"type in another case", `{"TYPE":"chat","text":"a"}`, "", codeBadMessage},
		{"unknown field", `{"type":"join","admin":true}`, "", codeBadMessage},
		{"field of another type", `{"type":"chat","text":"a","participant":"x"}`, "", codeBadMessage},
		{"unknown nested field", `{"type":"candidate","candidate":{"candidate":"a","evil":1}}`, "", codeBadMessage},
		{"wrong type: text", `{"type":"chat","text":5}`, "", codeBadMessage},
		{"wrong type: raised", `{"type":"raise_hand","raised":"yes"}`, "", codeBadMessage},
		{"wrong type: tracks", `{"type":"offer","sdp":"x","tracks":["camera"]}`, "", codeBadMessage},
		{"wrong type: max_width", `{"type":"layer","track_id":"t","max_width":1.5}`, "", codeBadMessage},
		{"missing raised", `{"type":"raise_hand"}`, "", codeBadMessage},
		{"missing sdp", `{"type":"offer"}`, "", codeBadMessage},
		{"missing candidate", `{"type":"candidate"}`, "", codeBadMessage},
		{"bad participant", `{"type":"kick","participant":"../x"}`, "", codeBadMessage},
		{"bad kind", `{"type":"mute","participant":"a","kind":"screen"}`, "", codeInvalid},
		{"bad source", `{"type":"offer","sdp":"x","tracks":{"t":"webcam"}}`, "", codeInvalid},
		{"negative width", `{"type":"layer","track_id":"t","max_width":-1}`, "", codeInvalid},
		{"huge width", `{"type":"layer","track_id":"t","max_width":99999999999999999999}`, "", codeBadMessage},
		{"long candidate", `{"type":"candidate","candidate":{"candidate":"` + strings.Repeat("a", 3000) + `"}}`, "", codeInvalid},
		{"long chat", `{"type":"chat","text":"` + strings.Repeat("a", 20000) + `"}`, "", codeInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			typ, msg, perr := decode([]byte(tc.in))
			if tc.code == "" {
				if perr != nil || msg == nil || typ != tc.typ {
					t.Fatalf("decode(%q) = %q, %v, %v; want type %s", tc.in, typ, msg, perr, tc.typ)
				}
				return
			}
			if perr == nil || perr.code != tc.code {
				t.Fatalf("decode(%q) = %v, want code %s", tc.in, perr, tc.code)
			}
			if strings.Contains(perr.message, "json") || strings.Contains(perr.message, "invalid character") {
				t.Errorf("the message quotes the parser: %q", perr.message)
			}
		})
	}
}

func TestCleanChat(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		ok       bool
	}{
		{"hello", "hello", true},
		{"  two\r\nlines\rthree\u2028four  ", "two\nlines\nthree\nfour", true},
		{"tab\there", "tab here", true},
		{"bell\a and nul\x00 and esc\x1b[31m", "bell and nul and esc[31m", true},
		{"evil\u202ereversed\u2066isolate", "evilreversedisolate", true},
		{"cafe\u0301", "café", true}, // NFC
		{"<script>alert(1)</script>", "<script>alert(1)</script>", true},
		{"emoji 👩‍💻 keeps its joiner", "emoji 👩‍💻 keeps its joiner", true},
		{"", "", false},
		{" \n\t ", "", false},
		{"\x00\x01", "", false},
		{strings.Repeat("é", 2000), strings.Repeat("é", 2000), true},
		{strings.Repeat("é", 2001), "", false},
		{"bad \xff utf-8", "", false},
	} {
		got, ok := cleanChat(tc.in)
		if ok != tc.ok || got != tc.want {
			t.Errorf("cleanChat(%q) = %q, %v; want %q, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

func TestSendingNeeds(t *testing.T) {
	for _, tc := range []struct {
		name    string
		sdp     string
		sources map[string]string
		want    Publish
	}{
		{"camera and microphone", offerSDP("a1", "v1"), nil, Publish{Audio: true, Video: true}},
		{"screen", offerSDP("a1", "v1"), map[string]string{"v1": "screen"}, Publish{Audio: true, Screen: true}},
		{"receive only", recvOnlySDP, nil, Publish{}},
		{"default direction is sendrecv", "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=msid:s v\r\n", nil, Publish{Video: true}},
		{"session-level recvonly", "v=0\r\na=recvonly\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n", nil, Publish{}},
		{"sendonly", "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=sendonly\r\n", nil, Publish{Audio: true}},
		{"inactive", "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=inactive\r\n", nil, Publish{}},
		{"rejected section", "v=0\r\nm=video 0 UDP/TLS/RTP/SAVPF 96\r\na=sendrecv\r\n", nil, Publish{}},
		{"bundle-only section", "v=0\r\nm=video 0 UDP/TLS/RTP/SAVPF 96\r\na=bundle-only\r\na=sendrecv\r\n", nil, Publish{Video: true}},
		{"data channel", "v=0\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\na=sendrecv\r\n", nil, Publish{}},
	} {
		if got := sendingNeeds(tc.sdp, tc.sources); got != tc.want {
			t.Errorf("%s: %+v, want %+v", tc.name, got, tc.want)
		}
	}
}

func TestSlowConsumerIsClosed(t *testing.T) {
	c := newConn(nil, 2, 0, 0)
	if !c.send([]byte("1")) || !c.send([]byte("2")) {
		t.Fatal("queue refused while it had room")
	}
	if c.send([]byte("3")) {
		t.Fatal("a full queue accepted a message")
	}
	if !c.isClosing() || c.closeCode != ClosePolicy {
		t.Fatalf("closing=%v code=%d, want 1008", c.isClosing(), c.closeCode)
	}
	if c.send([]byte("4")) {
		t.Fatal("a closing socket accepted a message")
	}
}
