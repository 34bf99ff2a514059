// Package waitfor is the one way qrelay's tests wait for a state: poll a
// condition that looks at the real thing (a route, a counter, a log
// line) until it holds or a deadline passes, and on failure say what the
// condition last saw. A fixed sleep never stands in for the check.
package waitfor

import (
	"testing"
	"time"
)

// Every is how often Cond and Bool poll.
const Every = 10 * time.Millisecond

// Until calls cond every interval until it holds or deadline passes. It
// returns true if cond held, else false and the last non-empty reason cond
// gave for not holding.
func Until(deadline time.Time, interval time.Duration, cond func() (ok bool, seen string)) (bool, string) {
	last := ""
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		ok, seen := cond()
		if ok {
			return true, ""
		}
		if seen != "" {
			last = seen
		}
		if time.Now().After(deadline) {
			return false, last
		}
		<-tick.C
	}
}

// Cond waits up to d for cond to hold, polling every Every, and fails tb
// if it does not, naming what did not happen and what cond last saw.
func Cond(tb testing.TB, what string, d time.Duration, cond func() (ok bool, seen string)) {
	tb.Helper()
	ok, last := Until(time.Now().Add(d), Every, cond)
	if ok {
		return
	}
	if last == "" {
		tb.Fatalf("after %v: %s did not happen", d, what)
	} else {
		tb.Fatalf("after %v: %s did not happen; last seen: %s", d, what, last)
	}
}

// Bool is Cond for a condition that gives no reason.
func Bool(tb testing.TB, what string, d time.Duration, cond func() bool) {
	tb.Helper()
	Cond(tb, what, d, func() (bool, string) { return cond(), "" })
}
