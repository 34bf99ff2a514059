//go:build amd64 && !purego

package otp

// vectorMAC is the vector kernel, called directly, when this CPU has it.
var vectorMAC = func() func(key *[MACKeySize]byte, msg []byte) [TagSize]byte {
	if !macAVX2 {
		return nil
	}
	return func(key *[MACKeySize]byte, msg []byte) [TagSize]byte {
		var tag [TagSize]byte
		sumAVX2(&tag, msg, key)
		return tag
	}
}()

func vectorMACSupported() bool { return macAVX2 }

func usesVectorMAC(n int) bool { return n >= macVectorMin && active != kernelGeneric && macAVX2 }

func macVectorMinLen() int { return macVectorMin }
