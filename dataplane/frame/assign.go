package frame

import (
	"encoding/binary"
	"math"
	"strconv"
)

// Offsets of the ASSIGN fields from the start of the frame.
const (
	assignOffSeq        = 8
	assignOffPadPos     = 16
	assignOffDir        = 24
	assignOffReserved   = 25
	assignOffBlockCount = 26
	assignOffBlocks     = 28
)

// Assign is an ASSIGN frame: the link master tells the slave which QKD
// blocks it has assigned to one direction of the link, in the order they
// are appended to that direction's pad stream, from position PadPos on.
type Assign struct {
	Seq    uint64 // assignment sequence number: 1 for a connection's first ASSIGN, then +1
	PadPos uint64 // position in the direction's pad of the first block's first byte
	Dir    Dir
	Blocks []AssignBlock // 1..MaxAssignBlocks blocks, in pad order
}

// AssignBlock names one QKD block of an ASSIGN.
type AssignBlock struct {
	ID   string // the QKD module's block ID, 1..MaxBlockIDLen opaque bytes
	Size uint32 // its size in bytes, 1..MaxBlockSize
}

// FrameLen returns the length of the whole frame.
func (a *Assign) FrameLen() int {
	n := PrefixLen + assignFixed
	for _, b := range a.Blocks {
		n += 1 + len(b.ID) + 4
	}
	return n
}

// PadLen returns the number of pad bytes the blocks add to the direction's
// pad, the sum of their sizes: they take positions [PadPos, PadPos+PadLen()).
func (a *Assign) PadLen() uint64 {
	var n uint64
	for _, b := range a.Blocks {
		n += uint64(b.Size)
	}
	return n
}

// checkAssignEnd fails unless the blocks, size bytes in all, end before
// 2^64 from position pos, so that the end of the pad is a position too.
func checkAssignEnd(pos, size uint64) *Error {
	if pos > math.MaxUint64-size {
		return errorf(TypeAssign, "pad position", assignOffPadPos, "%d, want at most %d so that the blocks' %d bytes end before 2^64", pos, math.MaxUint64-size, size)
	}
	return nil
}

func blockField(i int, name string) string {
	return "block " + strconv.Itoa(i) + " " + name
}

func (a *Assign) validate() *Error {
	const t = TypeAssign
	if !a.Dir.Valid() {
		return errorf(t, "dir", assignOffDir, "%d, want 0 (%s) or 1 (%s)", uint8(a.Dir), DirMasterToSlave, DirSlaveToMaster)
	}
	if err := checkRange(t, "block count", assignOffBlockCount, uint64(len(a.Blocks)), 1, MaxAssignBlocks); err != nil {
		return err
	}
	off := assignOffBlocks
	for i, b := range a.Blocks {
		if len(b.ID) < 1 || len(b.ID) > MaxBlockIDLen {
			return errorf(t, blockField(i, "ID length"), off, "%d, want 1..%d", len(b.ID), MaxBlockIDLen)
		}
		off += 1 + len(b.ID)
		if b.Size < 1 || b.Size > MaxBlockSize {
			return errorf(t, blockField(i, "size"), off, "%d, want 1..%d", b.Size, MaxBlockSize)
		}
		off += 4
	}
	return checkAssignEnd(a.PadPos, a.PadLen())
}

// AppendAssign appends the frame a to dst. If a cannot be encoded it returns
// dst unchanged and an *Error naming the bad field.
func AppendAssign(dst []byte, a *Assign) ([]byte, error) {
	if err := a.validate(); err != nil {
		return dst, err
	}
	dst = appendPrefix(dst, TypeAssign, 0, a.FrameLen()-PrefixLen)
	dst = binary.BigEndian.AppendUint64(dst, a.Seq)
	dst = binary.BigEndian.AppendUint64(dst, a.PadPos)
	dst = append(dst, byte(a.Dir), 0)
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(a.Blocks)))
	for _, b := range a.Blocks {
		dst = append(dst, byte(len(b.ID)))
		dst = append(dst, b.ID...)
		dst = binary.BigEndian.AppendUint32(dst, b.Size)
	}
	return dst, nil
}

// ParseAssign parses the whole ASSIGN frame b, prefix included. It checks
// every block against the bytes present before it allocates anything.
func ParseAssign(b []byte) (Assign, error) {
	a, err := parseAssign(b)
	if err != nil {
		return Assign{}, err
	}
	return a, nil
}

func parseAssign(b []byte) (Assign, *Error) {
	const t = TypeAssign
	var a Assign
	if _, err := parseFrame(b, t); err != nil {
		return a, err
	}
	a.Seq = binary.BigEndian.Uint64(b[assignOffSeq:])
	a.PadPos = binary.BigEndian.Uint64(b[assignOffPadPos:])
	a.Dir = Dir(b[assignOffDir])
	if !a.Dir.Valid() {
		return a, errorf(t, "dir", assignOffDir, "%d, want 0 (%s) or 1 (%s)", uint8(a.Dir), DirMasterToSlave, DirSlaveToMaster)
	}
	if err := checkZero(t, "reserved", assignOffReserved, uint64(b[assignOffReserved])); err != nil {
		return a, err
	}
	n := int(binary.BigEndian.Uint16(b[assignOffBlockCount:]))
	if err := checkRange(t, "block count", assignOffBlockCount, uint64(n), 1, MaxAssignBlocks); err != nil {
		return a, err
	}
	if have := len(b) - assignOffBlocks; have < n*assignBlockMin {
		return a, errorf(t, "block count", assignOffBlockCount, "%d, but the %d bytes after it hold at most %d blocks", n, have, have/assignBlockMin)
	}
	// First pass: check every block against the bytes that are there.
	var size uint64 // of the blocks so far
	off := assignOffBlocks
	for i := range n {
		if off >= len(b) {
			return a, errorf(t, blockField(i, "ID length"), off, "frame ends before block %d of %d", i, n)
		}
		idLen := int(b[off])
		if idLen < 1 {
			return a, errorf(t, blockField(i, "ID length"), off, "%d, want 1..%d", idLen, MaxBlockIDLen)
		}
		if off+1+idLen+4 > len(b) {
			return a, errorf(t, blockField(i, "ID length"), off, "%d, but only %d bytes are left for the ID and the size", idLen, len(b)-off-1)
		}
		off += 1 + idLen
		bs := binary.BigEndian.Uint32(b[off:])
		if bs < 1 || bs > MaxBlockSize {
			return a, errorf(t, blockField(i, "size"), off, "%d, want 1..%d", bs, MaxBlockSize)
		}
		size += uint64(bs)
		off += 4
	}
	if off != len(b) {
		return a, errorf(t, "length", 4, "%d, but the %d blocks end %d bytes before the frame does (trailing bytes)", len(b)-PrefixLen, n, len(b)-off)
	}
	if err := checkAssignEnd(a.PadPos, size); err != nil {
		return a, err
	}
	// Second pass: decode. Each ID gets a string of its own so that keeping
	// one does not keep the whole frame.
	a.Blocks = make([]AssignBlock, n)
	off = assignOffBlocks
	for i := range a.Blocks {
		idLen := int(b[off])
		a.Blocks[i].ID = string(b[off+1 : off+1+idLen])
		off += 1 + idLen
		a.Blocks[i].Size = binary.BigEndian.Uint32(b[off:])
		off += 4
	}
	return a, nil
}
