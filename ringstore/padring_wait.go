package ringstore

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
)

// This file holds the waits on a pad ring: a producer waiting for room,
// consumers waiting for pad, and a keeper waiting for either, without
// polling.
//
// The waiters of a ring share one channel, closed and forgotten when a
// change any of them asked for happens; a woken waiter looks again and,
// if it still has to wait, asks for a fresh channel. The hot paths pay one
// atomic load of armed while nobody waits: Append and Resync then wake
// everyone, Reserve and the tail's advance compare against the thresholds
// the waiters set. No wake-up is lost: a waiter arms (atomic stores) before
// it reads the cursors, and a mover stores its cursor before it reads
// armed, so under Go's sequentially consistent atomics at least one of them
// sees the other.

// PadWatch names the changes of a ring that close a Watch channel, besides
// those that always do: an Append, a Resync and Close. A zero field watches
// nothing.
type PadWatch struct {
	// StockBelow: a Reserve leaves fewer than this many bytes of stock
	// (appended, not reserved).
	StockBelow uint64
	// RoomAtLeast: the tail's advance (pad released and zeroised) leaves
	// room for at least this many bytes: Capacity - (Head - Tail).
	RoomAtLeast uint64
}

// padWaiters is the ring's side of Watch.
type padWaiters struct {
	armed       atomic.Bool   // ch is open: someone waits
	stockBelow  atomic.Uint64 // the largest StockBelow asked for; 0 none
	roomAtLeast atomic.Uint64 // the smallest RoomAtLeast asked for; 0 none

	mu sync.Mutex
	ch chan struct{} // nil while nobody waits
}

// closedChan is returned to a watcher whose condition holds already.
var closedChan = func() chan struct{} {
	c := make(chan struct{})
	close(c)
	return c
}()

// Watch returns a channel that is closed at the next change of the ring
// that w names, or that always counts (an Append, a Resync, Close), or at
// once if w's condition holds already or the ring is closed. Several
// goroutines may watch at once; a change that one of them asked for wakes
// them all, so a woken watcher checks what it waits for and watches again.
// A closed channel says only "look again".
func (r *PadRing) Watch(w PadWatch) <-chan struct{} {
	ws := &r.waiters
	ws.mu.Lock()
	if ws.ch == nil {
		ws.ch = make(chan struct{})
	}
	ch := ws.ch
	if w.StockBelow > ws.stockBelow.Load() {
		ws.stockBelow.Store(w.StockBelow)
	}
	if cur := ws.roomAtLeast.Load(); w.RoomAtLeast != 0 && (cur == 0 || w.RoomAtLeast < cur) {
		ws.roomAtLeast.Store(w.RoomAtLeast)
	}
	ws.armed.Store(true)
	ws.mu.Unlock()
	// After arming: a change from here on closes ch.
	if r.closed.Load() ||
		w.StockBelow != 0 && r.stock() < w.StockBelow ||
		w.RoomAtLeast != 0 && r.room() >= w.RoomAtLeast {
		return closedChan
	}
	return ch
}

// WaitStock waits until the ring holds at least n bytes of stock, and
// returns nil then; or ctx's error once ctx is done, or ErrClosed once the
// ring is closed. A stock of n does not promise that a Reserve of n
// succeeds: another consumer may be first.
func (r *PadRing) WaitStock(ctx context.Context, n uint64) error {
	for {
		ch := r.Watch(PadWatch{}) // stock rises only by Append or Resync
		if r.closed.Load() {
			return fmt.Errorf("pad ring %s: %w", r.cfg.Name, ErrClosed)
		}
		if r.stock() >= n {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// WaitRoom waits until a block of n bytes fits (Capacity - (Head - Tail)
// >= n), and returns nil then; or ctx's error once ctx is done, or
// ErrClosed once the ring is closed. It is for the ring's one producer,
// after Append returned ErrRingFull; n larger than Capacity never fits.
func (r *PadRing) WaitRoom(ctx context.Context, n uint64) error {
	for {
		ch := r.Watch(PadWatch{RoomAtLeast: max(n, 1)})
		if r.closed.Load() {
			return fmt.Errorf("pad ring %s: %w", r.cfg.Name, ErrClosed)
		}
		if r.room() >= n {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// stock is Stats().Stock without the seqlock: a waiter looks again after
// any Resync.
func (r *PadRing) stock() uint64 {
	h, res := r.head.Load(), r.reserved.Load()&^closedBit
	if h > res {
		return h - res
	}
	return 0
}

// room is the space free for appending. The tail is read first: read the
// other way round, an advance between the loads could make it look larger
// than the ring is.
func (r *PadRing) room() uint64 {
	t := r.tail.Load()
	h := r.head.Load()
	if h-t >= uint64(r.cfg.Capacity) {
		return 0
	}
	return uint64(r.cfg.Capacity) - (h - t)
}

// wake closes the waiters' channel, if any. Callers check armed first, so
// that nobody waiting costs one atomic load.
func (r *PadRing) wake() {
	ws := &r.waiters
	ws.mu.Lock()
	if ws.ch != nil {
		close(ws.ch)
		ws.ch = nil
	}
	ws.armed.Store(false)
	ws.stockBelow.Store(0)
	ws.roomAtLeast.Store(0)
	ws.mu.Unlock()
}

// wakeReserved wakes the waiters after a Reserve that left stock bytes of
// stock, if one asked to know.
func (r *PadRing) wakeReserved(stock uint64) {
	if r.waiters.armed.Load() && stock < r.waiters.stockBelow.Load() {
		r.wake()
	}
}

// wakeFreed wakes the waiters after the tail advanced, if one asked for
// the room there is now.
func (r *PadRing) wakeFreed() {
	if !r.waiters.armed.Load() {
		return
	}
	if w := r.waiters.roomAtLeast.Load(); w != 0 && r.room() >= w {
		r.wake()
	}
}
