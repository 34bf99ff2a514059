package kmlink

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/qrelay/qrelay/internal/leakcheck"
	"github.com/qrelay/qrelay/internal/pki"
)

// sendRecv sends data on a new stream from one end and checks that the
// other end receives it intact.
func sendRecv(t *testing.T, from, to *Conn, size int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	data := make([]byte, size)
	rand.Read(data)
	errc := make(chan error, 1)
	go func() {
		s, err := from.OpenUniStream(ctx)
		if err != nil {
			errc <- err
			return
		}
		if _, err := s.Write(data); err != nil {
			errc <- err
			return
		}
		errc <- s.Close()
	}()
	rs, err := to.AcceptUniStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(rs)
	if err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Fatalf("%s -> %s: received %d bytes that differ from the %d sent", from.t.cfg.NodeID, to.t.cfg.NodeID, len(got), len(data))
	}
}

func TestLinkUpAndData(t *testing.T) {
	leakcheck.Check(t)
	ca := newCA(t, "lab")
	a, b, ca1, cb1 := linkPair(t, ca, nil)

	if !ca1.Master() || cb1.Master() {
		t.Errorf("Master(): node-a %v, node-b %v; want true, false", ca1.Master(), cb1.Master())
	}
	if ca1.Peer() != "node-b" || cb1.Peer() != "node-a" {
		t.Errorf("Peer(): %q, %q", ca1.Peer(), cb1.Peer())
	}
	if ca1.Generation() != 1 || cb1.Generation() != 1 {
		t.Errorf("Generation(): %d, %d; want 1, 1", ca1.Generation(), cb1.Generation())
	}
	if a.Conn("node-b") != ca1 || b.Conn("node-a") != cb1 || a.Conn("node-x") != nil {
		t.Error("Transport.Conn does not return the current connections")
	}
	if got := ca1.QUIC().ConnectionState().TLS.NegotiatedProtocol; got != ALPN {
		t.Errorf("ALPN %q, want %q", got, ALPN)
	}

	sendRecv(t, ca1, cb1, 1<<20)
	sendRecv(t, cb1, ca1, 1<<20)

	la, lb := a.Links(), b.Links()
	if len(la) != 1 || len(lb) != 1 {
		t.Fatalf("Links(): %d and %d entries, want 1 each", len(la), len(lb))
	}
	if s := la[0]; s.ID != "node-b" || !s.Up || !s.Master || s.Generation != 1 || s.Since.IsZero() || s.RemoteAddr != b.Addr().String() || s.RTT <= 0 {
		t.Errorf("node-a's link status: %+v", s)
	}
	if s := lb[0]; s.ID != "node-a" || !s.Up || s.Master || s.Generation != 1 || s.RemoteAddr != a.Addr().String() {
		t.Errorf("node-b's link status: %+v", s)
	}
	a.logs.wait(t, 1, "link up", "peer=node-b", "generation=1")

	a.logs.wait(t, 1, "UDP socket ready", "rcvbuf=")
}

