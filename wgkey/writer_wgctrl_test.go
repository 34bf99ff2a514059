package wgkey

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// fakeWgctrl is an interface as wgctrl sees it, recording every call.
type fakeWgctrl struct {
	priv       wgtypes.Key
	peers      []wgtypes.Peer
	calls      []string
	fail       map[string]error // by call, as recorded
	keepalives int              // persistent keepalives turned on (each sends one)
}

func (f *fakeWgctrl) Device(name string) (*wgtypes.Device, error) {
	f.calls = append(f.calls, "Device "+name)
	if err := f.fail["Device "+name]; err != nil {
		return nil, err
	}
	return &wgtypes.Device{Name: name, PrivateKey: f.priv, Peers: append([]wgtypes.Peer(nil), f.peers...)}, nil
}

func (f *fakeWgctrl) ConfigureDevice(name string, cfg wgtypes.Config) error {
	call := "Configure " + name
	if cfg.PrivateKey != nil {
		call += " private_key=" + cfg.PrivateKey.String()[:6]
	}
	if len(cfg.Peers) > 0 {
		call += fmt.Sprintf(" %d peers", len(cfg.Peers))
	}
	f.calls = append(f.calls, call)
	if err := f.fail[call]; err != nil {
		return err
	}
	if cfg.PrivateKey != nil {
		f.priv = *cfg.PrivateKey
	}
	for _, pc := range cfg.Peers {
		for i := range f.peers {
			if f.peers[i].PublicKey == pc.PublicKey && pc.PresharedKey != nil {
				f.peers[i].PresharedKey = *pc.PresharedKey
			}
			if f.peers[i].PublicKey == pc.PublicKey && pc.PersistentKeepaliveInterval != nil {
				// As the kernel and wireguard-go do: a keepalive goes out
				// when the interval turns on.
				if f.peers[i].PersistentKeepaliveInterval == 0 && *pc.PersistentKeepaliveInterval > 0 {
					f.keepalives++
				}
				f.peers[i].PersistentKeepaliveInterval = *pc.PersistentKeepaliveInterval
			}
		}
	}
	return nil
}

func newFakeWgctrl(t *testing.T, n int) (*fakeWgctrl, *wgctrlWriter) {
	priv, err := wgtypes.GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeWgctrl{priv: priv, fail: map[string]error{}}
	for range n {
		f.peers = append(f.peers, wgtypes.Peer{PublicKey: peerKey(t)})
	}
	return f, &wgctrlWriter{c: f, iface: "wg7"} // no hold: nothing is sent here
}

func TestWgctrlConfigOneCall(t *testing.T) {
	f, w := newFakeWgctrl(t, 3)
	peers := []wgtypes.Key{f.peers[0].PublicKey, f.peers[1].PublicKey, f.peers[2].PublicKey}
	updates := randomUpdates(t, peers)

	psks := make([]wgtypes.Key, len(updates))
	cfg := wgctrlConfig(updates, psks)
	if cfg.PrivateKey != nil || cfg.ListenPort != nil || cfg.FirewallMark != nil || cfg.ReplacePeers || len(cfg.Peers) != 3 {
		t.Fatalf("config touches more than the peers' PSKs: %+v", cfg)
	}
	for i, pc := range cfg.Peers {
		if pc.PublicKey != peers[i] || !pc.UpdateOnly || pc.PresharedKey == nil || Key(*pc.PresharedKey) != updates[i].PSK ||
			pc.Remove || pc.Endpoint != nil || pc.ReplaceAllowedIPs || pc.AllowedIPs != nil || pc.PersistentKeepaliveInterval != nil {
			t.Errorf("peer config %d: %+v", i, pc)
		}
	}

	if err := w.SetPSKs(updates); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(f.calls, "; "); got != "Configure wg7 3 peers" {
		t.Errorf("calls: %s, want one ConfigureDevice", got)
	}
	for i := range updates {
		if Key(f.peers[i].PresharedKey) != updates[i].PSK {
			t.Errorf("peer %d: PSK not set", i)
		}
	}
}

