package supply

import "time"

// keyRate measures how many keys per second something takes, smoothed
// with a time constant of about 2 s. Its owner serialises the calls.
type keyRate struct {
	taken  int       // keys taken since since
	since  time.Time // start of the current window
	perSec float64
}

func (k *keyRate) add(n int) { k.taken += n }

// update folds the keys taken since the last update into the rate.
func (k *keyRate) update(now time.Time) {
	if k.since.IsZero() {
		k.since = now
		return
	}
	dt := now.Sub(k.since).Seconds()
	if dt < 0.1 {
		return
	}
	k.perSec += min(1, dt/2) * (float64(k.taken)/dt - k.perSec)
	k.taken, k.since = 0, now
}
