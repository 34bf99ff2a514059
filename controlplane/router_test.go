package controlplane

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

func wantHop(t *testing.T, n *memnet, from, dst, want string) {
	t.Helper()
	got, ok := n.nodes[from].NextHop(dst)
	if want == "" {
		if ok {
			t.Errorf("%s: NextHop(%s) = %q, want no route", from, dst, got)
		}
		return
	}
	if !ok || got != want {
		t.Errorf("%s: NextHop(%s) = %q, %v, want %q", from, dst, got, ok, want)
	}
}

func ring(n *memnet, ids ...string) {
	n.addNodes(ids...)
	for i := range ids {
		n.connect(ids[i], ids[(i+1)%len(ids)])
	}
}

func TestLine(t *testing.T) {
	n := newMemnet(t)
	n.addNodes("a", "b", "c", "d")
	n.connect("a", "b")
	n.connect("b", "c")
	n.connect("c", "d")
	n.checkConverged()
	routes := n.nodes["a"].Routes()
	want := []Route{
		{Dst: "b", NextHop: "b", Path: []string{"a", "b"}, Cost: 10},
		{Dst: "c", NextHop: "b", Path: []string{"a", "b", "c"}, Cost: 20},
		{Dst: "d", NextHop: "b", Path: []string{"a", "b", "c", "d"}, Cost: 30},
	}
	if fmt.Sprint(routes) != fmt.Sprint(want) {
		t.Errorf("a: Routes() = %v, want %v", routes, want)
	}
	wantHop(t, n, "d", "a", "c")
	wantHop(t, n, "a", "a", "")
	wantHop(t, n, "a", "nobody", "")
	if got := len(n.nodes["d"].Adverts()); got != 4 {
		t.Errorf("d holds %d adverts, want 4", got)
	}
}

