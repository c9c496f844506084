package signaling

import (
	"bytes"
	"encoding/json"
	"io"
	"reflect"
	"strings"
	"sync"
	"unicode/utf8"
)

// Limits of what a client may send. Every text frame is one JSON object of
// at most MaxMessageBytes (the websocket read limit enforces it before the
// frame is read, across fragments).
const (
	// MaxMessageBytes is the largest message a client may send (1009 beyond).
	MaxMessageBytes = 64 << 10
	// maxDepth is how deeply objects may nest: the message itself and one
	// object inside it (tracks, candidate).
	maxDepth = 2
	// maxTokens bounds the JSON tokens of one message.
	maxTokens = 512
	// maxTrackEntries bounds the msid → source map of an offer.
	maxTrackEntries = 32
	// Bounds of individual fields, in bytes unless said otherwise.
	maxIDBytes        = 64
	maxTrackIDBytes   = 256
	maxCandidateBytes = 2048
	maxChatInputBytes = 16 << 10
	maxNameInputBytes = 1024
	maxLayerWidth     = 16384
)

// Client message types.
const (
	typeJoin      = "join"
	typeOffer     = "offer"
	typeAnswer    = "answer"
	typeCandidate = "candidate"
	typeLeave     = "leave"
	typeChat      = "chat"
	typeRaiseHand = "raise_hand"
	typeMute      = "mute"
	typeKick      = "kick"
	typeAdmit     = "admit"
	typeDeny      = "deny"
	typeLock      = "lock"
	typeEnd       = "end"
	typeLayer     = "layer"
	typeRecord    = "record"
	typeE2EEKey   = "e2ee_key"
)

// Error codes of the error message.
const (
	codeBadMessage  = "bad_message"  // not one JSON object with the documented fields
	codeUnknownType = "unknown_type" // a type the server does not know
	codeRateLimited = "rate_limited" // too many messages; slow down
	codeForbidden   = "forbidden"    // the sender's role does not allow it
	codeNotJoined   = "not_joined"   // send join first
	codeInLobby     = "in_lobby"     // waiting for admission
	codeNoSuch      = "no_such_participant"
	codeBadSDP      = "bad_sdp"     // the SDP was refused
	codeBadState    = "bad_state"   // not possible now (answer without an offer, ...)
	codeInvalid     = "invalid"     // a field's value breaks a rule (message says which)
	codeUnavailable = "unavailable" // a feature this server does not offer yet
	codeInternal    = "internal"    // something went wrong on the server
	// codeE2EERoom: refused because the meeting is end-to-end encrypted
	// (recording it).
	codeE2EERoom = "e2ee_room"
	// codeE2EERequired: join without a public key in an end-to-end
	// encrypted meeting.
	codeE2EERequired = "e2ee_required"
)

// protoError is a refusal sent back as an error message.
type protoError struct {
	code, message string
}

func (e *protoError) Error() string { return e.code + ": " + e.message }

func errBad(msg string) *protoError { return &protoError{codeBadMessage, msg} }

// Client messages. Each has exactly the fields documented in
// docs/protocol.md; any other field is refused.
type (
	joinMsg struct {
		Type        string  `json:"type"`
		DisplayName *string `json:"display_name"`
		// E2EEPublicKey is the browser's ephemeral public key for an
		// end-to-end encrypted meeting (opaque, base64url; e2ee.go).
		E2EEPublicKey *string `json:"e2ee_public_key"`
	}
	offerMsg struct {
		Type   string            `json:"type"`
		SDP    string            `json:"sdp"`
		Tracks map[string]string `json:"tracks"`
	}
	answerMsg struct {
		Type string `json:"type"`
		SDP  string `json:"sdp"`
	}
	candidateInit struct {
		Candidate        string  `json:"candidate"`
		SDPMid           *string `json:"sdpMid"`
		SDPMLineIndex    *uint16 `json:"sdpMLineIndex"`
		UsernameFragment *string `json:"usernameFragment"`
	}
	candidateMsg struct {
		Type      string         `json:"type"`
		Candidate *candidateInit `json:"candidate"`
	}
	bareMsg struct {
		Type string `json:"type"`
	}
	chatMsg struct {
		Type string `json:"type"`
		Text string `json:"text"`
	}
	raiseHandMsg struct {
		Type   string `json:"type"`
		Raised *bool  `json:"raised"`
	}
	muteMsg struct {
		Type        string `json:"type"`
		Participant string `json:"participant"`
		Kind        string `json:"kind"`
	}
	targetMsg struct {
		Type        string `json:"type"`
		Participant string `json:"participant"`
	}
	lockMsg struct {
		Type   string `json:"type"`
		Locked *bool  `json:"locked"`
	}
	layerMsg struct {
		Type     string `json:"type"`
		TrackID  string `json:"track_id"`
		MaxWidth *int   `json:"max_width"`
	}
	recordMsg struct {
		Type   string `json:"type"`
		Action string `json:"action"`
	}
)

