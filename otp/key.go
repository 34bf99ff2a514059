package otp

import "encoding/binary"

// The fixed-size XORs below encrypt or decrypt one key of a common size.
// They inline into the caller and compile to a few word loads, XORs and
// stores: none of XOR's length checks, overlap checks, kernel dispatch or
// call. Each word is loaded before it is stored, so dst may alias a or b.
// (An `inlining call to otp.XOR32` line in `go build -gcflags=-m` output
// confirms it; TestXORKeyInlines checks the budget.)

// XOR16 sets *dst = *a ^ *b for one 128-bit key.
func XOR16(dst, a, b *[16]byte) {
	binary.LittleEndian.PutUint64(dst[0:], binary.LittleEndian.Uint64(a[0:])^binary.LittleEndian.Uint64(b[0:]))
	binary.LittleEndian.PutUint64(dst[8:], binary.LittleEndian.Uint64(a[8:])^binary.LittleEndian.Uint64(b[8:]))
}

// XOR32 sets *dst = *a ^ *b for one 256-bit key.
func XOR32(dst, a, b *[32]byte) {
	binary.LittleEndian.PutUint64(dst[0:], binary.LittleEndian.Uint64(a[0:])^binary.LittleEndian.Uint64(b[0:]))
	binary.LittleEndian.PutUint64(dst[8:], binary.LittleEndian.Uint64(a[8:])^binary.LittleEndian.Uint64(b[8:]))
	binary.LittleEndian.PutUint64(dst[16:], binary.LittleEndian.Uint64(a[16:])^binary.LittleEndian.Uint64(b[16:]))
	binary.LittleEndian.PutUint64(dst[24:], binary.LittleEndian.Uint64(a[24:])^binary.LittleEndian.Uint64(b[24:]))
}

// XOR64 sets *dst = *a ^ *b for one 512-bit key. Written as a loop because
// eight unrolled words exceed the inlining budget.
func XOR64(dst, a, b *[64]byte) {
	for i := 0; i < len(dst); i += 8 {
		binary.LittleEndian.PutUint64(dst[i:], binary.LittleEndian.Uint64(a[i:])^binary.LittleEndian.Uint64(b[i:]))
	}
}
