package frame

import (
	"encoding/binary"
	"math"
)

// Offsets of the ROUTED fields from the start of the frame: a CONTROL
// frame of kind KindRouted, whose body is the fields below.
const (
	routedOffHopLimit = controlOffBody // 10
	routedOffKind     = 11
	routedOffSrcLen   = 13
	routedOffSrc      = 14
	routedFixed       = 1 + 2 + 1 + 1 // hop limit, inner kind, src length, dst length
)

// RoutedHopLimitOffset is the offset of a ROUTED frame's hop limit, which a
// node that forwards the frame decrements in place.
const RoutedHopLimitOffset = routedOffHopLimit

// Routed is a ROUTED message, a CONTROL frame of kind KindRouted: a message
// of kind Kind from node Src to node Dst, which need not be neighbours.
// Each node on the way forwards it along its route with HopLimit
// decremented, and drops it when the limit would reach 0. To this type the
// payload is opaque; its kind's Parse function reads it (kinds.go).
type Routed struct {
	HopLimit uint8 // hops the message may still take, at least 1
	Kind     Kind  // the payload's kind, at least KindControlPlaneMin
	Src, Dst string
	Payload  []byte
}

// FrameLen returns the length of the whole frame.
func (r *Routed) FrameLen() int {
	return PrefixLen + controlFixed + routedFixed + len(r.Src) + len(r.Dst) + len(r.Payload)
}

func routedErr(field string, off int, format string, args ...any) *Error {
	e := errorf(TypeControl, field, off, format, args...)
	e.Kind = KindRouted
	return e
}

func (r *Routed) validate() *Error {
	if r.HopLimit < 1 {
		return routedErr("hop limit", routedOffHopLimit, "0, want 1..%d", math.MaxUint8)
	}
	if r.Kind < KindControlPlaneMin {
		return routedErr("inner kind", routedOffKind, "%d, want %d or more (kinds below belong to the KM link)", r.Kind, KindControlPlaneMin)
	}
	if err := checkNodeID(TypeControl, "src node ID", routedOffSrc, r.Src); err != nil {
		err.Kind = KindRouted
		return err
	}
	dstOff := routedOffSrc + len(r.Src) + 1
	if err := checkNodeID(TypeControl, "dst node ID", dstOff, r.Dst); err != nil {
		err.Kind = KindRouted
		return err
	}
	if n := r.FrameLen(); n > MaxFrameLen {
		return routedErr("payload", dstOff+len(r.Dst), "%d bytes make a frame of %d, want at most %d", len(r.Payload), n, MaxFrameLen)
	}
	return nil
}

// AppendRouted appends the ROUTED frame r (a whole CONTROL frame) to dst.
// If r cannot be encoded it returns dst unchanged and an *Error naming the
// bad field.
func AppendRouted(dst []byte, r *Routed) ([]byte, error) {
	if err := r.validate(); err != nil {
		return dst, err
	}
	dst = appendPrefix(dst, TypeControl, 0, r.FrameLen()-PrefixLen)
	dst = binary.BigEndian.AppendUint16(dst, uint16(KindRouted))
	dst = append(dst, r.HopLimit)
	dst = binary.BigEndian.AppendUint16(dst, uint16(r.Kind))
	dst = appendStr(dst, r.Src)
	dst = appendStr(dst, r.Dst)
	return append(dst, r.Payload...), nil
}

// ParseRouted parses the whole CONTROL frame b, prefix included, which must
// be of kind KindRouted. Payload aliases b.
func ParseRouted(b []byte) (Routed, error) {
	r, err := parseRouted(b)
	if err != nil {
		return Routed{}, err
	}
	return r, nil
}

func parseRouted(b []byte) (Routed, *Error) {
	var r Routed
	if _, err := parseFrame(b, TypeControl); err != nil {
		return r, err
	}
	if k := Kind(binary.BigEndian.Uint16(b[controlOffKind:])); k != KindRouted {
		return r, routedErr("kind", controlOffKind, "%d (%s), want %d (%s)", uint16(k), k, uint16(KindRouted), KindRouted)
	}
	if len(b) < routedOffSrcLen+1 {
		return r, routedErr("src node ID length", len(b), "frame ends at %d, before the fields of a ROUTED message", len(b))
	}
	r.HopLimit = b[routedOffHopLimit]
	if r.HopLimit < 1 {
		return r, routedErr("hop limit", routedOffHopLimit, "0, want 1..%d", math.MaxUint8)
	}
	r.Kind = Kind(binary.BigEndian.Uint16(b[routedOffKind:]))
	if r.Kind < KindControlPlaneMin {
		return r, routedErr("inner kind", routedOffKind, "%d, want %d or more (kinds below belong to the KM link)", uint16(r.Kind), KindControlPlaneMin)
	}
	src, off, err := routedNodeID(b, routedOffSrcLen, "src")
	if err != nil {
		return r, err
	}
	dst, off, err := routedNodeID(b, off, "dst")
	if err != nil {
		return r, err
	}
	r.Src, r.Dst = src, dst
	r.Payload = b[off:len(b):len(b)]
	return r, nil
}

// routedNodeID reads the node ID whose length is at off, and returns it
// and the offset after it.
func routedNodeID(b []byte, off int, which string) (string, int, *Error) {
	if off >= len(b) {
		return "", 0, routedErr(which+" node ID length", off, "frame ends at %d, want a length here", len(b))
	}
	n := int(b[off])
	if n < 1 || n > MaxNodeIDLen {
		return "", 0, routedErr(which+" node ID length", off, "%d, want 1..%d", n, MaxNodeIDLen)
	}
	if off+1+n > len(b) {
		return "", 0, routedErr(which+" node ID length", off, "%d, but only %d bytes are left", n, len(b)-off-1)
	}
	id := b[off+1 : off+1+n]
	if err := checkNodeID(TypeControl, which+" node ID", off+1, id); err != nil {
		err.Kind = KindRouted
		return "", 0, err
	}
	return string(id), off + 1 + n, nil
}
