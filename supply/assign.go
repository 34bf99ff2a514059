package supply

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/qrelay/qrelay/dataplane/frame"
	"github.com/qrelay/qrelay/ringstore"
)

// Key assignment: when a master SAE takes keys from this node's out pool
// for node r (enc_keys), this node tells r which SAEs may fetch them, and
// answers the SAE only once r has recorded that (persisted, in durable
// mode), so the slave's dec_keys never races the assignment (DESIGN.md,
// "End-to-end key pools and supply"). The messages travel as routed
// control messages (relay.Engine.SendRouted): SAE_ASSIGN, answered by
// SAE_ASSIGN_ACK, and SAE_ASSIGN_CANCEL (dataplane/frame, docs/kmlink.md
// section 10). Assignments to one node are batched: while one message is
// being written the next requests queue, and go out together, so a busy
// API costs one message per batch, not per request.
//
// SAE_ASSIGN_CANCEL: the master's node gave up on an assignment (no
// acknowledgement in time) and discarded its keys; the slave's node
// discards its copies too, assigned or not, so that they do not fill its
// pool until their TTL. Nobody can have fetched them: the master's node
// never handed their IDs to an SAE. Unknown IDs are skipped. A cancel that
// cannot be sent (no route to the slave's node for now, as while a node
// on the path restarts) is sent again every cancelRetry until it goes out;
// one lost on the way, or forgotten by a restart of this node, leaves the
// keys to the pool reconciliation after a restart, or to their TTL.

// maxAssignMsg bounds one SAE_ASSIGN message; more waits for the next.
const maxAssignMsg = 48 << 10

const (
	// cancelRetry is how often unsent cancels are tried again.
	cancelRetry = 500 * time.Millisecond
	// maxUnsentCancel bounds the key IDs of unsent cancels kept per node
	// (16 bytes each); beyond it keys are left to their TTL.
	maxUnsentCancel = 1 << 17
)

// assigner sends this node's assignments and applies those sent to it.
type assigner struct {
	svc *Service

	mu      sync.Mutex
	nextID  uint64
	waiting map[uint64]chan error
	queues  map[string]*assignQueue      // by destination node
	unsent  map[string][]ringstore.KeyID // cancels not sent yet, by destination node

	inbox chan routedMsg
}

// assignQueue holds the assignments waiting to go to one node. One
// message is in flight at a time: the requests that arrive meanwhile go
// out together when its acknowledgement comes back, so under load a
// message carries about (requests per second × round trip) assignments,
// and at low load a request waits for nobody.
type assignQueue struct {
	q     chan *frame.SAEAssignment
	acked chan struct{}
}

type routedMsg struct {
	src     string
	kind    frame.Kind
	payload []byte
}

func newAssigner(svc *Service) *assigner {
	return &assigner{svc: svc, waiting: map[uint64]chan error{}, queues: map[string]*assignQueue{},
		unsent: map[string][]ringstore.KeyID{}, inbox: make(chan routedMsg, 256)}
}

// start runs the worker that applies incoming assignments (off the KM
// link's reader, since a durable pool syncs each one to disk) and the one
// that sends cancels again.
func (as *assigner) start() {
	as.svc.wg.Add(2)
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
	go func() {
		defer as.svc.wg.Done()
		tick := time.NewTicker(cancelRetry)
		defer tick.Stop()
		for {
			select {
			case <-as.svc.ctx.Done():
				return
			case <-tick.C:
				as.resendCancels()
			}
		}
	}()
}

// routed is the relay engine's Routed hook.
func (as *assigner) routed(src string, kind uint16, payload []byte) {
	select {
	case as.inbox <- routedMsg{src, frame.Kind(kind), slices.Clone(payload)}:
	case <-as.svc.ctx.Done():
	}
}

