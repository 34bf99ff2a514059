package frame

import "encoding/binary"

// Offsets of the COMPLETION fields from the start of the frame.
const (
	complOffStatus    = 8
	complOffReserved  = 9
	complOffReasonLen = 10
	complOffCount     = 12
	complOffFlow      = 16
	complOffFirstSeq  = 24
	complOffSrcLen    = 32
	complOffDstLen    = 33
	complOffSrc       = 34
)

// Completion is a COMPLETION frame: the destination (or the relay that
// dropped them) tells the source whether the keys of one RELAY are stored.
// Src and Dst are those of the RELAY, so a COMPLETION travels from Dst to Src.
type Completion struct {
	Status   Status
	Count    uint32 // number of keys, 1..MaxKeys
	Flow     uint64 // flow ID of the RELAY
	FirstSeq uint64 // sequence number of its first key
	Src, Dst string // source and destination node IDs of the RELAY
	Reason   string // UTF-8 text, at most MaxReason bytes; empty is fine
}

// FrameLen returns the length of the whole frame.
func (c *Completion) FrameLen() int {
	return PrefixLen + completionFixed + len(c.Src) + len(c.Dst) + len(c.Reason)
}

func (c *Completion) validate() *Error {
	const t = TypeCompletion
	if !c.Status.Valid() {
		return errorf(t, "status", complOffStatus, "%d, want %d..%d", uint8(c.Status), StatusOK, StatusInternal)
	}
	if err := checkRange(t, "reason length", complOffReasonLen, uint64(len(c.Reason)), 0, MaxReason); err != nil {
		return err
	}
	if err := checkRange(t, "key count", complOffCount, uint64(c.Count), 1, MaxKeys); err != nil {
		return err
	}
	if err := checkNodeID(t, "src node ID", complOffSrc, c.Src); err != nil {
		return err
	}
	if err := checkNodeID(t, "dst node ID", complOffSrc+len(c.Src), c.Dst); err != nil {
		return err
	}
	return checkReason(t, "reason", complOffSrc+len(c.Src)+len(c.Dst), c.Reason)
}

// AppendCompletion appends the frame c to dst. If c cannot be encoded it
// returns dst unchanged and an *Error naming the bad field.
func AppendCompletion(dst []byte, c *Completion) ([]byte, error) {
	if err := c.validate(); err != nil {
		return dst, err
	}
	dst = appendPrefix(dst, TypeCompletion, 0, c.FrameLen()-PrefixLen)
	dst = append(dst, byte(c.Status), 0)
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(c.Reason)))
	dst = binary.BigEndian.AppendUint32(dst, c.Count)
	dst = binary.BigEndian.AppendUint64(dst, c.Flow)
	dst = binary.BigEndian.AppendUint64(dst, c.FirstSeq)
	dst = append(dst, byte(len(c.Src)), byte(len(c.Dst)))
	dst = append(dst, c.Src...)
	dst = append(dst, c.Dst...)
	return append(dst, c.Reason...), nil
}

// ParseCompletion parses the whole COMPLETION frame b, prefix included.
func ParseCompletion(b []byte) (Completion, error) {
	c, err := parseCompletion(b)
	if err != nil {
		return Completion{}, err
	}
	return c, nil
}

func parseCompletion(b []byte) (Completion, *Error) {
	const t = TypeCompletion
	var c Completion
	p, err := parseFrame(b, t)
	if err != nil {
		return c, err
	}
	c.Status = Status(b[complOffStatus])
	if !c.Status.Valid() {
		return c, errorf(t, "status", complOffStatus, "%d, want %d..%d", uint8(c.Status), StatusOK, StatusInternal)
	}
	if err := checkZero(t, "reserved", complOffReserved, uint64(b[complOffReserved])); err != nil {
		return c, err
	}
	reasonLen := int(binary.BigEndian.Uint16(b[complOffReasonLen:]))
	if err := checkRange(t, "reason length", complOffReasonLen, uint64(reasonLen), 0, MaxReason); err != nil {
		return c, err
	}
	c.Count = binary.BigEndian.Uint32(b[complOffCount:])
	if err := checkRange(t, "key count", complOffCount, uint64(c.Count), 1, MaxKeys); err != nil {
		return c, err
	}
	c.Flow = binary.BigEndian.Uint64(b[complOffFlow:])
	c.FirstSeq = binary.BigEndian.Uint64(b[complOffFirstSeq:])
	srcLen, dstLen := int(b[complOffSrcLen]), int(b[complOffDstLen])
	if err := checkRange(t, "src node ID length", complOffSrcLen, uint64(srcLen), 1, MaxNodeIDLen); err != nil {
		return c, err
	}
	if err := checkRange(t, "dst node ID length", complOffDstLen, uint64(dstLen), 1, MaxNodeIDLen); err != nil {
		return c, err
	}
	if want := completionFixed + srcLen + dstLen + reasonLen; int(p.Length) != want {
		return c, errorf(t, "length", 4, "%d, want %d + src %d + dst %d + reason %d = %d", p.Length, completionFixed, srcLen, dstLen, reasonLen, want)
	}
	src := b[complOffSrc : complOffSrc+srcLen]
	if err := checkNodeID(t, "src node ID", complOffSrc, src); err != nil {
		return c, err
	}
	dst := b[complOffSrc+srcLen : complOffSrc+srcLen+dstLen]
	if err := checkNodeID(t, "dst node ID", complOffSrc+srcLen, dst); err != nil {
		return c, err
	}
	off := complOffSrc + srcLen + dstLen
	c.Src, c.Dst, c.Reason = string(src), string(dst), string(b[off:])
	if err := checkReason(t, "reason", off, c.Reason); err != nil {
		return Completion{}, err
	}
	return c, nil
}
