package http1

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// conn is one client connection.
type conn struct {
	srv    *Server
	raw    net.Conn // the TCP connection under tc
	ctx    context.Context
	cancel context.CancelFunc
	idle   atomic.Bool // waiting for a request: Shutdown may close it
	closed sync.Once
}

func (c *conn) close() {
	c.closed.Do(func() {
		// The socket first: a handler that returns because its context
		// ended must find nothing left to write to.
		c.raw.Close()
		c.cancel()
	})
}

func (c *conn) serve() {
	s := c.srv
	handedOff := false
	defer func() {
		if !handedOff {
			c.close()
		}
		s.forget(c)
	}()
	tc := tls.Server(c.raw, s.TLSConfig)
	c.raw.SetDeadline(time.Now().Add(s.ReadHeaderTimeout)) //nolint:errcheck // a closed conn fails the handshake
	if err := tc.HandshakeContext(c.ctx); err != nil {
		// Scanners and clients without a certificate: nothing an operator
		// acts on, so not logged above debug.
		s.Log.Debug("http1: TLS handshake failed", "remote", c.raw.RemoteAddr().String(), "err", err)
		return
	}
	c.raw.SetDeadline(time.Time{}) //nolint:errcheck
	st := tc.ConnectionState()
	if st.NegotiatedProtocol == "h2" {
		if s.h2ln.push(tc) {
			handedOff = true
		}
		return
	}
	l := newLoop(tc, c.raw, &st, s)
	l.ctx = c.ctx
	l.idle = &c.idle
	l.run()
	if l.graceful {
		// Say close_notify, so the client sees a clean end rather than a
		// reset, within the write timeout.
		c.raw.SetWriteDeadline(time.Now().Add(s.WriteTimeout)) //nolint:errcheck
		tc.Close()
	}
}

// loop reads requests from one connection and answers them in order.
// It is separate from conn so that the fuzz test can drive it over a
// plain pipe.
type loop struct {
	rw       io.ReadWriter // the TLS connection
	deadline deadliner     // its TCP connection, for timeouts
	state    *tls.ConnectionState
	srv      *Server
	ctx      context.Context
	idle     *atomic.Bool
	remote   string

	lr       io.LimitedReader // bounds what the request parser may read
	br       *bufio.Reader
	resp     response
	graceful bool // the loop ended after a complete response: close politely
}

type deadliner interface {
	SetReadDeadline(time.Time) error
	SetWriteDeadline(time.Time) error
	RemoteAddr() net.Addr
}

func newLoop(rw io.ReadWriter, d deadliner, st *tls.ConnectionState, s *Server) *loop {
	l := &loop{rw: rw, deadline: d, state: st, srv: s, ctx: context.Background(), idle: new(atomic.Bool)}
	l.remote = d.RemoteAddr().String()
	l.lr.R = rw
	l.br = bufio.NewReaderSize(&l.lr, 4096)
	l.resp.loop = l
	return l
}

// unlimited is the read limit while a body is read (bodies are bounded by
// Content-Length, the handler and maxDrain).
const unlimited = 1<<63 - 1

func (l *loop) run() {
	s := l.srv
	for first := true; ; first = false {
		// Wait for the next request: up to the idle timeout, or for the
		// first, the header timeout that also bounded the handshake.
		wait := s.IdleTimeout
		if first {
			wait = s.ReadHeaderTimeout
		}
		// The parser may read the headers and what follows them in the
		// same segments (net/http allows 4 KiB of slack too); bytes of a
		// pipelined request already buffered count against its limit.
		l.lr.N = int64(s.MaxHeaderBytes) + 4096 - int64(l.br.Buffered())
		if l.br.Buffered() == 0 {
			l.idle.Store(true)
			if s.closing.Load() {
				l.graceful = true
				return
			}
			l.deadline.SetReadDeadline(time.Now().Add(wait)) //nolint:errcheck
			_, err := l.br.Peek(1)
			l.idle.Store(false)
			if err != nil {
				return // the client closed, or stayed idle too long
			}
		}
		l.deadline.SetReadDeadline(time.Now().Add(s.ReadHeaderTimeout)) //nolint:errcheck
		req, err := http.ReadRequest(l.br)
		if err != nil {
			l.refuseRequest(err)
			return
		}
		l.lr.N = unlimited
		l.deadline.SetReadDeadline(time.Now().Add(s.ReadTimeout)) //nolint:errcheck
		if !l.serveRequest(req) {
			return
		}
	}
}