// TestWgctrlHandshakeTogglesPrivateKey checks that Handshake is one read
// and two writes, the second restoring the private key, even when the
// first fails, then a kick that makes each driven peer send a keepalive
// and leaves its persistent keepalive as it was.
func TestWgctrlHandshakeTogglesPrivateKey(t *testing.T) {
	f, w := newFakeWgctrl(t, 2)
	orig := f.priv
	short := orig.String()[:6]
	peers := []wgtypes.Key{f.peers[0].PublicKey}

	if err := w.Handshake(peers); err != nil {
		t.Fatal(err)
	}
	if len(f.calls) != 4 || f.calls[0] != "Device wg7" || !strings.HasPrefix(f.calls[1], "Configure wg7 private_key=") ||
		f.calls[1] == "Configure wg7 private_key="+short || f.calls[2] != "Configure wg7 private_key="+short || f.priv != orig ||
		f.calls[3] != "Configure wg7 2 peers" {
		t.Errorf("calls %q; want a read, a temporary key, the key restored and a kick of one peer", f.calls)
	}
	if f.keepalives != 1 || f.peers[0].PersistentKeepaliveInterval != 0 {
		t.Errorf("kick: %d keepalives, persistent keepalive left at %v; want 1, and 0 as before", f.keepalives, f.peers[0].PersistentKeepaliveInterval)
	}
	// A peer with a persistent keepalive keeps its interval.
	f.calls, f.keepalives = nil, 0
	f.peers[0].PersistentKeepaliveInterval = 25 * time.Second
	if err := w.Handshake(peers); err != nil || f.keepalives != 1 || f.peers[0].PersistentKeepaliveInterval != 25*time.Second {
		t.Errorf("kick with keepalive 25s: err %v, %d keepalives, left at %v", err, f.keepalives, f.peers[0].PersistentKeepaliveInterval)
	}
	f.peers[0].PersistentKeepaliveInterval = 0

	// Setting the temporary key fails: the key is restored all the same.
	f.calls = nil
	f.fail = map[string]error{}
	boom := errors.New("boom")
	w.c = failFirstPrivateKey{f, boom}
	err := w.Handshake(peers)
	if !errors.Is(err, boom) || f.priv != orig || len(f.calls) != 3 || f.calls[2] != "Configure wg7 private_key="+short {
		t.Errorf("temporary key failing: err %v, calls %q, key restored %v", err, f.calls, f.priv == orig)
	}

	// Restoring fails every time: the error says so.
	f.calls = nil
	f.fail["Configure wg7 private_key="+short] = boom
	w.c = f
	err = w.Handshake(peers)
	if err == nil || !strings.Contains(err.Error(), "restoring the private key failed") || len(f.calls) != 2+restoreAttempts {
		t.Errorf("restore failing: err %v, calls %q", err, f.calls)
	}
	f.priv = orig
	delete(f.fail, "Configure wg7 private_key="+short)

	// An unreadable private key: no toggle, as it could not be undone.
	f.calls = nil
	f.priv = wgtypes.Key{}
	if err := w.Handshake(peers); err == nil || len(f.calls) != 1 {
		t.Errorf("unreadable private key: err %v, calls %q", err, f.calls)
	}
	f.priv = orig

	// Peers not on the interface: an error naming them; no toggle if none is.
	f.calls = nil
	stranger := peerKey(t)
	if err := w.Handshake([]wgtypes.Key{stranger}); err == nil || !strings.Contains(err.Error(), stranger.String()) || len(f.calls) != 1 {
		t.Errorf("unknown peer: err %v, calls %q", err, f.calls)
	}
	f.calls = nil
	if err := w.Handshake([]wgtypes.Key{peers[0], stranger}); err == nil || !strings.Contains(err.Error(), stranger.String()) || len(f.calls) != 4 {
		t.Errorf("one unknown peer: err %v, calls %q", err, f.calls)
	}
	if f.priv != orig {
		t.Error("private key not restored")
	}

	// No peers: nothing at all.
	f.calls = nil
	if err := w.Handshake(nil); err != nil || len(f.calls) != 0 {
		t.Errorf("no peers: err %v, calls %q", err, f.calls)
	}
}

// failFirstPrivateKey fails the first private-key write after applying it,
// as a lost reply would look.
type failFirstPrivateKey struct {
	*fakeWgctrl
	err error
}

func (f failFirstPrivateKey) ConfigureDevice(name string, cfg wgtypes.Config) error {
	err := f.fakeWgctrl.ConfigureDevice(name, cfg)
	if cfg.PrivateKey != nil && len(f.calls) == 2 {
		return f.err
	}
	return err
}

func TestWgctrlPeers(t *testing.T) {
	f, w := newFakeWgctrl(t, 2)
	states, err := w.Peers()
	if err != nil {
		t.Fatal(err)
	}
	if len(states) != 2 || states[0].Peer != f.peers[0].PublicKey || !states[0].LastHandshake.IsZero() {
		t.Errorf("Peers: %+v", states)
	}
}
