package frame

import (
	"encoding/binary"
	"math"
	"strconv"

	"github.com/qrelay/qrelay/ringstore"
)

// The SAE assignment messages (docs/kmlink.md, section 10.1): when a master
// SAE takes keys from a node's out pool for node R (ETSI 014 enc_keys), the
// node tells R which SAEs may fetch them (SAE_ASSIGN), R answers for each
// assignment (SAE_ASSIGN_ACK), and a node that gave up waiting tells R to
// discard the keys (SAE_ASSIGN_CANCEL). Each message starts with the
// format version saeAssignVersion.
const (
	saeAssignVersion = 1
	// MaxSAEAssignAckMsg is the longest message of an SAE_ASSIGN_ACK
	// entry; AppendSAEAssignAck cuts a longer one.
	MaxSAEAssignAckMsg = 1024
	// MaxSAEAssignCancelKeys is the most key IDs one SAE_ASSIGN_CANCEL
	// names (ringstore.MaxBatch).
	MaxSAEAssignCancelKeys = 2048
)

// Offsets of the SAE_ASSIGN, SAE_ASSIGN_ACK and SAE_ASSIGN_CANCEL header
// fields from the start of the message; entries follow the count.
const (
	saeOffVersion = 0
	saeOffCount   = 1
	saeOffEntries = 3
	saeHeaderLen  = 3

	// saeAssignEntryMin is the least an SAE_ASSIGN entry takes: request ID,
	// a 1-byte master SAE ID, slave count, key count.
	saeAssignEntryMin = 8 + 1 + 1 + 1 + 2
)

// SAEAssign is an SAE_ASSIGN message (kind KindSAEAssign): a batch of
// assignments of keys the receiver holds in its in pool from the sender.
type SAEAssign struct {
	Assignments []SAEAssignment // 1..65535
}

// SAEAssignment is one assignment of an SAE_ASSIGN.
type SAEAssignment struct {
	RequestID uint64 // chosen by the sender; the SAE_ASSIGN_ACK names it
	Master    string // the master SAE's ID, 1..255 bytes
	// Slaves are the slave SAEs' IDs, 0..255 of 1..255 bytes each. The
	// receiver refuses, in its acknowledgement, an assignment with none.
	Slaves []string
	// Keys are the IDs of the keys assigned, 0..65535. The receiver
	// refuses, in its acknowledgement, an assignment of none or of more
	// than it takes at once.
	Keys []ringstore.KeyID
}

// Len returns the length of a's encoding in an SAE_ASSIGN.
func (a *SAEAssignment) Len() int {
	n := 8 + 1 + len(a.Master) + 1 + 2 + 16*len(a.Keys)
	for _, s := range a.Slaves {
		n += 1 + len(s)
	}
	return n
}

// Len returns the length of the whole message.
func (m *SAEAssign) Len() int {
	n := saeHeaderLen
	for i := range m.Assignments {
		n += m.Assignments[i].Len()
	}
	return n
}

func (m *SAEAssign) validate() *Error {
	const k = KindSAEAssign
	if n := len(m.Assignments); n < 1 || n > math.MaxUint16 {
		return msgErr(k, "count", saeOffCount, "%d, want 1..%d", n, math.MaxUint16)
	}
	off := saeOffEntries
	for i := range m.Assignments {
		a := &m.Assignments[i]
		e := "entry " + itoa(i) + " "
		if len(a.Master) < 1 || len(a.Master) > math.MaxUint8 {
			return msgErr(k, e+"master SAE length", off+8, "%d, want 1..255", len(a.Master))
		}
		if len(a.Slaves) > math.MaxUint8 {
			return msgErr(k, e+"slave count", off+9+len(a.Master), "%d, want 0..255", len(a.Slaves))
		}
		so := off + 10 + len(a.Master)
		for j, s := range a.Slaves {
			if len(s) < 1 || len(s) > math.MaxUint8 {
				return msgErr(k, e+"slave "+itoa(j)+" length", so, "%d, want 1..255", len(s))
			}
			so += 1 + len(s)
		}
		if len(a.Keys) > math.MaxUint16 {
			return msgErr(k, e+"key count", so, "%d, want 0..%d", len(a.Keys), math.MaxUint16)
		}
		off += a.Len()
	}
	return nil
}

// AppendSAEAssign appends the message m to dst. If m cannot be encoded it
// returns dst unchanged and an *Error naming the bad field.
func AppendSAEAssign(dst []byte, m *SAEAssign) ([]byte, error) {
	if err := m.validate(); err != nil {
		return dst, err
	}
	dst = append(dst, saeAssignVersion)
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(m.Assignments)))
	for i := range m.Assignments {
		a := &m.Assignments[i]
		dst = binary.BigEndian.AppendUint64(dst, a.RequestID)
		dst = appendStr(dst, a.Master)
		dst = append(dst, byte(len(a.Slaves)))
		for _, s := range a.Slaves {
			dst = appendStr(dst, s)
		}
		dst = binary.BigEndian.AppendUint16(dst, uint16(len(a.Keys)))
		for _, id := range a.Keys {
			dst = append(dst, id[:]...)
		}
	}
	return dst, nil
}

// ParseSAEAssign parses the whole SAE_ASSIGN message b (a ROUTED payload).
// Nothing of the result aliases b.
func ParseSAEAssign(b []byte) (SAEAssign, error) {
	r := newMsgReader(KindSAEAssign, b)
	r.version(saeAssignVersion)
	n := r.count("count", 1, math.MaxUint16)
	var m SAEAssign
	if !r.entries("count", saeOffCount, n, saeAssignEntryMin) {
		return SAEAssign{}, r.end()
	}
	m.Assignments = make([]SAEAssignment, n)
	r.label = "entry"
	for i := 0; i < n && r.ok(); i++ {
		r.entry = i
		a := &m.Assignments[i]
		a.RequestID = r.u64("request ID")
		a.Master = r.str("master SAE")
		if ns := int(r.u8("slave count")); ns > 0 && r.ok() {
			a.Slaves = make([]string, 0, ns)
			for j := 0; j < ns && r.ok(); j++ {
				a.Slaves = append(a.Slaves, r.str("slave "+itoa(j)))
			}
		}
		off := r.off
		nk := int(r.u16("key count"))
		if nk > 0 && r.ok() {
			if 16*nk > len(b)-r.off {
				r.failAt("key count", off, "%d, but only %d bytes are left for 16-byte key IDs", nk, len(b)-r.off)
				break
			}
			a.Keys = make([]ringstore.KeyID, nk)
			for j := range a.Keys {
				a.Keys[j] = r.keyID("key ID")
			}
		}
	}
	if err := r.end(); err != nil {
		return SAEAssign{}, err
	}
	return m, nil
}

func itoa(i int) string { return strconv.Itoa(i) }
