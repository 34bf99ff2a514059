package relay

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/qrelay/qrelay/dataplane/frame"
	"github.com/qrelay/qrelay/dataplane/qkd"
	"github.com/qrelay/qrelay/ringstore"
)

// Control kinds below 16 belong to the relay engine.
const ctlHello uint16 = 1

// maxUnacked bounds the assignments the master has in flight; HELLO
// reports the outcomes of the last helloWindow, which must cover them.
const (
	maxUnacked  = 8
	helloWindow = 64
)

// fetchRetry is how long the master waits to ask a failed QKD source
// again.
const fetchRetry = 100 * time.Millisecond

// assignRec is an assignment the master sent and the slave has not
// acknowledged; the master holds its blocks until then.
type assignRec struct {
	seq    uint64
	dir    frame.Dir
	blocks []ringstore.Block
	bytes  int
	frame  []byte
}

type fetched struct {
	blocks []ringstore.Block
	err    error
}

// supplyMaster keeps both directions of the link filled: it fetches blocks
// from the QKD source, gives each batch to the direction with less pad, and
// assigns it to the slave. Pad reaches a ring only once the slave has it
// too, so neither end ever sends with pad the other lacks for long:
// master→slave pad enters the master's tx ring when the slave acknowledges;
// slave→master pad enters the master's rx ring then as well, and the rx
// window lets frames wait for pad that is announced but not yet appended.
func (l *link) supplyMaster() {
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
		seq      uint64
		unacked  []*assignRec
		pending  [2]int // unacked bytes per direction
		synced   *session
		want     = make(chan int, 1)
		got      = make(chan fetched, 1)
		fetching bool
		fetchDir frame.Dir
		downLog  string
		// quietUntil holds off the next Fetch after a failed one: a
		// source that is down fails at once, and asking again at once
		// would spin.
		quietUntil time.Time
	)
	fetcherDone := make(chan struct{})
	// The fetcher must be gone before the engine's Close returns: its
	// caller closes the source next.
	defer func() { cancel(); <-fetcherDone }()
	go func() { // the fetcher: Fetch may wait for the QKD device
		defer close(fetcherDone)
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
	apply := func(r *assignRec, ok bool, reason string) {
		pending[r.dir] -= r.bytes
		if ok {
			for _, b := range r.blocks {
				appendWait(ctx, ring(r.dir), b)
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
	retry := time.NewTicker(20 * time.Millisecond)
	defer retry.Stop()
	for {
		if synced != nil && synced.ctx.Err() != nil {
			synced = nil
		}
		// Ask for more when there is room and the slave is in step.
		if !fetching && synced != nil && len(unacked) < maxUnacked && !time.Now().Before(quietUntil) {
			d := frame.DirMasterToSlave
			if l.rx.Stats().Stock+uint64(pending[1]) < l.tx.Stats().Stock+uint64(pending[0]) {
				d = frame.DirSlaveToMaster
			}
			st := ring(d).Stats()
			room := st.Capacity - int(st.Head-st.Tail) - pending[d]
			if room >= min(l.fetchBytes, st.Capacity/8) {
				fetching, fetchDir = true, d
				want <- min(room, l.fetchBytes)
			}
		}
		select {
		case <-ctx.Done():
			for _, r := range unacked {
				zeroBlocks(r.blocks)
			}
			return
		case <-retry.C:
		case f := <-got:
			fetching = false
			if f.err != nil {
				if ctx.Err() != nil {
					return
				}
				quietUntil = time.Now().Add(fetchRetry)
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
			seq++
			d := fetchDir // the direction whose room was measured
			r := &assignRec{seq: seq, dir: d, blocks: f.blocks}
			a := frame.Assign{Seq: seq, Dir: d}
			for _, b := range f.blocks {
				r.bytes += len(b.Data)
				a.Blocks = append(a.Blocks, frame.AssignBlock{ID: b.ID, Size: uint32(len(b.Data))})
			}
			var err error
			if r.frame, err = frame.AppendAssign(nil, &a); err != nil {
				e.log.Error("cannot encode a pad assignment; dropping its blocks", "peer", l.peer, "err", err)
				zeroBlocks(f.blocks)
				seq--
				continue
			}
			pending[d] += r.bytes
			if d == frame.DirSlaveToMaster {
				l.rxw.addPending(int64(r.bytes))
			}
			unacked = append(unacked, r)
			e.stats.AssignsSent.Add(1)
			if synced != nil {
				l.sendCtl(synced, r.frame)
			}
		case m := <-l.ctlIn:
			switch {
			case m.hello != nil:
				// The slave says what it settled and which of those it
				// refused; the rest is sent again, in order.
				last, refusedBits := m.hello[0], m.hello[1]
				for len(unacked) > 0 && unacked[0].seq <= last {
					ok := refusedBits>>(last-unacked[0].seq+1)&1 == 0
					apply(unacked[0], ok, "refused before the connection changed")
					unacked = unacked[1:]
				}
				synced = m.sess
				for _, r := range unacked {
					l.sendCtl(synced, r.frame)
				}
			case m.ack != nil:
				if len(unacked) == 0 || unacked[0].seq != m.ack.Seq {
					e.log.Warn("assignment acknowledgement out of order; ignored", "peer", l.peer, "seq", m.ack.Seq)
					continue
				}
				apply(unacked[0], m.ack.OK, m.ack.Reason)
				unacked = unacked[1:]
			}
		}
	}
}

// supplySlave applies the master's assignments in order: it gets the named
// blocks from its own QKD source and appends them to the assigned ring.
// Every assignment is settled once, applied or refused, and a resent one is
// answered with its original outcome, so the master never appends blocks
// the slave refused.
func (l *link) supplySlave() {
	e := l.e
	ctx, cancel := context.WithCancel(e.ctx)
	defer cancel()
	refused := map[uint64]string{} // recent refusals by sequence, for resends
	for {
		var m ctlMsg
		select {
		case <-ctx.Done():
			return
		case <-l.done:
			return
		case m = <-l.ctlIn:
		}
		a := m.assign
		if a == nil {
			continue
		}
		ack := frame.AssignAck{Seq: a.Seq, OK: true}
		switch {
		case a.Seq <= l.lastApplied:
			// A resend of one settled before the connection changed.
			if reason, ok := refused[a.Seq]; ok {
				ack.OK, ack.Reason = false, reason
			}
		case a.Seq != l.lastApplied+1:
			// Not settled: the master resends it in order after HELLO.
			ack.OK, ack.Reason = false, fmt.Sprintf("assignment %d out of order: last settled %d", a.Seq, l.lastApplied)
			e.log.Warn("pad assignment out of order; refused", "peer", l.peer, "seq", a.Seq, "last", l.lastApplied)
		default:
			var err error
			if l.src == nil {
				err = errors.New("no QKD source configured on " + e.cfg.NodeID + " for link " + l.peer)
			} else {
				err = l.applyAssign(ctx, a)
			}
			if ctx.Err() != nil {
				return // not settled: the master resends it to the next run
			}
			if err != nil {
				ack.OK, ack.Reason = false, err.Error()
				e.log.Warn("cannot apply pad assignment; refused", "peer", l.peer, "seq", a.Seq, "err", err)
				refused[a.Seq] = ack.Reason
			} else {
				e.stats.AssignsApplied.Add(1)
			}
			delete(refused, a.Seq-helloWindow)
			l.mu.Lock()
			l.lastApplied = a.Seq
			if !ack.OK {
				l.refusedBits |= 1
			}
			l.refusedBits <<= 1
			l.mu.Unlock()
		}
		if b, err := frame.AppendAssignAck(nil, &ack); err == nil {
			if s := l.current(); s != nil {
				l.sendCtl(s, b)
			}
		}
	}
}

func (l *link) applyAssign(ctx context.Context, a *frame.Assign) error {
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
	r := l.rx
	if a.Dir == frame.DirSlaveToMaster {
		r = l.tx
	}
	for _, b := range blocks {
		if err := appendWait(ctx, r, b); err != nil {
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
// space as they release pad.
func appendWait(ctx context.Context, r *ringstore.PadRing, b ringstore.Block) error {
	var t *time.Ticker
	for {
		err := r.Append(b)
		if !errors.Is(err, ringstore.ErrRingFull) {
			if t != nil {
				t.Stop()
			}
			return err
		}
		if t == nil {
			t = time.NewTicker(2 * time.Millisecond)
			defer t.Stop()
		}
		select {
		case <-t.C:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// sendCtl writes an assignment frame; if the connection fails meanwhile,
// HELLO on the next one settles what got through.
func (l *link) sendCtl(s *session, b []byte) {
	if err := s.sendCtl(b); err != nil && s.ctx.Err() == nil {
		l.e.log.Warn("cannot send an assignment frame", "peer", l.peer, "err", err)
	}
}

func zeroBlocks(bs []ringstore.Block) {
	for _, b := range bs {
		clear(b.Data)
	}
}
