package main

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/qrelay/qrelay/config"
	"github.com/qrelay/qrelay/internal/freeport"
	"github.com/qrelay/qrelay/internal/lab"
	"github.com/qrelay/qrelay/internal/pki"
	"github.com/qrelay/qrelay/internal/relayprobe"
	"github.com/qrelay/qrelay/internal/udpproxy"
	"github.com/qrelay/qrelay/internal/waitfor"
	"github.com/qrelay/qrelay/node/adminapi"
)

// qrelaydBin is the daemon built once for the tests that run it as a
// separate process, as operators do.
var qrelaydBin string

func TestMain(m *testing.M) {
	code := func() int {
		dir, err := os.MkdirTemp("", "qrelayd-test")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		qrelaydBin = filepath.Join(dir, "qrelayd")
		out, err := exec.Command("go", "build", "-o", qrelaydBin, ".").CombinedOutput()
		if err != nil {
			fmt.Fprintf(os.Stderr, "building qrelayd: %v\n%s", err, out)
			return 1
		}
		return m.Run()
	}()
	os.Exit(code)
}

// cluster is a network of qrelayd processes on loopback, with simulated
// QKD links. Each KM link runs through a UDP proxy the test can cut, as a
// fibre cut or a dead switch would.
type cluster struct {
	t       testing.TB
	lab     *lab.Lab
	ca      *pki.CA
	opCert  tls.Certificate
	nodes   map[string]*proc
	proxies map[string]*udpproxy.Proxy // "a-b" with a < b
	bin     string                     // the qrelayd binary the nodes run
}

type proc struct {
	id       string
	cfg      *lab.Config // as written to cfgPath
	cfgPath  string
	etsiAddr string   // with clusterOpts.etsi014
	env      []string // extra environment of its next start
	api      *adminapi.Client
	run      *lab.Proc
}

// newCluster writes certificates and configs for nodes joined by edges and
// starts every node.
func newCluster(t testing.TB, ids []string, edges [][2]string) *cluster {
	t.Helper()
	return newClusterWith(t, ids, edges, nil)
}

// newClusterWith is newCluster with configure(id, cfg) applied to node
// id's config before it is written, if configure is not nil.
func newClusterWith(t testing.TB, ids []string, edges [][2]string, configure func(id string, cfg *lab.Config)) *cluster {
	t.Helper()
	return newClusterOpts(t, ids, edges, clusterOpts{configure: configure})
}

// clusterOpts are the options of newClusterOpts.
type clusterOpts struct {
	configure func(id string, cfg *lab.Config) // applied last to node id's config
	etsi014   bool                             // every node serves ETSI 014, with SAE sae-<id> at node <id>
	durable   bool                             // storage in durable mode
	bin       string                           // the qrelayd binary (default qrelaydBin)
	slots     int                              // pools.slots (default 1048576); refills stop at a quarter
}

// newClusterOpts writes certificates and configs and starts every node.
func newClusterOpts(t testing.TB, ids []string, edges [][2]string, o clusterOpts) *cluster {
	t.Helper()
	c := &cluster{t: t, nodes: map[string]*proc{}, proxies: map[string]*udpproxy.Proxy{}, bin: cmp.Or(o.bin, qrelaydBin)}
	l, err := lab.New(t.TempDir(), "qrelay test CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	c.lab, c.ca = l, l.CA
	if c.opCert, err = l.Issue(pki.Operator, "test-operator", ""); err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		cfg, err := l.Node(id)
		if err != nil {
			t.Fatal(err)
		}
		cfg.Node.Log.Level = config.LogInfo
		cfg.KM.Keepalive, cfg.KM.IdleTimeout, cfg.KM.CompletionTimeout = 200*time.Millisecond, time.Second, 3*time.Second
		cfg.API.Admin.Listen = freeport.Loopback(t, "tcp")
		cfg.Pools = lab.Pools{Slots: 1048576, SlotSize: 32, OrphanTTL: 5 * time.Second}
		if o.slots != 0 {
			cfg.Pools.Slots, cfg.Pools.High, cfg.Pools.Low = o.slots, o.slots/4, o.slots/8
		}
		cfg.Control = lab.Control{Refresh: 5 * time.Second, MaxAge: 30 * time.Second, SPFDelay: 5 * time.Millisecond}
		c.nodes[id] = &proc{id: id, cfg: cfg}
	}
	// The lower ID dials, through the link's proxy.
	for i, e := range edges {
		a, b := min(e[0], e[1]), max(e[0], e[1])
		px := udpproxy.New(t, c.nodes[b].cfg.KM.Listen)
		c.proxies[a+"-"+b] = px
		lab.Connect(c.nodes[a].cfg, c.nodes[b].cfg, px.Addr(), func(_, _ string) lab.Link {
			return lab.Link{PadCapacity: 16 * config.MiB, MinStock: 64 * config.KiB, Source: lab.Source{
				Simulator: &lab.Simulator{Seed: lab.Seed(i + 1), Rate: 200e6, BlockSize: 64 * config.KiB}}}
		})
	}
	for _, id := range ids {
		p := c.nodes[id]
		if o.etsi014 {
			p.etsiAddr = freeport.Loopback(t, "tcp")
			p.cfg.API.ETSI014.Listen = p.etsiAddr
			for _, other := range ids {
				p.cfg.SAEs = append(p.cfg.SAEs, lab.SAE{ID: "sae-" + other, Node: other})
			}
		}
		if o.durable {
			p.cfg.Storage = lab.Storage{Mode: config.Durable, Dir: "data-" + id}
		}
		if o.configure != nil {
			o.configure(id, p.cfg)
		}
		p.cfgPath = c.writeConfig(p.cfg)
		p.api = adminapi.NewClient("https://"+p.cfg.API.Admin.Listen, c.opCert, c.ca.Pool())
		p.run = &lab.Proc{Name: "node " + id, Path: c.bin, Args: []string{"-config", p.cfgPath}}
	}
	for _, id := range ids {
		c.start(id)
	}
	return c
}

