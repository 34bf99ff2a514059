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
	"net/http/httptrace"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/qrelay/qrelay/internal/pki"
)

// testEnv is a server on loopback with a CA, and a client certificate.
type testEnv struct {
	srv    *Server
	addr   string
	client *tls.Config // HTTP/1.1 only
	served chan error  // Serve's result
}

func newEnv(t *testing.T, h http.Handler, tune func(*Server)) *testEnv {
	t.Helper()
	ca, err := pki.NewCA("http1 test CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	srvCrt, err := ca.Issue(pki.Node, "server", time.Hour, "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	cliCrt, err := ca.Issue(pki.SAE, "client", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{
		Handler: h,
		TLSConfig: &tls.Config{
			Certificates: []tls.Certificate{srvCrt.TLS},
			ClientAuth:   tls.RequireAndVerifyClientCert,
			ClientCAs:    ca.Pool(),
			NextProtos:   []string{"h2", "http/1.1"},
		},
	}
	if tune != nil {
		tune(s)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e := &testEnv{
		srv:    s,
		addr:   ln.Addr().String(),
		client: &tls.Config{Certificates: []tls.Certificate{cliCrt.TLS}, RootCAs: ca.Pool(), NextProtos: []string{"http/1.1"}},
		served: make(chan error, 1),
	}
	go func() { e.served <- s.Serve(ln) }()
	t.Cleanup(func() {
		s.Close()
		if err := <-e.served; !errors.Is(err, ErrServerClosed) {
			t.Errorf("Serve returned %v, want ErrServerClosed", err)
		}
	})
	return e
}

// dial opens a raw TLS connection for hand-written requests.
func (e *testEnv) dial(t *testing.T) *rawConn {
	t.Helper()
	c, err := tls.Dial("tcp", e.addr, e.client)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	t.Cleanup(func() { c.Close() })
	return &rawConn{Conn: c, r: bufio.NewReader(c)}
}

type rawConn struct {
	*tls.Conn
	r *bufio.Reader
}

func (c *rawConn) send(t *testing.T, s string) {
	t.Helper()
	if _, err := io.WriteString(c, s); err != nil {
		t.Fatal(err)
	}
}

func (c *rawConn) response(t *testing.T, method string) (*http.Response, string) {
	t.Helper()
	res, err := http.ReadResponse(c.r, &http.Request{Method: method})
	if err != nil {
		t.Fatalf("reading the response: %v", err)
	}
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("reading the body: %v", err)
	}
	return res, string(b)
}

// closedByServer asserts that the server closes the connection (within
// the connection's deadline) without sending anything more.
func (c *rawConn) closedByServer(t *testing.T) {
	t.Helper()
	b, err := c.r.ReadByte()
	if err == nil {
		t.Fatalf("read %q, want the connection closed", b)
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatal("the server kept the connection open")
	}
}

// echo answers with the method, path, body length and the client's
// certificate CN, and sets a few headers.
var echo = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	b, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	cn := ""
	if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
		cn = r.TLS.PeerCertificates[0].Subject.CommonName
	}
	w.Header().Set("Content-Type", "text/plain")
	w.Header().Set("X-Zeta", "z")
	w.Header().Set("X-Alpha", "a")
	fmt.Fprintf(w, "%s %s %d %s %s", r.Method, r.URL.Path, len(b), cn, r.Proto)
})

func TestKeepAliveWithNetHTTPClient(t *testing.T) {
	e := newEnv(t, echo, nil)
	cl := &http.Client{Transport: &http.Transport{TLSClientConfig: e.client}}
	defer cl.CloseIdleConnections()
	reused := 0
	for i := range 20 {
		trace := &httptrace.ClientTrace{GotConn: func(ci httptrace.GotConnInfo) {
			if ci.Reused {
				reused++
			}
		}}
		body := strings.Repeat("x", i*100)
		req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), "POST", "https://"+e.addr+"/p/"+strconv.Itoa(i), strings.NewReader(body))
		res, err := cl.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if want := fmt.Sprintf("POST /p/%d %d client HTTP/1.1", i, len(body)); string(b) != want {
			t.Fatalf("request %d: body %q, want %q", i, b, want)
		}
		if res.ProtoMajor != 1 || res.ContentLength != int64(len(b)) || res.Header.Get("Date") == "" || res.Header.Get("X-Alpha") != "a" {
			t.Fatalf("request %d: %s, headers %v", i, res.Proto, res.Header)
		}
	}
	if reused != 19 {
		t.Errorf("%d of 19 requests reused the connection", reused)
	}
}

