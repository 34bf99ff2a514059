package wgkey

import (
	"testing"
	"time"

	"github.com/qrelay/qrelay/internal/waitfor"
)

// TestHitlessRotation rotates the PSK of a tunnel between two embedded
// wireguard-go devices every second, with an echo through the tunnel every
// 10 ms, and checks for every epoch that both sides hold the epoch's key and
// have completed a handshake since installing it (so that key is in use),
// and that the echo barely noticed. The same over 62 rotations, with the
// keys from two real nodes, is node's TestWireGuardHitlessRotationFromNodes;
// this one, with a fake source, keeps to 20 so that the two do not load
// the machine together for a minute.
func TestHitlessRotation(t *testing.T) {
	if testing.Short() {
		t.Skip("takes 22 s")
	}
	t.Parallel()
	const (
		interval  = time.Second
		rotations = 20
		every     = 10 * time.Millisecond
	)
	seed := "hitless " + time.Now().String()
	p := newRotatorPair(t, interval, newSource(seed), newSource(seed), FailClosed)
	stopA, stopB := run(t, p.ra), run(t, p.rb)
	echo := p.Echo(t, every)

	first := EpochAt(time.Now(), interval) + 1
	failed := 0
	for n := first; n < first+rotations; n++ {
		// Each epoch's check must pass before the next boundary replaces the key.
		ok, why := waitfor.Until(EpochStart(n+1, interval), pollEvery, func() (bool, string) { return p.inUse(streamKey(seed, n)) })
		if !ok {
			t.Errorf("epoch %d: the new PSK is not in use: %s", n, why)
			if failed++; failed > 3 {
				t.FailNow()
			}
		}
	}
	res := echo.Stop()
	stopA()
	stopB()

	sa, sb := status(p.ra), status(p.rb)
	t.Logf("hitless rotation: %d rotations at %v, each new PSK proven in use on both sides; echo every %v: %s",
		rotations, interval, every, res)
	t.Logf("status A: rotations %d, failures %d, unconfirmed %d, drives repeated %d; B: rotations %d, failures %d",
		sa.Rotations, sa.Failures, sa.Unconfirmed, sa.Redrives, sb.Rotations, sb.Failures)
	if res.AnsweredPercent() < 99.9 {
		t.Errorf("echo: %.3f %% answered, want ≥ 99.9 %%", res.AnsweredPercent())
	}
	if res.MaxGap > 250*time.Millisecond {
		t.Errorf("echo: largest gap %v, want ≤ 250ms", res.MaxGap)
	}
	// One rotation per epoch checked, and the install at start, which
	// on a loaded machine may be that of the first epoch checked (the
	// rotator started late in the epoch before).
	for _, s := range []TunnelStatus{sa, sb} {
		if s.Rotations < rotations || s.Failures != 0 || s.FailedClosed {
			t.Errorf("%s: %d rotations, %d failures (%s), failed closed %v; want ≥ %d rotations and no failure",
				s.Name, s.Rotations, s.Failures, s.LastError, s.FailedClosed, rotations)
		}
	}
	// Each rotation's drive started the handshake beside the session
	// (Initiate), not by stopping it.
	p.wa.mu.Lock()
	initiates := p.wa.initiates
	p.wa.mu.Unlock()
	if initiates < rotations {
		t.Errorf("A initiated %d handshakes beside the session, want one per rotation (%d)", initiates, rotations)
	}
	if sa.Unconfirmed != 0 {
		t.Errorf("A drove %d epochs without seeing a handshake: %s", sa.Unconfirmed, sa.LastError)
	}
}
