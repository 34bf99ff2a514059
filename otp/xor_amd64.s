//go:build amd64 && !purego

#include "textflag.h"

// The kernels behind XOR and XOR3. Register use, in every function:
//   DI dst, SI a, DX b, BX c (XOR3 only), CX bytes (left).
// The Go wrappers have checked lengths and overlap and never pass n == 0.
// Every byte is loaded before it is stored, and a byte stored twice (where
// blocks overlap) gets the same value both times, so dst may be a, b or c.

// Advance the input and output pointers by n bytes (an immediate or a
// register) and count them off CX (AVX-512 kernels).
#define ADVANCE2(n) ADDQ n, SI; ADDQ n, DX; ADDQ n, DI; SUBQ n, CX
#define ADVANCE3(n) ADDQ n, SI; ADDQ n, DX; ADDQ n, BX; ADDQ n, DI; SUBQ n, CX

// func xorAVX2(dst, a, b *byte, n int)
TEXT ·xorAVX2(SB), NOSPLIT, $0-32
	MOVQ dst+0(FP), DI
	MOVQ a+8(FP), SI
	MOVQ b+16(FP), DX
	MOVQ n+24(FP), CX
	CMPQ CX, $32
	JB   short

	// The first and the last 32 bytes, computed before anything is stored;
	// they are stored last, so they may overlap the blocks in between.
	VMOVDQU (SI), Y8
	VPXOR   (DX), Y8, Y8
	VMOVDQU -32(SI)(CX*1), Y9
	VPXOR   -32(DX)(CX*1), Y9, Y9

	// R8 = offset of dst's first 32-byte boundary after dst[0], in [1, 32].
	// Whole blocks run from there while they fit: 128 bytes at a time, then
	// 32; the last-32-bytes block covers what is left.
	MOVQ DI, R8
	ANDQ $31, R8
	NEGQ R8
	ADDQ $32, R8
	LEAQ -128(CX), R9
	CMPQ R8, R9
	JGT  blocks32

	PCALIGN $32

loop128:
	VMOVDQU 0(SI)(R8*1), Y0
	VMOVDQU 32(SI)(R8*1), Y1
	VMOVDQU 64(SI)(R8*1), Y2
	VMOVDQU 96(SI)(R8*1), Y3
	VPXOR   0(DX)(R8*1), Y0, Y0
	VPXOR   32(DX)(R8*1), Y1, Y1
	VPXOR   64(DX)(R8*1), Y2, Y2
	VPXOR   96(DX)(R8*1), Y3, Y3
	VMOVDQU Y0, 0(DI)(R8*1)
	VMOVDQU Y1, 32(DI)(R8*1)
	VMOVDQU Y2, 64(DI)(R8*1)
	VMOVDQU Y3, 96(DI)(R8*1)
	ADDQ    $128, R8
	CMPQ    R8, R9
	JLE     loop128

blocks32:
	LEAQ -32(CX), R9
	CMPQ R8, R9
	JGT  ends

loop32:
	VMOVDQU (SI)(R8*1), Y0
	VPXOR   (DX)(R8*1), Y0, Y0
	VMOVDQU Y0, (DI)(R8*1)
	ADDQ    $32, R8
	CMPQ    R8, R9
	JLE     loop32

ends:
	VMOVDQU Y8, (DI)
	VMOVDQU Y9, -32(DI)(CX*1)
	VZEROUPPER
	RET

	// Below 32 bytes: two overlapping loads of the widest size that fits,
	// both loaded before either is stored.
short:
	CMPQ CX, $16
	JB   short8
	VMOVDQU (SI), X0
	VPXOR   (DX), X0, X0
	VMOVDQU -16(SI)(CX*1), X1
	VPXOR   -16(DX)(CX*1), X1, X1
	VMOVDQU X0, (DI)
	VMOVDQU X1, -16(DI)(CX*1)
	VZEROUPPER
	RET

