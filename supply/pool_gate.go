package supply

import (
	"context"
	"errors"
	"fmt"
	"sync"
)

// errReconciling marks supply refused because the pools shared with a
// node are being reconciled (pool_sync.go).
var errReconciling = errors.New("pools are being reconciled")

// supplyGate pauses the supply of keys shared with one remote node while
// a reconciliation compares the two ends' pools. What moves keys into or
// out of those pools on this node's initiative passes it: relays to the
// node (background refills and operators' relays), enc_keys for its SAEs
// and reservations for them. Each holds the gate for as long as it has
// something in flight (a relay until every frame is settled, an enc_keys
// until its assignment is acknowledged or given up), so that once pause
// returns, nothing this node started can still add a key to the pools,
// or take one out, behind the inventory's back.
//
// What is not gated: dec_keys (it hands out keys assigned here, which no
// rule drops at the other end), the handling of other nodes' messages
// (RELAY frames, ASSIGN, ASSIGN_CANCEL, STREAM), TTL expiry, and key
// streams. Messages settle what the other end started, which the other
// end's gate holds back; expiry only removes keys, which a drop then
// skips. A stream's owner takes its keys out of its out pool before it
// announces them, and uses one only once the other node took it out of
// its in pool: if a round drops an announced key at the other node
// first, the other node refuses it and the owner chooses another (or
// fails the index closed, streams.go).
type supplyGate struct {
	mu    sync.Mutex
	peers map[string]*gatePeer
}

type gatePeer struct {
	// boot ends when the remote node restarts: relays to it begun
	// before cannot complete, and the round after the restart would
	// otherwise wait out their completion timeout.
	boot       context.Context
	cancelBoot context.CancelCauseFunc

	paused  int           // pauses in force (a node can be coordinator of one round and answer another)
	active  int           // holders of the gate
	idle    chan struct{} // closed when active falls to 0, if a pause waits
	resumed chan struct{} // closed when paused falls to 0, if an enter waits
}

func newSupplyGate() *supplyGate { return &supplyGate{peers: map[string]*gatePeer{}} }

func (g *supplyGate) peer(remote string) *gatePeer {
	p := g.peers[remote]
	if p == nil {
		p = &gatePeer{}
		p.boot, p.cancelBoot = context.WithCancelCause(context.Background())
		g.peers[remote] = p
	}
	return p
}

// errPeerRestarted ends relays to a node that restarted since they began.
var errPeerRestarted = errors.New("the destination node restarted: keys in flight to it are discarded")

// relayContext returns ctx, ended also when remote restarts, for a relay
// to remote.
func (g *supplyGate) relayContext(ctx context.Context, remote string) (context.Context, context.CancelFunc) {
	g.mu.Lock()
	boot := g.peer(remote).boot
	g.mu.Unlock()
	rctx, cancel := context.WithCancelCause(ctx)
	stop := context.AfterFunc(boot, func() { cancel(errPeerRestarted) })
	return rctx, func() { stop(); cancel(context.Canceled) }
}

// peerRestarted ends the relays to remote in flight.
func (g *supplyGate) peerRestarted(remote string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	p := g.peer(remote)
	p.cancelBoot(errPeerRestarted)
	p.boot, p.cancelBoot = context.WithCancelCause(context.Background())
}

// enter lets one operation supply keys shared with remote, waiting while
// a reconciliation with remote is under way, until ctx ends. The caller
// calls leave once the operation has nothing left in flight.
func (g *supplyGate) enter(ctx context.Context, remote string) (leave func(), err error) {
	g.mu.Lock()
	for {
		p := g.peer(remote)
		if p.paused == 0 {
			p.active++
			g.mu.Unlock()
			var once sync.Once
			return func() { once.Do(func() { g.leave(remote) }) }, nil
		}
		if p.resumed == nil {
			p.resumed = make(chan struct{})
		}
		resumed := p.resumed
		g.mu.Unlock()
		select {
		case <-resumed:
		case <-ctx.Done():
			return nil, fmt.Errorf("%w with node %s after a restart; retry shortly", errReconciling, remote)
		}
		g.mu.Lock()
	}
}

func (g *supplyGate) leave(remote string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	p := g.peer(remote)
	p.active--
	if p.active == 0 && p.idle != nil {
		close(p.idle)
		p.idle = nil
	}
}

// paused says whether supply with remote is paused.
func (g *supplyGate) paused(remote string) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.peer(remote).paused > 0
}

// pause stops new supply with remote at once, and waits until what was
// in flight has settled or ctx ends. Whatever it returns, the caller
// calls resume once.
func (g *supplyGate) pause(ctx context.Context, remote string) error {
	g.mu.Lock()
	p := g.peer(remote)
	p.paused++
	if p.active == 0 {
		g.mu.Unlock()
		return nil
	}
	if p.idle == nil {
		p.idle = make(chan struct{})
	}
	idle := p.idle
	g.mu.Unlock()
	select {
	case <-idle:
		return nil
	case <-ctx.Done():
		g.mu.Lock()
		active := p.active
		g.mu.Unlock()
		return fmt.Errorf("%d operations with node %s still in flight: %w", active, remote, ctx.Err())
	}
}

// resume undoes one pause.
func (g *supplyGate) resume(remote string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	p := g.peer(remote)
	p.paused--
	if p.paused == 0 && p.resumed != nil {
		close(p.resumed)
		p.resumed = nil
	}
}
