package ringstore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"log/slog"
	"os"
	"time"

	"github.com/qrelay/qrelay/ringstore/internal/keymem"
	"github.com/qrelay/qrelay/ringstore/internal/meta"
)

// Durable mode keeps pad bytes in a preallocated ring file, mapped twice
// (mirrored), and the ring's cursors and block directory in the metadata
// store:
//
//	pad/<name>/state            padState (below)
//	pad/<name>/blk/<pos %016x>  one BlockInfo per block still above the tail
//
// Two kinds of write keep them:
//
//   - A mark (persistMark), on the reservation path: one small metadata
//     transaction, one fsync, moving only the mark. It does not wait for
//     pad bytes to reach the disk, because the crash guarantee needs only
//     the mark: after a crash, positions below it are never handed out.
//   - A flush (persistFlush), by a background goroutine every flushBytes of
//     appended pad or flushEvery, and at Close: appended pad and zeroised
//     segments are synced to the file first, then the new blocks and the
//     head and tail are recorded (writeDir, below). So every recorded
//     block's bytes are on disk, and the recorded tail is never ahead of
//     zeroes on disk.
//   - A resync (persistResync, padring_resync.go), when a link comes up: the
//     mark raised to the agreement's from, then the new head, tail and
//     directory recorded. Pad it drops is zeroised only after the cursor
//     record, so the records it names never meet zeroed bytes.
//
// The mark may thus be ahead of the recorded head. A restart then moves the
// head up to the mark: those positions may have been used, so the QKD side
// resumes above them.
//
// A flush or a resync may have more block records to write and delete than
// one badger transaction takes: a ring of ETSI 014 keys (32 to 128 bytes)
// holds hundreds of thousands of blocks. So writeDir writes them in order,
// in as many transactions as needed (meta.UpdateSeq; usually one), and only
// the cursor record is atomic:
//
//  1. deletes of stray records (below),
//  2. the records of blocks whose bytes are synced, all at or above the
//     recorded head,
//  3. the cursor record (with the one record a resync shortens at its new
//     head, which must change with it),
//  4. deletes of the records the tail has passed, or that a resync dropped
//     above its new head.
//
// A crash between two transactions thus leaves, besides the records the
// cursor record describes, only records at or above the recorded head
// (pad synced but never published) or wholly below the recorded tail (pad
// zeroised). openDurable deletes both kinds; neither names pad that could
// be handed out. A write that fails part way, without a crash, leaves the
// same kinds behind: strayBlocks remembers them, and the next write deletes
// them first, before a head recorded above them could make them look like
// blocks of the ring.

const padStateMagic = "QPR1"

// padState is the persisted cursor record.
type padState struct {
	capacity, segment uint64
	head, mark, tail  uint64
	reservedAtPersist uint64 // reservation cursor when this was written
	clean             bool   // written by Close: mark == the final cursor
}

const padStateSize = 4 + 6*8 + 1 + 4

func (s padState) encode() []byte {
	b := make([]byte, 0, padStateSize)
	b = append(b, padStateMagic...)
	for _, v := range []uint64{s.capacity, s.segment, s.head, s.mark, s.tail, s.reservedAtPersist} {
		b = binary.LittleEndian.AppendUint64(b, v)
	}
	flags := byte(0)
	if s.clean {
		flags = 1
	}
	b = append(b, flags)
	return binary.LittleEndian.AppendUint32(b, crc32.Checksum(b, crcTable))
}

func decodePadState(b []byte) (padState, error) {
	var s padState
	if len(b) != padStateSize {
		return s, fmt.Errorf("cursor record is %d bytes, want %d", len(b), padStateSize)
	}
	if string(b[:4]) != padStateMagic {
		return s, fmt.Errorf("cursor record starts %q, want %q", b[:4], padStateMagic)
	}
	if got, want := binary.LittleEndian.Uint32(b[padStateSize-4:]), crc32.Checksum(b[:padStateSize-4], crcTable); got != want {
		return s, fmt.Errorf("cursor record checksum %08x, want %08x", got, want)
	}
	v := func(i int) uint64 { return binary.LittleEndian.Uint64(b[4+8*i:]) }
	s = padState{capacity: v(0), segment: v(1), head: v(2), mark: v(3), tail: v(4), reservedAtPersist: v(5), clean: b[4+6*8]&1 != 0}
	switch {
	case s.tail > s.mark || s.tail > s.head:
		return s, fmt.Errorf("cursors out of order: tail %d, mark %d, head %d (want tail <= mark and tail <= head)", s.tail, s.mark, s.head)
	case s.head-s.tail > s.capacity:
		return s, fmt.Errorf("head %d is more than the capacity %d beyond tail %d", s.head, s.capacity, s.tail)
	case s.segment == 0 || s.tail%s.segment != 0:
		return s, fmt.Errorf("tail %d is not a multiple of the segment size %d", s.tail, s.segment)
	}
	return s, nil
}

