package supply

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/qrelay/qrelay/ringstore"
)

// This file runs pool reconciliation (pool_sync.go says the protocol,
// pool_rules.go what is dropped): boot IDs and POOL_HELLO with every node
// the router reaches, the coordinator's round, and the other node's
// answers.
const (
	helloFirst    = 250 * time.Millisecond
	helloMax      = 4 * time.Second
	roundRetry    = time.Second
	roundRetryMax = 30 * time.Second
	stepResend    = time.Second
	stepTimeout   = 5 * time.Second
	answerIdle    = 10 * time.Second
	// discoverEvery is how often the syncer looks for nodes the router
	// newly reaches, besides whenever the routing table changes.
	discoverEvery = 250 * time.Millisecond
)

// poolSyncer is the node's side of pool reconciliation with every other
// node.
type poolSyncer struct {
	svc  *Service
	boot uint64
	gate *supplyGate

	inbox    chan routedMsg
	discover chan struct{} // the routing table changed

	mu    sync.Mutex
	peers map[string]*syncPeer
}

// syncPeer is what this node knows of reconciliation with one node.
type syncPeer struct {
	remote string
	wake   chan struct{} // pokes the peer's loop
	round  chan routedMsg

	// under poolSyncer.mu
	heard      uint64 // the remote's boot ID as last heard (0: never)
	echoed     bool   // the remote has heard this node's boot ID
	reconciled uint64 // the remote boot ID of the last round completed
	completed  bool   // a round with the remote completed since this node started
	answering  *answerRound
}

func newPoolSyncer(svc *Service, gate *supplyGate) *poolSyncer {
	return &poolSyncer{svc: svc, boot: randomID(), gate: gate,
		inbox: make(chan routedMsg, 256), discover: make(chan struct{}, 1), peers: map[string]*syncPeer{}}
}

func randomID() uint64 {
	var b [8]byte
	for binary.BigEndian.Uint64(b[:]) == 0 {
		rand.Read(b[:])
	}
	return binary.BigEndian.Uint64(b[:])
}

// routed queues a POOL_* message; the assigner's worker must not wait on
// a round.
func (ps *poolSyncer) routed(m routedMsg) {
	select {
	case ps.inbox <- m:
	default:
		ps.svc.log.Warn("pool reconciliation message dropped: inbox full (the sender repeats it)", "src", m.src, "kind", m.kind)
	}
}

// start runs the syncer: the inbox worker and the discovery of nodes.
func (ps *poolSyncer) start() {
	svc := ps.svc
	svc.wg.Add(2)
	go func() {
		defer svc.wg.Done()
		for {
			select {
			case <-svc.ctx.Done():
				return
			case m := <-ps.inbox:
				ps.handle(m)
			}
		}
	}()
	go func() {
		defer svc.wg.Done()
		t := time.NewTicker(discoverEvery)
		defer t.Stop()
		for {
			for _, dst := range svc.cfg.Routes.Reachable() {
				ps.peer(dst)
			}
			select {
			case <-svc.ctx.Done():
				return
			case <-t.C:
			case <-ps.discover:
			}
		}
	}()
}

// routesChanged has the syncer look for newly reachable nodes now: a node
// that restarted says HELLO as soon as it has a route, so that the other
// learns of the restart before it hands out keys reserved with the old
// life.
func (ps *poolSyncer) routesChanged() { poke(ps.discover) }

// peer returns the state of remote, starting its loop the first time.
func (ps *poolSyncer) peer(remote string) *syncPeer {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if p := ps.peers[remote]; p != nil || remote == ps.svc.cfg.NodeID {
		return p
	}
	p := &syncPeer{remote: remote, wake: make(chan struct{}, 1), round: make(chan routedMsg, 64)}
	ps.peers[remote] = p
	ps.svc.wg.Add(1)
	go func() { defer ps.svc.wg.Done(); ps.loop(p) }()
	return p
}

