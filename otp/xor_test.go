package otp

import (
	"bytes"
	"crypto/subtle"
	"math/rand/v2"
	"strings"
	"testing"
)

// refXOR3 is the obvious byte loop every kernel is measured against in the
// end; the generic kernel is checked against it, and the assembly kernels
// against the generic one.
func refXOR3(dst, a, b, c []byte) {
	for i := range dst {
		dst[i] = a[i] ^ b[i] ^ c[i]
	}
}

func refXOR(dst, a, b []byte) {
	for i := range dst {
		dst[i] = a[i] ^ b[i]
	}
}

func randBytes(r *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// The aliasing cases a test walks through: which input dst is.
const (
	aliasNone = iota
	aliasA
	aliasB
	aliasC // XOR3 only
)

// operands is dst and three inputs of length n at the given offsets inside
// larger buffers, with the aliasing case applied; the bytes after dst let a
// test see a kernel writing past its end.
type operands struct {
	dst, a, b, c []byte
	dstBuf       []byte
	dstOff, n    int
}

const canary = 0xdd

func newOperands(r *rand.Rand, n, offDst, offA, offB, offC, alias int) *operands {
	const slack = 64
	o := &operands{n: n, dstOff: offDst}
	mk := func(off int) []byte { return randBytes(r, off+n+slack)[off : off+n] }
	o.a, o.b, o.c = mk(offA), mk(offB), mk(offC)
	o.dstBuf = bytes.Repeat([]byte{canary}, offDst+n+slack)
	o.dst = o.dstBuf[offDst : offDst+n]
	switch alias {
	case aliasA:
		o.dst, o.dstBuf, o.dstOff = o.a, o.a[:cap(o.a)], 0
	case aliasB:
		o.dst, o.dstBuf, o.dstOff = o.b, o.b[:cap(o.b)], 0
	case aliasC:
		o.dst, o.dstBuf, o.dstOff = o.c, o.c[:cap(o.c)], 0
	}
	return o
}

// tail is the rest of dst's buffer after dst.
func (o *operands) tail() []byte { return o.dstBuf[o.dstOff+o.n:] }

// clone copies the inputs so a reference result can be computed before an
// aliased kernel overwrites one of them.
func clone(b []byte) []byte { return append([]byte(nil), b...) }

// The two operations under test, in a form the property tests can share.
var ops = []struct {
	name    string
	aliases int // aliasing cases that apply: dst may be any input
	generic func(want []byte, o *operands)
	run     func(o *operands)
}{
	{"XOR", aliasB + 1,
		func(want []byte, o *operands) { xorGeneric(want, clone(o.a), clone(o.b)) },
		func(o *operands) { XOR(o.dst, o.a, o.b) }},
	{"XOR3", aliasC + 1,
		func(want []byte, o *operands) { xor3Generic(want, clone(o.a), clone(o.b), clone(o.c)) },
		func(o *operands) { XOR3(o.dst, o.a, o.b, o.c) }},
}

// TestKernelsMatchGeneric runs XOR and XOR3 with every kernel on random
// lengths up to 70 KiB (a third of them below 600 bytes, where the tails
// are), random offsets of every operand and every aliasing case, and checks
// each result against the generic kernel and the bytes after dst.
func TestKernelsMatchGeneric(t *testing.T) {
	for seed, op := range ops {
		t.Run(op.name, func(t *testing.T) {
			forEachKernel(t, func(t *testing.T, k kernel) {
				r := rand.New(rand.NewPCG(uint64(seed), uint64(k)))
				iters := 600
				if testing.Short() {
					iters = 100
				}
				for i := range iters {
					n := r.IntN(70<<10 + 1)
					if i%3 == 0 {
						n = r.IntN(600)
					}
					alias := r.IntN(op.aliases)
					o := newOperands(r, n, r.IntN(64), r.IntN(64), r.IntN(64), r.IntN(64), alias)
					want := make([]byte, n)
					op.generic(want, o)
					tailBefore := clone(o.tail())
					op.run(o)
					if !bytes.Equal(o.dst, want) {
						t.Fatalf("case %d: n=%d alias=%d: %s %s differs from generic at byte %d", i, n, alias, k, op.name, firstDiff(o.dst, want))
					}
					if !bytes.Equal(o.tail(), tailBefore) {
						t.Fatalf("case %d: n=%d alias=%d: %s %s wrote past the end of dst", i, n, alias, k, op.name)
					}
				}
			})
		})
	}
}

// TestXORSweep walks every length up to a few blocks of the widest kernel
// against every alignment of dst and of one input, with canaries on both
// sides of dst (as crypto/subtle's xor_test.go does).
func TestXORSweep(t *testing.T) {
	forEachKernel(t, func(t *testing.T, k kernel) {
		r := rand.New(rand.NewPCG(3, uint64(k)))
		maxLen, step := 600, 1
		if testing.Short() {
			step = 7
		}
		for n := 0; n <= maxLen; n += step {
			for align := range 64 {
				a := randBytes(r, n+align)[align:]
				b := randBytes(r, n)
				buf := bytes.Repeat([]byte{canary}, n+2*64)
				dst := buf[64-align%8 : 64-align%8+n]
				want := make([]byte, n)
				refXOR(want, a, b)
				XOR(dst, a, b)
				if !bytes.Equal(dst, want) {
					t.Fatalf("%s: n=%d align=%d: wrong at byte %d", k, n, align, firstDiff(dst, want))
				}
				before, after := buf[:64-align%8], buf[64-align%8+n:]
				if bytes.Count(before, []byte{canary}) != len(before) || bytes.Count(after, []byte{canary}) != len(after) {
					t.Fatalf("%s: n=%d align=%d: wrote outside dst", k, n, align)
				}

				c := randBytes(r, n)
				want3 := make([]byte, n)
				refXOR3(want3, a, b, c)
				XOR3(dst, a, b, c)
				if !bytes.Equal(dst, want3) {
					t.Fatalf("%s: XOR3 n=%d align=%d: wrong at byte %d", k, n, align, firstDiff(dst, want3))
				}
				if bytes.Count(before, []byte{canary}) != len(before) || bytes.Count(after, []byte{canary}) != len(after) {
					t.Fatalf("%s: XOR3 n=%d align=%d: wrote outside dst", k, n, align)
				}
			}
		}
	})
}

func TestGenericMatchesReference(t *testing.T) {
	r := rand.New(rand.NewPCG(4, 4))
	for n := range 300 {
		a, b, c := randBytes(r, n), randBytes(r, n), randBytes(r, n)
		got, want := make([]byte, n), make([]byte, n)
		xorGeneric(got, a, b)
		refXOR(want, a, b)
		if !bytes.Equal(got, want) {
			t.Fatalf("xorGeneric n=%d wrong at byte %d", n, firstDiff(got, want))
		}
		xor3Generic(got, a, b, c)
		refXOR3(want, a, b, c)
		if !bytes.Equal(got, want) {
			t.Fatalf("xor3Generic n=%d wrong at byte %d", n, firstDiff(got, want))
		}
	}
}

func TestXORMatchesSubtle(t *testing.T) {
	// crypto/subtle is the standard library's answer; ours must agree.
	r := rand.New(rand.NewPCG(5, 5))
	for _, n := range []int{1, 31, 32, 33, 4096, 65536 + 3} {
		a, b := randBytes(r, n), randBytes(r, n)
		got, want := make([]byte, n), make([]byte, n)
		XOR(got, a, b)
		subtle.XORBytes(want, a, b)
		if !bytes.Equal(got, want) {
			t.Fatalf("n=%d: XOR (%s) differs from crypto/subtle.XORBytes at byte %d", n, Impl(), firstDiff(got, want))
		}
	}
}

func TestXORKeyFastPaths(t *testing.T) {
	r := rand.New(rand.NewPCG(6, 6))
	for range 100 {
		var a, b [64]byte
		copy(a[:], randBytes(r, 64))
		copy(b[:], randBytes(r, 64))
		want := make([]byte, 64)
		refXOR(want, a[:], b[:])

		var d16 [16]byte
		XOR16(&d16, (*[16]byte)(a[:16]), (*[16]byte)(b[:16]))
		var d32 [32]byte
		XOR32(&d32, (*[32]byte)(a[:32]), (*[32]byte)(b[:32]))
		var d64 [64]byte
		XOR64(&d64, &a, &b)
		if !bytes.Equal(d16[:], want[:16]) || !bytes.Equal(d32[:], want[:32]) || !bytes.Equal(d64[:], want) {
			t.Fatalf("fixed-size XOR differs from reference: a=%x b=%x", a, b)
		}
		// In place, as a decrypting caller does.
		XOR64(&a, &a, &b)
		if !bytes.Equal(a[:], want) {
			t.Fatal("XOR64 with dst == a differs from reference")
		}
	}
}

func TestXORPanics(t *testing.T) {
	buf := make([]byte, 100)
	cases := []struct {
		name string
		f    func()
		want string
	}{
		{"XOR short a", func() { XOR(buf[:10], buf[20:29], buf[40:50]) }, "otp.XOR: slices differ in length: len(dst)=10 len(a)=9 len(b)=10"},
		{"XOR short b", func() { XOR(buf[:10], buf[20:30], buf[40:41]) }, "len(dst)=10 len(a)=10 len(b)=1"},
		{"XOR3 long c", func() { XOR3(buf[:10], buf[20:30], buf[40:50], buf[60:71]) }, "otp.XOR3: slices differ in length: len(dst)=10 len(a)=10 len(b)=10 len(c)=11"},
		{"XOR empty dst", func() { XOR(nil, buf[:1], buf[:1]) }, "len(dst)=0 len(a)=1"},
		{"XOR dst overlaps a", func() { XOR(buf[1:11], buf[:10], buf[50:60]) }, "otp.XOR: dst partly overlaps an input"},
		{"XOR dst overlaps b", func() { XOR(buf[:10], buf[50:60], buf[9:19]) }, "otp.XOR: dst partly overlaps an input"},
		{"XOR3 dst overlaps c", func() { XOR3(buf[5:15], buf[50:60], buf[70:80], buf[:10]) }, "otp.XOR3: dst partly overlaps an input"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			msg := mustPanic(t, c.f)
			if !strings.Contains(msg, c.want) {
				t.Fatalf("panic %q does not contain %q", msg, c.want)
			}
		})
	}

	// Overlapping inputs are fine (they are only read), as are adjacent
	// slices and exact aliasing.
	XOR(buf[:10], buf[10:20], buf[15:25])
	XOR(buf[:10], buf[:10], buf[:10])
	XOR3(buf[:10], buf[:10], buf[10:20], buf[:10])
}

func mustPanic(t *testing.T, f func()) (msg string) {
	t.Helper()
	defer func() {
		r := recover()
		if r == nil {
			t.Fatal("no panic")
		}
		msg, _ = r.(string)
	}()
	f()
	return ""
}

func TestXORAllocatesNothing(t *testing.T) {
	a, b, c, d := make([]byte, 4096), make([]byte, 4096), make([]byte, 4096), make([]byte, 4096)
	var k [32]byte
	if n := testing.AllocsPerRun(100, func() {
		XOR(d, a, b)
		XOR3(d, a, b, c)
		_ = Tag(&k, d)
	}); n != 0 {
		t.Fatalf("XOR, XOR3 and Tag allocate %v times per call; want 0", n)
	}
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}
