//go:build linux

package ringstore

// This file holds the watermark callbacks (PoolConfig.OnLow, OnHigh):
// queued under the pool's lock, delivered in order after it.

type poolEvent struct {
	high  bool
	stock int
}

// watermarksLocked queues the watermark callbacks for a stock change from
// before to p.stock.
func (p *Pool) watermarksLocked(before int) {
	after := p.stock
	if p.cfg.OnLow != nil && before >= p.cfg.Low && after < p.cfg.Low {
		p.events = append(p.events, poolEvent{high: false, stock: after})
	}
	if p.cfg.OnHigh != nil && before < p.cfg.High && after >= p.cfg.High {
		p.events = append(p.events, poolEvent{high: true, stock: after})
	}
}

// unlock releases p.mu and delivers queued watermark events. One goroutine
// at a time delivers, in queue order, without the lock; events queued
// meanwhile (by other goroutines, or by the callbacks themselves calling the
// pool) are delivered by the same goroutine before it returns.
func (p *Pool) unlock() {
	if p.delivering || len(p.events) == 0 {
		p.mu.Unlock()
		return
	}
	p.delivering = true
	for len(p.events) > 0 {
		evs := p.events
		p.events = nil
		p.mu.Unlock()
		for _, e := range evs {
			if e.high {
				p.cfg.OnHigh(e.stock)
			} else {
				p.cfg.OnLow(e.stock)
			}
		}
		p.mu.Lock()
	}
	p.delivering = false
	p.mu.Unlock()
}
