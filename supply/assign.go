package supply

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/qrelay/qrelay/ringstore"
)

// Key assignment: when a master SAE takes keys from this node's out pool
// for node r (enc_keys), this node tells r which SAEs may fetch them, and
// answers the SAE only once r has recorded that (persisted, in durable
// mode), so the slave's dec_keys never races the assignment (DESIGN.md,
// "End-to-end key pools and supply"). The messages travel as routed
// control messages (relay.Engine.SendRouted). Assignments to one node are
// batched: while one message is being written the next requests queue,
// and go out together, so a busy API costs one message per batch, not per
// request.
//
// ASSIGN (kind kindAssign), all integers big-endian:
//
//	version u8 (1) | count u16 | count × assignment
//	assignment: request ID u64 | master SAE (u8 length, bytes) |
//	            slave count u8 | slaves (u8 length, bytes each) |
//	            key count u16 | key IDs (16 bytes each)
//
// ASSIGN_ACK (kind kindAssignAck):
//
//	version u8 (1) | count u16 | count × (request ID u64 | status u8 (0 ok) |
//	                 message length u16 | message)
//
// ASSIGN_CANCEL (kind kindAssignCancel): the master's node gave up on an
// assignment (no acknowledgement in time) and discarded its keys; the
// slave's node discards its copies too, assigned or not, so that they do
// not fill its pool until their TTL. Nobody can have fetched them: the
// master's node never handed their IDs to an SAE. Best effort (a lost
// cancel leaves the keys to the TTL); unknown IDs are skipped.
//
//	version u8 (1) | count u16 | count × key ID (16 bytes)
const (
	kindAssign       uint16 = 32
	kindAssignAck    uint16 = 33
	kindAssignCancel uint16 = 36
	assignVersion           = 1
	// maxAssignMsg bounds one ASSIGN message; more waits for the next.
	maxAssignMsg = 48 << 10
)

type assignment struct {
	id     uint64
	master string
	slaves []string
	keys   []ringstore.KeyID
}

type assignAck struct {
	id  uint64
	ok  bool
	msg string
}

func (a *assignment) encodedLen() int {
	n := 8 + 1 + len(a.master) + 1 + 2 + 16*len(a.keys)
	for _, s := range a.slaves {
		n += 1 + len(s)
	}
	return n
}

func appendAssignments(b []byte, as []*assignment) []byte {
	b = append(b, assignVersion)
	b = binary.BigEndian.AppendUint16(b, uint16(len(as)))
	for _, a := range as {
		b = binary.BigEndian.AppendUint64(b, a.id)
		b = append(b, byte(len(a.master)))
		b = append(b, a.master...)
		b = append(b, byte(len(a.slaves)))
		for _, s := range a.slaves {
			b = append(b, byte(len(s)))
			b = append(b, s...)
		}
		b = binary.BigEndian.AppendUint16(b, uint16(len(a.keys)))
		for _, k := range a.keys {
			b = append(b, k[:]...)
		}
	}
	return b
}

// wireReader reads the fields of a message, remembering the first error.
type wireReader struct {
	b   []byte
	off int
	err error
}

func (r *wireReader) need(n int, field string) bool {
	if r.err == nil && r.off+n > len(r.b) {
		r.err = fmt.Errorf("%s at offset %d: message ends at %d", field, r.off, len(r.b))
	}
	return r.err == nil
}

func (r *wireReader) u8(field string) int {
	if !r.need(1, field) {
		return 0
	}
	r.off++
	return int(r.b[r.off-1])
}

func (r *wireReader) u16(field string) int {
	if !r.need(2, field) {
		return 0
	}
	r.off += 2
	return int(binary.BigEndian.Uint16(r.b[r.off-2:]))
}

func (r *wireReader) u32(field string) uint32 {
	if !r.need(4, field) {
		return 0
	}
	r.off += 4
	return binary.BigEndian.Uint32(r.b[r.off-4:])
}

func (r *wireReader) u64(field string) uint64 {
	if !r.need(8, field) {
		return 0
	}
	r.off += 8
	return binary.BigEndian.Uint64(r.b[r.off-8:])
}

func (r *wireReader) bytes(n int, field string) []byte {
	if !r.need(n, field) {
		return nil
	}
	r.off += n
	return r.b[r.off-n : r.off]
}

func (r *wireReader) str(field string) string {
	n := r.u8(field + " length")
	if r.err == nil && n == 0 {
		r.err = fmt.Errorf("%s at offset %d is empty", field, r.off-1)
	}
	return string(r.bytes(n, field))
}

