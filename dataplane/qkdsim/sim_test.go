package qkdsim

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"log/slog"
	"math"
	"math/bits"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/qrelay/qrelay/dataplane/qkd"
	"github.com/qrelay/qrelay/ringstore"
)

var _ qkd.Source = (*Sim)(nil)

var (
	testSeed = [32]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32}
	t0       = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
)

const bs = 64 // block size of most tests

// blockPerSecond is the SecretRate that makes one block of bs bytes per
// second at the default QBER.
const blockPerSecond = 8 * bs

func quiet() *slog.Logger { return slog.New(slog.DiscardHandler) }

// pair makes both ends of link "L" on one fake clock (nil: real clock).
func pair(t *testing.T, rate float64, clk *fakeClock) (master, slave *Sim) {
	t.Helper()
	mk := func(m bool) *Sim {
		cfg := Config{Link: "L", Seed: testSeed, Master: m, SecretRate: rate, BlockSize: bs, Logger: quiet()}
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
	return mk(true), mk(false)
}

func ids(bl []ringstore.Block) []string {
	out := make([]string, len(bl))
	for i, b := range bl {
		out[i] = b.ID
	}
	return out
}

func index(t *testing.T, id string) uint64 {
	t.Helper()
	i, err := strconv.ParseUint(strings.TrimPrefix(id, "L-"), 10, 64)
	if err != nil {
		t.Fatalf("block ID %q: %v", id, err)
	}
	return i
}

func TestBothEndsProduceIdenticalBlocks(t *testing.T) {
	for _, rate := range []float64{0, 1e6} {
		t.Run("rate="+strconv.FormatFloat(rate, 'g', -1, 64), func(t *testing.T) {
			clk := newFakeClock(t0)
			m, s := pair(t, rate, clk)
			clk.Advance(time.Second)
			got, err := m.Fetch(t.Context(), 10*bs)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != 10 {
				t.Fatalf("Fetch(10 blocks) returned %d blocks", len(got))
			}
			back, err := s.Get(t.Context(), ids(got))
			if err != nil {
				t.Fatal(err)
			}
			for i := range got {
				if back[i].ID != got[i].ID || back[i].Source != "qkdsim:L" || got[i].Source != "qkdsim:L" {
					t.Fatalf("block %d: master %q/%q, slave %q/%q", i, got[i].ID, got[i].Source, back[i].ID, back[i].Source)
				}
				if !bytes.Equal(back[i].Data, got[i].Data) {
					t.Fatalf("block %s differs between the ends", got[i].ID)
				}
				if len(got[i].Data) != bs {
					t.Fatalf("block %s has %d bytes, want %d", got[i].ID, len(got[i].Data), bs)
				}
				if i > 0 && bytes.Equal(got[i].Data, got[i-1].Data) {
					t.Fatalf("blocks %s and %s are equal", got[i-1].ID, got[i].ID)
				}
			}
			// Data of each block is its own: appending to one must not
			// overwrite the next.
			_ = append(got[0].Data, 0xFF)
			if got[1].Data[0] != back[1].Data[0] {
				t.Fatal("appending to block 0 changed block 1")
			}
		})
	}
}

// TestKnownAnswer pins the block format (key derivation, counter layout),
// which both ends of a link must share across versions, block by block,
// also where the counter's low 64 bits wrap inside a batch.
func TestKnownAnswer(t *testing.T) {
	mac := hmac.New(sha256.New, testSeed[:])
	mac.Write([]byte("qrelay qkdsim v1\x00L"))
	blk, _ := aes.NewCipher(mac.Sum(nil))
	for _, start := range []time.Time{t0, time.Unix(0, 1<<62-3)} {
		clk := newFakeClock(start)
		m, s := pair(t, 0, clk)
		got, err := m.Fetch(t.Context(), 6*bs)
		if err != nil {
			t.Fatal(err)
		}
		if want := "L-" + strconv.FormatInt(start.UnixNano(), 10); got[0].ID != want {
			t.Fatalf("first ID %q, want %q (the clock in ns at New)", got[0].ID, want)
		}
		for _, b := range got {
			var iv [16]byte
			hi, lo := bits.Mul64(index(t, b.ID), bs/16)
			binary.BigEndian.PutUint64(iv[:8], hi)
			binary.BigEndian.PutUint64(iv[8:], lo)
			want := make([]byte, bs)
			cipher.NewCTR(blk, iv[:]).XORKeyStream(want, want)
			if !bytes.Equal(b.Data, want) {
				t.Fatalf("block %s: got %x, want %x", b.ID, b.Data[:16], want[:16])
			}
		}
		// The slave makes the same bytes asking one block at a time,
		// out of order.
		for _, k := range []int{4, 1, 5, 0, 3, 2} {
			g, err := s.Get(t.Context(), []string{got[k].ID})
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(g[0].Data, got[k].Data) {
				t.Fatalf("block %s alone differs from the batch", got[k].ID)
			}
		}
	}
}

// TestParallelGeneration checks a batch large enough to be split across
// goroutines against the blocks made one at a time.
func TestParallelGeneration(t *testing.T) {
	m, s := pair(t, 0, nil)
	got, err := m.Fetch(t.Context(), 3*parallelMin+5*bs)
	if err != nil {
		t.Fatal(err)
	}
	for k := 0; k < len(got); k += 997 {
		g, err := s.Get(t.Context(), []string{got[k].ID})
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(g[0].Data, got[k].Data) {
			t.Fatalf("block %d (%s) of a parallel batch differs from the block alone", k, got[k].ID)
		}
	}
}

func TestSeedsAndLinksDiffer(t *testing.T) {
	clk := newFakeClock(t0)
	first := func(link string, seed [32]byte) []byte {
		s, err := New(Config{Link: link, Seed: seed, Master: true, BlockSize: bs, Logger: quiet(), Now: clk.Now, After: clk.After})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		b, err := s.Fetch(t.Context(), bs)
		if err != nil {
			t.Fatal(err)
		}
		return b[0].Data
	}
	other := testSeed
	other[31] ^= 1
	a, b, c := first("L", testSeed), first("L", other), first("M", testSeed)
	if bytes.Equal(a, b) {
		t.Fatal("different seeds produced the same block")
	}
	if bytes.Equal(a, c) {
		t.Fatal("different links with one seed produced the same block")
	}
}

func TestPacing(t *testing.T) {
	clk := newFakeClock(t0)
	m, _ := pair(t, blockPerSecond, clk)
	type res struct {
		b   []ringstore.Block
		err error
	}
	done := make(chan res, 1)
	go func() {
		b, err := m.Fetch(t.Context(), 100*bs)
		done <- res{b, err}
	}()
	clk.waitArmed(t, 1)
	clk.Advance(999 * time.Millisecond)
	select {
	case r := <-done:
		t.Fatalf("Fetch returned %d blocks, %v after 0.999 of a block period", len(r.b), r.err)
	default:
	}
	clk.Advance(time.Millisecond)
	r := <-done
	if r.err != nil || len(r.b) != 1 {
		t.Fatalf("after one block period Fetch returned %d blocks, %v; want 1", len(r.b), r.err)
	}
	if !r.b[0].Time.Equal(t0.Add(time.Second)) {
		t.Fatalf("block time %v, want %v", r.b[0].Time, t0.Add(time.Second))
	}
	seen := map[string]bool{r.b[0].ID: true}
	last := index(t, r.b[0].ID)

	clk.Advance(10*time.Second + 500*time.Millisecond)
	for _, want := range []int{3, 3, 3, 1} {
		b, err := m.Fetch(t.Context(), 3*bs+bs/2)
		if err != nil || len(b) != want {
			t.Fatalf("Fetch(3.5 blocks) returned %d blocks, %v; want %d", len(b), err, want)
		}
		for _, blk := range b {
			if seen[blk.ID] {
				t.Fatalf("Fetch returned block %s twice", blk.ID)
			}
			seen[blk.ID] = true
			if i := index(t, blk.ID); i != last+1 {
				t.Fatalf("block %s follows index %d", blk.ID, last)
			} else {
				last = i
			}
		}
	}
	if st := m.Status(); st.Delivered != 11*bs || !st.LastBlock.Equal(t0.Add(11*time.Second)) || st.SecretRate != blockPerSecond {
		t.Fatalf("status %+v: want 11 blocks delivered, last block at +11s, rate %d", st, blockPerSecond)
	}
	// Half a block is banked: the next block needs 0.5 s more.
	go func() {
		b, err := m.Fetch(t.Context(), bs)
		done <- res{b, err}
	}()
	clk.waitArmed(t, 1)
	clk.Advance(499 * time.Millisecond)
	select {
	case r := <-done:
		t.Fatalf("Fetch returned %d blocks, %v before the next block", len(r.b), r.err)
	default:
	}
	clk.Advance(time.Millisecond)
	if r := <-done; r.err != nil || len(r.b) != 1 || index(t, r.b[0].ID) != last+1 {
		t.Fatalf("Fetch returned %v, %v; want block %d", ids(r.b), r.err, last+1)
	}
}

func TestFetchHonoursContext(t *testing.T) {
	clk := newFakeClock(t0)
	m, _ := pair(t, blockPerSecond, clk)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		_, err := m.Fetch(ctx, bs)
		done <- err
	}()
	clk.waitArmed(t, 1)
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Fetch after cancel: %v, want context.Canceled", err)
	}
}

