package qkdsim

import (
	"bytes"
	"errors"
	"log/slog"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/qrelay/qrelay/ringstore"
)

// openMeta opens the metadata store in dir; the test closes it (to
// restart) or cleanup does.
func openMeta(t testing.TB, dir string) *ringstore.Meta {
	t.Helper()
	m, err := ringstore.OpenMeta(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

func durable(t testing.TB, meta *ringstore.Meta, master bool, rate float64, clk *fakeClock, log *slog.Logger) *Sim {
	t.Helper()
	if log == nil {
		log = quiet()
	}
	cfg := Config{Link: "L", Seed: testSeed, Master: master, SecretRate: rate, BlockSize: bs, Meta: meta, Logger: log}
	if clk != nil {
		cfg.Now, cfg.After = clk.Now, clk.After
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// countTx makes s count its metadata transactions.
func countTx(s *Sim) *atomic.Int64 {
	var n atomic.Int64
	inner := s.update
	s.update = func(fn func(*ringstore.MetaTx) error) error {
		n.Add(1)
		return inner(fn)
	}
	return &n
}

// TestDurableMasterClockSteppedBack restarts a durable master with its
// clock an hour behind: it continues above the highest index it returned
// before, and says the clock is behind. A master in memory mode would
// repeat blocks.
func TestDurableMasterClockSteppedBack(t *testing.T) {
	dir := t.TempDir()
	meta := openMeta(t, dir)
	clk := newFakeClock(t0)
	m := durable(t, meta, true, 100*blockPerSecond, clk, nil)
	clk.Advance(time.Second)
	first, err := m.Fetch(t.Context(), 1000*bs)
	if err != nil {
		t.Fatal(err)
	}
	high := index(t, first[len(first)-1].ID)
	m.Close()
	meta.Close()

	meta = openMeta(t, dir)
	back := newFakeClock(t0.Add(-time.Hour))
	var logs bytes.Buffer
	m = durable(t, meta, true, 100*blockPerSecond, back, slog.New(slog.NewTextHandler(&logs, nil)))
	if !strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), "the clock is behind the highest block handed out before this node restarted") {
		t.Fatalf("restart with the clock stepped back logged %q; want a warning", logs.String())
	}
	back.Advance(time.Second)
	again, err := m.Fetch(t.Context(), 1000*bs)
	if err != nil {
		t.Fatal(err)
	}
	if len(again) == 0 || index(t, again[0].ID) != high+1 {
		t.Fatalf("after the restart the master's first block is %s; want L-%d, just above the record", again[0].ID, high+1)
	}
	// And the record follows: a third run (clock still behind) starts above
	// the second.
	high = index(t, again[len(again)-1].ID)
	m.Close()
	meta.Close()
	meta = openMeta(t, dir)
	m = durable(t, meta, true, 0, newFakeClock(t0.Add(-2*time.Hour)), nil)
	third, err := m.Fetch(t.Context(), bs)
	if err != nil || index(t, third[0].ID) != high+1 {
		t.Fatalf("third run: %v, %v; want L-%d", ids(third), err, high+1)
	}

	// In memory mode the same step back repeats indices: that is what the
	// record is for.
	mem, err := New(Config{Link: "L", Seed: testSeed, Master: true, BlockSize: bs, Logger: quiet(), Now: back.Now, After: back.After})
	if err != nil {
		t.Fatal(err)
	}
	defer mem.Close()
	b, err := mem.Fetch(t.Context(), bs)
	if err != nil || index(t, b[0].ID) > high {
		t.Fatalf("memory mode, clock behind: %v, %v; the test expects it to number below %d", ids(b), err, high)
	}
}

// TestDurableSlaveRestart restarts a durable slave: it refuses a block it
// delivered before the restart, and delivers the next new ones, identical
// to the master's.
func TestDurableSlaveRestart(t *testing.T) {
	dir := t.TempDir()
	meta := openMeta(t, dir)
	m := durable(t, meta, true, 0, nil, nil) // one store for both ends: their keys differ
	s := durable(t, meta, false, 0, nil, nil)
	blocks, err := m.Fetch(t.Context(), 6*bs)
	if err != nil || len(blocks) != 6 {
		t.Fatal(blocks, err)
	}
	all := ids(blocks)
	if _, err := s.Get(t.Context(), all[:3]); err != nil {
		t.Fatal(err)
	}
	for life := range 2 {
		s.Close()
		m.Close()
		meta.Close()
		meta = openMeta(t, dir)
		s = durable(t, meta, false, 0, nil, nil)
		for _, id := range all[:3+life] {
			_, err := s.Get(t.Context(), []string{all[5], id})
			want := "block " + id + " was delivered before this node restarted: refused, a block used twice would reuse pad"
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Fatalf("life %d: Get(%s) after a restart: %v; want %q", life, id, err, want)
			}
		}
		got, err := s.Get(t.Context(), all[3+life:4+life])
		if err != nil {
			t.Fatalf("life %d: Get of a block not delivered before: %v", life, err)
		}
		if !bytes.Equal(got[0].Data, blocks[3+life].Data) || got[0].ID != all[3+life] {
			t.Fatalf("life %d: slave's block %s differs from the master's", life, got[0].ID)
		}
		if _, err := s.Get(t.Context(), all[3+life:4+life]); err == nil || !strings.Contains(err.Error(), "already delivered") {
			t.Fatalf("life %d: second Get in one run: %v; want already delivered", life, err)
		}
	}
	// A restarted master numbers above everything, so the slave takes its
	// new blocks.
	m = durable(t, meta, true, 0, nil, nil)
	next, err := m.Fetch(t.Context(), 2*bs)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(t.Context(), ids(next)); err != nil {
		t.Fatalf("Get of a restarted master's blocks: %v", err)
	}
}

// TestDurableOneTransactionPerCall: a Fetch or Get writes one metadata
// transaction whatever the number of blocks, and none if its record is
// already high enough.
func TestDurableOneTransactionPerCall(t *testing.T) {
	meta := openMeta(t, t.TempDir())
	m := durable(t, meta, true, 0, nil, nil)
	s := durable(t, meta, false, 0, nil, nil)
	mtx, stx := countTx(m), countTx(s)
	var all []string
	for k, n := range []int{1, 1000, 4096} {
		b, err := m.Fetch(t.Context(), n*bs)
		if err != nil || len(b) != n {
			t.Fatal(len(b), err)
		}
		if got := mtx.Load(); got != int64(k+1) {
			t.Fatalf("after %d Fetches (the last of %d blocks): %d transactions", k+1, n, got)
		}
		all = append(all, ids(b)...)
	}
	// The slave takes the newest first, then the older ones out of order:
	// only the first call raises its record.
	if _, err := s.Get(t.Context(), all[len(all)-100:]); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(t.Context(), all[:len(all)-100]); err != nil {
		t.Fatal(err)
	}
	if got := stx.Load(); got != 1 {
		t.Fatalf("two Gets of %d blocks, the second below the first: %d transactions, want 1", len(all), got)
	}
}

// TestDurablePersistFailure: a record that cannot be written fails the
// call, and the blocks are not handed out then or later in the run.
func TestDurablePersistFailure(t *testing.T) {
	meta := openMeta(t, t.TempDir())
	m := durable(t, meta, true, 0, nil, nil)
	s := durable(t, meta, false, 0, nil, nil)
	good, err := m.Fetch(t.Context(), 2*bs)
	if err != nil {
		t.Fatal(err)
	}
	broken := errors.New("disk on fire")
	var fail atomic.Bool
	for _, x := range []*Sim{m, s} {
		inner := x.update
		x.update = func(fn func(*ringstore.MetaTx) error) error {
			if fail.Load() {
				return broken
			}
			return inner(fn)
		}
	}
	fail.Store(true)
	if b, err := m.Fetch(t.Context(), 3*bs); !errors.Is(err, broken) || b != nil || !strings.Contains(err.Error(), "the blocks are dropped, not handed out") {
		t.Fatalf("Fetch with a failing store: %d blocks, %v", len(b), err)
	}
	if b, err := s.Get(t.Context(), ids(good)); !errors.Is(err, broken) || b != nil {
		t.Fatalf("Get with a failing store: %d blocks, %v", len(b), err)
	}
	if st := m.Status(); st.Delivered != 2*bs {
		t.Fatalf("master counts %d bytes delivered, want %d", st.Delivered, 2*bs)
	}
	if st := s.Status(); st.Delivered != 0 {
		t.Fatalf("slave counts %d bytes delivered, want 0", st.Delivered)
	}
	fail.Store(false)
	next, err := m.Fetch(t.Context(), bs)
	if err != nil || index(t, next[0].ID) != index(t, good[1].ID)+4 {
		t.Fatalf("Fetch after the store recovered: %v, %v; want the blocks after the dropped ones", ids(next), err)
	}
	if _, err := s.Get(t.Context(), ids(good)); err == nil || !strings.Contains(err.Error(), "already delivered") {
		t.Fatalf("Get of blocks whose record failed: %v; want them refused for the rest of the run", err)
	}
}

// TestDurableBadRecord: a record that does not decode refuses New, naming
// the key.
func TestDurableBadRecord(t *testing.T) {
	meta := openMeta(t, t.TempDir())
	good := record{master: true, blockSize: bs, high: 42}.encode()
	flip := func(i int) []byte { b := bytes.Clone(good); b[i] ^= 1; return b }
	for _, tc := range []struct {
		name   string
		master bool
		val    []byte
		want   string
	}{
		{"short", true, good[:21], "21 bytes, want 22"},
		{"magic", true, flip(0), "magic"},
		{"version", true, flip(4), "version 0, want 1"},
		{"CRC", true, flip(12), "CRC-32C"},
		{"other end", false, good, "record of the other end (role master)"},
	} {
		key := recordKey("L", tc.master)
		if err := meta.Update(func(tx *ringstore.MetaTx) error { return tx.Set(key, tc.val) }); err != nil {
			t.Fatal(err)
		}
		_, err := New(Config{Link: "L", Seed: testSeed, Master: tc.master, BlockSize: bs, Meta: meta, Logger: quiet()})
		if err == nil || !strings.Contains(err.Error(), `metadata record "`+key+`"`) || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "refusing to start") {
			t.Errorf("%s: New = %v; want it to name %q and say %q", tc.name, err, key, tc.want)
		}
		if err := meta.Update(func(tx *ringstore.MetaTx) error { return tx.Delete(key) }); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := New(Config{Link: "a/b", Seed: testSeed, Meta: meta, Logger: quiet()}); err == nil || !strings.Contains(err.Error(), "no '/'") {
		t.Errorf("durable link with a slash: %v", err)
	}
}

// TestDurableBlockSizeChange: a restart with another block size continues
// past the keystream the recorded blocks covered, at both ends.
func TestDurableBlockSizeChange(t *testing.T) {
	dir := t.TempDir()
	meta := openMeta(t, dir)
	m := durable(t, meta, true, 0, nil, nil)
	s := durable(t, meta, false, 0, nil, nil)
	b, err := m.Fetch(t.Context(), 3*bs)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(t.Context(), ids(b)); err != nil {
		t.Fatal(err)
	}
	high := index(t, b[2].ID)
	m.Close()
	s.Close()
	meta.Close()
	meta = openMeta(t, dir)
	const small = bs / 8
	clk := newFakeClock(time.Unix(0, int64(high))) // the clock would allow a repeat
	mk := func(master bool) *Sim {
		x, err := New(Config{Link: "L", Seed: testSeed, Master: master, BlockSize: small, Meta: meta, Logger: quiet(), Now: clk.Now, After: clk.After})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { x.Close() })
		return x
	}
	m, s = mk(true), mk(false)
	nb, err := m.Fetch(t.Context(), small)
	if err != nil {
		t.Fatal(err)
	}
	if first := index(t, nb[0].ID); first*small < (high+1)*bs {
		t.Fatalf("first block after shrinking to %d bytes is %d: it overlaps keystream of block %d of %d bytes", small, first, high, bs)
	}
	below := "L-" + strconv.FormatUint((high+1)*bs/small-1, 10)
	if _, err := s.Get(t.Context(), []string{below}); err == nil || !strings.Contains(err.Error(), "before this node restarted") {
		t.Fatalf("slave Get of %s, within the keystream delivered before: %v", below, err)
	}
	if _, err := s.Get(t.Context(), ids(nb)); err != nil {
		t.Fatalf("slave Get of the master's new block: %v", err)
	}
}