func TestTopologies(t *testing.T) {
	for _, tc := range []struct {
		name  string
		build func(n *memnet)
		hops  [][3]string // from, dst, next hop
	}{
		{"ring5", func(n *memnet) { ring(n, "a", "b", "c", "d", "e") },
			[][3]string{{"a", "c", "b"}, {"a", "d", "e"}, {"c", "e", "d"}}},
		{"ring4 tie", func(n *memnet) { ring(n, "a", "b", "c", "d") },
			// a->c: via b or d at equal cost; the lowest neighbour ID wins.
			[][3]string{{"a", "c", "b"}, {"c", "a", "b"}, {"b", "d", "a"}, {"d", "b", "a"}}},
		{"ring5 chord", func(n *memnet) {
			ring(n, "a", "b", "c", "d", "e")
			n.connect("a", "c")
		}, [][3]string{{"a", "c", "c"}, {"a", "d", "c"}, {"b", "d", "c"}, {"e", "b", "a"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := newMemnet(t)
			tc.build(n)
			n.checkConverged()
			for _, h := range tc.hops {
				wantHop(t, n, h[0], h[1], h[2])
			}
		})
	}
}

// TestDeterministic builds the same ring with chord in different orders:
// every node must end with the same table.
func TestDeterministic(t *testing.T) {
	edges := [][2]string{{"a", "b"}, {"b", "c"}, {"c", "d"}, {"d", "e"}, {"e", "f"}, {"f", "a"}, {"b", "e"}}
	var first map[string][]Route
	for _, order := range [][]int{{0, 1, 2, 3, 4, 5, 6}, {6, 5, 4, 3, 2, 1, 0}, {3, 0, 6, 1, 5, 2, 4}} {
		n := newMemnet(t)
		n.addNodes("a", "b", "c", "d", "e", "f")
		for _, i := range order {
			n.connect(edges[i][0], edges[i][1])
		}
		n.checkConverged()
		got := map[string][]Route{}
		for id, r := range n.nodes {
			got[id] = r.Routes()
		}
		if first == nil {
			first = got
		} else if fmt.Sprint(got) != fmt.Sprint(first) {
			t.Errorf("order %v: tables\n%v\nwant\n%v", order, got, first)
		}
	}
}

func TestPartitionAndHeal(t *testing.T) {
	n := newMemnet(t)
	ring(n, "a", "b", "c", "d", "e")
	n.cut("b", "c")
	n.cut("e", "a")
	n.checkConverged()
	wantHop(t, n, "a", "c", "")
	wantHop(t, n, "a", "b", "b")
	wantHop(t, n, "c", "e", "d")
	wantHop(t, n, "d", "a", "")

	// While partitioned, both sides change: a's link to b degrades.
	n.update("a", "b", func(l *LocalLink) { l.TxStock = 3 << 20 })
	n.connect("b", "c") // heal
	n.checkConverged()
	wantHop(t, n, "a", "c", "b")
	wantHop(t, n, "d", "a", "c")
	// d learnt a's new cost through the database sync across b-c.
	for _, adv := range n.nodes["d"].Adverts() {
		if adv.Origin == "a" && (len(adv.Links) == 0 || adv.Links[0].Cost != float64(bucketCost(1))) {
			t.Errorf("d's advert of a = %+v, want link to b at cost %d", adv, bucketCost(1))
		}
	}
}

// TestNodeDeath checks the two-way rule: when a node dies without flushing,
// its neighbours advertise their links to it down, and it is unreachable
// at once even though its own stale advert still claims the links.
func TestNodeDeath(t *testing.T) {
	n := newMemnet(t)
	ring(n, "a", "b", "c", "d", "e")
	delete(n.nodes, "c") // dies: sends and receives nothing more
	for _, p := range []string{"b", "d"} {
		n.up[pair("c", p)] = false
		l := n.link(p, "c")
		l.Up = false
		n.nodes[p].UpdateLink(l)
	}
	n.settle()
	for id := range n.nodes {
		wantHop(t, n, id, "c", "")
	}
	wantHop(t, n, "b", "d", "a")
	var held bool
	for _, adv := range n.nodes["a"].Adverts() {
		held = held || adv.Origin == "c"
	}
	if !held {
		t.Error("a dropped c's advert before it expired")
	}
}

// TestRestartLowerSeq restarts a node whose clock went back: its new
// adverts start below the old ones, which its neighbours still hold. It
// must hear its old advert in the database sync, jump above it, and
// replace it everywhere.
func TestRestartLowerSeq(t *testing.T) {
	n := newMemnet(t)
	ring(n, "a", "b", "c", "d")
	old := n.nodes["b"].Adverts()[1] // a, b, c, d
	if old.Origin != "b" {
		t.Fatalf("advert order: %v", old)
	}
	// b dies silently (no flush), its links go down, its clock goes back.
	delete(n.nodes, "b")
	n.up[pair("a", "b")], n.up[pair("b", "c")] = false, false
	for _, p := range []string{"a", "c"} {
		l := n.link(p, "b")
		l.Up = false
		n.nodes[p].UpdateLink(l)
	}
	n.settle()
	n.add("b", func(c *Config) { c.Now = func() time.Time { return n.clock.Now().Add(-time.Hour) } })
	if s := n.nodes["b"].Adverts()[0].Seq; s >= old.Seq {
		t.Fatalf("restarted b starts at seq %d, not below %d", s, old.Seq)
	}
	n.connect("a", "b")
	n.connect("b", "c")
	n.checkConverged()
	wantHop(t, n, "a", "c", "b")
	for id, r := range n.nodes {
		for _, adv := range r.Adverts() {
			if adv.Origin == "b" && (adv.Seq <= old.Seq || len(adv.Links) != 2) {
				t.Errorf("%s holds b's advert seq %d with %d links, want seq > %d with 2", id, adv.Seq, len(adv.Links), old.Seq)
			}
		}
	}
}

// TestCloseFlushes: a closed node's flush removes it everywhere at once,
// and a restart (even with its clock back) replaces the flush.
func TestCloseFlushes(t *testing.T) {
	n := newMemnet(t)
	ring(n, "a", "b", "c", "d")
	closed := n.nodes["b"]
	if err := closed.Close(); err != nil {
		t.Fatal(err)
	}
	if err := closed.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	delete(n.nodes, "b")
	n.settle()
	for _, id := range []string{"a", "c", "d"} {
		wantHop(t, n, id, "b", "")
		for _, adv := range n.nodes[id].Adverts() {
			if adv.Origin == "b" && (!adv.Flushed || len(adv.Links) != 0) {
				t.Errorf("%s: b's advert %+v, want flushed", id, adv)
			}
		}
	}
	if err := closed.Receive("a", []byte{1}); !errors.Is(err, ErrClosed) {
		t.Errorf("Receive after Close = %v, want ErrClosed", err)
	}
	// Links to b go down; b restarts with its clock back.
	for _, p := range []string{"a", "c"} {
		n.cut(p, "b")
	}
	n.add("b", func(c *Config) { c.Now = func() time.Time { return n.clock.Now().Add(-time.Hour) } })
	n.connect("a", "b")
	n.connect("b", "c")
	n.checkConverged()
	wantHop(t, n, "d", "b", "a")
}

func TestAgeing(t *testing.T) {
	n := newMemnet(t)
	n.addNodes("a", "b", "c")
	n.connect("a", "b")
	n.connect("b", "c")
	// c is cut off from b but not closed: the others keep its advert until
	// it expires, though two-way makes it unreachable at once.
	n.cut("b", "c")
	wantHop(t, n, "a", "c", "")
	maxAge := DefaultMaxAgeFactor * DefaultRefresh
	has := func(node, origin string) bool {
		for _, adv := range n.nodes[node].Adverts() {
			if adv.Origin == origin {
				return true
			}
		}
		return false
	}
	n.advance(maxAge - 2*settleHorizon) // the cut settled within one horizon
	if !has("a", "c") {
		t.Fatal("a dropped c's advert before MaxAge")
	}
	n.advance(2 * settleHorizon)
	if has("a", "c") || has("b", "c") {
		t.Error("c's advert outlived MaxAge")
	}
	// a and b refresh each other: their adverts never expire.
	n.advance(3 * maxAge)
	if !has("a", "b") || !has("b", "a") {
		t.Error("refreshed adverts aged out")
	}
	wantHop(t, n, "a", "b", "b")
	// An advert's own lifetime rules, not the receiver's MaxAge.
	short := &advert{Origin: "z", Seq: 1, Lifetime: 5000}
	if err := n.nodes["a"].Receive("c", appendMessage(nil, []*advert{short})); err != nil {
		t.Fatal(err)
	}
	n.settle()
	if !has("b", "z") {
		t.Fatal("z's advert not flooded to b")
	}
	n.advance(5 * time.Second)
	if has("a", "z") || has("b", "z") {
		t.Error("z's advert outlived its 5s lifetime")
	}
}

// TestFloodingCounts counts messages: a new advert crosses each link once
// each way at most, and duplicates and old adverts are not re-flooded.
func TestFloodingCounts(t *testing.T) {
	n := newMemnet(t)
	ring(n, "a", "b", "c", "d", "e")
	n.connect("a", "c")
	base := n.sent
	// A stats-only update re-originates nothing.
	n.update("a", "b", func(l *LocalLink) { l.FillRate = 7; l.TxStock -= 1000 })
	if n.sent != base {
		t.Errorf("stats-only update sent %d messages, want 0", n.sent-base)
	}
	// A cost change at a floods a's advert: a sends to its 3 neighbours,
	// every other node forwards to all neighbours but the sender.
	n.update("a", "b", func(l *LocalLink) { l.TxStock = 3 << 20 })
	wantMsgs := 3 + (2 - 1) + (3 - 1) + (2 - 1) + (2 - 1)
	if got := n.sent - base; got != wantMsgs {
		t.Errorf("flooding one advert sent %d messages, want %d", got, wantMsgs)
	}
	for _, id := range []string{"b", "c", "d", "e"} {
		var adv AdvertInfo
		for _, x := range n.nodes[id].Adverts() {
			if x.Origin == "a" {
				adv = x
			}
		}
		if adv.Links[0].Cost != float64(bucketCost(1)) {
			t.Errorf("%s: a's link to b has cost %v, want %d", id, adv.Links[0].Cost, bucketCost(1))
		}
	}

	// Replay a's current advert and an older one to c by hand.
	r := n.nodes["c"]
	cur := r.lsdb["a"].adv
	older := *cur
	older.Seq--
	before, st := n.sent, r.Stats()
	for _, adv := range []*advert{cur, &older} {
		if err := r.Receive("d", appendMessage(nil, []*advert{adv})); err != nil {
			t.Fatal(err)
		}
	}
	n.settle()
	after := r.Stats()
	if n.sent != before {
		t.Errorf("duplicate and stale adverts sent %d messages, want 0", n.sent-before)
	}
	if after.Duplicates != st.Duplicates+1 || after.Stale != st.Stale+1 {
		t.Errorf("Duplicates %d->%d, Stale %d->%d, want +1 each", st.Duplicates, after.Duplicates, st.Stale, after.Stale)
	}
	if r.lsdb["a"].adv != cur {
		t.Error("stale advert replaced the current one")
	}
}

func TestMalformed(t *testing.T) {
	n := newMemnet(t)
	n.addNodes("a", "b")
	n.connect("a", "b")
	good := appendMessage(nil, []*advert{n.nodes["a"].lsdb["a"].adv})
	r := n.nodes["b"]
	before := r.Adverts()
	for _, tc := range []struct {
		name  string
		msg   []byte
		field string
	}{
		{"empty", nil, "header"},
		{"type", append([]byte{9}, good[1:]...), "type"},
		{"version", append([]byte{1, 2}, good[2:]...), "version"},
		{"truncated", good[:len(good)-1], "advert[0].link[0]"},
		{"trailing", append(slices.Clone(good), 0), "message"},
		{"bad qber", setQBER(good, 2), "advert[0].link[0].qber"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := r.Stats()
			err := r.Receive("a", tc.msg)
			var pe *ParseError
			if !errors.As(err, &pe) || pe.Field != tc.field {
				t.Fatalf("Receive = %v, want a ParseError for field %q", err, tc.field)
			}
			if !strings.Contains(err.Error(), `peer "a"`) {
				t.Errorf("error %q does not name the peer", err)
			}
			if got := r.Stats().Malformed; got != st.Malformed+1 {
				t.Errorf("Malformed = %d, want %d", got, st.Malformed+1)
			}
		})
	}
	n.settle()
	if fmt.Sprint(r.Adverts()) != fmt.Sprint(before) {
		t.Error("malformed messages changed the LSDB")
	}
}

