package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/parley-meet/parley/audit"
	"github.com/parley-meet/parley/auth"
	"github.com/parley-meet/parley/cluster"
	"github.com/parley-meet/parley/config"
	"github.com/parley-meet/parley/metrics"
	"github.com/parley-meet/parley/rbac"
	"github.com/parley-meet/parley/server"
	"github.com/parley-meet/parley/sfu"
	"github.com/parley-meet/parley/signaling"
	"github.com/parley-meet/parley/store"
)

func cmdServe(ctx context.Context, args []string, e env) int {
	cfg, err := config.Load("serve", args, e.getenv, e.stderr)
	if err != nil {
		return configExit(err, e)
	}
	log := newLogger(cfg, e.stderr)

	var tlsSetup *server.TLSSetup
	if cfg.InsecureHTTP {
		log.Warn(strings.Repeat("!", 72))
		log.Warn("--insecure-http: serving PLAIN HTTP. Passwords, session cookies and TOTP codes " +
			"cross the network in the clear unless a TLS-terminating proxy sits in front of Parley " +
			"on the same host or a trusted network. Never expose this port directly.")
		if len(cfg.TrustedProxies) == 0 {
			log.Warn("--insecure-http without --trusted-proxies: X-Forwarded-For is ignored, so every " +
				"client will appear to come from the proxy's address (rate limits and the audit log see one client)")
		}
		log.Warn(strings.Repeat("!", 72))
	} else {
		tlsSetup, err = server.NewTLS(server.TLSOptions{
			DataDir:          cfg.DataDir,
			PublicHost:       cfg.PublicURL.Hostname(),
			CertFile:         cfg.TLSCert,
			KeyFile:          cfg.TLSKey,
			ACMEDomains:      cfg.ACMEDomains,
			ACMEEmail:        cfg.ACMEEmail,
			ACMEDirectoryURL: cfg.ACMEDirectoryURL,
			Logger:           log,
		})
		if errors.Is(err, server.ErrCertificate) {
			fmt.Fprintf(e.stderr, "parley: invalid value for option --tls-cert/--tls-key: %v\n", err)
			return 2
		}
		if err != nil {
			fmt.Fprintf(e.stderr, "parley: TLS setup: %v\n", err)
			return 1
		}
	}

	st, code := openStore(ctx, cfg, log, e, false)
	if st == nil {
		return code
	}
	defer st.Close()
	auditLog := audit.New(st, nil)
	authz, err := newAuthorizer(ctx, st, log)
	if err != nil {
		fmt.Fprintf(e.stderr, "parley: %v\n", err)
		return 1
	}
	authSvc, code := newAuthService(cfg, st, auditLog, authz, log, e)
	if authSvc == nil {
		return code
	}

	srv, err := server.New(server.Deps{Config: cfg, Logger: log, Store: st, Audit: auditLog, Auth: authSvc, RBAC: authz, TLS: tlsConfigOf(tlsSetup)})
	if err != nil {
		fmt.Fprintf(e.stderr, "parley: %v\n", err)
		return 1
	}

	// Meetings: the media plane (bound before the HTTPS listener, so that
	// a port conflict is reported before anyone connects) and the
	// signaling hub in front of it. stopMeetings closes the sockets first,
	// then the media plane; it runs after the server stops accepting (or
	// on any early return) and before the store closes.
	// ICE-TCP binds its own listener: it cannot be the HTTPS port.
	if cfg.MediaTCPPort > 0 && sharesHTTPSPort(cfg, cfg.MediaTCPPort) {
		fmt.Fprintf(e.stderr, "parley: invalid value for option --media-tcp-port (PARLEY_MEDIA_TCP_PORT): %d is the HTTPS port of --listen; choose another port or -1 to turn ICE-TCP off\n", cfg.MediaTCPPort)
		return 2
	}
	media, err := newMedia(cfg, log)
	if err != nil {
		fmt.Fprintf(e.stderr, "parley: media plane: %v (check --media-udp-port, --media-tcp-port and --media-listen-ip)\n", err)
		return 1
	}
	// TURN: the embedded server (bound here too, for the same reason), or
	// credentials for an external one; the hub hands them to participants.
	turnSrv, code := startTURN(cfg, tlsConfigOf(tlsSetup), auditLog, log, e)
	if turnSrv == nil {
		media.Close()
		return code
	}
	// Recording: the catalog and keys; unfinished recordings of a crash
	// are marked incomplete (in multi-node mode by runRecovery, below,
	// once the node has joined). A node without --node-id gets its random
	// id now, so that its recordings carry the id it registers with.
	if cfg.Clustered() && cfg.NodeID == "" {
		cfg.NodeID = randomNodeID()
	}
	recs, code := startRecording(ctx, cfg, st, auditLog, log, e)
	if code != 0 {
		turnSrv.Close()
		media.Close()
		return code
	}
	var recorder signaling.Recorder
	if recs != nil {
		recorder = recs
	}
	metricsReg := metrics.New(version()) // served below, once the hub exists
	hub, err := signaling.New(signaling.Config{
		Authorizer: authz, KeepAlive: authSvc.KeepAlive, Audit: auditLog, Media: signaling.SFUMedia(media),
		Recorder: recorder,
		OnJoined: metricsReg.ObserveJoin,
		Logger:   log, MaxPerUser: cfg.WSMaxPerUser, MaxPerIP: cfg.WSMaxPerIP, ICEServers: turnSrv.ice,
	})
	if err != nil {
		if recs != nil {
			recs.Close()
		}
		turnSrv.Close()
		media.Close()
		fmt.Fprintf(e.stderr, "parley: %v\n", err)
		return 1
	}
	// The hub first (no more credentials are handed out), then TURN (its
	// allocations end and its last events reach the audit log), then the
	// media plane.
	stopTap := startTestTap(cfg, media, log) // a test build's media tap (e2etap.go); nothing otherwise
	var (
		stopOnce sync.Once
		node     *cluster.Node // multi-node mode: closed after the hub, whose last relayed messages it carries
	)
	stopMeetings := func() {
		stopOnce.Do(func() {
			stopTap()
			hub.Close() // stops the recordings of the meetings in progress
			if node != nil {
				node.Close()
			}
			if recs != nil {
				if err := recs.Close(); err != nil {
					log.Warn("closing the recordings", "err", err)
				}
			}
			if err := turnSrv.Close(); err != nil {
				log.Warn("closing the TURN server", "err", err)
			}
			if err := media.Close(); err != nil {
				log.Warn("closing the media plane", "err", err)
			}
		})
	}
	defer stopMeetings()
	// Metrics: the components read at scrape time, on a listener of its own.
	stopMetrics, code := serveMetrics(cfg, metricsReg,
		metricsSources{media: media, hub: hub, turn: turnSrv.srv, recs: recs, audit: auditLog}, log, e)
	if code != 0 {
		return code
	}
	defer stopMetrics()
	srv.EnableSignaling(hub)
	if cfg.Clustered() {
		if node, code = joinCluster(ctx, cfg, media, hub, authz, auditLog, log, e); node == nil {
			return code
		}
		srv.EnableCluster(node)
		metricsReg.SetNode(node)
	}
	if recs != nil {
		srv.EnableRecording(recs)
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		fmt.Fprintf(e.stderr, "parley: listen on %s: %v\n", cfg.Listen, err)
		return 1
	}

	details := map[string]any{"version": version(), "store": string(st.Engine()), "listen": ln.Addr().String(), "turn": turnSrv.mode}
	if tlsSetup != nil {
		details["tls"] = string(tlsSetup.Mode)
		switch tlsSetup.Mode {
		case server.TLSSelfSigned:
			if tlsSetup.Created {
				log.Info("created a self-signed TLS certificate", "file", tlsSetup.CertFile)
			}
			log.Warn("serving a SELF-SIGNED certificate: browsers will warn until you configure --tls-cert/--tls-key or --acme-domains; compare the fingerprint before you trust it",
				"sha256", tlsSetup.Fingerprint)
			details["tls_sha256"] = tlsSetup.Fingerprint
		case server.TLSFiles:
			log.Info("serving certificate from files", "file", tlsSetup.CertFile, "sha256", tlsSetup.Fingerprint)
			details["tls_sha256"] = tlsSetup.Fingerprint
		case server.TLSACME:
			log.Info("certificates from ACME", "domains", strings.Join(cfg.ACMEDomains, ","), "directory", cfg.ACMEDirectoryURL)
		}
	} else {
		details["tls"] = string(server.TLSOff)
	}
	if _, err := auditLog.Record(ctx, audit.Event{Actor: "system", Action: "server.start", Outcome: audit.Success, Details: details}); err != nil {
		ln.Close()
		fmt.Fprintf(e.stderr, "parley: audit log: %v\n", err)
		return 1
	}

	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()

	// Housekeeping of expired sessions, challenges and links; stopped and
	// waited for before the store closes.
	janitorCtx, stopJanitor := context.WithCancel(context.Background())
	var janitor sync.WaitGroup
	janitor.Add(1)
	go authSvc.RunJanitor(janitorCtx, 10*time.Minute, &janitor)
	// Role bindings and roles changed by another process (`parley user
	// add`, `parley role define`) reach this one within policyRefresh.
	janitor.Add(1)
	go refreshPolicy(janitorCtx, authz, log, policyRefresh, &janitor)
	if recs != nil {
		janitor.Add(1)
		go runRetention(janitorCtx, recs, cfg.RecordingRetention, auditLog, log, retentionInterval, &janitor)
	}
	if recs != nil && node != nil {
		janitor.Add(1)
		go runRecovery(janitorCtx, recs, node, auditLog, log, recoveryInterval, &janitor)
	}
	defer func() { stopJanitor(); janitor.Wait() }()

	if link, err := authSvc.SetupLink(ctx); err != nil {
		log.Error("could not issue the first-run setup link", "err", err)
	} else if link != "" {
		// The link is a credential: it goes to standard output for the
		// operator, never into the log.
		fmt.Fprintf(e.stdout, "\n%s\n  Parley first-run setup: no administrator exists yet.\n"+
			"  Open this link within 1 hour to create the first one (it works once;\n"+
			"  restarting Parley makes a new link):\n\n    %s\n\n%s\n\n",
			strings.Repeat("=", 72), link, strings.Repeat("=", 72))
		log.Info("first-run setup link printed on standard output (valid 1 hour, single use)")
	}
	log.Info("Parley is listening", "addr", ln.Addr().String(), "public_url", cfg.PublicURL.String(), "store", st.Engine())

	exit := 0
	select {
	case err := <-served:
		log.Error("server stopped", "err", err)
		exit = 1
	case <-ctx.Done():
		log.Info("shutting down", "grace", cfg.ShutdownTimeout)
		sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
		if err := srv.Shutdown(sctx); err != nil {
			log.Warn("shutdown did not finish in time", "err", err)
		}
		cancel()
		<-served
	}
	stopMeetings()
	if _, err := auditLog.Record(context.Background(), audit.Event{Actor: "system", Action: "server.stop", Outcome: audit.Success}); err != nil {
		log.Warn("could not record server.stop in the audit log", "err", err)
	}
	log.Info("stopped")
	return exit
}

