package supply

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/qrelay/qrelay/dataplane/frame"
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

// encoded returns a message this node built, or nil if it could not be
// encoded (a bug: the values are this node's own); send skips nil.
func (ps *poolSyncer) encoded(msg []byte, err error) []byte {
	if err != nil {
		ps.svc.log.Error("pool reconciliation message not encodable", "err", err)
		return nil
	}
	return msg
}

func (ps *poolSyncer) send(dst string, kind frame.Kind, msg []byte) {
	if msg == nil {
		return
	}
	if err := ps.svc.cfg.SendRouted(dst, uint16(kind), msg); err != nil {
		ps.svc.log.Debug("pool reconciliation message not sent; repeated later", "dst", dst, "kind", kind, "err", err)
	}
}

func (ps *poolSyncer) hello(p *syncPeer) {
	ps.mu.Lock()
	h := frame.PoolHello{Boot: ps.boot, Durable: ps.svc.meta != nil, Seen: p.heard}
	ps.mu.Unlock()
	ps.send(p.remote, frame.KindPoolHello, ps.encoded(frame.AppendPoolHello(nil, &h)))
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
	case frame.KindPoolHello:
		var h frame.PoolHello
		if h, err = frame.ParsePoolHello(m.payload); err == nil {
			ps.heardHello(p, h)
		}
	case frame.KindPoolSyncReq:
		var q frame.PoolSyncReq
		if q, err = frame.ParsePoolSyncReq(m.payload); err == nil {
			ps.answerReq(p, q)
		}
	case frame.KindPoolInvReq:
		var q frame.PoolInvReq
		if q, err = frame.ParsePoolInvReq(m.payload); err == nil {
			ps.answerInv(p, q)
		}
	case frame.KindPoolDrop:
		var c frame.PoolDrop
		if c, err = frame.ParsePoolDrop(m.payload); err == nil {
			ps.answerDrop(p, c)
		}
	case frame.KindPoolSyncReady, frame.KindPoolInv, frame.KindPoolDropAck:
		select {
		case p.round <- m:
		default: // no round waits, or it is far behind: it asks again
		}
	}
	if err != nil {
		svc.log.Warn("malformed pool reconciliation message dropped", "src", m.src, "kind", m.kind, "err", err)
	}
}

