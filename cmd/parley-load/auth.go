package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"os"
	"time"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"
)

// api is a small client of Parley's REST API.
type api struct {
	base   string
	http   *http.Client
	tls    *tls.Config
	csrf   string
	bearer string
	origin string // sent as Origin ("": base)
}

func newAPI(base string, insecure bool) *api {
	jar, _ := cookiejar.New(nil)
	tc := &tls.Config{InsecureSkipVerify: insecure} //nolint:gosec // -insecure: self-signed test servers only
	return &api{base: base, tls: tc, http: &http.Client{Jar: jar, Timeout: 30 * time.Second,
		Transport: &http.Transport{TLSClientConfig: tc}}}
}

// as is a client of the same server that authenticates with token.
func (a *api) as(token string) *api {
	b := *a
	b.bearer = token
	return &b
}

// at is the same client (account, cookies, TLS) talking to another node
// of the cluster, at base. It still sends its own origin as Origin: the
// cluster's public URL, as a browser behind the load balancer does.
func (a *api) at(base string) *api {
	if a.base == base {
		return a
	}
	b := *a
	b.origin = a.originURL()
	b.base = base
	return &b
}

// originURL is what a sends as Origin.
func (a *api) originURL() string {
	if a.origin != "" {
		return a.origin
	}
	return a.base
}

// liveRooms asks the node at a.base for the meetings in progress (the
// console's live view, GET /api/v1/admin/live: every node's meetings this
// account moderates): which node runs each room, and this node's id. On a
// single node the ids are "".
func (a *api) liveRooms(ctx context.Context) (self string, rooms map[string]string, err error) {
	var live struct {
		Node  string `json:"node"`
		Rooms []struct {
			ID   string `json:"id"`
			Node string `json:"node"`
		} `json:"rooms"`
		Unreachable []string `json:"unreachable_nodes"`
	}
	if err := a.do(ctx, "GET", "/api/v1/admin/live", nil, &live); err != nil {
		return "", nil, fmt.Errorf("live view: %w", err)
	}
	if len(live.Unreachable) > 0 {
		return "", nil, fmt.Errorf("live view: node(s) %v did not answer", live.Unreachable)
	}
	rooms = make(map[string]string, len(live.Rooms))
	for _, r := range live.Rooms {
		rooms[r.ID] = r.Node
	}
	return live.Node, rooms, nil
}

type apiError struct {
	Status int
	Code   string `json:"error"`
	Msg    string `json:"message"`
}

func (e *apiError) Error() string { return fmt.Sprintf("HTTP %d %s: %s", e.Status, e.Code, e.Msg) }

// do sends a request with a JSON body (nil: none) and decodes the JSON answer into out.
func (a *api) do(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, a.base+path, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Origin", a.originURL())
	if a.bearer != "" {
		req.Header.Set("Authorization", "Bearer "+a.bearer)
	} else if a.csrf != "" {
		req.Header.Set("X-CSRF-Token", a.csrf)
	}
	resp, err := a.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	// The live view of a large run lists every client: tens of MiB.
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode >= 300 {
		e := &apiError{Status: resp.StatusCode}
		_ = json.Unmarshal(data, e)
		return e
	}
	if out != nil && len(data) > 0 {
		return json.Unmarshal(data, out)
	}
	return nil
}

// totpCode waits, if needed, for a step later than after that has at least
// two seconds left, and returns its code and step.
func totpCode(ctx context.Context, secret string, after int64) (string, int64, error) {
	for {
		now := time.Now()
		step := now.Unix() / 30
		end := time.Unix((step+1)*30, 0)
		if step > after && end.Sub(now) >= 2*time.Second {
			code, err := totp.GenerateCodeCustom(secret, now, totp.ValidateOpts{Period: 30, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1})
			return code, step, err
		}
		fmt.Fprintf(os.Stderr, "parley-load: waiting %v for a fresh TOTP step\n", time.Until(end).Round(time.Second))
		select {
		case <-ctx.Done():
			return "", 0, ctx.Err()
		case <-time.After(time.Until(end) + 50*time.Millisecond):
		}
	}
}

// signIn signs in with password and TOTP and mints a Bearer token. On an
// account's first sign-in it enrols TOTP and writes the new secret to
// secretFile (created 0600; never printed: a secret has no place in a
// log); without secretFile such an account is refused.
func (a *api) signIn(ctx context.Context, user, pass, secret, secretFile string) (token string, err error) {
	var login struct{ Next, Challenge string }
	if err := a.do(ctx, "POST", "/api/v1/auth/login", map[string]string{"username": user, "password": pass}, &login); err != nil {
		return "", fmt.Errorf("login: %w", err)
	}
	switch login.Next {
	case "enroll":
		if secretFile == "" {
			return "", errors.New("the account has no authenticator yet: give -totp-secret-file to enrol it and keep its secret")
		}
		var en struct{ Secret string }
		if err := a.do(ctx, "POST", "/api/v1/auth/enroll", map[string]string{"challenge": login.Challenge}, &en); err != nil {
			return "", fmt.Errorf("enroll: %w", err)
		}
		if err := os.WriteFile(secretFile, []byte(en.Secret+"\n"), 0o600); err != nil {
			return "", fmt.Errorf("keeping the new TOTP secret: %w", err)
		}
		fmt.Fprintf(os.Stderr, "parley-load: enrolled TOTP for %s; its secret is in %s (reuse with -totp-secret)\n", user, secretFile)
		if err := a.confirmCode(ctx, "/api/v1/auth/enroll/confirm", login.Challenge, en.Secret); err != nil {
			return "", err
		}
	case "mfa":
		if secret == "" {
			return "", errors.New("the account has TOTP: give -totp-secret")
		}
		if err := a.confirmCode(ctx, "/api/v1/auth/mfa", login.Challenge, secret); err != nil {
			return "", err
		}
	default:
		return "", fmt.Errorf("login: unexpected next step %q", login.Next)
	}
	var me struct {
		CSRF string `json:"csrf_token"`
	}
	if err := a.do(ctx, "GET", "/api/v1/me", nil, &me); err != nil {
		return "", fmt.Errorf("me: %w", err)
	}
	a.csrf = me.CSRF
	var tok struct{ Token string }
	if err := a.do(ctx, "POST", "/api/v1/auth/token", map[string]string{}, &tok); err != nil {
		return "", fmt.Errorf("token: %w", err)
	}
	a.bearer = tok.Token
	return tok.Token, nil
}

// confirmCode posts a TOTP code to path, trying a later step when the
// server refuses the code (a code works only once per account).
func (a *api) confirmCode(ctx context.Context, path, challenge, secret string) error {
	after := int64(0)
	for try := 0; try < 3; try++ {
		code, step, err := totpCode(ctx, secret, after)
		if err != nil {
			return err
		}
		err = a.do(ctx, "POST", path, map[string]string{"challenge": challenge, "code": code}, nil)
		var ae *apiError
		if errors.As(err, &ae) && ae.Code == "invalid_code" {
			after = step
			continue
		}
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		return nil
	}
	return fmt.Errorf("%s: code refused three times", path)
}

func (a *api) createRoom(ctx context.Context, name string) (string, error) {
	var room struct{ ID string }
	err := a.do(ctx, "POST", "/api/v1/rooms", map[string]any{"name": name, "lobby": false, "guests_allowed": false}, &room)
	if err != nil {
		return "", fmt.Errorf("create room: %w", err)
	}
	return room.ID, nil
}
