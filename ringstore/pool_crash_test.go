//go:build linux

package ringstore

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/qrelay/qrelay/ringstore/internal/meta"
)

const (
	poolCrashEnv     = "QRELAY_POOL_CRASH_CHILD" // the directory; set in the child only
	poolCrashRunEnv  = "QRELAY_POOL_CRASH_RUN"   // the child's run number, its random seed
	poolCrashSlots   = 512
	poolCrashMaxHeld = 400 // the child stops putting above this stock
)

func poolCrashConfig(dir string, db *meta.DB) PoolConfig {
	return PoolConfig{Name: "nodeB", Dir: filepath.Join(dir, "pools"), Meta: db, Slots: poolCrashSlots}
}

// poolCrashOwner is the owner the child gives the batch starting at seq.
func poolCrashOwner(seq uint64) Owner {
	return Owner(fmt.Sprintf("m%d>s%d", seq, seq))
}

// TestPoolCrash runs a durable pool in a child process that puts, assigns
// and takes keys and logs what it did, kills it with SIGKILL at random
// moments, and restarts it, 100 times. The log (each line fsync'd) says
// which puts returned ("put A B", written after Put) and which takes were
// attempted ("took ...", written before TakeNext or TakeByIDs, then "done").
// Across all lives: every key whose Put returned and that no take named is
// in the pool with its bytes; no key is there twice or comes back after a
// take that finished; a take or put cut short happened wholly or not at
// all; the FIFO order survives; and once the pool is drained the slot file
// is all zeroes.
func TestPoolCrash(t *testing.T) {
	if dir := os.Getenv(poolCrashEnv); dir != "" {
		poolCrashChild(dir)
		return
	}
	runs := 100
	if testing.Short() {
		runs = 30
	}
	dir := t.TempDir()
	rnd := rand.New(rand.NewPCG(3, 4))
	start := time.Now()
	orphanLives := 0 // lives that began by zeroising orphan slots
	crashLives(t, "TestPoolCrash", runs,
		func(life int) []string {
			return []string{poolCrashEnv + "=" + dir, poolCrashRunEnv + "=" + strconv.Itoa(life)}
		},
		func() time.Duration { return time.Duration(5_000+rnd.IntN(55_000)) * time.Microsecond },
		func(life int, ready, stderr string) {
			if ready != "ready\n" {
				t.Fatalf("life %d: child said %q, want ready", life, ready)
			}
			if strings.Contains(stderr, "zeroised orphan slots") {
				orphanLives++
			}
		})
	lives := time.Since(start)

	// Now look for ourselves.
	lg, err := readPoolCrashLog(filepath.Join(dir, "log"))
	if err != nil {
		t.Fatal(err)
	}
	db, err := meta.Open(filepath.Join(dir, "meta"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	p, err := OpenPool(poolCrashConfig(dir, db))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if msg := lg.checkIndex(p); msg != "" {
		t.Fatal(msg)
	}
	st := p.Stats()
	var got []Key
	for n := st.Stock; n > 0; {
		keys, err := p.TakeNext(min(n, MaxBatch), Owner("parent"))
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, keys...)
		n -= len(keys)
	}
	present := map[uint64]bool{}
	var prevSeq uint64
	for i, k := range got {
		seq, ok := lg.seqOf[k.ID]
		switch {
		case !ok:
			t.Fatalf("key %s in the pool was never put", k.ID)
		case present[seq]:
			t.Fatalf("key %s (seq %d) is in the pool twice", k.ID, seq)
		case i > 0 && seq <= prevSeq:
			t.Fatalf("FIFO order lost: seq %d after %d", seq, prevSeq)
		case !bytes.Equal(k.Bytes, poolKeyBytes(k.ID, DefaultSlotSize)):
			t.Fatalf("key %s (seq %d) has the wrong bytes: %x", k.ID, seq, k.Bytes)
		}
		present[seq] = true
		prevSeq = seq
	}
	if msg := lg.check(present); msg != "" {
		t.Fatal(msg)
	}
	file, err := os.ReadFile(p.path)
	if err != nil {
		t.Fatal(err)
	}
	if !allZero(file) {
		t.Fatalf("slot file %s is not all zeroes once the pool is drained", p.path)
	}
	cutPuts, cutTakes := lg.cutShort()
	t.Logf("%d lives in %v: %d keys put in %d batches, %d takes; killed during %d puts and %d takes; %d lives began by zeroising orphan slots; %d keys left",
		runs, lives.Round(time.Millisecond), len(lg.seqOf), lg.puts, len(lg.intents), cutPuts, cutTakes, orphanLives, len(got))
}

// poolCrashLog is what a log says.
type poolCrashLog struct {
	seqOf     map[KeyID]uint64
	nextSeq   uint64
	batch     map[uint64]uint64 // seq → first seq of its Put batch
	confirmed map[uint64]bool   // seq → its Put returned
	assigned  map[uint64]bool   // first seq of a batch → its SetOwner returned
	intents   []poolCrashIntent
	puts      int
}

type poolCrashIntent struct {
	seqs []uint64
	done bool
}

func readPoolCrashLog(path string) (*poolCrashLog, error) {
	lg := &poolCrashLog{seqOf: map[KeyID]uint64{}, batch: map[uint64]uint64{}, confirmed: map[uint64]bool{}, assigned: map[uint64]bool{}}
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return lg, nil
	}
	if err != nil {
		return nil, err
	}
	// A kill during a write that crosses a page boundary can leave a torn
	// last line. Its operation had not started (intents are logged before
	// acting) or its outcome is not recorded (confirmations after), so it is
	// as if it were not there; the child cuts it off before appending.
	b = b[:bytes.LastIndexByte(b, '\n')+1]
	for i, line := range strings.Split(string(b), "\n") {
		if line == "" {
			continue
		}
		bad := fmt.Errorf("%s:%d: bad line %q", path, i+1, line)
		verb, args, _ := strings.Cut(line, " ")
		var a, z uint64
		if verb == "putting" || verb == "put" || verb == "assigned" {
			if _, err := fmt.Sscanf(args, "%d %d", &a, &z); err != nil {
				return nil, bad
			}
		}
		switch verb {
		case "putting":
			if a != lg.nextSeq {
				return nil, bad
			}
			for s := a; s <= z; s++ {
				lg.seqOf[poolID(1, s)] = s
				lg.batch[s] = a
			}
			lg.nextSeq = z + 1
		case "put":
			for s := a; s <= z; s++ {
				lg.confirmed[s] = true
			}
			lg.puts++
		case "assigned":
			lg.assigned[a] = true
		case "took":
			var in poolCrashIntent
			for f := range strings.SplitSeq(args, ",") {
				s, err := strconv.ParseUint(f, 10, 64)
				if err != nil || s >= lg.nextSeq {
					return nil, bad
				}
				in.seqs = append(in.seqs, s)
			}
			lg.intents = append(lg.intents, in)
		case "done":
			if len(lg.intents) == 0 {
				return nil, bad
			}
			lg.intents[len(lg.intents)-1].done = true
		default:
			return nil, bad
		}
	}
	return lg, nil
}

