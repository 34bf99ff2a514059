package frame

import "encoding/binary"

// Offsets of the DISCARD fields from the start of the frame.
const (
	discardOffCount    = 8
	discardOffFlow     = 12
	discardOffFirstSeq = 20
	discardOffSrcLen   = 28
	discardOffDstLen   = 29
	discardOffSrc      = 30
)

// Discard is a DISCARD frame: the source tells the destination to drop the
// keys of one RELAY, because no COMPLETION for them reached the source and it
// has reported them lost.
type Discard struct {
	Count    uint32 // number of keys, 1..MaxKeys
	Flow     uint64 // flow ID of the RELAY
	FirstSeq uint64 // sequence number of its first key
	Src, Dst string // source and destination node IDs of the RELAY
}

// FrameLen returns the length of the whole frame.
func (d *Discard) FrameLen() int { return PrefixLen + discardFixed + len(d.Src) + len(d.Dst) }

func (d *Discard) validate() *Error {
	const t = TypeDiscard
	if err := checkRange(t, "key count", discardOffCount, uint64(d.Count), 1, MaxKeys); err != nil {
		return err
	}
	if err := checkNodeID(t, "src node ID", discardOffSrc, d.Src); err != nil {
		return err
	}
	return checkNodeID(t, "dst node ID", discardOffSrc+len(d.Src), d.Dst)
}

// AppendDiscard appends the frame d to dst. If d cannot be encoded it
// returns dst unchanged and an *Error naming the bad field.
func AppendDiscard(dst []byte, d *Discard) ([]byte, error) {
	if err := d.validate(); err != nil {
		return dst, err
	}
	dst = appendPrefix(dst, TypeDiscard, 0, d.FrameLen()-PrefixLen)
	dst = binary.BigEndian.AppendUint32(dst, d.Count)
	dst = binary.BigEndian.AppendUint64(dst, d.Flow)
	dst = binary.BigEndian.AppendUint64(dst, d.FirstSeq)
	dst = append(dst, byte(len(d.Src)), byte(len(d.Dst)))
	dst = append(dst, d.Src...)
	return append(dst, d.Dst...), nil
}

// ParseDiscard parses the whole DISCARD frame b, prefix included.
func ParseDiscard(b []byte) (Discard, error) {
	d, err := parseDiscard(b)
	if err != nil {
		return Discard{}, err
	}
	return d, nil
}

func parseDiscard(b []byte) (Discard, *Error) {
	const t = TypeDiscard
	var d Discard
	p, err := parseFrame(b, t)
	if err != nil {
		return d, err
	}
	d.Count = binary.BigEndian.Uint32(b[discardOffCount:])
	if err := checkRange(t, "key count", discardOffCount, uint64(d.Count), 1, MaxKeys); err != nil {
		return d, err
	}
	d.Flow = binary.BigEndian.Uint64(b[discardOffFlow:])
	d.FirstSeq = binary.BigEndian.Uint64(b[discardOffFirstSeq:])
	srcLen, dstLen := int(b[discardOffSrcLen]), int(b[discardOffDstLen])
	if err := checkRange(t, "src node ID length", discardOffSrcLen, uint64(srcLen), 1, MaxNodeIDLen); err != nil {
		return d, err
	}
	if err := checkRange(t, "dst node ID length", discardOffDstLen, uint64(dstLen), 1, MaxNodeIDLen); err != nil {
		return d, err
	}
	if want := discardFixed + srcLen + dstLen; int(p.Length) != want {
		return d, errorf(t, "length", 4, "%d, want %d + src %d + dst %d = %d", p.Length, discardFixed, srcLen, dstLen, want)
	}
	src := b[discardOffSrc : discardOffSrc+srcLen]
	if err := checkNodeID(t, "src node ID", discardOffSrc, src); err != nil {
		return d, err
	}
	dst := b[discardOffSrc+srcLen:]
	if err := checkNodeID(t, "dst node ID", discardOffSrc+srcLen, dst); err != nil {
		return d, err
	}
	d.Src, d.Dst = string(src), string(dst)
	return d, nil
}
