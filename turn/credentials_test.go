package turn

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha1" //nolint:gosec // the scheme under test
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	pionturn "github.com/pion/turn/v5"
)

var testSecret = []byte("0123456789abcdef0123456789abcdef")

func TestMintVerifyRoundTrip(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	c := Mint(testSecret, "p-42", time.Hour, now)
	if c.Username != "1700003600:p-42" {
		t.Fatalf("Username = %q", c.Username)
	}
	if !c.Expires.Equal(time.Unix(1_700_003_600, 0)) {
		t.Fatalf("Expires = %v", c.Expires)
	}
	// The password is the standard TURN REST value, computed independently.
	mac := hmac.New(sha1.New, testSecret)
	mac.Write([]byte(c.Username))
	if want := base64.StdEncoding.EncodeToString(mac.Sum(nil)); c.Password != want {
		t.Fatalf("Password = %q, want %q", c.Password, want)
	}

	p, err := Verify(testSecret, c.Username, c.Password, now.Add(59*time.Minute))
	if err != nil || p != "p-42" {
		t.Fatalf("Verify = %q, %v", p, err)
	}
	p, key, err := LongTermKey(testSecret, c.Username, "parley", now)
	if err != nil || p != "p-42" {
		t.Fatalf("LongTermKey = %q, %v", p, err)
	}
	if want := pionturn.GenerateAuthKey(c.Username, "parley", c.Password); !bytes.Equal(key, want) {
		t.Fatal("LongTermKey is not MD5(username:realm:password)")
	}
}

func TestVerifyRejects(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	c := Mint(testSecret, "alice", time.Hour, now)

	// Expired: at and after the expiry second.
	for _, at := range []time.Time{c.Expires, c.Expires.Add(time.Second), now.Add(48 * time.Hour)} {
		if _, err := Verify(testSecret, c.Username, c.Password, at); !errors.Is(err, ErrExpiredCredential) {
			t.Errorf("Verify at %v: %v, want expired", at, err)
		}
		if _, _, err := LongTermKey(testSecret, c.Username, "parley", at); !errors.Is(err, ErrExpiredCredential) {
			t.Errorf("LongTermKey at %v: %v, want expired", at, err)
		}
	}
	// A credential minted already expired.
	if _, err := Verify(testSecret, Mint(testSecret, "alice", -time.Second, now).Username, "", now); !errors.Is(err, ErrExpiredCredential) {
		t.Errorf("negative ttl: %v", err)
	}

	// Tampered: password, username (participant or expiry), other secret.
	tampered := []struct{ user, pass string }{
		{c.Username, c.Password[:len(c.Password)-2] + "AA"},
		{c.Username, ""},
		{c.Username, strings.ToLower(c.Password)},
		{strings.Replace(c.Username, "alice", "mallory", 1), c.Password},
		{strconv.FormatInt(c.Expires.Unix()+3600, 10) + ":alice", c.Password},
		{c.Username, Mint([]byte("another secret, 16+ bytes"), "alice", time.Hour, now).Password},
	}
	for _, tc := range tampered {
		if _, err := Verify(testSecret, tc.user, tc.pass, now); !errors.Is(err, ErrBadPassword) {
			t.Errorf("Verify(%q, %q) = %v, want bad password", tc.user, tc.pass, err)
		}
	}
	// The long-term key of a tampered username differs from the one the
	// client computes, so Pion's MESSAGE-INTEGRITY check fails.
	_, key, err := LongTermKey(testSecret, "1700003600:mallory", "parley", now)
	if err != nil || bytes.Equal(key, pionturn.GenerateAuthKey("1700003600:mallory", "parley", c.Password)) {
		t.Error("a tampered username must not yield the key of the original password")
	}

	malformed := []string{
		"",
		"alice",
		":alice",
		"1700003600:",
		"1700003600",
		"1700003600:alice:admin",
		"-1700003600:alice",
		"+1700003600:alice",
		"01700003600:alice",
		"17000036OO:alice",
		"1700003600.5:alice",
		"99999999999999999999:alice",
		" 1700003600:alice",
		"1700003600:ali\nce",
		"1700003600:ali\x00ce",
		"1700003600:\xff\xfe",
		"1700003600:" + strings.Repeat("a", MaxParticipantLen+1),
	}
	for _, u := range malformed {
		if _, err := Verify(testSecret, u, password(testSecret, u), now); !errors.Is(err, ErrMalformedUsername) {
			t.Errorf("Verify(%q) = %v, want malformed", u, err)
		}
		if _, _, err := LongTermKey(testSecret, u, "parley", now); !errors.Is(err, ErrMalformedUsername) {
			t.Errorf("LongTermKey(%q) = %v, want malformed", u, err)
		}
	}
	// The longest participant id is fine.
	long := strings.Repeat("a", MaxParticipantLen)
	lc := Mint(testSecret, long, time.Hour, now)
	if p, err := Verify(testSecret, lc.Username, lc.Password, now); err != nil || p != long {
		t.Errorf("128-byte participant: %q, %v", p, err)
	}
}

func TestMintRefusesBadInput(t *testing.T) {
	now := time.Now()
	for _, p := range []string{"", "a:b", "a\nb", strings.Repeat("x", MaxParticipantLen+1), "\xff"} {
		if c := Mint(testSecret, p, time.Hour, now); c != (Credential{}) {
			t.Errorf("Mint(%q) = %+v, want the zero Credential", p, c)
		}
	}
	if c := Mint(nil, "alice", time.Hour, now); c != (Credential{}) {
		t.Errorf("Mint without a secret = %+v", c)
	}
}

func TestLoadOrCreateSecret(t *testing.T) {
	dir := t.TempDir()
	s1, err := LoadOrCreateSecret(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(s1) != 64 {
		t.Fatalf("secret has %d bytes, want 64 hex characters", len(s1))
	}
	path := filepath.Join(dir, SecretFile)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if runtime.GOOS != "windows" && fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, want 0600", fi.Mode().Perm())
	}
	s2, err := LoadOrCreateSecret(dir)
	if err != nil || !bytes.Equal(s1, s2) {
		t.Fatalf("second load: %v, same=%v", err, bytes.Equal(s1, s2))
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Fatalf("data dir holds %d entries, want only the secret", len(entries))
	}
	if s3, _ := LoadOrCreateSecret(t.TempDir()); bytes.Equal(s1, s3) {
		t.Fatal("two data dirs got the same secret")
	}

	if runtime.GOOS != "windows" {
		if err := os.Chmod(path, 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := LoadOrCreateSecret(dir); err == nil {
			t.Error("a world-readable secret file was accepted")
		}
		if err := os.Chmod(path, 0o600); err != nil {
			t.Fatal(err)
		}
	}

	bad := t.TempDir()
	if err := os.WriteFile(filepath.Join(bad, SecretFile), []byte("short\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadOrCreateSecret(bad); err == nil {
		t.Error("a malformed secret file was accepted")
	}
	if b, _ := os.ReadFile(filepath.Join(bad, SecretFile)); string(b) != "short\n" {
		t.Error("a malformed secret file was overwritten")
	}

	link := t.TempDir()
	if err := os.Symlink(path, filepath.Join(link, SecretFile)); err == nil {
		if _, err := LoadOrCreateSecret(link); err == nil {
			t.Error("a symlinked secret file was accepted")
		}
	}

	if _, err := LoadOrCreateSecret(filepath.Join(dir, "missing", "dir")); err == nil {
		t.Error("a missing data dir gave a secret")
	}
}
