package supply

import (
	"github.com/qrelay/qrelay/ringstore"
)

// The rules of pool reconciliation (pool_sync.go), as a pure function of
// the two nodes' inventories and of which of them restarted.
//
// A pool pair is the out pool O of the node that sourced the keys (its
// master SAEs and the key streams it owns take them) and the in pool I
// at the other node (its slave SAEs fetch them once assigned, the key
// streams it does not own take them). Whatever both nodes do, a key
// leaves O before its ID reaches anyone: enc_keys, reservations handed
// out and stream keys all take it out of O first. So a key still in O has
// been handed to nobody, and a key assigned in I but gone from O has gone
// to a master SAE, or was lost with O's node's memory.
//
// Per key, by its state in O and in I (absent, free, assigned) and by
// whether O's node restarted since the last reconciliation of the pair:
//
//	O         I         O restarted  at O             at I
//	free      absent    either       drop (missing)   -
//	assigned  absent    either       drop (missing)   -
//	absent    free      either       -                drop (unconfirmed)
//	absent    assigned  no           -                keep: its slave fetches it
//	absent    assigned  yes          -                orphan: kept for orphan_ttl
//	free      free      either       keep             keep
//	free      assigned  either       drop (stale)     drop (stale)
//	assigned  free      no           keep             keep: ASSIGN or its cancel settles it
//	assigned  free      yes          drop (reserved)  drop (reserved)
//	assigned  assigned  no           keep             keep: a live reservation
//	assigned  assigned  yes          drop (reserved)  drop (reserved)
//
// missing: the other end lacks the key, so it is usable nowhere.
// unconfirmed: the source never stored it (its COMPLETION was lost with
// a restart) or lost it; nobody was told its ID. reserved: a reservation
// (ReserveNext keeps reserved keys in O, marked assigned, until handed
// out); O's node lost its list of reservations in the restart, so nobody
// will ever hand it out. stale: a key O still holds was never handed out,
// so an assignment of it at I names a master that does not have it; no
// path of the protocols leads here, and dropping it at both ends is the
// one outcome that is never usable at one end only. orphan: a key
// handed to a master SAE before O's node restarted looks the same as a
// reservation the restart lost (both are assigned at I, gone from O in
// memory mode); it is kept for its slave to fetch until orphan_ttl, then
// discarded. In durable mode a reservation lost in a restart is still in
// O, but keys taken out of O by an enc_keys whose answer never reached
// its SAE (a crash between the acknowledgement and the answer) are
// orphans as well, so the orphan expiry applies after any restart of O's
// node.
//
// In memory mode a restarted node's pools are empty: the rules drop all
// the counterparts' free and reserved keys and keep the assigned ones as
// orphans.

// dropReason says why reconciliation removes a key, or that it keeps it
// as an orphan (the values are those of POOL_DROP).
type dropReason uint8

const (
	reasonMissing     dropReason = 1 // in O, not in I
	reasonUnconfirmed dropReason = 2 // free in I, not in O
	reasonReserved    dropReason = 3 // a reservation O's node lost in a restart
	reasonStale       dropReason = 4 // assigned in I, still free in O
	reasonOrphan      dropReason = 5 // assigned in I, gone from O, O's node restarted: expires
)

var reasonNames = [...]string{
	reasonMissing:     "missing_at_other_end",
	reasonUnconfirmed: "unconfirmed",
	reasonReserved:    "reservation_lost",
	reasonStale:       "stale_assignment",
	reasonOrphan:      "orphan",
}

func (r dropReason) String() string {
	if int(r) < len(reasonNames) && reasonNames[r] != "" {
		return reasonNames[r]
	}
	return "unknown"
}

// poolDrop is one key a node drops (or, reasonOrphan, keeps until
// orphan_ttl) from one of its two pools shared with the other node.
type poolDrop struct {
	id       ringstore.KeyID
	in       bool // the in pool; else the out pool
	assigned bool // its state in the inventory: it is dropped only if still so
	reason   dropReason
}

// poolInventory is one node's two pools shared with the other node,
// each sorted by ID with no ID twice (ringstore.Pool.Inventory).
type poolInventory struct {
	out, in []ringstore.KeyState
}

// reconcilePools applies the rules to the pools two nodes x and y
// share: x's out pool with y's in pool, y's out pool with x's in pool.
// xRestarted (yRestarted) says x (y) restarted since their last
// reconciliation. It returns what each node drops, in ID order per pool.
func reconcilePools(x, y poolInventory, xRestarted, yRestarted bool) (atX, atY []poolDrop) {
	atX, atY = reconcilePair(x.out, y.in, xRestarted, atX, atY)
	atY, atX = reconcilePair(y.out, x.in, yRestarted, atY, atX)
	return atX, atY
}

// reconcilePair applies the rules to one pool pair, appending what the
// out node drops to atO and what the in node drops to atI.
func reconcilePair(o, i []ringstore.KeyState, oRestarted bool, atO, atI []poolDrop) ([]poolDrop, []poolDrop) {
	dropO := func(k ringstore.KeyState, r dropReason) {
		atO = append(atO, poolDrop{id: k.ID, assigned: k.Assigned, reason: r})
	}
	dropI := func(k ringstore.KeyState, r dropReason) {
		atI = append(atI, poolDrop{id: k.ID, in: true, assigned: k.Assigned, reason: r})
	}
	for len(o) > 0 || len(i) > 0 {
		c := 0
		switch {
		case len(o) == 0:
			c = 1
		case len(i) == 0:
			c = -1
		default:
			c = ringstore.CompareKeyIDs(o[0].ID, i[0].ID)
		}
		switch {
		case c < 0: // in O only
			dropO(o[0], reasonMissing)
			o = o[1:]
		case c > 0: // in I only
			switch {
			case !i[0].Assigned:
				dropI(i[0], reasonUnconfirmed)
			case oRestarted:
				dropI(i[0], reasonOrphan)
			}
			i = i[1:]
		default: // in both
			switch ko, ki := o[0], i[0]; {
			case !ko.Assigned && ki.Assigned:
				dropO(ko, reasonStale)
				dropI(ki, reasonStale)
			case ko.Assigned && oRestarted:
				dropO(ko, reasonReserved)
				dropI(ki, reasonReserved)
			}
			o, i = o[1:], i[1:]
		}
	}
	return atO, atI
}