func (as *assigner) handle(m routedMsg) {
	switch m.kind {
	case frame.KindSAEAssign:
		as.apply(m.src, m.payload)
	case frame.KindSAEAssignAck:
		ack, err := frame.ParseSAEAssignAck(m.payload)
		if err != nil {
			as.svc.log.Warn("malformed assignment acknowledgement dropped", "src", m.src, "err", err)
			return
		}
		as.mu.Lock()
		for _, a := range ack.Results {
			if ch := as.waiting[a.RequestID]; ch != nil {
				delete(as.waiting, a.RequestID)
				var err error
				if !a.OK {
					err = fmt.Errorf("node %s refused the assignment: %s", m.src, a.Msg)
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
	case frame.KindSAEAssignCancel:
		as.applyCancel(m.src, m.payload)
	case frame.KindKeyStream, frame.KindKeyStreamAck:
		as.svc.handleStream(m.src, m.kind, m.payload)
	case frame.KindPoolHello, frame.KindPoolSyncReq, frame.KindPoolSyncReady, frame.KindPoolInvReq, frame.KindPoolInv, frame.KindPoolDrop, frame.KindPoolDropAck:
		as.svc.syncer.routed(m)
	default:
		as.svc.log.Warn("routed message of unknown kind dropped", "src", m.src, "kind", m.kind)
	}
}

// apply records the assignments node src sent and acknowledges each.
func (as *assigner) apply(src string, payload []byte) {
	svc := as.svc
	msg, err := frame.ParseSAEAssign(payload)
	if err != nil {
		// Without request IDs nothing can be acknowledged: the sender's
		// requests time out and their keys are discarded there.
		svc.log.Warn("malformed assignment message dropped", "src", src, "err", err)
		return
	}
	acks := frame.SAEAssignAck{Results: make([]frame.SAEAssignResult, 0, len(msg.Assignments))}
	for i := range msg.Assignments {
		a := &msg.Assignments[i]
		err := as.check(src, a)
		if err == nil {
			var p *ringstore.Pool
			if p, err = svc.sink.pool(src, RoleIn); err == nil {
				err = setOwner(p, a.Keys, Assignment{Master: a.Master, Slaves: a.Slaves})
			}
		}
		ack := frame.SAEAssignResult{RequestID: a.RequestID, OK: err == nil}
		if err != nil {
			ack.Msg = err.Error()
			svc.log.Warn("assignment refused", "src", src, "master", a.Master, "slaves", a.Slaves, "keys", len(a.Keys), "err", err)
		}
		acks.Results = append(acks.Results, ack)
	}
	b, err := frame.AppendSAEAssignAck(nil, &acks)
	if err == nil {
		err = svc.cfg.SendRouted(src, uint16(frame.KindSAEAssignAck), b)
	}
	if err != nil {
		svc.log.Warn("assignment acknowledgement not sent; the master's node will time out and discard the keys", "dst", src, "err", err)
	}
}

// cancel tells node dst that the keys ids, assigned to it or on their
// way, were discarded here (see SAE_ASSIGN_CANCEL). What cannot be sent
// now is kept and sent again.
func (as *assigner) cancel(dst string, ids []ringstore.KeyID) {
	unsent, err := as.sendCancel(dst, ids)
	if len(unsent) == 0 {
		return
	}
	as.mu.Lock()
	kept := as.unsent[dst]
	room := maxUnsentCancel - len(kept)
	as.unsent[dst] = append(kept, unsent[:min(len(unsent), max(room, 0))]...)
	as.mu.Unlock()
	if room < len(unsent) {
		as.svc.log.Warn("assignment cancel not sent, and too many kept to send again; node dst keeps those keys until their TTL",
			"dst", dst, "keys", len(unsent)-max(room, 0), "err", err)
	}
	as.svc.log.Warn("assignment cancel not sent; sending it again when node dst can be reached", "dst", dst, "keys", min(len(unsent), max(room, 0)), "retry", cancelRetry, "err", err)
}

// sendCancel sends SAE_ASSIGN_CANCEL messages for ids to node dst and
// returns the IDs it could not send, with the error.
func (as *assigner) sendCancel(dst string, ids []ringstore.KeyID) ([]ringstore.KeyID, error) {
	for len(ids) > 0 {
		chunk := ids[:min(len(ids), frame.MaxSAEAssignCancelKeys)]
		b, err := frame.AppendSAEAssignCancel(nil, &frame.SAEAssignCancel{Keys: chunk})
		if err == nil {
			err = as.svc.cfg.SendRouted(dst, uint16(frame.KindSAEAssignCancel), b)
		}
		if err != nil {
			return ids, err
		}
		ids = ids[len(chunk):]
	}
	return nil, nil
}

// resendCancels sends the cancels kept unsent again. It alone removes
// IDs from unsent, and cancel only appends, so the IDs it tried are the
// first ones still listed when it has tried them.
func (as *assigner) resendCancels() {
	as.mu.Lock()
	tries := make(map[string][]ringstore.KeyID, len(as.unsent))
	for dst, ids := range as.unsent {
		tries[dst] = ids[:len(ids):len(ids)]
	}
	as.mu.Unlock()
	for dst, ids := range tries {
		unsent, _ := as.sendCancel(dst, ids)
		sent := len(ids) - len(unsent)
		as.mu.Lock()
		if rest := as.unsent[dst][sent:]; len(rest) > 0 {
			as.unsent[dst] = rest
		} else {
			delete(as.unsent, dst)
		}
		as.mu.Unlock()
		if len(unsent) == 0 {
			as.svc.log.Info("assignment cancel sent after retrying", "dst", dst, "keys", len(ids))
		}
	}
}

// unsentCancels is how many key IDs wait for their cancel to be sent.
func (as *assigner) unsentCancels() int {
	as.mu.Lock()
	defer as.mu.Unlock()
	n := 0
	for _, ids := range as.unsent {
		n += len(ids)
	}
	return n
}

// applyCancel discards the keys node src cancelled from src's in pool:
// those still unfetched, unassigned or assigned to a master src serves.
func (as *assigner) applyCancel(src string, payload []byte) {
	svc := as.svc
	cancel, err := frame.ParseSAEAssignCancel(payload)
	ids := cancel.Keys
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
	var owners assignments
	dropped, err := p.Discard(ids, func(id ringstore.KeyID, o ringstore.Owner) error {
		a, err := owners.of(o)
		if err != nil {
			return fmt.Errorf("key %s: %w", id, err)
		}
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

// setOwner records on in pool p that the SAEs of a may fetch keys ids. A
// key assigned otherwise already is refused naming its master SAE.
func setOwner(p *ringstore.Pool, ids []ringstore.KeyID, a Assignment) error {
	owner, err := ownerOf(a)
	if err != nil {
		return err
	}
	err = p.SetOwner(ids, owner)
	var conflict *ringstore.OwnerConflict
	if errors.As(err, &conflict) {
		if old, aerr := assignmentOf(conflict.Owner); aerr == nil {
			return fmt.Errorf("pool %q: key %s is already assigned to master SAE %q: %w", conflict.Pool, conflict.ID, old.Master, err)
		}
	}
	return err
}

// check refuses an assignment that node src may not make: its master SAE
// must be one src serves, and its slaves this node's.
func (as *assigner) check(src string, a *frame.SAEAssignment) error {
	svc := as.svc
	if node, ok := svc.saeNode(a.Master); !ok || node != src {
		return fmt.Errorf("master SAE %q is not served by node %s (per this node's saes:)", a.Master, src)
	}
	if len(a.Slaves) == 0 {
		return errors.New("no slave SAE named")
	}
	for _, s := range a.Slaves {
		if node, ok := svc.saeNode(s); !ok || node != svc.cfg.NodeID {
			return fmt.Errorf("slave SAE %q is not served by node %s", s, svc.cfg.NodeID)
		}
	}
	if len(a.Keys) == 0 || len(a.Keys) > ringstore.MaxBatch {
		return fmt.Errorf("%d keys: want 1 to %d", len(a.Keys), ringstore.MaxBatch)
	}
	return nil
}

// assign tells node dst that keys go to master and slaves, and waits for
// its acknowledgement.
func (as *assigner) assign(ctx context.Context, dst, master string, slaves []string, keys []ringstore.KeyID) error {
	done := make(chan error, 1)
	as.mu.Lock()
	as.nextID++
	a := &frame.SAEAssignment{RequestID: as.nextID, Master: master, Slaves: slaves, Keys: keys}
	as.waiting[a.RequestID] = done
	q := as.queues[dst]
	if q == nil {
		q = &assignQueue{q: make(chan *frame.SAEAssignment, 4096), acked: make(chan struct{}, 1)}
		as.queues[dst] = q
		as.svc.wg.Add(1)
		go func() { defer as.svc.wg.Done(); as.sendLoop(dst, q) }()
	}
	as.mu.Unlock()
	forget := func() {
		as.mu.Lock()
		delete(as.waiting, a.RequestID)
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
	var batch []*frame.SAEAssignment
	var msg frame.SAEAssign
	var buf []byte
	var carry *frame.SAEAssignment // taken from the queue, did not fit the last message
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
		size := (&frame.SAEAssign{}).Len() + batch[0].Len()
	more:
		for len(batch) < 0xffff {
			select {
			case a := <-q:
				if size+a.Len() > maxAssignMsg {
					carry = a
					break more
				}
				batch = append(batch, a)
				size += a.Len()
			default:
				break more
			}
		}
		msg.Assignments = msg.Assignments[:0]
		for _, a := range batch {
			msg.Assignments = append(msg.Assignments, *a)
		}
		var err error
		if buf, err = frame.AppendSAEAssign(buf[:0], &msg); err == nil {
			err = as.svc.cfg.SendRouted(dst, uint16(frame.KindSAEAssign), buf)
		}
		inFlight = err == nil
		if err != nil {
			as.mu.Lock()
			for _, a := range batch {
				if ch := as.waiting[a.RequestID]; ch != nil {
					delete(as.waiting, a.RequestID)
					ch <- fmt.Errorf("sending the assignment to node %s: %w", dst, err)
				}
			}
			as.mu.Unlock()
		}
	}
}
