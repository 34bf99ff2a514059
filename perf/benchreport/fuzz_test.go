package benchreport

import (
	"bytes"
	"fmt"
	"maps"
	"math"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// FuzzParse checks that Parse never panics, that every result it returns
// is well formed, and that printing the results back in go test's format
// parses to the same results. Seeds are in testdata/fuzz/FuzzParse.
func FuzzParse(f *testing.F) {
	f.Add([]byte(sampleOutput))
	f.Fuzz(func(t *testing.T, data []byte) {
		results, err := Parse(bytes.NewReader(data))
		if err != nil {
			if results != nil {
				t.Fatalf("Parse returned results and error %v", err)
			}
			if !strings.HasPrefix(err.Error(), "line ") {
				t.Fatalf("error %q does not name a line", err)
			}
			return
		}
		for _, r := range results {
			if !strings.HasPrefix(r.Name, "Benchmark") {
				t.Fatalf("result name %q does not begin with Benchmark", r.Name)
			}
			if r.Iterations <= 0 {
				t.Fatalf("%s: iterations %d", r.Name, r.Iterations)
			}
			if len(r.Metrics) == 0 {
				t.Fatalf("%s: no metrics", r.Name)
			}
			for unit, v := range r.Metrics {
				if math.IsInf(v, 0) || math.IsNaN(v) {
					t.Fatalf("%s: %s = %v is not finite", r.Name, unit, v)
				}
			}
		}
		again, err := Parse(strings.NewReader(format(results)))
		if err != nil {
			t.Fatalf("parsing printed results: %v\n%s", err, format(results))
		}
		if !reflect.DeepEqual(again, results) {
			t.Fatalf("printed and parsed again:\n%v\nwant\n%v", again, results)
		}
	})
}

// format prints results the way go test does with GOMAXPROCS=4.
func format(results []Result) string {
	var b strings.Builder
	for _, r := range results {
		fmt.Fprintf(&b, "%s-4\t%d", r.Name, r.Iterations)
		for _, unit := range slices.Sorted(maps.Keys(r.Metrics)) {
			fmt.Fprintf(&b, "\t%s %s", strconv.FormatFloat(r.Metrics[unit], 'g', -1, 64), unit)
		}
		b.WriteString("\n")
	}
	return b.String()
}
