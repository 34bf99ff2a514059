package benchreport

import (
	"errors"
	"fmt"
	"math"
	"slices"
)

// Figure is one headline number: a metric of one benchmark, scaled to the
// reported unit and optionally compared with a baseline benchmark.
type Figure struct {
	Name   string  // figure name, "<group>.<what>": "otp.xor.64KiB"
	Unit   string  // unit of the reported value: "GB/s"
	Bench  string  // benchmark measured, without -N suffix: "BenchmarkXOR/64KiB/otp"
	Metric string  // go test unit read from Bench: "MB/s"
	Scale  float64 // value = metric × Scale; 0 means 1

	Baseline      string // what the figure is compared with, "" for nothing
	BaselineBench string // benchmark measuring Baseline (same Metric and Scale)
	LowerIsBetter bool   // ratio = baseline/value instead of value/baseline
}

// Row is the summary of one figure over all rounds.
type Row struct {
	Name          string
	Value         float64 // median over rounds
	Unit          string
	Baseline      string  // "" when the figure has no baseline
	BaselineValue float64 // median over rounds; 0 without a baseline
	Ratio         float64 // median of per-round ratios, > 1 is better; 0 without a baseline
	Rounds        int
}

// Summarise returns one Row per figure, in order. Each element of rounds is
// the results of one full run of the benchmarks; every round must contain
// each benchmark a figure needs, exactly once.
func Summarise(rounds [][]Result, figs []Figure) ([]Row, error) {
	if len(rounds) == 0 {
		return nil, errors.New("summarise: no rounds of results")
	}
	byName := make([]map[string]Result, len(rounds))
	for i, round := range rounds {
		byName[i] = make(map[string]Result, len(round))
		for _, r := range round {
			if _, dup := byName[i][r.Name]; dup {
				return nil, fmt.Errorf("summarise: round %d has %s twice", i+1, r.Name)
			}
			byName[i][r.Name] = r
		}
	}
	rows := make([]Row, 0, len(figs))
	for _, f := range figs {
		row, err := f.summarise(byName)
		if err != nil {
			return nil, fmt.Errorf("figure %s: %w", f.Name, err)
		}
		rows = append(rows, row)
	}
	return rows, nil
}

func (f Figure) summarise(rounds []map[string]Result) (Row, error) {
	if err := f.check(); err != nil {
		return Row{}, err
	}
	var values, baselines, ratios []float64
	for i, results := range rounds {
		v, err := f.read(results, f.Bench)
		if err != nil {
			return Row{}, fmt.Errorf("round %d: %w", i+1, err)
		}
		values = append(values, v)
		if f.Baseline == "" {
			continue
		}
		b, err := f.read(results, f.BaselineBench)
		if err != nil {
			return Row{}, fmt.Errorf("round %d: %w", i+1, err)
		}
		ratio := v / b
		if f.LowerIsBetter {
			ratio = b / v
		}
		if !(v > 0 && b > 0 && ratio > 0) || math.IsInf(ratio, 0) {
			return Row{}, fmt.Errorf("round %d: no ratio between value %g and baseline %g", i+1, v, b)
		}
		baselines = append(baselines, b)
		ratios = append(ratios, ratio)
	}
	row := Row{Name: f.Name, Value: median(values), Unit: f.Unit, Baseline: f.Baseline, Rounds: len(rounds)}
	if f.Baseline != "" {
		row.BaselineValue = median(baselines)
		row.Ratio = median(ratios)
	}
	return row, nil
}

// read returns bench's metric, scaled.
func (f Figure) read(results map[string]Result, bench string) (float64, error) {
	r, ok := results[bench]
	if !ok {
		return 0, fmt.Errorf("needs benchmark %s, which is not in the results", bench)
	}
	v, ok := r.Metrics[f.Metric]
	if !ok {
		return 0, fmt.Errorf("benchmark %s reported no %q metric", bench, f.Metric)
	}
	scale := f.Scale
	if scale == 0 {
		scale = 1
	}
	v *= scale
	if math.IsInf(v, 0) || math.IsNaN(v) {
		return 0, fmt.Errorf("benchmark %s: %s × %g is not finite", bench, f.Metric, scale)
	}
	return v, nil
}

// check reports a figure that cannot be summarised whatever the results.
func (f Figure) check() error {
	switch {
	case f.Name == "":
		return fmt.Errorf("figure for %s has no name", f.Bench)
	case f.Unit == "" || f.Bench == "" || f.Metric == "":
		return errors.New("fields Unit, Bench and Metric must all be set")
	case f.Scale < 0 || math.IsInf(f.Scale, 0) || math.IsNaN(f.Scale):
		return fmt.Errorf("field Scale %g is not a finite, non-negative number", f.Scale)
	case (f.Baseline == "") != (f.BaselineBench == ""):
		return errors.New("fields Baseline and BaselineBench must be set together")
	}
	return nil
}

// median returns the middle of vs, or the mean of the two middle values
// when len(vs) is even. vs must not be empty.
func median(vs []float64) float64 {
	s := slices.Clone(vs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}
