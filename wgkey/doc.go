// Package wgkey rotates WireGuard preshared keys (PSKs) from a key stream,
// hitlessly: traffic through the tunnel does not stop while the key changes.
//
// # The scheme
//
// Each tunnel has an epoch length (Tunnel.Interval, 120 s by default).
// Epoch n covers the wall-clock interval [n·Interval, (n+1)·Interval) since
// the Unix epoch, and its PSK is index n of the tunnel's key stream
// (KeySource.Key), which the two peers' nodes hold identically. Boundaries
// are aligned to wall-clock time, so two nodes with synchronised clocks
// switch together without talking to each other.
//
// WireGuard mixes the PSK into the Noise IKpsk2 handshake only: a new PSK is
// used from the next handshake, and the session already established keeps
// carrying traffic under the keys the old one gave it. The Rotator uses this:
//
//  1. Fetch ahead. The key of epoch n+1 is fetched from Options.Fetch before
//     the boundary on, so the boundary itself only writes.
//  2. Both sides install at the boundary: every tunnel of one interval on
//     one interface in a single Writer.SetPSKs call (one IpcSet, or one
//     wgctrl ConfigureDevice, for all peers). Nothing changes on the wire:
//     the current session carries the traffic on.
//  3. One side drives (Tunnel.Drive, set on exactly one side of a tunnel):
//     Options.Margin after the boundary, when both sides have installed,
//     it starts a handshake. A handshake completes only if both sides hold
//     the same PSK, so a completed handshake proves the new PSK is in use.
//     With an embedded device (an Initiator) the handshake runs beside the
//     current session, which carries traffic both ways until the new one
//     takes over: the initiator switches when the response arrives, the
//     responder on the first packet under the new session, and packets
//     still in flight under the old one are received. Traffic does not
//     wait at all. Other Writers stop the current session sending, so that
//     the next packet starts the handshake: the driving side's packets
//     wait for it, queued (up to wireguard-go's staging limit, 128
//     packets), not lost, for one round trip.
//  4. If no new handshake is seen Options.Retry after driving, the driving
//     side drives again, the same way, a few times, and else counts the
//     epoch as unconfirmed (TunnelStatus.Unconfirmed). With an embedded
//     device the current session carries traffic all the while, until
//     WireGuard's own limits end it (REJECT_AFTER_TIME, 180 s). A rotator
//     started too late in an epoch to give a handshake that time installs
//     the epoch's key and leaves the drive to the next boundary.
//
// Without step 3 each side would pick up the new PSK only at WireGuard's own
// rekey (REKEY_AFTER_TIME, 120 s), so an epoch could pass with its PSK never
// used. With both sides driving, or one driving before the other has
// installed, handshakes fail (crossing initiations, or different PSKs) and
// the tunnel stalls until WireGuard retries 5 s later (REKEY_TIMEOUT). These
// are the failures users of existing PSK rotators report.
//
// # Missing keys
//
// If the key of an epoch is not there at its boundary, the tunnel's Policy
// decides. FailClosed (the default) installs a random PSK from crypto/rand,
// so no handshake can complete, and ends the current session on this side
// whether or not it drives: with a Writer that is a SessionCloser (the
// embedded device) the session ends outright, receiving too; otherwise
// (wgctrl) this side only stops sending on it, and the other side may go on
// sending on it until it expires (REJECT_AFTER_TIME, 180 s at most). The
// tunnel heals at the next epoch whose key comes. KeepCurrent keeps the
// current PSK and logs at Error level: the tunnel stays up if the other side
// missed the key too (the usual case, both reading one stream), else its
// next handshake fails. Either way the failure is counted in TunnelStatus.
//
// # Limits
//
//   - Clock skew between the two nodes must be below Options.Margin (200 ms
//     by default): a drive before the other side has installed fails the
//     handshake, and the epoch's PSK is in use only from a retry after the
//     other side has installed. With wgctrl, whose drives stop the
//     session, the tunnel stalls until then; beyond the retries, until
//     WireGuard's own (5 s).
//   - NewWgctrlWriter can drive only by changing the interface's private
//     key and back, which expires the sessions of every peer on the
//     interface, not only the driven ones, and holds their traffic 25 ms
//     (see NewWgctrlWriter).
//   - Keys pass through WireGuard's text and netlink interfaces and through
//     wgctrl, whose buffers this package cannot zeroise; its own copies it
//     clears as soon as they are written.
package wgkey
