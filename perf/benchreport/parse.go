package benchreport

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Result is one result line of `go test -bench` output.
type Result struct {
	// Name is the benchmark's full name, levels separated by "/", without
	// the "-GOMAXPROCS" suffix: "BenchmarkXOR/4KiB/otp".
	Name string
	// Iterations is the b.N the metrics were measured over.
	Iterations int64
	// Metrics maps each unit to its value: "ns/op", "MB/s", "B/op",
	// "allocs/op", and custom units from b.ReportMetric such as "Gbit/s".
	Metrics map[string]float64
}

// Parse reads `go test -bench` text output and returns its results in the
// order they appear. A result line looks like
//
//	BenchmarkXOR/4KiB/otp-2   	 1000000	      35.2 ns/op	116000.00 MB/s
//
// that is: name, iteration count, then value/unit pairs, separated by
// spaces or tabs. Other lines (goos:, pkg:, PASS, ok, log output) are
// skipped, as is a line holding only a benchmark name (printed by -v, or
// when the benchmark itself printed to stdout). A line that starts like a
// result but is malformed is an error naming the line number and the fault.
//
// The "-N" suffix that go test adds when GOMAXPROCS is N > 1 is removed
// from the last level of the name. go test adds no suffix when N is 1, so
// a name whose last level really ends in "-<digits>" would be misread;
// benchmark names should avoid that.
func Parse(r io.Reader) ([]Result, error) {
	var results []Result
	br := bufio.NewReader(r)
	for n := 1; ; n++ {
		line, err := br.ReadString('\n')
		if line != "" {
			res, ok, perr := parseLine(line)
			if perr != nil {
				return nil, fmt.Errorf("line %d: %w", n, perr)
			}
			if ok {
				results = append(results, res)
			}
		}
		if err == io.EOF {
			return results, nil
		}
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
	}
}

// parseLine parses one line; ok is false for a line that is not a result.
func parseLine(line string) (res Result, ok bool, err error) {
	if !isBenchmarkLine(line) {
		return Result{}, false, nil
	}
	fields := strings.Fields(line)
	if len(fields) == 1 {
		return Result{}, false, nil
	}
	name := fields[0]
	iters, err := strconv.ParseInt(fields[1], 10, 64)
	if err != nil || iters <= 0 {
		return Result{}, false, fmt.Errorf("%s: iteration count %q is not a positive integer", name, fields[1])
	}
	pairs := fields[2:]
	if len(pairs) == 0 {
		return Result{}, false, fmt.Errorf("%s: no value/unit pairs after the iteration count", name)
	}
	if len(pairs)%2 != 0 {
		return Result{}, false, fmt.Errorf("%s: odd number of value/unit fields (%d): value %q has no unit", name, len(pairs), pairs[len(pairs)-1])
	}
	metrics := make(map[string]float64, len(pairs)/2)
	for i := 0; i < len(pairs); i += 2 {
		value, unit := pairs[i], pairs[i+1]
		v, err := strconv.ParseFloat(value, 64)
		switch {
		case err != nil && !errors.Is(err, strconv.ErrRange):
			return Result{}, false, fmt.Errorf("%s: value %q for unit %q is not a number", name, value, unit)
		case err != nil || math.IsInf(v, 0) || math.IsNaN(v):
			return Result{}, false, fmt.Errorf("%s: value %q for unit %q is not finite", name, value, unit)
		}
		if _, err := strconv.ParseFloat(unit, 64); err == nil || errors.Is(err, strconv.ErrRange) {
			return Result{}, false, fmt.Errorf("%s: unit %q after value %q is a number", name, unit, value)
		}
		if _, dup := metrics[unit]; dup {
			return Result{}, false, fmt.Errorf("%s: unit %q appears twice", name, unit)
		}
		metrics[unit] = v
	}
	return Result{Name: trimProcs(name), Iterations: iters, Metrics: metrics}, true, nil
}

// isBenchmarkLine reports whether line starts with a benchmark name: go
// test's rule is "Benchmark" not followed by a lower-case letter, so that
// "Benchmarking..." is ordinary text.
func isBenchmarkLine(line string) bool {
	rest, ok := strings.CutPrefix(line, "Benchmark")
	if !ok {
		return false
	}
	r, _ := utf8.DecodeRuneInString(rest)
	return !unicode.IsLower(r)
}

// trimProcs removes a trailing "-<digits>" from name (necessarily within
// its last level, as digits hold no "/").
func trimProcs(name string) string {
	i := strings.LastIndexByte(name, '-')
	if i < 0 || i == len(name)-1 {
		return name
	}
	for _, c := range name[i+1:] {
		if c < '0' || c > '9' {
			return name
		}
	}
	return name[:i]
}
