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
	"strings"
	"testing"
	"time"

	"github.com/qrelay/qrelay/config"
	"github.com/qrelay/qrelay/dataplane/etsi014client"
	"github.com/qrelay/qrelay/internal/fakekme"
	"github.com/qrelay/qrelay/internal/freeport"
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
	extra     string // YAML appended to every node's config
	durable   bool   // storage in durable mode, in a directory per node
	poolTTL   string // pools.ttl
	orphanTTL string // pools.orphan_ttl
	minStock  string // links' min_stock (default 64KiB)
	// etsi014 serves the ETSI 014 API on every node, each with one SAE
	// sae-<id> and knowing every other node's.
	etsi014   bool
	etsiExtra string // YAML flow-mapping fields added to api.etsi014
	// refills says the nodes refill pools by relay in the background
	// (ETSI 014 in extra, key streams), which etsi014 implies: relays get
	// the default completion timeout rather than the tests' short one.
	refills   bool
	poolSlots int // pools.slots (default 262144)
	poolHigh  int // pools.high (default: slots)
	// direct joins the nodes without the UDP proxies (no Cut): for
	// benchmarks, where a proxy's copying would be charged to the nodes.
	direct bool
	// nodeExtra, if set, gives YAML appended to node id's config.
	nodeExtra func(id string) string
	// wireguard gives, by node, the writers of WireGuard devices
	// embedded in the test (Options.WireGuard).
	wireguard map[string]map[string]wgkey.Writer
	// saeLimit is YAML flow-mapping fields added to each node's own SAE
	// ("keys_per_second: 10, burst: 128").
	saeLimit string
	// source, if set, gives the YAML flow mapping of the QKD source of
	// node me's end of its link to peer (default: a simulator).
	source func(me, peer string) string
}

