package node

import (
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/qrelay/qrelay/controlplane"
)

// fillBatch is the most keys one refill relay asks for: large enough to
// fill frames (2,048 keys of 32 bytes each), small enough that a lost
// batch costs little.
const fillBatch = 16384

// fillParallel is how many refill relays a filler runs at once.
const fillParallel = 4

// filler keeps the out pool for one remote node between its watermarks by
// relaying keys to it. The low watermark follows demand: it is at least
// the configured pools.low, and at least twice the keys the SAEs take
// while one refill relay completes (measured consumption × measured relay
// latency), so a pool refilled from the low watermark does not run dry.
type filler struct {
	remote string
	wake   chan struct{}

	mu         sync.Mutex
	rate       keyRate // keys taken by enc_keys
	latency    float64 // seconds per refill relay, smoothed
	lastErrLog time.Time
}

// startFillers starts a filler for every remote node that serves an SAE
// this node's SAEs may exchange keys with.
func (n *Node) startFillers() {
	var remotes []string
	if n.cfg.API.ETSI014.Listen != "" {
		for _, s := range n.cfg.SAEs {
			remotes = append(remotes, s.Node)
		}
	}
	// Key streams this node owns take their keys from its out pool too.
	for _, s := range n.streams {
		if s.owner {
			remotes = append(remotes, s.remote)
		}
	}
	for _, r := range remotes {
		if r == n.cfg.Node.ID || n.fillers[r] != nil {
			continue
		}
		n.fillers[r] = &filler{remote: r, wake: make(chan struct{}, 1)}
	}
	for _, f := range n.fillers {
		n.wg.Add(1)
		go func() { defer n.wg.Done(); n.fill(f) }()
	}
}

// wakeFiller makes the filler for remote look at its pool now.
func (n *Node) wakeFiller(remote string) {
	if f := n.fillers[remote]; f != nil {
		select {
		case f.wake <- struct{}{}:
		default:
		}
	}
}

// took records keys handed out of the out pool for remote.
func (n *Node) took(remote string, keys int) {
	f := n.fillers[remote]
	if f == nil {
		return
	}
	f.mu.Lock()
	f.rate.add(keys)
	f.mu.Unlock()
	n.wakeFiller(remote)
}

// lowWatermark is the out pool's effective low watermark for remote.
func (n *Node) lowWatermark(remote string) int {
	low, high := n.cfg.Pools.Low, n.cfg.Pools.High
	f := n.fillers[remote]
	if f == nil {
		return low
	}
	f.mu.Lock()
	need := int(math.Ceil(2 * f.rate.perSec * f.latency))
	f.mu.Unlock()
	return min(max(low, need), high)
}

func (f *filler) updateRate(now time.Time) {
	f.mu.Lock()
	f.rate.update(now)
	f.mu.Unlock()
}

func (n *Node) fill(f *filler) {
	p, err := n.sink.pool(f.remote, roleOut)
	if err != nil {
		n.log.Error("key pool filler stopped: pool cannot open", "remote", f.remote, "err", err)
		return
	}
	// Keys of the ETSI 014 key size, or of a stream key's if a stream
	// takes from this pool and needs more (enc_keys cuts a longer key to
	// its size at both ends alike).
	size := n.cfg.API.ETSI014.KeySize / 8
	for _, s := range n.streams {
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
		case <-n.ctx.Done():
			return
		case <-f.wake:
		case <-tick.C:
		}
		f.updateRate(time.Now())
		if !refilling && p.Stats().Stock >= n.lowWatermark(f.remote) {
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
		for !failed.Load() && n.ctx.Err() == nil {
			st := p.Stats()
			want := min(n.cfg.Pools.High-st.Stock-int(inFlight.Load()), st.Capacity-st.Stock-int(inFlight.Load()), fillBatch)
			if want <= 0 {
				break // the high watermark (or full) with what is in flight
			}
			if spare, ok := n.spareKeys(f.remote, size); ok && spare-int(inFlight.Load()) < want {
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
				if !n.refill(f, want, size) {
					failed.Store(true)
				}
			})
		}
		wg.Wait()
		refilling = short || failed.Load()
		if failed.Load() {
			select {
			case <-n.ctx.Done():
				return
			case <-time.After(200 * time.Millisecond):
			}
		}
	}
}

// spareKeys is how many keys of size bytes a background refill to remote
// may relay now: as many as the outgoing pad of the first hop holds above
// its reserve. Refills can wait; a slow QKD link whose every byte of pad
// went into pools would stay below min_stock, so excluded from every
// route, for as long as the pools want keys. The reserve is the level at
// which routing admits the link (min_stock and its hysteresis) and as much
// again as the hysteresis, for the pad a relay spends beyond its keys (the
// frames' MAC keys): a reserve of the bare admission level left the link
// hovering 32 bytes short of it. ok is false when there is no local link
// to the first hop to judge (the relay then fails on its own).
func (n *Node) spareKeys(remote string, size int) (spare int, ok bool) {
	hop := remote
	if n.router != nil {
		if nh, found := n.router.NextHop(remote); found {
			hop = nh
		}
	}
	l := n.byPeer[hop]
	if l == nil {
		return 0, false
	}
	admit := controlplane.ReadmitStock(uint64(l.cfg.MinStock))
	stock, reserve := l.tx.Stats().Stock, admit+(admit-uint64(l.cfg.MinStock))
	if stock <= reserve {
		return 0, true
	}
	return int(min((stock-reserve)/uint64(size), math.MaxInt32)), true
}

// refill relays want keys to f's remote, and says whether it worked.
func (n *Node) refill(f *filler, want, size int) bool {
	t0 := time.Now()
	res, err := n.Relay(n.ctx, f.remote, want, size)
	if err != nil {
		f.mu.Lock()
		quiet := time.Since(f.lastErrLog) < 10*time.Second
		if !quiet {
			f.lastErrLog = time.Now()
		}
		f.mu.Unlock()
		if !quiet && n.ctx.Err() == nil {
			n.log.Warn("key pool refill incomplete; retrying", "remote", f.remote, "asked", want, "delivered", res.Delivered, "err", err)
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