func TestUnlimitedReturnsAtOnce(t *testing.T) {
	m, s := pair(t, 0, nil)
	b, err := m.Fetch(t.Context(), 0)
	if err != nil || len(b) != 1 {
		t.Fatalf("Fetch(0) = %d blocks, %v; want 1", len(b), err)
	}
	b, err = m.Fetch(t.Context(), 1000*bs+1)
	if err != nil || len(b) != 1000 {
		t.Fatalf("Fetch(1000 blocks) = %d blocks, %v", len(b), err)
	}
	if _, err := s.Get(t.Context(), ids(b)); err != nil {
		t.Fatal(err)
	}
}

func TestQBER(t *testing.T) {
	if g := Gain(DefaultQBER); math.Abs(g-1) > 1e-12 {
		t.Fatalf("Gain(default) = %v, want 1", g)
	}
	if g := Gain(0.05); !(g > 0.3 && g < 1) {
		t.Fatalf("Gain(0.05) = %v, want between 0.3 and 1", g)
	}
	if g := Gain(0.12); g != 0 {
		t.Fatalf("Gain(0.12) = %v, want 0", g)
	}
	clk := newFakeClock(t0)
	m, _ := pair(t, blockPerSecond, clk)
	m.SetQBER(0.05)
	if st := m.Status(); !st.Up || st.QBER != 0.05 || math.Abs(st.SecretRate-blockPerSecond*Gain(0.05)) > 1e-9 {
		t.Fatalf("status at QBER 5%%: %+v", st)
	}
	clk.Advance(10 * time.Second) // produces 10 × Gain(0.05) blocks
	b, err := m.Fetch(t.Context(), 100*bs)
	if want := int(10 * Gain(0.05)); err != nil || len(b) != want {
		t.Fatalf("10 s at QBER 5%% gave %d blocks, %v; want %d", len(b), err, want)
	}

	// A waiting Fetch learns at once that the link aborted.
	done := make(chan error, 1)
	go func() {
		_, err := m.Fetch(t.Context(), bs)
		done <- err
	}()
	clk.waitArmed(t, 1)
	m.SetQBER(0.15)
	err = <-done
	if !errors.Is(err, qkd.ErrDown) || !strings.Contains(err.Error(), "QBER 0.1500 above threshold 0.1100") {
		t.Fatalf("Fetch at QBER 15%%: %v; want ErrDown naming the QBER", err)
	}
	st := m.Status()
	if st.Up || st.SecretRate != 0 || !strings.Contains(st.Reason, "QBER") {
		t.Fatalf("status at QBER 15%%: %+v", st)
	}
	// Nothing is produced while down.
	clk.Advance(time.Hour)
	m.SetQBER(0.02)
	clk.Advance(2 * time.Second)
	if b, err := m.Fetch(t.Context(), 100*bs); err != nil || len(b) > 3 {
		t.Fatalf("after an hour down and 2 s up Fetch gave %d blocks, %v; want at most 3", len(b), err)
	}

	// A link configured above its threshold starts down.
	hi, err := New(Config{Link: "L", Seed: testSeed, Master: true, QBER: 0.2, QBERThreshold: 0.25, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	defer hi.Close()
	if _, err := hi.Fetch(t.Context(), bs); !errors.Is(err, qkd.ErrDown) || !strings.Contains(err.Error(), "no secret key") {
		t.Fatalf("Fetch at QBER 20%%: %v, want ErrDown (no secret key)", err)
	}
}

func TestOutage(t *testing.T) {
	clk := newFakeClock(t0)
	m, s := pair(t, blockPerSecond, clk)
	done := make(chan error, 1)
	go func() {
		_, err := m.Fetch(t.Context(), bs)
		done <- err
	}()
	clk.waitArmed(t, 1)
	m.SetOutage(true, "fibre cut at km 12")
	err := <-done
	if !errors.Is(err, qkd.ErrDown) || !strings.Contains(err.Error(), "fibre cut at km 12") {
		t.Fatalf("Fetch during outage: %v; want ErrDown with the reason", err)
	}
	if st := m.Status(); st.Up || !strings.Contains(st.Reason, "fibre cut") || !st.Simulated || st.Kind != "simulator" {
		t.Fatalf("status during outage: %+v", st)
	}
	clk.Advance(time.Hour)
	m.SetOutage(false, "")
	if st := m.Status(); !st.Up || st.Reason != "" {
		t.Fatalf("status after outage: %+v", st)
	}
	clk.Advance(2 * time.Second)
	b, err := m.Fetch(t.Context(), 100*bs)
	if err != nil || len(b) != 2 {
		t.Fatalf("2 s after an hour's outage Fetch gave %d blocks, %v; want 2", len(b), err)
	}

	// The slave's device holds what it produced before its outage, and
	// cannot produce more during one.
	s.SetOutage(true, "slave module cold")
	clk.Advance(time.Second)
	if got, err := s.Get(t.Context(), ids(b)); err != nil || len(got) != 2 {
		t.Fatalf("slave Get of blocks made before its outage: %d blocks, %v", len(got), err)
	}
	future := "L-" + strconv.FormatInt(clk.Now().UnixNano()-int64(time.Millisecond), 10)
	if _, err := s.Get(t.Context(), []string{future}); !errors.Is(err, qkd.ErrDown) || !strings.Contains(err.Error(), future) || !strings.Contains(err.Error(), "slave module cold") {
		t.Fatalf("slave Get of a block due during its outage: %v; want ErrDown naming the block and reason", err)
	}
}

func TestGetWaitsForItsDevice(t *testing.T) {
	mclk, sclk := newFakeClock(t0.Add(3*time.Second)), newFakeClock(t0)
	m, err := New(Config{Link: "L", Seed: testSeed, Master: true, SecretRate: blockPerSecond, BlockSize: bs, Logger: quiet(), Now: mclk.Now, After: mclk.After})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	s, err := New(Config{Link: "L", Seed: testSeed, SecretRate: blockPerSecond, BlockSize: bs, Logger: quiet(), Now: sclk.Now, After: sclk.After})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	mclk.Advance(time.Second)
	b, err := m.Fetch(t.Context(), bs)
	if err != nil {
		t.Fatal(err)
	}
	// The slave's clock is 3 s behind: its device makes the block 3 s
	// later.
	type res struct {
		b   []ringstore.Block
		err error
	}
	done := make(chan res, 1)
	go func() {
		g, err := s.Get(t.Context(), ids(b))
		done <- res{g, err}
	}()
	sclk.waitArmed(t, 1)
	sclk.Advance(3 * time.Second)
	select {
	case r := <-done:
		t.Fatalf("Get returned %v, %v before its device made the block", ids(r.b), r.err)
	default:
	}
	sclk.Advance(time.Nanosecond)
	r := <-done
	if r.err != nil || !bytes.Equal(r.b[0].Data, b[0].Data) {
		t.Fatalf("Get after the wait: %v", r.err)
	}
}

func TestGetRefuses(t *testing.T) {
	clk := newFakeClock(t0)
	m, s := pair(t, blockPerSecond, clk)
	clk.Advance(5 * time.Second)
	b, err := m.Fetch(t.Context(), 5*bs)
	if err != nil {
		t.Fatal(err)
	}
	good := ids(b)
	far := "L-" + strconv.FormatInt(t0.Add(time.Hour).UnixNano(), 10)
	for _, tc := range []struct {
		ids  []string
		bad  string
		want string
	}{
		{[]string{good[0], "M-5"}, "M-5", "not of this link"},
		{[]string{"LL-5"}, "LL-5", "not of this link"},
		{[]string{"L-"}, "L-", "malformed"},
		{[]string{"L-01"}, "L-01", "malformed"},
		{[]string{"L-+1"}, "L-+1", "malformed"},
		{[]string{"L--1"}, "L--1", "malformed"},
		{[]string{"L-1x"}, "L-1x", "malformed"},
		{[]string{"L-18446744073709551616"}, "L-18446744073709551616", "malformed"},
		{[]string{good[1], good[2], good[1]}, good[1], "asked twice"},
		{[]string{good[0], far}, far, "unknown"},
	} {
		_, err := s.Get(t.Context(), tc.ids)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), `"`+tc.bad+`"`) && !strings.Contains(err.Error(), " "+tc.bad+" ") {
			t.Errorf("Get(%q) = %v; want an error naming %q, saying %q", tc.ids, err, tc.bad, tc.want)
		}
	}
	// Nothing above was delivered: the blocks may still be got, in any
	// order and in several calls, but each only once.
	if _, err := s.Get(t.Context(), []string{good[3], good[1]}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(t.Context(), []string{good[0], good[2], good[4]}); err != nil {
		t.Fatal(err)
	}
	for _, id := range good {
		if _, err := s.Get(t.Context(), []string{id}); err == nil || !strings.Contains(err.Error(), "block "+id+" already delivered") {
			t.Fatalf("second Get of %s: %v; want already delivered", id, err)
		}
	}
	if st := s.Status(); st.Delivered != 5*bs {
		t.Fatalf("slave delivered %d bytes, want %d", st.Delivered, 5*bs)
	}
	if _, err := m.Get(t.Context(), good); err == nil || !strings.Contains(err.Error(), "master") {
		t.Fatalf("Get at the master: %v", err)
	}
	if _, err := s.Fetch(t.Context(), bs); err == nil || !strings.Contains(err.Error(), "slave") {
		t.Fatalf("Fetch at the slave: %v", err)
	}
}

func TestRestartNeverRepeats(t *testing.T) {
	seen := map[string]bool{}
	clk := newFakeClock(t0)
	for run := range 3 {
		m, err := New(Config{Link: "L", Seed: testSeed, Master: true, SecretRate: 100 * blockPerSecond, BlockSize: bs, Logger: quiet(), Now: clk.Now, After: clk.After})
		if err != nil {
			t.Fatal(err)
		}
		for range 5 {
			clk.Advance(100 * time.Millisecond)
			b, err := m.Fetch(t.Context(), 1000*bs)
			if err != nil {
				t.Fatal(err)
			}
			for _, blk := range b {
				if seen[blk.ID] {
					t.Fatalf("run %d: block %s was handed out by an earlier run", run, blk.ID)
				}
				seen[blk.ID] = true
				if index(t, blk.ID) > uint64(clk.Now().UnixNano()) {
					t.Fatalf("block %s numbered ahead of the clock %d", blk.ID, clk.Now().UnixNano())
				}
			}
		}
		m.Close()
		// The restart happens later on the clock, as it does in life.
		clk.Advance(time.Millisecond)
	}
	if len(seen) != 3*5*10 {
		t.Fatalf("%d blocks in 3 runs of 0.5 s at 100 blocks/s, want 150", len(seen))
	}
}

func TestCloseWakesWaiters(t *testing.T) {
	clk := newFakeClock(t0)
	m, s := pair(t, blockPerSecond, clk)
	done := make(chan error, 2)
	go func() {
		_, err := m.Fetch(t.Context(), bs)
		done <- err
	}()
	go func() {
		_, err := s.Get(t.Context(), []string{"L-" + strconv.FormatInt(t0.Add(time.Second).UnixNano(), 10)})
		done <- err
	}()
	clk.waitArmed(t, 2)
	m.Close()
	s.Close()
	for range 2 {
		if err := <-done; !errors.Is(err, ErrClosed) {
			t.Fatalf("waiting call after Close: %v, want ErrClosed", err)
		}
	}
	if m.key != ([32]byte{}) {
		t.Fatal("Close left the AES key in memory")
	}
	if st := m.Status(); st.Up || st.Reason != "simulator closed" {
		t.Fatalf("status after Close: %+v", st)
	}
	if err := m.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{Seed: testSeed}, "Link is empty"},
		{Config{Link: "a b", Seed: testSeed}, "without spaces"},
		{Config{Link: "L"}, "Seed is all zero"},
		{Config{Link: "L", Seed: testSeed, BlockSize: 12}, "BlockSize 12"},
		{Config{Link: "L", Seed: testSeed, SecretRate: -1}, "SecretRate -1"},
		{Config{Link: "L", Seed: testSeed, SecretRate: math.NaN()}, "SecretRate NaN"},
		{Config{Link: "L", Seed: testSeed, SecretRate: 1e15, BlockSize: 8}, "blocks of 8 bytes per second"},
		{Config{Link: "L", Seed: testSeed, QBER: 0.7}, "QBER 0.7"},
		{Config{Link: "L", Seed: testSeed, QBERThreshold: -0.1}, "QBERThreshold -0.1"},
		{Config{Link: "L", Seed: testSeed, MaxSkew: -1}, "MaxSkew"},
	} {
		if _, err := New(tc.cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New(%+v) = %v; want an error saying %q", tc.cfg, err, tc.want)
		}
	}
}

