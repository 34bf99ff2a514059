package frame

import (
	"encoding/binary"
	"math"
	"slices"
)

// Offsets of the RELAY fields from the start of the frame.
const (
	relayOffFlow       = 8
	relayOffFirstSeq   = 16
	relayOffPadPos     = 24
	relayOffCount      = 32
	relayOffKeySize    = 36
	relayOffHopLimit   = 38
	relayOffReserved1  = 39
	relayOffPayloadLen = 40
	relayOffSrcLen     = 44
	relayOffDstLen     = 45
	relayOffReserved2  = 46
	relayOffSrc        = 48
)

// Relay is a RELAY frame: Count keys of KeySize bytes each, encrypted under
// the sending link direction's pad and authenticated with a one-time
// Poly1305 tag. Payload is the keys XOR pad[PadPos : PadPos+P] and Tag is
// Poly1305 keyed with pad[PadPos+P : PadPos+P+PadKeyLen] over the header and
// the payload, where P = PayloadLen().
type Relay struct {
	Flags    uint16 // FlagQKDKey or 0
	Flow     uint64 // flow ID, chosen by the source
	FirstSeq uint64 // sequence number of the first key in the flow
	PadPos   uint64 // absolute position of the first pad byte in the link direction's pad stream
	Count    uint32 // number of keys, 1..MaxKeys
	KeySize  uint16 // size of each key in bytes, at least 1
	HopLimit uint8  // hops the frame may still take, at least 1
	Src, Dst string // source and destination node IDs
	Payload  []byte // PayloadLen() bytes of encrypted keys
	Tag      [TagLen]byte
}

// PayloadLen returns the payload length, Count*KeySize.
func (r *Relay) PayloadLen() int { return int(r.Count) * int(r.KeySize) }

// HeaderLen returns the length of the header, prefix and node IDs included:
// the offset of the payload.
func (r *Relay) HeaderLen() int { return RelayFixedLen + len(r.Src) + len(r.Dst) }

// AuthLen returns the length of the part of the frame the tag authenticates,
// header and payload: the offset of the tag.
func (r *Relay) AuthLen() int { return r.HeaderLen() + r.PayloadLen() }

// PadLen returns the number of pad bytes the frame consumes, payload pad
// then Poly1305 key.
func (r *Relay) PadLen() int { return r.PayloadLen() + PadKeyLen }

// FrameLen returns the length of the whole frame.
func (r *Relay) FrameLen() int { return r.HeaderLen() + r.PayloadLen() + TagLen }

// validate checks the fields of r that the header encodes.
func (r *Relay) validate() *Error {
	const t = TypeRelay
	if r.Flags&^FlagQKDKey != 0 {
		return errorf(t, "flags", 2, "%#04x, want only bits %#04x", r.Flags, FlagQKDKey)
	}
	if err := checkRange(t, "key count", relayOffCount, uint64(r.Count), 1, MaxKeys); err != nil {
		return err
	}
	if err := checkRange(t, "key size", relayOffKeySize, uint64(r.KeySize), 1, math.MaxUint16); err != nil {
		return err
	}
	if err := checkRange(t, "hop limit", relayOffHopLimit, uint64(r.HopLimit), 1, math.MaxUint8); err != nil {
		return err
	}
	if p := r.PayloadLen(); p > MaxPayload {
		return errorf(t, "payload length", relayOffPayloadLen, "%d (key count %d × key size %d), want 1..%d", p, r.Count, r.KeySize, MaxPayload)
	}
	if r.PadPos > math.MaxUint64-uint64(r.PadLen()) {
		return errorf(t, "pad offset", relayOffPadPos, "%d, want at most %d so that the frame's %d pad bytes end before 2^64", r.PadPos, math.MaxUint64-uint64(r.PadLen()), r.PadLen())
	}
	if err := checkNodeID(t, "src node ID", relayOffSrc, r.Src); err != nil {
		return err
	}
	return checkNodeID(t, "dst node ID", relayOffSrc+len(r.Src), r.Dst)
}

// AppendRelayHeader appends the header of r (prefix and node IDs included,
// HeaderLen bytes) to dst. It sizes the frame from r.PayloadLen(), not
// len(r.Payload), so the caller can then write the payload in place and
// append the tag. It allocates nothing if dst has room. If r cannot be
// encoded it returns dst unchanged and an *Error naming the bad field.
func AppendRelayHeader(dst []byte, r *Relay) ([]byte, error) {
	if err := r.validate(); err != nil {
		return dst, err
	}
	return appendRelayHeader(dst, r), nil
}

func appendRelayHeader(dst []byte, r *Relay) []byte {
	n := len(dst)
	dst = slices.Grow(dst, r.HeaderLen())[:n+r.HeaderLen()]
	h := dst[n:]
	h[0], h[1] = Version, byte(TypeRelay)
	binary.BigEndian.PutUint16(h[2:], r.Flags)
	binary.BigEndian.PutUint32(h[4:], uint32(r.FrameLen()-PrefixLen))
	binary.BigEndian.PutUint64(h[relayOffFlow:], r.Flow)
	binary.BigEndian.PutUint64(h[relayOffFirstSeq:], r.FirstSeq)
	binary.BigEndian.PutUint64(h[relayOffPadPos:], r.PadPos)
	binary.BigEndian.PutUint32(h[relayOffCount:], r.Count)
	binary.BigEndian.PutUint16(h[relayOffKeySize:], r.KeySize)
	h[relayOffHopLimit], h[relayOffReserved1] = r.HopLimit, 0
	binary.BigEndian.PutUint32(h[relayOffPayloadLen:], uint32(r.PayloadLen()))
	h[relayOffSrcLen], h[relayOffDstLen] = byte(len(r.Src)), byte(len(r.Dst))
	h[relayOffReserved2], h[relayOffReserved2+1] = 0, 0
	copy(h[relayOffSrc+copy(h[relayOffSrc:], r.Src):], r.Dst)
	return dst
}