func (b BlockInfo) encode() []byte {
	out := make([]byte, 0, 32+len(b.ID)+len(b.Source))
	out = binary.LittleEndian.AppendUint64(out, b.Pos)
	out = binary.LittleEndian.AppendUint32(out, uint32(b.Size))
	out = binary.LittleEndian.AppendUint64(out, uint64(b.Time.UnixNano()))
	out = binary.LittleEndian.AppendUint32(out, b.CRC)
	out = binary.LittleEndian.AppendUint16(out, uint16(len(b.ID)))
	out = append(out, b.ID...)
	out = binary.LittleEndian.AppendUint16(out, uint16(len(b.Source)))
	out = append(out, b.Source...)
	return binary.LittleEndian.AppendUint32(out, crc32.Checksum(out, crcTable))
}

var errBlockRecord = errors.New("malformed block record")

func decodeBlockInfo(b []byte) (BlockInfo, error) {
	var info BlockInfo
	if len(b) < 30 {
		return info, fmt.Errorf("%w: %d bytes, want at least 30", errBlockRecord, len(b))
	}
	body := b[:len(b)-4]
	if got, want := binary.LittleEndian.Uint32(b[len(b)-4:]), crc32.Checksum(body, crcTable); got != want {
		return info, fmt.Errorf("%w: checksum %08x, want %08x", errBlockRecord, got, want)
	}
	info.Pos = binary.LittleEndian.Uint64(body)
	info.Size = int(binary.LittleEndian.Uint32(body[8:]))
	info.Time = time.Unix(0, int64(binary.LittleEndian.Uint64(body[12:])))
	info.CRC = binary.LittleEndian.Uint32(body[20:])
	rest := body[24:]
	str := func() (string, bool) {
		if len(rest) < 2 {
			return "", false
		}
		n := int(binary.LittleEndian.Uint16(rest))
		if len(rest) < 2+n {
			return "", false
		}
		s := string(rest[2 : 2+n])
		rest = rest[2+n:]
		return s, true
	}
	var ok1, ok2 bool
	info.ID, ok1 = str()
	info.Source, ok2 = str()
	if !ok1 || !ok2 || len(rest) != 0 {
		return info, fmt.Errorf("%w: bad string lengths", errBlockRecord)
	}
	return info, nil
}

// blockSpan is a block recorded in the metadata store: [pos, end).
type blockSpan struct{ pos, end uint64 }

func (r *PadRing) stateKey() string { return "pad/" + r.cfg.Name + "/state" }
func (r *PadRing) blockPrefix() string {
	return "pad/" + r.cfg.Name + "/blk/"
}
func (r *PadRing) blockKey(pos uint64) string { return fmt.Sprintf("%s%016x", r.blockPrefix(), pos) }

