package frame

import (
	"encoding/binary"
	"fmt"
	"strconv"
)

// msgReader reads the fields of a routed message (the payload of a ROUTED
// frame) in order and keeps the first error, which names the message kind,
// the field and its offset from the start of the message.
type msgReader struct {
	kind  Kind
	b     []byte
	off   int
	entry int // the entry being read, for the field names; -1 outside entries
	label string
	err   *Error
}

func newMsgReader(kind Kind, b []byte) *msgReader {
	return &msgReader{kind: kind, b: b, entry: -1}
}

// fieldName returns the name of field in the current entry, such as
// "entry 2 key ID"; label is the entry's name ("entry", "key").
func (r *msgReader) fieldName(field string) string {
	if r.entry < 0 {
		return field
	}
	return r.label + " " + strconv.Itoa(r.entry) + " " + field
}

// failAt records an error at offset off unless there is one already.
func (r *msgReader) failAt(field string, off int, format string, args ...any) {
	if r.err == nil {
		r.err = &Error{Kind: r.kind, Field: r.fieldName(field), Offset: off, Reason: fmt.Sprintf(format, args...)}
	}
}

// ok reports whether no error has been recorded.
func (r *msgReader) ok() bool { return r.err == nil }

func (r *msgReader) need(n int, field string) bool {
	if r.err == nil && n > len(r.b)-r.off {
		r.failAt(field, r.off, "message ends at %d, want %d more bytes (truncated message)", len(r.b), n-(len(r.b)-r.off))
	}
	return r.err == nil
}

func (r *msgReader) u8(field string) uint8 {
	if !r.need(1, field) {
		return 0
	}
	r.off++
	return r.b[r.off-1]
}

func (r *msgReader) u16(field string) uint16 {
	if !r.need(2, field) {
		return 0
	}
	r.off += 2
	return binary.BigEndian.Uint16(r.b[r.off-2:])
}

func (r *msgReader) u32(field string) uint32 {
	if !r.need(4, field) {
		return 0
	}
	r.off += 4
	return binary.BigEndian.Uint32(r.b[r.off-4:])
}

func (r *msgReader) u64(field string) uint64 {
	if !r.need(8, field) {
		return 0
	}
	r.off += 8
	return binary.BigEndian.Uint64(r.b[r.off-8:])
}

// bytes returns the next n bytes, aliasing the message.
func (r *msgReader) bytes(n int, field string) []byte {
	if !r.need(n, field) {
		return nil
	}
	r.off += n
	return r.b[r.off-n : r.off]
}

// keyID reads a 16-byte key ID.
func (r *msgReader) keyID(field string) (id [16]byte) {
	copy(id[:], r.bytes(16, field))
	return id
}

// version reads the format version, which must be want.
func (r *msgReader) version(want uint8) {
	off := r.off
	if v := r.u8("version"); r.err == nil && v != want {
		r.failAt("version", off, "%d, want %d (this node supports %s version %d only)", v, want, r.kind, want)
	}
}

// upTo reads a byte of at most hi.
func (r *msgReader) upTo(field string, hi uint8) uint8 {
	off := r.off
	v := r.u8(field)
	if r.err == nil && v > hi {
		r.failAt(field, off, "%d, want 0..%d", v, hi)
	}
	return v
}

// bool8 reads a byte that is 0 (false) or 1 (true).
func (r *msgReader) bool8(field string) bool { return r.upTo(field, 1) == 1 }

// count reads a 2-byte count of lo..hi.
func (r *msgReader) count(field string, lo, hi int) int {
	off := r.off
	n := int(r.u16(field))
	if r.err == nil && (n < lo || n > hi) {
		r.failAt(field, off, "%d, want %d..%d", n, lo, hi)
	}
	return n
}

// entries checks, before anything is allocated for them, that n entries
// of at least minLen bytes each fit in what is left of the message; off
// is the offset of their count.
func (r *msgReader) entries(field string, off, n, minLen int) bool {
	if r.err == nil && n*minLen > len(r.b)-r.off {
		r.failAt(field, off, "%d, but the %d bytes after it hold at most %d entries of %d bytes or more", n, len(r.b)-r.off, (len(r.b)-r.off)/minLen, minLen)
	}
	return r.err == nil
}

// id64 reads a boot or round ID, which is never 0.
func (r *msgReader) id64(field string) uint64 {
	off := r.off
	v := r.u64(field)
	if r.err == nil && v == 0 {
		r.failAt(field, off, "0, want a nonzero ID")
	}
	return v
}

// str reads a 1-byte length of 1..255 (named field + " length") and that
// many bytes.
func (r *msgReader) str(field string) string {
	off := r.off
	n := int(r.u8(field + " length"))
	if r.err == nil && n == 0 {
		r.failAt(field+" length", off, "0, want 1..255")
	}
	return string(r.bytes(n, field))
}

// text reads a 2-byte length of at most maxLen (named field + " length")
// and that many bytes, UTF-8 or not.
func (r *msgReader) text(field string, maxLen int) string {
	off := r.off
	n := int(r.u16(field + " length"))
	if r.err == nil && n > maxLen {
		r.failAt(field+" length", off, "%d, want 0..%d", n, maxLen)
	}
	return string(r.bytes(n, field))
}

// end fails unless the whole message has been read, and returns the
// first error as an error (nil if there is none).
func (r *msgReader) end() error {
	r.entry = -1
	if r.err == nil && r.off != len(r.b) {
		r.failAt("end", r.off, "%d bytes after the last field, want none (trailing bytes)", len(r.b)-r.off)
	}
	if r.err != nil {
		return r.err
	}
	return nil
}

// msgErr returns an *Error of an append function of a routed message.
func msgErr(kind Kind, field string, off int, format string, args ...any) *Error {
	return &Error{Kind: kind, Field: field, Offset: off, Reason: fmt.Sprintf(format, args...)}
}

// appendStr appends a 1-byte length and s.
func appendStr(dst []byte, s string) []byte {
	dst = append(dst, byte(len(s)))
	return append(dst, s...)
}

// appendText appends a 2-byte length and s cut to maxLen bytes.
func appendText(dst []byte, s string, maxLen int) []byte {
	s = s[:min(len(s), maxLen)]
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(s)))
	return append(dst, s...)
}

func b2u8(b bool) byte {
	if b {
		return 1
	}
	return 0
}
