package server

import (
	"io/fs"
	"mime"
	"net/http"
	"path"
	"strings"

	"github.com/gofiber/fiber/v2"

	"github.com/parley-meet/parley/frontend"
)

// frontendRoutes serves the embedded pages and their static files. Files
// are read from the binary; a path outside the embedded tree is a 404.
func (s *Server) frontendRoutes() {
	pages := frontend.FS()
	for route, file := range frontend.Pages() {
		body, err := fs.ReadFile(pages, file)
		if err != nil {
			panic("frontend page " + file + ": " + err.Error()) // embedded at build time
		}
		s.app.Get(route, func(c *fiber.Ctx) error {
			c.Set(fiber.HeaderCacheControl, "no-cache")
			c.Set(fiber.HeaderContentType, fiber.MIMETextHTMLCharsetUTF8)
			return c.Send(body)
		})
	}
	static := frontend.Static()
	s.app.Get("/static/*", func(c *fiber.Ctx) error {
		name := c.Params("*")
		// fs.FS names are clean, slash-separated and never start with a
		// slash or contain "..": anything else is not one of our files.
		if !fs.ValidPath(name) || name != path.Clean(name) || strings.Contains(name, "\\") {
			return fiber.ErrNotFound
		}
		body, err := fs.ReadFile(static, name)
		if err != nil {
			return fiber.ErrNotFound
		}
		ct := mime.TypeByExtension(path.Ext(name))
		if ct == "" {
			ct = "application/octet-stream"
		}
		c.Set(fiber.HeaderContentType, ct)
		c.Set(fiber.HeaderCacheControl, "no-cache")
		return c.Status(http.StatusOK).Send(body)
	})
}
