package benchreport

// Group is a set of figures measured by the benchmarks of one Go package.
// bench.sh --only selects groups by Name.
type Group struct {
	Name    string // "otp"; also the prefix of its figure names
	Package string // package to benchmark, relative to the module root: "./otp"

	// Bench is the -test.bench regexp. It should select exactly the
	// benchmarks that Figures need. go test matches it level by level
	// (split at "/"), so a one-level pattern such as `^(BenchmarkA|BenchmarkB)$`
	// selects those top-level benchmarks and all of their sub-benchmarks.
	Bench string

	Figures []Figure
}

// Groups is every group, in the order bench.sh runs and reports them. To add
// a group, add an entry here; groups_test.go checks that its Bench pattern
// runs every benchmark its figures need.
var Groups = []Group{
	{
		Name:    "otp",
		Package: "./otp",
		Bench:   `^(BenchmarkXOR|BenchmarkXOR3|BenchmarkTag|BenchmarkXORKey)$`,
		Figures: []Figure{
			throughput("otp.xor.4KiB", "BenchmarkXOR/4KiB/otp", "crypto/subtle.XORBytes", "BenchmarkXOR/4KiB/subtle"),
			throughput("otp.xor.64KiB", "BenchmarkXOR/64KiB/otp", "crypto/subtle.XORBytes", "BenchmarkXOR/64KiB/subtle"),
			throughput("otp.xor.1MiB", "BenchmarkXOR/1MiB/otp", "crypto/subtle.XORBytes", "BenchmarkXOR/1MiB/subtle"),
			throughput("otp.xor3.64KiB", "BenchmarkXOR3/64KiB/otp", "2x crypto/subtle.XORBytes", "BenchmarkXOR3/64KiB/naive"),
			throughput("otp.xor.64KiB.vs_copy", "BenchmarkXOR/64KiB/otp", "copy()", "BenchmarkXOR/64KiB/copy"),
			throughput("otp.tag.64KiB", "BenchmarkTag/64KiB/otp", "otp.XOR", "BenchmarkXOR/64KiB/otp"),
			throughput("otp.tag.64KiB.vs_scalar", "BenchmarkTag/64KiB/otp", "x/crypto poly1305 (scalar)", "BenchmarkTag/64KiB/scalar"),
			latency("otp.xor.key32", "BenchmarkXORKey/32B/fast", "crypto/subtle.XORBytes", "BenchmarkXORKey/32B/subtle"),
		},
	},
	{
		Name:    "ringstore",
		Package: "./ringstore",
		Bench:   `^(BenchmarkHandoff|BenchmarkDurableHandoff|BenchmarkZeroise|BenchmarkRSS)$`,
		Figures: []Figure{
			metric("ringstore.handoff.batch64", "Gbit/s", "BenchmarkHandoff/batch64/ring", "Gbit/s", "chan (copy in, clear)", "BenchmarkHandoff/batch64/chan"),
			metric("ringstore.handoff.batch1024", "Gbit/s", "BenchmarkHandoff/batch1024/ring", "Gbit/s", "chan (copy in, clear)", "BenchmarkHandoff/batch1024/chan"),
			lower(metric("ringstore.handoff.single", "ns/key", "BenchmarkHandoff/single/ring", "ns/key", "chan (copy in, clear)", "BenchmarkHandoff/single/chan")),
			metric("ringstore.durable.batch1024", "Gbit/s", "BenchmarkDurableHandoff/batch1024", "Gbit/s", "memory-mode ring", "BenchmarkHandoff/batch1024/ring"),
			throughput("ringstore.zeroise", "BenchmarkZeroise/ring", "clear()", "BenchmarkZeroise/clear"),
			metric("ringstore.rss.1GiB", "GiB", "BenchmarkRSS/ring1GiB", "GiB", "", ""),
		},
	},
	{
		Name:    "relay",
		Package: "./dataplane/relay",
		Bench:   `^(BenchmarkRelay|BenchmarkRawQUIC|BenchmarkRelayLatency|BenchmarkRawQUICLatency|BenchmarkRelayKeys)$`,
		Figures: []Figure{
			metric("relay.1hop", "Gbit/s", "BenchmarkRelay/1hop", "Gbit/s", "raw quic-go stream", "BenchmarkRawQUIC"),
			metric("relay.1hop.cryptorand", "Gbit/s", "BenchmarkRelay/1hop-cryptorand", "Gbit/s", "raw quic-go stream", "BenchmarkRawQUIC"),
			metric("relay.3node", "Gbit/s", "BenchmarkRelay/3node", "Gbit/s", "raw quic-go stream", "BenchmarkRawQUIC"),
			lower(metric("relay.latency.p99", "µs", "BenchmarkRelayLatency/keys128", "p99-µs", "raw quic-go 4 KiB round trip", "BenchmarkRawQUICLatency/4KiB")),
			lower(metric("relay.latency.p99.frame64KiB", "µs", "BenchmarkRelayLatency/keys2048", "p99-µs", "raw quic-go 64 KiB round trip", "BenchmarkRawQUICLatency/64KiB")),
			metric("relay.keys_per_s", "keys/s", "BenchmarkRelayKeys", "keys/s", "1hop, keys not stored", "BenchmarkRelay/1hop"),
		},
	},
	{
		// 100 routers in one process (10×10 grid plus 20 chords, SPFDelay
		// 1ms): time until every table is right after one link fails or is
		// restored, and messages sent network-wide per such change.
		Name:    "controlplane",
		Package: "./controlplane",
		Bench:   `^BenchmarkConverge100$`,
		Figures: []Figure{
			lower(metric("controlplane.converge.100", "ms", "BenchmarkConverge100", "ms/converge", "", "")),
			lower(metric("controlplane.converge.100.msgs", "msgs", "BenchmarkConverge100", "msgs/change", "", "")),
		},
	},
	{
		// Five in-process nodes over loopback QUIC, each KM link behind a
		// UDP proxy that the benchmark cuts: from the cut to the start of
		// the first relay that then delivers all its keys the other way.
		Name:    "controlplane.reroute",
		Package: "./node",
		Bench:   `^BenchmarkReroute$`,
		Figures: []Figure{
			lower(metric("controlplane.reroute", "ms", "BenchmarkReroute/link", "reroute-ms", "", "")),
			lower(metric("controlplane.reroute.node", "ms", "BenchmarkReroute/node", "reroute-ms", "", "")),
		},
	},
	{
		// A ring of five qrelayd processes; node b is SIGKILLed and started
		// again with its config: from its process start until a relay a→c
		// through it has delivered all its keys (its links agreed on their
		// pads, routes back), and until its admin API answers (what a bare
		// start costs).
		Name:    "node",
		Package: "./cmd/qrelayd",
		Bench:   `^BenchmarkRestartHeal$`,
		Figures: []Figure{
			lower(metric("node.restart.heal", "ms", "BenchmarkRestartHeal", "heal-ms", "", "")),
			lower(metric("node.restart.start", "ms", "BenchmarkRestartHeal", "start-ms", "", "")),
		},
	},
	{
		// A node's ETSI 014 API as an SAE sees it, over keep-alive mutual
		// TLS, against a bare net/http server with the same TLS setup
		// answering from memory, with the same client in the same round.
		Name:    "etsi014",
		Package: "./node",
		Bench:   `^BenchmarkETSI014$`,
		Figures: []Figure{
			metric("etsi014.enc_keys.rps", "req/s", "BenchmarkETSI014/enc_keys", "req/s", "bare net/http mTLS", "BenchmarkETSI014/raw-https"),
			metric("etsi014.enc_keys32.rps", "req/s", "BenchmarkETSI014/enc_keys32", "req/s", "bare net/http mTLS", "BenchmarkETSI014/raw-https"),
			lower(metric("etsi014.latency.p99", "µs", "BenchmarkETSI014/enc_keys-4", "p99-µs", "bare net/http mTLS", "BenchmarkETSI014/raw-https-4")),
		},
	},
	{
		// New PSKs on all 1,000 peers of one embedded wireguard-go device,
		// as wgkey installs them at an epoch boundary: one SetPSKs call (one
		// IpcSet), against one IpcSet per peer. The wgctrl-over-UAPI
		// variant runs only as root, so it is in go test's output but is no
		// figure.
		Name:    "wgkey",
		Package: "./wgkey",
		Bench:   `^BenchmarkRotate1000$`,
		Figures: []Figure{
			lower(metric("wgkey.rotate1000", "ms", "BenchmarkRotate1000/device", "ms", "1,000 IpcSet calls, one peer each", "BenchmarkRotate1000/one-call-per-peer")),
		},
	},
}

// metric is a figure read from a custom b.ReportMetric unit, unscaled.
func metric(name, unit, bench, goUnit, baseline, baselineBench string) Figure {
	return Figure{Name: name, Unit: unit, Bench: bench, Metric: goUnit, Scale: 1,
		Baseline: baseline, BaselineBench: baselineBench}
}

// lower marks a figure where smaller values are better.
func lower(f Figure) Figure {
	f.LowerIsBetter = true
	return f
}

// throughput is a figure in GB/s, from the MB/s (10⁶ bytes/s) that go test
// reports for a benchmark calling b.SetBytes.
func throughput(name, bench, baseline, baselineBench string) Figure {
	return Figure{Name: name, Unit: "GB/s", Bench: bench, Metric: "MB/s", Scale: 1e-3,
		Baseline: baseline, BaselineBench: baselineBench}
}

// latency is a figure in ns per operation, where lower is better.
func latency(name, bench, baseline, baselineBench string) Figure {
	return Figure{Name: name, Unit: "ns", Bench: bench, Metric: "ns/op", Scale: 1,
		Baseline: baseline, BaselineBench: baselineBench, LowerIsBetter: true}
}