func (ps *poolSyncer) heardHello(p *syncPeer, h frame.PoolHello) {
	ps.mu.Lock()
	restarted := p.heard != 0 && p.heard != h.Boot
	news := p.heard != h.Boot
	if news {
		p.heard = h.Boot
	}
	p.echoed = h.Seen == ps.boot
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
func (ps *poolSyncer) apply(remote string, drops []frame.PoolDropKey) (dropped, orphans int, err error) {
	byPool := map[bool][]frame.PoolDropKey{}
	var orphanIDs []ringstore.KeyID
	for _, d := range drops {
		if d.Reason == frame.PoolDropOrphan {
			orphanIDs = append(orphanIDs, d.ID)
			continue
		}
		byPool[d.In] = append(byPool[d.In], d)
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
			state[d.ID], ids[i] = d.Assigned, d.ID
		}
		k, derr := p.Discard(ids, func(id ringstore.KeyID, o ringstore.Owner) error {
			if (o != "") != state[id] {
				return errStateChanged
			}
			return nil
		})
		dropped += k
		if derr != nil {
			return dropped, 0, fmt.Errorf("%s pool of node %s: %w", role, remote, derr)
		}
		reasons := map[frame.PoolDropReason]int{}
		for _, d := range ds {
			reasons[d.Reason]++
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
func (ps *poolSyncer) await(p *syncPeer, limit time.Duration, kind frame.Kind, ask []byte, askKind frame.Kind, match func([]byte) (bool, error)) error {
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
			return fmt.Errorf("node %s did not answer %s within %v", p.remote, askKind, limit)
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
	req := ps.encoded(frame.AppendPoolSyncReq(nil, &frame.PoolSyncReq{Round: round, Boot: ps.boot, Target: heard, Durable: svc.meta != nil, Restarted: restarted}))
	var ready frame.PoolSyncReady
	err = ps.await(p, ps.pauseBound()+stepTimeout, frame.KindPoolSyncReady, req, frame.KindPoolSyncReq, func(b []byte) (bool, error) {
		y, err := frame.ParsePoolSyncReady(b)
		if err != nil || y.Round != round {
			return false, nil
		}
		ready = y
		return true, nil
	})
	if err != nil {
		return err
	}
	readyIn := time.Since(t0)
	if ready.Status != frame.PoolReadyOK {
		if ready.Status == frame.PoolReadyRefused {
			ps.mu.Lock()
			p.echoed = false // it has another boot: its HELLO says which
			ps.mu.Unlock()
		}
		return fmt.Errorf("node %s refused the round: %s", p.remote, ready.Msg)
	}
	if ready.OutKeys > maxSyncInventory || ready.InKeys > maxSyncInventory {
		return fmt.Errorf("node %s announces pools of %d and %d keys: more than the %d a round compares", p.remote, ready.OutKeys, ready.InKeys, maxSyncInventory)
	}
	if ready.Restarted {
		ps.streamsPeerRestarted(p.remote)
	}
	mine, err := ps.inventory(p.remote)
	if err != nil {
		return err
	}
	var theirs poolInventory
	for pool, total := range []uint32{ready.OutKeys, ready.InKeys} {
		var ks []ringstore.KeyState
		for chunk := uint32(0); uint32(len(ks)) < total; chunk++ {
			ask := ps.encoded(frame.AppendPoolInvReq(nil, &frame.PoolInvReq{Round: round, Pool: uint8(pool), Chunk: chunk}))
			err := ps.await(p, stepTimeout, frame.KindPoolInv, ask, frame.KindPoolInvReq, func(b []byte) (bool, error) {
				c, err := frame.ParsePoolInv(b)
				if err != nil || c.Round != round || c.Pool != uint8(pool) || c.Chunk != chunk {
					return false, nil
				}
				switch {
				case len(c.Keys) == 0:
					return false, fmt.Errorf("node %s: inventory chunk %d of pool %d is empty before its %d keys", p.remote, chunk, pool, total)
				case uint32(len(ks)+len(c.Keys)) > total:
					return false, fmt.Errorf("node %s: inventory of pool %d has more than the %d keys it announced", p.remote, pool, total)
				case len(ks) > 0 && ringstore.CompareKeyIDs(ks[len(ks)-1].ID, c.Keys[0].ID) >= 0:
					return false, fmt.Errorf("node %s: inventory chunk %d of pool %d is out of order", p.remote, chunk, pool)
				}
				ks = append(ks, c.Keys...)
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
	atMe, atThem := reconcilePools(mine, theirs, restarted, ready.Restarted)
	for len(atMe) > 0 {
		k := min(len(atMe), frame.MaxPoolChunk)
		if _, _, err := ps.apply(p.remote, atMe[:k]); err != nil {
			return err
		}
		atMe = atMe[k:]
	}
	chunks := max(1, (len(atThem)+frame.MaxPoolChunk-1)/frame.MaxPoolChunk)
	var theirDropped, theirOrphans uint32
	for chunk := 0; chunk < chunks; chunk++ {
		part := atThem[chunk*frame.MaxPoolChunk : min(len(atThem), (chunk+1)*frame.MaxPoolChunk)]
		msg := ps.encoded(frame.AppendPoolDrop(nil, &frame.PoolDrop{Round: round, Chunk: uint32(chunk), Chunks: uint32(chunks), Drops: part}))
		err := ps.await(p, stepTimeout, frame.KindPoolDropAck, msg, frame.KindPoolDrop, func(b []byte) (bool, error) {
			a, err := frame.ParsePoolDropAck(b)
			if err != nil || a.Round != round || a.Chunk != uint32(chunk) {
				return false, nil
			}
			if a.Status != frame.PoolDropApplied {
				return false, fmt.Errorf("node %s could not apply drops (chunk %d): %s", p.remote, chunk, a.Msg)
			}
			theirDropped += a.Dropped
			theirOrphans += a.Orphans
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
		"dropped_there", theirDropped, "orphans_there", theirOrphans, "restarted_here", restarted, "restarted_there", ready.Restarted)
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

func (ps *poolSyncer) answerReq(p *syncPeer, q frame.PoolSyncReq) {
	svc := ps.svc
	if q.Target != ps.boot {
		msg := fmt.Sprintf("node %s's boot ID is %016x, the request names %016x: it restarted; its POOL_HELLO follows", svc.cfg.NodeID, ps.boot, q.Target)
		ps.send(p.remote, frame.KindPoolSyncReady, ps.encoded(frame.AppendPoolSyncReady(nil, &frame.PoolSyncReady{Round: q.Round, Status: frame.PoolReadyRefused, Durable: svc.meta != nil, Msg: msg})))
		ps.hello(p)
		return
	}
	ps.mu.Lock()
	if p.heard != q.Boot {
		if p.heard != 0 {
			ps.gate.peerRestarted(p.remote)
		}
		p.heard = q.Boot
	}
	a := p.answering
	if a != nil && a.round == q.Round {
		a.last = time.Now()
		ready := a.ready
		ps.mu.Unlock()
		if ready != nil {
			ps.send(p.remote, frame.KindPoolSyncReady, ready)
		}
		return
	}
	if a != nil {
		a.end(p) // the coordinator gave up on it
	}
	a = &answerRound{round: q.Round, from: q.Boot, acks: map[uint32][]byte{}, last: time.Now(), done: make(chan struct{})}
	p.answering = a
	restarted := !p.completed
	ps.mu.Unlock()
	if q.Restarted {
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
		ps.send(p.remote, frame.KindPoolSyncReady, ps.encoded(frame.AppendPoolSyncReady(nil, &frame.PoolSyncReady{Round: a.round, Status: frame.PoolReadyFailed, Durable: svc.meta != nil, Msg: err.Error()})))
		return
	}
	a.inv = inv
	a.ready = ps.encoded(frame.AppendPoolSyncReady(nil, &frame.PoolSyncReady{Round: a.round, Status: frame.PoolReadyOK, Durable: svc.meta != nil, Restarted: restarted,
		OutKeys: uint32(len(inv.out)), InKeys: uint32(len(inv.in))}))
	a.last = time.Now()
	ready := a.ready
	ps.mu.Unlock()
	ps.send(p.remote, frame.KindPoolSyncReady, ready)
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

func (ps *poolSyncer) answerInv(p *syncPeer, q frame.PoolInvReq) {
	ps.mu.Lock()
	a := ps.current(p, q.Round)
	var c frame.PoolInv
	if a != nil {
		ks := a.inv.out
		if q.Pool == frame.PoolIn {
			ks = a.inv.in
		}
		from := min(len(ks), int(q.Chunk)*frame.MaxPoolChunk)
		c = frame.PoolInv{Round: q.Round, Pool: q.Pool, Chunk: q.Chunk, Keys: ks[from:min(len(ks), from+frame.MaxPoolChunk)]}
	}
	ps.mu.Unlock()
	if a != nil {
		ps.send(p.remote, frame.KindPoolInv, ps.encoded(frame.AppendPoolInv(nil, &c)))
	}
}

func (ps *poolSyncer) answerDrop(p *syncPeer, c frame.PoolDrop) {
	svc := ps.svc
	ps.mu.Lock()
	a := ps.current(p, c.Round)
	if a == nil {
		ps.mu.Unlock()
		return
	}
	if ack := a.acks[c.Chunk]; ack != nil {
		ps.mu.Unlock()
		ps.send(p.remote, frame.KindPoolDropAck, ack)
		return
	}
	ps.mu.Unlock()
	dropped, orphans, err := ps.apply(p.remote, c.Drops)
	ack := frame.PoolDropAck{Round: c.Round, Chunk: c.Chunk, Dropped: uint32(dropped), Orphans: uint32(orphans)}
	if err != nil {
		ack.Status, ack.Msg = frame.PoolDropFailed, err.Error()
	}
	b := ps.encoded(frame.AppendPoolDropAck(nil, &ack))
	ps.mu.Lock()
	if err == nil {
		a.acks[c.Chunk] = b
	}
	finished := err == nil && uint32(len(a.acks)) == c.Chunks
	if finished {
		p.reconciled, p.completed = a.from, true
		a.end(p)
	}
	ps.mu.Unlock()
	ps.send(p.remote, frame.KindPoolDropAck, b)
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