func (r *wireReader) header(kind string) int {
	if v := r.u8(kind + " version"); r.err == nil && v != assignVersion {
		r.err = fmt.Errorf("%s version %d: want %d", kind, v, assignVersion)
	}
	return r.u16(kind + " count")
}

func (r *wireReader) end(kind string) error {
	if r.err == nil && r.off != len(r.b) {
		r.err = fmt.Errorf("%s: %d bytes after the last entry", kind, len(r.b)-r.off)
	}
	if r.err != nil {
		return fmt.Errorf("%s: %w", kind, r.err)
	}
	return nil
}

func parseAssignments(b []byte) ([]*assignment, error) {
	r := &wireReader{b: b}
	n := r.header("ASSIGN")
	var out []*assignment
	for i := 0; i < n && r.err == nil; i++ {
		a := &assignment{id: r.u64("request ID"), master: r.str("master SAE")}
		for range r.u8("slave count") {
			a.slaves = append(a.slaves, r.str("slave SAE"))
		}
		k := r.u16("key count")
		raw := r.bytes(16*k, "key IDs")
		for j := range k {
			if r.err == nil {
				a.keys = append(a.keys, ringstore.KeyID(raw[16*j:16*j+16]))
			}
		}
		out = append(out, a)
	}
	return out, r.end("ASSIGN")
}

func appendCancel(b []byte, ids []ringstore.KeyID) []byte {
	b = append(b, assignVersion)
	b = binary.BigEndian.AppendUint16(b, uint16(len(ids)))
	for _, id := range ids {
		b = append(b, id[:]...)
	}
	return b
}

func parseCancel(b []byte) ([]ringstore.KeyID, error) {
	r := &wireReader{b: b}
	n := r.header("ASSIGN_CANCEL")
	if r.err == nil && n > ringstore.MaxBatch {
		r.err = fmt.Errorf("ASSIGN_CANCEL count %d: at most %d", n, ringstore.MaxBatch)
	}
	raw := r.bytes(16*n, "key IDs")
	var ids []ringstore.KeyID
	for i := 0; i < n && r.err == nil; i++ {
		ids = append(ids, ringstore.KeyID(raw[16*i:16*i+16]))
	}
	return ids, r.end("ASSIGN_CANCEL")
}

func appendAcks(b []byte, acks []assignAck) []byte {
	b = append(b, assignVersion)
	b = binary.BigEndian.AppendUint16(b, uint16(len(acks)))
	for _, a := range acks {
		b = binary.BigEndian.AppendUint64(b, a.id)
		st := byte(1)
		if a.ok {
			st = 0
		}
		b = append(b, st)
		msg := a.msg[:min(len(a.msg), 1024)]
		b = binary.BigEndian.AppendUint16(b, uint16(len(msg)))
		b = append(b, msg...)
	}
	return b
}

func parseAcks(b []byte) ([]assignAck, error) {
	r := &wireReader{b: b}
	n := r.header("ASSIGN_ACK")
	var out []assignAck
	for i := 0; i < n && r.err == nil; i++ {
		a := assignAck{id: r.u64("request ID")}
		a.ok = r.u8("status") == 0
		a.msg = string(r.bytes(r.u16("message length"), "message"))
		out = append(out, a)
	}
	return out, r.end("ASSIGN_ACK")
}

// assigner sends this node's assignments and applies those sent to it.
type assigner struct {
	svc *Service

	mu      sync.Mutex
	nextID  uint64
	waiting map[uint64]chan error
	queues  map[string]*assignQueue // by destination node

	inbox chan routedMsg
}

// assignQueue holds the assignments waiting to go to one node. One
// message is in flight at a time: the requests that arrive meanwhile go
// out together when its acknowledgement comes back, so under load a
// message carries about (requests per second × round trip) assignments,
// and at low load a request waits for nobody.
type assignQueue struct {
	q     chan *assignment
	acked chan struct{}
}

type routedMsg struct {
	src     string
	kind    uint16
	payload []byte
}

func newAssigner(svc *Service) *assigner {
	return &assigner{svc: svc, waiting: map[uint64]chan error{}, queues: map[string]*assignQueue{}, inbox: make(chan routedMsg, 256)}
}

