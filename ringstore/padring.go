package ringstore

import (
	"errors"
	"fmt"
	"hash/crc32"
	"math/bits"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/qrelay/qrelay/ringstore/internal/keymem"
	"github.com/qrelay/qrelay/ringstore/internal/meta"
)

// Pad ring defaults.
const (
	DefaultSegmentSize = 1 << 20 // bytes zeroised at once as the tail passes
	// With MarkBatch zero, the batch adapts between these bounds so that
	// marks are written about every markInterval: a slow link (QKD rates are
	// kbit/s to Mbit/s) wastes little pad after a crash, a fast relay pays
	// few fsyncs.
	minMarkBatch = 64 << 10
	maxMarkBatch = 16 << 20
	markInterval = 5 * time.Millisecond
)

var (
	// ErrPadShort means the ring holds fewer unreserved bytes than asked for;
	// nothing was reserved. The caller waits for the QKD link.
	ErrPadShort = errors.New("not enough pad")
	// ErrRingFull means an appended block does not fit until consumers
	// release pad; nothing was appended.
	ErrRingFull = errors.New("pad ring full")
	// ErrClosed is returned by a closed ring.
	ErrClosed = errors.New("pad ring closed")
)

// crcTable is CRC-32C (Castagnoli), which amd64 computes in hardware.
var crcTable = crc32.MakeTable(crc32.Castagnoli)

// PadRingConfig configures one pad ring: the key material of one KM link in
// one direction.
type PadRingConfig struct {
	// Name identifies the ring ("<link>/tx"); it names the ring file and the
	// metadata keys, and appears in every error.
	Name string
	// Capacity in bytes: a power of two and a multiple of SegmentSize.
	Capacity int
	// SegmentSize is the zeroisation unit: a power of two, a multiple of the
	// page size, at most Capacity. Zero means DefaultSegmentSize.
	SegmentSize int
	// Dir holds the ring file in durable mode. Empty means memory mode: no
	// file, no metadata, nothing survives the process.
	Dir string
	// Meta is the metadata store (durable mode only). It may be shared.
	Meta *meta.DB
	// MarkBatch is how far beyond a reservation the persisted high-water
	// mark is pushed (never past the head), so that one fsync covers many
	// reservations; after a crash at most this much pad is skipped. Zero means adaptive: 64 KiB to
	// 16 MiB, aiming at one mark write per 5 ms of reservations.
	MarkBatch int
	// Now is the clock for block times; nil means time.Now.
	Now func() time.Time
}

// Block is a QKD key block handed to Append.
type Block struct {
	ID     string    // the QKD module's block or key ID
	Source string    // the QKD module it came from
	Time   time.Time // when it was produced; zero means now
	Data   []byte
}

// BlockInfo is the directory entry of an appended block.
type BlockInfo struct {
	Pos    uint64 // position of its first byte in the ring's stream
	Size   int
	ID     string
	Source string
	Time   time.Time
	CRC    uint32 // CRC-32C of the bytes, checked at start for unconsumed blocks
}

// Range is a reserved run of pad: Pos identifies it in the link's pad
// stream (both ends of the link agree on positions), and Bytes is the pad
// itself, contiguous even where it wraps round the ring.
type Range struct {
	Pos   uint64
	Bytes []byte
}

// PadStats is what the ring reports to metrics.
type PadStats struct {
	Capacity       int
	Stock          uint64 // appended, not yet reserved
	Head           uint64 // end of the ring's pad, where the next block lands
	Reserved       uint64 // reservation cursor
	Tail           uint64 // everything below is zeroised
	Appended       uint64 // bytes appended by this process
	ReservedBytes  uint64 // bytes reserved by this process
	ZeroisedBytes  uint64
	MarkWrites     uint64 // persisted reservation marks (fsyncs)
	CrashWaste     uint64 // bytes skipped at start because a crash may have used them
	AppendRejected uint64 // blocks refused because the ring was full
	Burnt          uint64 // bytes of pad Resync burnt below from or dropped above to, by this process
	Skipped        uint64 // positions Resync skipped, which never held pad, by this process
}

