package wgkey

import (
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/qrelay/qrelay/internal/waitfor"
	"github.com/qrelay/qrelay/wgkey/wgtest"
	"golang.zx2c4.com/wireguard/tun/netstack"
)

// TestFailClosed takes the key of one epoch away from A's stream.
func TestFailClosed(t *testing.T) {
	if testing.Short() {
		t.Skip("takes 5 s")
	}
	t.Parallel()
	const interval = time.Second

	// FailClosed: A installs a random PSK and drives, so the tunnel stops:
	// no handshake, no echo answered; the next epoch with a key heals it.
	t.Run("FailClosed", func(t *testing.T) {
		t.Parallel()
		p, seed, e, echo := missingEpoch(t, "fail closed", interval, FailClosed)
		// A fails closed at the boundary of e.
		var st TunnelStatus
		if ok, why := waitfor.Until(EpochStart(e, interval).Add(interval/2), pollEvery, func() (bool, string) {
			st = status(p.ra)
			return st.Epoch == e && st.FailedClosed, fmt.Sprintf("status %+v", st)
		}); !ok {
			t.Fatalf("A did not fail closed in epoch %d: %s", e, why)
		}
		if st.Failures == 0 || !strings.Contains(st.LastError, "epoch "+fmt.Sprint(e)) || !strings.Contains(st.LastError, "to-b") {
			t.Errorf("status after failing closed: %+v", st)
		}
		a, b, err := p.infos()
		if err != nil {
			t.Fatal(err)
		}
		if Key(a.PSK) == streamKey(seed, e) || Key(a.PSK) == streamKey(seed, e-1) || a.PSK == b.PSK {
			t.Errorf("A's PSK in epoch %d is not a fresh random one", e)
		}
		if Key(b.PSK) != streamKey(seed, e) {
			t.Errorf("B does not hold the key of epoch %d", e)
		}
		// A closed its session at once: from the boundary on, until the
		// next, no handshake completes and nothing gets through, not even
		// from B, whose old session is still up on its side.
		p.wa.mu.Lock()
		closes := p.wa.closes
		p.wa.mu.Unlock()
		if closes != 1 {
			t.Errorf("A closed its sessions %d times, want once", closes)
		}
		closedAt := time.Now().Add(20 * time.Millisecond) // past packets in flight
		received := oneWay(t, p.B.Net, p.A.Net, p.A.Addr)
		before := echo.Snapshot()
		if bad := during(EpochStart(e+1, interval).Add(-20*time.Millisecond), func() string {
			a, b, err := p.infos()
			if err != nil {
				return err.Error()
			}
			if a.LastHandshake.After(EpochStart(e, interval)) || b.LastHandshake.After(EpochStart(e, interval)) {
				return fmt.Sprintf("a handshake completed in the failed-closed epoch: A %v, B %v", a.LastHandshake, b.LastHandshake)
			}
			return ""
		}); bad != "" {
			t.Fatal(bad)
		}
		closed := echo.Snapshot()
		if got := closed.Answered - before.Answered; got > 3 {
			t.Errorf("%d echoes answered while failed closed (%d sent)", got, closed.Sent-before.Sent)
		}
		leaked := received(closedAt)
		if leaked > 0 {
			t.Errorf("A received %d datagrams from B while failed closed", leaked)
		}
		// Epoch e+1 has a key again: the tunnel heals.
		if ok, why := waitfor.Until(EpochStart(e+2, interval), pollEvery, func() (bool, string) { return p.inUse(streamKey(seed, e+1)) }); !ok {
			t.Fatalf("epoch %d did not heal: %s", e+1, why)
		}
		if st := status(p.ra); st.FailedClosed || st.Epoch != e+1 {
			t.Errorf("status after healing: %+v", st)
		}
		if ok, why := waitfor.Until(time.Now().Add(interval/2), pollEvery, func() (bool, string) {
			return echo.Snapshot().Answered > closed.Answered, "no echo answered after healing"
		}); !ok {
			t.Error(why)
		}
		healed := echo.Snapshot()
		t.Logf("failed closed in epoch %d: %d of %d echoes answered, %d datagrams from B received by A; healed in epoch %d: %d answered since",
			e, closed.Answered-before.Answered, closed.Sent-before.Sent, leaked, e+1, healed.Answered-closed.Answered)
	})

	// KeepCurrent: A keeps the PSK of e-1 through e and counts a failure;
	// the session it had carries on.
	t.Run("KeepCurrent", func(t *testing.T) {
		t.Parallel()
		p, seed, e, echo := missingEpoch(t, "keep current", interval, KeepCurrent)
		var st TunnelStatus
		if ok, why := waitfor.Until(EpochStart(e, interval).Add(interval/2), pollEvery, func() (bool, string) {
			st = status(p.ra)
			return st.Failures > 0, fmt.Sprintf("status %+v", st)
		}); !ok {
			t.Fatalf("A counted no failure in epoch %d: %s", e, why)
		}
		if st.FailedClosed || st.Epoch != e-1 || !strings.Contains(st.LastError, "epoch "+fmt.Sprint(e)) {
			t.Errorf("status after keeping the key: %+v", st)
		}
		before := echo.Snapshot()
		if bad := during(EpochStart(e+1, interval).Add(-20*time.Millisecond), func() string {
			a, _, err := p.infos()
			if err != nil {
				return err.Error()
			}
			if Key(a.PSK) != streamKey(seed, e-1) {
				return fmt.Sprintf("A's PSK in epoch %d is not the key of epoch %d", e, e-1)
			}
			return ""
		}); bad != "" {
			t.Fatal(bad)
		}
		kept := echo.Snapshot()
		t.Logf("kept the PSK of epoch %d through epoch %d: %d of %d echoes answered", e-1, e, kept.Answered-before.Answered, kept.Sent-before.Sent)
		if kept.Answered-before.Answered < (kept.Sent-before.Sent)*9/10 {
			t.Errorf("the session did not carry on under KeepCurrent")
		}
		if ok, why := waitfor.Until(EpochStart(e+2, interval), pollEvery, func() (bool, string) { return p.inUse(streamKey(seed, e+1)) }); !ok {
			t.Fatalf("epoch %d did not heal: %s", e+1, why)
		}
	})
}

