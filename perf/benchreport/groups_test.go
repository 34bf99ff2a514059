package benchreport

import (
	"regexp"
	"strings"
	"testing"
)

func TestGroupsWellFormed(t *testing.T) {
	groups := map[string]bool{}
	figures := map[string]bool{}
	for _, g := range Groups {
		if g.Name == "" || groups[g.Name] || strings.ContainsAny(g.Name, ", ") {
			t.Errorf("group name %q is empty, repeated or contains a comma or space", g.Name)
		}
		groups[g.Name] = true
		if !strings.HasPrefix(g.Package, "./") {
			t.Errorf("group %s: package %q is not relative to the module root", g.Name, g.Package)
		}
		if len(g.Figures) == 0 {
			t.Errorf("group %s has no figures", g.Name)
		}
		for _, f := range g.Figures {
			if err := f.check(); err != nil {
				t.Errorf("group %s: figure %s: %v", g.Name, f.Name, err)
			}
			if (f.Name != g.Name && !strings.HasPrefix(f.Name, g.Name+".")) || figures[f.Name] {
				t.Errorf("group %s: figure name %q is repeated or lacks the prefix %q", g.Name, f.Name, g.Name+".")
			}
			figures[f.Name] = true
		}
	}
}

// TestGroupBenchPatterns checks that each group's -bench pattern runs every
// benchmark its figures need, and no other top-level benchmark: not even one
// whose name extends a needed one (BenchmarkXOR vs BenchmarkXORKey is the
// classic unanchored-regexp mistake).
func TestGroupBenchPatterns(t *testing.T) {
	for _, g := range Groups {
		needed := map[string]bool{} // top-level benchmarks
		for _, f := range g.Figures {
			for _, name := range []string{f.Bench, f.BaselineBench} {
				if name == "" {
					continue
				}
				if !benchRuns(t, g.Bench, name) {
					t.Errorf("group %s: -bench %s does not run %s, which figure %s needs", g.Name, g.Bench, name, f.Name)
				}
				top, _, _ := strings.Cut(name, "/")
				needed[top] = true
			}
		}
		candidates := []string{"Benchmark", "BenchmarkOther"}
		for top := range needed {
			candidates = append(candidates, top, top+"Parallel", top+"_", top+"X", "BenchmarkX"+strings.TrimPrefix(top, "Benchmark"))
		}
		for _, c := range candidates {
			if got := benchRuns(t, g.Bench, c+"/any"); got != needed[c] {
				t.Errorf("group %s: -bench %s runs %s/any = %v, want %v", g.Name, g.Bench, c, got, needed[c])
			}
		}
	}
}

func TestBenchRuns(t *testing.T) {
	for _, tc := range []struct {
		pattern, name string
		want          bool
	}{
		{`^BenchmarkXOR$`, "BenchmarkXOR/4KiB/otp", true},
		{`^BenchmarkXOR$`, "BenchmarkXOR3/4KiB/otp", false},
		{`BenchmarkXOR`, "BenchmarkXOR3/4KiB/otp", true},
		{`^BenchmarkXOR$/^64KiB$`, "BenchmarkXOR/64KiB/otp", true},
		{`^BenchmarkXOR$/^64KiB$`, "BenchmarkXOR/4KiB/otp", false},
		{`^BenchmarkXOR$/KiB$/otp`, "BenchmarkXOR/4KiB/subtle", false},
		{`^(BenchmarkA|BenchmarkB)$/x`, "BenchmarkB/x", true},
		{`^BenchmarkA$/x|^BenchmarkB$`, "BenchmarkB/y", true},
		{`^BenchmarkA$/x|^BenchmarkB$`, "BenchmarkA/y", false},
		{`^Benchmark[/]$`, "Benchmark/", false},
	} {
		if got := benchRuns(t, tc.pattern, tc.name); got != tc.want {
			t.Errorf("benchRuns(%q, %q) = %v, want %v", tc.pattern, tc.name, got, tc.want)
		}
	}
}

// benchRuns reports whether `go test -bench pattern` runs the benchmark
// with the given full name. It follows testing's matcher (match.go): the
// pattern is split into alternatives at top-level "|" and into per-level
// patterns at top-level "/" (outside brackets and parentheses); a name runs
// if, for some alternative, each of its levels matches the pattern for that
// level, levels beyond the pattern's matching anything.
func benchRuns(t *testing.T, pattern, name string) bool {
	levels := strings.Split(name, "/")
	for _, alt := range splitPattern(pattern, '|') {
		ok := true
		for i, p := range splitPattern(alt, '/') {
			if i >= len(levels) {
				break
			}
			re, err := regexp.Compile(p)
			if err != nil {
				t.Fatalf("pattern %q: %v", pattern, err)
			}
			ok = ok && re.MatchString(levels[i])
		}
		if ok {
			return true
		}
	}
	return false
}

// splitPattern splits s at sep where sep is outside [...] and (...) and not
// escaped.
func splitPattern(s string, sep byte) []string {
	var parts []string
	brackets, parens := 0, 0
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\\':
			i++
		case c == '[':
			brackets++
		case c == ']' && brackets > 0:
			brackets--
		case c == '(' && brackets == 0:
			parens++
		case c == ')' && brackets == 0:
			parens--
		case c == sep && brackets == 0 && parens == 0:
			parts = append(parts, s[:i])
			s, i = s[i+1:], -1
		}
	}
	return append(parts, s)
}
