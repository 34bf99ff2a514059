//go:build linux

package wgkey

import (
	"context"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/qrelay/qrelay/wgkey/wgtest"
	"golang.org/x/sys/unix"
	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/tun"
	"golang.zx2c4.com/wireguard/wgctrl"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// nsSide is one side of TestRootNetnsWgctrl: a wireguard-go device on a
// real TUN interface that lives in its own network namespace.
type nsSide struct {
	ns, iface string
	dev       *device.Device
	priv, pub wgtypes.Key
	addr      netip.Addr
	port      int
}

// TestRootNetnsWgctrl rotates PSKs through wgctrl over wireguard-go's UAPI
// socket, as qrelay does for a WireGuard it does not embed: two devices on
// real TUN interfaces in two network namespaces, their outer UDP on this
// namespace's loopback, a UDP echo between the namespaces across the tunnel.
// The kernel WireGuard module is not needed (nor available here): wgctrl
// finds the UAPI sockets in /var/run/wireguard.
func TestRootNetnsWgctrl(t *testing.T) {
	switch {
	case testing.Short():
		t.Skip("takes 12 s")
	case os.Geteuid() != 0:
		t.Skip("needs root: TUN devices, network namespaces, /var/run/wireguard")
	}
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		t.Skipf("no /dev/net/tun: %v", err)
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("no ip command (apt-get install iproute2)")
	}
	t.Parallel()
	const (
		interval  = time.Second
		rotations = 10
	)
	id := os.Getpid() % 100000
	a := newNsSide(t, fmt.Sprintf("wgkA%d", id), fmt.Sprintf("wgkey-a-%d", id), "10.79.0.1")
	b := newNsSide(t, fmt.Sprintf("wgkB%d", id), fmt.Sprintf("wgkey-b-%d", id), "10.79.0.2")
	psk, _ := wgtypes.GenerateKey()
	a.connect(t, b, psk)
	b.connect(t, a, psk)

	c, err := wgctrl.New()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	for _, s := range []*nsSide{a, b} {
		if d, err := c.Device(s.iface); err != nil || d.Type != wgtypes.Userspace || len(d.Peers) != 1 {
			t.Fatalf("wgctrl does not see %s over its UAPI socket: %v", s.iface, err)
		}
	}

	seed := "netns " + time.Now().String()
	wa, wb := record(NewWgctrlWriter(c, a.iface)), record(NewWgctrlWriter(c, b.iface))
	ra, err := NewRotator(wa, []Tunnel{{Name: "to-b", Peer: b.pub, Interval: interval, Drive: true, Source: newSource(seed)}}, Options{Log: testLog(t)})
	if err != nil {
		t.Fatal(err)
	}
	rb, err := NewRotator(wb, []Tunnel{{Name: "to-a", Peer: a.pub, Interval: interval, Source: newSource(seed)}}, Options{Log: testLog(t)})
	if err != nil {
		t.Fatal(err)
	}
	stopA, stopB := run(t, ra), run(t, rb)

	// The echo: a server in B's namespace, a client in A's, both sockets
	// opened from a thread that entered the namespace.
	var srv net.PacketConn
	var cli net.Conn
	inNetns(t, b.ns, func() (err error) {
		srv, err = net.ListenPacket("udp4", netip.AddrPortFrom(b.addr, wgtest.EchoPort).String())
		return err
	})
	inNetns(t, a.ns, func() (err error) {
		cli, err = net.Dial("udp4", netip.AddrPortFrom(b.addr, wgtest.EchoPort).String())
		return err
	})
	echo := wgtest.StartEcho(t, cli, srv, 10*time.Millisecond)

	infos := func() (ia, ib wgtest.PeerInfo, err error) {
		if ia, err = wgctrlInfo(c, a.iface, b.pub); err == nil {
			ib, err = wgctrlInfo(c, b.iface, a.pub)
		}
		return
	}
	first := EpochAt(time.Now(), interval) + 1
	for n := first; n < first+rotations; n++ {
		if why := waitFor(EpochStart(n+1, interval), func() (bool, string) { return inUse(wa, wb, streamKey(seed, n), infos) }); why != "" {
			t.Fatalf("epoch %d: the new PSK is not in use: %s", n, why)
		}
	}
	// The echo crossed every rotation.
	res := echo.Stop()
	stopA()
	stopB()
	t.Logf("wgctrl over UAPI, TUN devices in two namespaces: %d rotations at %v, each new PSK proven in use; echo between the namespaces every 10ms: %s",
		rotations, interval, res)
	if res.AnsweredPercent() < 99 || res.MaxGap > 250*time.Millisecond {
		t.Errorf("echo across the rotations: %s; want ≥ 99 %% answered and no gap > 250ms", res)
	}
	for _, r := range []*Rotator{ra, rb} {
		if s := status(r); s.Failures != 0 || s.Rotations < rotations {
			t.Errorf("status %+v", s)
		}
	}
	// The drive toggled the private key and put it back.
	if d, err := c.Device(a.iface); err != nil || d.PrivateKey != a.priv {
		t.Errorf("A's private key after %d drives is not the one it had (err %v)", wa.driveCount(), err)
	}
}

