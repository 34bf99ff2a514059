package otp

import (
	"bytes"
	"math/rand/v2"
	"testing"

	//lint:ignore SA1019 see mac.go: the reference the MAC kernels are checked against.
	"golang.org/x/crypto/poly1305"
)

// macRef is x/crypto's Poly1305, the reference for every MAC kernel.
func macRef(key *[MACKeySize]byte, msg []byte) [TagSize]byte {
	var tag [TagSize]byte
	poly1305.Sum(&tag, msg, key)
	return tag
}

// macImpls lists what to check against macRef: Tag under each supported
// XOR kernel (which also picks the MAC), and the vector kernel called
// directly on every length, short ones included.
func macImpls() map[string]func(key *[MACKeySize]byte, msg []byte) [TagSize]byte {
	impls := map[string]func(key *[MACKeySize]byte, msg []byte) [TagSize]byte{}
	for _, k := range supportedKernels() {
		impls["Tag/"+k.String()] = func(key *[MACKeySize]byte, msg []byte) [TagSize]byte {
			defer useKernel(k)()
			return Tag(key, msg)
		}
	}
	if vectorMAC != nil {
		impls["vector"] = vectorMAC
	}
	return impls
}

// macKeys are the edge keys: all zero, r all ones after clamping, s all
// ones, and both.
func macKeys() [][MACKeySize]byte {
	var zero, rOnes, sOnes, allOnes [MACKeySize]byte
	for i := range 16 {
		rOnes[i], sOnes[16+i] = 0xff, 0xff
	}
	for i := range allOnes {
		allOnes[i] = 0xff
	}
	return [][MACKeySize]byte{zero, rOnes, sOnes, allOnes}
}

// macLengths is every length up to 1100, then lengths within 3 of each
// multiple of 64 up to 70 KiB and a few beyond the frame size.
func macLengths() []int {
	var ns []int
	for n := 0; n <= 1100; n++ {
		ns = append(ns, n)
	}
	for m := 1152; m <= 70<<10; m += 64 * 17 {
		for d := -3; d <= 3; d++ {
			ns = append(ns, m+d)
		}
	}
	return append(ns, 64<<10-16, 64<<10, 64<<10+15, 70<<10)
}

func TestTagMatchesReference(t *testing.T) {
	impls := macImpls()
	rng := rand.New(rand.NewPCG(1, 2))
	const maxLen = 70<<10 + 64
	buf := make([]byte, maxLen+64)
	ones := bytes.Repeat([]byte{0xff}, maxLen+64)
	keys := macKeys()
	cases := 0
	check := func(key *[MACKeySize]byte, msg []byte, what string) {
		t.Helper()
		want := macRef(key, msg)
		for name, f := range impls {
			if got := f(key, msg); got != want {
				t.Fatalf("%s: %s, len %d, key %x: tag %x, want %x", name, what, len(msg), key[:], got, want)
			}
		}
		cases++
	}
	for i, n := range macLengths() {
		var key [MACKeySize]byte
		for j := range key {
			key[j] = byte(rng.Uint32())
		}
		off := rng.IntN(64)
		msg := buf[off : off+n]
		for j := range msg {
			msg[j] = byte(rng.Uint32())
		}
		check(&key, msg, "random")
		// The extreme keys, on all-0xff messages (long carry chains) and
		// on the random message, on a share of the lengths.
		if i%5 == 0 || n <= 300 {
			for _, k := range keys {
				check(&k, ones[off:off+n], "all-0xff message")
				check(&k, msg, "random message, extreme key")
			}
		}
	}
	if cases < 2000 {
		t.Fatalf("only %d cases", cases)
	}
	t.Logf("%d cases", cases)
}

// TestTagKernelSelection checks that forcing the generic kernel also
// forces the scalar MAC, and that the best kernel uses the vector MAC where
// there is one.
func TestTagKernelSelection(t *testing.T) {
	if vectorMAC == nil || !vectorMACSupported() {
		t.Skip("no vector MAC in this build or on this CPU")
	}
	defer useKernel(kernelGeneric)()
	if usesVectorMAC(1 << 16) {
		t.Fatal("generic kernel forced, but Tag uses the vector MAC")
	}
	useKernel(supportedKernels()[0])
	if !usesVectorMAC(1 << 16) {
		t.Fatal("best kernel active, but Tag does not use the vector MAC on 64 KiB")
	}
	if usesVectorMAC(macVectorMinLen() - 1) {
		t.Fatal("Tag uses the vector MAC on a short message")
	}
}

// FuzzTag checks every MAC implementation against x/crypto on arbitrary
// keys, messages and offsets. The committed corpus in
// testdata/fuzz/FuzzTag holds the chunk edges of the vector kernel.
func FuzzTag(f *testing.F) {
	for _, n := range []int{0, 1, 15, 16, 17, 63, 64, 65, 255, 256, 257, 319, 320, 321, 1000, 4096 + 13} {
		f.Add(bytes.Repeat([]byte{0xff}, 32), bytes.Repeat([]byte{0xff}, n), uint8(n%64))
		f.Add(bytes.Repeat([]byte{0x5a, 0x01, 0xc3}, 11), bytes.Repeat([]byte{0x80, 0x7f, 0x00, 0xff, 0x13}, n/5+1)[:n], uint8(n%7))
	}
	impls := macImpls()
	f.Fuzz(func(t *testing.T, keyBytes, data []byte, off uint8) {
		var key [MACKeySize]byte
		copy(key[:], keyBytes)
		msg := append(make([]byte, int(off%64)), data...)[off%64:]
		want := macRef(&key, msg)
		for name, f := range impls {
			if got := f(&key, msg); got != want {
				t.Fatalf("%s: len %d off %d key %x: tag %x, want %x", name, len(msg), off%64, key[:], got, want)
			}
		}
	})
}
