package wgtest

import (
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// TestPairEcho: the echo gets through, which takes a handshake with the
// PSK NewPair set on both sides; Info reads it back.
func TestPairEcho(t *testing.T) {
	p := NewPair(t)
	e := p.Echo(t, 10*time.Millisecond)
	deadline := time.Now().Add(5 * time.Second)
	for e.Snapshot().Answered < 20 {
		if time.Now().After(deadline) {
			t.Fatalf("echo: %s", e.Snapshot())
		}
		time.Sleep(10 * time.Millisecond)
	}
	r := e.Stop()
	if r.Answered < 20 || r.Answered > r.Sent || r.MaxGap <= 0 {
		t.Errorf("echo: %s", r)
	}
	if again := e.Stop(); again != r {
		t.Errorf("second Stop: %s, first %s", again, r)
	}
	a, err := p.A.Info(p.B.Public)
	if err != nil {
		t.Fatal(err)
	}
	b, err := p.B.Info(p.A.Public)
	if err != nil {
		t.Fatal(err)
	}
	if a.PSK != b.PSK || a.PSK == (wgtypes.Key{}) || a.LastHandshake.IsZero() || b.LastHandshake.IsZero() {
		t.Errorf("A %+v, B %+v: want the same PSK and a handshake on both", a, b)
	}
	if _, err := p.A.Info(p.A.Public); err == nil {
		t.Error("Info found a peer that is not there")
	}
}