short8:
	CMPQ CX, $8
	JB   short4
	MOVQ (SI), AX
	XORQ (DX), AX
	MOVQ -8(SI)(CX*1), R8
	XORQ -8(DX)(CX*1), R8
	MOVQ AX, (DI)
	MOVQ R8, -8(DI)(CX*1)
	RET

short4:
	CMPQ CX, $4
	JB   short1
	MOVL (SI), AX
	XORL (DX), AX
	MOVL -4(SI)(CX*1), R8
	XORL -4(DX)(CX*1), R8
	MOVL AX, (DI)
	MOVL R8, -4(DI)(CX*1)
	RET

	// 1 to 3 bytes: bytes 0, n/2 and n-1 cover them all.
short1:
	MOVQ CX, R9
	SHRQ $1, R9
	MOVB (SI), AX
	XORB (DX), AX
	MOVB (SI)(R9*1), R10
	XORB (DX)(R9*1), R10
	MOVB -1(SI)(CX*1), R8
	XORB -1(DX)(CX*1), R8
	MOVB AX, (DI)
	MOVB R10, (DI)(R9*1)
	MOVB R8, -1(DI)(CX*1)
	RET


// func xor3AVX2(dst, a, b, c *byte, n int)
TEXT ·xor3AVX2(SB), NOSPLIT, $0-40
	MOVQ dst+0(FP), DI
	MOVQ a+8(FP), SI
	MOVQ b+16(FP), DX
	MOVQ c+24(FP), BX
	MOVQ n+32(FP), CX
	CMPQ CX, $32
	JB   short

	// The first and the last 32 bytes, computed before anything is stored;
	// they are stored last, so they may overlap the blocks in between.
	VMOVDQU (SI), Y8
	VPXOR   (DX), Y8, Y8
	VPXOR   (BX), Y8, Y8
	VMOVDQU -32(SI)(CX*1), Y9
	VPXOR   -32(DX)(CX*1), Y9, Y9
	VPXOR   -32(BX)(CX*1), Y9, Y9

	// R8 = offset of dst's first 32-byte boundary after dst[0], in [1, 32].
	// Whole blocks run from there while they fit: 128 bytes at a time, then
	// 32; the last-32-bytes block covers what is left.
	MOVQ DI, R8
	ANDQ $31, R8
	NEGQ R8
	ADDQ $32, R8
	LEAQ -128(CX), R9
	CMPQ R8, R9
	JGT  blocks32

	PCALIGN $32

loop128:
	VMOVDQU 0(SI)(R8*1), Y0
	VMOVDQU 32(SI)(R8*1), Y1
	VMOVDQU 64(SI)(R8*1), Y2
	VMOVDQU 96(SI)(R8*1), Y3
	VPXOR   0(DX)(R8*1), Y0, Y0
	VPXOR   32(DX)(R8*1), Y1, Y1
	VPXOR   64(DX)(R8*1), Y2, Y2
	VPXOR   96(DX)(R8*1), Y3, Y3
	VPXOR   0(BX)(R8*1), Y0, Y0
	VPXOR   32(BX)(R8*1), Y1, Y1
	VPXOR   64(BX)(R8*1), Y2, Y2
	VPXOR   96(BX)(R8*1), Y3, Y3
	VMOVDQU Y0, 0(DI)(R8*1)
	VMOVDQU Y1, 32(DI)(R8*1)
	VMOVDQU Y2, 64(DI)(R8*1)
	VMOVDQU Y3, 96(DI)(R8*1)
	ADDQ    $128, R8
	CMPQ    R8, R9
	JLE     loop128

blocks32:
	LEAQ -32(CX), R9
	CMPQ R8, R9
	JGT  ends

loop32:
	VMOVDQU (SI)(R8*1), Y0
	VPXOR   (DX)(R8*1), Y0, Y0
	VPXOR   (BX)(R8*1), Y0, Y0
	VMOVDQU Y0, (DI)(R8*1)
	ADDQ    $32, R8
	CMPQ    R8, R9
	JLE     loop32

