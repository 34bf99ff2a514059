package ringstore

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
)

const dirCrashEnv = "QRELAY_DIR_CRASH" // dir|case|step of the child

// The ring of the directory crash test: 32-byte blocks, [0, dcOld) recorded
// with the tail at 96 KiB, then [dcOld, dcNew) appended and pad up to
// dcUsed reserved and released, so that the next persist has thousands of
// records to write above the recorded head and thousands to delete below
// the new tail, several transactions of each.
const (
	dcCapacity = 1 << 20
	dcSegment  = 1 << 14
	dcBatch    = 1 << 14
	dcSize     = 32
	dcOld      = 512 << 10
	dcNew      = 768 << 10
	dcUsed     = 300 << 10
)

var dirCrashCases = []struct {
	name     string
	from, to uint64 // the Resync, if to != 0
}{
	{"flush", 0, 0},
	{"resync", dcUsed + 10000, dcOld + 128<<10 + 16}, // burns stock, cuts a pending block
}

// TestPadRingDirCrash kills a child process with SIGKILL between the
// metadata transactions of one persist of many block records (testHookDirTxn):
// after some of the new records are written but not the cursor record
// ("blocks"), and after the cursor record with deletes still to come
// ("cursors"), for a flush and for a Resync. The reopened ring must be in
// the state of the last cursor record: its reservations resume at or above
// every position handed out before, the records the crash left above the
// head or below the tail are gone from the store, the directory tiles the
// pad up to the head, and the pad reads as appended.
func TestPadRingDirCrash(t *testing.T) {
	if env := os.Getenv(dirCrashEnv); env != "" {
		dirCrashChild(t, env)
		return
	}
	type life struct {
		c    int
		step string
		dir  string
	}
	var lives []life
	for c := range dirCrashCases {
		for _, step := range []string{"blocks", "cursors"} {
			lives = append(lives, life{c, step, t.TempDir()})
		}
	}
	crashLives(t, "TestPadRingDirCrash", len(lives),
		func(i int) []string {
			l := lives[i]
			return []string{fmt.Sprintf("%s=%s|%d|%s", dirCrashEnv, l.dir, l.c, l.step)}
		},
		func() time.Duration { return time.Millisecond },
		func(i int, ready, stderr string) {
			l := lives[i]
			t.Run(dirCrashCases[l.c].name+"/"+l.step, func(t *testing.T) {
				var step string
				var handed, old, recorded uint64
				if _, err := fmt.Sscanf(ready, "ready %s handed=%d old=%d new=%d", &step, &handed, &old, &recorded); err != nil || step != l.step {
					t.Fatalf("child said %q (%v), want step %q\n%s", ready, err, l.step, stderr)
				}
				if l.step == "blocks" {
					recorded = old
				}
				checkDirCrash(t, l.dir, l.step, handed, recorded)
			})
		})
}

// checkDirCrash reopens the ring a child left, whose last cursor record
// should have head recorded, and which had handed out pad below handed.
func checkDirCrash(t *testing.T, dir, step string, handed, recorded uint64) {
	db := openMeta(t, dir)
	defer db.Close()
	raw, err := db.Get("pad/linkAB/tx/state")
	if err != nil {
		t.Fatal(err)
	}
	st, err := decodePadState(raw)
	if err != nil {
		t.Fatal(err)
	}
	// The kill landed where it should: between transactions, with the
	// records it means to leave behind in the store.
	var above, below int
	err = db.Scan("pad/linkAB/tx/blk/", func(_ string, v []byte) error {
		b, err := decodeBlockInfo(v)
		switch {
		case err != nil:
			return err
		case b.Pos >= st.head:
			above++
		case b.Pos+uint64(b.Size) <= st.tail:
			below++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if st.head != recorded {
		t.Fatalf("recorded head %d, want %d", st.head, recorded)
	}
	if step == "blocks" && above == 0 || step == "cursors" && below == 0 {
		t.Fatalf("killed at %s: %d records above the recorded head %d, %d below the tail %d: the crash did not land between the transactions", step, above, st.head, below, st.tail)
	}

	r, err := durableRing(t, dir, db, dcCapacity, dcSegment, dcBatch)
	if err != nil {
		t.Fatalf("reopening after a crash at %s: %v", step, err)
	}
	s := r.Stats()
	if s.Reserved < handed || s.Head != max(st.head, st.mark) {
		t.Fatalf("reopened: %+v; want reservations resuming at or above %d, head %d", s, handed, max(st.head, st.mark))
	}
	checkRecords(t, db, r.Blocks())
	blocks := r.Blocks()
	for i, b := range blocks {
		if i > 0 && b.Pos != blocks[i-1].Pos+uint64(blocks[i-1].Size) || i == len(blocks)-1 && b.Pos+uint64(b.Size) != s.Head {
			t.Fatalf("directory does not tile the pad up to the head %d: block %d is %+v", s.Head, i, b)
		}
	}
	rg, err := r.Reserve(int(s.Head - s.Reserved))
	if err != nil {
		t.Fatal(err)
	}
	checkPad(t, rg)
	r.Release(rg)

	// And the ring goes on: a clean stop and restart find it where it was.
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	r, err = durableRing(t, dir, db, dcCapacity, dcSegment, dcBatch)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if s2 := r.Stats(); s2.Head != s.Head || s2.Reserved != s.Head {
		t.Fatalf("after a clean restart: %+v; want head and reserved at %d", s2, s.Head)
	}
	checkRecords(t, db, r.Blocks())
}

// dirCrashChild sets up the ring, and dies at its step of the persist.
func dirCrashChild(t *testing.T, env string) {
	parts := strings.Split(env, "|")
	dir, step := parts[0], parts[2]
	var ci int
	fmt.Sscan(parts[1], &ci)
	c := dirCrashCases[ci]
	db := openMeta(t, dir)
	r, err := durableRing(t, dir, db, dcCapacity, dcSegment, dcBatch)
	if err != nil {
		t.Fatalf("child: %v", err)
	}
	// Only this child persists, so that the kill lands in its persist.
	stopFlusher(r)
	fill := func(from, to uint64) {
		for pos := from; pos < to; pos += dcSize {
			if err := r.Append(padBlock(pos, dcSize)); err != nil {
				t.Fatalf("child: %v", err)
			}
		}
	}
	use := func(to uint64) {
		for s := r.Stats(); s.Reserved < to; s = r.Stats() {
			rg, err := r.Reserve(int(min(to-s.Reserved, 4096)))
			if err != nil {
				t.Fatalf("child: %v", err)
			}
			r.Release(rg)
		}
	}
	flush := func() {
		r.markMu.Lock()
		defer r.markMu.Unlock()
		if err := r.persist(r.mark.Load(), persistFlush); err != nil {
			t.Fatalf("child: flush: %v", err)
		}
	}
	fill(0, dcOld)
	use(100 << 10)
	flush()
	fill(dcOld, dcNew)
	use(dcUsed)

	handed, recorded := r.Stats().Reserved, uint64(dcNew)
	if c.to != 0 {
		handed, recorded = c.from, c.to // nothing below from may be handed out again
	}
	testHookDirTxn = func(s string) error {
		if s == step {
			fmt.Printf("ready %s handed=%d old=%d new=%d\n", step, handed, dcOld, recorded)
			time.Sleep(time.Hour) // until the parent's SIGKILL
		}
		return nil
	}
	if c.to != 0 {
		if _, err := r.Resync(c.from, c.to); err != nil {
			t.Fatalf("child: %v", err)
		}
	} else {
		flush()
	}
	t.Fatalf("child: the persist returned without reaching step %q", step)
}
