package audit

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Kind is what a record tells.
type Kind string

// Record kinds.
const (
	// KindPadAppended: a QKD block was appended to a direction's pad at
	// [From, To); Block is its QKD block ID.
	KindPadAppended Kind = "pad-appended"
	// KindPadUsed: this node sent (Side tx) or received and consumed
	// (Side rx) under pad [From, To).
	KindPadUsed Kind = "pad-used"
	// KindPadBurnt: pad [From, To) was zeroised without carrying keys,
	// for Reason ("sync", "gap", "bad-tag", ...).
	KindPadBurnt Kind = "pad-burnt"
	// KindKeys: end-to-end keys shared with node Remote were handed to
	// SAE (or key stream) SAE in Role.
	KindKeys Kind = "keys"
)

// Kinds lists the record kinds in the order help text shows them.
var Kinds = []Kind{KindPadAppended, KindPadUsed, KindPadBurnt, KindKeys}

// ParseKind checks that s names a kind; "" is every kind.
func ParseKind(s string) (Kind, error) {
	if s == "" {
		return "", nil
	}
	for _, k := range Kinds {
		if string(k) == s {
			return k, nil
		}
	}
	names := make([]string, len(Kinds))
	for i, k := range Kinds {
		names[i] = string(k)
	}
	return "", fmt.Errorf("unknown record kind %q: want one of %s", s, strings.Join(names, ", "))
}

// Directions of a KM link's pads, as docs/kmlink.md names them; PadUsed
// and the others take them as numbers (0 and 1, as on the wire).
const (
	DirMasterToSlave = "MASTER_TO_SLAVE"
	DirSlaveToMaster = "SLAVE_TO_MASTER"
)

// dirName is the name of direction d; anything but 0 and 1 is refused
// when a record is made.
func dirName(d uint8) string {
	if d == 0 {
		return DirMasterToSlave
	}
	return DirSlaveToMaster
}

// Sides of a pad record: the sender's tx ring or the receiver's rx ring.
const (
	SideTx = "tx"
	SideRx = "rx"
)

// Reasons for PadBurnt, as the relay engine gives them.
const (
	ReasonSync   = "sync"    // below the agreement's from: either end may have used it
	ReasonDrop   = "drop"    // beyond the agreement's to: one end only held it; later blocks fill its positions
	ReasonGap    = "gap"     // reserved or in flight when a connection was lost
	ReasonBadTag = "bad-tag" // a frame whose one-time MAC failed consumed it
)

// Roles of a keys record.
const (
	RoleMaster = "master" // enc_keys: the master SAE took them
	RoleSlave  = "slave"  // dec_keys: the slave SAE took them
	RoleStream = "stream" // a key stream (a WireGuard tunnel) took them; SAE is its name
)

// Record is one audit record, as Query returns it and the admin API shows
// it. Pad records have Peer, Dir, Side (used and burnt only), From and To
// (pad positions, To exclusive); appended ones a Block, burnt ones a
// Reason. Keys records have Remote, SAE, Role and KeyIDs (ETSI UUIDs).
// No record holds key bytes or anything computed from them.
type Record struct {
	Time   time.Time
	Kind   Kind
	Peer   string
	Dir    string
	Side   string
	From   uint64
	To     uint64
	Block  string
	Reason string
	Remote string
	SAE    string
	Role   string
	KeyIDs []string
}

// recordJSON is Record on the wire: a keys record has no pad positions,
// while 0 is a position like any other in a pad record.
type recordJSON struct {
	Time   time.Time `json:"time"`
	Kind   Kind      `json:"kind"`
	Peer   string    `json:"peer,omitempty"`
	Dir    string    `json:"dir,omitempty"`
	Side   string    `json:"side,omitempty"`
	From   *uint64   `json:"from,omitempty"`
	To     *uint64   `json:"to,omitempty"`
	Block  string    `json:"block,omitempty"`
	Reason string    `json:"reason,omitempty"`
	Remote string    `json:"remote,omitempty"`
	SAE    string    `json:"sae,omitempty"`
	Role   string    `json:"role,omitempty"`
	KeyIDs []string  `json:"key_ids,omitempty"`
}

