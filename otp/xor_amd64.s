//go:build amd64 && !purego

#include "textflag.h"

// The kernels behind XOR and XOR3. Register use, in every function:
//   DI dst, SI a, DX b, BX c (XOR3 only), CX bytes left.
// The Go wrappers have checked lengths and overlap and never pass n == 0.
// Every block is loaded in full before it is stored, so dst may be a, b or c.

// Advance the input and output pointers by n bytes (an immediate or a
// register) and count them off CX.
#define ADVANCE2(n) ADDQ n, SI; ADDQ n, DX; ADDQ n, DI; SUBQ n, CX
#define ADVANCE3(n) ADDQ n, SI; ADDQ n, DX; ADDQ n, BX; ADDQ n, DI; SUBQ n, CX

// func xorAVX2(dst, a, b *byte, n int)
TEXT ·xorAVX2(SB), NOSPLIT, $0-32
	MOVQ dst+0(FP), DI
	MOVQ a+8(FP), SI
	MOVQ b+16(FP), DX
	MOVQ n+24(FP), CX

	// Below 256 bytes alignment does not pay for itself.
	CMPQ CX, $256
	JB   blocks

	// Align dst to 32 bytes (bytes, then words), so that no store in the
	// main loop splits a cache line.
align1:
	TESTQ $7, DI
	JZ    align8
	MOVB  (SI), AX
	XORB  (DX), AX
	MOVB  AX, (DI)
	ADVANCE2($1)
	JMP   align1

align8:
	TESTQ $31, DI
	JZ    blocks
	MOVQ  (SI), AX
	XORQ  (DX), AX
	MOVQ  AX, (DI)
	ADVANCE2($8)
	JMP   align8

blocks:
	CMPQ CX, $128
	JB   tail32

	PCALIGN $32

loop128:
	VMOVDQU (SI), Y0
	VMOVDQU 32(SI), Y1
	VMOVDQU 64(SI), Y2
	VMOVDQU 96(SI), Y3
	VPXOR   (DX), Y0, Y0
	VPXOR   32(DX), Y1, Y1
	VPXOR   64(DX), Y2, Y2
	VPXOR   96(DX), Y3, Y3
	VMOVDQU Y0, (DI)
	VMOVDQU Y1, 32(DI)
	VMOVDQU Y2, 64(DI)
	VMOVDQU Y3, 96(DI)
	ADVANCE2($128)
	CMPQ    CX, $128
	JAE     loop128

tail32:
	CMPQ    CX, $32
	JB      tail8
	VMOVDQU (SI), Y0
	VPXOR   (DX), Y0, Y0
	VMOVDQU Y0, (DI)
	ADVANCE2($32)
	JMP     tail32

tail8:
	CMPQ CX, $8
	JB   tail1
	MOVQ (SI), AX
	XORQ (DX), AX
	MOVQ AX, (DI)
	ADVANCE2($8)
	JMP  tail8

tail1:
	TESTQ CX, CX
	JZ    done
	MOVB  (SI), AX
	XORB  (DX), AX
	MOVB  AX, (DI)
	ADVANCE2($1)
	JMP   tail1

done:
	VZEROUPPER
	RET

// func xor3AVX2(dst, a, b, c *byte, n int)
TEXT ·xor3AVX2(SB), NOSPLIT, $0-40
	MOVQ dst+0(FP), DI
	MOVQ a+8(FP), SI
	MOVQ b+16(FP), DX
	MOVQ c+24(FP), BX
	MOVQ n+32(FP), CX

	CMPQ CX, $256
	JB   blocks

align1:
	TESTQ $7, DI
	JZ    align8
	MOVB  (SI), AX
	XORB  (DX), AX
	XORB  (BX), AX
	MOVB  AX, (DI)
	ADVANCE3($1)
	JMP   align1

align8:
	TESTQ $31, DI
	JZ    blocks
	MOVQ  (SI), AX
	XORQ  (DX), AX
	XORQ  (BX), AX
	MOVQ  AX, (DI)
	ADVANCE3($8)
	JMP   align8

blocks:
	CMPQ CX, $128
	JB   tail32

	PCALIGN $32

loop128:
	VMOVDQU (SI), Y0
	VMOVDQU 32(SI), Y1
	VMOVDQU 64(SI), Y2
	VMOVDQU 96(SI), Y3
	VPXOR   (DX), Y0, Y0
	VPXOR   32(DX), Y1, Y1
	VPXOR   64(DX), Y2, Y2
	VPXOR   96(DX), Y3, Y3
	VPXOR   (BX), Y0, Y0
	VPXOR   32(BX), Y1, Y1
	VPXOR   64(BX), Y2, Y2
	VPXOR   96(BX), Y3, Y3
	VMOVDQU Y0, (DI)
	VMOVDQU Y1, 32(DI)
	VMOVDQU Y2, 64(DI)
	VMOVDQU Y3, 96(DI)
	ADVANCE3($128)
	CMPQ    CX, $128
	JAE     loop128

tail32:
	CMPQ    CX, $32
	JB      tail8
	VMOVDQU (SI), Y0
	VPXOR   (DX), Y0, Y0
	VPXOR   (BX), Y0, Y0
	VMOVDQU Y0, (DI)
	ADVANCE3($32)
	JMP     tail32

tail8:
	CMPQ CX, $8
	JB   tail1
	MOVQ (SI), AX
	XORQ (DX), AX
	XORQ (BX), AX
	MOVQ AX, (DI)
	ADVANCE3($8)
	JMP  tail8

tail1:
	TESTQ CX, CX
	JZ    done
	MOVB  (SI), AX
	XORB  (DX), AX
	XORB  (BX), AX
	MOVB  AX, (DI)
	ADVANCE3($1)
	JMP   tail1

done:
	VZEROUPPER
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
