package ringstore

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/qrelay/qrelay/internal/race"
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

// ringModel is the obvious reference for a pad ring: cursors, a flag per
// position (mod capacity) for released pad, and the directory with each
// block's salt, so it knows every byte the ring should hold.
type ringModel struct {
	capacity, seg        uint64
	head, reserved, tail uint64
	noBelow              uint64 // nothing may be handed out below: the end of all handed out, every from
	blocks               []BlockInfo
	released             []bool
	held                 []Range
	appended, reservedB  uint64
	burnt, skipped       int
	rebases              int
}

func (m *ringModel) release(pos, n uint64) {
	for p := pos; p < pos+n; p++ {
		m.released[p%m.capacity] = true
	}
}

// advance moves the tail over every whole released segment below the head.
func (m *ringModel) advance() {
	for m.tail+m.seg <= m.head && !slices.Contains(m.released[m.tail%m.capacity:m.tail%m.capacity+m.seg], false) {
		clear(m.released[m.tail%m.capacity : m.tail%m.capacity+m.seg])
		m.tail += m.seg
	}
	m.trim()
}

func (m *ringModel) trim() {
	m.blocks = slices.DeleteFunc(m.blocks, func(b BlockInfo) bool { return b.Pos+uint64(b.Size) <= m.tail })
}

// resync is what Resync(from, to) should do: an error, if it should refuse
// (busy when it wraps ErrResyncBusy), or the bytes burnt.
func (m *ringModel) resync(from, to uint64) (uint64, error) {
	switch {
	case from < m.reserved || to < from || to > m.head && to != from:
		return 0, errors.New("refused")
	case to > m.head && to-m.tail > m.capacity && len(m.held) > 0:
		return 0, ErrResyncBusy
	}
	burnt := min(from, m.head) - m.reserved
	if to < m.head {
		burnt += m.head - to
		var kept []BlockInfo
		for _, b := range m.blocks {
			if b.Pos < to {
				b.Size = int(min(uint64(b.Size), to-b.Pos))
				kept = append(kept, b)
			}
		}
		m.blocks = kept
	}
	if to > m.head {
		m.skipped += int(to - m.head)
	}
	if to > m.head && to-m.tail > m.capacity {
		clear(m.released)
		m.rebases++
		m.tail, m.blocks = to&^(m.seg-1), nil
		m.release(m.tail, to-m.tail)
	} else {
		m.release(m.reserved, from-m.reserved)
	}
	m.head, m.reserved = to, from
	m.noBelow = max(m.noBelow, from)
	m.burnt += int(burnt)
	m.advance()
	return burnt, nil
}

// TestPadRingResyncModel runs random Appends, Reserves, Releases and
// Resyncs (valid and not, in every kind of move), and in durable mode
// clean restarts, against ringModel. After every step the ring's cursors,
// counters and directory must be the model's; every range handed out must
// hold the pad of the block the model says is there, start at or above
// every from and above everything handed out before (no position twice);
// and the ring's memory must be zero outside [tail, head), hold the
// model's pad in [reserved, head), and so be zeroised where released.
func TestPadRingResyncModel(t *testing.T) {
	for _, m := range resyncModes[:2] {
		t.Run(m.name, func(t *testing.T) {
			steps := 20000
			if m.durable {
				steps = 4000
			}
			if testing.Short() || race.Enabled {
				steps /= 3
			}
			runResyncModel(t, m.durable, steps)
		})
	}
}

