package leakcheck

import (
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestMain(m *testing.M) { os.Exit(Main(m)) }

// recorder is a testing.TB whose cleanups and errors are kept, not run
// or reported.
type recorder struct {
	testing.TB
	mu       sync.Mutex
	cleanups []func()
	errs     []string
}

func (r *recorder) Helper()          {}
func (r *recorder) Cleanup(f func()) { r.cleanups = append(r.cleanups, f) }
func (r *recorder) Errorf(f string, a ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errs = append(r.errs, fmt.Sprintf(f, a...))
}

func (r *recorder) cleanup() {
	for i := len(r.cleanups) - 1; i >= 0; i-- {
		r.cleanups[i]()
	}
}

func TestCheckPassesWhenGoroutinesEnd(t *testing.T) {
	r := &recorder{TB: t}
	Check(r)
	var wg sync.WaitGroup
	for range 10 {
		wg.Go(func() {})
	}
	wg.Wait()
	// One that is still on its way out when the check starts.
	stop := make(chan struct{})
	go func() { <-stop }()
	done := make(chan struct{})
	go func() { r.cleanup(); close(done) }()
	close(stop)
	<-done
	if len(r.errs) != 0 {
		t.Fatalf("errors: %q", r.errs)
	}
}

func TestLeakFound(t *testing.T) {
	before := running()
	stop := make(chan struct{})
	go blockUntil(stop)
	leaked := leakedSince(before)
	const mine = "created by github.com/qrelay/qrelay/internal/leakcheck.TestLeakFound"
	if !strings.Contains(leaked, mine) {
		t.Errorf("leakedSince = %q, want the goroutine this test started", leaked)
	}
	if got := waitGone(before, time.Now()); !strings.Contains(got, mine) {
		t.Errorf("waitGone at its deadline = %q, want the goroutine this test started", got)
	}
	close(stop)
	if got := waitGone(before, time.Now().Add(Wait)); got != "" {
		t.Errorf("waitGone after the goroutine ends = %q", got)
	}
}

func blockUntil(c chan struct{}) { <-c }

func TestParse(t *testing.T) {
	g, ok := parse("goroutine 42 [chan receive]:\nmain.f()\n\t/x.go:1 +0x1")
	if !ok || g.id != 42 {
		t.Errorf("parse = %+v, %v", g, ok)
	}
	for _, bad := range []string{"", "goroutine", "goroutine x [y]:", "thread 1 [z]:"} {
		if _, ok := parse(bad); ok {
			t.Errorf("parse(%q) accepted", bad)
		}
	}
}
