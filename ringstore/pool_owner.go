//go:build linux

package ringstore

// This file holds the owners of a pool's keys: an opaque tag the caller
// gives a key (ReserveNext on the encrypting side, SetOwner on the
// decrypting side, TakeNext as it hands keys out) and reads back when it
// takes or discards keys, and the index rewrites it costs in durable mode.

import (
	"errors"
	"fmt"

	"github.com/dgraph-io/badger/v4"
	"github.com/qrelay/qrelay/ringstore/internal/meta"
)

// Owner is an opaque tag naming who may have a key. The pool stores it
// with the key, durably in durable mode, compares it byte for byte, and
// gives it back; what it means is the caller's (the supply service
// encodes the SAEs a key is assigned to). The empty Owner means no owner
// yet: a free key.
type Owner string

func checkOwner(o Owner) error {
	if o == "" {
		return errors.New("owner tag is empty")
	}
	if len(o) > MaxOwnerLen {
		return fmt.Errorf("owner tag is %d bytes, at most %d allowed", len(o), MaxOwnerLen)
	}
	return nil
}

// OwnerConflict is SetOwner's error for a key that has another owner, so
// that the caller can say whose it is; errors.Is(err, ErrOwned) holds.
type OwnerConflict struct {
	Pool  string
	ID    KeyID
	Owner Owner // the key's owner
}

func (e *OwnerConflict) Error() string {
	return fmt.Sprintf("pool %q: SetOwner: key %s has another owner: %v", e.Pool, e.ID, ErrOwned)
}

func (e *OwnerConflict) Unwrap() error { return ErrOwned }

// ReserveNext gives the n oldest keys without an owner the owner o
// without taking them out of the pool, and returns their IDs, oldest
// first. The encrypting side reserves keys for a pair of SAEs ahead of
// their requests and hands them out later with TakeByIDs; TakeNextFree
// passes them by. Fewer than n keys without an owner: none is reserved,
// ErrPoolEmpty.
func (p *Pool) ReserveNext(n int, o Owner) ([]KeyID, error) {
	if n == 0 {
		return nil, nil
	}
	p.mu.Lock()
	defer p.unlock()
	if err := p.usableLocked(); err != nil {
		return nil, err
	}
	if n < 0 || n > MaxBatch {
		return nil, fmt.Errorf("pool %q: ReserveNext of %d keys: want 1 to %d per call", p.cfg.Name, n, MaxBatch)
	}
	if err := checkOwner(o); err != nil {
		return nil, fmt.Errorf("pool %q: ReserveNext: %w", p.cfg.Name, err)
	}
	picked := p.oldestLocked(n, true)
	if len(picked) < n {
		return nil, fmt.Errorf("pool %q has %d keys not reserved, %d to reserve: %w", p.cfg.Name, len(picked), n, ErrPoolEmpty)
	}
	if p.durable {
		if err := p.writeOwners(picked, o); err != nil {
			return nil, p.failLocked("ReserveNext", err)
		}
	}
	ids := make([]KeyID, len(picked))
	for i, s := range picked {
		p.slots[s].owner = o
		ids[i] = p.slots[s].id
	}
	return ids, nil
}

// SetOwner gives the keys ids the owner o: on the decrypting side, what
// the encrypting side says it handed out. An ID the pool does not hold
// fails with ErrUnknownKey, and a key with another owner with ErrOwned;
// then nothing is recorded. Setting the owner a key has already does
// nothing (the message may be a retransmission).
func (p *Pool) SetOwner(ids []KeyID, o Owner) error {
	if len(ids) == 0 {
		return nil
	}
	p.mu.Lock()
	defer p.unlock()
	if err := p.usableLocked(); err != nil {
		return err
	}
	if len(ids) > MaxBatch {
		return fmt.Errorf("pool %q: SetOwner of %d keys: at most %d per call", p.cfg.Name, len(ids), MaxBatch)
	}
	if err := checkOwner(o); err != nil {
		return fmt.Errorf("pool %q: SetOwner: %w", p.cfg.Name, err)
	}
	picked := p.picked[:0]
	epoch := p.newEpochLocked()
	for _, id := range ids {
		s, ok := p.lookupLocked(id)
		if !ok {
			return fmt.Errorf("pool %q: SetOwner: key %s is not in the pool: %w", p.cfg.Name, id, ErrUnknownKey)
		}
		if old := p.slots[s].owner; old != "" {
			if old != o {
				return &OwnerConflict{Pool: p.cfg.Name, ID: id, Owner: old}
			}
			continue
		}
		if p.mark[s] != epoch {
			p.mark[s] = epoch
			picked = append(picked, s)
		}
	}
	p.picked = picked
	if len(picked) == 0 {
		return nil
	}
	if p.durable {
		if err := p.writeOwners(picked, o); err != nil {
			return p.failLocked("SetOwner", err)
		}
	}
	for _, s := range picked {
		p.slots[s].owner = o
	}
	return nil
}

// writeOwners rewrites the index entries of picked with owner o, in one
// transaction if badger takes it, else in halves (entries with an owner
// are larger than the ones Put writes; a SetOwner cut short by a crash is
// sent again by the encrypting side, or its keys expire).
func (p *Pool) writeOwners(picked []int32, o Owner) error {
	err := p.cfg.Meta.Update(func(tx *meta.Tx) error {
		for _, s := range picked {
			e := p.slots[s]
			e.owner = o
			// A fresh value each: badger keeps them until the commit.
			if err := tx.Set(p.entryKey(e.id), appendEntry(nil, s, &e)); err != nil {
				return err
			}
		}
		return nil
	})
	if errors.Is(err, badger.ErrTxnTooBig) && len(picked) > 1 {
		h := len(picked) / 2
		if err := p.writeOwners(picked[:h], o); err != nil {
			return err
		}
		return p.writeOwners(picked[h:], o)
	}
	return err
}
