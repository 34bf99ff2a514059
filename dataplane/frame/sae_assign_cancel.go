package frame

import (
	"encoding/binary"

	"github.com/qrelay/qrelay/ringstore"
)

// SAE_ASSIGN_CANCEL_ACK statuses.
const (
	SAECancelApplied = 0 // the keys named are gone from the receiver's in pool
	SAECancelRefused = 1 // not applied, and sending it again will not help: Msg says why
)

const (
	saeCancelAckOffCount  = 17
	saeCancelAckOffStatus = 19
	saeCancelAckOffMsg    = 22
	saeCancelAckFixed     = 24 // then the message
)

// SAEAssignCancel is an SAE_ASSIGN_CANCEL message (kind
// KindSAEAssignCancel): the sender gave up on the assignments of these
// keys (no acknowledgement in time) and discarded them; the receiver
// discards its copies too, assigned or not, and answers with an
// SAE_ASSIGN_CANCEL_ACK. The sender sends the same message again until
// that answer comes.
type SAEAssignCancel struct {
	Keys []ringstore.KeyID // 1..MaxSAEAssignCancelKeys
}

// Len returns the length of the whole message.
func (m *SAEAssignCancel) Len() int { return saeHeaderLen + 16*len(m.Keys) }

// AppendSAEAssignCancel appends the message m to dst. If m cannot be
// encoded it returns dst unchanged and an *Error naming the bad field.
func AppendSAEAssignCancel(dst []byte, m *SAEAssignCancel) ([]byte, error) {
	if n := len(m.Keys); n < 1 || n > MaxSAEAssignCancelKeys {
		return dst, msgErr(KindSAEAssignCancel, "count", saeOffCount, "%d, want 1..%d", n, MaxSAEAssignCancelKeys)
	}
	dst = append(dst, saeAssignVersion)
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(m.Keys)))
	for _, id := range m.Keys {
		dst = append(dst, id[:]...)
	}
	return dst, nil
}

// ParseSAEAssignCancel parses the whole SAE_ASSIGN_CANCEL message b.
func ParseSAEAssignCancel(b []byte) (SAEAssignCancel, error) {
	r := newMsgReader(KindSAEAssignCancel, b)
	r.version(saeAssignVersion)
	n := r.count("count", 1, MaxSAEAssignCancelKeys)
	var m SAEAssignCancel
	if r.ok() && 16*n != len(b)-r.off {
		r.failAt("count", saeOffCount, "%d, but %d bytes follow it, want %d (16 per key ID)", n, len(b)-r.off, 16*n)
	}
	if r.ok() {
		m.Keys = make([]ringstore.KeyID, n)
		r.label = "key"
		for i := range m.Keys {
			r.entry = i
			m.Keys[i] = r.keyID("ID")
		}
	}
	if err := r.end(); err != nil {
		return SAEAssignCancel{}, err
	}
	return m, nil
}

// SAEAssignCancelAck is an SAE_ASSIGN_CANCEL_ACK message (kind
// KindSAEAssignCancelAck): the outcome of one SAE_ASSIGN_CANCEL, which it
// names by the cancel's first key ID and its count. Key IDs are unique and
// a cancel sent again is the same message, so that names it exactly.
type SAEAssignCancelAck struct {
	First     ringstore.KeyID // the cancel's key 0
	Count     uint16          // the cancel's count, 1..MaxSAEAssignCancelKeys
	Status    uint8           // SAECancelApplied or SAECancelRefused
	Discarded uint16          // keys the receiver discarded, 0..Count (the others it did not hold)
	// Msg says why it was refused: at most MaxSAEAssignAckMsg bytes
	// (AppendSAEAssignCancelAck cuts a longer one), not checked for UTF-8.
	Msg string
}

// Len returns the length of the message, Msg cut as
// AppendSAEAssignCancelAck cuts it.
func (m *SAEAssignCancelAck) Len() int {
	return saeCancelAckFixed + min(len(m.Msg), MaxSAEAssignAckMsg)
}

// AppendSAEAssignCancelAck appends the message m to dst, Msg cut to
// MaxSAEAssignAckMsg bytes. If m cannot be encoded it returns dst
// unchanged and an *Error naming the bad field.
func AppendSAEAssignCancelAck(dst []byte, m *SAEAssignCancelAck) ([]byte, error) {
	const k = KindSAEAssignCancelAck
	switch {
	case m.Count < 1 || m.Count > MaxSAEAssignCancelKeys:
		return dst, msgErr(k, "count", saeCancelAckOffCount, "%d, want 1..%d", m.Count, MaxSAEAssignCancelKeys)
	case m.Status > SAECancelRefused:
		return dst, msgErr(k, "status", saeCancelAckOffStatus, "%d, want 0..%d", m.Status, SAECancelRefused)
	case m.Discarded > m.Count:
		return dst, msgErr(k, "keys discarded", saeCancelAckOffStatus+1, "%d, want 0..%d (the count)", m.Discarded, m.Count)
	}
	dst = append(dst, saeAssignVersion)
	dst = append(dst, m.First[:]...)
	dst = binary.BigEndian.AppendUint16(dst, m.Count)
	dst = append(dst, m.Status)
	dst = binary.BigEndian.AppendUint16(dst, m.Discarded)
	return appendText(dst, m.Msg, MaxSAEAssignAckMsg), nil
}

// ParseSAEAssignCancelAck parses the whole SAE_ASSIGN_CANCEL_ACK message b.
func ParseSAEAssignCancelAck(b []byte) (SAEAssignCancelAck, error) {
	r := newMsgReader(KindSAEAssignCancelAck, b)
	r.version(saeAssignVersion)
	m := SAEAssignCancelAck{First: r.keyID("first key ID")}
	m.Count = uint16(r.count("count", 1, MaxSAEAssignCancelKeys))
	m.Status = r.upTo("status", SAECancelRefused)
	off := r.off
	if m.Discarded = r.u16("keys discarded"); r.ok() && m.Discarded > m.Count {
		r.failAt("keys discarded", off, "%d, want 0..%d (the count)", m.Discarded, m.Count)
	}
	m.Msg = r.text("message", MaxSAEAssignAckMsg)
	if err := r.end(); err != nil {
		return SAEAssignCancelAck{}, err
	}
	return m, nil
}
