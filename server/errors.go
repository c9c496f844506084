package server

import (
	"errors"
	"net/http"
	"strings"

	"github.com/gofiber/fiber/v2"
)

// Error is an API error with a status, a stable machine-readable code and a
// message written for people. Handlers return it; handleError renders it as
// {"error": code, "message": message}.
type Error struct {
	Status  int
	Code    string
	Message string
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

// genericErrors are what a client sees for errors that are not *Error:
// Fiber's routing errors, fasthttp's parse errors and anything unexpected.
// Their own texts are never sent, because some quote request bytes or
// internals.
var genericErrors = map[int]Error{
	http.StatusBadRequest:                  {Code: "bad_request", Message: "the request could not be understood"},
	http.StatusNotFound:                    {Code: "not_found", Message: "no such resource"},
	http.StatusMethodNotAllowed:            {Code: "method_not_allowed", Message: "method not allowed on this resource"},
	http.StatusRequestTimeout:              {Code: "request_timeout", Message: "the request took too long to arrive"},
	http.StatusRequestEntityTooLarge:       {Code: "body_too_large", Message: "the request body is too large"},
	http.StatusRequestHeaderFieldsTooLarge: {Code: "headers_too_large", Message: "the request headers are too large"},
	http.StatusUnsupportedMediaType:        {Code: "unsupported_media_type", Message: "unsupported content type"},
	http.StatusTooManyRequests:             {Code: "rate_limited", Message: "too many requests; try again later"},
	http.StatusInternalServerError:         {Code: "internal", Message: "internal server error"},
	http.StatusServiceUnavailable:          {Code: "unavailable", Message: "service unavailable"},
}

// handleError is Fiber's error handler: every error response, including
// ones fasthttp raises before routing, passes here.
func (s *Server) handleError(c *fiber.Ctx, err error) error {
	var (
		apiErr *Error
		fe     *fiber.Error
		out    Error
	)
	switch {
	case errors.As(err, &apiErr):
		out = *apiErr
	case errors.As(err, &fe):
		out = genericFor(fe.Code)
	default:
		s.log.Error("request failed", "method", c.Method(), "path", c.Path(), "err", err)
		out = genericFor(http.StatusInternalServerError)
	}
	// Errors raised before the middleware chain (431, 408, 413) have not
	// been through it yet.
	s.headers.apply(c)
	c.Set(fiber.HeaderCacheControl, "no-store")
	return c.Status(out.Status).JSON(fiber.Map{"error": out.Code, "message": out.Message})
}

func genericFor(status int) Error {
	if g, ok := genericErrors[status]; ok {
		g.Status = status
		return g
	}
	code := strings.ToLower(strings.ReplaceAll(http.StatusText(status), " ", "_"))
	if code == "" || status < 400 || status > 599 {
		return Error{Status: http.StatusInternalServerError, Code: "internal", Message: "internal server error"}
	}
	return Error{Status: status, Code: code, Message: strings.ToLower(http.StatusText(status))}
}