// PadRing is a ring buffer of one link direction's pad, a byte stream
// addressed by absolute position.
//
// Concurrency model: one producer goroutine calls Append; any number of
// consumer goroutines call Reserve and Release. The hot path is lock-free:
// Reserve is one compare-and-swap on the reservation cursor (for any
// number of bytes, so one synchronisation hands over many keys), Release
// adds to a per-segment counter. Locks are taken only on paths that run once
// per segment or per mark batch: zeroising a finished segment (a flag, so a
// single releaser does it while others go on) and persisting a new
// reservation mark in durable mode (a mutex, so one fsync serves everyone
// waiting).
//
// Positions: head is the end of appended pad, reserved the end of reserved
// pad, tail the end of zeroised pad; tail <= reserved <= head and head-tail
// <= Capacity. A byte at position p lives at p mod Capacity; the mapping is
// mirrored, so a range of up to Capacity bytes is one slice.
//
// Waiting: WaitStock, WaitRoom and Watch (padring_wait.go) block until the
// change waited for, instead of polling; while nobody waits they cost the
// hot path one atomic load.
//
// Resync (padring_resync.go) moves the cursors to what the two ends of the
// link agreed on when it comes up; it may move the head back, dropping pad
// above it, or skip positions that never hold pad.
type PadRing struct {
	cfg    PadRingConfig
	mem    *keymem.Region
	buf    []byte // 2*Capacity, mirrored
	mask   uint64
	segLog uint

	head     atomic.Uint64
	reserved atomic.Uint64
	mark     atomic.Uint64 // reservations must end at or below; ^0 in memory mode
	tail     atomic.Uint64
	released []atomic.Uint64 // per segment: bytes of the current lap released

	zeroing  atomic.Bool // held by the goroutine advancing the tail
	errShort error       // what Reserve returns when there is too little pad

	waiters padWaiters // Watch, WaitStock, WaitRoom (padring_wait.go)

	// Durable mode: markMu serialises persisting; the fields below it are
	// what the metadata store holds.
	markMu          sync.Mutex
	markBatch       uint64    // current batch (adaptive unless cfg.MarkBatch is set)
	lastMark        time.Time // when extendMark last wrote
	persistedHead   uint64
	persistedTail   uint64
	persistedBlocks []blockSpan   // block records in the metadata store, oldest first
	strayBlocks     []blockSpan   // records to delete: at or above persistedHead, or below persistedTail
	syncedHead      atomic.Uint64 // persistedHead, for Append to read
	flushKick       chan struct{} // Append asks the flusher to run
	flushStop       chan struct{}
	flushDone       sync.WaitGroup
	dirMu           sync.Mutex  // guards blocks and pendingBlocks
	blocks          []BlockInfo // directory of blocks at or above the tail
	pendingBlocks   []BlockInfo // appended, not yet in the metadata store
	closed          atomic.Bool
	openReserved    uint64 // the cursor at open, which Stats's ReservedBytes counts from
	statAppended    atomic.Uint64
	statZeroised    atomic.Uint64
	statMarkWrites  atomic.Uint64
	statRejected    atomic.Uint64
	crashWaste      uint64

	// Resync (padring_resync.go): resyncMu serialises it; resyncSeq is odd
	// while it moves the cursors, so Stats reads them consistently.
	resyncMu    sync.Mutex
	resyncSeq   atomic.Uint64
	statBurnt   atomic.Uint64 // burnt below from plus dropped above to
	statSkipped atomic.Uint64
	statMoved   atomic.Uint64 // cursor moved by Resync, not by Reserve: burnt stock plus skipped
}

