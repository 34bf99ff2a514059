// Package leakcheck fails tests that leave goroutines running.
//
// It compares goroutines by ID, from runtime.Stack, so a goroutine that
// ends and another that starts do not cancel out as they would in a
// count. A goroutine that is still running when the check is made is
// given a bounded time (Wait) to end: the check polls, it never sleeps a
// fixed time and hopes.
//
// Use Main from TestMain to check a whole package after all its tests
// (parallel tests included), or Check at the start of a test that does
// not run in parallel with others to check that one test.
package leakcheck

import (
	"bytes"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Wait bounds how long a goroutine may take to end after the code under
// test has been stopped: long enough for a loaded CI machine to schedule
// a goroutine that is already on its way out.
const Wait = 10 * time.Second

// pollEvery is the poll interval while goroutines are still ending.
const pollEvery = 2 * time.Millisecond

// ignored are functions whose goroutines are the test binary's or the
// runtime's, not the code's under test: the test runner's own goroutines
// and os/signal's, which runs for good once a signal is watched.
var ignored = []string{
	"testing.tRunner(",
	"testing.(*M).",
	"testing.(*T).Run(",
	"testing.runFuzzing(",
	"testing.(*F).Fuzz",
	"os/signal.signal_recv(",
	"os/signal.loop(",
	"runtime.ensureSigM",
}

// Check fails t if goroutines that start from now on are still running
// once t's cleanups are done. Call it first in the test, so that its
// cleanup runs last. The test must not run in parallel with others, whose
// goroutines it would count.
func Check(t testing.TB) {
	t.Helper()
	before := running()
	t.Cleanup(func() {
		if leaked := waitGone(before, time.Now().Add(Wait)); leaked != "" {
			t.Errorf("leakcheck: goroutines still running %v after the test:\n%s", Wait, leaked)
		}
	})
}

// Main runs the tests of m and returns the exit code for os.Exit: the
// tests' own, or 1 if they passed but left goroutines running, which it
// prints. Use it as
//
//	func TestMain(m *testing.M) { os.Exit(leakcheck.Main(m)) }
func Main(m *testing.M) int {
	before := running()
	code := m.Run()
	if code != 0 {
		return code
	}
	if leaked := waitGone(before, time.Now().Add(Wait)); leaked != "" {
		fmt.Fprintf(os.Stderr, "leakcheck: goroutines still running %v after the tests:\n%s", Wait, leaked)
		return 1
	}
	return 0
}

// waitGone polls until every goroutine not in before (and not ignored)
// has ended, or the deadline passes; it returns the stacks of those left.
func waitGone(before map[uint64]bool, deadline time.Time) string {
	var tick *time.Ticker
	for {
		leaked := leakedSince(before)
		if leaked == "" || time.Now().After(deadline) {
			if tick != nil {
				tick.Stop()
			}
			return leaked
		}
		if tick == nil {
			tick = time.NewTicker(pollEvery)
		}
		<-tick.C
	}
}

// running returns the IDs of the goroutines running now.
func running() map[uint64]bool {
	ids := map[uint64]bool{}
	for _, g := range goroutines() {
		ids[g.id] = true
	}
	return ids
}

// leakedSince returns the stacks of the goroutines running now that are
// not in before and not ignored, or "" if there are none.
func leakedSince(before map[uint64]bool) string {
	var b strings.Builder
	for _, g := range goroutines() {
		if before[g.id] || isIgnored(g.stack) {
			continue
		}
		b.WriteString(g.stack)
		b.WriteString("\n\n")
	}
	return b.String()
}

func isIgnored(stack string) bool {
	for _, f := range ignored {
		if strings.Contains(stack, f) {
			return true
		}
	}
	return false
}

type goroutine struct {
	id    uint64
	stack string
}

// goroutines parses runtime.Stack of all goroutines but the caller's.
func goroutines() []goroutine {
	buf := make([]byte, 64<<10)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	var gs []goroutine
	for i, block := range bytes.Split(buf, []byte("\n\n")) {
		if i == 0 {
			continue // the caller, always first
		}
		if g, ok := parse(string(block)); ok {
			gs = append(gs, g)
		}
	}
	return gs
}

// parse reads a block "goroutine 12 [state]:\n<frames>".
func parse(block string) (goroutine, bool) {
	rest, ok := strings.CutPrefix(block, "goroutine ")
	if !ok {
		return goroutine{}, false
	}
	num, _, ok := strings.Cut(rest, " ")
	if !ok {
		return goroutine{}, false
	}
	id, err := strconv.ParseUint(num, 10, 64)
	if err != nil {
		return goroutine{}, false
	}
	return goroutine{id: id, stack: block}, true
}
