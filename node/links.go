package node

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/qrelay/qrelay/config"
	"github.com/qrelay/qrelay/controlplane"
	"github.com/qrelay/qrelay/dataplane/etsi014client"
	"github.com/qrelay/qrelay/dataplane/kmlink"
	"github.com/qrelay/qrelay/dataplane/qkd"
	"github.com/qrelay/qrelay/dataplane/qkdsim"
	"github.com/qrelay/qrelay/dataplane/relay"
	"github.com/qrelay/qrelay/internal/rate"
	"github.com/qrelay/qrelay/ringstore"
)

// nodeLink is one KM link of the node: its config, pad rings and QKD
// source, and what the node last sampled of it.
type nodeLink struct {
	cfg    config.Link
	tx, rx *ringstore.PadRing
	src    qkd.Source
	sim    *qkdsim.Sim // the source, when it is a simulator

	mu      sync.Mutex
	state   controlplane.State
	up      bool
	since   time.Time
	lastErr string
	qkd     qkd.Status
	rates   [2]padRates // tx, rx
}

// padRates are a ring's fill and consumption rates, in bytes per second,
// smoothed over about a second.
type padRates struct{ fill, consume rate.Meter }

func newPadRates() padRates {
	return padRates{rate.Meter{Tau: time.Second}, rate.Meter{Tau: time.Second}}
}

func (r *padRates) sample(now time.Time, st ringstore.PadStats) {
	r.fill.Sample(now, st.Appended)
	r.consume.Sample(now, st.ReservedBytes)
}

// addLink opens the link's pad rings and QKD source and registers it with
// the relay engine.
func (n *Node) addLink(lc config.Link) (err error) {
	l := &nodeLink{cfg: lc, rates: [2]padRates{newPadRates(), newPadRates()}}
	st, err := controlplane.ParseState(string(lc.State))
	if err != nil {
		return fmt.Errorf("links[%s].state: %w", lc.Peer, err)
	}
	l.state = st
	defer func() {
		if err != nil {
			l.close()
		}
	}()
	open := func(dir string) (*ringstore.PadRing, error) {
		c := ringstore.PadRingConfig{Name: lc.Peer + "." + dir, Capacity: int(lc.PadCapacity)}
		if n.meta != nil {
			c.Dir = filepath.Join(n.cfg.Storage.Dir, "rings")
			c.Meta = n.meta
			if err := os.MkdirAll(c.Dir, 0o700); err != nil {
				return nil, err
			}
		}
		r, err := ringstore.OpenPadRing(c)
		if err != nil {
			return nil, fmt.Errorf("link to %s: %w", lc.Peer, err)
		}
		return r, nil
	}
	if l.tx, err = open("tx"); err != nil {
		return err
	}
	if l.rx, err = open("rx"); err != nil {
		return err
	}
	master := n.cfg.Node.ID < lc.Peer
	switch src := lc.Source; {
	case src.Simulator != nil:
		s := src.Simulator
		l.sim, err = qkdsim.New(qkdsim.Config{
			Link:       linkName(n.cfg.Node.ID, lc.Peer),
			Seed:       s.Seed,
			Master:     master,
			SecretRate: float64(s.Rate),
			BlockSize:  int(s.BlockSize),
			QBER:       s.QBER,
			Meta:       n.meta, // nil in memory mode
			Logger:     n.log.With("peer", lc.Peer),
		})
		if err != nil {
			return fmt.Errorf("links[%s].source.simulator: %w", lc.Peer, err)
		}
		l.src = l.sim
	case src.ETSI014 != nil:
		e := src.ETSI014
		crt, err := tls.LoadX509KeyPair(e.Cert, e.Key)
		if err != nil {
			return fmt.Errorf("links[%s].source.etsi014.cert %s / key %s: %w", lc.Peer, e.Cert, e.Key, err)
		}
		var roots *x509.CertPool // nil: the system's roots
		if e.CA != "" {
			if _, roots, err = loadTLS(config.TLS{CA: e.CA, Cert: e.Cert, Key: e.Key}); err != nil {
				return fmt.Errorf("links[%s].source.etsi014: %w", lc.Peer, err)
			}
		}
		// The link's master end is ETSI 014's master SAE: it calls
		// enc_keys naming the peer as slave; the slave end calls dec_keys.
		masterSAE, slaveSAE := e.SAE, e.PeerSAE
		if !master {
			masterSAE, slaveSAE = e.PeerSAE, e.SAE
		}
		l.src = etsi014client.NewBackground(etsi014client.Config{
			BaseURL:     e.URL,
			MasterSAE:   masterSAE,
			SlaveSAE:    slaveSAE,
			Master:      master,
			Certificate: crt,
			Roots:       roots,
			KeySize:     e.KeySize,
			PerRequest:  e.PerRequest,
			Timeout:     e.Timeout,
			Meta:        n.meta, // nil in memory mode
			Name:        linkName(n.cfg.Node.ID, lc.Peer),
			Logger:      n.log.With("peer", lc.Peer),
		})
	}
	if l.src != nil {
		l.qkd = l.src.Status()
	}
	if err := n.eng.AddLink(relay.LinkConfig{Peer: lc.Peer, Tx: l.tx, Rx: l.rx, Source: l.src}); err != nil {
		return err
	}
	n.links = append(n.links, l)
	n.byPeer[lc.Peer] = l
	return nil
}

