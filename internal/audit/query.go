package audit

import (
	"errors"
	"fmt"

	"github.com/qrelay/qrelay/ringstore"
)

// errStop ends a Scan early.
var errStop = errors.New("stop")

// Query returns the records q selects, oldest first, unflushed ones
// included (it flushes first): q.Limit of them, or fewer once they hold
// MaxKeyIDs key IDs. A damaged stored record fails the query
// with an error naming its key.
func (l *Log) Query(q Query) ([]Record, error) {
	if l == nil {
		return nil, errors.New("audit: no audit log")
	}
	if err := q.check(); err != nil {
		return nil, err
	}
	if err := l.Flush(); err != nil {
		return nil, fmt.Errorf("audit: flushing before the query: %w", err)
	}
	if l.db == nil {
		return l.queryRing(q), nil
	}
	return l.queryStore(q)
}

func (l *Log) queryRing(q Query) []Record {
	l.ringMu.RLock()
	defer l.ringMu.RUnlock()
	out := []Record{}
	ids := 0
	for i := range l.ringN {
		e := l.ringAt(i)
		if q.match(e) {
			out = append(out, e.record())
			if ids += len(e.ids); len(out) == q.Limit || ids >= MaxKeyIDs {
				break
			}
		}
	}
	return out
}

func (l *Log) queryStore(q Query) ([]Record, error) {
	out := []Record{}
	ids := 0
	var since int64
	if !q.Since.IsZero() {
		since = max(0, q.Since.UnixNano())
	}
	for _, prefix := range sincePrefixes(since) {
		err := l.db.Scan(prefix, func(key string, val []byte) error {
			e, err := decodeStored(key, val)
			if err != nil {
				return err
			}
			if q.match(&e) {
				out = append(out, e.record())
				if ids += len(e.ids); len(out) == q.Limit || ids >= MaxKeyIDs {
					return errStop
				}
			}
			return nil
		})
		if errors.Is(err, errStop) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("audit: reading records: %w", err)
		}
	}
	return out, nil
}

// decodeStored decodes the record stored under key.
func decodeStored(key string, val []byte) (rec, error) {
	t, ok := keyTime(key)
	if !ok {
		return rec{}, fmt.Errorf("key %q is not an audit record's", key)
	}
	e, err := parseRec(val)
	if err != nil {
		return rec{}, fmt.Errorf("%s: %w", key, err)
	}
	if e.time != t {
		return rec{}, fmt.Errorf("%s: the record's time %d is not its key's: the record is damaged", key, e.time)
	}
	return e, nil
}

// sincePrefixes returns key prefixes that together cover, in key order,
// exactly the records at or after time t (ns): the key of t's own
// nanosecond, then for each hex digit of t from the last to the first,
// the keys agreeing with t before it and greater at it. The metadata
// store scans by prefix only; at most 241 scans find records from any
// time on without reading those before it.
func sincePrefixes(t int64) []string {
	if t <= 0 {
		return []string{keyPrefix}
	}
	h := string(recKey(nil, t, 0)[len(keyPrefix) : len(keyPrefix)+16])
	const hex = "0123456789abcdef"
	out := []string{keyPrefix + h}
	for i := 15; i >= 0; i-- {
		for d := indexHex(h[i]) + 1; d < 16; d++ {
			out = append(out, keyPrefix+h[:i]+hex[d:d+1])
		}
	}
	return out
}

func indexHex(c byte) int {
	if c >= 'a' {
		return int(c-'a') + 10
	}
	return int(c - '0')
}

// Deletion of expired records: at most pruneBatch keys found per scan,
// deleted txnEntries per transaction.
const pruneBatch = 10 * txnEntries

// prune deletes durable records older than Retention, oldest first, in
// batches, until none is left or the log is closing.
func (l *Log) prune() error {
	cutoff := string(recKey(nil, max(0, l.now().Add(-l.cfg.Retention).UnixNano()), 0))
	for {
		var keys []string
		more := false
		err := l.db.Scan(keyPrefix, func(key string, _ []byte) error {
			if key >= cutoff {
				return errStop
			}
			if len(keys) == pruneBatch {
				more = true
				return errStop
			}
			keys = append(keys, key)
			return nil
		})
		if err != nil && !errors.Is(err, errStop) {
			return l.pruneFailed(err)
		}
		for len(keys) > 0 {
			n := min(len(keys), txnEntries)
			err := l.db.Update(func(tx *ringstore.MetaTx) error {
				for _, k := range keys[:n] {
					if err := tx.Delete(k); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				return l.pruneFailed(err)
			}
			l.mu.Lock()
			l.stats.Pruned += uint64(n)
			l.mu.Unlock()
			keys = keys[n:]
		}
		if !more {
			return nil
		}
		select {
		case <-l.stop: // Close waits for the flusher, which prunes
			return nil
		default:
		}
	}
}

func (l *Log) pruneFailed(err error) error {
	l.mu.Lock()
	l.stats.Errors++
	l.mu.Unlock()
	err = fmt.Errorf("audit: deleting records older than %v: %w", l.cfg.Retention, err)
	l.log.Error(err.Error())
	return err
}
