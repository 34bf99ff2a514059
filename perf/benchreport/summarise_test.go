package benchreport

import (
	"math"
	"strings"
	"testing"
)

// round makes one round of results, each with a single metric unit.
func round(unit string, nameValues ...any) []Result {
	var rs []Result
	for i := 0; i < len(nameValues); i += 2 {
		rs = append(rs, Result{
			Name:       nameValues[i].(string),
			Iterations: 1,
			Metrics:    map[string]float64{unit: nameValues[i+1].(float64)},
		})
	}
	return rs
}

var gbps = Figure{Name: "g.fast", Unit: "GB/s", Bench: "BenchmarkFast", Metric: "MB/s", Scale: 1e-3,
	Baseline: "slow", BaselineBench: "BenchmarkSlow"}

func near(a, b float64) bool { return math.Abs(a-b) <= 1e-9*math.Max(math.Abs(a), math.Abs(b)) }

func TestSummariseMedians(t *testing.T) {
	for _, tc := range []struct {
		name                   string
		rounds                 [][]Result
		fig                    Figure
		value, baseline, ratio float64
	}{
		{
			name: "one round",
			rounds: [][]Result{
				round("MB/s", "BenchmarkFast", 4000.0, "BenchmarkSlow", 2000.0),
			},
			fig:   gbps,
			value: 4, baseline: 2, ratio: 2,
		},
		{
			// Medians of value and baseline are taken separately (5 and 2),
			// but the ratio is the median of per-round ratios 2, 5, 1.5:
			// each value is paired with the baseline of its own round.
			name: "odd rounds pair value and baseline per round",
			rounds: [][]Result{
				round("MB/s", "BenchmarkFast", 4000.0, "BenchmarkSlow", 2000.0),
				round("MB/s", "BenchmarkFast", 5000.0, "BenchmarkSlow", 1000.0),
				round("MB/s", "BenchmarkSlow", 4000.0, "BenchmarkFast", 6000.0),
			},
			fig:   gbps,
			value: 5, baseline: 2, ratio: 2,
		},
		{
			name: "even rounds average the middle two",
			rounds: [][]Result{
				round("MB/s", "BenchmarkFast", 1000.0, "BenchmarkSlow", 1000.0),
				round("MB/s", "BenchmarkFast", 8000.0, "BenchmarkSlow", 1000.0),
				round("MB/s", "BenchmarkFast", 3000.0, "BenchmarkSlow", 1000.0),
				round("MB/s", "BenchmarkFast", 2000.0, "BenchmarkSlow", 1000.0),
			},
			fig:   gbps,
			value: 2.5, baseline: 1, ratio: 2.5,
		},
		{
			name: "lower is better inverts the ratio",
			rounds: [][]Result{
				round("ns/op", "BenchmarkFast", 2.0, "BenchmarkSlow", 8.0),
				round("ns/op", "BenchmarkFast", 4.0, "BenchmarkSlow", 8.0),
			},
			fig: Figure{Name: "g.key", Unit: "ns", Bench: "BenchmarkFast", Metric: "ns/op",
				Baseline: "slow", BaselineBench: "BenchmarkSlow", LowerIsBetter: true},
			value: 3, baseline: 8, ratio: 3, // ratios 4 and 2
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rows, err := Summarise(tc.rounds, []Figure{tc.fig})
			if err != nil {
				t.Fatal(err)
			}
			r := rows[0]
			if len(rows) != 1 || r.Name != tc.fig.Name || r.Unit != tc.fig.Unit || r.Baseline != tc.fig.Baseline || r.Rounds != len(tc.rounds) {
				t.Fatalf("rows = %+v, want one row for %s with %d rounds", rows, tc.fig.Name, len(tc.rounds))
			}
			if !near(r.Value, tc.value) || !near(r.BaselineValue, tc.baseline) || !near(r.Ratio, tc.ratio) {
				t.Errorf("value, baseline, ratio = %g, %g, %g; want %g, %g, %g",
					r.Value, r.BaselineValue, r.Ratio, tc.value, tc.baseline, tc.ratio)
			}
		})
	}
}

func TestSummariseNoBaseline(t *testing.T) {
	fig := Figure{Name: "g.alone", Unit: "Gbit/s", Bench: "BenchmarkFast", Metric: "Gbit/s"}
	rows, err := Summarise([][]Result{round("Gbit/s", "BenchmarkFast", -3.0)}, []Figure{fig})
	if err != nil {
		t.Fatal(err)
	}
	want := Row{Name: "g.alone", Value: -3, Unit: "Gbit/s", Rounds: 1}
	if rows[0] != want {
		t.Errorf("row = %+v, want %+v", rows[0], want)
	}
}

func TestSummariseErrors(t *testing.T) {
	good := round("MB/s", "BenchmarkFast", 2.0, "BenchmarkSlow", 1.0)
	for _, tc := range []struct {
		name   string
		rounds [][]Result
		fig    Figure
		want   string
	}{
		{"no rounds", nil, gbps, "no rounds"},
		{"missing bench", [][]Result{good, round("MB/s", "BenchmarkSlow", 1.0)}, gbps,
			"figure g.fast: round 2: needs benchmark BenchmarkFast, which is not in the results"},
		{"missing baseline", [][]Result{round("MB/s", "BenchmarkFast", 1.0)}, gbps,
			"figure g.fast: round 1: needs benchmark BenchmarkSlow"},
		{"missing metric", [][]Result{round("ns/op", "BenchmarkFast", 1.0, "BenchmarkSlow", 1.0)}, gbps,
			`figure g.fast: round 1: benchmark BenchmarkFast reported no "MB/s" metric`},
		{"duplicate", [][]Result{append(good, good[0])}, gbps, "round 1 has BenchmarkFast twice"},
		{"zero baseline", [][]Result{round("MB/s", "BenchmarkFast", 2.0, "BenchmarkSlow", 0.0)}, gbps,
			"figure g.fast: round 1: no ratio between value 0.002 and baseline 0"},
		{"half a baseline", [][]Result{good}, Figure{Name: "g.x", Unit: "u", Bench: "BenchmarkFast", Metric: "MB/s", Baseline: "slow"},
			"figure g.x: fields Baseline and BaselineBench must be set together"},
		{"no metric", [][]Result{good}, Figure{Name: "g.x", Unit: "u", Bench: "BenchmarkFast"},
			"figure g.x: fields Unit, Bench and Metric must all be set"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rows, err := Summarise(tc.rounds, []Figure{tc.fig})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Summarise = %v, %v; want error containing %q", rows, err, tc.want)
			}
		})
	}
}

func TestMedian(t *testing.T) {
	for _, tc := range []struct {
		in   []float64
		want float64
	}{
		{[]float64{7}, 7},
		{[]float64{3, 1, 2}, 2},
		{[]float64{4, 1, 3, 2}, 2.5},
		{[]float64{5, 5, 1, 9, 5}, 5},
	} {
		in := append([]float64(nil), tc.in...)
		if got := median(in); got != tc.want {
			t.Errorf("median(%v) = %g, want %g", tc.in, got, tc.want)
		}
		for i := range in {
			if in[i] != tc.in[i] {
				t.Fatalf("median reordered its input: %v", in)
			}
		}
	}
}