// setQBER returns a copy of a one-advert, one-link message with the link's
// QBER set to q.
func setQBER(msg []byte, q float64) []byte {
	advs, err := parseMessage(msg)
	if err != nil {
		panic(err)
	}
	a := *advs[0]
	a.Links = slices.Clone(a.Links)
	a.Links[0].QBER = q
	return appendMessage(nil, []*advert{&a})
}

// triggerNet is a→d over a-b-d (cost 20), with a detour a-c-e-d (30).
func triggerNet(t *testing.T) *memnet {
	n := newMemnet(t)
	n.addNodes("a", "b", "c", "d", "e")
	for _, e := range [][2]string{{"a", "b"}, {"b", "d"}, {"a", "c"}, {"c", "e"}, {"e", "d"}} {
		n.connect(e[0], e[1])
	}
	wantHop(t, n, "a", "d", "b")
	wantHop(t, n, "b", "a", "a")
	return n
}

// TestRerouteTriggers proves the route moves on each of the four triggers
// (stock below threshold, KM link fault, QBER above threshold, QKD module
// fault) and on an operator taking the link out of service. Only a's view
// of a-b changes; two-way makes b route around too. Then the link
// recovers and the route moves back.
func TestRerouteTriggers(t *testing.T) {
	for _, tc := range []struct {
		name   string
		break_ func(*LocalLink)
		reason string
	}{
		{"stock below threshold", func(l *LocalLink) { l.RxStock = 1229 }, "pad stock 1.2 KiB below threshold 1 MiB"},
		{"KM link fault", func(l *LocalLink) { l.Up = false }, "link down"},
		{"QBER above threshold", func(l *LocalLink) { l.QBER = 0.13 }, "QBER 0.13 above 0.11"},
		{"QKD module fault", func(l *LocalLink) { l.QKDUp = false; l.QKDFault = "laser off" }, "QKD module fault: laser off"},
		{"out of service", func(l *LocalLink) { l.State = OutOfService }, "out of service"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := triggerNet(t)
			origin := n.nodes["a"].Stats().AdvertsOriginated
			if tc.name == "KM link fault" {
				n.cut("a", "b")
			} else {
				n.update("a", "b", tc.break_)
			}
			// A loss is originated at once, not after MinOriginInterval.
			if got := n.nodes["a"].Stats().AdvertsOriginated; got != origin+1 {
				t.Errorf("a originated %d adverts, want 1", got-origin)
			}
			wantHop(t, n, "a", "d", "c")
			wantHop(t, n, "b", "a", "d")
			n.checkConverged()
			li := n.nodes["a"].Links()[0]
			if li.Peer != "b" || li.Usable || li.Excluded != tc.reason {
				t.Errorf("a's link to b: usable %v, excluded %q, want %q", li.Usable, li.Excluded, tc.reason)
			}
			if n.nodes["a"].Stats().Reroutes == 0 {
				t.Error("Stats.Reroutes = 0")
			}
			if tc.name == "KM link fault" {
				n.connect("a", "b")
			} else {
				n.update("a", "b", func(l *LocalLink) { *l = healthy("b") })
			}
			wantHop(t, n, "a", "d", "b")
			n.checkConverged()
		})
	}
}

