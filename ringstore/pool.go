//go:build linux

package ringstore

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math/bits"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/qrelay/qrelay/ringstore/internal/keymem"
	"github.com/qrelay/qrelay/ringstore/internal/meta"
	"golang.org/x/sys/unix"
)

// Implementation constants of the end-to-end key pool.
const (
	// DefaultSlotSize is the slot size, in bytes, when PoolConfig.SlotSize
	// is 0: room for a 512-bit key.
	DefaultSlotSize = 64
	// MaxSlotSize is the largest slot, in bytes.
	MaxSlotSize = 1 << 16
	// MaxBatch is the most keys one Put, TakeNext, TakeByIDs or Assign
	// moves. It keeps a durable batch within one metadata transaction
	// (badger refuses a transaction larger than 15% of a memtable: about
	// 3,000 entries with meta's options) and covers a relay frame of 2,048
	// keys. Callers with more keys make several calls.
	MaxBatch = 2048
	// MaxPoolNameLen is the longest PoolConfig.Name.
	MaxPoolNameLen = 64
	// MaxSAEIDLen is the longest SAE ID in an Assignment.
	MaxSAEIDLen = 256
	// MaxSlaves is the most slave SAEs in an Assignment.
	MaxSlaves = 64
)

// Errors of a pool, wrapped with the pool's name and the numbers involved;
// test for them with errors.Is.
var (
	ErrPoolFull     = errors.New("pool full")
	ErrPoolEmpty    = errors.New("not enough keys in pool")
	ErrUnknownKey   = errors.New("unknown key ID")
	ErrDuplicateKey = errors.New("duplicate key ID")
	ErrAssigned     = errors.New("key already assigned otherwise")
	ErrPoolClosed   = errors.New("pool closed")
	// ErrPoolFailed means a metadata write failed in a way that leaves the
	// durable state unknown (it may or may not have been committed). The
	// pool then refuses every operation rather than guess; restarting
	// reopens it from what is on disk, which is consistent either way.
	ErrPoolFailed = errors.New("pool out of service after a failed metadata write; restart to recover")
)

// PoolConfig configures one end-to-end key pool.
type PoolConfig struct {
	// Name is the remote node's ID. It appears in errors and in the names
	// of the slot file and the metadata keys, so it is 1 to 64 characters
	// from [A-Za-z0-9._-], and not "." or "..".
	Name string
	// Dir holds the slot file in durable mode. "" selects memory mode:
	// keys live in a memfd and are gone when the pool is closed.
	Dir string
	// Meta is the metadata store of a durable pool (required with Dir,
	// refused without). It may be shared with other stores: the pool's
	// keys all start with "pool/<Name>/".
	Meta *meta.DB
	// Slots is the capacity in keys.
	Slots int
	// SlotSize is the largest key, in bytes (default DefaultSlotSize).
	SlotSize int
	// TTL is how long a key may wait in the pool; Expire removes keys
	// older than this. 0 means keys never expire.
	TTL time.Duration
	// Low and High are the watermarks in keys, 0 <= Low <= High <= Slots;
	// High 0 means Slots, and Low 0 turns OnLow off. OnLow(stock) is
	// called when the stock falls below Low, OnHigh(stock) when it rises to
	// High or more: once per crossing (a batch that crosses once is one
	// call), outside the pool's lock, in the order the crossings happened.
	// OpenPool calls OnLow once if the pool opens below Low, so that a relay
	// starts filling a new pool. The callbacks must not block for long and
	// must not panic; they may call the pool.
	Low, High     int
	OnLow, OnHigh func(stock int)
	// Now is the clock for TTLs (default time.Now).
	Now func() time.Time
}

// NewKey is a key arriving from the relay.
type NewKey struct {
	ID  KeyID
	Key []byte
}

// Key is a key leaving the pool. Bytes is the caller's, to zeroise when it
// is done with it; the Bytes of the keys of one call are sub-slices of one
// allocation (each capped at its own length). Assignment.Slaves may be
// shared between the keys of one call: treat it as read-only.
type Key struct {
	ID         KeyID
	Bytes      []byte
	Assignment Assignment
}

// Assignment says which SAEs may have a key: the master SAE that asked for
// it on the encrypting side (ETSI GS QKD 014 enc_keys) and the slave SAEs
// that may fetch it on the decrypting side (dec_keys). The zero Assignment
// means not assigned yet.
type Assignment struct {
	Master string
	Slaves []string
}

