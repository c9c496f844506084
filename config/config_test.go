package config

import (
	"bytes"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func envOf(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestDefaults(t *testing.T) {
	c, err := Load("serve", nil, envOf(nil), &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if c.Listen != "127.0.0.1:8443" || c.PublicURL.String() != "https://localhost:8443" || c.DataDir != "./parley-data" {
		t.Errorf("defaults: listen %q, public %q, data %q", c.Listen, c.PublicURL, c.DataDir)
	}
	if c.UsesPostgres() || c.InsecureHTTP || c.ReadTimeout != 15*time.Second || c.MaxHeaderBytes != 16384 {
		t.Errorf("defaults: %+v", c)
	}
	if c.PublicOrigin() != "https://localhost:8443" {
		t.Errorf("origin = %q", c.PublicOrigin())
	}
}

func TestPrecedenceFlagEnvFileDefault(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "parley.yaml")
	os.WriteFile(file, []byte("listen: 127.0.0.1:1001\npublic-url: https://file.example\ndata-dir: /from/file\n"+
		"trusted-proxies:\n  - 10.0.0.0/8\n  - 192.0.2.1\ninsecure-http: true\n"), 0o600)
	env := envOf(map[string]string{
		"PARLEY_CONFIG":     file,
		"PARLEY_LISTEN":     "127.0.0.1:2002",
		"PARLEY_PUBLIC_URL": "https://env.example",
	})
	c, err := Load("serve", []string{"--listen", "127.0.0.1:3003"}, env, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if c.Listen != "127.0.0.1:3003" {
		t.Errorf("flag should win: %q", c.Listen)
	}
	if c.PublicURL.Host != "env.example" {
		t.Errorf("environment should beat the file: %q", c.PublicURL)
	}
	if c.DataDir != "/from/file" || !c.InsecureHTTP {
		t.Errorf("file should beat the default: %q %v", c.DataDir, c.InsecureHTTP)
	}
	want := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("192.0.2.1/32")}
	if len(c.TrustedProxies) != 2 || c.TrustedProxies[0] != want[0] || c.TrustedProxies[1] != want[1] {
		t.Errorf("trusted proxies from a YAML list = %v", c.TrustedProxies)
	}
	if c.ShutdownTimeout != 10*time.Second {
		t.Errorf("default should fill the rest: %v", c.ShutdownTimeout)
	}
	// A --config flag beats PARLEY_CONFIG.
	other := filepath.Join(dir, "other.yaml")
	os.WriteFile(other, []byte("data-dir: /other\n"), 0o600)
	c, err = Load("serve", []string{"--config=" + other}, env, &bytes.Buffer{})
	if err != nil || c.DataDir != "/other" {
		t.Errorf("--config flag: %v %v", c, err)
	}
}

func TestInvalidValuesNameTheOption(t *testing.T) {
	cases := []struct {
		args   []string
		env    map[string]string
		yaml   string
		option string
	}{
		{args: []string{"--nope"}, option: "-nope"},
		{args: []string{"--listen", "nonsense"}, option: "--listen"},
		{args: []string{"--listen", "example.com:80"}, option: "--listen"},
		{args: []string{"--listen", "127.0.0.1:99999"}, option: "--listen"},
		{args: []string{"--public-url", "ftp://x"}, option: "--public-url"},
		{args: []string{"--public-url", "https://x/path"}, option: "--public-url"},
		{args: []string{"--database-url", "mysql://x/y"}, option: "--database-url"},
		{args: []string{"--database-url", "postgres:///nohost"}, option: "--database-url"},
		{env: map[string]string{"PARLEY_READ_TIMEOUT": "soon"}, option: "PARLEY_READ_TIMEOUT"},
		{env: map[string]string{"PARLEY_IDLE_TIMEOUT": "1ns"}, option: "--idle-timeout"},
		{args: []string{"--max-header-bytes", "10"}, option: "--max-header-bytes"},
		{args: []string{"--trusted-proxies", "10.0.0.0/8,not-an-ip"}, option: "--trusted-proxies"},
		{args: []string{"--log-format", "xml"}, option: "--log-format"},
		{args: []string{"--log-level", "loud"}, option: "--log-level"},
		{args: []string{"--insecure-http=maybe"}, option: "-insecure-http"},
		{env: map[string]string{"PARLEY_INSECURE_HTTP": "maybe"}, option: "--insecure-http"},
		{args: []string{"--tls-cert", "a.pem"}, option: "--tls-cert"},
		{args: []string{"--tls-cert", "a", "--tls-key", "b", "--acme-domains", "x.org"}, option: "--acme-domains"},
		{args: []string{"--insecure-http", "--acme-domains", "x.org"}, option: "--insecure-http"},
		{args: []string{"--acme-domains", "x.org/evil"}, option: "--acme-domains"},
		{args: []string{"--acme-directory-url", "http://acme.example/dir"}, option: "--acme-directory-url"},
		{args: []string{"extra"}, option: "extra"},
		{yaml: "listen: [\n", option: "--config"},
		{yaml: "unknown-key: 1\n", option: "unknown-key"},
		{yaml: "config: other.yaml\n", option: "config"},
		{yaml: "listen: {a: b}\n", option: "--listen"},
		{yaml: "read-timeout: 5\n", option: "--read-timeout"},
		{args: []string{"--config", "/does/not/exist.yaml"}, option: "--config"},
	}
	for _, c := range cases {
		args := c.args
		if c.yaml != "" {
			f := filepath.Join(t.TempDir(), "c.yaml")
			os.WriteFile(f, []byte(c.yaml), 0o600)
			args = append(args, "--config", f)
		}
		_, err := Load("serve", args, envOf(c.env), &bytes.Buffer{})
		var ce *Error
		if !errors.As(err, &ce) {
			t.Errorf("%v %v %q: err = %v, want a config error", c.args, c.env, c.yaml, err)
			continue
		}
		if !strings.Contains(ce.Msg, c.option) {
			t.Errorf("%v %v %q: message %q does not name %s", c.args, c.env, c.yaml, ce.Msg, c.option)
		}
	}
}

func TestHelpListsEveryOption(t *testing.T) {
	var out bytes.Buffer
	_, err := Load("serve", []string{"--help"}, envOf(nil), &out)
	if !errors.Is(err, ErrHelp) {
		t.Fatalf("err = %v, want ErrHelp", err)
	}
	for _, o := range Options() {
		if !o.EnvOnly && !strings.Contains(out.String(), "-"+o.Name) || !strings.Contains(out.String(), o.Env()) {
			t.Errorf("help does not list --%s / %s", o.Name, o.Env())
		}
	}
}

func TestSecretKeyIsEnvironmentOnly(t *testing.T) {
	key := "q1w2e3r4t5y6u7i8o9p0a1s2d3f4g5h6j7k8l9z0x1c=" // 32 bytes
	c, err := Load("serve", nil, envOf(map[string]string{"PARLEY_SECRET_KEY": key}), &bytes.Buffer{})
	if err != nil || c.SecretKey != key {
		t.Fatalf("PARLEY_SECRET_KEY: %v %v", c, err)
	}
	if _, err := Load("serve", []string{"--secret-key", key}, envOf(nil), &bytes.Buffer{}); err == nil {
		t.Error("--secret-key accepted as a flag: it would show in the process list")
	}
	f := filepath.Join(t.TempDir(), "c.yaml")
	os.WriteFile(f, []byte("secret-key: "+key+"\n"), 0o600)
	if _, err := Load("serve", []string{"--config", f}, envOf(nil), &bytes.Buffer{}); err == nil {
		t.Error("secret-key accepted from the YAML file")
	}
	for _, bad := range []string{"short", "bm90IDMyIGJ5dGVz"} {
		if _, err := Load("serve", nil, envOf(map[string]string{"PARLEY_SECRET_KEY": bad}), &bytes.Buffer{}); err == nil || strings.Contains(err.Error(), bad) {
			t.Errorf("PARLEY_SECRET_KEY=%q: err = %v (must fail without echoing the value)", bad, err)
		}
	}
}

func TestStoreCommandsTakeOnlyStoreOptions(t *testing.T) {
	c, err := LoadStore("audit verify", []string{"--data-dir", "/d"}, envOf(map[string]string{"PARLEY_LISTEN": "garbage"}), &bytes.Buffer{})
	if err != nil || c.DataDir != "/d" {
		t.Fatalf("LoadStore: %v %v", c, err)
	}
	if _, err := LoadStore("audit verify", []string{"--listen", "127.0.0.1:1"}, envOf(nil), &bytes.Buffer{}); err == nil {
		t.Error("audit verify accepted --listen")
	}
}

func TestEnvNamesMatchOptions(t *testing.T) {
	names := EnvNames()
	if len(names) != len(Options()) {
		t.Fatalf("%d names for %d options", len(names), len(Options()))
	}
	for _, n := range names {
		if !strings.HasPrefix(n, "PARLEY_") || strings.ContainsAny(n, "-a") {
			t.Errorf("bad env name %q", n)
		}
	}
}
