package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/qrelay/qrelay/config"
	"github.com/qrelay/qrelay/internal/daemon"
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
		fmt.Fprintf(out, "started node %s: pid %d, admin API https://%s%s, log %s\n", n.id, nodes.procs[n.id].proc.Pid(), n.admin, etsi, n.logPath)
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
		fmt.Fprintf(out, "\nnode %s exited early (%s); the end of its log (%s):\n%s", failed.node.id, exitStatus(failed.proc.Err()), failed.node.logPath, indent(tail(failed.node.logPath, 20)))
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