// newMedia binds the SFU's sockets as configured.
func newMedia(cfg *config.Config, log *slog.Logger) (*sfu.SFU, error) {
	tcpPort := cfg.MediaTCPPort
	public := make([]string, len(cfg.MediaPublicIPs))
	for i, a := range cfg.MediaPublicIPs {
		public[i] = a.String()
	}
	return sfu.New(sfu.Config{
		UDPPort: cfg.MediaUDPPort, TCPPort: tcpPort, ListenIP: cfg.MediaListenAddr(),
		PublicIPs: public, Interfaces: cfg.MediaInterfaces, AllowedRemote: cfg.MediaAllowedRemote, Logger: log,
	})
}

// sharesHTTPSPort reports whether a TCP port on the media address would be
// the one --listen binds.
func sharesHTTPSPort(cfg *config.Config, port int) bool {
	return sharesHTTPSPortOn(cfg, cfg.MediaListenAddr(), port)
}

// sharesHTTPSPortOn reports whether TCP port on address addr would be the
// one --listen binds.
func sharesHTTPSPortOn(cfg *config.Config, addr string, port int) bool {
	host, p, err := net.SplitHostPort(cfg.Listen)
	if err != nil || p != strconv.Itoa(port) {
		return false
	}
	listen, err1 := netip.ParseAddr(host)
	other, err2 := netip.ParseAddr(addr)
	if host == "" || host == "localhost" || err1 != nil || err2 != nil {
		return true
	}
	return listen.Unmap() == other.Unmap() || listen.IsUnspecified() || other.IsUnspecified()
}

