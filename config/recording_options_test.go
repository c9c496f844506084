package config

import (
	"errors"
	"io"
	"path/filepath"
	"strings"
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

// In multi-node mode with recording on, every node must read and decrypt
// every recording: --recording-dir (shared storage) and
// --recording-identity-file (the same identity on every node) are
// required, each refusal naming the option and --recording=false.
func TestClusterRecordingNeedsSharedDirAndIdentity(t *testing.T) {
	env := func(k string) string {
		return map[string]string{
			"PARLEY_SECRET_KEY":  "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
			"PARLEY_TURN_SECRET": strings.Repeat("ab", 32),
		}[k]
	}
	cluster := []string{"--redis-url", "redis://127.0.0.1:6379/0", "--database-url", "postgres://parley@db/parley"}
	const recipient = "age1qyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqs3290gq"
	cases := []struct {
		name   string
		args   []string
		option string // "" when accepted
	}{
		{"defaults", nil, "--recording-dir"},
		{"identity only", []string{"--recording-identity-file", "/shared/id.txt"}, "--recording-dir"},
		{"dir only", []string{"--recording-dir", "/shared/rec"}, "--recording-identity-file"},
		{"dir and recipients", []string{"--recording-dir", "/shared/rec", "--recording-recipients", recipient}, "--recording-identity-file"},
		{"dir and identity", []string{"--recording-dir", "/shared/rec", "--recording-identity-file", "/shared/id.txt"}, ""},
		{"dir, identity and recipients", []string{"--recording-dir", "/shared/rec", "--recording-identity-file", "/shared/id.txt",
			"--recording-recipients", recipient}, ""},
		{"recording off", []string{"--recording=false"}, ""},
	}
	for _, c := range cases {
		cfg, err := Load("serve", append(append([]string{}, cluster...), c.args...), env, io.Discard)
		if c.option == "" {
			if err != nil {
				t.Errorf("%s: %v", c.name, err)
			} else if !cfg.Clustered() {
				t.Errorf("%s: not clustered", c.name)
			}
			continue
		}
		var ce *Error
		if !errors.As(err, &ce) {
			t.Errorf("%s: err = %v, want a config error", c.name, err)
			continue
		}
		if !strings.HasPrefix(ce.Msg, "invalid value for option "+c.option+" ") || !strings.Contains(ce.Msg, "--recording=false") {
			t.Errorf("%s: message %q does not name %s and --recording=false", c.name, ce.Msg, c.option)
		}
	}
	// A single node keeps its defaults (the data directory's identity and
	// recordings directory).
	if _, err := Load("serve", []string{"--database-url", "postgres://parley@db/parley"}, env, io.Discard); err != nil {
		t.Errorf("single node with the defaults: %v", err)
	}
}
