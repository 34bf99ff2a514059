package wgkey

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"sync"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// Run rotates until ctx ends, then returns nil. It installs the current
// epoch's keys at once, then each epoch's at its boundary. Failures are
// counted and logged, not returned: a tunnel heals at the next epoch whose
// key comes. Run may be called once at a time.
func (r *Rotator) Run(ctx context.Context) error {
	if !r.running.CompareAndSwap(false, true) {
		return errors.New("wgkey: Rotator.Run is already running")
	}
	defer r.running.Store(false)
	var wg sync.WaitGroup
	for _, g := range r.groups {
		wg.Go(func() { r.runGroup(ctx, g) })
	}
	wg.Wait()
	<-ctx.Done() // with no tunnels, Run still lasts until ctx ends
	return nil
}

func (r *Rotator) runGroup(ctx context.Context, g *group) {
	n, keys := r.fetchCurrent(ctx, g)
	first := true
	for {
		next := n + 1
		b := EpochStart(next, g.interval)
		// The next keys are fetched from Fetch before the boundary on,
		// however long the drive below takes.
		nextKeys := startFetch(ctx, r.now, g.tunnels, next, b.Add(-g.fetch), b)
		r.installAndDrive(ctx, g, n, keys, first)
		first = false
		if !sleepUntil(ctx, r.now, b) {
			nextKeys.discard()
			return
		}
		n, keys = next, nextKeys
		if EpochAt(r.now(), g.interval) != n {
			// We woke more than an epoch late (a suspended process, a clock
			// stepped forward): the keys fetched are for an epoch that is over.
			keys.discard()
			n, keys = r.fetchCurrent(ctx, g)
		}
	}
}

// fetchCurrent fetches the keys of the epoch under way, waiting at most
// g.fetch for them, for installing at once (at start, or after falling
// behind).
func (r *Rotator) fetchCurrent(ctx context.Context, g *group) (uint64, *fetchBatch) {
	for {
		now := r.now()
		n := EpochAt(now, g.interval)
		keys := startFetch(ctx, r.now, g.tunnels, n, now, now.Add(g.fetch))
		keys.wait(ctx, g.fetch)
		if EpochAt(r.now(), g.interval) == n || ctx.Err() != nil {
			return n, keys
		}
		keys.discard()
	}
}

// outcome is what happened to one tunnel at one boundary.
type outcome int

const (
	installed    outcome = iota // the stream key is in place
	failedClosed                // a random key is in place
	kept                        // the key was missing; the old PSK stays (KeepCurrent)
)

