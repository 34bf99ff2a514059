//go:build amd64 && !purego

#include "textflag.h"

// The vector Poly1305 kernel behind sumAVX2 (see poly1305_amd64.go). Four
// lanes, each a number mod 2^130−5 in radix-2^26 limbs, one limb per YMM
// register: Y0..Y4 the accumulator h, Y5..Y9 the product d = h·r^4.
// Y13 holds 2^26−1 and Y14 2^24 (the 2^128 bit of a whole block, in limb
// 4) in every 64-bit word; Y10, Y11, Y12 and Y15 are scratch.
// Registers: DI lanes out, BX the r^4 table, SI msg, CX chunks left.

// Offsets in the r^4 table: limbs 0..4, then five times limbs 1..4, each
// 32 bytes (the value in all four words).
#define R0 0(BX)
#define R1 32(BX)
#define R2 64(BX)
#define R3 96(BX)
#define R4 128(BX)
#define S1 160(BX)
#define S2 192(BX)
#define S3 224(BX)
#define S4 256(BX)

// Split the four 16-byte blocks at SI into limbs in Y0..Y4. Unpacking the
// two halves of each 32-byte load puts the blocks at positions 0, 2, 1, 3:
// Y10 gets their low 64 bits, Y11 their high 64 bits.
#define LOADMSG \
	VMOVDQU     (SI), Y15;       \
	VPUNPCKLQDQ 32(SI), Y15, Y10; \
	VPUNPCKHQDQ 32(SI), Y15, Y11; \
	VPAND       Y13, Y10, Y0;    \
	VPSRLQ      $26, Y10, Y1;    \
	VPAND       Y13, Y1, Y1;     \
	VPSRLQ      $52, Y10, Y2;    \
	VPSLLQ      $12, Y11, Y15;   \
	VPOR        Y15, Y2, Y2;     \
	VPAND       Y13, Y2, Y2;     \
	VPSRLQ      $14, Y11, Y3;    \
	VPAND       Y13, Y3, Y3;     \
	VPSRLQ      $40, Y11, Y4;    \
	VPOR        Y14, Y4, Y4

// Carry from limb a into limb b of d, with t scratch.
#define CARRY(a, b, t) \
	VPSRLQ $26, a, t; \
	VPAND  Y13, a, a; \
	VPADDQ t, b, b

// func polyBlocksAVX2(h *[5][4]uint64, r4 *[9][4]uint64, msg *byte, n int)
TEXT ·polyBlocksAVX2(SB), NOSPLIT, $0-32
	MOVQ h+0(FP), DI
	MOVQ r4+8(FP), BX
	MOVQ msg+16(FP), SI
	MOVQ n+24(FP), CX

	VPCMPEQD Y13, Y13, Y13
	VPSRLQ   $63, Y13, Y14
	VPSLLQ   $24, Y14, Y14
	VPSRLQ   $38, Y13, Y13

	// h starts at zero, so the first chunk is just loaded: h = m.
	LOADMSG
	ADDQ $64, SI
	DECQ CX
	JZ   done

	PCALIGN $32

loop:
	// d = h·r^4, schoolbook, with 2^130 ≡ 5 folded into S1..S4.
	VPMULUDQ R0, Y0, Y5
	VPMULUDQ R1, Y0, Y6
	VPMULUDQ R2, Y0, Y7
	VPMULUDQ R3, Y0, Y8
	VPMULUDQ R4, Y0, Y9

	VPMULUDQ S4, Y1, Y12
	VPADDQ   Y12, Y5, Y5
	VPMULUDQ R0, Y1, Y12
	VPADDQ   Y12, Y6, Y6
	VPMULUDQ R1, Y1, Y12
	VPADDQ   Y12, Y7, Y7
	VPMULUDQ R2, Y1, Y12
	VPADDQ   Y12, Y8, Y8
	VPMULUDQ R3, Y1, Y12
	VPADDQ   Y12, Y9, Y9

	VPMULUDQ S3, Y2, Y10
	VPADDQ   Y10, Y5, Y5
	VPMULUDQ S4, Y2, Y10
	VPADDQ   Y10, Y6, Y6
	VPMULUDQ R0, Y2, Y10
	VPADDQ   Y10, Y7, Y7
	VPMULUDQ R1, Y2, Y10
	VPADDQ   Y10, Y8, Y8
	VPMULUDQ R2, Y2, Y10
	VPADDQ   Y10, Y9, Y9

	VPMULUDQ S2, Y3, Y11
	VPADDQ   Y11, Y5, Y5
	VPMULUDQ S3, Y3, Y11
	VPADDQ   Y11, Y6, Y6
	VPMULUDQ S4, Y3, Y11
	VPADDQ   Y11, Y7, Y7
	VPMULUDQ R0, Y3, Y11
	VPADDQ   Y11, Y8, Y8
	VPMULUDQ R1, Y3, Y11
	VPADDQ   Y11, Y9, Y9

	VPMULUDQ S1, Y4, Y12
	VPADDQ   Y12, Y5, Y5
	VPMULUDQ S2, Y4, Y12
	VPADDQ   Y12, Y6, Y6
	VPMULUDQ S3, Y4, Y12
	VPADDQ   Y12, Y7, Y7
	VPMULUDQ S4, Y4, Y12
	VPADDQ   Y12, Y8, Y8
	VPMULUDQ R0, Y4, Y12
	VPADDQ   Y12, Y9, Y9

	// Partial reduction, two carry chains interleaved (as OpenSSL does);
	// every limb ends below 2^26+2^9.
	CARRY(Y8, Y9, Y12)
	CARRY(Y5, Y6, Y10)
	VPSRLQ $26, Y9, Y12
	VPAND  Y13, Y9, Y9
	VPSLLQ $2, Y12, Y15
	VPADDQ Y15, Y12, Y12
	VPADDQ Y12, Y5, Y5
	CARRY(Y6, Y7, Y10)
	CARRY(Y7, Y8, Y11)
	CARRY(Y5, Y6, Y12)
	CARRY(Y8, Y9, Y10)

	// h = d + m.
	LOADMSG
	VPADDQ Y5, Y0, Y0
	VPADDQ Y6, Y1, Y1
	VPADDQ Y7, Y2, Y2
	VPADDQ Y8, Y3, Y3
	VPADDQ Y9, Y4, Y4

	ADDQ $64, SI
	DECQ CX
	JNZ  loop

done:
	VMOVDQU Y0, 0(DI)
	VMOVDQU Y1, 32(DI)
	VMOVDQU Y2, 64(DI)
	VMOVDQU Y3, 96(DI)
	VMOVDQU Y4, 128(DI)
	VZEROUPPER
	RET
