// Package node assembles one trusted node, the body of qrelayd, from its
// config: the metadata store, the pad rings and QKD sources of its links,
// the KM-link transport, the relay engine, the control plane, the admin
// API and the metrics endpoint. It owns their order of start and of
// shutdown, which is where a node either keeps its invariants or loses
// keys (DESIGN.md, "Running").
package node

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	stdlog "log"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/qrelay/qrelay/config"
	"github.com/qrelay/qrelay/controlplane"
	"github.com/qrelay/qrelay/dataplane/kmlink"
	"github.com/qrelay/qrelay/dataplane/relay"
	"github.com/qrelay/qrelay/internal/audit"
	"github.com/qrelay/qrelay/ringstore"
	"github.com/qrelay/qrelay/supply"
	"github.com/qrelay/qrelay/wgkey"
	"golang.zx2c4.com/wireguard/wgctrl"
)

// statsInterval is how often a node samples its links' pad stock, rates
// and QKD status and hands them to the control plane. The control plane
// re-advertises only what changed enough to matter, so sampling often is
// cheap; it bounds how late a QKD-module fault or a stock threshold is seen.
const statsInterval = 250 * time.Millisecond

// Options are what the daemon adds to the config.
type Options struct {
	Logger  *slog.Logger
	Version string
	// WireGuard gives, by interface name, the writers of WireGuard
	// devices embedded in this process (wgkey.NewDeviceWriter); the
	// config's other interfaces are reached through wgctrl.
	WireGuard map[string]wgkey.Writer
}

// Node is one running trusted node.
type Node struct {
	cfg     *config.Config
	log     *slog.Logger // with the node's ID
	baseLog *slog.Logger // without it, for components that add it
	version string
	started time.Time

	meta   *ringstore.Meta // durable mode only
	audit  *audit.Log      // in meta in durable mode, in memory otherwise
	links  []*nodeLink     // sorted by peer
	byPeer map[string]*nodeLink
	eng    *relay.Engine
	engine atomic.Pointer[relay.Engine] // eng, for the router's goroutines
	router *controlplane.Router
	tr     *kmlink.Transport
	saes   atomic.Pointer[[]config.SAE] // replaced by Reload
	tlsCrt tls.Certificate
	roots  *x509.CertPool

	supply   *supply.Service
	wgIfaces []*wgInterface // WireGuard rotators; fixed after New
	wgctrl   *wgctrl.Client // for interfaces not in this process

	servers     []apiServer
	adminAddr   net.Addr
	metricsAddr net.Addr
	etsiAddr    net.Addr
	metrics     *metrics

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	// inflight counts operator-started relays, so that shutdown lets them
	// finish.
	inflight   sync.WaitGroup
	inflightMu sync.Mutex // orders inflight.Add before Shutdown's Wait
	closing    chan struct{}

	closeOnce sync.Once
	closeErr  error
}

// New opens the node's stores and starts it: KM links dial and listen, the
// control plane floods, the APIs serve. On error everything opened so far
// is closed again.
func New(cfg *config.Config, opt Options) (_ *Node, err error) {
	log := opt.Logger
	if log == nil {
		log = slog.Default()
	}
	n := &Node{
		cfg:     cfg,
		log:     log.With("node", cfg.Node.ID),
		baseLog: log,
		version: opt.Version,
		started: time.Now(),
		byPeer:  map[string]*nodeLink{},
		closing: make(chan struct{}),
	}
	n.ctx, n.cancel = context.WithCancel(context.Background())
	n.saes.Store(&cfg.SAEs)
	defer func() {
		if err != nil {
			n.Close()
		}
	}()
	if n.tlsCrt, n.roots, err = loadTLS(cfg.TLS); err != nil {
		return nil, err
	}
	if cfg.Storage.Mode == config.Durable {
		if n.meta, err = ringstore.OpenMeta(filepath.Join(cfg.Storage.Dir, "meta")); err != nil {
			return nil, fmt.Errorf("storage.dir: opening the metadata store: %w", err)
		}
	}
	if n.audit, err = audit.Open(audit.Config{Meta: n.meta, Window: cfg.Audit.Window, Retention: cfg.Audit.Retention, Logger: n.log}); err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	if err := n.openSupply(); err != nil {
		return nil, err
	}
	if err := n.openRouter(); err != nil {
		return nil, err
	}
	n.eng, err = relay.New(relay.Config{
		NodeID:            cfg.Node.ID,
		Routes:            n.router,
		Sink:              n.supply.Sink(),
		Streams:           cfg.KM.Streams,
		CompletionTimeout: cfg.KM.CompletionTimeout,
		Control:           n.control,
		Routed:            n.supply.Routed,
		Audit:             n.audit,
		Logger:            log,
	})
	if err != nil {
		return nil, err
	}
	n.engine.Store(n.eng)
	for _, lc := range cfg.Links {
		if err := n.addLink(lc); err != nil {
			return nil, err
		}
	}
	n.metrics = newMetrics(n)
	if err := n.startAPIs(); err != nil {
		return nil, err
	}
	// The transport comes last: once it listens, peers may connect and
	// everything they reach must exist.
	peers := make([]kmlink.Peer, 0, len(n.links))
	for _, l := range n.links {
		peers = append(peers, kmlink.Peer{ID: l.cfg.Peer, Addr: l.cfg.Address})
	}
	n.tr, err = kmlink.Listen(kmlink.Config{
		NodeID:      cfg.Node.ID,
		Certificate: n.tlsCrt,
		Roots:       n.roots,
		ListenAddr:  cfg.KM.Listen,
		KeepAlive:   cfg.KM.Keepalive,
		IdleTimeout: cfg.KM.IdleTimeout,
		Handler:     linkEvents{n},
		Logger:      log,
		Peers:       peers,
	})
	if err != nil {
		return nil, fmt.Errorf("km.listen %s: %w", cfg.KM.Listen, err)
	}
	n.wg.Add(1)
	go n.sampleLoop()
	n.supply.Start()
	if err := n.startWireGuard(opt.WireGuard); err != nil {
		return nil, err
	}
	n.log.Info("node started", "km_listen", n.tr.Addr().String(), "links", len(n.links), "storage", cfg.Storage.Mode, "version", n.version)
	return n, nil
}

