package benchreport

import (
	"reflect"
	"strings"
	"testing"
)

const sampleOutput = `otp-impl: avx2
goos: linux
goarch: amd64
pkg: github.com/qrelay/qrelay/otp
cpu: AMD EPYC 7B13
BenchmarkXOR/4KiB/otp-2         	 1000000	        35.2 ns/op	116000.00 MB/s	       0 B/op	       0 allocs/op
BenchmarkXOR/4KiB/subtle-2      	  500000	        70.4 ns/op	58000.00 MB/s	       0 B/op	       0 allocs/op
--- BENCH: BenchmarkXOR-2
    xor_test.go:20: otp-impl: avx2
BenchmarkXORKey/32B/fast-2      	100000000	         3.21 ns/op	         9.97 Gbit/s	      1.5 ns/key
PASS
ok  	github.com/qrelay/qrelay/otp	4.211s
`

func TestParseSample(t *testing.T) {
	got, err := Parse(strings.NewReader(sampleOutput))
	if err != nil {
		t.Fatal(err)
	}
	want := []Result{
		{"BenchmarkXOR/4KiB/otp", 1000000, map[string]float64{"ns/op": 35.2, "MB/s": 116000, "B/op": 0, "allocs/op": 0}},
		{"BenchmarkXOR/4KiB/subtle", 500000, map[string]float64{"ns/op": 70.4, "MB/s": 58000, "B/op": 0, "allocs/op": 0}},
		{"BenchmarkXORKey/32B/fast", 100000000, map[string]float64{"ns/op": 3.21, "Gbit/s": 9.97, "ns/key": 1.5}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Parse(sample) =\n%v\nwant\n%v", got, want)
	}
}

func TestParseLines(t *testing.T) {
	for _, tc := range []struct {
		line string
		want *Result // nil: not a result line
	}{
		{"BenchmarkA-8 10 5 ns/op", &Result{"BenchmarkA", 10, map[string]float64{"ns/op": 5}}},
		{"BenchmarkA 10 5 ns/op", &Result{"BenchmarkA", 10, map[string]float64{"ns/op": 5}}},
		{"BenchmarkA\t10\t5 ns/op\r", &Result{"BenchmarkA", 10, map[string]float64{"ns/op": 5}}},
		// Only a trailing -<digits> on the last level is the GOMAXPROCS suffix.
		{"BenchmarkA/key-size-32-16 1 2 ns/op", &Result{"BenchmarkA/key-size-32", 1, map[string]float64{"ns/op": 2}}},
		{"BenchmarkA/x-y 1 2 ns/op", &Result{"BenchmarkA/x-y", 1, map[string]float64{"ns/op": 2}}},
		{"BenchmarkA-1/x 1 2 ns/op", &Result{"BenchmarkA-1/x", 1, map[string]float64{"ns/op": 2}}},
		{"BenchmarkA/x- 1 2 ns/op", &Result{"BenchmarkA/x-", 1, map[string]float64{"ns/op": 2}}},
		{"BenchmarkA/x-2a 1 2 ns/op", &Result{"BenchmarkA/x-2a", 1, map[string]float64{"ns/op": 2}}},
		{"Benchmark_a-4 1 2 ns/op", &Result{"Benchmark_a", 1, map[string]float64{"ns/op": 2}}},
		{"BenchmarkA-4 7 -1.5e3 delta/op 2 Gbit/s", &Result{"BenchmarkA", 7, map[string]float64{"delta/op": -1500, "Gbit/s": 2}}},
		{"BenchmarkA-4", nil},                   // -v header, or stdout output followed
		{"BenchmarkA/sub-4   \t", nil},          // the same with trailing blanks
		{"Benchmarking is fun 1 2 3", nil},      // not a benchmark name
		{"  BenchmarkA-4 1 2 ns/op", nil},       // indented: log output
		{"--- BENCH: BenchmarkA-4", nil},        // log header
		{"ok  \tgithub.com/x\t1.2s", nil},       // summary
		{"goos: linux", nil},                    // configuration
		{"", nil},                               // blank
		{"PASS", nil},                           // status
		{"otp-impl: BenchmarkA 1 2 ns/op", nil}, // printed by the package
	} {
		got, err := Parse(strings.NewReader(tc.line))
		if err != nil {
			t.Errorf("Parse(%q): %v", tc.line, err)
			continue
		}
		var want []Result
		if tc.want != nil {
			want = []Result{*tc.want}
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("Parse(%q) = %v, want %v", tc.line, got, want)
		}
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct {
		input string
		want  string // substrings of the error, all required
	}{
		{"BenchmarkA-4 10 5 ns/op 7", `line 1: BenchmarkA-4: odd number of value/unit fields (3): value "7" has no unit`},
		{"PASS\nBenchmarkA-4 10 5", `line 2: BenchmarkA-4: odd number of value/unit fields (1)`},
		{"BenchmarkA-4 10 fast ns/op", `BenchmarkA-4: value "fast" for unit "ns/op" is not a number`},
		{"BenchmarkA-4 10 NaN ns/op", `value "NaN" for unit "ns/op" is not finite`},
		{"BenchmarkA-4 10 -Inf ns/op", `value "-Inf" for unit "ns/op" is not finite`},
		{"BenchmarkA-4 10 1e999 ns/op", `value "1e999" for unit "ns/op" is not finite`},
		{"BenchmarkA-4 10 1 2 3 ns/op", `unit "2" after value "1" is a number`},
		{"BenchmarkA-4 10 1 ns/op 2 ns/op", `unit "ns/op" appears twice`},
		{"BenchmarkA-4 10", `line 1: BenchmarkA-4: no value/unit pairs`},
		{"BenchmarkA-4 ten 1 ns/op", `iteration count "ten" is not a positive integer`},
		{"BenchmarkA-4 0 1 ns/op", `iteration count "0" is not a positive integer`},
		{"BenchmarkA-4 1.5 1 ns/op", `iteration count "1.5"`},
		// go test prints the name, then the failure, on one line.
		{"x\ny\nBenchmarkA-4  \t--- FAIL: BenchmarkA-4", `line 3: BenchmarkA-4: iteration count "---"`},
	} {
		got, err := Parse(strings.NewReader(tc.input))
		if err == nil {
			t.Errorf("Parse(%q) = %v, want error containing %q", tc.input, got, tc.want)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Parse(%q) error = %q, want it to contain %q", tc.input, err, tc.want)
		}
		if got != nil {
			t.Errorf("Parse(%q) returned results %v with its error", tc.input, got)
		}
	}
}

func TestParseLongLine(t *testing.T) {
	// Long log lines must not stop the parse (bufio.Scanner would).
	input := strings.Repeat("x", 1<<20) + "\nBenchmarkA-2 1 2 ns/op\n"
	got, err := Parse(strings.NewReader(input))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Name != "BenchmarkA" {
		t.Errorf("Parse = %v, want BenchmarkA", got)
	}
}