func TestWarnsItIsSimulated(t *testing.T) {
	var buf bytes.Buffer
	s, err := New(Config{Link: "L", Seed: testSeed, Master: true, Logger: slog.New(slog.NewTextHandler(&buf, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	out := buf.String()
	if !strings.Contains(out, "level=WARN") || !strings.Contains(out, "QKD link L is SIMULATED: keys come from a shared seed, not from quantum physics; for tests and demos only") {
		t.Fatalf("New logged %q; want the simulator warning", out)
	}
	if strings.Count(out, "\n") != 1 {
		t.Fatalf("New logged %d lines, want one", strings.Count(out, "\n"))
	}
	if st := s.Status(); !st.Simulated || st.Kind != "simulator" || !st.Up {
		t.Fatalf("status %+v", st)
	}
}

func TestRuns(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	var set runs
	ref := map[uint64]bool{}
	for range 20000 {
		i := r.Uint64N(3000)
		if set.contains(i) != ref[i] {
			t.Fatalf("contains(%d) = %v, want %v", i, set.contains(i), ref[i])
		}
		if !ref[i] {
			set.add(i)
			ref[i] = true
		}
	}
	for k := 1; k < len(set); k++ {
		if set[k-1].hi+1 >= set[k].lo {
			t.Fatalf("runs %v and %v overlap or touch", set[k-1], set[k])
		}
	}
	for i := range uint64(3000) {
		if set.contains(i) != ref[i] {
			t.Fatalf("contains(%d) = %v, want %v", i, set.contains(i), ref[i])
		}
	}
	// Beyond maxRuns the oldest gap is forgotten (refused), never a
	// delivered index.
	var sparse runs
	for i := range uint64(maxRuns + 10) {
		sparse.add(2 * i)
	}
	if len(sparse) != maxRuns {
		t.Fatalf("%d runs, want %d", len(sparse), maxRuns)
	}
	for i := range uint64(maxRuns + 10) {
		if !sparse.contains(2 * i) {
			t.Fatalf("delivered index %d forgotten", 2*i)
		}
	}
	if !sparse.contains(1) || sparse.contains(2*(maxRuns+9)-1) {
		t.Fatal("the oldest gaps should be merged, the newest kept")
	}
}

func BenchmarkFetch(b *testing.B) {
	s, err := New(Config{Link: "bench", Seed: testSeed, Master: true, Logger: quiet()})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	const batch = 1 << 20
	b.SetBytes(batch)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Fetch(b.Context(), batch); err != nil {
			b.Fatal(err)
		}
	}
}

// TestCloseDuringFetch closes the simulator while Fetch generates blocks
// on another goroutine: Fetch finishes or fails with ErrClosed, and never
// touches the dropped cipher (the race detector watches).
func TestCloseDuringFetch(t *testing.T) {
	s, err := New(Config{Link: "L", Seed: testSeed, Master: true, BlockSize: 64 << 10, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error)
	go func() {
		for {
			if _, err := s.Fetch(context.Background(), 4<<20); err != nil {
				done <- err
				return
			}
		}
	}()
	s.Close()
	if err := <-done; !errors.Is(err, ErrClosed) {
		t.Fatalf("Fetch after Close: %v, want ErrClosed", err)
	}
}
