//go:build linux

package ringstore

// This file holds the calls that move keys into and out of a pool: Put,
// the takes (FIFO for the encrypting side, by ID for the decrypting side),
// Discard and Expire, and the removal they share.

import (
	"fmt"
	"log/slog"

	"github.com/qrelay/qrelay/ringstore/internal/meta"
)

// Put adds a batch of keys from the relay: all of them or, on error, none.
// It fails with ErrPoolFull if they do not all fit (checked first), and with
// ErrDuplicateKey if an ID appears twice in the batch or is already in the
// pool. Put copies the key bytes; the caller zeroises its own copies.
func (p *Pool) Put(keys []NewKey) error {
	if len(keys) == 0 {
		return nil
	}
	p.mu.Lock()
	defer p.unlock()
	if err := p.usableLocked(); err != nil {
		return err
	}
	if len(keys) > MaxBatch {
		return fmt.Errorf("pool %q: Put of %d keys: at most %d per call", p.cfg.Name, len(keys), MaxBatch)
	}
	for _, k := range keys {
		if len(k.Key) == 0 || len(k.Key) > p.cfg.SlotSize {
			return fmt.Errorf("pool %q: key %s is %d bytes, want 1 to %d (SlotSize)", p.cfg.Name, k.ID, len(k.Key), p.cfg.SlotSize)
		}
	}
	if free := p.cfg.Slots - p.stock; len(keys) > free {
		return fmt.Errorf("pool %q cannot take %d keys: %d of %d slots in use: %w", p.cfg.Name, len(keys), p.stock, p.cfg.Slots, ErrPoolFull)
	}

	// Index the keys, rejecting duplicates: a key found in a slot picked
	// by this call came earlier in the batch.
	picked := p.allocLocked(len(keys))
	var expiry int64
	if p.cfg.TTL > 0 {
		expiry = p.cfg.Now().Add(p.cfg.TTL).UnixNano()
	}
	seq := p.nextSeq
	epoch := p.newEpochLocked()
	for i, k := range keys {
		if old, ok := p.lookupLocked(k.ID); ok {
			err := fmt.Errorf("pool %q: key %s is already in the pool: %w", p.cfg.Name, k.ID, ErrDuplicateKey)
			if p.mark[old] == epoch {
				err = fmt.Errorf("pool %q: key %s appears twice in the batch: %w", p.cfg.Name, k.ID, ErrDuplicateKey)
			}
			p.unindexLocked(picked[:i])
			p.freeLocked(picked)
			return err
		}
		s := picked[i]
		p.slots[s] = slot{id: k.ID, n: uint32(len(k.Key)), seq: seq + uint64(i), expiry: expiry, prev: -1, next: -1}
		p.mark[s] = epoch
		p.insertLocked(s)
	}
	for i, k := range keys {
		copy(p.slotBytes(picked[i]), k.Key)
	}
	if p.durable {
		if err := p.syncSlots(picked); err != nil {
			for _, s := range picked {
				clear(p.slotBytes(s))
				p.stats.ZeroisedBytes += uint64(p.slots[s].n)
			}
			p.unindexLocked(picked)
			p.freeLocked(picked)
			return fmt.Errorf("pool %q: %w", p.cfg.Name, err)
		}
		err := p.cfg.Meta.Update(func(tx *meta.Tx) error {
			// badger keeps the value slices until the commit: one buffer,
			// one entry after another.
			vals := make([]byte, 0, len(keys)*(poolEntryFixed+4))
			for _, s := range picked {
				start := len(vals)
				vals = appendEntry(vals, s, &p.slots[s])
				if err := tx.Set(p.entryKey(p.slots[s].id), vals[start:len(vals):len(vals)]); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			// The slots keep their bytes: if the transaction did commit,
			// the index names them; if not, OpenPool zeroises them.
			return p.failLocked("Put", err)
		}
	}
	before := p.stock
	for _, s := range picked {
		p.linkTailLocked(s)
	}
	p.nextSeq += uint64(len(keys))
	p.stock += len(keys)
	p.stats.Added += uint64(len(keys))
	p.watermarksLocked(before)
	return nil
}

// TakeNext hands out the n oldest keys (first in, first out) to owner o,
// returned with each key, and removes them from the pool. If the pool has fewer than n keys it takes none and fails
// with ErrPoolEmpty.
func (p *Pool) TakeNext(n int, o Owner) ([]Key, error) {
	return p.takeNext(n, o, false)
}

// TakeNextFree is TakeNext that passes by the keys with an owner (those
// ReserveNext reserved): their owner takes them by ID.
func (p *Pool) TakeNextFree(n int, o Owner) ([]Key, error) {
	return p.takeNext(n, o, true)
}

func (p *Pool) takeNext(n int, o Owner, skipOwned bool) ([]Key, error) {
	if n == 0 {
		return nil, nil
	}
	p.mu.Lock()
	defer p.unlock()
	if err := p.usableLocked(); err != nil {
		return nil, err
	}
	if n < 0 || n > MaxBatch {
		return nil, fmt.Errorf("pool %q: TakeNext of %d keys: want 1 to %d per call", p.cfg.Name, n, MaxBatch)
	}
	if err := checkOwner(o); err != nil {
		return nil, fmt.Errorf("pool %q: TakeNext: %w", p.cfg.Name, err)
	}
	if p.stock < n {
		return nil, fmt.Errorf("pool %q has %d keys, %d requested: %w", p.cfg.Name, p.stock, n, ErrPoolEmpty)
	}
	picked := p.oldestLocked(n, skipOwned) // reserved keys are handed out by ID only
	if len(picked) < n {
		return nil, fmt.Errorf("pool %q has %d keys not reserved, %d requested: %w", p.cfg.Name, len(picked), n, ErrPoolEmpty)
	}
	keys, err := p.removeLocked(picked, o, "TakeNext")
	if err == nil {
		p.stats.Taken += uint64(len(keys))
	}
	return keys, err
}

// oldestLocked picks up to n slots in FIFO order, only those without an
// owner if freeOnly, into p.picked.
func (p *Pool) oldestLocked(n int, freeOnly bool) []int32 {
	picked := p.picked[:0]
	for s := p.head; s >= 0 && len(picked) < n; s = p.slots[s].next {
		if !freeOnly || p.slots[s].owner == "" {
			picked = append(picked, s)
		}
	}
	p.picked = picked
	return picked
}

// TakeByIDs hands out the keys ids with their owners and removes them from
// the pool: all of them, or, if any ID is
// not in the pool (ErrUnknownKey) or appears twice (ErrDuplicateKey), none.
//
// The caller authorises with the returned owners after the keys have left
// the pool; TakeByIDsIf authorises first, so that a refused request
// costs no keys.
func (p *Pool) TakeByIDs(ids []KeyID) ([]Key, error) {
	return p.TakeByIDsIf(ids, nil)
}

// TakeByIDsIf is TakeByIDs that first calls allow for every key (if allow is
// not nil) and takes nothing if any call returns an error, which it returns
// naming the key. allow runs under the pool's lock: it must not call the
// pool.
func (p *Pool) TakeByIDsIf(ids []KeyID, allow func(id KeyID, o Owner) error) ([]Key, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	p.mu.Lock()
	defer p.unlock()
	if err := p.usableLocked(); err != nil {
		return nil, err
	}
	if len(ids) > MaxBatch {
		return nil, fmt.Errorf("pool %q: TakeByIDs of %d keys: at most %d per call", p.cfg.Name, len(ids), MaxBatch)
	}
	picked := p.picked[:0]
	epoch := p.newEpochLocked()
	for _, id := range ids {
		s, ok := p.lookupLocked(id)
		if !ok {
			return nil, fmt.Errorf("pool %q: key %s is not in the pool: %w", p.cfg.Name, id, ErrUnknownKey)
		}
		if p.mark[s] == epoch {
			return nil, fmt.Errorf("pool %q: key %s is requested twice: %w", p.cfg.Name, id, ErrDuplicateKey)
		}
		p.mark[s] = epoch
		if allow != nil {
			if err := allow(id, p.slots[s].owner); err != nil {
				return nil, fmt.Errorf("pool %q: key %s: %w", p.cfg.Name, id, err)
			}
		}
		picked = append(picked, s)
	}
	p.picked = picked
	keys, err := p.removeLocked(picked, "", "TakeByIDs")
	if err == nil {
		p.stats.Taken += uint64(len(keys))
	}
	return keys, err
}

// Discard zeroises and removes those of the keys ids that are in the pool
// and that allow (if not nil) accepts, skipping the others, in one
// metadata transaction, and returns how many it removed. It is for keys
// the other end gave up on (a cancelled assignment), where some may be
// gone already; nobody gets their bytes.
func (p *Pool) Discard(ids []KeyID, allow func(id KeyID, o Owner) error) (int, error) {
	if len(ids) == 0 {
		return 0, nil
	}
	p.mu.Lock()
	defer p.unlock()
	if err := p.usableLocked(); err != nil {
		return 0, err
	}
	if len(ids) > MaxBatch {
		return 0, fmt.Errorf("pool %q: Discard of %d keys: at most %d per call", p.cfg.Name, len(ids), MaxBatch)
	}
	picked := p.picked[:0]
	epoch := p.newEpochLocked()
	for _, id := range ids {
		s, ok := p.lookupLocked(id)
		if !ok || p.mark[s] == epoch {
			continue
		}
		p.mark[s] = epoch
		if allow != nil {
			if allow(id, p.slots[s].owner) != nil {
				continue
			}
		}
		picked = append(picked, s)
	}
	p.picked = picked
	if len(picked) == 0 {
		return 0, nil
	}
	keys, err := p.removeLocked(picked, "", "Discard")
	for _, k := range keys {
		clear(k.Bytes)
	}
	return len(keys), err
}

// Expire zeroises and removes the keys whose TTL has passed, in batches of
// up to MaxBatch keys (one metadata transaction each), and returns how
// many. Keys leave in FIFO order: Expire stops at the first key still live,
// so if the clock stepped back or the TTL was shortened, a key may outlive
// its expiry until the keys put before it have gone. Keys put while the
// pool had no TTL get one from the OpenPool that first has a TTL. In
// durable mode a metadata failure is logged and puts the pool out of
// service (ErrPoolFailed); Expire then returns what it removed before.
func (p *Pool) Expire() int {
	p.mu.Lock()
	defer p.unlock()
	if p.usableLocked() != nil || p.cfg.TTL == 0 {
		return 0
	}
	now := p.cfg.Now().UnixNano()
	expired := 0
	for {
		picked := p.picked[:0]
		for s := p.head; s >= 0 && len(picked) < MaxBatch; s = p.slots[s].next {
			if e := p.slots[s].expiry; e == 0 || e > now {
				break
			}
			picked = append(picked, s)
		}
		p.picked = picked
		if len(picked) == 0 {
			return expired
		}
		if _, err := p.removeLocked(picked, "", "Expire"); err != nil {
			slog.Error("key pool: expiring keys failed", "pool", p.cfg.Name, "keys", len(picked), "err", err)
			return expired
		}
		p.stats.Expired += uint64(len(picked))
		expired += len(picked)
	}
}

// removeLocked hands out the keys in picked, in that order, and removes
// them: copy out, delete the index entries (one transaction), zeroise, msync.
// owner, if not empty, replaces their owners.
func (p *Pool) removeLocked(picked []int32, owner Owner, op string) ([]Key, error) {
	total := 0
	for _, s := range picked {
		total += int(p.slots[s].n)
	}
	buf := make([]byte, total)
	keys := make([]Key, len(picked))
	off := 0
	for i, s := range picked {
		e := &p.slots[s]
		b := buf[off : off+int(e.n) : off+int(e.n)]
		off += copy(b, p.slotBytes(s)[:e.n])
		keys[i] = Key{ID: e.id, Bytes: b, Owner: e.owner}
		if owner != "" {
			keys[i].Owner = owner
		}
	}
	if p.durable {
		err := p.cfg.Meta.Update(func(tx *meta.Tx) error {
			for _, s := range picked {
				if err := tx.Delete(p.entryKey(p.slots[s].id)); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			clear(buf)
			return nil, p.failLocked(op, err)
		}
	}
	for _, s := range picked {
		n := p.slots[s].n
		clear(p.slotBytes(s)[:n])
		p.stats.ZeroisedBytes += uint64(n)
	}
	if p.durable {
		if err := p.syncSlots(picked); err != nil {
			// The keys are out of the index and zero in memory; the kernel
			// writes the zeroes back in time. Refusing now would lose keys.
			slog.Error("key pool: msync after zeroisation failed; zeroes reach the slot file when the kernel writes them back",
				"pool", p.cfg.Name, "file", p.path, "err", err)
		}
	}
	before := p.stock
	for _, s := range picked {
		p.unlinkLocked(s)
	}
	p.unindexLocked(picked)
	p.freeLocked(picked)
	p.stock -= len(picked)
	p.watermarksLocked(before)
	return keys, nil
}
