// Package config owns Parley's configuration: the option table, and loading
// it from command-line flags, PARLEY_* environment variables and an optional
// YAML file, in that order of precedence (a flag beats the environment, the
// environment beats the file, the file beats the built-in default).
//
// It validates every value and names the offending option in its errors; it
// never reads files other than the YAML file it is pointed at and never logs.
package config

import (
	"encoding/base64"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Config is the resolved configuration of `parley serve` and the commands
// that open the store.
type Config struct {
	// File is the YAML file the configuration was read from, if any.
	File string

	Listen      string
	PublicURL   *url.URL
	DataDir     string
	DatabaseURL string

	TLSCert string
	TLSKey  string

	ACMEDomains      []string
	ACMEEmail        string
	ACMEDirectoryURL string

	InsecureHTTP   bool
	TrustedProxies []netip.Prefix

	LogFormat string // "auto", "text" or "json"
	LogLevel  slog.Level

	PasswordMinLength int
	SessionIdle       time.Duration
	SessionMaxAge     time.Duration
	LoginBurst        int
	LoginPerMinute    int
	// SecretKey is PARLEY_SECRET_KEY (base64 of 32 bytes); empty means the
	// key file in the data directory. Environment only: never a flag (it
	// would show in the process list) nor a file key.
	SecretKey string

	// MetricsListen is the address of the Prometheus endpoint (plain HTTP,
	// /metrics only); empty means off.
	MetricsListen string
	// DebugPprof adds Go's profiler (/debug/pprof/) to the metrics listener.
	DebugPprof bool

	ReadTimeout     time.Duration
	WriteTimeout    time.Duration
	IdleTimeout     time.Duration
	ShutdownTimeout time.Duration
	MaxHeaderBytes  int
	MaxBodyBytes    int

	// Media plane (the SFU).
	MediaUDPPort int // the one UDP port of all media; 0 picks a free one
	MediaTCPPort int // ICE-TCP; 0 picks a free one, -1 disables it
	// MediaListenIP is --media-listen-ip as given; empty means the host of
	// --listen (MediaListenAddr resolves it).
	MediaListenIP      string
	MediaPublicIPs     []netip.Addr
	MediaInterfaces    []string
	MediaAllowedRemote []netip.Prefix

	// Signaling sockets.
	WSAllowedOrigins []string // normalised origins allowed besides the public URL's
	WSMaxPerUser     int
	WSMaxPerIP       int

	// TURN: the embedded TURN server (TURN true), or an external one
	// (TURN false and TURNURLs set).
	TURN        bool
	TURNUDPPort int // 0 picks a free port, -1 turns the listener off
	TURNTCPPort int
	TURNTLSPort int // off as well without HTTPS TLS (--insecure-http)
	// TURNListenIP and TURNRelayIP are the options as given; empty means
	// the default (TURNListenAddr and TURNRelayAddr resolve them).
	TURNListenIP string
	TURNRelayIP  string
	// TURNAnnouncedIP is --turn-announced-ip; the zero value means derived
	// (TURNAnnouncedAddr).
	TURNAnnouncedIP netip.Addr
	// TURNRelayPortMin and TURNRelayPortMax bound the relay ports; both 0
	// means ports the system picks.
	TURNRelayPortMin                 int
	TURNRelayPortMax                 int
	TURNAllowedPeers                 []netip.Prefix
	TURNMaxAllocationsPerParticipant int
	TURNMaxAllocations               int
	TURNCredentialTTL                time.Duration
	// TURNURLs are the turn:/turns: URLs announced to browsers as given;
	// empty means derived from the public URL's host and the embedded
	// server's listeners.
	TURNURLs []string
	// TURNSecret is PARLEY_TURN_SECRET (64 hex characters, used verbatim as
	// the HMAC key); empty means the file turn-secret in the data
	// directory. Environment only, like SecretKey.
	TURNSecret string

	// Recording.
	Recording bool // meetings may be recorded (by people with room.record)
	// RecordingDir is --recording-dir; empty means <data-dir>/recordings.
	RecordingDir string
	// RecordingRecipients are the age recipients every recording is
	// encrypted to; empty means the identity kept in the data directory.
	RecordingRecipients []string
	// RecordingIdentityFile is the age identity file that decrypts
	// recordings for the portal; empty means <data-dir>/recording-identity.txt
	// when no recipient is configured, and none (recordings cannot be
	// played on this node) when one is.
	RecordingIdentityFile string
	// RecordingRetention is how long a recording is kept (0: forever);
	// a room may set its own.
	RecordingRetention time.Duration

	// Multi-node mode (issue 11): RedisURL set means this process is one
	// node of a cluster coordinated through Redis, sharing DatabaseURL
	// (PostgreSQL) with the others.
	RedisURL string
	// NodeID names this node in the registry; empty means a random id
	// made at start.
	NodeID string
	// NodeCapacity is how many participants this node takes in the
	// meetings it hosts before placement passes it over.
	NodeCapacity int
}

// Clustered reports whether this process is a node of a cluster.
func (c *Config) Clustered() bool { return c.RedisURL != "" }

// RecordingPath is where recordings are written.
func (c *Config) RecordingPath() string {
	if c.RecordingDir != "" {
		return c.RecordingDir
	}
	return filepath.Join(c.DataDir, "recordings")
}

// MediaListenAddr is the address the media sockets bind: --media-listen-ip,
// or else the host of --listen (127.0.0.1 for localhost, 0.0.0.0 when
// --listen names no host).
func (c *Config) MediaListenAddr() string {
	if c.MediaListenIP != "" {
		return c.MediaListenIP
	}
	host, _, err := net.SplitHostPort(c.Listen)
	switch {
	case err != nil || host == "":
		return "0.0.0.0"
	case host == "localhost":
		return "127.0.0.1"
	}
	return host
}

// TURNListenAddr is the address the TURN listeners bind: --turn-listen-ip,
// or else the media listen address (MediaListenAddr).
func (c *Config) TURNListenAddr() netip.Addr {
	s := c.TURNListenIP
	if s == "" {
		s = c.MediaListenAddr()
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.IPv4Unspecified()
	}
	return a.Unmap()
}

// TURNRelayAddr is the address the TURN relay sockets bind: --turn-relay-ip,
// or else the TURN listen address (TURNListenAddr).
func (c *Config) TURNRelayAddr() netip.Addr {
	if c.TURNRelayIP != "" {
		if a, err := netip.ParseAddr(c.TURNRelayIP); err == nil {
			return a.Unmap()
		}
	}
	return c.TURNListenAddr()
}

// ErrTURNAnnounced is returned by TURNAnnouncedAddr when the relayed
// address cannot be derived.
var ErrTURNAnnounced = errors.New("the TURN relay binds an unspecified address, so the relayed address " +
	"announced to browsers cannot be derived: set --turn-announced-ip (PARLEY_TURN_ANNOUNCED_IP) to this " +
	"host's public IP address (or --media-public-ips), or --turn-relay-ip to a specific local address, " +
	"or turn the embedded TURN server off with --turn=false")

// TURNAnnouncedAddr is the relayed address the TURN server announces
// (XOR-RELAYED-ADDRESS), the first that applies of:
//
//   - --turn-announced-ip;
//   - the first --media-public-ips address of the relay address's family
//     (any family when the relay binds ::);
//   - the relay address (TURNRelayAddr), when it is a specific address;
//   - the public URL's host when it is an IP address, 127.0.0.1 when it is
//     localhost (a local demo listening on every interface);
//
// and otherwise ErrTURNAnnounced. The network is never consulted.
func (c *Config) TURNAnnouncedAddr() (netip.Addr, error) {
	if c.TURNAnnouncedIP.IsValid() {
		return c.TURNAnnouncedIP, nil
	}
	relay := c.TURNRelayAddr()
	fits := func(a netip.Addr) bool {
		return relay == netip.IPv6Unspecified() || a.Is4() == relay.Is4()
	}
	for _, a := range c.MediaPublicIPs {
		if fits(a) {
			return a, nil
		}
	}
	if !relay.IsUnspecified() {
		return relay, nil
	}
	if c.PublicURL != nil {
		host := c.PublicURL.Hostname()
		if strings.EqualFold(host, "localhost") {
			host = "127.0.0.1"
		}
		if a, err := netip.ParseAddr(host); err == nil && a.Zone() == "" && !a.Unmap().IsUnspecified() && fits(a.Unmap()) {
			return a.Unmap(), nil
		}
	}
	return netip.Addr{}, ErrTURNAnnounced
}

// TURNExternal reports whether browsers are sent to an external TURN
// server: the embedded one is off and --turn-urls names one.
func (c *Config) TURNExternal() bool { return !c.TURN && len(c.TURNURLs) > 0 }

// WSOrigins are the origins whose pages may open signaling sockets: the
// public URL's and --ws-allowed-origins, normalised (NormalizeOrigin).
func (c *Config) WSOrigins() []string {
	out := []string{}
	if o, ok := NormalizeOrigin(c.PublicOrigin()); ok {
		out = append(out, o)
	}
	for _, o := range c.WSAllowedOrigins {
		if !slices.Contains(out, o) {
			out = append(out, o)
		}
	}
	return out
}

// NormalizeOrigin returns the serialised form of a web origin as browsers
// send it in the Origin header: lower-case scheme and host, the port only
// when it is not the scheme's default. It reports false for anything that
// is not an http or https origin (a path, user info, "null", ...).
func NormalizeOrigin(s string) (string, bool) {
	u, err := url.Parse(s)
	if err != nil || u.Opaque != "" || u.User != nil || u.Path != "" || u.RawQuery != "" || u.Fragment != "" ||
		strings.HasSuffix(s, "?") || strings.HasSuffix(s, "#") {
		return "", false
	}
	scheme := strings.ToLower(u.Scheme)
	if scheme != "http" && scheme != "https" {
		return "", false
	}
	host, port := strings.ToLower(u.Hostname()), u.Port()
	if host == "" || strings.ContainsAny(host, " %") {
		return "", false
	}
	if port != "" {
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 || strconv.Itoa(n) != port {
			return "", false
		}
	}
	if scheme == "https" && port == "443" || scheme == "http" && port == "80" {
		port = ""
	}
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	if port != "" {
		host += ":" + port
	}
	return scheme + "://" + host, true
}

// PublicOrigin is the scheme://host[:port] of the public URL, the one origin
// browsers are expected to send.
func (c *Config) PublicOrigin() string {
	return c.PublicURL.Scheme + "://" + c.PublicURL.Host
}

// UsesPostgres reports whether the store is PostgreSQL rather than the
// embedded SQLite database.
func (c *Config) UsesPostgres() bool { return c.DatabaseURL != "" }

// Option describes one configuration option.
type Option struct {
	Name    string // flag name and YAML key, e.g. "public-url"
	Default string
	Usage   string
	// EnvOnly options are read from the environment alone.
	EnvOnly bool
	bool    bool
	set     func(c *Config, v string) error
}

// Env is the environment variable that sets the option.
func (o Option) Env() string {
	return "PARLEY_" + strings.ToUpper(strings.ReplaceAll(o.Name, "-", "_"))
}

// storeOptions are the options of commands that only open the store
// (`parley audit verify`, `parley user ...`).
var storeOptions = []string{"config", "data-dir", "database-url", "log-format", "log-level",
	"public-url", "secret-key", "password-min-length", "redis-url"}

// options is the table of every option. "config" is handled specially: it
// names the YAML file and cannot itself be set from YAML.
var options = []Option{
	{Name: "config", Usage: "optional YAML `file` with options (keys are the flag names)",
		set: func(c *Config, v string) error { c.File = v; return nil }},
	{Name: "listen", Default: "127.0.0.1:8443", Usage: "`address` to listen on (host:port)",
		set: func(c *Config, v string) error {
			host, port, err := net.SplitHostPort(v)
			if err != nil {
				return errors.New("want host:port")
			}
			if host != "" {
				if _, err := netip.ParseAddr(host); err != nil && host != "localhost" {
					return errors.New("host must be an IP address or localhost")
				}
			}
			if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
				return errors.New("port must be a number from 0 to 65535")
			}
			c.Listen = v
			return nil
		}},
	{Name: "public-url", Default: "https://localhost:8443", Usage: "the `URL` people use to reach Parley (scheme://host[:port])",
		set: func(c *Config, v string) error {
			u, err := url.Parse(v)
			if err != nil || u.Host == "" || u.Hostname() == "" {
				return errors.New("want an absolute URL such as https://meet.example.org")
			}
			if u.Scheme != "https" && u.Scheme != "http" {
				return errors.New("scheme must be https (or http for local development)")
			}
			if (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
				return errors.New("must not contain a path, query, fragment or user info")
			}
			u.Path = ""
			c.PublicURL = u
			return nil
		}},
	{Name: "data-dir", Default: "./parley-data", Usage: "`directory` for the SQLite database, keys and the self-signed certificate",
		set: func(c *Config, v string) error {
			if v == "" {
				return errors.New("must not be empty")
			}
			c.DataDir = v
			return nil
		}},
	{Name: "database-url", Usage: "PostgreSQL `URL` (postgres://...); empty means SQLite in the data directory",
		set: func(c *Config, v string) error {
			if v == "" {
				c.DatabaseURL = ""
				return nil
			}
			u, err := url.Parse(v)
			if err != nil {
				return errors.New("not a valid URL")
			}
			if u.Scheme != "postgres" && u.Scheme != "postgresql" {
				return errors.New("want a postgres:// or postgresql:// URL")
			}
			if u.Host == "" && u.Query().Get("host") == "" {
				return errors.New("the URL names no host")
			}
			c.DatabaseURL = v
			return nil
		}},
	{Name: "redis-url", Usage: "Redis `URL` (redis:// or rediss://) for multi-node mode; needs a PostgreSQL --database-url shared by every node",
		set: func(c *Config, v string) error {
			if v == "" {
				c.RedisURL = ""
				return nil
			}
			u, err := url.Parse(v)
			if err != nil {
				return errors.New("not a valid URL")
			}
			if u.Scheme != "redis" && u.Scheme != "rediss" && u.Scheme != "unix" {
				return errors.New("want a redis://, rediss:// or unix:// URL")
			}
			if u.Scheme != "unix" && u.Host == "" {
				return errors.New("the URL names no host")
			}
			c.RedisURL = v
			return nil
		}},
	{Name: "node-id", Usage: "this node's `id` in the cluster registry (letters, digits, '-', '_', '.'; at most 64); empty means a random one",
		set: func(c *Config, v string) error {
			if len(v) > 64 || strings.Trim(v, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.") != "" {
				return errors.New("want at most 64 letters, digits, '-', '_' or '.'")
			}
			c.NodeID = v
			return nil
		}},
	{Name: "node-capacity", Default: "1000", Usage: "`participants` this node hosts before room placement passes it over (1 to 1000000)",
		set: intSetter(1, 1000000, func(c *Config) *int { return &c.NodeCapacity })},
	{Name: "tls-cert", Usage: "PEM certificate chain `file` (reloaded when it changes); needs --tls-key",
		set: func(c *Config, v string) error { c.TLSCert = v; return nil }},
	{Name: "tls-key", Usage: "PEM private key `file` for --tls-cert",
		set: func(c *Config, v string) error { c.TLSKey = v; return nil }},
	{Name: "acme-domains", Usage: "comma-separated `hosts` to obtain certificates for with ACME (TLS-ALPN-01)",
		set: func(c *Config, v string) error {
			c.ACMEDomains = nil
			for _, d := range splitList(v) {
				if strings.ContainsAny(d, "/:@ ") || strings.HasPrefix(d, ".") || strings.HasSuffix(d, ".") {
					return fmt.Errorf("%q is not a host name", d)
				}
				c.ACMEDomains = append(c.ACMEDomains, strings.ToLower(d))
			}
			return nil
		}},
	{Name: "acme-email", Usage: "contact `address` for the ACME account",
		set: func(c *Config, v string) error {
			if v != "" && !strings.Contains(v, "@") {
				return errors.New("want an e-mail address")
			}
			c.ACMEEmail = v
			return nil
		}},
	{Name: "acme-directory-url", Default: "https://acme-v02.api.letsencrypt.org/directory", Usage: "ACME directory `URL`",
		set: func(c *Config, v string) error {
			u, err := url.Parse(v)
			if err != nil || u.Scheme != "https" && !(u.Scheme == "http" && isLoopbackHost(u.Hostname())) || u.Host == "" {
				return errors.New("want an https:// URL")
			}
			c.ACMEDirectoryURL = v
			return nil
		}},
	{Name: "insecure-http", Default: "false", bool: true, Usage: "serve plain HTTP, ONLY behind a TLS-terminating proxy",
		set: func(c *Config, v string) (err error) { c.InsecureHTTP, err = parseBool(v); return }},
	{Name: "trusted-proxies", Usage: "comma-separated `CIDRs` of proxies whose X-Forwarded-For is believed",
		set: prefixListSetter(func(c *Config) *[]netip.Prefix { return &c.TrustedProxies })},
	{Name: "password-min-length", Default: "12", Usage: "shortest password accepted, in `characters` (8 to 64)",
		set: intSetter(8, 64, func(c *Config) *int { return &c.PasswordMinLength })},
	{Name: "session-idle-timeout", Default: "30m", Usage: "`duration` after which an unused session ends",
		set: durationSetter(func(c *Config) *time.Duration { return &c.SessionIdle })},
	{Name: "session-max-age", Default: "12h", Usage: "`duration` after which every session ends, used or not",
		set: durationSetter(func(c *Config) *time.Duration { return &c.SessionMaxAge })},
	{Name: "login-burst", Default: "20", Usage: "sign-in attempts one client address may make at once (`count`, 1 to 10000)",
		set: intSetter(1, 10000, func(c *Config) *int { return &c.LoginBurst })},
	{Name: "login-per-minute", Default: "10", Usage: "sign-in attempts per minute one client address regains (`count`, 1 to 10000)",
		set: intSetter(1, 10000, func(c *Config) *int { return &c.LoginPerMinute })},
	{Name: "secret-key", EnvOnly: true, Usage: "base64 of 32 random bytes sealing TOTP secrets and signing keys; default: the file secret.key in the data directory",
		set: func(c *Config, v string) error {
			if v == "" {
				c.SecretKey = ""
				return nil
			}
			for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
				if b, err := enc.DecodeString(v); err == nil && len(b) == 32 {
					c.SecretKey = v
					return nil
				}
			}
			return errors.New("want base64 of exactly 32 bytes (openssl rand -base64 32)")
		}},
	{Name: "log-format", Default: "auto", Usage: "log `format`: auto (text on a terminal, JSON otherwise), text or json",
		set: func(c *Config, v string) error {
			switch v {
			case "auto", "text", "json":
				c.LogFormat = v
				return nil
			}
			return errors.New("want auto, text or json")
		}},
	{Name: "log-level", Default: "info", Usage: "log `level`: debug, info, warn or error",
		set: func(c *Config, v string) error { return c.LogLevel.UnmarshalText([]byte(v)) }},
	{Name: "metrics-listen", Default: "127.0.0.1:9464", Usage: "`address` (host:port) of the Prometheus metrics endpoint, plain HTTP and unauthenticated: keep it on loopback or behind a firewall; empty or off turns it off",
		set: func(c *Config, v string) error {
			if v == "" || v == "off" {
				c.MetricsListen = ""
				return nil
			}
			host, port, err := net.SplitHostPort(v)
			if err != nil {
				return errors.New("want host:port, or off")
			}
			if host != "" && host != "localhost" {
				if a, err := netip.ParseAddr(host); err != nil || a.Zone() != "" {
					return errors.New("host must be an IP address or localhost")
				}
			}
			if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
				return errors.New("port must be a number from 0 to 65535")
			}
			c.MetricsListen = v
			return nil
		}},
	{Name: "debug-pprof", Default: "false", bool: true, Usage: "also serve Go's profiler at /debug/pprof/ on the metrics listener (loopback only: it reveals memory contents; for measuring, not for production)",
		set: func(c *Config, v string) (err error) { c.DebugPprof, err = parseBool(v); return }},
	{Name: "read-timeout", Default: "15s", Usage: "`duration` allowed to read a whole request, headers and TLS handshake included",
		set: durationSetter(func(c *Config) *time.Duration { return &c.ReadTimeout })},
	{Name: "write-timeout", Default: "30s", Usage: "`duration` allowed to write a response",
		set: durationSetter(func(c *Config) *time.Duration { return &c.WriteTimeout })},
	{Name: "idle-timeout", Default: "60s", Usage: "`duration` an idle keep-alive connection stays open",
		set: durationSetter(func(c *Config) *time.Duration { return &c.IdleTimeout })},
	{Name: "shutdown-timeout", Default: "10s", Usage: "`duration` to finish requests in flight on SIGTERM/SIGINT",
		set: durationSetter(func(c *Config) *time.Duration { return &c.ShutdownTimeout })},
	{Name: "max-header-bytes", Default: "16384", Usage: "largest request header block in `bytes` (1024 to 1048576)",
		set: intSetter(1024, 1<<20, func(c *Config) *int { return &c.MaxHeaderBytes })},
	{Name: "max-body-bytes", Default: "1048576", Usage: "largest request body in `bytes` (1024 to 67108864)",
		set: intSetter(1024, 64<<20, func(c *Config) *int { return &c.MaxBodyBytes })},
	{Name: "media-udp-port", Default: "8443", Usage: "the one UDP `port` of all media (ICE); 0 picks a free port",
		set: intSetter(0, 65535, func(c *Config) *int { return &c.MediaUDPPort })},
	{Name: "media-tcp-port", Default: "8444", Usage: "TCP `port` for media (ICE-TCP) when UDP is blocked; 0 picks a free port, -1 disables ICE-TCP",
		set: intSetter(-1, 65535, func(c *Config) *int { return &c.MediaTCPPort })},
	{Name: "media-listen-ip", Usage: "IP `address` the media sockets bind; default: the host of --listen (0.0.0.0 if it has none)",
		set: ipSetter(func(c *Config) *string { return &c.MediaListenIP })},
	{Name: "media-public-ips", Usage: "comma-separated public IP `addresses` announced for media instead of the local ones (1:1 NAT)",
		set: func(c *Config, v string) error {
			c.MediaPublicIPs = nil
			for _, s := range splitList(v) {
				a, err := netip.ParseAddr(s)
				if err != nil || a.Zone() != "" || a.IsUnspecified() {
					return fmt.Errorf("%q is not an IP address", s)
				}
				c.MediaPublicIPs = append(c.MediaPublicIPs, a.Unmap())
			}
			return nil
		}},
	{Name: "media-interfaces", Usage: "comma-separated network interface `names` media candidates are gathered on; default: all",
		set: func(c *Config, v string) error {
			c.MediaInterfaces = nil
			for _, s := range splitList(v) {
				if !validInterfaceName(s) {
					return fmt.Errorf("%q is not an interface name", s)
				}
				c.MediaInterfaces = append(c.MediaInterfaces, s)
			}
			return nil
		}},
	{Name: "media-allowed-remote", Usage: "comma-separated `CIDRs` of private, loopback or link-local peer addresses media may be sent to (refused by default)",
		set: prefixListSetter(func(c *Config) *[]netip.Prefix { return &c.MediaAllowedRemote })},
	{Name: "ws-allowed-origins", Usage: "comma-separated `origins` (https://host[:port]) whose pages may open signaling sockets, besides the public URL's",
		set: func(c *Config, v string) error {
			c.WSAllowedOrigins = nil
			for _, s := range splitList(v) {
				o, ok := NormalizeOrigin(s)
				if !ok {
					return fmt.Errorf("%q is not an origin such as https://meet.example.org", s)
				}
				if !slices.Contains(c.WSAllowedOrigins, o) {
					c.WSAllowedOrigins = append(c.WSAllowedOrigins, o)
				}
			}
			return nil
		}},
	{Name: "ws-max-per-user", Default: "8", Usage: "signaling sockets one account or guest may have open at once (`count`, 1 to 1000)",
		set: intSetter(1, 1000, func(c *Config) *int { return &c.WSMaxPerUser })},
	{Name: "ws-max-per-ip", Default: "32", Usage: "signaling sockets one client address may have open at once (`count`, 1 to 100000)",
		set: intSetter(1, 100000, func(c *Config) *int { return &c.WSMaxPerIP })},
	{Name: "turn", Default: "true", bool: true, Usage: "run the embedded TURN server (default true; --turn=false turns it off)",
		set: func(c *Config, v string) (err error) { c.TURN, err = parseBool(v); return }},
	{Name: "turn-udp-port", Default: "3478", Usage: "UDP `port` of the TURN server; 0 picks a free port, -1 turns TURN over UDP off",
		set: intSetter(-1, 65535, func(c *Config) *int { return &c.TURNUDPPort })},
	{Name: "turn-tcp-port", Default: "3478", Usage: "TCP `port` of the TURN server; 0 picks a free port, -1 turns TURN over TCP off",
		set: intSetter(-1, 65535, func(c *Config) *int { return &c.TURNTCPPort })},
	{Name: "turn-tls-port", Default: "5349", Usage: "TLS `port` of the TURN server (the HTTPS certificate; off with --insecure-http); 0 picks a free port, -1 turns it off",
		set: intSetter(-1, 65535, func(c *Config) *int { return &c.TURNTLSPort })},
	{Name: "turn-listen-ip", Usage: "IP `address` the TURN listeners bind; default: the media listen address",
		set: ipSetter(func(c *Config) *string { return &c.TURNListenIP })},
	{Name: "turn-relay-ip", Usage: "IP `address` the TURN relay sockets bind; default: the TURN listen address",
		set: ipSetter(func(c *Config) *string { return &c.TURNRelayIP })},
	{Name: "turn-announced-ip", Usage: "public IP `address` of the relay told to browsers (1:1 NAT); default: the first --media-public-ips address, else the relay address",
		set: func(c *Config, v string) error {
			c.TURNAnnouncedIP = netip.Addr{}
			if v == "" {
				return nil
			}
			a, err := netip.ParseAddr(v)
			if err != nil || a.Zone() != "" || a.Unmap().IsUnspecified() || a.Unmap().IsMulticast() {
				return errors.New("want a specific unicast IP address such as 203.0.113.10")
			}
			c.TURNAnnouncedIP = a.Unmap()
			return nil
		}},
	{Name: "turn-relay-ports", Default: "49152-65535", Usage: "`range` min-max of the UDP ports relays use (0: any port the system picks)",
		set: func(c *Config, v string) error {
			if v == "0" {
				c.TURNRelayPortMin, c.TURNRelayPortMax = 0, 0
				return nil
			}
			first, last, ok := strings.Cut(v, "-")
			lo, err1 := strconv.Atoi(strings.TrimSpace(first))
			hi, err2 := strconv.Atoi(strings.TrimSpace(last))
			if !ok || err1 != nil || err2 != nil || lo < 1 || hi > 65535 || lo > hi {
				return errors.New("want a port range min-max such as 49152-65535 (1 to 65535, min not above max)")
			}
			c.TURNRelayPortMin, c.TURNRelayPortMax = lo, hi
			return nil
		}},
	{Name: "turn-allowed-peers", Usage: "comma-separated `CIDRs` of loopback, private or other special-purpose peer addresses the TURN relay may reach (refused by default)",
		set: prefixListSetter(func(c *Config) *[]netip.Prefix { return &c.TURNAllowedPeers })},
	{Name: "turn-max-allocations-per-participant", Default: "5", Usage: "TURN allocations one meeting participant may hold at once (`count`, 1 to 100)",
		set: intSetter(1, 100, func(c *Config) *int { return &c.TURNMaxAllocationsPerParticipant })},
	{Name: "turn-max-allocations", Default: "1000", Usage: "TURN allocations of the whole server (`count`, 1 to 1000000)",
		set: intSetter(1, 1000000, func(c *Config) *int { return &c.TURNMaxAllocations })},
	{Name: "turn-credential-ttl", Default: "10m", Usage: "`duration` a TURN credential is valid (1m to 24h); the meeting page gets fresh ones before they expire",
		set: durationRangeSetter(time.Minute, 24*time.Hour, func(c *Config) *time.Duration { return &c.TURNCredentialTTL })},
	{Name: "turn-urls", Usage: "comma-separated turn:/turns: `URLs` given to browsers; default: the embedded server's listeners on the public URL's host. With --turn=false they name an external TURN server (needs PARLEY_TURN_SECRET)",
		set: func(c *Config, v string) error {
			c.TURNURLs = nil
			for _, s := range splitList(v) {
				if err := checkTURNURL(s); err != nil {
					return fmt.Errorf("%q: %v", s, err)
				}
				if !slices.Contains(c.TURNURLs, s) {
					c.TURNURLs = append(c.TURNURLs, s)
				}
			}
			return nil
		}},
	{Name: "recording", Default: "true", bool: true, Usage: "let people with the right (room.record) record meetings (default true; --recording=false turns it off)",
		set: func(c *Config, v string) (err error) { c.Recording, err = parseBool(v); return }},
	{Name: "recording-dir", Usage: "`directory` of the encrypted recordings; default: recordings in the data directory",
		set: func(c *Config, v string) error { c.RecordingDir = v; return nil }},
	{Name: "recording-recipients", Usage: "comma-separated age `recipients` (age1…) every recording is encrypted to; default: the identity kept in the data directory (recording-identity.txt)",
		set: func(c *Config, v string) error {
			c.RecordingRecipients = nil
			for _, r := range splitList(v) {
				if !strings.HasPrefix(r, "age1") || len(r) < 20 || strings.ContainsAny(r, " \t\"'") {
					return fmt.Errorf("%q is not an age recipient (age1…)", r)
				}
				c.RecordingRecipients = append(c.RecordingRecipients, r)
			}
			return nil
		}},
	{Name: "recording-identity-file", Usage: "age identity `file` that decrypts recordings for the portal; default: recording-identity.txt in the data directory unless --recording-recipients is set (then recordings are not playable on this node)",
		set: func(c *Config, v string) error { c.RecordingIdentityFile = v; return nil }},
	{Name: "recording-retention", Default: "90d", Usage: "how long a recording is kept before it is deleted (`duration`: 12h, 30d…; 0 keeps them); a room may set its own",
		set: func(c *Config, v string) error {
			d, err := parseDays(v)
			if err != nil {
				return err
			}
			c.RecordingRetention = d
			return nil
		}},
	{Name: "turn-secret", EnvOnly: true, Usage: "TURN shared secret, 64 hex characters (openssl rand -hex 32), the static-auth-secret of an external TURN server; default: the file turn-secret in the data directory",
		set: func(c *Config, v string) error {
			c.TURNSecret = ""
			if v == "" {
				return nil
			}
			if len(v) != 64 {
				return errors.New("want 64 hex characters (openssl rand -hex 32)")
			}
			if _, err := hex.DecodeString(v); err != nil {
				return errors.New("want 64 hex characters (openssl rand -hex 32)")
			}
			c.TURNSecret = v
			return nil
		}},
}

