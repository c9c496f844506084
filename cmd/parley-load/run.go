package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pion/webrtc/v4"
)

// run is one scenario in progress.
type run struct {
	cfg config
	api *api
	// accounts are the -token accounts (the first is api); idle-ws
	// spreads its rooms over them.
	accounts []*api
	pion     *webrtc.API
	room     string
	st       *stats
	log      io.Writer
	rep      *Report

	mu      sync.Mutex
	clients []*client
	failed  int
}

// Run signs in (or uses the token), creates the room and runs the
// scenario; the report is returned even when the run failed part-way.
func Run(ctx context.Context, cfg config, log io.Writer) (*Report, error) {
	r := &run{cfg: cfg, api: newAPI(cfg.URL, cfg.Insecure), st: &stats{}, log: log,
		rep: &Report{Scenario: cfg.Scenario, N: cfg.N, K: cfg.K, Rate: cfg.Rate,
			WarmupS: cfg.Warmup.Seconds(), Date: time.Now().UTC().Format(time.RFC3339), Valid: true}}
	defer r.closeAll()
	var err error
	if r.pion, err = newPionAPI(); err != nil {
		return nil, err
	}
	if cfg.Token != "" {
		tokens := strings.Split(cfg.Token, ",")
		r.api.bearer = tokens[0]
		for _, t := range tokens {
			r.accounts = append(r.accounts, r.api.as(t))
		}
	} else {
		if _, err := r.api.signIn(ctx, cfg.Username, cfg.Password, cfg.TOTPSecret, cfg.TOTPSecretFile); err != nil {
			return nil, err
		}
		r.accounts = []*api{r.api}
	}
	r.room = cfg.Room
	if r.room == "" {
		if r.room, err = r.api.createRoom(ctx, "parley-load "+cfg.Scenario); err != nil {
			return nil, err
		}
	}
	r.rep.Room = r.room
	r.rep.Server.RSSBeforeKiB = r.rss()
	err = scenarios[cfg.Scenario](ctx, r)
	r.mu.Lock()
	r.rep.ClientsOK, r.rep.ClientsFailed = len(r.clients), r.failed
	r.mu.Unlock()
	r.st.mu.Lock()
	r.rep.Errors = append(r.rep.Errors, r.st.errs...)
	r.st.mu.Unlock()
	if err == nil && r.failed > 0 {
		err = fmt.Errorf("%d clients failed to join", r.failed)
	}
	return r.rep, err
}

func (r *run) logf(format string, args ...any) {
	fmt.Fprintf(r.log, "parley-load: "+format+"\n", args...)
}

func (r *run) rss() int64 {
	if r.cfg.ServerPID == "" {
		return 0
	}
	v, err := procRSS(r.cfg.ServerPID)
	if err != nil {
		r.logf("server RSS: %v", err)
	}
	return v
}

func (r *run) closeAll() {
	r.mu.Lock()
	cs := r.clients
	r.clients = nil
	r.mu.Unlock()
	var wg sync.WaitGroup
	for _, c := range cs {
		wg.Add(1)
		go func() { defer wg.Done(); c.close() }()
	}
	wg.Wait()
}

// join adds one client.
func (r *run) join(ctx context.Context, name string, o clientOpts) (*client, error) {
	room, a := o.room, o.api
	if room == "" {
		room = r.room
	}
	if a == nil {
		a = r.api
	}
	c, err := newClient(ctx, a, r.pion, room, name, r.st, o)
	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil {
		r.failed++
		if r.failed <= 5 {
			r.logf("%s: %v", name, err)
		}
		r.st.errorf("%s: %v", name, err)
		return nil, err
	}
	r.clients = append(r.clients, c)
	return c, nil
}

// joinMany starts n clients at rate per second, each joining in its own
// goroutine, and waits for them all.
func (r *run) joinMany(ctx context.Context, n int, rate float64, prefix string, o clientOpts) {
	r.joinManyIn(ctx, n, rate, prefix, o, nil)
}

// joinManyIn is joinMany with client i joining the room in(i) says, as
// its account (nil: the run's room and account).
func (r *run) joinManyIn(ctx context.Context, n int, rate float64, prefix string, o clientOpts, in func(int) (string, *api)) {
	var wg sync.WaitGroup
	every := time.Duration(float64(time.Second) / rate)
	next := time.Now()
	for i := 0; i < n && ctx.Err() == nil; i++ {
		if d := time.Until(next); d > 0 {
			time.Sleep(d)
		}
		next = next.Add(every)
		o := o
		if in != nil {
			o.room, o.api = in(i)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _ = r.join(ctx, prefix+strconv.Itoa(i), o)
		}()
	}
	wg.Wait()
}

