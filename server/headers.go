package server

import (
	"strings"

	"github.com/gofiber/fiber/v2"

	"github.com/parley-meet/parley/config"
)

// securityHeaders are sent on every response, errors and 404s included.
type securityHeaders struct {
	pairs [][2]string
}

func newSecurityHeaders(cfg *config.Config) securityHeaders {
	wsOrigin := "wss://" + cfg.PublicURL.Host
	if cfg.PublicURL.Scheme == "http" {
		wsOrigin = "ws://" + cfg.PublicURL.Host
	}
	csp := strings.Join([]string{
		"default-src 'self'",
		"object-src 'none'",
		"base-uri 'none'",
		"frame-ancestors 'none'",
		"script-src 'self'",
		"style-src 'self'",
		"img-src 'self' data: blob:",
		"media-src 'self' blob:",
		"connect-src 'self' " + wsOrigin,
		"worker-src 'self'",
		"form-action 'self'",
	}, "; ")
	return securityHeaders{pairs: [][2]string{
		{"Content-Security-Policy", csp},
		// Sent also over plain HTTP behind a TLS proxy: the browser sees
		// the proxy's HTTPS and honours it there.
		{"Strict-Transport-Security", "max-age=31536000; includeSubDomains"},
		{"X-Content-Type-Options", "nosniff"},
		{"Referrer-Policy", "no-referrer"},
		{"Cross-Origin-Opener-Policy", "same-origin"},
		{"Cross-Origin-Resource-Policy", "same-origin"},
		{"X-Frame-Options", "DENY"},
		{"Permissions-Policy", "camera=(self), microphone=(self), display-capture=(self), geolocation=(), payment=(), usb=(), interest-cohort=()"},
	}}
}

func (h securityHeaders) apply(c *fiber.Ctx) {
	for _, p := range h.pairs {
		c.Set(p[0], p[1])
	}
}

func (s *Server) securityHeadersMiddleware(c *fiber.Ctx) error {
	s.headers.apply(c)
	if strings.HasPrefix(c.Path(), "/api/") {
		// API answers are personal: never cache them.
		c.Set(fiber.HeaderCacheControl, "no-store")
	}
	return c.Next()
}
