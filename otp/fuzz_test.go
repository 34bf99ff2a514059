package otp

import (
	"bytes"
	"testing"
)

// FuzzXOR feeds arbitrary data, offsets and aliasing to every supported
// kernel and checks each against the generic one. The committed corpus in
// testdata/fuzz/FuzzXOR holds the block-size edges of each kernel.
func FuzzXOR(f *testing.F) {
	for _, n := range []int{0, 1, 7, 8, 31, 32, 33, 63, 64, 65, 127, 128, 129, 255, 256, 257, 1000} {
		f.Add(bytes.Repeat([]byte{0xa5, 0x3c, 0x0f}, n), uint8(n%64), uint8(n%7), uint8(0))
	}
	f.Fuzz(func(t *testing.T, data []byte, offDst, offB, alias uint8) {
		n := len(data)
		a := data
		b := make([]byte, int(offB%64)+n)[offB%64:]
		for i := range b {
			b[i] = data[n-1-i] ^ byte(i)
		}
		want := make([]byte, n)
		refXOR(want, a, b)
		for _, k := range supportedKernels() {
			in := [2][]byte{clone(a), clone(b)}
			dst := make([]byte, int(offDst%64)+n+64)[offDst%64:][:n]
			switch alias % 3 {
			case 1:
				dst = in[0]
			case 2:
				dst = in[1]
			}
			restore := useKernel(k)
			XOR(dst, in[0], in[1])
			restore()
			if !bytes.Equal(dst, want) {
				t.Fatalf("%s kernel: n=%d offDst=%d offB=%d alias=%d: wrong at byte %d", k, n, offDst%64, offB%64, alias%3, firstDiff(dst, want))
			}
		}
	})
}

// FuzzXOR3 is FuzzXOR for the fused three-way XOR.
func FuzzXOR3(f *testing.F) {
	for _, n := range []int{0, 1, 8, 31, 32, 63, 64, 65, 128, 255, 256, 257, 1000} {
		f.Add(bytes.Repeat([]byte{0x5a, 0xc3, 0xf0, 0x01}, n), uint8(n%64), uint8(n%5), uint8(n%3), uint8(n%4))
	}
	f.Fuzz(func(t *testing.T, data []byte, offDst, offB, offC, alias uint8) {
		n := len(data)
		a := data
		b := make([]byte, int(offB%64)+n)[offB%64:]
		c := make([]byte, int(offC%64)+n)[offC%64:]
		for i := range b {
			b[i] = data[n-1-i] + byte(i)
			c[i] = data[i] * 3
		}
		want := make([]byte, n)
		refXOR3(want, a, b, c)
		for _, k := range supportedKernels() {
			in := [3][]byte{clone(a), clone(b), clone(c)}
			dst := make([]byte, int(offDst%64)+n+64)[offDst%64:][:n]
			if i := alias % 4; i > 0 {
				dst = in[i-1]
			}
			restore := useKernel(k)
			XOR3(dst, in[0], in[1], in[2])
			restore()
			if !bytes.Equal(dst, want) {
				t.Fatalf("%s kernel: n=%d offDst=%d alias=%d: wrong at byte %d", k, n, offDst%64, alias%4, firstDiff(dst, want))
			}
		}
	})
}
