package ringstore

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/qrelay/qrelay/internal/race"
	"github.com/qrelay/qrelay/ringstore/internal/meta"
)

// padByte is the pad byte the tests' QKD source produces at position p, so
// any byte read from a ring can be checked against where it claims to be.
func padByte(p uint64) byte { return byte(p*2654435761>>24) | 1 }

func padBlock(pos uint64, n int) Block {
	b := make([]byte, n)
	for i := range b {
		b[i] = padByte(pos + uint64(i))
	}
	return Block{ID: fmt.Sprintf("blk-%d", pos), Source: "sim-a", Data: b}
}

func checkPad(t testing.TB, rg Range) {
	t.Helper()
	for i, c := range rg.Bytes {
		if want := padByte(rg.Pos + uint64(i)); c != want {
			t.Fatalf("range at %d: byte %d is %#x, want %#x (pad overwritten or misplaced)", rg.Pos, i, c, want)
		}
	}
}

func memRing(t testing.TB, capacity, segment int) *PadRing {
	t.Helper()
	r, err := OpenPadRing(PadRingConfig{Name: "test/tx", Capacity: capacity, SegmentSize: segment})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func durableRing(t testing.TB, dir string, db *meta.DB, capacity, segment, batch int) (*PadRing, error) {
	t.Helper()
	return OpenPadRing(PadRingConfig{Name: "linkAB/tx", Capacity: capacity, SegmentSize: segment, Dir: dir, Meta: db, MarkBatch: batch})
}

func openMeta(t testing.TB, dir string) *meta.DB {
	t.Helper()
	db, err := meta.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	return db
}

func TestPadRingConfigErrors(t *testing.T) {
	cases := []struct {
		cfg  PadRingConfig
		want string
	}{
		{PadRingConfig{Capacity: 1 << 16}, "Name is empty"},
		{PadRingConfig{Name: "l/tx", Capacity: 3 << 16, SegmentSize: 1 << 12}, "Capacity 196608 must be a power of two"},
		{PadRingConfig{Name: "l/tx", Capacity: 1 << 16, SegmentSize: 1000}, "SegmentSize 1000 must be a power of two"},
		{PadRingConfig{Name: "l/tx", Capacity: 1 << 12, SegmentSize: 1 << 13}, "of at least SegmentSize"},
		{PadRingConfig{Name: "l/tx", Capacity: 1 << 16, SegmentSize: 1 << 12, Dir: "/tmp"}, "durable mode needs both Dir and Meta"},
	}
	for _, c := range cases {
		_, err := OpenPadRing(c.cfg)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("OpenPadRing(%+v) error = %v, want one containing %q", c.cfg, err, c.want)
		}
	}
}

// TestPadRingWrap reserves ranges that straddle the end of the ring and
// checks each is one contiguous slice holding the right pad.
func TestPadRingWrap(t *testing.T) {
	const capacity, segment = 1 << 16, 1 << 12
	r := memRing(t, capacity, segment)
	var pos uint64
	for lap := range 5 {
		for pos < uint64(lap+1)*capacity {
			if err := r.Append(padBlock(pos, 3000)); err != nil {
				t.Fatalf("lap %d: %v", lap, err)
			}
			pos += 3000
			rg, err := r.Reserve(2999)
			if err != nil {
				t.Fatal(err)
			}
			checkPad(t, rg)
			r.Release(rg)
		}
	}
	// Whatever is left unreserved is short of a request for more.
	if _, err := r.Reserve(capacity); !errors.Is(err, ErrPadShort) {
		t.Fatalf("Reserve beyond head: %v, want ErrPadShort", err)
	}
}

func TestPadRingFullAndRelease(t *testing.T) {
	const capacity, segment = 1 << 16, 1 << 12
	r := memRing(t, capacity, segment)
	if err := r.Append(padBlock(0, capacity)); err != nil {
		t.Fatal(err)
	}
	err := r.Append(padBlock(capacity, 1))
	if !errors.Is(err, ErrRingFull) || !strings.Contains(err.Error(), `block "blk-65536"`) {
		t.Fatalf("Append to a full ring: %v, want ErrRingFull naming the block", err)
	}
	// Reserving does not free space; releasing a whole segment does.
	rg, err := r.Reserve(segment)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Append(padBlock(capacity, 1)); !errors.Is(err, ErrRingFull) {
		t.Fatalf("Append after Reserve, before Release: %v, want ErrRingFull", err)
	}
	r.Release(rg)
	if err := r.Append(padBlock(capacity, segment)); err != nil {
		t.Fatalf("Append after releasing a segment: %v", err)
	}
	if s := r.Stats(); s.AppendRejected != 2 || s.ZeroisedBytes != segment || s.Tail != segment {
		t.Fatalf("stats %+v: want 2 rejected appends, one segment zeroised and the tail at %d", s, segment)
	}
}

