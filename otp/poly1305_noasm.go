//go:build !amd64 || purego

package otp

import (
	//lint:ignore SA1019 see mac.go: Poly1305 used as the one-time authenticator it was designed as.
	"golang.org/x/crypto/poly1305"
)

// sumMAC writes the Poly1305 tag of msg under key to out. This build has no
// vector kernel.
func sumMAC(out *[TagSize]byte, msg []byte, key *[MACKeySize]byte) {
	poly1305.Sum(out, msg, key)
}
