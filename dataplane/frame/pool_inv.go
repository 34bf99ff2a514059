package frame

import (
	"encoding/binary"

	"github.com/qrelay/qrelay/ringstore"
)

// The two pools of a node shared with another, as POOL_INV_REQ, POOL_INV
// and POOL_DROP name them: the receiver's own.
const (
	PoolOut = 0 // the receiver's out pool for the sender: keys it sourced
	PoolIn  = 1 // the receiver's in pool from the sender: keys the sender sourced
)

const (
	poolInvReqLen   = 14
	poolInvFixed    = 16 // then the keys
	poolInvOffCount = 14
	poolInvKeyLen   = 16 + 1 // key ID, state
)

// PoolInvReq is a POOL_INV_REQ message (kind KindPoolInvReq): the
// coordinator asks for one chunk of an inventory.
type PoolInvReq struct {
	Round uint64 // the round's ID, nonzero
	Pool  uint8  // PoolOut or PoolIn
	Chunk uint32 // the inventory from key Chunk × MaxPoolChunk on
}

// Len returns the length of the message.
func (*PoolInvReq) Len() int { return poolInvReqLen }

func checkRoundPool(k Kind, round uint64, pool uint8) *Error {
	if round == 0 {
		return msgErr(k, "round ID", 1, "0, want a nonzero ID")
	}
	if pool > PoolIn {
		return msgErr(k, "pool", 9, "%d, want 0..%d", pool, PoolIn)
	}
	return nil
}

// AppendPoolInvReq appends the message m to dst. If m cannot be encoded
// it returns dst unchanged and an *Error naming the bad field.
func AppendPoolInvReq(dst []byte, m *PoolInvReq) ([]byte, error) {
	if err := checkRoundPool(KindPoolInvReq, m.Round, m.Pool); err != nil {
		return dst, err
	}
	dst = append(dst, poolSyncVersion)
	dst = binary.BigEndian.AppendUint64(dst, m.Round)
	dst = append(dst, m.Pool)
	return binary.BigEndian.AppendUint32(dst, m.Chunk), nil
}

// ParsePoolInvReq parses the whole POOL_INV_REQ message b.
func ParsePoolInvReq(b []byte) (PoolInvReq, error) {
	r := newMsgReader(KindPoolInvReq, b)
	r.version(poolSyncVersion)
	m := PoolInvReq{Round: r.id64("round ID"), Pool: r.upTo("pool", PoolIn), Chunk: r.u32("chunk")}
	if err := r.end(); err != nil {
		return PoolInvReq{}, err
	}
	return m, nil
}

// PoolInv is a POOL_INV message (kind KindPoolInv): one chunk of the
// inventory of one of the sender's pools, as asked.
type PoolInv struct {
	Round uint64 // the round's ID, nonzero
	Pool  uint8  // PoolOut or PoolIn, as asked
	Chunk uint32 // as asked
	// Keys are the chunk's keys in ascending ID order, no ID twice:
	// 0..MaxPoolChunk, fewer only in the last chunk.
	Keys []ringstore.KeyState
}

// Len returns the length of the message.
func (m *PoolInv) Len() int { return poolInvFixed + poolInvKeyLen*len(m.Keys) }

// AppendPoolInv appends the message m to dst. If m cannot be encoded it
// returns dst unchanged and an *Error naming the bad field.
func AppendPoolInv(dst []byte, m *PoolInv) ([]byte, error) {
	const k = KindPoolInv
	if err := checkRoundPool(k, m.Round, m.Pool); err != nil {
		return dst, err
	}
	if len(m.Keys) > MaxPoolChunk {
		return dst, msgErr(k, "count", poolInvOffCount, "%d, want 0..%d", len(m.Keys), MaxPoolChunk)
	}
	for i := 1; i < len(m.Keys); i++ {
		if ringstore.CompareKeyIDs(m.Keys[i-1].ID, m.Keys[i].ID) >= 0 {
			return dst, msgErr(k, "key "+itoa(i)+" ID", poolInvFixed+poolInvKeyLen*i, "%s does not follow key %d (%s) in ascending order", m.Keys[i].ID, i-1, m.Keys[i-1].ID)
		}
	}
	dst = append(dst, poolSyncVersion)
	dst = binary.BigEndian.AppendUint64(dst, m.Round)
	dst = append(dst, m.Pool)
	dst = binary.BigEndian.AppendUint32(dst, m.Chunk)
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(m.Keys)))
	for _, ks := range m.Keys {
		dst = append(dst, ks.ID[:]...)
		dst = append(dst, b2u8(ks.Owned))
	}
	return dst, nil
}

// ParsePoolInv parses the whole POOL_INV message b.
func ParsePoolInv(b []byte) (PoolInv, error) {
	r := newMsgReader(KindPoolInv, b)
	r.version(poolSyncVersion)
	m := PoolInv{Round: r.id64("round ID"), Pool: r.upTo("pool", PoolIn), Chunk: r.u32("chunk")}
	n := r.count("count", 0, MaxPoolChunk)
	if r.ok() && n*poolInvKeyLen != len(b)-r.off {
		r.failAt("count", poolInvOffCount, "%d, but %d bytes follow it, want %d (%d per key)", n, len(b)-r.off, n*poolInvKeyLen, poolInvKeyLen)
	}
	if r.ok() {
		m.Keys = make([]ringstore.KeyState, n)
		r.label = "key"
		for i := 0; i < n && r.ok(); i++ {
			r.entry = i
			off := r.off
			ks := &m.Keys[i]
			ks.ID = r.keyID("ID")
			ks.Owned = r.bool8("state")
			if i > 0 && r.ok() && ringstore.CompareKeyIDs(m.Keys[i-1].ID, ks.ID) >= 0 {
				r.failAt("ID", off, "%s does not follow key %d (%s) in ascending order", ks.ID, i-1, m.Keys[i-1].ID)
			}
		}
	}
	if err := r.end(); err != nil {
		return PoolInv{}, err
	}
	return m, nil
}
