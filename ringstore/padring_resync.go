package ringstore

import (
	"errors"
	"fmt"
	"hash/crc32"
	"log/slog"
	"runtime"
)

// ErrResyncBusy means a Resync that skips further than the ring can hold
// found reserved pad not yet released; nothing changed. The caller retries
// once its consumers have released their ranges.
var ErrResyncBusy = errors.New("pad ring busy: reserved pad not yet released")

// Resync moves the ring to the state both ends of its link agreed on
// (docs/kmlink.md section 6): no position below from is handed out again,
// and the ring's pad ends at to. It returns the bytes of pad it burnt:
// stock below from, and pad it held above to.
//
// It refuses, changing nothing, unless from >= Stats().Reserved (moving the
// cursor back would hand out used pad again), from <= to, and to <= Head
// or to == from (the ring cannot claim pad it does not hold; it can only
// skip to a position where both ends append next). Then:
//
//   - Stock in [Reserved, min(from, Head)) is burnt: it counts as reserved
//     and released, so the tail zeroises it by whole segments, like used
//     pad; it is never handed out.
//   - If to < Head, pad in [to, Head) is dropped: zeroised at once, with its
//     blocks removed from the directory and a block straddling to shortened.
//     The next Append lands at to.
//   - If to > Head (so to == from), the ring skips: positions [Head, to)
//     never hold pad, and count as released so the tail can pass them. A
//     skip reaching more than Capacity beyond the tail starts the ring afresh
//     at to, which needs every reserved range released; if some are not,
//     Resync returns an error wrapping ErrResyncBusy.
//
// Afterwards Stats().Stock is to - from. A durable ring records the new
// state with one cursor record before Resync returns (and raises its
// reservation mark to from before that, so a crash at any moment never
// hands out a position below from); after a crash the ring reopens either
// in its state before Resync or in the new one. (Block records that the
// cursor record does not name, new ones above the old head or old ones it
// dropped, may go in transactions of their own: see writeDir.) If writing
// the metadata fails, Resync returns the error with the ring unchanged,
// except that its mark may have been raised to from (which wastes pad,
// never reuses it).
//
// The caller must make sure that no Append and no Reserve runs during
// Resync (a link resynchronises before any key-bearing frame flows).
// Release of ranges reserved before may run concurrently and after.
func (r *PadRing) Resync(from, to uint64) (burnt uint64, err error) {
	r.resyncMu.Lock()
	defer r.resyncMu.Unlock()
	if r.cfg.Meta != nil {
		// Keeps the flusher from recording a half-moved ring.
		r.markMu.Lock()
		defer r.markMu.Unlock()
	}
	if r.closed.Load() {
		return 0, fmt.Errorf("pad ring %s: %w", r.cfg.Name, ErrClosed)
	}
	// While Resync holds the zeroing flag the tail and the release counters
	// are its own: releasers meanwhile count their bytes and leave the tail
	// to the holder, which looks again once it drops the flag.
	for !r.zeroing.CompareAndSwap(false, true) {
		runtime.Gosched()
	}
	p, err := r.planResync(from, to)
	if err == nil && r.cfg.Meta != nil {
		resyncStep("planned")
		err = r.persistResync(&p)
	}
	if err == nil {
		r.applyResync(&p)
	}
	r.zeroing.Store(false)
	r.advanceTail()
	if r.waiters.armed.Load() {
		r.wake() // the cursors moved: every waiter looks again
	}
	if err != nil {
		return 0, err
	}
	if r.cfg.Meta != nil {
		resyncStep("applied")
		r.syncResyncZeroes(&p)
	}
	return p.burntStock + p.dropped, nil
}

// resyncPlan is what a Resync does, worked out before anything changes.
type resyncPlan struct {
	from, to             uint64
	head, reserved, tail uint64 // the cursors before
	burntStock           uint64 // [reserved, min(from, head))
	dropped              uint64 // [to, head)
	skipped              uint64 // [head, to)
	rebase               bool   // a skip beyond the ring's laps: start afresh at to
	newTail              uint64 // with rebase
	blocks               []BlockInfo
	pending              []BlockInfo // durable mode: blocks not yet recorded
}

