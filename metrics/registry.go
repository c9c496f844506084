package metrics

import (
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/parley-meet/parley/audit"
)

const namespace = "parley"

// joinBuckets bound the join wait, in seconds: a direct join takes well
// under a second; a wait in the lobby until a moderator admits someone
// takes minutes.
var joinBuckets = []float64{0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300}

// Registry is Parley's metrics registry. Its methods are safe for
// concurrent use, and ObserveJoin and ObserveAudit also on a nil Registry
// (they do nothing).
type Registry struct {
	reg   *prometheus.Registry
	join  prometheus.Histogram
	audit *auditMetrics
}

// New returns a registry with the Go runtime and process collectors, the
// build information (version is the binary's own), the join-wait histogram
// and the audit counters. Components are added with AddMedia, AddHub,
// AddTURN and AddRecordings.
func New(version string) *Registry {
	r := &Registry{
		reg: prometheus.NewRegistry(),
		join: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: namespace, Name: "join_wait_seconds",
			Help:    "Time from a signaling socket's upgrade to its welcome into the meeting, time in the lobby included.",
			Buckets: joinBuckets,
		}),
		audit: newAuditMetrics(),
	}
	build := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: namespace, Name: "build_info", Help: "Always 1; the version label is the running binary's.",
	}, []string{"version"})
	build.WithLabelValues(version).Set(1)
	r.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		build, r.join,
	)
	r.audit.register(r.reg)
	return r
}

// ObserveJoin records how long a participant waited from its socket's
// upgrade to its welcome (signaling.Config.OnJoined).
func (r *Registry) ObserveJoin(wait time.Duration) {
	if r == nil {
		return
	}
	r.join.Observe(wait.Seconds())
}

// ObserveAudit counts one recorded audit entry (audit.Log.Observe).
func (r *Registry) ObserveAudit(e audit.Entry) {
	if r == nil {
		return
	}
	r.audit.observe(e)
}

// AddMedia adds the media plane's rooms, participants, tracks and
// forwarding counters. It panics if a media source was added already.
func (r *Registry) AddMedia(src MediaSource) { r.reg.MustRegister(newMediaCollector(src)) }

// AddHub adds the meetings, their participants and the signaling sockets.
func (r *Registry) AddHub(src HubSource) { r.reg.MustRegister(&hubCollector{src: src}) }

// AddTURN adds the embedded TURN server's allocations and refusals.
func (r *Registry) AddTURN(src TURNSource) { r.reg.MustRegister(&turnCollector{src: src}) }

// AddRecordings adds the number of recordings in progress.
func (r *Registry) AddRecordings(src RecordingSource) {
	r.reg.MustRegister(&recordingCollector{src: src})
}

// Gatherer is the registry, for tests and for Handler.
func (r *Registry) Gatherer() prometheus.Gatherer { return r.reg }

// Handler serves the registry in the Prometheus text (or protobuf, or
// OpenMetrics, as negotiated) exposition format. Concurrent scrapes share
// one collection; errors of a collector are logged on log and the rest is
// served.
func (r *Registry) Handler(log *slog.Logger) http.Handler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return promhttp.HandlerFor(r.reg, promhttp.HandlerOpts{
		ErrorLog:            errorLog{log},
		ErrorHandling:       promhttp.ContinueOnError,
		Registry:            r.reg, // promhttp_metric_handler_errors_total
		MaxRequestsInFlight: 4,
		Timeout:             10 * time.Second,
		CoalesceGather:      true,
	})
}

// errorLog takes promhttp's errors to slog.
type errorLog struct{ log *slog.Logger }

func (l errorLog) Println(v ...any) {
	l.log.Warn("metrics: collecting or serving failed", "err", fmt.Sprint(v...))
}

// desc describes one family named parley_<name>.
func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(prometheus.BuildFQName(namespace, "", name), help, labels, nil)
}
