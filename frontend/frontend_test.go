package frontend

import (
	"io/fs"
	"path"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/parley-meet/parley/internal/leakcheck"
)

func TestMain(m *testing.M) { leakcheck.VerifyTestMain(m) }

func readFile(t *testing.T, name string) string {
	t.Helper()
	b, err := fs.ReadFile(FS(), name)
	if err != nil {
		t.Fatalf("read %s: %v", name, err)
	}
	return string(b)
}

// files returns every embedded file whose name ends in ext.
func filesWithExt(t *testing.T, ext string) []string {
	t.Helper()
	var out []string
	err := fs.WalkDir(FS(), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && strings.HasSuffix(p, ext) {
			out = append(out, p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(out) == 0 {
		t.Fatalf("no %s files embedded", ext)
	}
	return out
}

func TestPagesExist(t *testing.T) {
	pages := Pages()
	for _, route := range []string{"/", "/login", "/enroll", "/setup", "/rooms/:id", "/rooms/:id/settings", "/join/:id", "/recordings", "/admin"} {
		file, ok := pages[route]
		if !ok {
			t.Errorf("Pages() has no %q", route)
			continue
		}
		if _, err := fs.Stat(FS(), file); err != nil {
			t.Errorf("page for %q: %v", route, err)
		}
		if !strings.HasPrefix(file, "pages/") || !strings.HasSuffix(file, ".html") {
			t.Errorf("page for %q is %q, want pages/*.html", route, file)
		}
	}
	// Every HTML file is reachable through some route.
	for _, file := range filesWithExt(t, ".html") {
		found := false
		for _, f := range pages {
			found = found || f == file
		}
		if !found {
			t.Errorf("%s is embedded but no route serves it", file)
		}
	}
	// The map is the caller's to change.
	pages["/x"] = "y"
	if _, ok := Pages()["/x"]; ok {
		t.Error("Pages() returns a shared map")
	}
}

func TestStaticIsTheStaticSubtree(t *testing.T) {
	for _, name := range []string{"css/parley.css", "img/parley.svg", "js/api.js"} {
		if _, err := fs.Stat(Static(), name); err != nil {
			t.Errorf("Static(): %v", err)
		}
	}
	if _, err := fs.Stat(Static(), "pages"); err == nil {
		t.Error("Static() exposes pages/")
	}
}

var (
	scriptTag    = regexp.MustCompile(`(?is)<script\b([^>]*)>(.*?)</script\s*>`)
	scriptOpen   = regexp.MustCompile(`(?i)<script\b`)
	srcAttr      = regexp.MustCompile(`(?i)\bsrc\s*=\s*"([^"]*)"`)
	eventAttr    = regexp.MustCompile(`(?i)\son[a-z]+\s*=`)
	styleAttr    = regexp.MustCompile(`(?i)\sstyle\s*=`)
	styleTag     = regexp.MustCompile(`(?i)<style\b`)
	jsURL        = regexp.MustCompile(`(?i)javascript:`)
	refAttr      = regexp.MustCompile(`(?i)\b(?:src|href)\s*=\s*"([^"]*)"`)
	idAttr       = regexp.MustCompile(`\bid="([^"]+)"`)
	inputTag     = regexp.MustCompile(`(?is)<(input|select|textarea)\b[^>]*>`)
	labelFor     = regexp.MustCompile(`(?i)<label\b[^>]*\bfor="([^"]+)"`)
	importFrom   = regexp.MustCompile(`(?m)^\s*(?:import|export)\b[^;'"]*?\bfrom\s+'([^']+)'|^\s*import\s+'([^']+)'`)
	dynamicImprt = regexp.MustCompile(`\bimport\s*\(`)
)

// TestPagesHaveNoInlineCode checks the rules the CSP would enforce in the
// browser, so a violation fails here instead of silently in production.
func TestPagesHaveNoInlineCode(t *testing.T) {
	for _, page := range filesWithExt(t, ".html") {
		html := readFile(t, page)
		scripts := scriptTag.FindAllStringSubmatch(html, -1)
		if n := len(scriptOpen.FindAllString(html, -1)); n != len(scripts) {
			t.Errorf("%s: %d <script> tags but %d well-formed ones", page, n, len(scripts))
		}
		if len(scripts) == 0 {
			t.Errorf("%s: loads no script", page)
		}
		for _, s := range scripts {
			if !srcAttr.MatchString(s[1]) {
				t.Errorf("%s: <script> without src", page)
			}
			if strings.TrimSpace(s[2]) != "" {
				t.Errorf("%s: inline script content %q", page, s[2])
			}
			if !strings.Contains(s[1], `type="module"`) {
				t.Errorf("%s: script is not type=module: %s", page, s[1])
			}
		}
		if m := eventAttr.FindString(html); m != "" {
			t.Errorf("%s: inline event handler %q", page, m)
		}
		if styleAttr.MatchString(html) {
			t.Errorf("%s: style= attribute", page)
		}
		if styleTag.MatchString(html) {
			t.Errorf("%s: inline <style> element", page)
		}
		if jsURL.MatchString(html) {
			t.Errorf("%s: javascript: URL", page)
		}
	}
}

// TestPageReferencesResolve checks that every /static/ URL a page names
// (script, stylesheet, icon, image) is embedded, and that each page has the
// stylesheet and the icon.
func TestPageReferencesResolve(t *testing.T) {
	for _, page := range filesWithExt(t, ".html") {
		html := readFile(t, page)
		refs := refAttr.FindAllStringSubmatch(html, -1)
		var static []string
		for _, r := range refs {
			u := r[1]
			switch {
			case strings.HasPrefix(u, "/static/"):
				static = append(static, u)
				if _, err := fs.Stat(Static(), strings.TrimPrefix(u, "/static/")); err != nil {
					t.Errorf("%s: %s is not embedded", page, u)
				}
			case strings.HasPrefix(u, "//"), strings.Contains(u, "://"):
				t.Errorf("%s: refers to another site: %s", page, u)
			}
		}
		for _, want := range []string{"/static/css/parley.css", "/static/img/parley.svg"} {
			if !slices.Contains(static, want) {
				t.Errorf("%s: does not link %s", page, want)
			}
		}
		if !strings.Contains(html, `<link rel="icon" href="/static/img/parley.svg" type="image/svg+xml">`) {
			t.Errorf("%s: no SVG favicon link", page)
		}
		if !strings.Contains(html, `<html lang="en">`) || !strings.Contains(html, `name="viewport"`) {
			t.Errorf("%s: missing lang or viewport", page)
		}
	}
}

// TestModuleImportsResolve follows every static import of every module.
func TestModuleImportsResolve(t *testing.T) {
	for _, mod := range filesWithExt(t, ".js") {
		src := readFile(t, mod)
		if dynamicImprt.MatchString(src) {
			t.Errorf("%s: dynamic import()", mod)
		}
		for _, m := range importFrom.FindAllStringSubmatch(src, -1) {
			spec := m[1] + m[2]
			var target string
			switch {
			case strings.HasPrefix(spec, "/static/"):
				target = path.Join("static", strings.TrimPrefix(spec, "/static/"))
			case strings.HasPrefix(spec, "./"), strings.HasPrefix(spec, "../"):
				target = path.Join(path.Dir(mod), spec)
			default:
				t.Errorf("%s: import %q is neither /static/ nor relative", mod, spec)
				continue
			}
			if _, err := fs.Stat(FS(), target); err != nil {
				t.Errorf("%s: import %q: %s is not embedded", mod, spec, target)
			}
		}
	}
}

// TestModulesBuildNoMarkup keeps every module to DOM building with
// textContent: nothing that parses strings as HTML or code.
func TestModulesBuildNoMarkup(t *testing.T) {
	banned := []string{"innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function", "javascript:", "setAttribute('style'", "setAttribute(\"style\""}
	for _, mod := range filesWithExt(t, ".js") {
		src := readFile(t, mod)
		for _, b := range banned {
			if strings.Contains(src, b) {
				t.Errorf("%s: uses %s", mod, b)
			}
		}
		if strings.Contains(src, "localStorage") {
			t.Errorf("%s: uses localStorage (the CSRF token and challenges stay in memory or sessionStorage)", mod)
		}
	}
}

// TestAccessibleForms: every form control on a page has a <label for>, and
// ids are unique.
func TestAccessibleForms(t *testing.T) {
	for _, page := range filesWithExt(t, ".html") {
		html := readFile(t, page)
		labels := map[string]bool{}
		for _, m := range labelFor.FindAllStringSubmatch(html, -1) {
			labels[m[1]] = true
		}
		for _, tag := range inputTag.FindAllString(html, -1) {
			if strings.Contains(tag, `type="hidden"`) {
				continue
			}
			id := idAttr.FindStringSubmatch(tag)
			if id == nil {
				t.Errorf("%s: control without id: %s", page, tag)
				continue
			}
			if !labels[id[1]] {
				t.Errorf("%s: #%s has no <label for>", page, id[1])
			}
		}
		seen := map[string]bool{}
		for _, m := range idAttr.FindAllStringSubmatch(html, -1) {
			if seen[m[1]] {
				t.Errorf("%s: duplicate id %q", page, m[1])
			}
			seen[m[1]] = true
		}
		if !strings.Contains(html, `role="alert"`) {
			t.Errorf("%s: no role=alert element for errors", page)
		}
	}
}

// TestStableIDs: the ids the browser tests drive exist, either in the page
// itself or, for steps drawn later, in the modules that draw them.
func TestStableIDs(t *testing.T) {
	modules := map[string]string{}
	for _, mod := range filesWithExt(t, ".js") {
		modules[mod] = readFile(t, mod)
	}
	want := map[string][]string{
		"pages/login.html": {"login-form", "username", "password", "login-submit", "mfa-form", "code",
			"mfa-submit", "use-recovery", "recovery-code", "login-error"},
		"pages/enroll.html": {"activate-form", "new-password", "new-password2", "activate-submit", "enroll-error",
			"qr", "totp-secret", "confirm-form", "confirm-code", "confirm-submit", "recovery-codes",
			"download-codes", "copy-codes", "codes-saved", "enroll-done"},
		"pages/setup.html": {"setup-form", "setup-username", "setup-display-name", "setup-password",
			"setup-password2", "setup-submit", "setup-error", "qr", "totp-secret", "confirm-code"},
		"pages/index.html": {"whoami", "recovery-left", "logout", "regen-form", "regen-password", "regen-code",
			"rooms-list", "rooms-error", "create-room-form", "room-name", "room-lobby", "room-guests",
			"create-room-submit", "recordings-link", "console-link"},
		"pages/room-settings.html": {"settings-error", "no-room", "settings-form", "settings-name", "settings-lobby",
			"settings-guests", "settings-e2ee", "settings-submit", "members-list", "add-member-form", "add-member-username",
			"add-member-role", "add-member-submit", "invite-form", "invite-role", "invite-expires",
			"invite-max-uses", "invite-submit", "invite-url", "invite-copy", "invites-list", "delete-room",
			"delete-room-confirm", "delete-room-cancel"},
		"pages/join.html": {"join-error", "join-form", "join-name", "join-submit", "join-room-name", "join-waiting",
			"join-missing", "join-meeting"},
		"pages/room.html": {"meeting-error", "no-room", "prejoin", "camera-select", "mic-select", "preview",
			"prejoin-name", "recording-notice", "join-button", "meeting", "grid", "toggle-mic", "toggle-camera",
			"toggle-screen", "raise-hand", "leave", "chat", "chat-messages", "chat-form", "chat-input", "chat-send",
			"participants", "lock-room", "end-meeting", "end-meeting-confirm", "recording-indicator", "lobby-screen",
			"lobby-position", "denied-screen", "kicked-screen", "ended-screen", "lost-screen", "reconnect", "left-screen",
			"toggle-recording", "e2ee-notice", "e2ee-unsupported", "e2ee-indicator", "e2ee-panel", "e2ee-safety-code"},
		"pages/recordings.html": {"recordings-error", "recordings-status", "recordings-list", "recordings-empty",
			"recording-detail", "recording-title", "tracks-list", "share-form", "share-username", "share-until",
			"share-submit", "shares-list", "delete-recording", "delete-confirm", "delete-cancel"},
		"pages/admin.html": {"admin-error", "tab-people", "tab-rooms", "tab-live", "tab-audit", "tab-security",
			"panel-people", "panel-rooms", "panel-live", "panel-audit", "panel-security",
			"people-search", "people-list", "create-user-form", "create-username", "create-display-name",
			"create-submit", "new-user-link", "new-user-copy", "rooms-list", "live-list", "live-refresh",
			"audit-filter", "audit-actor", "audit-action", "audit-outcome", "audit-from", "audit-to", "audit-submit",
			"audit-table", "audit-verify", "audit-older", "audit-export", "security-chart", "security-table",
			"inactive-list", "recovery-used-list"},
	}
	for page, ids := range want {
		html := readFile(t, page)
		for _, id := range ids {
			if strings.Contains(html, `id="`+id+`"`) {
				continue
			}
			found := false
			for _, src := range modules {
				found = found || strings.Contains(src, `id: '`+id+`'`)
			}
			if !found {
				t.Errorf("%s: no element with id %q in the page or its modules", page, id)
			}
		}
	}
}

// TestRoutePatterns: every route is a plain path or a Fiber pattern whose
// parameters are whole segments (":id"), and the page of a parameterised
// route loads a module that reads location.pathname (the server only
// serves the file; it passes no parameter in).
func TestRoutePatterns(t *testing.T) {
	segment := regexp.MustCompile(`^(?:[a-z][a-z0-9-]*|:[a-z]+)$`)
	for route, file := range Pages() {
		if route == "/" {
			continue
		}
		if !strings.HasPrefix(route, "/") || strings.HasSuffix(route, "/") {
			t.Errorf("route %q: want /a/b without a trailing slash", route)
			continue
		}
		params := false
		for _, seg := range strings.Split(route[1:], "/") {
			if !segment.MatchString(seg) {
				t.Errorf("route %q: segment %q is neither a plain name nor :param", route, seg)
			}
			params = params || strings.HasPrefix(seg, ":")
		}
		if !params {
			continue
		}
		html := readFile(t, file)
		for _, s := range scriptTag.FindAllStringSubmatch(html, -1) {
			src := srcAttr.FindStringSubmatch(s[1])
			if src == nil {
				continue
			}
			mod := readFile(t, path.Join("static", strings.TrimPrefix(src[1], "/static/")))
			if !strings.Contains(mod, "roomIdFromPath(") && !strings.Contains(mod, "location.pathname") {
				t.Errorf("route %q: %s does not read its parameter from the path", route, src[1])
			}
		}
	}
}

var lookupCall = regexp.MustCompile(`\b(?:byId|inputById|formById)\('([^']+)'\)`)

// TestModulesFindTheirElements: every id a page's own module looks up with
// byId (and friends) is in that page or drawn by one of the modules, so a
// renamed id fails here and not as a blank page.
func TestModulesFindTheirElements(t *testing.T) {
	drawn := map[string]bool{}
	drawnID := regexp.MustCompile(`\bid: '([^']+)'`)
	for _, mod := range filesWithExt(t, ".js") {
		for _, m := range drawnID.FindAllStringSubmatch(readFile(t, mod), -1) {
			drawn[m[1]] = true
		}
	}
	for _, page := range filesWithExt(t, ".html") {
		html := readFile(t, page)
		for _, s := range scriptTag.FindAllStringSubmatch(html, -1) {
			src := srcAttr.FindStringSubmatch(s[1])
			if src == nil || !strings.HasPrefix(src[1], "/static/") {
				continue
			}
			mod := path.Join("static", strings.TrimPrefix(src[1], "/static/"))
			for _, m := range lookupCall.FindAllStringSubmatch(readFile(t, mod), -1) {
				if !strings.Contains(html, `id="`+m[1]+`"`) && !drawn[m[1]] {
					t.Errorf("%s: %s looks up #%s, which the page does not have", page, mod, m[1])
				}
			}
		}
	}
}

// The signaling messages of docs/protocol.md, by direction.
var (
	clientMessages = []string{"join", "offer", "answer", "candidate", "leave", "chat", "raise_hand", "mute", "kick",
		"admit", "deny", "lock", "end", "layer", "record", "e2ee_key"}
	serverMessages = []string{"welcome", "lobby", "admitted", "denied", "offer", "answer", "candidate",
		"participant_joined", "participant_left", "track_published", "track_unpublished", "chat", "muted", "kicked",
		"permissions", "room_state", "hand", "error", "ended", "e2ee_key"}
	caseLabel = regexp.MustCompile(`\bcase '([a-z0-9_]+)':`)
	sendCall  = regexp.MustCompile(`\bsend\('([a-z0-9_]+)'`)
)

// TestMeetingSpeaksTheProtocol: the meeting page handles every message the
// server sends, and sends only messages the server knows.
func TestMeetingSpeaksTheProtocol(t *testing.T) {
	handled := map[string]bool{}
	sent := map[string]bool{}
	for _, mod := range []string{"static/js/meeting.js", "static/js/call.js", "static/js/e2ee.js"} {
		src := readFile(t, mod)
		for _, m := range caseLabel.FindAllStringSubmatch(src, -1) {
			handled[m[1]] = true
		}
		for _, m := range sendCall.FindAllStringSubmatch(src, -1) {
			sent[m[1]] = true
		}
	}
	for _, typ := range serverMessages {
		if !handled[typ] {
			t.Errorf("meeting.js does not handle the server's %q message", typ)
		}
	}
	for typ := range sent {
		if !slices.Contains(clientMessages, typ) {
			t.Errorf("the meeting page sends %q, which is no client message of the protocol", typ)
		}
	}
	for _, typ := range []string{"join", "offer", "answer", "candidate", "leave", "chat", "raise_hand", "kick", "lock", "end", "record", "e2ee_key"} {
		if !sent[typ] {
			t.Errorf("the meeting page never sends %q", typ)
		}
	}
}

// TestMeetingPageMedia: the preview never plays the microphone back, and
// the page asks for camera and microphone only through its modules.
func TestMeetingPageMedia(t *testing.T) {
	html := readFile(t, "pages/room.html")
	preview := regexp.MustCompile(`<video\b[^>]*\bid="preview"[^>]*>`).FindString(html)
	if preview == "" || !strings.Contains(preview, " muted") || !strings.Contains(preview, " playsinline") {
		t.Errorf("#preview is not a muted, inline <video>: %q", preview)
	}
	view := readFile(t, "static/js/meeting-view.js")
	if !strings.Contains(view, "node.muted = true") {
		t.Error("meeting-view.js does not mute the <video> elements (their sound plays through <audio>)")
	}
	if !strings.Contains(view, "track.kind === 'audio' && local") {
		t.Error("meeting-view.js may play the local microphone back")
	}
}

// TestRecordingsPageHooks: the recording portal draws the elements the
// browser tests find by attribute and class, and plays the API's media URL.
func TestRecordingsPageHooks(t *testing.T) {
	src := readFile(t, "static/js/recordings.js")
	for _, want := range []string{"'data-recording-id'", "'recording-player'", "dataset.trackId", "'data-username'",
		"revoke-share", "download-link", "?download=1", "/tracks/${seg(trackId)}/media", "el('video'", "el('audio'"} {
		if !strings.Contains(src, want) {
			t.Errorf("recordings.js has no %s", want)
		}
	}
	for _, banned := range []string{"window.confirm", "window.alert", "window.prompt"} {
		if strings.Contains(src, banned) {
			t.Errorf("recordings.js uses %s (the browser tests cannot answer dialogs)", banned)
		}
	}
	if !strings.Contains(readFile(t, "pages/index.html"), `href="/recordings"`) {
		t.Error("the home page does not link the recording portal")
	}
}

// TestAdminConsoleHooks: the console draws the buttons and attributes the
// browser tests find, asks before it ends a meeting or deletes a room
// without a browser dialog, draws its chart with the DOM, and is linked
// from the home page for those who may use it.
func TestAdminConsoleHooks(t *testing.T) {
	all := ""
	for _, mod := range []string{"admin.js", "admin-common.js", "admin-people.js", "admin-rooms.js", "admin-live.js",
		"admin-audit.js", "admin-chart.js", "admin-security.js"} {
		src := readFile(t, "static/js/"+mod)
		for _, banned := range []string{"window.confirm", "window.alert", "window.prompt", "confirm(", "alert(", "prompt("} {
			if strings.Contains(src, banned) {
				t.Errorf("%s uses %s (the browser tests cannot answer dialogs)", mod, banned)
			}
		}
		all += src
	}
	for _, want := range []string{
		// People
		"'data-username'", "/api/v1/admin/users", "'disable'", "'enable'", "'reset-mfa'", "'unlock'", "'revoke-sessions'",
		"/roles`", "enrollment_url",
		// Rooms and Live
		"'data-room-id'", "'data-participant-id'", "'mute-audio'", "'mute-video'", "'kick'", "'end'", "'record'",
		"/api/v1/admin/live", "/participants/", "/mute`", "/kick`", "/end`", "/recording`", "confirmButton({",
		// Audit
		"'data-seq'", "'data-field'", "/api/v1/admin/audit?", "/api/v1/admin/audit/verify", "/api/v1/admin/audit/export",
		"next_before_seq", "before_seq", "dataset.ok", "toISOString()",
		// Security
		"/api/v1/admin/security?hours=", "createElementNS", "'aria-label'",
	} {
		if !strings.Contains(all, want) {
			t.Errorf("the console's modules have no %s", want)
		}
	}
	html := readFile(t, "pages/index.html")
	link := regexp.MustCompile(`<a\b[^>]*\bid="console-link"[^>]*>`).FindString(html)
	if !strings.Contains(link, `href="/admin"`) || !strings.Contains(link, " hidden") {
		t.Errorf("the home page's console link is not a hidden link to /admin: %q", link)
	}
	if !strings.Contains(readFile(t, "static/js/index.js"), "consoleLink.hidden = false") {
		t.Error("index.js never shows the console link")
	}
	page := readFile(t, "pages/admin.html")
	for _, want := range []string{`role="tablist"`, `role="tab"`, `role="tabpanel"`, `id="admin-error" class="alert sticky" role="alert"`} {
		if !strings.Contains(page, want) {
			t.Errorf("admin.html has no %s", want)
		}
	}
}
