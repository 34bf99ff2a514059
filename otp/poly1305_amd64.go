//go:build amd64 && !purego

package otp

import (
	"encoding/binary"
	"math/bits"

	"github.com/klauspost/cpuid/v2"
	//lint:ignore SA1019 see mac.go: Poly1305 used as the one-time authenticator it was designed as.
	"golang.org/x/crypto/poly1305"

	"github.com/qrelay/qrelay/internal/race"
)

// The vector Poly1305 (RFC 8439) behind Tag and Verify on amd64, in the
// design of OpenSSL's poly1305-x86_64 AVX2 path: the accumulator is split
// into four lanes of radix-2^26 limbs, one YMM register per limb, and each
// 64-byte chunk (four blocks) is absorbed as h = h·r^4 + m per lane. The
// lanes are then combined as h = Σ lane_i·r^(4−i) and the rest of the
// message (under 64 bytes) is absorbed one block at a time in Go, with the
// same radix-2^26 arithmetic, before the final reduction mod 2^130−5.

// macVectorMin is the shortest message given to the vector kernel. Below
// it, preparing r^2..r^4 and combining the lanes in Go (about 350 ns here)
// costs more than the vector loop saves over x/crypto's scalar code
// (measured crossover near 2 KiB on Zen 3; BenchmarkTag/1KiB and /4KiB).
const macVectorMin = 2048

// macAVX2 reports whether this CPU can run the vector kernel. Tag uses it
// only while an assembly XOR kernel is active, so that QRELAY_OTP=generic
// (and useKernel(kernelGeneric) in tests) forces the scalar MAC as well.
var macAVX2 = cpuid.CPU.Supports(cpuid.AVX2)

// sumMAC writes the Poly1305 tag of msg under key to out.
func sumMAC(out *[TagSize]byte, msg []byte, key *[MACKeySize]byte) {
	if len(msg) >= macVectorMin && active != kernelGeneric && macAVX2 {
		sumAVX2(out, msg, key)
		return
	}
	poly1305.Sum(out, msg, key)
}

// polyBlocksAVX2 absorbs n ≥ 1 chunks of 64 bytes from msg into four lanes,
// starting from zero, with r4 holding the limbs of r^4 (r4[0..4]) and five
// times limbs 1..4 (r4[5..8]), each repeated in the four 64-bit words. It
// leaves limb k of the lane at position p in h[k][p]; positions 0, 1, 2, 3
// hold the blocks whose index is 0, 2, 1, 3 mod 4. Limbs leave below
// 2^27+2^10.
//
//go:noescape
func polyBlocksAVX2(h *[5][4]uint64, r4 *[9][4]uint64, msg *byte, n int)

const mask26 = 1<<26 - 1

// limbs26 is a number mod 2^130−5 as five radix-2^26 limbs, not
// necessarily reduced. The functions on it keep every limb below 2^27+2^10
// between steps, so that products of limbs fit in uint64 with room to spare.
type limbs26 [5]uint64

// block26 splits a 16-byte block into limbs, adding hibit·2^128 (1 for a
// whole block; the padding byte is already in a partial one).
func block26(b []byte, hibit uint64) limbs26 {
	lo := binary.LittleEndian.Uint64(b[0:8])
	hi := binary.LittleEndian.Uint64(b[8:16])
	return limbs26{lo & mask26, lo >> 26 & mask26, (lo>>52 | hi<<12) & mask26, hi >> 14 & mask26, hi>>40 | hibit<<24}
}

// mul26 returns a·b mod 2^130−5, partly reduced. It works on separate
// words, not on limbs26, because the compiler keeps arrays of five words
// in memory, which costs more here than the arithmetic.
func mul26(a, b *limbs26) limbs26 {
	a0, a1, a2, a3, a4 := a[0], a[1], a[2], a[3], a[4]
	b0, b1, b2, b3, b4 := b[0], b[1], b[2], b[3], b[4]
	s1, s2, s3, s4 := b1*5, b2*5, b3*5, b4*5
	d0 := a0*b0 + a1*s4 + a2*s3 + a3*s2 + a4*s1
	d1 := a0*b1 + a1*b0 + a2*s4 + a3*s3 + a4*s2
	d2 := a0*b2 + a1*b1 + a2*b0 + a3*s4 + a4*s3
	d3 := a0*b3 + a1*b2 + a2*b1 + a3*b0 + a4*s4
	d4 := a0*b4 + a1*b3 + a2*b2 + a3*b1 + a4*b0
	return carry26(d0, d1, d2, d3, d4)
}

