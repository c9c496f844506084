// Package leakcheck is the goroutine-leak check every test package runs in
// its TestMain. It knows the few goroutines our libraries own for the life
// of the process, and nothing else is forgiven.
package leakcheck

import (
	"testing"

	"go.uber.org/goleak"
)

// libraryGoroutines are started and stopped by libraries, not by Parley.
var libraryGoroutines = []goleak.Option{
	// fasthttp keeps the Date header fresh with one process-wide goroutine,
	// started on first use and never stopped.
	goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.updateServerDate.func1"),
	// fasthttp's idle-worker cleaner notices Shutdown only after its current
	// sleep (MaxIdleWorkerDuration, 10 s); it does end.
	goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*workerPool).Start.func2"),
}

// VerifyTestMain runs the tests, then fails if any goroutine is left
// running that is not a library's own.
func VerifyTestMain(m *testing.M) {
	goleak.VerifyTestMain(m, libraryGoroutines...)
}

// Find reports the goroutines left running that are not a library's own,
// for a TestMain that must clean up after the tests before it exits.
func Find() error {
	return goleak.Find(libraryGoroutines...)
}
