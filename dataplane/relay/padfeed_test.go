package relay

import (
	"context"
	"crypto/sha256"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/qrelay/qrelay/dataplane/qkd"
	"github.com/qrelay/qrelay/dataplane/qkdsim"
	"github.com/qrelay/qrelay/internal/waitfor"
	"github.com/qrelay/qrelay/ringstore"
)

// flakySource is a QKD source that can be made to fail every Fetch at
// once, as a device that is down does, and counts the calls.
type flakySource struct {
	qkd.Source
	down    atomic.Bool
	fetches atomic.Int64
}

func (s *flakySource) Fetch(ctx context.Context, max int) ([]ringstore.Block, error) {
	if s.down.Load() {
		s.fetches.Add(1)
		return nil, fmt.Errorf("flaky source: %w", qkd.ErrDown)
	}
	return s.Source.Fetch(ctx, max)
}

// TestDownSourceNoSpin checks that the master asks a failing QKD source
// again only after fetchRetry, not in a tight loop.
func TestDownSourceNoSpin(t *testing.T) {
	var master *flakySource
	src := func(me, peer string) qkd.Source {
		seed := sha256.Sum256([]byte("a|b"))
		s, err := qkdsim.New(qkdsim.Config{Link: "a-b", Seed: seed, Master: me < peer, BlockSize: 64 << 10, Logger: testLogger()})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		if me < peer {
			master = &flakySource{Source: s}
			return master
		}
		return s
	}
	edges := [][2]string{{"a", "b"}}
	n := newTestNet(t, []string{"a", "b"}, edges, nil, netOpts{source: src, ringSize: 64 << 20})
	n.waitUp(t, edges)
	// Drain some pad so that the master wants more.
	relayOK(t, n.nodes["a"].eng, "b", 30000, 32)
	master.down.Store(true)
	t0 := time.Now()
	waitfor.Bool(t, "five fetches from the down source", 20*time.Second, func() bool { return master.fetches.Load() >= 5 })
	if d := time.Since(t0); d < 4*fetchRetry*9/10 {
		t.Fatalf("5 fetches of a down source within %v: the master retries without waiting %v", d, fetchRetry)
	}
}
