package relay

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/qrelay/qrelay/dataplane/etsi014client"
	"github.com/qrelay/qrelay/dataplane/frame"
	"github.com/qrelay/qrelay/dataplane/qkd"
	"github.com/qrelay/qrelay/internal/fakekme"
	"github.com/qrelay/qrelay/internal/waitfor"
	"github.com/qrelay/qrelay/ringstore"
)

func TestTwoNodes(t *testing.T) {
	edges := [][2]string{{"a", "b"}}
	n := newTestNet(t, []string{"a", "b"}, edges, nil, netOpts{})
	n.waitUp(t, edges)
	relayOK(t, n.nodes["a"].eng, "b", 10000, 32)
	n.nodes["b"].eng.cfg.Keys = KeysCryptoRand // both key sources relay alike
	relayOK(t, n.nodes["b"].eng, "a", 3000, 32)
	relayOK(t, n.nodes["a"].eng, "b", 1, 32)
	if pairs, keys := n.checkPools(t); pairs != 1 || keys != 13001 {
		t.Fatalf("checked %d pairs with %d keys, want 1 pair with 13001", pairs, keys)
	}
	st := n.nodes["b"].eng.Stats()
	if st.BadTags.Load()+st.Replays.Load()+st.Malformed.Load() != 0 {
		t.Fatalf("errors on a clean link: bad tags %d, replays %d, malformed %d", st.BadTags.Load(), st.Replays.Load(), st.Malformed.Load())
	}
	// One MAC key per frame at each end: a sends 5+1 frames and b 2, each
	// authenticated once by its sender and once by its receiver.
	if got := n.nodes["a"].eng.Stats().PadMACBytes.Load() + st.PadMACBytes.Load(); got != 2*8*32 {
		t.Errorf("pad spent on MACs = %d bytes, want %d", got, 2*8*32)
	}
}

func TestThreeNodes(t *testing.T) {
	edges := [][2]string{{"a", "b"}, {"b", "c"}}
	routes := map[string]StaticRoutes{"a": {"c": "b"}, "c": {"a": "b"}}
	n := newTestNet(t, []string{"a", "b", "c"}, edges, routes, netOpts{})
	n.waitUp(t, edges)
	var wg sync.WaitGroup
	for _, p := range [][2]string{{"a", "c"}, {"c", "a"}, {"a", "b"}, {"c", "b"}} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			relayOK(t, n.nodes[p[0]].eng, p[1], 8192, 32)
		}()
	}
	wg.Wait()
	if got := n.nodes["b"].eng.Stats().FramesForwarded.Load(); got != 8 {
		t.Errorf("b forwarded %d frames, want 8 (4 each way)", got)
	}
	if pairs, keys := n.checkPools(t); pairs != 3 || keys != 4*8192 {
		t.Fatalf("checked %d pairs with %d keys, want 3 with %d", pairs, keys, 4*8192)
	}
}

// TestQKDKeys relays with ITU-T Y.3803 case 2 over one and two hops: the
// keys are the first hop's pad.
func TestQKDKeys(t *testing.T) {
	edges := [][2]string{{"a", "b"}, {"b", "c"}}
	routes := map[string]StaticRoutes{"a": {"c": "b"}, "c": {"a": "b"}}
	n := newTestNet(t, []string{"a", "b", "c"}, edges, routes, netOpts{})
	n.waitUp(t, edges)
	ctx := context.Background()
	for _, dst := range []string{"b", "c"} {
		tx := n.nodes["a"].eng.link("b").tx
		pos, blocks := tx.Stats().Reserved, tx.Blocks()
		res, err := n.nodes["a"].eng.RelayQKDKeys(ctx, dst, 3000, 32)
		if err != nil {
			t.Fatal(err)
		}
		// The keys are the a→b pad from pos on: check the first one
		// against the simulator's block stream, which both ends share.
		id := ringstore.DeriveKeyID("a", dst, res.Flow, res.FirstSeq)
		ks, err := n.nodes["a"].sink.Pool(dst).TakeByIDs([]ringstore.KeyID{id})
		if err != nil {
			t.Fatal(err)
		}
		want := simPad(t, "a", "b", blocks, pos, 32)
		if string(ks[0].Bytes) != string(want) {
			t.Fatalf("case-2 key to %s is not the first hop's pad at %d", dst, pos)
		}
		// Take it at the other end too, so the pools still pair up.
		kd, err := n.nodes[dst].sink.Pool("a").TakeByIDs([]ringstore.KeyID{id})
		if err != nil || string(kd[0].Bytes) != string(want) {
			t.Fatalf("case-2 key at %s: %v", dst, err)
		}
	}
	if _, keys := n.checkPools(t); keys != 2*2999 {
		t.Fatalf("%d keys at both ends, want %d", keys, 2*2999)
	}
}

