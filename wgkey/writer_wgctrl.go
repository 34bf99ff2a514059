package wgkey

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// wgctrlClient is the part of *wgctrl.Client a wgctrlWriter uses, so tests
// can count its calls.
type wgctrlClient interface {
	Device(name string) (*wgtypes.Device, error)
	ConfigureDevice(name string, cfg wgtypes.Config) error
}

var _ wgctrlClient = (*wgctrl.Client)(nil)

// restoreAttempts is how often Handshake tries to put the private key back.
const restoreAttempts = 3

// tmpKeyHold is how long Handshake keeps the temporary private key before
// putting the real one back. Each key change expires every session and
// resets WireGuard's handshake rate limit. A packet that starts a handshake
// while the restore runs can pass that limit just before the reset, and the
// next packet then starts a second handshake within 20 ms: the peer drops
// the second as a flood, and the answer to the first no longer matches, so
// the tunnel stalls until a retry. Holding the temporary key long enough for
// a packet to try a handshake under it (in vain) closes the race: packets
// during the restore then find a handshake sent less than 5 s ago and wait.
// Measured with wireguard-go under the race detector and a packet every
// 10 ms: about a third of drives stalled without the hold, none in 25 with
// it. The cost: traffic to every peer waits 25 ms more for its handshake.
const tmpKeyHold = 25 * time.Millisecond

type wgctrlWriter struct {
	c     wgctrlClient
	iface string
	hold  time.Duration // tmpKeyHold; 0 in tests
	mu    sync.Mutex    // one private-key toggle at a time, else one could restore the other's temporary key
}

// NewWgctrlWriter returns a Writer for the interface iface through wgctrl:
// netlink to the kernel module, or the UAPI socket of a userspace
// implementation (/var/run/wireguard/<iface>.sock). SetPSKs is one
// ConfigureDevice with UpdateOnly peers.
//
// Neither netlink nor the UAPI can expire one peer's session, so Handshake
// changes the interface's private key to a random one and back: one Device
// read and two ConfigureDevice calls, 25 ms apart (see tmpKeyHold). A new
// private key expires the current session of every peer of the interface,
// so the next packet to each starts a handshake. The costs: every peer on
// the interface rehandshakes, not only the ones asked for, each with a
// round trip and 25 ms of delay. The toggle sends nothing itself, so a
// third ConfigureDevice kicks each driven peer: it sets the peer's
// persistent keepalive from 0 to on and back to what it was (two entries
// for the peer in one call), and both the kernel and wireguard-go send a
// keepalive when it turns on, which, finding no session, starts the
// handshake at once even on an idle tunnel. Handshakes arriving during
// the toggle fail and are retried. The key is put back even if setting the
// temporary one failed, and Handshake refuses to start if it cannot read
// the key. Nothing else may change the private key meanwhile.
func NewWgctrlWriter(c *wgctrl.Client, iface string) Writer {
	return &wgctrlWriter{c: c, iface: iface, hold: tmpKeyHold}
}

// wgctrlConfig is the one ConfigureDevice that sets every PSK. It copies the
// keys into psks, which the caller clears after the call.
func wgctrlConfig(updates []Update, psks []wgtypes.Key) wgtypes.Config {
	cfg := wgtypes.Config{Peers: make([]wgtypes.PeerConfig, len(updates))}
	for i := range updates {
		psks[i] = wgtypes.Key(updates[i].PSK)
		cfg.Peers[i] = wgtypes.PeerConfig{PublicKey: updates[i].Peer, UpdateOnly: true, PresharedKey: &psks[i]}
	}
	return cfg
}

func (w *wgctrlWriter) SetPSKs(updates []Update) error {
	if len(updates) == 0 {
		return nil
	}
	psks := make([]wgtypes.Key, len(updates))
	defer clear(psks)
	if err := w.c.ConfigureDevice(w.iface, wgctrlConfig(updates, psks)); err != nil {
		return fmt.Errorf("wgkey: setting %d PSKs on %s: %w", len(updates), w.iface, err)
	}
	return nil
}

