package otp

import (
	"fmt"
	"os"
	"strings"
)

// EnvKernel is the environment variable that forces a kernel by name.
const EnvKernel = "QRELAY_OTP"

// kernel identifies one implementation of XOR and XOR3.
type kernel uint8

const (
	kernelGeneric kernel = iota
	kernelAVX2
	kernelAVX512
	numKernels
)

var kernelNames = [numKernels]string{
	kernelGeneric: "generic",
	kernelAVX2:    "avx2",
	kernelAVX512:  "avx512",
}

func (k kernel) String() string {
	if k < numKernels {
		return kernelNames[k]
	}
	return fmt.Sprintf("kernel(%d)", uint8(k))
}

// active is the kernel XOR and XOR3 run. It is set once, when the package is
// initialised, and changed afterwards only by tests that run the suite once
// per kernel.
var active = mustChooseKernel(os.Getenv(EnvKernel))

// Impl names the kernel in use: "avx512", "avx2" or "generic".
func Impl() string { return active.String() }

// supportedKernels lists, best first, the kernels this CPU and build can run.
func supportedKernels() []kernel {
	var ks []kernel
	for k := numKernels - 1; k < numKernels; k-- {
		if unsupported(k) == "" {
			ks = append(ks, k)
		}
	}
	return ks
}

// chooseKernel returns the kernel named by forced, or the best one the CPU
// supports when forced is empty.
func chooseKernel(forced string) (kernel, error) {
	if forced == "" {
		return supportedKernels()[0], nil
	}
	var names []string
	for _, k := range supportedKernels() {
		names = append(names, k.String())
	}
	for k := range numKernels {
		if kernelNames[k] != forced {
			continue
		}
		if why := unsupported(k); why != "" {
			return 0, fmt.Errorf("otp: %s=%s forces the %s kernel, but %s; unset %s or set it to one of: %s",
				EnvKernel, forced, forced, why, EnvKernel, strings.Join(names, ", "))
		}
		return k, nil
	}
	return 0, fmt.Errorf("otp: %s=%q names no kernel; unset it or set it to one of: %s",
		EnvKernel, forced, strings.Join(names, ", "))
}

func mustChooseKernel(forced string) kernel {
	k, err := chooseKernel(forced)
	if err != nil {
		// A forced kernel exists to make a test or a benchmark measure that
		// kernel; silently running another would make the figures lie.
		panic(err)
	}
	return k
}
