package audit

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"strconv"

	"github.com/qrelay/qrelay/ringstore"
)

// The stored form of a record (docs/audit.md): under the key
//
//	audit/<time: 16 hex digits, ns since the Unix epoch><seq: 8 hex digits>
//
// so that keys sort by time, a value of
//
//	version u8 (1) | kind u8 | flags u8 | dir u8 | time i64 |
//	peer (u8 length, bytes) | body | crc u32
//
// with integers big-endian, kind 1 pad-appended, 2 pad-used, 3 pad-burnt,
// 4 keys, flags bit 0 set for the tx side (pad-used, pad-burnt; every
// other bit, and bit 0 of other kinds, is 0), dir 0 MASTER_TO_SLAVE or 1
// SLAVE_TO_MASTER (0 in keys records), and body
//
//	pad-appended: from u64 | to u64 | block ID (u8 length, bytes)
//	pad-used:     from u64 | to u64
//	pad-burnt:    from u64 | to u64 | reason (u8 length, bytes)
//	keys:         SAE (u8 length, bytes) | role (u8 length, bytes) |
//	              count u32 | count × key ID (16 bytes)
//
// The CRC-32C (Castagnoli) covers every byte before it: node and SAE IDs,
// positions, block and key IDs; never key bytes, which no record holds
// (DESIGN.md, invariant 2).
const (
	// Version is the encoding's version, its first byte.
	Version = 1

	keyPrefix = "audit/"
	keyLen    = len(keyPrefix) + 16 + 8

	offVersion = 0
	offKind    = 1
	offFlags   = 2
	offDir     = 3
	offTime    = 4
	offPeer    = 12 // the peer's length byte
	crcLen     = 4

	flagTx = 1 << 0

	// maxString is the longest string a record keeps (node, SAE, block
	// IDs, reasons); longer ones are cut when the record is made.
	maxString = 255
	// maxIDsPerRecord bounds the key IDs of one record (64 KiB of them);
	// KeysHanded splits a larger batch.
	maxIDsPerRecord = 4096
)

// kind is a Kind as stored.
type kind uint8

const (
	kindAppended kind = 1
	kindUsed     kind = 2
	kindBurnt    kind = 3
	kindKeys     kind = 4
)

func (k kind) public() Kind {
	switch k {
	case kindAppended:
		return KindPadAppended
	case kindUsed:
		return KindPadUsed
	case kindBurnt:
		return KindPadBurnt
	case kindKeys:
		return KindKeys
	}
	return Kind("kind-" + strconv.Itoa(int(k)))
}

// rec is a record as the log buffers and stores it.
type rec struct {
	time     int64 // ns since the Unix epoch, at least 0
	from, to uint64
	seq      uint32 // orders records of the same nanosecond; in the key only
	kind     kind
	dir      uint8
	tx       bool
	peer     string            // the link's peer, or the remote node of keys
	s1       string            // block ID, burn reason, or SAE
	s2       string            // role of keys
	ids      []ringstore.KeyID // keys
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// recKey is the store key of a record.
func recKey(b []byte, t int64, seq uint32) []byte {
	const hex = "0123456789abcdef"
	b = append(b, keyPrefix...)
	for i := 60; i >= 0; i -= 4 {
		b = append(b, hex[uint64(t)>>i&0xf])
	}
	for i := 28; i >= 0; i -= 4 {
		b = append(b, hex[seq>>i&0xf])
	}
	return b
}

// keyTime is the time in a store key, or false if it is not one.
func keyTime(k string) (int64, bool) {
	if len(k) != keyLen || k[:len(keyPrefix)] != keyPrefix {
		return 0, false
	}
	t, err := strconv.ParseUint(k[len(keyPrefix):len(keyPrefix)+16], 16, 64)
	if err != nil || int64(t) < 0 {
		return 0, false
	}
	return int64(t), true
}

// encodedLen is the length of e's value.
func encodedLen(e *rec) int {
	n := offPeer + 1 + len(e.peer) + crcLen
	switch e.kind {
	case kindUsed:
		n += 16
	case kindAppended, kindBurnt:
		n += 16 + 1 + len(e.s1)
	case kindKeys:
		n += 1 + len(e.s1) + 1 + len(e.s2) + 4 + 16*len(e.ids)
	}
	return n
}

// appendRec appends the value of e to b. e must be valid (the recorders
// make only valid records).
func appendRec(b []byte, e *rec) []byte {
	start := len(b)
	var flags byte
	if e.tx {
		flags = flagTx
	}
	b = append(b, Version, byte(e.kind), flags, e.dir)
	b = binary.BigEndian.AppendUint64(b, uint64(e.time))
	b = appendStr(b, e.peer)
	switch e.kind {
	case kindKeys:
		b = appendStr(b, e.s1)
		b = appendStr(b, e.s2)
		b = binary.BigEndian.AppendUint32(b, uint32(len(e.ids)))
		for _, id := range e.ids {
			b = append(b, id[:]...)
		}
	default:
		b = binary.BigEndian.AppendUint64(b, e.from)
		b = binary.BigEndian.AppendUint64(b, e.to)
		if e.kind != kindUsed {
			b = appendStr(b, e.s1)
		}
	}
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(b[start:], castagnoli))
}

