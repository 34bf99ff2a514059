package meta

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/dgraph-io/badger/v4"
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

// TestUpdateSeq writes more units than one transaction takes, two writes
// each, so that some unit meets the limit between its writes and has to be
// written again whole in the next transaction; every write must land once,
// in order of units, and a unit too big on its own must fail.
func TestUpdateSeq(t *testing.T) {
	db, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	const n = 10000
	calls := make([]int, n)
	var commits []int
	done, err := db.UpdateSeq(n, func(tx *Tx, i int) error {
		calls[i]++
		if err := tx.Set(fmt.Sprintf("k/%06d/a", i), []byte("x")); err != nil {
			return err
		}
		return tx.Set(fmt.Sprintf("k/%06d/b", i), []byte("y"))
	}, func(done int) error { commits = append(commits, done); return nil })
	if err != nil || done != n {
		t.Fatalf("UpdateSeq = %d, %v; want %d, nil", done, err, n)
	}
	if len(commits) < 2 || !slices.IsSorted(commits) || commits[len(commits)-1] != n {
		t.Fatalf("commits after units %v: want several, growing, the last at %d", commits, n)
	}
	// badger takes fewer than 4,000 entries per transaction with these
	// options, an odd number: a two-write unit straddles each limit.
	if !slices.ContainsFunc(calls, func(c int) bool { return c > 1 }) {
		t.Fatal("no unit was written again: the case of a unit split by the limit was not reached")
	}
	var keys int
	if err := db.Scan("k/", func(string, []byte) error { keys++; return nil }); err != nil {
		t.Fatal(err)
	}
	if keys != 2*n {
		t.Fatalf("%d keys written, want %d", keys, 2*n)
	}

	done, err = db.UpdateSeq(3, func(tx *Tx, i int) error {
		for j := range 1 + i*5000 { // unit 1 alone is too big
			if err := tx.Set(fmt.Sprintf("big/%d/%d", i, j), []byte("z")); err != nil {
				return err
			}
		}
		return nil
	}, nil)
	if done != 1 || !errors.Is(err, badger.ErrTxnTooBig) {
		t.Fatalf("UpdateSeq with a unit too big on its own = %d, %v; want 1, ErrTxnTooBig", done, err)
	}
}
