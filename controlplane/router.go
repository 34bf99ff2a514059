package controlplane

import (
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Implementation constants: defaults for Config.
const (
	DefaultRefresh           = 30 * time.Second
	DefaultSPFDelay          = 10 * time.Millisecond
	DefaultMinOriginInterval = 100 * time.Millisecond
	// DefaultMaxAgeFactor × Refresh is the default MaxAge: an advert
	// survives three lost refreshes (a refresh sent while a link flaps is
	// lost with the link's QUIC connection).
	DefaultMaxAgeFactor = 4
)

// ErrClosed is returned by Receive after Close.
var ErrClosed = errors.New("controlplane: router closed")

// LocalLink is what this node knows of one of its KM links. The node calls
// UpdateLink on link up/down events and every second or so with fresh
// stats.
type LocalLink struct {
	Peer             string
	Up               bool // the KM link (QUIC) is up
	QKDUp            bool // the link's QKD module or source delivers keys
	QKDFault         string
	TxStock, RxStock uint64  // pad bytes available each way
	FillRate         float64 // pad bytes/s arriving from QKD
	ConsumeRate      float64 // pad bytes/s spent
	QBER             float64
	SecretRate       float64 // secret key rate, bit/s
	State            State
	MinStock         uint64  // the link is excluded while the smaller stock is below this
	MaxQBER          float64 // the link is excluded while QBER is above this; 0 means DefaultMaxQBER
}

// Config configures a Router. Zero durations take the defaults.
type Config struct {
	NodeID string

	// Send sends one message to neighbour peer on the KM link's reliable,
	// ordered control stream, in a CONTROL frame of kind Kind. It may fail
	// when the link is down; the router does not retry, because database
	// sync on the next link up repairs what was lost. It is never called
	// with the router's lock held, may be called from several goroutines
	// at once, and must not retain msg after returning.
	Send func(peer string, msg []byte) error

	// Static maps a destination to the neighbour to send it to. A static
	// route overrides the computed one while the KM link to the neighbour
	// is up and not out of service: stock, QBER, QKD faults, standby and
	// reserved do not matter, since the operator pinned the route. While
	// the link is down or out of service the destination falls back to its
	// computed route, or has none.
	Static map[string]string

	// Refresh is how often the node re-originates its advert even when
	// nothing changed (default 30s). MaxAge is the lifetime of its adverts:
	// other nodes drop an advert not refreshed for this long (default
	// 4×Refresh; at least 2×Refresh).
	Refresh time.Duration
	MaxAge  time.Duration

	// SPFDelay is the hold-down between the first change and the SPF run
	// that covers it, so that a burst of adverts costs one run (default
	// 10ms).
	SPFDelay time.Duration

	// MinOriginInterval is the least time between two originations of the
	// node's own advert for changes that only add capacity: a link coming
	// up or becoming usable, or a cost change (default 100ms). Losses (a
	// link going down or becoming unusable, or removed) are originated at
	// once.
	MinOriginInterval time.Duration

	Logger *slog.Logger     // default slog.Default()
	Now    func() time.Time // default time.Now
	// AfterFunc schedules f after d and returns a function that cancels
	// it, as time.AfterFunc (the default) does. Tests inject a fake clock.
	AfterFunc func(d time.Duration, f func()) (stop func() bool)

	// OnChange, if set, is called (without locks held) after an SPF run
	// changed the routing table.
	OnChange func()
}

// Router is one node's link-state routing process. Its methods are safe for
// concurrent use.
type Router struct {
	cfg  Config
	self string
	log  *slog.Logger

	table atomic.Pointer[table]
	spfMu sync.Mutex // serialises SPF runs, so tables are stored in order

	mu       sync.Mutex
	closed   bool
	seq      uint64    // sequence number of the last own advert
	lastOrig time.Time // zero until the first origination after New
	links    map[string]*local
	lsdb     map[string]*lsa
	origT    rtimer // deferred origination (rate limit)
	refreshT rtimer
	spfT     rtimer
	ageT     rtimer
	stats    Stats
	static   map[string]string // dst -> neighbour; replaced whole by SetStatic
}

type local struct {
	LocalLink
	eval linkEval
	// needSync is set when a send to the peer failed while the link was
	// up (its control stream not ready yet, say): the next UpdateLink
	// repeats the database sync, so nothing stays lost until a refresh.
	needSync bool
}

// lsa is an LSDB entry. adv is shared and never modified.
type lsa struct {
	adv      *advert
	received time.Time // or originated
	expires  time.Time
}

func (e *lsa) flushed() bool { return e.adv.Lifetime == 0 }

// rtimer is a cancellable timer. gen makes a callback that fired while
// being cancelled a no-op.
type rtimer struct {
	gen   uint64
	armed bool
	at    time.Time
	stop  func() bool
}

type outMsg struct {
	peer string
	msg  []byte
	n    int // adverts in msg
}

// New returns a router for cfg.NodeID. It originates the node's first
// advert, with no links, at once.
func New(cfg Config) (*Router, error) {
	if err := checkNodeID(cfg.NodeID); err != nil {
		return nil, fmt.Errorf("controlplane: config node_id: %w", err)
	}
	if cfg.Send == nil {
		return nil, errors.New("controlplane: config: Send is nil")
	}
	static, err := checkStatic(cfg.NodeID, cfg.Static)
	if err != nil {
		return nil, err
	}
	if cfg.Refresh == 0 {
		cfg.Refresh = DefaultRefresh
	}
	if cfg.MaxAge == 0 {
		cfg.MaxAge = DefaultMaxAgeFactor * cfg.Refresh
	}
	if cfg.SPFDelay == 0 {
		cfg.SPFDelay = DefaultSPFDelay
	}
	if cfg.MinOriginInterval == 0 {
		cfg.MinOriginInterval = DefaultMinOriginInterval
	}
	switch {
	case cfg.Refresh < 0 || cfg.SPFDelay < 0 || cfg.MinOriginInterval < 0:
		return nil, fmt.Errorf("controlplane: config: negative duration (refresh %v, spf_delay %v, min_origin_interval %v)", cfg.Refresh, cfg.SPFDelay, cfg.MinOriginInterval)
	case cfg.MaxAge < 2*cfg.Refresh:
		return nil, fmt.Errorf("controlplane: config: max_age %v, want at least 2×refresh (%v)", cfg.MaxAge, 2*cfg.Refresh)
	case cfg.MaxAge > MaxLifetime:
		return nil, fmt.Errorf("controlplane: config: max_age %v, want at most %v", cfg.MaxAge, MaxLifetime)
	case cfg.MaxAge < time.Millisecond:
		return nil, fmt.Errorf("controlplane: config: max_age %v, want at least 1ms", cfg.MaxAge)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.AfterFunc == nil {
		cfg.AfterFunc = func(d time.Duration, f func()) func() bool { return time.AfterFunc(d, f).Stop }
	}
	r := &Router{
		cfg:    cfg,
		self:   cfg.NodeID,
		log:    cfg.Logger.With("node", cfg.NodeID),
		static: static,
		links:  map[string]*local{},
		lsdb:   map[string]*lsa{},
	}
	r.table.Store(&table{next: map[string]string{}})
	now := r.cfg.Now()
	// Seed the sequence number from the wall clock, so that a restarted
	// node starts above its old adverts unless its clock went back; if it
	// did, hearing its old advert makes it jump above (see Receive).
	if ns := now.UnixNano(); ns > 0 {
		r.seq = uint64(ns)
	}
	r.mu.Lock()
	out := r.originateLocked(now, nil) // no neighbours yet: sends nothing
	r.lastOrig = time.Time{}
	r.mu.Unlock()
	r.send(out)
	return r, nil
}

// checkStatic validates static routes and returns a copy.
func checkStatic(self string, routes map[string]string) (map[string]string, error) {
	static := make(map[string]string, len(routes))
	for dst, via := range routes {
		switch {
		case checkNodeID(dst) != nil:
			return nil, fmt.Errorf("controlplane: config static[%q]: bad destination: %w", dst, checkNodeID(dst))
		case checkNodeID(via) != nil:
			return nil, fmt.Errorf("controlplane: config static[%q]: bad neighbour: %w", dst, checkNodeID(via))
		case dst == self:
			return nil, fmt.Errorf("controlplane: config static[%q]: a route to this node itself", dst)
		case via == self:
			return nil, fmt.Errorf("controlplane: config static[%q]: via %q is this node itself", dst, via)
		}
		static[dst] = via
	}
	return static, nil
}

// SetStatic replaces the static routes (Config.Static), as on a config
// reload, and recomputes the table. If routes is invalid it returns an
// error and changes nothing.
func (r *Router) SetStatic(routes map[string]string) error {
	static, err := checkStatic(r.self, routes)
	if err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return ErrClosed
	}
	r.static = static // replaced, never modified: runSPF reads it unlocked
	r.log.Info("controlplane: static routes set", "routes", len(static))
	r.scheduleSPFLocked()
	return nil
}

// NodeID returns the node's ID.
func (r *Router) NodeID() string { return r.self }

// UpdateLink records the state and stats of the local link to l.Peer,
// adding it if new. A link coming up gets the whole LSDB (database sync);
// a change in what the node advertises about the link (up, QKD up, usable,
// state, cost) re-originates the node's advert, at once for a loss and
// within MinOriginInterval otherwise. Stats alone are carried by the next
// origination or refresh.
func (r *Router) UpdateLink(l LocalLink) {
	if err := checkNodeID(l.Peer); err != nil || l.Peer == r.self {
		r.log.Error("controlplane: UpdateLink: bad peer", "peer", l.Peer, "err", err)
		return
	}
	l.FillRate, l.ConsumeRate, l.SecretRate = sanitiseRate(l.FillRate), sanitiseRate(l.ConsumeRate), sanitiseRate(l.SecretRate)
	l.QBER = sanitiseQBER(l.QBER)
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return
	}
	now := r.cfg.Now()
	prev := r.links[l.Peer]
	var prevEval *linkEval
	wasUp, wasStatic, resync := false, false, false
	if prev != nil {
		prevEval, wasUp, wasStatic, resync = &prev.eval, prev.Up, staticUsable(&prev.LocalLink), prev.needSync
	}
	cur := &local{LocalLink: l, eval: evaluate(&l, prevEval)}
	r.links[l.Peer] = cur
	if prev == nil || prev.eval.usable != cur.eval.usable || prev.eval.reason != cur.eval.reason {
		if cur.eval.usable {
			r.log.Info("controlplane: link usable", "peer", l.Peer, "cost", cur.eval.cost, "state", l.State)
		} else {
			r.log.Info("controlplane: link excluded", "peer", l.Peer, "reason", cur.eval.reason)
		}
	}
	out, originated := r.maybeOriginateLocked(now, nil)
	if l.Up && (!wasUp || resync) {
		out = r.syncLocked(l.Peer, now, originated && !resync, out)
	}
	if r.isStaticVia(l.Peer) && wasStatic != staticUsable(&l) {
		r.scheduleSPFLocked()
	}
	r.mu.Unlock()
	r.send(out)
}

