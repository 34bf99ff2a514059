package main

import (
	"bytes"
	"cmp"
	"context"
	"crypto/tls"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/qrelay/qrelay/internal/freeport"
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
	dir     string
	ca      *pki.CA
	opCert  tls.Certificate
	nodes   map[string]*proc
	proxies map[string]*udpproxy.Proxy // "a-b" with a < b
	bin     string                     // the qrelayd binary the nodes run
}

type proc struct {
	id       string
	cfgPath  string
	kmAddr   string
	etsiAddr string     // with clusterOpts.etsi014
	env      []string   // extra environment of its next start
	mu       sync.Mutex // guards exited, replaced at each start
	api      *adminapi.Client
	cmd      *exec.Cmd
	exited   chan struct{}
	exitErr  error
	log      *lockedBuffer
	stopOnce sync.Once
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// newCluster writes certificates and configs for nodes joined by edges and
// starts every node.
func newCluster(t testing.TB, ids []string, edges [][2]string) *cluster {
	t.Helper()
	return newClusterWith(t, ids, edges, nil)
}

// newClusterWith is newCluster with extra(id) appended to node id's
// config, if extra is not nil.
func newClusterWith(t testing.TB, ids []string, edges [][2]string, extra func(id string) string) *cluster {
	t.Helper()
	return newClusterOpts(t, ids, edges, clusterOpts{extra: extra})
}

// clusterOpts are the options of newClusterOpts.
type clusterOpts struct {
	extra   func(id string) string // YAML appended to node id's config
	etsi014 bool                   // every node serves ETSI 014, with SAE sae-<id> at node <id>
	durable bool                   // storage in durable mode
	bin     string                 // the qrelayd binary (default qrelaydBin)
	slots   int                    // pools.slots (default 1048576); refills stop at a quarter
}

// newClusterOpts writes certificates and configs and starts every node.
func newClusterOpts(t testing.TB, ids []string, edges [][2]string, o clusterOpts) *cluster {
	t.Helper()
	c := &cluster{t: t, dir: t.TempDir(), nodes: map[string]*proc{}, proxies: map[string]*udpproxy.Proxy{}, bin: cmp.Or(o.bin, qrelaydBin)}
	extra := o.extra
	var err error
	if c.ca, err = pki.NewCA("qrelay test CA", time.Hour); err != nil {
		t.Fatal(err)
	}
	write := func(name string, data []byte) string {
		p := filepath.Join(c.dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	write("ca.pem", c.ca.CertPEM)
	op, err := c.ca.Issue(pki.Operator, "test-operator", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	c.opCert = op.TLS
	for _, id := range ids {
		crt, err := c.ca.Issue(pki.Node, id, time.Hour, "127.0.0.1")
		if err != nil {
			t.Fatal(err)
		}
		write("node-"+id+".pem", crt.CertPEM)
		write("node-"+id+".key", crt.KeyPEM)
		c.nodes[id] = &proc{id: id, kmAddr: freeport.Loopback(t, "udp")}
	}
	// The lower ID dials, through the link's proxy.
	links := map[string][]string{}
	for i, e := range edges {
		a, b := min(e[0], e[1]), max(e[0], e[1])
		px := udpproxy.New(t, c.nodes[b].kmAddr)
		c.proxies[a+"-"+b] = px
		seed := fmt.Sprintf("%064x", i+1)
		links[a] = append(links[a], fmt.Sprintf(linkYAML, b, "address: "+px.Addr(), seed))
		links[b] = append(links[b], fmt.Sprintf(linkYAML, a, "", seed))
	}
	for _, id := range ids {
		p := c.nodes[id]
		admin := freeport.Loopback(t, "tcp")
		etsi := ""
		if o.etsi014 {
			p.etsiAddr = freeport.Loopback(t, "tcp")
			etsi = fmt.Sprintf("  etsi014: {listen: %q}\n", p.etsiAddr)
		}
		cfg := fmt.Sprintf(nodeYAML, id, id, id, p.kmAddr, admin, etsi, strings.Join(links[id], ""))
		if o.slots != 0 {
			cfg = strings.Replace(cfg, "slots: 1048576", fmt.Sprintf("slots: %d, high: %d, low: %d", o.slots, o.slots/4, o.slots/8), 1)
		}
		if o.etsi014 {
			cfg += "saes:\n"
			for _, other := range ids {
				cfg += fmt.Sprintf("  - {id: sae-%s, node: %s}\n", other, other)
			}
		}
		if o.durable {
			cfg += "storage: {mode: durable, dir: data-" + id + "}\n"
		}
		if extra != nil {
			cfg += extra(id)
		}
		p.cfgPath = write("node-"+id+".yaml", []byte(cfg))
		p.api = adminapi.NewClient("https://"+admin, c.opCert, c.ca.Pool())
	}
	for _, id := range ids {
		c.start(id)
	}
	return c
}

const nodeYAML = `
node:
  id: %s
  log: {level: info}
tls: {ca: ca.pem, cert: node-%s.pem, key: node-%s.key}
km:
  listen: %s
  keepalive: 200ms
  idle_timeout: 1s
  completion_timeout: 3s
api:
  admin: {listen: "%s"}
%spools: {slots: 1048576, slot_size: 32, orphan_ttl: 5s}
control: {refresh: 5s, max_age: 30s, spf_delay: 5ms}
links:
%s`

const linkYAML = `  - peer: %s
    %s
    pad_capacity: 16MiB
    min_stock: 64KiB
    source:
      simulator: {seed: "%s", rate: 200Mbit/s, block_size: 64KiB}
`

func (c *cluster) start(id string) {
	t := c.t
	p := c.nodes[id]
	p.log = &lockedBuffer{}
	p.mu.Lock() // alive may be asked from another goroutine
	p.exited = make(chan struct{})
	p.mu.Unlock()
	p.stopOnce = sync.Once{}
	p.cmd = exec.Command(c.bin, "-config", p.cfgPath)
	p.cmd.Env = append(os.Environ(), p.env...)
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	cmd, exited := p.cmd, p.exited
	go func() { p.exitErr = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		c.stop(id, syscall.SIGTERM)
		if t.Failed() {
			t.Logf("log of node %s:\n%s", id, p.log.String())
		}
	})
}

// stop signals node id and waits for it to exit.
func (c *cluster) stop(id string, sig syscall.Signal) error {
	p := c.nodes[id]
	p.stopOnce.Do(func() { p.cmd.Process.Signal(sig) })
	select {
	case <-p.exited:
	case <-time.After(30 * time.Second):
		p.cmd.Process.Kill()
		<-p.exited
		c.t.Errorf("node %s did not exit within 30 s of %v", id, sig)
	}
	return p.exitErr
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

func (p *proc) alive() bool {
	p.mu.Lock()
	exited := p.exited
	p.mu.Unlock()
	select {
	case <-exited:
		return false
	default:
		return true
	}
}
