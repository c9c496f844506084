// Package frontend owns Parley's browser front ends: the HTML pages, ES
// modules, stylesheet and images, embedded into the binary with go:embed and
// served as files by server/. The pages speak only to the public JSON API
// over same-origin fetch; this package never talks to the store, holds no
// state and decides nothing. Every page obeys the strict Content Security
// Policy: no inline script, no inline style, no HTML built from data.
package frontend

import (
	"embed"
	"io/fs"
)

//go:embed pages static
var files embed.FS

// Pages maps each route to its HTML file inside FS. A route is a Fiber
// route pattern: ":id" is one path segment, which the page reads from
// location.pathname itself (the server only serves the file). The map is
// new on every call, so callers may keep or change it.
func Pages() map[string]string {
	return map[string]string{
		"/":                   "pages/index.html",
		"/login":              "pages/login.html",
		"/enroll":             "pages/enroll.html",
		"/setup":              "pages/setup.html",
		"/rooms/:id":          "pages/room.html",
		"/rooms/:id/settings": "pages/room-settings.html",
		"/join/:id":           "pages/join.html",
		"/recordings":         "pages/recordings.html",
		"/admin":              "pages/admin.html",
	}
}

// Static is the static subtree (js/, css/, img/), served under /static/.
func Static() fs.FS {
	sub, err := fs.Sub(files, "static")
	if err != nil {
		// "static" is a valid, embedded directory name: fs.Sub cannot fail.
		panic("frontend: " + err.Error())
	}
	return sub
}

// FS is the whole embedded tree: pages/ and static/.
func FS() fs.FS {
	return files
}
