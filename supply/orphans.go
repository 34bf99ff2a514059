package supply

import (
	"cmp"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/qrelay/qrelay/ringstore"
)

// Orphans (pool_rules.go): keys assigned in this node's in pool from a
// remote node that restarted, gone from that node's out pool. Their slave
// may still fetch them with dec_keys; what is left after pools.orphan_ttl
// is discarded. In durable mode the list survives a restart of this node
// in the metadata store (key IDs only), one record per batch of up to
// ringstore.MaxBatch keys:
//
//	key:   "node/orphans/" + 16 hex digits of the deadline (Unix ns) + "-" + 16 random hex digits
//	value: format u8 (1) | deadline i64 (Unix ns) | remote node ID (u8 length, bytes) |
//	       count u16 | count × key ID (16 bytes)
const (
	orphanPrefix = "node/orphans/"
	orphanFormat = 1
	// orphanRetry is how long a batch waits after its pool refused the
	// discard.
	orphanRetry = 10 * time.Second
)

type orphanTracker struct {
	svc *Service

	mu      sync.Mutex
	batches []*orphanBatch // by deadline
}

type orphanBatch struct {
	remote   string
	deadline time.Time
	ids      []ringstore.KeyID
	key      string // its record, durable mode
}

func newOrphanTracker(svc *Service) *orphanTracker { return &orphanTracker{svc: svc} }

func (b *orphanBatch) encode() []byte {
	v := []byte{orphanFormat}
	v = binary.BigEndian.AppendUint64(v, uint64(b.deadline.UnixNano()))
	v = append(v, byte(len(b.remote)))
	v = append(v, b.remote...)
	v = binary.BigEndian.AppendUint16(v, uint16(len(b.ids)))
	for _, id := range b.ids {
		v = append(v, id[:]...)
	}
	return v
}

// decodeOrphanBatch reads the record of one batch (the layout at the
// top of this file), which must be exactly that long.
func decodeOrphanBatch(key string, v []byte) (*orphanBatch, error) {
	const fixed = 1 + 8 + 1 // format, deadline, remote's length
	if len(v) < fixed {
		return nil, fmt.Errorf("orphan record of %d bytes: shorter than its %d-byte header", len(v), fixed)
	}
	if v[0] != orphanFormat {
		return nil, fmt.Errorf("orphan record format %d: want %d", v[0], orphanFormat)
	}
	b := &orphanBatch{key: key, deadline: time.Unix(0, int64(binary.BigEndian.Uint64(v[1:9])))}
	rl := int(v[9])
	if rl == 0 || len(v) < fixed+rl+2 {
		return nil, fmt.Errorf("orphan record: remote node ID of %d bytes in a record of %d", rl, len(v))
	}
	b.remote = string(v[fixed : fixed+rl])
	rest := v[fixed+rl:]
	n := int(binary.BigEndian.Uint16(rest))
	if len(rest) != 2+16*n {
		return nil, fmt.Errorf("orphan record: %d key IDs need %d bytes after the remote node ID, the record has %d", n, 2+16*n, len(rest))
	}
	for i := range n {
		b.ids = append(b.ids, ringstore.KeyID(rest[2+16*i:2+16*i+16]))
	}
	return b, nil
}

// load reads the batches a durable node recorded before it stopped.
func (o *orphanTracker) load() error {
	m := o.svc.meta
	if m == nil {
		return nil
	}
	var bs []*orphanBatch
	err := m.Scan(orphanPrefix, func(key string, val []byte) error {
		b, err := decodeOrphanBatch(key, val)
		if err != nil {
			return fmt.Errorf("metadata record %q: %w", key, err)
		}
		bs = append(bs, b)
		return nil
	})
	if err != nil {
		return fmt.Errorf("reading the orphaned keys' deadlines: %w", err)
	}
	o.mu.Lock()
	o.batches = append(o.batches, bs...)
	o.sortLocked()
	o.mu.Unlock()
	return nil
}

