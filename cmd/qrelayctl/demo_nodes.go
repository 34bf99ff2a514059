package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/qrelay/qrelay/internal/lab"
)

// demoNet is the running nodes.
type demoNet struct {
	lab   *demoLab
	order []string
	procs map[string]*demoProc
}

// demoProc is one node's process.
type demoProc struct {
	node      *labNode
	proc      *lab.Proc
	stopped   bool // stopAll reported it
	tailShown bool // its log's end was printed already
}

// start runs node n as `exe daemon -config <file>`, its output to its log.
func (d *demoNet) start(exe string, n *labNode) error {
	if d.procs == nil {
		d.procs = map[string]*demoProc{}
	}
	p := &demoProc{node: n, proc: &lab.Proc{Name: "node " + n.id, Path: exe, Args: []string{"daemon", "-config", n.cfgPath}, LogPath: n.logPath}}
	if err := p.proc.Start(); err != nil {
		return err
	}
	d.procs[n.id] = p
	d.order = append(d.order, n.id)
	return nil
}

// exited returns a node that has exited, or nil.
func (d *demoNet) exited() *demoProc {
	for _, id := range d.order {
		p := d.procs[id]
		if p.proc.Exited() {
			return p
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
			p.proc.Signal(syscall.SIGTERM)
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
		case <-p.proc.Done():
		case <-deadline.C:
			fmt.Fprintf(out, "node %s: still running %v after SIGTERM: killing it\n", id, demoStopTimeout)
			p.proc.Kill()
		}
		status := exitStatus(p.proc.Err())
		fmt.Fprintf(out, "node %s: %s\n", id, status)
		exits = append(exits, id+": "+status)
		if p.proc.Err() != nil {
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
				p.node.id, exitStatus(p.proc.Err()), p.node.logPath, indent(tail(p.node.logPath, 20)))
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
