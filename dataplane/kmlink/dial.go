package kmlink

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"strconv"
	"time"

	"github.com/quic-go/quic-go"
)

// dialLoop keeps the link to p up while this node is its master: it dials,
// serves the connection until it ends, and redials with backoff, until p is
// removed or the transport closes.
func (t *Transport) dialLoop(p *peer) {
	defer t.wg.Done()
	defer close(p.done)
	backoff := t.cfg.ReconnectMin
	var lastLogged string
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			timer := time.NewTimer(jitter(backoff))
			select {
			case <-p.ctx.Done():
				timer.Stop()
				return
			case <-timer.C:
			}
			backoff = min(2*backoff, t.cfg.ReconnectMax)
			t.mu.Lock()
			p.reconnects++
			t.mu.Unlock()
		}
		if p.ctx.Err() != nil {
			return
		}
		qc, err := t.dialOnce(p)
		if err != nil {
			if p.ctx.Err() != nil {
				return
			}
			t.mu.Lock()
			p.lastErr = err
			t.mu.Unlock()
			// Log a failure when it differs from the last one logged; a
			// peer that stays down does not flood the log.
			if msg := err.Error(); msg != lastLogged {
				lastLogged = msg
				t.log.Warn("kmlink: dial failed", "peer", p.id, "addr", p.addr, "attempt", attempt+1, "err", err)
			} else {
				t.log.Debug("kmlink: dial failed again", "peer", p.id, "addr", p.addr, "attempt", attempt+1, "next_within", backoff)
			}
			continue
		}
		lastLogged = ""
		start := time.Now()
		t.serve(p, qc)
		if time.Since(start) >= stableAfter {
			backoff = t.cfg.ReconnectMin
		}
	}
}

// dialOnce dials p and waits for its hello.
func (t *Transport) dialOnce(p *peer) (*quic.Conn, error) {
	ctx, cancel := context.WithTimeout(p.ctx, t.handshakeTimeout())
	defer cancel()
	fail := func(err error) error {
		if hint := dialHint(err, p.addr); hint != "" {
			return fmt.Errorf("kmlink: node %s: dial node %s at %s: %w; %s", t.cfg.NodeID, p.id, p.addr, err, hint)
		}
		return fmt.Errorf("kmlink: node %s: dial node %s at %s: %w", t.cfg.NodeID, p.id, p.addr, err)
	}
	raddr, err := t.resolve(ctx, p.addr)
	if err != nil {
		return nil, fail(err)
	}
	qc, err := t.qt.Dial(ctx, raddr, t.clientTLS(p), t.dialConf)
	if err != nil {
		return nil, fail(err)
	}
	if err := readHello(ctx, qc); err != nil {
		qc.CloseWithError(codeProtocol, "no link hello: "+err.Error())
		return nil, fail(err)
	}
	return qc, nil
}

// dialHint says what to do about a dial error, or "".
func dialHint(err error, addr string) string {
	var (
		te   *quic.TransportError
		app  *quic.ApplicationError
		hs   *quic.HandshakeTimeoutError
		idle *quic.IdleTimeoutError
	)
	switch {
	case errors.As(err, &hs), errors.As(err, &idle), errors.Is(err, context.DeadlineExceeded):
		return fmt.Sprintf("no answer from %s: check that the peer runs, listens there and that UDP passes", addr)
	case errors.As(err, &app) && app.Remote && app.ErrorCode == codeRefused:
		return "" // the peer's reason says what to do
	case errors.As(err, &te) && te.Remote && te.ErrorCode.IsCryptoError():
		switch tls.AlertError(te.ErrorCode - 0x100) {
		case 120: // no_application_protocol
			return fmt.Sprintf("the peer does not speak ALPN %q: is it a qrelay node of a compatible version?", ALPN)
		case 42, 43, 44, 45, 46, 48: // bad, unsupported, revoked, expired, unknown certificate; unknown CA
			return "the peer refused this node's certificate: check that it trusts the CA that issued it and that it is valid"
		}
	}
	return ""
}

// resolve turns host:port into a UDP address, preferring the address family
// of the local socket.
func (t *Transport) resolve(ctx context.Context, addr string) (*net.UDPAddr, error) {
	if ap, err := netip.ParseAddrPort(addr); err == nil {
		return net.UDPAddrFromAddrPort(ap), nil
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	pn, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		n, lerr := net.DefaultResolver.LookupPort(ctx, "udp", port)
		if lerr != nil {
			return nil, lerr
		}
		pn = uint64(n)
	}
	ips, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return nil, err
	}
	if len(ips) == 0 {
		return nil, fmt.Errorf("no address for %q", host)
	}
	ip := ips[0]
	if local := t.Addr().IP; local.To4() != nil && !local.IsUnspecified() {
		for _, a := range ips {
			if a.Unmap().Is4() {
				ip = a
				break
			}
		}
	}
	return net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip.Unmap(), uint16(pn))), nil
}

// jitter returns a duration between d/2 and d.
func jitter(d time.Duration) time.Duration {
	if d <= 1 {
		return d
	}
	return d/2 + rand.N(d/2+1)
}
