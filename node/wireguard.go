package node

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/qrelay/qrelay/config"
	"github.com/qrelay/qrelay/supply"
	"github.com/qrelay/qrelay/wgkey"
	"golang.zx2c4.com/wireguard/wgctrl"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// WireGuard tunnels: one wgkey.Rotator per interface, each tunnel's PSK
// of epoch n taken from index n of the key stream of the same name, which
// this node shares with the node at the other end. The stream's owner (the
// lower node ID) is the side that drives the handshake after each install,
// so exactly one side of a tunnel does.

// wgInterface is the rotator of one WireGuard interface.
type wgInterface struct {
	name    string
	rotator *wgkey.Rotator
	tunnels []config.WireGuardTunnel
}

// streamSource is a supply.KeyStream as a wgkey.KeySource.
type streamSource struct{ s *supply.KeyStream }

func (ss streamSource) Key(ctx context.Context, index uint64) (wgkey.Key, error) {
	k, err := ss.s.Key(ctx, index)
	return wgkey.Key(k), err
}

func (ss streamSource) Release(below uint64) { ss.s.Release(below) }

// startWireGuard starts a rotator per interface of the config's tunnels.
// writers gives the writer of an interface served in this process (an
// embedded wireguard-go device); the others are reached through wgctrl
// (the kernel, or a wireguard-go UAPI socket). A missing interface does
// not stop the node: its rotations fail, counted and logged, until it
// appears.
func (n *Node) startWireGuard(writers map[string]wgkey.Writer) error {
	var ifaces []string
	byIface := map[string][]config.WireGuardTunnel{}
	for _, t := range n.cfg.WireGuard {
		if byIface[t.Interface] == nil {
			ifaces = append(ifaces, t.Interface)
		}
		byIface[t.Interface] = append(byIface[t.Interface], t)
	}
	for _, iface := range ifaces {
		w := writers[iface]
		if w == nil {
			if n.wgctrl == nil {
				c, err := wgctrl.New()
				if err != nil {
					return fmt.Errorf("wireguard: interface %s: opening wgctrl (netlink or the wireguard-go UAPI sockets): %w", iface, err)
				}
				n.wgctrl = c
			}
			w = wgkey.NewWgctrlWriter(n.wgctrl, iface)
		}
		var ts []wgkey.Tunnel
		for _, t := range byIface[iface] {
			peer, err := wgtypes.ParseKey(t.PeerPublicKey)
			if err != nil {
				return fmt.Errorf("wireguard: tunnel %s: peer_public_key: %w", t.Name, err) // the config checked it
			}
			policy := wgkey.FailClosed
			if t.OnMissingKey == config.KeepCurrent {
				policy = wgkey.KeepCurrent
			}
			s := n.supply.Stream(t.Name)
			ts = append(ts, wgkey.Tunnel{Name: t.Name, Peer: peer, Interval: t.Interval, Policy: policy, Drive: s.Owner(), Source: streamSource{s}})
		}
		r, err := wgkey.NewRotator(w, ts, wgkey.Options{Log: n.log.With("interface", iface)})
		if err != nil {
			return fmt.Errorf("wireguard: interface %s: %w", iface, err)
		}
		n.wgIfaces = append(n.wgIfaces, &wgInterface{name: iface, rotator: r, tunnels: byIface[iface]})
		n.wg.Add(1)
		go func() {
			defer n.wg.Done()
			if err := r.Run(n.ctx); err != nil && n.ctx.Err() == nil {
				n.log.Error("WireGuard rotation stopped", "interface", iface, "err", err)
			}
		}()
	}
	return nil
}

// TunnelInfo is the state of one WireGuard tunnel of this node.
type TunnelInfo struct {
	wgkey.TunnelStatus
	Interface    string
	Remote       string
	Interval     time.Duration
	OnMissingKey string
	Drives       bool // this side drives the handshake after each install
	Stream       supply.StreamStats
}

// Tunnels reports the node's WireGuard tunnels, by interface and name.
func (n *Node) Tunnels() []TunnelInfo {
	var out []TunnelInfo
	for _, wi := range n.wgIfaces {
		for _, st := range wi.rotator.Status() {
			i := slices.IndexFunc(wi.tunnels, func(t config.WireGuardTunnel) bool { return t.Name == st.Name })
			if i < 0 {
				continue
			}
			t := wi.tunnels[i]
			s := n.supply.Stream(t.Name)
			out = append(out, TunnelInfo{
				TunnelStatus: st, Interface: wi.name, Remote: t.RemoteNode, Interval: t.Interval,
				OnMissingKey: t.OnMissingKey, Drives: s.Owner(), Stream: s.Stats(),
			})
		}
	}
	slices.SortFunc(out, func(a, b TunnelInfo) int {
		return cmp.Or(cmp.Compare(a.Interface, b.Interface), cmp.Compare(a.Name, b.Name))
	})
	return out
}
