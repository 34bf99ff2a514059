package ringstore

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const (
	crashDirEnv    = "QRELAY_PADRING_CRASH_DIR"
	crashMarkBatch = 1 << 15
)

// TestPadRingCrash runs the real durable ring in a child process that
// appends pad, reserves ranges, checks their bytes, logs every range it was
// handed and releases them, and kills it with SIGKILL at random moments,
// restarting it each time. Across all lives, no pad position may be handed
// out twice, and every range handed out must hold the pad appended there.
func TestPadRingCrash(t *testing.T) {
	if dir := os.Getenv(crashDirEnv); dir != "" {
		crashChild(t, dir)
		return
	}
	runs := 100
	if testing.Short() {
		runs = 30
	}
	dir := t.TempDir()
	rnd := rand.New(rand.NewPCG(42, 42))
	wasted := 0
	crashLives(t, "TestPadRingCrash", runs,
		func(int) []string { return []string{crashDirEnv + "=" + dir} },
		func() time.Duration { return time.Duration(rnd.IntN(30_000)) * time.Microsecond },
		func(life int, ready, _ string) {
			// The child's first line: "ready waste=N", the pad its restart
			// skipped because a crash may have used it.
			var waste int
			if _, err := fmt.Sscanf(ready, "ready waste=%d", &waste); err != nil {
				t.Fatalf("life %d: child said %q: %v", life, ready, err)
			}
			if waste > crashMarkBatch {
				t.Fatalf("life %d: restart skipped %d bytes of pad, more than one mark batch (%d)", life, waste, crashMarkBatch)
			}
			if waste > 0 {
				wasted++
			}
		})

	logged, err := os.ReadFile(filepath.Join(dir, "handed-out.log"))
	if err != nil {
		t.Fatal(err)
	}
	type span struct{ pos, end uint64 }
	var spans []span
	for i, l := range strings.Split(strings.TrimSpace(string(logged)), "\n") {
		var s span
		var n uint64
		if _, err := fmt.Sscanf(l, "%d %d", &s.pos, &n); err != nil {
			t.Fatalf("log line %d %q: %v", i+1, l, err)
		}
		s.end = s.pos + n
		spans = append(spans, s)
	}
	// The log is in hand-out order across lives: positions only ever grow,
	// so every range starts at or after the end of all earlier ones.
	var maxEnd uint64
	for i, s := range spans {
		if s.pos < maxEnd {
			t.Fatalf("pad [%d, %d) handed out (log line %d) after pad up to %d was: a position was handed out twice", s.pos, s.end, i+1, maxEnd)
		}
		maxEnd = s.end
	}
	t.Logf("%d lives, %d ranges (%d bytes of pad) handed out; %d restarts skipped pad a crash may have used", runs, len(spans), maxEnd, wasted)
	if len(spans) < runs {
		t.Fatalf("only %d ranges handed out in %d lives: the child is not doing enough work to test anything", len(spans), runs)
	}
	if wasted == 0 {
		t.Fatal("no restart found pad to skip: the kills never landed between a mark and its use")
	}
}

// crashChild is one life of the child: it works until it is killed.
func crashChild(t *testing.T, dir string) {
	db := openMeta(t, dir)
	const capacity, segment = 1 << 20, 1 << 14
	r, err := durableRing(t, dir, db, capacity, segment, crashMarkBatch)
	if err != nil {
		t.Fatalf("child: %v", err)
	}
	log, err := os.OpenFile(filepath.Join(dir, "handed-out.log"), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Printf("ready waste=%d \n", r.Stats().CrashWaste)
	rnd := rand.New(rand.NewPCG(uint64(os.Getpid()), uint64(time.Now().UnixNano())))
	var held []Range
	var line []byte
	for {
		if s := r.Stats(); s.Head-s.Tail < capacity/2 {
			if err := r.Append(padBlock(s.Head, 1000+rnd.IntN(30000))); err != nil {
				t.Fatalf("child: %v", err)
			}
		}
		rg, err := r.Reserve(1 + rnd.IntN(4000))
		if errors.Is(err, ErrPadShort) {
			continue
		}
		if err != nil {
			t.Fatalf("child: %v", err)
		}
		checkPad(t, rg)
		// One write(2) per range: a kill lands before or after it.
		line = fmt.Appendf(line[:0], "%d %d\n", rg.Pos, len(rg.Bytes))
		if _, err := log.Write(line); err != nil {
			t.Fatal(err)
		}
		held = append(held, rg)
		if len(held) > rnd.IntN(16) {
			r.Release(held[0])
			held = held[1:]
		}
	}
}