// planResync checks Resync's preconditions and works out its plan. The
// caller holds the zeroing flag.
func (r *PadRing) planResync(from, to uint64) (resyncPlan, error) {
	h, res, t := r.head.Load(), r.reserved.Load()&^closedBit, r.tail.Load()
	p := resyncPlan{from: from, to: to, head: h, reserved: res, tail: t}
	refuse := func(why string, a ...any) error {
		return fmt.Errorf("pad ring %s: refusing to resync to from %d, to %d: %s; nothing changed",
			r.cfg.Name, from, to, fmt.Sprintf(why, a...))
	}
	switch {
	case from < res:
		return p, refuse("from is below the reservation cursor %d, and pad below the cursor may have been handed out: moving the cursor back would hand it out again", res)
	case to < from:
		return p, refuse("to is below from; an agreement keeps [from, to)")
	case to > h && to != from:
		return p, refuse("to is beyond the head %d, so the ring would claim pad it does not hold; only a skip (to = from) may go beyond the head", h)
	}
	p.burntStock = min(from, h) - res
	switch {
	case to < h:
		p.dropped = h - to
	case to > h:
		p.skipped = to - h
		if to-t > uint64(r.cfg.Capacity) {
			// The release counters are indexed by position mod Capacity, so
			// the skipped positions cannot all be counted as released; the
			// ring starts afresh, which only a ring with nothing outstanding
			// can do.
			if n := r.unreleased(t, res); n > 0 {
				return p, fmt.Errorf("pad ring %s: resync to %d: %w: skipping from head %d reaches more than the capacity %d beyond the tail %d, and %d bytes reserved below %d are still out; retry once they are released",
					r.cfg.Name, to, ErrResyncBusy, h, r.cfg.Capacity, t, n, res)
			}
			p.rebase, p.newTail = true, to&^uint64(r.cfg.SegmentSize-1)
		}
	}
	r.dirMu.Lock()
	p.blocks = r.cutBlocks(r.blocks, &p)
	if r.cfg.Meta != nil {
		p.pending = r.cutBlocks(r.pendingBlocks, &p)
	}
	r.dirMu.Unlock()
	return p, nil
}

// unreleased is how many bytes in [t, res) are reserved and not released.
// The caller holds the zeroing flag, so the counters are those of the
// current lap and only grow meanwhile.
func (r *PadRing) unreleased(t, res uint64) uint64 {
	var done uint64
	for s := t; s < res; s += uint64(r.cfg.SegmentSize) {
		done += r.released[(s>>r.segLog)%uint64(len(r.released))].Load()
	}
	return res - t - min(done, res-t)
}

// cutBlocks returns a copy of the block list with the blocks at or above
// p.to removed and one straddling it shortened; a rebase leaves none.
func (r *PadRing) cutBlocks(list []BlockInfo, p *resyncPlan) []BlockInfo {
	if p.rebase {
		return nil // every block ends at or below the old head, below the new tail
	}
	out := make([]BlockInfo, 0, len(list))
	for _, b := range list {
		if b.Pos >= p.to {
			continue
		}
		if b.Pos+uint64(b.Size) > p.to {
			b.Size = int(p.to - b.Pos)
			if r.cfg.Meta != nil {
				b.CRC = r.viewCRC(b.Pos, p.to, p.tail)
			}
		}
		out = append(out, b)
	}
	return out
}

// viewCRC is the CRC-32C of positions [pos, end) as the ring holds them,
// with positions below tail (zeroised) as zero. A restart checks only
// blocks at or above the mark, which lies at or above the tail, so for
// those it is the checksum of their pad.
func (r *PadRing) viewCRC(pos, end, tail uint64) uint32 {
	var zeros [4096]byte
	crc := uint32(0)
	for pos < min(tail, end) {
		n := min(min(tail, end)-pos, uint64(len(zeros)))
		crc = crc32.Update(crc, crcTable, zeros[:n])
		pos += n
	}
	if pos < end {
		at := pos & r.mask
		crc = crc32.Update(crc, crcTable, r.buf[at:at+end-pos])
	}
	return crc
}

