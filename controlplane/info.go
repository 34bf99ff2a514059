package controlplane

import (
	"slices"
	"strings"
	"time"
)

// Stats counts the router's work since New.
type Stats struct {
	AdvertsOriginated uint64 // own adverts built (changes and refreshes)
	AdvertsSent       uint64 // adverts handed to Send successfully, own and flooded
	AdvertsReceived   uint64
	Duplicates        uint64 // received adverts with the sequence number already held
	Stale             uint64 // received adverts older than the one held
	Malformed         uint64 // messages refused by the parser
	SendErrors        uint64 // messages Send failed on
	SPFRuns           uint64
	Reroutes          uint64    // destinations whose next hop changed, appeared or vanished
	LastChange        time.Time // last time an SPF run changed the table
}

// Stats returns the router's counters.
func (r *Router) Stats() Stats {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.stats
}

// LinkInfo is a local link as the router sees it.
type LinkInfo struct {
	LocalLink
	Usable bool
	// Cost is the key-aware cost the node advertises for the link; 0 when
	// not usable.
	Cost float64
	// Excluded says why the link is not usable, such as "link down" or
	// "QBER 0.13 above 0.11"; "" when usable.
	Excluded string
	// Static lists the destinations of static routes via this link.
	Static []string
}

// Links returns the local links, sorted by peer.
func (r *Router) Links() []LinkInfo {
	r.mu.Lock()
	defer r.mu.Unlock()
	infos := make([]LinkInfo, 0, len(r.links))
	for _, l := range r.links {
		info := LinkInfo{LocalLink: l.LocalLink, Usable: l.eval.usable, Cost: float64(l.eval.cost), Excluded: l.eval.reason}
		for dst, via := range r.static {
			if via == l.Peer {
				info.Static = append(info.Static, dst)
			}
		}
		slices.Sort(info.Static)
		infos = append(infos, info)
	}
	slices.SortFunc(infos, func(a, b LinkInfo) int { return strings.Compare(a.Peer, b.Peer) })
	return infos
}

// AdvertInfo is one advert of the LSDB.
type AdvertInfo struct {
	Origin string
	Seq    uint64
	Self   bool // this node's own advert
	// Flushed adverts withdraw their origin (it closed); they are kept
	// until they expire so that older copies are refused.
	Flushed   bool
	Age       time.Duration // since it was received or originated
	Remaining time.Duration // until it expires
	Links     []AdvertLink
}

// AdvertLink is one link of an advert, as its origin sees it.
type AdvertLink struct {
	Peer   string
	Up     bool
	QKDUp  bool
	Usable bool // the origin offers it to SPF
	// TwoWay is true when the peer's advert also lists the link as usable:
	// only then does SPF use it.
	TwoWay           bool
	State            State
	Cost             float64
	TxStock, RxStock uint64
	FillRate         float64
	ConsumeRate      float64
	QBER             float64
	SecretRate       float64
}

// Adverts returns a snapshot of the LSDB, sorted by origin.
func (r *Router) Adverts() []AdvertInfo {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.cfg.Now()
	lsdb := make(map[string]*advert, len(r.lsdb))
	for o, e := range r.lsdb {
		if !e.flushed() {
			lsdb[o] = e.adv
		}
	}
	infos := make([]AdvertInfo, 0, len(r.lsdb))
	for o, e := range r.lsdb {
		a := e.adv
		info := AdvertInfo{
			Origin: o, Seq: a.Seq, Self: o == r.self, Flushed: e.flushed(),
			Age: now.Sub(e.received), Remaining: max(e.expires.Sub(now), 0),
		}
		for i := range a.Links {
			l := &a.Links[i]
			_, twoWay := edgeCost(lsdb, a, l)
			info.Links = append(info.Links, AdvertLink{
				Peer: l.Peer, Up: l.up(), QKDUp: l.qkdUp(), Usable: l.usable(), TwoWay: twoWay,
				State: l.State, Cost: float64(l.Cost), TxStock: l.TxStock, RxStock: l.RxStock,
				FillRate: l.FillRate, ConsumeRate: l.ConsumeRate, QBER: l.QBER, SecretRate: l.SecretRate,
			})
		}
		infos = append(infos, info)
	}
	slices.SortFunc(infos, func(a, b AdvertInfo) int { return strings.Compare(a.Origin, b.Origin) })
	return infos
}
