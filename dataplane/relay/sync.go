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
// keeper appends, so the state holds until the agreement.
func (l *link) padState() frame.Sync {
	l.appendMu.Lock()
	defer l.appendMu.Unlock()
	var y frame.Sync
	txd, rxd := l.dirs()
	st := l.tx.Stats()
	y.Used[txd], y.Head[txd] = st.Reserved, st.Head
	y.Used[rxd], y.Head[rxd] = l.rxw.state()
	return y
}

// agreement computes the pad both ends keep from the two ends' states.
func agreement(master, slave *frame.Sync) frame.SyncAgree {
	var a frame.SyncAgree
	for d := range a.From {
		a.From[d] = max(master.Used[d], slave.Used[d])
		a.To[d] = max(a.From[d], min(master.Head[d], slave.Head[d]))
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
func (l *link) settle(ctx context.Context, unacked []*assignRec, slave *frame.Sync) (settled, dropped int) {
	ring := [2]*ringstore.PadRing{l.tx, l.rx} // by direction, at the master
	heads := [2]uint64{l.tx.Stats().Head, l.rx.Stats().Head}
	var stop [2]bool
	for _, r := range unacked {
		d := r.dir
		if !stop[d] && r.pos == heads[d] && slave.Head[d] >= r.pos+uint64(r.bytes) {
			ok := true
			for _, b := range r.blocks {
				if err := appendWait(ctx, ring[d], b); err != nil {
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
	return settled, dropped
}

// agreeMaster answers the slave's SYNC on session s: it moves this end's
// rings to the agreement, sends SYNC_AGREE and publishes s. It reports
// whether s is now the link's session.
func (l *link) agreeMaster(s *session, slave *frame.Sync, settled, dropped int) bool {
	mine := l.padState()
	a := agreement(&mine, slave)
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
	burnt, err := resyncRing(l.tx, a.From[txd], a.To[txd])
	l.padMu.Unlock()
	if err != nil {
		return burnt, fmt.Errorf("tx ring: %w", err)
	}
	n, err := l.rxw.resync(a.From[rxd], a.To[rxd])
	if err != nil {
		return burnt + n, fmt.Errorf("rx ring: %w", err)
	}
	l.txNotify()
	return burnt + n, nil
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
