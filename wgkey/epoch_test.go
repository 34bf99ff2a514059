package wgkey

import (
	"testing"
	"time"
)

func TestEpochAt(t *testing.T) {
	for _, tc := range []struct {
		t        time.Time
		interval time.Duration
		want     uint64
	}{
		{time.Unix(0, 0), time.Second, 0},
		{time.Unix(119, 999_999_999), 120 * time.Second, 0},
		{time.Unix(120, 0), 120 * time.Second, 1},
		{time.Unix(1_700_000_000, 5), time.Second, 1_700_000_000},
		{time.Unix(1_700_000_000, 0), 120 * time.Second, 1_700_000_000 / 120},
		{time.Unix(-5, 0), time.Second, 0},                                                        // before 1970
		{time.Unix(1_700_000_000, 0).In(time.FixedZone("X", 5*3600)), time.Second, 1_700_000_000}, // zones do not matter
	} {
		if got := EpochAt(tc.t, tc.interval); got != tc.want {
			t.Errorf("EpochAt(%v, %v) = %d, want %d", tc.t, tc.interval, got, tc.want)
		}
	}
}

func TestEpochStartIsTheBoundary(t *testing.T) {
	for _, interval := range []time.Duration{time.Second, 1500 * time.Millisecond, 120 * time.Second, 7*time.Second + 1} {
		n := EpochAt(time.Now(), interval)
		for _, m := range []uint64{n - 1, n, n + 1, n + 1000} {
			b := EpochStart(m, interval)
			if got := EpochAt(b, interval); got != m {
				t.Errorf("interval %v: EpochAt(EpochStart(%d)) = %d", interval, m, got)
			}
			if got := EpochAt(b.Add(-1), interval); got != m-1 {
				t.Errorf("interval %v: 1 ns before the start of %d is in epoch %d", interval, m, got)
			}
			if d := EpochStart(m+1, interval).Sub(b); d != interval {
				t.Errorf("interval %v: epoch %d lasts %v", interval, m, d)
			}
		}
	}
}
