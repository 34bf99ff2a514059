package relay

// This file holds pad feeding: the link master fetches QKD blocks from its
// source and feeds each batch to one direction of the link with an ASSIGN
// frame; the slave gets the same blocks from its own source and appends
// them at the position the master names (docs/kmlink.md section 7).

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/qrelay/qrelay/dataplane/frame"
	"github.com/qrelay/qrelay/dataplane/qkd"
	"github.com/qrelay/qrelay/internal/faults"
	"github.com/qrelay/qrelay/ringstore"
)

// maxUnacked bounds the batches the master has in flight (sent in an
// ASSIGN, not yet acknowledged).
const maxUnacked = 8

// fetchRetry is how long the master waits to ask a failed QKD source
// again.
const fetchRetry = 100 * time.Millisecond

// feedBatch is a batch of QKD blocks the master fed to one direction and
// the slave has not acknowledged; the master holds its blocks until then.
// seq (of its ASSIGN) and pos are set when it is sent.
type feedBatch struct {
	seq, pos uint64
	dir      frame.Dir
	blocks   []ringstore.Block
	bytes    int
}

type fetched struct {
	blocks []ringstore.Block
	err    error
}

// keepMaster is the master's keeper: it agrees on the pads with the slave
// on every new connection (docs/kmlink.md section 6) and keeps both
// directions filled (section 7): it fetches blocks from the QKD source,
// feeds each batch to the direction with less pad, and sends it to the
// slave in an ASSIGN. Pad reaches a ring only once the slave has it too:
// master→slave pad enters the master's tx ring when the slave
// acknowledges; slave→master pad enters the master's rx ring then as well,
// and the rx window lets frames wait for pad that is announced but not yet
// appended.
func (l *link) keepMaster() {
	e := l.e
	ctx, cancel := context.WithCancel(e.ctx)
	defer cancel()
	go func() {
		select {
		case <-l.done:
			cancel()
		case <-ctx.Done():
		}
	}()
	var (
		cur      *session // the newest connection
		ready    bool     // cur's pads are agreed: ASSIGNs flow on it
		seq      uint64   // the last ASSIGN sequence sent on cur
		unacked  []*feedBatch
		pending  [2]int     // unacked bytes per direction
		held     *feedBatch // blocks fetched while no connection was ready
		want     = make(chan int, 1)
		got      = make(chan fetched, 1)
		fetching bool
		fetchDir frame.Dir
		downLog  string
		// quieting holds off the next Fetch for fetchRetry after a failed
		// one, until quiet fires: a source that is down fails at once, and
		// asking again at once would spin.
		quieting bool
		quiet    = time.NewTimer(fetchRetry)
	)
	quiet.Stop()
	defer quiet.Stop()
	fetcherDone := make(chan struct{})
	// The fetcher must be gone before the engine's Close returns: its
	// caller closes the source next.
	defer func() { cancel(); <-fetcherDone }()
	go func() { // the fetcher: Fetch may wait for the QKD device
		defer close(fetcherDone)
		if l.src == nil {
			return
		}
		for {
			select {
			case n := <-want:
				b, err := l.src.Fetch(ctx, n)
				select {
				case got <- fetched{b, err}:
				case <-ctx.Done():
					zeroBlocks(b)
					return
				}
			case <-ctx.Done():
				return
			}
		}
	}()
	ring := func(d frame.Dir) *ringstore.PadRing {
		if d == frame.DirMasterToSlave {
			return l.tx
		}
		return l.rx
	}
	apply := func(r *feedBatch, ok bool, reason string) {
		pending[r.dir] -= r.bytes
		if ok {
			for _, b := range r.blocks {
				l.appendWait(ctx, ring(r.dir), b)
			}
			e.stats.AssignsApplied.Add(1)
		} else {
			e.log.Warn("slave refused a pad assignment; its blocks are dropped", "peer", l.peer, "seq", r.seq, "reason", reason)
		}
		if r.dir == frame.DirSlaveToMaster {
			l.rxw.addPending(-int64(r.bytes))
		} else {
			l.txNotify()
		}
		zeroBlocks(r.blocks)
	}
	// send feeds r's blocks to the end of its direction's pad, after what
	// is already fed and unacknowledged.
	send := func(r *feedBatch) {
		seq++
		r.seq, r.pos = seq, ring(r.dir).Stats().Head+uint64(pending[r.dir])
		a := frame.Assign{Seq: r.seq, PadPos: r.pos, Dir: r.dir}
		for _, b := range r.blocks {
			a.Blocks = append(a.Blocks, frame.AssignBlock{ID: b.ID, Size: uint32(len(b.Data))})
		}
		b, err := frame.AppendAssign(nil, &a)
		if err != nil {
			e.log.Error("cannot encode a pad assignment; dropping its blocks", "peer", l.peer, "err", err)
			zeroBlocks(r.blocks)
			seq--
			return
		}
		pending[r.dir] += r.bytes
		if r.dir == frame.DirSlaveToMaster {
			l.rxw.addPending(int64(r.bytes))
		}
		unacked = append(unacked, r)
		e.stats.AssignsSent.Add(1)
		if err := cur.sendCtl(b); err != nil && cur.ctx.Err() == nil {
			// The slave would refuse every later ASSIGN for its position:
			// start again, and let the next agreement settle this one.
			e.log.Warn("cannot queue a pad assignment; closing the connection", "peer", l.peer, "seq", r.seq, "err", err)
			cur.conn.Close("cannot queue ASSIGN: " + err.Error())
			ready = false
		}
	}
	for {
		if cur != nil && cur.ctx.Err() != nil {
			cur, ready = nil, false
		}
		if ready && held != nil {
			r := held
			held = nil
			send(r)
		}
		// Ask for more when there is room and the slave is in step;
		// if there is no room, padMoved says when to look again.
		var padMoved [2]<-chan struct{}
		if l.src != nil && !fetching && held == nil && ready && len(unacked) < maxUnacked && !quieting {
			if d, n, moved := l.nextFetch(pending); n > 0 {
				fetching, fetchDir = true, d
				want <- n
			} else {
				padMoved = moved
			}
		}
		var curDone <-chan struct{}
		if cur != nil {
			curDone = cur.ctx.Done() // the loop's top forgets it
		}
		var quietDone <-chan time.Time
		if quieting {
			quietDone = quiet.C
		}
		select {
		case <-ctx.Done():
			for _, r := range unacked {
				zeroBlocks(r.blocks)
			}
			if held != nil {
				zeroBlocks(held.blocks)
			}
			return
		case <-curDone:
		case <-quietDone:
			quieting = false
		case <-padMoved[0]:
		case <-padMoved[1]:
		case f := <-got:
			fetching = false
			if f.err != nil {
				if ctx.Err() != nil {
					return
				}
				quieting = true
				quiet.Reset(fetchRetry)
				if msg := f.err.Error(); msg != downLog {
					downLog = msg
					e.log.Warn("QKD source delivers no key", "peer", l.peer, "err", f.err, "down", errors.Is(f.err, qkd.ErrDown))
				}
				continue
			}
			downLog = ""
			if len(f.blocks) == 0 {
				continue
			}
			r := &feedBatch{dir: fetchDir, blocks: f.blocks} // the direction whose room was measured
			for _, b := range f.blocks {
				r.bytes += len(b.Data)
			}
			if ready {
				send(r)
			} else {
				held = r
			}
		case m := <-l.ctlIn:
			switch {
			case m.up:
				cur, ready, seq = m.sess, false, 0
			case m.sync != nil:
				if m.sess != cur || ready {
					continue
				}
				settled, dropped, announced := l.settle(ctx, unacked, m.sync)
				unacked, pending = nil, [2]int{}
				if !l.agreeMaster(cur, m.sync, settled, dropped, announced) {
					cur = nil
					continue
				}
				ready = true
			case m.ack != nil:
				if m.sess != cur || !ready {
					continue // of an ended connection: the next agreement settles it
				}
				if len(unacked) == 0 || unacked[0].seq != m.ack.Seq {
					oldest := "none"
					if len(unacked) > 0 {
						oldest = fmt.Sprint(unacked[0].seq)
					}
					e.log.Warn("assignment acknowledgement out of order; closing the connection", "peer", l.peer, "seq", m.ack.Seq, "oldest_unacked", oldest)
					cur.conn.Close(fmt.Sprintf("ASSIGN_ACK for sequence %d, but the oldest unacknowledged ASSIGN is %s", m.ack.Seq, oldest))
					ready = false
					continue
				}
				if m.ack.OK && faults.At(faults.MasterAcked, e.cfg.NodeID) {
					return // dies before appending: the blocks are in the slave's pad only
				}
				apply(unacked[0], m.ack.OK, m.ack.Reason)
				unacked = unacked[1:]
			}
		}
	}
}

