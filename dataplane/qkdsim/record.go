package qkdsim

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math/bits"
	"strings"

	"github.com/qrelay/qrelay/ringstore"
)

// The durable record of one end (Config.Meta) is one metadata entry:
//
//	qkd/sim/<link>/master   the highest index the master's Fetch has returned
//	qkd/sim/<link>/slave    the highest index the slave's Get has delivered
//
// Its value is 22 bytes, integers big-endian:
//
//	offset size field
//	0      4    magic "QSIM"
//	4      1    version: 1
//	5      1    role: 'M' (master) or 'S' (slave), as in the key
//	6      4    block size in bytes when the record was written
//	10     8    the highest index
//	18     4    CRC-32C (Castagnoli) of bytes 0 to 17
//
// It holds indices and a size only: no key bytes, and nothing computed
// from them (DESIGN.md, invariant 2).
const (
	recMagic   = "QSIM"
	recVersion = 1
	recLen     = 22
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// record is the decoded value of an end's metadata entry.
type record struct {
	master    bool
	blockSize uint32
	high      uint64 // the highest index returned (master) or delivered (slave)
}

func (r record) encode() []byte {
	b := make([]byte, recLen)
	copy(b, recMagic)
	b[4] = recVersion
	b[5] = 'S'
	if r.master {
		b[5] = 'M'
	}
	binary.BigEndian.PutUint32(b[6:], r.blockSize)
	binary.BigEndian.PutUint64(b[10:], r.high)
	binary.BigEndian.PutUint32(b[18:], crc32.Checksum(b[:18], castagnoli))
	return b
}

// decodeRecord decodes a record value, refusing anything but a whole,
// intact version 1 record.
func decodeRecord(b []byte) (record, error) {
	if len(b) != recLen {
		return record{}, fmt.Errorf("%d bytes, want %d", len(b), recLen)
	}
	if string(b[:4]) != recMagic {
		return record{}, fmt.Errorf("magic %q, want %q", b[:4], recMagic)
	}
	if b[4] != recVersion {
		return record{}, fmt.Errorf("version %d, want %d (this build reads version %d only)", b[4], recVersion, recVersion)
	}
	if got, want := binary.BigEndian.Uint32(b[18:]), crc32.Checksum(b[:18], castagnoli); got != want {
		return record{}, fmt.Errorf("CRC-32C %08x, want %08x: the record is damaged", got, want)
	}
	r := record{blockSize: binary.BigEndian.Uint32(b[6:]), high: binary.BigEndian.Uint64(b[10:])}
	switch b[5] {
	case 'M':
		r.master = true
	case 'S':
	default:
		return record{}, fmt.Errorf("role %q, want 'M' or 'S'", b[5])
	}
	if r.blockSize < 8 || r.blockSize%8 != 0 || r.blockSize > maxBlockSize {
		return record{}, fmt.Errorf("block size %d, want a positive multiple of 8 up to %d", r.blockSize, maxBlockSize)
	}
	return r, nil
}

// recordKey is the metadata key of an end's record.
func recordKey(link string, master bool) string {
	if master {
		return "qkd/sim/" + link + "/master"
	}
	return "qkd/sim/" + link + "/slave"
}

// nextAfter returns the least index j whose block of size bytes starts at
// or after the end of block high of oldSize bytes: j×size ≥ (high+1)×oldSize.
// Blocks from j on share no keystream with blocks up to high. With equal
// sizes it is high+1. ok is false if j does not fit in a uint64.
func nextAfter(high uint64, oldSize, size int) (j uint64, ok bool) {
	if high == ^uint64(0) {
		return 0, false
	}
	hi, lo := bits.Mul64(high+1, uint64(oldSize))
	var c uint64
	lo, c = bits.Add64(lo, uint64(size-1), 0) // round the quotient up
	hi += c
	if hi >= uint64(size) {
		return 0, false
	}
	j, _ = bits.Div64(hi, lo, uint64(size))
	return j, true
}

// load reads this end's record and returns the first index that the
// record allows (0 and false if there is none). An unreadable record
// refuses the start: without it a block could be handed out twice.
func (s *Sim) load() (next uint64, found bool, err error) {
	key := recordKey(s.cfg.Link, s.cfg.Master)
	v, err := s.cfg.Meta.Get(key)
	if errors.Is(err, ringstore.ErrMetaNotFound) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("qkdsim: link %s: %w; refusing to start: without the record of delivered blocks one could be handed out twice", s.cfg.Link, err)
	}
	r, err := decodeRecord(v)
	if err == nil && r.master != s.cfg.Master {
		err = fmt.Errorf("record of the other end (role %s)", roleName(r.master))
	}
	if err != nil {
		return 0, false, fmt.Errorf("qkdsim: link %s: metadata record %q: %v; refusing to start: without the record of delivered blocks one could be handed out twice", s.cfg.Link, key, err)
	}
	next, ok := nextAfter(r.high, int(r.blockSize), s.cfg.BlockSize)
	if !ok {
		return 0, false, fmt.Errorf("qkdsim: link %s: metadata record %q: highest index %d (blocks of %d bytes) leaves no index for blocks of %d bytes; refusing to start", s.cfg.Link, key, r.high, r.blockSize, s.cfg.BlockSize)
	}
	if int(r.blockSize) != s.cfg.BlockSize {
		s.log.Warn("simulated QKD link: block size changed since the last run; continuing past the keystream already handed out",
			"record", key, "old_block_size", r.blockSize, "block_size", s.cfg.BlockSize, "old_high", r.high, "next", next)
	}
	s.recHigh, s.recOK = next-1, true
	return next, true, nil
}

func roleName(master bool) string {
	if master {
		return "master"
	}
	return "slave"
}

// persist records high as this end's highest index handed out, in one
// metadata transaction, before the caller hands out the blocks up to it.
// It writes nothing if a record at least as high is already made.
// Without Config.Meta it does nothing.
func (s *Sim) persist(high uint64) error {
	if s.cfg.Meta == nil {
		return nil
	}
	s.pmu.Lock()
	defer s.pmu.Unlock()
	if s.recOK && high <= s.recHigh {
		return nil
	}
	key := recordKey(s.cfg.Link, s.cfg.Master)
	val := record{master: s.cfg.Master, blockSize: uint32(s.cfg.BlockSize), high: high}.encode()
	if err := s.update(func(tx *ringstore.MetaTx) error { return tx.Set(key, val) }); err != nil {
		return fmt.Errorf("qkdsim: link %s: recording block %s as handed out: %w; the blocks are dropped, not handed out", s.cfg.Link, s.id(high), err)
	}
	s.recHigh, s.recOK = high, true
	return nil
}

// checkDurableLink refuses a link name that would make metadata keys of
// one link a prefix of another's.
func checkDurableLink(link string) error {
	if strings.Contains(link, "/") {
		return fmt.Errorf("qkdsim: Link %q: with Meta set, want no '/' (the name is part of metadata keys)", link)
	}
	return nil
}
