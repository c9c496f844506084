package server

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/acme"
	"golang.org/x/crypto/acme/autocert"
)

// TLSMode says where the serving certificate comes from.
type TLSMode string

// The TLS modes.
const (
	TLSSelfSigned TLSMode = "self-signed"
	TLSFiles      TLSMode = "files"
	TLSACME       TLSMode = "acme"
	TLSOff        TLSMode = "off" // --insecure-http behind a TLS proxy
)

// TLSOptions selects and configures the certificate source.
type TLSOptions struct {
	DataDir    string
	PublicHost string // host name of the public URL, always in the self-signed SANs
	CertFile   string
	KeyFile    string

	ACMEDomains      []string
	ACMEEmail        string
	ACMEDirectoryURL string

	// ReloadCheck is how often, at most, the certificate files are checked
	// for changes. Zero means 5 s.
	ReloadCheck time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Logger hears about certificate reloads; nil discards.
	Logger *slog.Logger
}

// TLSSetup is a ready TLS configuration and what to tell the operator.
type TLSSetup struct {
	Config *tls.Config
	Mode   TLSMode
	// Fingerprint is the SHA-256 of the leaf certificate (self-signed and
	// file modes), as colon-separated hex.
	Fingerprint string
	// Created is true when a new self-signed certificate was written.
	Created bool
	// CertFile is where the certificate lives (self-signed and file modes).
	CertFile string
}

// ErrCertificate marks problems with the configured certificate files.
var ErrCertificate = errors.New("certificate")

// BaseTLSConfig is the protocol policy of every TLS mode: TLS 1.2 or newer,
// and for TLS 1.2 only forward-secret AEAD suites (TLS 1.3 suites are all
// AEAD and not configurable).
func BaseTLSConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		CipherSuites: []uint16{
			tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
			tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
			tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
			tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
			tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
			tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
		},
		NextProtos: []string{"http/1.1"},
	}
}

// NewTLS builds the TLS configuration: ACME when domains are given,
// certificate files when given, otherwise a self-signed certificate kept in
// the data directory.
func NewTLS(o TLSOptions) (*TLSSetup, error) {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	switch {
	case len(o.ACMEDomains) > 0:
		return newACME(o)
	case o.CertFile != "":
		return newFileTLS(o)
	default:
		return newSelfSigned(o)
	}
}

func newACME(o TLSOptions) (*TLSSetup, error) {
	cacheDir := filepath.Join(o.DataDir, "acme")
	if err := os.MkdirAll(cacheDir, 0o700); err != nil {
		return nil, fmt.Errorf("create ACME cache: %w", err)
	}
	m := &autocert.Manager{
		Prompt:     autocert.AcceptTOS,
		Cache:      autocert.DirCache(cacheDir),
		HostPolicy: autocert.HostWhitelist(o.ACMEDomains...),
		Email:      o.ACMEEmail,
		Client:     &acme.Client{DirectoryURL: o.ACMEDirectoryURL},
	}
	cfg := BaseTLSConfig()
	cfg.GetCertificate = m.GetCertificate
	// TLS-ALPN-01 challenges arrive on this listener.
	cfg.NextProtos = append(cfg.NextProtos, acme.ALPNProto)
	return &TLSSetup{Config: cfg, Mode: TLSACME}, nil
}

// fileCert serves a certificate from files and reloads it when they change
// (for example after renewal by an external tool). A failed reload keeps the
// previous certificate.
type fileCert struct {
	certFile, keyFile string
	every             time.Duration
	now               func() time.Time
	logger            *slog.Logger

	mu        sync.Mutex
	cert      *tls.Certificate
	stamp     string
	lastCheck time.Time
}

func newFileTLS(o TLSOptions) (*TLSSetup, error) {
	fc := &fileCert{certFile: o.CertFile, keyFile: o.KeyFile, every: o.ReloadCheck, now: o.Now, logger: o.Logger}
	if fc.every == 0 {
		fc.every = 5 * time.Second
	}
	stamp, err := fileStamp(o.CertFile, o.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCertificate, err)
	}
	cert, err := loadKeyPair(o.CertFile, o.KeyFile)
	if err != nil {
		return nil, err
	}
	fc.cert, fc.stamp, fc.lastCheck = cert, stamp, o.Now()
	cfg := BaseTLSConfig()
	cfg.GetCertificate = fc.get
	return &TLSSetup{Config: cfg, Mode: TLSFiles, Fingerprint: Fingerprint(cert.Leaf.Raw), CertFile: o.CertFile}, nil
}

