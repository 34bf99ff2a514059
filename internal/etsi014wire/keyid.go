package etsi014wire

import (
	"crypto/sha1"
	"encoding/binary"
	"fmt"
	"math"
	"strconv"
)

// KeyID is a key_ID of the standard: an RFC 9562 (formerly RFC 4122) UUID,
// written in the canonical 8-4-4-4-12 form. qrelay derives the IDs of the
// end-to-end keys it relays rather than carrying them: both ends of a relay
// compute the ID of key seq of a flow with DeriveKeyID, so relay frames
// spend no bytes on IDs. The zero KeyID is the nil UUID and names no key.
type KeyID [16]byte

// KeyIDNamespace is the namespace UUID of derived key IDs, in canonical form.
// It is itself the version-5 UUID of the URL
// "https://github.com/qrelay/qrelay/keyid" in the RFC 9562 URL namespace
// (6ba7b811-9dad-11d1-80b4-00c04fd430c8), so anyone can recompute it. It
// must never change: every key ID on every node depends on it.
const KeyIDNamespace = "d650afce-52d8-5138-a703-02531b4f0e24"

// keyIDNamespace is KeyIDNamespace as bytes (checked by a test).
var keyIDNamespace = [16]byte{
	0xd6, 0x50, 0xaf, 0xce, 0x52, 0xd8, 0x51, 0x38,
	0xa7, 0x03, 0x02, 0x53, 0x1b, 0x4f, 0x0e, 0x24,
}

// KeyIDLen is the length of a key ID's canonical text, 8-4-4-4-12 hex digits.
const KeyIDLen = 36

// DeriveKeyID is the key ID of key seq of flow from node src to node dst:
// the version-5 (SHA-1, name-based) UUID of the name
//
//	uint32(len(src)) ‖ src ‖ uint32(len(dst)) ‖ dst ‖ uint64(flow) ‖ uint64(seq)
//
// (integers big-endian) in the namespace KeyIDNamespace. The length prefixes
// make the encoding unambiguous: ("ab", "c") and ("a", "bc") are different
// names. Node IDs longer than 4 GiB are not node IDs; DeriveKeyID panics on
// them.
//
// DeriveKeyID does not allocate for node IDs of up to 48 bytes each.
func DeriveKeyID(src, dst string, flow, seq uint64) KeyID {
	var buf [16 + 4 + 48 + 4 + 48 + 16]byte
	b := append(buf[:0], keyIDNamespace[:]...)
	b = appendKeyIDName(b, src, dst, flow, seq)
	return fromSHA1(sha1.Sum(b))
}

// appendKeyIDName appends DeriveKeyID's name for (src, dst, flow, seq) to b.
func appendKeyIDName(b []byte, src, dst string, flow, seq uint64) []byte {
	if uint64(len(src)) > math.MaxUint32 || uint64(len(dst)) > math.MaxUint32 {
		panic("etsi014: DeriveKeyID: node ID longer than 4 GiB")
	}
	b = binary.BigEndian.AppendUint32(b, uint32(len(src)))
	b = append(b, src...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(dst)))
	b = append(b, dst...)
	b = binary.BigEndian.AppendUint64(b, flow)
	return binary.BigEndian.AppendUint64(b, seq)
}

// uuidV5 is the RFC 9562 version-5 UUID of name in namespace ns.
func uuidV5(ns [16]byte, name []byte) KeyID {
	h := sha1.New()
	h.Write(ns[:])
	h.Write(name)
	var sum [sha1.Size]byte
	h.Sum(sum[:0])
	return fromSHA1(sum)
}

// fromSHA1 makes a version-5 UUID from the SHA-1 of namespace ‖ name: the
// first 16 bytes, with the version (5) in the high nibble of byte 6 and the
// RFC 9562 variant (binary 10) in the top bits of byte 8.
func fromSHA1(sum [sha1.Size]byte) KeyID {
	var id KeyID
	copy(id[:], sum[:16])
	id[6] = id[6]&0x0f | 0x50
	id[8] = id[8]&0x3f | 0x80
	return id
}

