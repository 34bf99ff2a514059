package supply

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/qrelay/qrelay/ringstore"
)

// TestAssignmentOwner: an assignment's owner tag reads back as the same
// assignment, and is byte for byte the layout durable pools stored before
// owner tags were opaque (so that those pools read the same).
func TestAssignmentOwner(t *testing.T) {
	a := Assignment{Master: "sae-a", Slaves: []string{"sae-b", "sae-c"}}
	want := []byte("\x00\x05sae-a\x00\x02\x00\x05sae-b\x00\x05sae-c")
	if got := a.Owner(); !bytes.Equal([]byte(got), want) {
		t.Fatalf("owner tag %q, want %q", got, want)
	}
	back, err := assignmentOf(a.Owner())
	if err != nil || back.Master != a.Master || strings.Join(back.Slaves, ",") != "sae-b,sae-c" {
		t.Fatalf("read back %+v, %v", back, err)
	}
	if none, err := assignmentOf(""); err != nil || none.Master != "" || none.Slaves != nil {
		t.Fatalf("the empty tag reads %+v, %v; want the zero assignment", none, err)
	}
	for _, tc := range []struct {
		tag, err string
	}{
		{"\x00", "truncated"},
		{"\x00\x05sae-a\x00", "truncated"},
		{"\x00\x05sae-a\x00\x01\x00\x09sae", "truncated"},
		{"\x00\x05sae-a\x00\x00x", "1 bytes after it"},
		{"\x00\x00\x00\x00", "no master SAE"},
	} {
		if _, err := assignmentOf(ringstore.Owner(tc.tag)); err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("tag %q: %v, want an error saying %q", tc.tag, err, tc.err)
		}
	}
}

// TestAssignmentChecks: what an assignment may hold, checked before a pool
// records it.
func TestAssignmentChecks(t *testing.T) {
	for _, tc := range []struct {
		a   Assignment
		err string
	}{
		{Assignment{}, "no master SAE"},
		{Assignment{Slaves: []string{"x"}}, "no master SAE"},
		{Assignment{Master: strings.Repeat("m", MaxSAEIDLen+1)}, "is 257 bytes, at most 256 allowed"},
		{Assignment{Master: "m", Slaves: []string{"s", ""}}, "slave SAE ID 1"},
		{Assignment{Master: "m", Slaves: []string{"s", ""}}, "is 0 bytes, want 1 to 256"},
		{Assignment{Master: "m", Slaves: make([]string, MaxSlaves+1)}, "65 slave SAEs, at most 64 allowed"},
	} {
		if _, err := ownerOf(tc.a); err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("%+v: %v, want an error saying %q", tc.a, err, tc.err)
		}
	}
	big := Assignment{Master: strings.Repeat("m", MaxSAEIDLen)}
	for range MaxSlaves {
		big.Slaves = append(big.Slaves, strings.Repeat("s", MaxSAEIDLen))
	}
	o, err := ownerOf(big)
	if err != nil || len(o) > ringstore.MaxOwnerLen {
		t.Fatalf("the largest assignment: tag of %d bytes (pools take %d), %v", len(o), ringstore.MaxOwnerLen, err)
	}
}

// TestSetOwnerNamesMasterSAE: a key assigned otherwise already is refused
// naming its master SAE, and nothing is recorded.
func TestSetOwnerNamesMasterSAE(t *testing.T) {
	svc, _ := newTestService(t, "b")
	p, err := svc.Pool("a", RoleIn)
	if err != nil {
		t.Fatal(err)
	}
	keys := []ringstore.NewKey{{ID: ringstore.KeyID{1}, Key: make([]byte, 32)}, {ID: ringstore.KeyID{2}, Key: make([]byte, 32)}}
	if err := p.Put(keys); err != nil {
		t.Fatal(err)
	}
	saeA := Assignment{Master: "sae-a", Slaves: []string{"sae-b"}}
	if err := setOwner(p, []ringstore.KeyID{keys[0].ID}, saeA); err != nil {
		t.Fatal(err)
	}
	if err := setOwner(p, []ringstore.KeyID{keys[0].ID}, saeA); err != nil {
		t.Fatalf("the same assignment again (a retransmission): %v", err)
	}
	err = setOwner(p, []ringstore.KeyID{keys[1].ID, keys[0].ID}, Assignment{Master: "sae-x"})
	if !errors.Is(err, ringstore.ErrOwned) || !strings.Contains(err.Error(), keys[0].ID.String()) || !strings.Contains(err.Error(), `master SAE "sae-a"`) {
		t.Fatalf("assigning a key of sae-a to sae-x: %v", err)
	}
	inv, err := p.Inventory(nil)
	if err != nil || len(inv) != 2 || !inv[0].Owned || inv[1].Owned {
		t.Fatalf("inventory %+v, %v: want key 1 assigned, key 2 not", inv, err)
	}
}
