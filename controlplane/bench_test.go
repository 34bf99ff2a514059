package controlplane

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// liveNet runs routers concurrently on the real clock: each node has an
// unbounded inbox drained by its own goroutine, so Send never blocks and
// deliveries to different nodes overlap, as over real KM links.
type liveNet struct {
	tb    testing.TB
	ids   []string
	nodes map[string]*Router
	boxes map[string]*inbox

	upMu sync.RWMutex
	up   map[[2]string]bool

	sent     atomic.Int64 // messages accepted by Send
	inflight sync.WaitGroup
	changed  chan struct{} // an SPF run changed some table
	dirtyMu  sync.Mutex
	dirty    map[string]bool // nodes whose table changed since last checked
	errs     chan error
	wg       sync.WaitGroup
}

type inbox struct {
	mu     sync.Mutex
	cond   sync.Cond
	q      []delivery
	closed bool
}

// newLiveNet starts routers ids with spfDelay and no refreshes during the
// run (Refresh 1h), so that message counts are the flooding's alone.
func newLiveNet(tb testing.TB, ids []string, spfDelay time.Duration) *liveNet {
	n := &liveNet{
		tb: tb, ids: ids, nodes: map[string]*Router{}, boxes: map[string]*inbox{},
		up: map[[2]string]bool{}, changed: make(chan struct{}, 1), errs: make(chan error, 1),
		dirty: map[string]bool{},
	}
	for _, id := range ids {
		box := &inbox{}
		box.cond.L = &box.mu
		n.boxes[id] = box
		r, err := New(Config{
			NodeID:   id,
			Send:     n.sender(id),
			Refresh:  time.Hour,
			SPFDelay: spfDelay,
			Logger:   quietLogger(),
			OnChange: func() {
				n.dirtyMu.Lock()
				n.dirty[id] = true
				n.dirtyMu.Unlock()
				select {
				case n.changed <- struct{}{}:
				default:
				}
			},
		})
		if err != nil {
			tb.Fatal(err)
		}
		n.nodes[id] = r
	}
	for _, id := range ids {
		n.wg.Add(1)
		go n.deliver(id)
	}
	tb.Cleanup(n.close)
	return n
}

func (n *liveNet) sender(from string) func(string, []byte) error {
	return func(peer string, msg []byte) error {
		n.upMu.RLock()
		up := n.up[pair(from, peer)]
		n.upMu.RUnlock()
		if !up {
			return fmt.Errorf("livenet: link %s-%s down", from, peer)
		}
		box := n.boxes[peer]
		n.sent.Add(1)
		n.inflight.Add(1)
		box.mu.Lock()
		box.q = append(box.q, delivery{from: from, to: peer, msg: slices.Clone(msg)})
		box.mu.Unlock()
		box.cond.Signal()
		return nil
	}
}

func (n *liveNet) deliver(id string) {
	defer n.wg.Done()
	box, r := n.boxes[id], n.nodes[id]
	for {
		box.mu.Lock()
		for len(box.q) == 0 && !box.closed {
			box.cond.Wait()
		}
		if box.closed {
			box.mu.Unlock()
			return
		}
		d := box.q[0]
		box.q = box.q[1:]
		box.mu.Unlock()
		if err := r.Receive(d.from, d.msg); err != nil {
			select {
			case n.errs <- err:
			default:
			}
		}
		n.inflight.Done()
	}
}

func (n *liveNet) close() {
	for _, id := range n.ids {
		n.nodes[id].Close()
	}
	for _, box := range n.boxes {
		box.mu.Lock()
		box.closed = true
		// Messages never delivered still count as in flight.
		for range box.q {
			n.inflight.Done()
		}
		box.q = nil
		box.mu.Unlock()
		box.cond.Broadcast()
	}
	n.wg.Wait()
}

// setLink brings the KM link a-b up or down at both ends.
func (n *liveNet) setLink(a, b string, up bool) {
	n.upMu.Lock()
	n.up[pair(a, b)] = up
	n.upMu.Unlock()
	la, lb := healthy(b), healthy(a)
	la.Up, lb.Up = up, up
	n.nodes[a].UpdateLink(la)
	n.nodes[b].UpdateLink(lb)
}

