//go:build linux

package ringstore

// This file holds the SAE assignments of a pool's keys: who may have a key
// (Assignment), ReserveNext on the encrypting side and Assign on the
// decrypting side, and the index rewrites they cost in durable mode.

import (
	"errors"
	"fmt"
	"slices"

	"github.com/dgraph-io/badger/v4"
	"github.com/qrelay/qrelay/ringstore/internal/meta"
)

// Assignment says which SAEs may have a key: the master SAE that asked for
// it on the encrypting side (ETSI GS QKD 014 enc_keys) and the slave SAEs
// that may fetch it on the decrypting side (dec_keys). The zero Assignment
// means not assigned yet.
type Assignment struct {
	Master string
	Slaves []string
}

func checkAssignment(a Assignment) error {
	if a.Master == "" {
		return errors.New("assignment has no master SAE")
	}
	if len(a.Slaves) > MaxSlaves {
		return fmt.Errorf("assignment has %d slave SAEs, at most %d allowed", len(a.Slaves), MaxSlaves)
	}
	if len(a.Master) > MaxSAEIDLen {
		return fmt.Errorf("assignment's master SAE ID %.40q... is %d bytes, at most %d allowed", a.Master, len(a.Master), MaxSAEIDLen)
	}
	for i, s := range a.Slaves {
		if s == "" || len(s) > MaxSAEIDLen {
			return fmt.Errorf("assignment's slave SAE ID %d (%.40q) is %d bytes, want 1 to %d", i, s, len(s), MaxSAEIDLen)
		}
	}
	return nil
}

// ReserveNext records, on the encrypting side, the n oldest keys not yet
// reserved as assigned to a without taking them out of the pool, and
// returns their IDs, oldest first. The master's node reserves keys for a
// pair of SAEs ahead of their requests (and has the slave's node record
// the same assignment); it hands them out later with TakeByIDs.
// TakeNextFree skips reserved keys. Fewer than n keys not reserved: none
// is reserved, ErrPoolEmpty.
func (p *Pool) ReserveNext(n int, a Assignment) ([]KeyID, error) {
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
	if err := checkAssignment(a); err != nil {
		return nil, fmt.Errorf("pool %q: ReserveNext: %w", p.cfg.Name, err)
	}
	picked := p.picked[:0]
	for s := p.head; s >= 0 && len(picked) < n; s = p.slots[s].next {
		if p.slots[s].asg == nil {
			picked = append(picked, s)
		}
	}
	p.picked = picked
	if len(picked) < n {
		return nil, fmt.Errorf("pool %q has %d keys not reserved, %d to reserve: %w", p.cfg.Name, len(picked), n, ErrPoolEmpty)
	}
	asg := &Assignment{Master: a.Master, Slaves: slices.Clone(a.Slaves)}
	if p.durable {
		if err := p.writeAssignments(picked, asg); err != nil {
			return nil, p.failLocked("ReserveNext", err)
		}
	}
	ids := make([]KeyID, len(picked))
	for i, s := range picked {
		p.slots[s].asg = asg
		ids[i] = p.slots[s].id
	}
	return ids, nil
}

// Assign records, on the decrypting side, which SAEs may fetch the keys ids:
// what the master's node says it handed out. An ID the pool does not hold
// fails with ErrUnknownKey, and a key already assigned otherwise with
// ErrAssigned; then nothing is recorded. Assigning a key again as it
// already is does nothing (the message may be a retransmission).
func (p *Pool) Assign(ids []KeyID, a Assignment) error {
	if len(ids) == 0 {
		return nil
	}
	p.mu.Lock()
	defer p.unlock()
	if err := p.usableLocked(); err != nil {
		return err
	}
	if len(ids) > MaxBatch {
		return fmt.Errorf("pool %q: Assign of %d keys: at most %d per call", p.cfg.Name, len(ids), MaxBatch)
	}
	if err := checkAssignment(a); err != nil {
		return fmt.Errorf("pool %q: Assign: %w", p.cfg.Name, err)
	}
	picked := p.picked[:0]
	epoch := p.newEpochLocked()
	for _, id := range ids {
		s, ok := p.lookupLocked(id)
		if !ok {
			return fmt.Errorf("pool %q: Assign: key %s is not in the pool: %w", p.cfg.Name, id, ErrUnknownKey)
		}
		if old := p.slots[s].asg; old != nil {
			if !sameAssignment(old, &a) {
				return fmt.Errorf("pool %q: Assign: key %s is already assigned to master SAE %q: %w", p.cfg.Name, id, old.Master, ErrAssigned)
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
	asg := &Assignment{Master: a.Master, Slaves: slices.Clone(a.Slaves)}
	if p.durable {
		if err := p.writeAssignments(picked, asg); err != nil {
			return p.failLocked("Assign", err)
		}
	}
	for _, s := range picked {
		p.slots[s].asg = asg
	}
	return nil
}

// writeAssignments rewrites the index entries of picked with asg, in one
// transaction if badger takes it, else in halves (assignments are larger
// than the entries Put writes; an Assign cut short by a crash is sent again
// by the master's node, or its keys expire).
func (p *Pool) writeAssignments(picked []int32, asg *Assignment) error {
	err := p.cfg.Meta.Update(func(tx *meta.Tx) error {
		for _, s := range picked {
			e := p.slots[s]
			e.asg = asg
			// A fresh value each: badger keeps them until the commit.
			if err := tx.Set(p.entryKey(e.id), appendEntry(nil, s, &e)); err != nil {
				return err
			}
		}
		return nil
	})
	if errors.Is(err, badger.ErrTxnTooBig) && len(picked) > 1 {
		h := len(picked) / 2
		if err := p.writeAssignments(picked[:h], asg); err != nil {
			return err
		}
		return p.writeAssignments(picked[h:], asg)
	}
	return err
}

func sameAssignment(a, b *Assignment) bool {
	return a.Master == b.Master && slices.Equal(a.Slaves, b.Slaves)
}
