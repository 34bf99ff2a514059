package supply

import (
	"slices"
	"testing"
	"time"

	"github.com/qrelay/qrelay/ringstore"
)

// TestOrphanRecord: a batch's durable record reads back as written, and
// a record cut short, or longer than its count says, is refused.
func TestOrphanRecord(t *testing.T) {
	b := &orphanBatch{remote: "node-b", deadline: time.Unix(0, 1_700_000_000_123_456_789), ids: []ringstore.KeyID{{1}, {2, 3}, {0xff}}}
	v := b.encode()
	got, err := decodeOrphanBatch("k", v)
	if err != nil {
		t.Fatal(err)
	}
	if got.key != "k" || got.remote != b.remote || !got.deadline.Equal(b.deadline) || !slices.Equal(got.ids, b.ids) {
		t.Fatalf("decoded %+v, want %+v", got, b)
	}
	for i := range v {
		if _, err := decodeOrphanBatch("k", v[:i]); err == nil {
			t.Errorf("a record cut to %d of %d bytes was accepted", i, len(v))
		}
	}
	if _, err := decodeOrphanBatch("k", append(v, 0)); err == nil {
		t.Error("a record with a byte after its last key ID was accepted")
	}
	bad := append([]byte(nil), v...)
	bad[0] = orphanFormat + 1
	if _, err := decodeOrphanBatch("k", bad); err == nil {
		t.Error("a record of another format was accepted")
	}
}
