package node

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/qrelay/qrelay/internal/lab"
	"github.com/qrelay/qrelay/internal/waitfor"
	"github.com/qrelay/qrelay/supply"
	"github.com/qrelay/qrelay/wgkey"
	"github.com/qrelay/qrelay/wgkey/wgtest"
)

// wgCluster is two nodes a–b over a simulated QKD link, each rotating the
// PSK of one embedded wireguard-go device of a wgtest.Pair (a's is A).
func wgCluster(t *testing.T, interval string, policy string) (*testCluster, *wgtest.Pair) {
	t.Helper()
	pair := wgtest.NewPair(t)
	every, err := time.ParseDuration(interval)
	if err != nil {
		t.Fatal(err)
	}
	configure := func(id string, cfg *lab.Config) {
		remote, peer := "b", pair.B.Public
		if id == "b" {
			remote, peer = "a", pair.A.Public
		}
		cfg.WireGuard = []lab.WireGuardTunnel{{Name: "dc", RemoteNode: remote, Interface: "wg-" + id, PeerPublicKey: peer.String(), Interval: every, OnMissingKey: policy}}
	}
	c := newTestCluster(t, []string{"a", "b"}, [][2]string{{"a", "b"}}, clusterOpts{
		configure: configure,
		refills:   true,
		wireguard: map[string]map[string]wgkey.Writer{
			"a": {"wg-a": wgkey.NewDeviceWriter(pair.A.Dev)},
			"b": {"wg-b": wgkey.NewDeviceWriter(pair.B.Dev)},
		},
	})
	c.waitPath("a", "b", "a", "b")
	return c, pair
}

func (c *testCluster) tunnel(id string) TunnelInfo {
	c.tb.Helper()
	ts := c.nodes[id].Tunnels()
	if len(ts) != 1 {
		c.tb.Fatalf("node %s has %d tunnels, want 1", id, len(ts))
	}
	return ts[0]
}

// TestWireGuardHitlessRotationFromNodes is the tunnel as deployed: two
// wireguard-go peers over netstack and loopback UDP, each fed by its own
// node of a two-node network, the PSK rotating every second while a UDP
// echo crosses the tunnel every 10 ms. For every epoch it checks that
// both devices hold the same new PSK, that it is the key of the nodes'
// stream for that epoch, and that a handshake completed after it was
// installed at both ends (a WireGuard handshake only completes when the
// PSKs are equal, so the new PSK is in use).
func TestWireGuardHitlessRotationFromNodes(t *testing.T) {
	if testing.Short() {
		t.Skip("takes 70 s: 62 rotations of one second")
	}
	const (
		interval  = time.Second
		rotations = 62 // ≥ 60 full epochs
	)
	c, pair := wgCluster(t, "1s", "fail_closed")
	// The rotators start before the pools hold keys, so the first epochs
	// may fail closed; the measurement starts once both ends have
	// installed a stream key and completed a handshake with it.
	waitfor.Bool(t, "both ends installed a stream key and shook hands with it", 30*time.Second, func() bool {
		a, b := c.tunnel("a"), c.tunnel("b")
		if a.Rotations == 0 || b.Rotations == 0 || a.FailedClosed || b.FailedClosed || a.Epoch != b.Epoch {
			return false
		}
		ia, err := pair.A.Info(pair.B.Public)
		return err == nil && ia.LastHandshake.After(wgkey.EpochStart(a.Epoch, interval))
	})
	failsA, failsB := c.tunnel("a").Failures, c.tunnel("b").Failures
	echo := pair.Echo(t, 10*time.Millisecond)
	first := wgkey.EpochAt(time.Now(), interval) + 1
	// streamKey reads key n of the stream at both nodes, while the
	// rotators hold it ahead of its epoch (they release it once
	// installed).
	streamKey := func(n uint64) ([supply.StreamKeySize]byte, error) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		ka, err := c.nodes["a"].Supply().Stream("dc").Key(ctx, n)
		if err != nil {
			return ka, err
		}
		kb, err := c.nodes["b"].Supply().Stream("dc").Key(ctx, n)
		if err == nil && kb != ka {
			err = fmt.Errorf("nodes a and b hold different keys for index %d", n)
		}
		return ka, err
	}
	want, err := streamKey(first)
	if err != nil {
		t.Fatal(err)
	}
	var prev wgtest.PeerInfo
	bad := 0
	for n := first; n < first+rotations; n++ {
		next, err := streamKey(n + 1)
		if err != nil {
			t.Fatalf("epoch %d: %v", n+1, err)
		}
		begin, end := wgkey.EpochStart(n, interval), wgkey.EpochStart(n+1, interval)
		var why string
		for {
			why = epochInUse(c, pair, n, begin, prev)
			if why == "" || time.Now().After(end) {
				break
			}
			time.Sleep(25 * time.Millisecond) // each look reads both devices and both nodes
		}
		if why != "" {
			t.Errorf("epoch %d: %s", n, why)
			if bad++; bad > 3 {
				t.FailNow()
			}
			want = next
			continue
		}
		prev, _ = pair.A.Info(pair.B.Public)
		if [supply.StreamKeySize]byte(prev.PSK) != want {
			t.Errorf("epoch %d: the PSK is not the stream's key %d", n, n)
		}
		want = next
	}
	res := echo.Stop()
	a, b := c.tunnel("a"), c.tunnel("b")
	t.Logf("%d rotations from the nodes' key stream, every new PSK in use at both ends; echo every 10 ms: %s", rotations, res)
	t.Logf("node a (drives): %d rotations, %d failures (at start, before the pools held keys: %d), %d drives repeated; node b: %d rotations, %d failures (%d), %d drives repeated; stream at a: %+v",
		a.Rotations, a.Failures, failsA, a.Redrives, b.Rotations, b.Failures, failsB, b.Redrives, a.Stream)
	if a.Failures != failsA || b.Failures != failsB {
		t.Errorf("rotations failed during the measurement: a %q, b %q", a.LastError, b.LastError)
	}
	if res.AnsweredPercent() < 99.9 {
		t.Errorf("echo: %.3f %% answered, want ≥ 99.9 %%", res.AnsweredPercent())
	}
	if res.MaxGap > 250*time.Millisecond {
		t.Errorf("echo: largest gap %v, want ≤ 250ms", res.MaxGap)
	}
	if !a.Drives || b.Drives {
		t.Errorf("drives: a %v, b %v; want a only (the stream's owner)", a.Drives, b.Drives)
	}
}