// checkTURNURL accepts a TURN URI as browsers take it (RFC 7065):
// turn:host[:port][?transport=udp|tcp] or turns:host[:port][?transport=tcp],
// where host is a DNS name, an IPv4 address or a bracketed IPv6 address.
func checkTURNURL(s string) error {
	scheme, rest, _ := strings.Cut(s, ":")
	if scheme != "turn" && scheme != "turns" {
		return errors.New("want a turn: or turns: URL such as turn:meet.example.org:3478?transport=udp")
	}
	hostPort, query, hasQuery := strings.Cut(rest, "?")
	if hasQuery {
		switch query {
		case "transport=tcp":
		case "transport=udp":
			if scheme == "turns" {
				return errors.New("turns: runs over TCP (transport=tcp)")
			}
		default:
			return errors.New("the only query allowed is transport=udp or transport=tcp")
		}
	}
	host, port := hostPort, ""
	if strings.HasPrefix(hostPort, "[") {
		end := strings.Index(hostPort, "]")
		if end < 0 {
			return errors.New("unclosed [ in the host")
		}
		host, port = hostPort[1:end], hostPort[end+1:]
		if a, err := netip.ParseAddr(host); err != nil || !a.Is6() || a.Zone() != "" {
			return errors.New("[...] must hold an IPv6 address")
		}
		if port != "" && !strings.HasPrefix(port, ":") {
			return errors.New("want [ipv6]:port")
		}
		port = strings.TrimPrefix(port, ":")
	} else {
		if h, p, ok := strings.Cut(hostPort, ":"); ok {
			host, port = h, p
			if port == "" {
				return errors.New("empty port")
			}
		}
		if _, err := netip.ParseAddr(host); err != nil && !validHostName(host) {
			return errors.New("want a host name or IP address (IPv6 in brackets), without // or a path")
		}
	}
	if port != "" {
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 || strconv.Itoa(n) != port {
			return errors.New("port must be a number from 1 to 65535")
		}
	}
	return nil
}

