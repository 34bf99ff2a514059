//go:build !amd64 || purego

package otp

// This build has no vector MAC.
var vectorMAC func(key *[MACKeySize]byte, msg []byte) [TagSize]byte

func vectorMACSupported() bool { return false }

func usesVectorMAC(int) bool { return false }

func macVectorMinLen() int { return 0 }
