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
	"github.com/qrelay/qrelay/internal/waitfor"
	"github.com/qrelay/qrelay/supply"
	"github.com/qrelay/qrelay/supply/etsi014"
)

// BenchmarkETSI014 measures the ETSI 014 API of a node as an SAE sees it:
// enc_keys over keep-alive mutual TLS (HTTP/1.1), client and node on this
// machine, the keys relayed into the pools by the node's background
// relay and assigned at the slave's node before they are handed out (from
// the pair's reservation, or confirmed before the answer). The node
// serves HTTP/1.1 with internal/http1. raw-https is the baseline: a bare
// net/http server with the same TLS setup answering a response of the
// same size from memory, measured by the same client in the same run.
func BenchmarkETSI014(b *testing.B) {
	// Throughput with 32 clients at once; latency with 4, a load the
	// node is not saturated by (p99 at saturation measures the queue).
	// Each runs on a fresh pair of nodes, so that no run inherits pools
	// another emptied or filled.
	for _, bc := range []struct {
		name    string
		raw     bool
		number  int
		workers int
	}{
		{"raw-https", true, 1, 32},
		{"enc_keys", false, 1, 32},
		{"enc_keys32", false, 32, 32},
		{"raw-https-4", true, 1, 4},
		{"enc_keys-4", false, 1, 4},
	} {
		c, url := etsiBenchNodes(b, bc.raw, bc.number)
		crt, err := c.ca.Issue(pki.SAE, "sae-a", time.Hour)
		if err != nil {
			b.Fatal(err)
		}
		bc := struct {
			name, url, body string
			workers         int
		}{bc.name, url, fmt.Sprintf(`{"number":%d}`, bc.number), bc.workers}
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
			var next, waits atomic.Int64
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
						st, err := cl.do()
						for err == nil && st == 503 && time.Since(s) < 10*time.Second {
							// The pool ran dry: the relay refills it more
							// slowly than the SAEs drain it. An SAE backs
							// off and asks again; only answers with keys
							// count.
							waits.Add(1)
							time.Sleep(time.Millisecond)
							st, err = cl.do()
						}
						if err != nil || st != 200 {
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
			b.ReportMetric(float64(waits.Load())/el.Seconds(), "503/s")
			b.ReportMetric(0, "ns/op")
		})
		for _, n := range c.nodes {
			n.Close() // its refills would run on into the next
		}
	}
}

// etsiBenchNodes starts two nodes a–b with their pools filled and returns
// them with the URL of a's enc_keys for sae-b (or of a bare server's).
func etsiBenchNodes(b *testing.B, raw bool, number int) (*testCluster, string) {
	// The out pool is refilled from 64 Ki keys to 128 Ki by the node's
	// relay while the benchmark runs; the slave's in pool holds what the
	// benchmark takes, as no slave fetches it: 1 Mi slots, 4 Mi for
	// requests of 32 keys.
	slots := 1 << 20
	if number > 1 {
		slots = 1 << 22
	}
	c := newTestCluster(b, []string{"a", "b"}, [][2]string{{"a", "b"}}, clusterOpts{etsi014: true, direct: true, poolSlots: slots, poolHigh: 1 << 17})
	if raw {
		return c, rawHTTPS(b, c) + "/api/v1/keys/sae-b/enc_keys"
	}
	c.waitPath("a", "b", "a", "b")
	out, err := c.nodes["a"].supply.Pool("b", supply.RoleOut)
	if err != nil {
		b.Fatal(err)
	}
	waitfor.Bool(b, "the out pool filled to its high watermark", 60*time.Second, func() bool { return out.Stats().Stock >= 1<<17 })
	return c, "https://" + c.nodes["a"].ETSI014Addr().String() + "/api/v1/keys/sae-b/enc_keys"
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
		TLSConfig: etsi014.TLSConfig(crt.TLS, c.ca.Pool()),
	}
	go srv.ServeTLS(ln, "", "")
	b.Cleanup(func() { srv.Close() })
	return fmt.Sprintf("https://%s", ln.Addr())
}
