package supply

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/qrelay/qrelay/dataplane/frame"
	"github.com/qrelay/qrelay/ringstore"
)

// TestStreamApplyRefusesAssignedKeys: a STREAM message cannot take keys
// an SAE was assigned, nor keys the node does not hold.
func TestStreamApplyRefusesAssignedKeys(t *testing.T) {
	svc, _ := newTestService(t, "b", StreamConfig{Name: "t1", Remote: "a", Interval: time.Hour})
	in, err := svc.Pool("a", RoleIn)
	if err != nil {
		t.Fatal(err)
	}
	// Two keys of node a, as a relay delivers them.
	keys := []ringstore.NewKey{{ID: ringstore.KeyID{0xa1}, Key: bytes.Repeat([]byte{1}, 32)}, {ID: ringstore.KeyID{0xa2}, Key: bytes.Repeat([]byte{2}, 32)}}
	if err := in.Put(keys); err != nil {
		t.Fatal(err)
	}
	ids := []ringstore.KeyID{keys[0].ID, keys[1].ID}
	if err := setOwner(in, ids[:1], Assignment{Master: "sae-a", Slaves: []string{"sae-b"}}); err != nil {
		t.Fatal(err)
	}
	sb := svc.Stream("t1")
	acks := sb.apply([]frame.KeyStreamEntry{{Index: 1 << 62, Key: ids[0]}, {Index: 1<<62 + 1, Key: ids[1]}, {Index: 1<<62 + 2, Key: ringstore.KeyID{1}}})
	if acks[0].Status != frame.KeyStreamKeyRefused || acks[1].Status != frame.KeyStreamHeld || acks[2].Status != frame.KeyStreamKeyRefused {
		t.Fatalf("acks %+v: want the assigned key and the unknown key refused, the free key held", acks)
	}
	k, err := sb.Key(context.Background(), 1<<62+1)
	if err != nil || !bytes.Equal(k[:], keys[1].Key[:StreamKeySize]) {
		t.Fatalf("index 8: %v, key equal %v", err, bytes.Equal(k[:], keys[1].Key[:StreamKeySize]))
	}
}

// TestStreamReleaseWhileAsked: asking for a released index while the
// rotator releases more is an error naming the stream's floor, and reads
// that floor under the lock (CI's race detector caught the error message
// reading it after unlocking). Run with -race.
func TestStreamReleaseWhileAsked(t *testing.T) {
	s := &KeyStream{name: "t1", remote: "b", keys: map[uint64]*streamKey{}, changed: make(chan struct{})}
	s.Release(1)
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := uint64(2); i < 2000; i++ {
			s.Release(i)
		}
	})
	for range 2000 {
		if _, err := s.Key(context.Background(), 0); err == nil || !strings.Contains(err.Error(), "index 0 was released") {
			t.Fatalf("Key of a released index: %v", err)
		}
	}
	wg.Wait()
}

// TestStreamApplyReleasedIndex: an announcement of an index the other
// node has used and released (the owner restarted mid-epoch and chose
// again, or is late) is answered by the key used: held if the same key,
// status 3 (served) if another, so that the owner never uses a key for an
// index the other end used another key for.
func TestStreamApplyReleasedIndex(t *testing.T) {
	svc, _ := newTestService(t, "b", StreamConfig{Name: "t1", Remote: "a", Interval: time.Hour})
	in, err := svc.Pool("a", RoleIn)
	if err != nil {
		t.Fatal(err)
	}
	keys := []ringstore.NewKey{{ID: ringstore.KeyID{0xb1}, Key: bytes.Repeat([]byte{1}, 32)}, {ID: ringstore.KeyID{0xb2}, Key: bytes.Repeat([]byte{2}, 32)}}
	if err := in.Put(keys); err != nil {
		t.Fatal(err)
	}
	sb := svc.Stream("t1")
	if acks := sb.apply([]frame.KeyStreamEntry{{Index: 1005, Key: keys[0].ID}}); acks[0].Status != frame.KeyStreamHeld {
		t.Fatalf("ack %+v: want held", acks[0])
	}
	if _, err := sb.Key(context.Background(), 1005); err != nil {
		t.Fatal(err)
	}
	sb.Release(1006) // epoch 1005 installed
	acks := sb.apply([]frame.KeyStreamEntry{{Index: 1005, Key: keys[0].ID}, {Index: 1005, Key: keys[1].ID}, {Index: 1006 - usedKept - 2, Key: keys[1].ID}})
	if acks[0].Status != frame.KeyStreamHeld {
		t.Errorf("the key used for released index 1005, announced again: %+v, want held", acks[0])
	}
	if acks[1].Status != frame.KeyStreamServed || !strings.Contains(acks[1].Msg, "index 1005 was used with key b1000000-") {
		t.Errorf("another key for released index 1005: %+v, want served, naming the key used", acks[1])
	}
	if acks[2].Status != frame.KeyStreamServed || !strings.Contains(acks[2].Msg, "was released (the stream is at 1006)") {
		t.Errorf("an index released and forgotten: %+v, want served", acks[2])
	}
	if st := in.Stats(); st.Stock != 1 {
		t.Errorf("in pool holds %d keys, want 1: an announcement of a released index takes no key", st.Stock)
	}
}
