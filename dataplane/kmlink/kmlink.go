// Package kmlink implements the KM link: the QUIC connection between two
// neighbouring key managers (DESIGN.md, "The KM link (Kx)").
//
// A link is one QUIC connection (RFC 9000) with mutual TLS 1.3: both ends
// present node certificates issued by the network's CA, and each end checks
// that the other's node ID (pki.PeerID) is the peer it expects. The ALPN is
// "qrelay/2", for version 2 of the KM link protocol (docs/kmlink.md); a peer
// that offers no "qrelay/2" is refused in the handshake. Of the two ends, the one with the lower node ID (byte-wise
// string comparison) is the link master: it dials, and redials with
// exponential backoff whenever the link is lost; the other end only accepts.
//
// One UDP socket per node carries every link, in both roles (a
// quic.Transport). The relay engine sees links through a Handler (LinkUp,
// LinkDown) and moves data on unidirectional streams of a Conn.
// Bidirectional streams are reserved for this package: the acceptor opens
// one to tell the master that it has accepted the link (see [Conn]).
package kmlink

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/qrelay/qrelay/internal/pki"
)

// ALPN is the TLS application protocol of the KM link, version 2
// (docs/kmlink.md). A change to the link protocol that old nodes cannot
// follow gets a new ALPN: version 1 was "qrelay/1".
const ALPN = "qrelay/2"

// Defaults for the zero values of Config.
const (
	DefaultKeepAlive    = 1 * time.Second
	DefaultIdleTimeout  = 5 * time.Second
	DefaultReconnectMin = 50 * time.Millisecond
	DefaultReconnectMax = 5 * time.Second
)

// Flow-control windows and stream limits used unless Config.QUIC sets them.
// They let one connection run at several Gbit/s on loopback.
const (
	DefaultMaxStreamReceiveWindow     = 16 << 20
	DefaultMaxConnectionReceiveWindow = 64 << 20
	DefaultMaxIncomingUniStreams      = 64
)

// socketBufferSize is the size asked for the UDP socket's receive and send
// buffers, as quic-go asks for.
const socketBufferSize = 7 << 20

// stableAfter is how long a connection must have stayed up for the dial
// backoff to start again from ReconnectMin, so that a peer that accepts and
// at once drops connections is not dialed at the fastest rate.
const stableAfter = time.Second

// Application error codes sent in CONNECTION_CLOSE.
const (
	codeClosed   quic.ApplicationErrorCode = 0x0 // transport closed or peer removed
	codeReplaced quic.ApplicationErrorCode = 0x1 // a newer connection from the same peer replaced this one
	codeRefused  quic.ApplicationErrorCode = 0x2 // the peer is not configured, or has the wrong role
	codeProtocol quic.ApplicationErrorCode = 0x3 // the link hello failed
	codeAborted  quic.ApplicationErrorCode = 0x4 // Conn.Close
)

// Config configures a Transport.
type Config struct {
	// NodeID is this node's ID; Certificate must name it (pki.PeerID).
	NodeID string
	// Certificate is this node's certificate, presented on every link in
	// both roles. It must carry client and server key usage.
	Certificate tls.Certificate
	// Roots holds the CA(s) that issue node certificates. Required.
	Roots *x509.CertPool
	// ListenAddr is the local UDP address, e.g. "127.0.0.1:0" or ":4433".
	// The one socket is used for listening and dialing.
	ListenAddr string
	// KeepAlive is the period of keep-alive packets (default 1s; QUIC
	// sends them at most every IdleTimeout/2).
	KeepAlive time.Duration
	// IdleTimeout is how long a link may go without a packet from the
	// peer before it is declared down (default 5s). It also bounds each
	// handshake phase of a dial.
	IdleTimeout time.Duration
	// ReconnectMin and ReconnectMax bound the master's redial delay
	// (defaults 50ms and 5s). The delay doubles after each failure, is
	// jittered to between half and all of its value, and starts again from
	// ReconnectMin after a connection that stayed up for a second.
	ReconnectMin, ReconnectMax time.Duration
	// Peers are added (as by AddPeer) before the transport starts to
	// accept, so that a peer dialing early is not refused.
	Peers []Peer
	// Handler is told about links coming up and going down; nil ignores
	// them (the links are still kept up and reachable with Transport.Conn).
	Handler Handler
	// Logger receives state changes and refusals; nil means slog.Default().
	Logger *slog.Logger
	// QUIC is an optional base QUIC configuration (tests, benchmarks).
	// kmlink sets the keep-alive, idle timeout and bidirectional stream
	// limit itself, and fills the flow-control windows and the
	// unidirectional stream limit with the Default* values where zero.
	QUIC *quic.Config
}

