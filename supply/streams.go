package supply

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/qrelay/qrelay/dataplane/frame"
	"github.com/qrelay/qrelay/internal/audit"
	"github.com/qrelay/qrelay/ringstore"
)

// Key streams: a sequence of keys two nodes share, indexed by a number, so
// that the two ends of a tunnel read the same key n from their own node
// with no message between the applications (DESIGN.md, "End-to-end key
// pools and supply"). A WireGuard tunnel's epoch n uses index n.
//
// The stream's owner is the node with the lower ID. It takes keys from its
// out pool for the other node (keys both nodes hold, relayed ahead) and
// tells the other node which key holds which index (STREAM); the other
// node takes those keys out of its in pool, keeps them under the stream
// and acknowledges each index (STREAM_ACK). The owner uses a key only once
// acknowledged, so a key is never used at one end only. Each time an index
// is first asked for, the owner announces again every index it holds from
// there on: a lost message, or the other node restarting, costs a few
// dozen bytes per epoch, not a tunnel. The other node applies an
// announcement idempotently; a different key for an index it holds
// replaces it (the owner restarted and chose again), unless that index
// was served already. An announcement of an index the other node has
// released is answered from the key IDs it used last: held if it is the
// key used, status 3 if not.
//
// Across restarts the two ends agree on each index's key or fail that
// index closed, never two different keys silently: neither end ever
// changes the key of an index it has served. The other node answers a
// new key for an index it served with status 3; the owner, told so, or
// told that an index it served cannot be held (status 1: the other node
// restarted and lost it), fails that index closed, and Key returns an
// error for it (the WireGuard rotator then fails the epoch closed). The
// next index is chosen afresh.
//
// The messages are KEY_STREAM and KEY_STREAM_ACK (dataplane/frame,
// docs/kmlink.md section 10).
//
// Status 0: held. 1: this key cannot be held (the owner chooses another).
// 2: the node serves no such stream with the sender (a config mismatch:
// the owner keeps its keys and announces again later, so it spends none).
// 3: the other node served another key for this index (the owner
// restarted since): the index fails closed at both ends.
const (
	// StreamKeySize is the size of a stream key: a WireGuard PSK, an
	// RFC 8784 PPK.
	StreamKeySize = 32
	// streamResend is how often a waiting owner announces again.
	streamResend = 250 * time.Millisecond
	// usedKept is how many released indices the other node remembers
	// the key IDs of (16 bytes each).
	usedKept = 64
)

// streamAhead is how many indices the owner of a stream keeps assigned
// ahead of the one asked for: ten seconds' worth and at least four, so a
// short outage of the route between the nodes costs no epoch.
func streamAhead(interval time.Duration) int {
	return max(4, int((10*time.Second+interval-1)/interval)+1)
}

// streamKey is the key of one index.
type streamKey struct {
	id     ringstore.KeyID
	key    [StreamKeySize]byte
	acked  bool // owner: the other node holds it too
	served bool // handed out by Key: its index never changes key
}

// KeyStream is one key stream of this node, shared with one other node.
type KeyStream struct {
	svc    *Service
	name   string
	remote string
	owner  bool
	ahead  int // indices the owner keeps assigned from the one asked for

	mu     sync.Mutex
	keys   map[uint64]*streamKey
	failed map[uint64]string // owner: indices failed closed, and why
	floor  uint64            // indices below are released
	// used (other node) holds the key IDs of the indices released last,
	// usedKept of them, so that an announcement of one (the owner is
	// late, or restarted and chose again) is answered by what was used.
	used    map[uint64]ringstore.KeyID
	asked   uint64        // highest index asked for + 1 (owner: announced from)
	changed chan struct{} // closed and replaced when keys change
	stats   StreamStats

	warnedUnknown bool
}

// StreamStats are a stream's counters.
type StreamStats struct {
	Held             int    // indices held
	Served, Released uint64 // keys handed out (by index), zeroised
	Refused          uint64 // indices the other node refused (owner) or could not take (other)
}

func newKeyStream(svc *Service, name, remote string, ahead int) *KeyStream {
	return &KeyStream{
		svc: svc, name: name, remote: remote, owner: svc.cfg.NodeID < remote, ahead: ahead,
		keys: map[uint64]*streamKey{}, failed: map[uint64]string{}, used: map[uint64]ringstore.KeyID{}, changed: make(chan struct{}),
	}
}

