// Package http1 serves an http.Handler over TLS with a lean HTTP/1.1
// connection loop of its own, for small request/response APIs (the ETSI
// GS QKD 014 key delivery API) where net/http's per-request machinery is
// a large share of the cost.
//
// Requests are parsed by net/http's own parser (http.ReadRequest); what is
// left out is what a small JSON API does not need and costs on every
// request: the background read that watches for a client going away, the
// chunked response writer, per-request goroutines and timers. A response
// is buffered whole and sent in one write, and both the response buffer
// and the handler's body are zeroised once written, because the body
// holds keys. Connections that negotiate HTTP/2 by ALPN are handed to a
// net/http server, so HTTP/2 clients are served as before.
//
// What it does not do, and net/http does: cancel a request's context when
// the client goes away mid-request (the context ends only when the
// connection or server closes, so handlers must bound their own waits),
// stream responses (Flush, Hijack, ReadFrom are not offered), sniff a
// Content-Type, or serve HTTP/1.1 without TLS.
package http1

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Implementation defaults.
const (
	DefaultReadHeaderTimeout = 10 * time.Second
	DefaultReadTimeout       = 30 * time.Second
	DefaultWriteTimeout      = 30 * time.Second
	DefaultIdleTimeout       = 2 * time.Minute
	DefaultMaxHeaderBytes    = 64 << 10

	// maxDrain is the most of a request body the server reads past what
	// the handler read to keep the connection; beyond it, it closes.
	maxDrain = 256 << 10
	// maxKeptBuffer is the largest response buffer a connection keeps
	// between requests.
	maxKeptBuffer = 64 << 10
)

// ErrServerClosed is returned by Serve after Shutdown or Close.
var ErrServerClosed = http.ErrServerClosed

// Server serves Handler over TLS. The zero timeouts take the defaults
// above; TLSConfig is required and must not be modified after Serve.
type Server struct {
	Handler   http.Handler
	TLSConfig *tls.Config

	ReadHeaderTimeout time.Duration // TLS handshake, and a request's line and headers
	ReadTimeout       time.Duration // a request's body
	WriteTimeout      time.Duration // a response
	IdleTimeout       time.Duration // between requests of a connection
	MaxHeaderBytes    int

	// Log receives connection errors worth an operator's attention (a
	// handler panic); nil is slog.Default().
	Log *slog.Logger

	once      sync.Once
	h2        *http.Server  // serves the connections that negotiate h2
	h2ln      *connListener // feeds h2
	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	conns     map[*conn]struct{}
	closing   atomic.Bool
	connsDone sync.WaitGroup
}

func (s *Server) init() {
	s.once.Do(func() {
		if s.ReadHeaderTimeout <= 0 {
			s.ReadHeaderTimeout = DefaultReadHeaderTimeout
		}
		if s.ReadTimeout <= 0 {
			s.ReadTimeout = DefaultReadTimeout
		}
		if s.WriteTimeout <= 0 {
			s.WriteTimeout = DefaultWriteTimeout
		}
		if s.IdleTimeout <= 0 {
			s.IdleTimeout = DefaultIdleTimeout
		}
		if s.MaxHeaderBytes <= 0 {
			s.MaxHeaderBytes = DefaultMaxHeaderBytes
		}
		if s.Log == nil {
			s.Log = slog.Default()
		}
		s.listeners = map[net.Listener]struct{}{}
		s.conns = map[*conn]struct{}{}
		s.h2ln = newConnListener()
		s.h2 = &http.Server{
			Handler:           s.Handler,
			TLSConfig:         s.TLSConfig, // its "h2" makes net/http set up HTTP/2
			ReadHeaderTimeout: s.ReadHeaderTimeout,
			IdleTimeout:       s.IdleTimeout,
			ErrorLog:          slog.NewLogLogger(s.Log.Handler(), slog.LevelDebug),
		}
		go s.h2.Serve(s.h2ln) //nolint:errcheck // ends with ErrServerClosed
	})
}

// Serve accepts TCP connections on ln and serves them until ln fails or
// the server is shut down; it always returns a non-nil error,
// ErrServerClosed after Shutdown or Close.
func (s *Server) Serve(ln net.Listener) error {
	if s.TLSConfig == nil || s.Handler == nil {
		return errors.New("http1: Server needs a Handler and a TLSConfig")
	}
	s.init()
	s.mu.Lock()
	if s.closing.Load() {
		s.mu.Unlock()
		ln.Close()
		return ErrServerClosed
	}
	s.listeners[ln] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, ln)
		s.mu.Unlock()
	}()
	var backoff time.Duration
	for {
		raw, err := ln.Accept()
		if err != nil {
			if s.closing.Load() {
				return ErrServerClosed
			}
			if temporary(err) {
				// Out of file descriptors and the like: back off as
				// net/http does rather than spin or give up.
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				s.Log.Warn("http1: accept failed; retrying", "addr", ln.Addr().String(), "err", err, "retry_in", backoff)
				time.Sleep(backoff)
				continue
			}
			return err
		}
		backoff = 0
		c := s.newConn(raw)
		if c == nil {
			raw.Close()
			return ErrServerClosed
		}
		go c.serve()
	}
}

// temporary reports whether an accept error will pass (out of file
// descriptors and the like). The deprecated Temporary method is still how
// net/http tells these apart.
func temporary(err error) bool {
	var t interface{ Temporary() bool }
	return errors.As(err, &t) && t.Temporary()
}

func (s *Server) newConn(raw net.Conn) *conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing.Load() {
		return nil
	}
	c := &conn{srv: s, raw: raw}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	s.conns[c] = struct{}{}
	s.connsDone.Add(1)
	return c
}

func (s *Server) forget(c *conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	s.connsDone.Done()
}

// Shutdown stops accepting connections, closes idle ones and waits for
// those answering a request to finish it (they close after it) until ctx
// ends, when it closes them all. HTTP/2 connections are shut down by
// net/http's rules.
func (s *Server) Shutdown(ctx context.Context) error {
	s.init()
	s.stop(false)
	h2err := s.h2.Shutdown(ctx)
	done := make(chan struct{})
	go func() { s.connsDone.Wait(); close(done) }()
	select {
	case <-done:
		return h2err
	case <-ctx.Done():
		s.stop(true)
		<-done
		return ctx.Err()
	}
}

// Close closes the listeners and every connection at once.
func (s *Server) Close() error {
	s.init()
	s.stop(true)
	err := s.h2.Close()
	s.connsDone.Wait()
	return err
}

// stop marks the server closing, closes its listeners and its idle
// connections, or all connections if all.
func (s *Server) stop(all bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closing.Store(true)
	for ln := range s.listeners {
		ln.Close()
	}
	for c := range s.conns {
		if all || c.idle.Load() {
			c.close()
		}
	}
}
