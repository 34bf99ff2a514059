package ringstore

import (
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/qrelay/qrelay/ringstore/internal/meta"
)

// TestPadRingDurableSmallBlocks fills a durable ring with 32-byte blocks, as
// an ETSI 014 KME hands out keys: 131,072 block records, far more than one
// metadata transaction takes (about 3,000). Close and reopen must keep every
// block's directory entry and pad, and a flush that the tail has passed
// entirely must delete every record.
func TestPadRingDurableSmallBlocks(t *testing.T) {
	const capacity, segment, batch, size = 4 << 20, 1 << 16, 1 << 16, 32
	dir := t.TempDir()
	db := openMeta(t, dir)
	defer db.Close()
	r, err := durableRing(t, dir, db, capacity, segment, batch)
	if err != nil {
		t.Fatal(err)
	}
	appendSmall := func(from, to uint64) {
		t.Helper()
		for pos := from; pos < to; pos += size {
			if err := r.Append(padBlock(pos, size)); err != nil {
				t.Fatal(err)
			}
		}
	}
	// consume reserves [Reserved, to) in 64 KiB ranges, checks their pad
	// and releases them.
	consume := func(to uint64) {
		t.Helper()
		for s := r.Stats(); s.Reserved < to; s = r.Stats() {
			rg, err := r.Reserve(int(min(to-s.Reserved, 1<<16)))
			if err != nil {
				t.Fatal(err)
			}
			checkPad(t, rg)
			r.Release(rg)
		}
	}
	reopen := func(wantHead, wantReserved uint64) {
		t.Helper()
		if err := r.Close(); err != nil {
			t.Fatalf("closing a ring of %d-byte blocks: %v", size, err)
		}
		r, err = durableRing(t, dir, db, capacity, segment, batch)
		if err != nil {
			t.Fatalf("reopening a ring of %d-byte blocks: %v", size, err)
		}
		if s := r.Stats(); s.Head != wantHead || s.Reserved != wantReserved || s.CrashWaste != 0 {
			t.Fatalf("reopened: %+v; want head %d, reserved %d, no waste", s, wantHead, wantReserved)
		}
	}

	appendSmall(0, capacity)
	consume(capacity / 2)
	before := r.Blocks()
	if len(before) != capacity/2/size {
		t.Fatalf("%d blocks above the tail, want %d", len(before), capacity/2/size)
	}
	reopen(capacity, capacity/2)
	checkSameBlocks(t, r.Blocks(), before)
	checkRecords(t, db, r.Blocks())

	// Everything consumed: the tail passes every record, so the next
	// persist deletes them all.
	appendSmall(capacity, capacity+capacity/2)
	consume(capacity + capacity/2)
	reopen(capacity+capacity/2, capacity+capacity/2)
	if b := r.Blocks(); len(b) != 0 {
		t.Fatalf("%d blocks above the tail after consuming all pad, want none", len(b))
	}
	checkRecords(t, db, nil)
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
}

// checkSameBlocks checks two directories hold the same entries, every field.
func checkSameBlocks(t testing.TB, got, want []BlockInfo) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("directory holds %d blocks, want %d", len(got), len(want))
	}
	for i, g := range got {
		w := want[i]
		if g.Pos != w.Pos || g.Size != w.Size || g.ID != w.ID || g.Source != w.Source || !g.Time.Equal(w.Time) || g.CRC != w.CRC {
			t.Fatalf("block %d is %+v, want %+v", i, g, w)
		}
	}
}

