package wgkey

import (
	"bytes"
	"errors"
	"fmt"
	"strings"

	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

var errBadUAPIKey = errors.New("wgkey: malformed public_key in UAPI get")

// deviceWriter writes to a wireguard-go device embedded in this process.
type deviceWriter struct{ dev *device.Device }

// NewDeviceWriter returns a Writer for a wireguard-go device embedded in
// this process. SetPSKs is one IpcSet with update_only lines; Handshake
// expires the sessions of the given peers only (Peer.ExpireCurrentKeypairs)
// and sends each a keepalive, which starts the handshake at once. It is a
// SessionCloser (Peer.ZeroAndFlushAll).
func NewDeviceWriter(dev *device.Device) Writer { return &deviceWriter{dev: dev} }

var _ SessionCloser = (*deviceWriter)(nil)

func (w *deviceWriter) SetPSKs(updates []Update) error {
	if len(updates) == 0 {
		return nil
	}
	buf := appendSetPSKs(make([]byte, 0, len(updates)*setPSKLineLen), updates)
	defer clear(buf)
	// IpcSetOperation rather than IpcSet: a string could not be zeroised.
	if err := w.dev.IpcSetOperation(bytes.NewReader(buf)); err != nil {
		return fmt.Errorf("wgkey: setting %d PSKs with IpcSet: %w", len(updates), err)
	}
	return nil
}

func (w *deviceWriter) Handshake(peers []wgtypes.Key) error {
	// Expiring stops the current session sending (it still receives, so
	// packets in flight are not lost) and resets the handshake rate limit;
	// the keepalive is then queued and, finding no usable session, starts
	// a handshake. SendHandshakeInitiation alone would be a no-op within
	// 5 s (REKEY_TIMEOUT) of the last handshake and would let the old
	// session carry on.
	return w.eachPeer(peers, "drive", func(p *device.Peer) {
		p.ExpireCurrentKeypairs()
		p.SendKeepalive()
	})
}

// CloseSessions zeroes the peers' sessions and handshake state and drops
// the packets waiting for a handshake, so that nothing more is sent or
// received under the keys of the previous PSK.
func (w *deviceWriter) CloseSessions(peers []wgtypes.Key) error {
	return w.eachPeer(peers, "closing sessions", (*device.Peer).ZeroAndFlushAll)
}

// eachPeer applies f to each of peers on the device and names those it
// does not have.
func (w *deviceWriter) eachPeer(peers []wgtypes.Key, op string, f func(*device.Peer)) error {
	var missing []string
	for _, k := range peers {
		p := w.dev.LookupPeer(device.NoisePublicKey(k))
		if p == nil {
			missing = append(missing, k.String())
			continue
		}
		f(p)
	}
	if len(missing) > 0 {
		return fmt.Errorf("wgkey: %s: peers not on the device: %s", op, strings.Join(missing, ", "))
	}
	return nil
}

func (w *deviceWriter) Peers() ([]PeerState, error) {
	var buf zeroingBuffer
	defer buf.Clear() // the answer holds the private key and the PSKs
	if err := w.dev.IpcGetOperation(&buf); err != nil {
		return nil, fmt.Errorf("wgkey: IpcGet: %w", err)
	}
	return parsePeers(buf.b)
}
