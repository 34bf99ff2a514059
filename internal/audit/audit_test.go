package audit

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/qrelay/qrelay/internal/waitfor"
	"github.com/qrelay/qrelay/ringstore"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// clock is a settable Config.Now.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: t0} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// countingStore counts the transactions of a store, and fails the next
// failN of them.
type countingStore struct {
	store
	updates atomic.Int64
	failN   atomic.Int64
}

func (c *countingStore) Update(fn func(tx *ringstore.MetaTx) error) error {
	if c.failN.Add(-1) >= 0 {
		return errors.New("disk on fire")
	}
	c.failN.Store(0)
	c.updates.Add(1)
	return c.store.Update(fn)
}

// modes runs f in memory and in durable mode.
func modes(t *testing.T, f func(t *testing.T, durable bool)) {
	t.Run("memory", func(t *testing.T) { f(t, false) })
	t.Run("durable", func(t *testing.T) { f(t, true) })
}

// open opens a log that flushes only when asked, on clk, in durable mode
// on a fresh store if durable.
func open(t testing.TB, durable bool, clk *clock, cfg Config) *Log {
	t.Helper()
	if durable && cfg.Meta == nil {
		cfg.Meta = openMeta(t, t.TempDir())
	}
	if cfg.FlushEvery == 0 {
		cfg.FlushEvery = time.Hour
	}
	if clk != nil {
		cfg.Now = clk.Now
	}
	cfg.Logger = slog.New(slog.DiscardHandler)
	l, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func openMeta(t testing.TB, dir string) *ringstore.Meta {
	t.Helper()
	m, err := ringstore.OpenMeta(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

func query(t testing.TB, l *Log, q Query) []Record {
	t.Helper()
	rs, err := l.Query(q)
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

func used(peer, dir, side string, from, to uint64, at time.Time) Record {
	return Record{Time: at, Kind: KindPadUsed, Peer: peer, Dir: dir, Side: side, From: from, To: to}
}

func burnt(peer, dir, side string, from, to uint64, reason string, at time.Time) Record {
	return Record{Time: at, Kind: KindPadBurnt, Peer: peer, Dir: dir, Side: side, From: from, To: to, Reason: reason}
}

func appended(peer, dir string, from, to uint64, block string, at time.Time) Record {
	return Record{Time: at, Kind: KindPadAppended, Peer: peer, Dir: dir, From: from, To: to, Block: block}
}

func sameRecords(t *testing.T, what string, got, want []Record) {
	t.Helper()
	if reflect.DeepEqual(got, want) {
		return
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s: got %d records:\n", what, len(got))
	for _, r := range got {
		fmt.Fprintf(&b, "  %+v\n", r)
	}
	fmt.Fprintf(&b, "want %d:\n", len(want))
	for _, r := range want {
		fmt.Fprintf(&b, "  %+v\n", r)
	}
	t.Error(b.String())
}

const (
	m2s = DirMasterToSlave
	s2m = DirSlaveToMaster
)

// TestCoalesce: a pad range that carries on where the previous record of
// its link, direction, side and kind (and reason) ended extends it, even
// with other links' records between; anything else is a record of its
// own, and a flush ends every record.
func TestCoalesce(t *testing.T) {
	modes(t, func(t *testing.T, durable bool) {
		clk := newClock()
		l := open(t, durable, clk, Config{})
		t1 := t0.Add(time.Second)
		l.PadUsed("b", 0, true, 0, 100)
		clk.add(time.Second) // coalesced records keep the time of their first range
		l.PadUsed("b", 0, true, 100, 250)
		l.PadUsed("c", 0, true, 0, 10) // another link between
		l.PadUsed("b", 0, true, 250, 300)
		l.PadUsed("b", 0, true, 450, 500)  // a gap: a new record
		l.PadUsed("b", 0, true, 500, 600)  // extends that one
		l.PadUsed("b", 0, true, 400, 450)  // and one just before it too
		l.PadUsed("b", 1, false, 600, 700) // other direction and side
		l.PadUsed("b", 0, false, 600, 700) // other side
		l.PadUsed("b", 0, true, 600, 600)  // empty: nothing
		l.PadBurnt("b", 0, true, 600, 700, ReasonSync)
		l.PadBurnt("b", 0, true, 700, 800, ReasonSync)
		l.PadBurnt("b", 0, true, 800, 900, ReasonGap) // another reason
		l.PadAppended("b", 1, 0, 64, "blk-1")
		l.PadAppended("b", 1, 64, 64, "blk-2") // blocks keep their own records
		if err := l.Flush(); err != nil {
			t.Fatal(err)
		}
		l.PadUsed("b", 0, true, 600, 650) // after a flush: a new record
		want := []Record{
			used("b", m2s, SideTx, 0, 300, t0),
			used("c", m2s, SideTx, 0, 10, t1),
			used("b", m2s, SideTx, 400, 600, t1),
			used("b", s2m, SideRx, 600, 700, t1),
			used("b", m2s, SideRx, 600, 700, t1),
			burnt("b", m2s, SideTx, 600, 800, ReasonSync, t1),
			burnt("b", m2s, SideTx, 800, 900, ReasonGap, t1),
			appended("b", s2m, 0, 64, "blk-1", t1),
			appended("b", s2m, 64, 128, "blk-2", t1),
			used("b", m2s, SideTx, 600, 650, t1),
		}
		sameRecords(t, "records", query(t, l, Query{}), want)
		if s := l.Stats(); s.Coalesced != 5 || s.Records != uint64(len(want)) || s.Pending != 0 {
			t.Errorf("stats %+v; want 5 coalesced, %d records, none pending", s, len(want))
		}
	})
}

func keyID(i int) ringstore.KeyID { return ringstore.DeriveKeyID("a", "b", 7, uint64(i)) }

func keyIDs(from, n int) []ringstore.KeyID {
	ids := make([]ringstore.KeyID, n)
	for i := range ids {
		ids[i] = keyID(from + i)
	}
	return ids
}

func idStrings(ids []ringstore.KeyID) []string {
	s := make([]string, len(ids))
	for i, id := range ids {
		s[i] = id.String()
	}
	return s
}

// TestKeysHanded: one record per call, the caller's slice not kept; a
// batch above 4,096 IDs takes a record per 4,096.
func TestKeysHanded(t *testing.T) {
	modes(t, func(t *testing.T, durable bool) {
		l := open(t, durable, newClock(), Config{})
		ids := keyIDs(0, 3)
		l.KeysHanded("b", "sae-1", RoleMaster, ids)
		want0 := idStrings(ids)
		clear(ids)                                 // the caller reuses its slice
		l.KeysHanded("b", "sae-2", RoleSlave, nil) // nothing
		big := keyIDs(3, 2*maxIDsPerRecord+5)
		l.KeysHanded("c", "dc1-dc2", RoleStream, big)
		rs := query(t, l, Query{})
		if len(rs) != 4 {
			t.Fatalf("%d records; want 1 + 3 (a batch of %d in records of %d)", len(rs), len(big), maxIDsPerRecord)
		}
		sameRecords(t, "first", rs[:1], []Record{{Time: t0, Kind: KindKeys, Remote: "b", SAE: "sae-1", Role: RoleMaster, KeyIDs: want0}})
		var got []string
		for _, r := range rs[1:] {
			if r.Remote != "c" || r.SAE != "dc1-dc2" || r.Role != RoleStream || len(r.KeyIDs) > maxIDsPerRecord {
				t.Errorf("record %+v", r)
			}
			got = append(got, r.KeyIDs...)
		}
		if !reflect.DeepEqual(got, idStrings(big)) {
			t.Errorf("the split batch lost or reordered IDs")
		}
	})
}

// TestFlushBatching: a flush writes its records in one transaction (up
// to 1,000 of them), whatever their number of calls; an empty flush
// writes nothing.
func TestFlushBatching(t *testing.T) {
	var cs *countingStore
	l := open(t, true, newClock(), Config{wrap: func(s store) store { cs = &countingStore{store: s}; return cs }})
	if err := l.Flush(); err != nil || cs.updates.Load() != 0 {
		t.Fatalf("an empty flush: %d transactions, %v; want none", cs.updates.Load(), err)
	}
	for i := range 900 {
		l.PadUsed("b", 0, true, uint64(2*i), uint64(2*i+1)) // not contiguous: 900 records
	}
	for i := range 99 {
		l.KeysHanded("c", "sae-1", RoleMaster, keyIDs(i*128, 128))
	}
	if err := l.Flush(); err != nil {
		t.Fatal(err)
	}
	if n := cs.updates.Load(); n != 1 {
		t.Errorf("a flush of 999 records took %d transactions; want 1", n)
	}
	for i := range 2500 {
		l.PadUsed("b", 1, false, uint64(2*i), uint64(2*i+1))
	}
	l.Flush()
	if n := cs.updates.Load(); n != 1+3 {
		t.Errorf("a flush of 2,500 records took %d transactions; want 3", n-1)
	}
	s := l.Stats()
	if s.Records != 999+2500 || s.Flushes != 2 || s.Txns != 4 || s.Bytes == 0 {
		t.Errorf("stats %+v; want 3499 records, 2 flushes, 4 transactions", s)
	}
	if n := len(query(t, l, Query{Limit: MaxLimit})); n != 3499 {
		t.Errorf("query found %d records; want 3499", n)
	}
}

// TestFlushEvery: the flusher writes on its own, every FlushEvery, and
// early when many records wait.
func TestFlushEvery(t *testing.T) {
	l := open(t, true, nil, Config{FlushEvery: 20 * time.Millisecond})
	l.PadUsed("b", 0, true, 0, 10)
	waitfor.Bool(t, "a timed flush", 10*time.Second, func() bool { return l.Stats().Records == 1 })
	l2 := open(t, true, nil, Config{FlushEvery: time.Hour})
	for i := range flushAt {
		l2.PadUsed("b", 0, true, uint64(2*i), uint64(2*i+1))
	}
	waitfor.Bool(t, "an early flush", 10*time.Second, func() bool { return l2.Stats().Records == flushAt })
}

// TestDurableReopen: records survive closing and reopening the store.
func TestDurableReopen(t *testing.T) {
	dir := t.TempDir()
	clk := newClock()
	m, err := ringstore.OpenMeta(dir)
	if err != nil {
		t.Fatal(err)
	}
	l, err := Open(Config{Meta: m, Now: clk.Now, FlushEvery: time.Hour, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	l.PadAppended("b", 0, 0, 4096, "blk-1")
	l.PadUsed("b", 0, true, 0, 1000)
	l.KeysHanded("d", "sae-1", RoleMaster, keyIDs(0, 2))
	want := query(t, l, Query{})
	l.PadBurnt("b", 0, true, 1000, 4096, ReasonSync) // flushed by Close
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l.PadUsed("b", 0, true, 5000, 6000) // after Close: lost
	if s := l.Stats(); s.Lost != 1 {
		t.Errorf("a record after Close: stats %+v; want 1 lost", s)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	l = open(t, true, clk, Config{Meta: openMeta(t, dir)})
	want = append(want, burnt("b", m2s, SideTx, 1000, 4096, ReasonSync, t0))
	sameRecords(t, "after reopening", query(t, l, Query{}), want)
}

// TestRetention: a durable log deletes records older than Retention, at
// start and as it runs, in batches.
func TestRetention(t *testing.T) {
	dir := t.TempDir()
	clk := newClock()
	m := openMeta(t, dir)
	l := open(t, true, clk, Config{Meta: m, Retention: 24 * time.Hour})
	n := pruneBatch*2 + 500 // more than one scan's worth
	for i := range n {
		l.PadUsed("b", 0, true, uint64(2*i), uint64(2*i+1))
	}
	l.Flush()
	clk.add(time.Hour)
	l.PadUsed("b", 1, true, 0, 10)
	l.Flush()
	clk.add(time.Hour)
	l.PadUsed("b", 1, true, 20, 30)
	l.Close()

	clk.add(22*time.Hour + 30*time.Minute) // the first batch is older than a day
	l = open(t, true, clk, Config{Meta: m, Retention: 24 * time.Hour})
	waitfor.Bool(t, "the deletion at start", 10*time.Second, func() bool { return l.Stats().Pruned == uint64(n) })
	rs := query(t, l, Query{})
	sameRecords(t, "after the retention", rs, []Record{
		used("b", s2m, SideTx, 0, 10, t0.Add(time.Hour)),
		used("b", s2m, SideTx, 20, 30, t0.Add(2*time.Hour)),
	})
	if s := l.Stats(); s.Pruned != uint64(n) {
		t.Errorf("pruned %d; want %d", s.Pruned, n)
	}
	clk.add(time.Hour)
	if err := l.prune(); err != nil { // as the flusher does every minute
		t.Fatal(err)
	}
	if rs := query(t, l, Query{}); len(rs) != 1 || rs[0].From != 20 {
		t.Errorf("after another hour: %+v; want the last record only", rs)
	}
}

// TestWindow: memory mode keeps the most recent Window records.
func TestWindow(t *testing.T) {
	l := open(t, false, newClock(), Config{Window: 10})
	for i := range 25 {
		l.PadUsed("b", 0, true, uint64(10*i), uint64(10*i+5))
		if i%7 == 0 {
			l.Flush()
		}
	}
	rs := query(t, l, Query{})
	if len(rs) != 10 || rs[0].From != 150 || rs[9].From != 240 {
		t.Fatalf("window of 10 holds %d records from %d; want the last 10 (150 to 240)", len(rs), rs[0].From)
	}
	if s := l.Stats(); s.Dropped != 15 || s.Records != 25 {
		t.Errorf("stats %+v; want 15 dropped of 25", s)
	}
}

// TestQuery: filters by kind, peer (or remote), time and number, oldest
// first, unflushed records included.
func TestQuery(t *testing.T) {
	modes(t, func(t *testing.T, durable bool) {
		clk := newClock()
		l := open(t, durable, clk, Config{})
		var all []Record
		for i := range 30 {
			at := clk.Now()
			peer := []string{"b", "c"}[i%2]
			switch i % 3 {
			case 0:
				l.PadUsed(peer, 0, true, uint64(100*i), uint64(100*i+50))
				all = append(all, used(peer, m2s, SideTx, uint64(100*i), uint64(100*i+50), at))
			case 1:
				l.PadAppended(peer, 1, uint64(100*i), 64, fmt.Sprint("blk-", i))
				all = append(all, appended(peer, s2m, uint64(100*i), uint64(100*i+64), fmt.Sprint("blk-", i), at))
			case 2:
				l.KeysHanded(peer, "sae-1", RoleSlave, keyIDs(i, 1))
				all = append(all, Record{Time: at, Kind: KindKeys, Remote: peer, SAE: "sae-1", Role: RoleSlave, KeyIDs: idStrings(keyIDs(i, 1))})
			}
			if i == 20 {
				l.Flush() // the rest stays buffered
			}
			clk.add(time.Duration(i+1) * 977 * time.Microsecond)
		}
		filter := func(f func(Record) bool) []Record {
			out := []Record{}
			for _, r := range all {
				if f(r) {
					out = append(out, r)
				}
			}
			return out
		}
		since := all[17].Time
		cases := []struct {
			name string
			q    Query
			want []Record
		}{
			{"all", Query{}, all},
			{"kind", Query{Kind: KindPadAppended}, filter(func(r Record) bool { return r.Kind == KindPadAppended })},
			{"peer", Query{Peer: "c"}, filter(func(r Record) bool { return r.Peer == "c" || r.Remote == "c" })},
			{"since", Query{Since: since}, all[17:]},
			{"since a nanosecond later", Query{Since: since.Add(1)}, all[18:]},
			{"since before 1970", Query{Since: time.Unix(-5, 0)}, all},
			{"since the future", Query{Since: clk.Now().Add(time.Hour)}, []Record{}},
			{"limit", Query{Limit: 4}, all[:4]},
			{"everything at once", Query{Kind: KindKeys, Peer: "b", Since: since, Limit: 2},
				filter(func(r Record) bool { return r.Kind == KindKeys && r.Remote == "b" && !r.Time.Before(since) })[:2]},
		}
		for _, c := range cases {
			sameRecords(t, c.name, query(t, l, c.q), c.want)
		}
		for _, q := range []Query{{Kind: "pads"}, {Limit: -1}, {Limit: MaxLimit + 1}} {
			if _, err := l.Query(q); !errors.Is(err, ErrBadQuery) {
				t.Errorf("Query(%+v): %v; want ErrBadQuery", q, err)
			}
		}
	})
}

// TestQueryKeyIDBound: a query ends once its records hold MaxKeyIDs key
// IDs.
func TestQueryKeyIDBound(t *testing.T) {
	modes(t, func(t *testing.T, durable bool) {
		l := open(t, durable, newClock(), Config{})
		ids := keyIDs(0, maxIDsPerRecord)
		for range MaxKeyIDs/maxIDsPerRecord + 3 {
			l.KeysHanded("b", "sae-1", RoleMaster, ids)
		}
		if rs := query(t, l, Query{}); len(rs) != MaxKeyIDs/maxIDsPerRecord {
			t.Errorf("%d records; want %d, holding %d key IDs", len(rs), MaxKeyIDs/maxIDsPerRecord, MaxKeyIDs)
		}
	})
}

// TestSincePrefixes: the prefixes cover, in order, exactly the keys at
// or after a time.
func TestSincePrefixes(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	times := []int64{1, 15, 16, 0x0fffffffffffffff, 0x7fffffffffffffff, t0.UnixNano()}
	for range 200 {
		times = append(times, r.Int64()>>r.IntN(63))
	}
	for _, since := range times {
		ps := sincePrefixes(since)
		for i := 1; i < len(ps); i++ {
			if ps[i-1] >= ps[i] {
				t.Fatalf("since %x: prefixes out of order: %q then %q", since, ps[i-1], ps[i])
			}
		}
		for _, k := range []int64{since - 1, since, since + 1, since ^ 0xf0, since >> 4, since << 1, r.Int64()} {
			if k < 0 {
				continue
			}
			key := string(recKey(nil, k, r.Uint32()))
			covered := 0
			for _, p := range ps {
				if strings.HasPrefix(key, p) {
					covered++
				}
			}
			if want := k >= since; covered > 1 || (covered == 1) != want {
				t.Fatalf("since %x: key %s covered by %d prefixes; want %v", since, key, covered, want)
			}
		}
	}
}

// TestDamagedRecord: a stored value that is not a record fails the query
// with its key, rather than being skipped.
func TestDamagedRecord(t *testing.T) {
	m := openMeta(t, t.TempDir())
	l := open(t, true, newClock(), Config{Meta: m})
	l.PadUsed("b", 0, true, 0, 10)
	l.Flush()
	var key string
	m.Scan(keyPrefix, func(k string, _ []byte) error { key = k; return nil })
	val, _ := m.Get(key)
	val[len(val)-5] ^= 1
	m.Update(func(tx *ringstore.MetaTx) error { return tx.Set(key, val) })
	_, err := l.Query(Query{})
	var de *DecodeError
	if !errors.As(err, &de) || de.Field != "crc" || !strings.Contains(err.Error(), key) {
		t.Errorf("Query over a damaged record: %v; want a CRC error naming %s", err, key)
	}
}

// TestWriteFailure: records whose write failed are written at the next
// flush, and nothing is lost.
func TestWriteFailure(t *testing.T) {
	var cs *countingStore
	l := open(t, true, newClock(), Config{wrap: func(s store) store { cs = &countingStore{store: s}; return cs }})
	l.PadUsed("b", 0, true, 0, 10)
	cs.failN.Store(2)
	if err := l.Flush(); err == nil {
		t.Fatal("flush on a failing store succeeded")
	}
	l.PadUsed("b", 0, true, 20, 30)
	if err := l.Flush(); err == nil {
		t.Fatal("flush on a failing store succeeded")
	}
	l.PadUsed("b", 0, true, 40, 50)
	rs := query(t, l, Query{})
	if len(rs) != 3 || rs[0].From != 0 || rs[1].From != 20 || rs[2].From != 40 {
		t.Errorf("after the store recovered: %+v; want the 3 records", rs)
	}
	if s := l.Stats(); s.Errors != 2 || s.Lost != 0 {
		t.Errorf("stats %+v; want 2 errors, none lost", s)
	}
}

// TestConcurrent: recorders, queries and flushes at once (run with
// -race); every range and key ends up recorded exactly once.
func TestConcurrent(t *testing.T) {
	modes(t, func(t *testing.T, durable bool) {
		l := open(t, durable, nil, Config{FlushEvery: time.Millisecond})
		const workers, ranges = 8, 2000
		var wg sync.WaitGroup
		stop := make(chan struct{})
		for w := range workers {
			wg.Go(func() {
				peer := fmt.Sprint("peer-", w)
				for i := range ranges {
					l.PadUsed(peer, uint8(w%2), true, uint64(64*i), uint64(64*i+64))
					if i%100 == 0 {
						l.KeysHanded(peer, "sae", RoleMaster, keyIDs(w*ranges+i, 3))
					}
				}
			})
		}
		var qs sync.WaitGroup
		qs.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := l.Query(Query{Limit: 10}); err != nil {
					t.Error(err)
					return
				}
			}
		})
		wg.Wait()
		close(stop)
		qs.Wait()
		rs := query(t, l, Query{Limit: MaxLimit})
		covered := map[string]uint64{}
		keys := 0
		for _, r := range rs {
			if r.Kind == KindKeys {
				keys += len(r.KeyIDs)
				continue
			}
			if r.From != covered[r.Peer] {
				t.Fatalf("%s: record from %d; want it to continue at %d", r.Peer, r.From, covered[r.Peer])
			}
			covered[r.Peer] = r.To
		}
		for w := range workers {
			if got := covered[fmt.Sprint("peer-", w)]; got != 64*ranges {
				t.Errorf("peer-%d: ranges cover [0, %d); want [0, %d)", w, got, 64*ranges)
			}
		}
		if want := workers * ranges / 100 * 3; keys != want {
			t.Errorf("%d key IDs recorded; want %d", keys, want)
		}
		if s := l.Stats(); s.Lost != 0 || s.Dropped != 0 {
			t.Errorf("stats %+v", s)
		}
	})
}

// TestRecordJSON pins the admin API's names: pad records show from and to
// even at 0, keys records none.
func TestRecordJSON(t *testing.T) {
	rs := []Record{
		used("b", m2s, SideTx, 0, 64, t0),
		{Time: t0, Kind: KindKeys, Remote: "d", SAE: "sae-1", Role: RoleMaster, KeyIDs: idStrings(keyIDs(0, 1))},
	}
	b, err := json.Marshal(rs)
	if err != nil {
		t.Fatal(err)
	}
	want := `[{"time":"2026-03-01T12:00:00Z","kind":"pad-used","peer":"b","dir":"MASTER_TO_SLAVE","side":"tx","from":0,"to":64},` +
		`{"time":"2026-03-01T12:00:00Z","kind":"keys","remote":"d","sae":"sae-1","role":"master","key_ids":["` + keyID(0).String() + `"]}]`
	if string(b) != want {
		t.Errorf("JSON\n%s\nwant\n%s", b, want)
	}
	var back []Record
	if err := json.Unmarshal(b, &back); err != nil || !reflect.DeepEqual(back, rs) {
		t.Errorf("round trip: %+v, %v", back, err)
	}
}

func TestOpenErrors(t *testing.T) {
	for _, cfg := range []Config{{Window: -1}, {Retention: -time.Second}, {FlushEvery: -time.Second}} {
		if _, err := Open(cfg); err == nil {
			t.Errorf("Open(%+v) accepted", cfg)
		}
	}
	var l *Log // a nil log records nothing and does not fail
	l.PadUsed("b", 0, true, 0, 1)
	l.KeysHanded("b", "s", RoleMaster, keyIDs(0, 1))
	if err := l.Close(); err != nil || l.Stats() != (Stats{}) {
		t.Error("nil log")
	}
}

// TestPadUsedAllocs: once the buffers have grown, recording allocates
// nothing, coalesced or not.
func TestPadUsedAllocs(t *testing.T) {
	l := open(t, false, nil, Config{})
	warm := func() {
		for i := range 2000 {
			l.PadUsed("b", 0, true, uint64(2*i), uint64(2*i+1))
		}
		l.Flush()
	}
	warm()
	warm() // both buffers grown
	pos := uint64(1 << 40)
	if n := testing.AllocsPerRun(1000, func() { l.PadUsed("b", 0, true, pos, pos+64); pos += 64 }); n != 0 {
		t.Errorf("coalesced PadUsed: %v allocations per call", n)
	}
	l.Flush()
	if n := testing.AllocsPerRun(1000, func() { l.PadUsed("b", 0, true, pos, pos+64); pos += 128 }); n != 0 {
		t.Errorf("PadUsed of a new record: %v allocations per call", n)
	}
}

// BenchmarkPadUsed is the cost of recording one frame's pad on the relay
// hot path: contiguous ranges (one record per link and flush), and
// scattered ones (a record each), with the flusher running.
func BenchmarkPadUsed(b *testing.B) {
	for _, bc := range []struct {
		name   string
		stride uint64
	}{{"contiguous", 1088}, {"scattered", 2048}} {
		for _, durable := range []bool{false, true} {
			name := bc.name + "/memory"
			if durable {
				name = bc.name + "/durable"
			}
			b.Run(name, func(b *testing.B) {
				l := open(b, durable, nil, Config{FlushEvery: DefaultFlushEvery})
				b.ReportAllocs()
				pos := uint64(0)
				for b.Loop() {
					l.PadUsed("node-b", 0, true, pos, pos+1088)
					pos += bc.stride
				}
				b.StopTimer()
				l.Close()
				s := l.Stats()
				b.ReportMetric(float64(s.Records)/float64(b.N), "records/op")
				b.ReportMetric(float64(s.Lost)/float64(b.N), "lost/op")
			})
		}
	}
}

// BenchmarkPadUsedParallel: relay streams of several links at once.
func BenchmarkPadUsedParallel(b *testing.B) {
	l := open(b, false, nil, Config{FlushEvery: DefaultFlushEvery})
	var next atomic.Int64
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		peer := fmt.Sprint("node-", next.Add(1))
		pos := uint64(0)
		for pb.Next() {
			l.PadUsed(peer, 0, true, pos, pos+1088)
			pos += 1088
		}
	})
}

// BenchmarkKeysHanded: one enc_keys answer of 128 keys.
func BenchmarkKeysHanded(b *testing.B) {
	l := open(b, false, nil, Config{FlushEvery: DefaultFlushEvery})
	ids := keyIDs(0, 128)
	b.ReportAllocs()
	for b.Loop() {
		l.KeysHanded("node-b", "sae-1", RoleMaster, ids)
	}
}
