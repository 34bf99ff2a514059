package supply

import (
	"github.com/qrelay/qrelay/dataplane/frame"
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

// What a node drops is a frame.PoolDropKey, whose reason
// (frame.PoolDropReason: missing at the other end, unconfirmed,
// reservation lost, stale assignment, or orphan, which is kept until
// orphan_ttl) is carried by POOL_DROP.

// poolInventory is one node's two pools shared with the other node,
// each sorted by ID with no ID twice (ringstore.Pool.Inventory).
type poolInventory struct {
	out, in []ringstore.KeyState
}

// reconcilePools applies the rules to the pools two nodes x and y
// share: x's out pool with y's in pool, y's out pool with x's in pool.
// xRestarted (yRestarted) says x (y) restarted since their last
// reconciliation. It returns what each node drops, in ID order per pool.
func reconcilePools(x, y poolInventory, xRestarted, yRestarted bool) (atX, atY []frame.PoolDropKey) {
	atX, atY = reconcilePair(x.out, y.in, xRestarted, atX, atY)
	atY, atX = reconcilePair(y.out, x.in, yRestarted, atY, atX)
	return atX, atY
}

// reconcilePair applies the rules to one pool pair, appending what the
// out node drops to atO and what the in node drops to atI.
func reconcilePair(o, i []ringstore.KeyState, oRestarted bool, atO, atI []frame.PoolDropKey) ([]frame.PoolDropKey, []frame.PoolDropKey) {
	dropO := func(k ringstore.KeyState, r frame.PoolDropReason) {
		atO = append(atO, frame.PoolDropKey{ID: k.ID, Assigned: k.Owned, Reason: r})
	}
	dropI := func(k ringstore.KeyState, r frame.PoolDropReason) {
		atI = append(atI, frame.PoolDropKey{ID: k.ID, In: true, Assigned: k.Owned, Reason: r})
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
			dropO(o[0], frame.PoolDropMissing)
			o = o[1:]
		case c > 0: // in I only
			switch {
			case !i[0].Owned:
				dropI(i[0], frame.PoolDropUnconfirmed)
			case oRestarted:
				dropI(i[0], frame.PoolDropOrphan)
			}
			i = i[1:]
		default: // in both
			switch ko, ki := o[0], i[0]; {
			case !ko.Owned && ki.Owned:
				dropO(ko, frame.PoolDropStale)
				dropI(ki, frame.PoolDropStale)
			case ko.Owned && oRestarted:
				dropO(ko, frame.PoolDropReserved)
				dropI(ki, frame.PoolDropReserved)
			}
			o, i = o[1:], i[1:]
		}
	}
	return atO, atI
}