// epochInUse says what is missing for epoch n to be in use ("" if
// nothing): both nodes installed n from the stream, the devices hold the
// same PSK, a new one, and each completed a handshake since begin.
func epochInUse(c *testCluster, pair *wgtest.Pair, n uint64, begin time.Time, prev wgtest.PeerInfo) string {
	ta, tb := c.tunnel("a"), c.tunnel("b")
	if ta.Epoch != n || tb.Epoch != n || ta.FailedClosed || tb.FailedClosed {
		return fmt.Sprintf("installed epochs a %d, b %d (failed closed %v, %v)", ta.Epoch, tb.Epoch, ta.FailedClosed, tb.FailedClosed)
	}
	ia, errA := pair.A.Info(pair.B.Public)
	ib, errB := pair.B.Info(pair.A.Public)
	switch {
	case errA != nil || errB != nil:
		return fmt.Sprintf("reading the devices: %v, %v", errA, errB)
	case ia.PSK != ib.PSK:
		return "the two devices hold different PSKs"
	case ia.PSK == prev.PSK:
		return "the PSK did not change"
	case !ia.LastHandshake.After(begin) || !ib.LastHandshake.After(begin):
		return fmt.Sprintf("no handshake since the boundary (last: A %v, B %v)", ia.LastHandshake.Sub(begin), ib.LastHandshake.Sub(begin))
	}
	return ""
}

