package frame

import "encoding/binary"

// SYNC and SYNC_AGREE (sync_agree.go) have the same layout: for each direction,
// MASTER_TO_SLAVE then SLAVE_TO_MASTER, a low pad position and a high one
// (used and head, from and to), the low one at most the high one.
const (
	positionsOffLow  = 8  // MASTER_TO_SLAVE's low position; SLAVE_TO_MASTER's is positionsDirLen further
	positionsOffHigh = 16 // MASTER_TO_SLAVE's high position
	positionsDirLen  = 16 // the two positions of one direction
	positionsLen     = 2 * positionsDirLen
)

// positionsOff returns the offsets of direction d's low and high positions.
func positionsOff(d Dir) (low, high int) {
	return positionsOffLow + positionsDirLen*int(d), positionsOffHigh + positionsDirLen*int(d)
}

// positionsField returns the name of a position field in docs/kmlink.md,
// such as "MASTER_TO_SLAVE used".
func positionsField(d Dir, name string) string { return d.String() + " " + name }

// checkPositions fails unless low[d] <= high[d] in both directions.
func checkPositions(t Type, lowName, highName string, low, high [2]uint64) *Error {
	for d := DirMasterToSlave; d <= DirSlaveToMaster; d++ {
		if low[d] > high[d] {
			off, _ := positionsOff(d)
			return errorf(t, positionsField(d, lowName), off, "%d, want at most the %s, %d", low[d], positionsField(d, highName), high[d])
		}
	}
	return nil
}

// appendPositions appends a frame of type t with the flags and the
// positions low and high.
func appendPositions(dst []byte, t Type, flags uint16, low, high [2]uint64) []byte {
	dst = appendPrefix(dst, t, flags, positionsLen)
	for d := range low {
		dst = binary.BigEndian.AppendUint64(dst, low[d])
		dst = binary.BigEndian.AppendUint64(dst, high[d])
	}
	return dst
}

// parsePositions parses the whole frame b of type t.
func parsePositions(b []byte, t Type, lowName, highName string) (flags uint16, low, high [2]uint64, err *Error) {
	p, err := parseFrame(b, t)
	if err != nil {
		return 0, low, high, err
	}
	flags = p.Flags
	for d := DirMasterToSlave; d <= DirSlaveToMaster; d++ {
		lo, hi := positionsOff(d)
		low[d] = binary.BigEndian.Uint64(b[lo:])
		high[d] = binary.BigEndian.Uint64(b[hi:])
	}
	return flags, low, high, checkPositions(t, lowName, highName, low, high)
}

// FlagFresh is the SYNC flag saying that the slave holds no record of the
// pad it used before this connection: its pads are new (a restart in
// memory mode, or durable state made anew).
const FlagFresh uint16 = 1

// Sync is a SYNC frame: the slave tells the master, first on its control
// stream of every connection, the state of its pad in each direction
// (docs/kmlink.md, section 6). Both arrays are indexed by Dir:
// MASTER_TO_SLAVE is the slave's rx ring, SLAVE_TO_MASTER its tx ring.
type Sync struct {
	// Used is, per direction, the position below which the slave may have
	// used the pad: consumed it (rx) or sent under it (tx).
	Used [2]uint64
	// Head is, per direction, the end of the pad the slave holds; at least Used.
	Head [2]uint64
	// Fresh (flag FlagFresh): the slave's pads are new, so it cannot say
	// what it used before; the master then moves both directions beyond
	// every position either end may have used.
	Fresh bool
}

// FrameLen returns the length of the whole frame.
func (s *Sync) FrameLen() int { return PrefixLen + syncFixed }

// AppendSync appends the frame s to dst. If s cannot be encoded it returns
// dst unchanged and an *Error naming the bad field.
func AppendSync(dst []byte, s *Sync) ([]byte, error) {
	if err := checkPositions(TypeSync, "used", "head", s.Used, s.Head); err != nil {
		return dst, err
	}
	var flags uint16
	if s.Fresh {
		flags = FlagFresh
	}
	return appendPositions(dst, TypeSync, flags, s.Used, s.Head), nil
}

// ParseSync parses the whole SYNC frame b, prefix included.
func ParseSync(b []byte) (Sync, error) {
	flags, used, head, err := parsePositions(b, TypeSync, "used", "head")
	if err != nil {
		return Sync{}, err
	}
	return Sync{Used: used, Head: head, Fresh: flags&FlagFresh != 0}, nil
}