// TestPoolCrashLogTornLine: the parser ignores a torn last line.
func TestPoolCrashLogTornLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log")
	if err := os.WriteFile(path, []byte("putting 0 2\nput 0 2\ntook 0,1\ndone\ntook 2\nput"), 0o600); err != nil {
		t.Fatal(err)
	}
	lg, err := readPoolCrashLog(path)
	if err != nil {
		t.Fatal(err)
	}
	gone, present, uncertain := lg.state()
	if len(gone) != 2 || len(present) != 0 || len(uncertain) != 1 || !slices.Equal(uncertain[0], []uint64{2}) {
		t.Fatalf("gone %v, present %v, uncertain %v", gone, present, uncertain)
	}
}

// state sorts every key ever put into: gone for sure (named by a take that
// finished), surely present (Put returned, no take named it), and uncertain
// groups that must each be wholly present or wholly gone (a Put or a take
// cut short by the kill).
func (lg *poolCrashLog) state() (gone map[uint64]bool, present []uint64, uncertain [][]uint64) {
	gone = map[uint64]bool{}
	named := map[uint64]bool{}
	for _, in := range lg.intents {
		for _, s := range in.seqs {
			named[s] = true
			if in.done {
				gone[s] = true
			}
		}
	}
	for _, in := range lg.intents {
		if !in.done && !slices.ContainsFunc(in.seqs, func(s uint64) bool { return gone[s] }) {
			uncertain = append(uncertain, in.seqs)
		}
	}
	var unconfirmed []uint64
	for s := range lg.nextSeq {
		switch {
		case named[s]:
		case lg.confirmed[s]:
			present = append(present, s)
		default:
			unconfirmed = append(unconfirmed, s)
		}
	}
	// Unconfirmed keys are those of one Put batch at most, the last.
	if len(unconfirmed) > 0 {
		uncertain = append(uncertain, unconfirmed)
	}
	return gone, present, uncertain
}

