package kmlink

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"testing"
)

// benchChunk is the size of each write in the raw QUIC benchmarks.
const benchChunk = 64 << 10

// BenchmarkRawQUIC measures one unidirectional stream between two
// Transports in one process over loopback, with 64 KiB writes: the raw
// quic-go baseline that the relay engine is compared with.
func BenchmarkRawQUIC(b *testing.B) { benchmarkRawQUIC(b, 1) }

// BenchmarkRawQUICStreams4 is BenchmarkRawQUIC with four streams in
// parallel on one connection.
func BenchmarkRawQUICStreams4(b *testing.B) { benchmarkRawQUIC(b, 4) }

func benchmarkRawQUIC(b *testing.B, streams int) {
	ca := newCA(b, "bench")
	quiet := slog.New(slog.DiscardHandler)
	recA, recB := newRecorder(), newRecorder()
	cfgB := testConfig(b, ca, "node-b")
	cfgB.Handler, cfgB.Logger, cfgB.Peers = recB, quiet, []Peer{{ID: "node-a"}}
	tb, err := Listen(cfgB)
	if err != nil {
		b.Fatal(err)
	}
	defer tb.Close()
	cfgA := testConfig(b, ca, "node-a")
	cfgA.Handler, cfgA.Logger, cfgA.Peers = recA, quiet, []Peer{{ID: "node-b", Addr: tb.Addr().String()}}
	ta, err := Listen(cfgA)
	if err != nil {
		b.Fatal(err)
	}
	defer ta.Close()
	from, to := recA.wantUp(b), recB.wantUp(b)
	ctx := context.Background()

	// Receiver: drain every stream.
	var recv sync.WaitGroup
	recvErr := make(chan error, streams)
	for range streams {
		recv.Add(1)
		go func() {
			defer recv.Done()
			s, err := to.AcceptUniStream(ctx)
			if err != nil {
				recvErr <- err
				return
			}
			if _, err := io.Copy(io.Discard, s); err != nil {
				recvErr <- err
			}
		}()
	}

	b.SetBytes(benchChunk)
	b.ReportAllocs()
	b.ResetTimer()
	var send sync.WaitGroup
	for i := range streams {
		n := b.N / streams
		if i < b.N%streams {
			n++
		}
		send.Add(1)
		go func() {
			defer send.Done()
			s, err := from.OpenUniStream(ctx)
			if err != nil {
				b.Error(err)
				return
			}
			buf := make([]byte, benchChunk)
			for range n {
				if _, err := s.Write(buf); err != nil {
					b.Error(err)
					return
				}
			}
			if err := s.Close(); err != nil {
				b.Error(err)
			}
		}()
	}
	send.Wait()
	recv.Wait()
	b.StopTimer()
	close(recvErr)
	for err := range recvErr {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)*benchChunk*8/b.Elapsed().Seconds()/1e9, "Gbit/s")
	stats := from.QUIC().ConnectionStats()
	if stats.PacketsSent > 0 {
		b.ReportMetric(100*float64(stats.PacketsLost)/float64(stats.PacketsSent), "%lost")
	}
}
