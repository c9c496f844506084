package metrics

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"sync"
	"time"
)

// Timeouts of the metrics listener: a scrape is one small GET.
const (
	readTimeout  = 10 * time.Second
	writeTimeout = 30 * time.Second
	idleTimeout  = 60 * time.Second
)

// Server serves one handler at GET /metrics on its own listener, in plain
// HTTP (and, with ServeWithProfiler, Go's profiler at /debug/pprof/), and
// answers 404 to every other path. It owns the goroutine that
// serves; Close stops it.
type Server struct {
	http *http.Server
	ln   net.Listener
	done chan struct{}
	err  error // why serving stopped, unless by Close

	closeOnce sync.Once
}

// Serve starts serving h on ln. Errors of the HTTP server itself (a
// connection that could not be read...) go to log at debug level.
func Serve(ln net.Listener, h http.Handler, log *slog.Logger) *Server {
	return serve(ln, h, log, false)
}

// ServeWithProfiler is Serve with Go's profiler (net/http/pprof) at
// /debug/pprof/ as well: for measuring (bench/README.md), on loopback only.
func ServeWithProfiler(ln net.Listener, h http.Handler, log *slog.Logger) *Server {
	return serve(ln, h, log, true)
}

func serve(ln net.Listener, h http.Handler, log *slog.Logger, profiler bool) *Server {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("Cache-Control", "no-store")
		h.ServeHTTP(w, r)
	}))
	if profiler {
		mux.HandleFunc("GET /debug/pprof/", pprof.Index)
		mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	}
	s := &Server{
		http: &http.Server{
			Handler:           mux,
			ReadHeaderTimeout: readTimeout,
			ReadTimeout:       readTimeout,
			WriteTimeout:      writeTimeout,
			IdleTimeout:       idleTimeout,
			MaxHeaderBytes:    16 << 10,
			ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
		},
		ln:   ln,
		done: make(chan struct{}),
	}
	go func() {
		defer close(s.done)
		if err := s.http.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			s.err = err
		}
	}()
	return s
}

// Addr is the address the server listens on.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Close stops accepting, lets scrapes in flight finish until ctx is done,
// then closes every connection, and waits for the serving goroutine. It
// returns why serving stopped early, if it did. Later calls only wait.
func (s *Server) Close(ctx context.Context) error {
	s.closeOnce.Do(func() {
		if err := s.http.Shutdown(ctx); err != nil {
			_ = s.http.Close()
		}
	})
	<-s.done
	return s.err
}