func appendStr(b []byte, s string) []byte {
	return append(append(b, byte(len(s))), s...)
}

// DecodeError is a stored value that is not a record: Field names what
// was wrong, at byte Offset of the value.
type DecodeError struct {
	Field  string
	Offset int
	Reason string
}

func (e *DecodeError) Error() string {
	return fmt.Sprintf("audit record: %s at byte %d: %s", e.Field, e.Offset, e.Reason)
}

// decoder reads a value, keeping the first error.
type decoder struct {
	b   []byte
	off int
	err *DecodeError
}

func (d *decoder) fail(field, format string, a ...any) {
	if d.err == nil {
		d.err = &DecodeError{Field: field, Offset: d.off, Reason: fmt.Sprintf(format, a...)}
	}
}

func (d *decoder) bytes(n int, field string) []byte {
	if d.err != nil {
		return nil
	}
	if n > len(d.b)-d.off {
		d.fail(field, "%d bytes needed, %d left", n, len(d.b)-d.off)
		return nil
	}
	p := d.b[d.off : d.off+n]
	d.off += n
	return p
}

func (d *decoder) u8(field string) uint8 {
	if p := d.bytes(1, field); p != nil {
		return p[0]
	}
	return 0
}

func (d *decoder) u32(field string) uint32 {
	if p := d.bytes(4, field); p != nil {
		return binary.BigEndian.Uint32(p)
	}
	return 0
}

func (d *decoder) u64(field string) uint64 {
	if p := d.bytes(8, field); p != nil {
		return binary.BigEndian.Uint64(p)
	}
	return 0
}

func (d *decoder) str(field string) string {
	n := int(d.u8(field + " length"))
	return string(d.bytes(n, field))
}

// parseRec decodes a stored value. It checks everything appendRec
// guarantees, so that a value that parses encodes back to the same bytes.
func parseRec(b []byte) (rec, error) {
	var e rec
	d := &decoder{b: b}
	if len(b) < offPeer+1+crcLen {
		d.fail("length", "%d bytes: a record has at least %d", len(b), offPeer+1+crcLen)
		return e, d.err
	}
	body := b[:len(b)-crcLen]
	if got, want := crc32.Checksum(body, castagnoli), binary.BigEndian.Uint32(b[len(body):]); got != want {
		d.off = len(body)
		d.fail("crc", "%08x, the bytes before it give %08x: the record is damaged", want, got)
		return e, d.err
	}
	d.b = body
	if v := d.u8("version"); v != Version {
		d.off--
		d.fail("version", "%d, want %d", v, Version)
	}
	e.kind = kind(d.u8("kind"))
	if e.kind < kindAppended || e.kind > kindKeys {
		d.off--
		d.fail("kind", "%d, want 1 to 4", e.kind)
	}
	flags := d.u8("flags")
	switch {
	case flags&^flagTx != 0:
		d.off--
		d.fail("flags", "%#02x: only bit 0 (tx) is defined", flags)
	case flags&flagTx != 0 && e.kind != kindUsed && e.kind != kindBurnt:
		d.off--
		d.fail("flags", "tx set on a %s record", e.kind.public())
	}
	e.tx = flags&flagTx != 0
	e.dir = d.u8("dir")
	if e.dir > 1 || e.dir != 0 && e.kind == kindKeys {
		d.off--
		d.fail("dir", "%d, want 0 (MASTER_TO_SLAVE) or 1 (SLAVE_TO_MASTER), 0 in keys records", e.dir)
	}
	e.time = int64(d.u64("time"))
	if e.time < 0 {
		d.off -= 8
		d.fail("time", "%d ns is before 1970", e.time)
	}
	e.peer = d.str("peer")
	if d.err == nil && e.peer == "" {
		d.fail("peer", "empty: a record names its link's peer or remote node")
	}
	if d.err != nil {
		return e, d.err
	}
	switch e.kind {
	case kindKeys:
		e.s1 = d.str("sae")
		e.s2 = d.str("role")
		n := d.u32("count")
		if d.err == nil && (n == 0 || n > maxIDsPerRecord) {
			d.off -= 4
			d.fail("count", "%d key IDs, want 1 to %d", n, maxIDsPerRecord)
		}
		if p := d.bytes(16*int(n), "key IDs"); p != nil {
			e.ids = make([]ringstore.KeyID, n)
			for i := range e.ids {
				copy(e.ids[i][:], p[16*i:])
			}
		}
	default:
		e.from = d.u64("from")
		e.to = d.u64("to")
		if d.err == nil && e.from >= e.to {
			d.off -= 8
			d.fail("to", "%d is not above from (%d): a record's range is not empty", e.to, e.from)
		}
		if e.kind != kindUsed {
			e.s1 = d.str(map[kind]string{kindAppended: "block", kindBurnt: "reason"}[e.kind])
		}
	}
	if d.err == nil && d.off != len(body) {
		d.fail("length", "%d bytes after the record", len(body)-d.off)
	}
	if d.err != nil {
		return rec{}, d.err
	}
	return e, nil
}
