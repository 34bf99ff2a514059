// Package meta is the metadata store of the key stores: an embedded badger
// database holding cursors, reservation marks, block directories and key
// indexes, never key bytes (badger deletes by tombstone and keeps old values
// on disk until compaction, so it cannot erase a key; see DESIGN.md,
// invariant 2).
//
// Options are tuned for a small, write-mostly metadata set: badger's
// defaults reserve hundreds of megabytes (64 MiB memtables, a 256 MiB block
// cache, 1 GiB value-log files); here every write is a few dozen bytes.
package meta

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"
	"github.com/dgraph-io/ristretto/v2/z"
)

// ErrNotFound is returned by Get for a key that is not there.
var ErrNotFound = errors.New("meta: key not found")

// DB is an open metadata store. It is safe for concurrent use.
type DB struct {
	db  *badger.DB
	dir string
}

// Open opens or creates the store in dir. Every Update is synced to disk
// before it returns.
func Open(dir string) (*DB, error) {
	opts := badger.DefaultOptions(dir).
		WithSyncWrites(true).
		WithLogger(badgerLogger{dir: dir}).
		WithMemTableSize(2 << 20).
		WithNumMemtables(2).
		WithCompression(options.None). // values are tiny; no block cache needed then
		WithBlockCacheSize(0).
		WithIndexCacheSize(0).
		WithBaseTableSize(1 << 20).
		WithValueLogFileSize(8 << 20).
		WithValueThreshold(1 << 10). // metadata values stay in the LSM tree
		WithNumLevelZeroTables(2).
		WithNumLevelZeroTablesStall(4).
		WithNumCompactors(2).
		WithDetectConflicts(false).
		WithCompactL0OnClose(false)
	db, err := badger.Open(opts)
	// badger formats the cause into its message, so errors.Is cannot see it.
	if err != nil && strings.Contains(err.Error(), z.NewFile.Error()) {
		// badger issue #2207: a crash between creating a memtable or value
		// log file and writing to it leaves an empty file, on which Open
		// fails after sizing it. The file holds no data, and a second Open
		// succeeds.
		slog.Info("metadata store: reopening after badger sized an empty file left by a crash (badger issue #2207)", "store", dir)
		db, err = badger.Open(opts)
	}
	if err != nil {
		return nil, fmt.Errorf("opening metadata store %s: %w; if it is damaged, restore it from a backup (starting without it would forget which pad was used)", dir, err)
	}
	return &DB{db: db, dir: dir}, nil
}

// Dir is where the store lives.
func (d *DB) Dir() string { return d.dir }

// Get returns a copy of the value of key, or ErrNotFound.
func (d *DB) Get(key string) ([]byte, error) {
	var val []byte
	err := d.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get([]byte(key))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return ErrNotFound
		}
		if err != nil {
			return err
		}
		val, err = item.ValueCopy(nil)
		return err
	})
	if err != nil && !errors.Is(err, ErrNotFound) {
		return nil, fmt.Errorf("reading %q from metadata store %s: %w", key, d.dir, err)
	}
	return val, err
}

// Tx is one write transaction.
type Tx struct {
	txn    *badger.Txn
	writes int // Sets and Deletes taken, for UpdateSeq
}

// Set stores val under key. badger keeps val until the commit, so the
// caller must not reuse it.
func (t *Tx) Set(key string, val []byte) error {
	if err := t.txn.Set([]byte(key), val); err != nil {
		return err
	}
	t.writes++
	return nil
}

// Delete removes key.
func (t *Tx) Delete(key string) error {
	if err := t.txn.Delete([]byte(key)); err != nil {
		return err
	}
	t.writes++
	return nil
}

// Update applies fn's writes atomically and syncs them to disk before it
// returns: one fsync for everything fn wrote, so callers batch.
func (d *DB) Update(fn func(tx *Tx) error) error {
	err := d.db.Update(func(txn *badger.Txn) error { return fn(&Tx{txn: txn}) })
	if err != nil {
		return fmt.Errorf("writing metadata store %s: %w", d.dir, err)
	}
	return nil
}

// UpdateSeq applies n units of writes in order, unit(tx, i) making the
// i'th, in as many transactions as badger needs: a transaction takes units
// until the next would make it too big (badger refuses one larger than 15%
// of a memtable, about 3,000 small entries with the options above), is
// committed and synced, and the next transaction goes on from there. So a
// crash leaves the units up to some point written and none after it: each
// unit is atomic, the sequence is not. One that fits is one transaction,
// as Update.
//
// unit may be called more than once for the same i (a unit that did not
// fit whole is written again in the next transaction), so it must make the
// same writes each time. committed, if not nil, is called after each commit
// with the number of units written so far; an error from it stops the
// sequence there. UpdateSeq returns that number: n, or fewer with the error
// that stopped it.
func (d *DB) UpdateSeq(n int, unit func(tx *Tx, i int) error, committed func(done int) error) (int, error) {
	done := 0
	for done < n {
		next, err := d.updateSome(done, n, unit)
		if err != nil {
			return done, fmt.Errorf("writing metadata store %s: %w", d.dir, err)
		}
		done = next
		if committed != nil {
			if err := committed(done); err != nil {
				return done, err
			}
		}
	}
	return done, nil
}

// updateSome writes units from from on in one transaction, as many as fit
// whole, commits them and returns where the next transaction starts.
func (d *DB) updateSome(from, n int, unit func(tx *Tx, i int) error) (int, error) {
	txn := d.db.NewTransaction(true)
	defer txn.Discard()
	tx := &Tx{txn: txn}
	i := from
	for ; i < n; i++ {
		before := tx.writes
		err := unit(tx, i)
		if err == nil {
			continue
		}
		if !errors.Is(err, badger.ErrTxnTooBig) || i == from {
			return from, err // a unit too big on its own fails as in Update
		}
		if tx.writes > before {
			// Unit i got in only in part, and badger cannot take writes
			// back: the units before it go alone, in a new transaction.
			txn.Discard()
			return d.updateSome(from, i, unit)
		}
		break
	}
	if err := txn.Commit(); err != nil {
		return from, err
	}
	return i, nil
}

// Scan calls fn for every key with the given prefix, in key order. The
// value is only valid during the call.
func (d *DB) Scan(prefix string, fn func(key string, val []byte) error) error {
	return d.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(prefix), PrefetchValues: false})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			item := it.Item()
			if err := item.Value(func(val []byte) error { return fn(string(item.Key()), val) }); err != nil {
				return err
			}
		}
		return nil
	})
}

// Close flushes and closes the store.
func (d *DB) Close() error {
	if err := d.db.Close(); err != nil {
		return fmt.Errorf("closing metadata store %s: %w", d.dir, err)
	}
	return nil
}

// badgerLogger sends badger's warnings and errors to slog; its info and
// debug chatter is dropped.
type badgerLogger struct{ dir string }

func (l badgerLogger) Errorf(f string, a ...any) {
	slog.Error("badger: "+fmt.Sprintf(f, a...), "store", l.dir)
}
func (l badgerLogger) Warningf(f string, a ...any) {
	slog.Warn("badger: "+fmt.Sprintf(f, a...), "store", l.dir)
}
func (l badgerLogger) Infof(string, ...any)  {}
func (l badgerLogger) Debugf(string, ...any) {}
