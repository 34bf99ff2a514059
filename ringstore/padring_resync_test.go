package ringstore

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/qrelay/qrelay/ringstore/internal/meta"
)

// Resync tests tell pad appended at the same position at different times
// apart: a block's bytes depend on its position and a salt named in its ID,
// so a range can be checked against the directory that says which block
// holds each of its bytes.

func saltByte(p, salt uint64) byte { return padByte(p^salt*0x9e3779b97f4a7c15) | 1 }

func saltBlock(pos uint64, n int, salt uint64) Block {
	b := make([]byte, n)
	for i := range b {
		b[i] = saltByte(pos+uint64(i), salt)
	}
	return Block{ID: fmt.Sprintf("blk-%d-s%d", pos, salt), Source: "sim-a", Data: b}
}

func blockSalt(t testing.TB, b BlockInfo) uint64 {
	t.Helper()
	var pos, salt uint64
	if _, err := fmt.Sscanf(b.ID, "blk-%d-s%d", &pos, &salt); err != nil || pos != b.Pos {
		t.Fatalf("block %+v: ID does not name its position and salt (%v)", b, err)
	}
	return salt
}

// checkAgainstBlocks checks every byte of rg against the block the
// directory says holds it.
func checkAgainstBlocks(t testing.TB, blocks []BlockInfo, rg Range) {
	t.Helper()
	end := rg.Pos + uint64(len(rg.Bytes))
	p := rg.Pos
	for _, b := range blocks {
		bEnd := b.Pos + uint64(b.Size)
		if bEnd <= p || b.Pos >= end {
			continue
		}
		if b.Pos > p {
			t.Fatalf("range [%d, %d): positions [%d, %d) are in no block of the directory", rg.Pos, end, p, b.Pos)
		}
		salt := blockSalt(t, b)
		for ; p < min(bEnd, end); p++ {
			if got, want := rg.Bytes[p-rg.Pos], saltByte(p, salt); got != want {
				t.Fatalf("range [%d, %d): byte at %d is %#x, want %#x of block %q", rg.Pos, end, p, got, want, b.ID)
			}
		}
	}
	if p < end {
		t.Fatalf("range [%d, %d): positions [%d, %d) are in no block of the directory", rg.Pos, end, p, end)
	}
}

// checkZeroOutside checks that every byte of the ring's memory outside
// [tail, head) is zero: released pad the tail passed, dropped pad and
// skipped positions alike.
func checkZeroOutside(t testing.TB, r *PadRing) {
	t.Helper()
	s := r.Stats()
	c := uint64(r.cfg.Capacity)
	if s.Head-s.Tail > c {
		t.Fatalf("head %d is more than the capacity %d beyond the tail %d", s.Head, c, s.Tail)
	}
	at, n := s.Head&r.mask, c-(s.Head-s.Tail) // [head, tail+capacity), mirrored
	if i := bytes.IndexFunc(r.buf[at:at+n], func(rn rune) bool { return rn != 0 }); i >= 0 {
		t.Fatalf("memory of position %d (outside [tail %d, head %d)) is not zeroised", s.Head+uint64(i), s.Tail, s.Head)
	}
}

// abandon stops a durable ring as SIGKILL would, leaving its metadata as
// last persisted and its file as the kernel holds it.
func abandon(r *PadRing) {
	r.closed.Store(true)
	close(r.flushStop)
	r.flushDone.Wait()
	r.mem.Close()
}

type span struct{ pos, size uint64 }

func spansOf(blocks []BlockInfo) []span {
	var out []span
	for _, b := range blocks {
		out = append(out, span{b.Pos, uint64(b.Size)})
	}
	return out
}

const (
	rsCapacity = 1 << 16
	rsSegment  = 1 << 12
	rsBatch    = 1 << 12
)

// resyncFixture is a ring holding blocks [0, 20000) and [20000, 40000),
// with [0, 5000) reserved and not released.
type resyncFixture struct {
	r    *PadRing
	held Range
	dir  string
	db   *meta.DB
}

// resyncModes: memory mode, and durable mode with the blocks still
// pending (appended since the last flush) or recorded by a flush.
var resyncModes = []struct {
	name             string
	durable, flushed bool
}{{"memory", false, false}, {"durable", true, false}, {"durable-flushed", true, true}}