func TestConnCloseRedials(t *testing.T) {
	leakcheck.Check(t)
	ca := newCA(t, "lab")
	a, b, ca1, cb1 := linkPair(t, ca, nil)

	// Acceptor aborts: both ends go down, the master redials.
	cb1.Close("test kill by node-b")
	c, err := a.rec.wantDown(t)
	if c != ca1 {
		t.Fatal("LinkDown for the wrong connection")
	}
	wantErrContains(t, err, "closed by node node-b", "test kill by node-b", "redialing")
	var app *quic.ApplicationError
	if !errors.As(err, &app) || !app.Remote || app.ErrorCode != codeAborted {
		t.Errorf("node-a's LinkDown error does not wrap the remote application error: %v", err)
	}
	_, err = b.rec.wantDown(t)
	wantErrContains(t, err, "closed by this node", "test kill by node-b")
	if ca1.Context().Err() == nil || cb1.Context().Err() == nil {
		t.Error("contexts of closed connections are not done")
	}
	ca2, cb2 := a.rec.wantUp(t), b.rec.wantUp(t)
	if ca2.Generation() != 2 || cb2.Generation() != 2 {
		t.Fatalf("generations after redial: %d, %d; want 2, 2", ca2.Generation(), cb2.Generation())
	}
	sendRecv(t, ca2, cb2, 64<<10)

	// Master aborts: same again.
	ca2.Close("test kill by node-a")
	if _, err := a.rec.wantDown(t); err == nil {
		t.Fatal("no error")
	}
	_, err = b.rec.wantDown(t)
	wantErrContains(t, err, "closed by node node-a", "test kill by node-a")
	ca3, cb3 := a.rec.wantUp(t), b.rec.wantUp(t)
	if ca3.Generation() != 3 || cb3.Generation() != 3 {
		t.Fatalf("generations after redial: %d, %d; want 3, 3", ca3.Generation(), cb3.Generation())
	}
	if l := a.Links()[0]; l.Generation != 3 || !l.Up || l.Reconnects < 2 || !strings.Contains(l.LastError, "test kill by node-a") {
		t.Errorf("node-a's link status: %+v", l)
	}
	a.logs.wait(t, 1, "link down", "generation=2")
}

func TestAcceptorRestartSamePort(t *testing.T) {
	leakcheck.Check(t)
	ca := newCA(t, "lab")
	a, b, _, _ := linkPair(t, ca, nil)
	addr := b.Addr().String()

	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	_, err := a.rec.wantDown(t)
	wantErrContains(t, err, "closed by node node-b", "shutting down")
	if _, err := b.rec.wantDown(t); err == nil {
		t.Fatal("no error")
	}

	cfg := testConfig(t, ca, "node-b")
	cfg.ListenAddr = addr
	cfg.Peers = []Peer{{ID: "node-a"}}
	b2 := startNode(t, cfg)
	ca2, cb2 := a.rec.wantUp(t), b2.rec.wantUp(t)
	if ca2.Generation() != 2 || cb2.Generation() != 1 {
		t.Fatalf("generations: node-a %d (want 2), new node-b %d (want 1)", ca2.Generation(), cb2.Generation())
	}
	sendRecv(t, ca2, cb2, 64<<10)
}

// A node that crashes and comes back on the same port resets its peers'
// stale connections (stateless reset, with a key derived from its node
// key), so they notice before the idle timeout.
func TestAcceptorCrashStatelessReset(t *testing.T) {
	leakcheck.Check(t)
	ca := newCA(t, "lab")
	long := func(a, b *Config) { a.IdleTimeout, b.IdleTimeout = time.Minute, time.Minute }
	a, b, ca1, _ := linkPair(t, ca, long)
	addr := b.Addr().String()
	cert := b.cfg.Certificate

	b.close(false) // no CONNECTION_CLOSE: a crash
	if _, err := b.rec.wantDown(t); err == nil {
		t.Fatal("no error")
	}
	cfg := testConfig(t, ca, "node-b")
	cfg.Certificate, cfg.ListenAddr, cfg.IdleTimeout = cert, addr, time.Minute
	cfg.Peers = []Peer{{ID: "node-a"}}
	b2 := startNode(t, cfg)

	// Keep-alive packets are too short to be answered with a stateless
	// reset; relay traffic is not.
	s, err := ca1.OpenUniStream(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		buf := make([]byte, 1200)
		for {
			if _, err := s.Write(buf); err != nil {
				return
			}
		}
	}()
	_, err = a.rec.wantDown(t)
	wantErrContains(t, err, "reset the connection")
	ca2, cb2 := a.rec.wantUp(t), b2.rec.wantUp(t)
	if ca2.Generation() != 2 || cb2.Generation() != 1 {
		t.Fatalf("generations: %d, %d; want 2, 1", ca2.Generation(), cb2.Generation())
	}
}