ends:
	VMOVDQU Y8, (DI)
	VMOVDQU Y9, -32(DI)(CX*1)
	VZEROUPPER
	RET

	// Below 32 bytes: two overlapping loads of the widest size that fits,
	// both loaded before either is stored.
short:
	CMPQ CX, $16
	JB   short8
	VMOVDQU (SI), X0
	VPXOR   (DX), X0, X0
	VPXOR   (BX), X0, X0
	VMOVDQU -16(SI)(CX*1), X1
	VPXOR   -16(DX)(CX*1), X1, X1
	VPXOR   -16(BX)(CX*1), X1, X1
	VMOVDQU X0, (DI)
	VMOVDQU X1, -16(DI)(CX*1)
	VZEROUPPER
	RET

short8:
	CMPQ CX, $8
	JB   short4
	MOVQ (SI), AX
	XORQ (DX), AX
	XORQ (BX), AX
	MOVQ -8(SI)(CX*1), R8
	XORQ -8(DX)(CX*1), R8
	XORQ -8(BX)(CX*1), R8
	MOVQ AX, (DI)
	MOVQ R8, -8(DI)(CX*1)
	RET

short4:
	CMPQ CX, $4
	JB   short1
	MOVL (SI), AX
	XORL (DX), AX
	XORL (BX), AX
	MOVL -4(SI)(CX*1), R8
	XORL -4(DX)(CX*1), R8
	XORL -4(BX)(CX*1), R8
	MOVL AX, (DI)
	MOVL R8, -4(DI)(CX*1)
	RET

	// 1 to 3 bytes: bytes 0, n/2 and n-1 cover them all.
short1:
	MOVQ CX, R9
	SHRQ $1, R9
	MOVB (SI), AX
	XORB (DX), AX
	XORB (BX), AX
	MOVB (SI)(R9*1), R10
	XORB (DX)(R9*1), R10
	XORB (BX)(R9*1), R10
	MOVB -1(SI)(CX*1), R8
	XORB -1(DX)(CX*1), R8
	XORB -1(BX)(CX*1), R8
	MOVB AX, (DI)
	MOVB R10, (DI)(R9*1)
	MOVB R8, -1(DI)(CX*1)
	RET


// The AVX-512 kernels need no scalar loops: a byte-masked load, XOR and
// store (AVX512BW) covers the unaligned head up to dst's next 64-byte
// boundary and the tail below 64 bytes, with the mask built by BZHI (BMI2).
// Masked-off bytes are neither read nor written, so a slice that ends at the
// edge of a mapping never faults.

// func xorAVX512(dst, a, b *byte, n int)
TEXT ·xorAVX512(SB), NOSPLIT, $0-32
	MOVQ dst+0(FP), DI
	MOVQ a+8(FP), SI
	MOVQ b+16(FP), DX
	MOVQ n+24(FP), CX
	MOVQ $-1, R8

	// Head: AX = min(n, bytes to dst's next 64-byte boundary).
	MOVQ    DI, AX
	NEGQ    AX
	ANDQ    $63, AX
	JZ      blocks
	CMPQ    AX, CX
	CMOVQHI CX, AX
	BZHIQ   AX, R8, R9
	KMOVQ   R9, K1
	VMOVDQU8.Z (SI), K1, Z0
	VMOVDQU8.Z (DX), K1, Z1
	VPXORQ  Z1, Z0, Z0
	VMOVDQU8 Z0, K1, (DI)
	ADVANCE2(AX)

blocks:
	CMPQ CX, $256
	JB   tail64

	PCALIGN $32

