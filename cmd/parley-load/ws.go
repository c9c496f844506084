package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/fasthttp/websocket"
)

// sock is one signaling WebSocket.
type sock struct {
	c    *websocket.Conn
	wmu  sync.Mutex
	msgs chan map[string]any // every message but the ones a reader hook consumed
}

// dial opens the room's signaling socket with the Bearer token.
func dial(ctx context.Context, a *api, room string) (*sock, error) {
	u := "wss://" + strings.TrimPrefix(a.base, "https://") + "/api/v1/rooms/" + room + "/signal"
	d := websocket.Dialer{TLSClientConfig: a.tls, HandshakeTimeout: 15 * time.Second}
	h := http.Header{}
	h.Set("Authorization", "Bearer "+a.bearer)
	h.Set("Origin", a.originURL())
	c, resp, err := d.DialContext(ctx, u, h)
	if err != nil {
		if resp != nil {
			return nil, fmt.Errorf("dial: %w (HTTP %d)", err, resp.StatusCode)
		}
		return nil, fmt.Errorf("dial: %w", err)
	}
	return &sock{c: c}, nil
}

func (s *sock) send(m any) error {
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	_ = s.c.SetWriteDeadline(time.Now().Add(10 * time.Second))
	return s.c.WriteMessage(websocket.TextMessage, b)
}

// read reads one message.
func (s *sock) read() (map[string]any, error) {
	_, b, err := s.c.ReadMessage()
	if err != nil {
		return nil, err
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	return m, nil
}

// join sends join and waits for welcome (until the deadline).
func (s *sock) join(name string) (map[string]any, error) {
	if err := s.send(map[string]any{"type": "join", "display_name": name}); err != nil {
		return nil, err
	}
	_ = s.c.SetReadDeadline(time.Now().Add(15 * time.Second))
	defer s.c.SetReadDeadline(time.Time{})
	for {
		m, err := s.read()
		if err != nil {
			return nil, fmt.Errorf("waiting for welcome: %w", err)
		}
		switch m["type"] {
		case "welcome":
			return m, nil
		case "lobby":
			return nil, fmt.Errorf("put in the lobby (the room has a lobby or is locked)")
		case "error":
			return nil, fmt.Errorf("join refused: %v %v", m["code"], m["message"])
		}
	}
}

func (s *sock) close() {
	s.wmu.Lock()
	_ = s.c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
	s.wmu.Unlock()
	_ = s.c.Close()
}