// refuseRequest answers a request that could not be parsed, as net/http
// does, and the connection closes after it.
func (l *loop) refuseRequest(err error) {
	switch {
	case l.lr.N <= 0:
		l.writeSimple(http.StatusRequestHeaderFieldsTooLarge, fmt.Sprintf("request headers longer than %d bytes", l.srv.MaxHeaderBytes))
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		return // the client went away mid-request
	default:
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return
		}
		l.writeSimple(http.StatusBadRequest, "malformed HTTP request: "+err.Error())
	}
	l.graceful = true
}

// serveRequest answers req; it reports whether the connection may carry
// another request.
func (l *loop) serveRequest(req *http.Request) bool {
	keep := !req.Close
	if req.ProtoMajor != 1 {
		l.writeSimple(http.StatusHTTPVersionNotSupported, "this server speaks HTTP/1.x over this connection; HTTP/2 is offered by ALPN")
		l.graceful = true
		return false
	}
	// RFC 9112 §3.2: an HTTP/1.1 request without a Host is 400 (the
	// parser refuses two, and moves the header to req.Host).
	if req.ProtoAtLeast(1, 1) && req.Host == "" {
		l.writeSimple(http.StatusBadRequest, "an HTTP/1.1 request needs a Host header")
		l.graceful = true
		return false
	}
	if e, ok := req.Header["Expect"]; ok {
		if len(e) != 1 || !strings.EqualFold(e[0], "100-continue") || !req.ProtoAtLeast(1, 1) {
			l.writeSimple(http.StatusExpectationFailed, "the only expectation served is 100-continue")
			l.graceful = true
			return false
		}
		if req.ContentLength != 0 {
			// Sent at once rather than when the handler first reads:
			// the handlers here read every body they accept.
			if _, err := io.WriteString(l.rw, "HTTP/1.1 100 Continue\r\n\r\n"); err != nil {
				return false
			}
		}
		delete(req.Header, "Expect")
	}
	req.TLS = l.state
	req.RemoteAddr = l.remote
	req = req.WithContext(l.ctx)

	w := &l.resp
	w.reset(req)
	if !l.callHandler(w, req) || l.ctx.Err() != nil {
		// A panic, or the server closed the connection meanwhile.
		w.discard()
		return false
	}
	// Keep the connection only if the body was read to its end, or what
	// is left of it is short enough to read now.
	if req.Body != nil && req.Body != http.NoBody {
		n, err := io.CopyN(io.Discard, req.Body, maxDrain+1)
		if n > maxDrain || err != nil && err != io.EOF {
			keep = false
		}
	}
	if w.hdr.Get("Connection") == "close" || l.srv.closing.Load() {
		keep = false
	}
	if !keep {
		w.closeAfter = true
	}
	l.deadline.SetWriteDeadline(time.Now().Add(l.srv.WriteTimeout)) //nolint:errcheck
	if err := w.send(); err != nil {
		return false
	}
	l.graceful = !keep
	return keep
}

// callHandler runs the handler; a panic closes the connection without an
// answer, as in net/http (http.ErrAbortHandler is not logged).
func (l *loop) callHandler(w *response, req *http.Request) (ok bool) {
	defer func() {
		if p := recover(); p != nil {
			w.discard()
			if p != http.ErrAbortHandler {
				l.srv.Log.Error("http1: handler panicked; connection closed", "remote", l.remote, "method", req.Method, "path", req.URL.Path, "panic", fmt.Sprint(p))
			}
			ok = false
		}
	}()
	l.srv.Handler.ServeHTTP(w, req)
	return true
}

// writeSimple sends a plain-text error that ends the connection.
func (l *loop) writeSimple(code int, msg string) {
	l.deadline.SetWriteDeadline(time.Now().Add(l.srv.WriteTimeout)) //nolint:errcheck
	w := &l.resp
	w.reset(nil)
	w.hdr["Content-Type"] = []string{"text/plain; charset=utf-8"}
	w.closeAfter = true
	w.WriteHeader(code)
	w.Write([]byte(msg + "\n")) //nolint:errcheck
	w.send()                    //nolint:errcheck
}

// connListener is a net.Listener fed with connections by push.
type connListener struct {
	ch     chan net.Conn
	done   chan struct{}
	closed sync.Once
}

func newConnListener() *connListener {
	return &connListener{ch: make(chan net.Conn), done: make(chan struct{})}
}

// push hands c to Accept; false if the listener is closed.
func (l *connListener) push(c net.Conn) bool {
	select {
	case l.ch <- c:
		return true
	case <-l.done:
		return false
	}
}

func (l *connListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *connListener) Close() error {
	l.closed.Do(func() { close(l.done) })
	return nil
}

func (l *connListener) Addr() net.Addr { return pipeAddr{} }

type pipeAddr struct{}

func (pipeAddr) Network() string { return "http1" }
func (pipeAddr) String() string  { return "http1-h2" }
