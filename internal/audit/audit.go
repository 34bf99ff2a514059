// Package audit keeps a node's audit record: every pad range appended,
// used or burnt per KM link and direction, and every batch of end-to-end
// key IDs handed to an SAE, so that afterwards the records of the two
// ends of a link prove that no pad was used twice and show who got which
// keys (DESIGN.md, invariants 1, 2, 5 and 8). CheckLink is that proof.
//
// The recorders (PadAppended, PadUsed, PadBurnt, KeysHanded) sit on the
// relay engine's and the key APIs' hot paths: they take a short lock,
// coalesce a pad range with the previous record of its link, direction
// and kind when it carries on where that one ended (or ends where that
// one starts), and append to a
// buffer; they never wait for storage and, once the buffers have grown,
// never allocate. A flusher writes the buffer every FlushEvery: in
// durable mode in one badger transaction per flush (split only past
// badger's per-transaction limit), in memory mode into a bounded ring of
// the most recent records. Records hold positions and IDs, never key
// bytes nor anything computed from them (invariant 2); see encode.go and
// docs/audit.md for the stored form.
//
// What is not yet flushed when a node dies (at most FlushEvery's worth)
// is lost: the record is evidence, not the mechanism that prevents reuse
// (the durable reservation marks are).
package audit

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/qrelay/qrelay/ringstore"
)

// Defaults of Config.
const (
	DefaultWindow     = 1 << 20
	DefaultRetention  = 7 * 24 * time.Hour
	DefaultFlushEvery = 100 * time.Millisecond
)

// Bounds of what waits to be flushed. A flush is started early when
// flushAt records wait; past maxPending records or maxPendingIDs key IDs
// (the store has stalled), new records are lost, counted and logged.
const (
	flushAt       = 4096
	maxPending    = 1 << 18
	maxPendingIDs = 1 << 20
	// maxRetry bounds the records of failed writes kept for the next
	// flush.
	maxRetry = 1 << 18
)

// Config configures a Log.
type Config struct {
	// Meta is the node's metadata store, for durable mode; nil is memory
	// mode.
	Meta *ringstore.Meta
	// Window is, in memory mode, the most records kept (the oldest go
	// first); DefaultWindow if 0. Durable mode keeps records for
	// Retention instead.
	Window int
	// Retention is, in durable mode, how long records are kept: older
	// ones are deleted in batches. DefaultRetention if 0.
	Retention time.Duration
	// FlushEvery is how often buffered records are written;
	// DefaultFlushEvery if 0.
	FlushEvery time.Duration
	// Now is the clock of record times and retention; time.Now if nil.
	Now func() time.Time
	// Logger gets the log's failures; slog.Default if nil.
	Logger *slog.Logger

	// wrap, in tests, wraps the store (to count transactions).
	wrap func(store) store
}

// store is what a durable Log needs of the metadata store.
type store interface {
	Update(fn func(tx *ringstore.MetaTx) error) error
	Scan(prefix string, fn func(key string, val []byte) error) error
}

// Stats count a Log's work since it was opened.
type Stats struct {
	Records   uint64 // records written (to the store, or to the memory window)
	Coalesced uint64 // pad ranges merged into the record before them
	Flushes   uint64 // flushes that wrote records
	Txns      uint64 // badger transactions of those flushes (durable mode)
	Bytes     uint64 // bytes of encoded records written (memory mode: their encoded size)
	Dropped   uint64 // records pushed out of the memory window by newer ones
	Lost      uint64 // records never kept: buffer full, store failing, or made after Close
	Pruned    uint64 // records deleted after Retention (durable mode)
	Pending   int    // records waiting to be flushed
	Errors    uint64 // failed writes and deletions
}

// coalesceKey is what a pad range must share with the record before it
// to extend it.
type coalesceKey struct {
	peer string
	kind kind
	dir  uint8
	tx   bool
}

// batch is records taken from the buffer by one flush, with the key IDs
// they refer to.
type batch struct {
	recs []rec
	ids  []ringstore.KeyID
}

// Log is a node's audit record. It is safe for concurrent use; a nil
// *Log records nothing.
type Log struct {
	cfg   Config
	db    store // nil in memory mode
	now   func() time.Time
	log   *slog.Logger
	wake  chan struct{}
	stop  chan struct{}
	done  chan struct{}
	close sync.Once

	badDir atomic.Bool // a record with a bad direction was logged

	mu       sync.Mutex // guards the fields below, held briefly by recorders
	pending  []rec
	ids      []ringstore.KeyID // of pending keys records
	spare    batch             // the buffers of the last flush, for the next
	last     map[coalesceKey]int
	seq      uint32
	closed   bool
	stats    Stats
	lostWarn time.Time // when a loss was last logged

	flushMu sync.Mutex // serialises flushes; guards retry, enc, ring
	retry   []batch    // failed writes, oldest first
	enc     []byte

	ringMu sync.RWMutex // guards ring, for queries in memory mode
	ring   [][]rec      // the window, in chunks of ringChunk records
	ringN  int          // records in it
	head   int          // index of the oldest record once it is full
}

