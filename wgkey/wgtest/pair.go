package wgtest

import (
	"bufio"
	"encoding/hex"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/tun"
	"golang.zx2c4.com/wireguard/tun/netstack"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// Tunnel addresses of a Pair: A is AddrA, B is AddrB, one /32 each.
var (
	AddrA = netip.MustParseAddr("10.77.0.1")
	AddrB = netip.MustParseAddr("10.77.0.2")
)

// MTU of the tunnels.
const MTU = 1420

// Peer is one side of a Pair.
type Peer struct {
	Name    string
	Dev     *device.Device
	Net     *netstack.Net // the TUN's network stack: dial and listen inside the tunnel here
	Private wgtypes.Key
	Public  wgtypes.Key
	Addr    netip.Addr // tunnel address
	Port    int        // outer UDP port, on 127.0.0.1
}

// Pair is two embedded wireguard-go devices that are each other's peer.
type Pair struct{ A, B *Peer }

// NewPair starts a Pair, both sides configured with the same random PSK,
// and closes it when the test ends. No handshake has happened yet: the
// first packet sent starts one.
func NewPair(tb testing.TB) *Pair {
	tb.Helper()
	a := newPeer(tb, "A", AddrA)
	b := newPeer(tb, "B", AddrB)
	psk, err := wgtypes.GenerateKey()
	if err != nil {
		tb.Fatal(err)
	}
	for _, c := range [][2]*Peer{{a, b}, {b, a}} {
		connect(tb, c[0].Dev, c[1].Public, psk, c[1].Port, c[1].Addr)
	}
	return &Pair{A: a, B: b}
}

func newPeer(tb testing.TB, name string, addr netip.Addr) *Peer {
	tb.Helper()
	tdev, tnet, err := netstack.CreateNetTUN([]netip.Addr{addr}, nil, MTU)
	if err != nil {
		tb.Fatalf("wgtest: netstack TUN for %s: %v", name, err)
	}
	dev, priv, port := startDevice(tb, name, tdev)
	return &Peer{Name: name, Dev: dev, Net: tnet, Private: priv, Public: priv.PublicKey(), Addr: addr, Port: port}
}

// startDevice starts a wireguard-go device on tdev with a new private key
// and its outer UDP socket on a port the kernel picks, in the calling
// process's namespace; it closes when the test ends.
func startDevice(tb testing.TB, name string, tdev tun.Device) (*device.Device, wgtypes.Key, int) {
	tb.Helper()
	priv, err := wgtypes.GeneratePrivateKey()
	if err != nil {
		tb.Fatal(err)
	}
	logf := func(format string, args ...any) { tb.Logf("wireguard %s: "+format, append([]any{name}, args...)...) }
	dev := device.NewDevice(tdev, conn.NewDefaultBind(), &device.Logger{Verbosef: device.DiscardLogf, Errorf: logf})
	tb.Cleanup(dev.Close) // also closes the TUN
	// listen_port=0: the kernel picks a free port, read back below.
	if err := dev.IpcSet("private_key=" + hexKey(priv) + "\nlisten_port=0\n"); err != nil {
		tb.Fatalf("wgtest: configuring %s: %v", name, err)
	}
	// Up explicitly: a device whose TUN was moved to another namespace
	// does not see its link come up.
	if err := dev.Up(); err != nil {
		tb.Fatalf("wgtest: starting %s: %v", name, err)
	}
	get, err := dev.IpcGet()
	if err != nil {
		tb.Fatal(err)
	}
	port := 0
	for _, l := range strings.Split(get, "\n") {
		if v, ok := strings.CutPrefix(l, "listen_port="); ok {
			port, _ = strconv.Atoi(v)
		}
	}
	if port == 0 {
		tb.Fatalf("wgtest: %s has no listen port", name)
	}
	return dev, priv, port
}

// connect makes the peer with public key pub, reached at 127.0.0.1:port
// and holding addr in the tunnel, a peer of dev with the PSK psk.
func connect(tb testing.TB, dev *device.Device, pub, psk wgtypes.Key, port int, addr netip.Addr) {
	tb.Helper()
	cfg := fmt.Sprintf("public_key=%s\npreshared_key=%s\nendpoint=127.0.0.1:%d\nallowed_ip=%s/32\n",
		hexKey(pub), hexKey(psk), port, addr)
	if err := dev.IpcSet(cfg); err != nil {
		tb.Fatalf("wgtest: configuring a peer: %v", err)
	}
}

// PeerInfo is what IpcGet says about one peer of a device.
type PeerInfo struct {
	PSK           wgtypes.Key
	LastHandshake time.Time // zero if none
}

// Info reads what p's device holds for the peer remote.
func (p *Peer) Info(remote wgtypes.Key) (PeerInfo, error) {
	get, err := p.Dev.IpcGet()
	if err != nil {
		return PeerInfo{}, err
	}
	return ParseIpcGet(get, remote)
}

// ParseIpcGet reads the peer remote out of the answer to a UAPI get
// (Device.IpcGet, or "get=1" on a UAPI socket).
func ParseIpcGet(get string, remote wgtypes.Key) (PeerInfo, error) {
	var info PeerInfo
	var sec, nsec int64
	found, in := false, false
	want := hexKey(remote)
	sc := bufio.NewScanner(strings.NewReader(get))
	for sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), "=")
		if k == "public_key" {
			in = v == want
			found = found || in
			continue
		}
		if !in {
			continue
		}
		switch k {
		case "preshared_key":
			b, err := hex.DecodeString(v)
			if err != nil || len(b) != len(info.PSK) {
				return PeerInfo{}, fmt.Errorf("wgtest: bad preshared_key in IpcGet")
			}
			copy(info.PSK[:], b)
		case "last_handshake_time_sec":
			sec, _ = strconv.ParseInt(v, 10, 64)
		case "last_handshake_time_nsec":
			nsec, _ = strconv.ParseInt(v, 10, 64)
		}
	}
	if !found {
		return PeerInfo{}, fmt.Errorf("wgtest: peer %s not in IpcGet", remote)
	}
	if sec != 0 || nsec != 0 {
		info.LastHandshake = time.Unix(sec, nsec)
	}
	return info, nil
}

func hexKey(k wgtypes.Key) string { return hex.EncodeToString(k[:]) }
