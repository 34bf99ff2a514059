//go:build linux

package ringstore

// This file holds durable mode: the index encoding in badger, msync of the
// slot file, and opening, creating and recovering a pool from disk.

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"

	"github.com/qrelay/qrelay/ringstore/internal/keymem"
	"github.com/qrelay/qrelay/ringstore/internal/meta"
	"golang.org/x/sys/unix"
)

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
//	[0]     format version (2)
//	[1:5]   slot (uint32)
//	[5:9]   key length (uint32)
//	[9:17]  sequence number (uint64): FIFO order
//	[17:25] expiry (int64, Unix ns; 0 = never)
//	[25:]   owner tag, to the end of the value (none: empty)
//
// Format 1 entries (written before owners were opaque) are read too: their
// tail is four zero bytes for no owner, and otherwise the tag the supply
// service now writes, byte for byte. Integers are big-endian; no key bytes.
const (
	poolHeaderFormat = 1
	poolFormat       = 2 // of an entry
	poolFormatV1     = 1
	poolHeaderLen    = 9
	poolEntryFixed   = 25
)

func (p *Pool) entryKey(id KeyID) string { return p.prefix + "k/" + string(id[:]) }

func appendEntry(b []byte, s int32, e *slot) []byte {
	b = append(b, poolFormat)
	b = binary.BigEndian.AppendUint32(b, uint32(s))
	b = binary.BigEndian.AppendUint32(b, e.n)
	b = binary.BigEndian.AppendUint64(b, e.seq)
	b = binary.BigEndian.AppendUint64(b, uint64(e.expiry))
	return append(b, e.owner...)
}

func decodeEntry(v []byte) (s int32, e slot, err error) {
	if len(v) < poolEntryFixed {
		return 0, e, fmt.Errorf("entry is %d bytes, want at least %d", len(v), poolEntryFixed)
	}
	if v[0] != poolFormat && v[0] != poolFormatV1 {
		return 0, e, fmt.Errorf("entry format %d, want %d or %d", v[0], poolFormatV1, poolFormat)
	}
	slotNo := binary.BigEndian.Uint32(v[1:])
	if slotNo > 1<<31-1 {
		return 0, e, fmt.Errorf("slot %d out of range", slotNo)
	}
	e.n = binary.BigEndian.Uint32(v[5:])
	e.seq = binary.BigEndian.Uint64(v[9:])
	e.expiry = int64(binary.BigEndian.Uint64(v[17:]))
	owner := v[poolEntryFixed:]
	if v[0] == poolFormatV1 {
		if len(owner) < 4 {
			return 0, e, fmt.Errorf("format 1 entry is %d bytes, want at least %d", len(v), poolEntryFixed+4)
		}
		if bytes.Equal(owner, []byte{0, 0, 0, 0}) {
			owner = nil
		}
	}
	if len(owner) > MaxOwnerLen {
		return 0, e, fmt.Errorf("owner tag is %d bytes, at most %d allowed", len(owner), MaxOwnerLen)
	}
	e.owner = Owner(owner)
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
	hdr := []byte{poolHeaderFormat}
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
	if len(hdr) != poolHeaderLen || hdr[0] != poolHeaderFormat {
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
