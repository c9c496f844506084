package pionlog

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

func TestLevelsAndScope(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: LevelTrace}))
	l := New(log, Plain).NewLogger("turn")
	l.Tracef("t %d", 1)
	l.Debug("d")
	l.Infof("i %s", "x")
	l.Warn("w")
	l.Errorf("e %v", 2)
	out := buf.String()
	for _, want := range []string{
		`level=DEBUG-4 msg="t 1" pion=turn`,
		`level=DEBUG msg=d pion=turn`,
		`level=INFO msg="i x" pion=turn`,
		`level=WARN msg=w pion=turn`,
		`level=ERROR msg="e 2" pion=turn`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}

	buf.Reset()
	quiet := New(log, Levels{Info: slog.LevelDebug, Warn: slog.LevelDebug, Error: slog.LevelWarn}).NewLogger("ice")
	quiet.Info("peer without permission")
	quiet.Warnf("retrying %d", 3)
	quiet.Error("broken")
	out = buf.String()
	for _, want := range []string{
		`level=DEBUG msg="peer without permission"`, `level=DEBUG msg="retrying 3"`, `level=WARN msg=broken`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
}

// Secrets are dropped; candidates and SDP go no higher than debug.
func TestRedaction(t *testing.T) {
	var buf bytes.Buffer
	l := New(slog.New(slog.NewTextHandler(&buf, nil)), Plain).NewLogger("ice")
	l.Error("remote ice-pwd is 0123456789abcdef")
	l.Errorf("fingerprint %s mismatch", "AB:CD")
	l.Error("failed to add candidate 1 1 udp 2130706431 192.0.2.1 5000 typ host")
	l.Warn("bad sdp: a=ice-ufrag:x")
	if buf.Len() != 0 {
		t.Errorf("logged at info level: %s", buf.String())
	}
	var dbg bytes.Buffer
	l = New(slog.New(slog.NewTextHandler(&dbg, &slog.HandlerOptions{Level: slog.LevelDebug})), Plain).NewLogger("ice")
	l.Error("failed to add candidate x")
	l.Error("ice-pwd y")
	if out := dbg.String(); !strings.Contains(out, `level=DEBUG msg="failed to add candidate x"`) || strings.Contains(out, "pwd") {
		t.Errorf("debug log: %s", out)
	}
}

// Disabled levels are not formatted; a nil logger discards.
func TestNoFormattingWhenDisabled(t *testing.T) {
	var buf bytes.Buffer
	infoOnly := New(slog.New(slog.NewTextHandler(&buf, nil)), Plain).NewLogger("x")
	infoOnly.Debugf("%v", panicOnFormat{})
	New(nil, Plain).NewLogger("x").Errorf("%v", panicOnFormat{})
	if buf.Len() != 0 {
		t.Errorf("disabled level logged: %s", buf.String())
	}
}

type panicOnFormat struct{}

func (panicOnFormat) String() string { panic("formatted a disabled log message") }
