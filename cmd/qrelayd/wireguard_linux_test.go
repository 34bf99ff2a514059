//go:build linux

package main

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/qrelay/qrelay/internal/lab"
	"github.com/qrelay/qrelay/internal/waitfor"
	"github.com/qrelay/qrelay/node/adminapi"
	"github.com/qrelay/qrelay/wgkey"
	"github.com/qrelay/qrelay/wgkey/wgtest"
	"golang.zx2c4.com/wireguard/wgctrl"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// TestWireGuardThroughWgctrl is a WireGuard tunnel as qrelayd serves one
// it does not embed: two qrelayd processes, each rotating, from its
// wireguard: config, the PSK of a wireguard-go device on a real TUN
// interface in a network namespace of its own, reached through wgctrl and
// the device's UAPI socket. A UDP echo crosses the tunnel between the
// namespaces every 10 ms while the PSK rotates every second; for every
// epoch both devices hold the same new PSK and completed a handshake after
// it was installed (a WireGuard handshake completes only with equal PSKs).
func TestWireGuardThroughWgctrl(t *testing.T) {
	if testing.Short() {
		t.Skip("runs qrelayd processes for 20 s; skipped with -short")
	}
	wgtest.SkipUnlessNetns(t)
	const (
		interval  = time.Second
		rotations = 15
	)
	id := os.Getpid() % 100000
	wa := wgtest.NewNetnsPeer(t, fmt.Sprintf("qrdA%d", id), fmt.Sprintf("qrelayd-a-%d", id), "10.80.0.1")
	wb := wgtest.NewNetnsPeer(t, fmt.Sprintf("qrdB%d", id), fmt.Sprintf("qrelayd-b-%d", id), "10.80.0.2")
	psk, err := wgtypes.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	wa.Connect(t, wb, psk)
	wb.Connect(t, wa, psk)
	c := newClusterWith(t, []string{"a", "b"}, [][2]string{{"a", "b"}}, func(id string, cfg *lab.Config) {
		me, peer, remote := wa, wb, "b"
		if id == "b" {
			me, peer, remote = wb, wa, "a"
		}
		cfg.WireGuard = []lab.WireGuardTunnel{{Name: "dc", RemoteNode: remote, Interface: me.Iface, PeerPublicKey: peer.Public.String(), Interval: time.Second}}
	})
	c.waitRoute("a", "b", []string{"a", "b"})
	wgc, err := wgctrl.New()
	if err != nil {
		t.Fatal(err)
	}
	defer wgc.Close()

	tunnel := func(id string) (adminapi.Tunnel, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		ts, err := c.nodes[id].api.Tunnels(ctx)
		if err == nil && len(ts) != 1 {
			err = fmt.Errorf("node %s shows %d tunnels, want 1", id, len(ts))
		}
		if err != nil {
			return adminapi.Tunnel{}, err
		}
		return ts[0], nil
	}
	// inUse says what is missing for epoch n to be in use, "" if nothing.
	var prev wgtypes.Key
	inUse := func(n uint64) (bool, string) {
		ta, errA := tunnel("a")
		tb, errB := tunnel("b")
		if errA != nil || errB != nil {
			return false, fmt.Sprintf("admin API: %v, %v", errA, errB)
		}
		if ta.Epoch != n || tb.Epoch != n || ta.FailedClosed || tb.FailedClosed {
			return false, fmt.Sprintf("installed epochs a %d, b %d (failed closed %v, %v)", ta.Epoch, tb.Epoch, ta.FailedClosed, tb.FailedClosed)
		}
		ia, errA := wgtest.WgctrlInfo(wgc, wa.Iface, wb.Public)
		ib, errB := wgtest.WgctrlInfo(wgc, wb.Iface, wa.Public)
		begin := wgkey.EpochStart(n, interval)
		switch {
		case errA != nil || errB != nil:
			return false, fmt.Sprintf("wgctrl: %v, %v", errA, errB)
		case ia.PSK != ib.PSK:
			return false, "the two devices hold different PSKs"
		case ia.PSK == prev || ia.PSK == psk:
			return false, "the PSK did not change"
		case !ia.LastHandshake.After(begin) || !ib.LastHandshake.After(begin):
			return false, fmt.Sprintf("no handshake since the boundary (last: A %v, B %v)", ia.LastHandshake.Sub(begin), ib.LastHandshake.Sub(begin))
		}
		prev = ia.PSK
		return true, ""
	}
	// The first epochs may fail closed while the pools fill: measure from
	// an epoch in use on.
	waitfor.Cond(t, "an epoch's stream key in use at both ends", 30*time.Second, func() (bool, string) {
		return inUse(wgkey.EpochAt(time.Now(), interval))
	})
	echo := wgtest.NetnsEcho(t, wa, wb, 10*time.Millisecond)
	first := wgkey.EpochAt(time.Now(), interval) + 1
	for n := first; n < first+rotations; n++ {
		var why string
		for end := wgkey.EpochStart(n+1, interval); ; {
			var ok bool
			if ok, why = inUse(n); ok || time.Now().After(end) {
				break
			}
			time.Sleep(25 * time.Millisecond) // each look asks both nodes and both devices
		}
		if why != "" {
			t.Fatalf("epoch %d: %s", n, why)
		}
	}
	res := echo.Stop()
	ta, _ := tunnel("a")
	tb, _ := tunnel("b")
	t.Logf("qrelayd through wgctrl and UAPI sockets, TUN devices in two namespaces: %d rotations at 1 s, every new PSK in use at both ends; echo every 10 ms: %s", rotations, res)
	t.Logf("node a: %d rotations, %d failures, drives %v; node b: %d rotations, %d failures, drives %v", ta.Rotations, ta.Failures, ta.Drives, tb.Rotations, tb.Failures, tb.Drives)
	if res.AnsweredPercent() < 99.9 || res.MaxGap > 250*time.Millisecond {
		t.Errorf("echo across the rotations: %s; want ≥ 99.9 %% answered and no gap > 250ms", res)
	}
	if !ta.Drives || tb.Drives {
		t.Errorf("drives: a %v, b %v; want a only", ta.Drives, tb.Drives)
	}
}