func (c *PadRingConfig) check() error {
	if c.Name == "" {
		return errors.New("pad ring: Name is empty")
	}
	if c.SegmentSize == 0 {
		c.SegmentSize = DefaultSegmentSize
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	isPow2 := func(n int) bool { return n > 0 && n&(n-1) == 0 }
	switch {
	case !isPow2(c.SegmentSize) || c.SegmentSize%keymem.PageSize != 0:
		return fmt.Errorf("pad ring %s: SegmentSize %d must be a power of two and a multiple of the page size %d", c.Name, c.SegmentSize, keymem.PageSize)
	case !isPow2(c.Capacity) || c.Capacity < c.SegmentSize:
		return fmt.Errorf("pad ring %s: Capacity %d must be a power of two of at least SegmentSize %d", c.Name, c.Capacity, c.SegmentSize)
	case c.MarkBatch < 0:
		return fmt.Errorf("pad ring %s: MarkBatch %d must not be negative", c.Name, c.MarkBatch)
	case (c.Dir == "") != (c.Meta == nil):
		return fmt.Errorf("pad ring %s: durable mode needs both Dir and Meta (Dir %q, Meta set: %v)", c.Name, c.Dir, c.Meta != nil)
	}
	return nil
}

// OpenPadRing opens a pad ring: in memory mode a fresh empty one; in
// durable mode the ring in cfg.Dir, creating it if neither its file nor its
// metadata exists. A durable ring restarts its reservations at the
// persisted high-water mark, so no byte handed out before a crash is ever
// handed out again, and zeroises everything below that mark. It refuses to
// open a ring whose file or metadata is damaged or inconsistent.
func OpenPadRing(cfg PadRingConfig) (*PadRing, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	r := &PadRing{
		cfg:      cfg,
		mask:     uint64(cfg.Capacity - 1),
		segLog:   uint(bits.TrailingZeros(uint(cfg.SegmentSize))),
		released: make([]atomic.Uint64, cfg.Capacity/cfg.SegmentSize),
		errShort: fmt.Errorf("pad ring %s: %w; wait for the QKD link, or reserve less (Stats().Stock says how much there is)", cfg.Name, ErrPadShort),
	}
	if cfg.Dir == "" {
		mem, err := keymem.Anonymous("pad-"+sanitize(cfg.Name), cfg.Capacity, true)
		if err != nil {
			return nil, fmt.Errorf("pad ring %s: %w", cfg.Name, err)
		}
		r.mem, r.buf = mem, mem.Bytes()
		r.mark.Store(^uint64(0))
		return r, nil
	}
	if err := r.openDurable(); err != nil {
		return nil, err
	}
	return r, nil
}

// sanitize turns a ring name into a file name component.
func sanitize(name string) string {
	b := []byte(name)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			b[i] = '_'
		}
	}
	return string(b)
}

// FilePath is the ring file of a durable ring named name in dir.
func FilePath(dir, name string) string {
	return filepath.Join(dir, "pad-"+sanitize(name)+".ring")
}

// Append copies a QKD block into the ring at the head and publishes it.
// Only one goroutine may call Append. It returns ErrRingFull, appending
// nothing, if the block does not fit until consumers release pad.
func (r *PadRing) Append(b Block) error {
	if r.closed.Load() {
		return ErrClosed
	}
	n := uint64(len(b.Data))
	h := r.head.Load()
	if h+n-r.tail.Load() > uint64(r.cfg.Capacity) {
		r.statRejected.Add(1)
		return fmt.Errorf("pad ring %s: block %q of %d bytes: %w (%d of %d bytes unreleased)",
			r.cfg.Name, b.ID, n, ErrRingFull, h-r.tail.Load(), r.cfg.Capacity)
	}
	at := h & r.mask
	copy(r.buf[at:at+n], b.Data)
	if b.Time.IsZero() {
		b.Time = r.cfg.Now()
	}
	info := BlockInfo{Pos: h, Size: len(b.Data), ID: b.ID, Source: b.Source, Time: b.Time}
	if r.cfg.Meta != nil {
		// The checksum lets a restart find damaged unused pad; memory mode
		// has no restart.
		info.CRC = crc32.Checksum(b.Data, crcTable)
	}
	r.dirMu.Lock()
	r.blocks = append(r.blocks, info)
	if r.cfg.Meta != nil {
		r.pendingBlocks = append(r.pendingBlocks, info)
	}
	r.dirMu.Unlock()
	r.head.Store(h + n) // publishes the bytes to consumers
	r.statAppended.Add(n)
	if r.waiters.armed.Load() {
		r.wake()
	}
	if r.tailSegmentDone() { // only after a crash: see tailSegmentDone
		r.advanceTail()
	}
	if r.flushKick != nil && h+n-r.syncedHead.Load() >= flushBytes {
		select {
		case r.flushKick <- struct{}{}:
		default:
		}
	}
	return nil
}

