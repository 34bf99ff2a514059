// Package ringstore will own the key stores between the QKD links and
// everything that uses their keys: one pad ring per KM link and direction,
// and one end-to-end key pool per remote node. It will handle reservation
// of pad ranges (a range's position identifies it), consumption, batched
// zeroisation of whole segments as the tail passes them, TTL expiry,
// low/high watermarks, and durable cursors: reservation high-water marks in
// badger, persisted in batches, so that no pad byte is ever handed out twice,
// even after a crash. Key bytes live in locked memory and, in durable mode,
// in preallocated ring files zeroised in place, never in badger.
//
// It knows bytes and positions, not networks (see ../shared/DESIGN.md,
// invariants 1-5).
package ringstore