func runResyncModel(t *testing.T, durable bool, steps int) {
	const capacity, segment, batch = 1 << 16, 1 << 12, 1 << 15
	var dir string
	var db *meta.DB
	open := func() *PadRing {
		if !durable {
			return memRing(t, capacity, segment)
		}
		r, err := durableRing(t, dir, db, capacity, segment, batch)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { r.Close() })
		return r
	}
	if durable {
		dir = t.TempDir()
		db = openMeta(t, dir)
		t.Cleanup(func() { db.Close() })
	}
	r := open()
	m := &ringModel{capacity: capacity, seg: segment, released: make([]bool, capacity)}
	rnd := rand.New(rand.NewPCG(7, 11))
	var ops [8]int
	for step := range steps {
		what := ""
		switch k := rnd.IntN(100); {
		case k < 30:
			what = "append"
			n := uint64(1 + rnd.IntN(12000))
			blk := saltBlock(m.head, int(n), rnd.Uint64()>>1)
			err := r.Append(blk)
			if m.head+n-m.tail > capacity {
				if !errors.Is(err, ErrRingFull) {
					t.Fatalf("step %d: Append of %d at head %d, tail %d: %v, want ErrRingFull", step, n, m.head, m.tail, err)
				}
				break
			}
			if err != nil {
				t.Fatalf("step %d: %v", step, err)
			}
			m.blocks = append(m.blocks, BlockInfo{Pos: m.head, Size: int(n), ID: blk.ID})
			m.head += n
			m.appended += n
			m.advance()
			ops[0]++
		case k < 60:
			what = "reserve"
			n := uint64(1 + rnd.IntN(6000))
			rg, err := r.Reserve(int(n))
			if m.reserved+n > m.head {
				if !errors.Is(err, ErrPadShort) {
					t.Fatalf("step %d: Reserve(%d) with %d in stock: %v, want ErrPadShort", step, n, m.head-m.reserved, err)
				}
				break
			}
			if err != nil {
				t.Fatalf("step %d: %v", step, err)
			}
			if rg.Pos != m.reserved || rg.Pos < m.noBelow {
				t.Fatalf("step %d: range at %d, want %d; nothing may be handed out below %d", step, rg.Pos, m.reserved, m.noBelow)
			}
			checkAgainstBlocks(t, m.blocks, rg)
			m.reserved += n
			m.reservedB += n
			m.noBelow = m.reserved
			m.held = append(m.held, rg)
			ops[1]++
		case k < 85:
			what = "release"
			if len(m.held) == 0 {
				break
			}
			i := rnd.IntN(len(m.held))
			rg := m.held[i]
			m.held = slices.Delete(m.held, i, i+1)
			r.Release(rg)
			m.release(rg.Pos, uint64(len(rg.Bytes)))
			m.advance()
			ops[2]++
		case k < 99 || !durable:
			what = "resync"
			from, to := pickResync(rnd, m)
			burnt, err := r.Resync(from, to)
			want, wantErr := m.resync(from, to)
			switch {
			case wantErr == nil && err != nil:
				t.Fatalf("step %d: Resync(%d, %d) at reserved %d, head %d, tail %d: %v", step, from, to, m.reserved, m.head, m.tail, err)
			case wantErr != nil && err == nil:
				t.Fatalf("step %d: Resync(%d, %d) at reserved %d, head %d, tail %d accepted, want %v", step, from, to, m.reserved, m.head, m.tail, wantErr)
			case wantErr != nil && errors.Is(err, ErrResyncBusy) != errors.Is(wantErr, ErrResyncBusy):
				t.Fatalf("step %d: Resync(%d, %d): %v, want %v", step, from, to, err, wantErr)
			case errors.Is(err, ErrResyncBusy):
				ops[6]++
			case wantErr != nil:
				ops[4]++
			case burnt != want:
				t.Fatalf("step %d: Resync(%d, %d) burnt %d, want %d", step, from, to, burnt, want)
			default:
				ops[3]++
			}
		default:
			what = "restart"
			// A clean stop: ranges still held are lost (used, never
			// released); the ring resumes at its cursor, with the tail at
			// the segment boundary below and the rest counted released.
			if err := r.Close(); err != nil {
				t.Fatal(err)
			}
			r = open()
			m.held = nil
			clear(m.released)
			m.tail = m.reserved &^ (segment - 1)
			m.release(m.tail, m.reserved-m.tail)
			m.trim()
			m.appended, m.reservedB, m.burnt, m.skipped = 0, 0, 0, 0
			ops[5]++
		}
		checkModel(t, r, m, fmt.Sprintf("step %d (%s)", step, what), what == "resync" || step%8 == 0)
	}
	t.Logf("%d appends, %d reservations, %d releases, %d resyncs done, %d refused and %d busy, %d rebases, %d restarts", ops[0], ops[1], ops[2], ops[3], ops[4], ops[6], m.rebases, ops[5])
	if ops[3] < steps/20 || ops[4] < steps/50 || ops[6] < steps/200 || m.rebases < steps/200 {
		t.Fatalf("too few resyncs to test anything: %v", ops)
	}
}

