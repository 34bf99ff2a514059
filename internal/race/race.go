//go:build race

// Package race tells the race detector about memory that assembly reads and
// writes, which -race cannot see on its own (as klauspost/compress and
// reedsolomon do). Call ReadRange and WriteRange on the slices before each
// assembly call; without -race they compile to nothing.
package race

import (
	"runtime"
	"unsafe"
)

// Enabled reports whether the binary was built with -race.
const Enabled = true

// ReadRange records a read of b.
func ReadRange(b []byte) {
	if len(b) > 0 {
		runtime.RaceReadRange(unsafe.Pointer(&b[0]), len(b))
	}
}

// WriteRange records a write of b.
func WriteRange(b []byte) {
	if len(b) > 0 {
		runtime.RaceWriteRange(unsafe.Pointer(&b[0]), len(b))
	}
}
