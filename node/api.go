package node

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/qrelay/qrelay/controlplane"
	"github.com/qrelay/qrelay/internal/audit"
	"github.com/qrelay/qrelay/internal/http1"
	"github.com/qrelay/qrelay/node/adminapi"
	"github.com/qrelay/qrelay/supply"
	"github.com/qrelay/qrelay/supply/etsi014"
)

// startAPIs starts the admin API (HTTPS, mTLS) and the metrics listener
// (plain HTTP, with pprof when it is on loopback), those the config turns
// on. Listening happens here, so that a port in use fails start-up.
func (n *Node) startAPIs() error {
	if addr := n.cfg.API.Admin.Listen; addr != "" {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return fmt.Errorf("api.admin.listen %s: %w", addr, err)
		}
		h := promhttp.InstrumentHandlerDuration(n.metrics.apiDuration.MustCurryWith(map[string]string{"api": "admin"}),
			adminapi.NewHandler(backend{n}, n.log))
		srv := &http.Server{
			Handler:           h,
			TLSConfig:         adminapi.TLSConfig(n.tlsCrt, n.roots),
			ReadHeaderTimeout: 10 * time.Second,
			ErrorLog:          httpErrorLog(n.log, "admin"),
		}
		n.serve(srv, ln, true)
		n.adminAddr = ln.Addr()
	}
	if e := n.cfg.API.ETSI014; e.Listen != "" {
		id, err := supply.ParseIdentity(e.SAEIdentity)
		if err != nil {
			return fmt.Errorf("api.etsi014.sae_identity: %w", err)
		}
		limits := map[string]etsi014.Limit{}
		for _, s := range n.cfg.SAEs {
			if s.Node == n.cfg.Node.ID && s.KeysPerSecond > 0 {
				limits[s.ID] = etsi014.Limit{KeysPerSecond: s.KeysPerSecond, Burst: s.Burst}
			}
		}
		h, err := etsi014.NewHandler(etsi014.Config{
			Service:           n.supply,
			Identity:          id,
			KeySize:           e.KeySize,
			MinKeySize:        e.KeySize,
			MaxKeySize:        e.KeySize,
			MaxKeysPerRequest: e.MaxKeysPerRequest,
			Limits:            limits,
			Logger:            n.log.With("api", "etsi014"),
		})
		if err != nil {
			return fmt.Errorf("api.etsi014: %w", err)
		}
		ln, err := net.Listen("tcp", e.Listen)
		if err != nil {
			return fmt.Errorf("api.etsi014.listen %s: %w", e.Listen, err)
		}
		// The lean HTTP/1.1 server: for requests of one key, net/http's
		// per-request machinery costs more than the key service.
		srv := &http1.Server{
			Handler:           promhttp.InstrumentHandlerDuration(n.metrics.apiDuration.MustCurryWith(map[string]string{"api": "etsi014"}), h),
			TLSConfig:         etsi014.TLSConfig(n.tlsCrt, n.roots),
			ReadHeaderTimeout: 10 * time.Second,
			IdleTimeout:       2 * time.Minute,
			Log:               n.log.With("api", "etsi014"),
		}
		n.serveWith(srv, srv.Serve, ln)
		n.etsiAddr = ln.Addr()
	}
	if addr := n.cfg.API.Metrics.Listen; addr != "" {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return fmt.Errorf("api.metrics.listen %s: %w", addr, err)
		}
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", promhttp.HandlerFor(n.metrics.reg, promhttp.HandlerOpts{Registry: n.metrics.reg}))
		if n.cfg.API.Metrics.PProf {
			// The config refuses pprof on a non-loopback address; the
			// check is repeated on each request in case of a wildcard
			// bind, so profiles never leave the machine.
			pp := http.NewServeMux()
			pp.HandleFunc("/debug/pprof/", pprof.Index)
			pp.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
			pp.HandleFunc("/debug/pprof/profile", pprof.Profile)
			pp.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
			pp.HandleFunc("/debug/pprof/trace", pprof.Trace)
			mux.Handle("/debug/pprof/", loopbackOnly(pp))
		}
		srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ErrorLog: httpErrorLog(n.log, "metrics")}
		n.serve(srv, ln, false)
		n.metricsAddr = ln.Addr()
	}
	return nil
}

