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
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/qrelay/qrelay/dataplane/kmlink"
	"github.com/qrelay/qrelay/dataplane/qkd"
	"github.com/qrelay/qrelay/dataplane/qkdsim"
	"github.com/qrelay/qrelay/internal/pki"
	"github.com/qrelay/qrelay/ringstore"
)

// testNet is a network of engines on loopback, one process, with simulated
// QKD links.
type testNet struct {
	t     testing.TB
	nodes map[string]*testNode
}

type testNode struct {
	id    string
	eng   *Engine
	tr    *kmlink.Transport
	sink  *PoolSink
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
	log := testLogger()
	n := &testNet{t: t, nodes: map[string]*testNode{}}
	for _, id := range ids {
		cert, err := ca.Issue(pki.Node, id, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		nd := &testNode{id: id, up: make(chan string, 16)}
		var sink Sink
		if o.sink != nil {
			sink = o.sink(id)
		} else {
			nd.sink = NewPoolSink(nil)
			for _, other := range ids {
				if other == id {
					continue
				}
				p, err := ringstore.OpenPool(ringstore.PoolConfig{Name: other, Slots: o.poolSlots, SlotSize: 32})
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { p.Close() })
				nd.sink.Add(other, p)
			}
			sink = nd.sink
		}
		cfg := Config{NodeID: id, Routes: routes[id], Sink: sink, Logger: log, CompletionTimeout: 5 * time.Second}
		if o.cfg != nil {
			o.cfg(&cfg)
		}
		nd.eng, err = New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		nd.tr, err = kmlink.Listen(kmlink.Config{
			NodeID: id, Certificate: cert.TLS, Roots: ca.Pool(), ListenAddr: "127.0.0.1:0",
			Handler: recHandler{nd}, Logger: log,
			ReconnectMin: 10 * time.Millisecond, ReconnectMax: 200 * time.Millisecond,
		})
		if err != nil {
			t.Fatal(err)
		}
		n.nodes[id] = nd
	}
	t.Cleanup(n.close)
	for _, e := range edges {
		a, b := n.nodes[e[0]], n.nodes[e[1]]
		seed := sha256.Sum256([]byte(e[0] + "|" + e[1]))
		link := e[0] + "-" + e[1]
		for _, pair := range [][2]*testNode{{a, b}, {b, a}} {
			me, peer := pair[0], pair[1]
			tx := n.ring(me, me.id+"-"+peer.id+".tx", o.ringSize)
			rx := n.ring(me, me.id+"-"+peer.id+".rx", o.ringSize)
			lc := LinkConfig{Peer: peer.id, Tx: tx, Rx: rx}
			if o.source != nil {
				lc.Source = o.source(me.id, peer.id)
			} else if !o.noSource {
				src, err := qkdsim.New(qkdsim.Config{Link: link, Seed: seed, Master: me.id < peer.id, SecretRate: o.secretRate, BlockSize: 64 << 10, Logger: log})
				if err != nil {
					t.Fatal(err)
				}
				me.srcs = append(me.srcs, src)
				lc.Source = src
			}
			if err := me.eng.AddLink(lc); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, e := range edges {
		a, b := n.nodes[e[0]], n.nodes[e[1]]
		if err := a.tr.AddPeer(kmlink.Peer{ID: b.id, Addr: b.tr.Addr().String()}); err != nil {
			t.Fatal(err)
		}
		if err := b.tr.AddPeer(kmlink.Peer{ID: a.id, Addr: a.tr.Addr().String()}); err != nil {
			t.Fatal(err)
		}
	}
	return n
}

func (n *testNet) ring(nd *testNode, name string, size int) *ringstore.PadRing {
	r, err := ringstore.OpenPadRing(ringstore.PadRingConfig{Name: name, Capacity: size, SegmentSize: 64 << 10})
	if err != nil {
		n.t.Fatal(err)
	}
	nd.rings = append(nd.rings, r)
	return r
}

func (n *testNet) close() {
	for _, nd := range n.nodes {
		nd.tr.Close()
	}
	for _, nd := range n.nodes {
		nd.eng.Close()
		for _, s := range nd.srcs {
			s.Close()
		}
		for _, r := range nd.rings {
			r.Close()
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

// waitFor polls cond (each poll is a real check, no fixed sleep stands in
// for it) until it holds or the deadline passes.
func waitFor(t testing.TB, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		<-tick.C
	}
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
				k, err := pa.TakeNext(min(sa-len(ka), ringstore.MaxBatch), ringstore.Assignment{Master: "test"})
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
	waitFor(t, "links up with pad", 10*time.Second, func() bool {
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