// pickResync picks arguments for Resync: each kind of move, and each kind
// of violation, near the ring's cursors.
func pickResync(rnd *rand.Rand, m *ringModel) (from, to uint64) {
	between := func(a, b uint64) uint64 { return a + rnd.Uint64N(b-a+1) } // [a, b]
	switch rnd.IntN(9) {
	case 0: // below the cursor
		if m.reserved > 0 {
			from = between(0, m.reserved-1)
			return from, between(from, m.head)
		}
		fallthrough
	case 1: // to below from
		from = between(m.reserved+1, m.head+1)
		return from, from - 1
	case 2: // claims pad beyond the head
		from = between(m.reserved, m.head)
		return from, m.head + 1 + rnd.Uint64N(3*m.capacity)
	case 3: // burn stock only
		return between(m.reserved, m.head), m.head
	case 4, 5: // truncate
		from = between(m.reserved, m.head)
		return from, between(from, m.head)
	case 6: // skip within the ring
		to = between(m.head+1, max(m.head+1, m.tail+m.capacity))
		return to, to
	default: // skip beyond it: a rebase, or busy
		to = between(m.tail+m.capacity+1, m.tail+4*m.capacity)
		return to, to
	}
}

func checkModel(t *testing.T, r *PadRing, m *ringModel, step string, memory bool) {
	t.Helper()
	s := r.Stats()
	want := PadStats{
		Capacity: int(m.capacity), Stock: m.head - m.reserved, Head: m.head, Reserved: m.reserved, Tail: m.tail,
		Appended: m.appended, ReservedBytes: m.reservedB, Burnt: uint64(m.burnt), Skipped: uint64(m.skipped),
	}
	got := s
	got.ZeroisedBytes, got.MarkWrites, got.CrashWaste, got.AppendRejected = 0, 0, 0, 0
	if got != want {
		t.Fatalf("%s: stats\n%+v\nwant\n%+v", step, got, want)
	}
	blocks := r.Blocks()
	if len(blocks) != len(m.blocks) {
		t.Fatalf("%s: %d blocks %v, want %d %v", step, len(blocks), spansOf(blocks), len(m.blocks), spansOf(m.blocks))
	}
	for i, b := range blocks {
		if w := m.blocks[i]; b.Pos != w.Pos || b.Size != w.Size || b.ID != w.ID {
			t.Fatalf("%s: block %d is %q at %d (%d bytes), want %q at %d (%d bytes)", step, i, b.ID, b.Pos, b.Size, w.ID, w.Pos, w.Size)
		}
	}
	if !memory {
		return
	}
	checkZeroOutside(t, r)
	if m.head > m.reserved { // stock is always in blocks: skipped positions are below the cursor
		at := m.reserved & r.mask
		checkAgainstBlocks(t, m.blocks, Range{Pos: m.reserved, Bytes: r.buf[at : at+m.head-m.reserved]})
	}
}

// TestMarkNotPastHead: a reservation's durable mark covers a batch ahead,
// but never positions not yet appended, which cannot have been handed out:
// after a crash the ring would otherwise claim them used, and a link's
// agreement would burn stock both ends still hold.
func TestMarkNotPastHead(t *testing.T) {
	dir := t.TempDir()
	db := openMeta(t, filepath.Join(dir, "meta"))
	defer db.Close()
	r, err := durableRing(t, dir, db, 1<<20, 1<<16, 64<<10)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if err := r.Append(Block{ID: "b", Data: make([]byte, 4096)}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Reserve(100); err != nil {
		t.Fatal(err)
	}
	if m, h := r.mark.Load(), r.Stats().Head; m < 100 || m > h {
		t.Fatalf("mark %d after reserving [0, 100) of a ring whose head is %d: want 100 <= mark <= head", m, h)
	}
}