// TestKeyAwareCost: the route leaves a link as its stock falls, before the
// threshold, when a detour becomes cheaper.
func TestKeyAwareCost(t *testing.T) {
	n := triggerNet(t)                                             // via b: 20; via c: 30
	n.update("a", "b", func(l *LocalLink) { l.TxStock = 5 << 20 }) // bucket 2: 20+10 = 30, tie: b < c
	wantHop(t, n, "a", "d", "b")
	n.update("a", "b", func(l *LocalLink) { l.TxStock = 3 << 20 }) // bucket 1: 30+10 = 40
	wantHop(t, n, "a", "d", "c")
	n.checkConverged()
	if r, _ := n.nodes["a"].Routes()[2], 0; r.Dst != "d" || r.Cost != 30 || fmt.Sprint(r.Path) != "[a c e d]" {
		t.Errorf("route to d = %+v", r)
	}
}

func TestCostMonotone(t *testing.T) {
	prev := uint32(1 << 31)
	for stock := uint64(0); stock < 1<<30; stock = stock*5/4 + 1 {
		c := bucketCost(stockBucket(stock, CostRef))
		if c > prev {
			t.Fatalf("cost rises from %d to %d as stock grows to %d", prev, c, stock)
		}
		prev = c
	}
	if prev != BaseCost {
		t.Errorf("cost with ample stock = %d, want %d", prev, BaseCost)
	}
	if got := bucketCost(0); got != BaseCost+MaxStockPenalty {
		t.Errorf("cost near exhaustion = %d", got)
	}
}