// When the master restarts (here: crashes and comes back on another
// port), the acceptor replaces the stale connection by the new one:
// LinkDown for the old, then LinkUp for the new.
func TestAcceptorReplacesConnection(t *testing.T) {
	leakcheck.Check(t)
	ca := newCA(t, "lab")
	long := func(a, b *Config) { a.IdleTimeout, b.IdleTimeout = time.Minute, time.Minute }
	a, b, _, cb1 := linkPair(t, ca, long)
	a.close(false)
	if _, err := a.rec.wantDown(t); err == nil {
		t.Fatal("no error")
	}

	cfg := testConfig(t, ca, "node-a")
	cfg.Certificate = a.cfg.Certificate
	cfg.Peers = []Peer{{ID: "node-b", Addr: b.Addr().String()}}
	a2 := startNode(t, cfg)

	c, err := b.rec.wantDown(t)
	if c != cb1 {
		t.Fatal("LinkDown for the wrong connection")
	}
	wantErrContains(t, err, "closed by this node", "replaced by a newer connection (generation 2)")
	cb2 := b.rec.wantUp(t)
	ca2 := a2.rec.wantUp(t)
	if cb2.Generation() != 2 || ca2.Generation() != 1 {
		t.Fatalf("generations: node-b %d (want 2), new node-a %d (want 1)", cb2.Generation(), ca2.Generation())
	}
	sendRecv(t, ca2, cb2, 64<<10)
}

func TestIdleTimeout(t *testing.T) {
	leakcheck.Check(t)
	ca := newCA(t, "lab")
	const idle = 500 * time.Millisecond
	cfgB := testConfig(t, ca, "node-b")
	cfgB.IdleTimeout = idle
	cfgB.Peers = []Peer{{ID: "node-a"}}
	b := startNode(t, cfgB)
	proxy := newUDPProxy(t, b.Addr())
	cfgA := testConfig(t, ca, "node-a")
	cfgA.IdleTimeout = idle
	cfgA.Peers = []Peer{{ID: "node-b", Addr: proxy.Addr()}}
	a := startNode(t, cfgA)
	a.rec.wantUp(t)
	b.rec.wantUp(t)

	proxy.drop.Store(true)
	start := time.Now()
	_, errA := a.rec.wantDown(t)
	_, errB := b.rec.wantDown(t)
	elapsed := time.Since(start)
	wantErrContains(t, errA, "idle timeout", "node node-b", "redialing")
	wantErrContains(t, errB, "idle timeout", "node node-a")
	// QUIC's idle timeout is max(IdleTimeout, 3 PTO); PTO is small on
	// loopback, so allow for scheduling only.
	if elapsed > idle+time.Second {
		t.Errorf("links went down %v after the peer went silent, want about %v", elapsed, idle)
	}
	t.Logf("dead peer detected after %v (IdleTimeout %v)", elapsed, idle)

	proxy.drop.Store(false)
	ca2, cb2 := a.rec.wantUp(t), b.rec.wantUp(t)
	if ca2.Generation() != 2 || cb2.Generation() != 2 {
		t.Fatalf("generations: %d, %d; want 2, 2", ca2.Generation(), cb2.Generation())
	}
}

func TestRemovePeerStopsRedialing(t *testing.T) {
	leakcheck.Check(t)
	ca := newCA(t, "lab")
	a, b, _, _ := linkPair(t, ca, nil)
	p := a.peerState(t, "node-b")

	if err := a.RemovePeer("node-b"); err != nil {
		t.Fatal(err)
	}
	_, err := a.rec.wantDown(t)
	wantErrContains(t, err, "closed by this node", "removed node node-b")
	if strings.Contains(err.Error(), "redialing") {
		t.Errorf("error says it redials a removed peer: %v", err)
	}
	_, err = b.rec.wantDown(t)
	wantErrContains(t, err, "closed by node node-a", "removed node node-b")
	select {
	case <-p.done:
	case <-time.After(waitFor):
		t.Fatal("dial loop still running after RemovePeer")
	}
	b.rec.expectQuiet(t, 3*a.cfg.ReconnectMax)
	if len(a.Links()) != 0 || a.Conn("node-b") != nil {
		t.Errorf("removed peer still listed: %+v", a.Links())
	}
	wantErrContains(t, a.RemovePeer("node-b"), "no such peer")

	// Adding it back links again, with the next generation.
	if err := a.AddPeer(Peer{ID: "node-b", Addr: b.Addr().String()}); err != nil {
		t.Fatal(err)
	}
	if c := a.rec.wantUp(t); c.Generation() != 2 {
		t.Errorf("generation %d after re-adding, want 2", c.Generation())
	}
	b.rec.wantUp(t)
}

