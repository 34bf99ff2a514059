package supply

import (
	"encoding/binary"
	"fmt"

	"github.com/qrelay/qrelay/ringstore"
)

// Pool reconciliation ("POOL_SYNC"): after either of two nodes restarts,
// they compare the end-to-end key pools they share and drop what is not
// usable at both ends (DESIGN.md, invariant 8). A node's out pool for a
// remote holds the keys it sourced, the remote's in pool the same keys; a
// restart loses what was in memory: in memory mode the pools themselves,
// in durable mode the relays whose COMPLETION had not arrived, the list
// of reservations, the assignments in flight. pool_rules.go says what is
// dropped; this file says how the two nodes agree on it; pool_peer.go
// runs it.
//
// # Who, and when
//
// Each node draws a random 64-bit boot ID at start and sends POOL_HELLO
// to every node its router reaches, with backoff (250 ms doubling to
// 4 s) until that node's HELLO shows it has heard this boot ID. A node
// answers a HELLO that tells it something new (a boot ID not heard
// before) or that shows the sender has not heard its own, so one HELLO
// each way ends the exchange. A node remembers the boot ID last heard
// from each node: a new one means that node restarted. The node with the
// lower ID of a pair coordinates: whenever it has not completed a round
// with the other's current boot ID, it runs one. A round that fails is
// retried with backoff (1 s doubling to 30 s).
//
// # A round
//
// Coordinator X, other node Y. X pauses supply with Y (pool_gate.go: relays to
// Y and enc_keys for SAEs of Y's wait, enc_keys at most
// api.etsi014.assign_timeout before it answers 503 saying why; no new
// reservations),
// waits until nothing it started towards Y is in flight (relays until
// their completion, assignments until their acknowledgement), and sends
// POOL_SYNC_REQ, once a second until answered. Y pauses and waits the
// same way, takes the inventory of its two pools shared with X and
// answers POOL_SYNC_READY with their sizes. X takes its own inventory
// and pulls Y's with POOL_INV_REQ, one chunk of 2,048 keys after the
// other, each asked again after a second without an answer. X applies
// the rules, drops its own share, and sends Y its share in POOL_DROP
// chunks, each repeated until POOL_DROP_ACK; Y applies each chunk once.
// The round is done at Y when it has applied every chunk, at X when
// every chunk is acknowledged; each then resumes supply. A step without
// progress for 5 s ends the round at X, 10 s without a message from X at
// Y, and both resume; waiting for what is in flight is bounded by
// km.completion_timeout + api.etsi014.assign_timeout + 2 s. A drop names
// the state the key had in the inventory and applies only if it still
// has it, so a repeated or late chunk never removes a key handed out
// since. dec_keys is not paused: it hands out keys assigned at this end,
// which the rules never drop at the other end (a key the other end still
// holds was never handed to a master; see pool_rules.go).
//
// A round holds both nodes' inventories of the pools the two share: 17
// bytes a key, at most the pools' size (pools.slots each); the
// coordinator refuses an inventory above maxSyncInventory keys a pool.
//
// # Messages
//
// Routed messages (relay.Engine.SendRouted), integers big-endian, each
// starting with the format version (poolSyncVersion, 1); a receiver
// drops, and logs, a message of another version or whose length or
// fields are not exactly as below. Boot IDs and round IDs are never 0.
//
// POOL_HELLO (kind 37), 18 bytes:
//
//	offset  size  field
//	0       1     version
//	1       8     boot ID of the sender
//	9       1     flags: bit 0 durable storage; other bits 0
//	10      8     the receiver's boot ID as the sender last heard it (0: none)
//
// POOL_SYNC_REQ (kind 38), X to Y, 26 bytes:
//
//	0       1     version
//	1       8     round ID (random)
//	9       8     X's boot ID
//	17      8     Y's boot ID as X heard it: Y refuses a request for another
//	25      1     flags: bit 0 X durable, bit 1 X restarted (has not
//	              completed a round with Y since its start); other bits 0
//
// POOL_SYNC_READY (kind 39), Y to X, 21 bytes + message:
//
//	0       1     version
//	1       8     round ID
//	9       1     status: 0 ready; 1 refused (the request names another boot
//	              of Y: X waits for Y's HELLO); 2 failed (Y could not pause:
//	              something in flight did not settle in time)
//	10      1     flags: bit 0 Y durable, bit 1 Y restarted; other bits 0
//	11      4     keys in Y's out pool for X (0 unless status 0)
//	15      4     keys in Y's in pool from X (0 unless status 0)
//	19      2     message length m (at most 256; 0 with status 0)
//	21      m     message: why Y refused
//
// POOL_INV_REQ (kind 40), X to Y, 14 bytes:
//
//	0       1     version
//	1       8     round ID
//	9       1     pool: 0 Y's out pool for X, 1 Y's in pool from X
//	10      4     chunk: the inventory from key chunk × 2,048 on
//
// POOL_INV (kind 41), Y to X, 16 + 17 × count bytes:
//
//	0       1     version
//	1       8     round ID
//	9       1     pool, as asked
//	10      4     chunk, as asked
//	14      2     count (at most 2,048; less only in the last chunk)
//	16      17×count  per key, in ascending ID order: key ID (16) |
//	              state (1): 0 free, 1 assigned
//
// POOL_DROP (kind 42), X to Y, 19 + 19 × count bytes:
//
//	0       1     version
//	1       8     round ID
//	9       4     chunk (< chunks)
//	13      4     chunks: how many the round sends (at least 1)
//	17      2     count (at most 2,048; 0 when there is nothing to drop)
//	19      19×count  per key: key ID (16) | pool (1): 0 Y's out pool for X,
//	              1 Y's in pool from X | state (1) it had in the
//	              inventory: 0 free, 1 assigned | reason (1):
//	              1 missing at the other end (out pool), 2 unconfirmed
//	              (in pool, free), 3 reservation lost, 4 stale assignment
//	              (out pool free, in pool assigned), 5 orphan (in pool,
//	              assigned: not dropped, discarded after pools.orphan_ttl)
//
// POOL_DROP_ACK (kind 43), Y to X, 24 bytes + message:
//
//	0       1     version
//	1       8     round ID
//	9       4     chunk
//	13      1     status: 0 applied, 1 failed (a pool refused: the round fails)
//	14      4     keys dropped
//	18      4     keys kept as orphans
//	22      2     message length m (at most 256)
//	24      m     message
const (
	kindPoolHello   uint16 = 37
	kindPoolSyncReq uint16 = 38
	kindPoolReady   uint16 = 39
	kindPoolInvReq  uint16 = 40
	kindPoolInv     uint16 = 41
	kindPoolDrop    uint16 = 42
	kindPoolDropAck uint16 = 43
	poolSyncVersion        = 1

	// syncChunk is the most keys one POOL_INV or POOL_DROP carries.
	syncChunk = ringstore.MaxBatch
	// maxSyncInventory bounds the keys of one pool a coordinator takes
	// from the other node's inventory (2^24: a pool of 512 MiB of
	// 32-byte keys).
	maxSyncInventory = 1 << 24
	// maxSyncMsg bounds the message of a refusal or failure.
	maxSyncMsg = 256
)