// String is the canonical form: 8-4-4-4-12 lowercase hex digits.
func (id KeyID) String() string {
	var buf [KeyIDLen]byte
	return string(id.appendText(buf[:0]))
}

// AppendText appends the canonical form to b (encoding.TextAppender).
func (id KeyID) AppendText(b []byte) ([]byte, error) { return id.appendText(b), nil }

// MarshalText returns the canonical form (encoding.TextMarshaler), so that a
// KeyID is a JSON string such as an ETSI GS QKD 014 key_ID.
func (id KeyID) MarshalText() ([]byte, error) {
	return id.appendText(make([]byte, 0, KeyIDLen)), nil
}

// UnmarshalText parses text as ParseKeyID does (encoding.TextUnmarshaler).
func (id *KeyID) UnmarshalText(text []byte) error {
	v, err := ParseKeyID(string(text))
	if err != nil {
		return err
	}
	*id = v
	return nil
}

func (id KeyID) appendText(b []byte) []byte {
	const hexDigits = "0123456789abcdef"
	for i, c := range id {
		switch i {
		case 4, 6, 8, 10:
			b = append(b, '-')
		}
		b = append(b, hexDigits[c>>4], hexDigits[c&0x0f])
	}
	return b
}

// ParseKeyID parses a key ID in canonical 8-4-4-4-12 form, in either case.
// Any UUID is accepted, whatever its version: key IDs made by other key
// managers need not be derived ones. Other forms (braces, "urn:uuid:",
// no hyphens) are refused, with an error that says what is wrong and where.
func ParseKeyID(s string) (KeyID, error) {
	var id KeyID
	if len(s) != KeyIDLen || s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-' {
		return id, keyIDError(s)
	}
	for j, i := range keyIDHexAt {
		hi, lo := hexValue[s[i]], hexValue[s[i+1]]
		if hi|lo > 0x0f {
			return KeyID{}, keyIDError(s)
		}
		id[j] = hi<<4 | lo
	}
	return id, nil
}

// keyIDHexAt are the offsets of the 16 hex-digit pairs in a key ID's text.
var keyIDHexAt = [16]uint8{0, 2, 4, 6, 9, 11, 14, 16, 19, 21, 24, 26, 28, 30, 32, 34}

// hexValue is the value of each hex digit, either case, and 0xff for any
// other byte.
var hexValue = func() (v [256]byte) {
	for c := range v {
		v[c] = 0xff
		if d, ok := unhex(byte(c)); ok {
			v[c] = d
		}
	}
	return v
}()

// keyIDError says what is wrong with s, which ParseKeyID refused, and where.
func keyIDError(s string) error {
	if len(s) != KeyIDLen {
		return fmt.Errorf("key ID %s: want %d characters in 8-4-4-4-12 form, got %d", quoteKeyID(s), KeyIDLen, len(s))
	}
	for i := 0; i < KeyIDLen; i++ {
		switch i {
		case 8, 13, 18, 23:
			if s[i] != '-' {
				return fmt.Errorf("key ID %s: want '-' at index %d (8-4-4-4-12 form), got %q", quoteKeyID(s), i, s[i:i+1])
			}
		default:
			if _, ok := unhex(s[i]); !ok {
				return fmt.Errorf("key ID %s: want a hex digit at index %d, got %q", quoteKeyID(s), i, s[i:i+1])
			}
		}
	}
	return fmt.Errorf("key ID %s: not in 8-4-4-4-12 form", quoteKeyID(s)) // not reached: ParseKeyID refused s
}

// quoteKeyID quotes s for an error message, cut short if it is long (it is
// input, possibly hostile).
func quoteKeyID(s string) string {
	const maxQuoted = 64
	if len(s) > maxQuoted {
		return strconv.Quote(s[:maxQuoted]) + "..."
	}
	return strconv.Quote(s)
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}