// Handler is told when links come up and go down.
//
// For each connection, LinkUp is called once, in a goroutine of its own,
// when the connection is established and both ends are authenticated;
// LinkDown is called once when it ends, with the reason. LinkDown may run
// while LinkUp is still running; c.Context() is done before LinkDown is
// called, and every call on c fails from then on. For one peer ID, LinkDown
// of a connection returns before LinkUp of the next connection is called,
// even across RemovePeer and AddPeer.
//
// LinkUp may run for the life of the connection (accepting streams, say),
// but it must return once c.Context() is done: Transport.Close waits for
// it. LinkDown should return promptly. Neither may call Transport.Close.
type Handler interface {
	LinkUp(c *Conn)
	LinkDown(c *Conn, err error)
}

// Peer is a neighbouring node.
type Peer struct {
	// ID is the peer's node ID, as its certificate names it.
	ID string
	// Addr is the peer's UDP address (host:port). The master of the link
	// (the lower node ID) dials it, so it is required when this node's ID
	// is the lower one; the accepting end may leave it empty.
	Addr string
}

// LinkStatus is the state of the link to one peer.
type LinkStatus struct {
	ID     string // peer node ID
	Addr   string // configured address ("" when this node only accepts)
	Master bool   // this end is the link master and dials

	Up         bool          // a connection is established
	Since      time.Time     // when the link last came up or went down; zero if never up
	Generation uint64        // generation of the current (or last) connection; 0 if never up
	Reconnects uint64        // dial attempts after the first (master only)
	LastError  string        // why the last connection ended or the last dial failed
	RemoteAddr string        // the current connection's remote address
	RTT        time.Duration // smoothed RTT of the current connection
	GSO        bool          // the current connection sends with UDP GSO
}

// Transport owns the UDP socket of a node and its KM links.
type Transport struct {
	cfg     Config
	log     *slog.Logger
	handler Handler

	udp      *net.UDPConn
	qt       *quic.Transport
	ln       *quic.Listener
	dialConf *quic.Config // for links this node dials (master)

	rcvBuf, sndBuf int

	ctx    context.Context // done when Close starts
	cancel context.CancelFunc
	wg     sync.WaitGroup // every goroutine of the transport

	mu      sync.Mutex
	closed  bool
	peers   map[string]*peer
	last    map[string]*Conn // latest connection per peer ID, kept across RemovePeer
	refused map[string]struct{}

	closeOnce sync.Once
}

// peer is the state of one configured peer. Fields below mu are guarded by
// Transport.mu.
type peer struct {
	id, addr string
	master   bool
	ctx      context.Context // done when the peer is removed or the transport closes
	cancel   context.CancelFunc
	done     chan struct{} // closed when the dial loop has returned (master only)

	removed    bool
	conn       *Conn
	since      time.Time
	generation uint64
	reconnects uint64
	lastErr    error
}

