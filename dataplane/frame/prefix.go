package frame

import "encoding/binary"

// Prefix is the 8-byte prefix every frame begins with.
type Prefix struct {
	Version uint8  // offset 0: Version
	Type    Type   // offset 1
	Flags   uint16 // offset 2: type-specific; unknown bits are an error
	Length  uint32 // offset 4: number of bytes that follow the prefix
}

// FrameLen returns the length of the whole frame, prefix included.
func (p Prefix) FrameLen() int { return PrefixLen + int(p.Length) }

// ParsePrefix parses the prefix at the start of b, which may hold more than
// the prefix. It rejects an unsupported version, an unknown type, flags the
// type does not define and a length the type cannot have.
func ParsePrefix(b []byte) (Prefix, error) {
	p, err := parsePrefix(b)
	if err != nil {
		return p, err
	}
	return p, nil
}

func parsePrefix(b []byte) (Prefix, *Error) {
	p, err := decodePrefix(b)
	if err != nil {
		return p, err
	}
	return p, checkPrefix(p)
}

// decodePrefix decodes the prefix at the start of b and checks the version
// and that the type is known.
func decodePrefix(b []byte) (Prefix, *Error) {
	if len(b) < PrefixLen {
		return Prefix{}, errorf(0, "prefix", len(b), "%d bytes, want %d", len(b), PrefixLen)
	}
	p := Prefix{
		Version: b[0],
		Type:    Type(b[1]),
		Flags:   binary.BigEndian.Uint16(b[2:]),
		Length:  binary.BigEndian.Uint32(b[4:]),
	}
	if p.Version != Version {
		return p, errorf(0, "version", 0, "%d, want %d (this node supports frame version %d only)", p.Version, Version, Version)
	}
	if !p.Type.Valid() {
		return p, errorf(0, "type", 1, "%d, want %d..%d (RELAY, COMPLETION, ASSIGN, ASSIGN_ACK, DISCARD, CONTROL, SYNC, SYNC_AGREE)", uint8(p.Type), TypeRelay, lastType)
	}
	return p, nil
}

// checkPrefix checks the flags and the length against the type.
func checkPrefix(p Prefix) *Error {
	if mask := flagMask(p.Type); p.Flags&^mask != 0 {
		if mask == 0 {
			return errorf(p.Type, "flags", 2, "%#04x, want 0 (no flags defined)", p.Flags)
		}
		return errorf(p.Type, "flags", 2, "%#04x, want only bits %#04x", p.Flags, mask)
	}
	lo, hi := bodyLimits(p.Type)
	if lo == hi && p.Length != uint32(lo) {
		return errorf(p.Type, "length", 4, "%d, want %d", p.Length, lo)
	}
	if p.Length < uint32(lo) || p.Length > uint32(hi) {
		return errorf(p.Type, "length", 4, "%d, want %d..%d", p.Length, lo, hi)
	}
	return nil
}

// parseFrame parses the prefix of the whole frame b, which must be of type
// want and exactly as long as its length field says.
func parseFrame(b []byte, want Type) (Prefix, *Error) {
	p, err := decodePrefix(b)
	if err != nil {
		err.Type = want
		return p, err
	}
	if p.Type != want {
		return p, errorf(want, "type", 1, "%s, want %s", p.Type, want)
	}
	if err := checkPrefix(p); err != nil {
		return p, err
	}
	if n := len(b) - PrefixLen; n != int(p.Length) {
		if n < int(p.Length) {
			return p, errorf(want, "length", 4, "%d, but only %d bytes follow the prefix (truncated frame)", p.Length, n)
		}
		return p, errorf(want, "length", 4, "%d, but %d bytes follow the prefix (trailing bytes)", p.Length, n)
	}
	return p, nil
}

// appendPrefix appends a prefix for a frame of type t with n bytes after it.
func appendPrefix(dst []byte, t Type, flags uint16, n int) []byte {
	dst = append(dst, Version, byte(t))
	dst = binary.BigEndian.AppendUint16(dst, flags)
	return binary.BigEndian.AppendUint32(dst, uint32(n))
}