// PoolStats are a pool's gauges and counters, for metrics.
type PoolStats struct {
	Stock, Capacity       int    // keys in the pool, slots
	Added, Taken, Expired uint64 // keys, since OpenPool
	ZeroisedBytes         uint64 // key memory zeroised, since OpenPool (orphan slots at open included)
}

// Pool is the end-to-end key pool for one remote node: fixed-size slots of
// key memory, a FIFO of keys waiting to be handed out, and their index.
//
// # Storage
//
// Slot i is bytes [i×SlotSize, (i+1)×SlotSize) of the key memory: a
// memfd in memory mode, the preallocated file <Dir>/pool-<Name>.slots in
// durable mode (mapped, mlock'd where permitted, excluded from core dumps).
// The bytes of a slot past its key's length, and all bytes of a free slot,
// are zero. Key bytes are never written anywhere else: the metadata store
// holds, per key, only the index entry "pool/<Name>/k/<16-byte ID>" → slot,
// length, sequence number (the FIFO order), expiry and assignment, and a
// header "pool/<Name>/hdr" with the slot geometry.
//
// # Crash ordering (durable mode)
//
// Put writes the key bytes into free slots, msyncs their pages, then writes
// all index entries in one metadata transaction. Removal (TakeNext,
// TakeByIDs, Expire) deletes the index entries in one transaction, then
// zeroises the slots in place and msyncs them. A crash between the two steps
// leaves orphan slots, holding bytes that no index entry names, which
// OpenPool zeroises. So a key is never handed out twice, and a key whose Put
// returned and that was not handed out is still there after a crash. A
// crash loses at most the batch in flight: a Put that had not returned, or
// keys being taken that had not yet been returned (they are gone from the
// index, so they are zeroised, never handed out).
//
// # Concurrency
//
// A Pool is safe for concurrent use. One mutex guards its state and is held
// for the whole of each operation, I/O included: in durable mode every
// mutating call (Put, TakeNext, TakeByIDs, Assign, Expire) costs one msync
// and one fsync'd metadata transaction, which is why every call moves a
// batch (DESIGN.md, invariant 5); in memory mode calls do no I/O. Watermark
// callbacks run after the mutex is released, one at a time, in order.
type Pool struct {
	cfg     PoolConfig // defaults filled in
	prefix  string     // "pool/<Name>/"
	path    string     // slot file, durable mode
	durable bool

	region *keymem.Region
	mem    []byte
	lock   *os.File // holds the flock on the slot file

	mu      sync.Mutex
	slots   []slot
	table   []uint32 // the key index: slot+1 or 0 (see lookupLocked)
	mask    uint64   // len(table)-1
	shift   uint     // 64 - log2(len(table))
	seed    uint64
	mark    []uint32 // per slot: the epoch of the call that last picked it
	epoch   uint32
	used    []uint64 // bitmap of slots in use; bits past Slots set
	cursor  int      // where the next allocation starts looking
	head    int32    // oldest key, or -1
	tail    int32    // newest key, or -1
	stock   int
	nextSeq uint64
	closed  bool
	failed  error // set once a metadata write failed ambiguously
	stats   PoolStats
	picked  []int32 // scratch slot list

	events     []poolEvent
	delivering bool
}

// slot is the in-memory index entry of one slot in use.
type slot struct {
	id         KeyID
	n          uint32 // key length; 0 = free
	seq        uint64
	expiry     int64       // Unix ns; 0 = never
	asg        *Assignment // nil = not assigned
	prev, next int32       // FIFO neighbours, -1 at the ends
}

type poolEvent struct {
	high  bool
	stock int
}