// POOL_SYNC_READY statuses.
const (
	readyOK      = 0
	readyRefused = 1
	readyFailed  = 2
)

// POOL_DROP_ACK statuses.
const (
	dropApplied = 0
	dropFailed  = 1
)

// Flag bits of POOL_HELLO, POOL_SYNC_REQ and POOL_SYNC_READY.
const (
	flagDurable   = 1 << 0
	flagRestarted = 1 << 1
)

// poolHello is a POOL_HELLO.
type poolHello struct {
	boot    uint64
	durable bool
	seen    uint64
}

// syncReq is a POOL_SYNC_REQ.
type syncReq struct {
	round, boot, target uint64
	durable, restarted  bool
}

// syncReady is a POOL_SYNC_READY.
type syncReady struct {
	round              uint64
	status             uint8
	durable, restarted bool
	outKeys, inKeys    uint32
	msg                string
}

// invReq is a POOL_INV_REQ; pool is 0 (out) or 1 (in), as the receiver
// names its pools.
type invReq struct {
	round uint64
	pool  uint8
	chunk uint32
}

// invChunk is a POOL_INV.
type invChunk struct {
	round uint64
	pool  uint8
	chunk uint32
	keys  []ringstore.KeyState
}

// dropChunk is a POOL_DROP.
type dropChunk struct {
	round         uint64
	chunk, chunks uint32
	drops         []poolDrop
}

// dropAck is a POOL_DROP_ACK.
type dropAck struct {
	round            uint64
	chunk            uint32
	status           uint8
	dropped, orphans uint32
	msg              string
}

func flags(durable, restarted bool) byte {
	var f byte
	if durable {
		f |= flagDurable
	}
	if restarted {
		f |= flagRestarted
	}
	return f
}

func b2u8(b bool) byte {
	if b {
		return 1
	}
	return 0
}

func appendHello(b []byte, h poolHello) []byte {
	b = append(b, poolSyncVersion)
	b = binary.BigEndian.AppendUint64(b, h.boot)
	b = append(b, flags(h.durable, false))
	return binary.BigEndian.AppendUint64(b, h.seen)
}

func appendSyncReq(b []byte, r syncReq) []byte {
	b = append(b, poolSyncVersion)
	b = binary.BigEndian.AppendUint64(b, r.round)
	b = binary.BigEndian.AppendUint64(b, r.boot)
	b = binary.BigEndian.AppendUint64(b, r.target)
	return append(b, flags(r.durable, r.restarted))
}