// Owner says whether this node owns the stream (it has the lower node
// ID): the owner chooses the keys, and drives a tunnel's handshake.
func (s *KeyStream) Owner() bool { return s.owner }

// Name is the stream's name; Remote the node it is shared with.
func (s *KeyStream) Name() string   { return s.name }
func (s *KeyStream) Remote() string { return s.remote }

// Stats returns the stream's counters.
func (s *KeyStream) Stats() StreamStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stats
	st.Held = len(s.keys)
	return st
}

// notifyLocked wakes those waiting for a key.
func (s *KeyStream) notifyLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// Key returns the key of index, waiting until both nodes hold it or ctx
// ends. The caller owns the copy and should clear it when done.
func (s *KeyStream) Key(ctx context.Context, index uint64) ([StreamKeySize]byte, error) {
	for retry := false; ; retry = true {
		s.mu.Lock()
		if floor := s.floor; index < floor {
			s.mu.Unlock()
			return [StreamKeySize]byte{}, fmt.Errorf("stream %s: index %d was released (the stream is at %d)", s.name, index, floor)
		}
		if why, ok := s.failed[index]; ok {
			s.mu.Unlock()
			return [StreamKeySize]byte{}, fmt.Errorf("stream %s: index %d failed closed: %s", s.name, index, why)
		}
		k := s.keys[index]
		ready := k != nil && (k.acked || !s.owner)
		var msg []byte
		var err error
		if s.owner && (retry || index >= s.asked) {
			// The first ask of a new index tops the window up and
			// announces all of it; a waiting caller announces what is
			// unacknowledged every streamResend.
			msg, err = s.announceLocked(index, !retry)
		}
		var key [StreamKeySize]byte
		if ready {
			s.stats.Served++
			k.served = true
			key = k.key
		}
		ch := s.changed
		s.mu.Unlock()
		if err == nil && msg != nil {
			err = s.svc.cfg.SendRouted(s.remote, uint16(frame.KindKeyStream), msg)
		}
		if err != nil {
			s.svc.log.Debug("stream announcement incomplete", "stream", s.name, "remote", s.remote, "index", index, "err", err)
		}
		if ready {
			return key, nil
		}
		t := time.NewTimer(streamResend)
		select {
		case <-ch:
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return [StreamKeySize]byte{}, fmt.Errorf("stream %s: key %d from node %s not ready: %w", s.name, index, s.remote, ctx.Err())
		}
		t.Stop()
	}
}

// announceLocked (owner) assigns keys to [index, index+ahead) where none
// is, and returns the STREAM message announcing what it holds from index
// on (all of it when full, else only what is unacknowledged).
func (s *KeyStream) announceLocked(index uint64, full bool) ([]byte, error) {
	var missing []uint64
	for i := index; i < index+uint64(s.ahead); i++ {
		if _, failed := s.failed[i]; s.keys[i] == nil && !failed {
			missing = append(missing, i)
		}
	}
	var takeErr error
	if len(missing) > 0 && !s.svc.syncer.poolsAgreed(s.remote) {
		// Until the two nodes' pools are reconciled after a restart of
		// either, the out pool may hold keys the other node lost: each
		// would be refused, and another taken at once.
		takeErr = fmt.Errorf("the key pools shared with node %s are being reconciled after a restart", s.remote)
		missing = nil
	}
	if len(missing) > 0 {
		p, err := s.svc.sink.pool(s.remote, RoleOut)
		if err == nil {
			var keys []ringstore.Key
			// The master names the stream in the pool's records; the
			// other node's copies stay unassigned until STREAM takes them.
			keys, err = p.TakeNextFree(len(missing), Assignment{Master: "stream:" + s.name}.Owner())
			if err == nil {
				if len(keys[0].Bytes) < StreamKeySize {
					err = fmt.Errorf("pool keys of %d bytes: a stream key needs %d (pools.slot_size)", len(keys[0].Bytes), StreamKeySize)
				}
				var ids []ringstore.KeyID
				for i, k := range keys {
					if err == nil {
						sk := &streamKey{id: k.ID}
						copy(sk.key[:], k.Bytes)
						s.keys[missing[i]] = sk
						ids = append(ids, k.ID)
					}
					clear(k.Bytes)
				}
				s.svc.took(s.remote, len(keys))
				s.svc.audit.KeysHanded(s.remote, s.name, audit.RoleStream, ids)
			}
		}
		if errors.Is(err, ringstore.ErrPoolEmpty) {
			s.svc.wakeFiller(s.remote)
			err = fmt.Errorf("the key pool for node %s is empty: it is being refilled by relay", s.remote)
		}
		takeErr = err
	}
	s.asked = max(s.asked, index+1)
	var es []frame.KeyStreamEntry
	for i, k := range s.keys {
		if i >= index && (full || !k.acked) && len(es) < frame.MaxKeyStreamEntries {
			es = append(es, frame.KeyStreamEntry{Index: i, Key: k.id})
		}
	}
	if len(es) == 0 {
		return nil, takeErr
	}
	slices.SortFunc(es, func(a, b frame.KeyStreamEntry) int { return cmp.Compare(a.Index, b.Index) })
	msg, err := frame.AppendKeyStream(nil, &frame.KeyStream{Name: s.name, Entries: es})
	if err != nil {
		return nil, err
	}
	return msg, takeErr
}

