package otp

import (
	"crypto/subtle"
	"fmt"
	"testing"
)

// The benchmarks compare each operation with its baseline at the same size,
// side by side, so that bench.sh can pair them within one run (see
// perf/benchreport): XOR against crypto/subtle.XORBytes and copy(), XOR3
// against two XORBytes passes, the fixed-size key XORs against XORBytes on
// one key. Names are part of bench.sh's contract: BenchmarkXOR/<size>/<impl>.

var benchSizes = []struct {
	name string
	n    int
}{
	{"32B", 32},
	{"4KiB", 4 << 10},
	{"64KiB", 64 << 10},
	{"1MiB", 1 << 20},
}

func benchBufs(n, count int) [][]byte {
	bufs := make([][]byte, count)
	for i := range bufs {
		bufs[i] = make([]byte, n)
		for j := range bufs[i] {
			bufs[i][j] = byte(j*31 + i)
		}
	}
	return bufs
}

// benchBytes runs f as sub-benchmark name, reporting n bytes per call.
func benchBytes(b *testing.B, name string, n int, f func()) {
	b.Run(name, func(b *testing.B) {
		b.SetBytes(int64(n))
		b.ReportAllocs()
		for b.Loop() {
			f()
		}
	})
}

func BenchmarkXOR(b *testing.B) {
	for _, s := range benchSizes {
		bufs := benchBufs(s.n, 3)
		dst, x, y := bufs[0], bufs[1], bufs[2]
		benchBytes(b, s.name+"/otp", s.n, func() { XOR(dst, x, y) })
		benchBytes(b, s.name+"/subtle", s.n, func() { subtle.XORBytes(dst, x, y) })
		benchBytes(b, s.name+"/copy", s.n, func() { copy(dst, x) })
	}
}

func BenchmarkXOR3(b *testing.B) {
	for _, s := range benchSizes {
		bufs := benchBufs(s.n, 4)
		dst, x, y, z := bufs[0], bufs[1], bufs[2], bufs[3]
		benchBytes(b, s.name+"/otp", s.n, func() { XOR3(dst, x, y, z) })
		// What a relay would do without the fused kernel: decrypt, then
		// re-encrypt, two passes over dst.
		benchBytes(b, s.name+"/naive", s.n, func() {
			subtle.XORBytes(dst, x, y)
			subtle.XORBytes(dst, dst, z)
		})
	}
}

// BenchmarkKernels measures each kernel the CPU supports on its own, for
// comparing them; bench.sh reports only the default.
func BenchmarkKernels(b *testing.B) {
	for _, k := range supportedKernels() {
		restore := useKernel(k) // b.Run runs each sub-benchmark before returning
		for _, s := range benchSizes {
			bufs := benchBufs(s.n, 4)
			b.Run(fmt.Sprintf("%s/xor/%s", k, s.name), func(b *testing.B) {
				b.SetBytes(int64(s.n))
				for b.Loop() {
					XOR(bufs[0], bufs[1], bufs[2])
				}
			})
			b.Run(fmt.Sprintf("%s/xor3/%s", k, s.name), func(b *testing.B) {
				b.SetBytes(int64(s.n))
				for b.Loop() {
					XOR3(bufs[0], bufs[1], bufs[2], bufs[3])
				}
			})
		}
		restore()
	}
}

func BenchmarkTag(b *testing.B) {
	var key [MACKeySize]byte
	for i := range key {
		key[i] = byte(i)
	}
	var sink [TagSize]byte
	// 1KiB too: the relay tags short control frames as well as 64 KiB data
	// frames. /otp is what Tag runs; /scalar is x/crypto's Poly1305, the
	// baseline and the fallback.
	sizes := append([]struct {
		name string
		n    int
	}{{"1KiB", 1 << 10}}, benchSizes...)
	for _, s := range sizes {
		msg := benchBufs(s.n, 1)[0]
		b.Run(s.name+"/otp", func(b *testing.B) {
			b.SetBytes(int64(s.n))
			b.ReportAllocs()
			for b.Loop() {
				sink = Tag(&key, msg)
			}
		})
		b.Run(s.name+"/scalar", func(b *testing.B) {
			b.SetBytes(int64(s.n))
			b.ReportAllocs()
			for b.Loop() {
				sink = macRef(&key, msg)
			}
		})
	}
	_ = sink
}

// BenchmarkXORKey measures one 32-byte key: the inlined fast path, the
// general XOR and crypto/subtle.XORBytes.
func BenchmarkXORKey(b *testing.B) {
	var dst, x, y [32]byte
	for i := range x {
		x[i], y[i] = byte(i), byte(3*i)
	}
	b.Run("32B/fast", func(b *testing.B) {
		for b.Loop() {
			XOR32(&dst, &x, &y)
		}
	})
	b.Run("32B/otp", func(b *testing.B) {
		for b.Loop() {
			XOR(dst[:], x[:], y[:])
		}
	})
	b.Run("32B/subtle", func(b *testing.B) {
		for b.Loop() {
			subtle.XORBytes(dst[:], x[:], y[:])
		}
	})
}
