package main

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/qrelay/qrelay/config"
	"github.com/qrelay/qrelay/dataplane/etsi014client"
	"github.com/qrelay/qrelay/internal/daemon"
	"github.com/qrelay/qrelay/internal/pki"
	"github.com/qrelay/qrelay/node/adminapi"
	"github.com/qrelay/qrelay/ringstore"
)

const demoWhat = `Run a qrelay network on this machine and use it: three nodes in a line a–b–c
joined by SIMULATED QKD links (no quantum security), each node a separate process
("qrelayctl daemon") with its log in the work directory. An application pair
takes keys through the ETSI GS QKD 014 API: SAE sae-a asks node a for new keys
(enc_keys), SAE sae-c asks node c for the same keys by ID (dec_keys), and the demo
checks that both got the same bytes. Keys for a and c are relayed hop by hop
through b. Every second it prints the links, the relay throughput, the key
pools and the keys delivered; Ctrl-C or --duration stops it. Exit status 1 if
a key mismatched or a node failed.`

const demoUsage = "qrelayctl demo [--duration D] [--dir DIR] [--rate RATE] [--keys N]"

// The demo network.
var (
	demoNodes = []string{"a", "b", "c"}
	demoEdges = [][2]string{{"a", "b"}, {"b", "c"}} // lower ID first: it dials
)

// The demo's SAEs and the nodes that serve them; the master asks for new
// keys.
const (
	demoMasterSAE, demoMasterNode = "sae-a", "a"
	demoSlaveSAE, demoSlaveNode   = "sae-c", "c"
	demoOperator                  = "demo-operator"
	demoKeyBits                   = 256
	demoMarker                    = ".qrelay-demo" // marks a --dir the demo made
	demoCertLifetime              = 7 * 24 * time.Hour
)

// How long the demo waits for things.
var (
	demoRoutesTimeout = 60 * time.Second
	demoStopTimeout   = daemon.ShutdownGrace + 5*time.Second
	demoTick          = time.Second
)

// demoOptions are the demo's flags.
type demoOptions struct {
	duration time.Duration // 0: until Ctrl-C
	dir      string        // "": a temporary directory, removed at exit
	rate     config.Rate
	keys     int // per ETSI 014 request
}

// runDemo is `qrelayctl demo`.
func runDemo(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	var o demoOptions
	fs.DurationVar(&o.duration, "duration", 0, "stop after delivering keys for this `long` (default: run until Ctrl-C)")
	fs.StringVar(&o.dir, "dir", "", "keep certificates, configs and node logs in this `directory` (default: a temporary one, removed at exit)")
	rate := fs.String("rate", "200Mbit/s", "secret key `rate` of each simulated QKD link, like 10Mbit/s, 2.5Gbit/s or unlimited")
	fs.IntVar(&o.keys, "keys", 128, "keys of 256 bits per ETSI 014 request (`N`, 1 to 4096)")
	if _, err := parseArgs(fs, args, demoUsage); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			help(stdout, fs, demoUsage, demoWhat)
			return nil
		}
		return err
	}
	if o.duration < 0 {
		return usageError{fmt.Sprintf("--duration %v: want a positive duration such as 30s, or 0 to run until Ctrl-C", o.duration)}
	}
	r, err := config.ParseRate(*rate)
	if err != nil {
		return usageError{"--rate " + err.Error()}
	}
	o.rate = r
	if o.keys < 1 || o.keys > 4096 {
		return usageError{fmt.Sprintf("--keys %d: want 1 to 4096 keys per request", o.keys)}
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	return demo(ctx, o, stdout)
}