// persistResync records the plan in the metadata store. The caller holds
// markMu and the zeroing flag; nothing in memory has changed yet, so the
// ring file still agrees with the old records until this commits. That is
// why pad is zeroised only after: a crash before the commit must find the
// old blocks' bytes intact, or the restart's checksum check would fail.
func (r *PadRing) persistResync(p *resyncPlan) error {
	if p.from > r.mark.Load() {
		// First the mark alone, so that even a crash before the new state is
		// recorded never hands out a position below from.
		if err := r.writeState(p.from, r.persistedHead, r.persistedTail, false, nil, nil); err != nil {
			return err
		}
		resyncStep("marked")
	}
	recTail := p.tail
	if p.rebase {
		// The old zeroes need no sync: the whole file is zeroised and synced
		// after the commit.
		recTail = p.newTail
	} else {
		// As a flush: recorded blocks' bytes are on disk, and the recorded
		// tail is not ahead of zeroes on disk.
		if err := r.syncRange(r.persistedHead, min(p.head, p.to)); err != nil {
			return fmt.Errorf("pad ring %s: resync: syncing appended pad: %w", r.cfg.Name, err)
		}
		if err := r.syncRange(r.persistedTail, p.tail); err != nil {
			return fmt.Errorf("pad ring %s: resync: syncing zeroised pad: %w", r.cfg.Name, err)
		}
	}

	resyncStep("synced")

	// The records after the commit: the blocks of the new directory that
	// end above the recorded tail. Of those, only what differs from the
	// store is written (both lists are in order of position): pending
	// blocks, their bytes now synced, go before the cursor record, being at
	// or above the recorded head; a recorded block cut at to goes with it.
	// Recorded blocks the new directory does not keep are deleted after it:
	// they lie below the new tail, or at or above the new head.
	var keep, gone []blockSpan
	var add, cut []BlockInfo
	rec := r.persistedBlocks
	j := 0
	for _, b := range p.blocks {
		end := b.Pos + uint64(b.Size)
		for j < len(rec) && rec[j].pos < b.Pos {
			gone = append(gone, rec[j])
			j++
		}
		recorded := j < len(rec) && rec[j].pos == b.Pos
		var recEnd uint64
		if recorded {
			recEnd = rec[j].end
			j++
		}
		switch {
		case end <= recTail:
			if recorded {
				gone = append(gone, blockSpan{b.Pos, recEnd})
			}
			continue
		case !recorded:
			add = append(add, b)
		case recEnd != end:
			cut = append(cut, b)
		}
		keep = append(keep, blockSpan{b.Pos, end})
	}
	gone = append(gone, rec[j:]...)
	st := padState{
		capacity: uint64(r.cfg.Capacity), segment: uint64(r.cfg.SegmentSize),
		head: p.to, mark: max(r.mark.Load(), p.from), tail: recTail,
		reservedAtPersist: p.from,
	}
	if err := r.writeDir(st, add, cut, gone); err != nil {
		return fmt.Errorf("pad ring %s: persisting resync to from %d, to %d: %w", r.cfg.Name, p.from, p.to, err)
	}
	r.statMarkWrites.Add(1)
	if st.mark > r.mark.Load() {
		r.mark.Store(st.mark)
	}
	r.persistedHead, r.persistedTail = p.to, recTail
	r.syncedHead.Store(p.to)
	r.persistedBlocks = keep
	p.pending = nil // all recorded
	resyncStep("committed")
	return nil
}

// testHookResync, if set, is called at each step of a durable Resync, so
// that a crash test can kill the process there.
var testHookResync func(step string)

func resyncStep(step string) {
	if testHookResync != nil {
		testHookResync(step)
	}
}

// applyResync moves the ring in memory. The caller holds the zeroing flag
// (and markMu in durable mode).
func (r *PadRing) applyResync(p *resyncPlan) {
	if p.rebase {
		clear(r.buf[:r.cfg.Capacity])
		for i := range r.released {
			r.released[i].Store(0)
		}
	} else {
		// Consumers hold ranges only in [tail, reserved); these are other
		// cells, since head - tail <= Capacity before and after.
		if p.dropped > 0 {
			at := p.to & r.mask
			clear(r.buf[at : at+p.dropped])
		}
		if p.skipped > 0 { // they held nothing since the tail passed; but stale pad after a crash
			at := p.head & r.mask
			clear(r.buf[at : at+p.skipped])
		}
	}
	r.dirMu.Lock()
	r.blocks = p.blocks
	if r.cfg.Meta != nil {
		r.pendingBlocks = p.pending
	}
	r.dirMu.Unlock()

	r.resyncSeq.Add(1) // odd: Stats waits
	if p.rebase {
		r.tail.Store(p.newTail)
	}
	r.head.Store(p.to)
	r.reserved.Store(p.from) // == to when skipping
	r.statBurnt.Add(p.burntStock + p.dropped)
	r.statSkipped.Add(p.skipped)
	r.statMoved.Add(p.burntStock + p.skipped)
	r.resyncSeq.Add(1)

	if p.rebase {
		r.statZeroised.Add(p.head - p.tail)
		r.release(p.newTail, p.to-p.newTail)
	} else {
		r.statZeroised.Add(p.dropped)
		r.release(p.reserved, p.from-p.reserved) // burnt and skipped
	}
}

// syncResyncZeroes writes the pad Resync zeroised to the ring file. Only a
// power failure can lose it meanwhile: the kernel writes the pages back
// even after the process dies. The state is recorded already, so a failure
// is logged, not returned.
func (r *PadRing) syncResyncZeroes(p *resyncPlan) {
	var err error
	if p.rebase {
		err = r.mem.Sync(0, r.cfg.Capacity)
	} else {
		err = r.syncRange(min(p.head, p.to), max(p.head, p.to))
	}
	if err != nil {
		slog.Error("pad ring resync: syncing zeroised pad failed; the zeroes reach the disk on the next write-back", "ring", r.cfg.Name, "err", err)
	}
}
