package qkdsim

import (
	"sync"
	"testing"
	"time"
)

// fakeClock is a manual clock for Config.Now and Config.After: time moves
// only on Advance, and waitArmed lets a test wait until a Fetch or Get is
// blocked on a timer, so that no test sleeps.
type fakeClock struct {
	mu      sync.Mutex
	now     time.Time
	timers  map[*fakeTimer]struct{}
	changed chan struct{}
}

type fakeTimer struct {
	at time.Time
	c  chan time.Time
}

func newFakeClock(start time.Time) *fakeClock {
	return &fakeClock{now: start, timers: map[*fakeTimer]struct{}{}, changed: make(chan struct{})}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) notifyLocked() {
	close(c.changed)
	c.changed = make(chan struct{})
}

func (c *fakeClock) After(d time.Duration) (<-chan time.Time, func() bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &fakeTimer{at: c.now.Add(d), c: make(chan time.Time, 1)}
	if d <= 0 {
		t.c <- c.now
	} else {
		c.timers[t] = struct{}{}
		c.notifyLocked()
	}
	return t.c, func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		_, active := c.timers[t]
		delete(c.timers, t)
		c.notifyLocked()
		return active
	}
}

// Advance moves the clock and fires the timers that are due.
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	for t := range c.timers {
		if !t.at.After(c.now) {
			t.c <- c.now
			delete(c.timers, t)
		}
	}
	c.notifyLocked()
}

// waitArmed blocks until n timers are pending (a Fetch or Get is waiting),
// failing the test after 10 s of real time.
func (c *fakeClock) waitArmed(t testing.TB, n int) {
	t.Helper()
	deadline := time.NewTimer(10 * time.Second)
	defer deadline.Stop()
	for {
		c.mu.Lock()
		k, ch := len(c.timers), c.changed
		c.mu.Unlock()
		if k >= n {
			return
		}
		select {
		case <-ch:
		case <-deadline.C:
			t.Fatalf("no call started waiting on the clock within 10 s (%d of %d timers armed)", k, n)
		}
	}
}
