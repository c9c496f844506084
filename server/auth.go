package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/parley-meet/parley/auth"
)

// localPrincipal is where requireAuth leaves the caller.
const localPrincipal = "parley.principal"

func (s *Server) authRoutes() {
	api := s.app.Group("/api/v1", s.guardUnsafe)
	api.Post("/auth/login", s.handleLogin)
	api.Post("/auth/mfa", s.handleMFA)
	api.Post("/auth/enroll", s.handleEnroll)
	api.Post("/auth/enroll/confirm", s.handleEnrollConfirm)
	api.Post("/auth/activate", s.handleActivate)
	api.Post("/setup", s.handleSetup)

	api.Get("/me", s.requireAuth, s.handleMe)
	api.Post("/auth/logout", s.requireAuth, s.handleLogout)
	api.Post("/auth/token", s.requireAuth, s.handleToken)
	api.Post("/me/password", s.requireAuth, s.handleChangePassword)
	api.Post("/me/mfa", s.requireAuth, s.handleReplaceMFA)
	api.Post("/me/recovery-codes", s.requireAuth, s.handleRecoveryCodes)
}

func isSafeMethod(m string) bool {
	return m == fiber.MethodGet || m == fiber.MethodHead || m == fiber.MethodOptions
}

var errCSRF = &Error{Status: http.StatusForbidden, Code: "csrf", Message: "the request did not come from Parley's own pages"}

// guardUnsafe refuses state-changing API requests from another origin
// (Origin, when sent, must be the public origin; Sec-Fetch-Site must not
// be cross-site) and requests whose body is not JSON, which also rules
// out cross-site form posts.
func (s *Server) guardUnsafe(c *fiber.Ctx) error {
	if isSafeMethod(c.Method()) {
		return c.Next()
	}
	if o := c.Get(fiber.HeaderOrigin); o != "" && o != s.cfg.PublicOrigin() {
		return errCSRF
	}
	if c.Get("Sec-Fetch-Site") == "cross-site" {
		return errCSRF
	}
	if len(c.Body()) > 0 {
		ct := strings.ToLower(strings.TrimSpace(strings.Split(c.Get(fiber.HeaderContentType), ";")[0]))
		if ct != fiber.MIMEApplicationJSON {
			return &Error{Status: http.StatusUnsupportedMediaType, Code: "unsupported_media_type", Message: "send the body as application/json"}
		}
	}
	return c.Next()
}

var errUnauthenticated = &Error{Status: http.StatusUnauthorized, Code: "unauthenticated", Message: "sign in first"}

// requireAuth admits fully signed-in callers only: a live session cookie,
// or a Bearer API token minted by a live session. A challenge (password
// done, code not yet) is neither. Cookie requests that change state must
// carry the session's CSRF token in X-CSRF-Token.
func (s *Server) requireAuth(c *fiber.Ctx) error {
	p, err := s.principal(c)
	if err != nil {
		return err
	}
	if !p.ViaToken && !isSafeMethod(c.Method()) && !p.CheckCSRF(c.Get("X-CSRF-Token")) {
		return errCSRF
	}
	c.Locals(localPrincipal, p)
	return c.Next()
}

// principal authenticates the request without deciding anything else.
func (s *Server) principal(c *fiber.Ctx) (*auth.Principal, error) {
	var (
		p   *auth.Principal
		err error
	)
	if h := c.Get(fiber.HeaderAuthorization); h != "" {
		scheme, tok, ok := strings.Cut(h, " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") {
			return nil, errUnauthenticated
		}
		p, err = s.auth.AuthenticateToken(c.UserContext(), strings.TrimSpace(tok))
	} else {
		p, err = s.auth.Authenticate(c.UserContext(), c.Cookies(auth.CookieName))
	}
	if errors.Is(err, auth.ErrUnauthenticated) {
		return nil, errUnauthenticated
	}
	return p, err
}

func principalOf(c *fiber.Ctx) *auth.Principal {
	p, _ := c.Locals(localPrincipal).(*auth.Principal)
	return p
}

func (s *Server) meta(c *fiber.Ctx) auth.Meta {
	return auth.Meta{ClientIP: s.ClientIP(c), UserAgent: c.Get(fiber.HeaderUserAgent)}
}

// decodeJSON reads the body into v: one JSON object with no unknown
// fields and nothing after it.
func decodeJSON(c *fiber.Ctx, v any) error {
	dec := json.NewDecoder(bytes.NewReader(c.Body()))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return &Error{Status: http.StatusBadRequest, Code: "bad_json", Message: "the body must be one JSON object with the documented fields"}
	}
	if dec.More() {
		return &Error{Status: http.StatusBadRequest, Code: "bad_json", Message: "the body must be one JSON object with the documented fields"}
	}
	return nil
}

