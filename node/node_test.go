package node

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/qrelay/qrelay/config"
	"github.com/qrelay/qrelay/controlplane"
	"github.com/qrelay/qrelay/internal/lab"
	"github.com/qrelay/qrelay/internal/waitfor"
	"github.com/qrelay/qrelay/node/adminapi"
)

var (
	ringIDs   = []string{"a", "b", "c", "d", "e"}
	ringEdges = [][2]string{{"a", "b"}, {"b", "c"}, {"c", "d"}, {"d", "e"}, {"e", "a"}}
)

// TestRerouteTriggers moves the a→c route of a five-node ring off the a–b
// link by each trigger the control plane knows, and back when it clears:
// a KM-link fault (the link cut), a QKD module fault (an outage), QBER
// above the threshold, and an operator taking the link out of service.
// Relay keeps working throughout.
func TestRerouteTriggers(t *testing.T) {
	c := newTestCluster(t, ringIDs, ringEdges, clusterOpts{})
	c.waitPath("a", "c", "a", "b", "c")
	a := c.nodes["a"]
	ctx := context.Background()
	for _, tc := range []struct {
		name       string
		fault, fix func()
	}{
		{"KM link cut", c.proxies["a-b"].Cut, c.proxies["a-b"].Heal},
		{"QKD module fault", func() { a.Sim("b").SetOutage(true, "test: module fault") }, func() { a.Sim("b").SetOutage(false, "") }},
		{"QBER above threshold", func() { a.Sim("b").SetQBER(0.2) }, func() { a.Sim("b").SetQBER(0.02) }},
		{"out of service", func() { mustState(t, a, "b", "out_of_service") }, func() { mustState(t, a, "b", "in_service") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.fault()
			// Both ways: the completion comes back along c's route.
			c.waitPath("a", "c", "a", "e", "d", "c")
			c.waitPath("c", "a", "c", "d", "e", "a")
			if _, err := a.Relay(ctx, "c", 1000, 32); err != nil {
				t.Fatalf("relay a→c the long way: %v", err)
			}
			tc.fix()
			c.waitPath("a", "c", "a", "b", "c")
			c.waitPath("c", "a", "c", "b", "a")
			if _, err := a.Relay(ctx, "c", 1000, 32); err != nil {
				t.Fatalf("relay a→c after the fault cleared: %v", err)
			}
		})
	}
}

func mustState(t *testing.T, n *Node, peer, state string) {
	t.Helper()
	if err := (backend{n}).SetLinkState(context.Background(), peer, state); err != nil {
		t.Fatal(err)
	}
}

