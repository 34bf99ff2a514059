// Package rate turns samples of a cumulative counter (keys taken, pad
// bytes appended) into a rate per second, smoothed by an exponential
// moving average: the refill policy and the reservations of the key
// supply, and the links' fill and consumption rates the node reports.
package rate

import "time"

// Meter is the smoothed rate of one counter. Its owner sets Tau, the time
// constant, and serialises the calls.
type Meter struct {
	Tau time.Duration

	t      time.Time // last sample folded in; zero before the first
	total  uint64    // the counter then
	perSec float64
}

// Sample folds the counter's total at now into the rate. The first sample
// only starts the meter; one less than Tau/20 after the last folded one
// is left for the next, so that bursts of samples do not weigh more than
// the time they cover.
func (m *Meter) Sample(now time.Time, total uint64) {
	if m.t.IsZero() {
		m.t, m.total = now, total
		return
	}
	dt := now.Sub(m.t)
	if dt < m.Tau/20 || dt <= 0 {
		return
	}
	s := dt.Seconds()
	m.perSec += min(1, s/m.Tau.Seconds()) * (float64(total-m.total)/s - m.perSec)
	m.t, m.total = now, total
}

// PerSecond is the rate as of the last sample folded in.
func (m *Meter) PerSecond() float64 { return m.perSec }
