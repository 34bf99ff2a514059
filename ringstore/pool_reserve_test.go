package ringstore

import (
	"errors"
	"testing"
)

// TestPoolReserveNext checks reservations: the oldest keys not yet
// reserved are assigned in place, TakeByIDs hands
// them out with their assignment, TakeNextFree passes them by, and a
// durable pool keeps them.
func TestPoolReserveNext(t *testing.T) {
	for _, mode := range []string{"memory", "durable"} {
		t.Run(mode, func(t *testing.T) {
			env := newPoolEnv(t, mode)
			cfg := env.config("b", 64)
			p := env.open(t, cfg)
			keys := make([]NewKey, 10)
			for i := range keys {
				keys[i] = NewKey{ID: DeriveKeyID("a", "b", 1, uint64(i)), Key: []byte{byte(i), 1, 2, 3, 4, 5, 6, 7}}
			}
			if err := p.Put(keys); err != nil {
				t.Fatal(err)
			}
			pair := Owner("sae-a>sae-c")
			ids, err := p.ReserveNext(4, pair)
			if err != nil || len(ids) != 4 || ids[0] != keys[0].ID || ids[3] != keys[3].ID {
				t.Fatalf("ReserveNext(4) = %v, %v; want the 4 oldest", ids, err)
			}
			more, err := p.ReserveNext(2, pair)
			if err != nil || more[0] != keys[4].ID {
				t.Fatalf("second ReserveNext = %v, %v; want keys 4 and 5", more, err)
			}
			got, err := p.TakeNextFree(3, Owner("sae-x>sae-y"))
			if err != nil || got[0].ID != keys[6].ID {
				t.Fatalf("TakeNextFree after reservations: %v, %v; want keys 6.. (reserved ones skipped)", got, err)
			}
			if _, err := p.TakeNextFree(2, Owner("sae-x")); !errors.Is(err, ErrPoolEmpty) {
				t.Fatalf("TakeNextFree of 2 with 1 unreserved key: %v, want ErrPoolEmpty", err)
			}
			if _, err := p.ReserveNext(2, pair); !errors.Is(err, ErrPoolEmpty) {
				t.Fatalf("ReserveNext of 2 with 1 unreserved key: %v, want ErrPoolEmpty", err)
			}
			if mode == "durable" {
				if err := p.Close(); err != nil {
					t.Fatal(err)
				}
				p = env.open(t, cfg)
			}
			out, err := p.TakeByIDs(ids[:2])
			if err != nil || len(out) != 2 || out[0].Owner != pair || out[1].Bytes[0] != 1 {
				t.Fatalf("TakeByIDs of reserved keys: %+v, %v", out, err)
			}
		})
	}
}
