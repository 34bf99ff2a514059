package main

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/qrelay/qrelay/internal/lab"
	"github.com/qrelay/qrelay/internal/waitfor"
)

// The ring of these tests: a–b–c–d–e–a. From a, node c is two hops away
// through b, and three hops the other way round, through e and d.
var (
	ringIDs   = []string{"a", "b", "c", "d", "e"}
	ringEdges = [][2]string{{"a", "b"}, {"b", "c"}, {"c", "d"}, {"d", "e"}, {"e", "a"}}
)

func startRing(t testing.TB) *cluster {
	if testing.Short() {
		t.Skip("runs five qrelayd processes; skipped with -short")
	}
	c := newCluster(t, ringIDs, ringEdges)
	c.waitRoute("a", "c", []string{"a", "b", "c"})
	c.waitRoute("c", "a", []string{"c", "b", "a"})
	return c
}

// TestRingLinkFailure cuts the b–c link while a relays keys to c: the
// nodes notice by themselves, the routes converge on the long way round,
// relay resumes, and no key ends up usable at one end only.
func TestRingLinkFailure(t *testing.T) {
	c := startRing(t)
	tr := c.startTraffic("a", "c", 256, 25*time.Millisecond)
	waitfor.Cond(t, "traffic a→c flowing", 20*time.Second, func() (bool, string) {
		_, ok := tr.FirstOKAfter(time.Time{})
		return ok, ""
	})
	cut := time.Now()
	c.proxies["b-c"].Cut()
	c.waitRoute("a", "c", []string{"a", "e", "d", "c"})
	waitfor.Cond(t, "relay a→c resumed after the cut", 20*time.Second, func() (bool, string) {
		_, ok := tr.FirstOKAfter(cut)
		return ok, ""
	})
	restored, _ := tr.FirstOKAfter(cut)
	tr.Halt()
	attempts, failed := tr.Counts()
	t.Logf("link b–c cut: a relay started %v after the cut delivered all its keys (%d requests, %d failed)",
		restored.Sub(cut).Round(time.Millisecond), attempts, failed)
	keys := c.checkPools([][2]string{{"a", "c"}})
	if keys == 0 {
		t.Fatal("a and c share no keys after the test")
	}
	// The link heals: the short route comes back.
	c.proxies["b-c"].Heal()
	c.waitRoute("a", "c", []string{"a", "b", "c"})
}

// TestRingNodeFailure kills node b (SIGKILL: no goodbye) while a relays to
// c: its neighbours notice, routes converge around it, relay resumes.
func TestRingNodeFailure(t *testing.T) {
	c := startRing(t)
	tr := c.startTraffic("a", "c", 256, 25*time.Millisecond)
	waitfor.Cond(t, "traffic a→c flowing", 20*time.Second, func() (bool, string) {
		_, ok := tr.FirstOKAfter(time.Time{})
		return ok, ""
	})
	kill := time.Now()
	c.stop("b", syscall.SIGKILL)
	c.waitRoute("a", "c", []string{"a", "e", "d", "c"})
	waitfor.Cond(t, "relay a→c resumed after b died", 20*time.Second, func() (bool, string) {
		_, ok := tr.FirstOKAfter(kill)
		return ok, ""
	})
	restored, _ := tr.FirstOKAfter(kill)
	tr.Halt()
	attempts, failed := tr.Counts()
	t.Logf("node b killed: a relay started %v after the kill delivered all its keys (%d requests, %d failed)",
		restored.Sub(kill).Round(time.Millisecond), attempts, failed)
	if keys := c.checkPools([][2]string{{"a", "c"}}); keys == 0 {
		t.Fatal("a and c share no keys after the test")
	}
	// Nobody routes through the dead node.
	for _, id := range []string{"a", "c", "d", "e"} {
		for _, dst := range []string{"a", "c", "d", "e"} {
			if dst == id {
				continue
			}
			if _, path := c.nextHop(id, dst); len(path) == 0 || slices.Contains(path, "b") {
				t.Errorf("route %s→%s = %v after b died", id, dst, path)
			}
		}
	}
}