func tlsConfigOf(t *server.TLSSetup) *tls.Config {
	if t == nil {
		return nil
	}
	return t.Config
}

// openStore opens the configured store, or reports why not and returns the
// exit status. A database that cannot be reached or parsed at start-up is a
// configuration error (2); mustExist refuses to create a new SQLite file.
func openStore(ctx context.Context, cfg *config.Config, log *slog.Logger, e env, mustExist bool) (*store.Store, int) {
	st, err := store.Open(ctx, store.Options{DataDir: cfg.DataDir, DatabaseURL: cfg.DatabaseURL, Logger: log, MustExist: mustExist})
	if err == nil {
		return st, 0
	}
	option := "--data-dir"
	if cfg.UsesPostgres() {
		option = "--database-url"
	}
	switch {
	case errors.Is(err, store.ErrBadURL), errors.Is(err, store.ErrUnreachable), errors.Is(err, store.ErrNoDatabase):
		fmt.Fprintf(e.stderr, "parley: invalid value for option %s: %v\n", option, err)
		return nil, 2
	default:
		fmt.Fprintf(e.stderr, "parley: store: %v\n", err)
		return nil, 1
	}
}

// newAuthService builds the account service from the configuration: the
// secret key (PARLEY_SECRET_KEY or the data directory's key file), the
// password policy and the bounded argon2id hasher.
func newAuthService(cfg *config.Config, st *store.Store, auditLog *audit.Log, authz *rbac.Authorizer, log *slog.Logger, e env) (*auth.Service, int) {
	keys, created, err := auth.LoadKeyring(cfg.DataDir, cfg.SecretKey)
	if err != nil {
		fmt.Fprintf(e.stderr, "parley: %v\n", err)
		return nil, 2
	}
	if created {
		log.Info("created the secret key file; back it up with the database (without it TOTP secrets cannot be opened)",
			"file", filepath.Join(cfg.DataDir, auth.SecretKeyFile))
	}
	policy, err := auth.NewPasswordPolicy(cfg.PasswordMinLength)
	if err != nil {
		fmt.Fprintf(e.stderr, "parley: invalid value for option --password-min-length: %v\n", err)
		return nil, 2
	}
	svc, err := auth.NewService(auth.Deps{
		Store: st, Audit: auditLog, RBAC: authz, Keys: keys, Policy: policy, Logger: log,
		Hasher: auth.NewHasher(max(2, runtime.NumCPU())),
		Config: auth.Config{
			Issuer: cfg.PublicOrigin(), SessionIdle: cfg.SessionIdle, SessionMax: cfg.SessionMaxAge,
			LoginBurst: cfg.LoginBurst, LoginPerMinute: float64(cfg.LoginPerMinute),
		},
	})
	if err != nil {
		fmt.Fprintf(e.stderr, "parley: %v\n", err)
		return nil, 1
	}
	return svc, 0
}

