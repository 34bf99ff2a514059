package relay

import (
	"fmt"

	"github.com/qrelay/qrelay/dataplane/frame"
	"github.com/qrelay/qrelay/internal/ids"
)

// Routed messages travel in CONTROL frames of kind frame.KindRouted
// (frame.Routed): each node on the way forwards one along its route to the
// destination, as it does completions. Like all control frames they ride
// the links' TLS channel: they are authenticated hop by hop, and the nodes
// on the way are trusted nodes.

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
	m := frame.Routed{HopLimit: e.cfg.HopLimit, Kind: frame.Kind(kind), Src: e.cfg.NodeID, Dst: dst, Payload: payload}
	b, err := frame.AppendRouted(getBuf(m.FrameLen()), &m)
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
func (e *Engine) routedIn(frameBytes []byte) error {
	m, err := frame.ParseRouted(frameBytes)
	if err != nil {
		return err
	}
	if m.Dst == e.cfg.NodeID {
		if f := e.cfg.Routed; f != nil {
			f(m.Src, uint16(m.Kind), m.Payload)
		}
		return nil
	}
	if m.HopLimit <= 1 {
		e.stats.Undeliverable.Add(1)
		e.log.Warn("routed control message dropped: hop limit reached (a routing loop?)", "src", m.Src, "dst", m.Dst, "kind", m.Kind)
		return nil
	}
	frameBytes[frame.RoutedHopLimitOffset]--
	if !e.sendControl(m.Dst, frameBytes) {
		e.stats.Undeliverable.Add(1)
	}
	return nil
}