// demo runs the demo until ctx ends or o.duration has passed.
func demo(ctx context.Context, o demoOptions, out io.Writer) (err error) {
	fmt.Fprintf(out, "qrelay demo: nodes %s in a line on this machine; QKD links SIMULATED at %v each (no quantum security)\n",
		strings.Join(demoNodes, "–"), o.rate)
	dir, cleanup, err := demoDir(o.dir)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := cleanup(); cerr != nil && err == nil {
			err = cerr
		}
	}()
	if o.dir == "" {
		fmt.Fprintf(out, "work directory: %s (removed at exit; keep one with --dir)\n", dir)
	} else {
		fmt.Fprintf(out, "work directory: %s (kept at exit)\n", dir)
	}
	lab, err := makeLab(dir, o.rate, o.keys)
	if err != nil {
		return fmt.Errorf("setting up the lab in %s: %w", dir, err)
	}
	fmt.Fprintf(out, "lab PKI and configs written: CA, nodes %s, SAEs %s and %s, operator %s\n",
		strings.Join(demoNodes, " "), demoMasterSAE, demoSlaveSAE, demoOperator)

	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("finding this program to run the nodes with: %w", err)
	}
	nodes := &demoNet{lab: lab}
	defer func() { // on the way out early; a second stopAll does nothing
		if _, ferr := nodes.stopAll(out); ferr != nil && err == nil {
			err = ferr
		}
	}()
	for _, n := range lab.nodes {
		if err := nodes.start(exe, n); err != nil {
			return err
		}
		etsi := ""
		if n.etsi != "" {
			etsi = ", ETSI 014 https://" + n.etsi
		}
		fmt.Fprintf(out, "started node %s: pid %d, admin API https://%s%s, log %s\n", n.id, nodes.procs[n.id].cmd.Process.Pid, n.admin, etsi, n.logPath)
	}
	a := lab.node(demoMasterNode)
	fmt.Fprintf(out, "inspect a node while the demo runs:\n  qrelayctl links --node https://%s --cert %s --key %s --ca %s\n",
		a.admin, filepath.Join(dir, "operator.pem"), filepath.Join(dir, "operator.key"), filepath.Join(dir, "ca.pem"))

	if err := nodes.waitRoutes(ctx, out); err != nil {
		if ctx.Err() != nil {
			fmt.Fprintln(out, "interrupted before the network was up")
			return nil
		}
		return err
	}

	runCtx, cancel := ctx, context.CancelFunc(func() {})
	if o.duration > 0 {
		runCtx, cancel = context.WithTimeout(ctx, o.duration)
	}
	defer cancel()
	saeCtx, stopSAE := context.WithCancel(runCtx)
	var stats saeStats
	var saeDone sync.WaitGroup
	saeDone.Go(func() { runSAEPair(saeCtx, lab, o.keys, &stats) })
	stopSAEPair := func() { stopSAE(); saeDone.Wait() }
	how := "Ctrl-C to stop"
	if o.duration > 0 {
		how = fmt.Sprintf("stopping after %v (or Ctrl-C)", o.duration)
	}
	fmt.Fprintf(out, "SAE pair: %s asks node %s for %d keys at a time (enc_keys), %s asks node %s for the same keys (dec_keys); %s\n\n",
		demoMasterSAE, demoMasterNode, o.keys, demoSlaveSAE, demoSlaveNode, how)

	start := time.Now()
	prev := nodes.snapshot(ctx, &stats, start)
	first := prev
	tick := time.NewTicker(demoTick)
	defer tick.Stop()
	var failed *demoProc
	for failed == nil && runCtx.Err() == nil {
		select {
		case <-runCtx.Done():
			continue
		case <-tick.C:
		}
		cur := nodes.snapshot(runCtx, &stats, start)
		if runCtx.Err() == nil {
			writeSummary(out, prev, cur)
			prev = cur
		}
		failed = nodes.exited()
	}
	stopSAEPair()
	elapsed := time.Since(start)
	if failed != nil {
		failed.tailShown = true
		fmt.Fprintf(out, "\nnode %s exited early (%s); the end of its log (%s):\n%s", failed.node.id, exitStatus(failed.err), failed.node.logPath, indent(tail(failed.node.logPath, 20)))
	} else if ctx.Err() != nil {
		fmt.Fprintln(out, "\ninterrupted: stopping")
	} else {
		fmt.Fprintf(out, "\n%v passed: stopping\n", o.duration)
	}
	fmt.Fprintln(out, "stopping the nodes (SIGTERM)")
	exits, nodeErr := nodes.stopAll(out)
	last := prev
	last.sae = stats.counts()
	writeFinal(out, first, last, elapsed, exits)
	var problems []string
	if last.sae.mismatches > 0 {
		problems = append(problems, fmt.Sprintf("%d keys mismatched", last.sae.mismatches))
	}
	if nodeErr != nil {
		problems = append(problems, nodeErr.Error())
	}
	if len(problems) > 0 {
		fmt.Fprintln(out, "result: FAILED:", strings.Join(problems, "; "))
		return errors.New(strings.Join(problems, "; "))
	}
	fmt.Fprintln(out, "result: OK")
	return nil
}