// missingEpoch starts a rotating pair whose A side lacks the key of epoch
// e, a few epochs ahead, with an echo running, and returns once epoch e-1
// is in use (the tunnel works before the failure).
func missingEpoch(t *testing.T, name string, interval time.Duration, policy Policy) (*rotatorPair, string, uint64, *wgtest.EchoStats) {
	t.Helper()
	seed := name + " " + time.Now().String()
	e := EpochAt(time.Now(), interval) + 3
	p := newRotatorPair(t, interval, newSource(seed, e), newSource(seed), policy)
	echo := p.Echo(t, 10*time.Millisecond)
	run(t, p.ra)
	run(t, p.rb)
	if ok, why := waitfor.Until(EpochStart(e, interval), pollEvery, func() (bool, string) { return p.inUse(streamKey(seed, e-1)) }); !ok {
		t.Fatalf("epoch %d, before the failure: %s", e-1, why)
	}
	return p, seed, e, echo
}

// oneWay sends a datagram every 10 ms from one netstack to port 9 of to at
// the other, until the test ends. received(t) counts those that arrived
// after t.
func oneWay(t *testing.T, fromNet, toNet *netstack.Net, to netip.Addr) (received func(after time.Time) int) {
	srv, err := toNet.ListenUDPAddrPort(netip.AddrPortFrom(to, 9))
	if err != nil {
		t.Fatal(err)
	}
	cli, err := fromNet.DialUDPAddrPort(netip.AddrPort{}, netip.AddrPortFrom(to, 9))
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var at []time.Time
	go func() {
		buf := make([]byte, 64)
		for {
			if _, _, err := srv.ReadFrom(buf); err != nil {
				return
			}
			mu.Lock()
			at = append(at, time.Now())
			mu.Unlock()
		}
	}()
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				cli.Write([]byte("one way"))
			}
		}
	}()
	t.Cleanup(func() { close(stop); <-done; cli.Close(); srv.Close() })
	return func(after time.Time) int {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for _, a := range at {
			if a.After(after) {
				n++
			}
		}
		return n
	}
}
