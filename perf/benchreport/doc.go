// Package benchreport turns `go test -bench` output into qrelay's headline
// performance figures.
//
// [Parse] reads the text output of `go test -bench` into [Result]s.
//
// A [Figure] names one number worth reporting: a metric of one benchmark,
// scaled to a friendlier unit, optionally compared with a baseline
// benchmark. Its value is
//
//	value = Result[Bench].Metrics[Metric] × Scale
//
// (for example "MB/s" × 1e-3 gives "GB/s"), and the baseline value is the
// same metric and scale taken from BaselineBench. The ratio is
//
//	ratio = value / baseline_value   (higher is better, e.g. GB/s)
//	ratio = baseline_value / value   (LowerIsBetter, e.g. ns)
//
// so a ratio above 1 always means "better than the baseline", and 2.0
// means twice as good.
//
// [Summarise] combines several rounds (each a full run of the benchmarks)
// into one [Row] per figure: the median value, the median baseline value
// and the median of the per-round ratios, where each round's ratio pairs a
// value with the baseline measured in the same round, minutes apart at
// most, so that slow drift of the machine cancels out.
//
// [Groups] is the registry of figures, grouped by the Go package whose
// benchmarks measure them; bench.sh --only selects groups by name.
//
// [WriteJSON] writes bench.json; [WriteTable] writes a table for people.
package benchreport
