package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/qrelay/qrelay/perf/benchreport"
)

var testGroups = []benchreport.Group{{Name: "a"}, {Name: "b"}, {Name: "c"}}

func TestSelectGroups(t *testing.T) {
	for _, tc := range []struct {
		only string
		want []string
	}{
		{"", []string{"a", "b", "c"}},
		{"b", []string{"b"}},
		{"c, a,,c", []string{"a", "c"}}, // registry order, no repeats
	} {
		got, err := selectGroups(tc.only, testGroups)
		if err != nil {
			t.Errorf("selectGroups(%q): %v", tc.only, err)
		} else if !slices.Equal(groupNames(got), tc.want) {
			t.Errorf("selectGroups(%q) = %v, want %v", tc.only, groupNames(got), tc.want)
		}
	}
	_, err := selectGroups("a,nope", testGroups)
	if want := `unknown group "nope" (known groups: a, b, c)`; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("selectGroups(a,nope) error = %v, want %q", err, want)
	}
}

func TestParseFlags(t *testing.T) {
	for _, tc := range []struct {
		args      string
		rounds    int
		benchtime string
		err       string
	}{
		{"", 5, "300ms", ""},
		{"--rounds 7 --benchtime 1s --out x.json", 7, "1s", ""},
		{"--quick", 1, "10ms", ""},
		{"--quick --rounds 2 --benchtime 5x", 2, "5x", ""},
		{"--rounds 3", 0, "", "--rounds 3 is too few"},
		{"--quick --rounds 0", 0, "", "--rounds 0: need at least 1"},
		{"--only nope", 0, "", `unknown group "nope" (known groups: otp`},
		{"extra", 0, "", `unexpected argument "extra"`},
		{"--bogus", 0, "", "flag provided but not defined: -bogus"},
	} {
		cfg, err := parseFlags(strings.Fields(tc.args), io.Discard)
		switch {
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("parseFlags(%s) error = %v, want %q", tc.args, err, tc.err)
		case tc.err == "" && err != nil:
			t.Errorf("parseFlags(%s): %v", tc.args, err)
		case tc.err == "" && (cfg.rounds != tc.rounds || cfg.benchtime != tc.benchtime):
			t.Errorf("parseFlags(%s) = rounds %d, benchtime %s; want %d, %s", tc.args, cfg.rounds, cfg.benchtime, tc.rounds, tc.benchtime)
		}
	}
}

func TestHelp(t *testing.T) {
	var buf bytes.Buffer
	if _, err := parseFlags([]string{"--help"}, &buf); err == nil {
		t.Error("--help: no flag.ErrHelp")
	}
	for _, want := range []string{"usage: bench.sh", "-only", "-rounds", "-benchtime", "-out", "-quick"} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("--help output lacks %q:\n%s", want, buf.String())
		}
	}
}

// TestRun runs the whole tool on a fake module whose packages have the
// benchmarks that the real groups' figures need, named exactly as in the
// registry, plus near-miss benchmarks that fail if the -bench pattern
// selects them. This also checks each group's pattern against go test's
// real matcher.
func TestRun(t *testing.T) {
	root := fakeModule(t, benchreport.Groups)
	out := filepath.Join(t.TempDir(), "bench.json")
	cfg := config{groups: benchreport.Groups, rounds: 2, benchtime: "100x", out: out}
	var stdout, stderr bytes.Buffer
	if err := run(context.Background(), cfg, root, &stdout, &stderr); err != nil {
		t.Fatalf("run: %v\nstderr:\n%s", err, stderr.String())
	}
	if !strings.HasPrefix(stdout.String(), "machine: ") {
		t.Errorf("stdout does not start with the machine header:\n%s", stdout.String())
	}
	if !strings.Contains(stderr.String(), "round 1/2:") || !strings.Contains(stderr.String(), "round 2/2:") {
		t.Errorf("stderr lacks round progress:\n%s", stderr.String())
	}
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rows, err := benchreport.ReadJSON(f)
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, g := range benchreport.Groups {
		for _, fig := range g.Figures {
			want = append(want, fig.Name)
			if !strings.Contains(stdout.String(), fig.Name+" ") {
				t.Errorf("table lacks %s:\n%s", fig.Name, stdout.String())
			}
		}
	}
	var got []string
	for _, r := range rows {
		got = append(got, r.Name)
		if r.Value <= 0 || (r.Baseline != "" && r.Ratio <= 0) {
			t.Errorf("row %+v: value or ratio not positive", r)
		}
	}
	if !slices.Equal(got, want) {
		t.Errorf("bench.json figures = %v, want %v", got, want)
	}
}