func poke(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

func (ps *poolSyncer) send(dst string, kind uint16, msg []byte) {
	if err := ps.svc.cfg.SendRouted(dst, kind, msg); err != nil {
		ps.svc.log.Debug("pool reconciliation message not sent; repeated later", "dst", dst, "kind", kind, "err", err)
	}
}

func (ps *poolSyncer) hello(p *syncPeer) {
	ps.mu.Lock()
	h := poolHello{boot: ps.boot, durable: ps.svc.meta != nil, seen: p.heard}
	ps.mu.Unlock()
	ps.send(p.remote, kindPoolHello, appendHello(nil, h))
}

// loop says hello to remote until it has heard this node's boot ID and,
// on the node with the lower ID, runs a round whenever the pair has not
// been reconciled since the latest start of either.
func (ps *poolSyncer) loop(p *syncPeer) {
	svc := ps.svc
	coordinator := svc.cfg.NodeID < p.remote
	helloWait, retryWait := helloFirst, roundRetry
	for svc.ctx.Err() == nil {
		ps.mu.Lock()
		echoed, heard, due := p.echoed, p.heard, p.heard != 0 && p.reconciled != p.heard
		ps.mu.Unlock()
		wait := helloMax
		if !echoed {
			ps.hello(p)
			wait, helloWait = helloWait, min(2*helloWait, helloMax)
		}
		if coordinator && due {
			err := ps.coordinate(p, heard)
			if err == nil {
				retryWait = roundRetry
				continue
			}
			if svc.ctx.Err() != nil {
				return
			}
			svc.log.Warn("pool reconciliation failed; retrying", "remote", p.remote, "retry_in", retryWait, "err", err)
			svc.metrics.ReconcileRound(p.remote, false)
			wait, retryWait = min(wait, retryWait), min(2*retryWait, roundRetryMax)
		}
		t := time.NewTimer(wait)
		select {
		case <-svc.ctx.Done():
		case <-p.wake:
			helloWait = helloFirst
		case <-t.C:
		}
		t.Stop()
	}
}

// handle dispatches one POOL_* message.
func (ps *poolSyncer) handle(m routedMsg) {
	svc := ps.svc
	p := ps.peer(m.src)
	if p == nil {
		return
	}
	var err error
	switch m.kind {
	case kindPoolHello:
		var h poolHello
		if h, err = parseHello(m.payload); err == nil {
			ps.heardHello(p, h)
		}
	case kindPoolSyncReq:
		var q syncReq
		if q, err = parseSyncReq(m.payload); err == nil {
			ps.answerReq(p, q)
		}
	case kindPoolInvReq:
		var q invReq
		if q, err = parseInvReq(m.payload); err == nil {
			ps.answerInv(p, q)
		}
	case kindPoolDrop:
		var c dropChunk
		if c, err = parseDrop(m.payload); err == nil {
			ps.answerDrop(p, c)
		}
	case kindPoolReady, kindPoolInv, kindPoolDropAck:
		select {
		case p.round <- m:
		default: // no round waits, or it is far behind: it asks again
		}
	}
	if err != nil {
		svc.log.Warn("malformed pool reconciliation message dropped", "src", m.src, "kind", m.kind, "err", err)
	}
}

func (ps *poolSyncer) heardHello(p *syncPeer, h poolHello) {
	ps.mu.Lock()
	restarted := p.heard != 0 && p.heard != h.boot
	news := p.heard != h.boot
	if news {
		p.heard = h.boot
	}
	p.echoed = h.seen == ps.boot
	// Answer what told this node something new, or came from a node
	// that has not heard this one: the exchange ends after one HELLO
	// each way.
	answer := news || !p.echoed
	ps.mu.Unlock()
	if restarted {
		ps.gate.peerRestarted(p.remote)
		ps.svc.log.Info("node restarted: its pools shared with this node will be reconciled", "remote", p.remote)
		ps.streamsPeerRestarted(p.remote)
	}
	if answer {
		ps.hello(p)
	}
	poke(p.wake)
}

// streamsPeerRestarted tells the key streams shared with remote that it
// restarted: on a new boot ID, and when a round says it has not completed
// one since its start (its earlier boot may never have been heard).
func (ps *poolSyncer) streamsPeerRestarted(remote string) {
	for _, s := range ps.svc.streams {
		if s.remote == remote {
			s.peerRestarted()
		}
	}
}

// pauseBound is how long a node waits for what it has in flight with
// another node to settle: a relay waits for its COMPLETION, an enc_keys
// for its ASSIGN_ACK.
func (ps *poolSyncer) pauseBound() time.Duration {
	c := ps.svc.cfg
	return c.CompletionTimeout + c.AssignTimeout + 2*time.Second
}

// inventory takes this node's inventory of its two pools shared with
// remote. A pool never opened has no keys; a durable one on disk is
// opened to be read.
func (ps *poolSyncer) inventory(remote string) (poolInventory, error) {
	var inv poolInventory
	for _, role := range []string{RoleOut, RoleIn} {
		p, err := ps.svc.sink.existing(remote, role, ps.svc.meta)
		if err != nil {
			return inv, fmt.Errorf("%s pool of node %s: %w", role, remote, err)
		}
		if p == nil {
			continue
		}
		ks, err := p.Inventory(nil)
		if err != nil {
			return inv, fmt.Errorf("%s pool of node %s: %w", role, remote, err)
		}
		if role == RoleOut {
			inv.out = ks
		} else {
			inv.in = ks
		}
	}
	return inv, nil
}

// apply carries out one chunk of drops at this node, and returns how many
// keys it removed and how many it keeps as orphans. A drop applies only
// to a key still in the state the inventory saw.
func (ps *poolSyncer) apply(remote string, drops []poolDrop) (dropped, orphans int, err error) {
	byPool := map[bool][]poolDrop{}
	var orphanIDs []ringstore.KeyID
	for _, d := range drops {
		if d.reason == reasonOrphan {
			orphanIDs = append(orphanIDs, d.id)
			continue
		}
		byPool[d.in] = append(byPool[d.in], d)
	}
	for in, ds := range byPool {
		role := RoleOut
		if in {
			role = RoleIn
		}
		p, perr := ps.svc.sink.existing(remote, role, ps.svc.meta)
		if perr != nil {
			return dropped, 0, fmt.Errorf("%s pool of node %s: %w", role, remote, perr)
		}
		if p == nil {
			continue // no pool, no key
		}
		state := make(map[ringstore.KeyID]bool, len(ds))
		ids := make([]ringstore.KeyID, len(ds))
		for i, d := range ds {
			state[d.id], ids[i] = d.assigned, d.id
		}
		k, derr := p.Discard(ids, func(id ringstore.KeyID, a ringstore.Assignment) error {
			if (a.Master != "") != state[id] {
				return errStateChanged
			}
			return nil
		})
		dropped += k
		if derr != nil {
			return dropped, 0, fmt.Errorf("%s pool of node %s: %w", role, remote, derr)
		}
		reasons := map[dropReason]int{}
		for _, d := range ds {
			reasons[d.reason]++
		}
		for r, k := range reasons {
			ps.svc.metrics.ReconcileDropped(remote, r.String(), k)
		}
	}
	if err := ps.svc.orphans.add(remote, orphanIDs); err != nil {
		return dropped, 0, err
	}
	return dropped, len(orphanIDs), nil
}

var errStateChanged = errors.New("handed out or assigned since the inventory")

// await waits for the round's next message of kind for round, sending
// ask every stepResend, until match accepts one or stepTimeout (or
// limit) passes without it.
func (ps *poolSyncer) await(p *syncPeer, limit time.Duration, kind uint16, ask []byte, askKind uint16, match func([]byte) (bool, error)) error {
	svc := ps.svc
	deadline := time.NewTimer(limit)
	defer deadline.Stop()
	resend := time.NewTicker(stepResend)
	defer resend.Stop()
	ps.send(p.remote, askKind, ask)
	for {
		select {
		case <-svc.ctx.Done():
			return svc.ctx.Err()
		case <-deadline.C:
			return fmt.Errorf("node %s did not answer %s within %v", p.remote, kindName(askKind), limit)
		case <-resend.C:
			ps.send(p.remote, askKind, ask)
		case m := <-p.round:
			if m.kind != kind {
				continue
			}
			ok, err := match(m.payload)
			if err != nil {
				return err
			}
			if ok {
				return nil
			}
		}
	}
}

func kindName(k uint16) string {
	switch k {
	case kindPoolSyncReq:
		return "POOL_SYNC_REQ"
	case kindPoolInvReq:
		return "POOL_INV_REQ"
	case kindPoolDrop:
		return "POOL_DROP"
	}
	return fmt.Sprintf("kind %d", k)
}

// coordinate runs one round with p, whose boot ID is heard.
func (ps *poolSyncer) coordinate(p *syncPeer, heard uint64) error {
	svc := ps.svc
	t0 := time.Now()
	ctx, cancel := context.WithTimeout(svc.ctx, ps.pauseBound())
	err := ps.gate.pause(ctx, p.remote)
	cancel()
	defer ps.gate.resume(p.remote)
	if err != nil {
		return fmt.Errorf("pausing supply: %w", err)
	}
	paused := time.Since(t0)
	for len(p.round) > 0 { // answers of an earlier round
		<-p.round
	}
	ps.mu.Lock()
	restarted := !p.completed
	ps.mu.Unlock()
	round := randomID()
	req := appendSyncReq(nil, syncReq{round: round, boot: ps.boot, target: heard, durable: svc.meta != nil, restarted: restarted})
	var ready syncReady
	err = ps.await(p, ps.pauseBound()+stepTimeout, kindPoolReady, req, kindPoolSyncReq, func(b []byte) (bool, error) {
		y, err := parseReady(b)
		if err != nil || y.round != round {
			return false, nil
		}
		ready = y
		return true, nil
	})
	if err != nil {
		return err
	}
	readyIn := time.Since(t0)
	if ready.status != readyOK {
		if ready.status == readyRefused {
			ps.mu.Lock()
			p.echoed = false // it has another boot: its HELLO says which
			ps.mu.Unlock()
		}
		return fmt.Errorf("node %s refused the round: %s", p.remote, ready.msg)
	}
	if ready.outKeys > maxSyncInventory || ready.inKeys > maxSyncInventory {
		return fmt.Errorf("node %s announces pools of %d and %d keys: more than the %d a round compares", p.remote, ready.outKeys, ready.inKeys, maxSyncInventory)
	}
	if ready.restarted {
		ps.streamsPeerRestarted(p.remote)
	}
	mine, err := ps.inventory(p.remote)
	if err != nil {
		return err
	}
	var theirs poolInventory
	for pool, total := range []uint32{ready.outKeys, ready.inKeys} {
		var ks []ringstore.KeyState
		for chunk := uint32(0); uint32(len(ks)) < total; chunk++ {
			ask := appendInvReq(nil, invReq{round: round, pool: uint8(pool), chunk: chunk})
			err := ps.await(p, stepTimeout, kindPoolInv, ask, kindPoolInvReq, func(b []byte) (bool, error) {
				c, err := parseInv(b)
				if err != nil || c.round != round || c.pool != uint8(pool) || c.chunk != chunk {
					return false, nil
				}
				switch {
				case len(c.keys) == 0:
					return false, fmt.Errorf("node %s: inventory chunk %d of pool %d is empty before its %d keys", p.remote, chunk, pool, total)
				case uint32(len(ks)+len(c.keys)) > total:
					return false, fmt.Errorf("node %s: inventory of pool %d has more than the %d keys it announced", p.remote, pool, total)
				case len(ks) > 0 && ringstore.CompareKeyIDs(ks[len(ks)-1].ID, c.keys[0].ID) >= 0:
					return false, fmt.Errorf("node %s: inventory chunk %d of pool %d is out of order", p.remote, chunk, pool)
				}
				ks = append(ks, c.keys...)
				return true, nil
			})
			if err != nil {
				return err
			}
		}
		if pool == 0 {
			theirs.out = ks
		} else {
			theirs.in = ks
		}
	}
	atMe, atThem := reconcilePools(mine, theirs, restarted, ready.restarted)
	for len(atMe) > 0 {
		k := min(len(atMe), syncChunk)
		if _, _, err := ps.apply(p.remote, atMe[:k]); err != nil {
			return err
		}
		atMe = atMe[k:]
	}
	chunks := max(1, (len(atThem)+syncChunk-1)/syncChunk)
	var theirDropped, theirOrphans uint32
	for chunk := 0; chunk < chunks; chunk++ {
		part := atThem[chunk*syncChunk : min(len(atThem), (chunk+1)*syncChunk)]
		msg := appendDrop(nil, dropChunk{round: round, chunk: uint32(chunk), chunks: uint32(chunks), drops: part})
		err := ps.await(p, stepTimeout, kindPoolDropAck, msg, kindPoolDrop, func(b []byte) (bool, error) {
			a, err := parseDropAck(b)
			if err != nil || a.round != round || a.chunk != uint32(chunk) {
				return false, nil
			}
			if a.status != dropApplied {
				return false, fmt.Errorf("node %s could not apply drops (chunk %d): %s", p.remote, chunk, a.msg)
			}
			theirDropped += a.dropped
			theirOrphans += a.orphans
			return true, nil
		})
		if err != nil {
			return err
		}
	}
	ps.mu.Lock()
	p.reconciled, p.completed = heard, true
	ps.mu.Unlock()
	svc.metrics.ReconcileRound(p.remote, true)
	svc.log.Info("pools reconciled", "remote", p.remote, "took", time.Since(t0).Round(time.Millisecond),
		"paused_in", paused.Round(time.Millisecond), "ready_in", readyIn.Round(time.Millisecond),
		"keys_here", len(mine.out)+len(mine.in), "keys_there", len(theirs.out)+len(theirs.in),
		"dropped_there", theirDropped, "orphans_there", theirOrphans, "restarted_here", restarted, "restarted_there", ready.restarted)
	return nil
}

// answerRound is the other node's side of one round.
type answerRound struct {
	round, from uint64 // round ID, coordinator's boot ID
	ready       []byte // POOL_SYNC_READY once paused and inventoried
	inv         poolInventory
	acks        map[uint32][]byte // POOL_DROP_ACK sent, by chunk
	last        time.Time         // the coordinator's last message
	done        chan struct{}
	endOnce     sync.Once
}

func (ps *poolSyncer) answerReq(p *syncPeer, q syncReq) {
	svc := ps.svc
	if q.target != ps.boot {
		msg := fmt.Sprintf("node %s's boot ID is %016x, the request names %016x: it restarted; its POOL_HELLO follows", svc.cfg.NodeID, ps.boot, q.target)
		ps.send(p.remote, kindPoolReady, appendReady(nil, syncReady{round: q.round, status: readyRefused, durable: svc.meta != nil, msg: msg}))
		ps.hello(p)
		return
	}
	ps.mu.Lock()
	if p.heard != q.boot {
		if p.heard != 0 {
			ps.gate.peerRestarted(p.remote)
		}
		p.heard = q.boot
	}
	a := p.answering
	if a != nil && a.round == q.round {
		a.last = time.Now()
		ready := a.ready
		ps.mu.Unlock()
		if ready != nil {
			ps.send(p.remote, kindPoolReady, ready)
		}
		return
	}
	if a != nil {
		a.end(p) // the coordinator gave up on it
	}
	a = &answerRound{round: q.round, from: q.boot, acks: map[uint32][]byte{}, last: time.Now(), done: make(chan struct{})}
	p.answering = a
	restarted := !p.completed
	ps.mu.Unlock()
	if q.restarted {
		// Not under ps.mu: KeyStream.Key asks poolsAgreed holding its
		// own lock.
		ps.streamsPeerRestarted(p.remote)
	}
	svc.wg.Add(1)
	go func() {
		defer svc.wg.Done()
		ps.runAnswer(p, a, restarted)
	}()
}

// end ends the round; runAnswer then resumes supply. The caller holds
// poolSyncer.mu.
func (a *answerRound) end(p *syncPeer) {
	a.endOnce.Do(func() {
		close(a.done)
		if p.answering == a {
			p.answering = nil
		}
	})
}

// runAnswer pauses supply with the coordinator, answers READY, and
// resumes supply when the round ends, whichever way.
func (ps *poolSyncer) runAnswer(p *syncPeer, a *answerRound, restarted bool) {
	svc := ps.svc
	ctx, cancel := context.WithTimeout(svc.ctx, ps.pauseBound())
	err := ps.gate.pause(ctx, p.remote)
	cancel()
	defer ps.gate.resume(p.remote)
	var inv poolInventory
	if err == nil {
		inv, err = ps.inventory(p.remote)
	}
	ps.mu.Lock()
	if p.answering != a {
		ps.mu.Unlock()
		return
	}
	if err != nil {
		a.end(p)
		ps.mu.Unlock()
		svc.log.Warn("pool reconciliation refused", "remote", p.remote, "err", err)
		ps.send(p.remote, kindPoolReady, appendReady(nil, syncReady{round: a.round, status: readyFailed, durable: svc.meta != nil, msg: err.Error()}))
		return
	}
	a.inv = inv
	a.ready = appendReady(nil, syncReady{round: a.round, status: readyOK, durable: svc.meta != nil, restarted: restarted,
		outKeys: uint32(len(inv.out)), inKeys: uint32(len(inv.in))})
	a.last = time.Now()
	ready := a.ready
	ps.mu.Unlock()
	ps.send(p.remote, kindPoolReady, ready)
	// Supply stays paused until every drop chunk is applied, or the
	// coordinator falls silent.
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-svc.ctx.Done():
			return
		case <-a.done:
			return
		case <-t.C:
			ps.mu.Lock()
			if time.Since(a.last) > answerIdle {
				a.end(p)
				ps.mu.Unlock()
				svc.log.Warn("pool reconciliation abandoned: the coordinator fell silent; supply resumes", "remote", p.remote)
				return
			}
			ps.mu.Unlock()
		}
	}
}

