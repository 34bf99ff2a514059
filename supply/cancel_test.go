package supply

import (
	"testing"
	"time"

	"github.com/qrelay/qrelay/dataplane/frame"
	"github.com/qrelay/qrelay/internal/waitfor"
	"github.com/qrelay/qrelay/ringstore"
)

// TestCancelSentAgain: a cancel that cannot be sent while the path to the
// slave's node is down goes out once the path is back, whole and once,
// so that the slave's node does not keep the keys until their TTL.
func TestCancelSentAgain(t *testing.T) {
	svc, tn := newTestService(t, "a")
	ids := make([]ringstore.KeyID, frame.MaxSAEAssignCancelKeys+3) // two messages
	for i := range ids {
		ids[i] = ringstore.KeyID{byte(i >> 8), byte(i), 0xca}
	}
	tn.mu.Lock()
	tn.down = true
	tn.mu.Unlock()
	svc.assigner.cancel("c", ids)
	if n := svc.assigner.unsentCancels(); n != len(ids) {
		t.Fatalf("%d key IDs kept to send again, want %d", n, len(ids))
	}
	tn.mu.Lock()
	tn.down = false
	tn.mu.Unlock()
	waitfor.Bool(t, "the cancel sent again", 10*time.Second, func() bool { return svc.assigner.unsentCancels() == 0 })

	tn.mu.Lock()
	defer tn.mu.Unlock()
	var got []ringstore.KeyID
	for _, m := range tn.sent {
		if m.kind != uint16(frame.KindSAEAssignCancel) {
			continue
		}
		if m.dst != "c" {
			t.Fatalf("cancel sent to %s, want c", m.dst)
		}
		c, err := frame.ParseSAEAssignCancel(m.payload)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, c.Keys...)
	}
	if len(got) != len(ids) {
		t.Fatalf("cancels name %d keys, want each of the %d once", len(got), len(ids))
	}
	for i := range ids {
		if got[i] != ids[i] {
			t.Fatalf("cancelled key %d is %s, want %s", i, got[i], ids[i])
		}
	}
}