// validator checks field values after decoding.
type validator interface{ validate() *protoError }

func (m *joinMsg) validate() *protoError {
	if m.DisplayName != nil && len(*m.DisplayName) > maxNameInputBytes {
		return &protoError{codeInvalid, "display_name has 1 to 64 characters"}
	}
	if m.E2EEPublicKey != nil && !validOpaque(*m.E2EEPublicKey, minPublicKeyChars, maxPublicKeyChars) {
		return &protoError{codeInvalid, "e2ee_public_key is 16 to 256 characters of base64url"}
	}
	return nil
}

var sources = map[string]bool{"camera": true, "microphone": true, "screen": true}

func (m *offerMsg) validate() *protoError {
	if m.SDP == "" {
		return errBad("offer needs sdp")
	}
	if len(m.Tracks) > maxTrackEntries {
		return &protoError{codeInvalid, "tracks has at most 32 entries"}
	}
	for id, src := range m.Tracks {
		if id == "" || len(id) > maxTrackIDBytes || !sources[src] {
			return &protoError{codeInvalid, `tracks maps a track id to "camera", "microphone" or "screen"`}
		}
	}
	return nil
}

func (m *answerMsg) validate() *protoError {
	if m.SDP == "" {
		return errBad("answer needs sdp")
	}
	return nil
}

func (m *candidateMsg) validate() *protoError {
	c := m.Candidate
	if c == nil {
		return errBad("candidate needs candidate")
	}
	if len(c.Candidate) > maxCandidateBytes || c.SDPMid != nil && len(*c.SDPMid) > maxIDBytes ||
		c.UsernameFragment != nil && len(*c.UsernameFragment) > maxTrackIDBytes {
		return &protoError{codeInvalid, "candidate is too long"}
	}
	return nil
}

func (m *bareMsg) validate() *protoError { return nil }

func (m *chatMsg) validate() *protoError {
	if len(m.Text) > maxChatInputBytes {
		return &protoError{codeInvalid, "a chat message has 1 to 2000 characters"}
	}
	return nil
}

func (m *raiseHandMsg) validate() *protoError {
	if m.Raised == nil {
		return errBad("raise_hand needs raised")
	}
	return nil
}

// validParticipantID: 1 to maxIDBytes characters of base64url, as the
// server makes them.
func validParticipantID(id string) bool {
	return validOpaque(id, 1, maxIDBytes)
}

func (m *muteMsg) validate() *protoError {
	if !validParticipantID(m.Participant) {
		return errBad("mute needs participant")
	}
	if m.Kind != "audio" && m.Kind != "video" {
		return &protoError{codeInvalid, `kind is "audio" or "video"`}
	}
	return nil
}

func (m *targetMsg) validate() *protoError {
	if !validParticipantID(m.Participant) {
		return errBad(m.Type + " needs participant")
	}
	return nil
}

func (m *lockMsg) validate() *protoError {
	if m.Locked == nil {
		return errBad("lock needs locked")
	}
	return nil
}

func (m *layerMsg) validate() *protoError {
	if m.TrackID == "" || len(m.TrackID) > maxTrackIDBytes || m.MaxWidth == nil {
		return errBad("layer needs track_id and max_width")
	}
	if *m.MaxWidth < 0 || *m.MaxWidth > maxLayerWidth {
		return &protoError{codeInvalid, "max_width is from 0 to 16384"}
	}
	return nil
}

func (m *recordMsg) validate() *protoError {
	if m.Action != "start" && m.Action != "stop" {
		return errBad(`record needs action "start" or "stop"`)
	}
	return nil
}

// clientTypes makes the message struct of each client message type.
var clientTypes = map[string]func() validator{
	typeJoin:      func() validator { return &joinMsg{} },
	typeOffer:     func() validator { return &offerMsg{} },
	typeAnswer:    func() validator { return &answerMsg{} },
	typeCandidate: func() validator { return &candidateMsg{} },
	typeLeave:     func() validator { return &bareMsg{} },
	typeChat:      func() validator { return &chatMsg{} },
	typeRaiseHand: func() validator { return &raiseHandMsg{} },
	typeMute:      func() validator { return &muteMsg{} },
	typeKick:      func() validator { return &targetMsg{} },
	typeAdmit:     func() validator { return &targetMsg{} },
	typeDeny:      func() validator { return &targetMsg{} },
	typeLock:      func() validator { return &lockMsg{} },
	typeEnd:       func() validator { return &bareMsg{} },
	typeLayer:     func() validator { return &layerMsg{} },
	typeRecord:    func() validator { return &recordMsg{} },
	typeE2EEKey:   func() validator { return &e2eeKeyMsg{} },
}

