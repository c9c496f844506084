// Package server owns Parley's HTTPS front door: the Fiber application, TLS
// (self-signed, certificate files with reload, or ACME), timeouts and size
// limits, security headers on every response, the client address behind
// trusted proxies, JSON errors that never carry internals, panic recovery,
// and the routes. Feature packages plug their handlers in here; this package
// decides no permission itself (rbac/ does).
package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/gofiber/fiber/v2/middleware/recover"

	"github.com/parley-meet/parley/audit"
	"github.com/parley-meet/parley/auth"
	"github.com/parley-meet/parley/cluster"
	"github.com/parley-meet/parley/config"
	"github.com/parley-meet/parley/rbac"
	"github.com/parley-meet/parley/recording"
	"github.com/parley-meet/parley/signaling"
	"github.com/parley-meet/parley/store"
)

// Deps are what the server is built from.
type Deps struct {
	Config *config.Config
	Logger *slog.Logger
	Store  *store.Store
	Audit  *audit.Log
	Auth   *auth.Service
	RBAC   *rbac.Authorizer
	// TLS is the serving configuration; nil with --insecure-http.
	TLS *tls.Config
	// Now is the clock of room and invite times; nil means time.Now.
	Now func() time.Time
}

// Server is the HTTP(S) server of one Parley process.
type Server struct {
	cfg     *config.Config
	log     *slog.Logger
	store   *store.Store
	audit   *audit.Log
	auth    *auth.Service
	rbac    *rbac.Authorizer
	tls     *tls.Config
	app     *fiber.App
	proxies []netip.Prefix
	headers securityHeaders
	now     func() time.Time
	hub     *signaling.Hub // meetings in progress; nil until EnableSignaling
	// recordings is the recording catalog and files; nil until EnableRecording.
	recordings *recording.Manager
	// cluster is this node's membership of a cluster; nil on a single
	// node (EnableCluster).
	cluster *cluster.Node

	lnMu sync.Mutex
	ln   []net.Listener // given to Serve; closed by Shutdown
}

// New builds the server and its routes. It starts nothing.
func New(d Deps) (*Server, error) {
	if d.Config == nil || d.Logger == nil || d.Store == nil || d.Audit == nil || d.Auth == nil || d.RBAC == nil {
		return nil, errors.New("server: missing dependency")
	}
	if d.TLS == nil && !d.Config.InsecureHTTP {
		return nil, errors.New("server: TLS configuration required unless --insecure-http")
	}
	s := &Server{
		cfg:     d.Config,
		log:     d.Logger,
		store:   d.Store,
		audit:   d.Audit,
		auth:    d.Auth,
		rbac:    d.RBAC,
		tls:     d.TLS,
		proxies: d.Config.TrustedProxies,
		headers: newSecurityHeaders(d.Config),
		now:     d.Now,
	}
	if s.now == nil {
		s.now = time.Now
	}
	s.app = fiber.New(fiber.Config{
		AppName:               "parley",
		DisableStartupMessage: true,
		ServerHeader:          "",
		ReadTimeout:           d.Config.ReadTimeout,
		WriteTimeout:          d.Config.WriteTimeout,
		IdleTimeout:           d.Config.IdleTimeout,
		// fasthttp reads the whole header block into this buffer; a larger
		// header block is refused with 431.
		ReadBufferSize: d.Config.MaxHeaderBytes,
		// Buffers go back to their pools when a connection waits between
		// requests. It also matters for signaling: a WebSocket upgraded from a
		// request whose buffer holds nothing more reads the connection
		// directly, instead of through that buffer for all its life.
		ReduceMemoryUsage: true,
		BodyLimit:         d.Config.MaxBodyBytes,
		ErrorHandler:      s.handleError,
		// Paths are matched as sent: %2f stays %2f, so encoded slashes and
		// dots can never select another route.
		UnescapePath:  false,
		StrictRouting: false,
		CaseSensitive: true,
	})
	// fasthttp's own error log quotes raw request bytes (cookies included):
	// keep it out of the logs.
	s.app.Server().Logger = quietLogger{s.log}

	s.app.Use(s.securityHeadersMiddleware)
	s.app.Use(recover.New(recover.Config{
		EnableStackTrace: true,
		StackTraceHandler: func(c *fiber.Ctx, e any) {
			s.log.Error("panic while serving a request", "method", c.Method(), "path", c.Path(),
				"panic", fmt.Sprint(e), "stack", string(debug.Stack()))
		},
	}))
	s.routes()
	return s, nil
}

func (s *Server) routes() {
	s.app.Get("/healthz", s.handleHealthz)
	s.app.Get("/readyz", s.handleReadyz)
	s.authRoutes()
	s.roomRoutes()
	s.recordingRoutes()
	s.liveRoutes()
	s.consoleRoutes()
	s.frontendRoutes()
}

// Serve accepts connections on ln until Shutdown. With TLS configured the
// listener is wrapped in TLS; plain HTTP on it fails the handshake.
func (s *Server) Serve(ln net.Listener) error {
	s.lnMu.Lock()
	s.ln = append(s.ln, ln)
	s.lnMu.Unlock()
	if s.tls != nil {
		ln = tls.NewListener(ln, s.tls)
	}
	return s.app.Listener(ln)
}

// Shutdown stops accepting connections and waits for requests in flight,
// at most until ctx ends. It also closes the listeners given to Serve:
// fasthttp's Shutdown closes only those Serve has already taken up, so a
// stop right after the start would leave Serve accepting for ever.
func (s *Server) Shutdown(ctx context.Context) error {
	err := s.app.ShutdownWithContext(ctx)
	s.lnMu.Lock()
	for _, ln := range s.ln {
		ln.Close()
	}
	s.lnMu.Unlock()
	return err
}

func (s *Server) handleHealthz(c *fiber.Ctx) error {
	c.Set(fiber.HeaderCacheControl, "no-store")
	return c.JSON(fiber.Map{"status": "ok"})
}

func (s *Server) handleReadyz(c *fiber.Ctx) error {
	c.Set(fiber.HeaderCacheControl, "no-store")
	ctx, cancel := context.WithTimeout(c.UserContext(), 2*time.Second)
	defer cancel()
	if err := s.store.Ping(ctx); err != nil {
		s.log.Warn("readiness check: store unreachable", "err", err)
		return &Error{Status: fiber.StatusServiceUnavailable, Code: "not_ready", Message: "the store is not reachable"}
	}
	return c.JSON(fiber.Map{"status": "ready", "store": string(s.store.Engine())})
}

// quietLogger receives fasthttp's connection-level errors, whose text may
// quote request bytes, and logs only that one happened.
type quietLogger struct{ log *slog.Logger }

func (q quietLogger) Printf(format string, _ ...any) {
	kind := "connection error"
	if strings.Contains(format, "panic") {
		kind = "panic in connection handler"
	}
	q.log.Debug("http: " + kind)
}