// keepSlave is the slave's keeper: it states its pads on every new
// connection and moves them to the master's agreement (docs/kmlink.md
// section 6), then applies the master's ASSIGNs in order: it gets the
// named blocks from its own QKD source and appends them to the ring of the
// direction the ASSIGN names, at the position it names (section 7).
func (l *link) keepSlave() {
	e := l.e
	ctx, cancel := context.WithCancel(e.ctx)
	defer cancel()
	var (
		cur     *session
		ready   bool
		lastSeq uint64     // the last ASSIGN sequence settled on cur
		stated  frame.Sync // the SYNC sent on cur
	)
	for {
		var m ctlMsg
		select {
		case <-ctx.Done():
			return
		case <-l.done:
			return
		case m = <-l.ctlIn:
		}
		switch {
		case m.up:
			cur, ready, lastSeq = m.sess, false, 0
			stated = l.padState()
			b, err := frame.AppendSync(nil, &stated)
			if err == nil {
				err = cur.ctl.write(b)
			}
			if err != nil {
				if cur.ctx.Err() == nil {
					e.log.Error("cannot send SYNC; closing the connection", "peer", l.peer, "err", err)
					cur.conn.Close("cannot send SYNC: " + err.Error())
				}
				cur = nil
			}
		case m.agree != nil:
			if m.sess != cur || ready {
				continue
			}
			if !l.agreeSlave(cur, &stated, m.agree) {
				cur = nil
				continue
			}
			ready = true
		case m.assign != nil:
			if m.sess != cur || !ready {
				continue // of an ended connection: the next agreement settles it
			}
			a := m.assign
			if a.Seq != lastSeq+1 {
				e.log.Warn("pad assignment out of sequence; closing the connection", "peer", l.peer, "seq", a.Seq, "want", lastSeq+1)
				cur.conn.Close(fmt.Sprintf("ASSIGN sequence %d, want %d", a.Seq, lastSeq+1))
				ready = false
				continue
			}
			lastSeq = a.Seq
			ack := frame.AssignAck{Seq: a.Seq, OK: true}
			// The append may wait for the ring to free space, which only
			// frames of this connection do: if it ends, stop waiting, and
			// let the next agreement settle what was appended.
			actx, cancel := context.WithCancel(cur.ctx)
			stop := context.AfterFunc(ctx, cancel)
			err := l.applyFeed(actx, a)
			stop()
			cancel()
			if ctx.Err() != nil {
				return
			}
			if cur.ctx.Err() != nil {
				cur, ready = nil, false
				continue
			}
			if err != nil {
				ack.OK, ack.Reason = false, truncReason(err.Error())
				e.log.Warn("cannot apply pad assignment; refused", "peer", l.peer, "seq", a.Seq, "err", err)
			} else {
				e.stats.AssignsApplied.Add(1)
				if faults.At(faults.SlaveAppended, e.cfg.NodeID) {
					return // dies before acknowledging
				}
			}
			b, err := frame.AppendAssignAck(nil, &ack)
			if err == nil {
				err = cur.sendCtl(b)
			}
			if err != nil && cur.ctx.Err() == nil {
				e.log.Warn("cannot queue an assignment acknowledgement; closing the connection", "peer", l.peer, "seq", a.Seq, "err", err)
				cur.conn.Close("cannot queue ASSIGN_ACK: " + err.Error())
				ready = false
			}
		}
	}
}

