package node

import (
	"math"
	"path/filepath"

	"github.com/qrelay/qrelay/controlplane"
	"github.com/qrelay/qrelay/supply"
)

// openSupply makes the node's key supply (supply.Service) from the config.
// Its goroutines start with the node's, after the transport.
func (n *Node) openSupply() error {
	cfg := n.cfg
	sc := supply.Config{
		NodeID:            cfg.Node.ID,
		KeySize:           cfg.API.ETSI014.KeySize,
		MaxKeysPerRequest: cfg.API.ETSI014.MaxKeysPerRequest,
		AssignTimeout:     cfg.API.ETSI014.AssignTimeout,
		CompletionTimeout: cfg.KM.CompletionTimeout,
		Pools: supply.PoolConfig{
			Slots: cfg.Pools.Slots, SlotSize: cfg.Pools.SlotSize, Low: cfg.Pools.Low, High: cfg.Pools.High,
			TTL: cfg.Pools.TTL, OrphanTTL: cfg.Pools.OrphanTTL,
		},
		Meta:       n.meta,
		Audit:      n.audit,
		NodeOf:     n.saeNode,
		Relay:      n.relayNow,
		SendRouted: n.sendRouted,
		Routes:     routerRoutes{n},
		SpareKeys:  n.spareKeys,
		Logger:     n.log,
	}
	if n.meta != nil {
		sc.PoolDir = filepath.Join(cfg.Storage.Dir, "pools")
	}
	if cfg.API.ETSI014.Listen != "" {
		for _, s := range cfg.SAEs {
			sc.SAENodes = append(sc.SAENodes, s.Node)
		}
	}
	for _, w := range cfg.WireGuard {
		sc.Streams = append(sc.Streams, supply.StreamConfig{Name: w.Name, Remote: w.RemoteNode, Interval: w.Interval})
	}
	s, err := supply.New(n.ctx, sc)
	if err != nil {
		return err
	}
	n.supply = s
	return nil
}

// saeNode returns the node that serves SAE id, per the config.
func (n *Node) saeNode(id string) (string, bool) {
	for _, s := range n.SAEs() {
		if s.ID == id {
			return s.Node, true
		}
	}
	return "", false
}

// sendRouted sends a routed control message. The engine is published
// after the supply is made, so a message before then has nowhere to go.
func (n *Node) sendRouted(dst string, kind uint16, payload []byte) error {
	e := n.engine.Load()
	if e == nil {
		return errEngineNotStarted
	}
	return e.SendRouted(dst, kind, payload)
}

// routerRoutes is the router as supply.Routes. The router is made after
// the supply, and before the supply's goroutines start.
type routerRoutes struct{ n *Node }

func (r routerRoutes) NextHop(dst string) (string, bool) { return r.n.router.NextHop(dst) }

func (r routerRoutes) Reachable() []string {
	routes := r.n.router.Routes()
	out := make([]string, len(routes))
	for i, rt := range routes {
		out[i] = rt.Dst
	}
	return out
}

// spareKeys is how many keys of size bytes a background refill to remote
// may relay now: as many as the outgoing pad of the first hop holds above
// its reserve. Refills can wait; a slow QKD link whose every byte of pad
// went into pools would stay below min_stock, so excluded from every
// route, for as long as the pools want keys. The reserve is the level at
// which routing admits the link (min_stock and its hysteresis) and as much
// again as the hysteresis, for the pad a relay spends beyond its keys (the
// frames' MAC keys): a reserve of the bare admission level left the link
// hovering 32 bytes short of it. ok is false when there is no local link
// to the first hop to judge (the relay then fails on its own).
func (n *Node) spareKeys(remote string, size int) (spare int, ok bool) {
	hop := remote
	if n.router != nil {
		if nh, found := n.router.NextHop(remote); found {
			hop = nh
		}
	}
	l := n.byPeer[hop]
	if l == nil {
		return 0, false
	}
	admit := controlplane.ReadmitStock(uint64(l.cfg.MinStock))
	stock, reserve := l.tx.Stats().Stock, admit+(admit-uint64(l.cfg.MinStock))
	if stock <= reserve {
		return 0, true
	}
	return int(min((stock-reserve)/uint64(size), math.MaxInt32)), true
}

// Supply is the node's key supply: pools, streams, reservations.
func (n *Node) Supply() *supply.Service { return n.supply }
