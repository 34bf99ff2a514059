package frame

import (
	"fmt"
	"strconv"
	"unicode/utf8"

	"github.com/qrelay/qrelay/internal/ids"
)

// Error is what every parse function, and every append function given a
// frame it cannot encode, returns: what is wrong, where, and what is wanted.
type Error struct {
	Type Type // the frame type being parsed or appended; 0 if not known yet, or for a routed message
	// Kind is the CONTROL kind of a CONTROL frame's body (with Type
	// TypeControl), or the kind of a routed message (with Type 0), whose
	// offsets count from the start of the message; 0 otherwise.
	Kind   Kind
	Field  string // the field, as named in docs/kmlink.md, such as "key count"
	Offset int    // the field's offset from the start of the frame, or of the routed message
	Reason string // the bad value and what is wanted, such as "0, want 1..2048"
}

// Error returns a message such as
//
//	frame: RELAY field "key count" at offset 32: 0, want 1..2048
//	frame: CONTROL ROUTED field "hop limit" at offset 10: 0, want 1..255
//	frame: SAE_ASSIGN message field "entry 0 key count" at offset 15: 3, but ...
func (e *Error) Error() string {
	where := " field " + strconv.Quote(e.Field) + " at offset " + strconv.Itoa(e.Offset) + ": " + e.Reason
	switch {
	case e.Kind != 0 && e.Type == 0:
		return "frame: " + e.Kind.String() + " message" + where
	case e.Kind != 0:
		return "frame: " + e.Type.String() + " " + e.Kind.String() + where
	case e.Type == 0:
		return "frame:" + where
	}
	return "frame: " + e.Type.String() + where
}

func errorf(t Type, field string, off int, format string, args ...any) *Error {
	return &Error{Type: t, Field: field, Offset: off, Reason: fmt.Sprintf(format, args...)}
}

// checkRange fails unless lo <= v <= hi.
func checkRange(t Type, field string, off int, v, lo, hi uint64) *Error {
	if v < lo || v > hi {
		return errorf(t, field, off, "%d, want %d..%d", v, lo, hi)
	}
	return nil
}

// checkZero fails unless a reserved field is zero.
func checkZero(t Type, field string, off int, v uint64) *Error {
	if v != 0 {
		return errorf(t, field, off, "%#x, want 0 (reserved)", v)
	}
	return nil
}

// checkNodeID fails unless id is a valid ID (internal/ids): 1 to
// MaxNodeIDLen bytes of [A-Za-z0-9._-]. off is the offset of the ID's first
// byte; a bad byte is reported at its own offset.
func checkNodeID[S ~string | ~[]byte](t Type, field string, off int, id S) *Error {
	if len(id) == 0 || len(id) > MaxNodeIDLen {
		return errorf(t, field, off, "%d bytes, want 1..%d", len(id), MaxNodeIDLen)
	}
	if i := ids.BadByte(id); i >= 0 {
		return errorf(t, field, off+i, "%q has byte %s at index %d, want only %s", string(id), byteString(id[i]), i, ids.Chars)
	}
	return nil
}

// checkReason fails unless s is at most MaxReason bytes of UTF-8.
func checkReason(t Type, field string, off int, s string) *Error {
	if len(s) > MaxReason {
		return errorf(t, field, off, "%d bytes, want at most %d", len(s), MaxReason)
	}
	if utf8.ValidString(s) {
		return nil
	}
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n == 1 {
			return errorf(t, field, off+i, "invalid UTF-8 at index %d, want UTF-8 text", i)
		}
		i += n
	}
	return nil
}

// byteString shows c as a quoted character if it is printable ASCII, else in hex.
func byteString(c byte) string {
	if c >= 0x20 && c < 0x7f {
		return strconv.QuoteRune(rune(c))
	}
	return fmt.Sprintf("0x%02x", c)
}
