// Command qrelay-bench runs qrelay's benchmarks and reports the headline
// figures defined in perf/benchreport, each against its baseline.
//
// It builds each selected group's test binary once, then runs the
// benchmarks in rounds, interleaving the groups (round 1 of every group,
// then round 2, ...) so that a figure and its baseline are always measured
// minutes apart at most. It prints a table of medians over the rounds to
// stdout, progress to stderr, and writes the figures to bench.json.
//
// Run it from the repository root as ./bench.sh; ./bench.sh --help lists
// the flags.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/qrelay/qrelay/otp"
	"github.com/qrelay/qrelay/perf/benchreport"
)

type config struct {
	groups    []benchreport.Group
	rounds    int
	benchtime string // passed to -test.benchtime
	out       string // bench.json path
}

func main() {
	cfg, err := parseFlags(os.Args[1:], os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "qrelay-bench:", err)
		os.Exit(2)
	}
	// On ^C, stop the benchmark, clean up and exit rather than die at once.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	root, err := moduleRoot(ctx)
	if err == nil {
		err = run(ctx, cfg, root, os.Stdout, os.Stderr)
	}
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "qrelay-bench:", err)
		os.Exit(1)
	}
}

func parseFlags(args []string, stderr io.Writer) (config, error) {
	fs := flag.NewFlagSet("qrelay-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	only := fs.String("only", "", "comma-separated `groups` to run (default all: "+strings.Join(groupNames(benchreport.Groups), ",")+")")
	rounds := fs.Int("rounds", 5, "run `n` rounds; at least 5 unless --quick")
	benchtime := fs.String("benchtime", "300ms", "run time per benchmark per round (`duration` or Nx, as go test -benchtime)")
	out := fs.String("out", "bench.json", "write the figures as JSON to `file`")
	quick := fs.Bool("quick", false, "smoke run for CI: 1 round of 10ms per benchmark, unless --rounds or --benchtime are given")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), `usage: bench.sh [flags]

Runs qrelay's benchmarks in interleaved rounds and reports each headline
figure against its baseline: a table on stdout, JSON in --out.
Flags may be written with one or two dashes.

`)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return config{}, err
	}
	if fs.NArg() > 0 {
		return config{}, fmt.Errorf("unexpected argument %q (see --help)", fs.Arg(0))
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if *quick && !set["rounds"] {
		*rounds = 1
	}
	if *quick && !set["benchtime"] {
		*benchtime = "10ms"
	}
	switch {
	case *rounds < 1:
		return config{}, fmt.Errorf("--rounds %d: need at least 1", *rounds)
	case *rounds < 5 && !*quick:
		return config{}, fmt.Errorf("--rounds %d is too few for a stable median: use at least 5, or --quick for a smoke run", *rounds)
	case *benchtime == "":
		return config{}, errors.New("--benchtime is empty")
	case *out == "":
		return config{}, errors.New("--out is empty")
	}
	groups, err := selectGroups(*only, benchreport.Groups)
	if err != nil {
		return config{}, err
	}
	return config{groups: groups, rounds: *rounds, benchtime: *benchtime, out: *out}, nil
}

// selectGroups returns the groups named in the comma-separated list only,
// in registry order, or all groups if only is empty.
func selectGroups(only string, all []benchreport.Group) ([]benchreport.Group, error) {
	if strings.TrimSpace(only) == "" {
		return all, nil
	}
	want := map[string]bool{}
	for _, name := range strings.Split(only, ",") {
		name = strings.TrimSpace(name)
		if name == "" {
			continue
		}
		if !slices.Contains(groupNames(all), name) {
			return nil, fmt.Errorf("--only: unknown group %q (known groups: %s)", name, strings.Join(groupNames(all), ", "))
		}
		want[name] = true
	}
	var groups []benchreport.Group
	for _, g := range all {
		if want[g.Name] {
			groups = append(groups, g)
		}
	}
	return groups, nil
}

func groupNames(groups []benchreport.Group) []string {
	var names []string
	for _, g := range groups {
		names = append(names, g.Name)
	}
	return names
}

// moduleRoot returns the directory of the main module's go.mod.
func moduleRoot(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("not inside the qrelay module; run bench.sh from the repository")
	}
	return filepath.Dir(gomod), nil
}