// demoDir makes the work directory: dir if given (created if need be,
// kept at exit), else a temporary one that cleanup removes. It refuses a
// non-empty dir the demo did not make, not to overwrite someone's PKI.
func demoDir(dir string) (string, func() error, error) {
	if dir == "" {
		d, err := os.MkdirTemp("", "qrelay-demo-")
		if err != nil {
			return "", nil, err
		}
		return d, func() error { return os.RemoveAll(d) }, writeMarker(d)
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", nil, err
	}
	entries, err := os.ReadDir(abs)
	switch {
	case errors.Is(err, os.ErrNotExist):
		if err := os.MkdirAll(abs, 0o700); err != nil {
			return "", nil, err
		}
	case err != nil:
		return "", nil, err
	case len(entries) > 0 && !slices.ContainsFunc(entries, func(e os.DirEntry) bool { return e.Name() == demoMarker }):
		return "", nil, usageError{fmt.Sprintf("--dir %s is not empty and not a demo directory: give a new or empty directory (the demo writes a CA, keys and configs there)", dir)}
	}
	return abs, func() error { return nil }, writeMarker(abs)
}

func writeMarker(dir string) error {
	return os.WriteFile(filepath.Join(dir, demoMarker), []byte("written by qrelayctl demo: it may overwrite this directory's files\n"), 0o600)
}

// demoLab is what makeLab wrote: a PKI and one config per node.
type demoLab struct {
	dir      string
	roots    *x509.CertPool
	operator tls.Certificate
	saes     map[string]tls.Certificate
	nodes    []*labNode
}

// labNode is one node of the lab.
type labNode struct {
	id               string
	cfgPath, logPath string
	km, admin, etsi  string // listen addresses; etsi "" for none
	links            []string
	saes             []config.SAE
	keysPerRequest   int
	rate             config.Rate
	seeds            map[string]string // per peer, hex
	dialPeer         map[string]string // peer → its KM address, for the lower ID
	api              *adminapi.Client
	etsiURL          string
}

func (l *demoLab) node(id string) *labNode {
	for _, n := range l.nodes {
		if n.id == id {
			return n
		}
	}
	panic("demo: no node " + id)
}

// makeLab writes into dir a lab PKI (CA, node, SAE and operator
// certificates) and the three nodes' configs, on free loopback ports and
// with fresh random seeds, and checks each config as qrelayd will.
func makeLab(dir string, rate config.Rate, keysPerRequest int) (*demoLab, error) {
	ca, err := pki.NewCA("qrelay demo CA", demoCertLifetime)
	if err != nil {
		return nil, err
	}
	lab := &demoLab{dir: dir, roots: ca.Pool(), saes: map[string]tls.Certificate{}}
	write := func(name string, data []byte) error {
		return os.WriteFile(filepath.Join(dir, name), data, 0o600)
	}
	caKey, err := ca.KeyPEM()
	if err != nil {
		return nil, err
	}
	if err := errors.Join(write("ca.pem", ca.CertPEM), write("ca.key", caKey)); err != nil {
		return nil, err
	}
	issue := func(kind pki.Kind, id, file string, hosts ...string) (tls.Certificate, error) {
		c, err := ca.Issue(kind, id, demoCertLifetime, hosts...)
		if err != nil {
			return tls.Certificate{}, err
		}
		return c.TLS, errors.Join(write(file+".pem", c.CertPEM), write(file+".key", c.KeyPEM))
	}
	if lab.operator, err = issue(pki.Operator, demoOperator, "operator"); err != nil {
		return nil, err
	}
	for _, id := range []string{demoMasterSAE, demoSlaveSAE} {
		if lab.saes[id], err = issue(pki.SAE, id, id); err != nil {
			return nil, err
		}
	}
	// Hold every port until all are chosen, so that none is chosen twice.
	var ports portPicker
	defer ports.close()
	for _, id := range demoNodes {
		if _, err := issue(pki.Node, id, "node-"+id, "127.0.0.1"); err != nil {
			return nil, err
		}
		n := &labNode{
			id:             id,
			cfgPath:        filepath.Join(dir, "node-"+id+".yaml"),
			logPath:        filepath.Join(dir, "node-"+id+".log"),
			keysPerRequest: keysPerRequest,
			rate:           rate,
			seeds:          map[string]string{},
			dialPeer:       map[string]string{},
		}
		if n.km, err = ports.pick("udp"); err != nil {
			return nil, err
		}
		if n.admin, err = ports.pick("tcp"); err != nil {
			return nil, err
		}
		switch id {
		case demoMasterNode:
			n.saes = []config.SAE{{ID: demoMasterSAE}, {ID: demoSlaveSAE, Node: demoSlaveNode}}
		case demoSlaveNode:
			n.saes = []config.SAE{{ID: demoSlaveSAE}, {ID: demoMasterSAE, Node: demoMasterNode}}
		}
		if len(n.saes) > 0 {
			if n.etsi, err = ports.pick("tcp"); err != nil {
				return nil, err
			}
			n.etsiURL = "https://" + n.etsi
		}
		n.api = adminapi.NewClient("https://"+n.admin, lab.operator, lab.roots)
		lab.nodes = append(lab.nodes, n)
	}
	for _, e := range demoEdges {
		var seed [config.SeedSize]byte
		rand.Read(seed[:])
		s := hex.EncodeToString(seed[:])
		lo, hi := lab.node(e[0]), lab.node(e[1])
		lo.links, hi.links = append(lo.links, hi.id), append(hi.links, lo.id)
		lo.seeds[hi.id], hi.seeds[lo.id] = s, s
		lo.dialPeer[hi.id] = hi.km
	}
	for _, n := range lab.nodes {
		if err := os.WriteFile(n.cfgPath, n.config(), 0o600); err != nil {
			return nil, err
		}
		if _, err := config.Load(n.cfgPath); err != nil {
			return nil, fmt.Errorf("the demo wrote a config qrelayd refuses (a bug in the demo): %w", err)
		}
	}
	return lab, nil
}

