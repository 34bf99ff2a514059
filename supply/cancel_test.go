package supply

import (
	"bytes"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/qrelay/qrelay/dataplane/frame"
	"github.com/qrelay/qrelay/internal/waitfor"
	"github.com/qrelay/qrelay/ringstore"
)

// sentCancels returns the SAE_ASSIGN_CANCEL messages sent so far, parsed.
func (tn *testNet) sentCancels(t *testing.T) []frame.SAEAssignCancel {
	t.Helper()
	tn.mu.Lock()
	defer tn.mu.Unlock()
	var out []frame.SAEAssignCancel
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
		out = append(out, c)
	}
	return out
}

// answer delivers to svc node c's answer to cancel c.
func answer(t *testing.T, svc *Service, c frame.SAEAssignCancel, status uint8) {
	t.Helper()
	b, err := frame.AppendSAEAssignCancelAck(nil, &frame.SAEAssignCancelAck{First: c.Keys[0], Count: uint16(len(c.Keys)), Status: status})
	if err != nil {
		t.Fatal(err)
	}
	svc.assigner.cancelAnswered("c", b)
}

// gathered returns the value of the series name{label="value"} of
// svc's metrics, through a registry, which checks them against their
// descriptions.
func gathered(t *testing.T, svc *Service, name, label, value string) float64 {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(svc.Collector())
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == label && l.GetValue() == value {
					return m.GetGauge().GetValue()
				}
			}
		}
	}
	t.Fatalf("no series %s{%s=%q}", name, label, value)
	return 0
}

func cancelIDs(n int) []ringstore.KeyID {
	ids := make([]ringstore.KeyID, n)
	for i := range ids {
		ids[i] = ringstore.KeyID{byte(i >> 8), byte(i), 0xca}
	}
	return ids
}

// TestCancelSentAgain: a cancel that cannot be sent while the path to the
// slave's node is down goes out once the path is back, whole, so that the
// slave's node does not keep the keys until their TTL; and it is kept
// until answered.
func TestCancelSentAgain(t *testing.T) {
	svc, tn := newTestService(t, "a")
	ids := cancelIDs(frame.MaxSAEAssignCancelKeys + 3) // two messages
	tn.mu.Lock()
	tn.down = true
	tn.mu.Unlock()
	svc.assigner.cancel("c", ids)
	if n := svc.CancelsPending()["c"]; n != len(ids) {
		t.Fatalf("%d key IDs kept to send again, want %d", n, len(ids))
	}
	if v := gathered(t, svc, "qrelay_assign_cancel_pending_keys", "remote", "c"); v != float64(len(ids)) {
		t.Errorf("qrelay_assign_cancel_pending_keys{remote=\"c\"} = %v, want %d", v, len(ids))
	}
	tn.mu.Lock()
	tn.down = false
	tn.mu.Unlock()
	waitfor.Bool(t, "the cancel sent again", 10*time.Second, func() bool { return len(tn.sentCancels(t)) >= 2 })

	sent := tn.sentCancels(t)
	var got []ringstore.KeyID
	for _, c := range sent[:2] {
		got = append(got, c.Keys...)
	}
	if !slices.Equal(got, ids) {
		t.Fatalf("the first two cancels name %d keys, want the %d cancelled, in order", len(got), len(ids))
	}
	if n := svc.CancelsPending()["c"]; n != len(ids) {
		t.Fatalf("%d key IDs pending before any answer, want %d", n, len(ids))
	}
	answer(t, svc, sent[1], frame.SAECancelApplied)
	answer(t, svc, sent[0], frame.SAECancelRefused) // refused: sending it again would not help
	if n := svc.CancelsPending()["c"]; n != 0 {
		t.Fatalf("%d key IDs pending after both answers, want 0", n)
	}
}

