package frame

import "encoding/binary"

// The pool reconciliation messages (docs/kmlink.md, section 10.3): after
// either of two nodes restarts, they compare the end-to-end key pools they
// share and drop what is not usable at both ends. POOL_HELLO tells a node's
// boot ID; a round is POOL_SYNC_REQ and POOL_SYNC_READY, then POOL_INV_REQ
// and POOL_INV (pool_inv.go), then POOL_DROP and POOL_DROP_ACK
// (pool_drop.go). Each message starts with the format version
// poolSyncVersion, and has exactly the length its fields give. Boot IDs and
// round IDs are never 0.
const (
	poolSyncVersion = 1
	// MaxPoolSyncMsg is the longest message of a POOL_SYNC_READY or a
	// POOL_DROP_ACK; the Append functions cut a longer one.
	MaxPoolSyncMsg = 256
	// MaxPoolChunk is the most keys one POOL_INV or POOL_DROP carries
	// (ringstore.MaxBatch).
	MaxPoolChunk = 2048
)

// Flag bits of POOL_HELLO, POOL_SYNC_REQ and POOL_SYNC_READY.
const (
	poolFlagDurable   = 1 << 0 // the sender keeps its pools in durable storage
	poolFlagRestarted = 1 << 1 // the sender has not completed a round with the receiver since it started
)

// POOL_SYNC_READY statuses.
const (
	PoolReadyOK      = 0 // paused and inventoried
	PoolReadyRefused = 1 // the request names another boot of the receiver
	PoolReadyFailed  = 2 // the receiver could not pause: something in flight did not settle in time
)

// Message lengths and offsets of the fixed-size messages.
const (
	poolHelloLen    = 18
	poolSyncReqLen  = 26
	poolReadyFixed  = 21 // then the message
	poolReadyOffMsg = 19 // the message length
)

func poolFlags(durable, restarted bool) byte {
	var f byte
	if durable {
		f |= poolFlagDurable
	}
	if restarted {
		f |= poolFlagRestarted
	}
	return f
}

// flags reads a flags byte with at most the bits of allowed set.
func (r *msgReader) flags(field string, allowed byte) (durable, restarted bool) {
	off := r.off
	f := r.u8(field)
	if r.err == nil && f&^allowed != 0 {
		r.failAt(field, off, "%#02x has undefined bits %#02x, want only %#02x", f, f&^allowed, allowed)
	}
	return f&poolFlagDurable != 0, f&poolFlagRestarted != 0
}

// PoolHello is a POOL_HELLO message (kind KindPoolHello): the sender's
// boot ID, drawn at each start, and the receiver's as the sender last
// heard it.
type PoolHello struct {
	Boot    uint64 // the sender's boot ID, nonzero
	Durable bool   // the sender keeps its pools in durable storage
	Seen    uint64 // the receiver's boot ID as the sender last heard it; 0: none
}

// Len returns the length of the message.
func (*PoolHello) Len() int { return poolHelloLen }

// AppendPoolHello appends the message m to dst. If m cannot be encoded it
// returns dst unchanged and an *Error naming the bad field.
func AppendPoolHello(dst []byte, m *PoolHello) ([]byte, error) {
	if m.Boot == 0 {
		return dst, msgErr(KindPoolHello, "boot ID", 1, "0, want a nonzero ID")
	}
	dst = append(dst, poolSyncVersion)
	dst = binary.BigEndian.AppendUint64(dst, m.Boot)
	dst = append(dst, poolFlags(m.Durable, false))
	return binary.BigEndian.AppendUint64(dst, m.Seen), nil
}

// ParsePoolHello parses the whole POOL_HELLO message b.
func ParsePoolHello(b []byte) (PoolHello, error) {
	r := newMsgReader(KindPoolHello, b)
	r.version(poolSyncVersion)
	m := PoolHello{Boot: r.id64("boot ID")}
	m.Durable, _ = r.flags("flags", poolFlagDurable)
	m.Seen = r.u64("boot ID seen")
	if err := r.end(); err != nil {
		return PoolHello{}, err
	}
	return m, nil
}

// PoolSyncReq is a POOL_SYNC_REQ message (kind KindPoolSyncReq): the
// coordinator X of a round asks the other node Y to pause supply and take
// its inventory.
type PoolSyncReq struct {
	Round     uint64 // the round's ID, random, nonzero
	Boot      uint64 // X's boot ID, nonzero
	Target    uint64 // Y's boot ID as X heard it, nonzero: Y refuses a request for another
	Durable   bool   // X keeps its pools in durable storage
	Restarted bool   // X has not completed a round with Y since its start
}

// Len returns the length of the message.
func (*PoolSyncReq) Len() int { return poolSyncReqLen }