// authError maps the auth package's errors to API errors.
func authError(c *fiber.Ctx, err error) error {
	var thr *auth.ThrottledError
	switch {
	case errors.As(err, &thr):
		c.Set(fiber.HeaderRetryAfter, strconv.Itoa(int(thr.RetryAfter/time.Second)))
		code := "rate_limited"
		if thr.Locked {
			code = "account_locked"
		}
		return &Error{Status: http.StatusTooManyRequests, Code: code, Message: thr.Error()}
	case errors.Is(err, auth.ErrBusy):
		c.Set(fiber.HeaderRetryAfter, "2")
		return &Error{Status: http.StatusServiceUnavailable, Code: "busy", Message: "the server is busy: try again in a moment"}
	}
	for _, m := range authErrors {
		if errors.Is(err, m.err) {
			msg := m.err.Error()
			if m.own {
				msg = err.Error() // carries the policy's numbers
			}
			return &Error{Status: m.status, Code: m.code, Message: msg}
		}
	}
	return err
}

var authErrors = []struct {
	err    error
	status int
	code   string
	own    bool
}{
	{auth.ErrInvalidCredentials, http.StatusUnauthorized, "invalid_credentials", false},
	{auth.ErrAccountDisabled, http.StatusForbidden, "account_disabled", false},
	{auth.ErrInvalidChallenge, http.StatusUnauthorized, "invalid_challenge", false},
	{auth.ErrInvalidCode, http.StatusUnauthorized, "invalid_code", false},
	{auth.ErrInvalidToken, http.StatusUnauthorized, "invalid_token", false},
	{auth.ErrSetupComplete, http.StatusConflict, "setup_complete", false},
	{auth.ErrUsernameTaken, http.StatusConflict, "username_taken", false},
	{auth.ErrInvalidUsername, http.StatusBadRequest, "invalid_username", false},
	{auth.ErrInvalidDisplayName, http.StatusBadRequest, "invalid_display_name", false},
	{auth.ErrPasswordTooShort, http.StatusBadRequest, "invalid_password", true},
	{auth.ErrPasswordTooLong, http.StatusBadRequest, "invalid_password", true},
	{auth.ErrPasswordCommon, http.StatusBadRequest, "invalid_password", true},
	{auth.ErrPasswordIsUsername, http.StatusBadRequest, "invalid_password", true},
	{auth.ErrPasswordInvalid, http.StatusBadRequest, "invalid_password", true},
}

// setSessionCookie hands the browser its session. __Host- demands Secure,
// Path=/ and no Domain; the cookie is also sent Secure behind a TLS proxy.
func setSessionCookie(c *fiber.Ctx, ns *auth.NewSession) {
	c.Cookie(&fiber.Cookie{
		Name: auth.CookieName, Value: ns.Token, Path: "/", Secure: true, HTTPOnly: true,
		SameSite: fiber.CookieSameSiteStrictMode, Expires: ns.ExpiresAt,
	})
}

func clearSessionCookie(c *fiber.Ctx) {
	c.Cookie(&fiber.Cookie{
		Name: auth.CookieName, Value: "", Path: "/", Secure: true, HTTPOnly: true,
		SameSite: fiber.CookieSameSiteStrictMode, Expires: time.Unix(0, 0), MaxAge: -1,
	})
}

func (s *Server) handleLogin(c *fiber.Ctx) error {
	var req struct {
		Username string `json:"username"`
		Password string `json:"password"`
	}
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	res, err := s.auth.Login(c.UserContext(), req.Username, req.Password, s.meta(c))
	if err != nil {
		return authError(c, err)
	}
	return c.JSON(res)
}

type sessionReply struct {
	User      auth.User `json:"user"`
	CSRFToken string    `json:"csrf_token"`
}

func (s *Server) handleMFA(c *fiber.Ctx) error {
	var req struct {
		Challenge    string `json:"challenge"`
		Code         string `json:"code"`
		RecoveryCode string `json:"recovery_code"`
	}
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	if (req.Code == "") == (req.RecoveryCode == "") {
		return &Error{Status: http.StatusBadRequest, Code: "bad_request", Message: "send either code or recovery_code"}
	}
	ns, err := s.auth.VerifyMFA(c.UserContext(), req.Challenge, req.Code, req.RecoveryCode, s.meta(c))
	if err != nil {
		return authError(c, err)
	}
	setSessionCookie(c, ns)
	return c.JSON(sessionReply{User: ns.User, CSRFToken: ns.CSRFToken})
}

func (s *Server) handleEnroll(c *fiber.Ctx) error {
	var req struct {
		Challenge string `json:"challenge"`
	}
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	e, err := s.auth.StartEnrollment(c.UserContext(), req.Challenge, s.meta(c))
	if err != nil {
		return authError(c, err)
	}
	return c.JSON(e)
}

