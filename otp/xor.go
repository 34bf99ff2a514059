package otp

import (
	"fmt"
	"unsafe"

	"github.com/qrelay/qrelay/internal/race"
)

// XOR sets dst[i] = a[i] ^ b[i] for every i: it encrypts or decrypts a run
// of keys with a run of pad. All three slices must have the same length, or
// XOR panics with a message naming the lengths. dst may be a or b (exact
// aliasing); any other overlap of dst with an input panics.
func XOR(dst, a, b []byte) {
	n := len(dst)
	if len(a) != n || len(b) != n {
		panicLengths("XOR", n, len(a), len(b), -1)
		return // not reached; lets the compiler keep the arguments in registers
	}
	if n == 0 {
		return
	}
	if inexactOverlap(dst, a) || inexactOverlap(dst, b) {
		panicOverlap("XOR")
		return // not reached; lets the compiler keep the arguments in registers
	}
	if race.Enabled {
		race.ReadRange(a)
		race.ReadRange(b)
		race.WriteRange(dst)
	}
	// The kernel is called from here, not through a helper: on small inputs
	// every call level shows.
	switch active {
	case kernelAVX512:
		xorAVX512(&dst[0], &a[0], &b[0], n)
	case kernelAVX2:
		xorAVX2(&dst[0], &a[0], &b[0], n)
	default:
		xorGeneric(dst, a, b)
	}
}

// XOR3 sets dst[i] = a[i] ^ b[i] ^ c[i] for every i in one pass over
// memory. A relay node uses it to turn a frame encrypted under the ingress
// pad into one encrypted under the egress pad (out = in ^ padIn ^ padOut)
// without the plaintext key ever being stored. Lengths and aliasing follow
// XOR.
func XOR3(dst, a, b, c []byte) {
	n := len(dst)
	if len(a) != n || len(b) != n || len(c) != n {
		panicLengths("XOR3", n, len(a), len(b), len(c))
		return // not reached; lets the compiler keep the arguments in registers
	}
	if n == 0 {
		return
	}
	if inexactOverlap(dst, a) || inexactOverlap(dst, b) || inexactOverlap(dst, c) {
		panicOverlap("XOR3")
		return // not reached; lets the compiler keep the arguments in registers
	}
	if race.Enabled {
		race.ReadRange(a)
		race.ReadRange(b)
		race.ReadRange(c)
		race.WriteRange(dst)
	}
	switch active {
	case kernelAVX512:
		xor3AVX512(&dst[0], &a[0], &b[0], &c[0], n)
	case kernelAVX2:
		xor3AVX2(&dst[0], &a[0], &b[0], &c[0], n)
	default:
		xor3Generic(dst, a, b, c)
	}
}

// inexactOverlap reports whether x and y share memory without starting at
// the same address. Both must be non-empty.
func inexactOverlap(x, y []byte) bool {
	px, py := uintptr(unsafe.Pointer(&x[0])), uintptr(unsafe.Pointer(&y[0]))
	if px == py {
		return false
	}
	return px < py+uintptr(len(y)) && py < px+uintptr(len(x))
}

// panicLengths and panicOverlap are kept out of line, with plain arguments,
// so that XOR and XOR3 need no stack frame for the message. c < 0 means
// there is no c (XOR).
//
//go:noinline
func panicLengths(fn string, dst, a, b, c int) {
	msg := fmt.Sprintf("otp.%s: slices differ in length: len(dst)=%d len(a)=%d len(b)=%d", fn, dst, a, b)
	if c >= 0 {
		msg += fmt.Sprintf(" len(c)=%d", c)
	}
	panic(msg + "; they must all be equal")
}

//go:noinline
func panicOverlap(fn string) {
	panic("otp." + fn + ": dst partly overlaps an input; pass the same slice (exact aliasing) or disjoint memory")
}