func newResyncFixture(t *testing.T, durable, flushed bool) *resyncFixture {
	t.Helper()
	f := &resyncFixture{}
	if durable {
		f.dir = t.TempDir()
		f.db = openMeta(t, f.dir)
		t.Cleanup(func() { f.db.Close() })
		f.r = f.open(t)
	} else {
		f.r = memRing(t, rsCapacity, rsSegment)
	}
	for _, pos := range []uint64{0, 20000} {
		if err := f.r.Append(saltBlock(pos, 20000, 1)); err != nil {
			t.Fatal(err)
		}
	}
	var err error
	if f.held, err = f.r.Reserve(5000); err != nil {
		t.Fatal(err)
	}
	checkAgainstBlocks(t, f.r.Blocks(), f.held)
	if flushed {
		f.r.markMu.Lock()
		err = f.r.persist(f.r.mark.Load(), persistFlush)
		f.r.markMu.Unlock()
		if err != nil {
			t.Fatal(err)
		}
		if len(f.r.persistedBlocks) != 2 || len(f.r.pendingBlocks) != 0 {
			t.Fatalf("after a flush: %d blocks recorded, %d pending; want 2 and 0", len(f.r.persistedBlocks), len(f.r.pendingBlocks))
		}
	}
	return f
}

func (f *resyncFixture) open(t *testing.T) *PadRing {
	t.Helper()
	r, err := durableRing(t, f.dir, f.db, rsCapacity, rsSegment, rsBatch)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// expectedTail is where the tail settles once everything below released
// is released: the last segment boundary it may pass, never beyond head.
func expectedTail(from, released, head uint64) uint64 {
	t := from
	for t+rsSegment <= released && t+rsSegment <= head {
		t += rsSegment
	}
	return t
}

func TestPadRingResync(t *testing.T) {
	cases := []struct {
		name         string
		releaseFirst bool // release [0, 5000) before Resync
		from, to     uint64
		burnt        uint64
		skipped      uint64
		blocks       []span // directory after Resync, before the tail moves
		rebase       bool
	}{
		{name: "burn stock only", from: 12000, to: 40000, burnt: 7000,
			blocks: []span{{0, 20000}, {20000, 20000}}},
		{name: "nothing to do", from: 5000, to: 40000,
			blocks: []span{{0, 20000}, {20000, 20000}}},
		{name: "truncate at a block boundary", from: 5000, to: 20000, burnt: 20000,
			blocks: []span{{0, 20000}}},
		{name: "truncate through a block", from: 5000, to: 30000, burnt: 10000,
			blocks: []span{{0, 20000}, {20000, 10000}}},
		{name: "burn and truncate", from: 12000, to: 25000, burnt: 7000 + 15000,
			blocks: []span{{0, 20000}, {20000, 5000}}},
		{name: "burn everything through a block", from: 15000, to: 15000, burnt: 10000 + 25000,
			blocks: []span{{0, 15000}}},
		{name: "skip within capacity, range outstanding", from: 50000, to: 50000, burnt: 35000, skipped: 10000,
			blocks: []span{{0, 20000}, {20000, 20000}}},
		{name: "skip to the capacity, range outstanding", from: rsCapacity, to: rsCapacity, burnt: 35000, skipped: rsCapacity - 40000,
			blocks: []span{{0, 20000}, {20000, 20000}}},
		{name: "skip beyond capacity, quiescent", releaseFirst: true, from: 200000, to: 200000, burnt: 35000, skipped: 160000, rebase: true},
		{name: "skip far beyond capacity, quiescent", releaseFirst: true, from: 1<<40 + 123, to: 1<<40 + 123, burnt: 35000, skipped: 1<<40 + 123 - 40000, rebase: true},
	}
	for _, m := range resyncModes {
		for _, c := range cases {
			durable := m.durable
			t.Run(m.name+"/"+c.name, func(t *testing.T) {
				f := newResyncFixture(t, m.durable, m.flushed)
				r := f.r
				if c.releaseFirst {
					r.Release(f.held)
				}
				before := r.Stats()
				burnt, err := r.Resync(c.from, c.to)
				if err != nil {
					t.Fatal(err)
				}
				s := r.Stats()
				if burnt != c.burnt || s.Burnt != c.burnt || s.Skipped != c.skipped {
					t.Errorf("burnt %d, Stats Burnt %d, Skipped %d; want %d, %d, %d", burnt, s.Burnt, s.Skipped, c.burnt, c.burnt, c.skipped)
				}
				if s.Head != c.to || s.Reserved != c.from || s.Stock != c.to-c.from {
					t.Errorf("after Resync(%d, %d): %+v; want head %d, reserved %d, stock %d", c.from, c.to, s, c.to, c.from, c.to-c.from)
				}
				if s.Appended != before.Appended || s.ReservedBytes != before.ReservedBytes {
					t.Errorf("Resync changed Appended %d -> %d or ReservedBytes %d -> %d; they count Append and Reserve only", before.Appended, s.Appended, before.ReservedBytes, s.ReservedBytes)
				}
				if got := spansOf(r.Blocks()); fmt.Sprint(got) != fmt.Sprint(c.blocks) && !(c.rebase && got == nil) {
					t.Errorf("blocks after Resync: %v, want %v", got, c.blocks)
				}
				if c.rebase && (s.Tail != c.to&^(rsSegment-1) || r.Blocks() != nil) {
					t.Errorf("after a skip beyond the capacity: %+v, blocks %v; want the tail at %d and no blocks", s, r.Blocks(), c.to&^(rsSegment-1))
				}
				checkZeroOutside(t, r)
				if !c.releaseFirst {
					r.Release(f.held)
				}
				// Everything below from is released now; the tail passes all
				// of it that whole segments below the head allow.
				s = r.Stats()
				wantTail := expectedTail(0, c.from, c.to)
				if c.rebase {
					wantTail = c.to &^ (rsSegment - 1)
				}
				if s.Tail != wantTail {
					t.Errorf("tail %d once all is released, want %d", s.Tail, wantTail)
				}
				checkZeroOutside(t, r)

				if durable {
					// A clean stop and a crash both reopen in the new state.
					r = reopenAfter(t, f, r, c.from, c.to, c.blocks)
				}

				// The next block lands at to, and a reservation reads the kept
				// pad and then the new block's bytes, never the dropped ones.
				if err := r.Append(saltBlock(c.to, 8192, 2)); err != nil {
					t.Fatal(err)
				}
				blocks := r.Blocks()
				if last := blocks[len(blocks)-1]; last.Pos != c.to || last.Size != 8192 {
					t.Fatalf("appended block is at %d (%d bytes), want %d", last.Pos, last.Size, c.to)
				}
				rg, err := r.Reserve(int(c.to - c.from + 8192))
				if err != nil {
					t.Fatal(err)
				}
				if rg.Pos != c.from {
					t.Fatalf("first reservation after Resync at %d, want %d", rg.Pos, c.from)
				}
				checkAgainstBlocks(t, blocks, rg)
				if got := rg.Bytes[c.to-c.from]; got != saltByte(c.to, 2) {
					t.Fatalf("byte at to is %#x, want %#x of the new block", got, saltByte(c.to, 2))
				}
				r.Release(rg)
				checkZeroOutside(t, r)
			})
		}
	}
}

// reopenAfter stops the ring cleanly and reopens it, then crashes it and
// reopens it, checking each time the state Resync(from, to) left; it
// returns the reopened ring.
func reopenAfter(t *testing.T, f *resyncFixture, r *PadRing, from, to uint64, blocks []span) *PadRing {
	t.Helper()
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	r = f.open(t)
	s := r.Stats()
	if s.Head != to || s.Reserved != from || s.Burnt != 0 || s.Skipped != 0 {
		t.Fatalf("reopened after Resync(%d, %d) and Close: %+v; want head %d, reserved %d, fresh counters", from, to, s, to, from)
	}
	checkBlocksAbove(t, r, blocks)
	checkZeroOutside(t, r)
	abandon(r)
	r = f.open(t)
	s = r.Stats()
	// After a crash the ring resumes at its mark, the clean stop's cursor.
	if s.Head != to || s.Reserved != from {
		t.Fatalf("reopened after Resync(%d, %d) and a crash: %+v; want head %d, reserved %d", from, to, s, to, from)
	}
	checkBlocksAbove(t, r, blocks)
	return r
}

// checkBlocksAbove checks the reopened directory is the expected one less
// the blocks the tail has passed.
func checkBlocksAbove(t *testing.T, r *PadRing, want []span) {
	t.Helper()
	tail := r.Stats().Tail
	var w []span
	for _, b := range want {
		if b.pos+b.size > tail {
			w = append(w, b)
		}
	}
	if got := spansOf(r.Blocks()); fmt.Sprint(got) != fmt.Sprint(w) {
		t.Fatalf("reopened directory %v, want %v (tail %d)", got, w, tail)
	}
}

// TestPadRingResyncRefused checks every precondition, and a skip too far
// while a range is out, refuse with an error that names the ring, the
// values and the reason, and change nothing: cursors, counters, directory,
// memory and, in durable mode, the metadata.
func TestPadRingResyncRefused(t *testing.T) {
	cases := []struct {
		name     string
		from, to uint64
		is       error
		want     []string
	}{
		{"from below the cursor", 4999, 40000, nil, []string{"from 4999, to 40000", "below the reservation cursor 5000", "hand it out again"}},
		{"from far below the cursor", 0, 0, nil, []string{"from 0, to 0", "below the reservation cursor 5000"}},
		{"to below from", 10000, 9999, nil, []string{"from 10000, to 9999", "to is below from"}},
		{"to beyond the head", 10000, 40001, nil, []string{"from 10000, to 40001", "beyond the head 40000", "does not hold"}},
		{"to far beyond the head", 5000, 1 << 40, nil, []string{"beyond the head 40000"}},
		{"skip beyond capacity with a range out", 200000, 200000, ErrResyncBusy, []string{"resync to 200000", "capacity 65536 beyond the tail 0", "5000 bytes reserved below 5000 are still out", "retry"}},
	}
	for _, m := range resyncModes {
		for _, c := range cases {
			durable := m.durable
			t.Run(m.name+"/"+c.name, func(t *testing.T) {
				f := newResyncFixture(t, m.durable, m.flushed)
				r := f.r
				before, blocks := r.Stats(), r.Blocks()
				mem := bytes.Clone(r.buf[:rsCapacity])
				var state []byte
				if durable {
					var err error
					if state, err = f.db.Get(r.stateKey()); err != nil {
						t.Fatal(err)
					}
				}
				burnt, err := r.Resync(c.from, c.to)
				if err == nil {
					t.Fatalf("Resync(%d, %d) accepted", c.from, c.to)
				}
				if c.is != nil && !errors.Is(err, c.is) {
					t.Errorf("error %q does not wrap %q", err, c.is)
				}
				if c.is == nil && errors.Is(err, ErrResyncBusy) {
					t.Errorf("error %q says busy: retrying would not help", err)
				}
				for _, w := range append(c.want, "pad ring "+r.Name()+":") {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q does not say %q", err, w)
					}
				}
				if burnt != 0 {
					t.Errorf("refused Resync says it burnt %d bytes", burnt)
				}
				if after := r.Stats(); after != before {
					t.Errorf("stats changed:\n%+v\n%+v", before, after)
				}
				if fmt.Sprint(r.Blocks()) != fmt.Sprint(blocks) {
					t.Errorf("blocks changed: %v, was %v", r.Blocks(), blocks)
				}
				if !bytes.Equal(r.buf[:rsCapacity], mem) {
					t.Error("memory changed")
				}
				if durable {
					if now, err := f.db.Get(r.stateKey()); err != nil || !bytes.Equal(now, state) {
						t.Errorf("cursor record changed (%v)", err)
					}
				}
				// Once the range is released, a retried skip goes through.
				if c.is != nil {
					r.Release(f.held)
					if _, err := r.Resync(c.from, c.to); err != nil {
						t.Fatalf("retry after releasing: %v", err)
					}
				}
			})
		}
	}
	t.Run("closed", func(t *testing.T) {
		r := memRing(t, rsCapacity, rsSegment)
		r.Close()
		if _, err := r.Resync(0, 0); !errors.Is(err, ErrClosed) {
			t.Fatalf("Resync on a closed ring: %v, want ErrClosed", err)
		}
	})
}

// TestPadRingResyncReleaseRaces releases ranges from other goroutines while
// Resync burns and skips, under the race detector: every byte of the
// ranges must still be counted, so the tail passes all of them.
func TestPadRingResyncReleaseRaces(t *testing.T) {
	for range 20 {
		r := memRing(t, rsCapacity, rsSegment)
		if err := r.Append(saltBlock(0, 40000, 1)); err != nil {
			t.Fatal(err)
		}
		var rgs []Range
		for range 8 {
			rg, err := r.Reserve(1000)
			if err != nil {
				t.Fatal(err)
			}
			rgs = append(rgs, rg)
		}
		done := make(chan struct{})
		go func() {
			defer close(done)
			for _, rg := range rgs {
				r.Release(rg)
			}
		}()
		if _, err := r.Resync(60000, 60000); err != nil {
			t.Fatal(err)
		}
		<-done
		if s := r.Stats(); s.Tail != 57344 {
			t.Fatalf("after concurrent releases: %+v; want the tail at 57344", s)
		}
		checkZeroOutside(t, r)
		r.Close()
	}
}