// openDurable opens or creates the ring file and its metadata, checks that
// they agree, and restarts the ring at the persisted mark.
func (r *PadRing) openDurable() error {
	cfg := r.cfg
	path := FilePath(cfg.Dir, cfg.Name)
	raw, metaErr := cfg.Meta.Get(r.stateKey())
	_, statErr := os.Stat(path)
	fileMissing := errors.Is(statErr, fs.ErrNotExist)
	switch {
	case metaErr != nil && !errors.Is(metaErr, meta.ErrNotFound):
		return fmt.Errorf("pad ring %s: %w", cfg.Name, metaErr)
	case statErr != nil && !fileMissing:
		return fmt.Errorf("pad ring %s: %w", cfg.Name, statErr)
	case errors.Is(metaErr, meta.ErrNotFound) && fileMissing:
		return r.createDurable(path)
	case errors.Is(metaErr, meta.ErrNotFound):
		return fmt.Errorf("pad ring %s: ring file %s exists but metadata store %s has no record of it; refusing to start, because without the record the ring cannot tell which pad was used. Restore the metadata store, or delete the ring file to start with an empty ring",
			cfg.Name, path, cfg.Meta.Dir())
	case fileMissing:
		return fmt.Errorf("pad ring %s: metadata store %s records this ring but its file %s is missing; restore the file, or delete the ring's records to start with an empty ring",
			cfg.Name, cfg.Meta.Dir(), path)
	}

	st, err := decodePadState(raw)
	if err != nil {
		return fmt.Errorf("pad ring %s: metadata store %s, key %s: %v; refusing to start on damaged metadata", cfg.Name, cfg.Meta.Dir(), r.stateKey(), err)
	}
	if st.capacity != uint64(cfg.Capacity) || st.segment != uint64(cfg.SegmentSize) {
		return fmt.Errorf("pad ring %s: %s was made with capacity %d and segment size %d, the configuration says %d and %d; a ring cannot be resized in place",
			cfg.Name, path, st.capacity, st.segment, cfg.Capacity, cfg.SegmentSize)
	}
	mem, err := keymem.File(path, cfg.Capacity, true)
	if err != nil {
		return fmt.Errorf("pad ring %s: %w", cfg.Name, err)
	}
	r.mem, r.buf = mem, mem.Bytes()

	// The block directory; blocks not yet reserved are checked against their
	// checksums, since pad that differs from the peer's would only show up
	// later as tag failures on the link.
	err = cfg.Meta.Scan(r.blockPrefix(), func(key string, val []byte) error {
		info, err := decodeBlockInfo(val)
		if err != nil {
			return fmt.Errorf("metadata store %s, key %s: %v", cfg.Meta.Dir(), key, err)
		}
		end := info.Pos + uint64(info.Size)
		if key != r.blockKey(info.Pos) || info.Pos < st.head && end > st.head || info.Size > cfg.Capacity {
			return fmt.Errorf("metadata store %s, key %s: block %q at [%d, %d) does not fit the ring (head %d)", cfg.Meta.Dir(), key, info.ID, info.Pos, end, st.head)
		}
		if info.Pos >= st.head {
			// Written by a persist that died before its cursor record: the
			// pad was never published. Deleted by the persist below.
			r.strayBlocks = append(r.strayBlocks, blockSpan{info.Pos, end})
			return nil
		}
		if info.Pos >= st.mark {
			at := info.Pos & r.mask
			if got := crc32.Checksum(r.buf[at:at+uint64(info.Size)], crcTable); got != info.CRC {
				return fmt.Errorf("ring file %s: block %q at position %d (%d bytes) has checksum %08x, recorded %08x: the file is damaged; its unused pad no longer matches the peer's. Restore the file, or delete the ring and its records and resynchronise the link",
					path, info.ID, info.Pos, info.Size, got, info.CRC)
			}
		}
		// Entries the tail has passed are deleted by the persist below.
		r.persistedBlocks = append(r.persistedBlocks, blockSpan{info.Pos, end})
		if end > st.tail {
			r.blocks = append(r.blocks, info)
		}
		return nil
	})
	if err != nil {
		r.mem.Close()
		return fmt.Errorf("pad ring %s: %w", cfg.Name, err)
	}
	if len(r.strayBlocks) > 0 {
		slog.Info("pad ring: dropping block records above the recorded head, left by a persist a crash cut short; their pad was never handed out",
			"ring", cfg.Name, "records", len(r.strayBlocks), "head", st.head)
	}

	// Restart at the mark: everything below it may have been handed out
	// before the crash, so it is never handed out again, and it is zeroised
	// now. If the mark is ahead of the recorded head (pad appended and used
	// but not yet flushed), the head moves up to it. The tail moves to the
	// last segment boundary at or below the mark; the bytes between that
	// boundary and the mark count as released.
	seg := uint64(cfg.SegmentSize)
	head := max(st.head, st.mark)
	newTail := st.mark &^ (seg - 1)
	for t := st.tail; t < st.mark; t += seg {
		clear(r.buf[t&r.mask : t&r.mask+min(seg, st.mark-t)])
		r.statZeroised.Add(min(seg, st.mark-t))
	}
	if !st.clean {
		r.crashWaste = st.mark - st.reservedAtPersist
	}
	r.head.Store(head)
	r.reserved.Store(st.mark)
	r.mark.Store(st.mark)
	r.tail.Store(newTail)
	r.openReserved = st.mark
	r.release(newTail, st.mark-newTail)
	r.trimBlocks(newTail)
	r.persistedHead, r.persistedTail = st.head, st.tail
	r.syncedHead.Store(st.head)

	r.markMu.Lock()
	defer r.markMu.Unlock()
	if err := r.persist(st.mark, persistFlush); err != nil {
		r.mem.Close()
		return err
	}
	r.startFlusher()
	return nil
}

