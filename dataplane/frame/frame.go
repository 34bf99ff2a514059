package frame

import (
	"strconv"

	"github.com/qrelay/qrelay/internal/ids"
)

// Specification constants (docs/kmlink.md).
const (
	// Version is the only frame version this package reads and writes.
	Version = 2
	// PrefixLen is the size of the prefix every frame begins with.
	PrefixLen = 8
	// TagLen is the size of the one-time Poly1305 tag that ends a RELAY frame.
	TagLen = 16
	// PadKeyLen is the number of pad bytes a RELAY frame spends on its
	// Poly1305 key, after its payload pad.
	PadKeyLen = 32
	// MaxNodeIDLen is the longest node ID, in bytes (ids.MaxLen).
	MaxNodeIDLen = ids.MaxLen
	// MaxKeys is the most keys one RELAY, COMPLETION or DISCARD names.
	MaxKeys = 2048
	// MaxPayload is the largest RELAY payload, in bytes.
	MaxPayload = 8 << 20
	// MaxFrameLen is the largest frame, prefix included.
	MaxFrameLen = MaxPayload + 4096
	// MaxReason is the longest reason text of a COMPLETION or ASSIGN_ACK, in bytes.
	MaxReason = 1024
	// MaxAssignBlocks is the most blocks one ASSIGN names.
	MaxAssignBlocks = 4096
	// MaxBlockIDLen is the longest QKD block ID in an ASSIGN, in bytes.
	MaxBlockIDLen = 255
	// MaxBlockSize is the largest QKD block in an ASSIGN, in bytes.
	MaxBlockSize = 16 << 20
)

// Fixed body sizes: the bytes after the prefix that every frame of a type
// has, before its variable-length fields.
const (
	relayFixed      = 40 // flow .. reserved, then src, dst, payload, tag
	completionFixed = 26 // status .. dst len, then src, dst, reason
	assignFixed     = 20 // seq, pad position, dir, reserved, block count, then blocks
	assignBlockMin  = 1 + 1 + 4
	assignAckFixed  = 12 // seq, status, reserved, reason len, then reason
	discardFixed    = 22 // count .. dst len, then src, dst
	controlFixed    = 2  // kind, then body

	// SYNC and SYNC_AGREE: used and head, or from and to, of each
	// direction, nothing else.
	syncFixed      = positionsLen
	syncAgreeFixed = positionsLen
)

// RelayFixedLen is the size of a RELAY header without its node IDs, prefix
// included: the offset of the source node ID.
const RelayFixedLen = PrefixLen + relayFixed

// Type is a frame type, the second byte of every frame.
type Type uint8

// Frame types.
const (
	TypeRelay      Type = 1 // a batch of end-to-end keys under the link's pad
	TypeCompletion Type = 2 // destination to source: the keys of a RELAY are stored, or why not
	TypeAssign     Type = 3 // link master to slave: QKD blocks assigned to a direction
	TypeAssignAck  Type = 4 // slave to master: an ASSIGN is applied, or why not
	TypeDiscard    Type = 5 // source to destination: drop keys the source lost
	TypeControl    Type = 6 // control plane message, opaque here
	TypeSync       Type = 7 // slave to master, first on its control stream: its pad state
	TypeSyncAgree  Type = 8 // master to slave, first on its control stream: the pad both ends keep
)

// lastType is the highest frame type of version 2: the types are 1 to lastType.
const lastType = TypeSyncAgree

// String returns the type's name as in docs/kmlink.md, such as "RELAY".
func (t Type) String() string {
	switch t {
	case TypeRelay:
		return "RELAY"
	case TypeCompletion:
		return "COMPLETION"
	case TypeAssign:
		return "ASSIGN"
	case TypeAssignAck:
		return "ASSIGN_ACK"
	case TypeDiscard:
		return "DISCARD"
	case TypeControl:
		return "CONTROL"
	case TypeSync:
		return "SYNC"
	case TypeSyncAgree:
		return "SYNC_AGREE"
	}
	return "Type(" + strconv.Itoa(int(t)) + ")"
}

