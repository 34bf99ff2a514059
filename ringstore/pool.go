//go:build linux

package ringstore

import (
	"errors"
	"fmt"
	"log/slog"
	"math/bits"
	"math/rand/v2"
	"os"
	"sync"
	"time"

	"github.com/qrelay/qrelay/internal/ids"
	"github.com/qrelay/qrelay/ringstore/internal/keymem"
	"github.com/qrelay/qrelay/ringstore/internal/meta"
)

// Implementation constants of the end-to-end key pool.
const (
	// DefaultSlotSize is the slot size, in bytes, when PoolConfig.SlotSize
	// is 0: room for a 512-bit key.
	DefaultSlotSize = 64
	// MaxSlotSize is the largest slot, in bytes.
	MaxSlotSize = 1 << 16
	// MaxBatch is the most keys one Put, TakeNext, TakeByIDs or SetOwner
	// moves. It keeps a durable batch within one metadata transaction
	// (badger refuses a transaction larger than 15% of a memtable: about
	// 3,000 entries with meta's options) and covers a relay frame of 2,048
	// keys. Callers with more keys make several calls.
	MaxBatch = 2048
	// MaxPoolNameLen is the longest PoolConfig.Name.
	MaxPoolNameLen = ids.MaxLen
	// MaxOwnerLen is the longest Owner tag: room for a master SAE and 64
	// slave SAEs of 256 bytes each, with 2-byte lengths and count (16,772
	// bytes).
	MaxOwnerLen = 17 << 10
)

// Errors of a pool, wrapped with the pool's name and the numbers involved;
// test for them with errors.Is.
var (
	ErrPoolFull     = errors.New("pool full")
	ErrPoolEmpty    = errors.New("not enough keys in pool")
	ErrUnknownKey   = errors.New("unknown key ID")
	ErrDuplicateKey = errors.New("duplicate key ID")
	ErrOwned        = errors.New("key has another owner")
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
// allocation (each capped at its own length).
type Key struct {
	ID    KeyID
	Bytes []byte
	Owner Owner
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
// length, sequence number (the FIFO order), expiry and owner tag, and a
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
// mutating call (Put, TakeNext, TakeByIDs, SetOwner, Expire) costs one msync
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
	expiry     int64 // Unix ns; 0 = never
	owner      Owner // "" = none
	prev, next int32 // FIFO neighbours, -1 at the ends
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

// checkPoolName: a pool's name is in file names, so it follows the one ID
// rule (internal/ids) and is not "." or "..".
func checkPoolName(name string) error {
	if name == "" || len(name) > MaxPoolNameLen {
		return fmt.Errorf("must be 1 to %d characters, got %d", MaxPoolNameLen, len(name))
	}
	if name == "." || name == ".." {
		return fmt.Errorf("must not be %q", name)
	}
	if i := ids.BadByte(name); i >= 0 {
		return fmt.Errorf("may hold only A-Z a-z 0-9 . _ -, got %q at index %d", name[i:i+1], i)
	}
	return nil
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
