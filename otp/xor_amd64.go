//go:build amd64 && !purego

package otp

import (
	"strings"

	"github.com/klauspost/cpuid/v2"
)

// Each kernel's CPU requirements. cpuid also checks that the operating
// system saves the YMM/ZMM and mask registers.
var kernelFeatures = [numKernels][]cpuid.FeatureID{
	kernelAVX2:   {cpuid.AVX2},
	kernelAVX512: {cpuid.AVX512F, cpuid.AVX512BW, cpuid.BMI2},
}

// unsupported says why this CPU cannot run k; empty means it can.
func unsupported(k kernel) string {
	var missing []string
	for _, f := range kernelFeatures[k] {
		if !cpuid.CPU.Supports(f) {
			missing = append(missing, f.String())
		}
	}
	if len(missing) == 0 {
		return ""
	}
	return "this CPU lacks " + strings.Join(missing, ", ")
}

//go:noescape
func xorAVX2(dst, a, b *byte, n int)

//go:noescape
func xorAVX512(dst, a, b *byte, n int)

//go:noescape
func xor3AVX2(dst, a, b, c *byte, n int)

//go:noescape
func xor3AVX512(dst, a, b, c *byte, n int)
