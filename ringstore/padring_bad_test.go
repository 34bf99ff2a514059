package ringstore

import (
	"os"
	"strings"
	"testing"

	"github.com/qrelay/qrelay/ringstore/internal/meta"
)

// TestPadRingRefusesDamage damages a durable ring's file or metadata in each
// way a disk, an operator or a bug could, and checks the ring refuses to
// open with a message naming what is wrong, instead of handing out pad that
// may have been used or no longer matches the peer's.
func TestPadRingRefusesDamage(t *testing.T) {
	const capacity, segment, batch = 1 << 16, 1 << 12, 1 << 12
	cases := []struct {
		name   string
		damage func(t *testing.T, dir string, db *meta.DB) *meta.DB // may return a replacement store
		want   []string
	}{
		{"truncated ring file", func(t *testing.T, dir string, db *meta.DB) *meta.DB {
			if err := os.Truncate(FilePath(dir, "linkAB/tx"), capacity-4096); err != nil {
				t.Fatal(err)
			}
			return db
		}, []string{FilePath("", "linkAB/tx"), "is 61440 bytes, want 65536", "truncated"}},
		{"missing ring file", func(t *testing.T, dir string, db *meta.DB) *meta.DB {
			if err := os.Remove(FilePath(dir, "linkAB/tx")); err != nil {
				t.Fatal(err)
			}
			return db
		}, []string{"records this ring but its file", "is missing"}},
		{"missing metadata", func(t *testing.T, dir string, db *meta.DB) *meta.DB {
			return openMeta(t, t.TempDir())
		}, []string{"exists but metadata store", "has no record of it"}},
		{"garbled cursor record", func(t *testing.T, dir string, db *meta.DB) *meta.DB {
			rec := padState{capacity: capacity, segment: segment, head: 100, mark: 50}.encode()
			rec[20] ^= 0x01 // one bit of head flipped on disk
			setRaw(t, db, "pad/linkAB/tx/state", rec)
			return db
		}, []string{"key pad/linkAB/tx/state", "checksum", "damaged metadata"}},
		{"short cursor record", func(t *testing.T, dir string, db *meta.DB) *meta.DB {
			setRaw(t, db, "pad/linkAB/tx/state", []byte("QPR1"))
			return db
		}, []string{"cursor record is 4 bytes, want 57"}},
		{"cursors out of order", func(t *testing.T, dir string, db *meta.DB) *meta.DB {
			st := padState{capacity: capacity, segment: segment, head: 100, mark: 8192, tail: 4096}
			setRaw(t, db, "pad/linkAB/tx/state", st.encode())
			return db
		}, []string{"cursors out of order: tail 4096, mark 8192, head 100"}},
		{"garbled block record", func(t *testing.T, dir string, db *meta.DB) *meta.DB {
			setRaw(t, db, "pad/linkAB/tx/blk/0000000000000000", []byte("nonsense, not a block record"))
			return db
		}, []string{"key pad/linkAB/tx/blk/0000000000000000", "malformed block record"}},
		{"block record across the head", func(t *testing.T, dir string, db *meta.DB) *meta.DB {
			// Records wholly above the head are pad a crash kept from being
			// published, and are dropped; one across it fits no persist.
			setRaw(t, db, "pad/linkAB/tx/blk/0000000000009858", BlockInfo{Pos: 39000, Size: 2000, ID: "across"}.encode())
			return db
		}, []string{`block "across" at [39000, 41000) does not fit the ring (head 40000)`}},
		{"unused pad damaged on disk", func(t *testing.T, dir string, db *meta.DB) *meta.DB {
			f, err := os.OpenFile(FilePath(dir, "linkAB/tx"), os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if _, err := f.WriteAt([]byte{0x55}, 30000); err != nil { // inside blk-20000, unreserved
				t.Fatal(err)
			}
			return db
		}, []string{`block "blk-20000" at position 20000`, "has checksum", "the file is damaged"}},
		{"capacity changed", nil, []string{"was made with capacity 65536", "the configuration says 131072", "cannot be resized"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			db := openMeta(t, dir)
			defer db.Close()
			r, err := durableRing(t, dir, db, capacity, segment, batch)
			if err != nil {
				t.Fatal(err)
			}
			for _, pos := range []uint64{0, 20000} {
				if err := r.Append(padBlock(pos, 20000)); err != nil {
					t.Fatal(err)
				}
			}
			rg, err := r.Reserve(5000)
			if err != nil {
				t.Fatal(err)
			}
			r.Release(rg)
			if err := r.Close(); err != nil {
				t.Fatal(err)
			}

			capacityNow := capacity
			if c.damage != nil {
				if other := c.damage(t, dir, db); other != db {
					defer other.Close()
					db = other
				}
			} else {
				capacityNow = 2 * capacity
			}
			r, err = durableRing(t, dir, db, capacityNow, segment, batch)
			if err == nil {
				r.Close()
				t.Fatal("opened a damaged ring")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
}

func setRaw(t *testing.T, db *meta.DB, key string, val []byte) {
	t.Helper()
	if err := db.Update(func(tx *meta.Tx) error { return tx.Set(key, val) }); err != nil {
		t.Fatal(err)
	}
}
