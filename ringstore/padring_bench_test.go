package ringstore

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// The benchmarks behind bench.sh's ringstore group. Hand-off figures are
// Gbit/s of 32-byte keys moving from the QKD side (a producer goroutine
// appending 256 KiB blocks) to a consumer reserving keys and releasing them
// once used, with every byte copied in and zeroised afterwards, as in
// service. The baseline does the same work over Go channels: a producer
// fills a batch buffer from a pool, sends it, the consumer clears it and
// hands it back.

const keySize = 32

// produce appends blocks to r until stop is closed, retrying while full.
func produce(r *PadRing, stop <-chan struct{}, done *sync.WaitGroup) {
	defer done.Done()
	src := padBlock(0, 256<<10)
	for {
		select {
		case <-stop:
			return
		default:
		}
		if err := r.Append(src); errors.Is(err, ErrRingFull) {
			runtime.Gosched()
		} else if err != nil {
			panic(err)
		}
	}
}

// reserve waits until n bytes of pad are there.
func reserve(b *testing.B, r *PadRing, n int) Range {
	for {
		rg, err := r.Reserve(n)
		if err == nil {
			return rg
		}
		if !errors.Is(err, ErrPadShort) {
			b.Fatal(err)
		}
		runtime.Gosched()
	}
}

func reportKeys(b *testing.B, keysPerOp int) {
	keys := float64(b.N) * float64(keysPerOp)
	b.ReportMetric(keys*keySize*8/b.Elapsed().Seconds()/1e9, "Gbit/s")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/keys, "ns/key")
}

func BenchmarkHandoff(b *testing.B) {
	for _, c := range []struct {
		name string
		keys int
	}{{"batch64", 64}, {"batch1024", 1024}, {"single", 1}} {
		b.Run(c.name+"/ring", func(b *testing.B) {
			r := memRing(b, 64<<20, 1<<20)
			stop, done := make(chan struct{}), new(sync.WaitGroup)
			done.Add(1)
			go produce(r, stop, done)
			n := c.keys * keySize
			b.SetBytes(int64(n))
			for b.Loop() {
				r.Release(reserve(b, r, n))
			}
			reportKeys(b, c.keys)
			close(stop)
			done.Wait()
		})
		b.Run(c.name+"/chan", func(b *testing.B) {
			// As much buffer memory as the ring has (64 MiB), so that neither
			// side runs from cache while the other streams through memory.
			n := c.keys * keySize
			bufs := min(64<<20/n, 1<<16)
			full, free := make(chan []byte, bufs), make(chan []byte, bufs)
			for range bufs {
				free <- make([]byte, n)
			}
			stop := make(chan struct{})
			src := padBlock(0, n).Data
			go func() {
				for {
					select {
					case buf := <-free:
						copy(buf, src)
						full <- buf
					case <-stop:
						return
					}
				}
			}()
			b.SetBytes(int64(n))
			for b.Loop() {
				buf := <-full
				clear(buf)
				free <- buf
			}
			reportKeys(b, c.keys)
			close(stop)
		})
	}
}

// BenchmarkDurableHandoff is BenchmarkHandoff/batch1024 on a durable ring:
// every reservation covered by a persisted mark (one fsync per MarkBatch).
func BenchmarkDurableHandoff(b *testing.B) {
	b.Run("batch1024", func(b *testing.B) {
		dir := b.TempDir()
		db := openMeta(b, dir)
		defer db.Close()
		r, err := OpenPadRing(PadRingConfig{Name: "bench/tx", Capacity: 64 << 20, SegmentSize: 1 << 20, Dir: dir, Meta: db})
		if err != nil {
			b.Fatal(err)
		}
		defer r.Close()
		stop, done := make(chan struct{}), new(sync.WaitGroup)
		done.Add(1)
		go produce(r, stop, done)
		n := 1024 * keySize
		b.SetBytes(int64(n))
		for b.Loop() {
			r.Release(reserve(b, r, n))
		}
		reportKeys(b, 1024)
		b.ReportMetric(float64(r.Stats().MarkWrites)/float64(b.N), "fsyncs/op")
		close(stop)
		done.Wait()
	})
}

// BenchmarkZeroise measures the ring's segment zeroisation (the tail
// passing a fully released 1 MiB segment of a 64 MiB ring of locked,
// mirrored key memory) against clear() walking a 64 MiB heap buffer.
func BenchmarkZeroise(b *testing.B) {
	const segment = 1 << 20
	b.Run("ring", func(b *testing.B) {
		r := memRing(b, 64<<20, segment)
		// White-box: mark the stream appended far ahead and release the
		// tail segment without reserving it, so only zeroisation is timed.
		r.head.Store(1 << 62)
		b.SetBytes(segment)
		for b.Loop() {
			t := r.tail.Load()
			r.release(t, segment)
			r.advanceTail()
			if r.tail.Load() != t+segment {
				b.Fatal("segment not zeroised")
			}
		}
	})
	// The same walk over a heap buffer of the ring's size, a segment per op,
	// so both stream through memory rather than one staying in cache.
	b.Run("clear", func(b *testing.B) {
		buf := make([]byte, 64<<20)
		at := 0
		b.SetBytes(segment)
		for b.Loop() {
			clear(buf[at : at+segment])
			at = (at + segment) % len(buf)
		}
	})
}

const rssChildEnv = "QRELAY_RSS_CHILD"

// BenchmarkRSS reports the resident memory of a fresh process holding a
// full 1 GiB pad ring in memory mode plus an open metadata store, as a node
// would. It measures a child process, so nothing else in this binary counts.
func BenchmarkRSS(b *testing.B) {
	b.Run("ring1GiB", func(b *testing.B) {
		var gib float64
		for b.Loop() {
			cmd := exec.Command(os.Args[0], "-test.run=^TestRSSChild$", "-test.count=1")
			cmd.Env = append(os.Environ(), rssChildEnv+"="+b.TempDir())
			out, err := cmd.CombinedOutput()
			if err != nil {
				b.Fatalf("RSS child: %v\n%s", err, out)
			}
			sc := bufio.NewScanner(strings.NewReader(string(out)))
			found := false
			for sc.Scan() {
				if v, ok := strings.CutPrefix(sc.Text(), "rss-bytes "); ok {
					n, err := strconv.ParseFloat(v, 64)
					if err != nil {
						b.Fatal(err)
					}
					gib, found = n/(1<<30), true
				}
			}
			if !found {
				b.Fatalf("RSS child printed no figure:\n%s", out)
			}
		}
		b.ReportMetric(gib, "GiB")
	})
}

// TestRSSChild is BenchmarkRSS's child; run on its own it does nothing.
func TestRSSChild(t *testing.T) {
	dir := os.Getenv(rssChildEnv)
	if dir == "" {
		t.Skip("runs only as BenchmarkRSS's child process")
	}
	db := openMeta(t, dir)
	defer db.Close()
	const capacity = 1 << 30
	r := memRing(t, capacity, 1<<20)
	block := padBlock(0, 1<<20)
	for range capacity / len(block.Data) {
		if err := r.Append(block); err != nil {
			t.Fatal(err)
		}
	}
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(status)) {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			if err != nil {
				t.Fatal(err)
			}
			fmt.Printf("rss-bytes %d\n", kb<<10)
			return
		}
	}
	t.Fatal("no VmRSS in /proc/self/status")
}