// cutShort counts the puts and takes that a kill interrupted.
func (lg *poolCrashLog) cutShort() (puts, takes int) {
	for _, in := range lg.intents {
		if !in.done {
			takes++
		}
	}
	for s := range lg.nextSeq {
		if lg.batch[s] == s && !lg.confirmed[s] {
			puts++
		}
	}
	return puts, takes
}

// check compares the keys present in the pool with the log; it returns
// what is wrong, or "".
func (lg *poolCrashLog) check(present map[uint64]bool) string {
	gone, sure, uncertain := lg.state()
	for _, s := range sure {
		if !present[s] {
			return fmt.Sprintf("key seq %d was put (logged) and never taken, but is not in the pool", s)
		}
	}
	for s := range gone {
		if present[s] {
			return fmt.Sprintf("key seq %d is back in the pool after a take that finished", s)
		}
	}
	for _, g := range uncertain {
		n := 0
		for _, s := range g {
			if present[s] {
				n++
			}
		}
		if n != 0 && n != len(g) {
			return fmt.Sprintf("an operation cut short on keys %v left %d of %d in the pool: not all or nothing", g, n, len(g))
		}
	}
	for s := range present {
		if !slices.Contains(sure, s) && !slices.ContainsFunc(uncertain, func(g []uint64) bool { return slices.Contains(g, s) }) {
			return fmt.Sprintf("key seq %d is in the pool but should not be", s)
		}
	}
	return ""
}

// checkOwner: a key of a batch whose SetOwner returned carries the
// batch's owner; any other key carries it or none.
func (lg *poolCrashLog) checkOwner(seq uint64, o Owner) string {
	first := lg.batch[seq]
	want := poolCrashOwner(first)
	if o == "" && !lg.assigned[first] {
		return ""
	}
	if o != want {
		return fmt.Sprintf("key seq %d has owner %q, want %q (owner set: %v)", seq, o, want, lg.assigned[first])
	}
	return ""
}

// checkIndex walks the pool's FIFO (white box: TakeNext would replace the
// owners) and checks every key's owner.
func (lg *poolCrashLog) checkIndex(p *Pool) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	for s := p.head; s >= 0; s = p.slots[s].next {
		e := &p.slots[s]
		seq, ok := lg.seqOf[e.id]
		if !ok {
			return fmt.Sprintf("key %s in the pool was never put", e.id)
		}
		if msg := lg.checkOwner(seq, e.owner); msg != "" {
			return msg
		}
	}
	return ""
}