// Valid reports whether t is a type of version 2.
func (t Type) Valid() bool { return t >= TypeRelay && t <= lastType }

// FlagQKDKey is the RELAY flag saying that the end-to-end keys are the first
// hop's QKD key (ITU-T Y.3803 key relay case 2) instead of random keys.
const FlagQKDKey uint16 = 1

// flagMask returns the flags a frame of type t may carry.
func flagMask(t Type) uint16 {
	switch t {
	case TypeRelay:
		return FlagQKDKey
	case TypeSync:
		return FlagFresh
	}
	return 0
}

// bodyLimits returns the least and the most bytes that may follow the prefix
// of a frame of type t.
func bodyLimits(t Type) (minLen, maxLen int) {
	const nodeIDs = 2 * MaxNodeIDLen
	switch t {
	case TypeRelay:
		return relayFixed + 2 + 1 + TagLen, relayFixed + nodeIDs + MaxPayload + TagLen
	case TypeCompletion:
		return completionFixed + 2, completionFixed + nodeIDs + MaxReason
	case TypeAssign:
		return assignFixed + assignBlockMin, assignFixed + MaxAssignBlocks*(assignBlockMin+MaxBlockIDLen-1)
	case TypeAssignAck:
		return assignAckFixed, assignAckFixed + MaxReason
	case TypeDiscard:
		return discardFixed + 2, discardFixed + nodeIDs
	case TypeControl:
		return controlFixed, MaxFrameLen - PrefixLen
	case TypeSync:
		return syncFixed, syncFixed
	case TypeSyncAgree:
		return syncAgreeFixed, syncAgreeFixed
	}
	return 0, 0
}

// Status is the outcome a COMPLETION reports.
type Status uint8

// Completion statuses.
const (
	StatusOK        Status = 1 // the keys are stored at the destination
	StatusBadTag    Status = 2 // a hop's tag did not verify; the keys are dropped
	StatusPoolFull  Status = 3 // the destination's pool has no room
	StatusNoRoute   Status = 4 // a relay has no next hop towards the destination
	StatusHopLimit  Status = 5 // the hop limit ran out before the destination
	StatusReplay    Status = 6 // a hop saw a pad position it had already consumed
	StatusDiscarded Status = 7 // the keys were dropped on a DISCARD
	StatusInternal  Status = 8 // the node failed for a reason of its own
)

// String returns the status's name as in docs/kmlink.md, such as "BAD_TAG".
func (s Status) String() string {
	switch s {
	case StatusOK:
		return "OK"
	case StatusBadTag:
		return "BAD_TAG"
	case StatusPoolFull:
		return "POOL_FULL"
	case StatusNoRoute:
		return "NO_ROUTE"
	case StatusHopLimit:
		return "HOP_LIMIT"
	case StatusReplay:
		return "REPLAY"
	case StatusDiscarded:
		return "DISCARDED"
	case StatusInternal:
		return "INTERNAL"
	}
	return "Status(" + strconv.Itoa(int(s)) + ")"
}

// Valid reports whether s is a status of version 2.
func (s Status) Valid() bool { return s >= StatusOK && s <= StatusInternal }

// Dir is a direction of a KM link, named from the link master's side.
type Dir uint8

// Link directions.
const (
	DirMasterToSlave Dir = 0 // pad the master sends under and the slave receives under
	DirSlaveToMaster Dir = 1 // pad the slave sends under and the master receives under
)

// String returns the direction's name as in docs/kmlink.md.
func (d Dir) String() string {
	switch d {
	case DirMasterToSlave:
		return "MASTER_TO_SLAVE"
	case DirSlaveToMaster:
		return "SLAVE_TO_MASTER"
	}
	return "Dir(" + strconv.Itoa(int(d)) + ")"
}

// Valid reports whether d is a direction of version 2.
func (d Dir) Valid() bool { return d <= DirSlaveToMaster }