// RemoveLink forgets the local link to peer and withdraws it from the
// node's advert at once.
func (r *Router) RemoveLink(peer string) {
	r.mu.Lock()
	if r.closed || r.links[peer] == nil {
		r.mu.Unlock()
		return
	}
	delete(r.links, peer)
	r.log.Info("controlplane: link removed", "peer", peer)
	out, _ := r.maybeOriginateLocked(r.cfg.Now(), nil)
	if r.isStaticVia(peer) {
		r.scheduleSPFLocked()
	}
	r.mu.Unlock()
	r.send(out)
}

// Receive handles a message from neighbour peer. msg is the body of a
// CONTROL frame of kind Kind; Receive does not retain it. Adverts newer
// than the LSDB's are installed and flooded to every other neighbour;
// others are counted (Duplicates, Stale) and dropped. A malformed message
// is counted (Malformed), changes nothing and returns an error wrapping a
// *ParseError.
func (r *Router) Receive(peer string, msg []byte) error {
	advs, perr := parseMessage(msg)
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return ErrClosed
	}
	if perr != nil {
		r.stats.Malformed++
		r.mu.Unlock()
		r.log.Warn("controlplane: malformed message", "peer", peer, "len", len(msg), "err", perr)
		return fmt.Errorf("controlplane: node %s: message from peer %q: %w", r.self, peer, perr)
	}
	now := r.cfg.Now()
	var fresh []*advert
	var out []outMsg
	for _, a := range advs {
		r.stats.AdvertsReceived++
		if a.Origin == r.self {
			out = r.ownEchoLocked(peer, a, now, out)
			continue
		}
		cur := r.lsdb[a.Origin]
		switch {
		case cur == nil || a.Seq > cur.adv.Seq:
			r.installLocked(a, now)
			fresh = append(fresh, a)
			r.log.Debug("controlplane: advert installed", "peer", peer, "origin", a.Origin, "seq", a.Seq, "links", len(a.Links), "flush", a.Lifetime == 0)
		case a.Seq == cur.adv.Seq:
			r.stats.Duplicates++
		default:
			r.stats.Stale++
			r.log.Debug("controlplane: stale advert dropped", "peer", peer, "origin", a.Origin, "seq", a.Seq, "have", cur.adv.Seq)
		}
	}
	if len(fresh) > 0 {
		r.scheduleSPFLocked()
		out = r.floodLocked(fresh, peer, now, out)
	}
	r.mu.Unlock()
	r.send(out)
	return nil
}

