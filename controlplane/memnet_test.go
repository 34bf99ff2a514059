package controlplane

import (
	"container/heap"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"
)

// fakeClock is a manual clock. Timers fire only in Advance/fireNext, in
// time order, on the caller's goroutine and without the clock's lock.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers fakeTimers
	seq    int
}

type fakeTimer struct {
	at      time.Time
	seq     int // FIFO among timers due at the same time
	f       func()
	stopped bool
	index   int
}

type fakeTimers []*fakeTimer

func (h fakeTimers) Len() int { return len(h) }
func (h fakeTimers) Less(i, j int) bool {
	return h[i].at.Before(h[j].at) || h[i].at.Equal(h[j].at) && h[i].seq < h[j].seq
}
func (h fakeTimers) Swap(i, j int) { h[i], h[j] = h[j], h[i]; h[i].index = i; h[j].index = j }
func (h *fakeTimers) Push(x any)   { t := x.(*fakeTimer); t.index = len(*h); *h = append(*h, t) }
func (h *fakeTimers) Pop() any {
	old := *h
	t := old[len(old)-1]
	*h = old[:len(old)-1]
	t.index = -1
	return t
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) AfterFunc(d time.Duration, f func()) func() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.seq++
	t := &fakeTimer{at: c.now.Add(d), seq: c.seq, f: f}
	heap.Push(&c.timers, t)
	return func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		if t.stopped || t.index < 0 {
			return false
		}
		t.stopped = true
		heap.Remove(&c.timers, t.index)
		return true
	}
}

// fireNext moves the clock to the next timer, if due by limit, and fires it.
func (c *fakeClock) fireNext(limit time.Time) bool {
	c.mu.Lock()
	if len(c.timers) == 0 || c.timers[0].at.After(limit) {
		c.mu.Unlock()
		return false
	}
	t := heap.Pop(&c.timers).(*fakeTimer)
	if t.at.After(c.now) {
		c.now = t.at
	}
	c.mu.Unlock()
	t.f()
	return true
}

// memnet is an in-memory network of routers over a fake clock. Send queues
// a copy of the message; run delivers the queue in FIFO order, on the
// test's goroutine, so every run is deterministic.
type memnet struct {
	t     testing.TB
	clock *fakeClock
	nodes map[string]*Router
	up    map[[2]string]bool // KM link up, keyed by sorted pair
	queue []delivery
	sent  int // messages accepted by Send
	errs  []error
}

type delivery struct {
	from, to string
	msg      []byte
}

func newMemnet(t testing.TB) *memnet {
	return &memnet{t: t, clock: newFakeClock(), nodes: map[string]*Router{}, up: map[[2]string]bool{}}
}

