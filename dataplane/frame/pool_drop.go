package frame

import (
	"encoding/binary"
	"strconv"

	"github.com/qrelay/qrelay/ringstore"
)

// PoolDropReason says why reconciliation removes a key from a pool, or
// that it keeps it as an orphan. O is the out pool of the node that
// sourced the key, I the other node's in pool.
type PoolDropReason uint8

// Drop reasons.
const (
	PoolDropMissing     PoolDropReason = 1 // in O, not in I
	PoolDropUnconfirmed PoolDropReason = 2 // free in I, not in O
	PoolDropReserved    PoolDropReason = 3 // a reservation O's node lost in a restart
	PoolDropStale       PoolDropReason = 4 // assigned in I, still free in O
	PoolDropOrphan      PoolDropReason = 5 // assigned in I, gone from O, O's node restarted: kept until it expires
)

var poolDropReasonNames = [...]string{
	PoolDropMissing:     "missing_at_other_end",
	PoolDropUnconfirmed: "unconfirmed",
	PoolDropReserved:    "reservation_lost",
	PoolDropStale:       "stale_assignment",
	PoolDropOrphan:      "orphan",
}

// String returns the reason's name, such as "missing_at_other_end", or
// "unknown".
func (r PoolDropReason) String() string {
	if int(r) < len(poolDropReasonNames) && poolDropReasonNames[r] != "" {
		return poolDropReasonNames[r]
	}
	return "unknown"
}

// Applies reports whether reason r can be given for a key of the in pool
// (else the out pool) that was assigned (else free) in the inventory: the
// outcomes the reconciliation rules give.
func (r PoolDropReason) Applies(in, assigned bool) bool {
	switch r {
	case PoolDropMissing:
		return !in
	case PoolDropUnconfirmed:
		return in && !assigned
	case PoolDropReserved:
		return in || assigned
	case PoolDropStale:
		return in == assigned
	case PoolDropOrphan:
		return in && assigned
	}
	return false
}

// POOL_DROP_ACK statuses.
const (
	PoolDropApplied = 0 // the chunk is applied
	PoolDropFailed  = 1 // a pool refused: the round fails
)

const (
	poolDropFixed      = 19 // then the keys
	poolDropOffChunk   = 9
	poolDropOffCount   = 17
	poolDropKeyLen     = 16 + 1 + 1 + 1 // key ID, pool, state, reason
	poolDropAckFixed   = 24             // then the message
	poolDropAckOffStat = 13
)

// PoolDrop is a POOL_DROP message (kind KindPoolDrop): one chunk of the
// keys the receiver drops from its pools shared with the sender.
type PoolDrop struct {
	Round  uint64 // the round's ID, nonzero
	Chunk  uint32 // this chunk, less than Chunks
	Chunks uint32 // how many the round sends, at least 1
	Drops  []PoolDropKey
}

// PoolDropKey is one key a POOL_DROP drops (or, PoolDropOrphan, keeps
// until it expires).
type PoolDropKey struct {
	ID       ringstore.KeyID
	In       bool // the receiver's in pool (PoolIn); else its out pool (PoolOut)
	Assigned bool // its state in the inventory: it is dropped only if it still has it
	Reason   PoolDropReason
}

// Len returns the length of the message.
func (m *PoolDrop) Len() int { return poolDropFixed + poolDropKeyLen*len(m.Drops) }

// AppendPoolDrop appends the message m to dst. If m cannot be encoded it
// returns dst unchanged and an *Error naming the bad field.
func AppendPoolDrop(dst []byte, m *PoolDrop) ([]byte, error) {
	const k = KindPoolDrop
	switch {
	case m.Round == 0:
		return dst, msgErr(k, "round ID", 1, "0, want a nonzero ID")
	case m.Chunk >= m.Chunks:
		return dst, msgErr(k, "chunk", poolDropOffChunk, "chunk %d of %d, want less than chunks", m.Chunk, m.Chunks)
	case len(m.Drops) > MaxPoolChunk:
		return dst, msgErr(k, "count", poolDropOffCount, "%d, want 0..%d", len(m.Drops), MaxPoolChunk)
	}
	for i, d := range m.Drops {
		if !d.Reason.Applies(d.In, d.Assigned) {
			return dst, msgErr(k, "key "+itoa(i)+" reason", poolDropFixed+poolDropKeyLen*i+18, "%s", dropMismatch(d))
		}
	}
	dst = append(dst, poolSyncVersion)
	dst = binary.BigEndian.AppendUint64(dst, m.Round)
	dst = binary.BigEndian.AppendUint32(dst, m.Chunk)
	dst = binary.BigEndian.AppendUint32(dst, m.Chunks)
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(m.Drops)))
	for _, d := range m.Drops {
		dst = append(dst, d.ID[:]...)
		dst = append(dst, b2u8(d.In), b2u8(d.Assigned), byte(d.Reason))
	}
	return dst, nil
}