// writeConfig writes cfg as its node's config file and returns its path.
func (c *cluster) writeConfig(cfg *lab.Config) string {
	c.t.Helper()
	path, _, err := c.lab.WriteConfig(cfg, "")
	if err != nil {
		c.t.Fatal(err)
	}
	return path
}

// stopGrace is how long a node has to exit after a signal.
const stopGrace = 30 * time.Second

func (c *cluster) start(id string) {
	t := c.t
	p := c.nodes[id]
	p.run.Env = p.env
	if err := p.run.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.stop(id, syscall.SIGTERM)
		if t.Failed() {
			t.Logf("log of node %s:\n%s", id, p.run.Output())
		}
	})
}

// stop signals node id and waits for it to exit.
func (c *cluster) stop(id string, sig syscall.Signal) error {
	err := c.nodes[id].run.Stop(sig, stopGrace)
	if errors.Is(err, lab.ErrKilled) {
		c.t.Errorf("node %s did not exit within 30 s of %v", id, sig)
	}
	return err
}

// nextHop is node from's next hop to dst, or "".
func (c *cluster) nextHop(from, dst string) (string, []string) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	rs, err := c.nodes[from].api.Routes(ctx)
	if err != nil {
		return "", nil
	}
	for _, r := range rs {
		if r.Dst == dst {
			return r.NextHop, r.Path
		}
	}
	return "", nil
}

func (c *cluster) waitRoute(from, dst string, want []string) {
	c.t.Helper()
	waitfor.Cond(c.t, fmt.Sprintf("route %s→%s along %v", from, dst, want), 20*time.Second, func() (bool, string) {
		_, path := c.nextHop(from, dst)
		return slices.Equal(path, want), fmt.Sprint(path)
	})
}

// startTraffic relays keys keys from src to dst through the admin API
// every interval (see relayprobe).
func (c *cluster) startTraffic(src, dst string, keys int, every time.Duration) *relayprobe.Prober {
	api := c.nodes[src].api
	return relayprobe.Start(every, 20*time.Second, func(ctx context.Context) bool {
		res, err := api.Relay(ctx, adminapi.RelayRequest{Dst: dst, Keys: keys, KeySize: 32})
		return err == nil && res.Delivered == keys
	})
}

// checkPools checks the invariant the whole relay design serves: every
// end-to-end key is usable at both ends or at neither. It waits until no
// relay is pending at any node, then compares, for each pair, the digest
// of the (ID, key) pairs of the two ends' pools.
func (c *cluster) checkPools(pairs [][2]string) (keys int) {
	t := c.t
	t.Helper()
	ctx := context.Background()
	waitfor.Cond(t, "no relay pending or discard unconfirmed at any live node", 30*time.Second, func() (bool, string) {
		for id, p := range c.nodes {
			if !p.alive() {
				continue
			}
			st, err := p.api.Status(ctx)
			if err != nil || st.Relay.Pending > 0 || st.Relay.DiscardsPending > 0 {
				return false, fmt.Sprintf("node %s: %+v, %v", id, st.Relay, err)
			}
		}
		return true, ""
	})
	// Keys a restarted master handed to its SAE wait as orphans at the
	// other end until pools.orphan_ttl: the pools agree once they expire.
	waitfor.Cond(t, "pools identical at both ends of every pair", 30*time.Second, func() (bool, string) {
		keys = 0
		var differ []string
		for _, pr := range pairs {
			a, err := c.nodes[pr[0]].api.PoolDigest(ctx, pr[1])
			if err != nil {
				t.Fatalf("pool digest at %s for %s: %v", pr[0], pr[1], err)
			}
			b, err := c.nodes[pr[1]].api.PoolDigest(ctx, pr[0])
			if err != nil {
				t.Fatalf("pool digest at %s for %s: %v", pr[1], pr[0], err)
			}
			if a.Keys != b.Keys || a.Digest != b.Digest {
				differ = append(differ, fmt.Sprintf("%s and %s: %d keys (digest %s) vs %d keys (digest %s)", pr[0], pr[1], a.Keys, a.Digest, b.Keys, b.Digest))
			}
			keys += a.Keys
		}
		return len(differ) == 0, "some key is usable at one end only: " + strings.Join(differ, "; ")
	})
	return keys
}

func (p *proc) alive() bool { return !p.run.Exited() }