// linkName names the QKD link between two nodes the same way at both ends.
func linkName(a, b string) string {
	if b < a {
		a, b = b, a
	}
	return a + "~" + b
}

func (l *nodeLink) close() error {
	var first error
	keep := func(err error) {
		if err != nil && first == nil {
			first = err
		}
	}
	if l.src != nil {
		keep(l.src.Close())
	}
	if l.tx != nil {
		keep(l.tx.Close())
	}
	if l.rx != nil {
		keep(l.rx.Close())
	}
	if first != nil {
		return fmt.Errorf("closing link to %s: %w", l.cfg.Peer, first)
	}
	return nil
}

// local is what the control plane is told of the link.
func (l *nodeLink) local() controlplane.LocalLink {
	l.mu.Lock()
	defer l.mu.Unlock()
	tx, rx := l.tx.Stats(), l.rx.Stats()
	ll := controlplane.LocalLink{
		Peer:        l.cfg.Peer,
		Up:          l.up,
		QKDUp:       l.src == nil || l.qkd.Up,
		TxStock:     tx.Stock,
		RxStock:     rx.Stock,
		FillRate:    l.rates[0].fill.PerSecond() + l.rates[1].fill.PerSecond(),
		ConsumeRate: l.rates[0].consume.PerSecond() + l.rates[1].consume.PerSecond(),
		QBER:        l.qkd.QBER,
		SecretRate:  l.qkd.SecretRate,
		State:       l.state,
		MinStock:    uint64(l.cfg.MinStock),
		MaxQBER:     l.cfg.MaxQBER,
	}
	return ll
}

// sample refreshes the link's rates and QKD status.
func (l *nodeLink) sample(now time.Time) {
	var st qkd.Status
	if l.src != nil {
		st = l.src.Status()
	}
	tx, rx := l.tx.Stats(), l.rx.Stats()
	l.mu.Lock()
	l.qkd = st
	l.rates[0].sample(now, tx)
	l.rates[1].sample(now, rx)
	l.mu.Unlock()
}

func (n *Node) sampleLoop() {
	defer n.wg.Done()
	t := time.NewTicker(statsInterval)
	defer t.Stop()
	for {
		select {
		case <-n.ctx.Done():
			return
		case now := <-t.C:
			for _, l := range n.links {
				l.sample(now)
				n.router.UpdateLink(l.local())
			}
			n.supply.Expire(now)
		}
	}
}

// linkEvents is the transport's handler: the relay engine sees a link
// first, so that its session exists before the control plane, told next,
// sends its database over it.
type linkEvents struct{ n *Node }

func (h linkEvents) LinkUp(c *kmlink.Conn) {
	h.n.eng.LinkUp(c)
	h.n.linkChanged(c.Peer(), true, "")
}

func (h linkEvents) LinkDown(c *kmlink.Conn, err error) {
	h.n.eng.LinkDown(c, err)
	reason := ""
	if err != nil {
		reason = err.Error()
	}
	h.n.linkChanged(c.Peer(), false, reason)
}

func (n *Node) linkChanged(peer string, up bool, reason string) {
	l := n.byPeer[peer]
	if l == nil {
		return
	}
	l.mu.Lock()
	changed := l.up != up
	l.up, l.since = up, time.Now()
	if !up {
		l.lastErr = reason
	}
	l.mu.Unlock()
	if changed {
		n.metrics.linkFlap(peer, up)
	}
	n.router.UpdateLink(l.local())
}

// SetLinkState sets the component state of the link to peer, as an
// operator does to drain a link before maintenance (out_of_service) or
// bring it back (in_service).
func (n *Node) SetLinkState(peer string, st controlplane.State) error {
	l := n.byPeer[peer]
	if l == nil {
		return fmt.Errorf("no KM link to %q on node %s", peer, n.cfg.Node.ID)
	}
	l.mu.Lock()
	old := l.state
	l.state = st
	l.mu.Unlock()
	if old != st {
		n.log.Warn("link state changed by operator", "peer", peer, "from", old.String(), "to", st.String())
	}
	n.router.UpdateLink(l.local())
	return nil
}

// Sim returns the QKD simulator of the link to peer, or nil: tests and the
// demo use it to cause outages and raise the QBER.
func (n *Node) Sim(peer string) *qkdsim.Sim {
	if l := n.byPeer[peer]; l != nil {
		return l.sim
	}
	return nil
}
