//go:build !race

// Package race tells the race detector about memory that assembly reads and
// writes, which -race cannot see on its own (as klauspost/compress and
// reedsolomon do). Call ReadRange and WriteRange on the slices before each
// assembly call; without -race they compile to nothing.
package race

// Enabled reports whether the binary was built with -race.
const Enabled = false

// ReadRange records a read of b.
func ReadRange(b []byte) {}

// WriteRange records a write of b.
func WriteRange(b []byte) {}