func newTestCluster(tb testing.TB, ids []string, edges [][2]string, o clusterOpts) *testCluster {
	tb.Helper()
	c := &testCluster{tb: tb, nodes: map[string]*Node{}, cfgs: map[string]*config.Config{}, proxies: map[string]*udpproxy.Proxy{}, dir: tb.TempDir()}
	ca, err := pki.NewCA("qrelay test CA", time.Hour)
	if err != nil {
		tb.Fatal(err)
	}
	c.ca, c.ids, c.wg = ca, ids, o.wireguard
	write := func(name string, data []byte) {
		if err := os.WriteFile(filepath.Join(c.dir, name), data, 0o600); err != nil {
			tb.Fatal(err)
		}
	}
	write("ca.pem", ca.CertPEM)
	km := map[string]string{}
	for _, id := range ids {
		crt, err := ca.Issue(pki.Node, id, time.Hour, "127.0.0.1")
		if err != nil {
			tb.Fatal(err)
		}
		write("node-"+id+".pem", crt.CertPEM)
		write("node-"+id+".key", crt.KeyPEM)
		km[id] = freeport.Loopback(tb, "udp")
	}
	links := map[string][]string{}
	for i, e := range edges {
		a, b := min(e[0], e[1]), max(e[0], e[1])
		addr := km[b]
		if !o.direct {
			px := udpproxy.New(tb, km[b])
			c.proxies[a+"-"+b] = px
			addr = px.Addr()
		}
		src := func(me, peer string) string {
			if o.source != nil {
				return o.source(me, peer)
			}
			return fmt.Sprintf(`{simulator: {seed: "%064x", rate: 200Mbit/s, block_size: 64KiB}}`, i+1)
		}
		minStock := cmp.Or(o.minStock, "64KiB")
		links[a] = append(links[a], fmt.Sprintf(testLinkYAML, b, "address: "+addr, minStock, src(a, b)))
		links[b] = append(links[b], fmt.Sprintf(testLinkYAML, a, "", minStock, src(b, a)))
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if os.Getenv("QRELAY_TEST_LOG") != "" {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	for _, id := range ids {
		y := fmt.Sprintf(testNodeYAML, id, id, id, km[id], strings.Join(links[id], "")) + o.extra
		if o.nodeExtra != nil {
			y += o.nodeExtra(id)
		}
		if o.etsi014 || o.refills {
			// The default completion timeout: background refills under
			// the race detector are ten times slower than otherwise.
			y = strings.Replace(y, "completion_timeout: 3s", "completion_timeout: 10s", 1)
		}
		if o.etsi014 {
			y += "api: {etsi014: {listen: \"127.0.0.1:0\"" + o.etsiExtra + "}}\nsaes:\n"
			for _, other := range ids {
				extra := ""
				if other == id && o.saeLimit != "" {
					extra = ", " + o.saeLimit
				}
				y += fmt.Sprintf("  - {id: sae-%s, node: %s%s}\n", other, other, extra)
			}
		}
		if o.poolSlots != 0 {
			y = strings.Replace(y, "slots: 262144", fmt.Sprintf("slots: %d", o.poolSlots), 1)
		}
		if o.poolHigh != 0 {
			y = strings.Replace(y, "slot_size: 32", fmt.Sprintf("slot_size: 32, high: %d, low: %d", o.poolHigh, o.poolHigh/2), 1)
		}
		if o.poolTTL != "" {
			y = strings.Replace(y, "slot_size: 32}", "slot_size: 32, ttl: "+o.poolTTL+"}", 1)
		}
		if o.orphanTTL != "" {
			y = strings.Replace(y, "slot_size: 32", "slot_size: 32, orphan_ttl: "+o.orphanTTL, 1)
		}
		if o.durable {
			y += "storage: {mode: durable, dir: data-" + id + "}\n"
		}
		cfg, err := config.ParseOptions{BaseDir: c.dir, Filename: "node-" + id + ".yaml"}.Parse([]byte(y))
		if err != nil {
			tb.Fatalf("config of node %s: %v", id, err)
		}
		n, err := New(cfg, Options{Logger: log, Version: "test", WireGuard: o.wireguard[id]})
		if err != nil {
			tb.Fatalf("starting node %s: %v", id, err)
		}
		c.nodes[id], c.cfgs[id] = n, cfg
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
// the same IDs at both ends, after nothing is pending.
func (c *testCluster) checkPools(a, b string) int {
	c.tb.Helper()
	waitfor.Bool(c.tb, "no relay pending", 20*time.Second, func() bool {
		for _, id := range []string{a, b} {
			if e := c.nodes[id].eng; e.Pending() > 0 || e.PendingDiscards() > 0 {
				return false
			}
		}
		return true
	})
	ctx := context.Background()
	da, err := backend{c.nodes[a]}.PoolDigest(ctx, b)
	if err != nil {
		c.tb.Fatal(err)
	}
	db, err := backend{c.nodes[b]}.PoolDigest(ctx, a)
	if err != nil {
		c.tb.Fatal(err)
	}
	if da.Keys != db.Keys || da.Digest != db.Digest {
		c.tb.Fatalf("pools differ: %s has %d keys for %s (%s), %s has %d for %s (%s)", a, da.Keys, b, da.Digest, b, db.Keys, a, db.Digest)
	}
	return da.Keys
}

const testNodeYAML = `
node: {id: %s}
tls: {ca: ca.pem, cert: node-%s.pem, key: node-%s.key}
km: {listen: "%s", completion_timeout: 3s} # keepalive and idle timeout: the defaults
pools: {slots: 262144, slot_size: 32}
control: {refresh: 5s, max_age: 30s, spf_delay: 5ms}
links:
%s`

const testLinkYAML = `  - peer: %s
    %s
    pad_capacity: 16MiB
    min_stock: %s
    source: %s
`

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

// kmeSources starts a KME pair and returns it with the YAML of node me's
// end of its link to peer taking keys from it (ETSI 014, southbound): the
// clusterOpts.source of tests whose links are fed by QKD devices' KMEs.
func kmeSources(tb testing.TB) (*fakekme.Pair, func(me, peer string) string) {
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
	return pair, func(me, peer string) string {
		d := filepath.Join(dir, "sae-")
		return fmt.Sprintf(`{etsi014: {url: "%s", sae: sae-%s, peer_sae: sae-%s, cert: "%s%s.pem", key: "%s%s.key", ca: "%s", timeout: 2s, key_size: 1024, per_request: 128}}`,
			kme[me].URL, me, peer, d, me, d, me, filepath.Join(dir, "kme-ca.pem"))
	}
}
