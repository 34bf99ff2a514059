package etsi014client

import (
	"encoding/base64"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/qrelay/qrelay/internal/fakekme"
	"github.com/qrelay/qrelay/ringstore"
)

// store is a metadata store that a test closes and reopens to restart.
type store struct {
	dir  string
	meta *ringstore.Meta
}

func newStore(t *testing.T) *store {
	s := &store{dir: t.TempDir()}
	s.reopen(t)
	t.Cleanup(func() { s.meta.Close() })
	return s
}

func (s *store) reopen(t *testing.T) {
	t.Helper()
	if s.meta != nil {
		if err := s.meta.Close(); err != nil {
			t.Fatal(err)
		}
	}
	m, err := ringstore.OpenMeta(s.dir)
	if err != nil {
		t.Fatal(err)
	}
	s.meta = m
}

// records lists the keys of the client records in the store.
func (s *store) records(t *testing.T, prefix string) []string {
	t.Helper()
	var keys []string
	if err := s.meta.Scan(prefix, func(k string, _ []byte) error { keys = append(keys, k); return nil }); err != nil {
		t.Fatal(err)
	}
	return keys
}

// durableConfigs are the two ends' configurations on p, durable in st.
func durableConfigs(t *testing.T, p *fakekme.Pair, st *store) (mc, sc Config) {
	mc = Config{BaseURL: p.A.URL, SlaveSAE: p.B.SAE, Master: true, Certificate: p.ClientCert(t, p.A.SAE), Roots: p.Roots(), Logger: quiet(), Name: "a~b"}
	sc = Config{BaseURL: p.B.URL, MasterSAE: p.A.SAE, Certificate: p.ClientCert(t, p.B.SAE), Roots: p.Roots(), Logger: quiet(), Name: "a~b"}
	return mc, sc
}

// open starts a client on cfg with the store's current Meta.
func open(t *testing.T, cfg Config, st *store) *Client {
	t.Helper()
	cfg.Meta = st.meta
	c, err := New(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// answer makes k serve one key container with the given IDs (keys of 32
// zero bytes) to every request.
func answer(k *fakekme.KME, ids ...string) {
	key := base64.StdEncoding.EncodeToString(make([]byte, 32))
	var parts []string
	for _, id := range ids {
		parts = append(parts, fmt.Sprintf(`{"key_ID":%q,"key":%q}`, id, key))
	}
	body := `{"keys":[` + strings.Join(parts, ",") + `]}`
	k.Intercept(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte(body)) }))
}

// countTx makes c count its metadata transactions.
func countTx(c *Client) *atomic.Int64 {
	var n atomic.Int64
	inner := c.update
	c.update = func(fn func(*ringstore.MetaTx) error) error {
		n.Add(1)
		return inner(fn)
	}
	return &n
}

// TestDurableRestartRefusesDeliveredID restarts each end in durable mode:
// a key ID it delivered before the restart is refused if its KME hands it
// out again, and new keys flow.
func TestDurableRestartRefusesDeliveredID(t *testing.T) {
	p := fakekme.NewPair(t, fakekme.Config{})
	st := newStore(t)
	mc, sc := durableConfigs(t, p, st)
	m, s := open(t, mc, st), open(t, sc, st)
	got, err := m.Fetch(t.Context(), 5*32)
	if err != nil {
		t.Fatal(err)
	}
	ids := blockIDs(got)
	if _, err := s.Get(t.Context(), ids); err != nil {
		t.Fatal(err)
	}
	m.Close()
	s.Close()
	st.reopen(t) // the node restarts
	m, s = open(t, mc, st), open(t, sc, st)

	answer(p.B, strings.ToUpper(ids[2]))
	if _, err := s.Get(t.Context(), []string{ids[2]}); !errors.Is(err, ErrBadResponse) || !strings.Contains(err.Error(), "key "+ids[2]+" was delivered before: refused, a key used twice would reuse pad") {
		t.Fatalf("slave Get, after a restart, of a key it delivered before: %v", err)
	}
	p.B.Intercept(nil)
	answer(p.A, ids[0])
	if _, err := m.Fetch(t.Context(), 32); !errors.Is(err, ErrBadResponse) || !strings.Contains(err.Error(), "key "+ids[0]+" was delivered before") {
		t.Fatalf("master Fetch, after a restart, of a key it delivered before: %v", err)
	}
	p.A.Intercept(nil)
	fresh, err := m.Fetch(t.Context(), 3*32)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(t.Context(), blockIDs(fresh)); err != nil {
		t.Fatalf("slave Get of new keys after the restart: %v", err)
	}
}