func appendReady(b []byte, r syncReady) []byte {
	b = append(b, poolSyncVersion)
	b = binary.BigEndian.AppendUint64(b, r.round)
	b = append(b, r.status, flags(r.durable, r.restarted))
	b = binary.BigEndian.AppendUint32(b, r.outKeys)
	b = binary.BigEndian.AppendUint32(b, r.inKeys)
	msg := r.msg[:min(len(r.msg), maxSyncMsg)]
	b = binary.BigEndian.AppendUint16(b, uint16(len(msg)))
	return append(b, msg...)
}

func appendInvReq(b []byte, r invReq) []byte {
	b = append(b, poolSyncVersion)
	b = binary.BigEndian.AppendUint64(b, r.round)
	b = append(b, r.pool)
	return binary.BigEndian.AppendUint32(b, r.chunk)
}

func appendInv(b []byte, c invChunk) []byte {
	b = append(b, poolSyncVersion)
	b = binary.BigEndian.AppendUint64(b, c.round)
	b = append(b, c.pool)
	b = binary.BigEndian.AppendUint32(b, c.chunk)
	b = binary.BigEndian.AppendUint16(b, uint16(len(c.keys)))
	for _, k := range c.keys {
		b = append(b, k.ID[:]...)
		b = append(b, b2u8(k.Assigned))
	}
	return b
}

func appendDrop(b []byte, c dropChunk) []byte {
	b = append(b, poolSyncVersion)
	b = binary.BigEndian.AppendUint64(b, c.round)
	b = binary.BigEndian.AppendUint32(b, c.chunk)
	b = binary.BigEndian.AppendUint32(b, c.chunks)
	b = binary.BigEndian.AppendUint16(b, uint16(len(c.drops)))
	for _, d := range c.drops {
		b = append(b, d.id[:]...)
		b = append(b, b2u8(d.in), b2u8(d.assigned), byte(d.reason))
	}
	return b
}

func appendDropAck(b []byte, a dropAck) []byte {
	b = append(b, poolSyncVersion)
	b = binary.BigEndian.AppendUint64(b, a.round)
	b = binary.BigEndian.AppendUint32(b, a.chunk)
	b = append(b, a.status)
	b = binary.BigEndian.AppendUint32(b, a.dropped)
	b = binary.BigEndian.AppendUint32(b, a.orphans)
	msg := a.msg[:min(len(a.msg), maxSyncMsg)]
	b = binary.BigEndian.AppendUint16(b, uint16(len(msg)))
	return append(b, msg...)
}

// syncReader is a wireReader for the POOL_SYNC messages: it checks the
// version, and rejects values the format does not define.
type syncReader struct{ wireReader }

func newSyncReader(b []byte, kind string) *syncReader {
	r := &syncReader{wireReader{b: b}}
	if v := r.u8(kind + " version"); r.err == nil && v != poolSyncVersion {
		r.err = fmt.Errorf("%s version %d: want %d", kind, v, poolSyncVersion)
	}
	return r
}

// id64 reads a boot or round ID, which is never 0.
func (r *syncReader) id64(field string) uint64 {
	off := r.off
	v := r.u64(field)
	if r.err == nil && v == 0 {
		r.err = fmt.Errorf("%s at offset %d is 0", field, off)
	}
	return v
}

// flags reads a flags byte with at most the bits of allowed set.
func (r *syncReader) flags(field string, allowed byte) (durable, restarted bool) {
	off := r.off
	f := byte(r.u8(field))
	if r.err == nil && f&^allowed != 0 {
		r.err = fmt.Errorf("%s at offset %d: undefined bits %#02x", field, off, f&^allowed)
	}
	return f&flagDurable != 0, f&flagRestarted != 0
}

// small reads a byte that must be at most max.
func (r *syncReader) small(field string, max int) uint8 {
	off := r.off
	v := r.u8(field)
	if r.err == nil && v > max {
		r.err = fmt.Errorf("%s at offset %d is %d: at most %d", field, off, v, max)
	}
	return uint8(v)
}

func (r *syncReader) msg() string {
	off := r.off
	n := r.u16("message length")
	if r.err == nil && n > maxSyncMsg {
		r.err = fmt.Errorf("message length at offset %d is %d: at most %d", off, n, maxSyncMsg)
	}
	return string(r.bytes(n, "message"))
}

// count reads an entry count of at most syncChunk.
func (r *syncReader) count() int {
	off := r.off
	n := r.u16("count")
	if r.err == nil && n > syncChunk {
		r.err = fmt.Errorf("count at offset %d is %d: at most %d", off, n, syncChunk)
	}
	return n
}