// ownEchoLocked handles an advert claiming to be this node's. One newer than
// the node's own comes from an earlier incarnation whose sequence numbers
// ran ahead (its clock was ahead, or it is the node's flush from Close):
// jump above it and re-originate at once, so the network replaces it.
func (r *Router) ownEchoLocked(peer string, a *advert, now time.Time, out []outMsg) []outMsg {
	switch {
	case a.Seq > r.seq:
		r.log.Info("controlplane: own advert from an earlier incarnation; jumping sequence number", "peer", peer, "origin", a.Origin, "seq", a.Seq, "had", r.seq)
		r.seq = a.Seq
		return r.originateLocked(now, out)
	case a.Seq == r.seq:
		r.stats.Duplicates++
	default:
		r.stats.Stale++
	}
	return out
}

// installLocked puts a into the LSDB. A flush is kept, without links, for
// MaxAge so that older copies still in flight are refused.
func (r *Router) installLocked(a *advert, now time.Time) {
	life := time.Duration(a.Lifetime) * time.Millisecond
	if a.Lifetime == 0 {
		life = r.cfg.MaxAge
	}
	e := &lsa{adv: a, received: now, expires: now.Add(life)}
	r.lsdb[a.Origin] = e
	if !r.ageT.armed || e.expires.Before(r.ageT.at) {
		r.arm(&r.ageT, e.expires.Sub(now), now, r.onAge)
	}
}

