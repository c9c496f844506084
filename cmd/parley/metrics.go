package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"time"

	"github.com/parley-meet/parley/audit"
	"github.com/parley-meet/parley/config"
	"github.com/parley-meet/parley/metrics"
	"github.com/parley-meet/parley/recording"
	"github.com/parley-meet/parley/sfu"
	"github.com/parley-meet/parley/signaling"
	"github.com/parley-meet/parley/turn"
)

// metricsSources are the components the metrics endpoint reads; turn and
// recs are nil when the embedded TURN server or recording is off.
type metricsSources struct {
	media *sfu.SFU
	hub   *signaling.Hub
	turn  *turn.Server
	recs  *recording.Manager
	audit *audit.Log
}

// metricsShutdown bounds how long scrapes in flight may finish at stop.
const metricsShutdown = 2 * time.Second

// serveMetrics adds the components to reg and serves it on
// --metrics-listen. It returns the function that stops serving (it does
// nothing when the endpoint is off), or, on failure, reports why on stderr
// and returns the exit status.
func serveMetrics(cfg *config.Config, reg *metrics.Registry, src metricsSources, log *slog.Logger, e env) (func(), int) {
	if cfg.MetricsListen == "" {
		if cfg.DebugPprof {
			fmt.Fprintln(e.stderr, "parley: invalid value for option --debug-pprof (PARLEY_DEBUG_PPROF): the profiler is served on the metrics listener, and --metrics-listen is off")
			return nil, 2
		}
		log.Info("the metrics endpoint is off (--metrics-listen=off)")
		return func() {}, 0
	}
	host, portStr, _ := net.SplitHostPort(cfg.MetricsListen) // checked by config
	if port, _ := strconv.Atoi(portStr); port > 0 && sharesHTTPSPortOn(cfg, host, port) {
		fmt.Fprintf(e.stderr, "parley: invalid value for option --metrics-listen (PARLEY_METRICS_LISTEN): %d is the HTTPS port of --listen; choose another port, or off\n", port)
		return nil, 2
	}
	ln, err := net.Listen("tcp", cfg.MetricsListen)
	if err != nil {
		fmt.Fprintf(e.stderr, "parley: metrics endpoint: listen on %s: %v (choose another --metrics-listen, or off)\n", cfg.MetricsListen, err)
		return nil, 1
	}
	reg.AddMedia(metrics.SFU(src.media))
	reg.AddHub(src.hub)
	if src.turn != nil {
		reg.AddTURN(src.turn)
	}
	if src.recs != nil {
		reg.AddRecordings(src.recs)
	}
	src.audit.Observe(reg.ObserveAudit)

	serve := metrics.Serve
	if cfg.DebugPprof {
		if !loopbackAddr(ln.Addr()) {
			_ = ln.Close()
			fmt.Fprintf(e.stderr, "parley: invalid value for option --debug-pprof (PARLEY_DEBUG_PPROF): the profiler reveals memory contents; it needs a loopback --metrics-listen, not %s\n", cfg.MetricsListen)
			return nil, 2
		}
		serve = metrics.ServeWithProfiler
		log.Warn("Go's profiler is served at /debug/pprof/ on the metrics listener (--debug-pprof): for measuring only")
	}
	srv := serve(ln, reg.Handler(log), log.With("component", "metrics"))
	addr := srv.Addr().String()
	if !loopbackAddr(ln.Addr()) {
		log.Warn("the metrics endpoint is reachable from other machines and has no authentication: "+
			"allow only your Prometheus to reach it (firewall), or bind it to loopback", "addr", addr)
	}
	log.Info("metrics endpoint listening", "addr", addr, "path", "/metrics")
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), metricsShutdown)
		defer cancel()
		if err := srv.Close(ctx); err != nil {
			log.Warn("the metrics endpoint stopped", "err", err)
		}
	}, 0
}

// loopbackAddr reports whether a bound address is a loopback one.
func loopbackAddr(a net.Addr) bool {
	ap, err := netip.ParseAddrPort(a.String())
	return err == nil && ap.Addr().Unmap().IsLoopback()
}