// apply (other node) takes the announced keys out of the in pool and
// returns the acknowledgements.
func (s *KeyStream) apply(es []frame.KeyStreamEntry) []frame.KeyStreamAckEntry {
	p, perr := s.svc.sink.pool(s.remote, RoleIn)
	acks := make([]frame.KeyStreamAckEntry, 0, len(es))
	var held []ringstore.KeyID // taken out of the pool for the stream
	s.mu.Lock()
	defer s.mu.Unlock()
	defer func() { s.svc.audit.KeysHanded(s.remote, s.name, audit.RoleStream, held) }()
	for _, e := range es {
		ack := frame.KeyStreamAckEntry{Index: e.Index}
		switch k := s.keys[e.Index]; {
		case e.Index < s.floor:
			// Released here: held if it is the key used, else the
			// owner chose again after a restart, and fails the index
			// closed.
			switch id, ok := s.used[e.Index]; {
			case ok && id == e.Key:
			case ok:
				ack = frame.KeyStreamAckEntry{Index: e.Index, Status: frame.KeyStreamServed, Msg: fmt.Sprintf("index %d was used with key %s and released", e.Index, id)}
			default:
				ack = frame.KeyStreamAckEntry{Index: e.Index, Status: frame.KeyStreamServed, Msg: fmt.Sprintf("index %d was released (the stream is at %d)", e.Index, s.floor)}
			}
		case k != nil && k.id == e.Key:
			// Held already (a repeated announcement).
		case k != nil && k.served:
			// The owner chose again after a restart, but this index's
			// key is in use here: keep it, and the owner fails the
			// index closed.
			ack = frame.KeyStreamAckEntry{Index: e.Index, Status: frame.KeyStreamServed, Msg: fmt.Sprintf("index %d was served with key %s already", e.Index, k.id)}
		case perr != nil:
			ack = frame.KeyStreamAckEntry{Index: e.Index, Status: frame.KeyStreamKeyRefused, Msg: perr.Error()}
		default:
			// Only keys nobody was assigned: a stream message cannot
			// take an SAE's keys.
			keys, err := p.TakeByIDsIf([]ringstore.KeyID{e.Key}, func(_ ringstore.KeyID, o ringstore.Owner) error {
				if o == "" {
					return nil
				}
				if a, err := assignmentOf(o); err == nil {
					return fmt.Errorf("key %s is assigned to SAE %s", e.Key, a.Master)
				}
				return fmt.Errorf("key %s has an owner", e.Key)
			})
			if err == nil && len(keys[0].Bytes) < StreamKeySize {
				err = fmt.Errorf("key %s has %d bytes: a stream key needs %d", e.Key, len(keys[0].Bytes), StreamKeySize)
			}
			if err != nil {
				for _, k := range keys {
					clear(k.Bytes)
				}
				s.stats.Refused++
				ack = frame.KeyStreamAckEntry{Index: e.Index, Status: frame.KeyStreamKeyRefused, Msg: err.Error()}
				break
			}
			sk := &streamKey{id: e.Key, acked: true}
			copy(sk.key[:], keys[0].Bytes)
			clear(keys[0].Bytes)
			if k != nil {
				clear(k.key[:]) // the owner chose again
			}
			s.keys[e.Index] = sk
			held = append(held, e.Key)
		}
		acks = append(acks, ack)
	}
	s.notifyLocked()
	return acks
}

