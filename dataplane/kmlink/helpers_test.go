package kmlink

import (
	"crypto/tls"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/qrelay/qrelay/internal/pki"
)

// waitFor bounds every wait for an event in these tests.
const waitFor = 10 * time.Second

func newCA(t testing.TB, name string) *pki.CA {
	t.Helper()
	ca, err := pki.NewCA(name, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

func issue(t testing.TB, ca *pki.CA, kind pki.Kind, id string) tls.Certificate {
	t.Helper()
	c, err := ca.Issue(kind, id, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return c.TLS
}

// event is a Handler call.
type event struct {
	up  bool
	c   *Conn
	err error
}

// recorder is a Handler that queues its calls.
type recorder struct {
	ch         chan event
	violations atomic.Int32 // LinkDown called with a live context
}

func newRecorder() *recorder { return &recorder{ch: make(chan event, 256)} }

func (r *recorder) LinkUp(c *Conn) { r.ch <- event{up: true, c: c} }

func (r *recorder) LinkDown(c *Conn, err error) {
	if c.Context().Err() == nil {
		r.violations.Add(1)
	}
	r.ch <- event{c: c, err: err}
}

func (r *recorder) next(t testing.TB) event {
	t.Helper()
	select {
	case e := <-r.ch:
		return e
	case <-time.After(waitFor):
		t.Fatalf("no link event within %v", waitFor)
		return event{}
	}
}

func (r *recorder) wantUp(t testing.TB) *Conn {
	t.Helper()
	e := r.next(t)
	if !e.up {
		t.Fatalf("got LinkDown (generation %d: %v), want LinkUp", e.c.Generation(), e.err)
	}
	return e.c
}

func (r *recorder) wantDown(t testing.TB) (*Conn, error) {
	t.Helper()
	e := r.next(t)
	if e.up {
		t.Fatalf("got LinkUp (generation %d), want LinkDown", e.c.Generation())
	}
	if e.err == nil {
		t.Fatal("LinkDown with a nil error")
	}
	return e.c, e.err
}

// expectQuiet fails if the recorder sees an event within d.
func (r *recorder) expectQuiet(t testing.TB, d time.Duration) {
	t.Helper()
	select {
	case e := <-r.ch:
		t.Fatalf("unexpected link event: up=%v generation=%d err=%v", e.up, e.c.Generation(), e.err)
	case <-time.After(d):
	}
}

// logSink collects log lines and wakes a waiter on each.
type logSink struct {
	mu     sync.Mutex
	lines  []string
	notify chan struct{}
}

func newLogSink() *logSink { return &logSink{notify: make(chan struct{}, 1)} }

func (s *logSink) Write(p []byte) (int, error) {
	s.mu.Lock()
	s.lines = append(s.lines, string(p))
	s.mu.Unlock()
	select {
	case s.notify <- struct{}{}:
	default:
	}
	return len(p), nil
}

// count returns how many lines contain all of subs.
func (s *logSink) count(subs ...string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, l := range s.lines {
		if containsAll(l, subs...) {
			n++
		}
	}
	return n
}

// wait waits for the n-th line that contains all of subs and returns it.
func (s *logSink) wait(t testing.TB, n int, subs ...string) string {
	t.Helper()
	timeout := time.After(waitFor)
	for {
		s.mu.Lock()
		seen := 0
		for _, l := range s.lines {
			if containsAll(l, subs...) {
				if seen++; seen == n {
					s.mu.Unlock()
					return l
				}
			}
		}
		s.mu.Unlock()
		select {
		case <-s.notify:
		case <-timeout:
			t.Fatalf("no log line %d containing %q within %v", n, subs, waitFor)
		}
	}
}

func (s *logSink) dump(t testing.TB, name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, l := range s.lines {
		t.Logf("%s: %s", name, strings.TrimSpace(l))
	}
}

func containsAll(s string, subs ...string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}

// node is a Transport with its recorder and log.
type node struct {
	*Transport
	rec  *recorder
	logs *logSink
}

// testConfig is a Config with short timeouts for node id.
func testConfig(t testing.TB, ca *pki.CA, id string) Config {
	return Config{
		NodeID:       id,
		Certificate:  issue(t, ca, pki.Node, id),
		Roots:        ca.Pool(),
		ListenAddr:   "127.0.0.1:0",
		KeepAlive:    100 * time.Millisecond,
		IdleTimeout:  3 * time.Second,
		ReconnectMin: 5 * time.Millisecond,
		ReconnectMax: 100 * time.Millisecond,
	}
}

// startNode starts a Transport for cfg, recording its handler calls and
// logs; it is closed when the test ends.
func startNode(t testing.TB, cfg Config) *node {
	t.Helper()
	n := &node{rec: newRecorder(), logs: newLogSink()}
	cfg.Handler = n.rec
	cfg.Logger = slog.New(slog.NewTextHandler(n.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	tr, err := Listen(cfg)
	if err != nil {
		t.Fatal(err)
	}
	n.Transport = tr
	t.Cleanup(func() {
		if err := tr.Close(); err != nil {
			t.Errorf("close %s: %v", cfg.NodeID, err)
		}
		if v := n.rec.violations.Load(); v > 0 {
			t.Errorf("%s: LinkDown called %d times before the connection's context was done", cfg.NodeID, v)
		}
		if t.Failed() {
			n.logs.dump(t, cfg.NodeID)
		}
	})
	return n
}

// udpProxy forwards datagrams between one client and a target, and can
// drop them all to make each end look dead to the other.
type udpProxy struct {
	front, back *net.UDPConn
	target      *net.UDPAddr
	drop        atomic.Bool
	client      atomic.Pointer[net.UDPAddr]
	wg          sync.WaitGroup
}

func newUDPProxy(t testing.TB, target *net.UDPAddr) *udpProxy {
	t.Helper()
	front, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	back, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	p := &udpProxy{front: front, back: back, target: target}
	p.wg.Add(2)
	go func() { // client -> target
		defer p.wg.Done()
		buf := make([]byte, 65536)
		for {
			n, from, err := front.ReadFromUDP(buf)
			if err != nil {
				return
			}
			p.client.Store(from)
			if !p.drop.Load() {
				back.WriteToUDP(buf[:n], target)
			}
		}
	}()
	go func() { // target -> client
		defer p.wg.Done()
		buf := make([]byte, 65536)
		for {
			n, _, err := back.ReadFromUDP(buf)
			if err != nil {
				return
			}
			if c := p.client.Load(); c != nil && !p.drop.Load() {
				front.WriteToUDP(buf[:n], c)
			}
		}
	}()
	t.Cleanup(func() {
		front.Close()
		back.Close()
		p.wg.Wait()
	})
	return p
}

func (p *udpProxy) Addr() string { return p.front.LocalAddr().String() }

// linkPair starts node-a (master) and node-b (acceptor), links them and
// returns both ends' connections.
func linkPair(t testing.TB, ca *pki.CA, mod func(a, b *Config)) (a, b *node, ca1, cb1 *Conn) {
	t.Helper()
	cfgA, cfgB := testConfig(t, ca, "node-a"), testConfig(t, ca, "node-b")
	if mod != nil {
		mod(&cfgA, &cfgB)
	}
	cfgB.Peers = []Peer{{ID: "node-a"}}
	b = startNode(t, cfgB)
	if len(cfgA.Peers) == 0 {
		cfgA.Peers = []Peer{{ID: "node-b", Addr: b.Addr().String()}}
	}
	a = startNode(t, cfgA)
	ca1, cb1 = a.rec.wantUp(t), b.rec.wantUp(t)
	return a, b, ca1, cb1
}

func wantErrContains(t testing.TB, err error, subs ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want one containing %q", subs)
	}
	if !containsAll(err.Error(), subs...) {
		t.Fatalf("error %q does not contain %q", err, subs)
	}
}

// peerState returns the peer struct of id.
func (n *node) peerState(t testing.TB, id string) *peer {
	t.Helper()
	n.mu.Lock()
	defer n.mu.Unlock()
	p := n.peers[id]
	if p == nil {
		t.Fatalf("%s: no peer %s", n.cfg.NodeID, id)
	}
	return p
}
