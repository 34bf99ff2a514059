package ringstore

import (
	"context"
	"errors"
	"math/rand/v2"
	"runtime"
	"sync"
	"testing"

	"github.com/qrelay/qrelay/internal/race"
)

// waitArmed returns once some goroutine waits on r (it has armed the
// waiters and not yet been woken), so a test knows the wait it checks is
// a real one, not a look that found the condition already true.
func waitArmed(t *testing.T, r *PadRing) {
	t.Helper()
	for !r.waiters.armed.Load() {
		runtime.Gosched()
	}
}

// waitResult runs f in a goroutine and returns the channel its error
// arrives on.
func waitResult(f func() error) <-chan error {
	ch := make(chan error, 1)
	go func() { ch <- f() }()
	return ch
}

func notYet(t *testing.T, ch <-chan error, what string) {
	t.Helper()
	select {
	case err := <-ch:
		t.Fatalf("%s returned %v before its condition held", what, err)
	default:
	}
}

func TestWaitStockWakesOnAppend(t *testing.T) {
	r := memRing(t, 1<<16, 1<<12)
	done := waitResult(func() error { return r.WaitStock(context.Background(), 1000) })
	waitArmed(t, r)
	if err := r.Append(padBlock(0, 600)); err != nil {
		t.Fatal(err)
	}
	// Woken, the waiter finds 600 bytes and waits again.
	waitArmed(t, r)
	notYet(t, done, "WaitStock(1000) with 600 bytes")
	if err := r.Append(padBlock(600, 400)); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("WaitStock after 1000 bytes appended: %v", err)
	}
	// The condition holds already: no wait.
	if err := r.WaitStock(context.Background(), 1000); err != nil {
		t.Fatal(err)
	}
}

func TestWaitRoomWakesOnRelease(t *testing.T) {
	const capacity, segment = 1 << 14, 1 << 12
	r := memRing(t, capacity, segment)
	if err := r.Append(padBlock(0, capacity)); err != nil {
		t.Fatal(err)
	}
	done := waitResult(func() error { return r.WaitRoom(context.Background(), 100) })
	waitArmed(t, r)
	rg, err := r.Reserve(segment)
	if err != nil {
		t.Fatal(err)
	}
	notYet(t, done, "WaitRoom with the ring full") // reserving frees nothing
	r.Release(rg)                                  // the tail passes a whole segment
	if err := <-done; err != nil {
		t.Fatalf("WaitRoom after a segment was released: %v", err)
	}
	if err := r.Append(padBlock(capacity, 100)); err != nil {
		t.Fatalf("Append after WaitRoom: %v", err)
	}
}

func TestWaitHonoursContext(t *testing.T) {
	r := memRing(t, 1<<14, 1<<12)
	ctx, cancel := context.WithCancel(context.Background())
	done := waitResult(func() error { return r.WaitStock(ctx, 1) })
	waitArmed(t, r)
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("WaitStock after cancel: %v, want context.Canceled", err)
	}
	if err := r.WaitRoom(ctx, 1<<15); !errors.Is(err, context.Canceled) {
		t.Fatalf("WaitRoom with a cancelled context: %v, want context.Canceled", err)
	}
}

func TestWaitWakesOnClose(t *testing.T) {
	const capacity = 1 << 14
	r := memRing(t, capacity, 1<<12)
	if err := r.Append(padBlock(0, capacity)); err != nil {
		t.Fatal(err)
	}
	stock := waitResult(func() error { return r.WaitStock(context.Background(), capacity+1) })
	room := waitResult(func() error { return r.WaitRoom(context.Background(), 1) })
	watch := r.Watch(PadWatch{StockBelow: 1})
	waitArmed(t, r)
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	for what, ch := range map[string]<-chan error{"WaitStock": stock, "WaitRoom": room} {
		if err := <-ch; !errors.Is(err, ErrClosed) {
			t.Fatalf("%s after Close: %v, want ErrClosed", what, err)
		}
	}
	<-watch
	select {
	case <-r.Watch(PadWatch{}):
	default:
		t.Fatal("Watch on a closed ring returned an open channel")
	}
}

func TestWatchStockBelow(t *testing.T) {
	r := memRing(t, 1<<14, 1<<12)
	if err := r.Append(padBlock(0, 1000)); err != nil {
		t.Fatal(err)
	}
	ch := r.Watch(PadWatch{StockBelow: 500})
	if _, err := r.Reserve(400); err != nil { // 600 left
		t.Fatal(err)
	}
	select {
	case <-ch:
		t.Fatal("Watch(StockBelow 500) closed with 600 bytes of stock")
	default:
	}
	if _, err := r.Reserve(200); err != nil { // 400 left
		t.Fatal(err)
	}
	<-ch
	select {
	case <-r.Watch(PadWatch{StockBelow: 401}):
	default:
		t.Fatal("Watch(StockBelow 401) with 400 bytes of stock returned an open channel")
	}
}

// TestWaitConcurrent is TestPadRingConcurrent's workload with waits in
// place of polling: the producer waits for room, the consumers for pad.
// Every byte must come out once, in place, and nobody may hang.
func TestWaitConcurrent(t *testing.T) {
	const capacity, segment, take = 1 << 16, 1 << 12, 512
	total := uint64(8 << 20)
	if testing.Short() || race.Enabled {
		total = 2 << 20
	}
	r := memRing(t, capacity, segment)
	ctx, allTaken := context.WithCancel(context.Background())
	defer allTaken()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		rnd := rand.New(rand.NewPCG(1, 2))
		for pos := uint64(0); pos < total; {
			n := min(uint64(1+rnd.IntN(20000)), total-pos)
			for {
				err := r.Append(padBlock(pos, int(n)))
				if err == nil {
					break
				}
				if !errors.Is(err, ErrRingFull) {
					t.Error(err)
					return
				}
				if err := r.WaitRoom(ctx, n); err != nil {
					t.Error(err)
					return
				}
			}
			pos += n
		}
	}()
	const consumers = 4
	got := make([][]Range, consumers)
	for c := range consumers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var held []Range
			defer func() {
				for _, h := range held {
					r.Release(h)
				}
			}()
			for {
				rg, err := r.Reserve(take)
				if errors.Is(err, ErrPadShort) {
					// Release before waiting: held ranges keep the tail, and
					// so the producer, from moving.
					for _, h := range held {
						r.Release(h)
					}
					held = held[:0]
					if err := r.WaitStock(ctx, take); err != nil {
						if ctx.Err() == nil {
							t.Error(err)
						}
						return
					}
					continue
				}
				if err != nil {
					t.Error(err)
					return
				}
				checkPad(t, rg)
				got[c] = append(got[c], Range{Pos: rg.Pos, Bytes: make([]byte, len(rg.Bytes))})
				if rg.Pos+take == total {
					allTaken()
				}
				held = append(held, rg)
				if len(held) > 4 {
					r.Release(held[0])
					held = held[1:]
				}
			}
		}()
	}
	wg.Wait()
	var all []Range
	for _, g := range got {
		all = append(all, g...)
	}
	checkTiling(t, all, total)
}
