package frame

// SyncAgree is a SYNC_AGREE frame: the master tells the slave, first on its
// control stream of every connection and once it has the slave's SYNC, the
// pad both ends keep in each direction (docs/kmlink.md, section 6). Both
// arrays are indexed by Dir. Its layout is SYNC's (sync.go).
type SyncAgree struct {
	// From is, per direction, the position below which no pad is used again.
	From [2]uint64
	// To is, per direction, the end of the pad both ends hold; at least From.
	To [2]uint64
}

// FrameLen returns the length of the whole frame.
func (s *SyncAgree) FrameLen() int { return PrefixLen + syncAgreeFixed }

// AppendSyncAgree appends the frame s to dst. If s cannot be encoded it
// returns dst unchanged and an *Error naming the bad field.
func AppendSyncAgree(dst []byte, s *SyncAgree) ([]byte, error) {
	if err := checkPositions(TypeSyncAgree, "from", "to", s.From, s.To); err != nil {
		return dst, err
	}
	return appendPositions(dst, TypeSyncAgree, 0, s.From, s.To), nil
}

// ParseSyncAgree parses the whole SYNC_AGREE frame b, prefix included.
func ParseSyncAgree(b []byte) (SyncAgree, error) {
	_, from, to, err := parsePositions(b, TypeSyncAgree, "from", "to")
	if err != nil {
		return SyncAgree{}, err
	}
	return SyncAgree{From: from, To: to}, nil
}