// onAge drops expired adverts and re-arms for the next expiry.
func (r *Router) onAge(now time.Time) []outMsg {
	var next time.Time
	for origin, e := range r.lsdb {
		if origin == r.self {
			continue
		}
		if !e.expires.After(now) {
			delete(r.lsdb, origin)
			r.log.Info("controlplane: advert aged out", "origin", origin, "seq", e.adv.Seq)
			r.scheduleSPFLocked()
		} else if next.IsZero() || e.expires.Before(next) {
			next = e.expires
		}
	}
	if !next.IsZero() {
		r.arm(&r.ageT, next.Sub(now), now, r.onAge)
	}
	return nil
}

// wantLinks returns the links the node's advert should list now.
func (r *Router) wantLinks() []advLink {
	links := make([]advLink, 0, len(r.links))
	for _, l := range r.links {
		var flags uint8
		if l.Up {
			flags |= flagUp
		}
		if l.QKDUp {
			flags |= flagQKDUp
		}
		if l.eval.usable {
			flags |= flagUsable
		}
		links = append(links, advLink{
			Peer: l.Peer, Flags: flags, State: l.State, Cost: l.eval.cost,
			TxStock: l.TxStock, RxStock: l.RxStock,
			FillRate: l.FillRate, ConsumeRate: l.ConsumeRate, QBER: l.QBER, SecretRate: l.SecretRate,
		})
	}
	slices.SortFunc(links, func(a, b advLink) int { return strings.Compare(a.Peer, b.Peer) })
	return links
}