// poolCrashChild is the child: open the pool, settle whatever the last
// life left uncertain, say "ready", then put, assign and take until killed.
// A broken expectation exits with status 3 and a message on stderr.
func poolCrashChild(dir string) {
	die := func(format string, a ...any) {
		fmt.Fprintf(os.Stderr, "child: "+format+"\n", a...)
		os.Exit(3)
	}
	run, _ := strconv.Atoi(os.Getenv(poolCrashRunEnv))
	rnd := rand.New(rand.NewPCG(uint64(run), 99))
	logPath := filepath.Join(dir, "log")
	lg, err := readPoolCrashLog(logPath)
	if err != nil {
		die("%v", err)
	}
	logf, err := os.OpenFile(logPath, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		die("%v", err)
	}
	if b, err := os.ReadFile(logPath); err != nil {
		die("%v", err)
	} else if whole := bytes.LastIndexByte(b, '\n') + 1; whole < len(b) {
		if err := logf.Truncate(int64(whole)); err != nil { // cut a torn last line
			die("%v", err)
		}
	}
	logLine := func(format string, a ...any) {
		if _, err := fmt.Fprintf(logf, format+"\n", a...); err != nil {
			die("%v", err)
		}
		if err := logf.Sync(); err != nil {
			die("%v", err)
		}
	}
	seqList := func(seqs []uint64) string {
		var b strings.Builder
		for i, s := range seqs {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(strconv.FormatUint(s, 10))
		}
		return b.String()
	}
	ids := func(seqs []uint64) []KeyID {
		out := make([]KeyID, len(seqs))
		for i, s := range seqs {
			out[i] = poolID(1, s)
		}
		return out
	}
	checkKeys := func(what string, got []Key, seqs []uint64) {
		if len(got) != len(seqs) {
			die("%s: got %d keys, want %d", what, len(got), len(seqs))
		}
		for i, k := range got {
			if k.ID != poolID(1, seqs[i]) {
				die("%s: key %d is %s, want seq %d", what, i, k.ID, seqs[i])
			}
			if !bytes.Equal(k.Bytes, poolKeyBytes(k.ID, DefaultSlotSize)) {
				die("%s: key seq %d has the wrong bytes", what, seqs[i])
			}
		}
	}

	db, err := meta.Open(filepath.Join(dir, "meta"))
	if err != nil {
		die("%v", err)
	}
	p, err := OpenPool(poolCrashConfig(dir, db))
	if err != nil {
		die("%v", err)
	}

	// Settle: take again whatever a cut-short operation may have left.
	_, present, uncertain := lg.state()
	for _, g := range uncertain {
		logLine("took %s", seqList(g))
		got, err := p.TakeByIDs(ids(g))
		switch {
		case errors.Is(err, ErrUnknownKey):
		case err != nil:
			die("settling %v: %v", g, err)
		default:
			checkKeys("settling", got, g)
		}
		logLine("done")
	}
	if st := p.Stats(); st.Stock != len(present) {
		die("after restart and settling, the pool has %d keys; the log says %d", st.Stock, len(present))
	}
	if msg := lg.checkIndex(p); msg != "" {
		die("after restart: %s", msg)
	}
	if _, err := os.Stdout.WriteString("ready\n"); err != nil {
		die("%v", err)
	}

	next := lg.nextSeq
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		switch r := rnd.IntN(4); {
		case r < 2 && len(present) < poolCrashMaxHeld:
			n := 1 + rnd.IntN(64)
			a, z := next, next+uint64(n)-1
			logLine("putting %d %d", a, z)
			for s := a; s <= z; s++ {
				lg.seqOf[poolID(1, s)], lg.batch[s] = s, a
			}
			if err := p.Put(poolNewKeys(1, a, n, DefaultSlotSize)); err != nil {
				die("Put: %v", err)
			}
			logLine("put %d %d", a, z)
			for s := a; s <= z; s++ {
				present = append(present, s)
			}
			next = z + 1
			if rnd.IntN(2) == 0 {
				if err := p.SetOwner(ids(present[len(present)-n:]), poolCrashOwner(a)); err != nil {
					die("SetOwner: %v", err)
				}
				logLine("assigned %d %d", a, z)
				lg.assigned[a] = true
			}
		case r == 2 && len(present) > 0:
			n := 1 + rnd.IntN(min(len(present), 64))
			want := present[:n]
			logLine("took %s", seqList(want))
			got, err := p.TakeNext(n, Owner("child"))
			if err != nil {
				die("TakeNext: %v", err)
			}
			checkKeys("TakeNext", got, want)
			logLine("done")
			present = slices.Clone(present[n:])
		case len(present) > 0:
			var want []uint64
			var keep []uint64
			for _, s := range present {
				if rnd.IntN(8) == 0 && len(want) < 64 {
					want = append(want, s)
				} else {
					keep = append(keep, s)
				}
			}
			if len(want) == 0 {
				continue
			}
			logLine("took %s", seqList(want))
			got, err := p.TakeByIDs(ids(want))
			if err != nil {
				die("TakeByIDs: %v", err)
			}
			checkKeys("TakeByIDs", got, want)
			for i, k := range got {
				if msg := lg.checkOwner(want[i], k.Owner); msg != "" {
					die("TakeByIDs: %s", msg)
				}
			}
			logLine("done")
			present = keep
		}
	}
	die("not killed within a minute")
}