// Open starts a Log. In durable mode its flusher first deletes records
// older than Retention, in the background: a node that was down for long
// starts without waiting for that.
func Open(cfg Config) (*Log, error) {
	switch {
	case cfg.Window < 0:
		return nil, fmt.Errorf("audit: window %d: want a positive number of records", cfg.Window)
	case cfg.Retention < 0:
		return nil, fmt.Errorf("audit: retention %v: want a positive duration", cfg.Retention)
	case cfg.FlushEvery < 0:
		return nil, fmt.Errorf("audit: flush interval %v: want a positive duration", cfg.FlushEvery)
	}
	if cfg.Window == 0 {
		cfg.Window = DefaultWindow
	}
	if cfg.Retention == 0 {
		cfg.Retention = DefaultRetention
	}
	if cfg.FlushEvery == 0 {
		cfg.FlushEvery = DefaultFlushEvery
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	l := &Log{
		cfg:  cfg,
		now:  cfg.Now,
		log:  cfg.Logger,
		wake: make(chan struct{}, 1),
		stop: make(chan struct{}),
		done: make(chan struct{}),
		last: map[coalesceKey]int{},
	}
	if cfg.Meta != nil {
		l.db = cfg.Meta
		if cfg.wrap != nil {
			l.db = cfg.wrap(l.db)
		}
	}
	go l.flusher()
	return l, nil
}

// Durable reports whether the log persists its records.
func (l *Log) Durable() bool { return l != nil && l.db != nil }

// pruneEvery is how often a durable log deletes expired records.
func (l *Log) pruneEvery() time.Duration {
	return min(time.Minute, l.cfg.Retention)
}

func (l *Log) flusher() {
	defer close(l.done)
	t := time.NewTicker(l.cfg.FlushEvery)
	defer t.Stop()
	var pruned time.Time
	for {
		if l.db != nil && time.Since(pruned) >= l.pruneEvery() {
			pruned = time.Now()
			l.prune() // failures are counted and logged
		}
		select {
		case <-l.stop:
			return
		case <-t.C:
		case <-l.wake:
		}
		l.Flush() // failures are counted and logged
	}
}

// Close flushes what is buffered, stops the flusher and returns the
// flush's error. Records made after Close are lost (counted). Close does
// not close Meta.
func (l *Log) Close() error {
	if l == nil {
		return nil
	}
	var err error
	l.close.Do(func() {
		close(l.stop)
		<-l.done
		l.mu.Lock()
		l.closed = true
		l.mu.Unlock()
		err = l.Flush()
	})
	return err
}

// PadAppended records that QKD block block (its ID, not its bytes) of
// size bytes was appended at position pos of direction dir (0
// MASTER_TO_SLAVE, 1 SLAVE_TO_MASTER) of the link to peer.
func (l *Log) PadAppended(peer string, dir uint8, pos uint64, size int, block string) {
	if size <= 0 || pos+uint64(size) < pos {
		return
	}
	l.pad(kindAppended, peer, dir, false, pos, pos+uint64(size), block)
}

// PadUsed records that this node sent under pad [pos, end) of direction
// dir of the link to peer (tx), or received and consumed it (!tx). An
// empty range records nothing.
func (l *Log) PadUsed(peer string, dir uint8, tx bool, pos, end uint64) {
	l.pad(kindUsed, peer, dir, tx, pos, end, "")
}

// PadBurnt records that pad [pos, end) of direction dir of the link to
// peer was zeroised without carrying keys, on the tx or rx side, for
// reason: a short constant such as "sync" (the agreement after a
// restart), "gap" (reserved or in flight when a connection was lost) or
// "bad-tag".
func (l *Log) PadBurnt(peer string, dir uint8, tx bool, pos, end uint64, reason string) {
	l.pad(kindBurnt, peer, dir, tx, pos, end, reason)
}

func (l *Log) pad(k kind, peer string, dir uint8, tx bool, pos, end uint64, s string) {
	if l == nil || end <= pos || peer == "" {
		return
	}
	if dir > 1 {
		if !l.badDir.Swap(true) {
			l.log.Error("audit: pad record with a direction that is neither 0 nor 1 dropped (a bug of the caller)", "peer", peer, "dir", dir, "kind", k.public())
		}
		return
	}
	peer, s = cut(peer), cut(s)
	ck := coalesceKey{peer: peer, kind: k, dir: dir, tx: tx}
	l.mu.Lock()
	if k != kindAppended { // each block keeps its own record, with its ID
		if i, ok := l.last[ck]; ok {
			// Either side: streams sending in parallel record their
			// frames' ranges a little out of order.
			if e := &l.pending[i]; e.s1 == s && (e.to == pos || e.from == end) {
				e.from, e.to = min(e.from, pos), max(e.to, end)
				l.stats.Coalesced++
				l.mu.Unlock()
				return
			}
		}
	}
	if !l.roomLocked(0) {
		l.mu.Unlock()
		return
	}
	l.seq++
	l.pending = append(l.pending, rec{time: l.nowNano(), seq: l.seq, kind: k, dir: dir, tx: tx, peer: peer, from: pos, to: end, s1: s})
	if k != kindAppended {
		l.last[ck] = len(l.pending) - 1
	}
	n := len(l.pending)
	l.mu.Unlock()
	if n == flushAt {
		l.kick()
	}
}

// KeysHanded records that the end-to-end keys ids, shared with node
// remote, were handed to SAE sae in role (RoleMaster: enc_keys gave them
// to the master SAE; RoleSlave: dec_keys to the slave; RoleStream: to the
// key stream named sae). One record per call, whatever the number of
// keys (a batch of more than 4,096 takes a record per 4,096). ids is not
// kept.
func (l *Log) KeysHanded(remote, sae, role string, ids []ringstore.KeyID) {
	if l == nil || len(ids) == 0 || remote == "" {
		return
	}
	remote, sae, role = cut(remote), cut(sae), cut(role)
	l.mu.Lock()
	if !l.roomLocked(len(ids)) {
		l.mu.Unlock()
		return
	}
	t := l.nowNano()
	for len(ids) > 0 {
		n := min(len(ids), maxIDsPerRecord)
		off := len(l.ids)
		l.ids = append(l.ids, ids[:n]...)
		l.seq++
		l.pending = append(l.pending, rec{time: t, seq: l.seq, kind: kindKeys, peer: remote, s1: sae, s2: role, ids: l.ids[off : off+n : off+n]})
		ids = ids[n:]
	}
	n := len(l.pending)
	l.mu.Unlock()
	if n >= flushAt {
		l.kick()
	}
}

// roomLocked reports whether a record with ids key IDs may be buffered,
// counting it lost if not.
func (l *Log) roomLocked(ids int) bool {
	if !l.closed && len(l.pending) < maxPending && len(l.ids)+ids <= maxPendingIDs {
		return true
	}
	l.stats.Lost++
	if now := time.Now(); now.Sub(l.lostWarn) >= time.Minute {
		l.lostWarn = now
		why := "the store cannot keep up"
		if l.closed {
			why = "the log is closed"
		}
		l.log.Warn("audit: records lost", "why", why, "lost_total", l.stats.Lost, "pending", len(l.pending))
	}
	return false
}

func (l *Log) nowNano() int64 { return max(0, l.now().UnixNano()) }

func (l *Log) kick() {
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// cut bounds a string a record keeps.
func cut(s string) string {
	if len(s) > maxString {
		return s[:maxString]
	}
	return s
}

// Flush writes every buffered record now. Query flushes first, so a
// caller needs it only to make records durable at a point of its choice.
func (l *Log) Flush() error {
	if l == nil {
		return nil
	}
	l.flushMu.Lock()
	defer l.flushMu.Unlock()
	l.mu.Lock()
	b := batch{recs: l.pending, ids: l.ids}
	l.pending, l.ids = l.spare.recs[:0], l.spare.ids[:0]
	l.spare = batch{}
	clear(l.last)
	l.mu.Unlock()
	if l.db == nil {
		if len(b.recs) > 0 {
			l.toRing(b.recs)
		}
		l.recycle(b)
		return nil
	}
	todo := l.retry
	l.retry = nil
	if len(b.recs) > 0 {
		todo = append(todo, b)
	} else {
		l.recycle(b)
	}
	var err error
	for i, x := range todo {
		var n int
		if n, err = l.write(x.recs); err != nil {
			todo[i].recs = x.recs[n:] // written ones are not written again
			l.keepForRetry(todo[i:])
			break
		}
		if i == len(todo)-1 && len(b.recs) > 0 {
			l.recycle(x) // b: the batches of failed writes are not reused
		}
	}
	if err != nil {
		l.mu.Lock()
		l.stats.Errors++
		l.mu.Unlock()
		l.log.Error("audit: writing records failed; retrying at the next flush", "err", err)
	}
	return err
}

// recycle hands a written batch's buffers back to the recorders.
func (l *Log) recycle(b batch) {
	clear(b.recs) // drop the strings they hold
	l.mu.Lock()
	if cap(b.recs) > cap(l.spare.recs) {
		l.spare = batch{recs: b.recs[:0], ids: b.ids[:0]}
	}
	l.mu.Unlock()
}

// keepForRetry keeps failed batches for the next flush, dropping the
// oldest beyond maxRetry records.
func (l *Log) keepForRetry(bs []batch) {
	n := 0
	for _, b := range bs {
		n += len(b.recs)
	}
	var lost uint64
	for n > maxRetry && len(bs) > 0 {
		n -= len(bs[0].recs)
		lost += uint64(len(bs[0].recs))
		bs = bs[1:]
	}
	l.retry = bs
	if lost > 0 {
		l.mu.Lock()
		l.stats.Lost += lost
		l.mu.Unlock()
		l.log.Error("audit: records lost: the store has failed for too long", "lost", lost)
	}
}

// ringChunk is the number of records the memory window allocates at a
// time: it grows without copying what it holds.
const ringChunk = 4096

// toRing puts records into the memory window.
func (l *Log) toRing(rs []rec) {
	var bytes, dropped uint64
	l.ringMu.Lock()
	for i := range rs {
		e := rs[i]
		if e.ids != nil {
			e.ids = append([]ringstore.KeyID(nil), e.ids...) // the batch's buffer is reused
		}
		bytes += uint64(encodedLen(&e))
		j := l.ringN
		if l.ringN < l.cfg.Window {
			if j/ringChunk == len(l.ring) {
				l.ring = append(l.ring, make([]rec, min(ringChunk, l.cfg.Window-j)))
			}
			l.ringN++
		} else {
			j = l.head
			l.head = (l.head + 1) % l.ringN
			dropped++
		}
		l.ring[j/ringChunk][j%ringChunk] = e
	}
	l.ringMu.Unlock()
	l.mu.Lock()
	l.stats.Records += uint64(len(rs))
	l.stats.Bytes += bytes
	l.stats.Dropped += dropped
	l.stats.Flushes++
	l.mu.Unlock()
}

// ringAt is the i-th oldest record of the memory window.
func (l *Log) ringAt(i int) *rec {
	j := (l.head + i) % l.ringN
	return &l.ring[j/ringChunk][j%ringChunk]
}

// Limits of one badger transaction: badger refuses one whose entries
// exceed 15% of its memtable (ringstore's: 2 MiB, so 307 KiB), counting
// an entry as its key, its value (or, for a value of valueThreshold bytes
// or more, kept in the value log, a 12-byte pointer) and 12 bytes. Should
// badger count otherwise, a transaction it refuses is split where it did.
const (
	txnEntries     = 1000
	txnBytes       = 192 << 10
	valueThreshold = 1 << 10 // ringstore's meta store's
)

// txnSize is what badger counts for an entry.
func txnSize(key, val int) int {
	if val >= valueThreshold {
		val = 12
	}
	return key + val + 12
}

// write stores records in as few transactions as badger allows: one for
// a flush of up to 1,000 records.
func (l *Log) write(rs []rec) (written int, err error) {
	var key []byte
	var txns, bytes uint64
	for len(rs) > 0 {
		n := 0
		err = l.db.Update(func(tx *ringstore.MetaTx) error {
			// badger holds on to the values until the commit: each gets
			// its own bytes of enc, which is reused only after it.
			l.enc = l.enc[:0]
			for size := 0; n < len(rs) && n < txnEntries && size < txnBytes; n++ {
				e := &rs[n]
				start := len(l.enc)
				l.enc = appendRec(l.enc, e)
				key = recKey(key[:0], e.time, e.seq)
				if err := tx.Set(string(key), l.enc[start:len(l.enc):len(l.enc)]); err != nil {
					if n > 0 && errors.Is(err, badger.ErrTxnTooBig) {
						return nil // commit what fits; the rest goes in the next
					}
					return err
				}
				size += txnSize(len(key), len(l.enc)-start)
			}
			return nil
		})
		if err != nil {
			return written, err
		}
		for i := range n {
			bytes += uint64(keyLen + encodedLen(&rs[i]))
		}
		txns++
		written += n
		rs = rs[n:]
		l.mu.Lock()
		l.stats.Records += uint64(n)
		l.mu.Unlock()
	}
	l.mu.Lock()
	l.stats.Txns += txns
	l.stats.Bytes += bytes
	l.stats.Flushes++
	l.mu.Unlock()
	return written, nil
}

// Stats returns the log's counters.
func (l *Log) Stats() Stats {
	if l == nil {
		return Stats{}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.stats
	s.Pending = len(l.pending)
	return s
}
