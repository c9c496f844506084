package sfu

import (
	"sync"

	"github.com/pion/rtp"
)

// Fan-out over several cores.
//
// A track's packets are read and forwarded by one goroutine, so one core
// bounds the subscribers of one track (about 450 of a 1.5 Mbit/s stream on
// the benchmark machine, bench/README.md). For a large room on a machine
// with more cores, the reader splits a packet's subscribers into chunks,
// hands all but the first to the SFU's fan-out workers, forwards the first
// itself and waits for the others before it reads the next packet: each
// subscriber still gets the track's packets in order, and the packet's
// buffer is not reused while a worker reads it.
const (
	// parallelMin: fewer subscribers are forwarded by the reader alone
	// (handing off costs more than it saves).
	parallelMin = 96
	// parallelChunk: the smallest chunk worth handing off.
	parallelChunk = 48
)

// fanJob is one chunk of one packet's fan-out.
type fanJob struct {
	l       *layer
	h       *rtp.Header
	payload []byte
	pad     byte
	key     bool
	now     int64
	downs   []*downTrack
	wg      *sync.WaitGroup
}

func (j *fanJob) run() {
	for _, d := range j.downs {
		d.forward(j.l, j.h, j.payload, j.pad, j.key, j.now)
	}
	j.wg.Done()
}

// fanout is one layer's reusable fan-out state (its reader's only).
type fanout struct {
	wg   sync.WaitGroup
	jobs []fanJob
}

// fanPool is the SFU's fan-out workers: GOMAXPROCS−1 goroutines (none on
// one core), owned by the SFU and stopped by Close.
type fanPool struct {
	workers int
	jobs    chan *fanJob
	done    chan struct{}
	wg      sync.WaitGroup

	mu      sync.RWMutex
	stopped bool // no job is queued once set
}

// newFanPool starts n workers; nil when n < 1 (one core to use).
func newFanPool(n int) *fanPool {
	if n < 1 {
		return nil
	}
	p := &fanPool{workers: n, jobs: make(chan *fanJob, 4*n), done: make(chan struct{})}
	p.wg.Add(n)
	for i := 0; i < n; i++ {
		go p.work()
	}
	return p
}

func (p *fanPool) work() {
	defer p.wg.Done()
	for {
		select {
		case j := <-p.jobs:
			j.run()
		case <-p.done:
			return
		}
	}
}

// submit hands j to a worker, or runs it here once the pool is stopped.
func (p *fanPool) submit(j *fanJob) {
	p.mu.RLock()
	if p.stopped {
		p.mu.RUnlock()
		j.run()
		return
	}
	p.jobs <- j // the workers run until stopped is set: it is taken
	p.mu.RUnlock()
}

// stop ends the workers (after they finish the job in hand) and runs any
// job still queued on the caller; later jobs run on their submitters.
func (p *fanPool) stop() {
	if p == nil {
		return
	}
	p.mu.Lock()
	p.stopped = true
	p.mu.Unlock()
	close(p.done)
	p.wg.Wait()
	for {
		select {
		case j := <-p.jobs:
			j.run()
		default:
			return
		}
	}
}

// forwardAll forwards one packet of l to downs, over several cores when
// pool has workers and there are enough subscribers. Called by l's reader.
func (l *layer) forwardAll(pool *fanPool, downs []*downTrack, h *rtp.Header, payload []byte, pad byte, key bool, now int64) {
	chunks := 1
	if pool != nil && len(downs) >= parallelMin {
		chunks = min(pool.workers+1, len(downs)/parallelChunk)
	}
	if chunks <= 1 {
		for _, d := range downs {
			d.forward(l, h, payload, pad, key, now)
		}
		return
	}
	per := (len(downs) + chunks - 1) / chunks
	f := &l.fan
	if cap(f.jobs) < chunks {
		f.jobs = make([]fanJob, chunks)
	}
	f.jobs = f.jobs[:chunks]
	n := 0
	for c := 1; c < chunks && c*per < len(downs); c++ {
		f.jobs[c] = fanJob{l: l, h: h, payload: payload, pad: pad, key: key, now: now,
			downs: downs[c*per : min((c+1)*per, len(downs))], wg: &f.wg}
		n++
	}
	f.wg.Add(n)
	for c := 1; c <= n; c++ {
		pool.submit(&f.jobs[c])
	}
	for _, d := range downs[:per] {
		d.forward(l, h, payload, pad, key, now)
	}
	f.wg.Wait()
	for c := 1; c <= n; c++ {
		f.jobs[c] = fanJob{} // no references kept between packets
	}
}