// Listen opens the UDP socket at cfg.ListenAddr, starts accepting links
// and dials the peers in cfg.Peers this node is master of.
func Listen(cfg Config) (*Transport, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	cfg.setDefaults()
	t := &Transport{
		cfg:     cfg,
		log:     cfg.Logger.With("node", cfg.NodeID),
		handler: cfg.Handler,
		peers:   make(map[string]*peer),
		last:    make(map[string]*Conn),
		refused: make(map[string]struct{}),
	}
	if t.handler == nil {
		t.handler = nopHandler{}
	}
	laddr, err := net.ResolveUDPAddr("udp", cfg.ListenAddr)
	if err != nil {
		return nil, fmt.Errorf("kmlink: node %s: listen address %q: %w; give host:port", cfg.NodeID, cfg.ListenAddr, err)
	}
	// quic-go raises the socket buffers itself (to 7 MiB, with
	// SO_RCVBUFFORCE when allowed) on a *net.UDPConn, and uses GSO, ECN and
	// recvmmsg on it.
	t.udp, err = net.ListenUDP("udp", laddr)
	if err != nil {
		return nil, fmt.Errorf("kmlink: node %s: listen on UDP %s: %w; choose a free port or stop the process that holds it", cfg.NodeID, cfg.ListenAddr, err)
	}
	raiseBuffers(t.udp)
	t.qt = &quic.Transport{Conn: t.udp, StatelessResetKey: resetKey(cfg.Certificate)}
	t.dialConf = t.quicConfig(1)
	t.ln, err = t.qt.Listen(t.serverTLS(), t.quicConfig(-1))
	if err != nil {
		t.qt.Close()
		t.udp.Close()
		return nil, fmt.Errorf("kmlink: node %s: start QUIC listener on %s: %w", cfg.NodeID, t.udp.LocalAddr(), err)
	}
	t.logBuffers()
	t.ctx, t.cancel = context.WithCancel(context.Background())
	for _, p := range cfg.Peers {
		if err := t.AddPeer(p); err != nil {
			t.Close()
			return nil, err
		}
	}
	t.wg.Add(1)
	go t.acceptLoop()
	return t, nil
}

func (cfg *Config) check() error {
	if err := pki.ValidID(cfg.NodeID); err != nil {
		return fmt.Errorf("kmlink: node ID %q: %w", cfg.NodeID, err)
	}
	if len(cfg.Certificate.Certificate) == 0 {
		return fmt.Errorf("kmlink: node %s: no certificate; issue a node certificate (qrelayctl pki)", cfg.NodeID)
	}
	leaf := cfg.Certificate.Leaf
	if leaf == nil {
		var err error
		if leaf, err = x509.ParseCertificate(cfg.Certificate.Certificate[0]); err != nil {
			return fmt.Errorf("kmlink: node %s: parse certificate: %w", cfg.NodeID, err)
		}
	}
	id, err := nodeID(leaf)
	if err != nil {
		return fmt.Errorf("kmlink: node %s: certificate: %w", cfg.NodeID, err)
	}
	if id != cfg.NodeID {
		return fmt.Errorf("kmlink: node %s: the certificate names node %q; use the certificate issued for node %s", cfg.NodeID, id, cfg.NodeID)
	}
	if cfg.Roots == nil {
		return fmt.Errorf("kmlink: node %s: no CA roots to verify peers with; give the network's CA", cfg.NodeID)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"KeepAlive", cfg.KeepAlive}, {"IdleTimeout", cfg.IdleTimeout}, {"ReconnectMin", cfg.ReconnectMin}, {"ReconnectMax", cfg.ReconnectMax}} {
		if d.v < 0 {
			return fmt.Errorf("kmlink: node %s: %s is negative (%v); use 0 for the default", cfg.NodeID, d.name, d.v)
		}
	}
	if cfg.ReconnectMin > 0 && cfg.ReconnectMax > 0 && cfg.ReconnectMin > cfg.ReconnectMax {
		return fmt.Errorf("kmlink: node %s: ReconnectMin %v is above ReconnectMax %v", cfg.NodeID, cfg.ReconnectMin, cfg.ReconnectMax)
	}
	return nil
}

