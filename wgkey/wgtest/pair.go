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
		cfg := fmt.Sprintf("public_key=%s\npreshared_key=%s\nendpoint=127.0.0.1:%d\nallowed_ip=%s/32\n",
			hexKey(c[1].Public), hexKey(psk), c[1].Port, c[1].Addr)
		if err := c[0].Dev.IpcSet(cfg); err != nil {
			tb.Fatalf("wgtest: configuring %s: %v", c[0].Name, err)
		}
	}
	return &Pair{A: a, B: b}
}

func newPeer(tb testing.TB, name string, addr netip.Addr) *Peer {
	tb.Helper()
	tdev, tnet, err := netstack.CreateNetTUN([]netip.Addr{addr}, nil, MTU)
	if err != nil {
		tb.Fatalf("wgtest: netstack TUN for %s: %v", name, err)
	}
	priv, err := wgtypes.GeneratePrivateKey()
	if err != nil {
		tb.Fatal(err)
	}
	logf := func(format string, args ...any) { tb.Logf("wireguard %s: "+format, append([]any{name}, args...)...) }
	log := &device.Logger{Verbosef: device.DiscardLogf, Errorf: logf}
	dev := device.NewDevice(tdev, conn.NewDefaultBind(), log)
	tb.Cleanup(dev.Close) // also closes the TUN
	// listen_port=0: the kernel picks a free port, read back below.
	if err := dev.IpcSet("private_key=" + hexKey(priv) + "\nlisten_port=0\n"); err != nil {
		tb.Fatalf("wgtest: configuring %s: %v", name, err)
	}
	if err := dev.Up(); err != nil {
		tb.Fatalf("wgtest: starting %s: %v", name, err)
	}
	p := &Peer{Name: name, Dev: dev, Net: tnet, Private: priv, Public: priv.PublicKey(), Addr: addr}
	get, err := dev.IpcGet()
	if err != nil {
		tb.Fatal(err)
	}
	for _, l := range strings.Split(get, "\n") {
		if v, ok := strings.CutPrefix(l, "listen_port="); ok {
			p.Port, _ = strconv.Atoi(v)
		}
	}
	if p.Port == 0 {
		tb.Fatalf("wgtest: %s has no listen port", name)
	}
	return p
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