// TestCancelLostSentAgain: a cancel sent but lost on the way (a node on
// the path restarted), or whose answer was lost, is sent again, the same
// message, until an answer comes; an answer that names another cancel
// (other first key, or other count) does not end it.
func TestCancelLostSentAgain(t *testing.T) {
	svc, tn := newTestService(t, "a")
	ids := cancelIDs(5)
	svc.assigner.cancel("c", ids)
	waitfor.Bool(t, "the cancel sent three times", 10*time.Second, func() bool { return len(tn.sentCancels(t)) >= 3 })
	sent := tn.sentCancels(t)
	for i, c := range sent {
		if !slices.Equal(c.Keys, ids) {
			t.Fatalf("send %d names %d keys, want the same %d each time", i, len(c.Keys), len(ids))
		}
	}
	answer(t, svc, frame.SAEAssignCancel{Keys: ids[:4]}, frame.SAECancelApplied)
	answer(t, svc, frame.SAEAssignCancel{Keys: ids[1:]}, frame.SAECancelApplied)
	if n := svc.CancelsPending()["c"]; n != len(ids) {
		t.Fatalf("%d key IDs pending after answers to other cancels, want %d", n, len(ids))
	}
	answer(t, svc, sent[0], frame.SAECancelApplied)
	if n := svc.CancelsPending()["c"]; n != 0 {
		t.Fatalf("%d key IDs pending after the answer, want 0", n)
	}
	before := len(tn.sentCancels(t))
	svc.assigner.resendCancels(time.Now())
	if n := len(tn.sentCancels(t)); n != before {
		t.Errorf("%d cancels sent after the answer, want none", n-before)
	}
}

// TestCancelGivenUpAtTTL: an unanswered cancel is given up once the keys'
// TTL has passed since it was first tried; the keys have expired at the
// other node by then.
func TestCancelGivenUpAtTTL(t *testing.T) {
	svc, _ := newTestService(t, "a")
	svc.cfg.Pools.TTL = time.Minute
	svc.assigner.cancel("c", cancelIDs(3))
	svc.assigner.resendCancels(time.Now().Add(59 * time.Second))
	if n := svc.CancelsPending()["c"]; n != 3 {
		t.Fatalf("%d key IDs pending within the TTL, want 3", n)
	}
	svc.assigner.resendCancels(time.Now().Add(61 * time.Second))
	if n := svc.CancelsPending()["c"]; n != 0 {
		t.Fatalf("%d key IDs pending after the TTL, want 0", n)
	}
}

// TestCancelBounded: the keys of unanswered cancels kept for one node are
// bounded; beyond the bound they are left to their TTL.
func TestCancelBounded(t *testing.T) {
	svc, tn := newTestService(t, "a")
	tn.mu.Lock()
	tn.down = true
	tn.mu.Unlock()
	ids := cancelIDs(frame.MaxSAEAssignCancelKeys)
	for range maxPendingCancel/len(ids) + 1 {
		svc.assigner.cancel("c", ids)
	}
	if n := svc.CancelsPending()["c"]; n != maxPendingCancel {
		t.Fatalf("%d key IDs pending, want the bound %d", n, maxPendingCancel)
	}
}

