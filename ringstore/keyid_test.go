package ringstore

import (
	"strings"
	"testing"
)

// The key ID rule and its tests are in internal/etsi014wire; these check that
// ringstore's names are that rule.
func TestKeyIDIsETSI014(t *testing.T) {
	if got, want := DeriveKeyID("nodeA", "nodeB", 7, 42).String(), "a27d716d-3630-5ac5-8220-622b777a0f50"; got != want {
		t.Errorf("DeriveKeyID = %s, want %s", got, want)
	}
	id, err := ParseKeyID(strings.ToUpper(KeyIDNamespace))
	if err != nil || id.String() != KeyIDNamespace {
		t.Errorf("ParseKeyID(KeyIDNamespace in upper case) = %s, %v", id, err)
	}
	if _, err := ParseKeyID("xyz"); err == nil || err.Error() != `key ID "xyz": want 36 characters in 8-4-4-4-12 form, got 3` {
		t.Errorf("ParseKeyID(xyz): %v", err)
	}
}

func TestDeriveKeyIDAllocs(t *testing.T) {
	if n := testing.AllocsPerRun(100, func() { DeriveKeyID("node-with-a-longish-id-01", "node-with-a-longish-id-02", 3, 4) }); n != 0 {
		t.Errorf("DeriveKeyID allocates %v times per call, want 0", n)
	}
}

func BenchmarkDeriveKeyID(b *testing.B) {
	b.ReportAllocs()
	var seq uint64
	for b.Loop() {
		DeriveKeyID("nodeA", "nodeB", 1, seq)
		seq++
	}
}