// TestHysteresis: a stock oscillating around the threshold or a bucket
// boundary changes the link's verdict once, not on every swing, and so
// re-originates once.
func TestHysteresis(t *testing.T) {
	n := newMemnet(t)
	n.addNodes("a", "b")
	n.connect("a", "b")
	r := n.nodes["a"]
	base := r.Stats().AdvertsOriginated
	set := func(stock uint64) {
		n.update("a", "b", func(l *LocalLink) { l.TxStock = stock })
	}
	const mib = 1 << 20
	for range 10 {
		set(mib - 1000) // below threshold
		set(mib + 1000) // above, but inside the hysteresis band
	}
	if got := r.Stats().AdvertsOriginated - base; got != 1 {
		t.Errorf("oscillating around the threshold originated %d adverts, want 1", got)
	}
	if l := r.Links()[0]; l.Usable || !strings.Contains(l.Excluded, "re-admission") {
		t.Errorf("link in the band: usable %v, %q", l.Usable, l.Excluded)
	}
	set(mib + mib/8)
	if l := r.Links()[0]; !l.Usable {
		t.Errorf("link above the band still excluded: %q", l.Excluded)
	}
	base = r.Stats().AdvertsOriginated
	for range 10 {
		set(4*mib - 1000) // bucket 1 by the raw rule
		set(4*mib + 1000) // bucket 2
	}
	if got := r.Stats().AdvertsOriginated - base; got != 1 {
		t.Errorf("oscillating around a bucket boundary originated %d adverts, want 1", got)
	}
	// QBER: excluded above 0.11, back only at 0.099.
	q := func(v float64) bool {
		n.update("a", "b", func(l *LocalLink) { l.QBER = v; l.TxStock = 64 * mib })
		return r.Links()[0].Usable
	}
	if q(0.12) || q(0.105) || !q(0.09) || !q(0.105) {
		t.Error("QBER hysteresis wrong")
	}
}