func parseHello(b []byte) (poolHello, error) {
	r := newSyncReader(b, "POOL_HELLO")
	h := poolHello{boot: r.id64("boot ID")}
	h.durable, _ = r.flags("flags", flagDurable)
	h.seen = r.u64("boot ID seen")
	return h, r.end("POOL_HELLO")
}

func parseSyncReq(b []byte) (syncReq, error) {
	r := newSyncReader(b, "POOL_SYNC_REQ")
	q := syncReq{round: r.id64("round ID"), boot: r.id64("boot ID"), target: r.id64("target boot ID")}
	q.durable, q.restarted = r.flags("flags", flagDurable|flagRestarted)
	return q, r.end("POOL_SYNC_REQ")
}

func parseReady(b []byte) (syncReady, error) {
	r := newSyncReader(b, "POOL_SYNC_READY")
	y := syncReady{round: r.id64("round ID"), status: r.small("status", readyFailed)}
	y.durable, y.restarted = r.flags("flags", flagDurable|flagRestarted)
	y.outKeys, y.inKeys = r.u32("out pool keys"), r.u32("in pool keys")
	y.msg = r.msg()
	if r.err == nil && y.status != readyOK && (y.outKeys != 0 || y.inKeys != 0) {
		r.err = fmt.Errorf("status %d with key counts %d and %d: want 0", y.status, y.outKeys, y.inKeys)
	}
	if r.err == nil && y.status == readyOK && y.msg != "" {
		r.err = fmt.Errorf("status 0 with a message")
	}
	return y, r.end("POOL_SYNC_READY")
}

func parseInvReq(b []byte) (invReq, error) {
	r := newSyncReader(b, "POOL_INV_REQ")
	q := invReq{round: r.id64("round ID"), pool: r.small("pool", 1), chunk: r.u32("chunk")}
	return q, r.end("POOL_INV_REQ")
}

func parseInv(b []byte) (invChunk, error) {
	r := newSyncReader(b, "POOL_INV")
	c := invChunk{round: r.id64("round ID"), pool: r.small("pool", 1), chunk: r.u32("chunk")}
	n := r.count()
	if r.err == nil {
		c.keys = make([]ringstore.KeyState, 0, n)
	}
	for i := 0; i < n && r.err == nil; i++ {
		var k ringstore.KeyState
		copy(k.ID[:], r.bytes(16, "key ID"))
		k.Assigned = r.small("state", 1) == 1
		if r.err == nil && i > 0 && ringstore.CompareKeyIDs(c.keys[i-1].ID, k.ID) >= 0 {
			r.err = fmt.Errorf("key %d (%s) does not follow key %d (%s) in ascending order", i, k.ID, i-1, c.keys[i-1].ID)
		}
		c.keys = append(c.keys, k)
	}
	return c, r.end("POOL_INV")
}

func parseDrop(b []byte) (dropChunk, error) {
	r := newSyncReader(b, "POOL_DROP")
	c := dropChunk{round: r.id64("round ID"), chunk: r.u32("chunk"), chunks: r.u32("chunks")}
	if r.err == nil && c.chunk >= c.chunks {
		r.err = fmt.Errorf("chunk %d of %d", c.chunk, c.chunks)
	}
	n := r.count()
	if r.err == nil {
		c.drops = make([]poolDrop, 0, n)
	}
	for i := 0; i < n && r.err == nil; i++ {
		var d poolDrop
		copy(d.id[:], r.bytes(16, "key ID"))
		d.in = r.small("pool", 1) == 1
		d.assigned = r.small("state", 1) == 1
		off := r.off
		d.reason = dropReason(r.small("reason", int(reasonOrphan)))
		if r.err == nil && !validDrop(d) {
			r.err = fmt.Errorf("key %d (%s) at offset %d: reason %d (%v) does not apply to a key %s in the %s pool", i, d.id, off, d.reason, d.reason,
				map[bool]string{false: "free", true: "assigned"}[d.assigned], map[bool]string{false: "out", true: "in"}[d.in])
		}
		c.drops = append(c.drops, d)
	}
	return c, r.end("POOL_DROP")
}

// validDrop says whether d is an outcome pool_rules.go can give.
func validDrop(d poolDrop) bool {
	switch d.reason {
	case reasonMissing:
		return !d.in
	case reasonUnconfirmed:
		return d.in && !d.assigned
	case reasonReserved:
		return d.in || d.assigned
	case reasonStale:
		return d.in == d.assigned
	case reasonOrphan:
		return d.in && d.assigned
	}
	return false
}

func parseDropAck(b []byte) (dropAck, error) {
	r := newSyncReader(b, "POOL_DROP_ACK")
	a := dropAck{round: r.id64("round ID"), chunk: r.u32("chunk"), status: r.small("status", dropFailed)}
	a.dropped, a.orphans = r.u32("keys dropped"), r.u32("keys kept as orphans")
	a.msg = r.msg()
	return a, r.end("POOL_DROP_ACK")
}
