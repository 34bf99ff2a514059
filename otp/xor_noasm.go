//go:build !amd64 || purego

package otp

// unsupported says why this build cannot run k; empty means it can.
func unsupported(k kernel) string {
	if k == kernelGeneric {
		return ""
	}
	return "this build has no assembly kernels (purego tag, or not amd64)"
}

func xorWith(_ kernel, dst, a, b []byte) { xorGeneric(dst, a, b) }

func xor3With(_ kernel, dst, a, b, c []byte) { xor3Generic(dst, a, b, c) }
