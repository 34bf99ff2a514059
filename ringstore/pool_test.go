//go:build linux

package ringstore

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"math/bits"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/qrelay/qrelay/ringstore/internal/meta"
)

// poolClock is an injectable clock for TTL tests.
type poolClock struct {
	mu  sync.Mutex
	now time.Time
}

func newPoolClock() *poolClock { return &poolClock{now: time.Unix(1_700_000_000, 0)} }

func (c *poolClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *poolClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// poolEnv is where a test's pools live: memory mode, or a directory and a
// metadata store that survive reopening the pool.
type poolEnv struct {
	durable bool
	dir     string
	db      *meta.DB
}

var poolModes = []string{"memory", "durable"}

func newPoolEnv(t testing.TB, mode string) *poolEnv {
	t.Helper()
	if mode == "memory" {
		return &poolEnv{}
	}
	dir := t.TempDir()
	db, err := meta.Open(filepath.Join(dir, "meta"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return &poolEnv{durable: true, dir: filepath.Join(dir, "pools"), db: db}
}

func (e *poolEnv) config(name string, slots int) PoolConfig {
	cfg := PoolConfig{Name: name, Slots: slots}
	if e.durable {
		cfg.Dir, cfg.Meta = e.dir, e.db
	}
	return cfg
}

func (e *poolEnv) open(t testing.TB, cfg PoolConfig) *Pool {
	t.Helper()
	p, err := OpenPool(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// poolKeyBytes is the deterministic content of key id: 16 to 64 bytes,
// length and bytes both derived from the ID.
func poolKeyBytes(id KeyID, slotSize int) []byte {
	h := sha256.Sum256(id[:])
	h2 := sha256.Sum256(h[:])
	b := append(h[:], h2[:]...)
	n := 16 + int(h[0])%(len(b)-16+1)
	return b[:min(n, slotSize)]
}

func poolID(flow, seq uint64) KeyID { return DeriveKeyID("nodeA", "nodeB", flow, seq) }

func poolNewKeys(flow, from uint64, n, slotSize int) []NewKey {
	keys := make([]NewKey, n)
	for i := range keys {
		id := poolID(flow, from+uint64(i))
		keys[i] = NewKey{ID: id, Key: poolKeyBytes(id, slotSize)}
	}
	return keys
}

func poolIDs(keys []NewKey) []KeyID {
	ids := make([]KeyID, len(keys))
	for i, k := range keys {
		ids[i] = k.ID
	}
	return ids
}

func wantErr(t testing.TB, err, target error, substrs ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want %v", target)
	}
	if target != nil && !errors.Is(err, target) {
		t.Fatalf("error %q is not %v", err, target)
	}
	for _, s := range substrs {
		if !strings.Contains(err.Error(), s) {
			t.Fatalf("error %q does not contain %q", err, s)
		}
	}
}

// checkPoolInvariants checks the pool's internal state: the FIFO, the
// index and the bitmap agree, sequence numbers rise, and every byte of key
// memory that holds no key is zero.
func checkPoolInvariants(t testing.TB, p *Pool) {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return
	}
	inFIFO := make([]bool, p.cfg.Slots)
	n, prev := 0, int32(-1)
	var lastSeq uint64
	for s := p.head; s >= 0; s = p.slots[s].next {
		e := &p.slots[s]
		switch {
		case inFIFO[s]:
			t.Fatalf("slot %d twice in the FIFO", s)
		case e.prev != prev:
			t.Fatalf("slot %d: prev %d, want %d", s, e.prev, prev)
		case n > 0 && e.seq <= lastSeq:
			t.Fatalf("slot %d: seq %d after %d", s, e.seq, lastSeq)
		case poolLookup(p, e.id) != s:
			t.Fatalf("slot %d: index says %s is in slot %d", s, e.id, poolLookup(p, e.id))
		case p.used[s/64]&(1<<(s%64)) == 0:
			t.Fatalf("slot %d in the FIFO but free in the bitmap", s)
		case e.n == 0 || int(e.n) > p.cfg.SlotSize:
			t.Fatalf("slot %d: length %d", s, e.n)
		case !allZero(p.slotBytes(s)[e.n:]):
			t.Fatalf("slot %d: bytes past the key are not zero", s)
		}
		inFIFO[s], prev, lastSeq = true, s, e.seq
		n++
	}
	if p.tail != prev {
		t.Fatalf("tail %d, want %d", p.tail, prev)
	}
	indexed := 0
	for _, e := range p.table {
		if e != 0 {
			indexed++
		}
	}
	if n != p.stock || indexed != n {
		t.Fatalf("FIFO has %d keys, stock %d, index %d", n, p.stock, indexed)
	}
	used := 0
	for _, w := range p.used {
		used += bits.OnesCount64(w)
	}
	if pad := len(p.used)*64 - p.cfg.Slots; used-pad != n {
		t.Fatalf("bitmap has %d slots in use, want %d", used-pad, n)
	}
	for s := int32(0); int(s) < p.cfg.Slots; s++ {
		if !inFIFO[s] && (!allZero(p.slotBytes(s)) || p.slots[s].n != 0) {
			t.Fatalf("free slot %d is not zero", s)
		}
	}
}

// poolLookup is the slot of key id, or -1; the caller holds p.mu or owns p.
func poolLookup(p *Pool, id KeyID) int32 {
	s, _ := p.lookupLocked(id)
	return s
}

func TestPoolConfigErrors(t *testing.T) {
	db, err := meta.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, tc := range []struct {
		cfg  PoolConfig
		want string
	}{
		{PoolConfig{Name: "nodeB"}, `pool "nodeB": Slots must be > 0, got 0`},
		{PoolConfig{Name: "nodeB", Slots: -3}, `Slots must be > 0, got -3`},
		{PoolConfig{Name: "", Slots: 1}, `pool "": Name must be 1 to 64 characters, got 0`},
		{PoolConfig{Name: strings.Repeat("n", 65), Slots: 1}, `Name must be 1 to 64 characters, got 65`},
		{PoolConfig{Name: "node/B", Slots: 1}, `Name may hold only A-Z a-z 0-9 . _ -, got "/" at index 4`},
		{PoolConfig{Name: "..", Slots: 1}, `Name must not be ".."`},
		{PoolConfig{Name: "nodeB", Slots: 1, SlotSize: -1}, `SlotSize must be in [1, 65536], got -1`},
		{PoolConfig{Name: "nodeB", Slots: 1, SlotSize: 1 << 17}, `SlotSize must be in [1, 65536], got 131072`},
		{PoolConfig{Name: "nodeB", Slots: 1 << 30, SlotSize: 1 << 16}, `Slots×SlotSize must be at most 1 TiB`},
		{PoolConfig{Name: "nodeB", Slots: 1, TTL: -time.Second}, `TTL must be >= 0 (0 = keys never expire), got -1s`},
		{PoolConfig{Name: "nodeB", Slots: 10, High: 11}, `High must be in [0, Slots=10] (0 = Slots), got 11`},
		{PoolConfig{Name: "nodeB", Slots: 10, High: 5, Low: 6}, `Low must be in [0, High=5], got 6`},
		{PoolConfig{Name: "nodeB", Slots: 10, Low: -1}, `Low must be in [0, High=10], got -1`},
		{PoolConfig{Name: "nodeB", Slots: 10, Meta: db}, `pool "nodeB": Meta is set but Dir is empty`},
		{PoolConfig{Name: "nodeB", Slots: 10, Dir: "/tmp/x"}, `pool "nodeB": Dir is "/tmp/x" but Meta is nil`},
	} {
		p, err := OpenPool(tc.cfg)
		if err == nil {
			p.Close()
			t.Errorf("OpenPool(%+v) succeeded, want %q", tc.cfg, tc.want)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("OpenPool(%+v) = %q, want it to contain %q", tc.cfg, err, tc.want)
		}
	}
}

func TestPoolErrors(t *testing.T) {
	for _, mode := range poolModes {
		t.Run(mode, func(t *testing.T) {
			env := newPoolEnv(t, mode)
			p := env.open(t, env.config("nodeB", 5))
			a := Owner("saeA>saeB")
			keys := poolNewKeys(1, 0, 3, DefaultSlotSize)
			if err := p.Put(keys); err != nil {
				t.Fatal(err)
			}

			_, err := p.TakeNext(5, a)
			wantErr(t, err, ErrPoolEmpty, `pool "nodeB" has 3 keys, 5 requested`)
			err = p.Put(poolNewKeys(1, 10, 3, DefaultSlotSize))
			wantErr(t, err, ErrPoolFull, `pool "nodeB" cannot take 3 keys: 3 of 5 slots in use`)
			err = p.Put([]NewKey{keys[1]})
			wantErr(t, err, ErrDuplicateKey, keys[1].ID.String(), "already in the pool")
			fresh := poolNewKeys(1, 20, 1, DefaultSlotSize)
			err = p.Put([]NewKey{fresh[0], fresh[0]})
			wantErr(t, err, ErrDuplicateKey, fresh[0].ID.String(), "twice in the batch")
			err = p.Put([]NewKey{{ID: fresh[0].ID, Key: make([]byte, 65)}})
			wantErr(t, err, nil, fresh[0].ID.String(), "is 65 bytes, want 1 to 64")
			err = p.Put([]NewKey{{ID: fresh[0].ID}})
			wantErr(t, err, nil, "is 0 bytes")
			err = p.Put(make([]NewKey, MaxBatch+1))
			wantErr(t, err, nil, "at most 2048 per call")

			unknown := poolID(9, 9)
			err = p.SetOwner([]KeyID{keys[0].ID, unknown}, a)
			wantErr(t, err, ErrUnknownKey, unknown.String())
			err = p.SetOwner([]KeyID{keys[0].ID}, Owner(""))
			wantErr(t, err, nil, "owner tag is empty")
			_, err = p.TakeNext(1, Owner(""))
			wantErr(t, err, nil, "owner tag is empty")
			err = p.SetOwner([]KeyID{keys[0].ID}, Owner(strings.Repeat("m", MaxOwnerLen+1)))
			wantErr(t, err, nil, "owner tag is 17409 bytes, at most 17408 allowed")
			_, err = p.TakeNext(-1, a)
			wantErr(t, err, nil, "TakeNext of -1 keys")
			if err := p.SetOwner([]KeyID{keys[0].ID}, a); err != nil {
				t.Fatal(err)
			}
			if err := p.SetOwner([]KeyID{keys[0].ID, keys[0].ID}, a); err != nil {
				t.Fatalf("assigning again as before: %v", err)
			}
			err = p.SetOwner([]KeyID{keys[1].ID, keys[0].ID}, Owner("saeX"))
			wantErr(t, err, ErrOwned, keys[0].ID.String(), "has another owner")
			var conflict *OwnerConflict
			if !errors.As(err, &conflict) || conflict.ID != keys[0].ID || conflict.Owner != a {
				t.Fatalf("SetOwner of a key with another owner: %#v, want an *OwnerConflict naming %s and its owner %q", err, keys[0].ID, a)
			}

			_, err = p.TakeByIDs([]KeyID{keys[0].ID, unknown})
			wantErr(t, err, ErrUnknownKey, unknown.String())
			_, err = p.TakeByIDs([]KeyID{keys[2].ID, keys[2].ID})
			wantErr(t, err, ErrDuplicateKey, keys[2].ID.String())
			refuse := errors.New("SAE saeC may not have this key")
			_, err = p.TakeByIDsIf([]KeyID{keys[2].ID, keys[0].ID}, func(id KeyID, got Owner) error {
				if got != a {
					return refuse
				}
				return nil
			})
			wantErr(t, err, refuse, keys[2].ID.String())

			// None of the failures above took or changed anything.
			checkPoolInvariants(t, p)
			if st := p.Stats(); st.Stock != 3 || st.Added != 3 || st.Taken != 0 {
				t.Fatalf("stats %+v after failed calls", st)
			}
			got, err := p.TakeByIDs([]KeyID{keys[2].ID, keys[0].ID})
			if err != nil {
				t.Fatal(err)
			}
			if got[0].ID != keys[2].ID || got[1].ID != keys[0].ID ||
				got[0].Owner != "" || got[1].Owner != a {
				t.Fatalf("TakeByIDs returned %+v", got)
			}

			if err := p.Close(); err != nil {
				t.Fatal(err)
			}
			if err := p.Close(); err != nil {
				t.Fatalf("second Close: %v", err)
			}
			wantErr(t, p.Put(fresh), ErrPoolClosed, `pool "nodeB"`)
			_, err = p.TakeNext(1, a)
			wantErr(t, err, ErrPoolClosed)
			_, err = p.TakeByIDs([]KeyID{keys[1].ID})
			wantErr(t, err, ErrPoolClosed)
			wantErr(t, p.SetOwner([]KeyID{keys[1].ID}, a), ErrPoolClosed)
			if n := p.Expire(); n != 0 {
				t.Fatalf("Expire on a closed pool = %d", n)
			}
		})
	}
}

// poolModel is the obvious reference: a slice in FIFO order.
type poolModel struct {
	keys  []poolModelKey
	slots int
}

type poolModelKey struct {
	id     KeyID
	b      []byte
	owner  Owner
	expiry time.Time
}

func (m *poolModel) find(id KeyID) int {
	return slices.IndexFunc(m.keys, func(k poolModelKey) bool { return k.id == id })
}

func checkTaken(t *testing.T, got []Key, want []poolModelKey) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("took %d keys, want %d", len(got), len(want))
	}
	for i := range got {
		if got[i].ID != want[i].id || !bytes.Equal(got[i].Bytes, want[i].b) ||
			got[i].Owner != want[i].owner {
			t.Fatalf("key %d: got %s %x %q, want %s %x %q", i, got[i].ID, got[i].Bytes, got[i].Owner, want[i].id, want[i].b, want[i].owner)
		}
	}
}

// TestPoolModel drives a pool and the model with the same random
// operations, good and bad, and compares every answer; in durable mode it
// also closes and reopens the pool now and then.
func TestPoolModel(t *testing.T) {
	for _, mode := range poolModes {
		t.Run(mode, func(t *testing.T) {
			ops := 3000
			if mode == "durable" {
				ops = 400
			}
			if testing.Short() {
				ops /= 4
			}
			env := newPoolEnv(t, mode)
			clock := newPoolClock()
			cfg := env.config("nodeB", 40)
			cfg.SlotSize = 48
			cfg.TTL = 10 * time.Second
			cfg.Now = clock.Now
			p := env.open(t, cfg)
			m := &poolModel{slots: cfg.Slots}
			rnd := rand.New(rand.NewPCG(1, 2))
			var next uint64
			masters := []Owner{"saeA>saeB", "saeC>saeD>saeE", "saeF"}
			pick := func() []KeyID { // a random subset of the pool, sometimes with an unknown or repeated ID
				var ids []KeyID
				for _, k := range m.keys {
					if rnd.IntN(4) == 0 {
						ids = append(ids, k.id)
					}
				}
				switch r := rnd.IntN(10); {
				case r == 0:
					ids = slices.Insert(ids, rnd.IntN(len(ids)+1), poolID(99, rnd.Uint64()))
				case r == 1 && len(ids) > 0:
					ids = slices.Insert(ids, rnd.IntN(len(ids)+1), ids[rnd.IntN(len(ids))])
				}
				rnd.Shuffle(len(ids), func(i, j int) { ids[i], ids[j] = ids[j], ids[i] })
				return ids
			}
			for op := range ops {
				switch r := rnd.IntN(100); {
				case r < 35: // Put
					n := 1 + rnd.IntN(8)
					keys := poolNewKeys(1, next, n, cfg.SlotSize)
					next += uint64(n)
					var want error
					switch r := rnd.IntN(20); {
					case r == 0 && len(m.keys) > 0: // already in the pool
						keys[rnd.IntN(n)].ID = m.keys[rnd.IntN(len(m.keys))].id
						want = ErrDuplicateKey
					case r == 1 && n > 1: // twice in the batch
						i := 1 + rnd.IntN(n-1)
						keys[i].ID = keys[rnd.IntN(i)].ID
						want = ErrDuplicateKey
					}
					if n > cfg.Slots-len(m.keys) { // checked first
						want = ErrPoolFull
					}
					err := p.Put(keys)
					if !errors.Is(err, want) || (want == nil) != (err == nil) {
						t.Fatalf("op %d: Put(%d): %v, want %v", op, n, err, want)
					}
					if err == nil {
						exp := clock.Now().Add(cfg.TTL)
						for _, k := range keys {
							m.keys = append(m.keys, poolModelKey{id: k.ID, b: k.Key, expiry: exp})
						}
					}
				case r < 55: // TakeNext
					n := 1 + rnd.IntN(6)
					a := masters[rnd.IntN(len(masters))]
					got, err := p.TakeNext(n, a)
					if n > len(m.keys) {
						wantErr(t, err, ErrPoolEmpty)
						break
					}
					if err != nil {
						t.Fatalf("op %d: TakeNext(%d): %v", op, n, err)
					}
					want := slices.Clone(m.keys[:n])
					for i := range want {
						want[i].owner = a
					}
					checkTaken(t, got, want)
					m.keys = m.keys[n:]
				case r < 70: // Assign
					ids := pick()
					a := masters[rnd.IntN(len(masters))]
					var want error
					for _, id := range ids {
						i := m.find(id)
						if i < 0 {
							want = ErrUnknownKey
							break
						}
						if old := m.keys[i].owner; old != "" && old != a {
							want = ErrOwned
							break
						}
					}
					err := p.SetOwner(ids, a)
					if !errors.Is(err, want) || (want == nil) != (err == nil) {
						t.Fatalf("op %d: Assign: %v, want %v", op, err, want)
					}
					if err == nil {
						for _, id := range ids {
							m.keys[m.find(id)].owner = a
						}
					}
				case r < 88: // TakeByIDs
					ids := pick()
					var want error
					seen := map[KeyID]bool{}
					for _, id := range ids {
						if m.find(id) < 0 {
							want = ErrUnknownKey
							break
						}
						if seen[id] {
							want = ErrDuplicateKey
							break
						}
						seen[id] = true
					}
					got, err := p.TakeByIDs(ids)
					if !errors.Is(err, want) || (want == nil) != (err == nil) {
						t.Fatalf("op %d: TakeByIDs: %v, want %v", op, err, want)
					}
					if err == nil {
						var wantKeys []poolModelKey
						for _, id := range ids {
							i := m.find(id)
							wantKeys = append(wantKeys, m.keys[i])
							m.keys = slices.Delete(m.keys, i, i+1)
						}
						checkTaken(t, got, wantKeys)
					}
				case r < 96: // time passes; Expire
					clock.Advance(time.Duration(rnd.IntN(4000)) * time.Millisecond)
					now := clock.Now()
					n := 0
					for n < len(m.keys) && !m.keys[n].expiry.After(now) {
						n++
					}
					if got := p.Expire(); got != n {
						t.Fatalf("op %d: Expire() = %d, want %d", op, got, n)
					}
					m.keys = m.keys[n:]
				default: // restart
					if !env.durable {
						break
					}
					if err := p.Close(); err != nil {
						t.Fatal(err)
					}
					p = env.open(t, cfg)
				}
				checkPoolInvariants(t, p)
				if st := p.Stats(); st.Stock != len(m.keys) {
					t.Fatalf("op %d: stock %d, model %d", op, st.Stock, len(m.keys))
				}
			}
			// What is left comes out in FIFO order.
			got, err := p.TakeNext(len(m.keys), masters[0])
			if err != nil {
				t.Fatal(err)
			}
			for i := range m.keys {
				m.keys[i].owner = masters[0]
			}
			checkTaken(t, got, m.keys)
		})
	}
}

// TestPoolIndexChurn fills small pools (whose index tables wrap around
// often) and takes random subsets by ID again and again: every key stays
// reachable through the open-addressing index, and removed keys are gone.
func TestPoolIndexChurn(t *testing.T) {
	for _, slots := range []int{1, 3, 4, 64} {
		p, err := OpenPool(PoolConfig{Name: "nodeB", Slots: slots, SlotSize: 16})
		if err != nil {
			t.Fatal(err)
		}
		rnd := rand.New(rand.NewPCG(uint64(slots), 5))
		var in []KeyID
		var seq uint64
		for range 3000 {
			if n := slots - len(in); n > 0 {
				keys := poolNewKeys(3, seq, n, 16)
				seq += uint64(n)
				if err := p.Put(keys); err != nil {
					t.Fatal(err)
				}
				in = append(in, poolIDs(keys)...)
			}
			rnd.Shuffle(len(in), func(i, j int) { in[i], in[j] = in[j], in[i] })
			k := rnd.IntN(len(in) + 1)
			if _, err := p.TakeByIDs(in[:k]); err != nil {
				t.Fatal(err)
			}
			for _, id := range in[:k] {
				if s := poolLookup(p, id); s >= 0 {
					t.Fatalf("taken key %s still indexed in slot %d", id, s)
				}
			}
			in = in[k:]
			checkPoolInvariants(t, p)
		}
		p.Close()
	}
}

func TestPoolOneAllocationPerCall(t *testing.T) {
	for _, mode := range poolModes {
		t.Run(mode, func(t *testing.T) {
			env := newPoolEnv(t, mode)
			p := env.open(t, env.config("nodeB", 64))
			keys := poolNewKeys(1, 0, 20, DefaultSlotSize)
			if err := p.Put(keys); err != nil {
				t.Fatal(err)
			}
			check := func(got []Key) {
				t.Helper()
				for i := 1; i < len(got); i++ {
					prev, cur := got[i-1].Bytes, got[i].Bytes
					if cap(prev) != len(prev) {
						t.Fatalf("key %d: cap %d > len %d: appending would overwrite the next key", i-1, cap(prev), len(prev))
					}
					if unsafe.Pointer(unsafe.SliceData(cur)) != unsafe.Add(unsafe.Pointer(unsafe.SliceData(prev)), len(prev)) {
						t.Fatalf("key %d is not right after key %d in one allocation", i, i-1)
					}
				}
			}
			got, err := p.TakeNext(8, Owner("saeA"))
			if err != nil {
				t.Fatal(err)
			}
			check(got)
			got, err = p.TakeByIDs([]KeyID{keys[15].ID, keys[9].ID, keys[12].ID})
			if err != nil {
				t.Fatal(err)
			}
			check(got)
		})
	}
}

func TestPoolWatermarks(t *testing.T) {
	for _, mode := range poolModes {
		t.Run(mode, func(t *testing.T) {
			env := newPoolEnv(t, mode)
			var events []string
			cfg := env.config("nodeB", 20)
			cfg.Low, cfg.High = 5, 15
			cfg.OnLow = func(stock int) { events = append(events, fmt.Sprint("low ", stock)) }
			cfg.OnHigh = func(stock int) { events = append(events, fmt.Sprint("high ", stock)) }
			clock := newPoolClock()
			cfg.TTL, cfg.Now = time.Minute, clock.Now
			p := env.open(t, cfg)
			var next uint64
			put := func(n int) func() error {
				return func() error {
					keys := poolNewKeys(1, next, n, DefaultSlotSize)
					next += uint64(n)
					return p.Put(keys)
				}
			}
			take := func(n int) func() error {
				return func() error { _, err := p.TakeNext(n, Owner("saeA")); return err }
			}
			takeIDs := func(from, n int) func() error {
				return func() error {
					_, err := p.TakeByIDs(poolIDs(poolNewKeys(1, uint64(from), n, DefaultSlotSize)))
					return err
				}
			}
			expire := func() error { clock.Advance(2 * time.Minute); p.Expire(); return nil }
			for i, step := range []struct {
				do   func() error
				want []string
			}{
				{nil, []string{"low 0"}},                 // an empty pool opens below Low
				{put(4), nil},                            // 0 → 4: still below
				{put(1), nil},                            // 4 → 5: back at Low, no event
				{put(9), nil},                            // 5 → 14
				{put(1), []string{"high 15"}},            // 14 → 15: reaches High
				{put(3), nil},                            // 15 → 18: no second high
				{take(2), nil},                           // 18 → 16
				{take(1), nil},                           // 16 → 15: still at High
				{take(1), nil},                           // 15 → 14: falls below High, no event
				{put(1), []string{"high 15"}},            // 14 → 15: rises to High again
				{take(10), nil},                          // 15 → 5
				{take(1), []string{"low 4"}},             // 5 → 4: falls below Low
				{take(2), nil},                           // 4 → 2: no second low
				{put(16), []string{"high 18"}},           // 2 → 18 in one batch: one event
				{takeIDs(19, 14), []string{"low 4"}},     // 18 → 4 in one batch (keys 19-32)
				{put(1), nil},                            // 4 → 5
				{expire, []string{"low 0"}},              // 5 → 0 by TTL
				{func() error { return put(50)() }, nil}, // does not fit: no change, no event
				{func() error { _, err := p.TakeNext(3, Owner("m")); return err }, nil},
			} {
				events = nil
				if i == 0 {
					// OpenPool's event was delivered before the loop.
					events = []string{"low 0"}
				} else if err := step.do(); err != nil && !errors.Is(err, ErrPoolFull) && !errors.Is(err, ErrPoolEmpty) {
					t.Fatalf("step %d: %v", i, err)
				}
				if !slices.Equal(events, step.want) {
					t.Fatalf("step %d: events %q, want %q (stock %d)", i, events, step.want, p.Stats().Stock)
				}
			}
		})
	}

	// The first event really comes from OpenPool, and a callback may call
	// the pool, even to cross a watermark again: its events come after.
	var events []string
	var p *Pool
	cfg := PoolConfig{Name: "nodeB", Slots: 10, Low: 2, High: 4}
	cfg.OnLow = func(stock int) {
		events = append(events, fmt.Sprint("low ", stock))
		if p != nil {
			if err := p.Put(poolNewKeys(2, 0, 5, DefaultSlotSize)); err != nil { // refill at once
				t.Error(err)
			}
		}
	}
	cfg.OnHigh = func(stock int) { events = append(events, fmt.Sprint("high ", stock, " ", p.Stats().Stock)) }
	p, err := OpenPool(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if !slices.Equal(events, []string{"low 0"}) {
		t.Fatalf("OpenPool: events %q", events)
	}
	if err := p.Put(poolNewKeys(1, 0, 2, DefaultSlotSize)); err != nil {
		t.Fatal(err)
	}
	if _, err := p.TakeNext(1, Owner("m")); err != nil {
		t.Fatal(err)
	}
	if want := []string{"low 0", "low 1", "high 6 6"}; !slices.Equal(events, want) {
		t.Fatalf("events %q, want %q", events, want)
	}
}

// TestPoolWatermarksNoCallbacks: zero Low disables OnLow; High 0 means
// Slots.
func TestPoolWatermarksDefaults(t *testing.T) {
	var events []string
	cfg := PoolConfig{Name: "nodeB", Slots: 4}
	cfg.OnLow = func(stock int) { events = append(events, fmt.Sprint("low ", stock)) }
	cfg.OnHigh = func(stock int) { events = append(events, fmt.Sprint("high ", stock)) }
	p, err := OpenPool(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if err := p.Put(poolNewKeys(1, 0, 4, DefaultSlotSize)); err != nil {
		t.Fatal(err)
	}
	if _, err := p.TakeNext(4, Owner("m")); err != nil {
		t.Fatal(err)
	}
	if want := []string{"high 4"}; !slices.Equal(events, want) {
		t.Fatalf("events %q, want %q", events, want)
	}
}

func TestPoolExpire(t *testing.T) {
	for _, mode := range poolModes {
		t.Run(mode, func(t *testing.T) {
			env := newPoolEnv(t, mode)
			clock := newPoolClock()
			cfg := env.config("nodeB", 3000)
			cfg.TTL, cfg.Now = time.Minute, clock.Now
			p := env.open(t, cfg)
			put := func(flow uint64, n int) []NewKey {
				var keys []NewKey
				for i := 0; i < n; i += MaxBatch {
					batch := poolNewKeys(flow, uint64(i), min(MaxBatch, n-i), DefaultSlotSize)
					if err := p.Put(batch); err != nil {
						t.Fatal(err)
					}
					keys = append(keys, batch...)
				}
				return keys
			}
			old := put(1, 2500) // more than one batch expires at once
			clock.Advance(30 * time.Second)
			young := put(2, 10)
			if n := p.Expire(); n != 0 {
				t.Fatalf("Expire before any TTL passed = %d", n)
			}
			clock.Advance(30*time.Second - 1)
			if n := p.Expire(); n != 0 {
				t.Fatalf("Expire 1ns before the TTL = %d", n)
			}
			if env.durable { // expiry survives a restart
				p.Close()
				p = env.open(t, cfg)
			}
			clock.Advance(1)
			if n := p.Expire(); n != len(old) {
				t.Fatalf("Expire at the TTL = %d, want %d", n, len(old))
			}
			st := p.Stats()
			if st.Stock != len(young) || st.Expired != uint64(len(old)) || st.Taken != 0 {
				t.Fatalf("stats %+v", st)
			}
			if _, err := p.TakeByIDs(poolIDs(old[:1])); !errors.Is(err, ErrUnknownKey) {
				t.Fatalf("expired key still there: %v", err)
			}
			checkPoolInvariants(t, p)
			clock.Advance(time.Hour)
			if n := p.Expire(); n != len(young) {
				t.Fatalf("second Expire = %d, want %d", n, len(young))
			}
			if st := p.Stats(); st.Stock != 0 {
				t.Fatalf("stock %d after all expired", st.Stock)
			}
		})
	}

	// TTL 0: keys never expire.
	p, err := OpenPool(PoolConfig{Name: "nodeB", Slots: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	p.Put(poolNewKeys(1, 0, 4, DefaultSlotSize))
	if n := p.Expire(); n != 0 {
		t.Fatalf("Expire with TTL 0 = %d", n)
	}
}

func TestPoolRestartKeepsKeys(t *testing.T) {
	env := newPoolEnv(t, "durable")
	cfg := env.config("nodeB", 100)
	cfg.SlotSize = 40
	p := env.open(t, cfg)
	var keys []NewKey
	for b := range 5 {
		batch := poolNewKeys(1, uint64(b*10), 10, cfg.SlotSize)
		if err := p.Put(batch); err != nil {
			t.Fatal(err)
		}
		keys = append(keys, batch...)
	}
	owner := Owner("saeA>saeB>saeC")
	if err := p.SetOwner(poolIDs(keys[12:18]), owner); err != nil {
		t.Fatal(err)
	}
	if _, err := p.TakeNext(5, Owner("saeA")); err != nil {
		t.Fatal(err)
	}
	if _, err := p.TakeByIDs(poolIDs(keys[30:35])); err != nil {
		t.Fatal(err)
	}
	want := append(slices.Clone(keys[5:30]), keys[35:]...)
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}

	p = env.open(t, cfg)
	checkPoolInvariants(t, p)
	if st := p.Stats(); st.Stock != len(want) || st.Added != 0 || st.ZeroisedBytes != 0 {
		t.Fatalf("after restart: stats %+v, want stock %d and nothing zeroised", st, len(want))
	}
	// Keys can still be added after the restart, behind the old ones.
	more := poolNewKeys(2, 0, 3, cfg.SlotSize)
	if err := p.Put(more); err != nil {
		t.Fatal(err)
	}
	want = append(want, more...)
	// Owners survived: TakeByIDs returns them.
	got, err := p.TakeByIDs(poolIDs(keys[16:18]))
	if err != nil {
		t.Fatal(err)
	}
	for i, k := range got {
		if k.Owner != owner || !bytes.Equal(k.Bytes, keys[16+i].Key) {
			t.Fatalf("key %s after restart: %x %q", k.ID, k.Bytes, k.Owner)
		}
	}
	want = slices.DeleteFunc(want, func(k NewKey) bool { return k.ID == keys[16].ID || k.ID == keys[17].ID })
	// And everything else, in FIFO order, with the same bytes.
	p.Close()
	p = env.open(t, cfg)
	got, err = p.TakeNext(len(want), Owner("saeZ"))
	if err != nil {
		t.Fatal(err)
	}
	for i := range want {
		if got[i].ID != want[i].ID || !bytes.Equal(got[i].Bytes, want[i].Key) {
			t.Fatalf("key %d after restart: %s %x, want %s %x", i, got[i].ID, got[i].Bytes, want[i].ID, want[i].Key)
		}
	}
}

// TestPoolZeroises checks that a key handed out is gone from key memory
// and, in durable mode, from the slot file on disk, and that key bytes never
// reach the metadata store (DESIGN.md, invariants 2 and 3).
func TestPoolZeroises(t *testing.T) {
	for _, mode := range poolModes {
		t.Run(mode, func(t *testing.T) {
			env := newPoolEnv(t, mode)
			cfg := env.config("nodeB", 64)
			cfg.SlotSize = 32
			p := env.open(t, cfg)
			keys := make([]NewKey, 40)
			for i := range keys {
				keys[i] = NewKey{ID: poolID(1, uint64(i)), Key: bytes.Repeat([]byte{byte(0xa0 + i%16)}, 32)}
				keys[i].Key[0], keys[i].Key[31] = byte(i), 0x5a
			}
			if err := p.Put(keys); err != nil {
				t.Fatal(err)
			}
			slotOf := func(id KeyID) int {
				p.mu.Lock()
				defer p.mu.Unlock()
				return int(poolLookup(p, id))
			}
			var file []byte
			readFile := func() {
				if !env.durable {
					return
				}
				var err error
				if file, err = os.ReadFile(p.path); err != nil {
					t.Fatal(err)
				}
			}
			readFile()
			for _, k := range keys {
				s := slotOf(k.ID)
				if !bytes.Equal(p.slotBytes(int32(s))[:32], k.Key) {
					t.Fatalf("key %s not in its slot %d", k.ID, s)
				}
				if env.durable && !bytes.Equal(file[s*32:s*32+32], k.Key) {
					t.Fatalf("key %s not in slot %d of the file on disk", k.ID, s)
				}
			}

			taken := map[int]bool{}
			for _, k := range keys[:20] {
				taken[slotOf(k.ID)] = true
			}
			for _, k := range keys[30:35] {
				taken[slotOf(k.ID)] = true
			}
			if _, err := p.TakeNext(20, Owner("saeA")); err != nil {
				t.Fatal(err)
			}
			if _, err := p.TakeByIDs(poolIDs(keys[30:35])); err != nil {
				t.Fatal(err)
			}
			if st := p.Stats(); st.ZeroisedBytes != 25*32 {
				t.Fatalf("ZeroisedBytes %d, want %d", st.ZeroisedBytes, 25*32)
			}
			readFile()
			for s := range taken {
				if !allZero(p.slotBytes(int32(s))) {
					t.Fatalf("slot %d not zero in memory after its key was taken", s)
				}
				if env.durable && !allZero(file[s*32:s*32+32]) {
					t.Fatalf("slot %d not zero in %s after its key was taken", s, p.path)
				}
			}
			checkPoolInvariants(t, p)
			if !env.durable {
				if err := p.Close(); err != nil {
					t.Fatal(err)
				}
				if st := p.Stats(); st.ZeroisedBytes != 40*32 {
					t.Fatalf("ZeroisedBytes after Close %d, want all %d", st.ZeroisedBytes, 40*32)
				}
				return
			}

			// No file of the metadata store holds any key's bytes, even of
			// keys taken (badger keeps what it deletes).
			p.Close()
			env.db.Close()
			filepath.WalkDir(filepath.Dir(env.dir), func(path string, d fs.DirEntry, err error) error {
				if err != nil || d.IsDir() || path == p.path {
					return err
				}
				b, err := os.ReadFile(path)
				if err != nil {
					t.Fatal(err)
				}
				for _, k := range keys {
					if bytes.Contains(b, k.Key[:16]) || bytes.Contains(b, k.Key[16:]) {
						t.Fatalf("key %s bytes found in %s", k.ID, path)
					}
				}
				return nil
			})
		})
	}
}

// TestPoolZeroisesOrphans plays the two crashes the durable ordering
// allows: key bytes in a slot the index never named (a Put cut short), and
// an index entry gone while its slot still holds the key (a take cut short).
// OpenPool zeroises both and keeps everything else.
func TestPoolZeroisesOrphans(t *testing.T) {
	env := newPoolEnv(t, "durable")
	cfg := env.config("nodeB", 64)
	cfg.SlotSize = 32
	p := env.open(t, cfg)
	keys := poolNewKeys(1, 0, 10, cfg.SlotSize)
	for i := range keys {
		keys[i].Key = keys[i].Key[:20]
	}
	if err := p.Put(keys); err != nil {
		t.Fatal(err)
	}
	gone := keys[3]
	goneSlot := int(poolLookup(p, gone.ID))
	liveSlot := int(poolLookup(p, keys[0].ID))
	p.Close()
	if err := env.db.Update(func(tx *meta.Tx) error { return tx.Delete(p.entryKey(gone.ID)) }); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(p.path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	junk := bytes.Repeat([]byte{0xee}, 32)
	for _, s := range []int{40, 63} {
		if _, err := f.WriteAt(junk, int64(s*32)); err != nil {
			t.Fatal(err)
		}
	}
	// And junk past a live key's end, in its slot.
	if _, err := f.WriteAt([]byte{1, 2, 3}, int64(liveSlot*32+29)); err != nil {
		t.Fatal(err)
	}
	f.Close()

	p = env.open(t, cfg)
	checkPoolInvariants(t, p)
	if st := p.Stats(); st.Stock != 9 || st.ZeroisedBytes != 3*32+(32-20) {
		t.Fatalf("stats %+v, want stock 9 and three orphan slots and one slot's tail (%d bytes) zeroised", st, 3*32+12)
	}
	file, err := os.ReadFile(p.path)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []int{goneSlot, 40, 63} {
		if !allZero(file[s*32 : s*32+32]) {
			t.Fatalf("orphan slot %d not zeroised on disk", s)
		}
	}
	if _, err := p.TakeByIDs([]KeyID{gone.ID}); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("key whose index entry was deleted came back: %v", err)
	}
	got, err := p.TakeNext(9, Owner("saeA"))
	if err != nil {
		t.Fatal(err)
	}
	want := slices.Delete(slices.Clone(keys), 3, 4)
	for i := range want {
		if got[i].ID != want[i].ID || !bytes.Equal(got[i].Bytes, want[i].Key) {
			t.Fatalf("key %d: %s %x, want %s %x", i, got[i].ID, got[i].Bytes, want[i].ID, want[i].Key)
		}
	}
}

// TestPoolRefusesDamage: a slot file and index that do not match stop the
// pool from opening, with an error that names the file or the key, says
// what is wrong, and what the operator can do.
func TestPoolRefusesDamage(t *testing.T) {
	const slots, slotSize = 64, 32
	type fixture struct {
		env  *poolEnv
		cfg  PoolConfig
		keys []NewKey
		path string
	}
	setup := func(t *testing.T) *fixture {
		env := newPoolEnv(t, "durable")
		cfg := env.config("nodeB", slots)
		cfg.SlotSize = slotSize
		p, err := OpenPool(cfg)
		if err != nil {
			t.Fatal(err)
		}
		keys := poolNewKeys(1, 0, 4, slotSize)
		if err := p.Put(keys); err != nil {
			t.Fatal(err)
		}
		if err := p.Close(); err != nil {
			t.Fatal(err)
		}
		return &fixture{env: env, cfg: cfg, keys: keys, path: p.path}
	}
	setEntry := func(t *testing.T, f *fixture, id KeyID, val []byte) {
		if err := f.env.db.Update(func(tx *meta.Tx) error { return tx.Set("pool/nodeB/k/"+string(id[:]), val) }); err != nil {
			t.Fatal(err)
		}
	}
	entry := func(s int32, n uint32, seq uint64) []byte {
		return appendEntry(nil, s, &slot{n: n, seq: seq})
	}
	for _, tc := range []struct {
		name   string
		damage func(t *testing.T, f *fixture)
		cfg    func(cfg *PoolConfig)
		want   []string // substrings; "$path" and "$id" are replaced
	}{
		{name: "truncated slot file", damage: func(t *testing.T, f *fixture) {
			if err := os.Truncate(f.path, 1000); err != nil {
				t.Fatal(err)
			}
		}, want: []string{"$path", "is 1000 bytes, want 4096", "truncated", "restore it"}},
		{name: "missing slot file", damage: func(t *testing.T, f *fixture) {
			if err := os.Remove(f.path); err != nil {
				t.Fatal(err)
			}
		}, want: []string{"slot file $path is missing", "index for it with 4 keys", "restore the file", `delete the metadata keys under "pool/nodeB/"`}},
		{name: "slot file without index", damage: func(t *testing.T, f *fixture) {
			if err := f.env.db.Update(func(tx *meta.Tx) error {
				for _, k := range f.keys {
					if err := tx.Delete("pool/nodeB/k/" + string(k.ID[:])); err != nil {
						return err
					}
				}
				return tx.Delete("pool/nodeB/hdr")
			}); err != nil {
				t.Fatal(err)
			}
		}, want: []string{"slot file $path exists but metadata store", "has no index", "remove $path to start this pool empty"}},
		{name: "entries without header", damage: func(t *testing.T, f *fixture) {
			if err := f.env.db.Update(func(tx *meta.Tx) error { return tx.Delete("pool/nodeB/hdr") }); err != nil {
				t.Fatal(err)
			}
		}, want: []string{"has 4 index entries", `no header "pool/nodeB/hdr"`, "restore the metadata store"}},
		{name: "entry out of range", damage: func(t *testing.T, f *fixture) {
			setEntry(t, f, f.keys[1].ID, entry(slots+5, 20, 100))
		}, want: []string{"index entry for key $id", "points to slot 69, outside slot file $path (64 slots)", "restore both from the same backup"}},
		{name: "two entries share a slot", damage: func(t *testing.T, f *fixture) {
			p := f.env.open(t, f.cfg)
			s := poolLookup(p, f.keys[0].ID)
			p.Close()
			setEntry(t, f, poolID(7, 7), entry(s, 20, 100))
		}, want: []string{"both point to slot", "$path", "restore the metadata store and $path from the same backup"}},
		{name: "key longer than a slot", damage: func(t *testing.T, f *fixture) {
			setEntry(t, f, f.keys[2].ID, entry(50, slotSize+1, 100))
		}, want: []string{"index entry for key $id", "says the key is 33 bytes, but slots in $path hold 1 to 32"}},
		{name: "garbage entry", damage: func(t *testing.T, f *fixture) {
			setEntry(t, f, f.keys[3].ID, []byte{1, 2, 3})
		}, want: []string{"index entry", "entry is 3 bytes, want at least 25", "restore the metadata store"}},
		{name: "bad key in index", damage: func(t *testing.T, f *fixture) {
			if err := f.env.db.Update(func(tx *meta.Tx) error { return tx.Set("pool/nodeB/k/short", entry(9, 9, 9)) }); err != nil {
				t.Fatal(err)
			}
		}, want: []string{`index entry "pool/nodeB/k/short"`, "key ID is 5 bytes, want 16"}},
		{name: "two entries share a sequence number", damage: func(t *testing.T, f *fixture) {
			setEntry(t, f, poolID(7, 7), entry(60, 20, 0))
		}, want: []string{"same sequence number 0"}},
		{name: "resized in config", cfg: func(cfg *PoolConfig) { cfg.Slots = 128 },
			want: []string{"slot file $path was made with Slots=64 SlotSize=32, but the config says Slots=128 SlotSize=32", "put the old values back"}},
		{name: "header damaged", damage: func(t *testing.T, f *fixture) {
			if err := f.env.db.Update(func(tx *meta.Tx) error { return tx.Set("pool/nodeB/hdr", []byte{9}) }); err != nil {
				t.Fatal(err)
			}
		}, want: []string{`header "pool/nodeB/hdr"`, "damaged"}},
		{name: "opened twice", damage: func(t *testing.T, f *fixture) {
			f.env.open(t, f.cfg) // stays open
		}, want: []string{"slot file $path is in use by another pool"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := setup(t)
			if tc.damage != nil {
				tc.damage(t, f)
			}
			cfg := f.cfg
			if tc.cfg != nil {
				tc.cfg(&cfg)
			}
			p, err := OpenPool(cfg)
			if err == nil {
				p.Close()
				t.Fatalf("OpenPool succeeded, want an error")
			}
			if !strings.HasPrefix(err.Error(), `pool "nodeB": `) {
				t.Errorf("error %q does not start with the pool's name", err)
			}
			id := KeyID{}
			for _, k := range f.keys {
				if strings.Contains(err.Error(), k.ID.String()) {
					id = k.ID
				}
			}
			for _, w := range tc.want {
				w = strings.ReplaceAll(w, "$path", f.path)
				w = strings.ReplaceAll(w, "$id", id.String())
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\ndoes not contain %q", err, w)
				}
			}
		})
	}
}

// TestPoolCreateInterrupted: a crash while creating a pool leaves the new
// slot file under its temporary name, with or without the header; the next
// OpenPool finishes or restarts the job.
func TestPoolCreateInterrupted(t *testing.T) {
	env := newPoolEnv(t, "durable")
	cfg := env.config("nodeB", 64)
	p := env.open(t, cfg)
	path := p.path
	p.Close()

	// Header written, rename not done.
	if err := os.Rename(path, path+".new"); err != nil {
		t.Fatal(err)
	}
	p = env.open(t, cfg)
	p.Put(poolNewKeys(1, 0, 1, DefaultSlotSize))
	p.Close()
	if _, err := os.Stat(path + ".new"); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("temporary file left: %v", err)
	}

	// Temporary file made, header not written: a new name starts afresh.
	cfg.Name = "nodeC"
	if err := os.WriteFile(filepath.Join(env.dir, "pool-nodeC.slots.new"), []byte("stale"), 0o600); err != nil {
		t.Fatal(err)
	}
	p = env.open(t, cfg)
	if err := p.Put(poolNewKeys(1, 0, 1, DefaultSlotSize)); err != nil {
		t.Fatal(err)
	}
}

// TestPoolFailedMetadataWrite: when the metadata store fails under the
// pool, the call fails, the pool refuses further calls, and a restart finds
// a consistent pool.
func TestPoolFailedMetadataWrite(t *testing.T) {
	env := newPoolEnv(t, "durable")
	cfg := env.config("nodeB", 64)
	p, err := OpenPool(cfg)
	if err != nil {
		t.Fatal(err)
	}
	keys := poolNewKeys(1, 0, 10, DefaultSlotSize)
	if err := p.Put(keys); err != nil {
		t.Fatal(err)
	}
	env.db.Close()
	err = p.Put(poolNewKeys(1, 10, 5, DefaultSlotSize))
	wantErr(t, err, ErrPoolFailed, `pool "nodeB": Put`)
	_, err = p.TakeNext(1, Owner("m"))
	wantErr(t, err, ErrPoolFailed, "first failure")
	p.Close()

	env.db, err = meta.Open(filepath.Join(filepath.Dir(env.dir), "meta"))
	if err != nil {
		t.Fatal(err)
	}
	defer env.db.Close()
	cfg.Meta = env.db
	p = env.open(t, cfg)
	checkPoolInvariants(t, p)
	got, err := p.TakeNext(10, Owner("m"))
	if err != nil {
		t.Fatal(err)
	}
	if st := p.Stats(); st.Stock != 0 || st.ZeroisedBytes == 0 {
		t.Fatalf("after restart: %+v; want the failed Put's slots zeroised as orphans", st)
	}
	for i, k := range got {
		if k.ID != keys[i].ID || !bytes.Equal(k.Bytes, keys[i].Key) {
			t.Fatalf("key %d changed across the failure", i)
		}
	}
}

// TestPoolFullBatches: the largest batch fits in one metadata transaction
// with the longest pool name, and the longest owner tags are split as needed.
func TestPoolFullBatches(t *testing.T) {
	if testing.Short() {
		t.Skip("writes several MaxBatch transactions")
	}
	env := newPoolEnv(t, "durable")
	cfg := env.config(strings.Repeat("n", MaxPoolNameLen), MaxBatch)
	p := env.open(t, cfg)
	keys := poolNewKeys(1, 0, MaxBatch, DefaultSlotSize)
	if err := p.Put(keys); err != nil {
		t.Fatal(err)
	}
	tag := make([]byte, MaxOwnerLen)
	for i := range tag {
		tag[i] = byte(i * 7)
	}
	big := Owner(tag)
	if err := p.SetOwner(poolIDs(keys), big); err != nil {
		t.Fatal(err)
	}
	p.Close()
	p = env.open(t, cfg)
	got, err := p.TakeByIDs(poolIDs(keys))
	if err != nil {
		t.Fatal(err)
	}
	for i, k := range got {
		if !bytes.Equal(k.Bytes, keys[i].Key) || k.Owner != big {
			t.Fatalf("key %d after restart: owner of %d bytes, want the %d set", i, len(k.Owner), len(big))
		}
	}
}

// TestPoolConcurrent runs putters, takers (FIFO and by ID) and assigners
// at once and checks conservation: every key put is handed out exactly once
// or is still in the pool, with its bytes; and the watermark callbacks come
// in the order of the crossings.
func TestPoolConcurrent(t *testing.T) {
	for _, mode := range poolModes {
		t.Run(mode, func(t *testing.T) {
			rounds := 300
			if mode == "durable" {
				rounds = 40
			}
			if testing.Short() {
				rounds /= 3
			}
			const putters, takers, byID = 4, 3, 3
			env := newPoolEnv(t, mode)
			cfg := env.config("nodeB", 256)
			cfg.Low, cfg.High = 40, 200
			var last string // written only by the callbacks, which run one at a time
			var nLow, nHigh int
			cfg.OnLow = func(stock int) {
				if stock >= cfg.Low {
					t.Errorf("OnLow(%d) at or above Low", stock)
				}
				last = "low"
				nLow++
			}
			cfg.OnHigh = func(stock int) {
				if stock < cfg.High {
					t.Errorf("OnHigh(%d) below High", stock)
				}
				last = "high"
				nHigh++
			}
			p := env.open(t, cfg)

			var mu sync.Mutex
			put := map[KeyID][]byte{}
			taken := map[KeyID]int{}
			record := func(keys []Key) {
				mu.Lock()
				defer mu.Unlock()
				for _, k := range keys {
					taken[k.ID]++
					if !bytes.Equal(k.Bytes, poolKeyBytes(k.ID, DefaultSlotSize)) {
						t.Errorf("key %s: wrong bytes", k.ID)
					}
				}
			}
			ids := make(chan []KeyID, 64)
			var putWG, takeWG sync.WaitGroup
			for g := range putters {
				putWG.Go(func() {
					rnd := rand.New(rand.NewPCG(uint64(g), 1))
					var seq uint64
					for range rounds {
						keys := poolNewKeys(uint64(g), seq, 1+rnd.IntN(16), DefaultSlotSize)
						seq += uint64(len(keys))
						err := p.Put(keys)
						if errors.Is(err, ErrPoolFull) {
							continue
						}
						if err != nil {
							t.Error(err)
							return
						}
						mu.Lock()
						for _, k := range keys {
							put[k.ID] = k.Key
						}
						mu.Unlock()
						select {
						case ids <- poolIDs(keys[:rnd.IntN(len(keys)+1)]):
						default:
						}
					}
				})
			}
			for g := range takers {
				takeWG.Go(func() {
					rnd := rand.New(rand.NewPCG(uint64(g), 2))
					for range rounds {
						got, err := p.TakeNext(1+rnd.IntN(12), Owner("saeA"))
						if errors.Is(err, ErrPoolEmpty) {
							continue
						}
						if err != nil {
							t.Error(err)
							return
						}
						record(got)
					}
				})
			}
			for g := range byID {
				takeWG.Go(func() {
					for batch := range ids {
						if g == 0 {
							// One of them assigns first: races with the takers.
							if err := p.SetOwner(batch, Owner("saeA>saeB")); err != nil && !errors.Is(err, ErrUnknownKey) {
								t.Error(err)
							}
						}
						got, err := p.TakeByIDs(batch)
						if errors.Is(err, ErrUnknownKey) {
							continue
						}
						if err != nil {
							t.Error(err)
							return
						}
						record(got)
					}
				})
			}
			putWG.Wait()
			close(ids)
			takeWG.Wait()
			checkPoolInvariants(t, p)

			st := p.Stats()
			lastBeforeDrain := last
			rest, err := p.TakeNext(st.Stock, Owner("saeA"))
			if err != nil && st.Stock > 0 {
				t.Fatal(err)
			}
			record(rest)
			for id := range put {
				if taken[id] != 1 {
					t.Errorf("key %s handed out %d times", id, taken[id])
				}
			}
			for id := range taken {
				if _, ok := put[id]; !ok {
					t.Errorf("key %s handed out but never put", id)
				}
			}
			if st.Added != uint64(len(put)) || st.Taken+uint64(st.Stock) != uint64(len(put)) {
				t.Errorf("stats %+v, %d keys put", st, len(put))
			}
			// The last crossing before the final drain decides the last
			// callback before it.
			switch {
			case st.Stock < cfg.Low && lastBeforeDrain != "low":
				t.Errorf("stock %d ended below Low, but the last callback was %q", st.Stock, lastBeforeDrain)
			case st.Stock >= cfg.High && lastBeforeDrain != "high":
				t.Errorf("stock %d ended at High or more, but the last callback was %q", st.Stock, lastBeforeDrain)
			}
			t.Logf("%d keys put, %d callbacks low, %d high", len(put), nLow, nHigh)
		})
	}
}

func BenchmarkPool(b *testing.B) {
	for _, mode := range poolModes {
		for _, batch := range []int{1, 64, 1024} {
			b.Run(fmt.Sprintf("%s/batch=%d", mode, batch), func(b *testing.B) {
				env := newPoolEnv(b, mode)
				p := env.open(b, env.config("nodeB", 2*MaxBatch))
				// The same keys go in and out each round: this measures
				// the pool, not making IDs.
				keys := make([]NewKey, batch)
				for i := range keys {
					keys[i] = NewKey{ID: poolID(1, uint64(i)), Key: make([]byte, 32)}
				}
				b.ReportAllocs()
				b.SetBytes(int64(batch * 32))
				a := Owner("saeA")
				for b.Loop() {
					if err := p.Put(keys); err != nil {
						b.Fatal(err)
					}
					if _, err := p.TakeNext(batch, a); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*batch), "ns/key")
			})
		}
	}
}

// TestPoolDiscard removes the keys present and allowed, skips the rest
// (unknown, repeated, refused), in both modes, and the removal outlives a
// reopen of a durable pool.
func TestPoolDiscard(t *testing.T) {
	for _, mode := range poolModes {
		t.Run(mode, func(t *testing.T) {
			env := newPoolEnv(t, mode)
			cfg := env.config("nodeB", 16)
			p := env.open(t, cfg)
			keys := poolNewKeys(1, 0, 6, DefaultSlotSize)
			if err := p.Put(keys); err != nil {
				t.Fatal(err)
			}
			a := Owner("saeA>saeB")
			if err := p.SetOwner([]KeyID{keys[1].ID, keys[2].ID}, a); err != nil {
				t.Fatal(err)
			}
			refused := errors.New("not yours")
			n, err := p.Discard([]KeyID{keys[0].ID, keys[0].ID, poolID(9, 9), keys[1].ID, keys[3].ID, keys[2].ID}, func(id KeyID, got Owner) error {
				if id == keys[2].ID {
					return refused
				}
				return nil
			})
			if err != nil || n != 3 {
				t.Fatalf("Discard: %d, %v; want keys 0, 1 and 3 removed", n, err)
			}
			checkPoolInvariants(t, p)
			if st := p.Stats(); st.Stock != 3 {
				t.Fatalf("stock %d after discarding 3 of 6", st.Stock)
			}
			if _, err := p.TakeByIDs([]KeyID{keys[0].ID}); !errors.Is(err, ErrUnknownKey) {
				t.Fatalf("a discarded key is still there: %v", err)
			}
			if !env.durable {
				return
			}
			p.Close()
			q := env.open(t, cfg)
			if st := q.Stats(); st.Stock != 3 {
				t.Fatalf("after reopening: stock %d, want 3", st.Stock)
			}
			got, err := q.TakeByIDs([]KeyID{keys[2].ID, keys[4].ID, keys[5].ID})
			if err != nil || len(got) != 3 {
				t.Fatalf("after reopening, the keys kept: %v", err)
			}
		})
	}
}