// apiServer is an API's server: net/http's or http1's.
type apiServer interface {
	Shutdown(context.Context) error
	Close() error
}

func (n *Node) serve(srv *http.Server, ln net.Listener, tls bool) {
	if tls {
		n.serveWith(srv, func(ln net.Listener) error { return srv.ServeTLS(ln, "", "") }, ln)
	} else {
		n.serveWith(srv, srv.Serve, ln)
	}
}

func (n *Node) serveWith(srv apiServer, serve func(net.Listener) error, ln net.Listener) {
	n.servers = append(n.servers, srv)
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		if err := serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			n.log.Error("API listener failed", "addr", ln.Addr().String(), "err", err)
		}
	}()
}

func loopbackOnly(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host, _, err := net.SplitHostPort(r.RemoteAddr)
		if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
			http.Error(w, "pprof is served to loopback clients only", http.StatusForbidden)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// AdminAddr is the admin API's address, or nil if it is off.
func (n *Node) AdminAddr() net.Addr { return n.adminAddr }

// ETSI014Addr is the ETSI 014 API's address, or nil if it is off.
func (n *Node) ETSI014Addr() net.Addr { return n.etsiAddr }

// MetricsAddr is the metrics listener's address, or nil if it is off.
func (n *Node) MetricsAddr() net.Addr { return n.metricsAddr }

// backend implements adminapi.Backend.
type backend struct{ n *Node }

func (b backend) Status(ctx context.Context) (adminapi.Status, error) {
	n := b.n
	s := n.eng.Stats()
	cs := n.router.Stats()
	st := adminapi.Status{
		Node:    n.cfg.Node.ID,
		Version: n.version,
		Started: n.started,
		UptimeS: time.Since(n.started).Seconds(),
		Links:   len(n.links),
		Relay: adminapi.RelayStats{
			KeysDelivered: s.KeysDelivered.Load(), KeyBytesRelayed: s.KeyBytesRelayed.Load(), KeysLost: s.KeysLost.Load(),
			FramesSent: s.FramesSent.Load(), FramesReceived: s.FramesReceived.Load(), FramesForwarded: s.FramesForwarded.Load(),
			BadTags: s.BadTags.Load(), Replays: s.Replays.Load(), Malformed: s.Malformed.Load(),
			PadMACBytes: s.PadMACBytes.Load(), PadBurnt: s.PadBurnt.Load(), PadWaits: s.PadWaits.Load(),
			Pending: n.eng.Pending(), DiscardsPending: n.eng.PendingDiscards(),
		},
		Control: adminapi.ControlStats{
			AdvertsOriginated: cs.AdvertsOriginated, AdvertsSent: cs.AdvertsSent, AdvertsReceived: cs.AdvertsReceived,
			SPFRuns: cs.SPFRuns, Reroutes: cs.Reroutes, LastChange: cs.LastChange,
		},
	}
	for _, l := range n.links {
		l.mu.Lock()
		if l.up {
			st.LinksUp++
		}
		l.mu.Unlock()
	}
	rs := n.router.Routes()
	st.Routes, st.Reachable = len(rs), len(rs)
	return st, nil
}

func (b backend) Links(ctx context.Context) ([]adminapi.Link, error) {
	n := b.n
	route := map[string]controlplane.LinkInfo{}
	for _, li := range n.router.Links() {
		route[li.Peer] = li
	}
	kl := map[string]string{}
	master := map[string]bool{}
	for _, s := range n.tr.Links() {
		kl[s.ID] = s.Addr
		master[s.ID] = s.Master
	}
	out := make([]adminapi.Link, 0, len(n.links))
	for _, l := range n.links {
		p := l.cfg.Peer
		tx, rx := l.tx.Stats(), l.rx.Stats()
		l.mu.Lock()
		al := adminapi.Link{
			Peer: p, Address: l.cfg.Address, State: l.state.String(), Up: l.up, Master: master[p],
			Since: l.since, LastError: l.lastErr,
			Usable: route[p].Usable, Cost: route[p].Cost, Excluded: route[p].Excluded,
			Tx: adminapi.Pad{Stock: tx.Stock, Capacity: uint64(tx.Capacity), FillBps: l.rates[0].fill.PerSecond(), ConsumeBps: l.rates[0].consume.PerSecond()},
			Rx: adminapi.Pad{Stock: rx.Stock, Capacity: uint64(rx.Capacity), FillBps: l.rates[1].fill.PerSecond(), ConsumeBps: l.rates[1].consume.PerSecond()},
			QKD: adminapi.QKD{Kind: l.qkd.Kind, Simulated: l.qkd.Simulated, Up: l.qkd.Up, Reason: l.qkd.Reason,
				QBER: l.qkd.QBER, SecretRateBitS: l.qkd.SecretRate},
		}
		l.mu.Unlock()
		out = append(out, al)
	}
	return out, nil
}

func (b backend) Routes(ctx context.Context) ([]adminapi.Route, error) {
	rs := b.n.router.Routes()
	out := make([]adminapi.Route, 0, len(rs))
	for _, r := range rs {
		out = append(out, adminapi.Route{Dst: r.Dst, NextHop: r.NextHop, Path: r.Path, Cost: r.Cost, Static: r.Static})
	}
	return out, nil
}

func (b backend) Adverts(ctx context.Context) ([]adminapi.Advert, error) {
	as := b.n.router.Adverts()
	out := make([]adminapi.Advert, 0, len(as))
	for _, a := range as {
		aa := adminapi.Advert{Origin: a.Origin, Seq: a.Seq, AgeS: a.Age.Seconds()}
		for _, l := range a.Links {
			aa.Links = append(aa.Links, adminapi.AdvertLink{Peer: l.Peer, Up: l.Up, Usable: l.Usable, Cost: l.Cost,
				TxStock: l.TxStock, RxStock: l.RxStock, QBER: l.QBER, State: l.State.String()})
		}
		out = append(out, aa)
	}
	return out, nil
}

func (b backend) Pools(ctx context.Context) ([]adminapi.Pool, error) {
	pools := b.n.supply.Pools()
	out := make([]adminapi.Pool, 0, len(pools))
	for _, pe := range pools {
		s := pe.Pool.Stats()
		ap := adminapi.Pool{Remote: pe.Remote, Role: pe.Role, Stock: s.Stock, Capacity: s.Capacity,
			Added: s.Added, Taken: s.Taken, Expired: s.Expired}
		if pe.Role == supply.RoleOut {
			ap.Low, ap.High = b.n.supply.LowWatermark(pe.Remote), b.n.cfg.Pools.High
		}
		out = append(out, ap)
	}
	return out, nil
}

func (b backend) Flows(ctx context.Context) ([]adminapi.Flow, error) {
	fs := b.n.eng.Flows()
	out := make([]adminapi.Flow, 0, len(fs))
	for _, f := range fs {
		out = append(out, adminapi.Flow{Dst: f.Dst, ID: f.ID, NextSeq: f.NextSeq, Pending: f.Pending})
	}
	return out, nil
}

// Tunnels implements adminapi.Tunneler.
func (b backend) Tunnels(ctx context.Context) ([]adminapi.Tunnel, error) {
	ts := b.n.Tunnels()
	out := make([]adminapi.Tunnel, 0, len(ts))
	for _, t := range ts {
		out = append(out, adminapi.Tunnel{
			Interface: t.Interface, Name: t.Name, Peer: t.Peer.String(), Remote: t.Remote,
			IntervalS: t.Interval.Seconds(), OnMissingKey: t.OnMissingKey, Drives: t.Drives,
			Epoch: t.Epoch, LastRotation: t.LastRotation, LastHandshake: t.LastHandshake,
			Rotations: t.Rotations, Failures: t.Failures, LastError: t.LastError, FailedClosed: t.FailedClosed,
			Stream: adminapi.TunnelStream{Held: t.Stream.Held, Served: t.Stream.Served, Released: t.Stream.Released, Refused: t.Stream.Refused},
		})
	}
	return out, nil
}

// Audit implements adminapi.Backend.
func (b backend) Audit(ctx context.Context, q audit.Query) ([]audit.Record, error) {
	rs, err := b.n.audit.Query(q)
	if errors.Is(err, audit.ErrBadQuery) {
		return nil, fmt.Errorf("%w: %v", adminapi.ErrBadRequest, err)
	}
	return rs, err
}

func (b backend) SetLinkState(ctx context.Context, peer, state string) error {
	st, err := controlplane.ParseState(state)
	if err != nil {
		return fmt.Errorf("%w: %v", adminapi.ErrBadRequest, err)
	}
	if err := b.n.SetLinkState(peer, st); err != nil {
		return fmt.Errorf("%w: %v", adminapi.ErrNotFound, err)
	}
	return nil
}

// Relay implements adminapi.Relayer.
func (b backend) Relay(ctx context.Context, req adminapi.RelayRequest) (adminapi.RelayResult, error) {
	if req.Dst == b.n.cfg.Node.ID {
		return adminapi.RelayResult{}, fmt.Errorf("%w: %s is this node; relay to another node", adminapi.ErrBadRequest, req.Dst)
	}
	if req.KeySize > b.n.cfg.Pools.SlotSize {
		return adminapi.RelayResult{}, fmt.Errorf("%w: key_size %d bytes exceeds pools.slot_size %d", adminapi.ErrBadRequest, req.KeySize, b.n.cfg.Pools.SlotSize)
	}
	p, err := b.n.supply.Pool(req.Dst, supply.RoleOut)
	if err != nil {
		return adminapi.RelayResult{}, err
	}
	st := p.Stats()
	room := st.Capacity - st.Stock
	if req.Keys > room {
		// Both ends' pools are the same size and hold the same keys, so
		// the destination would refuse what does not fit here.
		return adminapi.RelayResult{}, fmt.Errorf("%w: the pool shared with %s has room for %d keys, not %d: relay at most %d, or let applications take keys first",
			adminapi.ErrBadRequest, req.Dst, room, req.Keys, room)
	}
	t0 := time.Now()
	res, err := b.n.Relay(ctx, req.Dst, req.Keys, req.KeySize)
	out := adminapi.RelayResult{Dst: req.Dst, Flow: res.Flow, FirstSeq: res.FirstSeq, Keys: req.Keys,
		Delivered: res.Delivered, DurationS: time.Since(t0).Seconds()}
	for _, e := range res.Errors {
		out.Errors = append(out.Errors, e.Error())
	}
	if err != nil && len(res.Errors) == 0 {
		out.Errors = append(out.Errors, err.Error())
	}
	return out, nil
}

// PoolDigest implements adminapi.Relayer.
func (b backend) PoolDigest(ctx context.Context, remote string) (adminapi.PoolDigest, error) {
	// Both pools shared with remote, combined: this node's out pool holds
	// what the remote's in pool does, and the other way round, so the
	// two ends' digests agree exactly when both pairs do.
	var sum [32]byte
	total := 0
	for _, pe := range b.n.supply.Pools() {
		if pe.Remote != remote {
			continue
		}
		n, d, err := pe.Pool.Digest()
		if err != nil {
			return adminapi.PoolDigest{}, err
		}
		total += n
		for i := range sum {
			sum[i] ^= d[i]
		}
	}
	return adminapi.PoolDigest{Remote: remote, Keys: total, Digest: hex.EncodeToString(sum[:])}, nil
}
