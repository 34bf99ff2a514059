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
// SAE_ASSIGN_CANCEL, for assignments given up on, and its answer are in
// cancel.go.

// maxAssignMsg bounds one SAE_ASSIGN message; more waits for the next.
const maxAssignMsg = 48 << 10

// assigner sends this node's assignments and applies those sent to it.
type assigner struct {
	svc *Service

	mu      sync.Mutex
	nextID  uint64
	waiting map[uint64]chan error
	queues  map[string]*assignQueue     // by destination node
	cancels map[string][]*pendingCancel // cancels not answered yet, by destination node

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
		cancels: map[string][]*pendingCancel{}, inbox: make(chan routedMsg, 256)}
}

// start runs the worker that applies incoming assignments (off the KM
// link's reader, since a durable pool syncs each one to disk) and the one
// that sends unanswered cancels again.
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
				as.resendCancels(time.Now())
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
	case frame.KindSAEAssignCancelAck:
		as.cancelAnswered(m.src, m.payload)
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
