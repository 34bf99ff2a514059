package rate

import (
	"testing"
	"time"
)

// TestMeter: the first sample starts the meter, one too soon is left for
// the next, and each fold weighs min(1, dt/Tau).
func TestMeter(t *testing.T) {
	m := Meter{Tau: 2 * time.Second}
	t0 := time.Unix(1000, 0)
	m.Sample(t0, 0)
	m.Sample(t0.Add(50*time.Millisecond), 100) // too soon: nothing folded
	if m.PerSecond() != 0 {
		t.Fatalf("after 50 ms: rate %v, want 0", m.PerSecond())
	}
	m.Sample(t0.Add(time.Second), 100) // 100/s over 1 s, weight 1/2
	if m.PerSecond() != 50 {
		t.Fatalf("after 1 s: rate %v, want 50", m.PerSecond())
	}
	m.Sample(t0.Add(3*time.Second), 300) // 100/s over 2 s, weight 1
	if m.PerSecond() != 100 {
		t.Fatalf("after 3 s: rate %v, want 100", m.PerSecond())
	}
	m.Sample(t0.Add(3*time.Second), 400) // no time passed: nothing folded
	m.Sample(t0.Add(5*time.Second), 400) // 100 over the 2 s: 50/s, weight 1
	if m.PerSecond() != 50 {
		t.Fatalf("after 5 s: rate %v, want 50", m.PerSecond())
	}
}

// TestMeterShortTau: with a time constant of 1 s, as for pad rings
// sampled every 250 ms, a quarter-second sample weighs a quarter.
func TestMeterShortTau(t *testing.T) {
	m := Meter{Tau: time.Second}
	t0 := time.Unix(1000, 0)
	m.Sample(t0, 1<<20)
	m.Sample(t0.Add(250*time.Millisecond), 1<<20+1000) // 4000 B/s, weight 1/4
	if m.PerSecond() != 1000 {
		t.Fatalf("rate %v, want 1000", m.PerSecond())
	}
}
