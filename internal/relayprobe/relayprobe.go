// Package relayprobe measures how long relay is interrupted by a fault,
// for tests and benchmarks of rerouting: it starts a relay attempt at a
// fixed interval, each in its own goroutine so that one stuck on a dead
// path does not hold up the next, and records when the attempts that
// delivered every key started. Relay is restored after a fault at the
// start of the first such attempt after it.
package relayprobe

import (
	"context"
	"sync"
	"time"
)

// Prober runs the attempts.
type Prober struct {
	mu       sync.Mutex
	ok       []time.Time // start times of attempts that succeeded, in completion order
	okEnd    []time.Time // and when each of them finished
	attempts int
	failed   int

	stop chan struct{}
	wg   sync.WaitGroup
}

// Start calls try every interval, each call with a context that ends
// after timeout; try reports whether every key was delivered.
func Start(every, timeout time.Duration, try func(ctx context.Context) bool) *Prober {
	p := &Prober{stop: make(chan struct{})}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			select {
			case <-p.stop:
				return
			case <-tick.C:
			}
			p.wg.Add(1)
			go func() {
				defer p.wg.Done()
				t0 := time.Now()
				ctx, cancel := context.WithTimeout(context.Background(), timeout)
				ok := try(ctx)
				cancel()
				p.mu.Lock()
				defer p.mu.Unlock()
				p.attempts++
				if ok {
					p.ok = append(p.ok, t0)
					p.okEnd = append(p.okEnd, time.Now())
				} else {
					p.failed++
				}
			}()
		}
	}()
	return p
}

// Halt stops starting attempts and waits for those under way.
func (p *Prober) Halt() {
	close(p.stop)
	p.wg.Wait()
}

// FirstOKAfter is the start of the earliest successful attempt that
// started at or after t.
func (p *Prober) FirstOKAfter(t time.Time) (time.Time, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var first time.Time
	for _, s := range p.ok {
		if !s.Before(t) && (first.IsZero() || s.Before(first)) {
			first = s
		}
	}
	return first, !first.IsZero()
}

// FirstDeliveredAfter is when the earliest successful attempt that
// started at or after t finished: when keys were delivered again.
func (p *Prober) FirstDeliveredAfter(t time.Time) (time.Time, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var first time.Time
	for i, s := range p.ok {
		if e := p.okEnd[i]; !s.Before(t) && (first.IsZero() || e.Before(first)) {
			first = e
		}
	}
	return first, !first.IsZero()
}

// Counts returns how many attempts finished and how many of them failed.
func (p *Prober) Counts() (attempts, failed int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.attempts, p.failed
}
