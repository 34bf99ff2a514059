package wgkey

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// Defaults and bounds of Tunnel and Options.
const (
	DefaultInterval = 120 * time.Second // REKEY_AFTER_TIME: WireGuard rehandshakes this often anyway
	MinInterval     = time.Second
	DefaultRetry    = 100 * time.Millisecond
	maxMargin       = 200 * time.Millisecond // default Margin is min(Interval/10, maxMargin)
	maxFetch        = 10 * time.Second       // default Fetch is min(Interval/2, maxFetch)
	redrives        = 3                      // drives after the first one when no handshake is seen
)

// Tunnel is one WireGuard peer whose PSK follows a key stream.
type Tunnel struct {
	Name     string
	Peer     wgtypes.Key
	Interval time.Duration // epoch length; default 120 s, ≥ 1 s
	Policy   Policy
	Drive    bool // this side drives the handshake after each install (set on exactly one side of a tunnel)
	Source   KeySource
}

// Options tune a Rotator; the zero value is the defaults.
type Options struct {
	Now func() time.Time // clock (default time.Now)
	Log *slog.Logger     // default: discard

	// Margin is how long after an epoch boundary the driving side waits
	// before driving, so that both sides have installed: default
	// min(Interval/10, 200ms). Clock skew between the nodes must be below it.
	Margin time.Duration
	// Retry is how long after driving the driving side drives again if no
	// new handshake was seen (up to 3 more times): default 100 ms.
	Retry time.Duration
	// Fetch is how far ahead of a boundary the next key is fetched:
	// default min(Interval/2, 10 s).
	Fetch time.Duration
}

// TunnelStatus is a snapshot of one tunnel's rotation.
type TunnelStatus struct {
	Name string
	Peer wgtypes.Key

	Epoch         uint64    // the epoch of the PSK installed last, stream key or random
	LastRotation  time.Time // when a stream key was last installed
	LastHandshake time.Time // as last read from the interface

	Rotations    uint64 // stream keys installed, the first one at start included
	Failures     uint64 // epochs without their key, and failed writes
	LastError    string // the last failure, naming tunnel, peer and epoch; "" if none
	FailedClosed bool   // a random PSK is installed and the session closed (or, where the writer cannot close it, driven): the tunnel is down until a key comes

	// Unconfirmed counts epochs in which this side drove (or, at start,
	// waited for the other side's drive) but saw no new handshake after
	// all retries: the other side had another PSK or was unreachable, or,
	// with wgctrl, nothing was sent to the peer.
	Unconfirmed uint64
	// Redrives counts drives repeated because no handshake was seen
	// Options.Retry after the previous one.
	Redrives uint64
}

// Rotator rotates the PSKs of the tunnels of one interface (one Writer).
type Rotator struct {
	w       Writer
	wmu     sync.Mutex // the groups share the Writer: one call at a time
	now     func() time.Time
	log     *slog.Logger
	groups  []*group
	tunnels []*tunnel // in the order given

	mu      sync.Mutex // guards every tunnel's st
	running atomic.Bool
}

type tunnel struct {
	Tunnel
	peer string // base64 public key, for logs and errors
	st   TunnelStatus
}

// group is the tunnels of one interval: they share boundaries, so one
// SetPSKs call installs them all.
type group struct {
	interval, margin, retry, fetch time.Duration
	tunnels                        []*tunnel

	// hsLatency is the smoothed time from a drive to its handshake seen
	// (ns), which sets how long confirm waits before driving again.
	hsLatency atomic.Int64
}

// observeHandshake folds the time a driven handshake took into
// hsLatency (an exponentially weighted average, 1/4 new).
func (g *group) observeHandshake(d time.Duration) {
	old := g.hsLatency.Load()
	if old == 0 {
		g.hsLatency.Store(int64(d))
		return
	}
	g.hsLatency.Store(old + (int64(d)-old)/4)
}

