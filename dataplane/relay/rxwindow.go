package relay

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"

	"github.com/qrelay/qrelay/ringstore"
)

// rxWindow hands out the receive pad of one link direction by position, so
// that frames from parallel streams may arrive in any order, and refuses any
// position that has been handed out before (a replay).
//
// Below the cursor every byte has been reserved from the ring: either
// consumed by a frame, or held in a gap, a run skipped by a frame that
// arrived ahead of its predecessors. A frame below the cursor is accepted
// only if it lies wholly inside one gap; anything else has been consumed
// already. Gaps whose frames can no longer come (their connection ended) are
// burnt with dropGaps, and a window never holds more than maxGap bytes of
// gaps: beyond that the oldest are burnt, so a peer cannot pin the ring.
type rxWindow struct {
	ring   *ringstore.PadRing
	cap    uint64
	maxGap uint64

	mu sync.Mutex
	// sess is the session whose frames may take pad; nil while the link
	// synchronises, so that a frame of an ended connection cannot take pad
	// the agreement is about to burn.
	sess    *session
	cursor  uint64
	gaps    []ringstore.Range // sorted by Pos, disjoint, all below cursor
	gapSize uint64
	// pending is pad the peer may already use but this end has not appended
	// yet (an assignment awaiting its acknowledgement); a frame reaching
	// into it waits for the pad rather than being refused.
	pending uint64
	arrived chan struct{} // closed and replaced when pad is appended
	// burn, if set, is told of each gap burnt before it is released.
	burn func(ringstore.Range)
}

var (
	errReplay = errors.New("pad already consumed (replayed or duplicated frame)")
	errBeyond = errors.New("pad position beyond what this end holds")
	errClosed = errors.New("the frame's connection is no longer the link's")
)

func newRxWindow(ring *ringstore.PadRing, maxGap uint64) *rxWindow {
	st := ring.Stats()
	return &rxWindow{ring: ring, cap: uint64(st.Capacity), maxGap: maxGap, cursor: st.Reserved, arrived: make(chan struct{})}
}

// notify wakes frames waiting for pad; the supplier calls it after appending.
func (w *rxWindow) notify() {
	w.mu.Lock()
	close(w.arrived)
	w.arrived = make(chan struct{})
	w.mu.Unlock()
}

// addPending adds n (which may be negative) to the announced pad that has
// yet to arrive, and wakes waiting frames to look again.
func (w *rxWindow) addPending(n int64) {
	w.mu.Lock()
	w.pending = uint64(int64(w.pending) + n)
	close(w.arrived)
	w.arrived = make(chan struct{})
	w.mu.Unlock()
}

// open lets frames of session s take pad; close stops every session.
func (w *rxWindow) open(s *session) {
	w.mu.Lock()
	w.sess = s
	w.mu.Unlock()
}

func (w *rxWindow) close() {
	w.mu.Lock()
	w.sess = nil
	close(w.arrived) // wake waiting frames, which then find their session gone
	w.arrived = make(chan struct{})
	w.mu.Unlock()
}

// state is the window's used cursor and the ring's head, for SYNC.
func (w *rxWindow) state() (used, head uint64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.cursor, w.ring.Stats().Head
}

// resync moves the window and its ring to the agreement (from, to): the
// gaps are burnt, the cursor moves to from, and nothing is announced. The
// caller has closed the window. It returns the bytes burnt.
func (w *rxWindow) resync(from, to uint64) (uint64, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	burnt := w.gapSize
	for _, g := range w.gaps {
		w.burnGap(g)
	}
	w.gaps, w.gapSize = nil, 0
	n, err := resyncRing(w.ring, from, to)
	if err != nil {
		return burnt, err
	}
	w.cursor, w.pending = from, 0
	return burnt + n, nil
}

