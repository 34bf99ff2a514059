package wgkey

import (
	"fmt"
	"testing"
	"time"

	"github.com/qrelay/qrelay/internal/waitfor"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// TestWrongPSKFailsHandshake gives the two sides different key streams:
// after a driven handshake, none may complete, which shows that the PSK the
// Rotator installs is the one WireGuard uses. The control at the end, equal
// PSKs and one drive, shows that the tunnel itself was fine.
func TestWrongPSKFailsHandshake(t *testing.T) {
	if testing.Short() {
		t.Skip("takes 3 s")
	}
	t.Parallel()
	const interval = time.Second
	p := newRotatorPair(t, interval, newSource("wrong A"), newSource("wrong B"), FailClosed)
	stopA, stopB := run(t, p.ra), run(t, p.rb)

	// Once both have installed and A has driven, no handshake may
	// complete, and so no session can carry the echo, which starts only
	// then. (A session made before, under equal PSKs, would carry on: a
	// rotation does not stop it.)
	if ok, why := waitfor.Until(time.Now().Add(3*time.Second), pollEvery, func() (bool, string) {
		return status(p.ra).Rotations > 0 && status(p.rb).Rotations > 0 && p.wa.driveCount() > 0, "no install and drive yet"
	}); !ok {
		t.Fatal(why)
	}
	var since time.Time
	for _, w := range []*recWriter{p.wa, p.wb} {
		w.mu.Lock()
		for _, at := range w.installed {
			if at.After(since) {
				since = at
			}
		}
		w.mu.Unlock()
	}
	echo := p.Echo(t, 10*time.Millisecond)
	before := echo.Snapshot()
	end := time.Now().Add(2 * time.Second) // through two boundaries, with the drives and retries of each
	if bad := during(end, func() string {
		a, b, err := p.infos()
		switch {
		case err != nil:
			return err.Error()
		case a.LastHandshake.After(since) || b.LastHandshake.After(since):
			return fmt.Sprintf("a handshake completed with different PSKs: A at %v, B at %v, installs by %v", a.LastHandshake, b.LastHandshake, since)
		}
		return ""
	}); bad != "" {
		t.Fatal(bad)
	}
	after := echo.Snapshot()
	sa := status(p.ra)
	t.Logf("different PSKs: no handshake in 2 s after %d drives by A; %d echoes answered in that time (%d sent); A unconfirmed epochs %d",
		p.wa.driveCount(), after.Answered-before.Answered, after.Sent-before.Sent, sa.Unconfirmed)
	if got := after.Answered - before.Answered; got > 3 {
		t.Errorf("%d echoes answered with different PSKs, want none past those in flight", got)
	}
	if sa.Unconfirmed == 0 {
		t.Errorf("A's status shows no unconfirmed epoch: %+v", sa)
	}

	// Control: the same tunnel with equal PSKs handshakes at once.
	stopA()
	stopB()
	a, _, err := p.infos()
	if err != nil {
		t.Fatal(err)
	}
	if err := NewDeviceWriter(p.B.Dev).SetPSKs([]Update{{Peer: p.A.Public, PSK: Key(a.PSK)}}); err != nil {
		t.Fatal(err)
	}
	// Driven again every 250 ms until it handshakes: B ignores an
	// initiation within 20 ms of the one before (wireguard-go's flood
	// limit, HandshakeInitationRate), and A's rotator may have driven just
	// before it stopped.
	wa := NewDeviceWriter(p.A.Dev)
	driven := time.Now()
	lastDrive := time.Time{}
	drives := 0
	if ok, why := waitfor.Until(driven.Add(2*time.Second), pollEvery, func() (bool, string) {
		if time.Since(lastDrive) >= 250*time.Millisecond {
			if err := wa.Handshake([]wgtypes.Key{p.B.Public}); err != nil {
				return false, err.Error()
			}
			lastDrive = time.Now()
			drives++
		}
		a, _, err := p.infos()
		return err == nil && a.LastHandshake.After(driven), fmt.Sprintf("no handshake after %d drives", drives)
	}); !ok {
		t.Fatalf("control with equal PSKs: %s", why)
	}
}
