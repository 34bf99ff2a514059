package node

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/qrelay/qrelay/config"
	"github.com/qrelay/qrelay/dataplane/etsi014client"
	"github.com/qrelay/qrelay/internal/fakekme"
	"github.com/qrelay/qrelay/internal/lab"
	"github.com/qrelay/qrelay/internal/pki"
	"github.com/qrelay/qrelay/internal/waitfor"
	"github.com/qrelay/qrelay/node/adminapi"
	"github.com/qrelay/qrelay/ringstore"
	"github.com/qrelay/qrelay/supply"
)

// TestETSI014EndToEnd runs SAEs on the far ends of a line a–b–c: sae-a
// gets keys from node a (enc_keys), sae-c the same keys from node c by
// their IDs (dec_keys); the pools were filled by background relay through
// b. A key is handed out once: asking again finds nothing.
func TestETSI014EndToEnd(t *testing.T) {
	c := newTestCluster(t, []string{"a", "b", "c"}, [][2]string{{"a", "b"}, {"b", "c"}}, clusterOpts{etsi014: true})
	c.waitPath("a", "c", "a", "b", "c")
	master := c.sae("a", "sae-a", "sae-c", true)
	slave := c.sae("c", "sae-c", "sae-a", false)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	total := 0
	for total < 2000 {
		blocks, err := fetch(ctx, master, 64*32)
		if err != nil {
			t.Fatal(err)
		}
		ids := slaveGetsSame(ctx, t, slave, blocks)
		if _, err := slave.Get(ctx, ids[:1]); err == nil {
			t.Fatalf("key %s handed to the slave twice", ids[0])
		}
		total += len(blocks)
	}
}

// slaveGetsSame has the slave fetch, by ID, the keys the master got, and
// checks they are the same; it returns the IDs.
func slaveGetsSame(ctx context.Context, t *testing.T, slave *etsi014client.Client, blocks []ringstore.Block) []string {
	t.Helper()
	ids := make([]string, len(blocks))
	for i, b := range blocks {
		ids[i] = b.ID
	}
	got, err := slave.Get(ctx, ids)
	if err != nil {
		t.Fatalf("dec_keys of %d keys enc_keys handed out: %v", len(ids), err)
	}
	for i := range blocks {
		if got[i].ID != blocks[i].ID || !bytes.Equal(got[i].Data, blocks[i].Data) || len(got[i].Data) != 32 {
			t.Fatalf("key %s differs between master and slave", blocks[i].ID)
		}
	}
	return ids
}

// fetch retries enc_keys while the pools are still being filled (503).
func fetch(ctx context.Context, c *etsi014client.Client, n int) ([]ringstore.Block, error) {
	for {
		b, err := c.Fetch(ctx, n)
		var se *etsi014client.StatusError
		if errors.As(err, &se) && se.Code == 503 && ctx.Err() == nil {
			time.Sleep(20 * time.Millisecond) // backing off from a pool being refilled, not synchronising
			continue
		}
		return b, err
	}
}

// TestETSI014SlaveRestart restarts the slave's node, in durable mode,
// between enc_keys and dec_keys: the assignment was recorded durably
// before enc_keys answered, so the slave still gets its keys.
func TestETSI014SlaveRestart(t *testing.T) {
	// Pools of 16,384 slots: the test takes 2,048 keys, and the default
	// (131,072 kept in stock) makes each node fill and, after the restart,
	// refill 64 times more keys than that through badger. Under -race on a
	// loaded CI machine that work alone outlasted the 30 s below.
	c := newTestCluster(t, []string{"a", "b"}, [][2]string{{"a", "b"}}, clusterOpts{etsi014: true, durable: true, poolSlots: 16384})
	c.waitPath("a", "b", "a", "b")
	master := c.sae("a", "sae-a", "sae-b", true)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	blocks, err := fetch(ctx, master, 64*32)
	if err != nil {
		t.Fatal(err)
	}
	c.restart("b")
	c.waitPath("a", "b", "a", "b")
	slave := c.sae("b", "sae-b", "sae-a", false)
	slaveGetsSame(ctx, t, slave, blocks)
}