// TestETSI014Source feeds the link's pads from a QKD device pair over ETSI
// GS QKD 014 (a fake KME pair): a, the master, pulls enc_keys from KME A;
// b gets the same keys with dec_keys from KME B.
func TestETSI014Source(t *testing.T) {
	kmes := fakekme.NewPair(t, fakekme.Config{})
	var clients []*etsi014client.Client
	t.Cleanup(func() {
		for _, c := range clients {
			c.Close()
		}
	})
	src := func(me, peer string) qkd.Source {
		cfg := etsi014client.Config{Master: me == "a", Roots: kmes.Roots(), Logger: testLogger()}
		if me == "a" {
			cfg.BaseURL, cfg.SlaveSAE, cfg.Certificate = kmes.A.URL, kmes.B.SAE, kmes.ClientCert(t, kmes.A.SAE)
		} else {
			cfg.BaseURL, cfg.MasterSAE, cfg.Certificate = kmes.B.URL, kmes.A.SAE, kmes.ClientCert(t, kmes.B.SAE)
		}
		c, err := etsi014client.New(context.Background(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		clients = append(clients, c)
		return c
	}
	edges := [][2]string{{"a", "b"}}
	n := newTestNet(t, []string{"a", "b"}, edges, nil, netOpts{ringSize: 1 << 20, source: src})
	waitfor.Bool(t, "pad from the KMEs both ways", 20*time.Second, func() bool {
		return n.nodes["a"].eng.link("b").tx.Stats().Stock >= 64<<10 && n.nodes["b"].eng.link("a").tx.Stats().Stock >= 64<<10
	})
	relayOK(t, n.nodes["a"].eng, "b", 1500, 32)
	relayOK(t, n.nodes["b"].eng, "a", 1500, 32)
	if _, keys := n.checkPools(t); keys != 3000 {
		t.Fatalf("%d keys at both ends, want 3000", keys)
	}
	if kmes.A.Requests(fakekme.EncKeys) == 0 || kmes.B.Requests(fakekme.DecKeys) == 0 {
		t.Fatal("the pads did not come from the KMEs")
	}
}

// TestSlowQKDLink relays more keys than the link's pad holds: the sender
// waits for the QKD link (simulated at 40 Mbit/s) rather than overdrawing,
// and every key still arrives.
func TestSlowQKDLink(t *testing.T) {
	edges := [][2]string{{"a", "b"}}
	n := newTestNet(t, []string{"a", "b"}, edges, nil, netOpts{ringSize: 512 << 10, secretRate: 40e6})
	waitfor.Bool(t, "link up", 10*time.Second, func() bool { return n.nodes["a"].eng.link("b").current() != nil })
	relayOK(t, n.nodes["a"].eng, "b", 40000, 32) // 1.25 MB of keys through a 512 KiB ring
	st := n.nodes["a"].eng.Stats()
	if st.PadWaits.Load() == 0 {
		t.Fatal("the sender never waited for pad, yet needed more than the ring holds")
	}
	tx := n.nodes["a"].eng.link("b").tx.Stats()
	if tx.Reserved > tx.Head {
		t.Fatalf("tx ring overdrawn: reserved %d > head %d", tx.Reserved, tx.Head)
	}
	if _, keys := n.checkPools(t); keys != 40000 {
		t.Fatalf("%d keys at both ends, want 40000", keys)
	}
}

// TestQKDOutage stops the QKD link of a-b: once the pad runs out a sender
// waits (and gives up with its context, reporting why) instead of
// overdrawing, and relay resumes when the QKD link comes back.
func TestQKDOutage(t *testing.T) {
	edges := [][2]string{{"a", "b"}}
	n := newTestNet(t, []string{"a", "b"}, edges, nil, netOpts{ringSize: 256 << 10, secretRate: 40e6})
	waitfor.Bool(t, "link up", 10*time.Second, func() bool { return n.nodes["a"].eng.link("b").current() != nil })
	for _, nd := range n.nodes {
		for _, s := range nd.srcs {
			s.SetOutage(true, "test: fibre cut")
		}
	}
	tx := n.nodes["a"].eng.link("b").tx
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	// More than the ring can hold: this must wait for pad that never comes.
	// Pad fetched before the outage may still carry a frame or two.
	during, err := n.nodes["a"].eng.Relay(ctx, "b", 16384, 32)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("relay during a QKD outage: got %v, want a wait for pad that ends with the context", err)
	}
	if st := tx.Stats(); st.Reserved > st.Head {
		t.Fatalf("tx ring overdrawn: reserved %d > head %d", st.Reserved, st.Head)
	}
	t.Logf("during the outage: %v", err)
	for _, nd := range n.nodes {
		for _, s := range nd.srcs {
			s.SetOutage(false, "")
		}
	}
	relayOK(t, n.nodes["a"].eng, "b", 16384, 32)
	waitfor.Bool(t, "no frame pending", 10*time.Second, func() bool { return n.nodes["a"].eng.Pending() == 0 })
	waitfor.Bool(t, "discards confirmed", 10*time.Second, func() bool { return n.nodes["a"].eng.PendingDiscards() == 0 })
	if _, keys := n.checkPools(t); keys != during.Delivered+16384 {
		t.Fatalf("%d keys at both ends, want the %d delivered during the outage and the 16384 after", keys, during.Delivered)
	}
}

// TestFiveNodes relays between every pair of a five-node network: a ring
// a-b-c-d-e-a with one chord b-e, static routes, keys of several sizes.
func TestFiveNodes(t *testing.T) {
	ids := []string{"a", "b", "c", "d", "e"}
	edges := [][2]string{{"a", "b"}, {"b", "c"}, {"c", "d"}, {"d", "e"}, {"a", "e"}, {"b", "e"}}
	routes := map[string]StaticRoutes{
		"a": {"c": "b", "d": "e"},
		"b": {"d": "c"},
		"c": {"a": "b", "e": "d"},
		"d": {"a": "e", "b": "c"},
		"e": {"c": "d"},
	}
	n := newTestNet(t, ids, edges, routes, netOpts{})
	n.waitUp(t, edges)
	var wg sync.WaitGroup
	want := 0
	for i, src := range ids {
		for j, dst := range ids {
			if src == dst {
				continue
			}
			size := []int{16, 32, 24, 8}[(i+j)%4]
			keys := 1000 + 37*i + j
			want += keys
			wg.Add(1)
			go func() {
				defer wg.Done()
				relayOK(t, n.nodes[src].eng, dst, keys, size)
			}()
		}
	}
	wg.Wait()
	// The 32-byte slots hold keys of every size; pairs and key sets must
	// match exactly.
	if pairs, keys := n.checkPools(t); pairs != 10 || keys != want {
		t.Fatalf("checked %d pairs with %d keys, want 10 with %d", pairs, keys, want)
	}
}

// tamper makes node id's engine pass each outgoing RELAY frame to f, which
// returns the frames to send in its place.
func tamper(n *testNet, id string, f func(b []byte) [][]byte) {
	n.nodes[id].eng.testHookSend.Store(&f)
}

func TestForgedFrame(t *testing.T) {
	edges := [][2]string{{"a", "b"}, {"b", "c"}}
	routes := map[string]StaticRoutes{"a": {"c": "b"}, "c": {"a": "b"}}
	n := newTestNet(t, []string{"a", "b", "c"}, edges, routes, netOpts{})
	n.waitUp(t, edges)
	var count atomic.Int32
	// b corrupts the second frame it forwards to c: one payload bit.
	tamper(n, "b", func(b []byte) [][]byte {
		if count.Add(1) == 2 {
			b[len(b)-frame.TagLen-1] ^= 0x10
		}
		return [][]byte{b}
	})
	ctx := context.Background()
	res, err := n.nodes["a"].eng.Relay(ctx, "c", 4*2048, 32)
	var ref *RefusedError
	if !errors.As(err, &ref) || ref.Status != frame.StatusBadTag || ref.By != "c" {
		t.Fatalf("relay with a forged frame: got %v, want a RefusedError with status BadTag from c", err)
	}
	if res.Delivered != 3*2048 || len(res.Errors) != 1 {
		t.Fatalf("delivered %d keys with %d errors, want 6144 with 1", res.Delivered, len(res.Errors))
	}
	if got := n.nodes["c"].eng.Stats().BadTags.Load(); got != 1 {
		t.Fatalf("c counted %d bad tags, want 1", got)
	}
	// The link stays in step: the next relays use the following pad.
	relayOK(t, n.nodes["a"].eng, "c", 4096, 32)
	relayOK(t, n.nodes["c"].eng, "a", 4096, 32)
	if pairs, keys := n.checkPools(t); keys != 6144+8192 {
		t.Fatalf("checked %d pairs with %d keys, want %d keys", pairs, keys, 6144+8192)
	}
	// A forged tag (not the payload) is caught the same way.
	count.Store(0)
	tamper(n, "b", func(b []byte) [][]byte {
		if count.Add(1) == 1 {
			b[len(b)-1] ^= 1
		}
		return [][]byte{b}
	})
	if _, err := n.nodes["a"].eng.Relay(ctx, "c", 10, 32); !errors.As(err, &ref) || ref.Status != frame.StatusBadTag {
		t.Fatalf("relay with a forged tag: got %v, want BadTag", err)
	}
	tamper(n, "b", func(b []byte) [][]byte { return [][]byte{b} })
	relayOK(t, n.nodes["a"].eng, "c", 100, 32)
}

func TestReplayedFrame(t *testing.T) {
	edges := [][2]string{{"a", "b"}}
	n := newTestNet(t, []string{"a", "b"}, edges, nil, netOpts{})
	n.waitUp(t, edges)
	var count atomic.Int32
	var first []byte
	// a sends its first frame twice, then again after the third.
	tamper(n, "a", func(b []byte) [][]byte {
		switch count.Add(1) {
		case 1:
			first = append([]byte(nil), b...)
			return [][]byte{b, append([]byte(nil), b...)}
		case 3:
			return [][]byte{b, first}
		}
		return [][]byte{b}
	})
	relayOK(t, n.nodes["a"].eng, "b", 3*2048, 32)
	// The replays' refusals reach a for a frame no longer pending: ignored.
	waitfor.Bool(t, "both replays refused", 5*time.Second, func() bool { return n.nodes["b"].eng.Stats().Replays.Load() == 2 })
	tamper(n, "a", func(b []byte) [][]byte { return [][]byte{b} })
	relayOK(t, n.nodes["a"].eng, "b", 2048, 32)
	relayOK(t, n.nodes["b"].eng, "a", 2048, 32)
	if _, keys := n.checkPools(t); keys != 5*2048 {
		t.Fatalf("%d keys at both ends, want %d", keys, 5*2048)
	}
}

// TestLinkKilled kills the b-c link of a-b-c while a relays to c: every
// key ends up at both ends or at neither, and the lost ones are reported
// to the source.
func TestLinkKilled(t *testing.T) {
	edges := [][2]string{{"a", "b"}, {"b", "c"}}
	routes := map[string]StaticRoutes{"a": {"c": "b"}, "c": {"a": "b"}}
	n := newTestNet(t, []string{"a", "b", "c"}, edges, routes, netOpts{cfg: func(c *Config) { c.CompletionTimeout = 2 * time.Second }})
	n.waitUp(t, edges)
	var count atomic.Int32
	killed := make(chan struct{})
	tamper(n, "b", func(b []byte) [][]byte {
		if count.Add(1) == 10 {
			n.conn("b", "c").Close("test kills the link mid-transfer")
			close(killed)
		}
		return [][]byte{b}
	})
	var (
		wg                 sync.WaitGroup
		mu                 sync.Mutex
		delivered, lost    int
		refused, localErrs int
	)
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 6; i++ {
				ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
				res, _ := n.nodes["a"].eng.Relay(ctx, "c", 2048, 32)
				cancel()
				mu.Lock()
				delivered += res.Delivered
				for _, err := range res.Errors {
					var le *LostError
					var re *RefusedError
					switch {
					case errors.As(err, &le):
						lost += le.Count
					case errors.As(err, &re):
						refused += re.Count
					default:
						localErrs++
					}
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	<-killed
	t.Logf("delivered %d, lost %d, refused %d keys; %d local errors", delivered, lost, refused, localErrs)
	if lost+refused == 0 {
		t.Fatal("killing the link lost nothing: the test did not kill it mid-transfer")
	}
	// a keeps asking c to discard what it reported lost until c confirms.
	waitfor.Bool(t, "discards confirmed", 15*time.Second, func() bool { return n.nodes["a"].eng.PendingDiscards() == 0 })
	if _, keys := n.checkPools(t); keys != delivered {
		t.Fatalf("%d keys at both ends, but the source was told %d were delivered", keys, delivered)
	}
	// And the link works again.
	relayOK(t, n.nodes["a"].eng, "c", 2048, 32)
	n.checkAudit(t)
}

func TestRelayArgs(t *testing.T) {
	edges := [][2]string{{"a", "b"}}
	n := newTestNet(t, []string{"a", "b"}, edges, nil, netOpts{})
	e := n.nodes["a"].eng
	ctx := context.Background()
	for _, c := range []struct {
		dst  string
		n, s int
	}{{"a", 1, 32}, {"b", 0, 32}, {"b", 1, 0}, {"b", 1, 70000}, {"zz", 1, 32}} {
		if _, err := e.Relay(ctx, c.dst, c.n, c.s); err == nil {
			t.Errorf("Relay(%q, %d, %d) succeeded", c.dst, c.n, c.s)
		} else {
			t.Logf("Relay(%q, %d, %d): %v", c.dst, c.n, c.s, err)
		}
	}
}
