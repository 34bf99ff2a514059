package wgkey

import (
	"bytes"
	"encoding/binary"
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
// and sends each a keepalive, which starts the handshake at once. It is an
// Initiator (a handshake initiation sent beside the current session) and a
// SessionCloser (Peer.ZeroAndFlushAll).
func NewDeviceWriter(dev *device.Device) Writer { return &deviceWriter{dev: dev} }

var (
	_ SessionCloser = (*deviceWriter)(nil)
	_ Initiator     = (*deviceWriter)(nil)
)

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
	return w.eachPeer(peers, "drive", func(p *device.Peer, _ wgtypes.Key) error {
		p.ExpireCurrentKeypairs()
		p.SendKeepalive()
		return nil
	})
}

// Initiate sends each peer a handshake initiation at once, built by the
// device (CreateMessageInitiation, with the PSK installed) and sent on the
// peer's endpoint, as Peer.SendHandshakeInitiation would send it but
// without its rate limit of one initiation per 5 s (REKEY_TIMEOUT), which
// would silence every drive of epochs shorter than that. The current
// session is left alone: it carries traffic until the response arrives,
// when the device makes the new session current (as initiator) and sends
// a keepalive on it, on which the peer switches too; packets still coming
// under the old session are received, as it becomes the previous one.
//
// What SendHandshakeInitiation does besides is left out: no retransmission
// is scheduled (the Rotator initiates again), and mac2 stays empty, so a
// peer under a handshake flood, which answers with a cookie instead, is
// not reached until the flood ends (or the device's own rekey, with its
// cookie, reaches it).
func (w *deviceWriter) Initiate(peers []wgtypes.Key) error {
	return w.eachPeer(peers, "initiating a handshake", func(p *device.Peer, k wgtypes.Key) error {
		msg, err := w.dev.CreateMessageInitiation(p)
		if err != nil {
			return err
		}
		var b bytes.Buffer
		b.Grow(device.MessageInitiationSize)
		binary.Write(&b, binary.LittleEndian, msg) // fixed-size fields: cannot fail
		packet := b.Bytes()
		var macs device.CookieGenerator
		macs.Init(device.NoisePublicKey(k))
		macs.AddMacs(packet)
		return p.SendBuffers([][]byte{packet})
	})
}

// CloseSessions zeroes the peers' sessions and handshake state and drops
// the packets waiting for a handshake, so that nothing more is sent or
// received under the keys of the previous PSK.
func (w *deviceWriter) CloseSessions(peers []wgtypes.Key) error {
	return w.eachPeer(peers, "closing sessions", func(p *device.Peer, _ wgtypes.Key) error {
		p.ZeroAndFlushAll()
		return nil
	})
}

// eachPeer applies f to each of peers on the device, and names those it
// does not have and those f failed for.
func (w *deviceWriter) eachPeer(peers []wgtypes.Key, op string, f func(*device.Peer, wgtypes.Key) error) error {
	var missing []string
	var failed []error
	for _, k := range peers {
		p := w.dev.LookupPeer(device.NoisePublicKey(k))
		if p == nil {
			missing = append(missing, k.String())
			continue
		}
		if err := f(p, k); err != nil {
			failed = append(failed, fmt.Errorf("peer %s: %w", k, err))
		}
	}
	if len(missing) > 0 {
		failed = append(failed, fmt.Errorf("peers not on the device: %s", strings.Join(missing, ", ")))
	}
	if len(failed) > 0 {
		return fmt.Errorf("wgkey: %s: %w", op, errors.Join(failed...))
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