// OpenPool opens a pool, creating it if it does not exist. In durable mode
// it rebuilds the FIFO from the index, zeroises every slot the index does
// not name, and refuses to start (with what is wrong and what to do) if the
// slot file and the index do not match.
func OpenPool(cfg PoolConfig) (*Pool, error) {
	cfg, err := checkPoolConfig(cfg)
	if err != nil {
		return nil, err
	}
	p := &Pool{
		cfg:     cfg,
		prefix:  "pool/" + cfg.Name + "/",
		durable: cfg.Dir != "",
		slots:   make([]slot, cfg.Slots),
		seed:    rand.Uint64(),
		mark:    make([]uint32, cfg.Slots),
		used:    make([]uint64, (cfg.Slots+63)/64),
		head:    -1,
		tail:    -1,
	}
	logSize := max(3, bits.Len(uint(2*cfg.Slots-1))) // a power of two >= 2×Slots
	p.table = make([]uint32, 1<<logSize)
	p.mask = 1<<logSize - 1
	p.shift = uint(64 - logSize)
	for i := range p.slots {
		p.slots[i].prev, p.slots[i].next = -1, -1
	}
	if r := cfg.Slots % 64; r != 0 {
		p.used[len(p.used)-1] = ^uint64(0) << r // never allocate past the end
	}
	p.stats.Capacity = cfg.Slots
	size := regionSize(cfg.Slots, cfg.SlotSize)
	if !p.durable {
		p.region, err = keymem.Anonymous("pool-"+cfg.Name, size, false)
		if err != nil {
			return nil, fmt.Errorf("pool %q: %w", cfg.Name, err)
		}
		p.mem = p.region.Bytes()[:cfg.Slots*cfg.SlotSize]
	} else if err := p.openDurable(size); err != nil {
		return nil, err
	}
	p.mu.Lock()
	if p.stock < cfg.Low && cfg.OnLow != nil {
		p.events = append(p.events, poolEvent{high: false, stock: p.stock})
	}
	p.unlock()
	return p, nil
}

func regionSize(slots, slotSize int) int {
	n := slots * slotSize
	return (n + keymem.PageSize - 1) / keymem.PageSize * keymem.PageSize
}

