package etsi014client

import (
	"encoding/binary"

	"errors"
	"fmt"
	"hash/crc32"
	"strconv"
	"strings"

	"github.com/qrelay/qrelay/internal/etsi014wire"
	"github.com/qrelay/qrelay/ringstore"
)

// recentMax bounds the key IDs remembered (a variable so that tests can
// lower it).
var recentMax = 1 << 16

// recentIDs remembers the last recentMax key IDs (lower case), and which
// deliver batch each came in: a batch is one metadata record in durable
// mode, forgotten when its last ID is evicted.
type recentIDs struct {
	set  map[string]struct{}
	ring []string
	next int

	batches []batchRef // the batches holding the remembered IDs, oldest first
	seq     uint64     // the next batch's number
}

// batchRef is a batch of IDs of which live are still remembered.
type batchRef struct {
	seq  uint64
	live int
}

func (r *recentIDs) has(id string) bool {
	_, ok := r.set[strings.ToLower(id)]
	return ok
}

// add remembers id, evicting the oldest if recentMax are remembered.
func (r *recentIDs) add(id string) {
	id = strings.ToLower(id)
	if r.set == nil {
		r.set = make(map[string]struct{})
	}
	if len(r.ring) < recentMax {
		r.ring = append(r.ring, id)
	} else {
		delete(r.set, r.ring[r.next])
		r.ring[r.next] = id
		r.next = (r.next + 1) % recentMax
		if len(r.batches) > 0 { // the evicted ID was the oldest batch's
			if r.batches[0].live--; r.batches[0].live == 0 {
				r.batches = r.batches[1:]
			}
		}
	}
	r.set[id] = struct{}{}
}

// addBatch remembers ids as batch r.seq, and advances r.seq.
func (r *recentIDs) addBatch(ids []string) {
	if len(ids) == 0 {
		return
	}
	r.batches = append(r.batches, batchRef{seq: r.seq, live: len(ids)})
	r.seq++
	for _, id := range ids {
		r.add(id)
	}
}

// plan returns the batches that adding n IDs would evict entirely,
// without changing anything.
func (r *recentIDs) plan(n int) (gone []uint64) {
	evict := len(r.ring) + n - recentMax
	for _, b := range r.batches {
		if evict < b.live {
			break
		}
		evict -= b.live
		gone = append(gone, b.seq)
	}
	return gone
}

