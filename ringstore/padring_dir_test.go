package ringstore

import (
	"fmt"
	"strings"
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
	if strings.Join(keys, " ") != strings.Join(want, " ") {
		t.Fatalf("metadata store holds %d block records, want the directory's %d (first %.80q, want %.80q)", len(keys), len(want), keys, want)
	}
}
