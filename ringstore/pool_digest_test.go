package ringstore

import (
	"testing"
)

// TestPoolDigest checks that the digest depends on the set of (ID, key)
// pairs, not on their order, and that it changes when any key does.
func TestPoolDigest(t *testing.T) {
	open := func() *Pool {
		p, err := OpenPool(PoolConfig{Name: "b", Slots: 64, SlotSize: 32})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { p.Close() })
		return p
	}
	keys := make([]NewKey, 10)
	for i := range keys {
		keys[i] = NewKey{ID: DeriveKeyID("a", "b", 1, uint64(i)), Key: []byte{byte(i), 1, 2, 3, 4, 5, 6, 7}}
	}
	p, q := open(), open()
	if n, d, err := p.Digest(); err != nil || n != 0 || d != ([32]byte{}) {
		t.Fatalf("empty pool: Digest = %d, %x, %v; want 0 and zeros", n, d, err)
	}
	if err := p.Put(keys); err != nil {
		t.Fatal(err)
	}
	for i := len(keys) - 1; i >= 0; i-- { // the other end got them in reverse order
		if err := q.Put([]NewKey{{ID: keys[i].ID, Key: append([]byte(nil), keys[i].Key...)}}); err != nil {
			t.Fatal(err)
		}
	}
	np, dp, _ := p.Digest()
	nq, dq, _ := q.Digest()
	if np != 10 || nq != 10 || dp != dq {
		t.Fatalf("same keys in another order: %d %x vs %d %x", np, dp, nq, dq)
	}
	if _, err := q.TakeNext(1, Owner("sae-1>sae-2")); err != nil {
		t.Fatal(err)
	}
	if n, d, _ := q.Digest(); n != 9 || d == dp {
		t.Fatalf("after taking a key: %d keys, digest unchanged = %v", n, d == dp)
	}
	r := open()
	keys[3].Key[0] ^= 1 // one bit of one key differs
	if err := r.Put(keys); err != nil {
		t.Fatal(err)
	}
	if _, d, _ := r.Digest(); d == dp {
		t.Fatal("a flipped key bit left the digest unchanged")
	}
}
