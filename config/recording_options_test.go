package config

import (
	"io"
	"path/filepath"
	"testing"
	"time"
)

// Recording options: defaults, the retention forms (days, durations, 0),
// and their bounds.
func TestRecordingOptions(t *testing.T) {
	load := func(args ...string) (*Config, error) {
		return Load("serve", args, func(string) string { return "" }, io.Discard)
	}
	c, err := load("--data-dir", "/srv/parley")
	if err != nil {
		t.Fatal(err)
	}
	if !c.Recording || c.RecordingRetention != 90*24*time.Hour || c.RecordingPath() != filepath.Join("/srv/parley", "recordings") ||
		len(c.RecordingRecipients) != 0 || c.RecordingIdentityFile != "" {
		t.Errorf("defaults: %+v", c)
	}
	c, err = load("--recording=false", "--recording-dir", "/var/rec", "--recording-retention", "0",
		"--recording-recipients", "age1qyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqs3290gq, age1zvkyg2lqzraa2lnjvqej32nkuu0ues2s82hzrye869xeexvn73equnujwj")
	if err != nil {
		t.Fatal(err)
	}
	if c.Recording || c.RecordingPath() != "/var/rec" || c.RecordingRetention != 0 || len(c.RecordingRecipients) != 2 {
		t.Errorf("set: %+v", c)
	}
	for v, want := range map[string]time.Duration{"30d": 30 * 24 * time.Hour, "12h": 12 * time.Hour, "1h": time.Hour, "36500d": 36500 * 24 * time.Hour} {
		if c, err := load("--recording-retention", v); err != nil || c.RecordingRetention != want {
			t.Errorf("--recording-retention %s: %v, %v", v, c.RecordingRetention, err)
		}
	}
	for _, bad := range []string{"3weeks", "-1d", "0d", "59m", "36501d", "d", "1.5d"} {
		if _, err := load("--recording-retention", bad); err == nil {
			t.Errorf("--recording-retention %s accepted", bad)
		}
	}
	for _, bad := range []string{"ssh-ed25519 AAAA", "age1short", `age1"quoted"aaaaaaaaaaaa`} {
		if _, err := load("--recording-recipients", bad); err == nil {
			t.Errorf("--recording-recipients %q accepted", bad)
		}
	}
}
