package etsi014

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/qrelay/qrelay/supply"

	"github.com/qrelay/qrelay/internal/pki"
)

const benchBody = `{"number":1,"size":256}`

// BenchmarkEncKeys measures the HTTP layer's own ceiling: enc_keys for one
// 256-bit key over real TLS on loopback, keep-alive connections, parallel
// clients (each its own TLS connection), against a service returning a
// constant key. Client and server share the machine, so req/s is for both.
func BenchmarkEncKeys(b *testing.B) {
	for _, tc := range []struct{ name, method, path, body string }{
		{"POST", "POST", encPath, benchBody},
		{"GET", "GET", encPath + "?number=1&size=256", ""},
		// baseline: the same exchange answered by a constant handler, to
		// tell this package's cost from net/http's and crypto/tls's.
		{"baseline", "GET", encPath + "?number=1&size=256", ""},
		{"baselinePOST", "POST", encPath, benchBody},
	} {
		b.Run(tc.name, func(b *testing.B) {
			e := newEnv(b, nil, nil)
			e.svc.constKeys = []supply.Key{{ID: uuidN(1), Bytes: bytes.Repeat([]byte{0x5a}, 32)}}
			if strings.HasPrefix(tc.name, "baseline") {
				e.srv.Config.Handler = http.HandlerFunc(constantKeys)
			}
			iss, err := e.ca.Issue(pki.SAE, "sae-1", time.Hour)
			if err != nil {
				b.Fatal(err)
			}
			const perProc = 8
			b.SetParallelism(perProc)
			clients := make(chan *http.Client, perProc*runtime.GOMAXPROCS(0))
			for range cap(clients) {
				c := e.client(b, &iss.TLS)
				// handshake outside the timing
				benchCall(b, c, newBenchRequest(b, e.srv.URL, tc.method, tc.path, tc.body), make([]byte, 512))
				clients <- c
			}
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				c := <-clients
				req := newBenchRequest(b, e.srv.URL, tc.method, tc.path, tc.body)
				buf := make([]byte, 512)
				for pb.Next() {
					benchCall(b, c, req, buf)
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
		})
	}
}

var constantBody = []byte(`{"keys":[{"key_ID":"00000001-0000-4000-8000-000000000001","key":"WlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlo="}]}`)

func constantKeys(w http.ResponseWriter, _ *http.Request) {
	w.Header()["Content-Type"] = hdrJSON
	w.Write(constantBody) //nolint:errcheck
}

// benchRequest is a request reused for every call of one client, so that
// the client spends what it must and no more.
// Its body is an io.NopCloser around a *bytes.Reader, which net/http
// knows to be in memory and so writes with the headers in one record.
type benchRequest struct {
	req  *http.Request
	body io.ReadCloser
	rd   *bytes.Reader
	text []byte
}

func newBenchRequest(b *testing.B, base, method, path, body string) *benchRequest {
	req, err := http.NewRequest(method, base+path, nil)
	if err != nil {
		b.Fatal(err)
	}
	br := &benchRequest{req: req}
	if body != "" {
		br.rd, br.text = bytes.NewReader(nil), []byte(body)
		br.body = io.NopCloser(br.rd)
		req.ContentLength = int64(len(body))
		req.Header.Set("Content-Type", "application/json")
	}
	return br
}

func benchCall(b *testing.B, c *http.Client, br *benchRequest, buf []byte) {
	if br.body != nil {
		br.rd.Reset(br.text)
		br.req.Body = br.body
	}
	resp, err := c.Do(br.req)
	if err != nil {
		b.Error(err)
		return
	}
	n, _ := io.ReadFull(resp.Body, buf)
	io.Copy(io.Discard, resp.Body) //nolint:errcheck
	resp.Body.Close()
	if resp.StatusCode != 200 || !bytes.HasPrefix(buf[:n], []byte(`{"keys":[{"key_ID":"`)) {
		b.Errorf("%d %s", resp.StatusCode, buf[:n])
	}
}

// discardWriter is a ResponseWriter that keeps nothing but the status.
type discardWriter struct {
	h    http.Header
	code int
}

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) WriteHeader(code int)        { w.code = code }
func (w *discardWriter) Write(p []byte) (int, error) { return len(p), nil }

// rewindBody is a request body that can be read again.
type rewindBody struct{ bytes.Reader }

func (*rewindBody) Close() error { return nil }

// BenchmarkHandler is the handler alone, without TLS or net/http: what the
// package itself costs per enc_keys request.
func BenchmarkHandler(b *testing.B) {
	ca, err := pki.NewCA("bench CA", time.Hour)
	if err != nil {
		b.Fatal(err)
	}
	iss, err := ca.Issue(pki.SAE, "sae-1", time.Hour)
	if err != nil {
		b.Fatal(err)
	}
	svc := newFake()
	svc.constKeys = []supply.Key{{ID: uuidN(1), Bytes: bytes.Repeat([]byte{0x5a}, 32)}}
	cfg := testConfig(svc)
	cfg.Limits = map[string]Limit{"sae-1": {KeysPerSecond: 1e12, Burst: 1 << 30}}
	h, err := NewHandler(cfg)
	if err != nil {
		b.Fatal(err)
	}
	state := &tls.ConnectionState{PeerCertificates: []*x509.Certificate{iss.TLS.Leaf}, VerifiedChains: [][]*x509.Certificate{{iss.TLS.Leaf, ca.Cert}}}
	for _, method := range []string{"POST", "GET"} {
		b.Run(method, func(b *testing.B) {
			path := encPath
			if method == "GET" {
				path += "?number=1&size=256"
			}
			r := httptest.NewRequest(method, path, nil)
			r.TLS = state
			body := &rewindBody{}
			if method == "POST" {
				r.Body, r.ContentLength = body, int64(len(benchBody))
			}
			w := &discardWriter{h: http.Header{}}
			b.ReportAllocs()
			for b.Loop() {
				body.Reset([]byte(benchBody))
				clear(w.h)
				h.ServeHTTP(w, r)
				if w.code != 200 {
					b.Fatal(w.code)
				}
			}
		})
	}
}
