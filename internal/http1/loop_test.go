package http1

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// pipeConn is one connection's bytes: what the client sent, and what the
// server wrote.
type pipeConn struct {
	in  io.Reader
	out bytes.Buffer
}

func (p *pipeConn) Read(b []byte) (int, error)       { return p.in.Read(b) }
func (p *pipeConn) Write(b []byte) (int, error)      { return p.out.Write(b) }
func (p *pipeConn) SetReadDeadline(time.Time) error  { return nil }
func (p *pipeConn) SetWriteDeadline(time.Time) error { return nil }
func (p *pipeConn) RemoteAddr() net.Addr             { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1} }

func loopServer(h http.Handler) *Server {
	s := &Server{Handler: h, TLSConfig: &tls.Config{}, MaxHeaderBytes: 1024}
	s.init()
	return s
}

// serveBytes runs the connection loop over in and returns what it wrote.
func serveBytes(s *Server, in string) (*loop, []byte) {
	p := &pipeConn{in: strings.NewReader(in)}
	l := newLoop(p, p, &tls.ConnectionState{}, s)
	l.run()
	return l, p.out.Bytes()
}

// TestBuffersZeroised checks that a response's bytes (keys, in the ETSI
// API) do not stay in the connection's buffers once sent.
func TestBuffersZeroised(t *testing.T) {
	secret := strings.Repeat("K", 300)
	s := loopServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, secret)
	}))
	defer s.Close()
	l, out := serveBytes(s, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	if !bytes.Contains(out, []byte(secret)) {
		t.Fatalf("the response did not carry the body: %q", out)
	}
	for name, b := range map[string][]byte{"out": l.resp.out[:cap(l.resp.out)], "body": l.resp.body[:cap(l.resp.body)]} {
		if bytes.Contains(b, []byte("KKKK")) {
			t.Errorf("the %s buffer still holds the body after sending", name)
		}
	}
}

// FuzzLoop feeds arbitrary bytes to the connection loop as one client's
// stream: it must not panic, and everything it writes must be a sequence
// of well-formed HTTP/1.1 responses, one per request the handler saw or
// the server refused, the last with Connection: close if the server
// refused or closed. The seed corpus is in testdata/fuzz/FuzzLoop.
func FuzzLoop(f *testing.F) {
	seen := 0
	s := loopServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen++
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("X-Path", r.URL.Path)
		w.Write(b)
	}))
	f.Cleanup(func() { s.Close() })
	f.Fuzz(func(t *testing.T, in string) {
		seen = 0
		_, out := serveBytes(s, in)
		r := bufio.NewReader(bytes.NewReader(out))
		responses, closed := 0, false
		for r.Buffered() > 0 || responses == 0 && len(out) > 0 {
			if closed {
				t.Fatalf("bytes after a Connection: close response: %q", out)
			}
			// 100 Continue is an interim response: skip it.
			if line, _ := r.Peek(len("HTTP/1.1 100 ")); string(line) == "HTTP/1.1 100 " {
				r.ReadString('\n')
				if blank, _ := r.ReadString('\n'); blank != "\r\n" {
					t.Fatalf("100 Continue not followed by a blank line: %q", out)
				}
				continue
			}
			res, err := http.ReadResponse(r, nil)
			if err != nil {
				t.Fatalf("response %d does not parse: %v\n%q", responses, err, out)
			}
			if _, err := io.ReadAll(res.Body); err != nil {
				t.Fatalf("response %d body: %v\n%q", responses, err, out)
			}
			if res.ContentLength < 0 {
				t.Fatalf("response %d without Content-Length: %q", responses, out)
			}
			switch res.StatusCode {
			case 200:
			case 400, 417, 431, 505:
				if !res.Close {
					t.Fatalf("refusal %d left the connection open: %q", res.StatusCode, out)
				}
			default:
				t.Fatalf("unexpected status %d: %q", res.StatusCode, out)
			}
			closed = res.Close
			responses++
		}
		if ok := countStatus(out, "200"); ok > seen {
			t.Fatalf("%d answers of 200 for %d requests the handler saw", ok, seen)
		}
	})
}

func countStatus(out []byte, code string) int {
	return bytes.Count(out, []byte("HTTP/1.1 "+code+" "))
}
