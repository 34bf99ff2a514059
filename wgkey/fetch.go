package wgkey

import (
	"context"
	"errors"
	"sync"
	"time"
)

// errNotThere is why a key is missing when its fetch had not returned at
// the boundary.
var errNotThere = errors.New("key not there at the epoch boundary")

// fetchBatch is the keys of one epoch for the tunnels of one group, fetched
// in parallel so that one slow stream delays no other. Whatever has arrived
// at the boundary is taken; a key arriving later is zeroised on arrival.
type fetchBatch struct {
	cancel context.CancelFunc
	slots  []fetchSlot
	done   chan struct{} // closed when every fetch has returned
}

type fetchSlot struct {
	mu       sync.Mutex
	key      Key
	err      error
	returned bool // Source.Key has returned
	taken    bool // collected or discarded: a later result is not wanted
}

// startFetch asks every tunnel's source for index n from the time from on
// (on the clock now), each call ending at the time until (the boundary),
// and returns at once.
func startFetch(ctx context.Context, now func() time.Time, tunnels []*tunnel, n uint64, from, until time.Time) *fetchBatch {
	fctx, cancel := context.WithTimeout(ctx, until.Sub(now()))
	b := &fetchBatch{cancel: cancel, slots: make([]fetchSlot, len(tunnels)), done: make(chan struct{})}
	var wg sync.WaitGroup
	for i, t := range tunnels {
		wg.Go(func() {
			if !sleepUntil(fctx, now, from) {
				return
			}
			k, err := t.Source.Key(fctx, n)
			s := &b.slots[i]
			s.mu.Lock()
			if !s.taken {
				s.key, s.err, s.returned = k, err, true
			}
			s.mu.Unlock()
			clear(k[:])
		})
	}
	go func() { wg.Wait(); close(b.done) }()
	return b
}

// wait blocks until every fetch has returned, or until timeout or ctx ends.
func (b *fetchBatch) wait(ctx context.Context, timeout time.Duration) {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-b.done:
	case <-t.C:
	case <-ctx.Done():
	}
}

// take returns tunnel i's key, or why there is none. The caller clears the
// key once written.
func (b *fetchBatch) take(i int) (Key, error) {
	s := &b.slots[i]
	s.mu.Lock()
	defer s.mu.Unlock()
	s.taken = true
	k, err := s.key, s.err
	clear(s.key[:])
	switch {
	case !s.returned:
		return Key{}, errNotThere
	case err != nil:
		return Key{}, err
	}
	return k, nil
}

// discard cancels what is still running and zeroises what was not taken.
func (b *fetchBatch) discard() {
	b.cancel()
	for i := range b.slots {
		s := &b.slots[i]
		s.mu.Lock()
		s.taken = true
		clear(s.key[:])
		s.mu.Unlock()
	}
}