func (w *wgctrlWriter) Handshake(peers []wgtypes.Key) error {
	if len(peers) == 0 {
		return nil
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	d, err := w.c.Device(w.iface)
	if err != nil {
		return fmt.Errorf("wgkey: drive on %s: reading the device: %w", w.iface, err)
	}
	orig := d.PrivateKey
	defer clear(orig[:])
	scrub(d)
	if orig == (wgtypes.Key{}) {
		// Without it the toggle could not be undone.
		return fmt.Errorf("wgkey: drive on %s: the private key is not readable (not set, or no CAP_NET_ADMIN)", w.iface)
	}
	missing := missingPeers(d, peers)
	if len(missing) == len(peers) {
		return fmt.Errorf("wgkey: drive on %s: peers not on the interface: %s", w.iface, strings.Join(missing, ", "))
	}

	tmp, err := wgtypes.GeneratePrivateKey()
	if err != nil {
		return fmt.Errorf("wgkey: drive on %s: %w", w.iface, err)
	}
	defer clear(tmp[:])
	setErr := w.c.ConfigureDevice(w.iface, wgtypes.Config{PrivateKey: &tmp})
	if setErr == nil {
		time.Sleep(w.hold)
	}
	// Put the key back even if that failed: the temporary key may have been
	// applied before the error (a lost reply, say).
	var restoreErr error
	for range restoreAttempts {
		if restoreErr = w.c.ConfigureDevice(w.iface, wgtypes.Config{PrivateKey: &orig}); restoreErr == nil {
			break
		}
	}
	switch {
	case restoreErr != nil:
		return fmt.Errorf("wgkey: drive on %s: restoring the private key failed, the interface may be left with a temporary one: %w",
			w.iface, errors.Join(restoreErr, setErr))
	case setErr != nil:
		return fmt.Errorf("wgkey: drive on %s: setting a temporary private key: %w", w.iface, setErr)
	}
	if err := w.c.ConfigureDevice(w.iface, kickConfig(d, peers)); err != nil {
		return fmt.Errorf("wgkey: drive on %s: sending keepalives to start the handshakes: %w", w.iface, err)
	}
	if len(missing) > 0 {
		return fmt.Errorf("wgkey: drive on %s: peers not on the interface: %s", w.iface, strings.Join(missing, ", "))
	}
	return nil
}

// kickConfig turns the persistent keepalive of each of peers on d on (from
// 0) and back to what it was, so that each sends a keepalive at once.
func kickConfig(d *wgtypes.Device, peers []wgtypes.Key) wgtypes.Config {
	want := make(map[wgtypes.Key]bool, len(peers))
	for _, k := range peers {
		want[k] = true
	}
	var cfg wgtypes.Config
	for _, p := range d.Peers {
		if !want[p.PublicKey] {
			continue
		}
		// From 0 to on sends the keepalive; the last entry leaves the
		// interval as it was.
		seq := []time.Duration{time.Second, 0}
		if orig := p.PersistentKeepaliveInterval; orig > 0 {
			seq = []time.Duration{0, orig}
		}
		for _, v := range seq {
			cfg.Peers = append(cfg.Peers, wgtypes.PeerConfig{PublicKey: p.PublicKey, UpdateOnly: true, PersistentKeepaliveInterval: &v})
		}
	}
	return cfg
}

func (w *wgctrlWriter) Peers() ([]PeerState, error) {
	d, err := w.c.Device(w.iface)
	if err != nil {
		return nil, fmt.Errorf("wgkey: reading %s: %w", w.iface, err)
	}
	scrub(d)
	out := make([]PeerState, len(d.Peers))
	for i, p := range d.Peers {
		out[i] = PeerState{Peer: p.PublicKey, LastHandshake: p.LastHandshakeTime}
		if out[i].LastHandshake.Unix() == 0 {
			out[i].LastHandshake = time.Time{}
		}
	}
	return out, nil
}

// scrub clears the secrets wgctrl read along with what we asked for.
func scrub(d *wgtypes.Device) {
	clear(d.PrivateKey[:])
	for i := range d.Peers {
		clear(d.Peers[i].PresharedKey[:])
	}
}

func missingPeers(d *wgtypes.Device, peers []wgtypes.Key) []string {
	on := make(map[wgtypes.Key]bool, len(d.Peers))
	for _, p := range d.Peers {
		on[p.PublicKey] = true
	}
	var missing []string
	for _, k := range peers {
		if !on[k] {
			missing = append(missing, k.String())
		}
	}
	return missing
}