// needOriginateLocked compares what the node would advertise now with its
// current advert, ignoring stats. urgent means a loss: a link down,
// unusable or gone.
func (r *Router) needOriginateLocked() (need, urgent bool) {
	cur := r.lsdb[r.self].adv
	for _, l := range r.links {
		a := cur.link(l.Peer)
		if a == nil {
			need = true
			continue
		}
		if a.up() != l.Up || a.qkdUp() != l.QKDUp || a.usable() != l.eval.usable || a.State != l.State || a.Cost != l.eval.cost {
			need = true
			if a.up() && !l.Up || a.usable() && !l.eval.usable {
				urgent = true
			}
		}
	}
	for i := range cur.Links {
		if r.links[cur.Links[i].Peer] == nil {
			need, urgent = true, true
		}
	}
	return need, urgent
}

// maybeOriginateLocked re-originates if the advert would change: at once
// for a loss or when MinOriginInterval has passed since the last
// origination, else when it will have.
func (r *Router) maybeOriginateLocked(now time.Time, out []outMsg) ([]outMsg, bool) {
	need, urgent := r.needOriginateLocked()
	if !need {
		return out, false
	}
	wait := r.cfg.MinOriginInterval - now.Sub(r.lastOrig)
	if urgent || r.lastOrig.IsZero() || wait <= 0 {
		return r.originateLocked(now, out), true
	}
	if !r.origT.armed {
		r.arm(&r.origT, wait, now, func(now time.Time) []outMsg {
			out, _ := r.maybeOriginateLocked(now, nil)
			return out
		})
	}
	return out, false
}

// originateLocked builds, installs and floods a new own advert.
func (r *Router) originateLocked(now time.Time, out []outMsg) []outMsg {
	r.seq++
	a := &advert{
		Origin:   r.self,
		Seq:      r.seq,
		Lifetime: uint32(r.cfg.MaxAge / time.Millisecond),
		Links:    r.wantLinks(),
	}
	r.lsdb[r.self] = &lsa{adv: a, received: now, expires: now.Add(r.cfg.MaxAge)}
	r.stats.AdvertsOriginated++
	r.lastOrig = now
	r.disarm(&r.origT)
	r.arm(&r.refreshT, r.cfg.Refresh, now, func(now time.Time) []outMsg { return r.originateLocked(now, nil) })
	r.scheduleSPFLocked()
	r.log.Debug("controlplane: advert originated", "origin", r.self, "seq", a.Seq, "links", len(a.Links))
	return r.floodLocked([]*advert{a}, "", now, out)
}

// neighboursLocked returns the peers of up links, but not except, sorted.
func (r *Router) neighboursLocked(except string) []string {
	var peers []string
	for p, l := range r.links {
		if l.Up && p != except {
			peers = append(peers, p)
		}
	}
	slices.Sort(peers)
	return peers
}

// floodLocked queues advs for every up neighbour but except. Flooding over
// unusable links is fine: control messages cost no pad.
func (r *Router) floodLocked(advs []*advert, except string, now time.Time, out []outMsg) []outMsg {
	peers := r.neighboursLocked(except)
	if len(peers) == 0 {
		return out
	}
	msgs := r.packLocked(advs, now)
	for _, p := range peers {
		for _, m := range msgs {
			out = append(out, outMsg{peer: p, msg: m.msg, n: m.n})
		}
	}
	return out
}

// syncLocked queues the whole LSDB for peer, whose link just came up; the
// own advert is left out when it was just flooded to peer anyway.
func (r *Router) syncLocked(peer string, now time.Time, skipSelf bool, out []outMsg) []outMsg {
	origins := make([]string, 0, len(r.lsdb))
	for o := range r.lsdb {
		if !(skipSelf && o == r.self) {
			origins = append(origins, o)
		}
	}
	slices.Sort(origins)
	advs := make([]*advert, 0, len(origins))
	for _, o := range origins {
		advs = append(advs, r.lsdb[o].adv)
	}
	for _, m := range r.packLocked(advs, now) {
		out = append(out, outMsg{peer: peer, msg: m.msg, n: m.n})
	}
	r.log.Debug("controlplane: database sync", "peer", peer, "adverts", len(advs))
	return out
}

