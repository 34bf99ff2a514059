package otp

import "encoding/binary"

// xorGeneric is the portable kernel: four words per iteration, then words,
// then bytes. Every word is loaded before it is stored, so dst may alias a
// or b exactly. binary.LittleEndian compiles to single unaligned loads and
// stores on the architectures that allow them.
func xorGeneric(dst, a, b []byte) {
	n := len(dst)
	a, b = a[:n], b[:n]
	i := 0
	for ; n-i >= 32; i += 32 {
		d, x, y := dst[i:i+32], a[i:i+32], b[i:i+32]
		binary.LittleEndian.PutUint64(d[0:], binary.LittleEndian.Uint64(x[0:])^binary.LittleEndian.Uint64(y[0:]))
		binary.LittleEndian.PutUint64(d[8:], binary.LittleEndian.Uint64(x[8:])^binary.LittleEndian.Uint64(y[8:]))
		binary.LittleEndian.PutUint64(d[16:], binary.LittleEndian.Uint64(x[16:])^binary.LittleEndian.Uint64(y[16:]))
		binary.LittleEndian.PutUint64(d[24:], binary.LittleEndian.Uint64(x[24:])^binary.LittleEndian.Uint64(y[24:]))
	}
	for ; n-i >= 8; i += 8 {
		binary.LittleEndian.PutUint64(dst[i:], binary.LittleEndian.Uint64(a[i:])^binary.LittleEndian.Uint64(b[i:]))
	}
	for ; i < n; i++ {
		dst[i] = a[i] ^ b[i]
	}
}

// xor3Generic is xorGeneric with a third input.
func xor3Generic(dst, a, b, c []byte) {
	n := len(dst)
	a, b, c = a[:n], b[:n], c[:n]
	i := 0
	for ; n-i >= 32; i += 32 {
		d, x, y, z := dst[i:i+32], a[i:i+32], b[i:i+32], c[i:i+32]
		binary.LittleEndian.PutUint64(d[0:], binary.LittleEndian.Uint64(x[0:])^binary.LittleEndian.Uint64(y[0:])^binary.LittleEndian.Uint64(z[0:]))
		binary.LittleEndian.PutUint64(d[8:], binary.LittleEndian.Uint64(x[8:])^binary.LittleEndian.Uint64(y[8:])^binary.LittleEndian.Uint64(z[8:]))
		binary.LittleEndian.PutUint64(d[16:], binary.LittleEndian.Uint64(x[16:])^binary.LittleEndian.Uint64(y[16:])^binary.LittleEndian.Uint64(z[16:]))
		binary.LittleEndian.PutUint64(d[24:], binary.LittleEndian.Uint64(x[24:])^binary.LittleEndian.Uint64(y[24:])^binary.LittleEndian.Uint64(z[24:]))
	}
	for ; n-i >= 8; i += 8 {
		binary.LittleEndian.PutUint64(dst[i:], binary.LittleEndian.Uint64(a[i:])^binary.LittleEndian.Uint64(b[i:])^binary.LittleEndian.Uint64(c[i:]))
	}
	for ; i < n; i++ {
		dst[i] = a[i] ^ b[i] ^ c[i]
	}
}
