package frame

import "encoding/binary"

// Offsets of the ASSIGN_ACK fields from the start of the frame.
const (
	ackOffSeq       = 8
	ackOffStatus    = 16
	ackOffReserved  = 17
	ackOffReasonLen = 18
	ackOffReason    = 20
)

// ASSIGN_ACK status values.
const (
	ackStatusOK     = 0
	ackStatusFailed = 1
)

// AssignAck is an ASSIGN_ACK frame: the slave tells the master whether it
// has applied the ASSIGN with sequence number Seq.
type AssignAck struct {
	Seq    uint64 // the ASSIGN's sequence number
	OK     bool   // status 0 (OK) if true, 1 (Failed) if false
	Reason string // UTF-8 text, at most MaxReason bytes; empty is fine
}

// FrameLen returns the length of the whole frame.
func (a *AssignAck) FrameLen() int { return PrefixLen + assignAckFixed + len(a.Reason) }

func (a *AssignAck) validate() *Error {
	const t = TypeAssignAck
	if err := checkRange(t, "reason length", ackOffReasonLen, uint64(len(a.Reason)), 0, MaxReason); err != nil {
		return err
	}
	return checkReason(t, "reason", ackOffReason, a.Reason)
}

// AppendAssignAck appends the frame a to dst. If a cannot be encoded it
// returns dst unchanged and an *Error naming the bad field.
func AppendAssignAck(dst []byte, a *AssignAck) ([]byte, error) {
	if err := a.validate(); err != nil {
		return dst, err
	}
	dst = appendPrefix(dst, TypeAssignAck, 0, a.FrameLen()-PrefixLen)
	dst = binary.BigEndian.AppendUint64(dst, a.Seq)
	status := byte(ackStatusFailed)
	if a.OK {
		status = ackStatusOK
	}
	dst = append(dst, status, 0)
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(a.Reason)))
	return append(dst, a.Reason...), nil
}

// ParseAssignAck parses the whole ASSIGN_ACK frame b, prefix included.
func ParseAssignAck(b []byte) (AssignAck, error) {
	a, err := parseAssignAck(b)
	if err != nil {
		return AssignAck{}, err
	}
	return a, nil
}

func parseAssignAck(b []byte) (AssignAck, *Error) {
	const t = TypeAssignAck
	var a AssignAck
	p, err := parseFrame(b, t)
	if err != nil {
		return a, err
	}
	a.Seq = binary.BigEndian.Uint64(b[ackOffSeq:])
	switch b[ackOffStatus] {
	case ackStatusOK:
		a.OK = true
	case ackStatusFailed:
	default:
		return a, errorf(t, "status", ackOffStatus, "%d, want 0 (OK) or 1 (Failed)", b[ackOffStatus])
	}
	if err := checkZero(t, "reserved", ackOffReserved, uint64(b[ackOffReserved])); err != nil {
		return a, err
	}
	reasonLen := int(binary.BigEndian.Uint16(b[ackOffReasonLen:]))
	if err := checkRange(t, "reason length", ackOffReasonLen, uint64(reasonLen), 0, MaxReason); err != nil {
		return a, err
	}
	if want := assignAckFixed + reasonLen; int(p.Length) != want {
		return a, errorf(t, "length", 4, "%d, want %d + reason %d = %d", p.Length, assignAckFixed, reasonLen, want)
	}
	a.Reason = string(b[ackOffReason:])
	if err := checkReason(t, "reason", ackOffReason, a.Reason); err != nil {
		return AssignAck{}, err
	}
	return a, nil
}
