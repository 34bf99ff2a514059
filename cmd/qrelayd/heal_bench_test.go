package main

import (
	"context"
	"syscall"
	"testing"
	"time"

	"github.com/qrelay/qrelay/internal/waitfor"
)

// BenchmarkRestartHeal measures what a node restart costs the network: a
// ring of five qrelayd processes (memory mode), node b SIGKILLed and
// started again with its config each iteration. It reports, counted from
// b's process start, when its admin API answers (start-ms: the cost of a
// bare start, the baseline) and when a relay a→c through b has delivered
// all its keys (heal-ms: links agreed on their pads, routes back, relay
// flowing).
func BenchmarkRestartHeal(b *testing.B) {
	c := startRing(b)
	ctx := context.Background()
	var start, heal time.Duration
	for b.Loop() {
		c.stop("b", syscall.SIGKILL)
		c.waitRoute("a", "c", []string{"a", "e", "d", "c"})
		t0 := time.Now()
		c.start("b")
		var up time.Duration
		waitfor.Cond(b, "node b's admin API answering", 20*time.Second, func() (bool, string) {
			_, err := c.nodes["b"].api.Status(ctx)
			if err == nil && up == 0 {
				up = time.Since(t0)
			}
			return err == nil, ""
		})
		// A relay counts once a's route to c runs through b again, so
		// that it crossed b's agreed links rather than the long way.
		pr := c.startTraffic("a", "c", 256, 5*time.Millisecond)
		var routed time.Time
		waitfor.Cond(b, "relay a→c through the restarted b", 20*time.Second, func() (bool, string) {
			if routed.IsZero() {
				if !viaB(c) {
					return false, "route a→c not through b yet"
				}
				routed = time.Now()
			}
			_, ok := pr.FirstDeliveredAfter(routed)
			return ok, "no relay delivered since the route came back"
		})
		done, _ := pr.FirstDeliveredAfter(routed)
		pr.Halt()
		start += up
		heal += done.Sub(t0)
	}
	b.ReportMetric(float64(heal.Milliseconds())/float64(b.N), "heal-ms")
	b.ReportMetric(float64(start.Milliseconds())/float64(b.N), "start-ms")
}

// viaB reports whether a's route to c runs through b.
func viaB(c *cluster) bool {
	_, path := c.nextHop("a", "c")
	return len(path) == 3 && path[1] == "b"
}
