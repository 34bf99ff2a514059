package relay

import (
	"encoding/binary"
	"fmt"

	"github.com/qrelay/qrelay/dataplane/frame"
	"github.com/qrelay/qrelay/internal/ids"
)

// ctlRouted is the CONTROL kind of a message between two nodes that need
// not be neighbours: each node on the way forwards it along its route to
// the destination, as it does completions. Its body:
//
//	offset  size  field
//	0       1     hop limit, decremented by each node that forwards it
//	1       2     inner kind (ControlKindMin or more): what the message is
//	3       1     source node ID length s (1..64)
//	4       s     source node ID ([A-Za-z0-9._-], internal/ids)
//	4+s     1     destination node ID length d (1..64)
//	5+s     d     destination node ID ([A-Za-z0-9._-])
//	5+s+d   ...   payload
//
// Like all control frames it rides the links' TLS channel: it is
// authenticated hop by hop, and the nodes on the way are trusted nodes.
const ctlRouted uint16 = 2

// routed is a parsed routed message.
type routed struct {
	hops     uint8
	kind     uint16
	src, dst string
	payload  []byte
}

func appendRouted(dst []byte, m *routed) []byte {
	dst = append(dst, m.hops)
	dst = binary.BigEndian.AppendUint16(dst, m.kind)
	dst = append(dst, byte(len(m.src)))
	dst = append(dst, m.src...)
	dst = append(dst, byte(len(m.dst)))
	dst = append(dst, m.dst...)
	return append(dst, m.payload...)
}

func parseRouted(b []byte) (routed, error) {
	var m routed
	if len(b) < 4 {
		return m, fmt.Errorf("routed control message of %d bytes: want at least 4", len(b))
	}
	m.hops, m.kind = b[0], binary.BigEndian.Uint16(b[1:3])
	if m.kind < ControlKindMin {
		return m, fmt.Errorf("routed control message: inner kind %d is below %d", m.kind, ControlKindMin)
	}
	id := func(off int, what string) (string, int, error) {
		if off >= len(b) {
			return "", 0, fmt.Errorf("routed control message: %s node ID length missing at offset %d", what, off)
		}
		n := int(b[off])
		if n < 1 || n > frame.MaxNodeIDLen || off+1+n > len(b) {
			return "", 0, fmt.Errorf("routed control message: %s node ID length %d at offset %d: want 1 to %d within the %d-byte body", what, n, off, frame.MaxNodeIDLen, len(b))
		}
		raw := b[off+1 : off+1+n]
		if i := ids.BadByte(raw); i >= 0 {
			return "", 0, fmt.Errorf("routed control message: %s node ID %q has byte %#02x at offset %d: want only %s", what, raw, raw[i], off+1+i, ids.Chars)
		}
		return string(raw), off + 1 + n, nil
	}
	var off int
	var err error
	if m.src, off, err = id(3, "source"); err != nil {
		return m, err
	}
	if m.dst, off, err = id(off, "destination"); err != nil {
		return m, err
	}
	m.payload = b[off:]
	return m, nil
}

// SendRouted sends a control message of the given kind (at least
// ControlKindMin) to node dst, which need not be a neighbour: it goes
// along the current route, each node forwarding it. Delivery is best
// effort, as for any message on a route that may fail: the receiver's
// answer is the caller's acknowledgement.
func (e *Engine) SendRouted(dst string, kind uint16, payload []byte) error {
	if kind < ControlKindMin {
		return fmt.Errorf("relay: control kind %d is reserved for the relay engine (control plane kinds start at %d)", kind, ControlKindMin)
	}
	if dst == e.cfg.NodeID {
		return fmt.Errorf("relay: routed message to this node (%s)", dst)
	}
	if err := ids.Valid(dst); err != nil {
		return fmt.Errorf("relay: routed message to node ID %q: %w", dst, err)
	}
	body := appendRouted(make([]byte, 0, 6+len(e.cfg.NodeID)+len(dst)+len(payload)),
		&routed{hops: e.cfg.HopLimit, kind: kind, src: e.cfg.NodeID, dst: dst, payload: payload})
	c := frame.Control{Kind: ctlRouted, Body: body}
	b, err := frame.AppendControl(getBuf(c.FrameLen()), &c)
	if err != nil {
		return fmt.Errorf("relay: routed message for %s: %w", dst, err)
	}
	defer putBuf(b)
	l, err := e.route(dst)
	if err != nil {
		return fmt.Errorf("relay: routed message for %s: %w", dst, err)
	}
	s := l.current()
	if s == nil {
		return fmt.Errorf("relay: routed message for %s: KM link to %s is down", dst, l.peer)
	}
	return s.sendCtl(b)
}

// routedIn delivers a routed message here or forwards it. frameBytes is
// the whole CONTROL frame, forwarded with its hop limit decremented in
// place.
func (e *Engine) routedIn(body, frameBytes []byte) error {
	m, err := parseRouted(body)
	if err != nil {
		return err
	}
	if m.dst == e.cfg.NodeID {
		if f := e.cfg.Routed; f != nil {
			f(m.src, m.kind, m.payload)
		}
		return nil
	}
	if m.hops <= 1 {
		e.stats.Undeliverable.Add(1)
		e.log.Warn("routed control message dropped: hop limit reached (a routing loop?)", "src", m.src, "dst", m.dst, "kind", m.kind)
		return nil
	}
	body[0]-- // body aliases frameBytes
	if !e.sendControl(m.dst, frameBytes) {
		e.stats.Undeliverable.Add(1)
	}
	return nil
}