// createDurable makes a new, empty ring file and its first cursor record.
func (r *PadRing) createDurable(path string) error {
	mem, err := keymem.Create(path, r.cfg.Capacity, true)
	if err != nil {
		return fmt.Errorf("pad ring %s: %w", r.cfg.Name, err)
	}
	r.mem, r.buf = mem, mem.Bytes()
	r.markMu.Lock()
	defer r.markMu.Unlock()
	if err := r.persist(0, persistFlush); err != nil {
		r.mem.Close()
		os.Remove(path)
		return err
	}
	r.startFlusher()
	return nil
}

// Flusher tuning: how much appended pad, or how long, before pad bytes and
// zeroes are synced to the ring file and the head recorded.
const (
	flushBytes = 16 << 20
	flushEvery = time.Second
)

// startFlusher starts the goroutine that flushes in the background.
func (r *PadRing) startFlusher() {
	r.flushKick = make(chan struct{}, 1)
	r.flushStop = make(chan struct{})
	r.flushDone.Add(1)
	go func() {
		defer r.flushDone.Done()
		tick := time.NewTicker(flushEvery)
		defer tick.Stop()
		for {
			select {
			case <-r.flushStop:
				return
			case <-r.flushKick:
			case <-tick.C:
			}
			r.markMu.Lock()
			err := r.persist(r.mark.Load(), persistFlush)
			r.markMu.Unlock()
			if err != nil {
				// The next flush retries; until then less pad survives a
				// crash, none is reused.
				slog.Error("pad ring flush failed", "ring", r.cfg.Name, "err", err)
			}
		}
	}()
}

// syncRange writes the ring file's pages holding stream positions [from, to)
// to disk; the range may wrap round the file.
func (r *PadRing) syncRange(from, to uint64) error {
	if to <= from {
		return nil
	}
	if to-from >= uint64(r.cfg.Capacity) {
		return r.mem.Sync(0, r.cfg.Capacity)
	}
	a, b := from&r.mask, to&r.mask
	if a < b {
		return r.mem.Sync(int(a), int(b-a))
	}
	if err := r.mem.Sync(int(a), r.cfg.Capacity-int(a)); err != nil {
		return err
	}
	return r.mem.Sync(0, int(b))
}

// What persist writes.
type persistKind int

const (
	persistMark  persistKind = iota // the mark only: no wait for pad bytes
	persistFlush                    // pad and zeroes synced, head, tail and blocks recorded
	persistClean                    // a flush by Close, with mark == the final cursor
)

