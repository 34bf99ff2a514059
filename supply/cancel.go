package supply

import (
	"cmp"
	"fmt"
	"slices"
	"time"

	"github.com/qrelay/qrelay/dataplane/frame"
	"github.com/qrelay/qrelay/ringstore"
)

// SAE_ASSIGN_CANCEL: the master's node gave up on an assignment (no
// acknowledgement in time) and discarded its keys; the slave's node
// discards its copies too, assigned or not, so that they do not fill its
// pool until their TTL. Nobody can have fetched them: the master's node
// never handed their IDs to an SAE. Unknown IDs are skipped, so a cancel
// applied twice does no harm.
//
// The slave's node answers each cancel (SAE_ASSIGN_CANCEL_ACK), and the
// master's node sends it again every cancelRetry until the answer comes:
// a cancel cannot be sent while no route reaches the slave's node, and
// one sent can be lost with a node on the path that restarts. The assign
// timeout itself is often a sign of that. A cancel is given up when the
// keys' TTL has passed since it was first tried (the keys are gone by
// then), or not kept at all beyond maxPendingCancel keys per node;
// cancels kept are lost if this node restarts, and the pool
// reconciliation after that restart finds those keys (docs/kmlink.md,
// sections 10.3 and 10.13).

const (
	// cancelRetry is how often unanswered cancels are sent again.
	cancelRetry = 500 * time.Millisecond
	// maxPendingCancel bounds the key IDs of unanswered cancels kept per
	// node (16 bytes each); beyond it keys are left to their TTL.
	maxPendingCancel = 1 << 17
)

// pendingCancel is one SAE_ASSIGN_CANCEL message kept until its answer.
// Its first key and count name it in the answer.
type pendingCancel struct {
	keys  []ringstore.KeyID // 1..frame.MaxSAEAssignCancelKeys; never changed
	since time.Time         // first tried
	sends int               // sent without an error, so far; guarded by assigner.mu
}

func (c *pendingCancel) answeredBy(a *frame.SAEAssignCancelAck) bool {
	return c.keys[0] == a.First && len(c.keys) == int(a.Count)
}

// cancel tells node dst that the keys ids, assigned to it or on their
// way, were discarded here, and keeps doing so until dst answers.
func (as *assigner) cancel(dst string, ids []ringstore.KeyID) {
	now := time.Now()
	var added []*pendingCancel
	as.mu.Lock()
	room := maxPendingCancel
	for _, c := range as.cancels[dst] {
		room -= len(c.keys)
	}
	for len(ids) > 0 && room > 0 {
		n := min(len(ids), frame.MaxSAEAssignCancelKeys, room)
		c := &pendingCancel{keys: ids[:n:n], since: now}
		added = append(added, c)
		ids, room = ids[n:], room-n
	}
	as.cancels[dst] = append(as.cancels[dst], added...)
	as.mu.Unlock()
	if len(ids) > 0 {
		as.svc.log.Warn("assignment cancel not kept: too many unanswered cancels for node dst; it keeps those keys until their TTL",
			"dst", dst, "keys", len(ids), "kept", maxPendingCancel)
	}
	if err := as.sendCancels(dst, added); err != nil {
		as.svc.log.Warn("assignment cancel not sent; sending it again until node dst answers", "dst", dst, "retry", cancelRetry, "err", err)
	}
}

// sendCancels sends each of cs to dst once, and returns the first error.
func (as *assigner) sendCancels(dst string, cs []*pendingCancel) error {
	var first error
	var buf []byte
	for _, c := range cs {
		var err error
		buf, err = frame.AppendSAEAssignCancel(buf[:0], &frame.SAEAssignCancel{Keys: c.keys})
		if err == nil {
			err = as.svc.cfg.SendRouted(dst, uint16(frame.KindSAEAssignCancel), buf)
		}
		if err != nil {
			first = cmp.Or(first, err)
			continue
		}
		as.mu.Lock()
		c.sends++
		as.mu.Unlock()
	}
	return first
}

// resendCancels sends the unanswered cancels again, and gives up those
// whose keys' TTL has passed by now.
func (as *assigner) resendCancels(now time.Time) {
	ttl := as.svc.cfg.Pools.TTL
	tries := map[string][]*pendingCancel{}
	as.mu.Lock()
	for dst, cs := range as.cancels {
		kept := cs[:0]
		for _, c := range cs {
			if ttl > 0 && now.Sub(c.since) > ttl {
				as.svc.log.Warn("assignment cancel given up: node dst did not answer within the keys' TTL, so they have expired there",
					"dst", dst, "keys", len(c.keys), "sent", c.sends, "ttl", ttl)
				continue
			}
			kept = append(kept, c)
		}
		clear(cs[len(kept):])
		if len(kept) == 0 {
			delete(as.cancels, dst)
			continue
		}
		as.cancels[dst] = kept
		// A copy: an answer may remove from kept in place meanwhile.
		tries[dst] = slices.Clone(kept)
	}
	as.mu.Unlock()
	for dst, cs := range tries {
		as.sendCancels(dst, cs)
	}
}

