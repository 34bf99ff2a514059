//go:build linux

package ringstore

// This file holds the slot allocator: the bitmap of slots in use and the
// slot's bytes in key memory.

import (
	"math/bits"
)

func (p *Pool) slotBytes(s int32) []byte {
	off := int(s) * p.cfg.SlotSize
	return p.mem[off : off+p.cfg.SlotSize : off+p.cfg.SlotSize]
}

// allocLocked marks n free slots used and returns them (in p.picked). It
// scans the bitmap from the cursor, so that in FIFO use a batch gets
// consecutive slots (fewer pages to msync). The caller has checked that n
// slots are free.
func (p *Pool) allocLocked(n int) []int32 {
	picked := p.picked[:0]
	w := p.cursor / 64
	for len(picked) < n {
		free := ^p.used[w]
		for free != 0 && len(picked) < n {
			b := bits.TrailingZeros64(free)
			free &= free - 1
			p.used[w] |= 1 << b
			picked = append(picked, int32(w*64+b))
		}
		if len(picked) < n {
			w = (w + 1) % len(p.used)
		}
	}
	p.cursor = (int(picked[len(picked)-1]) + 1) % p.cfg.Slots
	p.picked = picked
	return picked
}

func (p *Pool) freeLocked(picked []int32) {
	for _, s := range picked {
		p.used[s/64] &^= 1 << (s % 64)
	}
}