func loadKeyPair(certFile, keyFile string) (*tls.Certificate, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCertificate, unwrapPath(err))
	}
	if cert.Leaf == nil {
		if cert.Leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrCertificate, err)
		}
	}
	return &cert, nil
}

// fileStamp identifies the current contents of the files cheaply.
func fileStamp(files ...string) (string, error) {
	var b strings.Builder
	for _, f := range files {
		fi, err := os.Stat(f)
		if err != nil {
			return "", unwrapPath(err)
		}
		fmt.Fprintf(&b, "%s:%d:%d;", f, fi.Size(), fi.ModTime().UnixNano())
	}
	return b.String(), nil
}

func (fc *fileCert) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	now := fc.now()
	if now.Sub(fc.lastCheck) >= fc.every {
		fc.lastCheck = now
		if stamp, err := fileStamp(fc.certFile, fc.keyFile); err == nil && stamp != fc.stamp {
			if cert, err := loadKeyPair(fc.certFile, fc.keyFile); err == nil {
				fc.cert, fc.stamp = cert, stamp
				fc.logger.Info("TLS certificate reloaded", "file", fc.certFile,
					"sha256", Fingerprint(cert.Leaf.Raw), "not_after", cert.Leaf.NotAfter)
			} else {
				// Perhaps half-written during renewal: keep serving the old
				// one and try again at the next check.
				fc.logger.Warn("TLS certificate reload failed; keeping the previous certificate", "err", err)
			}
		}
	}
	return fc.cert, nil
}

// selfSignedHosts are always in the self-signed certificate.
var selfSignedHosts = []string{"localhost", "127.0.0.1", "::1"}

func newSelfSigned(o TLSOptions) (*TLSSetup, error) {
	dir := filepath.Join(o.DataDir, "tls")
	certFile, keyFile := filepath.Join(dir, "selfsigned.crt"), filepath.Join(dir, "selfsigned.key")
	hosts := slices.Clone(selfSignedHosts)
	if o.PublicHost != "" && !slices.Contains(hosts, o.PublicHost) {
		hosts = append(hosts, o.PublicHost)
	}
	created := false
	cert, err := loadKeyPair(certFile, keyFile)
	if err != nil || !selfSignedUsable(cert.Leaf, hosts, o.Now()) {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("create TLS directory: %w", err)
		}
		if err := writeSelfSigned(certFile, keyFile, hosts, o.Now()); err != nil {
			return nil, err
		}
		if cert, err = loadKeyPair(certFile, keyFile); err != nil {
			return nil, err
		}
		created = true
	}
	cfg := BaseTLSConfig()
	cfg.Certificates = []tls.Certificate{*cert}
	return &TLSSetup{Config: cfg, Mode: TLSSelfSigned, Fingerprint: Fingerprint(cert.Leaf.Raw), Created: created, CertFile: certFile}, nil
}

// selfSignedUsable is true while the stored certificate covers every host
// and has more than 30 days left.
func selfSignedUsable(leaf *x509.Certificate, hosts []string, now time.Time) bool {
	if now.Add(30 * 24 * time.Hour).After(leaf.NotAfter) {
		return false
	}
	for _, h := range hosts {
		if leaf.VerifyHostname(h) != nil {
			return false
		}
	}
	return true
}

func writeSelfSigned(certFile, keyFile string, hosts []string, now time.Time) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("generate key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return fmt.Errorf("generate serial: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: hosts[len(hosts)-1], Organization: []string{"Parley self-signed"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(397 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return fmt.Errorf("create certificate: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("encode key: %w", err)
	}
	if err := writeFileAtomic(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return err
	}
	return writeFileAtomic(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
}

// writeFileAtomic writes data to a temporary file in the same directory and
// renames it into place, so a crash never leaves half a key.
func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", filepath.Base(path), err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", filepath.Base(path), err)
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", filepath.Base(path), err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", filepath.Base(path), err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", filepath.Base(path), err)
	}
	return os.Rename(tmp.Name(), path)
}

// Fingerprint is the SHA-256 of a DER certificate as colon-separated hex,
// the form browsers show.
func Fingerprint(der []byte) string {
	sum := sha256.Sum256(der)
	h := strings.ToUpper(hex.EncodeToString(sum[:]))
	parts := make([]string, 0, len(sum))
	for i := 0; i < len(h); i += 2 {
		parts = append(parts, h[i:i+2])
	}
	return strings.Join(parts, ":")
}

func unwrapPath(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return fmt.Errorf("%s: %w", pe.Path, pe.Err)
	}
	return err
}