func checkPoolConfig(cfg PoolConfig) (PoolConfig, error) {
	bad := func(format string, a ...any) (PoolConfig, error) {
		return PoolConfig{}, fmt.Errorf("pool %q: "+format, append([]any{cfg.Name}, a...)...)
	}
	if err := checkPoolName(cfg.Name); err != nil {
		return bad("Name %v", err)
	}
	switch {
	case cfg.Dir == "" && cfg.Meta != nil:
		return bad("Meta is set but Dir is empty: memory mode keeps no index; set Dir for a durable pool")
	case cfg.Dir != "" && cfg.Meta == nil:
		return bad("Dir is %q but Meta is nil: a durable pool needs a metadata store for its index", cfg.Dir)
	}
	if cfg.Slots <= 0 {
		return bad("Slots must be > 0, got %d", cfg.Slots)
	}
	if cfg.Slots > 1<<31-1 {
		return bad("Slots must be < 2^31, got %d", cfg.Slots)
	}
	if cfg.SlotSize == 0 {
		cfg.SlotSize = DefaultSlotSize
	}
	if cfg.SlotSize < 0 || cfg.SlotSize > MaxSlotSize {
		return bad("SlotSize must be in [1, %d], got %d", MaxSlotSize, cfg.SlotSize)
	}
	if cfg.Slots > (1<<40)/cfg.SlotSize {
		return bad("Slots×SlotSize must be at most 1 TiB, got %d×%d", cfg.Slots, cfg.SlotSize)
	}
	if cfg.TTL < 0 {
		return bad("TTL must be >= 0 (0 = keys never expire), got %v", cfg.TTL)
	}
	if cfg.High == 0 {
		cfg.High = cfg.Slots
	}
	if cfg.High < 0 || cfg.High > cfg.Slots {
		return bad("High must be in [0, Slots=%d] (0 = Slots), got %d", cfg.Slots, cfg.High)
	}
	if cfg.Low < 0 || cfg.Low > cfg.High {
		return bad("Low must be in [0, High=%d], got %d", cfg.High, cfg.Low)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return cfg, nil
}

func checkPoolName(name string) error {
	if name == "" || len(name) > MaxPoolNameLen {
		return fmt.Errorf("must be 1 to %d characters, got %d", MaxPoolNameLen, len(name))
	}
	if name == "." || name == ".." {
		return fmt.Errorf("must not be %q", name)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-') {
			return fmt.Errorf("may hold only A-Z a-z 0-9 . _ -, got %q at index %d", name[i:i+1], i)
		}
	}
	return nil
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

// TakeNext hands out the n oldest keys (first in, first out) to the
// encrypting side's master SAE, recorded as assigned to a, and removes them
// from the pool. If the pool has fewer than n keys it takes none and fails
// with ErrPoolEmpty.
func (p *Pool) TakeNext(n int, a Assignment) ([]Key, error) {
	return p.takeNext(n, a, false)
}

// TakeNextFree is TakeNext that passes by the keys ReserveNext reserved:
// the master's node hands those out by ID to the pair they are reserved
// for, and the others to anyone with TakeNextFree.
func (p *Pool) TakeNextFree(n int, a Assignment) ([]Key, error) {
	return p.takeNext(n, a, true)
}

func (p *Pool) takeNext(n int, a Assignment, skipAssigned bool) ([]Key, error) {
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
	if err := checkAssignment(a); err != nil {
		return nil, fmt.Errorf("pool %q: TakeNext: %w", p.cfg.Name, err)
	}
	if p.stock < n {
		return nil, fmt.Errorf("pool %q has %d keys, %d requested: %w", p.cfg.Name, p.stock, n, ErrPoolEmpty)
	}
	picked := p.picked[:0]
	for s := p.head; s >= 0 && len(picked) < n; s = p.slots[s].next {
		if skipAssigned && p.slots[s].asg != nil {
			continue // reserved (ReserveNext): handed out by ID only
		}
		picked = append(picked, s)
	}
	p.picked = picked
	if len(picked) < n {
		return nil, fmt.Errorf("pool %q has %d keys not reserved, %d requested: %w", p.cfg.Name, len(picked), n, ErrPoolEmpty)
	}
	a.Slaves = slices.Clone(a.Slaves)
	keys, err := p.removeLocked(picked, &a, "TakeNext")
	if err == nil {
		p.stats.Taken += uint64(len(keys))
	}
	return keys, err
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

// TakeByIDs hands out, on the decrypting side, the keys ids with their
// assignments and removes them from the pool: all of them, or, if any ID is
// not in the pool (ErrUnknownKey) or appears twice (ErrDuplicateKey), none.
//
// The caller authorises with the returned assignments after the keys have
// left the pool; TakeByIDsIf authorises first, so that a refused request
// costs no keys.
func (p *Pool) TakeByIDs(ids []KeyID) ([]Key, error) {
	return p.TakeByIDsIf(ids, nil)
}

// TakeByIDsIf is TakeByIDs that first calls allow for every key (if allow is
// not nil) and takes nothing if any call returns an error, which it returns
// naming the key. allow runs under the pool's lock: it must not call the
// pool.
func (p *Pool) TakeByIDsIf(ids []KeyID, allow func(id KeyID, a Assignment) error) ([]Key, error) {
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
			var a Assignment
			if asg := p.slots[s].asg; asg != nil {
				a = *asg
			}
			if err := allow(id, a); err != nil {
				return nil, fmt.Errorf("pool %q: key %s: %w", p.cfg.Name, id, err)
			}
		}
		picked = append(picked, s)
	}
	p.picked = picked
	keys, err := p.removeLocked(picked, nil, "TakeByIDs")
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
func (p *Pool) Discard(ids []KeyID, allow func(id KeyID, a Assignment) error) (int, error) {
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
			var a Assignment
			if asg := p.slots[s].asg; asg != nil {
				a = *asg
			}
			if allow(id, a) != nil {
				continue
			}
		}
		picked = append(picked, s)
	}
	p.picked = picked
	if len(picked) == 0 {
		return 0, nil
	}
	keys, err := p.removeLocked(picked, nil, "Discard")
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
		if _, err := p.removeLocked(picked, nil, "Expire"); err != nil {
			slog.Error("key pool: expiring keys failed", "pool", p.cfg.Name, "keys", len(picked), "err", err)
			return expired
		}
		p.stats.Expired += uint64(len(picked))
		expired += len(picked)
	}
}

// Stats returns the pool's gauges and counters.
func (p *Pool) Stats() PoolStats {
	p.mu.Lock()
	defer p.mu.Unlock()
	st := p.stats
	st.Stock = p.stock
	return st
}

// Close releases the pool. In memory mode it zeroises every slot first; in
// durable mode the keys not handed out stay in the slot file for the next
// OpenPool. Close does not close Meta, which may be shared.
func (p *Pool) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil
	}
	p.closed = true
	if !p.durable {
		for s := p.head; s >= 0; s = p.slots[s].next {
			p.stats.ZeroisedBytes += uint64(p.slots[s].n)
		}
		clear(p.mem)
	}
	err := p.region.Close()
	if p.lock != nil {
		if cerr := p.lock.Close(); err == nil {
			err = cerr
		}
	}
	p.stats.Stock, p.stock = 0, 0
	p.slots, p.table, p.mark, p.mem = nil, nil, nil, nil
	p.head, p.tail = -1, -1
	if err != nil {
		return fmt.Errorf("pool %q: closing: %w", p.cfg.Name, err)
	}
	return nil
}