func (ps *poolSyncer) current(p *syncPeer, round uint64) *answerRound {
	if a := p.answering; a != nil && a.round == round && a.ready != nil {
		a.last = time.Now()
		return a
	}
	return nil
}

func (ps *poolSyncer) answerInv(p *syncPeer, q invReq) {
	ps.mu.Lock()
	a := ps.current(p, q.round)
	var c invChunk
	if a != nil {
		ks := a.inv.out
		if q.pool == 1 {
			ks = a.inv.in
		}
		from := min(len(ks), int(q.chunk)*syncChunk)
		c = invChunk{round: q.round, pool: q.pool, chunk: q.chunk, keys: ks[from:min(len(ks), from+syncChunk)]}
	}
	ps.mu.Unlock()
	if a != nil {
		ps.send(p.remote, kindPoolInv, appendInv(nil, c))
	}
}

func (ps *poolSyncer) answerDrop(p *syncPeer, c dropChunk) {
	svc := ps.svc
	ps.mu.Lock()
	a := ps.current(p, c.round)
	if a == nil {
		ps.mu.Unlock()
		return
	}
	if ack := a.acks[c.chunk]; ack != nil {
		ps.mu.Unlock()
		ps.send(p.remote, kindPoolDropAck, ack)
		return
	}
	ps.mu.Unlock()
	dropped, orphans, err := ps.apply(p.remote, c.drops)
	ack := dropAck{round: c.round, chunk: c.chunk, dropped: uint32(dropped), orphans: uint32(orphans)}
	if err != nil {
		ack.status, ack.msg = dropFailed, err.Error()
	}
	b := appendDropAck(nil, ack)
	ps.mu.Lock()
	if err == nil {
		a.acks[c.chunk] = b
	}
	finished := err == nil && uint32(len(a.acks)) == c.chunks
	if finished {
		p.reconciled, p.completed = a.from, true
		a.end(p)
	}
	ps.mu.Unlock()
	ps.send(p.remote, kindPoolDropAck, b)
	if finished {
		svc.metrics.ReconcileRound(p.remote, true)
		svc.log.Info("pools reconciled", "remote", p.remote, "coordinator", p.remote)
	}
}

// reconciledWith says whether this node has completed a round with
// remote at boot ID boot, since its own start.
func (ps *poolSyncer) reconciledWith(remote string, boot uint64) bool {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	p := ps.peers[remote]
	return p != nil && p.completed && p.reconciled == boot
}

// poolsAgreed says whether the pools shared with remote are reconciled
// with its current boot, as far as this node has heard, and not being
// reconciled now.
func (ps *poolSyncer) poolsAgreed(remote string) bool {
	if ps.gate.paused(remote) {
		return false
	}
	ps.mu.Lock()
	defer ps.mu.Unlock()
	p := ps.peers[remote]
	return p != nil && p.heard != 0 && p.reconciled == p.heard
}
