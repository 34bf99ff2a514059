package supply

import (
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/qrelay/qrelay/internal/rate"
)

// fillBatch is the most keys one refill relay asks for: large enough to
// fill frames (2,048 keys of 32 bytes each), small enough that a lost
// batch costs little.
const fillBatch = 16384

// fillParallel is how many refill relays a filler runs at once.
const fillParallel = 4

// takeRateTau is the time constant of the rates of keys taken, by a
// remote's out pool (the refill policy) and by an SAE pair (its
// reservation).
const takeRateTau = 2 * time.Second

// filler keeps the out pool for one remote node between its watermarks by
// relaying keys to it. The low watermark follows demand: it is at least
// the configured pools.low, and at least twice the keys the SAEs take
// while one refill relay completes (measured consumption × measured relay
// latency), so a pool refilled from the low watermark does not run dry.
type filler struct {
	remote string
	wake   chan struct{}

	mu         sync.Mutex
	taken      uint64     // keys taken out of the out pool for remote
	rate       rate.Meter // of taken
	latency    float64    // seconds per refill relay, smoothed
	lastErrLog time.Time
}

// startFillers starts a filler for every remote node that serves an SAE
// this node's SAEs may exchange keys with (Config.SAENodes) and for
// every key stream this node owns.
func (svc *Service) startFillers() {
	remotes := slices.Clone(svc.cfg.SAENodes)
	// Key streams this node owns take their keys from its out pool too.
	for _, s := range svc.streams {
		if s.owner {
			remotes = append(remotes, s.remote)
		}
	}
	for _, r := range remotes {
		if r == svc.cfg.NodeID || svc.fillers[r] != nil {
			continue
		}
		svc.fillers[r] = &filler{remote: r, wake: make(chan struct{}, 1), rate: rate.Meter{Tau: takeRateTau}}
	}
	for _, f := range svc.fillers {
		svc.wg.Add(1)
		go func() { defer svc.wg.Done(); svc.fill(f) }()
	}
}

// wakeFiller makes the filler for remote look at its pool now.
func (svc *Service) wakeFiller(remote string) {
	if f := svc.fillers[remote]; f != nil {
		select {
		case f.wake <- struct{}{}:
		default:
		}
	}
}

// took records keys handed out of the out pool for remote.
func (svc *Service) took(remote string, keys int) {
	f := svc.fillers[remote]
	if f == nil {
		return
	}
	f.mu.Lock()
	f.taken += uint64(keys)
	f.mu.Unlock()
	svc.wakeFiller(remote)
}

// lowWatermark is the out pool's effective low watermark for remote.
func (svc *Service) lowWatermark(remote string) int {
	low, high := svc.cfg.Pools.Low, svc.cfg.Pools.High
	f := svc.fillers[remote]
	if f == nil {
		return low
	}
	f.mu.Lock()
	need := int(math.Ceil(2 * f.rate.PerSecond() * f.latency))
	f.mu.Unlock()
	return min(max(low, need), high)
}

func (f *filler) updateRate(now time.Time) {
	f.mu.Lock()
	f.rate.Sample(now, f.taken)
	f.mu.Unlock()
}

func (svc *Service) fill(f *filler) {
	p, err := svc.sink.pool(f.remote, RoleOut)
	if err != nil {
		svc.log.Error("key pool filler stopped: pool cannot open", "remote", f.remote, "err", err)
		return
	}
	// Keys of the ETSI 014 key size, or of a stream key's if a stream
	// takes from this pool and needs more (enc_keys cuts a longer key to
	// its size at both ends alike).
	size := svc.cfg.KeySize / 8
	for _, s := range svc.streams {
		if s.owner && s.remote == f.remote {
			size = max(size, StreamKeySize)
		}
	}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	// refilling holds from the moment the pool falls below its low
	// watermark until a refill has brought it to its high one: a refill
	// the link's pad (or a failed relay) cut short between the watermarks
	// goes on at the next look, rather than waiting for the pool to drain
	// below the low watermark again.
	refilling := false
	for {
		select {
		case <-svc.ctx.Done():
			return
		case <-f.wake:
		case <-tick.C:
		}
		f.updateRate(time.Now())
		if !refilling && p.Stats().Stock >= svc.lowWatermark(f.remote) {
			continue
		}
		// Refill up to the high watermark, with a few relays at once,
		// since one relay call waits a round trip per frame and a busy
		// API drains a pool faster than that. The relays are asked for
		// once per look: keys the SAEs take meanwhile are made up at the
		// next low watermark, in full batches, not by relays of a few
		// keys each as they go.
		var wg sync.WaitGroup
		var inFlight atomic.Int64
		var failed atomic.Bool
		short := false // the pad ran out before the high watermark
		for !failed.Load() && svc.ctx.Err() == nil {
			st := p.Stats()
			want := min(svc.cfg.Pools.High-st.Stock-int(inFlight.Load()), st.Capacity-st.Stock-int(inFlight.Load()), fillBatch)
			if want <= 0 {
				break // the high watermark (or full) with what is in flight
			}
			if spare, ok := svc.cfg.SpareKeys(f.remote, size); ok && spare-int(inFlight.Load()) < want {
				if want = spare - int(inFlight.Load()); want <= 0 {
					short = true
					break
				}
			}
			if inFlight.Load() >= fillParallel*fillBatch {
				// Wait for one to finish before measuring again.
				wg.Wait()
				continue
			}
			inFlight.Add(int64(want))
			wg.Go(func() {
				defer inFlight.Add(-int64(want))
				if !svc.refill(f, want, size) {
					failed.Store(true)
				}
			})
		}
		wg.Wait()
		refilling = short || failed.Load()
		if failed.Load() {
			select {
			case <-svc.ctx.Done():
				return
			case <-time.After(200 * time.Millisecond):
			}
		}
	}
}

// refill relays want keys to f's remote, and says whether it worked.
func (svc *Service) refill(f *filler, want, size int) bool {
	t0 := time.Now()
	res, err := svc.Relay(svc.ctx, f.remote, want, size)
	if err != nil {
		f.mu.Lock()
		quiet := time.Since(f.lastErrLog) < 10*time.Second
		if !quiet {
			f.lastErrLog = time.Now()
		}
		f.mu.Unlock()
		if !quiet && svc.ctx.Err() == nil {
			svc.log.Warn("key pool refill incomplete; retrying", "remote", f.remote, "asked", want, "delivered", res.Delivered, "err", err)
		}
		return false
	}
	f.mu.Lock()
	d := time.Since(t0).Seconds() * float64(fillBatch) / float64(want) // per full batch
	if f.latency == 0 {
		f.latency = d
	} else {
		f.latency += 0.2 * (d - f.latency)
	}
	f.mu.Unlock()
	return true
}
