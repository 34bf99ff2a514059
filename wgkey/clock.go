package wgkey

import (
	"context"
	"time"
)

// sleepUntil waits until now() reaches t, or ctx ends (then false). It
// re-reads the clock after each timer, so a clock that is stepped or
// replaced in tests is followed.
func sleepUntil(ctx context.Context, now func() time.Time, t time.Time) bool {
	for {
		d := t.Sub(now())
		if d <= 0 {
			return ctx.Err() == nil
		}
		timer := time.NewTimer(d)
		select {
		case <-ctx.Done():
			timer.Stop()
			return false
		case <-timer.C:
		}
	}
}
