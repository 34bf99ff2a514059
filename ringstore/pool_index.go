//go:build linux

package ringstore

// This file holds the key index: key ID to slot, by open addressing, and
// the per-call marks that find an ID twice in one batch.

import (
	"encoding/binary"
	"math/bits"
)

// The key index maps key IDs to slots by open addressing with linear
// probing: table[i] is a slot number + 1, or 0 for empty, and the ID itself
// is in the slot's entry. The table's size is a power of two of at least
// twice Slots, so it is at most half full and probes are short. A Go map
// here cost most of a memory-mode Put or take (a generic hash of a 16-byte
// key, growth, ~40 bytes per entry); this costs a multiply and 4 bytes.
//
// home hashes an ID to its first probe: Fibonacci hashing of both halves,
// salted with a per-pool random seed, taking the top bits. Derived IDs are
// SHA-1 outputs, so already uniform; the multiply spreads structured ones
// (say, sequential test IDs), and the seed keeps the layout from being the
// same in every process. It is not a keyed PRF: the IDs stored come from
// the trusted relay, and a lookup of chosen IDs only probes runs that the
// stored IDs made.
func (p *Pool) home(id *KeyID) uint64 {
	lo := binary.LittleEndian.Uint64(id[:8]) ^ p.seed
	hi := binary.LittleEndian.Uint64(id[8:])
	return ((lo ^ bits.RotateLeft64(hi*0xbf58476d1ce4e5b9, 32)) * 0x9e3779b97f4a7c15) >> p.shift
}

// lookupLocked returns the slot holding key id.
func (p *Pool) lookupLocked(id KeyID) (int32, bool) {
	for i := p.home(&id); ; i = (i + 1) & p.mask {
		e := p.table[i]
		if e == 0 {
			return -1, false
		}
		if p.slots[e-1].id == id {
			return int32(e - 1), true
		}
	}
}

// insertLocked indexes slot s under its ID, which is not in the index.
func (p *Pool) insertLocked(s int32) {
	i := p.home(&p.slots[s].id)
	for p.table[i] != 0 {
		i = (i + 1) & p.mask
	}
	p.table[i] = uint32(s) + 1
}

// unindexLocked removes the slots in picked from the index and clears their
// entries.
func (p *Pool) unindexLocked(picked []int32) {
	for _, s := range picked {
		i := p.home(&p.slots[s].id)
		for p.table[i] != uint32(s)+1 {
			i = (i + 1) & p.mask
		}
		p.deleteAt(i)
		p.slots[s] = slot{prev: -1, next: -1}
	}
}

// deleteAt empties table[i] and moves later entries of its probe run back
// into the hole (backward-shift deletion), so that no tombstones build up
// and every entry stays reachable from its home.
func (p *Pool) deleteAt(i uint64) {
	for j := i; ; {
		p.table[i] = 0
		for {
			j = (j + 1) & p.mask
			e := p.table[j]
			if e == 0 {
				return
			}
			// The entry at j may fill the hole at i unless its home lies
			// in (i, j], cyclically.
			if k := p.home(&p.slots[e-1].id); (j-k)&p.mask >= (j-i)&p.mask {
				p.table[i] = e
				i = j
				break
			}
		}
	}
}

// newEpochLocked starts a call's marks: a slot whose mark equals the epoch
// was picked earlier in the same call.
func (p *Pool) newEpochLocked() uint32 {
	p.epoch++
	if p.epoch == 0 {
		clear(p.mark)
		p.epoch = 1
	}
	return p.epoch
}
