package wgtest

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"
)

// EchoPort is the UDP port of Pair.Echo's server, inside the tunnel.
const EchoPort = 7

// stopGrace is how long Stop waits for answers still in flight.
const stopGrace = time.Second

// EchoResult is what an echo measured.
type EchoResult struct {
	Sent, Answered uint64
	// MaxGap is the largest gap between consecutive answers, measured at the
	// client, counting the silence from the last answer until sending
	// stopped. MaxGapAt is when that gap ended, since the echo started.
	MaxGap, MaxGapAt time.Duration
}

// AnsweredPercent is the share of datagrams sent that were answered.
func (r EchoResult) AnsweredPercent() float64 {
	if r.Sent == 0 {
		return 0
	}
	return 100 * float64(r.Answered) / float64(r.Sent)
}

// MaxGapMs is MaxGap in milliseconds.
func (r EchoResult) MaxGapMs() float64 { return float64(r.MaxGap.Microseconds()) / 1000 }

func (r EchoResult) String() string {
	return fmt.Sprintf("sent %d, answered %d (%.3f %%), max gap %.1f ms (at +%.1f s)",
		r.Sent, r.Answered, r.AnsweredPercent(), r.MaxGapMs(), r.MaxGapAt.Seconds())
}

// EchoStats records a running echo.
type EchoStats struct {
	client  net.Conn
	server  net.PacketConn
	started time.Time
	stop    chan struct{}
	sender  sync.WaitGroup
	notify  chan struct{} // a new answer arrived
	once    sync.Once
	final   EchoResult

	mu         sync.Mutex
	sent       uint64
	answered   uint64
	seen       []bool // by sequence number
	lastAnswer time.Time
	stoppedAt  time.Time
	maxGap     time.Duration
	maxGapAt   time.Duration
}

// Echo runs a UDP echo server in B (port EchoPort) and a client in A that
// sends a datagram every `every` until the EchoStats is stopped, by Stop or
// when the test ends.
func (p *Pair) Echo(tb testing.TB, every time.Duration) *EchoStats {
	tb.Helper()
	srv, err := p.B.Net.ListenUDPAddrPort(netip.AddrPortFrom(p.B.Addr, EchoPort))
	if err != nil {
		tb.Fatalf("wgtest: echo server: %v", err)
	}
	cli, err := p.A.Net.DialUDPAddrPort(netip.AddrPort{}, netip.AddrPortFrom(p.B.Addr, EchoPort))
	if err != nil {
		srv.Close()
		tb.Fatalf("wgtest: echo client: %v", err)
	}
	return StartEcho(tb, cli, srv, every)
}

// StartEcho runs an echo over sockets the caller opened, for tunnels that
// are not a Pair: server answers every datagram to its sender; client is
// connected to server through the tunnel and sends a datagram every
// `every`. Both sockets are closed when the echo stops.
func StartEcho(tb testing.TB, client net.Conn, server net.PacketConn, every time.Duration) *EchoStats {
	e := &EchoStats{client: client, server: server, started: time.Now(),
		stop: make(chan struct{}), notify: make(chan struct{}, 1)}
	go ServeEcho(server)
	go e.receive()
	e.sender.Add(1)
	go e.send(every)
	tb.Cleanup(func() { e.Stop() })
	return e
}

// ServeEcho answers every datagram pc receives to its sender, until pc is
// closed.
func ServeEcho(pc net.PacketConn) {
	buf := make([]byte, 2048)
	for {
		n, addr, err := pc.ReadFrom(buf)
		if err != nil {
			return
		}
		pc.WriteTo(buf[:n], addr)
	}
}

func (e *EchoStats) send(every time.Duration) {
	defer e.sender.Done()
	t := time.NewTicker(every)
	defer t.Stop()
	pkt := make([]byte, 32)
	for seq := uint64(0); ; seq++ {
		select {
		case <-e.stop:
			e.mu.Lock()
			e.stoppedAt = time.Now()
			e.mu.Unlock()
			return
		case <-t.C:
		}
		binary.LittleEndian.PutUint64(pkt, seq)
		e.mu.Lock()
		e.sent++
		e.mu.Unlock()
		e.client.Write(pkt) // a failed write is a datagram lost
	}
}

func (e *EchoStats) receive() {
	buf := make([]byte, 64)
	for {
		n, err := e.client.Read(buf)
		if err != nil {
			return
		}
		if n < 8 {
			continue
		}
		seq := binary.LittleEndian.Uint64(buf)
		now := time.Now()
		e.mu.Lock()
		if seq < e.sent && (seq >= uint64(len(e.seen)) || !e.seen[seq]) {
			for uint64(len(e.seen)) <= seq {
				e.seen = append(e.seen, false)
			}
			e.seen[seq] = true
			e.answered++
			e.gap(now)
			e.lastAnswer = now
		}
		e.mu.Unlock()
		select {
		case e.notify <- struct{}{}:
		default:
		}
	}
}

// gap records the gap from the last answer to t. Called with e.mu held.
func (e *EchoStats) gap(t time.Time) {
	if e.lastAnswer.IsZero() {
		return
	}
	if g := t.Sub(e.lastAnswer); g > e.maxGap {
		e.maxGap, e.maxGapAt = g, t.Sub(e.started)
	}
}

// Snapshot returns the figures so far; the silence since the last answer
// counts as a gap.
func (e *EchoStats) Snapshot() EchoResult {
	e.mu.Lock()
	defer e.mu.Unlock()
	end := e.stoppedAt
	if end.IsZero() {
		end = time.Now()
	}
	r := EchoResult{Sent: e.sent, Answered: e.answered, MaxGap: e.maxGap, MaxGapAt: e.maxGapAt}
	if !e.lastAnswer.IsZero() {
		if g := end.Sub(e.lastAnswer); g > r.MaxGap {
			r.MaxGap, r.MaxGapAt = g, end.Sub(e.started)
		}
	}
	return r
}

// Stop stops sending, waits up to a second for the answers in flight,
// closes the sockets and returns the figures. Later calls return the same.
func (e *EchoStats) Stop() EchoResult {
	e.once.Do(func() {
		close(e.stop)
		e.sender.Wait()
		deadline := time.NewTimer(stopGrace)
		defer deadline.Stop()
	wait:
		for {
			e.mu.Lock()
			all := e.answered == e.sent
			e.mu.Unlock()
			if all {
				break
			}
			select {
			case <-e.notify:
			case <-deadline.C:
				break wait
			}
		}
		e.client.Close()
		e.server.Close()
		e.final = e.Snapshot()
	})
	return e.final
}
