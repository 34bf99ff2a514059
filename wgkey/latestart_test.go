package wgkey

import (
	"testing"
	"time"

	"github.com/qrelay/qrelay/internal/waitfor"
)

// TestNonDrivingSideDrivesWhenAlone: the driving side A started first, and
// its drives failed, B's device still holding another PSK. B's rotator then
// starts. B does not drive at once (its drive could cross A's), but once A
// has had its chance it drives itself, and the epoch's PSK is proven in
// use well before A's WireGuard would retry on its own (5 s after A's last
// drive) and before the next boundary.
func TestNonDrivingSideDrivesWhenAlone(t *testing.T) {
	if testing.Short() {
		t.Skip("takes 4 s")
	}
	t.Parallel()
	const interval = 8 * time.Second
	// A clock just past a boundary, so that the epoch has room for both
	// starts.
	now := time.Now()
	offset := EpochStart(EpochAt(now, interval)+1, interval).Add(50 * time.Millisecond).Sub(now)
	clock := func() time.Time { return time.Now().Add(offset) }
	seed := "late start " + now.String()
	p := newRotatorPairWith(t, interval, newSource(seed), newSource(seed), FailClosed, Options{Now: clock})
	n := EpochAt(clock(), interval)

	run(t, p.ra)
	if ok, why := waitfor.Until(time.Now().Add(5*time.Second), pollEvery, func() (bool, string) {
		st := status(p.ra)
		return st.Unconfirmed > 0, "A has not given up its drives"
	}); !ok {
		t.Fatal(why)
	}
	aDrives := p.wa.driveCount()
	p.wa.mu.Lock()
	lastA := p.wa.lastDrive
	p.wa.mu.Unlock()

	bStart := time.Now()
	run(t, p.rb)
	// B drives after the driving side's whole schedule (15 × 100 ms here)
	// or a quarter of an epoch, the larger: 2 s after its install.
	deadline := bStart.Add(3500 * time.Millisecond)
	if end := EpochStart(n+1, interval).Add(-offset); end.Before(deadline) {
		t.Fatalf("test set-up: the epoch ends at %v, before the deadline %v", end, deadline)
	}
	if ok, why := waitfor.Until(deadline, pollEvery, func() (bool, string) { return p.inUse(streamKey(seed, n)) }); !ok {
		t.Fatalf("epoch %d's PSK not in use %v after B started: %s", n, deadline.Sub(bStart), why)
	}
	a, _, err := p.infos()
	if err != nil {
		t.Fatal(err)
	}
	if !a.LastHandshake.Before(lastA.Add(5 * time.Second)) {
		t.Fatalf("the handshake came %v after A's last drive: WireGuard's own retry (after 5 s) may have made it", a.LastHandshake.Sub(lastA))
	}
	if p.wb.driveCount() == 0 {
		t.Error("B never drove, yet a handshake came")
	}
	if got := p.wa.driveCount(); got != aDrives {
		t.Errorf("A drove %d more times after giving up", got-aDrives)
	}
	t.Logf("A drove %d times and gave up; B drove %d times, PSK in use %v after B started", aDrives, p.wb.driveCount(), time.Since(bStart).Round(time.Millisecond))
}