func (cfg *Config) setDefaults() {
	if cfg.KeepAlive == 0 {
		cfg.KeepAlive = DefaultKeepAlive
	}
	if cfg.IdleTimeout == 0 {
		cfg.IdleTimeout = DefaultIdleTimeout
	}
	if cfg.ReconnectMin == 0 {
		cfg.ReconnectMin = min(DefaultReconnectMin, max(cfg.ReconnectMax, time.Millisecond))
	}
	if cfg.ReconnectMax == 0 {
		cfg.ReconnectMax = max(DefaultReconnectMax, cfg.ReconnectMin)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
}

// quicConfig is the QUIC configuration of links; bidi is the number of
// bidirectional streams the peer may open (1 for the hello when this end
// dials, -1 when it accepts).
func (t *Transport) quicConfig(bidi int64) *quic.Config {
	var c *quic.Config
	if t.cfg.QUIC != nil {
		c = t.cfg.QUIC.Clone()
	} else {
		c = &quic.Config{}
	}
	if c.MaxStreamReceiveWindow == 0 {
		c.MaxStreamReceiveWindow = DefaultMaxStreamReceiveWindow
	}
	if c.MaxConnectionReceiveWindow == 0 {
		c.MaxConnectionReceiveWindow = DefaultMaxConnectionReceiveWindow
	}
	if c.MaxIncomingUniStreams == 0 {
		c.MaxIncomingUniStreams = DefaultMaxIncomingUniStreams
	}
	if c.HandshakeIdleTimeout == 0 {
		c.HandshakeIdleTimeout = t.cfg.IdleTimeout
	}
	c.MaxIncomingStreams = bidi
	c.KeepAlivePeriod = t.cfg.KeepAlive
	c.MaxIdleTimeout = t.cfg.IdleTimeout
	c.Allow0RTT = false
	return c
}

// handshakeTimeout bounds a dial and the hello that follows it.
func (t *Transport) handshakeTimeout() time.Duration {
	return 2 * t.dialConf.HandshakeIdleTimeout
}

func (t *Transport) logBuffers() {
	t.rcvBuf, t.sndBuf = socketBuffers(t.udp)
	t.log.Info("kmlink: UDP socket ready", "addr", t.udp.LocalAddr().String(),
		"rcvbuf", t.rcvBuf, "sndbuf", t.sndBuf, "note", "sizes as the kernel reports them (Linux: twice the size set)")
	if t.rcvBuf > 0 && t.rcvBuf < 2*socketBufferSize {
		t.log.Warn("kmlink: UDP receive buffer below 7 MiB; throughput will suffer under load",
			"addr", t.udp.LocalAddr().String(), "rcvbuf", t.rcvBuf,
			"fix", "run with CAP_NET_ADMIN, or raise the limit: sysctl -w net.core.rmem_max=7500000 net.core.wmem_max=7500000")
	}
}

// Addr is the local address of the transport's UDP socket.
func (t *Transport) Addr() *net.UDPAddr {
	return t.udp.LocalAddr().(*net.UDPAddr)
}

// SocketBuffers returns the receive and send buffer sizes of the UDP
// socket as the kernel reported them after quic-go raised them (Linux
// reports twice the size set; 0 where unsupported).
func (t *Transport) SocketBuffers() (rcv, snd int) {
	return t.rcvBuf, t.sndBuf
}

// AddPeer adds a neighbour. If this node's ID is the lower one, it dials the
// peer at once and redials with backoff whenever the link is lost, until
// RemovePeer or Close; otherwise it accepts the peer's connections.
func (t *Transport) AddPeer(p Peer) error {
	if err := pki.ValidID(p.ID); err != nil {
		return fmt.Errorf("kmlink: node %s: peer ID %q: %w", t.cfg.NodeID, p.ID, err)
	}
	if p.ID == t.cfg.NodeID {
		return fmt.Errorf("kmlink: node %s: cannot be its own peer; remove it from its peer list", t.cfg.NodeID)
	}
	master := t.cfg.NodeID < p.ID
	if p.Addr == "" && master {
		return fmt.Errorf("kmlink: node %s: peer %s has no address, but this node has the lower ID and so dials the link; give the peer's UDP host:port", t.cfg.NodeID, p.ID)
	}
	if p.Addr != "" {
		if _, _, err := net.SplitHostPort(p.Addr); err != nil {
			return fmt.Errorf("kmlink: node %s: peer %s address %q: %w; give host:port", t.cfg.NodeID, p.ID, p.Addr, err)
		}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return fmt.Errorf("kmlink: node %s: add peer %s: transport closed", t.cfg.NodeID, p.ID)
	}
	if _, ok := t.peers[p.ID]; ok {
		return fmt.Errorf("kmlink: node %s: peer %s added twice; remove it first to change it", t.cfg.NodeID, p.ID)
	}
	ps := &peer{id: p.ID, addr: p.Addr, master: master, done: make(chan struct{})}
	ps.ctx, ps.cancel = context.WithCancel(t.ctx)
	t.peers[p.ID] = ps
	if master {
		t.wg.Add(1)
		go t.dialLoop(ps)
	} else {
		close(ps.done)
	}
	return nil
}

// RemovePeer removes a neighbour: it stops dialing it, closes its link and
// refuses its connections from then on. LinkDown for the closed link
// follows asynchronously.
func (t *Transport) RemovePeer(id string) error {
	t.mu.Lock()
	p, ok := t.peers[id]
	if ok {
		delete(t.peers, id)
		p.removed = true
	}
	c := (*Conn)(nil)
	if ok {
		c = p.conn
	}
	t.mu.Unlock()
	if !ok {
		return fmt.Errorf("kmlink: node %s: remove peer %s: no such peer", t.cfg.NodeID, id)
	}
	p.cancel()
	if c != nil {
		c.qc.CloseWithError(codeClosed, fmt.Sprintf("node %s removed node %s from its peers", t.cfg.NodeID, id))
	}
	return nil
}

// Conn returns the current connection to the peer id, or nil if the link is
// down or id is no peer.
func (t *Transport) Conn(id string) *Conn {
	t.mu.Lock()
	defer t.mu.Unlock()
	if p := t.peers[id]; p != nil {
		return p.conn
	}
	return nil
}

// Links returns the state of every peer's link, sorted by peer ID.
func (t *Transport) Links() []LinkStatus {
	t.mu.Lock()
	out := make([]LinkStatus, 0, len(t.peers))
	conns := make([]*Conn, 0, len(t.peers))
	for _, p := range t.peers {
		s := LinkStatus{ID: p.id, Addr: p.addr, Master: p.master, Up: p.conn != nil,
			Since: p.since, Generation: p.generation, Reconnects: p.reconnects}
		if p.lastErr != nil {
			s.LastError = p.lastErr.Error()
		}
		out = append(out, s)
		conns = append(conns, p.conn)
	}
	t.mu.Unlock()
	for i, c := range conns {
		if c != nil {
			out[i].RemoteAddr = c.qc.RemoteAddr().String()
			out[i].RTT = c.qc.ConnectionStats().SmoothedRTT
			out[i].GSO = c.qc.ConnectionState().GSO
		}
	}
	slices.SortFunc(out, func(a, b LinkStatus) int {
		switch {
		case a.ID < b.ID:
			return -1
		case a.ID > b.ID:
			return 1
		}
		return 0
	})
	return out
}

// Close closes every link (telling the peers), stops dialing and
// accepting, waits for all goroutines, handler calls included, and closes
// the socket. It must not be called from a Handler.
func (t *Transport) Close() error {
	return t.close(true)
}

// close closes the transport; with graceful false it drops the links
// without telling the peers, as a crash would (tests).
func (t *Transport) close(graceful bool) error {
	var err error
	t.closeOnce.Do(func() {
		t.mu.Lock()
		t.closed = true
		var conns []*Conn
		for _, p := range t.peers {
			if p.conn != nil {
				conns = append(conns, p.conn)
			}
		}
		t.mu.Unlock()
		if t.cancel != nil {
			t.cancel()
		}
		if !graceful {
			t.qt.Close()
		}
		for _, c := range conns {
			c.qc.CloseWithError(codeClosed, fmt.Sprintf("node %s is shutting down", t.cfg.NodeID))
		}
		err = t.ln.Close()
		t.wg.Wait()
		if qerr := t.qt.Close(); err == nil {
			err = qerr
		}
		if uerr := t.udp.Close(); err == nil {
			err = uerr
		}
		if err != nil {
			err = fmt.Errorf("kmlink: node %s: close: %w", t.cfg.NodeID, err)
		}
		t.log.Info("kmlink: transport closed", "addr", t.udp.LocalAddr().String())
	})
	return err
}

// acceptLoop hands each accepted connection to a goroutine of its own.
func (t *Transport) acceptLoop() {
	defer t.wg.Done()
	for {
		qc, err := t.ln.Accept(t.ctx)
		if err != nil {
			if t.ctx.Err() == nil && !errors.Is(err, quic.ErrServerClosed) {
				t.log.Error("kmlink: accepting links stopped", "addr", t.udp.LocalAddr().String(), "err", err)
			}
			return
		}
		t.wg.Add(1)
		go t.accepted(qc)
	}
}

type nopHandler struct{}

func (nopHandler) LinkUp(*Conn)          {}
func (nopHandler) LinkDown(*Conn, error) {}
