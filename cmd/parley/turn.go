package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/parley-meet/parley/audit"
	"github.com/parley-meet/parley/config"
	"github.com/parley-meet/parley/signaling"
	"github.com/parley-meet/parley/turn"
)

// TURN modes, as recorded in server.start.
const (
	turnOff      = "off"
	turnEmbedded = "embedded"
	turnExternal = "external"
)

// turnPlane is the TURN side of serve: the embedded server (nil when TURN
// is off or external), the pump that takes its events to the audit log,
// and the hook that gives each participant ICE servers with credentials.
type turnPlane struct {
	mode    string
	srv     *turn.Server
	auditor *turnAuditor
	// ice is signaling.Config.ICEServers; nil means no ICE servers.
	ice func(participantID string) ([]signaling.ICEServer, time.Time)
}

// Close stops the embedded server, then the audit pump (which records the
// events still queued). It is safe on a plane without a server.
func (p *turnPlane) Close() error {
	var err error
	if p.srv != nil {
		err = p.srv.Close()
	}
	if p.auditor != nil {
		p.auditor.Close()
	}
	return err
}

// startTURN starts what the TURN options ask for. On failure it reports
// why on stderr and returns a nil plane and the exit status.
func startTURN(cfg *config.Config, tlsConf *tls.Config, rec auditRecorder, log *slog.Logger, e env) (*turnPlane, int) {
	if !cfg.TURN && !cfg.TURNExternal() {
		log.Info("TURN is off (--turn=false, no --turn-urls): browsers that cannot reach the media ports directly cannot join meetings")
		return &turnPlane{mode: turnOff}, 0
	}
	tlsPort := cfg.TURNTLSPort
	if tlsConf == nil {
		tlsPort = -1 // TURN over TLS uses the HTTPS certificate
	}
	if cfg.TURN {
		// The TURN listeners bind before the HTTPS one, which would then
		// fail with a less helpful message.
		listen := cfg.TURNListenAddr().String()
		for _, l := range []struct {
			option string
			port   int
		}{{"turn-tcp-port", cfg.TURNTCPPort}, {"turn-tls-port", tlsPort}} {
			if l.port > 0 && sharesHTTPSPortOn(cfg, listen, l.port) {
				fmt.Fprintf(e.stderr, "parley: invalid value for option --%s (PARLEY_%s): %d is the HTTPS port of --listen; choose another port or -1 to turn that listener off\n",
					l.option, strings.ToUpper(strings.ReplaceAll(l.option, "-", "_")), l.port)
				return nil, 2
			}
		}
	}
	secret, err := loadTURNSecret(cfg, log)
	if err != nil {
		fmt.Fprintf(e.stderr, "parley: TURN secret: %v (fix the file, or give the secret in PARLEY_TURN_SECRET)\n", err)
		return nil, 2
	}
	ttl := cfg.TURNCredentialTTL
	if !cfg.TURN {
		log.Info("TURN: browsers are sent to an external TURN server", "urls", strings.Join(cfg.TURNURLs, " "),
			"credential_ttl", ttl.String())
		return &turnPlane{mode: turnExternal, ice: iceServersFunc(secret, cfg.TURNURLs, ttl, time.Now)}, 0
	}

	announced, err := cfg.TURNAnnouncedAddr()
	if err != nil { // config.Load has refused this already
		fmt.Fprintf(e.stderr, "parley: invalid value for option --turn-announced-ip: %v\n", err)
		return nil, 2
	}
	policy := turn.NewPeerPolicy(cfg.TURNAllowedPeers)
	tc := turn.DefaultConfig()
	tc.ListenIP = cfg.TURNListenAddr()
	tc.UDPPort, tc.TCPPort, tc.TLSPort = cfg.TURNUDPPort, cfg.TURNTCPPort, tlsPort
	tc.TLSConfig = tlsConf
	tc.RelayIP = cfg.TURNRelayAddr()
	tc.AnnouncedRelayIP = announced
	tc.RelayPortMin, tc.RelayPortMax = cfg.TURNRelayPortMin, cfg.TURNRelayPortMax
	tc.Secret = secret
	tc.Policy = policy
	tc.MaxAllocationsPerParticipant = cfg.TURNMaxAllocationsPerParticipant
	tc.MaxAllocations = cfg.TURNMaxAllocations
	tc.Logger = log
	auditor := newTURNAuditor(rec, log, time.Now, turnAuditFlush)
	tc.OnEvent = auditor.OnEvent
	srv, err := turn.Start(tc)
	if err != nil {
		auditor.Close()
		if option := turnListenerOption(cfg, err); option != "" {
			fmt.Fprintf(e.stderr, "parley: TURN server: %v: choose another --%s (PARLEY_%s), -1 to turn that listener off, or another --turn-listen-ip\n",
				err, option, strings.ToUpper(strings.ReplaceAll(option, "-", "_")))
		} else {
			fmt.Fprintf(e.stderr, "parley: TURN server: %v\n", err)
		}
		return nil, 1
	}
	addrs := srv.Addrs()
	urls := cfg.TURNURLs
	if len(urls) == 0 {
		urls = defaultTURNURLs(cfg.PublicURL.Hostname(), tc.ListenIP, addrs)
	}
	relayPorts := "any"
	if cfg.TURNRelayPortMin != 0 {
		relayPorts = fmt.Sprintf("%d-%d", cfg.TURNRelayPortMin, cfg.TURNRelayPortMax)
	}
	log.Info("TURN server listening", "udp", addrOrOff(addrs.UDP), "tcp", addrOrOff(addrs.TCP), "tls", addrOrOff(addrs.TLS),
		"relay_ip", tc.RelayIP.String(), "announced_relay_ip", announced.String(), "relay_ports", relayPorts,
		"urls", strings.Join(urls, " "), "credential_ttl", ttl.String())
	warnTURNReachability(cfg, announced, policy, log)
	return &turnPlane{mode: turnEmbedded, srv: srv, auditor: auditor, ice: iceServersFunc(secret, urls, ttl, time.Now)}, 0
}