func pair(a, b string) [2]string {
	if a > b {
		a, b = b, a
	}
	return [2]string{a, b}
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// config returns the Config memnet gives node id.
func (n *memnet) config(id string) Config {
	return Config{
		NodeID: id,
		Send: func(peer string, msg []byte) error {
			if !n.up[pair(id, peer)] {
				return fmt.Errorf("memnet: link %s-%s down", id, peer)
			}
			n.sent++
			n.queue = append(n.queue, delivery{from: id, to: peer, msg: slices.Clone(msg)})
			return nil
		},
		Logger:    quietLogger(),
		Now:       n.clock.Now,
		AfterFunc: n.clock.AfterFunc,
	}
}

// add starts node id; mod may adjust its config.
func (n *memnet) add(id string, mod func(*Config)) *Router {
	n.t.Helper()
	cfg := n.config(id)
	if mod != nil {
		mod(&cfg)
	}
	r, err := New(cfg)
	if err != nil {
		n.t.Fatal(err)
	}
	n.nodes[id] = r
	return r
}

func (n *memnet) addNodes(ids ...string) {
	for _, id := range ids {
		n.add(id, nil)
	}
}

// healthy returns a good link to peer: 64 MiB each way (cost BaseCost).
func healthy(peer string) LocalLink {
	return LocalLink{
		Peer: peer, Up: true, QKDUp: true, TxStock: 64 << 20, RxStock: 64 << 20,
		FillRate: 1e5, ConsumeRate: 1e4, QBER: 0.02, SecretRate: 1e6, MinStock: 1 << 20,
	}
}

// connect brings the KM link a-b up with healthy stats at both ends, as
// the two nodes would see it, then settles.
func (n *memnet) connect(a, b string) {
	n.connectWith(a, b, healthy(b), healthy(a))
}

func (n *memnet) connectWith(a, b string, la, lb LocalLink) {
	n.up[pair(a, b)] = true
	la.Peer, lb.Peer = b, a
	n.nodes[a].UpdateLink(la)
	n.nodes[b].UpdateLink(lb)
	n.settle()
}

// cut takes the KM link a-b down: messages in flight on it are lost, and
// both ends see it go down.
func (n *memnet) cut(a, b string) {
	n.up[pair(a, b)] = false
	n.queue = slices.DeleteFunc(n.queue, func(d delivery) bool { return pair(d.from, d.to) == pair(a, b) })
	for _, x := range [][2]string{{a, b}, {b, a}} {
		if r := n.nodes[x[0]]; r != nil {
			l := n.link(x[0], x[1])
			l.Up = false
			r.UpdateLink(l)
		}
	}
	n.settle()
}

// link returns node's current LocalLink to peer.
func (n *memnet) link(node, peer string) LocalLink {
	for _, l := range n.nodes[node].Links() {
		if l.Peer == peer {
			return l.LocalLink
		}
	}
	n.t.Fatalf("%s has no link to %s", node, peer)
	return LocalLink{}
}

// update changes node's link to peer with f, then settles.
func (n *memnet) update(node, peer string, f func(*LocalLink)) {
	l := n.link(node, peer)
	f(&l)
	n.nodes[node].UpdateLink(l)
	n.settle()
}

// run delivers queued messages until none are left.
func (n *memnet) run() {
	for len(n.queue) > 0 {
		d := n.queue[0]
		n.queue = n.queue[1:]
		r := n.nodes[d.to]
		if r == nil || !n.up[pair(d.from, d.to)] {
			continue
		}
		if err := r.Receive(d.from, d.msg); err != nil {
			n.errs = append(n.errs, err)
		}
	}
}

// settleHorizon bounds how far settle moves the clock: past SPFDelay and
// MinOriginInterval, well short of Refresh.
const settleHorizon = time.Second

// settle delivers messages and fires timers due within settleHorizon until
// the network is quiet.
func (n *memnet) settle() {
	n.t.Helper()
	limit := n.clock.Now().Add(settleHorizon)
	for {
		n.run()
		if !n.clock.fireNext(limit) {
			break
		}
	}
	if len(n.errs) > 0 {
		n.t.Fatalf("Receive errors: %v", n.errs)
	}
}

// advance moves the clock by d, firing timers and delivering messages as
// they come due.
func (n *memnet) advance(d time.Duration) {
	n.t.Helper()
	end := n.clock.Now().Add(d)
	for {
		n.run()
		if !n.clock.fireNext(end) {
			break
		}
	}
	n.clock.mu.Lock()
	n.clock.now = end
	n.clock.mu.Unlock()
	n.settle()
}

// nextHops returns node's table as dst -> next hop.
func (n *memnet) nextHops(node string) map[string]string {
	m := map[string]string{}
	for _, rt := range n.nodes[node].Routes() {
		m[rt.Dst] = rt.NextHop
	}
	return m
}

// truth computes, independently of the router, the all-pairs shortest
// distances over the links up at both ends with the costs the ends report.
// It trusts only memnet's link state and the routers' Links (local view).
func (n *memnet) truth() map[string]map[string]uint64 {
	const inf = ^uint64(0)
	ids := make([]string, 0, len(n.nodes))
	for id := range n.nodes {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	cost := map[[2]string]uint64{}
	for _, a := range ids {
		for _, l := range n.nodes[a].Links() {
			if !l.Usable {
				continue
			}
			back := n.nodes[l.Peer]
			if back == nil {
				continue
			}
			var bl *LinkInfo
			for _, x := range back.Links() {
				if x.Peer == a {
					bl = &x
				}
			}
			if bl == nil || !bl.Usable {
				continue
			}
			c := uint64(l.Cost)
			if l.State == Standby || bl.State == Standby {
				c += StandbyPenalty
			}
			cost[[2]string{a, l.Peer}] = c
		}
	}
	dist := map[string]map[string]uint64{}
	for _, a := range ids {
		dist[a] = map[string]uint64{}
		for _, b := range ids {
			dist[a][b] = inf
			if a == b {
				dist[a][b] = 0
			} else if c, ok := cost[[2]string{a, b}]; ok {
				dist[a][b] = c
			}
		}
	}
	for _, k := range ids {
		for _, i := range ids {
			for _, j := range ids {
				if dist[i][k] != inf && dist[k][j] != inf && dist[i][k]+dist[k][j] < dist[i][j] {
					dist[i][j] = dist[i][k] + dist[k][j]
				}
			}
		}
	}
	// Keep the edge costs for the next-hop check.
	for e, c := range cost {
		dist[e[0]]["\x00edge:"+e[1]] = c
	}
	return dist
}

// checkConverged fails unless every node's computed next hop to every
// other node lies on a shortest path of the ground truth, is the lowest
// such neighbour (the tie-break rule), and unreachable nodes have no route.
func (n *memnet) checkConverged() {
	n.t.Helper()
	const inf = ^uint64(0)
	d := n.truth()
	for a := range n.nodes {
		got := n.nextHops(a)
		for b := range n.nodes {
			if a == b {
				continue
			}
			want := ""
			if d[a][b] != inf {
				for _, l := range n.nodes[a].Links() { // sorted by peer
					c, ok := d[a]["\x00edge:"+l.Peer]
					if ok && d[l.Peer][b] != inf && c+d[l.Peer][b] == d[a][b] {
						want = l.Peer
						break
					}
				}
			}
			if got[b] != want {
				n.t.Errorf("%s: next hop to %s = %q, want %q (distance %d)", a, b, got[b], want, d[a][b])
			}
		}
	}
}