// packLocked encodes advs, with their remaining lifetimes, into as few
// messages as fit MaxMessageLen. Expired adverts are left out.
func (r *Router) packLocked(advs []*advert, now time.Time) []outMsg {
	var msgs []outMsg
	var cur []byte
	n := 0
	for _, a := range advs {
		e := r.lsdb[a.Origin]
		var life uint32
		if a.Lifetime != 0 {
			if e == nil || e.adv != a || !e.expires.After(now) {
				continue // replaced or expired meanwhile
			}
			life = uint32(max(e.expires.Sub(now)/time.Millisecond, 1))
		}
		if cur != nil && (len(cur)+a.encodedLen() > MaxMessageLen || n == 1<<16-1) {
			msgs = append(msgs, outMsg{msg: cur, n: n})
			cur, n = nil, 0
		}
		if cur == nil {
			cur = appendMessageHeader(make([]byte, 0, 512), 0)
		}
		cur = appendAdvert(cur, a, life)
		n++
	}
	if cur != nil {
		msgs = append(msgs, outMsg{msg: cur, n: n})
	}
	for i := range msgs {
		m := msgs[i].msg
		m[2], m[3] = byte(msgs[i].n>>8), byte(msgs[i].n)
	}
	return msgs
}

// send hands out to cfg.Send. It must be called without r.mu held.
func (r *Router) send(out []outMsg) {
	if len(out) == 0 {
		return
	}
	var sent uint64
	var failed []string
	for _, o := range out {
		if err := r.cfg.Send(o.peer, o.msg); err != nil {
			failed = append(failed, o.peer)
			r.log.Debug("controlplane: send failed", "peer", o.peer, "err", err)
			continue
		}
		sent += uint64(o.n)
	}
	r.mu.Lock()
	r.stats.AdvertsSent += sent
	r.stats.SendErrors += uint64(len(failed))
	for _, p := range failed {
		if l := r.links[p]; l != nil && l.Up {
			l.needSync = true
		}
	}
	r.mu.Unlock()
}

// arm (re)starts t to call f, with r.mu held, d from now; what f returns is
// sent after r.mu is released.
func (r *Router) arm(t *rtimer, d time.Duration, now time.Time, f func(now time.Time) []outMsg) {
	r.disarm(t)
	t.gen++
	gen := t.gen
	t.armed, t.at = true, now.Add(d)
	t.stop = r.cfg.AfterFunc(d, func() {
		r.mu.Lock()
		if r.closed || t.gen != gen {
			r.mu.Unlock()
			return
		}
		t.armed = false
		out := f(r.cfg.Now())
		r.mu.Unlock()
		r.send(out)
	})
}

func (r *Router) disarm(t *rtimer) {
	if t.armed {
		t.stop()
		t.armed = false
		t.gen++
	}
}

// scheduleSPFLocked starts the SPF hold-down unless it is running: changes
// within SPFDelay of the first share one run.
func (r *Router) scheduleSPFLocked() {
	if r.spfT.armed || r.closed {
		return
	}
	r.spfT.gen++
	gen := r.spfT.gen
	r.spfT.armed = true
	r.spfT.stop = r.cfg.AfterFunc(r.cfg.SPFDelay, func() { r.runSPF(gen) })
}

func (r *Router) isStaticVia(peer string) bool {
	for _, via := range r.static {
		if via == peer {
			return true
		}
	}
	return false
}

// staticUsable reports whether a static route may use l: see Config.Static.
func staticUsable(l *LocalLink) bool { return l.Up && l.State != OutOfService }

// Close stops the router's timers and flushes its advert: neighbours get
// an advert with a higher sequence number, no links and lifetime 0, which
// removes the node from every LSDB at once (as OSPF's premature ageing
// does). Close is idempotent.
func (r *Router) Close() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	now := r.cfg.Now()
	r.seq++
	flush := &advert{Origin: r.self, Seq: r.seq}
	r.lsdb[r.self] = &lsa{adv: flush, received: now, expires: now.Add(r.cfg.MaxAge)}
	out := r.floodLocked([]*advert{flush}, "", now, nil)
	r.closed = true
	for _, t := range []*rtimer{&r.origT, &r.refreshT, &r.ageT, &r.spfT} {
		r.disarm(t)
	}
	r.mu.Unlock()
	r.table.Store(&table{next: map[string]string{}})
	for _, o := range out {
		_ = r.cfg.Send(o.peer, o.msg)
	}
	return nil
}
