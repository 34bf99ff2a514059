package controlplane

import (
	"slices"
	"strings"
)

// table is an immutable routing table, swapped atomically after each SPF
// run so that NextHop reads it without locks.
type table struct {
	next   map[string]string // dst -> neighbour
	routes []Route           // sorted by Dst
}

// Route is the route to one destination.
type Route struct {
	Dst     string
	NextHop string
	// Path is the computed path, from this node to Dst inclusive. For a
	// static route it is the configured hops: this node, the neighbour,
	// and Dst if it is not the neighbour.
	Path []string
	// Cost is the sum of the link costs along Path (an integer); 0 for a
	// static route, whose cost is not computed.
	Cost   float64
	Static bool
}

// NextHop returns the neighbour to send traffic for dst to, and false if
// dst is unreachable or is this node. It is lock-free: one atomic load and
// one map lookup.
func (r *Router) NextHop(dst string) (string, bool) {
	nh, ok := r.table.Load().next[dst]
	return nh, ok
}

// Routes returns the routing table, sorted by destination.
func (r *Router) Routes() []Route {
	t := r.table.Load()
	routes := make([]Route, len(t.routes))
	for i, rt := range t.routes {
		rt.Path = slices.Clone(rt.Path)
		routes[i] = rt
	}
	return routes
}

// runSPF recomputes the table from an LSDB snapshot, if the SPF timer with
// generation gen is still the current one.
func (r *Router) runSPF(gen uint64) {
	r.spfMu.Lock()
	defer r.spfMu.Unlock()
	r.mu.Lock()
	if r.closed || r.spfT.gen != gen {
		r.mu.Unlock()
		return
	}
	r.spfT.armed = false
	now := r.cfg.Now()
	// Adverts are immutable, so a copy of the map is a consistent snapshot
	// and SPF can run without the lock.
	lsdb := make(map[string]*advert, len(r.lsdb))
	for o, e := range r.lsdb {
		if !e.flushed() && (o == r.self || e.expires.After(now)) {
			lsdb[o] = e.adv
		}
	}
	static := r.static
	staticOK := map[string]bool{}
	for _, via := range static {
		if l := r.links[via]; l != nil && staticUsable(&l.LocalLink) {
			staticOK[via] = true
		}
	}
	r.mu.Unlock()

	t := computeTable(r.self, lsdb, static, staticOK)
	old := r.table.Swap(t)
	changed, reroutes := diffTables(old, t)

	r.mu.Lock()
	r.stats.SPFRuns++
	r.stats.Reroutes += reroutes
	if changed {
		r.stats.LastChange = now
	}
	r.mu.Unlock()
	if changed {
		r.log.Info("controlplane: routing table changed", "routes", len(t.routes), "next_hops_changed", reroutes)
		if r.cfg.OnChange != nil {
			r.cfg.OnChange()
		}
	}
}

// edgeCost returns the cost of the link from u to l.Peer, and false unless
// both ends advertise it up and usable: the two-way check, so that a dead
// node's stale advert, still claiming its links, attracts no traffic once
// its neighbours advertise those links down. A link in standby at either
// end costs StandbyPenalty more.
func edgeCost(lsdb map[string]*advert, u *advert, l *advLink) (uint64, bool) {
	return linkCost(u, l, lsdb[l.Peer])
}

// linkCost is edgeCost given v, the advert of l.Peer or nil.
func linkCost(u *advert, l *advLink, v *advert) (uint64, bool) {
	if !l.usable() || v == nil {
		return 0, false
	}
	back := v.link(u.Origin)
	if back == nil || !back.usable() {
		return 0, false
	}
	c := uint64(l.Cost)
	if l.State == Standby || back.State == Standby {
		c += StandbyPenalty
	}
	return c, true
}