// TestPadRingZeroisesWholeSegmentsInOrder releases ranges out of order and
// checks that a segment is zeroised only once all of it is released and the
// tail reaches it, and then reads as zero.
func TestPadRingZeroisesWholeSegmentsInOrder(t *testing.T) {
	const capacity, segment = 1 << 16, 1 << 12
	r := memRing(t, capacity, segment)
	if err := r.Append(padBlock(0, 4*segment)); err != nil {
		t.Fatal(err)
	}
	var rgs []Range
	for range 16 { // 16 ranges of a quarter segment
		rg, err := r.Reserve(segment / 4)
		if err != nil {
			t.Fatal(err)
		}
		rgs = append(rgs, rg)
	}
	// Release segment 1 entirely, and segment 0 but for its last range.
	for _, i := range []int{4, 5, 6, 7, 0, 1, 2} {
		r.Release(rgs[i])
	}
	if s := r.Stats(); s.Tail != 0 || s.ZeroisedBytes != 0 {
		t.Fatalf("tail moved past an unfinished segment: %+v", s)
	}
	checkPad(t, Range{Pos: 0, Bytes: r.buf[:2*segment]}) // nothing zeroised yet
	r.Release(rgs[3])
	if s := r.Stats(); s.Tail != 2*segment || s.ZeroisedBytes != 2*segment {
		t.Fatalf("after finishing segment 0: %+v; want segments 0 and 1 zeroised", s)
	}
	if !bytes.Equal(r.buf[:2*segment], make([]byte, 2*segment)) {
		t.Fatal("zeroised segments do not read as zero")
	}
	checkPad(t, Range{Pos: 2 * segment, Bytes: r.buf[2*segment : 4*segment]})
}

// TestPadRingConcurrent runs one producer and several consumers under the
// race detector. Every consumer checks its pad is what was appended at that
// position (so no range was overwritten or zeroised while reserved), and at
// the end the ranges handed out tile the stream exactly: no byte twice,
// none lost.
func TestPadRingConcurrent(t *testing.T) {
	const capacity, segment = 1 << 18, 1 << 12
	total := uint64(16 << 20)
	if testing.Short() || race.Enabled {
		total = 4 << 20
	}
	r := memRing(t, capacity, segment)
	var producerDone sync.WaitGroup
	producerDone.Add(1)
	go func() {
		defer producerDone.Done()
		rnd := rand.New(rand.NewPCG(1, 2))
		for pos := uint64(0); pos < total; {
			n := min(uint64(1+rnd.IntN(20000)), total-pos)
			for {
				err := r.Append(padBlock(pos, int(n)))
				if err == nil {
					break
				}
				if !errors.Is(err, ErrRingFull) {
					t.Error(err)
					return
				}
				runtime.Gosched() // wait for consumers to release
			}
			pos += n
		}
	}()

	const consumers = 6
	got := make([][]Range, consumers)
	var wg sync.WaitGroup
	for c := range consumers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rnd := rand.New(rand.NewPCG(uint64(c), 3))
			var held []Range
			for {
				n := 32 * (1 + rnd.IntN(64))
				rg, err := r.Reserve(n)
				if errors.Is(err, ErrPadShort) {
					if len(held) > 0 {
						// Release before waiting: held ranges can keep the
						// tail, and so the producer, from moving.
						r.Release(held[0])
						held = held[1:]
					}
					st := r.Stats()
					if st.Head < total {
						runtime.Gosched()
						continue
					}
					// The producer is done: take what is left.
					if st.Reserved == total {
						break
					}
					if rg, err = r.Reserve(int(min(total-st.Reserved, uint64(n)))); errors.Is(err, ErrPadShort) {
						continue // another consumer took it
					}
				}
				if err != nil {
					t.Error(err)
					break
				}
				checkPad(t, rg)
				got[c] = append(got[c], Range{Pos: rg.Pos, Bytes: make([]byte, len(rg.Bytes))})
				// Hold some ranges a while, so releases come out of order.
				held = append(held, rg)
				if len(held) > rnd.IntN(8) {
					i := rnd.IntN(len(held))
					r.Release(held[i])
					held = append(held[:i], held[i+1:]...)
				}
			}
			for _, h := range held {
				r.Release(h)
			}
		}()
	}
	wg.Wait()
	producerDone.Wait()

	var all []Range
	for _, g := range got {
		all = append(all, g...)
	}
	checkTiling(t, all, total)
	if s := r.Stats(); s.Tail != total/segment*segment || s.ZeroisedBytes != s.Tail {
		t.Fatalf("after releasing everything: %+v; want the tail at the last whole segment, %d", s, total/segment*segment)
	}
}

