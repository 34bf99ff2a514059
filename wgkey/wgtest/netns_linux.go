//go:build linux

package wgtest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/ipc"
	"golang.zx2c4.com/wireguard/tun"
	"golang.zx2c4.com/wireguard/wgctrl"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// NetnsPeer is a WireGuard as qrelayd meets it outside tests: a
// wireguard-go device on a real TUN interface that lives in a network
// namespace of its own, reached through its UAPI socket
// (/var/run/wireguard/<Iface>.sock) by wgctrl. Its outer UDP socket is on
// the loopback of the test's namespace, so two NetnsPeers need no veth.
type NetnsPeer struct {
	NS, Iface       string
	Dev             *device.Device
	Private, Public wgtypes.Key
	Addr            netip.Addr // tunnel address, inside NS
	Port            int        // outer UDP port, on 127.0.0.1
}

// SkipUnlessNetns skips the test unless it can make NetnsPeers: root,
// /dev/net/tun and ip(8).
func SkipUnlessNetns(tb testing.TB) {
	tb.Helper()
	if os.Geteuid() != 0 {
		tb.Skip("needs root: TUN devices, network namespaces, /var/run/wireguard")
	}
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		tb.Skipf("no /dev/net/tun: %v", err)
	}
	if _, err := exec.LookPath("ip"); err != nil {
		tb.Skip("no ip command (apt-get install iproute2)")
	}
}

// NewNetnsPeer creates the TUN interface iface, moves it into a new
// namespace ns with the address addr/24, starts a wireguard-go device on
// it and serves its UAPI socket; all of it is undone when the test ends.
// The kernel WireGuard module is not needed.
func NewNetnsPeer(tb testing.TB, iface, ns, addr string) *NetnsPeer {
	tb.Helper()
	SkipUnlessNetns(tb)
	s := &NetnsPeer{NS: ns, Iface: iface, Addr: netip.MustParseAddr(addr)}
	tdev, err := tun.CreateTUN(iface, MTU)
	if err != nil {
		tb.Fatalf("wgtest: creating TUN %s: %v", iface, err)
	}
	exec.Command("ip", "netns", "del", ns).Run() // left by a crashed run, if any
	ipCmd(tb, "netns", "add", ns)
	// Cleanups run last first: the device (and its TUN, hence the
	// interface) closes before the namespace goes.
	tb.Cleanup(func() { ipCmd(tb, "netns", "del", ns) })
	ipCmd(tb, "link", "set", iface, "netns", ns)
	ipCmd(tb, "-n", ns, "addr", "add", addr+"/24", "dev", iface)
	ipCmd(tb, "-n", ns, "link", "set", iface, "up")
	ipCmd(tb, "-n", ns, "link", "set", "lo", "up")

	// The outer UDP socket opens in this process's namespace, on loopback.
	var priv wgtypes.Key
	s.Dev, priv, s.Port = startDevice(tb, iface, tdev)
	s.Private, s.Public = priv, priv.PublicKey()
	ServeUAPI(tb, iface, s.Dev)
	return s
}

// Connect makes p a peer of s, with the PSK psk.
func (s *NetnsPeer) Connect(tb testing.TB, p *NetnsPeer, psk wgtypes.Key) {
	tb.Helper()
	connect(tb, s.Dev, p.Public, psk, p.Port, p.Addr)
}

// NetnsEcho runs an echo from a's namespace to a server in b's, across
// the tunnel, a datagram every `every`.
func NetnsEcho(tb testing.TB, a, b *NetnsPeer, every time.Duration) *EchoStats {
	tb.Helper()
	var srv net.PacketConn
	var cli net.Conn
	InNetns(tb, b.NS, func() (err error) {
		srv, err = net.ListenPacket("udp4", netip.AddrPortFrom(b.Addr, EchoPort).String())
		return err
	})
	InNetns(tb, a.NS, func() (err error) {
		cli, err = net.Dial("udp4", netip.AddrPortFrom(b.Addr, EchoPort).String())
		return err
	})
	return StartEcho(tb, cli, srv, every)
}

// ServeUAPI serves dev's UAPI socket, /var/run/wireguard/<name>.sock, as
// wireguard-go's main.go does, so wgctrl can reach it, until the test
// ends. It needs root; without, the test is skipped.
func ServeUAPI(tb testing.TB, name string, dev *device.Device) {
	tb.Helper()
	if os.Geteuid() != 0 {
		tb.Skip("serving a UAPI socket in /var/run/wireguard needs root")
	}
	f, err := ipc.UAPIOpen(name)
	if err != nil {
		tb.Fatalf("wgtest: UAPI socket for %s: %v", name, err)
	}
	l, err := ipc.UAPIListen(name, f)
	if err != nil {
		f.Close()
		tb.Fatalf("wgtest: UAPI socket for %s: %v", name, err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go dev.IpcHandle(c)
		}
	}()
	tb.Cleanup(func() {
		l.Close() // unlinks the socket
		f.Close()
		<-done
		if err := os.Remove("/var/run/wireguard/" + name + ".sock"); err != nil && !errors.Is(err, os.ErrNotExist) {
			tb.Errorf("wgtest: removing the UAPI socket: %v", err)
		}
	})
}

// WgctrlInfo reads iface's view of peer through wgctrl.
func WgctrlInfo(c *wgctrl.Client, iface string, peer wgtypes.Key) (PeerInfo, error) {
	d, err := c.Device(iface)
	if err != nil {
		return PeerInfo{}, err
	}
	for _, p := range d.Peers {
		if p.PublicKey == peer {
			return PeerInfo{PSK: p.PresharedKey, LastHandshake: p.LastHandshakeTime}, nil
		}
	}
	return PeerInfo{}, fmt.Errorf("wgtest: %s has no peer %s", iface, peer)
}

// InNetns runs f on a thread that has entered the network namespace ns, so
// that the sockets f opens live there. The thread is never unlocked, so it
// ends with its goroutine rather than go back to the runtime in ns.
func InNetns(tb testing.TB, ns string, f func() error) {
	tb.Helper()
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
		tb.Fatalf("wgtest: in namespace %s: %v", ns, err)
	}
}

func ipCmd(tb testing.TB, args ...string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "ip", args...).CombinedOutput(); err != nil {
		tb.Fatalf("wgtest: ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}
