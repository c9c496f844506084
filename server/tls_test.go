package server

import (
	"crypto/ecdsa"
	"crypto/tls"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/acme"
)

func TestSelfSignedCertificate(t *testing.T) {
	dir := t.TempDir()
	setup, err := NewTLS(TLSOptions{DataDir: dir, PublicHost: "meet.example.org"})
	if err != nil {
		t.Fatal(err)
	}
	if setup.Mode != TLSSelfSigned || !setup.Created || len(setup.Fingerprint) != 95 {
		t.Fatalf("setup = %+v", setup)
	}
	leaf := setup.Config.Certificates[0].Leaf
	if _, ok := leaf.PublicKey.(*ecdsa.PublicKey); !ok {
		t.Errorf("key is %T, want ECDSA", leaf.PublicKey)
	}
	for _, h := range []string{"meet.example.org", "localhost", "127.0.0.1", "::1"} {
		if err := leaf.VerifyHostname(h); err != nil {
			t.Errorf("certificate does not cover %s: %v", h, err)
		}
	}
	if leaf.VerifyHostname("evil.example") == nil {
		t.Error("certificate covers an unrelated host")
	}
	if Fingerprint(leaf.Raw) != setup.Fingerprint {
		t.Error("fingerprint is not of the served certificate")
	}
	fi, err := os.Stat(filepath.Join(dir, "tls", "selfsigned.key"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("key file: %v %v", fi.Mode(), err)
	}
	if c := setup.Config; c.MinVersion != tls.VersionTLS12 || len(c.CipherSuites) == 0 {
		t.Errorf("TLS policy: min %x, suites %v", c.MinVersion, c.CipherSuites)
	}

	// Kept across restarts...
	again, err := NewTLS(TLSOptions{DataDir: dir, PublicHost: "meet.example.org"})
	if err != nil || again.Created || again.Fingerprint != setup.Fingerprint {
		t.Errorf("restart made a new certificate: %+v %v", again, err)
	}
	// ...replaced when the public host changes...
	moved, err := NewTLS(TLSOptions{DataDir: dir, PublicHost: "other.example.org"})
	if err != nil || !moved.Created || moved.Fingerprint == setup.Fingerprint {
		t.Errorf("new public host kept the old certificate: %+v %v", moved, err)
	}
	// ...and when it nears expiry.
	late := func() time.Time { return time.Now().Add(380 * 24 * time.Hour) }
	renewed, err := NewTLS(TLSOptions{DataDir: dir, PublicHost: "other.example.org", Now: late})
	if err != nil || !renewed.Created {
		t.Errorf("certificate near expiry kept: %+v %v", renewed, err)
	}
}

func TestCertificateFilesReload(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem")
	if err := writeSelfSigned(certFile, keyFile, []string{"a.example"}, time.Now()); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	clock := func() time.Time { return now }
	setup, err := NewTLS(TLSOptions{DataDir: dir, CertFile: certFile, KeyFile: keyFile, ReloadCheck: time.Second, Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	served := func() string {
		c, err := setup.Config.GetCertificate(&tls.ClientHelloInfo{ServerName: "a.example"})
		if err != nil {
			t.Fatal(err)
		}
		return Fingerprint(c.Leaf.Raw)
	}
	first := served()
	if first != setup.Fingerprint || setup.Mode != TLSFiles {
		t.Fatalf("served %s, setup %+v", first, setup)
	}
	// A renewal replaces both files.
	if err := writeSelfSigned(certFile, keyFile, []string{"a.example", "b.example"}, time.Now()); err != nil {
		t.Fatal(err)
	}
	future := time.Now().Add(time.Minute)
	os.Chtimes(certFile, future, future)
	if served() != first {
		t.Error("reloaded before the check interval passed")
	}
	now = now.Add(2 * time.Second)
	second := served()
	if second == first {
		t.Fatal("renewed certificate not picked up")
	}
	// A broken file (half-written renewal) keeps the last good certificate.
	os.WriteFile(certFile, []byte("-----BEGIN CERTIFICATE-----\ngarbage\n"), 0o644)
	now = now.Add(2 * time.Second)
	if served() != second {
		t.Error("broken renewal replaced the working certificate")
	}
}

func TestCertificateFileErrors(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem")
	writeSelfSigned(certFile, keyFile, []string{"a.example"}, time.Now())
	garbage := filepath.Join(dir, "garbage.pem")
	os.WriteFile(garbage, []byte("not a certificate"), 0o600)
	for name, o := range map[string]TLSOptions{
		"missing cert": {CertFile: filepath.Join(dir, "nope.pem"), KeyFile: keyFile},
		"missing key":  {CertFile: certFile, KeyFile: filepath.Join(dir, "nope.pem")},
		"garbage cert": {CertFile: garbage, KeyFile: keyFile},
		"key for cert": {CertFile: keyFile, KeyFile: keyFile},
		"directory":    {CertFile: dir, KeyFile: keyFile},
	} {
		o.DataDir = dir
		if _, err := NewTLS(o); !errors.Is(err, ErrCertificate) {
			t.Errorf("%s: err = %v, want ErrCertificate", name, err)
		}
	}
}

func TestACMEWiring(t *testing.T) {
	var directoryHits atomic.Int32
	// A stand-in ACME server that refuses: the test only proves that the
	// configured directory is the one asked, and only for allowed hosts.
	acmeServer := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		directoryHits.Add(1)
		w.Header().Set("Content-Type", "application/problem+json")
		w.WriteHeader(http.StatusForbidden)
		w.Write([]byte(`{"type":"urn:ietf:params:acme:error:unauthorized","detail":"test"}`))
	}))
	defer acmeServer.Close()

	dir := t.TempDir()
	setup, err := NewTLS(TLSOptions{
		DataDir: dir, ACMEDomains: []string{"meet.example.org"}, ACMEEmail: "ops@example.org",
		ACMEDirectoryURL: acmeServer.URL + "/directory",
	})
	if err != nil {
		t.Fatal(err)
	}
	if setup.Mode != TLSACME || setup.Config.GetCertificate == nil {
		t.Fatalf("setup = %+v", setup)
	}
	if !slices.Contains(setup.Config.NextProtos, acme.ALPNProto) {
		t.Errorf("NextProtos %v lacks %s (TLS-ALPN-01)", setup.Config.NextProtos, acme.ALPNProto)
	}
	if fi, err := os.Stat(filepath.Join(dir, "acme")); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("ACME cache dir: %v", err)
	}
	hello := func(name string) *tls.ClientHelloInfo {
		return &tls.ClientHelloInfo{ServerName: name, CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256},
			SupportedVersions: []uint16{tls.VersionTLS13}, Conn: nil}
	}
	if _, err := setup.Config.GetCertificate(hello("evil.example")); err == nil {
		t.Error("certificate issued for a host outside --acme-domains")
	}
	if n := directoryHits.Load(); n != 0 {
		t.Errorf("a refused host reached the ACME server (%d requests)", n)
	}
	if _, err := setup.Config.GetCertificate(hello("meet.example.org")); err == nil {
		t.Error("got a certificate from a refusing ACME server")
	}
	if directoryHits.Load() == 0 {
		t.Error("the configured ACME directory was never asked")
	}
}