// take consumes the pad [pos, pos+n) for a frame of session s and returns
// it; the caller releases it to the ring once used. It waits (until ctx
// ends) only for pad that has been announced but not yet appended.
func (w *rxWindow) take(ctx context.Context, s *session, pos uint64, n int) (ringstore.Range, error) {
	end := pos + uint64(n)
	if end < pos {
		return ringstore.Range{}, fmt.Errorf("pad range at %d+%d overflows: %w", pos, n, errBeyond)
	}
	for {
		w.mu.Lock()
		if w.sess != s {
			w.mu.Unlock()
			return ringstore.Range{}, errClosed
		}
		if pos < w.cursor {
			rg, err := w.fromGap(pos, end)
			w.mu.Unlock()
			return rg, err
		}
		if end-w.cursor > w.cap {
			w.mu.Unlock()
			return ringstore.Range{}, fmt.Errorf("pad %d..%d: more than the ring holds (cursor %d): %w", pos, end, w.cursor, errBeyond)
		}
		rg, err := w.ring.Reserve(int(end - w.cursor))
		if err == nil {
			if rg.Pos != w.cursor {
				w.mu.Unlock()
				return ringstore.Range{}, fmt.Errorf("pad ring %s reserved at %d, window expected %d: the ring has another consumer", w.ring.Name(), rg.Pos, w.cursor)
			}
			w.cursor = end
			if pos > rg.Pos {
				w.addGap(sub(rg, rg.Pos, pos))
			}
			w.mu.Unlock()
			return sub(rg, pos, end), nil
		}
		if !errors.Is(err, ringstore.ErrPadShort) {
			w.mu.Unlock()
			return ringstore.Range{}, err
		}
		head := w.ring.Stats().Head
		if end > head+w.pending {
			w.mu.Unlock()
			return ringstore.Range{}, fmt.Errorf("pad %d..%d, this end holds up to %d (+%d announced): %w", pos, end, head, w.pending, errBeyond)
		}
		ch := w.arrived
		w.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return ringstore.Range{}, fmt.Errorf("waiting for announced pad %d..%d: %w", pos, end, ctx.Err())
		}
	}
}

// fromGap cuts [pos,end) out of the gap holding it. Called with mu held.
func (w *rxWindow) fromGap(pos, end uint64) (ringstore.Range, error) {
	i := sort.Search(len(w.gaps), func(i int) bool { return w.gaps[i].Pos+uint64(len(w.gaps[i].Bytes)) > pos })
	if i == len(w.gaps) || w.gaps[i].Pos > pos || end > w.gaps[i].Pos+uint64(len(w.gaps[i].Bytes)) {
		return ringstore.Range{}, fmt.Errorf("pad %d..%d: %w", pos, end, errReplay)
	}
	g := w.gaps[i]
	gEnd := g.Pos + uint64(len(g.Bytes))
	var keep []ringstore.Range
	if pos > g.Pos {
		keep = append(keep, sub(g, g.Pos, pos))
	}
	if end < gEnd {
		keep = append(keep, sub(g, end, gEnd))
	}
	w.gaps = append(w.gaps[:i], append(keep, w.gaps[i+1:]...)...)
	w.gapSize -= end - pos
	return sub(g, pos, end), nil
}

// addGap records a skipped run, burning the oldest gaps beyond maxGap.
// Called with mu held.
func (w *rxWindow) addGap(g ringstore.Range) {
	w.gaps = append(w.gaps, g) // g lies above every existing gap
	w.gapSize += uint64(len(g.Bytes))
	for w.gapSize > w.maxGap && len(w.gaps) > 0 {
		w.gapSize -= uint64(len(w.gaps[0].Bytes))
		w.burnGap(w.gaps[0])
		w.gaps = w.gaps[1:]
	}
}

// dropGaps burns every gap: their frames were in flight on a connection
// that has ended and can no longer arrive. It returns the bytes burnt.
func (w *rxWindow) dropGaps() uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := w.gapSize
	for _, g := range w.gaps {
		w.burnGap(g)
	}
	w.gaps, w.gapSize = nil, 0
	return n
}

// burnGap records and releases a gap whose frame will never come.
func (w *rxWindow) burnGap(g ringstore.Range) {
	if w.burn != nil {
		w.burn(g)
	}
	w.ring.Release(g)
}

// sub is the part [from, to) of rg.
func sub(rg ringstore.Range, from, to uint64) ringstore.Range {
	return ringstore.Range{Pos: from, Bytes: rg.Bytes[from-rg.Pos : to-rg.Pos : to-rg.Pos]}
}