// carry26 propagates carries once round the limbs (2^130 ≡ 5).
func carry26(d0, d1, d2, d3, d4 uint64) limbs26 {
	d1 += d0 >> 26
	d0 &= mask26
	d2 += d1 >> 26
	d1 &= mask26
	d3 += d2 >> 26
	d2 &= mask26
	d4 += d3 >> 26
	d3 &= mask26
	d0 += d4 >> 26 * 5
	d4 &= mask26
	d1 += d0 >> 26
	d0 &= mask26
	return limbs26{d0, d1, d2, d3, d4}
}

func add26(a, b limbs26) limbs26 {
	return limbs26{a[0] + b[0], a[1] + b[1], a[2] + b[2], a[3] + b[3], a[4] + b[4]}
}

// sumAVX2 is Poly1305 with the vector kernel for whole 64-byte chunks. It
// accepts any length; Tag sends it only long messages.
func sumAVX2(out *[TagSize]byte, msg []byte, key *[MACKeySize]byte) {
	r := block26(key[:16], 0)
	// Clamp r (RFC 8439 section 2.5) in its radix-2^26 form.
	r[1] &= 0x3ffff03
	r[2] &= 0x3ffc0ff
	r[3] &= 0x3f03fff
	r[4] &= 0x00fffff

	var h limbs26
	if n := len(msg) / 64; n > 0 {
		if race.Enabled {
			race.ReadRange(msg[:n*64])
		}
		r2 := mul26(&r, &r)
		r3 := mul26(&r2, &r)
		r4 := mul26(&r2, &r2)
		var tab [9][4]uint64
		for k := range 5 {
			tab[k] = [4]uint64{r4[k], r4[k], r4[k], r4[k]}
		}
		for k := 1; k < 5; k++ {
			s := r4[k] * 5
			tab[4+k] = [4]uint64{s, s, s, s}
		}
		var lanes [5][4]uint64
		polyBlocksAVX2(&lanes, &tab, &msg[0], n)
		clear(tab[:]) // powers of the one-time key: zeroised once used
		// Blocks 0, 1, 2, 3 (mod 4) sit at positions 0, 2, 1, 3.
		var l [4]limbs26
		for p := range 4 {
			l[p] = limbs26{lanes[0][p], lanes[1][p], lanes[2][p], lanes[3][p], lanes[4][p]}
		}
		t0, t1, t2, t3 := mul26(&l[0], &r4), mul26(&l[2], &r3), mul26(&l[1], &r2), mul26(&l[3], &r)
		h = carry26(t0[0]+t1[0]+t2[0]+t3[0], t0[1]+t1[1]+t2[1]+t3[1], t0[2]+t1[2]+t2[2]+t3[2], t0[3]+t1[3]+t2[3]+t3[3], t0[4]+t1[4]+t2[4]+t3[4])
		clear(lanes[:])
		msg = msg[n*64:]
	}
	for len(msg) >= 16 {
		h = add26(h, block26(msg, 1))
		h = mul26(&h, &r)
		msg = msg[16:]
	}
	if len(msg) > 0 {
		var buf [16]byte
		copy(buf[:], msg)
		buf[len(msg)] = 1
		h = add26(h, block26(buf[:], 0))
		h = mul26(&h, &r)
	}
	finish26(out, h, key)
}

// finish26 reduces h fully mod 2^130−5 and writes (h + s) mod 2^128.
func finish26(out *[TagSize]byte, h limbs26, key *[MACKeySize]byte) {
	// Carry without wrapping: limbs 0..3 below 2^26, so the limbs pack
	// into three words without overlapping.
	h[1] += h[0] >> 26
	h[0] &= mask26
	h[2] += h[1] >> 26
	h[1] &= mask26
	h[3] += h[2] >> 26
	h[2] &= mask26
	h[4] += h[3] >> 26
	h[3] &= mask26
	w0 := h[0] | h[1]<<26 | h[2]<<52
	w1 := h[2]>>12 | h[3]<<14 | h[4]<<40
	w2 := h[4] >> 24

	// Fold the bits above 2^130: now h < 2^130 + 2^12 < 2p.
	var c uint64
	w0, c = bits.Add64(w0, (w2>>2)*5, 0)
	w1, c = bits.Add64(w1, 0, c)
	w2 = w2&3 + c

	// h − p, taken unless it borrows (constant time).
	t0, b := bits.Sub64(w0, 0xfffffffffffffffb, 0)
	t1, b := bits.Sub64(w1, 0xffffffffffffffff, b)
	_, b = bits.Sub64(w2, 3, b)
	keep := -b // all ones when h < p
	w0 = w0&keep | t0&^keep
	w1 = w1&keep | t1&^keep

	w0, c = bits.Add64(w0, binary.LittleEndian.Uint64(key[16:24]), 0)
	w1, _ = bits.Add64(w1, binary.LittleEndian.Uint64(key[24:32]), c)
	binary.LittleEndian.PutUint64(out[0:8], w0)
	binary.LittleEndian.PutUint64(out[8:16], w1)
}