// TestDurableEvictionOrderSurvivesRestart lowers the bound to 8 IDs and
// checks, against a client that never restarts, that the IDs remembered
// after each Fetch are the same across restarts, and that records whose
// IDs are all evicted are deleted.
func TestDurableEvictionOrderSurvivesRestart(t *testing.T) {
	defer func(n int) { recentMax = n }(recentMax)
	recentMax = 8
	p := fakekme.NewPair(t, fakekme.Config{})
	st := newStore(t)
	mc, _ := durableConfigs(t, p, st)
	prefix := "qkd/etsi014/a~b/master/recent/"
	var ref recentIDs // the memory of a client that never restarts
	var order []string
	m := open(t, mc, st)
	for step, n := range []int{3, 3, 3, 1, 1, 2, 5, 1} {
		b, err := m.Fetch(t.Context(), n*32)
		if err != nil || len(b) != n {
			t.Fatal(len(b), err)
		}
		ref.addBatch(blockIDs(b))
		order = append(order, blockIDs(b)...)
		if step%2 == 1 { // restart every other step
			m.Close()
			st.reopen(t)
			m = open(t, mc, st)
		}
		m.dmu.Lock()
		same := maps.Equal(m.recent.set, ref.set)
		records := len(m.recent.batches)
		m.dmu.Unlock()
		if !same {
			t.Fatalf("step %d: the client remembers %d IDs, not the %d that a client that never restarted would", step, len(m.recent.set), len(ref.set))
		}
		if keys := st.records(t, prefix); len(keys) != records || len(keys) != len(ref.batches) {
			t.Fatalf("step %d: %d records in the store (%q), %d live batches, want %d", step, len(keys), keys, records, len(ref.batches))
		}
	}
	// The KME repeating the newest evicted ID is served; the oldest
	// remembered one is refused.
	evicted, kept := order[len(order)-9], order[len(order)-8]
	answer(p.A, kept)
	if _, err := m.Fetch(t.Context(), 32); err == nil || !strings.Contains(err.Error(), "key "+kept+" was delivered before") {
		t.Fatalf("Fetch of the oldest remembered ID: %v", err)
	}
	answer(p.A, evicted)
	if _, err := m.Fetch(t.Context(), 32); err != nil {
		t.Fatalf("Fetch of an ID evicted before the restarts: %v", err)
	}
	p.A.Intercept(nil)
}

// TestDurableOneTransactionPerCall: each Fetch and each Get writes one
// metadata transaction and one record, whatever the number of keys (a Get
// of 300 keys makes three dec_keys requests).
func TestDurableOneTransactionPerCall(t *testing.T) {
	p := fakekme.NewPair(t, fakekme.Config{})
	st := newStore(t)
	mc, sc := durableConfigs(t, p, st)
	m, s := open(t, mc, st), open(t, sc, st)
	mtx, stx := countTx(m), countTx(s)
	var all []string
	for k := range 3 {
		b, err := m.Fetch(t.Context(), 100*32)
		if err != nil || len(b) != 100 {
			t.Fatal(len(b), err)
		}
		all = append(all, blockIDs(b)...)
		if got := mtx.Load(); got != int64(k+1) {
			t.Fatalf("%d Fetches of 100 keys: %d transactions", k+1, got)
		}
	}
	if n := len(st.records(t, "qkd/etsi014/a~b/master/recent/")); n != 3 {
		t.Fatalf("3 Fetches of 100 keys left %d records, want 3", n)
	}
	before := p.B.Requests(fakekme.DecKeys)
	if _, err := s.Get(t.Context(), all); err != nil {
		t.Fatal(err)
	}
	if reqs := p.B.Requests(fakekme.DecKeys) - before; reqs != 3 {
		t.Fatalf("Get of 300 keys made %d dec_keys requests, want 3", reqs)
	}
	if got, n := stx.Load(), len(st.records(t, "qkd/etsi014/a~b/slave/recent/")); got != 1 || n != 1 {
		t.Fatalf("Get of 300 keys: %d transactions, %d records; want 1 and 1", got, n)
	}
}

