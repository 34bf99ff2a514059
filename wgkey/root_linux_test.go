//go:build linux

package wgkey

import (
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/qrelay/qrelay/internal/waitfor"
	"github.com/qrelay/qrelay/wgkey/wgtest"
	"golang.zx2c4.com/wireguard/wgctrl"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// TestRootNetnsWgctrl rotates PSKs through wgctrl over wireguard-go's UAPI
// socket, as qrelay does for a WireGuard it does not embed: two devices on
// real TUN interfaces in two network namespaces, their outer UDP on this
// namespace's loopback, a UDP echo between the namespaces across the tunnel.
// The kernel WireGuard module is not needed (nor available here): wgctrl
// finds the UAPI sockets in /var/run/wireguard.
func TestRootNetnsWgctrl(t *testing.T) {
	if testing.Short() {
		t.Skip("takes 12 s")
	}
	wgtest.SkipUnlessNetns(t)
	t.Parallel()
	const (
		interval  = time.Second
		rotations = 10
	)
	id := os.Getpid() % 100000
	a := wgtest.NewNetnsPeer(t, fmt.Sprintf("wgkA%d", id), fmt.Sprintf("wgkey-a-%d", id), "10.79.0.1")
	b := wgtest.NewNetnsPeer(t, fmt.Sprintf("wgkB%d", id), fmt.Sprintf("wgkey-b-%d", id), "10.79.0.2")
	psk, _ := wgtypes.GenerateKey()
	a.Connect(t, b, psk)
	b.Connect(t, a, psk)

	c, err := wgctrl.New()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	for _, s := range []*wgtest.NetnsPeer{a, b} {
		if d, err := c.Device(s.Iface); err != nil || d.Type != wgtypes.Userspace || len(d.Peers) != 1 {
			t.Fatalf("wgctrl does not see %s over its UAPI socket: %v", s.Iface, err)
		}
	}

	seed := "netns " + time.Now().String()
	wa, wb := record(NewWgctrlWriter(c, a.Iface)), record(NewWgctrlWriter(c, b.Iface))
	ra, err := NewRotator(wa, []Tunnel{{Name: "to-b", Peer: b.Public, Interval: interval, Drive: true, Source: newSource(seed)}}, Options{Log: testLog(t)})
	if err != nil {
		t.Fatal(err)
	}
	rb, err := NewRotator(wb, []Tunnel{{Name: "to-a", Peer: a.Public, Interval: interval, Source: newSource(seed)}}, Options{Log: testLog(t)})
	if err != nil {
		t.Fatal(err)
	}
	stopA, stopB := run(t, ra), run(t, rb)
	infos := func() (ia, ib wgtest.PeerInfo, err error) {
		if ia, err = wgtest.WgctrlInfo(c, a.Iface, b.Public); err == nil {
			ib, err = wgtest.WgctrlInfo(c, b.Iface, a.Public)
		}
		return
	}

	// The echo measures the rotations, so it starts once the tunnel is up
	// under a key of the stream. Before, the tunnel has no session yet and
	// its first packet races the two sides' first installs: a handshake
	// under different PSKs, then wgctrl's drives, which stop the session
	// (under load, 250 ms without an answer).
	if ok, why := waitfor.Until(time.Now().Add(3*interval), pollEvery, func() (bool, string) {
		return inUse(wa, wb, streamKey(seed, EpochAt(time.Now(), interval)), infos)
	}); !ok {
		t.Fatalf("the tunnel did not come up under a key of the stream: %s", why)
	}
	echo := wgtest.NetnsEcho(t, a, b, 10*time.Millisecond)
	first := EpochAt(time.Now(), interval) + 1
	for n := first; n < first+rotations; n++ {
		if ok, why := waitfor.Until(EpochStart(n+1, interval), pollEvery, func() (bool, string) { return inUse(wa, wb, streamKey(seed, n), infos) }); !ok {
			t.Fatalf("epoch %d: the new PSK is not in use: %s", n, why)
		}
	}
	// The echo crossed every rotation.
	res := echo.Stop()
	stopA()
	stopB()
	t.Logf("wgctrl over UAPI, TUN devices in two namespaces: %d rotations at %v, each new PSK proven in use; echo between the namespaces every 10ms: %s",
		rotations, interval, res)
	sa, sb := status(ra), status(rb)
	t.Logf("status A: rotations %d, failures %d, unconfirmed %d, drives repeated %d (each halts traffic for a handshake); B: rotations %d, failures %d",
		sa.Rotations, sa.Failures, sa.Unconfirmed, sa.Redrives, sb.Rotations, sb.Failures)
	if res.AnsweredPercent() < 99 || res.MaxGap > 250*time.Millisecond {
		t.Errorf("echo across the rotations: %s; want ≥ 99 %% answered and no gap > 250ms", res)
	}
	for _, r := range []*Rotator{ra, rb} {
		if s := status(r); s.Failures != 0 || s.Rotations < rotations {
			t.Errorf("status %+v", s)
		}
	}
	// The drive toggled the private key and put it back.
	if d, err := c.Device(a.Iface); err != nil || d.PrivateKey != a.Private {
		t.Errorf("A's private key after %d drives is not the one it had (err %v)", wa.driveCount(), err)
	}
}
