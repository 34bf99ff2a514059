package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/qrelay/qrelay/internal/pki"
)

// run runs qrelayctl args and returns the exit code and outputs.
func run(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := dispatch(context.Background(), args, &out, &errOut)
	return code, out.String(), errOut.String()
}

func mustRun(t *testing.T, args ...string) string {
	t.Helper()
	code, out, errOut := run(t, args...)
	if code != 0 {
		t.Fatalf("qrelayctl %q: exit %d, stderr %s", args, code, errOut)
	}
	return out
}

func readCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := pem.Decode(data)
	if b == nil {
		t.Fatalf("%s: no PEM", path)
	}
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func dirFiles(t *testing.T, dir string) map[string]string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]string{}
	for _, e := range ents {
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		files[e.Name()] = string(data)
	}
	return files
}

func TestPKI(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pki")
	out := mustRun(t, "pki", "--dir", dir, "--nodes", "a,b", "--saes", "sae-1", "--operator", "ops", "--hosts", "127.0.0.1,node.example", "--validity", "720h")
	want := []string{"ca.pem", "ca.key", "node-a.pem", "node-a.key", "node-b.pem", "node-b.key", "sae-sae-1.pem", "sae-sae-1.key", "operator.pem", "operator.key"}
	files := dirFiles(t, dir)
	if len(files) != len(want) {
		t.Fatalf("pki wrote %d files; want %q", len(files), want)
	}
	for _, name := range want {
		p := filepath.Join(dir, name)
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		wantPerm := os.FileMode(0o644)
		if strings.HasSuffix(name, ".key") {
			wantPerm = 0o600
		}
		if fi.Mode().Perm() != wantPerm {
			t.Errorf("%s: mode %v; want %v", name, fi.Mode().Perm(), wantPerm)
		}
		if !strings.Contains(out, p) {
			t.Errorf("pki did not say it wrote %s:\n%s", p, out)
		}
	}
	if fi, _ := os.Stat(dir); fi.Mode().Perm() != 0o700 {
		t.Errorf("%s: mode %v; want 0700", dir, fi.Mode().Perm())
	}

	caCert := readCert(t, filepath.Join(dir, "ca.pem"))
	roots := x509.NewCertPool()
	roots.AddCert(caCert)
	cases := []struct {
		file  string
		kind  pki.Kind
		id    string
		usage x509.ExtKeyUsage
	}{
		{"node-a.pem", pki.Node, "a", x509.ExtKeyUsageServerAuth},
		{"node-b.pem", pki.Node, "b", x509.ExtKeyUsageClientAuth},
		{"sae-sae-1.pem", pki.SAE, "sae-1", x509.ExtKeyUsageClientAuth},
		{"operator.pem", pki.Operator, "ops", x509.ExtKeyUsageClientAuth},
	}
	for _, c := range cases {
		cert := readCert(t, filepath.Join(dir, c.file))
		if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{c.usage}}); err != nil {
			t.Errorf("%s does not verify against ca.pem: %v", c.file, err)
		}
		if id, err := pki.PeerID(cert, c.kind); err != nil || id != c.id {
			t.Errorf("%s: PeerID(%s) = %q, %v; want %q", c.file, c.kind, id, err, c.id)
		}
		if cert.NotAfter.Sub(cert.NotBefore) > 722*time.Hour {
			t.Errorf("%s: valid %v; want --validity 720h", c.file, cert.NotAfter.Sub(cert.NotBefore))
		}
	}
	a := readCert(t, filepath.Join(dir, "node-a.pem"))
	if !slices.Equal(a.DNSNames, []string{"node.example"}) || len(a.IPAddresses) != 1 || !a.IPAddresses[0].Equal(net.IPv4(127, 0, 0, 1)) {
		t.Errorf("node-a.pem names hosts %q %v; want --hosts", a.DNSNames, a.IPAddresses)
	}
	if _, err := pki.PeerID(readCert(t, filepath.Join(dir, "operator.pem")), pki.Node); err == nil {
		t.Error("the operator certificate passes as a node's")
	}
	// The keys load with their certificates.
	for _, n := range []string{"node-a", "sae-sae-1", "operator"} {
		if _, err := tls.LoadX509KeyPair(filepath.Join(dir, n+".pem"), filepath.Join(dir, n+".key")); err != nil {
			t.Errorf("%s: %v", n, err)
		}
	}

	// Again: nothing is overwritten.
	code, _, errOut := run(t, "pki", "--dir", dir, "--nodes", "a", "--saes", "sae-1")
	if code != 1 || !strings.Contains(errOut, "refusing to overwrite "+filepath.Join(dir, "node-a.pem")) || !strings.Contains(errOut, "--force") {
		t.Fatalf("pki over existing files: exit %d, %s", code, errOut)
	}
	if got := dirFiles(t, dir); !maps.Equal(got, files) {
		t.Fatal("a refused pki run changed files")
	}

	// Adding to the CA issues only what is named, from the same CA.
	out = mustRun(t, "pki", "--dir", dir, "--nodes", "c", "--validity", "720h")
	if !strings.Contains(out, "using the CA in "+dir) {
		t.Errorf("pki did not say it reused the CA:\n%s", out)
	}
	after := dirFiles(t, dir)
	for name, data := range files {
		if after[name] != data {
			t.Errorf("adding node c changed %s", name)
		}
	}
	if len(after) != len(files)+2 {
		t.Errorf("adding node c wrote %d files; want 2", len(after)-len(files))
	}
	if _, err := readCert(t, filepath.Join(dir, "node-c.pem")).Verify(x509.VerifyOptions{Roots: roots}); err != nil {
		t.Errorf("node-c.pem does not verify against the original CA: %v", err)
	}

	// --force overwrites certificates, keeps the CA, and makes keys 0600
	// whatever mode they had.
	if err := os.Chmod(filepath.Join(dir, "node-a.key"), 0o644); err != nil {
		t.Fatal(err)
	}
	mustRun(t, "pki", "--dir", dir, "--nodes", "a", "--force", "--validity", "720h")
	after = dirFiles(t, dir)
	if after["node-a.pem"] == files["node-a.pem"] || after["ca.pem"] != files["ca.pem"] || after["ca.key"] != files["ca.key"] {
		t.Error("--force did not reissue node-a, or replaced the CA")
	}
	if fi, _ := os.Stat(filepath.Join(dir, "node-a.key")); fi.Mode().Perm() != 0o600 {
		t.Errorf("node-a.key after --force: mode %v", fi.Mode().Perm())
	}

	// A CA directory missing its key is an error that says so.
	if err := os.Remove(filepath.Join(dir, "ca.key")); err != nil {
		t.Fatal(err)
	}
	code, _, errOut = run(t, "pki", "--dir", dir, "--nodes", "d")
	if code != 1 || !strings.Contains(errOut, "ca.key does not") {
		t.Fatalf("pki with no CA key: exit %d, %s", code, errOut)
	}
}