// TestMetrics scrapes /metrics after some relay and checks that the
// monitoring parameters operators expect are there with values that
// follow what happened.
func TestMetrics(t *testing.T) {
	c := newTestCluster(t, []string{"a", "b"}, [][2]string{{"a", "b"}}, clusterOpts{configure: func(_ string, cfg *lab.Config) {
		cfg.API.Metrics = lab.Metrics{Listen: "127.0.0.1:0", PProf: true}
	}})
	c.waitPath("a", "b", "a", "b")
	a := c.nodes["a"]
	if _, err := a.Relay(context.Background(), "b", 5000, 32); err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get("http://" + a.MetricsAddr().String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	value := func(series string) float64 {
		t.Helper()
		m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`).FindSubmatch(body)
		if m == nil {
			t.Fatalf("no series %s in /metrics", series)
		}
		v, _ := strconv.ParseFloat(string(m[1]), 64)
		return v
	}
	for series, check := range map[string]func(float64) bool{
		`qrelay_link_up{peer="b"}`:                                     func(v float64) bool { return v == 1 },
		`qrelay_link_usable{peer="b"}`:                                 func(v float64) bool { return v == 1 },
		`qrelay_pad_stock_bytes{dir="tx",peer="b"}`:                    func(v float64) bool { return v > 0 },
		`qrelay_pad_capacity_bytes{dir="rx",peer="b"}`:                 func(v float64) bool { return v == 16<<20 },
		`qrelay_pad_low_stock_threshold_bytes{peer="b"}`:               func(v float64) bool { return v == 64<<10 },
		`qrelay_pad_consumed_bytes_total{dir="tx",peer="b"}`:           func(v float64) bool { return v >= 5000*32 },
		`qrelay_pad_mac_bytes_total`:                                   func(v float64) bool { return v >= 32 },
		`qrelay_qkd_qber{peer="b"}`:                                    func(v float64) bool { return v == 0.02 },
		`qrelay_qkd_secret_key_rate_bits_per_second{peer="b"}`:         func(v float64) bool { return v > 0 },
		`qrelay_pool_keys{remote="b",role="out"}`:                      func(v float64) bool { return v == 5000 },
		`qrelay_relay_events_total{event="keys_delivered"}`:            func(v float64) bool { return v == 5000 },
		`qrelay_relay_request_keys_total{dst="b",outcome="delivered"}`: func(v float64) bool { return v == 5000 },
		`qrelay_relay_request_duration_seconds_count{dst="b"}`:         func(v float64) bool { return v == 1 },
		`qrelay_routes`: func(v float64) bool { return v == 1 },
	} {
		if v := value(series); !check(v) {
			t.Errorf("%s = %v", series, v)
		}
	}
	// pprof answers on loopback, and refuses anyone else.
	resp, err = http.Get("http://" + a.MetricsAddr().String() + "/debug/pprof/cmdline")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("pprof from loopback: %v %v", resp, err)
	}
	resp.Body.Close()
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("GET", "/debug/pprof/cmdline", nil)
	req.RemoteAddr = "192.0.2.7:4000"
	loopbackOnly(http.NotFoundHandler()).ServeHTTP(rec, req)
	if rec.Code != http.StatusForbidden {
		t.Errorf("pprof from 192.0.2.7: status %d, want 403", rec.Code)
	}
}

// BenchmarkReroute measures how long relay is interrupted by a failure on
// the a→c path of a five-node ring, from the failure to the start of the
// first relay that then delivers all its keys the other way round. A link
// failure cuts b–c; a node failure cuts every link of b (it falls silent,
// as a crashed or unplugged node does). The nodes must notice by
// themselves, with the default keepalive and idle timeout.
func BenchmarkReroute(b *testing.B) {
	for _, bc := range []struct {
		name  string
		links []string
	}{
		{"link", []string{"b-c"}},
		{"node", []string{"a-b", "b-c"}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			c := newTestCluster(b, ringIDs, ringEdges, clusterOpts{})
			c.waitPath("a", "c", "a", "b", "c")
			var total, worst time.Duration
			for b.Loop() {
				p := c.probe("a", "c", 64, 10*time.Millisecond)
				waitfor.Bool(b, "relay a→c flowing", 20*time.Second, func() bool { _, ok := p.FirstOKAfter(time.Time{}); return ok })
				t0 := time.Now()
				for _, l := range bc.links {
					c.proxies[l].Cut()
				}
				waitfor.Bool(b, "relay a→c restored", 30*time.Second, func() bool { _, ok := p.FirstOKAfter(t0); return ok })
				first, _ := p.FirstOKAfter(t0)
				p.Halt()
				d := first.Sub(t0)
				total += d
				worst = max(worst, d)
				for _, l := range bc.links {
					c.proxies[l].Heal()
				}
				c.waitPath("a", "c", "a", "b", "c")
			}
			b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "reroute-ms")
			b.ReportMetric(float64(worst.Milliseconds()), "worst-ms")
			b.ReportMetric(0, "ns/op")
		})
	}
}

// TestDurableRestart restarts each end of a link in durable mode: the
// keys in the pools survive, pad is never reused (relay after the restart
// verifies, which it could not if the ends drew different pad), and the
// two ends still hold the same keys.
func TestDurableRestart(t *testing.T) {
	c := newTestCluster(t, []string{"a", "b"}, [][2]string{{"a", "b"}}, clusterOpts{durable: true})
	ctx := context.Background()
	want := 0
	for _, id := range []string{"", "b", "a"} {
		if id != "" {
			c.restart(id)
		}
		c.waitPath("a", "b", "a", "b")
		c.waitPath("b", "a", "b", "a")
		if _, err := c.nodes["a"].Relay(ctx, "b", 3000, 32); err != nil {
			t.Fatalf("after restarting %q: relay a→b: %v", id, err)
		}
		if _, err := c.nodes["b"].Relay(ctx, "a", 1000, 32); err != nil {
			t.Fatalf("after restarting %q: relay b→a: %v", id, err)
		}
		want += 4000
		if got := c.checkPools("a", "b"); got != want {
			t.Fatalf("after restarting %q: the pools hold %d keys, want %d", id, got, want)
		}
		if s := c.nodes["b"].eng.Stats(); s.BadTags.Load() != 0 {
			t.Fatalf("after restarting %q: %d frames failed their tag at b: the ends drew different pad", id, s.BadTags.Load())
		}
	}
}

// TestKeyTTL checks that keys left in a pool past pools.ttl are removed at
// both ends and counted as expired.
func TestKeyTTL(t *testing.T) {
	c := newTestCluster(t, []string{"a", "b"}, [][2]string{{"a", "b"}}, clusterOpts{poolTTL: 300 * time.Millisecond})
	c.waitPath("a", "b", "a", "b")
	if _, err := c.nodes["a"].Relay(context.Background(), "b", 100, 32); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"a", "b"} {
		waitfor.Bool(t, "keys at "+id+" expired", 10*time.Second, func() bool {
			for _, pe := range c.nodes[id].supply.Pools() {
				s := pe.Pool.Stats()
				return s.Stock == 0 && s.Expired == 100
			}
			return false
		})
	}
}

// TestRelayRequestRoom checks that a relay request larger than the room
// left in the pools is refused up front rather than failing frame by
// frame at the destination.
func TestRelayRequestRoom(t *testing.T) {
	c := newTestCluster(t, []string{"a", "b"}, [][2]string{{"a", "b"}}, clusterOpts{})
	c.waitPath("a", "b", "a", "b")
	be := backend{c.nodes["a"]}
	ctx := context.Background()
	res, err := be.Relay(ctx, adminapi.RelayRequest{Dst: "b", Keys: 262144 - 1000, KeySize: 32})
	if err != nil || res.Delivered != res.Keys {
		t.Fatalf("relay filling all but 1000 slots: %+v, %v", res, err)
	}
	_, err = be.Relay(ctx, adminapi.RelayRequest{Dst: "b", Keys: 1001, KeySize: 32})
	if !errors.Is(err, adminapi.ErrBadRequest) || !strings.Contains(err.Error(), "room for 1000 keys") {
		t.Fatalf("relay of 1001 keys into 1000 free slots: %v", err)
	}
	if _, err := be.Relay(ctx, adminapi.RelayRequest{Dst: "a", Keys: 1, KeySize: 32}); !errors.Is(err, adminapi.ErrBadRequest) {
		t.Fatalf("relay to itself: %v", err)
	}
	if got := c.checkPools("a", "b"); got != 262144-1000 {
		t.Fatalf("pools hold %d keys", got)
	}
}

// TestKMEUnreachableAtStart starts two nodes whose link takes its keys
// from an ETSI 014 KME pair that is down: the nodes start, the link shows
// its QKD down with the reason and stays out of routing, and once the KMEs
// answer, pad flows, the route appears and relay works.
func TestKMEUnreachableAtStart(t *testing.T) {
	pair, sources := kmeSources(t)
	pair.A.Down(true)
	pair.B.Down(true)
	c := newTestCluster(t, []string{"a", "b"}, [][2]string{{"a", "b"}}, clusterOpts{source: sources})
	a := c.nodes["a"]
	links, err := backend{a}.Links(context.Background())
	if err != nil || len(links) != 1 {
		t.Fatal(links, err)
	}
	if q := links[0].QKD; q.Up || q.Kind != "etsi014" || !strings.Contains(q.Reason, "KME") || links[0].Usable {
		t.Errorf("link with its KME down: %+v, usable %v; want QKD down with the reason, not usable", q, links[0].Usable)
	}
	if p := c.path("a", "b"); p != nil {
		t.Fatalf("route a→b %v while the QKD link is down", p)
	}
	pair.A.Down(false)
	pair.B.Down(false)
	c.waitPath("a", "b", "a", "b")
	if _, err := a.Relay(context.Background(), "b", 1000, 32); err != nil {
		t.Fatal(err)
	}
	c.checkPools("a", "b")
}

// TestRerouteOnLowStock drains the pad of a slow QKD link by relaying
// over it: once its stock falls below min_stock the route moves to the
// other path, and it comes back when the link's QKD has refilled it.
func TestRerouteOnLowStock(t *testing.T) {
	seed := map[string]int{"a-b": 1, "b-a": 1, "b-c": 2, "c-b": 2, "a-c": 3, "c-a": 3}
	c := newTestCluster(t, []string{"a", "b", "c"}, [][2]string{{"a", "b"}, {"b", "c"}, {"a", "c"}}, clusterOpts{
		minStock: 128 * config.KiB,
		source: func(me, peer string) lab.Source {
			rate := config.Rate(200e6)
			if seed[me+"-"+peer] == 1 {
				// a–b: 1 MB/s. The route takes it once its cost falls to that of
				// the two-hop path, at 2 MiB each way: about 4 s. Slow, so
				// that relays drain it faster than it fills even under -race
				// on a loaded machine: at 2 MB/s, CI once filled b's pool
				// (8 MiB) before the stock fell.
				rate = 8e6
			}
			return lab.Source{Simulator: &lab.Simulator{Seed: lab.Seed(seed[me+"-"+peer]), Rate: rate, BlockSize: 4 * config.KiB}}
		}})
	t0 := time.Now()
	c.waitPath("a", "b", "a", "b")
	t.Logf("direct route after %v", time.Since(t0))
	a := c.nodes["a"]
	// Relay until the route moves: each request takes some of a–b's pad.
	// The cost of a link rises as its stock halves, so the route may move
	// before the stock is below the threshold; either way it must be the
	// stock that moved it.
	var moved map[string]controlplane.LinkInfo
	waitfor.Bool(t, "route a→b moved off the drained link", 30*time.Second, func() bool {
		if _, err := a.Relay(context.Background(), "b", 1024, 32); err != nil {
			t.Fatalf("relay a→b: %v", err)
		}
		if !slices.Equal(c.path("a", "b"), []string{"a", "c", "b"}) {
			return false
		}
		moved = map[string]controlplane.LinkInfo{}
		for _, l := range a.router.Links() {
			moved[l.Peer] = l
		}
		return true
	})
	t.Logf("route moved after %v more: link a–b %+v", time.Since(t0), moved["b"])
	if ab, ac := moved["b"], moved["c"]; ab.Usable && ab.Cost <= ac.Cost || !ab.Usable && !strings.Contains(ab.Excluded, "below threshold") {
		t.Errorf("route moved, but not for a–b's stock: a–b usable %v cost %v excluded %q, a–c cost %v", ab.Usable, ab.Cost, ab.Excluded, ac.Cost)
	}
	c.waitPath("a", "b", "a", "b")
	t.Logf("direct route back after %v more", time.Since(t0))
}

// TestStartFailure starts a node whose admin port is taken: New fails
// with the field and the cause, and closes what it had opened.
func TestStartFailure(t *testing.T) {
	c := newTestCluster(t, []string{"a"}, nil, clusterOpts{})
	cfg := *c.cfgs["a"]
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	cfg.API.Admin.Listen = ln.Addr().String()
	cfg.KM.Listen = "127.0.0.1:0"
	n, err := New(&cfg, Options{Logger: c.nodes["a"].baseLog})
	if err == nil || n != nil || !strings.Contains(err.Error(), "api.admin.listen") {
		t.Fatalf("New with its admin port taken: %v, %v; want an error naming api.admin.listen", n, err)
	}
}
