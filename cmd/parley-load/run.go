package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
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

	// nodes are the -url nodes (one for a single server); client i's
	// socket dials nodes[i mod len].
	nodes []node
	// rooms are the run's rooms (the first is room), with the account
	// that made them.
	rooms []roomOf
	// ids are the nodes' ids and owner each room's node id (the live
	// view, several nodes only; "" or missing: unknown).
	ids   []string
	owner map[string]string

	mu      sync.Mutex
	clients []*client
	failed  int
	seq     int // clients given a node so far
}

// node is one server: its URL and, with -server-pid, its pid.
type node struct{ url, pid string }

// roomOf is a room and the account that made it (whose sockets join it).
type roomOf struct {
	id string
	as *api
}

// Run signs in (or uses the token), creates the room and runs the
// scenario; the report is returned even when the run failed part-way.
func Run(ctx context.Context, cfg config, log io.Writer) (*Report, error) {
	urls, pids := splitList(cfg.URL), splitList(cfg.ServerPID)
	if len(urls) == 0 {
		return nil, errors.New("no -url")
	}
	if len(pids) > 0 && len(pids) != len(urls) {
		return nil, fmt.Errorf("%d server pid(s) for %d URL(s)", len(pids), len(urls))
	}
	cfg.Rooms = max(cfg.Rooms, 1)
	r := &run{cfg: cfg, api: newAPI(urls[0], cfg.Insecure), st: &stats{}, log: log,
		rep: &Report{Scenario: cfg.Scenario, N: cfg.N, K: cfg.K, Rate: cfg.Rate,
			WarmupS: cfg.Warmup.Seconds(), Date: time.Now().UTC().Format(time.RFC3339), Valid: true}}
	for i, u := range urls {
		n := node{url: u}
		if len(pids) > 0 {
			n.pid = pids[i]
		}
		r.nodes = append(r.nodes, n)
		r.rep.Nodes = append(r.rep.Nodes, nodeRep{URL: u, PID: n.pid})
	}
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
	r.rooms = []roomOf{{r.room, r.api}}
	r.markRSSBefore()
	err = scenarios[cfg.Scenario](ctx, r)
	r.mu.Lock()
	r.rep.ClientsOK, r.rep.ClientsFailed = len(r.clients), r.failed
	places := make([]clientPlace, len(r.clients))
	for i, c := range r.clients {
		places[i] = clientPlace{node: c.node, room: c.room, join: time.Duration(c.joined.Load())}
	}
	r.mu.Unlock()
	r.rep.placeClients(places, r.ids, r.owner)
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

// measured reports whether the servers' pids were given.
func (r *run) measured() bool { return r.nodes[0].pid != "" }

// rss returns every node's RSS (KiB; 0 without -server-pid) and their sum.
func (r *run) rss() (per []int64, sum int64) {
	per = make([]int64, len(r.nodes))
	for i, n := range r.nodes {
		if n.pid == "" {
			continue
		}
		v, err := procRSS(n.pid)
		if err != nil {
			r.logf("server RSS (%s): %v", n.url, err)
		}
		per[i] = v
		sum += v
	}
	return per, sum
}

// markRSSBefore records the servers' RSS before the measured clients.
func (r *run) markRSSBefore() {
	per, sum := r.rss()
	r.rep.Server.RSSBeforeKiB = sum
	for i, v := range per {
		r.rep.Nodes[i].RSSBeforeKiB = v
	}
}

// markRSSAfter records the servers' RSS at the start of the window.
func (r *run) markRSSAfter() {
	per, sum := r.rss()
	r.rep.Server.RSSAfterKiB = sum
	for i, v := range per {
		r.rep.Nodes[i].RSSAfterKiB = v
	}
}

// cpu reads every node's CPU times (nil where not measured).
func (r *run) cpu() []*cpuTimes {
	out := make([]*cpuTimes, len(r.nodes))
	for i, n := range r.nodes {
		if n.pid == "" {
			continue
		}
		c, err := procCPU(n.pid)
		if err != nil {
			r.logf("server CPU (%s): %v", n.url, err)
			continue
		}
		out[i] = &c
	}
	return out
}

// nextNode is the node the next client's socket dials: round-robin.
func (r *run) nextNode() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	i := r.seq % len(r.nodes)
	r.seq++
	return i
}

