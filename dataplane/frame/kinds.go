package frame

import "strconv"

// Kind is the kind of a CONTROL frame (its field at offset 8), or the inner
// kind of a ROUTED message: what the body, or the routed payload, is. Every
// kind of version 2 is in the table below and in docs/kmlink.md, section 4.6.
// Kinds 0 to 15 belong to the KM link, 16 and up to the control plane and
// to the messages nodes route to one another.
type Kind uint16

// CONTROL kinds of the KM link (0 to 15).
const (
	// KindHello was version 1's HELLO. SYNC and SYNC_AGREE replace it; in
	// version 2 a CONTROL frame of kind 1 closes the connection, like any
	// other kind below KindControlPlaneMin but KindRouted.
	KindHello Kind = 1
	// KindRouted is ROUTED (routed.go): a message between two nodes that
	// need not be neighbours, forwarded hop by hop along the route to its
	// destination. Its payload's kind is one of the routed kinds below.
	KindRouted Kind = 2
)

// KindControlPlaneMin is the first kind that is not the KM link's own.
// A ROUTED message's inner kind is at least this.
const KindControlPlaneMin Kind = 16

// CONTROL kinds of the control plane (16 and up), sent to a neighbour.
const (
	// KindControlPlane carries every message of package controlplane
	// (link-state adverts); their type is the body's first byte, and the
	// body format is specified in controlplane/doc.go.
	KindControlPlane Kind = 16
)

// Routed kinds: the inner kind of a ROUTED message, whose payload is one
// of the messages below (docs/kmlink.md, section 10).
const (
	// KindSAEAssign is SAE_ASSIGN (sae_assign.go): the node that handed
	// keys of its out pool to a master SAE tells the keys' other node which
	// SAEs may fetch them.
	KindSAEAssign Kind = 32
	// KindSAEAssignAck is SAE_ASSIGN_ACK (sae_assign_ack.go): the outcome
	// of each assignment of an SAE_ASSIGN.
	KindSAEAssignAck Kind = 33
	// KindKeyStream is KEY_STREAM (key_stream.go): a key stream's owner
	// tells the other node which key holds which index.
	KindKeyStream Kind = 34
	// KindKeyStreamAck is KEY_STREAM_ACK (key_stream.go): the outcome of
	// each index of a KEY_STREAM.
	KindKeyStreamAck Kind = 35
	// KindSAEAssignCancel is SAE_ASSIGN_CANCEL (sae_assign_cancel.go): the
	// keys of an assignment that timed out were discarded; discard them too.
	KindSAEAssignCancel Kind = 36
	// KindPoolHello is POOL_HELLO (pool_hello.go): a node's boot ID, so
	// that the nodes it shares pools with notice that it restarted.
	KindPoolHello Kind = 37
	// KindPoolSyncReq is POOL_SYNC_REQ (pool_hello.go): the coordinator
	// of a pool reconciliation round asks the other node to pause.
	KindPoolSyncReq Kind = 38
	// KindPoolSyncReady is POOL_SYNC_READY (pool_hello.go): the other
	// node has paused (or cannot) and gives its pools' sizes.
	KindPoolSyncReady Kind = 39
	// KindPoolInvReq is POOL_INV_REQ (pool_inv.go): the coordinator asks
	// for one chunk of the other node's inventory.
	KindPoolInvReq Kind = 40
	// KindPoolInv is POOL_INV (pool_inv.go): one chunk of an inventory.
	KindPoolInv Kind = 41
	// KindPoolDrop is POOL_DROP (pool_drop.go): the keys the other node
	// drops, one chunk.
	KindPoolDrop Kind = 42
	// KindPoolDropAck is POOL_DROP_ACK (pool_drop.go): one POOL_DROP
	// chunk is applied, or why not.
	KindPoolDropAck Kind = 43
	// KindSAEAssignCancelAck is SAE_ASSIGN_CANCEL_ACK
	// (sae_assign_cancel.go): an SAE_ASSIGN_CANCEL is applied, or why not.
	KindSAEAssignCancelAck Kind = 44
)

// kindNames are the names of the kinds as in docs/kmlink.md.
var kindNames = map[Kind]string{
	KindHello:              "HELLO",
	KindRouted:             "ROUTED",
	KindControlPlane:       "CONTROL_PLANE",
	KindSAEAssign:          "SAE_ASSIGN",
	KindSAEAssignAck:       "SAE_ASSIGN_ACK",
	KindKeyStream:          "KEY_STREAM",
	KindKeyStreamAck:       "KEY_STREAM_ACK",
	KindSAEAssignCancel:    "SAE_ASSIGN_CANCEL",
	KindPoolHello:          "POOL_HELLO",
	KindPoolSyncReq:        "POOL_SYNC_REQ",
	KindPoolSyncReady:      "POOL_SYNC_READY",
	KindPoolInvReq:         "POOL_INV_REQ",
	KindPoolInv:            "POOL_INV",
	KindPoolDrop:           "POOL_DROP",
	KindPoolDropAck:        "POOL_DROP_ACK",
	KindSAEAssignCancelAck: "SAE_ASSIGN_CANCEL_ACK",
}

// String returns the kind's name as in docs/kmlink.md, such as "SAE_ASSIGN".
func (k Kind) String() string {
	if s, ok := kindNames[k]; ok {
		return s
	}
	return "Kind(" + strconv.Itoa(int(k)) + ")"
}

// Routed reports whether k is the kind of a message nodes route to one
// another (the payload of a ROUTED message) that this package encodes.
func (k Kind) Routed() bool { return k >= KindSAEAssign && k <= KindSAEAssignCancelAck }