// usableLocked says why the pool cannot serve, or nil.
func (p *Pool) usableLocked() error {
	switch {
	case p.closed:
		return fmt.Errorf("pool %q: %w", p.cfg.Name, ErrPoolClosed)
	case p.failed != nil:
		return fmt.Errorf("pool %q: %w (first failure: %v)", p.cfg.Name, ErrPoolFailed, p.failed)
	}
	return nil
}

// failLocked puts the pool out of service after a metadata write whose
// outcome is unknown, and returns the error for op.
func (p *Pool) failLocked(op string, err error) error {
	p.failed = err
	slog.Error("key pool out of service: metadata write failed; restart to recover", "pool", p.cfg.Name, "op", op, "err", err)
	return fmt.Errorf("pool %q: %s: %w; %w", p.cfg.Name, op, err, ErrPoolFailed)
}

// removeLocked hands out the keys in picked, in that order, and removes
// them: copy out, delete the index entries (one transaction), zeroise, msync.
// asg, if not nil, replaces their assignments.
func (p *Pool) removeLocked(picked []int32, asg *Assignment, op string) ([]Key, error) {
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
		keys[i] = Key{ID: e.id, Bytes: b}
		if asg != nil {
			keys[i].Assignment = *asg
		} else if e.asg != nil {
			keys[i].Assignment = *e.asg
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

// watermarksLocked queues the watermark callbacks for a stock change from
// before to p.stock.
func (p *Pool) watermarksLocked(before int) {
	after := p.stock
	if p.cfg.OnLow != nil && before >= p.cfg.Low && after < p.cfg.Low {
		p.events = append(p.events, poolEvent{high: false, stock: after})
	}
	if p.cfg.OnHigh != nil && before < p.cfg.High && after >= p.cfg.High {
		p.events = append(p.events, poolEvent{high: true, stock: after})
	}
}

// unlock releases p.mu and delivers queued watermark events. One goroutine
// at a time delivers, in queue order, without the lock; events queued
// meanwhile (by other goroutines, or by the callbacks themselves calling the
// pool) are delivered by the same goroutine before it returns.
func (p *Pool) unlock() {
	if p.delivering || len(p.events) == 0 {
		p.mu.Unlock()
		return
	}
	p.delivering = true
	for len(p.events) > 0 {
		evs := p.events
		p.events = nil
		p.mu.Unlock()
		for _, e := range evs {
			if e.high {
				p.cfg.OnHigh(e.stock)
			} else {
				p.cfg.OnLow(e.stock)
			}
		}
		p.mu.Lock()
	}
	p.delivering = false
	p.mu.Unlock()
}

// syncSlots msyncs the pages holding the slots in picked, merging nearby
// pages into one call.
func (p *Pool) syncSlots(picked []int32) error {
	if len(picked) == 0 {
		return nil
	}
	ps, ss := keymem.PageSize, p.cfg.SlotSize
	offs := make([]int, len(picked))
	for i, s := range picked {
		offs[i] = int(s) * ss
	}
	slices.Sort(offs)
	const gap = 16 // pages: msync of clean pages costs little, a call more
	start, end := offs[0]/ps*ps, offs[0]+ss
	for _, off := range offs[1:] {
		if off/ps*ps > end+gap*ps {
			if err := p.region.Sync(start, end-start); err != nil {
				return err
			}
			start = off / ps * ps
		}
		end = max(end, off+ss)
	}
	return p.region.Sync(start, end-start)
}

// Index encoding.
//
// Header "pool/<Name>/hdr":
//
//	[0]    format version (1)
//	[1:5]  Slots (uint32)
//	[5:9]  SlotSize (uint32)
//
// Entry "pool/<Name>/k/" + the 16 bytes of the key ID:
//
//	[0]     format version (1)
//	[1:5]   slot (uint32)
//	[5:9]   key length (uint32)
//	[9:17]  sequence number (uint64): FIFO order
//	[17:25] expiry (int64, Unix ns; 0 = never)
//	[25:]   assignment: uint16 length + master SAE ID (length 0 = not
//	        assigned), uint16 slave count, then uint16 length + ID each
//
// Integers are big-endian; no key bytes.
const (
	poolFormat     = 1
	poolHeaderLen  = 9
	poolEntryFixed = 25
)

func (p *Pool) entryKey(id KeyID) string { return p.prefix + "k/" + string(id[:]) }

func appendEntry(b []byte, s int32, e *slot) []byte {
	b = append(b, poolFormat)
	b = binary.BigEndian.AppendUint32(b, uint32(s))
	b = binary.BigEndian.AppendUint32(b, e.n)
	b = binary.BigEndian.AppendUint64(b, e.seq)
	b = binary.BigEndian.AppendUint64(b, uint64(e.expiry))
	if e.asg == nil {
		return append(b, 0, 0, 0, 0)
	}
	b = appendString16(b, e.asg.Master)
	b = binary.BigEndian.AppendUint16(b, uint16(len(e.asg.Slaves)))
	for _, s := range e.asg.Slaves {
		b = appendString16(b, s)
	}
	return b
}

func appendString16(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint16(b, uint16(len(s)))
	return append(b, s...)
}

func decodeEntry(v []byte) (s int32, e slot, err error) {
	if len(v) < poolEntryFixed+4 {
		return 0, e, fmt.Errorf("entry is %d bytes, want at least %d", len(v), poolEntryFixed+4)
	}
	if v[0] != poolFormat {
		return 0, e, fmt.Errorf("entry format %d, want %d", v[0], poolFormat)
	}
	slotNo := binary.BigEndian.Uint32(v[1:])
	if slotNo > 1<<31-1 {
		return 0, e, fmt.Errorf("slot %d out of range", slotNo)
	}
	e.n = binary.BigEndian.Uint32(v[5:])
	e.seq = binary.BigEndian.Uint64(v[9:])
	e.expiry = int64(binary.BigEndian.Uint64(v[17:]))
	rest := v[poolEntryFixed:]
	str := func() (string, bool) {
		if len(rest) < 2 {
			return "", false
		}
		n := int(binary.BigEndian.Uint16(rest))
		if len(rest) < 2+n {
			return "", false
		}
		s := string(rest[2 : 2+n])
		rest = rest[2+n:]
		return s, true
	}
	master, ok := str()
	if !ok || len(rest) < 2 {
		return 0, e, errors.New("assignment truncated")
	}
	nSlaves := int(binary.BigEndian.Uint16(rest))
	rest = rest[2:]
	if master != "" {
		e.asg = &Assignment{Master: master, Slaves: make([]string, 0, min(nSlaves, MaxSlaves))}
	} else if nSlaves != 0 {
		return 0, e, errors.New("slave SAEs without a master")
	}
	for range nSlaves {
		s, ok := str()
		if !ok {
			return 0, e, errors.New("assignment truncated")
		}
		e.asg.Slaves = append(e.asg.Slaves, s)
	}
	if len(rest) != 0 {
		return 0, e, fmt.Errorf("%d bytes after the assignment", len(rest))
	}
	return int32(slotNo), e, nil
}

// openDurable opens or creates the slot file and rebuilds the pool from the
// index.
func (p *Pool) openDurable(size int) error {
	cfg := p.cfg
	db := cfg.Meta
	p.path = filepath.Join(cfg.Dir, "pool-"+cfg.Name+".slots")
	newPath := p.path + ".new"
	hdrKey := p.prefix + "hdr"
	fail := func(format string, a ...any) error {
		return fmt.Errorf("pool %q: "+format, append([]any{cfg.Name}, a...)...)
	}

	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return fail("%w", err)
	}
	_, err := db.Get(hdrKey)
	haveIndex := err == nil
	if err != nil && !errors.Is(err, meta.ErrNotFound) {
		return fail("%w", err)
	}
	entries := 0
	if err := db.Scan(p.prefix+"k/", func(string, []byte) error { entries++; return nil }); err != nil {
		return fail("scanning the index in metadata store %s: %w", db.Dir(), err)
	}
	_, statErr := os.Stat(p.path)
	haveFile := statErr == nil
	if statErr != nil && !errors.Is(statErr, os.ErrNotExist) {
		return fail("%w", statErr)
	}

	switch {
	case !haveIndex && entries > 0:
		return fail("metadata store %s has %d index entries under %q but no header %q: the index is damaged; restore the metadata store from a backup", db.Dir(), entries, p.prefix+"k/", hdrKey)
	case !haveIndex && haveFile:
		return fail("slot file %s exists but metadata store %s has no index for it: the file may belong to another metadata store, or the index was lost; point Dir and Meta at the pair they were written with, or remove %s to start this pool empty (the keys in it are lost)", p.path, db.Dir(), p.path)
	case !haveIndex:
		if err := p.create(size, newPath, hdrKey); err != nil {
			return err
		}
	case !haveFile:
		// A crash between writing the header and renaming the new file
		// leaves the (zero) file under its temporary name: finish the job.
		if st, err := os.Stat(newPath); err == nil && st.Size() == int64(size) && entries == 0 {
			if err := os.Rename(newPath, p.path); err != nil {
				return fail("%w", err)
			}
			if err := syncDir(cfg.Dir); err != nil {
				return fail("%w", err)
			}
			break
		}
		return fail("slot file %s is missing, but metadata store %s has an index for it with %d keys: restore the file from the backup it was taken with; or, to start this pool empty (its keys are then lost), delete the metadata keys under %q", p.path, db.Dir(), entries, p.prefix)
	}
	if err := p.checkHeader(hdrKey); err != nil {
		return err
	}

	lock, err := os.Open(p.path)
	if err != nil {
		return fail("%w", err)
	}
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		lock.Close()
		return fail("slot file %s is in use by another pool (flock: %v): is the same pool configured twice, or another qrelayd running on this directory?", p.path, err)
	}
	p.lock = lock
	p.region, err = keymem.File(p.path, size, false)
	if err != nil {
		lock.Close()
		return fail("%w", err)
	}
	p.mem = p.region.Bytes()[:cfg.Slots*cfg.SlotSize]
	if err := p.load(); err != nil {
		p.region.Close()
		lock.Close()
		return err
	}
	return nil
}