// Reserve hands out the next n bytes of pad, or returns ErrPadShort and
// reserves nothing. n must be at most Capacity. In durable mode the end of
// the range is covered by a persisted high-water mark before Reserve
// returns.
func (r *PadRing) Reserve(n int) (Range, error) {
	if n <= 0 || n > r.cfg.Capacity {
		return Range{}, fmt.Errorf("pad ring %s: cannot reserve %d bytes: want 1 to %d (Capacity)", r.cfg.Name, n, r.cfg.Capacity)
	}
	for {
		cur := r.reserved.Load()
		if cur&closedBit != 0 {
			return Range{}, fmt.Errorf("pad ring %s: %w", r.cfg.Name, ErrClosed)
		}
		end := cur + uint64(n)
		h := r.head.Load()
		if end > h {
			// Formatting an error here would cost more than the reservation:
			// consumers poll for pad. The error is made once, at open.
			return Range{}, r.errShort
		}
		if end > r.mark.Load() {
			if err := r.extendMark(end); err != nil {
				return Range{}, err
			}
			continue
		}
		if r.reserved.CompareAndSwap(cur, end) {
			r.wakeReserved(h - end)
			at := cur & r.mask
			return Range{Pos: cur, Bytes: r.buf[at : at+uint64(n) : at+uint64(n)]}, nil
		}
	}
}

// Release gives a reserved range back for deletion once its pad has been
// used. Ranges may be released in any order; each segment is zeroised,
// whole, once every byte in it has been released and the tail reaches it.
// A range must be released exactly once, and before Close: a release after
// Close is ignored (the memory is gone).
func (r *PadRing) Release(rg Range) {
	if r.closed.Load() {
		return
	}
	r.release(rg.Pos, uint64(len(rg.Bytes)))
	r.advanceTail()
}

// release counts [pos, pos+n) as released in the segments it covers.
func (r *PadRing) release(pos, n uint64) {
	seg := uint64(r.cfg.SegmentSize)
	for n > 0 {
		in := min(n, seg-pos&(seg-1))
		r.released[(pos>>r.segLog)%uint64(len(r.released))].Add(in)
		pos += in
		n -= in
	}
}

// advanceTail zeroises every finished segment at the tail. One goroutine
// does it at a time; one that finds the flag taken leaves the work to the
// holder, which looks again after dropping the flag, so no finished segment
// is left behind.
func (r *PadRing) advanceTail() {
	seg := uint64(r.cfg.SegmentSize)
	for r.tailSegmentDone() {
		if !r.zeroing.CompareAndSwap(false, true) {
			return
		}
		for r.tailSegmentDone() {
			t := r.tail.Load()
			at := t & r.mask
			clear(r.buf[at : at+seg])
			r.released[(t>>r.segLog)%uint64(len(r.released))].Store(0)
			r.tail.Store(t + seg)
			r.statZeroised.Add(seg)
			r.trimBlocks(t + seg)
		}
		r.zeroing.Store(false)
		r.wakeFreed()
	}
}

// tailSegmentDone reports whether the segment at the tail is appended and
// released in full. (After a crash, pad up to the mark counts as released
// before it is appended again; the tail must still not pass the head.)
func (r *PadRing) tailSegmentDone() bool {
	t := r.tail.Load()
	seg := uint64(r.cfg.SegmentSize)
	return t+seg <= r.head.Load() && r.released[(t>>r.segLog)%uint64(len(r.released))].Load() >= seg
}

// Stats reports the ring's cursors and counters.
func (r *PadRing) Stats() PadStats {
	for {
		// A seqlock against Resync, which moves several cursors at once.
		seq := r.resyncSeq.Load()
		if seq&1 != 0 {
			runtime.Gosched()
			continue
		}
		s := r.stats()
		if r.resyncSeq.Load() == seq {
			return s
		}
	}
}