loop256:
	VMOVDQU64 (SI), Z0
	VMOVDQU64 64(SI), Z1
	VMOVDQU64 128(SI), Z2
	VMOVDQU64 192(SI), Z3
	VPXORQ    (DX), Z0, Z0
	VPXORQ    64(DX), Z1, Z1
	VPXORQ    128(DX), Z2, Z2
	VPXORQ    192(DX), Z3, Z3
	VMOVDQU64 Z0, (DI)
	VMOVDQU64 Z1, 64(DI)
	VMOVDQU64 Z2, 128(DI)
	VMOVDQU64 Z3, 192(DI)
	ADVANCE2($256)
	CMPQ      CX, $256
	JAE       loop256

tail64:
	CMPQ      CX, $64
	JB        tail
	VMOVDQU64 (SI), Z0
	VPXORQ    (DX), Z0, Z0
	VMOVDQU64 Z0, (DI)
	ADVANCE2($64)
	JMP       tail64

tail:
	TESTQ CX, CX
	JZ    done
	BZHIQ CX, R8, R9
	KMOVQ R9, K1
	VMOVDQU8.Z (SI), K1, Z0
	VMOVDQU8.Z (DX), K1, Z1
	VPXORQ  Z1, Z0, Z0
	VMOVDQU8 Z0, K1, (DI)

done:
	VZEROUPPER
	RET

// func xor3AVX512(dst, a, b, c *byte, n int)
TEXT ·xor3AVX512(SB), NOSPLIT, $0-40
	MOVQ dst+0(FP), DI
	MOVQ a+8(FP), SI
	MOVQ b+16(FP), DX
	MOVQ c+24(FP), BX
	MOVQ n+32(FP), CX
	MOVQ $-1, R8

	MOVQ    DI, AX
	NEGQ    AX
	ANDQ    $63, AX
	JZ      blocks
	CMPQ    AX, CX
	CMOVQHI CX, AX
	BZHIQ   AX, R8, R9
	KMOVQ   R9, K1
	VMOVDQU8.Z (SI), K1, Z0
	VMOVDQU8.Z (DX), K1, Z1
	VMOVDQU8.Z (BX), K1, Z2
	VPTERNLOGD $0x96, Z2, Z1, Z0
	VMOVDQU8 Z0, K1, (DI)
	ADVANCE3(AX)

blocks:
	CMPQ CX, $256
	JB   tail64

	PCALIGN $32

loop256:
	// 0x96 is the truth table of a ^ b ^ c: one instruction for two XORs.
	VMOVDQU64  (SI), Z0
	VMOVDQU64  64(SI), Z1
	VMOVDQU64  128(SI), Z2
	VMOVDQU64  192(SI), Z3
	VMOVDQU64  (DX), Z4
	VMOVDQU64  64(DX), Z5
	VMOVDQU64  128(DX), Z6
	VMOVDQU64  192(DX), Z7
	VPTERNLOGD $0x96, (BX), Z4, Z0
	VPTERNLOGD $0x96, 64(BX), Z5, Z1
	VPTERNLOGD $0x96, 128(BX), Z6, Z2
	VPTERNLOGD $0x96, 192(BX), Z7, Z3
	VMOVDQU64  Z0, (DI)
	VMOVDQU64  Z1, 64(DI)
	VMOVDQU64  Z2, 128(DI)
	VMOVDQU64  Z3, 192(DI)
	ADVANCE3($256)
	CMPQ       CX, $256
	JAE        loop256

tail64:
	CMPQ       CX, $64
	JB         tail
	VMOVDQU64  (SI), Z0
	VMOVDQU64  (DX), Z4
	VPTERNLOGD $0x96, (BX), Z4, Z0
	VMOVDQU64  Z0, (DI)
	ADVANCE3($64)
	JMP        tail64

tail:
	TESTQ CX, CX
	JZ    done
	BZHIQ CX, R8, R9
	KMOVQ R9, K1
	VMOVDQU8.Z (SI), K1, Z0
	VMOVDQU8.Z (DX), K1, Z1
	VMOVDQU8.Z (BX), K1, Z2
	VPTERNLOGD $0x96, Z2, Z1, Z0
	VMOVDQU8 Z0, K1, (DI)

done:
	VZEROUPPER
	RET
