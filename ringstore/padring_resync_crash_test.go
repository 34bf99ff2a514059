package ringstore

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"
)

const resyncCrashEnv = "QRELAY_RESYNC_CRASH" // dir|case|step of the child

// The ring of the Resync crash test: blocks [0, 100000), [100000, 200000)
// and [200000, 300000), all recorded; [0, 20000) reserved (and released in
// the rebase case) with the mark at 20000.
const (
	rcCapacity = 1 << 20
	rcSegment  = 1 << 14
	rcBatch    = 1 << 14
	rcHead     = 300000
	rcMark     = 20000
)

var resyncCrashCases = []struct {
	name         string
	releaseFirst bool
	from, to     uint64
	blocks       []span // directory once the Resync is recorded
}{
	{"truncate at a block boundary", false, 50000, 200000, []span{{0, 100000}, {100000, 100000}}},
	{"truncate through a block", false, 50000, 250000, []span{{0, 100000}, {100000, 100000}, {200000, 50000}}},
	{"burn and drop all", false, 150000, 150000, []span{{0, 100000}, {100000, 50000}}},
	{"skip with a range out", false, 500000, 500000, []span{{0, 100000}, {100000, 100000}, {200000, 100000}}},
	{"skip beyond capacity", true, 5 << 20, 5 << 20, nil},
}

// resyncCrashSteps are where the child dies: at each step of a durable
// Resync (testHookResync), and after it returned.
var resyncCrashSteps = []string{"planned", "marked", "synced", "committed", "applied", "after"}

// TestPadRingResyncCrash kills a child process with SIGKILL at each step of
// a durable Resync, and after it, for each kind of move, then reopens the
// ring and checks it is in the old state or the new one, never a mix: no
// position below from is handed out once the mark is raised (the first
// write), the head and directory are the old ones until the new state is
// committed and the new ones after, the open's checksum check passes, the
// next Append lands at the head and a reservation reads the pad the
// directory names.
func TestPadRingResyncCrash(t *testing.T) {
	if env := os.Getenv(resyncCrashEnv); env != "" {
		resyncCrashChild(t, env)
		return
	}
	type life struct {
		c    int
		step string
		dir  string
	}
	var lives []life
	for c := range resyncCrashCases {
		for _, step := range resyncCrashSteps {
			lives = append(lives, life{c, step, t.TempDir()})
		}
	}
	crashLives(t, "TestPadRingResyncCrash", len(lives),
		func(i int) []string {
			l := lives[i]
			return []string{fmt.Sprintf("%s=%s|%d|%s", resyncCrashEnv, l.dir, l.c, l.step)}
		},
		func() time.Duration { return time.Millisecond },
		func(i int, ready, stderr string) {
			l := lives[i]
			c := resyncCrashCases[l.c]
			t.Run(c.name+"/"+l.step, func(t *testing.T) {
				if want := "ready " + l.step; strings.TrimSpace(ready) != want {
					t.Fatalf("child said %q, want %q\n%s", ready, want, stderr)
				}
				checkResyncCrash(t, l.dir, l.c, l.step)
			})
		})
}

func checkResyncCrash(t *testing.T, dir string, ci int, step string) {
	c := resyncCrashCases[ci]
	db := openMeta(t, dir)
	defer db.Close()
	r, err := durableRing(t, dir, db, rcCapacity, rcSegment, rcBatch)
	if err != nil {
		t.Fatalf("reopening after a crash at %s: %v", step, err)
	}
	defer r.Close()

	recorded := slices.Contains([]string{"committed", "applied", "after"}, step)
	wantReserved, wantHead := c.from, c.to
	wantBlocks := c.blocks
	if !recorded {
		wantHead = max(rcHead, c.from) // the old head, or the raised mark beyond it
		wantBlocks = []span{{0, 100000}, {100000, 100000}, {200000, 100000}}
		if step == "planned" { // nothing written: as if Resync was never called
			wantReserved, wantHead = rcMark, rcHead
		}
	}
	s := r.Stats()
	if s.Reserved != wantReserved || s.Head != wantHead {
		t.Fatalf("reopened: %+v; want reserved %d, head %d", s, wantReserved, wantHead)
	}
	checkBlocksAbove(t, r, wantBlocks)
	if step != "committed" {
		// Killed between the commit and the zeroising, the dropped pad is
		// left above the head in the file; it is never read as pad, and
		// Appends overwrite it.
		checkZeroOutside(t, r)
	}
	if err := r.Append(saltBlock(wantHead, 8192, 9)); err != nil {
		t.Fatal(err)
	}
	blocks := r.Blocks()
	if last := blocks[len(blocks)-1]; last.Pos != wantHead {
		t.Fatalf("next block lands at %d, want %d", last.Pos, wantHead)
	}
	rg, err := r.Reserve(int(wantHead - wantReserved + 8192))
	if err != nil {
		t.Fatal(err)
	}
	if rg.Pos != wantReserved {
		t.Fatalf("first reservation at %d, want %d", rg.Pos, wantReserved)
	}
	checkAgainstBlocks(t, blocks, rg)
}

// resyncCrashChild sets up the ring, and dies at its step of Resync.
func resyncCrashChild(t *testing.T, env string) {
	parts := strings.Split(env, "|")
	dir, step := parts[0], parts[2]
	var ci int
	fmt.Sscan(parts[1], &ci)
	c := resyncCrashCases[ci]
	db := openMeta(t, dir)
	r, err := durableRing(t, dir, db, rcCapacity, rcSegment, rcBatch)
	if err != nil {
		t.Fatalf("child: %v", err)
	}
	for pos := uint64(0); pos < rcHead; pos += 100000 {
		if err := r.Append(saltBlock(pos, 100000, 1)); err != nil {
			t.Fatalf("child: %v", err)
		}
	}
	rg, err := r.Reserve(rcMark)
	if err != nil {
		t.Fatalf("child: %v", err)
	}
	if c.releaseFirst {
		r.Release(rg)
	}
	r.markMu.Lock()
	err = r.persist(r.mark.Load(), persistFlush)
	r.markMu.Unlock()
	if err != nil || r.mark.Load() != rcMark || r.persistedHead != rcHead {
		t.Fatalf("child: flush: %v; mark %d, recorded head %d", err, r.mark.Load(), r.persistedHead)
	}
	die := func() {
		fmt.Printf("ready %s\n", step)
		time.Sleep(time.Hour) // until the parent's SIGKILL
	}
	testHookResync = func(s string) {
		if s == step {
			die()
		}
	}
	if _, err := r.Resync(c.from, c.to); err != nil {
		t.Fatalf("child: %v", err)
	}
	if step != "after" {
		t.Fatalf("child: Resync returned without reaching step %q", step)
	}
	die()
}
