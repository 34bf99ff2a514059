// Package layers holds the test that keeps the module's imports in the
// order of DESIGN.md: otp ← ringstore ← dataplane ← controlplane/supply ←
// wgkey/ipsec ← node ← cmd. A package that needs something from a higher
// layer takes an interface instead.
package layers

import (
	"bufio"
	"bytes"
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/qrelay/qrelay"

// ranks gives each package tree its layer; the longest matching prefix
// wins. A package may import a package of a lower layer, or one of its own
// tree (supply/etsi014 imports supply); two trees on the same layer
// (controlplane and supply, wgkey and ipsec) may not import each other.
var ranks = map[string]int{
	// Helpers that import nothing of ours above them.
	"internal":  0,
	"otp":       10,
	"ringstore": 20,
	// The audit record describes pad ranges and key IDs (ringstore's).
	"internal/audit": 25,
	"dataplane":      30,
	"controlplane":   40,
	"supply":         40,
	"wgkey":          50,
	"ipsec":          50,
	"perf":           50,
	// The config is read into parts by node.
	"config": 50,
	// The lab writes configs for the demo and the cluster tests.
	"internal/lab": 55,
	"node":         60,
	// The daemon's body, run by cmd/qrelayd and cmd/qrelayctl.
	"internal/daemon": 65,
	"cmd":             70,
	"perf/cmd":        70,
}

// tree is the ranks key that pkg (a path inside the module) falls under.
func tree(pkg string) (string, bool) {
	best := ""
	for prefix := range ranks {
		if (pkg == prefix || strings.HasPrefix(pkg, prefix+"/")) && len(prefix) > len(best) {
			best = prefix
		}
	}
	return best, best != ""
}

// allowed says whether package from may import package to.
func allowed(from, to string) (ok bool, why string) {
	ft, ok1 := tree(from)
	tt, ok2 := tree(to)
	switch {
	case !ok1:
		return false, from + " has no layer: add its tree to ranks"
	case !ok2:
		return false, to + " has no layer: add its tree to ranks"
	case ranks[tt] < ranks[ft]:
		return true, ""
	case ft == tt || strings.HasPrefix(from, to+"/"):
		return true, "" // within one tree, or a subpackage using its parent
	}
	return false, "layer " + tt + " is not below " + ft
}

func TestLayering(t *testing.T) {
	out, err := exec.Command("go", "list", "-f",
		`{{.ImportPath}} {{join .Imports " "}} {{join .TestImports " "}} {{join .XTestImports " "}}`,
		module+"/...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	pkgs := 0
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		from := strings.TrimPrefix(f[0], module+"/")
		pkgs++
		for _, imp := range f[1:] {
			to, ours := strings.CutPrefix(imp, module+"/")
			if !ours || to == from {
				continue
			}
			if ok, why := allowed(from, to); !ok {
				t.Errorf("%s imports %s: %s (DESIGN.md: otp ← ringstore ← dataplane ← controlplane/supply ← wgkey/ipsec ← node ← cmd; take an interface instead)", from, to, why)
			}
		}
	}
	if pkgs < 20 {
		t.Fatalf("go list found %d packages: want the whole module", pkgs)
	}
}

// TestAllowed pins the rule on a few imports, so that a ranks table
// that allows everything fails.
func TestAllowed(t *testing.T) {
	for _, c := range []struct {
		from, to string
		ok       bool
	}{
		{"ringstore", "otp", true},
		{"otp", "ringstore", false},
		{"dataplane/relay", "dataplane/frame", true},
		{"supply/etsi014", "supply", true},
		{"supply", "controlplane", false},
		{"controlplane", "supply", false},
		{"supply", "dataplane/relay", true},
		{"dataplane/relay", "supply", false},
		{"wgkey", "node", false},
		{"node", "wgkey", true},
		{"node/adminapi", "internal/audit", true},
		{"ringstore", "internal/audit", false},
		{"cmd/qrelayctl", "node/adminapi", true},
		{"node", "cmd/qrelayd", false},
		{"nowhere", "otp", false},
	} {
		if ok, why := allowed(c.from, c.to); ok != c.ok {
			t.Errorf("%s imports %s: allowed %v (%s), want %v", c.from, c.to, ok, why, c.ok)
		}
	}
}
