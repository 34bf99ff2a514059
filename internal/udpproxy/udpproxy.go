// Package udpproxy is a UDP forwarder for tests of KM links: it stands
// between the dialling node and the accepting one and can cut the link
// silently, as a fibre cut or a dead switch would.
package udpproxy

import (
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"testing"
)

// Proxy forwards the datagrams of one KM link between the dialling node
// and the accepting node's port. cut makes it drop everything both ways,
// as a fibre cut would: neither end is told, so the nodes must find out
// by themselves (QUIC keepalives and idle timeout).
type Proxy struct {
	pc     net.PacketConn
	target *net.UDPAddr
	cutOff atomic.Bool

	mu       sync.Mutex
	client   net.Addr     // the dialling node's address
	upstream *net.UDPConn // to the target, one per client address
}

// New starts a proxy on a loopback port that forwards to target; it stops
// when the test ends.
func New(t testing.TB, target string) *Proxy {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ta, err := net.ResolveUDPAddr("udp", target)
	if err != nil {
		t.Fatal(err)
	}
	p := &Proxy{pc: pc, target: ta}
	go p.downstream()
	t.Cleanup(func() {
		pc.Close()
		p.mu.Lock()
		if p.upstream != nil {
			p.upstream.Close()
		}
		p.mu.Unlock()
	})
	return p
}

// Addr is the address the dialling node should dial.
func (p *Proxy) Addr() string { return p.pc.LocalAddr().String() }

// Cut drops all traffic, both ways, from now on.
func (p *Proxy) Cut() { p.cutOff.Store(true) }

// Heal lets traffic through again.
func (p *Proxy) Heal() { p.cutOff.Store(false) }

// downstream reads from the dialling node and forwards to the target.
func (p *Proxy) downstream() {
	buf := make([]byte, 64<<10)
	for {
		n, from, err := p.pc.ReadFrom(buf)
		if err != nil {
			return
		}
		if p.cutOff.Load() {
			continue
		}
		p.mu.Lock()
		if p.client == nil || p.client.String() != from.String() {
			// A new source address (a restarted node): a fresh upstream
			// socket, so the target sees a new path too.
			if p.upstream != nil {
				p.upstream.Close()
			}
			up, err := net.DialUDP("udp", nil, p.target)
			if err != nil {
				p.mu.Unlock()
				continue
			}
			p.client, p.upstream = from, up
			go p.upstreamLoop(up, from)
		}
		up := p.upstream
		p.mu.Unlock()
		up.Write(buf[:n])
	}
}

// upstreamLoop carries the target's answers back to client.
func (p *Proxy) upstreamLoop(up *net.UDPConn, client net.Addr) {
	buf := make([]byte, 64<<10)
	for {
		n, err := up.Read(buf)
		if errors.Is(err, net.ErrClosed) {
			return
		}
		if err != nil {
			// ECONNREFUSED from an ICMP port unreachable: the target is
			// not listening yet, or restarting. Keep the path open.
			continue
		}
		if p.cutOff.Load() {
			continue
		}
		p.pc.WriteTo(buf[:n], client)
	}
}
