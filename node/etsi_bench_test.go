package node

import (
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/qrelay/qrelay/internal/pki"
	"github.com/qrelay/qrelay/supply"
)

// BenchmarkETSI014 measures the ETSI 014 API of a node as an SAE sees it:
// enc_keys over keep-alive mutual TLS (HTTP/1.1), client and node on this
// machine, the keys relayed into the pools by the node's background
// relay and each request's assignment confirmed by the slave's node
// before the answer. raw-https is the baseline: a bare net/http server
// with the same TLS setup answering a response of the same size from
// memory, measured by the same client in the same run.
func BenchmarkETSI014(b *testing.B) {
	c := newTestCluster(b, []string{"a", "b"}, [][2]string{{"a", "b"}}, clusterOpts{etsi014: true, direct: true, poolSlots: 1 << 20, poolHigh: 1 << 17})
	c.waitPath("a", "b", "a", "b")
	out, err := c.nodes["a"].sink.pool("b", roleOut)
	if err != nil {
		b.Fatal(err)
	}
	// The out pool is refilled from 64 Ki keys to 128 Ki by the node's
	// relay while the benchmark runs; the slave's in pool (1 Mi slots)
	// holds what the benchmark takes, as no slave fetches it.
	waitFor(b, "the out pool filled to its high watermark", 60*time.Second, func() bool { return out.Stats().Stock >= 1<<17 })
	crt, err := c.ca.Issue(pki.SAE, "sae-a", time.Hour)
	if err != nil {
		b.Fatal(err)
	}
	node := "https://" + c.nodes["a"].ETSI014Addr().String()
	raw := rawHTTPS(b, c)
	// Throughput with 32 clients at once; latency with 4, a load the
	// node is not saturated by (p99 at saturation measures the queue).
	for _, bc := range []struct {
		name, url string
		body      string
		workers   int
	}{
		{"raw-https", raw + "/api/v1/keys/sae-b/enc_keys", `{"number":1}`, 32},
		{"enc_keys", node + "/api/v1/keys/sae-b/enc_keys", `{"number":1}`, 32},
		{"enc_keys32", node + "/api/v1/keys/sae-b/enc_keys", `{"number":32}`, 32},
		{"raw-https-4", raw + "/api/v1/keys/sae-b/enc_keys", `{"number":1}`, 4},
		{"enc_keys-4", node + "/api/v1/keys/sae-b/enc_keys", `{"number":1}`, 4},
	} {
		workers := bc.workers
		b.Run(bc.name, func(b *testing.B) {
			tc := &tls.Config{Certificates: []tls.Certificate{crt.TLS}, RootCAs: c.ca.Pool(), MinVersion: tls.VersionTLS13}
			clients := make([]*leanClient, workers)
			for i := range clients {
				cl, err := dialLean(bc.url, bc.body, tc)
				if err != nil {
					b.Fatal(err)
				}
				defer cl.close()
				clients[i] = cl
			}
			var next atomic.Int64
			lat := make([]time.Duration, 0, 1<<16)
			var mu sync.Mutex
			b.ResetTimer()
			t0 := time.Now()
			var wg sync.WaitGroup
			for _, cl := range clients {
				wg.Go(func() {
					var mine []time.Duration
					for next.Add(1) <= int64(b.N) {
						s := time.Now()
						if st, err := cl.do(); err != nil || st != 200 {
							b.Errorf("%s: status %d, %v", bc.url, st, err)
							return
						}
						mine = append(mine, time.Since(s))
					}
					mu.Lock()
					lat = append(lat, mine...)
					mu.Unlock()
				})
			}
			wg.Wait()
			el := time.Since(t0)
			b.StopTimer()
			if len(lat) == 0 {
				return
			}
			slices.Sort(lat)
			b.ReportMetric(float64(b.N)/el.Seconds(), "req/s")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
			b.ReportMetric(0, "ns/op")
		})
	}
}

// rawHTTPS serves, over mutual TLS configured as the node's API is, a
// fixed key container of one key: the floor a node's answer cannot beat.
func rawHTTPS(b *testing.B, c *testCluster) string {
	crt, err := c.ca.Issue(pki.Node, "raw", time.Hour, "127.0.0.1")
	if err != nil {
		b.Fatal(err)
	}
	body := []byte(`{"keys":[{"key_ID":"6f2a8e4c-1b3d-5e7f-9a0b-1c2d3e4f5a6b","key":"` + "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=" + `"}]}`)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.Copy(io.Discard, r.Body)
			w.Header().Set("Content-Type", "application/json")
			w.Write(body)
		}),
		TLSConfig: supply.TLSConfig(crt.TLS, c.ca.Pool()),
	}
	go srv.ServeTLS(ln, "", "")
	b.Cleanup(func() { srv.Close() })
	return fmt.Sprintf("https://%s", ln.Addr())
}
