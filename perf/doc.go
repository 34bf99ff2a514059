// Package perf is the home of qrelay's performance tooling: metrics, eBPF
// counters, load generators and the benchmark harness that bench.sh runs.
// Each of these lives in a subpackage; perf itself holds no code.
//
//   - perf/benchreport parses `go test -bench` output, defines the headline
//     figures and their baselines, and writes bench.json and a text table.
//   - perf/cmd/qrelay-bench builds and runs the benchmarks in interleaved
//     rounds; bench.sh at the repository root is a thin wrapper around it.
package perf
