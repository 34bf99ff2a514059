//go:build !amd64 || purego

package otp

// unsupported says why this build cannot run k; empty means it can.
func unsupported(k kernel) string {
	if k == kernelGeneric {
		return ""
	}
	return "this build has no assembly kernels (purego tag, or not amd64)"
}

// This build has no assembly. The kernel functions exist so that XOR and
// XOR3 compile; they are never called, because unsupported keeps the
// active kernel at kernelGeneric.

func xorAVX2(dst, a, b *byte, n int)       { panic(noAsm) }
func xorAVX512(dst, a, b *byte, n int)     { panic(noAsm) }
func xor3AVX2(dst, a, b, c *byte, n int)   { panic(noAsm) }
func xor3AVX512(dst, a, b, c *byte, n int) { panic(noAsm) }

const noAsm = "otp: assembly kernel called in a build without assembly"
