package relay

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/qrelay/qrelay/ringstore"
)

func testRing(t *testing.T, capacity int) *ringstore.PadRing {
	t.Helper()
	r, err := ringstore.OpenPadRing(ringstore.PadRingConfig{Name: "test/rx", Capacity: capacity, SegmentSize: 4096})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func appendPattern(t *testing.T, r *ringstore.PadRing, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + 1)
	}
	if err := r.Append(ringstore.Block{ID: "b", Data: append([]byte(nil), b...)}); err != nil {
		t.Fatal(err)
	}
	return b
}

func TestRxWindowOrder(t *testing.T) {
	r := testRing(t, 1<<16)
	want := appendPattern(t, r, 10000)
	w := newRxWindow(r, 1<<15)
	ctx := context.Background()
	// Frames of 100 bytes at 0..9900, taken in a scrambled order.
	order := []uint64{300, 0, 100, 900, 200, 500, 400, 800, 700, 600}
	for _, pos := range order {
		rg, err := w.take(ctx, nil, pos, 100)
		if err != nil {
			t.Fatalf("take %d: %v", pos, err)
		}
		if rg.Pos != pos || !bytes.Equal(rg.Bytes, want[pos:pos+100]) {
			t.Fatalf("take %d: got pos %d and other bytes", pos, rg.Pos)
		}
	}
	if w.gapSize != 0 || len(w.gaps) != 0 {
		t.Fatalf("gaps left after all frames arrived: %d bytes in %d", w.gapSize, len(w.gaps))
	}
	// Every one of them again is a replay, as is any overlap.
	for _, c := range []struct{ pos, n uint64 }{{0, 100}, {300, 100}, {950, 100}, {50, 10}, {999, 1}} {
		if _, err := w.take(ctx, nil, c.pos, int(c.n)); !errors.Is(err, errReplay) {
			t.Errorf("take %d+%d again: got %v, want errReplay", c.pos, c.n, err)
		}
	}
}

func TestRxWindowGapSplit(t *testing.T) {
	r := testRing(t, 1<<16)
	appendPattern(t, r, 4000)
	w := newRxWindow(r, 1<<15)
	ctx := context.Background()
	if _, err := w.take(ctx, nil, 1000, 100); err != nil { // gap 0..1000
		t.Fatal(err)
	}
	if _, err := w.take(ctx, nil, 400, 100); err != nil { // splits it: 0..400, 500..1000
		t.Fatal(err)
	}
	if _, err := w.take(ctx, nil, 450, 100); !errors.Is(err, errReplay) {
		t.Fatalf("range straddling a consumed run: got %v, want errReplay", err)
	}
	if _, err := w.take(ctx, nil, 950, 100); !errors.Is(err, errReplay) {
		t.Fatalf("range straddling the cursor: got %v, want errReplay", err)
	}
	for _, pos := range []uint64{0, 200, 500, 900} {
		if _, err := w.take(ctx, nil, pos, 100); err != nil {
			t.Fatalf("take %d from a gap: %v", pos, err)
		}
	}
	if w.gapSize != 500 {
		t.Fatalf("gapSize = %d, want 500 (100..200, 300..400, 600..900)", w.gapSize)
	}
	if burnt := w.dropGaps(); burnt != 500 {
		t.Fatalf("dropGaps burnt %d, want 500", burnt)
	}
	if _, err := w.take(ctx, nil, 100, 100); !errors.Is(err, errReplay) {
		t.Fatalf("frame of a burnt gap: got %v, want errReplay", err)
	}
}

func TestRxWindowBeyondAndPending(t *testing.T) {
	r := testRing(t, 1<<16)
	appendPattern(t, r, 1000)
	w := newRxWindow(r, 1<<15)
	ctx := context.Background()
	if _, err := w.take(ctx, nil, 900, 200); !errors.Is(err, errBeyond) {
		t.Fatalf("frame past the head: got %v, want errBeyond", err)
	}
	if _, err := w.take(ctx, nil, 1<<20, 10); !errors.Is(err, errBeyond) {
		t.Fatalf("frame past the ring: got %v, want errBeyond", err)
	}
	if _, err := w.take(ctx, nil, ^uint64(0)-5, 10); !errors.Is(err, errBeyond) {
		t.Fatalf("overflowing range: got %v, want errBeyond", err)
	}
	// Announced pad: the frame waits for it instead of being refused.
	w.addPending(500)
	got := make(chan error, 1)
	go func() {
		_, err := w.take(ctx, nil, 1000, 300)
		got <- err
	}()
	select {
	case err := <-got:
		t.Fatalf("take of announced pad returned before it arrived: %v", err)
	default:
	}
	if err := r.Append(ringstore.Block{ID: "c", Data: make([]byte, 500)}); err != nil {
		t.Fatal(err)
	}
	w.addPending(-500)
	if err := <-got; err != nil {
		t.Fatalf("take of announced pad after it arrived: %v", err)
	}
	// A frame waiting for announced pad gives up with its context.
	w.addPending(100)
	cctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if _, err := w.take(cctx, nil, 1500, 50); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("wait for pad that never comes: got %v", err)
	}
}

func TestRxWindowMaxGap(t *testing.T) {
	r := testRing(t, 1<<16)
	appendPattern(t, r, 1<<15)
	w := newRxWindow(r, 1000)
	ctx := context.Background()
	if _, err := w.take(ctx, nil, 800, 10); err != nil { // gap 0..800
		t.Fatal(err)
	}
	if _, err := w.take(ctx, nil, 1200, 10); err != nil { // gap 810..1200: 1190 > 1000, the oldest goes
		t.Fatal(err)
	}
	if w.gapSize != 390 {
		t.Fatalf("gapSize = %d, want 390", w.gapSize)
	}
	if _, err := w.take(ctx, nil, 0, 10); !errors.Is(err, errReplay) {
		t.Fatalf("frame in a gap burnt for size: got %v, want errReplay", err)
	}
	if _, err := w.take(ctx, nil, 900, 10); err != nil {
		t.Fatalf("frame in a kept gap: %v", err)
	}
}