// acked (owner) records the other node's acknowledgements.
func (s *KeyStream) acked(acks []frame.KeyStreamAckEntry) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, a := range acks {
		k := s.keys[a.Index]
		if k == nil {
			continue
		}
		switch a.Status {
		case frame.KeyStreamHeld:
			k.acked = true
			continue
		case frame.KeyStreamUnknown:
			// Keep the key: the other node's config may yet list the
			// stream (the announcement repeats every epoch).
			if !s.warnedUnknown {
				s.warnedUnknown = true
				s.svc.log.Error("the other node serves no such stream: check both nodes list the tunnel under the same name", "stream", s.name, "remote", s.remote, "reason", a.Msg)
			}
			continue
		}
		if a.Status == frame.KeyStreamServed || k.served {
			// Another key for this index is in use at the other end,
			// or this one is in use here and the other end lost it.
			why := fmt.Sprintf("the two nodes hold different keys for it after a restart (%s)", a.Msg)
			s.svc.log.Error("stream index failed closed", "stream", s.name, "remote", s.remote, "index", a.Index, "reason", a.Msg)
			s.failed[a.Index] = why
			s.stats.Refused++
			clear(k.key[:])
			delete(s.keys, a.Index)
			continue
		}
		// The other node cannot hold this key: choose another.
		s.svc.log.Warn("stream key refused by the other node; choosing another", "stream", s.name, "remote", s.remote, "index", a.Index, "reason", a.Msg)
		s.stats.Refused++
		clear(k.key[:])
		delete(s.keys, a.Index)
	}
	s.notifyLocked()
}

// Release zeroises the keys of indices below index: they will not be
// asked for again.
func (s *KeyStream) Release(below uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if below <= s.floor {
		return
	}
	s.floor = below
	for i := range s.failed {
		if i < below {
			delete(s.failed, i)
		}
	}
	for i, k := range s.keys {
		if i < below {
			if !s.owner {
				s.used[i] = k.id
			}
			clear(k.key[:])
			delete(s.keys, i)
			s.stats.Released++
		}
	}
	for i := range s.used {
		if i+usedKept < below {
			delete(s.used, i)
		}
	}
}

// peerRestarted (owner) forgets which unserved indices the other node
// acknowledged: it restarted, and may have lost them. Each is announced
// again before use, and replaced if refused; served ones fail closed if
// refused (see the top of this file).
func (s *KeyStream) peerRestarted() {
	if !s.owner {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, k := range s.keys {
		if !k.served {
			k.acked = false
		}
	}
}

// close zeroises every key.
func (s *KeyStream) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, k := range s.keys {
		clear(k.key[:])
		delete(s.keys, i)
	}
}

// handleStream handles a KEY_STREAM or KEY_STREAM_ACK from node src.
func (svc *Service) handleStream(src string, kind frame.Kind, payload []byte) {
	if kind == frame.KindKeyStream {
		m, err := frame.ParseKeyStream(payload)
		if err != nil {
			svc.log.Warn("malformed stream message dropped", "src", src, "err", err)
			return
		}
		s := svc.streams[m.Name]
		ack := frame.KeyStreamAck{Name: m.Name}
		switch {
		case s == nil || s.remote != src:
			ack.Acks = refuseAll(m.Entries, fmt.Sprintf("node %s has no stream %q shared with node %s (wireguard: lists none)", svc.cfg.NodeID, m.Name, src))
		case s.owner:
			ack.Acks = refuseAll(m.Entries, fmt.Sprintf("node %s owns stream %q (the lower node ID does)", svc.cfg.NodeID, m.Name))
		default:
			ack.Acks = s.apply(m.Entries)
		}
		b, err := frame.AppendKeyStreamAck(nil, &ack)
		if err == nil {
			err = svc.cfg.SendRouted(src, uint16(frame.KindKeyStreamAck), b)
		}
		if err != nil {
			svc.log.Debug("stream acknowledgement not sent; the owner announces again", "stream", m.Name, "dst", src, "err", err)
		}
		return
	}
	m, err := frame.ParseKeyStreamAck(payload)
	if err != nil {
		svc.log.Warn("malformed stream acknowledgement dropped", "src", src, "err", err)
		return
	}
	if s := svc.streams[m.Name]; s != nil && s.owner && s.remote == src {
		s.acked(m.Acks)
	}
}

func refuseAll(es []frame.KeyStreamEntry, msg string) []frame.KeyStreamAckEntry {
	acks := make([]frame.KeyStreamAckEntry, len(es))
	for i, e := range es {
		acks[i] = frame.KeyStreamAckEntry{Index: e.Index, Status: frame.KeyStreamUnknown, Msg: msg}
	}
	return acks
}