// httpErrorLog sends net/http's own errors (TLS handshakes refused, bad
// requests) to the node's log.
func httpErrorLog(log *slog.Logger, api string) *stdlog.Logger {
	return slog.NewLogLogger(log.With("api", api).Handler(), slog.LevelWarn)
}

func loadTLS(c config.TLS) (tls.Certificate, *x509.CertPool, error) {
	crt, err := tls.LoadX509KeyPair(c.Cert, c.Key)
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("tls.cert %s / tls.key %s: %w", c.Cert, c.Key, err)
	}
	pem, err := os.ReadFile(c.CA)
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("tls.ca: %w", err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		return tls.Certificate{}, nil, fmt.Errorf("tls.ca %s: no PEM certificate in it", c.CA)
	}
	return crt, roots, nil
}

// Addr is the address the KM-link transport listens on.
func (n *Node) Addr() net.Addr { return n.tr.Addr() }

// ID is the node's ID.
func (n *Node) ID() string { return n.cfg.Node.ID }

// Audit is the node's audit record: pad ranges appended, used and burnt
// per link, and key IDs handed to SAEs. The node records the hand-outs;
// the relay engine records the pad ranges.
func (n *Node) Audit() *audit.Log { return n.audit }

// Relay relays keys end to end to node dst now, as an operator's test
// of the path or a warm-up of the pools, and reports what it achieved.
// It passes the key supply's gate (supply.Service.Relay), as the pools'
// refills do. Shutdown waits for relays in flight.
func (n *Node) Relay(ctx context.Context, dst string, keys, size int) (relay.Result, error) {
	return n.supply.Relay(ctx, dst, keys, size)
}

// relayNow is the relay behind the supply's gate: counted in flight for
// Shutdown, measured and logged.
func (n *Node) relayNow(ctx context.Context, dst string, keys, size int) (relay.Result, error) {
	// The check and the Add under one lock that Shutdown takes to close
	// n.closing: a WaitGroup must not be added to once its Wait may have
	// begun.
	n.inflightMu.Lock()
	select {
	case <-n.closing:
		n.inflightMu.Unlock()
		return relay.Result{}, errors.New("node is shutting down")
	default:
	}
	n.inflight.Add(1)
	n.inflightMu.Unlock()
	defer n.inflight.Done()
	t0 := time.Now()
	res, err := n.eng.Relay(ctx, dst, keys, size)
	n.metrics.observeRelay(dst, time.Since(t0), res, err)
	if err != nil {
		n.log.Warn("relay incomplete", "dst", dst, "flow", fmt.Sprintf("%016x", res.Flow), "first_seq", res.FirstSeq,
			"keys", keys, "delivered", res.Delivered, "err", err)
	}
	return res, err
}

// Shutdown stops the node cleanly: it stops taking new work, lets relays
// in flight finish until ctx ends (then aborts them: their keys are
// reported lost and discarded at both ends), closes the KM links, and
// closes the stores, which persists their marks. It returns the first
// error met; calling it again returns the same.
func (n *Node) Shutdown(ctx context.Context) error {
	n.closeOnce.Do(func() {
		n.inflightMu.Lock()
		close(n.closing)
		n.inflightMu.Unlock()
		for _, s := range n.servers {
			s.Shutdown(ctx)
		}
		done := make(chan struct{})
		go func() { n.inflight.Wait(); close(done) }()
		select {
		case <-done:
		case <-ctx.Done():
			n.log.Warn("shutdown: relays still in flight after the grace period; aborting them", "err", ctx.Err())
		}
		n.closeErr = n.closeAll()
	})
	return n.closeErr
}

// Close stops the node at once; relays in flight are aborted.
func (n *Node) Close() error {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return n.Shutdown(ctx)
}

func (n *Node) closeAll() error {
	var errs []error
	for _, s := range n.servers {
		s.Close()
	}
	n.cancel()
	// The router first, while the links are up: it floods a flush of this
	// node's advert, so that other nodes route around it at once.
	if n.router != nil {
		errs = append(errs, n.router.Close())
	}
	if n.tr != nil {
		errs = append(errs, n.tr.Close())
	}
	if n.eng != nil {
		errs = append(errs, n.eng.Close())
	}
	n.wg.Wait()
	if n.supply != nil {
		n.supply.Close()
	}
	if n.wgctrl != nil {
		errs = append(errs, n.wgctrl.Close())
	}
	for _, l := range n.links {
		errs = append(errs, l.close())
	}
	if n.supply != nil {
		errs = append(errs, n.supply.ClosePools())
	}
	// The audit record last but the metadata store it is written to:
	// whatever the engine, the links and the pools record while stopping
	// is flushed.
	if n.audit != nil {
		errs = append(errs, n.audit.Close())
	}
	if n.meta != nil {
		errs = append(errs, n.meta.Close())
	}
	err := errors.Join(errs...)
	if err != nil {
		n.log.Error("node stopped with errors", "err", err)
	} else {
		n.log.Info("node stopped")
	}
	return err
}