// waitMedia waits until every media client received its first packet
// (or the timeout).
func (r *run) waitMedia(ctx context.Context, timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		r.mu.Lock()
		missing := 0
		for _, c := range r.clients {
			if c.pc != nil && !c.gotData.Load() && c.expectsMedia {
				missing++
			}
		}
		r.mu.Unlock()
		if missing == 0 {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

// steady waits the warm-up, then measures the steady window.
func (r *run) steady(ctx context.Context) error {
	if err := sleepCtx(ctx, r.cfg.Warmup); err != nil {
		return err
	}
	rep := r.rep
	rep.Server.RSSAfterKiB = r.rss()
	var srv0, srv1 cpuTimes
	var srvErr error
	if r.cfg.ServerPID != "" {
		srv0, srvErr = procCPU(r.cfg.ServerPID)
	}
	self0, selfErr := procCPU("self")
	tracks0 := r.st.snapshot()
	t0 := time.Now()
	r.st.recording.Store(true)
	err := sleepCtx(ctx, r.cfg.Duration)
	r.st.recording.Store(false)
	wall := time.Since(t0).Seconds()
	tracks1 := r.st.snapshot()
	self1, selfErr1 := procCPU("self")
	if r.cfg.ServerPID != "" && srvErr == nil {
		srv1, srvErr = procCPU(r.cfg.ServerPID)
	}
	rep.WindowS = wall

	var recv, expected int64
	lat := &Hist{}
	for t, end := range tracks1 {
		start, ok := tracks0[t]
		if !ok {
			start = trackSnap{0, t.firstExt - 1}
		}
		recv += end.received - start.received
		if t.video {
			rep.VideoPPS += float64(end.received - start.received)
		}
		expected += end.maxExt - start.maxExt
		lat.Merge(&t.lat)
	}
	rep.Tracks = len(tracks1)
	rep.PacketsReceived = recv
	rep.PacketsExpected = expected
	rep.ForwardedPPS = float64(recv) / wall
	rep.VideoPPS /= wall
	if expected > 0 {
		rep.LossPercent = max(0, float64(expected-recv)/float64(expected)*100)
	}
	rep.LatencyUS = quantiles(lat)
	if c := r.st.chatLat.Count(); c > 0 {
		rep.ChatLatencyUS = quantiles(&r.st.chatLat)
	}

	if r.cfg.ServerPID != "" {
		if srvErr != nil {
			r.logf("server CPU: %v", srvErr)
		} else {
			s := &rep.Server
			s.CPUUserS = srv1.User - srv0.User
			s.CPUSystemS = srv1.System - srv0.System
			s.CPUPercent = (s.CPUUserS + s.CPUSystemS) / wall * 100
			if recv > 0 {
				s.CPUUSPerCopy = &perCopy{
					User:   s.CPUUserS * 1e6 / float64(recv),
					Kernel: s.CPUSystemS * 1e6 / float64(recv),
					Total:  (s.CPUUserS + s.CPUSystemS) * 1e6 / float64(recv),
				}
			}
		}
	}
	if selfErr == nil && selfErr1 == nil {
		g := &rep.Generator
		g.Cores = runtime.NumCPU() // the CPUs of its affinity mask (taskset)
		g.CPUS = self1.Total() - self0.Total()
		g.LoadPerCore = g.CPUS / wall / float64(g.Cores)
		if g.LoadPerCore > 0.8 {
			rep.Valid = false
			rep.InvalidReason = fmt.Sprintf("the generator used %.0f%% of its %d core(s) (> 80%%): its own delays may be measured", g.LoadPerCore*100, g.Cores)
		}
	}
	return err
}

// joinTimes puts the join-time distribution into the report.
func (r *run) joinTimes(kind string) {
	r.st.mu.Lock()
	js := append([]time.Duration(nil), r.st.joins...)
	r.st.mu.Unlock()
	r.rep.JoinKind = kind
	if len(js) == 0 {
		return
	}
	sort.Slice(js, func(i, j int) bool { return js[i] < js[j] })
	q := func(p float64) float64 {
		i := int(float64(len(js))*p+0.999999) - 1
		return float64(js[max(0, min(i, len(js)-1))]) / 1e6
	}
	r.rep.JoinMS = &joinQ{P50: q(0.5), P99: q(0.99), Max: q(1), Samples: len(js)}
}

// perClient sets the server's RSS growth per client.
func (r *run) perClient(n int, what string) {
	s := &r.rep.Server
	if r.cfg.ServerPID == "" || n == 0 {
		return
	}
	s.RSSPerClientKiB = float64(s.RSSAfterKiB-s.RSSBeforeKiB) / float64(n)
	s.RSSPerClientOf = what
}

var errNoMedia = errors.New("no media was received")

func (r *run) needMedia() error {
	if r.rep.PacketsReceived == 0 {
		return errNoMedia
	}
	return nil
}

func maxRate(rate, cap float64) float64 { return min(rate, cap) }

// --- scenarios ---

func runFanout(ctx context.Context, r *run) error {
	r.logf("fanout: 1 publisher, adding %d subscribers", r.cfg.N)
	return oneToMany(ctx, r, maxRate(r.cfg.Rate, 20), 15*time.Second)
}

// runJoinStorm is fanout with the subscribers joining at -rate, however
// fast: the join times are the result.
func runJoinStorm(ctx context.Context, r *run) error {
	r.logf("join-storm: %d joins at %.0f/s", r.cfg.N, r.cfg.Rate)
	return oneToMany(ctx, r, r.cfg.Rate, 30*time.Second)
}

// oneToMany: one publisher (video and audio), N subscribers joining at
// rate, then the steady window.
func oneToMany(ctx context.Context, r *run, rate float64, mediaWait time.Duration) error {
	if _, err := r.join(ctx, "pub", clientOpts{media: true, video: true, audio: true}); err != nil {
		return err
	}
	r.rep.Server.RSSBeforeKiB = r.rss()
	r.joinMany(ctx, r.cfg.N, rate, "sub", clientOpts{media: true, expect: true, joinOnVideo: true})
	r.waitMedia(ctx, mediaWait)
	r.joinTimes("socket open → first video packet (subscribers)")
	err := r.steady(ctx)
	r.perClient(r.cfg.N, "subscriber")
	if err != nil {
		return err
	}
	return r.needMedia()
}

func runMeeting(ctx context.Context, r *run) error {
	r.logf("meeting: %d participants, all publishing", r.cfg.K)
	r.rep.N = r.cfg.K
	r.joinMany(ctx, r.cfg.K, maxRate(r.cfg.Rate, 20), "p", clientOpts{media: true, video: true, audio: true, expect: r.cfg.K > 1, joinOnVideo: true})
	r.waitMedia(ctx, 15*time.Second)
	r.joinTimes("socket open → first video packet (participants)")
	err := r.steady(ctx)
	r.perClient(r.cfg.K, "participant")
	if err != nil {
		return err
	}
	return r.needMedia()
}

func runAudio(ctx context.Context, r *run) error {
	const pubs = 10
	r.rep.K = pubs
	r.logf("audio: %d audio publishers, %d listeners", pubs, r.cfg.N)
	r.joinMany(ctx, pubs, maxRate(r.cfg.Rate, 20), "talker", clientOpts{media: true, audio: true})
	r.rep.Server.RSSBeforeKiB = r.rss()
	r.joinMany(ctx, r.cfg.N, maxRate(r.cfg.Rate, 20), "listener", clientOpts{media: true, expect: true})
	r.waitMedia(ctx, 15*time.Second)
	r.joinTimes("socket open → first media packet (listeners)")
	err := r.steady(ctx)
	r.perClient(r.cfg.N, "listener")
	if err != nil {
		return err
	}
	return r.needMedia()
}

// runIdleWS: N sockets that join and idle, -room-size to a room (a
// meeting's size: 10,000 people are not in one meeting, and in one room
// every join is announced to all the others, O(N²) messages), or all in
// one room with -room-size 0. Room j belongs to account j mod the number
// of -token accounts, whose sockets join it.
func runIdleWS(ctx context.Context, r *run) error {
	size := r.cfg.RoomSize
	if size == 0 || size > r.cfg.N {
		size = r.cfg.N
	}
	type roomOf struct {
		id string
		as *api
	}
	rooms := []roomOf{{r.room, r.api}}
	for len(rooms)*size < r.cfg.N {
		as := r.accounts[len(rooms)%len(r.accounts)]
		id, err := as.createRoom(ctx, "parley-load idle-ws "+strconv.Itoa(len(rooms)))
		if err != nil {
			return err
		}
		rooms = append(rooms, roomOf{id, as})
	}
	r.rep.RoomSize, r.rep.Rooms = size, len(rooms)
	r.rep.Server.RSSBeforeKiB = r.rss()
	r.logf("idle-ws: %d sockets in %d room(s) of up to %d (%d account(s)), at %.0f/s", r.cfg.N, len(rooms), size,
		min(len(rooms), len(r.accounts)), r.cfg.Rate)
	r.joinManyIn(ctx, r.cfg.N, r.cfg.Rate, "idle", clientOpts{}, func(i int) (string, *api) {
		ro := rooms[i/size]
		return ro.id, ro.as
	})
	r.joinTimes("socket open → welcome")
	err := r.steady(ctx)
	r.perClient(r.cfg.N, "socket")
	return err
}

func runChat(ctx context.Context, r *run) error {
	r.logf("chat: %d participants", r.cfg.N)
	sender, err := r.join(ctx, "chat-sender", clientOpts{})
	if err != nil {
		return err
	}
	if r.cfg.N > 1 {
		r.joinMany(ctx, r.cfg.N-1, r.cfg.Rate, "chat", clientOpts{chat: true})
	}
	r.joinTimes("socket open → welcome")
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() { // one a second is the server's per-person rate
		defer close(done)
		tick := time.NewTicker(1100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				_ = sender.s.send(map[string]any{"type": "chat", "text": chatPrefix + strconv.FormatInt(time.Now().UnixNano(), 10)})
				r.rep.ChatSent++
			}
		}
	}()
	err = r.steady(ctx)
	close(stop)
	<-done
	r.rep.ChatReceived = r.st.chatRecv.Load()
	r.perClient(r.cfg.N, "participant")
	if err == nil && r.rep.ChatReceived == 0 && r.cfg.N > 1 {
		err = errors.New("no chat message was received")
	}
	return err
}