// AppendPoolSyncReq appends the message m to dst. If m cannot be encoded
// it returns dst unchanged and an *Error naming the bad field.
func AppendPoolSyncReq(dst []byte, m *PoolSyncReq) ([]byte, error) {
	for _, f := range []struct {
		name string
		off  int
		v    uint64
	}{{"round ID", 1, m.Round}, {"boot ID", 9, m.Boot}, {"target boot ID", 17, m.Target}} {
		if f.v == 0 {
			return dst, msgErr(KindPoolSyncReq, f.name, f.off, "0, want a nonzero ID")
		}
	}
	dst = append(dst, poolSyncVersion)
	dst = binary.BigEndian.AppendUint64(dst, m.Round)
	dst = binary.BigEndian.AppendUint64(dst, m.Boot)
	dst = binary.BigEndian.AppendUint64(dst, m.Target)
	return append(dst, poolFlags(m.Durable, m.Restarted)), nil
}

// ParsePoolSyncReq parses the whole POOL_SYNC_REQ message b.
func ParsePoolSyncReq(b []byte) (PoolSyncReq, error) {
	r := newMsgReader(KindPoolSyncReq, b)
	r.version(poolSyncVersion)
	m := PoolSyncReq{Round: r.id64("round ID"), Boot: r.id64("boot ID"), Target: r.id64("target boot ID")}
	m.Durable, m.Restarted = r.flags("flags", poolFlagDurable|poolFlagRestarted)
	if err := r.end(); err != nil {
		return PoolSyncReq{}, err
	}
	return m, nil
}

// PoolSyncReady is a POOL_SYNC_READY message (kind KindPoolSyncReady): Y's
// answer to a POOL_SYNC_REQ.
type PoolSyncReady struct {
	Round     uint64 // the request's round ID, nonzero
	Status    uint8  // PoolReadyOK, PoolReadyRefused or PoolReadyFailed
	Durable   bool   // Y keeps its pools in durable storage
	Restarted bool   // Y has not completed a round with X since its start
	OutKeys   uint32 // keys in Y's out pool for X; 0 unless PoolReadyOK
	InKeys    uint32 // keys in Y's in pool from X; 0 unless PoolReadyOK
	// Msg says why Y refused or failed: empty with PoolReadyOK, at most
	// MaxPoolSyncMsg bytes (AppendPoolSyncReady cuts a longer one), not
	// checked for UTF-8.
	Msg string
}

// Len returns the length of the message, Msg cut as AppendPoolSyncReady
// cuts it.
func (m *PoolSyncReady) Len() int { return poolReadyFixed + min(len(m.Msg), MaxPoolSyncMsg) }

// AppendPoolSyncReady appends the message m to dst, Msg cut to
// MaxPoolSyncMsg bytes. If m cannot be encoded it returns dst unchanged
// and an *Error naming the bad field.
func AppendPoolSyncReady(dst []byte, m *PoolSyncReady) ([]byte, error) {
	const k = KindPoolSyncReady
	switch {
	case m.Round == 0:
		return dst, msgErr(k, "round ID", 1, "0, want a nonzero ID")
	case m.Status > PoolReadyFailed:
		return dst, msgErr(k, "status", 9, "%d, want 0..%d", m.Status, PoolReadyFailed)
	case m.Status != PoolReadyOK && (m.OutKeys != 0 || m.InKeys != 0):
		return dst, msgErr(k, "out pool keys", 11, "status %d with key counts %d and %d, want 0", m.Status, m.OutKeys, m.InKeys)
	case m.Status == PoolReadyOK && m.Msg != "":
		return dst, msgErr(k, "message length", poolReadyOffMsg, "status 0 with a message, want none")
	}
	dst = append(dst, poolSyncVersion)
	dst = binary.BigEndian.AppendUint64(dst, m.Round)
	dst = append(dst, m.Status, poolFlags(m.Durable, m.Restarted))
	dst = binary.BigEndian.AppendUint32(dst, m.OutKeys)
	dst = binary.BigEndian.AppendUint32(dst, m.InKeys)
	return appendText(dst, m.Msg, MaxPoolSyncMsg), nil
}

// ParsePoolSyncReady parses the whole POOL_SYNC_READY message b.
func ParsePoolSyncReady(b []byte) (PoolSyncReady, error) {
	r := newMsgReader(KindPoolSyncReady, b)
	r.version(poolSyncVersion)
	m := PoolSyncReady{Round: r.id64("round ID"), Status: r.upTo("status", PoolReadyFailed)}
	m.Durable, m.Restarted = r.flags("flags", poolFlagDurable|poolFlagRestarted)
	m.OutKeys, m.InKeys = r.u32("out pool keys"), r.u32("in pool keys")
	m.Msg = r.text("message", MaxPoolSyncMsg)
	if r.ok() && m.Status != PoolReadyOK && (m.OutKeys != 0 || m.InKeys != 0) {
		r.failAt("out pool keys", 11, "status %d with key counts %d and %d, want 0", m.Status, m.OutKeys, m.InKeys)
	}
	if r.ok() && m.Status == PoolReadyOK && m.Msg != "" {
		r.failAt("message length", poolReadyOffMsg, "status 0 with a message, want none")
	}
	if err := r.end(); err != nil {
		return PoolSyncReady{}, err
	}
	return m, nil
}