// cancelAnswered ends the sending of the cancel node src answered.
func (as *assigner) cancelAnswered(src string, payload []byte) {
	ack, err := frame.ParseSAEAssignCancelAck(payload)
	if err != nil {
		as.svc.log.Warn("malformed assignment cancel answer dropped", "src", src, "err", err)
		return
	}
	var done *pendingCancel
	as.mu.Lock()
	cs := as.cancels[src]
	for i, c := range cs {
		if c.answeredBy(&ack) {
			done = c
			cs = append(cs[:i], cs[i+1:]...)
			break
		}
	}
	if len(cs) == 0 {
		delete(as.cancels, src)
	} else {
		as.cancels[src] = cs
	}
	var sends int
	if done != nil {
		sends = done.sends
	}
	as.mu.Unlock()
	switch {
	case done == nil:
		// An answer to a cancel sent again after the first answer came.
		as.svc.log.Debug("answer to an assignment cancel no longer kept", "src", src, "first", ack.First, "count", ack.Count)
	case ack.Status == frame.SAECancelRefused:
		as.svc.log.Warn("assignment cancel refused; node src keeps those keys until their TTL", "src", src, "keys", ack.Count, "first", ack.First, "reason", ack.Msg)
	case sends > 1:
		as.svc.log.Info("assignment cancel answered after sending it again", "src", src, "keys", ack.Count, "discarded", ack.Discarded, "sends", sends)
	}
}

// pendingByNode is how many key IDs wait for their cancel's answer, by
// destination node.
func (as *assigner) pendingByNode() map[string]int {
	as.mu.Lock()
	defer as.mu.Unlock()
	m := make(map[string]int, len(as.cancels))
	for dst, cs := range as.cancels {
		for _, c := range cs {
			m[dst] += len(c.keys)
		}
	}
	return m
}

// applyCancel discards the keys node src cancelled from src's in pool
// (those still unfetched, unassigned or assigned to a master src serves),
// and answers src.
func (as *assigner) applyCancel(src string, payload []byte) {
	svc := as.svc
	cancel, err := frame.ParseSAEAssignCancel(payload)
	if err != nil {
		// Nothing names it: src sends it again, to be dropped again, until
		// the keys' TTL.
		svc.log.Warn("malformed assignment cancel dropped", "src", src, "err", err)
		return
	}
	ack := frame.SAEAssignCancelAck{First: cancel.Keys[0], Count: uint16(len(cancel.Keys))}
	dropped, kept, err := as.discardCancelled(src, cancel.Keys)
	switch {
	case err != nil:
		ack.Status, ack.Msg = frame.SAECancelRefused, err.Error()
		svc.log.Warn("assignment cancel not applied", "src", src, "keys", len(cancel.Keys), "err", err)
	case kept != nil:
		ack.Discarded, ack.Msg = uint16(dropped), kept.Error()
		svc.log.Warn("assignment cancel applied, but keys assigned to another node's SAE kept", "src", src, "keys", dropped, "cancelled", len(cancel.Keys), "first_kept", kept)
	default:
		ack.Discarded = uint16(dropped)
		svc.log.Info("keys of a cancelled assignment discarded", "src", src, "keys", dropped, "cancelled", len(cancel.Keys))
	}
	b, err := frame.AppendSAEAssignCancelAck(nil, &ack)
	if err == nil {
		err = svc.cfg.SendRouted(src, uint16(frame.KindSAEAssignCancelAck), b)
	}
	if err != nil {
		svc.log.Warn("assignment cancel answer not sent; node src will send the cancel again", "dst", src, "err", err)
	}
}

// discardCancelled removes ids from src's in pool in one removal (one
// metadata transaction in durable mode: this worker also applies
// ASSIGNs, which must not wait behind a sync per key), but for those
// assigned to a master SAE src does not serve: src cannot cancel those,
// and kept says why the first of them stays.
func (as *assigner) discardCancelled(src string, ids []ringstore.KeyID) (dropped int, kept, err error) {
	svc := as.svc
	// An existing pool only: a cancel names keys this node holds, and must
	// not open a pool for whatever node src a message names.
	p, err := svc.sink.existing(src, RoleIn, svc.meta)
	if err == nil && p == nil {
		err = fmt.Errorf("this node shares no end-to-end key pool with node %s", src)
	}
	if err != nil {
		return 0, nil, err
	}
	var owners assignments
	dropped, err = p.Discard(ids, func(id ringstore.KeyID, o ringstore.Owner) error {
		a, err := owners.of(o)
		if err == nil {
			if node, ok := svc.saeNode(a.Master); a.Master != "" && (!ok || node != src) {
				err = fmt.Errorf("key %s is assigned to master SAE %q, not one of node %s", id, a.Master, src)
			}
		} else {
			err = fmt.Errorf("key %s: %w", id, err)
		}
		if kept == nil {
			kept = err
		}
		return err
	})
	return dropped, kept, err
}
