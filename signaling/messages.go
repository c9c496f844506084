package signaling

import (
	"encoding/json"
	"time"

	"github.com/pion/webrtc/v4"
)

// Server → client messages. Every one is a JSON object with "type".

// ICEServer is one entry of the welcome's ice_servers, in the shape of the
// browser's RTCIceServer.
type ICEServer struct {
	URLs       []string `json:"urls"`
	Username   string   `json:"username,omitempty"`
	Credential string   `json:"credential,omitempty"`
}

type trackView struct {
	TrackID string `json:"track_id"`
	Kind    string `json:"kind"`
	Source  string `json:"source"`
}

// memberView is a participant in the welcome's list.
type memberView struct {
	ID         string      `json:"id"`
	Name       string      `json:"name"`
	Role       string      `json:"role"`
	Guest      bool        `json:"guest"`
	HandRaised bool        `json:"hand_raised"`
	InLobby    bool        `json:"in_lobby"`
	Tracks     []trackView `json:"tracks"`
	// E2EEPublicKey is the participant's ephemeral public key in an
	// end-to-end encrypted meeting, as it sent it with join (e2ee.go).
	E2EEPublicKey string `json:"e2ee_public_key,omitempty"`
}

// arrivalView is a participant in participant_joined.
type arrivalView struct {
	ID            string `json:"id"`
	Name          string `json:"name"`
	Role          string `json:"role"`
	Guest         bool   `json:"guest"`
	InLobby       bool   `json:"in_lobby"`
	E2EEPublicKey string `json:"e2ee_public_key,omitempty"`
}

type roomView struct {
	Name      string `json:"name"`
	Locked    bool   `json:"locked"`
	Recording bool   `json:"recording"`
	// E2EE: this meeting is end-to-end encrypted (fixed for its life).
	E2EE bool `json:"e2ee"`
}

// iceServersMsg replaces the ICE servers of the welcome before their
// credentials expire.
type iceServersMsg struct {
	Type       string      `json:"type"`
	ICEServers []ICEServer `json:"ice_servers"`
}

type welcomeMsg struct {
	Type          string       `json:"type"`
	ParticipantID string       `json:"participant_id"`
	Role          string       `json:"role"`
	Permissions   []string     `json:"permissions"`
	Participants  []memberView `json:"participants"`
	ICEServers    []ICEServer  `json:"ice_servers"`
	Room          roomView     `json:"room"`
}

type lobbyMsg struct {
	Type     string `json:"type"`
	Position int    `json:"position"`
}

type sdpMsg struct {
	Type string `json:"type"`
	SDP  string `json:"sdp"`
}

type candidateOut struct {
	Type      string                  `json:"type"`
	Candidate webrtc.ICECandidateInit `json:"candidate"`
}

type joinedMsg struct {
	Type        string      `json:"type"`
	Participant arrivalView `json:"participant"`
}

type leftMsg struct {
	Type        string `json:"type"`
	Participant string `json:"participant"`
}

type trackPublishedMsg struct {
	Type        string `json:"type"`
	Participant string `json:"participant"`
	TrackID     string `json:"track_id"`
	Kind        string `json:"kind"`
	Source      string `json:"source"`
}

type trackUnpublishedMsg struct {
	Type        string `json:"type"`
	Participant string `json:"participant"`
	TrackID     string `json:"track_id"`
}

type chatOut struct {
	Type string `json:"type"`
	From string `json:"from"`
	Name string `json:"name"`
	Text string `json:"text"`
	TS   string `json:"ts"`
}

type mutedMsg struct {
	Type        string `json:"type"`
	Participant string `json:"participant"`
	Kind        string `json:"kind"`
	By          string `json:"by"`
}

type permissionsMsg struct {
	Type        string   `json:"type"`
	Role        string   `json:"role"`
	Permissions []string `json:"permissions"`
}

type roomStateMsg struct {
	Type      string `json:"type"`
	Locked    bool   `json:"locked"`
	Recording bool   `json:"recording"`
}

type handMsg struct {
	Type        string `json:"type"`
	Participant string `json:"participant"`
	Raised      bool   `json:"raised"`
}

type errorMsg struct {
	Type    string `json:"type"`
	Code    string `json:"code"`
	Message string `json:"message"`
	// Request is the type of the message refused, when it was a known one.
	Request string `json:"request,omitempty"`
}

// Messages without fields.
var (
	msgAdmitted = mustJSON(bareMsg{Type: "admitted"})
	msgDenied   = mustJSON(bareMsg{Type: "denied"})
	msgKicked   = mustJSON(bareMsg{Type: "kicked"})
	msgEnded    = mustJSON(bareMsg{Type: "ended"})
)

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic("signaling: encoding a server message: " + err.Error())
	}
	return b
}

func errorJSON(e *protoError, request string) []byte {
	if _, known := clientTypes[request]; !known {
		request = ""
	}
	return mustJSON(errorMsg{Type: "error", Code: e.code, Message: e.message, Request: request})
}

// timestamp is how times appear in messages: RFC 3339 in UTC with
// milliseconds.
func timestamp(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000Z07:00") }
