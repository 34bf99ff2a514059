package kmlink

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/qrelay/qrelay/internal/pki"
)

// hello is what the accepting end writes on a bidirectional stream it
// opens once it has accepted a link (the peer is configured and has the
// right role). The master reports the link up only after reading it, so a
// connection the acceptor refuses after the TLS handshake never looks up.
const hello = "qrelay/2 link accepted\n"

// Conn is one established connection of a KM link. The relay engine uses
// its unidirectional streams; bidirectional streams are reserved for
// kmlink.
type Conn struct {
	t    *Transport
	p    *peer
	qc   *quic.Conn
	gen  uint64
	down chan struct{} // closed once LinkDown has returned
}

// Peer is the peer's node ID.
func (c *Conn) Peer() string { return c.p.id }

// Master reports whether this end is the link master (the lower node ID).
func (c *Conn) Master() bool { return c.p.master }

// Generation numbers the connections to one peer: 1 for the first, and one
// more for each new connection, for the life of the Transport.
func (c *Conn) Generation() uint64 { return c.gen }

// Context is done when the connection has ended; context.Cause says why.
func (c *Conn) Context() context.Context { return c.qc.Context() }

// OpenUniStream opens a unidirectional stream to the peer, waiting while
// the peer's stream limit is reached.
func (c *Conn) OpenUniStream(ctx context.Context) (*quic.SendStream, error) {
	s, err := c.qc.OpenUniStreamSync(ctx)
	if err != nil {
		return nil, fmt.Errorf("kmlink: node %s: open stream to node %s (generation %d): %w", c.t.cfg.NodeID, c.p.id, c.gen, err)
	}
	return s, nil
}

// AcceptUniStream waits for the next unidirectional stream the peer opens.
func (c *Conn) AcceptUniStream(ctx context.Context) (*quic.ReceiveStream, error) {
	s, err := c.qc.AcceptUniStream(ctx)
	if err != nil {
		return nil, fmt.Errorf("kmlink: node %s: accept stream from node %s (generation %d): %w", c.t.cfg.NodeID, c.p.id, c.gen, err)
	}
	return s, nil
}

// Close aborts the connection, telling the peer the reason. Both ends
// report LinkDown; the master then redials. Use it on protocol errors.
func (c *Conn) Close(reason string) {
	c.qc.CloseWithError(codeAborted, reason)
}

// QUIC is the underlying QUIC connection, for statistics and benchmarks.
func (c *Conn) QUIC() *quic.Conn { return c.qc }

// accepted vets a connection a peer dialed, says hello and serves it.
func (t *Transport) accepted(qc *quic.Conn) {
	defer t.wg.Done()
	addr := qc.RemoteAddr().String()
	certs := qc.ConnectionState().TLS.PeerCertificates
	if len(certs) == 0 { // cannot happen: the handshake requires a certificate
		qc.CloseWithError(codeRefused, "no client certificate")
		return
	}
	id, err := pki.PeerID(certs[0], pki.Node) // verified in the handshake
	if err != nil {
		qc.CloseWithError(codeRefused, err.Error())
		return
	}
	t.mu.Lock()
	p := t.peers[id]
	closed := t.closed
	t.mu.Unlock()
	var reason, fix string
	switch {
	case closed:
		qc.CloseWithError(codeClosed, fmt.Sprintf("node %s is shutting down", t.cfg.NodeID))
		return
	case p == nil:
		reason = fmt.Sprintf("node %s is not a peer of node %s", id, t.cfg.NodeID)
		fix = fmt.Sprintf("add node %s to the peers of node %s, or remove node %s from the peers of node %s", id, t.cfg.NodeID, t.cfg.NodeID, id)
	case p.master:
		reason = fmt.Sprintf("node %s dialed node %s, but node %s has the lower ID and so dials the link itself", id, t.cfg.NodeID, t.cfg.NodeID)
		fix = "the lower node ID dials (byte-wise comparison); check that both nodes run the same qrelay version"
	}
	if reason != "" {
		t.refuse(addr, id, reason, fix)
		qc.CloseWithError(codeRefused, reason+"; "+fix)
		return
	}
	ctx, cancel := context.WithTimeout(p.ctx, t.handshakeTimeout())
	err = sendHello(ctx, qc)
	cancel()
	if err != nil {
		if p.ctx.Err() == nil {
			t.log.Warn("kmlink: link hello failed", "peer", id, "addr", addr, "err", err)
		}
		qc.CloseWithError(codeProtocol, "link hello failed: "+err.Error())
		return
	}
	t.serve(p, qc)
}