// computeTable runs Dijkstra from self over lsdb, then applies the usable
// static routes.
//
// Ties are broken deterministically, so that every node and every test
// gets the same answer: of the equal-cost paths to a node, the one whose
// first hop has the lowest ID wins, then the one whose last hop before the
// node has the lowest ID. Costs are integers, so ties are exact. Because a
// node on a shortest path has the rest of that path among its own shortest
// paths, hop-by-hop forwarding over consistent LSDBs cannot loop.
//
// Nodes are numbered in ID order, so that comparing numbers compares IDs
// and the routes come out sorted.
func computeTable(self string, lsdb map[string]*advert, static map[string]string, staticOK map[string]bool) *table {
	names := make([]string, 0, len(lsdb)+1)
	for o := range lsdb {
		names = append(names, o)
	}
	if lsdb[self] == nil {
		names = append(names, self)
	}
	slices.Sort(names)
	index := make(map[string]int32, len(names))
	advs := make([]*advert, len(names))
	for i, n := range names {
		index[n] = int32(i)
		advs[i] = lsdb[n]
	}
	const none = -1
	n := len(names)
	dist := make([]uint64, n)
	first := make([]int32, n)
	pred := make([]int32, n)
	state := make([]uint8, n) // 0 unseen, 1 queued, 2 done
	src := index[self]
	state[src], first[src], pred[src] = 1, none, none
	q := spfQueue{{node: src}}
	for len(q) > 0 {
		it := q.pop()
		u := it.node
		if state[u] == 2 || it.dist != dist[u] {
			continue
		}
		state[u] = 2
		adv := advs[u]
		if adv == nil {
			continue
		}
		for i := range adv.Links {
			l := &adv.Links[i]
			if !l.usable() {
				continue
			}
			v, ok := index[l.Peer]
			if !ok {
				continue
			}
			c, ok := linkCost(adv, l, advs[v])
			if !ok {
				continue
			}
			f := first[u]
			if u == src {
				f = v
			}
			nd := dist[u] + c
			switch {
			case state[v] == 0 || state[v] == 1 && nd < dist[v]:
				state[v], dist[v], first[v], pred[v] = 1, nd, f, u
				q.push(spfItem{node: v, dist: nd})
			case state[v] == 1 && nd == dist[v] && (f < first[v] || f == first[v] && u < pred[v]):
				first[v], pred[v] = f, u
			}
		}
	}

	t := &table{next: make(map[string]string, n+len(static))}
	t.routes = make([]Route, 0, n)
	var hops []string // backing store of all paths
	for v := range int32(n) {
		if v == src || state[v] != 2 {
			continue
		}
		k := 1
		for x := v; x != src; x = pred[x] {
			k++
		}
		if cap(hops)-len(hops) < k {
			hops = make([]string, 0, max(k, 8*n))
		}
		path := hops[len(hops) : len(hops)+k : len(hops)+k]
		hops = hops[:len(hops)+k]
		for x, i := v, k-1; i >= 0; x, i = pred[x], i-1 {
			path[i] = names[x]
		}
		t.next[names[v]] = names[first[v]]
		t.routes = append(t.routes, Route{Dst: names[v], NextHop: names[first[v]], Path: path, Cost: float64(dist[v])})
	}
	if len(static) == 0 {
		return t
	}
	for dst, via := range static {
		if !staticOK[via] {
			continue
		}
		path := []string{self, via}
		if dst != via {
			path = append(path, dst)
		}
		rt := Route{Dst: dst, NextHop: via, Path: path, Static: true}
		if i, ok := slices.BinarySearchFunc(t.routes, dst, func(r Route, d string) int { return strings.Compare(r.Dst, d) }); ok {
			t.routes[i] = rt
		} else {
			t.routes = slices.Insert(t.routes, i, rt)
		}
		t.next[dst] = via
	}
	return t
}

// diffTables reports whether b differs from a, and for how many
// destinations the next hop changed (a route gained or lost counts).
func diffTables(a, b *table) (changed bool, reroutes uint64) {
	for dst, nh := range b.next {
		if old, ok := a.next[dst]; !ok || old != nh {
			reroutes++
		}
	}
	for dst := range a.next {
		if _, ok := b.next[dst]; !ok {
			reroutes++
		}
	}
	if reroutes > 0 || len(a.routes) != len(b.routes) {
		return true, reroutes
	}
	for i := range a.routes {
		x, y := &a.routes[i], &b.routes[i]
		if x.Dst != y.Dst || x.NextHop != y.NextHop || x.Cost != y.Cost || x.Static != y.Static || !slices.Equal(x.Path, y.Path) {
			return true, 0
		}
	}
	return false, 0
}

type spfItem struct {
	node int32
	dist uint64
}

// spfQueue is a binary min-heap by distance, then node number. It is
// written out rather than using container/heap, whose interface boxing
// allocated once per push.
type spfQueue []spfItem

func (q spfQueue) less(i, j int) bool {
	return q[i].dist < q[j].dist || q[i].dist == q[j].dist && q[i].node < q[j].node
}

func (q *spfQueue) push(it spfItem) {
	*q = append(*q, it)
	h := *q
	for i := len(h) - 1; i > 0; {
		p := (i - 1) / 2
		if !h.less(i, p) {
			break
		}
		h[i], h[p] = h[p], h[i]
		i = p
	}
}

func (q *spfQueue) pop() spfItem {
	h := *q
	it := h[0]
	last := len(h) - 1
	h[0] = h[last]
	h = h[:last]
	for i := 0; ; {
		l, m := 2*i+1, i
		if l < len(h) && h.less(l, m) {
			m = l
		}
		if r := l + 1; r < len(h) && h.less(r, m) {
			m = r
		}
		if m == i {
			break
		}
		h[i], h[m] = h[m], h[i]
		i = m
	}
	*q = h
	return it
}