func (o *orphanTracker) sortLocked() {
	slices.SortStableFunc(o.batches, func(a, b *orphanBatch) int { return a.deadline.Compare(b.deadline) })
}

// add records orphans in the in pool from remote, to be discarded after
// pools.orphan_ttl (0: never; pools.ttl applies).
func (o *orphanTracker) add(remote string, ids []ringstore.KeyID) error {
	ttl := o.svc.cfg.Pools.OrphanTTL
	if ttl == 0 || len(ids) == 0 {
		return nil
	}
	deadline := time.Now().Add(ttl)
	var bs []*orphanBatch
	for chunk := range slices.Chunk(ids, ringstore.MaxBatch) {
		var r [8]byte
		rand.Read(r[:])
		bs = append(bs, &orphanBatch{
			remote: remote, deadline: deadline, ids: slices.Clone(chunk),
			key: fmt.Sprintf("%s%016x-%016x", orphanPrefix, deadline.UnixNano(), binary.BigEndian.Uint64(r[:])),
		})
	}
	if m := o.svc.meta; m != nil {
		err := m.Update(func(tx *ringstore.MetaTx) error {
			for _, b := range bs {
				if err := tx.Set(b.key, b.encode()); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("recording the deadline of %d orphaned keys: %w", len(ids), err)
		}
	}
	o.mu.Lock()
	o.batches = append(o.batches, bs...)
	o.sortLocked()
	o.mu.Unlock()
	return nil
}

// pending is the number of orphans awaiting their deadline, by remote.
func (o *orphanTracker) pending() map[string]int {
	o.mu.Lock()
	defer o.mu.Unlock()
	out := map[string]int{}
	for _, b := range o.batches {
		out[b.remote] += len(b.ids)
	}
	return out
}

// expire discards the orphans whose deadline has passed that are still
// in their pool, unfetched.
func (o *orphanTracker) expire(now time.Time) {
	o.mu.Lock()
	var due []*orphanBatch
	for len(o.batches) > 0 && !o.batches[0].deadline.After(now) {
		due = append(due, o.batches[0])
		o.batches = o.batches[1:]
	}
	o.mu.Unlock()
	if len(due) == 0 {
		return
	}
	svc := o.svc
	expired := map[string]int{}
	var done, retry []*orphanBatch
	for _, b := range due {
		p, err := svc.sink.existing(b.remote, RoleIn, svc.meta)
		k := 0
		if err == nil && p != nil {
			k, err = p.Discard(b.ids, func(_ ringstore.KeyID, o ringstore.Owner) error {
				if o == "" {
					return errNotAssigned // not ours: a key is never unassigned
				}
				return nil
			})
		}
		if err != nil {
			svc.log.Warn("orphaned keys not discarded; retrying", "remote", b.remote, "keys", len(b.ids), "err", err)
			b.deadline = now.Add(orphanRetry)
			retry = append(retry, b)
			continue
		}
		expired[b.remote] += k
		done = append(done, b)
	}
	if m := svc.meta; m != nil && len(done) > 0 {
		err := m.Update(func(tx *ringstore.MetaTx) error {
			for _, b := range done {
				if err := tx.Delete(b.key); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil && !errors.Is(err, ringstore.ErrMetaNotFound) {
			svc.log.Warn("orphan records not deleted: they are read again at the next start, and find their keys gone", "err", err)
		}
	}
	if len(retry) > 0 {
		o.mu.Lock()
		o.batches = append(o.batches, retry...)
		o.sortLocked()
		o.mu.Unlock()
	}
	remotes := make([]string, 0, len(expired))
	for r := range expired {
		remotes = append(remotes, r)
	}
	slices.SortFunc(remotes, cmp.Compare)
	for _, r := range remotes {
		svc.metrics.OrphansExpired(r, expired[r])
		if expired[r] > 0 {
			svc.log.Info("orphaned keys discarded: their slave SAE did not fetch them within pools.orphan_ttl of the restart of the node that assigned them",
				"remote", r, "keys", expired[r], "orphan_ttl", svc.cfg.Pools.OrphanTTL)
		}
	}
}