// config is the node's YAML config.
func (n *labNode) config() []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "# Node %s of the demo network, written by \"qrelayctl demo\".\n", n.id)
	fmt.Fprintf(&b, "# Its QKD links are SIMULATED: no quantum security. config/example.yaml\n# documents every field.\n")
	fmt.Fprintf(&b, "node:\n  id: %s\n", n.id)
	fmt.Fprintf(&b, "tls: {ca: ca.pem, cert: node-%s.pem, key: node-%s.key}\n", n.id, n.id)
	fmt.Fprintf(&b, "km:\n  listen: %q\n", n.km)
	// Large blocks keep a fast simulated link cheap to run.
	block := "4KiB"
	if n.rate == config.Unlimited || n.rate >= 50e6 {
		block = "64KiB"
	}
	b.WriteString("links:\n")
	for _, p := range n.links {
		fmt.Fprintf(&b, "  - peer: %s\n", p)
		if addr, ok := n.dialPeer[p]; ok {
			fmt.Fprintf(&b, "    address: %q\n", addr)
		}
		fmt.Fprintf(&b, "    pad_capacity: 16MiB\n    source:\n      simulator:\n")
		fmt.Fprintf(&b, "        seed: %q   # the same at both ends\n", n.seeds[p])
		fmt.Fprintf(&b, "        rate: %v\n        block_size: %s\n", n.rate, block)
	}
	b.WriteString("pools:\n  slots: 65536\n")
	b.WriteString("api:\n")
	fmt.Fprintf(&b, "  admin:\n    listen: %q\n", n.admin)
	if n.etsi != "" {
		fmt.Fprintf(&b, "  etsi014:\n    listen: %q\n    key_size: %d\n    max_keys_per_request: %d\n",
			n.etsi, demoKeyBits, max(n.keysPerRequest, config.DefaultMaxKeysPerRequest))
	}
	if len(n.saes) > 0 {
		b.WriteString("saes:\n")
		for _, s := range n.saes {
			fmt.Fprintf(&b, "  - id: %s\n", s.ID)
			if s.Node != "" {
				fmt.Fprintf(&b, "    node: %s\n", s.Node)
			}
		}
	}
	return []byte(b.String())
}

// portPicker picks free loopback ports and holds them until close.
type portPicker struct{ held []io.Closer }

func (p *portPicker) pick(network string) (string, error) {
	if network == "udp" {
		c, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			return "", err
		}
		p.held = append(p.held, c)
		return c.LocalAddr().String(), nil
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	p.held = append(p.held, l)
	return l.Addr().String(), nil
}

func (p *portPicker) close() {
	for _, c := range p.held {
		c.Close()
	}
	p.held = nil
}

// demoNet is the running nodes.
type demoNet struct {
	lab   *demoLab
	order []string
	procs map[string]*demoProc
}

// demoProc is one node's process.
type demoProc struct {
	node      *labNode
	cmd       *exec.Cmd
	done      chan struct{} // closed when it has exited; then err is set
	err       error
	stopped   bool // stopAll reported it
	tailShown bool // its log's end was printed already
}

// start runs node n as `exe daemon -config <file>`, its output to its log.
func (d *demoNet) start(exe string, n *labNode) error {
	if d.procs == nil {
		d.procs = map[string]*demoProc{}
	}
	log, err := os.OpenFile(n.logPath, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	cmd := exec.Command(exe, "daemon", "-config", n.cfgPath)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		log.Close()
		return fmt.Errorf("starting node %s (%s daemon -config %s): %w", n.id, exe, n.cfgPath, err)
	}
	p := &demoProc{node: n, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		log.Close()
		close(p.done)
	}()
	d.procs[n.id] = p
	d.order = append(d.order, n.id)
	return nil
}