// installAndDrive installs epoch n's keys for every tunnel of g in one
// SetPSKs call, then drives and checks the handshakes.
func (r *Rotator) installAndDrive(ctx context.Context, g *group, n uint64, keys *fetchBatch, first bool) {
	updates := make([]Update, 0, len(g.tunnels))
	defer clear(updates)
	outcomes := make([]outcome, len(g.tunnels))
	missing := make([]error, len(g.tunnels)) // why a tunnel failing closed has no key
	for i, t := range g.tunnels {
		k, err := keys.take(i)
		switch {
		case err == nil:
			updates = append(updates, Update{Peer: t.Peer, PSK: k})
			clear(k[:])
		case t.Policy == KeepCurrent:
			outcomes[i] = kept
			r.fail(t, n, "no key for the epoch: keeping the current PSK", err)
		default:
			outcomes[i] = failedClosed
			var random Key
			rand.Read(random[:]) // never fails (crypto/rand, Go ≥ 1.24)
			updates = append(updates, Update{Peer: t.Peer, PSK: random})
			clear(random[:])
			missing[i] = err // counted with the state change below, once the random PSK is in
		}
	}
	keys.discard()

	writeErr := r.writer(func(w Writer) error { return w.SetPSKs(updates) })
	installedAt := time.Now() // WireGuard stamps handshakes with the real clock, not r.now
	stamp := r.now()
	for _, t := range g.tunnels {
		t.Source.Release(n + 1)
	}

	// drive: the tunnels to drive Margin after the boundary; expect: those
	// whose handshake must then complete; closed: those failing closed.
	var drive, expect, closed []*tunnel
	for i, t := range g.tunnels {
		switch {
		case outcomes[i] == kept:
			continue
		case writeErr != nil && outcomes[i] == failedClosed:
			r.fail(t, n, "no key for the epoch, and installing a random PSK failed", errors.Join(missing[i], writeErr))
			continue
		case writeErr != nil:
			r.fail(t, n, "installing the PSK", writeErr)
			continue
		case outcomes[i] == failedClosed:
			closed = append(closed, t)
			continue
		}
		r.update(t, func(st *TunnelStatus) {
			st.Epoch, st.LastRotation, st.FailedClosed = n, stamp, false
			st.Rotations++
		})
		if t.Drive {
			drive = append(drive, t)
		}
		// At start the other side may have installed long before, or not
		// yet. So at start the side that does not drive also expects a
		// handshake, and drives (in confirm) if none came from the driving
		// side by then: that covers a driving side that started first and
		// whose handshake failed. It does not drive at once, as two drives
		// crossing would make both handshakes fail (each side drops its own
		// initiation on receiving the other's) and retry.
		if t.Drive || first {
			expect = append(expect, t)
		}
	}
	stop := r.closeSessions(n, closed)
	// Only now, with the random PSK in and the sessions closed (or, where
	// the writer cannot close them, about to be driven), does the status
	// say the tunnel failed closed; and in one update with the failure, so
	// that no reader sees the failure counted but the tunnel still open.
	for i, t := range g.tunnels {
		if outcomes[i] == failedClosed && writeErr == nil {
			r.failWith(t, n, "no key for the epoch: installed a random PSK, the tunnel is down until a key comes", missing[i],
				func(st *TunnelStatus) { st.Epoch, st.FailedClosed = n, true })
		}
	}
	r.log.Debug("wgkey: installed PSKs", "epoch", n, "interval", g.interval, "tunnels", len(g.tunnels), "written", len(updates), "err", writeErr)

	// Drive once the other side has installed too: Margin after the
	// boundary (or after our install, at start). Started too close to the
	// next boundary, leave it to that one: at start, that is when the
	// handshake would have less than Retry before confirm gives up (Retry
	// before the boundary), so that a drive is judged only when it had
	// the time of a first wait, and a late start is not reported as a
	// peer without the PSK.
	driveAt := EpochStart(n, g.interval).Add(g.margin)
	latest := EpochStart(n+1, g.interval)
	if first {
		driveAt = stamp.Add(g.margin)
		latest = latest.Add(-2 * g.retry)
	}
	if !driveAt.Before(latest) || !sleepUntil(ctx, r.now, driveAt) {
		return
	}
	drivenAt := time.Now()
	r.drive(g, n, drive, stop)
	// A driven tunnel needs a handshake after the drive: one completed
	// between install and drive may have been undone by it (a Writer that
	// stops the session), or be one the drive's own would replace.
	awaiting := make([]awaited, len(expect))
	for i, t := range expect {
		awaiting[i] = awaited{t: t, since: installedAt}
		if t.Drive {
			awaiting[i].since = drivenAt
		}
	}
	r.confirm(ctx, g, n, installedAt, awaiting)
}

// closeSessions ends the current sessions of tunnels that failed closed, on
// either side of them, so that nothing more passes under the previous PSK.
// It returns those it could not close, to be driven instead, which stops at
// least this side sending on them.
func (r *Rotator) closeSessions(n uint64, ts []*tunnel) (drive []*tunnel) {
	if len(ts) == 0 {
		return nil
	}
	c, ok := r.w.(SessionCloser)
	if !ok {
		return ts
	}
	err := r.writer(func(Writer) error { return c.CloseSessions(peerKeys(ts)) })
	switch {
	case err == nil:
		return nil
	case !errors.Is(err, errors.ErrUnsupported):
		for _, t := range ts {
			r.fail(t, n, "closing the session", err)
		}
	}
	return ts
}

// drive starts a handshake with the peers of the tunnels given, in one of
// two ways. Those in beside, the tunnels rotating, start it beside their
// current session, which goes on carrying traffic, where the Writer is an
// Initiator: a rotation never holds traffic, whether its handshake
// completes or not (a lost packet, a peer not yet holding the PSK). Those
// in halting, and those of beside where the Writer cannot initiate, stop
// their current session sending, so that the next packet starts the
// handshake, which holds that traffic for a round trip: a tunnel failing
// closed must stop sending. The halting ones are driven in one Writer
// call.
func (r *Rotator) drive(g *group, n uint64, beside, halting []*tunnel) {
	if in, ok := r.w.(Initiator); ok && len(beside) > 0 {
		err := r.writer(func(Writer) error { return in.Initiate(peerKeys(beside)) })
		if !errors.Is(err, errors.ErrUnsupported) {
			if err != nil {
				for _, t := range beside {
					r.fail(t, n, "initiating the handshake", err)
				}
			}
			beside = nil
		}
	}
	ts := append(beside[:len(beside):len(beside)], halting...)
	if len(ts) == 0 {
		return
	}
	if err := r.writer(func(w Writer) error { return w.Handshake(peerKeys(ts)) }); err != nil {
		for _, t := range ts {
			r.fail(t, n, "driving the handshake", err)
		}
	}
}