func TestRefusals(t *testing.T) {
	t.Run("wrong server identity", func(t *testing.T) {
		leakcheck.Check(t)
		ca := newCA(t, "lab")
		c := startNode(t, testConfig(t, ca, "node-c"))
		cfg := testConfig(t, ca, "node-a")
		cfg.Peers = []Peer{{ID: "node-b", Addr: c.Addr().String()}} // node-c answers there
		a := startNode(t, cfg)
		line := a.logs.wait(t, 1, "dial failed", "names node node-c, not node node-b", "check the address configured for node node-b")
		t.Log(line)
		if l := a.Links()[0]; l.Up || !strings.Contains(l.LastError, "names node node-c") {
			t.Errorf("link status: %+v", l)
		}
	})

	t.Run("unknown client", func(t *testing.T) {
		leakcheck.Check(t)
		ca := newCA(t, "lab")
		b := startNode(t, testConfig(t, ca, "node-b")) // no peers
		cfg := testConfig(t, ca, "node-a")
		cfg.Peers = []Peer{{ID: "node-b", Addr: b.Addr().String()}}
		a := startNode(t, cfg)
		line := b.logs.wait(t, 1, "refused connection", "node node-a is not a peer of node node-b", "add node node-a to the peers of node node-b")
		t.Log(line)
		// The dialer learns the reason, never reports the link up, and the
		// acceptor logs the refusal once however often it redials.
		a.logs.wait(t, 1, "dial failed", "node node-a is not a peer of node node-b")
		a.logs.wait(t, 3, "dial failed again")
		if n := b.logs.count("refused connection"); n != 1 {
			t.Errorf("refusal logged %d times, want once", n)
		}
		a.rec.expectQuiet(t, 0)
		b.rec.expectQuiet(t, 0)
	})

	t.Run("server certificate from another CA", func(t *testing.T) {
		leakcheck.Check(t)
		ca, other := newCA(t, "lab"), newCA(t, "other lab")
		cfgB := testConfig(t, ca, "node-b")
		cfgB.Certificate = issue(t, other, pki.Node, "node-b")
		cfgB.Peers = []Peer{{ID: "node-a"}}
		b := startNode(t, cfgB)
		cfgA := testConfig(t, ca, "node-a")
		cfgA.Peers = []Peer{{ID: "node-b", Addr: b.Addr().String()}}
		a := startNode(t, cfgA)
		t.Log(a.logs.wait(t, 1, "dial failed", "does not verify against the CA roots of node node-a", "unknown authority"))
	})

	t.Run("client certificate from another CA", func(t *testing.T) {
		leakcheck.Check(t)
		ca, other := newCA(t, "lab"), newCA(t, "other lab")
		cfgB := testConfig(t, ca, "node-b")
		cfgB.Peers = []Peer{{ID: "node-a"}}
		b := startNode(t, cfgB)
		cfgA := testConfig(t, ca, "node-a")
		cfgA.Certificate = issue(t, other, pki.Node, "node-a") // roots still trust node-b's CA
		cfgA.Peers = []Peer{{ID: "node-b", Addr: b.Addr().String()}}
		a := startNode(t, cfgA)
		t.Log(b.logs.wait(t, 1, "refused connection", "peer=node-a", "does not verify against the CA roots of node node-b", "unknown authority"))
		t.Log(a.logs.wait(t, 1, "dial failed", "the peer refused this node's certificate"))
	})

	t.Run("SAE certificate as a node", func(t *testing.T) {
		leakcheck.Check(t)
		ca := newCA(t, "lab")
		cfgB := testConfig(t, ca, "node-b")
		cfgB.Peers = []Peer{{ID: "node-a"}}
		b := startNode(t, cfgB)
		cert := issue(t, ca, pki.SAE, "node-a")
		err := dialRefused(t, b.Addr().String(), cert, ALPN)
		wantErrContains(t, err, "bad certificate")
		t.Log(b.logs.wait(t, 1, "refused connection", `names \"qrelay:sae:node-a\", not a node`))
		cfg := testConfig(t, ca, "node-a")
		cfg.Certificate = cert
		_, err = Listen(cfg)
		wantErrContains(t, err, "not a node")
	})

	t.Run("wrong ALPN from client", func(t *testing.T) {
		leakcheck.Check(t)
		ca := newCA(t, "lab")
		cfgB := testConfig(t, ca, "node-b")
		cfgB.Peers = []Peer{{ID: "node-a"}}
		b := startNode(t, cfgB)
		err := dialRefused(t, b.Addr().String(), issue(t, ca, pki.Node, "node-a"), "h3")
		wantErrContains(t, err, "no application protocol")
		t.Log(b.logs.wait(t, 1, "refused connection", `offers ALPN [\"h3\"]`, `speaks only \"qrelay/2\"`, "only qrelay nodes"))
	})

	t.Run("version 1 client", func(t *testing.T) {
		leakcheck.Check(t)
		ca := newCA(t, "lab")
		cfgB := testConfig(t, ca, "node-b")
		cfgB.Peers = []Peer{{ID: "node-a"}}
		b := startNode(t, cfgB)
		err := dialRefused(t, b.Addr().String(), issue(t, ca, pki.Node, "node-a"), "qrelay/1")
		wantErrContains(t, err, "no application protocol")
		t.Log(b.logs.wait(t, 1, "refused connection", `offers ALPN [\"qrelay/1\"]`, `speaks only \"qrelay/2\"`,
			"another version of the KM link protocol (qrelay/1; this node qrelay/2)"))
	})

	for _, alpn := range []string{"h3", "qrelay/1"} {
		t.Run("ALPN "+alpn+" from server", func(t *testing.T) {
			leakcheck.Check(t)
			ca := newCA(t, "lab")
			ln, err := quic.ListenAddr("127.0.0.1:0", &tls.Config{
				Certificates: []tls.Certificate{issue(t, ca, pki.Node, "node-b")},
				NextProtos:   []string{alpn},
			}, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			cfg := testConfig(t, ca, "node-a")
			cfg.Peers = []Peer{{ID: "node-b", Addr: ln.Addr().String()}}
			a := startNode(t, cfg)
			t.Log(a.logs.wait(t, 1, "dial failed", "no application protocol", `does not speak ALPN \"qrelay/2\"`))
		})
	}

	t.Run("wrong role", func(t *testing.T) {
		leakcheck.Check(t)
		ca := newCA(t, "lab")
		cfgB := testConfig(t, ca, "node-b")
		cfgB.Peers = []Peer{{ID: "node-c", Addr: "127.0.0.1:9"}} // node-b dials node-c
		b := startNode(t, cfgB)
		qc, err := dialRaw(b.Addr().String(), issue(t, ca, pki.Node, "node-c"), ALPN)
		if err != nil {
			t.Fatal(err)
		}
		<-qc.Context().Done()
		wantErrContains(t, context.Cause(qc.Context()), "node node-b has the lower ID and so dials the link itself")
		t.Log(b.logs.wait(t, 1, "refused connection", "peer=node-c", "has the lower ID"))
	})
}

// TestDocStrings checks that docs/kmlink.md gives the ALPN and the link
// hello this package uses.
func TestDocStrings(t *testing.T) {
	if ALPN != "qrelay/2" || hello != "qrelay/2 link accepted\n" {
		t.Errorf("ALPN %q, hello %q: version 2 is qrelay/2", ALPN, hello)
	}
	doc, err := os.ReadFile("../../docs/kmlink.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"ALPN `" + ALPN + "`",
		"writes `" + strings.ReplaceAll(hello, "\n", `\n`) + "`",
	} {
		if !strings.Contains(string(doc), want) {
			t.Errorf("docs/kmlink.md does not say %s", want)
		}
	}
}

// dialRaw dials addr with plain quic-go, as a foreign or misconfigured
// client would.
func dialRaw(addr string, cert tls.Certificate, alpn string) (*quic.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	return quic.DialAddr(ctx, addr, &tls.Config{
		Certificates:       []tls.Certificate{cert},
		NextProtos:         []string{alpn},
		InsecureSkipVerify: true, // this test client does not care who answers
	}, &quic.Config{HandshakeIdleTimeout: time.Second})
}

// dialRefused dials addr with plain quic-go and returns the error that
// ends the attempt: a TLS client completes its handshake before the server
// has checked the client's certificate, so a refusal may come after Dial.
func dialRefused(t *testing.T, addr string, cert tls.Certificate, alpn string) error {
	t.Helper()
	qc, err := dialRaw(addr, cert, alpn)
	if err != nil {
		return err
	}
	select {
	case <-qc.Context().Done():
		return context.Cause(qc.Context())
	case <-time.After(waitFor):
		qc.CloseWithError(0, "")
		t.Fatal("the connection was not refused")
		return nil
	}
}

func TestConfigErrors(t *testing.T) {
	leakcheck.Check(t)
	ca, other := newCA(t, "lab"), newCA(t, "other")
	good := testConfig(t, ca, "node-a")
	good.Logger = slog.New(slog.DiscardHandler)
	for _, tc := range []struct {
		name string
		mod  func(*Config)
		want string
	}{
		{"bad node ID", func(c *Config) { c.NodeID = "node a" }, `node ID "node a"`},
		{"no certificate", func(c *Config) { c.Certificate = tls.Certificate{} }, "no certificate"},
		{"certificate of another node", func(c *Config) { c.Certificate = issue(t, other, pki.Node, "node-z") }, `names node "node-z"`},
		{"no roots", func(c *Config) { c.Roots = nil }, "no CA roots"},
		{"negative idle timeout", func(c *Config) { c.IdleTimeout = -1 }, "IdleTimeout is negative"},
		{"backoff bounds swapped", func(c *Config) { c.ReconnectMin, c.ReconnectMax = time.Second, time.Millisecond }, "above ReconnectMax"},
		{"bad listen address", func(c *Config) { c.ListenAddr = "127.0.0.1" }, "listen address"},
		{"peer is self", func(c *Config) { c.Peers = []Peer{{ID: "node-a", Addr: "127.0.0.1:1"}} }, "its own peer"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := good
			tc.mod(&cfg)
			tr, err := Listen(cfg)
			if err == nil {
				tr.Close()
			}
			wantErrContains(t, err, tc.want)
		})
	}

	n := startNode(t, good)
	for _, tc := range []struct {
		p    Peer
		want string
	}{
		{Peer{ID: "node/b", Addr: "127.0.0.1:1"}, `peer ID "node/b"`},
		{Peer{ID: "node-a", Addr: "127.0.0.1:1"}, "its own peer"},
		{Peer{ID: "node-b"}, "has no address, but this node has the lower ID"},
		{Peer{ID: "node-b", Addr: "localhost"}, `address "localhost"`},
	} {
		wantErrContains(t, n.AddPeer(tc.p), tc.want)
	}
	if err := n.AddPeer(Peer{ID: "node-0"}); err != nil { // node-0 dials us
		t.Fatal(err)
	}
	wantErrContains(t, n.AddPeer(Peer{ID: "node-0"}), "added twice")
	wantErrContains(t, n.RemovePeer("node-9"), "no such peer")
	n.Close()
	wantErrContains(t, n.AddPeer(Peer{ID: "node-1"}), "transport closed")
}

func TestJitter(t *testing.T) {
	for _, d := range []time.Duration{0, 1, 2, 50 * time.Millisecond, 5 * time.Second} {
		for range 100 {
			if j := jitter(d); j < d/2 || j > d {
				t.Fatalf("jitter(%v) = %v, want within [%v, %v]", d, j, d/2, d)
			}
		}
	}
}
