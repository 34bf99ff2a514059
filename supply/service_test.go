package supply

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/qrelay/qrelay/dataplane/relay"
)

// testNet is what a Service sees of the node around it in a unit test: a
// fixed SAE directory, no routes and no relay, and the routed messages it
// sends, kept for the test to read.
type testNet struct {
	mu   sync.Mutex
	sent []sentMsg
	down bool // SendRouted fails, as with no route to the destination
}

type sentMsg struct {
	dst     string
	kind    uint16
	payload []byte
}

func (tn *testNet) NextHop(string) (string, bool) { return "", false }
func (tn *testNet) Reachable() []string           { return nil }

var testSAEs = map[string]string{"sae-a": "a", "sae-b": "b", "sae-c": "c"}

// newTestService makes a started Service for node id in memory mode with
// the streams given, closed when the test ends.
func newTestService(t *testing.T, id string, streams ...StreamConfig) (*Service, *testNet) {
	t.Helper()
	tn := &testNet{}
	svc, err := New(context.Background(), Config{
		NodeID:            id,
		KeySize:           256,
		MaxKeysPerRequest: 1024,
		AssignTimeout:     time.Second,
		CompletionTimeout: time.Second,
		Pools:             PoolConfig{Slots: 1024, SlotSize: 32, Low: 0, High: 1024},
		NodeOf: func(sae string) (string, bool) {
			n, ok := testSAEs[sae]
			return n, ok
		},
		Streams: streams,
		Relay: func(context.Context, string, int, int) (relay.Result, error) {
			return relay.Result{}, errors.New("no relay in this test")
		},
		SendRouted: func(dst string, kind uint16, payload []byte) error {
			tn.mu.Lock()
			defer tn.mu.Unlock()
			if tn.down {
				return errors.New("relay: routed message for " + dst + ": KM link to b is down")
			}
			tn.sent = append(tn.sent, sentMsg{dst, kind, append([]byte(nil), payload...)})
			return nil
		},
		Routes:    tn,
		SpareKeys: func(string, int) (int, bool) { return 0, false },
	})
	if err != nil {
		t.Fatal(err)
	}
	svc.Start()
	t.Cleanup(func() {
		svc.Close()
		if err := svc.ClosePools(); err != nil {
			t.Error(err)
		}
	})
	return svc, tn
}
