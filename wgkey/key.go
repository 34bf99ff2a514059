package wgkey

import (
	"context"
	"strconv"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// Key is a WireGuard preshared key.
type Key [32]byte

// String and GoString hide the key, so that no log line or error message
// prints it by accident (fmt's %v, %x, %+v and %#v and slog all use them).
func (Key) String() string   { return "wgkey.Key(redacted)" }
func (Key) GoString() string { return "wgkey.Key(redacted)" }

// KeySource gives epoch n's PSK: index n of the tunnel's key stream, the
// same at both peers' nodes.
type KeySource interface {
	// Key blocks until the key is there or ctx ends. An error means the key
	// will not come in time: the Rotator does not ask again for that index.
	Key(ctx context.Context, index uint64) (Key, error)
	// Release says indices below are no longer needed (the source
	// zeroises them).
	Release(below uint64)
}

// Update sets the PSK of one peer.
type Update struct {
	Peer wgtypes.Key
	PSK  Key
}

// PeerState is what a Writer reports about one peer.
type PeerState struct {
	Peer          wgtypes.Key
	LastHandshake time.Time // zero if none
}

// Writer installs PSKs on one WireGuard interface. A Rotator calls its
// Writer from one goroutine at a time.
type Writer interface {
	// SetPSKs sets the PSKs of all the given peers in one call (one IpcSet,
	// one ConfigureDevice). Peers must already exist on the interface.
	SetPSKs(updates []Update) error
	// Handshake drives: it makes the next packet to each peer start a new
	// handshake now.
	Handshake(peers []wgtypes.Key) error
	// Peers reports every peer of the interface.
	Peers() ([]PeerState, error)
}

// Initiator is a Writer that can start a handshake without interrupting
// the current session: the session goes on carrying traffic both ways
// until the handshake completes and the new one takes over, so a rotation
// costs the tunnel no delay at all. Nothing is retransmitted: if no
// handshake follows, the Rotator initiates again. A wrapper that cannot
// initiate may return errors.ErrUnsupported: the Rotator then uses
// Handshake.
type Initiator interface {
	Initiate(peers []wgtypes.Key) error
}

// SessionCloser is a Writer that can also end its current sessions with
// peers outright, receiving included. A tunnel failing closed uses it when
// its Writer has it, so that nothing more passes under the previous PSK in
// either direction; Handshake alone stops only this side's sending. A
// wrapper that cannot close may return errors.ErrUnsupported: the tunnel is
// then driven instead.
type SessionCloser interface {
	CloseSessions(peers []wgtypes.Key) error
}

// Policy says what a tunnel does when the key of an epoch is not there at
// its boundary.
type Policy int

const (
	// FailClosed installs a random PSK (crypto/rand), so that no handshake
	// can complete, and drives so the current session stops. The default.
	FailClosed Policy = iota
	// KeepCurrent keeps the current PSK and logs at Error level.
	KeepCurrent
)

func (p Policy) String() string {
	switch p {
	case FailClosed:
		return "fail-closed"
	case KeepCurrent:
		return "keep-current"
	}
	return "Policy(" + strconv.Itoa(int(p)) + ")"
}