// validHostName accepts a DNS name: dot-separated labels of letters, digits
// and hyphens, not starting or ending with a hyphen.
func validHostName(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for _, label := range strings.Split(s, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-') {
				return false
			}
		}
	}
	return true
}

// validInterfaceName accepts what Linux, BSD and Windows name interfaces
// with: 1 to 64 letters, digits and . _ - : @.
func validInterfaceName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("._-:@", r)) {
			return false
		}
	}
	return true
}

// Options returns the table of every option, for documentation and tests.
func Options() []Option { return append([]Option(nil), options...) }

// EnvNames returns every PARLEY_* environment variable that sets an option.
func EnvNames() []string {
	names := make([]string, len(options))
	for i, o := range options {
		names[i] = o.Env()
	}
	return names
}

// Error is a configuration error. Commands exit with status 2 on it.
type Error struct{ Msg string }

func (e *Error) Error() string { return e.Msg }

// ErrHelp is returned when -h or --help was asked for; the usage has been
// printed and the command should exit 0.
var ErrHelp = flag.ErrHelp

// Load resolves every option for command cmd (serve, healthcheck) from args, the environment (getenv) and the YAML file. Usage and parse
// errors are written to out. All errors are *Error, except ErrHelp.
func Load(cmd string, args []string, getenv func(string) string, out io.Writer) (*Config, error) {
	return load(cmd, args, getenv, out, true)
}

