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
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"os"
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
	"public-url", "secret-key", "password-min-length"}

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
		set: func(c *Config, v string) error {
			c.TrustedProxies = nil
			for _, s := range splitList(v) {
				p, err := netip.ParsePrefix(s)
				if err != nil {
					a, aerr := netip.ParseAddr(s)
					if aerr != nil {
						return fmt.Errorf("%q is not an IP address or CIDR", s)
					}
					p = netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen())
				}
				c.TrustedProxies = append(c.TrustedProxies, p.Masked())
			}
			return nil
		}},
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
		set: func(c *Config, v string) error {
			if v == "" {
				c.MediaListenIP = ""
				return nil
			}
			a, err := netip.ParseAddr(v)
			if err != nil || a.Zone() != "" {
				return errors.New("want an IP address such as 0.0.0.0 or 192.0.2.10")
			}
			c.MediaListenIP = a.Unmap().String()
			return nil
		}},
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
		set: func(c *Config, v string) error {
			c.MediaAllowedRemote = nil
			for _, s := range splitList(v) {
				p, err := netip.ParsePrefix(s)
				if err != nil {
					a, aerr := netip.ParseAddr(s)
					if aerr != nil || a.Zone() != "" {
						return fmt.Errorf("%q is not an IP address or CIDR", s)
					}
					p = netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen())
				}
				c.MediaAllowedRemote = append(c.MediaAllowedRemote, p.Masked())
			}
			return nil
		}},
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
		for _, o := range active {
			if o.EnvOnly {
				fmt.Fprintf(out, "\nEnvironment only:\n  %s\n    \t%s\n", o.Env(), o.Usage)
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
	return func(c *Config, v string) error {
		d, err := time.ParseDuration(v)
		if err != nil {
			return errors.New("want a duration such as 15s or 2m")
		}
		if d < 100*time.Millisecond || d > 24*time.Hour {
			return errors.New("must be between 100ms and 24h")
		}
		*field(c) = d
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
