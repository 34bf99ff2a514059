package ringstore

import (
	"slices"
	"testing"
)

// TestPoolInventory: every key, sorted by ID, with its assignment flag;
// a durable pool's inventory survives a reopen, and PoolExists tells a
// pool that exists from one that does not.
func TestPoolInventory(t *testing.T) {
	for _, mode := range []string{"memory", "durable"} {
		t.Run(mode, func(t *testing.T) {
			env := newPoolEnv(t, mode)
			cfg := env.config("b", 64)
			if env.durable {
				if ok, err := PoolExists(env.db, "b"); ok || err != nil {
					t.Fatalf("PoolExists before OpenPool: %v, %v", ok, err)
				}
			}
			p := env.open(t, cfg)
			keys := poolNewKeys(7, 0, 20, DefaultSlotSize)
			if err := p.Put(keys); err != nil {
				t.Fatal(err)
			}
			reserved, err := p.ReserveNext(3, Owner("sae-a>sae-b"))
			if err != nil {
				t.Fatal(err)
			}
			if err := p.SetOwner(poolIDs(keys[10:12]), Owner("sae-a>sae-b")); err != nil {
				t.Fatal(err)
			}
			if _, err := p.TakeByIDs(poolIDs(keys[15:17])); err != nil {
				t.Fatal(err)
			}
			want := map[KeyID]bool{}
			for i, k := range keys {
				if i < 15 || i >= 17 {
					want[k.ID] = i >= 10 && i < 12 || slices.Contains(reserved, k.ID)
				}
			}
			check := func(p *Pool) {
				t.Helper()
				prefix := []KeyState{{ID: KeyID{0xff}}}
				inv, err := p.Inventory(prefix)
				if err != nil {
					t.Fatal(err)
				}
				if inv[0] != prefix[0] {
					t.Fatal("Inventory overwrote what dst held")
				}
				inv = inv[1:]
				if len(inv) != len(want) {
					t.Fatalf("inventory of %d keys, want %d", len(inv), len(want))
				}
				for i, ks := range inv {
					if i > 0 && CompareKeyIDs(inv[i-1].ID, ks.ID) >= 0 {
						t.Fatalf("inventory not sorted at %d", i)
					}
					if a, ok := want[ks.ID]; !ok || a != ks.Owned {
						t.Fatalf("key %s: in pool %v owned %v, inventory says owned %v", ks.ID, ok, a, ks.Owned)
					}
				}
			}
			check(p)
			if env.durable {
				if ok, err := PoolExists(env.db, "b"); !ok || err != nil {
					t.Fatalf("PoolExists after OpenPool: %v, %v", ok, err)
				}
				if err := p.Close(); err != nil {
					t.Fatal(err)
				}
				check(env.open(t, cfg))
			}
			if _, err := PoolExists(env.db, "../x"); mode == "durable" && err == nil {
				t.Fatal("PoolExists of a bad name: no error")
			}
		})
	}
}
