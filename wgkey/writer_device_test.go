package wgkey

import (
	"encoding/hex"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/qrelay/qrelay/wgkey/wgtest"
	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/tun/netstack"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// newDevice starts an embedded device with n peers (endpoints on loopback
// ports nobody answers, one /32 each) and closes it when the test ends.
func newDevice(tb testing.TB, n int) (*device.Device, []wgtypes.Key) {
	tb.Helper()
	tdev, _, err := netstack.CreateNetTUN([]netip.Addr{netip.MustParseAddr("10.78.0.1")}, nil, wgtest.MTU)
	if err != nil {
		tb.Fatal(err)
	}
	dev := device.NewDevice(tdev, conn.NewDefaultBind(), &device.Logger{Verbosef: device.DiscardLogf, Errorf: device.DiscardLogf})
	tb.Cleanup(dev.Close)
	priv, err := wgtypes.GeneratePrivateKey()
	if err != nil {
		tb.Fatal(err)
	}
	var cfg strings.Builder
	fmt.Fprintf(&cfg, "private_key=%s\nlisten_port=0\n", hex.EncodeToString(priv[:]))
	peers := make([]wgtypes.Key, n)
	for i := range peers {
		peers[i] = peerKey(tb)
		fmt.Fprintf(&cfg, "public_key=%s\nendpoint=127.0.0.1:%d\nallowed_ip=10.%d.%d.%d/32\n",
			hex.EncodeToString(peers[i][:]), 40000+i%1000, 80+i>>16, i>>8&255, i&255)
	}
	if err := dev.IpcSet(cfg.String()); err != nil {
		tb.Fatal(err)
	}
	if err := dev.Up(); err != nil {
		tb.Fatal(err)
	}
	return dev, peers
}

func randomUpdates(tb testing.TB, peers []wgtypes.Key) []Update {
	u := make([]Update, len(peers))
	for i, p := range peers {
		k, err := wgtypes.GenerateKey()
		if err != nil {
			tb.Fatal(err)
		}
		u[i] = Update{Peer: p, PSK: Key(k)}
	}
	return u
}

func TestAppendSetPSKs(t *testing.T) {
	var p1, p2 wgtypes.Key
	var k1, k2 Key
	for i := range p1 {
		p1[i], p2[i], k1[i], k2[i] = byte(i), byte(0xf0+i%16), byte(0x10+i), 0xab
	}
	got := string(appendSetPSKs(nil, []Update{{p1, k1}, {p2, k2}}))
	want := "public_key=000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n" +
		"update_only=true\n" +
		"preshared_key=101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f\n" +
		"public_key=f0f1f2f3f4f5f6f7f8f9fafbfcfdfefff0f1f2f3f4f5f6f7f8f9fafbfcfdfeff\n" +
		"update_only=true\n" +
		"preshared_key=abababababababababababababababababababababababababababababababab\n"
	if got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
	if len(got) != 2*setPSKLineLen {
		t.Errorf("length %d, want 2×setPSKLineLen = %d", len(got), 2*setPSKLineLen)
	}
}

func TestParsePeers(t *testing.T) {
	p1, p2 := peerKey(t), peerKey(t)
	get := "private_key=" + strings.Repeat("11", 32) + "\nlisten_port=51820\n" +
		"public_key=" + hex.EncodeToString(p1[:]) + "\npreshared_key=" + strings.Repeat("22", 32) +
		"\nlast_handshake_time_sec=1700000000\nlast_handshake_time_nsec=5\ntx_bytes=1\n" +
		"public_key=" + hex.EncodeToString(p2[:]) + "\nlast_handshake_time_sec=0\nlast_handshake_time_nsec=0\n" +
		"errno=0\n"
	got, err := parsePeers([]byte(get))
	if err != nil {
		t.Fatal(err)
	}
	want := []PeerState{{p1, time.Unix(1700000000, 5)}, {p2, time.Time{}}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("got %v, want %v", got, want)
	}
	if _, err := parsePeers([]byte("public_key=abc\n")); err == nil {
		t.Error("a short public key parsed")
	}
}

// TestDeviceWriter sets the PSKs of many peers in one SetPSKs call and
// reads them back with IpcGet.
func TestDeviceWriter(t *testing.T) {
	dev, peers := newDevice(t, 50)
	w := NewDeviceWriter(dev)
	updates := randomUpdates(t, peers)
	stranger := peerKey(t)
	if err := w.SetPSKs(append(updates, Update{Peer: stranger, PSK: Key{1}})); err != nil {
		t.Fatal(err)
	}
	get, err := dev.IpcGet()
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range updates {
		info, err := wgtest.ParseIpcGet(get, u.Peer)
		if err != nil {
			t.Fatal(err)
		}
		if Key(info.PSK) != u.PSK {
			t.Fatalf("peer %s: PSK not set", u.Peer)
		}
	}
	// update_only: an unknown peer is neither an error nor created.
	if _, err := wgtest.ParseIpcGet(get, stranger); err == nil {
		t.Error("SetPSKs created an unknown peer")
	}

	states, err := w.Peers()
	if err != nil {
		t.Fatal(err)
	}
	if len(states) != len(peers) {
		t.Errorf("Peers: %d peers, want %d", len(states), len(peers))
	}
	on := map[wgtypes.Key]bool{}
	for _, s := range states {
		on[s.Peer] = true
		if !s.LastHandshake.IsZero() {
			t.Errorf("Peers: %s has handshaken with nobody there", s.Peer)
		}
	}
	for _, p := range peers {
		if !on[p] {
			t.Errorf("Peers: %s missing", p)
		}
	}
	if err := w.Handshake(peers[:3]); err != nil {
		t.Errorf("Handshake: %v", err)
	}
	if err := w.Handshake([]wgtypes.Key{peers[0], stranger}); err == nil || !strings.Contains(err.Error(), stranger.String()) {
		t.Errorf("Handshake with an unknown peer: %v, want an error naming it", err)
	}
}

// TestInitiateKeepsTheSession checks that Initiate starts a handshake
// without stopping the current session: traffic goes on through it while
// the handshake is under way, and even when the handshake fails (here,
// the two sides hold different PSKs); and that a handshake it starts with
// equal PSKs completes and carries the traffic from then on. A drive that
// stops the session (Handshake) fails the first part: A's packets would
// wait for a handshake that never completes.
func TestInitiateKeepsTheSession(t *testing.T) {
	p := wgtest.NewPair(t)
	w := NewDeviceWriter(p.A.Dev)
	in := w.(Initiator)
	srv, err := p.B.Net.ListenUDPAddrPort(netip.AddrPortFrom(p.B.Addr, wgtest.EchoPort))
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	go wgtest.ServeEcho(srv)
	cli, err := p.A.Net.DialUDPAddrPort(netip.AddrPort{}, netip.AddrPortFrom(p.B.Addr, wgtest.EchoPort))
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	seq := byte(0)
	// echo sends one datagram through the tunnel and waits for its answer
	// (the first one also waits for the first handshake).
	echo := func(what string) {
		t.Helper()
		seq++
		cli.SetDeadline(time.Now().Add(3 * time.Second))
		if _, err := cli.Write([]byte{seq}); err != nil {
			t.Fatalf("%s: sending: %v", what, err)
		}
		buf := make([]byte, 64)
		for {
			n, err := cli.Read(buf)
			if err != nil {
				t.Fatalf("%s: echo %d not answered: %v", what, seq, err)
			}
			if n == 1 && buf[0] == seq {
				return
			}
		}
	}
	lastHandshake := func() time.Time {
		t.Helper()
		info, err := p.A.Info(p.B.Public)
		if err != nil {
			t.Fatal(err)
		}
		return info.LastHandshake
	}

	echo("before any drive")
	first := lastHandshake()
	if first.IsZero() {
		t.Fatal("no handshake after the first echo")
	}
	orig, err := p.B.Info(p.A.Public)
	if err != nil {
		t.Fatal(err)
	}

	// A handshake that cannot complete: A's PSK differs from B's.
	var wrong Key
	wrong[0] = 1
	if err := w.SetPSKs([]Update{{Peer: p.B.Public, PSK: wrong}}); err != nil {
		t.Fatal(err)
	}
	if err := in.Initiate([]wgtypes.Key{p.B.Public}); err != nil {
		t.Fatalf("Initiate: %v", err)
	}
	// Echo on for 50 ms at least: the responder ignores an initiation
	// within 20 ms of the one before (HandshakeInitationRate) or with a
	// timestamp in the same 16.7 ms (TAI64N whitened), which the next
	// Initiate below would be.
	initiated := time.Now()
	for i := 0; i < 20 || time.Since(initiated) < 50*time.Millisecond; i++ {
		echo("while a handshake with another PSK is under way")
	}
	if hs := lastHandshake(); !hs.Equal(first) {
		t.Fatalf("a handshake completed (at %s) though A and B hold different PSKs", hs.Format("15:04:05.000"))
	}

	// The PSKs equal again: the handshake Initiate starts completes, and
	// the tunnel goes on.
	if err := w.SetPSKs([]Update{{Peer: p.B.Public, PSK: Key(orig.PSK)}}); err != nil {
		t.Fatal(err)
	}
	if err := in.Initiate([]wgtypes.Key{p.B.Public}); err != nil {
		t.Fatalf("Initiate: %v", err)
	}
	deadline := time.Now().Add(3 * time.Second)
	for lastHandshake().Equal(first) {
		if time.Now().After(deadline) {
			t.Fatal("the handshake Initiate started with equal PSKs did not complete within 3s")
		}
		echo("while the handshake completes")
	}
	for range 5 {
		echo("after the handshake")
	}

	if err := in.Initiate([]wgtypes.Key{p.B.Public, peerKey(t)}); err == nil || !strings.Contains(err.Error(), "not on the device") {
		t.Errorf("Initiate with an unknown peer: %v, want an error naming it", err)
	}
}