// checkTiling asserts the ranges cover [0, total) exactly once.
func checkTiling(t *testing.T, rgs []Range, total uint64) {
	t.Helper()
	slices.SortFunc(rgs, func(a, b Range) int { return cmp.Compare(a.Pos, b.Pos) })
	next := uint64(0)
	for _, rg := range rgs {
		if rg.Pos != next {
			if rg.Pos < next {
				t.Fatalf("pad [%d, %d) handed out twice (previous range ended at %d)", rg.Pos, rg.Pos+uint64(len(rg.Bytes)), next)
			}
			t.Fatalf("pad [%d, %d) never handed out", next, rg.Pos)
		}
		next += uint64(len(rg.Bytes))
	}
	if next != total {
		t.Fatalf("ranges end at %d, want %d", next, total)
	}
}

func TestPadRingDurableRestart(t *testing.T) {
	dir := t.TempDir()
	db := openMeta(t, dir)
	const capacity, segment, batch = 1 << 16, 1 << 12, 1 << 13
	r, err := durableRing(t, dir, db, capacity, segment, batch)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Append(padBlock(0, 20000)); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		rg, err := r.Reserve(3000)
		if err != nil {
			t.Fatal(err)
		}
		checkPad(t, rg)
		r.Release(rg)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	r, err = durableRing(t, dir, db, capacity, segment, batch)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	s := r.Stats()
	if s.Head != 20000 || s.Reserved != 9000 || s.CrashWaste != 0 {
		t.Fatalf("after a clean restart: %+v; want head 20000, reservations resuming at 9000, no waste", s)
	}
	rg, err := r.Reserve(11000)
	if err != nil {
		t.Fatal(err)
	}
	checkPad(t, rg)
	if s := r.Stats(); s.ReservedBytes != 11000 || s.Appended != 0 {
		t.Fatalf("counters of this process after a restart: %+v; want 11000 reserved, 0 appended", s)
	}
	if blocks := r.Blocks(); len(blocks) != 1 || blocks[0].ID != "blk-0" || blocks[0].Size != 20000 || blocks[0].Source != "sim-a" {
		t.Fatalf("block directory after restart: %+v", blocks)
	}
}

// TestPadRingDurableZeroisesFile checks that consumed segments read as zero
// in the ring file on disk, not just in memory.
func TestPadRingDurableZeroisesFile(t *testing.T) {
	dir := t.TempDir()
	db := openMeta(t, dir)
	const capacity, segment = 1 << 16, 1 << 12
	r, err := durableRing(t, dir, db, capacity, segment, segment)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if err := r.Append(padBlock(0, 3*segment)); err != nil {
		t.Fatal(err)
	}
	rg, err := r.Reserve(2*segment + 100)
	if err != nil {
		t.Fatal(err)
	}
	r.Release(rg)
	file, err := os.ReadFile(FilePath(dir, "linkAB/tx"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(file[:2*segment], make([]byte, 2*segment)) {
		t.Fatal("ring file still holds consumed pad in zeroised segments")
	}
	checkPad(t, Range{Pos: 2 * segment, Bytes: file[2*segment : 3*segment]})
	if r.Stats().ZeroisedBytes != 2*segment {
		t.Fatalf("ZeroisedBytes = %d, want %d", r.Stats().ZeroisedBytes, 2*segment)
	}
}

func TestPadRingLocksMemory(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("not root: mlock may exceed RLIMIT_MEMLOCK here; the ring then runs unlocked with a warning")
	}
	r := memRing(t, 1<<20, 1<<16)
	if !r.Locked() {
		t.Fatal("running as root, the ring's memory should be locked")
	}
}