func TestHTTP2GoesToNetHTTP(t *testing.T) {
	e := newEnv(t, echo, nil)
	cfg := e.client.Clone()
	cfg.NextProtos = []string{"h2"}
	cl := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg, ForceAttemptHTTP2: true}}
	defer cl.CloseIdleConnections()
	res, err := cl.Post("https://"+e.addr+"/two", "text/plain", strings.NewReader("abc"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if want := "POST /two 3 client HTTP/2.0"; string(b) != want {
		t.Fatalf("body %q, want %q", b, want)
	}
}

func TestPipelinedRequestsAnsweredInOrder(t *testing.T) {
	e := newEnv(t, echo, nil)
	c := e.dial(t)
	var all strings.Builder
	for i := range 3 {
		fmt.Fprintf(&all, "POST /%d HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s", i, i, strings.Repeat("b", i))
	}
	c.send(t, all.String())
	for i := range 3 {
		res, body := c.response(t, "POST")
		if want := fmt.Sprintf("POST /%d %d client HTTP/1.1", i, i); res.StatusCode != 200 || body != want {
			t.Fatalf("response %d: %d %q, want %q", i, res.StatusCode, body, want)
		}
	}
}

func TestHeadersSortedAndSanitised(t *testing.T) {
	e := newEnv(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-B", "evil\r\nSet-Cookie: x=1")
		w.Header().Set("X-A", "1")
		w.Header()["Bad Name"] = []string{"v"}
		w.Header().Set("Content-Length", "999") // the server's to set
		w.Write([]byte("ok"))
	}), nil)
	c := e.dial(t)
	c.send(t, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	res, body := c.response(t, "GET")
	if body != "ok" || res.ContentLength != 2 {
		t.Fatalf("body %q, length %d", body, res.ContentLength)
	}
	if res.Header.Get("Set-Cookie") != "" || res.Header.Get("X-B") != "evil  Set-Cookie: x=1" {
		t.Errorf("a header value started a header: %v", res.Header)
	}
	if _, ok := res.Header["Bad Name"]; ok {
		t.Error("an invalid header name was sent")
	}
}

func TestChunkedRequestBody(t *testing.T) {
	e := newEnv(t, echo, nil)
	c := e.dial(t)
	c.send(t, "POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n")
	_, body := c.response(t, "POST")
	if want := "POST /c 7 client HTTP/1.1"; body != want {
		t.Fatalf("body %q, want %q", body, want)
	}
}

func TestExpectContinue(t *testing.T) {
	e := newEnv(t, echo, nil)
	c := e.dial(t)
	c.send(t, "POST /e HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n")
	line, err := c.r.ReadString('\n')
	if err != nil || line != "HTTP/1.1 100 Continue\r\n" {
		t.Fatalf("first line %q, %v; want 100 Continue", line, err)
	}
	if blank, _ := c.r.ReadString('\n'); blank != "\r\n" {
		t.Fatalf("100 Continue followed by %q", blank)
	}
	c.send(t, "hello")
	if _, body := c.response(t, "POST"); body != "POST /e 5 client HTTP/1.1" {
		t.Fatalf("body %q", body)
	}

	c = e.dial(t)
	c.send(t, "POST /e HTTP/1.1\r\nHost: x\r\nExpect: something-else\r\nContent-Length: 0\r\n\r\n")
	if res, _ := c.response(t, "POST"); res.StatusCode != http.StatusExpectationFailed || !res.Close {
		t.Fatalf("unknown expectation: %d close=%v, want 417 and close", res.StatusCode, res.Close)
	}
	c.closedByServer(t)
}