// openPolicy opens the store and loads the authorization policy for an
// operator command; on failure it reports why and returns the exit status.
//
// With --redis-url (multi-node mode), every change it makes is announced
// to the nodes, which apply it at once (otherwise at their next refresh,
// within 5 s). done closes the store and the announcer.
func openPolicy(ctx context.Context, cfg *config.Config, log *slog.Logger, e env) (st *store.Store, authz *rbac.Authorizer, done func(), code int) {
	st, code = openStore(ctx, cfg, log, e, false)
	if st == nil {
		return nil, nil, nil, code
	}
	authz, err := newAuthorizer(ctx, st, log)
	if err != nil {
		st.Close()
		fmt.Fprintf(e.stderr, "parley: %v\n", err)
		return nil, nil, nil, 1
	}
	done = func() { st.Close() }
	if cfg.RedisURL != "" {
		ann, err := cluster.NewAnnouncer(cfg.RedisURL)
		if err != nil {
			st.Close()
			fmt.Fprintf(e.stderr, "parley: invalid value for option --redis-url (PARLEY_REDIS_URL): %v\n", err)
			return nil, nil, nil, 2
		}
		authz.SetWatcher(ann)
		done = func() { ann.Close(); st.Close() }
	}
	return st, authz, done, 0
}

// newAuthorizer loads the policy and teaches rbac which accounts exist and
// are enabled (a disabled account may do nothing, whatever its roles).
func newAuthorizer(ctx context.Context, st *store.Store, log *slog.Logger) (*rbac.Authorizer, error) {
	authz, err := rbac.New(ctx, st, log)
	if err != nil {
		return nil, fmt.Errorf("authorization policy: %w", err)
	}
	authz.SetUserState(func(ctx context.Context, userID string) (bool, bool, error) {
		u, err := st.UserByID(ctx, userID)
		if errors.Is(err, store.ErrNotFound) {
			return false, false, nil
		}
		if err != nil {
			return false, false, err
		}
		return true, u.Disabled, nil
	})
	return authz, nil
}

// newLogger builds the process logger: text on a terminal, JSON otherwise,
// unless --log-format says which.
func newLogger(cfg *config.Config, w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: cfg.LogLevel}
	format := cfg.LogFormat
	if format == "auto" {
		format = "json"
		if f, ok := w.(*os.File); ok {
			if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
				format = "text"
			}
		}
	}
	if format == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}