func TestRunErrors(t *testing.T) {
	root := fakeModule(t, nil)
	writeFile(t, filepath.Join(root, "fails", "fails_test.go"), `package fails
import "testing"
func BenchmarkBroken(b *testing.B) { b.Fatal("kernel mismatch") }
`)
	writeFile(t, filepath.Join(root, "notests", "x.go"), "package notests\n")
	writeFile(t, filepath.Join(root, "empty", "empty_test.go"), `package empty
import "testing"
func BenchmarkOther(b *testing.B) { for b.Loop() {} }
`)
	fig := benchreport.Figure{Name: "x.y", Unit: "ns", Bench: "BenchmarkWanted/sub", Metric: "ns/op"}
	for _, tc := range []struct {
		group benchreport.Group
		want  []string
	}{
		{benchreport.Group{Name: "fails", Package: "./fails", Bench: ".", Figures: []benchreport.Figure{fig}},
			[]string{"group fails, round 1:", "-test.bench=.", "exit status 1", "kernel mismatch"}},
		{benchreport.Group{Name: "notests", Package: "./notests", Bench: ".", Figures: []benchreport.Figure{fig}},
			[]string{"group notests:", "go test -c", "built no test binary"}},
		{benchreport.Group{Name: "missing", Package: "./missing", Bench: ".", Figures: []benchreport.Figure{fig}},
			[]string{"group missing:", "go test -c -o", "./missing"}},
		{benchreport.Group{Name: "empty", Package: "./empty", Bench: "^BenchmarkWanted$", Figures: []benchreport.Figure{fig}},
			[]string{"group empty (./empty, -bench ^BenchmarkWanted$): figure x.y: round 1: needs benchmark BenchmarkWanted/sub"}},
	} {
		out := filepath.Join(t.TempDir(), "bench.json")
		cfg := config{groups: []benchreport.Group{tc.group}, rounds: 1, benchtime: "1x", out: out}
		err := run(context.Background(), cfg, root, io.Discard, io.Discard)
		for _, want := range tc.want {
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("group %s: run error = %v, want it to contain %q", tc.group.Name, err, want)
			}
		}
		if _, err := os.Stat(out); err == nil {
			t.Errorf("group %s: run failed but wrote %s", tc.group.Name, out)
		}
	}
}

// fakeModule writes a module in a temporary directory with, for each group,
// a package at the group's path holding a benchmark for every name its
// figures need and near-miss benchmarks that fail when run.
func fakeModule(t *testing.T, groups []benchreport.Group) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds and runs test binaries")
	}
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("no go command")
	}
	root := t.TempDir()
	writeFile(t, filepath.Join(root, "go.mod"), "module example.com/fake\n\ngo 1.26\n")
	// Groups may share a package (a package's benchmarks can feed several
	// groups): one file per package, with the benchmarks of all of them.
	type pkg struct {
		tree  map[string]map[string]bool // top-level name -> sub-benchmark paths
		units []string                   // custom b.ReportMetric units the figures read
	}
	pkgs := map[string]*pkg{}
	var order []string
	for _, g := range groups {
		pk := pkgs[g.Package]
		if pk == nil {
			pk = &pkg{tree: map[string]map[string]bool{}}
			pkgs[g.Package] = pk
			order = append(order, g.Package)
		}
		for _, f := range g.Figures {
			if f.Metric != "MB/s" && f.Metric != "ns/op" && !slices.Contains(pk.units, f.Metric) {
				pk.units = append(pk.units, f.Metric)
			}
			for _, name := range []string{f.Bench, f.BaselineBench} {
				if name == "" {
					continue
				}
				top, sub, _ := strings.Cut(name, "/")
				if pk.tree[top] == nil {
					pk.tree[top] = map[string]bool{}
				}
				pk.tree[top][sub] = true
			}
		}
	}
	for _, dir := range order {
		pk := pkgs[dir]
		var src strings.Builder
		fmt.Fprintf(&src, "package %s\n\n%s", filepath.Base(dir), fakeHelpers)
		for top, subs := range pk.tree {
			fmt.Fprintf(&src, "func %s(b *testing.B) {\n\tb.Log(\"otp-impl: fake\")\n\trunTree(b, %#v, %#v)\n}\n", top, slices.Sorted(maps.Keys(subs)), pk.units)
			for _, miss := range []string{top + "Parallel", top + "X", top + "_"} {
				if pk.tree[miss] == nil {
					fmt.Fprintf(&src, "func %s(b *testing.B) { b.Fatal(\"-bench pattern ran %s\") }\n", miss, miss)
				}
			}
		}
		writeFile(t, filepath.Join(root, dir, "fake_test.go"), src.String())
	}
	return root
}

// fakeHelpers runs sub-benchmarks given as "a/b" paths, sharing levels
// (b.Run twice with one name would rename the second "name#01").
const fakeHelpers = `import (
	"fmt"
	"os"
	"strings"
	"testing"
)

func TestMain(m *testing.M) {
	fmt.Println("otp-impl: fake")
	os.Exit(m.Run())
}

func runTree(b *testing.B, paths, units []string) {
	if len(paths) == 1 && paths[0] == "" {
		buf, dst := make([]byte, 4096), make([]byte, 4096)
		b.SetBytes(int64(len(buf)))
		for b.Loop() {
			copy(dst, buf)
		}
		for _, u := range units {
			b.ReportMetric(1, u)
		}
		return
	}
	var order []string
	children := map[string][]string{}
	for _, p := range paths {
		first, rest, _ := strings.Cut(p, "/")
		if children[first] == nil {
			order = append(order, first)
		}
		children[first] = append(children[first], rest)
	}
	for _, name := range order {
		b.Run(name, func(b *testing.B) { runTree(b, children[name], units) })
	}
}

`

func writeFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}