// LoadStore is Load for commands that only open the store (audit, user):
// they accept --config, --data-dir, --database-url, the log options, and
// what account commands need (--public-url for links, the secret key, the
// password policy).
func LoadStore(cmd string, args []string, getenv func(string) string, out io.Writer) (*Config, error) {
	return load(cmd, args, getenv, out, false)
}

// LoadStoreWith is LoadStore for a command with flags and arguments of its
// own: register adds the flags, and the positional arguments are returned.
func LoadStoreWith(cmd string, args []string, getenv func(string) string, out io.Writer,
	register func(*flag.FlagSet)) (*Config, []string, error) {
	var rest []string
	c, err := loadFlags(cmd, args, getenv, out, false, register, &rest)
	return c, rest, err
}

type rawValue struct {
	set   bool
	value string
	bool  bool
}

func (r *rawValue) String() string     { return r.value }
func (r *rawValue) Set(v string) error { r.set, r.value = true, v; return nil }
func (r *rawValue) IsBoolFlag() bool   { return r.bool }

func load(cmd string, args []string, getenv func(string) string, out io.Writer, all bool) (*Config, error) {
	return loadFlags(cmd, args, getenv, out, all, nil, nil)
}

func loadFlags(cmd string, args []string, getenv func(string) string, out io.Writer, all bool,
	register func(*flag.FlagSet), rest *[]string) (*Config, error) {
	var active []Option
	for _, o := range options {
		if all || slices.Contains(storeOptions, o.Name) {
			active = append(active, o)
		}
	}
	fs := flag.NewFlagSet("parley "+cmd, flag.ContinueOnError)
	fs.SetOutput(out)
	raw := make(map[string]*rawValue, len(active))
	for _, o := range active {
		r := &rawValue{bool: o.bool}
		raw[o.Name] = r
		if o.EnvOnly {
			continue
		}
		usage := o.Usage + fmt.Sprintf(" [env %s]", o.Env())
		if o.Default != "" && !o.bool {
			usage += fmt.Sprintf(" (default %s)", o.Default)
		}
		fs.Var(r, o.Name, usage)
	}
	if register != nil {
		register(fs)
	}
	fs.Usage = func() {
		fmt.Fprintf(out, "Usage: parley %s [options]\n\n", cmd)
		fmt.Fprintf(out, "Each option can also be given as a PARLEY_* environment variable or as a key of\n")
		fmt.Fprintf(out, "the YAML file named by --config. Precedence: flag, then environment, then file,\n")
		fmt.Fprintf(out, "then the default.\n\nOptions:\n")
		fs.PrintDefaults()
		header := "\nEnvironment only:\n"
		for _, o := range active {
			if o.EnvOnly {
				fmt.Fprintf(out, "%s  %s\n    \t%s\n", header, o.Env(), o.Usage)
				header = ""
			}
		}
	}
	// Positional arguments may come before, between or after the flags
	// ("parley user disable bob --data-dir d"); "--" ends the flags.
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, ErrHelp
			}
			return nil, &Error{Msg: err.Error()}
		}
		if rest == nil || fs.NArg() == 0 {
			break
		}
		parsed := len(args) - fs.NArg()
		if parsed > 0 && args[parsed-1] == "--" {
			*rest = append(*rest, fs.Args()...)
			break
		}
		*rest = append(*rest, fs.Arg(0))
		args = fs.Args()[1:]
	}
	if rest == nil && fs.NArg() > 0 {
		return nil, &Error{Msg: fmt.Sprintf("unexpected argument %q", fs.Arg(0))}
	}

	// The YAML file is found first, because it feeds the lower layer.
	cfgFile := raw["config"].value
	if !raw["config"].set {
		cfgFile = getenv("PARLEY_CONFIG")
	}
	fileValues := map[string]string{}
	if cfgFile != "" {
		var err error
		if fileValues, err = readYAML(cfgFile, active); err != nil {
			return nil, err
		}
	}

	c := &Config{}
	for _, o := range active {
		v, src := o.Default, "default"
		if fv, ok := fileValues[o.Name]; ok {
			v, src = fv, "file "+cfgFile
		}
		if ev, ok := lookupEnv(getenv, o.Env()); ok {
			v, src = ev, "environment"
		}
		if r := raw[o.Name]; r.set {
			v, src = r.value, "flag"
			if o.bool && v == "" {
				v = "true"
			}
		}
		if err := o.set(c, strings.TrimSpace(v)); err != nil {
			return nil, &Error{Msg: fmt.Sprintf("invalid value for option --%s (%s, from %s): %v", o.Name, o.Env(), src, err)}
		}
	}
	if all {
		if err := c.validate(); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// validate checks rules that involve more than one option.
func (c *Config) validate() error {
	if (c.TLSCert == "") != (c.TLSKey == "") {
		return &Error{Msg: "invalid value for option --tls-cert/--tls-key: give both or neither"}
	}
	if c.TLSCert != "" && len(c.ACMEDomains) > 0 {
		return &Error{Msg: "invalid value for option --acme-domains: cannot be combined with --tls-cert"}
	}
	if c.InsecureHTTP && (c.TLSCert != "" || len(c.ACMEDomains) > 0) {
		return &Error{Msg: "invalid value for option --insecure-http: cannot be combined with --tls-cert or --acme-domains"}
	}
	if c.RedisURL != "" && c.DatabaseURL == "" {
		return &Error{Msg: "invalid value for option --redis-url (PARLEY_REDIS_URL): multi-node mode needs the PostgreSQL database " +
			"every node shares (--database-url); SQLite belongs to one process"}
	}
	if c.RedisURL != "" && (c.SecretKey == "" || c.TURNSecret == "") {
		return &Error{Msg: "invalid value for option --redis-url (PARLEY_REDIS_URL): in multi-node mode every node must hold the same " +
			"PARLEY_SECRET_KEY (TOTP secrets and signing keys are sealed with it) and PARLEY_TURN_SECRET (TURN credentials are " +
			"valid on every node); give both in the environment"}
	}
	if c.RedisURL != "" && c.Recording {
		// Any node's portal serves any recording, and any node recovers
		// the recordings of a node that is gone: every node must reach
		// the files and decrypt them, so neither may default to the data
		// directory, which is each node's own.
		if c.RecordingDir == "" {
			return &Error{Msg: "invalid value for option --recording-dir (PARLEY_RECORDING_DIR): in multi-node mode every node " +
				"serves and recovers the others' recordings: give --recording-dir, a directory shared by every node (NFS or " +
				"the like; the default, inside each node's data directory, is not); --recording=false turns recording off"}
		}
		if c.RecordingIdentityFile == "" {
			return &Error{Msg: "invalid value for option --recording-identity-file (PARLEY_RECORDING_IDENTITY_FILE): in " +
				"multi-node mode every node decrypts the others' recordings: give every node the same age identity file " +
				"(recordings are encrypted to its recipient, or to --recording-recipients if given); the default, made in " +
				"each node's data directory, differs from node to node; --recording=false turns recording off"}
		}
	}
	return c.validateTURN()
}

// validateTURN checks the TURN options against each other and the rest.
func (c *Config) validateTURN() error {
	if !c.TURN {
		if len(c.TURNURLs) > 0 && c.TURNSecret == "" {
			return &Error{Msg: "invalid value for option --turn-urls: with --turn=false the URLs name an external TURN " +
				"server, whose shared secret (its static-auth-secret) must be given in PARLEY_TURN_SECRET"}
		}
		return nil
	}
	tlsOn := c.TURNTLSPort >= 0 && !c.InsecureHTTP
	if c.TURNUDPPort < 0 && c.TURNTCPPort < 0 && !tlsOn {
		return &Error{Msg: "invalid value for option --turn-udp-port/--turn-tcp-port/--turn-tls-port: every TURN listener " +
			"is off (TURN over TLS is off with --insecure-http); use --turn=false to run without the TURN server"}
	}
	if tlsOn && c.TURNTCPPort > 0 && c.TURNTLSPort == c.TURNTCPPort {
		return &Error{Msg: fmt.Sprintf("invalid value for option --turn-tls-port (PARLEY_TURN_TLS_PORT): %d is also "+
			"--turn-tcp-port; TURN over TCP and over TLS need a port each", c.TURNTLSPort)}
	}
	relay := c.TURNRelayAddr()
	if a := c.TURNAnnouncedIP; a.IsValid() && !relay.IsUnspecified() && a.Is4() != relay.Is4() {
		return &Error{Msg: fmt.Sprintf("invalid value for option --turn-announced-ip (PARLEY_TURN_ANNOUNCED_IP): %s "+
			"is not of the address family of the relay address %s (--turn-relay-ip)", a, relay)}
	}
	if _, err := c.TURNAnnouncedAddr(); err != nil {
		return &Error{Msg: "invalid value for option --turn-announced-ip: " + err.Error()}
	}
	return nil
}

func readYAML(path string, active []Option) (map[string]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, &Error{Msg: fmt.Sprintf("invalid value for option --config: cannot read %s: %v", path, unwrapPathErr(err))}
	}
	var doc map[string]any
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, &Error{Msg: fmt.Sprintf("invalid value for option --config: %s is not valid YAML: %v", path, err)}
	}
	known := map[string]bool{}
	for _, o := range active {
		known[o.Name] = true
	}
	out := make(map[string]string, len(doc))
	keys := make([]string, 0, len(doc))
	for k := range doc {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if !known[k] || k == "config" || isEnvOnly(k) {
			return nil, &Error{Msg: fmt.Sprintf("invalid value for option --config: %s: unknown option %q", path, k)}
		}
		switch v := doc[k].(type) {
		case nil:
			out[k] = ""
		case []any:
			parts := make([]string, len(v))
			for i, e := range v {
				parts[i] = fmt.Sprint(e)
			}
			out[k] = strings.Join(parts, ",")
		case map[string]any:
			return nil, &Error{Msg: fmt.Sprintf("invalid value for option --%s (from file %s): want a scalar or a list", k, path)}
		default:
			out[k] = fmt.Sprint(v)
		}
	}
	return out, nil
}

