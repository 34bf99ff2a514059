package relay

import (
	"errors"
	"fmt"
	"sync"

	"github.com/qrelay/qrelay/ringstore"
)

// PoolSink stores relayed keys in the end-to-end pool of each remote node.
type PoolSink struct {
	mu      sync.Mutex
	pools   map[string]*ringstore.Pool
	opening map[string]chan struct{} // closed when the open of a pool ends
	open    func(remote string) (*ringstore.Pool, error)
}

// NewLazyPoolSink returns a sink that opens the pool of a remote node with
// open when keys shared with that node first arrive, so that a node needs
// no list of every node it may exchange keys with.
func NewLazyPoolSink(open func(remote string) (*ringstore.Pool, error)) *PoolSink {
	return &PoolSink{pools: map[string]*ringstore.Pool{}, opening: map[string]chan struct{}{}, open: open}
}

// Pools returns the pools opened so far, by remote node.
func (s *PoolSink) Pools() map[string]*ringstore.Pool {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := make(map[string]*ringstore.Pool, len(s.pools))
	for k, v := range s.pools {
		m[k] = v
	}
	return m
}

// Open returns the pool of remote, opening it if the sink is lazy; nil
// if it is not lazy and has none. Opening a durable pool reads its index
// from the metadata store, which takes a while: the pools of other
// remotes stay usable meanwhile, and callers asking for the same pool
// wait for the one open.
func (s *PoolSink) Open(remote string) (*ringstore.Pool, error) {
	s.mu.Lock()
	for {
		if p := s.pools[remote]; p != nil || s.open == nil {
			s.mu.Unlock()
			return p, nil
		}
		ch := s.opening[remote]
		if ch == nil {
			break
		}
		s.mu.Unlock()
		<-ch // then use its pool, or try again if it failed
		s.mu.Lock()
	}
	ch := make(chan struct{})
	s.opening[remote] = ch
	s.mu.Unlock()
	p, err := s.open(remote)
	s.mu.Lock()
	delete(s.opening, remote)
	if err == nil {
		s.pools[remote] = p
	}
	close(ch)
	s.mu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("opening the end-to-end pool for node %s: %w", remote, err)
	}
	return p, nil
}

// NewPoolSink returns a sink over pools, keyed by remote node ID.
func NewPoolSink(pools map[string]*ringstore.Pool) *PoolSink {
	m := make(map[string]*ringstore.Pool, len(pools))
	for k, v := range pools {
		m[k] = v
	}
	return &PoolSink{pools: m}
}

// Add adds or replaces the pool of remote.
func (s *PoolSink) Add(remote string, p *ringstore.Pool) {
	s.mu.Lock()
	s.pools[remote] = p
	s.mu.Unlock()
}

// Pool returns the pool of remote, or nil.
func (s *PoolSink) Pool(remote string) *ringstore.Pool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pools[remote]
}

// Deliver implements Sink: the keys go in as one batch per
// ringstore.MaxBatch keys. A pool full midway leaves the earlier batches
// stored, so it first checks there is room for all.
func (s *PoolSink) Deliver(remote string, b *Batch) error {
	p, err := s.Open(remote)
	if err != nil {
		return err
	}
	if p == nil {
		return fmt.Errorf("no end-to-end pool for node %s", remote)
	}
	n := b.Count()
	if st := p.Stats(); st.Capacity-st.Stock < n {
		return fmt.Errorf("pool %s: %d keys do not fit (%d of %d slots used): %w", remote, n, st.Stock, st.Capacity, ringstore.ErrPoolFull)
	}
	keys := make([]ringstore.NewKey, 0, min(n, ringstore.MaxBatch))
	for i := 0; i < n; i += ringstore.MaxBatch {
		keys = keys[:0]
		for j := i; j < min(n, i+ringstore.MaxBatch); j++ {
			keys = append(keys, ringstore.NewKey{ID: b.ID(j), Key: b.Keys[j*b.KeySize : (j+1)*b.KeySize]})
		}
		if err := p.Put(keys); err != nil {
			return err
		}
	}
	return nil
}

// Discard implements Sink: it takes out and zeroises whichever of the
// batch's keys the pool holds.
func (s *PoolSink) Discard(remote string, b *Batch, count int) (int, error) {
	p := s.Pool(remote)
	if p == nil {
		return 0, nil
	}
	removed := 0
	for i := 0; i < count; i += ringstore.MaxBatch {
		ids := make([]ringstore.KeyID, 0, min(count-i, ringstore.MaxBatch))
		for j := i; j < min(count, i+ringstore.MaxBatch); j++ {
			ids = append(ids, b.ID(j))
		}
		keys, err := p.TakeByIDs(ids)
		if errors.Is(err, ringstore.ErrUnknownKey) {
			// Some are not there (never arrived): take the others one by one.
			keys = keys[:0]
			for _, id := range ids {
				k, err := p.TakeByIDs([]ringstore.KeyID{id})
				if err == nil {
					keys = append(keys, k...)
				} else if !errors.Is(err, ringstore.ErrUnknownKey) {
					return removed, err
				}
			}
		} else if err != nil {
			return removed, err
		}
		for _, k := range keys {
			clear(k.Bytes)
		}
		removed += len(keys)
	}
	return removed, nil
}