// NewRotator checks the tunnels and options and fills in defaults. Names
// and peers must be unique, intervals at least 1 s, sources non-nil.
func NewRotator(w Writer, tunnels []Tunnel, o Options) (*Rotator, error) {
	if w == nil {
		return nil, errors.New("wgkey: no Writer")
	}
	if o.Margin < 0 || o.Retry < 0 || o.Fetch < 0 {
		return nil, fmt.Errorf("wgkey: negative Margin %v, Retry %v or Fetch %v", o.Margin, o.Retry, o.Fetch)
	}
	r := &Rotator{w: w, now: o.Now, log: o.Log}
	if r.now == nil {
		r.now = time.Now
	}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	retry := o.Retry
	if retry == 0 {
		retry = DefaultRetry
	}

	names := map[string]bool{}
	peers := map[wgtypes.Key]string{}
	byInterval := map[time.Duration]*group{}
	for _, tc := range tunnels {
		t := &tunnel{Tunnel: tc, peer: tc.Peer.String()}
		if t.Interval == 0 {
			t.Interval = DefaultInterval
		}
		switch {
		case t.Name == "":
			return nil, fmt.Errorf("wgkey: tunnel with peer %s has no name", t.peer)
		case names[t.Name]:
			return nil, fmt.Errorf("wgkey: tunnel %q is listed twice", t.Name)
		case t.Peer == wgtypes.Key{}:
			return nil, fmt.Errorf("wgkey: tunnel %q has no peer public key", t.Name)
		case peers[t.Peer] != "":
			return nil, fmt.Errorf("wgkey: tunnels %q and %q have the same peer %s", peers[t.Peer], t.Name, t.peer)
		case t.Interval < MinInterval:
			return nil, fmt.Errorf("wgkey: tunnel %q: interval %v is below %v", t.Name, t.Interval, MinInterval)
		case t.Source == nil:
			return nil, fmt.Errorf("wgkey: tunnel %q has no key source", t.Name)
		case t.Policy != FailClosed && t.Policy != KeepCurrent:
			return nil, fmt.Errorf("wgkey: tunnel %q: unknown policy %v", t.Name, t.Policy)
		}
		names[t.Name] = true
		peers[t.Peer] = t.Name
		t.st = TunnelStatus{Name: t.Name, Peer: t.Peer}
		r.tunnels = append(r.tunnels, t)

		g := byInterval[t.Interval]
		if g == nil {
			g = &group{interval: t.Interval, retry: retry,
				margin: orDefault(o.Margin, min(t.Interval/10, maxMargin)),
				fetch:  orDefault(o.Fetch, min(t.Interval/2, maxFetch))}
			if g.margin >= g.interval || g.fetch > g.interval {
				return nil, fmt.Errorf("wgkey: tunnel %q: margin %v and fetch %v must be below its interval %v", t.Name, g.margin, g.fetch, g.interval)
			}
			byInterval[t.Interval] = g
			r.groups = append(r.groups, g)
		}
		g.tunnels = append(g.tunnels, t)
	}
	return r, nil
}

// orDefault returns v, or def if v is zero.
func orDefault(v, def time.Duration) time.Duration {
	if v == 0 {
		return def
	}
	return v
}

// Status returns a snapshot of every tunnel, in the order given to NewRotator.
func (r *Rotator) Status() []TunnelStatus {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]TunnelStatus, len(r.tunnels))
	for i, t := range r.tunnels {
		out[i] = t.st
	}
	return out
}

// update changes t's status under the lock.
func (r *Rotator) update(t *tunnel, f func(st *TunnelStatus)) {
	r.mu.Lock()
	f(&t.st)
	r.mu.Unlock()
}

// fail counts a failure of t in epoch n and logs it at Error level.
func (r *Rotator) fail(t *tunnel, n uint64, msg string, err error) {
	r.failWith(t, n, msg, err, nil)
}

// failWith is fail that also applies change (if not nil) to t's status,
// in the same update as the failure.
func (r *Rotator) failWith(t *tunnel, n uint64, msg string, err error, change func(st *TunnelStatus)) {
	e := fmt.Sprintf("tunnel %s peer %s epoch %d: %s: %v", t.Name, t.peer, n, msg, err)
	r.update(t, func(st *TunnelStatus) {
		st.Failures++
		st.LastError = e
		if change != nil {
			change(st)
		}
	})
	r.log.Error("wgkey: "+msg, "tunnel", t.Name, "peer", t.peer, "epoch", n, "policy", t.Policy.String(), "err", err)
}

// writer calls f with the Writer, one caller at a time.
func (r *Rotator) writer(f func(w Writer) error) error {
	r.wmu.Lock()
	defer r.wmu.Unlock()
	return f(r.w)
}

func peerKeys(ts []*tunnel) []wgtypes.Key {
	ks := make([]wgtypes.Key, len(ts))
	for i, t := range ts {
		ks[i] = t.Peer
	}
	return ks
}
