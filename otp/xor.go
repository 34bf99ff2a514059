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
		panicLengths("XOR", "dst", n, "a", len(a), "b", len(b))
	}
	if n == 0 {
		return
	}
	if inexactOverlap(dst, a) || inexactOverlap(dst, b) {
		panicOverlap("XOR")
	}
	if race.Enabled {
		race.ReadRange(a)
		race.ReadRange(b)
		race.WriteRange(dst)
	}
	xorWith(active, dst, a, b)
}

// XOR3 sets dst[i] = a[i] ^ b[i] ^ c[i] for every i in one pass over
// memory. A relay node uses it to turn a frame encrypted under the ingress
// pad into one encrypted under the egress pad (out = in ^ padIn ^ padOut)
// without the plaintext key ever being stored. Lengths and aliasing follow
// XOR.
func XOR3(dst, a, b, c []byte) {
	n := len(dst)
	if len(a) != n || len(b) != n || len(c) != n {
		panicLengths("XOR3", "dst", n, "a", len(a), "b", len(b), "c", len(c))
	}
	if n == 0 {
		return
	}
	if inexactOverlap(dst, a) || inexactOverlap(dst, b) || inexactOverlap(dst, c) {
		panicOverlap("XOR3")
	}
	if race.Enabled {
		race.ReadRange(a)
		race.ReadRange(b)
		race.ReadRange(c)
		race.WriteRange(dst)
	}
	xor3With(active, dst, a, b, c)
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

// panicLengths and panicOverlap are kept out of line so that the checks in
// XOR and XOR3 stay a few instructions long.
//
//go:noinline
func panicLengths(fn string, namesAndLengths ...any) {
	msg := "otp." + fn + ": slices differ in length:"
	for i := 0; i+1 < len(namesAndLengths); i += 2 {
		msg += fmt.Sprintf(" len(%s)=%d", namesAndLengths[i], namesAndLengths[i+1])
	}
	panic(msg + "; they must all be equal")
}

//go:noinline
func panicOverlap(fn string) {
	panic("otp." + fn + ": dst partly overlaps an input; pass the same slice (exact aliasing) or disjoint memory")
}