// create makes a new, empty durable pool: the zeroed slot file under a
// temporary name, then the header, then the file under its own name. A
// crash at any point leaves either nothing (the temporary file is removed
// next time), or the header and the temporary file (renamed next time).
func (p *Pool) create(size int, newPath, hdrKey string) error {
	if err := os.Remove(newPath); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("pool %q: %w", p.cfg.Name, err)
	}
	r, err := keymem.Create(newPath, size, false)
	if err != nil {
		return fmt.Errorf("pool %q: creating slot file: %w", p.cfg.Name, err)
	}
	if err := r.Close(); err != nil {
		return fmt.Errorf("pool %q: %w", p.cfg.Name, err)
	}
	hdr := []byte{poolFormat}
	hdr = binary.BigEndian.AppendUint32(hdr, uint32(p.cfg.Slots))
	hdr = binary.BigEndian.AppendUint32(hdr, uint32(p.cfg.SlotSize))
	if err := p.cfg.Meta.Update(func(tx *meta.Tx) error { return tx.Set(hdrKey, hdr) }); err != nil {
		return fmt.Errorf("pool %q: %w", p.cfg.Name, err)
	}
	if err := os.Rename(newPath, p.path); err != nil {
		return fmt.Errorf("pool %q: %w", p.cfg.Name, err)
	}
	if err := syncDir(p.cfg.Dir); err != nil {
		return fmt.Errorf("pool %q: %w", p.cfg.Name, err)
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("syncing directory %s: %w", dir, err)
	}
	return nil
}

