package otp

import (
	"crypto/subtle"

	//lint:ignore SA1019 the deprecation warns against Poly1305 as a general-purpose MAC; here it is exactly what it was designed as, a one-time authenticator whose key is used once.
	"golang.org/x/crypto/poly1305"
)

const (
	// MACKeySize is the pad spent on one tag: a Poly1305 one-time key.
	MACKeySize = 32
	// TagSize is the size of a tag.
	TagSize = poly1305.TagSize
)

// Tag authenticates msg under a one-time key. The key must be uniformly
// random (pad bytes) and must never authenticate another message; see the
// package documentation for the forgery bound.
func Tag(key *[MACKeySize]byte, msg []byte) [TagSize]byte {
	var tag [TagSize]byte
	sumMAC(&tag, msg, key)
	return tag
}

// Verify reports whether tag authenticates msg under key. It compares in
// constant time. A caller must spend key whatever the answer: a key tried
// against a forgery is as used as one that verified.
func Verify(key *[MACKeySize]byte, msg []byte, tag [TagSize]byte) bool {
	got := Tag(key, msg)
	return subtle.ConstantTimeCompare(got[:], tag[:]) == 1
}
