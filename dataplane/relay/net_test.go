package relay

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/qrelay/qrelay/dataplane/kmlink"
	"github.com/qrelay/qrelay/dataplane/qkd"
	"github.com/qrelay/qrelay/dataplane/qkdsim"
	"github.com/qrelay/qrelay/internal/audit"
	"github.com/qrelay/qrelay/internal/pki"
	"github.com/qrelay/qrelay/internal/waitfor"
	"github.com/qrelay/qrelay/ringstore"
)

// testNet is a network of engines on loopback, one process, with simulated
// QKD links. A node can be killed and started again (restart).
type testNet struct {
	t      testing.TB
	ca     *pki.CA
	log    *slog.Logger
	o      netOpts
	ids    []string
	edges  [][2]string
	routes map[string]StaticRoutes
	nodes  map[string]*testNode
}

type testNode struct {
	id    string
	addr  string // where its transport listens, kept across restarts
	dir   string // durable mode: its rings and metadata
	meta  *ringstore.Meta
	audit *audit.Log // kept across restarts: the node's whole history
	eng   *Engine
	tr    *kmlink.Transport
	sink  *PoolSink
	pools []*ringstore.Pool
	rings []*ringstore.PadRing
	srcs  []*qkdsim.Sim
	conns sync.Map // peer → *kmlink.Conn, the latest
	up    chan string
}

// recHandler lets tests see connections as the engine does.
type recHandler struct{ n *testNode }

func (h recHandler) LinkUp(c *kmlink.Conn) {
	h.n.conns.Store(c.Peer(), c)
	h.n.eng.LinkUp(c)
	select {
	case h.n.up <- c.Peer():
	default:
	}
}

func (h recHandler) LinkDown(c *kmlink.Conn, err error) { h.n.eng.LinkDown(c, err) }

type netOpts struct {
	ringSize   int
	poolSlots  int
	secretRate float64 // bit/s per link; 0 = unlimited
	noSource   bool    // no QKD source: pad comes from fillPad
	durable    bool    // pad rings in durable mode, each node with its own metadata store
	// source, if set, makes the QKD source of node me's end of its link
	// to peer instead of a simulator.
	source func(me, peer string) qkd.Source
	sink   func(id string) Sink
	cfg    func(*Config)
}

func testLogger() *slog.Logger {
	lvl := slog.LevelWarn
	if os.Getenv("QRELAY_TEST_LOG") != "" {
		lvl = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lvl}))
}