// truncReason cuts a reason to what a frame carries.
func truncReason(s string) string {
	if len(s) > frame.MaxReason {
		return s[:frame.MaxReason]
	}
	return s
}

// applyFeed appends the blocks ASSIGN a feeds, fetched from the QKD
// source, at the position a names, which must be the end of this end's pad
// of that direction.
func (l *link) applyFeed(ctx context.Context, a *frame.Assign) error {
	r := l.rx
	if a.Dir == frame.DirSlaveToMaster {
		r = l.tx
	}
	if head := r.Stats().Head; a.PadPos != head {
		return fmt.Errorf("ASSIGN %d puts its blocks at %v position %d, but this end's pad ends at %d", a.Seq, a.Dir, a.PadPos, head)
	}
	if l.src == nil {
		return errors.New("no QKD source configured on " + l.e.cfg.NodeID + " for link " + l.peer)
	}
	ids := make([]string, len(a.Blocks))
	for i, b := range a.Blocks {
		ids[i] = b.ID
	}
	blocks, err := l.src.Get(ctx, ids)
	if err != nil {
		return err
	}
	defer zeroBlocks(blocks)
	for i, b := range blocks {
		if len(b.Data) != int(a.Blocks[i].Size) {
			return fmt.Errorf("block %s: the master has %d bytes, this end %d", b.ID, a.Blocks[i].Size, len(b.Data))
		}
	}
	for _, b := range blocks {
		if err := l.appendWait(ctx, r, b); err != nil {
			return err
		}
	}
	if a.Dir == frame.DirSlaveToMaster {
		l.txNotify()
	} else {
		l.rxw.notify()
	}
	return nil
}