// start runs the worker that applies incoming assignments: off the KM
// link's reader, since a durable pool syncs each one to disk.
func (as *assigner) start() {
	as.svc.wg.Add(1)
	go func() {
		defer as.svc.wg.Done()
		for {
			select {
			case <-as.svc.ctx.Done():
				return
			case m := <-as.inbox:
				as.handle(m)
			}
		}
	}()
}

// routed is the relay engine's Routed hook.
func (as *assigner) routed(src string, kind uint16, payload []byte) {
	select {
	case as.inbox <- routedMsg{src, kind, slices.Clone(payload)}:
	case <-as.svc.ctx.Done():
	}
}

func (as *assigner) handle(m routedMsg) {
	switch m.kind {
	case kindAssign:
		as.apply(m.src, m.payload)
	case kindAssignAck:
		acks, err := parseAcks(m.payload)
		if err != nil {
			as.svc.log.Warn("malformed assignment acknowledgement dropped", "src", m.src, "err", err)
			return
		}
		as.mu.Lock()
		for _, a := range acks {
			if ch := as.waiting[a.id]; ch != nil {
				delete(as.waiting, a.id)
				var err error
				if !a.ok {
					err = fmt.Errorf("node %s refused the assignment: %s", m.src, a.msg)
				}
				ch <- err
			}
		}
		if q := as.queues[m.src]; q != nil {
			select {
			case q.acked <- struct{}{}:
			default:
			}
		}
		as.mu.Unlock()
	case kindAssignCancel:
		as.applyCancel(m.src, m.payload)
	case kindStream, kindStreamAck:
		as.svc.handleStream(m.src, m.kind, m.payload)
	case kindPoolHello, kindPoolSyncReq, kindPoolReady, kindPoolInvReq, kindPoolInv, kindPoolDrop, kindPoolDropAck:
		as.svc.syncer.routed(m)
	default:
		as.svc.log.Warn("routed message of unknown kind dropped", "src", m.src, "kind", m.kind)
	}
}

// apply records the assignments node src sent and acknowledges each.
func (as *assigner) apply(src string, payload []byte) {
	svc := as.svc
	list, err := parseAssignments(payload)
	if err != nil {
		// Without request IDs nothing can be acknowledged: the sender's
		// requests time out and their keys are discarded there.
		svc.log.Warn("malformed assignment message dropped", "src", src, "err", err)
		return
	}
	acks := make([]assignAck, 0, len(list))
	for _, a := range list {
		err := as.check(src, a)
		if err == nil {
			var p *ringstore.Pool
			if p, err = svc.sink.pool(src, RoleIn); err == nil {
				err = p.Assign(a.keys, ringstore.Assignment{Master: a.master, Slaves: a.slaves})
			}
		}
		ack := assignAck{id: a.id, ok: err == nil}
		if err != nil {
			ack.msg = err.Error()
			svc.log.Warn("assignment refused", "src", src, "master", a.master, "slaves", a.slaves, "keys", len(a.keys), "err", err)
		}
		acks = append(acks, ack)
	}
	if err := svc.cfg.SendRouted(src, kindAssignAck, appendAcks(nil, acks)); err != nil {
		svc.log.Warn("assignment acknowledgement not sent; the master's node will time out and discard the keys", "dst", src, "err", err)
	}
}

// cancel tells node dst that the keys ids, assigned to it or on their
// way, were discarded here (see ASSIGN_CANCEL).
func (as *assigner) cancel(dst string, ids []ringstore.KeyID) {
	for len(ids) > 0 {
		chunk := ids[:min(len(ids), ringstore.MaxBatch)]
		ids = ids[len(chunk):]
		if err := as.svc.cfg.SendRouted(dst, kindAssignCancel, appendCancel(nil, chunk)); err != nil {
			as.svc.log.Warn("assignment cancel not sent; node dst keeps the keys until their TTL", "dst", dst, "keys", len(chunk), "err", err)
		}
	}
}