func (p *Pool) checkHeader(hdrKey string) error {
	hdr, err := p.cfg.Meta.Get(hdrKey)
	if err != nil {
		return fmt.Errorf("pool %q: %w", p.cfg.Name, err)
	}
	if len(hdr) != poolHeaderLen || hdr[0] != poolFormat {
		return fmt.Errorf("pool %q: header %q in metadata store %s is damaged or from another version (% x); restore the metadata store from a backup", p.cfg.Name, hdrKey, p.cfg.Meta.Dir(), hdr)
	}
	slots, slotSize := binary.BigEndian.Uint32(hdr[1:]), binary.BigEndian.Uint32(hdr[5:])
	if int(slots) != p.cfg.Slots || int(slotSize) != p.cfg.SlotSize {
		return fmt.Errorf("pool %q: slot file %s was made with Slots=%d SlotSize=%d, but the config says Slots=%d SlotSize=%d; put the old values back (resizing a pool is not supported)", p.cfg.Name, p.path, slots, slotSize, p.cfg.Slots, p.cfg.SlotSize)
	}
	return nil
}

// load rebuilds the in-memory index, FIFO and free bitmap from the index
// entries, checking each against the slot file, and zeroises orphan slots.
func (p *Pool) load() error {
	cfg := p.cfg
	type loaded struct {
		s   int32
		e   slot
		key string
	}
	var all []loaded
	owner := make(map[int32]string)
	err := cfg.Meta.Scan(p.prefix+"k/", func(key string, val []byte) error {
		what := fmt.Sprintf("pool %q: index entry %q in metadata store %s", cfg.Name, key, cfg.Meta.Dir())
		raw := key[len(p.prefix)+2:]
		if len(raw) != len(KeyID{}) {
			return fmt.Errorf("%s: key ID is %d bytes, want 16; the index is damaged: restore the metadata store from a backup", what, len(raw))
		}
		s, e, err := decodeEntry(val)
		if err != nil {
			return fmt.Errorf("%s: %v; the index is damaged: restore the metadata store from a backup", what, err)
		}
		copy(e.id[:], raw)
		what = fmt.Sprintf("pool %q: index entry for key %s in metadata store %s", cfg.Name, e.id, cfg.Meta.Dir())
		switch {
		case int(s) >= cfg.Slots:
			return fmt.Errorf("%s points to slot %d, outside slot file %s (%d slots); the index and the file do not match: restore both from the same backup", what, s, p.path, cfg.Slots)
		case e.n == 0 || int(e.n) > cfg.SlotSize:
			return fmt.Errorf("%s says the key is %d bytes, but slots in %s hold 1 to %d; the index is damaged: restore the metadata store and %s from the same backup", what, e.n, p.path, cfg.SlotSize, p.path)
		}
		if other, ok := owner[s]; ok {
			return fmt.Errorf("%s and the entry for key %s both point to slot %d of %s; the index is damaged: restore the metadata store and %s from the same backup", what, other, s, p.path, p.path)
		}
		owner[s] = e.id.String()
		all = append(all, loaded{s: s, e: e, key: key})
		return nil
	})
	if err != nil {
		return err
	}
	slices.SortFunc(all, func(a, b loaded) int {
		switch {
		case a.e.seq < b.e.seq:
			return -1
		case a.e.seq > b.e.seq:
			return 1
		}
		return 0
	})
	var expiry int64
	if cfg.TTL > 0 {
		expiry = cfg.Now().Add(cfg.TTL).UnixNano()
	}
	for i, l := range all {
		if i > 0 && l.e.seq == all[i-1].e.seq {
			return fmt.Errorf("pool %q: index entries for keys %s and %s in metadata store %s have the same sequence number %d; the index is damaged: restore the metadata store from a backup", cfg.Name, all[i-1].e.id, l.e.id, cfg.Meta.Dir(), l.e.seq)
		}
		e := l.e
		if e.expiry == 0 {
			e.expiry = expiry // put while the pool had no TTL
		}
		e.prev, e.next = -1, -1
		p.slots[l.s] = e
		p.insertLocked(l.s)
		p.used[l.s/64] |= 1 << (l.s % 64)
		p.linkTailLocked(l.s)
		p.nextSeq = e.seq + 1
		p.cursor = (int(l.s) + 1) % cfg.Slots
	}
	p.stock = len(all)

	// Zeroise what no entry names: keys put but never indexed, and keys
	// whose zeroisation a crash interrupted.
	var orphans []int32
	for s := int32(0); int(s) < cfg.Slots; s++ {
		if _, ok := owner[s]; ok {
			continue
		}
		if b := p.slotBytes(s); !allZero(b) {
			clear(b)
			orphans = append(orphans, s)
			p.stats.ZeroisedBytes += uint64(len(b))
		}
	}
	// And the tail of every slot in use, past its key.
	for _, l := range all {
		if b := p.slotBytes(l.s)[l.e.n:]; !allZero(b) {
			clear(b)
			orphans = append(orphans, l.s)
			p.stats.ZeroisedBytes += uint64(len(b))
		}
	}
	if len(orphans) > 0 {
		if err := p.syncSlots(orphans); err != nil {
			return fmt.Errorf("pool %q: zeroising %d orphan slots: %w", cfg.Name, len(orphans), err)
		}
		slog.Info("key pool: zeroised orphan slots (keys not in the index, left by a crash)", "pool", cfg.Name, "file", p.path, "slots", len(orphans))
	}
	return nil
}

func allZero(b []byte) bool {
	for len(b) >= 8 {
		if binary.NativeEndian.Uint64(b) != 0 {
			return false
		}
		b = b[8:]
	}
	return len(b) == 0 || bytes.Count(b, []byte{0}) == len(b)
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
