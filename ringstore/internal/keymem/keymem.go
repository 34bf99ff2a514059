//go:build linux

// Package keymem maps memory for key material: locked in RAM (mlock) where
// the process may, excluded from core dumps (MADV_DONTDUMP) always, and
// optionally mirrored, so that a ring of size n is mapped twice back to
// back and any range of up to n bytes starting inside the ring is one
// contiguous slice, even where it wraps.
//
// A Region is backed by a file: a regular file in durable mode, whose
// contents outlive the process, or an anonymous memfd in memory mode.
// Either way writes through the mapping are the file's contents, so
// zeroising a range in memory zeroises it in the file.
package keymem

import (
	"fmt"
	"log/slog"
	"os"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Region is a mapping of key memory. Its methods are safe for concurrent
// use; the bytes are the caller's to synchronise.
type Region struct {
	f      *os.File
	size   int
	mirror bool
	mem    []byte // size bytes, or 2*size when mirrored
	locked bool
	closed sync.Once
}

// PageSize is the granularity of sizes and offsets.
var PageSize = os.Getpagesize()

var lockWarning sync.Once

// Anonymous maps size bytes of fresh zeroed key memory (a memfd, so that it
// can be mirrored). name shows in /proc/self/maps.
func Anonymous(name string, size int, mirror bool) (*Region, error) {
	if err := checkSize(size); err != nil {
		return nil, err
	}
	fd, err := unix.MemfdCreate("qrelay-"+name, unix.MFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("keymem: memfd_create for %s: %w", name, err)
	}
	f := os.NewFile(uintptr(fd), "memfd:qrelay-"+name)
	if err := f.Truncate(int64(size)); err != nil {
		f.Close()
		return nil, fmt.Errorf("keymem: sizing memfd for %s to %d bytes: %w", name, size, err)
	}
	return mapFile(f, size, mirror)
}

// File maps the first size bytes of an existing file, which must be exactly
// size bytes long (a longer or shorter file is not ours, or is damaged).
func File(path string, size int, mirror bool) (*Region, error) {
	if err := checkSize(size); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("keymem: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("keymem: %w", err)
	}
	if st.Size() != int64(size) {
		f.Close()
		return nil, fmt.Errorf("keymem: %s is %d bytes, want %d: truncated or not this store's file; restore it or remove the store to start empty (its keys are then lost)", path, st.Size(), size)
	}
	return mapFile(f, size, mirror)
}

// Create makes a new file of size bytes, preallocated on disk (so that a
// full disk fails now, not when a key arrives) and zero, and maps it. It
// fails if the file exists.
func Create(path string, size int, mirror bool) (*Region, error) {
	if err := checkSize(size); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("keymem: %w", err)
	}
	if err := unix.Fallocate(int(f.Fd()), 0, 0, int64(size)); err != nil {
		// Not every file system can preallocate; a sized file still works.
		if err := f.Truncate(int64(size)); err != nil {
			f.Close()
			os.Remove(path)
			return nil, fmt.Errorf("keymem: sizing %s to %d bytes: %w", path, size, err)
		}
	}
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(path)
		return nil, fmt.Errorf("keymem: %w", err)
	}
	return mapFile(f, size, mirror)
}

func checkSize(size int) error {
	if size <= 0 || size%PageSize != 0 {
		return fmt.Errorf("keymem: size %d is not a positive multiple of the page size %d", size, PageSize)
	}
	return nil
}

func mapFile(f *os.File, size int, mirror bool) (*Region, error) {
	r := &Region{f: f, size: size, mirror: mirror}
	fd := int(f.Fd())
	prot := unix.PROT_READ | unix.PROT_WRITE
	if !mirror {
		mem, err := unix.Mmap(fd, 0, size, prot, unix.MAP_SHARED)
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("keymem: mmap %s: %w", f.Name(), err)
		}
		r.mem = mem
	} else {
		// Reserve twice the address space, then map the file over each half.
		base, err := unix.MmapPtr(-1, 0, nil, uintptr(2*size), unix.PROT_NONE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("keymem: reserving %d bytes of address space: %w", 2*size, err)
		}
		for half := range 2 {
			addr := unsafe.Add(base, half*size)
			if _, err := unix.MmapPtr(fd, 0, addr, uintptr(size), prot, unix.MAP_SHARED|unix.MAP_FIXED); err != nil {
				unix.MunmapPtr(base, uintptr(2*size))
				f.Close()
				return nil, fmt.Errorf("keymem: mirroring %s: %w", f.Name(), err)
			}
		}
		r.mem = unsafe.Slice((*byte)(base), 2*size)
	}
	// Keys must not reach a core dump, whatever else fails.
	if err := unix.Madvise(r.mem, unix.MADV_DONTDUMP); err != nil {
		r.unmap()
		return nil, fmt.Errorf("keymem: madvise(MADV_DONTDUMP) on %s: %w", f.Name(), err)
	}
	if err := unix.Mlock(r.mem[:size]); err != nil {
		lockWarning.Do(func() {
			slog.Warn("key memory is not locked in RAM and may be swapped to disk; run as root, grant CAP_IPC_LOCK or raise RLIMIT_MEMLOCK (ulimit -l) to lock it",
				"err", err, "bytes", size)
		})
	} else {
		r.locked = true
	}
	return r, nil
}

// Bytes is the mapping: Size bytes, or 2*Size when mirrored, in which case
// b[i] and b[i+Size] are the same byte.
func (r *Region) Bytes() []byte { return r.mem }

// Size is the size of the backing file.
func (r *Region) Size() int { return r.size }

// Locked reports whether the memory is locked in RAM.
func (r *Region) Locked() bool { return r.locked }

// Name is the backing file's name.
func (r *Region) Name() string { return r.f.Name() }

// Sync writes the pages holding [off, off+n) of the file to disk and waits.
func (r *Region) Sync(off, n int) error {
	if n <= 0 {
		return nil
	}
	start := off / PageSize * PageSize
	end := min(off+n, r.size)
	if err := unix.Msync(r.mem[start:end], unix.MS_SYNC); err != nil {
		return fmt.Errorf("keymem: msync %s [%d, %d): %w", r.f.Name(), start, end, err)
	}
	return nil
}

// Close unmaps the region and closes the file. It does not zeroise: a
// durable file keeps its keys; callers zeroise memory-mode regions first
// (the memfd's pages are freed with its last reference either way).
func (r *Region) Close() error {
	var err error
	r.closed.Do(func() { err = r.unmap() })
	return err
}

func (r *Region) unmap() error {
	var err error
	if r.mirror {
		err = unix.MunmapPtr(unsafe.Pointer(&r.mem[0]), uintptr(len(r.mem)))
	} else {
		err = unix.Munmap(r.mem)
	}
	r.mem = nil
	if cerr := r.f.Close(); err == nil {
		err = cerr
	}
	return err
}