// checkRecords checks the ring's block records in the metadata store are
// exactly the directory: none above the head or below the tail left behind.
func checkRecords(t testing.TB, db *meta.DB, blocks []BlockInfo) {
	t.Helper()
	var keys []string
	err := db.Scan("pad/linkAB/tx/blk/", func(k string, _ []byte) error {
		keys = append(keys, k)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, b := range blocks {
		want = append(want, fmt.Sprintf("pad/linkAB/tx/blk/%016x", b.Pos))
	}
	if !slices.Equal(keys, want) {
		first := 0
		for first < min(len(keys), len(want)) && keys[first] == want[first] {
			first++
		}
		got, exp := "none", "none"
		if first < len(keys) {
			got = keys[first]
		}
		if first < len(want) {
			exp = want[first]
		}
		t.Fatalf("metadata store holds %d block records, want the directory's %d; record %d is %s, want %s", len(keys), len(want), first, got, exp)
	}
}

// stopFlusher stops a durable ring's background flusher, so that only the
// test persists it; Close still works.
func stopFlusher(r *PadRing) {
	close(r.flushStop)
	r.flushDone.Wait()
	r.flushStop = make(chan struct{})
}

// TestPadRingDirWriteFails fails persists of many block records between
// their metadata transactions, without a crash, and checks that what they
// left in the store never becomes part of the ring: records written above
// the recorded head by a flush that failed before its cursor record, for
// pad a Resync then drops and new blocks of another size replace, and
// records below the tail that a flush failed to delete after its cursor
// record. Were the first kind left, the next flush would publish them over
// the new blocks and the restart would refuse the ring.
func TestPadRingDirWriteFails(t *testing.T) {
	const capacity, segment, batch = 1 << 20, 1 << 14, 1 << 14
	dir := t.TempDir()
	db := openMeta(t, dir)
	defer db.Close()
	r, err := durableRing(t, dir, db, capacity, segment, batch)
	if err != nil {
		t.Fatal(err)
	}
	stopFlusher(r)
	errInjected := errors.New("injected failure")
	failAt := ""
	testHookDirTxn = func(step string) error {
		if step == failAt {
			failAt = ""
			return errInjected
		}
		return nil
	}
	t.Cleanup(func() { testHookDirTxn = nil })
	flush := func() error {
		r.markMu.Lock()
		defer r.markMu.Unlock()
		return r.persist(r.mark.Load(), persistFlush)
	}
	fill := func(from, to uint64, size int, salt uint64) {
		t.Helper()
		for pos := from; pos < to; pos += uint64(size) {
			if err := r.Append(saltBlock(pos, int(min(uint64(size), to-pos)), salt)); err != nil {
				t.Fatal(err)
			}
		}
	}
	use := func(to uint64) {
		t.Helper()
		for s := r.Stats(); s.Reserved < to; s = r.Stats() {
			rg, err := r.Reserve(int(min(to-s.Reserved, 4096)))
			if err != nil {
				t.Fatal(err)
			}
			r.Release(rg)
		}
	}
	// records counts the block records above the recorded head and below
	// the recorded tail.
	records := func() (above, below int) {
		t.Helper()
		err := db.Scan("pad/linkAB/tx/blk/", func(_ string, v []byte) error {
			b, err := decodeBlockInfo(v)
			switch {
			case err != nil:
				return err
			case b.Pos >= r.persistedHead:
				above++
			case b.Pos+uint64(b.Size) <= r.persistedTail:
				below++
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return above, below
	}

	fill(0, 256<<10, 32, 1)
	if err := flush(); err != nil {
		t.Fatal(err)
	}
	fill(256<<10, 512<<10, 32, 1)
	failAt = "blocks"
	if err := flush(); !errors.Is(err, errInjected) {
		t.Fatalf("flush failing after its first transaction: %v, want the injected failure", err)
	}
	if above, _ := records(); above == 0 {
		t.Fatal("the failed flush left no records above the recorded head: the failure did not land between its transactions")
	}
	use(200 << 10)
	to := uint64(320<<10 + 16) // through a 32-byte block
	if _, err := r.Resync(r.Stats().Reserved, to); err != nil {
		t.Fatal(err)
	}
	fill(to, 512<<10, 48, 2)
	use(400 << 10)
	failAt = "cursors"
	if err := flush(); err != nil {
		t.Fatalf("flush failing after its cursor record: %v, want nil (the cursors are recorded)", err)
	}
	if r.persistedHead != 512<<10 {
		t.Fatalf("recorded head %d after the flush, want %d", r.persistedHead, 512<<10)
	}
	if _, below := records(); below == 0 {
		t.Fatal("the flush left no records below the recorded tail: the failure did not land between its transactions")
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	checkRecords(t, db, r.Blocks())

	r, err = durableRing(t, dir, db, capacity, segment, batch)
	if err != nil {
		t.Fatalf("reopening: %v", err)
	}
	defer r.Close()
	blocks := r.Blocks()
	checkRecords(t, db, blocks)
	s := r.Stats()
	rg, err := r.Reserve(int(s.Head - s.Reserved))
	if err != nil {
		t.Fatal(err)
	}
	checkAgainstBlocks(t, blocks, rg)
}