// locate asks the nodes (several only) which node each of the run's rooms
// runs on, and their ids: the console's live view of each node, as the
// accounts that made the rooms (they moderate them). Failures leave the
// figures unattributed.
func (r *run) locate(ctx context.Context) {
	if len(r.nodes) < 2 {
		return
	}
	r.ids = make([]string, len(r.nodes))
	r.owner = map[string]string{}
	for i, n := range r.nodes {
		self, rooms, err := r.api.at(n.url).liveRooms(ctx)
		if err != nil {
			r.logf("live view of %s: %v (figures not attributed to nodes)", n.url, err)
			continue
		}
		r.ids[i] = self
		maps.Copy(r.owner, rooms)
	}
	asked := map[string]bool{r.api.bearer: true}
	for _, ro := range r.rooms {
		if _, ok := r.owner[ro.id]; ok || asked[ro.as.bearer] {
			continue
		}
		asked[ro.as.bearer] = true
		if _, rooms, err := ro.as.liveRooms(ctx); err == nil {
			maps.Copy(r.owner, rooms)
		} else {
			r.logf("live view as another account: %v", err)
		}
	}
	for _, ro := range r.rooms {
		if r.owner[ro.id] == "" {
			r.logf("room %s: its node is unknown (not in the live view)", ro.id)
		}
	}
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

// join adds one client, its socket on the next node in turn.
func (r *run) join(ctx context.Context, name string, o clientOpts) (*client, error) {
	return r.joinAt(ctx, name, o, r.nextNode())
}

// joinAt adds one client whose socket dials node i.
func (r *run) joinAt(ctx context.Context, name string, o clientOpts, i int) (*client, error) {
	room, a := o.room, o.api
	if room == "" {
		room = r.room
	}
	if a == nil {
		a = r.api
	}
	c, err := newClient(ctx, a.at(r.nodes[i].url), r.pion, room, name, r.st, o)
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
	c.node = i
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
		at := r.nextNode() // in join order, not goroutine order
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _ = r.joinAt(ctx, prefix+strconv.Itoa(i), o, at)
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
	r.locate(ctx) // before the warm-up: not measured
	if err := sleepCtx(ctx, r.cfg.Warmup); err != nil {
		return err
	}
	rep := r.rep
	r.markRSSAfter()
	srv0 := r.cpu()
	self0, selfErr := procCPU("self")
	tracks0 := r.st.snapshot()
	t0 := time.Now()
	r.st.recording.Store(true)
	err := sleepCtx(ctx, r.cfg.Duration)
	r.st.recording.Store(false)
	wall := time.Since(t0).Seconds()
	tracks1 := r.st.snapshot()
	self1, selfErr1 := procCPU("self")
	srv1 := r.cpu()
	rep.WindowS = wall

	var recv, expected int64
	lat := &Hist{}
	byRoom := map[string]int64{}
	for t, end := range tracks1 {
		start, ok := tracks0[t]
		if !ok {
			start = trackSnap{0, t.firstExt - 1}
		}
		recv += end.received - start.received
		byRoom[t.room] += end.received - start.received
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

	if r.measured() {
		cpu := make([]*cpuTimes, len(r.nodes))
		for i := range cpu {
			if srv0[i] != nil && srv1[i] != nil {
				cpu[i] = &cpuTimes{User: srv1[i].User - srv0[i].User, System: srv1[i].System - srv0[i].System}
			}
		}
		var copies []int64
		if len(r.nodes) == 1 {
			copies = []int64{recv}
		} else {
			copies = copiesByNode(byRoom, r.ids, r.owner)
		}
		rep.serverCPU(cpu, copies, recv, wall)
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
	r.rep.JoinMS = joinQuantiles(js)
}

// joinQuantiles sorts js and returns their quantiles (nil for none).
func joinQuantiles(js []time.Duration) *joinQ {
	if len(js) == 0 {
		return nil
	}
	sort.Slice(js, func(i, j int) bool { return js[i] < js[j] })
	q := func(p float64) float64 {
		i := int(float64(len(js))*p+0.999999) - 1
		return float64(js[max(0, min(i, len(js)-1))]) / 1e6
	}
	return &joinQ{P50: q(0.5), P99: q(0.99), Max: q(1), Samples: len(js)}
}

// perClient sets the server's RSS growth per client.
func (r *run) perClient(n int, what string) {
	s := &r.rep.Server
	if !r.measured() || n == 0 {
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

// makeRooms returns n rooms, the run's room first, making the others: room
// j by account j mod the number of -token accounts (whose sockets join
// it: each account's sockets count against its cap).
func (r *run) makeRooms(ctx context.Context, n int) ([]roomOf, error) {
	for len(r.rooms) < n {
		as := r.accounts[len(r.rooms)%len(r.accounts)]
		id, err := as.createRoom(ctx, "parley-load "+r.cfg.Scenario+" "+strconv.Itoa(len(r.rooms)))
		if err != nil {
			return nil, err
		}
		r.rooms = append(r.rooms, roomOf{id, as})
	}
	if n > 1 {
		r.rep.Rooms = n
	}
	return r.rooms[:n], nil
}

// inRooms puts clients 0…per−1 in rooms[0], the next per in rooms[1], and
// so on: consecutive clients dial different nodes, so every room has
// sockets on each of them.
func inRooms(rooms []roomOf, per int) func(int) (string, *api) {
	return func(i int) (string, *api) {
		ro := rooms[min(i/per, len(rooms)-1)]
		return ro.id, ro.as
	}
}

// numbered names client j of several rooms (one room: just the name).
func numbered(name string, j, rooms int) string {
	if rooms == 1 {
		return name
	}
	return name + strconv.Itoa(j)
}

func runFanout(ctx context.Context, r *run) error {
	r.logf("fanout: %d room(s), each 1 publisher, adding %d subscribers", r.cfg.Rooms, r.cfg.N)
	return oneToMany(ctx, r, maxRate(r.cfg.Rate, 20), 15*time.Second)
}

// runJoinStorm is fanout with the subscribers joining at -rate, however
// fast: the join times are the result.
func runJoinStorm(ctx context.Context, r *run) error {
	r.logf("join-storm: %d room(s), %d joins each at %.0f/s in all", r.cfg.Rooms, r.cfg.N, r.cfg.Rate)
	return oneToMany(ctx, r, r.cfg.Rate, 30*time.Second)
}

// oneToMany: in each of -rooms rooms, one publisher (video and audio)
// and N subscribers, joining at rate (in all), then the steady window.
func oneToMany(ctx context.Context, r *run, rate float64, mediaWait time.Duration) error {
	rooms, err := r.makeRooms(ctx, r.cfg.Rooms)
	if err != nil {
		return err
	}
	for j, ro := range rooms {
		if _, err := r.join(ctx, numbered("pub", j, len(rooms)), clientOpts{media: true, video: true, audio: true, room: ro.id, api: ro.as}); err != nil {
			return err
		}
	}
	r.markRSSBefore()
	n := r.cfg.N * len(rooms)
	r.joinManyIn(ctx, n, rate, "sub", clientOpts{media: true, expect: true, joinOnVideo: true}, inRooms(rooms, r.cfg.N))
	r.waitMedia(ctx, mediaWait)
	r.joinTimes("socket open → first video packet (subscribers)")
	err = r.steady(ctx)
	r.perClient(n, "subscriber")
	if err != nil {
		return err
	}
	return r.needMedia()
}

func runMeeting(ctx context.Context, r *run) error {
	r.logf("meeting: %d room(s) of %d participants, all publishing", r.cfg.Rooms, r.cfg.K)
	r.rep.N = r.cfg.K
	rooms, err := r.makeRooms(ctx, r.cfg.Rooms)
	if err != nil {
		return err
	}
	n := r.cfg.K * len(rooms)
	r.joinManyIn(ctx, n, maxRate(r.cfg.Rate, 20), "p", clientOpts{media: true, video: true, audio: true, expect: r.cfg.K > 1, joinOnVideo: true},
		inRooms(rooms, r.cfg.K))
	r.waitMedia(ctx, 15*time.Second)
	r.joinTimes("socket open → first video packet (participants)")
	err = r.steady(ctx)
	r.perClient(n, "participant")
	if err != nil {
		return err
	}
	return r.needMedia()
}

func runAudio(ctx context.Context, r *run) error {
	const pubs = 10
	r.rep.K = pubs
	r.logf("audio: %d room(s), each %d audio publishers and %d listeners", r.cfg.Rooms, pubs, r.cfg.N)
	rooms, err := r.makeRooms(ctx, r.cfg.Rooms)
	if err != nil {
		return err
	}
	r.joinManyIn(ctx, pubs*len(rooms), maxRate(r.cfg.Rate, 20), "talker", clientOpts{media: true, audio: true}, inRooms(rooms, pubs))
	r.markRSSBefore()
	n := r.cfg.N * len(rooms)
	r.joinManyIn(ctx, n, maxRate(r.cfg.Rate, 20), "listener", clientOpts{media: true, expect: true}, inRooms(rooms, r.cfg.N))
	r.waitMedia(ctx, 15*time.Second)
	r.joinTimes("socket open → first media packet (listeners)")
	err = r.steady(ctx)
	r.perClient(n, "listener")
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
	rooms, err := r.makeRooms(ctx, (r.cfg.N+size-1)/size)
	if err != nil {
		return err
	}
	r.rep.RoomSize, r.rep.Rooms = size, len(rooms)
	r.markRSSBefore()
	r.logf("idle-ws: %d sockets in %d room(s) of up to %d (%d account(s)), at %.0f/s", r.cfg.N, len(rooms), size,
		min(len(rooms), len(r.accounts)), r.cfg.Rate)
	r.joinManyIn(ctx, r.cfg.N, r.cfg.Rate, "idle", clientOpts{}, inRooms(rooms, size))
	r.joinTimes("socket open → welcome")
	err = r.steady(ctx)
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