// warnTURNReachability logs what would make relayed media fail although
// the server starts: the SFU refusing to send to the relay's address, or
// the relay refusing the SFU's.
func warnTURNReachability(cfg *config.Config, announced netip.Addr, policy *turn.PeerPolicy, log *slog.Logger) {
	if nonPublic(announced) && !coveredBy(announced, cfg.MediaAllowedRemote) {
		log.Warn("the announced TURN relay address is not public, and the SFU sends no media to such addresses: "+
			"relayed media fails unless --media-allowed-remote covers it (or set --turn-announced-ip)",
			"announced_relay_ip", announced.String())
	}
	sfuAddrs := cfg.MediaPublicIPs
	if len(sfuAddrs) == 0 {
		if a, err := netip.ParseAddr(cfg.MediaListenAddr()); err == nil && !a.IsUnspecified() {
			sfuAddrs = []netip.Addr{a}
		}
	}
	for _, a := range sfuAddrs {
		if reason := policy.Reason(a); reason != "" {
			log.Warn("the TURN relay refuses the SFU's media address as a peer: relayed media cannot reach the SFU "+
				"unless --turn-allowed-peers covers it", "address", a.String(), "reason", reason)
		}
	}
}

var cgnat = netip.MustParsePrefix("100.64.0.0/10")

func nonPublic(a netip.Addr) bool {
	return a.IsLoopback() || a.IsPrivate() || a.IsLinkLocalUnicast() || cgnat.Contains(a)
}