// AppendRelay appends the whole frame r, header, Payload and Tag, to dst.
// Payload must be PayloadLen() bytes long.
func AppendRelay(dst []byte, r *Relay) ([]byte, error) {
	if err := r.validate(); err != nil {
		return dst, err
	}
	if len(r.Payload) != r.PayloadLen() {
		return dst, errorf(TypeRelay, "payload", r.HeaderLen(), "%d bytes, want key count × key size = %d", len(r.Payload), r.PayloadLen())
	}
	dst = appendRelayHeader(dst, r)
	dst = append(dst, r.Payload...)
	return append(dst, r.Tag[:]...), nil
}

// ParseRelay parses the whole RELAY frame b, prefix included. The returned
// Payload aliases b; the node IDs, which share one string, are the only
// allocation. The tag
// authenticates b[:r.AuthLen()]; ParseRelay does not verify it.
func ParseRelay(b []byte) (Relay, error) {
	var r Relay
	if err := parseRelay(b, &r); err != nil {
		return Relay{}, err
	}
	return r, nil
}

func parseRelay(b []byte, r *Relay) *Error {
	const t = TypeRelay
	p, err := parseFrame(b, t)
	if err != nil {
		return err
	}
	// parseFrame checked that len(b) >= PrefixLen+relayFixed+2+1+TagLen.
	r.Flags = p.Flags
	r.Flow = binary.BigEndian.Uint64(b[relayOffFlow:])
	r.FirstSeq = binary.BigEndian.Uint64(b[relayOffFirstSeq:])
	r.PadPos = binary.BigEndian.Uint64(b[relayOffPadPos:])
	r.Count = binary.BigEndian.Uint32(b[relayOffCount:])
	if err := checkRange(t, "key count", relayOffCount, uint64(r.Count), 1, MaxKeys); err != nil {
		return err
	}
	r.KeySize = binary.BigEndian.Uint16(b[relayOffKeySize:])
	if err := checkRange(t, "key size", relayOffKeySize, uint64(r.KeySize), 1, math.MaxUint16); err != nil {
		return err
	}
	r.HopLimit = b[relayOffHopLimit]
	if err := checkRange(t, "hop limit", relayOffHopLimit, uint64(r.HopLimit), 1, math.MaxUint8); err != nil {
		return err
	}
	if err := checkZero(t, "reserved", relayOffReserved1, uint64(b[relayOffReserved1])); err != nil {
		return err
	}
	plen := binary.BigEndian.Uint32(b[relayOffPayloadLen:])
	if err := checkRange(t, "payload length", relayOffPayloadLen, uint64(plen), 1, MaxPayload); err != nil {
		return err
	}
	if int(plen) != r.PayloadLen() {
		return errorf(t, "payload length", relayOffPayloadLen, "%d, want key count × key size = %d × %d = %d", plen, r.Count, r.KeySize, r.PayloadLen())
	}
	srcLen, dstLen := int(b[relayOffSrcLen]), int(b[relayOffDstLen])
	if err := checkRange(t, "src node ID length", relayOffSrcLen, uint64(srcLen), 1, MaxNodeIDLen); err != nil {
		return err
	}
	if err := checkRange(t, "dst node ID length", relayOffDstLen, uint64(dstLen), 1, MaxNodeIDLen); err != nil {
		return err
	}
	if err := checkZero(t, "reserved", relayOffReserved2, uint64(binary.BigEndian.Uint16(b[relayOffReserved2:]))); err != nil {
		return err
	}
	if want := relayFixed + srcLen + dstLen + int(plen) + TagLen; int(p.Length) != want {
		return errorf(t, "length", 4, "%d, want %d + src %d + dst %d + payload %d + tag %d = %d", p.Length, relayFixed, srcLen, dstLen, plen, TagLen, want)
	}
	if padLen := uint64(plen) + PadKeyLen; r.PadPos > math.MaxUint64-padLen {
		return errorf(t, "pad offset", relayOffPadPos, "%d, want at most %d so that the frame's %d pad bytes end before 2^64", r.PadPos, math.MaxUint64-padLen, padLen)
	}
	// The length check above makes every slice below lie within b.
	src := b[relayOffSrc : relayOffSrc+srcLen]
	if err := checkNodeID(t, "src node ID", relayOffSrc, src); err != nil {
		return err
	}
	dst := b[relayOffSrc+srcLen : relayOffSrc+srcLen+dstLen]
	if err := checkNodeID(t, "dst node ID", relayOffSrc+srcLen, dst); err != nil {
		return err
	}
	ids := string(b[relayOffSrc : relayOffSrc+srcLen+dstLen]) // one allocation for both
	r.Src, r.Dst = ids[:srcLen], ids[srcLen:]
	h := relayOffSrc + srcLen + dstLen
	end := h + int(plen)
	r.Payload = b[h:end:end]
	copy(r.Tag[:], b[end:])
	return nil
}
