package node

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/qrelay/qrelay/config"
	"github.com/qrelay/qrelay/dataplane/etsi014client"
	"github.com/qrelay/qrelay/internal/fakekme"
	"github.com/qrelay/qrelay/internal/lab"
	"github.com/qrelay/qrelay/internal/pki"
	"github.com/qrelay/qrelay/internal/relayprobe"
	"github.com/qrelay/qrelay/internal/udpproxy"
	"github.com/qrelay/qrelay/internal/waitfor"
	"github.com/qrelay/qrelay/wgkey"
)

// testCluster is a network of in-process nodes on loopback, each built
// from a YAML config as qrelayd builds it, with every KM link running
// through a proxy the test can cut.
type testCluster struct {
	tb      testing.TB
	nodes   map[string]*Node
	cfgs    map[string]*config.Config
	proxies map[string]*udpproxy.Proxy // "a-b", a < b
	dir     string
	ca      *pki.CA
	ids     []string
	wg      map[string]map[string]wgkey.Writer // clusterOpts.wireguard
}

type clusterOpts struct {
	durable   bool          // storage in durable mode, in a directory per node
	poolTTL   time.Duration // pools.ttl
	orphanTTL time.Duration // pools.orphan_ttl
	minStock  config.Size   // links' min_stock (default 64KiB)
	// etsi014 serves the ETSI 014 API on every node, each with one SAE
	// sae-<id> and knowing every other node's.
	etsi014 bool
	// refills says the nodes refill pools by relay in the background
	// (ETSI 014 in configure, key streams), which etsi014 implies: relays
	// get the default completion timeout rather than the tests' short one.
	refills   bool
	poolSlots int // pools.slots (default 262144)
	poolHigh  int // pools.high (default: slots)
	// direct joins the nodes without the UDP proxies (no Cut): for
	// benchmarks, where a proxy's copying would be charged to the nodes.
	direct bool
	// configure, if set, is applied last to node id's config.
	configure func(id string, cfg *lab.Config)
	// wireguard gives, by node, the writers of WireGuard devices
	// embedded in the test (Options.WireGuard).
	wireguard map[string]map[string]wgkey.Writer
	// source, if set, gives the QKD source of node me's end of its link
	// to peer (default: a simulator).
	source func(me, peer string) lab.Source
}