func isEnvOnly(name string) bool {
	for _, o := range options {
		if o.Name == name {
			return o.EnvOnly
		}
	}
	return false
}

func unwrapPathErr(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

func lookupEnv(getenv func(string) string, name string) (string, bool) {
	v := getenv(name)
	return v, v != ""
}

func durationSetter(field func(*Config) *time.Duration) func(*Config, string) error {
	return durationRangeSetter(100*time.Millisecond, 24*time.Hour, field)
}

func durationRangeSetter(lo, hi time.Duration, field func(*Config) *time.Duration) func(*Config, string) error {
	return func(c *Config, v string) error {
		d, err := time.ParseDuration(v)
		if err != nil {
			return errors.New("want a duration such as 15s or 2m")
		}
		if d < lo || d > hi {
			return fmt.Errorf("must be between %s and %s", shortDuration(lo), shortDuration(hi))
		}
		*field(c) = d
		return nil
	}
}

// parseDays reads a retention: "0" (keep), a Go duration, or whole days
// ("30d"), from 1 hour to 100 years.
func parseDays(v string) (time.Duration, error) {
	const hint = "want 0, a number of days such as 30d, or a duration such as 12h"
	if v == "0" {
		return 0, nil
	}
	var d time.Duration
	if n, ok := strings.CutSuffix(v, "d"); ok {
		days, err := strconv.Atoi(n)
		if err != nil || days <= 0 || days > 36500 {
			return 0, errors.New(hint)
		}
		d = time.Duration(days) * 24 * time.Hour
	} else {
		var err error
		if d, err = time.ParseDuration(v); err != nil {
			return 0, errors.New(hint)
		}
	}
	if d < time.Hour || d > 36500*24*time.Hour {
		return 0, errors.New("must be 0 or between 1h and 36500d")
	}
	return d, nil
}

// shortDuration prints 24h rather than 24h0m0s.
func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// ipSetter parses an optional IP address option (empty: the default);
// IPv4-mapped addresses are stored as IPv4, zones are refused.
func ipSetter(field func(*Config) *string) func(*Config, string) error {
	return func(c *Config, v string) error {
		if v == "" {
			*field(c) = ""
			return nil
		}
		a, err := netip.ParseAddr(v)
		if err != nil || a.Zone() != "" {
			return errors.New("want an IP address such as 0.0.0.0 or 192.0.2.10")
		}
		*field(c) = a.Unmap().String()
		return nil
	}
}

// prefixListSetter parses comma-separated CIDRs and addresses (an address
// is its /32 or /128). Host bits are masked off, IPv4-mapped addresses are
// taken as IPv4, and zones are refused.
func prefixListSetter(field func(*Config) *[]netip.Prefix) func(*Config, string) error {
	return func(c *Config, v string) error {
		var out []netip.Prefix
		for _, s := range splitList(v) {
			p, err := netip.ParsePrefix(s)
			if err != nil {
				a, aerr := netip.ParseAddr(s)
				if aerr != nil || a.Zone() != "" {
					return fmt.Errorf("%q is not an IP address or CIDR", s)
				}
				p = netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen())
			}
			out = append(out, p.Masked())
		}
		*field(c) = out
		return nil
	}
}

func intSetter(lo, hi int, field func(*Config) *int) func(*Config, string) error {
	return func(c *Config, v string) error {
		n, err := strconv.Atoi(v)
		if err != nil {
			return errors.New("want a whole number")
		}
		if n < lo || n > hi {
			return fmt.Errorf("must be between %d and %d", lo, hi)
		}
		*field(c) = n
		return nil
	}
}

func parseBool(v string) (bool, error) {
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, errors.New("want true or false")
	}
	return b, nil
}

func splitList(v string) []string {
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

func isLoopbackHost(h string) bool {
	if h == "localhost" {
		return true
	}
	a, err := netip.ParseAddr(h)
	return err == nil && a.IsLoopback()
}