// run builds, runs and reports cfg's groups, whose packages are relative to
// the module root dir root.
func run(ctx context.Context, cfg config, root string, stdout, stderr io.Writer) error {
	fmt.Fprintln(stdout, machine())
	tmp, err := os.MkdirTemp("", "qrelay-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)

	bins := make([]string, len(cfg.groups))
	for i, g := range cfg.groups {
		fmt.Fprintf(stderr, "building %s (%s)\n", g.Name, g.Package)
		if bins[i], err = build(ctx, root, tmp, g); err != nil {
			return err
		}
	}

	results := make([][][]benchreport.Result, len(cfg.groups)) // [group][round]
	for r := 1; r <= cfg.rounds; r++ {
		fmt.Fprintf(stderr, "round %d/%d:", r, cfg.rounds)
		for i, g := range cfg.groups {
			start := time.Now()
			res, err := runBenchmarks(ctx, root, bins[i], g, cfg.benchtime)
			if err != nil {
				fmt.Fprintln(stderr, " failed")
				return fmt.Errorf("group %s, round %d: %w", g.Name, r, err)
			}
			results[i] = append(results[i], res)
			fmt.Fprintf(stderr, " %s %.1fs", g.Name, time.Since(start).Seconds())
		}
		fmt.Fprintln(stderr)
	}

	var rows []benchreport.Row
	for i, g := range cfg.groups {
		gr, err := benchreport.Summarise(results[i], g.Figures)
		if err != nil {
			return fmt.Errorf("group %s (%s, -bench %s): %w", g.Name, g.Package, g.Bench, err)
		}
		rows = append(rows, gr...)
	}
	if err := benchreport.WriteTable(stdout, rows); err != nil {
		return err
	}
	if err := writeJSON(cfg.out, rows); err != nil {
		return err
	}
	fmt.Fprintf(stderr, "wrote %s\n", cfg.out)
	return nil
}

// machine describes where the benchmarks ran.
func machine() string {
	cpu := "unknown CPU"
	if info, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.Lines(string(info)) {
			key, value, ok := strings.Cut(line, ":")
			if ok && strings.TrimSpace(key) == "model name" {
				cpu = strings.TrimSpace(value)
				break
			}
		}
	}
	// The test binaries run with this process's environment on this CPU, so
	// they choose the same XOR kernel as this process does.
	return fmt.Sprintf("machine: %s, GOMAXPROCS=%d, %s %s/%s, otp kernel %s",
		cpu, runtime.GOMAXPROCS(0), runtime.Version(), runtime.GOOS, runtime.GOARCH, otp.Impl())
}

// build compiles g's test binary into dir and returns its path.
func build(ctx context.Context, root, dir string, g benchreport.Group) (string, error) {
	bin := filepath.Join(dir, g.Name+".test")
	cmd := exec.CommandContext(ctx, "go", "test", "-c", "-o", bin, g.Package)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("group %s: %s: %v\n%s", g.Name, shellJoin(cmd.Args), err, out)
	}
	if _, err := os.Stat(bin); err != nil {
		return "", fmt.Errorf("group %s: %s built no test binary; does %s have _test.go files?", g.Name, shellJoin(cmd.Args), g.Package)
	}
	return bin, nil
}

// runBenchmarks runs g's benchmarks once with the test binary bin.
func runBenchmarks(ctx context.Context, root, bin string, g benchreport.Group, benchtime string) ([]benchreport.Result, error) {
	cmd := exec.CommandContext(ctx, bin, "-test.run=^$", "-test.bench="+g.Bench, "-test.benchtime="+benchtime, "-test.benchmem")
	cmd.Dir = filepath.Join(root, g.Package) // where go test would run it
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmdline := fmt.Sprintf("(cd %s && %s)", g.Package, shellJoin(cmd.Args))
	if err := cmd.Run(); ctx.Err() != nil {
		return nil, fmt.Errorf("%s: interrupted", cmdline)
	} else if err != nil {
		return nil, fmt.Errorf("%s: %v\n%s%s", cmdline, err, tail(stdout.String()), tail(stderr.String()))
	}
	results, err := benchreport.Parse(&stdout)
	if err != nil {
		return nil, fmt.Errorf("output of %s: %w", cmdline, err)
	}
	return results, nil
}

// shellJoin joins args into a command line a shell would run as is.
func shellJoin(args []string) string {
	quoted := make([]string, len(args))
	for i, a := range args {
		quoted[i] = a
		if strings.ContainsAny(a, " \t'\"\\$^|()[]*?{}<>&;!#~") {
			quoted[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
	}
	return strings.Join(quoted, " ")
}

// tail returns the last lines of s, enough to show why a run failed.
func tail(s string) string {
	lines := strings.SplitAfter(s, "\n")
	if n := len(lines); n > 30 {
		lines = append([]string{"...\n"}, lines[n-30:]...)
	}
	return strings.Join(lines, "")
}

func writeJSON(path string, rows []benchreport.Row) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := benchreport.WriteJSON(f, rows); err != nil {
		f.Close()
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}
