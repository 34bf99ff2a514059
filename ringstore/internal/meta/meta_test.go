package meta

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestRoundTrip(t *testing.T) {
	dir := t.TempDir()
	db, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *Tx) error {
		if err := tx.Set("pad/a/state", []byte("one")); err != nil {
			return err
		}
		if err := tx.Set("pad/a/blk/1", []byte("x")); err != nil {
			return err
		}
		return tx.Set("pad/b/state", []byte("two"))
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *Tx) error { return tx.Delete("pad/a/blk/1") }); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db, err = Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if v, err := db.Get("pad/a/state"); err != nil || string(v) != "one" {
		t.Fatalf("Get after reopen = %q, %v", v, err)
	}
	if _, err := db.Get("pad/a/blk/1"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("deleted key: %v, want ErrNotFound", err)
	}
	var keys []string
	if err := db.Scan("pad/a/", func(k string, _ []byte) error { keys = append(keys, k); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(keys) != 1 || keys[0] != "pad/a/state" {
		t.Fatalf("Scan(pad/a/) = %q", keys)
	}
}

// TestOpenAfterCrashLeftEmptyMemtable reproduces badger issue #2207: an
// empty memtable file, as a crash right after creating it leaves, must not
// stop the store from opening.
func TestOpenAfterCrashLeftEmptyMemtable(t *testing.T) {
	dir := t.TempDir()
	db, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *Tx) error { return tx.Set("k", []byte("v")) }); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "00099.mem"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	db, err = Open(dir)
	if err != nil {
		t.Fatalf("Open with an empty memtable file left by a crash: %v", err)
	}
	defer db.Close()
	if v, err := db.Get("k"); err != nil || string(v) != "v" {
		t.Fatalf("Get = %q, %v", v, err)
	}
}
