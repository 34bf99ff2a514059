package supply

import (
	"context"
	"errors"
	"math"
	"sync"
	"time"

	"github.com/qrelay/qrelay/internal/rate"
	"github.com/qrelay/qrelay/ringstore"
)

// Reservations: keys set aside ahead of demand for one pair of SAEs
// (master here, slave at a remote node), assigned at both ends before any
// request asks for them. enc_keys hands them out without waiting for the
// slave's node, which already holds the same assignment, so the slave's
// dec_keys never races and the request costs no round trip. A pair gets a
// reservation once it has asked for keys; its size follows the pair's
// rate, so that about 200 ms of demand waits ready.
//
// The keys stay in the out pool, in locked memory, marked as assigned
// (ringstore.Pool.ReserveNext); enc_keys takes them by ID. The slave can
// fetch a reserved key only by its ID, which nobody but this node knows
// until enc_keys hands it to the master.
const (
	reserveMin    = 256
	reserveMax    = 8192
	reserveWindow = 200 * time.Millisecond
)

type reservation struct {
	remote, master, slave string
	wake                  chan struct{}

	mu    sync.Mutex
	ids   []ringstore.KeyID // reserved and acknowledged, oldest first
	taken uint64            // keys the pair took
	rate  rate.Meter        // of taken
}

// reservationFor returns the reservation of a pair, starting it the first
// time the pair asks for keys.
func (svc *Service) reservationFor(remote, master, slave string) *reservation {
	key := master + "\x00" + slave
	svc.resMu.Lock()
	defer svc.resMu.Unlock()
	if r := svc.reservations[key]; r != nil {
		return r
	}
	r := &reservation{remote: remote, master: master, slave: slave, wake: make(chan struct{}, 1), rate: rate.Meter{Tau: takeRateTau}}
	svc.reservations[key] = r
	svc.wg.Add(1)
	go func() { defer svc.wg.Done(); svc.keepReserved(r) }()
	return r
}

// take removes the IDs of the count oldest reserved keys, or returns nil if
// fewer are reserved.
func (r *reservation) take(count int) []ringstore.KeyID {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.taken += uint64(count)
	if len(r.ids) < count {
		r.poke()
		return nil
	}
	ids := append([]ringstore.KeyID(nil), r.ids[:count]...)
	r.ids = r.ids[count:]
	if len(r.ids) < r.wantLocked()/2 {
		r.poke()
	}
	return ids
}

func (r *reservation) poke() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

func (r *reservation) wantLocked() int {
	return int(min(reserveMax, max(reserveMin, math.Ceil(r.rate.PerSecond()*reserveWindow.Seconds()))))
}

func (r *reservation) updateRate(now time.Time) {
	r.mu.Lock()
	r.rate.Sample(now, r.taken)
	r.mu.Unlock()
}

// keepReserved tops the reservation up whenever it falls below its size.
func (svc *Service) keepReserved(r *reservation) {
	p, err := svc.sink.pool(r.remote, RoleOut)
	if err != nil {
		svc.log.Error("key reservation stopped: pool cannot open", "remote", r.remote, "err", err)
		return
	}
	asg, err := ownerOf(Assignment{Master: r.master, Slaves: []string{r.slave}})
	if err != nil {
		svc.log.Error("key reservation stopped", "remote", r.remote, "master", r.master, "slave", r.slave, "err", err)
		return
	}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-svc.ctx.Done():
			return
		case <-r.wake:
		case <-tick.C:
		}
		r.updateRate(time.Now())
		for svc.ctx.Err() == nil {
			r.mu.Lock()
			short := r.wantLocked() - len(r.ids)
			r.mu.Unlock()
			if short <= 0 {
				break
			}
			if !svc.reserveBatch(p, r, asg, short) {
				break
			}
		}
	}
}

// reserveBatch reserves up to short keys for r and has them assigned at
// the slave's node, and says whether it did. It does nothing while the
// pools shared with r's node are being reconciled.
func (svc *Service) reserveBatch(p *ringstore.Pool, r *reservation, asg ringstore.Owner, short int) bool {
	if _, ok := svc.cfg.Routes.NextHop(r.remote); !ok || svc.gate.paused(r.remote) {
		// No route: the assignment could not be sent, and the keys
		// reserved for it would be discarded.
		return false
	}
	leave, err := svc.gate.enter(svc.ctx, r.remote)
	if err != nil {
		return false
	}
	defer leave()
	ids, err := p.ReserveNext(min(short, ringstore.MaxBatch), asg)
	if errors.Is(err, ringstore.ErrPoolEmpty) {
		svc.wakeFiller(r.remote)
		return false
	}
	if err != nil {
		svc.log.Warn("key reservation failed", "remote", r.remote, "master", r.master, "slave", r.slave, "err", err)
		return false
	}
	ctx, cancel := context.WithTimeout(svc.ctx, svc.cfg.AssignTimeout)
	err = svc.assigner.assign(ctx, r.remote, r.master, []string{r.slave}, ids)
	cancel()
	if err != nil {
		// Reserved here, maybe assigned there: nobody may have
		// them, at either end.
		if keys, terr := p.TakeByIDs(ids); terr == nil {
			for _, k := range keys {
				clear(k.Bytes)
			}
		}
		svc.assigner.cancel(r.remote, ids)
		svc.metrics.AssignFailed(r.remote)
		svc.log.Warn("key reservation not confirmed by the slave's node; its keys were discarded", "remote", r.remote, "keys", len(ids), "err", err)
		return false
	}
	r.mu.Lock()
	r.ids = append(r.ids, ids...)
	r.mu.Unlock()
	return true
}
