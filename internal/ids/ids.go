// Package ids is the one rule for the IDs that name nodes, SAEs and
// operators: 1 to MaxLen bytes of [A-Za-z0-9._-].
//
// Certificates (the qrelay URI SAN or CN), the config file and every wire
// format that carries a node ID check IDs with this package, so an ID the
// config accepts is an ID every frame and message can carry. The same
// characters are safe in file names and metadata keys.
package ids

import "fmt"

// MaxLen is the longest ID, in bytes. Wire formats give an ID a one-byte
// length, so it must stay below 256.
const MaxLen = 64

// Chars names the bytes an ID may hold, for error messages.
const Chars = "[A-Za-z0-9._-]"

// charOK says which bytes an ID may hold.
var charOK = func() (ok [256]bool) {
	for c := range ok {
		ok[c] = c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-'
	}
	return ok
}()

// Char reports whether c may appear in an ID.
func Char(c byte) bool { return charOK[c] }

// BadByte returns the index of the first byte of id that may not appear in
// an ID, or -1 if there is none. It does not check the length.
func BadByte[S ~string | ~[]byte](id S) int {
	for i := 0; i < len(id); i++ {
		if !charOK[id[i]] {
			return i
		}
	}
	return -1
}

// Valid fails unless id is a valid ID, saying what is wrong and where.
func Valid(id string) error {
	if len(id) == 0 || len(id) > MaxLen {
		return fmt.Errorf("length %d: want 1 to %d characters", len(id), MaxLen)
	}
	if i := BadByte(id); i >= 0 {
		return fmt.Errorf("character %q at %d: use only A-Z a-z 0-9 . _ -", id[i], i)
	}
	return nil
}