// fieldNames caches the exact JSON names of each message struct's fields:
// encoding/json matches names case-insensitively, the protocol does not.
var fieldNames sync.Map // reflect.Type → map[string]bool

func namesOf(v any) map[string]bool {
	t := reflect.TypeOf(v).Elem()
	if m, ok := fieldNames.Load(t); ok {
		return m.(map[string]bool)
	}
	m := map[string]bool{}
	for i := 0; i < t.NumField(); i++ {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		m[name] = true
	}
	fieldNames.Store(t, m)
	return m
}

// decode parses one client message strictly: valid UTF-8, one JSON object,
// no duplicate keys (in any letter case), at most two levels of objects,
// bounded tokens and strings, a known type, exactly the documented fields
// with the documented JSON types, and field values within their bounds.
func decode(data []byte) (string, validator, *protoError) {
	if !utf8.Valid(data) {
		return "", nil, errBad("a message is UTF-8 text")
	}
	topKeys, perr := checkShape(data)
	if perr != nil {
		return "", nil, perr
	}
	var env struct {
		Type json.RawMessage `json:"type"`
	}
	// checkShape guarantees one object; only "type" is read here.
	if err := json.Unmarshal(data, &env); err != nil || len(env.Type) == 0 || env.Type[0] != '"' {
		return "", nil, errBad(`a message is a JSON object with a string "type"`)
	}
	var typ string
	if err := json.Unmarshal(env.Type, &typ); err != nil || !topKeys["type"] {
		return "", nil, errBad(`a message is a JSON object with a string "type"`)
	}
	mk, ok := clientTypes[typ]
	if !ok {
		return typ, nil, &protoError{codeUnknownType, "unknown message type"}
	}
	msg := mk()
	allowed := namesOf(msg)
	for k := range topKeys {
		if !allowed[k] {
			return typ, nil, errBad(typ + " does not have that field")
		}
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(msg); err != nil {
		return typ, nil, errBad(typ + " has a field of the wrong type or an unknown field")
	}
	if perr := msg.validate(); perr != nil {
		return typ, nil, perr
	}
	return typ, msg, nil
}

// shapeFrame is an object or array being walked by checkShape.
type shapeFrame struct {
	object  bool
	keys    map[string]bool
	wantKey bool
}

// checkShape walks the token stream of data: exactly one JSON object, no
// duplicate keys in any object (compared case-insensitively, as
// encoding/json matches them), nesting at most maxDepth, at most maxTokens
// tokens. It returns the keys of the top-level object.
func checkShape(data []byte) (map[string]bool, *protoError) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var (
		stack  []*shapeFrame
		top    map[string]bool
		tokens int
	)
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, errBad("a message is one JSON object")
		}
		if tokens++; tokens > maxTokens {
			return nil, errBad("the message has too many parts")
		}
		if len(stack) == 0 && tokens > 1 {
			return nil, errBad("a message is one JSON object")
		}
		var cur *shapeFrame
		if len(stack) > 0 {
			cur = stack[len(stack)-1]
		}
		// A key of the current object.
		if cur != nil && cur.object && cur.wantKey {
			if d, ok := tok.(json.Delim); ok && d == '}' {
				stack = stack[:len(stack)-1]
				markValue(stack)
				continue
			}
			k, ok := tok.(string)
			if !ok {
				return nil, errBad("a message is one JSON object")
			}
			fold := strings.ToLower(k)
			if cur.keys[fold] {
				return nil, errBad("a key appears twice")
			}
			cur.keys[fold] = true
			if len(stack) == 1 {
				top[k] = true
			}
			cur.wantKey = false
			continue
		}
		switch t := tok.(type) {
		case json.Delim:
			switch t {
			case '{', '[':
				if len(stack) == 0 && t != '{' {
					return nil, errBad("a message is one JSON object")
				}
				if len(stack) >= maxDepth {
					return nil, errBad("the message nests too deeply")
				}
				f := &shapeFrame{object: t == '{', wantKey: t == '{'}
				if f.object {
					f.keys = map[string]bool{}
				}
				if len(stack) == 0 {
					top = map[string]bool{}
				}
				stack = append(stack, f)
			case ']':
				stack = stack[:len(stack)-1]
				markValue(stack)
			}
		default:
			// A scalar value; strings are bounded by the message size.
			if len(stack) == 0 {
				return nil, errBad("a message is one JSON object")
			}
			markValue(stack)
		}
	}
	if top == nil || len(stack) != 0 {
		return nil, errBad("a message is one JSON object")
	}
	return top, nil
}

// markValue notes that a value of the innermost object was read, so the
// next token is a key again.
func markValue(stack []*shapeFrame) {
	if len(stack) > 0 && stack[len(stack)-1].object {
		stack[len(stack)-1].wantKey = true
	}
}
