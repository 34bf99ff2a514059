//go:build linux

package ringstore

// This file holds the FIFO of keys waiting to be handed out: a doubly
// linked list through the slot entries, oldest at p.head.

func (p *Pool) linkTailLocked(s int32) {
	p.slots[s].prev, p.slots[s].next = p.tail, -1
	if p.tail >= 0 {
		p.slots[p.tail].next = s
	} else {
		p.head = s
	}
	p.tail = s
}

func (p *Pool) unlinkLocked(s int32) {
	e := &p.slots[s]
	if e.prev >= 0 {
		p.slots[e.prev].next = e.next
	} else {
		p.head = e.next
	}
	if e.next >= 0 {
		p.slots[e.next].prev = e.prev
	} else {
		p.tail = e.prev
	}
	e.prev, e.next = -1, -1
}
