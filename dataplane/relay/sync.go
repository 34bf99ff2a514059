package relay

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/qrelay/qrelay/dataplane/frame"
	"github.com/qrelay/qrelay/ringstore"
)

// The agreement on the pads that opens every connection of a KM link
// (docs/kmlink.md section 6). The slave states, per direction, what it may
// have used and where its pad ends (SYNC); the master settles its
// unacknowledged assignments against that, computes what both ends hold
// and neither may have used, moves its rings there and tells the slave
// (SYNC_AGREE); the slave checks that obeying cannot make it reuse pad,
// and moves its rings too. Only then does the link carry anything else.

// dirs returns the directions this end's tx and rx rings serve.
func (l *link) dirs() (tx, rx frame.Dir) {
	if l.master {
		return frame.DirMasterToSlave, frame.DirSlaveToMaster
	}
	return frame.DirSlaveToMaster, frame.DirMasterToSlave
}

// padState is what this end holds and may have used, per direction. The
// link must have no published session (no reservations run) and only the
// keeper appends, so the state holds until the agreement. The pads are
// fresh when no agreement has moved them in this process and they hold
// nothing: this end cannot tell what it used before (a restart in memory
// mode), or never used any.
func (l *link) padState() frame.Sync {
	l.appendMu.Lock()
	defer l.appendMu.Unlock()
	var y frame.Sync
	txd, rxd := l.dirs()
	st := l.tx.Stats()
	y.Used[txd], y.Head[txd] = st.Reserved, st.Head
	y.Used[rxd], y.Head[rxd] = l.rxw.state()
	y.Fresh = !l.agreed && y.Used == [2]uint64{} && y.Head == [2]uint64{}
	return y
}

// agreement computes the pad both ends keep from the two ends' states.
// announced is, per direction, the end of the pad the master has assigned
// (its head, or the end of its last unacknowledged ASSIGN). When an end's
// pads are fresh it cannot say what it used in an earlier life, so the
// agreement starts both directions beyond every position either end may
// have used: a sender never uses pad beyond its receiver's head (the
// slave's, for MASTER_TO_SLAVE) or beyond what the master assigned.
// Nothing is kept then; the fresh end holds nothing to keep.
func agreement(master, slave *frame.Sync, announced [2]uint64) frame.SyncAgree {
	var a frame.SyncAgree
	for d := range a.From {
		a.From[d] = max(master.Used[d], slave.Used[d])
		a.To[d] = max(a.From[d], min(master.Head[d], slave.Head[d]))
		if master.Fresh || slave.Fresh {
			a.From[d] = max(a.From[d], master.Head[d], slave.Head[d], announced[d])
			a.To[d] = a.From[d]
		}
	}
	return a
}

// checkAgreement refuses an agreement that would make this end, whose
// SYNC was stated, reuse pad or claim pad it does not hold.
func checkAgreement(stated *frame.Sync, a *frame.SyncAgree) error {
	for d := range a.From {
		dir := frame.Dir(d)
		if a.From[d] < stated.Used[d] {
			return fmt.Errorf("SYNC_AGREE %v from %d is below this end's used %d: obeying would reuse pad", dir, a.From[d], stated.Used[d])
		}
		if a.To[d] > stated.Head[d] && a.To[d] != a.From[d] {
			return fmt.Errorf("SYNC_AGREE %v keeps pad up to %d, but this end's pad ends at %d", dir, a.To[d], stated.Head[d])
		}
	}
	return nil
}

// settle settles the master's unacknowledged assignments against the
// slave's heads (docs/kmlink.md section 7, "Across connections"): in order,
// per direction, one that follows on at the master's pad and that the
// slave's head covers was appended by the slave, so the master appends it
// too; from the first that is not, every later one of its direction is
// dropped. All their blocks are zeroised.
//
// It also returns, per direction, the end of the pad assigned: the ring's
// head or the end of the last unacknowledged ASSIGN, whichever is higher.
func (l *link) settle(ctx context.Context, unacked []*feedBatch, slave *frame.Sync) (settled, dropped int, announced [2]uint64) {
	ring := [2]*ringstore.PadRing{l.tx, l.rx} // by direction, at the master
	heads := [2]uint64{l.tx.Stats().Head, l.rx.Stats().Head}
	announced = heads
	var stop [2]bool
	for _, r := range unacked {
		d := r.dir
		announced[d] = max(announced[d], r.pos+uint64(r.bytes))
		if !stop[d] && r.pos == heads[d] && slave.Head[d] >= r.pos+uint64(r.bytes) {
			ok := true
			for _, b := range r.blocks {
				if err := l.appendWait(ctx, ring[d], b); err != nil {
					ok = false // the agreement drops what the slave has beyond
					break
				}
			}
			if ok {
				heads[d] += uint64(r.bytes)
				settled++
				l.e.stats.AssignsApplied.Add(1)
				l.e.stats.AssignsSettled.Add(1)
			} else {
				stop[d] = true
				dropped++
			}
		} else {
			stop[d] = true
			dropped++
		}
		zeroBlocks(r.blocks)
	}
	l.e.stats.AssignsDropped.Add(uint64(dropped))
	l.txNotify()
	return settled, dropped, announced
}