func dropMismatch(d PoolDropKey) string {
	state, pool := "free", "out"
	if d.Assigned {
		state = "assigned"
	}
	if d.In {
		pool = "in"
	}
	return strconv.Itoa(int(d.Reason)) + " (" + d.Reason.String() + ") does not apply to a key " + state + " in the " + pool + " pool"
}

// ParsePoolDrop parses the whole POOL_DROP message b.
func ParsePoolDrop(b []byte) (PoolDrop, error) {
	r := newMsgReader(KindPoolDrop, b)
	r.version(poolSyncVersion)
	m := PoolDrop{Round: r.id64("round ID"), Chunk: r.u32("chunk"), Chunks: r.u32("chunks")}
	if r.ok() && m.Chunk >= m.Chunks {
		r.failAt("chunk", poolDropOffChunk, "chunk %d of %d, want less than chunks", m.Chunk, m.Chunks)
	}
	n := r.count("count", 0, MaxPoolChunk)
	if r.ok() && n*poolDropKeyLen != len(b)-r.off {
		r.failAt("count", poolDropOffCount, "%d, but %d bytes follow it, want %d (%d per key)", n, len(b)-r.off, n*poolDropKeyLen, poolDropKeyLen)
	}
	if r.ok() {
		m.Drops = make([]PoolDropKey, n)
		r.label = "key"
		for i := 0; i < n && r.ok(); i++ {
			r.entry = i
			d := &m.Drops[i]
			d.ID = r.keyID("ID")
			d.In = r.bool8("pool")
			d.Assigned = r.bool8("state")
			off := r.off
			d.Reason = PoolDropReason(r.upTo("reason", uint8(PoolDropOrphan)))
			if r.ok() && !d.Reason.Applies(d.In, d.Assigned) {
				r.failAt("reason", off, "%s", dropMismatch(*d))
			}
		}
	}
	if err := r.end(); err != nil {
		return PoolDrop{}, err
	}
	return m, nil
}

// PoolDropAck is a POOL_DROP_ACK message (kind KindPoolDropAck): the
// outcome of one POOL_DROP chunk.
type PoolDropAck struct {
	Round   uint64 // the round's ID, nonzero
	Chunk   uint32 // the chunk's
	Status  uint8  // PoolDropApplied or PoolDropFailed
	Dropped uint32 // keys dropped
	Orphans uint32 // keys kept as orphans
	// Msg says why it failed: at most MaxPoolSyncMsg bytes
	// (AppendPoolDropAck cuts a longer one), not checked for UTF-8.
	Msg string
}

// Len returns the length of the message, Msg cut as AppendPoolDropAck
// cuts it.
func (m *PoolDropAck) Len() int { return poolDropAckFixed + min(len(m.Msg), MaxPoolSyncMsg) }

// AppendPoolDropAck appends the message m to dst, Msg cut to
// MaxPoolSyncMsg bytes. If m cannot be encoded it returns dst unchanged
// and an *Error naming the bad field.
func AppendPoolDropAck(dst []byte, m *PoolDropAck) ([]byte, error) {
	const k = KindPoolDropAck
	if m.Round == 0 {
		return dst, msgErr(k, "round ID", 1, "0, want a nonzero ID")
	}
	if m.Status > PoolDropFailed {
		return dst, msgErr(k, "status", poolDropAckOffStat, "%d, want 0..%d", m.Status, PoolDropFailed)
	}
	dst = append(dst, poolSyncVersion)
	dst = binary.BigEndian.AppendUint64(dst, m.Round)
	dst = binary.BigEndian.AppendUint32(dst, m.Chunk)
	dst = append(dst, m.Status)
	dst = binary.BigEndian.AppendUint32(dst, m.Dropped)
	dst = binary.BigEndian.AppendUint32(dst, m.Orphans)
	return appendText(dst, m.Msg, MaxPoolSyncMsg), nil
}

// ParsePoolDropAck parses the whole POOL_DROP_ACK message b.
func ParsePoolDropAck(b []byte) (PoolDropAck, error) {
	r := newMsgReader(KindPoolDropAck, b)
	r.version(poolSyncVersion)
	m := PoolDropAck{Round: r.id64("round ID"), Chunk: r.u32("chunk"), Status: r.upTo("status", PoolDropFailed)}
	m.Dropped, m.Orphans = r.u32("keys dropped"), r.u32("keys kept as orphans")
	m.Msg = r.text("message", MaxPoolSyncMsg)
	if err := r.end(); err != nil {
		return PoolDropAck{}, err
	}
	return m, nil
}
