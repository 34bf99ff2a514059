//go:build linux

package ringstore

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"

	"github.com/qrelay/qrelay/ringstore/internal/meta"
)

// KeyState is one key of a pool's inventory: its ID, and whether it has an
// owner (SetOwner, ReserveNext) or is free.
type KeyState struct {
	ID    KeyID
	Owned bool
}

// CompareKeyIDs orders key IDs as Inventory sorts them: bytewise.
func CompareKeyIDs(a, b KeyID) int { return bytes.Compare(a[:], b[:]) }

// Inventory appends the state of every key in the pool to dst, sorted by
// ID, and returns it. It is what two nodes compare to reconcile the two
// ends of a pool pair after a restart (supply/pool_sync.go): IDs and
// owner flags, no key bytes and no function of them. It holds the
// pool's lock for one pass over the keys (17 bytes copied per key, no
// I/O) and sorts after releasing it.
func (p *Pool) Inventory(dst []KeyState) ([]KeyState, error) {
	p.mu.Lock()
	if err := p.usableLocked(); err != nil {
		p.mu.Unlock()
		return dst, err
	}
	start := len(dst)
	dst = slices.Grow(dst, p.stock)
	for s := p.head; s >= 0; s = p.slots[s].next {
		e := &p.slots[s]
		dst = append(dst, KeyState{ID: e.id, Owned: e.owner != ""})
	}
	p.mu.Unlock()
	slices.SortFunc(dst[start:], func(a, b KeyState) int { return CompareKeyIDs(a.ID, b.ID) })
	return dst, nil
}

// PoolExists says whether metadata store m holds a durable pool named
// name, one that OpenPool would open rather than create. A caller that
// only wants to look at a pool's keys (an inventory) need not create one
// that does not exist, with its preallocated slot file.
func PoolExists(m *Meta, name string) (bool, error) {
	if err := checkPoolName(name); err != nil {
		return false, fmt.Errorf("pool %q: Name %v", name, err)
	}
	_, err := m.Get("pool/" + name + "/hdr")
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, meta.ErrNotFound):
		return false, nil
	}
	return false, fmt.Errorf("pool %q: %w", name, err)
}

// Digest returns the number of keys in the pool and an order-independent
// check value over them: the XOR of SHA-256(ID ‖ key) of every key. Two
// nodes that hold the same keys under the same IDs have equal digests
// whatever order the keys arrived in, so operators and tests can compare
// the two ends of a pool pair without moving key bytes. The hash is one
// way: the digest reveals nothing usable about the keys.
func (p *Pool) Digest() (int, [sha256.Size]byte, error) {
	var sum [sha256.Size]byte
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.usableLocked(); err != nil {
		return 0, sum, err
	}
	h := sha256.New()
	var one [sha256.Size]byte
	n := 0
	for s := p.head; s >= 0; s = p.slots[s].next {
		e := &p.slots[s]
		h.Reset()
		h.Write(e.id[:])
		h.Write(p.slotBytes(s)[:e.n])
		h.Sum(one[:0])
		for i := range sum {
			sum[i] ^= one[i]
		}
		n++
	}
	clear(one[:])
	return n, sum, nil
}