// agreeMaster answers the slave's SYNC on session s: it moves this end's
// rings to the agreement, sends SYNC_AGREE and publishes s. It reports
// whether s is now the link's session.
func (l *link) agreeMaster(s *session, slave *frame.Sync, settled, dropped int, announced [2]uint64) bool {
	mine := l.padState()
	a := agreement(&mine, slave, announced)
	burnt, err := l.moveTo(&a)
	if err != nil {
		l.failSync(s, "cannot move the pads to the agreement", err)
		return false
	}
	b, err := frame.AppendSyncAgree(nil, &a)
	if err == nil {
		err = s.ctl.write(b)
	}
	if err != nil {
		l.failSync(s, "cannot send SYNC_AGREE", err)
		return false
	}
	l.synced(s, &a, burnt, "assigns_settled", settled, "assigns_dropped", dropped)
	return true
}

// agreeSlave applies the master's SYNC_AGREE on session s, whose SYNC
// stated this end's pads, and publishes s.
func (l *link) agreeSlave(s *session, stated *frame.Sync, a *frame.SyncAgree) bool {
	if err := checkAgreement(stated, a); err != nil {
		l.failSync(s, "refusing the master's pad agreement", err)
		return false
	}
	burnt, err := l.moveTo(a)
	if err != nil {
		l.failSync(s, "cannot move the pads to the agreement", err)
		return false
	}
	l.synced(s, a, burnt)
	return true
}

func (l *link) failSync(s *session, what string, err error) {
	if s.ctx.Err() != nil {
		return // the connection ended first
	}
	l.e.log.Error(what+"; closing the connection", "peer", l.peer, "generation", s.conn.Generation(), "err", err)
	s.conn.Close(what + ": " + err.Error())
}

func (l *link) synced(s *session, a *frame.SyncAgree, burnt uint64, attrs ...any) {
	l.agreed = true
	l.publish(s)
	l.e.stats.Syncs.Add(1)
	l.e.stats.PadBurnt.Add(burnt)
	l.e.log.Info("relay session up: pads agreed", append([]any{"peer", l.peer, "generation", s.conn.Generation(), "master", l.master,
		"m2s_from", a.From[frame.DirMasterToSlave], "m2s_to", a.To[frame.DirMasterToSlave],
		"s2m_from", a.From[frame.DirSlaveToMaster], "s2m_to", a.To[frame.DirSlaveToMaster], "pad_burnt", burnt}, attrs...)...)
}

// moveTo moves both rings to the agreement and returns the pad burnt.
func (l *link) moveTo(a *frame.SyncAgree) (uint64, error) {
	l.appendMu.Lock()
	defer l.appendMu.Unlock()
	txd, rxd := l.dirs()
	l.padMu.Lock()
	before := l.tx.Stats()
	burnt, err := resyncRing(l.tx, a.From[txd], a.To[txd])
	l.padMu.Unlock()
	if err != nil {
		return burnt, fmt.Errorf("tx ring: %w", err)
	}
	l.auditMove(l.tx, before, a.From[txd], a.To[txd])
	before = l.rx.Stats()
	n, err := l.rxw.resync(a.From[rxd], a.To[rxd])
	if err != nil {
		return burnt + n, fmt.Errorf("rx ring: %w", err)
	}
	l.auditMove(l.rx, before, a.From[rxd], a.To[rxd])
	l.txNotify()
	return burnt + n, nil
}

// auditMove records what moving ring r from its state before to (from,
// to) burnt: stock below from, and pad beyond to. The rx ring's gaps were
// recorded as they were burnt, before.
func (l *link) auditMove(r *ringstore.PadRing, before ringstore.PadStats, from, to uint64) {
	l.burnt(r, before.Reserved, min(from, before.Head), burnSync)
	if to < before.Head {
		l.burnt(r, to, before.Head, burnDrop)
	}
}

// resyncRing moves r to (from, to). A ring that must skip further than it
// can while ranges of the ended connection are still held is asked again
// until they are released, which their holders do within moments (their
// connection has ended); it is a rare path with nothing to wait on, so it
// polls.
func resyncRing(r *ringstore.PadRing, from, to uint64) (uint64, error) {
	deadline := time.Now().Add(syncWait)
	for {
		n, err := r.Resync(from, to)
		if !errors.Is(err, ringstore.ErrResyncBusy) || time.Now().After(deadline) {
			return n, err
		}
		time.Sleep(time.Millisecond)
	}
}