// TestDurablePersistFailure: keys whose IDs cannot be recorded are
// zeroised and not returned.
func TestDurablePersistFailure(t *testing.T) {
	p := fakekme.NewPair(t, fakekme.Config{})
	st := newStore(t)
	mc, _ := durableConfigs(t, p, st)
	m := open(t, mc, st)
	broken := errors.New("disk on fire")
	m.update = func(func(*ringstore.MetaTx) error) error { return broken }
	b, err := m.Fetch(t.Context(), 4*32)
	if !errors.Is(err, broken) || b != nil || !strings.Contains(err.Error(), "POST "+p.A.URL) || !strings.Contains(err.Error(), "the 4 keys it returned are dropped, not handed out") {
		t.Fatalf("Fetch with a failing store: %d blocks, %v", len(b), err)
	}
	if st := m.Status(); st.Delivered != 0 {
		t.Fatalf("%d bytes counted delivered, want 0", st.Delivered)
	}
	if n := len(m.recent.set); n != 0 {
		t.Fatalf("%d IDs remembered of keys never handed out", n)
	}
}

// TestDurableBadRecord: a record that does not decode, or a key that is
// not a batch number, refuses New with ErrRecord, naming the key.
func TestDurableBadRecord(t *testing.T) {
	p := fakekme.NewPair(t, fakekme.Config{})
	st := newStore(t)
	mc, _ := durableConfigs(t, p, st)
	good := encodeBatch([]string{"3b0a6e0c-4d5b-4c1a-9f7e-2a1b3c4d5e6f"})
	damaged := append([]byte(nil), good...)
	damaged[12] ^= 1
	prefix := "qkd/etsi014/a~b/master/recent/"
	for _, tc := range []struct {
		key  string
		val  []byte
		want string
	}{
		{prefix + "0000000000000000", damaged, "CRC-32C"},
		{prefix + "0000000000000000", good[:20], "20 bytes"},
		{prefix + "zz", good, "want 16 lower-case hex digits"},
		{prefix + "000000000000000A", good, "want 16 lower-case hex digits"},
	} {
		if err := st.meta.Update(func(tx *ringstore.MetaTx) error { return tx.Set(tc.key, tc.val) }); err != nil {
			t.Fatal(err)
		}
		cfg := mc
		cfg.Meta = st.meta
		_, err := New(t.Context(), cfg)
		if !errors.Is(err, ErrRecord) || !strings.Contains(err.Error(), `metadata record "`+tc.key+`"`) || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "refusing to start") {
			t.Errorf("New with record %q: %v; want ErrRecord naming it and saying %q", tc.key, err, tc.want)
		}
		if err := st.meta.Update(func(tx *ringstore.MetaTx) error { return tx.Delete(tc.key) }); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range []string{"", "a/b", "a b"} {
		cfg := mc
		cfg.Meta, cfg.Name = st.meta, name
		if _, err := New(t.Context(), cfg); err == nil || !strings.Contains(err.Error(), "Name") {
			t.Errorf("New with Meta and Name %q: %v; want it refused", name, err)
		}
	}
}