// TestRateLimit: gains within MinOriginInterval share one origination;
// losses go out at once.
func TestRateLimit(t *testing.T) {
	n := newMemnet(t)
	n.addNodes("a", "b", "c")
	n.connect("a", "b")
	n.connect("a", "c")
	r := n.nodes["a"]
	n.update("a", "b", func(l *LocalLink) { l.TxStock = 3 << 20 }) // a gain-type change
	base := r.Stats().AdvertsOriginated
	// Changes now, without settling: the first is within the interval of
	// the last origination, the rest pile up behind it.
	l := n.link("a", "b")
	l.TxStock = 64 << 20
	r.UpdateLink(l)
	l.State = Standby
	r.UpdateLink(l)
	if got := r.Stats().AdvertsOriginated - base; got != 0 {
		t.Fatalf("gain changes originated %d adverts at once, want 0", got)
	}
	lc := n.link("a", "c")
	lc.QKDUp = false
	r.UpdateLink(lc) // a loss: immediate, and carries the pending gains
	if got := r.Stats().AdvertsOriginated - base; got != 1 {
		t.Fatalf("loss originated %d adverts, want 1", got)
	}
	n.settle()
	if got := r.Stats().AdvertsOriginated - base; got != 1 {
		t.Errorf("after settling: %d originations, want 1 (the deferred one had nothing left)", got)
	}
	lc.QKDUp = true
	r.UpdateLink(lc)
	if got := r.Stats().AdvertsOriginated - base; got != 1 {
		t.Fatalf("gain right after a loss originated at once")
	}
	n.settle()
	if got := r.Stats().AdvertsOriginated - base; got != 2 {
		t.Errorf("deferred gain: %d originations, want 2", got)
	}
	n.checkConverged()
}