func sendHello(ctx context.Context, qc *quic.Conn) error {
	s, err := qc.OpenStreamSync(ctx)
	if err != nil {
		return err
	}
	s.CancelRead(0) // the master sends nothing back
	if _, err := s.Write([]byte(hello)); err != nil {
		return err
	}
	return s.Close()
}

// readHello waits for the acceptor's hello; ctx bounds the wait.
func readHello(ctx context.Context, qc *quic.Conn) error {
	s, err := qc.AcceptStream(ctx)
	if err != nil {
		return err
	}
	stop := context.AfterFunc(ctx, func() { s.CancelRead(0) })
	defer stop()
	s.CancelWrite(0) // nothing to send back
	buf, err := io.ReadAll(io.LimitReader(s, int64(len(hello))+1))
	if err != nil {
		if ctx.Err() != nil {
			return context.Cause(ctx)
		}
		return err
	}
	if string(buf) != hello {
		return fmt.Errorf("unexpected link hello %q", buf)
	}
	return nil
}

// serve registers an established connection to p, replacing any earlier
// one, runs the handler and waits for the connection to end.
func (t *Transport) serve(p *peer, qc *quic.Conn) {
	t.mu.Lock()
	if t.closed || p.removed {
		t.mu.Unlock()
		qc.CloseWithError(codeClosed, fmt.Sprintf("node %s no longer links to node %s", t.cfg.NodeID, p.id))
		return
	}
	old := t.last[p.id] // up (to be replaced), going down, or down
	c := &Conn{t: t, p: p, qc: qc, down: make(chan struct{}), gen: 1}
	if old != nil {
		c.gen = old.gen + 1
	}
	t.last[p.id] = c
	p.conn = c
	p.generation = c.gen
	p.since = time.Now()
	t.mu.Unlock()

	addr := qc.RemoteAddr().String()
	if old != nil {
		if old.qc.Context().Err() == nil {
			t.log.Info("kmlink: replacing link by a newer connection from the same peer", "peer", p.id, "addr", addr,
				"old_generation", old.gen, "old_addr", old.qc.RemoteAddr().String(), "generation", c.gen)
			old.qc.CloseWithError(codeReplaced, fmt.Sprintf("replaced by a newer connection (generation %d) from node %s", c.gen, p.id))
		}
		<-old.down
	}
	t.log.Info("kmlink: link up", "peer", p.id, "addr", addr, "generation", c.gen, "master", p.master,
		"gso", qc.ConnectionState().GSO)
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		t.handler.LinkUp(c)
	}()

	<-qc.Context().Done()
	err := t.downError(c, addr, context.Cause(qc.Context()))
	t.mu.Lock()
	if p.conn == c {
		p.conn = nil
		p.since = time.Now()
	}
	p.lastErr = err
	t.mu.Unlock()
	t.log.Info("kmlink: link down", "peer", p.id, "addr", addr, "generation", c.gen, "err", err)
	t.handler.LinkDown(c, err)
	close(c.down)
}

// downError says why the connection c to addr ended.
func (t *Transport) downError(c *Conn, addr string, cause error) error {
	var (
		idle  *quic.IdleTimeoutError
		app   *quic.ApplicationError
		reset *quic.StatelessResetError
		why   string
	)
	switch {
	case errors.As(cause, &idle):
		why = fmt.Sprintf("no packet for %v (idle timeout): node %s or the path to it is down; check that it runs and that UDP passes", t.cfg.IdleTimeout, c.p.id)
	case errors.As(cause, &app) && app.Remote:
		why = fmt.Sprintf("closed by node %s: %s", c.p.id, app.ErrorMessage)
	case errors.As(cause, &app):
		why = "closed by this node: " + app.ErrorMessage
	case errors.As(cause, &reset):
		why = fmt.Sprintf("node %s reset the connection: it restarted or lost the connection's state", c.p.id)
	default:
		why = "connection failed"
	}
	if c.p.master && c.p.ctx.Err() == nil {
		why += "; redialing"
	}
	return fmt.Errorf("kmlink: node %s: link to node %s at %s (generation %d) down: %s: %w", t.cfg.NodeID, c.p.id, addr, c.gen, why, cause)
}