// exited returns a node that has exited, or nil.
func (d *demoNet) exited() *demoProc {
	for _, id := range d.order {
		p := d.procs[id]
		select {
		case <-p.done:
			return p
		default:
		}
	}
	return nil
}

// stopAll sends SIGTERM to every node still running, waits for each (a
// SIGKILL after demoStopTimeout), reports how each exited and returns
// that ("a: exit status 0"), with an error naming the nodes that did not
// exit with status 0. A second call does nothing.
func (d *demoNet) stopAll(out io.Writer) ([]string, error) {
	for _, id := range d.order {
		if p := d.procs[id]; !p.stopped {
			p.cmd.Process.Signal(syscall.SIGTERM)
		}
	}
	deadline := time.NewTimer(demoStopTimeout)
	defer deadline.Stop()
	var bad, exits []string
	for _, id := range d.order {
		p := d.procs[id]
		if p.stopped {
			continue
		}
		p.stopped = true
		select {
		case <-p.done:
		case <-deadline.C:
			fmt.Fprintf(out, "node %s: still running %v after SIGTERM: killing it\n", id, demoStopTimeout)
			p.cmd.Process.Kill()
			<-p.done
		}
		fmt.Fprintf(out, "node %s: %s\n", id, exitStatus(p.err))
		exits = append(exits, id+": "+exitStatus(p.err))
		if p.err != nil {
			bad = append(bad, id)
			if !p.tailShown {
				fmt.Fprintf(out, "  the end of its log (%s):\n%s", p.node.logPath, indent(tail(p.node.logPath, 10)))
			}
		}
	}
	if len(bad) > 0 {
		return exits, fmt.Errorf("node %s failed", strings.Join(bad, ", "))
	}
	return exits, nil
}

// exitStatus says how a process ended, "exit status 0" for a clean exit.
func exitStatus(err error) string {
	if err == nil {
		return "exit status 0"
	}
	return err.Error()
}

// tail is the last n lines of the file at path (of its last 64 KiB).
func tail(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return err.Error() + "\n"
	}
	defer f.Close()
	const maxTail = 64 << 10
	if st, err := f.Stat(); err == nil && st.Size() > maxTail {
		f.Seek(st.Size()-maxTail, io.SeekStart)
	}
	b, err := io.ReadAll(f)
	if err != nil {
		return err.Error() + "\n"
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	if len(lines) == 1 && lines[0] == "" {
		return "(empty)\n"
	}
	return strings.Join(lines, "\n") + "\n"
}

// indent prefixes each line of s with two spaces.
func indent(s string) string {
	lines := strings.SplitAfter(s, "\n")
	var b strings.Builder
	for _, l := range lines {
		if l != "" {
			b.WriteString("  " + l)
		}
	}
	return b.String()
}