// TestETSI014RateLimit checks that a local SAE's keys_per_second applies:
// a request beyond its burst is refused with 503 and takes no key.
func TestETSI014RateLimit(t *testing.T) {
	c := newTestCluster(t, []string{"a", "b"}, [][2]string{{"a", "b"}}, clusterOpts{etsi014: true, configure: func(id string, cfg *lab.Config) {
		s := cfg.SAE("sae-" + id)
		s.KeysPerSecond, s.Burst = 1, 128
	}})
	c.waitPath("a", "b", "a", "b")
	master := c.sae("a", "sae-a", "sae-b", true)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for range 2 { // 64 keys per request (the client's per_request): the whole burst
		if _, err := fetch(ctx, master, 64*32); err != nil {
			t.Fatal(err)
		}
	}
	p, _ := c.nodes["a"].supply.Pool("b", supply.RoleOut)
	before := p.Stats().Taken
	_, err := master.Fetch(ctx, 64*32) // over the burst: the bucket refills at 1 key/s
	var se *etsi014client.StatusError
	if !errors.As(err, &se) || se.Code != 503 || !bytes.Contains([]byte(se.Error()), []byte("sae-a")) {
		t.Fatalf("request over the rate limit: %v; want 503 naming sae-a", err)
	}
	if after := p.Stats().Taken; after != before {
		t.Fatalf("a refused request took %d keys", after-before)
	}
}

// TestSouthAndNorth runs nodes that are at once SAEs of a QKD device's
// KME (their link's pad comes from an ETSI 014 KME pair) and KMEs of their
// own SAEs (they serve ETSI 014): keys relayed under that pad reach the
// SAEs.
func TestSouthAndNorth(t *testing.T) {
	pair, sources := kmeSources(t)
	c := newTestCluster(t, []string{"a", "b"}, [][2]string{{"a", "b"}}, clusterOpts{etsi014: true, source: sources})
	c.waitPath("a", "b", "a", "b")
	master := c.sae("a", "sae-a", "sae-b", true)
	slave := c.sae("b", "sae-b", "sae-a", false)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	blocks, err := fetch(ctx, master, 64*32)
	if err != nil {
		t.Fatal(err)
	}
	slaveGetsSame(ctx, t, slave, blocks)
	if pair.A.Requests(fakekme.EncKeys) == 0 || pair.B.Requests(fakekme.DecKeys) == 0 {
		t.Fatal("the link's pad did not come from the QKD devices' KMEs")
	}
}

// TestAssignTimeoutLeavesNoKeysBehind: when the slave's node does not
// acknowledge an assignment in time, the master's node discards the keys
// and cancels the assignment, so the slave's node does not keep them
// either (they would fill its pool until their TTL, and with it stop the
// relay that refills both ends). An assignment timeout of 1 ms makes
// nearly every assignment, of enc_keys and of reservations, time out.
func TestAssignTimeoutLeavesNoKeysBehind(t *testing.T) {
	c := newTestCluster(t, []string{"a", "c"}, [][2]string{{"a", "c"}}, clusterOpts{etsi014: true, configure: func(_ string, cfg *lab.Config) {
		cfg.API.ETSI014.AssignTimeout = time.Millisecond
	}})
	c.waitPath("a", "c", "a", "c")
	out, err := c.nodes["a"].supply.Pool("c", supply.RoleOut)
	if err != nil {
		t.Fatal(err)
	}
	waitfor.Bool(t, "a's pool for c filled", 30*time.Second, func() bool { return out.Stats().Stock >= 1024 })
	cl := bbNewClient(t, c, "a", []tls.Certificate{bbCert(t, c, pki.SAE, "sae-a")}, false)
	slave := bbSAE(t, c, "c", "sae-c")
	refused := 0
	for range 50 {
		r, err := cl.do(context.Background(), "POST", "sae-c/enc_keys", `{"number":64}`)
		if err != nil {
			t.Fatal(err)
		}
		if r.code == 503 {
			refused++
			continue
		}
		// An assignment acknowledged within the millisecond: its keys
		// are the slave's, held at c until it fetches them.
		keys, err := bbParseKeys(r, 64)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := bbParseKeys(slave.must(t, "POST", "sae-a/dec_keys", bbIDsBody(bbIDs(keys)...)), 64); err != nil {
			t.Fatal(err)
		}
	}
	if refused == 0 {
		t.Fatal("no assignment timed out: the test proves nothing")
	}
	// Both ends hold the same keys once the cancels have arrived.
	ctx := context.Background()
	var da, dc adminapi.PoolDigest
	waitfor.Bool(t, "a's and c's pools to hold the same keys", 20*time.Second, func() bool {
		if da, err = (backend{c.nodes["a"]}).PoolDigest(ctx, "c"); err != nil {
			t.Fatal(err)
		}
		if dc, err = (backend{c.nodes["c"]}).PoolDigest(ctx, "a"); err != nil {
			t.Fatal(err)
		}
		return da.Keys == dc.Keys && da.Digest == dc.Digest
	})
	t.Logf("%d of 50 enc_keys refused as their assignments timed out; both ends hold the same %d keys", refused, da.Keys)
}