func newTestCluster(tb testing.TB, ids []string, edges [][2]string, o clusterOpts) *testCluster {
	tb.Helper()
	c := &testCluster{tb: tb, nodes: map[string]*Node{}, cfgs: map[string]*config.Config{}, proxies: map[string]*udpproxy.Proxy{}, dir: tb.TempDir()}
	l, err := lab.New(c.dir, "qrelay test CA", time.Hour)
	if err != nil {
		tb.Fatal(err)
	}
	c.ca, c.ids, c.wg = l.CA, ids, o.wireguard
	cfgs := map[string]*lab.Config{}
	for _, id := range ids {
		cfg, err := l.Node(id)
		if err != nil {
			tb.Fatal(err)
		}
		// keepalive and idle timeout: the defaults.
		cfg.KM.CompletionTimeout = 3 * time.Second
		if o.etsi014 || o.refills {
			// The default completion timeout: background refills under
			// the race detector are ten times slower than otherwise.
			cfg.KM.CompletionTimeout = 10 * time.Second
		}
		cfg.Pools = lab.Pools{Slots: cmp.Or(o.poolSlots, 262144), SlotSize: 32, TTL: o.poolTTL, OrphanTTL: o.orphanTTL}
		if o.poolHigh != 0 {
			cfg.Pools.High, cfg.Pools.Low = o.poolHigh, o.poolHigh/2
		}
		cfg.Control = lab.Control{Refresh: 5 * time.Second, MaxAge: 30 * time.Second, SPFDelay: 5 * time.Millisecond}
		cfgs[id] = cfg
	}
	for i, e := range edges {
		a, b := min(e[0], e[1]), max(e[0], e[1])
		addr := cfgs[b].KM.Listen
		if !o.direct {
			px := udpproxy.New(tb, addr)
			c.proxies[a+"-"+b] = px
			addr = px.Addr()
		}
		lab.Connect(cfgs[a], cfgs[b], addr, func(me, peer string) lab.Link {
			src := lab.Source{Simulator: &lab.Simulator{Seed: lab.Seed(i + 1), Rate: 200e6, BlockSize: 64 * config.KiB}}
			if o.source != nil {
				src = o.source(me, peer)
			}
			return lab.Link{PadCapacity: 16 * config.MiB, MinStock: cmp.Or(o.minStock, 64*config.KiB), Source: src}
		})
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if os.Getenv("QRELAY_TEST_LOG") != "" {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	for _, id := range ids {
		cfg := cfgs[id]
		if o.etsi014 {
			cfg.API.ETSI014.Listen = "127.0.0.1:0"
			for _, other := range ids {
				cfg.SAEs = append(cfg.SAEs, lab.SAE{ID: "sae-" + other, Node: other})
			}
		}
		if o.durable {
			cfg.Storage = lab.Storage{Mode: config.Durable, Dir: "data-" + id}
		}
		if o.configure != nil {
			o.configure(id, cfg)
		}
		y, err := cfg.Marshal("")
		if err != nil {
			tb.Fatal(err)
		}
		parsed, err := config.ParseOptions{BaseDir: c.dir, Filename: lab.ConfigFile(id)}.Parse(y)
		if err != nil {
			tb.Fatalf("config of node %s: %v", id, err)
		}
		n, err := New(parsed, Options{Logger: log, Version: "test", WireGuard: o.wireguard[id]})
		if err != nil {
			tb.Fatalf("starting node %s: %v", id, err)
		}
		c.nodes[id], c.cfgs[id] = n, parsed
		tb.Cleanup(func() { c.nodes[id].Close() })
	}
	return c
}

// restart stops node id cleanly and starts it again from its config.
func (c *testCluster) restart(id string) {
	c.tb.Helper()
	if err := c.nodes[id].Shutdown(context.Background()); err != nil {
		c.tb.Fatalf("stopping node %s: %v", id, err)
	}
	n, err := New(c.cfgs[id], Options{Logger: c.nodes[id].baseLog, Version: "test", WireGuard: c.wg[id]})
	if err != nil {
		c.tb.Fatalf("restarting node %s: %v", id, err)
	}
	c.nodes[id] = n
}

// checkPools compares the pools the two nodes share: the same keys under
// the same IDs at both ends, at a moment nothing is in flight.
func (c *testCluster) checkPools(a, b string) int {
	c.tb.Helper()
	// Refills go on meanwhile: the receiving end stores a relay's keys
	// before the sending end has its completion. The digests count when
	// neither end has a relay or a discard in flight before and after
	// taking them; a difference that lasts is a failure.
	quiet := func() bool {
		for _, id := range []string{a, b} {
			if e := c.nodes[id].eng; e.Pending() > 0 || e.PendingDiscards() > 0 {
				return false
			}
		}
		return true
	}
	ctx := context.Background()
	keys := 0
	waitfor.Cond(c.tb, "pools of "+a+" and "+b+" identical with no relay in flight", 20*time.Second, func() (bool, string) {
		if !quiet() {
			return false, "a relay or discard in flight"
		}
		da, err := backend{c.nodes[a]}.PoolDigest(ctx, b)
		if err != nil {
			c.tb.Fatal(err)
		}
		db, err := backend{c.nodes[b]}.PoolDigest(ctx, a)
		if err != nil {
			c.tb.Fatal(err)
		}
		if !quiet() {
			return false, "a relay or discard in flight"
		}
		keys = da.Keys
		if da.Keys != db.Keys || da.Digest != db.Digest {
			return false, fmt.Sprintf("pools differ: %s has %d keys for %s (%s), %s has %d for %s (%s)", a, da.Keys, b, da.Digest, b, db.Keys, a, db.Digest)
		}
		return true, ""
	})
	return keys
}

// path is node from's route to dst, or nil.
func (c *testCluster) path(from, dst string) []string {
	for _, r := range c.nodes[from].router.Routes() {
		if r.Dst == dst {
			return r.Path
		}
	}
	return nil
}

func (c *testCluster) waitPath(from, dst string, want ...string) {
	c.tb.Helper()
	waitfor.Bool(c.tb, fmt.Sprintf("route %s→%s along %v (now %v)", from, dst, want, c.path(from, dst)), 20*time.Second, func() bool {
		return slices.Equal(c.path(from, dst), want)
	})
}

// probe relays keys keys from src to dst every interval (see relayprobe).
func (c *testCluster) probe(src, dst string, keys int, every time.Duration) *relayprobe.Prober {
	n := c.nodes[src]
	return relayprobe.Start(every, 10*time.Second, func(ctx context.Context) bool {
		res, err := n.Relay(ctx, dst, keys, 32)
		return err == nil && res.Delivered == keys
	})
}

// sae makes a client of node's ETSI 014 API for SAE sae, as the master
// (towards peer) or the slave (from peer).
func (c *testCluster) sae(node, sae, peer string, master bool) *etsi014client.Client {
	c.tb.Helper()
	crt, err := c.ca.Issue(pki.SAE, sae, time.Hour)
	if err != nil {
		c.tb.Fatal(err)
	}
	cfg := etsi014client.Config{BaseURL: "https://" + c.nodes[node].ETSI014Addr().String(), Master: master,
		Certificate: crt.TLS, Roots: c.ca.Pool(), KeySize: 256, PerRequest: 64, GetRetry: -1}
	if master {
		cfg.MasterSAE, cfg.SlaveSAE = sae, peer
	} else {
		cfg.MasterSAE, cfg.SlaveSAE = peer, sae
	}
	cl, err := etsi014client.New(context.Background(), cfg)
	if err != nil {
		c.tb.Fatalf("SAE %s at node %s: %v", sae, node, err)
	}
	c.tb.Cleanup(func() { cl.Close() })
	return cl
}

// kmeSources starts a KME pair and returns it with the source of node
// me's end of its link to peer taking keys from it (ETSI 014,
// southbound): the clusterOpts.source of tests whose links are fed by QKD
// devices' KMEs.
func kmeSources(tb testing.TB) (*fakekme.Pair, func(me, peer string) lab.Source) {
	tb.Helper()
	pair := fakekme.NewPair(tb, fakekme.Config{})
	dir := tb.TempDir()
	write := func(name string, data []byte) {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			tb.Fatal(err)
		}
	}
	for _, sae := range []string{"sae-a", "sae-b"} {
		c, err := pair.CA.Issue(pki.SAE, sae, time.Hour)
		if err != nil {
			tb.Fatal(err)
		}
		write(sae+".pem", c.CertPEM)
		write(sae+".key", c.KeyPEM)
	}
	write("kme-ca.pem", pair.CA.CertPEM)
	kme := map[string]*fakekme.KME{"a": pair.A, "b": pair.B}
	return pair, func(me, peer string) lab.Source {
		d := filepath.Join(dir, "sae-")
		return lab.Source{ETSI014: &lab.ETSI014{URL: kme[me].URL, SAE: "sae-" + me, PeerSAE: "sae-" + peer,
			Cert: d + me + ".pem", Key: d + me + ".key", CA: filepath.Join(dir, "kme-ca.pem"),
			Timeout: 2 * time.Second, KeySize: 1024, PerRequest: 128}}
	}
}
