package supply

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/qrelay/qrelay/dataplane/relay"
	"github.com/qrelay/qrelay/internal/audit"
	"github.com/qrelay/qrelay/ringstore"
)

// Config is what the key-supply service needs from the node around it.
type Config struct {
	NodeID string
	// KeySize is the size in bits of the keys served to SAEs (a multiple
	// of 8; 0 when the node serves no SAE API); MaxKeysPerRequest is what
	// Status reports.
	KeySize, MaxKeysPerRequest int
	// AssignTimeout bounds the wait for the slave's node to acknowledge
	// an assignment (and for a paused gate to reopen for enc_keys).
	AssignTimeout time.Duration
	// CompletionTimeout is the relay's: how long a relay waits for its
	// completions, which bounds how long a pause of supply waits.
	CompletionTimeout time.Duration

	Pools PoolConfig
	// Meta is the metadata store in durable mode (nil: memory mode);
	// PoolDir is then the directory of the pools' slot files.
	Meta    *ringstore.Meta
	PoolDir string
	Audit   *audit.Log

	// NodeOf says which node serves SAE sae, per the node's config (it
	// may change on reload).
	NodeOf func(sae string) (node string, ok bool)
	// SAENodes are the nodes whose SAEs this node's SAEs take keys with
	// (empty when no SAE API is served): each gets a pool filler.
	SAENodes []string
	// Streams are the key streams this node shares with other nodes.
	Streams []StreamConfig

	// Relay relays keys to node dst now (the relay engine's Relay).
	Relay func(ctx context.Context, dst string, keys, size int) (relay.Result, error)
	// SendRouted sends a routed control message of kind to node dst.
	SendRouted func(dst string, kind uint16, payload []byte) error
	// Routes is the control plane's routing table.
	Routes Routes
	// SpareKeys is how many keys of size bytes a background refill to
	// remote may relay now, judged by the pad stock of the first hop; ok
	// is false when there is no local link to judge.
	SpareKeys func(remote string, size int) (spare int, ok bool)

	Logger *slog.Logger
}

// PoolConfig sizes the end-to-end key pools (the config's pools:).
type PoolConfig struct {
	Slots, SlotSize, Low, High int
	// TTL bounds a key's wait in a pool; OrphanTTL how long an orphan
	// waits for its slave (0: until TTL).
	TTL, OrphanTTL time.Duration
}

// StreamConfig is one key stream: Name is shared with node Remote; a key
// is wanted every Interval.
type StreamConfig struct {
	Name, Remote string
	Interval     time.Duration
}

// Routes is what supply asks of the routing table.
type Routes interface {
	// NextHop is the neighbour on the way to dst.
	NextHop(dst string) (string, bool)
	// Reachable lists the nodes with a route.
	Reachable() []string
}