// TestRefillsLeaveRoutingReserve: on a QKD link slower than the pools
// want keys, background refills spend only the pad above the level at
// which routing admits the link, so the link stays usable and in the
// route while the pools fill. Spending all of it would hold the link
// below min_stock, out of every route, for as long as the pools want keys.
func TestRefillsLeaveRoutingReserve(t *testing.T) {
	// The link's pad comes from a QKD device pair's KMEs over ETSI 014,
	// 16 KiB a request, a few requests a second: far slower than the
	// pools want keys (4 MiB each).
	_, sources := kmeSources(t)
	c := newTestCluster(t, []string{"a", "b"}, [][2]string{{"a", "b"}}, clusterOpts{etsi014: true, source: sources})
	c.waitPath("a", "b", "a", "b")
	c.waitPath("b", "a", "b", "a")
	out, err := c.nodes["a"].supply.Pool("b", supply.RoleOut)
	if err != nil {
		t.Fatal(err)
	}
	// The pools fill all the while (pad-bound), and the link keeps its
	// reserve and its route.
	start := out.Stats().Stock
	waitfor.Bool(t, "a's pool for b gaining 1,024 keys", 20*time.Second, func() bool {
		if p := c.path("a", "b"); !slices.Equal(p, []string{"a", "b"}) {
			t.Fatalf("while the pools fill, the route a→b is %v: the link left routing", p)
		}
		if tx := c.nodes["a"].byPeer["b"].tx.Stats().Stock; tx < 64<<10 {
			t.Fatalf("while the pools fill, a's pad towards b is %d B, below min_stock 64 KiB", tx)
		}
		return out.Stats().Stock >= start+1024
	})
	if st := out.Stats(); st.Stock >= 262144/2 {
		t.Fatalf("a's pool for b is full (%d keys): the pools were not waiting for pad, so the test showed nothing", st.Stock)
	}
}

func TestPadBoundRefillReachesHighWatermark(t *testing.T) {
	// A link whose pad arrives more slowly than the pool wants keys: the
	// refill that starts below the low watermark pauses for pad again and
	// again, and must go on to the high watermark rather than stop at the
	// first pause above the low one (where, with no SAE taking keys, it
	// would stay for ever).
	slow := func(me, peer string) lab.Source {
		return lab.Source{Simulator: &lab.Simulator{Seed: lab.Seed(7), Rate: 4e6, BlockSize: 4 * config.KiB}}
	}
	const high = 8192 // 256 KiB of 32-byte keys: about half a second of pad
	c := newTestCluster(t, []string{"a", "b"}, [][2]string{{"a", "b"}}, clusterOpts{etsi014: true, poolSlots: 2 * high, poolHigh: high, source: slow})
	out, err := c.nodes["a"].supply.Pool("b", supply.RoleOut)
	if err != nil {
		t.Fatal(err)
	}
	waitfor.Bool(t, "a's pool for b reaching its high watermark", 30*time.Second, func() bool {
		return out.Stats().Stock >= high
	})
	if st := out.Stats(); st.Stock > high {
		t.Fatalf("a's pool for b holds %d keys, past its high watermark %d", st.Stock, high)
	}
}
