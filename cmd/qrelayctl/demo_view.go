package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/qrelay/qrelay/node/adminapi"
)

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