// expected returns every node's correct next hops over edges, all of cost
// BaseCost: from each node, the lowest-ID neighbour on a shortest path
// (the tie-break rule), found by BFS independently of the router.
func expected(ids []string, edges [][2]string) map[string]map[string]string {
	adj := map[string][]string{}
	for _, e := range edges {
		adj[e[0]] = append(adj[e[0]], e[1])
		adj[e[1]] = append(adj[e[1]], e[0])
	}
	dist := map[string]map[string]int{}
	for _, s := range ids {
		d := map[string]int{s: 0}
		q := []string{s}
		for len(q) > 0 {
			u := q[0]
			q = q[1:]
			for _, v := range adj[u] {
				if _, ok := d[v]; !ok {
					d[v] = d[u] + 1
					q = append(q, v)
				}
			}
		}
		dist[s] = d
	}
	want := map[string]map[string]string{}
	for _, a := range ids {
		want[a] = map[string]string{}
		nbrs := slices.Sorted(slices.Values(adj[a]))
		for _, b := range ids {
			db, ok := dist[a][b]
			if a == b || !ok {
				continue
			}
			for _, nb := range nbrs {
				if dist[nb][b] == db-1 {
					want[a][b] = nb
					break
				}
			}
		}
	}
	return want
}

// nodeConverged reports whether a's NextHop matches want[a] exactly.
func (n *liveNet) nodeConverged(a string, want map[string]map[string]string) bool {
	r := n.nodes[a]
	for _, b := range n.ids {
		got, ok := r.NextHop(b)
		if w, exp := want[a][b]; ok != exp || got != w {
			return false
		}
	}
	return true
}

// waitConverged waits until every table matches want. It checks every node
// once, then, woken by OnChange, only the nodes whose table changed, so the
// checking costs little CPU next to the routers'.
func (n *liveNet) waitConverged(want map[string]map[string]string) {
	n.tb.Helper()
	timeout := time.NewTimer(20 * time.Second)
	defer timeout.Stop()
	n.dirtyMu.Lock()
	clear(n.dirty)
	n.dirtyMu.Unlock()
	bad := map[string]bool{}
	for _, a := range n.ids {
		if !n.nodeConverged(a, want) {
			bad[a] = true
		}
	}
	for len(bad) > 0 {
		n.dirtyMu.Lock()
		dirty := n.dirty
		n.dirty = map[string]bool{}
		n.dirtyMu.Unlock()
		for a := range dirty {
			if n.nodeConverged(a, want) {
				delete(bad, a)
			} else {
				bad[a] = true
			}
		}
		if len(bad) == 0 {
			break
		}
		select {
		case <-n.changed:
		case err := <-n.errs:
			n.tb.Fatalf("Receive: %v", err)
		case <-timeout.C:
			n.tb.Fatal("no convergence within 20s")
		}
	}
}

// gridWithChords returns a 10×10 grid (180 links) plus 20 random chords
// from a fixed seed: 100 nodes of average degree 4, diameter about 10.
func gridWithChords() (ids []string, edges [][2]string) {
	const side = 10
	id := func(r, c int) string { return fmt.Sprintf("n%d%d", r, c) }
	for r := range side {
		for c := range side {
			ids = append(ids, id(r, c))
			if c+1 < side {
				edges = append(edges, [2]string{id(r, c), id(r, c+1)})
			}
			if r+1 < side {
				edges = append(edges, [2]string{id(r, c), id(r+1, c)})
			}
		}
	}
	rng := rand.New(rand.NewPCG(1, 2))
	seen := map[[2]string]bool{}
	for _, e := range edges {
		seen[pair(e[0], e[1])] = true
	}
	for len(edges) < 200 {
		a, b := ids[rng.IntN(len(ids))], ids[rng.IntN(len(ids))]
		if a != b && !seen[pair(a, b)] {
			seen[pair(a, b)] = true
			edges = append(edges, [2]string{a, b})
		}
	}
	return ids, edges
}

