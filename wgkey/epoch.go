package wgkey

import "time"

// Epoch n of a tunnel with epoch length interval covers the wall-clock
// interval [n·interval, (n+1)·interval) since the Unix epoch. Aligning to
// the Unix epoch rather than to when a node started is what lets two nodes
// switch PSKs together without exchanging a message: they need only
// synchronised clocks.

// EpochAt returns the epoch that contains t: floor(t.UnixNano() / interval).
// Times before 1970 are in epoch 0.
func EpochAt(t time.Time, interval time.Duration) uint64 {
	ns := t.UnixNano()
	if ns < 0 || interval <= 0 {
		return 0
	}
	return uint64(ns) / uint64(interval)
}

// EpochStart returns the boundary at which epoch n begins.
func EpochStart(n uint64, interval time.Duration) time.Time {
	return time.Unix(0, int64(n*uint64(interval)))
}
