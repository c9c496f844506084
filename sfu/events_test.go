package sfu

import (
	"sync"
	"testing"
	"time"
)

// The event queue delivers in order, nothing before start and nothing
// pushed after close, and keeps no goroutine while it has nothing to
// deliver.
func TestEventQueue(t *testing.T) {
	var wg sync.WaitGroup
	q := newEventQueue(testLogger(), &wg)
	var mu sync.Mutex
	var got []int
	add := func(i int) func() {
		return func() {
			mu.Lock()
			got = append(got, i)
			mu.Unlock()
		}
	}
	count := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(got)
	}
	for i := 0; i < 3; i++ {
		q.push(add(i))
	}
	time.Sleep(50 * time.Millisecond)
	if n := count(); n != 0 {
		t.Fatalf("%d events delivered before start", n)
	}
	q.start()
	q.push(func() { panic("a callback's panic is contained") })
	for i := 3; i < 2000; i++ {
		q.push(add(i))
		if i%500 == 0 {
			wg.Wait() // the queue may drain and its goroutine end meanwhile
		}
	}
	wg.Wait() // returns: no goroutine stays once the queue is drained
	if n := count(); n != 2000 {
		t.Fatalf("%d of 2000 events delivered", n)
	}
	for i, v := range got {
		if v != i {
			t.Fatalf("event %d delivered as the %dth", v, i)
		}
	}
	q.push(add(2000))
	q.close()
	q.push(add(2001))
	wg.Wait()
	if n := count(); n != 2001 || got[2000] != 2000 {
		t.Fatalf("after close: %d events delivered, the last %d; want the one queued before close only", n, got[n-1])
	}
}