// persist records the cursors with the mark at mark. The caller holds
// markMu.
func (r *PadRing) persist(mark uint64, kind persistKind) error {
	if kind == persistMark {
		return r.writeState(mark, r.persistedHead, r.persistedTail, false, nil, nil)
	}
	h, t := r.head.Load(), r.tail.Load()
	if err := r.syncRange(r.persistedHead, h); err != nil {
		return fmt.Errorf("pad ring %s: syncing appended pad: %w", r.cfg.Name, err)
	}
	if err := r.syncRange(r.persistedTail, t); err != nil {
		return fmt.Errorf("pad ring %s: syncing zeroised pad: %w", r.cfg.Name, err)
	}
	// Blocks whose bytes are now on disk go into the directory; blocks the
	// tail has passed come out.
	r.dirMu.Lock()
	var ready []BlockInfo
	i := 0
	for i < len(r.pendingBlocks) && r.pendingBlocks[i].Pos+uint64(r.pendingBlocks[i].Size) <= h {
		i++
	}
	ready, r.pendingBlocks = append(ready, r.pendingBlocks[:i]...), r.pendingBlocks[i:]
	r.dirMu.Unlock()
	gone := 0
	for gone < len(r.persistedBlocks) && r.persistedBlocks[gone].end <= t {
		gone++
	}
	if err := r.writeState(mark, h, t, kind == persistClean, ready, r.persistedBlocks[:gone]); err != nil {
		// The blocks stay pending, to be written with the next flush.
		r.dirMu.Lock()
		r.pendingBlocks = append(ready, r.pendingBlocks...)
		r.dirMu.Unlock()
		return err
	}
	r.persistedHead, r.persistedTail = h, t
	r.syncedHead.Store(h)
	r.persistedBlocks = r.persistedBlocks[gone:]
	for _, b := range ready {
		r.persistedBlocks = append(r.persistedBlocks, blockSpan{b.Pos, b.Pos + uint64(b.Size)})
	}
	return nil
}

// writeState writes the cursor record, adding the ready blocks' records
// before it and deleting the gone ones after it (writeDir).
func (r *PadRing) writeState(mark, head, tail uint64, clean bool, ready []BlockInfo, gone []blockSpan) error {
	st := padState{
		capacity: uint64(r.cfg.Capacity), segment: uint64(r.cfg.SegmentSize),
		head: head, mark: mark, tail: tail, // tail <= reserved <= mark
		reservedAtPersist: r.reserved.Load() &^ closedBit, clean: clean,
	}
	if err := r.writeDir(st, ready, nil, gone); err != nil {
		return fmt.Errorf("pad ring %s: persisting mark %d: %w", r.cfg.Name, mark, err)
	}
	if mark > r.mark.Load() {
		r.mark.Store(mark)
	}
	r.statMarkWrites.Add(1)
	return nil
}

// writeDir writes, in order (see the top of this file): deletes of the
// stray records, the records of ready (each at or above the recorded
// head), the cursor record st together with the records of with, and
// deletes of the records gone (each below st.tail, or at or above
// st.head). It returns an error only if st was not written; what it wrote
// before st is then stray. Records of gone it could not delete after st
// are stray too, and logged. The caller holds markMu.
func (r *PadRing) writeDir(st padState, ready, with []BlockInfo, gone []blockSpan) error {
	stray := r.strayBlocks
	ns, nr := len(stray), len(ready)
	at := ns + nr // the unit of the cursor record
	n := at + 1 + len(gone)
	cursor := st.encode()
	done, err := r.cfg.Meta.UpdateSeq(n, func(tx *meta.Tx, i int) error {
		switch {
		case i < ns:
			return tx.Delete(r.blockKey(stray[i].pos))
		case i < at:
			b := &ready[i-ns]
			return tx.Set(r.blockKey(b.Pos), b.encode())
		case i == at:
			for _, b := range with {
				if err := tx.Set(r.blockKey(b.Pos), b.encode()); err != nil {
					return err
				}
			}
			return tx.Set(r.stateKey(), cursor)
		default:
			return tx.Delete(r.blockKey(gone[i-at-1].pos))
		}
	}, func(done int) error {
		if testHookDirTxn == nil || done == n {
			return nil
		}
		if done <= at {
			return testHookDirTxn("blocks")
		}
		return testHookDirTxn("cursors")
	})
	left := append([]blockSpan(nil), stray[min(done, ns):]...)
	if done <= at {
		for _, b := range ready[:max(done, ns)-ns] {
			left = append(left, blockSpan{b.Pos, b.Pos + uint64(b.Size)})
		}
		r.strayBlocks = left
		return err
	}
	r.strayBlocks = append(left, gone[done-at-1:]...)
	if err != nil {
		slog.Warn("pad ring: cursors recorded, but deleting block records they no longer name failed; the next persist or restart deletes them",
			"ring", r.cfg.Name, "records", len(gone)-(done-at-1), "err", err)
	}
	return nil
}

// testHookDirTxn, if set, is called after each metadata transaction of
// writeDir that leaves more to write: step "blocks" while the cursor record
// is not yet written, "cursors" after it. A crash test kills the process
// there; an error from it fails the write there.
var testHookDirTxn func(step string) error