// newTestNet starts nodes ids joined by edges, with routes[id] as each
// node's static next hops, and waits until every link is up and holds pad.
func newTestNet(t testing.TB, ids []string, edges [][2]string, routes map[string]StaticRoutes, o netOpts) *testNet {
	t.Helper()
	if o.ringSize == 0 {
		o.ringSize = 8 << 20
	}
	if o.poolSlots == 0 {
		o.poolSlots = 1 << 16
	}
	ca, err := pki.NewCA("test CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	n := &testNet{t: t, ca: ca, log: testLogger(), o: o, ids: ids, edges: edges, routes: routes, nodes: map[string]*testNode{}}
	for _, id := range ids {
		nd := &testNode{id: id, addr: "127.0.0.1:0"}
		var err error
		if nd.audit, err = audit.Open(audit.Config{Window: 1 << 22}); err != nil {
			t.Fatal(err)
		}
		if o.durable {
			nd.dir = t.TempDir() // before the Cleanup below, which must run first
		}
		n.nodes[id] = nd
	}
	t.Cleanup(n.close)
	for _, id := range ids {
		n.start(n.nodes[id])
	}
	for _, e := range edges {
		a, b := n.nodes[e[0]], n.nodes[e[1]]
		for _, p := range [][2]*testNode{{a, b}, {b, a}} {
			if err := p[0].tr.AddPeer(kmlink.Peer{ID: p[1].id, Addr: p[1].addr}); err != nil {
				t.Fatal(err)
			}
		}
	}
	return n
}

// start brings node nd up: its pools, engine, transport, and the pads and
// QKD sources of its links (memory rings start empty; durable ones reopen).
func (n *testNet) start(nd *testNode) {
	t, o := n.t, n.o
	t.Helper()
	nd.up = make(chan string, 16)
	nd.conns = sync.Map{}
	nd.rings, nd.srcs, nd.pools = nil, nil, nil
	if o.durable {
		m, err := ringstore.OpenMeta(filepath.Join(nd.dir, "meta"))
		if err != nil {
			t.Fatal(err)
		}
		nd.meta = m
	}
	var sink Sink
	if o.sink != nil {
		sink = o.sink(nd.id)
	} else {
		nd.sink = NewPoolSink(nil)
		for _, other := range n.ids {
			if other == nd.id {
				continue
			}
			p, err := ringstore.OpenPool(ringstore.PoolConfig{Name: other, Slots: o.poolSlots, SlotSize: 32})
			if err != nil {
				t.Fatal(err)
			}
			nd.pools = append(nd.pools, p)
			nd.sink.Add(other, p)
		}
		sink = nd.sink
	}
	cfg := Config{NodeID: nd.id, Routes: n.routes[nd.id], Sink: sink, Logger: n.log, CompletionTimeout: 5 * time.Second, Audit: nd.audit}
	if o.cfg != nil {
		o.cfg(&cfg)
	}
	var err error
	nd.eng, err = New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := n.ca.Issue(pki.Node, nd.id, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	nd.tr, err = kmlink.Listen(kmlink.Config{
		NodeID: nd.id, Certificate: cert.TLS, Roots: n.ca.Pool(), ListenAddr: nd.addr,
		Handler: recHandler{nd}, Logger: n.log,
		ReconnectMin: 10 * time.Millisecond, ReconnectMax: 200 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	nd.addr = nd.tr.Addr().String()
	for _, e := range n.edges {
		peer := e[1]
		if e[1] == nd.id {
			peer = e[0]
		} else if e[0] != nd.id {
			continue
		}
		tx := n.ring(nd, nd.id+"-"+peer+".tx", o.ringSize)
		rx := n.ring(nd, nd.id+"-"+peer+".rx", o.ringSize)
		lc := LinkConfig{Peer: peer, Tx: tx, Rx: rx}
		if o.source != nil {
			lc.Source = o.source(nd.id, peer)
		} else if !o.noSource {
			src, err := qkdsim.New(qkdsim.Config{Link: e[0] + "-" + e[1], Seed: sha256.Sum256([]byte(e[0] + "|" + e[1])), Master: nd.id < peer,
				SecretRate: o.secretRate, BlockSize: 64 << 10, Logger: n.log})
			if err != nil {
				t.Fatal(err)
			}
			nd.srcs = append(nd.srcs, src)
			lc.Source = src
		}
		if err := nd.eng.AddLink(lc); err != nil {
			t.Fatal(err)
		}
	}
}

// connect tells the transport of nd, just restarted, where its neighbours
// are; they kept its address, which the restart reuses.
func (n *testNet) connect(nd *testNode) {
	for _, e := range n.edges {
		peer := e[1]
		if e[1] == nd.id {
			peer = e[0]
		} else if e[0] != nd.id {
			continue
		}
		if err := nd.tr.AddPeer(kmlink.Peer{ID: peer, Addr: n.nodes[peer].addr}); err != nil {
			n.t.Fatal(err)
		}
	}
}

// stop takes node nd down: its neighbours see their links go down, and
// whatever of its state lives in memory is gone. Durable rings are closed,
// so they keep what they recorded.
func (n *testNet) stop(nd *testNode) {
	if nd.tr == nil {
		return
	}
	nd.tr.Close()
	nd.eng.Close()
	for _, s := range nd.srcs {
		s.Close()
	}
	for _, r := range nd.rings {
		r.Close()
	}
	for _, p := range nd.pools {
		p.Close()
	}
	if nd.meta != nil {
		nd.meta.Close()
		nd.meta = nil
	}
	nd.tr = nil
}

// restart stops node id and starts it again on the same address.
func (n *testNet) restart(id string) {
	n.t.Helper()
	nd := n.nodes[id]
	n.stop(nd)
	n.start(nd)
	n.connect(nd)
}

func (n *testNet) ring(nd *testNode, name string, size int) *ringstore.PadRing {
	c := ringstore.PadRingConfig{Name: name, Capacity: size, SegmentSize: 64 << 10}
	if nd.meta != nil {
		c.Dir, c.Meta = nd.dir, nd.meta
	}
	r, err := ringstore.OpenPadRing(c)
	if err != nil {
		n.t.Fatal(err)
	}
	nd.rings = append(nd.rings, r)
	return r
}

func (n *testNet) close() {
	for _, nd := range n.nodes {
		if nd.tr != nil {
			nd.tr.Close()
		}
	}
	for _, nd := range n.nodes {
		n.stop(nd)
		nd.audit.Close()
	}
}

// checkAudit checks, from the audit records of both ends of every link,
// that no pad position was used twice and that both ends drew the same
// pad (audit.CheckLink).
func (n *testNet) checkAudit(t *testing.T) {
	t.Helper()
	for _, e := range n.edges {
		var recs [2][]audit.Record
		for i, p := range [][2]string{{e[0], e[1]}, {e[1], e[0]}} {
			r, err := n.nodes[p[0]].audit.Query(audit.Query{Peer: p[1], Limit: audit.MaxLimit})
			if err != nil {
				t.Fatal(err)
			}
			if len(r) == audit.MaxLimit {
				t.Fatalf("node %s has more than %d audit records for %s: the check would miss some", p[0], len(r), p[1])
			}
			recs[i] = r
		}
		if err := audit.CheckLink(recs[0], recs[1], e[0], e[1]); err != nil {
			t.Errorf("audit of link %s-%s: %v", e[0], e[1], err)
		}
	}
}

// conn is the current connection of node a to its neighbour b.
func (n *testNet) conn(a, b string) *kmlink.Conn {
	c, _ := n.nodes[a].conns.Load(b)
	if c == nil {
		return nil
	}
	return c.(*kmlink.Conn)
}

// checkPools checks that every pair of nodes holds identical key sets for
// each other: same IDs, same bytes, nothing at one end only. It drains the
// pools.
func (n *testNet) checkPools(t *testing.T) (pairs, keys int) {
	t.Helper()
	ids := make([]string, 0, len(n.nodes))
	for id := range n.nodes {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for i, a := range ids {
		for _, b := range ids[i+1:] {
			pa, pb := n.nodes[a].sink.Pool(b), n.nodes[b].sink.Pool(a)
			sa, sb := pa.Stats().Stock, pb.Stats().Stock
			if sa != sb {
				t.Errorf("%s holds %d keys shared with %s, which holds %d", a, sa, b, sb)
			}
			if sa == 0 {
				continue
			}
			var ka []ringstore.Key
			for len(ka) < sa {
				k, err := pa.TakeNext(min(sa-len(ka), ringstore.MaxBatch), ringstore.Owner("test"))
				if err != nil {
					t.Fatal(err)
				}
				ka = append(ka, k...)
			}
			byID := make([]ringstore.KeyID, len(ka))
			for j, k := range ka {
				byID[j] = k.ID
			}
			for j := 0; j < len(byID); j += ringstore.MaxBatch {
				end := min(len(byID), j+ringstore.MaxBatch)
				kb, err := pb.TakeByIDs(byID[j:end])
				if err != nil {
					t.Fatalf("keys %s holds for %s are missing at %s: %v", a, b, b, err)
				}
				for m, k := range kb {
					if string(k.Bytes) != string(ka[j+m].Bytes) {
						t.Fatalf("key %v differs between %s and %s", k.ID, a, b)
					}
				}
			}
			if left := pb.Stats().Stock; left != 0 {
				t.Errorf("%s holds %d keys for %s that %s does not have", b, left, a, a)
			}
			pairs++
			keys += sa
		}
	}
	return pairs, keys
}

func (n *testNet) waitUp(t testing.TB, edges [][2]string) {
	t.Helper()
	waitfor.Bool(t, "links up with pad", 10*time.Second, func() bool {
		for _, e := range edges {
			for _, p := range [][2]string{{e[0], e[1]}, {e[1], e[0]}} {
				l := n.nodes[p[0]].eng.link(p[1])
				if l.current() == nil || l.tx.Stats().Stock < 1<<20 {
					return false
				}
			}
		}
		return true
	})
}

func relayOK(t *testing.T, e *Engine, dst string, keys, size int) Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	res, err := e.Relay(ctx, dst, keys, size)
	if err != nil {
		t.Fatalf("%s → %s: %v", e.NodeID(), dst, err)
	}
	if res.Delivered != keys {
		t.Fatalf("%s → %s: %d of %d keys delivered", e.NodeID(), dst, res.Delivered, keys)
	}
	return res
}

// simPad regenerates n bytes of the pad of link a-b at pos from the
// simulator's blocks, given the ring's block directory from before they
// were consumed.
func simPad(t *testing.T, a, b string, blocks []ringstore.BlockInfo, pos uint64, n int) []byte {
	t.Helper()
	for _, bi := range blocks {
		if bi.Pos <= pos && pos+uint64(n) <= bi.Pos+uint64(bi.Size) {
			sim, err := qkdsim.New(qkdsim.Config{Link: a + "-" + b, Seed: sha256.Sum256([]byte(a + "|" + b)), BlockSize: 64 << 10, Logger: slog.New(slog.DiscardHandler)})
			if err != nil {
				t.Fatal(err)
			}
			defer sim.Close()
			got, err := sim.Get(context.Background(), []string{bi.ID})
			if err != nil {
				t.Fatal(err)
			}
			return got[0].Data[pos-bi.Pos : pos-bi.Pos+uint64(n)]
		}
	}
	t.Fatalf("no block of %s-%s holds pad %d+%d", a, b, pos, n)
	return nil
}

// fillPad fills the pad from a to b (a's tx ring, b's rx ring) to capacity
// with identical random bytes, for links without a QKD source.
func (n *testNet) fillPad(t testing.TB, a, b string) {
	t.Helper()
	ea, eb := n.nodes[a].eng, n.nodes[b].eng
	tx := ea.link(b).tx
	blk := make([]byte, 1<<20)
	var seed [32]byte
	if _, err := rand.Read(seed[:]); err != nil {
		t.Fatal(err)
	}
	c, err := aes.NewCipher(seed[:])
	if err != nil {
		t.Fatal(err)
	}
	stream := cipher.NewCTR(c, make([]byte, aes.BlockSize)) // fast random pad
	for i := 0; ; i++ {
		st := tx.Stats()
		if st.Capacity-int(st.Head-st.Tail) < len(blk) {
			return
		}
		clear(blk)
		stream.XORKeyStream(blk, blk)
		id := fmt.Sprintf("fill-%d", i)
		if err := ea.AppendPad(b, true, ringstore.Block{ID: id, Data: blk}); err != nil {
			t.Fatal(err)
		}
		if err := eb.AppendPad(a, false, ringstore.Block{ID: id, Data: blk}); err != nil {
			t.Fatal(err)
		}
	}
}
