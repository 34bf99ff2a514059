package otp

import (
	"math/rand/v2"
	"runtime/debug"
	"syscall"
	"testing"
)

// guardedRegion maps n bytes of read-write memory between two PROT_NONE
// pages, so that a kernel reading or writing even one byte outside a slice
// placed at either edge faults (as crypto/subtle's dangerousSlice does).
func guardedRegion(t *testing.T, n int) []byte {
	t.Helper()
	page := syscall.Getpagesize()
	size := (n + page - 1) / page * page
	mem, err := syscall.Mmap(-1, 0, size+2*page, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil {
		t.Fatalf("mmap %d bytes: %v", size+2*page, err)
	}
	t.Cleanup(func() { syscall.Munmap(mem) })
	if err := syscall.Mprotect(mem[:page], syscall.PROT_NONE); err != nil {
		t.Fatalf("mprotect low guard page: %v", err)
	}
	if err := syscall.Mprotect(mem[page+size:], syscall.PROT_NONE); err != nil {
		t.Fatalf("mprotect high guard page: %v", err)
	}
	return mem[page : page+size]
}

// TestXORGuardPages puts every operand flush against a guard page, at the
// low edge and at the high edge, for lengths around each kernel's block
// sizes. A kernel that reads or writes out of bounds faults; with
// SetPanicOnFault the fault becomes a test failure instead of a crash.
func TestXORGuardPages(t *testing.T) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	const maxLen = 4096 + 300
	regions := [4][]byte{}
	for i := range regions {
		regions[i] = guardedRegion(t, maxLen)
	}
	forEachKernel(t, func(t *testing.T, k kernel) {
		r := rand.New(rand.NewPCG(7, uint64(k)))
		lengths := []int{4096, 4096 + 255, 4096 + 257}
		for n := 1; n <= 300; n++ {
			lengths = append(lengths, n)
		}
		for _, n := range lengths {
			for edge := range 2 {
				var s [4][]byte
				for i, reg := range regions {
					if edge == 0 {
						s[i] = reg[:n] // starts right after the low guard page
					} else {
						s[i] = reg[len(reg)-n:] // ends right before the high guard page
					}
					for j := range s[i] {
						s[i][j] = byte(r.Uint32())
					}
				}
				want := make([]byte, n)
				refXOR3(want, s[1], s[2], s[3])
				XOR3(s[0], s[1], s[2], s[3])
				if firstDiff(s[0], want) != n {
					t.Fatalf("%s: XOR3 n=%d edge=%d wrong", k, n, edge)
				}
				refXOR(want, s[1], s[2])
				XOR(s[0], s[1], s[2])
				if firstDiff(s[0], want) != n {
					t.Fatalf("%s: XOR n=%d edge=%d wrong", k, n, edge)
				}
			}
		}
	})
}