// BenchmarkConverge100 runs 100 real Routers in one process over liveNet
// (a 10×10 grid with 20 chords) and measures convergence after one link
// fails and, separately, after it is restored: the time from the link
// event at both ends until every node's next hop to every destination is
// the one an independent BFS over the true topology gives, and the
// messages sent network-wide per link change (counted until the network
// is quiet). SPFDelay is 1ms here, not the default 10ms, so the figure is
// dominated by flooding and SPF rather than the hold-down; restores are
// spaced MinOriginInterval after their failure, so that they are not
// rate-limited (a link flapping faster than that would add up to 100ms).
//
// Metrics: ms/converge (mean of fail and restore), ms/fail, ms/restore,
// msgs/change (mean of fail and restore), ms/cold (every link coming up at
// once, measured once).
func BenchmarkConverge100(b *testing.B) {
	ids, edges := gridWithChords()
	n := newLiveNet(b, ids, time.Millisecond)
	full := expected(ids, edges)

	start := time.Now()
	for _, e := range edges {
		n.setLink(e[0], e[1], true)
	}
	n.waitConverged(full)
	cold := time.Since(start)
	n.inflight.Wait()

	spfRuns := func() (n_ uint64) {
		for _, r := range n.nodes {
			n_ += r.Stats().SPFRuns
		}
		return n_
	}
	spf0 := spfRuns()
	without := map[int]map[string]map[string]string{}
	var failT, restoreT time.Duration
	var msgs int64
	i := 0
	for b.Loop() {
		k := (i * 37) % len(edges) // a spread of grid links and chords
		i++
		e := edges[k]
		want := without[k]
		if want == nil {
			want = expected(ids, slices.Delete(slices.Clone(edges), k, k+1))
			without[k] = want
		}

		sent := n.sent.Load()
		t0 := time.Now()
		n.setLink(e[0], e[1], false)
		n.waitConverged(want)
		failT += time.Since(t0)
		n.inflight.Wait()
		msgs += n.sent.Load() - sent

		// Let the rate limit of the failure's origination lapse.
		time.Sleep(time.Until(t0.Add(DefaultMinOriginInterval)))

		sent = n.sent.Load()
		t0 = time.Now()
		n.setLink(e[0], e[1], true)
		n.waitConverged(full)
		restoreT += time.Since(t0)
		n.inflight.Wait()
		msgs += n.sent.Load() - sent
	}
	ms := func(d time.Duration) float64 { return float64(d) / float64(i) / 1e6 }
	b.ReportMetric(ms(failT+restoreT)/2, "ms/converge")
	b.ReportMetric(ms(failT), "ms/fail")
	b.ReportMetric(ms(restoreT), "ms/restore")
	b.ReportMetric(float64(msgs)/float64(2*i), "msgs/change")
	b.ReportMetric(float64(cold)/1e6, "ms/cold")
	b.ReportMetric(float64(spfRuns()-spf0)/float64(2*i), "spf/change")
}

// TestLiveConverge runs the benchmark's network under -race: concurrent
// delivery, real timers, every table checked against BFS.
func TestLiveConverge(t *testing.T) {
	ids, edges := gridWithChords()
	if testing.Short() {
		ids, edges = ids[:30], slices.DeleteFunc(slices.Clone(edges), func(e [2]string) bool { return e[0] >= "n3" || e[1] >= "n3" })
	}
	n := newLiveNet(t, ids, time.Millisecond)
	full := expected(ids, edges)
	for _, e := range edges {
		n.setLink(e[0], e[1], true)
	}
	n.waitConverged(full)
	for _, k := range []int{0, 7, len(edges) - 1} {
		e := edges[k]
		n.setLink(e[0], e[1], false)
		n.waitConverged(expected(ids, slices.Delete(slices.Clone(edges), k, k+1)))
		n.setLink(e[0], e[1], true)
		n.waitConverged(full)
	}
}

func BenchmarkNextHop(b *testing.B) {
	n := newMemnet(b)
	ids := make([]string, 100)
	for i := range ids {
		ids[i] = fmt.Sprintf("n%02d", i)
		n.add(ids[i], nil)
	}
	for i, a := range ids { // bring all links up, then settle once
		b := ids[(i+1)%len(ids)]
		n.up[pair(a, b)] = true
		n.nodes[a].UpdateLink(healthy(b))
		n.nodes[b].UpdateLink(healthy(a))
	}
	n.settle()
	r := n.nodes["n00"]
	if _, ok := r.NextHop("n50"); !ok {
		b.Fatal("no route to n50")
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			if _, ok := r.NextHop(ids[1+i%99]); !ok {
				b.Fatal("no route")
			}
			i++
		}
	})
}

// BenchmarkSPF100 is one SPF run over the converged LSDB of
// BenchmarkConverge100's topology.
func BenchmarkSPF100(b *testing.B) {
	ids, edges := gridWithChords()
	n := newMemnet(b)
	for _, id := range ids {
		n.add(id, nil)
	}
	for _, e := range edges {
		n.up[pair(e[0], e[1])] = true
		n.nodes[e[0]].UpdateLink(healthy(e[1]))
		n.nodes[e[1]].UpdateLink(healthy(e[0]))
	}
	n.settle()
	r := n.nodes["n55"]
	lsdb := map[string]*advert{}
	for o, e := range r.lsdb {
		lsdb[o] = e.adv
	}
	if len(lsdb) != 100 {
		b.Fatalf("%d adverts", len(lsdb))
	}
	b.ReportAllocs()
	for b.Loop() {
		computeTable("n55", lsdb, nil, nil)
	}
}
