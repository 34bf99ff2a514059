package frame

import (
	"encoding/binary"
	"math"
)

// SAE_ASSIGN_ACK entry statuses.
const (
	saeAckOK     = 0
	saeAckFailed = 1
)

// saeAckEntryMin is the least an SAE_ASSIGN_ACK entry takes: request ID,
// status, message length.
const saeAckEntryMin = 8 + 1 + 2

// SAEAssignAck is an SAE_ASSIGN_ACK message (kind KindSAEAssignAck): the
// receiver of an SAE_ASSIGN answers for each of its assignments.
type SAEAssignAck struct {
	Results []SAEAssignResult // 1..65535
}

// SAEAssignResult is the outcome of one assignment.
type SAEAssignResult struct {
	RequestID uint64 // the assignment's
	OK        bool   // status 0 (recorded) if true, 1 (refused) if false
	// Msg says why it was refused, as text for operators: at most
	// MaxSAEAssignAckMsg bytes (AppendSAEAssignAck cuts a longer one,
	// possibly inside a UTF-8 sequence), not checked for UTF-8.
	Msg string
}

// Len returns the length of the whole message, each Msg cut as
// AppendSAEAssignAck cuts it.
func (m *SAEAssignAck) Len() int {
	n := saeHeaderLen
	for _, a := range m.Results {
		n += saeAckEntryMin + min(len(a.Msg), MaxSAEAssignAckMsg)
	}
	return n
}

// AppendSAEAssignAck appends the message m to dst, each Msg cut to
// MaxSAEAssignAckMsg bytes. If m cannot be encoded it returns dst
// unchanged and an *Error naming the bad field.
func AppendSAEAssignAck(dst []byte, m *SAEAssignAck) ([]byte, error) {
	if n := len(m.Results); n < 1 || n > math.MaxUint16 {
		return dst, msgErr(KindSAEAssignAck, "count", saeOffCount, "%d, want 1..%d", n, math.MaxUint16)
	}
	dst = append(dst, saeAssignVersion)
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(m.Results)))
	for _, a := range m.Results {
		dst = binary.BigEndian.AppendUint64(dst, a.RequestID)
		st := byte(saeAckFailed)
		if a.OK {
			st = saeAckOK
		}
		dst = append(dst, st)
		dst = appendText(dst, a.Msg, MaxSAEAssignAckMsg)
	}
	return dst, nil
}

// ParseSAEAssignAck parses the whole SAE_ASSIGN_ACK message b.
func ParseSAEAssignAck(b []byte) (SAEAssignAck, error) {
	r := newMsgReader(KindSAEAssignAck, b)
	r.version(saeAssignVersion)
	n := r.count("count", 1, math.MaxUint16)
	var m SAEAssignAck
	if !r.entries("count", saeOffCount, n, saeAckEntryMin) {
		return SAEAssignAck{}, r.end()
	}
	m.Results = make([]SAEAssignResult, n)
	r.label = "entry"
	for i := 0; i < n && r.ok(); i++ {
		r.entry = i
		a := &m.Results[i]
		a.RequestID = r.u64("request ID")
		a.OK = r.upTo("status", saeAckFailed) == saeAckOK
		a.Msg = r.text("message", MaxSAEAssignAckMsg)
	}
	if err := r.end(); err != nil {
		return SAEAssignAck{}, err
	}
	return m, nil
}