// TestWireGuardFailsClosedWithoutKeys: a tunnel whose other node does not
// list it gets no stream keys, so its PSK is random and no handshake
// completes; a keep_current tunnel keeps its PSK.
func TestWireGuardFailsClosedWithoutKeys(t *testing.T) {
	for _, policy := range []string{"fail_closed", "keep_current"} {
		t.Run(policy, func(t *testing.T) {
			pair := wgtest.NewPair(t)
			before, err := pair.A.Info(pair.B.Public)
			if err != nil {
				t.Fatal(err)
			}
			c := newTestCluster(t, []string{"a", "b"}, [][2]string{{"a", "b"}}, clusterOpts{
				configure: func(id string, cfg *lab.Config) {
					if id != "a" {
						return // b does not list the tunnel: no stream keys
					}
					cfg.WireGuard = []lab.WireGuardTunnel{{Name: "dc", RemoteNode: "b", Interface: "wg-a", PeerPublicKey: pair.B.Public.String(), Interval: time.Second, OnMissingKey: policy}}
				},
				wireguard: map[string]map[string]wgkey.Writer{"a": {"wg-a": wgkey.NewDeviceWriter(pair.A.Dev)}},
			})
			waitfor.Bool(t, "a missed epoch", 10*time.Second, func() bool { return c.tunnel("a").Failures > 0 })
			tun := c.tunnel("a")
			info, err := pair.A.Info(pair.B.Public)
			if err != nil {
				t.Fatal(err)
			}
			switch policy {
			case "fail_closed":
				if !tun.FailedClosed || info.PSK == before.PSK {
					t.Fatalf("failed closed %v, PSK changed %v; want a random PSK installed", tun.FailedClosed, info.PSK != before.PSK)
				}
				// The tunnel no longer completes a handshake.
				// Two seconds of echoes (an observation window, two
				// epochs): none may cross.
				res := pair.Echo(t, 10*time.Millisecond)
				time.Sleep(2 * time.Second)
				if r := res.Stop(); r.Answered != 0 || r.Sent < 100 {
					t.Fatalf("echo through a tunnel that failed closed: %s", r)
				}
			case "keep_current":
				if tun.FailedClosed || info.PSK != before.PSK {
					t.Fatalf("failed closed %v, PSK changed %v; want the PSK kept", tun.FailedClosed, info.PSK != before.PSK)
				}
			}
		})
	}
}

// TestWireGuardRotationAcrossRestart restarts each node of a tunnel while
// its PSK rotates every second: in every epoch the two devices hold the
// same PSK or one of them failed closed (a random PSK: no session), never
// two different stream keys, and a few epochs after the restart the
// tunnel rotates on stream keys again with handshakes completing.
func TestWireGuardRotationAcrossRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("takes 30 s: rotations of one second around two restarts")
	}
	const interval = time.Second
	c, pair := wgCluster(t, "1s", "fail_closed")
	healthy := func(n uint64) bool {
		return epochInUse(c, pair, n, wgkey.EpochStart(n, interval), wgtest.PeerInfo{}) == ""
	}
	waitHealthy := func(what string) {
		waitfor.Bool(t, what, 30*time.Second, func() bool {
			return healthy(wgkey.EpochAt(time.Now(), interval))
		})
	}
	waitHealthy("both ends on the same stream key with a handshake")
	for _, id := range []string{"a", "b"} { // the stream's owner, then the other node
		c.restart(id)
		// Watch every epoch until the tunnel is healthy again: whenever
		// both ends say they installed the same epoch's stream key, the
		// two devices must hold the same PSK.
		deadline := time.Now().Add(20 * time.Second)
		for !healthy(wgkey.EpochAt(time.Now(), interval)) {
			if time.Now().After(deadline) {
				t.Fatalf("restart of %s: the tunnel did not rotate on stream keys again within 20 s (a %+v, b %+v)", id, c.tunnel("a"), c.tunnel("b"))
			}
			ta, tb := c.tunnel("a"), c.tunnel("b")
			ia, errA := pair.A.Info(pair.B.Public)
			ib, errB := pair.B.Info(pair.A.Public)
			ta2, tb2 := c.tunnel("a"), c.tunnel("b")
			same := ta.Epoch == tb.Epoch && ta == ta2 && tb == tb2 && !ta.FailedClosed && !tb.FailedClosed && ta.Rotations > 0 && tb.Rotations > 0
			if same && errA == nil && errB == nil && ia.PSK != ib.PSK {
				t.Fatalf("restart of %s, epoch %d: both ends installed their stream key, and the two PSKs differ (a %+v, b %+v)", id, ta.Epoch, ta, tb)
			}
			time.Sleep(25 * time.Millisecond) // each look reads both devices and both nodes
		}
		t.Logf("restart of %s: rotating on stream keys again (a %+v, b %+v)", id, c.tunnel("a"), c.tunnel("b"))
		// The owner does not burn keys the other node lost: it takes new
		// ones once the pools are reconciled.
		if r := c.nodes["a"].Supply().Stream("dc").Stats().Refused; r > 200 {
			t.Errorf("restart of %s: the other node refused %d stream keys", id, r)
		}
	}
}