// Service is the node's key supply. It implements KeyService for the
// front ends.
type Service struct {
	cfg     Config
	log     *slog.Logger
	meta    *ringstore.Meta
	audit   *audit.Log
	metrics *metrics

	sink     *poolSet
	assigner *assigner
	gate     *supplyGate // pauses supply with a node while pools are reconciled
	syncer   *poolSyncer // reconciles pools with other nodes after restarts
	orphans  *orphanTracker
	fillers  map[string]*filler    // by remote node; fixed after New
	streams  map[string]*KeyStream // by name; fixed after New

	resMu        sync.Mutex
	reservations map[string]*reservation // by master and slave SAE

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

var _ KeyService = (*Service)(nil)

// New makes the service; its goroutines run from Start until ctx ends or
// Close. It reads the orphans a durable node recorded before it stopped.
func New(ctx context.Context, cfg Config) (*Service, error) {
	switch {
	case cfg.NodeID == "":
		return nil, errors.New("supply: config: no node ID")
	case cfg.NodeOf == nil || cfg.Relay == nil || cfg.SendRouted == nil || cfg.Routes == nil || cfg.SpareKeys == nil:
		return nil, errors.New("supply: config: NodeOf, Relay, SendRouted, Routes and SpareKeys are required")
	case cfg.KeySize < 0 || cfg.KeySize%8 != 0:
		return nil, fmt.Errorf("supply: config: key size %d bits: want a multiple of 8 (0 with no SAE API)", cfg.KeySize)
	}
	svc := &Service{
		cfg: cfg, log: cfg.Logger, meta: cfg.Meta, audit: cfg.Audit,
		fillers: map[string]*filler{}, streams: map[string]*KeyStream{}, reservations: map[string]*reservation{},
	}
	if svc.log == nil {
		svc.log = slog.Default()
	}
	svc.metrics = newMetrics(svc)
	svc.ctx, svc.cancel = context.WithCancel(ctx)
	svc.sink = newPoolSet(cfg.NodeID, svc.openPool)
	svc.assigner = newAssigner(svc)
	svc.gate = newSupplyGate()
	svc.syncer = newPoolSyncer(svc, svc.gate)
	svc.orphans = newOrphanTracker(svc)
	if err := svc.orphans.load(); err != nil {
		svc.cancel()
		return nil, err
	}
	for _, s := range cfg.Streams {
		svc.streams[s.Name] = newKeyStream(svc, s.Name, s.Remote, streamAhead(s.Interval))
	}
	return svc, nil
}

// Start runs the service: the worker of routed messages, the
// reconciliation of pools, the fillers, and the opening of durable pools
// found on disk.
func (svc *Service) Start() {
	svc.assigner.start()
	svc.syncer.start()
	svc.startFillers()
	svc.openStoredPools()
}

// Close stops the service's goroutines, waits for them and zeroises the
// keys of its streams. The pools stay open for ClosePools.
func (svc *Service) Close() {
	svc.cancel()
	svc.wg.Wait()
	for _, s := range svc.streams {
		s.close()
	}
}

// ClosePools closes every open pool, which persists their marks.
func (svc *Service) ClosePools() error {
	var errs []error
	for _, pe := range svc.sink.all() {
		if err := pe.Pool.Close(); err != nil {
			errs = append(errs, fmt.Errorf("closing the %s pool for %s: %w", pe.Role, pe.Remote, err))
		}
	}
	return errors.Join(errs...)
}

// Sink is where the relay engine delivers end-to-end keys.
func (svc *Service) Sink() relay.Sink { return svc.sink }

// Relay relays keys end to end to node dst now. New keys for the pools
// shared with dst wait while those are being reconciled, and the
// reconciliation waits for this relay; a relay to a node that restarts
// meanwhile ends at once.
func (svc *Service) Relay(ctx context.Context, dst string, keys, size int) (relay.Result, error) {
	leave, err := svc.gate.enter(ctx, dst)
	if err != nil {
		return relay.Result{}, err
	}
	defer leave()
	ctx, cancel := svc.gate.relayContext(ctx, dst)
	defer cancel()
	return svc.cfg.Relay(ctx, dst, keys, size)
}

// Routed is the relay engine's hook for routed control messages of the
// kinds supply speaks.
func (svc *Service) Routed(src string, kind uint16, payload []byte) {
	svc.assigner.routed(src, kind, payload)
}

// RoutesChanged tells the service the routing table changed: nodes newly
// reachable are greeted at once.
func (svc *Service) RoutesChanged() { svc.syncer.routesChanged() }

// Expire discards orphans past their deadline and, with a pools TTL, keys
// that waited longer than it. The node calls it periodically.
func (svc *Service) Expire(now time.Time) {
	svc.orphans.expire(now)
	if svc.cfg.Pools.TTL <= 0 {
		return
	}
	for _, pe := range svc.sink.all() {
		if k := pe.Pool.Expire(); k > 0 {
			svc.log.Info("keys expired: TTL reached before any application took them", "remote", pe.Remote, "role", pe.Role, "keys", k, "ttl", svc.cfg.Pools.TTL)
		}
	}
}

// Pool returns the pool shared with remote in role (RoleOut, RoleIn),
// opening it if need be.
func (svc *Service) Pool(remote, role string) (*ringstore.Pool, error) {
	return svc.sink.pool(remote, role)
}

// ExistingPool returns the pool shared with remote in role if it is open
// or, in durable mode, on disk; nil if there is none.
func (svc *Service) ExistingPool(remote, role string) (*ringstore.Pool, error) {
	return svc.sink.existing(remote, role, svc.meta)
}

// Pools lists the open pools, by remote then role.
func (svc *Service) Pools() []PoolEntry { return svc.sink.all() }

// LowWatermark is the out pool's effective low watermark for remote.
func (svc *Service) LowWatermark(remote string) int { return svc.lowWatermark(remote) }

// OrphansPending is the number of orphans awaiting their deadline, by
// remote.
func (svc *Service) OrphansPending() map[string]int { return svc.orphans.pending() }

// Collector is the key supply's Prometheus metrics (supply/metrics.go).
func (svc *Service) Collector() prometheus.Collector { return svc.metrics }

// CancelsPending returns, by node, how many keys this node cancelled
// whose cancel that node has not answered yet (supply/cancel.go).
func (svc *Service) CancelsPending() map[string]int { return svc.assigner.pendingByNode() }

// Stream returns the key stream name, or nil if there is none.
func (svc *Service) Stream(name string) *KeyStream { return svc.streams[name] }

// Streams lists the key streams, by name.
func (svc *Service) Streams() []*KeyStream {
	out := make([]*KeyStream, 0, len(svc.streams))
	for _, s := range svc.streams {
		out = append(out, s)
	}
	slices.SortFunc(out, func(a, b *KeyStream) int { return strings.Compare(a.name, b.name) })
	return out
}

// BootID is this node's boot ID in pool reconciliation.
func (svc *Service) BootID() uint64 { return svc.syncer.boot }

// ReconciledWith says whether this node has completed a round of pool
// reconciliation with remote at boot ID boot since it started.
func (svc *Service) ReconciledWith(remote string, boot uint64) bool {
	return svc.syncer.reconciledWith(remote, boot)
}

// saeNode returns the node that serves SAE id.
func (svc *Service) saeNode(id string) (string, bool) { return svc.cfg.NodeOf(id) }