// newNsSide creates a TUN interface, moves it into a new namespace with its
// address, starts a wireguard-go device on it and serves its UAPI socket;
// all of it is undone when the test ends.
func newNsSide(t *testing.T, iface, ns, addr string) *nsSide {
	s := &nsSide{ns: ns, iface: iface, addr: netip.MustParseAddr(addr)}
	tdev, err := tun.CreateTUN(iface, wgtest.MTU)
	if err != nil {
		t.Fatalf("creating TUN %s: %v", iface, err)
	}
	exec.Command("ip", "netns", "del", ns).Run() // left by a crashed run with the same pid, if any
	ipCmd(t, "netns", "add", ns)
	// Cleanups run last first: the device (and its TUN, hence the
	// interface) closes before the namespace goes.
	t.Cleanup(func() { ipCmd(t, "netns", "del", ns) })
	ipCmd(t, "link", "set", iface, "netns", ns)
	ipCmd(t, "-n", ns, "addr", "add", addr+"/24", "dev", iface)
	ipCmd(t, "-n", ns, "link", "set", iface, "up")
	ipCmd(t, "-n", ns, "link", "set", "lo", "up")

	logf := func(format string, args ...any) { t.Logf("wireguard %s: "+format, append([]any{iface}, args...)...) }
	s.dev = device.NewDevice(tdev, conn.NewDefaultBind(), &device.Logger{Verbosef: device.DiscardLogf, Errorf: logf})
	t.Cleanup(s.dev.Close)
	if s.priv, err = wgtypes.GeneratePrivateKey(); err != nil {
		t.Fatal(err)
	}
	s.pub = s.priv.PublicKey()
	// The outer UDP socket opens in this process's namespace, on loopback.
	if err := s.dev.IpcSet("private_key=" + hex.EncodeToString(s.priv[:]) + "\nlisten_port=0\n"); err != nil {
		t.Fatal(err)
	}
	if err := s.dev.Up(); err != nil {
		t.Fatal(err)
	}
	get, err := s.dev.IpcGet()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(get, "\n") {
		if v, ok := strings.CutPrefix(l, "listen_port="); ok {
			fmt.Sscan(v, &s.port)
		}
	}
	serveUAPI(t, iface, s.dev)
	return s
}

func (s *nsSide) connect(t *testing.T, p *nsSide, psk wgtypes.Key) {
	cfg := fmt.Sprintf("public_key=%s\npreshared_key=%s\nendpoint=127.0.0.1:%d\nallowed_ip=%s/32\n",
		hex.EncodeToString(p.pub[:]), hex.EncodeToString(psk[:]), p.port, p.addr)
	if err := s.dev.IpcSet(cfg); err != nil {
		t.Fatal(err)
	}
}

func ipCmd(t *testing.T, args ...string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "ip", args...).CombinedOutput(); err != nil {
		t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// inNetns runs f on a thread that has entered the network namespace ns, so
// that the sockets f opens live there. The thread is never unlocked, so it
// ends with its goroutine rather than go back to the runtime in ns.
func inNetns(t *testing.T, ns string, f func() error) {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		fd, err := unix.Open("/var/run/netns/"+ns, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			errc <- err
			return
		}
		defer unix.Close(fd)
		if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("setns: %w", err)
			return
		}
		errc <- f()
	}()
	if err := <-errc; err != nil {
		t.Fatalf("in namespace %s: %v", ns, err)
	}
}

// wgctrlInfo reads iface's view of peer through wgctrl.
func wgctrlInfo(c *wgctrl.Client, iface string, peer wgtypes.Key) (wgtest.PeerInfo, error) {
	d, err := c.Device(iface)
	if err != nil {
		return wgtest.PeerInfo{}, err
	}
	for _, p := range d.Peers {
		if p.PublicKey == peer {
			return wgtest.PeerInfo{PSK: p.PresharedKey, LastHandshake: p.LastHandshakeTime}, nil
		}
	}
	return wgtest.PeerInfo{}, fmt.Errorf("%s has no peer %s", iface, peer)
}