// TestCancelApplied: the slave's node discards the cancelled keys it
// holds from the master's node, skips those it does not hold, and answers
// naming the cancel and the keys discarded; a key assigned to a master
// SAE the sender does not serve stays, and the answer says why.
func TestCancelApplied(t *testing.T) {
	svc, tn := newTestService(t, "c")
	in, err := svc.Pool("a", RoleIn)
	if err != nil {
		t.Fatal(err)
	}
	keys := []ringstore.NewKey{{ID: ringstore.KeyID{0xa1}, Key: bytes.Repeat([]byte{1}, 32)}, {ID: ringstore.KeyID{0xa2}, Key: bytes.Repeat([]byte{2}, 32)},
		{ID: ringstore.KeyID{0xa3}, Key: bytes.Repeat([]byte{3}, 32)}}
	if err := in.Put(keys); err != nil {
		t.Fatal(err)
	}
	if err := setOwner(in, []ringstore.KeyID{keys[0].ID}, Assignment{Master: "sae-a", Slaves: []string{"sae-c"}}); err != nil {
		t.Fatal(err)
	}
	if err := setOwner(in, []ringstore.KeyID{keys[2].ID}, Assignment{Master: "sae-b", Slaves: []string{"sae-c"}}); err != nil {
		t.Fatal(err)
	}
	lastAnswer := func() frame.SAEAssignCancelAck {
		t.Helper()
		tn.mu.Lock()
		defer tn.mu.Unlock()
		m := tn.sent[len(tn.sent)-1]
		if m.dst != "a" || m.kind != uint16(frame.KindSAEAssignCancelAck) {
			t.Fatalf("last message sent: kind %d to %s, want SAE_ASSIGN_CANCEL_ACK to a", m.kind, m.dst)
		}
		ack, err := frame.ParseSAEAssignCancelAck(m.payload)
		if err != nil {
			t.Fatal(err)
		}
		return ack
	}
	cancel := func(ids ...ringstore.KeyID) {
		b, err := frame.AppendSAEAssignCancel(nil, &frame.SAEAssignCancel{Keys: ids})
		if err != nil {
			t.Fatal(err)
		}
		svc.assigner.applyCancel("a", b)
	}

	unknown := ringstore.KeyID{0xee}
	cancel(unknown, keys[0].ID, keys[1].ID)
	ack := lastAnswer()
	if ack.First != unknown || ack.Count != 3 || ack.Status != frame.SAECancelApplied || ack.Discarded != 2 {
		t.Fatalf("answer %+v: want first %s, count 3, applied, 2 discarded", ack, unknown)
	}
	if st := in.Stats(); st.Stock != 1 {
		t.Fatalf("in pool holds %d keys after the cancel, want 1", st.Stock)
	}
	cancel(unknown, keys[0].ID, keys[1].ID) // sent again: nothing left to discard
	if ack := lastAnswer(); ack.Status != frame.SAECancelApplied || ack.Discarded != 0 {
		t.Fatalf("answer to the cancel sent again %+v: want applied, 0 discarded", ack)
	}
	cancel(keys[2].ID)
	ack = lastAnswer()
	if ack.Status != frame.SAECancelApplied || ack.Discarded != 0 || !strings.Contains(ack.Msg, `key a3000000-0000-0000-0000-000000000000 is assigned to master SAE "sae-b", not one of node a`) {
		t.Fatalf("answer %+v: want applied, none discarded, naming the key kept and its master SAE sae-b", ack)
	}
	if st := in.Stats(); st.Stock != 1 {
		t.Fatalf("in pool holds %d keys after the cancel of a key a does not own, want 1", st.Stock)
	}
	// A cancel from a node this one shares no pool with is refused.
	b, err := frame.AppendSAEAssignCancel(nil, &frame.SAEAssignCancel{Keys: []ringstore.KeyID{unknown}})
	if err != nil {
		t.Fatal(err)
	}
	svc.assigner.applyCancel("no-such-node", b)
	tn.mu.Lock()
	m := tn.sent[len(tn.sent)-1]
	tn.mu.Unlock()
	if ack, err := frame.ParseSAEAssignCancelAck(m.payload); err != nil || m.dst != "no-such-node" || ack.Status != frame.SAECancelRefused || ack.Msg == "" {
		t.Fatalf("answer to no-such-node: %+v, %v: want refused with a reason", ack, err)
	}
}

// TestCancelAnsweredWhileResent: answers that arrive while the cancels
// are being sent again end exactly those cancels. Run with -race.
func TestCancelAnsweredWhileResent(t *testing.T) {
	svc, _ := newTestService(t, "a")
	ids := cancelIDs(8 * frame.MaxSAEAssignCancelKeys)
	svc.assigner.cancel("c", ids)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 20 {
			svc.assigner.resendCancels(time.Now())
		}
	}()
	for i := 0; i < len(ids); i += 2 * frame.MaxSAEAssignCancelKeys { // every other cancel
		answer(t, svc, frame.SAEAssignCancel{Keys: ids[i : i+frame.MaxSAEAssignCancelKeys]}, frame.SAECancelApplied)
	}
	<-done
	if n := svc.CancelsPending()["c"]; n != len(ids)/2 {
		t.Fatalf("%d key IDs pending, want the %d of the cancels not answered", n, len(ids)/2)
	}
}