func TestRefusals(t *testing.T) {
	e := newEnv(t, echo, func(s *Server) { s.MaxHeaderBytes = 1024 })
	for _, tc := range []struct {
		name, req string
		code      int
	}{
		{"headers too long", "GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("a", 8000) + "\r\n\r\n", http.StatusRequestHeaderFieldsTooLarge},
		{"garbage", "HELLO\r\n\r\n", http.StatusBadRequest},
		{"no Host in HTTP/1.1", "GET / HTTP/1.1\r\n\r\n", http.StatusBadRequest},
		{"two Hosts", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", http.StatusBadRequest},
		{"bad Content-Length", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: x\r\n\r\n", http.StatusBadRequest},
		{"HTTP/2 preface over HTTP/1.1", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", http.StatusHTTPVersionNotSupported},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := e.dial(t)
			c.send(t, tc.req)
			res, body := c.response(t, "GET")
			if res.StatusCode != tc.code || !res.Close || body == "" {
				t.Fatalf("%d close=%v %q, want %d, a reason and Connection: close", res.StatusCode, res.Close, body, tc.code)
			}
			c.closedByServer(t)
		})
	}
}

func TestConnectionClose(t *testing.T) {
	e := newEnv(t, echo, nil)
	for _, tc := range []struct{ name, req string }{
		{"Connection: close", "GET /a HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"},
		{"HTTP/1.0", "GET /a HTTP/1.0\r\n\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := e.dial(t)
			c.send(t, tc.req)
			res, body := c.response(t, "GET")
			if res.StatusCode != 200 || !strings.HasPrefix(body, "GET /a 0") || !res.Close {
				t.Fatalf("%d close=%v %q", res.StatusCode, res.Close, body)
			}
			c.closedByServer(t)
		})
	}
	// HTTP/1.0 with keep-alive is kept.
	c := e.dial(t)
	c.send(t, "GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /b HTTP/1.0\r\n\r\n")
	if res, _ := c.response(t, "GET"); res.Close {
		t.Fatal("HTTP/1.0 keep-alive request: connection closed")
	}
	if _, body := c.response(t, "GET"); !strings.HasPrefix(body, "GET /b") {
		t.Fatalf("second request: %q", body)
	}
}

func TestHeadHasNoBody(t *testing.T) {
	e := newEnv(t, echo, nil)
	c := e.dial(t)
	c.send(t, "HEAD /h HTTP/1.1\r\nHost: x\r\n\r\nGET /g HTTP/1.1\r\nHost: x\r\n\r\n")
	res, body := c.response(t, "HEAD")
	if res.StatusCode != 200 || body != "" || res.ContentLength != int64(len("HEAD /h 0 client HTTP/1.1")) {
		t.Fatalf("HEAD: %d length %d body %q", res.StatusCode, res.ContentLength, body)
	}
	// The next response starts right after the HEAD's headers.
	if _, body := c.response(t, "GET"); !strings.HasPrefix(body, "GET /g") {
		t.Fatalf("after HEAD: %q", body)
	}
}

func TestUnreadBody(t *testing.T) {
	ignore := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ignored")) })
	e := newEnv(t, ignore, nil)
	// A short unread body is read past and the connection kept.
	c := e.dial(t)
	c.send(t, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n0123456789GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	for i := range 2 {
		if res, body := c.response(t, "POST"); res.StatusCode != 200 || body != "ignored" || res.Close {
			t.Fatalf("request %d: %d %q close=%v", i, res.StatusCode, body, res.Close)
		}
	}
	// A long one closes the connection after the answer.
	c = e.dial(t)
	n := maxDrain + 1024
	go io.WriteString(c, fmt.Sprintf("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s", n, strings.Repeat("z", n)))
	if res, _ := c.response(t, "POST"); !res.Close {
		t.Fatal("a body too long to drain left the connection open")
	}
}

func TestHandlerPanic(t *testing.T) {
	var mu sync.Mutex
	panicked := 0
	e := newEnv(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/panic" {
			mu.Lock()
			panicked++
			mu.Unlock()
			w.Write([]byte("half an answer"))
			panic("boom")
		}
		w.Write([]byte("fine"))
	}), nil)
	c := e.dial(t)
	c.send(t, "GET /panic HTTP/1.1\r\nHost: x\r\n\r\n")
	c.closedByServer(t)
	c = e.dial(t)
	c.send(t, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	if _, body := c.response(t, "GET"); body != "fine" {
		t.Fatalf("after a panic: %q", body)
	}
	if panicked != 1 {
		t.Fatalf("handler panicked %d times", panicked)
	}
}

func TestIdleTimeout(t *testing.T) {
	e := newEnv(t, echo, func(s *Server) { s.IdleTimeout = 50 * time.Millisecond })
	c := e.dial(t)
	c.send(t, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	c.response(t, "GET")
	c.closedByServer(t) // within the 10 s deadline of the test's side
}

func TestClientWithoutCertificateRefused(t *testing.T) {
	e := newEnv(t, echo, nil)
	cfg := e.client.Clone()
	cfg.Certificates = nil
	c, err := tls.Dial("tcp", e.addr, cfg)
	if err == nil {
		// TLS 1.3: the refusal arrives with the first read.
		c.SetDeadline(time.Now().Add(10 * time.Second))
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		_, err = c.Read(make([]byte, 1))
		c.Close()
	}
	if err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("a client without a certificate: %v, want a TLS certificate error", err)
	}
}

func TestShutdownWaitsForRequestsInFlight(t *testing.T) {
	entered, release := make(chan struct{}), make(chan struct{})
	e := newEnv(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			close(entered)
			<-release
		}
		w.Write([]byte("done"))
	}), nil)
	idle := e.dial(t)
	idle.send(t, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	idle.response(t, "GET")
	busy := e.dial(t)
	busy.send(t, "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
	<-entered

	shut := make(chan error, 1)
	go func() { shut <- e.srv.Shutdown(context.Background()) }()
	idle.closedByServer(t) // idle connections close at once
	select {
	case err := <-shut:
		t.Fatalf("Shutdown returned %v with a request in flight", err)
	default:
	}
	close(release)
	res, body := busy.response(t, "GET")
	if body != "done" || !res.Close {
		t.Fatalf("the request in flight: %q close=%v, want done and Connection: close", body, res.Close)
	}
	if err := <-shut; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if _, err := tls.Dial("tcp", e.addr, e.client); err == nil {
		t.Fatal("a new connection was accepted after Shutdown")
	}
}

func TestCloseEndsRequestContexts(t *testing.T) {
	entered := make(chan struct{})
	ended := make(chan error, 1)
	e := newEnv(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		<-r.Context().Done()
		ended <- r.Context().Err()
	}), nil)
	c := e.dial(t)
	c.send(t, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	<-entered
	e.srv.Close()
	if err := <-ended; !errors.Is(err, context.Canceled) {
		t.Fatalf("context ended with %v", err)
	}
	c.closedByServer(t)
}