// TestDrainLink drains the a–b link as an operator does before
// maintenance: traffic moves off it at once, with no fault, and comes back
// when the link is enabled again.
func TestDrainLink(t *testing.T) {
	c := startRing(t)
	ctx := context.Background()
	if err := c.nodes["a"].api.SetLinkState(ctx, "b", "out_of_service"); err != nil {
		t.Fatal(err)
	}
	c.waitRoute("a", "c", []string{"a", "e", "d", "c"})
	links, err := c.nodes["a"].api.Links(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range links {
		if l.Peer == "b" && (l.State != "out_of_service" || l.Usable || !l.Up) {
			t.Errorf("drained link: %+v; want up, out_of_service, not usable", l)
		}
	}
	if err := c.nodes["a"].api.SetLinkState(ctx, "b", "in_service"); err != nil {
		t.Fatal(err)
	}
	c.waitRoute("a", "c", []string{"a", "b", "c"})
}

// TestSIGTERM stops a node with SIGTERM: it exits 0.
func TestSIGTERM(t *testing.T) {
	if testing.Short() {
		t.Skip("runs qrelayd processes; skipped with -short")
	}
	c := newCluster(t, []string{"a", "b"}, [][2]string{{"a", "b"}})
	c.waitRoute("a", "b", []string{"a", "b"})
	for _, id := range []string{"a", "b"} {
		if err := c.stop(id, syscall.SIGTERM); err != nil {
			t.Errorf("node %s after SIGTERM: %v; want exit status 0\n%s", id, err, c.nodes[id].run.Output())
		}
	}
}

// TestSIGHUP reloads static routes: one added steers traffic, a config
// that changes anything else is refused with the node running on, and
// removing the route brings the computed one back. -check validates the
// same file without printing the link seeds.
func TestSIGHUP(t *testing.T) {
	if testing.Short() {
		t.Skip("runs qrelayd processes; skipped with -short")
	}
	c := newCluster(t, []string{"a", "b", "c"}, [][2]string{{"a", "b"}, {"b", "c"}, {"a", "c"}})
	c.waitRoute("a", "c", []string{"a", "c"})
	a := c.nodes["a"]
	var out bytes.Buffer
	if code := run([]string{"-config", a.cfgPath, "-check"}, &out); code != 0 || !strings.Contains(out.String(), "is valid") {
		t.Fatalf("-check: exit %d\n%s", code, out.String())
	}
	if strings.Contains(out.String(), fmt.Sprintf("%064x", 1)) || !strings.Contains(out.String(), "<redacted>") {
		t.Errorf("-check printed a link seed:\n%s", out.String())
	}
	// reload writes a's config with edit applied and sends a SIGHUP.
	reload := func(edit func(cfg *lab.Config)) {
		t.Helper()
		cfg := *a.cfg
		edit(&cfg)
		c.writeConfig(&cfg)
		if err := a.run.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
	}
	staticVia := func(via string) func() (bool, string) {
		return func() (bool, string) {
			rs, err := a.api.Routes(context.Background())
			for _, r := range rs {
				if r.Dst == "c" {
					return r.NextHop == via && r.Static == (via == "b"), fmt.Sprintf("%+v", r)
				}
			}
			return false, fmt.Sprint(err)
		}
	}
	reload(func(cfg *lab.Config) { cfg.Routes = []lab.Route{{Dst: "c", Via: "b"}} })
	waitfor.Cond(t, "static route a→c via b after SIGHUP", 10*time.Second, staticVia("b"))

	reload(func(cfg *lab.Config) { cfg.KM.CompletionTimeout = 4 * time.Second })
	waitfor.Cond(t, "the refusal of a km change in the log", 10*time.Second, func() (bool, string) {
		return strings.Contains(a.run.Output(), "config not reloaded; restart the node to apply it"), ""
	})
	if ok, r := staticVia("b")(); !ok || !a.alive() {
		t.Fatalf("after a refused reload: route %s, node alive %v", r, a.alive())
	}
	reload(func(*lab.Config) {})
	waitfor.Cond(t, "computed route a→c back after SIGHUP", 10*time.Second, staticVia("c"))
}

// TestRingNodeRestart kills node b (SIGKILL) while a relays to c through
// it, and starts it again with the same config: its links agree on their
// pads again by themselves, the short route comes back, and a relay
// through b is delivered within a bound, counted from b's process start.
func TestRingNodeRestart(t *testing.T) {
	c := startRing(t)
	tr := c.startTraffic("a", "c", 256, 25*time.Millisecond)
	waitfor.Cond(t, "traffic a→c flowing", 20*time.Second, func() (bool, string) {
		_, ok := tr.FirstOKAfter(time.Time{})
		return ok, ""
	})
	c.stop("b", syscall.SIGKILL)
	c.waitRoute("a", "c", []string{"a", "e", "d", "c"})
	tr.Halt()
	started := time.Now()
	c.start("b")
	heal := c.startTraffic("a", "c", 256, 5*time.Millisecond)
	var routed time.Time
	waitfor.Cond(t, "relay a→c through the restarted b", 20*time.Second, func() (bool, string) {
		if routed.IsZero() {
			if !viaB(c) {
				return false, "route a→c not through b yet"
			}
			routed = time.Now()
		}
		_, ok := heal.FirstDeliveredAfter(routed)
		return ok, "no relay delivered since the route came back"
	})
	healed, _ := heal.FirstDeliveredAfter(routed)
	heal.Halt()
	t.Logf("node b restarted: routes back and a relay a→c through it delivered %v after its process started", healed.Sub(started).Round(time.Millisecond))
	const bound = 3 * time.Second
	if d := healed.Sub(started); d > bound {
		t.Errorf("the network took %v to heal after b restarted, want at most %v", d.Round(time.Millisecond), bound)
	}
	if keys := c.checkPools([][2]string{{"a", "c"}}); keys == 0 {
		t.Fatal("a and c share no keys after the test")
	}
}