// confirm watches the interface after a drive and drives again the
// expected tunnels that have not handshaken since they should have, up to
// redrives times each. It also refreshes every tunnel's LastHandshake and
// checks that its peer is on the interface. It returns Retry before the
// next boundary at the latest (or Retry after the drive, if that is
// later), so that the next install is never late because of it.
//
// A re-drive throws away a handshake in flight (a new initiation replaces
// it), so it must not come before a handshake could complete: the
// first wait is the larger of Retry and four times the handshake time
// measured lately (a loaded machine, a long path), and each next wait
// doubles. The interface is read every pollEvery meanwhile, to see a
// handshake soon and measure it.
//
// A tunnel this side does not drive (awaited at start) is driven only if
// no handshake came after the driving side's drive and all its re-drives
// could have been tried, and at least a quarter of an epoch: two sides
// driving at once cross their initiations and both fail, and on a loaded
// machine their doubling waits would keep them crossing.
func (r *Rotator) confirm(ctx context.Context, g *group, n uint64, installedAt time.Time, expect []awaited) {
	drivenAt := r.now()
	giveUp := EpochStart(n+1, g.interval).Add(-g.retry)
	if early := drivenAt.Add(g.retry); giveUp.Before(early) {
		giveUp = early
	}
	wait := max(g.retry, 4*time.Duration(g.hsLatency.Load()))
	patience := max(wait*(1<<(redrives+1)-1), g.interval/4)
	for i := range expect {
		a := &expect[i]
		a.wait, a.next = wait, drivenAt.Add(wait)
		if !a.t.Drive {
			a.next = drivenAt.Add(patience)
		}
	}
	poll := max(g.retry/5, time.Millisecond)
	for first := true; ; first = false {
		next := r.now().Add(poll)
		for _, a := range expect {
			if a.next.Before(next) {
				next = a.next
			}
		}
		if giveUp.Before(next) {
			next = giveUp
		}
		if !sleepUntil(ctx, r.now, next) {
			return
		}
		var states []PeerState
		err := r.writer(func(w Writer) (err error) { states, err = w.Peers(); return err })
		if err != nil {
			r.log.Warn("wgkey: reading the interface", "epoch", n, "err", err)
			return
		}
		last := make(map[wgtypes.Key]time.Time, len(states))
		for _, s := range states {
			last[s.Peer] = s.LastHandshake
		}
		if first {
			for _, t := range g.tunnels {
				hs, ok := last[t.Peer]
				if !ok {
					r.fail(t, n, "peer not on the interface", errors.New("the PSK was not installed"))
					continue
				}
				r.update(t, func(st *TunnelStatus) { st.LastHandshake = hs })
			}
		}
		now := r.now()
		var redrive []*tunnel
		waiting := expect[:0:0]
		for _, a := range expect {
			t := a.t
			switch hs := last[t.Peer]; {
			case hs.After(a.since):
				r.update(t, func(st *TunnelStatus) { st.LastHandshake = hs })
				if t.Drive && a.tries == 0 {
					g.observeHandshake(now.Sub(drivenAt))
				}
			case !now.Before(giveUp), !now.Before(a.next) && a.tries == redrives:
				waited := time.Since(installedAt).Round(time.Millisecond)
				r.update(t, func(st *TunnelStatus) {
					st.Unconfirmed++
					st.LastError = fmt.Sprintf("tunnel %s peer %s epoch %d: no handshake %v after installing the PSK: the other side has another PSK, or is not reachable", t.Name, t.peer, n, waited)
				})
				r.log.Warn("wgkey: no handshake with the new PSK", "tunnel", t.Name, "peer", t.peer, "epoch", n, "waited", waited)
			case !now.Before(a.next):
				redrive = append(redrive, t)
				r.update(t, func(st *TunnelStatus) { st.Redrives++ })
				a.tries++
				a.wait *= 2
				a.next = now.Add(a.wait)
				waiting = append(waiting, a)
			default:
				waiting = append(waiting, a)
			}
		}
		expect = waiting
		r.drive(g, n, redrive, nil)
		if len(expect) == 0 {
			return
		}
	}
}

// awaited is a tunnel whose handshake must complete after since, and when
// confirm drives it next if none has.
type awaited struct {
	t     *tunnel
	since time.Time

	next  time.Time     // drive again at
	wait  time.Duration // the wait that led to next; doubles at each drive
	tries int           // drives repeated so far
}