func TestStaticRoutes(t *testing.T) {
	n := newMemnet(t)
	n.add("a", func(c *Config) { c.Static = map[string]string{"d": "c", "z": "c"} })
	n.addNodes("b", "c", "d", "e")
	for _, e := range [][2]string{{"a", "b"}, {"b", "d"}, {"a", "c"}, {"c", "e"}, {"e", "d"}} {
		n.connect(e[0], e[1])
	}
	wantHop(t, n, "a", "d", "c") // computed would be b
	wantHop(t, n, "a", "z", "c") // unknown to SPF
	var rt Route
	for _, x := range n.nodes["a"].Routes() {
		if x.Dst == "d" {
			rt = x
		}
	}
	if !rt.Static || fmt.Sprint(rt.Path) != "[a c d]" {
		t.Errorf("static route = %+v", rt)
	}
	// Reserved: excluded from SPF, still fine for a static route.
	n.update("a", "c", func(l *LocalLink) { l.State = Reserved })
	wantHop(t, n, "a", "d", "c")
	wantHop(t, n, "a", "e", "b")
	if l := n.nodes["a"].Links()[1]; l.Excluded != "reserved for static routes" || fmt.Sprint(l.Static) != "[d z]" {
		t.Errorf("link to c: %q, static %v", l.Excluded, l.Static)
	}
	// A QKD fault does not unpin it either.
	n.update("a", "c", func(l *LocalLink) { l.QKDUp = false })
	wantHop(t, n, "a", "d", "c")
	// Out of service: fall back to the computed route.
	n.update("a", "c", func(l *LocalLink) { l.State = OutOfService })
	wantHop(t, n, "a", "d", "b")
	wantHop(t, n, "a", "z", "")
	n.update("a", "c", func(l *LocalLink) { l.State = InService; l.QKDUp = true })
	wantHop(t, n, "a", "d", "c")
	// Down: fall back too.
	n.cut("a", "c")
	wantHop(t, n, "a", "d", "b")
	n.connect("a", "c")
	wantHop(t, n, "a", "d", "c")

	// Reload: new static routes replace the old ones.
	if err := n.nodes["a"].SetStatic(map[string]string{"e": "b"}); err != nil {
		t.Fatal(err)
	}
	n.settle()
	wantHop(t, n, "a", "d", "b")
	wantHop(t, n, "a", "e", "b")
	wantHop(t, n, "a", "z", "")
	if err := n.nodes["a"].SetStatic(map[string]string{"e": "a"}); err == nil {
		t.Error("SetStatic accepted a route via the node itself")
	}
	wantHop(t, n, "a", "e", "b")
}

func TestStandbyLastResort(t *testing.T) {
	n := newMemnet(t)
	n.addNodes("a", "b", "c", "d")
	n.connect("a", "b")
	n.connect("b", "c")
	n.connect("c", "d")
	sb := healthy("")
	sb.State = Standby
	n.connectWith("a", "d", sb, healthy("")) // standby at a's end only
	wantHop(t, n, "a", "d", "b")             // 3 hops rather than the standby link
	wantHop(t, n, "d", "a", "c")
	n.checkConverged()
	n.cut("b", "c")
	wantHop(t, n, "a", "d", "d") // the only path left
	wantHop(t, n, "d", "a", "a")
	wantHop(t, n, "a", "c", "d")
	n.checkConverged()
	n.connect("b", "c")
	wantHop(t, n, "a", "d", "b")
}

func TestRemoveLink(t *testing.T) {
	n := newMemnet(t)
	ring(n, "a", "b", "c")
	n.up[pair("a", "b")] = false
	n.nodes["a"].RemoveLink("b")
	n.nodes["b"].RemoveLink("a")
	n.settle()
	wantHop(t, n, "a", "b", "c")
	if got := len(n.nodes["c"].lsdb["a"].adv.Links); got != 1 {
		t.Errorf("a advertises %d links, want 1", got)
	}
}