func (s *Server) handleEnrollConfirm(c *fiber.Ctx) error {
	var req struct {
		Challenge string `json:"challenge"`
		Code      string `json:"code"`
	}
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	done, err := s.auth.ConfirmEnrollment(c.UserContext(), req.Challenge, req.Code, s.meta(c))
	if err != nil {
		return authError(c, err)
	}
	setSessionCookie(c, done.Session)
	return c.JSON(struct {
		RecoveryCodes []string `json:"recovery_codes"`
		sessionReply
	}{done.RecoveryCodes, sessionReply{User: done.Session.User, CSRFToken: done.Session.CSRFToken}})
}

func (s *Server) handleSetup(c *fiber.Ctx) error {
	var req struct {
		Token       string `json:"token"`
		Username    string `json:"username"`
		DisplayName string `json:"display_name"`
		Password    string `json:"password"`
	}
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	res, err := s.auth.CompleteSetup(c.UserContext(), req.Token,
		auth.NewAccount{Username: req.Username, DisplayName: req.DisplayName, Password: req.Password}, s.meta(c))
	if err != nil {
		return authError(c, err)
	}
	return c.JSON(res)
}

func (s *Server) handleActivate(c *fiber.Ctx) error {
	var req struct {
		Token    string `json:"token"`
		Password string `json:"password"`
	}
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	res, username, err := s.auth.Activate(c.UserContext(), req.Token, req.Password, s.meta(c))
	if err != nil {
		return authError(c, err)
	}
	return c.JSON(fiber.Map{"next": res.Next, "challenge": res.Challenge, "username": username})
}

func (s *Server) handleMe(c *fiber.Ctx) error {
	p := principalOf(c)
	mfa, err := s.auth.MFAStatus(c.UserContext(), p)
	if err != nil {
		return err
	}
	u := s.auth.PublicUser(c.UserContext(), p)
	return c.JSON(fiber.Map{
		"id": u.ID, "username": u.Username, "display_name": u.DisplayName, "roles": u.Roles,
		"csrf_token": p.Session.CSRFToken, "mfa": mfa,
	})
}

func (s *Server) handleLogout(c *fiber.Ctx) error {
	if err := s.auth.Logout(c.UserContext(), principalOf(c), s.meta(c)); err != nil {
		return err
	}
	clearSessionCookie(c)
	return c.SendStatus(http.StatusNoContent)
}

func (s *Server) handleToken(c *fiber.Ctx) error {
	p := principalOf(c)
	if p.ViaToken {
		return &Error{Status: http.StatusForbidden, Code: "session_required", Message: "API tokens are minted from a signed-in session, not from another token"}
	}
	tok, ttl, err := s.auth.MintToken(c.UserContext(), p, s.meta(c))
	if err != nil {
		return err
	}
	return c.JSON(fiber.Map{"token": tok, "token_type": "Bearer", "expires_in": int(ttl.Seconds())})
}

// reauthRequest is the body of every change to one's own credentials.
type reauthRequest struct {
	Password    string `json:"password"`
	Code        string `json:"code"`
	NewPassword string `json:"new_password,omitempty"`
}

func (s *Server) reauthBody(c *fiber.Ctx) (reauthRequest, error) {
	var req reauthRequest
	if err := decodeJSON(c, &req); err != nil {
		return req, err
	}
	if principalOf(c).ViaToken {
		return req, &Error{Status: http.StatusForbidden, Code: "session_required", Message: "changing credentials needs a signed-in browser session"}
	}
	return req, nil
}

func (s *Server) handleChangePassword(c *fiber.Ctx) error {
	req, err := s.reauthBody(c)
	if err != nil {
		return err
	}
	if err := s.auth.ChangePassword(c.UserContext(), principalOf(c), req.Password, req.Code, req.NewPassword, s.meta(c)); err != nil {
		return authError(c, err)
	}
	return c.SendStatus(http.StatusNoContent)
}

func (s *Server) handleReplaceMFA(c *fiber.Ctx) error {
	req, err := s.reauthBody(c)
	if err != nil {
		return err
	}
	res, err := s.auth.ReplaceMFA(c.UserContext(), principalOf(c), req.Password, req.Code, s.meta(c))
	if err != nil {
		return authError(c, err)
	}
	return c.JSON(res)
}

func (s *Server) handleRecoveryCodes(c *fiber.Ctx) error {
	req, err := s.reauthBody(c)
	if err != nil {
		return err
	}
	codes, err := s.auth.RegenerateRecoveryCodes(c.UserContext(), principalOf(c), req.Password, req.Code, s.meta(c))
	if err != nil {
		return authError(c, err)
	}
	return c.JSON(fiber.Map{"recovery_codes": codes})
}