// applyCancel discards the keys node src cancelled from src's in pool:
// those still unfetched, unassigned or assigned to a master src serves.
func (as *assigner) applyCancel(src string, payload []byte) {
	svc := as.svc
	ids, err := parseCancel(payload)
	if err != nil {
		svc.log.Warn("malformed assignment cancel dropped", "src", src, "err", err)
		return
	}
	p, err := svc.sink.pool(src, RoleIn)
	if err != nil {
		svc.log.Warn("assignment cancel not applied", "src", src, "err", err)
		return
	}
	// One removal (one metadata transaction in durable mode) for the
	// whole message: this worker also applies ASSIGNs, which must not
	// wait behind a sync per key.
	dropped, err := p.Discard(ids, func(id ringstore.KeyID, a ringstore.Assignment) error {
		if node, ok := svc.saeNode(a.Master); a.Master != "" && (!ok || node != src) {
			return fmt.Errorf("key %s is assigned to master SAE %q, not one of node %s", id, a.Master, src)
		}
		return nil
	})
	if err != nil {
		svc.log.Warn("assignment cancel not applied", "src", src, "err", err)
		return
	}
	svc.log.Info("keys of a cancelled assignment discarded", "src", src, "keys", dropped, "cancelled", len(ids))
}

// check refuses an assignment that node src may not make: its master SAE
// must be one src serves, and its slaves this node's.
func (as *assigner) check(src string, a *assignment) error {
	svc := as.svc
	if node, ok := svc.saeNode(a.master); !ok || node != src {
		return fmt.Errorf("master SAE %q is not served by node %s (per this node's saes:)", a.master, src)
	}
	if len(a.slaves) == 0 {
		return errors.New("no slave SAE named")
	}
	for _, s := range a.slaves {
		if node, ok := svc.saeNode(s); !ok || node != svc.cfg.NodeID {
			return fmt.Errorf("slave SAE %q is not served by node %s", s, svc.cfg.NodeID)
		}
	}
	if len(a.keys) == 0 || len(a.keys) > ringstore.MaxBatch {
		return fmt.Errorf("%d keys: want 1 to %d", len(a.keys), ringstore.MaxBatch)
	}
	return nil
}

// assign tells node dst that keys go to master and slaves, and waits for
// its acknowledgement.
func (as *assigner) assign(ctx context.Context, dst, master string, slaves []string, keys []ringstore.KeyID) error {
	done := make(chan error, 1)
	as.mu.Lock()
	as.nextID++
	a := &assignment{id: as.nextID, master: master, slaves: slaves, keys: keys}
	as.waiting[a.id] = done
	q := as.queues[dst]
	if q == nil {
		q = &assignQueue{q: make(chan *assignment, 4096), acked: make(chan struct{}, 1)}
		as.queues[dst] = q
		as.svc.wg.Add(1)
		go func() { defer as.svc.wg.Done(); as.sendLoop(dst, q) }()
	}
	as.mu.Unlock()
	forget := func() {
		as.mu.Lock()
		delete(as.waiting, a.id)
		as.mu.Unlock()
	}
	select {
	case q.q <- a:
	case <-ctx.Done():
		forget()
		return ctx.Err()
	}
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		forget()
		return fmt.Errorf("node %s did not acknowledge within the assignment timeout: %w", dst, ctx.Err())
	}
}

// sendLoop sends the queued assignments for dst, as many per message as
// are waiting, one message in flight at a time.
func (as *assigner) sendLoop(dst string, aq *assignQueue) {
	var batch []*assignment
	var buf []byte
	var carry *assignment // taken from the queue, did not fit the last message
	q := aq.q
	timeout := as.svc.cfg.AssignTimeout
	inFlight := false
	for {
		if inFlight {
			// Wait for the acknowledgement of the message in flight (or
			// give up on it after the assignment timeout: its requests
			// have failed by then).
			select {
			case <-as.svc.ctx.Done():
				return
			case <-aq.acked:
			case <-time.After(timeout):
			}
			inFlight = false
		}
		batch = batch[:0]
		if carry != nil {
			batch, carry = append(batch, carry), nil
		} else {
			select {
			case <-as.svc.ctx.Done():
				return
			case a := <-q:
				batch = append(batch, a)
			}
		}
		size := 3 + batch[0].encodedLen()
	more:
		for len(batch) < 0xffff {
			select {
			case a := <-q:
				if size+a.encodedLen() > maxAssignMsg {
					carry = a
					break more
				}
				batch = append(batch, a)
				size += a.encodedLen()
			default:
				break more
			}
		}
		buf = appendAssignments(buf[:0], batch)
		err := as.svc.cfg.SendRouted(dst, kindAssign, buf)
		inFlight = err == nil
		if err != nil {
			as.mu.Lock()
			for _, a := range batch {
				if ch := as.waiting[a.id]; ch != nil {
					delete(as.waiting, a.id)
					ch <- fmt.Errorf("sending the assignment to node %s: %w", dst, err)
				}
			}
			as.mu.Unlock()
		}
	}
}
