package relay

import (
	"errors"
	"strings"
	"testing"

	"github.com/qrelay/qrelay/ringstore"
)

// TestLazyPoolSink checks that a lazy sink opens each remote's pool once,
// on first delivery, and that a failed open stores nothing and says why.
func TestLazyPoolSink(t *testing.T) {
	opened := map[string]int{}
	s := NewLazyPoolSink(func(remote string) (*ringstore.Pool, error) {
		opened[remote]++
		if remote == "bad" {
			return nil, errors.New("disk full")
		}
		p, err := ringstore.OpenPool(ringstore.PoolConfig{Name: remote, Slots: 16, SlotSize: 8})
		if err == nil {
			t.Cleanup(func() { p.Close() })
		}
		return p, err
	})
	b := &Batch{Src: "a", Dst: "b", Flow: 7, KeySize: 8, Keys: make([]byte, 4*8)}
	for i := range 2 {
		b.FirstSeq = uint64(4 * i)
		if err := s.Deliver("b", b); err != nil {
			t.Fatal(err)
		}
	}
	if opened["b"] != 1 || s.Pools()["b"].Stats().Stock != 8 {
		t.Fatalf("opened b %d times, stock %d; want once and 8", opened["b"], s.Pools()["b"].Stats().Stock)
	}
	err := s.Deliver("bad", b)
	if err == nil || !strings.Contains(err.Error(), "node bad") || !strings.Contains(err.Error(), "disk full") {
		t.Fatalf("Deliver to a pool that cannot open: %v", err)
	}
	if _, ok := s.Pools()["bad"]; ok {
		t.Fatal("a pool that failed to open was kept")
	}
}