// appendWait appends b, waiting while the ring is full: consumers free
// space as they release pad. A ring closed meanwhile fails the append.
func (l *link) appendWait(ctx context.Context, r *ringstore.PadRing, b ringstore.Block) error {
	for {
		err := l.appendBlock(r, b)
		if !errors.Is(err, ringstore.ErrRingFull) {
			return err
		}
		if err := r.WaitRoom(ctx, uint64(len(b.Data))); err != nil && !errors.Is(err, ringstore.ErrClosed) {
			return err
		}
	}
}

// nextFetch is the master's choice of what to fetch next: for the
// direction with less pad (stock plus what is fed and not yet
// acknowledged), as much as fits, if at least min(fetchBytes, Capacity/8)
// fits. With nothing to fetch (n 0) it returns, per direction, a channel
// its ring closes when the choice may change: the direction chosen frees
// enough room; the other one, if it has room, is reserved down to less pad
// than the chosen one, or, if not, frees enough room. An append or a
// resync of either ring closes both.
func (l *link) nextFetch(pending [2]int) (d frame.Dir, n int, moved [2]<-chan struct{}) {
	rings := [2]*ringstore.PadRing{l.tx, l.rx} // by direction, at the master
	for {
		st := [2]ringstore.PadStats{l.tx.Stats(), l.rx.Stats()}
		pad := [2]uint64{st[0].Stock + uint64(pending[0]), st[1].Stock + uint64(pending[1])}
		d = frame.DirMasterToSlave
		if pad[1] < pad[0] {
			d = frame.DirSlaveToMaster
		}
		room := func(x frame.Dir) int { return st[x].Capacity - int(st[x].Head-st[x].Tail) - pending[x] }
		need := func(x frame.Dir) int { return min(l.fetchBytes, st[x].Capacity/8) }
		if r := room(d); r >= need(d) {
			return d, min(r, l.fetchBytes), moved
		}
		moved[d] = rings[d].Watch(ringstore.PadWatch{RoomAtLeast: uint64(need(d) + pending[d])})
		o := 1 - d
		var w ringstore.PadWatch
		if room(o) >= need(o) {
			// The choice turns to o when o's pad falls below d's (o is
			// the slave's direction), or to d's (o is the master's: ties
			// go to it).
			below := pad[d]
			if o == frame.DirMasterToSlave {
				below++
			}
			if below > uint64(pending[o]) {
				w.StockBelow = below - uint64(pending[o])
			}
		} else {
			w.RoomAtLeast = uint64(need(o) + pending[o])
		}
		moved[o] = rings[o].Watch(w)
		// Both watch from here; an append before would go unseen.
		if l.tx.Stats().Head == st[0].Head && l.rx.Stats().Head == st[1].Head {
			return d, 0, moved
		}
	}
}

func zeroBlocks(bs []ringstore.Block) {
	for _, b := range bs {
		clear(b.Data)
	}
}