// MarshalJSON writes the record with snake_case names; from and to only
// for pad records.
func (r Record) MarshalJSON() ([]byte, error) {
	j := recordJSON{Time: r.Time, Kind: r.Kind, Peer: r.Peer, Dir: r.Dir, Side: r.Side, Block: r.Block,
		Reason: r.Reason, Remote: r.Remote, SAE: r.SAE, Role: r.Role, KeyIDs: r.KeyIDs}
	if r.Kind != KindKeys {
		j.From, j.To = &r.From, &r.To
	}
	return json.Marshal(j)
}

// UnmarshalJSON reads what MarshalJSON writes.
func (r *Record) UnmarshalJSON(b []byte) error {
	var j recordJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	*r = Record{Time: j.Time, Kind: j.Kind, Peer: j.Peer, Dir: j.Dir, Side: j.Side, Block: j.Block,
		Reason: j.Reason, Remote: j.Remote, SAE: j.SAE, Role: j.Role, KeyIDs: j.KeyIDs}
	if j.From != nil {
		r.From = *j.From
	}
	if j.To != nil {
		r.To = *j.To
	}
	return nil
}

// record converts the internal form.
func (e *rec) record() Record {
	r := Record{Time: time.Unix(0, e.time).UTC(), Kind: e.kind.public()}
	if e.kind == kindKeys {
		r.Remote, r.SAE, r.Role = e.peer, e.s1, e.s2
		r.KeyIDs = make([]string, len(e.ids))
		for i, id := range e.ids {
			r.KeyIDs[i] = id.String()
		}
		return r
	}
	r.Peer, r.Dir, r.From, r.To = e.peer, dirName(e.dir), e.from, e.to
	switch e.kind {
	case kindAppended:
		r.Block = e.s1
	case kindBurnt:
		r.Reason = e.s1
		fallthrough
	case kindUsed:
		r.Side = SideRx
		if e.tx {
			r.Side = SideTx
		}
	}
	return r
}

// Query selects records. The zero Query is the oldest DefaultLimit
// records of every kind.
type Query struct {
	Kind  Kind      // "" for every kind
	Peer  string    // the link's peer of pad records, the remote node of keys records; "" for all
	Since time.Time // records at or after it; zero for all
	Limit int       // at most this many, oldest first: 0 is DefaultLimit, at most MaxLimit
}

// Limits of a Query. A query also ends once the records it returns hold
// MaxKeyIDs key IDs (about 20 MiB of JSON): ask again from the last
// record's time for more.
const (
	DefaultLimit = 1000
	MaxLimit     = 100000
	MaxKeyIDs    = 1 << 19
)

// ErrBadQuery is wrapped by the errors of a Query that asks for what
// cannot be: an unknown kind, a limit out of range.
var ErrBadQuery = errors.New("bad audit query")

// check validates q and fills in its default limit.
func (q *Query) check() error {
	if _, err := ParseKind(string(q.Kind)); err != nil {
		return fmt.Errorf("%w: %v", ErrBadQuery, err)
	}
	switch {
	case q.Limit == 0:
		q.Limit = DefaultLimit
	case q.Limit < 0 || q.Limit > MaxLimit:
		return fmt.Errorf("%w: limit %d: want 1 to %d", ErrBadQuery, q.Limit, MaxLimit)
	}
	return nil
}

// match reports whether e is selected by q (q.Limit aside).
func (q *Query) match(e *rec) bool {
	return (q.Kind == "" || q.Kind == e.kind.public()) &&
		(q.Peer == "" || q.Peer == e.peer) &&
		(q.Since.IsZero() || e.time >= q.Since.UnixNano())
}
