package otp

import (
	"fmt"
	"testing"
)

// forEachKernel runs f once per kernel this CPU supports, with XOR and XOR3
// switched to that kernel, so the whole suite exercises avx512, avx2 and
// generic wherever the hardware has them. Kernels the CPU lacks are
// reported as skipped subtests with the reason, so a run on a machine
// without AVX-512 says so instead of passing silently.
func forEachKernel(t *testing.T, f func(t *testing.T, k kernel)) {
	t.Helper()
	for k := range numKernels {
		t.Run(k.String(), func(t *testing.T) {
			if why := unsupported(k); why != "" {
				t.Skipf("%s kernel not run: %s", k, why)
			}
			defer useKernel(k)()
			f(t, k)
		})
	}
}

// useKernel makes XOR and XOR3 run k and returns a func that restores the
// previous kernel. Tests that use it must not run in parallel.
func useKernel(k kernel) (restore func()) {
	if why := unsupported(k); why != "" {
		panic(fmt.Sprintf("useKernel(%s): %s", k, why))
	}
	prev := active
	active = k
	return func() { active = prev }
}