func TestNextAfter(t *testing.T) {
	for _, tc := range []struct {
		high      uint64
		old, size int
		want      uint64
		ok        bool
	}{
		{0, 64, 64, 1, true},
		{41, 64, 64, 42, true},
		{9, 64, 128, 5, true},  // 10×64 = 640 = 5×128
		{10, 64, 128, 6, true}, // 11×64 = 704 → 6×128 = 768
		{9, 128, 64, 20, true}, // 10×128 = 20×64
		{1 << 62, 8, 16, 1<<61 + 1, true},
		{1 << 62, 4096, 8, 0, false}, // beyond uint64
		{^uint64(0), 8, 8, 0, false},
	} {
		got, ok := nextAfter(tc.high, tc.old, tc.size)
		if got != tc.want || ok != tc.ok {
			t.Errorf("nextAfter(%d, %d, %d) = %d, %v; want %d, %v", tc.high, tc.old, tc.size, got, ok, tc.want, tc.ok)
		}
	}
}

// BenchmarkDurableFetch fetches batches of blocks in durable mode and
// reports the metadata transactions per block: 1/batch, never one per
// block.
func BenchmarkDurableFetch(b *testing.B) {
	meta := openMeta(b, b.TempDir())
	s := durable(b, meta, true, 0, nil, nil)
	txs := countTx(s)
	const batch = 1024
	b.SetBytes(batch * bs)
	blocks := 0
	for b.Loop() {
		out, err := s.Fetch(b.Context(), batch*bs)
		if err != nil {
			b.Fatal(err)
		}
		blocks += len(out)
	}
	b.ReportMetric(float64(txs.Load())/float64(blocks), "tx/block")
}