// The durable record of the recent IDs (Config.Meta) is one metadata
// entry per deliver call (a batch), under
//
//	qkd/etsi014/<name>/<role>/recent/<seq>
//
// where role is "master" or "slave" and seq the batch's number, 16
// lower-case hex digits, so that key order is delivery order. Its value,
// integers big-endian:
//
//	offset   size  field
//	0        4     magic "QE14"
//	4        1     version: 1
//	5        4     n, the number of key IDs (at least 1)
//	9        16×n  the key IDs, each UUID as its 16 bytes
//	9+16×n   4     CRC-32C (Castagnoli) of bytes 0 to 8+16×n
//
// Key IDs only: no key bytes, and nothing computed from them (DESIGN.md,
// invariant 2). A batch is deleted in the transaction that evicts its last
// ID, so the entries hold at most recentMax IDs plus one batch.
const (
	batchMagic   = "QE14"
	batchVersion = 1
	batchHeader  = 9
	maxBatchIDs  = 1 << 24
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// ErrRecord marks a durable record of the client (Config.Meta) that
// cannot be read or does not decode: New refuses to start, since without
// it a key could be delivered twice, and trying again will not help until
// the store is repaired.
var ErrRecord = errors.New("unreadable record of delivered key IDs")

// encodeBatch encodes lower-case UUIDs.
func encodeBatch(ids []string) []byte {
	b := make([]byte, batchHeader+16*len(ids)+4)
	copy(b, batchMagic)
	b[4] = batchVersion
	binary.BigEndian.PutUint32(b[5:], uint32(len(ids)))
	for i, id := range ids {
		uuidBytes(b[batchHeader+16*i:], id)
	}
	binary.BigEndian.PutUint32(b[len(b)-4:], crc32.Checksum(b[:len(b)-4], castagnoli))
	return b
}

// uuidBytes writes the 16 bytes of the valid UUID id to dst.
func uuidBytes(dst []byte, id string) {
	u, _ := etsi014wire.ParseKeyID(id)
	copy(dst, u[:])
}

// uuidString is the canonical (lower-case) text of the UUID in b[:16].
func uuidString(b []byte) string { return etsi014wire.KeyID(b[:16]).String() }

// decodeBatch decodes a batch value, refusing anything but a whole,
// intact version 1 record of distinct IDs.
func decodeBatch(b []byte) ([]string, error) {
	if len(b) < batchHeader+16+4 {
		return nil, fmt.Errorf("%d bytes, want at least %d", len(b), batchHeader+16+4)
	}
	if string(b[:4]) != batchMagic {
		return nil, fmt.Errorf("magic %q, want %q", b[:4], batchMagic)
	}
	if b[4] != batchVersion {
		return nil, fmt.Errorf("version %d, want %d (this build reads version %d only)", b[4], batchVersion, batchVersion)
	}
	n := binary.BigEndian.Uint32(b[5:])
	if n == 0 || n > maxBatchIDs || len(b) != batchHeader+16*int(n)+4 {
		return nil, fmt.Errorf("%d key IDs in %d bytes", n, len(b))
	}
	if got, want := binary.BigEndian.Uint32(b[len(b)-4:]), crc32.Checksum(b[:len(b)-4], castagnoli); got != want {
		return nil, fmt.Errorf("CRC-32C %08x, want %08x: the record is damaged", got, want)
	}
	ids := make([]string, n)
	seen := make(map[string]struct{}, n)
	for i := range ids {
		id := uuidString(b[batchHeader+16*i:])
		if _, dup := seen[id]; dup {
			return nil, fmt.Errorf("key ID %s twice", id)
		}
		seen[id] = struct{}{}
		ids[i] = id
	}
	return ids, nil
}

func (c *Client) recordPrefix() string {
	role := "slave"
	if c.cfg.Master {
		role = "master"
	}
	return "qkd/etsi014/" + c.cfg.Name + "/" + role + "/recent/"
}

func (c *Client) batchKey(seq uint64) string {
	return fmt.Sprintf("%s%016x", c.recordPrefix(), seq)
}

// load reads the recent IDs from cfg.Meta, batch by batch in delivery
// order, so that they are evicted in the order they would have been
// without the restart. Batches left entirely evicted (by a lower bound
// than the one that wrote them) are deleted.
func (c *Client) load() error {
	prefix := c.recordPrefix()
	var loaded []uint64
	err := c.cfg.Meta.Scan(prefix, func(key string, val []byte) error {
		digits := key[len(prefix):]
		seq, err := strconv.ParseUint(digits, 16, 64)
		if err != nil || len(digits) != 16 || strings.ToLower(digits) != digits {
			return fmt.Errorf("metadata record %q: want 16 lower-case hex digits after %q: %w", key, prefix, ErrRecord)
		}
		ids, err := decodeBatch(val)
		if err != nil {
			return fmt.Errorf("metadata record %q: %v: %w", key, err, ErrRecord)
		}
		c.recent.seq = seq
		c.recent.addBatch(ids)
		loaded = append(loaded, seq)
		return nil
	})
	if err != nil {
		if !errors.Is(err, ErrRecord) {
			err = fmt.Errorf("%w: %w", err, ErrRecord)
		}
		return fmt.Errorf("etsi014client: link %s: %w; refusing to start: without the record of recent key IDs a key could be delivered twice", c.cfg.Name, err)
	}
	var stale []uint64
	for _, seq := range loaded {
		if len(c.recent.batches) > 0 && seq >= c.recent.batches[0].seq {
			break
		}
		stale = append(stale, seq)
	}
	if len(stale) > 0 {
		err := c.update(func(tx *ringstore.MetaTx) error {
			for _, seq := range stale {
				if err := tx.Delete(c.batchKey(seq)); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("etsi014client: link %s: deleting %d evicted records of key IDs: %w", c.cfg.Name, len(stale), err)
		}
	}
	if n := len(c.recent.set); n > 0 {
		c.log.Info("ETSI 014 client: recent key IDs loaded; they are refused if the KME hands them out again", "link", c.cfg.Name, "ids", n, "records", len(c.recent.batches))
	}
	return nil
}

// persist records ids (lower case) as the next batch, and deletes the
// batches their addition evicts entirely, in one metadata transaction.
// Without Config.Meta it does nothing.
func (c *Client) persist(ids []string) error {
	if c.cfg.Meta == nil || len(ids) == 0 {
		return nil
	}
	if len(ids) > maxBatchIDs {
		return fmt.Errorf("recording %d key IDs delivered at once: more than %d in one record", len(ids), maxBatchIDs)
	}
	gone := c.recent.plan(len(ids))
	val := encodeBatch(ids)
	key := c.batchKey(c.recent.seq)
	err := c.update(func(tx *ringstore.MetaTx) error {
		if err := tx.Set(key, val); err != nil {
			return err
		}
		for _, seq := range gone {
			if err := tx.Delete(c.batchKey(seq)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("recording the %d key IDs delivered in %q: %w", len(ids), key, err)
	}
	return nil
}