func coveredBy(a netip.Addr, prefixes []netip.Prefix) bool {
	for _, p := range prefixes {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// turnListenerOption names the option of the listener a turn.Start error
// is about (a port in use, a port that needs privileges), or "".
func turnListenerOption(cfg *config.Config, err error) string {
	var op *net.OpError
	if !errors.As(err, &op) || op.Op != "listen" {
		return ""
	}
	if strings.HasPrefix(op.Net, "udp") {
		return "turn-udp-port"
	}
	if a, ok := op.Addr.(*net.TCPAddr); ok && cfg.TURNTLSPort > 0 && a.Port == cfg.TURNTLSPort {
		return "turn-tls-port"
	}
	return "turn-tcp-port"
}

func addrOrOff(a netip.AddrPort) string {
	if !a.IsValid() {
		return "off"
	}
	return a.String()
}

// loadTURNSecret returns PARLEY_TURN_SECRET, or else the secret kept in the
// data directory, created at first use.
func loadTURNSecret(cfg *config.Config, log *slog.Logger) ([]byte, error) {
	if cfg.TURNSecret != "" {
		return []byte(cfg.TURNSecret), nil
	}
	// With PostgreSQL and --insecure-http nothing else has created it yet.
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("create data directory: %w", err)
	}
	path := filepath.Join(cfg.DataDir, turn.SecretFile)
	_, statErr := os.Lstat(path)
	secret, err := turn.LoadOrCreateSecret(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	if errors.Is(statErr, fs.ErrNotExist) {
		log.Info("created the TURN secret file; nodes of one deployment (and an external TURN server) must share it",
			"file", path)
	}
	return secret, nil
}

// defaultTURNURLs are the URLs of the embedded server's listeners on the
// public URL's host. "localhost" becomes the loopback address the server
// listens on, as a browser may resolve it to the other family.
func defaultTURNURLs(publicHost string, listen netip.Addr, a turn.Addrs) []string {
	host := publicHost
	if strings.EqualFold(host, "localhost") {
		host = "127.0.0.1"
		if listen.Is6() && !listen.IsUnspecified() {
			host = "::1"
		}
	}
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	var urls []string
	for _, l := range []struct {
		addr   netip.AddrPort
		scheme string
		query  string
	}{{a.UDP, "turn", "udp"}, {a.TCP, "turn", "tcp"}, {a.TLS, "turns", "tcp"}} {
		if l.addr.IsValid() {
			urls = append(urls, l.scheme+":"+host+":"+strconv.Itoa(int(l.addr.Port()))+"?transport="+l.query)
		}
	}
	return urls
}

// iceServersFunc is the signaling hub's ICEServers hook: one ICE server
// entry with every URL and a TURN REST credential minted for the
// participant, valid for ttl, and its expiry. It never blocks.
func iceServersFunc(secret []byte, urls []string, ttl time.Duration, now func() time.Time) func(string) ([]signaling.ICEServer, time.Time) {
	secret = slices.Clone(secret)
	urls = slices.Clone(urls)
	return func(participantID string) ([]signaling.ICEServer, time.Time) {
		cred := turn.Mint(secret, participantID, ttl, now())
		if cred.Username == "" || len(urls) == 0 {
			return nil, time.Time{}
		}
		return []signaling.ICEServer{{URLs: slices.Clone(urls), Username: cred.Username, Credential: cred.Password}}, cred.Expires
	}
}

// auditRecorder is what the pump needs of *audit.Log.
type auditRecorder interface {
	Record(ctx context.Context, e audit.Event) (audit.Entry, error)
}

// Limits of the TURN audit pump.
const (
	turnAuditQueue = 1024             // events waiting for the pump; more are dropped and counted
	turnAuditBurst = 10               // events of one actor and action recorded at once ...
	turnAuditRate  = 1.0              // ... then this many per second; the rest are counted
	turnAuditFlush = 10 * time.Second // how often counts of dropped and suppressed events are recorded
	turnAuditDrain = 10 * time.Second // how long Close may spend on the events still queued
	turnAuditWrite = 5 * time.Second  // one audit write
)

// turnAuditor takes the TURN server's security events to the audit log.
// OnEvent never blocks: it queues the event, or drops and counts it when
// the queue is full. One goroutine records them. Per actor and action,
// after a burst of turnAuditBurst events, at most turnAuditRate events a
// second are recorded; the entry that follows (or a summary entry every
// turnAuditFlush) carries the count of the ones in between as
// "suppressed". Dropped events are recorded as turn.audit_dropped.
type turnAuditor struct {
	rec   auditRecorder
	log   *slog.Logger
	now   func() time.Time
	flush time.Duration

	mu     sync.RWMutex
	closed bool
	events chan turn.Event

	dropped   atomic.Uint64 // since the last turn.audit_dropped
	recorded  atomic.Uint64 // entries written, for tests
	ctx       context.Context
	cancel    context.CancelFunc
	done      chan struct{}
	closeOnce sync.Once

	// Owned by run.
	budgets map[string]*auditBudget
	failed  int // record failures since the last flush
}

// auditBudget is the token bucket of one actor and action.
type auditBudget struct {
	tokens     float64
	at         time.Time
	suppressed int
	last       audit.Event // the last suppressed event, for the summary
}

func newTURNAuditor(rec auditRecorder, log *slog.Logger, now func() time.Time, flush time.Duration) *turnAuditor {
	ctx, cancel := context.WithCancel(context.Background())
	a := &turnAuditor{rec: rec, log: log, now: now, flush: flush, events: make(chan turn.Event, turnAuditQueue),
		ctx: ctx, cancel: cancel, done: make(chan struct{}), budgets: map[string]*auditBudget{}}
	go a.run()
	return a
}

// OnEvent is turn.Config.OnEvent.
func (a *turnAuditor) OnEvent(e turn.Event) {
	a.mu.RLock()
	defer a.mu.RUnlock()
	if a.closed {
		return
	}
	select {
	case a.events <- e:
	default:
		a.dropped.Add(1)
	}
}

// Close records what is queued (for at most turnAuditDrain) and the
// counts, then stops the pump.
func (a *turnAuditor) Close() {
	a.closeOnce.Do(func() {
		a.mu.Lock()
		a.closed = true
		close(a.events)
		a.mu.Unlock()
		t := time.AfterFunc(turnAuditDrain, a.cancel)
		<-a.done
		t.Stop()
		a.cancel()
	})
}

func (a *turnAuditor) run() {
	defer close(a.done)
	tick := time.NewTicker(a.flush)
	defer tick.Stop()
	for {
		select {
		case e, ok := <-a.events:
			if !ok {
				a.flushCounts(true)
				return
			}
			a.handle(e)
		case <-tick.C:
			a.flushCounts(false)
		}
	}
}

// turnAuditEvent turns a TURN event into an audit event; false for events
// that are not audited (allocations ending: Pion ends them by itself, and
// the creation is recorded).
func turnAuditEvent(e turn.Event) (audit.Event, bool) {
	ev := audit.Event{Actor: "anonymous", Details: map[string]any{}}
	if e.Client.IsValid() {
		ev.ClientIP = e.Client.Addr().Unmap().String()
	}
	if e.Transport != "" {
		ev.Details["transport"] = e.Transport
	}
	if e.Reason != "" {
		ev.Details["reason"] = e.Reason
	}
	participant := func() {
		if e.Participant != "" {
			ev.Actor = "participant:" + e.Participant
		}
	}
	switch e.Kind {
	case turn.EventAuthFailed:
		// The participant id of a refused credential is whatever the
		// client wrote: a claim, not the actor.
		ev.Action, ev.Outcome = "turn.auth", audit.Failure
		if e.Participant != "" {
			ev.Details["claimed_participant"] = e.Participant
		}
		if e.Method != "" {
			ev.Details["method"] = e.Method
		}
	case turn.EventPermissionRefused:
		participant()
		ev.Action, ev.Outcome = "turn.permission", audit.Denied
		if e.Peer.IsValid() {
			ev.Details["peer"] = e.Peer.String()
		}
	case turn.EventQuotaRefused:
		participant()
		ev.Action, ev.Outcome = "turn.quota", audit.Denied
	case turn.EventAllocationCreated:
		participant()
		ev.Action, ev.Outcome = "turn.allocate", audit.Success
		if e.Relay.IsValid() {
			ev.Details["relay"] = e.Relay.String()
		}
	default:
		return audit.Event{}, false
	}
	return ev, true
}

func (a *turnAuditor) handle(e turn.Event) {
	ev, ok := turnAuditEvent(e)
	if !ok {
		return
	}
	key := ev.Actor + "\x00" + ev.Action
	now := a.now()
	b := a.budgets[key]
	if b == nil {
		b = &auditBudget{tokens: turnAuditBurst, at: now}
		a.budgets[key] = b
	}
	b.tokens = min(turnAuditBurst, b.tokens+max(0, now.Sub(b.at).Seconds())*turnAuditRate)
	b.at = now
	if b.tokens < 1 {
		b.suppressed++
		b.last = ev
		return
	}
	b.tokens--
	if b.suppressed > 0 {
		ev.Details["suppressed"] = b.suppressed
		b.suppressed, b.last = 0, audit.Event{}
	}
	a.record(ev)
}

// flushCounts records the dropped and suppressed counts and forgets the
// budgets that are full again.
func (a *turnAuditor) flushCounts(final bool) {
	now := a.now()
	for key, b := range a.budgets {
		if b.suppressed > 0 {
			ev := b.last
			ev.Details["suppressed"] = b.suppressed
			b.suppressed, b.last = 0, audit.Event{}
			a.record(ev)
		}
		if final || b.tokens+now.Sub(b.at).Seconds()*turnAuditRate >= turnAuditBurst {
			delete(a.budgets, key)
		}
	}
	if n := a.dropped.Swap(0); n > 0 {
		a.log.Warn("turn: the audit queue was full; TURN security events were dropped", "dropped", n)
		a.record(audit.Event{Actor: "system", Action: "turn.audit_dropped", Outcome: audit.Failure,
			Details: map[string]any{"dropped": n}})
	}
	if a.failed > 0 {
		a.log.Error("turn: audit records failed", "count", a.failed)
		a.failed = 0
	}
}

func (a *turnAuditor) record(ev audit.Event) {
	ctx, cancel := context.WithTimeout(a.ctx, turnAuditWrite)
	defer cancel()
	if _, err := a.rec.Record(ctx, ev); err != nil {
		if a.failed == 0 {
			a.log.Error("turn: audit record failed", "action", ev.Action, "err", err)
		}
		a.failed++
		return
	}
	a.recorded.Add(1)
}
