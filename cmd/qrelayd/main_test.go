package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestBadConfigs starts qrelayd on broken configs: each must stop start-up
// with exit status 1 and an error naming the field and saying what is
// wrong. (The config package tests every rule; this checks that the daemon
// reports them as they are.)
func TestBadConfigs(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name, yaml string
		want       []string
	}{
		{"unknown field", "node: {id: a, colour: blue}\n", []string{"node.colour", "unknown"}},
		{"missing id", "km: {listen: 127.0.0.1:1}\n", []string{"node.id"}},
		{"bad duration", "node: {id: a}\nkm: {listen: 127.0.0.1:1, keepalive: soon}\n", []string{"km.keepalive", "soon"}},
		{"link to self", "node: {id: a}\nkm: {listen: 127.0.0.1:1}\nlinks:\n  - peer: a\n", []string{"links[0].peer", "own"}},
		{"not yaml", "node: [\n", []string{"node.yaml"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(dir, "node.yaml")
			if err := os.WriteFile(p, []byte(tc.yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			var stderr bytes.Buffer
			if code := run([]string{"-config", p}, &stderr); code != 1 {
				t.Fatalf("exit status %d, want 1; stderr:\n%s", code, stderr.String())
			}
			for _, w := range tc.want {
				if !strings.Contains(stderr.String(), w) {
					t.Errorf("stderr does not mention %q:\n%s", w, stderr.String())
				}
			}
		})
	}
}

// TestUsage checks the command line itself.
func TestUsage(t *testing.T) {
	var stderr bytes.Buffer
	if code := run(nil, &stderr); code != 2 || !strings.Contains(stderr.String(), "-config") {
		t.Errorf("no arguments: exit %d, stderr %q; want 2 and a hint about -config", code, stderr.String())
	}
	stderr.Reset()
	if code := run([]string{"-config", filepath.Join(t.TempDir(), "missing.yaml")}, &stderr); code != 1 || !strings.Contains(stderr.String(), "missing.yaml") {
		t.Errorf("missing file: exit %d, stderr %q", code, stderr.String())
	}
}
