package supply

import (
	"testing"
	"time"
)

func TestKeyRate(t *testing.T) {
	var k keyRate
	t0 := time.Unix(1000, 0)
	k.update(t0) // starts the window
	k.add(100)
	k.update(t0.Add(50 * time.Millisecond)) // too soon: nothing folded
	if k.perSec != 0 || k.taken != 100 {
		t.Fatalf("after 50 ms: rate %v, taken %d; want 0 and 100 kept", k.perSec, k.taken)
	}
	k.update(t0.Add(time.Second)) // 100 keys/s over 1 s, weight 1/2
	if k.perSec != 50 || k.taken != 0 {
		t.Fatalf("after 1 s: rate %v, taken %d; want 50 and 0", k.perSec, k.taken)
	}
	k.add(200)
	k.update(t0.Add(3 * time.Second)) // 100 keys/s over 2 s, weight 1
	if k.perSec != 100 {
		t.Fatalf("after 3 s: rate %v, want 100", k.perSec)
	}
}