func (r *PadRing) stats() PadStats {
	h, res := r.head.Load(), r.reserved.Load()&^closedBit
	stock := uint64(0)
	if h > res {
		stock = h - res
	}
	return PadStats{
		Capacity: r.cfg.Capacity,
		Stock:    stock,
		Head:     h,
		Reserved: res,
		Tail:     r.tail.Load(),
		Appended: r.statAppended.Load(),
		// Derived rather than counted, so Reserve stays one compare-and-swap:
		// the cursor moves by Reserve, or by Resync (counted in statMoved).
		ReservedBytes:  res - r.openReserved - r.statMoved.Load(),
		ZeroisedBytes:  r.statZeroised.Load(),
		MarkWrites:     r.statMarkWrites.Load(),
		CrashWaste:     r.crashWaste,
		AppendRejected: r.statRejected.Load(),
		Burnt:          r.statBurnt.Load(),
		Skipped:        r.statSkipped.Load(),
	}
}

// Blocks returns the directory of blocks that still have bytes above the
// tail, oldest first.
func (r *PadRing) Blocks() []BlockInfo {
	r.dirMu.Lock()
	defer r.dirMu.Unlock()
	return append([]BlockInfo(nil), r.blocks...)
}

// trimBlocks drops directory entries wholly below tail.
func (r *PadRing) trimBlocks(tail uint64) {
	r.dirMu.Lock()
	i := 0
	for i < len(r.blocks) && r.blocks[i].Pos+uint64(r.blocks[i].Size) <= tail {
		i++
	}
	r.blocks = r.blocks[i:]
	r.dirMu.Unlock()
}

// Name is the ring's name.
func (r *PadRing) Name() string { return r.cfg.Name }

// Locked reports whether the ring's memory is locked in RAM.
func (r *PadRing) Locked() bool { return r.mem.Locked() }

// closedBit, set in the reservation cursor by Close, makes every later
// Reserve fail, including one racing with Close: its compare-and-swap sees
// the changed cursor. So the cursor Close reads is final.
const closedBit = 1 << 63

// Close stops the ring. A durable ring persists its cursors exactly (a clean
// stop wastes no pad); a memory ring zeroises all of its memory. Consumers
// must have stopped: Close unmaps the memory their ranges point into.
func (r *PadRing) Close() error {
	if r.closed.Swap(true) {
		return nil
	}
	var final uint64
	for {
		cur := r.reserved.Load()
		if r.reserved.CompareAndSwap(cur, cur|closedBit) {
			final = cur
			break
		}
	}
	r.wake() // waiters see closed; they touch no pad memory
	var err error
	if r.cfg.Meta != nil {
		close(r.flushStop)
		r.flushDone.Wait()
		r.markMu.Lock()
		// The mark drops to the final cursor: a clean stop wastes no pad.
		err = r.persist(final, persistClean)
		r.markMu.Unlock()
	} else {
		clear(r.buf[:r.cfg.Capacity])
	}
	if cerr := r.mem.Close(); err == nil {
		err = cerr
	}
	return err
}

// extendMark makes a reservation ending at end durable (memory mode never
// gets here: its mark is infinite).
func (r *PadRing) extendMark(end uint64) error {
	r.markMu.Lock()
	defer r.markMu.Unlock()
	if r.mark.Load() >= end {
		return nil // someone else's fsync covered us
	}
	if r.closed.Load() {
		return fmt.Errorf("pad ring %s: %w", r.cfg.Name, ErrClosed)
	}
	// Cover a batch beyond the cursor, so a crash wastes at most a batch (or
	// the one reservation, if it is larger).
	if r.cfg.MarkBatch > 0 {
		r.markBatch = uint64(r.cfg.MarkBatch)
	} else {
		now := time.Now()
		since := now.Sub(r.lastMark)
		r.lastMark = now
		switch {
		case r.markBatch == 0:
			r.markBatch = minMarkBatch
		case since < markInterval/2 && r.markBatch < maxMarkBatch:
			r.markBatch *= 2
		case since > 4*markInterval && r.markBatch > minMarkBatch:
			r.markBatch /= 2
		}
	}
	// The mark never goes past the head: no position beyond it can be
	// handed out before it is appended, and a mark past the head would
	// make a restart after a crash burn pad that was never used (on a
	// link, the whole stock both ends hold: see docs/kmlink.md section 6).
	cur := r.reserved.Load() &^ closedBit
	return r.persist(max(end, min(cur+r.markBatch, r.head.Load())), persistMark)
}