// waitRoutes waits until the master's node has a route to the slave's
// and back, saying what it waits for.
func (d *demoNet) waitRoutes(ctx context.Context, out io.Writer) error {
	a, c := d.lab.node(demoMasterNode), d.lab.node(demoSlaveNode)
	fmt.Fprintf(out, "waiting for the KM links to come up and for routes %s→%s and %s→%s ...\n", a.id, c.id, c.id, a.id)
	start := time.Now()
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	lastSaid := start
	for {
		if p := d.exited(); p != nil {
			return fmt.Errorf("node %s exited before the network was up (%s); the end of its log (%s):\n%s",
				p.node.id, exitStatus(p.err), p.node.logPath, indent(tail(p.node.logPath, 20)))
		}
		pa, wa := routeTo(ctx, a, c.id)
		pc, wc := routeTo(ctx, c, a.id)
		if pa != nil && pc != nil {
			fmt.Fprintf(out, "routes up after %v: %s and %s\n", duration(time.Since(start)), strings.Join(pa, "→"), strings.Join(pc, "→"))
			return nil
		}
		if time.Since(start) > demoRoutesTimeout {
			return fmt.Errorf("no routes after %v: %s; the node logs are in %s", demoRoutesTimeout, strings.Join(nonEmpty(wa, wc), "; "), d.lab.dir)
		}
		if time.Since(lastSaid) >= 5*time.Second {
			lastSaid = time.Now()
			fmt.Fprintf(out, "  still waiting (%v): %s\n", duration(time.Since(start)), strings.Join(nonEmpty(wa, wc), "; "))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// routeTo returns n's path to dst, or nil and what is missing.
func routeTo(ctx context.Context, n *labNode, dst string) ([]string, string) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	routes, err := n.api.Routes(ctx)
	if err != nil {
		return nil, fmt.Sprintf("node %s's admin API: %v", n.id, err)
	}
	for _, r := range routes {
		if r.Dst == dst && len(r.Path) > 0 {
			return r.Path, ""
		}
	}
	links, err := n.api.Links(ctx)
	if err != nil {
		return nil, fmt.Sprintf("node %s has no route to %s", n.id, dst)
	}
	var ls []string
	for _, l := range links {
		s := fmt.Sprintf("%s–%s %s", n.id, l.Peer, upDown(l.Up))
		if l.Up && !l.Usable && l.Excluded != "" {
			s += " (" + l.Excluded + ")"
		}
		ls = append(ls, s)
	}
	return nil, fmt.Sprintf("node %s has no route to %s (links %s)", n.id, dst, strings.Join(ls, ", "))
}

func nonEmpty(ss ...string) []string {
	return slices.DeleteFunc(ss, func(s string) bool { return s == "" })
}

func upDown(up bool) string {
	if up {
		return "up"
	}
	return "down"
}

// saeStats counts what the SAE pair got. It is safe for concurrent use.
type saeStats struct {
	mu sync.Mutex
	c  saeCounts
}

// saeCounts is a copy of the counters.
type saeCounts struct {
	delivered  uint64 // keys both SAEs got, with the same bytes
	mismatches uint64 // keys whose bytes differed
	waits      uint64 // 503 answers: not enough keys yet
	errors     uint64 // other failed requests
	lastErr    string
}

func (s *saeStats) counts() saeCounts {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.c
}

func (s *saeStats) add(f func(*saeCounts)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f(&s.c)
}

// isWait reports whether err is a 503: the node has not enough keys yet,
// as is normal while the pools fill.
func isWait(err error) bool {
	var se *etsi014client.StatusError
	return errors.As(err, &se) && se.Code == http.StatusServiceUnavailable
}

// record counts a failed request: a wait (503) or an error.
func (s *saeStats) record(err error) {
	s.add(func(c *saeCounts) {
		if isWait(err) {
			c.waits++
			return
		}
		c.errors++
		c.lastErr = err.Error()
	})
}

// Backoffs of the SAE pair after a 503 and after another error.
const (
	saeWaitBackoff  = 100 * time.Millisecond
	saeErrorBackoff = 500 * time.Millisecond
)

// runSAEPair runs the application pair until ctx ends: the master SAE
// asks its node for new keys, the slave SAE asks its node for the same
// keys by ID, and the bytes are compared. Key bytes are zeroised after
// the comparison and never printed.
func runSAEPair(ctx context.Context, lab *demoLab, perRequest int, stats *saeStats) {
	a, c := lab.node(demoMasterNode), lab.node(demoSlaveNode)
	quiet := slog.New(slog.DiscardHandler)
	master := connectSAE(ctx, stats, etsi014client.Config{
		BaseURL: a.etsiURL, SlaveSAE: demoSlaveSAE, MasterSAE: demoMasterSAE, Master: true,
		Certificate: lab.saes[demoMasterSAE], Roots: lab.roots, KeySize: demoKeyBits, PerRequest: perRequest,
		Timeout: 5 * time.Second, Logger: quiet,
	})
	if master == nil {
		return
	}
	defer master.Close()
	slave := connectSAE(ctx, stats, etsi014client.Config{
		BaseURL: c.etsiURL, SlaveSAE: demoSlaveSAE, MasterSAE: demoMasterSAE, Master: false,
		Certificate: lab.saes[demoSlaveSAE], Roots: lab.roots, KeySize: demoKeyBits, PerRequest: perRequest,
		Timeout: 5 * time.Second, Logger: quiet,
	})
	if slave == nil {
		return
	}
	defer slave.Close()
	for ctx.Err() == nil {
		keys, err := master.Fetch(ctx, perRequest*demoKeyBits/8)
		if err != nil {
			if ctx.Err() == nil {
				stats.record(err)
				sleep(ctx, backoff(err))
			}
			continue
		}
		ids := make([]string, len(keys))
		for i, k := range keys {
			ids[i] = k.ID
		}
		got, err := getKeys(ctx, slave, ids, stats)
		if err != nil {
			for _, k := range keys {
				clear(k.Data)
			}
			if ctx.Err() == nil {
				stats.record(err)
				sleep(ctx, backoff(err))
			}
			continue
		}
		var same, differ uint64
		for i, k := range keys {
			if subtle.ConstantTimeCompare(k.Data, got[i].Data) == 1 {
				same++
			} else {
				differ++
			}
			clear(k.Data)
			clear(got[i].Data)
		}
		stats.add(func(c *saeCounts) { c.delivered += same; c.mismatches += differ })
	}
}

// getKeys is the slave's dec_keys, retried a few times on 503.
func getKeys(ctx context.Context, slave *etsi014client.Client, ids []string, stats *saeStats) ([]ringstore.Block, error) {
	for try := 0; ; try++ {
		got, err := slave.Get(ctx, ids)
		if err == nil || !isWait(err) || try == 4 {
			return got, err
		}
		stats.record(err)
		sleep(ctx, saeWaitBackoff)
	}
}

// connectSAE makes an ETSI 014 client, retrying until the node answers
// or ctx ends (nil then).
func connectSAE(ctx context.Context, stats *saeStats, cfg etsi014client.Config) *etsi014client.Client {
	for {
		c, err := etsi014client.New(ctx, cfg)
		if err == nil {
			return c
		}
		if ctx.Err() != nil {
			return nil
		}
		stats.record(fmt.Errorf("connecting to %s: %w", cfg.BaseURL, err))
		sleep(ctx, backoff(err))
	}
}

func backoff(err error) time.Duration {
	if isWait(err) {
		return saeWaitBackoff
	}
	return saeErrorBackoff
}

// sleep waits for d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// demoSnapshot is what the nodes and the SAE pair said at one time.
type demoSnapshot struct {
	at      time.Time
	elapsed time.Duration // since the SAE pair started
	nodes   []nodeView    // in demoNodes order
	sae     saeCounts
}

// nodeView is one node as its admin API showed it.
type nodeView struct {
	id     string
	err    error // the admin API failed: the fields below are zero
	status adminapi.Status
	links  []adminapi.Link
	pools  []adminapi.Pool
}

// snapshot asks every node's admin API, at once, for its status, links and
// pools.
func (d *demoNet) snapshot(ctx context.Context, stats *saeStats, start time.Time) demoSnapshot {
	ctx, cancel := context.WithTimeout(ctx, demoTick*9/10)
	defer cancel()
	s := demoSnapshot{nodes: make([]nodeView, len(d.lab.nodes))}
	var wg sync.WaitGroup
	for i, n := range d.lab.nodes {
		wg.Go(func() {
			v := nodeView{id: n.id}
			var e1, e2, e3 error
			v.status, e1 = n.api.Status(ctx)
			v.links, e2 = n.api.Links(ctx)
			v.pools, e3 = n.api.Pools(ctx)
			if v.err = errors.Join(e1, e2, e3); v.err != nil {
				v = nodeView{id: n.id, err: v.err}
			}
			s.nodes[i] = v
		})
	}
	wg.Wait()
	s.at = time.Now()
	s.elapsed = s.at.Sub(start)
	s.sae = stats.counts()
	return s
}

func (s demoSnapshot) node(id string) *nodeView {
	for i := range s.nodes {
		if s.nodes[i].id == id {
			return &s.nodes[i]
		}
	}
	return nil
}

// relayed is the key bytes sent or forwarded, summed over the nodes that
// answered in both s and prev; ok is false if none did.
func relayed(prev, s demoSnapshot) (delta uint64, ok bool) {
	for _, v := range s.nodes {
		p := prev.node(v.id)
		if v.err != nil || p == nil || p.err != nil || v.status.Relay.KeyBytesRelayed < p.status.Relay.KeyBytesRelayed {
			continue
		}
		delta += v.status.Relay.KeyBytesRelayed - p.status.Relay.KeyBytesRelayed
		ok = true
	}
	return delta, ok
}

// writeSummary prints the one-second summary: the links, the relay
// throughput, the pools of the SAE pair's nodes and the keys the pair got.
func writeSummary(w io.Writer, prev, cur demoSnapshot) {
	var b strings.Builder
	fmt.Fprintf(&b, "── %s ── QKD links SIMULATED (no quantum security) ──\n", duration(cur.elapsed))
	for _, e := range demoEdges {
		fmt.Fprintf(&b, "link %s–%s   %s\n", e[0], e[1], linkLine(cur, e[0], e[1]))
	}
	dt := cur.at.Sub(prev.at).Seconds()
	if d, ok := relayed(prev, cur); ok && dt > 0 {
		fmt.Fprintf(&b, "relay      %s  (key bytes sent or forwarded, summed over nodes %s)\n", gbit(float64(d)*8/dt), strings.Join(demoNodes, ", "))
	} else {
		b.WriteString("relay      ?  (no admin API answered)\n")
	}
	fmt.Fprintf(&b, "pool %s↔%s   %s\n", demoMasterNode, demoSlaveNode, poolLine(cur))
	rate := 0.0
	if dt > 0 {
		rate = float64(cur.sae.delivered-min(prev.sae.delivered, cur.sae.delivered)) / dt
	}
	fmt.Fprintf(&b, "SAE pair   %s@%s ⇄ %s@%s: %d keys delivered (%.0f keys/s), %d mismatched, %d waits, %d errors\n",
		demoMasterSAE, demoMasterNode, demoSlaveSAE, demoSlaveNode, cur.sae.delivered, rate, cur.sae.mismatches, cur.sae.waits, cur.sae.errors)
	if cur.sae.errors > prev.sae.errors && cur.sae.lastErr != "" {
		fmt.Fprintf(&b, "  last error: %s\n", truncateLine(cur.sae.lastErr, 240))
	}
	for _, v := range cur.nodes {
		if v.err != nil {
			fmt.Fprintf(&b, "  node %s's admin API: %s\n", v.id, truncateLine(v.err.Error(), 200))
		}
	}
	io.WriteString(w, b.String())
}

// linkLine is a link as both its ends see it: up or down, and the pad
// stock each end holds to send (tx) and to receive (rx).
func linkLine(s demoSnapshot, x, y string) string {
	var ups []bool
	var ends []string
	for _, pair := range [][2]string{{x, y}, {y, x}} {
		v := s.node(pair[0])
		if v == nil || v.err != nil {
			ends = append(ends, pair[0]+": ?")
			continue
		}
		i := slices.IndexFunc(v.links, func(l adminapi.Link) bool { return l.Peer == pair[1] })
		if i < 0 {
			ends = append(ends, pair[0]+": no such link")
			continue
		}
		l := v.links[i]
		ups = append(ups, l.Up)
		ends = append(ends, fmt.Sprintf("%s: pad tx %s rx %s", pair[0], bytesIEC(l.Tx.Stock), bytesIEC(l.Rx.Stock)))
	}
	state := "?"
	switch {
	case len(ups) == 0:
	case !slices.Contains(ups, false):
		state = "up"
	case !slices.Contains(ups, true):
		state = "down"
	default:
		state = "half up"
	}
	return fmt.Sprintf("%-5s  %s", state, strings.Join(ends, "   "))
}

// poolLine is the stock of the pools the SAE pair's nodes hold for each
// other.
func poolLine(s demoSnapshot) string {
	var parts []string
	for _, pair := range [][2]string{{demoMasterNode, demoSlaveNode}, {demoSlaveNode, demoMasterNode}} {
		v := s.node(pair[0])
		if v == nil || v.err != nil {
			parts = append(parts, pair[0]+": ?")
			continue
		}
		i := slices.IndexFunc(v.pools, func(p adminapi.Pool) bool { return p.Remote == pair[1] })
		if i < 0 {
			parts = append(parts, fmt.Sprintf("%s: no pool for %s yet", pair[0], pair[1]))
			continue
		}
		p := v.pools[i]
		parts = append(parts, fmt.Sprintf("%s holds %d of %d keys for %s", pair[0], p.Stock, p.Capacity, pair[1]))
	}
	return strings.Join(parts, ", ")
}

// writeFinal prints the summary of the whole run.
func writeFinal(w io.Writer, first, last demoSnapshot, elapsed time.Duration, exits []string) {
	var b strings.Builder
	fmt.Fprintf(&b, "\n== qrelay demo summary (QKD links SIMULATED) ==\n")
	rate := 0.0
	if s := elapsed.Seconds(); s > 0 {
		rate = float64(last.sae.delivered) / s
	}
	fmt.Fprintf(&b, "SAE pair: %d keys delivered in %v (%.0f keys/s), %d mismatched, %d waits, %d errors\n",
		last.sae.delivered, duration(elapsed), rate, last.sae.mismatches, last.sae.waits, last.sae.errors)
	if last.sae.lastErr != "" {
		fmt.Fprintf(&b, "  last error: %s\n", truncateLine(last.sae.lastErr, 400))
	}
	if d, ok := relayed(first, last); ok {
		dt := last.at.Sub(first.at).Seconds()
		g := 0.0
		if dt > 0 {
			g = float64(d) * 8 / dt
		}
		fmt.Fprintf(&b, "relay: %s of key sent or forwarded by the nodes, %s on average\n", bytesIEC(d), gbit(g))
	}
	fmt.Fprintf(&b, "nodes: %s\n", strings.Join(exits, ", "))
	io.WriteString(w, b.String())
}

// gbit is a rate in Gbit/s, with the rate in a smaller unit beside it
// when it is below 0.1 Gbit/s.
func gbit(bitS float64) string {
	s := fmt.Sprintf("%.3f Gbit/s", bitS/1e9)
	if bitS < 1e8 {
		s += " (" + bitRate(bitS) + ")"
	}
	return s
}

// truncateLine is s on one line, at most n bytes.
func truncateLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}
