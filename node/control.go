package node

import (
	"errors"

	"github.com/qrelay/qrelay/config"
	"github.com/qrelay/qrelay/controlplane"
)

// openRouter starts the control plane. Its messages travel as CONTROL
// frames of kind controlplane.Kind on the KM links' control streams.
func (n *Node) openRouter() error {
	c := n.cfg.Control
	r, err := controlplane.New(controlplane.Config{
		NodeID:   n.cfg.Node.ID,
		Send:     n.sendControl,
		Static:   staticRoutes(n.cfg.Routes),
		Refresh:  c.Refresh,
		MaxAge:   c.MaxAge,
		SPFDelay: c.SPFDelay,
		Logger:   n.baseLog, // the router adds the node itself
		OnChange: func() { n.metrics.routesChanged(); n.supply.RoutesChanged() },
	})
	if err != nil {
		return err
	}
	n.router = r
	return nil
}

func staticRoutes(rs []config.Route) map[string]string {
	m := make(map[string]string, len(rs))
	for _, r := range rs {
		m[r.Dst] = r.Via
	}
	return m
}

var errEngineNotStarted = errors.New("relay engine not started")

// sendControl is the control plane's way out. The engine is published
// after the router starts, so a message before then has nowhere to go.
func (n *Node) sendControl(peer string, msg []byte) error {
	e := n.engine.Load()
	if e == nil {
		return errEngineNotStarted
	}
	return e.SendControl(peer, controlplane.Kind, msg)
}

// control is the relay engine's hook for control-plane messages.
func (n *Node) control(peer string, kind uint16, body []byte) {
	if kind != controlplane.Kind {
		n.log.Warn("control message of unknown kind dropped", "peer", peer, "kind", kind)
		return
	}
	if err := n.router.Receive(peer, body); err != nil && !errors.Is(err, controlplane.ErrClosed) {
		n.log.Warn("control message refused", "peer", peer, "err", err)
	}
}
