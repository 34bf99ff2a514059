package node

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/qrelay/qrelay/internal/lab"
	"github.com/qrelay/qrelay/supply"
)

// tunnel lists tunnel name between a and b at both (peer keys are
// placeholders and the interfaces do not exist: these tests use the
// stream, and with an interval of an hour the rotators ask it for the
// current hour's index only, far below the indices the tests use).
func tunnel(name, a, b string, interval time.Duration) func(id string, cfg *lab.Config) {
	return func(id string, cfg *lab.Config) {
		remote := b
		if id == b {
			remote = a
		}
		if id != a && id != b {
			return
		}
		cfg.WireGuard = append(cfg.WireGuard, lab.WireGuardTunnel{Name: name, RemoteNode: remote, Interface: "wg-" + id,
			PeerPublicKey: "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=", Interval: interval})
	}
}

// TestKeyStreamSameKeysAtBothEnds asks both ends of a stream for the same
// indices at once, as two WireGuard peers do at an epoch boundary.
func TestKeyStreamSameKeysAtBothEnds(t *testing.T) {
	c := newTestCluster(t, []string{"a", "b"}, [][2]string{{"a", "b"}}, clusterOpts{refills: true, configure: tunnel("t1", "a", "b", time.Hour)})
	c.waitPath("a", "b", "a", "b")
	sa, sb := c.nodes["a"].Supply().Stream("t1"), c.nodes["b"].Supply().Stream("t1")
	if sa == nil || sb == nil || !sa.Owner() || sb.Owner() {
		t.Fatalf("streams: a %v, b %v; want both, a the owner (lower ID)", sa, sb)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const first, count = 1 << 62, 30
	keys := map[string][][supply.StreamKeySize]byte{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for name, s := range map[string]*supply.KeyStream{"a": sa, "b": sb} {
		wg.Go(func() {
			var got [][supply.StreamKeySize]byte
			for i := uint64(first); i < first+count; i++ {
				k, err := s.Key(ctx, i)
				if err != nil {
					t.Errorf("node %s: %v", name, err)
					return
				}
				got = append(got, k)
			}
			mu.Lock()
			keys[name] = got
			mu.Unlock()
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	seen := map[[supply.StreamKeySize]byte]bool{}
	for i := range count {
		if keys["a"][i] != keys["b"][i] {
			t.Fatalf("index %d: the two ends hold different keys", first+i)
		}
		if seen[keys["a"][i]] || keys["a"][i] == [supply.StreamKeySize]byte{} {
			t.Fatalf("index %d: a key repeated or zero", first+i)
		}
		seen[keys["a"][i]] = true
	}
	// Asking again gives the same key; releasing zeroises and refuses.
	if k, err := sb.Key(ctx, first+3); err != nil || k != keys["a"][3] {
		t.Fatalf("index %d asked again: %v, same key %v", first+3, err, k == keys["a"][3])
	}
	before := sa.Stats()
	sa.Release(first + 10)
	sb.Release(first + 10)
	if st := sa.Stats(); st.Released < before.Released+10 || st.Held > before.Held-10 {
		t.Fatalf("after the release of 10 indices: %+v, before %+v", st, before)
	}
	for i := uint64(first); i < first+10; i++ {
		if _, err := sb.Key(ctx, i); err == nil {
			t.Fatalf("released index %d was served", i)
		}
	}
}

// TestKeyStreamMismatchSpendsNoKeys: a stream only one node lists is
// refused by the other without the owner spending keys on each retry.
func TestKeyStreamMismatchSpendsNoKeys(t *testing.T) {
	c := newTestCluster(t, []string{"a", "b"}, [][2]string{{"a", "b"}}, clusterOpts{refills: true, configure: func(id string, cfg *lab.Config) {
		if id == "a" {
			tunnel("t1", "a", "b", time.Hour)(id, cfg)
		}
	}})
	c.waitPath("a", "b", "a", "b")
	c.waitReconciled("a", "b") // a stream takes keys once the pools agree
	s := c.nodes["a"].Supply().Stream("t1")
	ask := func() supply.StreamStats {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if _, err := s.Key(ctx, 1<<62); err == nil {
			t.Fatal("a key was served that node b does not hold")
		}
		return s.Stats()
	}
	before := ask()
	after := ask() // four more announcements, all refused as unknown
	if before.Held == 0 || after.Held != before.Held || after.Refused != 0 {
		t.Fatalf("held %d keys, then %d after another second of announcements, %d refused; want the same keys kept, none refused", before.Held, after.Held, after.Refused)
	}
}