func TestRefresh(t *testing.T) {
	n := newMemnet(t)
	n.addNodes("a", "b")
	n.connect("a", "b")
	st := n.nodes["a"].Stats()
	n.advance(DefaultRefresh)
	if got := n.nodes["a"].Stats().AdvertsOriginated - st.AdvertsOriginated; got != 1 {
		t.Errorf("%d originations in one Refresh, want 1", got)
	}
	for _, adv := range n.nodes["b"].Adverts() {
		if adv.Origin == "a" && adv.Remaining < DefaultMaxAgeFactor*DefaultRefresh-settleHorizon {
			t.Errorf("a's refreshed advert has %v left, want about MaxAge", adv.Remaining)
		}
	}
}

func TestConfigErrors(t *testing.T) {
	send := func(string, []byte) error { return nil }
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{Send: send}, "node_id"},
		{Config{NodeID: "a b", Send: send}, "node_id"},
		{Config{NodeID: "a"}, "Send is nil"},
		{Config{NodeID: "a", Send: send, Static: map[string]string{"a": "b"}}, `static["a"]: a route to this node`},
		{Config{NodeID: "a", Send: send, Static: map[string]string{"c": "a"}}, `static["c"]: via "a"`},
		{Config{NodeID: "a", Send: send, Static: map[string]string{"c": ""}}, `static["c"]: bad neighbour`},
		{Config{NodeID: "a", Send: send, Refresh: time.Minute, MaxAge: time.Minute}, "max_age 1m0s, want at least 2×refresh"},
		{Config{NodeID: "a", Send: send, MaxAge: 48 * time.Hour}, "want at most 24h0m0s"},
		{Config{NodeID: "a", Send: send, SPFDelay: -1}, "negative duration"},
	} {
		_, err := New(tc.cfg)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New(%+v) = %v, want error containing %q", tc.cfg, err, tc.want)
		}
	}
}

func TestState(t *testing.T) {
	for s := InService; s <= Reserved; s++ {
		got, err := ParseState(s.String())
		if err != nil || got != s {
			t.Errorf("ParseState(%q) = %v, %v", s.String(), got, err)
		}
		var u State
		b, _ := s.MarshalText()
		if err := u.UnmarshalText(b); err != nil || u != s {
			t.Errorf("text round trip of %v = %v, %v", s, u, err)
		}
	}
	if _, err := ParseState("drained"); err == nil {
		t.Error("ParseState(drained) succeeded")
	}
	if s := State(9).String(); s != "State(9)" {
		t.Errorf("State(9).String() = %q", s)
	}
}

func TestFmtBytes(t *testing.T) {
	for n, want := range map[uint64]string{0: "0 B", 1023: "1023 B", 1229: "1.2 KiB", 1 << 20: "1 MiB", 3<<30 + 1<<29: "3.5 GiB"} {
		if got := fmtBytes(n); got != want {
			t.Errorf("fmtBytes(%d) = %q, want %q", n, got, want)
		}
	}
}

// TestSyncRetry: the node reports a link up before its control stream can
// send; the failed database sync is repeated on the next UpdateLink.
func TestSyncRetry(t *testing.T) {
	n := newMemnet(t)
	n.addNodes("a", "b", "c")
	n.connect("b", "c")
	// a and b see the link up, but memnet refuses sends on it.
	n.nodes["a"].UpdateLink(healthy("b"))
	n.nodes["b"].UpdateLink(healthy("a"))
	n.settle()
	if n.nodes["a"].Stats().SendErrors == 0 {
		t.Fatal("no send failed")
	}
	wantHop(t, n, "a", "c", "")
	n.up[pair("a", "b")] = true
	n.nodes["a"].UpdateLink(healthy("b")) // periodic stats
	n.nodes["b"].UpdateLink(healthy("a"))
	n.settle()
	wantHop(t, n, "a", "c", "b")
	wantHop(t, n, "c", "a", "b")
	n.checkConverged()
	sent := n.sent
	n.nodes["a"].UpdateLink(healthy("b"))
	n.settle()
	if n.sent != sent {
		t.Errorf("a stats update after a good sync sent %d messages", n.sent-sent)
	}
}
