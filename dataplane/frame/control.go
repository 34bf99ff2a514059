package frame

import "encoding/binary"

// Offsets of the CONTROL fields from the start of the frame.
const (
	controlOffKind = 8
	controlOffBody = 10
)

// Control is a CONTROL frame: a message of the KM link (kind ROUTED, whose
// body is parsed by ParseRouted) or of the control plane, which defines its
// kinds' bodies (kinds.go). To this function the body is opaque.
type Control struct {
	Kind Kind
	Body []byte // the rest of the frame; at most MaxFrameLen-10 bytes
}

// FrameLen returns the length of the whole frame.
func (c *Control) FrameLen() int { return PrefixLen + controlFixed + len(c.Body) }

// AppendControl appends the frame c to dst. If c cannot be encoded it returns
// dst unchanged and an *Error naming the bad field.
func AppendControl(dst []byte, c *Control) ([]byte, error) {
	if limit := MaxFrameLen - controlOffBody; len(c.Body) > limit {
		return dst, errorf(TypeControl, "body", controlOffBody, "%d bytes, want at most %d", len(c.Body), limit)
	}
	dst = appendPrefix(dst, TypeControl, 0, c.FrameLen()-PrefixLen)
	dst = binary.BigEndian.AppendUint16(dst, uint16(c.Kind))
	return append(dst, c.Body...), nil
}

// ParseControl parses the whole CONTROL frame b, prefix included. Body
// aliases b.
func ParseControl(b []byte) (Control, error) {
	if _, err := parseFrame(b, TypeControl); err != nil {
		return Control{}, err
	}
	return Control{
		Kind: Kind(binary.BigEndian.Uint16(b[controlOffKind:])),
		Body: b[controlOffBody:len(b):len(b)],
	}, nil
}
